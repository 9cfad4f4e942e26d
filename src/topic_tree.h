/*
 * topic_tree.h - subscription matching: a trie of topic levels with '+' and
 * '#', the '$' rule, and shared subscription groups.
 *
 * Each node is one level; a subscription lives on the node of its filter.
 * A shared subscription "$share/g/f" lives on the node of f, in group g.
 * Topics starting with '$' are not matched by a filter whose first level is
 * a wildcard [MQTT-4.7.2-1].
 *
 * The tree stores an opaque owner pointer (the broker's session) per entry;
 * it neither owns nor dereferences it. One owner has at most one entry per
 * (filter, group): subscribing again replaces options and identifier
 * [MQTT-3.8.4-3].
 */
#ifndef SLUICE_TOPIC_TREE_H
#define SLUICE_TOPIC_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct topic_sub {
	void *owner;
	uint32_t subid; /* 0 = none */
	uint8_t options; /* MQTT_SUBOPT_* bits: QoS, no local, retain as published, retain handling */
};

struct topic_group {
	char *name;
	char *filter; /* NUL-terminated, without the $share/ prefix */
	struct topic_sub *members;
	size_t n, cap;
	size_t next; /* round-robin cursor kept for the broker's use */
	void *queue; /* the broker's queue of the group, NULL until it looks it up */
};

struct topic_tree;

struct topic_tree *topic_tree_new(void);
void topic_tree_free(struct topic_tree *t);

/*
 * Adds or replaces the entry of owner on filter (group NULL for a plain
 * subscription). Filter and group are (pointer, length). *existed tells
 * whether it replaced one. Returns 0, or -1 when out of memory.
 */
int topic_tree_subscribe(struct topic_tree *t, const char *filter, size_t filter_len,
			 const char *group, size_t group_len, void *owner, uint8_t options,
			 uint32_t subid, bool *existed);

/* Removes owner's entry. Returns 0, or -1 when there was none. Empty nodes are freed. */
int topic_tree_unsubscribe(struct topic_tree *t, const char *filter, size_t filter_len,
			   const char *group, size_t group_len, void *owner);

/*
 * Calls fn once for every plain subscription matching topic (sub set, grp
 * NULL) and once for every shared group with at least one member matching
 * it (sub NULL, grp set). The callback must not change the tree.
 */
typedef void (*topic_match_fn)(const struct topic_sub *sub, struct topic_group *grp, void *arg);
void topic_tree_match(struct topic_tree *t, const char *topic, size_t topic_len, topic_match_fn fn,
		      void *arg);

/* Number of entries (plain subscriptions plus group members). */
size_t topic_tree_count(const struct topic_tree *t);

/* The group (filter, name) if it has members, else NULL (the tree keeps ownership). */
struct topic_group *topic_tree_find_group(struct topic_tree *t, const char *filter,
					  size_t filter_len, const char *group, size_t group_len);

#endif
