/*
 * msg.h - the published message: immutable once built, refcounted, shared by
 * every session that receives it (the retained store holds a reference too).
 *
 * One allocation holds the struct, the topic (NUL-terminated), the sender's
 * client id, the forwarded MQTT 5 property block and the payload. A rewrite
 * (another topic, other properties) builds a new message.
 */
#ifndef SLUICE_MSG_H
#define SLUICE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msg {
	uint32_t refs;
	uint8_t size_class; /* which block cache it came from (msg.c); 0 = none */
	uint16_t sender_len;
	/*
	 * Bookkeeping, not content (the only fields that change after the
	 * build): the store batch that must commit before the message is sent
	 * (QoS 2 exactly once, set where it is accepted), and the store's own
	 * mark, the batch of its first delivery row (store.c alone reads it).
	 */
	uint64_t fence;
	uint64_t first_put_batch;
	uint8_t qos; /* as published */
	bool retain; /* as published */
	uint16_t topic_len;
	uint32_t props_len;
	uint32_t payload_len;
	uint64_t expiry_wall_ms; /* message expiry as wall-clock ms; 0 = never */
	uint32_t expiry_interval; /* the Message Expiry Interval it was published with, s */
	uint64_t id; /* broker-wide sequence number */
	const char *topic;
	const char *sender; /* client id of the publisher, "" for the broker itself */
	const uint8_t *props; /* forwarded properties (props_copy_forward), no length prefix */
	const uint8_t *payload;
};

struct msg_spec {
	const char *topic;
	size_t topic_len;
	const void *payload;
	size_t payload_len;
	const void *props;
	size_t props_len;
	uint8_t qos;
	bool retain;
	uint64_t expiry_wall_ms;
	uint32_t expiry_interval;
	const char *sender; /* NULL = the broker */
	size_t sender_len; /* 0: sender is NUL-terminated */
};

/* Builds a message with one reference. Returns NULL when out of memory. */
struct msg *msg_new(const struct msg_spec *spec);
struct msg *msg_ref(struct msg *m);
void msg_unref(struct msg *m);
/*
 * The message as a self-contained byte string (for plugin state and the
 * store), and back. encode appends to out; decode returns a new message
 * with one reference, or NULL when the bytes are not a message or OOM.
 */
struct buf;
int msg_encode(const struct msg *m, struct buf *out);
struct msg *msg_decode(const void *p, size_t len);

/* Bytes the message takes in memory, for queue accounting. */
size_t msg_size(const struct msg *m);
/* Ids of messages read back from the store: new ids continue above them. */
void msg_seen_id(uint64_t id);

/* Number of messages alive, for $SYS and leak checks in tests. */
size_t msg_alive(void);
/* Frees the blocks kept for new messages (shutdown). */
void msg_drain_caches(void);

#endif
