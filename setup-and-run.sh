#!/usr/bin/env bash
# Installs what is missing, builds sluice and its plugins, installs them under
# build/install (nothing outside the tree), and starts the broker in the
# foreground with conf/sluice.conf (MQTT on 1883, WebSocket on 8080, the
# status page on http://localhost:8080/). Ctrl-C stops it.
set -euo pipefail
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
bash tests/deps.sh
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p build/release
(cd build/release && "$top/configure" -q --prefix="$top/build/install" && make -j2 >/dev/null &&
	make install >/dev/null)
exec build/install/bin/sluice -c conf/sluice.conf "$@"
