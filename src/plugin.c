/*
 * plugin.c - loading plugins and running their event chains.
 *
 * A plugin is a shared object with three entry points (sluice_plugin.h). It
 * is loaded with dlopen, its API version checked, and its init called with
 * the host table: a table of function pointers rather than exported symbols,
 * so a plugin needs nothing from the broker binary and a test can hand it
 * a fake table.
 *
 * Chains run in configuration order and stop at the first verdict that is
 * not SP_PASS. A message a plugin took (SP_TAKE) and hands back with
 * host->route() re-enters the PUBLISH chain after that plugin, so the
 * plugins later in the chain still see it and the one that took it does not
 * see it again.
 *
 * Held deliveries (SP_HOLD on DELIVER) are kept here, keyed by (plugin,
 * hold id), with everything session_deliver() needs later. A hold whose
 * session ends is dropped with a DROPPED event, so every hold ends exactly
 * once: released, discarded, or dropped.
 *
 * Plugin key/value state lives in memory here, in one sorted array per
 * plugin; the persistent store takes it over when persistence is on.
 */
#include "autoconfig.h"
#include "plugin.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "props.h"
#include "router.h"
#include "session.h"
#include "store.h"
#include "timers.h"
#include "topic_tree.h"

#ifndef PLUGIN_DIR
#define PLUGIN_DIR "/usr/local/lib/sluice"
#endif

struct kv_entry {
	uint8_t *key, *val;
	size_t klen, vlen;
};

/* A sorted key space in memory: the plugin's state, or its cold values without a store. */
struct kv_space {
	struct kv_entry *e;
	size_t n, cap;
};

struct sp_plugin {
	char *name;
	size_t index; /* position in the chain */
	void *dl;
	void *udata;
	void (*cleanup)(void *udata);
	sp_callback cb[SP_EV__COUNT];
	struct kv_space kv;
	struct kv_space cold; /* used only while persistence is off */
};

struct sp_timer {
	struct timer t;
	struct sp_timer *next, *prev;
	struct sp_plugin *owner;
	sp_timer_fn fn;
	void *arg;
};

struct hold {
	struct hold *next;
	struct sp_plugin *owner;
	uint64_t id;
	char *client_id;
	struct msg *msg;
	uint8_t qos;
	bool retain;
	uint32_t *subids;
	size_t n_subids;
	char *share;
};

static struct sp_plugin **plugins;
static size_t n_plugins;
static unsigned wants[SP_EV__COUNT];
static struct sp_timer *timers_list;
static struct hold *holds;
static struct buf ack_props;
static bool in_publish;

bool plugin_wants(enum sp_event_type ev)
{
	return wants[ev] != 0;
}

/* --- the host table --------------------------------------------------------- */

static int host_on(struct sp_plugin *self, enum sp_event_type ev, sp_callback cb)
{
	if ((unsigned)ev >= SP_EV__COUNT || !cb)
		return -1;
	if (!self->cb[ev])
		wants[ev]++;
	self->cb[ev] = cb;
	return 0;
}

static void host_log(struct sp_plugin *self, int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (level < LOG_ERR)
		level = LOG_ERR;
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	if (!log_enabled((enum log_level)level))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_msg((enum log_level)level, "plugin %s: %s", self->name, line);
}

#define MSG(m) ((const struct msg *)(m))

static const char *host_msg_topic(const struct sp_msg *m)
{
	return MSG(m)->topic;
}

static const void *host_msg_payload(const struct sp_msg *m, size_t *len)
{
	*len = MSG(m)->payload_len;
	return MSG(m)->payload;
}

static uint8_t host_msg_qos(const struct sp_msg *m)
{
	return MSG(m)->qos;
}

static bool host_msg_retain(const struct sp_msg *m)
{
	return MSG(m)->retain;
}

static const char *host_msg_sender(const struct sp_msg *m)
{
	return MSG(m)->sender;
}

static uint64_t host_msg_id(const struct sp_msg *m)
{
	return MSG(m)->id;
}

static uint64_t host_msg_expiry(const struct sp_msg *m)
{
	return MSG(m)->expiry_wall_ms;
}

/*
 * Walks the forwarded property block of a message (msg.h): the only
 * identifiers in it are payload format, content type, response topic,
 * correlation data and user property. Returns the size of the property at
 * pos (identifier included), or 0 at the end or on a malformed block.
 */
static size_t fwd_prop_size(const uint8_t *p, size_t len, size_t pos)
{
	size_t n, k;

	if (pos >= len)
		return 0;
	switch (p[pos]) {
	case MQTT_PROP_PAYLOAD_FORMAT:
		n = 2;
		break;
	case MQTT_PROP_CONTENT_TYPE:
	case MQTT_PROP_RESPONSE_TOPIC:
	case MQTT_PROP_CORRELATION_DATA:
		if (pos + 3 > len)
			return 0;
		n = 3 + ((size_t)p[pos + 1] << 8 | p[pos + 2]);
		break;
	case MQTT_PROP_USER_PROPERTY:
		if (pos + 3 > len)
			return 0;
		k = 3 + ((size_t)p[pos + 1] << 8 | p[pos + 2]);
		if (pos + k + 2 > len)
			return 0;
		n = k + 2 + ((size_t)p[pos + k] << 8 | p[pos + k + 1]);
		break;
	default:
		return 0;
	}
	return pos + n <= len ? n : 0;
}

static int host_msg_user_prop(const struct sp_msg *msg, size_t *pos, const char **key,
			      size_t *klen, const char **val, size_t *vlen)
{
	const struct msg *m = MSG(msg);
	size_t n;

	while ((n = fwd_prop_size(m->props, m->props_len, *pos))) {
		const uint8_t *p = m->props + *pos;

		*pos += n;
		if (p[0] != MQTT_PROP_USER_PROPERTY)
			continue;
		*klen = (size_t)p[1] << 8 | p[2];
		*key = (const char *)p + 3;
		*vlen = (size_t)p[3 + *klen] << 8 | p[4 + *klen];
		*val = (const char *)p + 5 + *klen;
		return 1;
	}
	return 0;
}

static struct sp_msg *host_msg_new(const struct sp_msg_spec *ps)
{
	struct msg_spec s;

	memset(&s, 0, sizeof(s));
	s.topic = ps->topic;
	s.topic_len = ps->topic_len;
	s.payload = ps->payload;
	s.payload_len = ps->payload_len;
	s.qos = ps->qos > 2 ? 2 : ps->qos;
	s.retain = ps->retain;
	s.sender = ps->sender;
	s.expiry_interval = ps->expiry_s;
	if (ps->expiry_s)
		s.expiry_wall_ms = clock_wall_ms() + (uint64_t)ps->expiry_s * 1000;
	return (struct sp_msg *)msg_new(&s);
}

static bool dropped_key(const uint8_t *p, const char *const *drop, size_t n_drop)
{
	size_t klen = (size_t)p[1] << 8 | p[2], i;

	if (p[0] != MQTT_PROP_USER_PROPERTY)
		return false;
	for (i = 0; i < n_drop; i++)
		if (strlen(drop[i]) == klen && !memcmp(drop[i], p + 3, klen))
			return true;
	return false;
}

static struct sp_msg *host_msg_rewrite(const struct sp_msg *msg, const char *topic,
				       const char *const *drop, size_t n_drop, bool restart)
{
	const struct msg *m = MSG(msg);
	struct buf props;
	struct msg_spec s;
	struct msg *out = NULL;
	size_t pos = 0, n;

	buf_init(&props);
	while ((n = fwd_prop_size(m->props, m->props_len, pos))) {
		if (!dropped_key(m->props + pos, drop, n_drop) &&
		    buf_put(&props, m->props + pos, n))
			goto out;
		pos += n;
	}
	memset(&s, 0, sizeof(s));
	s.topic = topic ? topic : m->topic;
	s.topic_len = topic ? strlen(topic) : m->topic_len;
	s.payload = m->payload;
	s.payload_len = m->payload_len;
	s.props = props.data;
	s.props_len = props.len;
	s.qos = m->qos;
	s.retain = m->retain;
	s.sender = m->sender;
	s.expiry_interval = m->expiry_interval;
	s.expiry_wall_ms = m->expiry_wall_ms;
	if (restart && m->expiry_interval)
		s.expiry_wall_ms = clock_wall_ms() + (uint64_t)m->expiry_interval * 1000;
	out = msg_new(&s);
out:
	buf_free(&props);
	return (struct sp_msg *)out;
}

static int host_msg_encode(const struct sp_msg *m, void **out, size_t *len)
{
	struct buf b;

	buf_init(&b);
	if (msg_encode(MSG(m), &b)) {
		buf_free(&b);
		return -1;
	}
	*out = b.data;
	*len = b.len;
	return 0;
}

static struct sp_msg *host_msg_decode(const void *p, size_t len)
{
	return (struct sp_msg *)msg_decode(p, len);
}

static struct sp_msg *host_msg_ref(struct sp_msg *m)
{
	return (struct sp_msg *)msg_ref((struct msg *)m);
}

static void host_msg_unref(struct sp_msg *m)
{
	msg_unref((struct msg *)m);
}

static int host_route(struct sp_plugin *self, struct sp_msg *m)
{
	return plugin_route((struct msg *)m, self->index + 1);
}

static int host_ack_user_prop(const char *key, const char *val)
{
	if (!in_publish)
		return -1;
	return props_put_pair(&ack_props, key, strlen(key), val, strlen(val));
}

/* --- held deliveries ---------------------------------------------------------- */

static struct hold **find_hold(struct sp_plugin *owner, uint64_t id)
{
	struct hold **pp;

	for (pp = &holds; *pp; pp = &(*pp)->next)
		if ((*pp)->owner == owner && (*pp)->id == id)
			return pp;
	return NULL;
}

static void hold_free(struct hold *h)
{
	msg_unref(h->msg);
	mem_free(h->client_id);
	mem_free(h->subids);
	mem_free(h->share);
	mem_free(h);
}

static struct hold *take_hold(struct sp_plugin *self, uint64_t id)
{
	struct hold **pp = find_hold(self, id), *h;

	if (!pp)
		return NULL;
	h = *pp;
	*pp = h->next;
	return h;
}

static int host_release(struct sp_plugin *self, uint64_t id)
{
	struct hold *h = take_hold(self, id);
	struct session *s;

	if (!h)
		return -1;
	s = session_find(h->client_id);
	if (s)
		session_deliver(s, h->msg, h->qos, h->retain, h->subids, h->n_subids, h->share);
	hold_free(h);
	return 0;
}

static int host_discard(struct sp_plugin *self, uint64_t id)
{
	struct hold *h = take_hold(self, id);

	if (!h)
		return -1;
	hold_free(h);
	return 0;
}

static size_t share_size(const char *share)
{
	size_t g = strlen(share);

	return g + 1 + strlen(share + g + 1) + 1;
}

static int add_hold(struct sp_plugin *owner, uint64_t id, struct session *s, struct msg *m,
		    uint8_t qos, bool retain, const uint32_t *subids, size_t n_subids,
		    const char *share)
{
	struct hold *h = mem_calloc(1, sizeof(*h));

	if (!h || !(h->client_id = mem_strdup(s->client_id)))
		goto fail;
	if (n_subids && !(h->subids = mem_alloc(n_subids * sizeof(*subids))))
		goto fail;
	if (share && !(h->share = mem_alloc(share_size(share))))
		goto fail;
	if (n_subids)
		memcpy(h->subids, subids, n_subids * sizeof(*subids));
	if (share)
		memcpy(h->share, share, share_size(share));
	h->owner = owner;
	h->id = id;
	h->msg = msg_ref(m);
	h->qos = qos;
	h->retain = retain;
	h->n_subids = n_subids;
	h->next = holds;
	holds = h;
	return 0;
fail:
	if (h) {
		mem_free(h->client_id);
		mem_free(h->subids);
		mem_free(h);
	}
	return -1;
}

/* --- timers ------------------------------------------------------------------ */

static void unlink_timer(struct sp_timer *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		timers_list = t->next;
	if (t->next)
		t->next->prev = t->prev;
}

static void on_plugin_timer(struct timer *tm, void *arg)
{
	struct sp_timer *t = arg;
	sp_timer_fn fn = t->fn;
	void *fa = t->arg;

	unlink_timer(t);
	mem_free(t);
	fn(fa);
}

static struct sp_timer *host_timer_add(struct sp_plugin *self, uint64_t delay_ms, sp_timer_fn fn,
				       void *arg)
{
	struct sp_timer *t = mem_calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->owner = self;
	t->fn = fn;
	t->arg = arg;
	timer_init(&t->t, on_plugin_timer, t);
	t->next = timers_list;
	if (timers_list)
		timers_list->prev = t;
	timers_list = t;
	broker_timer_add(&t->t, clock_now_ms() + delay_ms);
	return t;
}

static void host_timer_cancel(struct sp_timer *t)
{
	if (!t)
		return;
	broker_timer_del(&t->t);
	unlink_timer(t);
	mem_free(t);
}

static uint64_t host_now_ms(void)
{
	return clock_wall_ms();
}

/* --- key/value state (in memory) --------------------------------------------- */

static int kv_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : (al > bl) - (al < bl);
}

/* Index of the first entry >= key. */
static size_t kv_lower(const struct kv_space *sp, const void *key, size_t klen)
{
	size_t lo = 0, hi = sp->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (kv_cmp(sp->e[mid].key, sp->e[mid].klen, key, klen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool kv_at(const struct kv_space *sp, size_t i, const void *key, size_t klen)
{
	return i < sp->n && !kv_cmp(sp->e[i].key, sp->e[i].klen, key, klen);
}

static void *dup_bytes(const void *p, size_t n)
{
	void *d = mem_alloc(n);

	if (d && n)
		memcpy(d, p, n);
	return d;
}

static int kv_set(struct kv_space *sp, const void *key, size_t klen, const void *val,
		  size_t vlen)
{
	size_t i = kv_lower(sp, key, klen);
	void *v = dup_bytes(val, vlen), *k;

	if (!v)
		return -1;
	if (kv_at(sp, i, key, klen)) {
		mem_free(sp->e[i].val);
		sp->e[i].val = v;
		sp->e[i].vlen = vlen;
		return 0;
	}
	if (sp->n == sp->cap) {
		size_t cap = sp->cap ? sp->cap * 2 : 16;
		struct kv_entry *a = mem_realloc(sp->e, cap * sizeof(*a));

		if (!a)
			goto fail;
		sp->e = a;
		sp->cap = cap;
	}
	if (!(k = dup_bytes(key, klen)))
		goto fail;
	memmove(&sp->e[i + 1], &sp->e[i], (sp->n - i) * sizeof(*sp->e));
	sp->e[i] = (struct kv_entry){ k, v, klen, vlen };
	sp->n++;
	return 0;
fail:
	mem_free(v);
	return -1;
}

static int kv_unset(struct kv_space *sp, const void *key, size_t klen)
{
	size_t i = kv_lower(sp, key, klen);

	if (!kv_at(sp, i, key, klen))
		return -1;
	mem_free(sp->e[i].key);
	mem_free(sp->e[i].val);
	sp->n--;
	memmove(&sp->e[i], &sp->e[i + 1], (sp->n - i) * sizeof(*sp->e));
	return 0;
}

/* Removes the entries with lo <= key < hi. */
static void kv_unset_range(struct kv_space *sp, const void *lo, size_t lol, const void *hi,
			   size_t hil)
{
	size_t a = kv_lower(sp, lo, lol), b = kv_lower(sp, hi, hil), i;

	if (b <= a)
		return;
	for (i = a; i < b; i++) {
		mem_free(sp->e[i].key);
		mem_free(sp->e[i].val);
	}
	memmove(&sp->e[a], &sp->e[b], (sp->n - b) * sizeof(*sp->e));
	sp->n -= b - a;
}

static void kv_free(struct kv_space *sp)
{
	size_t i;

	for (i = 0; i < sp->n; i++) {
		mem_free(sp->e[i].key);
		mem_free(sp->e[i].val);
	}
	mem_free(sp->e);
	memset(sp, 0, sizeof(*sp));
}

/* Plugin state is kept here in memory and written through to the store. */
static int host_kv_put(struct sp_plugin *self, const void *key, size_t klen, const void *val,
		       size_t vlen)
{
	if (kv_set(&self->kv, key, klen, val, vlen))
		return -1;
	store_kv_put(self->name, key, klen, val, vlen);
	return 0;
}

static int host_kv_get(struct sp_plugin *self, const void *key, size_t klen, void **val,
		       size_t *vlen)
{
	size_t i = kv_lower(&self->kv, key, klen);

	if (!kv_at(&self->kv, i, key, klen))
		return -1;
	*val = dup_bytes(self->kv.e[i].val, self->kv.e[i].vlen);
	*vlen = self->kv.e[i].vlen;
	return *val ? 0 : -1;
}

static int host_kv_del(struct sp_plugin *self, const void *key, size_t klen)
{
	if (kv_unset(&self->kv, key, klen))
		return -1;
	store_kv_del(self->name, key, klen);
	return 0;
}

static int host_kv_scan(struct sp_plugin *self, const void *prefix, size_t plen, sp_kv_fn fn,
			void *arg)
{
	size_t i = kv_lower(&self->kv, prefix, plen);

	for (; i < self->kv.n; i++) {
		const struct kv_entry *e = &self->kv.e[i];

		if (e->klen < plen || memcmp(e->key, prefix, plen))
			break;
		if (fn(e->key, e->klen, e->val, e->vlen, arg))
			break;
	}
	return 0;
}

int plugin_kv_restore(const char *name, const void *k, size_t kl, const void *v, size_t vl)
{
	size_t i;

	for (i = 0; i < n_plugins; i++)
		if (!strcmp(plugins[i]->name, name))
			return kv_set(&plugins[i]->kv, k, kl, v, vl);
	/* A plugin no longer configured: its state stays in the store, untouched. */
	return 0;
}

/* --- cold values -------------------------------------------------------------- */

static int host_cold_put(struct sp_plugin *self, const void *key, size_t klen, const void *val,
			 size_t vlen)
{
	if (!store_on())
		return kv_set(&self->cold, key, klen, val, vlen);
	store_cold_put(self->name, key, klen, val, vlen);
	return 0;
}

static int host_cold_del(struct sp_plugin *self, const void *key, size_t klen)
{
	if (!store_on())
		return kv_unset(&self->cold, key, klen);
	store_cold_del(self->name, key, klen);
	return 0;
}

static int host_cold_del_range(struct sp_plugin *self, const void *lo, size_t lol, const void *hi,
			       size_t hil)
{
	if (!store_on()) {
		kv_unset_range(&self->cold, lo, lol, hi, hil);
		return 0;
	}
	store_cold_del_range(self->name, lo, lol, hi, hil);
	return 0;
}

/* A cold read on its way: from the store, or (persistence off) a copy on a timer. */
struct cold_read {
	struct timer t;
	void (*fn)(void *arg, const void *val, size_t vlen);
	void *arg;
	void *val;
	size_t vlen;
	bool found;
};

static void cold_from_store(void *arg, int status, const void *val, size_t vlen)
{
	struct cold_read *r = arg;

	if (status < 0)
		log_err("plugin: reading a cold value failed (%d)", status);
	r->fn(r->arg, status < 0 ? NULL : val, vlen);
	mem_free(r);
}

static void cold_from_memory(struct timer *t, void *arg)
{
	struct cold_read *r = arg;

	r->fn(r->arg, r->found ? r->val : NULL, r->vlen);
	mem_free(r->val);
	mem_free(r);
}

static int host_cold_get(struct sp_plugin *self, const void *key, size_t klen,
			 void (*fn)(void *arg, const void *val, size_t vlen), void *arg)
{
	struct cold_read *r = mem_calloc(1, sizeof(*r));
	size_t i;

	if (!r)
		return -1;
	r->fn = fn;
	r->arg = arg;
	if (store_on()) {
		store_cold_get(self->name, key, klen, cold_from_store, r);
		return 0;
	}
	i = kv_lower(&self->cold, key, klen);
	if (kv_at(&self->cold, i, key, klen)) {
		r->val = dup_bytes(self->cold.e[i].val, self->cold.e[i].vlen);
		r->vlen = self->cold.e[i].vlen;
		r->found = r->val != NULL;
	}
	/* Later, as with a store: a callback never runs inside the call that asked. */
	timer_init(&r->t, cold_from_memory, r);
	broker_timer_add(&r->t, clock_now_ms());
	return 0;
}

static const struct sp_host host = {
	.api = SLUICE_PLUGIN_API,
	.size = sizeof(struct sp_host),
	.on = host_on,
	.log = host_log,
	.msg_topic = host_msg_topic,
	.msg_payload = host_msg_payload,
	.msg_qos = host_msg_qos,
	.msg_retain = host_msg_retain,
	.msg_sender = host_msg_sender,
	.msg_id = host_msg_id,
	.msg_expiry = host_msg_expiry,
	.msg_user_prop = host_msg_user_prop,
	.msg_new = host_msg_new,
	.msg_rewrite = host_msg_rewrite,
	.msg_encode = host_msg_encode,
	.msg_decode = host_msg_decode,
	.msg_ref = host_msg_ref,
	.msg_unref = host_msg_unref,
	.route = host_route,
	.ack_user_prop = host_ack_user_prop,
	.release = host_release,
	.discard = host_discard,
	.timer_add = host_timer_add,
	.timer_cancel = host_timer_cancel,
	.now_ms = host_now_ms,
	.kv_put = host_kv_put,
	.kv_get = host_kv_get,
	.kv_del = host_kv_del,
	.kv_scan = host_kv_scan,
	.alloc = mem_alloc,
	.free = mem_free,
	.cold_put = host_cold_put,
	.cold_del = host_cold_del,
	.cold_get = host_cold_get,
	.cold_del_range = host_cold_del_range,
};

/* --- loading ------------------------------------------------------------------ */

static void plugin_free(struct sp_plugin *p)
{
	kv_free(&p->kv);
	kv_free(&p->cold);
	if (p->dl)
		dlclose(p->dl);
	mem_free(p->name);
	mem_free(p);
}

/* "NAME" -> PLUGIN_DIR/NAME.so (or plugin_dir); a path with a '/' is used as it is. */
static void plugin_path(const struct config *cfg, const char *name, char *out, size_t n)
{
	if (strchr(name, '/'))
		snprintf(out, n, "%s", name);
	else
		snprintf(out, n, "%s/%s.so", cfg->plugin_dir ? cfg->plugin_dir : PLUGIN_DIR,
			 name);
}

typedef int (*version_fn)(void);
typedef int (*init_fn)(const struct sp_host *, struct sp_plugin *, const struct sp_opt *, int,
		       void **);

static int call_init(struct sp_plugin *p, const struct plugin_conf *pc, init_fn init)
{
	struct sp_opt *opts = mem_calloc(pc->n_opts + 1, sizeof(*opts));
	size_t i;
	int rc;

	if (!opts)
		return -1;
	for (i = 0; i < pc->n_opts; i++) {
		opts[i].key = pc->opts[i].key;
		opts[i].value = pc->opts[i].value;
	}
	rc = init(&host, p, opts, (int)pc->n_opts, &p->udata);
	mem_free(opts);
	return rc;
}

static int load_one(const struct config *cfg, const struct plugin_conf *pc, size_t index)
{
	char path[4096];
	struct sp_plugin *p = mem_calloc(1, sizeof(*p));
	version_fn version;
	init_fn init;

	plugin_path(cfg, pc->name, path, sizeof(path));
	if (!p || !(p->name = mem_strdup(pc->name)))
		goto oom;
	p->index = index;
	p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!p->dl) {
		log_err("plugin %s: cannot load %s: %s", pc->name, path, dlerror());
		goto fail;
	}
	version = (version_fn)dlsym(p->dl, "sluice_plugin_version");
	init = (init_fn)dlsym(p->dl, "sluice_plugin_init");
	p->cleanup = (void (*)(void *))dlsym(p->dl, "sluice_plugin_cleanup");
	if (!version || !init || !p->cleanup) {
		log_err("plugin %s: %s is not a sluice plugin (sluice_plugin_version, "
			"sluice_plugin_init and sluice_plugin_cleanup are required)",
			pc->name, path);
		goto fail;
	}
	if (version() != SLUICE_PLUGIN_API) {
		log_err("plugin %s: built for plugin API %d, this broker has %d", pc->name,
			version(), SLUICE_PLUGIN_API);
		goto fail;
	}
	plugins[index] = p;
	n_plugins = index + 1;
	if (call_init(p, pc, init)) {
		log_err("plugin %s: initialisation failed", pc->name);
		p->cleanup = NULL; /* init failed: nothing to clean up */
		return -1;
	}
	log_notice("plugin %s loaded from %s", pc->name, path);
	return 0;
oom:
	log_err("plugin %s: out of memory", pc->name);
fail:
	if (p)
		plugin_free(p);
	return -1;
}

int plugin_load_all(const struct config *cfg)
{
	size_t i;

	buf_init(&ack_props);
	if (!cfg->n_plugins)
		return 0;
	plugins = mem_calloc(cfg->n_plugins, sizeof(*plugins));
	if (!plugins)
		return -1;
	for (i = 0; i < cfg->n_plugins; i++)
		if (load_one(cfg, &cfg->plugins[i], i))
			return -1;
	return 0;
}

/* --- event chains ------------------------------------------------------------- */

/* Runs ev through plugins from `from`; returns the deciding plugin's index or n_plugins. */
static size_t run_chain(enum sp_event_type type, struct sp_event *ev, struct sp_result *res,
			size_t from)
{
	size_t i;

	ev->type = type;
	for (i = from; i < n_plugins; i++) {
		struct sp_plugin *p = plugins[i];
		size_t keep = res->member;

		if (!p->cb[type])
			continue;
		memset(res, 0, sizeof(*res));
		res->member = keep;
		if (p->cb[type](ev, res, p->udata)) {
			log_warn("plugin %s: callback for event %d failed", p->name, (int)type);
			if (type == SP_EV_PUBLISH || type == SP_EV_SUBSCRIBE) {
				/* A failing plugin fails closed where it could refuse. */
				res->verdict = SP_REJECT;
				res->reason = MQTT_RC_UNSPECIFIED;
				return i;
			}
			res->verdict = SP_PASS;
			continue;
		}
		if (res->verdict != SP_PASS)
			return i;
	}
	res->verdict = SP_PASS;
	return n_plugins;
}

static void notify(enum sp_event_type type, struct sp_event *ev)
{
	struct sp_result res;

	if (!wants[type])
		return;
	memset(&res, 0, sizeof(res));
	run_chain(type, ev, &res, 0);
}

static void session_event(struct sp_event *ev, const struct session *s)
{
	memset(ev, 0, sizeof(*ev));
	ev->client_id = s->client_id;
	ev->protocol = s->version;
}

void plugin_start(void)
{
	struct sp_event ev;

	memset(&ev, 0, sizeof(ev));
	notify(SP_EV_START, &ev);
}

enum sp_verdict plugin_publish(struct msg *m, const char *client_id, uint8_t protocol,
			       size_t from, struct sp_result *res)
{
	struct sp_event ev;
	bool outer = in_publish; /* a plugin routing from inside its callback */
	size_t who;

	if (!outer)
		buf_reset(&ack_props);
	memset(res, 0, sizeof(*res));
	if (!wants[SP_EV_PUBLISH])
		return SP_PASS;
	memset(&ev, 0, sizeof(ev));
	ev.client_id = client_id;
	ev.protocol = protocol;
	ev.msg = (struct sp_msg *)m;
	ev.qos = m->qos;
	in_publish = true;
	who = run_chain(SP_EV_PUBLISH, &ev, res, from);
	in_publish = outer;
	if (res->verdict == SP_REJECT && res->reason < 0x80)
		res->reason = MQTT_RC_UNSPECIFIED;
	if (res->verdict != SP_PASS && res->verdict != SP_REJECT && res->verdict != SP_TAKE) {
		log_warn("plugin %s: verdict %d is not valid for PUBLISH; passing",
			 plugins[who]->name, (int)res->verdict);
		res->verdict = SP_PASS;
	}
	return res->verdict;
}

const struct buf *plugin_ack_props(void)
{
	return &ack_props;
}

int plugin_route(struct msg *m, size_t from)
{
	struct sp_result res;

	switch (plugin_publish(m, m->sender, 0, from, &res)) {
	case SP_PASS:
		return router_publish(m);
	case SP_REJECT:
		log_info("message on '%s' refused by a plugin (reason 0x%02x)", m->topic,
			 res.reason);
		return 0;
	default:
		return 0; /* taken */
	}
}

int plugin_deliver(struct session *s, struct msg *m, uint8_t qos, bool retain,
		   const uint32_t *subids, size_t n_subids, const char *share)
{
	struct sp_event ev;
	struct sp_result res;
	size_t who;

	if (!wants[SP_EV_DELIVER])
		return 0;
	session_event(&ev, s);
	ev.msg = (struct sp_msg *)m;
	ev.qos = qos;
	ev.share_group = share;
	memset(&res, 0, sizeof(res));
	who = run_chain(SP_EV_DELIVER, &ev, &res, 0);
	if (res.verdict == SP_SKIP)
		return 1;
	if (res.verdict != SP_HOLD)
		return 0;
	if (!res.hold_id || find_hold(plugins[who], res.hold_id) ||
	    add_hold(plugins[who], res.hold_id, s, m, qos, retain, subids, n_subids, share)) {
		log_warn("plugin %s: hold %llu refused (zero, in use, or out of memory); "
			 "delivering now",
			 plugins[who]->name, (unsigned long long)res.hold_id);
		return 0;
	}
	return 1;
}

size_t plugin_choose(const struct topic_group *g, struct msg *m, size_t broker_choice)
{
	struct sp_member *members;
	struct sp_event ev;
	struct sp_result res;
	size_t i;

	if (!wants[SP_EV_CHOOSE] || !g->n)
		return broker_choice;
	members = mem_calloc(g->n, sizeof(*members));
	if (!members)
		return broker_choice;
	for (i = 0; i < g->n; i++) {
		const struct session *s = g->members[i].owner;

		members[i].client_id = s->client_id;
		members[i].online = s->conn != NULL;
		members[i].inflight = s->inflight.n;
		members[i].queued = s->queue.n;
	}
	memset(&ev, 0, sizeof(ev));
	ev.msg = (struct sp_msg *)m;
	ev.share_group = g->name;
	ev.members = members;
	ev.n_members = g->n;
	memset(&res, 0, sizeof(res));
	res.member = broker_choice;
	run_chain(SP_EV_CHOOSE, &ev, &res, 0);
	mem_free(members);
	return res.member < g->n ? res.member : broker_choice;
}

void plugin_acked(const struct session *s, struct msg *m, uint8_t qos, const char *share)
{
	struct sp_event ev;

	if (!wants[SP_EV_ACKED])
		return;
	session_event(&ev, s);
	ev.msg = (struct sp_msg *)m;
	ev.qos = qos;
	ev.share_group = share;
	notify(SP_EV_ACKED, &ev);
}

static void dropped(const struct session *s, struct msg *m, uint8_t qos, const char *share,
		    const char *why, uint64_t hold_id)
{
	struct sp_event ev;

	if (!wants[SP_EV_DROPPED])
		return;
	session_event(&ev, s);
	ev.msg = (struct sp_msg *)m;
	ev.qos = qos;
	ev.share_group = share;
	ev.why = why;
	ev.hold_id = hold_id;
	notify(SP_EV_DROPPED, &ev);
}

void plugin_dropped(const struct session *s, struct msg *m, uint8_t qos, const char *share,
		    const char *why)
{
	dropped(s, m, qos, share, why, 0);
}

void plugin_connect(const struct session *s)
{
	struct sp_event ev;

	session_event(&ev, s);
	notify(SP_EV_CONNECT, &ev);
}

void plugin_disconnect(const struct session *s, bool graceful)
{
	struct sp_event ev;

	session_event(&ev, s);
	ev.graceful = graceful;
	notify(SP_EV_DISCONNECT, &ev);
}

uint8_t plugin_subscribe(const struct session *s, const char *filter, size_t len, uint8_t qos)
{
	struct sp_event ev;
	struct sp_result res;
	char *f;

	if (!wants[SP_EV_SUBSCRIBE])
		return 0;
	f = mem_strndup(filter, len);
	if (!f)
		return MQTT_RC_UNSPECIFIED;
	session_event(&ev, s);
	ev.filter = f;
	ev.qos = qos;
	memset(&res, 0, sizeof(res));
	run_chain(SP_EV_SUBSCRIBE, &ev, &res, 0);
	mem_free(f);
	if (res.verdict != SP_REJECT)
		return 0;
	return res.reason >= 0x80 ? res.reason : MQTT_RC_UNSPECIFIED;
}

void plugin_unsubscribe(const struct session *s, const char *filter, size_t len)
{
	struct sp_event ev;
	char *f;

	if (!wants[SP_EV_UNSUBSCRIBE] || !(f = mem_strndup(filter, len)))
		return;
	session_event(&ev, s);
	ev.filter = f;
	notify(SP_EV_UNSUBSCRIBE, &ev);
	mem_free(f);
}

void plugin_session_gone(const struct session *s)
{
	struct hold **pp = &holds, *h;

	while ((h = *pp)) {
		if (strcmp(h->client_id, s->client_id)) {
			pp = &h->next;
			continue;
		}
		*pp = h->next;
		dropped(s, h->msg, h->qos, h->share, "session ended while held", h->id);
		/* Like an unacknowledged shared delivery, it goes to another member. */
		if (h->share && h->qos)
			router_reroute_shared(h->msg, h->qos, h->share, s);
		hold_free(h);
	}
}

void plugin_unload_all(void)
{
	struct sp_event ev;
	size_t i;

	memset(&ev, 0, sizeof(ev));
	notify(SP_EV_STOP, &ev);
	while (timers_list)
		host_timer_cancel(timers_list);
	while (holds) {
		struct hold *h = holds;

		holds = h->next;
		hold_free(h);
	}
	for (i = n_plugins; i-- > 0;) {
		if (plugins[i]->cleanup)
			plugins[i]->cleanup(plugins[i]->udata);
		plugin_free(plugins[i]);
	}
	mem_free(plugins);
	plugins = NULL;
	n_plugins = 0;
	memset(wants, 0, sizeof(wants));
	buf_free(&ack_props);
}
