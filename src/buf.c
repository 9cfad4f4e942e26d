/*
 * buf.c - growable byte buffer and the MQTT primitive encodings.
 *
 * Growth doubles the capacity so a connection's output buffer reaches its
 * working size after a few packets and then stops allocating.
 */
#include "buf.h"

#include <string.h>

#include "mem.h"

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_free(struct buf *b)
{
	mem_free(b->data);
	buf_init(b);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
}

int buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra;
	size_t cap = b->cap ? b->cap : 64;
	uint8_t *d;

	if (extra > SIZE_MAX - b->len) /* need would wrap */
		return -1;
	if (need <= b->cap)
		return 0;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	d = mem_realloc(b->data, cap);
	if (!d)
		return -1;
	b->data = d;
	b->cap = cap;
	return 0;
}

int buf_put(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n))
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int buf_put_u8(struct buf *b, uint8_t v)
{
	return buf_put(b, &v, 1);
}

int buf_put_u16(struct buf *b, uint16_t v)
{
	uint8_t x[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	return buf_put(b, x, 2);
}

int buf_put_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	return buf_put(b, x, 4);
}

int buf_varint_size(uint32_t v)
{
	if (v < 128)
		return 1;
	if (v < 16384)
		return 2;
	if (v < 2097152)
		return 3;
	return 4;
}

int buf_put_varint(struct buf *b, uint32_t v)
{
	uint8_t x[4];
	int n = 0;

	if (v > 268435455u) /* not representable in four bytes */
		return -1;
	do {
		x[n] = v % 128;
		v /= 128;
		if (v)
			x[n] |= 0x80;
		n++;
	} while (v);
	return buf_put(b, x, (size_t)n);
}

int buf_put_str(struct buf *b, const void *p, size_t n)
{
	if (n > 65535 || buf_reserve(b, n + 2))
		return -1;
	buf_put_u16(b, (uint16_t)n);
	return buf_put(b, p, n);
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}
