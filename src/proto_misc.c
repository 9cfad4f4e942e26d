/*
 * proto_misc.c - the small packets (PINGREQ, DISCONNECT, AUTH) and the
 * mapping of codec errors to the reason codes that end a connection.
 * Loop thread only, like every proto_* file.
 */
#include <stdio.h>
#include <string.h>

#include "base.h"
#include "codec.h"
#include "conn.h"
#include "log.h"
#include "mqtt.h"
#include "proto.h"
#include "session.h"

uint8_t proto_codec_reason(int codec_err)
{
	switch (codec_err) {
	case CODEC_EPROTOCOL:
		return MQTT_RC_PROTOCOL_ERROR;
	case CODEC_ETOPIC:
		return MQTT_RC_TOPIC_NAME_INVALID;
	case CODEC_EFILTER:
		return MQTT_RC_TOPIC_FILTER_INVALID;
	case CODEC_EPROTOVER:
		return MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION;
	default:
		return MQTT_RC_MALFORMED_PACKET;
	}
}

int proto_pingreq(struct conn *c)
{
	struct buf *out = conn_out(c);

	if (!out || codec_encode_empty(out, MQTT_PINGRESP)) {
		conn_close(c, MQTT_RC_SERVER_BUSY, "out of memory for a PINGRESP");
		return -1;
	}
	conn_flush(c);
	return 0;
}

int proto_disconnect(struct conn *c, const struct mqtt_disconnect *p)
{
	struct session *s = c->session;
	const struct mqtt_props *pr = &p->props;

	if (c->version == MQTT_V5 && (pr->present & PROP_BIT(MQTT_PROP_SESSION_EXPIRY))) {
		/* [MQTT-3.14.2-2] expiry 0 at CONNECT cannot be raised at DISCONNECT. */
		if (s && s->expiry_interval == 0 && pr->session_expiry) {
			conn_close(c, MQTT_RC_PROTOCOL_ERROR,
				   "DISCONNECT raised a session expiry of 0");
			return -1;
		}
		if (s)
			session_set_expiry(s, pr->session_expiry);
	}
	/* [MQTT-3.14.4-3] a normal DISCONNECT discards the will; 0x04 keeps it. */
	c->graceful = !(c->version == MQTT_V5 && p->reason == MQTT_RC_DISCONNECT_WITH_WILL);
	conn_close(c, -1, c->graceful ? "disconnected" : "disconnected with will message");
	return -1;
}
