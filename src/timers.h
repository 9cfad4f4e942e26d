/*
 * timers.h - one-shot timers on a binary min-heap, in monotonic ms.
 *
 * The owner embeds a struct timer in its own object (a connection, a
 * session) and arms it with timers_add(). Nothing allocates per timer; the
 * heap array grows with the number of armed timers. The event loop asks
 * timers_next_due() when to wake and calls timers_run() then. A callback
 * may arm or disarm any timer, including its own.
 *
 * The broker's loop has one heap of its own (timer_arm, timer_disarm,
 * timers_fire): every module arms its timers there, and the transport,
 * which owns the loop's sleep, learns through the hook set with
 * timers_on_change() when the earliest deadline moved earlier.
 */
#ifndef SLUICE_TIMERS_H
#define SLUICE_TIMERS_H

#include <stddef.h>
#include <stdint.h>

struct timer;
typedef void (*timer_fn)(struct timer *t, void *arg);

struct timer {
	uint64_t due_ms;
	size_t idx; /* position in the heap + 1; 0 when not armed */
	timer_fn fn;
	void *arg;
};

struct timers {
	struct timer **heap;
	size_t n, cap;
};

void timers_init(struct timers *ts);
void timers_free(struct timers *ts);
void timer_init(struct timer *t, timer_fn fn, void *arg);
/* Arms t for due_ms, or moves it there when armed. Returns 0 or -1 (OOM). */
int timers_add(struct timers *ts, struct timer *t, uint64_t due_ms);
void timers_del(struct timers *ts, struct timer *t);
int timer_armed(const struct timer *t);
/* Earliest due time, or UINT64_MAX when no timer is armed. */
uint64_t timers_next_due(const struct timers *ts);
/* Fires every timer due at or before now, earliest first. Returns how many fired. */
int timers_run(struct timers *ts, uint64_t now_ms);

/* --- the loop's heap (loop thread only) --- */

/* Arms (or moves) t on the loop's heap; out of memory is logged and t stays disarmed. */
void timer_arm(struct timer *t, uint64_t due_ms);
void timer_disarm(struct timer *t);
/* Runs the loop's timers due now. Returns the next due time (UINT64_MAX: none). */
uint64_t timers_fire(void);
uint64_t timers_loop_next(void);
/* fn(due_ms) runs whenever the earliest deadline moves earlier (NULL: nobody to tell). */
void timers_on_change(void (*fn)(uint64_t due_ms));
/* Disarms every timer of the loop's heap and frees it (shutdown). */
void timers_loop_free(void);

#endif
