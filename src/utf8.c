/*
 * utf8.c - UTF-8 well-formedness as MQTT requires it.
 *
 * Every string a client sends passes through here before the broker looks
 * at it, so the check is strict and cheap: one pass, no allocation, no NUL
 * terminator needed. ASCII is the common case and takes a fast path, 8
 * bytes at a time; a multibyte sequence is decoded to its code point so
 * that overlong forms, surrogates and values above U+10FFFF are all caught
 * by one range check.
 *
 * Control characters and non-characters are allowed: the specification
 * lets a receiver reject them but does not require it, and some clients
 * use them.
 */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

/*
 * Decodes the multibyte sequence at p (avail bytes left). Returns its
 * length, or -1 when it is ill-formed.
 */
static int decode_multi(const uint8_t *p, size_t avail)
{
	uint32_t cp, min;
	size_t n, k;

	if (p[0] >= 0xC2 && p[0] <= 0xDF) {
		n = 2;
		cp = p[0] & 0x1F;
		min = 0x80;
	} else if ((p[0] & 0xF0) == 0xE0) {
		n = 3;
		cp = p[0] & 0x0F;
		min = 0x800;
	} else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		n = 4;
		cp = p[0] & 0x07;
		min = 0x10000;
	} else {
		/* stray continuation byte, 0xC0/0xC1 (always overlong), 0xF5..0xFF */
		return -1;
	}
	if (avail < n)
		return -1;
	for (k = 1; k < n; k++) {
		if ((p[k] & 0xC0) != 0x80)
			return -1;
		cp = (cp << 6) | (p[k] & 0x3F);
	}
	if (cp < min) /* overlong [MQTT-1.5.4-1] */
		return -1;
	if (cp >= 0xD800 && cp <= 0xDFFF) /* surrogate [MQTT-1.5.4-1] */
		return -1;
	if (cp > 0x10FFFF)
		return -1;
	return (int)n;
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* True when some byte of v equals c. */
static bool has_byte(uint64_t v, uint8_t c)
{
	uint64_t x = v ^ (ONES * c);

	return ((x - ONES) & ~x & HIGHS) != 0;
}

/*
 * True when the 8 bytes at p are all ASCII and none is NUL (the common case),
 * and with no_wildcards none is '+' or '#' either: a run of a topic name
 * that is valid as it is.
 */
static bool plain8(const uint8_t *p, bool no_wildcards)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	if ((v & HIGHS) || has_byte(v, 0))
		return false;
	return !no_wildcards || (!has_byte(v, '+') && !has_byte(v, '#'));
}

size_t utf8_plain_prefix(const char *s, size_t len, bool no_wildcards)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0;

	while (i + 8 <= len && plain8(p + i, no_wildcards))
		i += 8;
	return i;
}

int utf8_check(const char *s, size_t len)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = utf8_plain_prefix(s, len, false);
	int n;

	while (i < len) {
		if (p[i] == 0) /* [MQTT-1.5.4-2] */
			return -1;
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		n = decode_multi(p + i, len - i);
		if (n < 0)
			return -1;
		i += (size_t)n;
	}
	return 0;
}
