/*
 * promtext.h - the Prometheus text exposition format (version 0.0.4), as
 * GET /metrics answers it: metric families, each with its HELP and TYPE
 * lines once, then its samples; a label value escaped; histograms with
 * cumulative buckets, _sum and _count.
 */
#ifndef SLUICE_PROMTEXT_H
#define SLUICE_PROMTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define PROM_NAME_MAX 128

/* One exposition being written into out. */
struct prom {
	struct buf *out;
	char family[PROM_NAME_MAX]; /* the family whose HELP/TYPE was written last */
	int err; /* an append failed (out of memory): the text is incomplete */
};

void prom_init(struct prom *p, struct buf *out);

/* Is name a metric (or label) name: [a-zA-Z_:][a-zA-Z0-9_:]*, shorter than PROM_NAME_MAX? */
bool prom_name_ok(const char *name, bool label);

/*
 * A sample of family name ("counter" or "gauge"); HELP and TYPE go first
 * when name is not the family of the sample before, so the samples of one
 * family must be written one after the other. label (with label_value,
 * escaped) may be NULL. A bad name or label name writes nothing.
 */
void prom_u64(struct prom *p, const char *name, const char *type, const char *help,
	      const char *label, const char *label_value, uint64_t value);

/*
 * A histogram: counts[i] observations of at most bounds[i] (and above the
 * last bound, counts[n]), written as cumulative buckets, then _sum and _count.
 */
void prom_histogram(struct prom *p, const char *name, const char *help, const double *bounds,
		    const uint64_t *counts, size_t n, double sum);

#endif
