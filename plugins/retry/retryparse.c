/*
 * retryparse.c - the pure part of the consumer retry plugin (retryparse.h):
 * option values, the delivery-count property, dead-letter topics, the
 * durable record and its keys, and the heap of due times. Keeps no state
 * but the allocator hook; runs on whatever thread calls it.
 *
 * Durations follow RocketMQ's way of writing a back-off level ("1s 5s 10s
 * 30s 1m ..."): "m" is minutes and "ms" milliseconds; a bare number is
 * seconds, as in the other plugins' options. Every value is an integer:
 * no sign, no fraction, at most 18 digits, and the product is checked
 * against 64 bits.
 *
 * The record is a fixed big-endian layout behind a version byte, then three
 * strings with 16-bit lengths; decode checks every length against the
 * value, so a damaged row is refused rather than read past, and strings
 * point into the value (borrowed from the caller's buffer).
 *
 * The heap orders by (due, seq): two retries due in the same millisecond
 * leave in the order their refusals came.
 */
#include "retryparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_VERSION 1
#define UINT_DIGITS_MAX 18

static void *(*heap_alloc)(size_t) = malloc;
static void (*heap_release)(void *) = free;

void retry_set_alloc(void *(*alloc)(size_t), void (*release)(void *))
{
	heap_alloc = alloc;
	heap_release = release;
}

/* --- option and property values ----------------------------------------- */

int retry_parse_uint(const char *s, size_t len, uint64_t *v)
{
	uint64_t n = 0;
	size_t i;

	if (!len || len > UINT_DIGITS_MAX)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	*v = n;
	return 0;
}

/* ms in one unit named by the suffix s (len bytes); 0 when it is not a unit. */
static uint64_t unit_ms(const char *s, size_t len)
{
	static const struct {
		const char *name;
		uint64_t ms;
	} units[] = { { "", 1000 },	  { "ms", 1 },		{ "s", 1000 },
		      { "m", 60 * 1000 }, { "h", 3600 * 1000 }, { "d", 86400 * 1000 } };
	size_t i;

	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strlen(units[i].name) == len && !memcmp(units[i].name, s, len))
			return units[i].ms;
	return 0;
}

int retry_parse_duration(const char *s, size_t len, uint64_t *ms)
{
	size_t digits = 0;
	uint64_t n, unit;

	while (digits < len && s[digits] >= '0' && s[digits] <= '9')
		digits++;
	unit = unit_ms(s + digits, len - digits);
	if (!unit || retry_parse_uint(s, digits, &n))
		return -1;
	if (n > UINT64_MAX / unit)
		return -2;
	*ms = n * unit;
	return 0;
}

static bool separator(char c)
{
	return c == ',' || c == ' ' || c == '\t';
}

int retry_parse_backoff(const char *s, uint64_t *steps, size_t cap, size_t *n)
{
	bool comma = true; /* an empty step before the first comma is an error too */
	int rc;

	*n = 0;
	while (*s) {
		size_t len = 0;

		if (*s == ',') {
			if (comma)
				return -1; /* ",," or a leading comma: an empty step */
			comma = true;
			s++;
			continue;
		}
		if (separator(*s)) {
			s++;
			continue;
		}
		while (s[len] && !separator(s[len]))
			len++;
		if (*n == cap)
			return -1;
		if ((rc = retry_parse_duration(s, len, &steps[*n])))
			return rc;
		(*n)++;
		comma = false;
		s += len;
	}
	return *n && !comma ? 0 : -1; /* nothing, or a trailing comma */
}

uint64_t retry_backoff(const uint64_t *steps, size_t n, uint32_t failed)
{
	size_t i = failed ? (size_t)failed - 1 : 0;

	return steps[i < n ? i : n - 1];
}

uint32_t retry_attempt(const char *v, size_t len)
{
	uint64_t n;

	if (!v || retry_parse_uint(v, len, &n) || !n)
		return 1;
	return n > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)n;
}

void retry_reason_hex(uint8_t reason, char out[5])
{
	snprintf(out, 5, "0x%02x", reason);
}

/* --- topics --------------------------------------------------------------- */

bool retry_is_dlq(const char *topic)
{
	return !strncmp(topic, RETRY_DLQ_PREFIX, strlen(RETRY_DLQ_PREFIX));
}

size_t retry_dlq_topic(char *out, size_t cap, const char *group, const char *topic)
{
	size_t pl = strlen(RETRY_DLQ_PREFIX), gl = strlen(group), tl = strlen(topic);
	size_t len = pl + gl + 1 + tl, i;

	if (len > RETRY_TOPIC_MAX || len >= cap)
		return 0;
	memcpy(out, RETRY_DLQ_PREFIX, pl);
	for (i = 0; i < gl; i++)
		out[pl + i] = group[i] == '+' || group[i] == '#' ? '_' : group[i];
	out[pl + gl] = '/';
	memcpy(out + pl + gl + 1, topic, tl + 1);
	return len;
}

const char *retry_plain_filter(const char *filter)
{
	const char *slash;

	if (strncmp(filter, "$share/", 7))
		return filter;
	slash = strchr(filter + 7, '/');
	return slash && slash > filter + 7 && slash[1] ? slash + 1 : NULL;
}

/* --- the durable record ---------------------------------------------------- */

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
	int i;

	for (i = bytes - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int bytes)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < bytes; i++)
		v = v << 8 | p[i];
	return v;
}

size_t retry_rec_size(const struct retry_rec *r)
{
	return RETRY_REC_FIXED + r->target.len + r->filter.len + r->consumer.len;
}

static uint8_t *put_str(uint8_t *p, const struct retry_str *s)
{
	put_be(p, s->len, 2);
	if (s->len)
		memcpy(p + 2, s->p, s->len);
	return p + 2 + s->len;
}

int retry_rec_encode(const struct retry_rec *r, uint8_t *out)
{
	if (r->target.len > 0xffff || r->filter.len > 0xffff || r->consumer.len > 0xffff)
		return -1;
	out[0] = REC_VERSION;
	out[1] = r->kind;
	out[2] = r->flags;
	out[3] = r->reason;
	put_be(out + 4, r->attempt, 4);
	put_be(out + 8, r->when, 8);
	out = put_str(out + 16, &r->target);
	out = put_str(out, &r->filter);
	put_str(out, &r->consumer);
	return 0;
}

/* The next string at *at: 0, or -1 when its length runs past end. */
static int get_str(const uint8_t **at, const uint8_t *end, struct retry_str *s)
{
	if (end - *at < 2)
		return -1;
	s->len = (size_t)get_be(*at, 2);
	if ((size_t)(end - *at - 2) < s->len)
		return -1;
	s->p = (const char *)*at + 2;
	*at += 2 + s->len;
	return 0;
}

int retry_rec_decode(const uint8_t *v, size_t len, struct retry_rec *r)
{
	const uint8_t *at = v + 16, *end = v + len;

	if (len < RETRY_REC_FIXED || v[0] != REC_VERSION ||
	    (v[1] != RETRY_REC_RETRY && v[1] != RETRY_REC_DEAD))
		return -1;
	memset(r, 0, sizeof(*r));
	r->kind = v[1];
	r->flags = v[2];
	r->reason = v[3];
	r->attempt = (uint32_t)get_be(v + 4, 4);
	r->when = get_be(v + 8, 8);
	if (get_str(&at, end, &r->target) || get_str(&at, end, &r->filter) ||
	    get_str(&at, end, &r->consumer) || at != end)
		return -1;
	return 0;
}

void retry_key(uint8_t *out, char prefix, uint64_t seq)
{
	out[0] = (uint8_t)prefix;
	put_be(out + 1, seq, 8);
}

bool retry_key_seq(const void *key, size_t klen, uint64_t *seq)
{
	if (klen != RETRY_KEY_LEN)
		return false;
	*seq = get_be((const uint8_t *)key + 1, 8);
	return true;
}

/* --- the queue of due times ------------------------------------------------- */

static bool before(const struct retry_ent *a, const struct retry_ent *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void swap(struct retry_ent *a, struct retry_ent *b)
{
	struct retry_ent t = *a;

	*a = *b;
	*b = t;
}

static int grow(struct retry_heap *h)
{
	size_t cap = h->cap ? h->cap * 2 : 64;
	struct retry_ent *a = heap_alloc(cap * sizeof(*a));

	if (!a)
		return -1;
	if (h->n)
		memcpy(a, h->a, h->n * sizeof(*a));
	heap_release(h->a);
	h->a = a;
	h->cap = cap;
	return 0;
}

int retry_heap_push(struct retry_heap *h, struct retry_ent e)
{
	size_t i;

	if (h->n == h->cap && grow(h))
		return -1;
	i = h->n++;
	h->a[i] = e;
	while (i && before(&h->a[i], &h->a[(i - 1) / 2])) {
		swap(&h->a[i], &h->a[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	return 0;
}

bool retry_heap_peek(const struct retry_heap *h, struct retry_ent *out)
{
	if (!h->n)
		return false;
	*out = h->a[0];
	return true;
}

bool retry_heap_pop(struct retry_heap *h, struct retry_ent *out)
{
	size_t i = 0;

	if (!h->n)
		return false;
	*out = h->a[0];
	h->a[0] = h->a[--h->n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < h->n && before(&h->a[l], &h->a[m]))
			m = l;
		if (r < h->n && before(&h->a[r], &h->a[m]))
			m = r;
		if (m == i)
			return true;
		swap(&h->a[i], &h->a[m]);
		i = m;
	}
}

void retry_heap_free(struct retry_heap *h)
{
	heap_release(h->a);
	memset(h, 0, sizeof(*h));
}
