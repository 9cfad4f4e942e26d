/*
 * fuzz_broker.c - libFuzzer target for the whole broker, as mosquitto's
 * broker_fuzz_read_handle is for mosquitto: the bytes of three clients go
 * through the real connection, protocol, session, router, queue, retained
 * store, shared group and plugin chain code - everything in src/ but the
 * libwebsockets listener and the clock, compiled into this target.
 *
 * This file is the broker's transport and its clock. It implements
 * listener.h (every client is a struct conn over conn_ops that only note
 * what the broker asked, as listener_lws.c's do for lws) and clock.h (two
 * clocks that move only when the input says so), and brings the broker up
 * with broker_init() and down with broker_shutdown() for every input,
 * persistence off and no plugin loaded (the chains and the plugin host run
 * empty), so that nothing outlives an input and LeakSanitizer sees every
 * leak. One thread, as in the broker.
 *
 * Input: three header bytes, then operations until the input ends.
 *   0, 1  the configuration: window, queue limits, QoS 0 queueing, maximum
 *         QoS, retain, an ACL file, maximum packet size, topic aliases,
 *         max_keepalive, empty client ids, 3.1.1 session expiry, QoS 0
 *         backlog, $SYS interval (see configure());
 *   2     which clients send a CONNECT first, at which protocol level and
 *         whether with clean start; whether they acknowledge by themselves;
 *         whether client 2 has a TLS certificate that names it;
 *   ...   operations: an opcode byte (top two bits: the client, the rest:
 *         the operation) and its operands - a synthesised CONNECT, PUBLISH,
 *         SUBSCRIBE, UNSUBSCRIBE, acknowledgement, PINGREQ or DISCONNECT;
 *         raw bytes (any packet, or part of one, or several); the transport
 *         dropping; time passing; how the client reads and acknowledges;
 *         allocations failing in the broker during the next operation
 *         (op_oom); a session's packet ids near their wrap (op_ids).
 * Bytes reach conn_on_data() in chunks of a size the input sets, so that
 * packets split anywhere. A client with no connection gets one with its
 * next bytes.
 *
 * After each operation the target is the event loop (loop_turn): due
 * timers run (keep alive, connect timeout, will delay, session expiry,
 * $SYS), each client reads what the broker wrote, writing a frame header
 * into the headroom as lws does, and answers (PUBACK, PUBREC, PUBCOMP),
 * closing connections flush, linger (conn_linger) or time out, and close.
 * Beyond "no crash, no leak", it checks:
 *   - what a client reads: whole packets that decode, a CONNACK first and
 *     once, with Session Present as the session's life says (never with a
 *     refusal or clean start), nothing after a refusal or a DISCONNECT, no
 *     PUBLISH above max_qos or the client's Maximum Packet Size, no topic
 *     alias above its Topic Alias Maximum or used before it was set, no
 *     reason string or user property on a packet over that size;
 *   - the connections: closing after a refusal or DISCONNECT, none left
 *     past connect_timeout without CONNECT or past 1.5 times its keep alive
 *     without a packet; a client that reads and acknowledges everything at
 *     once has nothing in flight or queued for it;
 *   - every session it can name (the clients' and the client ids the
 *     operations use): queues whose lists, counts and byte totals agree,
 *     distinct non-zero packet ids in flight, no more PUBLISHes in flight
 *     than the client's window, a session and its connection pointing at
 *     each other; offline, its expiry and will timers armed and not past
 *     due; when every session is known, as many entries in the topic tree
 *     as subscriptions;
 *   - after shutdown: no message, connection, session or group queue left,
 *     no timer armed.
 * SLUICE_FUZZ_LOG in the environment puts the broker's log (debug level),
 * the operations and what each client reads on stderr.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base.h"
#include "broker.h"
#include "clock.h"
#include "codec.h"
#include "config.h"
#include "conn.h"
#include "framer.h"
#include "fuzz.h"
#include "groupq.h"
#include "listener.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "msg.h"
#include "props.h"
#include "router.h"
#include "session.h"
#include "store.h"
#include "timers.h"

#define N_SLOTS 3
#define OWED_MAX 16
#define CLOSE_FLUSH_MS 3000 /* listener_lws.c: CLOSE_FLUSH_SECS */
#define LINGER_MS 2000 /* listener_lws.c: LINGER_SECS */
#define HEADROOM 16 /* LWS_PRE; client 2 uses more than an output block has */

/* --- the clocks (clock.h): they move when the input says time passes --------------- */

static uint64_t now_ms, wall_ms;

uint64_t clock_now_ms(void)
{
	return now_ms;
}

uint64_t clock_wall_ms(void)
{
	return wall_ms;
}

static void time_passes(uint64_t ms)
{
	now_ms += ms;
	wall_ms += ms;
}

/* --- the input ---------------------------------------------------------------------- */

struct in {
	const uint8_t *p;
	size_t n, pos;
};

/* The next byte; 0 once the input is used up. */
static uint8_t in_u8(struct in *in)
{
	return in->pos < in->n ? in->p[in->pos++] : 0;
}

/* Up to want bytes of the input; returns how many. */
static size_t in_bytes(struct in *in, size_t want, const uint8_t **p)
{
	size_t n = in->n - in->pos < want ? in->n - in->pos : want;

	*p = in->p + in->pos;
	in->pos += n;
	return n;
}

/* --- the clients ------------------------------------------------------------------- */

/* An acknowledgement a client owes the broker: type is PUBACK, PUBREC or PUBCOMP. */
struct owed {
	uint16_t id;
	uint8_t type;
};

enum ack_mode { ACK_MANUAL, ACK_AUTO, ACK_AUTO_FAIL };

/*
 * A connection's transport context. It is freed once the broker heard of
 * the close, as lws frees a wsi when its close callback returns (DESIGN
 * pitfall 6): a conn_ops call after that is a use after free.
 */
struct transport {
	struct slot *slot;
};

struct slot {
	int index;
	struct conn *c; /* NULL: no connection */
	struct transport *t; /* c's */
	/* what the broker asked of the transport */
	bool close_asked, lingering, paused;
	uint64_t close_at, linger_until;
	struct buf held; /* input not fed while reading is paused */
	/* how the client behaves (op_mode, the header) */
	bool stalled, linger, cert;
	bool prompt; /* since it connected: reads everything at once and acknowledges by itself */
	uint8_t ack_mode, version;
	uint16_t chunk, read_cap, next_pid;
	/* what it read on this connection */
	struct framer rx;
	bool connack, refused, disconnected;
	int8_t expect_present; /* the CONNACK's Session Present, or -1: not known */
	uint64_t opened_at;
	uint32_t aliases; /* bit a: the broker set topic alias a (1..31) */
	struct owed owed[OWED_MAX];
	size_t n_owed;
	struct buf reply; /* its answers, fed after the read */
};

static struct slot slots[N_SLOTS];
static bool verbose; /* SLUICE_FUZZ_LOG: the broker's log and what the clients read, on stderr */
static struct buf scratch, props, wprops; /* encoding the clients' packets */

/*
 * Allocation failures (op_oom): while oom >= 0, every call into the broker
 * gets oom allocations, then each further one fails [STYLE: out of memory
 * is handled]. The target's own allocations (encoding, reading) never fail.
 */
static long oom = -1;
static bool oom_seen; /* allocations failed in this input: deliveries may wait for a reconnect */

static void enter(void)
{
	if (oom >= 0)
		mem_fail_after(oom);
}

static void leave(void)
{
	mem_fail_after(-1);
}

/* Every client reads after every operation; only the transport's life is checked. */
static void t_want_write(void *tctx)
{
	fuzz_check(((struct transport *)tctx)->slot != NULL);
}

static void t_close(void *tctx)
{
	struct slot *s = ((struct transport *)tctx)->slot;

	if (s->close_asked)
		return;
	s->close_asked = true;
	s->close_at = now_ms + CLOSE_FLUSH_MS;
}

static void t_pause(void *tctx, bool pause)
{
	struct slot *s = ((struct transport *)tctx)->slot;

	fuzz_check(s->paused != pause);
	s->paused = pause;
}

static int t_peer_cn(void *tctx, char *buf, size_t len)
{
	struct slot *s = ((struct transport *)tctx)->slot;

	if (!s->cert)
		return -1;
	snprintf(buf, len, "alice");
	return 0;
}

static const struct conn_ops fuzz_ops = { t_want_write, t_close, t_pause, t_peer_cn };

static void slot_reset(struct slot *s)
{
	framer_free(&s->rx);
	buf_reset(&s->held);
	buf_reset(&s->reply);
	s->c = NULL;
	s->close_asked = s->lingering = s->paused = false;
	s->connack = s->refused = s->disconnected = false;
	s->aliases = 0;
	s->n_owed = 0;
	s->expect_present = -1;
}

/* The transport is gone (closed, cut, timed out): the broker hears it once. */
static void slot_gone(struct slot *s)
{
	struct conn *c = s->c;
	struct transport *t = s->t;

	if (!c)
		return;
	slot_reset(s);
	enter();
	conn_on_closed(c);
	leave();
	free(t);
	s->t = NULL;
}

static int slot_open(struct slot *s)
{
	char peer[32];

	slot_gone(s);
	snprintf(peer, sizeof(peer), "192.0.2.%d:%d", s->index + 1, 40000 + s->index);
	fuzz_check((s->t = malloc(sizeof(*s->t))) != NULL);
	s->t->slot = s;
	enter();
	s->c = conn_new(&fuzz_ops, s->t, s->index == 1, peer, s->index == 2 ? 600 : HEADROOM);
	leave();
	if (!s->c) {
		free(s->t);
		s->t = NULL;
		return -1;
	}
	framer_init(&s->rx, 0);
	s->opened_at = now_ms;
	s->prompt = s->ack_mode != ACK_MANUAL && !s->stalled && !s->read_cap;
	s->c->identity_as_username = s->cert;
	return 0;
}

/* Bytes from the client, in chunks of s->chunk; held while the broker paused reading. */
static void feed(struct slot *s, const uint8_t *p, size_t n)
{
	if (!s->c && slot_open(s))
		return;
	while (n) {
		size_t k = s->chunk && s->chunk < n ? s->chunk : n;

		if (s->paused) {
			fuzz_check(buf_put(&s->held, p, n) == 0);
			return;
		}
		enter();
		conn_on_data(s->c, p, k);
		leave();
		p += k;
		n -= k;
	}
}

static void feed_buf(struct slot *s, struct buf *b)
{
	feed(s, b->data, b->len);
}

/* --- what a client reads --------------------------------------------------------------- */

static void owe(struct slot *s, uint16_t id, uint8_t type)
{
	if (s->n_owed == OWED_MAX) {
		memmove(s->owed, s->owed + 1, (OWED_MAX - 1) * sizeof(s->owed[0]));
		s->n_owed--;
	}
	s->owed[s->n_owed++] = (struct owed){ id, type };
}

static void encode_ack(struct buf *out, uint8_t version, uint8_t type, uint16_t id, uint8_t rc)
{
	struct mqtt_ack a;

	memset(&a, 0, sizeof(a));
	a.packet_id = id;
	a.reason = version == MQTT_V5 ? rc : 0;
	fuzz_check(codec_encode_ack(out, version, type, &a) == 0);
}

/* The client answers a PUBLISH or PUBREL now (auto) or when the input says (manual). */
static void answer(struct slot *s, uint16_t id, uint8_t type)
{
	uint8_t rc = s->ack_mode == ACK_AUTO_FAIL && type != MQTT_PUBCOMP ? 0x80 : 0;

	if (s->ack_mode == ACK_MANUAL)
		owe(s, id, type);
	else
		encode_ack(&s->reply, s->c->version, type, id, rc);
}

/* [MQTT-3.3.2-12] an alias the broker uses alone is one it set on this connection. */
static void check_alias(struct slot *s, const struct mqtt_publish *p)
{
	uint16_t a = p->props.topic_alias;

	if (!(p->props.present & PROP_BIT(MQTT_PROP_TOPIC_ALIAS))) {
		fuzz_check(p->topic.len > 0);
		return;
	}
	fuzz_check(a >= 1 && a <= s->c->client_alias_max);
	if (p->topic.len && a < 32)
		s->aliases |= 1u << a;
	if (!p->topic.len)
		fuzz_check(a < 32 && (s->aliases & 1u << a));
}

static void read_publish(struct slot *s, const struct mqtt_publish *p, size_t len)
{
	/* [MQTT-3.1.2-24] the broker drops what the client cannot take */
	fuzz_check(!s->c->client_max_packet || len <= s->c->client_max_packet);
	fuzz_check(p->qos <= base.cfg->max_qos);
	check_alias(s, p);
	if (p->qos == 1)
		answer(s, p->packet_id, MQTT_PUBACK);
	if (p->qos == 2)
		answer(s, p->packet_id, MQTT_PUBREC);
}

/* A packet over the client's limit can only be one that has no smaller form. */
static void check_size(const struct slot *s, const struct mqtt_packet *p, size_t len)
{
	if (!s->c->client_max_packet || len <= s->c->client_max_packet)
		return;
	if (p->type >= MQTT_PUBACK && p->type <= MQTT_PUBCOMP)
		fuzz_check(!p->u.ack.props.raw_len);
	if (p->type == MQTT_DISCONNECT)
		fuzz_check(!(p->u.disconnect.props.present & PROP_BIT(MQTT_PROP_REASON_STRING)));
}

static int on_server_packet(void *arg, const uint8_t *pkt, size_t len)
{
	struct slot *s = arg;
	struct mqtt_packet p;

	fuzz_check(codec_decode(pkt, len, s->c->version, &p) == CODEC_OK);
	if (verbose)
		fprintf(stderr, "client %d reads type %u, %zu bytes, flags %x, id %u\n", s->index,
			p.type, len, pkt[0] & 15,
			p.type == MQTT_PUBLISH				  ? p.u.publish.packet_id
			: p.type >= MQTT_PUBACK && p.type <= MQTT_PUBCOMP ? p.u.ack.packet_id
									  : 0);
	fuzz_check(!s->disconnected && !s->refused);
	check_size(s, &p, len);
	if (p.type == MQTT_CONNACK) {
		fuzz_check(!s->connack);
		s->connack = true;
		s->refused = p.u.connack.reason != 0;
		/* [MQTT-3.2.2-6] no session with a refusal; [MQTT-3.2.2-2, -3] one when kept */
		if (s->refused)
			fuzz_check(!p.u.connack.session_present);
		else if (s->expect_present >= 0)
			fuzz_check(p.u.connack.session_present == s->expect_present);
		return 0;
	}
	fuzz_check(s->connack);
	switch (p.type) {
	case MQTT_PUBLISH:
		read_publish(s, &p.u.publish, len);
		break;
	case MQTT_PUBREL:
		answer(s, p.u.ack.packet_id, MQTT_PUBCOMP);
		break;
	case MQTT_DISCONNECT:
		fuzz_check(s->c->version == MQTT_V5);
		s->disconnected = true;
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBCOMP:
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
	case MQTT_PINGRESP:
		break;
	default:
		fuzz_fail(__FILE__, __LINE__, "a packet type only clients send");
	}
	return 0;
}

/* The client reads (at most read_cap bytes); the transport's header goes in the headroom. */
static bool client_read(struct slot *s)
{
	uint8_t *p;
	size_t n = conn_pending(s->c, &p);

	if (!n)
		return false;
	if (s->read_cap && n > s->read_cap)
		n = s->read_cap;
	memset(p - s->c->headroom, 0xee, s->c->headroom);
	fuzz_check(framer_feed(&s->rx, p, n, on_server_packet, s) == FRAMER_OK);
	conn_sent(s->c, n);
	return true;
}

/* --- the loop ----------------------------------------------------------------------- */

/* Flushed: half-close and linger as lws does, or close now. */
static void flushed(struct slot *s)
{
	if (!s->linger) {
		slot_gone(s);
		return;
	}
	s->lingering = true;
	s->linger_until = now_ms + LINGER_MS;
	enter();
	conn_linger(s->c);
	leave();
}

/* Feeds what b holds, emptied first: feeding may add to it (a pause holds the rest). */
static void feed_out_of(struct slot *s, struct buf *b)
{
	struct buf taken = *b;

	buf_init(b);
	feed_buf(s, &taken);
	buf_free(&taken);
}

/* One client's turn: read, answer, feed what was held, close. True when it did something. */
static bool service(struct slot *s)
{
	bool busy = false;

	if (!s->c)
		return false;
	if (s->lingering) {
		if (now_ms >= s->linger_until)
			slot_gone(s);
		return false;
	}
	if (!s->stalled)
		busy = client_read(s);
	if (s->reply.len && !s->close_asked) {
		feed_out_of(s, &s->reply);
		busy = true;
	}
	if (s->held.len && !s->paused) {
		feed_out_of(s, &s->held);
		busy = true;
	}
	if (conn_done(s->c)) {
		flushed(s);
		busy = true;
	} else if (s->close_asked && now_ms >= s->close_at) {
		slot_gone(s); /* lws's PENDING_TIMEOUT_CLOSE_SEND: the client never read */
		busy = true;
	}
	return busy;
}

/* What broker_run() does between wake-ups, until nothing moves (a hang is a finding). */
static void loop_turn(void)
{
	for (;;) {
		bool busy = false;

		enter();
		timers_fire();
		leave();
		for (int i = 0; i < N_SLOTS; i++)
			busy |= service(&slots[i]);
		store_poll();
		store_kick();
		if (!busy)
			return;
	}
}

/* --- the listener (listener.h) ------------------------------------------------------- */

int listener_start(const struct config *cfg)
{
	(void)cfg;
	return 0;
}

/* broker_shutdown() turns the loop for at most 500 ms: let the time pass. */
int listener_service(void)
{
	time_passes(50);
	loop_turn();
	return 0;
}

void listener_wake(void)
{
}

void listener_timer_changed(uint64_t due_ms)
{
	(void)due_ms; /* loop_turn() fires whatever is due */
}

/* As lws_context_destroy(): every connection still open closes. */
void listener_stop(void)
{
	for (int i = 0; i < N_SLOTS; i++)
		slot_gone(&slots[i]);
}

void listener_reload(void)
{
}

/* No bridge is configured here, so none asks for the loop. */
struct uv_loop_s *listener_loop(void)
{
	return NULL;
}

/* --- what the clients send ------------------------------------------------------------ */

static const char *const client_ids[] = { "c0", "c1", "c2", "x" };
static const char *const own_ids[N_SLOTS] = { "c0", "c1", "c2" };
static const char *const will_topics[] = { "will/a", "a", "$SYS/will", "a/+" };
static const char *const topics[16] = { "a",	    "a/b",    "a/b/c",	"b",   "c0/t",	  "c1/t",
					"a/secret", "$SYS/x", "will/a", "x/y", "a/b/c/d", "$x",
					"",	    "a/+",    "ro",	"/" };
static const char *const filters[16] = {
	"#",	  "a", "a/+",	"a/#",	"+/b",	  "$share/g/a/#", "$share/g/#", "$share/h/+",
	"$SYS/#", "+", "a/b/c", "c0/#", "will/#", "$share/g/a",	  "a/#/b",	"b"
};
static const uint16_t keep_alives[] = { 0, 1, 5, 60 };
static const uint32_t expiries[] = { 0, 2, 60, UINT32_MAX };
static const uint8_t versions[] = { MQTT_V5, MQTT_V311, MQTT_V31, MQTT_V5 };

static uint8_t slot_version(const struct slot *s)
{
	return s->c && s->c->version ? s->c->version : s->version;
}

/* CONNECT properties: f3 and f4 of op_connect. */
static void connect_props(struct buf *b, uint8_t f3, uint8_t f4)
{
	buf_reset(b);
	if (f3 & 1)
		props_put_u32(b, MQTT_PROP_SESSION_EXPIRY, expiries[f3 >> 1 & 3]);
	if (f3 & 8)
		props_put_u16(b, MQTT_PROP_RECEIVE_MAX, f3 & 16 ? 2 : 1);
	if (f3 & 32)
		props_put_u16(b, MQTT_PROP_TOPIC_ALIAS_MAX, 2);
	if (f3 & 64)
		props_put_u32(b, MQTT_PROP_MAX_PACKET_SIZE, f3 & 128 ? 300 : 40);
	if (f4 & 1)
		props_put_u8(b, MQTT_PROP_REQUEST_PROBLEM_INFO, 0);
	if (f4 & 2)
		props_put_u8(b, MQTT_PROP_REQUEST_RESPONSE_INFO, 1);
	if (f4 & 64)
		props_put_pair(b, "k", 1, "v", 1);
	if (f4 & 128)
		props_put_str(b, MQTT_PROP_AUTH_METHOD, "SCRAM-SHA-1", 11);
}

static void will_props(struct buf *b, uint8_t f4)
{
	buf_reset(b);
	if (f4 & 4)
		props_put_u32(b, MQTT_PROP_WILL_DELAY, 2);
	if (f4 & 8)
		props_put_u32(b, MQTT_PROP_MESSAGE_EXPIRY, 1);
	if (f4 & 16)
		props_put_u8(b, MQTT_PROP_PAYLOAD_FORMAT, 1);
}

static void set_str(struct mqtt_str *m, const char *s)
{
	m->p = s;
	m->len = (uint16_t)strlen(s);
}

/*
 * A new connection and its CONNECT. f1: level, clean start, will, its
 * retain and QoS, a username; f2: client id, keep alive, which username,
 * a password; f3, f4: MQTT 5 properties (connect_props, will_props), a will
 * payload that is not UTF-8; f5: the will's topic.
 */
static void op_connect(struct slot *s, struct in *in)
{
	uint8_t f1 = in_u8(in), f2 = in_u8(in), f3 = in_u8(in), f4 = in_u8(in), f5 = in_u8(in);
	struct mqtt_connect c;
	uint8_t id = f2 & 7;

	memset(&c, 0, sizeof(c));
	c.version = versions[f1 & 3];
	c.clean_start = f1 & 4;
	c.will = f1 & 8;
	c.will_retain = c.will && (f1 & 16);
	c.will_qos = c.will ? f1 >> 5 & 3 : 0;
	c.has_username = f1 & 128;
	set_str(&c.client_id, id < 4 ? client_ids[id] : id == 4 ? "" : own_ids[s->index]);
	c.keep_alive = keep_alives[f2 >> 3 & 3];
	set_str(&c.username, f2 & 32 ? "bob" : "alice");
	c.has_password = c.has_username && (f2 & 64);
	c.password.p = (const uint8_t *)"pw";
	c.password.len = 2;
	if (c.version == MQTT_V5) {
		connect_props(&props, f3, f4);
		will_props(&wprops, f4);
		c.props.raw = props.data;
		c.props.raw_len = props.len;
		c.will_props.raw = wprops.data;
		c.will_props.raw_len = wprops.len;
	}
	set_str(&c.will_topic, will_topics[f5 & 3]);
	c.will_payload.p = (const uint8_t *)(f4 & 32 ? "\xff\xfe" : "bye");
	c.will_payload.len = f4 & 32 ? 2 : 3;
	if (slot_open(s))
		return;
	/* a session outlives its connection when its expiry is not 0 (takeover included) */
	if (c.client_id.len) {
		struct session *old = session_find(c.client_id.p);

		s->expect_present = !c.clean_start && old && old->expiry_interval;
	}
	s->version = c.version;
	s->next_pid = 1;
	buf_reset(&scratch);
	/* the encoders refuse a few of the inputs' wishes (QoS 3, DUP on QoS 0, ...) */
	if (codec_encode_connect(&scratch, &c) == 0)
		feed_buf(s, &scratch);
}

/* f1: QoS, retain, DUP, topic; f2: packet id, properties; f3: payload length, expiry. */
static void op_publish(struct slot *s, struct in *in)
{
	uint8_t f1 = in_u8(in), f2 = in_u8(in), f3 = in_u8(in);
	const char *topic = topics[f1 >> 4];
	const uint8_t *payload;
	size_t plen = in_bytes(in, f3 & 63, &payload);
	uint8_t qos = (f1 & 3) == 3 ? 1 : f1 & 3;

	buf_reset(&props);
	if (f2 & 8)
		props_put_u32(&props, MQTT_PROP_MESSAGE_EXPIRY, f3 >> 6);
	if (f2 & 16)
		props_put_u16(&props, MQTT_PROP_TOPIC_ALIAS, 1 + (f2 >> 5 & 1));
	if (f2 & 128) {
		props_put_u8(&props, MQTT_PROP_PAYLOAD_FORMAT, 1);
		props_put_str(&props, MQTT_PROP_RESPONSE_TOPIC, "r/1", 3);
		props_put_str(&props, MQTT_PROP_CORRELATION_DATA, "\x01", 1);
		props_put_pair(&props, "k", 1, "v", 1);
	}
	buf_reset(&scratch);
	if (codec_encode_publish(&scratch, slot_version(s), topic, f2 & 64 ? 0 : strlen(topic), qos,
				 f1 & 4, f1 & 8, qos ? 1 + (f2 & 7) : 0, props.data, props.len,
				 payload, plen) == 0)
		feed_buf(s, &scratch);
}

static uint16_t next_pid(struct slot *s)
{
	if (!s->next_pid)
		s->next_pid = 1;
	return s->next_pid++;
}

/* f1: first filter, how many, a subscription id; f2: the options (reserved bits when f2 & 128). */
static void op_subscribe(struct slot *s, struct in *in)
{
	uint8_t f1 = in_u8(in), f2 = in_u8(in);
	size_t n = 1 + (f1 >> 4 & 3);
	const char *list[4];
	uint8_t opts[4];

	for (size_t i = 0; i < n; i++) {
		list[i] = filters[(f1 + i * 5) & 15];
		opts[i] = (uint8_t)((f2 & 0x3c) | (f2 + i) % 3);
	}
	if (f2 & 128)
		opts[0] = f2;
	buf_reset(&props);
	if (f1 & 64)
		props_put_varint(&props, MQTT_PROP_SUBSCRIPTION_ID, 1 + (f1 >> 7));
	buf_reset(&scratch);
	if (codec_encode_subscribe(&scratch, slot_version(s), next_pid(s), props.data, props.len,
				   list, opts, n) == 0)
		feed_buf(s, &scratch);
}

static void op_unsubscribe(struct slot *s, struct in *in)
{
	uint8_t f1 = in_u8(in);
	size_t n = 1 + (f1 >> 4 & 3);
	const char *list[4];

	for (size_t i = 0; i < n; i++)
		list[i] = filters[(f1 + i * 5) & 15];
	buf_reset(&scratch);
	if (codec_encode_unsubscribe(&scratch, slot_version(s), next_pid(s), NULL, 0, list, n) == 0)
		feed_buf(s, &scratch);
}

/* f & 1: an acknowledgement the client owes (f >> 1 picks it), else any type and id. */
static void op_ack(struct slot *s, struct in *in)
{
	uint8_t f = in_u8(in), rc = f & 128 ? 0x80 : 0;

	buf_reset(&scratch);
	if ((f & 1) && s->n_owed) {
		size_t k = (size_t)(f >> 1) % s->n_owed;
		struct owed o = s->owed[k];

		memmove(&s->owed[k], &s->owed[k + 1], (s->n_owed - k - 1) * sizeof(o));
		s->n_owed--;
		encode_ack(&scratch, slot_version(s), o.type, o.id,
			   o.type == MQTT_PUBCOMP ? 0 : rc);
	} else {
		encode_ack(&scratch, slot_version(s), (uint8_t)(MQTT_PUBACK + (f >> 1 & 3)),
			   (uint16_t)(1 + (f >> 3 & 15)), rc);
	}
	feed_buf(s, &scratch);
}

static void op_ping(struct slot *s, struct in *in)
{
	(void)in;
	buf_reset(&scratch);
	if (codec_encode_empty(&scratch, MQTT_PINGREQ) == 0)
		feed_buf(s, &scratch);
}

/* f: reason (normal, with will, two failures), a session expiry and its value. */
static void op_disconnect(struct slot *s, struct in *in)
{
	static const uint8_t reasons[] = { 0, MQTT_RC_DISCONNECT_WITH_WILL, 0x80, 0x81 };
	uint8_t f = in_u8(in);
	struct mqtt_disconnect d;

	memset(&d, 0, sizeof(d));
	d.reason = reasons[f & 3];
	buf_reset(&props);
	if (f & 4)
		props_put_u32(&props, MQTT_PROP_SESSION_EXPIRY, expiries[f >> 3 & 3]);
	d.props.raw = props.data;
	d.props.raw_len = props.len;
	buf_reset(&scratch);
	if (codec_encode_disconnect(&scratch, slot_version(s), &d) == 0)
		feed_buf(s, &scratch);
}

/*
 * Up to 255 bytes as they are: any packet, part of one, several. The
 * client's answers may then land inside a packet: it is no longer prompt.
 */
static void op_raw(struct slot *s, struct in *in)
{
	const uint8_t *p;
	size_t n = in_bytes(in, in_u8(in), &p);

	feed(s, p, n);
	s->prompt = false;
}

/* The connection breaks: no flush, no DISCONNECT (the will is due). */
static void op_drop(struct slot *s, struct in *in)
{
	(void)in;
	slot_gone(s);
}

static void op_time(struct slot *s, struct in *in)
{
	static const uint32_t steps[16] = { 0,	  1,	10,   100,  499,  500,	 1000,	1499,
					    1500, 2000, 3000, 5000, 7500, 10000, 61000, 3600000 };

	(void)s;
	time_passes(steps[in_u8(in) & 15]);
}

/* f: not reading, how to acknowledge, lingering, input chunk size, bytes per read. */
static void op_mode(struct slot *s, struct in *in)
{
	static const uint16_t chunks[] = { 0, 1, 3, 7 }, caps[] = { 0, 1, 5, 64 };
	uint8_t f = in_u8(in);

	s->stalled = f & 1;
	s->ack_mode = (f >> 1 & 3) == 3 ? ACK_MANUAL : f >> 1 & 3;
	s->linger = f & 8;
	s->chunk = chunks[f >> 4 & 3];
	s->read_cap = caps[f >> 6];
	if (s->ack_mode == ACK_MANUAL || s->stalled || s->read_cap)
		s->prompt = false;
}

static void run_op(struct in *in);

/* f: how many allocations each call into the broker gets during the next operation. */
static void op_oom(struct slot *s, struct in *in)
{
	(void)s;
	oom = in_u8(in);
	oom_seen = true;
	run_op(in);
}

/*
 * f: the client's session hands out packet ids from 65535 - f on, as after
 * some 65,000 messages: the ids wrap to 1 and skip those still in use.
 * (Forgetting the run of free ids it knew is always safe: it looks again.)
 */
static void op_ids(struct slot *s, struct in *in)
{
	uint8_t f = in_u8(in);
	struct session *se = s->c ? s->c->session : NULL;

	if (!se)
		return;
	se->q.next_packet_id = (uint16_t)(65535 - (f & 15));
	se->q.ids_free = 0;
}

typedef void (*op_fn)(struct slot *s, struct in *in);

static const op_fn ops[] = { op_connect, op_publish, op_publish,    op_subscribe, op_unsubscribe,
			     op_ack,	 op_ping,    op_disconnect, op_raw,	  op_raw,
			     op_drop,	 op_time,    op_mode,	    op_oom,	  op_ids };

#define N_OPS (sizeof(ops) / sizeof(ops[0]))

static void run_op(struct in *in)
{
	uint8_t b = in_u8(in);

	if (verbose)
		fprintf(stderr, "client %d: operation %zu at byte %zu\n", (b >> 6) % N_SLOTS,
			(b & 63) % N_OPS, in->pos - 1);
	ops[(b & 63) % N_OPS](&slots[(b >> 6) % N_SLOTS], in);
}

/* --- the broker's own state ------------------------------------------------------------ */

static uint8_t id_used[65536];

static void check_list(const struct out_list *l)
{
	const struct out_entry *e, *prev = NULL;
	uint32_t n = 0;

	for (e = l->head; e; prev = e, e = e->next, n++) {
		fuzz_check(e->prev == prev);
		fuzz_check(e->msg && e->msg->refs > 0);
	}
	fuzz_check(l->tail == prev && l->n == n);
}

/* Marks (or, with on false, unmarks) the packet ids of q; true when none was marked twice. */
static bool mark_ids(const struct outq *q, uint8_t on)
{
	const struct out_entry *e;
	bool distinct = true;

	for (e = q->inflight.head; e; e = e->next) {
		distinct &= id_used[e->packet_id] != on;
		id_used[e->packet_id] = on;
	}
	for (e = q->queue.head; e; e = e->next) {
		if (!e->packet_id)
			continue;
		distinct &= id_used[e->packet_id] != on;
		id_used[e->packet_id] = on;
	}
	return distinct;
}

static void check_queue(const struct outq *q)
{
	const struct out_entry *e;
	uint64_t bytes = 0;
	uint32_t published = 0;

	check_list(&q->inflight);
	check_list(&q->queue);
	for (e = q->queue.head; e; e = e->next) {
		bytes += msg_size(e->msg);
		fuzz_check(e->state == OUT_QUEUED && (!e->sent_once || e->packet_id));
	}
	fuzz_check(bytes == q->queued_bytes);
	for (e = q->inflight.head; e; e = e->next) {
		fuzz_check(e->qos >= 1 && e->qos <= 2 && e->packet_id);
		fuzz_check(e->state == OUT_PUBLISHED || (e->state == OUT_RELEASED && e->qos == 2));
		published += e->state == OUT_PUBLISHED;
	}
	/* [MQTT-2.2.1-3] a packet id in use is not given to another message */
	fuzz_check(mark_ids(q, 1));
	mark_ids(q, 0);
	/* [MQTT-3.3.4-9] no more unacknowledged PUBLISHes than the client's Receive Maximum */
	if (q->conn && q->conn->state == CONN_ACTIVE)
		fuzz_check(published <= outq_window(q));
	for (uint32_t i = 0; i < q->n_rx_qos2; i++) {
		fuzz_check(!id_used[q->rx_qos2[i]]);
		id_used[q->rx_qos2[i]] = 1;
	}
	for (uint32_t i = 0; i < q->n_rx_qos2; i++)
		id_used[q->rx_qos2[i]] = 0;
}

static void check_session(const struct session *s)
{
	const struct sub_rec *r;
	uint32_t n = 0;

	fuzz_check(s->q.owner == s && s->q.conn == s->conn && !s->q.group);
	check_queue(&s->q);
	for (r = s->subs; r; r = r->next)
		n++;
	fuzz_check(n == s->n_subs);
	if (s->conn) {
		fuzz_check(s->conn->session == s);
		return;
	}
	/* offline: it ends at its expiry (session.c's first invariant), its will is due */
	if (s->expiry_interval != UINT32_MAX) {
		fuzz_check(timer_armed(&s->expiry_timer));
		fuzz_check(wall_ms - s->disconnected_wall < (uint64_t)s->expiry_interval * 1000);
	}
	if (s->will) {
		uint32_t delay = s->will_delay < s->expiry_interval ? s->will_delay
								    : s->expiry_interval;

		fuzz_check(timer_armed(&s->will_timer));
		fuzz_check(wall_ms - s->disconnected_wall < (uint64_t)delay * 1000);
	}
}

static size_t add_known(struct session **known, size_t n, struct session *s)
{
	for (size_t i = 0; i < n; i++)
		if (known[i] == s)
			return n;
	known[n] = s;
	return n + 1;
}

static void check_sessions(void)
{
	struct session *known[N_SLOTS + 4];
	size_t n = 0;
	uint64_t subs = 0;

	for (size_t i = 0; i < 4; i++)
		if (session_find(client_ids[i]))
			n = add_known(known, n, session_find(client_ids[i]));
	for (int i = 0; i < N_SLOTS; i++)
		if (slots[i].c && slots[i].c->session)
			n = add_known(known, n, slots[i].c->session);
	for (size_t i = 0; i < n; i++) {
		check_session(known[i]);
		subs += known[i]->n_subs;
	}
	if (n == session_count())
		fuzz_check(subs == router_subscription_count());
}

/*
 * The connections: one that was refused or told DISCONNECT is closing; none
 * outlives connect_timeout without a CONNECT, or 1.5 times its keep alive
 * without a packet [MQTT-3.1.2-24].
 */
static void check_clients(void)
{
	for (int i = 0; i < N_SLOTS; i++) {
		const struct slot *s = &slots[i];
		const struct conn *c = s->c;

		if (!c || s->lingering)
			continue;
		if (s->refused || s->disconnected)
			fuzz_check(c->state == CONN_CLOSING);
		if (c->state == CONN_NEW)
			fuzz_check(now_ms <
				   s->opened_at + (uint64_t)base.cfg->connect_timeout * 1000);
		if (c->state == CONN_ACTIVE && c->keep_alive)
			fuzz_check(now_ms - c->last_rx_ms < (uint64_t)c->keep_alive * 1500);
		/* a client that acknowledges everything at once has nothing waiting */
		if (c->state == CONN_ACTIVE && c->session && s->prompt && !oom_seen)
			fuzz_check(!c->session->q.inflight.n && !c->session->q.queue.n);
	}
}

/* After broker_shutdown(): nothing of the input is left. */
static void check_clean(void)
{
	fuzz_check(msg_alive() == 0);
	fuzz_check(conn_count() == 0);
	fuzz_check(session_count() == 0);
	fuzz_check(groupq_count() == 0);
	fuzz_check(timers_loop_next() == UINT64_MAX);
	for (int i = 0; i < N_SLOTS; i++)
		fuzz_check(!slots[i].c);
}

/* --- one input -------------------------------------------------------------------------- */

static char acl_path[64];

/* An ACL file for the configurations that have one (header byte 0, bit 7). */
static const char acl_text[] = "topic readwrite a/#\n"
			       "topic deny a/secret\n"
			       "topic read b\n"
			       "topic write ro\n"
			       "topic readwrite will/#\n"
			       "topic read $SYS/#\n"
			       "pattern readwrite c%c/#\n"
			       "user alice\n"
			       "topic readwrite #\n"
			       "topic deny x/#\n";

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int fd = memfd_create("sluice-fuzz-acl", 0);

	(void)argc;
	(void)argv;
	fuzz_check(fd >= 0);
	fuzz_check(write(fd, acl_text, sizeof(acl_text) - 1) == (ssize_t)sizeof(acl_text) - 1);
	snprintf(acl_path, sizeof(acl_path), "/proc/self/fd/%d", fd);
	/* Every log line is formatted, and written to nowhere unless asked for. */
	verbose = getenv("SLUICE_FUZZ_LOG") != NULL;
	if (verbose)
		fuzz_check(log_open(LOG_DEBUG, "stderr", NULL) == 0);
	else
		fuzz_check(log_open(LOG_DEBUG, "file", "/dev/null") == 0);
	return 0;
}

/* Header bytes 0 and 1. */
static void configure(struct config *cfg, uint8_t a, uint8_t b)
{
	static const uint16_t windows[] = { 20, 1, 2, 65535 }, aliases[] = { 10, 0, 1, 2 };

	config_defaults(cfg);
	cfg->persistence = false;
	cfg->security.allow_anonymous = true;
	cfg->log_level = LOG_DEBUG;
	cfg->max_inflight_messages = windows[a & 3];
	if (a & 4)
		cfg->max_queued_messages = 2;
	if (a & 8)
		cfg->max_queued_bytes = 300;
	cfg->queue_qos0_messages = a & 16;
	if (a & 32)
		cfg->max_qos = 1;
	cfg->retain_available = !(a & 64);
	if (a & 128)
		fuzz_check((cfg->security.acl_file = mem_strdup(acl_path)) != NULL);
	if (b & 1)
		cfg->max_packet_size = 200;
	cfg->max_topic_alias = aliases[b >> 1 & 3];
	if (b & 8)
		cfg->max_keepalive = 5;
	cfg->allow_zero_length_clientid = !(b & 16);
	if (b & 32)
		cfg->persistent_client_expiration = 5;
	if (b & 64)
		cfg->max_qos0_backlog = 64;
	cfg->sys_interval = b & 128 ? 1 : 0;
}

/* Header byte 2: the clients, and the CONNECT of those that send one first. */
static void start_clients(uint8_t h)
{
	for (int i = 0; i < N_SLOTS; i++) {
		struct slot *s = &slots[i];

		memset(s, 0, sizeof(*s));
		s->index = i;
		s->version = MQTT_V5;
		s->ack_mode = h & 64 ? ACK_AUTO : ACK_MANUAL;
		s->cert = i == 2 && (h & 128);
		buf_init(&s->held);
		buf_init(&s->reply);
	}
	for (int i = 0; i < N_SLOTS; i++) {
		/* level and clean start from the header, its own id, keep alive 60, expiry 60 */
		uint8_t args[5] = { (uint8_t)((h >> 3 & 3) | (h & 32 ? 4 : 0)), 5 | 3 << 3,
				    h & 32 ? 0 : 1 | 2 << 1, 0, 0 };
		struct in in = { args, sizeof(args), 0 };

		if (h & 1 << i)
			op_connect(&slots[i], &in);
	}
}

static void stop_clients(void)
{
	for (int i = 0; i < N_SLOTS; i++) {
		framer_free(&slots[i].rx);
		buf_free(&slots[i].held);
		buf_free(&slots[i].reply);
	}
	buf_free(&scratch);
	buf_free(&props);
	buf_free(&wprops);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size, 0 };
	struct config cfg;
	uint8_t a = in_u8(&in), b = in_u8(&in), h = in_u8(&in);

	oom_seen = false;
	now_ms = 1000000;
	wall_ms = UINT64_C(1767225600000); /* 2026-01-01 */
	configure(&cfg, a, b);
	fuzz_check(broker_init(&cfg) == 0);
	start_clients(h);
	loop_turn();
	while (in.pos < in.n) {
		run_op(&in);
		loop_turn();
		oom = -1;
		check_sessions();
		check_clients();
	}
	broker_shutdown();
	check_clean();
	stop_clients();
	config_free(&cfg);
	return 0;
}
