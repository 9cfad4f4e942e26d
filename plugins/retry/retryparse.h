/*
 * retryparse.h - the pure part of the consumer retry plugin: option values
 * (durations, the back-off list), the delivery-count property, the
 * dead-letter topic, the durable record of a pending retry or a waiting
 * dead letter and the keys it is stored under, and the min-heap of due
 * times. No broker, no clock (callers pass "now"): unit-tested on its own
 * (tests/unit/test_retryparse.c).
 *
 * Memory comes from the allocator given to retry_set_alloc() (malloc/free
 * until then); only the heap allocates. Pointer parameters are borrowed;
 * functions return 0 on success and a negative value on error unless they
 * say otherwise.
 */
#ifndef SLUICE_RETRYPARSE_H
#define SLUICE_RETRYPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void retry_set_alloc(void *(*alloc)(size_t), void (*release)(void *));

/* User properties of a redelivery and of a dead letter. */
#define RETRY_KEY_COUNT "delivery-count"
#define RETRY_KEY_TOPIC "original-topic"
#define RETRY_KEY_REASON "reason-code"
#define RETRY_KEY_CONSUMER "consumer"
#define RETRY_DLQ_PREFIX "$DLQ/"
#define RETRY_STEPS_MAX 64 /* back-off steps at most */
#define RETRY_TOPIC_MAX 65535 /* an MQTT topic name's length at most [MQTT-1.5.4-1] */

/* --- option and property values ----------------------------------------- */

/* A decimal integer without sign, 1 to 18 digits. */
int retry_parse_uint(const char *s, size_t len, uint64_t *v);
/*
 * "250ms", "5s", "2m" (minutes, as RocketMQ writes them), "1h", "3d", or a
 * bare number of seconds -> ms. -1 when malformed, -2 when too large for 64
 * bits of ms.
 */
int retry_parse_duration(const char *s, size_t len, uint64_t *ms);
/*
 * "1s,5s,10s" (commas, blanks or both between the steps) -> steps[0..*n),
 * at most cap of them. -1 when a step is malformed or empty or there are
 * more than cap, -2 when one is too large.
 */
int retry_parse_backoff(const char *s, uint64_t *steps, size_t cap, size_t *n);
/* The wait before retrying failed attempt `failed` (>= 1): steps[failed - 1], the last repeating. */
uint64_t retry_backoff(const uint64_t *steps, size_t n, uint32_t failed);
/*
 * The attempt a delivery was, from the value of its delivery-count property
 * (NULL: it had none): 1 for a first delivery and for a value that is not a
 * number from 1 up (a publisher's own property is not trusted beyond that).
 */
uint32_t retry_attempt(const char *v, size_t len);
/* "0x80": 5 bytes with the NUL. */
void retry_reason_hex(uint8_t reason, char out[5]);

/* --- topics --------------------------------------------------------------- */

/* Is topic a dead letter's ($DLQ/...)? */
bool retry_is_dlq(const char *topic);
/*
 * "$DLQ/{group}/{topic}" into out (cap bytes with the NUL); '+' and '#' of
 * group (a client id may hold them, a topic name may not) become '_'.
 * Returns the length, or 0 when longer than RETRY_TOPIC_MAX or cap - 1.
 */
size_t retry_dlq_topic(char *out, size_t cap, const char *group, const char *topic);
/* The filter a topic is matched against: after "$share/{group}/"; NULL for a malformed share. */
const char *retry_plain_filter(const char *filter);

/* --- the durable record ---------------------------------------------------- */

enum retry_kind {
	RETRY_REC_RETRY = 1, /* a redelivery waiting for its due time */
	RETRY_REC_DEAD, /* a dead letter waiting for its first subscriber */
};

#define RETRY_F_GROUP 0x01 /* RETRY: target is a shared group (with filter), not a client id */
#define RETRY_F_DLQ 0x02 /* RETRY: at its time it goes to the dead letters, not redelivered */

struct retry_str {
	const char *p; /* not NUL-terminated after decode: points into the value */
	size_t len;
};

struct retry_rec {
	uint8_t kind; /* enum retry_kind */
	uint8_t flags; /* RETRY_F_* */
	uint8_t reason; /* the last refusal's reason code */
	uint32_t attempt; /* RETRY: the attempt the redelivery will be (failed ones + 1) */
	uint64_t when; /* RETRY: wall ms it is due; DEAD: wall ms it began to wait */
	struct retry_str target; /* RETRY: client id or group; DEAD: the dead-letter topic */
	struct retry_str filter; /* RETRY with RETRY_F_GROUP: the group's filter */
	struct retry_str consumer; /* RETRY: the client that refused last */
};

#define RETRY_REC_FIXED 22 /* bytes besides the three strings */
size_t retry_rec_size(const struct retry_rec *r);
/* Writes retry_rec_size(r) bytes. -1 when a string is longer than 65535 bytes. */
int retry_rec_encode(const struct retry_rec *r, uint8_t *out);
/* 0, or -1 when v is not a record. */
int retry_rec_decode(const uint8_t *v, size_t len, struct retry_rec *r);

/*
 * Keys, 9 bytes: key/value "r"+be64(seq) a pending retry, "d"+be64(seq) a
 * waiting dead letter; cold "m"+be64(seq) the message of either.
 */
#define RETRY_KEY_LEN 9
#define RETRY_PFX_RETRY 'r'
#define RETRY_PFX_DEAD 'd'
#define RETRY_PFX_MSG 'm'
void retry_key(uint8_t *out, char prefix, uint64_t seq);
/* The seq of a 9-byte key; false when key is not one. */
bool retry_key_seq(const void *key, size_t klen, uint64_t *seq);

/* --- the queue of due times ------------------------------------------------- */

struct retry_ent {
	uint64_t due; /* wall ms */
	uint64_t seq; /* ties in the order the refusals came */
	void *p; /* the caller's */
};

struct retry_heap {
	struct retry_ent *a;
	size_t n, cap;
};

int retry_heap_push(struct retry_heap *h, struct retry_ent e);
/* The first entry without taking it; false when empty. */
bool retry_heap_peek(const struct retry_heap *h, struct retry_ent *out);
/* Takes the first entry; false when empty. */
bool retry_heap_pop(struct retry_heap *h, struct retry_ent *out);
void retry_heap_free(struct retry_heap *h);

#endif
