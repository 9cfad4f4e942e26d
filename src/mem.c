/*
 * mem.c - allocation wrappers with fault injection, and the count of the
 * bytes they hold that memory_limit is checked against.
 *
 * The broker is single-threaded on its loop; the store thread allocates
 * only a little through here (rows it reads back), the rest through SQLite.
 * The fail counter is a plain global: tests set it, run one operation, and
 * check that it failed cleanly. The block caches (mem_cache_*) are the loop
 * thread's only.
 *
 * Counting. mem_heap is the sum of malloc_usable_size() of every block
 * handed out and not yet freed (a block kept in a mem_cache stays counted:
 * it is still the process's). Both threads allocate and free, and a block
 * may be freed by the other thread, so it is added to with relaxed atomics:
 * no ordering is needed, only that no update is lost. A cache hit touches
 * no counter. The loop reads it with a plain load (mem_over_limit).
 *
 * The limit has two levels. Over memory_limit (mem_over_limit) the layers
 * above stop taking new work: connections, QoS 0 messages, QoS 1/2
 * messages. An eighth above it the allocations themselves fail, and are
 * handled as out of memory: that bounds what work already under way when
 * the limit was crossed can add (one message fanned out to every
 * subscriber, packets being read). SQLite's heap, reported by the store
 * (mem_set_other), takes its share of both levels.
 */
#include "mem.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define MEM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEM_SANITIZED 1
#endif
#endif
#ifndef MEM_SANITIZED
#define MEM_SANITIZED 0
#endif

static long fail_after = -1;

uint64_t mem_heap;
uint64_t mem_soft_room = UINT64_MAX;
static uint64_t hard_room = UINT64_MAX; /* allocations past this fail (both threads read it) */
static uint64_t heap_peak;
static uint64_t limit, other; /* loop thread */

/* Adds n bytes (modulo 2^64: a shrinking realloc adds its negative change). */
static inline void count_add(uint64_t n)
{
	uint64_t now = __atomic_add_fetch(&mem_heap, n, __ATOMIC_RELAXED);

	/* Racy between the threads, so the peak may miss a moment: it is for $SYS. */
	if (now > __atomic_load_n(&heap_peak, __ATOMIC_RELAXED))
		__atomic_store_n(&heap_peak, now, __ATOMIC_RELAXED);
}

static inline void count_in(void *p)
{
	if (p)
		count_add(malloc_usable_size(p));
}

static inline void count_out(void *p)
{
	if (p)
		__atomic_sub_fetch(&mem_heap, malloc_usable_size(p), __ATOMIC_RELAXED);
}

/* An allocation of size more (growth of a block: size less what it had) passes the ceiling. */
static inline int over_ceiling(size_t more)
{
	return __atomic_load_n(&mem_heap, __ATOMIC_RELAXED) + more >
	       __atomic_load_n(&hard_room, __ATOMIC_RELAXED);
}

/* room = cap less what SQLite holds, or 0; UINT64_MAX when there is no limit. */
static uint64_t room(uint64_t cap)
{
	if (!limit)
		return UINT64_MAX;
	return cap > other ? cap - other : 0;
}

static void set_rooms(void)
{
	mem_soft_room = room(limit);
	__atomic_store_n(&hard_room, room(limit + mem_limit_margin(limit)), __ATOMIC_RELAXED);
}

void mem_set_limit(uint64_t bytes)
{
	limit = bytes;
	set_rooms();
}

void mem_set_other(uint64_t bytes)
{
	other = bytes;
	set_rooms();
}

uint64_t mem_limit_margin(uint64_t bytes)
{
	return bytes / 8;
}

uint64_t mem_counted(void)
{
	return __atomic_load_n(&mem_heap, __ATOMIC_RELAXED) + other;
}

uint64_t mem_counted_peak(void)
{
	return __atomic_load_n(&heap_peak, __ATOMIC_RELAXED) + other;
}

static int should_fail(void)
{
	if (fail_after < 0)
		return 0;
	if (fail_after == 0)
		return 1;
	fail_after--;
	return 0;
}

void mem_fail_after(long n)
{
	fail_after = n;
}

void *mem_alloc(size_t size)
{
	void *p;

	if (should_fail() || over_ceiling(size))
		return NULL;
	p = malloc(size ? size : 1);
	count_in(p);
	return p;
}

void *mem_calloc(size_t n, size_t size)
{
	void *p;

	if (should_fail() || (n && size > SIZE_MAX / n) || over_ceiling(n * size))
		return NULL;
	p = calloc(n ? n : 1, size ? size : 1);
	count_in(p);
	return p;
}

void *mem_realloc(void *p, size_t size)
{
	size_t had = p ? malloc_usable_size(p) : 0;
	void *q;

	if (should_fail() || (size > had && over_ceiling(size - had)))
		return NULL;
	q = realloc(p, size ? size : 1);
	if (q)
		count_add(malloc_usable_size(q) - had);
	return q;
}

char *mem_strndup(const char *s, size_t len)
{
	char *d = mem_alloc(len + 1);

	if (!d)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

char *mem_strdup(const char *s)
{
	return mem_strndup(s, strlen(s));
}

void mem_free(void *p)
{
	count_out(p);
	free(p);
}

void *mem_cache_alloc(struct mem_cache *c)
{
	void *p = c->top;

	if (!p)
		return mem_alloc(c->size);
	if (should_fail())
		return NULL;
	memcpy(&c->top, p, sizeof(void *));
	c->n--;
	return p;
}

void mem_cache_free(struct mem_cache *c, void *p)
{
	if (!p)
		return;
	if (MEM_SANITIZED || c->n >= c->max) {
		mem_free(p);
		return;
	}
	memcpy(p, &c->top, sizeof(void *));
	c->top = p;
	c->n++;
}

void mem_cache_drain(struct mem_cache *c)
{
	while (c->top) {
		void *p = c->top;

		memcpy(&c->top, p, sizeof(void *));
		mem_free(p);
	}
	c->n = 0;
}
