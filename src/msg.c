/*
 * msg.c - building and releasing published messages.
 *
 * A message is written once, by msg_new, and only read afterwards; every
 * holder takes a reference. Packing everything into one block costs one
 * allocation per message however many subscribers receive it, and blocks
 * of the common small sizes come from caches of freed ones (mem_cache), so
 * steady traffic mostly reuses memory instead of calling malloc.
 */
#include "msg.h"

#include <string.h>

#include "buf.h"
#include "mem.h"

static uint64_t next_id = 1;
static size_t alive;

/* Block caches by size; size_class n uses caches[n - 1]. */
static struct mem_cache caches[] = {
	MEM_CACHE(256, 1024),
	MEM_CACHE(512, 512),
	MEM_CACHE(1024, 256),
};
#define N_CLASSES (sizeof(caches) / sizeof(caches[0]))

static struct msg *block_alloc(size_t total)
{
	uint8_t i;
	struct msg *m;

	for (i = 0; i < N_CLASSES; i++) {
		if (total <= caches[i].size) {
			m = mem_cache_alloc(&caches[i]);
			if (m)
				m->size_class = (uint8_t)(i + 1);
			return m;
		}
	}
	m = mem_alloc(total);
	if (m)
		m->size_class = 0;
	return m;
}

static void block_free(struct msg *m)
{
	if (m->size_class)
		mem_cache_free(&caches[m->size_class - 1], m);
	else
		mem_free(m);
}

void msg_drain_caches(void)
{
	size_t i;

	for (i = 0; i < N_CLASSES; i++)
		mem_cache_drain(&caches[i]);
}

struct msg *msg_new(const struct msg_spec *s)
{
	size_t sender_len = !s->sender ? 0 : s->sender_len ? s->sender_len : strlen(s->sender);
	size_t total = sizeof(struct msg) + s->topic_len + 1 + sender_len + 1 + s->props_len +
		       s->payload_len;
	struct msg *m;
	char *p;

	if (s->topic_len > 65535 || sender_len > 65535 || s->payload_len > UINT32_MAX ||
	    s->props_len > UINT32_MAX)
		return NULL;
	m = block_alloc(total);
	if (!m)
		return NULL;
	p = (char *)(m + 1);
	m->refs = 1;
	m->fence = 0;
	m->first_put_batch = 0;
	m->qos = s->qos;
	m->retain = s->retain;
	m->topic_len = (uint16_t)s->topic_len;
	m->sender_len = (uint16_t)sender_len;
	m->props_len = (uint32_t)s->props_len;
	m->payload_len = (uint32_t)s->payload_len;
	m->expiry_wall_ms = s->expiry_wall_ms;
	m->expiry_interval = s->expiry_interval;
	m->id = next_id++;
	m->topic = p;
	memcpy(p, s->topic, s->topic_len);
	p[s->topic_len] = '\0';
	p += s->topic_len + 1;
	m->sender = p;
	if (sender_len)
		memcpy(p, s->sender, sender_len);
	p[sender_len] = '\0';
	p += sender_len + 1;
	m->props = (const uint8_t *)p;
	if (s->props_len)
		memcpy(p, s->props, s->props_len);
	p += s->props_len;
	m->payload = (const uint8_t *)p;
	if (s->payload_len)
		memcpy(p, s->payload, s->payload_len);
	alive++;
	return m;
}

struct msg *msg_ref(struct msg *m)
{
	m->refs++;
	return m;
}

void msg_unref(struct msg *m)
{
	if (!m || --m->refs)
		return;
	alive--;
	block_free(m);
}

size_t msg_size(const struct msg *m)
{
	return sizeof(*m) + m->topic_len + m->sender_len + 2 + m->props_len + m->payload_len;
}

void msg_seen_id(uint64_t id)
{
	if (id >= next_id)
		next_id = id + 1;
}

size_t msg_alive(void)
{
	return alive;
}

/*
 * Encoding, version 1: u8 1, u8 qos | retain << 2, u64 expiry_wall_ms,
 * u32 expiry_interval, then topic, sender (u16 length + bytes), properties
 * and payload (u32 length + bytes). Integers are big-endian.
 */
#define MSG_ENCODING 1

static int put_u64(struct buf *b, uint64_t v)
{
	return buf_put_u32(b, (uint32_t)(v >> 32)) | buf_put_u32(b, (uint32_t)v);
}

int msg_encode(const struct msg *m, struct buf *out)
{
	size_t sl = m->sender_len, before = out->len;
	int rc;

	if (buf_reserve(out, 32 + m->topic_len + sl + m->props_len + m->payload_len))
		return -1;
	rc = buf_put_u8(out, MSG_ENCODING);
	rc |= buf_put_u8(out, (uint8_t)(m->qos | (m->retain ? 4 : 0)));
	rc |= put_u64(out, m->expiry_wall_ms);
	rc |= buf_put_u32(out, m->expiry_interval);
	rc |= buf_put_str(out, m->topic, m->topic_len);
	rc |= buf_put_str(out, m->sender, sl);
	rc |= buf_put_u32(out, m->props_len);
	rc |= buf_put(out, m->props, m->props_len);
	rc |= buf_put_u32(out, m->payload_len);
	rc |= buf_put(out, m->payload, m->payload_len);
	if (rc)
		out->len = before;
	return rc ? -1 : 0;
}

struct reader {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static uint64_t get_n(struct reader *r, size_t n)
{
	uint64_t v = 0;

	if (r->left < n) {
		r->bad = true;
		return 0;
	}
	while (n--) {
		v = (v << 8) | *r->p++;
		r->left--;
	}
	return v;
}

static const void *get_bytes(struct reader *r, size_t n)
{
	const void *p = r->p;

	if (r->left < n) {
		r->bad = true;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

struct msg *msg_decode(const void *p, size_t len)
{
	struct reader r = { p, len, false };
	struct msg_spec s;
	uint8_t flags;

	memset(&s, 0, sizeof(s));
	if (get_n(&r, 1) != MSG_ENCODING)
		return NULL;
	flags = (uint8_t)get_n(&r, 1);
	s.qos = flags & 3;
	s.retain = (flags & 4) != 0;
	s.expiry_wall_ms = get_n(&r, 8);
	s.expiry_interval = (uint32_t)get_n(&r, 4);
	s.topic_len = (size_t)get_n(&r, 2);
	s.topic = get_bytes(&r, s.topic_len);
	s.sender_len = (size_t)get_n(&r, 2);
	s.sender = get_bytes(&r, s.sender_len);
	s.props_len = (size_t)get_n(&r, 4);
	s.props = get_bytes(&r, s.props_len);
	s.payload_len = (size_t)get_n(&r, 4);
	s.payload = get_bytes(&r, s.payload_len);
	if (r.bad || r.left || s.qos > 2 || (flags & ~7))
		return NULL;
	if (!s.sender_len)
		s.sender = NULL; /* not NUL-terminated: msg_new would measure it */
	return msg_new(&s);
}
