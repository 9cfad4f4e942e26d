/*
 * topic.c - the syntax of topic names and filters, shared subscriptions,
 * and matching one filter against one topic.
 *
 * Topic filter syntax is checked per character: a wildcard is valid only
 * when it fills a whole level, and '#' only at the very end. A shared
 * subscription "$share/{group}/{filter}" is split here, so that the
 * subscribe handler and the topic tree agree on where the group ends, and
 * the key that names a shared group inside the broker ("group\0filter\0")
 * is made and read here only. Pure: (pointer, length) strings, no
 * allocation except the key's.
 */
#include "topic.h"

#include <string.h>

#include "buf.h"
#include "utf8.h"

#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN 7

bool topic_name_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0) /* [MQTT-4.7.3-1] */
		return false;
	/* One pass over the plain ASCII part; the rest is checked in full. */
	i = utf8_plain_prefix(s, len, true);
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

/* --- the share key ----------------------------------------------------------- */

size_t topic_share_key_size(const char *key)
{
	size_t g = strlen(key);

	return g + 1 + strlen(key + g + 1) + 1;
}

const char *topic_share_key_filter(const char *key)
{
	return key + strlen(key) + 1;
}

int topic_share_key_put(struct buf *b, const char *group, size_t glen, const char *filter,
			size_t flen)
{
	static const char nul;

	if (buf_reserve(b, glen + flen + 2))
		return -1;
	buf_put(b, group, glen);
	buf_put(b, &nul, 1);
	buf_put(b, filter, flen);
	buf_put(b, &nul, 1);
	return 0;
}

/* --- matching ----------------------------------------------------------------- */

/* Length of the level at the start of s (up to '/' or the end). */
static size_t level(const char *s, size_t len)
{
	const char *slash = memchr(s, '/', len);

	return slash ? (size_t)(slash - s) : len;
}

bool topic_matches(const char *f, size_t fl, const char *t, size_t tl)
{
	if (tl && t[0] == '$' && fl && (f[0] == '+' || f[0] == '#')) /* [MQTT-4.7.2-1] */
		return false;
	for (;;) {
		size_t a = level(f, fl), b = level(t, tl);

		if (a == 1 && f[0] == '#') /* [MQTT-4.7.1-2]: the parent level too */
			return true;
		if (!(a == 1 && f[0] == '+') && (a != b || memcmp(f, t, a)))
			return false;
		if (a == fl && b == tl)
			return true;
		if (b == tl) /* topic done: only a trailing "/#" can still match */
			return fl - a == 2 && f[a + 1] == '#';
		if (a == fl)
			return false;
		f += a + 1;
		fl -= a + 1;
		t += b + 1;
		tl -= b + 1;
	}
}
