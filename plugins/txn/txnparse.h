/*
 * txnparse.h - the pure part of the transactional topics plugin: what a
 * topic under $txn/ asks for, the option and property values, the durable
 * record of one transaction and the keys it is stored under. No broker,
 * no allocation: unit-tested on its own (tests/unit/test_txnparse.c).
 */
#ifndef SLUICE_TXNPARSE_H
#define SLUICE_TXNPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TXN_ID_MAX 64
#define TXN_RC_UNSPECIFIED 0x80
#define TXN_RC_IMPL 0x83 /* Implementation specific error */
#define TXN_RC_NOT_AUTHORIZED 0x87
#define TXN_RC_TOPIC_INVALID 0x90
#define TXN_RC_QUOTA 0x97

enum txn_kind {
	TXN_NONE, /* not a $txn/ topic: none of this plugin's business */
	TXN_HALF, /* $txn/half/{id}/{topic} */
	TXN_COMMIT, /* $txn/commit/{id} */
	TXN_ROLLBACK, /* $txn/rollback/{id} */
	TXN_BAD, /* a $txn/ topic a client may not publish to: reason, why */
};

struct txn_topic {
	enum txn_kind kind;
	const char *id; /* into the topic; id_len bytes, not terminated */
	size_t id_len;
	const char *target; /* HALF: the topic it will be published on (the topic's tail) */
	uint8_t reason; /* BAD */
	const char *why; /* BAD */
};

/* Splits a topic name; never fails (a malformed $txn/ topic is TXN_BAD). */
void txn_parse_topic(const char *topic, struct txn_topic *out);
/* 1 to 64 characters of A-Z a-z 0-9 _ . - */
bool txn_id_valid(const char *s, size_t len);
/* A producer group can name the topic $txn/check/{group}: non-empty, no wildcard. */
bool txn_group_valid(const char *s, size_t len);
/* A decimal integer without sign, at most 18 digits. -1 when malformed. */
int txn_parse_uint(const char *s, size_t len, uint64_t *v);
/* "250ms", "6s", "6", "2h", "1d" (a bare number is seconds) -> ms. -1 when malformed. */
int txn_parse_duration(const char *s, uint64_t *ms);

/* --- the durable record ---------------------------------------------------- */

enum txn_state {
	TXN_OPEN = 1, /* collecting half messages */
	TXN_COMMITTING, /* committed, its messages not all routed yet */
	TXN_COMMITTED, /* outcome remembered */
	TXN_ROLLED_BACK, /* outcome remembered */
};

struct txn_rec {
	uint8_t state;
	uint32_t count; /* half messages held */
	uint32_t routed; /* COMMITTING: messages already routed, from the first */
	uint32_t checks; /* check-backs sent since the last half message */
	uint64_t opened_ms; /* wall clock of the first half message */
	uint64_t last_ms; /* wall clock of the last half message */
	uint64_t check_after_ms;
	uint64_t resolved_ms; /* wall clock of the outcome; 0 while open */
	const char *owner; /* client id; owner_len bytes (decode: into the value) */
	size_t owner_len;
	const char *group;
	size_t group_len;
};

#define TXN_REC_FIXED 50 /* bytes besides the two strings */
size_t txn_rec_size(const struct txn_rec *r);
/* Writes txn_rec_size(r) bytes. */
void txn_rec_encode(const struct txn_rec *r, uint8_t *out);
/* 0, or -1 when v is not a record (strings point into v). */
int txn_rec_decode(const uint8_t *v, size_t len, struct txn_rec *r);

/* --- keys ----------------------------------------------------------------- */

/* Key/value: "t" + id, the record. Cold: "m" + id + "/" + seq (4 bytes, big endian). */
#define TXN_KEY_MAX (1 + TXN_ID_MAX + 1 + 4)
size_t txn_key_rec(uint8_t *out, const char *id, size_t id_len);
size_t txn_key_msg(uint8_t *out, const char *id, size_t id_len, uint32_t seq);
/* The range [lo, hi) holding every message key of the transaction. */
void txn_key_msg_range(const char *id, size_t id_len, uint8_t *lo, size_t *lol, uint8_t *hi,
		       size_t *hil);

#endif
