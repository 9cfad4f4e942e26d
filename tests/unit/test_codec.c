/*
 * test_codec.c - MQTT packets: round trips of every packet type in 3.1.1 and
 * 5.0 (with properties of every kind), byte vectors written from the
 * specifications, one table per area of malformed and forbidden packets
 * tagged with the spec clause, truncation at every byte of valid packets, and
 * a fixed-seed random-bytes loop.
 *
 * Every input under test is decoded from an exactly sized heap copy so that
 * the sanitizer build catches any read past the end of a packet.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "mem.h"
#include "props.h"

/* ---- helpers ------------------------------------------------------------- */

/* The exactly sized copy behind the last decode; freed by the next one. */
static uint8_t *held;

static void release(void)
{
	free(held);
	held = NULL;
}

static int dec(const uint8_t *p, size_t n, uint8_t version, struct mqtt_packet *out)
{
	release();
	held = malloc(n ? n : 1);
	assert_non_null(held);
	if (n)
		memcpy(held, p, n);
	return codec_decode(held, n, version, out);
}

static int dec_buf(const struct buf *b, uint8_t version, struct mqtt_packet *out)
{
	return dec(b->data, b->len, version, out);
}

/* Header byte, remaining length computed, then the body. */
static void build(struct buf *b, uint8_t hdr, const uint8_t *body, size_t n)
{
	buf_init(b);
	assert_int_equal(buf_put_u8(b, hdr), 0);
	assert_int_equal(buf_put_varint(b, (uint32_t)n), 0);
	assert_int_equal(buf_put(b, body, n), 0);
}

static void assert_str(struct mqtt_str s, const char *want)
{
	assert_int_equal(s.len, strlen(want));
	if (s.len)
		assert_memory_equal(s.p, want, s.len);
}

static void assert_raw(const struct mqtt_props *p, const struct buf *want)
{
	assert_int_equal(p->raw_len, want->len);
	if (want->len)
		assert_memory_equal(p->raw, want->data, want->len);
}

static int group_teardown(void **state)
{
	(void)state;
	release();
	return 0;
}

/* ---- property blocks of every kind, per packet ------------------------------ */

static void connect_props(struct buf *b)
{
	buf_init(b);
	props_put_u32(b, MQTT_PROP_SESSION_EXPIRY, 120);
	props_put_u16(b, MQTT_PROP_RECEIVE_MAX, 10);
	props_put_u32(b, MQTT_PROP_MAX_PACKET_SIZE, 100000);
	props_put_u16(b, MQTT_PROP_TOPIC_ALIAS_MAX, 8);
	props_put_u8(b, MQTT_PROP_REQUEST_RESPONSE_INFO, 1);
	props_put_u8(b, MQTT_PROP_REQUEST_PROBLEM_INFO, 0);
	props_put_pair(b, "ck", 2, "cv", 2);
	props_put_str(b, MQTT_PROP_AUTH_METHOD, "PLAIN", 5);
	props_put_str(b, MQTT_PROP_AUTH_DATA, "\x00\xff", 2);
}

static void will_props(struct buf *b)
{
	buf_init(b);
	props_put_u32(b, MQTT_PROP_WILL_DELAY, 5);
	props_put_u8(b, MQTT_PROP_PAYLOAD_FORMAT, 1);
	props_put_u32(b, MQTT_PROP_MESSAGE_EXPIRY, 30);
	props_put_str(b, MQTT_PROP_CONTENT_TYPE, "text/plain", 10);
	props_put_str(b, MQTT_PROP_RESPONSE_TOPIC, "resp", 4);
	props_put_str(b, MQTT_PROP_CORRELATION_DATA, "\x01\x02", 2);
	props_put_pair(b, "wk", 2, "wv", 2);
}

static void connack_props(struct buf *b)
{
	buf_init(b);
	props_put_u32(b, MQTT_PROP_SESSION_EXPIRY, 60);
	props_put_u16(b, MQTT_PROP_RECEIVE_MAX, 100);
	props_put_u8(b, MQTT_PROP_MAX_QOS, 1);
	props_put_u8(b, MQTT_PROP_RETAIN_AVAILABLE, 1);
	props_put_u32(b, MQTT_PROP_MAX_PACKET_SIZE, 1 << 20);
	props_put_str(b, MQTT_PROP_ASSIGNED_CLIENT_ID, "gen-1", 5);
	props_put_u16(b, MQTT_PROP_TOPIC_ALIAS_MAX, 16);
	props_put_str(b, MQTT_PROP_REASON_STRING, "welcome", 7);
	props_put_pair(b, "k", 1, "v", 1);
	props_put_u8(b, MQTT_PROP_WILDCARD_SUB_AVAILABLE, 1);
	props_put_u8(b, MQTT_PROP_SUBID_AVAILABLE, 1);
	props_put_u8(b, MQTT_PROP_SHARED_SUB_AVAILABLE, 0);
	props_put_u16(b, MQTT_PROP_SERVER_KEEP_ALIVE, 45);
	props_put_str(b, MQTT_PROP_RESPONSE_INFO, "ri", 2);
	props_put_str(b, MQTT_PROP_SERVER_REFERENCE, "sr", 2);
	props_put_str(b, MQTT_PROP_AUTH_METHOD, "am", 2);
	props_put_str(b, MQTT_PROP_AUTH_DATA, "ad", 2);
}

static void publish_props(struct buf *b)
{
	buf_init(b);
	props_put_u8(b, MQTT_PROP_PAYLOAD_FORMAT, 0);
	props_put_u32(b, MQTT_PROP_MESSAGE_EXPIRY, 3600);
	props_put_str(b, MQTT_PROP_CONTENT_TYPE, "application/json", 16);
	props_put_str(b, MQTT_PROP_RESPONSE_TOPIC, "reply", 5);
	props_put_str(b, MQTT_PROP_CORRELATION_DATA, "\xde\xad", 2);
	props_put_varint(b, MQTT_PROP_SUBSCRIPTION_ID, 7);
	props_put_varint(b, MQTT_PROP_SUBSCRIPTION_ID, 300000);
	props_put_u16(b, MQTT_PROP_TOPIC_ALIAS, 2);
	props_put_pair(b, "pk", 2, "pv", 2);
}

/* Reason string and user property, for every acknowledgement. */
static void reason_props(struct buf *b)
{
	buf_init(b);
	props_put_str(b, MQTT_PROP_REASON_STRING, "because", 7);
	props_put_pair(b, "rk", 2, "rv", 2);
}

/* ---- round trips -------------------------------------------------------------- */

static void connect_fill(struct mqtt_connect *c, uint8_t version, struct buf *cp,
			 struct buf *wp)
{
	memset(c, 0, sizeof(*c));
	c->version = version;
	c->clean_start = true;
	c->keep_alive = 60;
	c->client_id = (struct mqtt_str){ "client-1", 8 };
	c->will = true;
	c->will_qos = 2;
	c->will_retain = true;
	c->will_topic = (struct mqtt_str){ "will/topic", 10 };
	c->will_payload = (struct mqtt_bin){ (const uint8_t *)"\x00gone", 5 };
	c->has_username = true;
	c->username = (struct mqtt_str){ "user", 4 };
	c->has_password = true;
	c->password = (struct mqtt_bin){ (const uint8_t *)"\xffpw", 3 };
	c->props.raw = cp->data;
	c->props.raw_len = cp->len;
	c->will_props.raw = wp->data;
	c->will_props.raw_len = wp->len;
}

static void check_connect(uint8_t version)
{
	struct buf cp, wp, out, none;
	struct mqtt_connect c;
	struct mqtt_packet pk;
	const struct mqtt_connect *d = &pk.u.connect;

	buf_init(&none);
	connect_props(&cp);
	will_props(&wp);
	connect_fill(&c, version, version == MQTT_V5 ? &cp : &none,
		     version == MQTT_V5 ? &wp : &none);
	buf_init(&out);
	assert_int_equal(codec_encode_connect(&out, &c), 0);
	assert_int_equal(dec_buf(&out, 0, &pk), CODEC_OK);
	assert_int_equal(pk.type, MQTT_CONNECT);
	assert_int_equal(d->version, version);
	assert_true(d->clean_start);
	assert_int_equal(d->keep_alive, 60);
	assert_str(d->client_id, "client-1");
	assert_true(d->will);
	assert_int_equal(d->will_qos, 2);
	assert_true(d->will_retain);
	assert_str(d->will_topic, "will/topic");
	assert_int_equal(d->will_payload.len, 5);
	assert_memory_equal(d->will_payload.p, "\x00gone", 5);
	assert_true(d->has_username && d->has_password);
	assert_str(d->username, "user");
	assert_int_equal(d->password.len, 3);
	assert_memory_equal(d->password.p, "\xffpw", 3);
	if (version == MQTT_V5) {
		assert_raw(&d->props, &cp);
		assert_raw(&d->will_props, &wp);
		assert_int_equal(d->props.receive_max, 10);
		assert_int_equal(d->will_props.will_delay, 5);
	} else {
		assert_int_equal(d->props.present, 0);
	}
	buf_free(&cp);
	buf_free(&wp);
	buf_free(&out);
}

static void test_rt_connect(void **state)
{
	struct mqtt_connect c;
	struct mqtt_packet pk;
	struct buf out;

	(void)state;
	check_connect(MQTT_V31);
	check_connect(MQTT_V311);
	check_connect(MQTT_V5);

	/* bare: no will, no credentials, empty client id */
	memset(&c, 0, sizeof(c));
	c.version = MQTT_V5;
	c.client_id = (struct mqtt_str){ "", 0 };
	buf_init(&out);
	assert_int_equal(codec_encode_connect(&out, &c), 0);
	assert_int_equal(dec_buf(&out, 0, &pk), CODEC_OK);
	assert_false(pk.u.connect.will || pk.u.connect.has_username || pk.u.connect.clean_start);
	assert_int_equal(pk.u.connect.client_id.len, 0);
	buf_free(&out);
}

static void test_rt_connack(void **state)
{
	struct mqtt_connack c = { 0 };
	struct mqtt_packet pk;
	struct buf p, out;
	const uint8_t v4[] = { 0x20, 0x02, 0x01, 0x05 };

	(void)state;
	connack_props(&p);
	c.session_present = true;
	c.reason = MQTT_RC_SUCCESS;
	c.props.raw = p.data;
	c.props.raw_len = p.len;
	buf_init(&out);
	assert_int_equal(codec_encode_connack(&out, MQTT_V5, &c), 0);
	assert_int_equal(dec_buf(&out, MQTT_V5, &pk), CODEC_OK);
	assert_int_equal(pk.type, MQTT_CONNACK);
	assert_true(pk.u.connack.session_present);
	assert_raw(&pk.u.connack.props, &p);
	assert_int_equal(pk.u.connack.props.server_keep_alive, 45);

	buf_reset(&out);
	c.reason = MQTT3_CONNACK_NOT_AUTHORIZED;
	assert_int_equal(codec_encode_connack(&out, MQTT_V311, &c), 0);
	assert_int_equal(out.len, sizeof(v4));
	assert_memory_equal(out.data, v4, sizeof(v4));
	assert_int_equal(dec_buf(&out, MQTT_V311, &pk), CODEC_OK);
	assert_true(pk.u.connack.session_present);
	assert_int_equal(pk.u.connack.reason, 5);
	buf_free(&p);
	buf_free(&out);
}

static void check_publish(uint8_t version, uint8_t qos, bool retain, bool dup, size_t plen)
{
	static uint8_t payload[300];
	struct mqtt_packet pk;
	const struct mqtt_publish *d = &pk.u.publish;
	struct buf p, out;
	size_t i;

	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	publish_props(&p);
	buf_init(&out);
	assert_int_equal(codec_encode_publish(&out, version, "sensors/1/temp", 14, qos, retain,
					      dup, qos ? 0x1234 : 0, p.data, p.len, payload, plen),
			 0);
	assert_int_equal(out.len, codec_publish_size(version, 14, qos, p.len, plen));
	assert_int_equal(dec_buf(&out, version, &pk), CODEC_OK);
	assert_int_equal(pk.type, MQTT_PUBLISH);
	assert_int_equal(d->qos, qos);
	assert_int_equal(d->retain, retain);
	assert_int_equal(d->dup, dup);
	assert_str(d->topic, "sensors/1/temp");
	assert_int_equal(d->packet_id, qos ? 0x1234 : 0);
	assert_int_equal(d->payload_len, plen);
	if (plen)
		assert_memory_equal(d->payload, payload, plen);
	if (version == MQTT_V5) {
		assert_raw(&d->props, &p);
		assert_int_equal(d->props.subscription_id, 7);
		assert_int_equal(d->props.topic_alias, 2);
	} else {
		assert_int_equal(d->props.raw_len, 0);
	}
	buf_free(&p);
	buf_free(&out);
}

static void test_rt_publish(void **state)
{
	(void)state;
	check_publish(MQTT_V311, 0, false, false, 5);
	check_publish(MQTT_V311, 1, true, false, 0);
	check_publish(MQTT_V311, 2, false, true, 300);
	check_publish(MQTT_V31, 1, false, true, 10);
	check_publish(MQTT_V5, 0, true, false, 0);
	check_publish(MQTT_V5, 1, false, true, 200);
	check_publish(MQTT_V5, 2, true, true, 1);
}

static void check_ack(uint8_t version, uint8_t type, uint8_t reason, bool with_props)
{
	struct mqtt_ack a = { 0 };
	struct mqtt_packet pk;
	struct buf p, out;

	reason_props(&p);
	a.packet_id = 0xBEEF;
	a.reason = reason;
	if (with_props) {
		a.props.raw = p.data;
		a.props.raw_len = p.len;
	}
	buf_init(&out);
	assert_int_equal(codec_encode_ack(&out, version, type, &a), 0);
	assert_int_equal(out.data[0], type << 4 | (type == MQTT_PUBREL ? 2 : 0));
	if (version < MQTT_V5 || (!reason && !with_props))
		assert_int_equal(out.len, 4); /* [MQTT-3.4.2.1]: omitted when 0 and no properties */
	assert_int_equal(dec_buf(&out, version, &pk), CODEC_OK);
	assert_int_equal(pk.type, type);
	assert_int_equal(pk.u.ack.packet_id, 0xBEEF);
	assert_int_equal(pk.u.ack.reason, version < MQTT_V5 ? 0 : reason);
	if (version == MQTT_V5 && with_props)
		assert_raw(&pk.u.ack.props, &p);
	else
		assert_int_equal(pk.u.ack.props.raw_len, 0);
	buf_free(&p);
	buf_free(&out);
}

static void test_rt_acks(void **state)
{
	uint8_t t;

	(void)state;
	for (t = MQTT_PUBACK; t <= MQTT_PUBCOMP; t++) {
		check_ack(MQTT_V311, t, 0, false);
		check_ack(MQTT_V5, t, 0, false);
		check_ack(MQTT_V5, t, MQTT_RC_NO_MATCHING_SUBSCRIBERS, false);
		check_ack(MQTT_V5, t, MQTT_RC_PACKET_ID_NOT_FOUND, true);
		check_ack(MQTT_V5, t, 0, true);
	}
}

static void check_subscribe(uint8_t version)
{
	const char *const filters[] = { "a/+/c", "#", "$share/grp/x/y" };
	const uint8_t opts5[] = { 0x01 | MQTT_SUBOPT_NO_LOCAL | MQTT_SUBOPT_RAP, 0x02 | 0x20,
				  0x10 };
	const uint8_t opts4[] = { 1, 2, 0 };
	const uint8_t *opts = version == MQTT_V5 ? opts5 : opts4;
	struct mqtt_packet pk;
	struct mqtt_str f;
	struct buf p, out;
	size_t pos = 0, i;
	uint8_t o;

	buf_init(&p);
	props_put_varint(&p, MQTT_PROP_SUBSCRIPTION_ID, 42);
	props_put_pair(&p, "sk", 2, "sv", 2);
	buf_init(&out);
	assert_int_equal(codec_encode_subscribe(&out, version, 9, p.data, p.len, filters, opts, 3),
			 0);
	assert_int_equal(out.data[0], 0x82);
	assert_int_equal(dec_buf(&out, version, &pk), CODEC_OK);
	assert_int_equal(pk.type, MQTT_SUBSCRIBE);
	assert_int_equal(pk.u.subscribe.packet_id, 9);
	assert_int_equal(pk.u.subscribe.count, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(codec_subscribe_next(&pk.u.subscribe, &pos, &f, &o), 1);
		assert_str(f, filters[i]);
		assert_int_equal(o, opts[i]);
	}
	assert_int_equal(codec_subscribe_next(&pk.u.subscribe, &pos, &f, &o), 0);
	if (version == MQTT_V5) {
		assert_raw(&pk.u.subscribe.props, &p);
		assert_int_equal(pk.u.subscribe.props.subscription_id, 42);
	}
	buf_free(&p);
	buf_free(&out);
}

static void check_unsubscribe(uint8_t version)
{
	const char *const filters[] = { "a/b", "x/#" };
	struct mqtt_packet pk;
	struct mqtt_str f;
	struct buf p, out;
	size_t pos = 0;

	buf_init(&p);
	props_put_pair(&p, "uk", 2, "uv", 2);
	buf_init(&out);
	assert_int_equal(codec_encode_unsubscribe(&out, version, 77, p.data, p.len, filters, 2), 0);
	assert_int_equal(out.data[0], 0xA2);
	assert_int_equal(dec_buf(&out, version, &pk), CODEC_OK);
	assert_int_equal(pk.type, MQTT_UNSUBSCRIBE);
	assert_int_equal(pk.u.unsubscribe.packet_id, 77);
	assert_int_equal(pk.u.unsubscribe.count, 2);
	assert_int_equal(codec_unsubscribe_next(&pk.u.unsubscribe, &pos, &f), 1);
	assert_str(f, "a/b");
	assert_int_equal(codec_unsubscribe_next(&pk.u.unsubscribe, &pos, &f), 1);
	assert_str(f, "x/#");
	assert_int_equal(codec_unsubscribe_next(&pk.u.unsubscribe, &pos, &f), 0);
	if (version == MQTT_V5)
		assert_raw(&pk.u.unsubscribe.props, &p);
	buf_free(&p);
	buf_free(&out);
}

static void test_rt_subscribe(void **state)
{
	(void)state;
	check_subscribe(MQTT_V311);
	check_subscribe(MQTT_V5);
	check_unsubscribe(MQTT_V311);
	check_unsubscribe(MQTT_V5);
}

static void check_suback(uint8_t version, uint8_t type)
{
	const uint8_t reasons[] = { 0x00, 0x01, 0x02, 0x80 };
	struct mqtt_suback s = { 0 };
	struct mqtt_packet pk;
	struct buf p, out;
	bool bare = type == MQTT_UNSUBACK && version < MQTT_V5;

	reason_props(&p);
	s.packet_id = 300;
	s.props.raw = p.data;
	s.props.raw_len = p.len;
	s.reasons = reasons;
	s.count = sizeof(reasons);
	buf_init(&out);
	assert_int_equal(codec_encode_suback(&out, version, type, &s), 0);
	if (bare)
		assert_int_equal(out.len, 4);
	assert_int_equal(dec_buf(&out, version, &pk), CODEC_OK);
	assert_int_equal(pk.type, type);
	assert_int_equal(pk.u.suback.packet_id, 300);
	assert_int_equal(pk.u.suback.count, bare ? 0 : sizeof(reasons));
	if (!bare)
		assert_memory_equal(pk.u.suback.reasons, reasons, sizeof(reasons));
	if (version == MQTT_V5)
		assert_raw(&pk.u.suback.props, &p);
	buf_free(&p);
	buf_free(&out);
}

static void test_rt_suback(void **state)
{
	(void)state;
	check_suback(MQTT_V311, MQTT_SUBACK);
	check_suback(MQTT_V5, MQTT_SUBACK);
	check_suback(MQTT_V311, MQTT_UNSUBACK);
	check_suback(MQTT_V5, MQTT_UNSUBACK);
}

static void test_rt_ping(void **state)
{
	struct mqtt_packet pk;
	struct buf out;

	(void)state;
	buf_init(&out);
	assert_int_equal(codec_encode_empty(&out, MQTT_PINGREQ), 0);
	assert_int_equal(codec_encode_empty(&out, MQTT_PINGRESP), 0);
	assert_int_equal(out.len, 4);
	assert_memory_equal(out.data, "\xc0\x00\xd0\x00", 4);
	assert_int_equal(dec(out.data, 2, MQTT_V311, &pk), CODEC_OK);
	assert_int_equal(pk.type, MQTT_PINGREQ);
	assert_int_equal(dec(out.data + 2, 2, MQTT_V5, &pk), CODEC_OK);
	assert_int_equal(pk.type, MQTT_PINGRESP);
	assert_int_equal(codec_encode_empty(&out, MQTT_PUBLISH), -1);
	assert_int_equal(out.len, 4);
	buf_free(&out);
}

static void test_rt_disconnect_auth(void **state)
{
	struct mqtt_disconnect d = { 0 };
	struct mqtt_auth a = { 0 };
	struct mqtt_packet pk;
	struct buf p, out;

	(void)state;
	buf_init(&out);
	assert_int_equal(codec_encode_disconnect(&out, MQTT_V311, &d), 0);
	assert_int_equal(codec_encode_disconnect(&out, MQTT_V5, &d), 0);
	assert_memory_equal(out.data, "\xe0\x00\xe0\x00", 4);
	assert_int_equal(out.len, 4);
	assert_int_equal(dec(out.data, 2, MQTT_V311, &pk), CODEC_OK);
	assert_int_equal(pk.type, MQTT_DISCONNECT);
	assert_int_equal(dec(out.data, 2, MQTT_V5, &pk), CODEC_OK);
	assert_int_equal(pk.u.disconnect.reason, 0);

	reason_props(&p);
	props_put_u32(&p, MQTT_PROP_SESSION_EXPIRY, 10);
	props_put_str(&p, MQTT_PROP_SERVER_REFERENCE, "elsewhere", 9);
	d.reason = MQTT_RC_DISCONNECT_WITH_WILL;
	d.props.raw = p.data;
	d.props.raw_len = p.len;
	buf_reset(&out);
	assert_int_equal(codec_encode_disconnect(&out, MQTT_V5, &d), 0);
	assert_int_equal(dec_buf(&out, MQTT_V5, &pk), CODEC_OK);
	assert_int_equal(pk.u.disconnect.reason, MQTT_RC_DISCONNECT_WITH_WILL);
	assert_raw(&pk.u.disconnect.props, &p);
	buf_free(&p);

	reason_props(&p);
	props_put_str(&p, MQTT_PROP_AUTH_METHOD, "SCRAM-SHA-1", 11);
	props_put_str(&p, MQTT_PROP_AUTH_DATA, "\x01\x02\x03", 3);
	a.reason = MQTT_RC_CONTINUE_AUTH;
	a.props.raw = p.data;
	a.props.raw_len = p.len;
	buf_reset(&out);
	assert_int_equal(codec_encode_auth(&out, &a), 0);
	assert_int_equal(dec_buf(&out, MQTT_V5, &pk), CODEC_OK);
	assert_int_equal(pk.type, MQTT_AUTH);
	assert_int_equal(pk.u.auth.reason, MQTT_RC_CONTINUE_AUTH);
	assert_raw(&pk.u.auth.props, &p);
	assert_str(pk.u.auth.props.auth_method, "SCRAM-SHA-1");
	memset(&a, 0, sizeof(a));
	buf_reset(&out);
	assert_int_equal(codec_encode_auth(&out, &a), 0);
	assert_int_equal(out.len, 2);
	assert_memory_equal(out.data, "\xf0\x00", 2);
	assert_int_equal(dec_buf(&out, MQTT_V5, &pk), CODEC_OK);
	assert_int_equal(pk.u.auth.reason, 0);
	buf_free(&p);
	buf_free(&out);
}

/* ---- byte vectors from the specifications --------------------------------- */

/* 3.1.1 section 3.1: CONNECT, clean session, keep alive 60, client id "abc". */
static void test_vec_connect(void **state)
{
	const uint8_t v4[] = { 0x10, 0x0f, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02,
			       0x00, 0x3c, 0x00, 0x03, 'a', 'b', 'c' };
	/* 5.0 section 3.1.2.11 example variable header (flags 0xCE, keep alive 10,
	 * session expiry 10), with a payload added. */
	const uint8_t v5[] = { 0x10, 0x23, 0x00, 0x04, 'M',  'Q',  'T',  'T',  0x05, 0xCE,
			       0x00, 0x0A, 0x05, 0x11, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x01,
			       'c',  0x00, 0x00, 0x03, 'w',  '/',  't',  0x00, 0x01, 'm',
			       0x00, 0x01, 'u',  0x00, 0x02, 'p',  'w' };
	struct mqtt_packet pk;
	struct mqtt_connect c = { 0 };
	struct buf out;

	(void)state;
	assert_int_equal(dec(v4, sizeof(v4), 0, &pk), CODEC_OK);
	assert_int_equal(pk.u.connect.version, MQTT_V311);
	assert_true(pk.u.connect.clean_start);
	assert_int_equal(pk.u.connect.keep_alive, 60);
	assert_str(pk.u.connect.client_id, "abc");
	c.version = MQTT_V311;
	c.clean_start = true;
	c.keep_alive = 60;
	c.client_id = (struct mqtt_str){ "abc", 3 };
	buf_init(&out);
	assert_int_equal(codec_encode_connect(&out, &c), 0);
	assert_int_equal(out.len, sizeof(v4));
	assert_memory_equal(out.data, v4, sizeof(v4));
	buf_free(&out);

	assert_int_equal(dec(v5, sizeof(v5), 0, &pk), CODEC_OK);
	assert_int_equal(pk.u.connect.version, MQTT_V5);
	assert_int_equal(pk.u.connect.keep_alive, 10);
	assert_int_equal(pk.u.connect.props.session_expiry, 10);
	assert_true(pk.u.connect.will && pk.u.connect.will_qos == 1 && !pk.u.connect.will_retain);
	assert_str(pk.u.connect.will_topic, "w/t");
	assert_str(pk.u.connect.username, "u");
	assert_int_equal(pk.u.connect.password.len, 2);
}

static void test_vec_publish_subscribe(void **state)
{
	/* 3.1.1 PUBLISH QoS 0 "a/b" payload "hello" */
	const uint8_t pub[] = { 0x30, 0x0a, 0x00, 0x03, 'a', '/', 'b', 'h', 'e', 'l', 'l', 'o' };
	/* 5.0 PUBLISH QoS 1, packet id 10, no properties, payload "hi" */
	const uint8_t pub5[] = { 0x32, 0x0a, 0x00, 0x03, 'a', '/', 'b',
				 0x00, 0x0a, 0x00, 'h',  'i' };
	/* 3.1.1 section 3.8.3: SUBSCRIBE packet id 10, "a/b" QoS 1, "c/d" QoS 2 */
	const uint8_t sub[] = { 0x82, 0x0e, 0x00, 0x0a, 0x00, 0x03, 'a', '/', 'b', 0x01,
				0x00, 0x03, 'c', '/', 'd', 0x02 };
	const uint8_t puback[] = { 0x40, 0x02, 0x00, 0x01 };
	struct mqtt_packet pk;
	struct buf out;
	struct mqtt_ack a = { .packet_id = 1 };
	const char *const filters[] = { "a/b", "c/d" };
	const uint8_t opts[] = { 1, 2 };

	(void)state;
	assert_int_equal(dec(pub, sizeof(pub), MQTT_V311, &pk), CODEC_OK);
	assert_str(pk.u.publish.topic, "a/b");
	assert_int_equal(pk.u.publish.payload_len, 5);
	buf_init(&out);
	assert_int_equal(codec_encode_publish(&out, MQTT_V311, "a/b", 3, 0, false, false, 0, NULL,
					      0, (const uint8_t *)"hello", 5),
			 0);
	assert_int_equal(out.len, sizeof(pub));
	assert_memory_equal(out.data, pub, sizeof(pub));

	assert_int_equal(dec(pub5, sizeof(pub5), MQTT_V5, &pk), CODEC_OK);
	assert_int_equal(pk.u.publish.packet_id, 10);
	assert_int_equal(pk.u.publish.props.present, 0);
	buf_reset(&out);
	assert_int_equal(codec_encode_publish(&out, MQTT_V5, "a/b", 3, 1, false, false, 10, NULL,
					      0, (const uint8_t *)"hi", 2),
			 0);
	assert_memory_equal(out.data, pub5, sizeof(pub5));

	assert_int_equal(dec(sub, sizeof(sub), MQTT_V311, &pk), CODEC_OK);
	assert_int_equal(pk.u.subscribe.packet_id, 10);
	assert_int_equal(pk.u.subscribe.count, 2);
	buf_reset(&out);
	assert_int_equal(codec_encode_subscribe(&out, MQTT_V311, 10, NULL, 0, filters, opts, 2), 0);
	assert_int_equal(out.len, sizeof(sub));
	assert_memory_equal(out.data, sub, sizeof(sub));

	buf_reset(&out);
	assert_int_equal(codec_encode_ack(&out, MQTT_V5, MQTT_PUBACK, &a), 0);
	assert_memory_equal(out.data, puback, sizeof(puback));
	assert_int_equal(dec(puback, sizeof(puback), MQTT_V5, &pk), CODEC_OK);
	assert_int_equal(pk.u.ack.reason, MQTT_RC_SUCCESS);
	buf_free(&out);
}

/* ---- malformed and forbidden packets, by spec clause -------------------------- */

struct bad {
	const char *tag;
	uint8_t hdr;
	uint8_t body[48];
	size_t n;
	uint8_t version;
	int want;
};

static void run_table(const struct bad *t, size_t n)
{
	struct mqtt_packet pk;
	struct buf b;
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		build(&b, t[i].hdr, t[i].body, t[i].n);
		rc = dec_buf(&b, t[i].version, &pk);
		buf_free(&b);
		if (rc != t[i].want)
			fail_msg("%s: got %d, want %d", t[i].tag, rc, t[i].want);
	}
}

#define RUN(t) run_table(t, sizeof(t) / sizeof(t[0]))
/* a body and its length, counted by the compiler */
#define B(...) { __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ })
#define M CODEC_EMALFORMED
#define P CODEC_EPROTOCOL
#define V4 MQTT_V311
#define V5 MQTT_V5
#define NM4 0, 4, 'M', 'Q', 'T', 'T', 4
#define NM5 0, 4, 'M', 'Q', 'T', 'T', 5

static void test_fixed_header_MQTT_2_1_3_1(void **state)
{
	static const struct bad t[] = {
		{ "[MQTT-2.1.3-1] PUBREL flags 0", 0x60, B(0, 1), V4, M },
		{ "[MQTT-2.1.3-1] PUBREL flags 0 (5)", 0x60, B(0, 1), V5, M },
		{ "[MQTT-2.1.3-1] SUBSCRIBE flags 0", 0x80, B(0, 1, 0, 1, 'a', 0), V4, M },
		{ "[MQTT-2.1.3-1] SUBSCRIBE flags 3", 0x83, B(0, 1, 0, 1, 'a', 0), V4, M },
		{ "[MQTT-2.1.3-1] UNSUBSCRIBE flags 0", 0xA0, B(0, 1, 0, 1, 'a'), V4, M },
		{ "[MQTT-2.1.3-1] PUBACK flags 2", 0x42, B(0, 1), V4, M },
		{ "[MQTT-2.1.3-1] PUBREC flags 1", 0x51, B(0, 1), V5, M },
		{ "[MQTT-2.1.3-1] PUBCOMP flags 8", 0x78, B(0, 1), V5, M },
		{ "[MQTT-2.1.3-1] PINGREQ flags 1", 0xC1, { 0 }, 0, V4, M },
		{ "[MQTT-2.1.3-1] DISCONNECT flags 15", 0xEF, { 0 }, 0, V5, M },
		{ "[MQTT-2.1.3-1] CONNECT flags 1", 0x11, B(NM4, 2, 0, 60, 0, 1, 'a'), 0, M },
		{ "[MQTT-2.1.3-1] CONNACK flags 4", 0x24, B(0, 0), V4, M },
		{ "[MQTT-2.1.3-1] SUBACK flags 2", 0x92, B(0, 1, 0), V4, M },
		{ "[MQTT-2.1.3-1] AUTH flags 1", 0xF1, { 0 }, 0, V5, M },
		{ "[2.1.2] type 0 reserved", 0x00, { 0 }, 0, V4, M },
		{ "[2.1.2] AUTH reserved before 5", 0xF0, { 0 }, 0, V4, M },
		{ "[3.12.1] PINGREQ remaining length 1", 0xC0, B(0), V4, M },
		{ "[3.13.1] PINGRESP remaining length 1", 0xD0, B(0), V5, M },
		{ "[3.14.1] DISCONNECT 3.1.1 remaining length 1", 0xE0, B(0), V4, M },
		{ "[3.4.2] PUBACK 3.1.1 remaining length 3", 0x40, B(0, 1, 0), V4, M },
		{ "[3.4.2] PUBACK remaining length 1", 0x40, B(0), V5, M },
		{ "[3.11.2] UNSUBACK 3.1.1 with reasons", 0xB0, B(0, 1, 0), V4, M },
		{ "[3.2.2] CONNACK 3.1.1 remaining length 3", 0x20, B(0, 0, 0), V4, M },
	};

	(void)state;
	RUN(t);
}

/* The remaining length must match and be a minimal varint of at most 4 bytes. */
static void test_remaining_length_MQTT_1_5_5_1(void **state)
{
	static const struct {
		const char *tag;
		uint8_t b[8];
		size_t n;
	} t[] = {
		{ "empty", { 0 }, 0 },
		{ "one byte", { 0xC0 }, 1 },
		{ "rl 1, no body", { 0xC0, 0x01 }, 2 },
		{ "rl 0 with a byte after", { 0xC0, 0x00, 0x00 }, 3 },
		{ "[MQTT-1.5.5-1] non-minimal 0", { 0xC0, 0x80, 0x00 }, 3 },
		{ "[MQTT-1.5.5-1] non-minimal 2", { 0x40, 0x82, 0x00, 0x00, 0x01 }, 5 },
		{ "five-byte varint", { 0x30, 0xff, 0xff, 0xff, 0xff, 0x7f }, 6 },
		{ "varint cut", { 0x30, 0xff }, 2 },
	};
	struct mqtt_packet pk;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (dec(t[i].b, t[i].n, V5, &pk) != M)
			fail_msg("%s accepted", t[i].tag);
	}
}

static void test_connect_MQTT_3_1_2(void **state)
{
	static const struct bad t[] = {
		{ "[MQTT-3.1.2-1] protocol name MQTX", 0x10,
		  B(0, 4, 'M', 'Q', 'T', 'X', 4, 2, 0, 60, 0, 1, 'a'), 0, CODEC_EPROTOCOL },
		{ "[MQTT-3.1.2-2] level 6", 0x10,
		  B(0, 4, 'M', 'Q', 'T', 'T', 6, 2, 0, 60, 0, 1, 'a'), 0, CODEC_EPROTOVER },
		{ "[MQTT-3.1.2-2] MQTT with level 3", 0x10,
		  B(0, 4, 'M', 'Q', 'T', 'T', 3, 2, 0, 60, 0, 1, 'a'), 0, CODEC_EPROTOVER },
		{ "[MQTT-3.1.2-2] MQIsdp with level 4", 0x10,
		  B(0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 4, 2, 0, 60, 0, 1, 'a'), 0,
		  CODEC_EPROTOVER },
		{ "[3.1.2.1] name cut", 0x10, B(0, 4, 'M', 'Q'), 0, M },
		{ "[3.1.2.2] level missing", 0x10, B(0, 4, 'M', 'Q', 'T', 'T'), 0, M },
		{ "[3.1.2.3] flags missing", 0x10, B(NM4), 0, M },
		{ "[3.1.2.10] keep alive cut", 0x10, B(NM4, 2, 0), 0, M },
		{ "[MQTT-3.1.2-3] reserved flag (3.1.1)", 0x10, B(NM4, 3, 0, 60, 0, 1, 'a'), 0,
		  M },
		{ "[MQTT-3.1.2-3] reserved flag (5)", 0x10, B(NM5, 3, 0, 60, 0, 0, 1, 'a'), 0,
		  M },
		{ "[MQTT-3.1.2-14] will QoS 3 (3.1.1)", 0x10,
		  B(NM4, 0x1e, 0, 60, 0, 1, 'a', 0, 1, 't', 0, 1, 'm'), 0, M },
		{ "[MQTT-3.1.2-12] will QoS 3 (5)", 0x10,
		  B(NM5, 0x1e, 0, 60, 0, 0, 1, 'a', 0, 0, 1, 't', 0, 1, 'm'), 0, M },
		{ "[MQTT-3.1.2-13] no will, will QoS 1 (3.1.1)", 0x10,
		  B(NM4, 0x0a, 0, 60, 0, 1, 'a'), 0, M },
		{ "[MQTT-3.1.2-11] no will, will QoS 2 (5)", 0x10,
		  B(NM5, 0x12, 0, 60, 0, 0, 1, 'a'), 0, M },
		{ "[MQTT-3.1.2-15] no will, will retain (3.1.1)", 0x10,
		  B(NM4, 0x22, 0, 60, 0, 1, 'a'), 0, M },
		{ "[MQTT-3.1.2-13] no will, will retain (5)", 0x10,
		  B(NM5, 0x22, 0, 60, 0, 0, 1, 'a'), 0, M },
		{ "[MQTT-3.1.2-22] password without username (3.1.1)", 0x10,
		  B(NM4, 0x42, 0, 60, 0, 1, 'a', 0, 2, 'p', 'w'), 0, M },
		{ "[MQTT-3.1.2-22] password without username (3.1)", 0x10,
		  B(0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x42, 0, 60, 0, 1, 'a', 0, 2, 'p', 'w'),
		  0, M },
		{ "[3.1.2.9] password without username allowed (5)", 0x10,
		  B(NM5, 0x42, 0, 60, 0, 0, 1, 'a', 0, 2, 'p', 'w'), 0, CODEC_OK },
		{ "[3.1.2.9] password flag, password missing", 0x10,
		  B(NM5, 0x42, 0, 60, 0, 0, 1, 'a'), 0, M },
		{ "[3.1.2.8] username flag, username missing", 0x10,
		  B(NM4, 0x82, 0, 60, 0, 1, 'a'), 0, M },
		{ "[MQTT-1.5.4-1] username not UTF-8", 0x10,
		  B(NM4, 0x82, 0, 60, 0, 1, 'a', 0, 1, 0xC0), 0, M },
		{ "[MQTT-3.1.3-4] client id not UTF-8", 0x10, B(NM4, 2, 0, 60, 0, 1, 0xff), 0,
		  M },
		{ "[MQTT-1.5.4-2] client id with U+0000", 0x10, B(NM4, 2, 0, 60, 0, 1, 0), 0, M },
		{ "[3.1.3.1] client id cut", 0x10, B(NM4, 2, 0, 60, 0, 5, 'a'), 0, M },
		{ "[3.1.3] trailing byte", 0x10, B(NM4, 2, 0, 60, 0, 1, 'a', 0), 0, M },
		{ "[3.1.3] trailing byte (5)", 0x10, B(NM5, 2, 0, 60, 0, 0, 1, 'a', 'x'), 0, M },
		{ "[3.1.3.3] will topic with wildcard", 0x10,
		  B(NM4, 0x06, 0, 60, 0, 1, 'a', 0, 1, '#', 0, 1, 'm'), 0, CODEC_ETOPIC },
		{ "[3.1.3.3] empty will topic", 0x10, B(NM4, 0x06, 0, 60, 0, 1, 'a', 0, 0, 0, 0),
		  0, CODEC_ETOPIC },
		{ "[3.1.3.3] will topic wildcard, then malformed", 0x10,
		  B(NM4, 0x86, 0, 60, 0, 1, 'a', 0, 1, '+', 0, 0, 0, 1, 0xff), 0, M },
		{ "[3.1.3.4] will payload missing", 0x10,
		  B(NM4, 0x06, 0, 60, 0, 1, 'a', 0, 1, 't'), 0, M },
		{ "[2.2.2.2] topic alias in CONNECT properties", 0x10,
		  B(NM5, 2, 0, 60, 3, 0x23, 0, 1, 0, 1, 'a'), 0, M },
		{ "[3.1.3.2] session expiry in will properties", 0x10,
		  B(NM5, 6, 0, 60, 0, 0, 1, 'a', 5, 0x11, 0, 0, 0, 1, 0, 1, 't', 0, 0), 0, M },
		{ "[2.2.2] CONNECT property length beyond the packet", 0x10,
		  B(NM5, 2, 0, 60, 9, 0x11, 0, 0, 0, 1), 0, M },
		{ "[3.1.3.1] empty client id", 0x10, B(NM4, 2, 0, 60, 0, 0), 0, CODEC_OK },
		{ "[3.1] MQIsdp client id of 30 bytes is not the codec's business", 0x10,
		  B(0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 2, 0, 60, 0, 30, 'a', 'b', 'c', 'd', 'e',
		    'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u',
		    'v', 'w', 'x', 'y', 'z', '0', '1', '2', '3'),
		  0, CODEC_OK },
	};
	struct mqtt_packet pk;
	struct buf b;
	const uint8_t lv6[] = { 0, 4, 'M', 'Q', 'T', 'T', 6, 2, 0, 60, 0, 1, 'a' };
	const uint8_t lv5bad[] = { NM5, 3, 0, 60, 0, 0, 1, 'a' };

	(void)state;
	RUN(t);
	/* the broker answers 0x01 or 0x84 from the level it read */
	build(&b, 0x10, lv6, sizeof(lv6));
	assert_int_equal(dec_buf(&b, 0, &pk), CODEC_EPROTOVER);
	assert_int_equal(pk.u.connect.version, 6);
	buf_free(&b);
	build(&b, 0x10, lv5bad, sizeof(lv5bad));
	assert_int_equal(dec_buf(&b, 0, &pk), M);
	assert_int_equal(pk.u.connect.version, 5);
	buf_free(&b);
}

static void test_connack_MQTT_3_2_2_1(void **state)
{
	static const struct bad t[] = {
		{ "[MQTT-3.2.2-1] reserved acknowledge flags", 0x20, B(0x02, 0), V4, M },
		{ "[MQTT-3.2.2-1] reserved acknowledge flags (5)", 0x20, B(0x80, 0, 0), V5, M },
		{ "[3.2.2.3] CONNACK without property length (5)", 0x20, B(0, 0), V5, M },
		{ "[2.2.2.2] will delay in CONNACK", 0x20, B(0, 0, 5, 0x18, 0, 0, 0, 1), V5, M },
		{ "[3.2.2.3.4] maximum QoS 2", 0x20, B(0, 0, 2, 0x24, 2), V5, P },
	};

	(void)state;
	RUN(t);
}

static void test_publish_MQTT_3_3_1(void **state)
{
	static const struct bad t[] = {
		{ "[MQTT-3.3.1-4] QoS 3", 0x36, B(0, 1, 'a', 0, 1), V4, M },
		{ "[MQTT-3.3.1-4] QoS 3 (5)", 0x36, B(0, 1, 'a', 0, 1, 0), V5, M },
		{ "[MQTT-3.3.1-2] DUP on QoS 0 (5)", 0x38, B(0, 1, 'a', 0), V5, M },
		{ "[MQTT-3.3.1-2] DUP on QoS 0 (3.1.1)", 0x38, B(0, 1, 'a'), V4, P },
		{ "[MQTT-2.2.1-3] QoS 1 packet id 0", 0x32, B(0, 1, 'a', 0, 0), V4, P },
		{ "[MQTT-2.2.1-3] QoS 2 packet id 0 (5)", 0x34, B(0, 1, 'a', 0, 0, 0), V5, P },
		{ "[MQTT-3.3.2-2] topic with +", 0x30, B(0, 3, 'a', '/', '+'), V4, CODEC_ETOPIC },
		{ "[MQTT-3.3.2-2] topic with # (5)", 0x30, B(0, 1, '#', 0), V5, CODEC_ETOPIC },
		{ "[MQTT-4.7.3-1] empty topic (3.1.1)", 0x30, B(0, 0, 'x'), V4, CODEC_ETOPIC },
		{ "[3.3.2.3.4] empty topic with alias (5)", 0x30, B(0, 0, 3, 0x23, 0, 1), V5,
		  CODEC_OK },
		{ "[MQTT-1.5.4-1] topic not UTF-8", 0x30, B(0, 2, 0xc3, 0x28), V4, M },
		{ "[MQTT-1.5.4-2] topic with U+0000", 0x30, B(0, 2, 'a', 0), V5, M },
		{ "[3.3.2.1] topic cut", 0x30, B(0, 5, 'a'), V4, M },
		{ "[3.3.2.2] packet id cut", 0x32, B(0, 1, 'a', 0), V4, M },
		{ "[3.3.2.3] property length missing (5)", 0x30, B(0, 1, 'a'), V5, M },
		{ "[2.2.2.2] reason string in PUBLISH", 0x30, B(0, 1, 'a', 3, 0x1f, 0, 0), V5, M },
		{ "[3.3.2.3.2] payload format 2", 0x30, B(0, 1, 'a', 2, 0x01, 2), V5, P },
		{ "[3.3.2.3.8] subscription id 0", 0x30, B(0, 1, 'a', 2, 0x0b, 0), V5, P },
		{ "[2.2.2.2] topic alias twice", 0x30, B(0, 1, 'a', 6, 0x23, 0, 1, 0x23, 0, 2),
		  V5, P },
		{ "[MQTT-3.3.2-2] wildcard topic, then packet id 0", 0x32, B(0, 1, '#', 0, 0), V4,
		  P },
	};
	struct mqtt_packet pk;
	struct buf b;
	const uint8_t alias[] = { 0, 0, 3, 0x23, 0, 1, 'p' };
	const uint8_t wild[] = { 0, 1, '+', 0, 9, 'x' };

	(void)state;
	RUN(t);
	build(&b, 0x30, alias, sizeof(alias));
	assert_int_equal(dec_buf(&b, V5, &pk), CODEC_OK);
	assert_int_equal(pk.u.publish.topic.len, 0);
	assert_int_equal(pk.u.publish.props.topic_alias, 1);
	assert_int_equal(pk.u.publish.payload_len, 1);
	buf_free(&b);
	/* a bad topic still reports the packet id, for the acknowledgement */
	build(&b, 0x32, wild, sizeof(wild));
	assert_int_equal(dec_buf(&b, V4, &pk), CODEC_ETOPIC);
	assert_int_equal(pk.u.publish.packet_id, 9);
	buf_free(&b);
}

static void test_acks_MQTT_3_4_2_1(void **state)
{
	static const struct bad t[] = {
		{ "[3.4.2.1] PUBACK reason, no property length (5)", 0x40, B(0, 1, 0x10), V5,
		  CODEC_OK },
		{ "[3.6.2.1] PUBREL reason, no properties (5)", 0x62, B(0, 1, 0x92), V5,
		  CODEC_OK },
		{ "[2.2.2.2] PUBACK with session expiry", 0x40, B(0, 1, 0, 5, 0x11, 0, 0, 0, 1),
		  V5, M },
		{ "[2.2.2] PUBREC property length beyond the packet", 0x50, B(0, 1, 0, 4, 0x1f, 0),
		  V5, M },
		{ "[3.4.2] PUBCOMP packet id cut", 0x70, B(0), V4, M },
		{ "[3.4.2.2] PUBACK trailing byte after properties", 0x40, B(0, 1, 0, 0, 0), V5,
		  M },
		{ "[3.14.2.1] DISCONNECT reason only (5)", 0xE0, B(0x8E), V5, CODEC_OK },
		{ "[2.2.2.2] DISCONNECT with topic alias", 0xE0, B(0, 3, 0x23, 0, 1), V5, M },
		{ "[3.14.2.2] DISCONNECT trailing byte", 0xE0, B(0, 0, 0), V5, M },
		{ "[3.15.2.1] AUTH reason only (5)", 0xF0, B(0x18), V5, CODEC_OK },
		{ "[2.2.2.2] AUTH with server reference", 0xF0, B(0x18, 3, 0x1c, 0, 0), V5, M },
		{ "[3.9.3] SUBACK with no reason codes", 0x90, B(0, 1), V4, P },
		{ "[3.11.3] UNSUBACK with no reason codes (5)", 0xB0, B(0, 1, 0), V5, P },
	};

	(void)state;
	RUN(t);
}

static void test_subscribe_MQTT_3_8_3(void **state)
{
	static const struct bad t[] = {
		{ "[MQTT-3.8.3-3] no entries (3.1.1)", 0x82, B(0, 1), V4, P },
		{ "[MQTT-3.8.3-3] no entries (5)", 0x82, B(0, 1, 0), V5, P },
		{ "[MQTT-2.2.1-3] packet id 0", 0x82, B(0, 0, 0, 1, 'a', 0), V4, P },
		{ "[MQTT-3.8.3-5] reserved bit 6 (5)", 0x82, B(0, 1, 0, 0, 1, 'a', 0x40), V5, M },
		{ "[MQTT-3.8.3-5] reserved bit 7 (5)", 0x82, B(0, 1, 0, 0, 1, 'a', 0x80), V5, M },
		{ "[MQTT-3-8.3-4] reserved bit 2 (3.1.1)", 0x82, B(0, 1, 0, 1, 'a', 0x04), V4, M },
		{ "[MQTT-3-8.3-4] reserved bit 4 (3.1.1)", 0x82, B(0, 1, 0, 1, 'a', 0x10), V4, M },
		{ "[MQTT-3-8.3-4] QoS 3 (3.1.1)", 0x82, B(0, 1, 0, 1, 'a', 3), V4, M },
		{ "[3.8.3.1] QoS 3 (5)", 0x82, B(0, 1, 0, 0, 1, 'a', 3), V5, M },
		{ "[3.8.3.1] retain handling 3 (5)", 0x82, B(0, 1, 0, 0, 1, 'a', 0x30), V5, P },
		{ "[MQTT-3.8.3-4] shared with No Local (5)", 0x82,
		  B(0, 1, 0, 0, 10, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 0x04), V5,
		  P },
		{ "[MQTT-3.8.3-4] shared without No Local (5)", 0x82,
		  B(0, 1, 0, 0, 10, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 0x01), V5,
		  CODEC_OK },
		{ "[3.8.3.1] No Local, not shared (5)", 0x82, B(0, 1, 0, 0, 1, 'a', 0x2e), V5,
		  CODEC_OK },
		{ "[MQTT-4.7.1-2] # not last", 0x82, B(0, 1, 0, 3, '#', '/', 'a', 0), V4,
		  CODEC_EFILTER },
		{ "[MQTT-4.7.1-3] + inside a level (5)", 0x82, B(0, 1, 0, 0, 2, 'a', '+', 0), V5,
		  CODEC_EFILTER },
		{ "[MQTT-4.7.3-1] empty filter", 0x82, B(0, 1, 0, 0, 0), V4, CODEC_EFILTER },
		{ "[MQTT-4.8.2-1] share group missing (5)", 0x82,
		  B(0, 1, 0, 0, 9, '$', 's', 'h', 'a', 'r', 'e', '/', '/', 'a', 0), V5,
		  CODEC_EFILTER },
		{ "[MQTT-1.5.4-1] filter not UTF-8", 0x82, B(0, 1, 0, 1, 0xfe, 0), V4, M },
		{ "[3.8.3] options byte missing", 0x82, B(0, 1, 0, 1, 'a'), V4, M },
		{ "[3.8.3] bad filter, then malformed entry", 0x82, B(0, 1, 0, 1, '+', 0, 0, 3),
		  V4, M },
		{ "[3.8.2.1.2] subscription id 0", 0x82, B(0, 1, 2, 0x0b, 0, 0, 1, 'a', 0), V5, P },
		{ "[3.8.2.1.2] two subscription ids", 0x82,
		  B(0, 1, 4, 0x0b, 1, 0x0b, 2, 0, 1, 'a', 0), V5, P },
	};
	static const struct bad u[] = {
		{ "[MQTT-3.10.3-2] no entries (3.1.1)", 0xA2, B(0, 1), V4, P },
		{ "[MQTT-3.10.3-2] no entries (5)", 0xA2, B(0, 1, 0), V5, P },
		{ "[MQTT-2.2.1-3] packet id 0", 0xA2, B(0, 0, 0, 1, 'a'), V4, P },
		{ "[MQTT-4.7.1-2] # not last", 0xA2, B(0, 1, 0, 3, 'a', '#', 'b'), V4,
		  CODEC_EFILTER },
		{ "[MQTT-1.5.4-1] filter not UTF-8 (5)", 0xA2, B(0, 1, 0, 0, 1, 0x80), V5, M },
		{ "[3.10.3] filter cut", 0xA2, B(0, 1, 0, 4, 'a'), V4, M },
		{ "[2.2.2.2] subscription id in UNSUBSCRIBE", 0xA2, B(0, 1, 2, 0x0b, 1, 0, 1, 'a'),
		  V5, M },
	};
	const uint8_t mixed[] = { 0, 5, 0, 1, 'a', 1, 0, 2, 'a', '#', 2, 0, 1, 'b', 0 };
	struct mqtt_packet pk;
	struct mqtt_str f;
	struct buf b;
	size_t pos = 0, n = 0;
	uint8_t o;

	(void)state;
	RUN(t);
	RUN(u);
	/* EFILTER keeps the packet id and the entries, for a SUBACK with 0x8F */
	build(&b, 0x82, mixed, sizeof(mixed));
	assert_int_equal(dec_buf(&b, V4, &pk), CODEC_EFILTER);
	assert_int_equal(pk.u.subscribe.packet_id, 5);
	assert_int_equal(pk.u.subscribe.count, 3);
	while (codec_subscribe_next(&pk.u.subscribe, &pos, &f, &o))
		n++;
	assert_int_equal(n, 3);
	buf_free(&b);
}

/* ---- encoders: limits and out of memory ------------------------------------ */

static void test_encode_limits(void **state)
{
	static char big[65536], huge[65538];
	struct mqtt_ack a = { 0 };
	struct mqtt_connect c = { 0 };
	struct buf out;
	const char *const f[] = { huge }; /* a filter of 65536 bytes */
	const uint8_t o[] = { 0 };

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	memset(huge, 'a', sizeof(huge) - 2);
	buf_init(&out);
	assert_int_equal(codec_encode_publish(&out, V4, big, 65536, 0, 0, 0, 0, NULL, 0, NULL, 0),
			 -1);
	assert_int_equal(codec_encode_publish(&out, V4, "t", 1, 3, 0, 0, 1, NULL, 0, NULL, 0), -1);
	assert_int_equal(codec_encode_publish(&out, V4, "t", 1, 0, 0, 0, 0, NULL, 0,
					      (const uint8_t *)big, MQTT_MAX_REMAINING_LENGTH),
			 -1);
	assert_int_equal(codec_publish_size(V4, 1, 0, 0, MQTT_MAX_REMAINING_LENGTH), 0);
	assert_int_equal(codec_publish_size(V4, 1, 1, 0, 10), 1 + 1 + 2 + 1 + 2 + 10);
	assert_int_equal(codec_publish_size(V5, 1, 0, 200, 16000),
			 1 + 2 + (2 + 1 + 2 + 200 + 16000));
	assert_int_equal(codec_encode_subscribe(&out, V4, 1, NULL, 0, f, o, 1), -1);
	assert_int_equal(codec_encode_ack(&out, V4, MQTT_PUBLISH, &a), -1);
	assert_int_equal(out.len, 0);
	/* 65535 bytes fit */
	assert_int_equal(codec_encode_publish(&out, V4, big, 65535, 0, 0, 0, 0, NULL, 0, NULL, 0),
			 0);
	assert_int_equal(out.len, 1 + 3 + 2 + 65535);
	buf_free(&out);

	/* out of memory: -1 and nothing written */
	c.version = V5;
	mem_fail_after(0);
	assert_int_equal(codec_encode_connect(&out, &c), -1);
	assert_int_equal(codec_encode_publish(&out, V5, "t", 1, 0, 0, 0, 0, NULL, 0, NULL, 0), -1);
	assert_int_equal(codec_encode_empty(&out, MQTT_PINGREQ), -1);
	mem_fail_after(-1);
	assert_int_equal(out.len, 0);
	/* the hot path allocates once at most */
	mem_fail_after(1);
	assert_int_equal(codec_encode_publish(&out, V5, "a/b", 3, 1, 0, 0, 1,
					      (const uint8_t *)"\x01\x01", 2, (const uint8_t *)big,
					      5000),
			 0);
	mem_fail_after(-1);
	assert_int_equal(out.len, codec_publish_size(V5, 3, 1, 2, 5000));
	buf_free(&out);
}

/* ---- truncation at every byte -------------------------------------------------- */

/* Every prefix is an error; every body cut with a matching remaining length never crashes. */
static void truncate_all(const struct buf *b, uint8_t version, size_t must_fail_below)
{
	struct mqtt_packet pk;
	struct buf t;
	size_t k, hl = 2;
	int rc;

	while (b->data[hl - 1] & 0x80)
		hl++;
	for (k = 0; k < b->len; k++) {
		if (dec(b->data, k, version, &pk) == CODEC_OK)
			fail_msg("prefix of %zu bytes of %zu accepted", k, b->len);
	}
	for (k = 0; k < b->len - hl; k++) {
		build(&t, b->data[0], b->data + hl, k);
		rc = dec_buf(&t, version, &pk);
		buf_free(&t);
		assert_true(rc <= 0 && rc >= CODEC_EFILTER);
		if (k < must_fail_below && rc == CODEC_OK)
			fail_msg("body cut at %zu of %zu accepted", k, b->len - hl);
	}
}

static void test_truncation(void **state)
{
	struct buf cp, wp, none, out, p;
	struct mqtt_connect c;
	const char *const filters[] = { "a/b", "c/#" };
	const uint8_t opts[] = { 1, 2 };
	uint8_t v;

	(void)state;
	buf_init(&none);
	connect_props(&cp);
	will_props(&wp);
	for (v = MQTT_V31; v <= MQTT_V5; v++) {
		connect_fill(&c, v, v == V5 ? &cp : &none, v == V5 ? &wp : &none);
		buf_init(&out);
		assert_int_equal(codec_encode_connect(&out, &c), 0);
		truncate_all(&out, v, SIZE_MAX); /* password last: every cut is short */
		buf_free(&out);
	}
	buf_free(&cp);
	buf_free(&wp);

	publish_props(&p);
	for (v = MQTT_V311; v <= MQTT_V5; v++) {
		size_t head = 2 + 3 + 2 + (v == V5 ? 1 + p.len : 0);

		buf_init(&out);
		assert_int_equal(codec_encode_publish(&out, v, "a/b", 3, 2, 1, 1, 5, p.data, p.len,
						      (const uint8_t *)"payload", 7),
				 0);
		truncate_all(&out, v, head); /* cuts inside the payload are valid */
		buf_reset(&out);
		assert_int_equal(codec_encode_subscribe(&out, v, 3, p.data, 0, filters, opts, 2),
				 0);
		truncate_all(&out, v, 2 + (v == V5) + 6); /* the first entry complete is valid */
		buf_free(&out);
	}
	buf_free(&p);
}

/* ---- random bytes ---------------------------------------------------------------- */

static uint32_t rng_state = 0x2545F491u;

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* A successful decode must describe bytes inside the packet. */
static void check_sane(const struct mqtt_packet *pk, const uint8_t *p, size_t n)
{
	const struct mqtt_subscribe *s = &pk->u.subscribe;
	struct mqtt_str f;
	size_t pos = 0, count = 0;
	uint8_t o;

	if (pk->type == MQTT_PUBLISH) {
		assert_true(pk->u.publish.payload >= p);
		assert_true(pk->u.publish.payload + pk->u.publish.payload_len <= p + n);
	}
	if (pk->type == MQTT_SUBSCRIBE) {
		while (codec_subscribe_next(s, &pos, &f, &o)) {
			assert_true((const uint8_t *)f.p + f.len <= p + n);
			count++;
		}
		assert_int_equal(count, s->count);
	}
}

static void test_random_bytes(void **state)
{
	static const uint8_t hdrs[] = { 0x10, 0x20, 0x30, 0x32, 0x34, 0x3d, 0x40, 0x50, 0x62,
					0x70, 0x82, 0x90, 0xa2, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0 };
	uint8_t b[64];
	struct mqtt_packet pk;
	size_t n, i;
	int it, rc, ok = 0;

	(void)state;
	for (it = 0; it < 20000; it++) {
		n = rng() % sizeof(b);
		for (i = 0; i < n; i++)
			b[i] = (uint8_t)rng();
		if (n >= 2 && (rng() & 1)) { /* a plausible fixed header, to get past it */
			b[0] = hdrs[rng() % sizeof(hdrs)];
			b[1] = (uint8_t)(n - 2);
			if (b[0] == 0x10 && n > 9) /* and sometimes a real protocol name */
				memcpy(b + 2, "\x00\x04MQTT\x05", 7);
		}
		rc = dec(b, n, (rng() & 1) ? V5 : V4, &pk);
		assert_true(rc <= 0 && rc >= CODEC_EFILTER);
		if (rc == CODEC_OK) {
			check_sane(&pk, held, n);
			ok++;
		}
	}
	assert_true(ok > 0); /* the loop reached the decoders' success paths */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rt_connect),
		cmocka_unit_test(test_rt_connack),
		cmocka_unit_test(test_rt_publish),
		cmocka_unit_test(test_rt_acks),
		cmocka_unit_test(test_rt_subscribe),
		cmocka_unit_test(test_rt_suback),
		cmocka_unit_test(test_rt_ping),
		cmocka_unit_test(test_rt_disconnect_auth),
		cmocka_unit_test(test_vec_connect),
		cmocka_unit_test(test_vec_publish_subscribe),
		cmocka_unit_test(test_fixed_header_MQTT_2_1_3_1),
		cmocka_unit_test(test_remaining_length_MQTT_1_5_5_1),
		cmocka_unit_test(test_connect_MQTT_3_1_2),
		cmocka_unit_test(test_connack_MQTT_3_2_2_1),
		cmocka_unit_test(test_publish_MQTT_3_3_1),
		cmocka_unit_test(test_acks_MQTT_3_4_2_1),
		cmocka_unit_test(test_subscribe_MQTT_3_8_3),
		cmocka_unit_test(test_encode_limits),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_random_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, group_teardown);
}
