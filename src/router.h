/*
 * router.h - what happens to an accepted message: the retained store, the
 * topic tree, shared groups, and delivery to each matching session.
 */
#ifndef SLUICE_ROUTER_H
#define SLUICE_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

struct session;

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
 * or -1 on OOM; *res (may be NULL) says more.
 *
 * A message routed while another is being routed (a plugin publishing from
 * a delivery event, a will published as a session ends) is queued and
 * routed right after the current one; its result is then unknown (0).
 */
int router_route(struct msg *m, struct route_result *res);
int router_publish(struct msg *m);

/*
 * A shared-subscription delivery whose session ended unacknowledged:
 * hands m to another member of the group ("group\0filter"), if any.
 */
void router_reroute_shared(struct msg *m, uint8_t qos, const char *share,
			   const struct session *gone);

/* Sends the retained messages matching filter to s (on subscribe). */
void router_send_retained(struct session *s, const char *filter, size_t len, uint8_t options,
			  uint32_t subid);

/* Subscription bookkeeping for the topic tree. */
int router_subscribe(struct session *s, const char *filter, size_t len, uint8_t options,
		     uint32_t subid, int *existed);
int router_unsubscribe(struct session *s, const char *filter, size_t len);

/* Start-up: a retained message read back from the store (takes the reference). */
int router_restore_retained(struct msg *m);

size_t router_retained_count(void);
size_t router_subscription_count(void);

#endif
