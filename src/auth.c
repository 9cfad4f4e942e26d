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
 * With per_listener_settings true (mosquitto's), each listener has its own
 * rules, a realm: allow_anonymous, password file and ACL file given after
 * its listener line; a connection is checked against its listener's realm
 * (the session keeps its index, so deliveries and plugins' checks use it
 * too). Otherwise there is one realm, the configuration's.
 *
 * Invariant: each realm's table and acl are the last files that loaded
 * completely; a reload that fails leaves the old one in place.
 */
#include "auth.h"
#include "acl.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "passwd.h"

#include <stdio.h>
#include <string.h>

/* One set of rules: the configuration's, or (per_listener_settings) one listener's. */
struct realm {
	bool allow_anonymous;
	char *file, *where; /* password_file and "FILE:LINE" of its directive; NULL = none */
	struct pw_table *table;
	char *acl_file, *acl_where; /* acl_file, likewise */
	struct acl_table *acl;
	char label[40]; /* "" or "listener 8883: ", for log lines */
};

static struct {
	struct realm *realms; /* [0]: the configuration's; [i + 1]: listener i's */
	size_t n;
	bool any_acl;
	unsigned char scram_secret[32]; /* salts the made-up SCRAM credentials of unknown users */
} auth;

/* realm's rules (the configuration's for an unknown one; none before auth_init). */
static const struct realm *realm_of(unsigned realm)
{
	static const struct realm none;

	if (!auth.n)
		return &none;
	return &auth.realms[realm < auth.n ? realm : 0];
}

static struct pw_table *load(const struct realm *r)
{
	char err[512];
	struct pw_table *t = pw_load(r->file, err, sizeof(err));

	if (!t)
		log_err("%s: password_file: %s", r->where, err);
	return t;
}

static struct acl_table *load_acl(const struct realm *r)
{
	char err[512];
	struct acl_table *t = acl_load(r->acl_file, err, sizeof(err));

	if (!t)
		log_err("%s: acl_file: %s", r->acl_where, err);
	return t;
}

/* Copies of a file's path and "FILE:LINE" ("-" when unknown): 0 or -1. */
static int copy_path(char **path, char **where, const char *p, const char *w)
{
	*path = mem_strdup(p);
	*where = mem_strdup(w ? w : "-");
	return *path && *where ? 0 : -1;
}

static int realm_init(struct realm *r, const struct security_conf *sc)
{
	r->allow_anonymous = sc->allow_anonymous;
	if (sc->password_file) {
		if (copy_path(&r->file, &r->where, sc->password_file, sc->password_file_where)) {
			log_err("password_file: out of memory");
			return -1;
		}
		if (!(r->table = load(r)))
			return -1;
		log_info("%spassword file %s: %zu users", r->label, r->file, pw_count(r->table));
	}
	if (sc->acl_file) {
		if (copy_path(&r->acl_file, &r->acl_where, sc->acl_file, sc->acl_file_where)) {
			log_err("acl_file: out of memory");
			return -1;
		}
		if (!(r->acl = load_acl(r)))
			return -1;
		log_info("%sACL file %s: %zu rules", r->label, r->acl_file, acl_rules(r->acl));
		auth.any_acl = true;
	}
	return 0;
}

size_t auth_realm_of_listener(const struct config *cfg, size_t listener)
{
	if (!cfg->per_listener_settings || cfg->listeners[listener].default_security)
		return 0;
	return listener + 1;
}

int auth_init(const struct config *cfg)
{
	auth_shutdown();
	if (pw_random(auth.scram_secret, sizeof(auth.scram_secret))) {
		log_err("no random numbers for SCRAM");
		return -1;
	}
	auth.n = cfg->per_listener_settings ? cfg->n_listeners + 1 : 1;
	auth.realms = mem_calloc(auth.n, sizeof(*auth.realms));
	if (!auth.realms) {
		log_err("security settings: out of memory");
		return -1;
	}
	if (realm_init(&auth.realms[0], &cfg->security))
		return -1;
	for (size_t i = 1; i < auth.n; i++) {
		struct realm *r = &auth.realms[i];

		snprintf(r->label, sizeof(r->label), "listener %d: ", cfg->listeners[i - 1].port);
		if (auth_realm_of_listener(cfg, i - 1) &&
		    realm_init(r, &cfg->listeners[i - 1].security))
			return -1;
	}
	return 0;
}

static int reload_passwords(struct realm *r)
{
	struct pw_table *t;

	if (!r->file)
		return 0;
	if (!(t = load(r))) {
		log_err("%spassword file %s not reloaded: the previous one stays in force",
			r->label, r->file);
		return -1;
	}
	pw_free(r->table);
	r->table = t;
	log_notice("%spassword file %s reloaded: %zu users", r->label, r->file, pw_count(t));
	return 0;
}

static int reload_acl(struct realm *r)
{
	struct acl_table *t;

	if (!r->acl_file)
		return 0;
	if (!(t = load_acl(r))) {
		log_err("%sACL file %s not reloaded: the previous one stays in force", r->label,
			r->acl_file);
		return -1;
	}
	acl_free(r->acl);
	r->acl = t;
	log_notice("%sACL file %s reloaded: %zu rules", r->label, r->acl_file, acl_rules(t));
	return 0;
}

int auth_reload(void)
{
	int rc = 0;

	for (size_t i = 0; i < auth.n; i++) {
		int a = reload_passwords(&auth.realms[i]), b = reload_acl(&auth.realms[i]);

		if (a || b)
			rc = -1;
	}
	return rc;
}

void auth_shutdown(void)
{
	for (size_t i = 0; i < auth.n; i++) {
		struct realm *r = &auth.realms[i];

		pw_free(r->table);
		mem_free(r->file);
		mem_free(r->where);
		acl_free(r->acl);
		mem_free(r->acl_file);
		mem_free(r->acl_where);
	}
	mem_free(auth.realms);
	memset(&auth, 0, sizeof(auth));
}

bool auth_acl_active(void)
{
	return auth.any_acl;
}

bool auth_may(unsigned realm, const char *client_id, const char *username, const char *topic,
	      size_t tlen, enum acl_access access)
{
	const struct realm *r = realm_of(realm);

	return !r->acl ||
	       acl_check(r->acl, client_id ? client_id : "", username, topic, tlen, access);
}

bool auth_may_subscribe(unsigned realm, const char *client_id, const char *username,
			const char *filter, size_t flen)
{
	const struct realm *r = realm_of(realm);

	return !r->acl ||
	       acl_check_filter(r->acl, client_id ? client_id : "", username, filter, flen);
}

bool auth_connect(unsigned realm, const char *username, size_t ulen, const void *password,
		  size_t plen, const char **why)
{
	const struct realm *r = realm_of(realm);
	const struct pw_entry *e;

	if (username && !ulen)
		username = NULL; /* an empty username is no username, as in mosquitto 2.0.11 */
	if (!username) {
		*why = "anonymous clients are not allowed (allow_anonymous false)";
		return r->allow_anonymous;
	}
	if (!r->table) {
		*why = "no password file to check the username against (allow_anonymous false)";
		return r->allow_anonymous;
	}
	e = pw_find(r->table, username, ulen);
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

bool auth_password_ok(unsigned realm, const char *username, size_t ulen, const void *password,
		      size_t plen)
{
	const struct realm *r = realm_of(realm);

	if (!r->table) {
		pw_verify(NULL, "", 0); /* the same time as a check */
		return false;
	}
	return pw_verify(pw_find(r->table, username, ulen), password, plen);
}

/* The reason e cannot serve m (NULL: it can). */
static const char *no_scram(const struct realm *r, const struct pw_entry *e, enum scram_mech m)
{
	if (!r->table)
		return "no password file";
	if (!e)
		return "unknown username";
	if (e->kind == scram_pw_kind(m))
		return NULL;
	if (e->kind == PW_SHA512)
		return "the user's hash is $6$ (mosquitto 1.x), which serves no SCRAM";
	if (e->kind == PW_ARGON2ID)
		return "the user's hash is $argon2id$, which serves no SCRAM";
	return m == SCRAM_SHA256
		       ? "the user's hash is $7$, which serves SCRAM-SHA-512, not -256"
		       : "the user's hash is $pbkdf2-sha256$, which serves SCRAM-SHA-256, "
			 "not -512";
}

const char *auth_scram_cred(unsigned realm, enum scram_mech m, const char *username, size_t ulen,
			    struct scram_cred *out)
{
	const struct realm *r = realm_of(realm);
	const struct pw_entry *e = r->table ? pw_find(r->table, username, ulen) : NULL;
	const char *why = no_scram(r, e, m);

	if (!why && !scram_cred_from_salted(m, e->hash, e->salt, e->salt_len, e->iterations, out))
		return NULL;
	if (scram_cred_fake(m, auth.scram_secret, sizeof(auth.scram_secret), username, ulen,
			    m == SCRAM_SHA256 ? PW_ITERATIONS_SHA256 : PW_ITERATIONS, out))
		memset(out, 0, sizeof(*out)); /* not real either: no proof matches */
	return why ? why : "out of memory";
}
