#!/usr/bin/env bash
# Installs what is missing, builds sluice, and starts it in the foreground
# with conf/sluice.conf (MQTT on 1883, WebSocket on 8080). Ctrl-C stops it.
set -euo pipefail
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
bash tests/deps.sh
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p build/release
(cd build/release && "$top/configure" -q && make -j2 >/dev/null)
exec build/release/src/sluice -c conf/sluice.conf "$@"
