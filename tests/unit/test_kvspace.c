/*
 * test_kvspace.c - the sorted key/value space (src/kvspace.c) against a
 * naive model: an unsorted array searched linearly, whose order is worked
 * out only when the two are compared.
 *
 * Keys are short byte strings over a tiny alphabet that includes NUL and
 * 0xff, so that keys which are prefixes of one another, keys that differ
 * only after a NUL and the empty key are all common. Every random operation
 * (fixed seed) is applied to both, and the whole space is compared with the
 * model after each one. Out of memory is injected at every allocation of a
 * set, both when it replaces and when it inserts (with and without the
 * array growing): a failed set leaves the space exactly as it was.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvspace.h"
#include "mem.h"

/* --- the model -------------------------------------------------------------- */

#define KMAX 6
#define VMAX 8
#define MODEL_CAP 4096

struct mkv {
	uint8_t k[KMAX], v[VMAX];
	size_t kl, vl;
};

struct model {
	struct mkv e[MODEL_CAP];
	size_t n;
};

/* memcmp order, a shorter key first on a tie: written out byte by byte. */
static int naive_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t i;

	for (i = 0; i < al && i < bl; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return al == bl ? 0 : al < bl ? -1 : 1;
}

static struct mkv *model_find(struct model *m, const uint8_t *k, size_t kl)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		if (m->e[i].kl == kl && !memcmp(m->e[i].k, k, kl))
			return &m->e[i];
	return NULL;
}

static void model_set(struct model *m, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct mkv *e = model_find(m, k, kl);

	if (!e) {
		assert_true(m->n < MODEL_CAP);
		e = &m->e[m->n++];
		memcpy(e->k, k, kl);
		e->kl = kl;
	}
	memcpy(e->v, v, vl);
	e->vl = vl;
}

static int model_unset(struct model *m, const uint8_t *k, size_t kl)
{
	struct mkv *e = model_find(m, k, kl);

	if (!e)
		return -1;
	*e = m->e[--m->n];
	return 0;
}

static void model_unset_range(struct model *m, const uint8_t *lo, size_t lol, const uint8_t *hi,
			      size_t hil)
{
	size_t i = 0;

	while (i < m->n) {
		struct mkv *e = &m->e[i];

		if (naive_cmp(e->k, e->kl, lo, lol) >= 0 && naive_cmp(e->k, e->kl, hi, hil) < 0)
			*e = m->e[--m->n];
		else
			i++;
	}
}

/* How many model keys sort before k: what kvspace_lower must return. */
static size_t model_lower(const struct model *m, const uint8_t *k, size_t kl)
{
	size_t i, n = 0;

	for (i = 0; i < m->n; i++)
		n += naive_cmp(m->e[i].k, m->e[i].kl, k, kl) < 0;
	return n;
}

/* The space holds exactly the model, strictly increasing. */
static void check_equal(const struct kv_space *sp, const struct model *m)
{
	size_t i;

	assert_int_equal(sp->n, m->n);
	assert_true(sp->n <= sp->cap);
	for (i = 0; i < sp->n; i++) {
		const struct kv_entry *e = &sp->e[i];
		const struct mkv *x = model_find((struct model *)m, e->key, e->klen);

		if (i)
			assert_true(naive_cmp(sp->e[i - 1].key, sp->e[i - 1].klen, e->key,
					      e->klen) < 0);
		assert_non_null(x);
		assert_int_equal(e->vlen, x->vl);
		assert_memory_equal(e->val, x->v, x->vl ? x->vl : 0);
		assert_int_equal(model_lower(m, e->key, e->klen), i);
	}
}

/* --- random keys -------------------------------------------------------------- */

static uint32_t rng = 0x2545F491u;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static const uint8_t alphabet[] = { 0x00, 0x01, 'a', 'b', 0xff };

static size_t random_key(uint8_t *k)
{
	size_t n = rnd() % (KMAX + 1), i;

	for (i = 0; i < n; i++)
		k[i] = alphabet[rnd() % sizeof(alphabet)];
	return n;
}

static size_t random_val(uint8_t *v)
{
	size_t n = rnd() % (VMAX + 1), i;

	for (i = 0; i < n; i++)
		v[i] = (uint8_t)rnd();
	return n;
}

/* --- tests -------------------------------------------------------------------- */

static void test_random_against_model(void **state)
{
	static struct model m;
	struct kv_space sp = { NULL, 0, 0 };
	uint8_t k[KMAX], k2[KMAX], v[VMAX];
	size_t kl, kl2, vl, i, sets = 0, unsets = 0, ranges = 0, hits = 0, most = 0;

	(void)state;
	m.n = 0;
	for (i = 0; i < 20000; i++) {
		uint32_t op = rnd() % 16;
		const struct kv_entry *e;
		const struct mkv *x;

		kl = random_key(k);
		if (op < 7) {
			vl = random_val(v);
			assert_int_equal(kvspace_set(&sp, k, kl, v, vl), 0);
			model_set(&m, k, kl, v, vl);
			sets++;
		} else if (op < 11) {
			int want = model_unset(&m, k, kl);

			assert_int_equal(kvspace_unset(&sp, k, kl), want);
			unsets += want == 0;
		} else if (op < 12) {
			kl2 = random_key(k2);
			kvspace_unset_range(&sp, k, kl, k2, kl2);
			model_unset_range(&m, k, kl, k2, kl2);
			ranges++;
		} else {
			/* get and lower of present and absent keys */
			e = kvspace_get(&sp, k, kl);
			x = model_find(&m, k, kl);
			assert_true((e != NULL) == (x != NULL));
			if (e) {
				assert_int_equal(e->klen, kl);
				assert_memory_equal(e->key, k, kl ? kl : 0);
				assert_int_equal(e->vlen, x->vl);
				assert_memory_equal(e->val, x->v, x->vl ? x->vl : 0);
				hits++;
			}
			assert_int_equal(kvspace_lower(&sp, k, kl), model_lower(&m, k, kl));
		}
		if (i % 16 == 0 || op == 11)
			check_equal(&sp, &m);
		if (sp.n > most)
			most = sp.n;
	}
	check_equal(&sp, &m);
	/* the alphabet is small enough that everything happened often */
	assert_true(sets > 5000 && unsets > 500 && ranges > 500 && hits > 500);
	assert_true(most > 100); /* big enough for the bisection to take several steps */
	kvspace_free(&sp);
	assert_null(sp.e);
	assert_int_equal(sp.n, 0);
	assert_int_equal(sp.cap, 0);
}

/* Keys that only differ by a NUL, or are prefixes of one another, are distinct and ordered. */
static void test_nul_and_prefix_keys(void **state)
{
	struct kv_space sp = { NULL, 0, 0 };
	static const struct {
		const char *k;
		size_t kl;
	} keys[] = {
		/* in the order the space must keep */
		{ "", 0 },    { "\0", 1 },    { "\0\0", 2 }, { "\0a", 2 },    { "a", 1 },
		{ "a\0", 2 }, { "a\0\0", 3 }, { "a\0b", 3 }, { "a\x01", 2 },  { "ab", 2 },
		{ "abc", 3 }, { "b", 1 },     { "\xff", 1 }, { "\xff\0", 2 },
	};
	size_t n = sizeof(keys) / sizeof(keys[0]), i;
	const struct kv_entry *e;

	(void)state;
	/* inserted backwards and from the middle */
	for (i = n; i-- > 0;)
		assert_int_equal(
			kvspace_set(&sp, keys[(i * 5) % n].k, keys[(i * 5) % n].kl, &i, sizeof(i)),
			0);
	assert_int_equal(sp.n, n);
	for (i = 0; i < n; i++) {
		size_t want = 0;

		assert_int_equal(sp.e[i].klen, keys[i].kl);
		assert_memory_equal(sp.e[i].key, keys[i].k, keys[i].kl ? keys[i].kl : 0);
		assert_int_equal(kvspace_lower(&sp, keys[i].k, keys[i].kl), i);
		e = kvspace_get(&sp, keys[i].k, keys[i].kl);
		assert_ptr_equal(e, &sp.e[i]);
		/* which i stored it: (i' * 5) % n == i */
		while ((want * 5) % n != i)
			want++;
		assert_int_equal(e->vlen, sizeof(size_t));
		assert_memory_equal(e->val, &want, sizeof(want));
	}
	/* absent neighbours */
	assert_null(kvspace_get(&sp, "\0\0\0", 3));
	assert_int_equal(kvspace_lower(&sp, "\0\0\0", 3), 3);
	assert_null(kvspace_get(&sp, "aa", 2));
	assert_int_equal(kvspace_lower(&sp, "aa", 2), 9);
	assert_int_equal(kvspace_lower(&sp, "\xff\xff", 2), n);
	/* a prefix range: every key starting with "a" is in ["a", "b") */
	kvspace_unset_range(&sp, "a", 1, "b", 1);
	assert_int_equal(sp.n, n - 7);
	assert_null(kvspace_get(&sp, "a\0", 2));
	assert_non_null(kvspace_get(&sp, "b", 1));
	assert_non_null(kvspace_get(&sp, "\0a", 2));
	/* empty and reversed ranges remove nothing */
	kvspace_unset_range(&sp, "\0", 1, "\0", 1);
	kvspace_unset_range(&sp, "b", 1, "\0", 1);
	assert_int_equal(sp.n, n - 7);
	/* a range whose ends are absent keys */
	kvspace_unset_range(&sp, "\0\x01", 2, "\0b", 2);
	assert_int_equal(sp.n, n - 8);
	assert_null(kvspace_get(&sp, "\0a", 2));
	/* unset of a key that differs only after a NUL leaves its neighbour */
	assert_int_equal(kvspace_unset(&sp, "\0\0", 2), 0);
	assert_int_equal(kvspace_unset(&sp, "\0\0", 2), -1);
	assert_non_null(kvspace_get(&sp, "\0", 1));
	/* everything: from the empty key to one above every key */
	kvspace_unset_range(&sp, "", 0, "\xff\xff", 2);
	assert_int_equal(sp.n, 0);
	kvspace_free(&sp);
}

static void test_empty_key_and_value(void **state)
{
	struct kv_space sp = { NULL, 0, 0 };
	const struct kv_entry *e;

	(void)state;
	assert_null(kvspace_get(&sp, "", 0));
	assert_int_equal(kvspace_lower(&sp, "", 0), 0);
	assert_int_equal(kvspace_unset(&sp, "", 0), -1);
	kvspace_unset_range(&sp, "", 0, "z", 1); /* on an empty space */
	/* the empty key with an empty value (NULL pointers allowed for 0 bytes) */
	assert_int_equal(kvspace_set(&sp, NULL, 0, NULL, 0), 0);
	e = kvspace_get(&sp, "", 0);
	assert_non_null(e);
	assert_int_equal(e->klen, 0);
	assert_int_equal(e->vlen, 0);
	assert_non_null(e->val);
	/* replaced by a real value, then by an empty one again */
	assert_int_equal(kvspace_set(&sp, "", 0, "v", 1), 0);
	assert_int_equal(sp.n, 1);
	e = kvspace_get(&sp, "", 0);
	assert_int_equal(e->vlen, 1);
	assert_memory_equal(e->val, "v", 1);
	assert_int_equal(kvspace_set(&sp, "", 0, "", 0), 0);
	assert_int_equal(kvspace_get(&sp, "", 0)->vlen, 0);
	/* a non-empty key with an empty value sorts after the empty key */
	assert_int_equal(kvspace_set(&sp, "k", 1, NULL, 0), 0);
	assert_int_equal(sp.n, 2);
	assert_int_equal(sp.e[0].klen, 0);
	assert_int_equal(sp.e[1].klen, 1);
	assert_int_equal(kvspace_lower(&sp, "", 0), 0);
	assert_int_equal(kvspace_lower(&sp, "\0", 1), 1);
	/* [lo, lo) with lo the empty key is empty; ["", "\0") holds just the empty key */
	kvspace_unset_range(&sp, "", 0, "", 0);
	assert_int_equal(sp.n, 2);
	kvspace_unset_range(&sp, "", 0, "\0", 1);
	assert_int_equal(sp.n, 1);
	assert_null(kvspace_get(&sp, "", 0));
	assert_int_equal(kvspace_unset(&sp, "k", 1), 0);
	assert_int_equal(sp.n, 0);
	kvspace_free(&sp);
	kvspace_free(&sp); /* freeing a freed (zeroed) space is harmless */
}

/* A deep copy of the space's contents, to compare with after a failed set. */
static void snapshot(const struct kv_space *sp, struct model *m)
{
	size_t i;

	m->n = 0;
	for (i = 0; i < sp->n; i++)
		model_set(m, sp->e[i].key, sp->e[i].klen, sp->e[i].val, sp->e[i].vlen);
}

/* Every allocation of one set, failing in turn; returns how many failed before it worked. */
static long set_until_ok(struct kv_space *sp, const void *k, size_t kl, const void *v, size_t vl)
{
	static struct model before;
	long n;
	int rc;

	snapshot(sp, &before);
	for (n = 0;; n++) {
		mem_fail_after(n);
		rc = kvspace_set(sp, k, kl, v, vl);
		mem_fail_after(-1);
		if (rc == 0)
			return n;
		assert_int_equal(rc, -1);
		check_equal(sp, &before); /* unchanged */
		assert_true(n < 10);
	}
}

static void test_oom(void **state)
{
	static struct model m;
	struct kv_space sp = { NULL, 0, 0 };
	uint8_t k[2];
	size_t i;

	(void)state;
	m.n = 0;
	/* the first insert: value, array, key */
	assert_int_equal(set_until_ok(&sp, "k0", 2, "v", 1), 3);
	model_set(&m, (const uint8_t *)"k0", 2, (const uint8_t *)"v", 1);
	/* replacing: only the new value */
	assert_int_equal(set_until_ok(&sp, "k0", 2, "w", 1), 1);
	model_set(&m, (const uint8_t *)"k0", 2, (const uint8_t *)"w", 1);
	check_equal(&sp, &m);
	/* inserts with room in the array (value, key), then growing it (value, array, key) */
	for (i = 1; i < 40; i++) {
		long want = sp.n < sp.cap ? 2 : 3;

		k[0] = 'k';
		k[1] = (uint8_t)('0' + i);
		assert_int_equal(set_until_ok(&sp, k, 2, &i, 1), want);
		model_set(&m, k, 2, (const uint8_t *)&i, 1);
		check_equal(&sp, &m);
	}
	assert_true(sp.cap >= 40);
	/* an empty key and an empty value fail and succeed the same way */
	assert_int_equal(set_until_ok(&sp, "", 0, "", 0), 2);
	model_set(&m, (const uint8_t *)"", 0, (const uint8_t *)"", 0);
	check_equal(&sp, &m);
	/* reading and removing allocate nothing */
	mem_fail_after(0);
	assert_non_null(kvspace_get(&sp, "k0", 2));
	assert_int_equal(kvspace_unset(&sp, "k0", 2), 0);
	kvspace_unset_range(&sp, "k1", 2, "k5", 2);
	mem_fail_after(-1);
	model_unset(&m, (const uint8_t *)"k0", 2);
	model_unset_range(&m, (const uint8_t *)"k1", 2, (const uint8_t *)"k5", 2);
	check_equal(&sp, &m);
	kvspace_free(&sp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_against_model),
		cmocka_unit_test(test_nul_and_prefix_keys),
		cmocka_unit_test(test_empty_key_and_value),
		cmocka_unit_test(test_oom),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
