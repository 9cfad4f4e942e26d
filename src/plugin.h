/*
 * plugin.h - the broker's side of the plugin layer (include/sluice_plugin.h
 * is the plugins' side): loading, the event chains, held deliveries,
 * plugin timers and plugin key/value state.
 *
 * Every hook is cheap when no plugin registered for its event
 * (plugin_wants() is an array lookup), so the routing hot path pays nothing
 * for plugins it does not have.
 */
#ifndef SLUICE_PLUGIN_INTERNAL_H
#define SLUICE_PLUGIN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice_plugin.h"

struct config;
struct msg;
struct session;
struct buf;
struct topic_group;

/* Loads every configured plugin in order and calls its init. 0 or -1 (logged). */
int plugin_load_all(const struct config *cfg);
void plugin_start(void);
/* STOP event, then cleanup and unload of every plugin. */
void plugin_unload_all(void);
bool plugin_wants(enum sp_event_type ev);

/*
 * PUBLISH chain for a message from client_id, starting at plugin `from`.
 * Returns the verdict (SP_PASS when every plugin let it pass) with res
 * filled by the plugin that decided. User properties plugins added for the
 * acknowledgement are in plugin_ack_props() until the next call.
 */
enum sp_verdict plugin_publish(struct msg *m, const char *client_id, uint8_t protocol,
			       size_t from, struct sp_result *res);
const struct buf *plugin_ack_props(void);
/* The PUBLISH chain from `from`, then routing. Returns sessions reached or -1. */
int plugin_route(struct msg *m, size_t from);

/*
 * DELIVER chain for one delivery. Returns 0 when it should be delivered
 * now, 1 when a plugin skipped or held it (a held delivery is kept here).
 */
int plugin_deliver(struct session *s, struct msg *m, uint8_t qos, bool retain,
		   const uint32_t *subids, size_t n_subids, const char *share);
/* CHOOSE: returns the member index to use (broker_choice unless a plugin picks). */
size_t plugin_choose(const struct topic_group *g, struct msg *m, size_t broker_choice);

void plugin_acked(const struct session *s, struct msg *m, uint8_t qos, const char *share);
void plugin_dropped(const struct session *s, struct msg *m, uint8_t qos, const char *share,
		    const char *why);
void plugin_connect(const struct session *s);
void plugin_disconnect(const struct session *s, bool graceful);
/* SUBSCRIBE chain: 0 to go on, or the MQTT reason code (>= 0x80) a plugin refused with. */
uint8_t plugin_subscribe(const struct session *s, const char *filter, size_t len, uint8_t qos);
void plugin_unsubscribe(const struct session *s, const char *filter, size_t len);
/* Start-up: a key/value row of plugin `name` read back from the store. */
int plugin_kv_restore(const char *name, const void *k, size_t kl, const void *v, size_t vl);

/* The session ended: its held deliveries are dropped (DROPPED events). */
void plugin_session_gone(const struct session *s);

#endif
