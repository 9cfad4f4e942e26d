/*
 * auth.c - who may connect and what they may read and write (auth.h): the
 * policy of mosquitto 2 over the password file of passwd.c and the ACL file
 * of acl.c.
 *
 * Owns: the loaded password and ACL tables and the copies of the directives
 * they need. Runs on the broker's loop only (CONNECT, PUBLISH, SUBSCRIBE,
 * deliveries, and the SIGHUP reload the loop performs between turns).
 *
 * The rules, measured against Debian's mosquitto 2.0.11: a client without a
 * username connects only with allow_anonymous true; a client with one needs
 * a password file that lists it and the right password (without a password
 * file, allow_anonymous true lets any username in, false nobody); a
 * username without a password never matches; an empty username counts as
 * none (whatever the password). Every refusal is the same
 * CONNACK (0x87 / 5) for the caller; only the log says which case it was.
 *
 * Without an acl_file everything is allowed; with one, acl.c answers (and
 * the answer applies at once to connections already open after a reload).
 *
 * Invariant: table and acl are the last files that loaded completely; a
 * reload that fails leaves the old one in place.
 */
#include "auth.h"
#include "acl.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "passwd.h"

#include <string.h>

static struct {
	bool allow_anonymous;
	char *file, *where; /* password_file and "FILE:LINE" of its directive; NULL = none */
	struct pw_table *table;
	char *acl_file, *acl_where; /* acl_file, likewise */
	struct acl_table *acl;
	unsigned char scram_secret[32]; /* salts the made-up SCRAM credentials of unknown users */
} auth;

static struct pw_table *load(void)
{
	char err[512];
	struct pw_table *t = pw_load(auth.file, err, sizeof(err));

	if (!t)
		log_err("%s: password_file: %s", auth.where, err);
	return t;
}

static struct acl_table *load_acl(void)
{
	char err[512];
	struct acl_table *t = acl_load(auth.acl_file, err, sizeof(err));

	if (!t)
		log_err("%s: acl_file: %s", auth.acl_where, err);
	return t;
}

/* Copies of a file's path and "FILE:LINE" ("-" when unknown): 0 or -1. */
static int copy_path(char **path, char **where, const char *p, const char *w)
{
	*path = mem_strdup(p);
	*where = mem_strdup(w ? w : "-");
	return *path && *where ? 0 : -1;
}

int auth_init(const struct config *cfg)
{
	auth_shutdown();
	auth.allow_anonymous = cfg->allow_anonymous;
	if (pw_random(auth.scram_secret, sizeof(auth.scram_secret))) {
		log_err("no random numbers for SCRAM");
		return -1;
	}
	if (cfg->password_file) {
		if (copy_path(&auth.file, &auth.where, cfg->password_file,
			      cfg->password_file_where)) {
			log_err("password_file: out of memory");
			return -1;
		}
		if (!(auth.table = load()))
			return -1;
		log_info("password file %s: %zu users", auth.file, pw_count(auth.table));
	}
	if (cfg->acl_file) {
		if (copy_path(&auth.acl_file, &auth.acl_where, cfg->acl_file,
			      cfg->acl_file_where)) {
			log_err("acl_file: out of memory");
			return -1;
		}
		if (!(auth.acl = load_acl()))
			return -1;
		log_info("ACL file %s: %zu rules", auth.acl_file, acl_rules(auth.acl));
	}
	return 0;
}

static int reload_passwords(void)
{
	struct pw_table *t;

	if (!auth.file)
		return 0;
	if (!(t = load())) {
		log_err("password file %s not reloaded: the previous one stays in force",
			auth.file);
		return -1;
	}
	pw_free(auth.table);
	auth.table = t;
	log_notice("password file %s reloaded: %zu users", auth.file, pw_count(t));
	return 0;
}

static int reload_acl(void)
{
	struct acl_table *t;

	if (!auth.acl_file)
		return 0;
	if (!(t = load_acl())) {
		log_err("ACL file %s not reloaded: the previous one stays in force", auth.acl_file);
		return -1;
	}
	acl_free(auth.acl);
	auth.acl = t;
	log_notice("ACL file %s reloaded: %zu rules", auth.acl_file, acl_rules(t));
	return 0;
}

int auth_reload(void)
{
	int a = reload_passwords(), b = reload_acl();

	return a || b ? -1 : 0;
}

void auth_shutdown(void)
{
	pw_free(auth.table);
	mem_free(auth.file);
	mem_free(auth.where);
	acl_free(auth.acl);
	mem_free(auth.acl_file);
	mem_free(auth.acl_where);
	memset(&auth, 0, sizeof(auth));
}

bool auth_acl_active(void)
{
	return auth.acl != NULL;
}

bool auth_may(const char *client_id, const char *username, const char *topic, size_t tlen,
	      enum acl_access access)
{
	return !auth.acl ||
	       acl_check(auth.acl, client_id ? client_id : "", username, topic, tlen, access);
}

bool auth_may_subscribe(const char *client_id, const char *username, const char *filter,
			size_t flen)
{
	return !auth.acl ||
	       acl_check_filter(auth.acl, client_id ? client_id : "", username, filter, flen);
}

bool auth_connect(const char *username, size_t ulen, const void *password, size_t plen,
		  const char **why)
{
	const struct pw_entry *e;

	if (username && !ulen)
		username = NULL; /* an empty username is no username, as in mosquitto 2.0.11 */
	if (!username) {
		*why = "anonymous clients are not allowed (allow_anonymous false)";
		return auth.allow_anonymous;
	}
	if (!auth.table) {
		*why = "no password file to check the username against (allow_anonymous false)";
		return auth.allow_anonymous;
	}
	e = pw_find(auth.table, username, ulen);
	if (!password) {
		pw_verify(NULL, "", 0); /* the same time as a check */
		*why = "username without a password";
		return false;
	}
	if (!pw_verify(e, password, plen)) {
		*why = e ? "wrong password" : "unknown username";
		return false;
	}
	return true;
}

/* The reason e cannot serve m (NULL: it can). */
static const char *no_scram(const struct pw_entry *e, enum scram_mech m)
{
	if (!auth.table)
		return "no password file";
	if (!e)
		return "unknown username";
	if (e->kind == scram_pw_kind(m))
		return NULL;
	if (e->kind == PW_SHA512)
		return "the user's hash is $6$ (mosquitto 1.x), which serves no SCRAM";
	return m == SCRAM_SHA256
		       ? "the user's hash is $7$, which serves SCRAM-SHA-512, not -256"
		       : "the user's hash is $pbkdf2-sha256$, which serves SCRAM-SHA-256, "
			 "not -512";
}

const char *auth_scram_cred(enum scram_mech m, const char *username, size_t ulen,
			    struct scram_cred *out)
{
	const struct pw_entry *e = auth.table ? pw_find(auth.table, username, ulen) : NULL;
	const char *why = no_scram(e, m);

	if (!why && !scram_cred_from_salted(m, e->hash, e->salt, e->salt_len, e->iterations, out))
		return NULL;
	if (scram_cred_fake(m, auth.scram_secret, sizeof(auth.scram_secret), username, ulen,
			    m == SCRAM_SHA256 ? PW_ITERATIONS_SHA256 : PW_ITERATIONS, out))
		memset(out, 0, sizeof(*out)); /* not real either: no proof matches */
	return why ? why : "out of memory";
}
