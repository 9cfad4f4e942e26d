/*
 * bench.h - sluice-bench, the load generator: shared types.
 *
 * One process, one thread, one epoll loop drives every client. The MQTT
 * packets are built and parsed with the broker's own pure modules (codec,
 * props, framer, buf, utf8, mem), compiled into the generator; nothing else
 * of the broker is linked. Pointers passed to functions are borrowed.
 *
 *   bench_main.c   options, the hard time limit, the self-test, the report
 *   bench_scen.c   the scenarios (fan-in, fan-out, pairs, shared, ordered,
 *                  connections, backlog, backlog-group, delayed, txn, txn-open)
 *   bench_net.c    sockets, epoll, the MQTT client side of every flow
 *   bench_stats.c  latency histogram, loss/duplicate/order bookkeeping (and
 *                  ordered's per-key order), /proc
 */
#ifndef SLUICE_BENCH_H
#define SLUICE_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "buf.h"
#include "framer.h"

/* Every payload starts with these 16 bytes (little endian). */
#define PAYLOAD_HDR 16
/* Delayed messages add their due time (CLOCK_MONOTONIC ns) after them. */
#define PAYLOAD_DELAYED (PAYLOAD_HDR + 8)
/* "$delayed/SSSSS.mmm/": the delay is patched into the topic of each PUBLISH. */
#define DELAY_PREFIX "$delayed/"
#define DELAY_FIELD "00000.000"
/* ordered: after the header, the key's index, its per-key sequence and the run's tag. */
#define PAYLOAD_ORDERED (PAYLOAD_HDR + 12)
#define ORDERED_PREFIX "bench/ordered/"
#define ORDERED_GROUP "$share/bench/"
#define ORDERED_MAX_KEYS 1000000
/* txn: a transaction id is "{run}-p{publisher}-{seq}", seq in this many digits,
 * patched into the half and commit topics like the delay. */
#define TXN_SEQ_DIGITS 10
/* backlog-group: at most this many members; the slow one takes this many times as long
 * per message as the fast ones (bench_net.c). */
#define GROUP_MAX 64
#define SLOW_FACTOR 10
/* Latency histogram: log-linear, 32 sub-buckets per power of two (~3%). */
#define HIST_BUCKETS 2048

struct opts {
	const char *scenario;
	const char *host;
	int port;
	int version; /* 4 = MQTT 3.1.1, 5 = MQTT 5.0 */
	int qos;
	size_t payload;
	int pubs, subs; /* 0 = scenario default from clients */
	int clients;
	double duration; /* seconds of measurement (when count == 0) */
	double warmup;
	uint32_t count; /* messages per publisher; 0 = run for duration */
	double rate; /* messages/s per publisher; 0 = as fast as the window allows */
	int window; /* messages in flight per publisher */
	bool persistent;
	int idle; /* connections scenario: idle clients to hold */
	pid_t pid; /* broker pid for /proc sampling, 0 = none */
	int time_limit; /* seconds; the process always exits by then */
	double drain_timeout;
	const char *label;
	const char *username, *password; /* every client's credentials; NULL = none */
	bool tls; /* connect over TLS */
	const char *cafile; /* --tls: check the server's certificate against it */
	bool quiet;
	/* delayed */
	double delay_min, delay_max; /* seconds: each message's delay, uniform in between */
	double delayed_rate; /* > 0: releases due at this many per second, all publishers */
	double lead; /* delayed_rate: seconds from the start to the first release; 0 = guess */
	/* txn */
	uint32_t txn_size; /* messages per transaction (and per plain batch) */
	bool txn_pipeline; /* the commit right behind the half messages, not after their acks */
	/* backlog-group */
	double slow_us; /* the slow member's time per message; 0 = SLOW_FACTOR x the fast ones' */
	/* ordered */
	uint32_t keys; /* keys the messages are spread over (default 100) */
	bool require_order; /* exit 77 when the probe finds a broker that does not keep key order */
};

struct hist {
	uint64_t n;
	uint64_t max;
	uint64_t b[HIST_BUCKETS];
};

/* Which messages a receiver (one subscriber, or a whole shared group) has seen. */
struct seen {
	uint64_t *bits;
	uint32_t words;
	uint64_t unique, dups;
};

/*
 * ordered: what the whole group has seen of each (publisher, key) stream.
 * A publisher numbers its messages on each key from 1; across publishers
 * the broker's order of acceptance is not visible to the generator, so order
 * is checked per stream. Duplicates are the caller's (struct seen): they are
 * neither in order nor out of it.
 */
struct keyorder {
	uint32_t npubs, keys;
	uint32_t *last; /* npubs x keys: the highest sequence seen on the stream */
	uint32_t *n; /* npubs x keys: how many different ones */
	uint64_t reordered; /* a new message below the highest already seen on its stream */
};

struct sink {
	uint32_t pub_first, pub_n; /* the publishers whose messages it expects */
	struct seen *seen; /* pub_n entries */
};

enum role { ROLE_PUB, ROLE_SUB, ROLE_IDLE };
enum cstate {
	C_CONNECTING,
	C_WAIT_CONNACK,
	C_WAIT_SUBACK,
	C_READY,
	C_CLOSING,
	C_CLOSED,
	C_HANDSHAKE, /* --tls: TCP is up, the TLS handshake is under way */
};

struct client {
	int fd;
	enum role role;
	enum cstate state;
	int index; /* into the publisher or subscriber array of its run */
	int slot; /* in bench_net.c's list of clients */
	bool clean;
	bool epollout;
	bool dirty;
	bool failed;
	uint16_t keepalive;
	int64_t last_send_ns;
	struct framer fr;
	struct buf out;
	char id[64];
	struct client *next_dirty;
	struct held *held; /* backlog-group's slow member: acks it has not sent yet */
	void *tls; /* --tls: the connection's OpenSSL SSL, or NULL */
};

/* bench_tls.c: TLS in the shape of read()/write() (-1 with errno EAGAIN: wait). */
int btls_init(const char *cafile);
void *btls_new(int fd);
void btls_free(void *tls);
int btls_handshake(void *tls); /* 1 done, else -1 (EAGAIN: in progress) */
ssize_t btls_read(void *tls, void *buf, size_t n);
ssize_t btls_write(void *tls, const void *buf, size_t n);
bool btls_pending(void *tls);

/*
 * A txn publisher sends units of `size` messages, one unit at a time: a
 * transaction (half messages on $txn/half/{id}/{topic}, then the commit on
 * $txn/commit/{id}), a plain batch (the same messages on {topic}), or (open)
 * half messages left without a commit. A unit is done when all its acks are in.
 */
enum txn_mode { TXN_PLAIN, TXN_COMMIT, TXN_OPEN };

/* A PUBLISH encoded once; the packet id, the payload header and the txn seq are patched. */
struct tmpl {
	uint8_t *data;
	size_t len, pid_off, payload_off, seq_off; /* payload_off == len: no payload */
};

struct txn_pub {
	enum txn_mode mode;
	uint32_t size;
	uint32_t seq; /* units started in this phase; the current one's number (from 1) */
	uint32_t pos, acked, refused; /* messages of the current unit sent, acked, refused */
	uint16_t commit_id; /* packet id of the commit in flight; 0 = none */
	bool active, commit_done; /* active: a unit is under way */
	int64_t unit_start;
	uint32_t seq_base; /* the message sequence before this phase's first */
	int64_t *commit_ns; /* when each transaction's commit was sent, by seq - 1 */
	uint32_t commit_cap;
	struct tmpl half, commit; /* $txn/half/{id}/{topic}, $txn/commit/{id} */
};

/* ordered: message n of a publisher goes to key (first + n - 1) % keys, as its
 * (n - 1) / keys + 1st on that key; the key's digits are patched into the topic
 * and (MQTT 5) the sharding-key user property. */
struct ord_pub {
	uint32_t keys;
	uint32_t *count; /* messages sent per key */
	int width; /* digits of a key */
	size_t topic_off, prop_off; /* of the digits in the template; prop_off 0 = MQTT 3.1.1 */
};

struct pub {
	struct client *c;
	uint32_t id; /* written in every payload */
	char topic[160];
	uint32_t next_seq; /* next to send; first is 1 */
	uint32_t limit; /* 0 = no limit */
	uint32_t unacked; /* QoS 1/2 awaiting the broker */
	uint64_t acked;
	uint64_t recv; /* deliveries of its messages counted by subscribers */
	uint32_t n_recv; /* receivers each message should reach */
	uint16_t *free_ids;
	int n_free;
	uint8_t *id_state; /* per packet id: 0 free, 1 awaiting PUBACK/PUBREC, 2 PUBCOMP */
	int window;
	int64_t next_due;
	int64_t blocked_since;
	uint64_t written_off;
	uint8_t *tmpl;
	size_t tmpl_len, payload_off, pid_off;
	size_t delay_off; /* of DELAY_FIELD in tmpl; 0 = not a delayed topic */
	struct txn_pub *tx; /* NULL but in the txn scenarios */
	struct ord_pub *ord; /* NULL but in the ordered scenario */
	int64_t *sent_ns; /* txn: per packet id, when it was sent */
};

struct sub {
	struct client *c;
	char filter[192];
	struct sink *sink;
	uint32_t *last; /* last sequence seen per publisher of its sink */
	uint64_t recv;
	uint64_t order_err;
	int64_t first_ns, last_ns; /* its first and latest arrival */
};

/* Counters of one traffic run; the loop updates them. */
struct run {
	const struct opts *o;
	struct pub *pubs;
	int npubs;
	struct sub *subs;
	int nsubs;
	struct sink *sinks;
	int nsinks;
	bool producing;
	bool in_window;
	int64_t win_start, win_end; /* latency counted for messages sent in here */
	uint64_t sent, recv; /* totals */
	int64_t last_recv_ns; /* when the latest message arrived */
	uint64_t foreign; /* PUBLISH not from this run */
	uint64_t refused; /* acks with a failure reason code */
	struct hist lat;
	/* delayed: latency is lateness, arrival - (send time + delay) */
	bool delayed;
	uint32_t dl_min_ms, dl_max_ms; /* the delay of each message, uniform in between */
	double rel_rate; /* > 0: message k is due at rel_t0 + k / rel_rate instead */
	int64_t rel_t0;
	uint64_t rng;
	int64_t due_max; /* the latest due time sent */
	int64_t first_recv_ns;
	int64_t late_min; /* signed: below 0 only within the broker's 1 ms resolution */
	uint64_t early; /* arrived more than 1 ms before due */
	uint64_t overdue; /* due before it could be sent (rel_rate with too short a lead) */
	/* txn: units are transactions or plain batches (struct txn_pub) */
	bool txn_e2e; /* latency counts from the message's commit, not its send */
	bool new_units; /* publishers may start another unit */
	uint64_t units, unit_msgs, odd_rc; /* odd_rc: acks with a reason code 0x01-0x7f */
	uint64_t uncommitted; /* messages delivered before their commit was sent */
	uint64_t unit_sum_ns;
	int64_t last_unit_ns;
	struct hist ack, commit_lat, unit_lat;
	/* backlog-group: the slow member holds each ack for its processing time (bench_net.c) */
	struct sub *slow; /* NULL = every subscriber acks at once */
	int64_t slow_cost_ns; /* its fixed time per message; 0 = SLOW_FACTOR x the others' */
	int64_t drain_t0; /* the members' (re)connect: the fast ones' rate is counted from it */
	/* ordered: the group's view of every (publisher, key) stream; keys == 0: not ordered */
	struct keyorder ko;
	uint32_t ord_tag; /* in every payload: a message of another run is foreign */
};

/* bench_net.c */
extern struct run *net_run;
extern uint64_t net_errors;
int net_init(const struct opts *o);
struct client *net_client_new(enum role role, int index, const char *id, bool clean);
int net_connect(struct client *c);
int net_subscribe(struct client *c, const char *filter, int qos);
void net_disconnect(struct client *c);
void net_close(struct client *c);
void net_free(struct client *c);
/* One turn of the loop: produce, flush, wait at most timeout_ms, handle events. */
int net_poll(int timeout_ms);
/* Turns the loop until done() says so or deadline (monotonic ns) passes; 0 or -1 (timeout). */
int net_loop(int (*done)(void *), void *arg, int64_t deadline);
int pub_prepare(struct pub *p, const struct opts *o, uint16_t broker_rmax);
uint16_t net_broker_rmax(void);
int net_connect_many(struct client **cs, int n, int concurrency, int64_t deadline);
/* backlog-group: acks the slow member holds (received, not yet acknowledged). */
uint32_t net_held(const struct client *c);
/* ordered: p->ord's template (p->topic ends in width zeros). After pub_prepare. */
int ord_prepare(struct pub *p, const struct opts *o, uint32_t keys, int width);
/* ordered: how many of its first `sent` messages p published on key. */
uint32_t ord_sent_on(const struct pub *p, uint32_t key);
void ord_free(struct pub *p);
/* txn: p->tx set up (mode, size); ids are prefix + TXN_SEQ_DIGITS digits. After pub_prepare. */
int txn_prepare(struct pub *p, const struct opts *o, const char *prefix);
void txn_pub_free(struct pub *p);

/* bench_stats.c */
int64_t now_ns(void);
void hist_add(struct hist *h, uint64_t v);
uint64_t hist_pct(const struct hist *h, double pct);
int seen_mark(struct seen *s, uint32_t seq); /* 1 new, 0 duplicate, -1 no memory */
void seen_free(struct seen *s);
long proc_rss_kb(pid_t pid);
long proc_hwm_kb(pid_t pid); /* VmHWM: the peak RSS since the process started */
/* CPU seconds (user + system) used by pid so far; -1 when unknown. */
double proc_cpu_s(pid_t pid);
int keyorder_init(struct keyorder *ko, uint32_t npubs, uint32_t keys);
/* A message seq of stream (pub, key) reached the group; fresh: not seen before. */
void keyorder_arrive(struct keyorder *ko, uint32_t pub, uint32_t key, uint32_t seq, bool fresh);
/* Whether the stream's messages seen are exactly 1..sent. */
bool keyorder_complete(const struct keyorder *ko, uint32_t pub, uint32_t key, uint32_t sent);
void keyorder_free(struct keyorder *ko);
/* The checker on synthetic streams; 0 when it catches what it must. */
int keyorder_selftest(void);

/* bench_scen.c */
struct result {
	double in_rate, out_rate, elapsed;
	uint64_t sent, recv, expected, lost, dups, order_err, refused, foreign;
	uint64_t p50, p99, p999, max, lat_n;
	long rss_kb;
	double broker_cpu, own_cpu; /* fraction of one core */
	/* connections */
	double conn_rate, kb_per_conn, base_rate, with_idle_rate;
	int held;
	/* backlog */
	double drain_rate;
	/* shared, ordered */
	uint64_t share_min, share_max;
	/* ordered: streams (publisher, key) not exactly 1..n at the end; the probe's verdict */
	bool ordered;
	uint32_t keys;
	uint64_t gaps;
	int ordering; /* 1 the broker held a key's next message until the ack, 0 not, -1 unknown */
	/* delayed: in_rate is scheduling (acknowledged), out_rate releasing */
	uint64_t early, overdue;
	double late_min_ms, sched_s, rel_cpu;
	bool delayed;
	/* txn: both phases; txn-open: .txn (units opened, their rate), rss0_kb, rss_kb */
	struct txn_phase {
		double unit_rate, msg_rate, elapsed, unit_mean_ms;
		uint64_t units, msgs;
		uint64_t ack_p50, ack_p99, commit_p50, commit_p99, e2e_p50, e2e_p99;
		uint64_t unit_p50, unit_p99;
		double cpu, gen_cpu;
	} txn, plain;
	bool txn_run, txn_open;
	uint64_t odd_rc, uncommitted;
	long rss0_kb;
	/* backlog-group: in_rate is acknowledged with 0x00 per second, rss_kb the sampled peak */
	bool group_run;
	int members;
	uint64_t acked_ok, member_recv[GROUP_MAX];
	double member_rate[GROUP_MAX]; /* each member's first arrival to its last */
	double fast_rate, slow_rate, pub_s, drain_s, drain_cpu;
	long hwm_kb;
};
int scen_run(const struct opts *o, struct result *r);
void scen_print(const struct opts *o, const struct result *r);
/* 0 when a QoS >= 1 run had no loss, duplicate or order error. */
int scen_check(const struct opts *o, const struct result *r);

#endif
