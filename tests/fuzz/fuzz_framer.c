/*
 * fuzz_framer.c - libFuzzer target for the streaming framer.
 *
 * Input: byte 0 chooses where to split the stream, byte 1 the framer's
 * maximum packet size (0 = protocol maximum, or a small limit so that
 * FRAMER_ETOOLARGE is reached) and after how many packets the callback asks
 * to stop; the rest is the byte stream.
 *
 * The stream is fed three ways: whole, in two pieces cut at the chosen
 * point, and one byte at a time (short streams only). Packets must not
 * depend on how the bytes were chunked, so all three must produce the same
 * sequence of packets (compared byte for byte), end with the same return
 * code, and hold the same number of pending bytes. Every packet handed out
 * must be a whole packet: its remaining length matches its size, and it is
 * within the limit. Each packet is also run through codec_decode(), as the
 * broker would.
 */
#include <stdbool.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "framer.h"
#include "fuzz.h"

#define BYTEWISE_MAX 512 /* the byte-at-a-time pass costs a call and a malloc per byte */

struct run {
	struct buf seq; /* every packet, each prefixed with its length */
	size_t packets;
	size_t stop_after; /* 0 = never stop */
	uint32_t max_packet;
};

/* The remaining length of a packet the framer says is whole. */
static size_t declared_size(const uint8_t *pkt, size_t len)
{
	uint32_t rl = 0;
	size_t i;

	for (i = 1; i < len && i <= 4; i++) {
		rl |= (uint32_t)(pkt[i] & 0x7f) << (7 * (i - 1));
		if (!(pkt[i] & 0x80))
			return 1 + i + rl;
	}
	return 0; /* no complete header: not a packet */
}

static int on_packet(void *arg, const uint8_t *pkt, size_t len)
{
	struct run *r = arg;
	struct mqtt_packet p;

	fuzz_check(len >= 2);
	fuzz_check(declared_size(pkt, len) == len);
	fuzz_check(r->max_packet == 0 || len <= r->max_packet);
	(void)codec_decode(pkt, len, MQTT_V5, &p);
	fuzz_check(buf_put_u32(&r->seq, (uint32_t)len) == 0);
	fuzz_check(buf_put(&r->seq, pkt, len) == 0);
	r->packets++;
	return r->stop_after && r->packets == r->stop_after ? 1 : 0;
}

struct result {
	int rc;
	size_t pending;
};

/* Feeds the stream in chunks of the given sizes (the last one takes the rest). */
static struct result feed(struct run *r, const uint8_t *d, size_t n, const size_t *cuts,
			  size_t ncuts)
{
	struct framer f;
	struct result res = { 0, 0 };
	size_t off = 0, i, take;
	uint8_t *chunk;

	framer_init(&f, r->max_packet);
	for (i = 0; off < n && res.rc == 0; i++) {
		take = i < ncuts ? cuts[i] : n - off;
		if (take > n - off)
			take = n - off;
		/* A heap copy of exactly the chunk, so ASan catches a read past it. */
		chunk = malloc(take ? take : 1);
		fuzz_check(chunk != NULL);
		memcpy(chunk, d + off, take);
		res.rc = framer_feed(&f, chunk, take, on_packet, r);
		free(chunk);
		off += take;
	}
	res.pending = framer_pending(&f);
	if (res.rc)
		fuzz_check(res.pending == 0); /* the framer resets after an error or a stop */
	framer_free(&f);
	return res;
}

static void run_init(struct run *r, uint32_t max_packet, size_t stop_after)
{
	buf_init(&r->seq);
	r->packets = 0;
	r->stop_after = stop_after;
	r->max_packet = max_packet;
}

static void same(const struct run *a, struct result ra, const struct run *b, struct result rb)
{
	fuzz_check(ra.rc == rb.rc);
	fuzz_check(ra.pending == rb.pending);
	fuzz_check(a->packets == b->packets);
	fuzz_check(a->seq.len == b->seq.len);
	fuzz_check(a->seq.len == 0 || memcmp(a->seq.data, b->seq.data, a->seq.len) == 0);
}

static const uint32_t limits[8] = { 0, 0, 0, 0, 2, 5, 64, 200 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run whole, split, bytes;
	struct result rw, rs, rb;
	const uint8_t *d;
	size_t n, cut, *ones;

	if (size < 2)
		return 0;
	d = data + 2;
	n = size - 2;
	cut = n ? data[0] % (n + 1) : 0;
	run_init(&whole, limits[data[1] & 7], (data[1] >> 3) & 7);
	run_init(&split, whole.max_packet, whole.stop_after);
	rw = feed(&whole, d, n, NULL, 0);
	fuzz_check(rw.rc <= 1 && rw.rc >= FRAMER_ENOMEM);
	fuzz_check(rw.rc != FRAMER_ENOMEM);
	rs = feed(&split, d, n, &cut, 1);
	same(&whole, rw, &split, rs);
	if (n <= BYTEWISE_MAX) {
		run_init(&bytes, whole.max_packet, whole.stop_after);
		ones = malloc((n ? n : 1) * sizeof(*ones));
		fuzz_check(ones != NULL);
		for (size_t i = 0; i < n; i++)
			ones[i] = 1;
		rb = feed(&bytes, d, n, ones, n);
		same(&whole, rw, &bytes, rb);
		free(ones);
		buf_free(&bytes.seq);
	}
	buf_free(&whole.seq);
	buf_free(&split.seq);
	return 0;
}
