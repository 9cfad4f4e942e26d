/*
 * proto.c - the packet dispatcher, and what connections hand up to the
 * protocol layer (proto_conn_handler). Loop thread only.
 *
 * proto_handle() enforces the connection-level ordering rules (CONNECT
 * first and only once), decodes, and calls the handler of the type. A
 * decoding error ends the connection with the reason code the codec error
 * maps to (MQTT 5) or a plain close (3.1/3.1.1) [MQTT-4.13.1-1]. When the
 * transport is gone, the connection's session goes offline.
 */
#include "proto.h"

#include <stdio.h>
#include <string.h>

#include "base.h"
#include "codec.h"
#include "conn.h"
#include "log.h"
#include "mqtt.h"
#include "session.h"

static const char *type_name(uint8_t type)
{
	static const char *const names[16] = {
		"reserved", "CONNECT",	"CONNACK",    "PUBLISH", "PUBACK",	"PUBREC",
		"PUBREL",   "PUBCOMP",	"SUBSCRIBE",  "SUBACK",	 "UNSUBSCRIBE", "UNSUBACK",
		"PINGREQ",  "PINGRESP", "DISCONNECT", "AUTH",
	};

	return names[type & 15];
}

static int decode_failed(struct conn *c, uint8_t type, int rc)
{
	char why[96];

	snprintf(why, sizeof(why), "%s %s", rc == CODEC_EPROTOCOL ? "protocol error in" : "bad",
		 type_name(type));
	if (rc == CODEC_ETOPIC)
		snprintf(why, sizeof(why), "invalid topic name in PUBLISH");
	else if (rc == CODEC_EFILTER)
		snprintf(why, sizeof(why), "invalid topic filter in %s", type_name(type));
	conn_close(c, proto_codec_reason(rc), why);
	return -1;
}

static int dispatch(struct conn *c, const struct mqtt_packet *p, const uint8_t *pkt, size_t len)
{
	switch (p->type) {
	case MQTT_CONNECT:
		return proto_connect(c, &p->u.connect, pkt, len);
	case MQTT_PUBLISH:
		return proto_publish(c, &p->u.publish);
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		return proto_puback(c, p->type, &p->u.ack);
	case MQTT_SUBSCRIBE:
		return proto_subscribe(c, &p->u.subscribe);
	case MQTT_UNSUBSCRIBE:
		return proto_unsubscribe(c, &p->u.unsubscribe);
	case MQTT_PINGREQ:
		return proto_pingreq(c);
	case MQTT_DISCONNECT:
		return proto_disconnect(c, &p->u.disconnect);
	case MQTT_AUTH:
		return proto_auth(c, &p->u.auth);
	default:
		/* CONNACK, SUBACK, UNSUBACK, PINGRESP only travel server to client. */
		conn_close(c, MQTT_RC_PROTOCOL_ERROR, "client sent a server-only packet");
		return -1;
	}
}

int proto_handle(struct conn *c, const uint8_t *pkt, size_t len)
{
	struct mqtt_packet p;
	uint8_t type = pkt[0] >> 4;
	int rc;

	if (c->state == CONN_NEW && type != MQTT_CONNECT) {
		/* [MQTT-3.1.0-1] the first packet must be CONNECT. */
		conn_close(c, -1, "first packet is not CONNECT");
		return -1;
	}
	if (c->state == CONN_AUTH && type != MQTT_AUTH && type != MQTT_DISCONNECT) {
		/*
		 * The client waits for CONNACK: only AUTH or DISCONNECT [MQTT-3.1.2-30];
		 * anything else, a second CONNECT too, is refused with CONNACK 0x82.
		 */
		return proto_auth_interrupted(
			c, type == MQTT_CONNECT ? "second CONNECT during authentication"
						: "packet other than AUTH during authentication");
	}
	if (c->state != CONN_NEW && type == MQTT_CONNECT) {
		/* [MQTT-3.1.0-2] a second CONNECT is a protocol violation. */
		conn_close(c, MQTT_RC_PROTOCOL_ERROR, "second CONNECT");
		return -1;
	}
	if (type == MQTT_AUTH && c->version != MQTT_V5) {
		conn_close(c, -1, "AUTH is not an MQTT 3.1.1 packet");
		return -1;
	}
	memset(&p, 0, sizeof(p));
	rc = codec_decode(pkt, len, c->version, &p);
	if (rc == CODEC_OK)
		return dispatch(c, &p, pkt, len);
	if (type == MQTT_CONNECT)
		return proto_connect_failed(c, &p.u.connect, rc);
	return decode_failed(c, type, rc);
}

/* The transport is gone, or lingers (conn_linger): the session (if any) goes offline, once. */
static void on_closed(struct conn *c)
{
	struct session *s = c->session;

	if (!s)
		return;
	base.stats.disconnects++;
	conn_part_session(c);
	session_detach(s, c->graceful);
}

const struct conn_handler proto_conn_handler = {
	.packet = proto_handle,
	.closed = on_closed,
};
