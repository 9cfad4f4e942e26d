/*
 * proto_subscribe.c - SUBSCRIBE and UNSUBSCRIBE.
 *
 * Every filter of a SUBSCRIBE gets its own reason code [MQTT-3.9.3-1]; the
 * SUBACK goes out before the retained messages the new subscriptions bring
 * [MQTT-3.8.4-4], so a client sees its acknowledgement first. The codec has
 * already checked filter syntax and option bits; what needs broker state
 * (maximum QoS, what already existed) is decided here.
 */
#include <string.h>

#include "broker.h"
#include "codec.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "plugin.h"
#include "proto.h"
#include "router.h"
#include "session.h"
#include "utf8.h"

/* One SUBSCRIBE entry, remembered between the SUBACK and the retained sends. */
struct sub_result {
	const char *filter;
	uint16_t len;
	uint8_t options;
	bool existed;
};

static uint8_t subscribe_one(struct session *s, const char *f, size_t len, uint8_t *options,
			     uint32_t subid, bool *existed)
{
	uint8_t qos = *options & MQTT_SUBOPT_QOS_MASK, refused;

	if (qos > broker.cfg->max_qos) {
		/* [MQTT-3.2.2-10] grant no more than our maximum QoS. */
		qos = broker.cfg->max_qos;
		*options = (uint8_t)((*options & ~MQTT_SUBOPT_QOS_MASK) | qos);
	}
	refused = plugin_subscribe(s, f, len, qos);
	if (refused) {
		log_notice("client '%s': subscription to '%.*s' refused by a plugin (0x%02x)",
			   s->client_id, (int)len, f, refused);
		return refused;
	}
	if (session_subscribe(s, f, len, *options, subid, existed)) {
		log_warn("client '%s': subscription to '%.*s' failed: out of memory",
			 s->client_id, (int)len, f);
		return MQTT_RC_UNSPECIFIED;
	}
	log_info("client '%s' subscribed to '%.*s' (QoS %u)", s->client_id, (int)len, f, qos);
	return qos;
}

static void send_retained(struct session *s, const struct sub_result *r, uint32_t subid)
{
	uint8_t rh = (r->options & MQTT_SUBOPT_RH_MASK) >> MQTT_SUBOPT_RH_SHIFT;
	const char *g, *f;
	size_t gl, fl;

	/* [MQTT-3.3.1-9, -10] retain handling 0: always, 1: new only, 2: never. */
	if (rh == 2 || (rh == 1 && r->existed))
		return;
	/* Retained messages are not sent to shared subscriptions [MQTT-4.8.2-?]. */
	if (topic_share_split(r->filter, r->len, &g, &gl, &f, &fl))
		return;
	router_send_retained(s, r->filter, r->len, r->options, subid);
}

int proto_subscribe(struct conn *c, const struct mqtt_subscribe *p)
{
	struct session *s = c->session;
	uint32_t subid = 0;
	struct sub_result *res;
	struct mqtt_suback ack;
	struct mqtt_str filter;
	uint8_t *codes, options;
	size_t pos = 0, i = 0;

	if (c->version == MQTT_V5 && (p->props.present & PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID)))
		subid = p->props.subscription_id;
	res = mem_alloc(p->count * (sizeof(*res) + 1));
	if (!res) {
		conn_close(c, MQTT_RC_SERVER_BUSY, "out of memory handling SUBSCRIBE");
		return -1;
	}
	codes = (uint8_t *)(res + p->count);
	while (i < p->count && codec_subscribe_next(p, &pos, &filter, &options)) {
		res[i].filter = filter.p;
		res[i].len = filter.len;
		codes[i] = subscribe_one(s, filter.p, filter.len, &options, subid, &res[i].existed);
		/* [MQTT-3.9.3-2] 3.1.1 knows one failure code. */
		if (c->version != MQTT_V5 && codes[i] >= 0x80)
			codes[i] = 0x80;
		res[i].options = options;
		i++;
	}
	memset(&ack, 0, sizeof(ack));
	ack.packet_id = p->packet_id;
	ack.reasons = codes;
	ack.count = i;
	if (!codec_encode_suback(&c->out, c->version, MQTT_SUBACK, &ack))
		conn_flush(c);
	for (pos = 0; pos < i; pos++)
		if (codes[pos] < 0x80)
			send_retained(s, &res[pos], subid);
	mem_free(res);
	return 0;
}

int proto_unsubscribe(struct conn *c, const struct mqtt_unsubscribe *p)
{
	struct session *s = c->session;
	struct mqtt_suback ack;
	struct mqtt_str filter;
	uint8_t *codes;
	size_t pos = 0, i = 0;

	codes = mem_alloc(p->count);
	if (!codes) {
		conn_close(c, MQTT_RC_SERVER_BUSY, "out of memory handling UNSUBSCRIBE");
		return -1;
	}
	while (i < p->count && codec_unsubscribe_next(p, &pos, &filter)) {
		/* [MQTT-3.11.3-1] 0x11 when there was no such subscription. */
		codes[i] = session_unsubscribe(s, filter.p, filter.len)
				   ? MQTT_RC_NO_SUBSCRIPTION_EXISTED
				   : MQTT_RC_SUCCESS;
		if (codes[i++] == MQTT_RC_SUCCESS)
			plugin_unsubscribe(s, filter.p, filter.len);
		log_info("client '%s' unsubscribed from '%.*s'", s->client_id, (int)filter.len,
			 filter.p);
	}
	memset(&ack, 0, sizeof(ack));
	ack.packet_id = p->packet_id;
	ack.reasons = codes;
	ack.count = i;
	if (!codec_encode_suback(&c->out, c->version, MQTT_UNSUBACK, &ack))
		conn_flush(c);
	mem_free(codes);
	return 0;
}
