/*
 * retry.c - the consumer retry plugin: a subscriber's refusal (an MQTT 5
 * PUBACK or PUBREC with a reason code >= 0x80, the NACKED event) brings the
 * message back to the same subscription after a back-off, with the user
 * property delivery-count = the attempt; after max_attempts refusals it goes
 * to the dead-letter topic $DLQ/{group or client id}/{topic}, where it waits
 * for its first subscriber (README "Consumer retry and dead letters"; the
 * option values, record and keys are retryparse.c's). Loop thread only.
 *
 * State. Every pending retry and every waiting dead letter is a struct ent,
 * mirrored by a key/value row ("r"+seq or "d"+seq: due or start of waiting,
 * attempt, target, consumer, last reason) and the message as a cold value
 * "m"+seq, the message first so that a row always has its message. A retry
 * keeps the message as it was refused (its old delivery-count included) and
 * builds the redelivery when it is due: the old delivery-count goes, the new
 * one is appended after every other user property, the retain flag is
 * cleared and the expiry deadline is kept (msg_rewrite without restart, and
 * msg_encode keeps the wall-clock deadline across a restart). Retries wait
 * in a heap by (due, seq) with one timer for the earliest; their messages
 * stay in memory while the cache (CACHE_BYTES) has room and are otherwise
 * read back with cold_get when due (at most FETCH_MAX reads at once).
 * Waiting dead letters are a list in the order they began to wait, which is
 * also seq order, so the oldest is at the head for retention and dlq_max;
 * their messages are never kept in memory once stored.
 *
 * Where a retry goes: host->deliver() to the client id of a plain
 * subscription, or to the shared group (group and filter from the event),
 * whose member the broker chooses, so it may reach another member. deliver()
 * answering 0 (the subscription is gone, its queue is full, a plugin skipped
 * it) sends the message to the dead letters at once rather than keeping a
 * retry nobody can take; -1 (out of memory) tries again after RETRY_MS.
 *
 * Dead letters are routed (host->route); one that reached no session waits
 * in the store until a SUBSCRIBE whose filter (without "$share/G/") matches
 * its topic; the subscription is applied after that event, so the handoff
 * runs from a 0 ms timer, and one that reached a session is not kept (it is
 * in that session's or group's queue). Refusals of a dead letter itself are
 * not retried (that would nest $DLQ topics): they are logged and counted.
 *
 * Failures are never silent. A row or message that cannot be written keeps
 * its entry in memory, marked unstored (n_dirty), and the writes are tried
 * again from the timer every RETRY_MS; a row that cannot be deleted stays
 * DONE and its delete is tried again the same way; a message that cannot be
 * built waits RETRY_MS; a message read back "absent" FETCH_TRIES times is
 * given up as lost, logged and counted. Only an entry that cannot even be
 * allocated is lost at once, with a log line and the lost counter. Timers
 * that cannot be armed are armed again from the next callback (heal).
 *
 * Invariants: an ent is in exactly one place - the heap (RETRY, WAIT or
 * DONE), a cold read (FETCHING; fetching counts them), or the dead list
 * (DEAD, any state); pending counts RETRY ents, n_dead the DEAD ones not
 * DONE; cache_bytes adds up the cost of the RETRY ents that keep a stored
 * message; a claim (a handoff) exists only on a FETCHING or handing DEAD ent.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "retryparse.h"
#include "plugin_sys.h"
#include "sluice_plugin.h"

#define DEFAULT_BACKOFF "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
#define DEFAULT_MAX_ATTEMPTS 16
#define MAX_ATTEMPTS_LIMIT 1000000
#define DEFAULT_RETENTION_MS (3ull * 86400 * 1000)
#define DEFAULT_DLQ_MAX 100000
#define DLQ_MAX_LIMIT 100000000
#define DEFAULT_SYS_MS 10000
#define RETRY_MS 500 /* a failed write, read, build or delivery is tried again after this */
#define FETCH_TRIES 5 /* "absent" answers before a message is given up */
#define FETCH_MAX 256 /* cold reads of due retries at once */
#define CACHE_BYTES (16u << 20) /* messages of pending retries kept in memory, at most */
#define MSG_OVERHEAD 128 /* a message's bytes besides its topic and payload, about */

enum ent_state {
	E_WAIT, /* in the heap (RETRY) or the list (DEAD) */
	E_FETCHING, /* its message is being read back */
	E_DONE, /* finished with: only its row is left to delete */
};

/* A subscription that may take waiting dead letters (from a SUBSCRIBE). */
struct handoff {
	struct handoff *next;
	unsigned refs; /* the list, and every dead letter it claimed */
	const char *client, *group, *filter; /* group NULL: plain; filter without $share/G/ */
	bool route; /* start-up: routed to whoever subscribes to it already */
	char strs[];
};

struct list {
	struct ent *head, *tail;
};

struct ent {
	struct ent *prev, *next; /* DEAD: the waiting list, oldest first; RETRY: reading */
	struct rt *rt;
	uint64_t seq, when; /* when: RETRY due, DEAD began to wait (wall ms) */
	uint32_t attempt; /* RETRY: of the redelivery; DEAD: failed attempts */
	uint8_t kind, flags, reason, state;
	bool stored; /* its row and message are written */
	unsigned tries; /* reads answered "absent" */
	struct sp_msg *msg; /* RETRY: as refused; DEAD: the dead letter; NULL when only stored */
	size_t cost; /* bytes counted in cache_bytes, 0 when not counted */
	struct handoff *claim; /* DEAD: the subscription it is being handed to */
	char *target, *filter, *consumer; /* NUL-terminated, in strs */
	char strs[];
};

struct rt {
	const struct sp_host *host;
	struct sp_plugin *self;
	/* options */
	uint64_t steps[RETRY_STEPS_MAX];
	size_t n_steps;
	uint64_t max_attempts, retention_ms, dlq_max, sys_ms;
	/* state */
	struct retry_heap q;
	struct list dead; /* DEAD entries, oldest first */
	struct list reading; /* RETRY entries whose message is being read back */
	size_t n_dead, fetching, n_dirty, cache_bytes;
	struct handoff *handoffs;
	struct sp_timer *timer, *sys_timer, *handoff_timer;
	uint64_t timer_at, next_seq;
	bool started, unarmed;
	/* counters since start */
	uint64_t pending, retried, dead_lettered, dlq_delivered, expired, lost, dlq_dropped;
};

static void pump(struct rt *rt);
static void on_timer(void *arg);
static void sys_stats(void *arg);
static void handoff_run(void *arg);

/* --- timers ------------------------------------------------------------------- */

/*
 * Arms the one timer for wall time at unless it is armed for earlier
 * already. When timer_add fails, a second try with at most RETRY_MS (the
 * timer then arms itself again for at); when that fails too, heal() arms
 * it from the next callback.
 */
static void arm(struct rt *rt, uint64_t at)
{
	uint64_t now = rt->host->now_ms(), delay = at > now ? at - now : 0;

	if (at == UINT64_MAX || (rt->timer && rt->timer_at <= at))
		return;
	if (rt->timer)
		rt->host->timer_cancel(rt->timer);
	rt->timer_at = at;
	rt->timer = rt->host->timer_add(rt->self, delay, on_timer, rt);
	if (!rt->timer && delay > RETRY_MS)
		rt->timer_at = now + (delay = RETRY_MS);
	if (!rt->timer)
		rt->timer = rt->host->timer_add(rt->self, delay, on_timer, rt);
	if (!rt->timer && !rt->unarmed)
		rt->host->log(rt->self, SP_LOG_ERR,
			      "retry: cannot arm a timer; trying again from the next event");
	rt->unarmed = !rt->timer;
}

/* Timers that could not be armed (out of memory): armed from whatever callback runs next. */
static void heal(struct rt *rt)
{
	if (!rt->started)
		return;
	if (rt->unarmed)
		arm(rt, rt->host->now_ms());
	if (rt->sys_ms && !rt->sys_timer)
		rt->sys_timer = rt->host->timer_add(rt->self, rt->sys_ms, sys_stats, rt);
	if (rt->handoffs && !rt->handoff_timer)
		rt->handoff_timer = rt->host->timer_add(rt->self, 0, handoff_run, rt);
}

static void on_timer(void *arg)
{
	struct rt *rt = arg;

	rt->timer = NULL; /* it fired */
	pump(rt);
}

/* --- entries ------------------------------------------------------------------ */

static struct retry_str str_of(const char *s)
{
	struct retry_str r = { s ? s : "", s ? strlen(s) : 0 };

	return r;
}

static char *put_str(char **at, const struct retry_str *s)
{
	char *d = *at;

	if (s->len)
		memcpy(d, s->p, s->len);
	d[s->len] = '\0';
	*at += s->len + 1;
	return d;
}

/* A new entry with copies of the three strings; NULL when out of memory. */
static struct ent *ent_new(struct rt *rt, uint8_t kind, struct retry_str target,
			   struct retry_str filter, struct retry_str consumer)
{
	struct ent *e = rt->host->alloc(sizeof(*e) + target.len + filter.len + consumer.len + 3);
	char *at;

	if (!e)
		return NULL;
	memset(e, 0, sizeof(*e));
	e->rt = rt;
	e->kind = kind;
	at = e->strs;
	e->target = put_str(&at, &target);
	e->filter = put_str(&at, &filter);
	e->consumer = put_str(&at, &consumer);
	return e;
}

static void handoff_unref(struct rt *rt, struct handoff *h)
{
	if (h && !--h->refs)
		rt->host->free(h);
}

/* Lets go of e's message, and of its place in the cache. */
static void drop_msg(struct rt *rt, struct ent *e)
{
	if (e->msg)
		rt->host->msg_unref(e->msg);
	e->msg = NULL;
	rt->cache_bytes -= e->cost;
	e->cost = 0;
}

static void ent_free(struct rt *rt, struct ent *e)
{
	drop_msg(rt, e);
	handoff_unref(rt, e->claim);
	rt->host->free(e);
}

/* A stored retry's message stays in memory while the cache has room. */
static void cache(struct rt *rt, struct ent *e)
{
	size_t len = 0, cost;

	if (!e->msg || !e->stored || e->cost)
		return;
	rt->host->msg_payload(e->msg, &len);
	cost = len + strlen(rt->host->msg_topic(e->msg)) + MSG_OVERHEAD;
	if (e->kind == RETRY_REC_RETRY && rt->cache_bytes + cost <= CACHE_BYTES) {
		e->cost = cost;
		rt->cache_bytes += cost;
		return;
	}
	drop_msg(rt, e); /* read back when needed */
}

/* --- the store -------------------------------------------------------------------- */

static char row_prefix(const struct ent *e)
{
	return e->kind == RETRY_REC_RETRY ? RETRY_PFX_RETRY : RETRY_PFX_DEAD;
}

static int put_row(struct rt *rt, const struct ent *e)
{
	struct retry_rec r = { e->kind, e->flags,	   e->reason,	      e->attempt,
			       e->when, str_of(e->target), str_of(e->filter), str_of(e->consumer) };
	size_t len = retry_rec_size(&r);
	uint8_t key[RETRY_KEY_LEN], *v = rt->host->alloc(len);
	int rc = -1;

	if (v && !retry_rec_encode(&r, v)) {
		retry_key(key, row_prefix(e), e->seq);
		rc = rt->host->kv_put(rt->self, key, sizeof(key), v, len);
	}
	rt->host->free(v);
	return rc;
}

/* Writes e's message, then its row: 0 when both are queued (e->stored). */
static int store(struct rt *rt, struct ent *e)
{
	uint8_t key[RETRY_KEY_LEN];
	void *enc = NULL;
	size_t len = 0;
	int rc = -1;

	retry_key(key, RETRY_PFX_MSG, e->seq);
	if (!rt->host->msg_encode(e->msg, &enc, &len) &&
	    !rt->host->cold_put(rt->self, key, sizeof(key), enc, len)) {
		rc = put_row(rt, e);
		if (rc)
			rt->host->cold_del(rt->self, key, sizeof(key));
	}
	rt->host->free(enc);
	e->stored = !rc;
	return rc;
}

/* store(), or else e stays in memory, unstored, and the timer tries again. */
static void store_or_later(struct rt *rt, struct ent *e)
{
	if (!store(rt, e))
		return;
	rt->n_dirty++;
	rt->host->log(rt->self, SP_LOG_ERR,
		      "retry: cannot store %" PRIu64 " (out of memory): kept in memory, retrying",
		      e->seq);
	arm(rt, rt->host->now_ms() + RETRY_MS);
}

/* Deletes e's row, then its message: -1 when the row could not be deleted. */
static int unstore(struct rt *rt, struct ent *e)
{
	uint8_t key[RETRY_KEY_LEN];

	if (!e->stored)
		return 0;
	retry_key(key, row_prefix(e), e->seq);
	if (rt->host->kv_del(rt->self, key, sizeof(key)))
		return -1;
	e->stored = false;
	retry_key(key, RETRY_PFX_MSG, e->seq);
	if (rt->host->cold_del(rt->self, key, sizeof(key)))
		rt->host->log(rt->self, SP_LOG_WARNING,
			      "retry: message %" PRIu64 " left in the store (out of memory)",
			      e->seq);
	return 0;
}

/* --- building messages ---------------------------------------------------------------- */

/* The first delivery-count of m, as an attempt number (1 when none). */
static uint32_t attempt_of(const struct rt *rt, const struct sp_msg *m)
{
	size_t pos = 0, kl, vl;
	const char *k, *v;

	while (rt->host->msg_user_prop(m, &pos, &k, &kl, &v, &vl) == 1)
		if (kl == strlen(RETRY_KEY_COUNT) && !memcmp(k, RETRY_KEY_COUNT, kl))
			return retry_attempt(v, vl);
	return 1;
}

/*
 * m on topic (NULL: its own) without the user properties in drop, with the
 * n pairs keys/vals appended, retain cleared, the expiry deadline kept.
 */
static struct sp_msg *with_props(const struct rt *rt, const struct sp_msg *m, const char *topic,
				 const char *const *drop, size_t n_drop, const char *const *keys,
				 const char *const *vals, size_t n)
{
	const struct sp_host *h = rt->host;
	struct sp_msg *base = h->msg_rewrite(m, topic, drop, n_drop, false), *out = NULL, *plain;

	if (base && h->msg_retain(base)) {
		plain = h->msg_with_retain(base, false);
		h->msg_unref(base);
		base = plain;
	}
	if (base)
		out = h->msg_add_user_props(base, keys, vals, n);
	if (base)
		h->msg_unref(base);
	return out;
}

static bool expired(const struct rt *rt, const struct sp_msg *m)
{
	uint64_t exp = rt->host->msg_expiry(m);

	return exp && exp <= rt->host->now_ms();
}

/* --- dead letters ------------------------------------------------------------------- */

static const char *const dead_keys[] = { RETRY_KEY_TOPIC, RETRY_KEY_COUNT, RETRY_KEY_REASON,
					 RETRY_KEY_CONSUMER };

static struct sp_msg *build_dead(const struct rt *rt, const struct sp_msg *m, const char *topic,
				 const char *consumer, uint8_t reason, uint32_t failed)
{
	char count[16], hex[5];
	const char *vals[4] = { rt->host->msg_topic(m), count, hex, consumer };

	snprintf(count, sizeof(count), "%" PRIu32, failed);
	retry_reason_hex(reason, hex);
	return with_props(rt, m, topic, dead_keys, 4, dead_keys, vals, 4);
}

static void enlist(struct list *l, struct ent *e)
{
	e->next = NULL;
	e->prev = l->tail;
	if (l->tail)
		l->tail->next = e;
	else
		l->head = e;
	l->tail = e;
}

static void delist(struct list *l, struct ent *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		l->tail = e->prev;
	e->prev = e->next = NULL;
}

/* Ends a waiting dead letter: its row goes now, or (out of memory) from the timer. */
static void dead_remove(struct rt *rt, struct ent *e)
{
	if (e->state != E_DONE)
		rt->n_dead--;
	e->state = E_DONE;
	if (unstore(rt, e)) {
		rt->n_dirty++;
		arm(rt, rt->host->now_ms() + RETRY_MS);
		return;
	}
	delist(&rt->dead, e);
	ent_free(rt, e);
}

static void dead_drop(struct rt *rt, struct ent *e, const char *why)
{
	rt->dlq_dropped++;
	rt->host->log(rt->self, SP_LOG_WARNING, "retry: dead letter on '%s' dropped: %s", e->target,
		      why);
	dead_remove(rt, e);
}

/* The oldest dead letters that nobody is being handed go while there are over dlq_max. */
static void dead_bound(struct rt *rt)
{
	struct ent *e = rt->dead.head, *next;

	for (; e && rt->n_dead > rt->dlq_max; e = next) {
		next = e->next;
		if (e->state == E_WAIT)
			dead_drop(rt, e, "more than plugin_opt_dlq_max waiting");
	}
}

/* Dead letters waiting longer than dlq_retention go; returns when the next one is due to. */
static uint64_t dead_sweep(struct rt *rt, uint64_t now)
{
	struct ent *e = rt->dead.head, *next;

	for (; e; e = next) {
		next = e->next;
		if (e->state != E_WAIT)
			continue;
		if (e->when + rt->retention_ms > now)
			return e->when + rt->retention_ms;
		dead_drop(rt, e, "no subscriber within plugin_opt_dlq_retention");
	}
	return UINT64_MAX;
}

/* A dead letter nobody took: it waits, stored, for the first subscriber. -1 out of memory. */
static int dead_wait(struct rt *rt, struct sp_msg *dl, const char *consumer, uint8_t reason,
		     uint32_t failed)
{
	struct ent *e = ent_new(rt, RETRY_REC_DEAD, str_of(rt->host->msg_topic(dl)), str_of(NULL),
				str_of(consumer));
	uint64_t now = rt->host->now_ms();

	if (!e)
		return -1;
	e->seq = rt->next_seq++;
	e->when = now;
	e->reason = reason;
	e->attempt = failed;
	e->msg = rt->host->msg_ref(dl);
	enlist(&rt->dead, e);
	rt->n_dead++;
	store_or_later(rt, e);
	if (e->stored)
		drop_msg(rt, e); /* read back when a subscriber comes */
	dead_bound(rt); /* may drop e itself (dlq_max 0) */
	arm(rt, now + rt->retention_ms);
	return 0;
}

/*
 * Sends m (refused `failed` times by consumer, last with reason) to
 * $DLQ/{name}/{topic}: routed, or else kept waiting. 0 when done (or given
 * up: a topic too long), -1 when out of memory (the caller tries again).
 */
static int dead_letter(struct rt *rt, const struct sp_msg *m, const char *name,
		       const char *consumer, uint8_t reason, uint32_t failed)
{
	const char *topic = rt->host->msg_topic(m);
	size_t cap = strlen(RETRY_DLQ_PREFIX) + strlen(name) + strlen(topic) + 2;
	char *dlq = rt->host->alloc(cap);
	struct sp_msg *dl = NULL;
	int rc = -1, n = 0;

	if (dlq && !retry_dlq_topic(dlq, cap, name, topic)) {
		rt->lost++;
		rt->host->log(rt->self, SP_LOG_ERR,
			      "retry: message on '%s' dropped: its dead-letter topic is too long",
			      topic);
		rc = 0;
	} else if (dlq && (dl = build_dead(rt, m, dlq, consumer, reason, failed))) {
		n = rt->host->route(rt->self, dl);
		rc = n > 0 ? 0 : dead_wait(rt, dl, consumer, reason, failed);
	}
	if (dl && !rc) {
		rt->dead_lettered++;
		rt->host->log(rt->self, SP_LOG_WARNING,
			      "retry: '%s' refused '%s' %" PRIu32 " time(s), last with 0x%02x: "
			      "dead letter on '%s'%s",
			      consumer, topic, failed, reason, dlq, n > 0 ? "" : ", waiting");
	}
	if (dl)
		rt->host->msg_unref(dl);
	rt->host->free(dlq);
	return rc;
}

/* --- retries --------------------------------------------------------------------------- */

/* Back into the heap, due at `due`. */
static void requeue(struct rt *rt, struct ent *e, uint64_t due)
{
	struct retry_ent q = { due, e->seq, e };

	e->state = e->state == E_DONE ? E_DONE : E_WAIT;
	if (!retry_heap_push(&rt->q, q))
		return;
	rt->host->log(rt->self, SP_LOG_ERR,
		      "retry: out of memory requeueing %" PRIu64 ": it goes after a restart",
		      e->seq);
	rt->pending--;
	ent_free(rt, e);
}

/* A retry is over: its row goes now, or (out of memory) from the heap again. */
static void finish(struct rt *rt, struct ent *e)
{
	if (unstore(rt, e)) {
		e->state = E_DONE;
		requeue(rt, e, rt->host->now_ms() + RETRY_MS);
		return;
	}
	rt->pending--;
	ent_free(rt, e);
}

/* The redelivery of e: 1 sent or queued, 0 not taken, -1 out of memory. */
static int redeliver(struct rt *rt, struct ent *e)
{
	static const char *const key[] = { RETRY_KEY_COUNT };
	const char *val[1];
	char count[16];
	bool group = e->flags & RETRY_F_GROUP;
	struct sp_msg *out;
	int rc;

	snprintf(count, sizeof(count), "%" PRIu32, e->attempt);
	val[0] = count;
	out = with_props(rt, e->msg, NULL, key, 1, key, val, 1);
	if (!out)
		return -1;
	rc = rt->host->deliver(rt->self, out, group ? NULL : e->target, group ? e->target : NULL,
			       group ? e->filter : NULL);
	rt->host->msg_unref(out);
	return rc;
}

/* Out of memory for what e needed: tried again after RETRY_MS. */
static void later(struct rt *rt, struct ent *e, const char *what)
{
	rt->host->log(rt->self, SP_LOG_WARNING,
		      "retry: %s of %" PRIu64 " failed (out of memory); trying again", what,
		      e->seq);
	requeue(rt, e, rt->host->now_ms() + RETRY_MS);
}

/* A due retry whose message is in memory. */
/* A plain subscription's client that still matches the topic: its queue was full. */
static bool still_subscribed(const struct rt *rt, const struct ent *e)
{
	return !(e->flags & RETRY_F_GROUP) && SP_HOST_HAS(rt->host, subscribed) &&
	       rt->host->subscribed(e->target, rt->host->msg_topic(e->msg)) == 1;
}

/* Not a refusal: the same attempt goes again after the back-off step it waited. */
static void wait_for_room(struct rt *rt, struct ent *e)
{
	uint64_t due = rt->host->now_ms() +
		       retry_backoff(rt->steps, rt->n_steps, e->attempt > 1 ? e->attempt - 1 : 1);

	rt->host->log(rt->self, SP_LOG_INFO,
		      "retry: message on '%s' for '%s' not taken (its queue is full): tried again "
		      "later",
		      rt->host->msg_topic(e->msg), e->target);
	e->when = due;
	put_row(rt, e); /* failing, the old due time stands: only earlier */
	requeue(rt, e, due);
}

static void release(struct rt *rt, struct ent *e)
{
	int rc;

	if (expired(rt, e->msg)) {
		rt->expired++;
		rt->host->log(rt->self, SP_LOG_INFO, "retry: message on '%s' for '%s' expired",
			      rt->host->msg_topic(e->msg), e->target);
		return finish(rt, e);
	}
	if (!(e->flags & RETRY_F_DLQ)) {
		rc = redeliver(rt, e);
		if (rc == 1) {
			rt->retried++;
			return finish(rt, e);
		}
		if (rc < 0)
			return later(rt, e, "redelivery");
		if (still_subscribed(rt, e))
			return wait_for_room(rt, e);
		rt->host->log(rt->self, SP_LOG_WARNING,
			      "retry: message on '%s' not taken by '%s' (no such subscription, or "
			      "its queue is full): to the dead letters",
			      rt->host->msg_topic(e->msg), e->target);
		e->flags |= RETRY_F_DLQ;
	}
	if (dead_letter(rt, e->msg, e->target, e->consumer, e->reason, e->attempt - 1))
		return later(rt, e, "dead letter");
	finish(rt, e);
}

/* --- reading messages back ----------------------------------------------------------------- */

static void hand(struct rt *rt, struct ent *e);

static void unclaim(struct rt *rt, struct ent *e)
{
	handoff_unref(rt, e->claim);
	e->claim = NULL;
	e->state = E_WAIT;
	if (e->stored)
		drop_msg(rt, e);
}

static void retry_fetched(struct rt *rt, struct ent *e)
{
	if (e->msg)
		return release(rt, e);
	if (++e->tries < FETCH_TRIES)
		return requeue(rt, e, rt->host->now_ms() + RETRY_MS);
	rt->lost++;
	rt->host->log(rt->self, SP_LOG_ERR,
		      "retry: retry %" PRIu64 " for '%s' lost: its message could not be read",
		      e->seq, e->target);
	finish(rt, e);
}

static void fetched(void *arg, const void *val, size_t vlen)
{
	struct ent *e = arg;
	struct rt *rt = e->rt;

	rt->fetching--;
	e->state = E_WAIT;
	e->msg = val ? rt->host->msg_decode(val, vlen) : NULL;
	if (e->kind == RETRY_REC_RETRY) {
		delist(&rt->reading, e);
		retry_fetched(rt, e);
	} else if (e->msg) {
		hand(rt, e);
	} else {
		rt->host->log(rt->self, SP_LOG_WARNING,
			      "retry: dead letter on '%s' could not be read; it keeps waiting",
			      e->target);
		unclaim(rt, e);
	}
	heal(rt);
	pump(rt);
}

/* Asks for e's message; -1 when the read could not be asked for. */
static int fetch(struct rt *rt, struct ent *e)
{
	uint8_t key[RETRY_KEY_LEN];

	retry_key(key, RETRY_PFX_MSG, e->seq);
	if (rt->host->cold_get(rt->self, key, sizeof(key), fetched, e))
		return -1;
	e->state = E_FETCHING;
	rt->fetching++;
	if (e->kind == RETRY_REC_RETRY)
		enlist(&rt->reading, e); /* out of the heap: found here by free_all */
	return 0;
}

/* --- the timer's work ------------------------------------------------------------------- */

static void due_one(struct rt *rt, struct ent *e)
{
	if (e->state == E_DONE)
		return finish(rt, e);
	if (e->msg)
		return release(rt, e);
	if (fetch(rt, e))
		requeue(rt, e, rt->host->now_ms() + RETRY_MS);
}

/* Entries whose writes failed: written (or deleted) again. */
static void fix_dirty(struct rt *rt)
{
	struct ent *e, *next;
	size_t i;

	rt->n_dirty = 0;
	for (i = 0; i < rt->q.n; i++) {
		e = rt->q.a[i].p;
		if (!e->stored && e->state == E_WAIT && store(rt, e))
			rt->n_dirty++;
		cache(rt, e);
	}
	for (e = rt->dead.head; e; e = next) {
		next = e->next;
		if (e->state == E_DONE)
			dead_remove(rt, e); /* counts itself dirty again when it fails */
		else if (!e->stored && e->msg && store(rt, e))
			rt->n_dirty++;
		else if (e->state == E_WAIT && e->stored)
			drop_msg(rt, e);
	}
}

static void pump(struct rt *rt)
{
	uint64_t now = rt->host->now_ms(), next;
	struct retry_ent top;

	if (rt->n_dirty)
		fix_dirty(rt);
	while (rt->fetching < FETCH_MAX && retry_heap_peek(&rt->q, &top) && top.due <= now) {
		retry_heap_pop(&rt->q, &top);
		due_one(rt, top.p);
	}
	next = dead_sweep(rt, now);
	if (rt->fetching < FETCH_MAX && retry_heap_peek(&rt->q, &top) && top.due < next)
		next = top.due;
	if (rt->n_dirty && now + RETRY_MS < next)
		next = now + RETRY_MS;
	arm(rt, next);
}

/* --- refusals ------------------------------------------------------------------------- */

/* A retry of ev's message as attempt `attempt` at `due` (flags: RETRY_F_DLQ to dead-letter). */
static void schedule(struct rt *rt, const struct sp_event *ev, uint32_t attempt, uint64_t due,
		     uint8_t flags)
{
	const char *g = ev->share_group;
	struct ent *e = ent_new(rt, RETRY_REC_RETRY, str_of(g ? g : ev->client_id),
				str_of(g ? ev->share_filter : NULL), str_of(ev->client_id));
	struct retry_ent q;

	if (!e) {
		rt->lost++;
		rt->host->log(rt->self, SP_LOG_ERR,
			      "retry: out of memory: message on '%s' refused by '%s' not retried",
			      rt->host->msg_topic(ev->msg), ev->client_id);
		return;
	}
	e->seq = rt->next_seq++;
	e->flags = flags | (g ? RETRY_F_GROUP : 0);
	e->attempt = attempt;
	e->reason = ev->reason;
	e->when = due;
	e->msg = rt->host->msg_ref(ev->msg);
	q = (struct retry_ent){ due, e->seq, e };
	if (retry_heap_push(&rt->q, q)) {
		rt->lost++;
		rt->host->log(rt->self, SP_LOG_ERR,
			      "retry: out of memory: message on '%s' refused by '%s' not retried",
			      rt->host->msg_topic(ev->msg), ev->client_id);
		ent_free(rt, e);
		return;
	}
	rt->pending++;
	store_or_later(rt, e);
	cache(rt, e);
	arm(rt, due);
}

static int on_nacked(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct rt *rt = udata;
	const char *topic, *name;
	uint32_t failed;

	(void)res;
	heal(rt);
	if (!rt->started || !ev->msg || !ev->client_id)
		return 0;
	topic = rt->host->msg_topic(ev->msg);
	if (retry_is_dlq(topic)) {
		rt->dlq_dropped++;
		rt->host->log(rt->self, SP_LOG_WARNING,
			      "retry: '%s' refused the dead letter on '%s' (0x%02x): not retried",
			      ev->client_id, topic, ev->reason);
		return 0;
	}
	failed = attempt_of(rt, ev->msg);
	name = ev->share_group ? ev->share_group : ev->client_id;
	if (failed < rt->max_attempts)
		schedule(rt, ev, failed + 1,
			 rt->host->now_ms() + retry_backoff(rt->steps, rt->n_steps, failed), 0);
	else if (dead_letter(rt, ev->msg, name, ev->client_id, ev->reason, failed))
		schedule(rt, ev, failed + 1, rt->host->now_ms() + RETRY_MS, RETRY_F_DLQ);
	return 0;
}

/* --- handing dead letters to a new subscriber -------------------------------------------- */

static bool waiting_for(const struct rt *rt, const struct ent *e, const char *filter)
{
	return e->state == E_WAIT && rt->host->topic_match(filter, e->target);
}

static void hand(struct rt *rt, struct ent *e)
{
	const struct handoff *h = e->claim;
	int rc = h->route ? rt->host->route(rt->self, e->msg) > 0
			  : rt->host->deliver(rt->self, e->msg, h->group ? NULL : h->client,
					      h->group, h->group ? h->filter : NULL);

	if (rc != 1) {
		rt->host->log(rt->self, SP_LOG_DEBUG,
			      "retry: dead letter on '%s' not taken by '%s'", e->target,
			      h->group ? h->group : h->client);
		return unclaim(rt, e);
	}
	rt->dlq_delivered++;
	rt->host->log(rt->self, SP_LOG_INFO, "retry: dead letter on '%s' handed to '%s'", e->target,
		      h->group ? h->group : h->client);
	handoff_unref(rt, e->claim);
	e->claim = NULL;
	dead_remove(rt, e);
}

/* Every waiting dead letter h's filter matches goes to h. */
static void handoff_one(struct rt *rt, struct handoff *h)
{
	struct ent *e, *next;

	for (e = rt->dead.head; e; e = next) {
		next = e->next;
		if (!waiting_for(rt, e, h->filter))
			continue;
		e->claim = h;
		h->refs++;
		if (e->msg)
			hand(rt, e);
		else if (fetch(rt, e))
			unclaim(rt, e); /* out of memory: the next subscriber */
	}
}

static void handoff_run(void *arg)
{
	struct rt *rt = arg;
	struct handoff *h;

	rt->handoff_timer = NULL;
	while ((h = rt->handoffs)) {
		rt->handoffs = h->next;
		handoff_one(rt, h);
		handoff_unref(rt, h);
	}
	pump(rt); /* rows that could not be deleted */
}

static struct handoff *handoff_new(struct rt *rt, const char *client, const char *sub,
				   const char *filter)
{
	struct retry_str c = str_of(client), f = str_of(filter), g = { "", 0 };
	struct handoff *h;
	char *at;

	if (sub != filter) { /* "$share/{group}/{filter}" */
		g.p = sub + 7;
		g.len = (size_t)(filter - g.p - 1);
	}
	h = rt->host->alloc(sizeof(*h) + c.len + g.len + f.len + 3);
	if (!h)
		return NULL;
	memset(h, 0, sizeof(*h));
	h->refs = 1;
	at = h->strs;
	h->client = put_str(&at, &c);
	h->group = put_str(&at, &g);
	h->filter = put_str(&at, &f);
	if (sub == filter)
		h->group = NULL;
	return h;
}

static int on_subscribe(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct rt *rt = udata;
	const char *f = ev->filter ? retry_plain_filter(ev->filter) : NULL;
	struct handoff *h;
	struct ent *e;

	(void)res;
	heal(rt);
	if (!rt->started || !f || !ev->client_id)
		return 0;
	for (e = rt->dead.head; e && !waiting_for(rt, e, f); e = e->next)
		;
	if (!e)
		return 0;
	h = handoff_new(rt, ev->client_id, ev->filter, f);
	if (!h) {
		rt->host->log(rt->self, SP_LOG_ERR,
			      "retry: out of memory: dead letters for '%s' wait for the next "
			      "subscriber",
			      ev->filter);
		return 0;
	}
	h->next = rt->handoffs;
	rt->handoffs = h;
	heal(rt); /* the 0 ms timer: the subscription exists once this event is over */
	return 0;
}

/* --- $SYS ------------------------------------------------------------------------------ */

/* The figures, for GET /metrics and $SYS/broker/retry/... */
static const struct sp_metric metrics[] = {
	{ "sluice_retry_pending", "Refused deliveries waiting for their next attempt.",
	  SP_METRIC_GAUGE, NULL, NULL, "retry/pending" },
	{ "sluice_retry_retried_total", "Deliveries attempted again.", SP_METRIC_COUNTER, NULL,
	  NULL, "retry/retried" },
	{ "sluice_retry_dead_lettered_total", "Messages moved to a dead-letter queue.",
	  SP_METRIC_COUNTER, NULL, NULL, "retry/dead_lettered" },
	{ "sluice_retry_dlq_waiting", "Dead letters not yet taken by a subscriber.",
	  SP_METRIC_GAUGE, NULL, NULL, "retry/dlq_waiting" },
};

/* Every figure, to GET /metrics or to $SYS (one source for both). */
static void report(struct rt *rt, struct plugin_report *r)
{
	const uint64_t v[] = { rt->pending, rt->retried, rt->dead_lettered, rt->n_dead };

	plugin_metrics(r, metrics, v, sizeof(metrics) / sizeof(metrics[0]));
}

static void collect(void *arg, struct sp_metrics *out)
{
	struct rt *rt = arg;
	struct plugin_report r = { rt->host, rt->self, out };

	report(rt, &r);
}

static void sys_stats(void *arg)
{
	struct rt *rt = arg;
	struct plugin_report r = { rt->host, rt->self, NULL };

	rt->sys_timer = NULL;
	report(rt, &r);
	heal(rt);
}

/* --- start and stop ------------------------------------------------------------------------ */

static int load_row(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct rt *rt = arg;
	struct retry_rec r;
	struct ent *e = NULL;
	uint64_t seq;
	char want = *(const char *)key;

	if (!retry_key_seq(key, klen, &seq) || retry_rec_decode(val, vlen, &r) ||
	    r.kind != (want == RETRY_PFX_RETRY ? RETRY_REC_RETRY : RETRY_REC_DEAD)) {
		rt->host->log(rt->self, SP_LOG_ERR, "retry: skipping a malformed row");
		return 0;
	}
	if (!(e = ent_new(rt, r.kind, r.target, r.filter, r.consumer)))
		return 1; /* out of memory: stop, reported by the caller */
	e->seq = seq;
	e->when = r.when;
	e->attempt = r.attempt;
	e->flags = r.flags;
	e->reason = r.reason;
	e->stored = true;
	if (seq >= rt->next_seq)
		rt->next_seq = seq + 1;
	if (r.kind == RETRY_REC_DEAD) {
		enlist(&rt->dead, e);
		rt->n_dead++;
	} else {
		rt->pending++;
		requeue(rt, e, e->when);
	}
	return 0;
}

/*
 * Dead letters read back at start-up may have subscribers already (the
 * restored persistent sessions): they are routed once, from a 0 ms timer,
 * and those that reach nobody wait on for the next SUBSCRIBE.
 */
static void route_restored(struct rt *rt)
{
	struct handoff *h;

	if (!rt->n_dead)
		return;
	h = handoff_new(rt, "", "$DLQ/#", "$DLQ/#");
	if (!h)
		return; /* they wait for the next subscriber */
	h->route = true;
	h->next = rt->handoffs;
	rt->handoffs = h;
	heal(rt);
}

static int on_start(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct rt *rt = udata;
	char r = RETRY_PFX_RETRY, d = RETRY_PFX_DEAD;

	(void)ev;
	(void)res;
	rt->started = true;
	if (rt->host->kv_scan(rt->self, &r, 1, load_row, rt) ||
	    rt->host->kv_scan(rt->self, &d, 1, load_row, rt))
		rt->host->log(rt->self, SP_LOG_ERR,
			      "retry: out of memory restoring: the rest waits for the next start");
	rt->host->log(rt->self, SP_LOG_NOTICE,
		      "retry: %" PRIu64 " pending retr%s and %zu waiting dead letter(s) restored",
		      rt->pending, rt->pending == 1 ? "y" : "ies", rt->n_dead);
	if (rt->sys_ms)
		sys_stats(rt);
	route_restored(rt);
	pump(rt);
	return 0;
}

/* Frees everything in memory (the store keeps it all). */
static void free_all(struct rt *rt)
{
	struct retry_ent q;
	struct handoff *h;
	struct ent *e;

	while (retry_heap_pop(&rt->q, &q))
		ent_free(rt, q.p);
	retry_heap_free(&rt->q);
	while ((e = rt->dead.head)) {
		delist(&rt->dead, e);
		ent_free(rt, e);
	}
	while ((e = rt->reading.head)) { /* reads a crash left unanswered */
		delist(&rt->reading, e);
		ent_free(rt, e);
	}
	while ((h = rt->handoffs)) {
		rt->handoffs = h->next;
		handoff_unref(rt, h);
	}
	rt->n_dead = rt->fetching = rt->n_dirty = 0;
}

static int on_stop(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct rt *rt = udata;

	(void)ev;
	(void)res;
	if (rt->timer)
		rt->host->timer_cancel(rt->timer);
	if (rt->sys_timer)
		rt->host->timer_cancel(rt->sys_timer);
	if (rt->handoff_timer)
		rt->host->timer_cancel(rt->handoff_timer);
	rt->timer = rt->sys_timer = rt->handoff_timer = NULL;
	rt->started = rt->unarmed = false;
	rt->host->log(rt->self, SP_LOG_INFO,
		      "retry: stopped with %" PRIu64 " pending and %zu waiting (kept in the store)",
		      rt->pending, rt->n_dead);
	free_all(rt); /* the store has answered every cold_get: it closes before STOP */
	return 0;
}

/* --- options and entry points ------------------------------------------------------------ */

static int opt_backoff(struct rt *rt, const char *v)
{
	return retry_parse_backoff(v, rt->steps, RETRY_STEPS_MAX, &rt->n_steps);
}

static int opt_max_attempts(struct rt *rt, const char *v)
{
	return retry_parse_uint(v, strlen(v), &rt->max_attempts) || !rt->max_attempts ||
	       rt->max_attempts > MAX_ATTEMPTS_LIMIT;
}

static int opt_retention(struct rt *rt, const char *v)
{
	int rc = retry_parse_duration(v, strlen(v), &rt->retention_ms);

	return rc ? rc : !rt->retention_ms;
}

static int opt_dlq_max(struct rt *rt, const char *v)
{
	return retry_parse_uint(v, strlen(v), &rt->dlq_max) || rt->dlq_max > DLQ_MAX_LIMIT;
}

static int opt_sys_interval(struct rt *rt, const char *v)
{
	return retry_parse_duration(v, strlen(v), &rt->sys_ms);
}

static const struct option {
	const char *key;
	int (*set)(struct rt *rt, const char *v);
	const char *form;
} options[] = {
	{ "backoff", opt_backoff, "durations such as 1s,5s,10s (ms, s, m = minutes, h, d)" },
	{ "max_attempts", opt_max_attempts, "a number from 1 to 1000000" },
	{ "dlq_retention", opt_retention, "a duration above 0 (ms, s, m = minutes, h, d)" },
	{ "dlq_max", opt_dlq_max, "a number from 0 to 100000000" },
	{ "sys_interval", opt_sys_interval, "a duration, 0 = off" },
};

static int apply_opt(struct rt *rt, const char *k, const char *v)
{
	size_t i;

	for (i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		if (strcmp(k, options[i].key))
			continue;
		if (!options[i].set(rt, v))
			return 0;
		rt->host->log(rt->self, SP_LOG_ERR, "retry: bad option plugin_opt_%s %s (%s)", k, v,
			      options[i].form);
		return -1;
	}
	rt->host->log(rt->self, SP_LOG_ERR,
		      "retry: unknown option plugin_opt_%s (backoff, max_attempts, dlq_retention, "
		      "dlq_max, sys_interval)",
		      k);
	return -1;
}

static void defaults(struct rt *rt)
{
	retry_parse_backoff(DEFAULT_BACKOFF, rt->steps, RETRY_STEPS_MAX, &rt->n_steps);
	rt->max_attempts = DEFAULT_MAX_ATTEMPTS;
	rt->retention_ms = DEFAULT_RETENTION_MS;
	rt->dlq_max = DEFAULT_DLQ_MAX;
	rt->sys_ms = DEFAULT_SYS_MS;
	rt->next_seq = 1;
}

int sluice_plugin_version(void)
{
	return SLUICE_PLUGIN_API;
}

int sluice_plugin_init(const struct sp_host *host, struct sp_plugin *self,
		       const struct sp_opt *opts, int n_opts, void **udata)
{
	struct rt *rt;
	int i;

	if (host->api != SLUICE_PLUGIN_API || !SP_HOST_HAS(host, msg_with_retain) ||
	    !SP_HOST_HAS(host, deliver)) {
		host->log(self, SP_LOG_ERR,
			  "retry: the broker lacks NACKED, deliver (API 2) or msg_with_retain");
		return -1;
	}
	retry_set_alloc(host->alloc, host->free);
	if (!(rt = host->alloc(sizeof(*rt))))
		return -1;
	memset(rt, 0, sizeof(*rt));
	rt->host = host;
	rt->self = self;
	defaults(rt);
	for (i = 0; i < n_opts; i++)
		if (apply_opt(rt, opts[i].key, opts[i].value))
			goto fail;
	if (host->on(self, SP_EV_START, on_start) || host->on(self, SP_EV_STOP, on_stop) ||
	    host->on(self, SP_EV_NACKED, on_nacked) ||
	    host->on(self, SP_EV_SUBSCRIBE, on_subscribe))
		goto fail;
	/* last: nothing after it may fail (the host would keep calling a freed collector) */
	if (SP_HOST_HAS(host, metric) && host->metrics_register(self, collect, rt))
		goto fail;
	*udata = rt;
	host->log(self, SP_LOG_INFO,
		  "retry: %zu back-off step(s), max %" PRIu64
		  " attempts, dead letters kept %" PRIu64 " s (at most %" PRIu64 ")",
		  rt->n_steps, rt->max_attempts, rt->retention_ms / 1000, rt->dlq_max);
	return 0;
fail:
	*udata = NULL;
	host->free(rt);
	return -1;
}

void sluice_plugin_cleanup(void *udata)
{
	struct rt *rt = udata;

	if (!rt)
		return;
	free_all(
		rt); /* after a STOP there is nothing left; without one (a test's crash) there is */
	rt->host->free(rt);
}
