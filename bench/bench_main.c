/*
 * bench_main.c - sluice-bench: options, the hard time limit, the self-test.
 *
 * The generator must never outlive its welcome: alarm() arms a hard limit
 * (--time-limit, default 60 s) whose handler writes one line and _exit()s
 * with status 3, whatever the loop is doing. It only ever connects to a
 * loopback address. The exit status says what happened: 0 all well, 1 a
 * loss, duplicate or order error at QoS 1/2, a delayed message released
 * early (or a refused publish), 2 bad usage or a connection the broker
 * refused or dropped, 3 the hard time limit, 77 a scenario the broker cannot
 * run (delayed: no delayed topics; txn, txn-open: no transactions; ordered
 * with --require-order: no key order).
 *
 * --selftest runs every traffic scenario and the backlog briefly at QoS 0,
 * 1 and 2 with MQTT 3.1.1 and 5.0 against a running broker and fails on any
 * error: a quick check of the broker's delivery guarantees under load; and
 * backlog-group at QoS 1 and 2 (a burst of 2000 into an offline group). Then
 * a short delayed run (QoS 1 v3.1.1, QoS 2 v5), skipped when the broker has no
 * delayed topics, and short txn runs (QoS 1: v3.1.1 one message per
 * transaction, v5 ten, v5 ten with the commit pipelined), skipped when it has
 * no transactions. Last, the ordered scenario's checker on synthetic streams
 * (no broker: it must catch a reordered and a missing message) and short
 * ordered runs (QoS 1 v3.1.1 and v5, QoS 2 v5), skipped when the broker does
 * not keep key order on bench/ordered/#.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

static void on_alarm(int sig)
{
	static const char msg[] = "sluice-bench: hard time limit reached, exiting\n";
	ssize_t rc = write(2, msg, sizeof(msg) - 1);

	(void)rc;
	(void)sig;
	_exit(3);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sluice-bench [options]\n"
		"  -s, --scenario NAME   fanin|fanout|pairs|shared|connections|backlog|\n"
		"                        backlog-group|delayed|txn|txn-open|ordered\n"
		"  -H, --host ADDR       broker address, loopback only (127.0.0.1)\n"
		"  -p, --port N          broker port (1883)\n"
		"  -V, --protocol V      4 or 3.1.1, 5 or 5.0 (4)\n"
		"  -q, --qos N           0, 1 or 2 (0)\n"
		"  -S, --size BYTES      payload size, at least 16, ordered 28 (64; backlog-group 100)\n"
		"  -c, --clients N       publishers (fanin, shared, ordered), subscribers\n"
		"                        (fanout), pairs (pairs, connections) (10)\n"
		"      --pubs N, --subs N   override either side (shared, ordered: --subs\n"
		"                        consumers, 4; backlog-group: --pubs 1, --subs members 4)\n"
		"  -d, --duration S      measured seconds (5)\n"
		"      --warmup S        seconds before measuring (0.5)\n"
		"  -n, --count N         messages per publisher instead of a duration\n"
		"                        (backlog 1000, backlog-group 1000000)\n"
		"  -r, --rate R          messages/s per publisher (0 = as fast as the window allows)\n"
		"  -w, --window N        messages in flight per publisher (64)\n"
		"      --persistent      persistent sessions (clean session/start off)\n"
		"      --idle N          connections: idle clients to hold (10000)\n"
		"      --pid PID         broker pid: report its RSS and CPU from /proc\n"
		"  -t, --time-limit S    hard limit on the whole run (60)\n"
		"      --drain-timeout S (10)\n"
		"      --delay-min S, --delay-max S   delayed: each message's delay, spread\n"
		"                        uniformly in between (1, 3; millisecond resolution)\n"
		"      --delayed-rate R  delayed: -n per publisher (else R x -d in all), due at\n"
		"                        R per second once the lead has passed\n"
		"      --lead S          delayed-rate: seconds allowed for scheduling them all\n"
		"                        (1 + messages / 50000)\n"
		"      --txn-size K      txn: messages per transaction and per plain batch (10);\n"
		"                        txn-open: per open transaction (1)\n"
		"      --txn-pipeline    txn: send the commit right behind the half messages\n"
		"                        (default: once they are all acknowledged)\n"
		"      --slow-us US      backlog-group: the slow member's time per message\n"
		"                        (default: 10x the fast members' time per message)\n"
		"      --keys K          ordered: keys the messages are spread over (100)\n"
		"      --require-order   ordered: exit 77 when the broker does not keep key order\n"
		"      --username U, --password P   every client connects with them\n"
		"      --tls             connect over TLS (--cafile F: check the server's\n"
		"                        certificate against F; else it is not checked)\n"
		"      --label TEXT      copied into the RESULT line\n"
		"      --quiet           only the RESULT line\n"
		"      --selftest        short runs of every scenario at QoS 0/1/2, v3.1.1 and v5\n"
		"                        (and delayed, txn and ordered, when the broker has them)\n"
		"      --free-port       print a free TCP port on 127.0.0.1 and exit\n");
}

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		perror("sluice-bench: free port");
		return 2;
	}
	printf("%d\n", ntohs(a.sin_port));
	close(fd);
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int run_one(const struct opts *o)
{
	struct result r;
	int rc;

	net_errors = 0;
	if (net_init(o) < 0)
		return 2;
	rc = scen_run(o, &r);
	if (rc == 77 || rc == 1)
		return rc == 77 ? 77 : 2;
	if (rc < 0 || net_errors) {
		fprintf(stderr, "sluice-bench: %s qos %d: run failed (%llu connection errors)\n",
			o->scenario, o->qos, (unsigned long long)net_errors);
		return 2;
	}
	scen_print(o, &r);
	return scen_check(o, &r) < 0 ? 1 : 0;
}

/* 4 x 250 messages due within 0.1-0.6 s: under a second when the broker has the plugin. */
static int selftest_delayed(const struct opts *base, int v, int q)
{
	struct opts o = *base;

	o.scenario = "delayed";
	o.version = v;
	o.qos = q;
	o.clients = 4;
	o.pubs = 0;
	o.count = 250;
	o.delay_min = 0.1;
	o.delay_max = 0.6;
	o.delayed_rate = 0;
	o.quiet = true;
	o.drain_timeout = 5;
	return run_one(&o);
}

/* 4 producers x 100 messages at QoS 1: a few hundred transactions. */
static int selftest_txn(const struct opts *base, int v, uint32_t size, bool pipeline)
{
	struct opts o = *base;

	o.scenario = "txn";
	o.version = v;
	o.qos = 1;
	o.pubs = 4;
	o.count = 100;
	o.txn_size = size;
	o.txn_pipeline = pipeline;
	o.rate = 0;
	o.quiet = true;
	o.drain_timeout = 5;
	return run_one(&o);
}

/* Returns the number of failures; *n counts the runs. */
static int selftest_txns(const struct opts *base, int *n)
{
	static const struct {
		int v;
		uint32_t size;
		bool pipeline;
	} runs[] = { { 4, 1, false }, { 5, 10, false }, { 5, 10, true } };
	int i, bad = 0;

	for (i = 0; i < 3; i++) {
		int rc = selftest_txn(base, runs[i].v, runs[i].size, runs[i].pipeline);

		if (rc == 77) {
			printf("skipped: txn (the broker has no transactions)\n");
			break;
		}
		(*n)++;
		printf("%s: txn qos 1 v%d size %u%s\n", rc ? "FAIL" : "PASS", runs[i].v,
		       runs[i].size, runs[i].pipeline ? " pipelined" : "");
		bad += rc != 0;
	}
	return bad;
}

/* 4 publishers x 1000 messages over 10 keys into a group of 4; 77: no key order. */
static int selftest_ordered(const struct opts *base, int v, int q)
{
	struct opts o = *base;

	o.scenario = "ordered";
	o.version = v;
	o.qos = q;
	o.pubs = 4;
	o.subs = 4;
	o.count = 1000;
	o.keys = 10;
	o.require_order = true;
	o.rate = 0;
	o.quiet = true;
	o.drain_timeout = 5;
	return run_one(&o);
}

/* The checker first (no broker), then runs; returns the failures, *n counts the runs. */
static int selftest_ordereds(const struct opts *base, int *n)
{
	static const struct {
		int v, q;
	} runs[] = { { 4, 1 }, { 5, 1 }, { 5, 2 } };
	int i, bad = keyorder_selftest() != 0;

	(*n)++;
	printf("%s: ordered checker (synthetic streams)\n", bad ? "FAIL" : "PASS");
	for (i = 0; i < 3; i++) {
		int rc = selftest_ordered(base, runs[i].v, runs[i].q);

		if (rc == 77) {
			printf("skipped: ordered (the broker does not keep key order on "
			       "bench/ordered/#)\n");
			break;
		}
		(*n)++;
		printf("%s: ordered qos %d v%d\n", rc ? "FAIL" : "PASS", runs[i].q, runs[i].v);
		bad += rc != 0;
	}
	return bad;
}

static int selftest(const struct opts *base)
{
	static const char *const scen[] = { "pairs",  "fanin",	 "fanout",
					    "shared", "backlog", "backlog-group" };
	int v, q, i, bad = 0, n = 0;

	for (v = 4; v <= 5; v++)
		for (q = 0; q <= 2; q++)
			for (i = 0; i < 6; i++) {
				struct opts o = *base;
				int rc;

				o.scenario = scen[i];
				o.version = v;
				o.qos = q;
				o.clients = 4;
				o.subs = !strcmp(scen[i], "shared") ? 2 : 0;
				/* The backlog stays under the default max_queued_messages (1000),
				 * backlog-group's 2000 under the group's (10 times that). */
				o.count = !strcmp(scen[i], "backlog") ? 500 : 2000;
				o.quiet = true;
				o.drain_timeout = 5;
				if (q == 0 && !strncmp(scen[i], "backlog", 7))
					continue;
				rc = run_one(&o);
				n++;
				printf("%s: %s qos %d v%d\n", rc ? "FAIL" : "PASS", o.scenario, q,
				       v);
				bad += rc != 0;
			}
	for (v = 4; v <= 5; v++) {
		int rc = selftest_delayed(base, v, v - 3);

		if (rc == 77) {
			printf("skipped: delayed (the broker has no delayed topics)\n");
			break;
		}
		n++;
		printf("%s: delayed qos %d v%d\n", rc ? "FAIL" : "PASS", v - 3, v);
		bad += rc != 0;
	}
	bad += selftest_txns(base, &n);
	bad += selftest_ordereds(base, &n);
	printf("selftest: %d of %d passed\n", n - bad, n);
	return bad ? 1 : 0;
}

enum {
	O_PUBS = 256,
	O_SUBS,
	O_WARMUP,
	O_PERSIST,
	O_IDLE,
	O_PID,
	O_DRAIN,
	O_LABEL,
	O_USER,
	O_PASS,
	O_TLS,
	O_CAFILE,
	O_QUIET,
	O_SELFTEST,
	O_FREEPORT,
	O_DMIN,
	O_DMAX,
	O_DRATE,
	O_LEAD,
	O_TXN_SIZE,
	O_TXN_PIPE,
	O_SLOW_US,
	O_KEYS,
	O_REQ_ORDER,
	O_HELP,
};

static const struct option longopts[] = {
	{ "scenario", 1, 0, 's' },
	{ "host", 1, 0, 'H' },
	{ "port", 1, 0, 'p' },
	{ "protocol", 1, 0, 'V' },
	{ "qos", 1, 0, 'q' },
	{ "size", 1, 0, 'S' },
	{ "clients", 1, 0, 'c' },
	{ "pubs", 1, 0, O_PUBS },
	{ "subs", 1, 0, O_SUBS },
	{ "duration", 1, 0, 'd' },
	{ "warmup", 1, 0, O_WARMUP },
	{ "count", 1, 0, 'n' },
	{ "rate", 1, 0, 'r' },
	{ "window", 1, 0, 'w' },
	{ "persistent", 0, 0, O_PERSIST },
	{ "idle", 1, 0, O_IDLE },
	{ "pid", 1, 0, O_PID },
	{ "time-limit", 1, 0, 't' },
	{ "drain-timeout", 1, 0, O_DRAIN },
	{ "label", 1, 0, O_LABEL },
	{ "username", 1, 0, O_USER },
	{ "password", 1, 0, O_PASS },
	{ "tls", 0, 0, O_TLS },
	{ "cafile", 1, 0, O_CAFILE },
	{ "quiet", 0, 0, O_QUIET },
	{ "selftest", 0, 0, O_SELFTEST },
	{ "free-port", 0, 0, O_FREEPORT },
	{ "delay-min", 1, 0, O_DMIN },
	{ "delay-max", 1, 0, O_DMAX },
	{ "delayed-rate", 1, 0, O_DRATE },
	{ "lead", 1, 0, O_LEAD },
	{ "txn-size", 1, 0, O_TXN_SIZE },
	{ "txn-pipeline", 0, 0, O_TXN_PIPE },
	{ "slow-us", 1, 0, O_SLOW_US },
	{ "keys", 1, 0, O_KEYS },
	{ "require-order", 0, 0, O_REQ_ORDER },
	{ "help", 0, 0, O_HELP },
	{ 0, 0, 0, 0 },
};

static int parse_version(const char *s)
{
	if (!strcmp(s, "4") || !strcmp(s, "3.1.1") || !strcmp(s, "311"))
		return 4;
	if (!strcmp(s, "5") || !strcmp(s, "5.0"))
		return 5;
	return -1;
}

static int parse(int argc, char **argv, struct opts *o, int *mode)
{
	bool size_set = false;
	int ch;

	while ((ch = getopt_long(argc, argv, "s:H:p:V:q:S:c:d:n:r:w:t:", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			o->scenario = optarg;
			break;
		case 'H':
			o->host = optarg;
			break;
		case 'p':
			o->port = atoi(optarg);
			break;
		case 'V':
			o->version = parse_version(optarg);
			break;
		case 'q':
			o->qos = atoi(optarg);
			break;
		case 'S':
			o->payload = (size_t)atol(optarg);
			size_set = true;
			break;
		case 'c':
			o->clients = atoi(optarg);
			break;
		case O_PUBS:
			o->pubs = atoi(optarg);
			break;
		case O_SUBS:
			o->subs = atoi(optarg);
			break;
		case 'd':
			o->duration = atof(optarg);
			break;
		case O_WARMUP:
			o->warmup = atof(optarg);
			break;
		case 'n':
			o->count = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			o->rate = atof(optarg);
			break;
		case 'w':
			o->window = atoi(optarg);
			break;
		case O_PERSIST:
			o->persistent = true;
			break;
		case O_IDLE:
			o->idle = atoi(optarg);
			break;
		case O_PID:
			o->pid = (pid_t)atoi(optarg);
			break;
		case 't':
			o->time_limit = atoi(optarg);
			break;
		case O_DRAIN:
			o->drain_timeout = atof(optarg);
			break;
		case O_LABEL:
			o->label = optarg;
			break;
		case O_USER:
			o->username = optarg;
			break;
		case O_PASS:
			o->password = optarg;
			break;
		case O_TLS:
			o->tls = true;
			break;
		case O_CAFILE:
			o->cafile = optarg;
			break;
		case O_QUIET:
			o->quiet = true;
			break;
		case O_SELFTEST:
			*mode = 1;
			break;
		case O_FREEPORT:
			*mode = 2;
			break;
		case O_DMIN:
			o->delay_min = atof(optarg);
			break;
		case O_DMAX:
			o->delay_max = atof(optarg);
			break;
		case O_DRATE:
			o->delayed_rate = atof(optarg);
			break;
		case O_LEAD:
			o->lead = atof(optarg);
			break;
		case O_TXN_SIZE:
			o->txn_size = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case O_TXN_PIPE:
			o->txn_pipeline = true;
			break;
		case O_SLOW_US:
			o->slow_us = atof(optarg);
			break;
		case O_KEYS:
			o->keys = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case O_REQ_ORDER:
			o->require_order = true;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			return -1;
		}
	}
	if (optind != argc || o->version < 0 || o->qos < 0 || o->qos > 2 || o->port <= 0 ||
	    o->port > 65535 || o->clients < 1 || o->pubs < 0 || o->subs < 0 || o->window < 1 ||
	    o->window > 65535 || o->time_limit < 1 || o->duration <= 0 || o->idle < 0 ||
	    o->rate < 0 || o->payload > 65536 * 1024 || o->delay_min < 0 ||
	    o->delay_max < o->delay_min || o->delay_max >= 99999 || o->delayed_rate < 0 ||
	    o->lead < 0 || o->slow_us < 0 || o->keys < 1 || o->keys > ORDERED_MAX_KEYS) {
		fprintf(stderr, "sluice-bench: bad arguments (see --help)\n");
		return -1;
	}
	if (!size_set && !strcmp(o->scenario, "backlog-group"))
		o->payload = 100;
	if (o->payload < PAYLOAD_HDR)
		o->payload = PAYLOAD_HDR;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.scenario = "pairs",
		.host = "127.0.0.1",
		.port = 1883,
		.version = 4,
		.payload = 64,
		.clients = 10,
		.duration = 5,
		.warmup = 0.5,
		.window = 64,
		.idle = 10000,
		.time_limit = 60,
		.drain_timeout = 10,
		.delay_min = 1,
		.delay_max = 3,
		.keys = 100,
	};
	int mode = 0;

	if (parse(argc, argv, &o, &mode) < 0)
		return 2;
	if (mode == 2)
		return free_port();
	signal(SIGALRM, on_alarm);
	signal(SIGPIPE, SIG_IGN);
	alarm((unsigned)o.time_limit);
	raise_nofile();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (net_init(&o) < 0)
		return 2;
	if (mode == 1)
		return selftest(&o);
	return run_one(&o);
}
