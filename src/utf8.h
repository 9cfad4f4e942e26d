/*
 * utf8.h - UTF-8 validation (topic syntax is topic.h's).
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

/*
 * The length of the longest prefix of s made of whole 8-byte runs of plain
 * ASCII without NUL (and, with no_wildcards, without '+' or '#'): a part
 * that needs no further check. A multiple of 8, at most len.
 */
size_t utf8_plain_prefix(const char *s, size_t len, bool no_wildcards);

#endif
