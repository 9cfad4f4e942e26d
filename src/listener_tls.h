/*
 * listener_tls.h - TLS for the lws listeners (MQTT over TLS and secure
 * WebSocket): checking a listener's certificates at start-up, the vhost
 * settings, the CAs and CRLs lws has no setting for, the client
 * certificate's CN, and reloading certificates at SIGHUP.
 */
#ifndef SLUICE_LISTENER_TLS_H
#define SLUICE_LISTENER_TLS_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>

struct listener_conf;

/* Does the listener speak TLS? */
bool tls_listener(const struct listener_conf *l);
/*
 * The listener's TLS directives are consistent, and its certificate, key,
 * CA and CRL files load (the key matching the certificate): 0, or -1
 * after logging "FILE:LINE: directive: what" for the first problem.
 */
int tls_check(const struct listener_conf *l);
/* Fills the TLS part of a vhost's creation info (l outlives the vhost). */
void tls_vhost_info(const struct listener_conf *l, struct lws_context_creation_info *info);
/*
 * LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS for the vhost of l
 * (ssl_ctx: its OpenSSL SSL_CTX): loads capath and crlfile, and keeps the
 * context for tls_reload. 0, or -1 (the vhost fails).
 */
int tls_vhost_ready(const struct listener_conf *l, void *ssl_ctx);
/*
 * SIGHUP: every TLS listener reads its certificate, key and CRL again. A
 * listener whose new files do not load keeps the old ones (logged).
 */
void tls_reload(void);
void tls_forget(void);
/* The CN of the connection's client certificate into buf: 0, or -1 when there is none. */
int tls_peer_cn(struct lws *wsi, char *buf, size_t len);

#endif
