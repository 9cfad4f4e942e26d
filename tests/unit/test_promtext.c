/*
 * test_promtext.c - the Prometheus text format writer (src/promtext.c):
 * HELP and TYPE once per family, label values escaped, names checked,
 * histograms cumulative with _sum and _count, and running out of memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "promtext.h"

static char text[4096];

static const char *as_text(const struct buf *b)
{
	snprintf(text, sizeof(text), "%.*s", (int)b->len, (const char *)b->data);
	return text;
}

static void test_family_once(void **state)
{
	struct buf b;
	struct prom p;

	buf_init(&b);
	prom_init(&p, &b);
	prom_u64(&p, "sluice_x_total", "counter", "X.", "qos", "0", 1);
	prom_u64(&p, "sluice_x_total", "counter", "X.", "qos", "1", 2);
	prom_u64(&p, "sluice_y", "gauge", "Y\\ has\na newline.", NULL, NULL, 18446744073709551615u);
	assert_int_equal(p.err, 0);
	assert_string_equal(as_text(&b), "# HELP sluice_x_total X.\n"
					 "# TYPE sluice_x_total counter\n"
					 "sluice_x_total{qos=\"0\"} 1\n"
					 "sluice_x_total{qos=\"1\"} 2\n"
					 "# HELP sluice_y Y\\\\ has\\na newline.\n"
					 "# TYPE sluice_y gauge\n"
					 "sluice_y 18446744073709551615\n");
	buf_free(&b);
}

static void test_label_escaping(void **state)
{
	struct buf b;
	struct prom p;

	buf_init(&b);
	prom_init(&p, &b);
	prom_u64(&p, "m", "gauge", "", "filter", "a\\b\"c\nd/#", 7);
	assert_string_equal(as_text(&b),
			    "# HELP m \n# TYPE m gauge\nm{filter=\"a\\\\b\\\"c\\nd/#\"} 7\n");
	buf_free(&b);
}

static void test_bad_names_skipped(void **state)
{
	struct buf b;
	struct prom p;

	buf_init(&b);
	prom_init(&p, &b);
	prom_u64(&p, "9lives", "gauge", "", NULL, NULL, 1);
	prom_u64(&p, "has-dash", "gauge", "", NULL, NULL, 1);
	prom_u64(&p, "", "gauge", "", NULL, NULL, 1);
	prom_u64(&p, "ok", "gauge", "", "bad:label", "v", 1);
	prom_u64(&p, "ok", "gauge", "", "0label", "v", 1);
	assert_int_equal(b.len, 0);
	assert_true(prom_name_ok("sluice:rate_5m", false));
	assert_false(prom_name_ok("sluice:rate_5m", true));
	assert_true(prom_name_ok("_x9", true));
	buf_free(&b);
}

static void test_histogram(void **state)
{
	static const double bounds[3] = { 0.001, 0.01, 1 };
	static const uint64_t counts[4] = { 2, 0, 3, 1 };
	struct buf b;
	struct prom p;

	buf_init(&b);
	prom_init(&p, &b);
	prom_histogram(&p, "sluice_t_seconds", "T.", bounds, counts, 3, 1.5);
	assert_string_equal(as_text(&b), "# HELP sluice_t_seconds T.\n"
					 "# TYPE sluice_t_seconds histogram\n"
					 "sluice_t_seconds_bucket{le=\"0.001\"} 2\n"
					 "sluice_t_seconds_bucket{le=\"0.01\"} 2\n"
					 "sluice_t_seconds_bucket{le=\"1\"} 5\n"
					 "sluice_t_seconds_bucket{le=\"+Inf\"} 6\n"
					 "sluice_t_seconds_sum 1.5\n"
					 "sluice_t_seconds_count 6\n");
	buf_free(&b);
}

/* A _sum is written exactly: every digit of a whole number, a fraction to the last bit. */
static void test_histogram_sum_exact(void **state)
{
	static const double bounds[1] = { 1 };
	static const uint64_t counts[2] = { 0, 1 };
	struct buf b;
	struct prom p;

	buf_init(&b);
	prom_init(&p, &b);
	prom_histogram(&p, "sluice_a", "A.", bounds, counts, 1, 1234567891.0);
	prom_histogram(&p, "sluice_b", "B.", bounds, counts, 1, 9007199254740991.0);
	prom_histogram(&p, "sluice_c", "C.", bounds, counts, 1, 0.1);
	assert_non_null(strstr(as_text(&b), "\nsluice_a_sum 1234567891\n"));
	assert_non_null(strstr(as_text(&b), "\nsluice_b_sum 9007199254740991\n"));
	assert_non_null(strstr(as_text(&b), "\nsluice_c_sum 0.10000000000000001\n"));
	buf_free(&b);
}

static void test_out_of_memory(void **state)
{
	struct buf b;
	struct prom p;

	buf_init(&b);
	prom_init(&p, &b);
	mem_fail_after(0);
	prom_u64(&p, "m", "gauge", "M.", NULL, NULL, 1);
	mem_fail_after(-1);
	assert_int_equal(p.err, -1);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_family_once),	  cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_bad_names_skipped), cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_histogram_sum_exact),
		cmocka_unit_test(test_out_of_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
