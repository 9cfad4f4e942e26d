/*
 * utf8.h - UTF-8 validation and topic name / topic filter syntax.
 *
 * Pure functions over (pointer, length); strings need not be NUL-terminated.
 */
#ifndef SLUICE_UTF8_H
#define SLUICE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Well-formed UTF-8 as MQTT requires [MQTT-1.5.4-1, MQTT-1.5.4-2]: no
 * overlong forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF,
 * no U+0000. Returns 0 when valid, -1 otherwise.
 */
int utf8_check(const char *s, size_t len);

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

#endif
