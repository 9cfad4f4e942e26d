/*
 * session.c - sessions by client id, their outgoing windows and queues, and
 * what of them is kept in the store.
 *
 * The table is a chained hash keyed by client id that doubles when the load
 * passes one entry per bucket.
 *
 * Invariants:
 * - every QoS 1/2 entry in `inflight` has a packet id unique among them, and
 *   the list is in the order the PUBLISHes were first sent;
 * - `queue` holds entries in arrival order; nothing is sent out of it while
 *   earlier entries wait (QoS 0 entries in it are ones kept for an offline
 *   session, or waiting for a fence, and go out in their turn);
 * - with a disk tail (disk_n > 0) every entry in memory comes before every
 *   entry on disk, so reading the tail back keeps the order;
 * - a session with no connection has conn == NULL and, unless it never
 *   expires, an armed expiry timer.
 *
 * Persistence: a persistent session (session_persistent) has a sid, and
 * every change that must survive a restart is queued for the store as it
 * happens: the session row, each subscription, each delivery (with its
 * state and packet id), each incoming QoS 2 id. The store commits them in
 * order; acknowledgements to clients wait for that commit elsewhere
 * (proto_ack). The restore at the end of this file rebuilds it all.
 *
 * Drops are never silent: each one is counted in broker.stats and a QoS 1/2
 * drop is logged with the client id.
 */
#include "session.h"

#include <string.h>

#include "broker.h"
#include "clock.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "plugin.h"
#include "router.h"
#include "store.h"

static struct session **table;
static size_t table_size, n_sessions;
/* Sessions whose queue head waits for a commit (fenced QoS 2 messages). */
static struct session **fence_waiters;
static size_t n_fence_waiters, cap_fence_waiters;
static uint64_t max_sid; /* the largest sid handed out or read back */
static bool restoring; /* rebuilding from the store: write nothing back */
/* Every delivery is an out_entry: freed ones are kept for the next. */
static struct mem_cache entry_cache = MEM_CACHE(sizeof(struct out_entry), 4096);

/* QoS 0 for a live client is dropped while this much output waits for it. */
#define QOS0_BACKLOG_LIMIT (8u * 1024 * 1024)

static uint32_t hash_id(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

static int table_grow(void)
{
	size_t size = table_size ? table_size * 2 : 256, i;
	struct session **t = mem_calloc(size, sizeof(*t));

	if (!t)
		return -1;
	for (i = 0; i < table_size; i++) {
		struct session *s = table[i], *next;

		for (; s; s = next) {
			size_t b = hash_id(s->client_id) & (size - 1);

			next = s->hnext;
			s->hnext = t[b];
			t[b] = s;
		}
	}
	mem_free(table);
	table = t;
	table_size = size;
	return 0;
}

static void on_commit(void);

void session_init(void)
{
	store_set_commit_hook(on_commit);
}

struct session *session_find(const char *client_id)
{
	struct session *s;

	if (!table_size)
		return NULL;
	for (s = table[hash_id(client_id) & (table_size - 1)]; s; s = s->hnext)
		if (!strcmp(s->client_id, client_id))
			return s;
	return NULL;
}

static void on_expiry(struct timer *t, void *arg);
static void on_will_delay(struct timer *t, void *arg);

struct session *session_create(const char *client_id, uint8_t version)
{
	struct session *s;
	size_t b, id_len;

	if (n_sessions >= table_size && table_grow())
		return NULL;
	id_len = strlen(client_id);
	s = mem_calloc(1, sizeof(*s) + id_len + 1);
	if (!s)
		return NULL;
	memcpy(s->client_id, client_id, id_len + 1);
	s->version = version;
	s->next_packet_id = 1;
	s->next_seq = 1; /* seq 0 means none in the store */
	timer_init(&s->expiry_timer, on_expiry, s);
	timer_init(&s->will_timer, on_will_delay, s);
	b = hash_id(client_id) & (table_size - 1);
	s->hnext = table[b];
	table[b] = s;
	n_sessions++;
	return s;
}

size_t session_count(void)
{
	return n_sessions;
}

/* --- out entries ---------------------------------------------------------- */

static void list_append(struct out_list *l, struct out_entry *e)
{
	e->next = NULL;
	e->prev = l->tail;
	if (l->tail)
		l->tail->next = e;
	else
		l->head = e;
	l->tail = e;
	l->n++;
}

static void list_remove(struct out_list *l, struct out_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		l->tail = e->prev;
	l->n--;
}

static void entry_free(struct out_entry *e)
{
	msg_unref(e->msg);
	mem_free(e->more_subids);
	mem_free(e->share);
	mem_cache_free(&entry_cache, e);
}

static size_t share_len(const char *share)
{
	size_t g = strlen(share);

	return g + 1 + strlen(share + g + 1) + 1;
}

static struct out_entry *entry_new(struct msg *m, uint8_t qos, bool retain,
				   const uint32_t *subids, size_t n_subids, const char *share)
{
	struct out_entry *e = mem_cache_alloc(&entry_cache);

	if (!e)
		return NULL;
	memset(e, 0, sizeof(*e));
	if (n_subids > 1) {
		e->more_subids = mem_alloc((n_subids - 1) * sizeof(uint32_t));
		if (!e->more_subids)
			goto fail;
		memcpy(e->more_subids, subids + 1, (n_subids - 1) * sizeof(uint32_t));
	}
	if (share) {
		size_t n = share_len(share);

		e->share = mem_alloc(n);
		if (!e->share)
			goto fail;
		memcpy(e->share, share, n);
	}
	e->subid = n_subids ? subids[0] : 0;
	e->n_subids = (uint16_t)n_subids;
	e->seq = 0; /* set by the caller when the entry joins a session */
	e->msg = msg_ref(m);
	e->qos = qos;
	e->retain = retain;
	e->state = OUT_QUEUED;
	return e;
fail:
	mem_free(e->more_subids);
	mem_cache_free(&entry_cache, e);
	return NULL;
}

uint16_t session_window(const struct session *s)
{
	uint16_t w = broker.cfg->max_inflight_messages;

	if (s->conn && s->conn->client_receive_max < w)
		w = s->conn->client_receive_max;
	return w;
}

bool session_persistent(const struct session *s)
{
	return store_on() && s->expiry_interval != 0;
}

void session_save(struct session *s)
{
	if (!store_on())
		return;
	if (!session_persistent(s)) {
		/* It no longer outlives its connection: a restart must not bring it back. */
		if (s->sid)
			store_session_del(s->sid);
		s->sid = 0;
		return;
	}
	if (!s->sid)
		s->sid = ++max_sid;
	store_session_put(s);
}

/* Writes e's delivery row, or its new state when it already has one. */
static void save_entry(struct session *s, struct out_entry *e)
{
	if (!s->sid || !session_persistent(s))
		return;
	if (e->stored) {
		store_delivery_update(s->sid, e);
		return;
	}
	store_delivery_put(s->sid, e);
	e->stored = true;
}

/* An entry leaves the session: its row goes too. */
static void entry_done(struct session *s, struct out_entry *e)
{
	if (e->stored && s->sid)
		store_delivery_del(s->sid, e->seq, e->msg->id);
	entry_free(e);
}

static uint16_t id_after(uint16_t id)
{
	return id == 65535 ? 1 : (uint16_t)(id + 1);
}

/* How far id lies ahead of from, going up and wrapping after 65535. */
static uint32_t id_gap(uint16_t id, uint16_t from)
{
	return ((uint32_t)id + 65535 - from) % 65535;
}

/*
 * How many ids from `from` upwards (wrapping after 65535) are free before
 * the nearest one in use: 0 when from itself is in use, 65535 when none is.
 * Entries put back by shrink_inflight, or prepared, sit at the queue's
 * front with ids, so they count too.
 */
static uint16_t free_ids_from(const struct session *s, uint16_t from)
{
	const struct out_entry *e;
	uint32_t best = 65535;

	for (e = s->inflight.head; e; e = e->next)
		if (id_gap(e->packet_id, from) < best)
			best = id_gap(e->packet_id, from);
	for (e = s->queue.head; e && (e->sent_once || e->prepared); e = e->next)
		if (id_gap(e->packet_id, from) < best)
			best = id_gap(e->packet_id, from);
	return (uint16_t)best;
}

/*
 * Packet ids go round 1..65535, skipping those still in use. A scan of the
 * ids in use finds how many ids from next_packet_id on are free (up to the
 * nearest one in use); that run is handed out without looking again, since
 * ids only enter use through here (or the restore, which empties the run).
 * With ids released in roughly the order they were given, a scan happens
 * once per lap of 65,535 rather than once per message.
 */
static uint16_t next_packet_id(struct session *s)
{
	uint16_t id;

	while (!s->ids_free) {
		s->ids_free = free_ids_from(s, s->next_packet_id);
		if (!s->ids_free)
			s->next_packet_id = id_after(s->next_packet_id);
	}
	id = s->next_packet_id;
	s->next_packet_id = id_after(id);
	s->ids_free--;
	return id;
}

static void count_drop(struct session *s, struct msg *m, uint8_t qos, const char *share,
		       const char *why)
{
	plugin_dropped(s, m, qos, share, why);
	broker.stats.pub_dropped++;
	if (!qos) {
		broker.stats.qos0_dropped++;
		return;
	}
	log_warn("client '%s': QoS %u message on '%s' dropped: %s", s->client_id, qos, m->topic,
		 why);
}

/* Sends e (a fresh inflight or QoS 0 entry). Returns 0 sent, 1 not sendable. */
static int send_entry(struct session *s, struct out_entry *e, bool dup)
{
	int rc = conn_send_publish(s->conn, e, dup);

	if (rc == 0)
		e->sent_once = true;
	return rc ? 1 : 0;
}

static void start_inflight(struct session *s, struct out_entry *e)
{
	/* An entry sent before (put back by shrink_inflight) or prepared keeps its id. */
	if (!e->sent_once && !e->prepared)
		e->packet_id = next_packet_id(s);
	e->state = OUT_PUBLISHED;
	list_append(&s->inflight, e);
	if (send_entry(s, e, e->sent_once)) {
		list_remove(&s->inflight, e);
		count_drop(s, e->msg, e->qos, e->share, "expired or too large for the client");
		entry_done(s, e);
		return;
	}
	if (!e->prepared) /* a prepared entry's row already says sent, with this id */
		save_entry(s, e);
}

static struct session *session_by_sid(uint64_t sid)
{
	size_t i;
	struct session *s;

	for (i = 0; i < table_size; i++)
		for (s = table[i]; s; s = s->hnext)
			if (s->sid == sid)
				return s;
	return NULL;
}

/*
 * Disk-backed queues: once a persistent session has max_queued_in_memory
 * entries waiting (or already has a tail on disk, which keeps the order),
 * new entries are written to the store only. The tail is read back in
 * order, half a window at a time, as the client drains the queue.
 */
static bool spill_to_disk(struct session *s, struct out_entry *e)
{
	if (!s->sid || !session_persistent(s))
		return false;
	if (!s->disk_n && s->queue.n < broker.cfg->max_queued_in_memory)
		return false;
	store_delivery_put(s->sid, e);
	if (!s->disk_n)
		s->disk_first_seq = e->seq;
	s->disk_n++;
	entry_free(e);
	return true;
}

static void on_tail_loaded(void *arg, int status, const struct store_delivery_row *rows,
			   size_t n)
{
	struct session *s = session_by_sid((uint64_t)(uintptr_t)arg);
	size_t i;

	if (!s)
		return;
	s->loading = false;
	if (status) {
		log_err("client '%s': reading its queue back from the store failed (%d)",
			s->client_id, status);
		return;
	}
	for (i = 0; i < n && s->disk_n; i++) {
		const struct store_delivery_row *r = &rows[i];
		struct out_entry *e = entry_new(r->msg, r->qos, r->retain, r->subids, r->n_subids,
						r->share);

		if (!e)
			break;
		e->seq = r->seq;
		e->stored = true;
		list_append(&s->queue, e);
		s->queued_bytes += msg_size(r->msg);
		s->disk_first_seq = r->seq + 1;
		s->disk_n--;
	}
	if (!n)
		s->disk_n = 0; /* the store has nothing more: the count was stale */
	session_pump(s);
}

static void load_disk_tail(struct session *s)
{
	uint32_t window = broker.cfg->max_queued_in_memory;

	if (!s->disk_n || s->loading || !s->conn || s->queue.n > window / 2)
		return;
	s->loading = true;
	store_load_deliveries(s->sid, s->disk_first_seq, window - s->queue.n, on_tail_loaded,
			      (void *)(uintptr_t)s->sid);
}

/*
 * A message published at QoS 2 goes out only once the batch recording it
 * (its packet id, its deliveries) is committed: after a crash before that
 * commit the publisher resends it, and subscribers must not then see it
 * twice [MQTT-4.3.3]. Until then it waits at the head of the queue.
 */
static bool wait_fence(struct session *s, uint64_t fence)
{
	if (!store_fenced(fence))
		return false;
	if (!s->fence_wait) {
		if (n_fence_waiters == cap_fence_waiters) {
			size_t cap = cap_fence_waiters ? cap_fence_waiters * 2 : 16;
			struct session **a = mem_realloc(fence_waiters, cap * sizeof(*a));

			if (!a)
				return false; /* cannot wait: send now rather than stall */
			fence_waiters = a;
			cap_fence_waiters = cap;
		}
		fence_waiters[n_fence_waiters++] = s;
		s->fence_wait = true;
	}
	return true;
}

static void unwait_fence(struct session *s)
{
	size_t i;

	if (!s->fence_wait)
		return;
	for (i = 0; i < n_fence_waiters; i++)
		if (fence_waiters[i] == s)
			fence_waiters[i] = fence_waiters[--n_fence_waiters];
	s->fence_wait = false;
}

/* store commit hook: sessions waiting on a fence go on. */
static void on_commit(void)
{
	size_t n = n_fence_waiters, i;
	struct session **list = fence_waiters;

	if (!n)
		return;
	fence_waiters = NULL;
	n_fence_waiters = cap_fence_waiters = 0;
	for (i = 0; i < n; i++)
		list[i]->fence_wait = false;
	for (i = 0; i < n; i++)
		session_pump(list[i]);
	mem_free(list);
}

/*
 * QoS 2 to a persistent session: the packet id and the "sent" state are
 * committed before the PUBLISH goes out, so that after a crash the broker
 * resends exactly that PUBLISH (same id, DUP) and never the message under
 * a new id, which the client would take as a second message [MQTT-4.4.0-1].
 * QoS 1 takes the fast path: a crash in that instant can only cost a
 * duplicate, which QoS 1 allows.
 */
static void prepare_qos2(struct session *s, struct out_entry *e)
{
	e->packet_id = next_packet_id(s);
	e->prepared = true;
	e->state = OUT_PUBLISHED; /* what the store must hold: sent, with this id */
	save_entry(s, e);
	e->state = OUT_QUEUED;
	e->fence = store_fence();
}

/* Prepares every QoS 2 entry that fits in the window at once: one commit for all. */
static void prepare_window(struct session *s)
{
	uint16_t w = session_window(s);
	uint32_t room = s->inflight.n < w ? w - s->inflight.n : 0;
	struct out_entry *e;

	for (e = s->queue.head; e && room; e = e->next) {
		if (store_fenced(e->msg->fence))
			break;
		if (e->qos == 2 && !e->prepared && !e->sent_once)
			prepare_qos2(s, e);
		if (e->qos)
			room--;
	}
}

void session_pump(struct session *s)
{
	struct out_entry *head = s->queue.head;

	if (head && head->qos == 2 && !head->prepared && !head->sent_once && s->sid &&
	    s->conn && session_persistent(s))
		prepare_window(s);
	while (s->conn && s->conn->state == CONN_ACTIVE && s->queue.head) {
		struct out_entry *e = s->queue.head;

		if (wait_fence(s, e->msg->fence) || wait_fence(s, e->fence))
			break;
		if (e->qos && s->inflight.n >= session_window(s))
			break;
		list_remove(&s->queue, e);
		s->queued_bytes -= msg_size(e->msg);
		if (e->qos) {
			start_inflight(s, e);
			continue;
		}
		if (send_entry(s, e, false))
			count_drop(s, e->msg, 0, e->share, "expired or too large");
		entry_done(s, e);
	}
	load_disk_tail(s);
}

static bool queue_full(const struct session *s, const struct msg *m)
{
	const struct config *cfg = broker.cfg;

	if (cfg->max_queued_messages && s->queue.n + s->disk_n >= cfg->max_queued_messages)
		return true;
	return cfg->max_queued_bytes && s->queued_bytes + msg_size(m) > cfg->max_queued_bytes;
}

static int deliver_qos0(struct session *s, struct msg *m, bool retain, const uint32_t *subids,
			size_t n_subids)
{
	struct out_entry e;

	if (!s->conn || conn_backlog(s->conn) > QOS0_BACKLOG_LIMIT) {
		count_drop(s, m, 0, NULL, "client not keeping up");
		return 1;
	}
	memset(&e, 0, sizeof(e));
	e.msg = m;
	e.retain = retain;
	e.subid = n_subids ? subids[0] : 0;
	e.n_subids = (uint16_t)n_subids;
	e.more_subids = (uint32_t *)(n_subids > 1 ? subids + 1 : NULL);
	if (conn_send_publish(s->conn, &e, false)) {
		count_drop(s, m, 0, NULL, "expired or too large");
		return 1;
	}
	return 0;
}

int session_deliver(struct session *s, struct msg *m, uint8_t qos, bool retain,
		    const uint32_t *subids, size_t n_subids, const char *share)
{
	bool live = s->conn && s->conn->state == CONN_ACTIVE;
	struct out_entry *e;

	if (!qos && (live || !broker.cfg->queue_qos0_messages || s->clean)) {
		if (live && !s->queue.n && !store_fenced(m->fence))
			return deliver_qos0(s, m, retain, subids, n_subids);
		if (!live) {
			count_drop(s, m, 0, share, "client offline");
			return 1;
		}
	}
	if (!(live && !s->queue.n && (!qos || s->inflight.n < session_window(s))) && queue_full(s, m)) {
		count_drop(s, m, qos, share, "queue full (max_queued_messages / max_queued_bytes)");
		return SESSION_QUOTA;
	}
	e = entry_new(m, qos, retain, subids, n_subids, share);
	if (!e) {
		count_drop(s, m, qos, share, "out of memory");
		return -1;
	}
	e->seq = s->next_seq++;
	if (spill_to_disk(s, e))
		return SESSION_DELIVERED;
	list_append(&s->queue, e);
	s->queued_bytes += msg_size(m);
	if (session_persistent(s) && (qos || !live))
		save_entry(s, e);
	session_pump(s);
	return SESSION_DELIVERED;
}

/* --- acknowledgements ----------------------------------------------------- */

static struct out_entry *find_inflight(struct session *s, uint16_t packet_id)
{
	struct out_entry *e;

	for (e = s->inflight.head; e; e = e->next)
		if (e->packet_id == packet_id)
			return e;
	return NULL;
}

static void finish(struct session *s, struct out_entry *e)
{
	plugin_acked(s, e->msg, e->qos, e->share);
	list_remove(&s->inflight, e);
	entry_done(s, e);
	session_pump(s);
}

int session_on_puback(struct session *s, uint16_t packet_id)
{
	struct out_entry *e = find_inflight(s, packet_id);

	if (!e || e->qos != 1 || e->state != OUT_PUBLISHED)
		return -1;
	finish(s, e);
	return 0;
}

int session_on_pubrec(struct session *s, uint16_t packet_id, uint8_t reason)
{
	struct out_entry *e = find_inflight(s, packet_id);

	if (!e || e->qos != 2)
		return -1;
	if (reason >= 0x80) {
		/* The receiver refused it: the exchange ends here [MQTT-4.3.3-4]. */
		plugin_dropped(s, e->msg, e->qos, e->share, "refused by the client (PUBREC)");
		list_remove(&s->inflight, e);
		entry_done(s, e);
		session_pump(s);
		return 0;
	}
	e->state = OUT_RELEASED;
	save_entry(s, e);
	return 0;
}

int session_on_pubcomp(struct session *s, uint16_t packet_id)
{
	struct out_entry *e = find_inflight(s, packet_id);

	if (!e || e->state != OUT_RELEASED)
		return -1;
	finish(s, e);
	return 0;
}

/* --- incoming QoS 2 ------------------------------------------------------- */

bool session_rx_qos2_has(const struct session *s, uint16_t packet_id)
{
	uint32_t i;

	for (i = 0; i < s->n_rx_qos2; i++)
		if (s->rx_qos2[i] == packet_id)
			return true;
	return false;
}

int session_rx_qos2_add(struct session *s, uint16_t packet_id)
{
	if (s->n_rx_qos2 == s->cap_rx_qos2) {
		uint32_t cap = s->cap_rx_qos2 ? s->cap_rx_qos2 * 2 : 8;
		uint16_t *a;

		if (cap > 65536)
			cap = 65536;
		if (cap == s->cap_rx_qos2)
			return -1; /* every packet id is already waiting */
		a = mem_realloc(s->rx_qos2, (size_t)cap * sizeof(*a));
		if (!a)
			return -1;
		s->rx_qos2 = a;
		s->cap_rx_qos2 = cap;
	}
	s->rx_qos2[s->n_rx_qos2++] = packet_id;
	if (s->sid && session_persistent(s) && !restoring)
		store_rx_put(s->sid, packet_id);
	return 0;
}

int session_rx_qos2_del(struct session *s, uint16_t packet_id)
{
	uint32_t i;

	for (i = 0; i < s->n_rx_qos2; i++) {
		if (s->rx_qos2[i] == packet_id) {
			s->rx_qos2[i] = s->rx_qos2[--s->n_rx_qos2];
			if (s->sid)
				store_rx_del(s->sid, packet_id);
			return 0;
		}
	}
	return -1;
}

/* --- will ----------------------------------------------------------------- */

void session_set_will(struct session *s, struct msg *will, uint32_t delay)
{
	session_clear_will(s);
	s->will = will;
	s->will_delay = delay;
}

void session_clear_will(struct session *s)
{
	broker_timer_del(&s->will_timer);
	msg_unref(s->will);
	s->will = NULL;
}

static void publish_will(struct session *s)
{
	struct msg *will = s->will;

	if (!will)
		return;
	s->will = NULL;
	broker_timer_del(&s->will_timer);
	/*
	 * The will's Message Expiry Interval counts from its publication
	 * [MQTT-3.1.3.2.4]. Nothing else holds the will yet, so its deadline
	 * can still be set here.
	 */
	if (will->expiry_interval && will->refs == 1)
		will->expiry_wall_ms = clock_wall_ms() + (uint64_t)will->expiry_interval * 1000;
	log_info("client '%s': publishing will on '%s'", s->client_id, will->topic);
	plugin_route(will, 0);
	msg_unref(will);
}

static void on_will_delay(struct timer *t, void *arg)
{
	publish_will(arg);
}

/* --- lifecycle ------------------------------------------------------------ */

/*
 * After a reconnect the client may allow fewer messages in flight than we
 * had: the newest PUBLISHes beyond its window go back to the front of the
 * queue, keeping their packet ids, and are resent as slots free up
 * [MQTT-3.3.4-9]. PUBRELs stay: they release what the client already has.
 */
static void shrink_inflight(struct session *s)
{
	uint16_t w = session_window(s);
	struct out_entry *e = s->inflight.tail, *prev;

	for (; e && s->inflight.n > w; e = prev) {
		prev = e->prev;
		if (e->state != OUT_PUBLISHED)
			continue;
		list_remove(&s->inflight, e);
		e->state = OUT_QUEUED;
		e->next = s->queue.head;
		e->prev = NULL;
		if (s->queue.head)
			s->queue.head->prev = e;
		else
			s->queue.tail = e;
		s->queue.head = e;
		s->queue.n++;
		s->queued_bytes += msg_size(e->msg);
	}
}

static void resend_inflight(struct session *s)
{
	struct out_entry *e, *next;

	shrink_inflight(s);
	for (e = s->inflight.head; e; e = next) {
		next = e->next;
		if (e->state == OUT_RELEASED) {
			conn_send_ack(s->conn, MQTT_PUBREL, e->packet_id, 0, NULL);
			continue;
		}
		/* [MQTT-4.4.0-1] resend unacknowledged PUBLISH with DUP set. */
		if (send_entry(s, e, e->sent_once)) {
			list_remove(&s->inflight, e);
			count_drop(s, e->msg, e->qos, e->share, "too large for the client now");
			entry_done(s, e);
		}
	}
}

void session_attach(struct session *s, struct conn *c)
{
	s->conn = c;
	s->disconnected_wall = 0;
	broker_timer_del(&s->expiry_timer);
	/* A will waiting out its delay is not sent when the client is back [MQTT-3.1.3-9]. */
	session_clear_will(s);
	broker.stats.clients_connected++;
	if (broker.stats.clients_connected > broker.stats.clients_max)
		broker.stats.clients_max = broker.stats.clients_connected;
}

/* Called once the CONNACK is out: redeliver, then drain the queue. */
void session_resume(struct session *s)
{
	resend_inflight(s);
	session_pump(s);
}

static void on_expiry(struct timer *t, void *arg)
{
	struct session *s = arg;

	log_info("client '%s': session expired", s->client_id);
	session_destroy(s);
}

void session_detach(struct session *s, bool graceful)
{
	uint64_t now = clock_now_ms();

	s->conn = NULL;
	s->disconnected_wall = clock_wall_ms();
	broker.stats.clients_connected--;
	plugin_disconnect(s, graceful);
	/* A broker that is shutting down publishes no wills into dying connections. */
	if (graceful || broker.stopping)
		session_clear_will(s);
	if (s->expiry_interval == 0) {
		session_destroy(s);
		return;
	}
	if (s->will) {
		uint32_t delay = s->will_delay < s->expiry_interval ? s->will_delay
								    : s->expiry_interval;

		if (!delay)
			publish_will(s);
		else
			broker_timer_add(&s->will_timer, now + (uint64_t)delay * 1000);
	}
	if (s->expiry_interval != UINT32_MAX)
		broker_timer_add(&s->expiry_timer, now + (uint64_t)s->expiry_interval * 1000);
	/* The store learns when it went offline (expiry across restarts) and the will. */
	session_save(s);
}

static void unlink_session(struct session *s)
{
	struct session **pp = &table[hash_id(s->client_id) & (table_size - 1)];

	while (*pp && *pp != s)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = s->hnext;
	n_sessions--;
}

static void drop_list(struct session *s, struct out_list *l)
{
	struct out_entry *e;

	while ((e = l->head)) {
		list_remove(l, e);
		if (e->qos)
			plugin_dropped(s, e->msg, e->qos, e->share, "session ended");
		if (e->share && e->qos)
			router_reroute_shared(e->msg, e->qos, e->share, s);
		entry_free(e);
	}
}

void session_destroy(struct session *s)
{
	struct sub_rec *r;

	unlink_session(s);
	broker_timer_del(&s->expiry_timer);
	while ((r = s->subs)) {
		s->subs = r->next;
		router_unsubscribe(s, r->filter, strlen(r->filter));
		mem_free(r->filter);
		mem_free(r);
	}
	/* The session ends: a will still waiting for its delay goes now [MQTT-3.1.3-9];
	 * after the unsubscribes, so the dying session cannot receive its own will. */
	publish_will(s);
	drop_list(s, &s->inflight);
	drop_list(s, &s->queue);
	unwait_fence(s);
	plugin_session_gone(s);
	if (s->sid)
		store_session_del(s->sid); /* its subscriptions, deliveries and ids go with it */
	if (s->conn)
		conn_part_session(s->conn);
	mem_free(s->rx_qos2);
	mem_free(s);
}

void session_destroy_all(void)
{
	size_t i;

	for (i = 0; i < table_size; i++) {
		while (table[i]) {
			struct session *s = table[i];

			/* shutting down: wills of live sessions are not published */
			session_clear_will(s);
			session_destroy(s);
		}
	}
	mem_free(table);
	table = NULL;
	table_size = 0;
	mem_cache_drain(&entry_cache);
}

/* --- subscriptions -------------------------------------------------------- */

static struct sub_rec **find_sub(struct session *s, const char *filter, size_t len)
{
	struct sub_rec **pp;

	for (pp = &s->subs; *pp; pp = &(*pp)->next)
		if (strlen((*pp)->filter) == len && !memcmp((*pp)->filter, filter, len))
			return pp;
	return NULL;
}

int session_subscribe(struct session *s, const char *filter, size_t len, uint8_t options,
		      uint32_t subid, bool *existed)
{
	struct sub_rec **pp = find_sub(s, filter, len), *r;
	int ex = 0;

	if (router_subscribe(s, filter, len, options, subid, &ex))
		return -1;
	*existed = ex;
	if (pp) {
		(*pp)->options = options;
		(*pp)->subid = subid;
		if (s->sid && session_persistent(s))
			store_sub_put(s->sid, (*pp)->filter, options, subid);
		return 0;
	}
	r = mem_calloc(1, sizeof(*r));
	if (!r || !(r->filter = mem_strndup(filter, len))) {
		mem_free(r);
		router_unsubscribe(s, filter, len);
		return -1;
	}
	r->options = options;
	r->subid = subid;
	r->next = s->subs;
	s->subs = r;
	s->n_subs++;
	if (s->sid && session_persistent(s) && !restoring)
		store_sub_put(s->sid, r->filter, options, subid);
	return 0;
}

int session_unsubscribe(struct session *s, const char *filter, size_t len)
{
	struct sub_rec **pp = find_sub(s, filter, len), *r;

	if (!pp)
		return -1;
	r = *pp;
	*pp = r->next;
	s->n_subs--;
	router_unsubscribe(s, filter, len);
	if (s->sid)
		store_sub_del(s->sid, r->filter);
	mem_free(r->filter);
	mem_free(r);
	return 0;
}

/* --- restore ------------------------------------------------------------------ */

/*
 * Sessions come back from the store offline, in sid order; their rows
 * (subscriptions, deliveries, QoS 2 ids) then find them by sid through
 * `restored`, a sorted array that lives only during the restore. Nothing is
 * written back while restoring: the store already holds it.
 */
static struct session **restored;
static size_t n_restored;

static struct session *restored_sid(uint64_t sid)
{
	size_t lo = 0, hi = n_restored;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (restored[mid]->sid == sid)
			return restored[mid];
		if (restored[mid]->sid < sid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int restore_session(const struct store_session_row *r, void *arg)
{
	struct session **a, *s;

	a = mem_realloc(restored, (n_restored + 1) * sizeof(*a));
	if (!a || !(s = session_create(r->client_id, r->version))) {
		msg_unref(r->will);
		if (a)
			restored = a;
		return -1;
	}
	restored = a;
	restored[n_restored++] = s;
	s->sid = r->sid;
	if (r->sid > max_sid)
		max_sid = r->sid;
	s->expiry_interval = r->expiry_interval;
	s->clean = false;
	s->next_seq = r->next_seq;
	s->disconnected_wall = r->disconnected_wall;
	s->will = r->will;
	s->will_delay = r->will_delay;
	return 0;
}

static int restore_sub(uint64_t sid, const char *filter, uint8_t options, uint32_t subid,
		       void *arg)
{
	struct session *s = restored_sid(sid);
	bool existed;

	return s ? session_subscribe(s, filter, strlen(filter), options, subid, &existed) : 0;
}

static int restore_delivery(uint64_t sid, const struct store_delivery_row *r, void *arg)
{
	struct session *s = restored_sid(sid);
	struct out_entry *e;

	if (!s) {
		msg_unref(r->msg);
		return 0;
	}
	e = entry_new(r->msg, r->qos, r->retain, r->subids, r->n_subids, r->share);
	msg_unref(r->msg); /* entry_new took its own */
	if (!e)
		return -1;
	e->seq = r->seq;
	e->stored = true;
	e->state = r->state;
	e->packet_id = r->packet_id;
	s->ids_free = 0; /* ids in use came from outside next_packet_id */
	e->sent_once = r->state != OUT_QUEUED;
	if (r->seq >= s->next_seq)
		s->next_seq = r->seq + 1;
	if (e->state == OUT_QUEUED) {
		list_append(&s->queue, e);
		s->queued_bytes += msg_size(e->msg);
	} else {
		list_append(&s->inflight, e);
	}
	return 0;
}

static int restore_on_disk(uint64_t sid, uint64_t first_seq, uint64_t count, void *arg)
{
	struct session *s = restored_sid(sid);

	if (s) {
		s->disk_first_seq = first_seq;
		s->disk_n = count;
		if (first_seq + count > s->next_seq)
			s->next_seq = first_seq + count;
	}
	return 0;
}

static int restore_rx(uint64_t sid, uint16_t packet_id, void *arg)
{
	struct session *s = restored_sid(sid);

	return s ? session_rx_qos2_add(s, packet_id) : 0;
}

void session_restore_ops(struct store_restore_ops *ops)
{
	restoring = true;
	ops->session = restore_session;
	ops->sub = restore_sub;
	ops->delivery = restore_delivery;
	ops->on_disk = restore_on_disk;
	ops->rx_qos2 = restore_rx;
	ops->in_memory = broker.cfg->max_queued_in_memory;
}

/*
 * The broker was down from heartbeat_wall on. A session that was connected
 * then lost its connection at that moment, abnormally: its will is due
 * after its delay. Session expiry counts the time the broker was down.
 */
static void resume_offline(struct session *s, uint64_t heartbeat_wall, uint64_t now_wall)
{
	uint64_t gone = s->disconnected_wall ? s->disconnected_wall : heartbeat_wall;
	uint64_t elapsed = now_wall > gone ? now_wall - gone : 0, now = clock_now_ms();

	s->disconnected_wall = gone;
	if (s->expiry_interval != UINT32_MAX &&
	    elapsed >= (uint64_t)s->expiry_interval * 1000) {
		log_info("client '%s': session expired while the broker was down", s->client_id);
		session_destroy(s); /* publishes the will, if any */
		return;
	}
	if (s->expiry_interval != UINT32_MAX)
		broker_timer_add(&s->expiry_timer,
				 now + (uint64_t)s->expiry_interval * 1000 - elapsed);
	if (s->will) {
		uint64_t delay = (uint64_t)(s->will_delay < s->expiry_interval ? s->will_delay
									 : s->expiry_interval) *
				 1000;

		if (elapsed >= delay)
			publish_will(s);
		else
			broker_timer_add(&s->will_timer, now + delay - elapsed);
	}
}

void session_restore_finish(uint64_t heartbeat_wall)
{
	uint64_t now_wall = clock_wall_ms();
	size_t i, n = n_restored;
	struct session **list = restored;

	restoring = false;
	restored = NULL;
	n_restored = 0;
	if (!heartbeat_wall)
		heartbeat_wall = now_wall;
	for (i = 0; i < n; i++)
		resume_offline(list[i], heartbeat_wall, now_wall);
	if (n)
		log_notice("store: %zu persistent session(s) restored", session_count());
	mem_free(list);
}
