/*
 * api.h - the HTTP API (/api/v1/...) as JSON, for listener_http.c.
 */
#ifndef SLUICE_API_H
#define SLUICE_API_H

#include <stddef.h>

#include "buf.h"

enum api_method { API_GET, API_DELETE, API_OTHER };

/* A request, parsed: the path after /api/v1, and the query's paging and filters. */
struct api_request {
	enum api_method method;
	const char *path; /* "/clients", "/clients/ID" (decoded) */
	size_t offset, limit; /* paging of lists */
	int connected; /* -1 any, 0 offline only, 1 connected only */
	const char *prefix; /* client ids starting with it, or NULL */
	const char *filter; /* retained messages matching it, or NULL ("#") */
};

/* Answers rq into out (a JSON object): the HTTP status (200, 4xx, 500). */
int api_handle(const struct api_request *rq, struct buf *out);
/* {"error": why} into out; returns status. */
int api_error(struct buf *out, int status, const char *why);

#endif
