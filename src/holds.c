/*
 * holds.c - the held deliveries of holds.h in two chained hash tables.
 *
 * Invariants: every hold is in the key table exactly once, in the bucket
 * of hash(owner, id); a session hold (client_id set) is also in the client
 * table, in the bucket of hash(client_id), doubly linked so that it leaves
 * in O(1). Both tables have `size` buckets (a power of two, or 0 when no
 * hold was ever made) and double when the holds outnumber them.
 */
#include "holds.h"

#include <string.h>

#include "mem.h"
#include "msg.h"
#include "topic.h"

static struct hold **by_id, **by_client;
static size_t size, count;

static size_t hash_key(const struct sp_plugin *owner, uint64_t id)
{
	uint64_t h = (uint64_t)(uintptr_t)owner * 0x9E3779B97F4A7C15ull ^
		     id * 0xC2B2AE3D27D4EB4Full;

	return (size_t)(h ^ h >> 29);
}

static size_t hash_client(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

static void link_client(struct hold **table, size_t mask, struct hold *h)
{
	struct hold **b = &table[hash_client(h->client_id) & mask];

	h->cl_prev = NULL;
	h->cl_next = *b;
	if (*b)
		(*b)->cl_prev = h;
	*b = h;
}

static int grow(void)
{
	size_t n = size ? size * 2 : 64, i;
	struct hold **ids = mem_calloc(n, sizeof(*ids)), **cls = mem_calloc(n, sizeof(*cls));

	if (!ids || !cls) {
		mem_free(ids);
		mem_free(cls);
		return -1;
	}
	for (i = 0; i < size; i++) {
		struct hold *h, *next;

		for (h = by_id[i]; h; h = next) {
			next = h->id_next;
			h->id_next = ids[hash_key(h->owner, h->id) & (n - 1)];
			ids[hash_key(h->owner, h->id) & (n - 1)] = h;
			if (h->client_id)
				link_client(cls, n - 1, h);
		}
	}
	mem_free(by_id);
	mem_free(by_client);
	by_id = ids;
	by_client = cls;
	size = n;
	return 0;
}

static struct hold **find(const struct sp_plugin *owner, uint64_t id)
{
	struct hold **pp;

	if (!size)
		return NULL;
	for (pp = &by_id[hash_key(owner, id) & (size - 1)]; *pp; pp = &(*pp)->id_next)
		if ((*pp)->owner == owner && (*pp)->id == id)
			return pp;
	return NULL;
}

void holds_free(struct hold *h)
{
	if (!h)
		return;
	msg_unref(h->msg);
	mem_free(h->client_id);
	mem_free(h->subids);
	mem_free(h->share);
	mem_free(h);
}

static void *dup_bytes(const void *p, size_t n)
{
	void *d = mem_alloc(n);

	if (d)
		memcpy(d, p, n);
	return d;
}

/* A hold with its own copies; NULL on OOM. */
static struct hold *hold_new(const char *client_id, const uint32_t *subids, size_t n_subids,
			     const char *share)
{
	struct hold *h = mem_calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	if ((client_id && !(h->client_id = mem_strdup(client_id))) ||
	    (n_subids && !(h->subids = dup_bytes(subids, n_subids * sizeof(*subids)))) ||
	    (share && !(h->share = dup_bytes(share, topic_share_key_size(share))))) {
		holds_free(h);
		return NULL;
	}
	h->n_subids = n_subids;
	return h;
}

int holds_add(struct sp_plugin *owner, uint64_t id, const char *client_id, struct msg *m,
	      uint8_t qos, bool retain, const uint32_t *subids, size_t n_subids, const char *share)
{
	struct hold *h, **b;

	if (find(owner, id))
		return -2;
	if (count >= size && grow())
		return -1;
	h = hold_new(client_id, subids, n_subids, share);
	if (!h)
		return -1;
	h->owner = owner;
	h->id = id;
	h->msg = msg_ref(m);
	h->qos = qos;
	h->retain = retain;
	b = &by_id[hash_key(owner, id) & (size - 1)];
	h->id_next = *b;
	*b = h;
	if (client_id)
		link_client(by_client, size - 1, h);
	count++;
	return 0;
}

static void unlink_client(struct hold *h)
{
	if (h->cl_prev)
		h->cl_prev->cl_next = h->cl_next;
	else
		by_client[hash_client(h->client_id) & (size - 1)] = h->cl_next;
	if (h->cl_next)
		h->cl_next->cl_prev = h->cl_prev;
}

struct hold *holds_take(struct sp_plugin *owner, uint64_t id)
{
	struct hold **pp = find(owner, id), *h;

	if (!pp)
		return NULL;
	h = *pp;
	*pp = h->id_next;
	if (h->client_id)
		unlink_client(h);
	count--;
	return h;
}

struct hold *holds_take_client(const char *client_id)
{
	struct hold *h;

	if (!size)
		return NULL;
	for (h = by_client[hash_client(client_id) & (size - 1)]; h; h = h->cl_next)
		if (!strcmp(h->client_id, client_id))
			return holds_take(h->owner, h->id);
	return NULL;
}

void holds_clear(void)
{
	size_t i;

	for (i = 0; i < size; i++) {
		while (by_id[i]) {
			struct hold *h = by_id[i];

			by_id[i] = h->id_next;
			holds_free(h);
		}
	}
	mem_free(by_id);
	mem_free(by_client);
	by_id = by_client = NULL;
	size = count = 0;
}

size_t holds_count(void)
{
	return count;
}
