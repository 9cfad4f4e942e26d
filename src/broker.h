/*
 * broker.h - the broker's lifecycle: start-up in dependency order, the
 * loop, and shutdown. The state every module shares is base.h's; what is
 * left here is only what the loop and the signal handlers share.
 */
#ifndef SLUICE_BROKER_H
#define SLUICE_BROKER_H

#include <signal.h>

#include "config.h"

/* Sets up every subsystem and opens the listeners. Returns 0 or -1 (logged). */
int broker_init(const struct config *cfg);
/* Runs the loop until broker_request_stop(). */
int broker_run(void);
void broker_shutdown(void);
/* Async-signal-safe. */
void broker_request_stop(void);
/* SIGHUP: reopen the log file, reload the password file. */
void broker_request_reload(void);

#endif
