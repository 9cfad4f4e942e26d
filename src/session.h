/*
 * session.h - per-client-id state that outlives connections: the registry
 * of sessions, their lifecycle (attach, detach, expiry, end), the will,
 * the subscriptions, and what of them is kept in the store.
 *
 * A session is attached to at most one connection; while detached it keeps
 * queueing until it expires. Its outgoing side (window, queue, packet ids,
 * incoming QoS 2 ids) is the struct outq embedded in it (outq.h); session.c
 * keeps the queue's view of the session (connection, store key, durability)
 * up to date.
 *
 * What the layers above must do when something happens to a session (keep
 * the topic tree in step with its subscriptions, publish its will, tell the
 * plugins) they say once at start-up with session_set_events(): session.c
 * never calls up.
 */
#ifndef SLUICE_SESSION_H
#define SLUICE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "outq.h"
#include "timers.h"

struct conn;

struct sub_rec {
	struct sub_rec *next;
	char *filter; /* as subscribed, $share/ prefix included */
	uint8_t options;
	uint32_t subid;
	void *group; /* shared: its group in the router's tree, once looked up (router.c) */
};

struct session {
	struct session *hnext; /* hash chain */
	uint64_t sid; /* its key in the store; 0 while it has never been stored */
	uint64_t disconnected_wall; /* when it went offline (wall ms); 0 while connected */
	struct conn *conn; /* NULL while offline */
	struct timer expiry_timer;

	struct sub_rec *subs;
	struct outq q; /* the outgoing side */

	/* A slot the router owns (router.c): the message being routed and this
	 * session's place in that message's match list. */
	uint64_t route_stamp;
	uint32_t route_idx;
	uint32_t shared_subs; /* its shared subscriptions (router.c counts them) */

	uint32_t will_delay; /* seconds (MQTT 5) */
	struct msg *will; /* will message, or NULL */
	struct timer will_timer;
	char *username; /* of its last CONNECT, or NULL */
	uint16_t realm; /* the security rules of its last connection's listener (auth.h) */
	uint64_t connected_wall; /* when its connection was accepted (wall ms); 0 never */

	uint32_t expiry_interval; /* seconds; UINT32_MAX = never */
	uint32_t n_subs;
	uint8_t version;
	bool clean; /* ends with its connection (3.1.1 clean session, 5 expiry 0) */
	char client_id[]; /* in the same allocation */
};

/* What happens to sessions that the layers above act on; set once at start-up. */
struct session_events {
	struct outq_events q; /* the outgoing side's events */
	/* A subscription was added or changed (the topic tree follows): 0 or -1 (OOM). */
	int (*sub_added)(struct session *s, const char *filter, size_t len, uint8_t options,
			 uint32_t subid, bool *existed);
	void (*sub_removed)(struct session *s, const char *filter, size_t len);
	/* The connection is gone (graceful: a DISCONNECT without will was received). */
	void (*detached)(struct session *s, bool graceful);
	/* The will is due: publish it (borrowed; the callee takes its own reference). */
	void (*will)(struct session *s, struct msg *will);
	/* The session ends: called before it is freed, its subscriptions already removed. */
	void (*ending)(struct session *s);
};

void session_set_events(const struct session_events *ev);

struct session *session_find(const char *client_id);
/* Creates an empty session (one reference held by the table). NULL on OOM. */
struct session *session_create(const char *client_id, uint8_t version);
/* Ends a session: unsubscribes, publishes a pending will, drops its queue, frees. */
void session_destroy(struct session *s);
size_t session_count(void);
/* Calls fn for every session (fn must not create or destroy sessions). */
void session_each(void (*fn)(struct session *s, void *arg), void *arg);
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

/* Will handling. */
void session_set_will(struct session *s, struct msg *will, uint32_t delay);
void session_clear_will(struct session *s);

/* Kept in the store: persistence is on and the session outlives its connection. */
bool session_persistent(const struct session *s);
/* Sets the session expiry interval (CONNECT, DISCONNECT); session_save() stores it. */
void session_set_expiry(struct session *s, uint32_t seconds);
/* The username of the client's CONNECT (copied; NULL for none). 0 or -1 (OOM). */
int session_set_username(struct session *s, const char *name, size_t len);
/* Writes the session row (expiry, will, ...) when the session is persistent. */
void session_save(struct session *s);
/* Grows whenever a session's expiry or subscriptions change, or a session ends. */
uint64_t session_changes(void);
/* A fresh key in the store for a session or a shared group queue (groupq.c). */
uint64_t session_new_sid(void);

/* Start-up: rebuilding sessions from the store (store_restore's callbacks). */
struct store_restore_ops;
void session_restore_ops(struct store_restore_ops *ops);
/* After the restore: expire what expired while the broker was down, arm wills and timers. */
void session_restore_finish(uint64_t heartbeat_wall);

#endif
