/*
 * passwd.c - mosquitto's password file format (passwd.h): parsing, the two
 * hashes mosquitto 2.0 writes, mosquitto 2.1's $argon2id$ (libargon2), and
 * sluice's $pbkdf2-sha256$ (for SCRAM-SHA-256), constant-time checking, and
 * writing $7$ and $pbkdf2-sha256$ lines.
 *
 * Owns: a table of entries read from one file, sorted by username so a
 * CONNECT finds its user with a binary search. The table is immutable once
 * loaded: a reload builds a new one and the caller swaps them, so a file
 * that fails to load never leaves a half-read table in use. The crypto is
 * mbedTLS's (PBKDF2-HMAC-SHA512/256, SHA-512, base64, CTR-DRBG).
 *
 * Runs on whatever thread calls it (the broker's loop; sluice-passwd's
 * main); no globals but the lazily seeded random generator, which only
 * one thread uses (sluice-passwd's, or the broker's loop for SCRAM nonces).
 *
 * Invariants: every entry's hash is pw_hash_len(kind) bytes and its salt at most
 * PW_SALT_MAX; usernames are unique in a table; a verification always runs
 * the entry's full hash (or a dummy's) and compares every byte, so its time
 * does not tell a wrong password from an unknown user.
 */
#include "passwd.h"
#include "linefile.h"
#include "mem.h"

#include <argon2.h>
#include <errno.h>
#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha512.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pw_table {
	struct pw_entry *e;
	size_t n, cap;
};

/* --- hashes ------------------------------------------------------------------- */

size_t pw_hash_len(enum pw_kind kind)
{
	return kind == PW_PBKDF2_SHA256 ? PW_HASH256_LEN : PW_HASH_LEN;
}

int pw_pbkdf2(enum pw_kind kind, const void *password, size_t plen, const unsigned char *salt,
	      size_t salt_len, uint32_t iterations, unsigned char *out)
{
	mbedtls_md_type_t type = kind == PW_PBKDF2_SHA256 ? MBEDTLS_MD_SHA256 : MBEDTLS_MD_SHA512;
	mbedtls_md_context_t md;
	int rc;

	mbedtls_md_init(&md);
	rc = mbedtls_md_setup(&md, mbedtls_md_info_from_type(type), 1);
	if (!rc)
		rc = mbedtls_pkcs5_pbkdf2_hmac(&md, password, plen, salt, salt_len, iterations,
					       (uint32_t)pw_hash_len(kind), out);
	mbedtls_md_free(&md);
	return rc ? -1 : 0;
}

/* SHA-512 of password then salt: mosquitto 1.x's $6$. */
static int sha512_salted(const void *password, size_t plen, const unsigned char *salt,
			 size_t salt_len, unsigned char *out)
{
	mbedtls_sha512_context c;
	int rc;

	mbedtls_sha512_init(&c);
	rc = mbedtls_sha512_starts_ret(&c, 0);
	if (!rc)
		rc = mbedtls_sha512_update_ret(&c, password, plen);
	if (!rc)
		rc = mbedtls_sha512_update_ret(&c, salt, salt_len);
	if (!rc)
		rc = mbedtls_sha512_finish_ret(&c, out);
	mbedtls_sha512_free(&c);
	return rc ? -1 : 0;
}

static int entry_hash(const struct pw_entry *e, const void *password, size_t plen,
		      unsigned char *out)
{
	if (e->kind == PW_ARGON2ID)
		return argon2id_hash_raw(e->iterations, e->argon_kib, e->argon_lanes, password,
					 plen, e->salt, e->salt_len, out, e->argon_len) == ARGON2_OK
			       ? 0
			       : -1;
	if (e->kind != PW_SHA512)
		return pw_pbkdf2(e->kind, password, plen, e->salt, e->salt_len, e->iterations, out);
	return sha512_salted(password, plen, e->salt, e->salt_len, out);
}

bool pw_equal_ct(const unsigned char *a, const unsigned char *b, size_t n)
{
	volatile unsigned char diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

bool pw_verify(const struct pw_entry *e, const void *password, size_t plen)
{
	static const struct pw_entry dummy = {
		.kind = PW_PBKDF2_SHA512,
		.iterations = PW_ITERATIONS,
		.salt = "sluice-dummy",
		.salt_len = PW_SALT_LEN,
	};
	unsigned char got[PW_HASH_LEN];
	bool ok;

	if (entry_hash(e ? e : &dummy, password, plen, got))
		return false;
	ok = pw_equal_ct(got, e ? e->hash : dummy.hash,
			 e && e->kind == PW_ARGON2ID ? e->argon_len
						     : pw_hash_len(e ? e->kind : dummy.kind));
	return ok && e != NULL;
}

/* --- parsing ------------------------------------------------------------------ */

/*
 * Decodes base64 s (n chars) into out (at most max bytes): its length, or -1.
 * mbedTLS drops a last group of fewer than 4 chars: refuse it, so that a
 * truncated salt is a load error and not a silently different salt.
 */
static long b64_decode(const char *s, size_t n, unsigned char *out, size_t max)
{
	size_t olen = 0;

	if (!n || n % 4 || mbedtls_base64_decode(out, max, &olen, (const unsigned char *)s, n))
		return -1;
	return (long)olen;
}

/* The next '$'-separated field of *s (its length), moving *s past the '$'. */
static size_t field(const char **s, bool last)
{
	const char *p = *s, *end = strchr(p, '$');
	size_t n;

	if (last)
		return strlen(p);
	if (!end)
		return (size_t)-1;
	n = (size_t)(end - p);
	*s = end + 1;
	return n;
}

static int parse_iterations(const char *s, size_t n, uint32_t *out)
{
	char buf[16];
	char *end;
	unsigned long v;

	if (!n || n >= sizeof(buf) || strspn(s, "0123456789") < n)
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	errno = 0;
	v = strtoul(buf, &end, 10);
	if (errno || *end || v < 1 || v > PW_ITERATIONS_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

enum b64_form {
	B64_PADDED, /* standard base64 ($7$, $6$) */
	B64_PASSLIB, /* '.' for '+', no padding ($pbkdf2-sha256$) */
	B64_UNPADDED, /* standard, no padding (the PHC string of $argon2id$) */
};

/* Decodes a salt or hash field of the given form. Its length, or -1. */
static long b64_field(const char *s, size_t n, enum b64_form form, unsigned char *out, size_t max)
{
	char buf[(PW_SALT_MAX + PW_HASH_LEN) * 2];

	if (form == B64_PADDED)
		return b64_decode(s, n, out, max);
	if (n + 3 > sizeof(buf) || n % 4 == 1 || memchr(s, '=', n) ||
	    memchr(s, form == B64_PASSLIB ? '+' : '.', n))
		return -1;
	for (size_t i = 0; i < n; i++)
		buf[i] = s[i] == '.' ? '+' : s[i];
	while (n % 4)
		buf[n++] = '=';
	return b64_decode(buf, n, out, max);
}

static const struct hash_form {
	const char *prefix;
	enum pw_kind kind;
	bool iterations;
	enum b64_form b64;
} forms[] = {
	{ "$7$", PW_PBKDF2_SHA512, true, B64_PADDED },
	{ "$6$", PW_SHA512, false, B64_PADDED },
	{ "$pbkdf2-sha256$", PW_PBKDF2_SHA256, true, B64_PASSLIB },
	{ "$argon2id$", PW_ARGON2ID, false, B64_UNPADDED },
};

/* One "k=N" of Argon2id's parameters into *out (lo..hi), *s moved past it and its ','. */
static int argon_param(const char **s, char k, char end, uint32_t lo, uint32_t hi, uint32_t *out)
{
	const char *p = *s, *stop;
	uint32_t v;

	if (p[0] != k || p[1] != '=' || !(stop = strchr(p + 2, end)) ||
	    parse_iterations(p + 2, (size_t)(stop - p - 2), &v) || v < lo || v > hi)
		return -1;
	*out = v;
	*s = stop + 1;
	return 0;
}

/* "v=19$m=KIB,t=PASSES,p=LANES$" of $argon2id$: *s moved to the salt. */
static int argon_params(const char **s, struct pw_entry *e, const char **why)
{
	uint32_t m, t, p;

	*why = "$argon2id$: not v=19$m=KIB,t=PASSES,p=LANES$ (m 8..1048576, t >= 1, p 1..64)";
	if (strncmp(*s, "v=19$", 5))
		return -1;
	*s += 5;
	if (argon_param(s, 'm', ',', 8, PW_ARGON2_MAX_KIB, &m) ||
	    argon_param(s, 't', ',', 1, PW_ITERATIONS_MAX, &t) ||
	    argon_param(s, 'p', '$', 1, 64, &p) || m < 8 * p)
		return -1;
	e->argon_kib = m;
	e->iterations = t;
	e->argon_lanes = (uint8_t)p;
	return 0;
}

static const struct hash_form *form_of(const char *s)
{
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
		if (!strncmp(s, forms[i].prefix, strlen(forms[i].prefix)))
			return &forms[i];
	return NULL;
}

int pw_parse_hash(const char *s, struct pw_entry *e, const char **why)
{
	const struct hash_form *f = form_of(s);
	const char *salt, *hash;
	size_t sn, n;
	long got;

	*why = "not a mosquitto_passwd hash ($7$... or $6$...) nor $pbkdf2-sha256$...";
	if (!f)
		return -1;
	e->kind = f->kind;
	e->iterations = 0;
	salt = s + strlen(f->prefix);
	if (f->kind == PW_ARGON2ID && argon_params(&salt, e, why))
		return -1;
	if (f->iterations) {
		const char *it = salt;

		n = field(&salt, false);
		if (n == (size_t)-1 || parse_iterations(it, n, &e->iterations)) {
			*why = "the iteration count is not a number from 1 to 10000000";
			return -1;
		}
	}
	hash = salt;
	sn = field(&hash, false);
	if (sn == (size_t)-1) {
		*why = "no '$' between salt and hash";
		return -1;
	}
	got = b64_field(salt, sn, f->b64, e->salt, sizeof(e->salt));
	if (got < 1) {
		*why = "the salt is not base64 (of at most 64 bytes)";
		return -1;
	}
	e->salt_len = (size_t)got;
	n = field(&hash, true);
	got = b64_field(hash, n, f->b64, e->hash, sizeof(e->hash));
	if (e->kind == PW_ARGON2ID) {
		*why = "$argon2id$: the salt must be unpadded base64 of 8 to 64 bytes, the hash of 4 to 64";
		if (got < 4 || e->salt_len < 8)
			return -1;
		e->argon_len = (uint8_t)got;
		return 0;
	}
	if (got != (long)pw_hash_len(e->kind)) {
		*why = e->kind == PW_PBKDF2_SHA256 ? "the hash is not base64 of 32 bytes"
						   : "the hash is not base64 of 64 bytes";
		return -1;
	}
	return 0;
}

/* Strips blanks (and a line ending) from both ends of s in place. */
static char *trim(char *s)
{
	size_t n;

	s += strspn(s, " \t");
	n = strlen(s);
	while (n && strchr(" \t\r\n", s[n - 1]))
		s[--n] = '\0';
	return s;
}

static int by_name(const void *a, const void *b)
{
	const struct pw_entry *x = a, *y = b;

	return strcmp(x->username, y->username);
}

static int add_entry(struct pw_table *t, const struct pw_entry *e)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct pw_entry *a = mem_realloc(t->e, cap * sizeof(*a));

		if (!a)
			return -1;
		t->e = a;
		t->cap = cap;
	}
	t->e[t->n++] = *e;
	return 0;
}

/* One line (its ending stripped) of the table arg: 0, or -1 with *why (linefile_fn). */
static int parse_line(void *arg, char *line, const char **why)
{
	struct pw_table *t = arg;
	struct pw_entry e;
	char *colon, *user, *hash;

	if (line[0] == '#' || !(colon = strchr(line, ':')))
		return 0;
	*colon = '\0';
	user = trim(line);
	hash = trim(colon + 1);
	if (!*user) {
		*why = "empty username";
		return -1;
	}
	memset(&e, 0, sizeof(e));
	if (pw_parse_hash(hash, &e, why))
		return -1;
	if (!(e.username = mem_strdup(user)) || add_entry(t, &e)) {
		mem_free(e.username);
		*why = "out of memory";
		return -1;
	}
	return 0;
}

/* The first username that appears twice in the sorted table, or NULL. */
static const char *duplicate(const struct pw_table *t)
{
	for (size_t i = 1; i < t->n; i++)
		if (!strcmp(t->e[i - 1].username, t->e[i].username))
			return t->e[i].username;
	return NULL;
}

struct pw_table *pw_load(const char *path, char *err, size_t errlen)
{
	struct pw_table *t = mem_calloc(1, sizeof(*t));
	const char *dup;

	if (!t) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	if (linefile_each(path, PW_LINE_MAX, parse_line, t, err, errlen)) {
		pw_free(t);
		return NULL;
	}
	if (t->n)
		qsort(t->e, t->n, sizeof(*t->e), by_name);
	if ((dup = duplicate(t))) {
		snprintf(err, errlen, "%s: user '%s' is listed twice", path, dup);
		pw_free(t);
		return NULL;
	}
	return t;
}

void pw_free(struct pw_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		mbedtls_platform_zeroize(t->e[i].hash, sizeof(t->e[i].hash));
		mem_free(t->e[i].username);
	}
	mem_free(t->e);
	mem_free(t);
}

size_t pw_count(const struct pw_table *t)
{
	return t ? t->n : 0;
}

const struct pw_entry *pw_find(const struct pw_table *t, const char *username, size_t ulen)
{
	size_t lo = 0, hi = t ? t->n : 0;

	if (memchr(username, '\0', ulen))
		return NULL; /* no NUL inside a name of the file */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *name = t->e[mid].username;
		int c = strncmp(name, username, ulen);

		if (!c && name[ulen])
			c = 1; /* name is longer */
		if (!c)
			return &t->e[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* --- writing ------------------------------------------------------------------ */

/* Base64 of n bytes into out (NUL-terminated); adapted: passlib's form. Its length, or 0. */
static size_t b64_encode(const unsigned char *in, size_t n, bool adapted, char *out, size_t max)
{
	size_t len = 0;

	if (mbedtls_base64_encode((unsigned char *)out, max, &len, in, n))
		return 0;
	if (!adapted)
		return len;
	while (len && out[len - 1] == '=')
		out[--len] = '\0';
	for (size_t i = 0; i < len; i++)
		if (out[i] == '+')
			out[i] = '.';
	return len;
}

int pw_format_line(char *out, size_t outlen, enum pw_kind kind, const char *username,
		   const void *password, size_t plen, uint32_t iterations,
		   const unsigned char *salt, size_t salt_len)
{
	bool sha256 = kind == PW_PBKDF2_SHA256;
	unsigned char hash[PW_HASH_LEN];
	char s64[PW_SALT_MAX * 2], h64[PW_HASH_LEN * 2];
	size_t sl, hl = 0;
	int n;

	if (salt_len > PW_SALT_MAX || !salt_len || (kind != PW_PBKDF2_SHA512 && !sha256) ||
	    pw_pbkdf2(kind, password, plen, salt, salt_len, iterations, hash))
		return -1;
	sl = b64_encode(salt, salt_len, sha256, s64, sizeof(s64));
	if (sl)
		hl = b64_encode(hash, pw_hash_len(kind), sha256, h64, sizeof(h64));
	mbedtls_platform_zeroize(hash, sizeof(hash));
	if (!hl)
		return -1;
	n = snprintf(out, outlen, "%s:%s%u$%.*s$%.*s", username, sha256 ? "$pbkdf2-sha256$" : "$7$",
		     (unsigned)iterations, (int)sl, s64, (int)hl, h64);
	return n < 0 || (size_t)n >= outlen ? -1 : n;
}

int pw_random(unsigned char *out, size_t n)
{
	static mbedtls_entropy_context entropy;
	static mbedtls_ctr_drbg_context drbg;
	static bool seeded;

	if (!seeded) {
		mbedtls_entropy_init(&entropy);
		mbedtls_ctr_drbg_init(&drbg);
		if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
					  (const unsigned char *)"sluice", 6))
			return -1;
		seeded = true;
	}
	return mbedtls_ctr_drbg_random(&drbg, out, n) ? -1 : 0;
}
