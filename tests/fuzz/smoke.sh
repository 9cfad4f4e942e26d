#!/bin/sh
# smoke.sh - a short fuzzing run of every libFuzzer target, for `make check`.
#
# Each target runs for FUZZ_SECONDS (default 20) over a copy of its seed
# corpus in a temporary directory, so the source tree is never written. One
# line per target; a target that crashes, leaks, breaks an invariant or is
# missing fails the script, which then keeps the temporary directory (logs
# and the crashing input) and prints where it is.
#
# Environment: FUZZ_BINDIR (where the targets are; `make check` sets it),
# SLUICE_SRCDIR (the source tree), FUZZ_SECONDS, FUZZ_TARGETS (a subset).
set -u

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${SLUICE_SRCDIR:-$(cd "$here/../.." && pwd)}
bindir=${FUZZ_BINDIR:-$PWD/tests/fuzz}
secs=${FUZZ_SECONDS:-20}
targets=${FUZZ_TARGETS:-"fuzz_codec fuzz_framer fuzz_props fuzz_topic fuzz_config fuzz_access fuzz_broker"}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-fuzz.XXXXXX") || exit 1
failed=0

stat_of() { # name, log
	sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

for t in $targets; do
	bin=$bindir/$t
	dir=$tmp/$t
	if [ ! -x "$bin" ]; then
		echo "FAIL $t: not built ($bin)"
		failed=1
		continue
	fi
	mkdir -p "$dir/corpus" "$dir/artifacts"
	cp "$srcdir/tests/fuzz/corpus/$t/"* "$dir/corpus/" 2>/dev/null
	seeds=$(ls "$dir/corpus" | wc -l)
	# -timeout: one input may take 10 s at most (a hang is a failure);
	# the outer timeout only guards against libFuzzer itself not stopping.
	timeout $((secs + 60)) "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$dir/artifacts/" "$dir/corpus" \
		>"$dir/log" 2>&1
	rc=$?
	runs=$(stat_of number_of_executed_units "$dir/log")
	if [ $rc -eq 0 ]; then
		echo "PASS $t: ${runs:-?} runs in ${secs}s, corpus $seeds -> $(ls "$dir/corpus" | wc -l)"
		rm -rf "$dir"
		continue
	fi
	failed=1
	echo "FAIL $t: exit $rc after ${runs:-?} runs; log and input in $dir"
	grep -E 'ERROR|invariant failed|SUMMARY|#[0-9]+ 0x' "$dir/log" | head -n 25
	for a in "$dir/artifacts/"*; do
		[ -f "$a" ] || continue
		echo "input $(basename "$a") ($(wc -c <"$a") bytes):"
		od -An -tx1 -v "$a" | head -n 16
	done
done

if [ $failed -eq 0 ]; then
	rm -rf "$tmp"
else
	echo "fuzz smoke failed: reproduce with $bindir/TARGET $tmp/TARGET/artifacts/FILE"
fi
exit $failed
