/*
 * mem.h - the broker's one allocation choke point.
 *
 * Every allocation in src/ goes through these functions so that tests can
 * make the Nth allocation fail (mem_fail_after) and check that out of memory
 * is handled as an error, never a crash. They behave as their libc namesakes.
 */
#ifndef SLUICE_MEM_H
#define SLUICE_MEM_H

#include <stddef.h>

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

/* Tests: the next n allocations succeed, then every one fails; -1 turns it off. */
void mem_fail_after(long n);

#endif
