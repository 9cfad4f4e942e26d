/*
 * txn.c - the transactional topics plugin: half messages, atomic commit of
 * several messages, rollback, and check-back of a silent producer, over
 * plain MQTT (README "Transactional messages"; the topic forms and the
 * record are txnparse.c's). Loop thread only, like every plugin callback.
 *
 * State. Every transaction, open or resolved, is a struct txn in a hash
 * table keyed by its id, mirrored by one key/value record "t"+id (txn_rec)
 * that says everything but the messages. A half message is rewritten to its
 * target topic (without the producer-group and check-after-ms properties,
 * which were for the broker) and encoded into the cold value "m"+id+"/"+seq;
 * memory holds no payload while a transaction is open, so open transactions
 * cost their record and this struct. Both writes are queued during the
 * PUBLISH callback, so the publisher's PUBACK/PUBREC follows their commit.
 *
 * Commit. Recent half messages are also kept in memory (the cache, up to
 * CACHE_BYTES): a transaction whose messages are all there commits in the
 * turn of its commit PUBLISH, writing COMMITTED, routing the messages and
 * deleting their payloads in one store transaction; the host holds routed
 * messages back from subscribers until it is committed, and the commit's
 * PUBACK follows it. Otherwise (an evicted cache, a restored transaction,
 * or COMMITTED could not be written), the PUBLISH of $txn/commit/{id}
 * writes the record as COMMITTING:
 * once that is stored (and only then is the commit acknowledged) the
 * outcome is decided and survives a crash. The messages are then read back
 * (cold_get answers later) and, once all are in memory, the record's
 * COMMITTED state is written, the messages are routed in order in one go
 * and their payloads range-deleted, all in one turn of the loop (the record
 * first, so that a record that cannot be written routes nothing). The
 * broker hands everything queued in one turn to the store as one
 * transaction, so after a crash either all the routed copies (subscriber
 * queues, retained messages, delayed messages) and the COMMITTED record
 * exist, or none does and the restart routes them all again from the
 * COMMITTING record. A route that fails for lack of memory stops the run:
 * the record, written again, keeps how many were routed (routed), and a
 * retry timer goes on from there.
 *
 * Check-back. One timer per open transaction, armed lazily: a half message
 * only moves last_ms, and a timer that fires early re-arms itself for the
 * real due time (last_ms + check_after + checks * check_interval, on the wall
 * clock, so timing continues across a restart). Members of the producer
 * group are asked on $txn/check/{group}; check_max unanswered checks roll
 * the transaction back with a notice on $txn/discarded/{group}.
 *
 * Outcomes are remembered for plugin_opt_remember so that a retried commit
 * or rollback succeeds again without delivering twice; a sweep forgets them.
 *
 * Invariants: n_open counts the OPEN transactions; a transaction has a timer
 * only while OPEN (check-back) or COMMITTING (retry of a read or a route);
 * msgs/reads exist only while COMMITTING and after START; a cache exists
 * only while OPEN, holds all count messages, and is in the LRU list, whose
 * caches' bytes add up to tx->cache_bytes.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "plugin_sys.h"
#include "sluice_plugin.h"
#include "txnparse.h"

#define HOST_MIN_SIZE (offsetof(struct sp_host, subscribed) + sizeof(void *))
#define DEFAULT_MAX_MESSAGES 1000
#define DEFAULT_MAX_OPEN 100000
#define DEFAULT_CHECK_AFTER_MS 6000
#define DEFAULT_CHECK_INTERVAL_MS 30000
#define DEFAULT_CHECK_MAX 15
#define DEFAULT_REMEMBER_MS 3600000
#define DEFAULT_SYS_MS 10000
#define CHECK_AFTER_MAX_MS UINT64_C(2592000000) /* 30 days */
#define RETRY_MS 500 /* a failed read, route or check message is tried again after this */
#define READ_TRIES 5 /* "absent" answers before a payload is given up */
#define CACHE_BYTES (16u << 20) /* recent half messages also kept in memory, at most */
#define MSG_OVERHEAD 128 /* a message's bytes besides its topic and payload, about */

struct tx;

/* One outstanding read of a COMMITTING transaction's message. */
struct read_ctx {
	struct txn *t;
	uint32_t seq;
};

struct txn {
	struct txn *hnext;
	struct tx *tx;
	struct sp_timer *timer;
	struct sp_msg **msgs; /* COMMITTING: by seq - routed, NULL until read */
	struct read_ctx *reads; /* COMMITTING: one per message still to route */
	struct sp_msg **cache; /* OPEN: every half message, in order, or NULL (see cache_add) */
	uint32_t n_cache, cap_cache;
	size_t cache_bytes;
	struct txn *lru_prev, *lru_next; /* among the transactions with a cache, oldest first */
	uint32_t reading; /* reads outstanding */
	uint32_t tries; /* reads answered "absent" so far */
	uint8_t state; /* enum txn_state */
	uint32_t count, routed, checks;
	uint64_t opened_ms, last_ms, check_after_ms, resolved_ms;
	char *owner, *group;
	size_t id_len;
	char id[TXN_ID_MAX + 1];
};

struct tx {
	const struct sp_host *host;
	struct sp_plugin *self;
	struct txn **buckets;
	size_t n_buckets, n; /* n: every transaction in the table */
	size_t n_open;
	bool started;
	struct txn *lru_head, *lru_tail; /* transactions with a cache, least recent first */
	size_t cache_bytes;
	struct sp_timer *sys_timer, *sweep_timer;
	/* options */
	uint64_t max_messages, max_open, check_after_ms, check_interval_ms, check_max;
	uint64_t remember_ms, sys_ms;
	/* counters since start */
	uint64_t committed, rolled_back, checks, discarded, lost;
	char why[96]; /* a reason string built for one PUBLISH callback */
};

static void deliver(struct txn *t);
static void finish_delivery(struct txn *t);
static int begin_delivery(struct tx *tx, struct txn *t);
static void arm(struct txn *t, uint64_t delay_ms, sp_timer_fn fn);

/* --- the table ------------------------------------------------------------------------- */

static size_t hash(const char *id, size_t len)
{
	uint64_t h = UINT64_C(1469598103934665603);

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)id[i]) * UINT64_C(1099511628211);
	return (size_t)h;
}

static struct txn *find(struct tx *tx, const char *id, size_t len)
{
	struct txn *t;

	if (!tx->n_buckets)
		return NULL;
	for (t = tx->buckets[hash(id, len) & (tx->n_buckets - 1)]; t; t = t->hnext)
		if (t->id_len == len && !memcmp(t->id, id, len))
			return t;
	return NULL;
}

/* Doubles the buckets; on failure the table stays as it is (only longer chains). */
static void grow(struct tx *tx)
{
	size_t n = tx->n_buckets ? tx->n_buckets * 2 : 1024, i;
	struct txn **b = tx->host->alloc(n * sizeof(*b)), *t, *next;

	if (!b)
		return;
	memset(b, 0, n * sizeof(*b));
	for (i = 0; i < tx->n_buckets; i++)
		for (t = tx->buckets[i]; t; t = next) {
			next = t->hnext;
			t->hnext = b[hash(t->id, t->id_len) & (n - 1)];
			b[hash(t->id, t->id_len) & (n - 1)] = t;
		}
	tx->host->free(tx->buckets);
	tx->buckets = b;
	tx->n_buckets = n;
}

static char *dup_str(struct tx *tx, const char *s, size_t len)
{
	char *p = tx->host->alloc(len + 1);

	if (p) {
		memcpy(p, s, len);
		p[len] = '\0';
	}
	return p;
}

/* A new transaction in the table (not yet stored), or NULL when out of memory. */
static struct txn *add(struct tx *tx, const char *id, size_t id_len, const char *owner,
		       size_t owner_len, const char *group, size_t group_len)
{
	struct txn *t;
	size_t b;

	if (tx->n >= tx->n_buckets)
		grow(tx);
	if (!tx->n_buckets)
		return NULL;
	t = tx->host->alloc(sizeof(*t));
	if (!t)
		return NULL;
	memset(t, 0, sizeof(*t));
	t->tx = tx;
	t->owner = dup_str(tx, owner, owner_len);
	t->group = dup_str(tx, group, group_len);
	if (!t->owner || !t->group) {
		tx->host->free(t->owner);
		tx->host->free(t->group);
		tx->host->free(t);
		return NULL;
	}
	memcpy(t->id, id, id_len);
	t->id_len = id_len;
	b = hash(id, id_len) & (tx->n_buckets - 1);
	t->hnext = tx->buckets[b];
	tx->buckets[b] = t;
	tx->n++;
	return t;
}

/* --- the cache ---------------------------------------------------------------------- */

/*
 * A transaction's half messages stay in memory too (the copies stored as
 * cold values), up to CACHE_BYTES for all transactions, so that a commit
 * routes them at once instead of reading them back. A cache holds every
 * message of its transaction or does not exist; the least recently used
 * caches go first when the budget is exceeded, and a restored transaction
 * has none.
 */
static void lru_unlink(struct tx *tx, struct txn *t)
{
	if (t->lru_prev)
		t->lru_prev->lru_next = t->lru_next;
	else
		tx->lru_head = t->lru_next;
	if (t->lru_next)
		t->lru_next->lru_prev = t->lru_prev;
	else
		tx->lru_tail = t->lru_prev;
	t->lru_prev = t->lru_next = NULL;
}

static void lru_append(struct tx *tx, struct txn *t)
{
	t->lru_prev = tx->lru_tail;
	t->lru_next = NULL;
	if (tx->lru_tail)
		tx->lru_tail->lru_next = t;
	else
		tx->lru_head = t;
	tx->lru_tail = t;
}

static void cache_drop(struct txn *t)
{
	struct tx *tx = t->tx;

	if (!t->cache)
		return;
	for (uint32_t i = 0; i < t->n_cache; i++)
		tx->host->msg_unref(t->cache[i]);
	tx->host->free(t->cache);
	lru_unlink(tx, t);
	tx->cache_bytes -= t->cache_bytes;
	t->cache = NULL;
	t->n_cache = t->cap_cache = 0;
	t->cache_bytes = 0;
}

static size_t msg_bytes(const struct tx *tx, const struct sp_msg *m)
{
	size_t len;

	tx->host->msg_payload(m, &len);
	return len + strlen(tx->host->msg_topic(m)) + MSG_OVERHEAD;
}

static int cache_grow(struct tx *tx, struct txn *t)
{
	uint32_t cap = t->cap_cache ? t->cap_cache * 2 : 4;
	struct sp_msg **a = tx->host->alloc(cap * sizeof(*a));

	if (!a)
		return -1;
	if (t->n_cache)
		memcpy(a, t->cache, t->n_cache * sizeof(*a));
	tx->host->free(t->cache);
	t->cache = a;
	t->cap_cache = cap;
	return 0;
}

/* m (a reference the cache takes over) is message number t->count - 1. */
static void cache_add(struct tx *tx, struct txn *t, struct sp_msg *m)
{
	bool fresh = t->count == 1;
	size_t bytes;

	if ((!fresh && !t->cache) || (t->n_cache == t->cap_cache && cache_grow(tx, t))) {
		tx->host->msg_unref(m);
		cache_drop(t); /* all or nothing: the commit reads them back */
		return;
	}
	bytes = msg_bytes(tx, m);
	t->cache[t->n_cache++] = m;
	t->cache_bytes += bytes;
	tx->cache_bytes += bytes;
	if (!fresh)
		lru_unlink(tx, t);
	lru_append(tx, t);
	while (tx->cache_bytes > CACHE_BYTES && tx->lru_head)
		cache_drop(tx->lru_head);
}

/* Frees what a COMMITTING transaction holds in memory for its delivery. */
static void drop_delivery(struct txn *t)
{
	struct tx *tx = t->tx;
	uint32_t i;

	if (t->msgs)
		for (i = 0; i < t->count - t->routed; i++)
			if (t->msgs[i])
				tx->host->msg_unref(t->msgs[i]);
	tx->host->free(t->msgs);
	tx->host->free(t->reads);
	t->msgs = NULL;
	t->reads = NULL;
}

static void cancel_timer(struct txn *t)
{
	if (t->timer)
		t->tx->host->timer_cancel(t->timer);
	t->timer = NULL;
}

static void txn_free(struct txn *t)
{
	struct tx *tx = t->tx;

	cancel_timer(t);
	drop_delivery(t);
	cache_drop(t);
	tx->host->free(t->owner);
	tx->host->free(t->group);
	tx->host->free(t);
}

static void remove_txn(struct tx *tx, struct txn *t)
{
	struct txn **pp = &tx->buckets[hash(t->id, t->id_len) & (tx->n_buckets - 1)];

	while (*pp != t)
		pp = &(*pp)->hnext;
	*pp = t->hnext;
	tx->n--;
	if (t->state == TXN_OPEN)
		tx->n_open--;
	txn_free(t);
}

/* --- the store -------------------------------------------------------------------------- */

static void to_rec(const struct txn *t, struct txn_rec *r)
{
	r->state = t->state;
	r->count = t->count;
	r->routed = t->routed;
	r->checks = t->checks;
	r->opened_ms = t->opened_ms;
	r->last_ms = t->last_ms;
	r->check_after_ms = t->check_after_ms;
	r->resolved_ms = t->resolved_ms;
	r->owner = t->owner;
	r->owner_len = strlen(t->owner);
	r->group = t->group;
	r->group_len = strlen(t->group);
}

/* Writes the record; 0, or -1 when it could not be queued (out of memory). */
static int save(struct txn *t)
{
	struct tx *tx = t->tx;
	uint8_t key[TXN_KEY_MAX], small[256], *v = small;
	struct txn_rec r;
	size_t len, klen = txn_key_rec(key, t->id, t->id_len);
	int rc;

	to_rec(t, &r);
	len = txn_rec_size(&r);
	if (len > sizeof(small) && !(v = tx->host->alloc(len)))
		return -1;
	txn_rec_encode(&r, v);
	rc = tx->host->kv_put(tx->self, key, klen, v, len);
	if (v != small)
		tx->host->free(v);
	return rc ? -1 : 0;
}

static void drop_messages(struct txn *t)
{
	uint8_t lo[TXN_KEY_MAX], hi[TXN_KEY_MAX];
	size_t lol, hil;

	txn_key_msg_range(t->id, t->id_len, lo, &lol, hi, &hil);
	if (t->tx->host->cold_del_range(t->tx->self, lo, lol, hi, hil))
		t->tx->host->log(t->tx->self, SP_LOG_WARNING,
				 "txn: '%s': its messages could not be deleted (out of memory); "
				 "they stay in the store unused",
				 t->id);
}

/* --- membership ------------------------------------------------------------------------- */

/* The owner, or a client subscribed to $txn/check/{group}. */
static bool is_member(struct tx *tx, const struct txn *t, const char *client_id)
{
	size_t gl = strlen(t->group);
	char small[128], *topic = small;
	int rc;

	if (!strcmp(client_id, t->owner))
		return true;
	if (gl + 12 > sizeof(small) && !(topic = tx->host->alloc(gl + 12)))
		return false;
	memcpy(topic, "$txn/check/", 11);
	memcpy(topic + 11, t->group, gl + 1);
	rc = tx->host->subscribed(client_id, topic);
	if (topic != small)
		tx->host->free(topic);
	return rc == 1;
}

/* --- check-back -------------------------------------------------------------------------- */

/* The message on $txn/{leaf}/{group} that asks about t (check) or reports it (discarded). */
static int notify(struct tx *tx, struct txn *t, const char *leaf)
{
	char checks[16], count[16];
	const char *keys[] = { "txn-id", "check", "owner", "messages" };
	const char *vals[] = { t->id, checks, t->owner, count };
	size_t tl = 5 + strlen(leaf) + 1 + strlen(t->group);
	struct sp_msg_spec spec;
	struct sp_msg *base = NULL, *m = NULL;
	char *topic = tx->host->alloc(tl + 1);
	int n = -1;

	if (!topic)
		return -1;
	snprintf(topic, tl + 1, "$txn/%s/%s", leaf, t->group);
	snprintf(checks, sizeof(checks), "%" PRIu32, t->checks);
	snprintf(count, sizeof(count), "%" PRIu32, t->count);
	memset(&spec, 0, sizeof(spec));
	spec.topic = topic;
	spec.topic_len = tl;
	spec.payload = t->id;
	spec.payload_len = t->id_len;
	spec.qos = 1;
	base = tx->host->msg_new(&spec);
	if (base)
		m = tx->host->msg_add_user_props(base, keys, vals, 4);
	if (m)
		n = tx->host->route(tx->self, m);
	if (m)
		tx->host->msg_unref(m);
	if (base)
		tx->host->msg_unref(base);
	tx->host->free(topic);
	return n < 0 ? -1 : 0;
}

static uint64_t check_due(const struct tx *tx, const struct txn *t)
{
	return t->last_ms + t->check_after_ms + (uint64_t)t->checks * tx->check_interval_ms;
}

static void rollback(struct tx *tx, struct txn *t);

/* check_max checks went unanswered: roll back, log, count, tell the operators. */
static void discard(struct tx *tx, struct txn *t)
{
	tx->host->log(tx->self, SP_LOG_WARNING,
		      "txn: '%s' rolled back after %" PRIu32
		      " unanswered check(s): owner '%s', group '%s', %" PRIu32 " message(s)",
		      t->id, t->checks, t->owner, t->group, t->count);
	tx->discarded++;
	if (notify(tx, t, "discarded"))
		tx->host->log(tx->self, SP_LOG_WARNING,
			      "txn: '%s': the notice on $txn/discarded/%s could not be published "
			      "(out of memory)",
			      t->id, t->group);
	rollback(tx, t);
}

static void on_check(void *arg)
{
	struct txn *t = arg;
	struct tx *tx = t->tx;
	uint64_t now = tx->host->now_ms(), due = check_due(tx, t);

	t->timer = NULL;
	if (t->state != TXN_OPEN)
		return;
	if (now < due)
		return arm(t, due - now, on_check); /* a half message moved it */
	if (t->checks >= tx->check_max)
		return discard(tx, t);
	t->checks++;
	if (notify(tx, t, "check")) {
		t->checks--;
		return arm(t, RETRY_MS, on_check);
	}
	tx->checks++;
	if (save(t))
		tx->host->log(tx->self, SP_LOG_WARNING,
			      "txn: '%s': check count not stored (out of memory)", t->id);
	arm(t, tx->check_interval_ms, on_check);
}

/* Arms t's timer; when that fails, a sweep of the table arms it later (see sweep). */
static void arm(struct txn *t, uint64_t delay_ms, sp_timer_fn fn)
{
	cancel_timer(t);
	t->timer = t->tx->host->timer_add(t->tx->self, delay_ms, fn, t);
}

static void arm_check(struct tx *tx, struct txn *t)
{
	uint64_t now = tx->host->now_ms(), due = check_due(tx, t);

	if (!t->timer)
		arm(t, due > now ? due - now : 0, on_check);
}

/* --- outcomes ---------------------------------------------------------------------------- */

static void resolved(struct tx *tx, struct txn *t, uint8_t state)
{
	if (t->state == TXN_OPEN)
		tx->n_open--;
	t->state = state;
	t->resolved_ms = tx->host->now_ms();
	cancel_timer(t);
}

static void rollback(struct tx *tx, struct txn *t)
{
	cache_drop(t);
	resolved(tx, t, TXN_ROLLED_BACK);
	tx->rolled_back++;
	if (save(t))
		tx->host->log(tx->self, SP_LOG_ERR,
			      "txn: '%s': rollback not stored (out of memory); it is rolled back "
			      "until a restart",
			      t->id);
	drop_messages(t);
}

static void on_retry(void *arg)
{
	struct txn *t = arg;

	t->timer = NULL;
	deliver(t);
}

static void read_more(struct txn *t);

static void on_read(void *arg, const void *val, size_t vlen)
{
	struct read_ctx *rc = arg;
	struct txn *t = rc->t;
	struct tx *tx = t->tx;
	uint32_t i = rc->seq - t->routed;

	t->reading--;
	if (!tx->started)
		return;
	if (val && !(t->msgs[i] = tx->host->msg_decode(val, vlen)))
		val = NULL; /* out of memory: read it again */
	if (!val)
		t->tries++;
	if (!t->reading)
		deliver(t);
}

/* Reads every message not yet in memory. */
static void read_more(struct txn *t)
{
	struct tx *tx = t->tx;
	uint8_t key[TXN_KEY_MAX];
	uint32_t i, n = t->count - t->routed;
	size_t klen;

	for (i = 0; i < n; i++) {
		if (t->msgs[i])
			continue;
		t->reads[i].t = t;
		t->reads[i].seq = t->routed + i;
		klen = txn_key_msg(key, t->id, t->id_len, t->routed + i);
		t->reading++;
		if (tx->host->cold_get(tx->self, key, klen, on_read, &t->reads[i])) {
			t->reading--;
			t->tries++;
		}
	}
	if (!t->reading)
		arm(t, RETRY_MS, on_retry);
}

static bool all_read(const struct txn *t)
{
	for (uint32_t i = 0; i < t->count - t->routed; i++)
		if (!t->msgs[i])
			return false;
	return true;
}

/* A message that kept reading "absent" is given up so that the rest is delivered. */
static void give_up_missing(struct tx *tx, struct txn *t)
{
	for (uint32_t i = 0; i < t->count - t->routed; i++)
		if (!t->msgs[i]) {
			tx->lost++;
			tx->host->log(tx->self, SP_LOG_ERR,
				      "txn: '%s': message %" PRIu32
				      " cannot be read from the store; committed without it",
				      t->id, t->routed + i);
		}
}

/* Routes, in order, every message from the first not yet routed. 0, or -1 (stopped). */
static int route_all(struct tx *tx, struct txn *t)
{
	uint32_t n = t->count - t->routed, i, done = 0;
	struct sp_msg *m;
	int rc = 0;

	for (i = 0; i < n; i++) {
		if (t->msgs[i]) {
			/* Its expiry counts from now: a copy, unless it has none. */
			m = tx->host->msg_expiry(t->msgs[i])
				    ? tx->host->msg_rewrite(t->msgs[i], NULL, NULL, 0, true)
				    : tx->host->msg_ref(t->msgs[i]);
			rc = m ? tx->host->route(tx->self, m) : -1;
			if (m)
				tx->host->msg_unref(m);
			if (rc < 0)
				break;
			tx->host->msg_unref(t->msgs[i]);
			t->msgs[i] = NULL;
		}
		done++;
	}
	if (done < n) {
		/* The rest moves to the front of msgs, the record says where it stopped. */
		memmove(t->msgs, t->msgs + done, (n - done) * sizeof(*t->msgs));
		t->routed += done;
		return -1;
	}
	t->routed += done;
	return 0;
}

/*
 * The record says COMMITTED before the messages go, in the same turn, so
 * that a record that cannot be written routes nothing (tried again later)
 * rather than leaving routed copies that a restart would route again.
 */
static int save_committed(struct txn *t)
{
	uint32_t routed = t->routed;
	int rc;

	t->state = TXN_COMMITTED;
	t->routed = t->count;
	rc = save(t);
	t->routed = routed;
	if (rc)
		t->state = TXN_COMMITTING;
	return rc;
}

/* Once every message is in memory: the outcome, then all of them, in one turn. */
static void deliver(struct txn *t)
{
	struct tx *tx = t->tx;

	if (t->state != TXN_COMMITTING || t->reading)
		return;
	if (!t->msgs) {
		begin_delivery(tx, t);
		return;
	}
	if (!all_read(t)) {
		if (t->tries < READ_TRIES)
			return read_more(t);
		give_up_missing(tx, t);
	}
	if (save_committed(t))
		return arm(t, RETRY_MS, on_retry); /* out of memory: nothing went */
	finish_delivery(t);
}

/* The COMMITTED record is written: every message goes, then the payloads. */
static void finish_delivery(struct txn *t)
{
	struct tx *tx = t->tx;

	if (route_all(tx, t)) {
		/* The record, written again in this turn, says how far it got. */
		t->state = TXN_COMMITTING;
		tx->host->log(tx->self, SP_LOG_WARNING,
			      "txn: '%s': out of memory routing its messages; %" PRIu32
			      " of %" PRIu32 " routed, the rest follows",
			      t->id, t->routed, t->count);
		if (save(t))
			tx->host->log(tx->self, SP_LOG_ERR,
				      "txn: '%s': progress not stored; a crash now loses the "
				      "messages not routed",
				      t->id);
		return arm(t, RETRY_MS, on_retry);
	}
	drop_delivery(t);
	tx->committed++;
	drop_messages(t);
}

/*
 * A COMMITTING transaction whose messages are all in its cache commits in
 * this turn: the COMMITTED record, the messages and the delete of their
 * payloads are one store transaction, and the messages reach subscribers
 * only once it is committed (host route). 0, or -1 when it cannot (no
 * complete cache, or the record could not be written): nothing was done.
 */
static int commit_now(struct txn *t)
{
	if (!t->cache || t->n_cache != t->count)
		return -1;
	t->msgs = t->cache; /* msgs[i] is message routed + i, routed is 0 */
	t->routed = 0;
	if (save_committed(t)) {
		t->msgs = NULL;
		return -1;
	}
	lru_unlink(t->tx, t);
	t->tx->cache_bytes -= t->cache_bytes;
	t->cache = NULL;
	t->n_cache = t->cap_cache = 0;
	t->cache_bytes = 0;
	finish_delivery(t);
	return 0;
}

/* The outcome is decided (COMMITTING is stored): read the messages back, then deliver. */
static int begin_delivery(struct tx *tx, struct txn *t)
{
	uint32_t n = t->count - t->routed;
	size_t slots = n ? n : 1;

	t->msgs = tx->host->alloc(slots * sizeof(*t->msgs));
	if (t->msgs)
		memset(t->msgs, 0, slots * sizeof(*t->msgs));
	t->reads = tx->host->alloc(slots * sizeof(*t->reads));
	if (!t->msgs || !t->reads) {
		drop_delivery(t);
		arm(t, RETRY_MS, on_retry);
		return -1;
	}
	t->tries = 0;
	if (!n) {
		deliver(t);
		return 0;
	}
	read_more(t);
	return 0;
}

/* --- PUBLISH ------------------------------------------------------------------------------ */

static int refuse(struct sp_result *res, uint8_t reason, const char *why)
{
	res->verdict = SP_REJECT;
	res->reason = reason;
	res->reason_string = why;
	return 0;
}

/* A resolved transaction answers for itself: "was committed" / "was rolled back". */
static const char *outcome_text(const struct txn *t)
{
	return t->state == TXN_ROLLED_BACK ? "transaction was rolled back"
					   : "transaction was committed";
}

static int user_prop(const struct tx *tx, const struct sp_msg *m, const char *key, const char **val,
		     size_t *vlen)
{
	size_t pos = 0, kl, klen = strlen(key);
	const char *k;

	while (tx->host->msg_user_prop(m, &pos, &k, &kl, val, vlen))
		if (kl == klen && !memcmp(k, key, kl))
			return 1;
	return 0;
}

/* The first half message: who owns it, its group, when to check. NULL with res set. */
static struct txn *open_txn(struct tx *tx, const struct sp_event *ev, const struct txn_topic *tp,
			    struct sp_result *res)
{
	const char *client = ev->client_id ? ev->client_id : "", *group = client, *v;
	size_t glen = strlen(client), vlen;
	uint64_t after = tx->check_after_ms;
	struct txn *t;

	if (tx->n_open >= tx->max_open) {
		refuse(res, TXN_RC_QUOTA, "too many open transactions");
		return NULL;
	}
	if (user_prop(tx, ev->msg, "producer-group", &group, &glen) != 1) {
		group = client;
		glen = strlen(client);
	}
	if (!txn_group_valid(group, glen)) {
		refuse(res, TXN_RC_IMPL, "the producer group cannot name a topic level");
		return NULL;
	}
	if (user_prop(tx, ev->msg, "check-after-ms", &v, &vlen) == 1 &&
	    (txn_parse_uint(v, vlen, &after) || !after || after > CHECK_AFTER_MAX_MS)) {
		refuse(res, TXN_RC_IMPL, "check-after-ms must be 1 to 2592000000 milliseconds");
		return NULL;
	}
	t = add(tx, tp->id, tp->id_len, client, strlen(client), group, glen);
	if (!t) {
		refuse(res, TXN_RC_UNSPECIFIED, "out of memory");
		return NULL;
	}
	t->state = TXN_OPEN;
	t->check_after_ms = after;
	t->opened_ms = tx->host->now_ms();
	tx->n_open++;
	return t;
}

/* Stores the half message as message number t->count. 0, or -1 (out of memory). */
static int store_half(struct tx *tx, struct txn *t, const struct sp_event *ev, const char *target)
{
	static const char *const drop[] = { "producer-group", "check-after-ms" };
	struct sp_msg *m = tx->host->msg_rewrite(ev->msg, target, drop, 2, false);
	uint8_t key[TXN_KEY_MAX];
	void *enc = NULL;
	size_t len, klen = txn_key_msg(key, t->id, t->id_len, t->count);
	uint64_t last = t->last_ms;
	uint32_t checks = t->checks;
	int rc = -1;

	if (m && !tx->host->msg_encode(m, &enc, &len) &&
	    !tx->host->cold_put(tx->self, key, klen, enc, len)) {
		t->count++;
		t->last_ms = tx->host->now_ms();
		t->checks = 0; /* the producer is alive: checks start over */
		rc = save(t);
		if (rc) {
			t->count--;
			t->last_ms = last;
			t->checks = checks;
			tx->host->cold_del(tx->self, key, klen); /* best effort: unused if left */
		}
	}
	tx->host->free(enc);
	if (!rc)
		cache_add(tx, t, m);
	else if (m)
		tx->host->msg_unref(m);
	return rc;
}

/*
 * The broker's access rules (acl_file) for a half message's topic, as it is
 * written: a target that is another plugin's ($delayed/...) needs a grant
 * on that topic ($delayed/+/orders/#, say), since the commit routes it as
 * the broker's own message, which no later plugin checks again.
 */
static bool may_write(struct tx *tx, const struct sp_event *ev, const char *target)
{
	if (!SP_HOST_HAS(tx->host, acl_check) || !ev->client_id)
		return true;
	return tx->host->acl_check(ev->client_id, ev->username, target, SP_ACL_WRITE) == 1;
}

static int on_half(struct tx *tx, const struct sp_event *ev, const struct txn_topic *tp,
		   struct sp_result *res)
{
	const char *client = ev->client_id ? ev->client_id : "";
	struct txn *t = find(tx, tp->id, tp->id_len);
	bool fresh = !t;
	uint32_t checked;

	if (!may_write(tx, ev, tp->target))
		return refuse(res, TXN_RC_NOT_AUTHORIZED,
			      "not authorised to publish on the half message's topic");
	if (t && t->state != TXN_OPEN)
		return refuse(res, TXN_RC_IMPL, outcome_text(t));
	if (t && !is_member(tx, t, client))
		return refuse(res, TXN_RC_NOT_AUTHORIZED, "not a member of the producer group");
	if (t && t->count >= tx->max_messages)
		return refuse(res, TXN_RC_QUOTA, "the transaction holds its maximum of messages");
	if (!t && !(t = open_txn(tx, ev, tp, res)))
		return 0;
	checked = t->checks;
	if (store_half(tx, t, ev, tp->target)) {
		if (fresh)
			remove_txn(tx, t);
		return refuse(res, TXN_RC_UNSPECIFIED, "out of memory");
	}
	if (checked)
		cancel_timer(t); /* the checks start over: the next one is due sooner */
	arm_check(tx, t);
	res->verdict = SP_TAKE;
	return 0;
}

/* The commit's txn-count, when given, must match. 0, or -1 with res set. */
static int check_count(struct tx *tx, const struct sp_event *ev, const struct txn *t,
		       struct sp_result *res)
{
	const char *v;
	size_t vlen;
	uint64_t n;

	if (user_prop(tx, ev->msg, "txn-count", &v, &vlen) != 1)
		return 0;
	if (txn_parse_uint(v, vlen, &n)) {
		refuse(res, TXN_RC_IMPL, "txn-count is not a number");
		return -1;
	}
	if (n != t->count) {
		snprintf(tx->why, sizeof(tx->why), "transaction holds %" PRIu32 " messages",
			 t->count);
		refuse(res, TXN_RC_IMPL, tx->why);
		return -1;
	}
	return 0;
}

/* The transaction a commit or rollback names, if the client may resolve it; else res is set. */
static struct txn *resolvable(struct tx *tx, const struct sp_event *ev, const struct txn_topic *tp,
			      struct sp_result *res)
{
	struct txn *t = find(tx, tp->id, tp->id_len);

	if (!t) {
		refuse(res, TXN_RC_IMPL, "unknown transaction");
		return NULL;
	}
	if (!is_member(tx, t, ev->client_id ? ev->client_id : "")) {
		refuse(res, TXN_RC_NOT_AUTHORIZED, "not a member of the producer group");
		return NULL;
	}
	return t;
}

static int on_commit(struct tx *tx, const struct sp_event *ev, const struct txn_topic *tp,
		     struct sp_result *res)
{
	struct txn *t = resolvable(tx, ev, tp, res);

	if (!t)
		return 0;
	if (t->state == TXN_ROLLED_BACK)
		return refuse(res, TXN_RC_IMPL, outcome_text(t));
	if (t->state == TXN_OPEN) {
		if (check_count(tx, ev, t, res))
			return 0;
		resolved(tx, t, TXN_COMMITTING);
		if (!commit_now(t))
			goto taken;
		if (save(t)) {
			t->state = TXN_OPEN;
			t->resolved_ms = 0;
			tx->n_open++;
			arm_check(tx, t);
			return refuse(res, TXN_RC_UNSPECIFIED, "out of memory");
		}
		begin_delivery(tx, t);
	}
taken:
	res->verdict = SP_TAKE; /* committed now, or again: nothing is delivered twice */
	return 0;
}

static int on_rollback(struct tx *tx, const struct sp_event *ev, const struct txn_topic *tp,
		       struct sp_result *res)
{
	struct txn *t = resolvable(tx, ev, tp, res);

	if (!t)
		return 0;
	if (t->state == TXN_COMMITTING || t->state == TXN_COMMITTED)
		return refuse(res, TXN_RC_IMPL, outcome_text(t));
	if (t->state == TXN_OPEN)
		rollback(tx, t);
	res->verdict = SP_TAKE;
	return 0;
}

static int on_publish(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tx *tx = udata;
	struct txn_topic tp;

	txn_parse_topic(tx->host->msg_topic(ev->msg), &tp);
	switch (tp.kind) {
	case TXN_NONE:
		return 0;
	case TXN_BAD:
		return refuse(res, tp.reason, tp.why);
	case TXN_HALF:
		return on_half(tx, ev, &tp, res);
	case TXN_COMMIT:
		return on_commit(tx, ev, &tp, res);
	case TXN_ROLLBACK:
		return on_rollback(tx, ev, &tp, res);
	}
	return 0;
}

/* --- $SYS and the sweep --------------------------------------------------------------------- */

static uint64_t oldest_open_ms(struct tx *tx)
{
	uint64_t now = tx->host->now_ms(), oldest = now;
	struct txn *t;

	for (size_t i = 0; i < tx->n_buckets; i++)
		for (t = tx->buckets[i]; t; t = t->hnext)
			if (t->state == TXN_OPEN && t->opened_ms < oldest)
				oldest = t->opened_ms;
	return now - oldest;
}

/* The figures, for GET /metrics and $SYS/broker/txn/... */
static const struct sp_metric metrics[] = {
	{ "sluice_txn_open", "Open transactions.", SP_METRIC_GAUGE, NULL, NULL, "txn/open" },
	{ "sluice_txn_committed_total", "Transactions committed.", SP_METRIC_COUNTER, NULL, NULL,
	  "txn/committed" },
	{ "sluice_txn_rolled_back_total", "Transactions rolled back.", SP_METRIC_COUNTER, NULL,
	  NULL, "txn/rolled_back" },
	{ "sluice_txn_checks_total", "Check-back requests sent to producer groups.",
	  SP_METRIC_COUNTER, NULL, NULL, "txn/checks" },
	{ "sluice_txn_discarded_total", "Transactions dropped after check_max unanswered checks.",
	  SP_METRIC_COUNTER, NULL, NULL, "txn/discarded" },
	{ "sluice_txn_oldest_open_ms", "Age of the oldest open transaction (ms; 0: none).",
	  SP_METRIC_GAUGE, NULL, NULL, "txn/oldest_open_ms" },
};

/* Every figure, to GET /metrics or to $SYS (one source for both). */
static void report(struct tx *tx, struct plugin_report *r)
{
	const uint64_t v[] = { tx->n_open, tx->committed, tx->rolled_back,
			       tx->checks, tx->discarded, oldest_open_ms(tx) };

	plugin_metrics(r, metrics, v, sizeof(metrics) / sizeof(metrics[0]));
}

static void collect(void *arg, struct sp_metrics *out)
{
	struct tx *tx = arg;
	struct plugin_report r = { tx->host, tx->self, out };

	report(tx, &r);
}

static void on_sys(void *arg)
{
	struct tx *tx = arg;
	struct plugin_report r = { tx->host, tx->self, NULL };

	tx->sys_timer = NULL;
	report(tx, &r);
	tx->sys_timer = tx->host->timer_add(tx->self, tx->sys_ms, on_sys, tx);
}

static uint64_t sweep_period(const struct tx *tx)
{
	uint64_t p = tx->remember_ms / 4;

	return p < 100 ? 100 : p > 60000 ? 60000 : p;
}

/* Forgets outcomes older than remember_ms, and arms timers that could not be armed. */
static void on_sweep(void *arg)
{
	struct tx *tx = arg;
	uint64_t now = tx->host->now_ms();
	uint8_t key[TXN_KEY_MAX];
	struct txn *t, *next;

	tx->sweep_timer = NULL;
	for (size_t i = 0; i < tx->n_buckets; i++)
		for (t = tx->buckets[i]; t; t = next) {
			next = t->hnext;
			if (t->state == TXN_OPEN)
				arm_check(tx, t);
			else if (t->state == TXN_COMMITTING && !t->timer && !t->reading)
				deliver(t);
			if ((t->state != TXN_COMMITTED && t->state != TXN_ROLLED_BACK) ||
			    now - t->resolved_ms < tx->remember_ms || now < t->resolved_ms)
				continue;
			if (tx->host->kv_del(tx->self, key, txn_key_rec(key, t->id, t->id_len)))
				continue; /* out of memory: next sweep */
			remove_txn(tx, t);
		}
	tx->sweep_timer = tx->host->timer_add(tx->self, sweep_period(tx), on_sweep, tx);
}

/* --- start and stop ------------------------------------------------------------------------- */

static int load_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct tx *tx = arg;
	struct txn_rec r;
	struct txn *t;

	if (klen < 2 || klen > 1 + TXN_ID_MAX || !txn_id_valid((const char *)key + 1, klen - 1) ||
	    txn_rec_decode(val, vlen, &r)) {
		tx->host->log(tx->self, SP_LOG_ERR, "txn: an unreadable record is ignored");
		return 0;
	}
	t = add(tx, (const char *)key + 1, klen - 1, r.owner, r.owner_len, r.group, r.group_len);
	if (!t) {
		tx->host->log(tx->self, SP_LOG_ERR,
			      "txn: out of memory restoring transactions; the rest waits for a "
			      "restart");
		return 1;
	}
	t->state = r.state;
	t->count = r.count;
	t->routed = r.routed;
	t->checks = r.checks;
	t->opened_ms = r.opened_ms;
	t->last_ms = r.last_ms;
	t->check_after_ms = r.check_after_ms;
	t->resolved_ms = r.resolved_ms;
	if (t->state == TXN_OPEN)
		tx->n_open++;
	return 0;
}

static int on_start(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tx *tx = udata;
	size_t committing = 0;
	struct txn *t;

	(void)ev;
	(void)res;
	tx->started = true;
	tx->host->kv_scan(tx->self, "t", 1, load_one, tx);
	for (size_t i = 0; i < tx->n_buckets; i++)
		for (t = tx->buckets[i]; t; t = t->hnext)
			if (t->state == TXN_OPEN) {
				arm_check(tx, t);
			} else if (t->state == TXN_COMMITTING) {
				committing++;
				begin_delivery(tx, t);
			}
	tx->host->log(tx->self, SP_LOG_NOTICE,
		      "txn: %zu open transaction(s) restored, %zu commit(s) to finish, %zu "
		      "outcome(s) remembered",
		      tx->n_open, committing, tx->n - tx->n_open - committing);
	if (tx->sys_ms)
		on_sys(tx);
	tx->sweep_timer = tx->host->timer_add(tx->self, sweep_period(tx), on_sweep, tx);
	return 0;
}

static void free_all(struct tx *tx)
{
	struct txn *t, *next;

	for (size_t i = 0; i < tx->n_buckets; i++)
		for (t = tx->buckets[i]; t; t = next) {
			next = t->hnext;
			txn_free(t);
		}
	tx->host->free(tx->buckets);
	tx->buckets = NULL;
	tx->n_buckets = tx->n = tx->n_open = 0;
}

static int on_stop(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tx *tx = udata;

	(void)ev;
	(void)res;
	if (tx->sys_timer)
		tx->host->timer_cancel(tx->sys_timer);
	if (tx->sweep_timer)
		tx->host->timer_cancel(tx->sweep_timer);
	tx->sys_timer = tx->sweep_timer = NULL;
	tx->host->log(tx->self, SP_LOG_INFO,
		      "txn: stopped with %zu open transaction(s) (kept in the store)", tx->n_open);
	/* The store has answered every cold_get by now: it closes before STOP. */
	tx->started = false;
	free_all(tx);
	return 0;
}

/* --- entry points ---------------------------------------------------------------------------- */

static int set_count(uint64_t *to, const char *v, uint64_t min, uint64_t max)
{
	uint64_t n;

	if (txn_parse_uint(v, strlen(v), &n) || n < min || n > max)
		return -1;
	*to = n;
	return 0;
}

static int set_duration(uint64_t *to, const char *v, uint64_t min)
{
	uint64_t ms;

	if (txn_parse_duration(v, &ms) || ms < min || ms > CHECK_AFTER_MAX_MS * 12)
		return -1;
	*to = ms;
	return 0;
}

static int apply_opt(struct tx *tx, const char *k, const char *v)
{
	if (!strcmp(k, "max_messages"))
		return set_count(&tx->max_messages, v, 1, 1000000);
	if (!strcmp(k, "max_open"))
		return set_count(&tx->max_open, v, 1, 100000000);
	if (!strcmp(k, "check_max"))
		return set_count(&tx->check_max, v, 0, 1000000);
	if (!strcmp(k, "check_after"))
		return set_duration(&tx->check_after_ms, v, 1);
	if (!strcmp(k, "check_interval"))
		return set_duration(&tx->check_interval_ms, v, 1);
	if (!strcmp(k, "remember"))
		return set_duration(&tx->remember_ms, v, 0);
	if (!strcmp(k, "sys_interval"))
		return set_duration(&tx->sys_ms, v, 0);
	return -1;
}

static int apply_opts(struct tx *tx, const struct sp_opt *opts, int n_opts)
{
	for (int i = 0; i < n_opts; i++)
		if (apply_opt(tx, opts[i].key, opts[i].value)) {
			tx->host->log(
				tx->self, SP_LOG_ERR,
				"txn: bad option plugin_opt_%s %s (max_messages N, max_open N, "
				"check_max N, check_after DURATION, check_interval DURATION, "
				"remember DURATION, sys_interval DURATION; DURATION: 250ms, "
				"6s, 6, 2h, 1d)",
				opts[i].key, opts[i].value);
			return -1;
		}
	return 0;
}

int sluice_plugin_version(void)
{
	return SLUICE_PLUGIN_API;
}

int sluice_plugin_init(const struct sp_host *host, struct sp_plugin *self,
		       const struct sp_opt *opts, int n_opts, void **udata)
{
	struct tx *tx;

	if (host->api != SLUICE_PLUGIN_API || host->size < HOST_MIN_SIZE ||
	    !SP_HOST_HAS(host, subscribed) || !SP_HOST_HAS(host, msg_add_user_props)) {
		fprintf(stderr, "txn: host API %u size %u, expected %d size %zu\n", host->api,
			host->size, SLUICE_PLUGIN_API, HOST_MIN_SIZE);
		return -1;
	}
	tx = host->alloc(sizeof(*tx));
	if (!tx)
		return -1;
	memset(tx, 0, sizeof(*tx));
	tx->host = host;
	tx->self = self;
	tx->max_messages = DEFAULT_MAX_MESSAGES;
	tx->max_open = DEFAULT_MAX_OPEN;
	tx->check_after_ms = DEFAULT_CHECK_AFTER_MS;
	tx->check_interval_ms = DEFAULT_CHECK_INTERVAL_MS;
	tx->check_max = DEFAULT_CHECK_MAX;
	tx->remember_ms = DEFAULT_REMEMBER_MS;
	tx->sys_ms = DEFAULT_SYS_MS;
	/* the collector last: nothing after it may fail (the host would call a freed one) */
	if (apply_opts(tx, opts, n_opts) || host->on(self, SP_EV_START, on_start) ||
	    host->on(self, SP_EV_STOP, on_stop) || host->on(self, SP_EV_PUBLISH, on_publish) ||
	    (SP_HOST_HAS(host, metric) && host->metrics_register(self, collect, tx))) {
		host->free(tx);
		return -1;
	}
	*udata = tx;
	host->log(self, SP_LOG_INFO,
		  "txn: check after %" PRIu64 " ms, every %" PRIu64 " ms, at most %" PRIu64
		  " times",
		  tx->check_after_ms, tx->check_interval_ms, tx->check_max);
	return 0;
}

void sluice_plugin_cleanup(void *udata)
{
	struct tx *tx = udata;

	if (!tx)
		return;
	free_all(tx);
	tx->host->free(tx);
}
