/*
 * test_topic.c - topic_matches() (src/topic.c) held to topic_match_naive()
 * (naive_match.h): the specification's examples, every valid filter and
 * topic of up to three levels over a small alphabet, and random longer
 * ones. Strings are handed over as (pointer, length) without a NUL after
 * them, as the broker does with topics inside packets. Also the share key
 * helpers, "group\0filter\0", which name a shared group inside the broker.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "mem.h"
#include "naive_match.h"
#include "topic.h"
#include "topic_cases.h"

/*
 * topic_matches on copies of f and t that are followed by junk instead of
 * a NUL (a '/', a '#' and more), so that reading past a length shows.
 */
static bool matches_unterminated(const char *f, const char *t)
{
	static char fb[512], tb[512];
	size_t fl = strlen(f), tl = strlen(t);

	assert_true(fl + 8 < sizeof(fb) && tl + 8 < sizeof(tb));
	memcpy(fb, f, fl);
	memcpy(fb + fl, "/#+x/#\0", 7);
	memcpy(tb, t, tl);
	memcpy(tb + tl, "/x/y/z\0", 7);
	return topic_matches(fb, fl, tb, tl);
}

static void check_pair(const char *f, const char *t)
{
	bool want = topic_match_naive(f, t);

	if (topic_matches(f, strlen(f), t, strlen(t)) != want)
		fail_msg("filter \"%s\" topic \"%s\": naive %d", f, t, want);
	if (matches_unterminated(f, t) != want)
		fail_msg("filter \"%s\" topic \"%s\" (unterminated): naive %d", f, t, want);
}

static void test_spec_cases(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
		assert_true(topic_filter_valid(spec[i].filter, strlen(spec[i].filter)));
		assert_true(topic_name_valid(spec[i].topic, strlen(spec[i].topic)));
		if (topic_match_naive(spec[i].filter, spec[i].topic) != spec[i].match)
			fail_msg("naive: \"%s\" vs \"%s\"", spec[i].filter, spec[i].topic);
		if (topic_matches(spec[i].filter, strlen(spec[i].filter), spec[i].topic,
				  strlen(spec[i].topic)) != spec[i].match)
			fail_msg("topic_matches: \"%s\" vs \"%s\"", spec[i].filter, spec[i].topic);
		check_pair(spec[i].filter, spec[i].topic);
	}
}

/* A few corners not in the shared table, checked against the expected answer directly. */
static void test_corners(void **state)
{
	static const struct spec_case more[] = {
		{ "#", "a", true },	      { "#", "$", false },
		{ "$", "$", true },	      { "$/#", "$", true },
		{ "+/+", "/", true },	      { "/#", "/", true },
		{ "//#", "/", true },	      { "a/#", "a/", true },
		{ "a/#", "a//", true },	      { "a/+", "a//", false },
		{ "+/+/+", "//", true },      { "a/+/+", "a/b", false },
		{ "#", "$SYS/#", false },     { "$SYS", "$SYS", true },
		{ "$SYS/+", "$SYS/", true },  { "a/$x", "a/$x", true },
		{ "+/$x", "a/$x", true },     { "a", "ab", false },
		{ "ab", "a", false },	      { "a/b", "a", false },
		{ "a/+/#", "a/b/c/d", true }, { "+/#", "/", true },
		{ "+", "a/", false },	      { "x/y/z", "x/y/z", true },
		{ "x/y/z/#", "x/y/z", true }, { "x/y/+/#", "x/y", false },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
		if (topic_match_naive(more[i].filter, more[i].topic) != more[i].match)
			fail_msg("naive: \"%s\" vs \"%s\"", more[i].filter, more[i].topic);
		check_pair(more[i].filter, more[i].topic);
	}
}

/* --- every filter and topic of up to three levels -------------------------------- */

static const char *const levels[] = { "a", "b", "", "$x", "$", "ab" };
#define NLEVELS (sizeof(levels) / sizeof(levels[0]))

/* The idx-th string of n levels drawn from pool (of np): mixed-radix digits. */
static void build(char *out, size_t cap, const char *const *pool, size_t np, size_t n, size_t idx)
{
	size_t i;

	out[0] = '\0';
	for (i = 0; i < n; i++) {
		if (i)
			strncat(out, "/", cap - strlen(out) - 1);
		strncat(out, pool[idx % np], cap - strlen(out) - 1);
		idx /= np;
	}
}

static size_t power(size_t b, size_t e)
{
	size_t r = 1;

	while (e--)
		r *= b;
	return r;
}

static void test_exhaustive_small(void **state)
{
	static const char *const fpool[] = { "a", "b", "", "$x", "$", "ab", "+", "#" };
	const size_t nf = sizeof(fpool) / sizeof(fpool[0]);
	char f[64], t[64];
	size_t fn, fi, tn, ti, pairs = 0, hits = 0, filters = 0;

	(void)state;
	for (fn = 1; fn <= 3; fn++) {
		for (fi = 0; fi < power(nf, fn); fi++) {
			build(f, sizeof(f), fpool, nf, fn, fi);
			if (!topic_filter_valid(f, strlen(f)))
				continue; /* '#' not last, or the empty filter */
			filters++;
			for (tn = 1; tn <= 4; tn++) {
				for (ti = 0; ti < power(NLEVELS, tn); ti++) {
					build(t, sizeof(t), levels, NLEVELS, tn, ti);
					if (!topic_name_valid(t, strlen(t)))
						continue; /* the empty topic */
					check_pair(f, t);
					hits += topic_match_naive(f, t);
					pairs++;
				}
			}
		}
	}
	/* 8 + 8*8 - ... valid filters; many thousands of pairs, a good share matching */
	assert_true(filters > 300);
	assert_true(pairs > 400000);
	assert_true(hits > pairs / 100);
}

/* --- random longer ones ---------------------------------------------------------- */

static uint32_t rng = 0x6D2B79F5u;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/* Topics that look like the filters: mostly equal levels, so that long ones still match. */
static void random_topic(char *out, size_t cap, size_t n)
{
	size_t i;

	out[0] = '\0';
	for (i = 0; i < n; i++) {
		const char *l = rnd() % 4 ? "a" : levels[rnd() % NLEVELS];

		if (i)
			strncat(out, "/", cap - strlen(out) - 1);
		strncat(out, l, cap - strlen(out) - 1);
	}
}

static void random_filter(char *out, size_t cap, size_t n)
{
	size_t i;

	out[0] = '\0';
	for (i = 0; i < n; i++) {
		uint32_t r = rnd() % 16;
		const char *l = r < 3 ? "+" : r < 10 ? "a" : levels[rnd() % NLEVELS];

		if (r == 15 && i == n - 1)
			l = "#";
		if (i)
			strncat(out, "/", cap - strlen(out) - 1);
		strncat(out, l, cap - strlen(out) - 1);
	}
}

static void test_random(void **state)
{
	char f[256], t[256];
	size_t i, hits = 0;

	(void)state;
	for (i = 0; i < 200000; i++) {
		random_filter(f, sizeof(f), 1 + rnd() % 12);
		random_topic(t, sizeof(t), 1 + rnd() % 12);
		/* a '$' first level, which only a literal first level may match */
		if (rnd() % 8 == 0)
			t[0] = '$';
		if (!topic_name_valid(t, strlen(t)))
			continue;
		if (!f[0])
			continue; /* the one invalid filter these make */
		if (!topic_filter_valid(f, strlen(f)))
			fail_msg("invalid random filter \"%s\"", f);
		check_pair(f, t);
		hits += topic_match_naive(f, t);
	}
	assert_true(hits > 2000);
	assert_true(hits < 190000);
}

/* --- share keys ------------------------------------------------------------------- */

static void test_share_key(void **state)
{
	struct buf b;
	const char *key, *g, *fl;
	size_t gl, fll, first;
	/* "$share/grp/a/+" split, then the key built from pointers into it (no NULs there) */
	static const char sub[] = "$share/grp/a/+";
	static char long_filter[4096];

	(void)state;
	buf_init(&b);
	assert_true(topic_share_split(sub, strlen(sub), &g, &gl, &fl, &fll));
	assert_int_equal(gl, 3);
	assert_memory_equal(g, "grp", 3);
	assert_int_equal(fll, 3);
	assert_memory_equal(fl, "a/+", 3);
	assert_int_equal(topic_share_key_put(&b, g, gl, fl, fll), 0);
	assert_int_equal(b.len, 3 + 1 + 3 + 1);
	key = (const char *)b.data;
	assert_memory_equal(key, "grp\0a/+\0", 8);
	assert_string_equal(key, "grp");
	assert_int_equal(topic_share_key_size(key), 8);
	assert_string_equal(topic_share_key_filter(key), "a/+");
	assert_ptr_equal(topic_share_key_filter(key), key + 4);

	/* a second key appended after the first: each reads on its own */
	first = b.len;
	assert_int_equal(topic_share_key_put(&b, "g2xx", 2, "#yy", 1), 0);
	key = (const char *)b.data + first;
	assert_int_equal(b.len, first + 5);
	assert_string_equal(key, "g2");
	assert_string_equal(topic_share_key_filter(key), "#");
	assert_int_equal(topic_share_key_size(key), 5);
	/* the first one is intact */
	assert_string_equal(topic_share_key_filter((const char *)b.data), "a/+");

	/* an empty filter (the broker never makes one, but the sizes still add up) */
	buf_reset(&b);
	assert_int_equal(topic_share_key_put(&b, "g", 1, "", 0), 0);
	assert_int_equal(topic_share_key_size((const char *)b.data), 3);
	assert_string_equal(topic_share_key_filter((const char *)b.data), "");
	buf_free(&b);

	/* out of memory: the buffer stays as it was */
	memset(long_filter, 'x', sizeof(long_filter) - 1);
	buf_init(&b);
	mem_fail_after(0);
	assert_int_equal(topic_share_key_put(&b, "g", 1, "f", 1), -1);
	mem_fail_after(-1);
	assert_int_equal(b.len, 0);
	assert_int_equal(topic_share_key_put(&b, "g", 1, "f", 1), 0);
	first = b.len;
	assert_true(b.cap < sizeof(long_filter)); /* so that the key must grow the buffer */
	mem_fail_after(0);
	assert_int_equal(topic_share_key_put(&b, "g", 1, long_filter, strlen(long_filter)), -1);
	mem_fail_after(-1);
	assert_int_equal(b.len, first);
	assert_memory_equal(b.data, "g\0f\0", 4);
	buf_free(&b);
}

/* The split that feeds the key: where a group ends, and what is not a shared subscription. */
static void test_share_split(void **state)
{
	static const struct {
		const char *s;
		bool ok;
		const char *group, *filter;
	} cases[] = {
		{ "$share/g/a", true, "g", "a" },
		{ "$share/g/#", true, "g", "#" },
		{ "$share/group/a/b/+", true, "group", "a/b/+" },
		{ "$share/g//", true, "g", "/" },
		{ "$share/g/", false, NULL, NULL }, /* empty filter */
		{ "$share//a", false, NULL, NULL }, /* [MQTT-4.8.2-1] empty group */
		{ "$share/g+/a", false, NULL, NULL }, /* [MQTT-4.8.2-2] */
		{ "$share/g#/a", false, NULL, NULL },
		{ "$share/g", false, NULL, NULL },
		{ "$share/g/a/#/b", false, NULL, NULL },
		{ "$shared/g/a", false, NULL, NULL },
		{ "share/g/a", false, NULL, NULL },
		{ "a/b", false, NULL, NULL },
	};
	const char *g, *f;
	size_t gl, fl, i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool ok = topic_share_split(cases[i].s, strlen(cases[i].s), &g, &gl, &f, &fl);

		if (ok != cases[i].ok)
			fail_msg("split \"%s\": %d", cases[i].s, ok);
		if (!ok)
			continue;
		assert_int_equal(gl, strlen(cases[i].group));
		assert_memory_equal(g, cases[i].group, gl);
		assert_int_equal(fl, strlen(cases[i].filter));
		assert_memory_equal(f, cases[i].filter, fl);
		assert_true(topic_filter_valid(cases[i].s, strlen(cases[i].s)));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_cases),	 cmocka_unit_test(test_corners),
		cmocka_unit_test(test_exhaustive_small), cmocka_unit_test(test_random),
		cmocka_unit_test(test_share_key),	 cmocka_unit_test(test_share_split),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
