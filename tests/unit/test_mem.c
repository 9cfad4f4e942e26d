/*
 * test_mem.c - the allocator's count of live bytes and memory_limit.
 *
 * The count must follow every way a block comes and goes (alloc, calloc,
 * realloc up and down, free, a block cache keeping and draining blocks),
 * or the limit drifts over a long run; past the limit mem_over_limit()
 * says so, and an eighth above it allocations fail; what the store reports
 * for SQLite takes its share of both.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "mem.h"

#define MB (1024 * 1024)

static int reset(void **state)
{
	mem_set_limit(0);
	mem_set_other(0);
	return 0;
}

static void test_count_follows_blocks(void **state)
{
	uint64_t before = mem_counted();
	char *a = mem_alloc(1000), *b = mem_calloc(10, 100), *s = mem_strdup("hello");

	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(s);
	/* usable sizes: at least what was asked, not much more */
	assert_true(mem_counted() >= before + 2006);
	assert_true(mem_counted() <= before + 2006 + 3 * 64);
	a = mem_realloc(a, 100000);
	assert_non_null(a);
	assert_true(mem_counted() >= before + 101006);
	a = mem_realloc(a, 10);
	assert_non_null(a);
	assert_true(mem_counted() < before + 3000);
	mem_free(a);
	mem_free(b);
	mem_free(s);
	mem_free(NULL);
	assert_true(mem_counted() == before);
	assert_true(mem_counted_peak() >= before + 101006);
}

static void test_count_through_a_cache(void **state)
{
	struct mem_cache c = MEM_CACHE(256, 2);
	uint64_t before = mem_counted();
	void *p[3];

	for (int i = 0; i < 3; i++)
		assert_non_null(p[i] = mem_cache_alloc(&c));
	assert_true(mem_counted() >= before + 3 * 256);
	for (int i = 0; i < 3; i++)
		mem_cache_free(&c, p[i]);
	/* the kept blocks are still the process's: counted until drained */
	assert_true(mem_counted() >= before + c.n * 256);
	mem_cache_drain(&c);
	assert_true(mem_counted() == before);
}

static void test_limit(void **state)
{
	uint64_t base = mem_counted();
	char *big, *more;

	mem_set_limit(base + 1 * MB);
	assert_false(mem_over_limit());
	big = mem_alloc(MB + 4096);
	assert_non_null(big);
	assert_true(mem_over_limit());
	/* an eighth above the limit allocations fail, growth included */
	assert_null(mem_alloc(MB / 8));
	assert_null(mem_calloc(MB / 8, 1));
	more = mem_alloc(16);
	assert_non_null(more);
	assert_null(mem_realloc(more, MB / 8));
	mem_free(more);
	mem_free(big);
	assert_false(mem_over_limit());
	/* what SQLite holds is room the broker's heap does not have */
	mem_set_other(MB / 2);
	big = mem_alloc(MB / 2 + 4096);
	assert_non_null(big);
	assert_true(mem_over_limit());
	assert_true(mem_counted() >= base + MB + 4096);
	mem_set_other(0);
	assert_false(mem_over_limit());
	mem_free(big);
}

static void test_no_limit(void **state)
{
	char *big = mem_alloc(64 * MB);

	assert_non_null(big);
	assert_false(mem_over_limit());
	mem_free(big);
	assert_int_equal(mem_limit_margin(8 * MB), MB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_count_follows_blocks, reset),
		cmocka_unit_test_setup(test_count_through_a_cache, reset),
		cmocka_unit_test_setup(test_limit, reset),
		cmocka_unit_test_setup(test_no_limit, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
