/*
 * base.h - the little state every layer of the broker shares: the
 * configuration in force, the counters, a scratch buffer for encoders, and
 * whether shutdown has begun. One loop thread runs the broker, so these are
 * plain globals, as in Redis's `server`; they sit at the bottom so that any
 * module may read them without reaching up to the broker's lifecycle
 * (broker.c), which fills them in at start-up.
 */
#ifndef SLUICE_BASE_H
#define SLUICE_BASE_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"

/* Why a message was not delivered to a session (base_stats.dropped). */
enum drop_cause {
	DROP_QUEUE_FULL, /* max_queued_messages / max_queued_bytes */
	DROP_SLOW_CLIENT, /* QoS 0 beyond max_qos0_backlog */
	DROP_OFFLINE, /* QoS 0 for a client that is not connected */
	DROP_TOO_LARGE, /* expired, or over the client's maximum packet size */
	DROP_NO_MEMBER, /* for a shared group with no member left */
	DROP_OUT_OF_MEMORY,
	DROP_MEMORY, /* QoS 0 to a lagging client past memory_limit */
	DROP_CAUSES
};

struct base_stats {
	uint64_t msgs_received[3]; /* PUBLISH packets accepted from clients, by QoS */
	uint64_t msgs_sent[3]; /* PUBLISH packets written to clients, by QoS */
	uint64_t payload_received[3], payload_sent[3]; /* their payload bytes, by QoS */
	uint64_t bytes_received;
	uint64_t bytes_sent;
	uint64_t pub_dropped; /* messages not delivered to a session: queue full, too big, ... */
	uint64_t dropped[DROP_CAUSES]; /* the same, by cause */
	uint64_t qos0_dropped; /* of those, QoS 0 */
	uint64_t mem_dropped; /* for memory_limit: PUBLISHes dropped or refused, QoS 0 deliveries */
	uint64_t expired; /* messages expired before delivery */
	uint64_t acl_denied; /* PUBLISHes, deliveries and wills the ACL did not allow */
	uint64_t conns_total; /* connections accepted since start */
	uint64_t clients_max; /* most clients connected at once */
	uint64_t clients_connected; /* sessions with a live connection */
	uint64_t connects, connects_refused; /* CONNECTs answered CONNACK 0x00 / a refusal */
	uint64_t disconnects; /* connections of a session that ended (any cause) */
};

/* The sum of a by-QoS counter. */
static inline uint64_t base_qos_sum(const uint64_t v[3])
{
	return v[0] + v[1] + v[2];
}

struct base {
	const struct config *cfg; /* borrowed: lives as long as the broker */
	struct base_stats stats;
	struct buf scratch; /* reusable encoding space, loop thread only */
	uint64_t start_ms; /* monotonic */
	uint64_t start_wall_ms;
	bool stopping; /* shutdown has begun: connections are going away */
};

extern struct base base;

/* Resets everything and takes cfg as the configuration in force. */
void base_init(const struct config *cfg);
void base_free(void);

#endif
