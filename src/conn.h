/*
 * conn.h - one client connection, whatever carries it (TCP or WebSocket).
 *
 * The listener owns the socket and calls in with bytes read, when the socket
 * is writable and when it closed. Everything else - framing, decoding,
 * keep alive, topic aliases, the output buffer - lives here, so both
 * transports behave identically.
 *
 * Output: encoders append to c->out. The buffer keeps `headroom` bytes in
 * front of the first unsent byte (the listener needs LWS_PRE there), so the
 * listener writes straight from it without a copy.
 *
 * Closing: conn_close() marks the connection closing, optionally queues a
 * DISCONNECT, and asks the listener to flush and close. The listener calls
 * conn_on_closed() exactly once when the transport is gone; that frees c.
 *
 * Upwards, conn.c knows nothing of MQTT's meaning: every framed packet and
 * the end of the transport go to the conn_handler set at start-up (the
 * protocol layer), as the transport's events come down through conn_ops.
 */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "framer.h"
#include "timers.h"

struct conn;
struct session;
struct msg;

struct conn_ops {
	void (*want_write)(void *tctx); /* call conn_pending when writable */
	void (*close)(void *tctx); /* flush what is pending (bounded in time), then close */
	void (*pause_rx)(void *tctx, bool pause); /* stop / resume reading from the socket */
	/* The CN of the TLS client certificate into buf: 0, or -1 (none; NULL: no TLS here). */
	int (*peer_cn)(void *tctx, char *buf, size_t len);
};

/* What a connection hands up; set once at start-up with conn_set_handler(). */
struct conn_handler {
	/* One framed packet; 0, or -1 once it called conn_close(). */
	int (*packet)(struct conn *c, const uint8_t *pkt, size_t len);
	/* The transport is gone (once per connection, before c is freed): let go of c. */
	void (*closed)(struct conn *c);
};

void conn_set_handler(const struct conn_handler *h);

enum conn_state {
	CONN_NEW, /* waiting for CONNECT */
	CONN_ACTIVE, /* CONNACK sent */
	CONN_CLOSING, /* no more input handled */
	CONN_AUTH, /* CONNECT received, an enhanced authentication under way (proto_auth.c) */
};

struct alias_slot {
	char *topic; /* NULL when free */
	uint32_t hash;
	uint16_t alias;
};

struct scram;

struct conn {
	struct conn *next, *prev; /* all connections */
	const struct conn_ops *ops;
	void *tctx;
	struct session *session;
	const char *client_id; /* the session's, for log lines; "" before CONNECT */

	struct framer framer;
	struct buf out;
	size_t out_off; /* first unsent byte */
	uint16_t headroom;
	uint8_t state; /* enum conn_state */
	uint8_t version;
	uint32_t client_max_packet; /* what the client told us (MQTT 5); 0 = no limit */

	uint64_t last_rx_ms;
	uint64_t chunk_ms; /* when the chunk being read arrived: one clock read per read */
	struct timer timer; /* connect timeout, then keep alive */
	uint64_t bytes_in, bytes_out;

	/* incoming topic aliases: alias_in[alias] = topic */
	char **alias_in;
	/* outgoing topic aliases: open-addressed topic -> alias */
	struct alias_slot *alias_out;

	uint32_t refs; /* holders besides the transport (acks waiting for a commit) */
	uint16_t keep_alive; /* effective, seconds; 0 = none */
	uint16_t client_receive_max; /* what the client told us (MQTT 5) */
	uint16_t client_alias_max;
	uint16_t alias_in_max;
	uint16_t alias_out_cap, alias_out_used;
	bool websocket;
	bool graceful; /* DISCONNECT received without will */
	bool write_requested;
	bool rx_paused; /* reading stopped until the output drains */
	bool request_problem_info;
	bool gone; /* the transport closed; freed when the last reference goes */
	bool own_client_id; /* client_id is this conn's copy (conn_part_session) */
	bool identity_as_username; /* TLS use_identity_as_username: the certificate's CN */
	bool lingering; /* half-closed, dropping input until the peer closes (conn_linger) */
	uint16_t realm; /* its listener's security rules (auth_realm_of_listener) */
	uint8_t auth_mech; /* enum scram_mech of the CONNECT (SCRAM_NONE), for re-authentication */
	struct scram *scram; /* the SCRAM exchange under way, or NULL (proto_auth.c) */
	uint8_t *auth_connect; /* in CONN_AUTH: a copy of the CONNECT being authenticated */
	size_t auth_connect_len;
	const char *auth_cred_why; /* why the user has no SCRAM credential (for the log), or NULL */
	char peer[]; /* address:port, for log lines; in the same allocation */
};

struct conn *conn_new(const struct conn_ops *ops, void *tctx, bool websocket, const char *peer,
		      size_t headroom);
/*
 * The transport sent everything of a closing connection and now only drains
 * what the peer still sends: the session goes offline now (the closed
 * handler runs; it runs again, harmlessly, at conn_on_closed).
 */
void conn_linger(struct conn *c);
/* The CN of the connection's TLS client certificate into buf: 0, or -1 when it has none. */
int conn_peer_cn(struct conn *c, char *buf, size_t len);
/* Bytes read. Returns 0, or -1 when the connection must close now (nothing to flush). */
int conn_on_data(struct conn *c, const uint8_t *p, size_t n);
/* Pending output: *p has c->headroom writable bytes before it. Returns the byte count. */
size_t conn_pending(struct conn *c, uint8_t **p);
void conn_sent(struct conn *c, size_t n);
/* True when closing and everything is flushed: the listener should close now. */
bool conn_done(const struct conn *c);
void conn_on_closed(struct conn *c);
/*
 * c no longer belongs to its session (closed, taken over, or the session
 * ended) but may live on, flushing or with acks waiting for a commit: it
 * keeps its own copy of the client id for its log lines, since the
 * session's may be freed first.
 */
void conn_part_session(struct conn *c);
/* Keeps c allocated past its close (check c->gone before using it). */
struct conn *conn_ref(struct conn *c);
void conn_unref(struct conn *c);
/* True when c can still be written to. */
bool conn_usable(const struct conn *c);

/*
 * The output buffer, ready for appending (headroom in place). It is
 * allocated on first use and given back once drained (the blocks are
 * cached), so idle connections hold none. NULL on OOM.
 */
struct buf *conn_out(struct conn *c);
/* Frees the cached output blocks (shutdown). */
void conn_drain_caches(void);

/* Asks the listener to write; called after appending to c->out. */
void conn_flush(struct conn *c);
/*
 * Starts closing. For MQTT 5, reason >= 0x80 sends DISCONNECT with that
 * reason (and reason_string when the client allows problem info).
 * why is logged with the client id and peer. reason < 0 sends nothing.
 */
void conn_close(struct conn *c, int reason, const char *why);

/* One PUBLISH to write: the message and what is particular to this delivery. */
struct conn_publish {
	const struct msg *msg;
	uint8_t qos;
	bool retain; /* the RETAIN flag to send */
	uint16_t packet_id; /* QoS 1/2 */
	uint16_t n_subids;
	uint32_t subid; /* the first subscription identifier */
	const uint32_t *more_subids; /* the other n_subids - 1 */
};

/*
 * Writes the PUBLISH for p. Returns 0 when written, 1 when it cannot be sent
 * to this client (expired, larger than the client's maximum packet size),
 * -1 when out of memory.
 */
int conn_send_publish(struct conn *c, const struct conn_publish *p, bool dup);
/* PUBACK/PUBREC/PUBREL/PUBCOMP with an optional reason string. */
int conn_send_ack(struct conn *c, uint8_t type, uint16_t packet_id, uint8_t reason,
		  const char *reason_string);
/* The same with extra MQTT 5 properties (raw block, e.g. user properties). */
int conn_send_ack_props(struct conn *c, uint8_t type, uint16_t packet_id, uint8_t reason,
			const char *reason_string, const struct buf *extra);

/* Incoming topic alias map (MQTT 5). */
int conn_alias_set(struct conn *c, uint16_t alias, const char *topic, size_t len);
const char *conn_alias_get(struct conn *c, uint16_t alias);

/* Output bytes not yet written: what back-pressure decisions look at. */
size_t conn_backlog(const struct conn *c);

size_t conn_count(void);
void conn_close_all(int reason);

#endif
