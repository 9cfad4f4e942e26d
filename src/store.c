/*
 * store.c - the loop's side of the store: durable state in SQLite, written
 * by one writer thread with group commit, so the loop never waits on the
 * disk. The database itself (schema, restore, executing batches) is
 * store_db.c's.
 *
 * Threads. The loop thread owns everything in the broker; the writer
 * thread owns the database connection once store_start() ran (before that,
 * the loop opens, migrates and restores from it alone). They share only
 * three things, under `lock`: the batch handed to the writer (`todo`), the
 * list of committed batches (`done`), and the stop flag (plus the counters
 * of store_get_stats). The writer wakes the loop after each commit with the
 * function store_start() was given (the transport's thread-safe wake-up).
 *
 * Batches. Operations queue in the open batch. A batch is handed over only
 * when the writer is idle, so commits never overlap and a slow commit makes
 * the next batch larger instead of making the loop wait: group commit.
 * Callbacks (store_after_commit) live in the batch at the position they
 * were queued; a callback's status covers the operations between it and the
 * previous callback (a unit), which is how a publisher learns that its
 * message in particular could not be stored.
 *
 * Out of memory. An operation that cannot be queued is lost, but not
 * silently: its unit's callback reports -ENOMEM (unit_lost), so no
 * acknowledgement ever covers a write that was dropped.
 */
#include "store_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "topic.h"

static bool enabled;
static pthread_t writer;
static bool writer_started;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct batch *todo; /* handed to the writer */
static struct batch *done_head, *done_tail; /* committed, for the loop */
static bool stopping;
static bool busy; /* loop's view: a batch is with the writer or not yet polled */
static struct batch *open_batch;
static struct store_stats stats;
static uint64_t open_seq = 1; /* number of the open batch; batches commit in order */
static uint64_t committed_seq; /* number of the last batch whose callbacks ran */
static void (*commit_hook)(void);
static void (*wake_loop)(void); /* thread-safe: makes the loop call store_poll() soon */
/*
 * An operation of the unit being queued (the operations since the last
 * callback) was lost to lack of memory: the unit's callback reports
 * -ENOMEM, so that no acknowledgement covers what was not stored.
 */
static bool unit_lost;

int store_open(const struct config *cfg)
{
	enabled = cfg->persistence;
	open_batch = NULL;
	if (!enabled)
		return 0;
	if (store_db_open(cfg)) {
		enabled = false;
		return -1;
	}
	return 0;
}

bool store_on(void)
{
	return enabled;
}
int store_restore(const struct store_restore_ops *ops, uint64_t *heartbeat_wall)
{
	*heartbeat_wall = 0;
	return enabled ? store_db_restore(ops, heartbeat_wall) : 0;
}

/* --- the loop's side: queueing operations ------------------------------------------ */

static struct batch *batch_new(void)
{
	return mem_calloc(1, sizeof(struct batch));
}

/* A new operation at the end of the open batch; NULL when out of memory (logged). */
static struct op *op_add(uint8_t type)
{
	struct batch *b;
	struct op *o;

	if (!enabled)
		return NULL;
	if (!open_batch && !(open_batch = batch_new()))
		goto oom;
	b = open_batch;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		struct op *a = mem_realloc(b->ops, cap * sizeof(*a));

		if (!a)
			goto oom;
		b->ops = a;
		b->cap = cap;
	}
	o = &b->ops[b->n++];
	memset(o, 0, sizeof(*o));
	o->type = type;
	return o;
oom:
	log_err("store: out of memory queueing a write; it is lost (and reported)");
	unit_lost = true;
	return NULL;
}

/* An operation whose copies could not all be made is dropped like one never queued. */
static void op_free(struct op *o);

static int op_complete(struct op *o, bool ok)
{
	if (ok)
		return 0;
	op_free(o);
	memset(o, 0, sizeof(*o));
	o->type = OP_NOP;
	log_err("store: out of memory queueing a write; it is lost (and reported)");
	unit_lost = true;
	return -1;
}

static void op_free(struct op *o)
{
	mem_free(o->text);
	mem_free(o->text2);
	mem_free(o->blob);
	mem_free(o->blob2);
	msg_unref(o->msg);
	if (o->load) {
		mem_free(o->load->raw);
		buf_free(&o->load->bytes);
		mem_free(o->load);
	}
}

static void batch_free(struct batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		op_free(&b->ops[i]);
	mem_free(b->ops);
	mem_free(b->puts);
	mem_free(b);
}

/*
 * Cancelling. A delivery acknowledged before its batch reached the writer
 * never needs to touch the disk: the put is turned into a no-op and the
 * delete is not queued. Under load, when batches are large, this is most
 * deliveries to connected subscribers. The index is a small open-addressed
 * hash of the open batch's puts.
 */
static size_t put_hash(uint64_t sid, uint64_t seq, size_t mask)
{
	return (size_t)((sid * 0x9E3779B97F4A7C15ull) ^ (seq * 0xC2B2AE3D27D4EB4Full)) & mask;
}

static void put_index_add(struct batch *b, uint64_t sid, uint64_t seq, size_t idx)
{
	size_t i, mask;

	if ((b->puts_used + 1) * 2 > b->puts_cap) {
		size_t cap = b->puts_cap ? b->puts_cap * 2 : 256;
		struct put_slot *a = mem_calloc(cap, sizeof(*a)), *old = b->puts;

		if (!a)
			return; /* no index: this put simply cannot be cancelled */
		b->puts = a;
		for (i = 0; i < b->puts_cap; i++)
			if (old[i].sid) {
				size_t j = put_hash(old[i].sid, old[i].seq, cap - 1);

				while (a[j].sid)
					j = (j + 1) & (cap - 1);
				a[j] = old[i];
			}
		mem_free(old);
		b->puts_cap = cap;
	}
	mask = b->puts_cap - 1;
	for (i = put_hash(sid, seq, mask); b->puts[i].sid; i = (i + 1) & mask)
		;
	b->puts[i] = (struct put_slot){ sid, seq, idx };
	b->puts_used++;
}

/* The open batch's put of (sid, seq), or NULL. */
static struct op *put_find(uint64_t sid, uint64_t seq)
{
	struct batch *b = open_batch;
	size_t i, mask;

	if (!b || !b->puts_cap)
		return NULL;
	mask = b->puts_cap - 1;
	for (i = put_hash(sid, seq, mask); b->puts[i].sid; i = (i + 1) & mask)
		if (b->puts[i].sid == sid && b->puts[i].seq == seq)
			return &b->ops[b->puts[i].idx];
	return NULL;
}

static void *copy(const void *p, size_t n)
{
	void *d = mem_alloc(n ? n : 1);

	if (d && n)
		memcpy(d, p, n);
	return d;
}

void store_session_put(const struct store_session_row *r)
{
	struct op *o;
	struct buf will;

	if (!enabled || !r->sid || !(o = op_add(OP_SESSION_PUT)))
		return;
	o->i[0] = (int64_t)r->sid;
	o->i[1] = r->version;
	o->i[2] = r->expiry_interval;
	o->i[3] = (int64_t)r->disconnected_wall;
	o->i[4] = (int64_t)r->next_seq;
	o->i[5] = r->realm;
	o->text = mem_strdup(r->client_id);
	o->text2 = r->username ? mem_strdup(r->username) : NULL;
	if (op_complete(o, o->text != NULL && (o->text2 != NULL) == (r->username != NULL)))
		return;
	if (r->will) {
		buf_init(&will);
		if (!msg_encode(r->will, &will)) {
			o->blob = will.data;
			o->blob_len = will.len;
		} else {
			buf_free(&will);
			op_complete(o, false);
			return;
		}
	}
	o->blob2_len = r->will_delay; /* carried as a number */
}

void store_session_del(uint64_t sid)
{
	struct op *o = op_add(OP_SESSION_DEL);

	if (o)
		o->i[0] = (int64_t)sid;
}

void store_sub_put(uint64_t sid, const char *filter, uint8_t options, uint32_t subid)
{
	struct op *o = op_add(OP_SUB_PUT);

	if (!o)
		return;
	o->i[0] = (int64_t)sid;
	o->i[1] = options;
	o->i[2] = subid;
	o->text = mem_strdup(filter);
	op_complete(o, o->text != NULL);
}

void store_sub_del(uint64_t sid, const char *filter)
{
	struct op *o = op_add(OP_SUB_DEL);

	if (!o)
		return;
	o->i[0] = (int64_t)sid;
	o->text = mem_strdup(filter);
	op_complete(o, o->text != NULL);
}

void store_delivery_put(uint64_t sid, const struct store_delivery_row *r)
{
	struct op *o = op_add(OP_DELIVERY_PUT);

	if (!o)
		return;
	put_index_add(open_batch, sid, r->seq, (size_t)(o - open_batch->ops));
	if (!r->msg->first_put_batch)
		r->msg->first_put_batch = open_seq;
	o->i[0] = (int64_t)sid;
	o->i[1] = (int64_t)r->seq;
	o->i[2] = r->qos | (r->retain ? 4 : 0);
	o->i[3] = r->state;
	o->i[4] = r->packet_id;
	o->msg = msg_ref(r->msg);
	if (r->n_subids) {
		o->blob_len = r->n_subids * sizeof(uint32_t);
		o->blob = copy(r->subids, o->blob_len);
	}
	if (r->share) {
		o->blob2_len = topic_share_key_size(r->share);
		o->blob2 = copy(r->share, o->blob2_len);
	}
	op_complete(o, (!r->n_subids || o->blob) && (!r->share || o->blob2));
}

void store_delivery_update(uint64_t sid, uint64_t seq, uint8_t state, uint16_t packet_id)
{
	struct op *o = put_find(sid, seq);

	/* Its row is still only in the open batch: write the new state there. */
	if (o && o->type == OP_DELIVERY_PUT) {
		o->i[3] = state;
		o->i[4] = packet_id;
		return;
	}
	o = op_add(OP_DELIVERY_UPDATE);
	if (!o)
		return;
	o->i[0] = (int64_t)sid;
	o->i[1] = (int64_t)seq;
	o->i[2] = state;
	o->i[3] = packet_id;
}

void store_delivery_del(uint64_t sid, uint64_t seq, uint64_t msg_id)
{
	struct op *o = put_find(sid, seq);

	if (o && o->type == OP_DELIVERY_PUT) {
		/* Never written: cancel the put. If every row of the message was
		 * put in this same batch, the message never reaches the disk
		 * through this one; else a delete with no delivery to remove
		 * collects it once it is unreferenced. */
		bool only_here = o->msg->first_put_batch == open_seq;

		op_free(o);
		memset(o, 0, sizeof(*o));
		o->type = OP_NOP;
		if (only_here)
			return;
		seq = 0;
	}
	o = op_add(OP_DELIVERY_DEL);
	if (!o)
		return;
	o->i[0] = (int64_t)sid;
	o->i[1] = (int64_t)seq;
	o->i[2] = (int64_t)msg_id;
}

void store_rx_put(uint64_t sid, uint16_t packet_id)
{
	struct op *o = op_add(OP_RX_PUT);

	if (!o)
		return;
	o->i[0] = (int64_t)sid;
	o->i[1] = packet_id;
}

void store_rx_del(uint64_t sid, uint16_t packet_id)
{
	struct op *o = op_add(OP_RX_DEL);

	if (!o)
		return;
	o->i[0] = (int64_t)sid;
	o->i[1] = packet_id;
}

void store_retained_put(struct msg *m)
{
	struct op *o = op_add(OP_RETAINED_PUT);

	if (!o)
		return;
	o->msg = msg_ref(m);
	o->blob = copy(m->topic, m->topic_len);
	o->blob_len = m->topic_len;
	op_complete(o, o->blob != NULL);
}

void store_retained_del(const char *topic, size_t len)
{
	struct op *o = op_add(OP_RETAINED_DEL);

	if (!o)
		return;
	o->blob = copy(topic, len);
	o->blob_len = len;
	op_complete(o, o->blob != NULL);
}

int store_kv_put(const char *plugin, const void *k, size_t kl, const void *v, size_t vl)
{
	struct op *o = op_add(OP_KV_PUT);

	if (!enabled)
		return 0;
	if (!o)
		return -1;
	o->text = mem_strdup(plugin);
	o->blob = copy(k, kl);
	o->blob_len = kl;
	o->blob2 = copy(v, vl);
	o->blob2_len = vl;
	return op_complete(o, o->text && o->blob && o->blob2);
}

int store_kv_del(const char *plugin, const void *k, size_t kl)
{
	struct op *o = op_add(OP_KV_DEL);

	if (!enabled)
		return 0;
	if (!o)
		return -1;
	o->text = mem_strdup(plugin);
	o->blob = copy(k, kl);
	o->blob_len = kl;
	return op_complete(o, o->text && o->blob);
}

static int cold_op(uint8_t type, const char *plugin, const void *k, size_t kl, const void *v,
		   size_t vl)
{
	struct op *o = op_add(type);

	if (!enabled)
		return 0;
	if (!o)
		return -1;
	o->text = mem_strdup(plugin);
	o->blob = copy(k, kl);
	o->blob_len = kl;
	if (v) {
		o->blob2 = copy(v, vl);
		o->blob2_len = vl;
	}
	return op_complete(o, o->text && o->blob && (!v || o->blob2));
}

int store_cold_put(const char *plugin, const void *k, size_t kl, const void *v, size_t vl)
{
	return cold_op(OP_COLD_PUT, plugin, k, kl, v, vl);
}

int store_cold_del(const char *plugin, const void *k, size_t kl)
{
	return cold_op(OP_COLD_DEL, plugin, k, kl, NULL, 0);
}

int store_cold_del_range(const char *plugin, const void *lo, size_t lol, const void *hi, size_t hil)
{
	return cold_op(OP_COLD_DEL_RANGE, plugin, lo, lol, hi, hil);
}

void store_cold_get(const char *plugin, const void *k, size_t kl, store_value_fn fn, void *arg)
{
	struct op *o = op_add(OP_COLD_GET);

	if (!o) {
		fn(arg, -ENOMEM, NULL, 0);
		return;
	}
	o->text = mem_strdup(plugin);
	o->blob = copy(k, kl);
	o->blob_len = kl;
	if (!o->text || !o->blob) {
		op_complete(o, false);
		fn(arg, -ENOMEM, NULL, 0);
		return;
	}
	o->fn = (void *)fn;
	o->arg = arg;
	o->status = 1; /* not found, until the writer finds it */
}

void store_heartbeat(uint64_t wall_ms)
{
	struct op *o = op_add(OP_HEARTBEAT);

	if (o)
		o->i[0] = (int64_t)wall_ms;
}

bool store_pending(void)
{
	return enabled && (busy || (open_batch && open_batch->n));
}

void store_after_commit(store_done_fn fn, void *arg)
{
	struct op *o;
	bool lost = unit_lost;

	unit_lost = false; /* this callback answers for the unit */
	if (!store_pending()) {
		/* Nothing is on its way to the disk: the callback has nothing to wait for. */
		fn(arg, lost ? -ENOMEM : 0);
		return;
	}
	o = op_add(OP_DONE);
	unit_lost = false;
	if (!o) {
		fn(arg, -ENOMEM);
		return;
	}
	o->fn = (void *)fn;
	o->arg = arg;
	o->status = lost ? -ENOMEM : 0; /* the writer keeps a failure set here */
}

void store_load_deliveries(uint64_t sid, uint64_t first_seq, size_t max, store_loaded_fn fn,
			   void *arg)
{
	struct op *o = op_add(OP_LOAD);

	if (!o) {
		fn(arg, -ENOMEM, NULL, 0);
		return;
	}
	o->i[0] = (int64_t)sid;
	o->i[1] = (int64_t)first_seq;
	o->i[2] = (int64_t)max;
	o->fn = (void *)fn;
	o->arg = arg;
	o->load = mem_calloc(1, sizeof(*o->load));
	if (o->load)
		buf_init(&o->load->bytes);
}

void store_kick(void)
{
	if (!enabled || busy || !open_batch || !open_batch->n)
		return;
	if (!writer_started) {
		/* Before the writer runs (start-up, shutdown), write synchronously. */
		return;
	}
	open_batch->seq = open_seq++;
	pthread_mutex_lock(&lock);
	todo = open_batch;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&lock);
	open_batch = NULL;
	busy = true;
}

/* Builds the rows of a load on the loop (messages are made here, not on the writer). */
static void hand_out_load(struct op *o)
{
	struct loaded *l = o->load;
	struct store_delivery_row *rows = NULL;
	size_t i, n = 0;
	int status = o->status;

	if (!status && l && l->n && !(rows = mem_calloc(l->n, sizeof(*rows))))
		status = -ENOMEM;
	for (i = 0; !status && l && i < l->n; i++) {
		const struct raw_row *w = &l->raw[i];
		struct store_delivery_row *r = &rows[n];

		r->msg = msg_decode(l->bytes.data + w->data_off, w->data_len);
		if (!r->msg) {
			status = -EIO;
			break;
		}
		r->msg->id = w->msg_id;
		r->seq = w->seq;
		r->qos = w->qos;
		r->state = w->state;
		r->retain = w->retain;
		r->packet_id = w->packet_id;
		r->subids = (const uint32_t *)(l->bytes.data + w->sub_off);
		r->n_subids = w->sub_len / sizeof(uint32_t);
		r->share = w->share_len ? (const char *)l->bytes.data + w->share_off : NULL;
		n++;
	}
	((store_loaded_fn)o->fn)(o->arg, status, status ? NULL : rows, status ? 0 : n);
	for (i = 0; i < n; i++)
		msg_unref(rows[i].msg);
	mem_free(rows);
}

/* Runs the callbacks and hands out the loads of one committed batch, in order. */
static void finish_batch(struct batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++) {
		struct op *o = &b->ops[i];

		if (o->type == OP_DONE)
			((store_done_fn)o->fn)(o->arg, o->status);
		else if (o->type == OP_LOAD)
			hand_out_load(o);
		else if (o->type == OP_COLD_GET)
			((store_value_fn)o->fn)(o->arg, o->status < 0 ? o->status : 0,
						o->status ? NULL : o->blob2, o->blob2_len);
	}
	batch_free(b);
}

void store_poll(void)
{
	struct batch *b, *next;

	if (!enabled || !busy)
		return;
	pthread_mutex_lock(&lock);
	b = done_head;
	done_head = done_tail = NULL;
	pthread_mutex_unlock(&lock);
	if (!b)
		return;
	busy = false;
	for (; b; b = next) {
		next = b->next;
		committed_seq = b->seq;
		finish_batch(b);
	}
	if (commit_hook)
		commit_hook();
	mem_set_other(store_db_heap()); /* memory_limit counts SQLite's heap, as of each commit */
	store_kick();
}

uint64_t store_fence(void)
{
	if (!enabled || !writer_started)
		return 0;
	/* An empty open batch is never committed: give it something to commit. */
	if ((!open_batch || !open_batch->n) && !op_add(OP_NOP))
		return 0;
	return open_seq;
}

bool store_fenced(uint64_t fence)
{
	return fence && fence > committed_seq && enabled && writer_started;
}

void store_set_commit_hook(void (*on_commit)(void))
{
	commit_hook = on_commit;
}

void store_get_stats(struct store_stats *st)
{
	pthread_mutex_lock(&lock);
	*st = stats;
	pthread_mutex_unlock(&lock);
}
/* --- the writer thread -------------------------------------------------------------- */

const double store_time_bounds[STORE_TIME_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
};
const double store_size_bounds[STORE_SIZE_BUCKETS] = {
	1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
};

static size_t bucket_of(const double *bounds, size_t n, double v)
{
	size_t i = 0;

	while (i < n && v > bounds[i])
		i++;
	return i;
}

static double mono_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_batch(struct batch *b)
{
	double start = mono_seconds(), took;
	unsigned failed = store_db_write(b);

	took = mono_seconds() - start;
	pthread_mutex_lock(&lock);
	stats.commits++;
	stats.ops += b->n;
	stats.failed_commits += failed;
	stats.time_counts[bucket_of(store_time_bounds, STORE_TIME_BUCKETS, took)]++;
	stats.time_sum += took;
	stats.size_counts[bucket_of(store_size_bounds, STORE_SIZE_BUCKETS, (double)b->n)]++;
	pthread_mutex_unlock(&lock);
}

static void *writer_main(void *arg)
{
	for (;;) {
		struct batch *b;

		pthread_mutex_lock(&lock);
		while (!todo && !stopping)
			pthread_cond_wait(&cond, &lock);
		b = todo;
		todo = NULL;
		pthread_mutex_unlock(&lock);
		if (!b)
			break;
		write_batch(b);
		pthread_mutex_lock(&lock);
		if (done_tail)
			done_tail->next = b;
		else
			done_head = b;
		done_tail = b;
		pthread_mutex_unlock(&lock);
		if (wake_loop)
			wake_loop();
	}
	return NULL;
}

int store_start(void (*wake)(void))
{
	if (!enabled)
		return 0;
	wake_loop = wake;
	/* What the restore queued is written now, before anything else. */
	if (open_batch && open_batch->n) {
		write_batch(open_batch);
		finish_batch(open_batch);
		open_batch = NULL;
	}
	if (pthread_create(&writer, NULL, writer_main, NULL)) {
		log_err("store: cannot start the writer thread");
		return -1;
	}
	writer_started = true;
	mem_set_other(store_db_heap());
	return 0;
}

void store_close(void)
{
	if (writer_started) {
		/*
		 * Let the writer finish what it has (its callbacks may queue a
		 * little more), then write the rest here. Bounded: a shutdown
		 * never hangs on the store.
		 */
		uint64_t until = clock_now_ms() + 10000;

		while (busy && clock_now_ms() < until) {
			pthread_mutex_lock(&lock);
			bool ready = done_head != NULL;
			pthread_mutex_unlock(&lock);
			if (ready)
				store_poll();
			else
				nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		}
		if (busy)
			log_err("store: the writer did not finish within 10 s; stopping anyway");
		pthread_mutex_lock(&lock);
		stopping = true;
		pthread_cond_signal(&cond);
		pthread_mutex_unlock(&lock);
		pthread_join(writer, NULL);
		writer_started = false;
		/* A batch it committed after the wait above: its callbacks still run. */
		if (done_head) {
			busy = true;
			store_poll();
		}
	}
	if (store_db_is_open() && open_batch && open_batch->n)
		write_batch(open_batch);
	if (open_batch)
		finish_batch(open_batch);
	open_batch = NULL;
	store_db_close();
	stopping = false;
	busy = false;
}
