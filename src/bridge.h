/*
 * bridge.h - the bridges of the configuration ("connection NAME" blocks),
 * run on the broker's loop. Loop thread only.
 */
#ifndef SLUICE_BRIDGE_H
#define SLUICE_BRIDGE_H

#include "config.h"

/* Checks what the runtime does not do yet; 0, or -1 with "FILE:LINE: ..." in err. */
int bridge_check(const struct config *cfg, char *err, size_t errlen);
/* Starts every configured bridge (after listener_start). 0, or -1 when out of memory. */
int bridge_start_all(const struct config *cfg);
/* Disconnects both sides of every bridge and frees them (before listener_stop). */
void bridge_stop_all(void);

#endif
