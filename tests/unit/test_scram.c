/*
 * test_scram.c - the server side of SCRAM (src/scram.c): RFC 7677's
 * SCRAM-SHA-256 example message for message, the same exchange in
 * SCRAM-SHA-512 (computed with Python's hashlib and hmac), wrong proofs, a
 * replayed client-final-message, made-up credentials for unknown users,
 * every malformed message we refuse, steps out of order, and running out
 * of memory at each allocation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <mbedtls/base64.h>
#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "scram.h"

/* RFC 7677 section 3: user "user", password "pencil". */
#define FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define NONCE "rOprNGfwEbeRWgbNEkqO" SNONCE
#define SALT64 "W22ZaJ0SNY7soEsUEjb6gQ=="
#define SERVER_FIRST "r=" NONCE ",s=" SALT64 ",i=4096"
#define FINAL256 "c=biws,r=" NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define SERVER_FINAL256 "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/* Hi("pencil", salt, 4096) with HMAC-SHA-256, as a $pbkdf2-sha256$ entry holds it */
#define SALTED256 "xKSVEDI6tPlSysH6mUQZOeeOp01r6B3fcJbodRPcYV0="
/* The same exchange with SHA-512 (Python: hashlib.pbkdf2_hmac, hmac) */
#define FINAL512                                                                         \
	"c=biws,r=" NONCE ",p=gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzM" \
	"lTN8PPC6wdp6dybEmDYXYTxwnYPJQ=="
#define SERVER_FINAL512                                                               \
	"v=ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq1" \
	"99RVG2rR7N7Zw=="
#define SALTED512                                                                        \
	"8W7+G+Z/HQlQLr1e2SYv3f+6Wjd6tPC2h+XtW6D1Boa4pK4WZHbairO5UdL6kji2OZj0VGG8M6RkgU" \
	"lJzsljHQ=="

static size_t b64(const char *s, unsigned char *out, size_t max)
{
	size_t n = 0;

	assert_int_equal(mbedtls_base64_decode(out, max, &n, (const unsigned char *)s, strlen(s)),
			 0);
	return n;
}

static struct scram_cred cred_of(enum scram_mech m, const char *salted64)
{
	unsigned char salted[SCRAM_KEY_MAX], salt[32];
	size_t sl = b64(SALT64, salt, sizeof(salt));
	struct scram_cred c;

	b64(salted64, salted, sizeof(salted));
	assert_int_equal(scram_cred_from_salted(m, salted, salt, sl, 4096, &c), 0);
	assert_true(c.real);
	return c;
}

/* Runs a whole exchange; the server's messages in sf and fin (NUL-terminated). rc of the final. */
static int exchange(enum scram_mech m, const struct scram_cred *c, const char *first,
		    const char *snonce, const char *final, char *sf, char *fin, const char **why)
{
	struct scram *s = scram_new(m);
	struct buf out;
	int rc;

	assert_non_null(s);
	buf_init(&out);
	assert_int_equal(scram_client_first(s, first, strlen(first), why), 0);
	assert_int_equal(scram_server_first(s, c, snonce, &out), 0);
	snprintf(sf, 256, "%.*s", (int)out.len, (const char *)out.data);
	buf_reset(&out);
	rc = scram_client_final(s, final, strlen(final), &out, why);
	snprintf(fin, 256, "%.*s", (int)out.len, (const char *)out.data);
	buf_free(&out);
	scram_free(s);
	return rc;
}

static void test_rfc7677_example(void **state)
{
	struct scram_cred c = cred_of(SCRAM_SHA256, SALTED256);
	const char *why = "unset";
	char sf[256], fin[256];

	assert_int_equal(exchange(SCRAM_SHA256, &c, FIRST, SNONCE, FINAL256, sf, fin, &why), 0);
	assert_string_equal(sf, SERVER_FIRST);
	assert_string_equal(fin, SERVER_FINAL256);
	assert_null(why);
}

static void test_sha512_example(void **state)
{
	struct scram_cred c = cred_of(SCRAM_SHA512, SALTED512);
	const char *why;
	char sf[256], fin[256];

	assert_int_equal(exchange(SCRAM_SHA512, &c, FIRST, SNONCE, FINAL512, sf, fin, &why), 0);
	assert_string_equal(sf, SERVER_FIRST);
	assert_string_equal(fin, SERVER_FINAL512);
}

/* A SHA-256 proof does not pass for SHA-512, nor a proof with one bit changed. */
static void test_wrong_proofs(void **state)
{
	struct scram_cred c256 = cred_of(SCRAM_SHA256, SALTED256);
	struct scram_cred c512 = cred_of(SCRAM_SHA512, SALTED512);
	char bad[256], sf[256], fin[256];
	const char *why;

	assert_int_equal(exchange(SCRAM_SHA512, &c512, FIRST, SNONCE, FINAL256, sf, fin, &why), -1);
	assert_string_equal(why, "client-final-message: no p= proof of the hash's length last");
	snprintf(bad, sizeof(bad), "%s", FINAL256);
	bad[strlen(bad) - 3] ^= 1; /* 'V' -> 'W' */
	assert_int_equal(exchange(SCRAM_SHA256, &c256, FIRST, SNONCE, bad, sf, fin, &why), -1);
	assert_string_equal(why, "wrong password (the proof does not match)");
	assert_string_equal(fin, "e=invalid-proof");
	/* another password's credential */
	c256.stored_key[0] ^= 1;
	assert_int_equal(exchange(SCRAM_SHA256, &c256, FIRST, SNONCE, FINAL256, sf, fin, &why), -1);
	assert_string_equal(fin, "e=invalid-proof");
}

/* The client-final-message of one exchange does not authenticate another (new server nonce). */
static void test_replayed_final(void **state)
{
	struct scram_cred c = cred_of(SCRAM_SHA256, SALTED256);
	const char *why;
	char sf[256], fin[256];

	assert_int_equal(exchange(SCRAM_SHA256, &c, FIRST, "otherNonce", FINAL256, sf, fin, &why),
			 -1);
	assert_string_equal(why,
			    "client-final-message: r= is not this exchange's nonce (replayed?)");
	assert_string_equal(fin, "e=other-error");
}

/* Unknown users get a stable, made-up salt, and no proof passes. */
static void test_fake_credentials(void **state)
{
	static const unsigned char secret[32] = { 7 };
	struct scram_cred a, b, other;
	const char *why;
	char sf[256], fin[256];

	assert_int_equal(scram_cred_fake(SCRAM_SHA256, secret, sizeof(secret), "user", 4, 4096, &a),
			 0);
	assert_int_equal(scram_cred_fake(SCRAM_SHA256, secret, sizeof(secret), "user", 4, 4096, &b),
			 0);
	assert_int_equal(
		scram_cred_fake(SCRAM_SHA256, secret, sizeof(secret), "usr", 3, 4096, &other), 0);
	assert_false(a.real);
	assert_int_equal(a.salt_len, PW_SALT_LEN);
	assert_memory_equal(a.salt, b.salt, a.salt_len);
	assert_memory_not_equal(a.salt, other.salt, a.salt_len);
	/* even a fake credential with the right keys refuses */
	a = cred_of(SCRAM_SHA256, SALTED256);
	a.real = false;
	assert_int_equal(exchange(SCRAM_SHA256, &a, FIRST, SNONCE, FINAL256, sf, fin, &why), -1);
	assert_string_equal(why, "no such user, or no credential for this mechanism");
	assert_string_equal(fin, "e=invalid-proof");
}

static void test_username_decoding(void **state)
{
	static const char first[] = "n,a=u=2Cs=3Dr,n=u=2Cs=3Dr,r=abc,x=ext";
	struct scram *s = scram_new(SCRAM_SHA512);
	const char *why;
	size_t n;

	assert_int_equal(scram_client_first(s, first, strlen(first), &why), 0);
	assert_string_equal(scram_username(s, &n), "u,s=r");
	assert_int_equal(n, 5);
	assert_int_equal(scram_mech(s), SCRAM_SHA512);
	scram_free(s);
}

static const struct {
	const char *msg, *why;
} bad_firsts[] = {
	{ "", "client-first-message: no GS2 header (\"n,,\")" },
	{ "n,", "client-first-message: no GS2 header (\"n,,\")" },
	{ "x,,n=user,r=abc", "client-first-message: no GS2 header (\"n,,\")" },
	{ "p=tls-unique,,n=user,r=abc", "client-first-message: channel binding is not supported" },
	{ "n,,m=ext,n=user,r=abc", "client-first-message: mandatory extensions are not supported" },
	{ "n,,n=,r=abc", "client-first-message: no valid n=username" },
	{ "n,,r=abc,n=user", "client-first-message: no valid n=username" },
	{ "n,,n=us=er,r=abc", "client-first-message: no valid n=username" },
	{ "n,,n=user=2,r=abc", "client-first-message: no valid n=username" },
	{ "n,,n=\xff,r=abc", "client-first-message: no valid n=username" },
	{ "n,,n=user", "client-first-message: no valid r=nonce" },
	{ "n,,n=user,r=", "client-first-message: no valid r=nonce" },
	{ "n,,n=user,r=a b", "client-first-message: no valid r=nonce" },
	{ "n,,n=user,s=abc", "client-first-message: no valid r=nonce" },
	{ "n,a=other,n=user,r=abc",
	  "client-first-message: the authorization identity is not the user" },
	{ "n,x,n=user,r=abc", "client-first-message: the authorization identity is not the user" },
};

static void test_bad_client_first(void **state)
{
	for (size_t i = 0; i < sizeof(bad_firsts) / sizeof(bad_firsts[0]); i++) {
		struct scram *s = scram_new(SCRAM_SHA256);
		const char *why = NULL;

		if (!scram_client_first(s, bad_firsts[i].msg, strlen(bad_firsts[i].msg), &why))
			fail_msg("'%s' accepted", bad_firsts[i].msg);
		if (strcmp(why, bad_firsts[i].why))
			fail_msg("'%s': '%s', want '%s'", bad_firsts[i].msg, why,
				 bad_firsts[i].why);
		scram_free(s);
	}
}

static void test_nul_and_long_nonce(void **state)
{
	char first[400];
	struct scram *s = scram_new(SCRAM_SHA256);
	const char *why;

	assert_int_equal(scram_client_first(s, NULL, 0, &why), -1); /* no Authentication Data */
	assert_int_equal(scram_client_first(s, "n,,n=u\0x,r=abc", 14, &why), -1);
	assert_string_equal(why, "client-first-message: a NUL byte");
	scram_free(s);
	s = scram_new(SCRAM_SHA256);
	snprintf(first, sizeof(first), "n,,n=u,r=%0256d", 0);
	assert_int_equal(scram_client_first(s, first, strlen(first), &why), -1);
	assert_string_equal(why, "client-first-message: no valid r=nonce");
	scram_free(s);
}

static const struct {
	const char *msg, *why, *err;
} bad_finals[] = {
	{ "", "client-final-message: no c=, r= and p=", "e=other-error" },
	{ "c=eSws,r=" NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	  "client-final-message: c= is not the GS2 header of the first message",
	  "e=channel-bindings-dont-match" },
	{ "c=biws", "client-final-message: no c=, r= and p=", "e=other-error" },
	{ "c=biws,r=" NONCE, "client-final-message: no p= proof of the hash's length last",
	  "e=other-error" },
	{ "c=biws,r=" NONCE ",p=AAAA",
	  "client-final-message: no p= proof of the hash's length last", "e=other-error" },
	{ "c=biws,r=" NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=1",
	  "client-final-message: no p= proof of the hash's length last", "e=other-error" },
	{ "c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	  "client-final-message: no c=, r= and p=", "e=other-error" },
	{ "c=biws,r=" NONCE "x,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	  "client-final-message: r= is not this exchange's nonce (replayed?)", "e=other-error" },
};

static void test_bad_client_final(void **state)
{
	struct scram_cred c = cred_of(SCRAM_SHA256, SALTED256);

	for (size_t i = 0; i < sizeof(bad_finals) / sizeof(bad_finals[0]); i++) {
		const char *why = NULL;
		char sf[256], fin[256];

		if (!exchange(SCRAM_SHA256, &c, FIRST, SNONCE, bad_finals[i].msg, sf, fin, &why))
			fail_msg("'%s' accepted", bad_finals[i].msg);
		if (strcmp(why, bad_finals[i].why))
			fail_msg("'%s': '%s', want '%s'", bad_finals[i].msg, why,
				 bad_finals[i].why);
		assert_string_equal(fin, bad_finals[i].err);
	}
}

/* An extension between r= and p= is part of the AuthMessage, and allowed. */
static void test_final_with_extension_fails_only_on_proof(void **state)
{
	struct scram_cred c = cred_of(SCRAM_SHA256, SALTED256);
	const char *why;
	char sf[256], fin[256];

	assert_int_equal(exchange(SCRAM_SHA256, &c, FIRST, SNONCE,
				  "c=biws,r=" NONCE
				  ",x=1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
				  sf, fin, &why),
			 -1);
	assert_string_equal(why, "wrong password (the proof does not match)");
}

static void test_steps_in_order(void **state)
{
	struct scram_cred c = cred_of(SCRAM_SHA256, SALTED256);
	struct scram *s = scram_new(SCRAM_SHA256);
	const char *why;
	struct buf out;

	buf_init(&out);
	assert_int_equal(scram_server_first(s, &c, SNONCE, &out), -1);
	assert_int_equal(scram_client_final(s, FINAL256, strlen(FINAL256), &out, &why), -1);
	assert_string_equal(why, "client-final-message out of order");
	buf_reset(&out);
	assert_int_equal(scram_client_first(s, FIRST, strlen(FIRST), &why), 0);
	assert_int_equal(scram_client_first(s, FIRST, strlen(FIRST), &why), -1);
	assert_string_equal(why, "client-first-message out of order");
	assert_int_equal(scram_server_first(s, &c, "bad,nonce", &out), -1);
	assert_int_equal(scram_server_first(s, &c, SNONCE, &out), 0);
	buf_reset(&out);
	assert_int_equal(scram_client_final(s, FINAL256, strlen(FINAL256), &out, &why), 0);
	/* one exchange authenticates once */
	assert_int_equal(scram_client_final(s, NULL, 0, &out, &why), -1);
	assert_int_equal(scram_client_final(s, FINAL256, strlen(FINAL256), &out, &why), -1);
	buf_free(&out);
	scram_free(s);
}

static void test_mechanism_names(void **state)
{
	assert_int_equal(scram_mech_of("SCRAM-SHA-256", 13), SCRAM_SHA256);
	assert_int_equal(scram_mech_of("SCRAM-SHA-512", 13), SCRAM_SHA512);
	assert_int_equal(scram_mech_of("scram-sha-512", 13), SCRAM_NONE);
	assert_int_equal(scram_mech_of("SCRAM-SHA-1", 11), SCRAM_NONE);
	assert_int_equal(scram_mech_of("SCRAM-SHA-512-PLUS", 18), SCRAM_NONE);
	assert_string_equal(scram_mech_name(SCRAM_SHA256), "SCRAM-SHA-256");
	assert_string_equal(scram_mech_name(SCRAM_SHA512), "SCRAM-SHA-512");
	assert_int_equal(scram_pw_kind(SCRAM_SHA512), PW_PBKDF2_SHA512);
	assert_int_equal(scram_pw_kind(SCRAM_SHA256), PW_PBKDF2_SHA256);
}

/* Each allocation of an exchange may fail: it then fails cleanly (ASan sees no leak). */
static void test_out_of_memory(void **state)
{
	struct scram_cred c = cred_of(SCRAM_SHA256, SALTED256);
	bool done = false;

	for (long n = 0; !done && n < 100; n++) {
		struct scram *s;
		struct buf out;
		const char *why;

		buf_init(&out);
		mem_fail_after(n);
		s = scram_new(SCRAM_SHA256);
		if (s && !scram_client_first(s, FIRST, strlen(FIRST), &why) &&
		    !scram_server_first(s, &c, SNONCE, &out)) {
			buf_reset(&out);
			done = !scram_client_final(s, FINAL256, strlen(FINAL256), &out, &why);
		}
		mem_fail_after(-1);
		scram_free(s);
		buf_free(&out);
	}
	assert_true(done);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7677_example),
		cmocka_unit_test(test_sha512_example),
		cmocka_unit_test(test_wrong_proofs),
		cmocka_unit_test(test_replayed_final),
		cmocka_unit_test(test_fake_credentials),
		cmocka_unit_test(test_username_decoding),
		cmocka_unit_test(test_bad_client_first),
		cmocka_unit_test(test_nul_and_long_nonce),
		cmocka_unit_test(test_bad_client_final),
		cmocka_unit_test(test_final_with_extension_fails_only_on_proof),
		cmocka_unit_test(test_steps_in_order),
		cmocka_unit_test(test_mechanism_names),
		cmocka_unit_test(test_out_of_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
