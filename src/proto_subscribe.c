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

#include "base.h"
#include "codec.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "plugin.h"
#include "proto.h"
#include "router.h"
#include "session.h"
#include "store.h"
#include "topic.h"

/* One SUBSCRIBE entry, remembered between the SUBACK and the retained sends. */
struct sub_result {
	char *filter; /* a copy: the reply may outlive the packet */
	uint16_t len;
	uint8_t options;
	bool existed;
};

/*
 * A SUBACK or UNSUBACK (and, for SUBACK, the retained messages after it),
 * sent once the subscriptions it reports are stored [MQTT-3.8.4-?]: DESIGN.md,
 * a SUBACK comes after the subscription is stored.
 */
struct sub_reply {
	struct conn *c;
	uint8_t type; /* MQTT_SUBACK or MQTT_UNSUBACK */
	uint16_t packet_id;
	uint32_t subid;
	size_t count;
	uint8_t *codes;
	struct sub_result *res;
};

static struct sub_reply *reply_new(struct conn *c, uint8_t type, uint16_t packet_id, size_t n)
{
	struct sub_reply *r = mem_calloc(1, sizeof(*r) + n * (sizeof(struct sub_result) + 1));

	if (!r)
		return NULL;
	r->c = conn_ref(c);
	r->type = type;
	r->packet_id = packet_id;
	r->res = (struct sub_result *)(r + 1);
	r->codes = (uint8_t *)(r->res + n);
	return r;
}

static void reply_free(struct sub_reply *r)
{
	size_t i;

	for (i = 0; i < r->count; i++)
		mem_free(r->res[i].filter);
	conn_unref(r->c);
	mem_free(r);
}

/*
 * Beyond mosquitto (which grants every SUBSCRIBE and filters deliveries): a
 * filter the ACL lets the client read nothing of is refused. Deliveries
 * are checked one by one anyway (router.c).
 */
static bool may_read_any(const struct session *s, const char *f, size_t len)
{
	const char *g, *sf;
	size_t gl, sfl;

	if (!plugin_acl_active())
		return true;
	if (topic_share_split(f, len, &g, &gl, &sf, &sfl)) {
		f = sf;
		len = sfl;
	}
	return plugin_acl(s->realm, s->client_id, s->username, f, len, SP_ACL_SUBSCRIBE, NULL);
}

static uint8_t subscribe_one(struct session *s, const char *f, size_t len, uint8_t *options,
			     uint32_t subid, bool *existed)
{
	uint8_t qos = *options & MQTT_SUBOPT_QOS_MASK, refused;

	if (qos > base.cfg->max_qos) {
		/* [MQTT-3.2.2-10] grant no more than our maximum QoS. */
		qos = base.cfg->max_qos;
		*options = (uint8_t)((*options & ~MQTT_SUBOPT_QOS_MASK) | qos);
	}
	if (!may_read_any(s, f, len)) {
		log_notice(
			"client '%s'%s%s%s: subscription to '%.*s' denied by the ACL (it may read "
			"nothing of it)",
			s->client_id, s->username ? " (username '" : "",
			s->username ? s->username : "", s->username ? "')" : "", (int)len, f);
		return MQTT_RC_NOT_AUTHORIZED;
	}
	refused = plugin_subscribe(s, f, len, qos);
	if (refused) {
		log_notice("client '%s': subscription to '%.*s' refused by a plugin (0x%02x)",
			   s->client_id, (int)len, f, refused);
		return refused;
	}
	if (session_subscribe(s, f, len, *options, subid, existed)) {
		log_warn("client '%s': subscription to '%.*s' failed: out of memory", s->client_id,
			 (int)len, f);
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

/* The subscriptions could not be stored: undo them and report failure. */
static void subscribe_failed(struct sub_reply *r, struct session *s)
{
	size_t i;

	log_warn("client '%s': subscriptions could not be stored; refused", s->client_id);
	for (i = 0; i < r->count; i++) {
		if (r->codes[i] < 0x80 && r->type == MQTT_SUBACK)
			session_unsubscribe(s, r->res[i].filter, r->res[i].len);
		r->codes[i] = MQTT_RC_UNSPECIFIED;
	}
}

static void reply_send(void *arg, int status)
{
	struct sub_reply *r = arg;
	struct conn *c = r->c;
	struct mqtt_suback ack;
	struct buf *out;
	size_t i;

	if (conn_usable(c) && c->session) {
		if (status)
			subscribe_failed(r, c->session);
		memset(&ack, 0, sizeof(ack));
		ack.packet_id = r->packet_id;
		ack.reasons = r->codes;
		ack.count = r->count;
		out = conn_out(c);
		if (!out || codec_encode_suback(out, c->version, r->type, &ack)) {
			/* The client would wait for the acknowledgement forever. */
			conn_close(c, MQTT_RC_SERVER_BUSY,
				   r->type == MQTT_SUBACK ? "out of memory for a SUBACK"
							  : "out of memory for an UNSUBACK");
			reply_free(r);
			return;
		}
		conn_flush(c);
		for (i = 0; r->type == MQTT_SUBACK && i < r->count; i++)
			if (r->codes[i] < 0x80)
				send_retained(c->session, &r->res[i], r->subid);
	}
	reply_free(r);
}

int proto_subscribe(struct conn *c, const struct mqtt_subscribe *p)
{
	struct session *s = c->session;
	struct sub_reply *r = reply_new(c, MQTT_SUBACK, p->packet_id, p->count);
	struct mqtt_str filter;
	uint8_t options;
	size_t pos = 0;

	if (!r) {
		conn_close(c, MQTT_RC_SERVER_BUSY, "out of memory handling SUBSCRIBE");
		return -1;
	}
	if (c->version == MQTT_V5 && (p->props.present & PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID)))
		r->subid = p->props.subscription_id;
	while (r->count < p->count && codec_subscribe_next(p, &pos, &filter, &options)) {
		struct sub_result *x = &r->res[r->count];
		uint8_t code;

		x->filter = mem_strndup(filter.p, filter.len);
		x->len = filter.len;
		code = x->filter ? subscribe_one(s, filter.p, filter.len, &options, r->subid,
						 &x->existed)
				 : MQTT_RC_UNSPECIFIED;
		/* [MQTT-3.9.3-2] 3.1.1 knows one failure code. */
		r->codes[r->count++] = c->version != MQTT_V5 && code >= 0x80 ? 0x80 : code;
		x->options = options;
	}
	store_after_commit(reply_send, r);
	return 0;
}

int proto_unsubscribe(struct conn *c, const struct mqtt_unsubscribe *p)
{
	struct session *s = c->session;
	struct sub_reply *r = reply_new(c, MQTT_UNSUBACK, p->packet_id, p->count);
	struct mqtt_str filter;
	size_t pos = 0;

	if (!r) {
		conn_close(c, MQTT_RC_SERVER_BUSY, "out of memory handling UNSUBSCRIBE");
		return -1;
	}
	while (r->count < p->count && codec_unsubscribe_next(p, &pos, &filter)) {
		/* [MQTT-3.11.3-1] 0x11 when there was no such subscription. */
		uint8_t code = session_unsubscribe(s, filter.p, filter.len)
				       ? MQTT_RC_NO_SUBSCRIPTION_EXISTED
				       : MQTT_RC_SUCCESS;

		if (code == MQTT_RC_SUCCESS)
			plugin_unsubscribe(s, filter.p, filter.len);
		log_info("client '%s' unsubscribed from '%.*s'", s->client_id, (int)filter.len,
			 filter.p);
		r->codes[r->count++] = code;
	}
	store_after_commit(reply_send, r);
	return 0;
}
