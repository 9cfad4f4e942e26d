/*
 * plugin_host.c - the host table a plugin calls back through
 * (include/sluice_plugin.h): message views and builders, routing and
 * targeted delivery, held deliveries, timers, the plugin's durable state
 * (key/value and cold values), and its metrics (one collector per plugin,
 * called at each GET /metrics). Loop thread only.
 *
 * The table sits above the router because its calls reach everything a
 * plugin may ask of the broker; the chains that run the plugins (plugin.c)
 * sit below the router and only receive the table's address at load time.
 *
 * Invariants: every plugin timer is on `timers_list` from timer_add until it
 * fires or is cancelled, so plugin_host_stop() can cancel the rest before
 * any plugin is cleaned up; state writes go to memory first (kvspace) and
 * then to the store's ordered stream, so a failed write leaves both as they
 * were only when the memory step fails (the store reports its own failures
 * through after_commit).
 */
#include "plugin_host.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "clock.h"
#include "kvspace.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "msg.h"
#include "plugin.h"
#include "promtext.h"
#include "router.h"
#include "session.h"
#include "store.h"
#include "timers.h"
#include "topic.h"

struct sp_timer {
	struct timer t;
	struct sp_timer *next, *prev;
	struct sp_plugin *owner;
	sp_timer_fn fn;
	void *arg;
};

static struct sp_timer *timers_list;

/* --- logging and messages ------------------------------------------------------ */

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
	log_msg((enum log_level)level, "plugin %s: %s", plugin_name(self), line);
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

static int host_msg_user_prop(const struct sp_msg *msg, size_t *pos, const char **key, size_t *klen,
			      const char **val, size_t *vlen)
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

/* A spec that builds a copy of m with the property block props. */
static void spec_of(const struct msg *m, struct msg_spec *s, const struct buf *props)
{
	memset(s, 0, sizeof(*s));
	s->topic = m->topic;
	s->topic_len = m->topic_len;
	s->payload = m->payload;
	s->payload_len = m->payload_len;
	s->props = props->data;
	s->props_len = props->len;
	s->qos = m->qos;
	s->retain = m->retain;
	s->sender = m->sender;
	s->expiry_interval = m->expiry_interval;
	s->expiry_wall_ms = m->expiry_wall_ms;
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
	spec_of(m, &s, &props);
	if (topic) {
		s.topic = topic;
		s.topic_len = strlen(topic);
	}
	if (restart && m->expiry_interval)
		s.expiry_wall_ms = clock_wall_ms() + (uint64_t)m->expiry_interval * 1000;
	out = msg_new(&s);
out:
	buf_free(&props);
	return (struct sp_msg *)out;
}

/* One user property in the wire form of a property block. */
static int put_user_prop(struct buf *b, const char *key, const char *val)
{
	size_t kl = strlen(key), vl = strlen(val);
	uint8_t hdr[3] = { MQTT_PROP_USER_PROPERTY, (uint8_t)(kl >> 8), (uint8_t)kl };
	uint8_t vhdr[2] = { (uint8_t)(vl >> 8), (uint8_t)vl };

	if (kl > 0xffff || vl > 0xffff)
		return -1;
	return buf_put(b, hdr, 3) || buf_put(b, key, kl) || buf_put(b, vhdr, 2) ||
	       buf_put(b, val, vl);
}

static struct sp_msg *host_msg_add_user_props(const struct sp_msg *msg, const char *const *keys,
					      const char *const *vals, size_t n)
{
	const struct msg *m = MSG(msg);
	struct buf props;
	struct msg_spec s;
	struct msg *out = NULL;
	size_t i;

	if (!m || (n && (!keys || !vals)))
		return NULL;
	buf_init(&props);
	if (m->props_len && buf_put(&props, m->props, m->props_len))
		goto out;
	for (i = 0; i < n; i++)
		if (!keys[i] || !vals[i] || put_user_prop(&props, keys[i], vals[i]))
			goto out;
	spec_of(m, &s, &props);
	out = msg_new(&s);
out:
	buf_free(&props);
	return (struct sp_msg *)out;
}

static struct sp_msg *host_msg_with_retain(const struct sp_msg *msg, bool retain)
{
	const struct msg *m = MSG(msg);
	struct buf props;
	struct msg_spec s;

	if (!m)
		return NULL;
	props.data = (uint8_t *)m->props; /* borrowed: msg_new copies it */
	props.len = m->props_len;
	spec_of(m, &s, &props);
	s.retain = retain;
	return (struct sp_msg *)msg_new(&s);
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

/*
 * What a plugin routes goes out to subscribers only once what it wrote
 * before is committed (the fence): no subscriber sees a routed message
 * before the plugin state that decided to route it is on disk.
 */
static int host_route(struct sp_plugin *self, struct sp_msg *m)
{
	struct msg *msg = (struct msg *)m;

	if (m && store_pending())
		msg->fence = store_fence();
	return router_route_from(msg, NULL, plugin_index(self) + 1);
}

/* deliver and redeliver: the DELIVER chain starts after self, or at self. */
static int deliver_from(struct sp_plugin *self, struct sp_msg *m, const char *client_id,
			const char *share_group, const char *share_filter, bool with_self)
{
	if (!m)
		return -1;
	return router_deliver_to((struct msg *)m, client_id, share_group, share_filter,
				 plugin_index(self) + !with_self);
}

static int host_deliver(struct sp_plugin *self, struct sp_msg *m, const char *client_id,
			const char *share_group, const char *share_filter)
{
	return deliver_from(self, m, client_id, share_group, share_filter, false);
}

static int host_redeliver(struct sp_plugin *self, struct sp_msg *m, const char *client_id,
			  const char *share_group, const char *share_filter)
{
	return deliver_from(self, m, client_id, share_group, share_filter, true);
}

static int host_listeners(struct sp_plugin *self, enum sp_event_type ev)
{
	return plugin_listeners_before(self, ev);
}

static const char *host_opt_where(struct sp_plugin *self, size_t index)
{
	return plugin_opt_where(self, index);
}

static bool host_topic_match(const char *filter, const char *topic)
{
	return filter && topic && topic_matches(filter, strlen(filter), topic, strlen(topic));
}

static int host_subscribed(const char *client_id, const char *topic)
{
	struct session *s;
	const struct sub_rec *r;
	const char *f, *g;
	size_t fl, gl, tl;

	if (!client_id || !topic)
		return -1;
	s = session_find(client_id);
	if (!s)
		return 0;
	tl = strlen(topic);
	for (r = s->subs; r; r = r->next) {
		f = r->filter;
		fl = strlen(f);
		/* A shared subscription matches with its filter. */
		topic_share_split(r->filter, fl, &g, &gl, &f, &fl);
		if (topic_matches(f, fl, topic, tl))
			return 1;
	}
	return 0;
}

static int host_ack_user_prop(const char *key, const char *val)
{
	return plugin_ack_prop_add(key, val);
}

static int host_release(struct sp_plugin *self, uint64_t id)
{
	return router_release_hold(self, id);
}

static int host_discard(struct sp_plugin *self, uint64_t id)
{
	return router_discard_hold(self, id);
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
	timer_arm(&t->t, clock_now_ms() + delay_ms);
	return t;
}

static void host_timer_cancel(struct sp_timer *t)
{
	if (!t)
		return;
	timer_disarm(&t->t);
	unlink_timer(t);
	mem_free(t);
}

static uint64_t host_now_ms(void)
{
	return clock_wall_ms();
}

/* --- key/value state ------------------------------------------------------------ */

/* Plugin state is kept in memory and written through to the store. */
static int host_kv_put(struct sp_plugin *self, const void *key, size_t klen, const void *val,
		       size_t vlen)
{
	if (kvspace_set(plugin_kv(self), key, klen, val, vlen))
		return -1;
	return store_kv_put(plugin_name(self), key, klen, val, vlen);
}

static void *dup_bytes(const void *p, size_t n)
{
	void *d = mem_alloc(n ? n : 1);

	if (d && n)
		memcpy(d, p, n);
	return d;
}

static int host_kv_get(struct sp_plugin *self, const void *key, size_t klen, void **val,
		       size_t *vlen)
{
	const struct kv_entry *e = kvspace_get(plugin_kv(self), key, klen);

	if (!e)
		return -1;
	*val = dup_bytes(e->val, e->vlen);
	*vlen = e->vlen;
	return *val ? 0 : -1;
}

static int host_kv_del(struct sp_plugin *self, const void *key, size_t klen)
{
	if (kvspace_unset(plugin_kv(self), key, klen))
		return -1;
	return store_kv_del(plugin_name(self), key, klen);
}

static int host_kv_scan(struct sp_plugin *self, const void *prefix, size_t plen, sp_kv_fn fn,
			void *arg)
{
	const struct kv_space *sp = plugin_kv(self);
	const struct kv_entry *e;
	struct kv_pos pos;

	for (kvspace_seek(sp, prefix, plen, &pos); (e = kvspace_at(sp, &pos));
	     kvspace_next(sp, &pos)) {
		if (e->klen < plen || memcmp(e->key, prefix, plen))
			break;
		if (fn(e->key, e->klen, e->val, e->vlen, arg))
			break;
	}
	return 0;
}

/* --- cold values -------------------------------------------------------------- */

static int host_cold_put(struct sp_plugin *self, const void *key, size_t klen, const void *val,
			 size_t vlen)
{
	if (!store_on())
		return kvspace_set(plugin_cold(self), key, klen, val, vlen);
	return store_cold_put(plugin_name(self), key, klen, val, vlen);
}

static int host_cold_del(struct sp_plugin *self, const void *key, size_t klen)
{
	if (!store_on())
		return kvspace_unset(plugin_cold(self), key, klen);
	return store_cold_del(plugin_name(self), key, klen);
}

static int host_cold_del_range(struct sp_plugin *self, const void *lo, size_t lol, const void *hi,
			       size_t hil)
{
	if (!store_on()) {
		kvspace_unset_range(plugin_cold(self), lo, lol, hi, hil);
		return 0;
	}
	return store_cold_del_range(plugin_name(self), lo, lol, hi, hil);
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
	const struct kv_entry *e;

	if (!r)
		return -1;
	r->fn = fn;
	r->arg = arg;
	if (store_on()) {
		store_cold_get(plugin_name(self), key, klen, cold_from_store, r);
		return 0;
	}
	e = kvspace_get(plugin_cold(self), key, klen);
	if (e) {
		r->val = dup_bytes(e->val, e->vlen);
		r->vlen = e->vlen;
		r->found = r->val != NULL;
	}
	/* Later, as with a store: a callback never runs inside the call that asked. */
	timer_init(&r->t, cold_from_memory, r);
	timer_arm(&r->t, clock_now_ms());
	return 0;
}

/* --- after commit ------------------------------------------------------------- */

/* A plugin's after_commit on its way: through the store, or on a 0 ms timer. */
struct commit_wait {
	struct timer t;
	void (*fn)(void *arg, int status);
	void *arg;
	int status;
};

static void commit_now(struct timer *t, void *arg)
{
	struct commit_wait *w = arg;

	w->fn(w->arg, w->status);
	mem_free(w);
}

static void commit_done(void *arg, int status)
{
	struct commit_wait *w = arg;

	/* A callback never runs inside the call that asked, even when nothing was pending. */
	w->status = status;
	timer_init(&w->t, commit_now, w);
	timer_arm(&w->t, clock_now_ms());
}

static int host_after_commit(struct sp_plugin *self, void (*fn)(void *arg, int status), void *arg)
{
	struct commit_wait *w;

	if (!fn || !(w = mem_calloc(1, sizeof(*w))))
		return -1;
	w->fn = fn;
	w->arg = arg;
	store_after_commit(commit_done, w);
	return 0;
}

static int host_acl_check(const char *client_id, const char *username, const char *topic,
			  int access)
{
	const struct session *s;

	if (!client_id || !topic || (access != SP_ACL_READ && access != SP_ACL_WRITE))
		return 0;
	s = session_find(client_id); /* its listener's rules (per_listener_settings) */
	return plugin_acl(s ? s->realm : 0, client_id, username, topic, strlen(topic), access,
			  NULL);
}

/* --- metrics --------------------------------------------------------------------- */

struct collector {
	struct sp_plugin *self;
	void (*collect)(void *arg, struct sp_metrics *out);
	void *arg;
};

static struct collector *collectors;
static size_t n_collectors;

/* Where a collector reports: the exposition GET /metrics is writing. */
struct sp_metrics {
	struct prom *prom;
};

static int host_metrics_register(struct sp_plugin *self,
				 void (*collect)(void *arg, struct sp_metrics *out), void *arg)
{
	struct collector *grown;

	for (size_t i = 0; i < n_collectors; i++)
		if (collectors[i].self == self)
			return -1;
	grown = mem_realloc(collectors, (n_collectors + 1) * sizeof(*collectors));
	if (!collect || !grown)
		return -1;
	collectors = grown;
	collectors[n_collectors++] = (struct collector){ self, collect, arg };
	return 0;
}

static void host_metric(struct sp_metrics *out, const struct sp_metric *m, uint64_t v)
{
	if (!out || !m)
		return;
	prom_u64(out->prom, m->name, m->type == SP_METRIC_COUNTER ? "counter" : "gauge", m->help,
		 m->label, m->label_value, v);
}

void plugin_host_metrics(struct prom *p)
{
	for (size_t i = 0; i < n_collectors; i++) {
		struct sp_metrics out = { p };

		collectors[i].collect(collectors[i].arg, &out);
	}
}

static const struct sp_host host = {
	.api = SLUICE_PLUGIN_API,
	.size = sizeof(struct sp_host),
	.on = plugin_on,
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
	.deliver = host_deliver,
	.topic_match = host_topic_match,
	.after_commit = host_after_commit,
	.msg_add_user_props = host_msg_add_user_props,
	.subscribed = host_subscribed,
	.msg_with_retain = host_msg_with_retain,
	.redeliver = host_redeliver,
	.durable = router_target_durable,
	.opt_where = host_opt_where,
	.listeners = host_listeners,
	.msg_ids_after = msg_seen_id,
	.acl_check = host_acl_check,
	.metrics_register = host_metrics_register,
	.metric = host_metric,
};

const struct sp_host *plugin_host_table(void)
{
	return &host;
}

void plugin_host_stop(void)
{
	while (timers_list)
		host_timer_cancel(timers_list);
	mem_free(collectors);
	collectors = NULL;
	n_collectors = 0;
}
