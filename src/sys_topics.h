/*
 * sys_topics.h - the $SYS/broker/... topics, refreshed every sys_interval.
 */
#ifndef SLUICE_SYS_TOPICS_H
#define SLUICE_SYS_TOPICS_H

int sys_topics_start(void);
void sys_topics_stop(void);
/* Publishes every $SYS topic now (also used at start-up). */
void sys_topics_publish(void);

#endif
