/*
 * fuzz_codec.c - libFuzzer target for codec_decode() and the encoders.
 *
 * Input: the first byte picks the connection's protocol level (MQTT 3.1,
 * 3.1.1 or 5.0; CONNECT ignores it and carries its own), the rest is one
 * whole packet as the framer would deliver it.
 *
 * Beyond "no crash", a packet that decodes (or decodes with only the late
 * errors CODEC_ETOPIC / CODEC_EFILTER, which leave the struct filled in) is
 * re-encoded with the encoder of its type and decoded again:
 *
 *   - the encoder must succeed (every field came from a packet that fit);
 *   - the second decode returns the same code and the same fields, compared
 *     through a fingerprint that serialises every field by value;
 *   - the encoding is byte-identical to the input, except where MQTT 5 lets
 *     a sender omit a zero reason code and empty properties, or the property
 *     length alone (acks, DISCONNECT, AUTH): shorter, or one byte longer;
 *   - codec_publish_size() agrees with what codec_encode_publish() wrote;
 *   - the same packet minus its last byte never decodes.
 */
#include <stdbool.h>
#include <string.h>

#include "codec.h"
#include "fuzz.h"

/* ---- fingerprints: every decoded field, by value ---------------------- */

static void fp_u32(struct buf *b, uint32_t v)
{
	fuzz_check(buf_put_u32(b, v) == 0);
}

static void fp_bytes(struct buf *b, const void *p, size_t n)
{
	fp_u32(b, (uint32_t)n);
	fuzz_check(buf_put(b, p, n) == 0);
}

static void fp_str(struct buf *b, const struct mqtt_str *s)
{
	fp_bytes(b, s->p, s->len);
}

static void fp_bin(struct buf *b, const struct mqtt_bin *s)
{
	fp_bytes(b, s->p, s->len);
}

/* The raw block determines every decoded property value. */
static void fp_props(struct buf *b, const struct mqtt_props *p)
{
	fp_bytes(b, p->raw, p->raw_len);
}

static void fp_connect(struct buf *b, const struct mqtt_connect *c)
{
	fp_u32(b, c->version);
	fp_u32(b, c->clean_start);
	fp_u32(b, c->keep_alive);
	fp_props(b, &c->props);
	fp_str(b, &c->client_id);
	fp_u32(b, c->will);
	fp_u32(b, c->will_qos);
	fp_u32(b, c->will_retain);
	fp_props(b, &c->will_props);
	fp_str(b, &c->will_topic);
	fp_bin(b, &c->will_payload);
	fp_u32(b, c->has_username);
	fp_u32(b, c->has_password);
	fp_str(b, &c->username);
	fp_bin(b, &c->password);
}

static void fp_publish(struct buf *b, const struct mqtt_publish *p)
{
	fp_u32(b, p->qos);
	fp_u32(b, p->dup);
	fp_u32(b, p->retain);
	fp_str(b, &p->topic);
	fp_u32(b, p->packet_id);
	fp_props(b, &p->props);
	fp_bytes(b, p->payload, p->payload_len);
}

static void fp_subscribe(struct buf *b, const struct mqtt_subscribe *s)
{
	struct mqtt_str f;
	size_t pos = 0, n = 0;
	uint8_t o;

	fp_u32(b, s->packet_id);
	fp_props(b, &s->props);
	while (codec_subscribe_next(s, &pos, &f, &o)) {
		fp_str(b, &f);
		fp_u32(b, o);
		n++;
	}
	fuzz_check(n == s->count);
}

static void fp_unsubscribe(struct buf *b, const struct mqtt_unsubscribe *u)
{
	struct mqtt_str f;
	size_t pos = 0, n = 0;

	fp_u32(b, u->packet_id);
	fp_props(b, &u->props);
	while (codec_unsubscribe_next(u, &pos, &f)) {
		fp_str(b, &f);
		n++;
	}
	fuzz_check(n == u->count);
}

static void fingerprint(struct buf *b, const struct mqtt_packet *p)
{
	fp_u32(b, p->type);
	fp_u32(b, p->flags);
	switch (p->type) {
	case MQTT_CONNECT:
		fp_connect(b, &p->u.connect);
		break;
	case MQTT_CONNACK:
		fp_u32(b, p->u.connack.session_present);
		fp_u32(b, p->u.connack.reason);
		fp_props(b, &p->u.connack.props);
		break;
	case MQTT_PUBLISH:
		fp_publish(b, &p->u.publish);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		fp_u32(b, p->u.ack.packet_id);
		fp_u32(b, p->u.ack.reason);
		fp_props(b, &p->u.ack.props);
		break;
	case MQTT_SUBSCRIBE:
		fp_subscribe(b, &p->u.subscribe);
		break;
	case MQTT_UNSUBSCRIBE:
		fp_unsubscribe(b, &p->u.unsubscribe);
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		fp_u32(b, p->u.suback.packet_id);
		fp_props(b, &p->u.suback.props);
		fp_bytes(b, p->u.suback.reasons, p->u.suback.count);
		break;
	case MQTT_DISCONNECT:
		fp_u32(b, p->u.disconnect.reason);
		fp_props(b, &p->u.disconnect.props);
		break;
	case MQTT_AUTH:
		fp_u32(b, p->u.auth.reason);
		fp_props(b, &p->u.auth.props);
		break;
	}
}

/* ---- re-encoding --------------------------------------------------------- */

/* The (UN)SUBSCRIBE encoders take NUL-terminated filters: copy them out. */
struct filters {
	char **v;
	uint8_t *opts;
	size_t n;
};

static void filters_add(struct filters *fs, const struct mqtt_str *f, uint8_t opt)
{
	char *s = malloc((size_t)f->len + 1);

	fuzz_check(s != NULL);
	memcpy(s, f->p, f->len);
	s[f->len] = '\0';
	/* The decoder rejected NUL (UTF-8 rule), so strlen() sees the whole filter. */
	fuzz_check(strlen(s) == f->len);
	fs->v[fs->n] = s;
	fs->opts[fs->n++] = opt;
}

static void filters_init(struct filters *fs, size_t count)
{
	fs->v = calloc(count ? count : 1, sizeof(*fs->v));
	fs->opts = calloc(count ? count : 1, 1);
	fs->n = 0;
	fuzz_check(fs->v && fs->opts);
}

static void filters_free(struct filters *fs)
{
	for (size_t i = 0; i < fs->n; i++)
		free(fs->v[i]);
	free(fs->v);
	free(fs->opts);
}

static int encode_subscribe(struct buf *out, uint8_t version, const struct mqtt_subscribe *s)
{
	struct filters fs;
	struct mqtt_str f;
	size_t pos = 0;
	uint8_t o;
	int rc;

	filters_init(&fs, s->count);
	while (codec_subscribe_next(s, &pos, &f, &o))
		filters_add(&fs, &f, o);
	rc = codec_encode_subscribe(out, version, s->packet_id, s->props.raw, s->props.raw_len,
				    (const char *const *)fs.v, fs.opts, fs.n);
	filters_free(&fs);
	return rc;
}

static int encode_unsubscribe(struct buf *out, uint8_t version, const struct mqtt_unsubscribe *u)
{
	struct filters fs;
	struct mqtt_str f;
	size_t pos = 0;
	int rc;

	filters_init(&fs, u->count);
	while (codec_unsubscribe_next(u, &pos, &f))
		filters_add(&fs, &f, 0);
	rc = codec_encode_unsubscribe(out, version, u->packet_id, u->props.raw, u->props.raw_len,
				      (const char *const *)fs.v, fs.n);
	filters_free(&fs);
	return rc;
}

static int encode_publish(struct buf *out, uint8_t version, const struct mqtt_publish *p)
{
	size_t before = out->len;
	int rc;

	rc = codec_encode_publish(out, version, p->topic.p, p->topic.len, p->qos, p->retain, p->dup,
				  p->packet_id, p->props.raw, p->props.raw_len, p->payload,
				  p->payload_len);
	if (rc == 0)
		fuzz_check(codec_publish_size(version, p->topic.len, p->qos, p->props.raw_len,
					      p->payload_len) == out->len - before);
	return rc;
}

static int encode(struct buf *out, uint8_t version, const struct mqtt_packet *p)
{
	switch (p->type) {
	case MQTT_CONNECT:
		return codec_encode_connect(out, &p->u.connect);
	case MQTT_CONNACK:
		return codec_encode_connack(out, version, &p->u.connack);
	case MQTT_PUBLISH:
		return encode_publish(out, version, &p->u.publish);
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		return codec_encode_ack(out, version, p->type, &p->u.ack);
	case MQTT_SUBSCRIBE:
		return encode_subscribe(out, version, &p->u.subscribe);
	case MQTT_UNSUBSCRIBE:
		return encode_unsubscribe(out, version, &p->u.unsubscribe);
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		return codec_encode_suback(out, version, p->type, &p->u.suback);
	case MQTT_PINGREQ:
	case MQTT_PINGRESP:
		return codec_encode_empty(out, p->type);
	case MQTT_DISCONNECT:
		return codec_encode_disconnect(out, version, &p->u.disconnect);
	case MQTT_AUTH:
		return codec_encode_auth(out, &p->u.auth);
	}
	return -1;
}

/*
 * MQTT 5 packets whose tail is optional: a zero reason code with empty
 * properties may be left out, and so may the property length alone
 * [3.4.2.2.1, 3.14.2.2.1, 3.15.2.2.1]. The encoders omit both or neither, so
 * their output may be shorter than the input, or one byte longer.
 */
static bool may_vary(uint8_t version, uint8_t type)
{
	if (version < MQTT_V5)
		return false;
	return (type >= MQTT_PUBACK && type <= MQTT_PUBCOMP) || type == MQTT_DISCONNECT ||
	       type == MQTT_AUTH;
}

static void round_trip(const uint8_t *pkt, size_t len, uint8_t version,
		       const struct mqtt_packet *p, int rc)
{
	struct buf enc, fp1, fp2;
	struct mqtt_packet q;
	int rc2;

	buf_init(&enc);
	buf_init(&fp1);
	buf_init(&fp2);
	fuzz_check(encode(&enc, version, p) == 0);
	if (may_vary(version, p->type))
		fuzz_check(enc.len <= len + 1);
	else
		fuzz_check(enc.len == len && memcmp(enc.data, pkt, len) == 0);
	rc2 = codec_decode(enc.data, enc.len, version, &q);
	fuzz_check(rc2 == rc);
	fingerprint(&fp1, p);
	fingerprint(&fp2, &q);
	fuzz_check(fp1.len == fp2.len && memcmp(fp1.data, fp2.data, fp1.len) == 0);
	buf_free(&enc);
	buf_free(&fp1);
	buf_free(&fp2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t versions[4] = { MQTT_V31, MQTT_V311, MQTT_V5, MQTT_V5 };
	struct mqtt_packet p;
	uint8_t version;
	uint8_t *pkt;
	int rc;

	if (size < 1)
		return 0;
	version = versions[data[0] & 3];
	/* An exact-size copy, so that ASan sees any read past the packet. */
	pkt = malloc(size - 1 ? size - 1 : 1);
	fuzz_check(pkt != NULL);
	memcpy(pkt, data + 1, size - 1);
	rc = codec_decode(pkt, size - 1, version, &p);
	fuzz_check(rc <= 0 && rc >= CODEC_EFILTER);
	if (rc == CODEC_OK || rc == CODEC_ETOPIC || rc == CODEC_EFILTER) {
		round_trip(pkt, size - 1, version, &p, rc);
		fuzz_check(codec_decode(pkt, size - 2, version, &p) == CODEC_EMALFORMED);
	}
	free(pkt);
	return 0;
}
