/*
 * test_retain_tree.c - retained messages by topic, matched by filter.
 *
 * Values are slots of a static array and the free function counts how
 * often each slot is released, so every replace, clear and tree free can be
 * checked to release exactly the right values exactly once. The
 * differential test stores random topics and checks every random filter
 * against topic_match_naive() over the stored set.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "naive_match.h"
#include "retain_tree.h"
#include "topic_cases.h"
#include "topic_tree.h"

#define NVAL 4096

static char vals[NVAL];
static unsigned freed[NVAL];
#define VAL(i) ((void *)&vals[i])
#define VAL_IDX(p) ((size_t)((char *)(p)-vals))

static void count_free(void *v)
{
	size_t i = VAL_IDX(v);

	assert_true(i < NVAL);
	freed[i]++;
}

static int reset(void **state)
{
	(void)state;
	memset(freed, 0, sizeof(freed));
	return 0;
}

static unsigned total_freed(void)
{
	unsigned n = 0;
	size_t i;

	for (i = 0; i < NVAL; i++)
		n += freed[i];
	return n;
}

struct seen {
	size_t n;
	unsigned hits[NVAL];
	char last[64];
};

static void on_match(const char *topic, void *value, void *arg)
{
	struct seen *s = arg;
	size_t i = VAL_IDX(value);

	assert_true(i < NVAL);
	s->hits[i]++;
	s->n++;
	snprintf(s->last, sizeof(s->last), "%s", topic);
}

static void match(struct retain_tree *t, const char *f, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	retain_tree_match(t, f, strlen(f), on_match, s);
}

static void set(struct retain_tree *t, const char *topic, size_t v)
{
	assert_int_equal(retain_tree_set(t, topic, strlen(topic), VAL(v)), 0);
}

static void test_set_get_clear(void **state)
{
	struct retain_tree *t = retain_tree_new(count_free);

	(void)state;
	assert_non_null(t);
	assert_null(retain_tree_get(t, "a", 1));
	set(t, "a/b", 1);
	set(t, "a", 2);
	set(t, "a/b/c", 3);
	assert_int_equal(retain_tree_count(t), 3);
	assert_ptr_equal(retain_tree_get(t, "a/b", 3), VAL(1));
	assert_ptr_equal(retain_tree_get(t, "a", 1), VAL(2));
	assert_null(retain_tree_get(t, "a/b/c/d", 7));
	assert_null(retain_tree_get(t, "a/", 2));
	assert_ptr_equal(retain_tree_get(t, "a/bxyz", 3), VAL(1)); /* (pointer, length) */

	/* replacing frees the old value, once, and keeps the count */
	set(t, "a/b", 4);
	assert_int_equal(freed[1], 1);
	assert_int_equal(retain_tree_count(t), 3);
	assert_ptr_equal(retain_tree_get(t, "a/b", 3), VAL(4));

	/* clearing an interior topic keeps its descendants */
	assert_int_equal(retain_tree_clear(t, "a/b", 3), 0);
	assert_int_equal(freed[4], 1);
	assert_null(retain_tree_get(t, "a/b", 3));
	assert_ptr_equal(retain_tree_get(t, "a/b/c", 5), VAL(3));
	assert_int_equal(retain_tree_clear(t, "a/b", 3), -1);
	assert_int_equal(retain_tree_clear(t, "x", 1), -1);
	assert_int_equal(retain_tree_clear(t, "a/b/c/d", 7), -1);
	assert_int_equal(retain_tree_count(t), 2);
	assert_int_equal(total_freed(), 2);

	/* freeing the tree frees what is left */
	retain_tree_free(t);
	assert_int_equal(freed[2], 1);
	assert_int_equal(freed[3], 1);
	assert_int_equal(total_freed(), 4);
}

static void test_empty_levels_and_dollar(void **state)
{
	struct retain_tree *t = retain_tree_new(count_free);
	struct seen s;

	(void)state;
	set(t, "/", 1);
	set(t, "/a", 2);
	set(t, "a/", 3);
	set(t, "$SYS/x", 4);
	set(t, "$SYS", 5);
	set(t, "a/$b", 6);
	assert_int_equal(retain_tree_count(t), 6);
	assert_ptr_equal(retain_tree_get(t, "/", 1), VAL(1));

	match(t, "#", &s); /* [MQTT-4.7.2-1]: no '$' topics */
	assert_int_equal(s.n, 4);
	assert_int_equal(s.hits[4] + s.hits[5], 0);
	match(t, "+", &s);
	assert_int_equal(s.n, 0);
	match(t, "+/+", &s);
	assert_int_equal(s.n, 4);
	match(t, "$SYS/#", &s);
	assert_int_equal(s.n, 2);
	match(t, "$SYS/+", &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.last, "$SYS/x");
	match(t, "/+", &s);
	assert_int_equal(s.n, 2);
	match(t, "a/+", &s);
	assert_int_equal(s.n, 2);
	match(t, "/", &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.last, "/");
	match(t, "a/", &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.last, "a/");
	match(t, "", &s);
	assert_int_equal(s.n, 0);
	retain_tree_free(t);
	assert_int_equal(total_freed(), 6);
}


static void test_spec_examples(void **state)
{
	struct retain_tree *t;
	struct seen s;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
		t = retain_tree_new(count_free);
		set(t, spec[i].topic, i);
		match(t, spec[i].filter, &s);
		if (s.n != (spec[i].match ? 1u : 0u))
			fail_msg("\"%s\" vs \"%s\": %zu", spec[i].filter, spec[i].topic, s.n);
		if (s.n)
			assert_string_equal(s.last, spec[i].topic);
		retain_tree_free(t);
		assert_int_equal(freed[i], 1);
	}
}

/* ---- randomized differential test ----------------------------------------- */

static uint32_t rng = 0xC0FFEE11u;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static const char *const alphabet[] = { "a", "b", "c", "", "$x", "ab" };
#define NALPHA (sizeof(alphabet) / sizeof(alphabet[0]))

static void random_levels(char *out, size_t cap, bool wild)
{
	size_t levels = 1 + rnd() % 4, i;
	const char *l;
	uint32_t r;

	out[0] = '\0';
	for (i = 0; i < levels; i++) {
		r = rnd() % 10;
		if (wild && r < 3)
			l = "+";
		else if (wild && r == 3 && i == levels - 1)
			l = "#";
		else
			l = alphabet[rnd() % NALPHA];
		if (i)
			strncat(out, "/", cap - strlen(out) - 1);
		strncat(out, l, cap - strlen(out) - 1);
	}
}

#define NTOPICS 1500
#define NFILTERS 3000

static char topics[NTOPICS][32];
static bool stored[NTOPICS]; /* topics[i] holds VAL(i) (duplicates: the last one wins) */

static void check_filter(struct retain_tree *t, const char *f, struct seen *s)
{
	size_t i, want = 0;
	bool m;

	match(t, f, s);
	for (i = 0; i < NTOPICS; i++) {
		m = stored[i] && topic_match_naive(f, topics[i]);
		if (s->hits[i] != (m ? 1u : 0u))
			fail_msg("filter \"%s\" topic \"%s\": naive %d, tree %u", f, topics[i], m,
				 s->hits[i]);
		want += m;
	}
	assert_int_equal(s->n, want);
}

static void test_random_differential(void **state)
{
	struct retain_tree *t = retain_tree_new(count_free);
	static struct seen s;
	char f[32];
	size_t i, j, live = 0, matched = 0;

	(void)state;
	assert_non_null(t);
	for (i = 0; i < NTOPICS; i++) {
		do
			random_levels(topics[i], sizeof(topics[i]), false);
		while (!topics[i][0]);
		/* a topic seen before is replaced: the old holder is freed and no longer stored */
		for (j = 0; j < i; j++) {
			if (stored[j] && !strcmp(topics[j], topics[i])) {
				stored[j] = false;
				live--;
			}
		}
		set(t, topics[i], i);
		stored[i] = true;
		live++;
	}
	assert_int_equal(retain_tree_count(t), live);
	assert_int_equal(total_freed(), NTOPICS - live);
	for (i = 0; i < NFILTERS; i++) {
		random_levels(f, sizeof(f), true);
		check_filter(t, f, &s);
		matched += s.n;
	}
	assert_true(matched > NFILTERS);

	/* clear every other stored topic and compare again */
	for (i = 0; i < NTOPICS; i += 2) {
		if (!stored[i])
			continue;
		assert_int_equal(retain_tree_clear(t, topics[i], strlen(topics[i])), 0);
		assert_int_equal(freed[i], 1);
		stored[i] = false;
		live--;
	}
	assert_int_equal(retain_tree_count(t), live);
	for (i = 0; i < NFILTERS / 3; i++) {
		random_levels(f, sizeof(f), true);
		check_filter(t, f, &s);
	}
	retain_tree_free(t);
	for (i = 0; i < NTOPICS; i++)
		assert_int_equal(freed[i], 1);
}

static void test_many_children(void **state)
{
	struct retain_tree *t = retain_tree_new(count_free);
	struct seen s;
	char topic[32];
	size_t i;

	(void)state;
	for (i = 0; i < 3000; i++) {
		snprintf(topic, sizeof(topic), "dev/%zu/temp", (i * 7919) % 3000);
		set(t, topic, i);
	}
	match(t, "dev/+/temp", &s);
	assert_int_equal(s.n, 3000);
	match(t, "dev/1234/+", &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.last, "dev/1234/temp");
	match(t, "dev/#", &s);
	assert_int_equal(s.n, 3000);
	for (i = 0; i < 3000; i++) {
		snprintf(topic, sizeof(topic), "dev/%zu/temp", (i * 7919) % 3000);
		assert_int_equal(retain_tree_clear(t, topic, strlen(topic)), 0);
	}
	assert_int_equal(retain_tree_count(t), 0);
	match(t, "#", &s);
	assert_int_equal(s.n, 0);
	retain_tree_free(t);
	assert_int_equal(total_freed(), 3000);
}

/* A topic of thousands of levels: matching and freeing do not recurse. */
static void test_deep(void **state)
{
	enum { LEVELS = 30000 };
	static char deep[2 * LEVELS];
	struct retain_tree *t = retain_tree_new(count_free);
	struct seen s;
	size_t i;

	(void)state;
	for (i = 0; i < LEVELS; i++) {
		deep[2 * i] = 'x';
		deep[2 * i + 1] = '/';
	}
	deep[2 * LEVELS - 1] = '\0';
	set(t, deep, 1);
	set(t, "x", 2);
	match(t, "#", &s);
	assert_int_equal(s.n, 2);
	match(t, "x/#", &s);
	assert_int_equal(s.n, 2);
	for (i = 0; i < LEVELS; i++)
		deep[2 * i] = '+';
	match(t, deep, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.hits[1], 1);
	retain_tree_free(t);
	assert_int_equal(total_freed(), 2);
}

static void test_oom(void **state)
{
	struct retain_tree *t;
	struct seen s;
	long n;
	int rc;

	(void)state;
	for (n = 0; n < 3; n++) {
		mem_fail_after(n);
		t = retain_tree_new(count_free);
		mem_fail_after(-1);
		assert_true((t != NULL) == (n >= 2));
		retain_tree_free(t);
	}
	t = retain_tree_new(count_free);
	set(t, "a/b", 1);
	for (n = 0;; n++) {
		mem_fail_after(n);
		rc = retain_tree_set(t, "a/b/c/d", 7, VAL(2));
		mem_fail_after(-1);
		if (rc == 0)
			break;
		assert_int_equal(rc, -1);
		assert_int_equal(freed[2], 0); /* not taken */
		assert_int_equal(retain_tree_count(t), 1);
		match(t, "#", &s);
		assert_int_equal(s.n, 1);
		assert_int_equal(retain_tree_clear(t, "a/b/c", 5), -1);
	}
	assert_true(n >= 4);
	assert_int_equal(retain_tree_count(t), 2);
	/* replacing and matching need no memory */
	mem_fail_after(0);
	rc = retain_tree_set(t, "a/b", 3, VAL(3));
	match(t, "a/#", &s);
	mem_fail_after(-1);
	assert_int_equal(rc, 0);
	assert_int_equal(freed[1], 1);
	assert_int_equal(s.n, 2);
	retain_tree_free(t);
	assert_int_equal(total_freed(), 3);
}

/* Without a free function the tree never touches the values. */
static void test_no_free_fn(void **state)
{
	struct retain_tree *t = retain_tree_new(NULL);

	(void)state;
	set(t, "a", 1);
	set(t, "a", 2);
	assert_int_equal(retain_tree_count(t), 1);
	assert_int_equal(retain_tree_clear(t, "a", 1), 0);
	set(t, "b", 3);
	retain_tree_free(t);
	assert_int_equal(total_freed(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_set_get_clear, reset),
		cmocka_unit_test_setup(test_empty_levels_and_dollar, reset),
		cmocka_unit_test_setup(test_spec_examples, reset),
		cmocka_unit_test_setup(test_random_differential, reset),
		cmocka_unit_test_setup(test_many_children, reset),
		cmocka_unit_test_setup(test_deep, reset),
		cmocka_unit_test_setup(test_oom, reset),
		cmocka_unit_test_setup(test_no_free_fn, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
