/*
 * listener_tls.c - TLS for the lws listeners (listener_tls.h), with
 * mosquitto's directives: certfile, keyfile, cafile, capath, crlfile,
 * require_certificate, use_identity_as_username, tls_version, ciphers and
 * ciphers_tls1.3.
 *
 * Owns: the list of live TLS contexts (one OpenSSL SSL_CTX per TLS vhost,
 * learnt when lws asks for extra verify certificates), so that SIGHUP can
 * put new certificates into them without closing a connection. Runs on the
 * loop thread (start-up, the lws callback, the reload between turns).
 *
 * lws (Debian's 4.1.6, built with OpenSSL) does the handshakes; what it has
 * no setting for is done here on its SSL_CTX with OpenSSL, which its header
 * brings: the lowest TLS version, capath, CRLs, and the reload. Before lws
 * sees a listener, tls_check loads its files into a scratch context, so a
 * bad path, a certificate that is not one, or a key that does not match
 * stops start-up with the directive's FILE:LINE instead of an lws message.
 *
 * Invariants: a context in the list belongs to a live vhost (the list is
 * dropped before the lws context is destroyed); a reload changes a live
 * context only after the new files loaded into a scratch one.
 */
#include "listener_tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "mem.h"

struct live {
	const struct listener_conf *l;
	SSL_CTX *ctx;
};

static struct live *lives;
static size_t n_lives, cap_lives;

bool tls_listener(const struct listener_conf *l)
{
	return l->certfile.s != NULL;
}

/* OpenSSL's last error, for a log line. */
static const char *ssl_error(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (!e)
		return "no details";
	ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

static int bad(const struct conf_str *cs, const char *directive, const char *what)
{
	char e[256];

	log_err("%s: %s: %s '%s' (%s)", cs->where ? cs->where : "-", directive, what,
		cs->s ? cs->s : "", ssl_error(e, sizeof(e)));
	return -1;
}

/* The directives that need others (mosquitto's rules), with the listener's FILE:LINE. */
static int check_consistent(const struct listener_conf *l)
{
	const char *w = l->where ? l->where : "-";

	if (l->keyfile.s && !l->certfile.s)
		return log_err("%s: keyfile without certfile", l->keyfile.where), -1;
	if (l->certfile.s && !l->keyfile.s)
		return log_err("%s: certfile without keyfile", l->certfile.where), -1;
	if (!tls_listener(l) && (l->cafile.s || l->capath.s || l->crlfile.s || l->ciphers.s ||
				 l->ciphers_tls13.s || l->require_certificate))
		return log_err("%s: listener %d: TLS directives without certfile and keyfile", w,
			       l->port),
		       -1;
	if (l->require_certificate && !l->cafile.s && !l->capath.s)
		return log_err("%s: listener %d: require_certificate needs cafile or capath",
			       l->require_where ? l->require_where : w, l->port),
		       -1;
	if (l->use_identity_as_username && !l->require_certificate)
		return log_err("%s: listener %d: use_identity_as_username needs "
			       "require_certificate true",
			       l->identity_where ? l->identity_where : w, l->port),
		       -1;
	return 0;
}

/* Every CRL of path into store, and CRL checking on: 0 or -1. */
static int load_crls(X509_STORE *store, const char *path)
{
	FILE *f = fopen(path, "r");
	X509_CRL *crl;
	int n = 0;

	if (!f)
		return -1;
	while ((crl = PEM_read_X509_CRL(f, NULL, NULL, NULL))) {
		if (!X509_STORE_add_crl(store, crl)) {
			X509_CRL_free(crl);
			fclose(f);
			return -1;
		}
		X509_CRL_free(crl);
		n++;
	}
	fclose(f);
	ERR_clear_error(); /* the end of the file reads as an error */
	if (!n)
		return -1;
	X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	return 0;
}

/* The certificate and key of l into ctx: 0 or -1 (logged). */
static int load_pair(const struct listener_conf *l, SSL_CTX *ctx)
{
	if (SSL_CTX_use_certificate_chain_file(ctx, l->certfile.s) != 1)
		return bad(&l->certfile, "certfile", "not a PEM certificate");
	if (SSL_CTX_use_PrivateKey_file(ctx, l->keyfile.s, SSL_FILETYPE_PEM) != 1)
		return bad(&l->keyfile, "keyfile",
			   ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH
				   ? "does not match the certificate of certfile"
				   : "not a PEM private key");
	if (SSL_CTX_check_private_key(ctx) != 1)
		return bad(&l->keyfile, "keyfile", "does not match the certificate of certfile");
	return 0;
}

/* The CAs and CRLs of l into ctx's store: 0 or -1 (logged). */
static int load_verify(const struct listener_conf *l, SSL_CTX *ctx)
{
	if ((l->cafile.s || l->capath.s) &&
	    SSL_CTX_load_verify_locations(ctx, l->cafile.s, l->capath.s) != 1)
		return bad(l->cafile.s ? &l->cafile : &l->capath, l->cafile.s ? "cafile" : "capath",
			   "holds no usable CA certificate");
	if (l->crlfile.s && load_crls(SSL_CTX_get_cert_store(ctx), l->crlfile.s))
		return bad(&l->crlfile, "crlfile", "holds no usable PEM CRL");
	return 0;
}

static int load_ciphers(const struct listener_conf *l, SSL_CTX *ctx)
{
	if (l->ciphers.s && SSL_CTX_set_cipher_list(ctx, l->ciphers.s) != 1)
		return bad(&l->ciphers, "ciphers", "names no cipher OpenSSL knows");
	if (l->ciphers_tls13.s && SSL_CTX_set_ciphersuites(ctx, l->ciphers_tls13.s) != 1)
		return bad(&l->ciphers_tls13, "ciphers_tls1.3", "is not a list of TLS 1.3 suites");
	return 0;
}

int tls_check(const struct listener_conf *l)
{
	SSL_CTX *ctx;
	int rc;

	if (check_consistent(l))
		return -1;
	if (!tls_listener(l))
		return 0;
	ERR_clear_error();
	if (!(ctx = SSL_CTX_new(TLS_server_method()))) {
		log_err("%s: listener %d: cannot make a TLS context", l->where ? l->where : "-",
			l->port);
		return -1;
	}
	rc = load_pair(l, ctx) || load_verify(l, ctx) || load_ciphers(l, ctx) ? -1 : 0;
	SSL_CTX_free(ctx);
	return rc;
}

void tls_vhost_info(const struct listener_conf *l, struct lws_context_creation_info *info)
{
	if (!tls_listener(l))
		return;
	/* lws 4.1.6 turns TLS on for a vhost only with this option in its own info */
	info->options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info->ssl_cert_filepath = l->certfile.s;
	info->ssl_private_key_filepath = l->keyfile.s;
	info->ssl_ca_filepath = l->cafile.s;
	info->ssl_cipher_list = l->ciphers.s;
	info->tls1_3_plus_cipher_list = l->ciphers_tls13.s;
	if (l->require_certificate)
		info->options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
}

static int min_version(int v)
{
	return v == 11 ? TLS1_1_VERSION : v == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

int tls_vhost_ready(const struct listener_conf *l, void *ssl_ctx)
{
	SSL_CTX *ctx = ssl_ctx;

	if (!l || !ctx || !tls_listener(l))
		return 0;
	if (SSL_CTX_set_min_proto_version(ctx, min_version(l->tls_version)) != 1)
		return bad(&l->certfile, "tls_version", "cannot be set for");
	if (l->capath.s && SSL_CTX_load_verify_locations(ctx, NULL, l->capath.s) != 1)
		return bad(&l->capath, "capath", "holds no usable CA certificate");
	if (l->crlfile.s && load_crls(SSL_CTX_get_cert_store(ctx), l->crlfile.s))
		return bad(&l->crlfile, "crlfile", "holds no usable PEM CRL");
	if (n_lives == cap_lives) {
		size_t cap = cap_lives ? cap_lives * 2 : 4;
		struct live *a = mem_realloc(lives, cap * sizeof(*a));

		if (!a) {
			log_err("listener %d: out of memory", l->port);
			return -1;
		}
		lives = a;
		cap_lives = cap;
	}
	lives[n_lives].l = l;
	lives[n_lives++].ctx = ctx;
	return 0;
}

/* A new store with l's CAs and CRLs: NULL (logged) when they do not load. */
static X509_STORE *new_store(const struct listener_conf *l)
{
	X509_STORE *st = X509_STORE_new();

	if (!st)
		return NULL;
	if ((l->cafile.s || l->capath.s) &&
	    X509_STORE_load_locations(st, l->cafile.s, l->capath.s) != 1) {
		bad(l->cafile.s ? &l->cafile : &l->capath, l->cafile.s ? "cafile" : "capath",
		    "holds no usable CA certificate");
		X509_STORE_free(st);
		return NULL;
	}
	if (l->crlfile.s && load_crls(st, l->crlfile.s)) {
		bad(&l->crlfile, "crlfile", "holds no usable PEM CRL");
		X509_STORE_free(st);
		return NULL;
	}
	return st;
}

/* One listener's files again: into a scratch context first, then the live one. */
static void reload_one(const struct live *v)
{
	const struct listener_conf *l = v->l;
	SSL_CTX *scratch = SSL_CTX_new(TLS_server_method());
	X509_STORE *st = NULL;

	ERR_clear_error();
	if (!scratch || load_pair(l, scratch) || !(st = new_store(l))) {
		log_err("listener %d: certificates not reloaded: the previous ones stay in force",
			l->port);
		SSL_CTX_free(scratch);
		return;
	}
	SSL_CTX_free(scratch);
	if (load_pair(l, v->ctx)) {
		log_err("listener %d: certificates half reloaded (see above)", l->port);
		X509_STORE_free(st);
		return;
	}
	SSL_CTX_set_cert_store(v->ctx, st); /* frees the old store */
	log_notice("listener %d: certificates reloaded from %s", l->port, l->certfile.s);
}

void tls_reload(void)
{
	for (size_t i = 0; i < n_lives; i++)
		reload_one(&lives[i]);
}

void tls_forget(void)
{
	mem_free(lives);
	lives = NULL;
	n_lives = cap_lives = 0;
}

int tls_peer_cn(struct lws *wsi, char *buf, size_t len)
{
	char big[sizeof(union lws_tls_cert_info_results) + 256];
	union lws_tls_cert_info_results *r = (union lws_tls_cert_info_results *)big;
	size_t room = sizeof(big) - sizeof(*r) + sizeof(r->ns.name);

	if (lws_tls_peer_cert_info(wsi, LWS_TLS_CERT_INFO_COMMON_NAME, r, room) || r->ns.len <= 0 ||
	    (size_t)r->ns.len >= len)
		return -1;
	memcpy(buf, r->ns.name, (size_t)r->ns.len);
	buf[r->ns.len] = '\0';
	return 0;
}
