/*
 * codec.h - MQTT 3.1, 3.1.1 and 5.0 packets: decode from bytes, encode to
 * bytes. Pure functions, no I/O, no broker state.
 *
 * Decoding is zero-copy: every string, binary field and payload in a decoded
 * struct points into the packet buffer passed to codec_decode(), which must
 * outlive the struct. Strings are not NUL-terminated.
 *
 * The decoder enforces every rule that can be checked on one packet alone:
 * fixed-header flags [MQTT-2.1.3-1], lengths, UTF-8 [MQTT-1.5.4-1..3],
 * topic name and filter syntax, QoS 3, packet identifier 0, property rules
 * (props.h), empty SUBSCRIBE/UNSUBSCRIBE payloads, reserved bits. Rules that
 * need connection state (first packet is CONNECT, topic alias range, receive
 * maximum) belong to the broker.
 *
 * Encoders append to a struct buf and return 0, or -1 when out of memory or
 * a field is too long for the wire. Property blocks for encoding are raw
 * bytes built with props_put_*() (props.h); the encoder writes their length.
 * For MQTT 3.1/3.1.1 no property block and no reason code is written where
 * those versions have none.
 */
#ifndef SLUICE_CODEC_H
#define SLUICE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "mqtt.h"
#include "props.h"

enum codec_err {
	CODEC_OK = 0,
	CODEC_EMALFORMED = -1, /* MQTT_RC_MALFORMED_PACKET */
	CODEC_EPROTOCOL = -2, /* MQTT_RC_PROTOCOL_ERROR */
	CODEC_EPROTOVER = -3, /* CONNECT with a protocol name/level we do not speak */
	CODEC_ETOPIC =
		-4, /* PUBLISH topic name invalid (wildcards) -> MQTT_RC_TOPIC_NAME_INVALID */
	CODEC_EFILTER = -5, /* (UN)SUBSCRIBE topic filter invalid -> MQTT_RC_TOPIC_FILTER_INVALID */
};

struct mqtt_connect {
	uint8_t version; /* MQTT_V31, MQTT_V311, MQTT_V5 */
	bool clean_start;
	uint16_t keep_alive;
	struct mqtt_props props;
	struct mqtt_str client_id; /* may be empty */
	bool will;
	uint8_t will_qos;
	bool will_retain;
	struct mqtt_props will_props;
	struct mqtt_str will_topic;
	struct mqtt_bin will_payload;
	bool has_username, has_password;
	struct mqtt_str username;
	struct mqtt_bin password;
};

struct mqtt_connack {
	bool session_present;
	uint8_t reason; /* MQTT 5 reason code, or MQTT 3 return code */
	struct mqtt_props props; /* encode: raw/raw_len only */
};

struct mqtt_publish {
	uint8_t qos;
	bool dup;
	bool retain;
	struct mqtt_str topic; /* may be empty in MQTT 5 with a topic alias */
	uint16_t packet_id; /* 0 for QoS 0 */
	struct mqtt_props props;
	const uint8_t *payload;
	size_t payload_len;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
struct mqtt_ack {
	uint16_t packet_id;
	uint8_t reason; /* MQTT_RC_SUCCESS when absent */
	struct mqtt_props props;
};

struct mqtt_subscribe {
	uint16_t packet_id;
	struct mqtt_props props;
	const uint8_t *entries; /* validated payload; walk it with codec_subscribe_next */
	size_t entries_len;
	size_t count;
};

struct mqtt_unsubscribe {
	uint16_t packet_id;
	struct mqtt_props props;
	const uint8_t *entries; /* walk with codec_unsubscribe_next */
	size_t entries_len;
	size_t count;
};

/* SUBACK / UNSUBACK (MQTT 3.1.1 UNSUBACK has no reason codes). */
struct mqtt_suback {
	uint16_t packet_id;
	struct mqtt_props props;
	const uint8_t *reasons;
	size_t count;
};

struct mqtt_disconnect {
	uint8_t reason;
	struct mqtt_props props;
};

struct mqtt_auth {
	uint8_t reason;
	struct mqtt_props props;
};

struct mqtt_packet {
	uint8_t type; /* enum mqtt_type */
	uint8_t flags; /* low nibble of the fixed header */
	union {
		struct mqtt_connect connect;
		struct mqtt_connack connack;
		struct mqtt_publish publish;
		struct mqtt_ack ack;
		struct mqtt_subscribe subscribe;
		struct mqtt_unsubscribe unsubscribe;
		struct mqtt_suback suback;
		struct mqtt_disconnect disconnect;
		struct mqtt_auth auth;
	} u;
};

/*
 * Decodes one whole packet (fixed header included, exactly len bytes, as the
 * framer delivers it). version is the connection's protocol level; it is
 * ignored for CONNECT, which carries its own. Decodes packets of both
 * directions (the tests and the benchmark use the client side).
 */
int codec_decode(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_packet *out);

/* Walks a validated SUBSCRIBE payload. *pos starts at 0. Returns 1 with an entry, 0 at the end. */
int codec_subscribe_next(const struct mqtt_subscribe *s, size_t *pos, struct mqtt_str *filter,
			 uint8_t *options);
int codec_unsubscribe_next(const struct mqtt_unsubscribe *u, size_t *pos, struct mqtt_str *filter);

int codec_encode_connect(struct buf *out, const struct mqtt_connect *c);
int codec_encode_connack(struct buf *out, uint8_t version, const struct mqtt_connack *c);
/* type is MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL or MQTT_PUBCOMP. For MQTT 5 the
 * reason code and properties are omitted when the reason is 0 and there are no
 * properties [MQTT-3.4.2.1]. */
int codec_encode_ack(struct buf *out, uint8_t version, uint8_t type, const struct mqtt_ack *a);
int codec_encode_subscribe(struct buf *out, uint8_t version, uint16_t packet_id,
			   const uint8_t *props, size_t props_len, const char *const *filters,
			   const uint8_t *options, size_t count);
int codec_encode_unsubscribe(struct buf *out, uint8_t version, uint16_t packet_id,
			     const uint8_t *props, size_t props_len, const char *const *filters,
			     size_t count);
/* type is MQTT_SUBACK or MQTT_UNSUBACK. */
int codec_encode_suback(struct buf *out, uint8_t version, uint8_t type,
			const struct mqtt_suback *s);
/* PINGREQ, PINGRESP: two bytes. */
int codec_encode_empty(struct buf *out, uint8_t type);
int codec_encode_disconnect(struct buf *out, uint8_t version, const struct mqtt_disconnect *d);
int codec_encode_auth(struct buf *out, const struct mqtt_auth *a);

/*
 * PUBLISH, the hot path: the fields come separately so that the broker can
 * encode from a stored message without building a struct. props/props_len is
 * the raw property block (ignored for MQTT 3). topic_len may be 0 (alias).
 */
int codec_encode_publish(struct buf *out, uint8_t version, const char *topic, size_t topic_len,
			 uint8_t qos, bool retain, bool dup, uint16_t packet_id,
			 const uint8_t *props, size_t props_len, const uint8_t *payload,
			 size_t payload_len);
/* Size in bytes of what codec_encode_publish would write for the same arguments. */
size_t codec_publish_size(uint8_t version, size_t topic_len, uint8_t qos, size_t props_len,
			  size_t payload_len);

#endif
