/*
 * metrics.h - the broker's and its plugins' figures for GET /metrics, in the
 * Prometheus text format (version 0.0.4).
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include "buf.h"

/* Appends the whole exposition to out: 0, or -1 (out of memory: out is incomplete). */
int metrics_render(struct buf *out);

#endif
