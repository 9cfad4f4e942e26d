/*
 * fuzz.h - what every libFuzzer target in tests/fuzz shares: the entry point
 * declaration and an invariant check.
 *
 * A target must do more than survive its input: where a cheap property holds
 * (decode, encode, decode again gives the same fields; two ways of feeding
 * the framer give the same packets; the trie agrees with the naive matcher),
 * it checks it with fuzz_check(). A broken invariant prints the expression
 * and aborts, which libFuzzer reports as a crash and saves the input.
 *
 * Test code only: the broker itself never aborts on client input.
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void fuzz_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "%s:%d: invariant failed: %s\n", file, line, expr);
	abort();
}

#define fuzz_check(cond)                                         \
	do {                                                     \
		if (!(cond))                                     \
			fuzz_fail(__FILE__, __LINE__, #cond);    \
	} while (0)

#endif
