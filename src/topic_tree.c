/*
 * topic_tree.c - the subscription trie that every PUBLISH is matched against.
 *
 * One node per filter level. A node keeps its exact-level children in an
 * array sorted by level bytes, so finding the child for a topic level is a
 * binary search however many siblings there are (a broker with a hundred
 * thousand "devices/<id>/#" filters has a hundred thousand children under
 * "devices"). The '+' and '#' children are held apart in two pointers,
 * because matching always tries them and never looks them up by name.
 *
 * A node's plain subscriptions are an array sorted by owner pointer, so a
 * resubscribe or unsubscribe is a binary search too; shared groups are a
 * short array of pointers (a group's address is stable while it exists,
 * which lets the broker keep its round-robin cursor in it).
 *
 * Invariants: every node but the root holds an entry or a child; a group
 * has at least one member. Unsubscribe and failed subscribes prune the
 * nodes they leave empty, walking up the parent pointers.
 *
 * Matching is the broker's hot path: it allocates nothing and does not
 * recurse. It is a depth-first walk driven by parent pointers: at each node
 * the '#' child is delivered, the '+' child is descended first, and when a
 * branch is exhausted the walk climbs back, recovering the topic position
 * from the level starts found once at the beginning (or, for a topic of
 * more than WALK_LEVELS levels, by scanning back one level), and tries the
 * exact child. The stack depth is therefore constant even for a topic of
 * thirty thousand levels. The same holds for freeing the tree.
 *
 * topic_match_naive() is a deliberately plain, independent matcher used by
 * the tests as the reference for the trie.
 */
#include "topic_tree.h"

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "mem.h"
#include "topic_level.h"

struct node {
	struct node *parent;
	struct node **kids; /* exact levels, sorted by topic_level_cmp */
	size_t nkids, kcap;
	struct node *plus, *hash;
	struct topic_sub *subs; /* sorted by owner address */
	size_t nsubs, scap;
	struct topic_group **groups;
	size_t ngroups, gcap;
	size_t level_len;
	char level[];
};

struct topic_tree {
	struct node *root;
	size_t count;
};

static bool is_wild(const char *l, size_t n, char c)
{
	return n == 1 && l[0] == c;
}

/* ---- nodes ------------------------------------------------------------- */

/* The exact child of n for level l; *at (may be NULL) is its index or the insertion point. */
static struct node *kid_find(const struct node *n, const char *l, size_t len, size_t *at)
{
	bool found;
	size_t i = topic_level_search((void *const *)n->kids, n->nkids,
				      offsetof(struct node, level_len), l, len, &found);

	if (at)
		*at = i;
	return found ? n->kids[i] : NULL;
}

/*
 * Makes room for one more elem-sized item in arr (n used of *cap). Returns
 * the array, moved or not, or NULL when out of memory (arr is untouched).
 */
static void *grow(void *arr, size_t n, size_t *cap, size_t elem)
{
	size_t ncap = *cap ? *cap * 2 : 4;

	if (n < *cap)
		return arr;
	arr = mem_realloc(arr, ncap * elem);
	if (arr)
		*cap = ncap;
	return arr;
}

static struct node *node_new(struct node *parent, const char *l, size_t len)
{
	struct node *n = mem_calloc(1, sizeof(*n) + len + 1);

	if (!n)
		return NULL;
	n->parent = parent;
	n->level_len = len;
	memcpy(n->level, l, len);
	return n;
}

static void group_free(struct topic_group *g)
{
	mem_free(g->name);
	mem_free(g->filter);
	mem_free(g->members);
	mem_free(g);
}

static void node_free(struct node *n)
{
	size_t i;

	for (i = 0; i < n->ngroups; i++)
		group_free(n->groups[i]);
	mem_free(n->groups);
	mem_free(n->subs);
	mem_free(n->kids);
	mem_free(n);
}

static bool node_empty(const struct node *n)
{
	return !n->nsubs && !n->ngroups && !n->nkids && !n->plus && !n->hash;
}

/* The child of n for level l, created when create is set; NULL when absent or out of memory. */
static struct node *child(struct node *n, const char *l, size_t len, bool create)
{
	struct node **slot = NULL, **kids, *c;
	size_t at = 0;

	if (is_wild(l, len, '+'))
		slot = &n->plus;
	else if (is_wild(l, len, '#'))
		slot = &n->hash;
	if (slot) {
		if (!*slot && create)
			*slot = node_new(n, l, len);
		return *slot;
	}
	c = kid_find(n, l, len, &at);
	if (c || !create)
		return c;
	kids = grow(n->kids, n->nkids, &n->kcap, sizeof(*kids));
	if (!kids)
		return NULL;
	n->kids = kids;
	c = node_new(n, l, len);
	if (!c)
		return NULL;
	memmove(n->kids + at + 1, n->kids + at, (n->nkids - at) * sizeof(*n->kids));
	n->kids[at] = c;
	n->nkids++;
	return c;
}

static void detach(struct node *p, struct node *n)
{
	size_t at = 0;

	if (p->plus == n) {
		p->plus = NULL;
	} else if (p->hash == n) {
		p->hash = NULL;
	} else if (kid_find(p, n->level, n->level_len, &at) == n) {
		p->nkids--;
		memmove(p->kids + at, p->kids + at + 1, (p->nkids - at) * sizeof(*p->kids));
	}
}

/* Frees n and its ancestors while they are empty. */
static void prune(struct topic_tree *t, struct node *n)
{
	struct node *p;

	while (n != t->root && node_empty(n)) {
		p = n->parent;
		detach(p, n);
		node_free(n);
		n = p;
	}
}

/* The node of filter; created (with its ancestors) when create is set. */
static struct node *node_path(struct topic_tree *t, const char *f, size_t len, bool create)
{
	struct node *n = t->root, *c;
	size_t pos = 0;

	while (pos <= len) {
		c = child(n, f + pos, topic_level_len(f, len, pos), create);
		if (!c) {
			if (create)
				prune(t, n);
			return NULL;
		}
		n = c;
		pos = topic_level_next(f, len, pos);
	}
	return n;
}

/* ---- entries ----------------------------------------------------------- */

static struct topic_sub *sub_find(const struct node *n, const void *owner, size_t *at)
{
	size_t lo = 0, hi = n->nsubs, mid;
	uintptr_t key = (uintptr_t)owner, k;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		k = (uintptr_t)n->subs[mid].owner;
		if (k == key) {
			*at = mid;
			return &n->subs[mid];
		}
		if (key < k)
			hi = mid;
		else
			lo = mid + 1;
	}
	*at = lo;
	return NULL;
}

static void sub_set(struct topic_sub *s, void *owner, uint8_t options, uint32_t subid)
{
	s->owner = owner;
	s->options = options;
	s->subid = subid;
}

static int sub_add(struct node *n, void *owner, uint8_t options, uint32_t subid, bool *existed)
{
	struct topic_sub *s;
	size_t at;

	s = sub_find(n, owner, &at);
	*existed = s != NULL;
	if (!s) {
		s = grow(n->subs, n->nsubs, &n->scap, sizeof(*s));
		if (!s)
			return -1;
		n->subs = s;
		s += at;
		memmove(s + 1, s, (n->nsubs - at) * sizeof(*s));
		n->nsubs++;
	}
	sub_set(s, owner, options, subid);
	return 0;
}

static int sub_del(struct node *n, const void *owner)
{
	size_t at;

	if (!sub_find(n, owner, &at))
		return -1;
	n->nsubs--;
	memmove(n->subs + at, n->subs + at + 1, (n->nsubs - at) * sizeof(*n->subs));
	return 0;
}

static size_t group_find(const struct node *n, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < n->ngroups; i++) {
		if (strlen(n->groups[i]->name) == len && !memcmp(n->groups[i]->name, name, len))
			return i;
	}
	return i;
}

static size_t member_find(const struct topic_group *g, const void *owner)
{
	size_t i;

	for (i = 0; i < g->n; i++) {
		if (g->members[i].owner == owner)
			return i;
	}
	return i;
}

/* A new, empty group with room for one member, attached to n. */
static struct topic_group *group_new(struct node *n, const char *name, size_t len,
				     const char *filter, size_t filter_len)
{
	struct topic_group *g = mem_calloc(1, sizeof(*g)), **groups;

	if (!g)
		return NULL;
	g->name = mem_strndup(name, len);
	g->filter = mem_strndup(filter, filter_len);
	if (!g->name || !g->filter)
		goto fail;
	g->members = grow(NULL, 0, &g->cap, sizeof(*g->members));
	if (!g->members)
		goto fail;
	groups = grow(n->groups, n->ngroups, &n->gcap, sizeof(*groups));
	if (!groups)
		goto fail;
	n->groups = groups;
	n->groups[n->ngroups++] = g;
	return g;
fail:
	group_free(g);
	return NULL;
}

static void group_detach(struct node *n, size_t gi)
{
	group_free(n->groups[gi]);
	n->ngroups--;
	memmove(n->groups + gi, n->groups + gi + 1, (n->ngroups - gi) * sizeof(*n->groups));
}

static int member_add(struct node *n, const char *name, size_t len, const char *filter,
		      size_t filter_len, void *owner, uint8_t options, uint32_t subid,
		      bool *existed)
{
	size_t gi = group_find(n, name, len), mi;
	struct topic_group *g;
	struct topic_sub *m;

	g = gi < n->ngroups ? n->groups[gi] : group_new(n, name, len, filter, filter_len);
	if (!g)
		return -1;
	mi = member_find(g, owner);
	*existed = mi < g->n;
	if (!*existed) {
		/* A new group already has room; only an old one can fail here. */
		m = grow(g->members, g->n, &g->cap, sizeof(*m));
		if (!m)
			return -1;
		g->members = m;
		g->n++;
	}
	sub_set(&g->members[mi], owner, options, subid);
	return 0;
}

static int member_del(struct node *n, const char *name, size_t len, const void *owner)
{
	size_t gi = group_find(n, name, len), mi;
	struct topic_group *g;

	if (gi == n->ngroups)
		return -1;
	g = n->groups[gi];
	mi = member_find(g, owner);
	if (mi == g->n)
		return -1;
	g->n--;
	memmove(g->members + mi, g->members + mi + 1, (g->n - mi) * sizeof(*g->members));
	/* Keep the round-robin cursor on the member that was next. */
	if (mi < g->next)
		g->next--;
	if (g->next >= g->n)
		g->next = 0;
	if (g->n == 0)
		group_detach(n, gi);
	return 0;
}

/* ---- public ------------------------------------------------------------ */

struct topic_tree *topic_tree_new(void)
{
	struct topic_tree *t = mem_calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->root = node_new(NULL, "", 0);
	if (!t->root) {
		mem_free(t);
		return NULL;
	}
	return t;
}

void topic_tree_free(struct topic_tree *t)
{
	struct node *n, *c;

	if (!t)
		return;
	/* Post-order without recursion: descend to a leaf, free it, resume at its parent. */
	n = t->root;
	while (n) {
		c = n->hash ? n->hash : n->plus ? n->plus : n->nkids ? n->kids[n->nkids - 1] : NULL;
		if (c) {
			n = c;
			continue;
		}
		c = n->parent;
		if (c && c->hash == n)
			c->hash = NULL;
		else if (c && c->plus == n)
			c->plus = NULL;
		else if (c)
			c->nkids--;
		node_free(n);
		n = c;
	}
	mem_free(t);
}

int topic_tree_subscribe(struct topic_tree *t, const char *filter, size_t filter_len,
			 const char *group, size_t group_len, void *owner, uint8_t options,
			 uint32_t subid, bool *existed)
{
	struct node *n = node_path(t, filter, filter_len, true);
	bool old = false;
	int rc;

	if (!n)
		return -1;
	if (group)
		rc = member_add(n, group, group_len, filter, filter_len, owner, options, subid,
				&old);
	else
		rc = sub_add(n, owner, options, subid, &old); /* [MQTT-3.8.4-3] */
	if (rc) {
		prune(t, n);
		return -1;
	}
	if (!old)
		t->count++;
	if (existed)
		*existed = old;
	return 0;
}

int topic_tree_unsubscribe(struct topic_tree *t, const char *filter, size_t filter_len,
			   const char *group, size_t group_len, void *owner)
{
	struct node *n = node_path(t, filter, filter_len, false);
	int rc;

	if (!n)
		return -1;
	rc = group ? member_del(n, group, group_len, owner) : sub_del(n, owner);
	if (rc)
		return -1;
	t->count--;
	prune(t, n);
	return 0;
}

size_t topic_tree_count(const struct topic_tree *t)
{
	return t->count;
}

/* ---- matching ---------------------------------------------------------- */

/*
 * Level starts of the topic, found once per match so that stepping down
 * and back up is an array lookup; a topic with more levels than this is
 * walked by scanning (topic_level_len, topic_level_prev) instead.
 */
#define WALK_LEVELS 32

struct walk {
	const struct node *root;
	const char *topic;
	size_t len;
	size_t pos; /* start of the topic level to match below the current node */
	size_t depth; /* index of that level */
	size_t nlevels; /* levels in starts[]; 0 when the topic has too many */
	bool dollar; /* [MQTT-4.7.2-1]: no wildcard at the first level */
	topic_match_fn fn;
	void *arg;
	uint32_t starts[WALK_LEVELS];
};

static void walk_split(struct walk *w)
{
	const char *p = w->topic, *end = w->topic + w->len, *slash;

	w->nlevels = 0;
	for (;;) {
		if (w->nlevels == WALK_LEVELS) {
			w->nlevels = 0; /* too deep: scan instead */
			return;
		}
		w->starts[w->nlevels++] = (uint32_t)(p - w->topic);
		slash = memchr(p, '/', (size_t)(end - p));
		if (!slash)
			return;
		p = slash + 1;
	}
}

static size_t walk_level_len(const struct walk *w)
{
	if (!w->nlevels)
		return topic_level_len(w->topic, w->len, w->pos);
	if (w->depth + 1 < w->nlevels)
		return w->starts[w->depth + 1] - 1 - w->pos;
	return w->len - w->pos;
}

/* Steps to the next level; past the last one, pos is len + 1. */
static void walk_down(struct walk *w)
{
	if (!w->nlevels)
		w->pos = topic_level_next(w->topic, w->len, w->pos);
	else
		w->pos = w->depth + 1 < w->nlevels ? w->starts[w->depth + 1] : w->len + 1;
	w->depth++;
}

static void walk_up(struct walk *w)
{
	w->depth--;
	w->pos = w->nlevels ? w->starts[w->depth] : topic_level_prev(w->topic, w->pos);
}

static void deliver(const struct walk *w, const struct node *n)
{
	size_t i;

	if (!n)
		return;
	for (i = 0; i < n->nsubs; i++)
		w->fn(&n->subs[i], NULL, w->arg);
	for (i = 0; i < n->ngroups; i++)
		w->fn(NULL, n->groups[i], w->arg);
}

static struct node *exact_kid(const struct walk *w, const struct node *n)
{
	return kid_find(n, w->topic + w->pos, walk_level_len(w), NULL);
}

/* Delivers what matches at n; returns the first child to descend into, or NULL. */
static struct node *visit(const struct walk *w, const struct node *n)
{
	if (w->pos > w->len) {
		deliver(w, n);
		deliver(w, n->hash); /* "a/#" also matches "a" (section 4.7.1.2) */
		return NULL;
	}
	if (!(w->dollar && n == w->root)) {
		deliver(w, n->hash);
		if (n->plus)
			return n->plus;
	}
	return exact_kid(w, n);
}

/* Climbs from n to the nearest untried exact branch; NULL when the walk is over. */
static struct node *climb(struct walk *w, const struct node *n)
{
	const struct node *c;
	struct node *k;

	while (n != w->root) {
		c = n;
		n = n->parent;
		walk_up(w);
		if (c == n->plus && (k = exact_kid(w, n)))
			return k;
	}
	return NULL;
}

void topic_tree_match(struct topic_tree *t, const char *topic, size_t topic_len, topic_match_fn fn,
		      void *arg)
{
	struct walk w;
	struct node *n = t->root, *next;

	if (topic_len == 0)
		return;
	w.root = t->root;
	w.topic = topic;
	w.len = topic_len;
	w.pos = 0;
	w.depth = 0;
	w.dollar = topic[0] == '$';
	w.fn = fn;
	w.arg = arg;
	walk_split(&w);
	while (n) {
		next = visit(&w, n);
		if (!next)
			next = climb(&w, n);
		if (next)
			walk_down(&w);
		n = next;
	}
}

struct topic_group *topic_tree_find_group(struct topic_tree *t, const char *filter,
					  size_t filter_len, const char *group, size_t group_len)
{
	struct node *n = node_path(t, filter, filter_len, false);
	size_t gi;

	if (!n)
		return NULL;
	gi = group_find(n, group, group_len);
	return gi < n->ngroups && n->groups[gi]->n ? n->groups[gi] : NULL;
}
