/*
 * plugin_sys.h - what every plugin under plugins/ shares for its $SYS
 * counters: one retained message per counter. Uses only sluice_plugin.h.
 */
#ifndef SLUICE_PLUGIN_SYS_H
#define SLUICE_PLUGIN_SYS_H

#include <stdint.h>

#include "sluice_plugin.h"

/*
 * Routes v, in decimal, as a retained message on $SYS/broker/{area}/{leaf}
 * (plugins after self see it first). Nothing when out of memory: the next
 * refresh publishes it again.
 */
void plugin_sys_publish(const struct sp_host *host, struct sp_plugin *self, const char *area,
			const char *leaf, uint64_t v);
/* The same with a text payload. */
void plugin_sys_publish_text(const struct sp_host *host, struct sp_plugin *self, const char *area,
			     const char *leaf, const char *text);

#endif
