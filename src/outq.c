/*
 * outq.c - a session's outgoing window and queue, its packet ids, and what
 * of them is kept in the store. Loop thread only.
 *
 * Invariants:
 * - every QoS 1/2 entry in `inflight` has a packet id unique among them, and
 *   the list is in the order the PUBLISHes were first sent;
 * - `queue` holds entries in arrival order; nothing is sent out of it while
 *   earlier entries wait (QoS 0 entries in it are ones kept for an offline
 *   session, or waiting for a fence, and go out in their turn);
 * - with a disk tail (disk_n > 0) every entry in memory comes before every
 *   entry on disk, so reading the tail back keeps the order;
 * - q->load is set exactly while a read of the tail is on its way; a queue
 *   freed meanwhile detaches it, so the answer finds no queue and is dropped.
 *
 * Persistence: in a durable queue every change that must survive a restart
 * is queued for the store as it happens: each delivery (with its state and
 * packet id) and each incoming QoS 2 id. The store commits them in order;
 * acknowledgements to clients wait for that commit elsewhere (proto_ack).
 *
 * Drops are never silent: each one is counted in base.stats, reported as a
 * dropped event, and a QoS 1/2 drop is logged with the client id. QoS 0 to
 * a live client is dropped while more than max_qos0_backlog of output waits
 * for it, and past memory_limit while more than PRESSURE_QOS0_BACKLOG does.
 */
#include "outq.h"

#include <string.h>

#include "base.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "store.h"
#include "topic.h"

/* What the layer above is told (outq_set_events); the no-ops until then. */
static void no_acked(struct session *o, struct msg *m, uint8_t q, const char *sh, uint8_t r)
{
}

static void no_dropped(struct session *o, struct msg *m, uint8_t q, const char *sh, const char *w)
{
}

static void no_orphaned(struct session *o, struct msg *m, uint8_t q, const char *sh)
{
}

static void no_refilled(struct outq *q)
{
}

static void no_room(struct session *o)
{
}

static void no_received(struct session *o, struct msg *m, const char *sh)
{
}

static const struct outq_events no_events = { no_acked,	   no_dropped, no_orphaned,
					      no_refilled, no_room,    no_received };
static const struct outq_events *events = &no_events;

/* Queues whose head waits for a commit (fenced QoS 2 messages). */
static struct outq **fence_waiters;
static size_t n_fence_waiters, cap_fence_waiters;
/*
 * max_qos0_backlog while the broker is over memory_limit: enough for a
 * burst of small messages ($SYS's) to a client that reads, too little for
 * a thousand that do not to hold much.
 */
#define PRESSURE_QOS0_BACKLOG (64 * 1024)
/* Every delivery is an out_entry: freed ones are kept for the next. */
static struct mem_cache entry_cache = MEM_CACHE(sizeof(struct out_entry), 4096);

/* A read of a disk tail on its way: q is NULL once the queue is gone. */
struct tail_load {
	struct outq *q;
};

void outq_set_events(const struct outq_events *ev)
{
	events = ev ? ev : &no_events;
}

void outq_init(struct outq *q, struct session *owner, const char *client_id)
{
	memset(q, 0, sizeof(*q));
	q->owner = owner;
	q->client_id = client_id;
	q->next_packet_id = 1;
	q->next_seq = 1; /* seq 0 means none in the store */
}

/* --- entries -------------------------------------------------------------- */

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

static void list_push_front(struct out_list *l, struct out_entry *e)
{
	e->prev = NULL;
	e->next = l->head;
	if (l->head)
		l->head->prev = e;
	else
		l->tail = e;
	l->head = e;
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
	if (e->lent_sid) /* the delivery is over: its group's copy goes */
		store_delivery_del(e->lent_sid, e->lent_seq, e->msg->id);
	msg_unref(e->msg);
	mem_free(e->more_subids);
	mem_free(e->share);
	mem_cache_free(&entry_cache, e);
}

static struct out_entry *entry_new(struct msg *m, uint8_t qos, bool retain, const uint32_t *subids,
				   size_t n_subids, const char *share)
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
		size_t n = topic_share_key_size(share);

		e->share = mem_alloc(n);
		if (!e->share)
			goto fail;
		memcpy(e->share, share, n);
	}
	e->subid = n_subids ? subids[0] : 0;
	e->n_subids = (uint16_t)n_subids;
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

uint16_t outq_window(const struct outq *q)
{
	uint16_t w = base.cfg->max_inflight_messages;

	if (q->conn && q->conn->client_receive_max < w)
		w = q->conn->client_receive_max;
	return w;
}

static bool live(const struct outq *q)
{
	return q->conn && q->conn->state == CONN_ACTIVE;
}

bool outq_ready(const struct outq *q)
{
	return live(q) && !q->disk_n && q->inflight.n + q->queue.n < outq_window(q);
}

uint32_t outq_inflight(const struct outq *q)
{
	return q->inflight.n;
}

uint64_t outq_queued(const struct outq *q)
{
	return q->queue.n + q->disk_n;
}

/* The store's view of an entry (subscription ids made contiguous). */
static void entry_row(const struct out_entry *e, struct store_delivery_row *r, uint32_t *ids)
{
	memset(r, 0, sizeof(*r));
	r->seq = e->seq;
	r->msg = e->msg;
	r->qos = e->qos;
	r->state = e->state;
	r->retain = e->retain;
	r->packet_id = e->packet_id;
	r->share = e->share;
	r->n_subids = e->n_subids;
	if (e->n_subids > 1) {
		ids[0] = e->subid;
		memcpy(ids + 1, e->more_subids, (e->n_subids - 1) * sizeof(uint32_t));
		r->subids = ids;
	} else {
		r->subids = &e->subid;
	}
}

static void put_row(struct outq *q, const struct out_entry *e)
{
	struct store_delivery_row r;
	uint32_t small[8], *ids = e->n_subids <= 8 ? small : mem_alloc(e->n_subids * 4u);

	if (!ids) {
		log_err("client '%s': out of memory storing a delivery", q->client_id);
		return;
	}
	entry_row(e, &r, ids);
	store_delivery_put(q->sid, &r);
	if (ids != small)
		mem_free(ids);
}

/* Writes e's delivery row, or its new state when it already has one. */
static void save_entry(struct outq *q, struct out_entry *e)
{
	if (!q->sid || !q->durable)
		return;
	if (e->stored) {
		store_delivery_update(q->sid, e->seq, e->state, e->packet_id);
		return;
	}
	put_row(q, e);
	e->stored = true;
}

/* An entry leaves the queue: its row goes too. */
static void entry_done(struct outq *q, struct out_entry *e)
{
	if (e->stored && q->sid)
		store_delivery_del(q->sid, e->seq, e->msg->id);
	entry_free(e);
}

/* --- packet ids ----------------------------------------------------------- */

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
static uint16_t free_ids_from(const struct outq *q, uint16_t from)
{
	const struct out_entry *e;
	uint32_t best = 65535;

	for (e = q->inflight.head; e; e = e->next)
		if (e->packet_id && id_gap(e->packet_id, from) < best)
			best = id_gap(e->packet_id, from);
	for (e = q->queue.head; e && (e->sent_once || e->prepared); e = e->next)
		if (e->packet_id && id_gap(e->packet_id, from) < best)
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
static uint16_t next_packet_id(struct outq *q)
{
	uint16_t id;

	while (!q->ids_free) {
		q->ids_free = free_ids_from(q, q->next_packet_id);
		if (!q->ids_free)
			q->next_packet_id = id_after(q->next_packet_id);
	}
	id = q->next_packet_id;
	q->next_packet_id = id_after(id);
	q->ids_free--;
	return id;
}

/* --- sending -------------------------------------------------------------- */

static void count_drop(struct outq *q, struct msg *m, uint8_t qos, const char *share,
		       enum drop_cause cause, const char *why)
{
	events->dropped(q->owner, m, qos, share, why);
	base.stats.pub_dropped++;
	base.stats.dropped[cause]++;
	if (!qos) {
		base.stats.qos0_dropped++;
		return;
	}
	log_warn("client '%s': QoS %u message on '%s' dropped: %s", q->client_id, qos, m->topic,
		 why);
}

static int send_publish(struct outq *q, const struct out_entry *e, bool dup)
{
	struct conn_publish p = { e->msg,      e->qos,	 e->retain,	e->packet_id,
				  e->n_subids, e->subid, e->more_subids };

	return conn_send_publish(q->conn, &p, dup);
}

/* Sends e. Returns 0 sent, 1 not sendable (expired, too large), -1 out of memory. */
static int send_entry(struct outq *q, struct out_entry *e, bool dup)
{
	int rc = send_publish(q, e, dup);

	if (rc == 0)
		e->sent_once = true;
	return rc;
}

/*
 * Puts e in flight and sends it. Returns 0, or -1 when there was no memory
 * to write it: e is back at the head of the queue, for the next pump.
 */
static int start_inflight(struct outq *q, struct out_entry *e)
{
	int rc;

	/* An entry sent before (put back by shrink_inflight) or prepared keeps its id. */
	if (!e->packet_id)
		e->packet_id = next_packet_id(q);
	e->state = OUT_PUBLISHED;
	list_append(&q->inflight, e);
	rc = send_entry(q, e, e->sent_once);
	if (rc < 0) {
		list_remove(&q->inflight, e);
		e->state = OUT_QUEUED;
		list_push_front(&q->queue, e);
		q->queued_bytes += msg_size(e->msg);
		log_warn("client '%s': out of memory sending a QoS %u message; it waits in the "
			 "queue",
			 q->client_id, e->qos);
		return -1;
	}
	if (rc) {
		list_remove(&q->inflight, e);
		count_drop(q, e->msg, e->qos, e->share, DROP_TOO_LARGE,
			   "expired or too large for the client");
		entry_done(q, e);
		return 0;
	}
	if (!e->prepared) /* a prepared entry's row already says sent, with this id */
		save_entry(q, e);
	return 0;
}

/* --- the disk tail -------------------------------------------------------- */

/*
 * Disk-backed queues: once a durable queue has max_queued_in_memory entries
 * waiting (or already has a tail on disk, which keeps the order), new
 * entries are written to the store only. The tail is read back in order,
 * half a window at a time, as the client drains the queue.
 */
static bool spill_to_disk(struct outq *q, struct out_entry *e)
{
	if (!q->sid || !q->durable || e->lent_sid)
		return false;
	if (!q->disk_n && q->queue.n < base.cfg->max_queued_in_memory)
		return false;
	put_row(q, e);
	if (!q->disk_n)
		q->disk_first_seq = e->seq;
	q->disk_n++;
	entry_free(e);
	return true;
}

static void take_rows(struct outq *q, const struct store_delivery_row *rows, size_t n)
{
	size_t i;

	for (i = 0; i < n && q->disk_n; i++) {
		const struct store_delivery_row *r = &rows[i];
		struct out_entry *e = entry_new(r->msg, r->qos, r->retain, r->subids, r->n_subids,
						r->share);

		if (!e)
			break;
		e->seq = r->seq;
		e->stored = true;
		list_append(&q->queue, e);
		q->queued_bytes += msg_size(r->msg);
		q->disk_first_seq = r->seq + 1;
		q->disk_n--;
	}
	if (!n)
		q->disk_n = 0; /* the store has nothing more: the count was stale */
}

static void on_tail_loaded(void *arg, int status, const struct store_delivery_row *rows, size_t n)
{
	struct tail_load *l = arg;
	struct outq *q = l->q;

	mem_free(l);
	if (!q)
		return; /* the session ended meanwhile */
	q->load = NULL;
	if (status) {
		log_err("client '%s': reading its queue back from the store failed (%d)",
			q->client_id, status);
		return;
	}
	take_rows(q, rows, n);
	if (q->group)
		events->refilled(q);
	else
		outq_pump(q);
}

static void load_disk_tail(struct outq *q)
{
	uint32_t window = base.cfg->max_queued_in_memory;

	if (!q->disk_n || q->load || (!q->conn && !q->group) || q->queue.n > window / 2)
		return;
	q->load = mem_alloc(sizeof(*q->load));
	if (!q->load)
		return; /* tried again at the next pump */
	q->load->q = q;
	store_load_deliveries(q->sid, q->disk_first_seq, window - q->queue.n, on_tail_loaded,
			      q->load);
}

/* --- commit fences -------------------------------------------------------- */

/*
 * A message published at QoS 2 goes out only once the batch recording it
 * (its packet id, its deliveries) is committed: after a crash before that
 * commit the publisher resends it, and subscribers must not then see it
 * twice [MQTT-4.3.3]. Until then it waits at the head of the queue.
 */
static bool wait_fence(struct outq *q, uint64_t fence)
{
	if (!store_fenced(fence))
		return false;
	if (!q->fence_wait) {
		if (n_fence_waiters == cap_fence_waiters) {
			size_t cap = cap_fence_waiters ? cap_fence_waiters * 2 : 16;
			struct outq **a = mem_realloc(fence_waiters, cap * sizeof(*a));

			if (!a)
				return false; /* cannot wait: send now rather than stall */
			fence_waiters = a;
			cap_fence_waiters = cap;
		}
		fence_waiters[n_fence_waiters++] = q;
		q->fence_wait = true;
	}
	return true;
}

static void unwait_fence(struct outq *q)
{
	size_t i;

	if (!q->fence_wait)
		return;
	for (i = 0; i < n_fence_waiters; i++)
		if (fence_waiters[i] == q)
			fence_waiters[i] = fence_waiters[--n_fence_waiters];
	q->fence_wait = false;
}

/* store commit hook: queues waiting on a fence go on. */
static void on_commit(void)
{
	size_t n = n_fence_waiters, i;
	struct outq **list = fence_waiters;

	if (!n)
		return;
	fence_waiters = NULL;
	n_fence_waiters = cap_fence_waiters = 0;
	for (i = 0; i < n; i++)
		list[i]->fence_wait = false;
	for (i = 0; i < n; i++)
		outq_pump(list[i]);
	mem_free(list);
}

void outq_start(void)
{
	store_set_commit_hook(on_commit);
}

/*
 * QoS 2 to a durable queue: the packet id and the "sent" state are
 * committed before the PUBLISH goes out, so that after a crash the broker
 * resends exactly that PUBLISH (same id, DUP) and never the message under
 * a new id, which the client would take as a second message [MQTT-4.4.0-1].
 * QoS 1 takes the fast path: a crash in that instant can only cost a
 * duplicate, which QoS 1 allows.
 */
static void prepare_qos2(struct outq *q, struct out_entry *e)
{
	e->packet_id = next_packet_id(q);
	e->prepared = true;
	e->state = OUT_PUBLISHED; /* what the store must hold: sent, with this id */
	save_entry(q, e);
	e->state = OUT_QUEUED;
	e->fence = store_fence();
}

/* Prepares every QoS 2 entry that fits in the window at once: one commit for all. */
static void prepare_window(struct outq *q)
{
	uint16_t w = outq_window(q);
	uint32_t room = q->inflight.n < w ? w - q->inflight.n : 0;
	struct out_entry *e;

	for (e = q->queue.head; e && room; e = e->next) {
		if (store_fenced(e->msg->fence))
			break;
		if (e->qos == 2 && !e->prepared && !e->sent_once)
			prepare_qos2(q, e);
		if (e->qos)
			room--;
	}
}

/*
 * A QoS 2 message sent to a member is that member's alone [MQTT-4.8.2-5]:
 * its group's stored copy goes before the PUBLISH does, so that a crash
 * never gives it to another member after this one may have it.
 */
static void give_back_copy(struct out_entry *e)
{
	store_delivery_del(e->lent_sid, e->lent_seq, e->msg->id);
	e->lent_sid = e->lent_seq = 0;
	e->fence = store_fence();
}

/* A QoS 2 entry of a durable queue not yet prepared (its id not yet stored as sent). */
static bool needs_prepare(const struct outq *q, const struct out_entry *e)
{
	return e->qos == 2 && !e->prepared && !e->sent_once && q->sid && q->durable;
}

void outq_pump(struct outq *q)
{
	while (live(q) && q->queue.head) {
		struct out_entry *e = q->queue.head;

		if (wait_fence(q, e->msg->fence))
			break;
		/* Whatever went before it, a QoS 2 entry goes out only once prepared. */
		if (needs_prepare(q, e))
			prepare_window(q);
		if (e->qos == 2 && e->lent_sid && !e->sent_once)
			give_back_copy(e);
		if (wait_fence(q, e->fence))
			break;
		if (e->qos && q->inflight.n >= outq_window(q))
			break;
		list_remove(&q->queue, e);
		q->queued_bytes -= msg_size(e->msg);
		if (e->qos) {
			if (start_inflight(q, e))
				break;
			continue;
		}
		if (send_entry(q, e, false))
			count_drop(q, e->msg, 0, e->share, DROP_TOO_LARGE,
				   "expired, too large or out of memory");
		entry_done(q, e);
	}
	load_disk_tail(q);
}

/* --- delivering ----------------------------------------------------------- */

static bool queue_full(const struct outq *q, const struct msg *m)
{
	const struct config *cfg = base.cfg;
	uint64_t most = q->group ? config_group_max_messages(cfg) : cfg->max_queued_messages;
	uint64_t bytes = q->group ? config_group_max_bytes(cfg) : cfg->max_queued_bytes;

	if (most && q->queue.n + q->disk_n >= most)
		return true;
	return bytes && q->queued_bytes + msg_size(m) > bytes;
}

static int deliver_qos0(struct outq *q, struct msg *m, bool retain, const uint32_t *subids,
			size_t n_subids)
{
	struct conn_publish p = { m,
				  0,
				  retain,
				  0,
				  (uint16_t)n_subids,
				  n_subids ? subids[0] : 0,
				  n_subids > 1 ? subids + 1 : NULL };
	size_t backlog = q->conn ? conn_backlog(q->conn) : 0;

	/* max_qos0_backlog: QoS 0 for a live client is dropped while this much output waits */
	if (!q->conn || backlog > base.cfg->max_qos0_backlog) {
		count_drop(q, m, 0, NULL, DROP_SLOW_CLIENT, "client not keeping up");
		return OUTQ_DROPPED;
	}
	/* Past memory_limit, a client whose output lags gets no more (one that reads still does). */
	if (backlog > PRESSURE_QOS0_BACKLOG && mem_over_limit()) {
		base.stats.mem_dropped++;
		count_drop(q, m, 0, NULL, DROP_MEMORY, "memory_limit reached");
		return OUTQ_DROPPED;
	}
	if (conn_send_publish(q->conn, &p, false)) {
		count_drop(q, m, 0, NULL, DROP_TOO_LARGE, "expired or too large");
		return OUTQ_DROPPED;
	}
	return OUTQ_DELIVERED;
}

int outq_deliver(struct outq *q, struct msg *m, uint8_t qos, bool retain, const uint32_t *subids,
		 size_t n_subids, const char *share)
{
	return outq_deliver_lent(q, m, qos, retain, subids, n_subids, share, 0, 0);
}

int outq_deliver_lent(struct outq *q, struct msg *m, uint8_t qos, bool retain,
		      const uint32_t *subids, size_t n_subids, const char *share, uint64_t lent_sid,
		      uint64_t lent_seq)
{
	bool on = live(q);
	struct out_entry *e;

	if (!qos && (on || !base.cfg->queue_qos0_messages || q->clean)) {
		if (on && !q->queue.n && !store_fenced(m->fence))
			return deliver_qos0(q, m, retain, subids, n_subids);
		if (!on) {
			count_drop(q, m, 0, share, DROP_OFFLINE, "client offline");
			return OUTQ_DROPPED;
		}
	}
	if (!(on && !q->queue.n && (!qos || q->inflight.n < outq_window(q))) && queue_full(q, m)) {
		count_drop(q, m, qos, share, DROP_QUEUE_FULL,
			   "queue full (max_queued_messages / max_queued_bytes)");
		return OUTQ_QUOTA;
	}
	e = entry_new(m, qos, retain, subids, n_subids, share);
	if (!e) {
		count_drop(q, m, qos, share, DROP_OUT_OF_MEMORY, "out of memory");
		return -1;
	}
	e->seq = q->next_seq++;
	e->lent_sid = lent_sid;
	e->lent_seq = lent_seq;
	if (spill_to_disk(q, e))
		return OUTQ_DELIVERED;
	list_append(&q->queue, e);
	q->queued_bytes += msg_size(m);
	if (q->durable && (qos || !on))
		save_entry(q, e);
	outq_pump(q);
	return OUTQ_DELIVERED;
}

/* --- group queues -------------------------------------------------------- */

void outq_store_all(struct outq *q)
{
	struct out_entry *e;

	for (e = q->queue.head; e; e = e->next)
		save_entry(q, e);
}

struct msg *outq_take(struct outq *q, uint8_t *qos)
{
	struct out_entry *e = q->queue.head;
	struct msg *m = NULL;

	if (e) {
		list_remove(&q->queue, e);
		q->queued_bytes -= msg_size(e->msg);
		*qos = e->qos;
		m = msg_ref(e->msg);
		entry_done(q, e);
	}
	load_disk_tail(q);
	return m;
}

/* The seq before every entry of the queue: memory entries come before the disk tail. */
static uint64_t front_seq(const struct outq *q)
{
	if (q->queue.head)
		return q->queue.head->seq - 1;
	return (q->disk_n ? q->disk_first_seq : q->next_seq) - 1;
}

int outq_push_front(struct outq *q, struct msg *m, uint8_t qos, const char *share)
{
	struct out_entry *e = entry_new(m, qos, false, NULL, 0, share);

	if (!e) {
		count_drop(q, m, qos, share, DROP_OUT_OF_MEMORY, "out of memory");
		return -1;
	}
	e->seq = front_seq(q);
	list_push_front(&q->queue, e);
	q->queued_bytes += msg_size(m);
	if (q->durable)
		save_entry(q, e);
	return OUTQ_DELIVERED;
}

/* --- acknowledgements ----------------------------------------------------- */

static struct out_entry *find_inflight(struct outq *q, uint16_t packet_id)
{
	struct out_entry *e;

	for (e = q->inflight.head; e; e = e->next)
		if (e->packet_id == packet_id)
			return e;
	return NULL;
}

/* The exchange of e ended with the client's reason code: the slot frees up. */
static void finish(struct outq *q, struct out_entry *e, uint8_t reason)
{
	events->acked(q->owner, e->msg, e->qos, e->share, reason);
	list_remove(&q->inflight, e);
	entry_done(q, e);
	outq_pump(q);
	if (outq_ready(q))
		events->room(q->owner);
}

int outq_on_puback(struct outq *q, uint16_t packet_id, uint8_t reason)
{
	struct out_entry *e = find_inflight(q, packet_id);

	if (!e || e->qos != 1 || e->state != OUT_PUBLISHED)
		return -1;
	finish(q, e, reason);
	return 0;
}

int outq_on_pubrec(struct outq *q, uint16_t packet_id, uint8_t reason)
{
	struct out_entry *e = find_inflight(q, packet_id);

	if (!e || e->qos != 2)
		return -1;
	if (reason >= 0x80) {
		/* The receiver refused it: the exchange ends here [MQTT-4.3.3-4]. */
		finish(q, e, reason);
		return 0;
	}
	e->state = OUT_RELEASED;
	save_entry(q, e);
	events->received(q->owner, e->msg, e->share);
	return 0;
}

int outq_on_pubcomp(struct outq *q, uint16_t packet_id)
{
	struct out_entry *e = find_inflight(q, packet_id);

	if (!e || e->state != OUT_RELEASED)
		return -1;
	finish(q, e, MQTT_RC_SUCCESS);
	return 0;
}

/* --- incoming QoS 2 ------------------------------------------------------- */

bool outq_rx_has(const struct outq *q, uint16_t packet_id)
{
	uint32_t i;

	for (i = 0; i < q->n_rx_qos2; i++)
		if (q->rx_qos2[i] == packet_id)
			return true;
	return false;
}

static int rx_push(struct outq *q, uint16_t packet_id)
{
	if (q->n_rx_qos2 == q->cap_rx_qos2) {
		uint32_t cap = q->cap_rx_qos2 ? q->cap_rx_qos2 * 2 : 8;
		uint16_t *a;

		if (cap > 65536)
			cap = 65536;
		if (cap == q->cap_rx_qos2)
			return -1; /* every packet id is already waiting */
		a = mem_realloc(q->rx_qos2, (size_t)cap * sizeof(*a));
		if (!a)
			return -1;
		q->rx_qos2 = a;
		q->cap_rx_qos2 = cap;
	}
	q->rx_qos2[q->n_rx_qos2++] = packet_id;
	return 0;
}

int outq_rx_add(struct outq *q, uint16_t packet_id)
{
	if (rx_push(q, packet_id))
		return -1;
	if (q->sid && q->durable)
		store_rx_put(q->sid, packet_id);
	return 0;
}

int outq_rx_del(struct outq *q, uint16_t packet_id)
{
	uint32_t i;

	for (i = 0; i < q->n_rx_qos2; i++) {
		if (q->rx_qos2[i] == packet_id) {
			q->rx_qos2[i] = q->rx_qos2[--q->n_rx_qos2];
			if (q->sid)
				store_rx_del(q->sid, packet_id);
			return 0;
		}
	}
	return -1;
}

uint32_t outq_rx_count(const struct outq *q)
{
	return q->n_rx_qos2;
}

/* --- reconnect ------------------------------------------------------------ */

/*
 * After a reconnect the client may allow fewer messages in flight than we
 * had: the newest PUBLISHes beyond its window go back to the front of the
 * queue, keeping their packet ids, and are resent as slots free up
 * [MQTT-3.3.4-9]. PUBRELs stay: they release what the client already has.
 */
static void shrink_inflight(struct outq *q)
{
	uint16_t w = outq_window(q);
	struct out_entry *e = q->inflight.tail, *prev;

	for (; e && q->inflight.n > w; e = prev) {
		prev = e->prev;
		if (e->state != OUT_PUBLISHED)
			continue;
		list_remove(&q->inflight, e);
		e->state = OUT_QUEUED;
		list_push_front(&q->queue, e);
		q->queued_bytes += msg_size(e->msg);
	}
}

static void resend_inflight(struct outq *q)
{
	struct out_entry *e, *next;

	shrink_inflight(q);
	for (e = q->inflight.head; e; e = next) {
		next = e->next;
		if (e->state == OUT_RELEASED) {
			conn_send_ack(q->conn, MQTT_PUBREL, e->packet_id, 0, NULL);
			continue;
		}
		if (!e->packet_id) { /* sent before a crash, its id not stored (restore) */
			e->packet_id = next_packet_id(q);
			save_entry(q, e);
		}
		/* [MQTT-4.4.0-1] resend unacknowledged PUBLISH with DUP set; one
		 * that finds no memory stays in flight, resent at the next reconnect. */
		if (send_entry(q, e, e->sent_once) > 0) {
			list_remove(&q->inflight, e);
			count_drop(q, e->msg, e->qos, e->share, DROP_TOO_LARGE,
				   "too large for the client now");
			entry_done(q, e);
		}
	}
}

void outq_resume(struct outq *q)
{
	resend_inflight(q);
	outq_pump(q);
	if (outq_ready(q))
		events->room(q->owner);
}

/* --- the end -------------------------------------------------------------- */

/*
 * From the tail: an orphaned delivery goes back to the front of its
 * group's queue, so handing them over newest first keeps their order.
 */
static void drop_list(struct outq *q, struct out_list *l)
{
	struct out_entry *e;

	while ((e = l->tail)) {
		list_remove(l, e);
		/* A QoS 2 message already sent to this member is its alone: no
		 * other member may get it [MQTT-4.8.2-5]; the rest may move. */
		if (e->share && e->qos && !(e->qos == 2 && e->sent_once))
			events->orphaned(q->owner, e->msg, e->qos, e->share);
		else if (e->qos)
			events->dropped(q->owner, e->msg, e->qos, e->share, "session ended");
		entry_free(e);
	}
}

/*
 * From the tail, like drop_list: the unacknowledged deliveries of group
 * share in l go back to the group, its QoS 2 messages already sent
 * excepted (this member's alone [MQTT-4.8.2-5]). A late PUBACK of one
 * that was in flight finds no entry and is ignored.
 */
static void orphan_list(struct outq *q, struct out_list *l, const char *share, size_t size,
			bool queued)
{
	struct out_entry *e, *prev;

	for (e = l->tail; e; e = prev) {
		prev = e->prev;
		if (!e->share || !e->qos || (e->qos == 2 && e->sent_once) ||
		    topic_share_key_size(e->share) != size || memcmp(e->share, share, size))
			continue;
		list_remove(l, e);
		if (queued)
			q->queued_bytes -= msg_size(e->msg);
		events->orphaned(q->owner, e->msg, e->qos, e->share);
		entry_done(q, e);
	}
}

void outq_orphan_share(struct outq *q, const char *share)
{
	size_t size = topic_share_key_size(share);

	orphan_list(q, &q->queue, share, size, true);
	orphan_list(q, &q->inflight, share, size, false);
	outq_pump(q);
}

void outq_drop_all(struct outq *q)
{
	drop_list(q, &q->queue);
	drop_list(q, &q->inflight);
}

static void free_list(struct out_list *l)
{
	struct out_entry *e;

	while ((e = l->head)) {
		list_remove(l, e);
		entry_free(e);
	}
}

void outq_free(struct outq *q)
{
	free_list(&q->inflight);
	free_list(&q->queue);
	unwait_fence(q);
	if (q->load)
		q->load->q = NULL;
	q->load = NULL;
	mem_free(q->rx_qos2);
	q->rx_qos2 = NULL;
	q->n_rx_qos2 = q->cap_rx_qos2 = 0;
}

void outq_drain_caches(void)
{
	mem_cache_drain(&entry_cache);
}

/* --- restore -------------------------------------------------------------- */

/*
 * Rows come back in seq order, which is the order they were first sent
 * in. A QoS 1 entry's "sent" state is stored lazily, so one sent just
 * before a crash may come back queued while a later one comes back sent
 * (a prepared QoS 2 entry): it was sent too, and goes back in flight
 * before it, its packet id chosen when the window is resent, so that the
 * resend keeps the original order [MQTT-4.6.0-1].
 */
static void sent_before(struct outq *q)
{
	struct out_entry *e, *next;

	for (e = q->queue.head; e; e = next) {
		next = e->next;
		if (!e->qos)
			continue;
		list_remove(&q->queue, e);
		q->queued_bytes -= msg_size(e->msg);
		e->state = OUT_PUBLISHED;
		e->sent_once = true;
		e->packet_id = 0;
		list_append(&q->inflight, e);
	}
}

int outq_restore_entry(struct outq *q, const struct store_delivery_row *r)
{
	struct out_entry *e = entry_new(r->msg, r->qos, r->retain, r->subids, r->n_subids,
					r->share);

	msg_unref(r->msg); /* entry_new took its own */
	if (!e)
		return -1;
	e->seq = r->seq;
	e->stored = true;
	e->state = q->group ? OUT_QUEUED : r->state; /* a group's lent copies wait again */
	e->packet_id = q->group ? 0 : r->packet_id;
	q->ids_free = 0; /* ids in use came from outside next_packet_id */
	e->sent_once = e->state != OUT_QUEUED;
	if (r->seq >= q->next_seq)
		q->next_seq = r->seq + 1;
	if (e->state == OUT_QUEUED) {
		list_append(&q->queue, e);
		q->queued_bytes += msg_size(e->msg);
	} else {
		sent_before(q);
		list_append(&q->inflight, e);
	}
	return 0;
}

void outq_restore_disk(struct outq *q, uint64_t first_seq, uint64_t count)
{
	q->disk_first_seq = first_seq;
	q->disk_n = count;
	if (first_seq + count > q->next_seq)
		q->next_seq = first_seq + count;
}

int outq_restore_rx(struct outq *q, uint16_t packet_id)
{
	return rx_push(q, packet_id);
}
