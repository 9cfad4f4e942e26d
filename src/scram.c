/*
 * scram.c - one SCRAM exchange, server side (scram.h): parsing the client's
 * two messages, writing the server's two, and checking the proof.
 *
 * Owns: the state of one exchange: the user, the GS2 header (which the
 * client must echo in c=), the combined nonce, the credential, and the
 * AuthMessage built up as the messages pass (client-first-bare ","
 * server-first "," client-final-without-proof), over which both proofs are
 * computed. The crypto is mbedTLS's HMAC and hash.
 *
 * Runs on whatever thread calls it (the broker's loop); no globals.
 *
 * Invariants: the steps run in order, once each (a message out of order is
 * refused); a proof is checked by hashing the recovered ClientKey and
 * comparing every byte with StoredKey, whatever the credential, so a made-up
 * credential (an unknown user) costs the same as a real one and never
 * matches. Channel binding ("p=") and mandatory extensions ("m=") are
 * refused, as RFC 5802 asks of a server that has neither.
 */
#define _GNU_SOURCE /* memrchr */
#include "scram.h"

#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>
#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "utf8.h"

enum step { FRESH, GOT_FIRST, SENT_FIRST, DONE };

struct scram {
	enum scram_mech mech;
	enum step step;
	char *user; /* decoded, NUL-terminated */
	size_t ulen;
	char *gs2_full; /* the GS2 header as sent ("n,," or "y,,", an authzid between): c= carries it */
	size_t gs2_full_len;
	char *nonce; /* the client's, then the combined one */
	size_t nonce_len;
	struct buf auth_msg;
	struct scram_cred cred;
};

/* --- mechanisms and crypto --------------------------------------------------- */

enum scram_mech scram_mech_of(const char *name, size_t len)
{
	if (len == 13 && !memcmp(name, "SCRAM-SHA-256", 13))
		return SCRAM_SHA256;
	if (len == 13 && !memcmp(name, "SCRAM-SHA-512", 13))
		return SCRAM_SHA512;
	return SCRAM_NONE;
}

const char *scram_mech_name(enum scram_mech m)
{
	return m == SCRAM_SHA256 ? "SCRAM-SHA-256" : "SCRAM-SHA-512";
}

enum pw_kind scram_pw_kind(enum scram_mech m)
{
	return m == SCRAM_SHA256 ? PW_PBKDF2_SHA256 : PW_PBKDF2_SHA512;
}

static const mbedtls_md_info_t *md_of(enum scram_mech m)
{
	return mbedtls_md_info_from_type(m == SCRAM_SHA256 ? MBEDTLS_MD_SHA256 : MBEDTLS_MD_SHA512);
}

static size_t key_len(enum scram_mech m)
{
	return pw_hash_len(scram_pw_kind(m));
}

static int hmac(enum scram_mech m, const unsigned char *key, size_t klen, const void *data,
		size_t n, unsigned char *out)
{
	return mbedtls_md_hmac(md_of(m), key, klen, data, n, out) ? -1 : 0;
}

int scram_cred_from_salted(enum scram_mech m, const unsigned char *salted,
			   const unsigned char *salt, size_t salt_len, uint32_t iterations,
			   struct scram_cred *out)
{
	unsigned char client_key[SCRAM_KEY_MAX];
	size_t n = key_len(m);
	int rc;

	if (salt_len > sizeof(out->salt))
		return -1;
	memset(out, 0, sizeof(*out));
	memcpy(out->salt, salt, salt_len);
	out->salt_len = salt_len;
	out->iterations = iterations;
	rc = hmac(m, salted, n, "Client Key", 10, client_key);
	if (!rc)
		rc = mbedtls_md(md_of(m), client_key, n, out->stored_key) ? -1 : 0;
	if (!rc)
		rc = hmac(m, salted, n, "Server Key", 10, out->server_key);
	mbedtls_platform_zeroize(client_key, sizeof(client_key));
	out->real = rc == 0;
	return rc;
}

int scram_cred_fake(enum scram_mech m, const unsigned char *secret, size_t secret_len,
		    const char *user, size_t ulen, uint32_t iterations, struct scram_cred *out)
{
	unsigned char derived[SCRAM_KEY_MAX];

	/* salt and "salted password" both from the secret: stable, and unguessable */
	if (hmac(m, secret, secret_len, user, ulen, derived) ||
	    scram_cred_from_salted(m, derived, derived, PW_SALT_LEN, iterations, out))
		return -1;
	out->real = false;
	return 0;
}

/* --- the exchange ------------------------------------------------------------ */

struct scram *scram_new(enum scram_mech m)
{
	struct scram *s = mem_calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->mech = m;
	buf_init(&s->auth_msg);
	return s;
}

void scram_free(struct scram *s)
{
	if (!s)
		return;
	mem_free(s->user);
	mem_free(s->gs2_full);
	mem_free(s->nonce);
	buf_free(&s->auth_msg);
	mbedtls_platform_zeroize(&s->cred, sizeof(s->cred));
	mem_free(s);
}

enum scram_mech scram_mech(const struct scram *s)
{
	return s->mech;
}

const char *scram_username(const struct scram *s, size_t *len)
{
	*len = s->ulen;
	return s->user;
}

/* The attribute "k=" at *p (end at e): its value's length, *p moved past it and its ','. */
static long attribute(const char **p, const char *e, char k)
{
	const char *v = *p + 2, *comma;

	if (e - *p < 2 || (*p)[0] != k || (*p)[1] != '=')
		return -1;
	comma = memchr(v, ',', (size_t)(e - v));
	*p = comma ? comma + 1 : e;
	return (comma ? comma : e) - v;
}

/* A saslname (n bytes): "=2C" is ',' and "=3D" is '='; any other '=' is an error. NULL: bad. */
static char *saslname(const char *v, size_t n, size_t *out_len)
{
	char *u = mem_alloc(n + 1);
	size_t j = 0;

	if (!u)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (v[i] != '=') {
			u[j++] = v[i];
			continue;
		}
		if (i + 2 >= n || (memcmp(v + i + 1, "2C", 2) && memcmp(v + i + 1, "3D", 2))) {
			mem_free(u);
			return NULL;
		}
		u[j++] = v[i + 1] == '2' ? ',' : '=';
		i += 2;
	}
	u[j] = '\0';
	if (!j || utf8_check(u, j)) {
		mem_free(u);
		return NULL;
	}
	*out_len = j;
	return u;
}

/* The GS2 header: "n,," or "y,," with an optional "a=" authzid: its length, or -1. */
static long gs2_header(const char *msg, size_t len, const char **why)
{
	const char *e = msg + len, *p, *end;

	*why = "client-first-message: no GS2 header (\"n,,\")";
	if (len >= 2 && msg[0] == 'p' && msg[1] == '=') {
		*why = "client-first-message: channel binding is not supported";
		return -1;
	}
	if (len < 3 || (msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',')
		return -1;
	p = msg + 2;
	end = memchr(p, ',', (size_t)(e - p));
	if (!end)
		return -1;
	return end + 1 - msg;
}

/* The authzid of the header (between the first two commas) must be absent or the user. */
static int check_authzid(const struct scram *s, const char *a, size_t n, const char **why)
{
	size_t alen;
	char *az;
	bool same;

	if (!n)
		return 0;
	*why = "client-first-message: the authorization identity is not the user";
	if (n < 3 || a[0] != 'a' || a[1] != '=')
		return -1;
	az = saslname(a + 2, n - 2, &alen);
	same = az && alen == s->ulen && !memcmp(az, s->user, alen);
	mem_free(az);
	return same ? 0 : -1;
}

static bool printable_nonce(const char *v, size_t n)
{
	if (!n || n > SCRAM_NONCE_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (v[i] < 0x21 || v[i] > 0x7e || v[i] == ',')
			return false;
	return true;
}

/* client-first-message-bare: [m=...,] n=user,r=nonce[,ext...] */
static int first_bare(struct scram *s, const char *p, const char *e, const char **why)
{
	const char *v;
	long n;

	*why = "client-first-message: mandatory extensions are not supported";
	if (e - p >= 2 && p[0] == 'm' && p[1] == '=')
		return -1;
	*why = "client-first-message: no valid n=username";
	v = p + 2;
	n = attribute(&p, e, 'n');
	if (n < 1 || !(s->user = saslname(v, (size_t)n, &s->ulen)))
		return -1;
	*why = "client-first-message: no valid r=nonce";
	v = p + 2;
	n = attribute(&p, e, 'r');
	if (n < 1 || !printable_nonce(v, (size_t)n))
		return -1;
	s->nonce = mem_strndup(v, (size_t)n);
	s->nonce_len = (size_t)n;
	*why = "out of memory";
	return s->nonce ? 0 : -1;
}

int scram_client_first(struct scram *s, const char *msg, size_t len, const char **why)
{
	long h;

	if (s->step != FRESH) {
		*why = "client-first-message out of order";
		return -1;
	}
	*why = "client-first-message: no GS2 header (\"n,,\")";
	if (!msg || !len)
		return -1; /* (no pointer arithmetic on NULL below) */
	*why = "client-first-message: a NUL byte";
	if (memchr(msg, '\0', len))
		return -1;
	h = gs2_header(msg, len, why);
	if (h < 0 || first_bare(s, msg + h, msg + len, why) ||
	    check_authzid(s, msg + 2, (size_t)h - 3, why))
		return -1;
	s->gs2_full = mem_strndup(msg, (size_t)h);
	s->gs2_full_len = (size_t)h;
	if (!s->gs2_full || buf_put(&s->auth_msg, msg + h, len - (size_t)h)) {
		*why = "out of memory";
		return -1;
	}
	s->step = GOT_FIRST;
	return 0;
}

int scram_make_nonce(char out[SCRAM_SNONCE_LEN + 1])
{
	unsigned char raw[SCRAM_SNONCE_LEN / 4 * 3];
	size_t n = 0;

	if (pw_random(raw, sizeof(raw)) ||
	    mbedtls_base64_encode((unsigned char *)out, SCRAM_SNONCE_LEN + 1, &n, raw, sizeof(raw)))
		return -1;
	out[n] = '\0';
	return 0;
}

int scram_server_first(struct scram *s, const struct scram_cred *cred, const char *snonce,
		       struct buf *out)
{
	unsigned char salt64[PW_SALT_MAX * 2];
	size_t sl = 0, sn = strlen(snonce);
	char *nonce, head[64];
	size_t start = out->len;
	int hn;

	if (s->step != GOT_FIRST || !printable_nonce(snonce, sn) ||
	    mbedtls_base64_encode(salt64, sizeof(salt64), &sl, cred->salt, cred->salt_len))
		return -1;
	nonce = mem_alloc(s->nonce_len + sn + 1);
	if (!nonce)
		return -1;
	memcpy(nonce, s->nonce, s->nonce_len);
	memcpy(nonce + s->nonce_len, snonce, sn + 1);
	mem_free(s->nonce);
	s->nonce = nonce;
	s->nonce_len += sn;
	s->cred = *cred;
	hn = snprintf(head, sizeof(head), ",i=%u", (unsigned)cred->iterations);
	if (buf_put(out, "r=", 2) || buf_put(out, nonce, s->nonce_len) || buf_put(out, ",s=", 3) ||
	    buf_put(out, salt64, sl) || buf_put(out, head, (size_t)hn) ||
	    buf_put(&s->auth_msg, ",", 1) ||
	    buf_put(&s->auth_msg, out->data + start, out->len - start))
		return -1;
	s->step = SENT_FIRST;
	return 0;
}

/* Does c= (base64, n chars) carry the GS2 header of the first message? */
static bool binding_matches(const struct scram *s, const char *v, size_t n)
{
	unsigned char got[64];
	size_t glen = 0;

	if (mbedtls_base64_decode(got, sizeof(got), &glen, (const unsigned char *)v, n))
		return false;
	return glen == s->gs2_full_len && !memcmp(got, s->gs2_full, glen);
}

/* Splits "c=..,r=..[,ext],p=PROOF": the proof decoded into proof; -1 with *why and *err. */
static int parse_final(struct scram *s, const char *msg, size_t len, unsigned char *proof,
		       size_t *without_proof, const char **why, const char **err)
{
	const char *e = msg + len, *p = msg, *v, *pp;
	size_t plen = 0;
	long n;

	*err = "e=other-error";
	*why = "client-final-message: no c=, r= and p=";
	v = p + 2;
	n = attribute(&p, e, 'c');
	if (n < 0)
		return -1;
	if (!binding_matches(s, v, (size_t)n)) {
		*why = "client-final-message: c= is not the GS2 header of the first message";
		*err = "e=channel-bindings-dont-match";
		return -1;
	}
	v = p + 2;
	n = attribute(&p, e, 'r');
	if (n < 0)
		return -1;
	if ((size_t)n != s->nonce_len || memcmp(v, s->nonce, s->nonce_len)) {
		*why = "client-final-message: r= is not this exchange's nonce (replayed?)";
		return -1;
	}
	/* the proof is the last attribute: after the last ',' (extensions may come between) */
	pp = memrchr(msg, ',', len);
	if (!pp || pp < p - 1 || e - pp < 3 || pp[1] != 'p' || pp[2] != '=' ||
	    mbedtls_base64_decode(proof, SCRAM_KEY_MAX, &plen, (const unsigned char *)pp + 3,
				  (size_t)(e - pp - 3)) ||
	    plen != key_len(s->mech)) {
		*why = "client-final-message: no p= proof of the hash's length last";
		return -1;
	}
	*without_proof = (size_t)(pp - msg);
	return 0;
}

/* Is proof right for the AuthMessage? Computes it all whatever cred is. */
static bool proof_ok(struct scram *s, const unsigned char *proof)
{
	unsigned char sig[SCRAM_KEY_MAX], key[SCRAM_KEY_MAX], stored[SCRAM_KEY_MAX];
	size_t n = key_len(s->mech);
	bool ok;

	if (hmac(s->mech, s->cred.stored_key, n, s->auth_msg.data, s->auth_msg.len, sig))
		return false;
	for (size_t i = 0; i < n; i++)
		key[i] = proof[i] ^ sig[i];
	ok = !mbedtls_md(md_of(s->mech), key, n, stored) &&
	     pw_equal_ct(stored, s->cred.stored_key, n);
	mbedtls_platform_zeroize(key, sizeof(key));
	return ok && s->cred.real;
}

static int server_final(struct scram *s, struct buf *out)
{
	unsigned char sig[SCRAM_KEY_MAX], sig64[SCRAM_KEY_MAX * 2];
	size_t n = key_len(s->mech), sl = 0;

	if (hmac(s->mech, s->cred.server_key, n, s->auth_msg.data, s->auth_msg.len, sig) ||
	    mbedtls_base64_encode(sig64, sizeof(sig64), &sl, sig, n))
		return -1;
	return buf_put(out, "v=", 2) || buf_put(out, sig64, sl) ? -1 : 0;
}

int scram_client_final(struct scram *s, const char *msg, size_t len, struct buf *out,
		       const char **why)
{
	unsigned char proof[SCRAM_KEY_MAX];
	const char *err = "e=other-error";
	size_t head = 0;
	int rc = -1;

	if (s->step != SENT_FIRST) {
		*why = "client-final-message out of order";
		return -1;
	}
	s->step = DONE;
	if (!msg || !len) {
		*why = "client-final-message: no c=, r= and p=";
	} else if (memchr(msg, '\0', len)) {
		*why = "client-final-message: a NUL byte";
	} else if (!parse_final(s, msg, len, proof, &head, why, &err)) {
		if (buf_put(&s->auth_msg, ",", 1) || buf_put(&s->auth_msg, msg, head)) {
			*why = "out of memory";
		} else if (!proof_ok(s, proof)) {
			*why = s->cred.real ? "wrong password (the proof does not match)"
					    : "no such user, or no credential for this mechanism";
			err = "e=invalid-proof";
		} else {
			rc = server_final(s, out);
			*why = rc ? "out of memory" : NULL;
		}
	}
	if (rc)
		buf_put(out, err, strlen(err));
	return rc;
}
