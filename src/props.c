/*
 * props.c - MQTT 5 property blocks (section 2.2.2).
 *
 * This file owns the one table that knows, for every property identifier,
 * its wire type, the packets it may appear in (the table of section 2.2.2.2
 * plus the Will Properties of section 3.1.3.2) and where its decoded value
 * lives in struct mqtt_props. Everything else is driven from that table:
 * decoding, skipping while iterating the raw block, and the forward copy.
 *
 * Decoding never copies. The caller's packet buffer holds the bytes; the
 * decoded struct points into it, and the raw block is kept so that repeated
 * properties (user properties, subscription identifiers in a PUBLISH sent to
 * a client) can be walked later without an array per packet.
 *
 * Invariant: after props_decode() succeeds, the raw block is well formed, so
 * the iterators may trust every length in it. They still bound every read by
 * raw_len so that a struct filled by hand cannot make them overrun.
 *
 * Error split (props.h): anything that makes the block unparseable (short
 * read, bad variable byte integer, bad UTF-8, unknown identifier) and an
 * identifier not valid for the packet type [MQTT-2.2.2.2] is
 * PROPS_EMALFORMED; a parseable block that breaks a rule (duplicate,
 * forbidden value) is PROPS_EPROTOCOL.
 */
#include "props.h"

#include <stddef.h>
#include <string.h>

#include "utf8.h"

enum ptype {
	PT_NONE = 0, /* unknown identifier */
	PT_BYTE,
	PT_U16,
	PT_U32,
	PT_VARINT,
	PT_STR,
	PT_BIN,
	PT_PAIR,
};

enum pcheck {
	CHK_NONE = 0,
	CHK_BOOL, /* value must be 0 or 1 */
	CHK_NONZERO,
};

#define CTX(c) (1u << (c))
#define CTX_ALL 0x7ffu

struct pdef {
	uint8_t type;
	uint8_t check;
	uint16_t ctx; /* CTX() bits of the packets that may carry it */
	uint16_t off; /* offset of the value in struct mqtt_props */
};

#define P(id, t, chk, ctxs, field) \
	[id] = { (t), (chk), (uint16_t)(ctxs), (uint16_t)offsetof(struct mqtt_props, field) }

#define C_PUBWILL (CTX(PROPS_PUBLISH) | CTX(PROPS_WILL))
#define C_CONN2 (CTX(PROPS_CONNECT) | CTX(PROPS_CONNACK))
#define C_AUTH3 (CTX(PROPS_CONNECT) | CTX(PROPS_CONNACK) | CTX(PROPS_AUTH))
#define C_REASON                                                                            \
	(CTX(PROPS_CONNACK) | CTX(PROPS_PUBACK) | CTX(PROPS_SUBACK) | CTX(PROPS_UNSUBACK) | \
	 CTX(PROPS_DISCONNECT) | CTX(PROPS_AUTH))

/* Section 2.2.2.2, plus Will Properties (3.1.3.2). */
static const struct pdef pdefs[MQTT_PROP_SHARED_SUB_AVAILABLE + 1] = {
	P(MQTT_PROP_PAYLOAD_FORMAT, PT_BYTE, CHK_BOOL, C_PUBWILL, payload_format),
	P(MQTT_PROP_MESSAGE_EXPIRY, PT_U32, CHK_NONE, C_PUBWILL, message_expiry),
	P(MQTT_PROP_CONTENT_TYPE, PT_STR, CHK_NONE, C_PUBWILL, content_type),
	P(MQTT_PROP_RESPONSE_TOPIC, PT_STR, CHK_NONE, C_PUBWILL, response_topic),
	P(MQTT_PROP_CORRELATION_DATA, PT_BIN, CHK_NONE, C_PUBWILL, correlation_data),
	P(MQTT_PROP_SUBSCRIPTION_ID, PT_VARINT, CHK_NONZERO,
	  CTX(PROPS_PUBLISH) | CTX(PROPS_SUBSCRIBE), subscription_id),
	P(MQTT_PROP_SESSION_EXPIRY, PT_U32, CHK_NONE, C_CONN2 | CTX(PROPS_DISCONNECT),
	  session_expiry),
	P(MQTT_PROP_ASSIGNED_CLIENT_ID, PT_STR, CHK_NONE, CTX(PROPS_CONNACK), assigned_client_id),
	P(MQTT_PROP_SERVER_KEEP_ALIVE, PT_U16, CHK_NONE, CTX(PROPS_CONNACK), server_keep_alive),
	P(MQTT_PROP_AUTH_METHOD, PT_STR, CHK_NONE, C_AUTH3, auth_method),
	P(MQTT_PROP_AUTH_DATA, PT_BIN, CHK_NONE, C_AUTH3, auth_data),
	P(MQTT_PROP_REQUEST_PROBLEM_INFO, PT_BYTE, CHK_BOOL, CTX(PROPS_CONNECT),
	  request_problem_info),
	P(MQTT_PROP_WILL_DELAY, PT_U32, CHK_NONE, CTX(PROPS_WILL), will_delay),
	P(MQTT_PROP_REQUEST_RESPONSE_INFO, PT_BYTE, CHK_BOOL, CTX(PROPS_CONNECT),
	  request_response_info),
	P(MQTT_PROP_RESPONSE_INFO, PT_STR, CHK_NONE, CTX(PROPS_CONNACK), response_info),
	P(MQTT_PROP_SERVER_REFERENCE, PT_STR, CHK_NONE, CTX(PROPS_CONNACK) | CTX(PROPS_DISCONNECT),
	  server_reference),
	P(MQTT_PROP_REASON_STRING, PT_STR, CHK_NONE, C_REASON, reason_string),
	P(MQTT_PROP_RECEIVE_MAX, PT_U16, CHK_NONZERO, C_CONN2, receive_max),
	P(MQTT_PROP_TOPIC_ALIAS_MAX, PT_U16, CHK_NONE, C_CONN2, topic_alias_max),
	P(MQTT_PROP_TOPIC_ALIAS, PT_U16, CHK_NONE, CTX(PROPS_PUBLISH), topic_alias),
	P(MQTT_PROP_MAX_QOS, PT_BYTE, CHK_BOOL, CTX(PROPS_CONNACK), max_qos),
	P(MQTT_PROP_RETAIN_AVAILABLE, PT_BYTE, CHK_BOOL, CTX(PROPS_CONNACK), retain_available),
	P(MQTT_PROP_USER_PROPERTY, PT_PAIR, CHK_NONE, CTX_ALL, n_user_props),
	P(MQTT_PROP_MAX_PACKET_SIZE, PT_U32, CHK_NONZERO, C_CONN2, max_packet_size),
	P(MQTT_PROP_WILDCARD_SUB_AVAILABLE, PT_BYTE, CHK_BOOL, CTX(PROPS_CONNACK),
	  wildcard_sub_available),
	P(MQTT_PROP_SUBID_AVAILABLE, PT_BYTE, CHK_BOOL, CTX(PROPS_CONNACK), subid_available),
	P(MQTT_PROP_SHARED_SUB_AVAILABLE, PT_BYTE, CHK_BOOL, CTX(PROPS_CONNACK),
	  shared_sub_available),
};

/* One decoded property value, before it is stored. */
struct pval {
	uint32_t num;
	struct mqtt_str s; /* string, binary data, or a pair's key */
	struct mqtt_str v; /* a pair's value */
};

static const struct pdef *pdef_get(uint8_t id)
{
	if (id >= sizeof(pdefs) / sizeof(pdefs[0]) || pdefs[id].type == PT_NONE)
		return NULL;
	return &pdefs[id];
}

/*
 * Variable byte integer at p, at most len bytes. Returns its size (1..4) and
 * sets *v, or -1 when truncated, longer than 4 bytes, or not in its minimal
 * form [MQTT-1.5.5-1].
 */
static int varint_read(const uint8_t *p, size_t len, uint32_t *v)
{
	uint32_t x = 0;
	int i;

	for (i = 0; i < 4; i++) {
		if ((size_t)i >= len)
			return -1;
		x |= (uint32_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			if (i > 0 && p[i] == 0)
				return -1; /* a trailing zero byte: not minimal */
			*v = x;
			return i + 1;
		}
	}
	return -1;
}

/* Reads a 2-byte length and that many bytes at p[*pos]. Returns 0 or -1. */
static int lenbytes_read(const uint8_t *p, size_t len, size_t *pos, struct mqtt_str *s)
{
	size_t n;

	if (len - *pos < 2)
		return -1;
	n = (size_t)p[*pos] << 8 | p[*pos + 1];
	if (len - *pos - 2 < n)
		return -1;
	s->p = (const char *)p + *pos + 2;
	s->len = (uint16_t)n;
	*pos += 2 + n;
	return 0;
}

static uint32_t be_read(const uint8_t *p, int n)
{
	uint32_t v = 0;
	int i;

	for (i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Reads a fixed-size integer of n bytes. */
static int fixed_read(const uint8_t *p, size_t len, size_t *pos, int n, uint32_t *v)
{
	if (len - *pos < (size_t)n)
		return -1;
	*v = be_read(p + *pos, n);
	*pos += (size_t)n;
	return 0;
}

static int str_read(const uint8_t *p, size_t len, size_t *pos, struct mqtt_str *s)
{
	if (lenbytes_read(p, len, pos, s))
		return -1;
	return utf8_check(s->p, s->len) ? -1 : 0; /* [MQTT-1.5.4-1] */
}

/*
 * Reads the value of a property of the given type at p[*pos]. Strings are
 * UTF-8 checked. Returns 0 or PROPS_EMALFORMED.
 */
static int value_read(const uint8_t *p, size_t len, size_t *pos, uint8_t type, struct pval *v)
{
	int n, rc = 0;

	switch (type) {
	case PT_BYTE:
		return fixed_read(p, len, pos, 1, &v->num) ? PROPS_EMALFORMED : 0;
	case PT_U16:
		return fixed_read(p, len, pos, 2, &v->num) ? PROPS_EMALFORMED : 0;
	case PT_U32:
		return fixed_read(p, len, pos, 4, &v->num) ? PROPS_EMALFORMED : 0;
	case PT_VARINT:
		n = varint_read(p + *pos, len - *pos, &v->num);
		if (n < 0)
			return PROPS_EMALFORMED;
		*pos += (size_t)n;
		return 0;
	case PT_STR:
		rc = str_read(p, len, pos, &v->s);
		break;
	case PT_BIN:
		rc = lenbytes_read(p, len, pos, &v->s);
		break;
	case PT_PAIR:
		rc = str_read(p, len, pos, &v->s) || str_read(p, len, pos, &v->v);
		break;
	default:
		rc = -1;
	}
	return rc ? PROPS_EMALFORMED : 0;
}

/* Checks a decoded value against the rules of props.h. */
static int value_check(const struct pdef *d, const struct pval *v)
{
	if (d->check == CHK_BOOL && v->num > 1)
		return PROPS_EPROTOCOL;
	if (d->check == CHK_NONZERO && v->num == 0)
		return PROPS_EPROTOCOL;
	return 0;
}

/* Stores a checked value into its field of out. */
static void value_store(const struct pdef *d, const struct pval *v, struct mqtt_props *out)
{
	char *f = (char *)out + d->off;
	uint8_t u8 = (uint8_t)v->num;
	uint16_t u16 = (uint16_t)v->num;

	switch (d->type) {
	case PT_BYTE:
		memcpy(f, &u8, 1);
		break;
	case PT_U16:
		memcpy(f, &u16, 2);
		break;
	case PT_U32:
	case PT_VARINT:
		memcpy(f, &v->num, 4);
		break;
	case PT_STR:
	case PT_BIN:
		memcpy(f, &v->s, sizeof(v->s));
		break;
	case PT_PAIR:
		if (out->n_user_props < UINT16_MAX)
			out->n_user_props++;
		break;
	}
}

/* Whether a second occurrence of id is allowed in ctx [2.2.2.2]. */
static bool repeat_allowed(uint8_t id, enum props_ctx ctx)
{
	if (id == MQTT_PROP_USER_PROPERTY)
		return true;
	return id == MQTT_PROP_SUBSCRIPTION_ID && ctx == PROPS_PUBLISH;
}

/* Decodes one property at p[*pos] into out. */
static int prop_decode_one(const uint8_t *p, size_t len, size_t *pos, enum props_ctx ctx,
			   struct mqtt_props *out)
{
	const struct pdef *d = pdef_get(p[*pos]);
	uint8_t id = p[*pos];
	struct pval v;
	int rc;

	/* Identifiers are variable byte integers, but every defined one is a
	 * single byte below 0x80: anything else is unknown. */
	if (!d)
		return PROPS_EMALFORMED;
	(*pos)++;
	rc = value_read(p, len, pos, d->type, &v);
	if (rc)
		return rc;
	/* 2.2.2.2: an identifier not valid for its packet type is a Malformed Packet. */
	if (!(d->ctx & CTX(ctx)))
		return PROPS_EMALFORMED;
	if ((out->present & PROP_BIT(id)) && !repeat_allowed(id, ctx))
		return PROPS_EPROTOCOL;
	rc = value_check(d, &v);
	if (rc)
		return rc;
	if (!(out->present & PROP_BIT(id)) || id == MQTT_PROP_USER_PROPERTY)
		value_store(d, &v, out);
	out->present |= PROP_BIT(id);
	return 0;
}

int props_decode(const uint8_t *p, size_t len, enum props_ctx ctx, struct mqtt_props *out,
		 size_t *used)
{
	uint32_t blen;
	size_t pos = 0;
	int n, rc;

	memset(out, 0, sizeof(*out));
	n = varint_read(p, len, &blen);
	if (n < 0 || len - (size_t)n < blen)
		return PROPS_EMALFORMED;
	out->raw = p + n;
	out->raw_len = blen;
	while (pos < blen) {
		rc = prop_decode_one(out->raw, blen, &pos, ctx, out);
		if (rc)
			return rc;
	}
	*used = (size_t)n + blen;
	return PROPS_OK;
}

/*
 * Reads the property at raw[*pos] of a decoded block: id, value, and the
 * offset where it started. Returns 1, 0 at the end, or 0 on a broken block.
 */
static int raw_next(const struct mqtt_props *props, size_t *pos, uint8_t *id, struct pval *v,
		    size_t *start)
{
	const struct pdef *d;

	if (!props->raw || *pos >= props->raw_len)
		return 0;
	*start = *pos;
	*id = props->raw[*pos];
	d = pdef_get(*id);
	if (!d)
		return 0;
	(*pos)++;
	if (value_read(props->raw, props->raw_len, pos, d->type, v)) {
		*pos = props->raw_len;
		return 0;
	}
	return 1;
}

int props_user_next(const struct mqtt_props *props, size_t *pos, struct mqtt_str *key,
		    struct mqtt_str *val)
{
	struct pval v;
	size_t start;
	uint8_t id;

	while (raw_next(props, pos, &id, &v, &start)) {
		if (id == MQTT_PROP_USER_PROPERTY) {
			*key = v.s;
			*val = v.v;
			return 1;
		}
	}
	return 0;
}

int props_subid_next(const struct mqtt_props *props, size_t *pos, uint32_t *subid)
{
	struct pval v;
	size_t start;
	uint8_t id;

	while (raw_next(props, pos, &id, &v, &start)) {
		if (id == MQTT_PROP_SUBSCRIPTION_ID) {
			*subid = v.num;
			return 1;
		}
	}
	return 0;
}

static bool forwarded(uint8_t id)
{
	return id == MQTT_PROP_PAYLOAD_FORMAT || id == MQTT_PROP_CONTENT_TYPE ||
	       id == MQTT_PROP_RESPONSE_TOPIC || id == MQTT_PROP_CORRELATION_DATA ||
	       id == MQTT_PROP_USER_PROPERTY;
}

int props_copy_forward(struct buf *out, const struct mqtt_props *props)
{
	struct pval v;
	size_t pos = 0, start;
	uint8_t id;

	/* The copy is never longer than the block: one reservation, then
	 * appends that cannot fail, so a failure leaves out unchanged. */
	if (buf_reserve(out, props->raw_len))
		return -1;
	while (raw_next(props, &pos, &id, &v, &start)) {
		if (forwarded(id))
			buf_put(out, props->raw + start, pos - start);
	}
	return 0;
}

int props_put_u8(struct buf *b, uint8_t id, uint8_t v)
{
	uint8_t x[2] = { id, v };

	return buf_put(b, x, sizeof(x));
}

int props_put_u16(struct buf *b, uint8_t id, uint16_t v)
{
	uint8_t x[3] = { id, (uint8_t)(v >> 8), (uint8_t)v };

	return buf_put(b, x, sizeof(x));
}

int props_put_u32(struct buf *b, uint8_t id, uint32_t v)
{
	uint8_t x[5] = { id, (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
			 (uint8_t)v };

	return buf_put(b, x, sizeof(x));
}

int props_put_varint(struct buf *b, uint8_t id, uint32_t v)
{
	if (v > MQTT_MAX_REMAINING_LENGTH || buf_reserve(b, 5))
		return -1;
	buf_put_u8(b, id);
	return buf_put_varint(b, v);
}

int props_put_str(struct buf *b, uint8_t id, const void *p, size_t n)
{
	if (n > 65535 || buf_reserve(b, n + 3))
		return -1;
	buf_put_u8(b, id);
	return buf_put_str(b, p, n);
}

int props_put_pair(struct buf *b, const void *k, size_t kn, const void *v, size_t vn)
{
	if (kn > 65535 || vn > 65535 || buf_reserve(b, kn + vn + 5))
		return -1;
	buf_put_u8(b, MQTT_PROP_USER_PROPERTY);
	buf_put_str(b, k, kn);
	return buf_put_str(b, v, vn);
}
