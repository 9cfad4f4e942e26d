/*
 * store.h - durable state in SQLite, written by one writer thread with group
 * commit; the loop never waits on the disk.
 *
 * The loop describes changes as operations (store_*_put/_del/...). They go
 * into the open batch. store_kick() hands the open batch to the writer when
 * it is idle; while it is busy, operations pile up in the next batch, so
 * under load one transaction carries everything that arrived during the
 * previous commit. store_after_commit() queues a callback that runs on the
 * loop once everything queued before it is committed: that is how an
 * acknowledgement waits for its message to be on disk. Callbacks run in the
 * order they were queued.
 *
 * With persistence off none of this exists: every call is a no-op and
 * store_after_commit() runs its callback at once.
 *
 * Strings and blobs passed in are copied; a message passed in is referenced
 * until the operation is done (the writer reads only its immutable fields).
 */
#ifndef SLUICE_STORE_H
#define SLUICE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct msg;

/* Opens (or creates) the database, checks and migrates its schema. 0 or -1 (logged). */
int store_open(const struct config *cfg);
bool store_on(void);
/*
 * Starts the writer thread (after the restore). wake is called from the
 * writer thread after each commit: it must be thread-safe and make the loop
 * call store_poll() soon.
 */
int store_start(void (*wake)(void));
/* Commits what is queued, stops the writer, closes the database. */
void store_close(void);

/* --- the restore, at start-up, on the loop thread ----------------------------- */

struct store_session_row {
	uint64_t sid;
	const char *client_id;
	uint8_t version;
	uint32_t expiry_interval;
	uint64_t disconnected_wall; /* 0: it was connected when the broker stopped */
	struct msg *will; /* NULL or a message with one reference, which the callee takes */
	uint32_t will_delay;
	uint64_t next_seq;
	const char *username; /* of its last CONNECT, or NULL */
	uint16_t realm; /* its last listener's security rules (auth.h) */
};

struct store_delivery_row {
	uint64_t seq;
	struct msg *msg; /* one reference, which the callee takes */
	uint8_t qos, state;
	bool retain;
	uint16_t packet_id;
	const uint32_t *subids;
	size_t n_subids;
	const char *share; /* "group\0filter" or NULL */
};

struct store_restore_ops {
	int (*session_row)(const struct store_session_row *r, void *arg);
	int (*sub)(uint64_t sid, const char *filter, uint8_t options, uint32_t subid, void *arg);
	/* Deliveries of one session in seq order: the first `in_memory` queued ones and
	 * every one in flight; then the number and first seq of those left on disk. */
	int (*delivery)(uint64_t sid, const struct store_delivery_row *r, void *arg);
	int (*on_disk)(uint64_t sid, uint64_t first_seq, uint64_t count, void *arg);
	int (*rx_qos2)(uint64_t sid, uint16_t packet_id, void *arg);
	int (*retained)(struct msg *m, void *arg); /* takes the reference */
	int (*kv)(const char *plugin, const void *k, size_t kl, const void *v, size_t vl,
		  void *arg);
	void *arg;
	uint32_t in_memory; /* queued deliveries per session to load */
};

/* Reads everything back. *heartbeat_wall is when the broker was last known alive. */
int store_restore(const struct store_restore_ops *ops, uint64_t *heartbeat_wall);

/* --- writes, from the loop thread ---------------------------------------------- */

/* The session row (r->will is borrowed here, not taken). */
void store_session_put(const struct store_session_row *r);
void store_session_del(uint64_t sid);
void store_sub_put(uint64_t sid, const char *filter, uint8_t options, uint32_t subid);
void store_sub_del(uint64_t sid, const char *filter);
/* A delivery row, with its message stored alongside (once per message); r is borrowed. */
void store_delivery_put(uint64_t sid, const struct store_delivery_row *r);
void store_delivery_update(uint64_t sid, uint64_t seq, uint8_t state, uint16_t packet_id);
/* Deletes the delivery, and its message once nothing refers to it. */
void store_delivery_del(uint64_t sid, uint64_t seq, uint64_t msg_id);
void store_rx_put(uint64_t sid, uint16_t packet_id);
void store_rx_del(uint64_t sid, uint16_t packet_id);
void store_retained_put(struct msg *m);
void store_retained_del(const char *topic, size_t len);
/*
 * Plugin state. These return -1 when the write could not even be queued
 * (out of memory), 0 otherwise (also with persistence off, when they do
 * nothing); a failure at commit reaches the next store_after_commit().
 */
int store_kv_put(const char *plugin, const void *k, size_t kl, const void *v, size_t vl);
int store_kv_del(const char *plugin, const void *k, size_t kl);
/* Cold plugin values: stored only, never read back at start-up (sluice_plugin.h). */
int store_cold_put(const char *plugin, const void *k, size_t kl, const void *v, size_t vl);
int store_cold_del(const char *plugin, const void *k, size_t kl);
/* Deletes every cold value of plugin with lo <= key < hi (byte order, as memcmp). */
int store_cold_del_range(const char *plugin, const void *lo, size_t lol, const void *hi,
			 size_t hil);
/* Reads one behind every write queued before; val NULL when absent, status < 0 on error. */
typedef void (*store_value_fn)(void *arg, int status, const void *val, size_t vlen);
void store_cold_get(const char *plugin, const void *k, size_t kl, store_value_fn fn, void *arg);

/* When the broker was last alive (for session expiry across a crash). */
void store_heartbeat(uint64_t wall_ms);

/* --- ordering ------------------------------------------------------------------ */

/*
 * status: 0 when every operation queued since the previous callback was
 * committed, else a negative error (-ENOSPC when the disk or
 * persistence_max_bytes is full, -ENOMEM when one of those operations was
 * lost to lack of memory before it reached the writer).
 */
typedef void (*store_done_fn)(void *arg, int status);
void store_after_commit(store_done_fn fn, void *arg);
/* True when an operation or callback is waiting (then acks must queue behind it). */
bool store_pending(void);
/* Hands the open batch to the writer if it is idle. Cheap; call after each burst of work. */
void store_kick(void);
/* Runs the callbacks of committed batches. Call when the loop wakes. */
void store_poll(void);

/* --- disk-backed queues ------------------------------------------------------- */

/*
 * Reads up to max deliveries of sid from seq first_seq on, behind every
 * write queued before, and hands them to fn on the loop (rows as in the
 * restore, but borrowed: fn takes a reference to each message it keeps).
 * n = 0 with status < 0 on error.
 */
typedef void (*store_loaded_fn)(void *arg, int status, const struct store_delivery_row *rows,
				size_t n);
void store_load_deliveries(uint64_t sid, uint64_t first_seq, size_t max, store_loaded_fn fn,
			   void *arg);

/*
 * Commit fences. store_fence() names the open batch: everything queued so
 * far is committed once store_fenced(fence) turns false. on_commit runs on
 * the loop after each committed batch (sessions waiting on a fence go on).
 */
uint64_t store_fence(void);
bool store_fenced(uint64_t fence);
void store_set_commit_hook(void (*on_commit)(void));

/* Histogram bounds of the commits' time (seconds) and size (operations in one transaction). */
#define STORE_TIME_BUCKETS 14
#define STORE_SIZE_BUCKETS 12
extern const double store_time_bounds[STORE_TIME_BUCKETS];
extern const double store_size_bounds[STORE_SIZE_BUCKETS];

/* Counters for $SYS and /metrics. */
struct store_stats {
	uint64_t commits, ops, failed_commits;
	uint64_t db_bytes;
	/* commits that took at most store_time_bounds[i] seconds ([last]: longer), and in all */
	uint64_t time_counts[STORE_TIME_BUCKETS + 1];
	double time_sum;
	/* commits of at most store_size_bounds[i] operations ([last]: more) */
	uint64_t size_counts[STORE_SIZE_BUCKETS + 1];
};
void store_get_stats(struct store_stats *st);

#endif
