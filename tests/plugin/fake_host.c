/*
 * fake_host.c - the host side of include/sluice_plugin.h, in memory and
 * under the test's control, so that a plugin's logic is unit tested without
 * a broker.
 *
 * What it owns: one plugin slot (its callbacks and udata), the messages it
 * builds, one queue of plugin timers and pending cold reads, the two key
 * spaces (kv and cold), and records for the test to read: routed messages,
 * PUBACK user properties, log lines, holds. All of it is global, as the
 * broker's loop is single-threaded; fake_reset() empties it.
 *
 * Where it follows the real host (src/plugin.c) on purpose:
 *  - Messages are immutable and reference counted; msg_rewrite drops user
 *    properties by key and keeps the rest in order; restart_expiry counts
 *    the expiry interval again from now; msg_decode gives a new message id.
 *    The byte format of msg_encode is this file's own (see "FKM1").
 *  - kv and cold spaces are sorted maps compared as memcmp with the shorter
 *    key first on a tie; cold_del_range removes lo <= k < hi.
 *  - cold_get never calls back inside the call: the answer is a copy taken
 *    now and queued for the current time, so it comes on the next
 *    fake_advance() (even of 0 ms) or fake_run_pending(), in request order
 *    with the timers due then. One difference: a failed copy (out of
 *    memory) makes cold_get return -1, where the real host answers "absent".
 *  - Timers are one-shot; a handle is freed before its function runs, as in
 *    the broker, so cancelling a fired or cancelled timer is counted as a
 *    misuse (found by address, never dereferenced).
 *  - after_commit never calls back inside the call either: fn(arg, status)
 *    is queued like a cold read and runs on the next fake_advance() or
 *    fake_run_pending(), with the status set by fake_commit_status() at
 *    the time it runs (the commit ends then).
 *  - deliver records the call (a reference on the message, copies of the
 *    names) and answers what fake_deliver_returns() says; topic_match is a
 *    real implementation of MQTT filter matching. redeliver is recorded
 *    the same way (marked as a redeliver) and does not run the DELIVER
 *    chain again. durable and listeners answer what the test set;
 *    opt_where answers "test.conf:<10 + index>" during init; msg_ids_after
 *    makes messages built afterwards get larger ids.
 *  - ack_user_prop works only while a PUBLISH callback runs, else -1.
 *  - A failing PUBLISH or SUBSCRIBE callback is a REJECT 0x80.
 *  - Unload drops the timers left, then calls cleanup; kv and cold stay, so
 *    that loading again is a restart on the same store.
 *
 * Time: a monotonic clock starting at 0 and a wall clock starting at
 * FAKE_WALL0 move together in fake_advance(), which fires what is due in
 * (due, request) order, moving the clocks to each due time before it fires.
 * fake_set_wall() steps the wall clock alone.
 *
 * Memory: every allocation a host call makes for the plugin goes through
 * fake_alloc(), the one place the test can make fail (fake_fail_alloc).
 * Store writes, kv reads and timers can be made to fail on their own as
 * well (fake_fail_writes, fake_fail_reads, fake_fail_timers): a refused
 * write changes nothing.
 * Blocks the plugin must give back with host->free (alloc, kv_get values,
 * msg_encode output) are counted in live_blocks, messages in live_msgs, so
 * that a test can check both are back to 0. The fake's own records use
 * xmalloc(), which never fails quietly, and messages the test builds are
 * exempt from the failures.
 */
#include "fake_host.h"

#include "../unit/naive_match.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEST_PROPS 32 /* user properties in one fake_msg() */
#define MAX_FIRES 1000000 /* per fake_advance(): a timer loop is a bug, not a hang */
#define ENC_MAGIC "FKM1"

/* --- allocation ----------------------------------------------------------- */

/* After `after` more calls succeed, the next `count` fail (-1: all); after < 0: none. */
struct failer {
	long after, count;
	unsigned long failures;
};

static struct failer fail_alloc = { -1, 0, 0 }, fail_write[2] = { { -1, 0, 0 }, { -1, 0, 0 } },
		     fail_timer = { -1, 0, 0 }, fail_read = { -1, 0, 0 };
static long live_blocks;
static int exempt; /* > 0 while the fake builds for the test */

static bool refused(struct failer *f)
{
	if (f->after < 0)
		return false;
	if (f->after > 0) {
		f->after--;
		return false;
	}
	if (!f->count) {
		f->after = -1;
		return false;
	}
	if (f->count > 0)
		f->count--;
	f->failures++;
	return true;
}

static void failer_set(struct failer *f, long after, long count)
{
	f->after = after;
	f->count = count;
}

static bool alloc_refused(void)
{
	return !exempt && refused(&fail_alloc);
}

static void *fake_alloc(size_t n)
{
	return alloc_refused() ? NULL : malloc(n ? n : 1);
}

static void *dup_bytes(const void *p, size_t n)
{
	void *d = fake_alloc(n);

	if (d && n)
		memcpy(d, p, n);
	return d;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		fprintf(stderr, "fake_host: out of memory\n");
		abort();
	}
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;

	return memcpy(xmalloc(n), s, n);
}

/* Makes room for one more element in a record array of *n used out of *cap. */
static void *room(void *a, size_t *cap, size_t n, size_t sz)
{
	void *b;

	if (n < *cap)
		return a;
	*cap = *cap ? *cap * 2 : 16;
	b = realloc(a, *cap * sz);
	if (!b) {
		fprintf(stderr, "fake_host: out of memory\n");
		abort();
	}
	return b;
}

static void *plugin_alloc(size_t n)
{
	void *p = fake_alloc(n);

	if (p)
		live_blocks++;
	return p;
}

static void plugin_free(void *p)
{
	if (!p)
		return;
	live_blocks--;
	free(p);
}

void fake_fail_alloc(long after, long count)
{
	failer_set(&fail_alloc, after, count);
}

unsigned long fake_alloc_failures(void)
{
	return fail_alloc.failures;
}

void fake_fail_writes(enum fake_space sp, long after, long count)
{
	failer_set(&fail_write[sp], after, count);
}

unsigned long fake_write_failures(enum fake_space sp)
{
	return fail_write[sp].failures;
}

void fake_fail_reads(long after, long count)
{
	failer_set(&fail_read, after, count);
}

void fake_fail_timers(long after, long count)
{
	failer_set(&fail_timer, after, count);
}

unsigned long fake_timer_failures(void)
{
	return fail_timer.failures;
}

long fake_live_blocks(void)
{
	return live_blocks;
}

/* --- the world's state ---------------------------------------------------- */

struct sp_plugin {
	sp_callback cb[SP_EV__COUNT];
	void *udata;
	bool loaded;
};

/* What waits in the one queue: a plugin timer, or an answer of the store. */
enum qkind { Q_TIMER, Q_COLD, Q_COMMIT };

struct sp_timer {
	struct sp_timer *next;
	uint64_t due, order;
	enum qkind kind;
	sp_timer_fn fn; /* Q_TIMER */
	void *arg;
	void (*cold_fn)(void *arg, const void *val, size_t vlen); /* Q_COLD */
	void *val; /* a copy of the cold value, NULL when absent */
	size_t vlen;
	void (*commit_fn)(void *arg, int status); /* Q_COMMIT */
};

/* A deliver() call as the test reads it (fake_delivered). */
struct delivery {
	struct fake_delivery pub;
	char *names[3]; /* the copies pub points into */
};

struct routed {
	struct sp_msg *m;
	uint64_t wall;
};

struct pair {
	char *key, *val;
};

struct line {
	int level;
	char *text;
};

struct hold {
	uint64_t id;
	enum fake_hold state;
};

struct entry {
	void *key, *val;
	size_t klen, vlen;
};

struct space {
	struct entry *e;
	size_t n, cap;
};

static struct sp_plugin plugin;
static struct sp_result last_res;
static bool in_publish;
static unsigned misuse;
static char client[256];
static uint8_t client_protocol;
static struct sp_timer *queue;
static uint64_t mono, wall, order;
static int route_rc, deliver_rc, commit_status;
static struct delivery *deliveries;
static size_t n_deliveries, cap_deliveries;
static struct routed *routed;
static struct pair *acks;
static struct line *lines;
static struct hold *holds;
static size_t n_routed, cap_routed, n_acks, cap_acks, n_lines, cap_lines, n_holds, cap_holds;
static struct space spaces[2];
static long live_msgs;
static uint64_t last_msg_id;

/* A call that names another plugin than the loaded one. */
static bool bad_self(const struct sp_plugin *self)
{
	if (self == &plugin)
		return false;
	misuse++;
	return true;
}

unsigned fake_misuse(void)
{
	return misuse;
}

/* --- messages ------------------------------------------------------------- */

struct sp_msg {
	long refs;
	uint64_t id;
	uint64_t expiry_wall; /* 0 = never */
	uint32_t expiry_s;
	uint8_t qos;
	bool retain;
	const char *topic, *sender;
	const void *payload;
	size_t payload_len, n_props;
	const char **pairs; /* key0, val0, key1, ...: all in the message's one block */
};

/* What a new message is made of (copied), less the user properties named in drop. */
struct parts {
	const char *topic, *sender;
	size_t topic_len;
	const void *payload;
	size_t payload_len;
	uint8_t qos;
	bool retain;
	uint32_t expiry_s;
	uint64_t expiry_wall;
	const char *const *pairs;
	size_t n_props;
	const char *const *drop;
	size_t n_drop;
};

static bool dropped(const struct parts *p, size_t i)
{
	size_t j;

	for (j = 0; j < p->n_drop; j++)
		if (!strcmp(p->pairs[2 * i], p->drop[j]))
			return true;
	return false;
}

static const char *put_str(char **at, const char *s, size_t n)
{
	char *d = *at;

	if (n)
		memcpy(d, s, n);
	d[n] = '\0';
	*at += n + 1;
	return d;
}

static size_t parts_size(const struct parts *p, size_t *n_kept)
{
	size_t size = p->topic_len + 1 + strlen(p->sender) + 1 + p->payload_len, i;

	*n_kept = 0;
	for (i = 0; i < p->n_props; i++) {
		if (dropped(p, i))
			continue;
		size += strlen(p->pairs[2 * i]) + strlen(p->pairs[2 * i + 1]) + 2;
		(*n_kept)++;
	}
	return sizeof(struct sp_msg) + 2 * *n_kept * sizeof(char *) + size;
}

static struct sp_msg *msg_make(const struct parts *p)
{
	size_t n, i;
	struct sp_msg *m = fake_alloc(parts_size(p, &n));
	char *at;

	if (!m)
		return NULL;
	memset(m, 0, sizeof(*m));
	m->pairs = (const char **)(m + 1);
	at = (char *)(m->pairs + 2 * n);
	m->topic = put_str(&at, p->topic, p->topic_len);
	m->sender = put_str(&at, p->sender, strlen(p->sender));
	m->payload = at;
	if (p->payload_len)
		memcpy(at, p->payload, p->payload_len);
	at += p->payload_len;
	m->payload_len = p->payload_len;
	for (i = 0; i < p->n_props; i++) {
		if (dropped(p, i))
			continue;
		m->pairs[2 * m->n_props] = put_str(&at, p->pairs[2 * i], strlen(p->pairs[2 * i]));
		m->pairs[2 * m->n_props + 1] = put_str(&at, p->pairs[2 * i + 1],
						       strlen(p->pairs[2 * i + 1]));
		m->n_props++;
	}
	m->qos = p->qos > 2 ? 2 : p->qos;
	m->retain = p->retain;
	m->expiry_s = p->expiry_s;
	m->expiry_wall = p->expiry_wall;
	m->refs = 1;
	m->id = ++last_msg_id;
	live_msgs++;
	return m;
}

static uint64_t expiry_from_now(uint32_t expiry_s)
{
	return expiry_s ? wall + (uint64_t)expiry_s * 1000 : 0;
}

static struct parts spec_parts(const struct sp_msg_spec *s, const char *sender)
{
	struct parts p;

	memset(&p, 0, sizeof(p));
	p.topic = s->topic;
	p.topic_len = s->topic_len;
	p.sender = sender;
	p.payload = s->payload;
	p.payload_len = s->payload_len;
	p.qos = s->qos;
	p.retain = s->retain;
	p.expiry_s = s->expiry_s;
	p.expiry_wall = expiry_from_now(s->expiry_s);
	return p;
}

static struct sp_msg *host_msg_new(const struct sp_msg_spec *spec)
{
	struct parts p = spec_parts(spec, spec->sender ? spec->sender : "");

	return msg_make(&p);
}

/* Everything m is made of, to build a copy from. */
static struct parts parts_of(const struct sp_msg *m)
{
	struct parts p;

	memset(&p, 0, sizeof(p));
	p.topic = m->topic;
	p.topic_len = strlen(m->topic);
	p.sender = m->sender;
	p.payload = m->payload;
	p.payload_len = m->payload_len;
	p.qos = m->qos;
	p.retain = m->retain;
	p.expiry_s = m->expiry_s;
	p.expiry_wall = m->expiry_wall;
	p.pairs = m->pairs;
	p.n_props = m->n_props;
	return p;
}

static struct sp_msg *host_msg_rewrite(const struct sp_msg *m, const char *topic,
				       const char *const *drop_keys, size_t n_drop,
				       bool restart_expiry)
{
	struct parts p;

	p = parts_of(m);
	if (topic) {
		p.topic = topic;
		p.topic_len = strlen(topic);
	}
	if (restart_expiry && m->expiry_s)
		p.expiry_wall = expiry_from_now(m->expiry_s);
	p.drop = drop_keys;
	p.n_drop = drop_keys ? n_drop : 0;
	return msg_make(&p);
}

static struct sp_msg *host_msg_ref(struct sp_msg *m)
{
	m->refs++;
	return m;
}

static void host_msg_unref(struct sp_msg *m)
{
	if (!m || --m->refs)
		return;
	live_msgs--;
	free(m);
}

static const char *host_msg_topic(const struct sp_msg *m)
{
	return m->topic;
}

static const void *host_msg_payload(const struct sp_msg *m, size_t *len)
{
	*len = m->payload_len;
	return m->payload;
}

static uint8_t host_msg_qos(const struct sp_msg *m)
{
	return m->qos;
}

static bool host_msg_retain(const struct sp_msg *m)
{
	return m->retain;
}

static const char *host_msg_sender(const struct sp_msg *m)
{
	return m->sender;
}

static uint64_t host_msg_id(const struct sp_msg *m)
{
	return m->id;
}

static uint64_t host_msg_expiry(const struct sp_msg *m)
{
	return m->expiry_wall;
}

static int host_msg_user_prop(const struct sp_msg *m, size_t *pos, const char **key, size_t *klen,
			      const char **val, size_t *vlen)
{
	if (*pos >= m->n_props)
		return 0;
	*key = m->pairs[2 * *pos];
	*val = m->pairs[2 * *pos + 1];
	*klen = strlen(*key);
	*vlen = strlen(*val);
	(*pos)++;
	return 1;
}

/* --- msg_encode / msg_decode ---------------------------------------------- */

/*
 * "FKM1", qos u8, retain u8, expiry_s be32, expiry wall ms be64, then the
 * strings topic, sender, payload, a be32 count of user properties and their
 * keys and values. A string is a be32 length, the bytes and a NUL (so that
 * decoding can point into the buffer).
 */
struct wr {
	uint8_t *p; /* NULL: only measure */
	size_t len;
};

static void w_n(struct wr *w, uint64_t v, int bytes)
{
	int i;

	for (i = bytes - 1; i >= 0 && w->p; i--)
		w->p[w->len + (size_t)(bytes - 1 - i)] = (uint8_t)(v >> (8 * i));
	w->len += (size_t)bytes;
}

static void w_str(struct wr *w, const void *s, size_t n)
{
	w_n(w, n, 4);
	if (w->p) {
		if (n)
			memcpy(w->p + w->len, s, n);
		w->p[w->len + n] = 0;
	}
	w->len += n + 1;
}

static void encode_into(const struct sp_msg *m, struct wr *w)
{
	size_t i;

	if (w->p)
		memcpy(w->p, ENC_MAGIC, 4);
	w->len = 4;
	w_n(w, m->qos, 1);
	w_n(w, m->retain, 1);
	w_n(w, m->expiry_s, 4);
	w_n(w, m->expiry_wall, 8);
	w_str(w, m->topic, strlen(m->topic));
	w_str(w, m->sender, strlen(m->sender));
	w_str(w, m->payload, m->payload_len);
	w_n(w, m->n_props, 4);
	for (i = 0; i < 2 * m->n_props; i++)
		w_str(w, m->pairs[i], strlen(m->pairs[i]));
}

static int host_msg_encode(const struct sp_msg *m, void **out, size_t *len)
{
	struct wr w = { NULL, 0 };

	encode_into(m, &w);
	w.p = plugin_alloc(w.len);
	if (!w.p)
		return -1;
	encode_into(m, &w);
	*out = w.p;
	*len = w.len;
	return 0;
}

struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static uint64_t r_n(struct rd *r, size_t bytes)
{
	uint64_t v = 0;

	if (r->left < bytes) {
		r->bad = true;
		return 0;
	}
	while (bytes--) {
		v = v << 8 | *r->p++;
		r->left--;
	}
	return v;
}

/* A string; text strings (payload false) must hold no NUL of their own. */
static const char *r_str(struct rd *r, size_t *len, bool payload)
{
	const char *s;

	*len = (size_t)r_n(r, 4);
	if (r->bad || r->left <= *len || r->p[*len] || (!payload && memchr(r->p, 0, *len))) {
		r->bad = true;
		*len = 0;
		return "";
	}
	s = (const char *)r->p;
	r->p += *len + 1;
	r->left -= *len + 1;
	return s;
}

static struct sp_msg *decode_props(struct rd *r, struct parts *p)
{
	size_t n = (size_t)r_n(r, 4), i, l;
	const char **pairs;
	struct sp_msg *m = NULL;

	if (r->bad || n > r->left / 10) /* a pair takes 10 bytes at least */
		return NULL;
	pairs = fake_alloc(2 * n * sizeof(*pairs));
	if (!pairs)
		return NULL;
	for (i = 0; i < 2 * n; i++)
		pairs[i] = r_str(r, &l, false);
	p->pairs = pairs;
	p->n_props = n;
	if (!r->bad && !r->left)
		m = msg_make(p);
	free(pairs);
	return m;
}

static struct sp_msg *host_msg_decode(const void *buf, size_t len)
{
	struct rd r = { buf, len, false };
	struct parts p;
	size_t sl;
	uint64_t qos, retain;

	if (len < 4 || memcmp(buf, ENC_MAGIC, 4))
		return NULL;
	r.p += 4;
	r.left -= 4;
	memset(&p, 0, sizeof(p));
	qos = r_n(&r, 1);
	retain = r_n(&r, 1);
	p.expiry_s = (uint32_t)r_n(&r, 4);
	p.expiry_wall = r_n(&r, 8);
	p.topic = r_str(&r, &p.topic_len, false);
	p.sender = r_str(&r, &sl, false);
	p.payload = r_str(&r, &p.payload_len, true);
	if (r.bad || qos > 2 || retain > 1)
		return NULL;
	p.qos = (uint8_t)qos;
	p.retain = retain != 0;
	return decode_props(&r, &p);
}

/* --- messages for the test ------------------------------------------------ */

void fake_set_client(const char *client_id, uint8_t protocol)
{
	snprintf(client, sizeof(client), "%s", client_id);
	client_protocol = protocol;
}

struct sp_msg *fake_msg_build(const struct sp_msg_spec *spec, const char *const *pairs,
			      size_t n_props)
{
	struct parts p = spec_parts(spec, spec->sender ? spec->sender : client);
	struct sp_msg *m;

	p.pairs = pairs;
	p.n_props = n_props;
	exempt++;
	m = msg_make(&p);
	exempt--;
	if (!m) {
		fprintf(stderr, "fake_host: out of memory\n");
		abort();
	}
	return m;
}

static struct sp_msg *msg_va(const char *topic, const char *payload, int qos, va_list ap)
{
	const char *pairs[2 * MAX_TEST_PROPS];
	struct sp_msg_spec spec;
	size_t n = 0;
	const char *k;

	while ((k = va_arg(ap, const char *))) {
		if (n == MAX_TEST_PROPS) {
			fprintf(stderr, "fake_host: more than %d user properties\n",
				MAX_TEST_PROPS);
			abort();
		}
		pairs[2 * n] = k;
		pairs[2 * n + 1] = va_arg(ap, const char *);
		n++;
	}
	memset(&spec, 0, sizeof(spec));
	spec.topic = topic;
	spec.topic_len = strlen(topic);
	spec.payload = payload;
	spec.payload_len = strlen(payload);
	spec.qos = (uint8_t)qos;
	return fake_msg_build(&spec, pairs, n);
}

struct sp_msg *fake_msg(const char *topic, const char *payload, int qos, ...)
{
	struct sp_msg *m;
	va_list ap;

	va_start(ap, qos);
	m = msg_va(topic, payload, qos, ap);
	va_end(ap);
	return m;
}

long fake_live_msgs(void)
{
	return live_msgs;
}

const char *fake_msg_prop(const struct sp_msg *m, const char *key)
{
	size_t i;

	for (i = 0; i < m->n_props; i++)
		if (!strcmp(m->pairs[2 * i], key))
			return m->pairs[2 * i + 1];
	return NULL;
}

int fake_msg_prop_at(const struct sp_msg *m, size_t i, const char **key, const char **val)
{
	if (i >= m->n_props)
		return -1;
	*key = m->pairs[2 * i];
	*val = m->pairs[2 * i + 1];
	return 0;
}

size_t fake_msg_n_props(const struct sp_msg *m)
{
	return m->n_props;
}

bool fake_msg_payload_is(const struct sp_msg *m, const char *text)
{
	return m->payload_len == strlen(text) && !memcmp(m->payload, text, m->payload_len);
}

/* --- routing, PUBACK properties, log, holds ------------------------------- */

static int host_route(struct sp_plugin *self, struct sp_msg *m)
{
	if (bad_self(self) || !m)
		return -1;
	routed = room(routed, &cap_routed, n_routed, sizeof(*routed));
	routed[n_routed].m = host_msg_ref(m);
	routed[n_routed++].wall = wall;
	return route_rc;
}

void fake_route_returns(int rc)
{
	route_rc = rc;
}

size_t fake_routed_count(void)
{
	return n_routed;
}

struct sp_msg *fake_routed(size_t i)
{
	return i < n_routed ? routed[i].m : NULL;
}

uint64_t fake_routed_wall(size_t i)
{
	return i < n_routed ? routed[i].wall : 0;
}

void fake_routed_clear(void)
{
	while (n_routed)
		host_msg_unref(routed[--n_routed].m);
}

static void acks_clear(void)
{
	while (n_acks) {
		n_acks--;
		free(acks[n_acks].key);
		free(acks[n_acks].val);
	}
}

static int host_ack_user_prop(const char *key, const char *val)
{
	if (!in_publish || !key || !val)
		return -1;
	acks = room(acks, &cap_acks, n_acks, sizeof(*acks));
	acks[n_acks].key = xstrdup(key);
	acks[n_acks++].val = xstrdup(val);
	return 0;
}

size_t fake_ack_count(void)
{
	return n_acks;
}

const char *fake_ack_prop(const char *key)
{
	size_t i;

	for (i = 0; i < n_acks; i++)
		if (!strcmp(acks[i].key, key))
			return acks[i].val;
	return NULL;
}

__attribute__((format(printf, 3, 4))) static void host_log(struct sp_plugin *self, int level,
							   const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	bad_self(self);
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	lines = room(lines, &cap_lines, n_lines, sizeof(*lines));
	lines[n_lines].level = level;
	lines[n_lines++].text = xstrdup(text);
	if (getenv("FAKE_HOST_VERBOSE"))
		fprintf(stderr, "[fake %d] %s\n", level, text);
}

size_t fake_log_count(void)
{
	return n_lines;
}

const char *fake_log_line(size_t i)
{
	return i < n_lines ? lines[i].text : NULL;
}

int fake_log_level(size_t i)
{
	return i < n_lines ? lines[i].level : -1;
}

size_t fake_log_grep(const char *text)
{
	size_t i, n = 0;

	for (i = 0; i < n_lines; i++)
		n += strstr(lines[i].text, text) != NULL;
	return n;
}

void fake_log_clear(void)
{
	while (n_lines)
		free(lines[--n_lines].text);
}

static struct hold *hold_find(uint64_t id)
{
	size_t i;

	for (i = 0; i < n_holds; i++)
		if (holds[i].id == id)
			return &holds[i];
	return NULL;
}

static void hold_add(uint64_t id)
{
	struct hold *h = hold_find(id);

	if (!h) {
		holds = room(holds, &cap_holds, n_holds, sizeof(*holds));
		h = &holds[n_holds++];
		h->id = id;
	}
	h->state = FAKE_HOLD_HELD;
}

static int hold_end(struct sp_plugin *self, uint64_t id, enum fake_hold state)
{
	struct hold *h = hold_find(id);

	if (bad_self(self) || !h || h->state != FAKE_HOLD_HELD)
		return -1;
	h->state = state;
	return 0;
}

static int host_release(struct sp_plugin *self, uint64_t hold_id)
{
	return hold_end(self, hold_id, FAKE_HOLD_RELEASED);
}

static int host_discard(struct sp_plugin *self, uint64_t hold_id)
{
	return hold_end(self, hold_id, FAKE_HOLD_DISCARDED);
}

enum fake_hold fake_hold_state(uint64_t hold_id)
{
	struct hold *h = hold_find(hold_id);

	return h ? h->state : FAKE_HOLD_NONE;
}

/* --- time: timers and cold reads in one queue ----------------------------- */

static void enqueue(struct sp_timer *t, uint64_t delay_ms)
{
	t->due = delay_ms > UINT64_MAX - mono ? UINT64_MAX : mono + delay_ms;
	t->order = ++order;
	t->next = queue;
	queue = t;
}

/* The link to the first entry due by `until` in (due, order) order, or NULL. */
static struct sp_timer **first_due(uint64_t until, bool store_only)
{
	struct sp_timer **pp, **best = NULL;

	for (pp = &queue; *pp; pp = &(*pp)->next) {
		const struct sp_timer *t = *pp;

		if (t->due > until || (store_only && t->kind == Q_TIMER))
			continue;
		if (!best || t->due < (*best)->due ||
		    (t->due == (*best)->due && t->order < (*best)->order))
			best = pp;
	}
	return best;
}

/* Unlinks *pp and runs it: the handle is gone before the plugin's function runs. */
static void fire(struct sp_timer **pp)
{
	struct sp_timer *t = *pp;
	sp_timer_fn fn = t->fn;
	void (*commit_fn)(void *, int) = t->commit_fn;
	void *arg = t->arg;

	*pp = t->next;
	switch (t->kind) {
	case Q_TIMER:
		free(t);
		fn(arg);
		break;
	case Q_COMMIT:
		free(t);
		commit_fn(arg, commit_status);
		break;
	case Q_COLD:
		t->cold_fn(arg, t->val, t->vlen);
		free(t->val);
		free(t);
		break;
	}
}

static void set_mono(uint64_t to)
{
	wall += to - mono;
	mono = to;
}

void fake_advance(uint64_t ms)
{
	uint64_t end = ms > UINT64_MAX - mono ? UINT64_MAX : mono + ms;
	struct sp_timer **pp;
	long fires = 0;

	while ((pp = first_due(end, false))) {
		if (++fires > MAX_FIRES) {
			fprintf(stderr, "fake_host: over %d timers in one advance\n", MAX_FIRES);
			misuse++;
			break;
		}
		if ((*pp)->due > mono)
			set_mono((*pp)->due);
		fire(pp);
	}
	set_mono(end);
}

size_t fake_run_pending(void)
{
	struct sp_timer **pp;
	size_t n = 0;

	while ((pp = first_due(UINT64_MAX, true))) {
		fire(pp);
		n++;
	}
	return n;
}

static size_t queue_count(enum qkind kind)
{
	const struct sp_timer *t;
	size_t n = 0;

	for (t = queue; t; t = t->next)
		n += t->kind == kind;
	return n;
}

size_t fake_timers(void)
{
	return queue_count(Q_TIMER);
}

size_t fake_cold_reads(void)
{
	return queue_count(Q_COLD);
}

size_t fake_commits(void)
{
	return queue_count(Q_COMMIT);
}

static void queue_free(void)
{
	while (queue) {
		struct sp_timer *t = queue;

		queue = t->next;
		free(t->val);
		free(t);
	}
}

uint64_t fake_now(void)
{
	return wall;
}

uint64_t fake_mono(void)
{
	return mono;
}

void fake_set_wall(uint64_t wall_ms)
{
	wall = wall_ms;
}

static struct sp_timer *host_timer_add(struct sp_plugin *self, uint64_t delay_ms, sp_timer_fn fn,
				       void *arg)
{
	struct sp_timer *t;

	if (bad_self(self) || !fn || refused(&fail_timer) || !(t = fake_alloc(sizeof(*t))))
		return NULL;
	memset(t, 0, sizeof(*t));
	t->kind = Q_TIMER;
	t->fn = fn;
	t->arg = arg;
	enqueue(t, delay_ms);
	return t;
}

static void host_timer_cancel(struct sp_timer *t)
{
	struct sp_timer **pp;

	if (!t)
		return;
	for (pp = &queue; *pp; pp = &(*pp)->next) {
		if (*pp == t && t->kind == Q_TIMER) {
			*pp = t->next;
			free(t);
			return;
		}
	}
	misuse++; /* fired or cancelled already: the broker would free it twice */
}

static uint64_t host_now_ms(void)
{
	return wall;
}

/* --- the kv and cold spaces ----------------------------------------------- */

static int key_cmp(const void *a, size_t al, const void *b, size_t bl)
{
	int c = al && bl ? memcmp(a, b, al < bl ? al : bl) : 0;

	return c ? c : (al > bl) - (al < bl);
}

/* Index of the first entry >= key. */
static size_t lower(const struct space *sp, const void *key, size_t klen)
{
	size_t lo = 0, hi = sp->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (key_cmp(sp->e[mid].key, sp->e[mid].klen, key, klen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool found_at(const struct space *sp, size_t i, const void *key, size_t klen)
{
	return i < sp->n && !key_cmp(sp->e[i].key, sp->e[i].klen, key, klen);
}

static int space_grow(struct space *sp)
{
	size_t cap = sp->cap ? sp->cap * 2 : 16;
	struct entry *e = fake_alloc(cap * sizeof(*e));

	if (!e)
		return -1;
	if (sp->n)
		memcpy(e, sp->e, sp->n * sizeof(*e));
	free(sp->e);
	sp->e = e;
	sp->cap = cap;
	return 0;
}

static int space_set(struct space *sp, const void *key, size_t klen, const void *val, size_t vlen)
{
	size_t i = lower(sp, key, klen);
	void *v = dup_bytes(val, vlen), *k = NULL;

	if (!v)
		return -1;
	if (found_at(sp, i, key, klen)) {
		free(sp->e[i].val);
		sp->e[i].val = v;
		sp->e[i].vlen = vlen;
		return 0;
	}
	if ((sp->n == sp->cap && space_grow(sp)) || !(k = dup_bytes(key, klen))) {
		free(v);
		return -1;
	}
	memmove(&sp->e[i + 1], &sp->e[i], (sp->n - i) * sizeof(*sp->e));
	sp->e[i] = (struct entry){ k, v, klen, vlen };
	sp->n++;
	return 0;
}

/* Removes the entries lo <= key < hi. */
static void space_unset_range(struct space *sp, size_t a, size_t b)
{
	size_t i;

	if (b <= a)
		return;
	for (i = a; i < b; i++) {
		free(sp->e[i].key);
		free(sp->e[i].val);
	}
	memmove(&sp->e[a], &sp->e[b], (sp->n - b) * sizeof(*sp->e));
	sp->n -= b - a;
}

static int space_unset(struct space *sp, const void *key, size_t klen)
{
	size_t i = lower(sp, key, klen);

	if (!found_at(sp, i, key, klen))
		return -1;
	space_unset_range(sp, i, i + 1);
	return 0;
}

static void space_free(struct space *sp)
{
	space_unset_range(sp, 0, sp->n);
	free(sp->e);
	memset(sp, 0, sizeof(*sp));
}

/* A write of sp the test refuses (fake_fail_writes), or one for another plugin. */
static bool write_refused(const struct sp_plugin *self, enum fake_space sp)
{
	return bad_self(self) || refused(&fail_write[sp]);
}

static int host_kv_put(struct sp_plugin *self, const void *key, size_t klen, const void *val,
		       size_t vlen)
{
	return write_refused(self, FAKE_KV) ? -1
					    : space_set(&spaces[FAKE_KV], key, klen, val, vlen);
}

static int host_kv_get(struct sp_plugin *self, const void *key, size_t klen, void **val,
		       size_t *vlen)
{
	const struct space *sp = &spaces[FAKE_KV];
	size_t i = lower(sp, key, klen);

	if (bad_self(self) || refused(&fail_read) || !found_at(sp, i, key, klen))
		return -1;
	*val = plugin_alloc(sp->e[i].vlen);
	if (!*val)
		return -1;
	if (sp->e[i].vlen)
		memcpy(*val, sp->e[i].val, sp->e[i].vlen);
	*vlen = sp->e[i].vlen;
	return 0;
}

static int host_kv_del(struct sp_plugin *self, const void *key, size_t klen)
{
	return write_refused(self, FAKE_KV) ? -1 : space_unset(&spaces[FAKE_KV], key, klen);
}

static int host_kv_scan(struct sp_plugin *self, const void *prefix, size_t plen, sp_kv_fn fn,
			void *arg)
{
	const struct space *sp = &spaces[FAKE_KV];
	size_t i;

	if (bad_self(self) || refused(&fail_read))
		return -1;
	for (i = lower(sp, prefix, plen); i < sp->n; i++) {
		const struct entry *e = &sp->e[i];

		if (e->klen < plen || (plen && memcmp(e->key, prefix, plen)))
			break;
		if (fn(e->key, e->klen, e->val, e->vlen, arg))
			break;
	}
	return 0;
}

static int host_cold_put(struct sp_plugin *self, const void *key, size_t klen, const void *val,
			 size_t vlen)
{
	return write_refused(self, FAKE_COLD) ? -1
					      : space_set(&spaces[FAKE_COLD], key, klen, val, vlen);
}

static int host_cold_del(struct sp_plugin *self, const void *key, size_t klen)
{
	return write_refused(self, FAKE_COLD) ? -1 : space_unset(&spaces[FAKE_COLD], key, klen);
}

static int host_cold_del_range(struct sp_plugin *self, const void *lo, size_t lol, const void *hi,
			       size_t hil)
{
	struct space *sp = &spaces[FAKE_COLD];

	if (write_refused(self, FAKE_COLD))
		return -1;
	space_unset_range(sp, lower(sp, lo, lol), lower(sp, hi, hil));
	return 0;
}

static int host_cold_get(struct sp_plugin *self, const void *key, size_t klen,
			 void (*fn)(void *arg, const void *val, size_t vlen), void *arg)
{
	const struct space *sp = &spaces[FAKE_COLD];
	size_t i = lower(sp, key, klen);
	struct sp_timer *t;

	if (bad_self(self) || !fn || !(t = fake_alloc(sizeof(*t))))
		return -1;
	memset(t, 0, sizeof(*t));
	t->kind = Q_COLD;
	t->cold_fn = fn;
	t->arg = arg;
	if (found_at(sp, i, key, klen)) {
		t->vlen = sp->e[i].vlen;
		t->val = dup_bytes(sp->e[i].val, t->vlen);
		if (!t->val) {
			free(t);
			return -1;
		}
	}
	enqueue(t, 0);
	return 0;
}

size_t fake_store_count(enum fake_space sp)
{
	return spaces[sp].n;
}

int fake_store_at(enum fake_space sp, size_t i, const void **key, size_t *klen, const void **val,
		  size_t *vlen)
{
	const struct entry *e;

	if (i >= spaces[sp].n)
		return -1;
	e = &spaces[sp].e[i];
	*key = e->key;
	*klen = e->klen;
	*val = e->val;
	*vlen = e->vlen;
	return 0;
}

static bool contains(const uint8_t *hay, size_t hl, const void *needle, size_t n)
{
	size_t i;

	for (i = 0; n && i + n <= hl; i++)
		if (!memcmp(hay + i, needle, n))
			return true;
	return false;
}

size_t fake_store_grep(enum fake_space sp, const void *needle, size_t n)
{
	size_t i, found = 0;

	for (i = 0; i < spaces[sp].n; i++)
		found += contains(spaces[sp].e[i].val, spaces[sp].e[i].vlen, needle, n);
	return found;
}

void fake_store_clear(void)
{
	space_free(&spaces[FAKE_KV]);
	space_free(&spaces[FAKE_COLD]);
}

/* --- API 2: deliver, topic_match, after_commit ---------------------------- */

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* Records a deliver() or redeliver() call and answers fake_deliver_returns()'s value. */
static int record_delivery(struct sp_plugin *self, struct sp_msg *m, const char *client_id,
			   const char *share_group, const char *share_filter, bool redeliver)
{
	struct delivery *d;

	/* One client, or one group with its filter: anything else is a bad call. */
	if (bad_self(self) || !m || (!client_id && !share_group) || (share_group && !share_filter))
		return -1;
	deliveries = room(deliveries, &cap_deliveries, n_deliveries, sizeof(*deliveries));
	d = &deliveries[n_deliveries++];
	d->names[0] = dup_or_null(client_id);
	d->names[1] = dup_or_null(share_group);
	d->names[2] = dup_or_null(share_filter);
	d->pub.m = host_msg_ref(m);
	d->pub.client_id = d->names[0];
	d->pub.share_group = d->names[1];
	d->pub.share_filter = d->names[2];
	d->pub.wall = wall;
	d->pub.redeliver = redeliver;
	return deliver_rc;
}

static int host_deliver(struct sp_plugin *self, struct sp_msg *m, const char *client_id,
			const char *share_group, const char *share_filter)
{
	return record_delivery(self, m, client_id, share_group, share_filter, false);
}

void fake_deliver_returns(int rc)
{
	deliver_rc = rc;
}

size_t fake_delivered_count(void)
{
	return n_deliveries;
}

const struct fake_delivery *fake_delivered(size_t i)
{
	return i < n_deliveries ? &deliveries[i].pub : NULL;
}

void fake_delivered_clear(void)
{
	while (n_deliveries) {
		struct delivery *d = &deliveries[--n_deliveries];

		host_msg_unref(d->pub.m);
		free(d->names[0]);
		free(d->names[1]);
		free(d->names[2]);
	}
}

/* A filter's levels: '#' alone and last, '+' alone; not empty. */
static bool filter_valid(const char *f)
{
	const char *p;

	if (!*f)
		return false;
	for (p = f; *p; p++) {
		bool starts = p == f || p[-1] == '/', ends = !p[1] || p[1] == '/';

		if (*p == '+' && !(starts && ends)) /* [MQTT-4.7.1-3] */
			return false;
		if (*p == '#' && !(starts && !p[1])) /* [MQTT-4.7.1-2] */
			return false;
	}
	return true;
}

/*
 * The tests' reference matcher (tests/unit/naive_match.h), apart from the
 * broker's topic_matches() on purpose, so that a plugin test does not
 * inherit a bug of the broker's. Invalid filters and topic names
 * (wildcards, empty) match nothing.
 */
static bool host_topic_match(const char *filter, const char *topic)
{
	if (!filter || !topic || !*topic || strpbrk(topic, "+#") || !filter_valid(filter))
		return false;
	return topic_match_naive(filter, topic);
}

static int host_after_commit(struct sp_plugin *self, void (*fn)(void *arg, int status), void *arg)
{
	struct sp_timer *t;

	if (bad_self(self) || !fn || !(t = fake_alloc(sizeof(*t))))
		return -1;
	memset(t, 0, sizeof(*t));
	t->kind = Q_COMMIT;
	t->commit_fn = fn;
	t->arg = arg;
	enqueue(t, 0);
	return 0;
}

void fake_commit_status(int status)
{
	commit_status = status;
}

/* --- appended after API 2: msg_add_user_props, subscribed ---------------- */

static struct sp_msg *host_msg_add_user_props(const struct sp_msg *m, const char *const *keys,
					      const char *const *vals, size_t n)
{
	struct sp_msg *out;
	struct parts p;
	const char **pairs;
	size_t i;

	if (!m || (n && (!keys || !vals)))
		return NULL;
	for (i = 0; i < n; i++)
		if (!keys[i] || !vals[i] || strlen(keys[i]) > 0xffff || strlen(vals[i]) > 0xffff)
			return NULL;
	pairs = xmalloc((2 * (m->n_props + n) + 1) * sizeof(*pairs));
	memcpy(pairs, m->pairs, 2 * m->n_props * sizeof(*pairs));
	for (i = 0; i < n; i++) {
		pairs[2 * (m->n_props + i)] = keys[i];
		pairs[2 * (m->n_props + i) + 1] = vals[i];
	}
	p = parts_of(m);
	p.pairs = pairs;
	p.n_props = m->n_props + n;
	out = msg_make(&p);
	free(pairs);
	return out;
}

static struct sp_msg *host_msg_with_retain(const struct sp_msg *m, bool retain)
{
	struct parts p;

	if (!m)
		return NULL;
	p = parts_of(m);
	p.retain = retain;
	return msg_make(&p);
}

/* The sessions' subscriptions as the test set them: one (client, filter) pair each. */
static struct pair *subs;
static size_t n_subs, cap_subs;

void fake_subscribe(const char *client_id, const char *filter)
{
	subs = room(subs, &cap_subs, n_subs, sizeof(*subs));
	subs[n_subs].key = xstrdup(client_id);
	subs[n_subs].val = xstrdup(filter);
	n_subs++;
}

void fake_unsubscribe(const char *client_id)
{
	size_t i = 0;

	while (i < n_subs) {
		if (strcmp(subs[i].key, client_id)) {
			i++;
			continue;
		}
		free(subs[i].key);
		free(subs[i].val);
		subs[i] = subs[--n_subs];
	}
}

/* A shared subscription's filter: what follows $share/{group}/. */
static const char *plain_filter(const char *f)
{
	const char *slash;

	if (strncmp(f, "$share/", 7) || !(slash = strchr(f + 7, '/')))
		return f;
	return slash + 1;
}

static int host_subscribed(const char *client_id, const char *topic)
{
	size_t i;

	if (!client_id || !topic)
		return -1;
	for (i = 0; i < n_subs; i++)
		if (!strcmp(subs[i].key, client_id) &&
		    host_topic_match(plain_filter(subs[i].val), topic))
			return 1;
	return 0;
}

static void subs_free(void)
{
	while (n_subs) {
		n_subs--;
		free(subs[n_subs].key);
		free(subs[n_subs].val);
	}
	free(subs);
	subs = NULL;
	cap_subs = 0;
}

/* --- appended after API 2: redeliver, durable, opt_where, listeners, msg_ids_after --- */

static int durable_rc, listeners_rc;
static uint64_t ids_after_max;
static bool in_init;
static char where_buf[64];

/* As deliver (the DELIVER chain is not run again: the test fires it when it wants it). */
static int host_redeliver(struct sp_plugin *self, struct sp_msg *m, const char *client_id,
			  const char *share_group, const char *share_filter)
{
	return record_delivery(self, m, client_id, share_group, share_filter, true);
}

static int host_durable(const char *client_id, const char *share_group, const char *share_filter)
{
	if ((!client_id && !share_group) || (share_group && !share_filter))
		return -1;
	return durable_rc;
}

/* "test.conf:<10 + index>" while init runs, NULL after. */
static const char *host_opt_where(struct sp_plugin *self, size_t index)
{
	if (bad_self(self) || !in_init)
		return NULL;
	snprintf(where_buf, sizeof(where_buf), "test.conf:%zu", 10 + index);
	return where_buf;
}

static int host_listeners(struct sp_plugin *self, enum sp_event_type ev)
{
	if (bad_self(self) || (unsigned)ev >= SP_EV__COUNT)
		return -1;
	return listeners_rc;
}

static void host_msg_ids_after(uint64_t id)
{
	if (id > ids_after_max)
		ids_after_max = id;
	if (id > last_msg_id)
		last_msg_id = id;
}

void fake_set_durable(int rc)
{
	durable_rc = rc;
}

void fake_set_listeners(int n)
{
	listeners_rc = n;
}

uint64_t fake_msg_ids_after(void)
{
	return ids_after_max;
}

/* --- the host table and the plugin slot ----------------------------------- */

static int host_on(struct sp_plugin *self, enum sp_event_type ev, sp_callback cb)
{
	if (bad_self(self) || (unsigned)ev >= SP_EV__COUNT || !cb)
		return -1;
	plugin.cb[ev] = cb;
	return 0;
}

/* Designated initializers: members appended to struct sp_host start NULL here. */
static const struct sp_host host_template = {
	.api = SLUICE_PLUGIN_API,
	.size = sizeof(struct sp_host),
	.on = host_on,
	.log = host_log,
	.msg_topic = host_msg_topic,
	.msg_payload = host_msg_payload,
	.msg_qos = host_msg_qos,
	.msg_retain = host_msg_retain,
	.msg_sender = host_msg_sender,
	.msg_id = host_msg_id,
	.msg_expiry = host_msg_expiry,
	.msg_user_prop = host_msg_user_prop,
	.msg_new = host_msg_new,
	.msg_rewrite = host_msg_rewrite,
	.msg_encode = host_msg_encode,
	.msg_decode = host_msg_decode,
	.msg_ref = host_msg_ref,
	.msg_unref = host_msg_unref,
	.route = host_route,
	.ack_user_prop = host_ack_user_prop,
	.release = host_release,
	.discard = host_discard,
	.timer_add = host_timer_add,
	.timer_cancel = host_timer_cancel,
	.now_ms = host_now_ms,
	.kv_put = host_kv_put,
	.kv_get = host_kv_get,
	.kv_del = host_kv_del,
	.kv_scan = host_kv_scan,
	.alloc = plugin_alloc,
	.free = plugin_free,
	.cold_put = host_cold_put,
	.cold_del = host_cold_del,
	.cold_get = host_cold_get,
	.cold_del_range = host_cold_del_range,
	.deliver = host_deliver,
	.topic_match = host_topic_match,
	.after_commit = host_after_commit,
	.msg_add_user_props = host_msg_add_user_props,
	.subscribed = host_subscribed,
	.msg_with_retain = host_msg_with_retain,
	.redeliver = host_redeliver,
	.durable = host_durable,
	.opt_where = host_opt_where,
	.listeners = host_listeners,
	.msg_ids_after = host_msg_ids_after,
};

static struct sp_host host_table;

const struct sp_host *fake_host(void)
{
	return &host_table;
}

struct sp_plugin *fake_self(void)
{
	return &plugin;
}

void fake_set_host_size(size_t size)
{
	if (size < sizeof(host_table))
		memset((char *)&host_table + size, 0, sizeof(host_table) - size);
	host_table.size = (uint32_t)size;
}

int fake_load(fake_init_fn init, const struct sp_opt *opts, int n_opts)
{
	int rc;

	memset(&plugin, 0, sizeof(plugin));
	in_init = true;
	rc = init(&host_table, &plugin, opts, n_opts, &plugin.udata);
	in_init = false;
	plugin.loaded = rc == 0;
	return rc;
}

void fake_unload(fake_cleanup_fn cleanup)
{
	queue_free();
	if (plugin.loaded && cleanup)
		cleanup(plugin.udata);
	memset(&plugin, 0, sizeof(plugin));
}

bool fake_loaded(void)
{
	return plugin.loaded;
}

int fake_fire(enum sp_event_type type, struct sp_event *ev, struct sp_result *res)
{
	struct sp_result local;
	int rc = 0;

	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	ev->type = type;
	if (type == SP_EV_PUBLISH)
		acks_clear();
	if ((unsigned)type < SP_EV__COUNT && plugin.cb[type]) {
		in_publish = type == SP_EV_PUBLISH;
		rc = plugin.cb[type](ev, res, plugin.udata);
		in_publish = false;
	}
	if (rc && (type == SP_EV_PUBLISH || type == SP_EV_SUBSCRIBE)) {
		res->verdict = SP_REJECT; /* fails closed, as the broker */
		res->reason = 0x80;
	}
	if (type == SP_EV_DELIVER && res->verdict == SP_HOLD)
		hold_add(res->hold_id);
	last_res = *res;
	return rc;
}

const struct sp_result *fake_result(void)
{
	return &last_res;
}

int fake_start(void)
{
	struct sp_event ev;

	memset(&ev, 0, sizeof(ev));
	return fake_fire(SP_EV_START, &ev, NULL);
}

int fake_stop(void)
{
	struct sp_event ev;

	fake_run_pending();
	memset(&ev, 0, sizeof(ev));
	return fake_fire(SP_EV_STOP, &ev, NULL);
}

enum sp_verdict fake_publish_msg(struct sp_msg *m)
{
	struct sp_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.client_id = client;
	ev.protocol = client_protocol;
	ev.msg = m;
	ev.qos = m->qos;
	fake_fire(SP_EV_PUBLISH, &ev, NULL);
	return last_res.verdict;
}

enum sp_verdict fake_publish(const char *topic, const char *payload, int qos, ...)
{
	enum sp_verdict v;
	struct sp_msg *m;
	va_list ap;

	va_start(ap, qos);
	m = msg_va(topic, payload, qos, ap);
	va_end(ap);
	v = fake_publish_msg(m);
	host_msg_unref(m);
	return v;
}

void fake_reset(void)
{
	if (plugin.loaded)
		fprintf(stderr, "fake_host: reset with the plugin loaded: its state leaks\n");
	fake_unload(NULL);
	fake_routed_clear();
	fake_delivered_clear();
	acks_clear();
	fake_log_clear();
	fake_store_clear();
	subs_free();
	free(routed);
	free(deliveries);
	free(acks);
	free(lines);
	free(holds);
	routed = NULL;
	deliveries = NULL;
	acks = NULL;
	lines = NULL;
	holds = NULL;
	cap_routed = cap_deliveries = cap_acks = cap_lines = n_holds = cap_holds = 0;
	host_table = host_template;
	memset(&last_res, 0, sizeof(last_res));
	in_publish = false;
	misuse = 0;
	fake_set_client("client", 5);
	mono = order = 0;
	wall = FAKE_WALL0;
	route_rc = deliver_rc = 1;
	commit_status = 0;
	live_msgs = live_blocks = 0;
	last_msg_id = 0;
	durable_rc = listeners_rc = 0;
	ids_after_max = 0;
	in_init = false;
	fail_alloc = fail_timer = fail_read = fail_write[FAKE_KV] = fail_write[FAKE_COLD] =
		(struct failer){ -1, 0, 0 };
	exempt = 0;
}
