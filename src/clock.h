/*
 * clock.h - time sources. Monotonic milliseconds for every deadline inside
 * the broker (keep alive, expiry, timers); wall-clock milliseconds for what
 * leaves the process (persisted deadlines, $SYS, log lines).
 */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include <stdint.h>

uint64_t clock_now_ms(void);
uint64_t clock_wall_ms(void);

#endif
