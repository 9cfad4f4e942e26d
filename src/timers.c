/*
 * timers.c - binary min-heap of embedded timers.
 *
 * Each timer records its heap slot so that disarming and moving are
 * O(log n) without a search. Ties fire in no particular order; callers that
 * need an order among equal deadlines keep it themselves.
 */
#include "timers.h"

#include "clock.h"
#include "log.h"
#include "mem.h"

void timers_init(struct timers *ts)
{
	ts->heap = NULL;
	ts->n = 0;
	ts->cap = 0;
}

void timers_free(struct timers *ts)
{
	size_t i;

	for (i = 0; i < ts->n; i++)
		ts->heap[i]->idx = 0;
	mem_free(ts->heap);
	timers_init(ts);
}

void timer_init(struct timer *t, timer_fn fn, void *arg)
{
	t->due_ms = 0;
	t->idx = 0;
	t->fn = fn;
	t->arg = arg;
}

int timer_armed(const struct timer *t)
{
	return t->idx != 0;
}

static void place(struct timers *ts, size_t i, struct timer *t)
{
	ts->heap[i] = t;
	t->idx = i + 1;
}

static void sift_up(struct timers *ts, size_t i)
{
	struct timer *t = ts->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (ts->heap[parent]->due_ms <= t->due_ms)
			break;
		place(ts, i, ts->heap[parent]);
		i = parent;
	}
	place(ts, i, t);
}

static void sift_down(struct timers *ts, size_t i)
{
	struct timer *t = ts->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= ts->n)
			break;
		if (c + 1 < ts->n && ts->heap[c + 1]->due_ms < ts->heap[c]->due_ms)
			c++;
		if (t->due_ms <= ts->heap[c]->due_ms)
			break;
		place(ts, i, ts->heap[c]);
		i = c;
	}
	place(ts, i, t);
}

void timers_del(struct timers *ts, struct timer *t)
{
	struct timer *moved;
	size_t i;

	if (!t->idx)
		return;
	i = t->idx - 1;
	t->idx = 0;
	ts->n--;
	if (i == ts->n)
		return;
	moved = ts->heap[ts->n];
	place(ts, i, moved);
	sift_down(ts, i);
	sift_up(ts, moved->idx - 1);
}

int timers_add(struct timers *ts, struct timer *t, uint64_t due_ms)
{
	if (t->idx)
		timers_del(ts, t);
	if (ts->n == ts->cap) {
		size_t cap = ts->cap ? ts->cap * 2 : 64;
		struct timer **h = mem_realloc(ts->heap, cap * sizeof(*h));

		if (!h)
			return -1;
		ts->heap = h;
		ts->cap = cap;
	}
	t->due_ms = due_ms;
	place(ts, ts->n++, t);
	sift_up(ts, ts->n - 1);
	return 0;
}

uint64_t timers_next_due(const struct timers *ts)
{
	return ts->n ? ts->heap[0]->due_ms : UINT64_MAX;
}

int timers_run(struct timers *ts, uint64_t now_ms)
{
	int fired = 0;

	while (ts->n && ts->heap[0]->due_ms <= now_ms) {
		struct timer *t = ts->heap[0];

		timers_del(ts, t);
		fired++;
		t->fn(t, t->arg);
	}
	return fired;
}

/* --- the loop's heap ------------------------------------------------------- */

static struct timers loop_heap;
static void (*on_change)(uint64_t due_ms);

void timer_arm(struct timer *t, uint64_t due_ms)
{
	uint64_t before = timers_next_due(&loop_heap);

	if (timers_add(&loop_heap, t, due_ms)) {
		log_err("out of memory arming a timer");
		return;
	}
	if (due_ms < before && on_change)
		on_change(due_ms);
}

void timer_disarm(struct timer *t)
{
	timers_del(&loop_heap, t);
}

uint64_t timers_fire(void)
{
	timers_run(&loop_heap, clock_now_ms());
	return timers_next_due(&loop_heap);
}

uint64_t timers_loop_next(void)
{
	return timers_next_due(&loop_heap);
}

void timers_on_change(void (*fn)(uint64_t due_ms))
{
	on_change = fn;
}

void timers_loop_free(void)
{
	timers_free(&loop_heap);
	on_change = NULL;
}
