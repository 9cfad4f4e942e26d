/*
 * test_txnparse.c - the pure part of the transactional topics plugin
 * (plugins/txn/txnparse.c): every topic form, good and bad; ids, groups,
 * numbers and durations; the record's round trip and its refusal of damaged
 * values; the keys and the range that holds one transaction's messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "txnparse.h"

static void expect_kind(const char *topic, enum txn_kind kind, const char *id, const char *target)
{
	struct txn_topic tp;

	txn_parse_topic(topic, &tp);
	assert_int_equal(tp.kind, kind);
	if (id) {
		assert_int_equal(tp.id_len, strlen(id));
		assert_memory_equal(tp.id, id, tp.id_len);
	}
	if (target)
		assert_string_equal(tp.target, target);
}

static void expect_bad(const char *topic)
{
	struct txn_topic tp;

	txn_parse_topic(topic, &tp);
	assert_int_equal(tp.kind, TXN_BAD);
	assert_int_equal(tp.reason, TXN_RC_TOPIC_INVALID);
	assert_non_null(tp.why);
}

static void test_good_forms(void **state)
{
	(void)state;
	expect_kind("$txn/half/o-1/orders/created", TXN_HALF, "o-1", "orders/created");
	expect_kind("$txn/half/A.b_C-9/x", TXN_HALF, "A.b_C-9", "x");
	expect_kind("$txn/half/t/a//b/", TXN_HALF, "t", "a//b/");
	expect_kind("$txn/half/t/$delayed/1800/orders/close", TXN_HALF, "t",
		    "$delayed/1800/orders/close");
	expect_kind("$txn/commit/o-1", TXN_COMMIT, "o-1", NULL);
	expect_kind("$txn/rollback/o-1", TXN_ROLLBACK, "o-1", NULL);
}

static void test_not_ours(void **state)
{
	(void)state;
	expect_kind("orders/created", TXN_NONE, NULL, NULL);
	expect_kind("$txnx/half/a/b", TXN_NONE, NULL, NULL);
	expect_kind("txn/half/a/b", TXN_NONE, NULL, NULL);
	expect_kind("$SYS/broker/txn/open", TXN_NONE, NULL, NULL);
	expect_kind("$delayed/5/x", TXN_NONE, NULL, NULL);
}

static void test_bad_forms(void **state)
{
	char id65[80];

	(void)state;
	expect_bad("$txn");
	expect_bad("$txn/");
	expect_bad("$txn/check/g");
	expect_bad("$txn/discarded/g");
	expect_bad("$txn/half");
	expect_bad("$txn/half/");
	expect_bad("$txn/half/id");
	expect_bad("$txn/half/id/");
	expect_bad("$txn/half//x");
	expect_bad("$txn/half/a b/x");
	expect_bad("$txn/half/a:b/x");
	expect_bad("$txn/half/id/$SYS/x");
	expect_bad("$txn/half/id/$txn/commit/x");
	expect_bad("$txn/half/id/$delayed");
	expect_bad("$txn/commit");
	expect_bad("$txn/commit/");
	expect_bad("$txn/commit/a/b");
	expect_bad("$txn/commit/a/");
	expect_bad("$txn/rollback/");
	expect_bad("$txn/rollback/a/b");
	expect_bad("$txn/Commit/a");
	memset(id65, 'a', 65);
	memcpy(id65, "$txn/commit/", 12);
	id65[12 + 65] = '\0';
	memset(id65 + 12, 'i', 65);
	expect_bad(id65);
	id65[12 + 64] = '\0'; /* 64 characters: the longest id */
	expect_kind(id65, TXN_COMMIT, NULL, NULL);
}

static void test_ids_and_groups(void **state)
{
	(void)state;
	assert_true(txn_id_valid("a", 1));
	assert_false(txn_id_valid("", 0));
	assert_false(txn_id_valid("a/b", 3));
	assert_false(txn_id_valid("a+", 2));
	assert_false(txn_id_valid("\xc3\xa9", 2));
	assert_true(txn_group_valid("svc/signup", 10));
	assert_true(txn_group_valid("client-1", 8));
	assert_false(txn_group_valid("", 0));
	assert_false(txn_group_valid("a+b", 3));
	assert_false(txn_group_valid("a#", 2));
}

static void test_numbers(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(txn_parse_uint("0", 1, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(txn_parse_uint("1000", 4, &v), 0);
	assert_int_equal(v, 1000);
	assert_int_equal(txn_parse_uint("", 0, &v), -1);
	assert_int_equal(txn_parse_uint("-1", 2, &v), -1);
	assert_int_equal(txn_parse_uint("1x", 2, &v), -1);
	assert_int_equal(txn_parse_uint("1234567890123456789", 19, &v), -1);
	assert_int_equal(txn_parse_duration("6", &v), 0);
	assert_int_equal(v, 6000);
	assert_int_equal(txn_parse_duration("250ms", &v), 0);
	assert_int_equal(v, 250);
	assert_int_equal(txn_parse_duration("30s", &v), 0);
	assert_int_equal(v, 30000);
	assert_int_equal(txn_parse_duration("1h", &v), 0);
	assert_int_equal(v, 3600000);
	assert_int_equal(txn_parse_duration("2d", &v), 0);
	assert_int_equal(v, 172800000);
	assert_int_equal(txn_parse_duration("", &v), -1);
	assert_int_equal(txn_parse_duration("s", &v), -1);
	assert_int_equal(txn_parse_duration("5m", &v), -1);
	assert_int_equal(txn_parse_duration("5 s", &v), -1);
	assert_int_equal(txn_parse_duration("1.5s", &v), -1);
	assert_int_equal(txn_parse_duration("1234567890123s", &v), -1);
}

static void fill(struct txn_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->state = TXN_COMMITTING;
	r->count = 10;
	r->routed = 3;
	r->checks = 2;
	r->opened_ms = UINT64_C(1700000000000);
	r->last_ms = UINT64_C(1700000000500);
	r->check_after_ms = 6000;
	r->resolved_ms = UINT64_C(1700000001000);
	r->owner = "producer-1";
	r->owner_len = 10;
	r->group = "signup";
	r->group_len = 6;
}

static void test_record_round_trip(void **state)
{
	struct txn_rec r, d;
	uint8_t v[128];

	(void)state;
	fill(&r);
	assert_int_equal(txn_rec_size(&r), TXN_REC_FIXED + 16);
	txn_rec_encode(&r, v);
	assert_int_equal(txn_rec_decode(v, txn_rec_size(&r), &d), 0);
	assert_int_equal(d.state, r.state);
	assert_int_equal(d.count, 10);
	assert_int_equal(d.routed, 3);
	assert_int_equal(d.checks, 2);
	assert_true(d.opened_ms == r.opened_ms && d.last_ms == r.last_ms);
	assert_true(d.check_after_ms == 6000 && d.resolved_ms == r.resolved_ms);
	assert_int_equal(d.owner_len, 10);
	assert_memory_equal(d.owner, "producer-1", 10);
	assert_int_equal(d.group_len, 6);
	assert_memory_equal(d.group, "signup", 6);
}

static void test_record_damaged(void **state)
{
	struct txn_rec r, d;
	uint8_t v[128];
	size_t n;

	(void)state;
	fill(&r);
	txn_rec_encode(&r, v);
	n = txn_rec_size(&r);
	for (size_t len = 0; len < n; len++)
		assert_int_equal(txn_rec_decode(v, len, &d), -1); /* every truncation */
	assert_int_equal(txn_rec_decode(v, n + 1, &d), -1);
	v[0] = 9; /* unknown version */
	assert_int_equal(txn_rec_decode(v, n, &d), -1);
	txn_rec_encode(&r, v);
	v[1] = 0; /* no such state */
	assert_int_equal(txn_rec_decode(v, n, &d), -1);
	txn_rec_encode(&r, v);
	v[46] = 200; /* owner longer than the value */
	assert_int_equal(txn_rec_decode(v, n, &d), -1);
	r.routed = 11; /* more routed than held */
	txn_rec_encode(&r, v);
	assert_int_equal(txn_rec_decode(v, n, &d), -1);
}

static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : (al > bl) - (al < bl);
}

static bool in_range(const uint8_t *k, size_t kl, const char *id)
{
	uint8_t lo[TXN_KEY_MAX], hi[TXN_KEY_MAX];
	size_t lol, hil;

	txn_key_msg_range(id, strlen(id), lo, &lol, hi, &hil);
	return key_cmp(lo, lol, k, kl) <= 0 && key_cmp(k, kl, hi, hil) < 0;
}

static void test_keys(void **state)
{
	uint8_t k[TXN_KEY_MAX];
	size_t n;

	(void)state;
	n = txn_key_rec(k, "abc", 3);
	assert_int_equal(n, 4);
	assert_memory_equal(k, "tabc", 4);
	n = txn_key_msg(k, "abc", 3, 0x01020304);
	assert_int_equal(n, 9);
	assert_memory_equal(k, "mabc/\x01\x02\x03\x04", 9);
	assert_true(in_range(k, n, "abc"));
	n = txn_key_msg(k, "abc", 3, 0xffffffff);
	assert_true(in_range(k, n, "abc"));
	/* Neighbouring ids are never in another id's range. */
	assert_false(in_range(k, n, "ab"));
	n = txn_key_msg(k, "abc.x", 5, 0);
	assert_false(in_range(k, n, "abc"));
	n = txn_key_msg(k, "abc-", 4, 0);
	assert_false(in_range(k, n, "abc"));
	n = txn_key_msg(k, "abc0", 4, 0);
	assert_false(in_range(k, n, "abc"));
	n = txn_key_msg(k, "abcz", 4, 0);
	assert_false(in_range(k, n, "abc"));
	/* Messages sort in the order they were accepted. */
	{
		uint8_t a[TXN_KEY_MAX], b[TXN_KEY_MAX];
		size_t al = txn_key_msg(a, "t", 1, 255), bl = txn_key_msg(b, "t", 1, 256);

		assert_true(key_cmp(a, al, b, bl) < 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_forms),	  cmocka_unit_test(test_not_ours),
		cmocka_unit_test(test_bad_forms),	  cmocka_unit_test(test_ids_and_groups),
		cmocka_unit_test(test_numbers),		  cmocka_unit_test(test_record_round_trip),
		cmocka_unit_test(test_record_damaged), cmocka_unit_test(test_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
