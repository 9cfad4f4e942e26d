/*
 * passwd.h - mosquitto's password file: reading it, checking a password
 * against it, and writing its hashes (for sluice-passwd).
 *
 * A line is "username:hash"; lines starting with '#' and lines without ':'
 * are skipped, as mosquitto does. Hashes:
 *   $7$ITERATIONS$SALT$HASH  PBKDF2-HMAC-SHA512 (mosquitto_passwd 2.x)
 *   $6$SALT$HASH             SHA-512 of password then salt (mosquitto 1.x)
 * SALT and HASH in standard base64; HASH is 64 bytes. A $7$ hash is also the
 * SCRAM-SHA-512 salted password (RFC 5802: Hi() is PBKDF2 with HMAC).
 */
#ifndef SLUICE_PASSWD_H
#define SLUICE_PASSWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PW_HASH_LEN 64 /* SHA-512 */
#define PW_SALT_MAX 64 /* bytes of salt we accept (mosquitto_passwd writes 12) */
#define PW_SALT_LEN 12 /* what we write */
#define PW_ITERATIONS 101 /* mosquitto_passwd's default, which we write */
#define PW_ITERATIONS_MAX 10000000
#define PW_LINE_MAX 65536 /* bytes of one line, without its ending */

enum pw_kind {
	PW_SHA512 = 6, /* $6$ */
	PW_PBKDF2_SHA512 = 7, /* $7$ */
};

struct pw_entry {
	char *username; /* NUL-terminated, may hold no NUL inside */
	enum pw_kind kind;
	uint32_t iterations; /* $7$ only */
	unsigned char salt[PW_SALT_MAX];
	size_t salt_len;
	unsigned char hash[PW_HASH_LEN];
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
 * Parses one hash ("$7$..." or "$6$...", nothing after it) into e's kind,
 * iterations, salt and hash (not its username): 0, or -1 with a reason.
 */
int pw_parse_hash(const char *s, struct pw_entry *e, const char **why);

/*
 * Writes the $7$ line of username for password with iterations and salt
 * (salt_len bytes, at most PW_SALT_MAX) into out: "username:$7$...". Returns
 * its length, or -1 if out (outlen bytes) is too small.
 */
int pw_format_line(char *out, size_t outlen, const char *username, const void *password,
		   size_t plen, uint32_t iterations, const unsigned char *salt, size_t salt_len);

/* n random bytes from mbedTLS's CTR-DRBG seeded by the system's entropy: 0 or -1. */
int pw_random(unsigned char *out, size_t n);

/* PBKDF2-HMAC-SHA512 (out: PW_HASH_LEN bytes): 0 or -1. */
int pw_pbkdf2_sha512(const void *password, size_t plen, const unsigned char *salt, size_t salt_len,
		     uint32_t iterations, unsigned char *out);

#endif
