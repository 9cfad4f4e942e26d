/*
 * props.h - MQTT 5 properties: decode, validate, encode.
 *
 * Decoding is zero-copy: strings and binary data in struct mqtt_props point
 * into the packet buffer the caller passed, and are valid only as long as it.
 * Strings are not NUL-terminated. User properties are not copied into an
 * array; props_user_next() walks them in the raw block, in wire order.
 *
 * Encoding appends one property at a time to a struct buf (props_put_*);
 * packet encoders take the finished block as raw bytes and write its length.
 */
#ifndef SLUICE_PROPS_H
#define SLUICE_PROPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "mqtt.h"

struct mqtt_str {
	const char *p; /* borrowed, not NUL-terminated; NULL when absent */
	uint16_t len;
};

struct mqtt_bin {
	const uint8_t *p;
	uint16_t len;
};

#define PROP_BIT(id) (1ull << (id))

struct mqtt_props {
	uint64_t present; /* PROP_BIT(MQTT_PROP_x) for each property seen */
	const uint8_t *raw; /* the property block without its length prefix */
	size_t raw_len;

	uint8_t payload_format;
	uint32_t message_expiry;
	struct mqtt_str content_type;
	struct mqtt_str response_topic;
	struct mqtt_bin correlation_data;
	uint32_t subscription_id; /* the first one (SUBSCRIBE carries at most one) */
	uint32_t session_expiry;
	struct mqtt_str assigned_client_id;
	uint16_t server_keep_alive;
	struct mqtt_str auth_method;
	struct mqtt_bin auth_data;
	uint8_t request_problem_info;
	uint32_t will_delay;
	uint8_t request_response_info;
	struct mqtt_str response_info;
	struct mqtt_str server_reference;
	struct mqtt_str reason_string;
	uint16_t receive_max;
	uint16_t topic_alias_max;
	uint16_t topic_alias;
	uint8_t max_qos;
	uint8_t retain_available;
	uint32_t max_packet_size;
	uint8_t wildcard_sub_available;
	uint8_t subid_available;
	uint8_t shared_sub_available;
	uint16_t n_user_props;
};

/* Where a property block appears; decides which identifiers are allowed. */
enum props_ctx {
	PROPS_CONNECT,
	PROPS_WILL,
	PROPS_CONNACK,
	PROPS_PUBLISH,
	PROPS_PUBACK, /* also PUBREC, PUBREL, PUBCOMP */
	PROPS_SUBSCRIBE,
	PROPS_SUBACK,
	PROPS_UNSUBSCRIBE,
	PROPS_UNSUBACK,
	PROPS_DISCONNECT,
	PROPS_AUTH,
};

enum props_err {
	PROPS_OK = 0,
	PROPS_EMALFORMED = -1, /* truncated, bad varint, bad UTF-8, unknown id */
	PROPS_EPROTOCOL = -2, /* duplicate, wrong packet, or a value the spec forbids */
};

/*
 * Decodes the property block at p (starting at its variable-length prefix),
 * at most len bytes available. On success *used is the number of bytes taken
 * (prefix included) and out describes the block. Checks: every identifier is
 * known and allowed in ctx (else PROPS_EMALFORMED), no duplicates except user property and (PUBLISH)
 * subscription identifier, UTF-8 of every string and string pair, and value
 * rules: payload format 0/1, receive maximum and max packet size non-zero,
 * subscription identifier non-zero, max QoS 0/1, boolean bytes 0/1, request
 * info bytes 0/1.
 */
int props_decode(const uint8_t *p, size_t len, enum props_ctx ctx, struct mqtt_props *out,
		 size_t *used);

/* Iterates user properties in wire order. *pos starts at 0. Returns 1 with a pair, 0 at the end. */
int props_user_next(const struct mqtt_props *props, size_t *pos, struct mqtt_str *key,
		    struct mqtt_str *val);

/*
 * Iterates subscription identifiers of a decoded PUBLISH property block
 * (a broker-to-client PUBLISH may carry several). Same protocol as above.
 */
int props_subid_next(const struct mqtt_props *props, size_t *pos, uint32_t *subid);

/*
 * Appends to out the properties of a PUBLISH that a broker forwards unchanged
 * (payload format, content type, response topic, correlation data and every
 * user property), copied byte for byte in wire order. Message expiry, topic
 * alias and subscription identifiers are not copied.
 */
int props_copy_forward(struct buf *out, const struct mqtt_props *props);

int props_put_u8(struct buf *b, uint8_t id, uint8_t v);
int props_put_u16(struct buf *b, uint8_t id, uint16_t v);
int props_put_u32(struct buf *b, uint8_t id, uint32_t v);
int props_put_varint(struct buf *b, uint8_t id, uint32_t v);
int props_put_str(struct buf *b, uint8_t id, const void *p, size_t n); /* also binary data */
int props_put_pair(struct buf *b, const void *k, size_t kn, const void *v, size_t vn);

#endif
