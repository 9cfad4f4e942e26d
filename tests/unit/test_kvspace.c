/*
 * test_kvspace.c - the sorted key/value space (src/kvspace.c) against a
 * naive model: an unsorted array searched linearly, whose order is worked
 * out only when the two are compared.
 *
 * Keys are short byte strings over a tiny alphabet that includes NUL and
 * 0xff, so that keys which are prefixes of one another, keys that differ
 * only after a NUL and the empty key are all common. Every random operation
 * (fixed seed) is applied to both, and the whole space is compared with the
 * model every few operations and after every range removal.
 *
 * The space is a chunked array, so every comparison also checks its shape
 * (check_shape: chunk counts, order across chunks, the fill invariant), and
 * tests aim at its edges: a full chunk splitting at each boundary, chunks
 * merging and emptied chunks leaving, cursors crossing chunks, ranges
 * removed across several chunks, and a workload of 200,000 keys in random
 * order against a model indexed by key number. Out of memory is injected at
 * every allocation of a set (replacing, inserting, splitting, growing the
 * top array): a failed set leaves the space exactly as it was, layout
 * included; removals allocate nothing.
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

#define CH KVSPACE_CHUNK
#define HALF (KVSPACE_CHUNK / 2)

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

/* How many model keys sort before k: the rank kvspace_seek must land on. */
static size_t model_lower(const struct model *m, const uint8_t *k, size_t kl)
{
	size_t i, n = 0;

	for (i = 0; i < m->n; i++)
		n += naive_cmp(m->e[i].k, m->e[i].kl, k, kl) < 0;
	return n;
}

/* --- looking inside the space --------------------------------------------------- */

/* The layout invariants of kvspace.c: counts, order across chunks, fill. */
static void check_shape(const struct kv_space *sp)
{
	size_t k, total = 0;

	assert_true(sp->nc <= sp->cap);
	assert_true((sp->nc == 0) == (sp->n == 0));
	for (k = 0; k < sp->nc; k++) {
		const struct kv_chunk *c = sp->c[k];

		assert_true(c->n >= 1 && c->n <= CH);
		total += c->n;
		if (k) {
			const struct kv_chunk *p = sp->c[k - 1];
			const struct kv_entry *a = &p->e[p->n - 1], *b = &c->e[0];

			assert_true(p->n + c->n > HALF);
			assert_true(naive_cmp(a->key, a->klen, b->key, b->klen) < 0);
		}
	}
	assert_int_equal(total, sp->n);
}

/* The rank of a position: how many entries come before it. */
static size_t rank(const struct kv_space *sp, const struct kv_pos *pos)
{
	size_t k, r = 0;

	for (k = 0; k < pos->c && k < sp->nc; k++)
		r += sp->c[k]->n;
	return r + pos->i;
}

/* Where kvspace_seek lands for k, as a rank (sp->n at the end). */
static size_t lower(const struct kv_space *sp, const void *k, size_t kl)
{
	struct kv_pos pos;
	size_t r;

	kvspace_seek(sp, k, kl, &pos);
	r = rank(sp, &pos);
	assert_true((kvspace_at(sp, &pos) == NULL) == (r == sp->n));
	return r;
}

/* Entry i in key order, by a cursor walk from the start. */
static const struct kv_entry *nth(const struct kv_space *sp, size_t i)
{
	struct kv_pos pos;

	kvspace_seek(sp, "", 0, &pos);
	while (i--)
		kvspace_next(sp, &pos);
	return kvspace_at(sp, &pos);
}

static int mkv_cmp(const void *a, const void *b)
{
	const struct mkv *x = a, *y = b;

	return naive_cmp(x->k, x->kl, y->k, y->kl);
}

/*
 * The space holds exactly the model, strictly increasing, walked with a
 * cursor. Sorts the model (its order means nothing) to compare in one pass.
 */
static void check_equal(const struct kv_space *sp, struct model *m)
{
	const struct kv_entry *e, *prev = NULL;
	struct kv_pos pos;
	size_t i = 0;

	check_shape(sp);
	assert_int_equal(sp->n, m->n);
	qsort(m->e, m->n, sizeof(m->e[0]), mkv_cmp);
	for (kvspace_seek(sp, "", 0, &pos); (e = kvspace_at(sp, &pos)); kvspace_next(sp, &pos)) {
		const struct mkv *x = &m->e[i];

		if (prev)
			assert_true(naive_cmp(prev->key, prev->klen, e->key, e->klen) < 0);
		assert_true(i < m->n);
		assert_int_equal(e->klen, x->kl);
		assert_memory_equal(e->key, x->k, x->kl ? x->kl : 0);
		assert_int_equal(e->vlen, x->vl);
		assert_memory_equal(e->val, x->v, x->vl ? x->vl : 0);
		prev = e;
		i++;
	}
	assert_int_equal(i, m->n);
	kvspace_next(sp, &pos); /* the end stays the end */
	assert_null(kvspace_at(sp, &pos));
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

/* Key number i, 4 bytes big-endian: key order is number order. */
static const uint8_t *num(uint32_t i)
{
	static uint8_t k[4];

	k[0] = (uint8_t)(i >> 24);
	k[1] = (uint8_t)(i >> 16);
	k[2] = (uint8_t)(i >> 8);
	k[3] = (uint8_t)i;
	return k;
}

static void set_num(struct kv_space *sp, struct model *m, uint32_t i)
{
	assert_int_equal(kvspace_set(sp, num(i), 4, &i, sizeof(i)), 0);
	model_set(m, num(i), 4, (const uint8_t *)&i, sizeof(i));
}

static void unset_num(struct kv_space *sp, struct model *m, uint32_t i)
{
	assert_int_equal(kvspace_unset(sp, num(i), 4), 0);
	assert_int_equal(model_unset(m, num(i), 4), 0);
}

/* Unsets [lo, hi) in key numbers from both. */
static void unset_nums(struct kv_space *sp, struct model *m, uint32_t lo, uint32_t hi)
{
	uint8_t a[4], b[4];

	memcpy(a, num(lo), 4);
	memcpy(b, num(hi), 4);
	kvspace_unset_range(sp, a, 4, b, 4);
	model_unset_range(m, a, 4, b, 4);
	check_equal(sp, m);
}

/* The chunk sizes, c[0]->n, c[1]->n, ..., are exactly the ones given (0 ends the list). */
static void check_sizes(const struct kv_space *sp, ...)
{
	va_list ap;
	size_t k, n;

	va_start(ap, sp);
	for (k = 0; (n = va_arg(ap, size_t)); k++) {
		assert_true(k < sp->nc);
		assert_int_equal(sp->c[k]->n, n);
	}
	va_end(ap);
	assert_int_equal(sp->nc, k);
}

/* --- tests -------------------------------------------------------------------- */

/*
 * How often each operation comes up, out of 4096 (the rest are gets and
 * seeks); with pick, half the unsets take a key from the model (a present one).
 */
struct mix {
	unsigned set, unset, range;
	size_t ops, check_every;
	bool pick;
};

struct tally {
	size_t sets, unsets, ranges, hits, most, chunks;
};

/* One random operation on both the space and the model; op in [0, 4096). */
static void random_op(struct kv_space *sp, struct model *m, const struct mix *mx, unsigned op,
		      struct tally *t)
{
	uint8_t k[KMAX], k2[KMAX], v[VMAX];
	size_t kl = random_key(k), kl2, vl;
	const struct kv_entry *e;
	const struct mkv *x;

	if (mx->pick && op >= mx->set && op < mx->set + mx->unset && m->n && rnd() % 2) {
		x = &m->e[rnd() % m->n];
		memcpy(k, x->k, x->kl);
		kl = x->kl;
	}
	if (op < mx->set) {
		vl = random_val(v);
		assert_int_equal(kvspace_set(sp, k, kl, v, vl), 0);
		model_set(m, k, kl, v, vl);
		t->sets++;
	} else if (op < mx->set + mx->unset) {
		int want = model_unset(m, k, kl);

		assert_int_equal(kvspace_unset(sp, k, kl), want);
		t->unsets += want == 0;
	} else if (op < mx->set + mx->unset + mx->range) {
		kl2 = random_key(k2);
		kvspace_unset_range(sp, k, kl, k2, kl2);
		model_unset_range(m, k, kl, k2, kl2);
		t->ranges++;
	} else {
		/* get and seek of present and absent keys */
		e = kvspace_get(sp, k, kl);
		x = model_find(m, k, kl);
		assert_true((e != NULL) == (x != NULL));
		if (e) {
			assert_int_equal(e->klen, kl);
			assert_memory_equal(e->key, k, kl ? kl : 0);
			assert_int_equal(e->vlen, x->vl);
			assert_memory_equal(e->val, x->v, x->vl ? x->vl : 0);
			t->hits++;
		}
		assert_int_equal(lower(sp, k, kl), model_lower(m, k, kl));
	}
}

static void random_run(const struct mix *mx, struct tally *t)
{
	static struct model m;
	struct kv_space sp = { 0 };
	size_t i;

	m.n = 0;
	memset(t, 0, sizeof(*t));
	for (i = 0; i < mx->ops; i++) {
		unsigned op = rnd() % 4096;
		bool range = op >= mx->set + mx->unset && op < mx->set + mx->unset + mx->range;

		random_op(&sp, &m, mx, op, t);
		if (i % mx->check_every == 0 || range)
			check_equal(&sp, &m);
		if (sp.n > t->most)
			t->most = sp.n;
		if (sp.nc > t->chunks)
			t->chunks = sp.nc;
	}
	check_equal(&sp, &m);
	kvspace_free(&sp);
	assert_null(sp.c);
	assert_int_equal(sp.n, 0);
	assert_int_equal(sp.nc, 0);
	assert_int_equal(sp.cap, 0);
}

static void test_random_against_model(void **state)
{
	static const struct mix mx = { 1792, 1024, 256, 20000, 16, false };
	struct tally t;

	(void)state;
	random_run(&mx, &t);
	/* the alphabet is small enough that everything happened often */
	assert_true(t.sets > 5000 && t.unsets > 500 && t.ranges > 500 && t.hits > 500);
	assert_true(t.most > 100); /* big enough for the bisection to take several steps */
}

/* Fewer ranges: thousands of keys in tens of chunks, which split and merge all along. */
static void test_random_crowded(void **state)
{
	static const struct mix mx = { 2560, 960, 2, 100000, 512, true };
	struct tally t;

	(void)state;
	random_run(&mx, &t);
	assert_true(t.sets > 20000 && t.unsets > 5000 && t.ranges > 20 && t.hits > 5000);
	assert_true(t.most > 1500 && t.chunks > 15);
}

/* Keys that only differ by a NUL, or are prefixes of one another, are distinct and ordered. */
static void test_nul_and_prefix_keys(void **state)
{
	struct kv_space sp = { 0 };
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

		e = nth(&sp, i);
		assert_non_null(e);
		assert_int_equal(e->klen, keys[i].kl);
		assert_memory_equal(e->key, keys[i].k, keys[i].kl ? keys[i].kl : 0);
		assert_int_equal(lower(&sp, keys[i].k, keys[i].kl), i);
		assert_ptr_equal(kvspace_get(&sp, keys[i].k, keys[i].kl), e);
		/* which i stored it: (i' * 5) % n == i */
		while ((want * 5) % n != i)
			want++;
		assert_int_equal(e->vlen, sizeof(size_t));
		assert_memory_equal(e->val, &want, sizeof(want));
	}
	assert_null(nth(&sp, n));
	/* absent neighbours */
	assert_null(kvspace_get(&sp, "\0\0\0", 3));
	assert_int_equal(lower(&sp, "\0\0\0", 3), 3);
	assert_null(kvspace_get(&sp, "aa", 2));
	assert_int_equal(lower(&sp, "aa", 2), 9);
	assert_int_equal(lower(&sp, "\xff\xff", 2), n);
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
	check_shape(&sp);
	kvspace_free(&sp);
}

static void test_empty_key_and_value(void **state)
{
	struct kv_space sp = { 0 };
	const struct kv_entry *e;
	struct kv_pos pos;

	(void)state;
	assert_null(kvspace_get(&sp, "", 0));
	assert_int_equal(lower(&sp, "", 0), 0);
	kvspace_seek(&sp, "", 0, &pos);
	assert_null(kvspace_at(&sp, &pos));
	kvspace_next(&sp, &pos); /* on an empty space */
	assert_null(kvspace_at(&sp, &pos));
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
	assert_int_equal(nth(&sp, 0)->klen, 0);
	assert_int_equal(nth(&sp, 1)->klen, 1);
	assert_int_equal(lower(&sp, "", 0), 0);
	assert_int_equal(lower(&sp, "\0", 1), 1);
	/* [lo, lo) with lo the empty key is empty; ["", "\0") holds just the empty key */
	kvspace_unset_range(&sp, "", 0, "", 0);
	assert_int_equal(sp.n, 2);
	kvspace_unset_range(&sp, "", 0, "\0", 1);
	assert_int_equal(sp.n, 1);
	assert_null(kvspace_get(&sp, "", 0));
	assert_int_equal(kvspace_unset(&sp, "k", 1), 0);
	assert_int_equal(sp.n, 0);
	check_shape(&sp);
	kvspace_free(&sp);
	kvspace_free(&sp); /* freeing a freed (zeroed) space is harmless */
}

/* An empty space, then one full chunk: even keys 2..2CH, entry j holding 2j+2. */
static void fill_even(struct kv_space *sp, struct model *m)
{
	uint32_t j;

	kvspace_free(sp);
	m->n = 0;
	for (j = 0; j < CH; j++)
		set_num(sp, m, 2 * j + 2);
	check_sizes(sp, (size_t)CH, (size_t)0);
}

/* A full chunk splits into halves, wherever the new key lands; past the end it starts a new one. */
static void test_splits(void **state)
{
	static struct model m;
	struct kv_space sp = { 0 };
	uint32_t i;

	(void)state;
	/* ascending keys fill chunks: the full chunk stays full */
	m.n = 0;
	for (i = 0; i < CH; i++)
		set_num(&sp, &m, i);
	check_sizes(&sp, (size_t)CH, (size_t)0);
	set_num(&sp, &m, CH);
	check_sizes(&sp, (size_t)CH, (size_t)1, (size_t)0);
	for (i = CH + 1; i < 2 * CH; i++)
		set_num(&sp, &m, i);
	check_sizes(&sp, (size_t)CH, (size_t)CH, (size_t)0);
	/* replacing in a full chunk splits nothing */
	set_num(&sp, &m, 5);
	check_sizes(&sp, (size_t)CH, (size_t)CH, (size_t)0);
	check_equal(&sp, &m);
	kvspace_free(&sp);

	/*
	 * Into a full chunk of even keys, key 2j+1 lands at index j. Index 0,
	 * HALF - 1 and HALF go left (HALF + 1, HALF); HALF + 1 and CH - 1 go
	 * right (HALF, HALF + 1).
	 */
	{
		static const uint32_t odd[] = { 0, HALF - 1, HALF, HALF + 1, CH - 1 };
		static const size_t left[] = { HALF + 1, HALF + 1, HALF + 1, HALF, HALF };
		size_t t;

		for (t = 0; t < sizeof(odd) / sizeof(odd[0]); t++) {
			fill_even(&sp, &m);
			set_num(&sp, &m, 2 * odd[t] + 1);
			check_sizes(&sp, left[t], CH + 1 - left[t], (size_t)0);
			check_equal(&sp, &m);
			kvspace_free(&sp);
		}
	}
}

/* Removals merge neighbours that fit in half a chunk, and drop emptied chunks. */
static void test_merges(void **state)
{
	static struct model m;
	struct kv_space sp = { 0 };
	uint32_t i;

	(void)state;
	/* chunks of HALF + 1 and HALF: more than HALF together until the right one empties */
	fill_even(&sp, &m);
	set_num(&sp, &m, 1);
	check_sizes(&sp, (size_t)HALF + 1, (size_t)HALF, (size_t)0);
	for (i = 0; i < HALF; i++) { /* the right chunk's keys, 2 * HALF + 2 and up */
		unset_num(&sp, &m, 2 * (HALF + i) + 2);
		if (i + 1 < HALF)
			check_sizes(&sp, (size_t)HALF + 1, (size_t)HALF - i - 1, (size_t)0);
		check_equal(&sp, &m);
	}
	/* the right chunk emptied: dropped; HALF + 1 left in one chunk */
	check_sizes(&sp, (size_t)HALF + 1, (size_t)0);
	kvspace_free(&sp);

	/* a merge at the threshold, exactly */
	fill_even(&sp, &m);
	set_num(&sp, &m, 1);
	check_sizes(&sp, (size_t)HALF + 1, (size_t)HALF, (size_t)0);
	for (i = 0; i < HALF; i++) /* left chunk down to 1 entry: sum HALF + 1 */
		unset_num(&sp, &m, i == 0 ? 1 : 2 * i);
	check_sizes(&sp, (size_t)1, (size_t)HALF, (size_t)0);
	check_equal(&sp, &m);
	unset_num(&sp, &m, 2 * HALF + 2); /* from the right chunk: sum HALF, merged */
	check_sizes(&sp, (size_t)HALF, (size_t)0);
	check_equal(&sp, &m);
	kvspace_free(&sp);

	/* a chunk of one between two full ones: emptied and dropped, nothing merges */
	m.n = 0;
	for (i = 0; i < 3 * CH; i++)
		set_num(&sp, &m, i);
	check_sizes(&sp, (size_t)CH, (size_t)CH, (size_t)CH, (size_t)0);
	unset_nums(&sp, &m, CH, 2 * CH - 1);
	check_sizes(&sp, (size_t)CH, (size_t)1, (size_t)CH, (size_t)0);
	unset_num(&sp, &m, 2 * CH - 1);
	check_sizes(&sp, (size_t)CH, (size_t)CH, (size_t)0);
	check_equal(&sp, &m);
	/* the first and last entries of all, until nothing is left */
	for (i = 0; i < CH; i++) {
		unset_num(&sp, &m, i);
		unset_num(&sp, &m, 3 * CH - 1 - i);
		check_equal(&sp, &m);
	}
	assert_int_equal(sp.nc, 0);
	kvspace_free(&sp);
}

/* Cursors cross chunk boundaries; seeking between chunks lands on the next chunk's first. */
static void test_cursor_across_chunks(void **state)
{
	static struct model m;
	struct kv_space sp = { 0 };
	const struct kv_entry *e;
	struct kv_pos pos;
	uint32_t i, n = 5 * CH + 7, got;
	size_t k, r;

	(void)state;
	m.n = 0;
	for (i = 0; i < n; i++) /* even keys, in a scattered order */
		set_num(&sp, &m, 2 * ((i * 97) % n));
	check_equal(&sp, &m);
	assert_true(sp.nc >= 5);
	/* every chunk's last key: next is the following chunk's first */
	for (k = 0, r = 0; k < sp.nc; r += sp.c[k]->n, k++) {
		const struct kv_chunk *c = sp.c[k];
		uint32_t last;

		memcpy(&last, c->e[c->n - 1].val, 4);
		kvspace_seek(&sp, c->e[c->n - 1].key, 4, &pos);
		assert_int_equal(rank(&sp, &pos), r + c->n - 1);
		kvspace_next(&sp, &pos);
		e = kvspace_at(&sp, &pos);
		if (k + 1 == sp.nc) {
			assert_null(e);
			continue;
		}
		assert_ptr_equal(e, &sp.c[k + 1]->e[0]);
		/* the absent key just above the last one: the next chunk's first */
		kvspace_seek(&sp, num(last + 1), 4, &pos);
		assert_ptr_equal(kvspace_at(&sp, &pos), &sp.c[k + 1]->e[0]);
		/* the absent key just below the first one: the same */
		memcpy(&got, sp.c[k + 1]->e[0].val, 4);
		kvspace_seek(&sp, num(got - 1), 4, &pos);
		assert_ptr_equal(kvspace_at(&sp, &pos), &sp.c[k + 1]->e[0]);
	}
	/* a walk from any key sees every later key once, in order */
	for (i = 0; i < 2 * n; i += 37) {
		uint32_t want = (i + 1) / 2 * 2;

		for (kvspace_seek(&sp, num(i), 4, &pos); (e = kvspace_at(&sp, &pos));
		     kvspace_next(&sp, &pos), want += 2) {
			memcpy(&got, e->val, 4);
			assert_int_equal(got, want);
		}
		assert_int_equal(want, 2 * n);
	}
	/* past every key: the end, which stays the end */
	kvspace_seek(&sp, num(2 * n), 4, &pos);
	assert_null(kvspace_at(&sp, &pos));
	kvspace_next(&sp, &pos);
	assert_null(kvspace_at(&sp, &pos));
	kvspace_seek(&sp, "\xff\xff\xff\xff\xff", 5, &pos);
	assert_null(kvspace_at(&sp, &pos));
	kvspace_free(&sp);
}

/* Ranges across several chunks, from inside a chunk, from a chunk's first key, to the end. */
static void test_range_across_chunks(void **state)
{
	static struct model m;
	struct kv_space sp = { 0 };
	uint32_t i, n = 12 * CH;
	size_t nc;

	(void)state;
	m.n = 0;
	for (i = 0; i < n; i++)
		set_num(&sp, &m, 2 * ((i * 389) % n));
	check_equal(&sp, &m);
	nc = sp.nc;
	assert_true(nc >= 14);
	/* from inside one chunk to inside a chunk several further */
	unset_nums(&sp, &m, 2 * CH + 11, 6 * CH + 3);
	assert_true(sp.nc < nc);
	/* bounds that are absent keys (odd), between and inside chunks */
	unset_nums(&sp, &m, 7 * 2 * CH / 2 + 1, 9 * 2 * CH / 2 + 1);
	/* from a chunk's first key to another chunk's first key: whole chunks */
	{
		uint32_t a, b;

		memcpy(&a, sp.c[2]->e[0].val, 4);
		memcpy(&b, sp.c[5]->e[0].val, 4);
		unset_nums(&sp, &m, a, b);
	}
	/* a range that empties nothing but one entry, at a chunk's end */
	{
		const struct kv_chunk *c = sp.c[1];
		uint32_t a;

		memcpy(&a, c->e[c->n - 1].val, 4);
		unset_nums(&sp, &m, a, a + 1);
	}
	/* from inside the space to past its end; then from before its start */
	unset_nums(&sp, &m, 2 * n - 2 * CH - 5, 4 * n);
	unset_nums(&sp, &m, 0, 2 * CH + 1);
	assert_true(sp.n > 0);
	/* everything */
	unset_nums(&sp, &m, 0, 4 * n);
	assert_int_equal(sp.nc, 0);
	kvspace_free(&sp);
}

/* --- a big workload ----------------------------------------------------------- */

#define BIG 200000

/* Key of id: "t" and the decimal id, as plugins/txn keys its transactions. */
static size_t big_key(uint32_t id, uint8_t *k)
{
	return (size_t)snprintf((char *)k, 12, "t%u", (unsigned)id);
}

static struct big {
	uint8_t key[BIG][12];
	uint8_t kl[BIG];
	bool in[BIG];
	uint32_t val[BIG];
	uint32_t order[BIG];
	size_t n;
} big;

static int big_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return naive_cmp(big.key[x], big.kl[x], big.key[y], big.kl[y]);
}

/* The space holds exactly the ids marked in, in key order, with their values. */
static void big_check(const struct kv_space *sp)
{
	const struct kv_entry *e;
	struct kv_pos pos;
	size_t n = 0, i = 0;
	uint32_t id;

	check_shape(sp);
	for (id = 0; id < BIG; id++)
		if (big.in[id])
			big.order[n++] = id;
	assert_int_equal(n, big.n);
	assert_int_equal(sp->n, n);
	qsort(big.order, n, sizeof(big.order[0]), big_cmp);
	for (kvspace_seek(sp, "", 0, &pos); (e = kvspace_at(sp, &pos)); kvspace_next(sp, &pos)) {
		id = big.order[i++];
		assert_int_equal(e->klen, big.kl[id]);
		assert_memory_equal(e->key, big.key[id], e->klen);
		assert_int_equal(e->vlen, 4);
		assert_memory_equal(e->val, &big.val[id], 4);
	}
	assert_int_equal(i, n);
	/* spot checks of get and seek for random ids, present or not */
	for (i = 0; i < 200; i++) {
		id = rnd() % BIG;
		e = kvspace_get(sp, big.key[id], big.kl[id]);
		assert_true((e != NULL) == big.in[id]);
		kvspace_seek(sp, big.key[id], big.kl[id], &pos);
		e = kvspace_at(sp, &pos);
		if (big.in[id])
			assert_memory_equal(e->key, big.key[id], big.kl[id]);
		else if (e)
			assert_true(naive_cmp(e->key, e->klen, big.key[id], big.kl[id]) > 0);
	}
}

static void big_set(struct kv_space *sp, uint32_t id, uint32_t v)
{
	assert_int_equal(kvspace_set(sp, big.key[id], big.kl[id], &v, 4), 0);
	big.n += !big.in[id];
	big.in[id] = true;
	big.val[id] = v;
}

static void big_unset(struct kv_space *sp, uint32_t id)
{
	assert_int_equal(kvspace_unset(sp, big.key[id], big.kl[id]), big.in[id] ? 0 : -1);
	big.n -= big.in[id];
	big.in[id] = false;
}

/* Unsets ["t" id, "t" id+1): the id and every id it is a decimal prefix of (up to 1111). */
static size_t big_unset_prefix(struct kv_space *sp, uint32_t id)
{
	uint8_t lo[12], hi[12];
	size_t lol = big_key(id, lo), hil = big_key(id + 1, hi), gone = big.n;
	uint32_t j;

	kvspace_unset_range(sp, lo, lol, hi, hil);
	for (j = 0; j < BIG; j++)
		if (big.in[j] && naive_cmp(big.key[j], big.kl[j], lo, lol) >= 0 &&
		    naive_cmp(big.key[j], big.kl[j], hi, hil) < 0) {
			big.in[j] = false;
			big.n--;
		}
	return gone - big.n;
}

/* The ids 0..BIG-1 in a random order (free it). */
static uint32_t *shuffled(void)
{
	uint32_t *ids = malloc(BIG * sizeof(*ids)), i;

	assert_non_null(ids);
	for (i = 0; i < BIG; i++)
		ids[i] = i;
	for (i = BIG; i > 1; i--) {
		uint32_t j = rnd() % i, t = ids[i - 1];

		ids[i - 1] = ids[j];
		ids[j] = t;
	}
	return ids;
}

static void test_big_random(void **state)
{
	struct kv_space sp = { 0 };
	uint32_t i, id, *ids;
	size_t ranged = 0, most = 0;

	(void)state;
	memset(big.in, 0, sizeof(big.in));
	big.n = 0;
	for (id = 0; id < BIG; id++)
		big.kl[id] = (uint8_t)big_key(id, big.key[id]);
	/* every id, in random order */
	ids = shuffled();
	for (i = 0; i < BIG; i++) {
		big_set(&sp, ids[i], i);
		if (i % 40000 == 39999)
			big_check(&sp);
	}
	free(ids);
	assert_true(sp.nc > BIG / CH); /* random inserts split chunks */
	/* random inserts, deletes, replaces and prefix ranges */
	for (i = 0; i < 400000; i++) {
		uint32_t op = rnd() % 1000;

		id = rnd() % BIG;
		if (op < 400)
			big_unset(&sp, id);
		else if (op < 999)
			big_set(&sp, id, rnd());
		else if (i % 8 == 0)
			ranged += big_unset_prefix(&sp, 100 + id % 1900);
		if (i % 50000 == 49999)
			big_check(&sp);
		if (sp.n > most)
			most = sp.n;
	}
	big_check(&sp);
	assert_true(ranged > 100);
	assert_true(most > BIG / 2);
	/* and everything deleted again, in random order */
	ids = shuffled();
	for (i = 0; i < BIG; i++) {
		big_unset(&sp, ids[i]);
		if (i % 40000 == 39999)
			big_check(&sp);
	}
	free(ids);
	assert_int_equal(sp.n, 0);
	assert_int_equal(sp.nc, 0);
	kvspace_free(&sp);
}

/* --- out of memory ------------------------------------------------------------- */

/* A deep copy of the space's contents, in order, with its layout. */
struct snap {
	struct model m;
	size_t nc, sizes[MODEL_CAP];
};

static void snapshot(const struct kv_space *sp, struct snap *s)
{
	const struct kv_entry *e;
	struct kv_pos pos;
	size_t k;

	s->m.n = 0;
	for (kvspace_seek(sp, "", 0, &pos); (e = kvspace_at(sp, &pos)); kvspace_next(sp, &pos)) {
		struct mkv *x = &s->m.e[s->m.n++];

		assert_true(e->klen <= KMAX && e->vlen <= VMAX);
		memcpy(x->k, e->key, e->klen);
		memcpy(x->v, e->val, e->vlen);
		x->kl = e->klen;
		x->vl = e->vlen;
	}
	s->nc = sp->nc;
	for (k = 0; k < sp->nc; k++)
		s->sizes[k] = sp->c[k]->n;
}

/* The space is as it was at the snapshot: same entries in order, same chunks. */
static void check_same(const struct kv_space *sp, const struct snap *s)
{
	const struct kv_entry *e;
	struct kv_pos pos;
	size_t i = 0, k;

	check_shape(sp);
	assert_int_equal(sp->n, s->m.n);
	for (kvspace_seek(sp, "", 0, &pos); (e = kvspace_at(sp, &pos)); kvspace_next(sp, &pos)) {
		const struct mkv *x = &s->m.e[i++];

		assert_int_equal(e->klen, x->kl);
		assert_memory_equal(e->key, x->k, x->kl ? x->kl : 0);
		assert_int_equal(e->vlen, x->vl);
		assert_memory_equal(e->val, x->v, x->vl ? x->vl : 0);
	}
	assert_int_equal(sp->nc, s->nc);
	for (k = 0; k < sp->nc; k++)
		assert_int_equal(sp->c[k]->n, s->sizes[k]);
}

/* Every allocation of one set, failing in turn; returns how many failed before it worked. */
static long set_until_ok(struct kv_space *sp, const void *k, size_t kl, const void *v, size_t vl)
{
	static struct snap before;
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
		check_same(sp, &before); /* unchanged */
		assert_true(n < 10);
	}
}

static void test_oom(void **state)
{
	static struct model m;
	struct kv_space sp = { 0 };
	uint8_t k[2];
	size_t i;

	(void)state;
	m.n = 0;
	/* the first insert: value, key, top array, chunk */
	assert_int_equal(set_until_ok(&sp, "k0", 2, "v", 1), 4);
	model_set(&m, (const uint8_t *)"k0", 2, (const uint8_t *)"v", 1);
	/* replacing: only the new value */
	assert_int_equal(set_until_ok(&sp, "k0", 2, "w", 1), 1);
	model_set(&m, (const uint8_t *)"k0", 2, (const uint8_t *)"w", 1);
	check_equal(&sp, &m);
	/* inserts with room in the chunk: value, key */
	for (i = 1; i < 40; i++) {
		k[0] = 'k';
		k[1] = (uint8_t)('0' + i);
		assert_int_equal(set_until_ok(&sp, k, 2, &i, 1), 2);
		model_set(&m, k, 2, (const uint8_t *)&i, 1);
		check_equal(&sp, &m);
	}
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

/*
 * Splits under out of memory: an insert into a full chunk needs a new chunk
 * too, and a new chunk may need a bigger top array. Whatever fails, the
 * space keeps its entries and its layout; then merges and ranges that span
 * chunks run with every allocation failing.
 */
static void test_oom_splits(void **state)
{
	static struct model m;
	struct kv_space sp = { 0 };
	size_t splits = 0, grows = 0;
	uint32_t i, n = 20 * CH;

	(void)state;
	m.n = 0;
	for (i = 0; i < n; i++) {
		uint32_t key = 2 * ((i * 389) % n);
		size_t nc = sp.nc, cap = sp.cap;
		long want;

		want = set_until_ok(&sp, num(key), 4, &key, 4);
		model_set(&m, num(key), 4, (const uint8_t *)&key, 4);
		/* value and key; a chunk when one was added; the top array when it grew */
		assert_int_equal(want, 2 + (sp.nc != nc) + (sp.cap != cap));
		splits += nc && sp.nc != nc;
		grows += cap && sp.cap != cap;
		if (i % 512 == 0)
			check_equal(&sp, &m);
	}
	check_equal(&sp, &m);
	assert_true(splits > 20 && grows >= 3);
	/* an append split past the end under out of memory too */
	{
		uint32_t key = 2 * n + 1;
		size_t nc = sp.nc;

		while (sp.c[sp.nc - 1]->n < CH) {
			key++;
			assert_int_equal(set_until_ok(&sp, num(key), 4, &key, 4), 2);
			model_set(&m, num(key), 4, (const uint8_t *)&key, 4);
		}
		key++;
		assert_true(set_until_ok(&sp, num(key), 4, &key, 4) >= 3);
		model_set(&m, num(key), 4, (const uint8_t *)&key, 4);
		assert_int_equal(sp.nc, nc + 1);
		assert_int_equal(sp.c[sp.nc - 1]->n, 1);
		check_equal(&sp, &m);
	}
	/* removals that merge and drop chunks allocate nothing */
	mem_fail_after(0);
	for (i = 0; i < n; i += 3)
		kvspace_unset(&sp, num(2 * i), 4);
	kvspace_unset_range(&sp, num(100), 4, num(2 * n - 300), 4);
	mem_fail_after(-1);
	for (i = 0; i < n; i += 3)
		model_unset(&m, num(2 * i), 4);
	model_unset_range(&m, num(100), 4, num(2 * n - 300), 4);
	check_equal(&sp, &m);
	kvspace_free(&sp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_against_model),
		cmocka_unit_test(test_random_crowded),
		cmocka_unit_test(test_nul_and_prefix_keys),
		cmocka_unit_test(test_empty_key_and_value),
		cmocka_unit_test(test_splits),
		cmocka_unit_test(test_merges),
		cmocka_unit_test(test_cursor_across_chunks),
		cmocka_unit_test(test_range_across_chunks),
		cmocka_unit_test(test_big_random),
		cmocka_unit_test(test_oom),
		cmocka_unit_test(test_oom_splits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
