/*
 * kvspace.h - a sorted key/value space in memory: byte-string keys in
 * memcmp order (a shorter key first on a tie), owned copies of keys and
 * values. The plugins' state lives in one (the store writes it through),
 * and their cold values do when persistence is off. Pure: depends on the
 * allocator only.
 *
 * Pointer parameters are borrowed. An entry returned by kvspace_get or
 * kvspace_at, and a position, are valid until the next write to the space
 * (set, unset, unset_range, free). A position used after a write is still
 * safe to read through (it may skip or repeat entries, or end early).
 */
#ifndef SLUICE_KVSPACE_H
#define SLUICE_KVSPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv_entry {
	uint8_t *key, *val;
	size_t klen, vlen;
};

/* Entries a chunk holds at most (kvspace.c explains the layout). */
#define KVSPACE_CHUNK 128

/* A run of entries in key order: e[0..n), 1 <= n <= KVSPACE_CHUNK. */
struct kv_chunk {
	size_t n;
	struct kv_entry e[KVSPACE_CHUNK];
};

/* All zero is an empty space. Callers read n; the rest is kvspace.c's (and its tests'). */
struct kv_space {
	struct kv_chunk **c; /* chunks in key order, c[0..nc) */
	size_t nc, cap; /* chunks, room for chunk pointers */
	size_t n; /* entries */
};

/* A place in the space: entry i of chunk c, or the end (c == nc). */
struct kv_pos {
	size_t c, i;
};

/* Sets key to a copy of val (replacing a value). 0, or -1 when out of memory (unchanged). */
int kvspace_set(struct kv_space *sp, const void *key, size_t klen, const void *val, size_t vlen);
/* 0, or -1 when key is absent. */
int kvspace_unset(struct kv_space *sp, const void *key, size_t klen);
/* Removes every entry with lo <= key < hi. Allocates nothing. */
void kvspace_unset_range(struct kv_space *sp, const void *lo, size_t lol, const void *hi,
			 size_t hil);
/* The entry of key, or NULL. */
const struct kv_entry *kvspace_get(const struct kv_space *sp, const void *key, size_t klen);
/* *pos := the first entry >= key (the end when none). */
void kvspace_seek(const struct kv_space *sp, const void *key, size_t klen, struct kv_pos *pos);
/* The entry at *pos, or NULL at the end. */
const struct kv_entry *kvspace_at(const struct kv_space *sp, const struct kv_pos *pos);
/* *pos := the entry after it (from the end, stays at the end). */
void kvspace_next(const struct kv_space *sp, struct kv_pos *pos);
void kvspace_free(struct kv_space *sp);

#endif
