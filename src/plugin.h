/*
 * plugin.h - the broker's side of the plugin layer, lowest part: loading
 * plugins and running their event chains (include/sluice_plugin.h is the
 * plugins' side). The host table a plugin calls back through is built
 * higher up (plugin_host.c) and handed in at load time; held deliveries are
 * holds.c's. Loop thread only.
 *
 * Every hook is cheap when no plugin registered for its event
 * (plugin_wants() is an array lookup), so the routing hot path pays nothing
 * for plugins it does not have.
 *
 * Pointer parameters are borrowed.
 */
#ifndef SLUICE_PLUGIN_INTERNAL_H
#define SLUICE_PLUGIN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvspace.h"
#include "sluice_plugin.h"

struct config;
struct msg;
struct session;
struct buf;
struct topic_group;

typedef int (*plugin_version_fn)(void);
typedef int (*plugin_init_fn)(const struct sp_host *host, struct sp_plugin *self,
			      const struct sp_opt *opts, int n_opts, void **udata);
typedef void (*plugin_cleanup_fn)(void *udata);

/* Loads every configured plugin in order and calls its init with host. 0 or -1 (logged). */
int plugin_load_all(const struct config *cfg, const struct sp_host *host);
/* Adds a plugin linked into the program (tests): as if loaded, next in the chain. */
int plugin_add(const char *name, plugin_init_fn init, plugin_cleanup_fn cleanup,
	       const struct sp_opt *opts, int n_opts, const struct sp_host *host);
/* host->on(): registers cb for ev; one callback per event per plugin. 0 or -1. */
int plugin_on(struct sp_plugin *self, enum sp_event_type ev, sp_callback cb);
void plugin_start(void);
/* The STOP event (timers and holds go next, then plugin_unload_all). */
void plugin_stop(void);
/* Cleanup and unload of every plugin; no callback runs after this. */
void plugin_unload_all(void);
bool plugin_wants(enum sp_event_type ev);

/* What the host needs to know of a plugin. */
const char *plugin_name(const struct sp_plugin *p);
size_t plugin_index(const struct sp_plugin *p); /* its place in the chain */
struct kv_space *plugin_kv(struct sp_plugin *p); /* its state */
struct kv_space *plugin_cold(struct sp_plugin *p); /* its cold values (persistence off) */
size_t plugin_count(void);

/*
 * PUBLISH chain for a message from client_id (username may be NULL),
 * starting at plugin `from`. Returns the verdict (SP_PASS when every plugin
 * let it pass) with res filled by the plugin that decided. User properties
 * plugins added for the acknowledgement are in plugin_ack_props() until the
 * next outermost call.
 */
enum sp_verdict plugin_publish(struct msg *m, const char *client_id, const char *username,
			       uint8_t protocol, size_t from, struct sp_result *res);
const struct buf *plugin_ack_props(void);
/* During a PUBLISH callback: adds a user property to the acknowledgement. 0 or -1. */
int plugin_ack_prop_add(const char *key, const char *val);

/*
 * DELIVER chain for one delivery to s, from plugin `from`. Returns SP_PASS
 * (deliver now), SP_SKIP, or SP_HOLD with res->hold_id set and *who the
 * plugin that holds it (a hold with id 0 is refused: delivered now).
 */
enum sp_verdict plugin_deliver(const struct session *s, struct msg *m, uint8_t qos,
			       const char *share, size_t from, struct sp_result *res,
			       struct sp_plugin **who);
/*
 * CHOOSE chain for shared group g (its key "group\0filter" is share): SP_PASS
 * with *member (in: the broker's pick; out: the member to use), SP_SKIP (not
 * to this group), or SP_HOLD with res->hold_id and *who (no member now).
 */
enum sp_verdict plugin_choose(const struct topic_group *g, const char *share, struct msg *m,
			      size_t from, size_t *member, struct sp_result *res,
			      struct sp_plugin **who);

/* A delivery completed: reason < 0x80 is ACKED, >= 0x80 NACKED. */
void plugin_acked(const struct session *s, struct msg *m, uint8_t qos, const char *share,
		  uint8_t reason);
/* s NULL: a group queue's own drop. moving: it goes on to another member of share. */
void plugin_dropped(const struct session *s, struct msg *m, uint8_t qos, const char *share,
		    const char *why, uint64_t hold_id, bool moving);
/* A QoS 2 delivery reached PUBREC. */
void plugin_received(const struct session *s, struct msg *m, const char *share);
/* Shared group share ("group\0filter") ended with its last member. */
void plugin_group_end(const char *share);
/* The number of plugins before self in the chain with a callback for ev. */
int plugin_listeners_before(const struct sp_plugin *self, enum sp_event_type ev);
/* During init: "FILE:LINE" of the plugin's option index, or NULL. */
const char *plugin_opt_where(const struct sp_plugin *p, size_t index);
void plugin_connect(const struct session *s);
void plugin_disconnect(const struct session *s, bool graceful);
void plugin_session_end(const struct session *s);
/* SUBSCRIBE chain: 0 to go on, or the MQTT reason code (>= 0x80) a plugin refused with. */
uint8_t plugin_subscribe(const struct session *s, const char *filter, size_t len, uint8_t qos);
void plugin_unsubscribe(const struct session *s, const char *filter, size_t len);
/*
 * The AUTH chain, then allow_anonymous and the password file of realm (the
 * listener's, auth.c): may this CONNECT (username NULL: none; password
 * NULL: none) connect? When not, *reason is the MQTT 5 reason code and *why
 * says why, for the log.
 */
bool plugin_authenticate(unsigned realm, const char *client_id, const char *username, size_t ulen,
			 const void *password, size_t plen, uint8_t protocol, const char *address,
			 uint8_t *reason, const char **why);
/* Is any access rule in force (a plugin with ACL_CHECK, or an acl_file)? */
bool plugin_acl_active(void);
/*
 * The ACL_CHECK chain, then realm's acl_file (the session's listener's):
 * may the client have access (SP_ACL_READ, SP_ACL_WRITE, or
 * SP_ACL_SUBSCRIBE with a filter without "$share/G/") to topic (tlen
 * bytes)? m: the message, or NULL.
 */
bool plugin_acl(unsigned realm, const char *client_id, const char *username, const char *topic,
		size_t tlen, int access, const struct msg *m);
/* Start-up: a key/value row of plugin `name` read back from the store. */
int plugin_kv_restore(const char *name, const void *k, size_t kl, const void *v, size_t vl);

#endif
