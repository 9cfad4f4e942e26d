/*
 * topic_level.h - walking the '/'-separated levels of a topic name or
 * filter, and the sorted arrays of child nodes that the subscription tree
 * and the retained tree both keep. Pure; shared so that the two tries agree
 * on what a level is.
 *
 * Positions are byte offsets into (s, len): a level starts at pos and runs
 * to the next '/' or the end. The last level's successor is len + 1, which
 * is how a walk knows it has consumed the whole string (an empty last level,
 * as in "a/", is a real level).
 */
#ifndef SLUICE_TOPIC_LEVEL_H
#define SLUICE_TOPIC_LEVEL_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the level starting at pos. */
size_t topic_level_len(const char *s, size_t len, size_t pos);
/* Start of the level after the one at pos; len + 1 when pos is the last. */
size_t topic_level_next(const char *s, size_t len, size_t pos);
/* Inverse of topic_level_next: start of the level that it stepped over. */
size_t topic_level_prev(const char *s, size_t pos);
/* Orders levels bytewise, a shorter prefix first. */
int topic_level_cmp(const char *a, size_t alen, const char *b, size_t blen);

/*
 * Binary search of kids[0..n), sorted by topic_level_cmp, for level l. Each node
 * keeps its level length as a size_t at byte offset len_off and the level's
 * bytes right after it (both trees end their node struct with
 * `size_t level_len; char level[];`). Returns the index of the match and
 * sets *found, or the insertion point with *found false.
 */
size_t topic_level_search(void *const *kids, size_t n, size_t len_off, const char *l, size_t len,
			  bool *found);

#endif
