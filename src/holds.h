/*
 * holds.h - deliveries the plugins hold (SP_HOLD on DELIVER or CHOOSE): the
 * message and everything needed to deliver it later, kept until the plugin
 * releases or discards it, or its session ends. Loop thread only.
 *
 * A hold is keyed by (plugin, hold id) and targets either one session
 * (client_id set: a DELIVER hold) or a shared group (client_id NULL, share
 * set: a CHOOSE hold). Both look-ups that matter are hashed: by key, for
 * release and discard, and by client id, for the end of a session; no
 * operation walks every hold.
 *
 * This file only keeps holds; what a release or the end of a session leads
 * to is decided above it (router.c). Pointer parameters are borrowed; a
 * hold keeps its own copies and message reference.
 */
#ifndef SLUICE_HOLDS_H
#define SLUICE_HOLDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msg;
struct sp_plugin;

struct hold {
	struct hold *id_next; /* chain of its key's bucket */
	struct hold *cl_next, *cl_prev; /* chain of its client's bucket (session holds) */
	struct sp_plugin *owner;
	uint64_t id;
	char *client_id; /* the session it is for, or NULL for a group hold */
	struct msg *msg;
	uint8_t qos;
	bool retain;
	uint32_t *subids;
	size_t n_subids;
	char *share; /* "group\0filter", or NULL */
};

/*
 * Keeps a delivery under (owner, id). Returns 0, -1 when out of memory, or
 * -2 when the owner already holds something under id.
 */
int holds_add(struct sp_plugin *owner, uint64_t id, const char *client_id, struct msg *m,
	      uint8_t qos, bool retain, const uint32_t *subids, size_t n_subids, const char *share);
/* Removes the hold (owner, id) and hands it over, or NULL when there is none. */
struct hold *holds_take(struct sp_plugin *owner, uint64_t id);
/* Removes one hold of client_id and hands it over; NULL when it has none left. */
struct hold *holds_take_client(const char *client_id);
void holds_free(struct hold *h);
/* Frees every hold (shutdown). */
void holds_clear(void);
size_t holds_count(void);

#endif
