/*
 * listener_http.c - the HTTP side of the websockets and http listeners:
 * GET /metrics (Prometheus text, metrics.c), beside the files of http_dir
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
#include <string.h>

#include "base.h"
#include "buf.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"

#define CHUNK 16384 /* bytes of body per writable callback */

/* Per HTTP connection (lws zeroes it). */
struct http_reply {
	struct buf body;
	size_t sent;
	bool active; /* body holds a reply not yet all sent */
};

static struct lws_http_mount *mounts; /* two per listener: /metrics, then http_dir's / */

int http_mounts_init(size_t n_listeners)
{
	mounts = mem_calloc(n_listeners * 2, sizeof(*mounts));
	return mounts ? 0 : -1;
}

void http_mounts_free(void)
{
	mem_free(mounts);
	mounts = NULL;
}

const struct lws_http_mount *http_mounts(const struct listener_conf *l, size_t i)
{
	struct lws_http_mount *m = &mounts[2 * i], *files = &mounts[2 * i + 1];

	m->mountpoint = "/metrics";
	m->mountpoint_len = 8;
	m->origin = "http"; /* the protocol whose callback answers */
	m->origin_protocol = LWSMPRO_CALLBACK;
	if (l->http_dir) {
		files->mountpoint = "/";
		files->mountpoint_len = 1;
		files->origin = l->http_dir;
		files->origin_protocol = LWSMPRO_FILE;
		files->def = "index.html";
		m->mount_next = files;
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

/* Is the request exactly GET /metrics (a query string allowed)? */
static bool is_metrics(struct lws *wsi)
{
	char uri[16];
	int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);

	return n == 8 && !memcmp(uri, "/metrics", 8);
}

static int status(struct lws *wsi, unsigned code)
{
	if (lws_return_http_status(wsi, code, NULL))
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int start_reply(struct lws *wsi, struct http_reply *r)
{
	unsigned char head[LWS_PRE + 512], *start = head + LWS_PRE, *p = start,
					   *end = head + sizeof(head) - 1;

	if (!is_metrics(wsi))
		return status(wsi, lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI)
					   ? HTTP_STATUS_NOT_FOUND
					   : HTTP_STATUS_METHOD_NOT_ALLOWED);
	reply_free(r);
	buf_init(&r->body);
	if (metrics_render(&r->body)) {
		log_warn("GET /metrics: out of memory");
		reply_free(r);
		return status(wsi, HTTP_STATUS_INTERNAL_SERVER_ERROR);
	}
	r->active = true;
	if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/plain; version=0.0.4",
					r->body.len, &p, end) ||
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
					 (const unsigned char *)"no-store", 8, &p, end) ||
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
