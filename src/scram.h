/*
 * scram.h - the server side of one SCRAM exchange (RFC 5802; SHA-256 as
 * RFC 7677, SHA-512 the same with its hash), without channel binding.
 *
 *   client-first  "n,,n=user,r=CNONCE"            scram_client_first
 *   server-first  "r=CNONCE SNONCE,s=SALT,i=N"    scram_server_first
 *   client-final  "c=biws,r=CNONCE SNONCE,p=PROOF" scram_client_final
 *   server-final  "v=SIGNATURE" (or "e=invalid-proof")
 *
 * The transport (MQTT 5 AUTH packets) and where credentials come from are
 * the caller's: this only parses, computes and checks.
 */
#ifndef SLUICE_SCRAM_H
#define SLUICE_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "passwd.h"

enum scram_mech {
	SCRAM_NONE = 0,
	SCRAM_SHA256 = 1,
	SCRAM_SHA512 = 2,
};

#define SCRAM_KEY_MAX 64 /* bytes of a SHA-512 key */
#define SCRAM_NONCE_MAX 255 /* bytes of the client's nonce we take */

/* What the server keeps of a user (RFC 5802 section 3), for one mechanism. */
struct scram_cred {
	unsigned char salt[PW_SALT_MAX];
	size_t salt_len;
	uint32_t iterations;
	unsigned char stored_key[SCRAM_KEY_MAX], server_key[SCRAM_KEY_MAX];
	bool real; /* false: made up for an unknown user; no proof matches it */
};

/* "SCRAM-SHA-256" / "SCRAM-SHA-512" (len bytes, exact case) to a mechanism, or SCRAM_NONE. */
enum scram_mech scram_mech_of(const char *name, size_t len);
const char *scram_mech_name(enum scram_mech m);
/* The password file's kind whose hash is m's salted password. */
enum pw_kind scram_pw_kind(enum scram_mech m);

/* The credential from a salted password (Hi(password, salt, i), the hash's length): 0 or -1. */
int scram_cred_from_salted(enum scram_mech m, const unsigned char *salted,
			   const unsigned char *salt, size_t salt_len, uint32_t iterations,
			   struct scram_cred *out);
/*
 * A credential for a user who has none: its salt derived from secret and the
 * username, so that asking twice gives the same answer and the exchange does
 * not tell an unknown user from a wrong password (RFC 5802 section 9).
 */
int scram_cred_fake(enum scram_mech m, const unsigned char *secret, size_t secret_len,
		    const char *user, size_t ulen, uint32_t iterations, struct scram_cred *out);

struct scram; /* one exchange */

struct scram *scram_new(enum scram_mech m); /* NULL: out of memory */
void scram_free(struct scram *s);
enum scram_mech scram_mech(const struct scram *s);

/*
 * Reads the client-first-message (len bytes): 0, or -1 with a reason for the
 * log. Then scram_username gives the user it names (NUL-terminated, valid
 * UTF-8, "=2C" and "=3D" decoded).
 */
int scram_client_first(struct scram *s, const char *msg, size_t len, const char **why);
const char *scram_username(const struct scram *s, size_t *len);

#define SCRAM_SNONCE_LEN 24 /* characters of the nonce scram_make_nonce makes */
/* A fresh server nonce (base64 of 18 random bytes) into out: 0, or -1. */
int scram_make_nonce(char out[SCRAM_SNONCE_LEN + 1]);

/*
 * Appends the server-first-message to out, for cred and the server's nonce
 * snonce (printable ASCII without ','; NUL-terminated): 0, or -1.
 */
int scram_server_first(struct scram *s, const struct scram_cred *cred, const char *snonce,
		       struct buf *out);

/*
 * Reads the client-final-message and checks its proof. 0: authenticated,
 * the server-final-message ("v=...") appended to out. -1: refused, with a
 * reason for the log, and out holding the RFC's error ("e=...") when there
 * is one to send.
 */
int scram_client_final(struct scram *s, const char *msg, size_t len, struct buf *out,
		       const char **why);

#endif
