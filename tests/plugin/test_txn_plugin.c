/*
 * test_txn_plugin.c - the transactional topics plugin (plugins/txn/txn.c
 * with txnparse.c) driven through its entry points against the fake host
 * (fake_host.c): no broker, fake time, a fake store that survives a reload.
 *
 * Covered, as a state machine: half messages stored and invisible, commit
 * delivering every message in order at once from the cache of recent half
 * messages or, past its 16 MB or after a restart, once all are read back
 * from the store, each on its
 * own topic with its own QoS, retain flag, payload and properties (less
 * producer-group and check-after-ms), expiry counted from the commit; the
 * txn-count check; rollback; idempotent outcomes and the refusals of a
 * resolved or unknown transaction; membership (owner, a subscription to
 * $txn/check/{group}, plain or shared) for half, commit and rollback;
 * check-back timing, numbering, the per-transaction check-after-ms, a new
 * half message starting the checks over, discard after check_max with
 * its notice and log line; both quotas; outcomes forgotten after
 * remember; $SYS statistics; restarts (check timing and counts continue, a
 * commit stored but not delivered before a crash is delivered once after
 * it, outcomes remembered). Failures: a store write or an allocation that
 * fails refuses the PUBLISH with 0x80 and changes nothing; a failing
 * route is retried and delivers nothing twice; out of memory at every
 * allocation of a half message, a commit and its delivery. Every test ends
 * with finish(): no message and no block left, no misuse of the host.
 *
 * Last, the fake's own calls appended after API 2: msg_add_user_props and
 * subscribed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_host.h"
#include "plugin_harness.h"
#include "txnparse.h"

#define H fake_host()

/* The defaults, but $SYS only when a test asks: no statistics timer. */
static const struct sp_opt opts[] = { { "sys_interval", "0" } };

/* --- helpers -------------------------------------------------------------- */

static int up(void)
{
	return up_with(opts, 1);
}

/* A SIGKILL: no STOP, the reads and timers vanish, the store keeps what was written. */
static void crash(void)
{
	fake_unload(sluice_plugin_cleanup);
	assert_int_equal(fake_live_blocks(), 0);
}

static void restart_with(const struct sp_opt *o, int n)
{
	down();
	assert_int_equal(up_with(o, n), 0);
}

static void restart(void)
{
	restart_with(opts, 1);
}

/* A half message of transaction id for topic; user property key, value, ..., NULL. */
static enum sp_verdict half(const char *id, const char *topic, const char *payload, int qos, ...)
{
	const char *pairs[16];
	struct sp_msg_spec spec;
	struct sp_msg *m;
	char t[256];
	size_t n = 0;
	enum sp_verdict v;
	va_list ap;
	const char *k;

	va_start(ap, qos);
	while ((k = va_arg(ap, const char *)) && n < 8) {
		pairs[2 * n] = k;
		pairs[2 * n + 1] = va_arg(ap, const char *);
		n++;
	}
	va_end(ap);
	snprintf(t, sizeof(t), "$txn/half/%s/%s", id, topic);
	memset(&spec, 0, sizeof(spec));
	spec.topic = t;
	spec.topic_len = strlen(t);
	spec.payload = payload;
	spec.payload_len = strlen(payload);
	spec.qos = (uint8_t)qos;
	m = fake_msg_build(&spec, pairs, n);
	v = fake_publish_msg(m);
	H->msg_unref(m);
	return v;
}

/* $txn/{verb}/{id}, with an optional txn-count (NULL: none). */
static enum sp_verdict resolve(const char *verb, const char *id, const char *count)
{
	char t[128];

	snprintf(t, sizeof(t), "$txn/%s/%s", verb, id);
	if (count)
		return fake_publish(t, "", 1, "txn-count", count, NULL);
	return fake_publish(t, "", 1, NULL);
}

static enum sp_verdict commit(const char *id)
{
	return resolve("commit", id, NULL);
}

static enum sp_verdict rollback(const char *id)
{
	return resolve("rollback", id, NULL);
}

/* The last PUBLISH was refused with reason and a reason string containing why. */
static void refused(uint8_t reason, const char *why)
{
	const struct sp_result *r = fake_result();

	assert_int_equal(r->verdict, SP_REJECT);
	assert_int_equal(r->reason, reason);
	if (why) {
		assert_non_null(r->reason_string);
		assert_non_null(strstr(r->reason_string, why));
	}
}

static bool has_prefix(const struct sp_msg *m, const char *prefix)
{
	return !strncmp(H->msg_topic(m), prefix, strlen(prefix));
}

/* Routed messages that are neither $SYS statistics nor $txn/ notices. */
static size_t delivered(void)
{
	size_t i, n = 0;

	for (i = 0; i < fake_routed_count(); i++)
		n += !has_prefix(fake_routed(i), "$SYS/") && !has_prefix(fake_routed(i), "$txn/");
	return n;
}

static struct sp_msg *delivered_at(size_t i)
{
	size_t j;

	for (j = 0; j < fake_routed_count(); j++) {
		struct sp_msg *m = fake_routed(j);

		if (has_prefix(m, "$SYS/") || has_prefix(m, "$txn/"))
			continue;
		if (!i--)
			return m;
	}
	return NULL;
}

/* The routed messages on topic, in order; the n-th (0-based) or NULL. */
static struct sp_msg *routed_on(const char *topic, size_t nth)
{
	for (size_t j = 0; j < fake_routed_count(); j++)
		if (!strcmp(H->msg_topic(fake_routed(j)), topic) && !nth--)
			return fake_routed(j);
	return NULL;
}

static size_t count_on(const char *topic)
{
	size_t n = 0;

	while (routed_on(topic, n))
		n++;
	return n;
}

/* The state the record of id says, or -1 when there is none. */
static int rec_state(const char *id)
{
	const void *k, *v;
	size_t kl, vl, i;
	struct txn_rec r;

	for (i = 0; !fake_store_at(FAKE_KV, i, &k, &kl, &v, &vl); i++)
		if (kl == 1 + strlen(id) && !memcmp(k, "t", 1) &&
		    !memcmp((const char *)k + 1, id, kl - 1))
			return txn_rec_decode(v, vl, &r) ? -2 : r.state;
	return -1;
}

static uint32_t rec_checks(const char *id)
{
	const void *k, *v;
	size_t kl, vl, i;
	struct txn_rec r;

	for (i = 0; !fake_store_at(FAKE_KV, i, &k, &kl, &v, &vl); i++)
		if (kl == 1 + strlen(id) && !memcmp((const char *)k + 1, id, kl - 1) &&
		    !txn_rec_decode(v, vl, &r))
			return r.checks;
	return UINT32_MAX;
}

/* The value of the $SYS/broker/txn/{leaf} routed last, or -1. */
static long long sys_value(const char *leaf)
{
	char topic[64];
	long long v = -1;
	size_t len;

	snprintf(topic, sizeof(topic), "$SYS/broker/txn/%s", leaf);
	for (size_t j = 0; j < fake_routed_count(); j++) {
		struct sp_msg *m = fake_routed(j);
		const char *p;
		char text[32];

		if (strcmp(H->msg_topic(m), topic))
			continue;
		p = H->msg_payload(m, &len);
		assert_true(len < sizeof(text));
		memcpy(text, p, len);
		text[len] = '\0';
		v = strtoll(text, NULL, 10);
		assert_true(H->msg_retain(m));
	}
	return v;
}

/* --- half, commit, rollback ----------------------------------------------- */

static void test_half_invisible_commit_in_order(void **state)
{
	struct sp_msg *m;

	(void)state;
	assert_int_equal(half("u42", "users/registered", "one", 1, "producer-group", "signup",
			      "check-after-ms", "60000", "trace", "a", NULL),
			 SP_TAKE);
	assert_int_equal(half("u42", "mail/welcome", "two", 2, NULL), SP_TAKE);
	assert_int_equal(half("u42", "stats/last", "three", 0, NULL), SP_TAKE);
	assert_int_equal(fake_routed_count(), 0);
	assert_int_equal(fake_store_count(FAKE_COLD), 3);
	assert_int_equal(fake_store_count(FAKE_KV), 1);
	assert_int_equal(fake_store_grep(FAKE_KV, "three", 5), 0); /* payloads are cold */
	assert_int_equal(rec_state("u42"), TXN_OPEN);

	/* All in memory: the outcome and the messages in the commit's turn (its PUBACK after). */
	assert_int_equal(commit("u42"), SP_TAKE);
	assert_int_equal(rec_state("u42"), TXN_COMMITTED);
	assert_int_equal(fake_cold_reads(), 0);
	assert_int_equal(delivered(), 3);
	m = delivered_at(0);
	assert_string_equal(H->msg_topic(m), "users/registered");
	assert_true(fake_msg_payload_is(m, "one"));
	assert_int_equal(H->msg_qos(m), 1);
	assert_null(fake_msg_prop(m, "producer-group"));
	assert_null(fake_msg_prop(m, "check-after-ms"));
	assert_string_equal(fake_msg_prop(m, "trace"), "a");
	assert_string_equal(H->msg_sender(m), "client");
	m = delivered_at(1);
	assert_string_equal(H->msg_topic(m), "mail/welcome");
	assert_int_equal(H->msg_qos(m), 2);
	m = delivered_at(2);
	assert_string_equal(H->msg_topic(m), "stats/last");
	assert_true(fake_msg_payload_is(m, "three"));
	assert_int_equal(H->msg_qos(m), 0);
	assert_int_equal(rec_state("u42"), TXN_COMMITTED);
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	finish();
}

static void test_retain_and_expiry_from_commit(void **state)
{
	struct sp_msg_spec spec;
	struct sp_msg *m;
	const char *t = "$txn/half/r1/config/current";

	(void)state;
	memset(&spec, 0, sizeof(spec));
	spec.topic = t;
	spec.topic_len = strlen(t);
	spec.payload = "v2";
	spec.payload_len = 2;
	spec.qos = 1;
	spec.retain = true;
	spec.expiry_s = 10;
	m = fake_msg_build(&spec, NULL, 0);
	assert_int_equal(fake_publish_msg(m), SP_TAKE);
	H->msg_unref(m);
	fake_advance(4000); /* before the first check (6 s) */
	assert_int_equal(commit("r1"), SP_TAKE);
	fake_run_pending();
	assert_int_equal(delivered(), 1);
	m = delivered_at(0);
	assert_true(H->msg_retain(m));
	assert_int_equal(H->msg_expiry(m), fake_now() + 10000);
	finish();
}

static void test_txn_count(void **state)
{
	(void)state;
	assert_int_equal(half("c1", "a", "1", 1, NULL), SP_TAKE);
	assert_int_equal(half("c1", "b", "2", 1, NULL), SP_TAKE);
	assert_int_equal(resolve("commit", "c1", "3"), SP_REJECT);
	refused(0x83, "transaction holds 2 messages");
	assert_int_equal(resolve("commit", "c1", "two"), SP_REJECT);
	refused(0x83, "txn-count is not a number");
	assert_int_equal(resolve("commit", "c1", ""), SP_REJECT);
	refused(0x83, "not a number");
	fake_run_pending();
	assert_int_equal(delivered(), 0);
	assert_int_equal(rec_state("c1"), TXN_OPEN);
	assert_int_equal(resolve("commit", "c1", "2"), SP_TAKE);
	fake_run_pending();
	assert_int_equal(delivered(), 2);
	finish();
}

static void test_rollback_drops(void **state)
{
	(void)state;
	assert_int_equal(half("r", "a", "1", 1, NULL), SP_TAKE);
	assert_int_equal(half("r", "b", "2", 1, NULL), SP_TAKE);
	assert_int_equal(rollback("r"), SP_TAKE);
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	assert_int_equal(rec_state("r"), TXN_ROLLED_BACK);
	fake_advance(120000); /* no check-back of a resolved transaction */
	assert_int_equal(fake_routed_count(), 0);
	finish();
}

static void test_idempotent_outcomes(void **state)
{
	(void)state;
	assert_int_equal(half("ok", "a", "1", 1, NULL), SP_TAKE);
	assert_int_equal(commit("ok"), SP_TAKE);
	fake_run_pending();
	assert_int_equal(delivered(), 1);
	assert_int_equal(commit("ok"), SP_TAKE); /* a retry after a lost PUBACK */
	assert_int_equal(resolve("commit", "ok", "1"), SP_TAKE);
	fake_run_pending();
	assert_int_equal(delivered(), 1);
	assert_int_equal(rollback("ok"), SP_REJECT);
	refused(0x83, "transaction was committed");
	assert_int_equal(half("ok", "a", "again", 1, NULL), SP_REJECT);
	refused(0x83, "transaction was committed");

	assert_int_equal(half("no", "a", "1", 1, NULL), SP_TAKE);
	assert_int_equal(rollback("no"), SP_TAKE);
	assert_int_equal(rollback("no"), SP_TAKE);
	assert_int_equal(commit("no"), SP_REJECT);
	refused(0x83, "transaction was rolled back");
	assert_int_equal(half("no", "a", "1", 1, NULL), SP_REJECT);
	refused(0x83, "transaction was rolled back");

	assert_int_equal(commit("never"), SP_REJECT);
	refused(0x83, "unknown transaction");
	assert_int_equal(rollback("never"), SP_REJECT);
	refused(0x83, "unknown transaction");
	fake_run_pending();
	assert_int_equal(delivered(), 1);
	finish();
}

/* A commit answered while its reads are outstanding is a retry: still one delivery. */
static void test_commit_repeated_while_reading(void **state)
{
	(void)state;
	assert_int_equal(half("w", "a", "1", 1, NULL), SP_TAKE);
	assert_int_equal(commit("w"), SP_TAKE);
	assert_int_equal(commit("w"), SP_TAKE);
	assert_int_equal(rollback("w"), SP_REJECT);
	refused(0x83, "transaction was committed");
	fake_run_pending();
	assert_int_equal(delivered(), 1);
	finish();
}

static void test_other_topics_pass(void **state)
{
	(void)state;
	assert_int_equal(fake_publish("orders/1", "x", 1, NULL), SP_PASS);
	assert_int_equal(fake_publish("txn/half/a/b", "x", 1, NULL), SP_PASS);
	assert_int_equal(fake_publish("$delayed/5/a", "x", 1, NULL), SP_PASS);
	assert_int_equal(fake_store_count(FAKE_KV), 0);
	finish();
}

static void test_bad_requests(void **state)
{
	static const char *const bad_topics[] = {
		"$txn",
		"$txn/",
		"$txn/half/a",
		"$txn/half/a/",
		"$txn/half/bad id/t",
		"$txn/commit/",
		"$txn/commit/a/b",
		"$txn/check/G",
		"$txn/discarded/G",
		"$txn/other/a",
		"$txn/half/a/$SYS/x",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_topics) / sizeof(*bad_topics); i++) {
		assert_int_equal(fake_publish(bad_topics[i], "x", 1, NULL), SP_REJECT);
		refused(0x90, NULL);
		assert_non_null(fake_result()->reason_string);
	}
	assert_int_equal(half("g", "t", "x", 1, "producer-group", "a/+", NULL), SP_REJECT);
	refused(0x83, "producer group");
	assert_int_equal(half("g", "t", "x", 1, "producer-group", "", NULL), SP_REJECT);
	refused(0x83, "producer group");
	assert_int_equal(half("g", "t", "x", 1, "check-after-ms", "0", NULL), SP_REJECT);
	refused(0x83, "check-after-ms");
	assert_int_equal(half("g", "t", "x", 1, "check-after-ms", "2592000001", NULL), SP_REJECT);
	refused(0x83, "check-after-ms");
	assert_int_equal(half("g", "t", "x", 1, "check-after-ms", "soon", NULL), SP_REJECT);
	refused(0x83, "check-after-ms");
	/* Nothing was opened by any of them. */
	assert_int_equal(fake_store_count(FAKE_KV), 0);
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	assert_int_equal(commit("g"), SP_REJECT);
	refused(0x83, "unknown transaction");
	finish();
}

static void test_delayed_target_kept(void **state)
{
	(void)state;
	assert_int_equal(half("d", "$delayed/1800/orders/close", "o1", 1, NULL), SP_TAKE);
	assert_int_equal(commit("d"), SP_TAKE);
	fake_run_pending();
	assert_non_null(routed_on("$delayed/1800/orders/close", 0));
	finish();
}

/* --- producer groups ------------------------------------------------------ */

static void test_members_only(void **state)
{
	(void)state;
	fake_set_client("p1", 5);
	assert_int_equal(half("m", "a", "1", 1, "producer-group", "svc", NULL), SP_TAKE);
	fake_set_client("p2", 5);
	assert_int_equal(half("m", "a", "2", 1, NULL), SP_REJECT);
	refused(0x87, NULL);
	assert_int_equal(commit("m"), SP_REJECT);
	refused(0x87, NULL);
	assert_int_equal(rollback("m"), SP_REJECT);
	refused(0x87, NULL);
	/* A subscription elsewhere does not make a member. */
	fake_subscribe("p2", "$txn/check/other");
	assert_int_equal(commit("m"), SP_REJECT);
	refused(0x87, NULL);
	assert_int_equal(rec_state("m"), TXN_OPEN);
	assert_int_equal(fake_store_count(FAKE_COLD), 1);
	/* A member through a shared subscription adds and commits. */
	fake_subscribe("p2", "$share/x/$txn/check/svc");
	assert_int_equal(half("m", "b", "2", 1, NULL), SP_TAKE);
	assert_int_equal(commit("m"), SP_TAKE);
	fake_run_pending();
	assert_int_equal(delivered(), 2);
	/* Not a member any more: even a retried outcome is refused. */
	fake_unsubscribe("p2");
	assert_int_equal(commit("m"), SP_REJECT);
	refused(0x87, NULL);
	finish();
}

/* Without producer-group the group is the owner's client id (3.1.1 clients). */
static void test_group_defaults_to_owner(void **state)
{
	struct sp_msg *m;

	(void)state;
	fake_set_client("legacy", 4);
	assert_int_equal(half("l", "a", "1", 1, NULL), SP_TAKE);
	fake_set_client("helper", 4);
	fake_subscribe("helper", "$txn/check/legacy");
	fake_advance(6000);
	m = routed_on("$txn/check/legacy", 0);
	assert_non_null(m);
	assert_string_equal(fake_msg_prop(m, "owner"), "legacy");
	assert_int_equal(rollback("l"), SP_TAKE);
	finish();
}

/* --- check-back ----------------------------------------------------------- */

static void test_check_back(void **state)
{
	struct sp_msg *m;

	(void)state;
	fake_set_client("p1", 5);
	assert_int_equal(half("cb", "a", "1", 1, "producer-group", "svc", NULL), SP_TAKE);
	fake_advance(3000);
	assert_int_equal(half("cb", "b", "2", 1, NULL), SP_TAKE); /* counts from the last */
	fake_advance(5999);
	assert_null(routed_on("$txn/check/svc", 0));
	fake_advance(1);
	m = routed_on("$txn/check/svc", 0);
	assert_non_null(m);
	assert_int_equal(H->msg_qos(m), 1);
	assert_false(H->msg_retain(m));
	assert_true(fake_msg_payload_is(m, "cb"));
	assert_string_equal(fake_msg_prop(m, "txn-id"), "cb");
	assert_string_equal(fake_msg_prop(m, "check"), "1");
	assert_string_equal(fake_msg_prop(m, "owner"), "p1");
	assert_string_equal(fake_msg_prop(m, "messages"), "2");
	assert_int_equal(rec_checks("cb"), 1);
	fake_advance(29999);
	assert_null(routed_on("$txn/check/svc", 1));
	fake_advance(1);
	m = routed_on("$txn/check/svc", 1);
	assert_non_null(m);
	assert_string_equal(fake_msg_prop(m, "check"), "2");
	/* A new half message: the producer is alive, checks start over. */
	assert_int_equal(half("cb", "c", "3", 1, NULL), SP_TAKE);
	assert_int_equal(rec_checks("cb"), 0);
	fake_advance(6000);
	m = routed_on("$txn/check/svc", 2);
	assert_non_null(m);
	assert_string_equal(fake_msg_prop(m, "check"), "1");
	assert_string_equal(fake_msg_prop(m, "messages"), "3");
	/* Another member answers. */
	fake_set_client("p2-restarted", 5);
	fake_subscribe("p2-restarted", "$txn/check/svc");
	assert_int_equal(commit("cb"), SP_TAKE);
	fake_advance(100000);
	assert_int_equal(delivered(), 3);
	assert_int_equal(count_on("$txn/check/svc"), 3);
	finish();
}

static void test_check_after_per_transaction(void **state)
{
	(void)state;
	assert_int_equal(half("q", "a", "1", 1, "check-after-ms", "250", NULL), SP_TAKE);
	fake_advance(249);
	assert_int_equal(count_on("$txn/check/client"), 0);
	fake_advance(1);
	assert_int_equal(count_on("$txn/check/client"), 1);
	/* The interval is the plugin's. */
	fake_advance(29999);
	assert_int_equal(count_on("$txn/check/client"), 1);
	fake_advance(1);
	assert_int_equal(count_on("$txn/check/client"), 2);
	finish();
}

static void test_discard_after_check_max(void **state)
{
	static const struct sp_opt o[] = {
		{ "sys_interval", "0" },
		{ "check_after", "1s" },
		{ "check_interval", "2s" },
		{ "check_max", "2" },
	};
	struct sp_msg *m;

	(void)state;
	restart_with(o, 4);
	fake_set_client("silent", 5);
	assert_int_equal(half("gone", "a", "1", 1, "producer-group", "svc", NULL), SP_TAKE);
	assert_int_equal(half("gone", "b", "2", 1, NULL), SP_TAKE);
	fake_advance(1000 + 2000);
	assert_int_equal(count_on("$txn/check/svc"), 2);
	assert_null(routed_on("$txn/discarded/svc", 0));
	assert_int_equal(rec_state("gone"), TXN_OPEN);
	fake_advance(1999);
	assert_null(routed_on("$txn/discarded/svc", 0));
	fake_advance(1);
	m = routed_on("$txn/discarded/svc", 0);
	assert_non_null(m);
	assert_true(fake_msg_payload_is(m, "gone"));
	assert_string_equal(fake_msg_prop(m, "txn-id"), "gone");
	assert_string_equal(fake_msg_prop(m, "owner"), "silent");
	assert_string_equal(fake_msg_prop(m, "messages"), "2");
	assert_string_equal(fake_msg_prop(m, "check"), "2");
	assert_int_equal(count_on("$txn/check/svc"), 2);
	assert_int_equal(fake_log_grep("'gone' rolled back after 2 unanswered check(s): owner "
				       "'silent', group 'svc', 2 message(s)"),
			 1);
	for (size_t i = 0; i < fake_log_count(); i++)
		if (strstr(fake_log_line(i), "'gone' rolled back"))
			assert_int_equal(fake_log_level(i), SP_LOG_WARNING);
	assert_int_equal(rec_state("gone"), TXN_ROLLED_BACK);
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	assert_int_equal(delivered(), 0);
	assert_int_equal(commit("gone"), SP_REJECT);
	refused(0x83, "transaction was rolled back");
	finish();
}

/* --- quotas and memory ---------------------------------------------------- */

static void test_quotas(void **state)
{
	static const struct sp_opt o[] = {
		{ "sys_interval", "0" },
		{ "max_messages", "2" },
		{ "max_open", "2" },
	};

	(void)state;
	restart_with(o, 3);
	assert_int_equal(half("a", "t", "1", 1, NULL), SP_TAKE);
	assert_int_equal(half("a", "t", "2", 1, NULL), SP_TAKE);
	assert_int_equal(half("a", "t", "3", 1, NULL), SP_REJECT);
	refused(0x97, NULL);
	assert_int_equal(half("b", "t", "1", 1, NULL), SP_TAKE);
	assert_int_equal(half("c", "t", "1", 1, NULL), SP_REJECT);
	refused(0x97, "too many open transactions");
	assert_int_equal(resolve("commit", "a", "2"), SP_TAKE);
	assert_int_equal(half("c", "t", "1", 1, NULL), SP_TAKE); /* one slot is free again */
	assert_int_equal(half("d", "t", "1", 1, NULL), SP_REJECT);
	refused(0x97, NULL);
	fake_run_pending();
	assert_int_equal(delivered(), 2);
	finish();
}

static void test_remember_then_forget(void **state)
{
	static const struct sp_opt o[] = { { "sys_interval", "0" }, { "remember", "1s" } };

	(void)state;
	restart_with(o, 2);
	assert_int_equal(half("f", "t", "1", 1, NULL), SP_TAKE);
	assert_int_equal(commit("f"), SP_TAKE);
	fake_advance(500);
	assert_int_equal(commit("f"), SP_TAKE);
	fake_advance(1000);
	assert_int_equal(rec_state("f"), -1);
	assert_int_equal(commit("f"), SP_REJECT);
	refused(0x83, "unknown transaction");
	/* The id may be used again. */
	assert_int_equal(half("f", "t", "2", 1, NULL), SP_TAKE);
	assert_int_equal(commit("f"), SP_TAKE);
	fake_run_pending();
	assert_int_equal(delivered(), 2);
	finish();
}

static void test_sys_statistics(void **state)
{
	static const struct sp_opt o[] = {
		{ "sys_interval", "1s" },
		{ "check_after", "1s" },
		{ "check_max", "1" },
		{ "check_interval", "1500ms" },
	};

	(void)state;
	restart_with(o, 4);
	assert_int_equal(sys_value("open"), 0);
	assert_int_equal(sys_value("oldest_open_ms"), 0);
	assert_int_equal(half("s1", "t", "1", 1, NULL), SP_TAKE);
	assert_int_equal(half("s2", "t", "1", 1, NULL), SP_TAKE);
	assert_int_equal(half("s3", "t", "1", 1, NULL), SP_TAKE);
	assert_int_equal(commit("s1"), SP_TAKE);
	assert_int_equal(rollback("s2"), SP_TAKE);
	fake_advance(2000); /* checked at 1 s, statistics at 2 s */
	assert_int_equal(sys_value("open"), 1);
	assert_int_equal(sys_value("committed"), 1);
	assert_int_equal(sys_value("rolled_back"), 1);
	assert_int_equal(sys_value("checks"), 1);
	assert_int_equal(sys_value("discarded"), 0);
	assert_int_equal(sys_value("oldest_open_ms"), 2000);
	fake_advance(1000); /* s3 was discarded at 2.5 s */
	assert_int_equal(sys_value("open"), 0);
	assert_int_equal(sys_value("rolled_back"), 2);
	assert_int_equal(sys_value("discarded"), 1);
	assert_int_equal(sys_value("oldest_open_ms"), 0);
	finish();
}

static void test_bad_options(void **state)
{
	static const char *const bad[][2] = {
		{ "max_messages", "0" },    { "max_open", "x" },       { "check_after", "0" },
		{ "check_interval", "1w" }, { "check_max", "-1" },     { "remember", "" },
		{ "sys_interval", "5 s" },  { "no_such_option", "1" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct sp_opt o = { bad[i][0], bad[i][1] };

		fake_log_clear();
		assert_int_not_equal(fake_load(sluice_plugin_init, &o, 1), 0);
		assert_int_equal(fake_log_grep(bad[i][0]), 1);
		fake_unload(NULL);
	}
	assert_int_equal(fake_live_blocks(), 0);
}

static void test_older_host_refused(void **state)
{
	(void)state;
	fake_set_host_size(offsetof(struct sp_host, msg_add_user_props));
	assert_int_not_equal(fake_load(sluice_plugin_init, opts, 1), 0);
	assert_int_equal(fake_live_blocks(), 0);
}

/* --- restarts ------------------------------------------------------------- */

static void test_restart_keeps_open_and_check_timing(void **state)
{
	struct sp_msg *m;

	(void)state;
	fake_set_client("p1", 5);
	assert_int_equal(half("o", "a", "1", 1, "producer-group", "svc", NULL), SP_TAKE);
	assert_int_equal(half("o", "b", "2", 2, NULL), SP_TAKE);
	fake_advance(6000);
	assert_int_equal(count_on("$txn/check/svc"), 1);
	fake_advance(10000);
	restart();
	fake_routed_clear();
	/* The second check is due 30 s after the first, on the wall clock. */
	fake_advance(19999);
	assert_int_equal(count_on("$txn/check/svc"), 0);
	fake_advance(1);
	m = routed_on("$txn/check/svc", 0);
	assert_non_null(m);
	assert_string_equal(fake_msg_prop(m, "check"), "2");
	assert_string_equal(fake_msg_prop(m, "owner"), "p1");
	assert_string_equal(fake_msg_prop(m, "messages"), "2");
	/* The owner still owns it; the commit delivers both, in order. */
	assert_int_equal(commit("o"), SP_TAKE);
	fake_run_pending();
	assert_int_equal(delivered(), 2);
	assert_string_equal(H->msg_topic(delivered_at(0)), "a");
	assert_string_equal(H->msg_topic(delivered_at(1)), "b");
	finish();
}

/* Overdue after a long stop: checked at once, not once per missed interval. */
static void test_restart_overdue_checked_once(void **state)
{
	(void)state;
	assert_int_equal(half("late", "a", "1", 1, NULL), SP_TAKE);
	down();
	fake_set_wall(fake_now() + 3600000);
	assert_int_equal(up(), 0);
	fake_advance(0);
	assert_int_equal(count_on("$txn/check/client"), 1);
	fake_advance(29999);
	assert_int_equal(count_on("$txn/check/client"), 1);
	fake_advance(1);
	assert_int_equal(count_on("$txn/check/client"), 2);
	finish();
}

/*
 * A transaction restored from the store has its messages only there: its
 * commit is stored as COMMITTING and the messages are read back. A crash
 * after that and before they are routed: routed once after it.
 */
static void test_crash_after_commit_stored(void **state)
{
	(void)state;
	assert_int_equal(half("k", "a", "1", 1, NULL), SP_TAKE);
	assert_int_equal(half("k", "b", "2", 1, NULL), SP_TAKE);
	assert_int_equal(half("k", "c", "3", 1, NULL), SP_TAKE);
	restart();
	assert_int_equal(commit("k"), SP_TAKE);
	assert_int_equal(rec_state("k"), TXN_COMMITTING);
	assert_int_equal(fake_cold_reads(), 3);
	crash();
	assert_int_equal(up(), 0);
	assert_int_equal(fake_log_grep("1 commit(s) to finish"), 1);
	fake_run_pending();
	assert_int_equal(delivered(), 3);
	assert_string_equal(H->msg_topic(delivered_at(0)), "a");
	assert_string_equal(H->msg_topic(delivered_at(2)), "c");
	assert_int_equal(rec_state("k"), TXN_COMMITTED);
	assert_int_equal(commit("k"), SP_TAKE);
	restart();
	fake_run_pending();
	assert_int_equal(delivered(), 3);
	finish();
}

static void test_restart_remembers_outcomes(void **state)
{
	(void)state;
	assert_int_equal(half("yes", "a", "1", 1, NULL), SP_TAKE);
	assert_int_equal(half("no", "a", "1", 1, NULL), SP_TAKE);
	assert_int_equal(commit("yes"), SP_TAKE);
	assert_int_equal(rollback("no"), SP_TAKE);
	fake_run_pending();
	restart();
	assert_int_equal(fake_log_grep("0 open transaction(s) restored, 0 commit(s) to finish, 2 "
				       "outcome(s) remembered"),
			 1);
	assert_int_equal(commit("yes"), SP_TAKE);
	assert_int_equal(rollback("yes"), SP_REJECT);
	refused(0x83, "transaction was committed");
	assert_int_equal(rollback("no"), SP_TAKE);
	assert_int_equal(commit("no"), SP_REJECT);
	refused(0x83, "transaction was rolled back");
	fake_run_pending();
	assert_int_equal(delivered(), 1);
	finish();
}

/* The cache holds 16 MB: the oldest transactions' messages are read back at their commit. */
static void test_cache_budget(void **state)
{
	static char big[1 << 20];
	char id[16];
	int i;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	for (i = 0; i < 20; i++) {
		snprintf(id, sizeof(id), "big%d", i);
		assert_int_equal(half(id, "t", big, 1, NULL), SP_TAKE);
	}
	assert_int_equal(commit("big19"), SP_TAKE); /* recent: at once */
	assert_int_equal(rec_state("big19"), TXN_COMMITTED);
	assert_int_equal(commit("big0"), SP_TAKE); /* evicted: read back */
	assert_int_equal(rec_state("big0"), TXN_COMMITTING);
	assert_int_equal(fake_cold_reads(), 1);
	fake_run_pending();
	assert_int_equal(rec_state("big0"), TXN_COMMITTED);
	assert_int_equal(delivered(), 2);
	for (i = 1; i < 19; i++) {
		snprintf(id, sizeof(id), "big%d", i);
		assert_int_equal(rollback(id), SP_TAKE);
	}
	finish();
}

/* --- failures ------------------------------------------------------------- */

static void test_store_write_failures_refused(void **state)
{
	(void)state;
	fake_fail_writes(FAKE_COLD, 0, 1);
	assert_int_equal(half("w", "a", "1", 1, NULL), SP_REJECT);
	refused(0x80, NULL);
	fake_fail_writes(FAKE_KV, 0, 1);
	assert_int_equal(half("w", "a", "1", 1, NULL), SP_REJECT);
	refused(0x80, NULL);
	assert_int_equal(fake_store_count(FAKE_KV), 0);
	assert_int_equal(commit("w"), SP_REJECT);
	refused(0x83, "unknown transaction");
	assert_int_equal(half("w", "a", "1", 1, NULL), SP_TAKE);
	/* Neither COMMITTED (at once) nor COMMITTING (read back later) can be written. */
	fake_fail_writes(FAKE_KV, 0, 2);
	assert_int_equal(commit("w"), SP_REJECT);
	refused(0x80, NULL);
	assert_int_equal(rec_state("w"), TXN_OPEN);
	fake_advance(6000); /* still checked back */
	assert_int_equal(count_on("$txn/check/client"), 1);
	assert_int_equal(commit("w"), SP_TAKE);
	fake_run_pending();
	assert_int_equal(delivered(), 1);
	/* Only COMMITTED cannot be written: COMMITTING is, and the messages are read back. */
	assert_int_equal(half("w2", "a", "1", 1, NULL), SP_TAKE);
	fake_fail_writes(FAKE_KV, 0, 1);
	assert_int_equal(commit("w2"), SP_TAKE);
	assert_int_equal(rec_state("w2"), TXN_COMMITTING);
	assert_int_equal(fake_cold_reads(), 1);
	fake_run_pending();
	assert_int_equal(rec_state("w2"), TXN_COMMITTED);
	assert_int_equal(delivered(), 2);
	finish();
}

static void test_route_failure_retried(void **state)
{
	(void)state;
	assert_int_equal(half("rf", "a", "1", 1, NULL), SP_TAKE);
	assert_int_equal(half("rf", "b", "2", 1, NULL), SP_TAKE);
	fake_route_returns(-1);
	assert_int_equal(commit("rf"), SP_TAKE);
	fake_run_pending();
	assert_int_equal(fake_log_grep("0 of 2 routed"), 1);
	assert_int_equal(rec_state("rf"), TXN_COMMITTING);
	fake_routed_clear(); /* the refused attempt */
	fake_route_returns(1);
	fake_advance(500);
	assert_int_equal(rec_state("rf"), TXN_COMMITTED);
	assert_int_equal(count_on("a"), 1);
	assert_int_equal(count_on("b"), 1);
	finish();
}

/* Every allocation of a half message failing in turn: refused and nothing kept, or taken. */
static void test_half_out_of_memory(void **state)
{
	char id[16];
	long i;

	(void)state;
	for (i = 0; i < 40; i++) {
		snprintf(id, sizeof(id), "h%ld", i);
		fake_fail_alloc(i, 1);
		if (half(id, "t", "x", 1, NULL) == SP_TAKE) {
			assert_int_equal(rec_state(id), TXN_OPEN);
			continue;
		}
		refused(0x80, NULL);
		assert_int_equal(rec_state(id), -1);
	}
	fake_fail_alloc(-1, 0);
	assert_int_equal(fake_store_count(FAKE_COLD), fake_store_count(FAKE_KV));
	finish();
}

/*
 * Every allocation of a commit and its delivery failing in turn: the commit
 * is refused and the transaction stays open, or it is taken and its
 * messages are delivered exactly once, in order, after the retries.
 */
static void test_commit_out_of_memory(void **state)
{
	char id[16];
	long i;

	(void)state;
	for (i = 0; i < 60; i++) {
		snprintf(id, sizeof(id), "c%ld", i);
		fake_routed_clear();
		assert_int_equal(half(id, "a", "1", 1, NULL), SP_TAKE);
		assert_int_equal(half(id, "b", "2", 1, NULL), SP_TAKE);
		fake_fail_alloc(i, 1);
		if (commit(id) == SP_REJECT) {
			refused(0x80, NULL);
			fake_fail_alloc(-1, 0);
			assert_int_equal(rec_state(id), TXN_OPEN);
			assert_int_equal(commit(id), SP_TAKE);
		}
		fake_advance(1000);
		fake_fail_alloc(-1, 0);
		fake_advance(2000);
		assert_int_equal(rec_state(id), TXN_COMMITTED);
		assert_int_equal(count_on("a"), 1);
		assert_int_equal(count_on("b"), 1);
		assert_string_equal(H->msg_topic(delivered_at(0)), "a");
	}
	finish();
}

/* --- the fake's calls appended after API 2 ------------------------------- */

static void test_fake_add_user_props(void **state)
{
	const char *keys[] = { "k1", "k2" }, *vals[] = { "v1", "v2" };
	struct sp_msg *m, *c;
	const char *k, *v;

	(void)state;
	m = fake_msg("t", "p", 1, "a", "b", NULL);
	c = H->msg_add_user_props(m, keys, vals, 2);
	assert_non_null(c);
	assert_int_equal(fake_msg_n_props(c), 3);
	assert_int_equal(fake_msg_prop_at(c, 0, &k, &v), 0);
	assert_string_equal(k, "a");
	assert_int_equal(fake_msg_prop_at(c, 2, &k, &v), 0);
	assert_string_equal(k, "k2");
	assert_string_equal(v, "v2");
	assert_string_equal(H->msg_topic(c), "t");
	assert_true(fake_msg_payload_is(c, "p"));
	assert_null(H->msg_add_user_props(m, NULL, vals, 1));
	keys[1] = NULL;
	assert_null(H->msg_add_user_props(m, keys, vals, 2));
	fake_fail_alloc(0, 1);
	keys[1] = "k2";
	assert_null(H->msg_add_user_props(m, keys, vals, 2));
	fake_fail_alloc(-1, 0);
	H->msg_unref(c);
	H->msg_unref(m);
	assert_int_equal(fake_live_msgs(), 0);
}

static void test_fake_subscribed(void **state)
{
	(void)state;
	assert_int_equal(H->subscribed(NULL, "t"), -1);
	assert_int_equal(H->subscribed("c", NULL), -1);
	assert_int_equal(H->subscribed("c", "$txn/check/g"), 0);
	fake_subscribe("c", "$share/x/$txn/check/+");
	fake_subscribe("d", "$txn/check/g");
	assert_int_equal(H->subscribed("c", "$txn/check/g"), 1);
	assert_int_equal(H->subscribed("c", "$txn/check/g/h"), 0);
	assert_int_equal(H->subscribed("d", "$txn/check/g"), 1);
	assert_int_equal(H->subscribed("d", "$txn/check/h"), 0);
	fake_unsubscribe("c");
	assert_int_equal(H->subscribed("c", "$txn/check/g"), 0);
	assert_int_equal(H->subscribed("d", "$txn/check/g"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_half_invisible_commit_in_order, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_retain_and_expiry_from_commit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_txn_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollback_drops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idempotent_outcomes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_repeated_while_reading, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_other_topics_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delayed_target_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_members_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_defaults_to_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_after_per_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_after_check_max, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quotas, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remember_then_forget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sys_statistics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_options, setup_bare, teardown),
		cmocka_unit_test_setup_teardown(test_older_host_refused, setup_bare, teardown),
		cmocka_unit_test_setup_teardown(test_restart_keeps_open_and_check_timing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_restart_overdue_checked_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_after_commit_stored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_remembers_outcomes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_write_failures_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_route_failure_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_half_out_of_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_out_of_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fake_add_user_props, setup_bare, teardown),
		cmocka_unit_test_setup_teardown(test_fake_subscribed, setup_bare, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
