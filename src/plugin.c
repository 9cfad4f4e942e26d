/*
 * plugin.c - loading plugins and running their event chains. Loop thread only.
 *
 * A plugin is a shared object with three entry points (sluice_plugin.h). It
 * is loaded with dlopen, its API version checked, and its init called with
 * the host table (built by plugin_host.c and handed in): a table of
 * function pointers rather than exported symbols, so a plugin needs nothing
 * from the broker binary and a test can hand it a fake table. Tests add
 * plugins linked into their own binary with plugin_add().
 *
 * Chains run in configuration order and stop at the first verdict that is
 * not SP_PASS. A message a plugin took (SP_TAKE) and hands back with
 * host->route() re-enters the PUBLISH chain after that plugin (the `from`
 * argument), so the plugins later in the chain still see it and the one
 * that took it does not see it again.
 *
 * Invariants: plugins[0..n_plugins) are loaded, in chain order, and
 * wants[ev] counts the plugins with a callback for ev; a callback that
 * fails (non-zero return) fails closed where it could refuse (PUBLISH,
 * SUBSCRIBE) and is ignored elsewhere. This file decides nothing itself:
 * what a verdict leads to is the caller's (router.c, holds.c).
 */
#include "autoconfig.h"
#include "plugin.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "buf.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "msg.h"
#include "outq.h"
#include "props.h"
#include "session.h"
#include "topic_tree.h"

#ifndef PLUGIN_DIR
#define PLUGIN_DIR "/usr/local/lib/sluice"
#endif

struct sp_plugin {
	char *name;
	size_t index; /* position in the chain */
	void *dl; /* NULL for a plugin linked in (plugin_add) */
	void *udata;
	plugin_cleanup_fn cleanup;
	sp_callback cb[SP_EV__COUNT];
	struct kv_space kv;
	struct kv_space cold; /* used only while persistence is off */
	const struct plugin_conf *conf; /* during init: its configuration lines (opt_where) */
};

static struct sp_plugin **plugins;
static size_t n_plugins, cap_plugins;
static unsigned wants[SP_EV__COUNT];
static struct buf ack_props;
static bool in_publish;

bool plugin_wants(enum sp_event_type ev)
{
	return wants[ev] != 0;
}

const char *plugin_name(const struct sp_plugin *p)
{
	return p->name;
}

size_t plugin_index(const struct sp_plugin *p)
{
	return p->index;
}

struct kv_space *plugin_kv(struct sp_plugin *p)
{
	return &p->kv;
}

struct kv_space *plugin_cold(struct sp_plugin *p)
{
	return &p->cold;
}

size_t plugin_count(void)
{
	return n_plugins;
}

/* host->on(): registration is the chains' business, so it lives here. */
int plugin_on(struct sp_plugin *self, enum sp_event_type ev, sp_callback cb)
{
	if ((unsigned)ev >= SP_EV__COUNT || !cb)
		return -1;
	if (!self->cb[ev])
		wants[ev]++;
	self->cb[ev] = cb;
	return 0;
}

int plugin_ack_prop_add(const char *key, const char *val)
{
	if (!in_publish)
		return -1;
	return props_put_pair(&ack_props, key, strlen(key), val, strlen(val));
}

int plugin_kv_restore(const char *name, const void *k, size_t kl, const void *v, size_t vl)
{
	size_t i;

	for (i = 0; i < n_plugins; i++)
		if (!strcmp(plugins[i]->name, name))
			return kvspace_set(&plugins[i]->kv, k, kl, v, vl);
	/* A plugin no longer configured: its state stays in the store, untouched. */
	return 0;
}

/* --- loading ------------------------------------------------------------------ */

static void free_plugin(struct sp_plugin *p)
{
	kvspace_free(&p->kv);
	kvspace_free(&p->cold);
	if (p->dl)
		dlclose(p->dl);
	mem_free(p->name);
	mem_free(p);
}

/* "NAME" -> PLUGIN_DIR/NAME.so (or plugin_dir); a path with a '/' is used as it is. */
static void path_of(const struct config *cfg, const char *name, char *out, size_t n)
{
	if (strchr(name, '/'))
		snprintf(out, n, "%s", name);
	else
		snprintf(out, n, "%s/%s.so", cfg->plugin_dir ? cfg->plugin_dir : PLUGIN_DIR, name);
}

/* A new plugin, last in the chain (not yet initialised). NULL on OOM. */
static struct sp_plugin *append(const char *name)
{
	struct sp_plugin *p;

	if (n_plugins == cap_plugins) {
		size_t cap = cap_plugins ? cap_plugins * 2 : 4;
		struct sp_plugin **a = mem_realloc(plugins, cap * sizeof(*a));

		if (!a)
			return NULL;
		plugins = a;
		cap_plugins = cap;
	}
	p = mem_calloc(1, sizeof(*p));
	if (!p || !(p->name = mem_strdup(name))) {
		mem_free(p);
		return NULL;
	}
	p->index = n_plugins;
	plugins[n_plugins++] = p;
	return p;
}

/* A plugin whose init failed hears nothing more: what it registered is forgotten. */
static void unregister(struct sp_plugin *p)
{
	int ev;

	for (ev = 0; ev < SP_EV__COUNT; ev++) {
		if (p->cb[ev])
			wants[ev]--;
		p->cb[ev] = NULL;
	}
}

/* Calls init; on failure the plugin stays in the list, silent and without cleanup. */
static int init_plugin(struct sp_plugin *p, plugin_init_fn init, const struct sp_opt *opts,
		       int n_opts, const struct sp_host *host)
{
	if (init(host, p, opts, n_opts, &p->udata)) {
		log_err("plugin %s: initialisation failed", p->name);
		unregister(p);
		p->cleanup = NULL; /* init failed: nothing to clean up */
		return -1;
	}
	return 0;
}

static int call_init(struct sp_plugin *p, const struct plugin_conf *pc, plugin_init_fn init,
		     const struct sp_host *host)
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
	p->conf = pc;
	rc = init_plugin(p, init, opts, (int)pc->n_opts, host);
	p->conf = NULL;
	mem_free(opts);
	return rc;
}

/* dlopen and the three entry points; 0 or -1 (logged). */
static int open_object(struct sp_plugin *p, const char *path, plugin_init_fn *init)
{
	plugin_version_fn version;

	p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!p->dl) {
		log_err("plugin %s: cannot load %s: %s", p->name, path, dlerror());
		return -1;
	}
	version = (plugin_version_fn)dlsym(p->dl, "sluice_plugin_version");
	*init = (plugin_init_fn)dlsym(p->dl, "sluice_plugin_init");
	p->cleanup = (plugin_cleanup_fn)dlsym(p->dl, "sluice_plugin_cleanup");
	if (!version || !*init || !p->cleanup) {
		log_err("plugin %s: %s is not a sluice plugin (sluice_plugin_version, "
			"sluice_plugin_init and sluice_plugin_cleanup are required)",
			p->name, path);
		return -1;
	}
	if (version() != SLUICE_PLUGIN_API) {
		log_err("plugin %s: built for plugin API %d, this broker has %d", p->name,
			version(), SLUICE_PLUGIN_API);
		return -1;
	}
	return 0;
}

static int load_one(const struct config *cfg, const struct plugin_conf *pc,
		    const struct sp_host *host)
{
	char path[4096];
	struct sp_plugin *p = append(pc->name);
	plugin_init_fn init = NULL;

	if (!p) {
		log_err("plugin %s: out of memory", pc->name);
		return -1;
	}
	path_of(cfg, pc->name, path, sizeof(path));
	if (open_object(p, path, &init)) {
		p->cleanup = NULL;
		return -1;
	}
	if (call_init(p, pc, init, host))
		return -1;
	log_notice("plugin %s loaded from %s", pc->name, path);
	return 0;
}

int plugin_load_all(const struct config *cfg, const struct sp_host *host)
{
	size_t i;

	buf_init(&ack_props);
	for (i = 0; i < cfg->n_plugins; i++)
		if (load_one(cfg, &cfg->plugins[i], host))
			return -1;
	return 0;
}

int plugin_add(const char *name, plugin_init_fn init, plugin_cleanup_fn cleanup,
	       const struct sp_opt *opts, int n_opts, const struct sp_host *host)
{
	struct sp_plugin *p = append(name);

	if (!p)
		return -1;
	p->cleanup = cleanup;
	return init_plugin(p, init, opts, n_opts, host);
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

/* The event fields of session s; NULL (a group queue's own event): client_id "". */
static void session_event(struct sp_event *ev, const struct session *s)
{
	memset(ev, 0, sizeof(*ev));
	ev->client_id = s ? s->client_id : "";
	ev->username = s ? s->username : NULL;
	ev->protocol = s ? s->version : 0;
}

/* The group and filter of a share key "group\0filter". */
static void share_fields(struct sp_event *ev, const char *share)
{
	ev->share_group = share;
	ev->share_filter = share ? share + strlen(share) + 1 : NULL;
}

void plugin_start(void)
{
	struct sp_event ev;

	memset(&ev, 0, sizeof(ev));
	notify(SP_EV_START, &ev);
}

void plugin_stop(void)
{
	struct sp_event ev;

	memset(&ev, 0, sizeof(ev));
	notify(SP_EV_STOP, &ev);
}

static const char *verdict_plugin(size_t who)
{
	return who < n_plugins ? plugins[who]->name : "?";
}

enum sp_verdict plugin_publish(struct msg *m, const char *client_id, const char *username,
			       uint8_t protocol, size_t from, struct sp_result *res)
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
	ev.username = username;
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
			 verdict_plugin(who), (int)res->verdict);
		res->verdict = SP_PASS;
	}
	return res->verdict;
}

const struct buf *plugin_ack_props(void)
{
	return &ack_props;
}

/*
 * A HOLD needs a non-zero id; KEEP is a DELIVER verdict only; anything else
 * but PASS and SKIP is not a verdict here.
 */
static enum sp_verdict hold_or_pass(const char *event, size_t who, struct sp_result *res,
				    struct sp_plugin **holder)
{
	if (res->verdict == SP_SKIP || res->verdict == SP_PASS ||
	    (res->verdict == SP_KEEP && !strcmp(event, "DELIVER")))
		return res->verdict;
	if (res->verdict == SP_HOLD && res->hold_id) {
		*holder = plugins[who];
		return SP_HOLD;
	}
	log_warn("plugin %s: verdict %d (hold id %llu) is not valid for %s; passing",
		 verdict_plugin(who), (int)res->verdict, (unsigned long long)res->hold_id, event);
	return res->verdict = SP_PASS;
}

enum sp_verdict plugin_deliver(const struct session *s, struct msg *m, uint8_t qos,
			       const char *share, size_t from, struct sp_result *res,
			       struct sp_plugin **who)
{
	struct sp_event ev;
	size_t i;

	memset(res, 0, sizeof(*res));
	if (!wants[SP_EV_DELIVER])
		return SP_PASS;
	session_event(&ev, s);
	ev.msg = (struct sp_msg *)m;
	ev.qos = qos;
	share_fields(&ev, share);
	i = run_chain(SP_EV_DELIVER, &ev, res, from);
	return hold_or_pass("DELIVER", i, res, who);
}

/* The members as plugins see them; NULL on OOM. */
static struct sp_member *members_of(const struct topic_group *g)
{
	struct sp_member *members = mem_calloc(g->n, sizeof(*members));
	size_t i;

	for (i = 0; members && i < g->n; i++) {
		const struct session *s = g->members[i].owner;

		members[i].client_id = s->client_id;
		members[i].online = s->conn != NULL;
		members[i].inflight = outq_inflight(&s->q);
		members[i].queued = (uint32_t)outq_queued(&s->q);
	}
	return members;
}

enum sp_verdict plugin_choose(const struct topic_group *g, const char *share, struct msg *m,
			      size_t from, size_t *member, struct sp_result *res,
			      struct sp_plugin **who)
{
	struct sp_member *members;
	struct sp_event ev;
	size_t i;

	memset(res, 0, sizeof(*res));
	if (!wants[SP_EV_CHOOSE] || !g->n || !(members = members_of(g)))
		return SP_PASS;
	memset(&ev, 0, sizeof(ev));
	ev.msg = (struct sp_msg *)m;
	ev.qos = m->qos;
	share_fields(&ev, share);
	ev.members = members;
	ev.n_members = g->n;
	res->member = *member;
	i = run_chain(SP_EV_CHOOSE, &ev, res, from);
	mem_free(members);
	if (res->member < g->n)
		*member = res->member;
	return hold_or_pass("CHOOSE", i, res, who);
}

/*
 * A refusal (reason >= 0x80) is NACKED for the plugins that registered it.
 * A plugin that did not (built for the first revision) hears what it heard
 * before NACKED existed: ACKED for QoS 1, DROPPED for QoS 2.
 */
static void refused(struct sp_event *ev)
{
	struct sp_result res;
	size_t i;

	for (i = 0; i < n_plugins; i++) {
		struct sp_plugin *p = plugins[i];
		enum sp_event_type type = p->cb[SP_EV_NACKED] ? SP_EV_NACKED
					  : ev->qos == 1      ? SP_EV_ACKED
							      : SP_EV_DROPPED;

		if (!p->cb[type])
			continue;
		ev->type = type;
		ev->why = type == SP_EV_DROPPED ? "refused by the client (PUBREC)" : NULL;
		memset(&res, 0, sizeof(res));
		if (p->cb[type](ev, &res, p->udata))
			log_warn("plugin %s: callback for event %d failed", p->name, (int)type);
	}
}

void plugin_acked(const struct session *s, struct msg *m, uint8_t qos, const char *share,
		  uint8_t reason)
{
	struct sp_event ev;

	if (reason >= 0x80 ? !wants[SP_EV_NACKED] && !wants[SP_EV_ACKED] && !wants[SP_EV_DROPPED]
			   : !wants[SP_EV_ACKED])
		return;
	session_event(&ev, s);
	ev.msg = (struct sp_msg *)m;
	ev.qos = qos;
	ev.reason = reason;
	share_fields(&ev, share);
	if (reason >= 0x80)
		refused(&ev);
	else
		notify(SP_EV_ACKED, &ev);
}

void plugin_dropped(const struct session *s, struct msg *m, uint8_t qos, const char *share,
		    const char *why, uint64_t hold_id, bool moving)
{
	struct sp_event ev;

	if (!wants[SP_EV_DROPPED])
		return;
	session_event(&ev, s);
	ev.msg = (struct sp_msg *)m;
	ev.qos = qos;
	share_fields(&ev, share);
	ev.why = why;
	ev.hold_id = hold_id;
	ev.moving = moving;
	notify(SP_EV_DROPPED, &ev);
}

void plugin_received(const struct session *s, struct msg *m, const char *share)
{
	struct sp_event ev;

	if (!wants[SP_EV_RECEIVED])
		return;
	session_event(&ev, s);
	ev.msg = (struct sp_msg *)m;
	ev.qos = 2;
	share_fields(&ev, share);
	notify(SP_EV_RECEIVED, &ev);
}

void plugin_group_end(const char *share)
{
	struct sp_event ev;

	if (!wants[SP_EV_GROUP_END])
		return;
	session_event(&ev, NULL);
	share_fields(&ev, share);
	notify(SP_EV_GROUP_END, &ev);
}

int plugin_listeners_before(const struct sp_plugin *self, enum sp_event_type ev)
{
	int n = 0;

	if ((unsigned)ev >= SP_EV__COUNT)
		return 0;
	for (size_t i = 0; i < n_plugins && plugins[i] != self; i++)
		n += plugins[i]->cb[ev] != NULL;
	return n;
}

const char *plugin_opt_where(const struct sp_plugin *p, size_t index)
{
	return p->conf && index < p->conf->n_opts ? p->conf->opts[index].where : NULL;
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

void plugin_session_end(const struct session *s)
{
	struct sp_event ev;

	session_event(&ev, s);
	notify(SP_EV_SESSION_END, &ev);
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

void plugin_unload_all(void)
{
	size_t i;

	for (i = n_plugins; i-- > 0;) {
		if (plugins[i]->cleanup)
			plugins[i]->cleanup(plugins[i]->udata);
		free_plugin(plugins[i]);
	}
	mem_free(plugins);
	plugins = NULL;
	n_plugins = cap_plugins = 0;
	memset(wants, 0, sizeof(wants));
	buf_free(&ack_props);
}

/* --- access: AUTH and ACL_CHECK before the broker's own files ------------------- */

bool plugin_authenticate(unsigned realm, const char *client_id, const char *username, size_t ulen,
			 const void *password, size_t plen, uint8_t protocol, const char *address,
			 uint8_t *reason, const char **why)
{
	struct sp_event ev;
	struct sp_result res;
	char *user = NULL;

	*reason = MQTT_RC_NOT_AUTHORIZED;
	if (wants[SP_EV_AUTH]) {
		if (username && !(user = mem_strndup(username, ulen))) {
			*why = "out of memory";
			return false;
		}
		memset(&ev, 0, sizeof(ev));
		memset(&res, 0, sizeof(res));
		ev.client_id = client_id;
		ev.username = user;
		ev.protocol = protocol;
		ev.password = password;
		ev.password_len = password ? plen : 0;
		ev.address = address;
		run_chain(SP_EV_AUTH, &ev, &res, 0);
		mem_free(user);
		if (res.verdict == SP_ALLOW)
			return true;
		if (res.verdict == SP_REJECT) {
			if (res.reason >= 0x80)
				*reason = res.reason;
			*why = "refused by a plugin";
			return false;
		}
	}
	return auth_connect(realm, username, ulen, password, plen, why);
}

bool plugin_acl_active(void)
{
	return wants[SP_EV_ACL_CHECK] || auth_acl_active();
}

/* 1 allowed, 0 denied, -1 no plugin decided. */
static int acl_chain(const char *client_id, const char *username, const char *topic, size_t tlen,
		     int access, const struct msg *m)
{
	static bool inside; /* a plugin asking host->acl_check from its own callback */
	struct sp_event ev;
	struct sp_result res;
	char *t;

	if (!wants[SP_EV_ACL_CHECK] || inside)
		return -1;
	if (!(t = mem_strndup(topic, tlen)))
		return 0; /* out of memory: denied, never allowed by accident */
	memset(&ev, 0, sizeof(ev));
	memset(&res, 0, sizeof(res));
	ev.client_id = client_id;
	ev.username = username;
	ev.topic = t;
	ev.access = access;
	ev.msg = (struct sp_msg *)m;
	inside = true;
	run_chain(SP_EV_ACL_CHECK, &ev, &res, 0);
	inside = false;
	mem_free(t);
	return res.verdict == SP_ALLOW ? 1 : res.verdict == SP_REJECT ? 0 : -1;
}

bool plugin_acl(unsigned realm, const char *client_id, const char *username, const char *topic,
		size_t tlen, int access, const struct msg *m)
{
	int rc = acl_chain(client_id, username, topic, tlen, access, m);

	if (rc >= 0)
		return rc == 1;
	if (access == SP_ACL_SUBSCRIBE)
		return auth_may_subscribe(realm, client_id, username, topic, tlen);
	return auth_may(realm, client_id, username, topic, tlen,
			access == SP_ACL_READ ? ACL_READ : ACL_WRITE);
}
