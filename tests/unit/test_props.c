/*
 * test_props.c - MQTT 5 property blocks: every identifier in every packet it
 * may appear in, the allowed-per-packet table, duplicates, value rules,
 * malformed blocks (truncation at every byte, bad UTF-8, bad varints,
 * unknown identifiers), the iterators and the forward copy.
 *
 * Inputs under test are copied to exactly-sized heap buffers so that the
 * sanitizer build catches any read past the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mem.h"
#include "props.h"

/* ---- helpers ------------------------------------------------------------- */

/* Wraps the property bytes in b with their variable-length prefix, in place. */
static void wrap(struct buf *b)
{
	struct buf w;

	buf_init(&w);
	assert_int_equal(buf_put_varint(&w, (uint32_t)b->len), 0);
	assert_int_equal(buf_put(&w, b->data, b->len), 0);
	buf_free(b);
	*b = w;
}

static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);

	assert_non_null(d);
	if (n)
		memcpy(d, p, n);
	return d;
}

/* Decodes bytes from an exactly sized copy; for error cases (pointers are not kept). */
static int decode_bytes(const uint8_t *p, size_t n, enum props_ctx ctx)
{
	struct mqtt_props pr;
	size_t used = 0;
	uint8_t *d = dup_exact(p, n);
	int rc = props_decode(d, n, ctx, &pr, &used);

	if (rc == 0)
		assert_true(used <= n);
	free(d);
	return rc;
}

/* Wraps raw property bytes (no prefix) and decodes them in ctx. */
static int decode_raw(const uint8_t *raw, size_t n, enum props_ctx ctx)
{
	struct buf b;
	int rc;

	buf_init(&b);
	assert_int_equal(buf_put(&b, raw, n), 0);
	wrap(&b);
	rc = decode_bytes(b.data, b.len, ctx);
	buf_free(&b);
	return rc;
}

static void assert_str(struct mqtt_str s, const char *want)
{
	assert_non_null(s.p);
	assert_int_equal(s.len, strlen(want));
	assert_memory_equal(s.p, want, s.len);
}

static void assert_bin(struct mqtt_bin s, const void *want, size_t n)
{
	assert_non_null(s.p);
	assert_int_equal(s.len, n);
	assert_memory_equal(s.p, want, n);
}

/* ---- every property, decoded in its packets -------------------------------- */

static void test_empty_block(void **state)
{
	const uint8_t b[] = { 0x00, 0xAA };
	struct mqtt_props p;
	size_t used = 99;

	(void)state;
	assert_int_equal(props_decode(b, sizeof(b), PROPS_PUBLISH, &p, &used), PROPS_OK);
	assert_int_equal(used, 1);
	assert_int_equal(p.present, 0);
	assert_int_equal(p.raw_len, 0);
	assert_int_equal(decode_bytes(b, 0, PROPS_PUBLISH), PROPS_EMALFORMED);
}

static void test_connect_props(void **state)
{
	struct mqtt_props p;
	struct buf b;
	size_t used;

	(void)state;
	buf_init(&b);
	props_put_u32(&b, MQTT_PROP_SESSION_EXPIRY, 3600);
	props_put_u16(&b, MQTT_PROP_RECEIVE_MAX, 20);
	props_put_u32(&b, MQTT_PROP_MAX_PACKET_SIZE, 65536);
	props_put_u16(&b, MQTT_PROP_TOPIC_ALIAS_MAX, 10);
	props_put_u8(&b, MQTT_PROP_REQUEST_RESPONSE_INFO, 1);
	props_put_u8(&b, MQTT_PROP_REQUEST_PROBLEM_INFO, 0);
	props_put_pair(&b, "k1", 2, "v1", 2);
	props_put_pair(&b, "k2", 2, "", 0);
	props_put_str(&b, MQTT_PROP_AUTH_METHOD, "SCRAM", 5);
	props_put_str(&b, MQTT_PROP_AUTH_DATA, "\x00\x01", 2);
	wrap(&b);
	assert_int_equal(props_decode(b.data, b.len, PROPS_CONNECT, &p, &used), PROPS_OK);
	assert_int_equal(used, b.len);
	assert_int_equal(p.session_expiry, 3600);
	assert_int_equal(p.receive_max, 20);
	assert_int_equal(p.max_packet_size, 65536);
	assert_int_equal(p.topic_alias_max, 10);
	assert_int_equal(p.request_response_info, 1);
	assert_int_equal(p.request_problem_info, 0);
	assert_true(p.present & PROP_BIT(MQTT_PROP_REQUEST_PROBLEM_INFO));
	assert_false(p.present & PROP_BIT(MQTT_PROP_WILL_DELAY));
	assert_int_equal(p.n_user_props, 2);
	assert_str(p.auth_method, "SCRAM");
	assert_bin(p.auth_data, "\x00\x01", 2);
	buf_free(&b);
}

static void test_connack_props(void **state)
{
	struct mqtt_props p;
	struct buf b;
	size_t used;

	(void)state;
	buf_init(&b);
	props_put_u32(&b, MQTT_PROP_SESSION_EXPIRY, 0xffffffffu);
	props_put_u16(&b, MQTT_PROP_RECEIVE_MAX, 65535);
	props_put_u8(&b, MQTT_PROP_MAX_QOS, 1);
	props_put_u8(&b, MQTT_PROP_RETAIN_AVAILABLE, 0);
	props_put_u32(&b, MQTT_PROP_MAX_PACKET_SIZE, 1024);
	props_put_str(&b, MQTT_PROP_ASSIGNED_CLIENT_ID, "auto-1", 6);
	props_put_u16(&b, MQTT_PROP_TOPIC_ALIAS_MAX, 5);
	props_put_str(&b, MQTT_PROP_REASON_STRING, "ok", 2);
	props_put_pair(&b, "a", 1, "b", 1);
	props_put_u8(&b, MQTT_PROP_WILDCARD_SUB_AVAILABLE, 1);
	props_put_u8(&b, MQTT_PROP_SUBID_AVAILABLE, 0);
	props_put_u8(&b, MQTT_PROP_SHARED_SUB_AVAILABLE, 1);
	props_put_u16(&b, MQTT_PROP_SERVER_KEEP_ALIVE, 30);
	props_put_str(&b, MQTT_PROP_RESPONSE_INFO, "resp/", 5);
	props_put_str(&b, MQTT_PROP_SERVER_REFERENCE, "other:1883", 10);
	props_put_str(&b, MQTT_PROP_AUTH_METHOD, "m", 1);
	props_put_str(&b, MQTT_PROP_AUTH_DATA, "d", 1);
	wrap(&b);
	assert_int_equal(props_decode(b.data, b.len, PROPS_CONNACK, &p, &used), PROPS_OK);
	assert_int_equal(used, b.len);
	assert_int_equal(p.session_expiry, 0xffffffffu);
	assert_int_equal(p.receive_max, 65535);
	assert_int_equal(p.max_qos, 1);
	assert_int_equal(p.retain_available, 0);
	assert_true(p.present & PROP_BIT(MQTT_PROP_RETAIN_AVAILABLE));
	assert_int_equal(p.max_packet_size, 1024);
	assert_str(p.assigned_client_id, "auto-1");
	assert_int_equal(p.topic_alias_max, 5);
	assert_str(p.reason_string, "ok");
	assert_int_equal(p.n_user_props, 1);
	assert_int_equal(p.wildcard_sub_available, 1);
	assert_int_equal(p.subid_available, 0);
	assert_int_equal(p.shared_sub_available, 1);
	assert_int_equal(p.server_keep_alive, 30);
	assert_str(p.response_info, "resp/");
	assert_str(p.server_reference, "other:1883");
	assert_str(p.auth_method, "m");
	assert_bin(p.auth_data, "d", 1);
	buf_free(&b);
}

static void put_publish_props(struct buf *b)
{
	props_put_u8(b, MQTT_PROP_PAYLOAD_FORMAT, 1);
	props_put_u32(b, MQTT_PROP_MESSAGE_EXPIRY, 60);
	props_put_u16(b, MQTT_PROP_TOPIC_ALIAS, 3);
	props_put_pair(b, "first", 5, "1", 1);
	props_put_str(b, MQTT_PROP_RESPONSE_TOPIC, "reply/to", 8);
	props_put_varint(b, MQTT_PROP_SUBSCRIPTION_ID, 200);
	props_put_str(b, MQTT_PROP_CORRELATION_DATA, "\xff\x00\x01", 3);
	props_put_varint(b, MQTT_PROP_SUBSCRIPTION_ID, 268435455);
	props_put_str(b, MQTT_PROP_CONTENT_TYPE, "text/plain", 10);
	props_put_pair(b, "second", 6, "2", 1);
}

/* Section 3.3.2.3: PUBLISH may carry several subscription identifiers. */
static void test_publish_props(void **state)
{
	struct mqtt_props p;
	struct buf b;
	size_t used, pos = 0;
	uint32_t id;

	(void)state;
	buf_init(&b);
	put_publish_props(&b);
	wrap(&b);
	assert_int_equal(props_decode(b.data, b.len, PROPS_PUBLISH, &p, &used), PROPS_OK);
	assert_int_equal(used, b.len);
	assert_int_equal(p.payload_format, 1);
	assert_int_equal(p.message_expiry, 60);
	assert_int_equal(p.topic_alias, 3);
	assert_str(p.response_topic, "reply/to");
	assert_bin(p.correlation_data, "\xff\x00\x01", 3);
	assert_str(p.content_type, "text/plain");
	assert_int_equal(p.subscription_id, 200); /* the first one */
	assert_int_equal(p.n_user_props, 2);
	assert_int_equal(props_subid_next(&p, &pos, &id), 1);
	assert_int_equal(id, 200);
	assert_int_equal(props_subid_next(&p, &pos, &id), 1);
	assert_int_equal(id, 268435455);
	assert_int_equal(props_subid_next(&p, &pos, &id), 0);
	buf_free(&b);
}

/* Section 3.1.3.2: Will Properties. */
static void test_will_props(void **state)
{
	struct mqtt_props p;
	struct buf b;
	size_t used;

	(void)state;
	buf_init(&b);
	props_put_u32(&b, MQTT_PROP_WILL_DELAY, 15);
	props_put_u8(&b, MQTT_PROP_PAYLOAD_FORMAT, 0);
	props_put_u32(&b, MQTT_PROP_MESSAGE_EXPIRY, 100);
	props_put_str(&b, MQTT_PROP_CONTENT_TYPE, "json", 4);
	props_put_str(&b, MQTT_PROP_RESPONSE_TOPIC, "r", 1);
	props_put_str(&b, MQTT_PROP_CORRELATION_DATA, "c", 1);
	props_put_pair(&b, "w", 1, "x", 1);
	wrap(&b);
	assert_int_equal(props_decode(b.data, b.len, PROPS_WILL, &p, &used), PROPS_OK);
	assert_int_equal(p.will_delay, 15);
	assert_int_equal(p.message_expiry, 100);
	assert_str(p.content_type, "json");
	assert_str(p.response_topic, "r");
	assert_bin(p.correlation_data, "c", 1);
	assert_int_equal(p.n_user_props, 1);
	assert_true(p.present & PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT));
	buf_free(&b);
}

/* Reason string and user properties in every acknowledgement; the extras per packet. */
static void test_reason_contexts(void **state)
{
	const enum props_ctx ctxs[] = { PROPS_PUBACK,	  PROPS_SUBACK, PROPS_UNSUBACK,
					PROPS_DISCONNECT, PROPS_AUTH,	PROPS_CONNACK };
	struct mqtt_props p;
	struct buf b;
	size_t i, used;

	(void)state;
	for (i = 0; i < sizeof(ctxs) / sizeof(ctxs[0]); i++) {
		buf_init(&b);
		props_put_str(&b, MQTT_PROP_REASON_STRING, "why", 3);
		props_put_pair(&b, "k", 1, "v", 1);
		if (ctxs[i] == PROPS_DISCONNECT) {
			props_put_u32(&b, MQTT_PROP_SESSION_EXPIRY, 0);
			props_put_str(&b, MQTT_PROP_SERVER_REFERENCE, "s", 1);
		}
		if (ctxs[i] == PROPS_AUTH) {
			props_put_str(&b, MQTT_PROP_AUTH_METHOD, "m", 1);
			props_put_str(&b, MQTT_PROP_AUTH_DATA, "d", 1);
		}
		wrap(&b);
		assert_int_equal(props_decode(b.data, b.len, ctxs[i], &p, &used), PROPS_OK);
		assert_str(p.reason_string, "why");
		assert_int_equal(p.n_user_props, 1);
		buf_free(&b);
	}
}

static void test_subscribe_contexts(void **state)
{
	const uint8_t sub[] = { 0x0B, 0x05, 0x26, 0, 1, 'a', 0, 1, 'b' };
	const uint8_t unsub[] = { 0x26, 0, 1, 'a', 0, 1, 'b' };
	const uint8_t unsub_id[] = { 0x0B, 0x05 };
	const uint8_t sub_dup[] = { 0x0B, 0x05, 0x0B, 0x06 };

	(void)state;
	assert_int_equal(decode_raw(sub, sizeof(sub), PROPS_SUBSCRIBE), PROPS_OK);
	assert_int_equal(decode_raw(unsub, sizeof(unsub), PROPS_UNSUBSCRIBE), PROPS_OK);
	assert_int_equal(decode_raw(unsub_id, sizeof(unsub_id), PROPS_UNSUBSCRIBE),
			 PROPS_EMALFORMED);
	/* 3.8.2.1.2: more than one Subscription Identifier in SUBSCRIBE */
	assert_int_equal(decode_raw(sub_dup, sizeof(sub_dup), PROPS_SUBSCRIBE), PROPS_EPROTOCOL);
}

/* ---- the allowed-per-packet table (2.2.2.2) ------------------------------- */

struct ctx_case {
	enum props_ctx ctx;
	uint8_t bytes[10];
	size_t n;
};

static void test_wrong_packet(void **state)
{
	static const struct ctx_case cases[] = {
		{ PROPS_CONNECT, { 0x23, 0, 1 }, 3 }, /* topic alias */
		{ PROPS_CONNECT, { 0x18, 0, 0, 0, 1 }, 5 }, /* will delay */
		{ PROPS_CONNECT, { 0x24, 0 }, 2 }, /* max QoS */
		{ PROPS_CONNECT, { 0x12, 0, 0 }, 3 }, /* assigned client id */
		{ PROPS_CONNECT, { 0x01, 0 }, 2 }, /* payload format */
		{ PROPS_WILL, { 0x11, 0, 0, 0, 1 }, 5 }, /* session expiry */
		{ PROPS_WILL, { 0x23, 0, 1 }, 3 }, /* topic alias */
		{ PROPS_WILL, { 0x0B, 1 }, 2 }, /* subscription id */
		{ PROPS_CONNACK, { 0x03, 0, 0 }, 3 }, /* content type */
		{ PROPS_CONNACK, { 0x17, 1 }, 2 }, /* request problem info */
		{ PROPS_CONNACK, { 0x19, 1 }, 2 }, /* request response info */
		{ PROPS_PUBLISH, { 0x1F, 0, 0 }, 3 }, /* reason string */
		{ PROPS_PUBLISH, { 0x15, 0, 0 }, 3 }, /* auth method */
		{ PROPS_PUBLISH, { 0x18, 0, 0, 0, 1 }, 5 }, /* will delay */
		{ PROPS_PUBACK, { 0x11, 0, 0, 0, 1 }, 5 }, /* session expiry */
		{ PROPS_PUBACK, { 0x02, 0, 0, 0, 1 }, 5 }, /* message expiry */
		{ PROPS_SUBSCRIBE, { 0x1F, 0, 0 }, 3 }, /* reason string */
		{ PROPS_SUBACK, { 0x0B, 1 }, 2 }, /* subscription id */
		{ PROPS_UNSUBSCRIBE, { 0x0B, 1 }, 2 }, /* subscription id */
		{ PROPS_UNSUBACK, { 0x1C, 0, 0 }, 3 }, /* server reference */
		{ PROPS_DISCONNECT, { 0x21, 0, 1 }, 3 }, /* receive max */
		{ PROPS_DISCONNECT, { 0x13, 0, 1 }, 3 }, /* server keep alive */
		{ PROPS_AUTH, { 0x11, 0, 0, 0, 1 }, 5 }, /* session expiry */
		{ PROPS_AUTH, { 0x1C, 0, 0 }, 3 }, /* server reference */
	};
	size_t i;

	(void)state;
	/* [MQTT-2.2.2.2] an identifier not valid for its packet: Malformed Packet. */
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (decode_raw(cases[i].bytes, cases[i].n, cases[i].ctx) != PROPS_EMALFORMED)
			fail_msg("case %zu: id 0x%02x accepted in ctx %d", i, cases[i].bytes[0],
				 (int)cases[i].ctx);
	}
}

/* 2.2.2.2: "It is a Protocol Error to include ... more than once." */
static void test_duplicates(void **state)
{
	static const struct ctx_case cases[] = {
		{ PROPS_PUBLISH, { 0x01, 0, 0x01, 1 }, 4 },
		{ PROPS_PUBLISH, { 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2 }, 10 },
		{ PROPS_PUBLISH, { 0x03, 0, 0, 0x03, 0, 0 }, 6 },
		{ PROPS_PUBLISH, { 0x08, 0, 1, 'a', 0x08, 0, 1, 'a' }, 8 },
		{ PROPS_PUBLISH, { 0x09, 0, 0, 0x09, 0, 0 }, 6 },
		{ PROPS_PUBLISH, { 0x23, 0, 1, 0x23, 0, 1 }, 6 },
		{ PROPS_CONNECT, { 0x21, 0, 1, 0x21, 0, 1 }, 6 },
		{ PROPS_CONNECT, { 0x22, 0, 1, 0x22, 0, 1 }, 6 },
		{ PROPS_CONNECT, { 0x17, 0, 0x17, 0 }, 4 },
		{ PROPS_CONNECT, { 0x19, 0, 0x19, 0 }, 4 },
		{ PROPS_CONNECT, { 0x15, 0, 0, 0x15, 0, 0 }, 6 },
		{ PROPS_CONNECT, { 0x16, 0, 0, 0x16, 0, 0 }, 6 },
		{ PROPS_CONNACK, { 0x24, 0, 0x24, 0 }, 4 },
		{ PROPS_CONNACK, { 0x25, 0, 0x25, 0 }, 4 },
		{ PROPS_CONNACK, { 0x13, 0, 1, 0x13, 0, 1 }, 6 },
		{ PROPS_CONNACK, { 0x12, 0, 0, 0x12, 0, 0 }, 6 },
		{ PROPS_CONNACK, { 0x28, 0, 0x28, 0 }, 4 },
		{ PROPS_CONNACK, { 0x29, 0, 0x29, 0 }, 4 },
		{ PROPS_CONNACK, { 0x2A, 0, 0x2A, 0 }, 4 },
		{ PROPS_CONNACK, { 0x1A, 0, 0, 0x1A, 0, 0 }, 6 },
		{ PROPS_WILL, { 0x18, 0, 0, 0, 0, 0x18, 0, 0, 0, 0 }, 10 },
		{ PROPS_PUBACK, { 0x1F, 0, 0, 0x1F, 0, 0 }, 6 },
		{ PROPS_DISCONNECT, { 0x1C, 0, 0, 0x1C, 0, 0 }, 6 },
		{ PROPS_SUBSCRIBE, { 0x0B, 1, 0x0B, 2 }, 4 },
	};
	const uint8_t users[] = { 0x26, 0, 1, 'k', 0, 0, 0x26, 0, 1, 'k', 0, 0 };
	const uint8_t mx_a[] = { 0x27, 0, 0, 1, 0, 0x27 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (decode_raw(cases[i].bytes, cases[i].n, cases[i].ctx) != PROPS_EPROTOCOL)
			fail_msg("case %zu: duplicate 0x%02x accepted", i, cases[i].bytes[0]);
	}
	assert_int_equal(decode_raw(users, sizeof(users), PROPS_SUBACK), PROPS_OK);
	/* a duplicate cut short is malformed before it is a duplicate */
	assert_int_equal(decode_raw(mx_a, sizeof(mx_a), PROPS_CONNECT), PROPS_EMALFORMED);
}

/* ---- value rules ------------------------------------------------------------- */

static void test_value_rules(void **state)
{
	static const struct ctx_case bad[] = {
		{ PROPS_PUBLISH, { 0x01, 2 }, 2 }, /* payload format 0/1 */
		{ PROPS_WILL, { 0x01, 0xff }, 2 },
		{ PROPS_CONNECT, { 0x21, 0, 0 }, 3 }, /* receive max 0 */
		{ PROPS_CONNACK, { 0x21, 0, 0 }, 3 },
		{ PROPS_CONNECT, { 0x27, 0, 0, 0, 0 }, 5 }, /* max packet size 0 */
		{ PROPS_PUBLISH, { 0x0B, 0 }, 2 }, /* subscription id 0 */
		{ PROPS_SUBSCRIBE, { 0x0B, 0 }, 2 },
		{ PROPS_CONNACK, { 0x24, 2 }, 2 }, /* max QoS 0/1 */
		{ PROPS_CONNACK, { 0x25, 2 }, 2 }, /* booleans */
		{ PROPS_CONNACK, { 0x28, 2 }, 2 },
		{ PROPS_CONNACK, { 0x29, 2 }, 2 },
		{ PROPS_CONNACK, { 0x2A, 2 }, 2 },
		{ PROPS_CONNECT, { 0x17, 2 }, 2 }, /* request info 0/1 */
		{ PROPS_CONNECT, { 0x19, 2 }, 2 },
	};
	static const struct ctx_case good[] = {
		{ PROPS_PUBLISH, { 0x01, 1 }, 2 },  { PROPS_CONNACK, { 0x24, 0 }, 2 },
		{ PROPS_CONNACK, { 0x2A, 1 }, 2 },  { PROPS_CONNECT, { 0x21, 0, 1 }, 3 },
		{ PROPS_CONNECT, { 0x27, 0, 0, 0, 1 }, 5 }, { PROPS_PUBLISH, { 0x0B, 1 }, 2 },
		{ PROPS_PUBLISH, { 0x23, 0, 0 }, 3 }, /* alias 0: the broker's to reject */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (decode_raw(bad[i].bytes, bad[i].n, bad[i].ctx) != PROPS_EPROTOCOL)
			fail_msg("bad case %zu accepted", i);
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (decode_raw(good[i].bytes, good[i].n, good[i].ctx) != PROPS_OK)
			fail_msg("good case %zu rejected", i);
	}
}

/* ---- malformed blocks --------------------------------------------------------- */

static void test_unknown_ids(void **state)
{
	const uint8_t ids[] = { 0x00, 0x04, 0x05, 0x0A, 0x0C, 0x14, 0x1B, 0x20, 0x2B, 0x7F, 0x80 };
	uint8_t raw[4];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ids); i++) {
		raw[0] = ids[i];
		raw[1] = 0x01;
		raw[2] = 0;
		raw[3] = 0;
		if (decode_raw(raw, sizeof(raw), PROPS_CONNECT) != PROPS_EMALFORMED)
			fail_msg("unknown id 0x%02x accepted", ids[i]);
	}
}

static void test_length_exceeds(void **state)
{
	const uint8_t over[] = { 0x05, 0x01, 0x01 };
	const uint8_t over2[] = { 0x80, 0x01, 0x01, 0x01 }; /* 128 declared */
	const uint8_t nonmin[] = { 0x80, 0x00 }; /* [MQTT-1.5.5-1] */
	const uint8_t five[] = { 0xff, 0xff, 0xff, 0xff, 0x7f };
	const uint8_t inner[] = { 0x02, 0x02, 0x00 }; /* message expiry cut by the block end */

	(void)state;
	assert_int_equal(decode_bytes(over, sizeof(over), PROPS_PUBLISH), PROPS_EMALFORMED);
	assert_int_equal(decode_bytes(over2, sizeof(over2), PROPS_PUBLISH), PROPS_EMALFORMED);
	assert_int_equal(decode_bytes(nonmin, sizeof(nonmin), PROPS_PUBLISH), PROPS_EMALFORMED);
	assert_int_equal(decode_bytes(five, sizeof(five), PROPS_PUBLISH), PROPS_EMALFORMED);
	assert_int_equal(decode_bytes(inner, sizeof(inner), PROPS_PUBLISH), PROPS_EMALFORMED);
}

/* [MQTT-1.5.4-1], [MQTT-1.5.4-2]: ill-formed UTF-8 and U+0000 in strings and pairs. */
static void test_bad_utf8(void **state)
{
	static const struct ctx_case bad[] = {
		{ PROPS_PUBLISH, { 0x03, 0, 2, 0xC0, 0x80 }, 5 }, /* overlong NUL */
		{ PROPS_PUBLISH, { 0x08, 0, 1, 0xFF }, 4 },
		{ PROPS_PUBLISH, { 0x03, 0, 1, 0x00 }, 4 },
		{ PROPS_PUBLISH, { 0x26, 0, 1, 0xFF, 0, 0 }, 6 }, /* bad key */
		{ PROPS_PUBLISH, { 0x26, 0, 0, 0, 2, 0xED, 0xA0 }, 7 }, /* truncated surrogate */
		{ PROPS_CONNACK, { 0x1F, 0, 1, 0x80 }, 4 },
	};
	const uint8_t bin[] = { 0x09, 0, 2, 0xFF, 0x00 }; /* binary data: anything goes */
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (decode_raw(bad[i].bytes, bad[i].n, bad[i].ctx) != PROPS_EMALFORMED)
			fail_msg("bad utf8 case %zu accepted", i);
	}
	assert_int_equal(decode_raw(bin, sizeof(bin), PROPS_PUBLISH), PROPS_OK);
}

static void test_varint_values(void **state)
{
	const uint8_t maxv[] = { 0x0B, 0xff, 0xff, 0xff, 0x7f };
	const uint8_t fivev[] = { 0x0B, 0xff, 0xff, 0xff, 0xff, 0x01 };
	const uint8_t nonmin[] = { 0x0B, 0x81, 0x00 };
	const uint8_t cut[] = { 0x0B, 0x81 };

	(void)state;
	assert_int_equal(decode_raw(maxv, sizeof(maxv), PROPS_PUBLISH), PROPS_OK);
	assert_int_equal(decode_raw(fivev, sizeof(fivev), PROPS_PUBLISH), PROPS_EMALFORMED);
	assert_int_equal(decode_raw(nonmin, sizeof(nonmin), PROPS_PUBLISH), PROPS_EMALFORMED);
	assert_int_equal(decode_raw(cut, sizeof(cut), PROPS_PUBLISH), PROPS_EMALFORMED);
}

/*
 * Truncation: every prefix of a valid block is malformed, and so is every
 * inner cut (the block length rewritten to match) that splits a property.
 */
static void test_truncation(void **state)
{
	struct buf raw, whole;
	size_t ends[16], nends = 0, k, j;
	bool boundary;
	int rc;

	(void)state;
	buf_init(&raw);
	put_publish_props(&raw);
	/* the property boundaries, by hand from the sizes put_publish_props writes */
	{
		const size_t sizes[] = { 2, 5, 3, 1 + 2 + 5 + 2 + 1, 1 + 2 + 8, 1 + 2, 1 + 2 + 3,
					 1 + 4, 1 + 2 + 10, 1 + 2 + 6 + 2 + 1 };
		size_t acc = 0;

		for (j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
			acc += sizes[j];
			ends[nends++] = acc;
		}
		assert_int_equal(acc, raw.len);
	}
	buf_init(&whole);
	buf_put(&whole, raw.data, raw.len);
	wrap(&whole);
	for (k = 0; k < whole.len; k++)
		assert_int_equal(decode_bytes(whole.data, k, PROPS_PUBLISH), PROPS_EMALFORMED);
	for (k = 0; k < raw.len; k++) {
		boundary = k == 0;
		for (j = 0; j < nends; j++)
			boundary = boundary || ends[j] == k;
		rc = decode_raw(raw.data, k, PROPS_PUBLISH);
		if (boundary)
			assert_int_equal(rc, PROPS_OK);
		else if (rc != PROPS_EMALFORMED)
			fail_msg("inner cut at %zu gave %d", k, rc);
	}
	buf_free(&raw);
	buf_free(&whole);
}

/* ---- iterators and the forward copy ------------------------------------------- */

static void test_user_next(void **state)
{
	struct mqtt_props p;
	struct mqtt_str k, v;
	struct buf b;
	size_t used, pos = 0;
	uint32_t id;

	(void)state;
	buf_init(&b);
	put_publish_props(&b);
	wrap(&b);
	assert_int_equal(props_decode(b.data, b.len, PROPS_PUBLISH, &p, &used), 0);
	assert_int_equal(props_user_next(&p, &pos, &k, &v), 1);
	assert_str(k, "first");
	assert_str(v, "1");
	assert_int_equal(props_user_next(&p, &pos, &k, &v), 1);
	assert_str(k, "second");
	assert_str(v, "2");
	assert_int_equal(props_user_next(&p, &pos, &k, &v), 0);
	assert_int_equal(props_user_next(&p, &pos, &k, &v), 0);
	buf_free(&b);

	memset(&p, 0, sizeof(p));
	pos = 0;
	assert_int_equal(props_user_next(&p, &pos, &k, &v), 0);
	assert_int_equal(props_subid_next(&p, &pos, &id), 0);
}

static void test_copy_forward(void **state)
{
	struct mqtt_props p;
	struct buf b, out, want;
	size_t used;

	(void)state;
	buf_init(&b);
	buf_init(&out);
	buf_init(&want);
	put_publish_props(&b);
	wrap(&b);
	assert_int_equal(props_decode(b.data, b.len, PROPS_PUBLISH, &p, &used), 0);

	props_put_u8(&want, MQTT_PROP_PAYLOAD_FORMAT, 1);
	props_put_pair(&want, "first", 5, "1", 1);
	props_put_str(&want, MQTT_PROP_RESPONSE_TOPIC, "reply/to", 8);
	props_put_str(&want, MQTT_PROP_CORRELATION_DATA, "\xff\x00\x01", 3);
	props_put_str(&want, MQTT_PROP_CONTENT_TYPE, "text/plain", 10);
	props_put_pair(&want, "second", 6, "2", 1);

	buf_put(&out, "X", 1); /* appends, does not replace */
	assert_int_equal(props_copy_forward(&out, &p), 0);
	assert_int_equal(out.len, want.len + 1);
	assert_memory_equal(out.data + 1, want.data, want.len);

	/* out of memory leaves the buffer as it was */
	buf_free(&out);
	mem_fail_after(0);
	assert_int_equal(props_copy_forward(&out, &p), -1);
	mem_fail_after(-1);
	assert_int_equal(out.len, 0);

	/* nothing to forward: nothing appended */
	memset(&p, 0, sizeof(p));
	assert_int_equal(props_copy_forward(&out, &p), 0);
	assert_int_equal(out.len, 0);
	buf_free(&b);
	buf_free(&out);
	buf_free(&want);
}

static void test_put_bytes(void **state)
{
	const uint8_t want[] = { 0x01, 0x01, 0x21, 0x01, 0x02, 0x11, 0x00, 0x00, 0x0e, 0x10,
				 0x0B, 0x80, 0x01, 0x03, 0x00, 0x02, 'a', 'b', 0x26, 0x00,
				 0x01, 'k', 0x00, 0x01, 'v' };
	static char big[65536];
	struct buf b;

	(void)state;
	buf_init(&b);
	assert_int_equal(props_put_u8(&b, 0x01, 1), 0);
	assert_int_equal(props_put_u16(&b, 0x21, 258), 0);
	assert_int_equal(props_put_u32(&b, 0x11, 3600), 0);
	assert_int_equal(props_put_varint(&b, 0x0B, 128), 0);
	assert_int_equal(props_put_str(&b, 0x03, "ab", 2), 0);
	assert_int_equal(props_put_pair(&b, "k", 1, "v", 1), 0);
	assert_int_equal(b.len, sizeof(want));
	assert_memory_equal(b.data, want, sizeof(want));

	/* too long for the wire: refused, buffer unchanged */
	assert_int_equal(props_put_str(&b, 0x03, big, sizeof(big)), -1);
	assert_int_equal(props_put_pair(&b, big, sizeof(big), "v", 1), -1);
	assert_int_equal(props_put_pair(&b, "k", 1, big, sizeof(big)), -1);
	assert_int_equal(props_put_varint(&b, 0x0B, 268435456u), -1);
	assert_int_equal(b.len, sizeof(want));
	assert_int_equal(props_put_str(&b, 0x03, big, 65535), 0);
	assert_int_equal(b.len, sizeof(want) + 3 + 65535);
	buf_free(&b);

	/* out of memory */
	mem_fail_after(0);
	assert_int_equal(props_put_u8(&b, 0x01, 1), -1);
	assert_int_equal(props_put_str(&b, 0x03, "a", 1), -1);
	assert_int_equal(props_put_pair(&b, "a", 1, "b", 1), -1);
	assert_int_equal(props_put_varint(&b, 0x0B, 5), -1);
	mem_fail_after(-1);
	assert_int_equal(b.len, 0);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_block),
		cmocka_unit_test(test_connect_props),
		cmocka_unit_test(test_connack_props),
		cmocka_unit_test(test_publish_props),
		cmocka_unit_test(test_will_props),
		cmocka_unit_test(test_reason_contexts),
		cmocka_unit_test(test_subscribe_contexts),
		cmocka_unit_test(test_wrong_packet),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_value_rules),
		cmocka_unit_test(test_unknown_ids),
		cmocka_unit_test(test_length_exceeds),
		cmocka_unit_test(test_bad_utf8),
		cmocka_unit_test(test_varint_values),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_user_next),
		cmocka_unit_test(test_copy_forward),
		cmocka_unit_test(test_put_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
