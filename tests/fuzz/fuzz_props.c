/*
 * fuzz_props.c - libFuzzer target for props_decode() and what is built on a
 * decoded block: the user property and subscription identifier iterators,
 * props_copy_forward() and the props_put_*() encoders.
 *
 * Input: the first byte picks the packet context (enum props_ctx), the rest
 * is a property block starting at its length prefix.
 *
 * A block that decodes is checked against a second, independent reading:
 *
 *   - the prefix and the raw block account for exactly the bytes used;
 *   - props_user_next() yields n_user_props pairs, props_subid_next() yields
 *     a subscription identifier exactly when one is present, the first one
 *     being subscription_id;
 *   - the block is rebuilt from the decoded struct with props_put_*() (one
 *     property per present identifier, in identifier order, then the
 *     repeated ones in wire order) and decoded again in the same context: it
 *     must succeed with the same values;
 *   - props_copy_forward() produces a block that decodes as PUBLISH
 *     properties and carries exactly the forwarded properties of the source.
 *
 * The type of each identifier comes from this file's own table, written from
 * section 2.2.2.2 of the specification, not from props.c.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "props.h"

enum kind { NONE, BYTE, U16, U32, VARINT, STR, BIN, PAIR };

struct field {
	enum kind kind;
	size_t off; /* in struct mqtt_props */
};

#define F(id, k, name) [id] = { k, offsetof(struct mqtt_props, name) }

static const struct field fields[MQTT_PROP_SHARED_SUB_AVAILABLE + 1] = {
	F(MQTT_PROP_PAYLOAD_FORMAT, BYTE, payload_format),
	F(MQTT_PROP_MESSAGE_EXPIRY, U32, message_expiry),
	F(MQTT_PROP_CONTENT_TYPE, STR, content_type),
	F(MQTT_PROP_RESPONSE_TOPIC, STR, response_topic),
	F(MQTT_PROP_CORRELATION_DATA, BIN, correlation_data),
	F(MQTT_PROP_SUBSCRIPTION_ID, VARINT, subscription_id),
	F(MQTT_PROP_SESSION_EXPIRY, U32, session_expiry),
	F(MQTT_PROP_ASSIGNED_CLIENT_ID, STR, assigned_client_id),
	F(MQTT_PROP_SERVER_KEEP_ALIVE, U16, server_keep_alive),
	F(MQTT_PROP_AUTH_METHOD, STR, auth_method),
	F(MQTT_PROP_AUTH_DATA, BIN, auth_data),
	F(MQTT_PROP_REQUEST_PROBLEM_INFO, BYTE, request_problem_info),
	F(MQTT_PROP_WILL_DELAY, U32, will_delay),
	F(MQTT_PROP_REQUEST_RESPONSE_INFO, BYTE, request_response_info),
	F(MQTT_PROP_RESPONSE_INFO, STR, response_info),
	F(MQTT_PROP_SERVER_REFERENCE, STR, server_reference),
	F(MQTT_PROP_REASON_STRING, STR, reason_string),
	F(MQTT_PROP_RECEIVE_MAX, U16, receive_max),
	F(MQTT_PROP_TOPIC_ALIAS_MAX, U16, topic_alias_max),
	F(MQTT_PROP_TOPIC_ALIAS, U16, topic_alias),
	F(MQTT_PROP_MAX_QOS, BYTE, max_qos),
	F(MQTT_PROP_RETAIN_AVAILABLE, BYTE, retain_available),
	F(MQTT_PROP_USER_PROPERTY, PAIR, n_user_props),
	F(MQTT_PROP_MAX_PACKET_SIZE, U32, max_packet_size),
	F(MQTT_PROP_WILDCARD_SUB_AVAILABLE, BYTE, wildcard_sub_available),
	F(MQTT_PROP_SUBID_AVAILABLE, BYTE, subid_available),
	F(MQTT_PROP_SHARED_SUB_AVAILABLE, BYTE, shared_sub_available),
};

#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static const uint64_t forward_mask =
	PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) | PROP_BIT(MQTT_PROP_CONTENT_TYPE) |
	PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) | PROP_BIT(MQTT_PROP_CORRELATION_DATA) |
	PROP_BIT(MQTT_PROP_USER_PROPERTY);

static uint32_t num_of(const struct mqtt_props *p, uint8_t id)
{
	const char *f = (const char *)p + fields[id].off;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;

	switch (fields[id].kind) {
	case BYTE:
		memcpy(&u8, f, 1);
		return u8;
	case U16:
		memcpy(&u16, f, 2);
		return u16;
	default:
		memcpy(&u32, f, 4);
		return u32;
	}
}

static struct mqtt_str str_of(const struct mqtt_props *p, uint8_t id)
{
	struct mqtt_str s;

	memcpy(&s, (const char *)p + fields[id].off, sizeof(s));
	return s;
}

static void put_ok(int rc)
{
	fuzz_check(rc == 0);
}

/* ---- fingerprint: the values in identifier order, then repeated ones ----- */

static void fp_bytes(struct buf *b, const void *p, size_t n)
{
	put_ok(buf_put_u32(b, (uint32_t)n));
	put_ok(buf_put(b, p, n));
}

/* User properties always; subscription identifiers when mask has them. */
static void fp_repeated(struct buf *b, const struct mqtt_props *p, uint64_t mask)
{
	struct mqtt_str k, v;
	size_t pos = 0, n = 0;
	uint32_t id;

	while (props_user_next(p, &pos, &k, &v)) {
		fp_bytes(b, k.p, k.len);
		fp_bytes(b, v.p, v.len);
		n++;
	}
	fuzz_check(n == p->n_user_props || (n > UINT16_MAX && p->n_user_props == UINT16_MAX));
	fuzz_check((n > 0) == !!(p->present & PROP_BIT(MQTT_PROP_USER_PROPERTY)));
	if (!(mask & PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID)))
		return;
	pos = 0;
	n = 0;
	while (props_subid_next(p, &pos, &id)) {
		fuzz_check(n > 0 || id == p->subscription_id);
		fuzz_check(id != 0 && id <= MQTT_MAX_REMAINING_LENGTH);
		put_ok(buf_put_u32(b, id));
		n++;
	}
	fuzz_check((n > 0) == !!(p->present & PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID)));
}

static void fingerprint(struct buf *b, const struct mqtt_props *p, uint64_t mask)
{
	struct mqtt_str s;

	put_ok(buf_put_u32(b, (uint32_t)((p->present & mask) >> 32)));
	put_ok(buf_put_u32(b, (uint32_t)(p->present & mask)));
	for (uint8_t id = 1; id < NFIELDS; id++) {
		if (!(p->present & mask & PROP_BIT(id)) || fields[id].kind == PAIR)
			continue;
		if (fields[id].kind == STR || fields[id].kind == BIN) {
			s = str_of(p, id);
			fp_bytes(b, s.p, s.len);
		} else {
			put_ok(buf_put_u32(b, num_of(p, id)));
		}
	}
	fp_repeated(b, p, mask);
}

/* ---- rebuilding the block with props_put_*() ----------------------------- */

static void put_one(struct buf *b, const struct mqtt_props *p, uint8_t id)
{
	struct mqtt_str s;

	switch (fields[id].kind) {
	case BYTE:
		put_ok(props_put_u8(b, id, (uint8_t)num_of(p, id)));
		break;
	case U16:
		put_ok(props_put_u16(b, id, (uint16_t)num_of(p, id)));
		break;
	case U32:
		put_ok(props_put_u32(b, id, num_of(p, id)));
		break;
	case STR:
	case BIN:
		s = str_of(p, id);
		put_ok(props_put_str(b, id, s.p, s.len));
		break;
	default:
		fuzz_check(0);
	}
}

static void rebuild(struct buf *b, const struct mqtt_props *p)
{
	struct mqtt_str k, v;
	size_t pos = 0;
	uint32_t subid;

	for (uint8_t id = 1; id < NFIELDS; id++) {
		if (!(p->present & PROP_BIT(id)) || fields[id].kind == PAIR ||
		    fields[id].kind == VARINT)
			continue;
		put_one(b, p, id);
	}
	while (props_subid_next(p, &pos, &subid))
		put_ok(props_put_varint(b, MQTT_PROP_SUBSCRIPTION_ID, subid));
	pos = 0;
	while (props_user_next(p, &pos, &k, &v))
		put_ok(props_put_pair(b, k.p, k.len, v.p, v.len));
}

/* Prefixes a raw block with its length and decodes it in ctx; it must decode. */
static void decode_block(const struct buf *raw, enum props_ctx ctx, struct buf *wire,
			 struct mqtt_props *out)
{
	size_t used = 0;

	put_ok(buf_put_varint(wire, (uint32_t)raw->len));
	put_ok(buf_put(wire, raw->data, raw->len));
	fuzz_check(props_decode(wire->data, wire->len, ctx, out, &used) == PROPS_OK);
	fuzz_check(used == wire->len);
}

static void same_fp(const struct mqtt_props *a, const struct mqtt_props *b, uint64_t mask)
{
	struct buf fa, fb;

	buf_init(&fa);
	buf_init(&fb);
	fingerprint(&fa, a, mask);
	fingerprint(&fb, b, mask);
	fuzz_check(fa.len == fb.len && memcmp(fa.data, fb.data, fa.len) == 0);
	buf_free(&fa);
	buf_free(&fb);
}

static void check_rebuild(const struct mqtt_props *p, enum props_ctx ctx)
{
	struct buf raw, wire;
	struct mqtt_props q;

	buf_init(&raw);
	buf_init(&wire);
	rebuild(&raw, p);
	fuzz_check(raw.len == p->raw_len); /* same properties, same sizes, other order */
	decode_block(&raw, ctx, &wire, &q);
	same_fp(p, &q, ~0ull);
	buf_free(&raw);
	buf_free(&wire);
}

static void check_forward(const struct mqtt_props *p)
{
	struct buf raw, wire;
	struct mqtt_props q;

	buf_init(&raw);
	buf_init(&wire);
	put_ok(props_copy_forward(&raw, p));
	fuzz_check(raw.len <= p->raw_len);
	decode_block(&raw, PROPS_PUBLISH, &wire, &q);
	fuzz_check(q.present == (p->present & forward_mask));
	fuzz_check(q.n_user_props == p->n_user_props);
	same_fp(p, &q, forward_mask);
	buf_free(&raw);
	buf_free(&wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mqtt_props p;
	enum props_ctx ctx;
	size_t used = 0, n;
	uint8_t *block;
	int rc;

	if (size < 1)
		return 0;
	ctx = (enum props_ctx)(data[0] % (PROPS_AUTH + 1));
	n = size - 1;
	block = malloc(n ? n : 1); /* exact size: ASan sees any overrun */
	fuzz_check(block != NULL);
	memcpy(block, data + 1, n);
	rc = props_decode(block, n, ctx, &p, &used);
	fuzz_check(rc == PROPS_OK || rc == PROPS_EMALFORMED || rc == PROPS_EPROTOCOL);
	if (rc == PROPS_OK) {
		fuzz_check(used <= n && used > p.raw_len);
		fuzz_check(used == (size_t)buf_varint_size((uint32_t)p.raw_len) + p.raw_len);
		fuzz_check(p.raw == block + (used - p.raw_len));
		check_rebuild(&p, ctx);
		check_forward(&p);
	}
	free(block);
	return 0;
}
