/*
 * bench_scen.c - the scenarios: who publishes what to whom, the phases of a
 * run, and what is reported.
 *
 * A traffic run (fan-in, fan-out, pairs, shared) connects its subscribers
 * first, then its publishers, then publishes either for a warm-up plus a
 * measured window (rates count only what was sent and received inside the
 * window) or a fixed count per publisher (rates over the whole run). Then
 * it stops publishing and drains: it waits until every message the broker
 * acknowledged has arrived (QoS 1/2) or until nothing has arrived for
 * 300 ms (QoS 0), so that loss is counted on a quiet broker, not on
 * messages still in flight.
 *
 *   fanin    P publishers on topics .../fanin/{i}, one subscriber to .../fanin/+
 *   fanout   one publisher, S subscribers of its topic (out = in x S)
 *   pairs    P publisher/subscriber pairs, each pair on its own topic
 *   shared   P publishers, S consumers of $share/{group}/.../shared/+; the
 *            group as a whole must get every message once; each consumer in
 *            order; the split between consumers is reported
 *   ordered  P publishers spread QoS 1/2 messages over K keys (bench/ordered/{key}),
 *            a group of S consumers of $share/bench/bench/ordered/#; the group as a
 *            whole must see each publisher's messages on each key in order (below)
 *   connections  pairs without, then with N idle clients connected
 *   backlog  a persistent subscriber goes offline, a publisher fills its
 *            queue, the subscriber comes back and drains it
 *   backlog-group  the same for a shared group of persistent members, one of
 *            them slow (below)
 *   delayed  P publishers schedule messages on $delayed/{seconds}/.../delayed/{i},
 *            one subscriber of .../delayed/+ measures how late each is released
 *            (below)
 *   txn      P producers run transactions of K half messages and a commit, then
 *            publish as many messages plainly in batches of K; one durable
 *            subscriber of .../txn/+ (below)
 *   txn-open P producers open transactions and leave them open
 *
 * Topics and client ids carry a per-process run id so that runs against a
 * broker that is kept up do not see each other's messages or sessions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "mem.h"

#define CONNECT_CONCURRENCY 256
#define SETUP_NS (30 * 1000000000LL)

static unsigned run_id;

enum kind { K_FANIN, K_FANOUT, K_PAIRS, K_SHARED, K_DELAYED, K_TXN, K_GROUP, K_ORDERED };

static int64_t secs(double s)
{
	return (int64_t)(s * 1e9);
}

static void run_free(struct run *r)
{
	int i;

	for (i = 0; i < r->npubs; i++) {
		net_free(r->pubs[i].c);
		mem_free(r->pubs[i].tmpl);
		mem_free(r->pubs[i].free_ids);
		mem_free(r->pubs[i].id_state);
		ord_free(&r->pubs[i]);
		txn_pub_free(&r->pubs[i]);
	}
	for (i = 0; i < r->nsubs; i++) {
		net_free(r->subs[i].c);
		mem_free(r->subs[i].last);
	}
	for (i = 0; i < r->nsinks; i++) {
		uint32_t k;

		for (k = 0; k < r->sinks[i].pub_n; k++)
			seen_free(&r->sinks[i].seen[k]);
		mem_free(r->sinks[i].seen);
	}
	mem_free(r->pubs);
	mem_free(r->subs);
	mem_free(r->sinks);
	keyorder_free(&r->ko);
	memset(r, 0, sizeof(*r));
}

static int sink_init(struct sink *s, uint32_t first, uint32_t n)
{
	s->pub_first = first;
	s->pub_n = n;
	s->seen = mem_calloc(n, sizeof(*s->seen));
	return s->seen ? 0 : -1;
}

/* ordered: a key is its index in as many decimal digits as the last one has. */
static int ord_width(const struct opts *o)
{
	uint32_t last = o->keys - 1;
	int w = 1;

	while (last >= 10) {
		last /= 10;
		w++;
	}
	return w;
}

/* Lays out publishers, subscribers and sinks for one traffic scenario. */
static int plan(struct run *r, enum kind k, int np, int ns, const struct opts *o)
{
	const char *name[] = { "fanin", "fanout", "pair", "shared", "delayed", "txn", "group" };
	int i;

	r->npubs = np;
	r->nsubs = ns;
	r->nsinks = (k == K_FANIN || k == K_SHARED || k == K_DELAYED || k == K_TXN ||
		     k == K_GROUP || k == K_ORDERED)
			    ? 1
			    : ns;
	r->pubs = mem_calloc((size_t)np, sizeof(*r->pubs));
	r->subs = mem_calloc((size_t)ns, sizeof(*r->subs));
	r->sinks = mem_calloc((size_t)r->nsinks, sizeof(*r->sinks));
	if (!r->pubs || !r->subs || !r->sinks)
		return -1;
	for (i = 0; i < np; i++) {
		struct pub *p = &r->pubs[i];

		p->id = (uint32_t)i;
		if (k == K_FANOUT)
			snprintf(p->topic, sizeof(p->topic), "sb/%x/fanout", run_id);
		else if (k == K_DELAYED)
			snprintf(p->topic, sizeof(p->topic),
				 DELAY_PREFIX DELAY_FIELD "/sb/%x/delayed/%d", run_id, i);
		else if (k == K_ORDERED) /* the key's digits, patched per message */
			snprintf(p->topic, sizeof(p->topic), ORDERED_PREFIX "%0*u", ord_width(o),
				 0u);
		else
			snprintf(p->topic, sizeof(p->topic), "sb/%x/%s/%d", run_id, name[k], i);
		p->n_recv = k == K_FANOUT ? (uint32_t)ns : 1;
		p->limit = o->count;
	}
	for (i = 0; i < r->nsinks; i++) {
		int first = k == K_PAIRS ? i : 0, n = k == K_PAIRS ? 1 : np;

		if (sink_init(&r->sinks[i], (uint32_t)first, (uint32_t)n) < 0)
			return -1;
	}
	for (i = 0; i < ns; i++) {
		struct sub *s = &r->subs[i];

		s->sink = &r->sinks[r->nsinks == 1 ? 0 : i];
		s->last = mem_calloc(s->sink->pub_n, sizeof(*s->last));
		if (!s->last)
			return -1;
		if (k == K_FANIN)
			snprintf(s->filter, sizeof(s->filter), "sb/%x/fanin/+", run_id);
		else if (k == K_FANOUT)
			snprintf(s->filter, sizeof(s->filter), "sb/%x/fanout", run_id);
		else if (k == K_PAIRS)
			snprintf(s->filter, sizeof(s->filter), "sb/%x/pair/%d", run_id, i);
		else if (k == K_DELAYED)
			snprintf(s->filter, sizeof(s->filter), "sb/%x/delayed/+", run_id);
		else if (k == K_TXN)
			snprintf(s->filter, sizeof(s->filter), "sb/%x/txn/+", run_id);
		else if (k == K_GROUP)
			snprintf(s->filter, sizeof(s->filter), "$share/g%x/sb/%x/group/+", run_id,
				 run_id);
		else if (k == K_ORDERED)
			snprintf(s->filter, sizeof(s->filter), ORDERED_GROUP ORDERED_PREFIX "#");
		else
			snprintf(s->filter, sizeof(s->filter), "$share/g%x/sb/%x/shared/+", run_id,
				 run_id);
	}
	return 0;
}

static int make_clients(struct run *r, const struct opts *o, struct client ***all)
{
	struct client **cs = mem_calloc((size_t)(r->npubs + r->nsubs), sizeof(*cs));
	char id[64];
	int i;

	if (!cs)
		return -1;
	for (i = 0; i < r->nsubs; i++) {
		snprintf(id, sizeof(id), "sb-%x-s%d", run_id, i);
		cs[i] = r->subs[i].c = net_client_new(ROLE_SUB, i, id, !o->persistent);
		if (!cs[i])
			return -1;
		net_subscribe(cs[i], r->subs[i].filter, o->qos);
	}
	for (i = 0; i < r->npubs; i++) {
		snprintf(id, sizeof(id), "sb-%x-p%d", run_id, i);
		cs[r->nsubs + i] = r->pubs[i].c = net_client_new(ROLE_PUB, i, id, !o->persistent);
		if (!cs[r->nsubs + i])
			return -1;
	}
	*all = cs;
	return 0;
}

static uint64_t expected(const struct run *r)
{
	uint64_t e = 0;
	int i;
	uint32_t k;

	for (i = 0; i < r->nsinks; i++)
		for (k = 0; k < r->sinks[i].pub_n; k++) {
			const struct pub *p = &r->pubs[r->sinks[i].pub_first + k];

			e += p->next_seq - 1;
		}
	return e;
}

static uint64_t unique(const struct run *r)
{
	uint64_t u = 0;
	int i;
	uint32_t k;

	for (i = 0; i < r->nsinks; i++)
		for (k = 0; k < r->sinks[i].pub_n; k++)
			u += r->sinks[i].seen[k].unique;
	return u;
}

struct until {
	int64_t t;
};

static int time_reached(void *arg)
{
	return now_ns() >= ((struct until *)arg)->t;
}

struct drain {
	struct run *r;
	uint64_t last_recv;
	int64_t last_change, quiet_ns;
	bool need_sent; /* count mode: every publisher must reach its limit */
};

static int drained(void *arg)
{
	struct drain *d = arg;
	struct run *r = d->r;
	int64_t now = now_ns();
	int i;

	if (r->recv != d->last_recv) {
		d->last_recv = r->recv;
		d->last_change = now;
	}
	for (i = 0; i < r->npubs; i++) {
		const struct pub *p = &r->pubs[i];

		if (p->c->failed)
			return 1;
		if (d->need_sent && p->next_seq - 1 < p->limit)
			return 0;
		if (p->unacked)
			return 0;
	}
	if (unique(r) >= expected(r))
		return 1;
	return d->quiet_ns && now - d->last_change > d->quiet_ns;
}

static void close_all(struct client **cs, int n)
{
	struct until u = { now_ns() + 2000000000LL };
	int i;

	for (i = 0; i < n; i++)
		net_disconnect(cs[i]);
	/* Wait a little for the broker to close them, so that it is idle after. */
	for (i = 0; i < 200 && !time_reached(&u); i++) {
		int open = 0, j;

		for (j = 0; j < n; j++)
			open += cs[j]->fd >= 0;
		if (!open)
			break;
		net_poll(10);
	}
}

/* ordered: the (publisher, key) streams whose messages seen are not exactly 1..n. */
static uint64_t ord_gaps(const struct run *r)
{
	uint64_t gaps = 0;
	uint32_t key;
	int i;

	for (i = 0; i < r->npubs; i++)
		for (key = 0; key < r->ko.keys; key++) {
			const struct pub *p = &r->pubs[i];
			uint32_t n = ord_sent_on(p, key);

			gaps += !keyorder_complete(&r->ko, (uint32_t)i, key, n);
		}
	return gaps;
}

static void fill_result(struct run *r, struct result *res)
{
	int i;

	res->expected = expected(r);
	res->lost = res->expected - unique(r);
	res->dups = 0;
	for (i = 0; i < r->nsinks; i++) {
		uint32_t k;

		for (k = 0; k < r->sinks[i].pub_n; k++)
			res->dups += r->sinks[i].seen[k].dups;
	}
	res->order_err = 0;
	res->share_min = UINT64_MAX;
	res->share_max = 0;
	for (i = 0; i < r->nsubs; i++) {
		res->order_err += r->subs[i].order_err;
		if (r->subs[i].recv < res->share_min)
			res->share_min = r->subs[i].recv;
		if (r->subs[i].recv > res->share_max)
			res->share_max = r->subs[i].recv;
	}
	if (!r->nsubs)
		res->share_min = 0;
	if (r->ko.keys) {
		res->order_err += r->ko.reordered;
		res->gaps = ord_gaps(r);
	}
	res->sent = r->sent;
	res->recv = r->recv;
	res->refused = r->refused;
	res->foreign = r->foreign;
	res->lat_n = r->lat.n;
	res->p50 = hist_pct(&r->lat, 50);
	res->p99 = hist_pct(&r->lat, 99);
	res->p999 = hist_pct(&r->lat, 99.9);
	res->max = r->lat.max;
}

/* The measured part of a traffic run, once everyone is connected. */
static int measure(struct run *r, const struct opts *o, struct result *res)
{
	struct until u;
	struct drain d = { .r = r, .quiet_ns = o->qos ? 0 : 300000000LL };
	int64_t t0 = now_ns(), ta, tb;
	uint64_t s0 = 0, r0 = 0;
	double c0, m0;
	int i;

	for (i = 0; i < r->npubs; i++)
		r->pubs[i].next_due = t0 +
				      (o->rate > 0 ? (int64_t)(1e9 / o->rate) * i / r->npubs : 0);
	r->producing = true;
	if (o->count) {
		r->win_start = 0;
		r->win_end = INT64_MAX;
		ta = t0;
	} else {
		r->win_start = t0 + secs(o->warmup);
		r->win_end = r->win_start + secs(o->duration);
		u.t = r->win_start;
		net_loop(time_reached, &u, INT64_MAX);
		ta = now_ns();
		s0 = r->sent;
		r0 = r->recv;
	}
	c0 = proc_cpu_s(o->pid);
	m0 = proc_cpu_s(getpid());
	if (o->count) {
		d.need_sent = true;
		d.last_change = now_ns();
		if (!d.quiet_ns)
			d.quiet_ns = secs(o->drain_timeout);
		net_loop(drained, &d, INT64_MAX);
	} else {
		u.t = r->win_end;
		net_loop(time_reached, &u, INT64_MAX);
	}
	tb = now_ns();
	if (o->count && r->last_recv_ns > ta)
		tb = r->last_recv_ns; /* not the quiet time waited after it */
	res->broker_cpu = (proc_cpu_s(o->pid) - c0) / ((double)(tb - ta) / 1e9);
	res->own_cpu = (proc_cpu_s(getpid()) - m0) / ((double)(tb - ta) / 1e9);
	res->rss_kb = proc_rss_kb(o->pid);
	res->elapsed = (double)(tb - ta) / 1e9;
	res->in_rate = (double)(r->sent - s0) / res->elapsed;
	res->out_rate = (double)(r->recv - r0) / res->elapsed;
	r->producing = false;
	if (!o->count) {
		d.last_change = now_ns();
		if (net_loop(drained, &d, now_ns() + secs(o->drain_timeout)) < 0 && o->qos)
			fprintf(stderr, "sluice-bench: drain timed out after %.1f s\n",
				o->drain_timeout);
	}
	fill_result(r, res);
	return 0;
}

/* ordered: the group's view of every stream, and each publisher's keyed template. */
static int ord_setup(struct run *r, const struct opts *o)
{
	int i;

	r->ord_tag = run_id;
	if (keyorder_init(&r->ko, (uint32_t)r->npubs, o->keys) < 0) {
		fprintf(stderr, "sluice-bench: out of memory\n");
		return -1;
	}
	for (i = 0; i < r->npubs; i++)
		if (ord_prepare(&r->pubs[i], o, o->keys, ord_width(o)) < 0) {
			fprintf(stderr, "sluice-bench: out of memory\n");
			return -1;
		}
	return 0;
}

static int traffic(const struct opts *o, enum kind k, int np, int ns, struct result *res)
{
	struct run r = { .o = o };
	struct client **cs = NULL;
	int i, rc = -1;

	net_run = &r;
	if (plan(&r, k, np, ns, o) < 0 || make_clients(&r, o, &cs) < 0) {
		fprintf(stderr, "sluice-bench: out of memory\n");
		goto out;
	}
	if (net_connect_many(cs, np + ns, CONNECT_CONCURRENCY, now_ns() + SETUP_NS) < 0)
		goto out;
	for (i = 0; i < np; i++)
		if (pub_prepare(&r.pubs[i], o, net_broker_rmax()) < 0)
			goto out;
	if (k == K_ORDERED && ord_setup(&r, o) < 0)
		goto out;
	rc = measure(&r, o, res);
	close_all(cs, np + ns);
out:
	net_run = NULL;
	run_free(&r);
	mem_free(cs);
	return rc;
}

static int scen_connections(const struct opts *o, struct result *res)
{
	struct result with = { 0 };
	struct client **idle;
	struct until u;
	char id[64];
	long rss0, rss1;
	int64_t t0;
	int i, n = o->idle, rc = -1, np = o->clients;

	if (traffic(o, K_PAIRS, np, np, res) < 0)
		return -1;
	res->base_rate = res->out_rate;
	idle = mem_calloc((size_t)n, sizeof(*idle));
	if (!idle)
		return -1;
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "sb-%x-i%d", run_id, i);
		idle[i] = net_client_new(ROLE_IDLE, i, id, true);
		if (!idle[i])
			goto out;
	}
	rss0 = proc_rss_kb(o->pid);
	t0 = now_ns();
	if (net_connect_many(idle, n, CONNECT_CONCURRENCY, now_ns() + secs(o->time_limit)) < 0)
		goto out;
	res->conn_rate = n / ((double)(now_ns() - t0) / 1e9);
	u.t = now_ns() + 1000000000LL; /* let the broker settle */
	net_loop(time_reached, &u, INT64_MAX);
	rss1 = proc_rss_kb(o->pid);
	res->kb_per_conn = rss0 > 0 ? (double)(rss1 - rss0) / n : -1;
	res->held = n;
	if (traffic(o, K_PAIRS, np, np, &with) < 0)
		goto out;
	with.conn_rate = res->conn_rate;
	with.kb_per_conn = res->kb_per_conn;
	with.held = n;
	with.base_rate = res->base_rate;
	with.with_idle_rate = with.out_rate;
	*res = with;
	rc = 0;
out:
	for (i = 0; i < n; i++)
		net_free(idle[i]);
	mem_free(idle);
	return rc;
}

static int closed(void *arg)
{
	return ((struct client *)arg)->state == C_CLOSED;
}

static int scen_backlog(const struct opts *o, struct result *res)
{
	struct run r = { .o = o };
	struct drain d = { .r = &r };
	struct client *cs[2];
	uint32_t n = o->count ? o->count : 1000;
	int64_t t0;
	int rc = -1;

	if (o->qos == 0) {
		fprintf(stderr, "sluice-bench: backlog needs QoS 1 or 2 (QoS 0 is not queued "
				"for offline clients)\n");
		return 1;
	}
	net_run = &r;
	if (plan(&r, K_PAIRS, 1, 1, o) < 0)
		goto out;
	r.pubs[0].limit = n;
	r.pubs[0].n_recv = 0; /* nobody online: only the ack window applies */
	cs[0] = r.subs[0].c = net_client_new(ROLE_SUB, 0, "", false);
	cs[1] = r.pubs[0].c = net_client_new(ROLE_PUB, 0, "", true);
	if (!cs[0] || !cs[1])
		goto out;
	snprintf(cs[0]->id, sizeof(cs[0]->id), "sb-%x-bsub", run_id);
	snprintf(cs[1]->id, sizeof(cs[1]->id), "sb-%x-bpub", run_id);
	net_subscribe(cs[0], r.subs[0].filter, o->qos);
	if (net_connect_many(cs, 1, 1, now_ns() + SETUP_NS) < 0)
		goto out;
	net_disconnect(cs[0]);
	if (net_loop(closed, cs[0], now_ns() + SETUP_NS) < 0)
		goto out;
	if (net_connect_many(cs + 1, 1, 1, now_ns() + SETUP_NS) < 0 ||
	    pub_prepare(&r.pubs[0], o, net_broker_rmax()) < 0)
		goto out;
	r.win_start = r.win_end = 0; /* time spent queued is not latency */
	r.producing = true;
	d.need_sent = true;
	d.quiet_ns = 0;
	t0 = now_ns();
	while (!(r.pubs[0].next_seq - 1 == n && r.pubs[0].unacked == 0) && !cs[1]->failed &&
	       now_ns() - t0 < secs(o->drain_timeout))
		net_poll(10);
	res->elapsed = (double)(now_ns() - t0) / 1e9;
	res->in_rate = n / res->elapsed;
	r.producing = false;
	net_subscribe(cs[0], NULL, 0); /* the session keeps the subscription */
	t0 = now_ns();
	d.last_change = t0;
	d.quiet_ns = secs(o->drain_timeout);
	if (net_connect(cs[0]) < 0)
		goto out;
	net_loop(drained, &d, now_ns() + secs(o->drain_timeout) * 2);
	res->drain_rate = r.recv && r.last_recv_ns > t0
				  ? r.recv / ((double)(r.last_recv_ns - t0) / 1e9)
				  : 0;
	res->out_rate = res->drain_rate;
	res->rss_kb = proc_rss_kb(o->pid);
	fill_result(&r, res);
	close_all(cs, 2);
	rc = 0;
out:
	net_run = NULL;
	run_free(&r);
	return rc;
}

/*
 * delayed: the publishers schedule (each message's delay is written into its
 * topic, its due time = send time + delay into its payload), then everyone
 * waits for the releases. The scheduling rate counts acknowledged messages
 * (QoS 1/2: the plugin acknowledges once the message is stored). Latency is
 * lateness, arrival - due. Every scheduled message must arrive once (QoS 1/2),
 * and none earlier than the plugin's 1 ms resolution allows (bench_net.c).
 * Before that, one message on $delayed/0.100/... tells whether the broker has
 * delayed topics at all: a broker without them publishes it on the literal
 * topic, which nobody here subscribes to, so it never arrives (exit 77).
 */
#define PROBE_MS 100
#define PROBE_WAIT_NS 1500000000LL
#define RSS_EVERY_NS 100000000LL
#define QUIET_NS 300000000LL

struct dl_state {
	struct client **cs;
	long rss_max;
	int64_t next_rss;
};

static void dl_sample(struct dl_state *st, const struct opts *o, int64_t now)
{
	long kb;

	if (now < st->next_rss)
		return;
	st->next_rss = now + RSS_EVERY_NS;
	kb = proc_rss_kb(o->pid);
	if (kb > st->rss_max)
		st->rss_max = kb;
}

static int dl_setup(struct run *r, const struct opts *o, int np, struct dl_state *st)
{
	int i;

	net_run = r;
	if (plan(r, K_DELAYED, np, 1, o) < 0 || make_clients(r, o, &st->cs) < 0) {
		fprintf(stderr, "sluice-bench: out of memory\n");
		return -1;
	}
	if (net_connect_many(st->cs, np + 1, CONNECT_CONCURRENCY, now_ns() + SETUP_NS) < 0)
		return -1;
	for (i = 0; i < np; i++) {
		if (pub_prepare(&r->pubs[i], o, net_broker_rmax()) < 0)
			return -1;
		r->pubs[i].n_recv = 0; /* held by the broker for seconds: only the ack window */
	}
	r->delayed = true;
	r->late_min = INT64_MAX;
	r->rng = ((uint64_t)run_id << 32 | (uint64_t)now_ns()) | 1;
	r->win_start = 0;
	r->win_end = INT64_MAX;
	return 0;
}

static void dl_teardown(struct run *r, struct dl_state *st)
{
	if (st->cs)
		close_all(st->cs, r->npubs + r->nsubs);
	net_run = NULL;
	run_free(r);
	mem_free(st->cs);
	st->cs = NULL;
}

static bool dl_failed(const struct run *r)
{
	int i;

	for (i = 0; i < r->npubs; i++)
		if (r->pubs[i].c->failed)
			return true;
	return r->subs[0].c->failed;
}

/* Every publisher has sent what it may (reached its count, or production stopped)
 * and every one of those messages is acknowledged. */
static bool dl_scheduled(const struct run *r)
{
	int i;

	for (i = 0; i < r->npubs; i++) {
		const struct pub *p = &r->pubs[i];

		if (r->producing && (!p->limit || p->next_seq - 1 < p->limit))
			return false;
		if (p->unacked)
			return false;
	}
	return true;
}

/* Waits for the releases: all of them, or (QoS 0) a quiet spell after the last due. */
static void dl_wait(struct run *r, const struct opts *o, struct dl_state *st)
{
	uint64_t want = expected(r);
	int64_t deadline = r->due_max + secs(o->drain_timeout), now;

	while (unique(r) < want && !dl_failed(r)) {
		now = now_ns();
		if (now >= deadline)
			break;
		if (!o->qos && now > r->due_max + QUIET_NS && now - r->last_recv_ns > QUIET_NS)
			break;
		dl_sample(st, o, now);
		net_poll(10);
	}
}

static int dl_probe(const struct opts *o)
{
	struct opts po = *o;
	struct run r = { .o = &po };
	struct dl_state st = { 0 };
	int64_t end;
	int rc = -1;

	po.count = 1;
	po.rate = 0;
	if (dl_setup(&r, &po, 1, &st) < 0)
		goto out;
	r.dl_min_ms = r.dl_max_ms = PROBE_MS;
	r.producing = true;
	end = now_ns() + PROBE_WAIT_NS;
	while (!r.recv && !dl_failed(&r) && now_ns() < end)
		net_poll(10);
	rc = dl_failed(&r) ? -1 : r.recv ? 0 : 77;
	if (rc == 77 && !o->quiet)
		printf("delayed: not available - no message published on $delayed/0.100/... "
		       "arrived within %.1f s: the broker has no delayed topics\n",
		       (double)PROBE_WAIT_NS / 1e9);
out:
	dl_teardown(&r, &st);
	return rc;
}

/* Messages per publisher, and (delayed_rate) when the first falls due. */
static int dl_plan(const struct opts *o, int np, struct run *r, uint32_t *limit)
{
	double total = 0, need;

	if (o->delay_min < 0 || o->delay_max < o->delay_min || o->delay_max >= 99999) {
		fprintf(stderr, "sluice-bench: delayed: need 0 <= --delay-min <= --delay-max\n");
		return -1;
	}
	r->dl_min_ms = (uint32_t)(o->delay_min * 1000 + 0.5);
	r->dl_max_ms = (uint32_t)(o->delay_max * 1000 + 0.5);
	*limit = o->count;
	need = (o->count ? 0 : o->duration) + o->delay_max;
	if (o->delayed_rate > 0) {
		total = o->count ? (double)o->count * np : o->delayed_rate * o->duration;
		*limit = (uint32_t)((total + np - 1) / np);
		r->rel_rate = o->delayed_rate;
		/* Scheduling must be done before the first release: a guess, or --lead. */
		need = (o->lead > 0 ? o->lead : 1 + total / 50000) + total / o->delayed_rate;
	}
	if (need + 2 > o->time_limit) {
		fprintf(stderr,
			"sluice-bench: delayed: the last message falls due after about "
			"%.0f s, beyond the time limit (-t %d)\n",
			need, o->time_limit);
		return -1;
	}
	return 0;
}

static void dl_result(struct run *r, const struct opts *o, struct result *res)
{
	fill_result(r, res);
	res->delayed = true;
	res->early = r->early;
	res->overdue = r->overdue;
	res->late_min_ms = r->late_min == INT64_MAX ? 0 : (double)r->late_min / 1e6;
	res->out_rate = r->recv > 1 && r->last_recv_ns > r->first_recv_ns
				? (double)(r->recv - 1) /
					  ((double)(r->last_recv_ns - r->first_recv_ns) / 1e9)
				: 0;
	(void)o;
}

static int scen_delayed(const struct opts *o, struct result *res)
{
	struct opts lo = *o;
	struct run r = { .o = &lo };
	struct dl_state st = { .rss_max = -1 };
	int np = o->pubs ? o->pubs : o->clients, rc;
	uint32_t dmin, dmax;
	double rate;
	int64_t t0, t1, t2;
	double c0, c1, c2, m0, m1;
	uint64_t acked = 0;
	uint32_t limit;
	int i;

	if (lo.payload < PAYLOAD_DELAYED)
		lo.payload = PAYLOAD_DELAYED;
	if (dl_plan(&lo, np, &r, &limit) < 0)
		return 1;
	dmin = r.dl_min_ms, dmax = r.dl_max_ms, rate = r.rel_rate;
	rc = dl_probe(&lo);
	if (rc)
		return rc;
	run_id = (run_id * 2654435761u) & 0xffffff; /* the probe's clients and topics are done */
	if (dl_setup(&r, &lo, np, &st) < 0) {
		rc = -1;
		goto out;
	}
	for (i = 0; i < np; i++)
		r.pubs[i].limit = limit;
	r.dl_min_ms = dmin, r.dl_max_ms = dmax, r.rel_rate = rate;
	t0 = now_ns();
	for (i = 0; i < np; i++)
		r.pubs[i].next_due = t0 + (o->rate > 0 ? (int64_t)(1e9 / o->rate) * i / np : 0);
	r.rel_t0 = t0 + secs(o->lead > 0 ? o->lead : 1 + (double)limit * np / 50000);
	c0 = proc_cpu_s(o->pid);
	m0 = proc_cpu_s(getpid());
	r.producing = true;
	while (!dl_scheduled(&r) && !dl_failed(&r)) {
		int64_t now = now_ns();

		if (!limit && now - t0 >= secs(o->duration))
			r.producing = false;
		dl_sample(&st, o, now);
		net_poll(10);
	}
	r.producing = false;
	t1 = now_ns();
	c1 = proc_cpu_s(o->pid);
	m1 = proc_cpu_s(getpid());
	dl_wait(&r, &lo, &st);
	t2 = r.last_recv_ns > t1 ? r.last_recv_ns : now_ns();
	c2 = proc_cpu_s(o->pid);
	for (i = 0; i < np; i++)
		acked += o->qos ? r.pubs[i].acked : r.pubs[i].next_seq - 1;
	dl_result(&r, &lo, res);
	res->sched_s = (double)(t1 - t0) / 1e9;
	res->in_rate = (double)acked / res->sched_s;
	res->elapsed = (double)(t2 - t0) / 1e9;
	res->broker_cpu = (c1 - c0) / res->sched_s;
	res->rel_cpu = t2 > t1 ? (c2 - c1) / ((double)(t2 - t1) / 1e9) : 0;
	res->own_cpu = (m1 - m0) / res->sched_s; /* whether it limited the scheduling */
	st.next_rss = 0;
	dl_sample(&st, o, t2);
	res->rss_kb = st.rss_max;
	rc = dl_failed(&r) ? -1 : 0;
out:
	dl_teardown(&r, &st);
	return rc;
}

/*
 * backlog-group: a burst into a shared group whose members are all offline,
 * then drained by them, one of them slow. --subs members (default 4) of
 * $share/g{run}/.../group/+ with persistent sessions subscribe and go
 * offline; --pubs publishers (default 1) publish -n messages each (default
 * GROUP_N) as fast as their ack windows allow, which the broker keeps in the
 * group's queue (on disk beyond max_queued_in_memory); then the members
 * connect at once and drain it. The last member is slow: it processes one
 * message at a time and takes SLOW_FACTOR times as long per message as the
 * fast ones get them (bench_net.c, struct held). The group must get every
 * message once, each member in order. The publish rate counts PUBACKs with
 * reason code 0x00 over the publish (first send to last ack), the drain rate
 * every arrival from the members' connect to the last; the broker's RSS is
 * sampled every 100 ms and its VmHWM read at the end (the delayed
 * scenario's dl_sample; dl_scheduled tells when every message is
 * acknowledged). Last, the members connect with a clean session and leave,
 * so that the broker keeps no group.
 */
#define GROUP_N 1000000

static bool bg_failed(const struct run *r)
{
	int i;

	for (i = 0; i < r->npubs; i++)
		if (r->pubs[i].c->failed)
			return true;
	for (i = 0; i < r->nsubs; i++)
		if (r->subs[i].c->failed)
			return true;
	return false;
}

static uint64_t bg_acked(const struct run *r)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < r->npubs; i++)
		n += r->pubs[i].acked;
	return n;
}

/* The members subscribe and go offline, then the publishers connect (cs: members first). */
static int bg_setup(struct run *r, const struct opts *o, uint32_t limit, struct client ***cs)
{
	struct opts lo = *o;
	int i, ns = r->nsubs, np = r->npubs;

	lo.persistent = true; /* the members' sessions */
	if (make_clients(r, &lo, cs) < 0) {
		fprintf(stderr, "sluice-bench: out of memory\n");
		return -1;
	}
	for (i = 0; i < np; i++)
		r->pubs[i].c->clean = true;
	if (net_connect_many(*cs, ns, CONNECT_CONCURRENCY, now_ns() + SETUP_NS) < 0)
		return -1;
	close_all(*cs, ns);
	for (i = 0; i < ns; i++) {
		if ((*cs)[i]->fd >= 0 || (*cs)[i]->failed) {
			fprintf(stderr,
				"sluice-bench: backlog-group: member %d did not go offline\n", i);
			return -1;
		}
		net_subscribe((*cs)[i], NULL, 0); /* the session keeps the subscription */
	}
	if (net_connect_many(*cs + ns, np, CONNECT_CONCURRENCY, now_ns() + SETUP_NS) < 0)
		return -1;
	for (i = 0; i < np; i++) {
		if (pub_prepare(&r->pubs[i], o, net_broker_rmax()) < 0)
			return -1;
		r->pubs[i].limit = limit;
		r->pubs[i].n_recv = 0; /* nobody online: only the ack window applies */
	}
	return 0;
}

/* Publishes until every message is acknowledged, or no ack has come for --drain-timeout. */
static int bg_publish(struct run *r, const struct opts *o, struct dl_state *st, struct result *res)
{
	int64_t t0 = now_ns(), last = t0, now = t0;
	double c0 = proc_cpu_s(o->pid);
	uint64_t acked = 0;
	int rc = 0;

	r->producing = true;
	while (!dl_scheduled(r) && !bg_failed(r)) {
		now = now_ns();
		if (bg_acked(r) != acked) {
			acked = bg_acked(r);
			last = now;
		} else if (now - last > secs(o->drain_timeout)) {
			fprintf(stderr,
				"sluice-bench: backlog-group: publish stalled: no ack for %.1f s, "
				"%llu of %llu acknowledged\n",
				o->drain_timeout, (unsigned long long)acked,
				(unsigned long long)r->sent);
			rc = -1;
			break;
		}
		dl_sample(st, o, now);
		net_poll(10);
	}
	r->producing = false;
	now = now_ns();
	res->pub_s = (double)(now - t0) / 1e9;
	res->broker_cpu = (proc_cpu_s(o->pid) - c0) / res->pub_s;
	res->acked_ok = bg_acked(r) - r->refused - r->odd_rc;
	res->in_rate = (double)res->acked_ok / res->pub_s;
	return bg_failed(r) ? -1 : rc;
}

/* The members connect and drain the group's queue; the slow one then sends its last acks. */
static int bg_drain(struct run *r, const struct opts *o, struct client **members,
		    struct dl_state *st, struct result *res)
{
	struct drain d = { .r = r, .quiet_ns = secs(o->drain_timeout) };
	struct client *slow;
	double c0 = proc_cpu_s(o->pid);
	int64_t t0 = now_ns(), t1;

	r->slow = &r->subs[r->nsubs - 1];
	r->slow_cost_ns = (int64_t)(o->slow_us * 1000);
	r->drain_t0 = d.last_change = t0;
	slow = r->slow->c;
	if (net_connect_many(members, r->nsubs, CONNECT_CONCURRENCY, t0 + SETUP_NS) < 0)
		return -1;
	while (!drained(&d) && !bg_failed(r)) {
		dl_sample(st, o, now_ns());
		net_poll(10);
	}
	t1 = r->last_recv_ns > t0 ? r->last_recv_ns : now_ns();
	res->drain_s = (double)(t1 - t0) / 1e9;
	res->drain_rate = (double)r->recv / res->drain_s;
	res->out_rate = res->drain_rate;
	res->drain_cpu = (proc_cpu_s(o->pid) - c0) / res->drain_s;
	if (unique(r) < expected(r))
		fprintf(stderr,
			"sluice-bench: backlog-group: drain stalled: nothing arrived for %.1f s, "
			"%llu of %llu received (%llu refused)\n",
			o->drain_timeout, (unsigned long long)unique(r),
			(unsigned long long)expected(r), (unsigned long long)r->refused);
	while (net_held(slow) && !slow->failed && now_ns() - t1 < secs(o->drain_timeout))
		net_poll(10);
	return bg_failed(r) ? -1 : 0;
}

static void bg_result(struct run *r, struct result *res)
{
	double fast = 0;
	int i;

	fill_result(r, res);
	res->group_run = true;
	res->members = r->nsubs;
	res->odd_rc = r->odd_rc;
	for (i = 0; i < r->nsubs; i++) {
		const struct sub *s = &r->subs[i];

		res->member_recv[i] = s->recv;
		res->member_rate[i] = s->recv > 1 && s->last_ns > s->first_ns
					      ? (double)(s->recv - 1) /
							((double)(s->last_ns - s->first_ns) / 1e9)
					      : 0;
		if (s != r->slow)
			fast += res->member_rate[i];
	}
	res->fast_rate = fast / (r->nsubs - 1);
	res->slow_rate = res->member_rate[r->nsubs - 1];
	res->elapsed = res->pub_s + res->drain_s;
}

/* The members' sessions end: a clean connect of each, then a disconnect. */
static void bg_forget(struct run *r, struct client **members)
{
	int i;

	r->slow = NULL;
	close_all(members, r->nsubs);
	for (i = 0; i < r->nsubs; i++)
		members[i]->clean = true;
	if (net_connect_many(members, r->nsubs, CONNECT_CONCURRENCY, now_ns() + SETUP_NS) == 0)
		close_all(members, r->nsubs);
}

static int scen_backlog_group(const struct opts *o, struct result *res)
{
	struct run r = { .o = o };
	struct dl_state st = { .rss_max = -1 };
	struct client **cs = NULL;
	int ns = o->subs ? o->subs : 4, np = o->pubs ? o->pubs : 1, rc = -1;

	if (o->qos == 0 || ns < 2 || ns > GROUP_MAX) {
		fprintf(stderr,
			"sluice-bench: backlog-group needs QoS 1 or 2 (QoS 0 is not "
			"queued for a group) and 2 to %d members (--subs)\n",
			GROUP_MAX);
		return 1;
	}
	net_run = &r;
	if (plan(&r, K_GROUP, np, ns, o) < 0) {
		fprintf(stderr, "sluice-bench: out of memory\n");
		goto out;
	}
	if (bg_setup(&r, o, o->count ? o->count : GROUP_N, &cs) < 0)
		goto out;
	dl_sample(&st, o, now_ns());
	r.win_start = r.win_end = 0; /* time spent queued is not latency */
	if (bg_publish(&r, o, &st, res) < 0 || bg_drain(&r, o, cs, &st, res) < 0)
		goto out;
	bg_result(&r, res);
	st.next_rss = 0;
	dl_sample(&st, o, now_ns());
	res->rss_kb = st.rss_max;
	res->hwm_kb = proc_hwm_kb(o->pid);
	bg_forget(&r, cs);
	rc = 0;
out:
	if (cs)
		close_all(cs, np + ns);
	net_run = NULL;
	run_free(&r);
	mem_free(cs);
	return rc;
}

/*
 * ordered: --pubs publishers (as shared) publish QoS 1/2 messages round the
 * --keys K keys (default 100) on bench/ordered/{key}, with MQTT 5 also the
 * user property sharding-key = {key}; a group of --subs consumers (default
 * 4) of $share/bench/bench/ordered/# acknowledges each on arrival. A broker
 * that keeps key order (sluice with the ordered plugin and plugin_opt_keyed
 * bench/ordered/#) hands a key's next message to the group only once the one
 * before is acknowledged, so the group as a whole must see every publisher's
 * messages on every key in sequence (struct keyorder), whichever member gets
 * them. Rates and latency as for shared; a reordered message, a stream not
 * complete at the end, loss or a duplicate fails the run. The topics and the
 * group are fixed names (the broker's filter must name them), so messages
 * carry the run's tag and another run's are foreign.
 *
 * Before that a probe tells whether the broker keeps key order at all: a
 * group of one member that holds its ack of a key's first message for
 * ORD_HOLD_NS; a second message on the key that arrives meanwhile means it
 * does not. The run goes on either way (--require-order: exit 77).
 */
#define ORD_HOLD_NS 200000000LL

static int ord_verdict(struct run *r, int64_t end)
{
	struct client *c = r->subs[0].c;

	while (r->recv < 2 && !bg_failed(r) && now_ns() < end)
		net_poll(10);
	if (r->recv < 2) {
		if (!bg_failed(r))
			fprintf(stderr,
				"sluice-bench: ordered: probe: %llu of 2 messages arrived\n",
				(unsigned long long)r->recv);
		return -1;
	}
	return net_held(c) < 2; /* the first one's ack went before the second came */
}

/* 1 the broker keeps key order, 0 it does not, -1 unknown; -2 the probe failed to run. */
static int ord_probe(const struct opts *o)
{
	struct opts po = *o;
	struct run r = { .o = &po };
	struct client **cs = NULL;
	int v = -2;

	po.count = 2;
	po.rate = 0;
	po.keys = 1;
	po.persistent = false;
	net_run = &r;
	if (plan(&r, K_ORDERED, 1, 1, &po) < 0)
		goto out;
	/* A group of its own, so that the run's starts with nothing held. */
	snprintf(r.subs[0].filter, sizeof(r.subs[0].filter), "$share/probe%x/" ORDERED_PREFIX "#",
		 run_id);
	if (make_clients(&r, &po, &cs) < 0 || net_connect_many(cs, 2, 2, now_ns() + SETUP_NS) < 0 ||
	    pub_prepare(&r.pubs[0], &po, net_broker_rmax()) < 0 || ord_setup(&r, &po) < 0)
		goto out;
	r.win_start = r.win_end = 0;
	r.slow = &r.subs[0];
	r.slow_cost_ns = ORD_HOLD_NS;
	r.producing = true;
	v = ord_verdict(&r, now_ns() + ORD_HOLD_NS + PROBE_WAIT_NS);
	r.slow_cost_ns = 1; /* what it still holds goes now */
	while (net_held(r.subs[0].c) && !bg_failed(&r) && now_ns() < r.last_recv_ns + PROBE_WAIT_NS)
		net_poll(10);
	r.slow = NULL;
	close_all(cs, 2);
out:
	net_run = NULL;
	run_free(&r);
	mem_free(cs);
	return v;
}

static int ord_args(const struct opts *o, int ns)
{
	if (o->qos == 0) {
		fprintf(stderr, "sluice-bench: ordered needs QoS 1 or 2 (-q): a broker keeps key "
				"order by waiting for each message's ack\n");
		return -1;
	}
	if (o->keys < 1 || o->keys > ORDERED_MAX_KEYS || ns < 1) {
		fprintf(stderr, "sluice-bench: ordered: --keys 1 to %d, --subs at least 1\n",
			ORDERED_MAX_KEYS);
		return -1;
	}
	return 0;
}

static int scen_ordered(const struct opts *o, struct result *res)
{
	struct opts lo = *o;
	int np = o->pubs ? o->pubs : o->clients, ns = o->subs ? o->subs : 4, v;

	if (ord_args(o, ns) < 0)
		return 1;
	if (lo.payload < PAYLOAD_ORDERED)
		lo.payload = PAYLOAD_ORDERED;
	v = ord_probe(&lo);
	if (v == -2)
		return -1;
	if (v == 0 && !o->quiet)
		printf("ordered: %s - the group got a key's second message while the first was "
		       "not acknowledged: the broker does not keep key order on " ORDERED_PREFIX
		       "# (no ordered plugin, or no plugin_opt_keyed " ORDERED_PREFIX "#)\n",
		       o->require_order ? "not available" : "warning");
	if (v == 0 && o->require_order)
		return 77;
	run_id = (run_id * 2654435761u) & 0xffffff; /* the probe's ids and tag are done */
	if (traffic(&lo, K_ORDERED, np, ns, res) < 0)
		return -1;
	res->ordered = true;
	res->keys = o->keys;
	res->ordering = v;
	return 0;
}

/*
 * txn: P producers (--pubs, default 4) each run units back to back, one at a
 * time: first transactions (K half messages on $txn/half/{id}/.../txn/{i},
 * pipelined, then the commit once they are all acknowledged, or right behind
 * them with --txn-pipeline), then as many messages again as plain batches of
 * K on .../txn/{i} (each batch pipelined, the next once it is acknowledged).
 * One subscriber of .../txn/+ with a persistent session, so that a plain
 * message too is stored before its PUBACK: both phases are durable. The
 * ratio of the mean unit times is what a transaction costs over publishing
 * its messages plainly. A committed message is timed from its commit's send;
 * one that arrives before its commit was sent is an error. Before that, one
 * transaction of one message tells whether the broker has transactions:
 * without the plugin its half message goes to the literal $txn/half/...
 * topic and nothing reaches the subscriber (exit 77).
 *
 * txn-open: P producers (default 10) open -n transactions each of K
 * (default 1) half messages and leave them open; reported: how fast, and the
 * broker's RSS before and after. A TXN-OPEN line names one transaction and
 * its owner, for a commit after a restart (bench/txn-restart.sh).
 */
#define TXN_PROBE_WAIT_NS 1500000000LL
#define TXN_SETTLE_NS 1000000000LL

static int tx_clients(struct run *r, const struct opts *o, bool durable, struct client ***all)
{
	struct client **cs = mem_calloc((size_t)(r->npubs + r->nsubs), sizeof(*cs));
	char id[64];
	int i;

	if (!cs)
		return -1;
	for (i = 0; i < r->nsubs; i++) {
		snprintf(id, sizeof(id), "sb-%x-s%d", run_id, i);
		cs[i] = r->subs[i].c = net_client_new(ROLE_SUB, i, id, !durable);
		if (!cs[i])
			goto fail;
		net_subscribe(cs[i], r->subs[i].filter, o->qos);
	}
	for (i = 0; i < r->npubs; i++) {
		snprintf(id, sizeof(id), "sb-%x-p%d", run_id, i);
		cs[r->nsubs + i] = r->pubs[i].c = net_client_new(ROLE_PUB, i, id, true);
		r->pubs[i].tx = mem_calloc(1, sizeof(*r->pubs[i].tx));
		if (!cs[r->nsubs + i] || !r->pubs[i].tx)
			goto fail;
		r->pubs[i].tx->size = o->txn_size;
		r->pubs[i].n_recv = r->nsubs ? 1 : 0;
	}
	*all = cs;
	return 0;
fail:
	mem_free(cs); /* the clients made so far go with run_free() */
	return -1;
}

/* np producers, ns (0 or 1) subscribers, connected, templates ready. */
static int tx_setup(struct run *r, const struct opts *o, int np, int ns, bool durable,
		    struct client ***cs)
{
	char prefix[48];
	int i;

	net_run = r;
	if (plan(r, K_TXN, np, ns, o) < 0 || tx_clients(r, o, durable, cs) < 0) {
		fprintf(stderr, "sluice-bench: out of memory\n");
		return -1;
	}
	if (net_connect_many(*cs, np + ns, CONNECT_CONCURRENCY, now_ns() + SETUP_NS) < 0)
		return -1;
	for (i = 0; i < np; i++) {
		snprintf(prefix, sizeof(prefix), "%x-p%d-", run_id, i);
		if (pub_prepare(&r->pubs[i], o, net_broker_rmax()) < 0 ||
		    txn_prepare(&r->pubs[i], o, prefix) < 0) {
			fprintf(stderr, "sluice-bench: out of memory\n");
			return -1;
		}
	}
	r->win_start = 0;
	r->win_end = INT64_MAX;
	return 0;
}

static void tx_teardown(struct run *r, struct client **cs)
{
	if (cs)
		close_all(cs, r->npubs + r->nsubs);
	net_run = NULL;
	run_free(r);
	mem_free(cs);
}

static bool tx_failed(const struct run *r)
{
	int i;

	for (i = 0; i < r->npubs; i++)
		if (r->pubs[i].c->failed)
			return true;
	return r->nsubs && r->subs[0].c->failed;
}

/* A unit is under way, or one may still start. */
static bool tx_busy(const struct run *r)
{
	int i;

	for (i = 0; i < r->npubs; i++) {
		const struct pub *p = &r->pubs[i];

		if (p->tx->active)
			return true;
		if (r->new_units && (!p->limit || p->next_seq - 1 + p->tx->size <= p->limit))
			return true;
	}
	return false;
}

static bool tx_stalled(const struct run *r, const struct opts *o, int64_t now)
{
	int i;

	for (i = 0; i < r->npubs; i++) {
		const struct txn_pub *tx = r->pubs[i].tx;

		if (tx->active && now - tx->unit_start > secs(o->drain_timeout)) {
			fprintf(stderr,
				"sluice-bench: %s: a unit of publisher %d has waited %.1f s "
				"for its acks\n",
				o->scenario, i, o->drain_timeout);
			return true;
		}
	}
	return false;
}

static void tx_reset(struct run *r, const struct opts *o, enum txn_mode mode, int64_t t0)
{
	int i;

	r->units = r->unit_msgs = r->unit_sum_ns = 0;
	memset(&r->lat, 0, sizeof(r->lat));
	memset(&r->ack, 0, sizeof(r->ack));
	memset(&r->commit_lat, 0, sizeof(r->commit_lat));
	memset(&r->unit_lat, 0, sizeof(r->unit_lat));
	r->txn_e2e = mode == TXN_COMMIT;
	r->last_unit_ns = t0;
	for (i = 0; i < r->npubs; i++) {
		struct pub *p = &r->pubs[i];

		p->tx->mode = mode;
		p->tx->seq = 0;
		p->tx->active = false;
		p->tx->seq_base = p->next_seq - 1;
		p->next_due = t0 + (o->rate > 0 ? (int64_t)(1e9 / o->rate) * i / r->npubs : 0);
	}
}

/* Runs units until each publisher reached its limit (or, timed, -d has passed). */
static int tx_drive(struct run *r, const struct opts *o, bool timed, int64_t t0)
{
	int rc = 0;

	r->new_units = true;
	r->producing = true;
	while (tx_busy(r)) {
		int64_t now = now_ns();

		if (tx_failed(r) || tx_stalled(r, o, now)) {
			rc = -1;
			break;
		}
		if (timed && now - t0 >= secs(o->duration))
			r->new_units = false;
		net_poll(10);
	}
	r->new_units = false;
	r->producing = false;
	return rc;
}

static void tx_fill(const struct run *r, struct txn_phase *ph, int64_t t0)
{
	ph->elapsed = (double)(r->last_unit_ns - t0) / 1e9;
	ph->units = r->units;
	ph->msgs = r->unit_msgs;
	ph->unit_rate = ph->elapsed > 0 ? (double)r->units / ph->elapsed : 0;
	ph->msg_rate = ph->elapsed > 0 ? (double)r->unit_msgs / ph->elapsed : 0;
	ph->unit_mean_ms = r->units ? (double)r->unit_sum_ns / (double)r->units / 1e6 : 0;
	ph->ack_p50 = hist_pct(&r->ack, 50);
	ph->ack_p99 = hist_pct(&r->ack, 99);
	ph->commit_p50 = hist_pct(&r->commit_lat, 50);
	ph->commit_p99 = hist_pct(&r->commit_lat, 99);
	ph->e2e_p50 = hist_pct(&r->lat, 50);
	ph->e2e_p99 = hist_pct(&r->lat, 99);
	ph->unit_p50 = hist_pct(&r->unit_lat, 50);
	ph->unit_p99 = hist_pct(&r->unit_lat, 99);
}

/* One phase: units of this mode, then (with a subscriber) the wait for every delivery. */
static int tx_phase(struct run *r, const struct opts *o, enum txn_mode mode, bool timed,
		    struct txn_phase *ph)
{
	struct drain d = { .r = r };
	int64_t t0 = now_ns(), t1;
	double c0 = proc_cpu_s(o->pid), m0 = proc_cpu_s(getpid());
	int rc;

	tx_reset(r, o, mode, t0);
	rc = tx_drive(r, o, timed, t0);
	t1 = r->last_unit_ns > t0 ? r->last_unit_ns : now_ns();
	ph->cpu = (proc_cpu_s(o->pid) - c0) / ((double)(t1 - t0) / 1e9);
	ph->gen_cpu = (proc_cpu_s(getpid()) - m0) / ((double)(t1 - t0) / 1e9);
	tx_fill(r, ph, t0);
	if (rc == 0 && r->nsubs) {
		d.last_change = now_ns();
		d.quiet_ns = secs(o->drain_timeout);
		if (net_loop(drained, &d, now_ns() + secs(o->drain_timeout)) < 0)
			fprintf(stderr, "sluice-bench: drain timed out after %.1f s\n",
				o->drain_timeout);
		/* the e2e percentiles of the phase include the drain's arrivals */
		ph->e2e_p50 = hist_pct(&r->lat, 50);
		ph->e2e_p99 = hist_pct(&r->lat, 99);
	}
	return rc;
}

static int tx_probe(const struct opts *o)
{
	struct opts po = *o;
	struct run r = { .o = &po };
	struct client **cs = NULL;
	int64_t end;
	int rc = -1;

	po.count = 1;
	po.rate = 0;
	po.txn_size = 1;
	po.payload = PAYLOAD_HDR;
	if (tx_setup(&r, &po, 1, 1, false, &cs) < 0)
		goto out;
	r.pubs[0].limit = 1;
	tx_reset(&r, &po, TXN_COMMIT, now_ns());
	r.new_units = r.producing = true;
	end = now_ns() + TXN_PROBE_WAIT_NS;
	while (!r.recv && !tx_failed(&r) && now_ns() < end)
		net_poll(10);
	rc = tx_failed(&r) ? -1 : r.recv ? 0 : 77;
	if (rc == 77 && !o->quiet)
		printf("%s: not available - a committed transaction's message did not arrive "
		       "within %.1f s: the broker has no transactions\n",
		       o->scenario, (double)TXN_PROBE_WAIT_NS / 1e9);
out:
	tx_teardown(&r, cs);
	return rc;
}

/* Messages per publisher rounded up to whole units; 0 = timed. */
static void tx_limits(struct run *r, uint32_t count, uint32_t size)
{
	int i;

	for (i = 0; i < r->npubs; i++)
		r->pubs[i].limit = (count + size - 1) / size * size;
}

/* The plain phase sends what the txn phase sent, publisher by publisher. */
static void tx_plain_limits(struct run *r)
{
	int i;

	for (i = 0; i < r->npubs; i++) {
		struct pub *p = &r->pubs[i];

		p->limit = 2 * (p->next_seq - 1) - p->tx->seq_base;
	}
}

static int tx_begin(const struct opts *o, struct opts *lo, uint32_t size)
{
	*lo = *o;
	lo->txn_size = o->txn_size ? o->txn_size : size;
	if (o->qos == 0) {
		fprintf(stderr, "sluice-bench: %s needs QoS 1 or 2 (-q)\n", o->scenario);
		return 1;
	}
	if (lo->payload > 65536 || lo->txn_size > 100000) {
		fprintf(stderr, "sluice-bench: %s: -S at most 65536, --txn-size at most 100000\n",
			o->scenario);
		return 1;
	}
	return tx_probe(lo);
}

static int scen_txn(const struct opts *o, struct result *res)
{
	struct opts lo;
	struct run r = { .o = &lo };
	struct client **cs = NULL;
	struct until u;
	int np = o->pubs ? o->pubs : 4, rc = tx_begin(o, &lo, 10);

	if (rc)
		return rc;
	run_id = (run_id * 2654435761u) & 0xffffff; /* the probe's ids are done */
	rc = -1;
	if (tx_setup(&r, &lo, np, 1, true, &cs) < 0)
		goto out;
	tx_limits(&r, o->count, lo.txn_size);
	if (tx_phase(&r, &lo, TXN_COMMIT, !o->count, &res->txn) < 0)
		goto out;
	tx_plain_limits(&r);
	/* A pause, so that the store's tail of the first phase is not the second's. */
	u.t = now_ns() + TXN_SETTLE_NS;
	net_loop(time_reached, &u, INT64_MAX);
	if (tx_phase(&r, &lo, TXN_PLAIN, false, &res->plain) < 0)
		goto out;
	fill_result(&r, res);
	res->txn_run = true;
	res->odd_rc = r.odd_rc;
	res->uncommitted = r.uncommitted;
	res->rss_kb = proc_rss_kb(o->pid);
	res->elapsed = res->txn.elapsed + res->plain.elapsed;
	rc = 0;
out:
	tx_teardown(&r, cs);
	return rc;
}

static int scen_txn_open(const struct opts *o, struct result *res)
{
	struct opts lo;
	struct run r = { .o = &lo };
	struct client **cs = NULL;
	struct until u;
	int np = o->pubs ? o->pubs : 10, rc = tx_begin(o, &lo, 1);

	if (rc)
		return rc;
	run_id = (run_id * 2654435761u) & 0xffffff;
	rc = -1;
	if (tx_setup(&r, &lo, np, 0, false, &cs) < 0)
		goto out;
	tx_limits(&r, o->count ? o->count : 1000, lo.txn_size);
	res->rss0_kb = proc_rss_kb(o->pid);
	if (tx_phase(&r, &lo, TXN_OPEN, false, &res->txn) < 0)
		goto out;
	u.t = now_ns() + TXN_SETTLE_NS;
	net_loop(time_reached, &u, INT64_MAX);
	res->rss_kb = proc_rss_kb(o->pid);
	res->txn_open = true;
	res->refused = r.refused;
	res->odd_rc = r.odd_rc;
	if (!o->quiet)
		printf("TXN-OPEN owner=%s txn=%x-p0-%0*u topic=%s\n", r.pubs[0].c->id, run_id,
		       TXN_SEQ_DIGITS, 1u, r.pubs[0].topic);
	rc = 0;
out:
	tx_teardown(&r, cs);
	return rc;
}

int scen_run(const struct opts *o, struct result *r)
{
	int c = o->clients;

	if (!run_id)
		run_id = (unsigned)getpid() ^ (unsigned)now_ns();
	run_id = (run_id * 2654435761u) & 0xffffff;
	memset(r, 0, sizeof(*r));
	if (!strcmp(o->scenario, "fanin"))
		return traffic(o, K_FANIN, o->pubs ? o->pubs : c, o->subs ? o->subs : 1, r);
	if (!strcmp(o->scenario, "fanout"))
		return traffic(o, K_FANOUT, o->pubs ? o->pubs : 1, o->subs ? o->subs : c, r);
	if (!strcmp(o->scenario, "pairs"))
		return traffic(o, K_PAIRS, c, c, r);
	if (!strcmp(o->scenario, "shared"))
		return traffic(o, K_SHARED, o->pubs ? o->pubs : c, o->subs ? o->subs : 4, r);
	if (!strcmp(o->scenario, "ordered"))
		return scen_ordered(o, r);
	if (!strcmp(o->scenario, "connections"))
		return scen_connections(o, r);
	if (!strcmp(o->scenario, "backlog"))
		return scen_backlog(o, r);
	if (!strcmp(o->scenario, "backlog-group"))
		return scen_backlog_group(o, r);
	if (!strcmp(o->scenario, "delayed"))
		return scen_delayed(o, r);
	if (!strcmp(o->scenario, "txn"))
		return scen_txn(o, r);
	if (!strcmp(o->scenario, "txn-open"))
		return scen_txn_open(o, r);
	fprintf(stderr, "sluice-bench: unknown scenario '%s'\n", o->scenario);
	return -1;
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void print_delayed(const struct opts *o, const struct result *r)
{
	printf("delayed qos %d v%s: scheduled %llu at %.0f msg/s (%s) in %.2f s, "
	       "released at %.0f msg/s; %.2f s in all\n",
	       o->qos, o->version == 5 ? "5" : "3.1.1", (unsigned long long)r->sent, r->in_rate,
	       o->qos ? "acknowledged" : "sent", r->sched_s, r->out_rate, r->elapsed);
	printf("  lateness ms: p50 %.3f p99 %.3f p99.9 %.3f max %.3f min %.3f (%llu samples)\n",
	       ms(r->p50), ms(r->p99), ms(r->p999), ms(r->max), r->late_min_ms,
	       (unsigned long long)r->lat_n);
	printf("  received %llu: lost %llu, duplicates %llu, early %llu, refused %llu, "
	       "foreign %llu, due before it could be scheduled %llu\n",
	       (unsigned long long)r->recv, (unsigned long long)r->lost,
	       (unsigned long long)r->dups, (unsigned long long)r->early,
	       (unsigned long long)r->refused, (unsigned long long)r->foreign,
	       (unsigned long long)r->overdue);
	printf("  broker rss %ld kB (peak sampled), broker cpu %.0f%% scheduling, %.0f%% "
	       "releasing, generator cpu %.0f%% scheduling\n",
	       r->rss_kb, r->broker_cpu * 100, r->rel_cpu * 100, r->own_cpu * 100);
}

static void print_phase(const char *what, const struct txn_phase *ph, bool commit)
{
	printf("  %s: %llu units, %llu messages in %.2f s: %.0f units/s, %.0f msg/s; unit "
	       "mean %.3f ms, p50 %.3f p99 %.3f\n",
	       what, (unsigned long long)ph->units, (unsigned long long)ph->msgs, ph->elapsed,
	       ph->unit_rate, ph->msg_rate, ph->unit_mean_ms, ms(ph->unit_p50), ms(ph->unit_p99));
	printf("    %s ack ms p50 %.3f p99 %.3f", commit ? "half message" : "message",
	       ms(ph->ack_p50), ms(ph->ack_p99));
	if (commit)
		printf("; commit ms p50 %.3f p99 %.3f", ms(ph->commit_p50), ms(ph->commit_p99));
	printf("; end to end ms (%s) p50 %.3f p99 %.3f; broker cpu %.0f%%, generator %.0f%%\n",
	       commit ? "from the commit's send" : "from the send", ms(ph->e2e_p50),
	       ms(ph->e2e_p99), ph->cpu * 100, ph->gen_cpu * 100);
}

static double tx_ratio(const struct result *r)
{
	return r->plain.unit_mean_ms > 0 ? r->txn.unit_mean_ms / r->plain.unit_mean_ms : 0;
}

static void print_txn(const struct opts *o, const struct result *r)
{
	uint32_t k = o->txn_size ? o->txn_size : 10;

	printf("txn qos %d v%s: %d producers, %u messages per transaction (%s)\n", o->qos,
	       o->version == 5 ? "5" : "3.1.1", o->pubs ? o->pubs : 4, k,
	       o->txn_pipeline ? "commit pipelined behind the half messages"
			       : "commit after the half messages' acks");
	print_phase("transactions", &r->txn, true);
	print_phase("plain batches", &r->plain, false);
	printf("  time per %u-message transaction / per %u plain messages: %.2fx (mean), "
	       "%.2fx (p50)\n",
	       k, k, tx_ratio(r),
	       r->plain.unit_p50 ? (double)r->txn.unit_p50 / (double)r->plain.unit_p50 : 0);
	printf("  sent %llu, received %llu: lost %llu, duplicates %llu, out of order %llu, "
	       "refused %llu, other non-zero reason codes %llu, before their commit %llu, "
	       "foreign %llu; broker rss %ld kB\n",
	       (unsigned long long)r->sent, (unsigned long long)r->recv,
	       (unsigned long long)r->lost, (unsigned long long)r->dups,
	       (unsigned long long)r->order_err, (unsigned long long)r->refused,
	       (unsigned long long)r->odd_rc, (unsigned long long)r->uncommitted,
	       (unsigned long long)r->foreign, r->rss_kb);
}

static void result_txn(const struct opts *o, const struct result *r)
{
	const struct txn_phase *t = &r->txn, *p = &r->plain;

	printf("RESULT label=%s scenario=txn qos=%d version=%d size=%u pipeline=%d txn_s=%.0f "
	       "txn_msg_s=%.0f half_p50=%.3f half_p99=%.3f commit_p50=%.3f commit_p99=%.3f "
	       "e2e_p50=%.3f e2e_p99=%.3f txn_ms=%.3f plain_msg_s=%.0f plain_p50=%.3f "
	       "plain_p99=%.3f plain_e2e_p50=%.3f plain_e2e_p99=%.3f plain_ms=%.3f ratio=%.2f "
	       "lost=%llu dups=%llu order=%llu refused=%llu odd_rc=%llu uncommitted=%llu "
	       "rss_kb=%ld cpu=%.2f plain_cpu=%.2f\n",
	       o->label ? o->label : "-", o->qos, o->version, o->txn_size ? o->txn_size : 10,
	       o->txn_pipeline, t->unit_rate, t->msg_rate, ms(t->ack_p50), ms(t->ack_p99),
	       ms(t->commit_p50), ms(t->commit_p99), ms(t->e2e_p50), ms(t->e2e_p99),
	       t->unit_mean_ms, p->msg_rate, ms(p->ack_p50), ms(p->ack_p99), ms(p->e2e_p50),
	       ms(p->e2e_p99), p->unit_mean_ms, tx_ratio(r), (unsigned long long)r->lost,
	       (unsigned long long)r->dups, (unsigned long long)r->order_err,
	       (unsigned long long)r->refused, (unsigned long long)r->odd_rc,
	       (unsigned long long)r->uncommitted, r->rss_kb, t->cpu, p->cpu);
}

static void print_txn_open(const struct opts *o, const struct result *r)
{
	const struct txn_phase *t = &r->txn;

	if (!o->quiet)
		printf("txn-open qos %d v%s: %llu transactions of %u messages opened in %.2f s "
		       "(%.0f/s; half message ack ms p50 %.3f p99 %.3f); broker rss %ld kB "
		       "before, %ld kB after (+%.2f kB each); refused %llu\n",
		       o->qos, o->version == 5 ? "5" : "3.1.1", (unsigned long long)t->units,
		       o->txn_size ? o->txn_size : 1, t->elapsed, t->unit_rate, ms(t->ack_p50),
		       ms(t->ack_p99), r->rss0_kb, r->rss_kb,
		       t->units ? (double)(r->rss_kb - r->rss0_kb) / (double)t->units : 0,
		       (unsigned long long)r->refused);
	printf("RESULT label=%s scenario=txn-open qos=%d version=%d opened=%llu open_s=%.0f "
	       "rss0_kb=%ld rss_kb=%ld refused=%llu odd_rc=%llu cpu=%.2f\n",
	       o->label ? o->label : "-", o->qos, o->version, (unsigned long long)t->units,
	       t->unit_rate, r->rss0_kb, r->rss_kb, (unsigned long long)r->refused,
	       (unsigned long long)r->odd_rc, t->cpu);
}

static void print_group(const struct opts *o, const struct result *r)
{
	int i, last = r->members - 1;

	printf("backlog-group qos %d v%s: %d publisher(s), %d members, member %d slow: ", o->qos,
	       o->version == 5 ? "5" : "3.1.1", o->pubs ? o->pubs : 1, r->members, last);
	if (o->slow_us > 0)
		printf("%.0f us per message\n", o->slow_us);
	else
		printf("%dx the fast members' time per message\n", SLOW_FACTOR);
	printf("  publish: %llu sent in %.2f s, %llu acknowledged with 0x00: %.0f msg/s; refused "
	       "%llu, other reason codes %llu; broker cpu %.0f%%\n",
	       (unsigned long long)r->sent, r->pub_s, (unsigned long long)r->acked_ok, r->in_rate,
	       (unsigned long long)r->refused, (unsigned long long)r->odd_rc, r->broker_cpu * 100);
	printf("  drain: %llu received in %.2f s from the members' connect: %.0f msg/s; broker "
	       "cpu %.0f%%\n",
	       (unsigned long long)r->recv, r->drain_s, r->drain_rate, r->drain_cpu * 100);
	for (i = 0; i < r->members; i++)
		printf("    member %d%s: %llu (%.1f%%), %.0f msg/s\n", i,
		       i == last ? " (slow)" : "", (unsigned long long)r->member_recv[i],
		       r->recv ? 100.0 * (double)r->member_recv[i] / (double)r->recv : 0,
		       r->member_rate[i]);
	printf("  fast members %.0f msg/s each, slow %.0f msg/s (1/%.1f)\n", r->fast_rate,
	       r->slow_rate, r->slow_rate > 0 ? r->fast_rate / r->slow_rate : 0);
	printf("  expected %llu: lost %llu, duplicates %llu, out of order %llu, foreign %llu\n",
	       (unsigned long long)r->expected, (unsigned long long)r->lost,
	       (unsigned long long)r->dups, (unsigned long long)r->order_err,
	       (unsigned long long)r->foreign);
	printf("  broker rss peak %ld kB (sampled every 100 ms), VmHWM %ld kB\n", r->rss_kb,
	       r->hwm_kb);
}

static void result_group(const struct opts *o, const struct result *r)
{
	char shares[GROUP_MAX * 21 + 1];
	size_t off = 0;
	int i;

	shares[0] = 0;
	for (i = 0; i < r->members && off < sizeof(shares); i++)
		off += (size_t)snprintf(shares + off, sizeof(shares) - off, "%s%llu", i ? "/" : "",
					(unsigned long long)r->member_recv[i]);
	printf("RESULT label=%s scenario=backlog-group qos=%d version=%d members=%d sent=%llu "
	       "in=%.0f pub_s=%.2f refused=%llu odd_rc=%llu drain=%.0f drain_s=%.2f lost=%llu "
	       "dups=%llu order=%llu shares=%s slow_share=%.4f fast_rate=%.0f slow_rate=%.0f "
	       "rss_kb=%ld hwm_kb=%ld cpu=%.2f drain_cpu=%.2f\n",
	       o->label ? o->label : "-", o->qos, o->version, r->members,
	       (unsigned long long)r->sent, r->in_rate, r->pub_s, (unsigned long long)r->refused,
	       (unsigned long long)r->odd_rc, r->drain_rate, r->drain_s,
	       (unsigned long long)r->lost, (unsigned long long)r->dups,
	       (unsigned long long)r->order_err, shares,
	       r->recv ? (double)r->member_recv[r->members - 1] / (double)r->recv : 0, r->fast_rate,
	       r->slow_rate, r->rss_kb, r->hwm_kb, r->broker_cpu, r->drain_cpu);
}

static void print_ordered(const struct result *r)
{
	static const char *const verdict[] = {
		"unknown (the probe's messages did not both arrive)",
		"no (a key's second message came before the first was acknowledged)",
		"yes (a key's second message waited for the first one's ack)"
	};

	printf("  %u keys; per (publisher, key) stream, across the group: out of order %llu, "
	       "incomplete at the end %llu\n",
	       r->keys, (unsigned long long)r->order_err, (unsigned long long)r->gaps);
	printf("  the broker keeps key order (probe): %s\n", verdict[r->ordering + 1]);
}

void scen_print(const struct opts *o, const struct result *r)
{
	if (r->txn_open) {
		print_txn_open(o, r);
		fflush(stdout);
		return;
	}
	if (r->group_run) {
		if (!o->quiet)
			print_group(o, r);
		result_group(o, r);
		fflush(stdout);
		return;
	}
	if (r->txn_run) {
		if (!o->quiet)
			print_txn(o, r);
		result_txn(o, r);
		fflush(stdout);
		return;
	}
	if (!o->quiet && r->delayed) {
		print_delayed(o, r);
	} else if (!o->quiet) {
		printf("%s qos %d v%s: in %.0f msg/s, out %.0f msg/s over %.2f s\n", o->scenario,
		       o->qos, o->version == 5 ? "5" : "3.1.1", r->in_rate, r->out_rate,
		       r->elapsed);
		printf("  latency ms: p50 %.3f p99 %.3f p99.9 %.3f max %.3f (%llu samples)\n",
		       ms(r->p50), ms(r->p99), ms(r->p999), ms(r->max),
		       (unsigned long long)r->lat_n);
		printf("  sent %llu, expected deliveries %llu, received %llu: lost %llu, "
		       "duplicates %llu, out of order %llu, refused %llu, foreign %llu\n",
		       (unsigned long long)r->sent, (unsigned long long)r->expected,
		       (unsigned long long)r->recv, (unsigned long long)r->lost,
		       (unsigned long long)r->dups, (unsigned long long)r->order_err,
		       (unsigned long long)r->refused, (unsigned long long)r->foreign);
		printf("  broker rss %ld kB, broker cpu %.0f%%, generator cpu %.0f%%\n", r->rss_kb,
		       r->broker_cpu * 100, r->own_cpu * 100);
		if (!strcmp(o->scenario, "shared") || r->ordered)
			printf("  per-consumer split: min %llu max %llu\n",
			       (unsigned long long)r->share_min, (unsigned long long)r->share_max);
		if (r->ordered)
			print_ordered(r);
		if (!strcmp(o->scenario, "connections"))
			printf("  %d connections at %.0f connects/s, %.2f kB broker RSS each; "
			       "throughput %.0f msg/s without, %.0f with (%.0f%%)\n",
			       r->held, r->conn_rate, r->kb_per_conn, r->base_rate,
			       r->with_idle_rate,
			       r->base_rate > 0 ? 100 * r->with_idle_rate / r->base_rate : 0);
		if (!strcmp(o->scenario, "backlog"))
			printf("  backlog: publish %.0f msg/s, drain %.0f msg/s\n", r->in_rate,
			       r->drain_rate);
	}
	printf("RESULT label=%s scenario=%s qos=%d version=%d in=%.0f out=%.0f p50=%.3f "
	       "p99=%.3f p999=%.3f max=%.3f lost=%llu dups=%llu order=%llu refused=%llu "
	       "rss_kb=%ld cpu=%.2f gen_cpu=%.2f conn_rate=%.0f kb_per_conn=%.2f "
	       "base=%.0f with_idle=%.0f drain=%.0f share_min=%llu share_max=%llu early=%llu "
	       "overdue=%llu late_min=%.3f rel_cpu=%.2f",
	       o->label ? o->label : "-", o->scenario, o->qos, o->version, r->in_rate, r->out_rate,
	       ms(r->p50), ms(r->p99), ms(r->p999), ms(r->max), (unsigned long long)r->lost,
	       (unsigned long long)r->dups, (unsigned long long)r->order_err,
	       (unsigned long long)r->refused, r->rss_kb, r->broker_cpu, r->own_cpu, r->conn_rate,
	       r->kb_per_conn, r->base_rate, r->with_idle_rate, r->drain_rate,
	       (unsigned long long)r->share_min, (unsigned long long)r->share_max,
	       (unsigned long long)r->early, (unsigned long long)r->overdue, r->late_min_ms,
	       r->rel_cpu);
	if (r->ordered)
		printf(" keys=%u gaps=%llu ordering=%d", r->keys, (unsigned long long)r->gaps,
		       r->ordering);
	printf("\n");
	fflush(stdout);
}

/* txn: a success code that is not 0, and a message that beat its commit, are errors. */
static int check_txn(const struct result *r)
{
	int bad = 0;

	if (r->odd_rc) {
		fprintf(stderr, "sluice-bench: FAIL: %llu acks with a non-zero reason code\n",
			(unsigned long long)r->odd_rc);
		bad = -1;
	}
	if (r->uncommitted) {
		fprintf(stderr,
			"sluice-bench: FAIL: %llu half messages delivered before their "
			"commit was sent\n",
			(unsigned long long)r->uncommitted);
		bad = -1;
	}
	return bad;
}

/* ordered: the order errors are in order_err (above); incomplete streams, and a hint. */
static int check_ordered(const struct result *r)
{
	if (!r->ordered)
		return 0;
	if (r->gaps)
		fprintf(stderr,
			"sluice-bench: FAIL: %llu (publisher, key) streams incomplete at the end\n",
			(unsigned long long)r->gaps);
	if ((r->order_err || r->gaps) && r->ordering == 0)
		fprintf(stderr,
			"sluice-bench: note: the broker does not keep key order (probe); "
			"load the ordered plugin with plugin_opt_keyed " ORDERED_PREFIX "#\n");
	return r->gaps ? -1 : 0;
}

int scen_check(const struct opts *o, const struct result *r)
{
	int bad = 0;

	if (o->qos >= 1 && r->lost) {
		fprintf(stderr, "sluice-bench: FAIL: %llu messages lost at QoS %d\n",
			(unsigned long long)r->lost, o->qos);
		bad = 1;
	}
	if (o->qos >= 1 && r->dups) {
		fprintf(stderr, "sluice-bench: FAIL: %llu duplicates at QoS %d\n",
			(unsigned long long)r->dups, o->qos);
		bad = 1;
	}
	if (o->qos >= 1 && r->order_err) {
		fprintf(stderr, "sluice-bench: FAIL: %llu out of order at QoS %d\n",
			(unsigned long long)r->order_err, o->qos);
		bad = 1;
	}
	if (r->early) {
		fprintf(stderr,
			"sluice-bench: FAIL: %llu delayed messages arrived before their "
			"due time\n",
			(unsigned long long)r->early);
		bad = 1;
	}
	if (r->overdue)
		fprintf(stderr,
			"sluice-bench: warning: %llu messages fell due before they could "
			"be scheduled (scheduling slower than the lead allowed for: "
			"raise --lead)\n",
			(unsigned long long)r->overdue);
	if (r->refused) {
		fprintf(stderr, "sluice-bench: FAIL: the broker refused %llu publishes\n",
			(unsigned long long)r->refused);
		bad = 1;
	}
	if (check_txn(r) < 0)
		bad = 1;
	if (check_ordered(r) < 0)
		bad = 1;
	return bad ? -1 : 0;
}
