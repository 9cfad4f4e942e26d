/*
 * framer.c - cuts a byte stream into MQTT packets.
 *
 * A packet is a type byte, a remaining length of 1 to 4 bytes (7 bits each,
 * the high bit meaning "more follows"), then that many bytes. The framer
 * knows nothing else about packets; the codec validates them.
 *
 * Two paths. When the framer holds nothing, it scans the chunk it is fed
 * and hands every packet lying wholly inside it to the callback in place:
 * on a busy connection most packets are small and arrive whole, and they
 * are never copied. Only the packet cut by the end of a chunk is copied into
 * f->buf, and the next feed completes it from there. The buffer grows
 * geometrically with what has actually arrived, not with what the header
 * announces, so a client that declares a large packet and sends nothing
 * costs nothing; its capacity stays at the largest packet seen.
 *
 * Errors are found as early as the bytes allow: a fifth length byte (the
 * fourth still having its continuation bit) is malformed, and a packet over
 * max_packet is refused the moment its length is known, before any of its
 * body is buffered. After an error the framer is reset; the caller closes
 * the connection.
 */
#include "framer.h"

#include <string.h>

#include "mem.h"
#include "mqtt.h"

/* Type byte, four length bytes, and the largest remaining length. */
#define PROTOCOL_MAX_PACKET (1u + 4u + MQTT_MAX_REMAINING_LENGTH)
#define MIN_BUF 64

void framer_init(struct framer *f, uint32_t max_packet)
{
	f->buf = NULL;
	f->len = 0;
	f->cap = 0;
	f->max_packet = max_packet;
}

void framer_free(struct framer *f)
{
	mem_free(f->buf);
	f->buf = NULL;
	f->len = 0;
	f->cap = 0;
}

size_t framer_pending(const struct framer *f)
{
	return f->len;
}

/*
 * Parses the fixed header at p (n bytes available). Returns 0 and sets
 * *total (the whole packet size) when the header is complete, 1 when more
 * bytes are needed, or a FRAMER_E* error.
 */
static int parse_header(const struct framer *f, const uint8_t *p, size_t n, size_t *total)
{
	uint32_t rl = 0, max = f->max_packet ? f->max_packet : PROTOCOL_MAX_PACKET;
	size_t i;

	for (i = 1; i < n && i <= 4; i++) {
		rl |= (uint32_t)(p[i] & 0x7F) << (7 * (i - 1));
		if (p[i] & 0x80)
			continue;
		*total = 1 + i + rl;
		/* Maximum Packet Size (section 3.1.2.11.4): refused before the body arrives */
		return *total > max ? FRAMER_ETOOLARGE : 0;
	}
	if (i > 4) /* a fifth length byte is coming (section 1.5.5: at most four) */
		return FRAMER_EMALFORMED;
	return 1;
}

/* Makes room for need bytes in f->buf, growing geometrically up to limit. */
static int reserve(struct framer *f, size_t need, size_t limit)
{
	size_t cap = f->cap ? f->cap : MIN_BUF;
	uint8_t *b;

	if (need <= f->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	if (cap > limit)
		cap = limit > need ? limit : need;
	b = mem_realloc(f->buf, cap);
	if (!b)
		return FRAMER_ENOMEM;
	f->buf = b;
	f->cap = cap;
	return 0;
}

/* Appends up to want bytes of the chunk; the packet is at most limit bytes. */
static int append(struct framer *f, const uint8_t *d, size_t want, size_t limit)
{
	if (reserve(f, f->len + want, limit))
		return FRAMER_ENOMEM;
	memcpy(f->buf + f->len, d, want);
	f->len += want;
	return 0;
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

/*
 * Continues the packet held in f->buf with the chunk. Sets *used to the
 * bytes taken. Returns 0 (the packet may still be incomplete: f->len > 0),
 * the callback's non-zero return, or a FRAMER_E* error.
 */
static int feed_buffered(struct framer *f, const uint8_t *d, size_t n, size_t *used,
			 framer_packet_fn fn, void *arg)
{
	size_t total = 0, take;
	int rc;

	*used = 0;
	/* Complete the header a byte at a time: at most four bytes. */
	while ((rc = parse_header(f, f->buf, f->len, &total)) == 1) {
		if (*used == n)
			return 0;
		if (append(f, d + *used, 1, MIN_BUF))
			return FRAMER_ENOMEM;
		(*used)++;
	}
	if (rc < 0)
		return rc;
	take = min_size(total - f->len, n - *used);
	if (append(f, d + *used, take, total))
		return FRAMER_ENOMEM;
	*used += take;
	if (f->len < total)
		return 0;
	f->len = 0;
	return fn(arg, f->buf, total);
}

/*
 * Hands out every packet wholly inside the chunk without copying and
 * buffers the tail. Returns 0, the callback's non-zero return, or an error.
 */
static int feed_direct(struct framer *f, const uint8_t *d, size_t n, framer_packet_fn fn, void *arg)
{
	size_t off = 0, total = 0;
	int rc = 1;

	while (off < n) {
		rc = parse_header(f, d + off, n - off, &total);
		if (rc < 0)
			return rc;
		if (rc == 1 || total > n - off)
			break;
		rc = fn(arg, d + off, total);
		if (rc)
			return rc;
		off += total;
	}
	if (off == n)
		return 0;
	/* The tail is a packet cut by the end of the chunk: its header may be incomplete. */
	return append(f, d + off, n - off, rc == 1 ? MIN_BUF : total);
}

int framer_feed(struct framer *f, const uint8_t *data, size_t len, framer_packet_fn fn, void *arg)
{
	size_t used = 0;
	int rc;

	if (len == 0)
		return 0;
	if (f->len) {
		rc = feed_buffered(f, data, len, &used, fn, arg);
		if (rc == 0 && f->len == 0 && used < len)
			rc = feed_direct(f, data + used, len - used, fn, arg);
	} else {
		rc = feed_direct(f, data, len, fn, arg);
	}
	if (rc)
		f->len = 0;
	return rc;
}
