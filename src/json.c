/*
 * json.c - a JSON writer (json.h): objects and arrays nested to 16 levels,
 * members separated by commas, strings escaped.
 *
 * Owns nothing but the document being written. Runs on whatever thread
 * calls it (the broker's loop, answering the HTTP API); no globals.
 *
 * Invariants: every string goes out escaped ('"', '\\' and the control
 * characters as \uXXXX; other bytes as they are, the broker's strings being
 * UTF-8 already), so a client id or topic can never break the document.
 */
#include "json.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void json_init(struct json *j, struct buf *out)
{
	memset(j, 0, sizeof(*j));
	j->out = out;
	j->first[0] = true;
}

static void put(struct json *j, const void *p, size_t n)
{
	if (!j->err && buf_put(j->out, p, n))
		j->err = -1;
}

static void escaped(struct json *j, const char *s, size_t n)
{
	size_t run = 0;

	put(j, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(j, s + run, i - run);
		run = i + 1;
		if (c == '"' || c == '\\')
			snprintf(esc, sizeof(esc), "\\%c", c);
		else
			snprintf(esc, sizeof(esc), "\\u%04x", c);
		put(j, esc, strlen(esc));
	}
	put(j, s + run, n - run);
	put(j, "\"", 1);
}

/* The comma before a member, and its key. */
static void member(struct json *j, const char *key)
{
	if (!j->first[j->depth])
		put(j, ",", 1);
	j->first[j->depth] = false;
	if (key) {
		escaped(j, key, strlen(key));
		put(j, ":", 1);
	}
}

void json_open(struct json *j, const char *key, char bracket)
{
	if (j->depth + 1 >= (int)(sizeof(j->first) / sizeof(j->first[0]))) {
		j->err = -1;
		return;
	}
	if (j->depth || !j->first[0])
		member(j, key);
	put(j, &bracket, 1);
	j->first[++j->depth] = true;
}

void json_close(struct json *j, char bracket)
{
	if (j->depth > 0)
		j->depth--;
	put(j, &bracket, 1);
}

void json_str(struct json *j, const char *key, const char *s, size_t n)
{
	member(j, key);
	if (s)
		escaped(j, s, n);
	else
		put(j, "null", 4);
}

void json_cstr(struct json *j, const char *key, const char *s)
{
	json_str(j, key, s, s ? strlen(s) : 0);
}

void json_u64(struct json *j, const char *key, uint64_t v)
{
	char num[24];

	member(j, key);
	put(j, num, (size_t)snprintf(num, sizeof(num), "%" PRIu64, v));
}

void json_bool(struct json *j, const char *key, bool v)
{
	member(j, key);
	put(j, v ? "true" : "false", v ? 4 : 5);
}
