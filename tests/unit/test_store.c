/*
 * test_store.c - the SQLite store on its own: what is written comes back
 * through store_restore, callbacks run after the commit and in order, a
 * full database refuses exactly the units that do not fit, fences clear on
 * commit, and a database that is newer or not a database is refused and left
 * untouched. A write lost to lack of memory (mem_fail_after at each of its
 * allocations) fails exactly its own unit with -ENOMEM, and is not stored.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "mem.h"
#include "msg.h"
#include "store.h"
#include "store_wait.h"

static char dir[256], path[300];
static struct config cfg;

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/sluice-test-store-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/db/sluice.db", dir);
	config_defaults(&cfg);
	cfg.persistence_file = path;
	return 0;
}

static int teardown(void **state)
{
	char cmd[400];

	store_close();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	cfg.persistence_file = NULL; /* not ours to free */
	return 0;
}

static int calls[8], statuses[8], n_calls;

static void on_done(void *arg, int status)
{
	calls[n_calls] = (int)(intptr_t)arg;
	statuses[n_calls++] = status;
}

static struct msg *make_msg(const char *topic, const char *payload, uint8_t qos)
{
	struct msg_spec s;

	memset(&s, 0, sizeof(s));
	s.topic = topic;
	s.topic_len = strlen(topic);
	s.payload = payload;
	s.payload_len = strlen(payload);
	s.qos = qos;
	s.sender = "pub";
	return msg_new(&s);
}

/* --- what the restore hands back ------------------------------------------------ */

struct seen {
	int sessions, subs, deliveries, rx, retained, kv;
	uint64_t sid, first_disk, n_disk;
	char client_id[64], filter[64], payload[64], kv_val[64];
	uint64_t seq;
	uint16_t packet_id;
	uint8_t state;
};

static int r_session(const struct store_session_row *r, void *arg)
{
	struct seen *s = arg;

	s->sessions++;
	s->sid = r->sid;
	snprintf(s->client_id, sizeof(s->client_id), "%s", r->client_id);
	msg_unref(r->will);
	return 0;
}

static int r_sub(uint64_t sid, const char *filter, uint8_t options, uint32_t subid, void *arg)
{
	struct seen *s = arg;

	s->subs++;
	snprintf(s->filter, sizeof(s->filter), "%s", filter);
	return 0;
}

static int r_delivery(uint64_t sid, const struct store_delivery_row *r, void *arg)
{
	struct seen *s = arg;

	s->deliveries++;
	s->seq = r->seq;
	s->state = r->state;
	s->packet_id = r->packet_id;
	snprintf(s->payload, sizeof(s->payload), "%.*s", (int)r->msg->payload_len,
		 (const char *)r->msg->payload);
	msg_unref(r->msg);
	return 0;
}

static int r_on_disk(uint64_t sid, uint64_t first_seq, uint64_t count, void *arg)
{
	struct seen *s = arg;

	s->first_disk = first_seq;
	s->n_disk = count;
	return 0;
}

static int r_rx(uint64_t sid, uint16_t packet_id, void *arg)
{
	((struct seen *)arg)->rx++;
	return 0;
}

static int r_retained(struct msg *m, void *arg)
{
	((struct seen *)arg)->retained++;
	msg_unref(m);
	return 0;
}

static int r_kv(const char *plugin, const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
	struct seen *s = arg;

	s->kv++;
	snprintf(s->kv_val, sizeof(s->kv_val), "%.*s", (int)vl, (const char *)v);
	return 0;
}

static void restore_into(struct seen *s, uint32_t in_memory)
{
	struct store_restore_ops ops = { r_session,  r_sub, r_delivery, r_on_disk, r_rx,
					 r_retained, r_kv,  s,		in_memory };
	uint64_t hb;

	memset(s, 0, sizeof(*s));
	assert_int_equal(store_restore(&ops, &hb), 0);
}

/* A session row as session.c would write it. */
static struct store_session_row *fake_session(uint64_t sid)
{
	static struct store_session_row s;

	memset(&s, 0, sizeof(s));
	s.client_id = "client-1";
	s.sid = sid;
	s.version = 5;
	s.expiry_interval = 3600;
	s.next_seq = 1;
	return &s;
}

static void fake_entry(struct store_delivery_row *e, struct msg *m, uint64_t seq)
{
	memset(e, 0, sizeof(*e));
	e->msg = m;
	e->qos = 1;
	e->seq = seq;
}

/* The writer thread's wake-up (the broker passes the transport's). */
static int wakes;

static void on_wake(void)
{
	__atomic_add_fetch(&wakes, 1, __ATOMIC_SEQ_CST);
}

static void round_trip_through_restore(void **state)
{
	struct store_session_row *s;
	struct store_delivery_row e;
	struct msg *m = make_msg("a/b", "hello", 1), *r = make_msg("ret/x", "kept", 1);
	struct seen seen;

	r->retain = true;
	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	s = fake_session(7);
	store_session_put(s);
	store_sub_put(7, "a/#", 1, 0);
	fake_entry(&e, m, 1);
	store_delivery_put(7, &e);
	store_delivery_update(7, 1, 1 /* published */, 42);
	store_rx_put(7, 9);
	store_retained_put(r);
	store_kv_put("plug", "k", 1, "value", 5);
	n_calls = 0;
	store_after_commit(on_done, (void *)1);
	WAIT_FOR(n_calls == 1);
	assert_int_equal(statuses[0], 0);
	assert_true(__atomic_load_n(&wakes, __ATOMIC_SEQ_CST) > 0); /* the writer woke the loop */
	store_close();

	assert_int_equal(store_open(&cfg), 0);
	restore_into(&seen, 100);
	assert_int_equal(seen.sessions, 1);
	assert_int_equal(seen.sid, 7);
	assert_string_equal(seen.client_id, "client-1");
	assert_int_equal(seen.subs, 1);
	assert_string_equal(seen.filter, "a/#");
	assert_int_equal(seen.deliveries, 1);
	assert_string_equal(seen.payload, "hello");
	assert_int_equal(seen.state, 1 /* published */);
	assert_int_equal(seen.packet_id, 42);
	assert_int_equal(seen.rx, 1);
	assert_int_equal(seen.retained, 1);
	assert_int_equal(seen.kv, 1);
	assert_string_equal(seen.kv_val, "value");
	msg_unref(m);
	msg_unref(r);
}

static void deleted_rows_stay_deleted(void **state)
{
	struct store_session_row *s;
	struct store_delivery_row e;
	struct msg *m = make_msg("a/b", "gone", 1);
	struct seen seen;

	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	s = fake_session(3);
	store_session_put(s);
	fake_entry(&e, m, 5);
	store_delivery_put(3, &e);
	store_rx_put(3, 1);
	n_calls = 0;
	store_after_commit(on_done, (void *)1);
	WAIT_FOR(n_calls == 1);
	store_delivery_del(3, 5, m->id);
	store_rx_del(3, 1);
	store_after_commit(on_done, (void *)2);
	WAIT_FOR(n_calls == 2);
	store_close();

	assert_int_equal(store_open(&cfg), 0);
	restore_into(&seen, 100);
	assert_int_equal(seen.sessions, 1);
	assert_int_equal(seen.deliveries, 0);
	assert_int_equal(seen.rx, 0);
	msg_unref(m);
}

static void long_queue_is_left_on_disk(void **state)
{
	struct store_session_row *s;
	struct store_delivery_row e;
	struct msg *m = make_msg("q", "x", 1);
	struct seen seen;
	uint64_t seq;

	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	s = fake_session(1);
	store_session_put(s);
	for (seq = 1; seq <= 50; seq++) {
		fake_entry(&e, m, seq);
		store_delivery_put(1, &e);
	}
	n_calls = 0;
	store_after_commit(on_done, (void *)1);
	WAIT_FOR(n_calls == 1);
	store_close();

	assert_int_equal(store_open(&cfg), 0);
	restore_into(&seen, 20);
	assert_int_equal(seen.deliveries, 20);
	assert_int_equal(seen.seq, 20);
	assert_int_equal(seen.first_disk, 21);
	assert_int_equal(seen.n_disk, 30);
	msg_unref(m);
}

static size_t loaded_n;
static uint64_t loaded_first;

static void on_loaded(void *arg, int status, const struct store_delivery_row *rows, size_t n)
{
	assert_int_equal(status, 0);
	loaded_n = n;
	loaded_first = n ? rows[0].seq : 0;
	n_calls++;
}

static void disk_tail_reads_back_in_order(void **state)
{
	struct store_session_row *s;
	struct store_delivery_row e;
	struct msg *m = make_msg("q", "x", 1);
	uint64_t seq;

	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	s = fake_session(1);
	store_session_put(s);
	for (seq = 10; seq < 40; seq++) {
		fake_entry(&e, m, seq);
		store_delivery_put(1, &e);
	}
	n_calls = 0;
	/* The read queues behind the writes: it sees them. */
	store_load_deliveries(1, 25, 10, on_loaded, NULL);
	WAIT_FOR(n_calls == 1);
	assert_int_equal(loaded_n, 10);
	assert_int_equal(loaded_first, 25);
	msg_unref(m);
}

static void callbacks_run_in_order_and_at_once_when_idle(void **state)
{
	struct store_session_row *s;

	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	n_calls = 0;
	store_after_commit(on_done, (void *)1); /* nothing pending: at once */
	assert_int_equal(n_calls, 1);
	s = fake_session(1);
	store_session_put(s);
	store_after_commit(on_done, (void *)2);
	store_after_commit(on_done, (void *)3);
	assert_int_equal(n_calls, 1);
	WAIT_FOR(n_calls == 3);
	assert_int_equal(calls[1], 2);
	assert_int_equal(calls[2], 3);
}

static void fence_clears_on_commit(void **state)
{
	uint64_t f;

	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	f = store_fence();
	assert_true(f != 0);
	assert_true(store_fenced(f));
	WAIT_FOR(!store_fenced(f));
}

static void full_store_refuses_only_what_does_not_fit(void **state)
{
	static char big[20000];
	char key[16];
	int i;

	memset(big, 'x', sizeof(big));
	cfg.persistence_max_bytes = 65536;
	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	n_calls = 0;
	store_kv_put("p", "small", 5, "v", 1);
	store_after_commit(on_done, (void *)1); /* fits */
	for (i = 0; i < 6; i++) {
		snprintf(key, sizeof(key), "big%d", i);
		store_kv_put("p", key, strlen(key), big, sizeof(big));
	}
	store_after_commit(on_done, (void *)2); /* 120 kB: cannot fit in 64 kB */
	store_kv_put("p", "small2", 6, "v", 1);
	store_after_commit(on_done, (void *)3); /* fits again */
	WAIT_FOR(n_calls == 3);
	assert_int_equal(statuses[0], 0);
	assert_int_equal(statuses[1], -ENOSPC);
	assert_int_equal(statuses[2], 0);
	cfg.persistence_max_bytes = 0;
}

static void set_user_version(int v)
{
	sqlite3 *db;
	char sql[64];

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static long file_size(const char *p)
{
	FILE *f = fopen(p, "rb");
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fclose(f);
	return n;
}

static void newer_schema_is_refused_untouched(void **state)
{
	long before;

	assert_int_equal(store_open(&cfg), 0);
	store_close();
	set_user_version(99);
	before = file_size(path);
	assert_int_equal(store_open(&cfg), -1);
	assert_false(store_on());
	assert_int_equal(file_size(path), before);
}

static void garbage_file_is_refused_untouched(void **state)
{
	char d[300];
	FILE *f;

	snprintf(d, sizeof(d), "%s/db", dir);
	mkdir(d, 0700);
	f = fopen(path, "wb");
	assert_non_null(f);
	for (int i = 0; i < 4096; i++)
		fputc(i * 7 & 0xff, f);
	fclose(f);
	assert_int_equal(store_open(&cfg), -1);
	assert_int_equal(file_size(path), 4096);
}

static void persistence_off_does_nothing(void **state)
{
	cfg.persistence = false;
	assert_int_equal(store_open(&cfg), 0);
	assert_false(store_on());
	n_calls = 0;
	store_after_commit(on_done, (void *)1);
	assert_int_equal(n_calls, 1);
	assert_int_equal(access(path, F_OK), -1);
	cfg.persistence = true;
}

static char cold_val[64];
static int cold_found;

static void on_cold(void *arg, int status, const void *val, size_t vlen)
{
	assert_int_equal(status, 0);
	cold_found = val != NULL;
	snprintf(cold_val, sizeof(cold_val), "%.*s", (int)vlen, val ? (const char *)val : "");
	n_calls++;
}

/*
 * A write lost to lack of memory is not covered by an acknowledgement: the
 * callback of its unit reports -ENOMEM, the units around it still commit,
 * and what was lost is not in the store.
 */
static void write_lost_to_oom_fails_its_unit(void **state)
{
	struct seen seen;

	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	n_calls = 0;
	assert_int_equal(store_kv_put("plug", "a", 1, "1", 1), 0);
	store_after_commit(on_done, (void *)1);
	mem_fail_after(0);
	assert_int_equal(store_kv_put("plug", "b", 1, "2", 1), -1);
	mem_fail_after(-1);
	store_after_commit(on_done, (void *)2);
	assert_int_equal(store_kv_put("plug", "c", 1, "3", 1), 0);
	store_after_commit(on_done, (void *)3);
	WAIT_FOR(n_calls == 3);
	assert_int_equal(calls[1], 2);
	assert_int_equal(statuses[0], 0);
	assert_int_equal(statuses[1], -ENOMEM);
	assert_int_equal(statuses[2], 0);
	store_close();

	assert_int_equal(store_open(&cfg), 0);
	restore_into(&seen, 100);
	assert_int_equal(seen.kv, 2); /* a and c */
}

/*
 * Out of memory at each allocation of one operation. Every operation is
 * its own unit (a callback right after it), followed by a unit that loses
 * nothing. Whatever allocation fails, the contract holds: a unit reports
 * -ENOMEM exactly when its write is not in the store afterwards, reports 0
 * when it is, and the units after it still commit (0). Some failures are
 * harmless (the cancel index of a delivery put) and must not fail the unit.
 */
enum oom_kind { OOM_KV, OOM_DELIVERY, OOM_SUB, OOM_SESSION, OOM_KINDS };
#define OOM_STEPS 8
#define OOM_UNITS (OOM_KINDS * OOM_STEPS)

static int unit_status[OOM_UNITS], clean_status[OOM_UNITS + 1], n_unit, n_clean;
static bool unit_done[OOM_UNITS];
static bool in_store[OOM_UNITS];

static void on_unit(void *arg, int status)
{
	int i = (int)(intptr_t)arg;

	assert_true(i >= 0 && i < OOM_UNITS && !unit_done[i]);
	unit_done[i] = true;
	unit_status[i] = status;
	n_unit++;
}

static void on_clean_unit(void *arg, int status)
{
	clean_status[(int)(intptr_t)arg] = status;
	n_clean++;
}

static int m_session(const struct store_session_row *r, void *arg)
{
	if (r->sid >= 100 && r->sid < 100 + OOM_STEPS) {
		assert_non_null(r->will); /* with its will, or not at all */
		assert_int_equal(r->will_delay, 30);
		in_store[OOM_SESSION * OOM_STEPS + (r->sid - 100)] = true;
	}
	msg_unref(r->will);
	return 0;
}

static int m_sub(uint64_t sid, const char *filter, uint8_t options, uint32_t subid, void *arg)
{
	unsigned n;

	if (sscanf(filter, "f/%u", &n) == 1 && n < OOM_STEPS)
		in_store[OOM_SUB * OOM_STEPS + n] = true;
	return 0;
}

static int m_delivery(uint64_t sid, const struct store_delivery_row *r, void *arg)
{
	if (sid == 1 && r->seq >= 1 && r->seq <= OOM_STEPS) {
		assert_int_equal(r->n_subids, 2); /* whole, or not at all */
		assert_int_equal(r->subids[1], 22);
		assert_non_null(r->share);
		assert_string_equal(r->share, "grp");
		in_store[OOM_DELIVERY * OOM_STEPS + (r->seq - 1)] = true;
	}
	msg_unref(r->msg);
	return 0;
}

static int m_none(uint64_t sid, uint64_t first_seq, uint64_t count, void *arg)
{
	return 0;
}

static int m_rx(uint64_t sid, uint16_t packet_id, void *arg)
{
	return 0;
}

static int m_kv(const char *plugin, const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
	unsigned n;
	char key[16];

	snprintf(key, sizeof(key), "%.*s", (int)kl, (const char *)k);
	if (!strcmp(plugin, "plug") && sscanf(key, "k%u", &n) == 1 && n < OOM_STEPS)
		in_store[OOM_KV * OOM_STEPS + n] = true;
	return 0;
}

/* Queues one operation of kind with step n; returns what it returned (0 for the void ones). */
static int queue_op(enum oom_kind kind, int n, struct msg *m, struct msg *will)
{
	static const uint32_t subids[] = { 11, 22 };
	static const char share[] = "grp\0a/#";
	struct store_delivery_row d;
	struct store_session_row *sr;
	char name[16];

	switch (kind) {
	case OOM_KV:
		snprintf(name, sizeof(name), "k%d", n);
		return store_kv_put("plug", name, strlen(name), "value", 5);
	case OOM_DELIVERY:
		fake_entry(&d, m, (uint64_t)n + 1);
		d.subids = subids;
		d.n_subids = 2;
		d.share = share;
		store_delivery_put(1, &d);
		return 0;
	case OOM_SUB:
		snprintf(name, sizeof(name), "f/%d", n);
		store_sub_put(1, name, 1, 0);
		return 0;
	case OOM_SESSION:
		snprintf(name, sizeof(name), "client-%d", 100 + n); /* client ids are unique */
		sr = fake_session(100 + (uint64_t)n);
		sr->client_id = name;
		sr->will = will;
		sr->will_delay = 30;
		store_session_put(sr);
		return 0;
	default:
		return 0;
	}
}

static void each_write_lost_to_oom_fails_its_unit(void **state)
{
	struct store_restore_ops ops = { m_session,  m_sub, m_delivery, m_none, m_rx,
					 r_retained, m_kv,  NULL,	1000 };
	struct msg *m = make_msg("a/b", "payload", 1), *will = make_msg("will/x", "bye", 1);
	int kind, n, lost[OOM_KINDS] = { 0 }, kept[OOM_KINDS] = { 0 };
	int rcs[OOM_UNITS];
	uint64_t hb;

	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	store_session_put(fake_session(1));
	n_unit = n_clean = 0;
	memset(unit_done, 0, sizeof(unit_done));
	memset(in_store, 0, sizeof(in_store));
	for (kind = 0; kind < OOM_KINDS; kind++) {
		for (n = 0; n < OOM_STEPS; n++) {
			int i = kind * OOM_STEPS + n;
			char key[16];

			/* the previous unit ends here: this one holds only the operation */
			store_after_commit(on_clean_unit, (void *)(intptr_t)i);
			mem_fail_after(n);
			rcs[i] = queue_op(kind, n, m, will);
			mem_fail_after(-1);
			store_after_commit(on_unit, (void *)(intptr_t)i);
			snprintf(key, sizeof(key), "clean%d", i);
			assert_int_equal(store_kv_put("other", key, strlen(key), "v", 1), 0);
		}
	}
	store_after_commit(on_clean_unit, (void *)(intptr_t)OOM_UNITS);
	WAIT_FOR(n_unit == OOM_UNITS && n_clean == OOM_UNITS + 1);
	store_close();
	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_restore(&ops, &hb), 0);

	for (kind = 0; kind < OOM_KINDS; kind++) {
		for (n = 0; n < OOM_STEPS; n++) {
			int i = kind * OOM_STEPS + n;

			if (unit_status[i] != 0 && unit_status[i] != -ENOMEM)
				fail_msg("unit %d: status %d", i, unit_status[i]);
			if ((unit_status[i] == 0) != in_store[i])
				fail_msg("kind %d, allocation %d: status %d but %s the store", kind,
					 n, unit_status[i], in_store[i] ? "in" : "not in");
			if (kind == OOM_KV) /* -1: it could not be queued */
				assert_int_equal(rcs[i], unit_status[i] ? -1 : 0);
			if (unit_status[i])
				lost[kind]++;
			else
				kept[kind]++;
		}
	}
	for (n = 0; n <= OOM_UNITS; n++) /* the units that lost nothing committed */
		assert_int_equal(clean_status[n], 0);
	for (kind = 0; kind < OOM_KINDS; kind++) {
		if (!lost[kind] || !kept[kind])
			fail_msg("kind %d: %d lost, %d kept: the steps missed its allocations",
				 kind, lost[kind], kept[kind]);
	}
	msg_unref(m);
	msg_unref(will);
}

/*
 * The first allocation of a unit may be the open batch itself: when the
 * writer is idle and nothing is queued, the lost write leaves nothing
 * pending, and the callback still reports the loss, at once.
 */
static void lost_write_with_nothing_pending_still_reports(void **state)
{
	struct seen seen;

	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	n_calls = 0;
	store_kv_put("plug", "a", 1, "1", 1);
	store_after_commit(on_done, (void *)1);
	WAIT_FOR(n_calls == 1 && !store_pending());
	mem_fail_after(0); /* the open batch cannot be made */
	assert_int_equal(store_kv_put("plug", "b", 1, "2", 1), -1);
	mem_fail_after(-1);
	assert_false(store_pending());
	store_after_commit(on_done, (void *)2);
	assert_int_equal(n_calls, 2); /* nothing to wait for: at once */
	assert_int_equal(statuses[1], -ENOMEM);
	store_after_commit(on_done, (void *)3); /* the loss was reported once */
	assert_int_equal(n_calls, 3);
	assert_int_equal(statuses[2], 0);
	assert_int_equal(store_kv_put("plug", "c", 1, "3", 1), 0);
	store_after_commit(on_done, (void *)4);
	WAIT_FOR(n_calls == 4);
	assert_int_equal(statuses[0], 0);
	assert_int_equal(statuses[3], 0);
	store_close();

	assert_int_equal(store_open(&cfg), 0);
	restore_into(&seen, 100);
	assert_int_equal(seen.kv, 2); /* a and c */
}

static void cold_values_are_stored_not_restored(void **state)
{
	struct seen seen;

	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	store_cold_put("plug", "payload-1", 9, "far future", 10);
	store_cold_put("plug", "payload-2", 9, "gone", 4);
	store_cold_del("plug", "payload-2", 9);
	n_calls = 0;
	store_cold_get("plug", "payload-1", 9, on_cold, NULL);
	WAIT_FOR(n_calls == 1);
	assert_true(cold_found);
	assert_string_equal(cold_val, "far future");
	store_cold_get("plug", "payload-2", 9, on_cold, NULL);
	WAIT_FOR(n_calls == 2);
	assert_false(cold_found);
	store_close();

	assert_int_equal(store_open(&cfg), 0);
	restore_into(&seen, 100);
	assert_int_equal(seen.kv, 0); /* cold values never come back at start-up */
	assert_int_equal(store_start(on_wake), 0);
	store_cold_get("plug", "payload-1", 9, on_cold, NULL);
	WAIT_FOR(n_calls == 3);
	assert_true(cold_found);
}

/* A range delete takes lo <= key < hi of one plugin, ordered with the other writes. */
static void cold_range_delete(void **state)
{
	static const char *const keys[] = { "p1", "p2", "p3", "p4", "q1" };
	static const int kept[] = { 1, 0, 0, 1, 1 };
	size_t i;

	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	for (i = 0; i < 5; i++) {
		store_cold_put("plug", keys[i], 2, "v", 1);
		store_cold_put("other", keys[i], 2, "o", 1);
	}
	store_cold_del_range("plug", "p2", 2, "p4", 2);
	store_cold_put("plug", "p3x", 3, "after", 5); /* queued after: kept */
	n_calls = 0;
	for (i = 0; i < 5; i++) {
		store_cold_get("plug", keys[i], 2, on_cold, NULL);
		WAIT_FOR(n_calls == (int)i + 1);
		assert_int_equal(cold_found, kept[i]);
	}
	store_cold_get("plug", "p3x", 3, on_cold, NULL);
	WAIT_FOR(n_calls == 6);
	assert_string_equal(cold_val, "after");
	store_cold_get("other", "p2", 2, on_cold, NULL); /* another plugin's: untouched */
	WAIT_FOR(n_calls == 7);
	assert_string_equal(cold_val, "o");
}

/* A version 1 database (no plugin_cold table) is migrated forward in place. */
static void version_1_database_is_migrated(void **state)
{
	sqlite3 *db;

	assert_int_equal(store_open(&cfg), 0);
	store_kv_put("plug", "k", 1, "kept", 4);
	store_close();
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	/* back to the first schema: no plugin_cold, no session username and realm */
	assert_int_equal(
		sqlite3_exec(db,
			     "DROP TABLE plugin_cold; ALTER TABLE sessions DROP COLUMN username;"
			     " ALTER TABLE sessions DROP COLUMN realm; PRAGMA user_version = 1",
			     NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(store_open(&cfg), 0);
	assert_int_equal(store_start(on_wake), 0);
	n_calls = 0;
	store_cold_put("plug", "c", 1, "v", 1);
	store_cold_get("plug", "c", 1, on_cold, NULL);
	WAIT_FOR(n_calls == 1);
	assert_true(cold_found);
	store_close();
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	{
		sqlite3_stmt *st;

		assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int(st, 0), 3);
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(round_trip_through_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(deleted_rows_stay_deleted, setup, teardown),
		cmocka_unit_test_setup_teardown(long_queue_is_left_on_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(disk_tail_reads_back_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(callbacks_run_in_order_and_at_once_when_idle, setup,
						teardown),
		cmocka_unit_test_setup_teardown(fence_clears_on_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(full_store_refuses_only_what_does_not_fit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(newer_schema_is_refused_untouched, setup, teardown),
		cmocka_unit_test_setup_teardown(garbage_file_is_refused_untouched, setup, teardown),
		cmocka_unit_test_setup_teardown(persistence_off_does_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(write_lost_to_oom_fails_its_unit, setup, teardown),
		cmocka_unit_test_setup_teardown(each_write_lost_to_oom_fails_its_unit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(lost_write_with_nothing_pending_still_reports,
						setup, teardown),
		cmocka_unit_test_setup_teardown(cold_values_are_stored_not_restored, setup,
						teardown),
		cmocka_unit_test_setup_teardown(cold_range_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(version_1_database_is_migrated, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
