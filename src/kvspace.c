/*
 * kvspace.c - a sorted array of key/value pairs, searched by bisection.
 *
 * Invariant: e[0..n) is strictly increasing in kv_cmp order. Inserts and
 * deletes move the tail of the array: fine for the sizes plugin state has
 * (thousands); a plugin with millions of keys keeps them as cold values.
 */
#include "kvspace.h"

#include <string.h>

#include "mem.h"

static int kv_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : (al > bl) - (al < bl);
}

size_t kvspace_lower(const struct kv_space *sp, const void *key, size_t klen)
{
	size_t lo = 0, hi = sp->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (kv_cmp(sp->e[mid].key, sp->e[mid].klen, key, klen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool at(const struct kv_space *sp, size_t i, const void *key, size_t klen)
{
	return i < sp->n && !kv_cmp(sp->e[i].key, sp->e[i].klen, key, klen);
}

const struct kv_entry *kvspace_get(const struct kv_space *sp, const void *key, size_t klen)
{
	size_t i = kvspace_lower(sp, key, klen);

	return at(sp, i, key, klen) ? &sp->e[i] : NULL;
}

static void *dup_bytes(const void *p, size_t n)
{
	void *d = mem_alloc(n ? n : 1);

	if (d && n)
		memcpy(d, p, n);
	return d;
}

static int grow(struct kv_space *sp)
{
	size_t cap = sp->cap ? sp->cap * 2 : 16;
	struct kv_entry *a;

	if (sp->n < sp->cap)
		return 0;
	a = mem_realloc(sp->e, cap * sizeof(*a));
	if (!a)
		return -1;
	sp->e = a;
	sp->cap = cap;
	return 0;
}

int kvspace_set(struct kv_space *sp, const void *key, size_t klen, const void *val, size_t vlen)
{
	size_t i = kvspace_lower(sp, key, klen);
	void *v = dup_bytes(val, vlen), *k;

	if (!v)
		return -1;
	if (at(sp, i, key, klen)) {
		mem_free(sp->e[i].val);
		sp->e[i].val = v;
		sp->e[i].vlen = vlen;
		return 0;
	}
	if (grow(sp) || !(k = dup_bytes(key, klen))) {
		mem_free(v);
		return -1;
	}
	memmove(&sp->e[i + 1], &sp->e[i], (sp->n - i) * sizeof(*sp->e));
	sp->e[i] = (struct kv_entry){ k, v, klen, vlen };
	sp->n++;
	return 0;
}

int kvspace_unset(struct kv_space *sp, const void *key, size_t klen)
{
	size_t i = kvspace_lower(sp, key, klen);

	if (!at(sp, i, key, klen))
		return -1;
	mem_free(sp->e[i].key);
	mem_free(sp->e[i].val);
	sp->n--;
	memmove(&sp->e[i], &sp->e[i + 1], (sp->n - i) * sizeof(*sp->e));
	return 0;
}

void kvspace_unset_range(struct kv_space *sp, const void *lo, size_t lol, const void *hi,
			 size_t hil)
{
	size_t a = kvspace_lower(sp, lo, lol), b = kvspace_lower(sp, hi, hil), i;

	if (b <= a)
		return;
	for (i = a; i < b; i++) {
		mem_free(sp->e[i].key);
		mem_free(sp->e[i].val);
	}
	memmove(&sp->e[a], &sp->e[b], (sp->n - b) * sizeof(*sp->e));
	sp->n -= b - a;
}

void kvspace_free(struct kv_space *sp)
{
	size_t i;

	for (i = 0; i < sp->n; i++) {
		mem_free(sp->e[i].key);
		mem_free(sp->e[i].val);
	}
	mem_free(sp->e);
	memset(sp, 0, sizeof(*sp));
}
