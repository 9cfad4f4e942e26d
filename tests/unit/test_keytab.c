/*
 * test_keytab.c - the ordered plugin's key tables and per-key window
 * (plugins/ordered/keytab.c): the verdicts of a delivery (fresh, busy,
 * redelivered, already waiting, QoS 0), the waiting list's id order, the
 * end of a busy time (right and wrong ids, restored unknown ids), handing
 * out waiting messages, freeing idle keys with their target, targets and
 * keys as byte strings (shared key bytes, embedded NULs, length bounds),
 * table growth with many keys, dropping a target or the whole table (each
 * waiting entry dropped once, nothing leaked), and running out of memory at
 * every allocation without leaving a half-made target behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keytab.h"

/* The allocator: counts live blocks, fails the fail_at'th allocation (0: none). */
static long live;
static long n_allocs;
static long fail_at;

static void *t_alloc(size_t n)
{
	void *p;

	if (++n_allocs == fail_at)
		return NULL;
	p = malloc(n);
	if (p)
		live++;
	return p;
}

static void t_free(void *p)
{
	if (p)
		live--;
	free(p);
}

/* Makes the allocation after the next n - 1 fail. */
static void fail_in(long n)
{
	fail_at = n_allocs + n;
}

static void kt_open(struct keytab *kt)
{
	live = n_allocs = fail_at = 0;
	assert_int_equal(kt_init(kt, t_alloc, t_free), 0);
	assert_int_equal(live, 3);
}

static void kt_close(struct keytab *kt)
{
	kt_free(kt, NULL, NULL);
	assert_null(kt->keys);
	assert_null(kt->targets);
	assert_int_equal(live, 0);
}

static struct kt_key *key(struct keytab *kt, const char *name, const char *k)
{
	struct kt_key *r = kt_key_get(kt, name, strlen(name), k, strlen(k));

	assert_non_null(r);
	return r;
}

static struct kt_key *find(const struct keytab *kt, const char *name, const char *k)
{
	return kt_key_find(kt, kt_target_find(kt, name, strlen(name)), k, strlen(k));
}

/* A delivery that must wait, kept by the caller as the tests' msg (id as pointer). */
static void must_wait(struct keytab *kt, struct kt_key *k, uint64_t id)
{
	struct kt_wait *w;

	assert_int_equal(kt_deliver(kt, k, id, 1), KT_WAIT);
	w = kt_wait_add(kt, k, id, (void *)(uintptr_t)id, 1);
	assert_non_null(w);
	assert_int_equal(w->id, id);
	assert_int_equal(w->qos, 1);
	assert_false(w->stored);
}

/* Takes the next waiting entry, which must be id, and frees it. */
static void next_is(struct keytab *kt, struct kt_key *k, uint64_t id)
{
	struct kt_wait *w = kt_next(kt, k);

	assert_non_null(w);
	assert_int_equal(w->id, id);
	assert_int_equal((uintptr_t)w->msg, id);
	assert_null(w->next);
	assert_int_equal(k->busy, id);
	kt_wait_free(kt, w);
}

/* One key's list: ascending, tail right, n_wait its length; returns the length. */
static uint64_t check_list(const struct kt_key *k)
{
	const struct kt_wait *w, *last = NULL;
	uint64_t n = 0;

	for (w = k->head; w; last = w, w = w->next, n++) {
		if (last)
			assert_true(last->id < w->id);
		assert_true(w->id != k->busy || !k->busy);
	}
	assert_ptr_equal(k->tail, last);
	assert_int_equal(k->n_wait, n);
	return n;
}

/* One target's keys: count, every key findable. */
static size_t check_target(const struct keytab *kt, const struct kt_target *t)
{
	const struct kt_key *k;
	size_t n = 0, i;

	assert_true(t->n_keys > 0); /* a target exists only with keys */
	for (i = 0; i < kt->cap_keys; i++)
		for (k = kt->keys[i]; k; k = k->hnext)
			if (k->t == t) {
				n++;
				assert_ptr_equal(kt_key_find(kt, t, k->key, k->klen), k);
			}
	assert_int_equal(t->n_keys, n);
	assert_ptr_equal(kt_target_find(kt, t->name, t->nlen), t);
	return n;
}

/*
 * The whole table agrees with its counters, and the live blocks are the two
 * tables, the keys, targets and waiting entries, and `extra` the caller holds.
 */
static void check_table(const struct keytab *kt, long extra)
{
	size_t i, n_keys = 0, n_targets = 0, tkeys = 0;
	uint64_t n_wait = 0;
	const struct kt_key *k;
	const struct kt_target *t;

	for (i = 0; i < kt->cap_keys; i++)
		for (k = kt->keys[i]; k; k = k->hnext, n_keys++) {
			assert_int_equal(k->hash & (kt->cap_keys - 1), i);
			n_wait += check_list(k);
		}
	for (i = 0; i < kt->cap_targets; i++)
		for (t = kt->targets[i]; t; t = t->hnext, n_targets++) {
			assert_int_equal(t->hash & (kt->cap_targets - 1), i);
			tkeys += check_target(kt, t);
		}
	assert_int_equal(kt->n_keys, n_keys);
	assert_int_equal(tkeys, n_keys);
	assert_int_equal(kt->n_targets, n_targets);
	assert_int_equal(kt->n_wait, n_wait);
	assert_int_equal(live, (long)(3 + n_keys + n_targets + n_wait + kt->n_spare) + extra);
}

/* The drop callback's record: each id seen, and the target they must belong to. */
struct drops {
	uint64_t ids[64];
	size_t n, keys;
	const struct kt_target *t; /* NULL: any */
};

static void record_drop(void *arg, struct kt_key *k, struct kt_wait *w)
{
	struct drops *d = arg;
	size_t i;

	if (d->t)
		assert_ptr_equal(k->t, d->t);
	if (!w) {
		d->keys++; /* the key itself, after its waiting entries */
		return;
	}
	assert_int_equal((uintptr_t)w->msg, w->id);
	for (i = 0; i < d->n; i++)
		assert_true(d->ids[i] != w->id); /* ids are unique in the tests: once each */
	assert_true(d->n < 64);
	d->ids[d->n++] = w->id;
}

static bool dropped(const struct drops *d, uint64_t id)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		if (d->ids[i] == id)
			return true;
	return false;
}

static void test_init_free_empty(void **state)
{
	struct keytab kt;

	(void)state;
	kt_open(&kt);
	assert_int_equal(kt.n_keys, 0);
	assert_int_equal(kt.n_targets, 0);
	assert_int_equal(kt.n_wait, 0);
	assert_null(find(&kt, "c1", "k"));
	assert_null(kt_key_find(&kt, NULL, "k", 1));
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_fresh_key_passes(void **state)
{
	struct keytab kt;
	struct kt_key *k;

	(void)state;
	kt_open(&kt);
	assert_int_equal(kt_deliver(&kt, NULL, 1, 1), KT_PASS); /* no state at all */
	assert_int_equal(kt_deliver(&kt, NULL, 2, 2), KT_PASS);
	k = key(&kt, "c1", "k");
	assert_int_equal(kt.n_keys, 1);
	assert_int_equal(kt.n_targets, 1);
	assert_int_equal(k->t->n_keys, 1);
	assert_int_equal(k->busy, 0);
	assert_int_equal(kt_deliver(&kt, k, 5, 1), KT_PASS);
	assert_int_equal(k->busy, 5);
	assert_ptr_equal(key(&kt, "c1", "k"), k); /* found, not made again */
	assert_ptr_equal(find(&kt, "c1", "k"), k);
	assert_int_equal(kt.n_keys, 1);
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_busy_key_makes_later_wait(void **state)
{
	struct keytab kt;
	struct kt_key *k;

	(void)state;
	kt_open(&kt);
	k = key(&kt, "c1", "k");
	assert_int_equal(kt_deliver(&kt, k, 5, 2), KT_PASS);
	must_wait(&kt, k, 6);
	must_wait(&kt, k, 7);
	assert_int_equal(kt_deliver(&kt, k, 5, 1), KT_PASS); /* the busy one again */
	assert_int_equal(k->busy, 5);
	assert_int_equal(kt_deliver(&kt, k, 8, 0), KT_WAIT); /* QoS 0 waits too */
	assert_int_equal(k->n_wait, 2);
	assert_int_equal(kt.n_wait, 2);
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_wait_order(void **state)
{
	static const uint64_t in[] = { 9, 3, 7, 5, 4, 12, 2 };
	static const uint64_t out[] = { 2, 3, 4, 5, 7, 9, 12 };
	struct keytab kt;
	struct kt_key *k;
	size_t i;

	(void)state;
	kt_open(&kt);
	k = key(&kt, "c1", "k");
	assert_int_equal(kt_deliver(&kt, k, 1, 1), KT_PASS);
	for (i = 0; i < sizeof(in) / sizeof(in[0]); i++)
		must_wait(&kt, k, in[i]);
	check_table(&kt, 0);
	assert_int_equal(k->head->id, 2);
	assert_int_equal(k->tail->id, 12);
	assert_null(kt_next(&kt, k)); /* still busy with 1 */
	assert_true(kt_done(&kt, k, 1));
	for (i = 0; i < sizeof(out) / sizeof(out[0]); i++) {
		next_is(&kt, k, out[i]);
		assert_null(kt_next(&kt, k)); /* busy with it now */
		assert_int_equal(k->n_wait, sizeof(out) / sizeof(out[0]) - i - 1);
		assert_int_equal(kt.n_wait, k->n_wait);
		check_table(&kt, 0);
		assert_true(kt_done(&kt, k, out[i]));
	}
	assert_null(kt_next(&kt, k)); /* empty */
	assert_null(k->head);
	assert_null(k->tail);
	assert_true(kt_key_gc(&kt, k));
	kt_close(&kt);
}

static void test_wait_insert_keeps_tail(void **state)
{
	struct keytab kt;
	struct kt_key *k;

	(void)state;
	kt_open(&kt);
	k = key(&kt, "c1", "k");
	assert_int_equal(kt_deliver(&kt, k, 1, 1), KT_PASS);
	must_wait(&kt, k, 5);
	must_wait(&kt, k, 2); /* before the head */
	assert_int_equal(k->tail->id, 5);
	must_wait(&kt, k, 9); /* after the tail */
	must_wait(&kt, k, 7); /* in the middle */
	assert_int_equal(k->tail->id, 9);
	must_wait(&kt, k, 10);
	assert_int_equal(k->tail->id, 10);
	check_table(&kt, 0);
	assert_true(kt_done(&kt, k, 1));
	next_is(&kt, k, 2);
	assert_true(kt_done(&kt, k, 2));
	next_is(&kt, k, 5);
	assert_true(kt_done(&kt, k, 5));
	next_is(&kt, k, 7);
	assert_true(kt_done(&kt, k, 7));
	next_is(&kt, k, 9);
	assert_true(kt_done(&kt, k, 9));
	next_is(&kt, k, 10);
	assert_null(k->tail);
	must_wait(&kt, k, 11); /* a list emptied by kt_next takes new entries */
	assert_ptr_equal(k->head, k->tail);
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_duplicates_waiting(void **state)
{
	struct keytab kt;
	struct kt_key *k;
	uint8_t q;

	(void)state;
	kt_open(&kt);
	k = key(&kt, "c1", "k");
	assert_int_equal(kt_deliver(&kt, k, 1, 1), KT_PASS);
	must_wait(&kt, k, 2);
	must_wait(&kt, k, 4);
	must_wait(&kt, k, 3);
	for (q = 0; q <= 2; q++) {
		assert_int_equal(kt_deliver(&kt, k, 2, q), KT_WAITING);
		assert_int_equal(kt_deliver(&kt, k, 3, q), KT_WAITING);
		assert_int_equal(kt_deliver(&kt, k, 4, q), KT_WAITING);
	}
	assert_int_equal(k->n_wait, 3);
	assert_int_equal(k->busy, 1);
	assert_true(kt_done(&kt, k, 1));
	assert_int_equal(kt_deliver(&kt, k, 2, 1), KT_WAITING); /* not busy, still waits */
	assert_int_equal(kt_deliver(&kt, k, 5, 1), KT_WAIT); /* not idle: others wait */
	assert_int_equal(k->busy, 0);
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_done_wrong_id(void **state)
{
	struct keytab kt;
	struct kt_key *k;

	(void)state;
	kt_open(&kt);
	k = key(&kt, "c1", "k");
	assert_int_equal(kt_deliver(&kt, k, 5, 1), KT_PASS);
	assert_false(kt_done(&kt, k, 4));
	assert_false(kt_done(&kt, k, 6));
	assert_false(kt_done(&kt, NULL, 5));
	assert_int_equal(k->busy, 5);
	assert_int_equal(kt_deliver(&kt, k, 6, 1), KT_WAIT); /* still busy */
	assert_false(kt_key_gc(&kt, k));
	assert_true(kt_done(&kt, k, 5));
	assert_int_equal(k->busy, 0);
	assert_false(kt_done(&kt, k, 5)); /* once */
	assert_int_equal(kt_deliver(&kt, k, 6, 1), KT_PASS); /* idle again */
	assert_int_equal(k->busy, 6);
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_qos0_never_busy(void **state)
{
	struct keytab kt;
	struct kt_key *k;

	(void)state;
	kt_open(&kt);
	k = key(&kt, "c1", "k");
	assert_int_equal(kt_deliver(&kt, k, 1, 0), KT_PASS);
	assert_int_equal(k->busy, 0);
	assert_int_equal(kt_deliver(&kt, k, 2, 0), KT_PASS); /* still idle */
	assert_int_equal(k->busy, 0);
	assert_false(kt_done(&kt, k, 2));
	assert_int_equal(kt_deliver(&kt, k, 3, 1), KT_PASS);
	assert_int_equal(k->busy, 3);
	assert_int_equal(kt_deliver(&kt, k, 4, 0), KT_WAIT);
	assert_int_equal(kt_deliver(&kt, k, 3, 0), KT_PASS); /* QoS 0 redelivery ends it */
	assert_int_equal(k->busy, 0);
	assert_int_equal(kt_deliver(&kt, k, 4, 0), KT_PASS);
	assert_int_equal(k->busy, 0);
	assert_true(kt_key_gc(&kt, k));
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_qos0_redelivery_with_waiting(void **state)
{
	struct keytab kt;
	struct kt_key *k;
	struct kt_wait *w;

	(void)state;
	kt_open(&kt);
	k = key(&kt, "c1", "k");
	assert_int_equal(kt_deliver(&kt, k, 5, 2), KT_PASS);
	assert_int_equal(kt_deliver(&kt, k, 6, 0), KT_WAIT);
	assert_non_null(kt_wait_add(&kt, k, 6, (void *)(uintptr_t)6, 0));
	must_wait(&kt, k, 7);
	assert_int_equal(kt_deliver(&kt, k, 5, 0), KT_PASS);
	assert_int_equal(k->busy, 0);
	assert_int_equal(kt_deliver(&kt, k, 8, 1), KT_WAIT); /* others still wait */
	w = kt_next(&kt, k);
	assert_non_null(w);
	assert_int_equal(w->id, 6);
	assert_int_equal(w->qos, 0);
	assert_int_equal(k->busy, 6);
	kt_wait_free(&kt, w);
	assert_int_equal(kt_deliver(&kt, k, 6, 0), KT_PASS); /* sent at QoS 0: over */
	assert_int_equal(k->busy, 0);
	next_is(&kt, k, 7);
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_busy_unknown(void **state)
{
	struct keytab kt;
	struct kt_key *k;

	(void)state;
	kt_open(&kt);
	k = key(&kt, "c1", "k");
	k->busy_unknown = true; /* restored: busy with some message */
	assert_int_equal(kt_deliver(&kt, k, 3, 1), KT_WAIT);
	assert_non_null(kt_wait_add(&kt, k, 3, (void *)(uintptr_t)3, 1));
	assert_int_equal(kt_deliver(&kt, k, 3, 1), KT_WAITING);
	assert_null(kt_next(&kt, k));
	assert_false(kt_key_gc(&kt, k));
	assert_true(kt_done(&kt, k, 12345)); /* whichever it was */
	assert_false(k->busy_unknown);
	assert_false(kt_done(&kt, k, 12345));
	next_is(&kt, k, 3);
	assert_true(kt_done(&kt, k, 3));
	assert_true(kt_key_gc(&kt, k));
	kt_close(&kt);
}

static void test_busy_unknown_idle(void **state)
{
	struct keytab kt;
	struct kt_key *k;

	(void)state;
	kt_open(&kt);
	k = key(&kt, "c1", "k");
	k->busy_unknown = true;
	assert_int_equal(kt_deliver(&kt, k, 9, 1), KT_WAIT); /* not idle, nothing waits */
	assert_false(kt_key_gc(&kt, k));
	assert_true(kt_done(&kt, k, 1));
	assert_true(kt_key_gc(&kt, k));
	assert_int_equal(kt.n_keys, 0);
	assert_int_equal(kt.n_targets, 0);
	kt_close(&kt);
}

static void test_gc_frees_key_and_target(void **state)
{
	struct keytab kt;
	struct kt_key *a, *b;

	(void)state;
	kt_open(&kt);
	a = key(&kt, "c1", "a");
	b = key(&kt, "c1", "b");
	assert_ptr_equal(a->t, b->t);
	assert_int_equal(a->t->n_keys, 2);
	assert_int_equal(kt.n_targets, 1);
	check_table(&kt, 0);
	assert_true(kt_key_gc(&kt, a));
	assert_int_equal(kt.n_keys, 1);
	assert_int_equal(kt.n_targets, 1);
	assert_int_equal(b->t->n_keys, 1);
	assert_null(find(&kt, "c1", "a"));
	assert_ptr_equal(find(&kt, "c1", "b"), b);
	check_table(&kt, 0);
	assert_true(kt_key_gc(&kt, b));
	assert_int_equal(kt.n_keys, 0);
	assert_int_equal(kt.n_targets, 0);
	assert_null(kt_target_find(&kt, "c1", 2));
	assert_int_equal(live, 3 + (long)kt.n_spare); /* two keys kept for reuse */
	assert_int_equal(kt.n_spare, 2);
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_gc_refuses(void **state)
{
	struct keytab kt;
	struct kt_key *k;

	(void)state;
	kt_open(&kt);
	assert_false(kt_key_gc(&kt, NULL));
	k = key(&kt, "c1", "k");
	assert_int_equal(kt_deliver(&kt, k, 1, 1), KT_PASS);
	assert_false(kt_key_gc(&kt, k)); /* busy */
	must_wait(&kt, k, 2);
	assert_true(kt_done(&kt, k, 1));
	assert_false(kt_key_gc(&kt, k)); /* waiting */
	k->releasing = true;
	next_is(&kt, k, 2);
	assert_true(kt_done(&kt, k, 2));
	assert_false(kt_key_gc(&kt, k)); /* releasing */
	assert_int_equal(kt.n_keys, 1);
	check_table(&kt, 0);
	k->releasing = false;
	assert_true(kt_key_gc(&kt, k));
	assert_int_equal(kt.n_keys, 0);
	assert_int_equal(kt.n_targets, 0);
	kt_close(&kt);
}

static void test_same_key_two_targets(void **state)
{
	struct keytab kt;
	struct kt_key *a, *b;

	(void)state;
	kt_open(&kt);
	a = key(&kt, "cA", "k");
	b = key(&kt, "cB", "k");
	assert_ptr_not_equal(a, b);
	assert_ptr_not_equal(a->t, b->t);
	assert_int_equal(kt.n_keys, 2);
	assert_int_equal(kt.n_targets, 2);
	assert_int_equal(kt_deliver(&kt, a, 1, 1), KT_PASS);
	assert_int_equal(kt_deliver(&kt, b, 2, 1), KT_PASS); /* a's busy time is a's */
	assert_int_equal(kt_deliver(&kt, a, 2, 1), KT_WAIT);
	assert_false(kt_done(&kt, b, 1));
	assert_ptr_equal(kt_key_find(&kt, a->t, "k", 1), a);
	assert_ptr_equal(kt_key_find(&kt, b->t, "k", 1), b);
	assert_true(kt_done(&kt, b, 2));
	assert_true(kt_key_gc(&kt, b));
	assert_ptr_equal(find(&kt, "cA", "k"), a);
	assert_null(find(&kt, "cB", "k"));
	assert_int_equal(kt.n_targets, 1);
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_embedded_nul(void **state)
{
	static const char g1[] = "gG\0a/#", g2[] = "gG\0b/#";
	struct keytab kt;
	struct kt_key *a, *b, *c, *e, *z;

	(void)state;
	kt_open(&kt);
	a = kt_key_get(&kt, g1, sizeof(g1) - 1, "\0k", 2);
	b = kt_key_get(&kt, g2, sizeof(g2) - 1, "\0k", 2);
	c = kt_key_get(&kt, "gG", 2, "\0k", 2); /* the prefix before the NUL */
	e = kt_key_get(&kt, g1, sizeof(g1) - 1, "\0", 1);
	z = kt_key_get(&kt, "", 0, "", 0); /* empty name and key */
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_non_null(e);
	assert_non_null(z);
	assert_int_equal(kt.n_targets, 4);
	assert_int_equal(kt.n_keys, 5);
	assert_ptr_equal(e->t, a->t);
	assert_ptr_not_equal(a->t, b->t);
	assert_ptr_not_equal(a->t, c->t);
	assert_int_equal(a->t->nlen, sizeof(g1) - 1);
	assert_memory_equal(a->t->name, g1, sizeof(g1) - 1);
	assert_ptr_equal(kt_target_find(&kt, g2, sizeof(g2) - 1), b->t);
	assert_ptr_equal(kt_key_find(&kt, a->t, "\0k", 2), a);
	assert_ptr_equal(kt_key_find(&kt, a->t, "\0", 1), e);
	assert_null(kt_key_find(&kt, a->t, "", 0));
	assert_ptr_equal(kt_key_find(&kt, z->t, "", 0), z);
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_length_bounds(void **state)
{
	struct keytab kt;
	unsigned char *big = calloc(UINT16_MAX + 2, 1);
	struct kt_key *k;

	(void)state;
	assert_non_null(big);
	kt_open(&kt);
	assert_null(kt_key_get(&kt, big, UINT16_MAX + 1, "k", 1));
	assert_null(kt_key_get(&kt, "c1", 2, big, UINT16_MAX + 1));
	assert_int_equal(kt.n_targets, 0);
	assert_int_equal(kt.n_keys, 0);
	check_table(&kt, 0);
	k = kt_key_get(&kt, big, UINT16_MAX, big, UINT16_MAX);
	assert_non_null(k);
	assert_int_equal(k->klen, UINT16_MAX);
	assert_int_equal(k->t->nlen, UINT16_MAX);
	assert_ptr_equal(kt_key_get(&kt, big, UINT16_MAX, big, UINT16_MAX), k);
	assert_null(kt_target_find(&kt, big, UINT16_MAX - 1));
	check_table(&kt, 0);
	kt_close(&kt);
	free(big);
}

#define MANY_KEYS 100000
#define MANY_TARGETS 1000

static void many_name(char *name, char *k, int i)
{
	snprintf(name, 16, "c%d", i % MANY_TARGETS);
	snprintf(k, 16, "k%d", i);
}

static void test_many_keys(void **state)
{
	struct keytab kt;
	char name[16], k[16];
	struct kt_key *p;
	int i;

	(void)state;
	kt_open(&kt);
	for (i = 0; i < MANY_KEYS; i++) {
		many_name(name, k, i);
		p = key(&kt, name, k);
		assert_int_equal(kt_deliver(&kt, p, (uint64_t)i + 1, 1), KT_PASS);
	}
	assert_int_equal(kt.n_keys, MANY_KEYS);
	assert_int_equal(kt.n_targets, MANY_TARGETS);
	assert_true(kt.cap_keys >= MANY_KEYS);
	assert_true(kt.cap_targets >= MANY_TARGETS);
	check_table(&kt, 0);
	for (i = 0; i < MANY_KEYS; i++) {
		many_name(name, k, i);
		p = find(&kt, name, k);
		assert_non_null(p);
		assert_int_equal(p->busy, (uint64_t)i + 1);
		assert_true(kt_done(&kt, p, (uint64_t)i + 1));
		assert_true(kt_key_gc(&kt, p));
	}
	assert_int_equal(kt.n_keys, 0);
	assert_int_equal(kt.n_targets, 0);
	check_table(&kt, 0);
	kt_close(&kt);
}

static int count_key(void *arg, struct kt_key *k)
{
	(*(int *)arg)++;
	return k->busy == 2 ? 7 : 0;
}

static void test_each(void **state)
{
	struct keytab kt;
	int n = 0;

	(void)state;
	kt_open(&kt);
	assert_int_equal(kt_each(&kt, count_key, &n), 0);
	assert_int_equal(n, 0);
	key(&kt, "c1", "a");
	key(&kt, "c1", "b");
	key(&kt, "c2", "a");
	assert_int_equal(kt_each(&kt, count_key, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(kt_deliver(&kt, find(&kt, "c2", "a"), 2, 1), KT_PASS);
	n = 0;
	assert_int_equal(kt_each(&kt, count_key, &n), 7); /* stops there */
	assert_true(n >= 1 && n <= 3);
	kt_close(&kt);
}

/* Target "cA": k1 busy with 3 waiting, k2 2 waiting, k3 busy; "cB": one key, 2 waiting. */
static void drop_setup(struct keytab *kt, struct kt_key **other)
{
	struct kt_key *k;

	k = key(kt, "cA", "k1");
	assert_int_equal(kt_deliver(kt, k, 1, 1), KT_PASS);
	must_wait(kt, k, 4);
	must_wait(kt, k, 2);
	must_wait(kt, k, 3);
	k = key(kt, "cA", "k2");
	assert_int_equal(kt_deliver(kt, k, 5, 1), KT_PASS);
	must_wait(kt, k, 6);
	must_wait(kt, k, 7);
	assert_true(kt_done(kt, k, 5));
	k = key(kt, "cA", "k3");
	assert_int_equal(kt_deliver(kt, k, 8, 1), KT_PASS);
	*other = k = key(kt, "cB", "k1");
	assert_int_equal(kt_deliver(kt, k, 9, 1), KT_PASS);
	must_wait(kt, k, 10);
	must_wait(kt, k, 11);
	check_table(kt, 0);
}

static void test_target_drop(void **state)
{
	static const uint64_t ids[] = { 2, 3, 4, 6, 7 };
	struct keytab kt;
	struct kt_key *other;
	struct drops d = { .n = 0 };
	size_t i;

	(void)state;
	kt_open(&kt);
	drop_setup(&kt, &other);
	d.t = kt_target_find(&kt, "cA", 2);
	assert_non_null(d.t);
	assert_int_equal(d.t->n_keys, 3);
	kt_target_drop(&kt, (struct kt_target *)d.t, record_drop, &d);
	assert_int_equal(d.n, 5);
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		assert_true(dropped(&d, ids[i]));
	assert_null(kt_target_find(&kt, "cA", 2));
	assert_int_equal(kt.n_targets, 1);
	assert_int_equal(kt.n_keys, 1);
	assert_int_equal(kt.n_wait, 2);
	assert_ptr_equal(find(&kt, "cB", "k1"), other);
	assert_int_equal(other->busy, 9);
	assert_int_equal(other->n_wait, 2);
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_target_drop_no_callback(void **state)
{
	struct keytab kt;
	struct kt_key *other;

	(void)state;
	kt_open(&kt);
	drop_setup(&kt, &other);
	kt_target_drop(&kt, other->t, NULL, NULL);
	assert_int_equal(kt.n_targets, 1);
	assert_int_equal(kt.n_keys, 3);
	assert_int_equal(kt.n_wait, 5);
	assert_null(kt_target_find(&kt, "cB", 2));
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_free_with_waiting(void **state)
{
	static const uint64_t ids[] = { 2, 3, 4, 6, 7, 10, 11 };
	struct keytab kt;
	struct kt_key *other;
	struct drops d = { .n = 0 };
	size_t i;

	(void)state;
	kt_open(&kt);
	drop_setup(&kt, &other);
	kt_free(&kt, record_drop, &d);
	assert_int_equal(d.n, 7);
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		assert_true(dropped(&d, ids[i]));
	assert_int_equal(kt.n_keys, 0);
	assert_int_equal(kt.n_targets, 0);
	assert_int_equal(kt.n_wait, 0);
	assert_int_equal(live, 0);
}

static void test_free_many_targets(void **state)
{
	struct keytab kt;
	char name[16];
	struct kt_key *k;
	struct drops d = { .n = 0 };
	int i;

	(void)state;
	kt_open(&kt);
	for (i = 0; i < 200; i++) { /* past the first table size: kt_free walks grown buckets */
		snprintf(name, sizeof(name), "c%d", i);
		k = key(&kt, name, "k");
		assert_int_equal(kt_deliver(&kt, k, 1000 + (uint64_t)i, 1), KT_PASS);
		if (i % 5 == 0)
			must_wait(&kt, k, (uint64_t)i + 1);
	}
	check_table(&kt, 0);
	kt_free(&kt, record_drop, &d);
	assert_int_equal(d.n, 40);
	assert_int_equal(live, 0);
}

static void test_oom_init(void **state)
{
	struct keytab kt;
	long n;

	(void)state;
	for (n = 1; n <= 2; n++) {
		live = n_allocs = 0;
		fail_at = n;
		assert_int_equal(kt_init(&kt, t_alloc, t_free), -1);
		assert_int_equal(live, 0);
		assert_null(kt.keys);
		assert_null(kt.targets);
		kt_free(&kt, NULL, NULL); /* harmless after a failed init */
		assert_int_equal(live, 0);
	}
}

static void test_oom_new_target(void **state)
{
	struct keytab kt;

	(void)state;
	kt_open(&kt);
	fail_in(1); /* the target */
	assert_null(kt_key_get(&kt, "c1", 2, "k", 1));
	assert_int_equal(kt.n_targets, 0);
	check_table(&kt, 0);
	fail_in(2); /* the key, after its new target */
	assert_null(kt_key_get(&kt, "c1", 2, "k", 1));
	assert_null(kt_target_find(&kt, "c1", 2)); /* no half-made target */
	assert_int_equal(kt.n_targets, 0);
	assert_int_equal(kt.n_keys, 0);
	check_table(&kt, 0);
	fail_at = 0;
	assert_non_null(kt_key_get(&kt, "c1", 2, "k", 1));
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_oom_existing_target(void **state)
{
	struct keytab kt;
	struct kt_key *a;

	(void)state;
	kt_open(&kt);
	a = key(&kt, "c1", "a");
	fail_in(1);
	assert_null(kt_key_get(&kt, "c1", 2, "b", 1));
	assert_ptr_equal(kt_target_find(&kt, "c1", 2), a->t); /* the target stays */
	assert_int_equal(a->t->n_keys, 1);
	assert_int_equal(kt.n_keys, 1);
	check_table(&kt, 0);
	fail_in(1);
	assert_ptr_equal(kt_key_get(&kt, "c1", 2, "a", 1), a); /* found: nothing allocated */
	fail_at = 0;
	kt_close(&kt);
}

static void test_oom_wait_add(void **state)
{
	struct keytab kt;
	struct kt_key *k;

	(void)state;
	kt_open(&kt);
	k = key(&kt, "c1", "k");
	assert_int_equal(kt_deliver(&kt, k, 1, 1), KT_PASS);
	must_wait(&kt, k, 3);
	fail_in(1);
	assert_int_equal(kt_deliver(&kt, k, 2, 1), KT_WAIT);
	assert_null(kt_wait_add(&kt, k, 2, NULL, 1));
	assert_int_equal(k->n_wait, 1);
	assert_int_equal(kt.n_wait, 1);
	assert_int_equal(kt_deliver(&kt, k, 2, 1), KT_WAIT); /* not waiting after all */
	check_table(&kt, 0);
	kt_close(&kt);
}

/* Fills one target with MIN_CAP (64) keys, then fails the key table's growth. */
static void test_oom_key_growth(void **state)
{
	struct keytab kt;
	char k[16];
	size_t cap;
	int i;

	(void)state;
	kt_open(&kt);
	cap = kt.cap_keys;
	for (i = 0; (size_t)i < cap; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		key(&kt, "c1", k);
	}
	assert_int_equal(kt.cap_keys, cap);
	fail_in(2); /* the key succeeds, the new table fails */
	key(&kt, "c1", "more");
	assert_int_equal(kt.cap_keys, cap);
	assert_int_equal(kt.n_keys, cap + 1);
	check_table(&kt, 0);
	fail_at = 0;
	key(&kt, "c1", "more2"); /* grows now */
	assert_int_equal(kt.cap_keys, cap * 2);
	check_table(&kt, 0);
	kt_close(&kt);
}

/* Fills the target table, then fails its growth when a new target comes. */
static void test_oom_target_growth(void **state)
{
	struct keytab kt;
	char name[16];
	size_t cap;
	int i;

	(void)state;
	kt_open(&kt);
	cap = kt.cap_targets;
	for (i = 0; (size_t)i < cap; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		key(&kt, name, "k");
	}
	fail_in(2); /* target, its table (fails), key, key table */
	key(&kt, "cnew", "k");
	assert_int_equal(kt.cap_targets, cap);
	assert_int_equal(kt.n_targets, cap + 1);
	check_table(&kt, 0);
	fail_at = 0;
	kt_close(&kt);
}

/* Ends key p's busy time, hands out and ends its waiting entries, and frees it. */
static void oom_release(struct keytab *kt, struct kt_key *p)
{
	struct kt_wait *w;

	assert_true(kt_done(kt, p, p->busy));
	while ((w = kt_next(kt, p))) {
		assert_true(kt_done(kt, p, w->id));
		kt_wait_free(kt, w);
	}
	assert_true(kt_key_gc(kt, p));
}

/*
 * A mixed run of operations over 70 targets of one key each (both tables
 * grow), each key delivered to about twice, that tolerates NULL from
 * kt_key_get and kt_wait_add.
 */
static void oom_script(struct keytab *kt)
{
	char name[16];
	struct kt_key *p;
	int i;

	for (i = 0; i < 150; i++) {
		snprintf(name, sizeof(name), "c%d", i % 70);
		p = kt_key_get(kt, name, strlen(name), "k", 1);
		if (!p) {
			assert_null(find(kt, name, "k"));
			check_table(kt, 0);
			continue;
		}
		if (kt_deliver(kt, p, (uint64_t)i + 1, 1) == KT_WAIT &&
		    !kt_wait_add(kt, p, (uint64_t)i + 1, (void *)(uintptr_t)(i + 1), 1))
			assert_int_equal(kt_deliver(kt, p, (uint64_t)i + 1, 1), KT_WAIT);
		if (i >= 70 && i % 3 == 0) /* after the first round: both tables have grown */
			oom_release(kt, p);
		check_table(kt, 0);
	}
}

static void test_oom_every_allocation(void **state)
{
	struct keytab kt;
	long total, n;

	(void)state;
	kt_open(&kt);
	oom_script(&kt);
	total = n_allocs;
	assert_true(kt.cap_targets > 64); /* the script grows both tables */
	assert_true(kt.cap_keys > 64);
	assert_true(kt.n_wait > 0);
	kt_close(&kt);
	for (n = 3; n <= total; n++) {
		kt_open(&kt);
		fail_at = n;
		oom_script(&kt);
		check_table(&kt, 0);
		kt_close(&kt);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_free_empty),
		cmocka_unit_test(test_fresh_key_passes),
		cmocka_unit_test(test_busy_key_makes_later_wait),
		cmocka_unit_test(test_wait_order),
		cmocka_unit_test(test_wait_insert_keeps_tail),
		cmocka_unit_test(test_duplicates_waiting),
		cmocka_unit_test(test_done_wrong_id),
		cmocka_unit_test(test_qos0_never_busy),
		cmocka_unit_test(test_qos0_redelivery_with_waiting),
		cmocka_unit_test(test_busy_unknown),
		cmocka_unit_test(test_busy_unknown_idle),
		cmocka_unit_test(test_gc_frees_key_and_target),
		cmocka_unit_test(test_gc_refuses),
		cmocka_unit_test(test_same_key_two_targets),
		cmocka_unit_test(test_embedded_nul),
		cmocka_unit_test(test_length_bounds),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_each),
		cmocka_unit_test(test_target_drop),
		cmocka_unit_test(test_target_drop_no_callback),
		cmocka_unit_test(test_free_with_waiting),
		cmocka_unit_test(test_free_many_targets),
		cmocka_unit_test(test_oom_init),
		cmocka_unit_test(test_oom_new_target),
		cmocka_unit_test(test_oom_existing_target),
		cmocka_unit_test(test_oom_wait_add),
		cmocka_unit_test(test_oom_key_growth),
		cmocka_unit_test(test_oom_target_growth),
		cmocka_unit_test(test_oom_every_allocation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
