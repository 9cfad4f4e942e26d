/*
 * metrics.c - GET /metrics: the broker's figures in the Prometheus text
 * format (promtext.c), then every plugin's (plugin_host_metrics).
 *
 * Owns no state: each scrape reads the counters the broker keeps anyway
 * (base.stats, the store's commit histograms, the session, router and
 * group tables) and writes them out. The same counters feed $SYS
 * (sys_topics.c), so both always agree. Loop thread only (listener_lws
 * calls it from its HTTP callback).
 *
 * Cost: a scrape walks the sessions once (for the queued messages) and the
 * groups once; nothing is kept up to date on the message path for it.
 */
#include "autoconfig.h"
#include "metrics.h"

#include <stdio.h>
#include <string.h>

#include "base.h"
#include "clock.h"
#include "conn.h"
#include "groupq.h"
#include "mem.h"
#include "msg.h"
#include "plugin_host.h"
#include "promtext.h"
#include "router.h"
#include "session.h"
#include "store.h"
#include "sys_topics.h"

static const char *const qos_names[3] = { "0", "1", "2" };

static const char *const drop_names[DROP_CAUSES] = {
	[DROP_QUEUE_FULL] = "queue_full",     [DROP_SLOW_CLIENT] = "slow_client",
	[DROP_OFFLINE] = "offline",	      [DROP_TOO_LARGE] = "expired_or_too_large",
	[DROP_NO_MEMBER] = "no_group_member", [DROP_OUT_OF_MEMORY] = "out_of_memory",
	[DROP_MEMORY] = "memory_limit",
};

static void gauge(struct prom *p, const char *name, const char *help, uint64_t v)
{
	prom_u64(p, name, "gauge", help, NULL, NULL, v);
}

static void counter(struct prom *p, const char *name, const char *help, uint64_t v)
{
	prom_u64(p, name, "counter", help, NULL, NULL, v);
}

static void by_qos(struct prom *p, const char *name, const char *help, const uint64_t v[3])
{
	for (int q = 0; q < 3; q++)
		prom_u64(p, name, "counter", help, "qos", qos_names[q], v[q]);
}

static void connections(struct prom *p, const struct base_stats *st)
{
	gauge(p, "sluice_connections", "Network connections open now.", conn_count());
	gauge(p, "sluice_clients_connected", "Sessions with a live connection.",
	      st->clients_connected);
	gauge(p, "sluice_clients_maximum", "Most sessions connected at once since start.",
	      st->clients_max);
	gauge(p, "sluice_sessions", "Sessions, connected or not.", session_count());
	counter(p, "sluice_connections_total", "Network connections accepted.", st->conns_total);
	prom_u64(p, "sluice_connects_total", "counter", "CONNECTs answered, by result.", "result",
		 "accepted", st->connects);
	prom_u64(p, "sluice_connects_total", "counter", "CONNECTs answered, by result.", "result",
		 "refused", st->connects_refused);
	counter(p, "sluice_disconnects_total", "Connections of a session that ended.",
		st->disconnects);
}

static void messages(struct prom *p, const struct base_stats *st)
{
	by_qos(p, "sluice_messages_received_total", "PUBLISH packets accepted from clients.",
	       st->msgs_received);
	by_qos(p, "sluice_messages_sent_total", "PUBLISH packets sent to clients.", st->msgs_sent);
	by_qos(p, "sluice_payload_bytes_received_total", "Payload bytes of the PUBLISHes received.",
	       st->payload_received);
	by_qos(p, "sluice_payload_bytes_sent_total", "Payload bytes of the PUBLISHes sent.",
	       st->payload_sent);
	counter(p, "sluice_bytes_received_total", "Bytes read from clients.", st->bytes_received);
	counter(p, "sluice_bytes_sent_total", "Bytes written to clients.", st->bytes_sent);
	for (int c = 0; c < DROP_CAUSES; c++)
		prom_u64(p, "sluice_messages_dropped_total", "counter",
			 "Messages not delivered to a session, by cause.", "cause", drop_names[c],
			 st->dropped[c]);
	counter(p, "sluice_messages_expired_total", "Messages whose expiry passed before delivery.",
		st->expired);
	counter(p, "sluice_acl_denied_total", "PUBLISHes, deliveries and wills the ACL refused.",
		st->acl_denied);
	gauge(p, "sluice_messages_stored", "Messages held in memory.", msg_alive());
	gauge(p, "sluice_retained_messages", "Retained messages.", router_retained_count());
	gauge(p, "sluice_subscriptions", "Subscriptions.", router_subscription_count());
}

static void add_queued(struct session *s, void *arg)
{
	*(uint64_t *)arg += outq_queued(&s->q);
}

static void sum_group(struct groupq *g, void *arg)
{
	*(uint64_t *)arg += groupq_queued(g);
}

static void group_figures(const struct sys_group *g, void *arg)
{
	struct prom *p = arg;

	prom_u64(p, "sluice_group_queued_messages", "gauge",
		 "Messages waiting in a shared group's queue.", "group", g->name, g->queued);
}

static void group_members(const struct sys_group *g, void *arg)
{
	prom_u64(arg, "sluice_group_members", "gauge", "Members of a shared group.", "group",
		 g->name, g->members);
}

static void queues(struct prom *p)
{
	uint64_t sessions = 0, groups = 0;

	session_each(add_queued, &sessions);
	groupq_each(sum_group, &groups);
	prom_u64(p, "sluice_queued_messages", "gauge", "Messages waiting for delivery, by queue.",
		 "queue", "session", sessions);
	prom_u64(p, "sluice_queued_messages", "gauge", "Messages waiting for delivery, by queue.",
		 "queue", "group", groups);
	gauge(p, "sluice_groups", "Shared subscription groups.", router_group_count());
	sys_topics_groups(group_figures, p);
	sys_topics_groups(group_members, p);
}

static void store(struct prom *p)
{
	struct store_stats st;

	store_get_stats(&st);
	counter(p, "sluice_store_commits_total", "Store transactions committed.", st.commits);
	counter(p, "sluice_store_failed_commits_total", "Store units that could not be committed.",
		st.failed_commits);
	prom_histogram(p, "sluice_store_commit_seconds", "Time of one store transaction.",
		       store_time_bounds, st.time_counts, STORE_TIME_BUCKETS, st.time_sum);
	prom_histogram(p, "sluice_store_commit_batch_size",
		       "Operations in one store transaction (group commit).", store_size_bounds,
		       st.size_counts, STORE_SIZE_BUCKETS, (double)st.ops);
}

static void memory(struct prom *p)
{
	gauge(p, "sluice_heap_bytes", "Memory the broker holds (its allocations and SQLite's).",
	      mem_counted());
	gauge(p, "sluice_heap_bytes_maximum", "The most memory held at once since start.",
	      mem_counted_peak());
	gauge(p, "sluice_memory_limit_bytes", "memory_limit (0: none).", base.cfg->memory_limit);
}

static void info(struct prom *p)
{
	prom_u64(p, "sluice_build_info", "gauge", "The broker's version.", "version",
		 PACKAGE_VERSION, 1);
	gauge(p, "sluice_uptime_seconds", "Seconds since start.",
	      (clock_now_ms() - base.start_ms) / 1000);
	gauge(p, "sluice_start_time_seconds", "Start time, seconds since the Unix epoch.",
	      base.start_wall_ms / 1000);
}

int metrics_render(struct buf *out)
{
	struct prom p;

	prom_init(&p, out);
	info(&p);
	connections(&p, &base.stats);
	messages(&p, &base.stats);
	queues(&p);
	store(&p);
	memory(&p);
	plugin_host_metrics(&p);
	return p.err;
}
