/*
 * test_ordered_plugin.c - the ordered topics plugin (plugins/ordered/ordered.c
 * with keytab.c and the retry plugin's parsers) driven through its entry
 * points against the fake host (fake_host.c): no broker, fake time, a fake
 * store that survives a reload.
 *
 * Covered: no filter configured registers nothing; a bad filter fails init
 * with the configuration line (opt_where) in the log; the window of one
 * message per key (the first passes, the next of its key is kept, another
 * key passes, the ACK of the busy one redelivers the next to its client);
 * QoS 0 on an idle key leaves no state; the sharding-key user property
 * decides the key over the topic; a global filter makes one key of all its
 * topics; DROPPED with moving keeps the key busy, without it frees it; the
 * end of a session drops its waiting messages and their references; a
 * durable target's busy and waiting rows ("b", "w") are written and go
 * after the ACKs; a restart on the same store redelivers the waiting
 * message after its busy message's ACK, or at start when no busy row is
 * left; max_waiting refuses a PUBLISH with 0x97. Every test ends with end():
 * no message and no block left, no misuse.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_host.h"
#include "plugin_harness.h"

#define H fake_host()

static const struct sp_opt opts[] = {
	{ "keyed", "orders/#" },
	{ "sys_interval", "0" },
};
#define N_OPTS 2

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

/* A DELIVER of m to client's plain subscriptions at qos; its verdict. */
static enum sp_verdict deliver_to(const char *client, struct sp_msg *m, uint8_t qos)
{
	struct sp_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.client_id = client;
	ev.protocol = 5;
	ev.msg = m;
	ev.qos = qos;
	assert_int_equal(fake_fire(SP_EV_DELIVER, &ev, NULL), 0);
	return fake_result()->verdict;
}

/* The end of client's delivery of m: ACKED, or DROPPED (moving or not). */
static void done_as(enum sp_event_type type, const char *client, struct sp_msg *m, bool moving)
{
	struct sp_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.client_id = client;
	ev.protocol = 5;
	ev.msg = m;
	ev.qos = 1;
	ev.moving = moving;
	ev.why = "test";
	assert_int_equal(fake_fire(type, &ev, NULL), 0);
}

static void ack(const char *client, struct sp_msg *m)
{
	done_as(SP_EV_ACKED, client, m, false);
}

static void session_end(const char *client)
{
	struct sp_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.client_id = client;
	ev.protocol = 5;
	assert_int_equal(fake_fire(SP_EV_SESSION_END, &ev, NULL), 0);
}

/* The one call recorded since the last clear: a redeliver of a message with payload to client. */
static void redelivered_once(const char *client, const char *payload)
{
	const struct fake_delivery *d;

	assert_int_equal(fake_delivered_count(), 1);
	d = fake_delivered(0);
	assert_true(d->redeliver);
	assert_non_null(d->client_id);
	assert_string_equal(d->client_id, client);
	assert_null(d->share_group);
	assert_true(fake_msg_payload_is(d->m, payload));
}

/* How many kv rows start with prefix. */
static size_t rows(char prefix)
{
	const void *k, *v;
	size_t kl, vl, i, n = 0;

	for (i = 0; !fake_store_at(FAKE_KV, i, &k, &kl, &v, &vl); i++)
		n += kl && *(const char *)k == prefix;
	return n;
}

static void unref(struct sp_msg *m)
{
	H->msg_unref(m);
}

/* --- tests ---------------------------------------------------------------- */

static void test_no_filter_no_callback(void **state)
{
	static const struct sp_opt o[] = { { "max_waiting", "5" } };
	struct sp_msg *m1, *m2;

	(void)state;
	assert_int_equal(up_with(o, 1), 0);
	m1 = fake_msg("orders/k", "p1", 1, NULL);
	m2 = fake_msg("orders/k", "p2", 1, NULL);
	/* Nothing registered: both pass (the fake answers PASS without a callback). */
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	assert_int_equal(deliver_to("c", m2, 1), SP_PASS);
	ack("c", m1);
	fake_advance(0);
	assert_int_equal(fake_delivered_count(), 0);
	assert_int_equal(fake_timers(), 0);
	unref(m1);
	unref(m2);
	end();
}

static void test_bad_filter_fails_with_where(void **state)
{
	static const struct sp_opt bad0[] = { { "keyed", "a/#/b" } };
	static const struct sp_opt bad1[] = { { "keyed", "ok/#" }, { "global", "x+/y" } };
	static const struct sp_opt bad2[] = { { "keyed", "ok/#" }, { "max_waiting", "lots" } };

	(void)state;
	assert_int_not_equal(fake_load(sluice_plugin_init, bad0, 1), 0);
	assert_false(fake_loaded());
	assert_int_equal(fake_log_grep("test.conf:10"), 1);
	assert_int_equal(fake_log_grep("a/#/b"), 1);
	assert_int_equal(fake_live_blocks(), 0);

	fake_log_clear();
	assert_int_not_equal(fake_load(sluice_plugin_init, bad1, 2), 0);
	assert_int_equal(fake_log_grep("test.conf:11"), 1);
	assert_int_equal(fake_log_grep("test.conf:10"), 0);
	assert_int_equal(fake_live_blocks(), 0);

	fake_log_clear();
	assert_int_not_equal(fake_load(sluice_plugin_init, bad2, 2), 0);
	assert_int_equal(fake_log_grep("test.conf:11"), 1);
	assert_int_equal(fake_live_blocks(), 0);
	assert_int_equal(fake_misuse(), 0);
}

static void test_window_per_key(void **state)
{
	struct sp_msg *m1, *m2, *m3, *m4;

	(void)state;
	m1 = fake_msg("orders/k", "p1", 1, NULL);
	m2 = fake_msg("orders/k", "p2", 1, NULL);
	m3 = fake_msg("orders/other", "p3", 1, NULL);
	m4 = fake_msg("orders/k", "p4", 1, NULL);
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	assert_int_equal(deliver_to("c", m2, 1), SP_KEEP);
	assert_int_equal(deliver_to("c", m3, 1), SP_PASS);
	/* The same delivery offered again is still the one kept. */
	assert_int_equal(deliver_to("c", m2, 1), SP_KEEP);
	assert_int_equal(fake_delivered_count(), 0);

	/* An ACK of the other key's message changes nothing for k. */
	ack("c", m3);
	fake_advance(0);
	assert_int_equal(fake_delivered_count(), 0);

	ack("c", m1);
	fake_advance(0);
	redelivered_once("c", "p2");
	/* m2 is busy now: m4 waits behind it. */
	assert_int_equal(deliver_to("c", m4, 1), SP_KEEP);
	fake_delivered_clear();
	ack("c", m2);
	fake_advance(0);
	redelivered_once("c", "p4");
	fake_delivered_clear();
	ack("c", m4);
	fake_advance(0);
	assert_int_equal(fake_delivered_count(), 0);
	/* The key is idle again. */
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	ack("c", m1);
	fake_advance(0);
	unref(m1);
	unref(m2);
	unref(m3);
	unref(m4);
	end();
}

static void test_qos0_idle_key_no_state(void **state)
{
	struct sp_msg *m0, *m1, *m2, *other;

	(void)state;
	m0 = fake_msg("orders/k", "p0", 0, NULL);
	m1 = fake_msg("orders/k", "p1", 1, NULL);
	m2 = fake_msg("orders/k", "p2", 1, NULL);
	other = fake_msg("plain/k", "x", 1, NULL);
	assert_int_equal(deliver_to("c", m0, 0), SP_PASS);
	/* Nothing waits for a QoS 0 delivery: the next of its key passes too. */
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	ack("c", m1);
	fake_advance(0);
	/* Not on an ordered filter: never kept. */
	assert_int_equal(deliver_to("c", other, 1), SP_PASS);
	assert_int_equal(deliver_to("c", other, 1), SP_PASS);
	assert_int_equal(deliver_to("c", m2, 1), SP_PASS);
	ack("c", m2);
	fake_advance(0);
	assert_int_equal(fake_delivered_count(), 0);
	unref(m0);
	unref(m1);
	unref(m2);
	unref(other);
	end();
}

static void test_sharding_key_over_topic(void **state)
{
	struct sp_msg *a, *b, *plain;

	(void)state;
	a = fake_msg("orders/a", "pa", 1, "sharding-key", "X", NULL);
	b = fake_msg("orders/b", "pb", 1, "sharding-key", "X", NULL);
	plain = fake_msg("orders/a", "pc", 1, NULL);
	assert_int_equal(deliver_to("c", a, 1), SP_PASS);
	/* Another topic, the same sharding key: it waits. */
	assert_int_equal(deliver_to("c", b, 1), SP_KEEP);
	/* a's topic without a sharding key is a key of its own. */
	assert_int_equal(deliver_to("c", plain, 1), SP_PASS);
	ack("c", a);
	fake_advance(0);
	redelivered_once("c", "pb");
	ack("c", b);
	ack("c", plain);
	fake_advance(0);
	unref(a);
	unref(b);
	unref(plain);
	end();
}

static void test_global_filter_one_key(void **state)
{
	static const struct sp_opt o[] = { { "global", "events/#" }, { "sys_interval", "0" } };
	struct sp_msg *m1, *m2, *m3;

	(void)state;
	fake_delivered_clear();
	down();
	assert_int_equal(up_with(o, 2), 0);
	m1 = fake_msg("events/a", "p1", 1, NULL);
	m2 = fake_msg("events/b", "p2", 1, "sharding-key", "other", NULL);
	m3 = fake_msg("orders/a", "p3", 1, NULL);
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	/* Another topic (and a sharding key) under a global filter: the same key. */
	assert_int_equal(deliver_to("c", m2, 1), SP_KEEP);
	/* orders/# is not configured here. */
	assert_int_equal(deliver_to("c", m3, 1), SP_PASS);
	/* Another client is another target: its own window. */
	assert_int_equal(deliver_to("d", m2, 1), SP_PASS);
	ack("c", m1);
	fake_advance(0);
	redelivered_once("c", "p2");
	ack("c", m2);
	ack("d", m2);
	fake_advance(0);
	unref(m1);
	unref(m2);
	unref(m3);
	end();
}

static void test_dropped_moving_keeps_key(void **state)
{
	struct sp_msg *m1, *m2, *m3;

	(void)state;
	m1 = fake_msg("orders/k", "p1", 1, NULL);
	m2 = fake_msg("orders/k", "p2", 1, NULL);
	m3 = fake_msg("orders/k", "p3", 1, NULL);
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	assert_int_equal(deliver_to("c", m2, 1), SP_KEEP);
	done_as(SP_EV_DROPPED, "c", m1, true);
	fake_advance(0);
	assert_int_equal(fake_delivered_count(), 0);
	/* Still busy with m1: the next one waits too. */
	assert_int_equal(deliver_to("c", m3, 1), SP_KEEP);
	assert_int_equal(deliver_to("c", m2, 1), SP_KEEP);

	done_as(SP_EV_DROPPED, "c", m1, false);
	/* The release comes at the next turn, not inside the drop. */
	assert_int_equal(fake_delivered_count(), 0);
	fake_advance(0);
	redelivered_once("c", "p2");
	fake_delivered_clear();
	ack("c", m2);
	fake_advance(0);
	redelivered_once("c", "p3");
	fake_delivered_clear();
	ack("c", m3);
	fake_advance(0);
	assert_int_equal(fake_delivered_count(), 0);
	unref(m1);
	unref(m2);
	unref(m3);
	end();
}

static void test_session_end_drops_waiting(void **state)
{
	long base = fake_live_msgs();
	struct sp_msg *m1, *m2, *m3, *d1;

	(void)state;
	m1 = fake_msg("orders/k", "p1", 1, NULL);
	m2 = fake_msg("orders/k", "p2", 1, NULL);
	m3 = fake_msg("orders/k", "p3", 1, NULL);
	d1 = fake_msg("orders/k", "d1", 1, NULL);
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	assert_int_equal(deliver_to("c", m2, 1), SP_KEEP);
	assert_int_equal(deliver_to("c", m3, 1), SP_KEEP);
	/* Another client's key is untouched by c's end. */
	assert_int_equal(deliver_to("d", d1, 1), SP_PASS);
	assert_int_equal(deliver_to("d", m2, 1), SP_KEEP);
	unref(m2);
	unref(m3);
	/* The plugin holds m2 (twice: c and d) and m3. */
	assert_int_equal(fake_live_msgs(), base + 4);

	session_end("c");
	assert_int_equal(fake_live_msgs(), base + 3); /* m1, d1 (test) and m2 (d's) */
	ack("c", m1);
	fake_advance(0);
	assert_int_equal(fake_delivered_count(), 0);
	/* c's key starts afresh. */
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	ack("c", m1);

	ack("d", d1);
	fake_advance(0);
	redelivered_once("d", "p2");
	ack("d", fake_delivered(0)->m);
	fake_delivered_clear();
	assert_int_equal(fake_live_msgs(), base + 2);
	unref(m1);
	unref(d1);
	assert_int_equal(fake_live_msgs(), base);
	end();
}

static void test_durable_rows(void **state)
{
	struct sp_msg *m1, *m2;

	(void)state;
	fake_set_durable(1);
	m1 = fake_msg("orders/k", "p1", 1, NULL);
	m2 = fake_msg("orders/k", "payload-two", 1, NULL);
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	assert_int_equal(rows('b'), 1);
	assert_int_equal(deliver_to("c", m2, 1), SP_KEEP);
	assert_int_equal(fake_store_count(FAKE_KV), 2);
	assert_int_equal(rows('w'), 1);
	/* The waiting row holds the whole message. */
	assert_int_equal(fake_store_grep(FAKE_KV, "payload-two", 11), 1);

	ack("c", m1);
	fake_advance(0);
	redelivered_once("c", "payload-two");
	/* m2 is busy now: its busy row, no waiting row. */
	assert_int_equal(rows('w'), 0);
	assert_int_equal(rows('b'), 1);
	assert_int_equal(fake_store_grep(FAKE_KV, "payload-two", 11), 0);
	ack("c", m2);
	fake_advance(0);
	assert_int_equal(fake_store_count(FAKE_KV), 0);
	unref(m1);
	unref(m2);
	end();
}

static void test_not_durable_no_rows(void **state)
{
	struct sp_msg *m1, *m2;

	(void)state;
	m1 = fake_msg("orders/k", "p1", 1, NULL);
	m2 = fake_msg("orders/k", "p2", 1, NULL);
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	assert_int_equal(deliver_to("c", m2, 1), SP_KEEP);
	assert_int_equal(fake_store_count(FAKE_KV), 0);
	ack("c", m1);
	fake_advance(0);
	redelivered_once("c", "p2");
	ack("c", m2);
	unref(m1);
	unref(m2);
	end();
}

/* STOP, unload and load again on the same store (the test keeps its own messages). */
static void restart_keeping(void)
{
	fake_delivered_clear();
	assert_int_equal(fake_stop(), 0);
	assert_int_equal(fake_timers(), 0);
	fake_unload(sluice_plugin_cleanup);
	assert_int_equal(fake_live_blocks(), 0);
	assert_int_equal(up(), 0);
}

static void test_restart_after_busy_ack(void **state)
{
	struct sp_msg *m1, *m2, *m3;
	uint64_t id2;

	(void)state;
	fake_set_durable(1);
	m1 = fake_msg("orders/k", "p1", 1, NULL);
	m2 = fake_msg("orders/k", "p2", 1, NULL);
	id2 = H->msg_id(m2);
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	assert_int_equal(deliver_to("c", m2, 1), SP_KEEP);
	unref(m2);
	assert_int_equal(rows('b'), 1);
	assert_int_equal(rows('w'), 1);

	restart_keeping();
	/* The stored message keeps its place: new ids come after it. */
	assert_int_equal(fake_msg_ids_after(), id2);
	m3 = fake_msg("orders/k", "p3", 1, NULL);
	assert_true(H->msg_id(m3) > id2);
	fake_advance(0);
	assert_int_equal(fake_delivered_count(), 0); /* still busy with m1 */
	/* A newer message waits behind the restored one. */
	assert_int_equal(deliver_to("c", m3, 1), SP_KEEP);
	assert_int_equal(rows('w'), 2);

	ack("c", m1);
	fake_advance(0);
	redelivered_once("c", "p2");
	assert_int_equal(rows('w'), 1);
	/* The restored copy (a new id) is busy now: m3 still waits. */
	assert_int_equal(deliver_to("c", m3, 1), SP_KEEP);
	m2 = H->msg_ref(fake_delivered(0)->m);
	fake_delivered_clear();
	ack("c", m2);
	fake_advance(0);
	redelivered_once("c", "p3");
	ack("c", m3);
	fake_advance(0);
	assert_int_equal(fake_store_count(FAKE_KV), 0);
	unref(m1);
	unref(m2);
	unref(m3);
	end();
}

static void test_restart_redelivers_at_start(void **state)
{
	struct sp_msg *m1, *m2;
	const void *k, *v;
	size_t kl, vl, i;
	void *key = NULL;
	size_t klen = 0;

	(void)state;
	fake_set_durable(1);
	m1 = fake_msg("orders/k", "p1", 1, NULL);
	m2 = fake_msg("orders/k", "p2", 1, NULL);
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	assert_int_equal(deliver_to("c", m2, 1), SP_KEEP);
	unref(m2);
	fake_delivered_clear();
	assert_int_equal(fake_stop(), 0);
	fake_unload(sluice_plugin_cleanup);
	/* The busy row goes (its message ended before the crash): only the waiting row stays. */
	for (i = 0; !fake_store_at(FAKE_KV, i, &k, &kl, &v, &vl); i++)
		if (kl && *(const char *)k == 'b') {
			key = malloc(kl);
			memcpy(key, k, kl);
			klen = kl;
		}
	assert_non_null(key);
	assert_int_equal(H->kv_del(fake_self(), key, klen), 0);
	free(key);
	assert_int_equal(rows('b'), 0);
	assert_int_equal(rows('w'), 1);

	assert_int_equal(up(), 0);
	fake_advance(0);
	redelivered_once("c", "p2");
	assert_int_equal(rows('w'), 0);
	assert_int_equal(rows('b'), 1);
	ack("c", fake_delivered(0)->m);
	fake_advance(0);
	assert_int_equal(fake_store_count(FAKE_KV), 0);
	unref(m1);
	end();
}

static void test_restart_not_durable_any_more(void **state)
{
	struct sp_msg *m1, *m2;

	(void)state;
	fake_set_durable(1);
	m1 = fake_msg("orders/k", "p1", 1, NULL);
	m2 = fake_msg("orders/k", "p2", 1, NULL);
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	assert_int_equal(deliver_to("c", m2, 1), SP_KEEP);
	unref(m2);
	fake_set_durable(0); /* the session is gone by the restart */
	restart_keeping();
	assert_int_equal(fake_store_count(FAKE_KV), 0);
	fake_advance(0);
	assert_int_equal(fake_delivered_count(), 0);
	ack("c", m1);
	fake_advance(0);
	assert_int_equal(fake_delivered_count(), 0);
	unref(m1);
	end();
}

static void test_max_waiting_rejects(void **state)
{
	static const struct sp_opt o[] = { { "keyed", "orders/#" },
					   { "max_waiting", "1" },
					   { "sys_interval", "0" } };
	struct sp_msg *m1, *m2;

	(void)state;
	fake_delivered_clear();
	down();
	assert_int_equal(up_with(o, 3), 0);
	assert_int_equal(fake_publish("orders/k", "p0", 1, NULL), SP_PASS);
	m1 = fake_msg("orders/k", "p1", 1, NULL);
	m2 = fake_msg("orders/k", "p2", 1, NULL);
	assert_int_equal(deliver_to("c", m1, 1), SP_PASS);
	assert_int_equal(fake_publish("orders/k", "p3", 1, NULL), SP_PASS);
	assert_int_equal(deliver_to("c", m2, 1), SP_KEEP);
	/* One waits: another ordered message is refused, whatever its key. */
	assert_int_equal(fake_publish("orders/other", "p4", 1, NULL), SP_REJECT);
	assert_int_equal(fake_result()->reason, 0x97);
	assert_non_null(fake_result()->reason_string);
	assert_int_equal(fake_log_grep("0x97"), 1);
	/* Not ordered: not refused. */
	assert_int_equal(fake_publish("plain/x", "p5", 1, NULL), SP_PASS);
	ack("c", m1);
	fake_advance(0);
	redelivered_once("c", "p2");
	assert_int_equal(fake_publish("orders/other", "p6", 1, NULL), SP_PASS);
	ack("c", m2);
	unref(m1);
	unref(m2);
	end();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_filter_no_callback, setup_bare, teardown),
		cmocka_unit_test_setup_teardown(test_bad_filter_fails_with_where, setup_bare,
						teardown),
		cmocka_unit_test_setup_teardown(test_window_per_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qos0_idle_key_no_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sharding_key_over_topic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_global_filter_one_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dropped_moving_keeps_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_session_end_drops_waiting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_durable_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_durable_no_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_after_busy_ack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_redelivers_at_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_not_durable_any_more, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_waiting_rejects, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
