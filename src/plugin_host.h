/*
 * plugin_host.h - the host table plugins call back through (the broker's
 * implementation of struct sp_host, include/sluice_plugin.h).
 */
#ifndef SLUICE_PLUGIN_HOST_H
#define SLUICE_PLUGIN_HOST_H

#include "sluice_plugin.h"

/* The table handed to every plugin's init (plugin_load_all). */
const struct sp_host *plugin_host_table(void);
/* Cancels every plugin timer (after the STOP event, before the plugins' cleanup). */
void plugin_host_stop(void);

#endif
