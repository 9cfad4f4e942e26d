/*
 * keytab.c - the ordered plugin's key tables and per-key window (keytab.h).
 *
 * Owns: three chained hash tables that grow by doubling, of targets
 * (keyed by name), of keys (keyed by target and key bytes) and of busy keys
 * (keyed by target and busy id: an acknowledgement finds its key without
 * looking at the message), and the waiting lists. Runs on whatever thread calls it (the broker's loop for
 * the plugin, the test's for cmocka); no locks, no globals.
 *
 * Invariants:
 * - a key is in the key table (and counted by its target) exactly while
 *   it is busy or has waiting messages, or is being released (the caller
 *   frees it with kt_key_gc once it is idle); a target exists exactly
 *   while it has keys;
 * - a message id is busy in at most one key of a target (the caller's
 *   rule: a message has one key), so the busy index finds that key;
 * - a waiting list is in ascending id order without repeats, and n_wait
 *   (per key and in total) counts its entries;
 * - a busy key's busy id never waits in its own list;
 * - a key is in the busy index exactly while busy != 0, under (t, busy).
 */
#include "keytab.h"

#include <string.h>

#define MIN_CAP 64

/*
 * Eight bytes at a time, each step a multiply and a shift (FNV-1a's byte
 * steps cost more than the rest of a lookup); the length goes into the last
 * step. Only the bucket depends on it: entries are compared in full.
 */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t v;

	for (; n >= 8; b += 8, n -= 8) {
		memcpy(&v, b, 8);
		h = (h ^ v) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 32;
	}
	v = 0;
	memcpy(&v, b, n);
	h = (h ^ v ^ (uint64_t)n << 56) * 0x9e3779b97f4a7c15ull;
	return h ^ h >> 29;
}

static uint64_t name_hash(const void *name, size_t nlen)
{
	return hash_bytes(0xcbf29ce484222325ull, name, nlen);
}

static uint64_t key_hash(const struct kt_target *t, const void *key, size_t klen)
{
	return hash_bytes(t->hash ^ 0x9e3779b97f4a7c15ull, key, klen);
}

int kt_init(struct keytab *kt, void *(*alloc)(size_t), void (*free_fn)(void *))
{
	memset(kt, 0, sizeof(*kt));
	kt->alloc = alloc;
	kt->free = free_fn;
	kt->keys = alloc(MIN_CAP * sizeof(*kt->keys));
	kt->targets = alloc(MIN_CAP * sizeof(*kt->targets));
	kt->busy = alloc(MIN_CAP * sizeof(*kt->busy));
	if (!kt->keys || !kt->targets || !kt->busy) {
		free_fn(kt->keys);
		free_fn(kt->targets);
		free_fn(kt->busy);
		kt->keys = NULL;
		kt->targets = NULL;
		kt->busy = NULL;
		return -1;
	}
	memset(kt->keys, 0, MIN_CAP * sizeof(*kt->keys));
	memset(kt->targets, 0, MIN_CAP * sizeof(*kt->targets));
	memset(kt->busy, 0, MIN_CAP * sizeof(*kt->busy));
	kt->cap_keys = kt->cap_targets = kt->cap_busy = MIN_CAP;
	return 0;
}

/* Doubles the hash table kt->tab of cap buckets (entries of type, chained by hnext). */
#define GROW(kt, tab, cap, type)                                                \
	do {                                                                    \
		size_t ncap_ = (kt)->cap * 2, i_;                               \
		type **n_ = (kt)->alloc(ncap_ * sizeof(*n_));                   \
		if (!n_)                                                        \
			break; /* stays as it is: longer chains, still right */ \
		memset(n_, 0, ncap_ * sizeof(*n_));                             \
		for (i_ = 0; i_ < (kt)->cap; i_++) {                            \
			type *e_ = (kt)->tab[i_], *nx_;                         \
			for (; e_; e_ = nx_) {                                  \
				nx_ = e_->hnext;                                \
				e_->hnext = n_[e_->hash & (ncap_ - 1)];         \
				n_[e_->hash & (ncap_ - 1)] = e_;                \
			}                                                       \
		}                                                               \
		(kt)->free((kt)->tab);                                          \
		(kt)->tab = n_;                                                 \
		(kt)->cap = ncap_;                                              \
	} while (0)

/* --- the busy index ----------------------------------------------------------- */

static uint64_t busy_hash(const struct kt_target *t, uint64_t id)
{
	uint64_t h = (id ^ (uint64_t)(uintptr_t)t * 0xff51afd7ed558ccdull) * 0x9e3779b97f4a7c15ull;

	return h ^ h >> 29;
}

static void busy_grow(struct keytab *kt)
{
	size_t ncap = kt->cap_busy * 2, i;
	struct kt_key **n = kt->alloc(ncap * sizeof(*n)), *k, *next;

	if (!n)
		return; /* longer chains, still right */
	memset(n, 0, ncap * sizeof(*n));
	for (i = 0; i < kt->cap_busy; i++)
		for (k = kt->busy[i]; k; k = next) {
			size_t b = busy_hash(k->t, k->busy) & (ncap - 1);

			next = k->bnext;
			k->bnext = n[b];
			n[b] = k;
		}
	kt->free(kt->busy);
	kt->busy = n;
	kt->cap_busy = ncap;
}

static void busy_unlink(struct keytab *kt, struct kt_key *k)
{
	struct kt_key **pp = &kt->busy[busy_hash(k->t, k->busy) & (kt->cap_busy - 1)];

	while (*pp != k)
		pp = &(*pp)->bnext;
	*pp = k->bnext;
	kt->n_busy--;
}

void kt_set_busy(struct keytab *kt, struct kt_key *k, uint64_t id)
{
	size_t b;

	if (k->busy == id)
		return;
	if (k->busy)
		busy_unlink(kt, k);
	k->busy = id;
	if (!id)
		return;
	if (kt->n_busy >= kt->cap_busy)
		busy_grow(kt);
	b = busy_hash(k->t, id) & (kt->cap_busy - 1);
	k->bnext = kt->busy[b];
	kt->busy[b] = k;
	kt->n_busy++;
}

struct kt_key *kt_busy_find(const struct keytab *kt, const struct kt_target *t, uint64_t id)
{
	struct kt_key *k;

	if (!t || !id)
		return NULL;
	for (k = kt->busy[busy_hash(t, id) & (kt->cap_busy - 1)]; k; k = k->bnext)
		if (k->busy == id && k->t == t)
			return k;
	return NULL;
}

/* --- targets and keys ----------------------------------------------------------- */

struct kt_target *kt_target_find(const struct keytab *kt, const void *name, size_t nlen)
{
	uint64_t h = name_hash(name, nlen);
	struct kt_target *t;

	for (t = kt->targets[h & (kt->cap_targets - 1)]; t; t = t->hnext)
		if (t->hash == h && t->nlen == nlen && !memcmp(t->name, name, nlen))
			return t;
	return NULL;
}

static struct kt_key *find_hashed(const struct keytab *kt, const struct kt_target *t,
				  const void *key, size_t klen, uint64_t h)
{
	struct kt_key *k;

	for (k = kt->keys[h & (kt->cap_keys - 1)]; k; k = k->hnext)
		if (k->hash == h && k->t == t && k->klen == klen && !memcmp(k->key, key, klen))
			return k;
	return NULL;
}

struct kt_key *kt_key_find(const struct keytab *kt, const struct kt_target *t, const void *key,
			   size_t klen)
{
	return t ? find_hashed(kt, t, key, klen, key_hash(t, key, klen)) : NULL;
}

static struct kt_target *target_new(struct keytab *kt, const void *name, size_t nlen)
{
	struct kt_target *t = kt->alloc(sizeof(*t) + nlen);
	size_t b;

	if (!t)
		return NULL;
	memset(t, 0, sizeof(*t));
	t->hash = name_hash(name, nlen);
	t->nlen = (uint16_t)nlen;
	memcpy(t->name, name, nlen);
	if (kt->n_targets >= kt->cap_targets)
		GROW(kt, targets, cap_targets, struct kt_target);
	b = t->hash & (kt->cap_targets - 1);
	t->hnext = kt->targets[b];
	kt->targets[b] = t;
	kt->n_targets++;
	return t;
}

static void target_free(struct keytab *kt, struct kt_target *t)
{
	struct kt_target **pp = &kt->targets[t->hash & (kt->cap_targets - 1)];

	while (*pp != t)
		pp = &(*pp)->hnext;
	*pp = t->hnext;
	kt->n_targets--;
	if (kt->last == t)
		kt->last = NULL;
	kt->free(t);
}

struct kt_key *kt_key_get(struct keytab *kt, const void *name, size_t nlen, const void *key,
			  size_t klen)
{
	struct kt_target *t = kt_target_find(kt, name, nlen);

	if (nlen > UINT16_MAX || klen > UINT16_MAX)
		return NULL;
	if (!t && !(t = target_new(kt, name, nlen)))
		return NULL;
	return kt_key_get_in(kt, t, key, klen);
}

/*
 * A key's memory: a spare one when it fits (one comes and goes with every
 * message of a busy key: reusing them keeps malloc and cold memory out of
 * the way), else new. Zeroed but for kcap.
 */
static struct kt_key *key_alloc(struct keytab *kt, size_t klen)
{
	struct kt_key *k = kt->spare;
	size_t cap = klen <= KT_SPARE_KLEN ? KT_SPARE_KLEN : klen;

	if (k && klen <= KT_SPARE_KLEN) {
		kt->spare = k->hnext;
		kt->n_spare--;
	} else if (!(k = kt->alloc(sizeof(*k) + cap))) {
		return NULL;
	}
	memset(k, 0, sizeof(*k));
	k->kcap = (uint16_t)cap;
	return k;
}

static void key_release(struct keytab *kt, struct kt_key *k)
{
	if (k->kcap == KT_SPARE_KLEN && kt->n_spare < KT_SPARE_MAX) {
		k->hnext = kt->spare;
		kt->spare = k;
		kt->n_spare++;
		return;
	}
	kt->free(k);
}

struct kt_key *kt_key_get_in(struct keytab *kt, struct kt_target *t, const void *key, size_t klen)
{
	struct kt_key *k;
	uint64_t h;
	size_t b;

	if (klen > UINT16_MAX)
		return NULL;
	h = key_hash(t, key, klen);
	if ((k = find_hashed(kt, t, key, klen, h)))
		return k;
	if (!(k = key_alloc(kt, klen))) {
		if (!t->n_keys)
			target_free(kt, t);
		return NULL;
	}
	k->t = t;
	k->hash = h;
	k->klen = (uint16_t)klen;
	memcpy(k->key, key, klen);
	if (kt->n_keys >= kt->cap_keys)
		GROW(kt, keys, cap_keys, struct kt_key);
	b = k->hash & (kt->cap_keys - 1);
	k->hnext = kt->keys[b];
	kt->keys[b] = k;
	kt->n_keys++;
	t->n_keys++;
	return k;
}

static bool idle(const struct kt_key *k)
{
	return !k->busy && !k->busy_unknown && !k->head;
}

enum kt_verdict kt_deliver(struct keytab *kt, struct kt_key *k, uint64_t id, uint8_t qos)
{
	const struct kt_wait *w;

	if (k && k->busy == id) {
		if (!qos)
			kt_set_busy(kt, k, 0); /* a QoS 0 delivery is over once it is sent */
		return KT_PASS;
	}
	if (!k || idle(k)) {
		if (k && qos)
			kt_set_busy(kt, k, id);
		return KT_PASS;
	}
	for (w = k->head; w; w = w->next)
		if (w->id == id)
			return KT_WAITING;
	return KT_WAIT;
}

struct kt_wait *kt_wait_add(struct keytab *kt, struct kt_key *k, uint64_t id, void *msg,
			    uint8_t qos)
{
	struct kt_wait *w = kt->alloc(sizeof(*w)), **pp;

	if (!w)
		return NULL;
	memset(w, 0, sizeof(*w));
	w->id = id;
	w->msg = msg;
	w->qos = qos;
	if (!k->tail || k->tail->id < id) { /* the usual case: the newest */
		if (k->tail)
			k->tail->next = w;
		else
			k->head = w;
		k->tail = w;
	} else {
		for (pp = &k->head; *pp && (*pp)->id < id; pp = &(*pp)->next)
			;
		w->next = *pp;
		*pp = w;
	}
	k->n_wait++;
	kt->n_wait++;
	return w;
}

bool kt_done(struct keytab *kt, struct kt_key *k, uint64_t id)
{
	if (!k || !(k->busy == id || (k->busy_unknown && !k->busy)))
		return false;
	kt_set_busy(kt, k, 0);
	k->busy_unknown = false;
	return true;
}

struct kt_wait *kt_next(struct keytab *kt, struct kt_key *k)
{
	struct kt_wait *w = k->head;

	if (!w || k->busy || k->busy_unknown)
		return NULL;
	k->head = w->next;
	if (!k->head)
		k->tail = NULL;
	w->next = NULL;
	k->n_wait--;
	kt->n_wait--;
	kt_set_busy(kt, k, w->id);
	return w;
}

void kt_wait_free(struct keytab *kt, struct kt_wait *w)
{
	kt->free(w);
}

static void key_free(struct keytab *kt, struct kt_key *k)
{
	struct kt_key **pp = &kt->keys[k->hash & (kt->cap_keys - 1)];
	struct kt_target *t = k->t;

	while (*pp != k)
		pp = &(*pp)->hnext;
	*pp = k->hnext;
	kt->n_keys--;
	kt_set_busy(kt, k, 0);
	t->n_keys--;
	key_release(kt, k);
	if (!t->n_keys)
		target_free(kt, t);
}

bool kt_key_gc(struct keytab *kt, struct kt_key *k)
{
	if (!k || !idle(k) || k->releasing)
		return false;
	key_free(kt, k);
	return true;
}

/* Empties k's list, calling drop for each entry, then for k. */
static void drop_waiting(struct keytab *kt, struct kt_key *k, kt_drop_fn drop, void *arg)
{
	struct kt_wait *w;

	while ((w = k->head)) {
		k->head = w->next;
		k->n_wait--;
		kt->n_wait--;
		if (drop)
			drop(arg, k, w);
		kt->free(w);
	}
	k->tail = NULL;
	if (drop)
		drop(arg, k, NULL);
}

void kt_target_drop(struct keytab *kt, struct kt_target *t, kt_drop_fn drop, void *arg)
{
	size_t i, left = t->n_keys;
	struct kt_key *k, *next;

	for (i = 0; left && i < kt->cap_keys; i++)
		for (k = kt->keys[i]; left && k; k = next) {
			next = k->hnext;
			if (k->t != t)
				continue;
			drop_waiting(kt, k, drop, arg);
			left--;
			key_free(kt, k); /* frees t with its last key, when left is 0 */
		}
}

int kt_each(struct keytab *kt, int (*fn)(void *arg, struct kt_key *k), void *arg)
{
	size_t i;
	struct kt_key *k;
	int rc;

	for (i = 0; i < kt->cap_keys; i++)
		for (k = kt->keys[i]; k; k = k->hnext)
			if ((rc = fn(arg, k)))
				return rc;
	return 0;
}

void kt_free(struct keytab *kt, kt_drop_fn drop, void *arg)
{
	struct kt_key *k;
	size_t i;

	for (i = 0; kt->targets && i < kt->cap_targets; i++)
		while (kt->targets[i])
			kt_target_drop(kt, kt->targets[i], drop, arg);
	while ((k = kt->spare)) {
		kt->spare = k->hnext;
		kt->free(k);
	}
	kt->n_spare = 0;
	kt->free(kt->keys);
	kt->free(kt->targets);
	kt->free(kt->busy);
	kt->keys = NULL;
	kt->targets = NULL;
	kt->busy = NULL;
}
