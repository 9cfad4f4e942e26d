/*
 * keytab.c - the ordered plugin's key tables and per-key window (keytab.h).
 *
 * Owns: two chained hash tables that grow by doubling, one of targets
 * (keyed by name) and one of keys (keyed by target and key bytes), and the
 * waiting lists. Runs on whatever thread calls it (the broker's loop for
 * the plugin, the test's for cmocka); no locks, no globals.
 *
 * Invariants:
 * - a key is in the key table and on its target's list exactly while it
 *   is busy or has waiting messages, or is being released (the caller
 *   frees it with kt_key_gc once it is idle); a target exists exactly
 *   while it has keys;
 * - a waiting list is in ascending id order without repeats, and n_wait
 *   (per key and in total) counts its entries;
 * - a busy key's busy id never waits in its own list.
 */
#include "keytab.h"

#include <string.h>

#define MIN_CAP 64

/* FNV-1a, 64 bits. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	while (n--) {
		h ^= *b++;
		h *= 0x100000001b3ull;
	}
	return h;
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
	if (!kt->keys || !kt->targets) {
		free_fn(kt->keys);
		free_fn(kt->targets);
		kt->keys = NULL;
		kt->targets = NULL;
		return -1;
	}
	memset(kt->keys, 0, MIN_CAP * sizeof(*kt->keys));
	memset(kt->targets, 0, MIN_CAP * sizeof(*kt->targets));
	kt->cap_keys = kt->cap_targets = MIN_CAP;
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

struct kt_target *kt_target_find(const struct keytab *kt, const void *name, size_t nlen)
{
	uint64_t h = name_hash(name, nlen);
	struct kt_target *t;

	for (t = kt->targets[h & (kt->cap_targets - 1)]; t; t = t->hnext)
		if (t->hash == h && t->nlen == nlen && !memcmp(t->name, name, nlen))
			return t;
	return NULL;
}

struct kt_key *kt_key_find(const struct keytab *kt, const struct kt_target *t, const void *key,
			   size_t klen)
{
	uint64_t h;
	struct kt_key *k;

	if (!t)
		return NULL;
	h = key_hash(t, key, klen);
	for (k = kt->keys[h & (kt->cap_keys - 1)]; k; k = k->hnext)
		if (k->hash == h && k->t == t && k->klen == klen && !memcmp(k->key, key, klen))
			return k;
	return NULL;
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
	kt->free(t);
}

struct kt_key *kt_key_get(struct keytab *kt, const void *name, size_t nlen, const void *key,
			  size_t klen)
{
	struct kt_target *t = kt_target_find(kt, name, nlen);
	struct kt_key *k;
	size_t b;

	if (nlen > UINT16_MAX || klen > UINT16_MAX)
		return NULL;
	if ((k = kt_key_find(kt, t, key, klen)))
		return k;
	if (!t && !(t = target_new(kt, name, nlen)))
		return NULL;
	if (!(k = kt->alloc(sizeof(*k) + klen))) {
		if (!t->keys)
			target_free(kt, t);
		return NULL;
	}
	memset(k, 0, sizeof(*k));
	k->t = t;
	k->hash = key_hash(t, key, klen);
	k->klen = (uint16_t)klen;
	memcpy(k->key, key, klen);
	if (kt->n_keys >= kt->cap_keys)
		GROW(kt, keys, cap_keys, struct kt_key);
	b = k->hash & (kt->cap_keys - 1);
	k->hnext = kt->keys[b];
	kt->keys[b] = k;
	kt->n_keys++;
	k->tnext = t->keys;
	if (t->keys)
		t->keys->tprev = k;
	t->keys = k;
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

	(void)kt;
	if (k && k->busy == id) {
		if (!qos)
			k->busy = 0; /* a QoS 0 delivery is over once it is sent */
		return KT_PASS;
	}
	if (!k || idle(k)) {
		if (k && qos)
			k->busy = id;
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
	(void)kt;
	if (!k || !(k->busy == id || (k->busy_unknown && !k->busy)))
		return false;
	k->busy = 0;
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
	k->busy = w->id;
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
	if (k->tprev)
		k->tprev->tnext = k->tnext;
	else
		t->keys = k->tnext;
	if (k->tnext)
		k->tnext->tprev = k->tprev;
	t->n_keys--;
	kt->free(k);
	if (!t->keys)
		target_free(kt, t);
}

bool kt_key_gc(struct keytab *kt, struct kt_key *k)
{
	if (!k || !idle(k) || k->releasing)
		return false;
	key_free(kt, k);
	return true;
}

/* Empties k's list, calling drop for each entry. */
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
}

void kt_target_drop(struct keytab *kt, struct kt_target *t, kt_drop_fn drop, void *arg)
{
	struct kt_key *k;
	bool last;

	do {
		k = t->keys;
		last = !k->tnext;
		drop_waiting(kt, k, drop, arg);
		key_free(kt, k); /* frees t with its last key */
	} while (!last);
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
	size_t i;

	for (i = 0; kt->targets && i < kt->cap_targets; i++)
		while (kt->targets[i])
			kt_target_drop(kt, kt->targets[i], drop, arg);
	kt->free(kt->keys);
	kt->free(kt->targets);
	kt->keys = NULL;
	kt->targets = NULL;
}
