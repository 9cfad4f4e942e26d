/*
 * test_router.c - routing (src/router.c) with real sessions, the real
 * plugin chains and the real host table, but no network: each client is a
 * session attached to a struct conn over a fake transport (an ops table
 * that only counts calls), put in the state the protocol layer would leave
 * it in after CONNACK. What a client "received" is read back from its
 * connection's output buffer and decoded with codec_decode(), as a client
 * would; persistence stays off.
 *
 * Plugins are linked into this program (plugin_add) and handed
 * plugin_host_table(), so a plugin's host->route(), release() or deliver()
 * go through the broker's own code. Each test plugin is a slot in tps[]:
 * the test fills in the callbacks and behaviour, the plugin's init
 * registers them, and every callback records what it saw in evs[].
 *
 * Every test ends with the broker's own shutdown order (STOP, timers,
 * holds, unload, sessions, router) and checks that no message is left
 * alive: a reference a delivery, a hold or a plugin took and never gave
 * back would show there.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "codec.h"
#include "config.h"
#include "conn.h"
#include "groupq.h"
#include "holds.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "msg.h"
#include "outq.h"
#include "plugin.h"
#include "plugin_host.h"
#include "router.h"
#include "session.h"
#include "timers.h"

/* --- the fake transport and clients ------------------------------------------------ */

#include "fake_transport.h"

struct client {
	struct session *s; /* NULL once the test ended the session */
	struct conn *c;
	struct fake_transport t;
};

#define MAX_CLIENTS 16
static struct client clients[MAX_CLIENTS];
static size_t n_clients;
static struct config cfg;
static size_t msgs_before; /* alive when the test began (a failed test may leave some) */

/* A live connection for cl's session, as the protocol layer leaves it after CONNACK. */
static void attach_conn(struct client *cl, uint16_t receive_max)
{
	cl->c = conn_new(&fake_ops, &cl->t, false, "test", 0);
	assert_non_null(cl->c);
	cl->c->state = CONN_ACTIVE;
	cl->c->version = cl->s->version;
	cl->c->client_receive_max = receive_max;
	cl->c->session = cl->s;
	cl->c->client_id = cl->s->client_id;
	session_attach(cl->s, cl->c);
}

/* A connected client: a session attached to a live connection (CONNACK sent). */
static struct client *client_new(const char *id, uint8_t version, uint16_t receive_max)
{
	struct client *cl;

	assert_true(n_clients < MAX_CLIENTS);
	cl = &clients[n_clients++];
	memset(cl, 0, sizeof(*cl));
	cl->s = session_create(id, version);
	assert_non_null(cl->s);
	attach_conn(cl, receive_max);
	return cl;
}

static void client_end(struct client *cl)
{
	session_destroy(cl->s);
	cl->s = NULL;
}

static void sub(struct client *cl, const char *filter, uint8_t options, uint32_t subid)
{
	bool existed = true;

	assert_int_equal(session_subscribe(cl->s, filter, strlen(filter), options, subid, &existed),
			 0);
	assert_false(existed);
}

/* One PUBLISH as the client decoded it. */
struct rx {
	char topic[64];
	char payload[64];
	uint8_t qos;
	bool retain, dup;
	uint16_t packet_id;
	uint32_t subids[8];
	size_t n_subids;
};

#define MAX_RX 64

/*
 * Everything written to cl since the last call, decoded; every packet must
 * be a PUBLISH. Returns how many; the bytes are marked as sent.
 */
static size_t drain(struct client *cl, struct rx *out, size_t max)
{
	uint8_t *p;
	size_t len = conn_pending(cl->c, &p), off = 0, n = 0;

	while (off < len) {
		size_t rl = 0, hdr = 1, shift = 0;
		struct mqtt_packet pkt;
		struct rx *r;
		uint32_t subid;
		size_t pos = 0;

		do {
			assert_true(off + hdr < len);
			rl |= (size_t)(p[off + hdr] & 0x7f) << shift;
			shift += 7;
		} while (p[off + hdr++] & 0x80);
		assert_true(off + hdr + rl <= len);
		assert_int_equal(codec_decode(p + off, hdr + rl, cl->c->version, &pkt), CODEC_OK);
		assert_int_equal(pkt.type, MQTT_PUBLISH);
		assert_true(n < max);
		r = &out[n++];
		memset(r, 0, sizeof(*r));
		assert_true(pkt.u.publish.topic.len < sizeof(r->topic));
		memcpy(r->topic, pkt.u.publish.topic.p, pkt.u.publish.topic.len);
		assert_true(pkt.u.publish.payload_len < sizeof(r->payload));
		if (pkt.u.publish.payload_len)
			memcpy(r->payload, pkt.u.publish.payload, pkt.u.publish.payload_len);
		r->qos = pkt.u.publish.qos;
		r->retain = pkt.u.publish.retain;
		r->dup = pkt.u.publish.dup;
		r->packet_id = pkt.u.publish.packet_id;
		if (cl->c->version == MQTT_V5)
			while (props_subid_next(&pkt.u.publish.props, &pos, &subid))
				r->subids[r->n_subids++] = subid;
		off += hdr + rl;
	}
	if (len)
		conn_sent(cl->c, len);
	return n;
}

/* How many PUBLISHes cl received since the last look (their contents dropped). */
static size_t received(struct client *cl)
{
	static struct rx rx[MAX_RX];

	return drain(cl, rx, MAX_RX);
}

/* Exactly one PUBLISH since the last look, returned in *r. */
static void received_one(struct client *cl, struct rx *r)
{
	static struct rx rx[MAX_RX];
	size_t n = drain(cl, rx, MAX_RX);

	if (n != 1)
		fail_msg("client '%s': %zu PUBLISH packets, expected 1", cl->c->client_id, n);
	*r = rx[0];
}

static bool has_subid(const struct rx *r, uint32_t id)
{
	size_t i;

	for (i = 0; i < r->n_subids; i++)
		if (r->subids[i] == id)
			return true;
	return false;
}

static struct msg *new_msg(const char *topic, const char *payload, uint8_t qos, bool retain,
			   const char *sender)
{
	struct msg_spec s;
	struct msg *m;

	memset(&s, 0, sizeof(s));
	s.topic = topic;
	s.topic_len = strlen(topic);
	s.payload = payload;
	s.payload_len = strlen(payload);
	s.qos = qos;
	s.retain = retain;
	s.sender = sender;
	m = msg_new(&s);
	assert_non_null(m);
	return m;
}

/* Routes a new message and lets go of it; returns what router_route did. */
static int publish(const char *topic, const char *payload, uint8_t qos, bool retain,
		   const char *sender)
{
	struct msg *m = new_msg(topic, payload, qos, retain, sender);
	int rc = router_route(m, NULL);

	msg_unref(m);
	return rc;
}

/* The same through the PUBLISH chain from plugin `from`. */
static int publish_from(const char *topic, uint8_t qos, size_t from)
{
	struct msg *m = new_msg(topic, "x", qos, false, "pub");
	int rc = router_route_from(m, NULL, from);

	msg_unref(m);
	return rc;
}

/* --- test plugins -------------------------------------------------------------------- */

/* One event as a plugin saw it (copies: the event's pointers are borrowed). */
struct ev {
	int plugin;
	enum sp_event_type type;
	char client[32];
	char topic[64];
	char share_group[16], share_filter[16];
	uint8_t qos, reason;
	uint64_t hold_id;
	size_t n_members;
	char members[4][16];
	bool why;
};

#define MAX_EVS 256
static struct ev evs[MAX_EVS];
static size_t n_evs;

enum mode {
	PASS,
	SKIP,
	HOLD,
	PICK,
	FAIL, /* the callback returns non-zero */
};

struct tp {
	struct sp_plugin *self;
	const struct sp_host *host;
	sp_callback cb[SP_EV__COUNT]; /* what init registers */
	bool init_fails;
	int cleaned;
	int seen[SP_EV__COUNT];
	enum mode mode;
	char match[32]; /* the client (DELIVER) or member (CHOOSE) the mode applies to */
	size_t pick_index; /* PICK with no match: this index */
	uint64_t next_hold;
	struct sp_msg *taken;
	int route_rc[16];
	size_t n_route_rc;
	int routing; /* levels of routing in progress inside its callback */
	bool quiet; /* its routing callbacks route nothing */
	int deliver_rc;
};

static struct tp tps[4];
static const struct sp_opt slot_opts[4][1] = {
	{ { "slot", "0" } }, { { "slot", "1" } }, { { "slot", "2" } }, { { "slot", "3" } }
};

static int tp_init(const struct sp_host *host, struct sp_plugin *self, const struct sp_opt *opts,
		   int n_opts, void **udata)
{
	struct tp *p;
	int ev;

	assert_int_equal(n_opts, 1);
	assert_string_equal(opts[0].key, "slot");
	p = &tps[atoi(opts[0].value)];
	assert_int_equal(host->api, SLUICE_PLUGIN_API);
	assert_true(SP_HOST_HAS(host, deliver));
	p->self = self;
	p->host = host;
	*udata = p;
	for (ev = 0; ev < SP_EV__COUNT; ev++)
		if (p->cb[ev])
			assert_int_equal(host->on(self, (enum sp_event_type)ev, p->cb[ev]), 0);
	return p->init_fails ? -1 : 0;
}

static void tp_cleanup(void *udata)
{
	((struct tp *)udata)->cleaned++;
}

static int add_plugin(int slot)
{
	char name[16];

	snprintf(name, sizeof(name), "test%d", slot);
	return plugin_add(name, tp_init, tp_cleanup, slot_opts[slot], 1, plugin_host_table());
}

static void copy(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src ? src : "");
}

static struct ev *record(struct tp *p, const struct sp_event *e)
{
	struct ev *r;
	size_t i;

	p->seen[e->type]++;
	assert_true(n_evs < MAX_EVS);
	r = &evs[n_evs++];
	memset(r, 0, sizeof(*r));
	r->plugin = (int)(p - tps);
	r->type = e->type;
	copy(r->client, sizeof(r->client), e->client_id);
	if (e->msg)
		copy(r->topic, sizeof(r->topic), p->host->msg_topic(e->msg));
	copy(r->share_group, sizeof(r->share_group), e->share_group);
	copy(r->share_filter, sizeof(r->share_filter), e->share_filter);
	r->qos = e->qos;
	r->reason = e->reason;
	r->hold_id = e->hold_id;
	r->n_members = e->n_members;
	for (i = 0; i < e->n_members && i < 4; i++)
		copy(r->members[i], sizeof(r->members[i]), e->members[i].client_id);
	r->why = e->why != NULL;
	return r;
}

/* The n-th recorded event of type t (n from 0), or NULL. */
static const struct ev *find_ev(enum sp_event_type t, size_t n)
{
	size_t i;

	for (i = 0; i < n_evs; i++)
		if (evs[i].type == t && n-- == 0)
			return &evs[i];
	return NULL;
}

static size_t count_ev(enum sp_event_type t)
{
	size_t i, n = 0;

	for (i = 0; i < n_evs; i++)
		n += evs[i].type == t;
	return n;
}

static bool applies(const struct tp *p, const char *who)
{
	return !p->match[0] || (who && !strcmp(p->match, who));
}

/* Records anything; the verdict comes from the mode. */
static int cb_record(const struct sp_event *e, struct sp_result *res, void *udata)
{
	(void)res;
	record(udata, e);
	return 0;
}

static int cb_publish(const struct sp_event *e, struct sp_result *res, void *udata)
{
	struct tp *p = udata;
	const char *topic = p->host->msg_topic(e->msg);

	record(p, e);
	if (!strncmp(topic, "rej/", 4)) {
		res->verdict = SP_REJECT;
		res->reason = MQTT_RC_NOT_AUTHORIZED;
		res->reason_string = "no";
	} else if (!strncmp(topic, "low/", 4)) {
		res->verdict = SP_REJECT;
		res->reason = 0x10; /* not a refusal code: the broker makes it 0x80 */
	} else if (!strncmp(topic, "take/", 5)) {
		assert_null(p->taken);
		p->taken = p->host->msg_ref(e->msg);
		res->verdict = SP_TAKE;
	} else if (p->mode == FAIL) {
		res->verdict = SP_PASS;
		return -1;
	}
	return 0;
}

static int cb_deliver(const struct sp_event *e, struct sp_result *res, void *udata)
{
	struct tp *p = udata;

	record(p, e);
	if (!applies(p, e->client_id))
		return 0;
	switch (p->mode) {
	case SKIP:
		res->verdict = SP_SKIP;
		break;
	case HOLD:
		res->verdict = SP_HOLD;
		res->hold_id = ++p->next_hold;
		break;
	case FAIL:
		res->verdict = SP_SKIP; /* ignored: the callback failed */
		return -1;
	default:
		break;
	}
	return 0;
}

static int cb_choose(const struct sp_event *e, struct sp_result *res, void *udata)
{
	struct tp *p = udata;
	size_t i;

	record(p, e);
	switch (p->mode) {
	case SKIP:
		res->verdict = SP_SKIP;
		break;
	case HOLD:
		res->verdict = SP_HOLD;
		res->hold_id = ++p->next_hold;
		break;
	case PICK:
		res->member = p->pick_index;
		for (i = 0; i < e->n_members; i++)
			if (p->match[0] && !strcmp(e->members[i].client_id, p->match))
				res->member = i;
		break;
	default:
		break;
	}
	return 0;
}

static int setup(void **state)
{
	(void)state;
	config_defaults(&cfg);
	cfg.persistence = false;
	cfg.sys_interval = 0;
	base_init(&cfg);
	log_set_level(LOG_ERR);
	assert_int_equal(router_init(), 0);
	memset(tps, 0, sizeof(tps));
	memset(clients, 0, sizeof(clients));
	n_clients = 0;
	n_evs = 0;
	msgs_before = msg_alive();
	return 0;
}

static int teardown(void **state)
{
	size_t i;

	(void)state;
	mem_fail_after(-1);
	plugin_stop();
	plugin_host_stop();
	holds_clear();
	for (i = 0; i < 4; i++)
		if (tps[i].taken)
			tps[i].host->msg_unref(tps[i].taken);
	plugin_unload_all();
	groupq_stop();
	session_destroy_all();
	groupq_free_all();
	router_free();
	for (i = 0; i < n_clients; i++)
		conn_on_closed(clients[i].c);
	conn_drain_caches();
	msg_drain_caches();
	timers_loop_free();
	base_free();
	config_free(&cfg);
	if (msg_alive() != msgs_before) {
		fprintf(stderr, "%zu message(s) leaked\n", msg_alive() - msgs_before);
		return -1;
	}
	return 0;
}

/* --- routing -------------------------------------------------------------------------- */

/* [MQTT-3.3.4-2, -3]: one copy per session, at the highest granted QoS, every subid. */
static void test_fanout_overlapping(void **state)
{
	struct client *a = client_new("A", MQTT_V5, 10), *b = client_new("B", MQTT_V311, 10),
		      *c = client_new("C", MQTT_V5, 10);
	struct route_result res;
	struct msg *m;
	struct rx r;

	(void)state;
	sub(a, "a/+", 1, 1);
	sub(a, "a/#", 2, 2);
	sub(a, "x/#", 0, 3);
	sub(b, "a/b", 0, 0);
	sub(b, "+/b", 1, 0);
	sub(c, "c/d", 2, 4);
	assert_int_equal(router_subscription_count(), 6);

	m = new_msg("a/b", "hello", 2, false, "P");
	assert_int_equal(router_route(m, &res), 2);
	msg_unref(m);
	assert_int_equal(res.delivered, 2);
	assert_int_equal(res.quota, 0);
	assert_false(res.oom);
	received_one(a, &r);
	assert_string_equal(r.topic, "a/b");
	assert_string_equal(r.payload, "hello");
	assert_int_equal(r.qos, 2);
	assert_false(r.retain);
	assert_false(r.dup);
	assert_int_not_equal(r.packet_id, 0);
	assert_int_equal(r.n_subids, 2);
	assert_true(has_subid(&r, 1) && has_subid(&r, 2));
	received_one(b, &r);
	assert_int_equal(r.qos, 1); /* the higher of 0 and 1, below the message's 2 */
	assert_int_not_equal(r.packet_id, 0);
	assert_int_equal(received(c), 0);

	/* never above the QoS it was published with */
	assert_int_equal(publish("a/b", "q0", 0, false, "P"), 2);
	received_one(a, &r);
	assert_int_equal(r.qos, 0);
	assert_int_equal(r.packet_id, 0);
	received_one(b, &r);
	assert_int_equal(r.qos, 0);
	/* one of A's subscriptions only */
	assert_int_equal(publish("x/y", "q1", 1, false, "P"), 1);
	received_one(a, &r);
	assert_int_equal(r.n_subids, 1);
	assert_int_equal(r.subids[0], 3);
	assert_int_equal(r.qos, 0);
	assert_int_equal(received(b), 0);
	/* nobody */
	assert_int_equal(publish("zz", "none", 1, false, "P"), 0);
	/* many messages in a row: each once, in order */
	assert_int_equal(publish("a/c", "1", 1, false, "P"), 1);
	assert_int_equal(publish("a/c", "2", 1, false, "P"), 1);
	assert_int_equal(publish("c/d", "3", 1, false, "P"), 1);
	assert_int_equal(received(a), 2);
	assert_int_equal(received(c), 1);
	assert_int_equal(received(b), 0);
}

/* [MQTT-3.8.3-3] no local: not to the publisher through that subscription. */
static void test_no_local(void **state)
{
	struct client *a = client_new("A", MQTT_V5, 10), *b = client_new("B", MQTT_V5, 10);
	struct rx r;

	(void)state;
	sub(a, "t", 1 | MQTT_SUBOPT_NO_LOCAL, 4);
	sub(b, "t", 0, 0);
	assert_int_equal(publish("t", "from A", 1, false, "A"), 1);
	assert_int_equal(received(a), 0);
	assert_int_equal(received(b), 1);
	assert_int_equal(publish("t", "from B", 1, false, "B"), 2);
	received_one(a, &r);
	assert_true(has_subid(&r, 4));
	assert_int_equal(received(b), 1);
	/* another subscription of A without no local still takes A's own message */
	sub(a, "t/#", 1, 5);
	assert_int_equal(publish("t", "from A", 1, false, "A"), 2);
	received_one(a, &r);
	assert_int_equal(r.n_subids, 1);
	assert_int_equal(r.subids[0], 5);
	assert_int_equal(received(b), 1);
}

/* A shared group: exactly one member per message, in turn among ready members. */
static void test_shared_round_robin(void **state)
{
	struct client *m[3], *plain;
	static struct rx rx[MAX_RX];
	char payload[8];
	size_t i, k, n;

	(void)state;
	m[0] = client_new("m1", MQTT_V5, 10);
	m[1] = client_new("m2", MQTT_V5, 1); /* a window of one */
	m[2] = client_new("m3", MQTT_V5, 10);
	plain = client_new("plain", MQTT_V5, 10);
	for (i = 0; i < 3; i++)
		sub(m[i], "$share/g/s/+", 1, (uint32_t)(10 + i));
	sub(plain, "s/+", 0, 0);
	assert_int_equal(router_subscription_count(), 4);

	for (i = 0; i < 9; i++) {
		snprintf(payload, sizeof(payload), "%zu", i);
		assert_int_equal(publish("s/x", payload, 0, false, "P"), 2);
	}
	assert_int_equal(received(plain), 9);
	for (k = 0; k < 3; k++) {
		n = drain(m[k], rx, MAX_RX);
		assert_int_equal(n, 3);
		for (i = 0; i < n; i++) {
			snprintf(payload, sizeof(payload), "%zu", 3 * i + k);
			assert_string_equal(rx[i].payload, payload); /* m1, m2, m3, m1, ... */
			assert_int_equal(rx[i].n_subids, 1);
			assert_int_equal(rx[i].subids[0], 10 + k);
		}
	}

	/* QoS 1: m1's turn, then m2's, whose window is then full */
	assert_int_equal(publish("s/x", "9", 1, false, "P"), 2);
	assert_int_equal(publish("s/x", "10", 1, false, "P"), 2);
	assert_int_equal(received(m[0]), 1);
	assert_int_equal(received(m[1]), 1);
	assert_int_equal(outq_inflight(&m[1]->s->q), 1);
	assert_false(outq_ready(&m[1]->s->q));
	/* m2 is skipped while it is not ready: m3, m1, m3, m1 */
	for (i = 11; i < 15; i++) {
		snprintf(payload, sizeof(payload), "%zu", i);
		assert_int_equal(publish("s/x", payload, 1, false, "P"), 2);
	}
	n = drain(m[2], rx, MAX_RX);
	assert_int_equal(n, 2);
	assert_string_equal(rx[0].payload, "11");
	assert_string_equal(rx[1].payload, "13");
	n = drain(m[0], rx, MAX_RX);
	assert_int_equal(n, 2);
	assert_string_equal(rx[0].payload, "12");
	assert_string_equal(rx[1].payload, "14");
	assert_int_equal(received(m[1]), 0);
	assert_int_equal(received(plain), 6);
}

/* [MQTT-3.3.1-5, -6, -8, -10, -12, -13]: the retained store and the RETAIN flag. */
static void test_retained(void **state)
{
	struct client *a, *b, *c;
	static struct rx rx[MAX_RX];
	struct rx r;
	size_t n, i;

	(void)state;
	assert_int_equal(publish("r/1", "v1", 1, true, "P"), 0);
	assert_int_equal(publish("r/2", "w", 0, true, "P"), 0);
	assert_int_equal(publish("r/1", "v2", 1, true, "P"), 0); /* replaces */
	assert_int_equal(publish("r/x", "not kept", 1, false, "P"), 0);
	assert_int_equal(router_retained_count(), 2);

	a = client_new("A", MQTT_V5, 10);
	sub(a, "r/+", 2, 7);
	router_send_retained(a->s, "r/+", 3, 2, 7);
	n = drain(a, rx, MAX_RX);
	assert_int_equal(n, 2);
	for (i = 0; i < n; i++) {
		assert_true(rx[i].retain); /* [MQTT-3.3.1-8] */
		assert_int_equal(rx[i].n_subids, 1);
		assert_int_equal(rx[i].subids[0], 7);
		if (!strcmp(rx[i].topic, "r/1")) {
			assert_string_equal(rx[i].payload, "v2");
			assert_int_equal(rx[i].qos, 1);
		} else {
			assert_string_equal(rx[i].topic, "r/2");
			assert_int_equal(rx[i].qos, 0);
		}
	}
	/* granted QoS caps it; a filter matching nothing sends nothing */
	router_send_retained(a->s, "r/1", 3, 0, 0);
	received_one(a, &r);
	assert_int_equal(r.qos, 0);
	assert_int_equal(r.n_subids, 0);
	router_send_retained(a->s, "q/#", 3, 2, 0);
	assert_int_equal(received(a), 0);

	/* live routing: RETAIN kept only with retain as published */
	b = client_new("B", MQTT_V5, 10);
	c = client_new("C", MQTT_V5, 10);
	sub(b, "r/#", 1, 0);
	sub(c, "r/#", 1 | MQTT_SUBOPT_RAP, 0);
	assert_int_equal(publish("r/3", "z", 1, true, "P"), 3);
	received_one(a, &r);
	assert_false(r.retain);
	received_one(b, &r);
	assert_false(r.retain);
	received_one(c, &r);
	assert_true(r.retain);
	assert_int_equal(router_retained_count(), 3);
	/* an empty retained payload clears the topic (and is still delivered) */
	assert_int_equal(publish("r/1", "", 1, true, "P"), 3);
	assert_int_equal(router_retained_count(), 2);
	router_send_retained(a->s, "r/1", 3, 1, 0);
	assert_int_equal(received(a), 1); /* the live copy above, no retained one */
}

/* router_deliver_to: one client's matching plain subscriptions, or one member of a group. */
static void test_deliver_to(void **state)
{
	struct client *a = client_new("A", MQTT_V5, 10), *b = client_new("B", MQTT_V5, 10),
		      *c = client_new("C", MQTT_V5, 10);
	struct msg *m = new_msg("d/x", "dx", 2, false, "P"),
		   *e = new_msg("e/f", "ef", 1, false, "P");
	struct rx r;
	size_t got;

	(void)state;
	sub(a, "d/+", 1, 3);
	sub(a, "d/x", 0, 4);
	sub(a, "$share/g/d/x", 2, 6);
	sub(b, "d/+", 1, 0);
	sub(c, "$share/g/d/x", 1, 0);

	assert_int_equal(router_deliver_to(m, "A", NULL, NULL, 0), 1);
	received_one(a, &r);
	assert_int_equal(r.qos, 1);
	assert_int_equal(r.n_subids, 2); /* both plain ones, not the shared one */
	assert_true(has_subid(&r, 3) && has_subid(&r, 4));
	assert_int_equal(received(b), 0);
	assert_int_equal(received(c), 0);
	/* unknown client, no matching subscription, only a shared one */
	assert_int_equal(router_deliver_to(m, "Z", NULL, NULL, 0), 0);
	assert_int_equal(router_deliver_to(e, "A", NULL, NULL, 0), 0);
	assert_int_equal(router_deliver_to(m, "C", NULL, NULL, 0), 0);
	assert_int_equal(received(a) + received(b) + received(c), 0);

	/* a group: one member */
	assert_int_equal(router_deliver_to(m, NULL, "g", "d/x", 0), 1);
	got = received(a);
	assert_int_equal(got + received(c), 1);
	assert_int_equal(received(b), 0);
	/* the other member next time */
	assert_int_equal(router_deliver_to(m, NULL, "g", "d/x", 0), 1);
	assert_int_equal(received(a), 1 - got);
	assert_int_equal(received(c), got);
	/* unknown group, a filter the group does not have, bad arguments */
	assert_int_equal(router_deliver_to(m, NULL, "h", "d/x", 0), 0);
	assert_int_equal(router_deliver_to(m, NULL, "g", "d/+", 0), 0);
	assert_int_equal(router_deliver_to(m, "A", "g", NULL, 0), -1);
	assert_int_equal(router_deliver_to(m, NULL, NULL, NULL, 0), -1);
	assert_int_equal(received(a) + received(b) + received(c), 0);
	msg_unref(m);
	msg_unref(e);
}

/* --- the PUBLISH chain ------------------------------------------------------------------ */

static void test_publish_chain(void **state)
{
	struct client *a;
	struct sp_result res;
	struct msg *m;

	(void)state;
	tps[0].cb[SP_EV_PUBLISH] = cb_publish;
	tps[1].cb[SP_EV_PUBLISH] = cb_record;
	assert_int_equal(add_plugin(0), 0);
	assert_int_equal(add_plugin(1), 0);
	assert_int_equal(plugin_count(), 2);
	assert_true(plugin_wants(SP_EV_PUBLISH));
	assert_false(plugin_wants(SP_EV_DELIVER));
	a = client_new("A", MQTT_V5, 10);
	sub(a, "#", 1, 0);

	/* passed by both */
	assert_int_equal(publish_from("ok/1", 1, 0), 1);
	assert_int_equal(received(a), 1);
	assert_int_equal(tps[0].seen[SP_EV_PUBLISH], 1);
	assert_int_equal(tps[1].seen[SP_EV_PUBLISH], 1);
	assert_string_equal(find_ev(SP_EV_PUBLISH, 0)->client, "pub");

	/* rejected by the first: the second never sees it, nobody gets it */
	assert_int_equal(publish_from("rej/1", 1, 0), 0);
	assert_int_equal(received(a), 0);
	assert_int_equal(tps[1].seen[SP_EV_PUBLISH], 1);
	m = new_msg("rej/2", "x", 1, false, "pub");
	assert_int_equal(plugin_publish(m, "pub", NULL, 5, 0, &res), SP_REJECT);
	assert_int_equal(res.reason, MQTT_RC_NOT_AUTHORIZED);
	assert_string_equal(res.reason_string, "no");
	/* from a later index the first plugin is not asked */
	assert_int_equal(router_route_from(m, NULL, 1), 1);
	assert_int_equal(received(a), 1);
	assert_int_equal(tps[1].seen[SP_EV_PUBLISH], 2);
	msg_unref(m);
	/* a refusal with a success code becomes 0x80 */
	m = new_msg("low/1", "x", 1, false, "pub");
	assert_int_equal(plugin_publish(m, "pub", NULL, 5, 0, &res), SP_REJECT);
	assert_int_equal(res.reason, MQTT_RC_UNSPECIFIED);
	msg_unref(m);

	/* taken: not routed now, the plugin holds a reference and routes it later */
	assert_int_equal(publish_from("take/1", 1, 0), 0);
	assert_int_equal(received(a), 0);
	assert_non_null(tps[0].taken);
	assert_int_equal(tps[1].seen[SP_EV_PUBLISH], 2);
	assert_int_equal(tps[0].host->route(tps[0].self, tps[0].taken), 1);
	assert_int_equal(tps[1].seen[SP_EV_PUBLISH], 3); /* the plugins after it see it */
	assert_int_equal(tps[0].seen[SP_EV_PUBLISH], 5); /* the one that took it does not */
	assert_int_equal(received(a), 1);
	/* routed by the last plugin: no PUBLISH callback at all */
	assert_int_equal(tps[1].host->route(tps[1].self, tps[0].taken), 1);
	assert_int_equal(tps[1].seen[SP_EV_PUBLISH], 3);
	assert_int_equal(received(a), 1);
	tps[0].host->msg_unref(tps[0].taken);
	tps[0].taken = NULL;
}

/* A plugin whose PUBLISH callback fails refuses the message (fails closed). */
static void test_publish_callback_fails(void **state)
{
	struct client *a;
	struct sp_result res;
	struct msg *m;

	(void)state;
	tps[0].cb[SP_EV_PUBLISH] = cb_publish;
	tps[0].cb[SP_EV_DELIVER] = cb_deliver;
	tps[0].mode = FAIL;
	tps[1].cb[SP_EV_PUBLISH] = cb_record;
	assert_int_equal(add_plugin(0), 0);
	assert_int_equal(add_plugin(1), 0);
	a = client_new("A", MQTT_V5, 10);
	sub(a, "#", 1, 0);
	m = new_msg("f/1", "x", 1, false, "pub");
	assert_int_equal(plugin_publish(m, "pub", NULL, 5, 0, &res), SP_REJECT);
	assert_int_equal(res.reason, MQTT_RC_UNSPECIFIED);
	assert_int_equal(router_route_from(m, NULL, 0), 0);
	assert_int_equal(received(a), 0);
	assert_int_equal(tps[1].seen[SP_EV_PUBLISH], 0);
	/* a failing DELIVER callback is ignored: it could not refuse anything */
	assert_int_equal(router_route(m, NULL), 1);
	assert_int_equal(tps[0].seen[SP_EV_DELIVER], 1);
	assert_int_equal(received(a), 1);
	msg_unref(m);
}

/* A plugin whose init failed is forgotten: no callback, no cleanup. */
static void test_init_fails(void **state)
{
	struct client *a;

	(void)state;
	tps[0].cb[SP_EV_PUBLISH] = cb_publish;
	tps[0].cb[SP_EV_DELIVER] = cb_deliver;
	tps[0].cb[SP_EV_SESSION_END] = cb_record;
	tps[0].cb[SP_EV_STOP] = cb_record;
	tps[0].mode = SKIP;
	tps[0].init_fails = true;
	tps[1].cb[SP_EV_DELIVER] = cb_record;
	assert_int_equal(add_plugin(0), -1);
	assert_false(plugin_wants(SP_EV_PUBLISH));
	assert_false(plugin_wants(SP_EV_DELIVER));
	assert_int_equal(add_plugin(1), 0);
	assert_true(plugin_wants(SP_EV_DELIVER));
	assert_false(plugin_wants(SP_EV_SESSION_END));
	a = client_new("A", MQTT_V5, 10);
	sub(a, "#", 1, 0);
	assert_int_equal(publish_from("rej/1", 1, 0), 1); /* it would have refused this */
	assert_int_equal(received(a), 1);
	assert_int_equal(tps[1].seen[SP_EV_DELIVER], 1);
	client_end(a);
	plugin_stop();
	plugin_unload_all();
	assert_int_equal(n_evs, 1);
	assert_int_equal(tps[0].seen[SP_EV_PUBLISH] + tps[0].seen[SP_EV_DELIVER] +
				 tps[0].seen[SP_EV_SESSION_END] + tps[0].seen[SP_EV_STOP],
			 0);
	assert_int_equal(tps[0].cleaned, 0);
	assert_int_equal(tps[1].cleaned, 1);
}

/* --- the DELIVER chain and holds ------------------------------------------------------ */

static void test_deliver_skip(void **state)
{
	struct client *skip, *pass;
	struct route_result res;
	struct msg *m;

	(void)state;
	tps[0].cb[SP_EV_DELIVER] = cb_deliver;
	tps[0].mode = SKIP;
	copy(tps[0].match, sizeof(tps[0].match), "skip");
	tps[1].cb[SP_EV_DELIVER] = cb_record;
	assert_int_equal(add_plugin(0), 0);
	assert_int_equal(add_plugin(1), 0);
	skip = client_new("skip", MQTT_V5, 10);
	pass = client_new("pass", MQTT_V5, 10);
	sub(skip, "k/#", 1, 0);
	sub(pass, "k/#", 1, 0);
	m = new_msg("k/1", "x", 1, false, "P");
	assert_int_equal(router_route(m, &res), 1);
	assert_int_equal(res.delivered, 1);
	assert_int_equal(res.quota, 0);
	msg_unref(m);
	assert_int_equal(received(skip), 0);
	assert_int_equal(received(pass), 1);
	/* both asked the first plugin; only the passed one reached the second */
	assert_int_equal(tps[0].seen[SP_EV_DELIVER], 2);
	assert_int_equal(tps[1].seen[SP_EV_DELIVER], 1);
	assert_string_equal(find_ev(SP_EV_DELIVER, 0)->topic, "k/1");
	assert_int_equal(find_ev(SP_EV_DELIVER, 0)->qos, 1);
	assert_int_equal(holds_count(), 0);
}

static void test_deliver_hold_release_discard(void **state)
{
	struct client *held, *pass;
	const struct sp_host *host;
	const struct ev *e;
	struct rx r;

	(void)state;
	tps[0].cb[SP_EV_DELIVER] = cb_deliver;
	tps[0].cb[SP_EV_DROPPED] = cb_record;
	tps[0].cb[SP_EV_SESSION_END] = cb_record;
	tps[0].mode = HOLD;
	copy(tps[0].match, sizeof(tps[0].match), "held");
	assert_int_equal(add_plugin(0), 0);
	host = tps[0].host;
	held = client_new("held", MQTT_V5, 10);
	pass = client_new("pass", MQTT_V5, 10);
	sub(held, "h/#", 1, 11);
	sub(pass, "h/#", 1, 0);

	assert_int_equal(publish("h/1", "one", 2, false, "P"), 1);
	assert_int_equal(holds_count(), 1);
	assert_int_equal(received(held), 0);
	assert_int_equal(received(pass), 1);
	/* released: delivered now, as it would have been */
	assert_int_equal(host->release(tps[0].self, 1), 0);
	assert_int_equal(holds_count(), 0);
	received_one(held, &r);
	assert_string_equal(r.payload, "one");
	assert_int_equal(r.qos, 1);
	assert_int_equal(r.n_subids, 1);
	assert_int_equal(r.subids[0], 11);
	assert_int_equal(outq_on_puback(&held->s->q, r.packet_id, 0), 0);
	assert_int_equal(host->release(tps[0].self, 1), -1);
	assert_int_equal(host->discard(tps[0].self, 1), -1);
	/* discarded: never delivered, no DROPPED event */
	assert_int_equal(publish("h/2", "two", 1, false, "P"), 1);
	assert_int_equal(holds_count(), 1);
	assert_int_equal(host->discard(tps[0].self, 2), 0);
	assert_int_equal(host->release(tps[0].self, 2), -1);
	assert_int_equal(holds_count(), 0);
	assert_int_equal(received(held), 0);
	assert_int_equal(count_ev(SP_EV_DROPPED), 0);
	/* another plugin's id is not this one's */
	assert_int_equal(publish("h/3", "three", 1, false, "P"), 1);
	assert_int_equal(router_release_hold((struct sp_plugin *)(void *)&tps[3], 3), -1);
	assert_int_equal(holds_count(), 1);
	/* the session ends while held: dropped with a DROPPED event naming the hold */
	client_end(held);
	assert_int_equal(holds_count(), 0);
	assert_int_equal(count_ev(SP_EV_DROPPED), 1);
	e = find_ev(SP_EV_DROPPED, 0);
	assert_string_equal(e->client, "held");
	assert_string_equal(e->topic, "h/3");
	assert_int_equal(e->hold_id, 3);
	assert_int_equal(e->qos, 1);
	assert_true(e->why);
	assert_string_equal(e->share_group, "");
	/* then the end of the session */
	assert_int_equal(count_ev(SP_EV_SESSION_END), 1);
	assert_true(find_ev(SP_EV_SESSION_END, 0) > e);
	assert_int_equal(host->release(tps[0].self, 3), -1);
	assert_int_equal(received(pass), 2);
}

/* A held delivery of a shared group goes to another member when its session ends. */
static void test_shared_hold_moves_on(void **state)
{
	struct client *h1, *h2;
	const struct ev *e;
	struct rx r;

	(void)state;
	tps[0].cb[SP_EV_DELIVER] = cb_deliver;
	tps[0].cb[SP_EV_DROPPED] = cb_record;
	tps[0].mode = HOLD;
	copy(tps[0].match, sizeof(tps[0].match), "h1");
	assert_int_equal(add_plugin(0), 0);
	h1 = client_new("h1", MQTT_V5, 10);
	h2 = client_new("h2", MQTT_V5, 10);
	sub(h1, "$share/g/q/+", 1, 0);
	sub(h2, "$share/g/q/+", 1, 0);
	/* h1's turn first: held */
	assert_int_equal(publish("q/1", "held", 1, false, "P"), 0);
	assert_int_equal(holds_count(), 1);
	e = find_ev(SP_EV_DELIVER, 0);
	assert_string_equal(e->client, "h1");
	assert_string_equal(e->share_group, "g");
	assert_string_equal(e->share_filter, "q/+");
	assert_int_equal(received(h1) + received(h2), 0);
	client_end(h1);
	assert_int_equal(holds_count(), 0);
	received_one(h2, &r);
	assert_string_equal(r.payload, "held");
	assert_int_equal(r.qos, 1);
	/* h2 was asked through the DELIVER chain again */
	e = find_ev(SP_EV_DELIVER, 1);
	assert_non_null(e);
	assert_string_equal(e->client, "h2");
}

/* --- CHOOSE ---------------------------------------------------------------------------- */

static void choose_setup(struct client **m, struct client **plain)
{
	tps[0].cb[SP_EV_CHOOSE] = cb_choose;
	assert_int_equal(add_plugin(0), 0);
	m[0] = client_new("m1", MQTT_V5, 10);
	m[1] = client_new("m2", MQTT_V311, 10);
	m[2] = client_new("m3", MQTT_V5, 10);
	*plain = client_new("plain", MQTT_V5, 10);
	sub(m[0], "$share/g/c/+", 1, 0);
	sub(m[1], "$share/g/c/+", 1, 0);
	sub(m[2], "$share/g/c/+", 1, 0);
	sub(*plain, "c/+", 0, 0);
}

static void test_choose_pick(void **state)
{
	struct client *m[3], *plain;
	const struct ev *e;
	int i;

	(void)state;
	choose_setup(m, &plain);
	tps[0].mode = PICK;
	copy(tps[0].match, sizeof(tps[0].match), "m3");
	for (i = 0; i < 3; i++)
		assert_int_equal(publish("c/x", "p", 1, false, "P"), 2);
	assert_int_equal(received(m[0]), 0);
	assert_int_equal(received(m[1]), 0);
	assert_int_equal(received(m[2]), 3);
	assert_int_equal(received(plain), 3);
	assert_int_equal(tps[0].seen[SP_EV_CHOOSE], 3);
	e = find_ev(SP_EV_CHOOSE, 0);
	assert_int_equal(e->n_members, 3);
	assert_string_equal(e->members[0], "m1");
	assert_string_equal(e->members[1], "m2");
	assert_string_equal(e->members[2], "m3");
	assert_string_equal(e->share_group, "g");
	assert_string_equal(e->share_filter, "c/+");
	assert_string_equal(e->topic, "c/x");
	/* an index out of range keeps the broker's own pick */
	copy(tps[0].match, sizeof(tps[0].match), "nobody");
	tps[0].pick_index = 99;
	assert_int_equal(publish("c/x", "p", 1, false, "P"), 2);
	assert_int_equal(received(m[0]) + received(m[1]) + received(m[2]), 1);
	/* picking by index */
	tps[0].match[0] = '\0';
	tps[0].pick_index = 1;
	assert_int_equal(publish("c/x", "p", 1, false, "P"), 2);
	assert_int_equal(received(m[1]), 1);
	assert_int_equal(received(m[0]) + received(m[2]), 0);
}

static void test_choose_skip(void **state)
{
	struct client *m[3], *plain;

	(void)state;
	choose_setup(m, &plain);
	tps[0].mode = SKIP;
	assert_int_equal(publish("c/x", "p", 1, false, "P"), 1);
	assert_int_equal(received(m[0]) + received(m[1]) + received(m[2]), 0);
	assert_int_equal(received(plain), 1);
	assert_int_equal(holds_count(), 0);
	assert_int_equal(tps[0].seen[SP_EV_CHOOSE], 1);
}

static void test_choose_hold(void **state)
{
	struct client *m[3], *plain;
	struct rx r;

	(void)state;
	choose_setup(m, &plain);
	tps[0].mode = HOLD;
	assert_int_equal(publish("c/x", "later", 1, false, "P"), 1);
	assert_int_equal(received(m[0]) + received(m[1]) + received(m[2]), 0);
	assert_int_equal(received(plain), 1);
	assert_int_equal(holds_count(), 1);
	/* a group hold is nobody's: ending a member leaves it */
	client_end(m[0]);
	assert_int_equal(holds_count(), 1);
	/* released: offered to the group again, CHOOSE included */
	tps[0].mode = PICK;
	copy(tps[0].match, sizeof(tps[0].match), "m2");
	assert_int_equal(tps[0].host->release(tps[0].self, 1), 0);
	assert_int_equal(holds_count(), 0);
	assert_int_equal(tps[0].seen[SP_EV_CHOOSE], 2);
	assert_int_equal(find_ev(SP_EV_CHOOSE, 1)->n_members, 2);
	received_one(m[1], &r);
	assert_string_equal(r.payload, "later");
	assert_int_equal(r.qos, 1);
	assert_int_equal(received(m[2]), 0);
	assert_int_equal(received(plain), 0);
	/* held again, then discarded: nobody gets it */
	tps[0].mode = HOLD;
	assert_int_equal(publish("c/x", "never", 1, false, "P"), 1);
	assert_int_equal(holds_count(), 1);
	assert_int_equal(tps[0].host->discard(tps[0].self, 2), 0);
	assert_int_equal(holds_count(), 0);
	assert_int_equal(received(m[1]) + received(m[2]), 0);
	/* held, then released while it holds again: still one copy, under a new id */
	assert_int_equal(publish("c/x", "again", 1, false, "P"), 1);
	assert_int_equal(tps[0].host->release(tps[0].self, 3), 0);
	assert_int_equal(holds_count(), 1);
	assert_int_equal(tps[0].host->release(tps[0].self, 3), -1);
	tps[0].mode = PASS;
	assert_int_equal(tps[0].host->release(tps[0].self, 4), 0);
	assert_int_equal(received(m[1]) + received(m[2]), 1);
	assert_int_equal(received(plain), 2);
}

/* CHOOSE that routes another message from inside the callback. */
static int cb_choose_routes(const struct sp_event *e, struct sp_result *res, void *udata)
{
	struct tp *p = udata;
	struct sp_msg_spec spec;
	struct sp_msg *m;
	int rc;

	(void)res;
	record(p, e);
	memset(&spec, 0, sizeof(spec));
	spec.topic = "note";
	spec.topic_len = 4;
	spec.payload = "n";
	spec.payload_len = 1;
	m = p->host->msg_new(&spec);
	assert_non_null(m);
	rc = p->host->route(p->self, m);
	p->host->msg_unref(m);
	assert_true(p->n_route_rc < 16);
	p->route_rc[p->n_route_rc++] = rc;
	return 0;
}

/*
 * A's two subscriptions match on either side of a shared group in the
 * tree walk (c/+ with the group, then c/x): one copy for A, whatever a
 * CHOOSE callback routes meanwhile [MQTT-3.3.4-2]. (When CHOOSE ran during
 * the walk, the nested routing reset A's route_stamp and A got two.)
 */
static void test_choose_routes_during_match(void **state)
{
	static struct rx rx[MAX_RX];
	struct client *a, *g;
	size_t n;

	(void)state;
	tps[0].cb[SP_EV_CHOOSE] = cb_choose_routes;
	assert_int_equal(add_plugin(0), 0);
	a = client_new("A", MQTT_V5, 10);
	g = client_new("G", MQTT_V5, 10);
	sub(a, "c/+", 0, 1);
	sub(a, "c/x", 1, 2);
	sub(a, "note", 0, 0);
	sub(g, "$share/g/c/+", 1, 0);
	assert_int_equal(publish("c/x", "once", 1, false, "P"), 2);
	assert_int_equal(tps[0].n_route_rc, 1);
	assert_int_equal(tps[0].route_rc[0], 1);
	assert_int_equal(received(g), 1);
	/* A: the note, then c/x once with both subscription ids */
	n = drain(a, rx, MAX_RX);
	assert_int_equal(n, 2);
	assert_string_equal(rx[0].topic, "note");
	assert_string_equal(rx[1].topic, "c/x");
	assert_int_equal(rx[1].qos, 1);
	assert_int_equal(rx[1].n_subids, 2);
	assert_true(has_subid(&rx[1], 1) && has_subid(&rx[1], 2));
}

/* --- completion events ---------------------------------------------------------------- */

static void test_acked_nacked(void **state)
{
	struct client *a;
	static struct rx rx[MAX_RX];
	const struct ev *e;
	size_t n;

	(void)state;
	tps[0].cb[SP_EV_ACKED] = cb_record;
	tps[0].cb[SP_EV_NACKED] = cb_record;
	tps[0].cb[SP_EV_DROPPED] = cb_record;
	assert_int_equal(add_plugin(0), 0);
	a = client_new("A", MQTT_V5, 10);
	sub(a, "k", 2, 0);
	assert_int_equal(publish("k", "1", 1, false, "P"), 1);
	assert_int_equal(publish("k", "2", 1, false, "P"), 1);
	assert_int_equal(publish("k", "3", 1, false, "P"), 1);
	n = drain(a, rx, MAX_RX);
	assert_int_equal(n, 3);
	assert_int_equal(outq_inflight(&a->s->q), 3);
	/* PUBACK 0x80: NACKED, not ACKED */
	assert_int_equal(outq_on_puback(&a->s->q, rx[0].packet_id, 0x80), 0);
	assert_int_equal(count_ev(SP_EV_NACKED), 1);
	assert_int_equal(count_ev(SP_EV_ACKED), 0);
	e = find_ev(SP_EV_NACKED, 0);
	assert_int_equal(e->reason, 0x80);
	assert_string_equal(e->client, "A");
	assert_int_equal(e->qos, 1);
	assert_string_equal(e->share_group, "");
	/* PUBACK 0x00: ACKED */
	assert_int_equal(outq_on_puback(&a->s->q, rx[1].packet_id, 0x00), 0);
	assert_int_equal(count_ev(SP_EV_ACKED), 1);
	assert_int_equal(find_ev(SP_EV_ACKED, 0)->reason, 0);
	/* an unknown or already acknowledged id: nothing */
	assert_int_equal(outq_on_puback(&a->s->q, rx[1].packet_id, 0x00), -1);
	/* 0x10 (no matching subscribers) is a success */
	assert_int_equal(outq_on_puback(&a->s->q, rx[2].packet_id, 0x10), 0);
	assert_int_equal(count_ev(SP_EV_ACKED), 2);
	assert_int_equal(find_ev(SP_EV_ACKED, 1)->reason, 0x10);
	assert_int_equal(count_ev(SP_EV_NACKED), 1);
	assert_int_equal(outq_inflight(&a->s->q), 0);

	/* QoS 2: PUBREC >= 0x80 ends it as NACKED; PUBREC then PUBCOMP as ACKED */
	assert_int_equal(publish("k", "4", 2, false, "P"), 1);
	assert_int_equal(publish("k", "5", 2, false, "P"), 1);
	n = drain(a, rx, MAX_RX);
	assert_int_equal(n, 2);
	assert_int_equal(rx[0].qos, 2);
	assert_int_equal(outq_on_pubrec(&a->s->q, rx[0].packet_id, 0x87), 0);
	assert_int_equal(count_ev(SP_EV_NACKED), 2);
	assert_int_equal(find_ev(SP_EV_NACKED, 1)->reason, 0x87);
	assert_int_equal(find_ev(SP_EV_NACKED, 1)->qos, 2);
	assert_int_equal(outq_on_pubrec(&a->s->q, rx[1].packet_id, 0x00), 0);
	assert_int_equal(count_ev(SP_EV_ACKED), 2); /* not yet */
	assert_int_equal(outq_on_pubcomp(&a->s->q, rx[1].packet_id), 0);
	assert_int_equal(count_ev(SP_EV_ACKED), 3);
	assert_int_equal(count_ev(SP_EV_DROPPED), 0);
	/* one unacknowledged at the end: DROPPED when the session goes */
	assert_int_equal(publish("k", "6", 1, false, "P"), 1);
	client_end(a);
	assert_int_equal(count_ev(SP_EV_DROPPED), 1);
	assert_false(find_ev(SP_EV_DROPPED, 0)->hold_id);
}

static void test_session_end(void **state)
{
	struct client *a, *b;

	(void)state;
	tps[0].cb[SP_EV_SESSION_END] = cb_record;
	assert_int_equal(add_plugin(0), 0);
	a = client_new("A", MQTT_V5, 10);
	b = client_new("B", MQTT_V5, 10);
	sub(a, "x", 1, 0);
	client_end(a);
	assert_int_equal(count_ev(SP_EV_SESSION_END), 1);
	assert_string_equal(find_ev(SP_EV_SESSION_END, 0)->client, "A");
	assert_null(session_find("A"));
	assert_int_equal(router_subscription_count(), 0);
	assert_int_equal(publish("x", "y", 1, false, "P"), 0);
	assert_non_null(session_find("B"));
	assert_int_equal(received(b), 0);
}

/* --- nested routing -------------------------------------------------------------------- */

/* DELIVER of "outer": routes (and delivers) "inner" from inside the callback. */
static int cb_deliver_routes(const struct sp_event *e, struct sp_result *res, void *udata)
{
	struct tp *p = udata;
	struct sp_msg_spec spec;
	struct sp_msg *m;
	int rc;

	(void)res;
	record(p, e);
	if (strcmp(p->host->msg_topic(e->msg), "outer"))
		return 0;
	memset(&spec, 0, sizeof(spec));
	spec.topic = "inner";
	spec.topic_len = 5;
	spec.payload = "in";
	spec.payload_len = 2;
	spec.qos = 1;
	m = p->host->msg_new(&spec);
	assert_non_null(m);
	rc = p->host->route(p->self, m);
	assert_true(p->n_route_rc < 16);
	p->route_rc[p->n_route_rc++] = rc;
	p->deliver_rc = p->host->deliver(p->self, m, "Y", NULL, NULL);
	p->host->msg_unref(m);
	return 0;
}

static void test_nested_routing(void **state)
{
	struct client *x, *y, *z;
	struct rx r;

	(void)state;
	tps[0].cb[SP_EV_DELIVER] = cb_deliver_routes;
	tps[1].cb[SP_EV_DELIVER] = cb_record;
	assert_int_equal(add_plugin(0), 0);
	assert_int_equal(add_plugin(1), 0);
	x = client_new("X", MQTT_V5, 10);
	y = client_new("Y", MQTT_V5, 10);
	z = client_new("Z", MQTT_V5, 10);
	sub(x, "outer", 1, 0);
	sub(y, "inner", 1, 0);
	sub(z, "inner", 1, 0);
	assert_int_equal(publish("outer", "out", 1, false, "P"), 1);
	assert_int_equal(tps[0].n_route_rc, 1);
	assert_int_equal(tps[0].route_rc[0], 2); /* the real count from inside */
	assert_int_equal(tps[0].deliver_rc, 1);
	received_one(x, &r);
	assert_string_equal(r.topic, "outer");
	assert_int_equal(received(y), 2); /* routed, then delivered to it alone */
	received_one(z, &r);
	assert_string_equal(r.topic, "inner");
	/*
	 * A routed message's deliveries run the whole DELIVER chain (only its
	 * PUBLISH chain starts after the plugin); a targeted delivery starts
	 * after the plugin: the first saw outer and inner to Y and Z, the second
	 * those and the delivery to Y.
	 */
	assert_int_equal(tps[0].seen[SP_EV_DELIVER], 3);
	assert_int_equal(tps[1].seen[SP_EV_DELIVER], 4);
}

/* DELIVER of "loop" routes another "loop": routing nests until the limit refuses. */
static int cb_deliver_loops(const struct sp_event *e, struct sp_result *res, void *udata)
{
	struct tp *p = udata;
	struct sp_msg_spec spec;
	struct sp_msg *m;
	int rc;

	(void)res;
	record(p, e);
	if (p->quiet)
		return 0;
	memset(&spec, 0, sizeof(spec));
	spec.topic = "loop";
	spec.topic_len = 4;
	spec.payload = "l";
	spec.payload_len = 1;
	m = p->host->msg_new(&spec);
	assert_non_null(m);
	p->routing++;
	rc = p->host->route(p->self, m);
	p->routing--;
	assert_true(p->n_route_rc < 16);
	p->route_rc[p->n_route_rc++] = rc;
	p->host->msg_unref(m);
	return 0;
}

static void test_nesting_limit(void **state)
{
	struct client *l;
	size_t i, refused = 0;

	(void)state;
	tps[0].cb[SP_EV_DELIVER] = cb_deliver_loops;
	assert_int_equal(add_plugin(0), 0);
	l = client_new("L", MQTT_V5, 10);
	sub(l, "loop", 0, 0);
	assert_int_equal(publish("loop", "l", 0, false, "P"), 1);
	/* one delivery per depth that routes; the innermost routing is refused */
	assert_int_equal(tps[0].n_route_rc, 8);
	for (i = 0; i < tps[0].n_route_rc; i++) {
		if (tps[0].route_rc[i] == -1)
			refused++;
		else
			assert_int_equal(tps[0].route_rc[i], 1);
	}
	assert_int_equal(refused, 1);
	assert_int_equal(tps[0].route_rc[0], -1); /* the innermost returns first */
	assert_int_equal(received(l), 8);
	assert_int_equal(tps[0].routing, 0);
	/* the router is usable afterwards at every depth again */
	tps[0].quiet = true;
	tps[0].n_route_rc = 0;
	assert_int_equal(publish("loop", "l", 0, false, "P"), 1);
	assert_int_equal(tps[0].n_route_rc, 0);
	assert_int_equal(received(l), 1);
}

/* DELIVER of "same" routes that very message again, once. */
static int cb_deliver_reroutes(const struct sp_event *e, struct sp_result *res, void *udata)
{
	struct tp *p = udata;
	int rc;

	(void)res;
	record(p, e);
	if (p->quiet)
		return 0;
	p->quiet = true;
	rc = p->host->route(p->self, e->msg);
	p->route_rc[p->n_route_rc++] = rc;
	return 0;
}

/*
 * A plugin may hand the message it is asked about to host->route() (it is
 * immutable; route borrows it): the nested routing must find its own
 * matches, whatever the outer one is in the middle of.
 */
static void test_nested_same_message(void **state)
{
	struct client *s1, *s2;

	(void)state;
	tps[0].cb[SP_EV_DELIVER] = cb_deliver_reroutes;
	assert_int_equal(add_plugin(0), 0);
	s1 = client_new("s1", MQTT_V5, 10);
	s2 = client_new("s2", MQTT_V5, 10);
	sub(s1, "same", 1, 0);
	sub(s2, "same", 1, 0);
	assert_int_equal(publish("same", "x", 1, false, "P"), 2);
	assert_int_equal(tps[0].n_route_rc, 1);
	assert_int_equal(tps[0].route_rc[0], 2);
	assert_int_equal(received(s1), 2);
	assert_int_equal(received(s2), 2);
}

/* --- out of memory ---------------------------------------------------------------------- */

/* Acknowledges everything in flight, so each attempt starts with empty windows. */
static size_t drain_and_ack(struct client *cl)
{
	static struct rx rx[MAX_RX];
	size_t n = drain(cl, rx, MAX_RX), i;

	for (i = 0; i < n; i++)
		if (rx[i].qos == 1)
			assert_int_equal(outq_on_puback(&cl->s->q, rx[i].packet_id, 0), 0);
	return n;
}

/*
 * Everything the client's queue has for it: a QoS 1 message whose write
 * found no memory waits at the head of the queue and goes out at the next
 * pump, so pump until nothing more comes.
 */
static size_t flush_client(struct client *cl)
{
	size_t total = 0, n;

	do {
		outq_pump(&cl->s->q);
		n = drain_and_ack(cl);
		total += n;
	} while (n);
	return total;
}

/* N plain subscribers (two subscriptions each) and a shared group of two. */
#define OOM_N 5
static void oom_clients(struct client **c)
{
	char id[8];
	size_t i;

	for (i = 0; i < OOM_N; i++) {
		snprintf(id, sizeof(id), "o%zu", i);
		c[i] = client_new(id, MQTT_V5, 10);
		sub(c[i], "o/#", 1, (uint32_t)(i + 1));
		sub(c[i], "o/+", 0, 0);
	}
	c[OOM_N] = client_new("s1", MQTT_V5, 10);
	c[OOM_N + 1] = client_new("s2", MQTT_V311, 10);
	sub(c[OOM_N], "$share/g/o/#", 1, 0);
	sub(c[OOM_N + 1], "$share/g/o/#", 1, 0);
}

/*
 * Routing one message to several sessions with the n-th allocation failing,
 * for every n until one routing gets through whole: no crash, a result
 * that adds up (-1 only when nothing was delivered), never more than one
 * copy per session and never more copies than the result counts; and
 * afterwards the router works as before. The teardown checks no message
 * reference was lost on the way.
 */
static void test_oom_routing(void **state)
{
	struct client *c[OOM_N + 2];
	struct route_result res;
	struct msg *m;
	size_t i, got, one;
	long n;
	int rc;

	(void)state;
	oom_clients(c);
	m = new_msg("o/x", "payload", 1, false, "P");
	for (n = 0;; n++) {
		mem_fail_after(n);
		rc = router_route(m, &res);
		mem_fail_after(-1);
		assert_true(res.delivered >= 0 && res.delivered <= OOM_N + 1);
		assert_true(res.quota == 0);
		assert_int_equal(rc, res.oom && !res.delivered ? -1 : res.delivered);
		if (!res.oom)
			assert_int_equal(res.delivered, OOM_N + 1);
		for (i = 0, got = 0; i < OOM_N + 2; i++) {
			one = flush_client(c[i]);
			assert_true(one <= 1);
			got += one;
		}
		assert_true(got <= (size_t)res.delivered);
		if (!res.oom && got == OOM_N + 1)
			break;
		assert_true(n < 200);
	}
	assert_true(n > 5); /* the failures did hit the routing */
	assert_int_equal(router_route(m, &res), OOM_N + 1);
	assert_false(res.oom);
	for (i = 0; i < OOM_N; i++)
		assert_int_equal(drain_and_ack(c[i]), 1);
	assert_int_equal(drain_and_ack(c[OOM_N]) + drain_and_ack(c[OOM_N + 1]), 1);
	msg_unref(m);
}

/*
 * The same, holding the result to its word: every delivery it counts is
 * sent, at once or (a write that found no memory) at the next pump; none
 * is lost.
 */
static void test_oom_counted_means_sent(void **state)
{
	struct client *c[OOM_N + 2];
	struct route_result res;
	struct msg *m;
	size_t i, got;
	long n;

	(void)state;
	oom_clients(c);
	m = new_msg("o/x", "payload", 1, false, "P");
	for (n = 0; n < 200; n++) {
		mem_fail_after(n);
		router_route(m, &res);
		mem_fail_after(-1);
		for (i = 0, got = 0; i < OOM_N + 2; i++)
			got += flush_client(c[i]);
		if (got != (size_t)res.delivered)
			fail_msg("allocation %ld failing: %d deliveries counted (oom %d), %zu sent",
				 n, res.delivered, res.oom, got);
		if (!res.oom && got == OOM_N + 1)
			break;
	}
	msg_unref(m);
}

/* --- shared groups' queues ---------------------------------------------------------- */

#define G_KEY "g\0w/+" /* the share key of $share/g/w/+ */

/* The client's connection goes (the session stays: it has an expiry). */
static void client_offline(struct client *cl)
{
	session_set_expiry(cl->s, 3600);
	conn_part_session(cl->c);
	session_detach(cl->s, false);
}

/* A new connection for the session, as after CONNACK: the window is resent, then room. */
static void client_back(struct client *cl, uint16_t receive_max)
{
	conn_on_closed(cl->c); /* the old transport's end (no handler: nothing else) */
	attach_conn(cl, receive_max);
	session_resume(cl->s);
}

static uint64_t group_queued(void)
{
	const struct groupq *q = groupq_find(G_KEY);

	return q ? groupq_queued(q) : 0;
}

/* The payloads cl received since the last look, acknowledged (QoS 1), joined by ','. */
static void got(struct client *cl, char *out, size_t n)
{
	static struct rx rx[MAX_RX];
	size_t k = drain(cl, rx, MAX_RX), i, len = 0;

	out[0] = '\0';
	for (i = 0; i < k; i++) {
		len += (size_t)snprintf(out + len, n - len, "%s%s", i ? "," : "", rx[i].payload);
		if (rx[i].qos == 1)
			assert_int_equal(outq_on_puback(&cl->s->q, rx[i].packet_id, 0), 0);
	}
}

/* Like got(), without acknowledging: the window stays full. */
static void got_unacked(struct client *cl, char *out, size_t n, struct rx *rx, size_t *k)
{
	size_t i, len = 0;

	*k = drain(cl, rx, MAX_RX);
	out[0] = '\0';
	for (i = 0; i < *k; i++)
		len += (size_t)snprintf(out + len, n - len, "%s%s", i ? "," : "", rx[i].payload);
}

/* Messages from..to-1 on w/x, each reaching `reach` sessions or queues. */
static void publish_n(int from, int to, uint8_t qos, int reach)
{
	char payload[8];

	for (int i = from; i < to; i++) {
		snprintf(payload, sizeof(payload), "%d", i);
		assert_int_equal(publish("w/x", payload, qos, false, "P"), reach);
	}
}

/* No member has room: messages wait in the group's queue, not in a member's. */
static void test_group_queue_waits_for_room(void **state)
{
	struct client *a, *b;
	static struct rx rx[MAX_RX];
	char s[128];
	size_t k;

	(void)state;
	a = client_new("a", MQTT_V5, 1);
	b = client_new("b", MQTT_V5, 1);
	sub(a, "$share/g/w/+", 1, 0);
	sub(b, "$share/g/w/+", 1, 0);
	publish_n(0, 5, 1, 1);
	got_unacked(a, s, sizeof(s), rx, &k);
	assert_string_equal(s, "0");
	assert_int_equal(received(b), 1);
	assert_int_equal(group_queued(), 3);
	assert_int_equal(outq_queued(&a->s->q) + outq_queued(&b->s->q), 0);
	/* a acknowledges: it takes the oldest waiting, and again */
	assert_int_equal(outq_on_puback(&a->s->q, rx[0].packet_id, 0), 0);
	got(a, s, sizeof(s));
	assert_string_equal(s, "2");
	got(a, s, sizeof(s));
	assert_string_equal(s, "3");
	got(a, s, sizeof(s));
	assert_string_equal(s, "4");
	assert_int_equal(group_queued(), 0);
	got(a, s, sizeof(s));
	assert_string_equal(s, "");
	/* QoS 0 is never queued for a group: it goes to a member at once */
	publish_n(5, 6, 0, 1);
	assert_int_equal(group_queued(), 0);
	assert_int_equal(received(a) + received(b), 1);
}

/* Every member offline: the queue waits; the first back takes all, in order. */
static void test_group_queue_offline_members(void **state)
{
	struct client *a, *b;
	char s[128];

	(void)state;
	a = client_new("a", MQTT_V311, 10);
	b = client_new("b", MQTT_V5, 10);
	sub(a, "$share/g/w/+", 1, 0);
	sub(b, "$share/g/w/+", 1, 0);
	client_offline(a);
	client_offline(b);
	publish_n(0, 6, 1, 1);
	assert_int_equal(group_queued(), 6);
	assert_int_equal(outq_queued(&a->s->q) + outq_queued(&b->s->q), 0);
	client_back(b, 4);
	got(b, s, sizeof(s));
	assert_string_equal(s, "0,1,2,3");
	got(b, s, sizeof(s));
	assert_string_equal(s, "4,5");
	assert_int_equal(group_queued(), 0);
	assert_int_equal(received(a), 0);
}

/* An ending member's unacknowledged deliveries go back to the head, in order. */
static void test_group_queue_hand_back(void **state)
{
	struct client *a, *b;
	static struct rx rx[MAX_RX];
	char s[128];
	size_t k;

	(void)state;
	a = client_new("a", MQTT_V5, 10);
	b = client_new("b", MQTT_V5, 1);
	sub(b, "$share/g/w/+", 1, 0);
	publish_n(0, 1, 1, 1); /* b's window is full */
	sub(a, "$share/g/w/+", 1, 0);
	publish_n(1, 4, 1, 1);
	got_unacked(a, s, sizeof(s), rx, &k);
	assert_string_equal(s, "1,2,3");
	publish_n(4, 5, 1, 1); /* a has room: it goes to a */
	assert_int_equal(received(a), 1);
	client_end(a); /* 1, 2, 3, 4 unacknowledged: back to the group's queue */
	assert_int_equal(group_queued(), 4);
	publish_n(5, 6, 1, 1);
	got_unacked(b, s, sizeof(s), rx, &k);
	assert_string_equal(s, "0");
	assert_int_equal(outq_on_puback(&b->s->q, rx[0].packet_id, 0), 0);
	got(b, s, sizeof(s));
	assert_string_equal(s, "1");
	got(b, s, sizeof(s));
	assert_string_equal(s, "2");
	got(b, s, sizeof(s));
	assert_string_equal(s, "3");
	got(b, s, sizeof(s));
	assert_string_equal(s, "4");
	got(b, s, sizeof(s));
	assert_string_equal(s, "5");
	assert_int_equal(group_queued(), 0);
}

/* A full group queue refuses (the publisher hears quota); the last member's end ends it. */
static void test_group_queue_full_and_end(void **state)
{
	struct client *a, *plain;
	struct route_result r;
	struct msg *m;
	uint64_t dropped;

	(void)state;
	cfg.max_group_queued_messages = 2;
	a = client_new("a", MQTT_V5, 1);
	plain = client_new("plain", MQTT_V5, 10);
	sub(a, "$share/g/w/+", 1, 0);
	sub(plain, "w/+", 1, 0);
	publish_n(0, 3, 1, 2); /* one in flight, two waiting; and the plain one */
	assert_int_equal(group_queued(), 2);
	m = new_msg("w/x", "full", 1, false, "P");
	assert_int_equal(router_route(m, &r), 1); /* the plain subscriber */
	msg_unref(m);
	assert_int_equal(r.quota, 1);
	assert_int_equal(group_queued(), 2);
	assert_int_equal(received(plain), 4);
	assert_int_equal(router_group_count(), 1);
	assert_int_equal(router_group_members(G_KEY), 1);
	dropped = base.stats.pub_dropped;
	client_end(a);
	assert_null(groupq_find(G_KEY));
	assert_int_equal(router_group_count(), 0);
	assert_true(base.stats.pub_dropped >= dropped + 2);
	cfg.max_group_queued_messages = CONFIG_UNSET;
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_fanout_overlapping),
		T(test_no_local),
		T(test_shared_round_robin),
		T(test_retained),
		T(test_deliver_to),
		T(test_publish_chain),
		T(test_publish_callback_fails),
		T(test_init_fails),
		T(test_deliver_skip),
		T(test_deliver_hold_release_discard),
		T(test_shared_hold_moves_on),
		T(test_choose_pick),
		T(test_choose_skip),
		T(test_choose_hold),
		T(test_choose_routes_during_match),
		T(test_acked_nacked),
		T(test_session_end),
		T(test_nested_routing),
		T(test_nesting_limit),
		T(test_nested_same_message),
		T(test_oom_routing),
		T(test_oom_counted_means_sent),
		T(test_group_queue_waits_for_room),
		T(test_group_queue_offline_members),
		T(test_group_queue_hand_back),
		T(test_group_queue_full_and_end),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
