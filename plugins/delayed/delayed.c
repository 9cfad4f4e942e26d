/*
 * delayed.c - the delayed topics plugin: the glue between the broker's
 * plugin layer (sluice_plugin.h) and the scheduler in sched.c.
 *
 * A PUBLISH that asks for a delay (sched_parse) is taken over: the message,
 * already rewritten to its release topic and without the delay properties,
 * is encoded into a cold value "p"+seq, and a 13-byte entry for it joins its
 * chunk row in the key/value state (sched.h). Both writes are queued during
 * the PUBLISH callback, so the broker acknowledges the message only after
 * they are committed: an acknowledged delayed message survives SIGKILL. The
 * MQTT 5 PUBACK/PUBREC carries the user property message-id = seq.
 *
 * The payload is written before the index entry: writes reach the store in
 * order, so after a crash between the two an index entry still always has
 * its payload (the worst left behind is a payload without an entry, which
 * its chunk's range delete takes). A write that cannot be queued (out of
 * memory) refuses the PUBLISH with 0x80 rather than acknowledging a message
 * that is not stored; the queue entry is added first, so that nothing
 * stored is ever left unqueued, and a queue entry whose message was not
 * stored finds no index entry at its time and is skipped like a cancelled one.
 *
 * Memory holds the index only: 16 bytes per message in the far heap, the
 * chunk rows (13 bytes per message) the broker keeps for the key/value
 * state, and the client ids of senders once each. Payloads stay in the
 * store until their message is due within the prefetch window
 * (plugin_opt_prefetch_ms); then cold_get reads them back, so that at the
 * due time the message is in memory and leaves on the single timer armed
 * for the earliest due (sched_wake). Release: the message is rewritten once
 * more so that its expiry interval counts from now and routed to the plugins
 * after this one and then to subscribers; only then does its entry leave its
 * chunk and its cold value go. A crash after routing and before that commit
 * releases it again after the restart: at least once, as QoS 1.
 *
 * Nothing due is dropped for lack of memory. A release whose copy, route or
 * index read fails goes back to the head of the queue and everything waits
 * for a back-off (RETRY_MIN_MS doubling to RETRY_MAX_MS) before trying again,
 * in the same order; a routed message whose index entry could not be removed
 * is not routed again, only the removal is retried. A payload that cannot be
 * read is read again, and given up (logged, counted as lost) only after
 * FETCH_TRIES answers of "absent" or undecodable, since the host answers
 * "absent" for a read that failed too. Rows are read with kv_scan, which lends
 * the value, and never with kv_get, which answers "absent" when its copy fails:
 * low memory must not look like a cancel. A timer that cannot be armed is
 * armed again by a short retry timer, else from the next callback that runs
 * (any PUBLISH, a payload read, the $SYS timer).
 *
 * Deleting payloads one by one in due order is random access all over the
 * store's B-tree (keys are in publish order) and was what limited bursts of
 * releases. So when a chunk is complete and all of it falls due within
 * GC_HORIZON_MS, a released payload stays until the chunk's row goes, and
 * then the chunk's 32 keys go in one range delete queued with the row's
 * delete. The row says what is still pending, so a crash leaves nothing
 * behind: the row empties later and its range delete takes the leftovers.
 *
 * Cancel removes the chunk entry and the payload at once (a cancel whose
 * index read or write fails is refused with 0x80, and the message stays
 * scheduled); the queue entry stays until its time comes and is then
 * skipped, because the chunk row is what says whether a message is still
 * pending (lazy deletion keeps the heap free of a position index).
 *
 * Who may cancel: a message published with a username (authenticated with
 * the password file) only by a client with that username; one published
 * without a username by a client with the same client id. The sender rows
 * name the publisher: "\x01" + username, or the client id (escaped with a
 * "\x02" in front when it starts with '\x01' or '\x02', so the two kinds of
 * name never meet; rows written before usernames are plain client ids).
 *
 * Start-up rebuilds the queue from the chunk rows (kv_scan); overdue
 * messages are staged first and go at once, in due order, as their payloads
 * arrive. Message ids never repeat: the next id is reserved in blocks in
 * the row "n".
 *
 * $SYS/broker/delayed/{pending,next,scheduled,released,cancelled,rejected}
 * are published retained every plugin_opt_sys_interval seconds.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "sched.h"
#include "plugin_sys.h"
#include "sluice_plugin.h"

#define DEFAULT_MAX_MS (42ull * 86400 * 1000)
#define DEFAULT_WINDOW_MS 1500
#define DEFAULT_STAGE_CAP 50000
#define DEFAULT_SYS_S 10
#define SEQ_BLOCK 65536
#define RELEASE_BUDGET 20000 /* releases per timer run before yielding to the loop */
#define GC_HORIZON_MS 60000 /* longest a released payload waits for its chunk's range delete */
#define RETRY_MIN_MS 100 /* first back-off after a failed release or read; it doubles */
#define RETRY_MAX_MS 5000
#define FETCH_TRIES 5 /* bad answers for a payload before it is given up as lost */
/* The first host table with cold values; later calls are used when the host has them. */
#define HOST_MIN_SIZE (offsetof(struct sp_host, cold_get) + sizeof(void *))
/* Hosts whose table is this large have cold_del_range (appended after the first release). */
#define HOST_HAS_DEL_RANGE (offsetof(struct sp_host, cold_del_range) + sizeof(void *))

struct dl {
	const struct sp_host *host;
	struct sp_plugin *self;
	uint64_t max_ms, sys_ms;
	struct sched q;
	struct sched_senders senders;
	uint32_t next_sender;
	uint64_t next_seq, seq_limit;
	struct sp_timer *timer;
	uint64_t timer_at; /* wall ms the timer is armed for (or owed, when unarmed) */
	bool unarmed; /* timer_add failed: the next callback arms it (heal) */
	bool started; /* between START and STOP */
	bool refetch; /* some staged record waits for its payload to be read again */
	uint64_t retry_at; /* wall ms before which nothing is released (back-off), 0 none */
	uint64_t backoff; /* the last back-off, ms */
	struct sp_timer *sys_timer;
	uint64_t pending, scheduled, released, cancelled, rejected, lost;
};

static const char *const drop_keys[] = { SCHED_KEY_DELAY, SCHED_KEY_AT };

static void pump(struct dl *dl);
static void on_timer(void *arg);
static void sys_stats(void *arg);

/* --- small helpers ----------------------------------------------------------------- */

static void unref_msg(void *m);
static const struct sp_host *g_host; /* for unref_msg, called through sched_free */

static void unref_msg(void *m)
{
	g_host->msg_unref(m);
}

/*
 * Arms the one timer for wall time `at` unless it is armed for earlier
 * already. When timer_add fails, a retry timer (at most RETRY_MIN_MS) is
 * tried, which pumps and arms again; when that fails too the time stays
 * owed in timer_at and heal() arms it from the next callback.
 */
static void arm(struct dl *dl, uint64_t at)
{
	uint64_t now, delay;

	if (dl->unarmed && dl->timer_at < at)
		at = dl->timer_at;
	if (at == UINT64_MAX || (dl->timer && dl->timer_at <= at))
		return;
	if (dl->timer)
		dl->host->timer_cancel(dl->timer);
	now = dl->host->now_ms();
	delay = at > now ? at - now : 0;
	dl->timer_at = at;
	dl->timer = dl->host->timer_add(dl->self, delay, on_timer, dl);
	if (!dl->timer) {
		if (delay > RETRY_MIN_MS) {
			delay = RETRY_MIN_MS;
			dl->timer_at = now + delay; /* early: on_timer arms again for `at` */
		}
		dl->timer = dl->host->timer_add(dl->self, delay, on_timer, dl);
	}
	if (!dl->timer) {
		dl->timer_at = at;
		if (!dl->unarmed)
			dl->host->log(
				dl->self, SP_LOG_ERR,
				"delayed: cannot arm a timer; trying again from the next event");
	}
	dl->unarmed = !dl->timer;
}

/* Timers that could not be armed (out of memory): armed from whatever callback runs next. */
static void heal(struct dl *dl)
{
	if (!dl->started)
		return;
	if (dl->unarmed)
		arm(dl, dl->timer_at);
	if (dl->sys_ms && !dl->sys_timer)
		dl->sys_timer = dl->host->timer_add(dl->self, dl->sys_ms, sys_stats, dl);
}

struct kv_read {
	const uint8_t *key;
	size_t klen, cap, len;
	uint8_t *buf;
	bool found;
};

static int kv_read_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct kv_read *rd = arg;

	/* Keys sort shorter first: the first key with the prefix is the row, if it is there. */
	if (klen == rd->klen && !memcmp(key, rd->key, klen)) {
		rd->found = true;
		rd->len = vlen <= rd->cap ? vlen : 0; /* too long: malformed, read as empty */
		if (rd->len)
			memcpy(rd->buf, val, rd->len);
	}
	return 1;
}

/*
 * The row `key` into buf (cap bytes): 1 with *len when it is there, 0 when it
 * is not, -1 when it could not be read. kv_scan lends the value where kv_get
 * copies it and answers "absent" when the copy fails: a row must never seem
 * absent for lack of memory (a release would be skipped, a cancel would be
 * acknowledged for nothing, a chunk row would be overwritten).
 */
static int kv_read(struct dl *dl, const uint8_t *key, size_t klen, uint8_t *buf, size_t cap,
		   size_t *len)
{
	struct kv_read rd = { key, klen, cap, 0, buf, false };

	if (dl->host->kv_scan(dl->self, key, klen, kv_read_one, &rd))
		return -1;
	*len = rd.len;
	return rd.found;
}

/* The chunk row holding seq: 1 with *len and the bytes in buf, 0 when none, -1 unreadable. */
static int chunk_get(struct dl *dl, uint64_t seq, uint8_t *buf, size_t *len)
{
	uint8_t key[9];
	int rc;

	sched_key_chunk(key, seq);
	rc = kv_read(dl, key, sizeof(key), buf, SCHED_CHUNK_MAX, len);
	if (rc <= 0)
		return rc;
	return sched_chunk_valid(buf, *len); /* a malformed row holds nothing, as at start-up */
}

static int chunk_put(struct dl *dl, uint64_t seq, const uint8_t *v, size_t len)
{
	uint8_t key[9];

	sched_key_chunk(key, seq);
	if (!len)
		return dl->host->kv_del(dl->self, key, sizeof(key));
	return dl->host->kv_put(dl->self, key, sizeof(key), v, len);
}

/*
 * The pending entry for seq: 1 with *it and its chunk row in buf (*len
 * bytes, SCHED_CHUNK_MAX of room), 0 when it is not pending (released,
 * cancelled, never stored), -1 when the row could not be read.
 */
static int entry_find(struct dl *dl, uint64_t seq, struct sched_item *it, uint8_t *buf, size_t *len)
{
	int rc = chunk_get(dl, seq, buf, len);

	if (rc <= 0)
		return rc;
	return !sched_chunk_find(buf, *len, (unsigned)(seq & (SCHED_CHUNK - 1)), it);
}

/* Forgets one sender's message: its id row goes with its last message. */
static void sender_unref(struct dl *dl, uint32_t id)
{
	struct sched_sender *s = sched_senders_by_id(&dl->senders, id);
	uint8_t key[5];

	if (!s || !s->refs || --s->refs)
		return;
	sched_key_sender(key, id);
	dl->host->kv_del(dl->self, key, sizeof(key));
	sched_senders_remove(&dl->senders, s);
}

/* Deletes the payloads of every message of seq's chunk, in one store operation. */
static void chunk_payloads_del(struct dl *dl, uint64_t seq)
{
	uint64_t first = seq & ~(uint64_t)(SCHED_CHUNK - 1);
	uint8_t lo[9], hi[9];
	unsigned i;

	sched_key_payload(lo, first);
	sched_key_payload(hi, first + SCHED_CHUNK);
	if (dl->host->size >= HOST_HAS_DEL_RANGE) {
		dl->host->cold_del_range(dl->self, lo, sizeof(lo), hi, sizeof(hi));
		return;
	}
	for (i = 0; i < SCHED_CHUNK; i++) {
		sched_key_payload(lo, first + i);
		dl->host->cold_del(dl->self, lo, sizeof(lo));
	}
}

/*
 * seq left its chunk row, which is now v (len bytes): its payload goes now,
 * or with the whole chunk's when the row is about to go anyway.
 */
static void payload_del(struct dl *dl, uint64_t seq, const uint8_t *v, size_t len)
{
	uint8_t key[9];

	if (!len) {
		chunk_payloads_del(dl, seq);
		return;
	}
	/* Complete (no id of it left to hand out) and all due soon: defer. */
	if (dl->next_seq > (seq | (SCHED_CHUNK - 1)) &&
	    sched_chunk_last_due(v, len) <= dl->host->now_ms() + GC_HORIZON_MS)
		return;
	sched_key_payload(key, seq);
	dl->host->cold_del(dl->self, key, sizeof(key));
}

/*
 * Removes the pending entry it of seq, found by entry_find() in the row buf
 * (len bytes), from the durable index, and (soon) its payload from the
 * store. -1 when the row could not be written: the entry is still pending.
 */
static int entry_drop(struct dl *dl, uint64_t seq, const uint8_t *buf, size_t len,
		      const struct sched_item *it)
{
	uint8_t out[SCHED_CHUNK_MAX];
	size_t n = sched_chunk_remove(buf, len, it->idx, out);

	if (chunk_put(dl, seq, out, n)) {
		/* A host may change its memory before failing to queue the write: undo that. */
		chunk_put(dl, seq, buf, len);
		dl->host->log(dl->self, SP_LOG_ERR,
			      "delayed: cannot update the index for %" PRIu64 " (out of memory)",
			      seq);
		return -1;
	}
	payload_del(dl, seq, out, n);
	sender_unref(dl, it->sender);
	if (dl->pending)
		dl->pending--;
	return 0;
}

/* --- release --------------------------------------------------------------------------- */

/* Waits before the next release or read: the first failure RETRY_MIN_MS, doubling. */
static void back_off(struct dl *dl)
{
	uint64_t now = dl->host->now_ms();

	if (dl->retry_at > now)
		return; /* one back-off for all the failures seen meanwhile */
	dl->backoff = dl->backoff ? dl->backoff * 2 : RETRY_MIN_MS;
	if (dl->backoff > RETRY_MAX_MS)
		dl->backoff = RETRY_MAX_MS;
	dl->retry_at = now + dl->backoff;
}

static void rec_free(struct dl *dl, struct sched_rec *r)
{
	if (r->msg)
		dl->host->msg_unref(r->msg);
	sched_rec_free(r);
}

/* Routes a copy of r's message whose expiry counts from now; -1 (try again) when that fails. */
static int route_copy(struct dl *dl, struct sched_rec *r)
{
	struct sp_msg *out = dl->host->msg_rewrite(r->msg, NULL, NULL, 0, true);
	int n = out ? dl->host->route(dl->self, out) : -1;

	if (out)
		dl->host->msg_unref(out);
	if (n < 0) { /* 0 (no subscriber) is a success: it was published */
		dl->host->log(dl->self, SP_LOG_WARNING,
			      "delayed: message %" PRIu64 " on '%s' could not be routed; retrying",
			      r->e.seq, dl->host->msg_topic(r->msg));
		return -1;
	}
	dl->released++;
	dl->host->log(dl->self, SP_LOG_DEBUG,
		      "delayed: released %" PRIu64 " on '%s', %" PRId64 " ms late", r->e.seq,
		      dl->host->msg_topic(r->msg), (int64_t)(dl->host->now_ms() - r->e.due));
	return 0;
}

/* Still pending, and its payload was read FETCH_TRIES times in vain: given up. */
static int payload_lost(struct dl *dl, struct sched_rec *r)
{
	dl->lost++;
	dl->host->log(dl->self, SP_LOG_ERR,
		      "delayed: message %" PRIu64 " lost: its payload could not be read", r->e.seq);
	return 0;
}

/*
 * Releases a due record: 0 when it is finished with (freed), -1 when it
 * must be tried again later (the caller puts it back). The index entry and
 * the payload stay until the routed copy exists and route() did not fail.
 */
static int release_one(struct dl *dl, struct sched_rec *r)
{
	uint8_t buf[SCHED_CHUNK_MAX];
	struct sched_item it;
	size_t len = 0;
	int rc = entry_find(dl, r->e.seq, &it, buf, &len);

	if (rc < 0)
		return -1; /* unreadable is not absent */
	if (rc == 0) { /* cancelled after it was queued (or never stored) */
		rec_free(dl, r);
		return 0;
	}
	if (r->state != SCHED_DONE) {
		if (r->msg ? route_copy(dl, r) : payload_lost(dl, r))
			return -1;
		if (r->msg)
			dl->host->msg_unref(r->msg);
		r->msg = NULL;
		r->state = SCHED_DONE; /* from now on only the removal is retried */
	}
	if (entry_drop(dl, r->e.seq, buf, len, &it))
		return -1;
	rec_free(dl, r);
	return 0;
}

/* Still in the index? Unreadable counts as yes: it must not be taken for a cancel. */
static bool listed(struct dl *dl, uint64_t seq)
{
	uint8_t buf[SCHED_CHUNK_MAX];
	struct sched_item it;
	size_t len;

	return entry_find(dl, seq, &it, buf, &len) != 0;
}

static void fetched(void *arg, const void *val, size_t vlen)
{
	struct sched_rec *r = arg;
	struct dl *dl = r->ctx;

	r->msg = val ? dl->host->msg_decode(val, vlen) : NULL;
	if (r->msg) {
		r->state = SCHED_READY;
	} else if (!listed(dl, r->e.seq)) {
		r->state = SCHED_MISSING; /* cancelled, or never stored: skipped when due */
	} else if (++r->tries < FETCH_TRIES) {
		/* Absent or undecodable: the host says absent when it ran out of memory too. */
		r->state = SCHED_WAIT;
		dl->refetch = true;
		back_off(dl);
	} else {
		r->state = SCHED_MISSING; /* lost, unless it was cancelled meanwhile */
	}
	heal(dl);
	arm(dl, dl->host->now_ms()); /* the loop releases it, not this store callback */
}

static void fetch(struct dl *dl, struct sched_rec *r)
{
	uint8_t key[9];

	sched_key_payload(key, r->e.seq);
	r->state = SCHED_FETCHING;
	r->ctx = dl;
	if (dl->host->cold_get(dl->self, key, sizeof(key), fetched, r)) {
		r->state = SCHED_WAIT; /* out of memory: asked again after a back-off */
		dl->refetch = true;
		back_off(dl);
	}
}

/* Asks again for the payloads whose read could not even be asked for, or came back bad. */
static void refetch(struct dl *dl)
{
	size_t i;

	dl->refetch = false;
	for (i = 0; i < dl->q.n_near && !dl->retry_at; i++)
		if (dl->q.near[i]->state == SCHED_WAIT)
			fetch(dl, dl->q.near[i]);
}

/* A release that failed: r goes back to the head of the queue and everything waits. */
static void retry_later(struct dl *dl, struct sched_rec *r)
{
	back_off(dl);
	if (!sched_putback(&dl->q, r))
		return;
	/* Cannot happen (its slot is still there); the index keeps it for the next start. */
	dl->host->log(dl->self, SP_LOG_ERR,
		      "delayed: out of memory requeueing %" PRIu64 ": it goes after a restart",
		      r->e.seq);
	rec_free(dl, r);
}

/* Stages what is due soon (fetching payloads) and releases what is due now. */
static void pump(struct dl *dl)
{
	uint64_t now = dl->host->now_ms();
	struct sched_rec *r;
	size_t budget = RELEASE_BUDGET;
	bool more = true;

	if (dl->retry_at > now) {
		arm(dl, dl->retry_at);
		return;
	}
	dl->retry_at = 0;
	if (dl->refetch)
		refetch(dl);
	while (more && budget && !dl->retry_at) {
		more = false;
		while ((r = sched_stage(&dl->q, now)))
			fetch(dl, r);
		while (budget && !dl->retry_at && (r = sched_due(&dl->q, now))) {
			if (release_one(dl, r)) {
				retry_later(dl, r);
				break;
			}
			dl->backoff = 0;
			budget--;
			more = true;
		}
	}
	arm(dl, dl->retry_at ? dl->retry_at : budget ? sched_wake(&dl->q) : now);
}

static void on_timer(void *arg)
{
	struct dl *dl = arg;

	dl->timer = NULL; /* it fired */
	pump(dl);
}

/* --- $SYS ------------------------------------------------------------------------------- */

/* The next due time of a message still pending (cancelled ones at the front are dropped). */
static uint64_t next_due(struct dl *dl)
{
	uint8_t buf[SCHED_CHUNK_MAX];
	struct sched_ent e;
	struct sched_item it;
	struct sched_rec *r;
	size_t len;

	while (sched_first(&dl->q, &e)) {
		if (entry_find(dl, e.seq, &it, buf, &len)) /* pending, or unreadable: kept */
			return e.due;
		if (dl->q.n_near && dl->q.near[0]->state == SCHED_FETCHING)
			return e.due; /* its fetch callback still needs the record */
		r = sched_drop_first(&dl->q);
		if (r)
			rec_free(dl, r);
	}
	return 0;
}

/* The figures, for GET /metrics and $SYS/broker/delayed/... */
static const struct sp_metric metrics[] = {
	{ "sluice_delayed_pending", "Delayed messages waiting for their time.", SP_METRIC_GAUGE,
	  NULL, NULL, "delayed/pending" },
	{ "sluice_delayed_next_due_ms",
	  "When the next delayed message is due (wall clock, ms since the epoch; 0: none).",
	  SP_METRIC_GAUGE, NULL, NULL, "delayed/next" },
	{ "sluice_delayed_scheduled_total", "Delayed messages accepted.", SP_METRIC_COUNTER, NULL,
	  NULL, "delayed/scheduled" },
	{ "sluice_delayed_released_total", "Delayed messages released to their topic.",
	  SP_METRIC_COUNTER, NULL, NULL, "delayed/released" },
	{ "sluice_delayed_cancelled_total", "Delayed messages cancelled.", SP_METRIC_COUNTER, NULL,
	  NULL, "delayed/cancelled" },
	{ "sluice_delayed_rejected_total", "Delayed PUBLISHes refused.", SP_METRIC_COUNTER, NULL,
	  NULL, "delayed/rejected" },
};

/* Every figure, to GET /metrics or to $SYS (one source for both). */
static void report(struct dl *dl, struct plugin_report *r)
{
	const uint64_t v[] = { dl->pending,  next_due(dl),  dl->scheduled,
			       dl->released, dl->cancelled, dl->rejected };

	plugin_metrics(r, metrics, v, sizeof(metrics) / sizeof(metrics[0]));
}

static void collect(void *arg, struct sp_metrics *out)
{
	struct dl *dl = arg;
	struct plugin_report r = { dl->host, dl->self, out };

	report(dl, &r);
}

static void sys_stats(void *arg)
{
	struct dl *dl = arg;
	struct plugin_report r = { dl->host, dl->self, NULL };

	dl->sys_timer = NULL;
	report(dl, &r);
	heal(dl); /* the $SYS timer again, and the release timer if it is owed */
}

/* --- PUBLISH ------------------------------------------------------------------------------ */

static int reject(struct dl *dl, const struct sp_event *ev, struct sp_result *res, uint8_t reason,
		  const char *why)
{
	dl->rejected++;
	dl->host->log(dl->self, SP_LOG_NOTICE, "delayed: %s from '%s' on '%s' %s: %s",
		      ev->protocol == 5 ? "refused" : "dropped", ev->client_id ? ev->client_id : "",
		      dl->host->msg_topic(ev->msg),
		      ev->protocol == 5 ? "with a reason code" : "(no negative ack before MQTT 5)",
		      why);
	res->verdict = SP_REJECT;
	res->reason = reason;
	res->reason_string = why;
	return 0;
}

static void collect_props(const struct dl *dl, const struct sp_msg *m, struct sched_props *p)
{
	size_t pos = 0, kl, vl;
	const char *k, *v;

	memset(p, 0, sizeof(*p));
	while (dl->host->msg_user_prop(m, &pos, &k, &kl, &v, &vl) == 1) {
		if (kl == strlen(SCHED_KEY_DELAY) && !memcmp(k, SCHED_KEY_DELAY, kl)) {
			p->delay = v;
			p->delay_len = vl;
			p->n_delay++;
		} else if (kl == strlen(SCHED_KEY_AT) && !memcmp(k, SCHED_KEY_AT, kl)) {
			p->at = v;
			p->at_len = vl;
			p->n_at++;
		}
	}
}

#define WHO_MAX 65540 /* a prefix byte and a username or client id (at most 65535 bytes) */

/* The publisher's (or canceller's) name for the sender rows (see the top of this file). */
static const char *identity(const struct sp_event *ev, const char *client_id, char *buf)
{
	const char *name = ev->username && ev->username[0] ? ev->username : client_id;
	char prefix = name == ev->username ? '\x01' : 0;
	size_t n = strlen(name);

	if (!prefix && (name[0] == '\x01' || name[0] == '\x02'))
		prefix = '\x02';
	if (!prefix || n > WHO_MAX - 2)
		return name;
	buf[0] = prefix;
	memcpy(buf + 1, name, n + 1);
	return buf;
}

/* May the client of ev cancel a message of sender row name? */
static bool may_cancel(const struct sp_event *ev, const char *client_id, const char *name)
{
	static char buf[WHO_MAX];

	if (!strcmp(name, identity(ev, client_id, buf)))
		return true;
	/* a message without a username is its client id's, whoever cancels it */
	return name[0] != '\x01' && name[0] != '\x02' && !strcmp(name, client_id);
}

static int do_cancel(struct dl *dl, const struct sp_event *ev, uint64_t id, struct sp_result *res)
{
	static const char *const not_done =
		"cancel not carried out (out of memory): the message is still scheduled";
	const char *who = dl->host->msg_sender(ev->msg);
	uint8_t buf[SCHED_CHUNK_MAX];
	struct sched_sender *s;
	struct sched_item it;
	size_t len = 0;
	int rc = entry_find(dl, id, &it, buf, &len);

	if (rc < 0)
		return reject(dl, ev, res, SCHED_RC_UNSPECIFIED, not_done);
	if (!rc)
		return reject(dl, ev, res, SCHED_RC_IMPL_ERROR,
			      "no pending delayed message with that id");
	s = sched_senders_by_id(&dl->senders, it.sender);
	if (!s || !may_cancel(ev, who, s->name))
		return reject(dl, ev, res, SCHED_RC_NOT_AUTHORIZED,
			      "only the publisher of a delayed message (its username, or its "
			      "client id when it had none) may cancel it");
	if (entry_drop(dl, id, buf, len, &it))
		return reject(dl, ev, res, SCHED_RC_UNSPECIFIED, not_done);
	dl->cancelled++;
	dl->host->log(dl->self, SP_LOG_INFO, "delayed: '%s' cancelled %" PRIu64, who, id);
	res->verdict = SP_TAKE; /* swallowed: no reference kept, nothing routed */
	return 0;
}

/* The sender's id, registered (and stored) on its first pending message. */
static struct sched_sender *sender_ref(struct dl *dl, const char *name)
{
	struct sched_sender *s = sched_senders_find(&dl->senders, name);
	uint8_t key[5];

	if (!s) {
		while (sched_senders_by_id(&dl->senders, dl->next_sender))
			dl->next_sender++;
		s = sched_senders_add(&dl->senders, name, dl->next_sender++);
		if (!s)
			return NULL;
		sched_key_sender(key, s->id);
		if (dl->host->kv_put(dl->self, key, sizeof(key), name, strlen(name))) {
			sched_senders_remove(&dl->senders, s);
			return NULL;
		}
	}
	s->refs++;
	return s;
}

static int next_seq(struct dl *dl, uint64_t *seq)
{
	uint8_t v[8];

	if (dl->next_seq >= dl->seq_limit) {
		sched_put_be64(v, dl->next_seq + SEQ_BLOCK);
		if (dl->host->kv_put(dl->self, "n", 1, v, sizeof(v)))
			return -1;
		dl->seq_limit = dl->next_seq + SEQ_BLOCK;
	}
	*seq = dl->next_seq++;
	return 0;
}

/*
 * Writes the payload and then the index entry of a new delayed message.
 * -1 when either cannot be queued; nothing of it is left then (but for a
 * payload whose delete failed too, which its chunk's range delete takes).
 */
static int store_new(struct dl *dl, uint64_t seq, uint64_t due, const char *sender,
		     const struct sp_msg *m)
{
	uint8_t buf[SCHED_CHUNK_MAX], out[SCHED_CHUNK_MAX + SCHED_REC_SIZE], key[9];
	struct sched_item it = { (unsigned)(seq & (SCHED_CHUNK - 1)), due, 0 };
	struct sched_sender *s;
	size_t len = 0, elen = 0;
	void *enc = NULL;
	int rc = chunk_get(dl, seq, buf, &len);

	if (rc < 0)
		return -1; /* never overwrite a row that could not be read */
	if (!rc)
		len = 0;
	s = sender_ref(dl, sender);
	if (!s)
		return -1;
	it.sender = s->id;
	sched_key_payload(key, seq);
	if (dl->host->msg_encode(m, &enc, &elen) ||
	    dl->host->cold_put(dl->self, key, sizeof(key), enc, elen))
		goto fail;
	if (chunk_put(dl, seq, out, sched_chunk_add(buf, len, &it, out))) {
		dl->host->cold_del(dl->self, key, sizeof(key));
		goto fail;
	}
	dl->host->free(enc);
	return 0;
fail:
	dl->host->free(enc);
	sender_unref(dl, s->id);
	return -1;
}

static int do_delay(struct dl *dl, const struct sp_event *ev, const struct sched_req *rq,
		    struct sp_result *res)
{
	static char who[WHO_MAX]; /* the loop thread's only */
	struct sp_msg *m = dl->host->msg_rewrite(ev->msg, rq->target, drop_keys, 2, false);
	struct sched_rec *r = NULL;
	struct sched_ent e = { rq->due_ms, 0 };
	char id[24];

	/* Queued before it is stored: a stored message is never left out of the queue. */
	if (!m || next_seq(dl, &e.seq) || sched_add(&dl->q, e, dl->host->now_ms(), &r))
		goto fail;
	if (store_new(dl, e.seq, e.due, identity(ev, dl->host->msg_sender(ev->msg), who), m)) {
		if (r)
			r->state = SCHED_MISSING; /* no index entry: skipped when due */
		goto fail;
	}
	dl->pending++;
	dl->scheduled++;
	if (r) {
		r->msg = m; /* due soon: keep it, no need to read it back */
		r->state = SCHED_READY;
		m = NULL;
	}
	if (m)
		dl->host->msg_unref(m);
	arm(dl, sched_wake(&dl->q));
	snprintf(id, sizeof(id), "%" PRIu64, e.seq);
	if (ev->protocol == 5)
		dl->host->ack_user_prop("message-id", id);
	dl->host->log(dl->self, SP_LOG_DEBUG, "delayed: %s for '%s' at %" PRIu64, id, rq->target,
		      e.due);
	res->verdict = SP_TAKE; /* the message itself is not kept: its copy is stored */
	return 0;
fail:
	if (m)
		dl->host->msg_unref(m);
	return reject(dl, ev, res, SCHED_RC_UNSPECIFIED, "delayed message could not be stored");
}

/*
 * The broker's access rules (acl_file) for the topic a delayed message will
 * be released on. A message the broker or a plugin routes (protocol 0: a
 * will, a committed transaction) was checked by them on its own topic.
 */
static bool may_write(struct dl *dl, const struct sp_event *ev, const char *target)
{
	if (!SP_HOST_HAS(dl->host, acl_check) || !ev->client_id || !ev->protocol)
		return true; /* an older broker, or a message routed by the broker */
	return dl->host->acl_check(ev->client_id, ev->username, target, SP_ACL_WRITE) == 1;
}

static int on_publish(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct dl *dl = udata;
	struct sched_props props;
	struct sched_req rq;

	heal(dl);
	collect_props(dl, ev->msg, &props);
	if (sched_parse(dl->host->msg_topic(ev->msg), &props, dl->host->now_ms(), dl->max_ms, &rq))
		return reject(dl, ev, res, rq.reason, rq.why);
	if (rq.kind == SCHED_CANCEL)
		return do_cancel(dl, ev, rq.cancel_id, res);
	if (rq.kind == SCHED_DELAY && !may_write(dl, ev, rq.target))
		return reject(dl, ev, res, SCHED_RC_NOT_AUTHORIZED,
			      "not authorised to publish on the delayed message's topic");
	if (rq.kind == SCHED_DELAY)
		return do_delay(dl, ev, &rq, res);
	return 0;
}

/* --- start and stop ------------------------------------------------------------------------ */

static int load_sender(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct dl *dl = arg;
	char *name;
	uint32_t id;

	if (klen != 5)
		return 0;
	id = sched_get_be32((const uint8_t *)key + 1);
	name = dl->host->alloc(vlen + 1);
	if (name) {
		memcpy(name, val, vlen);
		name[vlen] = '\0';
	}
	if (!name || !sched_senders_add(&dl->senders, name, id))
		dl->host->log(dl->self, SP_LOG_ERR, "delayed: sender row %" PRIu32 " not loaded",
			      id);
	dl->host->free(name);
	if (id >= dl->next_sender)
		dl->next_sender = id + 1;
	return 0;
}

static int load_chunk(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct dl *dl = arg;
	uint64_t chunk;
	size_t i;

	if (klen != 9 || !sched_chunk_valid(val, vlen)) {
		dl->host->log(dl->self, SP_LOG_ERR, "delayed: skipping a malformed index row");
		return 0;
	}
	chunk = sched_get_be64((const uint8_t *)key + 1);
	for (i = 0; i < vlen / SCHED_REC_SIZE; i++) {
		struct sched_item it;
		struct sched_ent e;
		struct sched_sender *s;

		sched_chunk_item(val, i, &it);
		e.due = it.due;
		e.seq = chunk << SCHED_CHUNK_BITS | it.idx;
		if (sched_heap_append(&dl->q.far, e))
			return 1; /* out of memory: stop, reported by the caller */
		if ((s = sched_senders_by_id(&dl->senders, it.sender)))
			s->refs++;
		if (e.seq >= dl->next_seq)
			dl->next_seq = e.seq + 1;
		dl->pending++;
	}
	return 0;
}

/* Sender rows no pending message refers to any more (a crash between two writes). */
static void drop_unused_senders(struct dl *dl)
{
	size_t i;

	for (i = 0; i < dl->senders.size; i++) {
		struct sched_sender *s = dl->senders.name_tab[i], *next;

		for (; s; s = next) {
			next = s->by_name;
			if (!s->refs) {
				s->refs = 1;
				sender_unref(dl, s->id);
			}
		}
	}
}

static int on_start(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct dl *dl = udata;
	uint8_t v[8];
	size_t vlen = 0;

	(void)ev;
	(void)res;
	dl->started = true;
	/* Unreadable would mean ids used again: kv_read, not kv_get (see kv_read). */
	if (kv_read(dl, (const uint8_t *)"n", 1, v, sizeof(v), &vlen) == 1 && vlen == 8)
		dl->next_seq = sched_get_be64(v);
	if (!dl->next_seq)
		dl->next_seq = 1;
	dl->host->kv_scan(dl->self, "s", 1, load_sender, dl);
	dl->host->kv_scan(dl->self, "c", 1, load_chunk, dl);
	if (dl->pending != dl->q.far.n)
		dl->host->log(dl->self, SP_LOG_ERR, "delayed: out of memory rebuilding the queue");
	sched_heap_build(&dl->q.far);
	drop_unused_senders(dl);
	dl->seq_limit = dl->next_seq; /* the next id reserves a new block */
	dl->host->log(dl->self, SP_LOG_NOTICE,
		      "delayed: %" PRIu64 " pending message(s) restored, next id %" PRIu64,
		      dl->pending, dl->next_seq);
	sys_stats(dl);
	pump(dl);
	return 0;
}

static int on_stop(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct dl *dl = udata;

	(void)ev;
	(void)res;
	if (dl->timer)
		dl->host->timer_cancel(dl->timer);
	if (dl->sys_timer)
		dl->host->timer_cancel(dl->sys_timer);
	dl->timer = dl->sys_timer = NULL;
	dl->started = dl->unarmed = false;
	/* The store has answered every cold_get by now: it closes before STOP. */
	sched_free(&dl->q, unref_msg);
	sched_senders_free(&dl->senders);
	dl->host->log(dl->self, SP_LOG_INFO,
		      "delayed: stopped with %" PRIu64 " pending (kept in the store)", dl->pending);
	return 0;
}

/* --- entry points ---------------------------------------------------------------------------- */

static int apply_opts(struct dl *dl, const struct sp_opt *opts, int n_opts, uint64_t *window,
		      uint64_t *cap)
{
	for (int i = 0; i < n_opts; i++) {
		const char *k = opts[i].key, *v = opts[i].value;
		int bad;

		if (!strcmp(k, "max"))
			bad = sched_parse_duration(v, &dl->max_ms);
		else if (!strcmp(k, "sys_interval"))
			bad = sched_parse_duration(v, &dl->sys_ms);
		else if (!strcmp(k, "prefetch_ms"))
			bad = sched_parse_uint(v, strlen(v), window) || *window > 3600000;
		else if (!strcmp(k, "prefetch_max"))
			bad = sched_parse_uint(v, strlen(v), cap) || !*cap || *cap > 10000000;
		else
			bad = -1;
		if (bad == -2) {
			dl->host->log(
				dl->self, SP_LOG_ERR,
				"delayed: bad option plugin_opt_%s %s: too large (the duration "
				"overflows 64 bits of milliseconds)",
				k, v);
			return -1;
		}
		if (bad) {
			dl->host->log(dl->self, SP_LOG_ERR,
				      "delayed: bad option plugin_opt_%s %s (max DURATION, "
				      "sys_interval DURATION, prefetch_ms MS, prefetch_max N)",
				      k, v);
			return -1;
		}
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
	struct dl *dl;
	uint64_t window = DEFAULT_WINDOW_MS, cap = DEFAULT_STAGE_CAP;

	if (host->api != SLUICE_PLUGIN_API || host->size < HOST_MIN_SIZE) {
		fprintf(stderr, "delayed: host API %u size %u, expected %d size %zu\n", host->api,
			host->size, SLUICE_PLUGIN_API, HOST_MIN_SIZE);
		return -1;
	}
	g_host = host;
	sched_set_alloc(host->alloc, host->free);
	dl = host->alloc(sizeof(*dl));
	if (!dl)
		return -1;
	memset(dl, 0, sizeof(*dl));
	dl->host = host;
	dl->self = self;
	dl->max_ms = DEFAULT_MAX_MS;
	dl->sys_ms = DEFAULT_SYS_S * 1000;
	sched_senders_init(&dl->senders);
	if (apply_opts(dl, opts, n_opts, &window, &cap))
		goto fail;
	sched_init(&dl->q, window, (size_t)cap);
	*udata = dl;
	if (host->on(self, SP_EV_START, on_start) || host->on(self, SP_EV_STOP, on_stop) ||
	    host->on(self, SP_EV_PUBLISH, on_publish))
		goto fail;
	/* last: nothing after it may fail (the host would keep calling a freed collector) */
	if (SP_HOST_HAS(host, metric) && host->metrics_register(self, collect, dl))
		goto fail;
	host->log(self, SP_LOG_INFO, "delayed: max %" PRIu64 " s, prefetch %" PRIu64 " ms",
		  dl->max_ms / 1000, window);
	return 0;
fail:
	*udata = NULL;
	host->free(dl);
	return -1;
}

void sluice_plugin_cleanup(void *udata)
{
	struct dl *dl = udata;

	if (dl)
		dl->host->free(dl);
}
