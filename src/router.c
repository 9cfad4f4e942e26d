/*
 * router.c - from an accepted message to the sessions that get it, and
 * what happens around a delivery: the plugins' DELIVER and CHOOSE chains,
 * held deliveries coming back, shared deliveries of an ending session
 * moving to another member. Loop thread only.
 *
 * Owns: the topic tree (kept in step with the sessions' subscriptions
 * through the session events this file implements), the retained store,
 * and the match lists. router_route() first updates the retained store,
 * then walks the topic tree once. Each match becomes a slot in a match
 * list; a session that matches through several of its subscriptions gets
 * one slot carrying the highest granted QoS and every subscription
 * identifier [MQTT-3.3.4-2, MQTT-3.3.4-3]. Sessions remember the message id
 * being routed and their slot (route_stamp / route_idx, the router's slot
 * in struct session), so finding the duplicate costs O(1) and nothing is
 * sorted. A shared group picks one member per message.
 *
 * Invariants:
 * - matching a message finishes before any plugin runs for it: the walk
 *   only notes plain matches and matched groups; CHOOSE (which may route)
 *   runs after it, then the deliveries; so a plugin never sees the tree
 *   being walked, and a session's route_stamp matters only during the walk;
 * - a message routed from inside a delivery (a plugin routing from DELIVER,
 *   a will) is routed at once, with the match list of the next depth: each
 *   depth owns one list, reused between messages, so routing a message to
 *   N sessions allocates only the N queue entries the sessions keep (none
 *   for QoS 0 to live clients). Past MAX_DEPTH routing refuses (a plugin
 *   that routes from every delivery would otherwise recurse forever).
 */
#include "router.h"

#include <string.h>

#include "base.h"
#include "clock.h"
#include "conn.h"
#include "groupq.h"
#include "holds.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "plugin.h"
#include "retain_tree.h"
#include "session.h"
#include "store.h"
#include "timers.h"
#include "topic.h"
#include "topic_tree.h"

struct match {
	struct session *s;
	uint8_t qos; /* granted */
	bool rap; /* retain as published */
	size_t share_off; /* offset of "group\0filter" in share_keys, or NO_SHARE */
	struct groupq *gq; /* a shared match: its group's queue (NULL: look it up) */
	uint32_t *subids;
	size_t n_subids, cap_subids;
};

/* A shared group the message matched; its member is chosen after the tree walk. */
struct group_hit {
	struct topic_group *g;
	size_t share_off; /* its key in share_keys */
};

/* The match list of one routing depth. */
struct route_ctx {
	struct match *matches;
	size_t n, cap;
	struct group_hit *groups;
	size_t n_groups, cap_groups;
	struct buf share_keys; /* "group\0filter\0" strings of the message being routed */
	struct msg *msg;
	bool oom;
	int queued, quota; /* copies that went to / found full a group's queue */
};

#define MAX_DEPTH 8
#define NO_SHARE ((size_t)-1)

/* deliver(): a plugin kept the delivery (SP_KEEP): taken, to be delivered by the plugin. */
#define KEPT (OUTQ_QUOTA + 1)

/* Did the session, its queue or a plugin take the delivery (deliver's rc)? 1, 0, or -1. */
static int taken(int rc)
{
	return rc == OUTQ_DELIVERED || rc == KEPT ? 1 : rc < 0 ? -1 : 0;
}

static struct topic_tree *tree;
static struct retain_tree *retained;
static struct route_ctx ctxs[MAX_DEPTH];
static int depth; /* routings in progress */
static size_t groups_alive; /* shared groups with members */
static struct buf room_key; /* on_room's share keys (kept: it runs at every acknowledgement) */
static struct timer drain_timer; /* drains to_drain on the next turn (a new member) */
static void on_drain_timer(struct timer *t, void *arg);
/* Group queues to drain once a session's end is over (router_reroute_shared). */
static char **to_drain; /* their share keys (a queue may end before its turn) */
static size_t n_to_drain, cap_to_drain;

static const struct session_events events;

static void free_retained(void *v)
{
	msg_unref(v);
}

int router_init(void)
{
	int i;

	tree = topic_tree_new();
	retained = retain_tree_new(free_retained);
	for (i = 0; i < MAX_DEPTH; i++)
		buf_init(&ctxs[i].share_keys);
	if (!tree || !retained) {
		router_free();
		return -1;
	}
	session_set_events(&events);
	timer_init(&drain_timer, on_drain_timer, NULL);
	return 0;
}

void router_free(void)
{
	int i;
	size_t j;

	session_set_events(NULL);
	timer_disarm(&drain_timer);
	while (n_to_drain)
		mem_free(to_drain[--n_to_drain]);
	mem_free(to_drain);
	to_drain = NULL;
	groups_alive = 0;
	buf_free(&room_key);
	n_to_drain = cap_to_drain = 0;
	if (tree)
		topic_tree_free(tree);
	if (retained)
		retain_tree_free(retained);
	tree = NULL;
	retained = NULL;
	for (i = 0; i < MAX_DEPTH; i++) {
		struct route_ctx *x = &ctxs[i];

		for (j = 0; j < x->cap; j++)
			mem_free(x->matches[j].subids);
		mem_free(x->matches);
		mem_free(x->groups);
		buf_free(&x->share_keys);
		memset(x, 0, sizeof(*x));
	}
}

/* --- one delivery ---------------------------------------------------------- */

static bool group_persistent(struct groupq *q);

/*
 * A group's message to a member whose session is not stored: the group
 * keeps a stored copy while it is out (groupq_lend), so a crash gives it
 * back to the group rather than losing it with the session.
 */
static int deliver_now(struct session *s, struct msg *m, uint8_t qos, bool retain,
		       const uint32_t *subids, size_t n_subids, const char *share, struct groupq *q)
{
	uint64_t lent = 0;
	int rc;

	if (share && qos && !s->q.durable && store_on() && (q || (q = groupq_find(share)))) {
		groupq_set_durable(q, group_persistent(q));
		lent = groupq_lend(q, m, qos);
	}
	rc = outq_deliver_lent(&s->q, m, qos, retain, subids, n_subids, share, lent ? q->sid : 0,
			       lent);
	if (lent && rc != OUTQ_DELIVERED)
		groupq_unlend(q, lent, m);
	return rc;
}

/* The ACL is asked at every delivery: a reload applies at once, retained messages included. */
static bool may_read(const struct session *s, const struct msg *m)
{
	if (plugin_acl(s->realm, s->client_id, s->username, m->topic, m->topic_len, SP_ACL_READ, m))
		return true;
	log_debug("client '%s': message on '%s' not delivered: the ACL denies reading it",
		  s->client_id, m->topic);
	base.stats.acl_denied++;
	return false;
}

/*
 * One delivery to s, after the DELIVER chain from plugin `from`. Returns
 * what outq_deliver() does, OUTQ_DROPPED when a plugin skipped or held it,
 * or KEPT.
 */
static int deliver(struct session *s, struct msg *m, uint8_t qos, bool retain,
		   const uint32_t *subids, size_t n_subids, const char *share, struct groupq *gq,
		   size_t from)
{
	struct sp_plugin *who = NULL;
	struct sp_result res;
	int rc;

	if (plugin_acl_active() && !may_read(s, m))
		return OUTQ_DROPPED;
	switch (plugin_deliver(s, m, qos, share, from, &res, &who)) {
	case SP_SKIP:
		return OUTQ_DROPPED;
	case SP_KEEP:
		return KEPT;
	case SP_HOLD:
		rc = holds_add(who, res.hold_id, s->client_id, m, qos, retain, subids, n_subids,
			       share);
		if (!rc)
			return OUTQ_DROPPED;
		log_warn("plugin %s: hold %llu refused (%s); delivering now", plugin_name(who),
			 (unsigned long long)res.hold_id, rc == -2 ? "id in use" : "out of memory");
		break;
	default:
		break;
	}
	return deliver_now(s, m, qos, retain, subids, n_subids, share, gq);
}

/* --- shared groups --------------------------------------------------------- */

/* A member that can take a message now: connected with room in its window. */
static bool member_ready(const struct topic_sub *t)
{
	return outq_ready(&((const struct session *)t->owner)->q);
}

static bool member_online(const struct topic_sub *t)
{
	return ((const struct session *)t->owner)->conn != NULL;
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
		if (!fallback || (!member_online(fallback) && member_online(t)))
			fallback = t;
	}
	if (fallback)
		g->next = (size_t)(fallback - g->members) + 1;
	return fallback;
}

/* A CHOOSE hold: the group's copy waits for the plugin (release offers it again). */
static void hold_for_group(struct sp_plugin *who, uint64_t id, struct msg *m, const char *share)
{
	int rc = holds_add(who, id, NULL, m, m->qos, false, NULL, 0, share);

	if (rc)
		log_warn("plugin %s: group hold %llu refused (%s); message on '%s' not delivered "
			 "to group '$share/%s/%s'",
			 plugin_name(who), (unsigned long long)id,
			 rc == -2 ? "id in use" : "out of memory", m->topic, share,
			 topic_share_key_filter(share));
}

/*
 * The member for m: the broker's pick (pick_member), which the plugins'
 * CHOOSE chain (from plugin `from`) may override, or NULL when there is
 * none now (no member but `avoid`, or a plugin skipped or held the group's
 * copy).
 */
static const struct topic_sub *choose_member(struct topic_group *g, const struct session *avoid,
					     struct msg *m, const char *share, size_t from)
{
	const struct topic_sub *t = pick_member(g, avoid);
	struct sp_plugin *who = NULL;
	struct sp_result res;
	size_t i;

	if (!t || !plugin_wants(SP_EV_CHOOSE))
		return t;
	i = (size_t)(t - g->members);
	switch (plugin_choose(g, share, m, from, &i, &res, &who)) {
	case SP_SKIP:
		return NULL;
	case SP_HOLD:
		hold_for_group(who, res.hold_id, m, share);
		return NULL;
	default:
		return g->members[i].owner == avoid ? t : &g->members[i];
	}
}

static uint8_t min_qos(uint8_t a, uint8_t b)
{
	return a < b ? a : b;
}

/* The group a share key names, or NULL. */
static struct topic_group *group_of(const char *share)
{
	const char *f = topic_share_key_filter(share);

	return topic_tree_find_group(tree, f, strlen(f), share, strlen(share));
}

/* --- group queues ----------------------------------------------------------- */

/*
 * A QoS 1/2 message goes straight to a member with room in its window, or
 * else waits in the group's queue (groupq.c), behind any already waiting,
 * for the first member that gets room (on_room, drain_group). QoS 0 is
 * never queued for a group: it goes to a member as chosen, as before.
 */
enum group_target { TO_NONE, TO_MEMBER, TO_QUEUE };

/* g's queue, found once and then kept in g (make: made when it has none). */
static struct groupq *queue_of(struct topic_group *g, const char *share, bool make)
{
	if (!g->queue)
		g->queue = make ? groupq_get(share) : groupq_find(share);
	return g->queue;
}

static bool queue_waiting(struct topic_group *g, const char *share)
{
	const struct groupq *q = queue_of(g, share, false);

	return q && groupq_queued(q);
}

static bool any_ready(const struct topic_group *g, const struct session *avoid)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->members[i].owner != avoid && member_ready(&g->members[i]))
			return true;
	return false;
}

static enum group_target group_target(struct topic_group *g, const char *share, struct msg *m,
				      uint8_t qos, const struct session *avoid, size_t from,
				      const struct topic_sub **t)
{
	*t = NULL;
	if (qos && (queue_waiting(g, share) || !any_ready(g, avoid)))
		return TO_QUEUE;
	*t = choose_member(g, avoid, m, share, from);
	if (!*t)
		return TO_NONE;
	return qos && !member_ready(*t) ? TO_QUEUE : TO_MEMBER;
}

/* A member was chosen: the delivery counts ($SYS/.../delivered) once it is taken. */
static void count_delivered(struct groupq *q, int rc)
{
	if (q && rc == OUTQ_DELIVERED)
		q->delivered++;
}

/*
 * Does a member's session outlive its connection (then the group's queue
 * is stored)? Found again only after sessions changed (session_changes).
 */
static bool members_persistent(const struct topic_group *g)
{
	for (size_t i = 0; g && i < g->n; i++)
		if (session_persistent(g->members[i].owner))
			return true;
	return false;
}

static bool group_persistent(struct groupq *q)
{
	if (q->persistent_at == session_changes() && q->persistent_at)
		return q->persistent;
	q->persistent = members_persistent(group_of(q->share));
	q->persistent_at = session_changes();
	return q->persistent;
}

/* m joins the group's queue: OUTQ_DELIVERED, OUTQ_QUOTA, or -1. */
static int queue_for_group(struct topic_group *g, const char *share, struct msg *m, uint8_t qos)
{
	struct groupq *q = queue_of(g, share, true);

	if (q)
		groupq_set_durable(q, group_persistent(q));
	if (!q) {
		log_warn("message on '%s' for shared group '$share/%s/%s': out of memory making "
			 "its queue",
			 m->topic, share, topic_share_key_filter(share));
		return -1;
	}
	return groupq_push(q, m, qos);
}

/* The oldest waiting message of q to s, subscribed with options and subid. false: none. */
static bool hand_over(struct groupq *q, struct session *s, uint8_t options, uint32_t subid)
{
	uint8_t qos;
	struct msg *m = groupq_take(q, &qos);
	int rc;

	if (!m)
		return false;
	rc = deliver(s, m, min_qos(qos, options & MQTT_SUBOPT_QOS_MASK), false,
		     subid ? &subid : NULL, subid ? 1 : 0, q->share, q, 0);
	if (rc == OUTQ_QUOTA || rc < 0) {
		/* The member's own limits refused it: it stays the group's, at the head. */
		groupq_push_front(q, m, qos);
		msg_unref(m);
		return false;
	}
	q->delivered += rc == OUTQ_DELIVERED;
	msg_unref(m);
	return true;
}

/* Members with room take what waits, round robin, until one side runs out. */
static void drain_group(struct groupq *q)
{
	struct topic_group *g = group_of(q->share);
	const struct topic_sub *t;

	while (g && groupq_queued(q) && any_ready(g, NULL)) {
		t = pick_member(g, NULL);
		if (!t || !member_ready(t) || !hand_over(q, t->owner, t->options, t->subid))
			return;
	}
}

/* m to one member of group g (share is its key), or its queue. 1 when sent or queued, else 0 or -1. */
static int deliver_to_group(struct topic_group *g, const char *share, struct msg *m,
			    const struct session *avoid, uint8_t qos, size_t from)
{
	const struct topic_sub *t;
	struct groupq *q;
	int rc;

	switch (group_target(g, share, m, qos, avoid, from, &t)) {
	case TO_NONE:
		return 0;
	case TO_QUEUE:
		rc = queue_for_group(g, share, m, qos);
		return taken(rc);
	case TO_MEMBER:
		break;
	}
	q = queue_of(g, share, true);
	rc = deliver(t->owner, m, min_qos(qos, t->options & MQTT_SUBOPT_QOS_MASK), false,
		     t->subid ? &t->subid : NULL, t->subid ? 1 : 0, share, q, from);
	count_delivered(q, rc);
	return taken(rc);
}

/*
 * Queues that got deliveries back during a session's end (to_drain) are
 * drained once the session is gone (on_ending), so that the hand-backs,
 * which arrive newest first, are all at the head before any leaves.
 */

static void drain_later(struct groupq *q)
{
	size_t i;
	char *key;

	for (i = 0; i < n_to_drain; i++)
		if (topic_share_key_size(to_drain[i]) == q->share_size &&
		    !memcmp(to_drain[i], q->share, q->share_size))
			return;
	if (n_to_drain == cap_to_drain) {
		size_t cap = cap_to_drain ? cap_to_drain * 2 : 8;
		char **a = mem_realloc(to_drain, cap * sizeof(*a));

		if (!a)
			return; /* drained when a member next gets room */
		to_drain = a;
		cap_to_drain = cap;
	}
	key = mem_alloc(q->share_size);
	if (!key)
		return;
	memcpy(key, q->share, q->share_size);
	to_drain[n_to_drain++] = key;
}

static void drain_pending(void)
{
	struct groupq *q;
	char *key;

	while (n_to_drain) {
		key = to_drain[--n_to_drain];
		if ((q = groupq_find(key)))
			drain_group(q);
		mem_free(key);
	}
}

void router_reroute_shared(struct msg *m, uint8_t qos, const char *share,
			   const struct session *gone)
{
	struct groupq *q;

	(void)gone;
	if (!group_of(share)) {
		log_info("message on '%s' for shared group '$share/%s/%s': the group has no member "
			 "left; dropped",
			 m->topic, share, topic_share_key_filter(share));
		base.stats.pub_dropped++;
		base.stats.dropped[DROP_NO_MEMBER]++;
		plugin_dropped(NULL, m, qos, share, "the group has no member left", 0, false);
		return;
	}
	q = groupq_get(share);
	if (!q && groupq_stopping())
		return; /* shutting down: the store keeps it */
	if (q)
		groupq_set_durable(q, group_persistent(q));
	if (!q || groupq_push_front(q, m, qos) != OUTQ_DELIVERED) {
		log_warn("message on '%s' for shared group '$share/%s/%s': out of memory handing "
			 "it back to the group; dropped",
			 m->topic, share, topic_share_key_filter(share));
		return;
	}
	drain_later(q);
}

/* --- matching -------------------------------------------------------------- */

static struct match *new_match(struct route_ctx *x)
{
	struct match *m;

	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 64;
		struct match *a = mem_realloc(x->matches, cap * sizeof(*a));

		if (!a)
			return NULL;
		memset(a + x->cap, 0, (cap - x->cap) * sizeof(*a));
		x->matches = a;
		x->cap = cap;
	}
	m = &x->matches[x->n++];
	m->n_subids = 0;
	m->share_off = NO_SHARE;
	m->gq = NULL;
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

static void add_plain(struct route_ctx *x, const struct topic_sub *sub)
{
	const struct msg *msg = x->msg;
	struct session *s = sub->owner;
	uint8_t qos = sub->options & MQTT_SUBOPT_QOS_MASK;
	struct match *m;

	/* [MQTT-3.8.3-3] no local: not back to the publishing client. */
	if ((sub->options & MQTT_SUBOPT_NO_LOCAL) && !strcmp(s->client_id, msg->sender))
		return;
	/* The stamp may be an outer depth's (a plugin routing the same message
	 * from its delivery): only a slot of this list that holds s counts. */
	if (s->route_stamp == msg->id && s->route_idx < x->n && x->matches[s->route_idx].s == s) {
		m = &x->matches[s->route_idx];
		if (qos > m->qos)
			m->qos = qos;
		m->rap |= !!(sub->options & MQTT_SUBOPT_RAP);
	} else {
		m = new_match(x);
		if (!m) {
			x->oom = true;
			return;
		}
		m->s = s;
		m->qos = qos;
		m->rap = !!(sub->options & MQTT_SUBOPT_RAP);
		s->route_stamp = msg->id;
		s->route_idx = (uint32_t)(m - x->matches);
	}
	if (add_subid(m, sub->subid))
		x->oom = true;
}

/* During the walk a group is only noted: CHOOSE runs plugins, which may route. */
static void add_shared(struct route_ctx *x, struct topic_group *g)
{
	size_t off = x->share_keys.len;

	if (x->n_groups == x->cap_groups) {
		size_t cap = x->cap_groups ? x->cap_groups * 2 : 8;
		struct group_hit *a = mem_realloc(x->groups, cap * sizeof(*a));

		if (!a) {
			x->oom = true;
			return;
		}
		x->groups = a;
		x->cap_groups = cap;
	}
	if (topic_share_key_put(&x->share_keys, g->name, strlen(g->name), g->filter,
				strlen(g->filter))) {
		x->oom = true;
		return;
	}
	x->groups[x->n_groups++] = (struct group_hit){ g, off };
}

/* After the walk: one member of each matched group joins the match list. */
static void choose_members(struct route_ctx *x)
{
	size_t i;

	for (i = 0; i < x->n_groups; i++) {
		struct group_hit *h = &x->groups[i];
		const char *share = (const char *)x->share_keys.data + h->share_off;
		const struct topic_sub *t;
		struct match *m;
		int rc;

		switch (group_target(h->g, share, x->msg, x->msg->qos, NULL, 0, &t)) {
		case TO_NONE:
			continue;
		case TO_QUEUE:
			rc = queue_for_group(h->g, share, x->msg, x->msg->qos);
			x->queued += rc == OUTQ_DELIVERED;
			x->quota += rc == OUTQ_QUOTA;
			x->oom |= rc < 0;
			continue;
		case TO_MEMBER:
			break;
		}
		m = new_match(x);
		if (!m) {
			x->oom = true;
			return;
		}
		m->gq = queue_of(h->g, share, true);
		m->s = t->owner;
		m->qos = t->options & MQTT_SUBOPT_QOS_MASK;
		m->rap = !!(t->options & MQTT_SUBOPT_RAP);
		m->share_off = h->share_off;
		if (add_subid(m, t->subid))
			x->oom = true;
	}
}

static void on_match(const struct topic_sub *sub, struct topic_group *grp, void *arg)
{
	if (sub)
		add_plain(arg, sub);
	else
		add_shared(arg, grp);
}

/* --- routing --------------------------------------------------------------- */

static void update_retained(struct msg *m)
{
	bool sys = m->topic_len && m->topic[0] == '$' && !strncmp(m->topic, "$SYS/", 5);

	if (!m->payload_len) {
		router_retained_clear(m->topic, m->topic_len);
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

static void deliver_matches(struct route_ctx *x, struct route_result *res)
{
	struct msg *m = x->msg;
	size_t i;
	int rc;

	for (i = 0; i < x->n; i++) {
		struct match *y = &x->matches[i];
		const char *share = y->share_off == NO_SHARE
					    ? NULL
					    : (const char *)x->share_keys.data + y->share_off;

		/* [MQTT-3.3.1-12, -13] RETAIN only as published when asked. */
		rc = deliver(y->s, m, min_qos(y->qos, m->qos), y->rap && m->retain, y->subids,
			     y->n_subids, share, y->gq, 0);
		count_delivered(y->gq, rc);
		if (taken(rc) > 0)
			res->delivered++;
		else if (rc == OUTQ_QUOTA)
			res->quota++;
		else if (rc < 0)
			res->oom = true;
		y->s->route_stamp = 0;
	}
}

int router_route(struct msg *m, struct route_result *res)
{
	struct route_result r = { 0, 0, false };
	struct route_ctx *x;

	if (depth == MAX_DEPTH) {
		log_warn("message on '%s' not routed: routing nested %d deep (a plugin routing "
			 "from every delivery?)",
			 m->topic, MAX_DEPTH);
		return -1;
	}
	x = &ctxs[depth++];
	if (m->retain)
		update_retained(m);
	x->n = x->n_groups = 0;
	x->msg = m;
	x->oom = false;
	x->queued = x->quota = 0;
	buf_reset(&x->share_keys);
	topic_tree_match(tree, m->topic, m->topic_len, on_match, x);
	choose_members(x);
	deliver_matches(x, &r);
	r.delivered += x->queued;
	r.quota += x->quota;
	if (x->oom) {
		r.oom = true;
		log_warn("message on '%s': some subscribers skipped: out of memory", m->topic);
	}
	x->msg = NULL;
	depth--;
	if (res)
		*res = r;
	return r.oom && !r.delivered ? -1 : r.delivered;
}

int router_publish(struct msg *m)
{
	return router_route(m, NULL);
}

int router_route_from(struct msg *m, const char *username, size_t from)
{
	struct sp_result res;

	switch (plugin_publish(m, m->sender, username, 0, from, &res)) {
	case SP_PASS:
		return router_route(m, NULL);
	case SP_REJECT:
		log_info("message on '%s' refused by a plugin (reason 0x%02x)", m->topic,
			 res.reason);
		return 0;
	default:
		return 0; /* taken */
	}
}

/* --- targeted deliveries ------------------------------------------------------ */

/* What a session's plain subscriptions matching m come to. */
struct session_match {
	uint8_t qos;
	bool rap, any;
	uint32_t subids[32];
	size_t n_subids;
};

static void match_session(const struct session *s, const struct msg *m, struct session_match *sm)
{
	const struct sub_rec *r;
	const char *g, *f;
	size_t gl, fl;

	memset(sm, 0, sizeof(*sm));
	for (r = s->subs; r; r = r->next) {
		size_t len = strlen(r->filter);

		if (topic_share_split(r->filter, len, &g, &gl, &f, &fl) ||
		    !topic_matches(r->filter, len, m->topic, m->topic_len))
			continue;
		if ((r->options & MQTT_SUBOPT_NO_LOCAL) && !strcmp(s->client_id, m->sender))
			continue;
		sm->any = true;
		if ((r->options & MQTT_SUBOPT_QOS_MASK) > sm->qos)
			sm->qos = r->options & MQTT_SUBOPT_QOS_MASK;
		sm->rap |= !!(r->options & MQTT_SUBOPT_RAP);
		if (r->subid && sm->n_subids < 32)
			sm->subids[sm->n_subids++] = r->subid;
	}
}

static int deliver_to_session(const char *client_id, struct msg *m, size_t from)
{
	struct session *s = session_find(client_id);
	struct session_match sm;
	int rc;

	if (!s)
		return 0;
	match_session(s, m, &sm);
	if (!sm.any)
		return 0;
	rc = deliver(s, m, min_qos(sm.qos, m->qos), sm.rap && m->retain, sm.subids, sm.n_subids,
		     NULL, NULL, from);
	return taken(rc);
}

int router_deliver_to(struct msg *m, const char *client_id, const char *group, const char *filter,
		      size_t from)
{
	struct buf key;
	struct topic_group *g;
	int rc = 0;

	if (!group)
		return client_id ? deliver_to_session(client_id, m, from) : -1;
	if (!filter)
		return -1;
	buf_init(&key);
	if (topic_share_key_put(&key, group, strlen(group), filter, strlen(filter)))
		return -1;
	g = group_of((const char *)key.data);
	if (g)
		rc = deliver_to_group(g, (const char *)key.data, m, NULL, m->qos, from);
	buf_free(&key);
	return rc;
}

int router_release_hold(struct sp_plugin *owner, uint64_t id)
{
	struct hold *h = holds_take(owner, id);
	struct topic_group *g;
	struct session *s;

	if (!h)
		return -1;
	if (h->client_id) {
		s = session_find(h->client_id);
		if (s)
			deliver_now(s, h->msg, h->qos, h->retain, h->subids, h->n_subids, h->share,
				    NULL);
	} else if ((g = group_of(h->share))) {
		/* A group's copy is offered to the group again, CHOOSE included. */
		deliver_to_group(g, h->share, h->msg, NULL, h->qos, 0);
	}
	holds_free(h);
	return 0;
}

int router_discard_hold(struct sp_plugin *owner, uint64_t id)
{
	struct hold *h = holds_take(owner, id);

	if (!h)
		return -1;
	holds_free(h);
	return 0;
}

int router_target_durable(const char *client_id, const char *group, const char *filter)
{
	static struct buf key; /* kept: plugins may ask at every delivery */
	const struct session *s;
	struct groupq *q;

	if (!group) {
		if (!client_id)
			return -1;
		s = session_find(client_id);
		return s && store_on() && session_persistent(s);
	}
	if (!filter)
		return -1;
	if (!store_on())
		return 0;
	buf_reset(&key);
	if (topic_share_key_put(&key, group, strlen(group), filter, strlen(filter)))
		return -1;
	if ((q = groupq_find((const char *)key.data)))
		return group_persistent(q); /* cached until sessions change */
	return members_persistent(group_of((const char *)key.data));
}

/* --- retained messages on subscribe --------------------------------------------- */

struct retained_send {
	struct session *s;
	uint8_t qos;
	uint32_t subid;
};

static void on_retained(const char *topic, void *value, void *arg)
{
	struct retained_send *r = arg;
	struct msg *m = value;

	/* [MQTT-3.3.1-8] retained messages sent on subscribe carry RETAIN 1. */
	deliver(r->s, m, min_qos(m->qos, r->qos), true, r->subid ? &r->subid : NULL,
		r->subid ? 1 : 0, NULL, NULL, 0);
}

void router_send_retained(struct session *s, const char *filter, size_t len, uint8_t options,
			  uint32_t subid)
{
	struct retained_send r = { s, options & MQTT_SUBOPT_QOS_MASK, subid };

	retain_tree_match(retained, filter, len, on_retained, &r);
}

struct retained_walk {
	void (*fn)(const struct msg *m, void *arg);
	void *arg;
};

static void each_retained(const char *topic, void *value, void *arg)
{
	struct retained_walk *w = arg;

	(void)topic;
	w->fn(value, w->arg);
}

void router_retained_each(const char *filter, size_t len,
			  void (*fn)(const struct msg *m, void *arg), void *arg)
{
	struct retained_walk w = { fn, arg };

	if (retained)
		retain_tree_match(retained, filter, len, each_retained, &w);
}

bool router_retained_clear(const char *topic, size_t len)
{
	bool sys = len >= 5 && !strncmp(topic, "$SYS/", 5); /* never stored */

	if (!retained || retain_tree_clear(retained, topic, len))
		return false;
	if (!sys)
		store_retained_del(topic, len);
	return true;
}

size_t router_retained_count(void)
{
	return retained ? retain_tree_count(retained) : 0;
}

size_t router_subscription_count(void)
{
	return tree ? topic_tree_count(tree) : 0;
}

/* Start-up: a queue read back for a group nobody subscribes to any more ends. */
static void end_if_memberless(struct groupq *q, void *arg)
{
	struct groupq **list = arg;

	if (!group_of(q->share)) {
		q->end_next = *list;
		*list = q;
	}
}

void router_groups_restored(void)
{
	struct groupq *list = NULL, *q;

	groupq_each(end_if_memberless, &list);
	while ((q = list)) {
		list = q->end_next;
		groupq_end(q);
	}
}

size_t router_group_count(void)
{
	return groups_alive;
}

size_t router_group_members(const char *share)
{
	const struct topic_group *g = tree ? group_of(share) : NULL;

	return g ? g->n : 0;
}

/* --- what happens to sessions (session_events) ----------------------------------- */

static void split_share(const char *filter, size_t len, const char **f, size_t *fl, const char **g,
			size_t *gl)
{
	if (!topic_share_split(filter, len, g, gl, f, fl)) {
		*f = filter;
		*fl = len;
		*g = NULL;
		*gl = 0;
	}
}

static void drain_new_member(const char *f, size_t fl, const char *g, size_t gl);

static int on_sub_added(struct session *s, const char *filter, size_t len, uint8_t options,
			uint32_t subid, bool *existed)
{
	const char *f, *g;
	size_t fl, gl;
	bool fresh = false;

	split_share(filter, len, &f, &fl, &g, &gl);
	if (g && !topic_tree_find_group(tree, f, fl, g, gl))
		fresh = true;
	if (topic_tree_subscribe(tree, f, fl, g, gl, s, options, subid, existed))
		return -1;
	if (g && !*existed)
		s->shared_subs++;
	groups_alive += fresh;
	if (g)
		drain_new_member(f, fl, g, gl);
	return 0;
}

/* The share key of a group into b (its own memory when small). */
static const char *share_key(struct buf *b, const char *g, size_t gl, const char *f, size_t fl)
{
	buf_reset(b);
	return topic_share_key_put(b, g, gl, f, fl) ? NULL : (const char *)b->data;
}

/* A member joined: it takes what waits, from a timer, so that its SUBACK goes first. */
static void drain_new_member(const char *f, size_t fl, const char *g, size_t gl)
{
	const char *key = share_key(&room_key, g, gl, f, fl);
	struct groupq *q = key ? groupq_find(key) : NULL;

	if (!q || !groupq_queued(q))
		return;
	drain_later(q);
	timer_arm(&drain_timer, clock_now_ms());
}

static void on_drain_timer(struct timer *t, void *arg)
{
	(void)t;
	(void)arg;
	drain_pending();
}

static void on_room(struct session *s);

/* A group whose last member left ends, and its queue with it. */
static void on_sub_removed(struct session *s, const char *filter, size_t len)
{
	const char *f, *g, *key;
	size_t fl, gl;
	struct groupq *q;
	struct buf b;

	split_share(filter, len, &f, &fl, &g, &gl);
	topic_tree_unsubscribe(tree, f, fl, g, gl, s);
	if (!g)
		return;
	s->shared_subs--;
	buf_init(&b);
	key = share_key(&b, g, gl, f, fl);
	if (key) {
		/* Its unacknowledged messages of the group go to another member (on_orphaned). */
		outq_orphan_share(&s->q, key);
		if (n_to_drain)
			timer_arm(&drain_timer, clock_now_ms());
		/* Its window may have room now for its other groups (not while it ends). */
		if (session_find(s->client_id) == s)
			on_room(s);
	}
	if (!topic_tree_find_group(tree, f, fl, g, gl)) {
		groups_alive--;
		if (key && (q = groupq_find(key)))
			groupq_end(q);
		if (key)
			plugin_group_end(key);
	}
	buf_free(&b);
}

/* The queue of a shared subscription's group (r->group caches the group), when messages wait. */
static struct groupq *waiting_queue(struct sub_rec *r)
{
	const char *f, *g, *key;
	size_t fl, gl;
	struct topic_group *grp = r->group;
	struct groupq *q;

	if (!grp) {
		if (!topic_share_split(r->filter, strlen(r->filter), &g, &gl, &f, &fl))
			return NULL;
		grp = r->group = topic_tree_find_group(tree, f, fl, g, gl);
		if (!grp)
			return NULL;
	}
	q = grp->queue;
	if (!q) {
		if (!topic_share_split(r->filter, strlen(r->filter), &g, &gl, &f, &fl) ||
		    !(key = share_key(&room_key, g, gl, f, fl)))
			return NULL;
		q = queue_of(grp, key, false);
	}
	return q && groupq_queued(q) ? q : NULL;
}

/* s has room: it takes what waits in its groups' queues, one group after another. */
static void on_room(struct session *s)
{
	struct sub_rec *r;
	bool took = true;

	if (!s->shared_subs || !groupq_count())
		return;
	while (took && outq_ready(&s->q)) {
		took = false;
		for (r = s->subs; r && outq_ready(&s->q); r = r->next) {
			struct groupq *q;

			if (!strncmp(r->filter, "$share/", 7) && (q = waiting_queue(r)))
				took |= hand_over(q, s, r->options, r->subid);
		}
	}
}

static void on_refilled(struct outq *oq)
{
	drain_group((struct groupq *)((char *)oq - offsetof(struct groupq, q)));
}

static void on_detached(struct session *s, bool graceful)
{
	plugin_disconnect(s, graceful);
}

/* A will is accepted at CONNECT and checked (write) when it is published, as in mosquitto. */
static void on_will(struct session *s, struct msg *will)
{
	if (plugin_acl_active() && !plugin_acl(s->realm, s->client_id, s->username, will->topic,
					       will->topic_len, SP_ACL_WRITE, will)) {
		log_notice("client '%s': will on '%s' not published: the ACL denies writing it",
			   s->client_id, will->topic);
		base.stats.acl_denied++;
		return;
	}
	router_route_from(will, s->username, 0);
}

/* Held deliveries of an ending session are dropped; a shared one goes to another member. */
static void on_ending(struct session *s)
{
	struct hold *h;

	while ((h = holds_take_client(s->client_id))) {
		plugin_dropped(s, h->msg, h->qos, h->share, "session ended while held", h->id,
			       h->share && h->qos);
		if (h->share && h->qos)
			router_reroute_shared(h->msg, h->qos, h->share, s);
		holds_free(h);
	}
	drain_pending();
	plugin_session_end(s);
}

static void on_acked(struct session *s, struct msg *m, uint8_t qos, const char *share,
		     uint8_t reason)
{
	plugin_acked(s, m, qos, share, reason);
}

static void on_dropped(struct session *s, struct msg *m, uint8_t qos, const char *share,
		       const char *why)
{
	plugin_dropped(s, m, qos, share, why, 0, false); /* s NULL: a group queue's own */
}

static void on_orphaned(struct session *s, struct msg *m, uint8_t qos, const char *share)
{
	plugin_dropped(s, m, qos, share, "the member left the group", 0, true);
	router_reroute_shared(m, qos, share, s);
}

static void on_received(struct session *s, struct msg *m, const char *share)
{
	plugin_received(s, m, share);
}

static const struct session_events events = {
	.q = { on_acked, on_dropped, on_orphaned, on_refilled, on_room, on_received },
	.sub_added = on_sub_added,
	.sub_removed = on_sub_removed,
	.detached = on_detached,
	.will = on_will,
	.ending = on_ending,
};
