/*
 * topic.h - topic name and filter syntax, shared subscriptions and the key
 * that names a shared group, and matching one filter against one topic.
 *
 * Pure functions over (pointer, length); strings need not be NUL-terminated
 * unless said.
 */
#ifndef SLUICE_TOPIC_H
#define SLUICE_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

struct buf;

/* A topic name for PUBLISH: valid UTF-8, at least 1 byte, no '+' or '#' [MQTT-3.3.2-2]. */
bool topic_name_valid(const char *s, size_t len);

/*
 * A topic filter: valid UTF-8, at least 1 byte; '#' only as the whole last
 * level [MQTT-4.7.1-2]; '+' only as a whole level [MQTT-4.7.1-3]. A shared
 * subscription "$share/{group}/{filter}" is valid when the group is at least
 * one character with no '/', '+' or '#' and the filter is valid
 * [MQTT-4.8.2-1, MQTT-4.8.2-2].
 */
bool topic_filter_valid(const char *s, size_t len);

/*
 * Splits "$share/{group}/{filter}". Returns true when s is a shared
 * subscription (syntax as above) and sets group/filter (pointers into s).
 * Returns false for anything not starting with "$share/".
 */
bool topic_share_split(const char *s, size_t len, const char **group, size_t *group_len,
		       const char **filter, size_t *filter_len);

/* True when the filter contains '+' or '#'. */
bool topic_filter_has_wildcard(const char *s, size_t len);

/*
 * Does filter f (no "$share/" prefix) match topic t? '+' matches one level,
 * '#' the rest including the parent; a wildcard first level does not match
 * a topic starting with '$' [MQTT-4.7.2-1].
 */
bool topic_matches(const char *f, size_t fl, const char *t, size_t tl);

/*
 * Inside the broker a shared group is named by one NUL-terminated string
 * pair, "group\0filter\0" (the share key): the group name reads as a C
 * string, the filter follows it.
 */
int topic_share_key_put(struct buf *b, const char *group, size_t glen, const char *filter,
			size_t flen);
/* Bytes of the key, both NULs included. */
size_t topic_share_key_size(const char *key);
const char *topic_share_key_filter(const char *key);

#endif
