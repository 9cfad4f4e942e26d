/*
 * test_timers.c - the timer heap: order of firing, re-arming, disarming,
 * callbacks that arm or disarm timers, and a randomized check of the heap
 * order against a sorted reference.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "mem.h"
#include "timers.h"

static uint64_t fired_at[1024];
static int fired_id[1024];
static int n_fired;
static struct timers ts;

struct tt {
	struct timer t;
	int id;
};

static void record(struct timer *t, void *arg)
{
	struct tt *x = arg;

	fired_at[n_fired] = t->due_ms;
	fired_id[n_fired++] = x->id;
}

static int setup(void **state)
{
	timers_init(&ts);
	n_fired = 0;
	return 0;
}

static int teardown(void **state)
{
	timers_free(&ts);
	return 0;
}

static void fires_in_due_order(void **state)
{
	struct tt x[5];
	uint64_t due[5] = { 50, 10, 40, 20, 30 };
	int i;

	for (i = 0; i < 5; i++) {
		x[i].id = i;
		timer_init(&x[i].t, record, &x[i]);
		assert_int_equal(timers_add(&ts, &x[i].t, due[i]), 0);
	}
	assert_int_equal(timers_next_due(&ts), 10);
	assert_int_equal(timers_run(&ts, 25), 2);
	assert_int_equal(fired_id[0], 1);
	assert_int_equal(fired_id[1], 3);
	assert_false(timer_armed(&x[1].t));
	assert_true(timer_armed(&x[0].t));
	assert_int_equal(timers_run(&ts, 100), 3);
	assert_int_equal(fired_id[2], 4);
	assert_int_equal(fired_id[3], 2);
	assert_int_equal(fired_id[4], 0);
	assert_int_equal(timers_next_due(&ts), UINT64_MAX);
}

static void rearm_moves_and_del_disarms(void **state)
{
	struct tt a = { .id = 1 }, b = { .id = 2 };

	timer_init(&a.t, record, &a);
	timer_init(&b.t, record, &b);
	timers_add(&ts, &a.t, 10);
	timers_add(&ts, &b.t, 20);
	timers_add(&ts, &a.t, 30); /* moved after b */
	assert_int_equal(timers_next_due(&ts), 20);
	timers_del(&ts, &b.t);
	timers_del(&ts, &b.t); /* twice is harmless */
	assert_int_equal(timers_next_due(&ts), 30);
	assert_int_equal(timers_run(&ts, 29), 0);
	assert_int_equal(timers_run(&ts, 30), 1);
	assert_int_equal(fired_id[0], 1);
}

static struct tt chain[3];

static void rearm_self(struct timer *t, void *arg)
{
	struct tt *x = arg;

	record(t, arg);
	if (x->id == 0 && n_fired < 4)
		timers_add(&ts, t, t->due_ms + 5);
	if (x->id == 0)
		timers_del(&ts, &chain[2].t);
}

static void callbacks_may_arm_and_disarm(void **state)
{
	int i;

	for (i = 0; i < 3; i++) {
		chain[i].id = i;
		timer_init(&chain[i].t, rearm_self, &chain[i]);
	}
	timers_add(&ts, &chain[0].t, 10);
	timers_add(&ts, &chain[1].t, 12);
	timers_add(&ts, &chain[2].t, 14);
	timers_run(&ts, 100);
	/* 0 at 10 (re-arms for 15, cancels 2), 1 at 12, 0 at 15 (re-arms for 20), 0 at 20 */
	assert_int_equal(n_fired, 4);
	assert_int_equal(fired_id[1], 1);
	assert_int_equal(fired_at[3], 20);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void random_matches_sorted_reference(void **state)
{
	static struct tt x[500];
	static uint64_t ref[500];
	int i, n = 0;

	srand(42);
	for (i = 0; i < 500; i++) {
		x[i].id = i;
		timer_init(&x[i].t, record, &x[i]);
		timers_add(&ts, &x[i].t, (uint64_t)(rand() % 1000));
	}
	for (i = 0; i < 500; i += 3) /* disarm a third of them */
		timers_del(&ts, &x[i].t);
	for (i = 0; i < 500; i++)
		if (timer_armed(&x[i].t))
			ref[n++] = x[i].t.due_ms;
	qsort(ref, (size_t)n, sizeof(ref[0]), cmp_u64);
	assert_int_equal(timers_run(&ts, 1000), n);
	for (i = 0; i < n; i++)
		assert_int_equal(fired_at[i], ref[i]);
}

static void add_fails_cleanly_without_memory(void **state)
{
	struct tt a = { .id = 1 };

	timer_init(&a.t, record, &a);
	mem_fail_after(0);
	assert_int_equal(timers_add(&ts, &a.t, 5), -1);
	mem_fail_after(-1);
	assert_false(timer_armed(&a.t));
	assert_int_equal(timers_next_due(&ts), UINT64_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(fires_in_due_order, setup, teardown),
		cmocka_unit_test_setup_teardown(rearm_moves_and_del_disarms, setup, teardown),
		cmocka_unit_test_setup_teardown(callbacks_may_arm_and_disarm, setup, teardown),
		cmocka_unit_test_setup_teardown(random_matches_sorted_reference, setup, teardown),
		cmocka_unit_test_setup_teardown(add_fails_cleanly_without_memory, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
