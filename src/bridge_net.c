/*
 * bridge_net.c - the remote side's socket of a bridge: a libuv TCP handle
 * on the loop listener_lws.c owns (listener_loop()), so a bridge never
 * blocks the broker: the name is resolved with uv_getaddrinfo, connecting,
 * reading and writing are libuv requests, all on the loop thread.
 *
 * Lifetime: bridge_net_connect() allocates; the object is freed in the
 * close callback of its handle, either after bridge_net_close() (the owner
 * is done: no callback of the owner runs again) or after a failure, which
 * the owner learns once through ops->failed. Until the handle exists (while
 * resolving), closing just marks the object, and the resolver's callback
 * frees it. Writes are copied into one allocation per write request.
 */
#include "bridge_net.h"
#include "listener.h"
#include "mem.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

struct bridge_net {
	uv_tcp_t tcp;
	uv_getaddrinfo_t resolve;
	uv_connect_t connect;
	const struct bridge_net_ops *ops;
	void *arg;
	bool have_tcp; /* tcp was initialised: freed through uv_close */
	bool closed; /* the owner let go, or was told of the failure */
	int port;
	char rbuf[16384];
};

struct wreq {
	uv_write_t req;
	uint8_t data[];
};

static void on_handle_closed(uv_handle_t *h)
{
	mem_free(h->data);
}

static void shut(struct bridge_net *n)
{
	n->closed = true;
	if (n->have_tcp && !uv_is_closing((uv_handle_t *)&n->tcp))
		uv_close((uv_handle_t *)&n->tcp, on_handle_closed);
}

static void fail(struct bridge_net *n, const char *why)
{
	if (n->closed)
		return;
	shut(n);
	n->ops->failed(n->arg, why);
}

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *b)
{
	struct bridge_net *n = h->data;

	b->base = n->rbuf;
	b->len = sizeof(n->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct bridge_net *n = s->data;

	if (nread < 0)
		fail(n, nread == UV_EOF ? "closed by the remote" : uv_strerror((int)nread));
	else if (nread > 0 && !n->closed)
		n->ops->data(n->arg, (const uint8_t *)b->base, (size_t)nread);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct bridge_net *n = req->data;

	if (n->closed)
		return;
	if (status < 0) {
		fail(n, uv_strerror(status));
		return;
	}
	if (uv_read_start((uv_stream_t *)&n->tcp, on_alloc, on_read)) {
		fail(n, "cannot read");
		return;
	}
	n->ops->connected(n->arg);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
	struct bridge_net *n = req->data;
	int rc = status;

	if (n->closed) { /* let go while resolving: no handle yet */
		uv_freeaddrinfo(ai);
		mem_free(n);
		return;
	}
	if (rc == 0 && (rc = uv_tcp_init(listener_loop(), &n->tcp)) == 0) {
		n->have_tcp = true;
		n->tcp.data = n;
		n->connect.data = n;
		((struct sockaddr_in *)ai->ai_addr)->sin_port = htons((uint16_t)n->port);
		rc = uv_tcp_connect(&n->connect, &n->tcp, ai->ai_addr, on_connect);
	}
	uv_freeaddrinfo(ai);
	if (rc < 0) {
		if (!n->have_tcp) {
			n->closed = true;
			n->ops->failed(n->arg, uv_strerror(rc));
			mem_free(n);
			return;
		}
		fail(n, uv_strerror(rc));
	}
}

struct bridge_net *bridge_net_connect(const char *host, int port, const struct bridge_net_ops *ops,
				      void *arg)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
	struct bridge_net *n = mem_calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->ops = ops;
	n->arg = arg;
	n->port = port;
	n->resolve.data = n;
	if (uv_getaddrinfo(listener_loop(), &n->resolve, on_resolved, host, NULL, &hints)) {
		mem_free(n);
		return NULL;
	}
	return n;
}

static void on_written(uv_write_t *req, int status)
{
	struct bridge_net *n = req->handle->data;

	mem_free(req);
	if (status < 0 && status != UV_ECANCELED)
		fail(n, uv_strerror(status));
}

int bridge_net_write(struct bridge_net *n, const uint8_t *p, size_t len)
{
	struct wreq *w;
	uv_buf_t b;

	if (n->closed || !n->have_tcp)
		return -1;
	w = mem_alloc(sizeof(*w) + len);
	if (!w)
		return -1;
	memcpy(w->data, p, len);
	b = uv_buf_init((char *)w->data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)&n->tcp, &b, 1, on_written)) {
		mem_free(w);
		return -1;
	}
	return 0;
}

void bridge_net_close(struct bridge_net *n)
{
	if (n && !n->closed)
		shut(n);
}
