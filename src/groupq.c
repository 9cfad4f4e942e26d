/*
 * groupq.c - the shared groups' queues of groupq.h in one chained hash
 * table keyed by share key. Loop thread only.
 *
 * Invariants: every queue is in the table once, in the bucket of
 * hash(share key); `size` is a power of two (or 0 before the first queue)
 * and doubles when the queues outnumber the buckets. A queue's outq has no
 * connection and q.group set, so outq.c only ever queues into it, applies
 * the group limits and reads its disk tail back on demand. A queue is
 * durable (stored) while its group has a persistent member, as the router
 * tells it before each message (groupq_set_durable), or while it has a tail
 * on disk: then it has a sid and a session row (client id GROUP_ROW_MARK +
 * name, version 0), and outq.c stores its entries as for any durable
 * queue; a group of clean sessions keeps its queue in memory, as they do.
 *
 * Seqs, which order a queue's rows when it is read back: copies lent to
 * members whose sessions are not stored (groupq_lend) count up from
 * LEND_SEQ0, queued entries from GROUP_SEQ0 = 2 * LEND_SEQ0, and entries
 * put back at the head take the seq below the head's; so after a crash
 * what was out with such members comes back first, in the order it went,
 * then what was handed back, then what waited.
 */
#include "groupq.h"

#include <string.h>

#include "base.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "session.h"
#include "store.h"
#include "topic.h"

#define GROUP_ROW_MARK '\xff' /* never the first byte of UTF-8 text */
#define LEND_SEQ0 (UINT64_C(1) << 39)
#define GROUP_SEQ0 (UINT64_C(1) << 40)
#define FRONT_MIN (GROUP_SEQ0 - (UINT64_C(1) << 30)) /* below: lent copies */

static struct groupq **table;
static size_t size, count;
static bool stopping; /* the broker is shutting down: queues stay as stored */

static size_t hash_key(const char *key, size_t n)
{
	uint64_t h = UINT64_C(1469598103934665603);

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)key[i]) * UINT64_C(1099511628211);
	return (size_t)(h ^ h >> 31);
}

static struct groupq **bucket(const char *share, size_t n)
{
	return &table[hash_key(share, n) & (size - 1)];
}

static int grow(void)
{
	size_t n = size ? size * 2 : 64, i;
	struct groupq **t = mem_calloc(n, sizeof(*t)), *g, *next;

	if (!t)
		return -1;
	for (i = 0; i < size; i++)
		for (g = table[i]; g; g = next) {
			next = g->hnext;
			g->hnext = t[hash_key(g->share, g->share_size) & (n - 1)];
			t[hash_key(g->share, g->share_size) & (n - 1)] = g;
		}
	mem_free(table);
	table = t;
	size = n;
	return 0;
}

struct groupq *groupq_find(const char *share)
{
	size_t n = topic_share_key_size(share);
	struct groupq *g;

	if (!size)
		return NULL;
	for (g = *bucket(share, n); g; g = g->hnext)
		if (g->share_size == n && !memcmp(g->share, share, n))
			return g;
	return NULL;
}

/* "$share/group/filter" from the share key. */
static char *name_of(const char *share)
{
	const char *filter = topic_share_key_filter(share);
	size_t gl = strlen(share), fl = strlen(filter);
	char *name = mem_alloc(7 + gl + 1 + fl + 1);

	if (name) {
		memcpy(name, "$share/", 7);
		memcpy(name + 7, share, gl);
		name[7 + gl] = '/';
		memcpy(name + 8 + gl, filter, fl + 1);
	}
	return name;
}

/* Its session row: the marker byte, then its name. */
static void save_row(struct groupq *g)
{
	struct store_session_row r;
	size_t n = strlen(g->name);
	char *id = mem_alloc(n + 2);

	if (!id) {
		log_err("shared group '%s': out of memory storing its queue", g->name);
		return;
	}
	id[0] = GROUP_ROW_MARK;
	memcpy(id + 1, g->name, n + 1);
	memset(&r, 0, sizeof(r));
	r.sid = g->sid;
	r.client_id = id;
	r.next_seq = g->q.next_seq;
	store_session_put(&r);
	mem_free(id);
}

static struct groupq *make(const char *share, const char *name)
{
	size_t n = topic_share_key_size(share);
	struct groupq *g;

	if (count >= size && grow())
		return NULL;
	g = mem_alloc(sizeof(*g));
	if (!g)
		return NULL;
	memset(g, 0, sizeof(*g));
	g->share = mem_alloc(n);
	g->name = name ? mem_strdup(name) : name_of(share);
	if (!g->share || !g->name) {
		mem_free(g->share);
		mem_free(g->name);
		mem_free(g);
		return NULL;
	}
	memcpy(g->share, share, n);
	g->share_size = n;
	outq_init(&g->q, NULL, g->name);
	g->q.group = true;
	g->q.next_seq = GROUP_SEQ0;
	g->lend_seq = LEND_SEQ0;
	g->hnext = *bucket(share, n);
	*bucket(share, n) = g;
	count++;
	return g;
}

struct groupq *groupq_get(const char *share)
{
	struct groupq *g = groupq_find(share);

	if (g || stopping)
		return g;
	return make(share, NULL);
}

void groupq_set_durable(struct groupq *g, bool durable)
{
	/* A tail on disk stays the tail: the queue goes on storing. */
	durable = store_on() && (durable || g->q.disk_n);
	if (durable && !g->sid) {
		g->sid = session_new_sid();
		save_row(g);
	}
	g->q.sid = g->sid;
	if (durable && !g->q.durable) {
		g->q.durable = true;
		outq_store_all(&g->q); /* what waits already is stored from now on too */
	}
	g->q.durable = durable;
}

static void unlink_queue(struct groupq *g)
{
	struct groupq **pp = bucket(g->share, g->share_size);

	while (*pp != g)
		pp = &(*pp)->hnext;
	*pp = g->hnext;
	count--;
}

static void free_queue(struct groupq *g)
{
	outq_free(&g->q);
	mem_free(g->share);
	mem_free(g->name);
	mem_free(g);
}

void groupq_end(struct groupq *g)
{
	uint64_t n = groupq_queued(g);

	if (stopping) {
		unlink_queue(g);
		free_queue(g);
		return;
	}
	if (n)
		log_notice("shared group '%s' ended with its last member: %llu queued message(s) "
			   "dropped",
			   g->name, (unsigned long long)n);
	base.stats.pub_dropped += n;
	base.stats.dropped[DROP_NO_MEMBER] += n; /* by cause too: /metrics and $SYS agree */
	if (g->sid)
		store_session_del(g->sid); /* its deliveries go with it */
	unlink_queue(g);
	free_queue(g);
}

int groupq_push(struct groupq *g, struct msg *m, uint8_t qos)
{
	return outq_deliver(&g->q, m, qos, false, NULL, 0, g->share);
}

int groupq_push_front(struct groupq *g, struct msg *m, uint8_t qos)
{
	return outq_push_front(&g->q, m, qos, g->share);
}

struct msg *groupq_take(struct groupq *g, uint8_t *qos)
{
	return outq_take(&g->q, qos);
}

uint64_t groupq_queued(const struct groupq *g)
{
	return outq_queued(&g->q);
}

uint64_t groupq_lend(struct groupq *g, struct msg *m, uint8_t qos)
{
	struct store_delivery_row r;

	if (!g->q.durable)
		return 0;
	memset(&r, 0, sizeof(r));
	r.seq = g->lend_seq++;
	r.msg = m;
	r.qos = qos;
	r.state = 1; /* not 0: read back with the queue's head whatever max_queued_in_memory */
	r.share = g->share;
	store_delivery_put(g->sid, &r);
	return r.seq;
}

void groupq_unlend(struct groupq *g, uint64_t seq, struct msg *m)
{
	store_delivery_del(g->sid, seq, m->id);
}

void groupq_each(void (*fn)(struct groupq *g, void *arg), void *arg)
{
	struct groupq *g;

	for (size_t i = 0; i < size; i++)
		for (g = table[i]; g; g = g->hnext)
			fn(g, arg);
}

size_t groupq_count(void)
{
	return count;
}

void groupq_stop(void)
{
	stopping = true;
}

bool groupq_stopping(void)
{
	return stopping;
}

void groupq_free_all(void)
{
	struct groupq *g, *next;

	for (size_t i = 0; i < size; i++)
		for (g = table[i]; g; g = next) {
			next = g->hnext;
			free_queue(g);
		}
	mem_free(table);
	table = NULL;
	size = count = 0;
	stopping = false;
}

/* --- start-up ------------------------------------------------------------- */

bool groupq_is_row(const char *client_id)
{
	return client_id[0] == GROUP_ROW_MARK;
}

/* The share key of "$share/group/filter" into b. */
static int key_of(const char *name, struct buf *b)
{
	const char *g, *f;
	size_t gl, fl;

	if (!topic_share_split(name, strlen(name), &g, &gl, &f, &fl))
		return -1;
	return topic_share_key_put(b, g, gl, f, fl);
}

int groupq_restore(uint64_t sid, const char *client_id, uint64_t next_seq)
{
	const char *name = client_id + 1;
	struct groupq *g;
	struct buf key;

	buf_init(&key);
	if (key_of(name, &key)) {
		buf_free(&key);
		log_warn("store: a shared group queue named '%s' is not one; ignored", name);
		return 0;
	}
	g = groupq_find((const char *)key.data);
	if (!g)
		g = make((const char *)key.data, name);
	buf_free(&key);
	if (!g)
		return -1;
	g->sid = sid;
	g->q.sid = sid;
	g->q.durable = true;
	if (next_seq > g->q.next_seq)
		g->q.next_seq = next_seq;
	return 0;
}

struct groupq *groupq_by_sid(uint64_t sid)
{
	struct groupq *g;

	for (size_t i = 0; i < size; i++)
		for (g = table[i]; g; g = g->hnext)
			if (g->sid == sid)
				return g;
	return NULL;
}

void groupq_restored_row(struct groupq *g, uint64_t seq)
{
	if (seq >= LEND_SEQ0 && seq < FRONT_MIN && seq >= g->lend_seq)
		g->lend_seq = seq + 1;
}
