/*
 * test_utf8.c - UTF-8 validation and topic name / filter syntax.
 *
 * The invalid UTF-8 table covers each class the specification forbids
 * [MQTT-1.5.4-1, MQTT-1.5.4-2]; the topic tables are the examples of
 * section 4.7 and 4.8.2.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "topic.h"
#include "utf8.h"

struct bytes {
	const char *what;
	const char *s;
	size_t len;
};

#define B(what, lit) { what, lit, sizeof(lit) - 1 }

static const struct bytes valid_utf8[] = {
	B("empty", ""),
	B("ascii", "hello/world"),
	B("2-byte min U+0080", "\xC2\x80"),
	B("2-byte e-acute", "caf\xC3\xA9"),
	B("2-byte max U+07FF", "\xDF\xBF"),
	B("3-byte min U+0800", "\xE0\xA0\x80"),
	B("3-byte euro", "\xE2\x82\xAC"),
	B("3-byte before surrogates U+D7FF", "\xED\x9F\xBF"),
	B("3-byte after surrogates U+E000", "\xEE\x80\x80"),
	B("3-byte U+FEFF (BOM kept) [MQTT-1.5.4-3]", "\xEF\xBB\xBF"),
	B("3-byte max U+FFFF", "\xEF\xBF\xBF"),
	B("4-byte min U+10000", "\xF0\x90\x80\x80"),
	B("4-byte emoji", "\xF0\x9F\x98\x80"),
	B("4-byte max U+10FFFF", "\xF4\x8F\xBF\xBF"),
	B("control U+0001 allowed", "\x01"),
	B("DEL allowed", "\x7F"),
	B("mixed", "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z"),
};

static const struct bytes invalid_utf8[] = {
	B("U+0000 [MQTT-1.5.4-2]", "a\0b"),
	B("U+0000 alone", "\0"),
	B("overlong 2-byte C0 80 (NUL)", "\xC0\x80"),
	B("overlong 2-byte C1 BF", "\xC1\xBF"),
	B("0xC0 alone", "\xC0"),
	B("0xC1 alone", "\xC1"),
	B("overlong 3-byte E0 80 80", "\xE0\x80\x80"),
	B("overlong 3-byte E0 9F BF (U+07FF)", "\xE0\x9F\xBF"),
	B("overlong 4-byte F0 80 80 80", "\xF0\x80\x80\x80"),
	B("overlong 4-byte F0 8F BF BF (U+FFFF)", "\xF0\x8F\xBF\xBF"),
	B("surrogate U+D800", "\xED\xA0\x80"),
	B("surrogate U+DBFF", "\xED\xAF\xBF"),
	B("surrogate U+DC00", "\xED\xB0\x80"),
	B("surrogate U+DFFF", "\xED\xBF\xBF"),
	B("surrogate pair (CESU-8)", "\xED\xA0\xBD\xED\xB8\x80"),
	B("above U+10FFFF: F4 90 80 80", "\xF4\x90\x80\x80"),
	B("above U+10FFFF: F4 BF BF BF", "\xF4\xBF\xBF\xBF"),
	B("0xF5 lead", "\xF5\x80\x80\x80"),
	B("0xF7 lead", "\xF7\xBF\xBF\xBF"),
	B("0xF8 5-byte lead", "\xF8\x88\x80\x80\x80"),
	B("0xFC 6-byte lead", "\xFC\x84\x80\x80\x80\x80"),
	B("0xFE", "\xFE"),
	B("0xFF", "\xFF"),
	B("truncated 2-byte", "\xC3"),
	B("truncated 3-byte (1 of 2)", "\xE2\x82"),
	B("truncated 3-byte (0 of 2)", "\xE2"),
	B("truncated 4-byte (2 of 3)", "\xF0\x9F\x98"),
	B("truncated 4-byte at end", "abc\xF0\x9F"),
	B("truncated then ascii", "\xE2\x82" "a"),
	B("stray continuation 0x80", "\x80"),
	B("stray continuation 0xBF", "a\xBF" "b"),
	B("continuation after complete char", "\xC3\xA9\xA9"),
	B("bad continuation in 2-byte", "\xC3\x28"),
	B("bad continuation in 4-byte", "\xF0\x9F\x28\x80"),
	B("lead followed by lead", "\xE2\xE2\x82\xAC"),
};

static void test_utf8_valid(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(valid_utf8) / sizeof(valid_utf8[0]); i++) {
		if (utf8_check(valid_utf8[i].s, valid_utf8[i].len) != 0)
			fail_msg("valid rejected: %s", valid_utf8[i].what);
	}
}

static void test_utf8_invalid(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(invalid_utf8) / sizeof(invalid_utf8[0]); i++) {
		if (utf8_check(invalid_utf8[i].s, invalid_utf8[i].len) != -1)
			fail_msg("invalid accepted: %s", invalid_utf8[i].what);
	}
}

/* Every 2-byte lead and every 3-byte E0/ED second byte, against the rule. */
static void test_utf8_exhaustive_boundaries(void **state)
{
	char s[4];
	unsigned a, b;
	uint32_t cp;
	int want;

	(void)state;
	for (a = 0x80; a <= 0xFF; a++) {
		s[0] = (char)a;
		s[1] = (char)0x80;
		want = (a >= 0xC2 && a <= 0xDF) ? 0 : -1;
		if (a >= 0xE0) /* a 3/4-byte lead with one continuation is truncated */
			want = -1;
		assert_int_equal(utf8_check(s, 2), want);
	}
	for (b = 0x80; b <= 0xBF; b++) {
		s[0] = (char)0xED;
		s[1] = (char)b;
		s[2] = (char)0x80;
		cp = 0xD000 | ((b & 0x3F) << 6);
		assert_int_equal(utf8_check(s, 3), (cp >= 0xD800) ? -1 : 0);
		s[0] = (char)0xE0;
		cp = (b & 0x3F) << 6;
		assert_int_equal(utf8_check(s, 3), (cp < 0x800) ? -1 : 0);
	}
}

/* A length shorter than the buffer is honoured: bytes after it are not read. */
static void test_utf8_len_bounds(void **state)
{
	(void)state;
	assert_int_equal(utf8_check("ab\xFF", 2), 0);
	assert_int_equal(utf8_check("\xC3\xA9", 1), -1);
	assert_int_equal(utf8_check(NULL, 0), 0);
}

/* Long ASCII runs are checked 8 bytes at a time: a NUL, a stray continuation
 * byte, a wildcard (in a topic name) or a good multi-byte character at any
 * offset is still seen. */
static void test_utf8_every_offset(void **state)
{
	char s[40];
	size_t i, len;

	(void)state;
	for (len = 1; len <= sizeof(s); len++) {
		memset(s, 'a', sizeof(s));
		assert_int_equal(utf8_check(s, len), 0);
		for (i = 0; i < len; i++) {
			memset(s, 'a', sizeof(s));
			s[i] = '\0';
			assert_int_equal(utf8_check(s, len), -1);
			s[i] = (char)0x80;
			assert_int_equal(utf8_check(s, len), -1);
			s[i] = 0x7F;
			assert_int_equal(utf8_check(s, len), 0);
			assert_true(topic_name_valid(s, len));
			s[i] = '+';
			assert_false(topic_name_valid(s, len));
			s[i] = '#';
			assert_false(topic_name_valid(s, len));
			assert_int_equal(utf8_check(s, len), 0);
			if (i + 1 < len) {
				s[i] = (char)0xC3;
				s[i + 1] = (char)0xA9;
				assert_int_equal(utf8_check(s, len), 0);
				assert_true(topic_name_valid(s, len));
				s[i] = '\0';
				assert_false(topic_name_valid(s, len));
			}
		}
	}
}

static void test_topic_name(void **state)
{
	(void)state;
	assert_true(topic_name_valid("sport/tennis", 12));
	assert_true(topic_name_valid("/finance", 8));
	assert_true(topic_name_valid("/", 1));
	assert_true(topic_name_valid("$SYS/broker/load", 16));
	assert_true(topic_name_valid("a//b", 4));
	assert_true(topic_name_valid("caf\xC3\xA9", 5));
	assert_true(topic_name_valid("sport tennis", 12)); /* spaces allowed */
	assert_false(topic_name_valid("", 0)); /* [MQTT-4.7.3-1] */
	assert_false(topic_name_valid("sport/+", 7)); /* [MQTT-3.3.2-2] */
	assert_false(topic_name_valid("sport/#", 7));
	assert_false(topic_name_valid("sp+rt", 5));
	assert_false(topic_name_valid("#", 1));
	assert_false(topic_name_valid("a\0b", 3)); /* [MQTT-4.7.3-2] */
	assert_false(topic_name_valid("\xC0\x80", 2));
	assert_false(topic_name_valid("\xED\xA0\x80", 3));
}

struct filter_case {
	const char *f;
	bool valid;
};

static const struct filter_case filters[] = {
	/* section 4.7.1.2 */
	{ "sport/tennis/player1/#", true },
	{ "sport/tennis/#", true },
	{ "sport/#", true },
	{ "#", true },
	{ "sport/tennis#", false },
	{ "sport/tennis/#/ranking", false },
	{ "sport/#/ranking", false },
	{ "##", false },
	{ "#/", false },
	/* section 4.7.1.3 */
	{ "+", true },
	{ "+/tennis/#", true },
	{ "sport/+/player1", true },
	{ "sport+", false },
	{ "+sport", false },
	{ "sport/+x", false },
	{ "++", false },
	{ "+/+", true },
	{ "/+", true },
	{ "+/", true },
	{ "sport/+/#", true },
	{ "+#", false },
	{ "#+", false },
	/* section 4.7.1.1 and 4.7.2 */
	{ "/finance", true },
	{ "/", true },
	{ "//", true },
	{ "$SYS/#", true },
	{ "$SYS/monitor/+", true },
	{ "", false }, /* [MQTT-4.7.3-1] */
	/* shared subscriptions, section 4.8.2 */
	{ "$share/g/f", true },
	{ "$share/consumer1/sport/tennis/+", true },
	{ "$share/g/#", true },
	{ "$share/g/+", true },
	{ "$share/g//", true },
	{ "$share/g", false }, /* no filter [MQTT-4.8.2-2] */
	{ "$share/g/", false },
	{ "$share//f", false }, /* empty group [MQTT-4.8.2-1] */
	{ "$share/", false },
	{ "$share/g+/f", false }, /* [MQTT-4.8.2-2] */
	{ "$share/+/f", false },
	{ "$share/g#/x", false },
	{ "$share/#/x", false },
	{ "$share/g/sport#", false },
	{ "$share/g/a/#/b", false },
	{ "$share", true }, /* no '/': an ordinary filter */
	{ "$sharex/g/f", true },
};

static void test_topic_filter(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(filters) / sizeof(filters[0]); i++) {
		if (topic_filter_valid(filters[i].f, strlen(filters[i].f)) != filters[i].valid)
			fail_msg("filter \"%s\": expected %s", filters[i].f,
				 filters[i].valid ? "valid" : "invalid");
	}
	assert_false(topic_filter_valid("a\0b", 3)); /* [MQTT-4.7.3-2] */
	assert_false(topic_filter_valid("a/\xFF", 3));
	assert_false(topic_filter_valid("$share/g\xC0\x80/f", 11));
	assert_true(topic_filter_valid("caf\xC3\xA9/+", 7));
	/* the length bounds the filter: "a/#x" cut to "a/#" */
	assert_true(topic_filter_valid("a/#x", 3));
}

static void test_share_split(void **state)
{
	const char *g = NULL, *f = NULL;
	size_t gl = 0, fl = 0;
	const char *s = "$share/grp/sport/+/x";

	(void)state;
	assert_true(topic_share_split(s, strlen(s), &g, &gl, &f, &fl));
	assert_ptr_equal(g, s + 7);
	assert_int_equal(gl, 3);
	assert_ptr_equal(f, s + 11);
	assert_int_equal(fl, 9);
	assert_memory_equal(f, "sport/+/x", 9);

	assert_true(topic_share_split("$share/g/#", 10, &g, &gl, &f, &fl));
	assert_int_equal(gl, 1);
	assert_int_equal(fl, 1);
	assert_int_equal(f[0], '#');

	assert_false(topic_share_split("sport/x", 7, &g, &gl, &f, &fl));
	assert_false(topic_share_split("$share/g", 8, &g, &gl, &f, &fl));
	assert_false(topic_share_split("$share//f", 9, &g, &gl, &f, &fl));
	assert_false(topic_share_split("$share/g+/f", 11, &g, &gl, &f, &fl));
	assert_false(topic_share_split("$share/g#/x", 11, &g, &gl, &f, &fl));
	assert_false(topic_share_split("$share/g/a+", 11, &g, &gl, &f, &fl));
	assert_false(topic_share_split("$shar", 5, &g, &gl, &f, &fl));
	assert_false(topic_share_split("$share/g/\xFF", 10, &g, &gl, &f, &fl));
}

static void test_has_wildcard(void **state)
{
	(void)state;
	assert_true(topic_filter_has_wildcard("a/+", 3));
	assert_true(topic_filter_has_wildcard("#", 1));
	assert_true(topic_filter_has_wildcard("a/+/#", 5));
	assert_false(topic_filter_has_wildcard("a/b", 3));
	assert_false(topic_filter_has_wildcard("a/#", 2)); /* the length bounds it */
	assert_false(topic_filter_has_wildcard("", 0));
	assert_false(topic_filter_has_wildcard("$share/g/x", 10));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_valid),
		cmocka_unit_test(test_utf8_invalid),
		cmocka_unit_test(test_utf8_exhaustive_boundaries),
		cmocka_unit_test(test_utf8_len_bounds),
		cmocka_unit_test(test_utf8_every_offset),
		cmocka_unit_test(test_topic_name),
		cmocka_unit_test(test_topic_filter),
		cmocka_unit_test(test_share_split),
		cmocka_unit_test(test_has_wildcard),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
