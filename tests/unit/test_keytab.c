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
	assert_null(kt->busy);
	assert_int_equal(kt->n_busy, 0);
	assert_null(kt->spare);
	assert_int_equal(kt->n_spare, 0);
	assert_null(kt->last);
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

/* The busy index's entries (each busy, a live key, at most n_busy of them): their count. */
static size_t check_busy(const struct keytab *kt)
{
	const struct kt_key *k;
	size_t n = 0, i;

	for (i = 0; i < kt->cap_busy; i++)
		for (k = kt->busy[i]; k; k = k->bnext) {
			assert_true(++n <= kt->n_busy); /* no loop, no entry too many */
			assert_true(k->busy != 0);
			assert_ptr_equal(kt_key_find(kt, k->t, k->key, k->klen), k);
		}
	return n;
}

/* The spare keys: n_spare of them, at most KT_SPARE_MAX, each of the reusable size. */
static void check_spare(const struct keytab *kt)
{
	const struct kt_key *k;
	size_t n = 0;

	for (k = kt->spare; k; k = k->hnext) {
		assert_true(++n <= KT_SPARE_MAX);
		assert_int_equal(k->kcap, KT_SPARE_KLEN);
	}
	assert_int_equal(kt->n_spare, n);
}

/*
 * The whole table agrees with its counters, the busy index holds exactly the
 * busy keys (each found under its target and busy id), kt->last is NULL or a
 * live target, and the live blocks are the three tables, the keys, targets,
 * waiting entries and spare keys, and `extra` the caller holds.
 */
static void check_table(const struct keytab *kt, long extra)
{
	size_t i, n_keys = 0, n_targets = 0, tkeys = 0, n_busy = 0;
	uint64_t n_wait = 0;
	const struct kt_key *k;
	const struct kt_target *t;
	bool last_found = false;

	for (i = 0; i < kt->cap_keys; i++)
		for (k = kt->keys[i]; k; k = k->hnext, n_keys++) {
			assert_int_equal(k->hash & (kt->cap_keys - 1), i);
			n_wait += check_list(k);
			if (k->busy) {
				n_busy++;
				assert_ptr_equal(kt_busy_find(kt, k->t, k->busy), k);
			}
		}
	for (i = 0; i < kt->cap_targets; i++)
		for (t = kt->targets[i]; t; t = t->hnext, n_targets++) {
			assert_int_equal(t->hash & (kt->cap_targets - 1), i);
			tkeys += check_target(kt, t);
			last_found |= t == kt->last;
		}
	assert_int_equal(kt->n_keys, n_keys);
	assert_int_equal(tkeys, n_keys);
	assert_int_equal(kt->n_targets, n_targets);
	assert_int_equal(kt->n_wait, n_wait);
	assert_int_equal(kt->n_busy, n_busy);
	assert_int_equal(check_busy(kt), n_busy);
	assert_true(!kt->last || last_found);
	check_spare(kt);
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
	assert_int_equal(d.keys, 3); /* each key once, k3 with nothing waiting too */
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
	assert_int_equal(d.keys, 4);
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
	assert_int_equal(d.keys, 200);
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

/* --- the busy index ------------------------------------------------------------ */

/* The key of target `name` busy with id, or NULL (also when the target has no state). */
static struct kt_key *busy_find(const struct keytab *kt, const char *name, uint64_t id)
{
	return kt_busy_find(kt, kt_target_find(kt, name, strlen(name)), id);
}

static void test_busy_find(void **state)
{
	struct keytab kt;
	struct kt_key *a, *a2, *b;

	(void)state;
	kt_open(&kt);
	a = key(&kt, "cA", "k");
	a2 = key(&kt, "cA", "k2");
	b = key(&kt, "cB", "k");
	assert_int_equal(kt.n_busy, 0);
	assert_null(kt_busy_find(&kt, a->t, 5));
	assert_int_equal(kt_deliver(&kt, a, 5, 1), KT_PASS);
	assert_int_equal(kt.n_busy, 1);
	assert_ptr_equal(kt_busy_find(&kt, a->t, 5), a);
	assert_ptr_equal(busy_find(&kt, "cA", 5), a);
	assert_null(kt_busy_find(&kt, a->t, 6)); /* another id */
	assert_null(kt_busy_find(&kt, b->t, 5)); /* another target, the same id */
	assert_null(kt_busy_find(&kt, NULL, 5));
	assert_null(kt_busy_find(&kt, a->t, 0));
	assert_null(busy_find(&kt, "cC", 5)); /* no such target */
	check_table(&kt, 0);
	assert_int_equal(kt_deliver(&kt, b, 5, 2), KT_PASS); /* the same id at cB */
	assert_int_equal(kt_deliver(&kt, a2, 6, 1), KT_PASS);
	assert_int_equal(kt.n_busy, 3);
	assert_ptr_equal(kt_busy_find(&kt, a->t, 5), a);
	assert_ptr_equal(kt_busy_find(&kt, b->t, 5), b);
	assert_ptr_equal(kt_busy_find(&kt, a->t, 6), a2);
	assert_null(kt_busy_find(&kt, b->t, 6));
	must_wait(&kt, a, 7); /* waiting is not busy */
	assert_null(kt_busy_find(&kt, a->t, 7));
	assert_int_equal(kt_deliver(&kt, a, 5, 1), KT_PASS); /* a redelivery at QoS 1 stays busy */
	assert_int_equal(kt.n_busy, 3);
	assert_ptr_equal(kt_busy_find(&kt, a->t, 5), a);
	assert_false(kt_done(&kt, a, 6)); /* a2's id, not a's */
	assert_ptr_equal(kt_busy_find(&kt, a->t, 6), a2);
	assert_ptr_equal(kt_busy_find(&kt, a->t, 5), a);
	assert_int_equal(kt.n_busy, 3);
	check_table(&kt, 0);
	assert_true(kt_done(&kt, a, 5));
	assert_int_equal(kt.n_busy, 2);
	assert_null(kt_busy_find(&kt, a->t, 5));
	assert_ptr_equal(kt_busy_find(&kt, b->t, 5), b); /* cB's stays */
	assert_ptr_equal(kt_busy_find(&kt, a->t, 6), a2);
	check_table(&kt, 0);
	assert_int_equal(kt_deliver(&kt, a, 9, 0), KT_WAIT); /* not idle: 7 waits */
	next_is(&kt, a, 7);
	assert_ptr_equal(kt_busy_find(&kt, a->t, 7), a);
	assert_int_equal(kt.n_busy, 3);
	check_table(&kt, 0);
	kt_close(&kt);
}

/* QoS 0 redelivery, kt_next, kt_set_busy, restored keys and gc keep the index right. */
static void test_busy_index_follows(void **state)
{
	struct keytab kt;
	struct kt_key *k, *k2;
	struct kt_target *t;

	(void)state;
	kt_open(&kt);
	k = key(&kt, "c1", "k");
	t = k->t;
	assert_int_equal(kt_deliver(&kt, k, 1, 0), KT_PASS); /* QoS 0 on an idle key: not busy */
	assert_int_equal(kt.n_busy, 0);
	assert_null(kt_busy_find(&kt, t, 1));
	assert_int_equal(kt_deliver(&kt, k, 5, 1), KT_PASS);
	must_wait(&kt, k, 6);
	must_wait(&kt, k, 7);
	assert_int_equal(kt.n_busy, 1);
	assert_int_equal(kt_deliver(&kt, k, 5, 0), KT_PASS); /* QoS 0 redelivery: over */
	assert_int_equal(k->busy, 0);
	assert_int_equal(kt.n_busy, 0);
	assert_null(kt_busy_find(&kt, t, 5));
	check_table(&kt, 0);
	next_is(&kt, k, 6);
	assert_int_equal(kt.n_busy, 1);
	assert_ptr_equal(kt_busy_find(&kt, t, 6), k);
	assert_null(kt_busy_find(&kt, t, 7)); /* still waits */
	check_table(&kt, 0);
	kt_set_busy(&kt, k, 9); /* read back from the store with a new id */
	assert_int_equal(k->busy, 9);
	assert_int_equal(kt.n_busy, 1);
	assert_ptr_equal(kt_busy_find(&kt, t, 9), k);
	assert_null(kt_busy_find(&kt, t, 6));
	kt_set_busy(&kt, k, 9); /* the same again: nothing changes */
	assert_int_equal(kt.n_busy, 1);
	assert_ptr_equal(kt_busy_find(&kt, t, 9), k);
	check_table(&kt, 0);
	assert_false(kt_done(&kt, k, 6)); /* the old id is not the busy one any more */
	kt_set_busy(&kt, k, 0);
	assert_int_equal(k->busy, 0);
	assert_int_equal(kt.n_busy, 0);
	assert_null(kt_busy_find(&kt, t, 9));
	kt_set_busy(&kt, k, 0); /* not busy already */
	assert_int_equal(kt.n_busy, 0);
	check_table(&kt, 0);
	next_is(&kt, k, 7);
	assert_ptr_equal(kt_busy_find(&kt, t, 7), k);
	assert_true(kt_done(&kt, k, 7));
	assert_int_equal(kt.n_busy, 0);
	assert_null(kt_busy_find(&kt, t, 7));
	k->busy_unknown = true; /* restored: busy, its id unknown, then named by its row */
	assert_int_equal(kt.n_busy, 0);
	kt_set_busy(&kt, k, 12);
	assert_ptr_equal(kt_busy_find(&kt, t, 12), k);
	assert_true(kt_done(&kt, k, 12));
	assert_false(k->busy_unknown);
	assert_null(kt_busy_find(&kt, t, 12));
	assert_int_equal(kt.n_busy, 0);
	kt_set_busy(&kt, k, 11);
	assert_false(kt_key_gc(&kt, k)); /* busy */
	assert_ptr_equal(kt_busy_find(&kt, t, 11), k);
	kt_set_busy(&kt, k, 0);
	assert_true(kt_key_gc(&kt, k));
	assert_int_equal(kt.n_busy, 0);
	check_table(&kt, 0);
	k2 = key(&kt, "c1", "k"); /* k's memory again (a spare), k's target name */
	assert_ptr_equal(k2, k);
	assert_int_equal(k2->busy, 0);
	assert_null(kt_busy_find(&kt, k2->t, 11));
	assert_null(kt_busy_find(&kt, k2->t, 7));
	assert_int_equal(kt_deliver(&kt, k2, 11, 1), KT_PASS);
	assert_ptr_equal(kt_busy_find(&kt, k2->t, 11), k2);
	assert_int_equal(kt.n_busy, 1);
	check_table(&kt, 0);
	kt_close(&kt);
}

static void test_busy_target_drop(void **state)
{
	struct keytab kt;
	struct kt_key *other, *k;
	struct kt_target *ta;

	(void)state;
	kt_open(&kt);
	drop_setup(&kt, &other); /* busy: cA k1 (1), cA k3 (8), cB k1 (9) */
	ta = kt_target_find(&kt, "cA", 2);
	assert_int_equal(kt.n_busy, 3);
	assert_ptr_equal(kt_busy_find(&kt, ta, 1), find(&kt, "cA", "k1"));
	assert_ptr_equal(kt_busy_find(&kt, ta, 8), find(&kt, "cA", "k3"));
	assert_null(kt_busy_find(&kt, ta, 5)); /* k2's, ended */
	assert_null(kt_busy_find(&kt, ta, 9));
	assert_ptr_equal(kt_busy_find(&kt, other->t, 9), other);
	assert_null(kt_busy_find(&kt, other->t, 1));
	kt_target_drop(&kt, ta, NULL, NULL);
	assert_int_equal(kt.n_busy, 1);
	assert_ptr_equal(busy_find(&kt, "cB", 9), other);
	assert_null(busy_find(&kt, "cA", 1));
	check_table(&kt, 0);
	k = key(&kt, "cA", "k1"); /* made again: busy with a dropped key's id */
	assert_null(kt_busy_find(&kt, k->t, 1));
	assert_int_equal(kt_deliver(&kt, k, 1, 1), KT_PASS);
	assert_ptr_equal(kt_busy_find(&kt, k->t, 1), k);
	assert_int_equal(kt.n_busy, 2);
	check_table(&kt, 0);
	kt_target_drop(&kt, other->t, NULL, NULL);
	assert_int_equal(kt.n_busy, 1);
	assert_ptr_equal(busy_find(&kt, "cA", 1), k);
	check_table(&kt, 0);
	kt_close(&kt);
	kt_open(&kt);
	drop_setup(&kt, &other);
	kt_free(&kt, NULL, NULL); /* busy keys go with the table */
	assert_int_equal(kt.n_busy, 0);
	assert_int_equal(live, 0);
}

#define MANY_BUSY 50000
#define BUSY_TARGETS 50
#define BUSY_IDS (MANY_BUSY / BUSY_TARGETS) /* each target is busy with ids 1..BUSY_IDS */

static void busy_name(char *name, char *k, uint64_t *id, int i)
{
	snprintf(name, 16, "c%d", i % BUSY_TARGETS);
	snprintf(k, 16, "k%d", i);
	*id = (uint64_t)(i / BUSY_TARGETS) + 1;
}

static void test_busy_many(void **state)
{
	struct keytab kt;
	char name[16], k[16], other[16];
	struct kt_key *p, *q;
	struct kt_target *t;
	uint64_t id;
	int i;

	(void)state;
	kt_open(&kt);
	for (i = 0; i < MANY_BUSY; i++) {
		busy_name(name, k, &id, i);
		p = key(&kt, name, k);
		assert_int_equal(kt_deliver(&kt, p, id, 1), KT_PASS);
		assert_true(kt.cap_busy >= kt.n_busy); /* grows as it goes */
	}
	assert_int_equal(kt.n_busy, MANY_BUSY);
	assert_true(kt.cap_busy >= MANY_BUSY);
	check_table(&kt, 0);
	for (i = 0; i < MANY_BUSY; i++) {
		busy_name(name, k, &id, i);
		snprintf(other, sizeof(other), "c%d", (i + 1) % BUSY_TARGETS);
		t = kt_target_find(&kt, name, strlen(name));
		p = find(&kt, name, k);
		assert_non_null(p);
		assert_ptr_equal(kt_busy_find(&kt, t, id), p);
		assert_null(kt_busy_find(&kt, t, id + BUSY_IDS)); /* no such id */
		q = busy_find(&kt, other, id); /* the same id at another target: its key */
		assert_non_null(q);
		assert_ptr_not_equal(q, p);
		assert_ptr_not_equal(q->t, t);
	}
	for (i = 0; i < MANY_BUSY; i++) { /* ended half by acknowledgement, half by the caller */
		busy_name(name, k, &id, i);
		p = find(&kt, name, k);
		if (i % 2)
			kt_set_busy(&kt, p, 0);
		else
			assert_true(kt_done(&kt, p, id));
		assert_null(kt_busy_find(&kt, p->t, id));
		assert_int_equal(kt.n_busy, (size_t)(MANY_BUSY - i - 1));
	}
	check_table(&kt, 0);
	for (i = 0; i < MANY_BUSY; i++) {
		busy_name(name, k, &id, i);
		assert_true(kt_key_gc(&kt, find(&kt, name, k)));
	}
	assert_int_equal(kt.n_keys, 0);
	assert_int_equal(kt.n_targets, 0);
	assert_int_equal(kt.n_busy, 0);
	check_table(&kt, 0);
	kt_close(&kt);
}

/* Makes key "k<i>" of c1 busy with id i + 1 (the index grows when it is full). */
static struct kt_key *busy_key(struct keytab *kt, int i)
{
	char k[16];
	struct kt_key *p;

	snprintf(k, sizeof(k), "k%d", i);
	p = key(kt, "c1", k);
	assert_int_equal(kt_deliver(kt, p, (uint64_t)i + 1, 1), KT_PASS);
	return p;
}

/* Fills the busy index, then fails its growth, again and again: longer chains, still right. */
static void test_oom_busy_growth(void **state)
{
	struct keytab kt;
	struct kt_key *p;
	size_t cap;
	int i, n;

	(void)state;
	kt_open(&kt);
	cap = kt.cap_busy;
	for (i = 0; (size_t)i < cap; i++)
		busy_key(&kt, i);
	assert_int_equal(kt.cap_busy, cap);
	assert_int_equal(kt.n_busy, cap);
	for (n = (int)cap; n < 5 * (int)cap; n++) { /* every growth fails */
		char k[16];

		snprintf(k, sizeof(k), "k%d", n);
		p = key(&kt, "c1", k);
		fail_in(1); /* the busy index's new table */
		assert_int_equal(kt_deliver(&kt, p, (uint64_t)n + 1, 1), KT_PASS);
		assert_int_equal(n_allocs, fail_at); /* it was tried, and failed */
		fail_at = 0;
		assert_int_equal(p->busy, (uint64_t)n + 1);
		assert_ptr_equal(kt_busy_find(&kt, p->t, (uint64_t)n + 1), p);
		assert_int_equal(kt.cap_busy, cap);
		assert_int_equal(kt.n_busy, (size_t)n + 1);
	}
	check_table(&kt, 0); /* every busy key found in the chains */
	for (i = 0; i < n; i++) {
		p = kt_busy_find(&kt, kt_target_find(&kt, "c1", 2), (uint64_t)i + 1);
		assert_non_null(p);
		assert_int_equal(p->busy, (uint64_t)i + 1);
	}
	p = busy_key(&kt, n++); /* grows now, one doubling at a time */
	assert_int_equal(kt.cap_busy, cap * 2);
	busy_key(&kt, n++);
	assert_int_equal(kt.cap_busy, cap * 4);
	busy_key(&kt, n++);
	assert_int_equal(kt.cap_busy, cap * 8);
	busy_key(&kt, n++);
	assert_int_equal(kt.cap_busy, cap * 8); /* 5 * cap + 4 <= 8 * cap */
	assert_int_equal(kt.n_busy, (size_t)n);
	check_table(&kt, 0);
	for (i = 0; i < n; i += 2) { /* every other one ends: unlinked from its chain */
		p = kt_busy_find(&kt, kt_target_find(&kt, "c1", 2), (uint64_t)i + 1);
		assert_non_null(p);
		assert_true(kt_done(&kt, p, (uint64_t)i + 1));
		assert_true(kt_key_gc(&kt, p));
	}
	assert_int_equal(kt.n_busy, (size_t)n / 2);
	check_table(&kt, 0);
	kt_close(&kt);
}

/* --- spare keys ------------------------------------------------------------------ */

static void test_spare_reuse(void **state)
{
	static const char long_key[] = "a key of forty bytes, some of them used";
	struct keytab kt;
	struct kt_key *a, *b, *c, *d, *e;

	(void)state;
	kt_open(&kt);
	a = kt_key_get(&kt, "c1", 2, long_key, sizeof(long_key) - 1);
	assert_non_null(a);
	assert_int_equal(a->kcap, KT_SPARE_KLEN);
	assert_int_equal(a->klen, sizeof(long_key) - 1);
	a->t->cache_gen = 99;
	a->t->cache_flag = true;
	assert_int_equal(kt_deliver(&kt, a, 7, 1), KT_PASS);
	must_wait(&kt, a, 8);
	assert_true(kt_done(&kt, a, 7));
	next_is(&kt, a, 8);
	a->busy_stored = true; /* what the caller marks, and keytab does not interpret */
	a->refused = true;
	a->dead = true;
	assert_true(kt_done(&kt, a, 8));
	assert_int_equal(kt.n_spare, 0);
	assert_true(kt_key_gc(&kt, a));
	assert_int_equal(kt.n_spare, 1);
	assert_int_equal(kt.n_keys, 0);
	assert_int_equal(kt.n_targets, 0);
	assert_int_equal(live, 4); /* the tables and the spare */
	check_table(&kt, 0);
	b = kt_key_get(&kt, "c2", 2, "bb", 2);
	assert_ptr_equal(b, a); /* the spare */
	assert_int_equal(kt.n_spare, 0);
	assert_int_equal(live, 5); /* only the target is new */
	assert_int_equal(b->busy, 0);
	assert_false(b->busy_unknown);
	assert_false(b->busy_stored);
	assert_false(b->refused);
	assert_false(b->dead);
	assert_false(b->releasing);
	assert_null(b->head);
	assert_null(b->tail);
	assert_int_equal(b->n_wait, 0);
	assert_int_equal(b->kcap, KT_SPARE_KLEN);
	assert_int_equal(b->klen, 2);
	assert_memory_equal(b->key, "bb", 2);
	assert_ptr_equal(b->t, kt_target_find(&kt, "c2", 2));
	assert_int_equal(b->t->cache_gen, 0); /* a new target knows nothing of the old one */
	assert_false(b->t->cache_flag);
	assert_ptr_equal(find(&kt, "c2", "bb"), b);
	assert_null(kt_key_find(&kt, b->t, long_key, sizeof(long_key) - 1));
	assert_null(kt_busy_find(&kt, b->t, 8));
	assert_int_equal(kt.n_busy, 0);
	assert_int_equal(kt_deliver(&kt, b, 9, 1), KT_PASS); /* idle: nothing of a's waits */
	check_table(&kt, 0);
	c = key(&kt, "c2", "c"); /* no spare left: a new block */
	assert_int_equal(live, 6);
	assert_int_equal(c->kcap, KT_SPARE_KLEN);
	e = c;
	assert_true(kt_key_gc(&kt, c));
	assert_int_equal(kt.n_spare, 1);
	assert_true(kt_done(&kt, b, 9));
	assert_true(kt_key_gc(&kt, b)); /* and the target with it */
	assert_int_equal(kt.n_spare, 2);
	assert_int_equal(live, 5);
	check_table(&kt, 0);
	c = key(&kt, "c3", "x");
	d = key(&kt, "c3", ""); /* an empty key takes one too */
	assert_true((c == a || c == e) && (d == a || d == e) && c != d); /* the two spares */
	assert_int_equal(kt.n_spare, 0);
	assert_int_equal(live, 6); /* the tables, c3 and the two keys */
	assert_int_equal(d->klen, 0);
	assert_ptr_equal(kt_key_find(&kt, d->t, "", 0), d);
	check_table(&kt, 0);
	kt_close(&kt);
}

/* Keys up to KT_SPARE_KLEN bytes are kept, longer ones freed and never made from a spare. */
static void test_spare_lengths(void **state)
{
	unsigned char k48[KT_SPARE_KLEN + 1], k49[KT_SPARE_KLEN + 1];
	struct keytab kt;
	struct kt_key *anchor, *p, *s;
	long was;

	(void)state;
	memset(k48, 'a', sizeof(k48));
	memset(k49, 'b', sizeof(k49));
	k48[KT_SPARE_KLEN - 1] = 'z';
	kt_open(&kt);
	anchor = key(&kt, "c1", "anchor"); /* keeps the target: one block per key from here */
	p = kt_key_get(&kt, "c1", 2, k48, KT_SPARE_KLEN);
	assert_non_null(p);
	assert_int_equal(p->kcap, KT_SPARE_KLEN);
	assert_true(kt_key_gc(&kt, p));
	assert_int_equal(kt.n_spare, 1); /* KT_SPARE_KLEN bytes: kept */
	s = p;
	was = live;
	p = kt_key_get(&kt, "c1", 2, k49, KT_SPARE_KLEN + 1);
	assert_non_null(p);
	assert_ptr_not_equal(p, s); /* too long for the spare */
	assert_int_equal(kt.n_spare, 1);
	assert_int_equal(live, was + 1);
	assert_int_equal(p->kcap, KT_SPARE_KLEN + 1);
	assert_int_equal(p->klen, KT_SPARE_KLEN + 1);
	assert_memory_equal(p->key, k49, KT_SPARE_KLEN + 1);
	check_table(&kt, 0);
	assert_true(kt_key_gc(&kt, p));
	assert_int_equal(kt.n_spare, 1); /* not kept */
	assert_int_equal(live, was);
	check_table(&kt, 0);
	p = kt_key_get(&kt, "c1", 2, k48, KT_SPARE_KLEN); /* the longest a spare takes */
	assert_ptr_equal(p, s);
	assert_int_equal(kt.n_spare, 0);
	assert_int_equal(live, was);
	assert_int_equal(p->klen, KT_SPARE_KLEN);
	assert_memory_equal(p->key, k48, KT_SPARE_KLEN);
	assert_ptr_equal(kt_key_find(&kt, anchor->t, k48, KT_SPARE_KLEN), p);
	assert_null(kt_key_find(&kt, anchor->t, k48, KT_SPARE_KLEN - 1));
	check_table(&kt, 0);
	kt_close(&kt);
}

#define SPARE_KEYS (KT_SPARE_MAX + 100)

/* Makes key i of SPARE_KEYS over 10 targets. */
static struct kt_key *spare_key(struct keytab *kt, int i)
{
	char name[16], k[16];

	snprintf(name, sizeof(name), "c%d", i % 10);
	snprintf(k, sizeof(k), "k%d", i);
	return key(kt, name, k);
}

static void test_spare_max(void **state)
{
	struct keytab kt;
	struct kt_key *p;
	long was;
	int i;

	(void)state;
	kt_open(&kt);
	for (i = 0; i < SPARE_KEYS; i++)
		spare_key(&kt, i);
	assert_int_equal(live, 3 + 10 + SPARE_KEYS);
	for (i = 0; i < SPARE_KEYS; i++) {
		char name[16], k[16];

		snprintf(name, sizeof(name), "c%d", i % 10);
		snprintf(k, sizeof(k), "k%d", i);
		assert_true(kt_key_gc(&kt, find(&kt, name, k)));
		assert_int_equal(kt.n_spare, i < KT_SPARE_MAX ? (size_t)i + 1 : KT_SPARE_MAX);
	}
	assert_int_equal(kt.n_keys, 0);
	assert_int_equal(kt.n_targets, 0);
	assert_int_equal(kt.n_spare, KT_SPARE_MAX);
	assert_int_equal(live, 3 + KT_SPARE_MAX); /* the rest freed */
	check_table(&kt, 0);
	for (i = 0; i < SPARE_KEYS; i++) {
		was = live;
		p = spare_key(&kt, i);
		assert_int_equal(p->kcap, KT_SPARE_KLEN);
		/* a new target when i < 10; a new key once the spares are used up */
		assert_int_equal(live, was + (i < 10) + (i >= KT_SPARE_MAX));
		assert_int_equal(kt.n_spare, i < KT_SPARE_MAX ? (size_t)(KT_SPARE_MAX - i - 1) : 0);
	}
	check_table(&kt, 0);
	kt_close(&kt); /* the keys go to the spares, and they are freed */
}

static void test_free_spares(void **state)
{
	struct keytab kt;
	int i;

	(void)state;
	kt_open(&kt);
	for (i = 0; i < 20; i++)
		spare_key(&kt, i);
	for (i = 0; i < 10; i++)
		assert_true(kt_key_gc(&kt, spare_key(&kt, i))); /* found, then freed */
	assert_int_equal(kt.n_spare, 10);
	assert_int_equal(kt.n_keys, 10);
	check_table(&kt, 0);
	kt_free(&kt, NULL, NULL);
	assert_int_equal(kt.n_spare, 0);
	assert_null(kt.spare);
	assert_int_equal(live, 0);
	kt_open(&kt);
	for (i = 0; i < 5; i++)
		spare_key(&kt, i);
	for (i = 0; i < 5; i++)
		assert_true(kt_key_gc(&kt, spare_key(&kt, i)));
	assert_int_equal(kt.n_keys, 0);
	assert_int_equal(kt.n_spare, 5);
	assert_int_equal(live, 8); /* only spares besides the tables */
	kt_free(&kt, NULL, NULL);
	assert_int_equal(kt.n_spare, 0);
	assert_int_equal(live, 0);
}

/* --- kt_key_get_in and kt->last ---------------------------------------------------- */

static void test_key_get_in(void **state)
{
	struct keytab kt;
	unsigned char *big = calloc(UINT16_MAX + 2, 1);
	struct kt_key *a, *b, *s;
	struct kt_target *t;

	(void)state;
	assert_non_null(big);
	kt_open(&kt);
	a = key(&kt, "c1", "a");
	t = a->t;
	assert_ptr_equal(kt_key_get_in(&kt, t, "a", 1), a); /* found */
	assert_int_equal(kt.n_keys, 1);
	b = kt_key_get_in(&kt, t, "b", 1);
	assert_non_null(b);
	assert_ptr_equal(b->t, t);
	assert_int_equal(t->n_keys, 2);
	assert_int_equal(kt.n_targets, 1);
	assert_ptr_equal(find(&kt, "c1", "b"), b);
	assert_ptr_equal(kt_key_get(&kt, "c1", 2, "b", 1), b);
	check_table(&kt, 0);
	assert_null(kt_key_get_in(&kt, t, big, (size_t)UINT16_MAX + 1));
	assert_int_equal(kt.n_keys, 2);
	fail_in(1); /* the key */
	assert_null(kt_key_get_in(&kt, t, "c", 1));
	fail_at = 0;
	assert_ptr_equal(kt_target_find(&kt, "c1", 2), t); /* the target stays */
	assert_int_equal(t->n_keys, 2);
	assert_int_equal(kt.n_keys, 2);
	check_table(&kt, 0);
	assert_true(kt_key_gc(&kt, b));
	s = b;
	fail_in(1); /* a spare needs no allocation */
	b = kt_key_get_in(&kt, t, "c", 1);
	fail_at = 0;
	assert_ptr_equal(b, s);
	assert_int_equal(kt.n_spare, 0);
	assert_ptr_equal(find(&kt, "c1", "c"), b);
	check_table(&kt, 0);
	kt_close(&kt);
	free(big);
}

static void test_last_cleared(void **state)
{
	struct keytab kt;
	struct kt_key *a, *b, *c, *d, *e;
	struct kt_target *t1;

	(void)state;
	kt_open(&kt);
	a = key(&kt, "c1", "a");
	b = key(&kt, "c1", "b");
	c = key(&kt, "c2", "k");
	d = key(&kt, "c3", "k");
	e = key(&kt, "c4", "k");
	t1 = a->t;
	kt.last = t1;
	assert_true(kt_key_gc(&kt, a));
	assert_ptr_equal(kt.last, t1); /* its target lives on with b */
	assert_true(kt_key_gc(&kt, c));
	assert_ptr_equal(kt.last, t1); /* another target went */
	kt_target_drop(&kt, e->t, NULL, NULL);
	assert_ptr_equal(kt.last, t1);
	assert_ptr_equal(kt_key_get_in(&kt, kt.last, "a", 1)->t, t1); /* still usable */
	check_table(&kt, 0);
	assert_true(kt_key_gc(&kt, find(&kt, "c1", "a")));
	assert_true(kt_key_gc(&kt, b)); /* the last key of the cached target */
	assert_null(kt.last);
	assert_null(kt_target_find(&kt, "c1", 2));
	check_table(&kt, 0);
	kt.last = d->t;
	kt_target_drop(&kt, d->t, NULL, NULL);
	assert_null(kt.last);
	check_table(&kt, 0);
	a = key(&kt, "c5", "k");
	assert_int_equal(kt_deliver(&kt, a, 1, 1), KT_PASS);
	must_wait(&kt, a, 2); /* busy and waiting, it goes with the target */
	kt.last = a->t;
	kt_target_drop(&kt, a->t, NULL, NULL);
	assert_null(kt.last);
	a = key(&kt, "c6", "k");
	kt.last = a->t;
	kt_free(&kt, NULL, NULL); /* every target goes */
	assert_null(kt.last);
	assert_int_equal(live, 0);
}

/* --- the drop callback, per key ------------------------------------------------------ */

/*
 * The drop callback's log: one token per call, "target/key:id " for a waiting
 * entry and "target/key:-busy " for the key itself, which must still be in
 * the table (its target alive) with its list emptied.
 */
struct drop_log {
	const struct keytab *kt;
	char s[1024];
	size_t keys;
};

static void log_drop(void *arg, struct kt_key *k, struct kt_wait *w)
{
	struct drop_log *l = arg;
	size_t n = strlen(l->s);

	assert_ptr_equal(kt_key_find(l->kt, k->t, k->key, k->klen), k);
	assert_ptr_equal(kt_target_find(l->kt, k->t->name, k->t->nlen), k->t);
	if (!w) {
		assert_null(k->head);
		assert_null(k->tail);
		assert_int_equal(k->n_wait, 0);
		l->keys++;
	}
	assert_true(n + 32 < sizeof(l->s));
	if (w)
		snprintf(l->s + n, sizeof(l->s) - n, "%.*s/%.*s:%llu ", (int)k->t->nlen, k->t->name,
			 (int)k->klen, k->key, (unsigned long long)w->id);
	else
		snprintf(l->s + n, sizeof(l->s) - n, "%.*s/%.*s:-%llu ", (int)k->t->nlen,
			 k->t->name, (int)k->klen, k->key, (unsigned long long)k->busy);
}

/* The log is exactly the groups, in some order (keys come in table order), each once. */
static void log_is(const struct drop_log *l, const char *const *groups, size_t n)
{
	size_t i, len = 0;
	const char *p;

	for (i = 0; i < n; i++) {
		p = strstr(l->s, groups[i]);
		assert_non_null(p);
		assert_null(strstr(p + 1, groups[i]));
		len += strlen(groups[i]);
	}
	assert_int_equal(strlen(l->s), len);
	assert_int_equal(l->keys, n);
}

static void test_target_drop_key_calls(void **state)
{
	static const char *const ga[] = {
		"cA/k1:2 cA/k1:3 cA/k1:4 cA/k1:-1 ", /* its waiting entries in order, then the key */
		"cA/k2:6 cA/k2:7 cA/k2:-0 ", "cA/k3:-8 ", /* nothing waits: the key alone */
	};
	static const char *const gb[] = { "cB/k1:10 cB/k1:11 cB/k1:-9 " };
	static const char *const gall[] = {
		"cA/k1:2 cA/k1:3 cA/k1:4 cA/k1:-1 ",
		"cA/k2:6 cA/k2:7 cA/k2:-0 ",
		"cA/k3:-8 ",
		"cB/k1:10 cB/k1:11 cB/k1:-9 ",
	};
	struct keytab kt;
	struct kt_key *other;
	struct drop_log l = { .kt = &kt };

	(void)state;
	kt_open(&kt);
	drop_setup(&kt, &other);
	kt_target_drop(&kt, kt_target_find(&kt, "cA", 2), log_drop, &l);
	log_is(&l, ga, 3);
	assert_int_equal(kt.n_spare, 3); /* the dropped keys are kept */
	check_table(&kt, 0);
	memset(l.s, 0, sizeof(l.s));
	l.keys = 0;
	kt_target_drop(&kt, other->t, log_drop, &l);
	log_is(&l, gb, 1);
	assert_int_equal(kt.n_targets, 0);
	check_table(&kt, 0);
	kt_close(&kt);
	kt_open(&kt);
	drop_setup(&kt, &other);
	memset(l.s, 0, sizeof(l.s));
	l.keys = 0;
	kt_free(&kt, log_drop, &l);
	log_is(&l, gall, 4);
	assert_int_equal(live, 0);
}

/* Dropping one target of many in a grown table: all its keys (one call each), no other. */
static void test_target_drop_many(void **state)
{
	struct keytab kt;
	struct drops d = { .n = 0 };
	char name[16], k[16];
	struct kt_key *p;
	int i;

	(void)state;
	kt_open(&kt);
	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "c%d", i % 20);
		snprintf(k, sizeof(k), "k%d", i);
		p = key(&kt, name, k);
		assert_int_equal(kt_deliver(&kt, p, (uint64_t)i + 100, 1), KT_PASS);
		if (i % 20 == 7 && i < 64 * 20)
			must_wait(&kt, p, (uint64_t)i / 20 + 1); /* 64 waiting entries at c7 */
	}
	assert_true(kt.cap_keys > 64);
	d.t = kt_target_find(&kt, "c7", 2);
	assert_int_equal(d.t->n_keys, 100);
	kt_target_drop(&kt, (struct kt_target *)d.t, record_drop, &d);
	assert_int_equal(d.keys, 100);
	assert_int_equal(d.n, 64);
	assert_int_equal(kt.n_keys, 1900);
	assert_int_equal(kt.n_targets, 19);
	assert_int_equal(kt.n_busy, 1900);
	assert_int_equal(kt.n_wait, 0);
	assert_null(kt_target_find(&kt, "c7", 2));
	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "c%d", i % 20);
		snprintf(k, sizeof(k), "k%d", i);
		p = find(&kt, name, k);
		if (i % 20 == 7) {
			assert_null(p);
			continue;
		}
		assert_non_null(p);
		assert_ptr_equal(busy_find(&kt, name, (uint64_t)i + 100), p);
	}
	check_table(&kt, 0);
	kt_close(&kt);
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
		cmocka_unit_test(test_busy_find),
		cmocka_unit_test(test_busy_index_follows),
		cmocka_unit_test(test_busy_target_drop),
		cmocka_unit_test(test_busy_many),
		cmocka_unit_test(test_oom_busy_growth),
		cmocka_unit_test(test_spare_reuse),
		cmocka_unit_test(test_spare_lengths),
		cmocka_unit_test(test_spare_max),
		cmocka_unit_test(test_free_spares),
		cmocka_unit_test(test_key_get_in),
		cmocka_unit_test(test_last_cleared),
		cmocka_unit_test(test_target_drop_key_calls),
		cmocka_unit_test(test_target_drop_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
