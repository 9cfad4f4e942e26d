/*
 * clock.c - the broker's two clocks (see clock.h). CLOCK_MONOTONIC never
 * jumps when an operator sets the date, so deadlines measured with it stay
 * true; wall time is used only where a date is needed.
 */
#include "clock.h"

#include <time.h>

static uint64_t read_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t clock_now_ms(void)
{
	return read_ms(CLOCK_MONOTONIC);
}

uint64_t clock_wall_ms(void)
{
	return read_ms(CLOCK_REALTIME);
}
