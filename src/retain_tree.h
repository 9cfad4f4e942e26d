/*
 * retain_tree.h - retained messages by topic name, matched by topic filter.
 *
 * A trie of topic levels holding one opaque value per topic. The tree owns
 * the values: it releases them with the free function given at creation
 * when they are replaced, removed, or the tree is freed.
 */
#ifndef SLUICE_RETAIN_TREE_H
#define SLUICE_RETAIN_TREE_H

#include <stddef.h>

struct retain_tree;

struct retain_tree *retain_tree_new(void (*free_value)(void *));
void retain_tree_free(struct retain_tree *t);

/* Sets the value of topic (takes value), replacing any old one. Returns 0 or -1 (OOM; value not taken). */
int retain_tree_set(struct retain_tree *t, const char *topic, size_t len, void *value);
/* Removes topic's value. Returns 0, or -1 when there was none. */
int retain_tree_clear(struct retain_tree *t, const char *topic, size_t len);
void *retain_tree_get(struct retain_tree *t, const char *topic, size_t len);

/*
 * Calls fn for every stored topic that filter matches (the '$' rule applies:
 * a filter starting with a wildcard does not match '$' topics). The topic
 * is NUL-terminated. fn must not change the tree.
 */
typedef void (*retain_match_fn)(const char *topic, void *value, void *arg);
void retain_tree_match(struct retain_tree *t, const char *filter, size_t len, retain_match_fn fn,
		       void *arg);

size_t retain_tree_count(const struct retain_tree *t);

#endif
