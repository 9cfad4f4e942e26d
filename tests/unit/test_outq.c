/*
 * test_outq.c - sessions and their outgoing queues (src/session.c,
 * src/outq.c), between a fake connection below and a fake layer above;
 * persistence off, but for the durable queues at the end, which run over a
 * real store in a temporary directory.
 *
 * Below: each client is a real struct conn (conn_new) over a fake transport
 * that only counts calls, put in the state the protocol layer leaves it in
 * after CONNACK (CONN_ACTIVE, its Receive Maximum). What the client
 * received is read back from the connection's output (conn_pending) and
 * decoded with codec_decode(), as a client would.
 *
 * Above: a struct session_events table that records every event in order
 * (acked with its reason, dropped, orphaned, sub_added/sub_removed,
 * detached, will, ending) and keeps a small fake "topic tree": the set of
 * filters sub_added put in and sub_removed took out. The connection's
 * handler does what the protocol layer does when the transport closes:
 * the session goes offline (session_detach).
 *
 * Time: clock.h reads the real monotonic clock and has no fake. A test
 * checks that a timer is armed for the right deadline, that timers_fire()
 * now does nothing, and then makes the deadline come by moving that timer
 * to the present (timer_arm) before timers_fire(): the callbacks run as they
 * would when the time passes, without a test that sleeps.
 *
 * Leaks: every test ends with every session destroyed and every connection
 * closed (and the store written out and closed, whose pending operations
 * hold messages), and checks that no message is alive (msg_alive); the
 * sanitizer build checks the rest.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base.h"
#include "clock.h"
#include "codec.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "msg.h"
#include "outq.h"
#include "session.h"
#include "store.h"
#include "timers.h"

/* --- the fake transport and the protocol layer's closed handler -------------------- */

#include "fake_transport.h"
#include "store_wait.h"

static int no_packet(struct conn *c, const uint8_t *pkt, size_t len)
{
	fail_msg("no input is fed in these tests");
	return -1;
}

/* As the protocol layer: the transport is gone, the session goes offline. */
static bool graceful_close;

static void on_conn_closed(struct conn *c)
{
	struct session *s = c->session;

	if (!s)
		return;
	conn_part_session(c);
	session_detach(s, graceful_close);
}

static const struct conn_handler handler = { no_packet, on_conn_closed };

/* --- the fake layer above ----------------------------------------------------------- */

enum ev_type {
	EV_ACKED,
	EV_DROPPED,
	EV_ORPHANED,
	EV_SUB_ADDED,
	EV_SUB_REMOVED,
	EV_DETACHED,
	EV_WILL,
	EV_ENDING
};

struct ev {
	enum ev_type type;
	struct session *s;
	uint64_t msg_id;
	uint8_t qos, reason;
	bool shared, graceful;
	char text[64]; /* filter, share group, will topic or why */
};

#define MAX_EVS 256
static struct ev evs[MAX_EVS];
static size_t n_evs;

static struct ev *ev_add(enum ev_type type, struct session *s)
{
	struct ev *e;

	assert_true(n_evs < MAX_EVS);
	e = &evs[n_evs++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->s = s;
	return e;
}

static size_t count_ev(enum ev_type type)
{
	size_t i, n = 0;

	for (i = 0; i < n_evs; i++)
		n += evs[i].type == type;
	return n;
}

/* The index of the only event of that type (fails when there is not exactly one). */
static size_t only_ev(enum ev_type type)
{
	size_t i, at = 0, n = 0;

	for (i = 0; i < n_evs; i++)
		if (evs[i].type == type) {
			at = i;
			n++;
		}
	if (n != 1)
		fail_msg("%zu events of type %d, expected 1", n, (int)type);
	return at;
}

static void ev_acked(struct session *o, struct msg *m, uint8_t qos, const char *share,
		     uint8_t reason)
{
	struct ev *e = ev_add(EV_ACKED, o);

	e->msg_id = m->id;
	e->qos = qos;
	e->reason = reason;
	e->shared = share != NULL;
}

static void ev_dropped(struct session *o, struct msg *m, uint8_t qos, const char *share,
		       const char *why)
{
	struct ev *e = ev_add(EV_DROPPED, o);

	e->msg_id = m->id;
	e->qos = qos;
	e->shared = share != NULL;
	snprintf(e->text, sizeof(e->text), "%s", why);
}

static void ev_orphaned(struct session *o, struct msg *m, uint8_t qos, const char *share)
{
	struct ev *e = ev_add(EV_ORPHANED, o);

	assert_non_null(share);
	e->msg_id = m->id;
	e->qos = qos;
	e->shared = true;
	snprintf(e->text, sizeof(e->text), "%s", share); /* the group */
}

/* The fake topic tree: the filters sub_added holds. */
#define MAX_TREE 16
static char tree[MAX_TREE][32];
static size_t n_tree;
static bool tree_refuses; /* sub_added fails as the topic tree would out of memory */

static int tree_find(const char *f, size_t len)
{
	size_t i;

	for (i = 0; i < n_tree; i++)
		if (strlen(tree[i]) == len && !memcmp(tree[i], f, len))
			return (int)i;
	return -1;
}

static int ev_sub_added(struct session *s, const char *f, size_t len, uint8_t options,
			uint32_t subid, bool *existed)
{
	struct ev *e;

	if (tree_refuses)
		return -1;
	e = ev_add(EV_SUB_ADDED, s);
	snprintf(e->text, sizeof(e->text), "%.*s", (int)len, f);
	*existed = tree_find(f, len) >= 0;
	if (!*existed) {
		assert_true(n_tree < MAX_TREE && len < sizeof(tree[0]));
		memcpy(tree[n_tree], f, len);
		tree[n_tree++][len] = '\0';
	}
	return 0;
}

static void ev_sub_removed(struct session *s, const char *f, size_t len)
{
	struct ev *e = ev_add(EV_SUB_REMOVED, s);
	int i = tree_find(f, len);

	snprintf(e->text, sizeof(e->text), "%.*s", (int)len, f);
	assert_true(i >= 0); /* only what was added is removed */
	memcpy(tree[i], tree[--n_tree], sizeof(tree[0]));
}

static void ev_detached(struct session *s, bool graceful)
{
	ev_add(EV_DETACHED, s)->graceful = graceful;
}

static void ev_will(struct session *s, struct msg *will)
{
	struct ev *e = ev_add(EV_WILL, s);

	e->msg_id = will->id;
	snprintf(e->text, sizeof(e->text), "%s", will->topic);
}

static void ev_ending(struct session *s)
{
	assert_true(session_find(s->client_id) != s); /* no longer listed */
	ev_add(EV_ENDING, s);
}

/* Shared group queues (groupq.c) are the router's business: not seen here. */
static void ev_refilled(struct outq *q)
{
}

static void ev_room(struct session *s)
{
}

static void ev_received(struct session *o, struct msg *m, const char *share)
{
}

static const struct session_events events = {
	{ ev_acked, ev_dropped, ev_orphaned, ev_refilled, ev_room, ev_received },
	ev_sub_added,
	ev_sub_removed,
	ev_detached,
	ev_will,
	ev_ending,
};

/* --- clients ------------------------------------------------------------------------ */

struct client {
	struct session *s;
	struct conn *c; /* NULL while offline */
	struct fake_transport t;
};

#define MAX_CLIENTS 8
static struct client clients[MAX_CLIENTS];
static size_t n_clients;
static struct config cfg;

/* A connection to s as the protocol layer leaves it after CONNACK. */
static void client_connect(struct client *cl, uint16_t receive_max)
{
	memset(&cl->t, 0, sizeof(cl->t));
	cl->c = conn_new(&fake_ops, &cl->t, false, "test", 0);
	assert_non_null(cl->c);
	cl->c->state = CONN_ACTIVE;
	cl->c->version = cl->s->version;
	cl->c->client_receive_max = receive_max;
	cl->c->session = cl->s;
	cl->c->client_id = cl->s->client_id;
	session_attach(cl->s, cl->c);
}

/* A session; expiry 0 makes it clean. */
static struct client *client_new(const char *id, uint32_t expiry)
{
	struct client *cl;

	assert_true(n_clients < MAX_CLIENTS);
	cl = &clients[n_clients++];
	memset(cl, 0, sizeof(*cl));
	cl->s = session_create(id, MQTT_V5);
	assert_non_null(cl->s);
	session_set_expiry(cl->s, expiry);
	return cl;
}

static struct client *client_online(const char *id, uint32_t expiry, uint16_t receive_max)
{
	struct client *cl = client_new(id, expiry);

	client_connect(cl, receive_max);
	return cl;
}

/* The transport closes (abnormally, unless graceful): the session goes offline. */
static void client_disconnect(struct client *cl, bool graceful)
{
	char id[32];

	snprintf(id, sizeof(id), "%s", cl->s->client_id);
	graceful_close = graceful;
	conn_on_closed(cl->c);
	graceful_close = false;
	cl->c = NULL;
	if (session_find(id) != cl->s)
		cl->s = NULL; /* a clean session ended with its connection */
}

/* One packet the client received. */
struct rx {
	uint8_t type;
	uint8_t qos, reason;
	bool dup;
	uint16_t packet_id;
	char payload[32];
};

#define MAX_RX 64

/* Everything written to cl since the last look, decoded; the bytes are marked sent. */
static size_t take(struct client *cl, struct rx *out, size_t max)
{
	uint8_t *p;
	size_t len = conn_pending(cl->c, &p), off = 0, n = 0;

	while (off < len) {
		size_t rl = 0, hdr = 1, shift = 0;
		struct mqtt_packet pkt;
		struct rx *r;

		do {
			assert_true(off + hdr < len);
			rl |= (size_t)(p[off + hdr] & 0x7f) << shift;
			shift += 7;
		} while (p[off + hdr++] & 0x80);
		assert_true(off + hdr + rl <= len);
		assert_int_equal(codec_decode(p + off, hdr + rl, cl->c->version, &pkt), CODEC_OK);
		assert_true(n < max);
		r = &out[n++];
		memset(r, 0, sizeof(*r));
		r->type = pkt.type;
		if (pkt.type == MQTT_PUBLISH) {
			r->qos = pkt.u.publish.qos;
			r->dup = pkt.u.publish.dup;
			r->packet_id = pkt.u.publish.packet_id;
			assert_true(pkt.u.publish.payload_len < sizeof(r->payload));
			memcpy(r->payload, pkt.u.publish.payload, pkt.u.publish.payload_len);
		} else if (pkt.type >= MQTT_PUBACK && pkt.type <= MQTT_PUBCOMP) {
			r->packet_id = pkt.u.ack.packet_id;
			r->reason = pkt.u.ack.reason;
		}
		off += hdr + rl;
	}
	if (len)
		conn_sent(cl->c, len);
	return n;
}

static struct rx rx[MAX_RX];

/* Exactly one PUBLISH since the last look. */
static struct rx *got_one(struct client *cl)
{
	size_t n = take(cl, rx, MAX_RX);

	if (n != 1)
		fail_msg("client '%s': %zu packets, expected 1", cl->s->client_id, n);
	assert_int_equal(rx[0].type, MQTT_PUBLISH);
	return &rx[0];
}

static void got_none(struct client *cl)
{
	assert_int_equal(take(cl, rx, MAX_RX), 0);
}

static struct msg *make_msg(const char *payload, uint8_t qos)
{
	struct msg_spec s;
	struct msg *m;

	memset(&s, 0, sizeof(s));
	s.topic = "t/1";
	s.topic_len = 3;
	s.payload = payload;
	s.payload_len = strlen(payload);
	s.qos = qos;
	s.sender = "pub";
	m = msg_new(&s);
	assert_non_null(m);
	return m;
}

/* Delivers a new message and lets go of the test's reference. Returns outq_deliver's result. */
static int deliver(struct client *cl, const char *payload, uint8_t qos, const char *share)
{
	struct msg *m = make_msg(payload, qos);
	int rc = outq_deliver(&cl->s->q, m, qos, false, NULL, 0, share);

	msg_unref(m);
	return rc;
}

/* The layers above and below as a test starts; cfg is set. */
static void start_layers(void)
{
	base_init(&cfg);
	log_set_level(LOG_ERR);
	conn_set_handler(&handler);
	session_set_events(&events);
	n_evs = 0;
	n_tree = 0;
	tree_refuses = false;
	n_clients = 0;
	graceful_close = false;
}

static int setup(void **state)
{
	config_defaults(&cfg);
	cfg.persistence = false;
	start_layers();
	assert_int_equal(store_open(&cfg), 0); /* persistence off: every call a no-op */
	assert_false(store_on());
	return 0;
}

/* The broker's shutdown order; then nothing may be left. */
static int teardown(void **state)
{
	size_t i;

	mem_fail_after(-1);
	session_destroy_all();
	for (i = 0; i < n_clients; i++)
		if (clients[i].c)
			conn_on_closed(clients[i].c);
	timers_loop_free();
	conn_drain_caches();
	msg_drain_caches();
	base_free();
	config_free(&cfg);
	assert_int_equal(session_count(), 0);
	assert_int_equal(conn_count(), 0);
	assert_int_equal(msg_alive(), 0);
	return 0;
}

/* Ends the test's sessions and connections. */
static void end_clients(void)
{
	size_t i;

	session_destroy_all();
	for (i = 0; i < n_clients; i++) {
		if (clients[i].c)
			conn_on_closed(clients[i].c);
		clients[i].c = NULL;
		clients[i].s = NULL;
	}
}

/* Ends the test's sessions and connections and checks that no message is left. */
static void no_leftovers(void)
{
	end_clients();
	assert_int_equal(msg_alive(), 0);
	assert_int_equal(n_tree, 0); /* every subscription left the tree */
}

/* --- QoS 1: the window and the queue behind it ------------------------------------- */

static void qos1_window_then_queue_in_order(void **state)
{
	struct client *cl = client_online("c1", 0, 3);
	struct outq *q = &cl->s->q;
	uint16_t ids[3];
	size_t i, n;
	char p[8];

	assert_int_equal(outq_window(q), 3);
	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "m%zu", i);
		assert_int_equal(deliver(cl, p, 1, NULL), OUTQ_DELIVERED);
	}
	assert_int_equal(cl->t.want_write, 1); /* one writable request for the batch */
	n = take(cl, rx, MAX_RX);
	assert_int_equal(n, 3); /* sent at once */
	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "m%zu", i);
		assert_string_equal(rx[i].payload, p);
		assert_int_equal(rx[i].qos, 1);
		assert_false(rx[i].dup);
		ids[i] = rx[i].packet_id;
		assert_true(ids[i] != 0);
	}
	assert_true(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
	assert_int_equal(outq_inflight(q), 3);
	assert_false(outq_ready(q));

	/* beyond the window: queued, in order */
	assert_int_equal(deliver(cl, "m3", 1, NULL), OUTQ_DELIVERED);
	assert_int_equal(deliver(cl, "m4", 1, NULL), OUTQ_DELIVERED);
	got_none(cl);
	assert_int_equal(outq_queued(q), 2);

	/* each PUBACK frees a slot and the next one goes out */
	assert_int_equal(outq_on_puback(q, ids[1], 0), 0);
	assert_int_equal(evs[only_ev(EV_ACKED)].reason, 0);
	assert_int_equal(evs[only_ev(EV_ACKED)].qos, 1);
	assert_string_equal(got_one(cl)->payload, "m3");
	assert_int_equal(outq_on_puback(q, ids[0], 0), 0);
	assert_string_equal(got_one(cl)->payload, "m4");
	assert_int_equal(outq_queued(q), 0);
	assert_int_equal(outq_inflight(q), 3);
	assert_int_equal(outq_on_puback(q, ids[0], 0), -1); /* already acknowledged */
	assert_int_equal(outq_on_puback(q, 999, 0), -1); /* never sent */
	assert_int_equal(count_ev(EV_ACKED), 2);
	assert_int_equal(count_ev(EV_DROPPED), 0);
	no_leftovers();
}

/* A refusal (reason >= 0x80) ends the exchange: reported with its reason, the slot frees. */
static void refusals_report_their_reason(void **state)
{
	struct client *cl = client_online("c1", 0, 1);
	struct outq *q = &cl->s->q;
	struct rx *r;
	uint16_t id;
	size_t i;

	assert_int_equal(deliver(cl, "one", 1, NULL), OUTQ_DELIVERED);
	assert_int_equal(deliver(cl, "two", 2, NULL), OUTQ_DELIVERED);
	id = got_one(cl)->packet_id;
	assert_int_equal(outq_on_puback(q, id, 0x80), 0);
	i = only_ev(EV_ACKED);
	assert_int_equal(evs[i].reason, 0x80);
	assert_int_equal(evs[i].qos, 1);
	r = got_one(cl); /* the slot went to the QoS 2 one */
	assert_string_equal(r->payload, "two");
	assert_int_equal(r->qos, 2);
	assert_int_equal(deliver(cl, "three", 1, NULL), OUTQ_DELIVERED);
	got_none(cl);
	n_evs = 0;
	assert_int_equal(outq_on_pubrec(q, r->packet_id, 0x87), 0);
	i = only_ev(EV_ACKED);
	assert_int_equal(evs[i].reason, 0x87);
	assert_int_equal(evs[i].qos, 2);
	assert_int_equal(outq_on_pubcomp(q, r->packet_id), -1); /* that exchange is over */
	assert_string_equal(got_one(cl)->payload, "three");
	assert_int_equal(outq_inflight(q), 1);
	assert_int_equal(count_ev(EV_DROPPED), 0);
	no_leftovers();
}

static void qos2_flow(void **state)
{
	struct client *cl = client_online("c1", 0, 10);
	struct outq *q = &cl->s->q;
	struct rx *r;
	uint16_t id;

	assert_int_equal(deliver(cl, "exactly", 2, NULL), OUTQ_DELIVERED);
	r = got_one(cl);
	assert_int_equal(r->qos, 2);
	id = r->packet_id;
	assert_int_equal(q->inflight.head->state, OUT_PUBLISHED);
	assert_int_equal(outq_on_pubcomp(q, id), -1); /* PUBCOMP before PUBREC */
	assert_int_equal(outq_on_puback(q, id, 0), -1); /* not a QoS 1 delivery */
	assert_int_equal(outq_on_pubrec(q, id, 0), 0);
	assert_int_equal(q->inflight.head->state, OUT_RELEASED);
	assert_int_equal(outq_inflight(q), 1); /* still holds its slot until PUBCOMP */
	assert_int_equal(count_ev(EV_ACKED), 0);
	assert_int_equal(outq_on_pubcomp(q, id), 0);
	assert_int_equal(evs[only_ev(EV_ACKED)].reason, MQTT_RC_SUCCESS);
	assert_int_equal(evs[only_ev(EV_ACKED)].qos, 2);
	assert_int_equal(outq_inflight(q), 0);
	assert_int_equal(outq_on_pubcomp(q, id), -1);
	assert_int_equal(outq_on_pubrec(q, id, 0), -1);
	no_leftovers();
}

/* --- packet identifiers ------------------------------------------------------------- */

static void packet_ids_unique_and_wrapping(void **state)
{
	struct client *cl = client_online("c1", 0, 2);
	struct outq *q = &cl->s->q;
	struct msg *m = make_msg("x", 1);
	uint16_t held, id, prev;
	bool wrapped = false;
	long i;

	assert_int_equal(outq_deliver(q, m, 1, false, NULL, 0, NULL), OUTQ_DELIVERED);
	held = got_one(cl)->packet_id; /* never acknowledged */
	prev = held;
	for (i = 0; i < 70000; i++) {
		struct rx *r;

		assert_int_equal(outq_deliver(q, m, 1, false, NULL, 0, NULL), OUTQ_DELIVERED);
		r = got_one(cl);
		id = r->packet_id;
		assert_int_equal(id, q->inflight.tail->packet_id);
		if (id == held || id == 0)
			fail_msg("packet id %u handed out while id %u is in flight", id, held);
		if (id < prev)
			wrapped = true;
		/* ids go round in order, skipping the one held */
		assert_int_equal(id, prev == 65535 ? (held == 1 ? 2 : 1)
						   : (prev + 1 == held ? prev + 2 : prev + 1));
		prev = id;
		n_evs = 0;
		assert_int_equal(outq_on_puback(q, id, 0), 0);
		assert_int_equal(evs[only_ev(EV_ACKED)].msg_id, m->id);
	}
	assert_true(wrapped);
	assert_int_equal(outq_inflight(q), 1);
	assert_int_equal(q->inflight.head->packet_id, held);

	/* a full window of distinct ids */
	cl->c->client_receive_max = 20;
	for (i = 0; i < 19; i++)
		assert_int_equal(outq_deliver(q, m, 1, false, NULL, 0, NULL), OUTQ_DELIVERED);
	assert_int_equal(take(cl, rx, MAX_RX), 19);
	{
		const struct out_entry *a, *b;

		for (a = q->inflight.head; a; a = a->next)
			for (b = a->next; b; b = b->next)
				assert_true(a->packet_id != b->packet_id);
	}
	msg_unref(m);
	no_leftovers();
}

/* --- offline and limits ------------------------------------------------------------- */

static void offline_session_queues_qos1_drops_qos0(void **state)
{
	struct client *cl = client_new("c1", 3600);
	struct outq *q = &cl->s->q;
	size_t i;

	assert_int_equal(deliver(cl, "zero", 0, NULL), OUTQ_DROPPED);
	i = only_ev(EV_DROPPED);
	assert_int_equal(evs[i].qos, 0);
	assert_ptr_equal(evs[i].s, cl->s);
	assert_int_equal(base.stats.qos0_dropped, 1);
	assert_int_equal(base.stats.pub_dropped, 1);
	assert_int_equal(deliver(cl, "one", 1, NULL), OUTQ_DELIVERED);
	assert_int_equal(deliver(cl, "two", 2, NULL), OUTQ_DELIVERED);
	assert_int_equal(outq_queued(q), 2);
	assert_int_equal(outq_inflight(q), 0);
	assert_int_equal(base.stats.pub_dropped, 1);

	/* back online: the queue goes out in order */
	client_connect(cl, 10);
	session_resume(cl->s);
	assert_int_equal(take(cl, rx, MAX_RX), 2);
	assert_string_equal(rx[0].payload, "one");
	assert_int_equal(rx[0].qos, 1);
	assert_string_equal(rx[1].payload, "two");
	assert_int_equal(rx[1].qos, 2);
	assert_int_equal(outq_inflight(q), 2);
	/* and QoS 0 to a live client goes out at once */
	assert_int_equal(deliver(cl, "zero again", 0, NULL), OUTQ_DELIVERED);
	assert_string_equal(got_one(cl)->payload, "zero again");
	assert_int_equal(base.stats.qos0_dropped, 1);
	no_leftovers();
}

static void queue_limit_gives_quota(void **state)
{
	struct client *off, *on;
	size_t i;

	cfg.max_queued_messages = 2;
	off = client_new("offline", 3600);
	assert_int_equal(deliver(off, "a", 1, NULL), OUTQ_DELIVERED);
	assert_int_equal(deliver(off, "b", 1, NULL), OUTQ_DELIVERED);
	assert_int_equal(deliver(off, "c", 1, NULL), OUTQ_QUOTA);
	i = only_ev(EV_DROPPED);
	assert_int_equal(evs[i].qos, 1);
	assert_ptr_equal(evs[i].s, off->s);
	assert_int_equal(outq_queued(&off->s->q), 2);
	assert_int_equal(base.stats.pub_dropped, 1);
	assert_int_equal(base.stats.qos0_dropped, 0);

	/* online: the window does not count, the queue behind it does */
	on = client_online("online", 0, 1);
	assert_int_equal(deliver(on, "w", 1, NULL), OUTQ_DELIVERED);
	assert_int_equal(deliver(on, "q1", 1, NULL), OUTQ_DELIVERED);
	assert_int_equal(deliver(on, "q2", 1, NULL), OUTQ_DELIVERED);
	assert_int_equal(deliver(on, "q3", 1, NULL), OUTQ_QUOTA);
	assert_int_equal(outq_inflight(&on->s->q), 1);
	assert_int_equal(outq_queued(&on->s->q), 2);
	assert_int_equal(count_ev(EV_DROPPED), 2);
	assert_int_equal(base.stats.pub_dropped, 2);
	no_leftovers();
}

/* After a reconnect with a smaller Receive Maximum the window is resent within it, with DUP. */
static void reconnect_resends_within_smaller_window(void **state)
{
	struct client *cl = client_online("c1", 3600, 4);
	struct outq *q = &cl->s->q;
	uint16_t ids[4];
	size_t i;
	char p[8];

	for (i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), "m%zu", i);
		assert_int_equal(deliver(cl, p, 1, NULL), OUTQ_DELIVERED);
	}
	assert_int_equal(take(cl, rx, MAX_RX), 4);
	for (i = 0; i < 4; i++)
		ids[i] = rx[i].packet_id;
	client_disconnect(cl, false);
	assert_non_null(cl->s); /* persistent: it waits */
	assert_int_equal(evs[only_ev(EV_DETACHED)].graceful, false);
	assert_int_equal(outq_inflight(q), 4);
	assert_int_equal(deliver(cl, "m4", 1, NULL), OUTQ_DELIVERED); /* while offline */

	client_connect(cl, 2);
	session_resume(cl->s);
	assert_int_equal(take(cl, rx, MAX_RX), 2);
	for (i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "m%zu", i);
		assert_string_equal(rx[i].payload, p);
		assert_true(rx[i].dup); /* [MQTT-4.4.0-1] */
		assert_int_equal(rx[i].packet_id, ids[i]);
	}
	assert_int_equal(outq_inflight(q), 2);
	assert_int_equal(outq_queued(q), 3);
	/* the rest of the old window follows as slots free, same ids, DUP */
	for (i = 2; i < 4; i++) {
		struct rx *r;

		assert_int_equal(outq_on_puback(q, ids[i - 2], 0), 0);
		r = got_one(cl);
		snprintf(p, sizeof(p), "m%zu", i);
		assert_string_equal(r->payload, p);
		assert_true(r->dup);
		assert_int_equal(r->packet_id, ids[i]);
	}
	/* then what came while offline: a first send, a fresh id */
	assert_int_equal(outq_on_puback(q, ids[2], 0), 0);
	{
		struct rx *r = got_one(cl);

		assert_string_equal(r->payload, "m4");
		assert_false(r->dup);
		assert_true(r->packet_id != 0 && r->packet_id != ids[3]); /* ids[3] is in flight */
	}
	assert_int_equal(outq_inflight(q), 2);
	assert_int_equal(count_ev(EV_DROPPED), 0);
	no_leftovers();
}

/* --- the end of a session ----------------------------------------------------------- */

static void destroy_reports_shared_deliveries(void **state)
{
	struct client *cl = client_online("member", 3600, 2);
	struct session *s = cl->s;
	static const char share[] = "g\0t/#"; /* the share key, "group\0filter\0" */
	bool existed;
	size_t i, ending, n_shared_dropped = 0;

	assert_int_equal(session_subscribe(s, "$share/g/t/#", 12, 1, 0, &existed), 0);
	assert_false(existed);
	assert_int_equal(session_subscribe(s, "t/1", 3, 2, 7, &existed), 0);
	assert_int_equal(s->n_subs, 2);
	assert_int_equal(n_tree, 2);
	assert_int_equal(deliver(cl, "s1", 1, share), OUTQ_DELIVERED); /* in flight */
	assert_int_equal(deliver(cl, "s2", 2, share), OUTQ_DELIVERED); /* in flight, QoS 2 */
	assert_int_equal(deliver(cl, "s3", 1, share), OUTQ_DELIVERED); /* queued */
	assert_int_equal(deliver(cl, "own", 1, NULL), OUTQ_DELIVERED); /* queued, not shared */
	assert_int_equal(take(cl, rx, MAX_RX), 2);
	n_evs = 0;

	session_destroy(s);
	cl->s = NULL;
	assert_null(session_find("member"));
	assert_int_equal(count_ev(EV_SUB_REMOVED), 2);
	assert_int_equal(n_tree, 0);
	/* Dropped: the QoS 2 one already sent (this member's alone [MQTT-4.8.2-5])
	 * and the plain one; the unacknowledged shared QoS 1 ones are not dropped
	 * but orphaned: another member may take them. */
	assert_int_equal(count_ev(EV_DROPPED), 2);
	for (i = 0; i < n_evs; i++)
		if (evs[i].type == EV_DROPPED && evs[i].shared)
			n_shared_dropped++;
	assert_int_equal(n_shared_dropped, 1);
	assert_int_equal(count_ev(EV_ORPHANED), 2);
	for (i = 0; i < n_evs; i++)
		if (evs[i].type == EV_ORPHANED) {
			assert_int_equal(evs[i].qos, 1);
			assert_string_equal(evs[i].text, "g");
		}
	ending = only_ev(EV_ENDING);
	assert_int_equal(ending, n_evs - 1); /* last: its subscriptions are gone by then */
	assert_int_equal(count_ev(EV_ACKED), 0);
	assert_null(cl->c->session); /* the connection let go of it */
	no_leftovers();
}

static void detach_clean_destroys(void **state)
{
	struct client *cl = client_online("clean", 0, 10);
	struct session *s = cl->s;
	bool existed;

	assert_int_equal(session_subscribe(s, "a/b", 3, 0, 0, &existed), 0);
	assert_int_equal(deliver(cl, "inflight", 1, NULL), OUTQ_DELIVERED);
	assert_int_equal(session_count(), 1);
	assert_int_equal(base.stats.clients_connected, 1);
	client_disconnect(cl, true);
	assert_null(cl->s);
	assert_null(session_find("clean"));
	assert_int_equal(session_count(), 0);
	assert_int_equal(base.stats.clients_connected, 0);
	assert_true(only_ev(EV_DETACHED) < only_ev(EV_ENDING));
	assert_int_equal(count_ev(EV_SUB_REMOVED), 1);
	assert_int_equal(count_ev(EV_DROPPED), 1);
	assert_int_equal(n_tree, 0);
	no_leftovers();
}

static void detach_persistent_arms_expiry(void **state)
{
	struct client *cl = client_online("kept", 60, 10), *forever;
	struct session *s = cl->s;
	uint64_t before, after;

	before = clock_now_ms();
	client_disconnect(cl, true);
	after = clock_now_ms();
	assert_ptr_equal(session_find("kept"), s);
	assert_null(s->conn);
	assert_null(s->q.conn);
	assert_true(s->disconnected_wall != 0);
	assert_true(timer_armed(&s->expiry_timer));
	assert_true(s->expiry_timer.due_ms >= before + 60000);
	assert_true(s->expiry_timer.due_ms <= after + 60000);
	assert_int_equal(count_ev(EV_ENDING), 0);
	timers_fire(); /* not yet */
	assert_ptr_equal(session_find("kept"), s);

	/* reconnecting disarms it */
	client_connect(cl, 10);
	assert_false(timer_armed(&s->expiry_timer));
	client_disconnect(cl, false);
	assert_true(timer_armed(&s->expiry_timer));

	/* the interval passes: the session ends */
	timer_arm(&s->expiry_timer, clock_now_ms());
	timers_fire();
	assert_null(session_find("kept"));
	assert_ptr_equal(evs[only_ev(EV_ENDING)].s, s);
	cl->s = NULL;

	/* a session that never expires arms nothing */
	forever = client_online("forever", UINT32_MAX, 10);
	client_disconnect(forever, true);
	assert_non_null(session_find("forever"));
	assert_false(timer_armed(&forever->s->expiry_timer));
	no_leftovers();
}

/* --- wills -------------------------------------------------------------------------- */

static struct msg *make_will(void)
{
	struct msg_spec sp;
	struct msg *m;

	memset(&sp, 0, sizeof(sp));
	sp.topic = "will/t";
	sp.topic_len = 6;
	sp.payload = "gone";
	sp.payload_len = 4;
	sp.qos = 1;
	sp.sender = "c1";
	m = msg_new(&sp);
	assert_non_null(m);
	return m;
}

static void will_published_when_the_delay_passes(void **state)
{
	struct client *cl = client_online("c1", 3600, 10);
	struct session *s = cl->s;
	struct msg *will = make_will();
	uint64_t id = will->id, before, after;
	size_t i;

	session_set_will(s, will, 30); /* takes the reference */
	before = clock_now_ms();
	client_disconnect(cl, false);
	after = clock_now_ms();
	assert_int_equal(count_ev(EV_WILL), 0);
	assert_true(timer_armed(&s->will_timer));
	assert_true(s->will_timer.due_ms >= before + 30000);
	assert_true(s->will_timer.due_ms <= after + 30000);
	timers_fire(); /* the delay has not passed */
	assert_int_equal(count_ev(EV_WILL), 0);

	timer_arm(&s->will_timer, clock_now_ms()); /* ... now it has */
	timers_fire();
	i = only_ev(EV_WILL);
	assert_int_equal(evs[i].msg_id, id);
	assert_string_equal(evs[i].text, "will/t");
	assert_ptr_equal(evs[i].s, s);
	assert_null(s->will);
	assert_ptr_equal(session_find("c1"), s); /* the session lives on */
	timers_fire();
	assert_int_equal(count_ev(EV_WILL), 1);
	no_leftovers();
}

static void will_not_published_when_the_client_returns(void **state)
{
	struct client *cl = client_online("c1", 3600, 10);
	struct session *s = cl->s;

	session_set_will(s, make_will(), 30);
	client_disconnect(cl, false);
	assert_true(timer_armed(&s->will_timer));
	client_connect(cl, 10); /* back before the delay [MQTT-3.1.3-9] */
	assert_false(timer_armed(&s->will_timer));
	assert_null(s->will);
	assert_int_equal(msg_alive(), 0);
	timers_fire();
	client_disconnect(cl, false);
	assert_int_equal(count_ev(EV_WILL), 0);
	no_leftovers();
	assert_int_equal(count_ev(EV_WILL), 0);
}

static void will_other_cases(void **state)
{
	struct client *a = client_online("graceful", 3600, 10);
	struct client *b = client_online("nodelay", 3600, 10);
	struct client *c = client_online("ends", 3600, 10);
	struct client *d = client_online("short", 5, 10);
	struct session *ending;
	uint64_t before;

	session_set_will(a->s, make_will(), 30);
	session_set_will(b->s, make_will(), 0);
	session_set_will(c->s, make_will(), 30);
	session_set_will(d->s, make_will(), 30);
	/* a DISCONNECT without will: no will */
	client_disconnect(a, true);
	assert_null(a->s->will);
	assert_int_equal(count_ev(EV_WILL), 0);
	/* no delay: at once */
	client_disconnect(b, false);
	assert_ptr_equal(evs[only_ev(EV_WILL)].s, b->s);
	/* the session ends first: the will goes then [MQTT-3.1.3-9] */
	client_disconnect(c, false);
	assert_int_equal(count_ev(EV_WILL), 1);
	ending = c->s;
	session_destroy(c->s);
	c->s = NULL;
	assert_int_equal(count_ev(EV_WILL), 2);
	assert_int_equal(evs[n_evs - 2].type, EV_WILL); /* then the session ends */
	assert_ptr_equal(evs[n_evs - 2].s, ending);
	assert_int_equal(evs[n_evs - 1].type, EV_ENDING);
	/* a delay longer than the session's expiry: the expiry's */
	before = clock_now_ms();
	client_disconnect(d, false);
	assert_true(timer_armed(&d->s->will_timer));
	assert_true(d->s->will_timer.due_ms >= before + 5000);
	assert_true(d->s->will_timer.due_ms <= clock_now_ms() + 5000);
	no_leftovers();
	assert_int_equal(count_ev(EV_WILL), 2); /* shutdown publishes no will */
}

/* --- out of memory ------------------------------------------------------------------ */

static void deliver_out_of_memory(void **state)
{
	static const uint32_t subids[] = { 3, 4 };
	static const char share[] = "g\0t/#";
	int lost = 0, ok = 0;
	long n;

	for (n = 0; n < 24; n++) {
		struct client *cl;
		struct outq *q;
		struct msg *m = make_msg("x", 1);
		int rc;

		n_clients = 0;
		cl = client_online("c1", 0, 5);
		q = &cl->s->q;
		n_evs = 0;
		mem_fail_after(n);
		rc = outq_deliver(q, m, 1, false, subids, 2, share);
		mem_fail_after(-1);
		if (rc == -1) {
			lost++;
			assert_int_equal(outq_inflight(q) + outq_queued(q), 0);
			assert_string_equal(evs[only_ev(EV_DROPPED)].text, "out of memory");
		} else {
			assert_int_equal(rc, OUTQ_DELIVERED);
			assert_int_equal(count_ev(EV_DROPPED), 0);
			assert_int_equal(outq_inflight(q) + outq_queued(q), 1);
			outq_pump(q); /* one that could not be written goes now */
			assert_int_equal(outq_inflight(q), 1);
			assert_int_equal(outq_queued(q), 0);
			assert_int_equal(got_one(cl)->packet_id, q->inflight.head->packet_id);
			assert_int_equal(outq_on_puback(q, q->inflight.head->packet_id, 0), 0);
			ok++;
		}
		/* offline too */
		client_disconnect(cl, false);
		cl = client_new("c2", 3600);
		mem_fail_after(n);
		rc = outq_deliver(&cl->s->q, m, 1, false, subids, 2, share);
		mem_fail_after(-1);
		assert_true(rc == -1 || rc == OUTQ_DELIVERED);
		assert_int_equal(outq_queued(&cl->s->q), rc == -1 ? 0 : 1);
		msg_unref(m);
		no_leftovers();
	}
	assert_true(lost > 0 && ok > 0);
}

static void subscribe_out_of_memory(void **state)
{
	int lost = 0, ok = 0;
	long n;

	for (n = 0; n < 8; n++) {
		struct client *cl;
		bool existed = true;
		int rc;

		n_clients = 0;
		cl = client_new("c1", 0);
		mem_fail_after(n);
		rc = session_subscribe(cl->s, "a/+/c", 5, 1, 9, &existed);
		mem_fail_after(-1);
		if (rc) {
			assert_int_equal(rc, -1);
			assert_int_equal(cl->s->n_subs, 0);
			assert_null(cl->s->subs);
			assert_int_equal(n_tree, 0); /* the tree entry was taken back */
			lost++;
		} else {
			assert_int_equal(cl->s->n_subs, 1);
			assert_string_equal(cl->s->subs->filter, "a/+/c");
			assert_int_equal(n_tree, 1);
			assert_false(existed);
			ok++;
		}
		no_leftovers();
	}
	assert_true(lost > 0 && ok > 0);

	/* the topic tree itself refuses */
	n_clients = 0;
	{
		struct client *cl = client_new("c1", 0);
		bool existed;

		tree_refuses = true;
		assert_int_equal(session_subscribe(cl->s, "a/b", 3, 0, 0, &existed), -1);
		tree_refuses = false;
		assert_int_equal(cl->s->n_subs, 0);
		assert_int_equal(n_tree, 0);
	}
	no_leftovers();
}

static void create_out_of_memory(void **state)
{
	long n;
	int made = 0;

	for (n = 0; n < 6; n++) {
		struct session *s;

		mem_fail_after(n);
		s = session_create("c1", MQTT_V5);
		mem_fail_after(-1);
		if (!s) {
			assert_null(session_find("c1"));
			assert_int_equal(session_count(), 0);
			continue;
		}
		assert_ptr_equal(session_find("c1"), s);
		assert_int_equal(session_count(), 1);
		made++;
		session_destroy(s);
		session_destroy_all(); /* frees the table too: the next round allocates it */
	}
	assert_true(made > 0);
}

/* --- durable queues: a QoS 2 PUBLISH waits for its prepared row --------------------- */

/*
 * Persistence on, a persistent session: its queue is durable, and a QoS 2
 * delivery has its packet id and the "sent" state committed to the store
 * before its PUBLISH goes out (prepare_qos2), so that after a crash it is
 * resent under that id and never as a new message; this holds whatever
 * stands before it in the queue. The store's writer thread commits, but
 * the loop learns of a commit only through store_poll(), which only the
 * tests call here: what may go out before a commit is decided, not raced.
 */
static char dir[64], path[96];

static int setup_durable(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/sluice-test-outq-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sluice.db", dir);
	config_defaults(&cfg);
	cfg.persistence = true;
	cfg.persistence_file = path;
	start_layers();
	assert_int_equal(store_open(&cfg), 0);
	assert_true(store_on());
	assert_int_equal(store_start(NULL), 0); /* no wake-up: the tests poll */
	outq_start(); /* the commit hook that lets fenced queues go on */
	return 0;
}

static int teardown_durable(void **state)
{
	char cmd[128];
	size_t i;

	mem_fail_after(-1);
	session_destroy_all();
	for (i = 0; i < n_clients; i++) {
		if (clients[i].c)
			conn_on_closed(clients[i].c);
		clients[i].c = NULL;
	}
	store_close(); /* writes what is left: the messages its operations hold go */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	cfg.persistence_file = NULL; /* not the config's to free */
	return teardown(state);
}

/*
 * A persistent session as the broker makes one: CONNECT with an expiry,
 * stored (which gives it its key), then the connection drops.
 */
static struct client *durable_client(const char *id)
{
	struct client *cl = client_online(id, 3600, 10);

	session_save(cl->s); /* as proto_connect: before the CONNACK */
	assert_true(cl->s->q.sid != 0);
	assert_true(cl->s->q.durable);
	client_disconnect(cl, false);
	assert_non_null(cl->s);
	return cl;
}

/*
 * A message published and routed to cl, as proto_publish does it: at QoS 2
 * it carries the fence of the batch recording it. Returns that fence (0 for
 * QoS 0/1).
 */
static uint64_t publish(struct client *cl, const char *payload, uint8_t qos)
{
	struct msg *m = make_msg(payload, qos);
	uint64_t fence = 0;

	if (qos == 2)
		fence = m->fence = store_fence();
	assert_int_equal(outq_deliver(&cl->s->q, m, qos, false, NULL, 0, NULL), OUTQ_DELIVERED);
	msg_unref(m);
	return fence;
}

/* A delivery row as the store holds it, read back with store_load_deliveries(). */
struct row {
	bool loaded;
	int status;
	size_t n;
	uint64_t seq;
	uint8_t qos, state;
	uint16_t packet_id;
};

static void on_row(void *arg, int status, const struct store_delivery_row *rows, size_t n)
{
	struct row *r = arg;

	r->loaded = true;
	r->status = status;
	r->n = n;
	if (n) {
		r->seq = rows[0].seq;
		r->qos = rows[0].qos;
		r->state = rows[0].state;
		r->packet_id = rows[0].packet_id;
	}
}

/* The store holds the row of the delivery at seq as: QoS 2, sent, with packet id `id`. */
static void assert_stored_as_sent(const struct outq *q, uint64_t seq, uint16_t id)
{
	struct row r = { 0 };

	store_load_deliveries(q->sid, seq, 1, on_row, &r);
	WAIT_FOR(r.loaded);
	assert_int_equal(r.status, 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.seq, seq);
	assert_int_equal(r.qos, 2);
	assert_int_equal(r.state, OUT_PUBLISHED);
	assert_int_equal(r.packet_id, id);
}

/* The queue's head is a QoS 2 entry prepared and waiting for the commit of its row. */
static struct out_entry *prepared_head(const struct outq *q)
{
	struct out_entry *e = q->queue.head;

	assert_non_null(e);
	assert_int_equal(e->qos, 2);
	assert_true(e->prepared);
	assert_false(e->sent_once);
	assert_true(e->packet_id != 0);
	assert_true(store_fenced(e->fence));
	assert_true(q->fence_wait);
	return e;
}

/* Ends the sessions, writes out the store (its operations hold messages), checks what is left. */
static void durable_leftovers(void)
{
	end_clients();
	store_close();
	assert_int_equal(msg_alive(), 0);
	assert_int_equal(n_tree, 0);
}

/*
 * Offline, a QoS 1 then a QoS 2 message. Back online, the QoS 1 PUBLISH
 * goes out at once; the QoS 2 one, though it does not head the queue, only
 * once the batch with its prepared row (its id, "sent") has committed, and
 * with that id.
 */
static void durable_qos2_behind_qos1_waits_for_its_row(void **state)
{
	struct client *cl = durable_client("c1");
	struct outq *q = &cl->s->q;
	struct out_entry *e;
	uint64_t fence, seq;
	uint16_t id, id1;
	struct rx *r;

	publish(cl, "one", 1);
	fence = publish(cl, "two", 2);
	assert_int_equal(outq_queued(q), 2);
	WAIT_FOR(!store_fenced(fence)); /* published a while ago: it and its rows are on disk */

	client_connect(cl, 10);
	session_resume(cl->s);
	r = got_one(cl); /* the QoS 1 one, alone */
	assert_string_equal(r->payload, "one");
	assert_int_equal(r->qos, 1);
	id1 = r->packet_id;
	e = prepared_head(q);
	assert_true(e->packet_id != id1);
	id = e->packet_id;
	seq = e->seq;
	fence = e->fence;
	assert_int_equal(outq_inflight(q), 1);
	outq_pump(q); /* no commit, no PUBLISH */
	got_none(cl);

	WAIT_FOR(!store_fenced(fence)); /* the commit hook pumps the queue */
	r = got_one(cl);
	assert_string_equal(r->payload, "two");
	assert_int_equal(r->qos, 2);
	assert_false(r->dup);
	assert_int_equal(r->packet_id, id);
	assert_false(store_pending()); /* nothing of it was left to write when it went */
	assert_int_equal(outq_inflight(q), 2);
	assert_int_equal(outq_queued(q), 0);
	assert_stored_as_sent(q, seq, id);

	assert_int_equal(outq_on_puback(q, id1, 0), 0);
	assert_int_equal(outq_on_pubrec(q, id, 0), 0);
	assert_int_equal(outq_on_pubcomp(q, id), 0);
	assert_int_equal(count_ev(EV_ACKED), 2);
	assert_int_equal(outq_inflight(q), 0);
	durable_leftovers();
}

/*
 * Two QoS 2 messages in quick succession to a live client: the second is
 * published while the batch with the first is being written, so it lands
 * in the batch that then takes the first's prepared row. When that batch
 * commits the first goes out; the second, behind an entry that was
 * prepared, must be prepared in turn and wait for its own row.
 */
static void durable_qos2_behind_prepared_qos2_waits_for_its_row(void **state)
{
	struct client *cl = durable_client("c1");
	struct outq *q = &cl->s->q;
	uint64_t fence1, fence2, seq1, seq2;
	struct out_entry *e;
	uint16_t id1, id2;
	struct rx *r;

	client_connect(cl, 10);
	session_resume(cl->s);
	fence1 = publish(cl, "first", 2);
	store_kick(); /* the writer has that batch now; the next one stays open */
	fence2 = publish(cl, "second", 2);
	assert_true(fence2 > fence1);
	got_none(cl); /* each waits for its message's commit */

	WAIT_FOR(!store_fenced(fence1));
	got_none(cl);
	e = prepared_head(q);
	assert_int_equal(e->fence, fence2); /* the batch that holds the second message */
	assert_non_null(e->next);
	assert_false(e->next->prepared); /* its message is not committed yet */
	id1 = e->packet_id;
	seq1 = e->seq;

	WAIT_FOR(!store_fenced(fence2)); /* the first's row and the second's message */
	r = got_one(cl); /* the first, alone */
	assert_string_equal(r->payload, "first");
	assert_int_equal(r->qos, 2);
	assert_int_equal(r->packet_id, id1);
	e = prepared_head(q);
	assert_true(e->packet_id != id1);
	id2 = e->packet_id;
	seq2 = e->seq;
	fence2 = e->fence;
	outq_pump(q); /* no commit, no PUBLISH */
	got_none(cl);

	WAIT_FOR(!store_fenced(fence2));
	r = got_one(cl);
	assert_string_equal(r->payload, "second");
	assert_int_equal(r->qos, 2);
	assert_false(r->dup);
	assert_int_equal(r->packet_id, id2);
	assert_false(store_pending());
	assert_stored_as_sent(q, seq1, id1);
	assert_stored_as_sent(q, seq2, id2);

	assert_int_equal(outq_on_pubrec(q, id1, 0), 0);
	assert_int_equal(outq_on_pubcomp(q, id1), 0);
	assert_int_equal(outq_on_pubrec(q, id2, 0), 0);
	assert_int_equal(outq_on_pubcomp(q, id2), 0);
	assert_int_equal(count_ev(EV_ACKED), 2);
	durable_leftovers();
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
#define D(f) cmocka_unit_test_setup_teardown(f, setup_durable, teardown_durable)
	const struct CMUnitTest tests[] = {
		T(qos1_window_then_queue_in_order),
		T(refusals_report_their_reason),
		T(qos2_flow),
		T(packet_ids_unique_and_wrapping),
		T(offline_session_queues_qos1_drops_qos0),
		T(queue_limit_gives_quota),
		T(reconnect_resends_within_smaller_window),
		T(destroy_reports_shared_deliveries),
		T(detach_clean_destroys),
		T(detach_persistent_arms_expiry),
		T(will_published_when_the_delay_passes),
		T(will_not_published_when_the_client_returns),
		T(will_other_cases),
		T(deliver_out_of_memory),
		T(subscribe_out_of_memory),
		T(create_out_of_memory),
		D(durable_qos2_behind_qos1_waits_for_its_row),
		D(durable_qos2_behind_prepared_qos2_waits_for_its_row),
	};
#undef T
#undef D
	return cmocka_run_group_tests(tests, NULL, NULL);
}
