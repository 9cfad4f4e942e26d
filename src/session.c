/*
 * session.c - sessions by client id: the registry, their lifecycle, wills,
 * subscriptions, and what of them is kept in the store. Loop thread only.
 *
 * The table is a chained hash keyed by client id that doubles when the load
 * passes one entry per bucket.
 *
 * Invariants:
 * - a session with no connection has conn == NULL and, unless it never
 *   expires, an armed expiry timer;
 * - its queue's view (q.conn, q.sid, q.durable, q.clean) equals the
 *   session's own fields: every change of them goes through sync_queue();
 * - every subscription in `subs` is in the topic tree (events->sub_added
 *   succeeded) and, for a persistent session, in the store.
 *
 * Persistence: a persistent session (session_persistent) has a sid, and
 * every change that must survive a restart is queued for the store as it
 * happens: the session row, each subscription (its deliveries and incoming
 * QoS 2 ids are the queue's, outq.c). The store commits them in order;
 * acknowledgements to clients wait for that commit elsewhere (proto_ack).
 * The restore at the end of this file rebuilds it all.
 */
#include "session.h"

#include <string.h>

#include "base.h"
#include "clock.h"
#include "conn.h"
#include "groupq.h"
#include "log.h"
#include "mem.h"
#include "store.h"

static struct session **table;
static size_t table_size, n_sessions;
static uint64_t max_sid; /* the largest sid handed out or read back */
static uint64_t changes; /* session_changes() */
static bool restoring; /* rebuilding from the store: write nothing back */

static int no_sub_added(struct session *s, const char *f, size_t l, uint8_t o, uint32_t id,
			bool *ex)
{
	*ex = false;
	return 0;
}

static void no_sub_removed(struct session *s, const char *f, size_t l)
{
}

static void no_detached(struct session *s, bool graceful)
{
}

static void no_will(struct session *s, struct msg *will)
{
}

static void no_ending(struct session *s)
{
}

static const struct session_events no_events = {
	{ NULL, NULL, NULL, NULL, NULL, NULL },
	no_sub_added,
	no_sub_removed,
	no_detached,
	no_will,
	no_ending,
};
static const struct session_events *events = &no_events;

void session_set_events(const struct session_events *ev)
{
	events = ev ? ev : &no_events;
	outq_set_events(ev ? &ev->q : NULL);
}

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

bool session_persistent(const struct session *s)
{
	return store_on() && s->expiry_interval != 0;
}

/* The queue's view of its session follows the session. */
static void sync_queue(struct session *s)
{
	s->q.conn = s->conn;
	s->q.sid = s->sid;
	s->q.durable = session_persistent(s);
	s->q.clean = s->clean;
}

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
	outq_init(&s->q, s, s->client_id);
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

void session_each(void (*fn)(struct session *s, void *arg), void *arg)
{
	for (size_t i = 0; i < table_size; i++)
		for (struct session *s = table[i], *next; s; s = next) {
			next = s->hnext;
			fn(s, arg);
		}
}

void session_set_expiry(struct session *s, uint32_t seconds)
{
	changes++;
	s->expiry_interval = seconds;
	s->clean = seconds == 0;
	sync_queue(s);
}

int session_set_username(struct session *s, const char *name, size_t len)
{
	char *copy = name ? mem_strndup(name, len) : NULL;

	if (name && !copy)
		return -1;
	mem_free(s->username);
	s->username = copy;
	return 0;
}

static void save_row(struct session *s)
{
	struct store_session_row r;

	memset(&r, 0, sizeof(r));
	r.sid = s->sid;
	r.client_id = s->client_id;
	r.version = s->version;
	r.expiry_interval = s->expiry_interval;
	r.disconnected_wall = s->disconnected_wall;
	r.will = s->will;
	r.will_delay = s->will_delay;
	r.next_seq = s->q.next_seq;
	r.username = s->username;
	r.realm = s->realm;
	store_session_put(&r);
}

uint64_t session_changes(void)
{
	return changes;
}

uint64_t session_new_sid(void)
{
	return ++max_sid;
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
		sync_queue(s);
		return;
	}
	if (!s->sid)
		s->sid = ++max_sid;
	sync_queue(s);
	save_row(s);
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
	timer_disarm(&s->will_timer);
	msg_unref(s->will);
	s->will = NULL;
}

static void publish_will(struct session *s)
{
	struct msg *will = s->will;

	if (!will)
		return;
	s->will = NULL;
	timer_disarm(&s->will_timer);
	/*
	 * The will's Message Expiry Interval counts from its publication
	 * [MQTT-3.1.3.2.4]. Nothing else holds the will yet, so its deadline
	 * can still be set here.
	 */
	if (will->expiry_interval && will->refs == 1)
		will->expiry_wall_ms = clock_wall_ms() + (uint64_t)will->expiry_interval * 1000;
	log_info("client '%s': publishing will on '%s'", s->client_id, will->topic);
	events->will(s, will);
	msg_unref(will);
}

static void on_will_delay(struct timer *t, void *arg)
{
	publish_will(arg);
}

/* --- lifecycle ------------------------------------------------------------ */

void session_attach(struct session *s, struct conn *c)
{
	s->conn = c;
	s->disconnected_wall = 0;
	sync_queue(s);
	timer_disarm(&s->expiry_timer);
	/* A will waiting out its delay is not sent when the client is back [MQTT-3.1.3-9]. */
	session_clear_will(s);
	base.stats.clients_connected++;
	if (base.stats.clients_connected > base.stats.clients_max)
		base.stats.clients_max = base.stats.clients_connected;
}

/* Called once the CONNACK is out: redeliver, then drain the queue. */
void session_resume(struct session *s)
{
	outq_resume(&s->q);
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
	sync_queue(s);
	base.stats.clients_connected--;
	events->detached(s, graceful);
	/* A broker that is shutting down publishes no wills into dying connections. */
	if (graceful || base.stopping)
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
			timer_arm(&s->will_timer, now + (uint64_t)delay * 1000);
	}
	if (s->expiry_interval != UINT32_MAX)
		timer_arm(&s->expiry_timer, now + (uint64_t)s->expiry_interval * 1000);
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

void session_destroy(struct session *s)
{
	struct sub_rec *r;

	changes++;

	unlink_session(s);
	timer_disarm(&s->expiry_timer);
	while ((r = s->subs)) {
		s->subs = r->next;
		events->sub_removed(s, r->filter, strlen(r->filter));
		mem_free(r->filter);
		mem_free(r);
	}
	/* The session ends: a will still waiting for its delay goes now [MQTT-3.1.3-9];
	 * after the unsubscribes, so the dying session cannot receive its own will. */
	publish_will(s);
	outq_drop_all(&s->q);
	events->ending(s);
	if (s->sid)
		store_session_del(s->sid); /* its subscriptions, deliveries and ids go with it */
	if (s->conn)
		conn_part_session(s->conn);
	outq_free(&s->q);
	mem_free(s->username);
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
	outq_drain_caches();
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
	bool ex = false;

	changes++;

	if (events->sub_added(s, filter, len, options, subid, &ex))
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
		events->sub_removed(s, filter, len);
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

	changes++;

	if (!pp)
		return -1;
	r = *pp;
	*pp = r->next;
	s->n_subs--;
	events->sub_removed(s, filter, len);
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

	if (r->sid > max_sid)
		max_sid = r->sid;
	if (groupq_is_row(r->client_id)) {
		msg_unref(r->will);
		return groupq_restore(r->sid, r->client_id, r->next_seq);
	}

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
	s->expiry_interval = r->expiry_interval;
	s->clean = false;
	s->q.next_seq = r->next_seq;
	s->disconnected_wall = r->disconnected_wall;
	sync_queue(s);
	s->will = r->will;
	s->will_delay = r->will_delay;
	s->realm = r->realm;
	/* the ACL of its user applies while it is offline, as before the restart */
	if (r->username && session_set_username(s, r->username, strlen(r->username)))
		return -1;
	return 0;
}

static int restore_sub(uint64_t sid, const char *filter, uint8_t options, uint32_t subid, void *arg)
{
	struct session *s = restored_sid(sid);
	bool existed;

	return s ? session_subscribe(s, filter, strlen(filter), options, subid, &existed) : 0;
}

/* The queue of sid: a session's, or a shared group's (groupq.c). */
static struct outq *restored_queue(uint64_t sid)
{
	struct session *s = restored_sid(sid);
	struct groupq *g;

	if (s)
		return &s->q;
	g = groupq_by_sid(sid);
	return g ? &g->q : NULL;
}

static int restore_delivery(uint64_t sid, const struct store_delivery_row *r, void *arg)
{
	struct outq *q = restored_queue(sid);

	if (q && q->group)
		groupq_restored_row(groupq_by_sid(sid), r->seq);

	if (!q) {
		msg_unref(r->msg);
		return 0;
	}
	return outq_restore_entry(q, r);
}

static int restore_on_disk(uint64_t sid, uint64_t first_seq, uint64_t count, void *arg)
{
	struct outq *q = restored_queue(sid);

	if (q)
		outq_restore_disk(q, first_seq, count);
	return 0;
}

static int restore_rx(uint64_t sid, uint16_t packet_id, void *arg)
{
	struct session *s = restored_sid(sid);

	return s ? outq_restore_rx(&s->q, packet_id) : 0;
}

void session_restore_ops(struct store_restore_ops *ops)
{
	restoring = true;
	ops->session_row = restore_session;
	ops->sub = restore_sub;
	ops->delivery = restore_delivery;
	ops->on_disk = restore_on_disk;
	ops->rx_qos2 = restore_rx;
	ops->in_memory = base.cfg->max_queued_in_memory;
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
	if (s->expiry_interval != UINT32_MAX && elapsed >= (uint64_t)s->expiry_interval * 1000) {
		log_info("client '%s': session expired while the broker was down", s->client_id);
		session_destroy(s); /* publishes the will, if any */
		return;
	}
	if (s->expiry_interval != UINT32_MAX)
		timer_arm(&s->expiry_timer, now + (uint64_t)s->expiry_interval * 1000 - elapsed);
	if (s->will) {
		uint64_t delay = (uint64_t)(s->will_delay < s->expiry_interval
						    ? s->will_delay
						    : s->expiry_interval) *
				 1000;

		if (elapsed >= delay)
			publish_will(s);
		else
			timer_arm(&s->will_timer, now + delay - elapsed);
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
