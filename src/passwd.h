/*
 * passwd.h - mosquitto's password file: reading it, checking a password
 * against it, and writing its hashes (for sluice-passwd).
 *
 * A line is "username:hash"; lines starting with '#' and lines without ':'
 * are skipped, as mosquitto does. Hashes:
 *   $7$ITERATIONS$SALT$HASH  PBKDF2-HMAC-SHA512 (mosquitto_passwd 2.x)
 *   $6$SALT$HASH             SHA-512 of password then salt (mosquitto 1.x)
 *   $pbkdf2-sha256$ITERATIONS$SALT$HASH  PBKDF2-HMAC-SHA256 (sluice, in
 *                            passlib's layout; mosquitto does not read it)
 *   $argon2id$v=19$m=KIB,t=PASSES,p=LANES$SALT$HASH  Argon2id (mosquitto
 *                            2.1's default; the PHC string; read, not written)
 * SALT and HASH in standard base64 (passlib's "adapted" base64 for
 * $pbkdf2-sha256$: '.' for '+', no padding; both are read); HASH is 64
 * bytes (32 for SHA-256). A $7$ hash is also the SCRAM-SHA-512 salted
 * password, a $pbkdf2-sha256$ one the SCRAM-SHA-256 salted password
 * (RFC 5802: Hi() is PBKDF2 with HMAC).
 */
#ifndef SLUICE_PASSWD_H
#define SLUICE_PASSWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PW_HASH_LEN 64 /* SHA-512: the longest hash */
#define PW_HASH256_LEN 32 /* SHA-256 */
#define PW_SALT_MAX 64 /* bytes of salt we accept (mosquitto_passwd writes 12) */
#define PW_SALT_LEN 12 /* what we write */
#define PW_ITERATIONS 101 /* mosquitto_passwd's default, which we write */
#define PW_ITERATIONS_SHA256 4096 /* what we write for $pbkdf2-sha256$: RFC 7677's minimum */
#define PW_ITERATIONS_MAX 10000000
#define PW_LINE_MAX 65536 /* bytes of one line, without its ending */

enum pw_kind {
	PW_SHA512 = 6, /* $6$ */
	PW_PBKDF2_SHA512 = 7, /* $7$ */
	PW_PBKDF2_SHA256 = 256, /* $pbkdf2-sha256$ */
	PW_ARGON2ID = 1002, /* $argon2id$ */
};

#define PW_ARGON2_MAX_KIB (1024 * 1024) /* m= we take at most: 1 GiB per check */

struct pw_entry {
	char *username; /* NUL-terminated, may hold no NUL inside */
	enum pw_kind kind;
	uint32_t iterations; /* $7$, $pbkdf2-sha256$; $argon2id$: t= */
	uint32_t argon_kib; /* $argon2id$: m= */
	uint8_t argon_lanes, argon_len; /* $argon2id$: p=, and its hash's length */
	unsigned char salt[PW_SALT_MAX];
	size_t salt_len;
	unsigned char hash[PW_HASH_LEN]; /* pw_hash_len(kind) bytes of it */
};

struct pw_table; /* opaque: the entries of one file, looked up by username */

/*
 * Reads path into a new table. On error returns NULL with a message in err
 * ("PATH: cannot open: ...", "PATH:LINE: ..."): an unreadable file, a line
 * over PW_LINE_MAX, a hash that is not one of the forms above, a username
 * given twice.
 */
struct pw_table *pw_load(const char *path, char *err, size_t errlen);
void pw_free(struct pw_table *t);
size_t pw_count(const struct pw_table *t);

/* The entry of username (ulen bytes), or NULL. */
const struct pw_entry *pw_find(const struct pw_table *t, const char *username, size_t ulen);

/*
 * Does password (plen bytes) match e? Always computes the hash (e NULL: a
 * dummy one, so that an unknown user costs as much time as a known one) and
 * compares in constant time; false for e NULL.
 */
bool pw_verify(const struct pw_entry *e, const void *password, size_t plen);

/*
 * Parses one hash ("$7$...", "$6$..." or "$pbkdf2-sha256$...", nothing after
 * it) into e's kind, iterations, salt and hash (not its username): 0, or -1
 * with a reason.
 */
int pw_parse_hash(const char *s, struct pw_entry *e, const char **why);

/*
 * Writes the line of username for password with iterations and salt
 * (salt_len bytes, at most PW_SALT_MAX) into out: "username:$7$..." (kind
 * PW_PBKDF2_SHA512) or "username:$pbkdf2-sha256$..." (PW_PBKDF2_SHA256).
 * Returns its length, or -1 if out (outlen bytes) is too small.
 */
int pw_format_line(char *out, size_t outlen, enum pw_kind kind, const char *username,
		   const void *password, size_t plen, uint32_t iterations,
		   const unsigned char *salt, size_t salt_len);

/* Are a and b (n bytes) equal? Compares every byte, whatever differs (constant time). */
bool pw_equal_ct(const unsigned char *a, const unsigned char *b, size_t n);

/* n random bytes from mbedTLS's CTR-DRBG seeded by the system's entropy: 0 or -1. */
int pw_random(unsigned char *out, size_t n);

/*
 * PBKDF2 with HMAC-SHA512 (kind PW_PBKDF2_SHA512; out: PW_HASH_LEN bytes) or
 * HMAC-SHA256 (PW_PBKDF2_SHA256; PW_HASH256_LEN bytes): 0 or -1.
 */
int pw_pbkdf2(enum pw_kind kind, const void *password, size_t plen, const unsigned char *salt,
	      size_t salt_len, uint32_t iterations, unsigned char *out);
/* The length of kind's hash (Argon2id's varies: see pw_entry.argon_len). */
size_t pw_hash_len(enum pw_kind kind);

#endif
