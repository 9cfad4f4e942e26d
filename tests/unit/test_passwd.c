/*
 * test_passwd.c - mosquitto's password file (passwd.c).
 *
 * Fixed vectors: lines written by Debian 12's mosquitto_passwd 2.0.11
 * ($7$ with 1, 101 and 1000 iterations, an empty and a non-ASCII password,
 * and a $6$ from -H sha512), a $6$ computed with Python's hashlib (SHA-512
 * of the password's bytes then the salt's), and RFC 6070-style PBKDF2-
 * HMAC-SHA512 answers from hashlib. Then every hash pw_parse_hash refuses,
 * once directly and once through pw_load (the message must name the file
 * and the line), the lines pw_load skips or refuses, pw_find's search among
 * names that are prefixes of each other, and pw_format_line's output, which
 * must be byte for byte mosquitto_passwd's for the same salt.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "temp_file.h"

#include "mem.h"
#include "passwd.h"

/* --- vectors ------------------------------------------------------------------ */

struct vector {
	const char *line; /* as mosquitto_passwd (or Python) wrote it */
	const char *password;
	enum pw_kind kind;
	uint32_t iterations;
};

/* mosquitto_passwd -c -b, -b, -I N -b, -H sha512 -b (Debian 12, 2.0.11) */
static const struct vector vectors[] = {
	{ "user:$7$101$WzD8Ry+MQsckU/kf$Pl27SeeT5+tMqONU7CT3Ez+QvNq43MCwuDsuv9umzsWU+k/"
	  "GXntbJ/Ar64u88irvvuyW9cBdcoYjhmzZKca7Pw==",
	  "pass", PW_PBKDF2_SHA512, 101 },
	{ "alice:$7$101$V9+3VPWwIwcLLW4V$iJ1A5baeCAC2c9oNh0sH5ROaU5+LFOJN46+HClg5XjLvTchmQOHTvH+"
	  "HpHyFpNn8yWhMqaJIJ36g6fPpeZ4oag==",
	  "correct horse battery staple", PW_PBKDF2_SHA512, 101 },
	{ "bob:$7$1000$8KmqJrkGbGXTjQz3$jP8qE5xeWvgiELPk+t8MYqFdhcpRcBBTdY52NNd7zigtA/"
	  "7XD6I1yXGeEXKaEjk7tBgoHy8rIlqV5unBcWecLA==",
	  "P\xc3\xa4ssw\xc3\xb6rd\xe2\x82\xac", PW_PBKDF2_SHA512, 1000 },
	{ "empty:$7$101$P/YT2C9k9Ca1spZ6$38aU15l22jc2FHw2AUNIBZNdbta55Dzf3UBwTsrwAmKLIGGds19lz8cog9pi/"
	  "ZS4Ibp3uZLc60xfAWT1X9Ri6w==",
	  "", PW_PBKDF2_SHA512, 101 },
	{ "one:$7$1$OwrR310Yswo81eY4$NQ5MCsnK4J3DvX/U7JoXLLpe0eYq/tGdZ5mcE727TFQEIkm+f/N/"
	  "TkHz3sRNSSrRhNQrps2ll6Six9yv/mqNew==",
	  "x", PW_PBKDF2_SHA512, 1 },
	{ "old:$6$H1kKgnsCwTt47/oQ$53GE2UPAa0Z0qAFFKWn5zv/zk4No0/PDqVgYLbgRgBkvwE81BaGm5sold2mCd04Q3GIYWfH63Xm7M8wBZnqKLA==",
	  "legacy pw", PW_SHA512, 0 },
	/* Python: salt bytes 1..12, base64.b64encode(sha512(b"sixsix" + salt)) */
	{ "six:$6$AQIDBAUGBwgJCgsM$d+uFIZoDkQM9oGLyPr3aSLybbRwO+zl5a1jNr1wppWO4oXz7XXc0+DK5uzMEXO/"
	  "1ognQ3WQRWPhZ3/qvswlxkw==",
	  "sixsix", PW_SHA512, 0 },
	/* Python: base64 (passlib's adapted form) of hashlib.pbkdf2_hmac("sha256", b"pencil",
	 * b"sluice-salt!", 4096) */
	{ "scram:$pbkdf2-sha256$4096$c2x1aWNlLXNhbHQh$jK/3rA8715N7Feqhrc30WjJILi6iX.1c4Zqjjmtev5s",
	  "pencil", PW_PBKDF2_SHA256, 4096 },
	/* Debian's argon2 tool: echo -n hunter2 | argon2 sluicesalt12 -id -t 2 -m 12 -p 1 -e */
	{ "argon:$argon2id$v=19$m=4096,t=2,p=1$c2x1aWNlc2FsdDEy$"
	  "wNcwC1CqsOl4rY27SJJexjvwgyOwL5T9RyQ+KK7POrs",
	  "hunter2", PW_ARGON2ID, 2 },
};
#define NVECTORS (sizeof(vectors) / sizeof(vectors[0]))

/* A valid hash to build other lines with (user's, password "pass"). */
#define GOOD_HASH                                        \
	"$7$101$WzD8Ry+MQsckU/kf$Pl27SeeT5+tMqONU7CT3Ez" \
	"+QvNq43MCwuDsuv9umzsWU+k/GXntbJ/Ar64u88irvvuyW9cBdcoYjhmzZKca7Pw=="
#define GOOD_B64_HASH                                                 \
	"Pl27SeeT5+tMqONU7CT3Ez+QvNq43MCwuDsuv9umzsWU+k/GXntbJ/Ar64u" \
	"88irvvuyW9cBdcoYjhmzZKca7Pw=="

/* --- helpers ------------------------------------------------------------------ */

static char path[64];
static char err[512];

/* Writes len bytes of text to a new temporary file (its name in path). */
static void write_file(const char *text, size_t len)
{
	temp_file_write(path, sizeof(path), text, len);
}

static struct pw_table *load_text(const char *text)
{
	struct pw_table *t;

	write_file(text, strlen(text));
	err[0] = '\0';
	t = pw_load(path, err, sizeof(err));
	unlink(path);
	return t;
}

/* The text must fail to load with exactly "PATH" + rest as the message. */
static void load_fails(const char *text, size_t len, const char *rest)
{
	char want[600];
	struct pw_table *t;

	write_file(text, len);
	err[0] = '\0';
	t = pw_load(path, err, sizeof(err));
	unlink(path);
	if (t) {
		pw_free(t);
		fail_msg("loaded, want '%s'", rest);
	}
	snprintf(want, sizeof(want), "%s%s", path, rest);
	assert_string_equal(err, want);
}

static void parse_ok(const char *hash, struct pw_entry *e)
{
	const char *why = NULL;

	memset(e, 0, sizeof(*e));
	if (pw_parse_hash(hash, e, &why))
		fail_msg("'%s' refused: %s", hash, why);
}

static const struct pw_entry *find(const struct pw_table *t, const char *name)
{
	return pw_find(t, name, strlen(name));
}

static bool verify(const struct pw_entry *e, const char *password)
{
	return pw_verify(e, password, strlen(password));
}

/* --- mosquitto_passwd's and Python's hashes ----------------------------------- */

static void test_vectors_parse_and_verify(void **state)
{
	for (size_t i = 0; i < NVECTORS; i++) {
		const struct vector *v = &vectors[i];
		struct pw_entry e;

		parse_ok(strchr(v->line, ':') + 1, &e);
		assert_int_equal(e.kind, v->kind);
		assert_int_equal(e.iterations, v->iterations);
		assert_int_equal(e.salt_len, 12);
		assert_true(verify(&e, v->password));
	}
}

static void test_vectors_wrong_passwords(void **state)
{
	for (size_t i = 0; i < NVECTORS; i++) {
		const struct vector *v = &vectors[i];
		size_t n = strlen(v->password);
		char other[64];
		struct pw_entry e;

		parse_ok(strchr(v->line, ':') + 1, &e);
		snprintf(other, sizeof(other), "%sx", v->password);
		assert_false(verify(&e, other));
		if (n) {
			assert_false(pw_verify(&e, v->password, n - 1));
			memcpy(other, v->password, n + 1);
			other[0] ^= 0x20; /* one bit of the first byte */
			assert_false(verify(&e, other));
		} else {
			assert_false(verify(&e, " "));
		}
	}
}

/* The $6$ salt is the bytes Python was given, decoded exactly. */
static void test_sha512_salt_bytes(void **state)
{
	static const unsigned char salt[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	struct pw_entry e;

	parse_ok(strchr(vectors[6].line, ':') + 1, &e);
	assert_memory_equal(e.salt, salt, sizeof(salt));
	assert_int_equal(e.hash[0], 0x77); /* base64 "d+uF..." */
	assert_int_equal(e.hash[1], 0xeb);
	assert_int_equal(e.hash[63], 0x93);
}

/* PBKDF2-HMAC-SHA512("password", "salt", c) from Python's hashlib.pbkdf2_hmac. */
static void test_pbkdf2_known_answers(void **state)
{
	static const unsigned char c1[16] = { 0x86, 0x7f, 0x70, 0xcf, 0x1a, 0xde, 0x02, 0xcf,
					      0xf3, 0x75, 0x25, 0x99, 0xa3, 0xa5, 0x3d, 0xc4 };
	static const unsigned char c1_end[4] = { 0x60, 0xa5, 0x7f, 0xce };
	static const unsigned char c2[8] = { 0xe1, 0xd9, 0xc1, 0x6a, 0xa6, 0x81, 0x70, 0x8a };
	unsigned char out[PW_HASH_LEN];

	assert_int_equal(pw_pbkdf2(PW_PBKDF2_SHA512, "password", 8, (const unsigned char *)"salt",
				   4, 1, out),
			 0);
	assert_memory_equal(out, c1, sizeof(c1));
	assert_memory_equal(out + 60, c1_end, sizeof(c1_end));
	assert_int_equal(pw_pbkdf2(PW_PBKDF2_SHA512, "password", 8, (const unsigned char *)"salt",
				   4, 2, out),
			 0);
	assert_memory_equal(out, c2, sizeof(c2));
}

/* PBKDF2-HMAC-SHA256("password", "salt", c): RFC 7914 section 11, and Python's hashlib. */
static void test_pbkdf2_sha256_known_answers(void **state)
{
	static const unsigned char c1[8] = { 0x12, 0x0f, 0xb6, 0xcf, 0xfc, 0xf8, 0xb3, 0x2c };
	static const unsigned char c1_end[4] = { 0xb7, 0x0b, 0xe1, 0x7b };
	static const unsigned char c2[8] = { 0xae, 0x4d, 0x0c, 0x95, 0xaf, 0x6b, 0x46, 0xd3 };
	unsigned char out[PW_HASH_LEN];

	memset(out, 0xee, sizeof(out));
	assert_int_equal(pw_pbkdf2(PW_PBKDF2_SHA256, "password", 8, (const unsigned char *)"salt",
				   4, 1, out),
			 0);
	assert_memory_equal(out, c1, sizeof(c1));
	assert_memory_equal(out + 28, c1_end, sizeof(c1_end));
	assert_int_equal(out[32], 0xee); /* 32 bytes only */
	assert_int_equal(pw_pbkdf2(PW_PBKDF2_SHA256, "password", 8, (const unsigned char *)"salt",
				   4, 2, out),
			 0);
	assert_memory_equal(out, c2, sizeof(c2));
}

/* All vectors as one file, as a broker would read it. */
static void test_vectors_as_a_file(void **state)
{
	char text[2048] = "";
	struct pw_table *t;

	for (size_t i = 0; i < NVECTORS; i++) {
		strcat(text, vectors[i].line);
		strcat(text, "\n");
	}
	t = load_text(text);
	if (!t)
		fail_msg("%s", err);
	assert_int_equal(pw_count(t), NVECTORS);
	for (size_t i = 0; i < NVECTORS; i++) {
		char name[16];
		const struct pw_entry *e;

		snprintf(name, sizeof(name), "%.*s",
			 (int)(strchr(vectors[i].line, ':') - vectors[i].line), vectors[i].line);
		e = find(t, name);
		assert_non_null(e);
		assert_string_equal(e->username, name);
		assert_true(verify(e, vectors[i].password));
		assert_false(verify(e, "not it"));
	}
	pw_free(t);
}

static void test_unknown_user(void **state)
{
	struct pw_table *t = load_text("user:" GOOD_HASH "\n");

	assert_non_null(t);
	assert_null(find(t, "nobody"));
	assert_null(find(t, "User"));
	assert_null(find(t, ""));
	assert_false(verify(NULL, "pass")); /* the dummy hash runs, and fails */
	assert_false(verify(NULL, ""));
	assert_true(verify(find(t, "user"), "pass"));
	assert_null(pw_find(NULL, "user", 4));
	assert_int_equal(pw_count(NULL), 0);
	pw_free(t);
}

/* --- pw_find ------------------------------------------------------------------ */

static void test_find_prefixes(void **state)
{
	static const char *names[] = { "abc", "a", "ab", "b", "abd", "aba", "ba", "abcd" };
	char text[4096] = "";
	struct pw_table *t;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		strcat(text, names[i]);
		strcat(text, ":" GOOD_HASH "\n");
	}
	t = load_text(text);
	if (!t)
		fail_msg("%s", err);
	assert_int_equal(pw_count(t), 8);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_string_equal(find(t, names[i])->username, names[i]);
	assert_string_equal(pw_find(t, "abcd", 2)->username, "ab"); /* ulen counts, not the NUL */
	assert_string_equal(pw_find(t, "abcd", 3)->username, "abc");
	assert_string_equal(pw_find(t, "bx", 1)->username, "b");
	assert_null(find(t, "abcde"));
	assert_null(find(t, "abb"));
	assert_null(find(t, "aa"));
	assert_null(find(t, "c"));
	assert_null(find(t, "0"));
	assert_null(pw_find(t, "ab\0c", 4)); /* no name of the file holds a NUL */
	assert_null(pw_find(t, "a\0", 2));
	pw_free(t);
}

/* Many names, u0..u299 (u1 < u10 < u100 < u101 ...): each is found, near misses are not. */
static void test_find_many(void **state)
{
	size_t cap = 300 * 160, len = 0;
	char *text = malloc(cap), name[16];
	struct pw_table *t;

	assert_non_null(text);
	for (int i = 299; i >= 0; i--)
		len += (size_t)snprintf(text + len, cap - len, "u%d:" GOOD_HASH "\n", i);
	t = load_text(text);
	free(text);
	if (!t)
		fail_msg("%s", err);
	assert_int_equal(pw_count(t), 300);
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "u%d", i);
		assert_string_equal(find(t, name)->username, name);
		snprintf(name, sizeof(name), "u%d_", i);
		assert_null(find(t, name));
	}
	assert_null(find(t, "u"));
	assert_null(find(t, "u300"));
	pw_free(t);
}

/* --- what pw_parse_hash refuses ----------------------------------------------- */

struct bad {
	const char *hash;
	const char *why; /* the reason, exactly */
};

#define NOT_HASH "not a mosquitto_passwd hash ($7$... or $6$...) nor $pbkdf2-sha256$..."
#define BAD_ITER "the iteration count is not a number from 1 to 10000000"
#define BAD_HASH32 "the hash is not base64 of 32 bytes"
#define P256 "$pbkdf2-sha256$4096$c2x1aWNlLXNhbHQh$"
#define HASH32 "jK/3rA8715N7Feqhrc30WjJILi6iX.1c4Zqjjmtev5s"
#define ARGON_TAIL "c2x1aWNlc2FsdDEy$wNcwC1CqsOl4rY27SJJexjvwgyOwL5T9RyQ+KK7POrs"
#define ARGON_PARAMS "$argon2id$: not v=19$m=KIB,t=PASSES,p=LANES$ (m 8..1048576, t >= 1, p 1..64)"
#define ARGON_SIZES \
	"$argon2id$: the salt must be unpadded base64 of 8 to 64 bytes, the hash of 4 to 64"
#define NO_DOLLAR "no '$' between salt and hash"
#define BAD_SALT "the salt is not base64 (of at most 64 bytes)"
#define BAD_HASH "the hash is not base64 of 64 bytes"
#define SALT "WzD8Ry+MQsckU/kf"
/* base64 of 65 zero bytes (one too many for the salt) */
#define SALT65                                                                                 \
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" \
	"AAA="
/* base64 of 64 zero bytes (the most salt we take) */
#define SALT64                                                                                 \
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" \
	"AA=="
/* base64 of 63 zero bytes, and a 64-byte hash without its padding */
#define B63 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define UNPADDED                                                      \
	"Pl27SeeT5+tMqONU7CT3Ez+QvNq43MCwuDsuv9umzsWU+k/GXntbJ/Ar64u" \
	"88irvvuyW9cBdcoYjhmzZKca7Pw"

static const struct bad bads[] = {
	{ "", NOT_HASH },
	{ "pass", NOT_HASH },
	{ "$5$" SALT "$" GOOD_B64_HASH, NOT_HASH },
	{ "$7", NOT_HASH },
	{ "7$101$" SALT "$" GOOD_B64_HASH, NOT_HASH },
	{ "$$101$" SALT "$" GOOD_B64_HASH, NOT_HASH },
	{ "$7$$" SALT "$" GOOD_B64_HASH, BAD_ITER },
	{ "$7$0$" SALT "$" GOOD_B64_HASH, BAD_ITER },
	{ "$7$10000001$" SALT "$" GOOD_B64_HASH, BAD_ITER },
	{ "$7$99999999999999999999$" SALT "$" GOOD_B64_HASH, BAD_ITER },
	{ "$7$-1$" SALT "$" GOOD_B64_HASH, BAD_ITER },
	{ "$7$+101$" SALT "$" GOOD_B64_HASH, BAD_ITER },
	{ "$7$ 101$" SALT "$" GOOD_B64_HASH, BAD_ITER },
	{ "$7$1e3$" SALT "$" GOOD_B64_HASH, BAD_ITER },
	{ "$7$0x10$" SALT "$" GOOD_B64_HASH, BAD_ITER },
	{ "$7$101", BAD_ITER },
	{ "$7$", BAD_ITER },
	{ "$7$101$" SALT, NO_DOLLAR },
	{ "$7$101$", NO_DOLLAR },
	{ "$6$" SALT, NO_DOLLAR },
	{ "$6$", NO_DOLLAR },
	{ "$6$$" GOOD_B64_HASH, BAD_SALT },
	{ "$7$101$$" GOOD_B64_HASH, BAD_SALT },
	{ "$6$WzD8Ry+MQsck!/kf$" GOOD_B64_HASH, BAD_SALT },
	{ "$6$WzD8 Ry+M$" GOOD_B64_HASH, BAD_SALT },
	{ "$6$WzD8Ry+MQsckU/k$" GOOD_B64_HASH, BAD_SALT }, /* 15 chars: a truncated salt */
	{ "$6$WzD8Ry+MQsckU/kfA$" GOOD_B64_HASH, BAD_SALT },
	{ "$6$A===$" GOOD_B64_HASH, BAD_SALT },
	{ "$6$====$" GOOD_B64_HASH, BAD_SALT },
	{ "$6$AA=A$" GOOD_B64_HASH, BAD_SALT },
	{ "$6$" SALT65 "$" GOOD_B64_HASH, BAD_SALT },
	{ "$6$" SALT "$", BAD_HASH },
	{ "$7$101$" SALT "$", BAD_HASH },
	{ "$6$" SALT "$" SALT, BAD_HASH }, /* 12 bytes */
	{ "$6$" SALT "$" B63, BAD_HASH },
	{ "$6$" SALT "$" SALT65, BAD_HASH },
	{ "$6$" SALT "$" UNPADDED, BAD_HASH },
	{ "$6$" SALT "$" GOOD_B64_HASH "$", BAD_HASH },
	{ "$6$" SALT "$" GOOD_B64_HASH "$x", BAD_HASH },
	{ "$6$" SALT "$" GOOD_B64_HASH "A", BAD_HASH },
	{ "$6$" SALT "$" GOOD_B64_HASH " x", BAD_HASH },
	{ "$6$" SALT "$!" GOOD_B64_HASH, BAD_HASH },
	{ "$7$101$" SALT "$" SALT "$" GOOD_B64_HASH, BAD_HASH },
	{ "$pbkdf2-sha256$", BAD_ITER },
	{ "$pbkdf2-sha256$0$c2x1aWNlLXNhbHQh$" HASH32, BAD_ITER },
	{ "$pbkdf2-sha256$4096$c2x1aWNlLXNhbHQh", NO_DOLLAR },
	{ "$pbkdf2-sha256$4096$c2x1aW+lLXNhbHQh$" HASH32, BAD_SALT }, /* '+' is '.' here */
	{ "$pbkdf2-sha256$4096$c2x1aWNlLXNhbHQ=$" HASH32, BAD_SALT }, /* no padding here */
	{ "$pbkdf2-sha256$4096$c2x1a$" HASH32, BAD_SALT }, /* 5 chars: no whole byte */
	{ P256, BAD_HASH32 },
	{ P256 "jK/3rA8715N7Feqhrc30WjJILi6iX.1c4Zqjjmtev5", BAD_HASH32 },
	{ P256 HASH32 "AA", BAD_HASH32 },
	{ P256 GOOD_B64_HASH, BAD_HASH32 }, /* 64 bytes, and '=' */
	{ "$pbkdf2-sha512$4096$c2x1aWNlLXNhbHQh$" HASH32, NOT_HASH },
	{ "$argon2id$v=16$m=4096,t=2,p=1$" ARGON_TAIL, ARGON_PARAMS },
	{ "$argon2id$v=19$m=4,t=2,p=1$" ARGON_TAIL, ARGON_PARAMS },
	{ "$argon2id$v=19$m=2097152,t=2,p=1$" ARGON_TAIL, ARGON_PARAMS },
	{ "$argon2id$v=19$m=4096,t=0,p=1$" ARGON_TAIL, ARGON_PARAMS },
	{ "$argon2id$v=19$m=4096,t=2,p=0$" ARGON_TAIL, ARGON_PARAMS },
	{ "$argon2id$v=19$m=4096,t=2$" ARGON_TAIL, ARGON_PARAMS },
	{ "$argon2id$v=19$t=2,m=4096,p=1$" ARGON_TAIL, ARGON_PARAMS },
	{ "$argon2id$v=19$m=4096,t=2,p=1$c2x1aWNl$wNcwC1CqsOl4rY27SJJexjvwgyOwL5T9RyQ+KK7POrs",
	  ARGON_SIZES }, /* a 6-byte salt */
	{ "$argon2id$v=19$m=4096,t=2,p=1$c2x1aWNlc2FsdDEy$wNc", ARGON_SIZES },
	{ "$argon2id$v=19$m=4096,t=2,p=1$c2x1aWNlc2FsdDEy$wNcwC1CqsOl4rY27SJJexjvwgyOwL5T9RyQ+KK7POrs=",
	  ARGON_SIZES }, /* padded */
	{ "$argon2i$v=19$m=4096,t=2,p=1$" ARGON_TAIL, NOT_HASH },
};
#define NBADS (sizeof(bads) / sizeof(bads[0]))

static void test_parse_refuses(void **state)
{
	for (size_t i = 0; i < NBADS; i++) {
		struct pw_entry e;
		const char *why = NULL;

		if (!pw_parse_hash(bads[i].hash, &e, &why))
			fail_msg("'%s' accepted", bads[i].hash);
		if (!why || strcmp(why, bads[i].why))
			fail_msg("'%s': reason '%s', want '%s'", bads[i].hash, why ? why : "(none)",
				 bads[i].why);
	}
}

/* The same hashes as line 3 of a file: pw_load says "PATH:3: reason". */
static void test_load_names_file_and_line(void **state)
{
	for (size_t i = 0; i < NBADS; i++) {
		char text[1024], rest[256];

		snprintf(text, sizeof(text), "ok:%s\n# a comment\nbad:%s\nlater:%s\n", GOOD_HASH,
			 bads[i].hash, GOOD_HASH);
		snprintf(rest, sizeof(rest), ":3: %s", bads[i].why);
		load_fails(text, strlen(text), rest);
	}
}

/* What it does accept at the edges: 64 bytes of salt, one byte, leading zeros, 10000000. */
static void test_parse_edges(void **state)
{
	struct pw_entry e;

	parse_ok("$6$" SALT64 "$" GOOD_B64_HASH, &e);
	assert_int_equal(e.salt_len, 64);
	parse_ok("$6$AA==$" GOOD_B64_HASH, &e);
	assert_int_equal(e.salt_len, 1);
	assert_int_equal(e.salt[0], 0);
	parse_ok("$7$0101$" SALT "$" GOOD_B64_HASH, &e);
	assert_int_equal(e.iterations, 101);
	parse_ok("$7$10000000$" SALT "$" GOOD_B64_HASH, &e);
	assert_int_equal(e.iterations, 10000000);
	parse_ok("$7$1$" SALT "$" SALT64, &e); /* a hash of 64 zero bytes */
	assert_int_equal(e.hash[0], 0);
	assert_int_equal(e.hash[63], 0);
}

/* --- the lines of a file ------------------------------------------------------ */

static void test_load_skips_comments_and_lines_without_colon(void **state)
{
	struct pw_table *t = load_text("# comment: with a colon\n"
				       "#user:" GOOD_HASH "\n"
				       "\n"
				       "no colon here\n"
				       "   \n"
				       "user:" GOOD_HASH "\n"
				       "# trailing comment");

	if (!t)
		fail_msg("%s", err);
	assert_int_equal(pw_count(t), 1);
	assert_null(find(t, "#user"));
	assert_null(find(t, "# comment"));
	assert_true(verify(find(t, "user"), "pass"));
	pw_free(t);
}

static void test_load_crlf_and_blanks(void **state)
{
	struct pw_table *t = load_text("# comment\r\n"
				       "user:" GOOD_HASH "\r\n"
				       "\r\n"
				       "  carol \t: " GOOD_HASH " \t\r\n"
				       "last:" GOOD_HASH);

	if (!t)
		fail_msg("%s", err);
	assert_int_equal(pw_count(t), 3);
	assert_true(verify(find(t, "user"), "pass"));
	assert_true(verify(find(t, "carol"), "pass"));
	assert_true(verify(find(t, "last"), "pass"));
	assert_null(find(t, "  carol "));
	pw_free(t);
}

static void test_load_empty_file(void **state)
{
	struct pw_table *t = load_text("");

	assert_non_null(t);
	assert_int_equal(pw_count(t), 0);
	assert_null(find(t, "user"));
	pw_free(t);
}

static void test_load_refuses_duplicate_user(void **state)
{
	const char *text = "a:" GOOD_HASH "\nuser:" GOOD_HASH "\nb:" GOOD_HASH "\n"
			   " user :" GOOD_HASH "\n";

	load_fails(text, strlen(text), ": user 'user' is listed twice");
}

static void test_load_refuses_empty_username(void **state)
{
	const char *text = "a:" GOOD_HASH "\n \t:" GOOD_HASH "\n";

	load_fails(text, strlen(text), ":2: empty username");
	load_fails("user:\n", 6, ":1: " NOT_HASH);
	load_fails("user:pass\n", 10, ":1: " NOT_HASH); /* plain text is for -U */
}

static void test_load_refuses_nul_byte(void **state)
{
	static const char text[] = "a:" GOOD_HASH "\nb\0:" GOOD_HASH "\n";

	load_fails(text, sizeof(text) - 1, ":2: NUL byte in line");
}

/* A line of PW_LINE_MAX bytes loads; one of PW_LINE_MAX + 2 does not. */
static void test_load_line_length(void **state)
{
	size_t hl = strlen(":" GOOD_HASH), ul = PW_LINE_MAX - hl;
	char *text = malloc(PW_LINE_MAX + 64);
	struct pw_table *t;

	assert_non_null(text);
	memset(text, 'u', ul);
	strcpy(text + ul, ":" GOOD_HASH "\n");
	t = load_text(text);
	if (!t)
		fail_msg("%s", err);
	text[ul] = '\0';
	assert_true(verify(pw_find(t, text, ul), "pass"));
	pw_free(t);
	memset(text, 'u', ul + 2);
	strcpy(text + ul + 2, ":" GOOD_HASH "\n");
	load_fails(text, strlen(text), ":1: line too long");
	free(text);
}

static void test_load_missing_file(void **state)
{
	assert_null(pw_load("/nonexistent/sluice-passwd", err, sizeof(err)));
	assert_string_equal(err,
			    "/nonexistent/sluice-passwd: cannot open: No such file or directory");
}

/* Out of memory at every allocation of a load: NULL and a message, never a crash or leak. */
static void test_load_out_of_memory(void **state)
{
	const char *text = "a:" GOOD_HASH "\nb:" GOOD_HASH "\nc:" GOOD_HASH "\n";
	struct pw_table *t = NULL;
	long n;

	write_file(text, strlen(text));
	for (n = 0; n < 100 && !t; n++) {
		err[0] = '\0';
		mem_fail_after(n);
		t = pw_load(path, err, sizeof(err));
		mem_fail_after(-1);
		if (!t && !strstr(err, "out of memory"))
			fail_msg("allocation %ld: '%s'", n, err);
	}
	unlink(path);
	assert_non_null(t);
	assert_true(n > 2); /* the table, the line buffer, the names failed first */
	assert_int_equal(pw_count(t), 3);
	pw_free(t);
}

/* --- writing ------------------------------------------------------------------ */

/* With mosquitto_passwd's salt, pw_format_line writes mosquitto_passwd's line. */
static void test_format_line_matches_mosquitto(void **state)
{
	const char *lines[] = { vectors[0].line, vectors[1].line, vectors[2].line, vectors[3].line,
				vectors[4].line };
	static const char *passwords[] = { "pass", "correct horse battery staple",
					   "P\xc3\xa4ssw\xc3\xb6rd\xe2\x82\xac", "", "x" };

	for (size_t i = 0; i < 5; i++) {
		char name[16], out[256];
		struct pw_entry e;
		const char *colon = strchr(lines[i], ':');
		int n;

		snprintf(name, sizeof(name), "%.*s", (int)(colon - lines[i]), lines[i]);
		parse_ok(colon + 1, &e);
		n = pw_format_line(out, sizeof(out), e.kind, name, passwords[i],
				   strlen(passwords[i]), e.iterations, e.salt, e.salt_len);
		assert_int_equal(n, (int)strlen(lines[i]));
		assert_string_equal(out, lines[i]);
	}
}

static void test_format_round_trip(void **state)
{
	static const char pw[] = "p@ss:w0rd with spaces";
	unsigned char salt[PW_SALT_LEN];
	char out[256];
	struct pw_entry e;
	int n;

	assert_int_equal(pw_random(salt, sizeof(salt)), 0);
	n = pw_format_line(out, sizeof(out), PW_PBKDF2_SHA512, "rt", pw, strlen(pw), PW_ITERATIONS,
			   salt, sizeof(salt));
	assert_int_equal(n, (int)strlen(out));
	assert_int_equal(n, 2 + 1 + 7 + 16 + 1 + 88); /* rt : $7$101$ salt $ hash */
	assert_memory_equal(out, "rt:$7$101$", 10);
	parse_ok(out + 3, &e);
	assert_int_equal(e.kind, PW_PBKDF2_SHA512);
	assert_int_equal(e.iterations, PW_ITERATIONS);
	assert_int_equal(e.salt_len, sizeof(salt));
	assert_memory_equal(e.salt, salt, sizeof(salt));
	assert_true(verify(&e, pw));
	assert_false(verify(&e, "p@ss:w0rd with space"));
	assert_false(verify(&e, "p@ss"));
}

static void test_format_refuses(void **state)
{
	unsigned char salt[PW_SALT_MAX + 1] = { 0 };
	char out[256];

	/* the line is 115 bytes: no room for its NUL, then just room */
	assert_int_equal(pw_format_line(out, 115, PW_PBKDF2_SHA512, "rt", "p", 1, 101, salt, 12),
			 -1);
	assert_int_equal(pw_format_line(out, 116, PW_PBKDF2_SHA512, "rt", "p", 1, 101, salt, 12),
			 115);
	assert_int_equal(
		pw_format_line(out, sizeof(out), PW_PBKDF2_SHA512, "rt", "p", 1, 101, salt, 0), -1);
	assert_int_equal(pw_format_line(out, sizeof(out), PW_PBKDF2_SHA512, "rt", "p", 1, 101, salt,
					PW_SALT_MAX + 1),
			 -1);
	/* $6$ is read, never written */
	assert_int_equal(pw_format_line(out, sizeof(out), PW_SHA512, "rt", "p", 1, 101, salt, 12),
			 -1);
}

/* $pbkdf2-sha256$: passlib's layout ('.' for '+', no padding), read back the same. */
static void test_format_sha256_round_trip(void **state)
{
	static const unsigned char salt[16] = {
		0xfb, 0xff, 0xbf, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
	};
	char out[256];
	struct pw_entry e;
	int n;

	n = pw_format_line(out, sizeof(out), PW_PBKDF2_SHA256, "rt", "pw", 2, 7, salt,
			   sizeof(salt));
	assert_int_equal(n, (int)strlen(out));
	assert_int_equal(n, 3 + 15 + 2 + 22 + 1 + 43); /* rt: $pbkdf2-sha256$ 7$ salt $ hash */
	assert_memory_equal(out, "rt:$pbkdf2-sha256$7$././AQ", 26); /* base64 "+/+/AQ..." */
	assert_null(strchr(out, '+'));
	assert_null(strchr(out, '='));
	parse_ok(out + 3, &e);
	assert_int_equal(e.kind, PW_PBKDF2_SHA256);
	assert_int_equal(e.iterations, 7);
	assert_int_equal(e.salt_len, sizeof(salt));
	assert_memory_equal(e.salt, salt, sizeof(salt));
	assert_true(verify(&e, "pw"));
	assert_false(verify(&e, "pW"));
}

static void test_random_differs(void **state)
{
	unsigned char a[PW_SALT_LEN], b[PW_SALT_LEN];

	assert_int_equal(pw_random(a, sizeof(a)), 0);
	assert_int_equal(pw_random(b, sizeof(b)), 0);
	assert_true(memcmp(a, b, sizeof(a)) != 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_parse_and_verify),
		cmocka_unit_test(test_vectors_wrong_passwords),
		cmocka_unit_test(test_sha512_salt_bytes),
		cmocka_unit_test(test_pbkdf2_known_answers),
		cmocka_unit_test(test_pbkdf2_sha256_known_answers),
		cmocka_unit_test(test_vectors_as_a_file),
		cmocka_unit_test(test_unknown_user),
		cmocka_unit_test(test_find_prefixes),
		cmocka_unit_test(test_find_many),
		cmocka_unit_test(test_parse_refuses),
		cmocka_unit_test(test_load_names_file_and_line),
		cmocka_unit_test(test_parse_edges),
		cmocka_unit_test(test_load_skips_comments_and_lines_without_colon),
		cmocka_unit_test(test_load_crlf_and_blanks),
		cmocka_unit_test(test_load_empty_file),
		cmocka_unit_test(test_load_refuses_duplicate_user),
		cmocka_unit_test(test_load_refuses_empty_username),
		cmocka_unit_test(test_load_refuses_nul_byte),
		cmocka_unit_test(test_load_line_length),
		cmocka_unit_test(test_load_missing_file),
		cmocka_unit_test(test_load_out_of_memory),
		cmocka_unit_test(test_format_line_matches_mosquitto),
		cmocka_unit_test(test_format_round_trip),
		cmocka_unit_test(test_format_refuses),
		cmocka_unit_test(test_format_sha256_round_trip),
		cmocka_unit_test(test_random_differs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
