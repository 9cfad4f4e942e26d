/*
 * sys_topics.c - $SYS/broker/... as mosquitto publishes them: retained,
 * QoS 0, refreshed every sys_interval seconds by a timer. Subscribers to
 * $SYS/# therefore get the current values at once on subscribe.
 */
#include "autoconfig.h"
#include "sys_topics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
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

void sys_topics_publish_retained(const char *topic, const char *value)
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
	sys_topics_publish_retained(topic, s);
}

static void publish_groups(void);

void sys_topics_publish(void)
{
	const struct base_stats *st = &base.stats;
	uint64_t up = (clock_now_ms() - base.start_ms) / 1000;
	uint64_t total = session_count();
	char s[64];

	sys_topics_publish_retained("$SYS/broker/version", "sluice " PACKAGE_VERSION);
	snprintf(s, sizeof(s), "%" PRIu64 " seconds", up);
	sys_topics_publish_retained("$SYS/broker/uptime", s);
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

/* What waits in every group queue ($SYS/broker/groups/queued). */
static void add_queued(struct groupq *g, void *arg)
{
	*(uint64_t *)arg += groupq_queued(g);
}

/* The queues, to be sorted by group name (g->share up to its first NUL). */
struct group_list {
	struct groupq **v;
	size_t n;
};

static void list_group(struct groupq *g, void *arg)
{
	struct group_list *l = arg;

	l->v[l->n++] = g;
}

static int by_name(const void *a, const void *b)
{
	return strcmp((*(struct groupq *const *)a)->share, (*(struct groupq *const *)b)->share);
}

/*
 * Calls fn with the sums of each group name, in name order: the queues
 * sorted by name, then each run of one name added up, so a walk costs
 * O(G log G) for G queues (summing each name over all the queues was
 * O(G^2): seconds of the loop at 10,000 groups, at every scrape and every
 * $SYS refresh). Nothing when out of memory for the list.
 */
void sys_topics_groups(void (*fn)(const struct sys_group *g, void *arg), void *arg)
{
	struct group_list l = { NULL, 0 };
	size_t n = groupq_count(), i = 0;

	if (!n || !(l.v = mem_alloc(n * sizeof(*l.v))))
		return;
	groupq_each(list_group, &l);
	qsort(l.v, l.n, sizeof(*l.v), by_name);
	while (i < l.n) {
		struct sys_group out = { l.v[i]->share, 0, 0, 0 };

		for (; i < l.n && !strcmp(l.v[i]->share, out.name); i++) {
			out.queued += groupq_queued(l.v[i]);
			out.members += router_group_members(l.v[i]->share);
			out.delivered += l.v[i]->delivered;
		}
		fn(&out, arg);
	}
	mem_free(l.v);
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
	uint64_t queued = 0;

	groupq_each(add_queued, &queued);
	publish_u64("$SYS/broker/groups/count", router_group_count());
	publish_u64("$SYS/broker/groups/queued", queued);
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
