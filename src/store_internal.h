/*
 * store_internal.h - what the two halves of the store share: the loop's
 * side (store.c: queueing operations, batches, callbacks, the writer
 * thread's hand-over) and the database's side (store_db.c: schema,
 * migrations, restore, executing a batch). Nothing outside the store
 * includes this.
 */
#ifndef SLUICE_STORE_INTERNAL_H
#define SLUICE_STORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "store.h"

enum op_type {
	OP_SESSION_PUT,
	OP_SESSION_DEL,
	OP_SUB_PUT,
	OP_SUB_DEL,
	OP_DELIVERY_PUT,
	OP_DELIVERY_UPDATE,
	OP_DELIVERY_DEL,
	OP_RX_PUT,
	OP_RX_DEL,
	OP_RETAINED_PUT,
	OP_RETAINED_DEL,
	OP_KV_PUT,
	OP_KV_DEL,
	OP_HEARTBEAT,
	OP_DONE, /* a store_after_commit callback: ends a unit */
	OP_LOAD, /* a read of deliveries for a disk-backed queue */
	OP_NOP, /* nothing: makes a batch exist so that a fence clears */
	OP_COLD_PUT,
	OP_COLD_DEL,
	OP_COLD_GET, /* a read: the value comes back in blob2 */
	OP_COLD_DEL_RANGE, /* keys from blob (included) to blob2 (excluded) */
};

/* A delivery as the writer read it: numbers, and offsets into `bytes`. */
struct raw_row {
	uint64_t seq, msg_id;
	uint8_t qos, state;
	bool retain;
	uint16_t packet_id;
	size_t sub_off, sub_len, share_off, share_len, data_off, data_len;
};

/* The rows of an OP_LOAD. The writer fills raw/bytes; the loop decodes them. */
struct loaded {
	struct raw_row *raw;
	size_t n, cap;
	struct buf bytes;
};

struct op {
	uint8_t type;
	int status; /* OP_DONE / OP_LOAD: result, set by the writer */
	int64_t i[6];
	char *text, *text2; /* owned */
	uint8_t *blob, *blob2; /* owned */
	size_t blob_len, blob2_len;
	struct msg *msg; /* referenced */
	void *fn, *arg; /* OP_DONE: store_done_fn; OP_LOAD: store_loaded_fn */
	struct loaded *load; /* OP_LOAD: the rows read */
};

struct batch {
	struct batch *next;
	uint64_t seq;
	struct op *ops;
	size_t n, cap;
	/* (sid, seq) -> index of its OP_DELIVERY_PUT in ops, for cancelling (below) */
	struct put_slot *puts;
	size_t puts_used, puts_cap;
};

struct put_slot {
	uint64_t sid, seq; /* sid 0: free */
	size_t idx;
};

/* Opens, checks and migrates the database of cfg; prepares the statements. 0 or -1 (logged). */
int store_db_open(const struct config *cfg);
bool store_db_is_open(void);
void store_db_close(void);
/* SQLite's heap in bytes (sqlite3_memory_used: every connection, either thread). */
uint64_t store_db_heap(void);
/* Reads everything back (loop thread, before the writer starts). */
int store_db_restore(const struct store_restore_ops *ops, uint64_t *heartbeat_wall);
/*
 * Executes b in one transaction; when that fails, unit by unit, setting
 * each callback's status. Returns how many units could not be stored. Runs
 * on the writer thread (or on the loop while there is none).
 */
unsigned store_db_write(struct batch *b);

#endif
