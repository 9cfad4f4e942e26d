/*
 * test_buf.c - the growable buffer and the MQTT primitive encodings.
 *
 * Variable byte integers are checked at every boundary where the encoded
 * size changes (section 1.5.5), strings at the 65535-byte limit (section
 * 1.5.4), and every append under an allocation failure must leave the
 * buffer exactly as it was.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"
#include "mem.h"

struct varint_case {
	uint32_t v;
	int size;
	uint8_t bytes[4];
};

static const struct varint_case varints[] = {
	{ 0, 1, { 0x00 } },
	{ 1, 1, { 0x01 } },
	{ 127, 1, { 0x7F } },
	{ 128, 2, { 0x80, 0x01 } },
	{ 321, 2, { 0xC1, 0x02 } },
	{ 16383, 2, { 0xFF, 0x7F } },
	{ 16384, 3, { 0x80, 0x80, 0x01 } },
	{ 2097151, 3, { 0xFF, 0xFF, 0x7F } },
	{ 2097152, 4, { 0x80, 0x80, 0x80, 0x01 } },
	{ 268435455, 4, { 0xFF, 0xFF, 0xFF, 0x7F } },
};

static void test_varint(void **state)
{
	struct buf b;
	size_t i;

	(void)state;
	buf_init(&b);
	for (i = 0; i < sizeof(varints) / sizeof(varints[0]); i++) {
		buf_reset(&b);
		assert_int_equal(buf_varint_size(varints[i].v), varints[i].size);
		assert_int_equal(buf_put_varint(&b, varints[i].v), 0);
		assert_int_equal(b.len, (size_t)varints[i].size);
		assert_memory_equal(b.data, varints[i].bytes, (size_t)varints[i].size);
	}
	buf_free(&b);
}

/* Above the four-byte maximum nothing is written. */
static void test_varint_too_large(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	assert_int_equal(buf_put_u8(&b, 0xAA), 0);
	assert_int_equal(buf_put_varint(&b, 268435456u), -1);
	assert_int_equal(buf_put_varint(&b, UINT32_MAX), -1);
	assert_int_equal(b.len, 1);
	buf_free(&b);
}

static void test_ints(void **state)
{
	static const uint8_t want[] = { 0x12, 0xAB, 0xCD, 0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x00 };
	struct buf b;

	(void)state;
	buf_init(&b);
	assert_int_equal(buf_put_u8(&b, 0x12), 0);
	assert_int_equal(buf_put_u16(&b, 0xABCD), 0);
	assert_int_equal(buf_put_u32(&b, 0xDEADBEEF), 0);
	assert_int_equal(buf_put_u16(&b, 0), 0);
	assert_int_equal(b.len, sizeof(want));
	assert_memory_equal(b.data, want, sizeof(want));
	buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
}

static void test_put_str(void **state)
{
	static char big[65536];
	struct buf b;

	(void)state;
	memset(big, 'x', sizeof(big));
	buf_init(&b);
	assert_int_equal(buf_put_str(&b, "", 0), 0);
	assert_int_equal(b.len, 2);
	assert_memory_equal(b.data, "\0\0", 2);
	buf_reset(&b);
	assert_int_equal(buf_put_str(&b, "MQTT", 4), 0);
	assert_int_equal(b.len, 6);
	assert_memory_equal(b.data, "\0\4MQTT", 6);
	/* 65535 bytes is the limit; one more is refused and nothing is written */
	buf_reset(&b);
	assert_int_equal(buf_put_str(&b, big, 65535), 0);
	assert_int_equal(b.len, 65537);
	assert_int_equal(b.data[0], 0xFF);
	assert_int_equal(b.data[1], 0xFF);
	assert_int_equal(b.data[65536], 'x');
	assert_int_equal(buf_put_str(&b, big, 65536), -1);
	assert_int_equal(b.len, 65537);
	buf_free(&b);
}

static void test_consume(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	buf_consume(&b, 0); /* empty: nothing to do */
	assert_int_equal(buf_put(&b, "abcdef", 6), 0);
	buf_consume(&b, 0);
	assert_int_equal(b.len, 6);
	buf_consume(&b, 2);
	assert_int_equal(b.len, 4);
	assert_memory_equal(b.data, "cdef", 4);
	buf_consume(&b, 3);
	assert_int_equal(b.len, 1);
	assert_int_equal(b.data[0], 'f');
	buf_consume(&b, 1);
	assert_int_equal(b.len, 0);
	assert_int_equal(buf_put(&b, "xy", 2), 0);
	buf_consume(&b, 10); /* more than held: empties */
	assert_int_equal(b.len, 0);
	buf_free(&b);
}

static void test_reserve(void **state)
{
	struct buf b;
	uint8_t *p;
	size_t cap;

	(void)state;
	buf_init(&b);
	assert_int_equal(buf_reserve(&b, 0), 0);
	assert_int_equal(buf_reserve(&b, 100), 0);
	assert_true(b.cap >= 100);
	assert_int_equal(b.len, 0);
	/* within capacity: no move, no allocation */
	p = b.data;
	cap = b.cap;
	mem_fail_after(0);
	assert_int_equal(buf_reserve(&b, cap), 0);
	assert_int_equal(buf_put(&b, "abc", 3), 0);
	mem_fail_after(-1);
	assert_ptr_equal(b.data, p);
	assert_int_equal(b.cap, cap);
	/* growth keeps the contents */
	assert_int_equal(buf_reserve(&b, 10 * cap), 0);
	assert_true(b.cap >= 3 + 10 * cap);
	assert_memory_equal(b.data, "abc", 3);
	/* a size that would wrap is refused, not looped on */
	assert_int_equal(buf_reserve(&b, SIZE_MAX), -1);
	assert_int_equal(buf_reserve(&b, SIZE_MAX - 2), -1);
	assert_int_equal(b.len, 3);
	/* reset keeps the capacity */
	cap = b.cap;
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, cap);
	buf_free(&b);
}

static void test_oom(void **state)
{
	struct buf b;
	uint8_t *p;
	size_t cap;
	static uint8_t big[1000];

	(void)state;
	buf_init(&b);
	mem_fail_after(0);
	assert_int_equal(buf_put_u8(&b, 1), -1);
	assert_int_equal(buf_put_str(&b, "ab", 2), -1);
	assert_int_equal(buf_put_varint(&b, 300), -1);
	mem_fail_after(-1);
	assert_null(b.data);
	assert_int_equal(b.len, 0);

	assert_int_equal(buf_put(&b, "hello", 5), 0);
	p = b.data;
	cap = b.cap;
	mem_fail_after(0);
	assert_int_equal(buf_put(&b, big, sizeof(big)), -1);
	assert_int_equal(buf_put_str(&b, big, sizeof(big)), -1);
	assert_int_equal(buf_put_u32(&b, 7), 0); /* fits: no allocation needed */
	mem_fail_after(-1);
	/* the failed appends left the buffer as it was */
	assert_ptr_equal(b.data, p);
	assert_int_equal(b.cap, cap);
	assert_int_equal(b.len, 9);
	assert_memory_equal(b.data, "hello\0\0\0\7", 9);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_varint),
		cmocka_unit_test(test_varint_too_large),
		cmocka_unit_test(test_ints),
		cmocka_unit_test(test_put_str),
		cmocka_unit_test(test_consume),
		cmocka_unit_test(test_reserve),
		cmocka_unit_test(test_oom),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
