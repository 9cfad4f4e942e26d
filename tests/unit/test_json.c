/*
 * test_json.c - the JSON writer (src/json.c): nesting and commas, escaping
 * of every character JSON needs escaped, null strings, running out of memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "json.h"
#include "mem.h"

static char text[1024];

static const char *as_text(const struct buf *b)
{
	snprintf(text, sizeof(text), "%.*s", (int)b->len, (const char *)b->data);
	return text;
}

static void test_nesting(void **state)
{
	struct buf b;
	struct json j;

	buf_init(&b);
	json_init(&j, &b);
	json_open(&j, NULL, '{');
	json_u64(&j, "n", 18446744073709551615u);
	json_open(&j, "list", '[');
	json_bool(&j, NULL, true);
	json_cstr(&j, NULL, NULL);
	json_open(&j, NULL, '{');
	json_close(&j, '}');
	json_close(&j, ']');
	json_bool(&j, "last", false);
	json_close(&j, '}');
	assert_int_equal(j.err, 0);
	assert_string_equal(as_text(&b),
			    "{\"n\":18446744073709551615,\"list\":[true,null,{}],\"last\":false}");
	buf_free(&b);
}

static void test_escaping(void **state)
{
	static const char s[] = "a\"b\\c\n\x01\x1f/\xc3\xa9";
	struct buf b;
	struct json j;

	buf_init(&b);
	json_init(&j, &b);
	json_open(&j, NULL, '{');
	json_str(&j, "k\"", s, sizeof(s) - 1);
	json_close(&j, '}');
	assert_string_equal(as_text(&b),
			    "{\"k\\\"\":\"a\\\"b\\\\c\\u000a\\u0001\\u001f/\xc3\xa9\"}");
	buf_free(&b);
}

static void test_out_of_memory(void **state)
{
	struct buf b;
	struct json j;

	buf_init(&b);
	json_init(&j, &b);
	mem_fail_after(0);
	json_open(&j, NULL, '{');
	mem_fail_after(-1);
	assert_int_equal(j.err, -1);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nesting),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_out_of_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
