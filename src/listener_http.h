/*
 * listener_http.h - the HTTP side of websockets and http listeners
 * (GET /metrics), for listener_lws.c.
 */
#ifndef SLUICE_LISTENER_HTTP_H
#define SLUICE_LISTENER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct lws;
struct lws_http_mount;

/* Room for the mounts of n listeners: 0, or -1 (out of memory). */
int http_mounts_init(size_t n_listeners);
void http_mounts_free(void);
/* The mounts of listener i: /metrics, then http_dir's files (if any) at /. */
const struct lws_http_mount *http_mounts(const struct listener_conf *l, size_t i);
/* The per-session data the "http" protocol needs. */
size_t http_session_size(void);
/* The request or upgrade of wsi is complete: its connect_timeout no longer runs. */
void http_request_done(struct lws *wsi);
/*
 * The "http" protocol's callback for the HTTP reasons it answers (a
 * request, writable, closed); *handled false: not one of them, lws's
 * default applies.
 */
int http_callback(struct lws *wsi, int reason, void *user, void *in, size_t len, bool *handled);

#endif
