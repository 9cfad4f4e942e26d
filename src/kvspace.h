/*
 * kvspace.h - a sorted key/value space in memory: byte-string keys in
 * memcmp order (a shorter key first on a tie), owned copies of keys and
 * values. The plugins' state lives in one (the store writes it through),
 * and their cold values do when persistence is off. Pure: depends on the
 * allocator only.
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

struct kv_space {
	struct kv_entry *e;
	size_t n, cap;
};

/* Sets key to a copy of val (replacing a value). 0, or -1 when out of memory (unchanged). */
int kvspace_set(struct kv_space *sp, const void *key, size_t klen, const void *val, size_t vlen);
/* 0, or -1 when key is absent. */
int kvspace_unset(struct kv_space *sp, const void *key, size_t klen);
/* Removes every entry with lo <= key < hi. */
void kvspace_unset_range(struct kv_space *sp, const void *lo, size_t lol, const void *hi,
			 size_t hil);
/* The entry of key, or NULL. */
const struct kv_entry *kvspace_get(const struct kv_space *sp, const void *key, size_t klen);
/* Index of the first entry >= key (sp->n when none). */
size_t kvspace_lower(const struct kv_space *sp, const void *key, size_t klen);
void kvspace_free(struct kv_space *sp);

#endif
