/*
 * test_topic_tree.c - the subscription trie against the specification's
 * examples and against topic_match_naive().
 *
 * The differential test subscribes thousands of random filters built from
 * a small alphabet of levels (so that collisions, '+', '#', '$' levels and
 * empty levels are frequent) and checks, for many random topics, that the
 * trie delivers exactly the filters the naive matcher accepts, each once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "topic_cases.h"
#include "naive_match.h"
#include "topic_tree.h"

/* Owners are addresses in this array; an owner's index identifies it. */
static char owners[4096];
#define OWNER(i) ((void *)&owners[i])
#define OWNER_IDX(p) ((size_t)((char *)(p)-owners))

struct hits {
	size_t n;
	size_t owner[4096]; /* per owner index: plain deliveries */
	size_t groups;
	struct topic_group *grp[16];
	uint8_t opts[4096];
	uint32_t subid[4096];
};

static void on_match(const struct topic_sub *sub, struct topic_group *grp, void *arg)
{
	struct hits *h = arg;
	size_t i;

	h->n++;
	if (sub) {
		assert_null(grp);
		i = OWNER_IDX(sub->owner);
		assert_true(i < 4096);
		h->owner[i]++;
		h->opts[i] = sub->options;
		h->subid[i] = sub->subid;
	} else {
		assert_non_null(grp);
		assert_true(grp->n > 0);
		if (h->groups < 16)
			h->grp[h->groups] = grp;
		h->groups++;
	}
}

static void match(struct topic_tree *t, const char *topic, struct hits *h)
{
	memset(h, 0, sizeof(*h));
	topic_tree_match(t, topic, strlen(topic), on_match, h);
}

static void sub(struct topic_tree *t, const char *f, size_t owner, uint8_t opts, bool want_existed)
{
	bool existed = !want_existed;

	assert_int_equal(topic_tree_subscribe(t, f, strlen(f), NULL, 0, OWNER(owner), opts, 0,
					      &existed),
			 0);
	assert_int_equal(existed, want_existed);
}

static void unsub(struct topic_tree *t, const char *f, size_t owner, int want)
{
	assert_int_equal(topic_tree_unsubscribe(t, f, strlen(f), NULL, 0, OWNER(owner)), want);
}


static void test_spec_examples(void **state)
{
	struct topic_tree *t;
	struct hits h;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
		if (topic_match_naive(spec[i].filter, spec[i].topic) != spec[i].match)
			fail_msg("naive: \"%s\" vs \"%s\"", spec[i].filter, spec[i].topic);
		t = topic_tree_new();
		assert_non_null(t);
		sub(t, spec[i].filter, 1, 0, false);
		match(t, spec[i].topic, &h);
		if (h.n != (spec[i].match ? 1u : 0u) || h.owner[1] != h.n)
			fail_msg("tree: \"%s\" vs \"%s\": %zu deliveries", spec[i].filter,
				 spec[i].topic, h.n);
		topic_tree_free(t);
	}
}

/* All the spec filters at once: each topic gets exactly its matching owners. */
static void test_spec_examples_together(void **state)
{
	struct topic_tree *t = topic_tree_new();
	struct hits h;
	size_t i, j, want;

	(void)state;
	assert_non_null(t);
	for (i = 0; i < sizeof(spec) / sizeof(spec[0]); i++)
		assert_int_equal(topic_tree_subscribe(t, spec[i].filter, strlen(spec[i].filter),
						      NULL, 0, OWNER(i), 0, 0, NULL),
				 0);
	for (j = 0; j < sizeof(spec) / sizeof(spec[0]); j++) {
		match(t, spec[j].topic, &h);
		want = 0;
		for (i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
			bool m = topic_match_naive(spec[i].filter, spec[j].topic);

			/* the same filter string may appear in several rows */
			assert_int_equal(h.owner[i], m ? 1 : 0);
			want += m;
		}
		assert_int_equal(h.n, want);
	}
	topic_tree_free(t);
}

/* ---- randomized differential test ----------------------------------------- */

static uint32_t rng = 0x9E3779B9u;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static const char *const alphabet[] = { "a", "b", "c", "", "$x", "ab" };
#define NALPHA (sizeof(alphabet) / sizeof(alphabet[0]))

static void random_topic_once(char *out, size_t cap)
{
	size_t levels = 1 + rnd() % 4, i;

	out[0] = '\0';
	for (i = 0; i < levels; i++) {
		const char *l = alphabet[rnd() % NALPHA];

		/* '$x' mostly first, where the '$' rule applies */
		if (i > 0 && l[0] == '$' && rnd() % 2)
			l = "a";
		if (i)
			strncat(out, "/", cap - strlen(out) - 1);
		strncat(out, l, cap - strlen(out) - 1);
	}
}

/* A topic name is never empty. */
static void random_topic(char *out, size_t cap)
{
	do
		random_topic_once(out, cap);
	while (!out[0]);
}

static void random_filter(char *out, size_t cap)
{
	size_t levels = 1 + rnd() % 4, i;
	uint32_t r;

	out[0] = '\0';
	for (i = 0; i < levels; i++) {
		const char *l;

		r = rnd() % 10;
		if (r < 3)
			l = "+";
		else if (r == 3 && i == levels - 1)
			l = "#";
		else
			l = alphabet[rnd() % NALPHA];
		if (i)
			strncat(out, "/", cap - strlen(out) - 1);
		strncat(out, l, cap - strlen(out) - 1);
	}
}

#define NFILTERS 3000
#define NTOPICS 3000

static char filt[NFILTERS][32];

static void test_random_differential(void **state)
{
	struct topic_tree *t = topic_tree_new();
	static struct hits h;
	char topic[32];
	size_t i, j, want, total = 0, unsubbed = 0;
	int rc;

	(void)state;
	assert_non_null(t);
	/* owner i subscribes filt[i]; duplicates across owners are common */
	for (i = 0; i < NFILTERS; i++) {
		random_filter(filt[i], sizeof(filt[i]));
		rc = topic_tree_subscribe(t, filt[i], strlen(filt[i]), NULL, 0, OWNER(i),
					  (uint8_t)(i & 3), (uint32_t)i, NULL);
		assert_int_equal(rc, 0);
	}
	assert_int_equal(topic_tree_count(t), NFILTERS);
	for (j = 0; j < NTOPICS; j++) {
		random_topic(topic, sizeof(topic));
		match(t, topic, &h);
		want = 0;
		for (i = 0; i < NFILTERS; i++) {
			bool m = topic_match_naive(filt[i], topic);

			if (h.owner[i] != (m ? 1u : 0u))
				fail_msg("filter \"%s\" topic \"%s\": naive %d, tree %zu", filt[i],
					 topic, m, h.owner[i]);
			if (m && (h.opts[i] != (i & 3) || h.subid[i] != i))
				fail_msg("wrong entry delivered for \"%s\"", filt[i]);
			want += m;
		}
		assert_int_equal(h.n, want);
		total += want;
	}
	assert_true(total > NTOPICS); /* the alphabet is small enough to match often */

	/* unsubscribe every other owner; the rest must still match exactly */
	for (i = 0; i < NFILTERS; i += 2, unsubbed++)
		unsub(t, filt[i], i, 0);
	assert_int_equal(topic_tree_count(t), NFILTERS - unsubbed);
	for (j = 0; j < NTOPICS / 3; j++) {
		random_topic(topic, sizeof(topic));
		match(t, topic, &h);
		for (i = 0; i < NFILTERS; i++) {
			bool m = (i % 2) && topic_match_naive(filt[i], topic);

			if (h.owner[i] != (m ? 1u : 0u))
				fail_msg("after unsubscribe: \"%s\" vs \"%s\"", filt[i], topic);
		}
	}
	/* unsubscribe the rest: the tree is empty again */
	for (i = 1; i < NFILTERS; i += 2)
		unsub(t, filt[i], i, 0);
	assert_int_equal(topic_tree_count(t), 0);
	match(t, "a", &h);
	assert_int_equal(h.n, 0);
	topic_tree_free(t);
}

/* Many siblings under one node: exact lookup must find each of them. */
static void test_many_children(void **state)
{
	struct topic_tree *t = topic_tree_new();
	struct hits h;
	char f[32];
	size_t i;

	(void)state;
	for (i = 0; i < 2000; i++) {
		snprintf(f, sizeof(f), "dev/%zu/#", (i * 7919) % 2000);
		sub(t, f, i, 0, false);
	}
	for (i = 0; i < 2000; i += 37) {
		snprintf(f, sizeof(f), "dev/%zu/temp", (i * 7919) % 2000);
		match(t, f, &h);
		assert_int_equal(h.n, 1);
		assert_int_equal(h.owner[i], 1);
	}
	match(t, "dev/2000/temp", &h);
	assert_int_equal(h.n, 0);
	for (i = 0; i < 2000; i++) {
		snprintf(f, sizeof(f), "dev/%zu/#", (i * 7919) % 2000);
		unsub(t, f, i, 0);
	}
	assert_int_equal(topic_tree_count(t), 0);
	topic_tree_free(t);
}

/*
 * Around the depth where matching stops using its table of level starts
 * and scans instead (32 levels): topics and filters of 28 to 36 levels,
 * mostly alike so that they match, checked against the naive matcher.
 */
static void deep_string(char *out, size_t levels, bool filter)
{
	size_t i;

	out[0] = '\0';
	for (i = 0; i < levels; i++) {
		uint32_t r = rnd() % 32;
		const char *l = r < 30 ? "a" : r < 31 ? "b" : "";

		if (filter && r >= 24)
			l = r == 31 && i == levels - 1 ? "#" : "+";
		strcat(out, i ? "/" : "");
		strcat(out, l);
	}
}

static void test_level_table_boundary(void **state)
{
	enum { NF = 400, NT = 400 };
	static char f[NF][80];
	struct topic_tree *t = topic_tree_new();
	static struct hits h;
	char topic[80];
	size_t i, j, total = 0;

	(void)state;
	for (i = 0; i < NF; i++) {
		deep_string(f[i], 28 + i % 9, true);
		sub(t, f[i], i, 0, false);
	}
	for (j = 0; j < NT; j++) {
		deep_string(topic, 28 + j % 9, false);
		match(t, topic, &h);
		for (i = 0; i < NF; i++) {
			bool m = topic_match_naive(f[i], topic);

			if (h.owner[i] != (m ? 1u : 0u))
				fail_msg("filter \"%s\" topic \"%s\": naive %d, tree %zu", f[i], topic,
					 m, h.owner[i]);
			total += m;
		}
	}
	assert_true(total > NT / 4);
	topic_tree_free(t);
}

/* A topic of thousands of levels: matching and freeing do not recurse. */
static void test_deep(void **state)
{
	enum { LEVELS = 30000 };
	static char deep[2 * LEVELS];
	struct topic_tree *t = topic_tree_new();
	struct hits h;
	size_t i;

	(void)state;
	for (i = 0; i < LEVELS; i++) {
		deep[2 * i] = '+';
		deep[2 * i + 1] = '/';
	}
	deep[2 * LEVELS - 1] = '\0';
	sub(t, deep, 1, 0, false);
	deep[2 * LEVELS - 2] = '#';
	sub(t, deep, 2, 0, false);
	for (i = 0; i < LEVELS; i++)
		deep[2 * i] = 'x';
	match(t, deep, &h);
	assert_int_equal(h.n, 2);
	assert_int_equal(h.owner[1], 1);
	assert_int_equal(h.owner[2], 1);
	topic_tree_free(t);
}

static void test_replace(void **state)
{
	struct topic_tree *t = topic_tree_new();
	struct hits h;
	bool existed = true;

	(void)state;
	assert_int_equal(topic_tree_subscribe(t, "a/+", 3, NULL, 0, OWNER(1), 1, 5, &existed), 0);
	assert_false(existed);
	/* [MQTT-3.8.4-3]: same owner, same filter: replaced, not duplicated */
	assert_int_equal(topic_tree_subscribe(t, "a/+", 3, NULL, 0, OWNER(1), 2, 9, &existed), 0);
	assert_true(existed);
	assert_int_equal(topic_tree_count(t), 1);
	match(t, "a/b", &h);
	assert_int_equal(h.n, 1);
	assert_int_equal(h.opts[1], 2);
	assert_int_equal(h.subid[1], 9);
	/* another owner on the same filter, and the same owner on another filter */
	sub(t, "a/+", 2, 0, false);
	sub(t, "a/b", 1, 0, false);
	assert_int_equal(topic_tree_count(t), 3);
	match(t, "a/b", &h);
	assert_int_equal(h.n, 3);
	assert_int_equal(h.owner[1], 2); /* two filters: two deliveries */
	assert_int_equal(h.owner[2], 1);
	/* a plain entry and a shared one on the same filter are distinct */
	assert_int_equal(topic_tree_subscribe(t, "a/b", 3, "g", 1, OWNER(1), 0, 0, &existed), 0);
	assert_false(existed);
	assert_int_equal(topic_tree_count(t), 4);
	topic_tree_free(t);
}

static void test_unsubscribe_missing(void **state)
{
	struct topic_tree *t = topic_tree_new();
	struct hits h;

	(void)state;
	unsub(t, "a", 1, -1);
	sub(t, "a/b", 1, 0, false);
	unsub(t, "a", 1, -1); /* interior node with no entry */
	unsub(t, "a/b", 2, -1); /* another owner */
	unsub(t, "a/c", 1, -1);
	unsub(t, "a/b/c", 1, -1);
	unsub(t, "a/+", 1, -1);
	assert_int_equal(topic_tree_unsubscribe(t, "a/b", 3, "g", 1, OWNER(1)), -1);
	assert_int_equal(topic_tree_count(t), 1);
	unsub(t, "a/b", 1, 0);
	unsub(t, "a/b", 1, -1);
	assert_int_equal(topic_tree_count(t), 0);
	match(t, "a/b", &h);
	assert_int_equal(h.n, 0);
	topic_tree_free(t);
}

static struct topic_group *group_named(const struct hits *h, const char *name)
{
	size_t i;

	for (i = 0; i < h->groups && i < 16; i++) {
		if (!strcmp(h->grp[i]->name, name))
			return h->grp[i];
	}
	fail_msg("group %s not delivered", name);
	return NULL;
}

static void test_shared_groups(void **state)
{
	struct topic_tree *t = topic_tree_new();
	struct hits h;
	struct topic_group *g;
	bool existed;
	size_t i;

	(void)state;
	for (i = 1; i <= 3; i++) {
		assert_int_equal(topic_tree_subscribe(t, "s/+", 3, "g1", 2, OWNER(i), (uint8_t)i,
						      0, &existed),
				 0);
		assert_false(existed);
	}
	assert_int_equal(topic_tree_subscribe(t, "s/#", 3, "g2", 2, OWNER(4), 0, 0, &existed), 0);
	assert_int_equal(topic_tree_subscribe(t, "s/+", 3, "g2", 2, OWNER(5), 0, 0, &existed), 0);
	sub(t, "s/+", 6, 0, false);
	assert_int_equal(topic_tree_count(t), 6);

	/* one callback per matching group, plus the plain subscription */
	match(t, "s/x", &h);
	assert_int_equal(h.groups, 3); /* g1 and g2 on s/+, g2 on s/# */
	assert_int_equal(h.n, 4);
	assert_int_equal(h.owner[6], 1);
	g = group_named(&h, "g1");
	assert_string_equal(g->filter, "s/+");
	assert_int_equal(g->n, 3);
	assert_ptr_equal(g->members[0].owner, OWNER(1));
	assert_ptr_equal(g->members[1].owner, OWNER(2));
	assert_ptr_equal(g->members[2].owner, OWNER(3));
	assert_int_equal(g->members[1].options, 2);
	for (i = 0; i < 3; i++) {
		if (h.grp[i] != g) {
			assert_string_equal(h.grp[i]->name, "g2");
			assert_int_equal(h.grp[i]->n, 1);
		}
	}
	match(t, "s", &h); /* only g2 on s/# */
	assert_int_equal(h.n, 1);
	assert_string_equal(h.grp[0]->filter, "s/#");

	/* resubscribing a member replaces its options */
	assert_int_equal(topic_tree_subscribe(t, "s/+", 3, "g1", 2, OWNER(2), 9, 4, &existed), 0);
	assert_true(existed);
	assert_int_equal(topic_tree_count(t), 6);

	/* removal keeps order and the round-robin cursor on the next member */
	match(t, "s/x", &h);
	g = group_named(&h, "g1");
	assert_int_equal(g->members[1].options, 9);
	assert_int_equal(g->members[1].subid, 4);
	g->next = 2; /* next is OWNER(3) */
	assert_int_equal(topic_tree_unsubscribe(t, "s/+", 3, "g1", 2, OWNER(1)), 0);
	assert_int_equal(g->n, 2);
	assert_ptr_equal(g->members[0].owner, OWNER(2));
	assert_ptr_equal(g->members[1].owner, OWNER(3));
	assert_int_equal(g->next, 1);
	assert_int_equal(topic_tree_unsubscribe(t, "s/+", 3, "g1", 2, OWNER(3)), 0);
	assert_int_equal(g->n, 1);
	assert_int_equal(g->next, 0);
	assert_int_equal(topic_tree_unsubscribe(t, "s/+", 3, "g1", 2, OWNER(3)), -1);
	assert_int_equal(topic_tree_unsubscribe(t, "s/+", 3, "gX", 2, OWNER(2)), -1);
	/* the last member leaving removes the group */
	assert_int_equal(topic_tree_unsubscribe(t, "s/+", 3, "g1", 2, OWNER(2)), 0);
	match(t, "s/x", &h);
	assert_int_equal(h.groups, 2);
	assert_string_equal(h.grp[0]->name, "g2");
	assert_string_equal(h.grp[1]->name, "g2");
	assert_int_equal(topic_tree_count(t), 3);

	/* group names are compared whole: "g" is not "g2", though OWNER(5) is in g2 */
	assert_int_equal(topic_tree_subscribe(t, "s/+", 3, "g", 1, OWNER(5), 0, 0, &existed), 0);
	assert_false(existed);
	/* the group name is (pointer, length): "g2x" cut to 2 is g2 */
	assert_int_equal(topic_tree_subscribe(t, "s/+", 3, "g2x", 2, OWNER(5), 0, 0, &existed), 0);
	assert_true(existed);
	assert_int_equal(topic_tree_count(t), 4);
	match(t, "s/x", &h);
	assert_int_equal(h.groups, 3);
	topic_tree_free(t);
}

/* '$' topics are not matched by a filter starting with a wildcard, shared or not. */
static void test_dollar_rule(void **state)
{
	struct topic_tree *t = topic_tree_new();
	struct hits h;

	(void)state;
	sub(t, "#", 1, 0, false);
	sub(t, "+/x", 2, 0, false);
	sub(t, "$SYS/#", 3, 0, false);
	sub(t, "$SYS/+", 4, 0, false);
	assert_int_equal(topic_tree_subscribe(t, "#", 1, "g", 1, OWNER(5), 0, 0, NULL), 0);
	match(t, "$SYS/x", &h); /* [MQTT-4.7.2-1] */
	assert_int_equal(h.n, 2);
	assert_int_equal(h.owner[3], 1);
	assert_int_equal(h.owner[4], 1);
	match(t, "a/x", &h);
	assert_int_equal(h.n, 3);
	assert_int_equal(h.groups, 1);
	match(t, "a/$SYS", &h); /* only the first level counts */
	assert_int_equal(h.n, 2);
	topic_tree_free(t);
}

static void test_oom(void **state)
{
	struct topic_tree *t;
	struct hits h;
	long n;
	int rc;
	bool existed;

	(void)state;
	for (n = 0; n < 3; n++) {
		mem_fail_after(n);
		t = topic_tree_new();
		mem_fail_after(-1);
		assert_true((t != NULL) == (n >= 2)); /* the tree needs two allocations */
		topic_tree_free(t);
	}
	t = topic_tree_new();
	assert_non_null(t);
	sub(t, "a/b", 1, 0, false);
	/* each allocation of a deep new path, then of a new group, failing in turn */
	for (n = 0;; n++) {
		mem_fail_after(n);
		rc = topic_tree_subscribe(t, "a/b/c/d/e", 9, NULL, 0, OWNER(2), 0, 0, &existed);
		mem_fail_after(-1);
		if (rc == 0)
			break;
		assert_int_equal(rc, -1);
		assert_int_equal(topic_tree_count(t), 1);
		match(t, "a/b/c/d/e", &h);
		assert_int_equal(h.n, 0);
		/* the failed path was pruned: unsubscribing it finds nothing */
		unsub(t, "a/b/c/d/e", 2, -1);
	}
	assert_true(n > 3);
	assert_int_equal(topic_tree_count(t), 2);
	for (n = 0;; n++) {
		mem_fail_after(n);
		rc = topic_tree_subscribe(t, "x/+", 3, "grp", 3, OWNER(3), 0, 0, &existed);
		mem_fail_after(-1);
		if (rc == 0)
			break;
		assert_int_equal(topic_tree_count(t), 2);
		match(t, "x/y", &h);
		assert_int_equal(h.n, 0);
	}
	assert_true(n > 4);
	assert_int_equal(topic_tree_count(t), 3);
	/* growing an existing group's member array */
	for (n = 4; n < 64; n++) {
		mem_fail_after(0);
		rc = topic_tree_subscribe(t, "x/+", 3, "grp", 3, OWNER((size_t)n), 0, 0, &existed);
		mem_fail_after(-1);
		if (rc) /* only when the member array is full */
			break;
	}
	assert_int_equal(rc, -1);
	assert_int_equal(n, 7); /* members 3..6 fill the first array of 4 */
	assert_int_equal(topic_tree_count(t), 6);
	match(t, "x/y", &h);
	assert_int_equal(h.groups, 1);
	assert_int_equal(h.grp[0]->n, 4);
	assert_int_equal(topic_tree_subscribe(t, "x/+", 3, "grp", 3, OWNER(7), 0, 0, &existed), 0);
	match(t, "x/y", &h);
	assert_int_equal(h.grp[0]->n, 5);
	/* matching allocates nothing */
	mem_fail_after(0);
	match(t, "a/b/c/d/e", &h);
	mem_fail_after(-1);
	assert_int_equal(h.n, 1);
	topic_tree_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_examples),
		cmocka_unit_test(test_spec_examples_together),
		cmocka_unit_test(test_random_differential),
		cmocka_unit_test(test_many_children),
		cmocka_unit_test(test_level_table_boundary),
		cmocka_unit_test(test_deep),
		cmocka_unit_test(test_replace),
		cmocka_unit_test(test_unsubscribe_missing),
		cmocka_unit_test(test_shared_groups),
		cmocka_unit_test(test_dollar_rule),
		cmocka_unit_test(test_oom),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
