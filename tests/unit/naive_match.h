/*
 * naive_match.h - the reference semantics the tests hold the tries (and
 * topic_matches) to: does filter (no $share prefix) match topic? Written as
 * plainly as possible, on NUL-terminated strings; not part of the broker.
 */
#ifndef SLUICE_TEST_NAIVE_MATCH_H
#define SLUICE_TEST_NAIVE_MATCH_H

#include <stdbool.h>
#include <string.h>

static inline bool topic_match_naive(const char *filter, const char *topic)
{
	const char *f = filter, *t = topic;
	size_t fl, tl;

	if (t[0] == '$' && (f[0] == '+' || f[0] == '#')) /* [MQTT-4.7.2-1] */
		return false;
	for (;;) {
		fl = strcspn(f, "/");
		tl = strcspn(t, "/");
		if (fl == 1 && f[0] == '#')
			return true;
		if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl)))
			return false;
		f += fl;
		t += tl;
		if (!*f && !*t)
			return true;
		if (!*t) /* topic done: only a trailing "/#" can still match */
			return strcmp(f, "/#") == 0;
		if (!*f)
			return false;
		f++;
		t++;
	}
}

#endif
