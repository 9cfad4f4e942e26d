/*
 * router.h - what happens to an accepted message: the retained store, the
 * topic tree, shared groups, and delivery to each matching session through
 * the plugins' DELIVER and CHOOSE chains; deliveries plugins aim at one
 * subscriber, and the ones they held. router_init() also makes the router
 * the one that hears what happens to sessions (session_set_events).
 */
#ifndef SLUICE_ROUTER_H
#define SLUICE_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

struct session;
struct sp_plugin;

int router_init(void);
void router_free(void);

/* What routing one message came to. */
struct route_result {
	int delivered; /* sessions it was sent or queued to */
	int quota; /* sessions whose queue was full (it was dropped for them) */
	bool oom; /* some deliveries failed for lack of memory */
};

/*
 * Routes m (borrowed: the router takes its own references). Retained
 * messages are stored or cleared first [MQTT-3.3.1-5, -6, -10, -11].
 * Returns the number of sessions the message was delivered or queued to,
 * or -1 on OOM; *res (may be NULL) says more. A message routed while
 * another is being routed (a plugin routing from a delivery event) is
 * routed at once, with the same result.
 */
int router_route(struct msg *m, struct route_result *res);
int router_publish(struct msg *m);
/*
 * The PUBLISH chain from plugin `from` (m->sender is the publisher,
 * username may be NULL), then routing: a message a plugin hands back, or a
 * will. Returns sessions reached, 0 when a plugin took or refused it, -1.
 */
int router_route_from(struct msg *m, const char *username, size_t from);
/*
 * Does the target outlive a restart: client_id's session is persistent
 * (group NULL), or the group's queue is stored? 1, 0, or -1 on bad arguments.
 */
int router_target_durable(const char *client_id, const char *group, const char *filter);
/*
 * host->deliver(): m to the plain subscriptions of client_id that match its
 * topic, or (group set) to one member of the shared group (group, filter).
 * The DELIVER chain runs from plugin `from`. 1 delivered, 0 not, -1 error.
 */
int router_deliver_to(struct msg *m, const char *client_id, const char *group, const char *filter,
		      size_t from);
/* host->release() / discard(): the hold (owner, id) is delivered now / dropped. 0 or -1. */
int router_release_hold(struct sp_plugin *owner, uint64_t id);
int router_discard_hold(struct sp_plugin *owner, uint64_t id);

/*
 * A shared-subscription delivery whose session ended unacknowledged:
 * hands m to another member of the group ("group\0filter"), if any.
 */
void router_reroute_shared(struct msg *m, uint8_t qos, const char *share,
			   const struct session *gone);

/* Sends the retained messages matching filter to s (on subscribe). */
void router_send_retained(struct session *s, const char *filter, size_t len, uint8_t options,
			  uint32_t subid);

/* Start-up: a retained message read back from the store (takes the reference). */
int router_restore_retained(struct msg *m);
/* Start-up, after the sessions: group queues of groups without members end. */
void router_groups_restored(void);

size_t router_retained_count(void);
/* Calls fn for every retained message matching filter (a valid filter, len bytes). */
void router_retained_each(const char *filter, size_t len,
			  void (*fn)(const struct msg *m, void *arg), void *arg);
/* Removes the retained message of topic (from the store too), without publishing: was there one? */
bool router_retained_clear(const char *topic, size_t len);
size_t router_subscription_count(void);
/* Shared groups with members; the members of one ("group\0filter"). */
size_t router_group_count(void);
size_t router_group_members(const char *share);

#endif
