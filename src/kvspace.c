/*
 * kvspace.c - a sorted key/value space as a two-level chunked array.
 *
 * The entries sit in chunks of at most KVSPACE_CHUNK, each a sorted array;
 * a top array holds the chunks in key order. A lookup bisects the top array
 * by each chunk's last key, then the chunk it lands in. A single sorted
 * array moved half of itself on every insert and delete, and a plugin's
 * space can hold hundreds of thousands of keys arriving in random order
 * (and, with persistence off, every cold value).
 *
 * Costs: a write makes O(log n) comparisons and moves at most one chunk's
 * entries (4 KB). Splitting or dropping a chunk also moves the top array's
 * pointers, n / KVSPACE_CHUNK of them, but that happens at most once per
 * about KVSPACE_CHUNK / 2 writes: amortised, about n / 8192 pointers per
 * write (a hundred at a million keys). That term grows with n; a B+tree
 * would be the next step for spaces of tens of millions of keys.
 *
 * Invariants:
 *  - every chunk holds 1..KVSPACE_CHUNK entries; nc == 0 exactly when the
 *    space is empty; n is the sum of the chunks' counts;
 *  - the entries, chunk after chunk, are strictly increasing in kv_cmp
 *    order (memcmp, then the shorter key first);
 *  - two neighbouring chunks hold more than HALF entries together, so the
 *    chunks are a quarter full on average at worst. A removal that breaks
 *    it merges the pair (mend), which allocates nothing.
 *
 * A full chunk splits into halves, except when the new key goes past the
 * last key of all: then it starts a new chunk and the full one stays full,
 * so that ascending keys (sequence numbers) fill their chunks.
 *
 * Out of memory: a set allocates everything it may need (value, key, a
 * bigger top array, a new chunk) before it changes anything, so a failure
 * leaves the entries as they were. Removals never allocate.
 *
 * Pure, and not locked: the thread that owns the space calls it (in the
 * broker, the loop thread through the plugin host).
 */
#include "kvspace.h"

#include <string.h>

#include "mem.h"

#define HALF (KVSPACE_CHUNK / 2)

static int kv_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : (al > bl) - (al < bl);
}

static int entry_cmp(const struct kv_entry *e, const void *key, size_t klen)
{
	return kv_cmp(e->key, e->klen, key, klen);
}

/* Index of the first entry of ch >= key (ch->n when none). */
static size_t chunk_lower(const struct kv_chunk *ch, const void *key, size_t klen)
{
	size_t lo = 0, hi = ch->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (entry_cmp(&ch->e[mid], key, klen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Where key is or would be inserted: the first entry >= key, except that a
 * key past every entry is placed one past the end of the last chunk (where
 * an insert appends); {0, 0} in an empty space.
 */
static void find(const struct kv_space *sp, const void *key, size_t klen, struct kv_pos *p)
{
	size_t lo = 0, hi = sp->nc;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct kv_chunk *ch = sp->c[mid];

		if (entry_cmp(&ch->e[ch->n - 1], key, klen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == sp->nc && lo > 0) {
		p->c = lo - 1;
		p->i = sp->c[lo - 1]->n;
		return;
	}
	p->c = lo;
	p->i = lo < sp->nc ? chunk_lower(sp->c[lo], key, klen) : 0;
}

/* The entry at p, or NULL (the end, or a position outdated by a write). */
static struct kv_entry *slot(const struct kv_space *sp, const struct kv_pos *p)
{
	if (p->c >= sp->nc || p->i >= sp->c[p->c]->n)
		return NULL;
	return &sp->c[p->c]->e[p->i];
}

void kvspace_seek(const struct kv_space *sp, const void *key, size_t klen, struct kv_pos *pos)
{
	find(sp, key, klen, pos);
	if (!slot(sp, pos)) {
		pos->c = sp->nc;
		pos->i = 0;
	}
}

const struct kv_entry *kvspace_at(const struct kv_space *sp, const struct kv_pos *pos)
{
	return slot(sp, pos);
}

void kvspace_next(const struct kv_space *sp, struct kv_pos *pos)
{
	if (pos->c >= sp->nc)
		return;
	if (++pos->i >= sp->c[pos->c]->n) {
		pos->c++;
		pos->i = 0;
	}
}

const struct kv_entry *kvspace_get(const struct kv_space *sp, const void *key, size_t klen)
{
	struct kv_pos p;
	const struct kv_entry *e;

	find(sp, key, klen, &p);
	e = slot(sp, &p);
	return e && !entry_cmp(e, key, klen) ? e : NULL;
}

/* --- inserting ---------------------------------------------------------------- */

static void *dup_bytes(const void *p, size_t n)
{
	void *d = mem_alloc(n ? n : 1);

	if (d && n)
		memcpy(d, p, n);
	return d;
}

/* Room for one more chunk pointer in the top array. 0 or -1. */
static int grow(struct kv_space *sp)
{
	size_t cap = sp->cap ? sp->cap * 2 : 4;
	struct kv_chunk **a;

	if (sp->nc < sp->cap)
		return 0;
	a = mem_realloc(sp->c, cap * sizeof(*a));
	if (!a)
		return -1;
	sp->c = a;
	sp->cap = cap;
	return 0;
}

/* Puts ch at index k of the top array (which has room). */
static void add_chunk(struct kv_space *sp, size_t k, struct kv_chunk *ch)
{
	memmove(&sp->c[k + 1], &sp->c[k], (sp->nc - k) * sizeof(*sp->c));
	sp->c[k] = ch;
	sp->nc++;
}

/* Puts e at index i of ch (which has room). */
static void put(struct kv_chunk *ch, size_t i, const struct kv_entry *e)
{
	memmove(&ch->e[i + 1], &ch->e[i], (ch->n - i) * sizeof(*ch->e));
	ch->e[i] = *e;
	ch->n++;
}

/* Inserts e at p, into fresh (a new chunk, p's being full or absent) when it is given. */
static void place(struct kv_space *sp, const struct kv_pos *p, const struct kv_entry *e,
		  struct kv_chunk *fresh)
{
	struct kv_chunk *ch;

	if (!fresh) {
		put(sp->c[p->c], p->i, e);
		return;
	}
	fresh->n = 0;
	if (!sp->nc) {
		add_chunk(sp, 0, fresh);
		put(fresh, 0, e);
		return;
	}
	ch = sp->c[p->c];
	add_chunk(sp, p->c + 1, fresh);
	if (p->i == ch->n) { /* past every key: the full chunk stays full */
		put(fresh, 0, e);
		return;
	}
	memcpy(fresh->e, &ch->e[HALF], (KVSPACE_CHUNK - HALF) * sizeof(*ch->e));
	fresh->n = KVSPACE_CHUNK - HALF;
	ch->n = HALF;
	if (p->i <= HALF)
		put(ch, p->i, e);
	else
		put(fresh, p->i - HALF, e);
}

static bool needs_chunk(const struct kv_space *sp, const struct kv_pos *p)
{
	return !sp->nc || sp->c[p->c]->n == KVSPACE_CHUNK;
}

int kvspace_set(struct kv_space *sp, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct kv_chunk *fresh = NULL;
	struct kv_entry *e, ne;
	struct kv_pos p;
	void *v = dup_bytes(val, vlen);

	if (!v)
		return -1;
	find(sp, key, klen, &p);
	e = slot(sp, &p);
	if (e && !entry_cmp(e, key, klen)) {
		mem_free(e->val);
		e->val = v;
		e->vlen = vlen;
		return 0;
	}
	ne = (struct kv_entry){ dup_bytes(key, klen), v, klen, vlen };
	if (!ne.key ||
	    (needs_chunk(sp, &p) && (grow(sp) || !(fresh = mem_alloc(sizeof(*fresh)))))) {
		mem_free(ne.key);
		mem_free(v);
		return -1;
	}
	place(sp, &p, &ne, fresh);
	sp->n++;
	return 0;
}

/* --- removing ----------------------------------------------------------------- */

/* Frees entries [a, b) of chunk k and closes the gap (the chunk may be left empty). */
static void drop_entries(struct kv_space *sp, size_t k, size_t a, size_t b)
{
	struct kv_chunk *ch = sp->c[k];
	size_t i;

	for (i = a; i < b; i++) {
		mem_free(ch->e[i].key);
		mem_free(ch->e[i].val);
	}
	memmove(&ch->e[a], &ch->e[b], (ch->n - b) * sizeof(*ch->e));
	ch->n -= b - a;
	sp->n -= b - a;
}

/* Frees chunks [a, b) with their entries and closes the gap in the top array. */
static void drop_chunks(struct kv_space *sp, size_t a, size_t b)
{
	size_t k;

	if (a == b)
		return;
	for (k = a; k < b; k++) {
		drop_entries(sp, k, 0, sp->c[k]->n);
		mem_free(sp->c[k]);
	}
	memmove(&sp->c[a], &sp->c[b], (sp->nc - b) * sizeof(*sp->c));
	sp->nc -= b - a;
}

/* Appends chunk k+1's entries to chunk k (they fit) and drops k+1. */
static void merge_next(struct kv_space *sp, size_t k)
{
	struct kv_chunk *a = sp->c[k], *b = sp->c[k + 1];

	memcpy(&a->e[a->n], b->e, b->n * sizeof(*b->e));
	a->n += b->n;
	b->n = 0;
	drop_chunks(sp, k + 1, k + 2);
}

/*
 * After removals from chunks lo..hi (none left empty): merges every pair of
 * neighbours touching them that holds HALF entries or fewer, which restores
 * the fill invariant (a merged chunk only grew, so its other pair still
 * holds). Allocates nothing.
 */
static void mend(struct kv_space *sp, size_t lo, size_t hi)
{
	size_t k = lo ? lo - 1 : 0;

	while (k + 1 < sp->nc && k <= hi) {
		if (sp->c[k]->n + sp->c[k + 1]->n > HALF) {
			k++;
			continue;
		}
		merge_next(sp, k);
		if (hi > k)
			hi--;
	}
}

/* After removals from chunk k (maybe left empty) and maybe k+1 (not): drops k if empty, mends. */
static void tidy(struct kv_space *sp, size_t k)
{
	if (!sp->c[k]->n)
		drop_chunks(sp, k, k + 1);
	mend(sp, k, k + 1);
}

int kvspace_unset(struct kv_space *sp, const void *key, size_t klen)
{
	struct kv_pos p;
	struct kv_entry *e;

	find(sp, key, klen, &p);
	e = slot(sp, &p);
	if (!e || entry_cmp(e, key, klen))
		return -1;
	drop_entries(sp, p.c, p.i, p.i + 1);
	tidy(sp, p.c);
	return 0;
}

void kvspace_unset_range(struct kv_space *sp, const void *lo, size_t lol, const void *hi,
			 size_t hil)
{
	struct kv_pos a, b;

	kvspace_seek(sp, lo, lol, &a);
	kvspace_seek(sp, hi, hil, &b);
	if (b.c < a.c || (b.c == a.c && b.i <= a.i))
		return;
	/* a is an entry; b is the end or an entry, which stays: chunk b is not emptied */
	if (a.c == b.c) {
		drop_entries(sp, a.c, a.i, b.i);
	} else {
		if (b.c < sp->nc)
			drop_entries(sp, b.c, 0, b.i);
		drop_entries(sp, a.c, a.i, sp->c[a.c]->n);
		drop_chunks(sp, a.c + 1, b.c);
	}
	tidy(sp, a.c);
}

void kvspace_free(struct kv_space *sp)
{
	drop_chunks(sp, 0, sp->nc);
	mem_free(sp->c);
	memset(sp, 0, sizeof(*sp));
}
