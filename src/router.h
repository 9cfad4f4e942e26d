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

/*
 * Routes m (borrowed: the router takes its own references). Retained
 * messages are stored or cleared first [MQTT-3.3.1-5, -6, -10, -11].
 * Returns the number of sessions the message was delivered or queued to,
 * or -1 on OOM.
 */
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

size_t router_retained_count(void);
size_t router_subscription_count(void);

#endif
