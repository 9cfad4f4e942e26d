/*
 * msg.c - building and releasing published messages.
 *
 * A message is written once, by msg_new, and only read afterwards; every
 * holder takes a reference. Packing everything into one block costs one
 * malloc and one free per message however many subscribers receive it.
 */
#include "msg.h"

#include <string.h>

#include "mem.h"

static uint64_t next_id = 1;
static size_t alive;

struct msg *msg_new(const struct msg_spec *s)
{
	size_t sender_len = s->sender ? strlen(s->sender) : 0;
	size_t total = sizeof(struct msg) + s->topic_len + 1 + sender_len + 1 + s->props_len +
		       s->payload_len;
	struct msg *m;
	char *p;

	if (s->topic_len > 65535 || s->payload_len > UINT32_MAX || s->props_len > UINT32_MAX)
		return NULL;
	m = mem_alloc(total);
	if (!m)
		return NULL;
	p = (char *)(m + 1);
	m->refs = 1;
	m->qos = s->qos;
	m->retain = s->retain;
	m->topic_len = (uint16_t)s->topic_len;
	m->props_len = (uint32_t)s->props_len;
	m->payload_len = (uint32_t)s->payload_len;
	m->expiry_wall_ms = s->expiry_wall_ms;
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
	mem_free(m);
}

size_t msg_size(const struct msg *m)
{
	return sizeof(*m) + m->topic_len + strlen(m->sender) + 2 + m->props_len + m->payload_len;
}

size_t msg_alive(void)
{
	return alive;
}
