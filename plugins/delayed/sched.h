/*
 * sched.h - the pure half of the delayed topics plugin: parsing of every way
 * a delay is asked for, the two-level release queue, the compact index rows
 * kept in the plugin's key/value state, and the table of senders.
 *
 * Nothing here knows the broker: no sluice_plugin.h, no I/O, no clock (the
 * caller passes "now"). Memory comes from the allocator given to
 * sched_set_alloc() (malloc/free until then). Pointer parameters are
 * borrowed; functions return 0 on success and a negative value on error
 * unless they say otherwise.
 */
#ifndef SLUICE_DELAYED_SCHED_H
#define SLUICE_DELAYED_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void sched_set_alloc(void *(*alloc)(size_t), void (*release)(void *));

/* --- parsing ---------------------------------------------------------------- */

#define SCHED_PREFIX "$delayed"
#define SCHED_KEY_DELAY "delay-ms"
#define SCHED_KEY_AT "deliver-at"

/* MQTT 5 reason codes the plugin answers with. */
#define SCHED_RC_UNSPECIFIED 0x80 /* unspecified error: not stored or not cancelled (memory) */
#define SCHED_RC_IMPL_ERROR 0x83 /* implementation specific error: a bad delay */
#define SCHED_RC_NOT_AUTHORIZED 0x87 /* cancel of another client's message; a target the ACL denies */
#define SCHED_RC_TOPIC_INVALID 0x90 /* bad topic after the prefix */

enum sched_kind {
	SCHED_NONE, /* not a delayed message: let it pass */
	SCHED_DELAY, /* hold until due_ms, then release on target */
	SCHED_CANCEL, /* cancel message cancel_id */
};

/* The delay user properties of a message, as the glue found them. */
struct sched_props {
	const char *delay; /* value of delay-ms (not NUL-terminated), NULL when absent */
	size_t delay_len;
	const char *at; /* value of deliver-at */
	size_t at_len;
	unsigned n_delay, n_at; /* how many times each key appeared */
};

struct sched_req {
	enum sched_kind kind;
	uint64_t due_ms; /* DELAY: wall-clock ms */
	const char *target; /* DELAY: NUL-terminated topic to release on (points into topic) */
	uint64_t cancel_id; /* CANCEL */
	uint8_t reason; /* error: MQTT 5 reason code */
	const char *why; /* error: reason string (static) */
};

/*
 * Decides what a message on topic with props is: SCHED_NONE, a delay (due
 * time from now_ms; never more than max_ms ahead) or a cancel. Returns 0, or
 * -1 with reason and why set when the request is malformed or out of range.
 */
int sched_parse(const char *topic, const struct sched_props *props, uint64_t now_ms,
		uint64_t max_ms, struct sched_req *out);

/* "0.25" seconds -> 250 ms (rounded up to the ms, never early). -1 when malformed. */
int sched_parse_seconds(const char *s, size_t len, uint64_t *ms);
/* A decimal integer without sign, at most 18 digits. */
int sched_parse_uint(const char *s, size_t len, uint64_t *v);
/*
 * "42d", "3600", "2h": seconds, or a number with s, h, d, w, m (30 days), y
 * (365 days). -1 when malformed, -2 when too large for 64 bits of ms.
 */
int sched_parse_duration(const char *s, uint64_t *ms);

/* --- the release queue ------------------------------------------------------- */

/* One delayed message in order of release: due time, then publish order. */
struct sched_ent {
	uint64_t due; /* wall-clock ms */
	uint64_t seq; /* the message id, in publish order */
};

static inline bool sched_before(const struct sched_ent *a, const struct sched_ent *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

/* A min-heap of entries by value: 16 bytes per far-off message. */
struct sched_heap {
	struct sched_ent *a;
	size_t n, cap;
};

int sched_heap_push(struct sched_heap *h, struct sched_ent e);
/* Appends without ordering (rebuilding at start-up); sched_heap_build() then. */
int sched_heap_append(struct sched_heap *h, struct sched_ent e);
void sched_heap_build(struct sched_heap *h);
int sched_heap_pop(struct sched_heap *h, struct sched_ent *out);
void sched_heap_free(struct sched_heap *h);

enum sched_state {
	SCHED_WAIT, /* staged, its payload not asked for yet */
	SCHED_FETCHING, /* payload on its way (cold_get) */
	SCHED_READY, /* msg holds the message to release */
	SCHED_MISSING, /* the payload could not be read */
	SCHED_DONE, /* released (or given up): only its index entry is left to remove */
};

/* A staged message: due soon, its payload in memory or on its way. */
struct sched_rec {
	struct sched_ent e;
	enum sched_state state;
	void *msg; /* the glue's message, once READY */
	void *ctx; /* the glue's, for a fetch callback */
	unsigned tries; /* the glue's: failed reads of its payload */
};

/*
 * Two levels: `far` holds bare entries; `near` holds records for the
 * messages due within `window` ms (at most about `cap` of them), whose
 * payloads are fetched ahead so that release is punctual.
 *
 * Invariant: every entry in near comes before every entry in far (hi is
 * the latest entry in near). Release takes near's first entry, so messages
 * leave in (due, seq) order whichever level they were in.
 */
struct sched {
	struct sched_heap far;
	struct sched_rec **near; /* min-heap of records */
	size_t n_near, cap_near;
	struct sched_ent hi;
	uint64_t window;
	size_t cap;
};

void sched_init(struct sched *s, uint64_t window_ms, size_t cap);
/* Frees everything; free_msg (may be NULL) is called for every record's msg. */
void sched_free(struct sched *s, void (*free_msg)(void *msg));
/*
 * Adds e (seq larger than any before). Returns 0 with *rec set to a new
 * record in near (the caller sets its msg and state), or with *rec NULL when
 * e went to far.
 */
int sched_add(struct sched *s, struct sched_ent e, uint64_t now, struct sched_rec **rec);
/* Moves far's first entry to near when due by now + window and near has room. */
struct sched_rec *sched_stage(struct sched *s, uint64_t now);
/* Takes near's first record when it is due and READY, MISSING or DONE; NULL otherwise. */
struct sched_rec *sched_due(struct sched *s, uint64_t now);
/*
 * Gives back a record sched_due() returned and the caller could not finish
 * (to try again later): it is near's first again, order unchanged. -1 only
 * when out of memory, which cannot happen when nothing was added to near
 * since sched_due() (its slot is still there).
 */
int sched_putback(struct sched *s, struct sched_rec *r);
/* The first entry of either level (next release), false when empty. */
bool sched_first(const struct sched *s, struct sched_ent *out);
/* Drops the first entry of either level (a cancelled one); returns its record or NULL. */
struct sched_rec *sched_drop_first(struct sched *s);
/* When the caller's timer should fire next: UINT64_MAX for "only when told". */
uint64_t sched_wake(const struct sched *s);
size_t sched_count(const struct sched *s);
void sched_rec_free(struct sched_rec *r);

/* --- index rows ---------------------------------------------------------------- */

/*
 * The durable index is chunked: messages seq with the same seq >> 5 share
 * one key/value row "c" + be64(seq >> 5) whose value is a list of 13-byte
 * entries (index in chunk u8, due be64, sender id be32) sorted by index.
 * A million messages make some 31,000 small rows instead of a million.
 */
#define SCHED_CHUNK_BITS 5
#define SCHED_CHUNK (1u << SCHED_CHUNK_BITS)
#define SCHED_REC_SIZE 13
#define SCHED_CHUNK_MAX (SCHED_CHUNK * SCHED_REC_SIZE)

struct sched_item {
	unsigned idx; /* seq & (SCHED_CHUNK - 1) */
	uint64_t due;
	uint32_t sender;
};

/* Checks a stored chunk value. */
bool sched_chunk_valid(const uint8_t *v, size_t len);
/* 0 and *it when idx is in the chunk, -1 when not. */
int sched_chunk_find(const uint8_t *v, size_t len, unsigned idx, struct sched_item *it);
/*
 * Writes v with it added (or replaced) to out (room for len + SCHED_REC_SIZE);
 * returns the new length.
 */
size_t sched_chunk_add(const uint8_t *v, size_t len, const struct sched_item *it, uint8_t *out);
/* Writes v without idx to out (room for len); returns the length. */
size_t sched_chunk_remove(const uint8_t *v, size_t len, unsigned idx, uint8_t *out);
/* The latest due time of the entries of a valid chunk value (0 when empty). */
uint64_t sched_chunk_last_due(const uint8_t *v, size_t len);
/* The i-th entry (i < len / SCHED_REC_SIZE). */
void sched_chunk_item(const uint8_t *v, size_t i, struct sched_item *it);

/* Keys: "c"+be64 chunk (9 bytes), "s"+be32 sender (5), "p"+be64 seq (9, cold payload). */
size_t sched_key_chunk(uint8_t *out, uint64_t seq);
size_t sched_key_sender(uint8_t *out, uint32_t id);
size_t sched_key_payload(uint8_t *out, uint64_t seq);
void sched_put_be64(uint8_t *p, uint64_t v);
uint64_t sched_get_be64(const uint8_t *p);
uint32_t sched_get_be32(const uint8_t *p);

/* --- senders ------------------------------------------------------------------- */

/*
 * The client ids that published pending messages, each kept once with the
 * number of pending messages it has, found by name and by id.
 */
struct sched_sender {
	struct sched_sender *by_name, *by_id; /* hash chains */
	uint32_t id;
	uint32_t refs;
	char name[];
};

struct sched_senders {
	struct sched_sender **name_tab, **id_tab;
	size_t n, size;
};

void sched_senders_init(struct sched_senders *ss);
void sched_senders_free(struct sched_senders *ss);
struct sched_sender *sched_senders_find(const struct sched_senders *ss, const char *name);
struct sched_sender *sched_senders_by_id(const struct sched_senders *ss, uint32_t id);
/* A new sender with refs 0; NULL when out of memory or id is taken. */
struct sched_sender *sched_senders_add(struct sched_senders *ss, const char *name, uint32_t id);
void sched_senders_remove(struct sched_senders *ss, struct sched_sender *s);

#endif
