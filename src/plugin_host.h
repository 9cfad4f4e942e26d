/*
 * plugin_host.h - the host table plugins call back through (the broker's
 * implementation of struct sp_host, include/sluice_plugin.h).
 */
#ifndef SLUICE_PLUGIN_HOST_H
#define SLUICE_PLUGIN_HOST_H

#include "sluice_plugin.h"

/* The table handed to every plugin's init (plugin_load_all). */
const struct sp_host *plugin_host_table(void);
/* Cancels every plugin timer and forgets the collectors (after STOP, before the cleanup). */
void plugin_host_stop(void);

struct prom;
/* Every plugin's metrics, as its collector reports them, into the exposition p. */
void plugin_host_metrics(struct prom *p);

#endif
