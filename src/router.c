/*
 * router.c - from an accepted message to the sessions that get it.
 *
 * router_publish() first updates the retained store, then walks the topic
 * tree once. Each match becomes a slot in a reusable match list; a session
 * that matches through several of its subscriptions gets one slot carrying
 * the highest granted QoS and every subscription identifier [MQTT-3.3.4-2,
 * MQTT-3.3.4-3]. Sessions remember the message id being routed and their
 * slot (route_stamp / route_idx), so finding the duplicate costs O(1) and
 * nothing is sorted. A shared group picks one member per message.
 *
 * The match list, its subscription id arrays, and nothing else, are reused
 * between messages: routing a message to N sessions allocates only the N
 * queue entries the sessions keep (none for QoS 0 to live clients).
 */
#include "router.h"

#include <string.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "plugin.h"
#include "retain_tree.h"
#include "session.h"
#include "store.h"
#include "topic_tree.h"
#include "utf8.h"

struct match {
	struct session *s;
	uint8_t qos; /* granted */
	bool rap; /* retain as published */
	size_t share_off; /* offset of "group\0filter" in share_keys, or NO_SHARE */
	uint32_t *subids;
	size_t n_subids, cap_subids;
};

static struct topic_tree *tree;
static struct retain_tree *retained;
static struct match *matches;
static size_t n_matches, cap_matches;
static struct buf share_keys; /* "group\0filter\0" strings of the current routing */
static bool match_oom;
static int routing; /* depth guard: the match list is in use */
static struct msg **pending; /* messages routed while routing, in order */
static size_t n_pending, cap_pending;

#define NO_SHARE ((size_t)-1)

static void free_retained(void *v)
{
	msg_unref(v);
}

int router_init(void)
{
	tree = topic_tree_new();
	retained = retain_tree_new(free_retained);
	buf_init(&share_keys);
	if (!tree || !retained) {
		router_free();
		return -1;
	}
	return 0;
}

void router_free(void)
{
	size_t i;

	if (tree)
		topic_tree_free(tree);
	if (retained)
		retain_tree_free(retained);
	tree = NULL;
	retained = NULL;
	for (i = 0; i < cap_matches; i++)
		mem_free(matches[i].subids);
	mem_free(matches);
	matches = NULL;
	mem_free(pending);
	pending = NULL;
	n_pending = cap_pending = 0;
	n_matches = cap_matches = 0;
	buf_free(&share_keys);
}

static struct match *new_match(void)
{
	struct match *m;

	if (n_matches == cap_matches) {
		size_t cap = cap_matches ? cap_matches * 2 : 64;
		struct match *a = mem_realloc(matches, cap * sizeof(*a));

		if (!a)
			return NULL;
		memset(a + cap_matches, 0, (cap - cap_matches) * sizeof(*a));
		matches = a;
		cap_matches = cap;
	}
	m = &matches[n_matches++];
	m->n_subids = 0;
	m->share_off = NO_SHARE;
	return m;
}

static int add_subid(struct match *m, uint32_t subid)
{
	if (!subid)
		return 0;
	if (m->n_subids == m->cap_subids) {
		size_t cap = m->cap_subids ? m->cap_subids * 2 : 4;
		uint32_t *a = mem_realloc(m->subids, cap * sizeof(*a));

		if (!a)
			return -1;
		m->subids = a;
		m->cap_subids = cap;
	}
	m->subids[m->n_subids++] = subid;
	return 0;
}

static void add_plain(const struct msg *msg, const struct topic_sub *sub)
{
	struct session *s = sub->owner;
	uint8_t qos = sub->options & MQTT_SUBOPT_QOS_MASK;
	struct match *m;

	/* [MQTT-3.8.3-3] no local: not back to the publishing client. */
	if ((sub->options & MQTT_SUBOPT_NO_LOCAL) && !strcmp(s->client_id, msg->sender))
		return;
	if (s->route_stamp == msg->id) {
		m = &matches[s->route_idx];
		if (qos > m->qos)
			m->qos = qos;
		m->rap |= !!(sub->options & MQTT_SUBOPT_RAP);
	} else {
		m = new_match();
		if (!m) {
			match_oom = true;
			return;
		}
		m->s = s;
		m->qos = qos;
		m->rap = !!(sub->options & MQTT_SUBOPT_RAP);
		s->route_stamp = msg->id;
		s->route_idx = (uint32_t)(m - matches);
	}
	if (add_subid(m, sub->subid))
		match_oom = true;
}

/* A member that can take a message now: connected with room in its window. */
static bool member_ready(const struct topic_sub *t)
{
	const struct session *s = t->owner;

	return s->conn && s->conn->state == CONN_ACTIVE && s->inflight.n < session_window(s) &&
	       !s->queue.n;
}

static const struct topic_sub *pick_member(struct topic_group *g, const struct session *avoid)
{
	const struct topic_sub *fallback = NULL;
	size_t i;

	for (i = 0; i < g->n; i++) {
		size_t k = (g->next + i) % g->n;
		const struct topic_sub *t = &g->members[k];

		if (t->owner == avoid)
			continue;
		if (member_ready(t)) {
			g->next = k + 1;
			return t;
		}
		if (!fallback || (!((struct session *)fallback->owner)->conn &&
				  ((struct session *)t->owner)->conn))
			fallback = t;
	}
	if (fallback)
		g->next = (size_t)(fallback - g->members) + 1;
	return fallback;
}

/* The broker's pick (pick_member), then the plugins' CHOOSE chain may override it. */
static const struct topic_sub *choose_member(struct topic_group *g, const struct session *avoid,
					     struct msg *m)
{
	const struct topic_sub *t = pick_member(g, avoid);
	size_t i;

	if (!t || !plugin_wants(SP_EV_CHOOSE))
		return t;
	i = plugin_choose(g, m, (size_t)(t - g->members));
	return g->members[i].owner == avoid ? t : &g->members[i];
}

/* One delivery, after the plugins' DELIVER chain. Returns what session_deliver does, or 1. */
static int deliver(struct session *s, struct msg *m, uint8_t qos, bool retain,
		   const uint32_t *subids, size_t n_subids, const char *share)
{
	if (plugin_deliver(s, m, qos, retain, subids, n_subids, share))
		return 1;
	return session_deliver(s, m, qos, retain, subids, n_subids, share);
}

/* Appends "group\0filter\0" to share_keys; returns its offset or NO_SHARE (OOM). */
static size_t share_key(const struct topic_group *g)
{
	size_t gl = strlen(g->name), fl = strlen(g->filter), off = share_keys.len;

	if (buf_reserve(&share_keys, gl + fl + 2))
		return NO_SHARE;
	buf_put(&share_keys, g->name, gl + 1);
	buf_put(&share_keys, g->filter, fl + 1);
	return off;
}

static void add_shared(struct topic_group *g, struct msg *msg)
{
	const struct topic_sub *t = choose_member(g, NULL, msg);
	struct match *m;

	if (!t)
		return;
	m = new_match();
	if (!m) {
		match_oom = true;
		return;
	}
	m->s = t->owner;
	m->qos = t->options & MQTT_SUBOPT_QOS_MASK;
	m->rap = !!(t->options & MQTT_SUBOPT_RAP);
	m->share_off = share_key(g);
	if (m->share_off == NO_SHARE || add_subid(m, t->subid))
		match_oom = true;
}

static void on_match(const struct topic_sub *sub, struct topic_group *grp, void *arg)
{
	if (sub)
		add_plain(arg, sub);
	else
		add_shared(grp, arg);
}

static void update_retained(struct msg *m)
{
	bool sys = m->topic_len && m->topic[0] == '$' && !strncmp(m->topic, "$SYS/", 5);

	if (!m->payload_len) {
		if (!retain_tree_clear(retained, m->topic, m->topic_len) && !sys)
			store_retained_del(m->topic, m->topic_len);
		return;
	}
	if (retain_tree_set(retained, m->topic, m->topic_len, msg_ref(m))) {
		msg_unref(m);
		log_warn("retained message on '%s' not stored: out of memory", m->topic);
		return;
	}
	/* $SYS values are the broker's own, made anew at every start: not stored. */
	if (!sys)
		store_retained_put(m);
}

int router_restore_retained(struct msg *m)
{
	if (retain_tree_set(retained, m->topic, m->topic_len, m)) {
		msg_unref(m);
		return -1;
	}
	return 0;
}

static int defer(struct msg *m)
{
	if (n_pending == cap_pending) {
		size_t cap = cap_pending ? cap_pending * 2 : 16;
		struct msg **a = mem_realloc(pending, cap * sizeof(*a));

		if (!a) {
			log_warn("message on '%s' lost: out of memory", m->topic);
			return -1;
		}
		pending = a;
		cap_pending = cap;
	}
	pending[n_pending++] = msg_ref(m);
	return 0;
}

static void route_one(struct msg *m, struct route_result *res);

int router_route(struct msg *m, struct route_result *res)
{
	struct route_result r = { 0, 0, false };
	size_t i;

	if (routing)
		return defer(m) ? -1 : 0;
	routing = 1;
	route_one(m, &r);
	/* Messages queued meanwhile, in order; each may queue more. */
	for (i = 0; i < n_pending; i++) {
		struct route_result ignored = { 0, 0, false };

		route_one(pending[i], &ignored);
		msg_unref(pending[i]);
	}
	n_pending = 0;
	routing = 0;
	if (res)
		*res = r;
	return r.oom && !r.delivered ? -1 : r.delivered;
}

int router_publish(struct msg *m)
{
	return router_route(m, NULL);
}

static void route_one(struct msg *m, struct route_result *res)
{
	size_t i;
	int rc;

	if (m->retain)
		update_retained(m);
	n_matches = 0;
	buf_reset(&share_keys);
	match_oom = false;
	topic_tree_match(tree, m->topic, m->topic_len, on_match, m);
	for (i = 0; i < n_matches; i++) {
		struct match *x = &matches[i];
		uint8_t qos = x->qos < m->qos ? x->qos : m->qos;
		const char *share = x->share_off == NO_SHARE
					    ? NULL
					    : (const char *)share_keys.data + x->share_off;

		/* [MQTT-3.3.1-12, -13] RETAIN only as published when asked. */
		rc = deliver(x->s, m, qos, x->rap && m->retain, x->subids, x->n_subids, share);
		if (rc == SESSION_DELIVERED)
			res->delivered++;
		else if (rc == SESSION_QUOTA)
			res->quota++;
		else if (rc < 0)
			res->oom = true;
		x->s->route_stamp = 0;
	}
	if (match_oom) {
		res->oom = true;
		log_warn("message on '%s': some subscribers skipped: out of memory", m->topic);
	}
}

struct reroute {
	struct msg *m;
	uint8_t qos;
	const char *share;
	const struct session *gone;
	bool done;
};

static void on_reroute(const struct topic_sub *sub, struct topic_group *g, void *arg)
{
	struct reroute *r = arg;
	const struct topic_sub *t;
	size_t gl;

	if (sub || r->done)
		return;
	gl = strlen(g->name);
	if (strcmp(g->name, r->share) || strcmp(g->filter, r->share + gl + 1))
		return;
	t = choose_member(g, r->gone, r->m);
	if (!t)
		return;
	r->done = true;
	deliver(t->owner, r->m, r->qos < (t->options & 3) ? r->qos : (t->options & 3),
			false, t->subid ? &t->subid : NULL, t->subid ? 1 : 0, r->share);
}

void router_reroute_shared(struct msg *m, uint8_t qos, const char *share,
			   const struct session *gone)
{
	struct reroute r = { m, qos, share, gone, false };

	topic_tree_match(tree, m->topic, m->topic_len, on_reroute, &r);
	if (!r.done)
		log_info("message on '%s' for shared group '%s': no other member to take it",
			 m->topic, share);
}

struct retained_send {
	struct session *s;
	uint8_t qos;
	uint32_t subid;
};

static void on_retained(const char *topic, void *value, void *arg)
{
	struct retained_send *r = arg;
	struct msg *m = value;
	uint8_t qos = m->qos < r->qos ? m->qos : r->qos;

	/* [MQTT-3.3.1-8] retained messages sent on subscribe carry RETAIN 1. */
	deliver(r->s, m, qos, true, r->subid ? &r->subid : NULL, r->subid ? 1 : 0, NULL);
}

void router_send_retained(struct session *s, const char *filter, size_t len, uint8_t options,
			  uint32_t subid)
{
	struct retained_send r = { s, options & MQTT_SUBOPT_QOS_MASK, subid };

	retain_tree_match(retained, filter, len, on_retained, &r);
}

static void split_share(const char *filter, size_t len, const char **f, size_t *fl,
			const char **g, size_t *gl)
{
	if (!topic_share_split(filter, len, g, gl, f, fl)) {
		*f = filter;
		*fl = len;
		*g = NULL;
		*gl = 0;
	}
}

int router_subscribe(struct session *s, const char *filter, size_t len, uint8_t options,
		     uint32_t subid, int *existed)
{
	const char *f, *g;
	size_t fl, gl;
	bool ex = false;
	int rc;

	split_share(filter, len, &f, &fl, &g, &gl);
	rc = topic_tree_subscribe(tree, f, fl, g, gl, s, options, subid, &ex);
	*existed = ex;
	return rc;
}

int router_unsubscribe(struct session *s, const char *filter, size_t len)
{
	const char *f, *g;
	size_t fl, gl;

	split_share(filter, len, &f, &fl, &g, &gl);
	return topic_tree_unsubscribe(tree, f, fl, g, gl, s);
}

size_t router_retained_count(void)
{
	return retained ? retain_tree_count(retained) : 0;
}

size_t router_subscription_count(void)
{
	return tree ? topic_tree_count(tree) : 0;
}
