/*
 * test_retryparse.c - the pure part of the consumer retry plugin
 * (plugins/retry/retryparse.c): durations in every unit and their
 * refusals, the back-off list (separators, the last step repeating), the
 * delivery-count value, reason codes, dead-letter topics (sanitized group,
 * length bound), the filter of a shared subscription, the record's round
 * trip and its refusal of damaged values, keys, and the heap's order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "retryparse.h"

static uint64_t dur(const char *s)
{
	uint64_t ms = 12345;

	assert_int_equal(retry_parse_duration(s, strlen(s), &ms), 0);
	return ms;
}

static int dur_rc(const char *s)
{
	uint64_t ms;

	return retry_parse_duration(s, strlen(s), &ms);
}

static void test_durations(void **state)
{
	(void)state;
	assert_int_equal(dur("250ms"), 250);
	assert_int_equal(dur("5s"), 5000);
	assert_int_equal(dur("5"), 5000); /* bare: seconds */
	assert_int_equal(dur("2m"), 120000); /* m is minutes, as RocketMQ writes it */
	assert_int_equal(dur("1h"), 3600000);
	assert_int_equal(dur("3d"), 3ull * 86400000);
	assert_int_equal(dur("0"), 0);
	assert_int_equal(dur("0ms"), 0);
	const char *bad[] = { "",   "ms",   "s",  "-1s", "+1s",	 "1.5s", "1 s",
			      "1S", "1sec", "1w", "1y",	 "1mss", "s1",	 "1234567890123456789",
			      " 1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(dur_rc(bad[i]), -1);
	assert_int_equal(dur_rc("999999999999999999d"), -2); /* overflows 64 bits of ms */
	assert_int_equal(dur("999999999999999999ms"), 999999999999999999ull);
}

static void test_uint(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(retry_parse_uint("16", 2, &v), 0);
	assert_int_equal(v, 16);
	assert_int_equal(retry_parse_uint("", 0, &v), -1);
	assert_int_equal(retry_parse_uint("1x", 2, &v), -1);
	assert_int_equal(retry_parse_uint("-1", 2, &v), -1);
	assert_int_equal(retry_parse_uint("1234567890123456789", 19, &v), -1);
}

static void test_backoff_list(void **state)
{
	uint64_t steps[RETRY_STEPS_MAX];
	size_t n;

	(void)state;
	assert_int_equal(retry_parse_backoff("1s,5s,10s", steps, RETRY_STEPS_MAX, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(steps[0], 1000);
	assert_int_equal(steps[2], 10000);
	assert_int_equal(retry_parse_backoff("200ms, 400ms", steps, RETRY_STEPS_MAX, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(steps[1], 400);
	assert_int_equal(retry_parse_backoff("1s 5s\t1m", steps, RETRY_STEPS_MAX, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(steps[2], 60000);
	assert_int_equal(retry_parse_backoff("7", steps, RETRY_STEPS_MAX, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(steps[0], 7000);
	const char *bad[] = { "", " ", ",", "1s,", ",1s", "1s,,5s", "1s, ,5s", "1s,x", "1s;5s" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(retry_parse_backoff(bad[i], steps, RETRY_STEPS_MAX, &n), -1);
	assert_int_equal(retry_parse_backoff("1s,2s,3s", steps, 2, &n), -1); /* too many */
	assert_int_equal(retry_parse_backoff("1s,999999999999999999d", steps, 8, &n), -2);
}

static void test_backoff_steps(void **state)
{
	static const uint64_t steps[] = { 200, 400, 1000 };

	(void)state;
	assert_int_equal(retry_backoff(steps, 3, 1), 200); /* attempt 1 failed: steps[0] */
	assert_int_equal(retry_backoff(steps, 3, 2), 400);
	assert_int_equal(retry_backoff(steps, 3, 3), 1000);
	assert_int_equal(retry_backoff(steps, 3, 4), 1000); /* the last step repeats */
	assert_int_equal(retry_backoff(steps, 3, 1000000), 1000);
	assert_int_equal(retry_backoff(steps, 3, 0), 200); /* cannot happen; the first */
}

static void test_attempt(void **state)
{
	(void)state;
	assert_int_equal(retry_attempt(NULL, 0), 1);
	assert_int_equal(retry_attempt("2", 1), 2);
	assert_int_equal(retry_attempt("16", 2), 16);
	assert_int_equal(retry_attempt("0", 1), 1);
	assert_int_equal(retry_attempt("", 0), 1);
	assert_int_equal(retry_attempt("two", 3), 1);
	assert_int_equal(retry_attempt("-3", 2), 1);
	assert_int_equal(retry_attempt("99999999999", 11), UINT32_MAX - 1);
}

static void test_reason(void **state)
{
	char hex[5];

	(void)state;
	retry_reason_hex(0x80, hex);
	assert_string_equal(hex, "0x80");
	retry_reason_hex(0x87, hex);
	assert_string_equal(hex, "0x87");
	retry_reason_hex(0xa2, hex);
	assert_string_equal(hex, "0xa2");
}

static void test_topics(void **state)
{
	char out[64];
	char *big;

	(void)state;
	assert_int_equal(retry_dlq_topic(out, sizeof(out), "g", "orders/new"), 17);
	assert_string_equal(out, "$DLQ/g/orders/new");
	retry_dlq_topic(out, sizeof(out), "cli+#1", "t");
	assert_string_equal(out, "$DLQ/cli__1/t");
	assert_int_equal(retry_dlq_topic(out, 12, "g", "orders/new"), 0); /* no room */
	big = malloc(RETRY_TOPIC_MAX + 16);
	memset(big, 'a', RETRY_TOPIC_MAX - 7);
	big[RETRY_TOPIC_MAX - 7] = '\0';
	assert_int_equal(retry_dlq_topic(big + 0, 0, "g", "t"), 0);
	{
		char *dst = malloc(RETRY_TOPIC_MAX + 16);

		/* "$DLQ/g/" is 7 bytes: exactly the limit, then one over. */
		assert_int_equal(retry_dlq_topic(dst, RETRY_TOPIC_MAX + 16, "g", big),
				 RETRY_TOPIC_MAX);
		big[RETRY_TOPIC_MAX - 7] = 'a';
		big[RETRY_TOPIC_MAX - 6] = '\0';
		assert_int_equal(retry_dlq_topic(dst, RETRY_TOPIC_MAX + 16, "g", big), 0);
		free(dst);
	}
	free(big);
	assert_true(retry_is_dlq("$DLQ/g/t"));
	assert_false(retry_is_dlq("$DLQx/g"));
	assert_false(retry_is_dlq("DLQ/g/t"));
	assert_string_equal(retry_plain_filter("a/#"), "a/#");
	assert_string_equal(retry_plain_filter("$share/g/$DLQ/#"), "$DLQ/#");
	assert_string_equal(retry_plain_filter("$DLQ/+/t"), "$DLQ/+/t");
	assert_null(retry_plain_filter("$share/g"));
	assert_null(retry_plain_filter("$share//t"));
	assert_null(retry_plain_filter("$share/g/"));
}

static void test_record_round_trip(void **state)
{
	struct retry_rec r = { RETRY_REC_RETRY,
			       RETRY_F_GROUP | RETRY_F_DLQ,
			       0x87,
			       3,
			       UINT64_C(1700000000123),
			       { "grp", 3 },
			       { "orders/#", 8 },
			       { "worker-1", 8 } };
	struct retry_rec d;
	uint8_t buf[256];
	size_t len = retry_rec_size(&r);

	(void)state;
	assert_int_equal(len, RETRY_REC_FIXED + 3 + 8 + 8);
	assert_int_equal(retry_rec_encode(&r, buf), 0);
	assert_int_equal(retry_rec_decode(buf, len, &d), 0);
	assert_int_equal(d.kind, RETRY_REC_RETRY);
	assert_int_equal(d.flags, RETRY_F_GROUP | RETRY_F_DLQ);
	assert_int_equal(d.reason, 0x87);
	assert_int_equal(d.attempt, 3);
	assert_true(d.when == UINT64_C(1700000000123));
	assert_int_equal(d.target.len, 3);
	assert_memory_equal(d.target.p, "grp", 3);
	assert_memory_equal(d.filter.p, "orders/#", 8);
	assert_memory_equal(d.consumer.p, "worker-1", 8);
	/* Empty strings, a dead letter. */
	r.kind = RETRY_REC_DEAD;
	r.filter.len = r.consumer.len = 0;
	len = retry_rec_size(&r);
	assert_int_equal(retry_rec_encode(&r, buf), 0);
	assert_int_equal(retry_rec_decode(buf, len, &d), 0);
	assert_int_equal(d.kind, RETRY_REC_DEAD);
	assert_int_equal(d.filter.len, 0);
	assert_int_equal(d.consumer.len, 0);
}

static void test_record_damaged(void **state)
{
	struct retry_rec r = { RETRY_REC_RETRY, 0, 0x80, 2, 5, { "c", 1 }, { "", 0 }, { "c", 1 } };
	struct retry_rec d;
	uint8_t buf[64];
	size_t len = retry_rec_size(&r), i;

	(void)state;
	assert_int_equal(retry_rec_encode(&r, buf), 0);
	for (i = 0; i < len; i++) /* every truncation */
		assert_int_equal(retry_rec_decode(buf, i, &d), -1);
	assert_int_equal(retry_rec_decode(buf, len + 1, &d), -1); /* trailing byte */
	buf[0] = 2; /* unknown version */
	assert_int_equal(retry_rec_decode(buf, len, &d), -1);
	buf[0] = 1;
	buf[1] = 9; /* unknown kind */
	assert_int_equal(retry_rec_decode(buf, len, &d), -1);
	buf[1] = RETRY_REC_RETRY;
	buf[16] = 0xff; /* a string length past the end */
	assert_int_equal(retry_rec_decode(buf, len, &d), -1);
	r.target.len = 70000;
	assert_int_equal(retry_rec_encode(&r, buf), -1);
}

static void test_keys(void **state)
{
	uint8_t a[RETRY_KEY_LEN], b[RETRY_KEY_LEN];
	uint64_t seq;

	(void)state;
	retry_key(a, RETRY_PFX_RETRY, 255);
	retry_key(b, RETRY_PFX_RETRY, 256);
	assert_int_equal(a[0], 'r');
	assert_true(memcmp(a, b, RETRY_KEY_LEN) < 0); /* rows sort in seq order */
	assert_true(retry_key_seq(b, sizeof(b), &seq));
	assert_int_equal(seq, 256);
	assert_false(retry_key_seq(b, 8, &seq));
	retry_key(a, RETRY_PFX_MSG, UINT64_MAX);
	assert_int_equal(a[0], 'm');
	assert_true(retry_key_seq(a, sizeof(a), &seq));
	assert_true(seq == UINT64_MAX);
}

static void test_heap_order(void **state)
{
	struct retry_heap h = { 0 };
	struct retry_ent e;
	uint64_t last_due = 0, last_seq = 0;
	size_t i;

	(void)state;
	assert_false(retry_heap_peek(&h, &e));
	for (i = 0; i < 1000; i++) {
		struct retry_ent in = { (i * 7919) % 97, i, NULL };

		assert_int_equal(retry_heap_push(&h, in), 0);
	}
	for (i = 0; i < 1000; i++) {
		assert_true(retry_heap_peek(&h, &e));
		assert_true(retry_heap_pop(&h, &e));
		assert_true(e.due > last_due || (e.due == last_due && e.seq >= last_seq));
		last_due = e.due;
		last_seq = e.seq;
	}
	assert_false(retry_heap_pop(&h, &e));
	retry_heap_free(&h);
}

static int fail_next;

static void *failing_alloc(size_t n)
{
	return fail_next ? NULL : malloc(n);
}

static void test_heap_out_of_memory(void **state)
{
	struct retry_heap h = { 0 };
	struct retry_ent e = { 1, 1, NULL };
	size_t i;

	(void)state;
	retry_set_alloc(failing_alloc, free);
	for (i = 0; i < 64; i++)
		assert_int_equal(retry_heap_push(&h, e), 0);
	fail_next = 1;
	assert_int_equal(retry_heap_push(&h, e), -1); /* growing fails: nothing changes */
	assert_int_equal(h.n, 64);
	fail_next = 0;
	assert_int_equal(retry_heap_push(&h, e), 0);
	retry_heap_free(&h);
	retry_set_alloc(malloc, free);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations),      cmocka_unit_test(test_uint),
		cmocka_unit_test(test_backoff_list),   cmocka_unit_test(test_backoff_steps),
		cmocka_unit_test(test_attempt),	       cmocka_unit_test(test_reason),
		cmocka_unit_test(test_topics),	       cmocka_unit_test(test_record_round_trip),
		cmocka_unit_test(test_record_damaged), cmocka_unit_test(test_keys),
		cmocka_unit_test(test_heap_order),     cmocka_unit_test(test_heap_out_of_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
