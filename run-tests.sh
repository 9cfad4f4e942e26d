#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, builds with
# gcc (warnings are errors) and runs `make check`, then builds with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer and runs it again.
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
	(cd "build/$name" && make -j2 check >/dev/null 2>&1) || rc=$?
	echo "=== $name: test logs ==="
	for log in build/"$name"/tests/unit/*.log build/"$name"/tests/integ/*.log; do
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
[ $status -eq 0 ] && echo "all test suites passed" || echo "SOME TESTS FAILED"
exit $status
