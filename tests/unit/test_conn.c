/*
 * test_conn.c - a connection between a fake transport (struct conn_ops)
 * and a fake protocol layer (struct conn_handler): framing of arbitrary
 * chunks into whole packets, the packet size limit, the output buffer and
 * its headroom, one writable request per batch, back-pressure, the connect
 * timeout, closing and references, and out of memory at each allocation.
 *
 * The transport only counts what it is asked; the protocol layer copies
 * what it is handed. What the connection wrote is read back with
 * conn_pending() and decoded with codec_decode(), as a client would.
 *
 * Time: the broker's clock (clock.h) is the real monotonic clock and has no
 * fake, so the connect timeout is driven through the loop's timers with a
 * connect_timeout of 0 s (due at once) and checked for its deadline with
 * timers_loop_next() when it is not.
 *
 * Leaks: every test ends with conn_count() back to 0; the sanitizer build
 * (LeakSanitizer) checks that nothing allocated is left over.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base.h"
#include "clock.h"
#include "codec.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "msg.h"
#include "timers.h"

/* --- the fake transport ------------------------------------------------------------- */

#include "fake_transport.h"

/* --- the fake protocol layer -------------------------------------------------------- */

#define MAX_PKTS 16
#define MAX_PKT_LEN 128
static uint8_t packets[MAX_PKTS][MAX_PKT_LEN];
static size_t packet_len[MAX_PKTS], n_packets;
static int closed;
static struct conn *closed_conn;

static int on_packet(struct conn *c, const uint8_t *pkt, size_t len)
{
	assert_true(n_packets < MAX_PKTS && len <= MAX_PKT_LEN);
	memcpy(packets[n_packets], pkt, len);
	packet_len[n_packets++] = len;
	return 0;
}

static void on_closed(struct conn *c)
{
	closed++;
	closed_conn = c;
	assert_false(c->gone); /* told before the connection is marked gone and freed */
}

static const struct conn_handler handler = { on_packet, on_closed };
static struct config cfg;
static struct fake_transport tr;

static int setup(void **state)
{
	config_defaults(&cfg);
	cfg.persistence = false;
	cfg.max_packet_size = 100;
	base_init(&cfg);
	log_set_level(LOG_ERR);
	conn_set_handler(&handler);
	memset(&tr, 0, sizeof(tr));
	n_packets = 0;
	closed = 0;
	closed_conn = NULL;
	return 0;
}

static int teardown(void **state)
{
	mem_fail_after(-1);
	assert_int_equal(conn_count(), 0); /* every connection made was closed */
	conn_drain_caches();
	timers_loop_free();
	base_free();
	config_free(&cfg);
	return 0;
}

/* A connection as the protocol layer leaves it after CONNACK. */
static struct conn *active_conn(uint8_t version, size_t headroom)
{
	struct conn *c = conn_new(&fake_ops, &tr, false, "peer:1", headroom);

	assert_non_null(c);
	c->state = CONN_ACTIVE;
	c->version = version;
	return c;
}

/* Decodes the one packet of the pending output (whole, alone) into *pkt. */
static void pending_one(struct conn *c, struct mqtt_packet *pkt)
{
	uint8_t *p;
	size_t n = conn_pending(c, &p);

	assert_true(n >= 2);
	assert_true(p[1] < 128); /* a short packet: a one-byte remaining length */
	assert_int_equal(n, 2 + p[1]);
	assert_int_equal(codec_decode(p, n, c->version, pkt), CODEC_OK);
}

/* --- framing ------------------------------------------------------------------------ */

/* PINGREQ, a 12-byte PUBLISH, PINGREQ. */
static const uint8_t stream[] = { 0xc0, 0x00, 0x30, 0x0a, 0x00, 0x03, 'a',  '/',
				  'b',	'h',  'e',  'l',  'l',	'o',  0xc0, 0x00 };

static void check_stream_packets(void)
{
	assert_int_equal(n_packets, 3);
	assert_int_equal(packet_len[0], 2);
	assert_memory_equal(packets[0], stream, 2);
	assert_int_equal(packet_len[1], 12);
	assert_memory_equal(packets[1], stream + 2, 12);
	assert_int_equal(packet_len[2], 2);
	assert_memory_equal(packets[2], stream + 14, 2);
}

static void whole_packets_from_any_split(void **state)
{
	size_t cut, cut2, i;
	int made = 0;

	/* Two pieces at every point, then three pieces at every pair of points. */
	for (cut = 0; cut <= sizeof(stream); cut++) {
		struct conn *c = active_conn(MQTT_V311, 0);

		n_packets = 0;
		assert_int_equal(conn_on_data(c, stream, cut), 0);
		assert_int_equal(conn_on_data(c, stream + cut, sizeof(stream) - cut), 0);
		check_stream_packets();
		assert_int_equal(c->bytes_in, sizeof(stream));
		conn_on_closed(c);
		made++;
	}
	for (cut = 0; cut <= sizeof(stream); cut++) {
		for (cut2 = cut; cut2 <= sizeof(stream); cut2++) {
			struct conn *c = active_conn(MQTT_V311, 0);

			n_packets = 0;
			conn_on_data(c, stream, cut);
			conn_on_data(c, stream + cut, cut2 - cut);
			conn_on_data(c, stream + cut2, sizeof(stream) - cut2);
			check_stream_packets();
			conn_on_closed(c);
			made++;
		}
	}
	/* one byte at a time */
	{
		struct conn *c = active_conn(MQTT_V311, 0);

		n_packets = 0;
		for (i = 0; i < sizeof(stream); i++)
			conn_on_data(c, stream + i, 1);
		check_stream_packets();
		conn_on_closed(c);
		made++;
	}
	assert_int_equal(closed, made);
	assert_int_equal(tr.closes, 0); /* nothing in the stream closed a connection */
}

/* A PUBLISH of exactly total bytes (total < 130: one-byte remaining length). */
static size_t publish_of(uint8_t *b, size_t total)
{
	size_t rl = total - 2;

	memset(b, 'x', total);
	b[0] = 0x30;
	b[1] = (uint8_t)rl;
	b[2] = 0;
	b[3] = 1; /* topic "x" */
	return total;
}

static void limit_is_the_whole_packet(void **state)
{
	uint8_t b[128];
	struct conn *c = active_conn(MQTT_V5, 0);

	conn_on_data(c, b, publish_of(b, 100)); /* exactly max_packet_size: accepted */
	assert_int_equal(n_packets, 1);
	assert_int_equal(packet_len[0], 100);
	assert_int_equal(tr.closes, 0);
	conn_on_data(c, b, publish_of(b, 101));
	assert_int_equal(n_packets, 1);
	assert_int_equal(tr.closes, 1);
	conn_on_closed(c);
}

static void too_large_closes_with_disconnect(void **state)
{
	static const uint8_t big[] = { 0x30, 0x80, 0x01 }; /* remaining length 128 > 100 */
	struct conn *c = active_conn(MQTT_V5, 0);
	struct mqtt_packet pkt;

	/* Refused from the header alone, before the body arrives. */
	conn_on_data(c, big, sizeof(big));
	assert_int_equal(n_packets, 0);
	assert_int_equal(tr.closes, 1);
	assert_int_equal(c->state, CONN_CLOSING);
	pending_one(c, &pkt);
	assert_int_equal(pkt.type, MQTT_DISCONNECT);
	assert_int_equal(pkt.u.disconnect.reason, MQTT_RC_PACKET_TOO_LARGE);
	assert_false(conn_done(c)); /* the DISCONNECT is still to be flushed */
	conn_on_data(c, stream, sizeof(stream)); /* closing: input is not handled */
	assert_int_equal(n_packets, 0);
	assert_int_equal(tr.closes, 1);
	conn_on_closed(c);
	assert_int_equal(closed, 1);
}

/* MQTT 3.1.1 has no DISCONNECT from the server; before CONNACK nothing is sent either. */
static void too_large_without_disconnect(void **state)
{
	static const uint8_t big[] = { 0x30, 0x80, 0x01 };
	struct conn *v3 = active_conn(MQTT_V311, 0);
	struct conn *fresh = conn_new(&fake_ops, &tr, false, "peer:2", 0);
	uint8_t *p;

	fresh->version = MQTT_V5; /* state CONN_NEW: no CONNACK yet */
	conn_on_data(v3, big, sizeof(big));
	conn_on_data(fresh, big, sizeof(big));
	assert_int_equal(tr.closes, 2);
	assert_int_equal(conn_pending(v3, &p), 0);
	assert_int_equal(conn_pending(fresh, &p), 0);
	assert_true(conn_done(v3));
	assert_true(conn_done(fresh));
	conn_on_closed(v3);
	conn_on_closed(fresh);
}

static void malformed_length_closes(void **state)
{
	static const uint8_t bad[] = { 0x30, 0xff, 0xff, 0xff, 0xff, 0x01 };
	struct conn *c = active_conn(MQTT_V5, 0);
	struct mqtt_packet pkt;

	conn_on_data(c, bad, sizeof(bad));
	assert_int_equal(n_packets, 0);
	assert_int_equal(tr.closes, 1);
	pending_one(c, &pkt);
	assert_int_equal(pkt.type, MQTT_DISCONNECT);
	assert_int_equal(pkt.u.disconnect.reason, MQTT_RC_MALFORMED_PACKET);
	conn_on_closed(c);
}

/* --- output ------------------------------------------------------------------------- */

static struct msg *make_msg(const char *topic, const char *payload, uint64_t expiry_wall_ms)
{
	struct msg_spec s;
	struct msg *m;

	memset(&s, 0, sizeof(s));
	s.topic = topic;
	s.topic_len = strlen(topic);
	s.payload = payload;
	s.payload_len = strlen(payload);
	s.qos = 1;
	s.sender = "pub";
	s.expiry_wall_ms = expiry_wall_ms;
	m = msg_new(&s);
	assert_non_null(m);
	return m;
}

static void output_keeps_headroom_and_asks_once(void **state)
{
	struct conn *c = active_conn(MQTT_V311, 16);
	uint8_t *p, *q;
	size_t n;

	assert_int_equal(conn_send_ack(c, MQTT_PUBACK, 7, 0, NULL), 0);
	assert_int_equal(conn_send_ack(c, MQTT_PUBACK, 8, 0, NULL), 0);
	assert_int_equal(tr.want_write, 1); /* one writable request per batch */
	n = conn_pending(c, &p);
	assert_int_equal(n, 8);
	assert_true(p - c->out.data >= 16); /* the transport's headroom */
	assert_int_equal(p[0], MQTT_PUBACK << 4);
	assert_int_equal(p[3], 7);
	assert_int_equal(p[7], 8);
	conn_sent(c, 5);
	assert_int_equal(conn_backlog(c), 3);
	assert_int_equal(conn_pending(c, &q), 3);
	assert_ptr_equal(q, p + 5); /* the rest, where it was */
	assert_true(q - c->out.data >= 16);
	conn_sent(c, 3);
	assert_int_equal(conn_backlog(c), 0);
	assert_int_equal(conn_pending(c, &q), 0); /* drained: the buffer went back */
	assert_null(c->out.data);
	assert_int_equal(c->bytes_out, 8);
	assert_int_equal(conn_send_ack(c, MQTT_PUBACK, 9, 0, NULL), 0);
	assert_int_equal(tr.want_write, 2); /* a new batch after the drain */
	assert_int_equal(conn_pending(c, &q), 4);
	assert_true(q - c->out.data >= 16);
	conn_on_closed(c);
}

/* The transport took the batch (conn_pending) but has not written it: more output asks again. */
static void pending_opens_a_new_batch(void **state)
{
	struct conn *c = active_conn(MQTT_V311, 0);
	uint8_t *p;
	int i;

	for (i = 0; i < 100; i++)
		assert_int_equal(conn_send_ack(c, MQTT_PUBREC, (uint16_t)(i + 1), 0, NULL), 0);
	assert_int_equal(tr.want_write, 1);
	assert_int_equal(conn_pending(c, &p), 400);
	assert_int_equal(conn_send_ack(c, MQTT_PUBREC, 101, 0, NULL), 0);
	assert_int_equal(tr.want_write, 2);
	assert_int_equal(conn_pending(c, &p), 404);
	conn_sent(c, 404);
	assert_int_equal(conn_backlog(c), 0);
	conn_on_closed(c);
}

static void publish_appends_its_bytes(void **state)
{
	struct conn *c = active_conn(MQTT_V5, 8);
	struct msg *m = make_msg("a/b", "hello", 0);
	struct conn_publish pub = { m, 1, true, 4242, 0, 0, NULL };
	struct mqtt_packet pkt;
	uint8_t *p;
	size_t n;

	assert_int_equal(conn_send_publish(c, &pub, false), 0);
	assert_int_equal(conn_send_ack(c, MQTT_PUBACK, 5, 0x80, NULL), 0);
	assert_int_equal(tr.want_write, 1);
	n = conn_pending(c, &p);
	assert_true(p - c->out.data >= 8);
	/* first the PUBLISH ... */
	assert_true(n > 2 && p[1] < 128);
	assert_int_equal(codec_decode(p, 2 + p[1], MQTT_V5, &pkt), CODEC_OK);
	assert_int_equal(pkt.type, MQTT_PUBLISH);
	assert_int_equal(pkt.u.publish.qos, 1);
	assert_true(pkt.u.publish.retain);
	assert_false(pkt.u.publish.dup);
	assert_int_equal(pkt.u.publish.packet_id, 4242);
	assert_int_equal(pkt.u.publish.topic.len, 3);
	assert_memory_equal(pkt.u.publish.topic.p, "a/b", 3);
	assert_int_equal(pkt.u.publish.payload_len, 5);
	assert_memory_equal(pkt.u.publish.payload, "hello", 5);
	conn_sent(c, 2 + p[1]);
	/* ... then the PUBACK with its reason */
	pending_one(c, &pkt);
	assert_int_equal(pkt.type, MQTT_PUBACK);
	assert_int_equal(pkt.u.ack.packet_id, 5);
	assert_int_equal(pkt.u.ack.reason, 0x80);
	assert_int_equal(base_qos_sum(base.stats.msgs_sent), 1);

	/* a resend carries DUP */
	conn_sent(c, conn_backlog(c));
	assert_int_equal(conn_send_publish(c, &pub, true), 0);
	pending_one(c, &pkt);
	assert_true(pkt.u.publish.dup);
	conn_sent(c, conn_backlog(c));
	msg_unref(m);
	conn_on_closed(c);
}

static void publish_not_sendable_writes_nothing(void **state)
{
	struct conn *c = active_conn(MQTT_V5, 0);
	struct msg *m = make_msg("a/b", "a payload longer than the client allows", 0);
	struct msg *old = make_msg("a/b", "x", clock_wall_ms() - 1000);
	struct conn_publish big = { m, 1, false, 1, 0, 0, NULL };
	struct conn_publish expired = { old, 1, false, 2, 0, 0, NULL };
	uint8_t *p;

	c->client_max_packet = 20;
	assert_int_equal(conn_send_publish(c, &big, false), 1);
	assert_int_equal(conn_send_publish(c, &expired, false), 1);
	assert_int_equal(base.stats.expired, 1);
	assert_int_equal(conn_pending(c, &p), 0);
	assert_int_equal(tr.want_write, 0);
	assert_int_equal(base_qos_sum(base.stats.msgs_sent), 0);
	/* an expired message already being delivered is resent regardless [MQTT-4.4.0-1] */
	assert_int_equal(conn_send_publish(c, &expired, true), 0);
	assert_true(conn_backlog(c) > 0);
	conn_sent(c, conn_backlog(c));
	msg_unref(m);
	msg_unref(old);
	conn_on_closed(c);
}

/* --- back-pressure ------------------------------------------------------------------ */

#define PAUSE_BYTES (4u * 1024 * 1024)

static void backpressure_pauses_and_resumes(void **state)
{
	struct conn *c = active_conn(MQTT_V311, 0);
	uint8_t *p;
	size_t i;

	/* 4-byte PUBACKs: exactly 4 MB waiting does not pause, a byte more does. */
	for (i = 0; i < PAUSE_BYTES / 4; i++)
		assert_int_equal(conn_send_ack(c, MQTT_PUBACK, 1, 0, NULL), 0);
	assert_int_equal(conn_backlog(c), PAUSE_BYTES);
	assert_int_equal(tr.pause, 0);
	assert_int_equal(conn_send_ack(c, MQTT_PUBACK, 1, 0, NULL), 0);
	assert_int_equal(tr.pause, 1);
	assert_true(c->rx_paused);
	for (i = 0; i < 16; i++)
		assert_int_equal(conn_send_ack(c, MQTT_PUBACK, 1, 0, NULL), 0);
	assert_int_equal(tr.pause, 1); /* asked once, not per write */
	assert_int_equal(tr.resume, 0);

	/* Read again once less than half of it waits. */
	conn_pending(c, &p);
	conn_sent(c, conn_backlog(c) - PAUSE_BYTES / 2);
	assert_int_equal(conn_backlog(c), PAUSE_BYTES / 2);
	assert_int_equal(tr.resume, 0);
	conn_sent(c, 1);
	assert_int_equal(tr.resume, 1);
	assert_false(c->rx_paused);
	conn_sent(c, conn_backlog(c));
	assert_int_equal(tr.resume, 1);
	assert_int_equal(tr.pause, 1);
	conn_on_closed(c);
}

/* --- connect timeout ---------------------------------------------------------------- */

static void connect_timeout_is_armed(void **state)
{
	uint64_t before = clock_now_ms(), after;
	struct conn *c = conn_new(&fake_ops, &tr, false, "peer", 0);

	after = clock_now_ms();
	assert_true(timer_armed(&c->timer));
	assert_true(timers_loop_next() >= before + 10000); /* connect_timeout 10 s */
	assert_true(timers_loop_next() <= after + 10000);
	timers_fire(); /* not due yet */
	assert_int_equal(tr.closes, 0);
	conn_close(c, -1, "test");
	assert_false(timer_armed(&c->timer));
	assert_int_equal(tr.closes, 1);
	conn_close(c, MQTT_RC_SERVER_BUSY, "again"); /* closing already: nothing more */
	assert_int_equal(tr.closes, 1);
	assert_int_equal(timers_loop_next(), UINT64_MAX);
	conn_on_closed(c);
}

static void no_connect_closes_when_the_timer_fires(void **state)
{
	struct conn *silent, *talked;
	uint8_t *p;

	cfg.connect_timeout = 0; /* due at once */
	silent = conn_new(&fake_ops, &tr, false, "silent", 0);
	silent->version = MQTT_V5;
	talked = conn_new(&fake_ops, &tr, false, "talked", 0);
	talked->state = CONN_ACTIVE; /* its CONNECT was handled */
	assert_int_equal(tr.closes, 0);
	assert_int_equal(timers_fire(), UINT64_MAX);
	assert_int_equal(tr.closes, 1);
	assert_int_equal(silent->state, CONN_CLOSING);
	assert_int_equal(conn_pending(silent, &p), 0); /* no CONNACK yet: no DISCONNECT */
	assert_true(conn_done(silent));
	assert_int_equal(talked->state, CONN_ACTIVE);
	conn_on_closed(silent);
	conn_on_closed(talked);
	assert_int_equal(closed, 2);
}

/* --- closing and references --------------------------------------------------------- */

static void closed_once_and_freed(void **state)
{
	struct conn *a = conn_new(&fake_ops, &tr, false, "a", 0);
	struct conn *b = conn_new(&fake_ops, &tr, false, "b", 0);

	assert_int_equal(conn_count(), 2);
	conn_close_all(MQTT_RC_SERVER_SHUTTING_DOWN);
	conn_close_all(MQTT_RC_SERVER_SHUTTING_DOWN);
	assert_int_equal(tr.closes, 2);
	assert_int_equal(closed, 0); /* closing is not closed: the transport tells */
	conn_on_closed(a);
	assert_int_equal(closed, 1);
	assert_ptr_equal(closed_conn, a);
	assert_int_equal(conn_count(), 1);
	conn_on_closed(b);
	assert_int_equal(closed, 2);
	assert_int_equal(conn_count(), 0);
}

static void references_outlive_the_transport(void **state)
{
	struct conn *c = active_conn(MQTT_V311, 0);

	assert_true(conn_usable(c));
	assert_ptr_equal(conn_ref(c), c);
	conn_ref(c);
	conn_on_closed(c);
	assert_int_equal(closed, 1);
	assert_int_equal(conn_count(), 0);
	assert_true(c->gone);
	assert_false(conn_usable(c));
	assert_false(timer_armed(&c->timer));
	conn_unref(c); /* still one holder */
	assert_true(c->gone);
	conn_unref(c); /* freed here (ASan would see a use after free or a leak otherwise) */
	assert_int_equal(closed, 1);
}

static void part_session_keeps_a_copy_of_the_id(void **state)
{
	char id[] = "client-7";
	struct conn *c = active_conn(MQTT_V5, 0);

	c->client_id = id;
	conn_part_session(c);
	id[0] = 'X'; /* the session's copy goes away */
	assert_string_equal(c->client_id, "client-7");
	assert_null(c->session);
	conn_on_closed(c);
}

/* --- out of memory ------------------------------------------------------------------ */

/* Every allocation of making a connection, reading straddling packets and writing. */
static void out_of_memory_is_an_error(void **state)
{
	long n;
	int completed = 0, lost_new = 0, lost_read = 0, lost_write = 0;

	for (n = 0; n < 40; n++) {
		struct conn *c;
		uint8_t *p;
		size_t i, before;
		int rc;

		n_packets = 0;
		memset(&tr, 0, sizeof(tr));
		timers_loop_free(); /* so that arming the timer allocates */
		mem_fail_after(n);
		c = conn_new(&fake_ops, &tr, false, "peer", 0);
		if (!c) {
			mem_fail_after(-1);
			assert_int_equal(conn_count(), 0);
			lost_new++;
			continue;
		}
		c->state = CONN_ACTIVE;
		c->version = MQTT_V5;
		c->request_problem_info = true;
		/* a straddling packet is assembled in the framer's buffer */
		for (i = 0; i < sizeof(stream); i++)
			conn_on_data(c, stream + i, 1);
		if (c->state == CONN_CLOSING) {
			assert_true(n_packets < 3); /* whatever came up came up whole */
			for (i = 0; i < n_packets; i++)
				assert_true(packet_len[i] == 2 || packet_len[i] == 12);
			assert_int_equal(tr.closes, 1);
			lost_read++;
		} else {
			check_stream_packets();
		}
		before = conn_backlog(c);
		rc = conn_send_ack(c, MQTT_PUBACK, 1, 0x80, "a reason");
		if (rc) {
			assert_int_equal(rc, -1);
			assert_int_equal(conn_backlog(c), before); /* nothing half written */
			lost_write++;
		} else {
			assert_true(conn_backlog(c) > before);
			assert_true(tr.want_write >= 1);
		}
		mem_fail_after(-1);
		if (c->state != CONN_CLOSING && !rc && n_packets == 3)
			completed++;
		conn_close(c, MQTT_RC_SERVER_BUSY, "test"); /* a DISCONNECT, when it fits */
		assert_int_equal(tr.closes, 1);
		conn_pending(c, &p);
		conn_on_closed(c);
		assert_int_equal(conn_count(), 0);
	}
	/* Each step met a failed allocation, and the later limits let the whole flow through. */
	assert_true(lost_new > 0 && lost_read > 0 && lost_write > 0);
	assert_true(completed > 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(whole_packets_from_any_split),
		T(limit_is_the_whole_packet),
		T(too_large_closes_with_disconnect),
		T(too_large_without_disconnect),
		T(malformed_length_closes),
		T(output_keeps_headroom_and_asks_once),
		T(pending_opens_a_new_batch),
		T(publish_appends_its_bytes),
		T(publish_not_sendable_writes_nothing),
		T(backpressure_pauses_and_resumes),
		T(connect_timeout_is_armed),
		T(no_connect_closes_when_the_timer_fires),
		T(closed_once_and_freed),
		T(references_outlive_the_transport),
		T(part_session_keeps_a_copy_of_the_id),
		T(out_of_memory_is_an_error),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
