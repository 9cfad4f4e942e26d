/*
 * bridge_net.h - one outgoing TCP connection of a bridge, on the broker's
 * loop (libuv, owned by listener_lws.c). Pointers are borrowed.
 */
#ifndef SLUICE_BRIDGE_NET_H
#define SLUICE_BRIDGE_NET_H

#include <stddef.h>
#include <stdint.h>

struct bridge_net;

struct bridge_net_ops {
	void (*connected)(void *arg); /* the TCP connection is up */
	void (*data)(void *arg, const uint8_t *p, size_t n);
	void (*failed)(void *arg, const char *why); /* once; the connection is gone, freed */
};

/* Resolves host and connects, without blocking; NULL when out of memory. */
struct bridge_net *bridge_net_connect(const char *host, int port, const struct bridge_net_ops *ops,
				      void *arg);
/* Queues bytes (copied). 0, or -1 when out of memory (the caller closes). */
int bridge_net_write(struct bridge_net *n, const uint8_t *p, size_t len);
/* Closes and frees; no callback runs after it. */
void bridge_net_close(struct bridge_net *n);

#endif
