/*
 * proto_publish.c - PUBLISH from a client and the QoS 1/2 acknowledgement
 * flows in both directions.
 *
 * Inbound QoS 2 follows the spec's "method B" [MQTT-4.3.3-?]: the message is
 * routed when the PUBLISH arrives and its packet id is remembered until
 * PUBREL; a PUBLISH that repeats a remembered id is answered with PUBREC
 * again and not routed again, so a resent PUBLISH never duplicates a
 * delivery [MQTT-4.3.3-10].
 *
 * A message is checked in this order: QoS and retain against what the
 * broker offers, receive maximum, topic alias, memory_limit, payload
 * format, then built and routed. Problems with the packet end the
 * connection; problems with the message (payload format) are answered in
 * the acknowledgement.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "base.h"
#include "clock.h"
#include "codec.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "msg.h"
#include "props.h"
#include "proto.h"
#include "plugin.h"
#include "router.h"
#include "session.h"
#include "store.h"
#include "utf8.h"

struct msg *proto_build_msg(const char *sender, const char *topic, size_t topic_len,
			    const uint8_t *payload, size_t payload_len, uint8_t qos, bool retain,
			    const struct mqtt_props *props)
{
	struct buf *fwd = &base.scratch;
	struct msg_spec spec;

	buf_reset(fwd);
	if (props->raw_len && props_copy_forward(fwd, props))
		return NULL;
	memset(&spec, 0, sizeof(spec));
	spec.topic = topic;
	spec.topic_len = topic_len;
	spec.payload = payload;
	spec.payload_len = payload_len;
	spec.props = fwd->data;
	spec.props_len = fwd->len;
	spec.qos = qos;
	spec.retain = retain;
	spec.sender = sender;
	if (props->present & PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY)) {
		spec.expiry_interval = props->message_expiry;
		spec.expiry_wall_ms = clock_wall_ms() + (uint64_t)props->message_expiry * 1000;
	}
	return msg_new(&spec);
}

/* Resolves the topic of a PUBLISH through its topic alias [MQTT-3.3.2-12]. */
static int resolve_topic(struct conn *c, const struct mqtt_publish *p, const char **topic,
			 size_t *len)
{
	uint16_t alias = p->props.topic_alias;

	*topic = p->topic.p;
	*len = p->topic.len;
	if (c->version != MQTT_V5 || !(p->props.present & PROP_BIT(MQTT_PROP_TOPIC_ALIAS))) {
		if (*len)
			return 0;
		conn_close(c, MQTT_RC_PROTOCOL_ERROR, "PUBLISH without topic or alias");
		return -1;
	}
	if (!alias || alias > base.cfg->max_topic_alias) {
		/* [MQTT-3.3.2-9, -10] alias 0 or above our Topic Alias Maximum. */
		conn_close(c, MQTT_RC_TOPIC_ALIAS_INVALID, "topic alias out of range");
		return -1;
	}
	if (*len) {
		if (conn_alias_set(c, alias, *topic, *len)) {
			conn_close(c, MQTT_RC_SERVER_BUSY, "out of memory for a topic alias");
			return -1;
		}
		return 0;
	}
	*topic = conn_alias_get(c, alias);
	if (!*topic) {
		conn_close(c, MQTT_RC_PROTOCOL_ERROR, "topic alias used before it was set");
		return -1;
	}
	*len = strlen(*topic);
	return 0;
}

static int check_publish(struct conn *c, const struct mqtt_publish *p)
{
	if (p->qos > base.cfg->max_qos) {
		/* [MQTT-3.2.2-11] QoS above the Maximum QoS we announced. */
		conn_close(c, MQTT_RC_QOS_NOT_SUPPORTED, "PUBLISH QoS above max_qos");
		return -1;
	}
	if (p->retain && !base.cfg->retain_available) {
		/* [MQTT-3.2.2-14] */
		conn_close(c, MQTT_RC_RETAIN_NOT_SUPPORTED, "retained PUBLISH not available");
		return -1;
	}
	if (c->version == MQTT_V5 && (p->props.present & PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID))) {
		/* [MQTT-3.3.4-6] only the server sends subscription identifiers. */
		conn_close(c, MQTT_RC_PROTOCOL_ERROR, "PUBLISH with a subscription identifier");
		return -1;
	}
	/* [MQTT-3.3.4-9] more unacknowledged QoS 2 than our Receive Maximum. MQTT
	 * 3.1.1 has no Receive Maximum: there the 65535 packet ids are the bound. */
	if (c->version == MQTT_V5 && p->qos == 2 && !outq_rx_has(&c->session->q, p->packet_id) &&
	    outq_rx_count(&c->session->q) >= base.cfg->max_inflight_messages) {
		conn_close(c, MQTT_RC_RECEIVE_MAX_EXCEEDED, "receive maximum exceeded");
		return -1;
	}
	return 0;
}

static bool payload_format_ok(const struct mqtt_publish *p)
{
	if (!(p->props.present & PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT)) ||
	    p->props.payload_format != 1)
		return true;
	return utf8_check((const char *)p->payload, p->payload_len) == 0;
}

/* An acknowledgement waiting for the commit of what it acknowledges. */
struct pending_ack {
	struct conn *c;
	uint8_t type, reason;
	uint16_t packet_id;
	char *why;
	struct buf extra;
};

/*
 * What was acknowledged could not be stored: it is not acknowledged as a
 * success. MQTT 5 hears why (0x97 when the disk or persistence_max_bytes is
 * full); 3.1.1 has no negative acknowledgement, so it hears nothing and will
 * resend. An incoming QoS 2 id is forgotten so the resend is taken afresh.
 */
static void ack_failed(struct pending_ack *a, int status)
{
	struct conn *c = a->c;
	uint8_t reason = status == -ENOSPC ? MQTT_RC_QUOTA_EXCEEDED : MQTT_RC_UNSPECIFIED;

	log_warn("client '%s': packet id %u could not be stored (%s); not acknowledged",
		 c->client_id, a->packet_id, status == -ENOSPC ? "store full" : "store error");
	if (a->type == MQTT_PUBREC && c->session)
		outq_rx_del(&c->session->q, a->packet_id);
	if (c->version == MQTT_V5 && a->type != MQTT_PUBCOMP)
		conn_send_ack(c, a->type, a->packet_id, reason, "message could not be stored");
}

static void ack_committed(void *arg, int status)
{
	struct pending_ack *a = arg;

	if (conn_usable(a->c)) {
		if (status && a->reason < 0x80)
			ack_failed(a, status);
		else
			conn_send_ack_props(a->c, a->type, a->packet_id, a->reason, a->why,
					    &a->extra);
	}
	conn_unref(a->c);
	mem_free(a->why);
	buf_free(&a->extra);
	mem_free(a);
}

int proto_ack(struct conn *c, uint8_t type, uint16_t packet_id, uint8_t reason, const char *why,
	      const struct buf *extra)
{
	struct pending_ack *a;

	if (!store_pending())
		return conn_send_ack_props(c, type, packet_id, reason, why, extra);
	a = mem_calloc(1, sizeof(*a));
	if (!a || (why && !(a->why = mem_strdup(why)))) {
		mem_free(a);
		conn_close(c, MQTT_RC_SERVER_BUSY, "out of memory");
		return -1;
	}
	buf_init(&a->extra);
	if (extra && extra->len && buf_put(&a->extra, extra->data, extra->len)) {
		mem_free(a->why);
		mem_free(a);
		conn_close(c, MQTT_RC_SERVER_BUSY, "out of memory");
		return -1;
	}
	a->c = conn_ref(c);
	a->type = type;
	a->reason = reason;
	a->packet_id = packet_id;
	store_after_commit(ack_committed, a);
	return 0;
}

/* extra: properties plugins added for the acknowledgement, or NULL. */
static int ack_publish(struct conn *c, const struct mqtt_publish *p, uint8_t reason,
		       const char *why, const struct buf *extra)
{
	if (p->qos == 1)
		return proto_ack(c, MQTT_PUBACK, p->packet_id, reason, why, extra);
	if (p->qos == 2) {
		if (reason < 0x80 && outq_rx_add(&c->session->q, p->packet_id)) {
			conn_close(c, MQTT_RC_SERVER_BUSY, "out of memory");
			return -1;
		}
		return proto_ack(c, MQTT_PUBREC, p->packet_id, reason, why, extra);
	}
	return 0;
}

/* The plugins' PUBLISH chain refused the message: tell the publisher. */
static int refused(struct conn *c, const struct mqtt_publish *p, const struct msg *m,
		   const struct sp_result *res)
{
	log_notice("client '%s': message on '%s' refused by a plugin (reason 0x%02x%s%s)",
		   c->client_id, m->topic, res->reason, res->reason_string ? ": " : "",
		   res->reason_string ? res->reason_string : "");
	if (c->version == MQTT_V5 && p->qos)
		return ack_publish(c, p, res->reason, res->reason_string, plugin_ack_props());
	/* 3.1.1 has no negative acknowledgement: the message is dropped, logged above. */
	return ack_publish(c, p, MQTT_RC_SUCCESS, NULL, plugin_ack_props());
}

/*
 * The ACL does not let the client write topic: 0x87 to an MQTT 5 publisher
 * at QoS 1/2; a 3.1.1 publisher has its message acknowledged and dropped;
 * QoS 0 is dropped (mosquitto 2 answers the same).
 */
static int denied(struct conn *c, const struct mqtt_publish *p, const char *topic, size_t len)
{
	log_notice("client '%s'%s%s%s: PUBLISH to '%.*s' denied by the ACL", c->client_id,
		   c->session->username ? " (username '" : "",
		   c->session->username ? c->session->username : "",
		   c->session->username ? "')" : "", (int)len, topic);
	base.stats.acl_denied++;
	if (c->version == MQTT_V5 && p->qos)
		return ack_publish(c, p, MQTT_RC_NOT_AUTHORIZED, "not authorised", NULL);
	return ack_publish(c, p, MQTT_RC_SUCCESS, NULL, NULL);
}

static bool may_write(const struct conn *c, const char *topic, size_t len, const struct msg *m)
{
	return !plugin_acl_active() ||
	       plugin_acl(c->session->realm, c->client_id, c->session->username, topic, len, SP_ACL_WRITE, m);
}

static int route(struct conn *c, const struct mqtt_publish *p, const char *topic, size_t len)
{
	struct msg *m = proto_build_msg(c->client_id, topic, len, p->payload, p->payload_len,
					p->qos, p->retain, &p->props);
	struct route_result r = { 0, 0, false };
	struct sp_result res;
	enum sp_verdict v;
	int rc;

	/* A '$' topic may be a plugin's to take: it checks the topic it routes to (acl_check). */
	if (len && topic[0] != '$' && !may_write(c, topic, len, m)) {
		msg_unref(m);
		return denied(c, p, topic, len);
	}
	if (!m) {
		log_warn("client '%s': message on '%.*s' refused: out of memory", c->client_id,
			 (int)len, topic);
		if (c->version == MQTT_V5 && p->qos)
			return ack_publish(c, p, MQTT_RC_UNSPECIFIED, "out of memory", NULL);
		conn_close(c, -1, "out of memory");
		return -1;
	}
	/* Exactly once across a crash: a QoS 2 message waits for its commit (session.c). */
	if (p->qos == 2)
		m->fence = store_fence();
	v = plugin_publish(m, c->client_id, c->session->username, c->version, 0, &res);
	if (v == SP_REJECT) {
		rc = refused(c, p, m, &res);
		msg_unref(m);
		return rc;
	}
	if (v == SP_PASS && len && topic[0] == '$' && !may_write(c, topic, len, m)) {
		msg_unref(m);
		return denied(c, p, topic, len);
	}
	if (v == SP_TAKE)
		r.delivered = 1;
	else
		router_route(m, &r);
	msg_unref(m);
	if (c->version == MQTT_V5 && r.quota)
		/* Some subscriber's queue was full: the publisher hears it (DESIGN.md). */
		return ack_publish(c, p, MQTT_RC_QUOTA_EXCEEDED, "a subscriber's queue is full",
				   plugin_ack_props());
	if (c->version == MQTT_V5 && r.oom && !r.delivered)
		return ack_publish(c, p, MQTT_RC_UNSPECIFIED, "out of memory", plugin_ack_props());
	if (r.delivered == 0 && c->version == MQTT_V5)
		return ack_publish(c, p, MQTT_RC_NO_MATCHING_SUBSCRIBERS, NULL, plugin_ack_props());
	return ack_publish(c, p, MQTT_RC_SUCCESS, NULL, plugin_ack_props());
}

/*
 * memory_limit. Past it a PUBLISH is not taken: QoS 0 is dropped and
 * counted; an MQTT 5 publisher at QoS 1/2 hears 0x97 (Quota exceeded) and
 * may send again; a 3.1.1 one, having no negative acknowledgement, is
 * disconnected (as mosquitto does), so that it sends the message again when
 * it reconnects, which succeeds once the broker holds less. A retained
 * message's deletion (retain, empty payload) is taken: it frees memory.
 * The log says when the pressure begins and, at the first PUBLISH taken
 * after, that it ended; a disconnect is logged by conn_close.
 */
static bool under_pressure;

static bool takes_memory(const struct mqtt_publish *p)
{
	return !p->retain || p->payload_len;
}

static int over_memory(struct conn *c, const struct mqtt_publish *p)
{
	if (!under_pressure)
		log_warn("memory_limit (%" PRIu64 " bytes) reached, %" PRIu64 " counted: QoS 0 "
			 "dropped, QoS 1/2 refused, new connections refused",
			 base.cfg->memory_limit, mem_counted());
	under_pressure = true;
	base.stats.mem_dropped++;
	if (!p->qos) {
		base.stats.pub_dropped++;
		base.stats.qos0_dropped++;
		return 0;
	}
	if (c->version == MQTT_V5)
		return ack_publish(c, p, MQTT_RC_QUOTA_EXCEEDED, "memory_limit reached", NULL);
	conn_close(c, MQTT_RC_QUOTA_EXCEEDED, "PUBLISH refused: memory_limit reached");
	return -1;
}

static void pressure_ended(void)
{
	under_pressure = false;
	log_notice("memory use below memory_limit again (%" PRIu64 " counted): PUBLISH taken",
		   mem_counted());
}

int proto_publish(struct conn *c, const struct mqtt_publish *p)
{
	const char *topic;
	size_t len;

	if (check_publish(c, p) || resolve_topic(c, p, &topic, &len))
		return -1;
	base.stats.msgs_received[p->qos]++;
	base.stats.payload_received[p->qos] += p->payload_len;
	if (p->qos == 2 && outq_rx_has(&c->session->q, p->packet_id))
		/* Already routed; the client did not see our PUBREC. */
		return proto_ack(c, MQTT_PUBREC, p->packet_id, MQTT_RC_SUCCESS, NULL, NULL);
	if (mem_over_limit() && takes_memory(p))
		return over_memory(c, p);
	if (under_pressure && !mem_over_limit())
		pressure_ended();
	if (!payload_format_ok(p)) {
		log_notice("client '%s': payload on '%.*s' is not UTF-8 as its format says",
			   c->client_id, (int)len, topic);
		if (p->qos)
			return ack_publish(c, p, MQTT_RC_PAYLOAD_FORMAT_INVALID,
					   "payload is not valid UTF-8", NULL);
		conn_close(c, MQTT_RC_PAYLOAD_FORMAT_INVALID, "payload is not valid UTF-8");
		return -1;
	}
	return route(c, p, topic, len);
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP from the client. */
int proto_puback(struct conn *c, uint8_t type, const struct mqtt_ack *a)
{
	struct session *s = c->session;
	bool v5 = c->version == MQTT_V5;

	switch (type) {
	case MQTT_PUBACK:
		if (outq_on_puback(&s->q, a->packet_id, a->reason))
			log_debug("client '%s': PUBACK for unknown id %u", c->client_id,
				  a->packet_id);
		return 0;
	case MQTT_PUBREC:
		if (outq_on_pubrec(&s->q, a->packet_id, a->reason))
			/* [MQTT-4.3.3-?] unknown id: release it anyway, saying so. */
			return proto_ack(c, MQTT_PUBREL, a->packet_id,
					 v5 ? MQTT_RC_PACKET_ID_NOT_FOUND : 0, NULL, NULL);
		if (a->reason >= 0x80)
			return 0;
		/* After the "released" state is stored: a crash then resends PUBREL,
		 * never the PUBLISH again [MQTT-4.3.3-5]. */
		return proto_ack(c, MQTT_PUBREL, a->packet_id, 0, NULL, NULL);
	case MQTT_PUBREL:
		/* [MQTT-4.3.3-11] PUBCOMP even for a repeated PUBREL. */
		if (outq_rx_del(&s->q, a->packet_id))
			return proto_ack(c, MQTT_PUBCOMP, a->packet_id,
					 v5 ? MQTT_RC_PACKET_ID_NOT_FOUND : 0, NULL, NULL);
		return proto_ack(c, MQTT_PUBCOMP, a->packet_id, 0, NULL, NULL);
	default:
		if (outq_on_pubcomp(&s->q, a->packet_id))
			log_debug("client '%s': PUBCOMP for unknown id %u", c->client_id,
				  a->packet_id);
		return 0;
	}
}
