/*
 * mem.c - allocation wrappers with fault injection.
 *
 * The broker is single-threaded on its loop; the store thread allocates only
 * through SQLite. The fail counter is therefore a plain global: tests set it,
 * run one operation, and check that it failed cleanly. The same holds for
 * the block caches (mem_cache_*), which only the loop thread uses.
 */
#include "mem.h"

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
	if (should_fail())
		return NULL;
	return malloc(size ? size : 1);
}

void *mem_calloc(size_t n, size_t size)
{
	if (should_fail())
		return NULL;
	return calloc(n ? n : 1, size ? size : 1);
}

void *mem_realloc(void *p, size_t size)
{
	if (should_fail())
		return NULL;
	return realloc(p, size ? size : 1);
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
		free(p);
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
		free(p);
	}
	c->n = 0;
}
