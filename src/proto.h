/*
 * proto.h - MQTT packet handling: what the broker does with each decoded
 * packet. conn.c hands every framed packet to proto_handle() through
 * proto_conn_handler; each packet type is parsed, validated, applied and
 * answered by its own handler.
 *
 * Handlers return 0, or -1 after they called conn_close() (the connection
 * is closing; no further packet of this connection is handled).
 */
#ifndef SLUICE_PROTO_H
#define SLUICE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#include "conn.h"

/* What connections hand up (conn_set_handler): packets, and the end of the transport. */
extern const struct conn_handler proto_conn_handler;

int proto_handle(struct conn *c, const uint8_t *pkt, size_t len);

/* CONNECT (pkt, len: the whole packet, kept when an enhanced authentication begins). */
int proto_connect(struct conn *c, const struct mqtt_connect *p, const uint8_t *pkt, size_t len);

/* What an enhanced authentication established (proto_auth.c), for the CONNACK. */
struct proto_authed {
	const char *username;
	size_t username_len;
	int mech; /* enum scram_mech */
	const struct buf *data; /* the server-final-message */
};
/* Accepts or refuses a CONNECT; ok (else NULL) when an enhanced authentication passed. */
int proto_connect_accept(struct conn *c, const struct mqtt_connect *p,
			 const struct proto_authed *ok);
/* CONNACK with v5_reason (MQTT 5, with props) or v3_code, then close; returns -1. */
int proto_connect_refuse(struct conn *c, uint8_t v5_reason, uint8_t v3_code, const char *why,
			 const struct buf *props);
/* A CONNECT with an Authentication Method (MQTT 5): the exchange begins, or it is refused. */
int proto_auth_begin(struct conn *c, const struct mqtt_connect *p, const uint8_t *pkt, size_t len);
/* A packet other than AUTH or DISCONNECT during that exchange: CONNACK 0x82 (why: logged). */
int proto_auth_interrupted(struct conn *c, const char *why);
/* A CONNECT that did not decode: refuse it the way its version expects. */
int proto_connect_failed(struct conn *c, const struct mqtt_connect *p, int codec_err);
int proto_publish(struct conn *c, const struct mqtt_publish *p);
int proto_puback(struct conn *c, uint8_t type, const struct mqtt_ack *a);
int proto_subscribe(struct conn *c, const struct mqtt_subscribe *p);
int proto_unsubscribe(struct conn *c, const struct mqtt_unsubscribe *p);
int proto_pingreq(struct conn *c);
int proto_disconnect(struct conn *c, const struct mqtt_disconnect *p);
int proto_auth(struct conn *c, const struct mqtt_auth *p);

struct buf;
/*
 * Sends an acknowledgement (PUBACK, PUBREC, PUBCOMP) once everything queued
 * for the store before it is committed, or at once when nothing is; extra
 * is a raw MQTT 5 property block (copied). 0, or -1 after conn_close().
 */
int proto_ack(struct conn *c, uint8_t type, uint16_t packet_id, uint8_t reason, const char *why,
	      const struct buf *extra);

/* Maps a codec error to the MQTT 5 reason code that ends the connection. */
uint8_t proto_codec_reason(int codec_err);
struct msg;
/*
 * Builds the message to route from a PUBLISH or a will: the forwarded
 * properties, the expiry as a wall-clock deadline, the sender. NULL on OOM.
 */
struct msg *proto_build_msg(const char *sender, const char *topic, size_t topic_len,
			    const uint8_t *payload, size_t payload_len, uint8_t qos, bool retain,
			    const struct mqtt_props *props);

#endif
