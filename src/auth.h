/*
 * auth.h - who may connect (allow_anonymous and the password file) and
 * what a client may read and write (the ACL file), as mosquitto 2 decides.
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "acl.h"
#include "scram.h"

struct config;

/*
 * Loads cfg's password and ACL files (every listener's, with
 * per_listener_settings): 0, or -1 after logging "FILE:LINE: password_file: ...".
 */
int auth_init(const struct config *cfg);
/*
 * The realm (set of rules) of the listener cfg->listeners[listener]: 0 (the
 * configuration's), or with per_listener_settings its own. Every check below
 * takes a connection's realm.
 */
size_t auth_realm_of_listener(const struct config *cfg, size_t listener);
/* SIGHUP: reads the password and ACL files again; one that fails keeps its old self (logged). */
int auth_reload(void);
void auth_shutdown(void);

/*
 * May a CONNECT with this username (NULL: none; ulen bytes) and password
 * (NULL: none) connect? False with *why, a reason for the log that never
 * holds the password.
 */
bool auth_connect(unsigned realm, const char *username, size_t ulen, const void *password,
		  size_t plen, const char **why);

/*
 * The SCRAM credential of username (ulen bytes) for m: from its password
 * file entry when that holds m's salted password ($7$ for SCRAM-SHA-512,
 * $pbkdf2-sha256$ for SCRAM-SHA-256); else a made-up one, with which the
 * exchange fails as with a wrong password. Returns NULL for a real one, or
 * why there is none (for the log).
 */
const char *auth_scram_cred(unsigned realm, enum scram_mech m, const char *username, size_t ulen,
			    struct scram_cred *out);

/*
 * Is password right for username in realm's password file (there must be
 * one: allow_anonymous lets nobody in here)? For the HTTP API's Basic
 * credentials; the same constant-time check as a CONNECT's.
 */
bool auth_password_ok(unsigned realm, const char *username, size_t ulen, const void *password,
		      size_t plen);

/* Is an ACL file in force in any realm (else every check below allows)? */
bool auth_acl_active(void);
/* May the client (username NULL: none) read or write topic? */
bool auth_may(unsigned realm, const char *client_id, const char *username, const char *topic,
	      size_t tlen, enum acl_access access);
/* May it read anything of filter (no "$share/" prefix)? */
bool auth_may_subscribe(unsigned realm, const char *client_id, const char *username,
			const char *filter, size_t flen);

#endif
