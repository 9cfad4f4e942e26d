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
#include "groupq.h"
#include "mem.h"
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

static void publish_groups(void);

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
	publish_u64("$SYS/broker/messages/received", base_qos_sum(st->msgs_received));
	publish_u64("$SYS/broker/messages/sent", base_qos_sum(st->msgs_sent));
	publish_u64("$SYS/broker/messages/dropped", st->pub_dropped);
	publish_u64("$SYS/broker/messages/dropped/qos0", st->qos0_dropped);
	publish_u64("$SYS/broker/messages/dropped/memory", st->mem_dropped);
	publish_u64("$SYS/broker/messages/expired", st->expired);
	publish_u64("$SYS/broker/messages/stored", msg_alive());
	publish_u64("$SYS/broker/bytes/received", st->bytes_received);
	publish_u64("$SYS/broker/bytes/sent", st->bytes_sent);
	publish_u64("$SYS/broker/subscriptions/count", router_subscription_count());
	publish_u64("$SYS/broker/retained messages/count", router_retained_count());
	/* mosquitto's names; here what memory_limit counts (mem.c and SQLite) */
	publish_u64("$SYS/broker/heap/current", mem_counted());
	publish_u64("$SYS/broker/heap/maximum", mem_counted_peak());
	publish_groups();
}

/* --- shared groups ---------------------------------------------------------- */

struct group_sums {
	const char *name; /* NULL: every group */
	size_t name_len;
	uint64_t queued, members, delivered;
	const struct groupq *first; /* the first queue of that name met */
};

struct group_walk {
	void (*fn)(const struct sys_group *g, void *arg);
	void *arg;
};

static void add_group(struct groupq *g, void *arg)
{
	struct group_sums *a = arg;

	if (a->name && (strlen(g->share) != a->name_len || memcmp(g->share, a->name, a->name_len)))
		return;
	if (!a->first)
		a->first = g;
	a->queued += groupq_queued(g);
	a->members += router_group_members(g->share);
	a->delivered += g->delivered;
}

/* Calls fn with the sums of group (the first queue of its name met), once per name. */
static void group_once(struct groupq *g, void *arg)
{
	struct group_sums a = { g->share, strlen(g->share), 0, 0, 0, NULL };
	struct sys_group out;
	struct group_walk *w = arg;

	groupq_each(add_group, &a);
	if (a.first != g)
		return;
	out.name = g->share;
	out.queued = a.queued;
	out.members = a.members;
	out.delivered = a.delivered;
	w->fn(&out, w->arg);
}

void sys_topics_groups(void (*fn)(const struct sys_group *g, void *arg), void *arg)
{
	struct group_walk w = { fn, arg };

	groupq_each(group_once, &w);
}

/*
 * $SYS/broker/groups/{group}/...: a group name may serve several filters
 * (each its own group); their figures are added up under the name, which
 * is published once.
 */
static void publish_group(const struct sys_group *g, void *arg)
{
	char topic[300];

	(void)arg;
	if (strlen(g->name) > 200)
		return;
	snprintf(topic, sizeof(topic), "$SYS/broker/groups/%s/queued", g->name);
	publish_u64(topic, g->queued);
	snprintf(topic, sizeof(topic), "$SYS/broker/groups/%s/members", g->name);
	publish_u64(topic, g->members);
	snprintf(topic, sizeof(topic), "$SYS/broker/groups/%s/delivered", g->name);
	publish_u64(topic, g->delivered);
}

static void publish_groups(void)
{
	struct group_sums all = { NULL, 0, 0, 0, 0, NULL };

	groupq_each(add_group, &all);
	publish_u64("$SYS/broker/groups/count", router_group_count());
	publish_u64("$SYS/broker/groups/queued", all.queued);
	sys_topics_groups(publish_group, NULL);
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
