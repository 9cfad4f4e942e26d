#!/usr/bin/env bash
# Installs the Debian 12 packages sluice needs to build, run and test, when
# any is missing. Used by ./setup-and-run.sh and ./run-tests.sh.
set -euo pipefail

pkgs=(
	gcc make autoconf automake libtool pkg-config
	libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libsqlite3-dev libmbedtls-dev libssl-dev openssl libargon2-dev argon2
	libcmocka-dev clang libclang-rt-14-dev
	mosquitto mosquitto-clients python3 python3-paho-mqtt chromium libnss3-tools
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
