/*
 * listener_lws.c - libwebsockets 4.1.6 as the transport: one context, one
 * vhost per configured listener, one loop thread. It, listener_http.c and
 * listener_tls.c are the only files that include <libwebsockets.h>.
 *
 * MQTT over TCP uses raw-socket vhosts (lws adopts each accepted socket with
 * the "raw-skt" role); MQTT over WebSocket uses ws vhosts whose protocol list
 * is "http" first, then "mqtt" (and "mqttv3.1", what 3.1 clients ask for);
 * an http listener has the "http" protocol only. Both MQTT kinds hand bytes
 * to the same struct conn, so one framer serves both; the "http" protocol
 * answers GET /metrics (listener_http.c) and lws serves http_dir's files.
 *
 * The loop is libuv's (epoll), given to lws as a "foreign" loop that we
 * own: lws 4.1.6's poll() loop walks every descriptor on every wake-up,
 * which at 10,000 idle connections costs most of the throughput, and its
 * internal uv loop cannot be stopped from outside. listener_service() runs
 * one uv iteration; listener_wake() is a uv_async_t, safe to call from a
 * signal handler or another thread.
 *
 * The rules of lws are kept: output is written only from the writable
 * callback, from a buffer with LWS_PRE bytes of headroom, at most a budget
 * per callback and only while the socket is not choked; a connection is
 * closed by returning -1 from its writable callback once its output is
 * flushed (with a timeout in case the peer never reads); every timer of the
 * broker rides on one lws_sul scheduled for the earliest due time.
 */
#include "listener.h"
#include "listener_http.h"
#include "listener_tls.h"

#include <libwebsockets.h>
#include <uv.h>
#include <inttypes.h>
#include <string.h>
#include <sys/socket.h>

#include "auth.h"
#include "base.h"
#include "timers.h"
#include "clock.h"
#include "conn.h"
#include "log.h"
#include "mem.h"

/* Most bytes written to one connection per writable callback (fairness). */
#define WRITE_BUDGET (256 * 1024)
/* Seconds a closing connection may take to flush before it is cut. */
#define CLOSE_FLUSH_SECS 3
/* Seconds a closed connection keeps reading (and dropping) what the client still sends. */
#define LINGER_SECS 2

static struct lws_context *ctx;
static uv_loop_t loop;
static uv_async_t waker;
static bool loop_ready;
static lws_sorted_usec_list_t sul_timer;

static void want_write(void *tctx)
{
	lws_callback_on_writable(tctx);
}

static void close_soon(void *tctx)
{
	struct lws *wsi = tctx;

	lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, CLOSE_FLUSH_SECS);
	lws_callback_on_writable(wsi);
}

static void pause_rx(void *tctx, bool pause)
{
	lws_rx_flow_control(tctx, pause ? 0 : 1);
}

static int peer_cn(void *tctx, char *buf, size_t len)
{
	return tls_peer_cn(tctx, buf, len);
}

static const struct conn_ops lws_conn_ops = {
	.want_write = want_write,
	.close = close_soon,
	.pause_rx = pause_rx,
	.peer_cn = peer_cn,
};

/* A connection's struct conn rides on its wsi (no per-session data: one allocation less). */
static struct conn *conn_of(struct lws *wsi)
{
	return wsi ? lws_get_opaque_user_data(wsi) : NULL;
}

/* use_identity_as_username: CONNECT takes the client certificate's CN (peer_cn). */
/* What the connection takes from its listener: use_identity_as_username, its security realm. */
static int take_identity(struct lws *wsi, struct conn *c)
{
	const struct listener_conf *l = lws_get_vhost_user(lws_get_vhost(wsi));
	const struct config *cfg = base.cfg;

	c->identity_as_username = l && l->use_identity_as_username;
	if (l && l >= cfg->listeners && l < cfg->listeners + cfg->n_listeners)
		c->realm = (uint16_t)auth_realm_of_listener(cfg, (size_t)(l - cfg->listeners));
	return 0;
}

/* lws asks for extra verify certificates once per TLS vhost: its SSL_CTX (user). */
static int tls_ready(void *ssl_ctx, void *vhost)
{
	return tls_vhost_ready(lws_get_vhost_user(vhost), ssl_ctx) ? 1 : 0;
}

/*
 * require_certificate: lws asks protocol 0 of the context about each
 * certificate of the client's chain, with OpenSSL's verdict (preverify_ok)
 * in len; 0 from us accepts, whatever OpenSSL said. Keep OpenSSL's verdict.
 */
static int cert_verdict(size_t preverify_ok)
{
	if (!preverify_ok)
		log_info("TLS client certificate refused: not signed by cafile / capath, or "
			 "revoked, or expired");
	return preverify_ok ? 0 : 1;
}

/* --- connections per client address (max_connections_per_address) --------- */

#define ADDR_BUCKETS 4096

struct addr_count {
	struct addr_count *next;
	unsigned n;
	char addr[];
};

static struct addr_count *by_addr[ADDR_BUCKETS];

static struct addr_count **addr_slot(const char *a)
{
	uint32_t h = 2166136261u;
	struct addr_count **pp;

	for (const char *p = a; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	for (pp = &by_addr[h % ADDR_BUCKETS]; *pp && strcmp((*pp)->addr, a); pp = &(*pp)->next)
		;
	return pp;
}

/* One more connection from a: false (nothing counted) at the limit or out of memory. */
static bool addr_take(const char *a)
{
	struct addr_count **pp = addr_slot(a), *e = *pp;
	size_t n = strlen(a) + 1;

	if (base.cfg->max_connections_per_address < 0)
		return true;
	if (e && e->n >= (unsigned)base.cfg->max_connections_per_address)
		return false;
	if (!e) {
		if (!(e = mem_alloc(sizeof(*e) + n)))
			return false;
		e->next = NULL;
		e->n = 0;
		memcpy(e->addr, a, n);
		*pp = e;
	}
	e->n++;
	return true;
}

static void addr_give(const char *a)
{
	struct addr_count **pp, *e;

	if (base.cfg->max_connections_per_address < 0)
		return;
	pp = addr_slot(a);
	if (!(e = *pp))
		return;
	if (--e->n == 0) {
		*pp = e->next;
		mem_free(e);
	}
}

/* --- connections per listener (max_connections after a listener line) ------ */

static unsigned *listener_conns; /* open connections, by listener index */

/* The index of wsi's listener in the configuration, or -1. */
static long listener_of(struct lws *wsi)
{
	const struct listener_conf *l = lws_get_vhost_user(lws_get_vhost(wsi));
	const struct config *cfg = base.cfg;

	if (!l || !listener_conns || l < cfg->listeners || l >= cfg->listeners + cfg->n_listeners)
		return -1;
	return l - cfg->listeners;
}

/* Is the listener full (its max_connections reached)? Logged when it is. */
static bool listener_full(long i, const char *peer)
{
	const struct listener_conf *l = i >= 0 ? &base.cfg->listeners[i] : NULL;

	if (!l || l->max_connections < 0 || listener_conns[i] < (unsigned)l->max_connections)
		return false;
	log_notice("connection from %s refused: max_connections (%d) of the listener on port %d "
		   "reached",
		   peer, l->max_connections, l->port);
	return true;
}

/*
 * The limits a new connection meets, before its CONNECT is read (so nothing
 * of it is buffered and no session is made for it): true when it is refused
 * (logged with its address); false when it is taken, its address counted.
 */
static bool refused(const char *peer, long listener)
{
	const struct config *cfg = base.cfg;

	if (mem_over_limit()) {
		log_notice("connection from %s refused: memory_limit (%" PRIu64
			   " bytes) reached, %" PRIu64 " counted",
			   peer, cfg->memory_limit, mem_counted());
		return true;
	}
	if (cfg->max_connections >= 0 && conn_count() >= (size_t)cfg->max_connections) {
		log_notice("connection from %s refused: max_connections reached", peer);
		return true;
	}
	if (listener_full(listener, peer))
		return true;
	if (!addr_take(peer)) {
		log_notice("connection from %s refused: max_connections_per_address (%d) reached",
			   peer, cfg->max_connections_per_address);
		return true;
	}
	return false;
}

static int open_conn(struct lws *wsi, bool websocket)
{
	struct conn *c;
	char peer[64] = "";
	long listener = listener_of(wsi);

	lws_get_peer_simple(wsi, peer, sizeof(peer));
	if (refused(peer, listener))
		return -1;
	c = conn_new(&lws_conn_ops, wsi, websocket, peer, LWS_PRE);
	lws_set_opaque_user_data(wsi, c);
	if (!c) {
		addr_give(peer);
		log_err("connection from %s refused: out of memory", peer);
		return -1;
	}
	if (listener >= 0)
		listener_conns[listener]++;
	log_info("new connection from %s%s", peer, websocket ? " (websocket)" : "");
	return take_identity(wsi, c);
}

static void close_conn(struct lws *wsi)
{
	struct conn *c = conn_of(wsi);

	if (!c)
		return;
	lws_set_opaque_user_data(wsi, NULL);
	addr_give(c->peer);
	if (listener_of(wsi) >= 0)
		listener_conns[listener_of(wsi)]--;
	conn_on_closed(c);
}

/*
 * Everything is sent: half-close (FIN after our last packet) and keep
 * reading, dropping what comes (conn_on_data ignores a closing
 * connection), until the client closes or LINGER_SECS pass. Closing with
 * unread input would make the kernel answer with a reset, and a client
 * still writing would get a broken pipe instead of our DISCONNECT or
 * CONNACK. Returns what the writable callback returns.
 */
static int linger(struct lws *wsi, struct conn *c)
{
	lws_sockfd_type fd = lws_get_socket_fd(wsi);

	if (c->lingering)
		return 0;
	if (fd == LWS_SOCK_INVALID || shutdown(fd, SHUT_WR))
		return -1;
	conn_linger(c);
	lws_rx_flow_control(wsi, 1);
	lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LINGER_SECS);
	return 0;
}

static int write_out(struct lws *wsi, struct conn *c, enum lws_write_protocol proto)
{
	size_t budget = WRITE_BUDGET;

	while (budget) {
		uint8_t *p;
		size_t n = conn_pending(c, &p);

		if (!n)
			break;
		if (n > budget)
			n = budget;
		if (lws_write(wsi, p, n, proto) < (int)n)
			return -1;
		conn_sent(c, n);
		budget -= n;
		if (lws_send_pipe_choked(wsi))
			break;
	}
	/* Close once our buffer and lws's own are both flushed. */
	if (conn_done(c) && !lws_send_pipe_choked(wsi))
		return linger(wsi, c);
	if (conn_done(c)) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	if (conn_backlog(c)) {
		c->write_requested = true;
		lws_callback_on_writable(wsi);
	}
	return 0;
}

static int cb_raw(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len)
{
	struct conn *c = conn_of(wsi);

	switch (reason) {
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
		return tls_ready(user, in);
	case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
		return cert_verdict(len);
	case LWS_CALLBACK_RAW_ADOPT:
		return open_conn(wsi, false);
	case LWS_CALLBACK_RAW_RX:
		if (c)
			conn_on_data(c, in, len);
		return 0;
	case LWS_CALLBACK_RAW_WRITEABLE:
		return c ? write_out(wsi, c, LWS_WRITE_RAW) : -1;
	case LWS_CALLBACK_RAW_CLOSE:
		close_conn(wsi);
		return 0;
	default:
		return 0;
	}
}

static int cb_ws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		 size_t len)
{
	struct conn *c = conn_of(wsi);

	(void)user;
	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		http_request_done(wsi); /* the upgrade came in time; CONNECT has its own timer */
		return open_conn(wsi, true);
	case LWS_CALLBACK_RECEIVE:
		if (!c)
			return -1;
		if (!lws_frame_is_binary(wsi)) {
			/* [MQTT-6.0.0-1] MQTT travels in binary frames only. */
			conn_close(c, -1, "websocket text frame");
			return -1;
		}
		conn_on_data(c, in, len);
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return c ? write_out(wsi, c, LWS_WRITE_BINARY) : -1;
	case LWS_CALLBACK_CLOSED:
		close_conn(wsi);
		return 0;
	default:
		return 0;
	}
}

/*
 * The first protocol of a ws vhost serves plain HTTP (the status page) and
 * is where lws puts a WebSocket upgrade that names no subprotocol: refuse
 * those, MQTT needs "mqtt" [MQTT-6.0.0-3].
 */
static int cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		   size_t len)
{
	bool handled;
	int rc;

	if (reason == LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS)
		return tls_ready(user, in);
	if (reason == LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION)
		return cert_verdict(len);
	if (reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION ||
	    reason == LWS_CALLBACK_ESTABLISHED) {
		log_info("websocket upgrade without the 'mqtt' subprotocol refused");
		return -1;
	}
	rc = http_callback(wsi, (int)reason, user, in, len, &handled);
	return handled ? rc : lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols raw_protocols[] = {
	{ "sluice-mqtt-raw", cb_raw, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

/* The per-session size of "http" is set at start (http_session_size()). */
static struct lws_protocols ws_protocols[] = {
	{ "http", cb_http, 0, 0, 0, NULL, 0 },
	{ "mqtt", cb_ws, 0, 0, 0, NULL, 0 },
	{ "mqttv3.1", cb_ws, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

/* protocol http: the HTTP side only (a WebSocket upgrade is refused). */
static struct lws_protocols http_protocols[] = {
	{ "http", cb_http, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

/* The loop woke for a wake-up request: uv_run returns, the caller looks at its flags. */
static void on_wake(uv_async_t *h)
{
}

static void on_sul(lws_sorted_usec_list_t *sul)
{
	uint64_t next = timers_fire();

	if (next != UINT64_MAX)
		listener_timer_changed(next);
}

void listener_timer_changed(uint64_t due_ms)
{
	uint64_t now = clock_now_ms();
	lws_usec_t us = due_ms > now ? (lws_usec_t)(due_ms - now) * 1000 : 1;

	/* While lws tears connections down at shutdown, timers no longer matter. */
	if (ctx && !base.stopping)
		lws_sul_schedule(ctx, 0, &sul_timer, on_sul, us);
}

static void lws_log_emit(int level, const char *line)
{
	size_t n = strlen(line);

	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	log_msg(level == LLL_ERR ? LOG_ERR : LOG_WARNING, "lws: %.*s", (int)n, line);
}

static const char *proto_name(const struct listener_conf *l)
{
	return l->protocol == LISTENER_MQTT   ? "mqtt"
	       : l->protocol == LISTENER_HTTP ? "http"
					      : "websockets";
}

static int add_vhost(const struct listener_conf *l, size_t i)
{
	struct lws_context_creation_info info;
	char name[32];

	memset(&info, 0, sizeof(info));
	snprintf(name, sizeof(name), "listener-%zu", i);
	info.vhost_name = name;
	info.port = l->port;
	info.iface = l->bind_address;
	if (l->socket_domain == 4)
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	if (l->socket_domain == 6)
		info.options |= LWS_SERVER_OPTION_IPV6_V6ONLY_MODIFY |
				LWS_SERVER_OPTION_IPV6_V6ONLY_VALUE;
	info.user = (void *)l; /* the config outlives the vhosts */
	/* A TLS handshake or a WebSocket upgrade has connect_timeout, as a CONNECT has (slow-loris). */
	info.timeout_secs = base.cfg->connect_timeout ? base.cfg->connect_timeout : 10;
	info.timeout_secs_ah_idle = info.timeout_secs;
	tls_vhost_info(l, &info);
	if (l->protocol == LISTENER_MQTT) {
		info.options |= LWS_SERVER_OPTION_ADOPT_APPLY_LISTEN_ACCEPT_CONFIG;
		info.listen_accept_role = "raw-skt";
		info.listen_accept_protocol = raw_protocols[0].name;
		info.protocols = raw_protocols;
	} else {
		info.protocols = l->protocol == LISTENER_HTTP ? http_protocols : ws_protocols;
		info.alpn = "http/1.1";
		info.mounts = http_mounts(l, i);
	}
	if (!lws_create_vhost(ctx, &info)) {
		log_err("cannot listen on %s port %d (%s): address in use or not available",
			l->bind_address ? l->bind_address : "*", l->port, proto_name(l));
		return -1;
	}
	log_notice("listening on %s port %d (%s%s)", l->bind_address ? l->bind_address : "*",
		   l->port, proto_name(l), tls_listener(l) ? " over TLS" : "");
	return 0;
}

void listener_reload(void)
{
	tls_reload();
}

int listener_start(const struct config *cfg)
{
	struct lws_context_creation_info info;
	size_t i;

	void *foreign[1] = { &loop };

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
	if (uv_loop_init(&loop) || uv_async_init(&loop, &waker, on_wake)) {
		log_err("cannot create the event loop");
		return -1;
	}
	loop_ready = true;
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_LIBUV |
		       LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.foreign_loops = foreign;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.pt_serv_buf_size = 64 * 1024;
	info.timeout_secs = cfg->connect_timeout ? cfg->connect_timeout : 10; /* and per vhost */
	info.fd_limit_per_thread = 0;
	ctx = lws_create_context(&info);
	if (!ctx) {
		log_err("cannot create the libwebsockets context");
		return -1;
	}
	ws_protocols[0].per_session_data_size = http_session_size();
	http_protocols[0].per_session_data_size = http_session_size();
	if (http_mounts_init(cfg->n_listeners) ||
	    !(listener_conns = mem_calloc(cfg->n_listeners, sizeof(*listener_conns))))
		goto fail;
	for (i = 0; i < cfg->n_listeners; i++)
		if (tls_check(&cfg->listeners[i]) || add_vhost(&cfg->listeners[i], i))
			goto fail;
	return 0;
fail:
	listener_stop();
	return -1;
}

int listener_service(void)
{
	if (!ctx)
		return -1;
	uv_run(&loop, UV_RUN_ONCE);
	return 0;
}

struct uv_loop_s *listener_loop(void)
{
	return &loop;
}

void listener_wake(void)
{
	if (loop_ready)
		uv_async_send(&waker);
}

void listener_stop(void)
{
	tls_forget(); /* the contexts go with the vhosts */
	if (ctx) {
		lws_sul_cancel(&sul_timer);
		lws_context_destroy(ctx);
	}
	ctx = NULL;
	if (loop_ready) {
		loop_ready = false;
		uv_close((uv_handle_t *)&waker, NULL);
		/* lws closes its handles through the loop: let them finish. */
		uv_run(&loop, UV_RUN_DEFAULT);
		if (uv_loop_close(&loop))
			log_warn("event loop closed with handles still open");
	}
	http_mounts_free();
	mem_free(listener_conns);
	listener_conns = NULL;
}
