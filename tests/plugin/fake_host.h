/*
 * fake_host.h - an in-memory struct sp_host for unit tests of plugins: one
 * plugin is loaded into a fake world that the test drives (clock, events,
 * store) and inspects (routed messages, PUBACK properties, log, store,
 * memory). See fake_host.c for how each host call behaves.
 *
 * The world is global and single-threaded, like the broker's loop. A test
 * starts with fake_reset(), loads the plugin with fake_load(), fires events
 * and advances time, and ends with fake_stop() + fake_unload(). The key/value
 * and cold spaces survive fake_unload() so that a second fake_load() is a
 * restart on the same store; fake_reset() or fake_store_clear() empties them.
 *
 * Pointers returned here are borrowed from the fake and valid until the next
 * call that changes what they point into (a clear, a reset, a store write).
 */
#ifndef SLUICE_TESTS_FAKE_HOST_H
#define SLUICE_TESTS_FAKE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice_plugin.h"

#define FAKE_WALL0 UINT64_C(1700000000000) /* the wall clock after fake_reset(), ms since 1970 */

typedef int (*fake_init_fn)(const struct sp_host *host, struct sp_plugin *self,
			    const struct sp_opt *opts, int n_opts, void **udata);
typedef void (*fake_cleanup_fn)(void *udata);

/* --- the world ------------------------------------------------------------ */

/* Frees everything the fake holds and starts a fresh world: first thing in a test, and last. */
void fake_reset(void);
const struct sp_host *fake_host(void);
struct sp_plugin *fake_self(void);
/* Pretends to be an older host: size shrinks and the calls past it become NULL. */
void fake_set_host_size(size_t size);
/* Host calls the real host would refuse or crash on (cancel of a dead timer, a foreign self). */
unsigned fake_misuse(void);

/* --- the plugin ----------------------------------------------------------- */

/* Calls init with the fake host; returns what init returned. */
int fake_load(fake_init_fn init, const struct sp_opt *opts, int n_opts);
/* As the broker's unload: drops the timers and reads left, calls cleanup, forgets callbacks. */
void fake_unload(fake_cleanup_fn cleanup);
bool fake_loaded(void);
/*
 * Calls the plugin's callback for type (none registered: PASS). ev->type is
 * set here; res may be NULL. A failing callback (non-zero) of PUBLISH or
 * SUBSCRIBE turns into REJECT 0x80, as the broker does. Returns the
 * callback's value; the result is also kept for fake_result().
 */
int fake_fire(enum sp_event_type type, struct sp_event *ev, struct sp_result *res);
const struct sp_result *fake_result(void);
int fake_start(void);
/* Answers every cold read still pending (the store closes first), then fires STOP. */
int fake_stop(void);

/* --- publishing ----------------------------------------------------------- */

/* The publisher of the next fake_publish() calls ("client", 5 after fake_reset()). */
void fake_set_client(const char *client_id, uint8_t protocol);
/* A message from the current client; after qos, user property key, value, ..., NULL. */
struct sp_msg *fake_msg(const char *topic, const char *payload, int qos, ...);
/* The same from a spec (sender NULL: the current client), with n_props pairs key0, val0, ... */
struct sp_msg *fake_msg_build(const struct sp_msg_spec *spec, const char *const *pairs,
			      size_t n_props);
/* A PUBLISH event from the current client for m (borrowed); the result is fake_result(). */
enum sp_verdict fake_publish_msg(struct sp_msg *m);
/* fake_msg() + fake_publish_msg(): topic, payload, qos, then key, value, ..., NULL. */
enum sp_verdict fake_publish(const char *topic, const char *payload, int qos, ...);
/* The PUBACK user properties the plugin added during the last PUBLISH event. */
size_t fake_ack_count(void);
const char *fake_ack_prop(const char *key); /* its value, NULL when absent */

/* --- messages ------------------------------------------------------------- */

long fake_live_msgs(void); /* messages built and not yet freed */
const char *fake_msg_prop(const struct sp_msg *m, const char *key); /* first value or NULL */
/* The i-th user property: 0, or -1 past the end. */
int fake_msg_prop_at(const struct sp_msg *m, size_t i, const char **key, const char **val);
size_t fake_msg_n_props(const struct sp_msg *m);
bool fake_msg_payload_is(const struct sp_msg *m, const char *text);

/* --- routing -------------------------------------------------------------- */

void fake_route_returns(int rc); /* what route() answers; 1 after fake_reset() */
size_t fake_routed_count(void);
struct sp_msg *fake_routed(size_t i); /* the fake holds a reference until the clear */
uint64_t fake_routed_wall(size_t i); /* wall-clock ms when it was routed */
void fake_routed_clear(void);

/* --- deliver (API 2) ------------------------------------------------------ */

/* One deliver() call: the fake holds a reference on m until the clear. */
struct fake_delivery {
	struct sp_msg *m;
	const char *client_id; /* NULL when to a group */
	const char *share_group, *share_filter; /* NULL when to one client */
	uint64_t wall; /* wall-clock ms of the call */
	bool redeliver; /* a redeliver() call (its DELIVER chain is not run by the fake) */
};

/*
 * What deliver() and redeliver() answer a well-formed call (1 after
 * fake_reset()); bad calls (-1) are not kept. Both are recorded here, in
 * call order, told apart by fake_delivery.redeliver.
 */
void fake_deliver_returns(int rc);
size_t fake_delivered_count(void);
const struct fake_delivery *fake_delivered(size_t i); /* NULL past the end */
void fake_delivered_clear(void);

/* --- durable, opt_where, listeners, msg_ids_after ------------------------ */

/* What durable() answers for every well-formed target (0 after fake_reset()). */
void fake_set_durable(int rc);
/* What listeners() answers for every event (0 after fake_reset()). */
void fake_set_listeners(int n);
/* The largest id msg_ids_after() was given (0 after fake_reset()); later messages get larger ids. */
uint64_t fake_msg_ids_after(void);
/* opt_where(self, i) answers "test.conf:<10 + i>" while init runs, NULL otherwise. */

/* --- after_commit (API 2) ------------------------------------------------- */

/*
 * The status the after_commit functions get when they run (0 after
 * fake_reset(); -ENOSPC, -ENOMEM as the broker's). It is read when each
 * runs, on the next fake_advance() or fake_run_pending(), never inside the call.
 */
void fake_commit_status(int status);

/* --- subscriptions (subscribed) ------------------------------------------ */

/* client_id's session subscribes to filter (plain, or $share/{group}/{filter}). */
void fake_subscribe(const char *client_id, const char *filter);
/* Every subscription of client_id ends. */
void fake_unsubscribe(const char *client_id);

/* --- time ----------------------------------------------------------------- */

uint64_t fake_now(void); /* wall clock, ms */
uint64_t fake_mono(void); /* monotonic clock, ms (0 after fake_reset()) */
/* Moves both clocks on by ms, firing timers and answering cold reads due on the way, in order. */
void fake_advance(uint64_t ms);
/* Steps the wall clock only (an NTP correction): timers are monotonic and do not move. */
void fake_set_wall(uint64_t wall_ms);
/* Answers the pending cold reads and after_commit calls without moving the clock; how many. */
size_t fake_run_pending(void);
size_t fake_timers(void); /* plugin timers armed */
size_t fake_cold_reads(void); /* cold reads not answered yet */
size_t fake_commits(void); /* after_commit functions not run yet */

/* --- the store ------------------------------------------------------------ */

enum fake_space { FAKE_KV, FAKE_COLD };

size_t fake_store_count(enum fake_space sp);
/* The i-th entry in key order: 0, or -1 past the end. */
int fake_store_at(enum fake_space sp, size_t i, const void **key, size_t *klen, const void **val,
		  size_t *vlen);
/* How many values of sp contain the n bytes at needle. */
size_t fake_store_grep(enum fake_space sp, const void *needle, size_t n);
void fake_store_clear(void);

/* --- memory --------------------------------------------------------------- */

/*
 * After `after` more allocations succeed, the next `count` fail (-1: all
 * until this is called again); fake_fail_alloc(-1, 0) turns it off. Counts
 * every allocation a host call makes for the plugin (alloc, messages, store,
 * timers, cold reads), not the fake's own records.
 */
void fake_fail_alloc(long after, long count);
unsigned long fake_alloc_failures(void); /* allocations refused so far */
/*
 * The same for the writes of one space (kv_put and kv_del, or cold_put,
 * cold_del and cold_del_range): a refused write returns -1 and changes
 * nothing, as a write that could not be queued.
 */
void fake_fail_writes(enum fake_space sp, long after, long count);
unsigned long fake_write_failures(enum fake_space sp);
/* The same for kv_get and kv_scan (answer -1, as a host that could not read). */
void fake_fail_reads(long after, long count);
/* The same for timer_add (answers NULL). */
void fake_fail_timers(long after, long count);
unsigned long fake_timer_failures(void);
long fake_live_blocks(void); /* blocks handed to the plugin (alloc, kv_get, msg_encode) not freed */

/* --- log and holds -------------------------------------------------------- */

size_t fake_log_count(void);
const char *fake_log_line(size_t i);
int fake_log_level(size_t i);
size_t fake_log_grep(const char *text); /* lines containing text */
void fake_log_clear(void);

enum fake_hold { FAKE_HOLD_NONE, FAKE_HOLD_HELD, FAKE_HOLD_RELEASED, FAKE_HOLD_DISCARDED };

/* A DELIVER that returned SP_HOLD is held until the plugin's release() or discard(). */
enum fake_hold fake_hold_state(uint64_t hold_id);

#endif
