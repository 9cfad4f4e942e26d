/*
 * ordered.c - the ordered topics plugin: FIFO per sharding key (and one
 * FIFO per global filter) for every subscription, plain or shared, through
 * acknowledgements, member changes and restarts (README "Ordered topics").
 * Loop thread only.
 *
 * The rule. Every delivery of a message on an ordered filter passes the
 * DELIVER callback with its target (the client's plain subscriptions, or
 * the shared group) and key (the filter's index, then the user property
 * sharding-key or else the topic; a global filter has no more). The key
 * table (keytab.c) lets at most one message per (target, key) be "in the
 * broker" at QoS 1 and 2 - from the delivery that passed until its PUBACK,
 * its PUBREC (QoS 2) or its drop - and keeps the others (KEEP verdict, a
 * reference taken) in message id order, which is the order the broker
 * accepted them. When the busy one ends, the first waiting one goes on
 * with host->redeliver, whose DELIVER chain starts here again, so this
 * callback sees where it goes and at what QoS (QoS 0: nothing to wait for,
 * the next goes too). The broker itself keeps each busy message in order
 * through reconnects and restarts, and hands a departed member's busy
 * message back to its group (DROPPED with moving) before any later one of
 * its key can leave the plugin, so a key never has two messages in the
 * broker and order holds across members without binding keys to members:
 * a free key goes to whichever member the broker picks.
 *
 * Releases run from a 0 ms timer (pending), never inside the event that
 * freed the key, so the broker's acknowledgement handling is over first;
 * until then the key is not idle (its waiting list is not empty), so a
 * newer message cannot overtake.
 *
 * Durability. For targets that outlive a restart (host->durable: a
 * persistent session, a group whose queue is stored) the state is mirrored
 * in the plugin's key/value rows, written in the same store batch as the
 * broker's own rows of that turn: "b" + target + key -> the busy message id
 * and QoS; "w" + target + key + id -> QoS and the encoded message. START
 * reads them back, drops targets that are no longer durable (their session
 * or group is gone), and releases the keys that are free.
 *
 * Invariants: a key is busy only with a message the broker has (or has
 * been handed by redeliver); a waiting entry holds one message reference;
 * an entry or busy mark marked stored has its row; n_wait <= max_waiting
 * is enforced at PUBLISH (0x97), so waiting messages never grow unbounded.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "keytab.h"
#include "retryparse.h"
#include "plugin_sys.h"
#include "sluice_plugin.h"

#define DEFAULT_MAX_WAITING 1000000
#define DEFAULT_SYS_MS 10000
#define FILTERS_MAX 65535
#define SHARDING_KEY "sharding-key"
#define DELIVERY_COUNT "delivery-count" /* the retry plugin's, on a redelivery */
#define DLQ_PREFIX "$DLQ/" /* the retry plugin's dead letters: $DLQ/{group or client}/{topic} */
#define ORIGINAL_TOPIC "original-topic"
#define EXPIRY_GRACE_MS 1000 /* after a refused message's expiry, its retry will not come */
#define PFX_BUSY 'b'
#define PFX_WAIT 'w'

struct filt {
	char *filter;
	bool global;
	uint64_t keys, waiting, moved; /* $SYS/broker/ordered/filter/N/...: counted at refresh */
	size_t prefix; /* "a/b/#": 4, the length of "a/b/" (matched here); 0: ask the broker */
};

/* A key whose waiting messages go on at the next turn: its target name and key, copied. */
struct pend {
	size_t nlen, klen;
	unsigned char *bytes; /* name, then key */
};

struct buf {
	unsigned char *p;
	size_t len, cap;
};

struct ord {
	const struct sp_host *host;
	struct sp_plugin *self;
	struct filt *filters;
	size_t n_filters;
	uint64_t max_waiting, sys_ms, moved;
	uint64_t gen; /* changes with any session or subscription (durable's cache) */
	struct keytab kt;
	struct sp_timer *sys_timer, *pend_timer, *expiry_timer;
	struct pend *pend;
	size_t n_pend, cap_pend;
	bool started;
	/* The classification of the latest message (one lookup per message). */
	const struct sp_msg *c_msg;
	uint64_t c_id;
	bool c_ordered;
	struct buf c_key, name, row;
};

/* --- small buffers --------------------------------------------------------------- */

static int buf_room(struct ord *o, struct buf *b, size_t more)
{
	unsigned char *p;
	size_t cap;

	if (b->len + more <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more)
		cap *= 2;
	if (!(p = o->host->alloc(cap)))
		return -1;
	if (b->len)
		memcpy(p, b->p, b->len);
	o->host->free(b->p);
	b->p = p;
	b->cap = cap;
	return 0;
}

static int buf_add(struct ord *o, struct buf *b, const void *p, size_t n)
{
	if (buf_room(o, b, n))
		return -1;
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int buf_u16(struct ord *o, struct buf *b, size_t v)
{
	unsigned char x[2] = { (unsigned char)(v >> 8), (unsigned char)v };

	return buf_add(o, b, x, 2);
}

static int buf_u64(struct ord *o, struct buf *b, uint64_t v)
{
	unsigned char x[8];

	for (int i = 0; i < 8; i++)
		x[i] = (unsigned char)(v >> (56 - 8 * i));
	return buf_add(o, b, x, 8);
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* --- classification: is a message ordered, and its key --------------------------- */

/* The value of m's first user property name, or NULL. */
static const char *user_prop(struct ord *o, const struct sp_msg *m, const char *name, size_t *len)
{
	const char *k, *v;
	size_t kl, vl, pos = 0, nl = strlen(name);

	while (o->host->msg_user_prop(m, &pos, &k, &kl, &v, &vl))
		if (kl == nl && !memcmp(k, name, kl)) {
			*len = vl;
			return v;
		}
	return NULL;
}

/*
 * Does f match topic? The usual ordered filter is a prefix ending in "/#"
 * with no other wildcard: compared here ("a/b/#" also matches "a/b"
 * [MQTT-4.7.1-2]; a filter not starting with '$' never matches a '$' topic,
 * and a prefix of at least one level that does not start with '$' cannot
 * match one); every other filter is the broker's to match.
 */
static bool filter_match(struct ord *o, const struct filt *f, const char *topic, size_t tl)
{
	if (!f->prefix)
		return o->host->topic_match(f->filter, topic);
	if (tl >= f->prefix && !memcmp(topic, f->filter, f->prefix))
		return true;
	return tl == f->prefix - 1 && !memcmp(topic, f->filter, tl);
}

/* Is m on an ordered filter? Its key in o->c_key then. Remembered for the next call with m. */
static bool classify_as(struct ord *o, const struct sp_msg *m, const char *topic);

static bool classify(struct ord *o, const struct sp_msg *m)
{
	if (m == o->c_msg && o->host->msg_id(m) == o->c_id)
		return o->c_ordered;
	o->c_msg = m;
	o->c_id = o->host->msg_id(m);
	o->c_ordered = classify_as(o, m, o->host->msg_topic(m));
	if (!o->c_ordered)
		o->c_key.len = 0;
	return o->c_ordered;
}

/* Would m be ordered on topic (its own, or a dead letter's original-topic)? Its key in c_key. */
static bool classify_as(struct ord *o, const struct sp_msg *m, const char *topic)
{
	size_t i, klen = 0, tl = strlen(topic);
	const char *key = NULL;
	unsigned char *p;

	o->c_key.len = 0;
	for (i = 0; i < o->n_filters; i++)
		if (filter_match(o, &o->filters[i], topic, tl))
			break;
	if (i == o->n_filters)
		return false;
	if (!o->filters[i].global && !(key = user_prop(o, m, SHARDING_KEY, &klen))) {
		key = topic;
		klen = tl;
	}
	if (klen > UINT16_MAX - 2 || buf_room(o, &o->c_key, 2 + klen))
		goto oom;
	p = o->c_key.p; /* the filter's index, then the key */
	p[0] = (unsigned char)(i >> 8);
	p[1] = (unsigned char)i;
	if (klen)
		memcpy(p + 2, key, klen);
	o->c_key.len = 2 + klen;
	return true;
oom:
	o->host->log(o->self, SP_LOG_WARNING,
		     "ordered: out of memory (or a key over 65533 bytes) keying a message on '%s': "
		     "delivered without ordering",
		     topic);
	return false;
}

/* --- targets ------------------------------------------------------------------------ */

/*
 * The target name of an event's delivery: "c" + client id + NUL, or "g" +
 * group + NUL + filter + NUL (so its parts are C strings in place).
 */
static int target_name(struct ord *o, const struct sp_event *ev)
{
	o->name.len = 0;
	if (ev->share_group && ev->share_filter)
		return buf_add(o, &o->name, "g", 1) ||
		       buf_add(o, &o->name, ev->share_group, strlen(ev->share_group) + 1) ||
		       buf_add(o, &o->name, ev->share_filter, strlen(ev->share_filter) + 1);
	return buf_add(o, &o->name, "c", 1) ||
	       buf_add(o, &o->name, ev->client_id, strlen(ev->client_id) + 1);
}

/* Is t the target of ev's delivery? (No hashing: the common case is the last one again.) */
static bool same_target(const struct kt_target *t, const struct sp_event *ev)
{
	const char *n = (const char *)t->name + 1;

	if (ev->share_group && ev->share_filter)
		return t->name[0] == 'g' && !strcmp(n, ev->share_group) &&
		       !strcmp(n + strlen(n) + 1, ev->share_filter);
	return t->name[0] == 'c' && !strcmp(n, ev->client_id);
}

/* The target of ev's delivery, or NULL when it has no state (o->name is its name then). */
static struct kt_target *event_target(struct ord *o, const struct sp_event *ev)
{
	struct kt_target *t = o->kt.last;

	o->name.len = 0;
	if (t && same_target(t, ev))
		return t;
	if (target_name(o, ev))
		return NULL;
	t = kt_target_find(&o->kt, o->name.p, o->name.len);
	if (t)
		o->kt.last = t;
	return t;
}

/* Client id, or group and filter, of a target name (pointers into it). */
struct who {
	const char *client_id, *group, *filter;
};

static int target_who(const unsigned char *name, size_t nlen, struct who *w)
{
	const char *s = (const char *)name + 1, *nul;

	memset(w, 0, sizeof(*w));
	if (nlen < 2 || name[nlen - 1])
		return -1;
	nul = memchr(s, 0, nlen - 1);
	if (name[0] == 'c' && nul == s + nlen - 2) {
		w->client_id = s;
		return 0;
	}
	if (name[0] != 'g' || nul == s + nlen - 2)
		return -1;
	w->group = s;
	w->filter = nul + 1;
	return 0;
}

/*
 * Does t outlive a restart? Asked of the broker once per generation: the
 * answer changes only with a session's or subscription's change, each of
 * which comes with an event that starts a new one (on_change).
 */
static bool durable(struct ord *o, struct kt_target *t)
{
	struct who w;

	if (t->cache_gen != o->gen) {
		t->cache_flag = !target_who(t->name, t->nlen, &w) &&
				o->host->durable(w.client_id, w.group, w.filter) == 1;
		t->cache_gen = o->gen;
	}
	return t->cache_flag;
}

/* --- rows ----------------------------------------------------------------------------- */

/* prefix + u16 name length + name + key (+ u16 key length between, for waiting rows). */
static int row_key(struct ord *o, char prefix, const struct kt_key *k)
{
	o->row.len = 0;
	return buf_add(o, &o->row, &prefix, 1) || buf_u16(o, &o->row, k->t->nlen) ||
	       buf_add(o, &o->row, k->t->name, k->t->nlen) || buf_u16(o, &o->row, k->klen) ||
	       buf_add(o, &o->row, k->key, k->klen);
}

static void store_failed(struct ord *o, const char *what)
{
	o->host->log(o->self, SP_LOG_ERR,
		     "ordered: could not store %s (out of memory): after a crash this key's order "
		     "may not hold",
		     what);
}

/* The busy row: the message id, then 1 when it was refused (its retry is to come). */
static void put_busy(struct ord *o, struct kt_key *k)
{
	unsigned char v[9];

	for (int i = 0; i < 8; i++)
		v[i] = (unsigned char)(k->busy >> (56 - 8 * i));
	v[8] = k->refused;
	if (row_key(o, PFX_BUSY, k) ||
	    o->host->kv_put(o->self, o->row.p, o->row.len, v, sizeof(v))) {
		store_failed(o, "a busy key");
		return;
	}
	k->busy_stored = true;
}

static void del_busy(struct ord *o, struct kt_key *k)
{
	if (!k->busy_stored)
		return;
	if (row_key(o, PFX_BUSY, k) || o->host->kv_del(o->self, o->row.p, o->row.len))
		store_failed(o, "the end of a busy key");
	k->busy_stored = false;
}

static void put_wait(struct ord *o, struct kt_key *k, struct kt_wait *w)
{
	void *enc = NULL;
	size_t n = 0;
	struct buf v = { 0 };
	int rc = -1;

	w->row = w->id;
	if (!row_key(o, PFX_WAIT, k) && !buf_u64(o, &o->row, w->row) &&
	    !o->host->msg_encode(w->msg, &enc, &n) && !buf_add(o, &v, &w->qos, 1) &&
	    !buf_add(o, &v, enc, n))
		rc = o->host->kv_put(o->self, o->row.p, o->row.len, v.p, v.len);
	o->host->free(enc);
	o->host->free(v.p);
	if (rc)
		store_failed(o, "a waiting message");
	else
		w->stored = true;
}

static void del_wait(struct ord *o, struct kt_key *k, struct kt_wait *w)
{
	if (!w->stored)
		return;
	if (row_key(o, PFX_WAIT, k) || buf_u64(o, &o->row, w->row) ||
	    o->host->kv_del(o->self, o->row.p, o->row.len))
		store_failed(o, "the end of a waiting message");
	w->stored = false;
}

/* --- releasing waiting messages ----------------------------------------------------- */

static void on_pend_timer(void *arg);

/* k's waiting messages go on at the next turn. */
static void release_later(struct ord *o, struct kt_key *k)
{
	struct pend *p;

	if (!o->pend_timer && !(o->pend_timer = o->host->timer_add(o->self, 0, on_pend_timer, o)))
		goto oom;
	if (o->n_pend == o->cap_pend) {
		size_t cap = o->cap_pend ? o->cap_pend * 2 : 64;
		struct pend *a = o->host->alloc(cap * sizeof(*a));

		if (!a)
			goto oom;
		if (o->n_pend)
			memcpy(a, o->pend, o->n_pend * sizeof(*a));
		o->host->free(o->pend);
		o->pend = a;
		o->cap_pend = cap;
	}
	p = &o->pend[o->n_pend];
	p->nlen = k->t->nlen;
	p->klen = k->klen;
	if (!(p->bytes = o->host->alloc(p->nlen + p->klen + 1)))
		goto oom;
	memcpy(p->bytes, k->t->name, p->nlen);
	memcpy(p->bytes + p->nlen, k->key, p->klen);
	o->n_pend++;
	return;
oom:
	o->host->log(o->self, SP_LOG_ERR,
		     "ordered: out of memory: a key's next message waits for its next event");
}

static void release(struct ord *o, struct kt_key *k);

/*
 * The busy message of k ended: its state goes, or its next message goes on
 * (now when the broker is done with the acknowledgement: at once; else at
 * the next turn, so that a drop inside a delivery does not nest another).
 */
static void key_free_or_next(struct ord *o, struct kt_key *k, bool now)
{
	/* Now, in the store batch that also ends the broker's row of the message:
	 * a crash before the release must not leave the key busy with it. */
	del_busy(o, k);
	if (k->head && now)
		release(o, k);
	else if (k->head)
		release_later(o, k);
	else
		kt_key_gc(&o->kt, k);
}

/* Hands w (taken from k) back to delivery; the key stays busy with it unless it was not taken. */
static void release_one(struct ord *o, struct kt_key *k, struct kt_wait *w)
{
	struct who who = { 0 };
	uint64_t id = o->host->msg_id(w->msg);
	int rc = -1;

	kt_set_busy(&o->kt, k, id); /* a message read back from the store has a new id */
	if (!target_who(k->t->name, k->t->nlen, &who))
		rc = o->host->redeliver(o->self, w->msg, who.client_id, who.group, who.filter);
	if (rc != 1 && k->busy == id) {
		kt_set_busy(&o->kt, k, 0);
		o->host->log(o->self, SP_LOG_INFO,
			     "ordered: a waiting message on '%s' for %s '%s' was not taken (%s)",
			     o->host->msg_topic(w->msg), who.group ? "group" : "client",
			     who.group	     ? who.group
			     : who.client_id ? who.client_id
					     : "?",
			     rc < 0 ? "out of memory"
				    : "no such subscription, or its queue is full");
	}
	del_wait(o, k, w);
	o->host->msg_unref(w->msg);
	kt_wait_free(&o->kt, w);
}

/* Waiting messages of k go on until one is busy in the broker. */
static void release(struct ord *o, struct kt_key *k)
{
	struct kt_wait *w;

	k->releasing = true;
	while ((w = kt_next(&o->kt, k)))
		release_one(o, k, w);
	k->releasing = false;
	if (k->busy && durable(o, k->t))
		put_busy(o, k);
	else
		del_busy(o, k);
	kt_key_gc(&o->kt, k);
}

static void on_pend_timer(void *arg)
{
	struct ord *o = arg;
	struct kt_key *k;
	size_t i = 0;

	o->pend_timer = NULL;
	while (i < o->n_pend) { /* a release may add more: they run in this turn too */
		struct pend *p = &o->pend[i++];
		struct kt_target *t = kt_target_find(&o->kt, p->bytes, p->nlen);

		k = kt_key_find(&o->kt, t, p->bytes + p->nlen, p->klen);
		o->host->free(p->bytes);
		if (k && !k->busy && !k->busy_unknown)
			release(o, k);
	}
	o->n_pend = 0;
}

/* --- events ------------------------------------------------------------------------- */

/*
 * The filter a key belongs to (the index in its first two bytes), or NULL
 * for a key restored from a configuration that had more filters.
 */
static struct filt *filter_of(struct ord *o, const struct kt_key *k)
{
	size_t i = k->klen >= 2 ? (size_t)k->key[0] << 8 | k->key[1] : o->n_filters;

	return i < o->n_filters ? &o->filters[i] : NULL;
}

/* k's refusal is over (its redelivery came, its dead letter, or the key ended). */
static void refusal_end(struct ord *o, struct kt_key *k)
{
	k->refused = k->dead = false;
	if (k->aux)
		o->host->msg_unref(k->aux);
	k->aux = NULL;
	k->aux_until = 0;
}

/* The key busy with an event's message at its target, or NULL (not ordered, not busy). */
static struct kt_key *busy_key(struct ord *o, const struct sp_event *ev)
{
	if (!ev->msg || !o->kt.n_busy)
		return NULL;
	return kt_busy_find(&o->kt, event_target(o, ev), o->host->msg_id(ev->msg));
}

/* m waits behind its key: KEEP, or PASS when it cannot be kept (out of memory). */
static int keep(struct ord *o, struct kt_key *k, struct sp_msg *m, uint8_t qos,
		struct sp_result *res)
{
	struct kt_wait *w = kt_wait_add(&o->kt, k, o->host->msg_id(m), m, qos);

	if (!w) {
		o->host->log(o->self, SP_LOG_ERR,
			     "ordered: out of memory: a message on '%s' is delivered out of order",
			     o->host->msg_topic(m));
		return 0;
	}
	o->host->msg_ref(m);
	if (k->busy_stored || durable(o, k->t)) {
		if (k->busy && !k->busy_stored)
			put_busy(o, k); /* the target became durable since */
		put_wait(o, k, w);
	}
	if (!k->busy && !k->releasing)
		release_later(o, k); /* idle but for its list: a release was lost (out of memory) */
	res->verdict = SP_KEEP;
	return 0;
}

/* Does m carry the payload of msg (the refused message, when known)? */
static bool same_payload(struct ord *o, const struct sp_msg *msg, const struct sp_msg *m)
{
	const void *a, *b;
	size_t al, bl;

	if (!msg)
		return true; /* restored: the refused message itself is gone */
	a = o->host->msg_payload(msg, &al);
	b = o->host->msg_payload(m, &bl);
	return al == bl && (!al || !memcmp(a, b, al));
}

/*
 * Is m the redelivery of k's refused message? It carries the retry plugin's
 * delivery-count, and the refused message's topic and payload (a publisher
 * cannot jump the queue by adding a delivery-count of its own).
 */
static bool is_retry(struct ord *o, const struct kt_key *k, const struct sp_msg *m)
{
	size_t len;

	if (!user_prop(o, m, DELIVERY_COUNT, &len))
		return false;
	return !k->aux || (!strcmp(o->host->msg_topic(k->aux), o->host->msg_topic(m)) &&
			   same_payload(o, k->aux, m));
}

/* The key of a delivery (made when qos > 0 and it has none: it is about to be busy). */
static struct kt_key *delivery_key(struct ord *o, const struct sp_event *ev)
{
	struct kt_target *t = event_target(o, ev);
	struct kt_key *k;

	if (!ev->qos)
		return kt_key_find(&o->kt, t, o->c_key.p, o->c_key.len);
	k = t		  ? kt_key_get_in(&o->kt, t, o->c_key.p, o->c_key.len)
	    : o->name.len ? kt_key_get(&o->kt, o->name.p, o->name.len, o->c_key.p, o->c_key.len)
			  : NULL;
	if (!k)
		o->host->log(
			o->self, SP_LOG_ERR,
			"ordered: out of memory: a message on '%s' for '%s' goes on without its "
			"key's order",
			o->host->msg_topic(ev->msg), ev->client_id);
	else
		o->kt.last = k->t;
	return k;
}

static int on_deliver(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct ord *o = udata;
	struct kt_key *k;
	uint64_t id, was;

	if (!classify(o, ev->msg) || !(k = delivery_key(o, ev)))
		return 0;
	id = o->host->msg_id(ev->msg);
	if (k->refused && k->busy != id && is_retry(o, k, ev->msg)) {
		kt_set_busy(&o->kt, k, id); /* the refused message again: it takes its place */
		refusal_end(o, k);
		if (k->busy_stored || durable(o, k->t))
			put_busy(o, k);
		return 0;
	}
	was = k->busy;
	switch (kt_deliver(&o->kt, k, id, ev->qos)) {
	case KT_WAITING:
		res->verdict = SP_KEEP; /* kept already */
		return 0;
	case KT_WAIT:
		return keep(o, k, ev->msg, ev->qos, res);
	case KT_PASS:
		break;
	}
	if (k->busy == id && was != id && durable(o, k->t))
		put_busy(o, k);
	else if (!k->busy && was == id && !k->releasing)
		key_free_or_next(o, k, false); /* the busy message went on at QoS 0 */
	return 0;
}

/* The delivery of ev->msg to its target ended: the key's next message may go. */
static int on_done(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct ord *o = udata;
	struct kt_key *k = busy_key(o, ev);

	(void)res;
	if (!k)
		return 0;
	if (ev->type == SP_EV_DROPPED && ev->moving) {
		o->moved++; /* it comes back through the group's queue, still busy */
		if (filter_of(o, k))
			filter_of(o, k)->moved++;
		return 0;
	}
	refusal_end(o, k);
	if (kt_done(&o->kt, k, o->host->msg_id(ev->msg)) && !k->releasing)
		key_free_or_next(o, k, ev->type != SP_EV_DROPPED);
	return 0;
}

static void watch_expiry(struct ord *o);

/* Refused keys whose message expired (so it will not come again), collected by expired_key. */
struct expired {
	const struct sp_host *host;
	struct kt_key **keys;
	size_t n, cap, left;
	uint64_t now;
};

static int expired_key(void *arg, struct kt_key *k)
{
	struct expired *x = arg;
	struct kt_key **a;

	if (!k->refused || !k->aux_until)
		return 0;
	if (x->now < k->aux_until + EXPIRY_GRACE_MS) {
		x->left++;
		return 0;
	}
	if (x->n == x->cap) {
		x->cap = x->cap ? x->cap * 2 : 16;
		a = x->host->alloc(x->cap * sizeof(*a));
		if (!a)
			return 1;
		if (x->n)
			memcpy(a, x->keys, x->n * sizeof(*a));
		x->host->free(x->keys);
		x->keys = a;
	}
	x->keys[x->n++] = k;
	return 0;
}

static void on_expiry_timer(void *arg)
{
	struct ord *o = arg;
	struct expired x = { 0 };

	x.host = o->host;
	o->expiry_timer = NULL;
	x.now = o->host->now_ms();
	kt_each(&o->kt, expired_key, &x);
	for (size_t i = 0; i < x.n; i++) {
		struct kt_key *k = x.keys[i];

		o->host->log(
			o->self, SP_LOG_INFO,
			"ordered: a refused message expired before its redelivery: its key goes on");
		refusal_end(o, k);
		if (kt_done(&o->kt, k, k->busy) && !k->releasing)
			key_free_or_next(o, k, false);
	}
	o->host->free(x.keys);
	if (x.left)
		watch_expiry(o);
}

/* Refused keys are looked at every second while one waits for a message that may expire. */
static void watch_expiry(struct ord *o)
{
	if (!o->expiry_timer && o->started)
		o->expiry_timer = o->host->timer_add(o->self, 1000, on_expiry_timer, o);
}

/*
 * A refusal: with a plugin that sends refused messages again (the retry
 * plugin, before this one in the chain), the key stays busy for the
 * redelivery, which comes with the user property delivery-count (on_deliver)
 * or ends as a dead letter (dead_letter); without one, the message is over.
 */
static int on_nacked(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct ord *o = udata;
	struct kt_key *k;

	if (o->host->listeners(o->self, SP_EV_NACKED) < 1)
		return on_done(ev, res, udata);
	if (!(k = busy_key(o, ev)))
		return 0;
	if (k->dead) /* its dead letter is out already */
		return on_done(ev, res, udata);
	refusal_end(o, k);
	k->refused = true;
	k->aux = o->host->msg_ref(ev->msg); /* to know its redelivery from a look-alike */
	k->aux_until = o->host->msg_expiry(ev->msg);
	if (k->aux_until)
		watch_expiry(o);
	if (k->busy_stored || durable(o, k->t))
		put_busy(o, k);
	return 0;
}

/* A dropped key's waiting message (w), or the key itself (w NULL): its rows go. */
static void drop_entry(void *arg, struct kt_key *k, struct kt_wait *w)
{
	struct ord *o = arg;

	if (!w) {
		del_busy(o, k);
		refusal_end(o, k);
		return;
	}
	del_wait(o, k, w);
	o->host->msg_unref(w->msg);
}

/* Everything of one target goes (its session or group ended). */
static void drop_target(struct ord *o, struct kt_target *t)
{
	kt_target_drop(&o->kt, t, drop_entry, o);
}

static int on_target_end(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct ord *o = udata;
	struct kt_target *t;

	(void)res;
	if (!(t = event_target(o, ev)))
		return 0;
	drop_target(o, t);
	return 0;
}

/* A session or subscription changed: the targets' durability is asked again. */
static int on_change(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct ord *o = udata;

	(void)res;
	o->gen++;
	if (ev->type == SP_EV_SESSION_END || ev->type == SP_EV_GROUP_END)
		return on_target_end(ev, res, udata);
	return 0;
}

/* Is the {group or client} part g of a dead letter's topic name's? ('+', '#' became '_'.) */
static bool dlq_names(const char *g, size_t gl, const char *name)
{
	size_t i;

	for (i = 0; i < gl; i++)
		if (g[i] != name[i] && !(g[i] == '_' && (name[i] == '+' || name[i] == '#')))
			return false;
	return !name[gl];
}

/*
 * The refused message of target t's key is a dead letter: the key's next
 * message goes. The retry plugin routes it from its NACKED callback, before
 * this plugin's has marked the key refused: then the refusal is the end.
 */
static void dead_key(struct ord *o, struct kt_target *t, const struct sp_msg *m)
{
	struct kt_key *k = kt_key_find(&o->kt, t, o->c_key.p, o->c_key.len);

	if (!k || !k->busy || !same_payload(o, k->aux, m))
		return;
	if (!k->refused) {
		k->dead = true;
		return;
	}
	refusal_end(o, k);
	if (kt_done(&o->kt, k, k->busy) && !k->releasing)
		key_free_or_next(o, k, false);
}

/*
 * A dead letter ($DLQ/{group or client}/{topic}, user property
 * original-topic) routed by the retry plugin: the refused message of its key
 * will not come again, at the targets of that client or group.
 */
static void dead_letter(struct ord *o, const struct sp_msg *m)
{
	const char *topic = o->host->msg_topic(m), *orig, *g;
	size_t tl = strlen(topic), ol, gl, i;
	struct kt_target *t, *next;
	struct buf name = { 0 };

	if (strncmp(topic, DLQ_PREFIX, sizeof(DLQ_PREFIX) - 1) ||
	    !(orig = user_prop(o, m, ORIGINAL_TOPIC, &ol)) || tl < sizeof(DLQ_PREFIX) + ol ||
	    memcmp(topic + tl - ol, orig, ol) || topic[tl - ol - 1] != '/')
		return;
	g = topic + sizeof(DLQ_PREFIX) - 1;
	gl = tl - ol - 1 - (sizeof(DLQ_PREFIX) - 1);
	o->c_msg = NULL; /* c_key is the original topic's now */
	if (buf_add(o, &name, orig, ol) || buf_add(o, &name, "", 1) ||
	    !classify_as(o, m, (const char *)name.p)) {
		o->host->free(name.p);
		return;
	}
	o->host->free(name.p);
	for (i = 0; i < o->kt.cap_targets; i++)
		for (t = o->kt.targets[i]; t; t = next) {
			next = t->hnext;
			if (dlq_names(g, gl, (const char *)t->name + 1))
				dead_key(o, t, m); /* may free t */
		}
}

static int on_publish(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct ord *o = udata;

	if (!ev->protocol && o->kt.n_keys && o->host->msg_topic(ev->msg)[0] == '$')
		dead_letter(o, ev->msg); /* routed by a plugin: no client can forge one */

	if (!o->max_waiting || o->kt.n_wait < o->max_waiting || !classify(o, ev->msg))
		return 0;
	res->verdict = SP_REJECT;
	res->reason = 0x97;
	res->reason_string = "ordered: too many messages wait behind their key (max_waiting)";
	o->host->log(o->self, SP_LOG_WARNING,
		     "ordered: message on '%s' from '%s' refused (0x97): %" PRIu64
		     " messages wait behind their key (plugin_opt_max_waiting)",
		     o->host->msg_topic(ev->msg), ev->client_id, o->kt.n_wait);
	return 0;
}

/* --- $SYS ---------------------------------------------------------------------------- */

static int count_key(void *arg, struct kt_key *k)
{
	struct filt *f = filter_of(arg, k);

	if (f) {
		f->keys++;
		f->waiting += k->n_wait;
	}
	return 0;
}

/* The figures of every key, for GET /metrics and $SYS/broker/ordered/... */
static const struct sp_metric metrics[] = {
	{ "sluice_ordered_keys", "Keys with a message in flight or waiting.", SP_METRIC_GAUGE, NULL,
	  NULL, "ordered/keys" },
	{ "sluice_ordered_waiting", "Messages waiting behind an earlier one of their key.",
	  SP_METRIC_GAUGE, NULL, NULL, "ordered/waiting" },
	{ "sluice_ordered_moved_total", "Keys moved to another group member.", SP_METRIC_COUNTER,
	  NULL, NULL, "ordered/moved" },
};

/* One figure of each filter (N from 1, in file order), labelled by the filter. */
static void report_filters(struct ord *o, struct plugin_report *r, const char *name,
			   const char *help, int type, const char *leaf, size_t field)
{
	char sys[48];

	for (size_t i = 0; i < o->n_filters; i++) {
		const struct filt *f = &o->filters[i];
		const uint64_t v[] = { f->keys, f->waiting, f->moved };
		struct sp_metric m = { name, help, type, "filter", f->filter, sys };

		snprintf(sys, sizeof(sys), "ordered/filter/%zu/%s", i + 1, leaf);
		plugin_metric(r, &m, v[field]);
	}
}

/* Every figure, to GET /metrics or to $SYS (one source for both). */
static void report(struct ord *o, struct plugin_report *r)
{
	const uint64_t v[] = { o->kt.n_keys, o->kt.n_wait, o->moved };

	for (size_t i = 0; i < o->n_filters; i++)
		o->filters[i].keys = o->filters[i].waiting = 0;
	kt_each(&o->kt, count_key, o); /* one walk of the key table per report */
	plugin_metrics(r, metrics, v, sizeof(metrics) / sizeof(metrics[0]));
	report_filters(o, r, "sluice_ordered_filter_keys", "Keys of an ordered filter.",
		       SP_METRIC_GAUGE, "keys", 0);
	report_filters(o, r, "sluice_ordered_filter_waiting",
		       "Messages of an ordered filter waiting behind their key.", SP_METRIC_GAUGE,
		       "waiting", 1);
	report_filters(o, r, "sluice_ordered_filter_moved_total",
		       "Keys of an ordered filter moved to another member.", SP_METRIC_COUNTER,
		       "moved", 2);
}

static void collect(void *arg, struct sp_metrics *out)
{
	struct ord *o = arg;
	struct plugin_report r = { o->host, o->self, out };

	report(o, &r);
}

/* $SYS: the figures, and each filter's text on ordered/filter/N/filter. */
static void sys_stats(void *arg)
{
	struct ord *o = arg;
	struct plugin_report r = { o->host, o->self, NULL };
	char leaf[48];

	o->sys_timer = NULL;
	report(o, &r);
	for (size_t i = 0; i < o->n_filters; i++) {
		snprintf(leaf, sizeof(leaf), "filter/%zu/filter", i + 1);
		plugin_sys_publish_text(o->host, o->self, "ordered", leaf, o->filters[i].filter);
	}
	if (o->started)
		o->sys_timer = o->host->timer_add(o->self, o->sys_ms, sys_stats, o);
}

/* --- start and stop ------------------------------------------------------------------- */

/* Splits a row key into name and key (and the id of a waiting row); -1 when malformed. */
static int parse_row(const unsigned char *p, size_t n, bool wait, const unsigned char **name,
		     size_t *nlen, const unsigned char **key, size_t *klen, uint64_t *id)
{
	size_t need;

	if (n < 5)
		return -1;
	*nlen = (size_t)p[1] << 8 | p[2];
	if (n < 5 + *nlen)
		return -1;
	*name = p + 3;
	*klen = (size_t)p[3 + *nlen] << 8 | p[4 + *nlen];
	*key = p + 5 + *nlen;
	need = 5 + *nlen + *klen + (wait ? 8 : 0);
	if (n != need)
		return -1;
	*id = wait ? get_u64(*key + *klen) : 0;
	return 0;
}

static int load_busy(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct ord *o = arg;
	const unsigned char *name, *kb;
	size_t nl, kl;
	uint64_t unused;
	struct kt_key *k;

	if (parse_row(key, klen, false, &name, &nl, &kb, &kl, &unused) || vlen != 9) {
		o->host->log(o->self, SP_LOG_ERR, "ordered: skipping a malformed busy row");
		return 0;
	}
	if (!(k = kt_key_get(&o->kt, name, nl, kb, kl)))
		return 1;
	kt_set_busy(&o->kt, k, get_u64(val));
	k->refused = ((const unsigned char *)val)[8] & 1;
	k->busy_stored = true;
	return 0;
}

static int load_wait(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct ord *o = arg;
	const unsigned char *name, *kb, *v = val;
	size_t nl, kl;
	uint64_t id;
	struct kt_key *k;
	struct kt_wait *w;
	struct sp_msg *m;

	if (parse_row(key, klen, true, &name, &nl, &kb, &kl, &id)) {
		o->host->log(o->self, SP_LOG_ERR, "ordered: skipping a malformed waiting row");
		return 0;
	}
	/* New messages get ids above the stored ones: the list stays in the order of the
	 * original ids, which the broker's own restored messages keep too. */
	o->host->msg_ids_after(id);
	if (vlen < 2 || !(m = o->host->msg_decode(v + 1, vlen - 1))) {
		o->host->log(o->self, SP_LOG_ERR, "ordered: skipping a malformed waiting row");
		return 0;
	}
	if (!(k = kt_key_get(&o->kt, name, nl, kb, kl)) ||
	    !(w = kt_wait_add(&o->kt, k, id, m, v[0]))) {
		o->host->msg_unref(m);
		return 1;
	}
	w->row = id;
	w->stored = true;
	return 0;
}

/* Targets that are gone (session ended, group without persistent member) lose their state. */
static void drop_gone(struct ord *o)
{
	struct kt_target *t;
	size_t i;

	for (i = 0; i < o->kt.cap_targets; i++) {
		t = o->kt.targets[i];
		while (t) {
			struct kt_target *next = t->hnext;

			if (!durable(o, t))
				drop_target(o, t);
			t = next;
		}
	}
}

static int release_free(void *arg, struct kt_key *k)
{
	if (k->head && !k->busy)
		release_later(arg, k);
	return 0;
}

static int on_start(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct ord *o = udata;
	char b = PFX_BUSY, w = PFX_WAIT;

	(void)ev;
	(void)res;
	o->started = true;
	if (o->host->kv_scan(o->self, &b, 1, load_busy, o) ||
	    o->host->kv_scan(o->self, &w, 1, load_wait, o))
		o->host->log(
			o->self, SP_LOG_ERR,
			"ordered: out of memory restoring the keys: some wait for the next start");
	drop_gone(o);
	kt_each(&o->kt, release_free, o);
	o->host->log(o->self, SP_LOG_NOTICE,
		     "ordered: %zu filter(s); %zu key(s) busy or waiting, %" PRIu64
		     " message(s) waiting, restored",
		     o->n_filters, o->kt.n_keys, o->kt.n_wait);
	if (o->sys_ms)
		sys_stats(o);
	return 0;
}

static void unref_entry(void *arg, struct kt_key *k, struct kt_wait *w)
{
	struct ord *o = arg;

	if (w)
		o->host->msg_unref(w->msg);
	else
		refusal_end(o, k);
}

/* Frees what is in memory (the rows stay in the store). */
static void free_all(struct ord *o)
{
	for (size_t i = 0; i < o->n_pend; i++)
		o->host->free(o->pend[i].bytes);
	o->n_pend = 0;
	kt_free(&o->kt, unref_entry, o);
}

static int on_stop(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct ord *o = udata;

	(void)ev;
	(void)res;
	o->started = false;
	if (o->sys_timer)
		o->host->timer_cancel(o->sys_timer);
	if (o->pend_timer)
		o->host->timer_cancel(o->pend_timer);
	if (o->expiry_timer)
		o->host->timer_cancel(o->expiry_timer);
	o->sys_timer = o->pend_timer = o->expiry_timer = NULL;
	o->host->log(o->self, SP_LOG_INFO,
		     "ordered: stopped with %zu key(s) busy or waiting, %" PRIu64 " waiting",
		     o->kt.n_keys, o->kt.n_wait);
	free_all(o);
	return kt_init(&o->kt, o->host->alloc, o->host->free);
}

/* --- options ---------------------------------------------------------------------------- */

/* Is f a topic filter: levels split by '/', '+' alone in a level, '#' alone and last? */
static const char *bad_filter(const char *f)
{
	size_t i, n = strlen(f);

	if (!n)
		return "it is empty";
	if (n > UINT16_MAX)
		return "it is longer than 65535 bytes";
	if (!strncmp(f, "$share/", 7))
		return "a shared subscription is not a topic filter";
	for (i = 0; i < n; i++) {
		bool starts = !i || f[i - 1] == '/', ends = i + 1 == n || f[i + 1] == '/';

		if (f[i] == '+' && !(starts && ends))
			return "'+' must be a whole level";
		if (f[i] == '#' && !(starts && i + 1 == n))
			return "'#' must be the whole last level";
	}
	return NULL;
}

/* "a/b/#" -> 4 (a prefix filter filter_match compares itself), else 0. */
static size_t prefix_of(const char *f)
{
	size_t n = strlen(f);

	if (n < 3 || strcmp(f + n - 2, "/#") || strchr(f, '+') || memchr(f, '#', n - 1))
		return 0;
	return n - 1;
}

static int add_filter(struct ord *o, const struct sp_opt *opt, size_t index, bool global)
{
	const char *why = bad_filter(opt->value), *where;
	struct filt *a;

	if (!why && o->n_filters == FILTERS_MAX)
		why = "more than 65535 filters";
	if (why) {
		where = SP_HOST_HAS(o->host, opt_where) ? o->host->opt_where(o->self, index) : NULL;
		o->host->log(o->self, SP_LOG_ERR, "%s%sordered: bad filter in plugin_opt_%s %s: %s",
			     where ? where : "", where ? ": " : "", opt->key, opt->value, why);
		return -1;
	}
	if (!(a = o->host->alloc((o->n_filters + 1) * sizeof(*a))))
		return -1;
	if (o->n_filters)
		memcpy(a, o->filters, o->n_filters * sizeof(*a));
	o->host->free(o->filters);
	o->filters = a;
	a = &a[o->n_filters];
	memset(a, 0, sizeof(*a));
	a->global = global;
	a->prefix = prefix_of(opt->value);
	if (!(a->filter = o->host->alloc(strlen(opt->value) + 1)))
		return -1;
	memcpy(a->filter, opt->value, strlen(opt->value) + 1);
	o->n_filters++;
	return 0;
}

static int apply_opt(struct ord *o, const struct sp_opt *opt, size_t index)
{
	const char *k = opt->key, *v = opt->value, *form, *where;
	int bad;

	if (!strcmp(k, "keyed") || !strcmp(k, "global"))
		return add_filter(o, opt, index, k[0] == 'g');
	if (!strcmp(k, "max_waiting")) {
		bad = retry_parse_uint(v, strlen(v), &o->max_waiting);
		form = "a number, 0 = no limit";
	} else if (!strcmp(k, "sys_interval")) {
		bad = retry_parse_duration(v, strlen(v), &o->sys_ms);
		form = "a duration (ms, s, m = minutes, h, d), 0 = off";
	} else {
		bad = 1;
		form = "unknown option (keyed, global, max_waiting, sys_interval)";
	}
	if (!bad)
		return 0;
	where = SP_HOST_HAS(o->host, opt_where) ? o->host->opt_where(o->self, index) : NULL;
	o->host->log(o->self, SP_LOG_ERR, "%s%sordered: bad option plugin_opt_%s %s: %s",
		     where ? where : "", where ? ": " : "", k, v, form);
	return -1;
}

static void free_filters(struct ord *o)
{
	for (size_t i = 0; i < o->n_filters; i++)
		o->host->free(o->filters[i].filter);
	o->host->free(o->filters);
	o->filters = NULL;
	o->n_filters = 0;
}

static void free_ord(struct ord *o)
{
	free_all(o);
	free_filters(o);
	o->host->free(o->pend);
	o->host->free(o->c_key.p);
	o->host->free(o->name.p);
	o->host->free(o->row.p);
	o->host->free(o);
}

/* --- entry points ------------------------------------------------------------------------ */

int sluice_plugin_version(void)
{
	return SLUICE_PLUGIN_API;
}

static int register_events(struct ord *o)
{
	const struct sp_host *h = o->host;

	return h->on(o->self, SP_EV_START, on_start) || h->on(o->self, SP_EV_STOP, on_stop) ||
	       h->on(o->self, SP_EV_PUBLISH, on_publish) ||
	       h->on(o->self, SP_EV_DELIVER, on_deliver) || h->on(o->self, SP_EV_ACKED, on_done) ||
	       h->on(o->self, SP_EV_NACKED, on_nacked) || h->on(o->self, SP_EV_RECEIVED, on_done) ||
	       h->on(o->self, SP_EV_DROPPED, on_done) ||
	       h->on(o->self, SP_EV_SESSION_END, on_change) ||
	       h->on(o->self, SP_EV_GROUP_END, on_change) ||
	       h->on(o->self, SP_EV_CONNECT, on_change) ||
	       h->on(o->self, SP_EV_DISCONNECT, on_change) ||
	       h->on(o->self, SP_EV_SUBSCRIBE, on_change) ||
	       h->on(o->self, SP_EV_UNSUBSCRIBE, on_change);
}

int sluice_plugin_init(const struct sp_host *host, struct sp_plugin *self,
		       const struct sp_opt *opts, int n_opts, void **udata)
{
	struct ord *o;
	int i;

	*udata = NULL;
	if (host->api != SLUICE_PLUGIN_API || !SP_HOST_HAS(host, msg_ids_after)) {
		host->log(self, SP_LOG_ERR,
			  "ordered: the broker lacks redeliver, KEEP and listeners");
		return -1;
	}
	retry_set_alloc(host->alloc, host->free);
	if (!(o = host->alloc(sizeof(*o))))
		return -1;
	memset(o, 0, sizeof(*o));
	o->host = host;
	o->self = self;
	o->max_waiting = DEFAULT_MAX_WAITING;
	o->gen = 1;
	o->sys_ms = DEFAULT_SYS_MS;
	if (kt_init(&o->kt, host->alloc, host->free))
		goto fail;
	for (i = 0; i < n_opts; i++)
		if (apply_opt(o, &opts[i], (size_t)i))
			goto fail;
	/* No filter: no callback at all, so the plugin costs nothing. The collector last:
	 * nothing after it may fail (the host would keep calling a freed one). */
	if (o->n_filters && (register_events(o) || (SP_HOST_HAS(host, metric) &&
						    host->metrics_register(self, collect, o))))
		goto fail;
	*udata = o;
	host->log(self, SP_LOG_INFO, "ordered: %zu filter(s), at most %" PRIu64 " waiting",
		  o->n_filters, o->max_waiting);
	return 0;
fail:
	free_ord(o);
	return -1;
}

void sluice_plugin_cleanup(void *udata)
{
	struct ord *o = udata;

	if (o)
		free_ord(o);
}
