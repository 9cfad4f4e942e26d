/*
 * test_retry_plugin.c - the consumer retry plugin (plugins/retry/retry.c
 * with retryparse.c) driven through its entry points against the fake host
 * (fake_host.c): no broker, fake time, a fake store that survives a reload.
 *
 * Covered: a refusal (NACKED) brings the message back to the same client
 * after each back-off step (never before), with delivery-count 2, 3, ...,
 * the old one replaced, every other user property kept in order, retain
 * cleared, the expiry deadline unchanged, the last step repeating; a shared
 * group's refusal goes back to the group; after max_attempts the dead
 * letter on $DLQ/{client or group}/{topic} with original-topic,
 * delivery-count, reason-code and consumer and a warning; a dead letter
 * nobody took waits in the store for a SUBSCRIBE that matches it (plain or
 * shared, not another filter), is handed over from the 0 ms timer and then
 * forgotten, or is dropped after dlq_retention and beyond dlq_max with a
 * log line; a retry its subscription no longer takes becomes a dead letter;
 * an expired message is not retried; a refused dead letter is not retried;
 * restarts and crashes (pending retries and waiting dead letters restored,
 * due ones sent at once, the rest on time, read back from the cold store);
 * $SYS statistics; bad options; an older host. Failures: store writes that
 * fail are tried again until stored, a message that cannot be read is
 * given up after some tries with a log line, and out of memory at every
 * allocation of a refusal and its retry either retries once or logs the
 * loss. Every test ends with end(): no message and no block left, no misuse.
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
#include "retryparse.h"

#define H fake_host()

static const struct sp_opt opts[] = {
	{ "backoff", "200ms,400ms" },
	{ "max_attempts", "3" },
	{ "sys_interval", "0" },
};
#define N_OPTS 3

/* --- helpers -------------------------------------------------------------- */

static int up(void)
{
	return up_with(opts, N_OPTS);
}

/* Delivered messages are the fake's: given back before the checks of down(). */
static void end(void)
{
	fake_delivered_clear();
	finish();
}

/* The setup's plugin goes; it comes back with options o. */
static void reload(const struct sp_opt *o, int n)
{
	fake_delivered_clear();
	down();
	assert_int_equal(up_with(o, n), 0);
}

static void restart(void)
{
	reload(opts, N_OPTS);
}

/* A SIGKILL: no STOP, the reads and timers vanish, the store keeps what was written. */
static void crash_restart(void)
{
	fake_delivered_clear();
	fake_unload(sluice_plugin_cleanup);
	assert_int_equal(fake_live_blocks(), 0);
	assert_int_equal(fake_live_msgs(), fake_routed_count());
	assert_int_equal(up(), 0);
}

/* client refuses m with reason; group/filter for a shared subscription (else NULL). */
static void nack_as(const char *client, struct sp_msg *m, uint8_t reason, const char *group,
		    const char *filter)
{
	struct sp_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.client_id = client;
	ev.protocol = 5;
	ev.msg = m;
	ev.qos = 1;
	ev.reason = reason;
	ev.share_group = group;
	ev.share_filter = filter;
	assert_int_equal(fake_fire(SP_EV_NACKED, &ev, NULL), 0);
}

static void nack(struct sp_msg *m, uint8_t reason)
{
	nack_as("sub", m, reason, NULL, NULL);
}

/* nack(), and m's reference goes: the plugin keeps its own. */
static void nack_take(struct sp_msg *m, uint8_t reason)
{
	nack(m, reason);
	H->msg_unref(m);
}

/* Nothing was redelivered and nothing published. */
static void nothing_out(void)
{
	assert_int_equal(fake_delivered_count(), 0);
	assert_int_equal(fake_routed_count(), 0);
}

static void subscribe(const char *client, const char *filter)
{
	struct sp_event ev;

	fake_subscribe(client, filter);
	memset(&ev, 0, sizeof(ev));
	ev.client_id = client;
	ev.protocol = 5;
	ev.filter = filter;
	ev.qos = 1;
	assert_int_equal(fake_fire(SP_EV_SUBSCRIBE, &ev, NULL), 0);
	assert_int_equal(fake_result()->verdict, SP_PASS);
}

static const struct fake_delivery *last_delivered(void)
{
	size_t n = fake_delivered_count();

	return n ? fake_delivered(n - 1) : NULL;
}

static void expect_prop(const struct sp_msg *m, const char *key, const char *val)
{
	const char *v = fake_msg_prop(m, key);

	assert_non_null(v);
	assert_string_equal(v, val);
}

/* How many user properties of m have key. */
static size_t count_prop(const struct sp_msg *m, const char *key)
{
	const char *k, *v;
	size_t i, n = 0;

	for (i = 0; !fake_msg_prop_at(m, i, &k, &v); i++)
		n += !strcmp(k, key);
	return n;
}

static bool has_prefix(const struct sp_msg *m, const char *prefix)
{
	return !strncmp(H->msg_topic(m), prefix, strlen(prefix));
}

/* The n-th routed message whose topic starts with prefix, or NULL. */
static struct sp_msg *routed_with(const char *prefix, size_t nth)
{
	for (size_t j = 0; j < fake_routed_count(); j++)
		if (has_prefix(fake_routed(j), prefix) && !nth--)
			return fake_routed(j);
	return NULL;
}

static size_t rows(char prefix)
{
	const void *k, *v;
	size_t kl, vl, i, n = 0;

	for (i = 0; !fake_store_at(FAKE_KV, i, &k, &kl, &v, &vl); i++)
		n += kl == RETRY_KEY_LEN && *(const char *)k == prefix;
	return n;
}

/* Refuses the last delivery (as sub) and checks the next one comes after wait ms, not before. */
static const struct fake_delivery *refuse_and_wait(uint8_t reason, uint64_t wait)
{
	size_t n = fake_delivered_count();

	nack(last_delivered()->m, reason);
	fake_advance(wait - 1);
	assert_int_equal(fake_delivered_count(), n);
	fake_advance(1);
	assert_int_equal(fake_delivered_count(), n + 1);
	return last_delivered();
}

/* --- retries -------------------------------------------------------------- */

static void test_retry_with_backoff_and_count(void **state)
{
	struct sp_msg *m = fake_msg("orders/new", "p", 1, "a", "1", NULL);
	const struct fake_delivery *d;

	(void)state;
	nack_take(m, 0x80);
	assert_int_equal(rows(RETRY_PFX_RETRY), 1); /* stored at once */
	assert_int_equal(fake_store_count(FAKE_COLD), 1);
	fake_advance(199);
	assert_int_equal(fake_delivered_count(), 0);
	fake_advance(1);
	assert_int_equal(fake_delivered_count(), 1);
	d = last_delivered();
	assert_string_equal(d->client_id, "sub");
	assert_null(d->share_group);
	assert_string_equal(H->msg_topic(d->m), "orders/new");
	assert_true(fake_msg_payload_is(d->m, "p"));
	expect_prop(d->m, "delivery-count", "2");
	expect_prop(d->m, "a", "1");
	assert_int_equal(rows(RETRY_PFX_RETRY), 0); /* done with */
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	d = refuse_and_wait(0x80, 400);
	expect_prop(d->m, "delivery-count", "3");
	assert_int_equal(count_prop(d->m, "delivery-count"), 1);
	end();
}

/* Properties in order, the old delivery-count replaced; QoS, expiry deadline, retain cleared. */
static void test_redelivery_keeps_the_message(void **state)
{
	static const char *const pairs[] = { "x", "1", "delivery-count", "2", "y", "2" };
	struct sp_msg_spec spec;
	struct sp_msg *m;
	const struct fake_delivery *d;
	const char *k, *v;
	uint64_t deadline;

	(void)state;
	memset(&spec, 0, sizeof(spec));
	spec.topic = "t";
	spec.topic_len = 1;
	spec.payload = "body";
	spec.payload_len = 4;
	spec.qos = 2;
	spec.expiry_s = 60;
	m = fake_msg_build(&spec, pairs, 3);
	deadline = H->msg_expiry(m);
	fake_advance(1000);
	nack(m, 0x83); /* attempt 2 failed: attempt 3 after the second step */
	H->msg_unref(m);
	fake_advance(399);
	assert_int_equal(fake_delivered_count(), 0);
	fake_advance(1);
	d = last_delivered();
	assert_non_null(d);
	assert_int_equal(H->msg_qos(d->m), 2);
	assert_true(H->msg_expiry(d->m) == deadline); /* counting on, not restarted */
	assert_int_equal(fake_msg_n_props(d->m), 3);
	assert_int_equal(fake_msg_prop_at(d->m, 0, &k, &v), 0);
	assert_string_equal(k, "x");
	assert_int_equal(fake_msg_prop_at(d->m, 1, &k, &v), 0);
	assert_string_equal(k, "y");
	assert_int_equal(fake_msg_prop_at(d->m, 2, &k, &v), 0);
	assert_string_equal(k, "delivery-count");
	assert_string_equal(v, "3");
	/* A retained message comes back without the flag, its user properties kept. */
	spec.retain = true;
	m = fake_msg_build(&spec, pairs, 3);
	nack_take(m, 0x80);
	fake_advance(400);
	d = last_delivered();
	assert_false(H->msg_retain(d->m));
	expect_prop(d->m, "x", "1");
	expect_prop(d->m, "y", "2");
	expect_prop(d->m, "delivery-count", "3");
	assert_true(fake_msg_payload_is(d->m, "body"));
	assert_string_equal(H->msg_sender(d->m), "client");
	end();
}

static void test_last_step_repeats(void **state)
{
	static const struct sp_opt o[] = { { "backoff", "100ms,300ms" },
					   { "max_attempts", "6" },
					   { "sys_interval", "0" } };
	struct sp_msg *m;
	char want[4];
	int i;

	(void)state;
	reload(o, 3);
	m = fake_msg("t", "p", 1, NULL);
	nack_take(m, 0x80);
	fake_advance(100);
	assert_int_equal(fake_delivered_count(), 1);
	for (i = 3; i <= 5; i++) {
		const struct fake_delivery *d = refuse_and_wait(0x80, 300);

		snprintf(want, sizeof(want), "%d", i);
		expect_prop(d->m, "delivery-count", want);
	}
	end();
}

static void test_shared_group_retry_and_dead_letter(void **state)
{
	struct sp_msg *m = fake_msg("jobs/1", "p", 1, NULL);
	const struct fake_delivery *d;
	struct sp_msg *dl;

	(void)state;
	nack_as("w1", m, 0x80, "g", "jobs/#");
	H->msg_unref(m);
	fake_advance(200);
	d = last_delivered();
	assert_non_null(d);
	assert_null(d->client_id);
	assert_string_equal(d->share_group, "g");
	assert_string_equal(d->share_filter, "jobs/#");
	expect_prop(d->m, "delivery-count", "2");
	nack_as("w2", d->m, 0x80, "g", "jobs/#"); /* the other member this time */
	fake_advance(400);
	d = last_delivered();
	expect_prop(d->m, "delivery-count", "3");
	nack_as("w1", d->m, 0x87, "g", "jobs/#");
	assert_int_equal(fake_delivered_count(), 2);
	dl = routed_with("$DLQ/", 0);
	assert_non_null(dl);
	assert_string_equal(H->msg_topic(dl), "$DLQ/g/jobs/1");
	expect_prop(dl, "original-topic", "jobs/1");
	expect_prop(dl, "delivery-count", "3");
	expect_prop(dl, "reason-code", "0x87");
	expect_prop(dl, "consumer", "w1");
	assert_int_equal(count_prop(dl, "delivery-count"), 1);
	assert_int_equal(fake_log_grep("'w1' refused 'jobs/1' 3 time(s), last with 0x87"), 1);
	assert_int_equal(rows(RETRY_PFX_DEAD), 0); /* it reached a subscriber: not kept */
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	end();
}

static void test_dead_letter_plain(void **state)
{
	struct sp_msg *m = fake_msg("a/b", "p", 1, "delivery-count", "3", "k", "v", NULL);
	struct sp_msg *dl;

	(void)state;
	nack_as("c+1", m, 0x80, NULL, NULL); /* the third failure: no retry */
	H->msg_unref(m);
	fake_advance(1000);
	assert_int_equal(fake_delivered_count(), 0);
	dl = routed_with("$DLQ/", 0);
	assert_non_null(dl);
	assert_string_equal(H->msg_topic(dl), "$DLQ/c_1/a/b"); /* '+' cannot be in a topic */
	expect_prop(dl, "k", "v");
	expect_prop(dl, "original-topic", "a/b");
	expect_prop(dl, "delivery-count", "3");
	expect_prop(dl, "reason-code", "0x80");
	expect_prop(dl, "consumer", "c+1");
	assert_int_equal(fake_log_grep("dead letter on '$DLQ/c_1/a/b'"), 1);
	end();
}

/* --- dead letters waiting ---------------------------------------------------- */

static void dead_letter_waiting(const char *topic, const char *payload)
{
	struct sp_msg *m = fake_msg(topic, payload, 1, "delivery-count", "3", NULL);

	fake_route_returns(0);
	nack_take(m, 0x80);
	fake_route_returns(1);
}

/* Every refusal a dead letter at once, and one more option. */
static void reload_dead_letters(const char *key, const char *value)
{
	const struct sp_opt o[] = { { "max_attempts", "1" },
				    { key, value },
				    { "sys_interval", "0" } };

	reload(o, 3);
}

static void test_dead_letter_waits_for_subscriber(void **state)
{
	const struct fake_delivery *d;

	(void)state;
	dead_letter_waiting("t/1", "one");
	dead_letter_waiting("u/1", "two");
	assert_int_equal(rows(RETRY_PFX_DEAD), 2);
	assert_int_equal(fake_store_count(FAKE_COLD), 2);
	subscribe("x", "other/#"); /* matches neither */
	fake_advance(10);
	assert_int_equal(fake_delivered_count(), 0);
	subscribe("x", "$DLQ/sub/t/#");
	assert_int_equal(fake_delivered_count(), 0); /* not in the SUBSCRIBE: applied after it */
	fake_advance(0);
	fake_run_pending();
	assert_int_equal(fake_delivered_count(), 1);
	d = last_delivered();
	assert_string_equal(d->client_id, "x");
	assert_string_equal(H->msg_topic(d->m), "$DLQ/sub/t/1");
	assert_true(fake_msg_payload_is(d->m, "one"));
	expect_prop(d->m, "original-topic", "t/1");
	assert_int_equal(rows(RETRY_PFX_DEAD), 1);
	/* A shared subscription takes the other. */
	subscribe("y", "$share/q/$DLQ/+/u/#");
	fake_advance(1);
	d = last_delivered();
	assert_int_equal(fake_delivered_count(), 2);
	assert_null(d->client_id);
	assert_string_equal(d->share_group, "q");
	assert_string_equal(d->share_filter, "$DLQ/+/u/#");
	assert_int_equal(rows(RETRY_PFX_DEAD), 0);
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	end();
}

/* After a restart, waiting dead letters are routed once: subscribers may exist already. */
static void test_dead_letter_routed_after_restart(void **state)
{
	size_t before;

	(void)state;
	dead_letter_waiting("t/1", "one");
	dead_letter_waiting("u/1", "two");
	fake_route_returns(0); /* nobody yet: they wait on */
	restart();
	before = fake_routed_count();
	fake_advance(0);
	fake_run_pending();
	assert_int_equal(fake_routed_count(), before + 2);
	assert_int_equal(rows(RETRY_PFX_DEAD), 2);
	fake_route_returns(1); /* a persistent session subscribes to $DLQ/# and is restored */
	restart();
	before = fake_routed_count();
	fake_advance(0);
	fake_run_pending();
	assert_int_equal(fake_routed_count(), before + 2);
	assert_string_equal(H->msg_topic(fake_routed(before)), "$DLQ/sub/t/1");
	assert_int_equal(rows(RETRY_PFX_DEAD), 0);
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	end();
}

static void test_dead_letter_not_taken_keeps_waiting(void **state)
{
	(void)state;
	dead_letter_waiting("t", "p");
	fake_deliver_returns(0); /* a plugin skipped it, say */
	subscribe("x", "$DLQ/#");
	fake_advance(1);
	assert_int_equal(fake_delivered_count(), 1);
	assert_int_equal(rows(RETRY_PFX_DEAD), 1);
	fake_deliver_returns(1);
	subscribe("z", "$DLQ/sub/t");
	fake_advance(1);
	assert_int_equal(fake_delivered_count(), 2);
	assert_string_equal(last_delivered()->client_id, "z");
	assert_int_equal(rows(RETRY_PFX_DEAD), 0);
	end();
}

static void test_dead_letter_retention(void **state)
{
	(void)state;
	reload_dead_letters("dlq_retention", "10s");
	dead_letter_waiting("t", "old");
	fake_advance(5000);
	dead_letter_waiting("t", "new");
	fake_advance(4999);
	assert_int_equal(rows(RETRY_PFX_DEAD), 2);
	fake_advance(1);
	assert_int_equal(rows(RETRY_PFX_DEAD), 1);
	assert_int_equal(fake_log_grep("dead letter on '$DLQ/sub/t' dropped: no subscriber"), 1);
	fake_advance(5000);
	assert_int_equal(rows(RETRY_PFX_DEAD), 0);
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	assert_int_equal(fake_log_grep("dropped: no subscriber"), 2);
	end();
}

static void test_dead_letter_max(void **state)
{
	(void)state;
	reload_dead_letters("dlq_max", "2");
	dead_letter_waiting("t/1", "1");
	dead_letter_waiting("t/2", "2");
	dead_letter_waiting("t/3", "3");
	assert_int_equal(rows(RETRY_PFX_DEAD), 2);
	assert_int_equal(fake_log_grep("'$DLQ/sub/t/1' dropped: more than plugin_opt_dlq_max"), 1);
	subscribe("x", "$DLQ/#");
	fake_advance(1);
	assert_int_equal(fake_delivered_count(), 2);
	assert_true(fake_msg_payload_is(fake_delivered(0)->m, "2"));
	assert_true(fake_msg_payload_is(fake_delivered(1)->m, "3"));
	/* dlq_max 0: nothing waits, and each drop says so. */
	reload_dead_letters("dlq_max", "0");
	dead_letter_waiting("t/4", "4");
	assert_int_equal(rows(RETRY_PFX_DEAD), 0);
	assert_int_equal(fake_log_grep("'$DLQ/sub/t/4' dropped: more than plugin_opt_dlq_max"), 1);
	end();
}

/* --- retries that cannot go ----------------------------------------------------- */

static void test_retry_not_taken_becomes_dead_letter(void **state)
{
	struct sp_msg *m = fake_msg("t", "p", 1, NULL), *dl;

	(void)state;
	nack_take(m, 0x80);
	fake_deliver_returns(0); /* the session is gone */
	fake_advance(200);
	dl = routed_with("$DLQ/", 0);
	assert_non_null(dl);
	assert_string_equal(H->msg_topic(dl), "$DLQ/sub/t");
	expect_prop(dl, "delivery-count", "1"); /* refused once; attempt 2 never happened */
	assert_int_equal(fake_log_grep("not taken by 'sub'"), 1);
	assert_int_equal(rows(RETRY_PFX_RETRY), 0);
	end();
}

/* Still subscribed, but not taken: its queue is full, so the same attempt waits again. */
static void test_retry_queue_full_waits(void **state)
{
	struct sp_msg *m = fake_msg("t", "p", 1, NULL);

	(void)state;
	fake_subscribe("sub", "t");
	nack_take(m, 0x80);
	fake_deliver_returns(0);
	fake_advance(200);
	assert_null(routed_with("$DLQ/", 0));
	assert_int_equal(fake_log_grep("its queue is full"), 1);
	assert_int_equal(rows(RETRY_PFX_RETRY), 1);
	fake_deliver_returns(1);
	fake_delivered_clear();
	fake_advance(200);
	assert_int_equal(fake_delivered_count(), 1);
	expect_prop(fake_delivered(0)->m, "delivery-count", "2");
	assert_int_equal(rows(RETRY_PFX_RETRY), 0);
	end();
}

static void test_expired_not_retried(void **state)
{
	struct sp_msg_spec spec;
	struct sp_msg *m;

	(void)state;
	memset(&spec, 0, sizeof(spec));
	spec.topic = "t";
	spec.topic_len = 1;
	spec.qos = 1;
	spec.expiry_s = 1;
	m = fake_msg_build(&spec, NULL, 0);
	fake_advance(900);
	nack_take(m, 0x80);
	fake_advance(200);
	nothing_out();
	assert_int_equal(rows(RETRY_PFX_RETRY), 0);
	assert_int_equal(fake_log_grep("expired"), 1);
	end();
}

static void test_dead_letter_refusal_not_retried(void **state)
{
	struct sp_msg *m = fake_msg("$DLQ/g/t", "p", 1, "delivery-count", "3", NULL);

	(void)state;
	nack_take(m, 0x80);
	fake_advance(1000);
	nothing_out();
	assert_int_equal(fake_log_grep("refused the dead letter on '$DLQ/g/t'"), 1);
	end();
}

static void test_malformed_count_is_first_attempt(void **state)
{
	struct sp_msg *m = fake_msg("t", "p", 1, "delivery-count", "lots", NULL);

	(void)state;
	nack_take(m, 0x80);
	fake_advance(200);
	expect_prop(last_delivered()->m, "delivery-count", "2");
	end();
}

/* --- restarts ------------------------------------------------------------------ */

static void test_restart_keeps_due_times(void **state)
{
	struct sp_msg *a = fake_msg("a", "1", 1, NULL);
	struct sp_msg *b = fake_msg("b", "2", 1, "delivery-count", "2", NULL);
	const struct fake_delivery *d;

	(void)state;
	nack(a, 0x80); /* due in 200 ms */
	nack_as("w", b, 0x80, "g", "#"); /* due in 400 ms */
	H->msg_unref(a);
	H->msg_unref(b);
	restart();
	assert_int_equal(fake_log_grep("2 pending retries and 0 waiting"), 1);
	fake_advance(199);
	assert_int_equal(fake_delivered_count(), 0);
	fake_advance(1);
	assert_int_equal(fake_delivered_count(), 1);
	d = last_delivered();
	assert_string_equal(d->client_id, "sub");
	assert_true(fake_msg_payload_is(d->m, "1"));
	expect_prop(d->m, "delivery-count", "2");
	fake_advance(200);
	d = last_delivered();
	assert_int_equal(fake_delivered_count(), 2);
	assert_string_equal(d->share_group, "g");
	assert_string_equal(d->share_filter, "#");
	expect_prop(d->m, "delivery-count", "3");
	assert_int_equal(rows(RETRY_PFX_RETRY), 0);
	end();
}

static void test_crash_overdue_at_once(void **state)
{
	struct sp_msg *m = fake_msg("t", "p", 1, NULL);

	(void)state;
	nack_take(m, 0x80);
	dead_letter_waiting("dead", "d");
	fake_unload(sluice_plugin_cleanup); /* SIGKILL */
	fake_set_wall(fake_now() + 5000); /* down for 5 s */
	assert_int_equal(up(), 0);
	assert_int_equal(fake_delivered_count(), 0);
	fake_run_pending(); /* the message read back */
	assert_int_equal(fake_delivered_count(), 1);
	expect_prop(last_delivered()->m, "delivery-count", "2");
	subscribe("x", "$DLQ/sub/dead");
	fake_advance(1);
	assert_int_equal(fake_delivered_count(), 2);
	assert_true(fake_msg_payload_is(last_delivered()->m, "d"));
	end();
}

static void test_crash_while_reading(void **state)
{
	struct sp_msg *m = fake_msg("t", "p", 1, NULL);

	(void)state;
	nack_take(m, 0x80);
	restart(); /* not in memory any more */
	fake_set_wall(fake_now() + 1000);
	crash_restart(); /* the START asked for it; the crash dropped the read */
	fake_run_pending();
	assert_int_equal(fake_delivered_count(), 1);
	end();
}

/* --- $SYS, options, host --------------------------------------------------------- */

static const char *sys_value(const char *leaf)
{
	char topic[64];
	const char *v = NULL;
	size_t len;

	snprintf(topic, sizeof(topic), "$SYS/broker/retry/%s", leaf);
	for (size_t j = 0; j < fake_routed_count(); j++)
		if (!strcmp(H->msg_topic(fake_routed(j)), topic))
			v = H->msg_payload(fake_routed(j), &len);
	return v;
}

static void expect_sys(const char *leaf, const char *want)
{
	const char *v = sys_value(leaf);
	size_t n = strlen(want);

	assert_non_null(v);
	assert_memory_equal(v, want, n);
}

static void test_sys_statistics(void **state)
{
	static const struct sp_opt o[] = { { "backoff", "200ms" },
					   { "max_attempts", "2" },
					   { "sys_interval", "1s" } };
	struct sp_msg *m;

	(void)state;
	reload(o, 3);
	m = fake_msg("t", "p", 1, NULL);
	expect_sys("pending", "0");
	assert_true(H->msg_retain(routed_with("$SYS/broker/retry/pending", 0)));
	nack(m, 0x80);
	nack_as("other", m, 0x80, NULL, NULL);
	H->msg_unref(m);
	fake_advance(200);
	nack(last_delivered()->m, 0x80); /* the second failure: a dead letter */
	fake_route_returns(0);
	m = fake_msg("u", "p", 1, "delivery-count", "2", NULL);
	nack(m, 0x80); /* waits */
	H->msg_unref(m);
	fake_route_returns(1);
	fake_advance(800);
	expect_sys("pending", "0");
	expect_sys("retried", "2");
	expect_sys("dead_lettered", "2");
	expect_sys("dlq_waiting", "1");
	end();
}

static void expect_bad_option(const char *key, const char *value)
{
	struct sp_opt o = { key, value };
	char want[128];

	fake_log_clear();
	assert_int_not_equal(fake_load(sluice_plugin_init, &o, 1), 0);
	snprintf(want, sizeof(want), "plugin_opt_%s", key);
	assert_int_equal(fake_log_grep(want), 1);
	assert_int_equal(fake_live_blocks(), 0);
}

static void test_bad_options(void **state)
{
	(void)state;
	expect_bad_option("backoff", "");
	expect_bad_option("backoff", "1s,,2s");
	expect_bad_option("backoff", "1x");
	expect_bad_option("backoff", "99999999999999999d");
	expect_bad_option("max_attempts", "0");
	expect_bad_option("max_attempts", "-1");
	expect_bad_option("max_attempts", "1000001");
	expect_bad_option("dlq_retention", "0");
	expect_bad_option("dlq_retention", "3 days");
	expect_bad_option("dlq_max", "x");
	expect_bad_option("sys_interval", "1.5s");
	expect_bad_option("bogus", "1");
	assert_int_equal(fake_load(sluice_plugin_init, opts, N_OPTS), 0);
	assert_int_equal(fake_start(), 0);
	fake_delivered_clear();
	finish();
}

static void test_older_host_refused(void **state)
{
	(void)state;
	fake_set_host_size(offsetof(struct sp_host, deliver));
	assert_int_not_equal(fake_load(sluice_plugin_init, opts, N_OPTS), 0);
	assert_int_equal(fake_log_grep("API 2"), 1);
	assert_int_equal(fake_live_blocks(), 0);
}

/* --- failures ------------------------------------------------------------------ */

static void test_store_write_failures_retried(void **state)
{
	static const struct sp_opt o[] = { { "backoff", "2s" }, { "sys_interval", "0" } };
	struct sp_msg *m;

	(void)state;
	reload(o, 2);
	m = fake_msg("t", "p", 1, NULL);
	fake_fail_writes(FAKE_KV, 0, -1);
	nack_take(m, 0x80);
	assert_int_equal(rows(RETRY_PFX_RETRY), 0);
	assert_int_equal(fake_store_count(FAKE_COLD), 0); /* the message's write undone */
	assert_int_equal(fake_log_grep("cannot store"), 1);
	fake_fail_writes(FAKE_KV, -1, 0);
	fake_advance(500);
	assert_int_equal(rows(RETRY_PFX_RETRY), 1); /* written from the timer */
	assert_int_equal(fake_store_count(FAKE_COLD), 1);
	fake_fail_writes(FAKE_KV, 0, -1); /* its delete fails: delivered once, deleted later */
	fake_advance(1500);
	assert_int_equal(fake_delivered_count(), 1);
	assert_int_equal(rows(RETRY_PFX_RETRY), 1);
	fake_fail_writes(FAKE_KV, -1, 0);
	fake_advance(500);
	assert_int_equal(rows(RETRY_PFX_RETRY), 0);
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	assert_int_equal(fake_delivered_count(), 1);
	end();
}

static void test_deliver_failure_retried(void **state)
{
	struct sp_msg *m = fake_msg("t", "p", 1, NULL);

	(void)state;
	nack_take(m, 0x80);
	fake_deliver_returns(-1);
	fake_advance(200);
	assert_int_equal(fake_delivered_count(), 1); /* tried: refused for lack of memory */
	fake_deliver_returns(1);
	fake_advance(500);
	assert_int_equal(fake_delivered_count(), 2);
	assert_int_equal(rows(RETRY_PFX_RETRY), 0);
	end();
}

static void test_unreadable_message_lost_with_a_log(void **state)
{
	struct sp_msg *m = fake_msg("t", "p", 1, NULL);
	const void *k, *v;
	size_t kl, vl;

	(void)state;
	nack_take(m, 0x80);
	fake_delivered_clear();
	down();
	/* The cold value vanished (a damaged store): every read answers absent. */
	assert_int_equal(fake_store_at(FAKE_COLD, 0, &k, &kl, &v, &vl), 0);
	{
		uint8_t key[RETRY_KEY_LEN];

		memcpy(key, k, sizeof(key));
		assert_int_equal(fake_load(sluice_plugin_init, opts, N_OPTS), 0);
		assert_int_equal(H->cold_del(fake_self(), key, sizeof(key)), 0);
		assert_int_equal(fake_start(), 0);
	}
	fake_advance(10000);
	assert_int_equal(fake_delivered_count(), 0);
	assert_int_equal(fake_log_grep("its message could not be read"), 1);
	assert_int_equal(rows(RETRY_PFX_RETRY), 0);
	end();
}

/* Every allocation of a refusal and its retry failing in turn: retried once, or the loss logged. */
static void test_out_of_memory(void **state)
{
	long i;

	(void)state;
	for (i = 0; i < 40; i++) {
		struct sp_msg *m = fake_msg("t", "p", 1, NULL);
		size_t before = fake_delivered_count();

		fake_log_clear();
		fake_fail_alloc(i, 1);
		nack(m, 0x80);
		fake_advance(100);
		fake_fail_alloc(-1, 0);
		H->msg_unref(m);
		fake_advance(2000);
		if (fake_delivered_count() == before) {
			if (fake_log_grep("not retried") != 1)
				for (size_t j = 0; j < fake_log_count(); j++)
					fprintf(stderr, "%ld: %s\n", i, fake_log_line(j));
			assert_true(fake_log_grep("not retried") == 1);
			continue;
		}
		assert_int_equal(fake_delivered_count(), before + 1);
		expect_prop(last_delivered()->m, "delivery-count", "2");
	}
	assert_int_equal(rows(RETRY_PFX_RETRY), 0);
	assert_int_equal(fake_store_count(FAKE_COLD), 0);
	end();
}

/* The same for a dead letter: it reaches its topic once, later if need be. */
static void test_dead_letter_out_of_memory(void **state)
{
	long i;

	(void)state;
	for (i = 0; i < 40; i++) {
		struct sp_msg *m = fake_msg("t", "p", 1, "delivery-count", "3", NULL);
		size_t before = fake_routed_count();

		fake_log_clear();
		fake_fail_alloc(i, 1);
		nack(m, 0x80);
		fake_fail_alloc(-1, 0);
		H->msg_unref(m);
		fake_advance(2000);
		if (fake_routed_count() == before) {
			assert_true(fake_log_grep("not retried") == 1);
			continue;
		}
		assert_int_equal(fake_routed_count(), before + 1);
		assert_string_equal(H->msg_topic(fake_routed(before)), "$DLQ/sub/t");
	}
	end();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_retry_with_backoff_and_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_redelivery_keeps_the_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_last_step_repeats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_group_retry_and_dead_letter, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter_waits_for_subscriber, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter_routed_after_restart, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter_not_taken_keeps_waiting, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter_retention, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter_max, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_not_taken_becomes_dead_letter, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_retry_queue_full_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expired_not_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter_refusal_not_retried, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_malformed_count_is_first_attempt, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_restart_keeps_due_times, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_overdue_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_while_reading, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sys_statistics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_options, setup_bare, teardown),
		cmocka_unit_test_setup_teardown(test_older_host_refused, setup_bare, teardown),
		cmocka_unit_test_setup_teardown(test_store_write_failures_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_failure_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_message_lost_with_a_log, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter_out_of_memory, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
