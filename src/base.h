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

struct base_stats {
	uint64_t msgs_received; /* PUBLISH packets accepted from clients */
	uint64_t msgs_sent; /* PUBLISH packets written to clients */
	uint64_t bytes_received;
	uint64_t bytes_sent;
	uint64_t pub_dropped; /* messages not delivered to a session: queue full, too big, ... */
	uint64_t qos0_dropped; /* of those, QoS 0 */
	uint64_t expired; /* messages expired before delivery */
	uint64_t acl_denied; /* PUBLISHes, deliveries and wills the ACL did not allow */
	uint64_t conns_total; /* connections accepted since start */
	uint64_t clients_max; /* most clients connected at once */
	uint64_t clients_connected; /* sessions with a live connection */
};

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
