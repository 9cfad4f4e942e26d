#!/usr/bin/env bash
# bench/txn-restart.sh - open transactions, then restart the broker with them.
#
# Starts sluice with the txn plugin and persistence on in a scratch
# directory, opens COUNT transactions of one SIZE-byte half message each
# (sluice-bench -s txn-open), reads the broker's RSS, stops it (SIGTERM, or
# SIGKILL with --kill), starts it again on the same store and times: until
# it accepts connections, until the commit of one of the open transactions
# is acknowledged with reason code 0 (mosquitto_pub, as its owner), and
# until that message has reached a persistent session subscribed before the
# restart. Check-back is set to 1 h so that no check interferes.
#
#   bench/txn-restart.sh [--count N] [--size BYTES] [--pubs P] [--kill]
#       [--sluice PATH] [--plugin PATH/txn.so] [--bench PATH] [--keep]
#
# Defaults: 100000 transactions of 1024 bytes from 10 producers; the
# binaries of the build directory this is run from (src/sluice,
# plugins/txn/.libs/txn.so, bench/sluice-bench). Needs mosquitto_pub and
# mosquitto_sub. Every broker started is stopped on exit (by pid).
set -euo pipefail

COUNT=100000 SIZE=1024 PUBS=10 SIG=TERM KEEP=0
SLUICE=./src/sluice PLUGIN=./plugins/txn/.libs/txn.so BENCH=./bench/sluice-bench
while [ $# -gt 0 ]; do
	case $1 in
	--count) COUNT=$2; shift ;;
	--size) SIZE=$2; shift ;;
	--pubs) PUBS=$2; shift ;;
	--kill) SIG=KILL ;;
	--sluice) SLUICE=$2; shift ;;
	--plugin) PLUGIN=$2; shift ;;
	--bench) BENCH=$2; shift ;;
	--keep) KEEP=1 ;;
	*) echo "txn-restart.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
for f in "$SLUICE" "$PLUGIN" "$BENCH"; do
	[ -e "$f" ] || { echo "txn-restart.sh: $f not found (run from a build directory)" >&2; exit 2; }
done
SLUICE=$(realpath "$SLUICE") PLUGIN=$(realpath "$PLUGIN") BENCH=$(realpath "$BENCH")

WORK=$(mktemp -d /tmp/txn-restart.XXXXXX)
BPID=
cleanup() {
	if [ -n "$BPID" ]; then
		kill "$BPID" 2>/dev/null && sleep 0.5
		kill -9 "$BPID" 2>/dev/null || true
	fi
	if [ "$KEEP" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PORT=$("$BENCH" --free-port)
cat > "$WORK/broker.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
max_connections -1
sys_interval 0
log_type error
persistence true
persistence_file $WORK/sluice.db
plugin $PLUGIN
plugin_opt_check_after 1h
EOF

ms_now() { echo $(($(date +%s%N) / 1000000)); }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

start_broker() {
	(cd "$WORK" && exec "$SLUICE" -c "$WORK/broker.conf" 2>>"$WORK/log") &
	BPID=$!
}

# Polls every 5 ms until the port accepts a TCP connection.
wait_accept() {
	local n=0
	while [ $((n += 1)) -le 12000 ]; do
		(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
		kill -0 "$BPID" 2>/dev/null || break
		sleep 0.005
	done
	echo "txn-restart.sh: the broker did not start; its log:" >&2
	cat "$WORK/log" >&2
	exit 1
}

stop_broker() { # signal
	local t0 n=0
	t0=$(ms_now)
	kill -"$1" "$BPID"
	while kill -0 "$BPID" 2>/dev/null && [ $((n += 1)) -le 6000 ]; do
		sleep 0.01
	done
	{ wait "$BPID"; } 2>/dev/null || true
	BPID=
	STOP_MS=$(($(ms_now) - t0))
}

start_broker
wait_accept
RSS0=$(rss_kb "$BPID")
per=$(((COUNT + PUBS - 1) / PUBS))
"$BENCH" -s txn-open -V 5 -q 1 -p "$PORT" --pubs "$PUBS" -n "$per" -S "$SIZE" \
	--pid "$BPID" -t 900 --drain-timeout 60 > "$WORK/open.out"
cat "$WORK/open.out"
read -r OWNER TXN TOPIC < <(sed -n 's/^TXN-OPEN owner=\([^ ]*\) txn=\([^ ]*\) topic=\([^ ]*\)$/\1 \2 \3/p' \
	"$WORK/open.out")
# A persistent session subscribed to the first transaction's topic, offline over the restart.
mosquitto_sub -V 5 -p "$PORT" -i txn-restart-sub -c -x 3600 -q 1 -t "$TOPIC" -E
sleep 1
RSS1=$(rss_kb "$BPID") HWM1=$(hwm_kb "$BPID")
DB_KB=$(du -sk "$WORK" | cut -f1)

stop_broker "$SIG"
t0=$(ms_now)
start_broker
wait_accept
ACCEPT_MS=$(($(ms_now) - t0))
rc=$(mosquitto_pub -V 5 -p "$PORT" -i "$OWNER" -q 1 -t "\$txn/commit/$TXN" -n -d |
	sed -n 's/.*received PUBACK.*RC:\([0-9]*\).*/\1/p')
COMMIT_MS=$(($(ms_now) - t0))
got=$(mosquitto_sub -V 5 -p "$PORT" -i txn-restart-sub -c -x 3600 -q 1 -t "$TOPIC" -C 1 -W 30 |
	wc -c)
DELIVER_MS=$(($(ms_now) - t0))
RSS2=$(rss_kb "$BPID")

cat <<EOF
txn-restart: $COUNT transactions of $SIZE bytes requested (see the txn-open line for how many opened)
  broker RSS: $RSS0 kB at start, $RSS1 kB with them open (peak $HWM1 kB); store $DB_KB kB on disk
  stop (SIG$SIG): $STOP_MS ms
  restart: accepting connections after $ACCEPT_MS ms, commit of $TXN acknowledged (reason code ${rc:-none}) after $COMMIT_MS ms, its message delivered ($got bytes) after $DELIVER_MS ms
  broker RSS after the restart: $RSS2 kB
RESULT scenario=txn-restart count=$COUNT size=$SIZE rss0_kb=$RSS0 rss_kb=$RSS1 hwm_kb=$HWM1 db_kb=$DB_KB stop_ms=$STOP_MS accept_ms=$ACCEPT_MS commit_ms=$COMMIT_MS deliver_ms=$DELIVER_MS commit_rc=${rc:-none} delivered=$got rss_restart_kb=$RSS2
EOF
if [ "${rc:-x}" != 0 ] || [ "$got" -lt "$SIZE" ]; then
	echo "txn-restart.sh: FAIL: the commit after the restart did not work" >&2
	exit 1
fi
