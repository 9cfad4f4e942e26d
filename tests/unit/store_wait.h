/*
 * store_wait.h - for unit tests that run the real store: polls it until a
 * condition holds (commits happen on the writer thread; their callbacks and
 * the commit hook run on store_poll), for at most 10 s.
 */
#ifndef SLUICE_TESTS_STORE_WAIT_H
#define SLUICE_TESTS_STORE_WAIT_H

#include <time.h>

#include "store.h"

#define WAIT_FOR(cond)                                                    \
	do {                                                              \
		int spins_ = 0;                                           \
		while (!(cond) && spins_++ < 20000) {                     \
			store_kick();                                     \
			store_poll();                                     \
			nanosleep(&(struct timespec){ 0, 500000 }, NULL); \
		}                                                         \
		assert_true(cond);                                        \
	} while (0)

#endif
