/*
 * listener.h - what the broker asks of the transport layer (libwebsockets).
 * Only listener_lws.c includes <libwebsockets.h>.
 */
#ifndef SLUICE_LISTENER_H
#define SLUICE_LISTENER_H

#include <stdint.h>

#include "config.h"

/* Creates the lws context and one vhost per configured listener. 0 or -1 (logged). */
int listener_start(const struct config *cfg);
/* Runs one loop iteration. Returns <0 when the loop is finished. */
int listener_service(void);
/* Async-signal-safe and thread-safe: makes listener_service return soon. */
void listener_wake(void);
/* The earliest timer moved to due_ms (monotonic ms, UINT64_MAX = none). */
void listener_timer_changed(uint64_t due_ms);
void listener_stop(void);
/* The loop (libuv's) that listener_start created, for other handles on it (bridge_net.c). */
struct uv_loop_s *listener_loop(void);
/* SIGHUP: TLS listeners read their certificates again (the old stay if the new fail). */
void listener_reload(void);

#endif
