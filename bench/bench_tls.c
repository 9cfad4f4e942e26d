/*
 * bench_tls.c - TLS for sluice-bench's clients (--tls), with OpenSSL:
 * one client context, and non-blocking handshake, read and write calls in
 * the shape of read()/write() (-1 with errno EAGAIN while OpenSSL waits for
 * the socket), so that bench_net.c's epoll loop treats both alike.
 *
 * Runs on the generator's one thread. The server certificate is checked
 * against --cafile when one is given, else not at all (a benchmark on
 * loopback measures the protocol, not the trust store).
 */
#include "bench.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>

static SSL_CTX *ctx;

int btls_init(const char *cafile)
{
	if (ctx)
		return 0;
	if (!(ctx = SSL_CTX_new(TLS_client_method())))
		return -1;
	/* bench_net.c writes from a buffer that may move and may be written in parts */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (cafile) {
		if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
			fprintf(stderr, "sluice-bench: --cafile %s: no usable CA certificate\n",
				cafile);
			return -1;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	return 0;
}

void *btls_new(int fd)
{
	SSL *s = SSL_new(ctx);

	if (s && SSL_set_fd(s, fd) != 1) {
		SSL_free(s);
		return NULL;
	}
	if (s)
		SSL_set_connect_state(s);
	return s;
}

void btls_free(void *tls)
{
	SSL_free(tls);
}

/* -1 with errno EAGAIN when OpenSSL waits for the socket, else -1 with EPROTO. */
static int want(SSL *s, int rc)
{
	int e = SSL_get_error(s, rc);

	ERR_clear_error();
	errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EPROTO;
	return -1;
}

int btls_handshake(void *tls)
{
	int rc = SSL_do_handshake(tls);

	return rc == 1 ? 1 : want(tls, rc);
}

ssize_t btls_read(void *tls, void *buf, size_t n)
{
	int rc = SSL_read(tls, buf, (int)n);

	if (rc > 0)
		return rc;
	if (SSL_get_error(tls, rc) == SSL_ERROR_ZERO_RETURN)
		return 0;
	return want(tls, rc);
}

ssize_t btls_write(void *tls, const void *buf, size_t n)
{
	int rc = SSL_write(tls, buf, (int)n);

	return rc > 0 ? rc : want(tls, rc);
}

bool btls_pending(void *tls)
{
	return SSL_pending(tls) > 0;
}
