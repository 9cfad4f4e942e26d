/*
 * mem.h - the broker's one allocation choke point.
 *
 * Every allocation in src/ goes through these functions so that tests can
 * make the Nth allocation fail (mem_fail_after) and check that out of memory
 * is handled as an error, never a crash, and so that the bytes they hold are
 * counted for memory_limit. They behave as their libc namesakes, except that
 * with a limit set they fail once the count would pass the limit plus its
 * margin (mem_limit_margin).
 */
#ifndef SLUICE_MEM_H
#define SLUICE_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *mem_alloc(size_t size);
void *mem_calloc(size_t n, size_t size);
void *mem_realloc(void *p, size_t size);
char *mem_strdup(const char *s);
/* Copies len bytes of s and adds a NUL. */
char *mem_strndup(const char *s, size_t len);
void mem_free(void *p);

/*
 * A cache of freed blocks of one size, for objects made and freed once per
 * message (deliveries, small messages, output buffers): a bounded stack, so
 * that steady traffic reuses blocks instead of going through malloc, and a
 * burst leaves at most max blocks behind. Loop thread only. Sanitizer
 * builds keep no blocks, so that a use after free is still caught.
 */
struct mem_cache {
	size_t size; /* of every block, at least a pointer's */
	unsigned max; /* blocks kept at most */
	unsigned n; /* blocks kept now */
	void *top; /* the stack, linked through the blocks' first bytes */
};
#define MEM_CACHE(size, max)           \
	{                              \
		(size), (max), 0, NULL \
	}

/* A block of c->size bytes, not zeroed; NULL when out of memory. */
void *mem_cache_alloc(struct mem_cache *c);
/* Gives back p, a block from mem_cache_alloc(c) or NULL. */
void mem_cache_free(struct mem_cache *c, void *p);
/* Frees every kept block (shutdown, leak checks). */
void mem_cache_drain(struct mem_cache *c);

/*
 * memory_limit. mem_heap: bytes held by blocks from these functions (their
 * malloc_usable_size), updated atomically by either thread. mem_soft_room:
 * the limit less what mem_set_other reported, UINT64_MAX without a limit.
 * Both are written here only; read them through mem_over_limit().
 */
extern uint64_t mem_heap;
extern uint64_t mem_soft_room;

/* Over memory_limit: take no new work. One load and one compare. */
static inline bool mem_over_limit(void)
{
	return __atomic_load_n(&mem_heap, __ATOMIC_RELAXED) > mem_soft_room;
}

/* Loop thread. bytes 0 = no limit (the default). */
void mem_set_limit(uint64_t bytes);
/* Loop thread: memory counted besides these functions' (SQLite's heap), as last read. */
void mem_set_other(uint64_t bytes);
/* How far past a limit of bytes allocations still succeed (an eighth of it). */
uint64_t mem_limit_margin(uint64_t bytes);
/* What is counted now: mem_heap plus the other memory; and the most mem_heap ever was, plus it. */
uint64_t mem_counted(void);
uint64_t mem_counted_peak(void);

/* Tests: the next n allocations succeed, then every one fails; -1 turns it off. */
void mem_fail_after(long n);

#endif
