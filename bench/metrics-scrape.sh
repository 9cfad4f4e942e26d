#!/usr/bin/env bash
# bench/metrics-scrape.sh - what GET /metrics costs the broker (issue 13).
#
# 1. Throughput with and without scraping: compare.sh's pairs row (50
#    publisher/subscriber pairs, MQTT 3.1.1, 64-byte payloads, window 64,
#    unpaced, -d seconds) at each QoS of --qos, against a fresh sluice with
#    compare.sh's configuration plus a "protocol http" listener, while a
#    loop runs `curl -s http://127.0.0.1:PORT/metrics > /dev/null` every
#    1 s, every 0.1 s, or not at all (the same listener in all three), and
#    as a control a loop of the same curl every 0.1 s on /not-metrics (a
#    404: curl's own cost without the exposition; "0.1-404").
#    Rounds interleave none / 1 / 0.1 / 0.1-404, so that drift hits each alike;
#    the table shows the median, min and max of the runs and the median
#    against "none". Broker on CPU 0; generator and curl loop on CPU 1
#    (--no-pin: nothing pinned).
# 2. One scrape: its size, curl's time_total (median of 20) and the
#    broker's CPU per scrape (utime+stime from /proc over 200 scrapes) on
#    an idle broker, with --idle N idle clients held (sluice-bench -s
#    connections, one pair at 1 msg/s beside them; N sessions), and with --groups G
#    shared groups, each with one message waiting for its offline member
#    (made by python3 with tests/integ/mqttpkt.py).
#
#   bench/metrics-scrape.sh [--runs N] [--duration S] [--qos "0 1"]
#       [--idle N] [--groups G] [--no-pin] [--skip-throughput] [--skip-scrape]
#       [--sluice PATH] [--bench PATH]
#
# Defaults: 5 runs of 5 s, QoS 0 and 1, 10000 idle clients, 10000 groups;
# the binaries of the build directory this is run from (src/sluice,
# bench/sluice-bench). Needs curl (and python3 for --groups). Every
# process it starts is stopped on exit, by pid.
set -u

here=$(cd "$(dirname "$0")" && pwd)
RUNS=5 DURATION=5 QOS_LIST="0 1" IDLE=10000 NGROUPS=10000 PIN=1
DO_TP=1 DO_SCRAPE=1
SLUICE=./src/sluice BENCH=./bench/sluice-bench
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--qos) QOS_LIST=$2; shift ;;
	--idle) IDLE=$2; shift ;;
	--groups) NGROUPS=$2; shift ;;
	--no-pin) PIN=0 ;;
	--skip-throughput) DO_TP=0 ;;
	--skip-scrape) DO_SCRAPE=0 ;;
	--sluice) SLUICE=$2; shift ;;
	--bench) BENCH=$2; shift ;;
	*) echo "metrics-scrape.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
for f in "$SLUICE" "$BENCH"; do
	[ -x "$f" ] || { echo "metrics-scrape.sh: $f not found (run from a build directory)" >&2; exit 2; }
done
command -v curl > /dev/null || { echo "metrics-scrape.sh: curl not found" >&2; exit 2; }
SLUICE=$(realpath "$SLUICE") BENCH=$(realpath "$BENCH")
BROKER_CPU=() GEN_CPU=()
[ "$PIN" = 1 ] && BROKER_CPU=(taskset -c 0) GEN_CPU=(taskset -c 1)

WORK=$(mktemp -d /tmp/metrics-scrape.XXXXXX)
BPID= LPID= HPID=
cleanup() {
	local p
	for p in $LPID $HPID $BPID; do
		kill "$p" 2>/dev/null && sleep 0.2
		kill -9 "$p" 2>/dev/null
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_broker() { # extra config lines...
	PORT=$("$BENCH" --free-port) HPORT=$("$BENCH" --free-port)
	while [ "$HPORT" = "$PORT" ]; do HPORT=$("$BENCH" --free-port); done
	# compare.sh's configuration for sluice, and the http listener
	{
		echo "persistence false"
		cat <<-EOF
		listener $PORT 127.0.0.1
		allow_anonymous true
		max_queued_messages 100000
		max_inflight_messages 100
		max_connections -1
		sys_interval 0
		log_type error
		EOF
		printf '%s\n' "$@"
		printf 'listener %s 127.0.0.1\nprotocol http\n' "$HPORT"
	} > "$WORK/broker.conf"
	(cd "$WORK" && exec "${BROKER_CPU[@]}" "$SLUICE" -c "$WORK/broker.conf" 2>>"$WORK/log") &
	BPID=$!
	for _ in $(seq 50); do
		curl -sf -m 10 -o /dev/null "http://127.0.0.1:$HPORT/metrics" &&
			(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
		kill -0 "$BPID" 2>/dev/null || break
		sleep 0.1
	done
	echo "metrics-scrape.sh: the broker did not start:" >&2
	cat "$WORK/log" >&2
	exit 1
}

stop_broker() {
	kill "$BPID" 2>/dev/null
	wait "$BPID" 2>/dev/null
	BPID=
}

# The scrape loop: one curl per interval, until the stop file exists;
# counts scrapes and failed ones (on /not-metrics: answers, 404 expected).
start_loop() { # interval path
	: > "$WORK/scrapes"
	rm -f "$WORK/stop"
	(
		exec "${GEN_CPU[@]}" bash -c '
			while [ ! -e "$3" ]; do
				code=$(curl -s -m 10 -o /dev/null -w "%{http_code}" "http://127.0.0.1:$1$4")
				if [ "$code" = 200 ] || { [ "$code" = 404 ] && [ "$4" != /metrics ]; }
				then echo ok; else echo fail; fi
				sleep "$2"
			done' loop "$HPORT" "$1" "$WORK/stop" "$2"
	) >> "$WORK/scrapes" &
	LPID=$!
}

stop_loop() { # it ends within one interval and one scrape
	[ -n "$LPID" ] || return 0
	touch "$WORK/stop"
	wait "$LPID" 2>/dev/null
	LPID=
}

metric() { # name: its value in one scrape
	curl -s -m 10 "http://127.0.0.1:$HPORT/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2];
	else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "sluice:  $SLUICE"
echo "bench:   $BENCH"
echo "machine: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "pinned:  $([ "$PIN" = 1 ] && echo "broker CPU 0; generator and curl loop CPU 1" || echo no)"

if [ "$DO_TP" = 1 ]; then
	echo
	echo "== throughput: pairs, 50 pairs, 64 B, window 64, $DURATION s, $RUNS runs"
	: > "$WORK/results"
	: > "$WORK/scrapes"
	for q in $QOS_LIST; do
		for r in $(seq "$RUNS"); do
			for iv in none 1 0.1 0.1-404; do
				start_broker
				case $iv in
				none) ;;
				*-404) start_loop "${iv%-404}" /not-metrics ;;
				*) start_loop "$iv" /metrics ;;
				esac
				out=$("${GEN_CPU[@]}" "$BENCH" -p "$PORT" --pid "$BPID" -V 4 -q "$q" -S 64 \
					-w 64 -t $((3 * DURATION + 90)) --quiet -s pairs -c 50 -d "$DURATION" 2>&1)
				stop_loop
				stop_broker
				line=$(printf '%s\n' "$out" | grep '^RESULT') ||
					{ echo "run failed: $out" >&2; continue; }
				ok=$(grep -c '^ok' "$WORK/scrapes") fail=$(grep -c '^fail' "$WORK/scrapes")
				[ "$iv" = none ] && ok=0 fail=0
				in=$(printf '%s\n' "$line" | tr ' ' '\n' | sed -n 's/^in=//p')
				outr=$(printf '%s\n' "$line" | tr ' ' '\n' | sed -n 's/^out=//p')
				cpu=$(printf '%s\n' "$line" | tr ' ' '\n' | sed -n 's/^cpu=//p')
				echo "$q $iv $in $outr $cpu $ok $fail" >> "$WORK/results"
				printf 'qos %s run %s scrape %-7s in %s out %s cpu %s scrapes %s failed %s\n' \
					"$q" "$r" "$iv" "$in" "$outr" "$cpu" "$ok" "$fail"
			done
		done
	done
	echo
	printf '%-4s %-8s %12s %12s %12s %9s %8s\n' qos scrape "out median" "out min" "out max" \
		"vs none" "scrapes"
	for q in $QOS_LIST; do
		base=$(awk -v q="$q" '$1 == q && $2 == "none" { print $4 }' "$WORK/results" | median)
		for iv in none 1 0.1 0.1-404; do
			vals=$(awk -v q="$q" -v i="$iv" '$1 == q && $2 == i { print $4 }' "$WORK/results")
			[ -n "$vals" ] || continue
			med=$(printf '%s\n' "$vals" | median)
			lo=$(printf '%s\n' "$vals" | sort -g | head -1)
			hi=$(printf '%s\n' "$vals" | sort -g | tail -1)
			n=$(awk -v q="$q" -v i="$iv" '$1 == q && $2 == i { s += $6; f += $7 }
				END { printf "%d (%d failed)", s, f }' "$WORK/results")
			printf '%-4s %-8s %12.0f %12.0f %12.0f %8.3fx %s\n' "$q" "$iv" "$med" "$lo" "$hi" \
				"$(awk -v a="$med" -v b="$base" 'BEGIN { print b ? a / b : 0 }')" "$n"
		done
	done
fi

# One scrape: size, time (curl), and the broker's CPU per scrape.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$BPID/stat"; }
scrape_cost() { # label
	local i times size t0 t1
	times=$(for i in $(seq 20); do
		curl -s -m 10 -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$HPORT/metrics"; done)
	size=$(curl -s -m 10 "http://127.0.0.1:$HPORT/metrics" | wc -c)
	t0=$(cpu_ticks)
	# curl's own CPU (user + sys of the 200 processes): what the scraper pays
	curl_cpu=$( (for i in $(seq 200); do curl -s -m 10 -o /dev/null "http://127.0.0.1:$HPORT/metrics"; done
		times) | tail -1 | awk '{ split($1, u, /[ms]/); split($2, s, /[ms]/)
		printf "%.2f", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 / 200 }')
	t1=$(cpu_ticks)
	printf '%-32s %7s bytes  time_total median %6s ms  broker CPU %6s ms/scrape  curl CPU %s ms\n' \
		"$1" "$size" "$(printf '%s\n' "$times" | median | awk '{ printf "%.2f", $1 * 1000 }')" \
		"$(awk -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", d * 1000 / hz / 200 }')" \
		"$curl_cpu"
}

if [ "$DO_SCRAPE" = 1 ]; then
	echo
	echo "== one scrape"
	start_broker
	scrape_cost "idle broker"
	"${GEN_CPU[@]}" "$BENCH" -p "$PORT" --pid "$BPID" -s connections -c 1 -r 1 \
		--idle "$IDLE" -d 60 -t 200 --quiet > "$WORK/conn.out" 2>&1 &
	HPID=$!
	for _ in $(seq 600); do
		[ "$(metric sluice_clients_connected)" -ge "$IDLE" ] 2>/dev/null && break
		kill -0 "$HPID" 2>/dev/null || break
		sleep 0.1
	done
	scrape_cost "$(metric sluice_clients_connected) clients, $(metric sluice_sessions) sessions"
	kill "$HPID" 2>/dev/null
	wait "$HPID" 2>/dev/null
	HPID=
	stop_broker
	if [ "$NGROUPS" -gt 0 ] && command -v python3 > /dev/null; then
		start_broker
		python3 - "$here/../tests/integ" "$PORT" "$NGROUPS" <<-'EOF' || exit 1
		import socket, sys
		sys.path.insert(0, sys.argv[1])
		import mqttpkt as P
		port, n = int(sys.argv[2]), int(sys.argv[3])

		def client(cid, clean=True, props=None):
		    s = socket.create_connection(("127.0.0.1", port))
		    s.sendall(P.connect(cid, 5, clean, 60, props))
		    return [s, b""]

		def read(c, k):  # k packets
		    while k:
		        r = P.split(c[1])
		        if r is None:
		            c[1] += c[0].recv(1 << 20)
		            continue
		        c[1] = c[1][r[2]:]
		        k -= 1

		m = client("metrics-scrape-member", False, [(P.SESSION_EXPIRY, 3600)])
		read(m, 1)
		for i in range(0, n, 100):
		    m[0].sendall(P.subscribe(i // 100 % 65535 + 1, [("$share/g%05d/ms/%d" % (j, j), 1)
		                 for j in range(i, min(n, i + 100))], version=5))
		read(m, (n + 99) // 100)
		m[0].sendall(P.disconnect(version=5))
		p = client("metrics-scrape-pub")
		read(p, 1)
		for i in range(0, n, 50):
		    k = min(50, n - i)
		    p[0].sendall(b"".join(P.publish("ms/%d" % j, b"x", 1, pid=j % 50 + 1, version=5)
		                          for j in range(i, i + k)))
		    read(p, k)
		EOF
		scrape_cost "$(metric sluice_groups) groups, $(metric 'sluice_queued_messages{queue="group"}') queued"
		stop_broker
	fi
fi
