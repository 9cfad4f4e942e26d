/*
 * utf8.c - UTF-8 well-formedness and the syntax of topic names and filters.
 *
 * Every string a client sends passes through here before the broker looks
 * at it, so the checks are strict and cheap: one pass, no allocation, no
 * NUL terminator needed. ASCII is the common case and takes a fast path;
 * a multibyte sequence is decoded to its code point so that overlong forms,
 * surrogates and values above U+10FFFF are all caught by one range check.
 *
 * Topic filter syntax is checked per character: a wildcard is valid only
 * when it fills a whole level, and '#' only at the very end. A shared
 * subscription "$share/{group}/{filter}" is split here too, so that the
 * subscribe handler and the topic tree agree on where the group ends.
 *
 * Control characters and non-characters are allowed: the specification
 * lets a receiver reject them but does not require it, and some clients
 * use them.
 */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN 7

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

int utf8_check(const char *s, size_t len)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0;
	int n;

	while (i + 8 <= len && plain8(p + i, false))
		i += 8;
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

bool topic_name_valid(const char *s, size_t len)
{
	size_t i = 0;

	if (len == 0) /* [MQTT-4.7.3-1] */
		return false;
	/* One pass over the plain ASCII part; the rest is checked in full. */
	while (i + 8 <= len && plain8((const uint8_t *)s + i, true))
		i += 8;
	if (topic_filter_has_wildcard(s + i, len - i)) /* [MQTT-3.3.2-2] [MQTT-4.7.1-1] */
		return false;
	return utf8_check(s + i, len - i) == 0;
}

/* Wildcard placement of a plain (non-shared) filter; UTF-8 is checked by the caller. */
static bool filter_syntax_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0) /* [MQTT-4.7.3-1] */
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] != '+' && s[i] != '#')
			continue;
		if (i > 0 && s[i - 1] != '/') /* [MQTT-4.7.1-2] [MQTT-4.7.1-3] */
			return false;
		if (s[i] == '#' && i != len - 1) /* [MQTT-4.7.1-2] */
			return false;
		if (s[i] == '+' && i != len - 1 && s[i + 1] != '/') /* [MQTT-4.7.1-3] */
			return false;
	}
	return true;
}

static bool is_share(const char *s, size_t len)
{
	return len >= SHARE_PREFIX_LEN && memcmp(s, SHARE_PREFIX, SHARE_PREFIX_LEN) == 0;
}

/* Splits a string known to start with "$share/"; UTF-8 is checked by the caller. */
static bool share_parse(const char *s, size_t len, const char **group, size_t *group_len,
			const char **filter, size_t *filter_len)
{
	const char *g = s + SHARE_PREFIX_LEN;
	size_t rest = len - SHARE_PREFIX_LEN;
	const char *slash = memchr(g, '/', rest);
	size_t glen;

	if (!slash) /* the group must be followed by "/" [MQTT-4.8.2-2] */
		return false;
	glen = (size_t)(slash - g);
	if (glen == 0) /* [MQTT-4.8.2-1] */
		return false;
	if (memchr(g, '+', glen) || memchr(g, '#', glen)) /* [MQTT-4.8.2-2] */
		return false;
	if (!filter_syntax_valid(slash + 1, rest - glen - 1)) /* [MQTT-4.8.2-2] */
		return false;
	*group = g;
	*group_len = glen;
	*filter = slash + 1;
	*filter_len = rest - glen - 1;
	return true;
}

bool topic_filter_valid(const char *s, size_t len)
{
	const char *g, *f;
	size_t glen, flen;

	if (len == 0) /* [MQTT-4.7.3-1] */
		return false;
	if (utf8_check(s, len))
		return false;
	if (is_share(s, len))
		return share_parse(s, len, &g, &glen, &f, &flen);
	return filter_syntax_valid(s, len);
}

bool topic_share_split(const char *s, size_t len, const char **group, size_t *group_len,
		       const char **filter, size_t *filter_len)
{
	if (!is_share(s, len) || utf8_check(s, len))
		return false;
	return share_parse(s, len, group, group_len, filter, filter_len);
}

bool topic_filter_has_wildcard(const char *s, size_t len)
{
	if (len == 0)
		return false;
	return memchr(s, '+', len) != NULL || memchr(s, '#', len) != NULL;
}
