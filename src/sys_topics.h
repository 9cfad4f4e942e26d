/*
 * sys_topics.h - the $SYS/broker/... topics, refreshed every sys_interval.
 */
#ifndef SLUICE_SYS_TOPICS_H
#define SLUICE_SYS_TOPICS_H

int sys_topics_start(void);
void sys_topics_stop(void);
/* Publishes every $SYS topic now (also used at start-up). */
void sys_topics_publish(void);
/* Publishes value, retained at QoS 0, from the broker itself (also bridge.c's state). */
void sys_topics_publish_retained(const char *topic, const char *value);

#include <stdint.h>

/* A shared group name's figures, summed over the filters it serves. */
struct sys_group {
	const char *name;
	uint64_t queued, members, delivered;
};
/* Calls fn once per shared group name, in name order (for $SYS and /metrics alike). */
void sys_topics_groups(void (*fn)(const struct sys_group *g, void *arg), void *arg);

#endif
