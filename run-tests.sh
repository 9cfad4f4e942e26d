#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, builds with
# gcc (warnings are errors) and runs `make check`, then builds with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer and runs it again, then
# builds the libFuzzer targets and fuzzes each parser briefly.
# Builds live in build/gcc and build/asan; the source tree stays clean.
set -euo pipefail
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
bash tests/deps.sh
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi

check() { # name, configure args...
	local name=$1 rc=0
	shift
	mkdir -p "build/$name"
	(cd "build/$name" && "$top/configure" -q "$@" && make -j2 >/dev/null) || return 1
	(cd "build/$name" && make -j2 check ${CHECK_TESTS:+TESTS="$CHECK_TESTS"} >/dev/null 2>&1) ||
		rc=$?
	echo "=== $name: test logs ==="
	for log in build/"$name"/tests/*.log build/"$name"/tests/unit/*.log \
		build/"$name"/tests/plugin/*.log build/"$name"/tests/integ/*.log \
		build/"$name"/tests/fuzz/*.log; do
		case $log in *test-suite.log) continue ;; esac
		[ -f "$log" ] || continue
		echo "--- ${log#build/$name/}"
		grep -vE '^\[ *(RUN|OK) *\]' "$log" || true
	done
	return $rc
}

status=0
check gcc --enable-werror || status=1
check asan --enable-sanitizers || status=1
# libFuzzer smoke run of every parser (tests/fuzz): a short, bounded fuzz.
FUZZ_SECONDS=${FUZZ_SECONDS:-10} CHECK_TESTS=tests/fuzz/smoke.sh \
	check fuzz --enable-fuzz --enable-werror || status=1
[ $status -eq 0 ] && echo "all test suites passed" || echo "SOME TESTS FAILED"
exit $status
