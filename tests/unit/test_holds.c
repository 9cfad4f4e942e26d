/*
 * test_holds.c - the held deliveries of src/holds.c: keyed by (plugin, hold
 * id), session holds also findable by client id, group holds (no client)
 * only by key. The plugins are opaque handles here: addresses in an array
 * stand for them, since holds.c never looks inside one.
 *
 * Checked: what a hold keeps is its own copy (client id, subscription ids,
 * share key) and one message reference; a duplicate key is refused with
 * -2; the tables grow past their first size with every hold still
 * reachable both ways; clients whose ids share a bucket only ever get their
 * own holds back; out of memory at any allocation of an add leaves the
 * holds and the message's references as they were.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "holds.h"
#include "mem.h"
#include "msg.h"

static char plugin_handles[8];
#define PLUGIN(i) ((struct sp_plugin *)(void *)&plugin_handles[i])

static struct msg *new_msg(const char *topic)
{
	struct msg_spec s;
	struct msg *m;

	memset(&s, 0, sizeof(s));
	s.topic = topic;
	s.topic_len = strlen(topic);
	s.payload = "p";
	s.payload_len = 1;
	s.qos = 1;
	s.sender = "pub";
	m = msg_new(&s);
	assert_non_null(m);
	return m;
}

static int setup(void **state)
{
	(void)state;
	holds_clear();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	mem_fail_after(-1);
	holds_clear();
	msg_drain_caches();
	return msg_alive() != 0; /* every message reference a hold took is gone */
}

static void test_add_take(void **state)
{
	struct msg *m = new_msg("a/b");
	uint32_t subids[3] = { 7, 8, 9 };
	char client[] = "client-1", share[] = "grp\0a/+";
	struct hold *h;

	(void)state;
	assert_int_equal(holds_count(), 0);
	assert_null(holds_take(PLUGIN(0), 1));
	assert_null(holds_take_client("client-1"));
	assert_int_equal(holds_add(PLUGIN(0), 1, client, m, 2, true, subids, 3, share), 0);
	assert_int_equal(m->refs, 2);
	assert_int_equal(holds_count(), 1);
	/* the hold keeps copies: the caller's buffers may change */
	client[0] = 'X';
	subids[0] = 0;
	share[0] = 'X';
	assert_null(holds_take(PLUGIN(1), 1)); /* another plugin's key */
	assert_null(holds_take(PLUGIN(0), 2));
	h = holds_take(PLUGIN(0), 1);
	assert_non_null(h);
	assert_int_equal(holds_count(), 0);
	assert_ptr_equal(h->owner, PLUGIN(0));
	assert_int_equal(h->id, 1);
	assert_string_equal(h->client_id, "client-1");
	assert_ptr_equal(h->msg, m);
	assert_int_equal(h->qos, 2);
	assert_true(h->retain);
	assert_int_equal(h->n_subids, 3);
	assert_int_equal(h->subids[0], 7);
	assert_int_equal(h->subids[2], 9);
	assert_memory_equal(h->share, "grp\0a/+\0", 8);
	/* gone from both tables */
	assert_null(holds_take(PLUGIN(0), 1));
	assert_null(holds_take_client("client-1"));
	holds_free(h);
	assert_int_equal(m->refs, 1);
	holds_free(NULL);

	/* without subscription ids or share; taken by client */
	assert_int_equal(holds_add(PLUGIN(0), 5, "c", m, 0, false, NULL, 0, NULL), 0);
	h = holds_take_client("c");
	assert_non_null(h);
	assert_int_equal(h->id, 5);
	assert_int_equal(h->n_subids, 0);
	assert_null(h->subids);
	assert_null(h->share);
	assert_false(h->retain);
	assert_null(holds_take(PLUGIN(0), 5)); /* gone from the key table too */
	assert_int_equal(holds_count(), 0);
	holds_free(h);
	msg_unref(m);
}

static void test_duplicate(void **state)
{
	struct msg *m = new_msg("t");
	struct hold *h;

	(void)state;
	assert_int_equal(holds_add(PLUGIN(0), 42, "a", m, 1, false, NULL, 0, NULL), 0);
	/* the same (owner, id) again, whatever the rest: refused, nothing taken */
	assert_int_equal(holds_add(PLUGIN(0), 42, "a", m, 1, false, NULL, 0, NULL), -2);
	assert_int_equal(holds_add(PLUGIN(0), 42, "b", m, 0, true, NULL, 0, NULL), -2);
	assert_int_equal(holds_add(PLUGIN(0), 42, NULL, m, 1, false, NULL, 0, "g\0f"), -2);
	assert_int_equal(holds_count(), 1);
	assert_int_equal(m->refs, 2);
	/* the same id under another owner, and another id under the same owner, are fine */
	assert_int_equal(holds_add(PLUGIN(1), 42, "a", m, 1, false, NULL, 0, NULL), 0);
	assert_int_equal(holds_add(PLUGIN(0), 43, "a", m, 1, false, NULL, 0, NULL), 0);
	assert_int_equal(holds_count(), 3);
	/* once taken, the id is free again */
	h = holds_take(PLUGIN(0), 42);
	assert_non_null(h);
	assert_string_equal(h->client_id, "a");
	holds_free(h);
	assert_int_equal(holds_add(PLUGIN(0), 42, "z", m, 1, false, NULL, 0, NULL), 0);
	h = holds_take(PLUGIN(0), 42);
	assert_string_equal(h->client_id, "z");
	holds_free(h);
	/* id 0 and the largest id are ordinary keys here (the router refuses 0) */
	assert_int_equal(holds_add(PLUGIN(2), 0, "a", m, 1, false, NULL, 0, NULL), 0);
	assert_int_equal(holds_add(PLUGIN(2), UINT64_MAX, "a", m, 1, false, NULL, 0, NULL), 0);
	assert_int_equal(holds_add(PLUGIN(2), 0, "a", m, 1, false, NULL, 0, NULL), -2);
	assert_int_equal(holds_count(), 4);
	holds_clear();
	assert_int_equal(holds_count(), 0);
	assert_int_equal(m->refs, 1);
	msg_unref(m);
}

static uint32_t rng = 0x1B873593u;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/*
 * Thousands of holds of many clients (so the tables double several times
 * and client buckets hold many ids), then taken out in a random mix of by
 * key and by client: each comes back exactly once, to the right client.
 */
static void test_many(void **state)
{
	enum { N = 5000, CLIENTS = 300 };
	static bool taken[N];
	struct msg *m = new_msg("many");
	char id[32];
	size_t i, left = N, by_client = 0, by_key = 0;
	struct hold *h;

	(void)state;
	memset(taken, 0, sizeof(taken));
	for (i = 0; i < N; i++) {
		uint32_t sub = (uint32_t)i;

		snprintf(id, sizeof(id), "client/%zu", i % CLIENTS);
		assert_int_equal(holds_add(PLUGIN(i % 3), i, i % 7 ? id : NULL, m, (uint8_t)(i % 3),
					   i % 2, &sub, 1, i % 7 ? NULL : "g\0f"),
				 0);
	}
	assert_int_equal(holds_count(), N);
	assert_int_equal(m->refs, N + 1);
	while (left) {
		size_t k = rnd() % N;

		if (taken[k])
			continue;
		if (k % 7 && rnd() % 2) {
			/* one hold of k's client, not necessarily k */
			snprintf(id, sizeof(id), "client/%zu", k % CLIENTS);
			h = holds_take_client(id);
			assert_non_null(h);
			assert_string_equal(h->client_id, id);
			by_client++;
		} else {
			h = holds_take(PLUGIN(k % 3), k);
			assert_non_null(h);
			by_key++;
		}
		assert_true(h->id < N);
		assert_false(taken[h->id]);
		assert_ptr_equal(h->owner, PLUGIN(h->id % 3));
		assert_int_equal(h->qos, h->id % 3);
		assert_int_equal(h->retain, h->id % 2);
		assert_int_equal(h->n_subids, 1);
		assert_int_equal(h->subids[0], h->id);
		assert_true((h->client_id == NULL) == (h->id % 7 == 0));
		assert_true((h->share == NULL) == (h->id % 7 != 0));
		taken[h->id] = true;
		holds_free(h);
		left--;
		assert_int_equal(holds_count(), left);
	}
	assert_true(by_client > N / 5 && by_key > N / 5);
	for (i = 0; i < CLIENTS; i++) {
		snprintf(id, sizeof(id), "client/%zu", i);
		assert_null(holds_take_client(id));
	}
	assert_int_equal(m->refs, 1);
	msg_unref(m);
}

/*
 * Client ids in one bucket: with the first table size (64 buckets) 300
 * clients must share buckets. A client's holds are found and drained in
 * full, and the others' are untouched; holds of a client id that is a
 * prefix of another's are not mixed up.
 */
static void test_clients_colliding(void **state)
{
	enum { CLIENTS = 300, PER = 3 };
	struct msg *m = new_msg("c");
	char id[32];
	size_t i, j, n;
	struct hold *h;

	(void)state;
	for (i = 0; i < CLIENTS; i++)
		for (j = 0; j < PER; j++) {
			snprintf(id, sizeof(id), "c%zu", i);
			assert_int_equal(holds_add(PLUGIN(j), i, id, m, 1, false, NULL, 0, NULL),
					 0);
		}
	/* "c1", "c10", "c100": prefixes of one another */
	for (i = 0; i < CLIENTS; i += 7) {
		snprintf(id, sizeof(id), "c%zu", i);
		for (n = 0; (h = holds_take_client(id)); n++) {
			assert_string_equal(h->client_id, id);
			assert_int_equal(h->id, i);
			holds_free(h);
		}
		assert_int_equal(n, PER);
	}
	/* the rest are all there: by key, each exactly once */
	for (i = 0; i < CLIENTS; i++)
		for (j = 0; j < PER; j++) {
			h = holds_take(PLUGIN(j), i);
			if (i % 7 == 0) {
				assert_null(h);
				continue;
			}
			assert_non_null(h);
			snprintf(id, sizeof(id), "c%zu", i);
			assert_string_equal(h->client_id, id);
			holds_free(h);
		}
	assert_int_equal(holds_count(), 0);
	assert_null(holds_take_client("c1"));
	assert_null(holds_take_client(""));
	msg_unref(m);
}

/* Group holds (client NULL): only by key; holds_take_client never returns one. */
static void test_group_holds(void **state)
{
	struct msg *m = new_msg("g");
	struct hold *h;

	(void)state;
	assert_int_equal(holds_add(PLUGIN(0), 1, NULL, m, 1, false, NULL, 0, "grp\0s/+"), 0);
	assert_int_equal(holds_add(PLUGIN(0), 2, "m1", m, 1, false, NULL, 0, "grp\0s/+"), 0);
	assert_int_equal(holds_add(PLUGIN(1), 1, NULL, m, 2, false, NULL, 0, "other\0#"), 0);
	assert_int_equal(holds_count(), 3);
	/* the member's session hold is its own; the group's copies belong to nobody */
	h = holds_take_client("m1");
	assert_non_null(h);
	assert_int_equal(h->id, 2);
	holds_free(h);
	assert_null(holds_take_client("m1"));
	assert_null(holds_take_client("grp"));
	assert_null(holds_take_client(""));
	assert_int_equal(holds_count(), 2);
	h = holds_take(PLUGIN(1), 1);
	assert_non_null(h);
	assert_null(h->client_id);
	assert_string_equal(h->share, "other");
	assert_string_equal(h->share + 6, "#");
	assert_int_equal(h->qos, 2);
	holds_free(h);
	h = holds_take(PLUGIN(0), 1);
	assert_non_null(h);
	assert_string_equal(h->share + 4, "s/+");
	holds_free(h);
	assert_int_equal(holds_count(), 0);
	msg_unref(m);
}

/* Clear frees every hold and its message references; the tables start over. */
static void test_clear(void **state)
{
	struct msg *m = new_msg("x");
	size_t i;
	char id[16];

	(void)state;
	for (i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "k%zu", i % 5);
		assert_int_equal(holds_add(PLUGIN(0), i, i % 2 ? id : NULL, m, 1, false, NULL, 0,
					   i % 2 ? NULL : "g\0f"),
				 0);
	}
	assert_int_equal(m->refs, 201);
	holds_clear();
	assert_int_equal(holds_count(), 0);
	assert_int_equal(m->refs, 1);
	assert_null(holds_take(PLUGIN(0), 1));
	assert_null(holds_take_client("k1"));
	holds_clear(); /* twice is harmless */
	/* usable again after a clear */
	assert_int_equal(holds_add(PLUGIN(0), 1, "k1", m, 1, false, NULL, 0, NULL), 0);
	assert_int_equal(holds_add(PLUGIN(0), 1, "k1", m, 1, false, NULL, 0, NULL), -2);
	assert_int_equal(holds_count(), 1);
	holds_clear();
	msg_unref(m);
}

/* Every allocation of an add failing in turn: nothing changes, then it works. */
static long add_until_ok(uint64_t id, const char *client, struct msg *m, const char *share)
{
	uint32_t subids[2] = { 1, 2 };
	size_t count = holds_count();
	uint32_t refs = m->refs;
	long n;
	int rc;

	for (n = 0;; n++) {
		mem_fail_after(n);
		rc = holds_add(PLUGIN(0), id, client, m, 1, false, subids, 2, share);
		mem_fail_after(-1);
		if (rc == 0)
			break;
		assert_int_equal(rc, -1);
		assert_int_equal(holds_count(), count);
		assert_int_equal(m->refs, refs);
		assert_null(holds_take(PLUGIN(0), id));
		if (client)
			assert_null(holds_take_client(client));
		assert_true(n < 20);
	}
	assert_int_equal(holds_count(), count + 1);
	assert_int_equal(m->refs, refs + 1);
	return n;
}

static void test_oom(void **state)
{
	struct msg *m = new_msg("oom");
	struct hold *h;
	char id[16];
	size_t i;
	long n;

	(void)state;
	/*
	 * The first add also makes both tables: failing at either table, then at
	 * the hold; the tables it then made stay, so the next attempts only
	 * make the hold, its client id, subscription ids and share key.
	 */
	assert_int_equal(add_until_ok(1, "c1", m, "g\0f"), 4);
	/* each of the hold's own allocations failing in turn */
	assert_int_equal(add_until_ok(2, "c2", m, "g\0f"), 4);
	assert_int_equal(add_until_ok(3, NULL, m, "g\0f"), 3);
	assert_int_equal(add_until_ok(4, "c4", m, NULL), 3);
	/* up to the first table size, then a growth that fails at each of its two tables */
	for (i = holds_count(); i < 64; i++) {
		snprintf(id, sizeof(id), "k%zu", i);
		assert_int_equal(holds_add(PLUGIN(1), i, id, m, 1, false, NULL, 0, NULL), 0);
	}
	assert_int_equal(holds_count(), 64);
	n = add_until_ok(100, "grown", m, "g\0f");
	assert_int_equal(n, 4); /* as for the first add: both tables, the hold, its share */
	/* every hold made before the growth is still reachable both ways */
	for (i = 4; i < 64; i++) {
		snprintf(id, sizeof(id), "k%zu", i);
		h = holds_take_client(id);
		assert_non_null(h);
		assert_int_equal(h->id, i);
		holds_free(h);
	}
	for (i = 1; i <= 4; i++) {
		h = holds_take(PLUGIN(0), i);
		assert_non_null(h);
		holds_free(h);
	}
	h = holds_take_client("grown");
	assert_non_null(h);
	assert_int_equal(h->n_subids, 2);
	assert_int_equal(h->subids[1], 2);
	holds_free(h);
	assert_int_equal(holds_count(), 0);
	/* taking allocates nothing */
	assert_int_equal(holds_add(PLUGIN(0), 9, "c", m, 1, false, NULL, 0, NULL), 0);
	mem_fail_after(0);
	h = holds_take_client("c");
	mem_fail_after(-1);
	assert_non_null(h);
	holds_free(h);
	assert_int_equal(m->refs, 1);
	msg_unref(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_add_take, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clients_colliding, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_holds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clear, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oom, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
