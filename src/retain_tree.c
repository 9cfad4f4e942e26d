/*
 * retain_tree.c - retained messages, one per topic, found by topic filter.
 *
 * The dual of the subscription trie: here the tree holds topic names
 * (no wildcards) and the query is a filter. One node per topic level; the
 * children of a node are an array sorted by level bytes, so an exact level
 * of the filter is a binary search and a '+' walks the array in order.
 * A node holding a value also holds its whole topic name, NUL-terminated,
 * so that a match hands the name to the callback without building it.
 * Interior nodes hold only their level: storing the full name everywhere
 * would cost the square of the depth for a topic of many short levels.
 *
 * Invariant: every node but the root holds a value or a child; clearing a
 * value prunes the nodes it leaves empty.
 *
 * A new subscriber to "#" on a broker with a million retained topics walks
 * the whole tree, and a topic may have thirty thousand levels, so neither
 * matching nor freeing recurses. The walk moves along parent pointers: on
 * the way back up it recovers the filter position by scanning back one
 * level, and a '+' finds its place among the siblings by binary search.
 *
 * The '$' rule [MQTT-4.7.2-1]: a filter whose first level is a wildcard
 * skips the root's children whose level starts with '$'.
 */
#include "retain_tree.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "mem.h"
#include "topic_level.h"

struct rnode {
	struct rnode *parent;
	struct rnode **kids; /* sorted by level */
	size_t nkids, kcap;
	void *value;
	char *topic; /* set exactly when the node holds a value */
	size_t level_len;
	char level[];
};

struct retain_tree {
	struct rnode *root;
	void (*free_value)(void *);
	size_t count;
};

/* ---- nodes ------------------------------------------------------------- */

/* The exact child of n for level l; *at (may be NULL) is its index or the insertion point. */
static struct rnode *kid_find(const struct rnode *n, const char *l, size_t len, size_t *at)
{
	bool found;
	size_t i = topic_level_search((void *const *)n->kids, n->nkids,
				      offsetof(struct rnode, level_len), l, len, &found);

	if (at)
		*at = i;
	return found ? n->kids[i] : NULL;
}

static size_t kid_index(const struct rnode *n, const struct rnode *kid)
{
	size_t at = 0;

	kid_find(n, kid->level, kid->level_len, &at);
	return at;
}

static struct rnode *node_new(struct rnode *p, const char *l, size_t len)
{
	struct rnode *n = mem_calloc(1, sizeof(*n) + len + 1);

	if (!n)
		return NULL;
	n->parent = p;
	n->level_len = len;
	memcpy(n->level, l, len);
	return n;
}

static struct rnode *kid_add(struct rnode *n, const char *l, size_t len, size_t at)
{
	struct rnode **kids = n->kids, *c;

	if (n->nkids == n->kcap) {
		kids = mem_realloc(kids, (n->kcap ? n->kcap * 2 : 4) * sizeof(*kids));
		if (!kids)
			return NULL;
		n->kids = kids;
		n->kcap = n->kcap ? n->kcap * 2 : 4;
	}
	c = node_new(n, l, len);
	if (!c)
		return NULL;
	memmove(kids + at + 1, kids + at, (n->nkids - at) * sizeof(*kids));
	kids[at] = c;
	n->nkids++;
	return c;
}

static void node_free(struct retain_tree *t, struct rnode *n)
{
	if (n->topic && t->free_value)
		t->free_value(n->value);
	mem_free(n->topic);
	mem_free(n->kids);
	mem_free(n);
}

/* Frees n and its ancestors while they hold neither value nor child. */
static void prune(struct retain_tree *t, struct rnode *n)
{
	struct rnode *p;
	size_t at;

	while (n != t->root && !n->topic && !n->nkids) {
		p = n->parent;
		at = kid_index(p, n);
		p->nkids--;
		memmove(p->kids + at, p->kids + at + 1, (p->nkids - at) * sizeof(*p->kids));
		node_free(t, n);
		n = p;
	}
}

/* The node of topic, created with its ancestors when create is set. */
static struct rnode *node_path(struct retain_tree *t, const char *s, size_t len, bool create)
{
	struct rnode *n = t->root, *c;
	size_t pos = 0, ll, at;

	if (len == 0)
		return NULL;
	while (pos <= len) {
		ll = topic_level_len(s, len, pos);
		c = kid_find(n, s + pos, ll, &at);
		if (!c && create)
			c = kid_add(n, s + pos, ll, at);
		if (!c) {
			if (create)
				prune(t, n);
			return NULL;
		}
		n = c;
		pos = topic_level_next(s, len, pos);
	}
	return n;
}

/* ---- public ------------------------------------------------------------ */

struct retain_tree *retain_tree_new(void (*free_value)(void *))
{
	struct retain_tree *t = mem_calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->root = mem_calloc(1, sizeof(*t->root) + 1);
	if (!t->root) {
		mem_free(t);
		return NULL;
	}
	t->free_value = free_value;
	return t;
}

void retain_tree_free(struct retain_tree *t)
{
	struct rnode *n, *p;

	if (!t)
		return;
	/* Post-order without recursion: free the last child first, then resume at the parent. */
	n = t->root;
	while (n) {
		if (n->nkids) {
			n = n->kids[n->nkids - 1];
			continue;
		}
		p = n->parent;
		if (p)
			p->nkids--;
		node_free(t, n);
		n = p;
	}
	mem_free(t);
}

int retain_tree_set(struct retain_tree *t, const char *topic, size_t len, void *value)
{
	struct rnode *n = node_path(t, topic, len, true);

	if (!n)
		return -1;
	if (!n->topic) {
		n->topic = mem_strndup(topic, len);
		if (!n->topic) {
			prune(t, n);
			return -1;
		}
		t->count++;
	} else if (t->free_value) {
		t->free_value(n->value);
	}
	n->value = value;
	return 0;
}

int retain_tree_clear(struct retain_tree *t, const char *topic, size_t len)
{
	struct rnode *n = node_path(t, topic, len, false);

	if (!n || !n->topic)
		return -1;
	if (t->free_value)
		t->free_value(n->value);
	n->value = NULL;
	mem_free(n->topic);
	n->topic = NULL;
	t->count--;
	prune(t, n);
	return 0;
}

void *retain_tree_get(struct retain_tree *t, const char *topic, size_t len)
{
	struct rnode *n = node_path(t, topic, len, false);

	return n ? n->value : NULL;
}

size_t retain_tree_count(const struct retain_tree *t)
{
	return t->count;
}

/* ---- matching ---------------------------------------------------------- */

struct rwalk {
	const struct rnode *root;
	const char *f;
	size_t len;
	size_t pos; /* start of the filter level to match below the current node */
	retain_match_fn fn;
	void *arg;
};

static bool at_wild(const struct rwalk *w, char c)
{
	return w->pos < w->len && w->f[w->pos] == c && topic_level_len(w->f, w->len, w->pos) == 1;
}

/* A wildcard at the first level does not take '$' topics [MQTT-4.7.2-1]. */
static bool hidden(const struct rwalk *w, const struct rnode *p, const struct rnode *kid)
{
	return p == w->root && kid->level_len > 0 && kid->level[0] == '$';
}

static void emit(const struct rwalk *w, const struct rnode *n)
{
	if (n->topic)
		w->fn(n->topic, n->value, w->arg);
}

/* The first child of n from index i that a wildcard may take. */
static struct rnode *wild_kid(const struct rwalk *w, const struct rnode *n, size_t i)
{
	for (; i < n->nkids; i++) {
		if (!hidden(w, n, n->kids[i]))
			return n->kids[i];
	}
	return NULL;
}

/* Emits every value strictly below top, in pre-order, without recursion. */
static void emit_below(const struct rwalk *w, const struct rnode *top)
{
	const struct rnode *n = top, *c;
	struct rnode *k = wild_kid(w, n, 0);

	for (;;) {
		if (k) {
			n = k;
			emit(w, n);
			k = wild_kid(w, n, 0);
			continue;
		}
		if (n == top)
			return;
		c = n;
		n = n->parent;
		k = wild_kid(w, n, kid_index(n, c) + 1);
	}
}

/* Emits what matches at n; returns the first child to descend into, or NULL. */
static struct rnode *visit(const struct rwalk *w, const struct rnode *n)
{
	size_t at;

	if (w->pos > w->len) {
		emit(w, n);
		return NULL;
	}
	if (at_wild(w, '#')) {
		emit(w, n); /* "a/#" also matches "a" (section 4.7.1.2) */
		emit_below(w, n);
		return NULL;
	}
	if (at_wild(w, '+'))
		return wild_kid(w, n, 0);
	return kid_find(n, w->f + w->pos, topic_level_len(w->f, w->len, w->pos), &at);
}

/* Climbs from n to the next sibling a '+' may take; NULL when the walk is over. */
static struct rnode *climb(struct rwalk *w, const struct rnode *n)
{
	const struct rnode *c;
	struct rnode *k;

	while (n != w->root) {
		c = n;
		n = n->parent;
		w->pos = topic_level_prev(w->f, w->pos);
		if (at_wild(w, '+') && (k = wild_kid(w, n, kid_index(n, c) + 1)))
			return k;
	}
	return NULL;
}

void retain_tree_match(struct retain_tree *t, const char *filter, size_t len, retain_match_fn fn,
		       void *arg)
{
	struct rwalk w = { t->root, filter, len, 0, fn, arg };
	struct rnode *n = t->root, *next;

	if (len == 0)
		return;
	while (n) {
		next = visit(&w, n);
		if (!next)
			next = climb(&w, n);
		if (next)
			w.pos = topic_level_next(filter, len, w.pos);
		n = next;
	}
}
