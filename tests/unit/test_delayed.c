/*
 * test_delayed.c - the pure half of the delayed topics plugin
 * (plugins/delayed/sched.c): every form of delay request, good and bad;
 * the option durations, including those too large for 64 bits of ms; the
 * far heap against a sorted reference; the two-level queue's release order
 * (due, then publish order) under random adds, staging caps and fetch
 * delays, and a record given back after a failed release; the chunked index
 * rows; the sender table. No broker is involved.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"

#define NOW 1700000000000ull
#define MAX_MS 60000ull

/* --- parsing ------------------------------------------------------------------ */

static int parse(const char *topic, struct sched_req *rq)
{
	return sched_parse(topic, NULL, NOW, MAX_MS, rq);
}

static int parse_props(const char *topic, const char *delay, const char *at,
		       struct sched_req *rq)
{
	struct sched_props p;

	memset(&p, 0, sizeof(p));
	if (delay) {
		p.delay = delay;
		p.delay_len = strlen(delay);
		p.n_delay = 1;
	}
	if (at) {
		p.at = at;
		p.at_len = strlen(at);
		p.n_at = 1;
	}
	return sched_parse(topic, &p, NOW, MAX_MS, rq);
}

static int parse_max(const char *topic, uint64_t max, struct sched_req *rq)
{
	return sched_parse(topic, NULL, NOW, max, rq);
}

static void test_parse_topic_forms(void **state)
{
	struct sched_req rq;

	(void)state;
	assert_int_equal(parse("$delayed/5/a/b", &rq), 0);
	assert_int_equal(rq.kind, SCHED_DELAY);
	assert_true(rq.due_ms == NOW + 5000);
	assert_string_equal(rq.target, "a/b");
	assert_int_equal(parse("$delayed/0.25/a/b", &rq), 0);
	assert_true(rq.due_ms == NOW + 250);
	assert_string_equal(rq.target, "a/b");
	assert_int_equal(parse("$delayed/0/x", &rq), 0);
	assert_true(rq.due_ms == NOW);
	assert_int_equal(parse("$delayed/60/x", &rq), 0); /* exactly the maximum */
	assert_true(rq.due_ms == NOW + 60000);
	assert_int_equal(parse("$delayed/1.5/x//y/", &rq), 0); /* empty levels are topics too */
	assert_string_equal(rq.target, "x//y/");
	assert_int_equal(parse("$delayed/0.0001/x", &rq), 0); /* rounded up: never early */
	assert_true(rq.due_ms == NOW + 1);
	assert_int_equal(parse("$delayed/2.0000/x", &rq), 0);
	assert_true(rq.due_ms == NOW + 2000);
}

static void test_parse_not_delayed(void **state)
{
	struct sched_req rq;

	(void)state;
	assert_int_equal(parse("a/b", &rq), 0);
	assert_int_equal(rq.kind, SCHED_NONE);
	assert_int_equal(parse("$delayedX/5/a", &rq), 0);
	assert_int_equal(rq.kind, SCHED_NONE);
	assert_int_equal(parse("x/$delayed/5/a", &rq), 0);
	assert_int_equal(rq.kind, SCHED_NONE);
	assert_int_equal(parse("$SYS/broker/x", &rq), 0);
	assert_int_equal(rq.kind, SCHED_NONE);
}

static void expect_bad(int rc, const struct sched_req *rq, uint8_t reason)
{
	assert_int_equal(rc, -1);
	assert_int_equal(rq->kind, SCHED_NONE);
	assert_int_equal(rq->reason, reason);
	assert_non_null(rq->why);
	assert_true(strlen(rq->why) > 5);
}

static void test_parse_topic_bad(void **state)
{
	static const char *const bad_delay[] = {
		"$delayed/-1/a",  "$delayed/x/a",   "$delayed//a",	 "$delayed/nan/a",
		"$delayed/inf/a", "$delayed/1e3/a", "$delayed/5./a", "$delayed/.5/a",
		"$delayed/+5/a",  "$delayed/1.2.3/a", "$delayed/ 5/a", "$delayed/0x10/a",
		"$delayed/1,5/a",
	};
	static const char *const bad_topic[] = {
		"$delayed",	   "$delayed/",	     "$delayed/5",
		"$delayed/5/",	   "$delayed/5/a/+", "$delayed/5/#",
		"$delayed/5/$SYS/x", "$delayed/5/$delayed/1/x",
	};
	struct sched_req rq;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_delay) / sizeof(bad_delay[0]); i++)
		expect_bad(parse(bad_delay[i], &rq), &rq, SCHED_RC_IMPL_ERROR);
	for (i = 0; i < sizeof(bad_topic) / sizeof(bad_topic[0]); i++)
		expect_bad(parse(bad_topic[i], &rq), &rq, SCHED_RC_TOPIC_INVALID);
	/* Over the maximum, including numbers too big for any integer. */
	expect_bad(parse("$delayed/60.001/a", &rq), &rq, SCHED_RC_IMPL_ERROR);
	expect_bad(parse("$delayed/99999999999999999999999/a", &rq), &rq, SCHED_RC_IMPL_ERROR);
	expect_bad(parse("$delayed/18446744073709551616/a", &rq), &rq, SCHED_RC_IMPL_ERROR);
}

static void test_parse_props(void **state)
{
	struct sched_req rq;
	char at[32];

	(void)state;
	assert_int_equal(parse_props("a/b", "1500", NULL, &rq), 0);
	assert_int_equal(rq.kind, SCHED_DELAY);
	assert_true(rq.due_ms == NOW + 1500);
	assert_string_equal(rq.target, "a/b");
	assert_int_equal(parse_props("a/b", "0", NULL, &rq), 0);
	assert_true(rq.due_ms == NOW);
	snprintf(at, sizeof(at), "%llu", (unsigned long long)(NOW + 30000));
	assert_int_equal(parse_props("a/b", NULL, at, &rq), 0);
	assert_int_equal(rq.kind, SCHED_DELAY);
	assert_true(rq.due_ms == NOW + 30000);
	/* deliver-at in the past: at once. */
	assert_int_equal(parse_props("a/b", NULL, "1000", &rq), 0);
	assert_true(rq.due_ms == NOW);
	snprintf(at, sizeof(at), "%llu", (unsigned long long)(NOW + MAX_MS + 1));
	expect_bad(parse_props("a/b", NULL, at, &rq), &rq, SCHED_RC_IMPL_ERROR);
	expect_bad(parse_props("a/b", "60001", NULL, &rq), &rq, SCHED_RC_IMPL_ERROR);
	expect_bad(parse_props("a/b", "99999999999999999999999999", NULL, &rq), &rq,
		   SCHED_RC_IMPL_ERROR);
	expect_bad(parse_props("a/b", "-5", NULL, &rq), &rq, SCHED_RC_IMPL_ERROR);
	expect_bad(parse_props("a/b", "1.5", NULL, &rq), &rq, SCHED_RC_IMPL_ERROR);
	expect_bad(parse_props("a/b", "", NULL, &rq), &rq, SCHED_RC_IMPL_ERROR);
	expect_bad(parse_props("a/b", "NaN", NULL, &rq), &rq, SCHED_RC_IMPL_ERROR);
	expect_bad(parse_props("a/b", NULL, "soon", &rq), &rq, SCHED_RC_IMPL_ERROR);
	expect_bad(parse_props("a/b", NULL, "", &rq), &rq, SCHED_RC_IMPL_ERROR);
	expect_bad(parse_props("a/b", "10", "10", &rq), &rq, SCHED_RC_IMPL_ERROR);
	expect_bad(parse_props("$delayed/5/a", "10", NULL, &rq), &rq, SCHED_RC_IMPL_ERROR);
	expect_bad(parse_props("$foo/a", "10", NULL, &rq), &rq, SCHED_RC_TOPIC_INVALID);
}

static void test_parse_props_repeated(void **state)
{
	struct sched_props p;
	struct sched_req rq;

	(void)state;
	memset(&p, 0, sizeof(p));
	p.delay = "10";
	p.delay_len = 2;
	p.n_delay = 2;
	expect_bad(sched_parse("a", &p, NOW, MAX_MS, &rq), &rq, SCHED_RC_IMPL_ERROR);
	memset(&p, 0, sizeof(p));
	p.delay = "100x";
	p.delay_len = 3; /* not NUL-terminated: only the length counts */
	p.n_delay = 1;
	assert_int_equal(sched_parse("a", &p, NOW, MAX_MS, &rq), 0);
	assert_true(rq.due_ms == NOW + 100);
}

static void test_parse_cancel(void **state)
{
	struct sched_req rq;

	(void)state;
	assert_int_equal(parse("$delayed/cancel/42", &rq), 0);
	assert_int_equal(rq.kind, SCHED_CANCEL);
	assert_true(rq.cancel_id == 42);
	assert_int_equal(parse_props("$delayed/cancel/7", "10", NULL, &rq), 0);
	assert_int_equal(rq.kind, SCHED_CANCEL);
	assert_true(rq.cancel_id == 7);
	expect_bad(parse("$delayed/cancel", &rq), &rq, SCHED_RC_TOPIC_INVALID);
	expect_bad(parse("$delayed/cancel/", &rq), &rq, SCHED_RC_TOPIC_INVALID);
	expect_bad(parse("$delayed/cancel/abc", &rq), &rq, SCHED_RC_TOPIC_INVALID);
	expect_bad(parse("$delayed/cancel/0", &rq), &rq, SCHED_RC_TOPIC_INVALID);
	expect_bad(parse("$delayed/cancel/1/2", &rq), &rq, SCHED_RC_TOPIC_INVALID);
	expect_bad(parse("$delayed/cancel/-1", &rq), &rq, SCHED_RC_TOPIC_INVALID);
	/* "cancelled" is not the cancel verb but a malformed delay. */
	expect_bad(parse("$delayed/cancelled/a", &rq), &rq, SCHED_RC_IMPL_ERROR);
}

static void test_parse_numbers(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(sched_parse_uint("0", 1, &v), 0);
	assert_true(v == 0);
	assert_int_equal(sched_parse_uint("123456789012345678", 18, &v), 0);
	assert_true(v == 123456789012345678ull);
	assert_int_equal(sched_parse_uint("1234567890123456789", 19, &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(sched_parse_uint("", 0, &v), -1);
	assert_int_equal(sched_parse_uint("1a", 2, &v), -1);
	assert_int_equal(sched_parse_seconds("1.2345", 6, &v), 0);
	assert_true(v == 1235);
	assert_int_equal(sched_parse_seconds("3.1", 3, &v), 0);
	assert_true(v == 3100);
	assert_int_equal(sched_parse_seconds("3.", 2, &v), -1);
	assert_int_equal(sched_parse_seconds(".3", 2, &v), -1);
}

static void test_parse_duration(void **state)
{
	uint64_t ms;

	(void)state;
	assert_int_equal(sched_parse_duration("60", &ms), 0);
	assert_true(ms == 60000);
	assert_int_equal(sched_parse_duration("42d", &ms), 0);
	assert_true(ms == 42ull * 86400 * 1000);
	assert_int_equal(sched_parse_duration("2h", &ms), 0);
	assert_true(ms == 7200000);
	assert_int_equal(sched_parse_duration("1w", &ms), 0);
	assert_true(ms == 604800000);
	assert_int_equal(sched_parse_duration("1y", &ms), 0);
	assert_true(ms == 31536000000ull);
	assert_int_equal(sched_parse_duration("0", &ms), 0);
	assert_true(ms == 0);
	assert_int_equal(sched_parse_duration("", &ms), -1);
	assert_int_equal(sched_parse_duration("d", &ms), -1);
	assert_int_equal(sched_parse_duration("10x", &ms), -1);
	assert_int_equal(sched_parse_duration("-1", &ms), -1);
	assert_int_equal(sched_parse_duration("1.5d", &ms), -1);
	assert_int_equal(sched_parse_duration("9999999999999d", &ms), -1);
}

/* Twelve digits times a unit overflow 64 bits: refused (-2), never wrapped around. */
static void test_parse_duration_overflow(void **state)
{
	static const char *const too_big[] = {
		"999999999999y", "999999999999m", "999999999999w", "999999999999d",
		"584942418y",	 "7116799412m",	  "30500568905w",  "213503982335d",
	};
	uint64_t ms;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(too_big) / sizeof(too_big[0]); i++) {
		ms = 42;
		print_message("%s\n", too_big[i]);
		assert_int_equal(sched_parse_duration(too_big[i], &ms), -2);
		assert_true(ms == 42); /* untouched */
	}
	/* The largest of each unit that fits. */
	assert_int_equal(sched_parse_duration("584942417y", &ms), 0);
	assert_true(ms == 584942417ull * 31536000000ull);
	assert_int_equal(sched_parse_duration("213503982334d", &ms), 0);
	assert_true(ms == 213503982334ull * 86400000ull);
	assert_int_equal(sched_parse_duration("999999999999h", &ms), 0);
	assert_true(ms == 999999999999ull * 3600000ull);
	assert_int_equal(sched_parse_duration("999999999999", &ms), 0);
	assert_true(ms == 999999999999000ull);
}

/* With a maximum near the end of the clock, a due time must not wrap around to "now". */
static void test_parse_due_does_not_wrap(void **state)
{
	struct sched_props p;
	struct sched_req rq;

	(void)state;
	memset(&p, 0, sizeof(p));
	p.delay = "99999999999999999999"; /* read as UINT64_MAX */
	p.delay_len = strlen(p.delay);
	p.n_delay = 1;
	expect_bad(sched_parse("a", &p, NOW, UINT64_MAX, &rq), &rq, SCHED_RC_IMPL_ERROR);
	p.delay = "999999999999999999"; /* 18 digits: fits, due in 31 million years */
	p.delay_len = strlen(p.delay);
	assert_int_equal(sched_parse("a", &p, NOW, UINT64_MAX, &rq), 0);
	assert_true(rq.due_ms == NOW + 999999999999999999ull);
	/* Seconds too many for 64 bits of ms are read as UINT64_MAX: no wrap either. */
	expect_bad(parse_max("$delayed/18446744073709551/a", UINT64_MAX, &rq), &rq,
		   SCHED_RC_IMPL_ERROR);
}

/* --- the far heap ---------------------------------------------------------------- */

static int cmp_ent(const void *a, const void *b)
{
	const struct sched_ent *x = a, *y = b;

	return sched_before(x, y) ? -1 : sched_before(y, x) ? 1 : 0;
}

static void test_heap_random(void **state)
{
	struct sched_heap h;
	struct sched_ent ref[3000], e;
	size_t i, n = 0;

	(void)state;
	memset(&h, 0, sizeof(h));
	srand(7);
	for (i = 0; i < 3000; i++) {
		e.due = (uint64_t)(rand() % 200); /* many ties */
		e.seq = i + 1;
		ref[n++] = e;
		assert_int_equal(sched_heap_push(&h, e), 0);
	}
	qsort(ref, n, sizeof(ref[0]), cmp_ent);
	for (i = 0; i < n; i++) {
		assert_int_equal(sched_heap_pop(&h, &e), 0);
		assert_true(e.due == ref[i].due && e.seq == ref[i].seq);
	}
	assert_int_equal(sched_heap_pop(&h, &e), -1);
	sched_heap_free(&h);
}

static void test_heap_build(void **state)
{
	struct sched_heap h;
	struct sched_ent e, prev = { 0, 0 };
	size_t i;

	(void)state;
	memset(&h, 0, sizeof(h));
	for (i = 0; i < 1000; i++) {
		e.due = (uint64_t)((i * 7919) % 101);
		e.seq = 1000 - i;
		assert_int_equal(sched_heap_append(&h, e), 0);
	}
	sched_heap_build(&h);
	for (i = 0; i < 1000; i++) {
		assert_int_equal(sched_heap_pop(&h, &e), 0);
		if (i)
			assert_true(sched_before(&prev, &e));
		prev = e;
	}
	sched_heap_free(&h);
}

/* --- the two-level queue -------------------------------------------------------------- */

static void free_msg(void *m)
{
	free(m);
}

/*
 * Random adds with delays 0..99 ms (many due in the same ms), near capped at
 * a few records, fetches completing at random: what leaves must be in
 * (due, seq) order, never before its due time, and everything must leave.
 */
static void run_queue(unsigned seed, size_t cap, uint64_t window)
{
	struct sched q;
	uint64_t now = 1000, last_due = 0, last_seq = 0;
	uint64_t seq = 0, released = 0;
	struct sched_rec *fetching[4096];
	size_t n_fetching = 0, i;

	srand(seed);
	sched_init(&q, window, cap);
	while (seq < 2000 || sched_count(&q)) {
		int adds = seq < 2000 ? rand() % 4 : 0;
		struct sched_rec *r;

		for (; adds > 0; adds--) {
			struct sched_ent e = { now + (uint64_t)(rand() % 100), ++seq };

			assert_int_equal(sched_add(&q, e, now, &r), 0);
			if (r) {
				r->msg = malloc(1);
				r->state = SCHED_READY;
			}
		}
		while ((r = sched_stage(&q, now))) {
			assert_true(r->e.due <= now + window);
			r->state = SCHED_FETCHING;
			assert_true(n_fetching < 4096);
			fetching[n_fetching++] = r;
		}
		/* Some fetches complete, in any order. */
		for (i = 0; i < n_fetching;) {
			if (rand() % 3 == 0) {
				fetching[i]->msg = malloc(1);
				fetching[i]->state = rand() % 50 ? SCHED_READY : SCHED_MISSING;
				fetching[i] = fetching[--n_fetching];
			} else {
				i++;
			}
		}
		/* The timer would not fire before this. */
		if (sched_wake(&q) > now && sched_wake(&q) != UINT64_MAX)
			assert_null(sched_due(&q, now));
		while ((r = sched_due(&q, now))) {
			assert_true(r->e.due <= now);
			assert_true(r->e.due > last_due ||
				    (r->e.due == last_due && r->e.seq > last_seq));
			last_due = r->e.due;
			last_seq = r->e.seq;
			free(r->msg);
			sched_rec_free(r);
			released++;
		}
		now++;
	}
	assert_true(released == seq);
	assert_int_equal(n_fetching, 0);
	sched_free(&q, free_msg);
}

static void test_queue_order(void **state)
{
	(void)state;
	run_queue(1, 50000, 30);
	run_queue(2, 4, 30); /* near capped: publishes ahead of staged ones still go in order */
	run_queue(3, 1, 0);
	run_queue(4, 16, 200);
}

static void test_queue_same_ms(void **state)
{
	struct sched q;
	struct sched_rec *r;
	uint64_t i;

	(void)state;
	sched_init(&q, 1000, 100);
	/* Far ones (staged later) and near ones (staged at once), all due at 5000. */
	for (i = 1; i <= 10; i++) {
		struct sched_ent e = { 5000, i };

		assert_int_equal(sched_add(&q, e, i <= 5 ? 0 : 4500, &r), 0);
		/* 1-5: beyond 0 + window; 6-10: within it, but behind 1-5 in far. */
		assert_null(r);
	}
	assert_null(sched_due(&q, 5000)); /* stage first */
	while ((r = sched_stage(&q, 4500)))
		r->state = SCHED_READY;
	/* Far is empty now: the next one is staged at once, behind the others. */
	{
		struct sched_ent e = { 5000, 11 };

		assert_int_equal(sched_add(&q, e, 4500, &r), 0);
		assert_non_null(r);
		r->state = SCHED_READY;
	}
	for (i = 1; i <= 11; i++) {
		r = sched_due(&q, 5000);
		assert_non_null(r);
		assert_true(r->e.seq == i);
		sched_rec_free(r);
	}
	assert_null(sched_due(&q, 5000));
	sched_free(&q, NULL);
}

static void test_queue_wake(void **state)
{
	struct sched q;
	struct sched_rec *r;
	struct sched_ent e = { 10000, 1 }, f;

	(void)state;
	sched_init(&q, 1500, 10);
	assert_true(sched_wake(&q) == UINT64_MAX);
	assert_false(sched_first(&q, &f));
	assert_int_equal(sched_add(&q, e, 0, &r), 0);
	assert_null(r);
	assert_true(sched_wake(&q) == 8500); /* time to fetch it */
	assert_null(sched_stage(&q, 8499));
	r = sched_stage(&q, 8500);
	assert_non_null(r);
	r->state = SCHED_FETCHING;
	assert_true(sched_wake(&q) == UINT64_MAX); /* the fetch callback wakes */
	assert_null(sched_due(&q, 20000));
	r->state = SCHED_READY;
	assert_true(sched_wake(&q) == 10000);
	assert_true(sched_first(&q, &f) && f.seq == 1);
	assert_null(sched_due(&q, 9999));
	assert_true(sched_due(&q, 10000) == r);
	sched_rec_free(r);
	/* Dropping the first entry (a cancelled one) from either level. */
	e.seq = 2;
	assert_int_equal(sched_add(&q, e, 0, &r), 0);
	assert_null(sched_drop_first(&q));
	assert_int_equal(sched_count(&q), 0);
	e.seq = 3;
	assert_int_equal(sched_add(&q, e, 9000, &r), 0);
	assert_non_null(r);
	assert_true(sched_drop_first(&q) == r);
	sched_rec_free(r);
	sched_free(&q, NULL);
}

/*
 * A release that failed gives its record back: it is the next to go again,
 * before everything else (also what was staged meanwhile), and DONE records
 * (routed, their index entry still to remove) are due like READY ones.
 */
static void test_queue_putback(void **state)
{
	struct sched q;
	struct sched_rec *r, *s;
	struct sched_ent f;
	uint64_t i;

	(void)state;
	sched_init(&q, 1000, 100);
	for (i = 1; i <= 3; i++) {
		struct sched_ent e = { 100, i };

		assert_int_equal(sched_add(&q, e, 0, &r), 0);
		assert_non_null(r);
		r->state = SCHED_READY;
	}
	r = sched_due(&q, 100);
	assert_non_null(r);
	assert_true(r->e.seq == 1);
	r->state = SCHED_DONE;
	assert_int_equal(sched_putback(&q, r), 0);
	assert_int_equal(sched_count(&q), 3);
	assert_true(sched_first(&q, &f) && f.seq == 1);
	assert_true(sched_wake(&q) == 100); /* DONE is settled: the caller's timer fires */
	assert_true(sched_due(&q, 100) == r);
	sched_rec_free(r);
	/* A record waiting for its payload again is not due, and hides nothing behind it. */
	r = sched_due(&q, 100);
	assert_true(r->e.seq == 2);
	r->state = SCHED_WAIT;
	assert_int_equal(sched_putback(&q, r), 0);
	assert_null(sched_due(&q, 100));
	assert_true(sched_wake(&q) == UINT64_MAX);
	r->state = SCHED_READY;
	s = sched_due(&q, 100);
	assert_true(s == r);
	sched_rec_free(s);
	s = sched_due(&q, 100);
	assert_true(s->e.seq == 3);
	sched_rec_free(s);
	/* The last one given back to an empty near, then one added behind it. */
	{
		struct sched_ent e = { 100, 4 };

		assert_int_equal(sched_add(&q, e, 0, &r), 0);
		r->state = SCHED_READY;
		assert_true(sched_due(&q, 100) == r);
		assert_int_equal(sched_putback(&q, r), 0);
		e.seq = 5;
		assert_int_equal(sched_add(&q, e, 0, &s), 0);
		assert_non_null(s); /* behind a staged one: staged too */
		s->state = SCHED_READY;
		assert_true(sched_due(&q, 100) == r);
		assert_true(sched_due(&q, 100) == s);
		sched_rec_free(r);
		sched_rec_free(s);
	}
	assert_false(sched_first(&q, &f));
	sched_free(&q, NULL);
}

/* --- index rows --------------------------------------------------------------------------- */

static void test_chunk_rows(void **state)
{
	uint8_t a[SCHED_CHUNK_MAX + SCHED_REC_SIZE], b[SCHED_CHUNK_MAX + SCHED_REC_SIZE];
	struct sched_item it, got;
	size_t len = 0, i;

	(void)state;
	memset(a, 0, sizeof(a));
	assert_false(sched_chunk_valid(a, 0));
	/* Add in scrambled order: stored sorted by index. */
	for (i = 0; i < SCHED_CHUNK; i++) {
		it.idx = (unsigned)((i * 7) % SCHED_CHUNK);
		it.due = 1000 + i;
		it.sender = (uint32_t)(i * 3);
		len = sched_chunk_add(a, len, &it, b);
		memcpy(a, b, len);
		assert_true(sched_chunk_valid(a, len));
	}
	assert_int_equal(len, SCHED_CHUNK_MAX);
	assert_int_equal(sched_chunk_find(a, len, 7, &got), 0);
	assert_true(got.idx == 7 && got.due == 1001 && got.sender == 3);
	/* Replace. */
	it.idx = 7;
	it.due = 5;
	it.sender = 0xdeadbeef;
	len = sched_chunk_add(a, len, &it, b);
	assert_int_equal(len, SCHED_CHUNK_MAX);
	assert_int_equal(sched_chunk_find(b, len, 7, &got), 0);
	assert_true(got.due == 5 && got.sender == 0xdeadbeef);
	/* Remove all but one. */
	memcpy(a, b, len);
	for (i = 0; i < SCHED_CHUNK - 1; i++) {
		len = sched_chunk_remove(a, len, (unsigned)i, b);
		memcpy(a, b, len);
		assert_int_equal(sched_chunk_find(a, len, (unsigned)i, &got), -1);
	}
	assert_int_equal(len, SCHED_REC_SIZE);
	assert_int_equal(sched_chunk_find(a, len, SCHED_CHUNK - 1, &got), 0);
	assert_int_equal(sched_chunk_remove(a, len, 3, b), SCHED_REC_SIZE); /* absent: unchanged */
	/* Malformed rows. */
	a[0] = SCHED_CHUNK; /* index out of range */
	assert_false(sched_chunk_valid(a, SCHED_REC_SIZE));
	assert_false(sched_chunk_valid(a, SCHED_REC_SIZE - 1));
	a[0] = 3;
	a[SCHED_REC_SIZE] = 3; /* not increasing */
	assert_false(sched_chunk_valid(a, 2 * SCHED_REC_SIZE));
	assert_false(sched_chunk_valid(a, SCHED_CHUNK_MAX + SCHED_REC_SIZE));
}

/* The latest due of a row decides whether its released payloads wait for the row to go. */
static void test_chunk_last_due(void **state)
{
	uint8_t a[SCHED_CHUNK_MAX] = { 0 }, b[SCHED_CHUNK_MAX];
	static const uint64_t dues[] = { 70, 900000000000ull, 5, 900000000001ull, 12 };
	struct sched_item it = { 0, 0, 1 };
	size_t len = 0, i;

	(void)state;
	assert_true(sched_chunk_last_due(a, 0) == 0);
	for (i = 0; i < sizeof(dues) / sizeof(dues[0]); i++) {
		it.idx = (unsigned)(SCHED_CHUNK - 1 - i * 3); /* the latest is not the last row */
		it.due = dues[i];
		len = sched_chunk_add(a, len, &it, b);
		memcpy(a, b, len);
	}
	assert_true(sched_chunk_last_due(a, len) == 900000000001ull);
	len = sched_chunk_remove(a, len, SCHED_CHUNK - 1 - 3 * 3, b);
	assert_true(sched_chunk_last_due(b, len) == 900000000000ull);
}

static void test_keys(void **state)
{
	uint8_t k[9], k2[9];

	(void)state;
	assert_int_equal(sched_key_chunk(k, 31), 9);
	assert_int_equal(sched_key_chunk(k2, 0), 9);
	assert_memory_equal(k, k2, 9); /* same chunk */
	sched_key_chunk(k2, 32);
	assert_true(memcmp(k, k2, 9) < 0); /* key order is chunk order */
	assert_int_equal(sched_key_payload(k, 0x0102030405060708ull), 9);
	assert_int_equal(k[0], 'p');
	assert_true(sched_get_be64(k + 1) == 0x0102030405060708ull);
	assert_int_equal(sched_key_sender(k, 0x0a0b0c0d), 5);
	assert_int_equal(k[0], 's');
	assert_true(sched_get_be32(k + 1) == 0x0a0b0c0d);
}

/* --- senders -------------------------------------------------------------------------------- */

static void test_senders(void **state)
{
	struct sched_senders ss;
	struct sched_sender *s;
	char name[32];
	uint32_t i;

	(void)state;
	sched_senders_init(&ss);
	assert_null(sched_senders_find(&ss, "a"));
	assert_null(sched_senders_by_id(&ss, 1));
	for (i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "client-%u", i);
		assert_non_null(sched_senders_add(&ss, name, i + 1));
	}
	assert_null(sched_senders_add(&ss, "dup", 5)); /* id taken */
	for (i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "client-%u", i);
		s = sched_senders_find(&ss, name);
		assert_non_null(s);
		assert_true(s->id == i + 1);
		assert_true(sched_senders_by_id(&ss, i + 1) == s);
	}
	for (i = 0; i < 500; i += 2) {
		snprintf(name, sizeof(name), "client-%u", i);
		sched_senders_remove(&ss, sched_senders_find(&ss, name));
	}
	for (i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "client-%u", i);
		if (i % 2 == 0) {
			assert_null(sched_senders_find(&ss, name));
			assert_null(sched_senders_by_id(&ss, i + 1));
		} else {
			assert_non_null(sched_senders_find(&ss, name));
		}
	}
	assert_int_equal(ss.n, 250);
	sched_senders_free(&ss);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_topic_forms),
		cmocka_unit_test(test_parse_not_delayed),
		cmocka_unit_test(test_parse_topic_bad),
		cmocka_unit_test(test_parse_props),
		cmocka_unit_test(test_parse_props_repeated),
		cmocka_unit_test(test_parse_cancel),
		cmocka_unit_test(test_parse_numbers),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_duration_overflow),
		cmocka_unit_test(test_parse_due_does_not_wrap),
		cmocka_unit_test(test_heap_random),
		cmocka_unit_test(test_heap_build),
		cmocka_unit_test(test_queue_order),
		cmocka_unit_test(test_queue_same_ms),
		cmocka_unit_test(test_queue_wake),
		cmocka_unit_test(test_queue_putback),
		cmocka_unit_test(test_chunk_rows),
		cmocka_unit_test(test_chunk_last_due),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_senders),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
