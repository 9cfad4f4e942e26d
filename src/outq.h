/*
 * outq.h - a session's outgoing side: the QoS 1/2 window in flight, the
 * queue behind it (in memory, with a disk-backed tail when persistent), the
 * packet identifiers, and the incoming QoS 2 identifiers awaiting PUBREL.
 *
 * A struct outq is embedded in its session. It knows of the session only
 * what it needs and what session.c keeps up to date in it (the connection,
 * the store key, whether the session is durable): it never calls up. What
 * happens to deliveries is reported through the outq_events table the layer
 * above sets once at start-up (plugins hear of acknowledgements, shared
 * deliveries of an ending session go to another member).
 *
 * Flow: outq_deliver() puts a message in flight when the window has room
 * and the client is connected, otherwise at the end of the queue. An
 * acknowledgement frees a slot and the queue moves up. Queued entries keep
 * publish order; the inflight list is in send order, so redelivery after a
 * reconnect keeps it too [MQTT-4.6.0-1].
 *
 * Pointer parameters are borrowed; the queue takes its own message references.
 */
#ifndef SLUICE_OUTQ_H
#define SLUICE_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

struct conn;
struct session;
struct store_delivery_row;
struct tail_load;

enum out_state {
	OUT_QUEUED, /* waiting for a window slot or a connection */
	OUT_PUBLISHED, /* PUBLISH sent, awaiting PUBACK (QoS 1) or PUBREC (QoS 2) */
	OUT_RELEASED, /* PUBREL sent, awaiting PUBCOMP */
};

struct out_entry {
	struct out_entry *next, *prev;
	struct msg *msg;
	uint8_t qos; /* effective QoS for this subscriber */
	uint8_t state; /* enum out_state */
	bool retain; /* RETAIN flag to send */
	bool sent_once; /* a PUBLISH went out: resend with DUP */
	bool stored; /* a delivery row exists in the store */
	bool prepared; /* QoS 2: packet id chosen and being stored before the send */
	uint64_t fence; /* store batch that must commit before it is sent, or 0 */
	uint16_t packet_id;
	uint64_t seq; /* position in the session's queue, also its key in the store */
	uint16_t n_subids;
	uint32_t subid; /* the first subscription identifier */
	uint32_t *more_subids; /* the rest, when n_subids > 1 */
	char *share; /* "group\0filter" when delivered through a shared subscription */
	/* A copy of it kept in its group's stored queue while it is out (groupq_lend), or 0s. */
	uint64_t lent_sid, lent_seq;
};

struct out_list {
	struct out_entry *head, *tail;
	uint32_t n;
};

struct outq {
	struct out_list inflight;
	struct out_list queue;
	uint64_t queued_bytes;
	uint64_t next_seq; /* seq of the next entry */
	/*
	 * Disk-backed tail of the queue (persistence on): disk_n entries from
	 * seq disk_first_seq on are only in the store, all after every entry
	 * in `queue`; they are read back as the queue drains.
	 */
	uint64_t disk_first_seq, disk_n;
	struct tail_load *load; /* a read of the disk tail on its way, or NULL */

	uint16_t *rx_qos2; /* incoming QoS 2 packet ids awaiting PUBREL */
	uint32_t n_rx_qos2, cap_rx_qos2; /* at most 65535 ids exist */

	/* The session's side, kept up to date by session.c. */
	struct session *owner;
	const char *client_id; /* for log lines */
	struct conn *conn; /* NULL while offline */
	uint64_t sid; /* the session's key in the store; 0 when not stored */
	bool durable; /* persistence is on and the session outlives its connection */
	bool clean; /* the session ends with its connection */
	bool group; /* a shared group's queue (groupq.c): no client, the group limits */

	uint16_t next_packet_id;
	uint16_t ids_free; /* ids from next_packet_id on known to be free */
	bool fence_wait; /* its queue waits for a store commit (a QoS 2 message) */
};

/* What the queue reports; owner is the outq's owner. Set once (outq_set_events). */
struct outq_events {
	/*
	 * A QoS 1/2 delivery completed: reason < 0x80 when the client
	 * acknowledged it (PUBACK, or PUBCOMP for QoS 2), the client's reason
	 * code >= 0x80 when it refused it (PUBACK or PUBREC) [MQTT-4.3.3-4].
	 */
	void (*acked)(struct session *owner, struct msg *m, uint8_t qos, const char *share,
		      uint8_t reason);
	/* A delivery ended without completing; why is for logs. */
	void (*dropped)(struct session *owner, struct msg *m, uint8_t qos, const char *share,
			const char *why);
	/*
	 * An unacknowledged shared delivery of an ending session: another
	 * member may take it (it is not dropped: no dropped event for it).
	 */
	void (*orphaned)(struct session *owner, struct msg *m, uint8_t qos, const char *share);
	/* A group queue (q->group) read entries back from its disk tail: members may take them. */
	void (*refilled)(struct outq *q);
	/* A client's window has room again and its queue is empty (an acknowledgement, a reconnect). */
	void (*room)(struct session *owner);
	/* A QoS 2 delivery reached PUBREC (its acked event comes at PUBCOMP). */
	void (*received)(struct session *owner, struct msg *m, const char *share);
};

void outq_set_events(const struct outq_events *ev);
/* Asks the store to tell the queues when a batch commits (fenced QoS 2 messages go on). */
void outq_start(void);

void outq_init(struct outq *q, struct session *owner, const char *client_id);
/* Frees every entry (no events: outq_drop_all first for those) and cancels a disk read. */
void outq_free(struct outq *q);
/* Frees the blocks kept for new entries (shutdown, leak checks). */
void outq_drain_caches(void);
/*
 * The session left shared group share ("group\0filter"): its unacknowledged
 * deliveries of the group (QoS 2 ones already sent excepted) leave with an
 * orphaned event; the ones on the disk tail stay.
 */
void outq_orphan_share(struct outq *q, const char *share);
/* Every entry leaves with a dropped or (shared) an orphaned event: the session ends. */
void outq_drop_all(struct outq *q);

/*
 * Delivers m at qos with the given RETAIN flag and subscription ids
 * (borrowed). share is the shared group ("group\0filter") or NULL.
 * Returns OUTQ_DELIVERED (sent or queued), OUTQ_DROPPED (QoS 0 while
 * offline or under pressure, expired, too big), OUTQ_QUOTA (the queue
 * limit was reached), or -1 on OOM.
 */
enum { OUTQ_DELIVERED = 0, OUTQ_DROPPED = 1, OUTQ_QUOTA = 2 };
int outq_deliver(struct outq *q, struct msg *m, uint8_t qos, bool retain, const uint32_t *subids,
		 size_t n_subids, const char *share);
/*
 * The same for a delivery whose group keeps a stored copy (lent_sid,
 * lent_seq): the copy's row is deleted when the delivery ends, whatever
 * the end. Not taken (anything but OUTQ_DELIVERED): the caller still owns
 * the copy.
 */
int outq_deliver_lent(struct outq *q, struct msg *m, uint8_t qos, bool retain,
		      const uint32_t *subids, size_t n_subids, const char *share, uint64_t lent_sid,
		      uint64_t lent_seq);

/* Acknowledgements from the client. Return 0, or -1 when the id is unknown. */
int outq_on_puback(struct outq *q, uint16_t packet_id, uint8_t reason);
int outq_on_pubrec(struct outq *q, uint16_t packet_id, uint8_t reason);
int outq_on_pubcomp(struct outq *q, uint16_t packet_id);

/* Incoming QoS 2 packet ids (stored with the session when it is durable). */
bool outq_rx_has(const struct outq *q, uint16_t packet_id);
int outq_rx_add(struct outq *q, uint16_t packet_id);
int outq_rx_del(struct outq *q, uint16_t packet_id);
uint32_t outq_rx_count(const struct outq *q);

/*
 * Group queues (q->group): the oldest queued entry leaves the queue (and
 * the store) and is handed over: its message (one reference, the caller's)
 * and QoS. NULL when nothing is in memory now; a read of the disk tail may
 * then be on its way (refilled tells when it lands).
 */
struct msg *outq_take(struct outq *q, uint8_t *qos);
/* Writes every queued entry not stored yet (a queue that has just become durable). */
void outq_store_all(struct outq *q);
/* Puts m back at the head of a group queue (an ending member's delivery). OUTQ_* or -1. */
int outq_push_front(struct outq *q, struct msg *m, uint8_t qos, const char *share);

/* Moves queued entries into the window while there is room. */
void outq_pump(struct outq *q);
/* After a reconnect, once the CONNACK is out: resend the window with DUP, then pump. */
void outq_resume(struct outq *q);
/* How many QoS 1/2 messages may be in flight now (the client's Receive Maximum and ours). */
uint16_t outq_window(const struct outq *q);
/*
 * Connected, and room in the window for one more beside what is queued
 * (entries queued then are only waiting for their turn: a QoS 2 one for
 * its stored state), with nothing on disk: a message would go out soon.
 */
bool outq_ready(const struct outq *q);
uint32_t outq_inflight(const struct outq *q);
/* Waiting behind the window, in memory and on disk. */
uint64_t outq_queued(const struct outq *q);

/* Start-up: entries and ids read back from the store (nothing is written back). */
int outq_restore_entry(struct outq *q, const struct store_delivery_row *r);
void outq_restore_disk(struct outq *q, uint64_t first_seq, uint64_t count);
int outq_restore_rx(struct outq *q, uint16_t packet_id);

#endif
