/*
 * listener_http.c - the HTTP side of the websockets and http listeners:
 * GET /metrics (Prometheus text, metrics.c), the HTTP API under /api/v1
 * (api.c; who may use it is decided here), beside the files of http_dir
 * that lws serves itself, and the connect_timeout of a request or upgrade.
 *
 * Owns: the mounts of each listener (a callback mount for /metrics, in
 * front of the http_dir one), and the reply being written on each HTTP
 * connection (its per-session data: the whole body, rendered at the
 * request, and how much of it is out). Loop thread only: lws calls the
 * "http" protocol's callback on the loop.
 *
 * lws 4.1.6's rules: headers and body are written from the writable
 * callback with lws_write() out of a buffer that has LWS_PRE bytes before
 * the data; the last piece is LWS_WRITE_HTTP_FINAL, then
 * lws_http_transaction_completed() (keep-alive or close). A reply's body
 * is freed when the connection closes, whatever was sent.
 */
#include "listener_http.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "auth.h"
#include "base.h"
#include "buf.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"

#define CHUNK 16384 /* bytes of body per writable callback */
#define ARG_MAX 1024 /* bytes of one query argument ("prefix=..."), as lws copies it */

/* Per HTTP connection (lws zeroes it). */
struct http_reply {
	struct buf body;
	size_t sent;
	bool active; /* body holds a reply not yet all sent */
	bool basic_challenge; /* a 401: ask for HTTP Basic credentials */
};

#define MOUNTS 3 /* per listener: /metrics, /api/v1, then http_dir's / */

static struct lws_http_mount *mounts;

int http_mounts_init(size_t n_listeners)
{
	mounts = mem_calloc(n_listeners * MOUNTS, sizeof(*mounts));
	return mounts ? 0 : -1;
}

void http_mounts_free(void)
{
	mem_free(mounts);
	mounts = NULL;
}

const struct lws_http_mount *http_mounts(const struct listener_conf *l, size_t i)
{
	struct lws_http_mount *m = &mounts[MOUNTS * i], *api = m + 1, *files = m + 2;

	m->mountpoint = "/metrics";
	m->mountpoint_len = 8;
	m->origin = "http"; /* the protocol whose callback answers */
	m->origin_protocol = LWSMPRO_CALLBACK;
	*api = *m;
	api->mountpoint = "/api/v1";
	api->mountpoint_len = 7;
	m->mount_next = api;
	if (l->http_dir) {
		files->mountpoint = "/";
		files->mountpoint_len = 1;
		files->origin = l->http_dir;
		files->origin_protocol = LWSMPRO_FILE;
		files->def = "index.html";
		api->mount_next = files;
	}
	return m;
}

size_t http_session_size(void)
{
	return sizeof(struct http_reply);
}

static void reply_free(struct http_reply *r)
{
	if (!r)
		return;
	buf_free(&r->body);
	r->active = false;
	r->sent = 0;
}

/* The request's method and path (its query apart, lws keeps that aside). */
static enum api_method request(struct lws *wsi, char *uri, size_t len)
{
	if (lws_hdr_copy(wsi, uri, (int)len, WSI_TOKEN_GET_URI) > 0)
		return API_GET;
	if (lws_hdr_copy(wsi, uri, (int)len, WSI_TOKEN_DELETE_URI) > 0)
		return API_DELETE;
	if (lws_hdr_copy(wsi, uri, (int)len, WSI_TOKEN_POST_URI) <= 0 &&
	    lws_hdr_copy(wsi, uri, (int)len, WSI_TOKEN_PUT_URI) <= 0)
		uri[0] = '\0';
	return API_OTHER;
}

/*
 * A query argument ("offset") as a number, or def. The buffer holds any
 * argument of the query: lws gives up on the first that does not fit.
 */
static size_t arg_num(struct lws *wsi, const char *name, size_t def, size_t max)
{
	char key[24], buf[ARG_MAX];
	const char *v;
	char *end;
	unsigned long n;

	snprintf(key, sizeof(key), "%s=", name);
	v = lws_get_urlarg_by_name(wsi, key, buf, sizeof(buf));
	if (!v || !*v)
		return def;
	n = strtoul(v, &end, 10);
	return *end || n > max ? def : (size_t)n;
}

static bool is_loopback(const struct listener_conf *l)
{
	const char *a = l ? l->bind_address : NULL;

	return a && (!strncmp(a, "127.", 4) || !strcmp(a, "::1") || !strcmp(a, "localhost"));
}

static bool api_user(const char *name, size_t n)
{
	for (size_t i = 0; i < base.cfg->n_http_api_users; i++)
		if (strlen(base.cfg->http_api_users[i]) == n &&
		    !memcmp(base.cfg->http_api_users[i], name, n))
			return true;
	return false;
}

/*
 * May this request use the API? With http_api_users: HTTP Basic credentials
 * of one of them, checked against the listener's password file; without:
 * only on a listener bound to a loopback address. 0, or the HTTP status.
 */
static int api_access(struct lws *wsi, const struct listener_conf *l, const char **why)
{
	char hdr[512], plain[384], *colon;
	int n;

	if (!base.cfg->n_http_api_users) {
		*why = "the HTTP API is served on loopback listeners only until http_api_users is set";
		return is_loopback(l) ? 0 : 403;
	}
	*why = "HTTP Basic credentials of a user in http_api_users needed";
	n = lws_hdr_copy(wsi, hdr, sizeof(hdr), WSI_TOKEN_HTTP_AUTHORIZATION);
	if (n <= 6 || strncasecmp(hdr, "Basic ", 6))
		return 401;
	n = lws_b64_decode_string(hdr + 6, plain, sizeof(plain) - 1);
	if (n <= 0 || !(colon = memchr(plain, ':', (size_t)n)))
		return 401;
	plain[n] = '\0';
	if (!auth_password_ok(
		    (unsigned)auth_realm_of_listener(base.cfg, (size_t)(l - base.cfg->listeners)),
		    plain, (size_t)(colon - plain), colon + 1, (size_t)(plain + n - colon - 1)) ||
	    !api_user(plain, (size_t)(colon - plain))) {
		explicit_bzero(plain, sizeof(plain));
		return 401;
	}
	explicit_bzero(plain, sizeof(plain));
	return 0;
}

/* /api/v1/...: access, then api.c's answer. The HTTP status; the body in r. */
static int api_request(struct lws *wsi, struct http_reply *r, enum api_method m, const char *path)
{
	const struct listener_conf *l = lws_get_vhost_user(lws_get_vhost(wsi));
	struct api_request rq = { m, path, 0, 100, -1, NULL, NULL };
	char prefix[ARG_MAX], filter[ARG_MAX];
	const char *why;
	int st = api_access(wsi, l, &why);

	if (st) {
		r->basic_challenge = st == 401;
		return api_error(&r->body, st, why);
	}
	rq.offset = arg_num(wsi, "offset", 0, SIZE_MAX / 2);
	rq.limit = arg_num(wsi, "limit", 100, 10000);
	rq.connected = (int)arg_num(wsi, "connected", (size_t)-1, 1);
	rq.prefix = lws_get_urlarg_by_name(wsi, "prefix=", prefix, sizeof(prefix));
	rq.filter = lws_get_urlarg_by_name(wsi, "filter=", filter, sizeof(filter));
	return api_handle(&rq, &r->body);
}

static int start_reply(struct lws *wsi, struct http_reply *r)
{
	unsigned char head[LWS_PRE + 512], *start = head + LWS_PRE, *p = start,
					   *end = head + sizeof(head) - 1;
	char uri[1024];
	enum api_method m = request(wsi, uri, sizeof(uri));
	const char *type = "application/json";
	int st;

	reply_free(r);
	buf_init(&r->body);
	r->basic_challenge = false;
	if (!strncmp(uri, "/api/v1/", 8) || !strcmp(uri, "/api/v1")) {
		st = api_request(wsi, r, m, uri + 7);
	} else if (!strcmp(uri, "/metrics")) {
		type = "text/plain; version=0.0.4";
		st = m != API_GET ? 405 : metrics_render(&r->body) ? 500 : 200;
		if (st != 200) {
			buf_reset(&r->body);
			type = "text/plain";
			buf_put(&r->body, st == 405 ? "method not allowed\n" : "out of memory\n",
				st == 405 ? 19 : 14);
		}
	} else {
		type = "text/plain";
		st = 404;
		buf_put(&r->body, "not found\n", 10);
	}
	r->active = true;
	if (lws_add_http_common_headers(wsi, (unsigned)st, type, r->body.len, &p, end) ||
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
					 (const unsigned char *)"no-store", 8, &p, end) ||
	    (r->basic_challenge &&
	     lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_WWW_AUTHENTICATE,
					  (const unsigned char *)"Basic realm=\"sluice\"", 20, &p,
					  end)) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	lws_callback_on_writable(wsi);
	return 0;
}

static int write_body(struct lws *wsi, struct http_reply *r)
{
	static unsigned char chunk[LWS_PRE + CHUNK];
	size_t n = r->body.len - r->sent;
	bool last;

	if (!r->active)
		return 0;
	if (n > CHUNK)
		n = CHUNK;
	last = r->sent + n == r->body.len;
	memcpy(chunk + LWS_PRE, r->body.data + r->sent, n);
	if (lws_write(wsi, chunk + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) !=
	    (int)n)
		return -1;
	r->sent += n;
	if (!last) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	reply_free(r);
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/*
 * Slow-loris: a connection must have sent its request (an HTTP request, or
 * the WebSocket upgrade) within connect_timeout of its accept, as an MQTT
 * client its CONNECT. lws's header-table timeout (timeout_secs_ah_idle)
 * cuts such a connection too, but it hangs on how lws holds its header
 * tables; a wsi timer from the accept makes the rule ours, and logged. The
 * request's end (or the upgrade) puts it off; after an upgrade it would
 * reach the "mqtt" protocol's callback, which ignores it.
 */
static void arm_request_timer(struct lws *wsi)
{
	lws_set_timer_usecs(wsi, (lws_usec_t)base.cfg->connect_timeout * LWS_USEC_PER_SEC);
}

/*
 * lws 4.1.6's lws_set_timer_usecs() has no cancel (LWS_SET_TIMER_USEC_CANCEL,
 * -1, is taken as "now"): the timer moves a year ahead instead, and goes
 * with the wsi when it closes.
 */
void http_request_done(struct lws *wsi)
{
	lws_set_timer_usecs(wsi, (lws_usec_t)365 * 24 * 3600 * LWS_USEC_PER_SEC);
}

static int request_too_slow(struct lws *wsi)
{
	char peer[64] = "";

	lws_get_peer_simple(wsi, peer, sizeof(peer));
	log_notice("connection from %s dropped: no complete HTTP request or WebSocket upgrade "
		   "within connect_timeout",
		   peer);
	return -1;
}

int http_callback(struct lws *wsi, int reason, void *user, void *in, size_t len, bool *handled)
{
	struct http_reply *r = user;

	*handled = true;
	switch (reason) {
	case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
		arm_request_timer(wsi);
		return 0;
	case LWS_CALLBACK_FILTER_HTTP_CONNECTION:
		http_request_done(wsi);
		return 0;
	case LWS_CALLBACK_TIMER:
		return request_too_slow(wsi);
	case LWS_CALLBACK_HTTP:
		return start_reply(wsi, r);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		if (r && r->active)
			return write_body(wsi, r);
		break;
	case LWS_CALLBACK_HTTP_BODY:
		return 0; /* a request body (POST, PUT) is read and dropped: nothing takes one */
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		/* lws writes nothing of a request with a body before it is all read */
		if (r && r->active)
			lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		reply_free(r);
		break;
	default:
		break;
	}
	*handled = false;
	return 0;
}
