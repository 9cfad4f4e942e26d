/*
 * broker.h - the broker's lifecycle and the little state every module
 * shares: the configuration, the timer heap, counters. One event loop thread
 * runs everything, so these are plain globals, as in Redis's `server`.
 */
#ifndef SLUICE_BROKER_H
#define SLUICE_BROKER_H

#include <signal.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "timers.h"

struct broker_stats {
	uint64_t msgs_received; /* PUBLISH packets accepted from clients */
	uint64_t msgs_sent; /* PUBLISH packets written to clients */
	uint64_t bytes_received;
	uint64_t bytes_sent;
	uint64_t pub_dropped; /* messages not delivered to a session: queue full, too big, ... */
	uint64_t qos0_dropped; /* of those, QoS 0 */
	uint64_t expired; /* messages expired before delivery */
	uint64_t conns_total; /* connections accepted since start */
	uint64_t clients_max; /* most clients connected at once */
	uint64_t clients_connected; /* sessions with a live connection */
};

struct broker {
	const struct config *cfg;
	struct timers timers;
	struct broker_stats stats;
	uint64_t start_ms; /* monotonic */
	uint64_t start_wall_ms;
	struct buf scratch; /* reusable encoding space, loop thread only */
	bool stopping; /* shutdown has begun: connections are going away */
	volatile sig_atomic_t stop;
	volatile sig_atomic_t reopen_log;
};

extern struct broker broker;

/* Sets up every subsystem and opens the listeners. Returns 0 or -1 (logged). */
int broker_init(const struct config *cfg);
/* Runs the loop until broker_request_stop(). */
int broker_run(void);
void broker_shutdown(void);
/* Async-signal-safe. */
void broker_request_stop(void);
void broker_request_log_reopen(void);

/* Timers on the loop: arm (or move) and disarm. */
void broker_timer_add(struct timer *t, uint64_t due_ms);
void broker_timer_del(struct timer *t);
/* Runs due timers; the listener calls this from its wake-up. Returns the next due time. */
uint64_t broker_timers_run(void);

#endif
