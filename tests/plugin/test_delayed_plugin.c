/*
 * test_delayed_plugin.c - the delayed topics plugin (plugins/delayed/delayed.c
 * with sched.c) driven through its three entry points against the fake host
 * (fake_host.c): no broker, fake time.
 *
 * Covered: release on time and not a millisecond early, by topic
 * ($delayed/{seconds}/...), by the user properties delay-ms and deliver-at
 * (removed on release, the others kept in order), fractional seconds;
 * publish order for messages due the same ms; the message-id PUBACK
 * property; cancel by the publisher, refused for others and unknown ids;
 * every refusal with its reason code and string; restarts on the same store
 * (on time, overdue at once, cancel after); payloads kept as cold values, not
 * in the key/value index; an older host without cold_del_range; a burst
 * across two index chunks. Failures: nothing due is dropped when route()
 * fails, the copy cannot be made, the index cannot be read or written, a
 * payload read fails or a timer cannot be armed (each retried, in order);
 * a cancel that cannot be carried out is refused and the message still
 * goes; a store write that fails refuses the PUBLISH (0x80) and leaves
 * nothing behind; an option too large for 64 bits is refused; transient
 * out of memory at every allocation of a publish, its release and a cancel.
 * Every test ends with finish(): no message and no block left, no misuse.
 *
 * Last, the fake's own API 2 calls: deliver, topic_match, after_commit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/topic_cases.h"
#include "fake_host.h"
#include "plugin_harness.h"
#include "sched.h"

#define H fake_host()

/* A maximum of 60 s; $SYS only once, at start, so that no stats timer runs. */
static const struct sp_opt opts[] = { { "max", "60" }, { "sys_interval", "0" } };

/* --- helpers -------------------------------------------------------------- */

static int up(void)
{
	return up_with(opts, 2);
}

static bool is_sys(const struct sp_msg *m)
{
	return !strncmp(H->msg_topic(m), "$SYS/", 5);
}

/* Routed messages other than the plugin's $SYS statistics. */
static size_t delivered(void)
{
	size_t i, n = 0;

	for (i = 0; i < fake_routed_count(); i++)
		n += !is_sys(fake_routed(i));
	return n;
}

/* The i-th of them, and when it was routed. */
static struct sp_msg *delivered_at(size_t i, uint64_t *wall)
{
	size_t j;

	for (j = 0; j < fake_routed_count(); j++) {
		if (is_sys(fake_routed(j)))
			continue;
		if (!i--) {
			*wall = fake_routed_wall(j);
			return fake_routed(j);
		}
	}
	fail_msg("no delivered message %zu", i);
	return NULL;
}

/* Checks the i-th delivered message's topic, payload and routing time. */
static struct sp_msg *check_delivered(size_t i, const char *topic, const char *payload, uint64_t at)
{
	uint64_t wall = 0;
	struct sp_msg *m = delivered_at(i, &wall);

	assert_string_equal(H->msg_topic(m), topic);
	assert_true(fake_msg_payload_is(m, payload));
	assert_int_equal(wall, at);
	return m;
}

/* The message-id the last PUBLISH got on its PUBACK. */
static uint64_t last_id(void)
{
	const char *id = fake_ack_prop("message-id");

	assert_non_null(id);
	return strtoull(id, NULL, 10);
}

static enum sp_verdict cancel(uint64_t id)
{
	char topic[64];

	snprintf(topic, sizeof(topic), "$delayed/cancel/%" PRIu64, id);
	return fake_publish(topic, "", 1, NULL);
}

static void check_refused(uint8_t reason, const char *why)
{
	assert_int_equal(fake_result()->verdict, SP_REJECT);
	assert_int_equal(fake_result()->reason, reason);
	assert_string_equal(fake_result()->reason_string, why);
}

/* kv rows whose key starts with the byte c ('c' chunks, 's' senders, 'n' the id block). */
static size_t kv_rows(char c)
{
	const void *k, *v;
	size_t kl, vl, i, n = 0;

	for (i = 0; !fake_store_at(FAKE_KV, i, &k, &kl, &v, &vl); i++)
		n += kl && *(const char *)k == c;
	return n;
}

/* The value length of the first chunk row. */
static size_t chunk_row_len(void)
{
	const void *k, *v;
	size_t kl, vl, i;

	for (i = 0; !fake_store_at(FAKE_KV, i, &k, &kl, &v, &vl); i++)
		if (kl == 9 && *(const char *)k == 'c')
			return vl;
	return 0;
}

/* After everything went: only the id block row is left, and no payload. */
static void check_store_empty(void)
{
	assert_int_equal(kv_rows('c'), 0);
	assert_int_equal(kv_rows('s'), 0);
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
}

/* --- entry points --------------------------------------------------------- */

static void test_version_and_init(void **state)
{
	static const struct sp_opt bad[] = { { "max", "soon" } };

	(void)state;
	assert_int_equal(sluice_plugin_version(), SLUICE_PLUGIN_API);
	down();
	assert_int_equal(fake_load(sluice_plugin_init, bad, 1), -1);
	assert_int_equal(fake_log_grep("bad option plugin_opt_max soon"), 1);
	assert_int_equal(fake_live_blocks(), 0);
	fake_set_host_size(offsetof(struct sp_host, cold_put)); /* a host without cold values */
	assert_int_equal(fake_load(sluice_plugin_init, opts, 2), -1);
	assert_int_equal(fake_live_blocks(), 0);
	assert_false(fake_loaded());
	fake_routed_clear();
	assert_int_equal(fake_live_msgs(), 0);
}

/* --- release on time ------------------------------------------------------ */

static void test_topic_delay_on_time(void **state)
{
	struct sp_msg *m;

	(void)state;
	assert_int_equal(fake_publish("$delayed/1.5/a/b", "hello", 1, "k", "v", NULL), SP_TAKE);
	/* Due 1 ms later: not taken along when the first goes. */
	assert_int_equal(fake_publish("$delayed/1.501/a/b", "later", 0, NULL), SP_TAKE);
	assert_int_equal(delivered(), 0);
	fake_advance(1499);
	assert_int_equal(delivered(), 0);
	fake_advance(1);
	assert_int_equal(delivered(), 1);
	m = check_delivered(0, "a/b", "hello", FAKE_WALL0 + 1500);
	assert_int_equal(H->msg_qos(m), 1);
	assert_string_equal(H->msg_sender(m), "client");
	assert_string_equal(fake_msg_prop(m, "k"), "v");
	fake_advance(1);
	check_delivered(1, "a/b", "later", FAKE_WALL0 + 1501);
	fake_advance(60000);
	assert_int_equal(delivered(), 2);
	check_store_empty();
	finish();
}

static void test_ack_message_id(void **state)
{
	(void)state;
	assert_int_equal(fake_publish("$delayed/5/x", "1", 1, NULL), SP_TAKE);
	assert_int_equal(fake_ack_count(), 1);
	assert_int_equal(last_id(), 1);
	assert_int_equal(fake_publish("x", "2", 1, "delay-ms", "10", NULL), SP_TAKE);
	assert_int_equal(last_id(), 2);
	fake_set_client("old", 4); /* MQTT 3.1.1: no properties on its PUBACK */
	assert_int_equal(fake_publish("$delayed/5/x", "3", 1, NULL), SP_TAKE);
	assert_int_equal(fake_ack_count(), 0);
	fake_set_client("client", 5);
	assert_int_equal(fake_publish("x", "4", 1, NULL), SP_PASS); /* not delayed */
	assert_int_equal(fake_ack_count(), 0);
	fake_advance(5000);
	assert_int_equal(delivered(), 3);
	finish();
}

static void check_props(const struct sp_msg *m, const char *const *want, size_t n)
{
	const char *k, *v;
	size_t i;

	assert_int_equal(fake_msg_n_props(m), n);
	for (i = 0; i < n; i++) {
		assert_int_equal(fake_msg_prop_at(m, i, &k, &v), 0);
		assert_string_equal(k, want[2 * i]);
		assert_string_equal(v, want[2 * i + 1]);
	}
}

static void test_delay_ms_property(void **state)
{
	static const char *const kept[] = { "a", "1", "b", "2", "a", "3" };

	(void)state;
	assert_int_equal(
		fake_publish("x/y", "p", 0, "a", "1", "delay-ms", "200", "b", "2", "a", "3", NULL),
		SP_TAKE);
	fake_advance(199);
	assert_int_equal(delivered(), 0);
	fake_advance(1);
	check_props(check_delivered(0, "x/y", "p", FAKE_WALL0 + 200), kept, 3);
	finish();
}

static void test_deliver_at_property(void **state)
{
	static const char *const kept[] = { "z", "last" };
	char at[32];

	(void)state;
	snprintf(at, sizeof(at), "%" PRIu64, FAKE_WALL0 + 3000);
	assert_int_equal(fake_publish("t", "p", 0, "deliver-at", at, "z", "last", NULL), SP_TAKE);
	fake_advance(2999);
	assert_int_equal(delivered(), 0);
	fake_advance(1);
	check_props(check_delivered(0, "t", "p", FAKE_WALL0 + 3000), kept, 1);
	/* In the past: at once, but from the loop, not inside the PUBLISH callback. */
	assert_int_equal(fake_publish("t", "late", 0, "deliver-at", "1000", NULL), SP_TAKE);
	assert_int_equal(delivered(), 1);
	fake_advance(0);
	check_props(check_delivered(1, "t", "late", FAKE_WALL0 + 3000), NULL, 0);
	finish();
}

static void test_fractional_seconds(void **state)
{
	(void)state;
	assert_int_equal(fake_publish("$delayed/0.25/f", "q", 0, NULL), SP_TAKE);
	assert_int_equal(fake_publish("$delayed/0.0001/g", "r", 0, NULL), SP_TAKE);
	fake_advance(0);
	assert_int_equal(delivered(), 0); /* rounded up to 1 ms: never early */
	fake_advance(1);
	check_delivered(0, "g", "r", FAKE_WALL0 + 1);
	fake_advance(248);
	assert_int_equal(delivered(), 1);
	fake_advance(1);
	check_delivered(1, "f", "q", FAKE_WALL0 + 250);
	finish();
}

/* A from afar (staged, read back), B and C kept in memory: all due at 5000, in publish order. */
static void test_same_ms_publish_order(void **state)
{
	(void)state;
	assert_int_equal(fake_publish("$delayed/5/o", "A", 0, NULL), SP_TAKE);
	fake_advance(4000);
	assert_int_equal(fake_publish("$delayed/1/o", "B", 0, NULL), SP_TAKE);
	assert_int_equal(fake_publish("o", "C", 0, "delay-ms", "1000", NULL), SP_TAKE);
	fake_advance(999);
	assert_int_equal(delivered(), 0);
	fake_advance(1);
	assert_int_equal(delivered(), 3);
	check_delivered(0, "o", "A", FAKE_WALL0 + 5000);
	check_delivered(1, "o", "B", FAKE_WALL0 + 5000);
	check_delivered(2, "o", "C", FAKE_WALL0 + 5000);
	finish();
}

static void test_expiry_counts_from_release(void **state)
{
	struct sp_msg_spec mspec = { .topic = "$delayed/5/e",
				     .topic_len = 12,
				     .payload = "x",
				     .payload_len = 1,
				     .qos = 1,
				     .expiry_s = 10 };
	struct sp_msg *m;
	uint64_t wall;

	(void)state;
	m = fake_msg_build(&mspec, NULL, 0);
	assert_int_equal(H->msg_expiry(m), FAKE_WALL0 + 10000);
	assert_int_equal(fake_publish_msg(m), SP_TAKE);
	H->msg_unref(m);
	fake_advance(5000);
	assert_int_equal(delivered(), 1);
	assert_int_equal(H->msg_expiry(delivered_at(0, &wall)), FAKE_WALL0 + 15000);
	finish();
}

static void test_not_delayed_passes(void **state)
{
	(void)state;
	assert_int_equal(fake_publish("a/b", "p", 1, "other", "1", NULL), SP_PASS);
	assert_int_equal(fake_publish("$delayedx/1/a", "p", 1, NULL), SP_PASS);
	assert_int_equal(fake_store_count(FAKE_KV), 0);
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	fake_advance(5000);
	assert_int_equal(delivered(), 0);
	finish();
}

/* --- cancel --------------------------------------------------------------- */

static void test_cancel_by_publisher(void **state)
{
	uint64_t id;

	(void)state;
	assert_int_equal(fake_publish("$delayed/5/c", "p", 1, NULL), SP_TAKE);
	id = last_id();
	assert_int_equal(cancel(id), SP_TAKE);
	assert_int_equal(fake_ack_count(), 0);
	check_store_empty();
	fake_advance(6000);
	assert_int_equal(delivered(), 0);
	assert_int_equal(cancel(id), SP_REJECT); /* no longer pending */
	check_refused(0x83, "no pending delayed message with that id");
	finish();
}

static void test_cancel_by_another_client(void **state)
{
	uint64_t id;

	(void)state;
	fake_set_client("alice", 5);
	assert_int_equal(fake_publish("$delayed/2/c", "p", 1, NULL), SP_TAKE);
	id = last_id();
	fake_set_client("mallory", 5);
	assert_int_equal(cancel(id), SP_REJECT);
	check_refused(0x87, "only the publisher of a delayed message (its username, or its "
			    "client id when it had none) may cancel it");
	fake_advance(2000);
	check_delivered(0, "c", "p", FAKE_WALL0 + 2000);
	finish();
}

static void test_cancel_unknown_or_malformed(void **state)
{
	(void)state;
	assert_int_equal(cancel(42), SP_REJECT);
	check_refused(0x83, "no pending delayed message with that id");
	assert_int_equal(fake_publish("$delayed/cancel/x", "", 1, NULL), SP_REJECT);
	check_refused(0x90, "malformed message-id to cancel");
	assert_int_equal(cancel(0), SP_REJECT);
	check_refused(0x90, "malformed message-id to cancel");
	assert_int_equal(fake_publish("$delayed/cancel", "", 1, NULL), SP_REJECT);
	check_refused(0x90, "$delayed/cancel/ needs a message-id");
	finish();
}

/* --- refusals ------------------------------------------------------------- */

struct refusal {
	const char *topic, *k1, *v1, *k2, *v2;
	uint8_t reason;
	const char *why;
};

static const struct refusal refusals[] = {
	{ "$delayed/abc/a", NULL, NULL, NULL, NULL, 0x83,
	  "malformed delay: expected seconds such as 5 or 0.25" },
	{ "$delayed/-5/a", NULL, NULL, NULL, NULL, 0x83,
	  "malformed delay: expected seconds such as 5 or 0.25" },
	{ "$delayed/61/a", NULL, NULL, NULL, NULL, 0x83,
	  "delay over the maximum (plugin_opt_max)" },
	{ "$delayed/60.001/a", NULL, NULL, NULL, NULL, 0x83,
	  "delay over the maximum (plugin_opt_max)" },
	{ "a", "delay-ms", "60001", NULL, NULL, 0x83, "delay over the maximum (plugin_opt_max)" },
	{ "a", "delay-ms", "-1", NULL, NULL, 0x83,
	  "malformed delay-ms: expected a number of milliseconds" },
	{ "a", "deliver-at", "soon", NULL, NULL, 0x83,
	  "malformed deliver-at: expected Unix time in milliseconds" },
	{ "a", "delay-ms", "1", "deliver-at", "1700000001000", 0x83,
	  "both delay-ms and deliver-at given" },
	{ "a", "delay-ms", "1", "delay-ms", "2", 0x83, "delay user property given more than once" },
	{ "$delayed/5/a", "delay-ms", "1", NULL, NULL, 0x83,
	  "delay given both in the topic and in a user property" },
	{ "$delayed/5", NULL, NULL, NULL, NULL, 0x90, "expected $delayed/{seconds}/{topic}" },
	{ "$delayed/5/", NULL, NULL, NULL, NULL, 0x90, "no topic to release the message on" },
	{ "$delayed/5/$SYS/x", NULL, NULL, NULL, NULL, 0x90,
	  "a delayed message cannot go to a $ topic" },
	{ "$SYS/x", "delay-ms", "5", NULL, NULL, 0x90, "a delayed message cannot go to a $ topic" },
	{ "$delayed/5/a/#", NULL, NULL, NULL, NULL, 0x90, "wildcard in the topic to release on" },
};

static void test_refusals(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		const struct refusal *r = &refusals[i];

		print_message("refusal %zu: %s\n", i, r->topic);
		assert_int_equal(fake_publish(r->topic, "p", 1, r->k1, r->v1, r->k2, r->v2, NULL),
				 SP_REJECT);
		check_refused(r->reason, r->why);
		assert_int_equal(fake_ack_count(), 0);
	}
	assert_int_equal(fake_store_count(FAKE_KV), 0);
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	assert_int_equal(fake_publish("$delayed/60/ok", "p", 1, NULL), SP_TAKE); /* the maximum */
	fake_advance(60000);
	check_delivered(0, "ok", "p", FAKE_WALL0 + 60000);
	assert_int_equal(delivered(), 1);
	finish();
}

/* --- restarts ------------------------------------------------------------- */

static void test_restart_on_time(void **state)
{
	(void)state;
	assert_int_equal(fake_publish("$delayed/10/r", "R", 1, NULL), SP_TAKE);
	fake_advance(2000);
	down();
	assert_int_equal(up(), 0);
	fake_advance(7999);
	assert_int_equal(delivered(), 0);
	fake_advance(1);
	check_delivered(0, "r", "R", FAKE_WALL0 + 10000);
	fake_advance(60000);
	assert_int_equal(delivered(), 1); /* once */
	check_store_empty();
	finish();
}

static void test_restart_overdue_at_once(void **state)
{
	(void)state;
	assert_int_equal(fake_publish("$delayed/5/o", "O", 1, NULL), SP_TAKE);
	assert_int_equal(fake_publish("$delayed/30/p", "P", 1, NULL), SP_TAKE);
	down();
	fake_advance(8000); /* the broker is down when o falls due */
	assert_int_equal(up(), 0);
	fake_advance(0);
	assert_int_equal(delivered(), 1);
	check_delivered(0, "o", "O", FAKE_WALL0 + 8000);
	fake_advance(21999);
	assert_int_equal(delivered(), 1);
	fake_advance(1);
	check_delivered(1, "p", "P", FAKE_WALL0 + 30000);
	check_store_empty();
	finish();
}

static void test_restart_then_cancel(void **state)
{
	uint64_t id1, id2;

	(void)state;
	assert_int_equal(fake_publish("$delayed/20/q", "1", 1, NULL), SP_TAKE);
	id1 = last_id();
	assert_int_equal(fake_publish("$delayed/20/q", "2", 1, NULL), SP_TAKE);
	id2 = last_id();
	down();
	assert_int_equal(up(), 0);
	fake_set_client("mallory", 5);
	assert_int_equal(cancel(id1), SP_REJECT);
	check_refused(0x87, "only the publisher of a delayed message (its username, or its "
			    "client id when it had none) may cancel it");
	fake_set_client("client", 5);
	assert_int_equal(cancel(id1), SP_TAKE);
	assert_int_equal(fake_publish("$delayed/30/q", "3", 1, NULL), SP_TAKE);
	assert_true(last_id() > id2); /* ids never repeat across a restart */
	fake_advance(20000);
	assert_int_equal(delivered(), 1);
	check_delivered(0, "q", "2", FAKE_WALL0 + 20000);
	fake_advance(10000);
	check_delivered(1, "q", "3", FAKE_WALL0 + 30000);
	finish();
}

/* --- where things are kept ------------------------------------------------ */

static void test_payloads_in_cold_values(void **state)
{
	static const char far[] = "PAYLOAD-far-0123456789", near[] = "PAYLOAD-near-42";

	(void)state;
	assert_int_equal(fake_publish("$delayed/30/far", far, 1, NULL), SP_TAKE);
	assert_int_equal(fake_publish("$delayed/1/near", near, 1, NULL), SP_TAKE);
	assert_int_equal(fake_store_grep(FAKE_KV, far, strlen(far)), 0);
	assert_int_equal(fake_store_grep(FAKE_KV, near, strlen(near)), 0);
	assert_int_equal(fake_store_grep(FAKE_COLD, far, strlen(far)), 1);
	assert_int_equal(fake_store_grep(FAKE_COLD, near, strlen(near)), 1);
	assert_int_equal(fake_store_count(FAKE_COLD), 2);
	assert_int_equal(kv_rows('c'), 1);
	assert_int_equal(chunk_row_len(), 2 * SCHED_REC_SIZE); /* the index: 13 bytes a message */
	fake_advance(30000);
	assert_int_equal(delivered(), 2);
	check_delivered(1, "far", far, FAKE_WALL0 + 30000);
	check_store_empty();
	finish();
}

static void test_host_without_del_range(void **state)
{
	(void)state;
	down();
	fake_set_host_size(offsetof(struct sp_host, cold_del_range));
	assert_int_equal(up(), 0);
	assert_int_equal(fake_publish("$delayed/1/a", "1", 1, NULL), SP_TAKE);
	assert_int_equal(fake_publish("$delayed/3/a", "2", 1, NULL), SP_TAKE);
	fake_advance(3000);
	assert_int_equal(delivered(), 2);
	check_store_empty();
	finish();
}

/* 40 messages: a complete chunk (ids 1-31) and part of the next, all due in the same ms. */
static void test_burst_across_chunks(void **state)
{
	char payload[16];
	uint64_t wall;
	size_t i;

	(void)state;
	for (i = 0; i < 40; i++) {
		snprintf(payload, sizeof(payload), "%zu", i);
		assert_int_equal(fake_publish("$delayed/2/g", payload, 0, NULL), SP_TAKE);
	}
	assert_int_equal(kv_rows('c'), 2);
	assert_int_equal(fake_store_count(FAKE_COLD), 40);
	fake_advance(2000);
	assert_int_equal(delivered(), 40);
	for (i = 0; i < 40; i++) {
		snprintf(payload, sizeof(payload), "%zu", i);
		assert_true(fake_msg_payload_is(delivered_at(i, &wall), payload));
		assert_int_equal(wall, FAKE_WALL0 + 2000);
	}
	check_store_empty();
	finish();
}

static void test_sys_statistics(void **state)
{
	static const struct sp_opt every_s[] = { { "sys_interval", "1" } };
	const char *want = "$SYS/broker/delayed/pending";
	size_t i, seen = 0;

	(void)state;
	down();
	fake_routed_clear();
	assert_int_equal(up_with(every_s, 1), 0);
	assert_int_equal(fake_publish("$delayed/5/s", "p", 1, NULL), SP_TAKE);
	assert_int_equal(fake_publish("$delayed/9/s", "p", 1, NULL), SP_TAKE);
	fake_routed_clear();
	fake_advance(1000);
	for (i = 0; i < fake_routed_count(); i++) {
		const struct sp_msg *m = fake_routed(i);

		if (strcmp(H->msg_topic(m), want))
			continue;
		assert_true(fake_msg_payload_is(m, "2"));
		assert_true(H->msg_retain(m));
		seen++;
	}
	assert_int_equal(seen, 1);
	finish();
}

/* --- failures: nothing due is dropped ---------------------------------------- */

#define STORED "delayed message could not be stored"
#define NOT_CANCELLED "cancel not carried out (out of memory): the message is still scheduled"

/* route() failing keeps the message, retried after a back-off; 0 (no subscriber) is a success. */
static void test_route_failure_retried(void **state)
{
	(void)state;
	assert_int_equal(fake_publish("$delayed/1/r", "R", 1, NULL), SP_TAKE);
	assert_int_equal(fake_publish("$delayed/1/s", "S", 1, NULL), SP_TAKE);
	fake_route_returns(-1);
	fake_advance(1000);
	assert_int_equal(delivered(), 1); /* R tried once; S waits behind it, in order */
	assert_int_equal(chunk_row_len(), 2 * SCHED_REC_SIZE);
	assert_int_equal(fake_store_count(FAKE_COLD), 2);
	fake_advance(99);
	assert_int_equal(delivered(), 1); /* the back-off: 100 ms */
	fake_advance(1);
	assert_int_equal(delivered(), 2); /* tried again, failed again: now 200 ms */
	fake_route_returns(0); /* no subscriber: published all the same */
	fake_advance(199);
	assert_int_equal(delivered(), 2);
	fake_advance(1);
	assert_int_equal(delivered(), 4);
	check_delivered(2, "r", "R", FAKE_WALL0 + 1300);
	check_delivered(3, "s", "S", FAKE_WALL0 + 1300);
	check_store_empty();
	fake_route_returns(1);
	fake_advance(10000);
	down();
	assert_int_equal(up(), 0);
	fake_advance(10000);
	assert_int_equal(delivered(), 4); /* once published, never again */
	finish();
}

/* The copy it routes cannot be made (out of memory): the message waits, then goes. */
static void test_copy_failure_retried(void **state)
{
	(void)state;
	assert_int_equal(fake_publish("$delayed/1/c", "C", 1, NULL), SP_TAKE);
	fake_advance(999);
	fake_fail_alloc(0, 1); /* the first allocation of the release: the copy */
	fake_advance(1);
	assert_int_equal(fake_alloc_failures(), 1);
	assert_int_equal(delivered(), 0);
	assert_int_equal(kv_rows('c'), 1);
	assert_int_equal(fake_store_count(FAKE_COLD), 1);
	fake_advance(100);
	check_delivered(0, "c", "C", FAKE_WALL0 + 1100);
	check_store_empty();
	assert_int_equal(fake_log_grep("lost"), 0);
	finish();
}

/* Routed, but its index entry could not be removed: only the removal is retried. */
static void test_index_write_failure_after_route(void **state)
{
	(void)state;
	assert_int_equal(fake_publish("$delayed/1/d", "D", 1, NULL), SP_TAKE);
	fake_advance(999);
	fake_fail_writes(FAKE_KV, 0, 1);
	fake_advance(1);
	assert_int_equal(fake_write_failures(FAKE_KV), 1);
	check_delivered(0, "d", "D", FAKE_WALL0 + 1000);
	assert_int_equal(kv_rows('c'), 1); /* still listed */
	fake_advance(100);
	assert_int_equal(delivered(), 1); /* not routed twice */
	check_store_empty();
	down();
	assert_int_equal(up(), 0);
	fake_advance(5000);
	assert_int_equal(delivered(), 1); /* nor after a restart */
	finish();
}

/* An index row that cannot be read is not an absent one: the release waits, then goes. */
static void test_index_unreadable_at_release(void **state)
{
	(void)state;
	assert_int_equal(fake_publish("$delayed/1/i", "I", 1, NULL), SP_TAKE);
	fake_advance(999);
	fake_fail_reads(0, 1);
	fake_advance(1);
	assert_int_equal(delivered(), 0);
	fake_advance(100);
	check_delivered(0, "i", "I", FAKE_WALL0 + 1100);
	check_store_empty();
	finish();
}

/* Storing next to a row that cannot be read refuses the new one; the row is not overwritten. */
static void test_index_unreadable_at_publish(void **state)
{
	(void)state;
	assert_int_equal(fake_publish("$delayed/5/a", "A", 1, NULL), SP_TAKE);
	fake_fail_reads(0, 1);
	assert_int_equal(fake_publish("$delayed/5/b", "B", 1, NULL), SP_REJECT);
	check_refused(0x80, STORED);
	assert_int_equal(fake_ack_count(), 0);
	assert_int_equal(chunk_row_len(), SCHED_REC_SIZE);
	fake_advance(5000);
	assert_int_equal(delivered(), 1);
	check_delivered(0, "a", "A", FAKE_WALL0 + 5000);
	check_store_empty();
	finish();
}

/* A failed write in the PUBLISH path refuses the message with 0x80 and leaves nothing. */
static void test_publish_write_failures_refused(void **state)
{
	static const struct {
		enum fake_space sp;
		long after; /* writes of sp that succeed first */
	} cases[] = { { FAKE_KV, 0 }, { FAKE_KV, 1 }, { FAKE_KV, 2 }, { FAKE_COLD, 0 } };
	size_t i;

	(void)state;
	finish();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("write %zu of space %d fails\n", (size_t)cases[i].after, cases[i].sp);
		fake_reset();
		assert_int_equal(up(), 0);
		fake_fail_writes(cases[i].sp, cases[i].after, 1);
		assert_int_equal(fake_publish("$delayed/2/w", "lost?", 1, NULL), SP_REJECT);
		assert_int_equal(fake_write_failures(cases[i].sp), 1);
		check_refused(0x80, STORED);
		assert_int_equal(fake_ack_count(), 0);
		check_store_empty();
		assert_int_equal(fake_publish("$delayed/2/w", "kept", 1, NULL), SP_TAKE);
		fake_advance(5000);
		assert_int_equal(delivered(), 1);
		check_delivered(0, "w", "kept", FAKE_WALL0 + 2000);
		finish();
	}
}

/* The value of the last $SYS/broker/delayed/{leaf} routed. */
static bool sys_is(const char *leaf, const char *want)
{
	char topic[64];
	size_t i;

	snprintf(topic, sizeof(topic), "$SYS/broker/delayed/%s", leaf);
	for (i = fake_routed_count(); i-- > 0;)
		if (!strcmp(H->msg_topic(fake_routed(i)), topic))
			return fake_msg_payload_is(fake_routed(i), want);
	fail_msg("no %s", topic);
	return false;
}

/* A payload write that fails: refused, and the pending count is still that of the others. */
static void test_cold_put_failure_keeps_count(void **state)
{
	static const struct sp_opt every_s[] = { { "max", "60" }, { "sys_interval", "1" } };

	(void)state;
	down();
	assert_int_equal(up_with(every_s, 2), 0);
	assert_int_equal(fake_publish("$delayed/5/a", "A", 1, NULL), SP_TAKE);
	fake_fail_writes(FAKE_COLD, 0, 1);
	assert_int_equal(fake_publish("$delayed/5/b", "B", 1, NULL), SP_REJECT);
	assert_int_equal(chunk_row_len(), SCHED_REC_SIZE);
	assert_int_equal(fake_store_count(FAKE_COLD), 1);
	fake_advance(1000);
	assert_true(sys_is("pending", "1"));
	check_refused(0x80, STORED); /* still the last PUBLISH's result */
	fake_advance(4000);
	assert_int_equal(delivered(), 1);
	check_delivered(0, "a", "A", FAKE_WALL0 + 5000);
	fake_advance(1000);
	assert_true(sys_is("pending", "0"));
	finish();
}

/* A payload read that fails (out of memory at any step) is read again: on time all the same. */
static void test_fetch_failures_retried(void **state)
{
	long n;

	(void)state;
	finish();
	for (n = 0;; n++) {
		fake_reset();
		assert_int_equal(up(), 0);
		assert_int_equal(fake_publish("$delayed/10/f", "F", 1, NULL), SP_TAKE);
		fake_advance(8499); /* staged and read at 8500 (prefetch 1500 ms) */
		fake_fail_alloc(n, 1);
		fake_advance(1000);
		if (!fake_alloc_failures())
			break;
		fake_fail_alloc(-1, 0);
		fake_advance(501);
		assert_int_equal(delivered(), 1);
		check_delivered(0, "f", "F", FAKE_WALL0 + 10000);
		check_store_empty();
		assert_int_equal(fake_log_grep("lost"), 0);
		finish();
	}
	fake_fail_alloc(-1, 0);
	assert_true(n > 3);
	finish();
}

/* A payload that is really gone is read FETCH_TRIES times, then given up (logged). */
static void test_payload_gone(void **state)
{
	uint8_t key[9];

	(void)state;
	assert_int_equal(fake_publish("$delayed/10/g", "G", 1, NULL), SP_TAKE);
	assert_int_equal(fake_publish("$delayed/10.5/h", "H", 1, NULL), SP_TAKE);
	sched_key_payload(key, last_id() - 1);
	assert_int_equal(H->cold_del(fake_self(), key, sizeof(key)), 0); /* behind its back */
	fake_advance(10000);
	assert_int_equal(delivered(), 0);
	assert_int_equal(fake_log_grep("lost: its payload could not be read"), 1);
	fake_advance(500);
	check_delivered(0, "h", "H", FAKE_WALL0 + 10500); /* not held up */
	assert_int_equal(delivered(), 1);
	check_store_empty();
	finish();
}

/* A timer that cannot be armed: a retry timer, else the next PUBLISH or $SYS run arms it. */
static void test_timer_failures(void **state)
{
	static const struct sp_opt every_s[] = { { "max", "60" }, { "sys_interval", "1" } };

	(void)state;
	/* One refusal: the retry timer goes in. */
	fake_fail_timers(0, 1);
	assert_int_equal(fake_publish("$delayed/1/a", "A", 1, NULL), SP_TAKE);
	assert_int_equal(fake_timer_failures(), 1);
	assert_int_equal(fake_timers(), 1);
	fake_advance(1000);
	check_delivered(0, "a", "A", FAKE_WALL0 + 1000);
	/* None at all: the next PUBLISH, delayed or not, arms it. */
	fake_fail_timers(0, -1);
	assert_int_equal(fake_publish("$delayed/2/b", "B", 1, NULL), SP_TAKE);
	assert_int_equal(fake_timers(), 0);
	assert_int_equal(fake_log_grep("cannot arm a timer"), 1);
	fake_fail_timers(-1, 0);
	fake_advance(1000);
	assert_int_equal(delivered(), 1);
	assert_int_equal(fake_publish("plain", "x", 0, NULL), SP_PASS);
	assert_int_equal(fake_timers(), 1);
	fake_advance(1000);
	check_delivered(1, "b", "B", FAKE_WALL0 + 3000);
	/* The $SYS timer arms it too. */
	down();
	assert_int_equal(up_with(every_s, 2), 0);
	fake_fail_timers(0, 2);
	assert_int_equal(fake_publish("$delayed/1.5/c", "C", 1, NULL), SP_TAKE);
	assert_int_equal(fake_timers(), 1); /* $SYS only */
	fake_advance(1500);
	check_delivered(2, "c", "C", FAKE_WALL0 + 4500);
	finish();
}

/* One cancel with one failure: refused with 0x80 (and the message goes) or done (and it does not). */
static void cancel_once(int kind, long n)
{
	enum sp_verdict v;
	uint64_t id;

	fake_reset();
	assert_int_equal(up(), 0);
	assert_int_equal(fake_publish("$delayed/1/k", "K", 1, NULL), SP_TAKE);
	id = last_id();
	if (kind == 0)
		fake_fail_reads(n, 1);
	else if (kind == 1)
		fake_fail_writes(FAKE_KV, n, 1);
	else
		fake_fail_alloc(n, 1);
	v = cancel(id);
	fake_fail_reads(-1, 0);
	fake_fail_writes(FAKE_KV, -1, 0);
	fake_fail_alloc(-1, 0);
	if (kind < 2)
		assert_int_equal(v, SP_REJECT); /* every one of these reads or writes is needed */
	if (v == SP_REJECT)
		check_refused(0x80, NOT_CANCELLED);
	fake_advance(1000);
	assert_int_equal(delivered(), v == SP_REJECT ? 1 : 0);
	down();
	assert_int_equal(up(), 0);
	fake_advance(1000);
	assert_int_equal(delivered(), v == SP_REJECT ? 1 : 0);
	check_store_empty();
	finish();
}

static void test_cancel_not_carried_out(void **state)
{
	long n;

	(void)state;
	finish();
	cancel_once(0, 0); /* the index row cannot be read */
	cancel_once(1, 0); /* nor written */
	for (n = 0; n < 8; n++)
		cancel_once(2, n); /* out of memory anywhere */
}

static void test_option_too_large(void **state)
{
	static const struct sp_opt huge[] = { { "max", "999999999999y" } };

	(void)state;
	down();
	assert_int_equal(fake_load(sluice_plugin_init, huge, 1), -1);
	assert_int_equal(fake_log_grep("bad option plugin_opt_max 999999999999y: too large"), 1);
	assert_int_equal(fake_live_blocks(), 0);
	fake_routed_clear();
}

/* --- out of memory -------------------------------------------------------- */

/*
 * One allocation fails, the n-th from the PUBLISH on (through its release).
 * Whatever fails, nothing leaks or crashes: a refused message (0x80) never
 * goes out, one taken goes out once, in this run (retried when a failure
 * hit its release), and not again after a restart.
 */
static bool oom_once(const char *topic, long n)
{
	enum sp_verdict v;
	bool hit;

	fake_reset();
	assert_int_equal(up(), 0);
	fake_fail_alloc(n, 1);
	v = fake_publish(topic, "p", 1, NULL);
	fake_advance(10000);
	hit = fake_alloc_failures() != 0;
	fake_fail_alloc(-1, 0);
	if (v == SP_REJECT)
		check_refused(0x80, STORED);
	else
		assert_int_equal(v, SP_TAKE);
	assert_int_equal(delivered(), v == SP_TAKE ? 1 : 0);
	assert_int_equal(fake_log_grep("lost"), 0);
	check_store_empty();
	down();
	assert_int_equal(up(), 0);
	fake_advance(10000);
	assert_int_equal(delivered(), v == SP_TAKE ? 1 : 0);
	finish();
	return hit;
}

static void test_out_of_memory(void **state)
{
	long n;

	(void)state;
	finish(); /* oom_once() starts from nothing each time */
	for (n = 0; oom_once("$delayed/1/m", n); n++) /* kept in memory */
		;
	assert_true(n > 10); /* the failures did reach the plugin */
	for (n = 0; oom_once("$delayed/5/m", n); n++) /* read back from the store */
		;
	assert_true(n > 10);
}

/* --- the fake's API 2 calls ------------------------------------------------- */

static void test_fake_deliver(void **state)
{
	struct sp_msg *m = fake_msg("t/1", "x", 1, NULL);
	const struct fake_delivery *d;

	(void)state;
	assert_true(SP_HOST_HAS(H, deliver));
	assert_int_equal(H->deliver(fake_self(), m, "c1", NULL, NULL), 1);
	fake_deliver_returns(0);
	assert_int_equal(H->deliver(fake_self(), m, NULL, "g", "t/+"), 0);
	fake_advance(5);
	fake_deliver_returns(-1);
	assert_int_equal(H->deliver(fake_self(), m, "c2", NULL, NULL), -1);
	fake_deliver_returns(1);
	/* Bad calls: not kept. */
	assert_int_equal(H->deliver(fake_self(), NULL, "c", NULL, NULL), -1);
	assert_int_equal(H->deliver(fake_self(), m, NULL, NULL, NULL), -1);
	assert_int_equal(H->deliver(fake_self(), m, NULL, "g", NULL), -1);
	assert_int_equal(fake_delivered_count(), 3);
	d = fake_delivered(0);
	assert_true(d->m == m);
	assert_string_equal(d->client_id, "c1");
	assert_null(d->share_group);
	assert_null(d->share_filter);
	assert_true(d->wall == FAKE_WALL0);
	d = fake_delivered(1);
	assert_null(d->client_id);
	assert_string_equal(d->share_group, "g");
	assert_string_equal(d->share_filter, "t/+");
	d = fake_delivered(2);
	assert_string_equal(d->client_id, "c2");
	assert_true(d->wall == FAKE_WALL0 + 5);
	assert_null(fake_delivered(3));
	H->msg_unref(m);
	assert_int_equal(fake_live_msgs(), 1); /* the fake's references */
	fake_delivered_clear();
	assert_int_equal(fake_live_msgs(), 0);
	assert_int_equal(fake_delivered_count(), 0);
	assert_int_equal(fake_misuse(), 0);
	fake_set_host_size(offsetof(struct sp_host, deliver)); /* an API 1 host */
	assert_false(SP_HOST_HAS(H, deliver));
	assert_false(SP_HOST_HAS(H, topic_match));
	assert_false(SP_HOST_HAS(H, after_commit));
}

static void test_fake_topic_match(void **state)
{
	static const struct spec_case more[] = {
		{ "a/#/b", "a/x/b", false }, /* '#' not last: invalid */
		{ "a#", "a", false },
		{ "a/b#", "a/b", false }, /* not a whole level */
		{ "a+", "a", false },
		{ "+a/b", "xa/b", false },
		{ "", "a", false },
		{ "a", "", false },
		{ "a/+", "a/+", false }, /* a topic name has no wildcards */
		{ "#", "a/#", false },
		{ "a/+/c", "a/b/c", true },
		{ "+/+/+", "a/b/c", true },
		{ "+/+", "a/b/c", false },
		{ "a/b/c/#", "a/b/c", true },
		{ "a/b/#", "a/bc", false },
		{ "$SYS/+/x", "$SYS/a/x", true },
		{ "+/a", "$SYS/a", false }, /* [MQTT-4.7.2-1] */
		{ "/#", "/", true },
		{ "#", "a", true },
	};
	size_t i;

	(void)state;
	assert_true(SP_HOST_HAS(H, topic_match));
	for (i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
		print_message("spec %zu: %s %s\n", i, spec[i].filter, spec[i].topic);
		assert_int_equal(H->topic_match(spec[i].filter, spec[i].topic), spec[i].match);
	}
	for (i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
		print_message("more %zu: %s %s\n", i, more[i].filter, more[i].topic);
		assert_int_equal(H->topic_match(more[i].filter, more[i].topic), more[i].match);
	}
	assert_false(H->topic_match(NULL, "a"));
	assert_false(H->topic_match("a", NULL));
}

static int commit_order[8], commit_seen[8];
static size_t n_commit;

static void on_commit(void *arg, int status)
{
	commit_order[n_commit] = (int)(intptr_t)arg;
	commit_seen[n_commit++] = status;
}

static void on_cold(void *arg, const void *val, size_t vlen)
{
	(void)val;
	(void)vlen;
	commit_order[n_commit] = (int)(intptr_t)arg;
	commit_seen[n_commit++] = 1;
}

static void test_fake_after_commit(void **state)
{
	struct sp_plugin *self = fake_self();

	(void)state;
	n_commit = 0;
	assert_true(SP_HOST_HAS(H, after_commit));
	assert_int_equal(H->after_commit(self, on_commit, (void *)1), 0);
	assert_int_equal(n_commit, 0); /* never inside the call */
	assert_int_equal(fake_commits(), 1);
	assert_int_equal(H->after_commit(self, on_commit, (void *)2), 0);
	fake_commit_status(-ENOSPC); /* the commit fails: read when they run */
	assert_int_equal(fake_run_pending(), 2);
	assert_int_equal(n_commit, 2);
	assert_int_equal(commit_order[0], 1);
	assert_int_equal(commit_order[1], 2);
	assert_int_equal(commit_seen[0], -ENOSPC);
	assert_int_equal(commit_seen[1], -ENOSPC);
	assert_int_equal(fake_commits(), 0);
	/* In request order with cold reads; fake_advance() runs them too. */
	fake_commit_status(0);
	assert_int_equal(H->cold_put(self, "k", 1, "v", 1), 0);
	assert_int_equal(H->cold_get(self, "k", 1, on_cold, (void *)3), 0);
	assert_int_equal(H->after_commit(self, on_commit, (void *)4), 0);
	assert_int_equal(n_commit, 2);
	fake_advance(0);
	assert_int_equal(n_commit, 4);
	assert_int_equal(commit_order[2], 3);
	assert_int_equal(commit_order[3], 4);
	assert_int_equal(commit_seen[3], 0);
	/* Out of memory: -1, and fn never runs. Bad calls too. */
	fake_fail_alloc(0, 1);
	assert_int_equal(H->after_commit(self, on_commit, (void *)5), -1);
	assert_int_equal(H->after_commit(self, NULL, NULL), -1);
	assert_int_equal(fake_commits(), 0);
	/* An unload drops what has not run. */
	assert_int_equal(H->after_commit(self, on_commit, (void *)6), 0);
	fake_unload(NULL);
	assert_int_equal(fake_commits(), 0);
	fake_advance(10);
	assert_int_equal(n_commit, 4);
	assert_int_equal(fake_misuse(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_version_and_init, setup, teardown),
		cmocka_unit_test_setup_teardown(test_topic_delay_on_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ack_message_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delay_ms_property, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_at_property, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fractional_seconds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_ms_publish_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expiry_counts_from_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_delayed_passes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_by_publisher, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_by_another_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_unknown_or_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_on_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_overdue_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_then_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_payloads_in_cold_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_without_del_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_burst_across_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sys_statistics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_route_failure_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_failure_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index_write_failure_after_route, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_index_unreadable_at_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index_unreadable_at_publish, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_write_failures_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cold_put_failure_keeps_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_failures_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_payload_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_not_carried_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_option_too_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fake_deliver, setup_bare, teardown),
		cmocka_unit_test_setup_teardown(test_fake_topic_match, setup_bare, teardown),
		cmocka_unit_test_setup_teardown(test_fake_after_commit, setup_bare, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
