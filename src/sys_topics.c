/*
 * sys_topics.c - $SYS/broker/... as mosquitto publishes them: retained,
 * QoS 0, refreshed every sys_interval seconds by a timer. Subscribers to
 * $SYS/# therefore get the current values at once on subscribe.
 */
#include "autoconfig.h"
#include "sys_topics.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base.h"
#include "timers.h"
#include "clock.h"
#include "conn.h"
#include "msg.h"
#include "props.h"
#include "router.h"
#include "session.h"

static struct timer sys_timer;

static void publish_str(const char *topic, const char *value)
{
	struct msg_spec spec;
	struct msg *m;

	memset(&spec, 0, sizeof(spec));
	spec.topic = topic;
	spec.topic_len = strlen(topic);
	spec.payload = value;
	spec.payload_len = strlen(value);
	spec.retain = true;
	m = msg_new(&spec);
	if (!m)
		return;
	router_publish(m);
	msg_unref(m);
}

static void publish_u64(const char *topic, uint64_t v)
{
	char s[32];

	snprintf(s, sizeof(s), "%" PRIu64, v);
	publish_str(topic, s);
}

void sys_topics_publish(void)
{
	const struct base_stats *st = &base.stats;
	uint64_t up = (clock_now_ms() - base.start_ms) / 1000;
	uint64_t total = session_count();
	char s[64];

	publish_str("$SYS/broker/version", "sluice " PACKAGE_VERSION);
	snprintf(s, sizeof(s), "%" PRIu64 " seconds", up);
	publish_str("$SYS/broker/uptime", s);
	publish_u64("$SYS/broker/clients/connected", st->clients_connected);
	publish_u64("$SYS/broker/clients/disconnected", total - st->clients_connected);
	publish_u64("$SYS/broker/clients/total", total);
	publish_u64("$SYS/broker/clients/maximum", st->clients_max);
	publish_u64("$SYS/broker/connections/total", st->conns_total);
	publish_u64("$SYS/broker/messages/received", st->msgs_received);
	publish_u64("$SYS/broker/messages/sent", st->msgs_sent);
	publish_u64("$SYS/broker/messages/dropped", st->pub_dropped);
	publish_u64("$SYS/broker/messages/dropped/qos0", st->qos0_dropped);
	publish_u64("$SYS/broker/messages/expired", st->expired);
	publish_u64("$SYS/broker/messages/stored", msg_alive());
	publish_u64("$SYS/broker/bytes/received", st->bytes_received);
	publish_u64("$SYS/broker/bytes/sent", st->bytes_sent);
	publish_u64("$SYS/broker/subscriptions/count", router_subscription_count());
	publish_u64("$SYS/broker/retained messages/count", router_retained_count());
}

static void on_sys_timer(struct timer *t, void *arg)
{
	sys_topics_publish();
	timer_arm(t, clock_now_ms() + (uint64_t)base.cfg->sys_interval * 1000);
}

int sys_topics_start(void)
{
	timer_init(&sys_timer, on_sys_timer, NULL);
	if (!base.cfg->sys_interval)
		return 0;
	sys_topics_publish();
	timer_arm(&sys_timer, clock_now_ms() + (uint64_t)base.cfg->sys_interval * 1000);
	return 0;
}

void sys_topics_stop(void)
{
	timer_disarm(&sys_timer);
}
