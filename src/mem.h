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

/* Tests: the next n allocations succeed, then every one fails; -1 turns it off. */
void mem_fail_after(long n);

#endif
