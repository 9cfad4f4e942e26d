/*
 * buf.h - a growable byte buffer, the target of every encoder.
 *
 * Encoders append; a failed append leaves the buffer as it was and returns
 * -1 (out of memory). The buffer owns its bytes.
 */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
/* Makes room for at least extra more bytes. */
int buf_reserve(struct buf *b, size_t extra);
int buf_put(struct buf *b, const void *p, size_t n);
int buf_put_u8(struct buf *b, uint8_t v);
int buf_put_u16(struct buf *b, uint16_t v);
int buf_put_u32(struct buf *b, uint32_t v);
/* MQTT variable byte integer (1-4 bytes); v must be < 268435456. */
int buf_put_varint(struct buf *b, uint32_t v);
/* MQTT string / binary data: 2-byte length then the bytes; n must be <= 65535. */
int buf_put_str(struct buf *b, const void *p, size_t n);
/* Drops the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);

/* Number of bytes buf_put_varint writes for v. */
int buf_varint_size(uint32_t v);

#endif
