/*
 * test_framer.c - the streaming framer must produce the same packets
 * however the stream is cut.
 *
 * A reference stream of packets (remaining lengths 0, 127, 128, 16383,
 * 16384, ...) is fed whole, byte by byte, split at every single point, split
 * at every pair of points (a shorter stream), and in random chunkings. The
 * collector checks each packet against the stream at the expected offset,
 * and checks that a packet lying wholly in the chunk being fed was handed
 * out in place (zero copy).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"
#include "framer.h"
#include "mem.h"

#define MAX_PKTS 32

struct stream {
	struct buf b;
	size_t n;
	size_t off[MAX_PKTS];
	size_t len[MAX_PKTS];
};

/* Appends a packet of type byte t with a body of rl patterned bytes. */
static void add_packet(struct stream *s, uint8_t t, uint32_t rl)
{
	uint32_t i;

	assert_true(s->n < MAX_PKTS);
	s->off[s->n] = s->b.len;
	assert_int_equal(buf_put_u8(&s->b, t), 0);
	assert_int_equal(buf_put_varint(&s->b, rl), 0);
	for (i = 0; i < rl; i++)
		assert_int_equal(buf_put_u8(&s->b, (uint8_t)(i * 7 + s->n)), 0);
	s->len[s->n] = s->b.len - s->off[s->n];
	s->n++;
}

static void stream_long(struct stream *s)
{
	static const uint32_t rls[] = { 0, 2, 127, 128, 0, 16383, 16384, 5, 129, 0 };
	size_t i;

	memset(s, 0, sizeof(*s));
	buf_init(&s->b);
	for (i = 0; i < sizeof(rls) / sizeof(rls[0]); i++)
		add_packet(s, (uint8_t)(0x30 | (i & 0xF)), rls[i]);
}

static void stream_short(struct stream *s)
{
	static const uint32_t rls[] = { 0, 3, 127, 0, 128, 1 };
	size_t i;

	memset(s, 0, sizeof(*s));
	buf_init(&s->b);
	for (i = 0; i < sizeof(rls) / sizeof(rls[0]); i++)
		add_packet(s, (uint8_t)(0x10 + i), rls[i]);
}

struct collector {
	const struct stream *s;
	size_t got; /* packets seen */
	size_t chunk_off; /* stream offset of the chunk being fed */
	const uint8_t *chunk;
	size_t chunk_len;
	size_t zero_copy;
	size_t stop_at; /* return 99 on this packet index (0 = never) */
	int fail;
};

static int collect(void *arg, const uint8_t *pkt, size_t len)
{
	struct collector *c = arg;
	const struct stream *s = c->s;
	size_t i = c->got, off;

	if (i >= s->n || len != s->len[i] || memcmp(pkt, s->b.data + s->off[i], len)) {
		c->fail = 1;
		return -100;
	}
	off = s->off[i];
	if (off >= c->chunk_off && off + len <= c->chunk_off + c->chunk_len) {
		/* wholly inside this chunk: must be the caller's bytes, not a copy */
		if (pkt != c->chunk + (off - c->chunk_off)) {
			c->fail = 2;
			return -101;
		}
		c->zero_copy++;
	} else if (pkt >= c->chunk && pkt < c->chunk + c->chunk_len) {
		c->fail = 3; /* a straddling packet cannot be in the chunk */
		return -102;
	}
	c->got++;
	if (c->stop_at && c->got == c->stop_at)
		return 99;
	return 0;
}

static int feed(struct framer *f, struct collector *c, size_t off, size_t len)
{
	c->chunk_off = off;
	c->chunk = c->s->b.data + off;
	c->chunk_len = len;
	return framer_feed(f, c->chunk, len, collect, c);
}

/* Feeds the stream cut at the sorted points cuts[0..ncuts) and checks the outcome. */
static void run_cuts(const struct stream *s, const size_t *cuts, size_t ncuts)
{
	struct framer f;
	struct collector c = { .s = s };
	size_t prev = 0, i, end;

	framer_init(&f, 0);
	for (i = 0; i <= ncuts; i++) {
		end = i < ncuts ? cuts[i] : s->b.len;
		assert_int_equal(feed(&f, &c, prev, end - prev), 0);
		prev = end;
	}
	if (c.fail || c.got != s->n || framer_pending(&f) != 0)
		fail_msg("cuts %zu (first %zu): fail %d, got %zu of %zu", ncuts,
			 ncuts ? cuts[0] : 0, c.fail, c.got, s->n);
	framer_free(&f);
}

static void test_whole(void **state)
{
	struct stream s;
	struct framer f;
	struct collector c = { .s = &s };

	(void)state;
	stream_long(&s);
	framer_init(&f, 0);
	assert_int_equal(feed(&f, &c, 0, s.b.len), 0);
	assert_int_equal(c.fail, 0);
	assert_int_equal(c.got, s.n);
	assert_int_equal(c.zero_copy, s.n);
	assert_null(f.buf); /* nothing was buffered, nothing allocated */
	framer_free(&f);
	buf_free(&s.b);
}

static void test_byte_at_a_time(void **state)
{
	struct stream s;
	struct framer f;
	struct collector c = { .s = &s };
	size_t i, pk = 0;

	(void)state;
	stream_long(&s);
	framer_init(&f, 0);
	for (i = 0; i < s.b.len; i++) {
		assert_int_equal(feed(&f, &c, i, 1), 0);
		/* pending is the bytes of the incomplete packet held */
		while (pk < s.n && s.off[pk] + s.len[pk] <= i + 1)
			pk++;
		assert_int_equal(framer_pending(&f), pk < s.n ? i + 1 - s.off[pk] : 0);
	}
	assert_int_equal(c.fail, 0);
	assert_int_equal(c.got, s.n);
	framer_free(&f);
	buf_free(&s.b);
}

static void test_every_split(void **state)
{
	struct stream s;
	size_t cut;

	(void)state;
	stream_long(&s);
	for (cut = 0; cut <= s.b.len; cut++)
		run_cuts(&s, &cut, 1);
	buf_free(&s.b);
}

static void test_every_pair_of_splits(void **state)
{
	struct stream s;
	size_t cuts[2];

	(void)state;
	stream_short(&s);
	for (cuts[0] = 0; cuts[0] <= s.b.len; cuts[0]++)
		for (cuts[1] = cuts[0]; cuts[1] <= s.b.len; cuts[1]++)
			run_cuts(&s, cuts, 2);
	buf_free(&s.b);
}

static uint32_t rng_state = 0x2545F491u;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static void test_random_chunks(void **state)
{
	struct stream s;
	size_t cuts[256], n, pos, round, maxchunk;

	(void)state;
	stream_long(&s);
	for (round = 0; round < 300; round++) {
		/* chunk sizes from tiny to larger than most packets */
		maxchunk = (size_t)1 << (rnd() % 16);
		pos = 0;
		n = 0;
		while (n < 256) {
			pos += 1 + rnd() % maxchunk;
			if (pos >= s.b.len)
				break;
			cuts[n++] = pos;
		}
		run_cuts(&s, cuts, n);
	}
	buf_free(&s.b);
}

static int count_cb(void *arg, const uint8_t *pkt, size_t len)
{
	(void)pkt;
	(void)len;
	(*(int *)arg)++;
	return 0;
}

static void test_too_large(void **state)
{
	static const uint8_t small[] = { 0xC0, 0x00 }; /* PINGREQ */
	static const uint8_t hdr[] = { 0x30, 0xC8, 0x01 }; /* remaining length 200 */
	uint8_t pkt[100 + 2] = { 0x30, 98 };
	struct framer f;
	int n = 0;

	(void)state;
	framer_init(&f, 100);
	/* exactly max_packet is accepted */
	assert_int_equal(framer_feed(&f, pkt, 100, count_cb, &n), 0);
	assert_int_equal(n, 1);
	/* one byte more is refused as soon as the length is known, body unseen */
	pkt[1] = 99;
	assert_int_equal(framer_feed(&f, pkt, 2, count_cb, &n), FRAMER_ETOOLARGE);
	assert_int_equal(framer_pending(&f), 0);
	/* a header arriving a byte at a time: refused on its last length byte */
	assert_int_equal(framer_feed(&f, hdr, 1, count_cb, &n), 0);
	assert_int_equal(framer_feed(&f, hdr + 1, 1, count_cb, &n), 0);
	assert_int_equal(framer_feed(&f, hdr + 2, 1, count_cb, &n), FRAMER_ETOOLARGE);
	assert_int_equal(f.cap < 100, 1); /* the body was never buffered */
	framer_free(&f);

	/* packets before the large one in the same chunk are delivered first */
	framer_init(&f, 100);
	n = 0;
	{
		uint8_t chunk[5];

		memcpy(chunk, small, 2);
		memcpy(chunk + 2, hdr, 3);
		assert_int_equal(framer_feed(&f, chunk, 5, count_cb, &n), FRAMER_ETOOLARGE);
		assert_int_equal(n, 1);
	}
	framer_free(&f);
}

static void test_protocol_max(void **state)
{
	static const uint8_t max_hdr[] = { 0x30, 0xFF, 0xFF, 0xFF, 0x7F };
	struct framer f;
	int n = 0;

	(void)state;
	/* max_packet 0: the protocol maximum; the largest length is accepted and not buffered */
	framer_init(&f, 0);
	assert_int_equal(framer_feed(&f, max_hdr, sizeof(max_hdr), count_cb, &n), 0);
	assert_int_equal(framer_pending(&f), 5);
	assert_true(f.cap < 4096);
	framer_free(&f);
	/* a limit one below the largest packet refuses it */
	framer_init(&f, 1 + 4 + 268435455u - 1);
	assert_int_equal(framer_feed(&f, max_hdr, sizeof(max_hdr), count_cb, &n),
			 FRAMER_ETOOLARGE);
	framer_free(&f);
	assert_int_equal(n, 0);
}

static void test_malformed_varint(void **state)
{
	static const uint8_t bad[] = { 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 };
	static const uint8_t bad2[] = { 0x30, 0x80, 0x80, 0x80, 0x80 };
	static const uint8_t ok4[] = { 0x30, 0x80, 0x80, 0x80, 0x00 }; /* 4 bytes: not malformed */
	struct framer f;
	int n = 0;
	size_t i;

	(void)state;
	framer_init(&f, 0);
	/* byte at a time: nothing is wrong until the fifth byte of the packet */
	for (i = 0; i < 4; i++)
		assert_int_equal(framer_feed(&f, bad + i, 1, count_cb, &n), 0);
	assert_int_equal(framer_feed(&f, bad + 4, 1, count_cb, &n), FRAMER_EMALFORMED);
	assert_int_equal(framer_pending(&f), 0);
	/* in one chunk, with or without the byte after it */
	assert_int_equal(framer_feed(&f, bad, 5, count_cb, &n), FRAMER_EMALFORMED);
	assert_int_equal(framer_feed(&f, bad, 6, count_cb, &n), FRAMER_EMALFORMED);
	assert_int_equal(framer_feed(&f, bad2, 5, count_cb, &n), FRAMER_EMALFORMED);
	/* a split after the type byte */
	assert_int_equal(framer_feed(&f, bad2, 1, count_cb, &n), 0);
	assert_int_equal(framer_feed(&f, bad2 + 1, 4, count_cb, &n), FRAMER_EMALFORMED);
	/* a non-minimal 4-byte encoding of 0 is still a complete header */
	assert_int_equal(framer_feed(&f, ok4, 5, count_cb, &n), 0);
	assert_int_equal(n, 1);
	framer_free(&f);
}

static void test_callback_stop(void **state)
{
	struct stream s;
	struct framer f;
	struct collector c;

	(void)state;
	stream_short(&s);
	/* direct path: the second packet stops; the rest of the chunk is dropped */
	memset(&c, 0, sizeof(c));
	c.s = &s;
	c.stop_at = 2;
	framer_init(&f, 0);
	assert_int_equal(feed(&f, &c, 0, s.b.len), 99);
	assert_int_equal(c.got, 2);
	assert_int_equal(framer_pending(&f), 0);
	framer_free(&f);

	/* buffered path: the packet completed from the buffer stops */
	memset(&c, 0, sizeof(c));
	c.s = &s;
	c.stop_at = 3;
	framer_init(&f, 0);
	assert_int_equal(feed(&f, &c, 0, s.off[2] + 10), 0);
	assert_int_equal(c.got, 2);
	assert_int_equal(framer_pending(&f), 10);
	assert_int_equal(feed(&f, &c, s.off[2] + 10, s.b.len - s.off[2] - 10), 99);
	assert_int_equal(c.got, 3);
	assert_int_equal(framer_pending(&f), 0);
	assert_int_equal(c.fail, 0);
	framer_free(&f);
	buf_free(&s.b);
}

static void test_oom(void **state)
{
	struct stream s;
	struct framer f;
	struct collector c = { 0 };

	(void)state;
	stream_short(&s);
	c.s = &s;
	framer_init(&f, 0);
	/* whole packets need no memory */
	mem_fail_after(0);
	assert_int_equal(feed(&f, &c, 0, s.off[2]), 0);
	assert_int_equal(c.got, 2);
	/* a tail to buffer does */
	assert_int_equal(feed(&f, &c, s.off[2], 3), FRAMER_ENOMEM);
	assert_int_equal(framer_pending(&f), 0);
	mem_fail_after(-1);
	framer_free(&f);

	/* growth while completing a buffered packet fails cleanly */
	memset(&c, 0, sizeof(c));
	c.s = &s;
	framer_init(&f, 0);
	/* buffers 2 bytes of a 131-byte packet */
	assert_int_equal(feed(&f, &c, 0, s.off[4] + 2), 0);
	assert_int_equal(framer_pending(&f), 2);
	mem_fail_after(0);
	assert_int_equal(feed(&f, &c, s.off[4] + 2, 100), FRAMER_ENOMEM);
	mem_fail_after(-1);
	assert_int_equal(framer_pending(&f), 0);
	framer_free(&f);

	/* with memory back, the same framer works again */
	memset(&c, 0, sizeof(c));
	c.s = &s;
	framer_init(&f, 0);
	mem_fail_after(1);
	assert_int_equal(feed(&f, &c, 0, s.off[4] + 2), 0);
	mem_fail_after(-1);
	assert_int_equal(feed(&f, &c, s.off[4] + 2, s.b.len - s.off[4] - 2), 0);
	assert_int_equal(c.got, s.n);
	assert_int_equal(c.fail, 0);
	framer_free(&f);
	buf_free(&s.b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole),
		cmocka_unit_test(test_byte_at_a_time),
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_every_pair_of_splits),
		cmocka_unit_test(test_random_chunks),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_protocol_max),
		cmocka_unit_test(test_malformed_varint),
		cmocka_unit_test(test_callback_stop),
		cmocka_unit_test(test_oom),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
