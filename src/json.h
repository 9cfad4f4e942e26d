/*
 * json.h - writing JSON into a struct buf: strings escaped as RFC 8259
 * asks, numbers, and the punctuation between members (for the HTTP API).
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* One JSON object or array being written: where, and whether a member came yet. */
struct json {
	struct buf *out;
	bool first[16]; /* per nesting level: no member written yet */
	int depth;
	int err; /* an append failed (out of memory) */
};

void json_init(struct json *j, struct buf *out);
void json_open(struct json *j, const char *key, char bracket); /* '{' or '[' (key NULL in arrays) */
void json_close(struct json *j, char bracket);
/* Members (key NULL: an array element); s of n bytes is escaped (NULL: null). */
void json_str(struct json *j, const char *key, const char *s, size_t n);
void json_cstr(struct json *j, const char *key, const char *s);
void json_u64(struct json *j, const char *key, uint64_t v);
void json_bool(struct json *j, const char *key, bool v);

#endif
