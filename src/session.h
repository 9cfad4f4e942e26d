/*
 * session.h - per-client-id state that outlives connections.
 *
 * A session holds the client's subscriptions, its outgoing QoS 1/2 window
 * (inflight), the messages waiting behind that window (queue), the packet
 * identifiers of incoming QoS 2 messages not yet released, and the will.
 * It is attached to at most one connection; while detached it keeps
 * queueing until it expires.
 *
 * Outgoing flow: session_deliver() puts a message in flight when the window
 * has room and the client is connected, otherwise at the end of the queue.
 * An acknowledgement (PUBACK, PUBCOMP) frees a slot and the queue moves up.
 * Queued entries keep publish order; the inflight list is in send order, so
 * redelivery after a reconnect keeps it too [MQTT-4.6.0-1].
 */
#ifndef SLUICE_SESSION_H
#define SLUICE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "timers.h"

struct conn;

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
};

struct out_list {
	struct out_entry *head, *tail;
	uint32_t n;
};

struct sub_rec {
	struct sub_rec *next;
	char *filter; /* as subscribed, $share/ prefix included */
	uint8_t options;
	uint32_t subid;
};

struct session {
	struct session *hnext; /* hash chain */
	uint64_t sid; /* its key in the store; 0 while it has never been stored */
	uint64_t next_seq; /* seq of the next out_entry */
	uint64_t disconnected_wall; /* when it went offline (wall ms); 0 while connected */
	struct conn *conn; /* NULL while offline */
	struct timer expiry_timer;

	struct sub_rec *subs;

	struct out_list inflight;
	struct out_list queue;
	uint64_t queued_bytes;
	/*
	 * Disk-backed tail of the queue (persistence on): disk_n entries from
	 * seq disk_first_seq on are only in the store, all after every entry
	 * in `queue`; they are read back as the queue drains.
	 */
	uint64_t disk_first_seq, disk_n;

	uint16_t *rx_qos2; /* incoming QoS 2 packet ids awaiting PUBREL */
	uint32_t n_rx_qos2, cap_rx_qos2; /* at most 65535 ids exist */

	uint64_t route_stamp; /* router: id of the message being routed */
	uint32_t route_idx; /* router: this session's slot in its match list */

	uint32_t will_delay; /* seconds (MQTT 5) */
	struct msg *will; /* will message, or NULL */
	struct timer will_timer;

	uint32_t expiry_interval; /* seconds; UINT32_MAX = never */
	uint32_t n_subs;
	uint16_t next_packet_id;
	uint16_t ids_free; /* ids from next_packet_id on known to be free */
	uint8_t version;
	bool clean; /* ends with its connection (3.1.1 clean session, 5 expiry 0) */
	bool loading; /* a read of the disk tail is on its way */
	bool fence_wait; /* its queue waits for a store commit (a QoS 2 message) */
	char client_id[]; /* in the same allocation */
};

void session_init(void);
struct session *session_find(const char *client_id);
/* Creates an empty session (one reference held by the table). NULL on OOM. */
struct session *session_create(const char *client_id, uint8_t version);
/* Ends a session: unsubscribes, drops queues, re-routes shared deliveries, frees. */
void session_destroy(struct session *s);
size_t session_count(void);
void session_destroy_all(void);

/* Connection life: attach binds c (a will still waiting out its delay is cancelled);
 * resume, once the CONNACK is out, resends the inflight window with DUP and
 * drains the queue. */
void session_attach(struct session *s, struct conn *c);
void session_resume(struct session *s);
/* The connection is gone; graceful = a DISCONNECT without will was received. */
void session_detach(struct session *s, bool graceful);

/* Subscriptions (the topic tree entries are kept in step). */
int session_subscribe(struct session *s, const char *filter, size_t len, uint8_t options,
		      uint32_t subid, bool *existed);
int session_unsubscribe(struct session *s, const char *filter, size_t len);

/*
 * Delivers m to s at qos with the given RETAIN flag and subscription ids
 * (borrowed). share is the shared group ("group\0filter", borrowed) or NULL.
 * Returns SESSION_DELIVERED (sent or queued), SESSION_DROPPED (QoS 0 while
 * offline or under pressure, expired, too big), SESSION_QUOTA (the queue
 * limit was reached), or -1 on OOM.
 */
enum { SESSION_DELIVERED = 0, SESSION_DROPPED = 1, SESSION_QUOTA = 2 };
int session_deliver(struct session *s, struct msg *m, uint8_t qos, bool retain,
		    const uint32_t *subids, size_t n_subids, const char *share);

/* Acknowledgements from the client. Return 0, or -1 when the id is unknown. */
int session_on_puback(struct session *s, uint16_t packet_id);
int session_on_pubrec(struct session *s, uint16_t packet_id, uint8_t reason);
int session_on_pubcomp(struct session *s, uint16_t packet_id);

/* Incoming QoS 2 packet ids. */
bool session_rx_qos2_has(const struct session *s, uint16_t packet_id);
int session_rx_qos2_add(struct session *s, uint16_t packet_id);
int session_rx_qos2_del(struct session *s, uint16_t packet_id);

/* Will handling. */
void session_set_will(struct session *s, struct msg *will, uint32_t delay);
void session_clear_will(struct session *s);

/* Moves queued entries into the window while there is room (after a slot frees). */
void session_pump(struct session *s);
/* How many QoS 1/2 messages may be in flight to s now (its Receive Maximum and ours). */
uint16_t session_window(const struct session *s);

/* Kept in the store: persistence is on and the session outlives its connection. */
bool session_persistent(const struct session *s);
/* Writes the session row (expiry, will, ...) when the session is persistent. */
void session_save(struct session *s);

/* Start-up: rebuilding sessions from the store (store_restore's callbacks). */
struct store_restore_ops;
void session_restore_ops(struct store_restore_ops *ops);
/* After the restore: expire what expired while the broker was down, arm wills and timers. */
void session_restore_finish(uint64_t heartbeat_wall);

#endif
