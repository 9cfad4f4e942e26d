/*
 * auth.c - who may connect (auth.h): the policy of mosquitto 2 over the
 * password file of passwd.c.
 *
 * Owns: the loaded password table and the copy of the two directives it
 * needs. Runs on the broker's loop only (CONNECT, and the SIGHUP reload the
 * loop performs between turns).
 *
 * The rules, measured against Debian's mosquitto 2.0.11: a client without a
 * username connects only with allow_anonymous true; a client with one needs
 * a password file that lists it and the right password (without a password
 * file, allow_anonymous true lets any username in, false nobody); a
 * username without a password never matches; an empty username counts as
 * none (whatever the password). Every refusal is the same
 * CONNACK (0x87 / 5) for the caller; only the log says which case it was.
 *
 * Invariant: table is the last password file that loaded completely; a
 * reload that fails leaves it in place.
 */
#include "auth.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "passwd.h"

#include <string.h>

static struct {
	bool allow_anonymous;
	char *file, *where; /* password_file and "FILE:LINE" of its directive; NULL = none */
	struct pw_table *table;
} auth;

static struct pw_table *load(void)
{
	char err[512];
	struct pw_table *t = pw_load(auth.file, err, sizeof(err));

	if (!t)
		log_err("%s: password_file: %s", auth.where, err);
	return t;
}

int auth_init(const struct config *cfg)
{
	auth_shutdown();
	auth.allow_anonymous = cfg->allow_anonymous;
	if (!cfg->password_file)
		return 0;
	auth.file = mem_strdup(cfg->password_file);
	auth.where = mem_strdup(cfg->password_file_where ? cfg->password_file_where : "-");
	if (!auth.file || !auth.where) {
		log_err("password_file: out of memory");
		return -1;
	}
	if (!(auth.table = load()))
		return -1;
	log_info("password file %s: %zu users", auth.file, pw_count(auth.table));
	return 0;
}

int auth_reload(void)
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

void auth_shutdown(void)
{
	pw_free(auth.table);
	mem_free(auth.file);
	mem_free(auth.where);
	memset(&auth, 0, sizeof(auth));
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
