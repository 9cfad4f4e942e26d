/*
 * keytab.h - the ordered plugin's key tables and per-key window, pure (no
 * broker, no plugin header): what is in flight and what waits, per
 * subscription target and ordering key.
 *
 * A target is one receiving side of an ordered message: a client's plain
 * subscriptions ("c" + client id) or one shared group ("g" + group + NUL +
 * filter); its name is an opaque byte string. A key is the ordering key
 * within the target (the plugin puts its filter's index before it). For
 * each (target, key) the window holds at most one message "in the broker"
 * (busy: handed to delivery, not yet acknowledged or dropped) and a list of
 * messages waiting behind it, in message id order (the order the broker
 * accepted them).
 *
 * State exists only while a key is busy or has waiting messages: a key that
 * becomes idle is freed, and a target without keys with it.
 */
#ifndef ORDERED_KEYTAB_H
#define ORDERED_KEYTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kt_wait {
	struct kt_wait *next;
	uint64_t id; /* the message's id: its place in the list */
	void *msg; /* the caller's (a message reference) */
	uint64_t row; /* the caller's (the id its stored row is named by) */
	uint8_t qos; /* of the delivery that waits */
	bool stored; /* the caller wrote it to its store */
};

struct kt_target;

struct kt_key {
	struct kt_key *hnext; /* hash chain */
	struct kt_key *bnext; /* chain of the busy index (by target and busy id) */
	struct kt_target *t;
	uint64_t hash;
	uint64_t busy; /* id of the message in the broker, 0 = none (set with kt_set_busy) */
	bool busy_unknown; /* busy with a message whose id is not known (restored) */
	bool busy_stored; /* the caller wrote the busy mark to its store */
	bool refused; /* the caller's: the busy message was refused and is to come again */
	bool dead; /* the caller's: its next refusal is its last (a dead letter came first) */
	void *aux; /* the caller's (the refused message); kept by keytab as it is */
	uint64_t aux_until; /* the caller's (when the refused message expires, 0 = never) */
	bool releasing; /* the caller is handing out waiting messages */
	struct kt_wait *head, *tail;
	uint32_t n_wait;
	uint16_t klen;
	uint16_t kcap; /* room for the key: KT_SPARE_KLEN for keys that may be reused */
	unsigned char key[];
};

#define KT_SPARE_KLEN 48 /* keys up to this long are kept for reuse once freed */
#define KT_SPARE_MAX 1024 /* at most this many of them */

struct kt_target {
	struct kt_target *hnext;
	uint64_t hash;
	size_t n_keys; /* its keys (in the key table: no list, so making and freeing one
			* touches no other key) */
	uint64_t cache_gen; /* the caller's: when it last looked up cache_flag */
	bool cache_flag; /* the caller's: a fact about the target it caches */
	uint16_t nlen;
	unsigned char name[];
};

struct keytab {
	struct kt_key **keys; /* hash table of keys */
	size_t n_keys, cap_keys;
	struct kt_target **targets;
	size_t n_targets, cap_targets;
	struct kt_key **busy; /* hash table of busy keys by (target, busy id) */
	size_t n_busy, cap_busy;
	struct kt_key *spare; /* freed keys kept for the next ones (chained by hnext) */
	size_t n_spare;
	uint64_t n_wait; /* messages waiting, over every key */
	struct kt_target *last; /* the caller's cache of a target; cleared when it is freed */
	void *(*alloc)(size_t);
	void (*free)(void *);
};

/* What a delivery of message id at qos to (target, key) should do. */
enum kt_verdict {
	KT_PASS, /* go on; the key is now busy with it (qos > 0) */
	KT_WAIT, /* it waits: the caller keeps it (kt_wait_add) */
	KT_WAITING, /* it already waits in the list (nothing to add) */
};

int kt_init(struct keytab *kt, void *(*alloc)(size_t), void (*free_fn)(void *));
/* Called for each waiting entry w of a key being dropped, then once with w NULL for the key. */
typedef void (*kt_drop_fn)(void *arg, struct kt_key *k, struct kt_wait *w);

/* Frees every key and target, calling drop (may be NULL) first. */
void kt_free(struct keytab *kt, kt_drop_fn drop, void *arg);

struct kt_target *kt_target_find(const struct keytab *kt, const void *name, size_t nlen);
struct kt_key *kt_key_find(const struct keytab *kt, const struct kt_target *t, const void *key,
			   size_t klen);
/* The key, made (with its target) when missing; NULL when out of memory. */
struct kt_key *kt_key_get(struct keytab *kt, const void *name, size_t nlen, const void *key,
			  size_t klen);
/* The same for a target that exists. */
struct kt_key *kt_key_get_in(struct keytab *kt, struct kt_target *t, const void *key, size_t klen);

/*
 * The window's decision for a delivery of message id at qos (0..2) to
 * (t, key) (k: the key's state, NULL when it has none). A delivery of the
 * busy message itself passes (again: after a move to another member, say);
 * a delivery at QoS 0 of the busy message ends its busy time. Otherwise it
 * passes when the key is idle (nothing busy, nothing waiting), and then
 * makes the key busy when qos > 0. Else it waits.
 */
enum kt_verdict kt_deliver(struct keytab *kt, struct kt_key *k, uint64_t id, uint8_t qos);
/* k is busy with message id (0: not busy any more); the busy index follows. */
void kt_set_busy(struct keytab *kt, struct kt_key *k, uint64_t id);
/* The key of target t that is busy with message id, or NULL. */
struct kt_key *kt_busy_find(const struct keytab *kt, const struct kt_target *t, uint64_t id);
/* Adds a waiting message in id order; NULL when out of memory. */
struct kt_wait *kt_wait_add(struct keytab *kt, struct kt_key *k, uint64_t id, void *msg,
			    uint8_t qos);
/*
 * The delivery of id to k ended (acknowledged, refused or dropped): true
 * when it was the busy one (or the key was busy with an unknown message),
 * and the key is idle now (its waiting messages may go: kt_next).
 */
bool kt_done(struct keytab *kt, struct kt_key *k, uint64_t id);
/* The first waiting message, taken out of the list, and the key busy with it; NULL when none or busy. */
struct kt_wait *kt_next(struct keytab *kt, struct kt_key *k);
/* Frees a waiting entry taken with kt_next or kt_take_all (the caller released its msg). */
void kt_wait_free(struct keytab *kt, struct kt_wait *w);
/* Frees k (and its target when it was the last key) when it is idle and not releasing: true then. */
bool kt_key_gc(struct keytab *kt, struct kt_key *k);
/* Drops every key of t (calling drop; a walk of the whole key table), then frees them and t. */
void kt_target_drop(struct keytab *kt, struct kt_target *t, kt_drop_fn drop, void *arg);
/* Calls fn for every key (fn may not free keys); stops when fn returns non-zero. */
int kt_each(struct keytab *kt, int (*fn)(void *arg, struct kt_key *k), void *arg);

#endif
