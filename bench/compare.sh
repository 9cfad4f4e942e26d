#!/bin/bash
# bench/compare.sh - sluice against mosquitto 2.0.11 (or an older sluice),
# same load, same limits.
#
# Every measurement starts a fresh broker on its own free 127.0.0.1 port,
# runs one sluice-bench scenario against it (with --pid, so that RSS and CPU
# come from /proc) and stops it. Brokers alternate A B A B for each
# (scenario, QoS) so that drift on a shared machine hits both alike. The
# table shows medians over the runs and, per row, the ratio of each broker
# to the reference (mosquitto, or --ref). The delayed rows need sluice's
# delayed plugin (plugins/delayed/.libs/delayed.so in the build directory
# of the sluice binary, or ./, or --plugin); a broker without delayed topics
# shows n/a. The ordered rows load sluice's ordered plugin the same way
# (plugins/ordered/.libs/ordered.so, or --ordered-plugin) with
# plugin_opt_keyed bench/ordered/#; a broker that does not keep key order
# (mosquitto, or a sluice whose ordered.so was not found) shows n/a.
#
# usage: bench/compare.sh [--quick] [--runs N] [--duration S] [--pin]
#                         [--scenarios "fanin fanout ..."] [--qos "0 1 2"]
#                         [--protocol 4|5] [--sluice PATH] [--bench PATH]
#                         [--mosquitto PATH] [--raw FILE] [--persist]
#                         [--plugin PATH/delayed.so] [--baseline PATH]
#                         [--base-plugin PATH/delayed.so] [--no-mosquitto]
#                         [--ref NAME] [--ordered-plugin PATH/ordered.so]
#                         [--keys K]
#
#   --quick   a smoke run: 1 run each, 1 s, 2000 idle connections
#   --pin     broker on CPU 0, load generator on CPU 1 (taskset)
#   --persist also a sluice with persistence on (SQLite in a scratch dir)
#   --baseline PATH  an older sluice binary: column sluice-base (and with
#             --persist sluice-base-persist), same configuration; its
#             delayed.so is looked for in ../plugins/delayed/.libs next to
#             PATH (or --base-plugin); not found: its delayed rows read n/a
#   --no-mosquitto   leave the mosquitto column out
#   --ref NAME       the column the ratios are taken against (default
#             mosquitto; without it sluice-base, else sluice). A -persist
#             column is taken against NAME-persist when there is one.
#   with --runs >= 3 each broker row gets a max/min row: the largest run
#   over the smallest, per column (the spread, to judge a ratio by)
#   scenarios: fanin fanout pairs shared latency connections backlog delayed
#             and, not by default, release (delayed --delayed-rate, issue 5),
#             ordered (shared's publishers and consumers, messages spread
#             over --keys K keys, default 100, each key in order) and
#             ordered1 (the same on one key)
#
# Every broker this script starts is killed on exit (trap), by pid.
set -u

here=$(cd "$(dirname "$0")" && pwd)
RUNS=3
DURATION=5
PIN=0
PROTO=4
QOS_LIST="0 1 2"
SCENARIOS="fanin fanout pairs shared latency connections backlog delayed"
CLIENTS=50 # publishers (fanin), subscribers (fanout), pairs
SHARED_PUBS=10
SHARED_SUBS=5
LAT_PAIRS=10
LAT_RATE=1000 # messages/s per publisher in the latency rows
IDLE=10000
BACKLOG=5000
DELAYED_N=5000 # per publisher (10): 50,000 scheduled, due 1-6 s later (~10,000/s)
DELAYED_MIN=1
DELAYED_MAX=6
RELEASE_RATE=10000 # release: due at this many per second for DURATION s
ORDERED_KEYS=100 # ordered: keys the messages are spread over (ordered1: 1)
WINDOW=64
RAW=
SLUICE=
BENCH=
PLUGIN=
ORDERED_PLUGIN=
MOSQUITTO=/usr/sbin/mosquitto
BASELINE=
BASE_PLUGIN=
NO_MOSQUITTO=0
PERSIST=0

# Limits both brokers get. The publisher window stays below INFLIGHT: at QoS 2
# over MQTT 3.1.1 mosquitto silently drops, and sluice disconnects, a client
# with more unacknowledged incoming QoS 2 messages than max_inflight_messages.
# QUEUE is far above what the windows ever leave queued (a few thousand):
# with 10000, mosquitto 2.0.11 drops QoS 1/2 messages to an online fan-in
# subscriber ("Outgoing messages are being dropped") although fewer than
# 3,200 are outstanding, which looks like its queued-message accounting.
QUEUE=100000
INFLIGHT=100

# The columns: NAME|KIND|PROGRAM|PLUGIN_DIR|ORDERED_SO|extra configuration
# lines separated by ';' (@DIR@ is the broker's scratch directory, removed
# afterwards). PLUGIN_DIR holds delayed.so; ORDERED_SO is the ordered plugin. Set up after the options (below): sluice, [sluice-base],
# [sluice-persist, sluice-base-persist], mosquitto. Persistence is off on all
# by default; --persist adds the column(s) of a sluice with it on.
PERSIST_EXTRA="persistence true;persistence_file @DIR@/sluice.db"
REF=

while [ $# -gt 0 ]; do
	case $1 in
	--quick) RUNS=1 DURATION=1 IDLE=2000 BACKLOG=2000 DELAYED_N=1000 ;;
	--runs) RUNS=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--pin) PIN=1 ;;
	--persist) PERSIST=1 ;;
	--baseline) BASELINE=$2; shift ;;
	--base-plugin) BASE_PLUGIN=$2; shift ;;
	--no-mosquitto) NO_MOSQUITTO=1 ;;
	--ref) REF=$2; shift ;;
	--scenarios) SCENARIOS=$2; shift ;;
	--qos) QOS_LIST=$2; shift ;;
	--protocol) PROTO=$2; shift ;;
	--sluice) SLUICE=$2; shift ;;
	--bench) BENCH=$2; shift ;;
	--mosquitto) MOSQUITTO=$2; shift ;;
	--raw) RAW=$2; shift ;;
	--plugin) PLUGIN=$2; shift ;;
	--ordered-plugin) ORDERED_PLUGIN=$2; shift ;;
	--keys) ORDERED_KEYS=$2; shift ;;
	-h|--help) sed -n '2,/^# Every broker/p' "$0"; exit 0 ;;
	*) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

find_prog() { # name, candidates...
	local name=$1 p
	shift
	for p in "$@"; do
		if [ -x "$p" ]; then echo "$p"; return 0; fi
	done
	echo "compare.sh: cannot find $name (tried: $*)" >&2
	return 1
}
SLUICE=$(find_prog sluice ${SLUICE:-} ./src/sluice "$here/../src/sluice" \
	/tmp/build-bench/src/sluice) || exit 2
BENCH=$(find_prog sluice-bench ${BENCH:-} ./bench/sluice-bench \
	"$here/sluice-bench" /tmp/build-bench/bench/sluice-bench) || exit 2
SLUICE=$(readlink -f "$SLUICE")
BENCH=$(readlink -f "$BENCH")
if [ -n "$BASELINE" ]; then
	[ -x "$BASELINE" ] || { echo "compare.sh: --baseline $BASELINE not found" >&2; exit 2; }
	BASELINE=$(readlink -f "$BASELINE")
fi
plugin_ok() { # path: a delayed.so (plugin_dir + plugin delayed)
	[ "$(basename "$1")" = delayed.so ] || {
		echo "compare.sh: $1: the plugin must be a file delayed.so (plugin_dir + plugin delayed)" >&2
		return 1
	}
}
PLUGIN_DIR=
BASE_PLUGIN_DIR=
case " $SCENARIOS " in
*" delayed "*|*" release "*)
	# The build directory of the sluice binary (its src/ or src/.libs/), then ./
	# and this tree, as for src/sluice.
	PLUGIN=$(find_prog delayed.so ${PLUGIN:-} \
		"$(dirname "$SLUICE")/../plugins/delayed/.libs/delayed.so" \
		"$(dirname "$SLUICE")/../../plugins/delayed/.libs/delayed.so" \
		./plugins/delayed/.libs/delayed.so \
		"$here/../plugins/delayed/.libs/delayed.so" \
		/tmp/build-bench/plugins/delayed/.libs/delayed.so) || exit 2
	plugin_ok "$PLUGIN" || exit 2
	PLUGIN_DIR=$(dirname "$(readlink -f "$PLUGIN")")
	if [ -n "$BASELINE" ]; then
		if [ -n "$BASE_PLUGIN" ]; then
			[ -f "$BASE_PLUGIN" ] || { echo "compare.sh: --base-plugin $BASE_PLUGIN not found" >&2; exit 2; }
		else
			BASE_PLUGIN=$(find_prog "delayed.so of the baseline" \
				"$(dirname "$BASELINE")/../plugins/delayed/.libs/delayed.so" \
				"$(dirname "$BASELINE")/../../plugins/delayed/.libs/delayed.so" 2>&1) ||
				{ echo "$BASE_PLUGIN: its delayed rows read n/a" >&2; BASE_PLUGIN=; }
		fi
		if [ -n "$BASE_PLUGIN" ]; then
			plugin_ok "$BASE_PLUGIN" || exit 2
			BASE_PLUGIN_DIR=$(dirname "$(readlink -f "$BASE_PLUGIN")")
		fi
	fi ;;
esac
# The ordered plugin, looked for like delayed.so; not found: the ordered rows read n/a
# (the plugin is optional, unlike delayed.so).
find_ordered() { # sluice-binary [explicit path]
	local p
	for p in ${2:-} "$(dirname "$1")/../plugins/ordered/.libs/ordered.so" \
		"$(dirname "$1")/../../plugins/ordered/.libs/ordered.so" \
		./plugins/ordered/.libs/ordered.so "$here/../plugins/ordered/.libs/ordered.so"; do
		if [ -f "$p" ]; then readlink -f "$p"; return 0; fi
		[ -n "${2:-}" ] && break # an explicit path only
	done
	return 1
}
ORDERED_SO=
BASE_ORDERED_SO=
case " $SCENARIOS " in
*" ordered "*|*" ordered1 "*)
	ORDERED_SO=$(find_ordered "$SLUICE" "$ORDERED_PLUGIN") ||
		echo "compare.sh: ordered.so not found (--ordered-plugin): sluice's ordered rows read n/a" >&2
	if [ -n "$BASELINE" ]; then
		BASE_ORDERED_SO=$(find_ordered "$BASELINE") ||
			echo "compare.sh: no ordered.so beside the baseline: its ordered rows read n/a" >&2
	fi ;;
esac
[ "$NO_MOSQUITTO" = 1 ] || [ -x "$MOSQUITTO" ] ||
	{ echo "compare.sh: $MOSQUITTO not found (or --no-mosquitto)" >&2; exit 2; }

BROKERS=("sluice|sluice|$SLUICE|$PLUGIN_DIR|$ORDERED_SO|")
[ -n "$BASELINE" ] && BROKERS+=("sluice-base|sluice|$BASELINE|$BASE_PLUGIN_DIR|$BASE_ORDERED_SO|")
if [ "$PERSIST" = 1 ]; then
	BROKERS+=("sluice-persist|sluice|$SLUICE|$PLUGIN_DIR|$ORDERED_SO|$PERSIST_EXTRA")
	[ -n "$BASELINE" ] &&
		BROKERS+=("sluice-base-persist|sluice|$BASELINE|$BASE_PLUGIN_DIR|$BASE_ORDERED_SO|$PERSIST_EXTRA")
fi
[ "$NO_MOSQUITTO" = 1 ] || BROKERS+=("mosquitto|mosquitto|$MOSQUITTO|||")
names=""
for b in "${BROKERS[@]}"; do names="$names ${b%%|*}"; done
if [ -z "$REF" ]; then
	case " $names " in
	*" mosquitto "*) REF=mosquitto ;;
	*" sluice-base "*) REF=sluice-base ;;
	*) REF=sluice ;;
	esac
fi
case " $names " in
*" $REF "*) ;;
*) echo "compare.sh: --ref $REF is not a column (columns:$names)" >&2; exit 2 ;;
esac

WORK=$(mktemp -d /tmp/sluice-compare.XXXXXX)
[ -n "$RAW" ] || RAW=$WORK/results.txt
: > "$RAW"
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null && sleep 0.2
		kill -9 "$p" 2>/dev/null
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BROKER_CPU=()
GEN_CPU=()
if [ "$PIN" = 1 ]; then
	BROKER_CPU=(taskset -c 0)
	GEN_CPU=(taskset -c 1)
fi

write_conf() { # kind port dir extra
	local kind=$1 port=$2 dir=$3 extra=$4
	if [ "$kind" = sluice ]; then
		# persistence defaults to true in sluice: off unless the column says so.
		case ";$extra" in *";persistence "*) ;; *) echo "persistence false" ;; esac
		cat <<-EOF
		listener $port 127.0.0.1
		allow_anonymous true
		max_queued_messages $QUEUE
		max_inflight_messages $INFLIGHT
		max_connections -1
		sys_interval 0
		log_type error
		EOF
	else
		cat <<-EOF
		per_listener_settings false
		allow_anonymous true
		listener $port 127.0.0.1
		max_connections -1
		max_queued_messages $QUEUE
		max_inflight_messages $INFLIGHT
		persistence false
		sys_interval 0
		set_tcp_nodelay true
		log_dest stderr
		log_type error
		EOF
	fi
	[ -n "$extra" ] && printf '%s\n' "$extra" | tr ';' '\n' | sed "s|@DIR@|$dir|g"
}

BPID=
BPORT=
start_broker() { # name kind program extra
	local name=$1 kind=$2 prog=$3 extra=$4 dir i
	dir=$WORK/$name
	mkdir -p "$dir"
	BPORT=$("$BENCH" --free-port) || return 1
	write_conf "$kind" "$BPORT" "$dir" "$extra" > "$dir/broker.conf"
	rm -f "$dir"/sluice.db*
	(cd "$dir" && exec "${BROKER_CPU[@]}" "$prog" -c "$dir/broker.conf" 2>>"$dir/log") &
	BPID=$!
	PIDS+=("$BPID")
	for i in $(seq 50); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$BPORT") 2>/dev/null; then
			return 0
		fi
		kill -0 "$BPID" 2>/dev/null || break
		sleep 0.1
	done
	echo "compare.sh: $name did not start; its log:" >&2
	cat "$dir/log" >&2
	return 1
}

stop_broker() {
	local i
	kill "$BPID" 2>/dev/null
	for i in $(seq 30); do
		kill -0 "$BPID" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$BPID" 2>/dev/null
	wait "$BPID" 2>/dev/null
	BPID=
}

bench_args() { # scenario qos -> arguments of sluice-bench
	local s=$1 q=$2 d=$DURATION
	case $s in
	fanin|fanout|pairs) echo "-s $s -c $CLIENTS -d $d" ;;
	shared) echo "-s shared --pubs $SHARED_PUBS --subs $SHARED_SUBS -d $d" ;;
	latency) echo "-s pairs -c $LAT_PAIRS -r $LAT_RATE -d $d" ;;
	connections) echo "-s connections -c 10 --idle $IDLE -d $d" ;;
	backlog) echo "-s backlog -n $BACKLOG" ;;
	delayed) echo "-s delayed -c 10 -n $DELAYED_N --delay-min $DELAYED_MIN" \
		"--delay-max $DELAYED_MAX" ;;
	release) echo "-s delayed -c 10 --delayed-rate $RELEASE_RATE -d $d" ;;
	# shared's shape, so that the rows compare; a broker without key order: 77 (n/a)
	ordered) echo "-s ordered --pubs $SHARED_PUBS --subs $SHARED_SUBS --keys $ORDERED_KEYS" \
		"--require-order -d $d" ;;
	ordered1) echo "-s ordered --pubs $SHARED_PUBS --subs $SHARED_SUBS --keys 1" \
		"--require-order -d $d" ;;
	esac
}

measure() { # scenario qos broker-entry
	local s=$1 q=$2 name kind prog pdir oso extra out rc limit
	IFS='|' read -r name kind prog pdir oso extra <<< "$3"
	# Delayed topics are sluice's delayed plugin; other brokers (and a sluice
	# whose delayed.so was not found) run the probe and get n/a.
	if [ "$kind" = sluice ] && [ -n "$pdir" ] && { [ "$s" = delayed ] || [ "$s" = release ]; }; then
		extra="${extra:+$extra;}plugin_dir $pdir;plugin delayed"
	fi
	if [ "$kind" = sluice ] && [ -n "$oso" ] && { [ "$s" = ordered ] || [ "$s" = ordered1 ]; }; then
		extra="${extra:+$extra;}plugin $oso;plugin_opt_keyed bench/ordered/#"
	fi
	start_broker "$name" "$kind" "$prog" "$extra" || { echo "ERROR $name $s $q start" >> "$RAW"; return; }
	limit=$(awk -v d="$DURATION" 'BEGIN { print int(3 * d + 90) }')
	# shellcheck disable=SC2046
	out=$("${GEN_CPU[@]}" "$BENCH" -p "$BPORT" --pid "$BPID" -V "$PROTO" -q "$q" -S 64 \
		-w "$WINDOW" -t "$limit" --quiet --label "$name" $(bench_args "$s" "$q") 2>"$WORK/err")
	rc=$?
	stop_broker
	if [ -s "$WORK/err" ]; then
		sed "s/^/  [$name $s qos $q] /" "$WORK/err" >&2
	fi
	printf '%s\n' "$out" | grep '^RESULT' | sed "s/^RESULT /RESULT row=$s rc=$rc /" >> "$RAW"
	if ! printf '%s\n' "$out" | grep -q '^RESULT'; then
		echo "RESULT row=$s rc=$rc label=$name qos=$q failed=1" >> "$RAW"
	fi
}

echo "sluice:    $SLUICE"
[ -n "$BASELINE" ] && echo "baseline:  $BASELINE$([ "$BASELINE" = "$SLUICE" ] && echo " (the same file)")"
[ "$NO_MOSQUITTO" = 1 ] || echo "mosquitto: $MOSQUITTO ($("$MOSQUITTO" -h 2>&1 | head -1))"
echo "bench:     $BENCH"
[ -n "$PLUGIN_DIR" ] && echo "delayed:   $PLUGIN_DIR/delayed.so"
[ -n "$ORDERED_SO" ] && echo "ordered:   $ORDERED_SO (keys: $ORDERED_KEYS)"
[ -n "$BASE_ORDERED_SO" ] && echo "base ord.: $BASE_ORDERED_SO"
if [ -n "$BASELINE" ] && [ -n "$PLUGIN_DIR" ]; then
	if [ -n "$BASE_PLUGIN_DIR" ]; then echo "base del.: $BASE_PLUGIN_DIR/delayed.so"
	else echo "base del.: none (its delayed rows: n/a)"; fi
fi
echo "columns:  $names; ratios against $REF"
echo "runs $RUNS, $DURATION s each, MQTT protocol level $PROTO, 64-byte payloads," \
	"window $WINDOW, max_queued_messages $QUEUE, max_inflight_messages $INFLIGHT," \
	"pinned: $([ "$PIN" = 1 ] && echo "broker CPU 0, generator CPU 1" || echo no)"
start=$(date +%s)
for s in $SCENARIOS; do
	for q in $QOS_LIST; do
		# Nothing is queued or scheduled reliably at QoS 0.
		case $s in backlog|delayed|release|ordered|ordered1) [ "$q" = 0 ] && continue ;; esac
		printf '%s qos %s:' "$s" "$q" >&2
		for r in $(seq "$RUNS"); do
			for b in "${BROKERS[@]}"; do
				printf ' %s' "${b%%|*}" >&2
				measure "$s" "$q" "$b"
			done
		done
		echo >&2
	done
done
echo "took $(( $(date +%s) - start )) s; raw results: $RAW"
[ "$RAW" = "$WORK/results.txt" ] && cp "$RAW" /tmp/sluice-compare-last.txt \
	&& echo "(copied to /tmp/sluice-compare-last.txt)"
echo

awk -v names="$names" -v ref="$REF" -v nruns="$RUNS" -f - "$RAW" <<'AWK'
function median(key,    n, i, j, t, a) {
	n = cnt[key]
	if (!n) return ""
	for (i = 1; i <= n; i++) a[i] = val[key, i]
	for (i = 2; i <= n; i++) {
		t = a[i]
		for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
		a[j + 1] = t
	}
	if (n % 2) return a[(n + 1) / 2]
	return (a[n / 2] + a[n / 2 + 1]) / 2
}
function spread(key,    n, i, lo, hi, v) { # max / min of the runs
	n = cnt[key]
	if (n < 2) return "-"
	for (i = 1; i <= n; i++) {
		v = val[key, i] + 0
		if (i == 1 || v < lo) lo = v
		if (i == 1 || v > hi) hi = v
	}
	if (lo <= 0) return hi > 0 ? "-" : "1.00"
	return sprintf("%.2f", hi / lo)
}
function short(name) { # sluice-base -> base, mosquitto -> mosq
	sub(/^sluice-/, "", name)
	return substr(name, 1, 4)
}
function fmt(v) {
	if (v == "") return "-"
	if (v >= 100) return sprintf("%.0f", v)
	if (v >= 1) return sprintf("%.2f", v)
	return sprintf("%.3f", v)
}
function missing(row) { # what a broker with exit 77 lacks
	return row ~ /^ordered/ ? "no key order" : "no delayed topics"
}
function ratio(a, b) {
	if (a == "" || b == "" || b == 0) return "-"
	return sprintf("%.2fx", a / b)
}
/^NOTE / { sub(/^NOTE /, ""); notes = notes "\n" $0; next }
/^ERROR / { err[$3 SUBSEP $4 SUBSEP $2]++; next }
/^RESULT / {
	delete f
	for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
	k = f["row"] SUBSEP f["qos"] SUBSEP f["label"]
	if (!(f["row"] SUBSEP f["qos"] in seenrow)) {
		seenrow[f["row"] SUBSEP f["qos"]] = 1
		order[++nrows] = f["row"] SUBSEP f["qos"]
	}
	runs[k]++
	if (f["rc"] == 77) { na[k] = 1; next } # the broker lacks the feature (delayed topics, key order)
	bad = f["rc"] != 0 || f["failed"] == 1
	if (f["qos"] > 0 && (f["lost"] > 0 || f["dups"] > 0 || f["order"] > 0)) bad = 1
	if (f["early"] > 0) bad = 1
	if (bad) { err[k]++; if (f["failed"] == 1) next }
	split("in out p50 p99 p999 max rss_kb cpu conn_rate kb_per_conn base with_idle drain lost dups early overdue rel_cpu", m, " ")
	for (i in m) { key = k SUBSEP m[i]; cnt[key]++; val[key, cnt[key]] = f[m[i]] }
}
END {
	nb = split(names, B, " ")
	printf "%-11s %-3s %-19s %10s %10s %8s %8s %8s %8s %7s %5s %4s  %s\n", "scenario", "qos", \
		"broker", "in msg/s", "out msg/s", "p50 ms", "p99 ms", "p99.9ms", "max ms", "RSS MB", \
		"CPU%", "err", "notes"
	for (r = 1; r <= nrows; r++) {
		split(order[r], rq, SUBSEP)
		for (b = 1; b <= nb; b++) {
			k = rq[1] SUBSEP rq[2] SUBSEP B[b]
			for (i in M) delete M[i]
			split("in out p50 p99 p999 max rss_kb cpu conn_rate kb_per_conn base with_idle drain lost early overdue rel_cpu", m, " ")
			for (i in m) M[m[i]] = median(k SUBSEP m[i])
			note = ""
			if (rq[1] == "connections" && M["conn_rate"] != "")
				note = sprintf("%.0f conn/s, %.2f kB/conn, idle-held out = %.0f%% of %s/s", \
					M["conn_rate"], M["kb_per_conn"], M["base"] ? 100 * M["with_idle"] / M["base"] : 0, fmt(M["base"]))
			if (rq[1] == "backlog" && M["drain"] != "")
				note = sprintf("publish %s/s, drain %s/s", fmt(M["in"]), fmt(M["drain"]))
			if ((rq[1] == "delayed" || rq[1] == "release") && M["in"] != "")
				note = sprintf("in = scheduled/s (acked), out = released/s, ms = lateness;" \
					" release CPU %.0f%%", 100 * M["rel_cpu"])
			if (M["early"] > 0) note = note sprintf(" early(median) %d", M["early"])
			if (M["overdue"] > 0) note = note sprintf(" overdue(median) %d: raise --lead", M["overdue"])
			if (M["lost"] > 0) note = note sprintf(" lost(median) %d", M["lost"])
			if (na[k] && M["in"] == "") {
				printf "%-11s %-3s %-19s %10s %10s %8s %8s %8s %8s %7s %5s %4s  %s\n", rq[1], rq[2], \
					B[b], "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "-", \
					missing(rq[1])
				for (i in M) S[B[b], i] = M[i]
				continue
			}
			printf "%-11s %-3s %-19s %10s %10s %8s %8s %8s %8s %7s %5s %4s  %s\n", rq[1], rq[2], B[b], \
				fmt(M["in"]), fmt(M["out"]), fmt(M["p50"]), fmt(M["p99"]), fmt(M["p999"]), \
				fmt(M["max"]), M["rss_kb"] == "" ? "-" : sprintf("%.1f", M["rss_kb"] / 1024), \
				M["cpu"] == "" ? "-" : sprintf("%.0f", 100 * M["cpu"]), \
				(err[k] + 0) "/" (runs[k] + 0), note
			if (nruns >= 3) # the spread of the runs behind each median
				printf "%-11s %-3s %-19s %10s %10s %8s %8s %8s %8s %7s %5s %4s  %s\n", "", "", \
					"  max/min", spread(k SUBSEP "in"), spread(k SUBSEP "out"), \
					spread(k SUBSEP "p50"), spread(k SUBSEP "p99"), spread(k SUBSEP "p999"), \
					spread(k SUBSEP "max"), spread(k SUBSEP "rss_kb"), spread(k SUBSEP "cpu"), \
					"", ""
			for (i in M) S[B[b], i] = M[i]
		}
		for (b = 1; b <= nb; b++) {
			# A -persist column against REF-persist when there is one.
			sref = ref
			if (B[b] ~ /-persist$/ && index(" " names " ", " " ref "-persist "))
				sref = ref "-persist"
			if (B[b] == ref || B[b] == sref) continue
			label = B[b] "/" short(sref)
			if (length(label) > 19) { label = B[b]; sub(/^sluice-/, "", label); label = label "/" short(sref) }
			note = ""
			if (rq[1] == "connections")
				note = "kB/conn " ratio(S[B[b], "kb_per_conn"], S[sref, "kb_per_conn"]) \
					", idle-held out " ratio(S[B[b], "with_idle"], S[sref, "with_idle"])
			if (rq[1] == "backlog")
				note = "drain " ratio(S[B[b], "drain"], S[sref, "drain"])
			if (na[rq[1] SUBSEP rq[2] SUBSEP sref])
				note = sref ": " missing(rq[1])
			else if (na[rq[1] SUBSEP rq[2] SUBSEP B[b]])
				note = B[b] ": " missing(rq[1])
			printf "%-11s %-3s %-19s %10s %10s %8s %8s %8s %8s %7s %5s %4s  %s\n", "", "", \
				label, ratio(S[B[b], "in"], S[sref, "in"]), \
				ratio(S[B[b], "out"], S[sref, "out"]), ratio(S[B[b], "p50"], S[sref, "p50"]), \
				ratio(S[B[b], "p99"], S[sref, "p99"]), ratio(S[B[b], "p999"], S[sref, "p999"]), \
				ratio(S[B[b], "max"], S[sref, "max"]), ratio(S[B[b], "rss_kb"], S[sref, "rss_kb"]), \
				"", "", note
		}
	}
	if (notes != "") print notes
}
AWK
