/*
 * test_conn.c - a connection between a fake transport (struct conn_ops)
 * and a fake protocol layer (struct conn_handler): framing of arbitrary
 * chunks into whole packets, the output buffer and its headroom, one
 * writable request per batch, back-pressure, closing, and references.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "timers.h"

struct fake_transport {
	int want_write, closes, pause, resume;
};

static void fake_want_write(void *t)
{
	((struct fake_transport *)t)->want_write++;
}

static void fake_close(void *t)
{
	((struct fake_transport *)t)->closes++;
}

static void fake_pause(void *t, bool pause)
{
	if (pause)
		((struct fake_transport *)t)->pause++;
	else
		((struct fake_transport *)t)->resume++;
}

static const struct conn_ops fake_ops = { fake_want_write, fake_close, fake_pause };

/* The protocol layer: the packets handed up, and the end of the transport. */
static uint8_t packets[16][64];
static size_t packet_len[16], n_packets;
static int closed;

static int on_packet(struct conn *c, const uint8_t *pkt, size_t len)
{
	assert_true(n_packets < 16 && len <= 64);
	memcpy(packets[n_packets], pkt, len);
	packet_len[n_packets++] = len;
	return 0;
}

static void on_closed(struct conn *c)
{
	closed++;
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
	return 0;
}

static int teardown(void **state)
{
	mem_fail_after(-1);
	conn_drain_caches();
	timers_loop_free();
	base_free();
	config_free(&cfg);
	return 0;
}

/* PINGREQ, a 12-byte PUBLISH, PINGREQ. */
static const uint8_t stream[] = { 0xc0, 0x00, 0x30, 0x0a, 0x00, 0x03, 'a',  '/',
				  'b',	'h',  'e',  'l',  'l',	'o',  0xc0, 0x00 };

static void check_stream_packets(void)
{
	assert_int_equal(n_packets, 3);
	assert_int_equal(packet_len[0], 2);
	assert_int_equal(packet_len[1], 12);
	assert_memory_equal(packets[1], stream + 2, 12);
	assert_int_equal(packet_len[2], 2);
}

static void whole_packets_from_any_split(void **state)
{
	size_t cut, i;

	for (cut = 0; cut <= sizeof(stream); cut++) {
		struct conn *c = conn_new(&fake_ops, &tr, false, "peer", 0);

		n_packets = 0;
		assert_non_null(c);
		c->state = CONN_ACTIVE;
		conn_on_data(c, stream, cut);
		conn_on_data(c, stream + cut, sizeof(stream) - cut);
		check_stream_packets();
		conn_on_closed(c);
	}
	/* one byte at a time */
	{
		struct conn *c = conn_new(&fake_ops, &tr, false, "peer", 0);

		n_packets = 0;
		c->state = CONN_ACTIVE;
		for (i = 0; i < sizeof(stream); i++)
			conn_on_data(c, stream + i, 1);
		check_stream_packets();
		conn_on_closed(c);
	}
	assert_int_equal(closed, (int)sizeof(stream) + 2);
}

static void too_large_closes_with_disconnect(void **state)
{
	static const uint8_t big[] = { 0x30, 0x80, 0x01 }; /* remaining length 128 > 100 */
	struct conn *c = conn_new(&fake_ops, &tr, false, "peer", 0);
	uint8_t *p;
	size_t n;

	c->state = CONN_ACTIVE;
	c->version = MQTT_V5;
	conn_on_data(c, big, sizeof(big));
	assert_int_equal(n_packets, 0);
	assert_int_equal(tr.closes, 1);
	assert_int_equal(c->state, CONN_CLOSING);
	n = conn_pending(c, &p);
	assert_true(n >= 3);
	assert_int_equal(p[0], MQTT_DISCONNECT << 4);
	assert_int_equal(p[2], MQTT_RC_PACKET_TOO_LARGE);
	conn_on_data(c, stream, sizeof(stream)); /* closing: input is not handled */
	assert_int_equal(n_packets, 0);
	conn_on_closed(c);
	assert_int_equal(closed, 1);
}

static void output_keeps_headroom_and_asks_once(void **state)
{
	struct conn *c = conn_new(&fake_ops, &tr, false, "peer", 16);
	uint8_t *p;
	size_t n;

	c->state = CONN_ACTIVE;
	c->version = MQTT_V311;
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
	conn_sent(c, 3);
	assert_int_equal(conn_backlog(c), 0);
	assert_int_equal(conn_send_ack(c, MQTT_PUBACK, 9, 0, NULL), 0);
	assert_int_equal(tr.want_write, 2); /* a new batch after the drain */
	conn_on_closed(c);
}

static void backpressure_pauses_and_resumes(void **state)
{
	struct conn *c = conn_new(&fake_ops, &tr, false, "peer", 0);
	uint8_t *p;
	size_t i;

	c->state = CONN_ACTIVE;
	c->version = MQTT_V311;
	for (i = 0; i < 4u * 1024 * 1024 / 4 + 16; i++)
		assert_int_equal(conn_send_ack(c, MQTT_PUBACK, 1, 0, NULL), 0);
	assert_int_equal(tr.pause, 1);
	assert_int_equal(tr.resume, 0);
	conn_pending(c, &p);
	conn_sent(c, conn_backlog(c) - 1024);
	assert_int_equal(tr.resume, 1);
	conn_on_closed(c);
}

static void references_outlive_the_transport(void **state)
{
	struct conn *c = conn_new(&fake_ops, &tr, false, "peer", 0);

	conn_ref(c);
	conn_on_closed(c);
	assert_int_equal(closed, 1);
	assert_true(c->gone);
	assert_false(conn_usable(c));
	conn_unref(c); /* freed here (ASan would see a leak otherwise) */
}

static void connect_timeout_is_armed(void **state)
{
	struct conn *c = conn_new(&fake_ops, &tr, false, "peer", 0);

	assert_true(timer_armed(&c->timer));
	assert_true(timers_loop_next() != UINT64_MAX);
	conn_close(c, -1, "test");
	assert_false(timer_armed(&c->timer));
	assert_int_equal(tr.closes, 1);
	conn_on_closed(c);
}

static void out_of_memory_is_an_error(void **state)
{
	long n;

	for (n = 0; n < 8; n++) {
		struct conn *c;

		n_packets = 0;
		mem_fail_after(n);
		c = conn_new(&fake_ops, &tr, false, "peer", 0);
		if (c) {
			c->state = CONN_ACTIVE;
			c->version = MQTT_V5;
			conn_send_ack(c, MQTT_PUBACK, 1, 0x80, "a reason");
			conn_on_data(c, stream, sizeof(stream));
		}
		mem_fail_after(-1);
		if (c)
			conn_on_closed(c);
	}
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(whole_packets_from_any_split),	T(too_large_closes_with_disconnect),
		T(output_keeps_headroom_and_asks_once), T(backpressure_pauses_and_resumes),
		T(references_outlive_the_transport),	T(connect_timeout_is_armed),
		T(out_of_memory_is_an_error),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
