/*
 * plugin_sys.h - what every plugin under plugins/ shares for its figures:
 * one retained $SYS message per value, and the same values reported to
 * GET /metrics, from one function. Uses only sluice_plugin.h.
 *
 * A plugin writes one report function that calls plugin_metric() for each
 * of its values (struct sp_metric names it for Prometheus and for $SYS).
 * Its collector (host->metrics_register) runs it with the scrape's
 * sp_metrics; its $SYS refresh runs it with out NULL, which publishes
 * every value that has a $SYS leaf.
 */
#ifndef SLUICE_PLUGIN_SYS_H
#define SLUICE_PLUGIN_SYS_H

#include <stdint.h>

#include "sluice_plugin.h"

/* Where one run of a report function goes: GET /metrics (out) or $SYS (out NULL). */
struct plugin_report {
	const struct sp_host *host;
	struct sp_plugin *self;
	struct sp_metrics *out;
};

/* One value: to the scrape, or retained on $SYS/broker/{m->sys} (if it has one). */
void plugin_metric(struct plugin_report *r, const struct sp_metric *m, uint64_t v);
/* n of them: v[i] is the value of m[i]. */
void plugin_metrics(struct plugin_report *r, const struct sp_metric *m, const uint64_t *v,
		    size_t n);

/*
 * Routes text as a retained message on $SYS/broker/{area}/{leaf} (plugins
 * after self see it first). Nothing when out of memory: the next refresh
 * publishes it again.
 */
void plugin_sys_publish_text(const struct sp_host *host, struct sp_plugin *self, const char *area,
			     const char *leaf, const char *text);

#endif
