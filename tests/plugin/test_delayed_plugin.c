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
 * across two index chunks; transient out of memory at every allocation.
 * Every test ends with finish(): no message and no block left, no misuse.
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
#include "sched.h"

int sluice_plugin_version(void);
int sluice_plugin_init(const struct sp_host *host, struct sp_plugin *self,
		       const struct sp_opt *opts, int n_opts, void **udata);
void sluice_plugin_cleanup(void *udata);

#define H fake_host()

/* A maximum of 60 s; $SYS only once, at start, so that no stats timer runs. */
static const struct sp_opt opts[] = { { "max", "60" }, { "sys_interval", "0" } };

/* --- helpers -------------------------------------------------------------- */

static int up_with(const struct sp_opt *o, int n)
{
	if (fake_load(sluice_plugin_init, o, n))
		return -1;
	return fake_start();
}

static int up(void)
{
	return up_with(opts, 2);
}

/* As at shutdown: STOP leaves no timer, cleanup leaves no block or message of its own. */
static void down(void)
{
	assert_int_equal(fake_stop(), 0);
	assert_int_equal(fake_timers(), 0);
	fake_unload(sluice_plugin_cleanup);
	assert_int_equal(fake_live_blocks(), 0);
	assert_int_equal(fake_live_msgs(), fake_routed_count());
}

static void finish(void)
{
	down();
	fake_routed_clear();
	assert_int_equal(fake_live_msgs(), 0);
	assert_int_equal(fake_misuse(), 0);
}

static int setup(void **state)
{
	(void)state;
	fake_reset();
	return up();
}

static int teardown(void **state)
{
	(void)state;
	if (fake_loaded()) {
		fake_stop();
		fake_unload(sluice_plugin_cleanup);
	}
	fake_reset();
	return 0;
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
	struct sp_msg_spec spec = { .topic = "$delayed/5/e",
				    .topic_len = 12,
				    .payload = "x",
				    .payload_len = 1,
				    .qos = 1,
				    .expiry_s = 10 };
	struct sp_msg *m;
	uint64_t wall;

	(void)state;
	m = fake_msg_build(&spec, NULL, 0);
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
	check_refused(0x87, "only the client that published a delayed message may cancel it");
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
	check_refused(0x87, "only the client that published a delayed message may cancel it");
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

/* --- out of memory -------------------------------------------------------- */

/*
 * One allocation fails, the n-th from the PUBLISH on (through its release).
 * Whatever fails, nothing leaks or crashes, and a refused message never goes
 * out. One taken goes out once, possibly only after a restart (when it could
 * not be queued, or its index row not be read at release), or is lost with
 * an error in the log: delayed.c removes the entry before making the copy it
 * routes, so a failure there loses the message (reported, not fixed here).
 */
static bool oom_once(long n)
{
	enum sp_verdict v;
	size_t lost;
	bool hit;

	fake_reset();
	assert_int_equal(up(), 0);
	fake_fail_alloc(n, 1);
	v = fake_publish("$delayed/1/m", "p", 1, NULL);
	fake_advance(1000);
	hit = fake_alloc_failures() != 0;
	fake_fail_alloc(-1, 0);
	if (v == SP_REJECT)
		check_refused(0x83, "delayed message could not be stored");
	else
		assert_int_equal(v, SP_TAKE);
	lost = fake_log_grep("could not be routed");
	down();
	assert_int_equal(up(), 0);
	fake_advance(1000);
	assert_int_equal(delivered() + lost, v == SP_TAKE ? 1 : 0);
	finish();
	return hit;
}

static void test_out_of_memory(void **state)
{
	long n;

	(void)state;
	finish(); /* oom_once() starts from nothing each time */
	for (n = 0; oom_once(n); n++)
		;
	assert_true(n > 10); /* the failures did reach the plugin */
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
		cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
