/*
 * sched.c - what the delayed topics plugin decides without the broker.
 *
 * Parsing. A delay is asked for in one of three ways: the topic
 * $delayed/{seconds}/{topic} (seconds may have a fraction, resolved to the
 * millisecond and rounded up so that nothing is released early), or an MQTT 5
 * user property delay-ms (relative) or deliver-at (Unix ms) on any topic.
 * $delayed/cancel/{id} cancels. Everything else about the request is checked
 * here too: one way only, one value only, a topic to release on that a client
 * may publish to (no wildcards [MQTT-3.3.2-2], not empty [MQTT-4.7.3-1], not
 * a $ topic), and no more than the configured maximum ahead. deliver-at in
 * the past is accepted and means "now".
 *
 * The release queue has two levels so that memory follows the number of
 * messages, not their size. `far` is a binary min-heap of 16-byte entries
 * (due, seq): a million pending messages cost 16 MB there. `near` holds a
 * record per message due within the prefetch window, with its payload read
 * back (or on its way); at most `cap` of them unless a message published
 * now must be ordered before one already staged. Every near entry comes
 * before every far entry, so the first of near is the next to go, and
 * messages due in the same millisecond go in publish order (seq).
 *
 * The durable index is chunked (see sched.h) so that the broker's key/value
 * space holds one row per 32 messages rather than one per message.
 */
#include "sched.h"

#include <stdlib.h>
#include <string.h>

static void *(*sched_alloc)(size_t) = malloc;
static void (*sched_release)(void *) = free;

void sched_set_alloc(void *(*alloc)(size_t), void (*release)(void *))
{
	sched_alloc = alloc ? alloc : malloc;
	sched_release = release ? release : free;
}

/* Grows *a (n used elements of size sz) to hold cap elements. */
static int grow(void **a, size_t n, size_t sz, size_t cap)
{
	void *p = sched_alloc(cap * sz);

	if (!p)
		return -1;
	if (n)
		memcpy(p, *a, n * sz);
	sched_release(*a);
	*a = p;
	return 0;
}

/* --- parsing ------------------------------------------------------------------- */

#define MAX_DIGITS 18 /* below 2^63: no overflow in a uint64_t */

int sched_parse_uint(const char *s, size_t len, uint64_t *v)
{
	uint64_t x = 0;
	size_t i;

	if (!len)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (i >= MAX_DIGITS)
			x = UINT64_MAX; /* out of any range the caller accepts */
		else
			x = x * 10 + (uint64_t)(s[i] - '0');
	}
	*v = x;
	return 0;
}

int sched_parse_seconds(const char *s, size_t len, uint64_t *ms)
{
	const char *dot = memchr(s, '.', len);
	size_t ilen = dot ? (size_t)(dot - s) : len, flen = dot ? len - ilen - 1 : 0, i;
	uint64_t secs, frac = 0;
	bool rest = false;

	if (sched_parse_uint(s, ilen, &secs))
		return -1;
	if (dot && !flen)
		return -1; /* "5." */
	for (i = 0; i < flen; i++) {
		char c = dot[1 + i];

		if (c < '0' || c > '9')
			return -1;
		if (i < 3)
			frac = frac * 10 + (uint64_t)(c - '0');
		else if (c != '0')
			rest = true;
	}
	for (i = flen; i < 3; i++)
		frac *= 10;
	if (secs > UINT64_MAX / 2000) {
		*ms = UINT64_MAX;
		return 0;
	}
	*ms = secs * 1000 + frac + (rest ? 1 : 0);
	return 0;
}

int sched_parse_duration(const char *s, uint64_t *ms)
{
	static const struct {
		char c;
		uint64_t secs;
	} units[] = { { 's', 1 },      { 'h', 3600 },	 { 'd', 86400 },
		      { 'w', 604800 }, { 'm', 2592000 }, { 'y', 31536000 } };
	size_t len = strlen(s), i;
	uint64_t v, mult = 1;

	if (len && (s[len - 1] < '0' || s[len - 1] > '9')) {
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (units[i].c == s[len - 1])
				break;
		if (i == sizeof(units) / sizeof(units[0]))
			return -1;
		mult = units[i].secs;
		len--;
	}
	if (len > 12 || sched_parse_uint(s, len, &v))
		return -1;
	if (v > UINT64_MAX / (mult * 1000))
		return -2; /* would wrap around to some other duration */
	*ms = v * mult * 1000;
	return 0;
}

static int fail(struct sched_req *out, uint8_t reason, const char *why)
{
	out->kind = SCHED_NONE;
	out->reason = reason;
	out->why = why;
	return -1;
}

/* The topic a delayed message is released on must be one a client may publish to. */
static int check_target(const char *t, struct sched_req *out)
{
	if (!*t) /* [MQTT-4.7.3-1] */
		return fail(out, SCHED_RC_TOPIC_INVALID, "no topic to release the message on");
	if (strpbrk(t, "+#")) /* [MQTT-3.3.2-2] */
		return fail(out, SCHED_RC_TOPIC_INVALID, "wildcard in the topic to release on");
	if (t[0] == '$')
		return fail(out, SCHED_RC_TOPIC_INVALID,
			    "a delayed message cannot go to a $ topic");
	return 0;
}

static int parse_cancel(const char *rest, struct sched_req *out)
{
	if (rest[0] != '/' || !rest[1])
		return fail(out, SCHED_RC_TOPIC_INVALID, "$delayed/cancel/ needs a message-id");
	if (sched_parse_uint(rest + 1, strlen(rest + 1), &out->cancel_id) || !out->cancel_id)
		return fail(out, SCHED_RC_TOPIC_INVALID, "malformed message-id to cancel");
	out->kind = SCHED_CANCEL;
	return 0;
}

/* $delayed[/...]: rest is what follows "$delayed". Sets *delay and out->target. */
static int parse_topic(const char *rest, bool has_props, uint64_t *delay, struct sched_req *out)
{
	const char *slash;

	if (*rest == '/')
		rest++;
	if (!strncmp(rest, "cancel", 6) && (rest[6] == '/' || !rest[6]))
		return parse_cancel(rest + 6, out);
	if (has_props)
		return fail(out, SCHED_RC_IMPL_ERROR,
			    "delay given both in the topic and in a user property");
	slash = strchr(rest, '/');
	if (!slash)
		return fail(out, SCHED_RC_TOPIC_INVALID, "expected $delayed/{seconds}/{topic}");
	if (sched_parse_seconds(rest, (size_t)(slash - rest), delay))
		return fail(out, SCHED_RC_IMPL_ERROR,
			    "malformed delay: expected seconds such as 5 or 0.25");
	out->target = slash + 1;
	return 0;
}

static int parse_props(const char *topic, const struct sched_props *p, uint64_t now,
		       uint64_t *delay, struct sched_req *out)
{
	uint64_t at;

	if (p->n_delay && p->n_at)
		return fail(out, SCHED_RC_IMPL_ERROR, "both delay-ms and deliver-at given");
	if (p->n_delay > 1 || p->n_at > 1)
		return fail(out, SCHED_RC_IMPL_ERROR, "delay user property given more than once");
	if (p->n_delay) {
		if (sched_parse_uint(p->delay, p->delay_len, delay))
			return fail(out, SCHED_RC_IMPL_ERROR,
				    "malformed delay-ms: expected a number of milliseconds");
	} else {
		if (sched_parse_uint(p->at, p->at_len, &at))
			return fail(out, SCHED_RC_IMPL_ERROR,
				    "malformed deliver-at: expected Unix time in milliseconds");
		*delay = at > now ? at - now : 0; /* in the past: at once */
	}
	out->target = topic;
	return 0;
}

int sched_parse(const char *topic, const struct sched_props *props, uint64_t now_ms,
		uint64_t max_ms, struct sched_req *out)
{
	size_t plen = strlen(SCHED_PREFIX);
	bool has_props = props && (props->n_delay || props->n_at);
	uint64_t delay = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!strncmp(topic, SCHED_PREFIX, plen) && (topic[plen] == '/' || !topic[plen]))
		rc = parse_topic(topic + plen, has_props, &delay, out);
	else if (has_props)
		rc = parse_props(topic, props, now_ms, &delay, out);
	else
		return 0;
	if (rc || out->kind == SCHED_CANCEL)
		return rc;
	if (check_target(out->target, out))
		return -1;
	/* A due time past the end of the clock would wrap around to "at once". */
	if (delay > max_ms || delay > UINT64_MAX - now_ms)
		return fail(out, SCHED_RC_IMPL_ERROR, "delay over the maximum (plugin_opt_max)");
	out->kind = SCHED_DELAY;
	out->due_ms = now_ms + delay;
	return 0;
}

/* --- the far heap ---------------------------------------------------------------- */

static void heap_up(struct sched_ent *a, size_t i)
{
	struct sched_ent e = a[i];

	while (i) {
		size_t p = (i - 1) / 2;

		if (!sched_before(&e, &a[p]))
			break;
		a[i] = a[p];
		i = p;
	}
	a[i] = e;
}

static void heap_down(struct sched_ent *a, size_t n, size_t i)
{
	struct sched_ent e = a[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && sched_before(&a[c + 1], &a[c]))
			c++;
		if (!sched_before(&a[c], &e))
			break;
		a[i] = a[c];
		i = c;
	}
	a[i] = e;
}

int sched_heap_append(struct sched_heap *h, struct sched_ent e)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;

		if (grow((void **)&h->a, h->n, sizeof(*h->a), cap))
			return -1;
		h->cap = cap;
	}
	h->a[h->n++] = e;
	return 0;
}

int sched_heap_push(struct sched_heap *h, struct sched_ent e)
{
	if (sched_heap_append(h, e))
		return -1;
	heap_up(h->a, h->n - 1);
	return 0;
}

void sched_heap_build(struct sched_heap *h)
{
	size_t i;

	for (i = h->n / 2; i-- > 0;)
		heap_down(h->a, h->n, i);
}

int sched_heap_pop(struct sched_heap *h, struct sched_ent *out)
{
	if (!h->n)
		return -1;
	*out = h->a[0];
	h->a[0] = h->a[--h->n];
	if (h->n)
		heap_down(h->a, h->n, 0);
	/* Give memory back when a big backlog has drained. */
	if (h->cap > 4096 && h->n < h->cap / 4 &&
	    !grow((void **)&h->a, h->n, sizeof(*h->a), h->cap / 2))
		h->cap /= 2;
	return 0;
}

void sched_heap_free(struct sched_heap *h)
{
	sched_release(h->a);
	memset(h, 0, sizeof(*h));
}

/* --- the near heap (records) ---------------------------------------------------- */

static void near_up(struct sched_rec **a, size_t i)
{
	struct sched_rec *r = a[i];

	while (i) {
		size_t p = (i - 1) / 2;

		if (!sched_before(&r->e, &a[p]->e))
			break;
		a[i] = a[p];
		i = p;
	}
	a[i] = r;
}

static void near_down(struct sched_rec **a, size_t n, size_t i)
{
	struct sched_rec *r = a[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && sched_before(&a[c + 1]->e, &a[c]->e))
			c++;
		if (!sched_before(&a[c]->e, &r->e))
			break;
		a[i] = a[c];
		i = c;
	}
	a[i] = r;
}

static struct sched_rec *near_push(struct sched *s, struct sched_ent e)
{
	struct sched_rec *r;

	if (s->n_near == s->cap_near) {
		size_t cap = s->cap_near ? s->cap_near * 2 : 64;

		if (grow((void **)&s->near, s->n_near, sizeof(*s->near), cap))
			return NULL;
		s->cap_near = cap;
	}
	r = sched_alloc(sizeof(*r));
	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->e = e;
	r->state = SCHED_WAIT;
	if (!s->n_near || sched_before(&s->hi, &e))
		s->hi = e;
	s->near[s->n_near] = r;
	near_up(s->near, s->n_near++);
	return r;
}

static struct sched_rec *near_pop(struct sched *s)
{
	struct sched_rec *r = s->near[0];

	s->near[0] = s->near[--s->n_near];
	if (s->n_near)
		near_down(s->near, s->n_near, 0);
	return r;
}

/* --- the two levels ---------------------------------------------------------------- */

void sched_init(struct sched *s, uint64_t window_ms, size_t cap)
{
	memset(s, 0, sizeof(*s));
	s->window = window_ms;
	s->cap = cap ? cap : 1;
}

void sched_rec_free(struct sched_rec *r)
{
	sched_release(r);
}

void sched_free(struct sched *s, void (*free_msg)(void *msg))
{
	size_t i;

	for (i = 0; i < s->n_near; i++) {
		if (s->near[i]->msg && free_msg)
			free_msg(s->near[i]->msg);
		sched_release(s->near[i]);
	}
	sched_release(s->near);
	sched_heap_free(&s->far);
	memset(s, 0, sizeof(*s));
}

int sched_add(struct sched *s, struct sched_ent e, uint64_t now, struct sched_rec **rec)
{
	bool first_far = !s->far.n || sched_before(&e, &s->far.a[0]);

	*rec = NULL;
	/* Before something already staged: it must be staged too (the invariant). */
	if ((s->n_near && sched_before(&e, &s->hi)) ||
	    (first_far && e.due <= now + s->window && s->n_near < s->cap)) {
		*rec = near_push(s, e);
		return *rec ? 0 : -1;
	}
	return sched_heap_push(&s->far, e);
}

struct sched_rec *sched_stage(struct sched *s, uint64_t now)
{
	struct sched_ent e;
	struct sched_rec *r;

	if (!s->far.n || s->n_near >= s->cap || s->far.a[0].due > now + s->window)
		return NULL;
	e = s->far.a[0];
	r = near_push(s, e);
	if (r)
		sched_heap_pop(&s->far, &e);
	return r;
}

/* A record the caller can act on at its due time: not waiting for a payload. */
static bool settled(const struct sched_rec *r)
{
	return r->state == SCHED_READY || r->state == SCHED_MISSING || r->state == SCHED_DONE;
}

struct sched_rec *sched_due(struct sched *s, uint64_t now)
{
	struct sched_rec *r = s->n_near ? s->near[0] : NULL;

	if (!r || r->e.due > now || !settled(r))
		return NULL;
	return near_pop(s);
}

int sched_putback(struct sched *s, struct sched_rec *r)
{
	/* Normally the slot sched_due() emptied is still there and this cannot fail. */
	if (s->n_near == s->cap_near) {
		size_t cap = s->cap_near ? s->cap_near * 2 : 64;

		if (grow((void **)&s->near, s->n_near, sizeof(*s->near), cap))
			return -1;
		s->cap_near = cap;
	}
	if (!s->n_near || sched_before(&s->hi, &r->e))
		s->hi = r->e;
	s->near[s->n_near] = r;
	near_up(s->near, s->n_near++);
	return 0;
}

bool sched_first(const struct sched *s, struct sched_ent *out)
{
	if (s->n_near)
		*out = s->near[0]->e;
	else if (s->far.n)
		*out = s->far.a[0];
	else
		return false;
	return true;
}

struct sched_rec *sched_drop_first(struct sched *s)
{
	struct sched_ent e;

	if (s->n_near)
		return near_pop(s);
	sched_heap_pop(&s->far, &e);
	return NULL;
}

uint64_t sched_wake(const struct sched *s)
{
	uint64_t at = UINT64_MAX;

	if (s->n_near) {
		const struct sched_rec *r = s->near[0];

		/* A record still being fetched wakes the caller when it arrives. */
		if (settled(r))
			at = r->e.due;
	}
	if (s->far.n && s->n_near < s->cap) {
		uint64_t d = s->far.a[0].due;
		uint64_t stage_at = d > s->window ? d - s->window : 0;

		if (stage_at < at)
			at = stage_at;
	}
	return at;
}

size_t sched_count(const struct sched *s)
{
	return s->n_near + s->far.n;
}

/* --- index rows ---------------------------------------------------------------------- */

void sched_put_be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

uint64_t sched_get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

uint32_t sched_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void sched_chunk_item(const uint8_t *v, size_t i, struct sched_item *it)
{
	const uint8_t *p = v + i * SCHED_REC_SIZE;

	it->idx = p[0];
	it->due = sched_get_be64(p + 1);
	it->sender = sched_get_be32(p + 9);
}

static void put_item(uint8_t *p, const struct sched_item *it)
{
	p[0] = (uint8_t)it->idx;
	sched_put_be64(p + 1, it->due);
	put_be32(p + 9, it->sender);
}

bool sched_chunk_valid(const uint8_t *v, size_t len)
{
	size_t i;

	if (!len || len % SCHED_REC_SIZE || len > SCHED_CHUNK_MAX)
		return false;
	for (i = 0; i < len / SCHED_REC_SIZE; i++) {
		unsigned idx = v[i * SCHED_REC_SIZE];

		if (idx >= SCHED_CHUNK || (i && idx <= v[(i - 1) * SCHED_REC_SIZE]))
			return false;
	}
	return true;
}

int sched_chunk_find(const uint8_t *v, size_t len, unsigned idx, struct sched_item *it)
{
	size_t i;

	for (i = 0; i < len / SCHED_REC_SIZE; i++) {
		if (v[i * SCHED_REC_SIZE] == idx) {
			sched_chunk_item(v, i, it);
			return 0;
		}
	}
	return -1;
}

size_t sched_chunk_add(const uint8_t *v, size_t len, const struct sched_item *it, uint8_t *out)
{
	size_t i, n = len / SCHED_REC_SIZE, o = 0;
	bool put = false;

	for (i = 0; i < n; i++) {
		unsigned idx = v[i * SCHED_REC_SIZE];

		if (!put && idx >= it->idx) {
			put_item(out + o, it);
			o += SCHED_REC_SIZE;
			put = true;
			if (idx == it->idx)
				continue; /* replaced */
		}
		memcpy(out + o, v + i * SCHED_REC_SIZE, SCHED_REC_SIZE);
		o += SCHED_REC_SIZE;
	}
	if (!put) {
		put_item(out + o, it);
		o += SCHED_REC_SIZE;
	}
	return o;
}

size_t sched_chunk_remove(const uint8_t *v, size_t len, unsigned idx, uint8_t *out)
{
	size_t i, o = 0;

	for (i = 0; i < len / SCHED_REC_SIZE; i++) {
		if (v[i * SCHED_REC_SIZE] == idx)
			continue;
		memcpy(out + o, v + i * SCHED_REC_SIZE, SCHED_REC_SIZE);
		o += SCHED_REC_SIZE;
	}
	return o;
}

uint64_t sched_chunk_last_due(const uint8_t *v, size_t len)
{
	uint64_t last = 0, due;
	size_t i;

	for (i = 0; i < len / SCHED_REC_SIZE; i++) {
		due = sched_get_be64(v + i * SCHED_REC_SIZE + 1);
		if (due > last)
			last = due;
	}
	return last;
}

size_t sched_key_chunk(uint8_t *out, uint64_t seq)
{
	out[0] = 'c';
	sched_put_be64(out + 1, seq >> SCHED_CHUNK_BITS);
	return 9;
}

size_t sched_key_sender(uint8_t *out, uint32_t id)
{
	out[0] = 's';
	put_be32(out + 1, id);
	return 5;
}

size_t sched_key_payload(uint8_t *out, uint64_t seq)
{
	out[0] = 'p';
	sched_put_be64(out + 1, seq);
	return 9;
}

/* --- senders -------------------------------------------------------------------------- */

static size_t name_hash(const char *s)
{
	uint64_t h = 14695981039346656037ull; /* FNV-1a */

	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return (size_t)(h ^ h >> 32);
}

static size_t id_hash(uint32_t id)
{
	return (size_t)(id * 2654435761u);
}

void sched_senders_init(struct sched_senders *ss)
{
	memset(ss, 0, sizeof(*ss));
}

void sched_senders_free(struct sched_senders *ss)
{
	size_t i;

	for (i = 0; i < ss->size; i++) {
		struct sched_sender *s = ss->name_tab[i], *next;

		for (; s; s = next) {
			next = s->by_name;
			sched_release(s);
		}
	}
	sched_release(ss->name_tab);
	sched_release(ss->id_tab);
	memset(ss, 0, sizeof(*ss));
}

struct sched_sender *sched_senders_find(const struct sched_senders *ss, const char *name)
{
	struct sched_sender *s;

	if (!ss->size)
		return NULL;
	for (s = ss->name_tab[name_hash(name) & (ss->size - 1)]; s; s = s->by_name)
		if (!strcmp(s->name, name))
			return s;
	return NULL;
}

struct sched_sender *sched_senders_by_id(const struct sched_senders *ss, uint32_t id)
{
	struct sched_sender *s;

	if (!ss->size)
		return NULL;
	for (s = ss->id_tab[id_hash(id) & (ss->size - 1)]; s; s = s->by_id)
		if (s->id == id)
			return s;
	return NULL;
}

static void link_sender(struct sched_senders *ss, struct sched_sender *s)
{
	size_t a = name_hash(s->name) & (ss->size - 1), b = id_hash(s->id) & (ss->size - 1);

	s->by_name = ss->name_tab[a];
	ss->name_tab[a] = s;
	s->by_id = ss->id_tab[b];
	ss->id_tab[b] = s;
}

static int rehash(struct sched_senders *ss, size_t size)
{
	struct sched_sender **nt = sched_alloc(size * sizeof(*nt)), **it, *s, *next;
	struct sched_senders old = *ss;
	size_t i;

	it = sched_alloc(size * sizeof(*it));
	if (!nt || !it) {
		sched_release(nt);
		sched_release(it);
		return -1;
	}
	memset(nt, 0, size * sizeof(*nt));
	memset(it, 0, size * sizeof(*it));
	ss->name_tab = nt;
	ss->id_tab = it;
	ss->size = size;
	for (i = 0; i < old.size; i++) {
		for (s = old.name_tab[i]; s; s = next) {
			next = s->by_name;
			link_sender(ss, s);
		}
	}
	sched_release(old.name_tab);
	sched_release(old.id_tab);
	return 0;
}

struct sched_sender *sched_senders_add(struct sched_senders *ss, const char *name, uint32_t id)
{
	size_t len = strlen(name);
	struct sched_sender *s;

	if (sched_senders_by_id(ss, id))
		return NULL;
	if (ss->n >= ss->size && rehash(ss, ss->size ? ss->size * 2 : 16))
		return NULL;
	s = sched_alloc(sizeof(*s) + len + 1);
	if (!s)
		return NULL;
	memset(s, 0, sizeof(*s));
	s->id = id;
	memcpy(s->name, name, len + 1);
	link_sender(ss, s);
	ss->n++;
	return s;
}

static void unlink_chain(struct sched_sender **pp, struct sched_sender *s, bool by_name)
{
	for (; *pp; pp = by_name ? &(*pp)->by_name : &(*pp)->by_id) {
		if (*pp == s) {
			*pp = by_name ? s->by_name : s->by_id;
			return;
		}
	}
}

void sched_senders_remove(struct sched_senders *ss, struct sched_sender *s)
{
	unlink_chain(&ss->name_tab[name_hash(s->name) & (ss->size - 1)], s, true);
	unlink_chain(&ss->id_tab[id_hash(s->id) & (ss->size - 1)], s, false);
	ss->n--;
	sched_release(s);
}
