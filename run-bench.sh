#!/usr/bin/env bash
# The side-by-side benchmark: installs what is missing, builds sluice and the
# load generator (bench/sluice-bench), and runs bench/compare.sh, which starts
# sluice and Debian's mosquitto on free 127.0.0.1 ports, runs every scenario
# at QoS 0, 1 and 2 against each (A B A B), and prints one table. Arguments
# go to compare.sh; without any, the full run bench/RESULTS.md records.
# Takes about 21 minutes in full on 2 cores; --quick is a smoke run of about 2 minutes.
set -euo pipefail
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
bash tests/deps.sh
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p build/release
(cd build/release && "$top/configure" -q --prefix="$top/build/install" && make -j2 >/dev/null)
cd build/release
[ $# -gt 0 ] || set -- --runs 3 --duration 5 --pin --persist
exec bash "$top/bench/compare.sh" "$@"
