/*
 * codec.c - MQTT 3.1, 3.1.1 and 5.0 control packets: bytes to structs and
 * back (chapters 2 and 3 of both specifications).
 *
 * This file owns the wire format of every packet and every rule that can be
 * checked on one packet alone. It knows nothing of connections or sessions:
 * the caller says which protocol level the connection speaks (CONNECT says it
 * itself) and gets back a struct whose strings point into its own buffer.
 *
 * Decoding reads through a small cursor (struct rd) that bounds every read,
 * so a short packet is always CODEC_EMALFORMED and never an overrun. Each
 * packet type has one decoder; codec_decode() checks the fixed header, runs
 * the decoder and then insists that it consumed the body exactly: trailing
 * bytes are malformed.
 *
 * Error precedence: a packet that cannot be parsed, or breaks a protocol
 * rule, reports that. A bad topic name (PUBLISH, Will) or topic filter
 * ((UN)SUBSCRIBE) in an otherwise well-formed packet is reported last, as
 * CODEC_ETOPIC / CODEC_EFILTER, with the rest of the struct filled in, so the
 * broker can still answer with the packet identifier (a SUBACK with 0x8F for
 * the bad entries, for instance: the entries stay walkable).
 *
 * Encoding computes the remaining length first, reserves the whole packet
 * with one buf_reserve() and then writes with plain stores: an encoder never
 * leaves a half-written packet in the buffer, and PUBLISH, the hot path,
 * costs one capacity check and a few memcpy calls.
 */
#include "codec.h"

#include <string.h>

#include "topic.h"
#include "utf8.h"

/* ---- decoding cursor ---------------------------------------------------- */

struct rd {
	const uint8_t *p;
	size_t len;
	size_t pos;
};

static size_t rd_left(const struct rd *r)
{
	return r->len - r->pos;
}

static int rd_u8(struct rd *r, uint8_t *v)
{
	if (rd_left(r) < 1)
		return CODEC_EMALFORMED;
	*v = r->p[r->pos++];
	return 0;
}

static int rd_u16(struct rd *r, uint16_t *v)
{
	if (rd_left(r) < 2)
		return CODEC_EMALFORMED;
	*v = (uint16_t)(r->p[r->pos] << 8 | r->p[r->pos + 1]);
	r->pos += 2;
	return 0;
}

/* Two-byte length, then that many bytes (binary data, or a string unchecked). */
static int rd_bin(struct rd *r, struct mqtt_bin *b)
{
	uint16_t n;

	if (rd_u16(r, &n) || rd_left(r) < n)
		return CODEC_EMALFORMED;
	b->p = r->p + r->pos;
	b->len = n;
	r->pos += n;
	return 0;
}

static int rd_lenstr(struct rd *r, struct mqtt_str *s)
{
	struct mqtt_bin b;

	if (rd_bin(r, &b))
		return CODEC_EMALFORMED;
	s->p = (const char *)b.p;
	s->len = b.len;
	return 0;
}

/* A UTF-8 string [MQTT-1.5.4-1, MQTT-1.5.4-2]. */
static int rd_str(struct rd *r, struct mqtt_str *s)
{
	if (rd_lenstr(r, s) || utf8_check(s->p, s->len))
		return CODEC_EMALFORMED;
	return 0;
}

/* A property block in MQTT 5; nothing (all absent) before. */
static int rd_props(struct rd *r, uint8_t version, enum props_ctx ctx, struct mqtt_props *out)
{
	size_t used;
	int rc;

	if (version < MQTT_V5) {
		memset(out, 0, sizeof(*out));
		return 0;
	}
	rc = props_decode(r->p + r->pos, rd_left(r), ctx, out, &used);
	if (rc)
		return rc == PROPS_EPROTOCOL ? CODEC_EPROTOCOL : CODEC_EMALFORMED;
	r->pos += used;
	return 0;
}

/* Remaining length: 1 to 4 bytes, minimal [MQTT-1.5.5-1]. Returns its size or -1. */
static int varint_read(const uint8_t *p, size_t len, uint32_t *v)
{
	uint32_t x = 0;
	int i;

	for (i = 0; i < 4 && (size_t)i < len; i++) {
		x |= (uint32_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			if (i > 0 && p[i] == 0)
				return -1;
			*v = x;
			return i + 1;
		}
	}
	return -1;
}

/* A later, less severe error (ETOPIC, EFILTER) does not replace an earlier one. */
static void note_err(int *acc, int rc)
{
	if (!*acc)
		*acc = rc;
}

/* ---- CONNECT -------------------------------------------------------------- */

#define CF_RESERVED 0x01
#define CF_CLEAN 0x02
#define CF_WILL 0x04
#define CF_WILL_QOS_SHIFT 3
#define CF_WILL_RETAIN 0x20
#define CF_PASSWORD 0x40
#define CF_USERNAME 0x80

/* Protocol name and level (3.1.2.1, 3.1.2.2). Sets c->version whenever the level is readable. */
static int connect_proto(struct rd *r, struct mqtt_connect *c)
{
	struct mqtt_str name;

	if (rd_lenstr(r, &name) || rd_u8(r, &c->version))
		return CODEC_EMALFORMED;
	if (name.len == 4 && !memcmp(name.p, "MQTT", 4) &&
	    (c->version == MQTT_V311 || c->version == MQTT_V5))
		return 0;
	if (name.len == 6 && !memcmp(name.p, "MQIsdp", 6) && c->version == MQTT_V31)
		return 0;
	/* [MQTT-3.1.2-2] a known name with a level we do not speak: refused with a CONNACK. */
	if ((name.len == 4 && !memcmp(name.p, "MQTT", 4)) ||
	    (name.len == 6 && !memcmp(name.p, "MQIsdp", 6)))
		return CODEC_EPROTOVER;
	/* [MQTT-3.1.2-1] not MQTT at all: the connection is closed. */
	return CODEC_EPROTOCOL;
}

static int connect_flags(struct mqtt_connect *c, uint8_t f)
{
	if (f & CF_RESERVED)
		return CODEC_EMALFORMED; /* [MQTT-3.1.2-3] */
	c->clean_start = f & CF_CLEAN;
	c->will = f & CF_WILL;
	c->will_qos = (f >> CF_WILL_QOS_SHIFT) & 3;
	c->will_retain = f & CF_WILL_RETAIN;
	c->has_password = f & CF_PASSWORD;
	c->has_username = f & CF_USERNAME;
	if (c->will_qos == 3)
		return CODEC_EMALFORMED; /* [MQTT-3.1.2-12] (5), [MQTT-3.1.2-14] (3.1.1) */
	if (!c->will && (c->will_qos || c->will_retain))
		return CODEC_EMALFORMED; /* [MQTT-3.1.2-11, -13] (5); [MQTT-3.1.2-13, -15] */
	if (c->version < MQTT_V5 && c->has_password && !c->has_username)
		return CODEC_EMALFORMED; /* [MQTT-3.1.2-22] */
	return 0;
}

/* Will properties, topic and payload (3.1.3.2 - 3.1.3.4). */
static int connect_will(struct rd *r, struct mqtt_connect *c, int *late)
{
	int rc;

	rc = rd_props(r, c->version, PROPS_WILL, &c->will_props);
	if (rc)
		return rc;
	if (rd_str(r, &c->will_topic) || rd_bin(r, &c->will_payload))
		return CODEC_EMALFORMED;
	if (!topic_name_valid(c->will_topic.p, c->will_topic.len))
		note_err(late, CODEC_ETOPIC); /* [MQTT-3.1.3-11] */
	return 0;
}

static int connect_payload(struct rd *r, struct mqtt_connect *c)
{
	int rc, late = 0;

	if (rd_str(r, &c->client_id))
		return CODEC_EMALFORMED; /* [MQTT-3.1.3-4] */
	if (c->will) {
		rc = connect_will(r, c, &late);
		if (rc)
			return rc;
	}
	if (c->has_username && rd_str(r, &c->username))
		return CODEC_EMALFORMED; /* [MQTT-3.1.3-11] (3.1.1: -12) */
	if (c->has_password && rd_bin(r, &c->password))
		return CODEC_EMALFORMED;
	return late;
}

static int dec_connect(struct rd *r, uint8_t version, struct mqtt_packet *pkt)
{
	struct mqtt_connect *c = &pkt->u.connect;
	uint8_t flags;
	int rc;

	(void)version; /* CONNECT carries its own */
	rc = connect_proto(r, c);
	if (rc)
		return rc;
	if (rd_u8(r, &flags) || rd_u16(r, &c->keep_alive))
		return CODEC_EMALFORMED;
	rc = connect_flags(c, flags);
	if (rc)
		return rc;
	rc = rd_props(r, c->version, PROPS_CONNECT, &c->props);
	if (rc)
		return rc;
	return connect_payload(r, c);
}

/* ---- the other packets ------------------------------------------------- */

static int dec_connack(struct rd *r, uint8_t version, struct mqtt_packet *pkt)
{
	struct mqtt_connack *c = &pkt->u.connack;
	uint8_t ackf;

	if (rd_u8(r, &ackf) || rd_u8(r, &c->reason))
		return CODEC_EMALFORMED;
	if (ackf & 0xfe)
		return CODEC_EMALFORMED; /* [MQTT-3.2.2-1] */
	c->session_present = ackf & 1;
	return rd_props(r, version, PROPS_CONNACK, &c->props);
}

/* The topic name of a PUBLISH: malformed if not UTF-8, ETOPIC if not a name. */
static int publish_topic(const struct mqtt_str *t, uint8_t version)
{
	if (t->len == 0) /* MQTT 5: a topic alias must stand in; the broker checks */
		return version >= MQTT_V5 ? 0 : CODEC_ETOPIC; /* [MQTT-4.7.3-1] */
	if (topic_name_valid(t->p, t->len))
		return 0;
	if (utf8_check(t->p, t->len))
		return CODEC_EMALFORMED; /* [MQTT-1.5.4-1] */
	return CODEC_ETOPIC; /* [MQTT-3.3.2-2] */
}

static int publish_flags(struct mqtt_publish *p, uint8_t flags, uint8_t version)
{
	p->retain = flags & 1;
	p->qos = (flags >> 1) & 3;
	p->dup = flags & 8;
	if (p->qos == 3)
		return CODEC_EMALFORMED; /* [MQTT-3.3.1-4] */
	if (p->dup && p->qos == 0)
		return version >= MQTT_V5 ? CODEC_EMALFORMED : CODEC_EPROTOCOL; /* [MQTT-3.3.1-2] */
	return 0;
}

static int dec_publish(struct rd *r, uint8_t version, struct mqtt_packet *pkt)
{
	struct mqtt_publish *p = &pkt->u.publish;
	int rc, late;

	rc = publish_flags(p, pkt->flags, version);
	if (rc)
		return rc;
	if (rd_lenstr(r, &p->topic))
		return CODEC_EMALFORMED;
	late = publish_topic(&p->topic, version);
	if (late == CODEC_EMALFORMED)
		return late;
	if (p->qos) {
		if (rd_u16(r, &p->packet_id))
			return CODEC_EMALFORMED;
		if (p->packet_id == 0)
			return CODEC_EPROTOCOL; /* [MQTT-2.2.1-3] */
	}
	rc = rd_props(r, version, PROPS_PUBLISH, &p->props);
	if (rc)
		return rc;
	p->payload = r->p + r->pos;
	p->payload_len = rd_left(r);
	r->pos = r->len;
	return late;
}

/*
 * MQTT 5 reason code and properties that may be cut short: absent means
 * success with no properties [MQTT-3.4.2.1], [3.14.2.1], [3.15.2.1].
 */
static int rd_reason_props(struct rd *r, enum props_ctx ctx, uint8_t *reason,
			   struct mqtt_props *props)
{
	memset(props, 0, sizeof(*props));
	*reason = MQTT_RC_SUCCESS;
	if (!rd_left(r))
		return 0;
	rd_u8(r, reason);
	if (!rd_left(r))
		return 0;
	return rd_props(r, MQTT_V5, ctx, props);
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
static int dec_ack(struct rd *r, uint8_t version, struct mqtt_packet *pkt)
{
	struct mqtt_ack *a = &pkt->u.ack;

	if (rd_u16(r, &a->packet_id))
		return CODEC_EMALFORMED;
	if (version < MQTT_V5)
		return 0;
	return rd_reason_props(r, PROPS_PUBACK, &a->reason, &a->props);
}

/* One SUBSCRIBE entry (3.8.3.1). Filter syntax errors go to *late. */
static int sub_entry(struct rd *r, uint8_t version, int *late)
{
	struct mqtt_str f;
	uint8_t o;

	if (rd_lenstr(r, &f) || rd_u8(r, &o))
		return CODEC_EMALFORMED;
	if (o & (version >= MQTT_V5 ? 0xc0 : 0xfc))
		return CODEC_EMALFORMED; /* [MQTT-3.8.3-5] (5), [MQTT-3-8.3-4] (3.1.1) */
	if ((o & MQTT_SUBOPT_QOS_MASK) == 3)
		return CODEC_EMALFORMED; /* [MQTT-3-8.3-4] */
	if ((o & MQTT_SUBOPT_RH_MASK) >> MQTT_SUBOPT_RH_SHIFT == 3)
		return CODEC_EPROTOCOL; /* 3.8.3.1: Retain Handling 3 */
	if (!topic_filter_valid(f.p, f.len)) {
		if (utf8_check(f.p, f.len))
			return CODEC_EMALFORMED; /* [MQTT-1.5.4-1] */
		note_err(late, CODEC_EFILTER);
		return 0;
	}
	if (version >= MQTT_V5 && (o & MQTT_SUBOPT_NO_LOCAL) && f.len >= 7 &&
	    !memcmp(f.p, "$share/", 7))
		return CODEC_EPROTOCOL; /* [MQTT-3.8.3-4] */
	return 0;
}

/* One UNSUBSCRIBE entry (3.10.3). */
static int unsub_entry(struct rd *r, uint8_t version, int *late)
{
	struct mqtt_str f;

	(void)version;
	if (rd_lenstr(r, &f))
		return CODEC_EMALFORMED;
	if (!topic_filter_valid(f.p, f.len)) {
		if (utf8_check(f.p, f.len))
			return CODEC_EMALFORMED; /* [MQTT-1.5.4-1] */
		note_err(late, CODEC_EFILTER);
	}
	return 0;
}

typedef int (*entry_fn)(struct rd *r, uint8_t version, int *late);

/*
 * The common part of SUBSCRIBE and UNSUBSCRIBE: packet identifier, properties,
 * then at least one entry [MQTT-3.8.3-3], [MQTT-3.10.3-2].
 */
static int dec_sub_common(struct rd *r, uint8_t version, enum props_ctx ctx, entry_fn entry,
			  uint16_t *pid, struct mqtt_props *props, const uint8_t **entries,
			  size_t *entries_len, size_t *count)
{
	int rc, late = 0;

	if (rd_u16(r, pid))
		return CODEC_EMALFORMED;
	if (*pid == 0)
		return CODEC_EPROTOCOL; /* [MQTT-2.2.1-3] */
	rc = rd_props(r, version, ctx, props);
	if (rc)
		return rc;
	*entries = r->p + r->pos;
	*entries_len = rd_left(r);
	for (*count = 0; rd_left(r); (*count)++) {
		rc = entry(r, version, &late);
		if (rc)
			return rc;
	}
	if (*count == 0)
		return CODEC_EPROTOCOL;
	return late;
}

static int dec_subscribe(struct rd *r, uint8_t version, struct mqtt_packet *pkt)
{
	struct mqtt_subscribe *s = &pkt->u.subscribe;

	return dec_sub_common(r, version, PROPS_SUBSCRIBE, sub_entry, &s->packet_id, &s->props,
			      &s->entries, &s->entries_len, &s->count);
}

static int dec_unsubscribe(struct rd *r, uint8_t version, struct mqtt_packet *pkt)
{
	struct mqtt_unsubscribe *u = &pkt->u.unsubscribe;

	return dec_sub_common(r, version, PROPS_UNSUBSCRIBE, unsub_entry, &u->packet_id, &u->props,
			      &u->entries, &u->entries_len, &u->count);
}

/* SUBACK and UNSUBACK (3.9, 3.11). */
static int dec_suback(struct rd *r, uint8_t version, struct mqtt_packet *pkt)
{
	struct mqtt_suback *s = &pkt->u.suback;
	int rc;

	if (rd_u16(r, &s->packet_id))
		return CODEC_EMALFORMED;
	if (pkt->type == MQTT_UNSUBACK && version < MQTT_V5)
		return 0;
	rc = rd_props(r, version, pkt->type == MQTT_SUBACK ? PROPS_SUBACK : PROPS_UNSUBACK,
		      &s->props);
	if (rc)
		return rc;
	s->reasons = r->p + r->pos;
	s->count = rd_left(r);
	r->pos = r->len;
	return s->count ? 0 : CODEC_EPROTOCOL;
}

/* PINGREQ, PINGRESP: nothing after the fixed header. */
static int dec_empty(struct rd *r, uint8_t version, struct mqtt_packet *pkt)
{
	(void)r;
	(void)version;
	(void)pkt;
	return 0;
}

static int dec_disconnect(struct rd *r, uint8_t version, struct mqtt_packet *pkt)
{
	struct mqtt_disconnect *d = &pkt->u.disconnect;

	if (version < MQTT_V5)
		return 0;
	return rd_reason_props(r, PROPS_DISCONNECT, &d->reason, &d->props);
}

static int dec_auth(struct rd *r, uint8_t version, struct mqtt_packet *pkt)
{
	struct mqtt_auth *a = &pkt->u.auth;

	if (version < MQTT_V5)
		return CODEC_EMALFORMED; /* type 15 is reserved before MQTT 5 */
	return rd_reason_props(r, PROPS_AUTH, &a->reason, &a->props);
}

typedef int (*dec_fn)(struct rd *r, uint8_t version, struct mqtt_packet *pkt);

static const dec_fn decoders[16] = {
	[MQTT_CONNECT] = dec_connect, [MQTT_CONNACK] = dec_connack,
	[MQTT_PUBLISH] = dec_publish, [MQTT_PUBACK] = dec_ack,
	[MQTT_PUBREC] = dec_ack,      [MQTT_PUBREL] = dec_ack,
	[MQTT_PUBCOMP] = dec_ack,     [MQTT_SUBSCRIBE] = dec_subscribe,
	[MQTT_SUBACK] = dec_suback,   [MQTT_UNSUBSCRIBE] = dec_unsubscribe,
	[MQTT_UNSUBACK] = dec_suback, [MQTT_PINGREQ] = dec_empty,
	[MQTT_PINGRESP] = dec_empty,  [MQTT_DISCONNECT] = dec_disconnect,
	[MQTT_AUTH] = dec_auth,
};

/* Fixed-header flags [MQTT-2.1.3-1]; PUBLISH flags are checked by its decoder. */
static int flags_check(uint8_t type, uint8_t flags)
{
	if (type == MQTT_PUBLISH)
		return 0;
	if (type == MQTT_PUBREL || type == MQTT_SUBSCRIBE || type == MQTT_UNSUBSCRIBE)
		return flags == 0x2 ? 0 : CODEC_EMALFORMED;
	return flags == 0 ? 0 : CODEC_EMALFORMED;
}

int codec_decode(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_packet *out)
{
	struct rd r;
	uint32_t rl;
	int n, rc;

	memset(out, 0, sizeof(*out));
	if (len < 2)
		return CODEC_EMALFORMED;
	out->type = pkt[0] >> 4;
	out->flags = pkt[0] & 0x0f;
	n = varint_read(pkt + 1, len - 1, &rl);
	if (n < 0 || rl != len - 1 - (size_t)n)
		return CODEC_EMALFORMED;
	if (!decoders[out->type])
		return CODEC_EMALFORMED; /* type 0 is reserved */
	rc = flags_check(out->type, out->flags);
	if (rc)
		return rc;
	r.p = pkt + 1 + n;
	r.len = rl;
	r.pos = 0;
	rc = decoders[out->type](&r, version, out);
	if (rc && rc != CODEC_ETOPIC && rc != CODEC_EFILTER)
		return rc;
	if (r.pos != r.len)
		return CODEC_EMALFORMED; /* trailing bytes */
	return rc;
}

int codec_subscribe_next(const struct mqtt_subscribe *s, size_t *pos, struct mqtt_str *filter,
			 uint8_t *options)
{
	struct rd r = { s->entries, s->entries_len, *pos };

	if (!s->entries || *pos >= s->entries_len)
		return 0;
	if (rd_lenstr(&r, filter) || rd_u8(&r, options)) {
		*pos = s->entries_len;
		return 0;
	}
	*pos = r.pos;
	return 1;
}

int codec_unsubscribe_next(const struct mqtt_unsubscribe *u, size_t *pos, struct mqtt_str *filter)
{
	struct rd r = { u->entries, u->entries_len, *pos };

	if (!u->entries || *pos >= u->entries_len)
		return 0;
	if (rd_lenstr(&r, filter)) {
		*pos = u->entries_len;
		return 0;
	}
	*pos = r.pos;
	return 1;
}

/* ---- encoding ------------------------------------------------------------- */

static uint8_t *w_u8(uint8_t *w, uint8_t v)
{
	*w = v;
	return w + 1;
}

static uint8_t *w_u16(uint8_t *w, uint16_t v)
{
	w[0] = (uint8_t)(v >> 8);
	w[1] = (uint8_t)v;
	return w + 2;
}

static uint8_t *w_varint(uint8_t *w, uint32_t v)
{
	do {
		*w = v & 0x7f;
		v >>= 7;
		if (v)
			*w |= 0x80;
		w++;
	} while (v);
	return w;
}

static uint8_t *w_bytes(uint8_t *w, const void *p, size_t n)
{
	if (n)
		memcpy(w, p, n);
	return w + n;
}

/* n <= 65535, checked by the caller. */
static uint8_t *w_str(uint8_t *w, const void *p, size_t n)
{
	return w_bytes(w_u16(w, (uint16_t)n), p, n);
}

/* Bytes a property block of n bytes takes with its length; too much when n cannot be encoded. */
static size_t props_size(uint8_t version, size_t n)
{
	if (version < MQTT_V5)
		return 0;
	if (n > MQTT_MAX_REMAINING_LENGTH)
		return (size_t)MQTT_MAX_REMAINING_LENGTH + 1;
	return (size_t)buf_varint_size((uint32_t)n) + n;
}

static uint8_t *w_props(uint8_t *w, uint8_t version, const uint8_t *p, size_t n)
{
	if (version < MQTT_V5)
		return w;
	return w_bytes(w_varint(w, (uint32_t)n), p, n);
}

/*
 * Reserves a whole packet of remaining length rl and writes its fixed
 * header. Returns where the body goes, or NULL (too long, out of memory).
 */
static uint8_t *pkt_begin(struct buf *out, uint8_t hdr, size_t rl)
{
	uint8_t *w;

	if (rl > MQTT_MAX_REMAINING_LENGTH)
		return NULL;
	if (buf_reserve(out, 1 + (size_t)buf_varint_size((uint32_t)rl) + rl))
		return NULL;
	w = out->data + out->len;
	w = w_u8(w, hdr);
	return w_varint(w, (uint32_t)rl);
}

static int pkt_end(struct buf *out, uint8_t *w)
{
	out->len = (size_t)(w - out->data);
	return 0;
}

static size_t connect_rl(const struct mqtt_connect *c, size_t name_len)
{
	size_t rl = 2 + name_len + 1 + 1 + 2 + props_size(c->version, c->props.raw_len);

	rl += 2 + (size_t)c->client_id.len;
	if (c->will)
		rl += props_size(c->version, c->will_props.raw_len) + 2 + c->will_topic.len + 2 +
		      c->will_payload.len;
	if (c->has_username)
		rl += 2 + (size_t)c->username.len;
	if (c->has_password)
		rl += 2 + (size_t)c->password.len;
	return rl;
}

static uint8_t connect_flags_byte(const struct mqtt_connect *c)
{
	uint8_t f = 0;

	if (c->clean_start)
		f |= CF_CLEAN;
	if (c->will) {
		f |= CF_WILL | (uint8_t)((c->will_qos & 3) << CF_WILL_QOS_SHIFT);
		if (c->will_retain)
			f |= CF_WILL_RETAIN;
	}
	if (c->has_password)
		f |= CF_PASSWORD;
	if (c->has_username)
		f |= CF_USERNAME;
	return f;
}

int codec_encode_connect(struct buf *out, const struct mqtt_connect *c)
{
	const char *name = c->version == MQTT_V31 ? "MQIsdp" : "MQTT";
	size_t nlen = strlen(name);
	uint8_t *w = pkt_begin(out, MQTT_CONNECT << 4, connect_rl(c, nlen));

	if (!w)
		return -1;
	w = w_str(w, name, nlen);
	w = w_u8(w, c->version);
	w = w_u8(w, connect_flags_byte(c));
	w = w_u16(w, c->keep_alive);
	w = w_props(w, c->version, c->props.raw, c->props.raw_len);
	w = w_str(w, c->client_id.p, c->client_id.len);
	if (c->will) {
		w = w_props(w, c->version, c->will_props.raw, c->will_props.raw_len);
		w = w_str(w, c->will_topic.p, c->will_topic.len);
		w = w_str(w, c->will_payload.p, c->will_payload.len);
	}
	if (c->has_username)
		w = w_str(w, c->username.p, c->username.len);
	if (c->has_password)
		w = w_str(w, c->password.p, c->password.len);
	return pkt_end(out, w);
}

int codec_encode_connack(struct buf *out, uint8_t version, const struct mqtt_connack *c)
{
	size_t rl = 2 + props_size(version, c->props.raw_len);
	uint8_t *w = pkt_begin(out, MQTT_CONNACK << 4, rl);

	if (!w)
		return -1;
	w = w_u8(w, c->session_present ? 1 : 0);
	w = w_u8(w, c->reason);
	w = w_props(w, version, c->props.raw, c->props.raw_len);
	return pkt_end(out, w);
}

int codec_encode_ack(struct buf *out, uint8_t version, uint8_t type, const struct mqtt_ack *a)
{
	bool full = version >= MQTT_V5 && (a->reason || a->props.raw_len);
	size_t rl = full ? 3 + props_size(version, a->props.raw_len) : 2;
	uint8_t *w;

	if (type < MQTT_PUBACK || type > MQTT_PUBCOMP)
		return -1;
	w = pkt_begin(out, (uint8_t)(type << 4 | (type == MQTT_PUBREL ? 2 : 0)), rl);
	if (!w)
		return -1;
	w = w_u16(w, a->packet_id);
	if (full) {
		w = w_u8(w, a->reason);
		w = w_props(w, version, a->props.raw, a->props.raw_len);
	}
	return pkt_end(out, w);
}

/* Sum of 2 + strlen + extra over the filters, or too much when one is too long. */
static size_t filters_size(const char *const *filters, size_t count, size_t extra)
{
	size_t i, n, sum = 0;

	for (i = 0; i < count; i++) {
		n = strlen(filters[i]);
		if (n > 65535)
			return (size_t)MQTT_MAX_REMAINING_LENGTH + 1;
		sum += 2 + n + extra;
		if (sum > MQTT_MAX_REMAINING_LENGTH)
			return sum;
	}
	return sum;
}

int codec_encode_subscribe(struct buf *out, uint8_t version, uint16_t packet_id,
			   const uint8_t *props, size_t props_len, const char *const *filters,
			   const uint8_t *options, size_t count)
{
	size_t i, rl = 2 + props_size(version, props_len) + filters_size(filters, count, 1);
	uint8_t *w = pkt_begin(out, MQTT_SUBSCRIBE << 4 | 2, rl);

	if (!w)
		return -1;
	w = w_u16(w, packet_id);
	w = w_props(w, version, props, props_len);
	for (i = 0; i < count; i++) {
		w = w_str(w, filters[i], strlen(filters[i]));
		w = w_u8(w, options[i]);
	}
	return pkt_end(out, w);
}

int codec_encode_unsubscribe(struct buf *out, uint8_t version, uint16_t packet_id,
			     const uint8_t *props, size_t props_len, const char *const *filters,
			     size_t count)
{
	size_t i, rl = 2 + props_size(version, props_len) + filters_size(filters, count, 0);
	uint8_t *w = pkt_begin(out, MQTT_UNSUBSCRIBE << 4 | 2, rl);

	if (!w)
		return -1;
	w = w_u16(w, packet_id);
	w = w_props(w, version, props, props_len);
	for (i = 0; i < count; i++)
		w = w_str(w, filters[i], strlen(filters[i]));
	return pkt_end(out, w);
}

int codec_encode_suback(struct buf *out, uint8_t version, uint8_t type, const struct mqtt_suback *s)
{
	bool bare = type == MQTT_UNSUBACK && version < MQTT_V5; /* 3.1.1 UNSUBACK */
	size_t rl = bare ? 2 : 2 + props_size(version, s->props.raw_len) + s->count;
	uint8_t *w;

	if (type != MQTT_SUBACK && type != MQTT_UNSUBACK)
		return -1;
	w = pkt_begin(out, (uint8_t)(type << 4), rl);
	if (!w)
		return -1;
	w = w_u16(w, s->packet_id);
	if (!bare) {
		w = w_props(w, version, s->props.raw, s->props.raw_len);
		w = w_bytes(w, s->reasons, s->count);
	}
	return pkt_end(out, w);
}

int codec_encode_empty(struct buf *out, uint8_t type)
{
	uint8_t *w;

	if (type != MQTT_PINGREQ && type != MQTT_PINGRESP)
		return -1;
	w = pkt_begin(out, (uint8_t)(type << 4), 0);
	return w ? pkt_end(out, w) : -1;
}

/* DISCONNECT and AUTH: reason and properties, both omitted when 0 and empty. */
static int encode_reason_props(struct buf *out, uint8_t hdr, bool v5, uint8_t reason,
			       const struct mqtt_props *props)
{
	bool full = v5 && (reason || props->raw_len);
	uint8_t *w = pkt_begin(out, hdr, full ? 1 + props_size(MQTT_V5, props->raw_len) : 0);

	if (!w)
		return -1;
	if (full) {
		w = w_u8(w, reason);
		w = w_props(w, MQTT_V5, props->raw, props->raw_len);
	}
	return pkt_end(out, w);
}

int codec_encode_disconnect(struct buf *out, uint8_t version, const struct mqtt_disconnect *d)
{
	return encode_reason_props(out, MQTT_DISCONNECT << 4, version >= MQTT_V5, d->reason,
				   &d->props);
}

int codec_encode_auth(struct buf *out, const struct mqtt_auth *a)
{
	return encode_reason_props(out, MQTT_AUTH << 4, true, a->reason, &a->props);
}

static size_t publish_rl(uint8_t version, size_t topic_len, uint8_t qos, size_t props_len,
			 size_t payload_len)
{
	if (topic_len > 65535 || payload_len > MQTT_MAX_REMAINING_LENGTH)
		return (size_t)MQTT_MAX_REMAINING_LENGTH + 1;
	return 2 + topic_len + (qos ? 2 : 0) + props_size(version, props_len) + payload_len;
}

int codec_encode_publish(struct buf *out, uint8_t version, const char *topic, size_t topic_len,
			 uint8_t qos, bool retain, bool dup, uint16_t packet_id,
			 const uint8_t *props, size_t props_len, const uint8_t *payload,
			 size_t payload_len)
{
	uint8_t hdr = (uint8_t)(MQTT_PUBLISH << 4 | (dup ? 8 : 0) | qos << 1 | (retain ? 1 : 0));
	uint8_t *w;

	if (qos > 2)
		return -1;
	w = pkt_begin(out, hdr, publish_rl(version, topic_len, qos, props_len, payload_len));
	if (!w)
		return -1;
	w = w_str(w, topic, topic_len);
	if (qos)
		w = w_u16(w, packet_id);
	w = w_props(w, version, props, props_len);
	w = w_bytes(w, payload, payload_len);
	return pkt_end(out, w);
}

size_t codec_publish_size(uint8_t version, size_t topic_len, uint8_t qos, size_t props_len,
			  size_t payload_len)
{
	size_t rl = publish_rl(version, topic_len, qos, props_len, payload_len);

	if (rl > MQTT_MAX_REMAINING_LENGTH)
		return 0; /* codec_encode_publish would fail */
	return 1 + (size_t)buf_varint_size((uint32_t)rl) + rl;
}
