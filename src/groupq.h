/*
 * groupq.h - the queue of each shared group: QoS 1/2 messages that no
 * member had room for, waiting for the first member that has. Loop thread
 * only.
 *
 * A group is named by its share key ("group\0filter", topic.h). Its queue
 * is a struct outq with no client (outq.h, q.group set): in memory up to
 * max_queued_in_memory entries and on disk beyond, bounded by
 * max_group_queued_messages / _bytes. With persistence on and a
 * persistent member in the group it is stored like a session's queue,
 * under a sid of its own: a session row whose client id starts with a byte
 * no UTF-8 client id has (0xFF), so no client can take it over. What goes in and out, and when, is the router's
 * business (router.c); this file keeps the queues, finds them, stores them
 * and brings them back at start-up.
 */
#ifndef SLUICE_GROUPQ_H
#define SLUICE_GROUPQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outq.h"

struct msg;

struct groupq {
	struct groupq *hnext; /* hash chain */
	struct groupq *end_next; /* a list the router builds of queues to end */
	char *share; /* "group\0filter" */
	size_t share_size;
	char *name; /* "$share/group/filter", for logs and $SYS */
	uint64_t sid; /* its key in the store; 0 when not stored */
	uint64_t lend_seq; /* the seq of the next stored copy lent out (groupq_lend) */
	uint64_t persistent_at; /* session_changes() when `persistent` was found (router) */
	bool persistent; /* the group had a persistent member then */
	uint64_t delivered; /* messages handed to members since start */
	struct outq q;
};

/* The group's queue, or NULL when it has none. */
struct groupq *groupq_find(const char *share);
/* The group's queue, made (and stored) when it has none; NULL when out of memory. */
struct groupq *groupq_get(const char *share);
/* Is what joins the queue stored? Yes while the group has a persistent member (or a disk tail). */
void groupq_set_durable(struct groupq *g, bool durable);
/* The group ended: what waits is dropped (counted and logged), the queue goes. */
void groupq_end(struct groupq *g);

/* At the tail / the head of the queue. OUTQ_DELIVERED, OUTQ_QUOTA, or -1 (out of memory). */
int groupq_push(struct groupq *g, struct msg *m, uint8_t qos);
int groupq_push_front(struct groupq *g, struct msg *m, uint8_t qos);
/* The oldest waiting message (a reference for the caller) and its QoS, or NULL. */
struct msg *groupq_take(struct groupq *g, uint8_t *qos);
uint64_t groupq_queued(const struct groupq *g);
/*
 * A member whose session is not stored gets m: the group keeps a stored
 * copy (not in its queue in memory) until that delivery ends (outq
 * deletes it), so that after a crash the message is the group's again,
 * ahead of what waits. Returns the copy's seq, or 0 (persistence off).
 */
uint64_t groupq_lend(struct groupq *g, struct msg *m, uint8_t qos);
void groupq_unlend(struct groupq *g, uint64_t seq, struct msg *m);

/* Every queue, for $SYS (fn may not end queues). */
void groupq_each(void (*fn)(struct groupq *g, void *arg), void *arg);
size_t groupq_count(void);
/* Shutdown: from now on no queue is made and an ending group drops nothing from the store. */
void groupq_stop(void);
bool groupq_stopping(void);
/* Frees every queue (shutdown, after the sessions; the store keeps them). Ends groupq_stop(). */
void groupq_free_all(void);

/* --- start-up (session.c reads the store) --- */

/* Is this session row a group's queue? Then make it; -1 when out of memory. */
bool groupq_is_row(const char *client_id);
int groupq_restore(uint64_t sid, const char *client_id, uint64_t next_seq);
/* The restored queue of sid, or NULL (while the restore runs). */
struct groupq *groupq_by_sid(uint64_t sid);
/* A row of it was read back (with seq): lent copies are handed out after it. */
void groupq_restored_row(struct groupq *g, uint64_t seq);

#endif
