/*
 * sluice_plugin.h - the one header a sluice plugin includes.
 *
 * A plugin is a shared object loaded by a "plugin NAME" line of the broker's
 * configuration; the "plugin_opt_KEY VALUE" lines that follow it are its
 * options. It exports three functions:
 *
 *   int  sluice_plugin_version(void);      returns SLUICE_PLUGIN_API
 *   int  sluice_plugin_init(const struct sp_host *host, struct sp_plugin *self,
 *                           const struct sp_opt *opts, int n_opts, void **udata);
 *   void sluice_plugin_cleanup(void *udata);
 *
 * init registers callbacks with host->on() and returns 0 (or non-zero to stop
 * the broker's start-up, after logging why). cleanup runs at shutdown after
 * the STOP event, when no callback can run any more.
 *
 * Threading: everything happens on the broker's loop thread. A callback must
 * not block (no network, no sleep); long work needs a thread of the plugin's
 * own, whose results come back through a timer. Callbacks run in the order
 * the plugins appear in the configuration.
 *
 * Memory: pointers in an event are borrowed for the duration of the call.
 * Messages are immutable and reference counted: keep one past the callback
 * with host->msg_ref() and release it with host->msg_unref(). Memory the host
 * returns (kv_get) is released with host->free().
 *
 * Everything a plugin keeps across restarts goes through the kv_* calls:
 * the broker stores it with its own state (in memory when persistence is
 * off, in the broker's store otherwise), so a plugin needs no file of its own.
 * Writes follow the broker's own rule, acknowledgement after commit: a write
 * that cannot even be queued (out of memory) returns -1, and after_commit()
 * runs a function once everything written before it is on disk, with the
 * status of that commit (a full disk is reported there). A publisher's
 * PUBACK waits for the writes a PUBLISH callback made.
 *
 * Versions: SLUICE_PLUGIN_API changes only when a plugin built for the old
 * value would break. New host calls, events and event fields are appended;
 * a plugin that uses one checks that the broker has it, with
 * SP_HOST_HAS(host, member) for host calls; an older broker's host->on()
 * refuses an unknown event, and the event fields added with API 2 are
 * there only when SP_HOST_HAS(host, deliver) is true.
 *
 * Added in the second revision (plugin API 2): negative acknowledgements
 * (SP_EV_NACKED, sp_event.reason), the end of a session (SP_EV_SESSION_END),
 * CHOOSE answering "no member now" (SP_HOLD) or "not this group" (SP_SKIP),
 * sp_event.share_filter, and the host calls deliver, topic_match and
 * after_commit. Appended since: msg_add_user_props, subscribed and
 * msg_with_retain; then (all there when SP_HOST_HAS(host, redeliver)) the
 * events RECEIVED and GROUP_END, the DELIVER verdict KEEP, sp_event.moving,
 * and the host calls redeliver, durable, opt_where, listeners and msg_ids_after;
 * then acl_check with the AUTH and ACL_CHECK events; then (there when
 * SP_HOST_HAS(host, metric)) metrics: metrics_register and metric.
 */
#ifndef SLUICE_PLUGIN_H
#define SLUICE_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLUICE_PLUGIN_API 1

/* True when the broker's host table has member (it was appended after the first release). */
#define SP_HOST_HAS(host, member)                                                     \
	((host)->size >= offsetof(struct sp_host, member) + sizeof((host)->member) && \
	 (host)->member != NULL)

struct sp_plugin; /* the broker's handle for one loaded plugin */
struct sp_msg; /* a published message (immutable, reference counted) */
struct sp_timer; /* a plugin timer */
struct sp_metrics; /* where a plugin's collector reports its metrics (host->metric) */
struct sp_metric; /* one metric's name, help, type, label and $SYS leaf (below) */

struct sp_opt {
	const char *key; /* without the "plugin_opt_" prefix */
	const char *value;
};

enum sp_event_type {
	SP_EV_START, /* the broker is up; listeners open right after */
	SP_EV_STOP, /* the broker is stopping */
	SP_EV_CONNECT, /* a client connected (CONNACK sent) */
	SP_EV_DISCONNECT, /* a client's connection ended */
	SP_EV_SUBSCRIBE, /* before a subscription is applied: PASS or REJECT */
	SP_EV_UNSUBSCRIBE, /* a subscription was removed */
	SP_EV_PUBLISH, /* a message was published, before routing: PASS, REJECT or TAKE */
	SP_EV_DELIVER, /* a message is about to go to one session: PASS, SKIP or HOLD */
	SP_EV_CHOOSE, /* a shared group needs a member for a message: set member, or HOLD/SKIP */
	SP_EV_ACKED, /* a QoS 1/2 delivery completed (PUBACK / PUBCOMP) */
	SP_EV_DROPPED, /* a delivery ended without completing (session gone, expired, ...) */
	/* API 2: */
	SP_EV_NACKED, /* the client refused a delivery: PUBACK or PUBREC with reason >= 0x80
		       * (a plugin without a NACKED callback hears ACKED for QoS 1 and
		       * DROPPED for QoS 2 instead, as before API 2) */
	SP_EV_SESSION_END, /* a session ended (expired, clean, taken over clean): not a disconnect */
	/* Appended after API 2 (there when SP_HOST_HAS(host, redeliver)): */
	SP_EV_RECEIVED, /* a QoS 2 delivery reached PUBREC: the client has the message (PUBREL
			 * and PUBCOMP follow; ACKED comes at PUBCOMP) */
	SP_EV_GROUP_END, /* a shared group ended with its last member, and its queue with it
			  * (share_group, share_filter; client_id ""): no DROPPED follows for
			  * the messages that waited in it */
	/* Appended after API 2 (there when SP_HOST_HAS(host, acl_check)): */
	SP_EV_AUTH, /* a CONNECT's credentials (client_id, username, password, address),
		     * before the password file: ALLOW (connect, the file is not asked),
		     * REJECT (CONNACK 0x87 / 5, or res->reason >= 0x80 for MQTT 5) or
		     * PASS (the next plugin, then allow_anonymous and the password file) */
	SP_EV_ACL_CHECK, /* may client_id / username have access (SP_ACL_READ: a delivery,
			  * SP_ACL_WRITE: a PUBLISH or a will, SP_ACL_SUBSCRIBE: a
			  * SUBSCRIBE's filter) to topic? ALLOW, REJECT (denied) or PASS
			  * (the next plugin, then the acl_file); msg is the message for
			  * READ and WRITE */
	SP_EV__COUNT
};

enum sp_verdict {
	SP_PASS = 0, /* go on: next plugin, then the broker's own handling */
	SP_REJECT, /* PUBLISH/SUBSCRIBE: refuse with res->reason (and reason_string) */
	SP_TAKE, /* PUBLISH: the plugin keeps the message (it took a reference with
		  * msg_ref) and may hand it back later with host->route(); the
		  * publisher's acknowledgement is sent as for a routed message */
	SP_SKIP, /* DELIVER: not to this session; CHOOSE: not to this group */
	SP_HOLD, /* DELIVER: not now; the broker keeps the delivery under
		  * res->hold_id until host->release(hold_id) or host->discard(hold_id).
		  * CHOOSE: no member now; the same, and release offers the message
		  * to the group again (CHOOSE runs again) */
	/* Appended after API 2 (there when SP_HOST_HAS(host, redeliver)): */
	SP_KEEP, /* DELIVER: the plugin keeps this delivery itself (it took a reference
		  * with msg_ref) and hands it on later with host->redeliver; for the
		  * publisher it counts as delivered, not as "no matching subscribers" */
	/* Appended after API 2 (there when SP_HOST_HAS(host, acl_check)): */
	SP_ALLOW, /* AUTH, ACL_CHECK: allowed; the broker's own files are not asked */
};

struct sp_member {
	const char *client_id;
	bool online; /* connected */
	uint32_t inflight; /* unacknowledged QoS 1/2 messages */
	uint32_t queued; /* messages waiting in its queue */
};

struct sp_event {
	enum sp_event_type type;
	const char *client_id; /* the client concerned (publisher, recipient, subscriber) */
	const char *username; /* NULL when none */
	uint8_t protocol; /* 3 (3.1), 4 (3.1.1) or 5; 0 for a message a plugin routed
			   * (client_id is then the original publisher) */
	struct sp_msg *msg; /* PUBLISH, DELIVER, CHOOSE, ACKED, DROPPED */
	const char *filter; /* SUBSCRIBE, UNSUBSCRIBE: as sent, $share/ prefix included */
	const char *share_group; /* DELIVER, CHOOSE, ACKED, DROPPED: shared group or NULL */
	uint8_t qos; /* SUBSCRIBE: requested; DELIVER/ACKED/DROPPED: of this delivery */
	const struct sp_member *members; /* CHOOSE */
	size_t n_members; /* CHOOSE */
	bool graceful; /* DISCONNECT: a normal DISCONNECT packet ended it */
	uint64_t hold_id; /* DROPPED: the hold it was under, 0 for none */
	const char *why; /* DROPPED: reason, for logs */
	/* API 2: */
	uint8_t reason; /* ACKED: the client's reason code (0x00, 0x10); NACKED: its code >= 0x80 */
	const char *share_filter; /* with share_group: the group's filter, without "$share/G/" */
	/* Appended after API 2 (there when SP_HOST_HAS(host, redeliver)): */
	bool moving; /* DROPPED: the delivery is not over: it goes back to its shared group,
		      * for another member (its session ended before the client had it).
		      * DROPPED with client_id "" and share_group set: the group's own queue
		      * dropped it (expired, or no member left) */
	/* Appended after API 2 (there when SP_HOST_HAS(host, acl_check)): */
	const void *password; /* AUTH: as sent (not NUL-terminated), NULL when none */
	size_t password_len; /* AUTH */
	const char *address; /* AUTH: the client's address */
	const char *topic; /* ACL_CHECK: the topic (READ, WRITE) or filter (SUBSCRIBE) */
	int access; /* ACL_CHECK: SP_ACL_READ, SP_ACL_WRITE or SP_ACL_SUBSCRIBE */
};

struct sp_result {
	enum sp_verdict verdict;
	uint8_t reason; /* REJECT: MQTT 5 reason code (>= 0x80) */
	const char *reason_string; /* REJECT: optional; copied by the broker */
	uint64_t hold_id; /* HOLD: the plugin's name for the held delivery (non-zero) */
	size_t member; /* CHOOSE: index into members; leave as set to keep the broker's choice */
};

typedef int (*sp_callback)(const struct sp_event *ev, struct sp_result *res, void *udata);
typedef void (*sp_timer_fn)(void *arg);
typedef int (*sp_kv_fn)(const void *key, size_t klen, const void *val, size_t vlen, void *arg);

/* What a plugin needs to build a message (sp_host.msg_new). */
struct sp_msg_spec {
	const char *topic;
	size_t topic_len;
	const void *payload;
	size_t payload_len;
	uint8_t qos;
	bool retain;
	uint32_t expiry_s; /* message expiry interval in seconds; 0 = none */
	const char *sender; /* client id credited as publisher; NULL = the broker */
};

struct sp_host {
	uint32_t api; /* SLUICE_PLUGIN_API */
	uint32_t size; /* sizeof(struct sp_host): new calls are only appended */

	/* Registers cb for an event; one callback per event per plugin. */
	int (*on)(struct sp_plugin *self, enum sp_event_type ev, sp_callback cb);
	void (*log)(struct sp_plugin *self, int level, const char *fmt, ...)
		__attribute__((format(printf, 3, 4))); /* level: 0 error .. 4 debug */

	/* Reading a message. */
	const char *(*msg_topic)(const struct sp_msg *m);
	const void *(*msg_payload)(const struct sp_msg *m, size_t *len);
	uint8_t (*msg_qos)(const struct sp_msg *m);
	bool (*msg_retain)(const struct sp_msg *m);
	const char *(*msg_sender)(const struct sp_msg *m); /* "" when the broker */
	uint64_t (*msg_id)(const struct sp_msg *m);
	/* Wall-clock ms when it expires, 0 = never. */
	uint64_t (*msg_expiry)(const struct sp_msg *m);
	/* User properties in order: *pos starts at 0; returns 1 with a pair, 0 at the end. */
	int (*msg_user_prop)(const struct sp_msg *m, size_t *pos, const char **key, size_t *klen,
			     const char **val, size_t *vlen);

	/* Building messages. NULL when out of memory. */
	struct sp_msg *(*msg_new)(const struct sp_msg_spec *spec);
	/*
	 * A copy of m on another topic (NULL keeps it), without the user
	 * properties whose key is in drop_keys (n_drop of them). With
	 * restart_expiry its message expiry interval starts again from now
	 * (a delayed message expires counting from its release); otherwise the
	 * deadline is unchanged. Every other property is kept, in order.
	 */
	struct sp_msg *(*msg_rewrite)(const struct sp_msg *m, const char *topic,
				      const char *const *drop_keys, size_t n_drop,
				      bool restart_expiry);
	/* The whole message as bytes (free with host->free), and back; for kv_put. */
	int (*msg_encode)(const struct sp_msg *m, void **out, size_t *len);
	struct sp_msg *(*msg_decode)(const void *p, size_t len);
	struct sp_msg *(*msg_ref)(struct sp_msg *m);
	void (*msg_unref)(struct sp_msg *m);

	/*
	 * Hands m to routing (the plugin keeps its own reference): plugins after
	 * `self` in the chain see it as a PUBLISH, then it goes to subscribers.
	 * Returns the number of sessions it reached, or -1.
	 */
	int (*route)(struct sp_plugin *self, struct sp_msg *m);

	/* During a PUBLISH callback: a user property for the publisher's PUBACK/PUBREC (MQTT 5). */
	int (*ack_user_prop)(const char *key, const char *val);

	/*
	 * Held deliveries (DELIVER + SP_HOLD). Return 0, or -1 when hold_id is
	 * unknown. discard ends a hold silently (no DROPPED event: the plugin
	 * decided). A hold whose session ends first ends with a DROPPED event
	 * (hold_id set); one of a shared group at QoS 1 or 2 then goes to another
	 * member of the group.
	 */
	int (*release)(struct sp_plugin *self, uint64_t hold_id);
	int (*discard)(struct sp_plugin *self, uint64_t hold_id);

	/* Timers: one-shot, ms from now; the handle is valid until it fires or is cancelled. */
	struct sp_timer *(*timer_add)(struct sp_plugin *self, uint64_t delay_ms, sp_timer_fn fn,
				      void *arg);
	void (*timer_cancel)(struct sp_timer *t);
	uint64_t (*now_ms)(void); /* wall clock, ms since 1970 */

	/* The plugin's durable key/value state. */
	int (*kv_put)(struct sp_plugin *self, const void *key, size_t klen, const void *val,
		      size_t vlen);
	/* 0 and *val (free with host->free) when found, -1 when not. */
	int (*kv_get)(struct sp_plugin *self, const void *key, size_t klen, void **val,
		      size_t *vlen);
	int (*kv_del)(struct sp_plugin *self, const void *key, size_t klen);
	/* Calls fn for every key starting with prefix, in key order; stops when fn returns non-zero. */
	int (*kv_scan)(struct sp_plugin *self, const void *prefix, size_t plen, sp_kv_fn fn,
		       void *arg);

	void *(*alloc)(size_t size);
	void (*free)(void *p);

	/*
	 * Cold values: a second key space for bulky state (payloads of far-off
	 * delayed messages, say). With persistence on they live in the store
	 * only, never in memory, and are read back asynchronously; with it off
	 * they are kept in memory. Writes join the same ordered stream as
	 * kv_put (after a kv_put and a cold_put, a crash never keeps the second
	 * without the first). cold_get calls fn on the loop later (also with
	 * persistence off), with val NULL when the key is absent; val is
	 * borrowed for the call.
	 */
	int (*cold_put)(struct sp_plugin *self, const void *key, size_t klen, const void *val,
			size_t vlen);
	int (*cold_del)(struct sp_plugin *self, const void *key, size_t klen);
	int (*cold_get)(struct sp_plugin *self, const void *key, size_t klen,
			void (*fn)(void *arg, const void *val, size_t vlen), void *arg);

	/*
	 * Added after the first release of this table (check size before use):
	 * deletes every cold value whose key k has lo <= k < hi, comparing bytes
	 * as memcmp does with a shorter key first on a tie. One store operation
	 * whatever the number of keys, so far cheaper than cold_del for a run of
	 * neighbouring keys; ordered with the other writes like cold_del.
	 */
	int (*cold_del_range)(struct sp_plugin *self, const void *lo, size_t lol, const void *hi,
			      size_t hil);

	/* --- API 2 (check with SP_HOST_HAS before use) --- */

	/*
	 * Delivers m to one subscriber instead of to every matching
	 * subscription (route): with share_group NULL, to the session of
	 * client_id, at the QoS and with the subscription identifiers of its
	 * plain subscriptions that match m's topic (offline persistent
	 * sessions queue it); with share_group and share_filter (the group's
	 * filter without "$share/G/"), to that shared group, whose member is
	 * chosen as for a routed message. The plugins after self in the chain
	 * see it as a DELIVER (and CHOOSE). Allowed in any callback and from
	 * timers. Returns 1 when it was sent or queued, 0 when there is no such
	 * subscription or it was not taken (queue full, held or skipped by a
	 * plugin, dropped), -1 on bad arguments or out of memory.
	 */
	int (*deliver)(struct sp_plugin *self, struct sp_msg *m, const char *client_id,
		       const char *share_group, const char *share_filter);
	/* Does the topic filter (wildcards allowed; no "$share/") match the topic name? */
	bool (*topic_match)(const char *filter, const char *topic);
	/*
	 * Calls fn(arg, status) on the loop once everything the broker and
	 * the plugins wrote before this call is committed: status 0, or a
	 * negative error (-ENOSPC: the disk or persistence_max_bytes is full;
	 * -ENOMEM: a write was lost to lack of memory) when some of it was not
	 * stored. Never inside the call; with persistence off, on the next
	 * turn of the loop with status 0. Returns 0, or -1 (out of memory: fn
	 * will not run).
	 */
	int (*after_commit)(struct sp_plugin *self, void (*fn)(void *arg, int status), void *arg);

	/* --- appended after API 2 (check with SP_HOST_HAS before use) --- */

	/*
	 * A copy of m with n user properties keys[i]=vals[i] appended after
	 * its own (NUL-terminated strings of at most 65535 bytes). NULL on bad
	 * arguments or out of memory.
	 */
	struct sp_msg *(*msg_add_user_props)(const struct sp_msg *m, const char *const *keys,
					     const char *const *vals, size_t n);
	/*
	 * Does the session of client_id (online or not) have a subscription,
	 * plain or shared, whose filter matches topic? 1 yes, 0 no (or no such
	 * session), -1 on bad arguments.
	 */
	int (*subscribed)(const char *client_id, const char *topic);
	/* A copy of m with its retain flag set to retain, everything else kept; NULL when out of memory. */
	struct sp_msg *(*msg_with_retain)(const struct sp_msg *m, bool retain);

	/* --- appended after API 2: RECEIVED, GROUP_END, KEEP, moving and these --- */

	/*
	 * As deliver, but the DELIVER (and CHOOSE) chain starts at self: a
	 * plugin that kept a delivery (SP_KEEP) and now lets it go on sees
	 * it again, and so learns the QoS and member it goes to.
	 */
	int (*redeliver)(struct sp_plugin *self, struct sp_msg *m, const char *client_id,
			 const char *share_group, const char *share_filter);
	/*
	 * Does the target survive a restart of the broker: the session of
	 * client_id (share_group NULL) is persistent, or the shared group
	 * (share_group, share_filter) keeps its queue in the store because a
	 * member's session is persistent? 0 when not, when there is no such
	 * session or group, or with persistence off; -1 on bad arguments.
	 */
	int (*durable)(const char *client_id, const char *share_group, const char *share_filter);
	/*
	 * During init: "FILE:LINE" of the configuration line of opts[index],
	 * for error messages; NULL when unknown (a plugin not loaded from a
	 * file). Valid until init returns.
	 */
	const char *(*opt_where)(struct sp_plugin *self, size_t index);
	/*
	 * How many plugins before self in the chain registered a callback for
	 * ev: a plugin learns, say, whether one ahead of it takes refused
	 * deliveries (NACKED) to send them again through it.
	 */
	int (*listeners)(struct sp_plugin *self, enum sp_event_type ev);
	/*
	 * Messages built from now on get ids above id: a plugin that restores
	 * messages it stored itself (msg_decode gives them new ids) keeps its
	 * own record of their order comparable with new messages.
	 */
	void (*msg_ids_after)(uint64_t id);
	/*
	 * May client_id (username NULL: none) read (SP_ACL_READ) or write
	 * (SP_ACL_WRITE) topic under the broker's access rules (acl_file)? 1
	 * yes, 0 no (1 when no rules are configured). A plugin that takes a
	 * message to route it later on another topic ($delayed/..., $txn/...)
	 * asks for that topic: the broker only checks what it routes itself.
	 */
	int (*acl_check)(const char *client_id, const char *username, const char *topic,
			 int access);

	/* Appended (there when SP_HOST_HAS(host, metric)): */
	/*
	 * Metrics for GET /metrics (Prometheus): the plugin registers a
	 * collector once (at init or START); at every scrape the host calls
	 * it with a place to report into, and the collector reports each of
	 * the plugin's values with metric(). 0, or -1 (out of memory, or self
	 * has a collector already). The same function can feed the plugin's
	 * $SYS refresh, so that both always show the same figures
	 * (plugins/common/plugin_sys.h does that with sp_metric.sys).
	 */
	int (*metrics_register)(struct sp_plugin *self,
				void (*collect)(void *arg, struct sp_metrics *out), void *arg);
	void (*metric)(struct sp_metrics *out, const struct sp_metric *m, uint64_t value);
};

/*
 * One value a collector reports (host->metric). The samples of one name
 * are reported one after another (a name's HELP and TYPE are written once,
 * before its first sample). Names follow Prometheus: [a-zA-Z_:][a-zA-Z0-9_:]*,
 * "sluice_{plugin}_..." and "_total" for counters; a bad name is skipped.
 */
struct sp_metric {
	const char *name; /* "sluice_delayed_pending" */
	const char *help; /* one line */
	int type; /* SP_METRIC_COUNTER or SP_METRIC_GAUGE */
	const char *label, *label_value; /* one label (label NULL: none): filter="orders/#" */
	const char
		*sys; /* its $SYS/broker/ leaf ("delayed/pending"), or NULL (the host ignores it) */
};

#define SP_METRIC_COUNTER 1
#define SP_METRIC_GAUGE 2

#define SP_ACL_READ 1
#define SP_ACL_WRITE 2
#define SP_ACL_SUBSCRIBE 4 /* ACL_CHECK only */

/* Log levels for host->log. */
#define SP_LOG_ERR 0
#define SP_LOG_WARNING 1
#define SP_LOG_NOTICE 2
#define SP_LOG_INFO 3
#define SP_LOG_DEBUG 4

#endif
