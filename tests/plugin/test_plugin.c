/*
 * test_plugin.c - a plugin that exercises every event, verdict and host call
 * of include/sluice_plugin.h, driven by topic names so that the integration
 * tests (tests/integ/test_plugin_layer.py, and test_plugin_api2.py for API 2)
 * can reach each path with ordinary MQTT clients.
 *
 * P below is the topic prefix, "tp" unless plugin_opt_prefix says otherwise.
 *
 *   PUBLISH    P/reject/...          REJECT 0x99 "tp says no"
 *              P/take/MS/REST        TAKE: kept (and stored in kv as take/ID),
 *                                    then after MS ms routed again on REST
 *                                    without the user property "tp-drop";
 *                                    the publisher's PUBACK gets tp-ack=ID
 *              P/stats/get           publish the counters on $P/stats (from a
 *                                    0 ms timer)
 *              P/stats/sync          the same, routed from inside the callback
 *              P/kv/scan             $P/stats gets "kvtake=N": keys under take/
 *              P/info/...            $P/info gets what the msg_* accessors say
 *   DELIVER    P/skip/...            SKIP for recipients whose id starts "skip"
 *              P/hold/...            HOLD, released by a timer after 300 ms
 *              P/holdlong/...        the same after 3 s (time to end the session)
 *              P/discard/...         HOLD, discarded by a timer after 300 ms
 *              P/droute/...          route the counters from inside DELIVER
 *   CHOOSE     group "tpg"           the member with the smallest client id
 *   SUBSCRIBE  P/forbidden/#         REJECT 0x87 (also under $share/G/)
 *   the rest                         counted, and logged at INFO
 *
 * API 2 (every host call guarded with SP_HOST_HAS; results also go out as
 * non-retained QoS 0 messages on $P/<leaf>):
 *
 *   PUBLISH    P/deliver/C/REST      TAKE, then host->deliver() a copy on topic
 *                                    REST to client C only (its plain
 *                                    subscriptions); $P/delivered gets
 *                                    "rc=N to=C topic=REST"
 *              P/gdeliver/G/REST     the same to shared group G; the group's
 *                                    filter is the user property "filter" if
 *                                    there is one, else REST itself
 *              P/deliver-timer/C/REST, P/gdeliver-timer/G/REST
 *                                    the same from a 200 ms timer
 *              P/match/...           $P/match gets host->topic_match() of every
 *                                    user property "filter" (in order, "1" or
 *                                    "0", space separated) against the user
 *                                    property "topic", else the message's topic
 *              P/commit/...          kv_put, then host->after_commit(); when it
 *                                    fires $P/committed gets "status=S inside=I
 *                                    seq=N" (inside=1: it ran within the call)
 *              P/whoami/...          $P/whoami gets "client=C user=U proto=N"
 *   DELIVER    P/routecount/...      route a message on $P/rcount (QoS of the
 *                                    delivery's message, payload the recipient)
 *                                    from inside DELIVER; $P/rcresult gets
 *                                    "n=N client=C", N what route() returned
 *   CHOOSE     group "tph"           HOLD, released by a timer after 300 ms (the
 *                                    CHOOSE that follows the release passes)
 *              group "tps"           SKIP: no member gets it
 *              group "tpr"           route() from inside CHOOSE: $P/cnote gets
 *                                    "group=G topic=T"; the broker's choice stands
 *   ACKED      logged as "tp: ACKED client=C topic=T reason=0xNN"
 *   NACKED     counted, logged as "tp: NACKED client=C topic=T ... reason=0xNN"
 *   SESSION_END counted, logged as "tp: SESSION_END client=C user=U proto=N"
 *
 * Access (there when SP_HOST_HAS(host, acl_check)):
 *
 *   AUTH       username "tp-allow": ALLOW, whatever the password;
 *              "tp-deny": REJECT (0x86 for MQTT 5); the rest PASS. Logged as
 *              "tp: AUTH client=C user=U password=N bytes address=A"
 *   ACL_CHECK  topics (or filters) under P/aclallow/: ALLOW; under
 *              P/acldeny/: REJECT; the rest PASS. Logged as
 *              "tp: ACL_CHECK client=C user=U topic=T access=N msg=0|1"
 *   CONNECT and PUBLISH also log "tp: CONNECT client=C user=U proto=N" and
 *   "tp: PUBLISH client=C user=U topic=T" (user "-" when none).
 *
 * $P/stats is a retained QoS 0 message whose payload is "name=value" pairs
 * separated by spaces. Every event is also logged as "tp: EVENT ..." so the
 * tests can read the broker's log.
 *
 * Options: prefix WORD; fail yes (init fails after logging why);
 * probe yes (init also calls host->on() with bad arguments and counts how
 * many were refused, as "probe=N").
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_plugin.h"

#define HOLD_MS 300
#define HOLD_LONG_MS 3000
#define DELIVER_TIMER_MS 200
#define STATS_MAX 1024

enum counter {
	C_START, C_STOP, C_CONNECT, C_DISCONNECT, C_GRACEFUL, C_ABRUPT, C_SUBSCRIBE,
	C_SUBREJECT, C_UNSUBSCRIBE, C_PUBLISH, C_REJECT, C_TAKE, C_ROUTED, C_ROUTEERR,
	C_DELIVER, C_SKIP, C_HOLD, C_RELEASE, C_DISCARD, C_HOLDERR, C_REHOLD, C_CHOOSE,
	C_ACKED, C_DROPPED, C_DROPHELD, C_KVERR, C_STARTS, C_PROBE,
	/* API 2, appended so that the names above keep their places: */
	C_NACKED, C_SESSEND, C_DELIVERED, C_DELIVERNONE, C_DELIVERERR, C_MATCH, C_COMMIT,
	C_COMMITTED, C_COMMITINSIDE, C_COMMITERR, C_CHOLD, C_CRELEASE, C_CREOFFER, C_CSKIP,
	C_ROUTECOUNT, C_HOSTERR, C_CROUTE, C__COUNT
};

static const char *const counter_names[C__COUNT] = {
	"start", "stop", "connect", "disconnect", "graceful", "abrupt", "subscribe",
	"subreject", "unsubscribe", "publish", "reject", "take", "routed", "routeerr",
	"deliver", "skip", "hold", "release", "discard", "holderr", "rehold", "choose",
	"acked", "dropped", "dropheld", "kverr", "starts", "probe",
	"nacked", "sessend", "delivered", "delivernone", "delivererr", "match", "commit",
	"committed", "commitinside", "commiterr", "chold", "crelease", "creoffer", "cskip",
	"routecount", "hosterr", "croute",
};

static const char *const event_names[SP_EV__COUNT] = {
	"start", "stop", "connect", "disconnect", "subscribe", "unsubscribe",
	"publish", "deliver", "choose", "acked", "dropped", "nacked", "session_end",
	"received", "group_end", "auth", "acl_check",
};

/* A timer the plugin has armed: a taken message, a held delivery or a late deliver(). */
struct pending {
	struct pending *next, **pprev;
	struct tp *tp;
	struct sp_timer *timer;
	struct sp_msg *msg; /* take, deliver: our reference */
	uint64_t id; /* take: the message id; hold: the hold id */
	bool discard; /* hold: discard instead of release */
	bool group; /* hold: a CHOOSE hold; deliver: to a shared group */
	char rest[]; /* take: the topic to route it on; deliver: "target\0topic\0filter" */
};

/* A delivery we released: a second DELIVER for it would be held again. */
#define RELEASED_MAX 64
struct released {
	uint64_t msg_id;
	char client[64];
};

struct tp {
	const struct sp_host *host;
	struct sp_plugin *self;
	char prefix[64];
	size_t plen;
	uint64_t counters[C__COUNT];
	struct pending *pending; /* armed timers */
	uint64_t next_hold;
	struct released released[RELEASED_MAX];
	size_t n_released;
	bool in_commit_call; /* inside host->after_commit(): its fn must not run now */
	uint64_t commits; /* after_commit callbacks that fired */
};

/* ---- small helpers ------------------------------------------------------ */

/* The part of topic after "P/word/", or NULL when topic is not under it. */
static const char *under(const struct tp *tp, const char *topic, const char *word)
{
	size_t wl = strlen(word);

	if (!topic || strncmp(topic, tp->prefix, tp->plen) || topic[tp->plen] != '/')
		return NULL;
	topic += tp->plen + 1;
	if (strncmp(topic, word, wl))
		return NULL;
	if (topic[wl] == '\0')
		return topic + wl;
	return topic[wl] == '/' ? topic + wl + 1 : NULL;
}

static void pending_link(struct tp *tp, struct pending *p)
{
	p->next = tp->pending;
	if (p->next)
		p->next->pprev = &p->next;
	p->pprev = &tp->pending;
	tp->pending = p;
}

static void pending_unlink(struct pending *p)
{
	*p->pprev = p->next;
	if (p->next)
		p->next->pprev = p->pprev;
}

static int kv_put_str(struct tp *tp, const char *key, const void *val, size_t vlen)
{
	int rc = tp->host->kv_put(tp->self, key, strlen(key), val, vlen);

	if (rc)
		tp->counters[C_KVERR]++;
	return rc;
}

static void take_key(char *key, size_t size, uint64_t id)
{
	snprintf(key, size, "take/%020" PRIu64, id);
}

/* ---- $P/stats ----------------------------------------------------------- */

static int count_key(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	(*(size_t *)arg)++;
	return 0;
}

static size_t stats_format(struct tp *tp, char *out, size_t size, const char *extra)
{
	size_t n = 0;

	out[0] = '\0';
	for (int i = 0; i < C__COUNT && n < size; i++)
		n += snprintf(out + n, size - n, "%s%s=%" PRIu64, i ? " " : "", counter_names[i],
			      tp->counters[i]);
	if (extra && n < size)
		n += snprintf(out + n, size - n, " %s", extra);
	return n < size ? n : size - 1;
}

/* Routes a QoS 0 message built by the plugin on $P/<leaf>. */
static int publish_leaf(struct tp *tp, const char *leaf, const char *text, size_t len, bool retain)
{
	char topic[128];
	struct sp_msg_spec spec;
	struct sp_msg *m;
	int n;

	snprintf(topic, sizeof(topic), "$%s/%s", tp->prefix, leaf);
	memset(&spec, 0, sizeof(spec));
	spec.topic = topic;
	spec.topic_len = strlen(topic);
	spec.payload = text;
	spec.payload_len = len;
	spec.qos = 0;
	spec.retain = retain;
	m = tp->host->msg_new(&spec);
	if (!m) {
		tp->host->log(tp->self, SP_LOG_ERR, "tp: msg_new failed for %s", topic);
		return -1;
	}
	n = tp->host->route(tp->self, m);
	tp->host->log(tp->self, SP_LOG_INFO, "tp: published %s to %d session(s): %.*s", topic,
		      n, (int)len, text);
	tp->host->msg_unref(m);
	return n < 0 ? -1 : 0;
}

/* A retained one (the counters, the accessors' report). */
static int publish_text(struct tp *tp, const char *leaf, const char *text, size_t len)
{
	return publish_leaf(tp, leaf, text, len, true);
}

/* A result of an API 2 call: not retained, so each one is seen once. */
static void publish_note(struct tp *tp, const char *leaf, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void publish_note(struct tp *tp, const char *leaf, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	publish_leaf(tp, leaf, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1,
		     false);
}

/* A host call this broker lacks (an API 1 broker): counted and logged, not called. */
static bool host_has(struct tp *tp, bool has, const char *what)
{
	if (!has) {
		tp->counters[C_HOSTERR]++;
		tp->host->log(tp->self, SP_LOG_ERR, "tp: the host has no %s", what);
	}
	return has;
}

static void publish_stats(struct tp *tp, const char *extra)
{
	char text[STATS_MAX];
	size_t n = stats_format(tp, text, sizeof(text), extra);

	publish_text(tp, "stats", text, n);
}

static void stats_timer(void *arg)
{
	publish_stats(arg, NULL);
}

static void publish_kv_scan(struct tp *tp)
{
	size_t keys = 0;
	char extra[64];

	if (tp->host->kv_scan(tp->self, "take/", 5, count_key, &keys))
		tp->counters[C_KVERR]++;
	snprintf(extra, sizeof(extra), "kvtake=%zu", keys);
	publish_stats(tp, extra);
}

/* ---- $P/info: what the accessors say about a message --------------------- */

static void publish_info(struct tp *tp, const struct sp_msg *m)
{
	const struct sp_host *h = tp->host;
	char text[STATS_MAX];
	size_t plen, n, pos = 0, kl, vl;
	const char *k, *v;
	uint64_t exp = h->msg_expiry(m);

	h->msg_payload(m, &plen);
	n = snprintf(text, sizeof(text),
		     "topic=%s sender=%s qos=%u retain=%d id=%" PRIu64 " payload_len=%zu "
		     "expiry_in_ms=%" PRId64 " props=",
		     h->msg_topic(m), h->msg_sender(m), h->msg_qos(m), h->msg_retain(m) ? 1 : 0,
		     h->msg_id(m), plen, exp ? (int64_t)(exp - h->now_ms()) : (int64_t)-1);
	while (n < sizeof(text) && h->msg_user_prop(m, &pos, &k, &kl, &v, &vl) == 1)
		n += snprintf(text + n, sizeof(text) - n, "%.*s:%.*s,", (int)kl, k, (int)vl, v);
	if (n >= sizeof(text))
		n = sizeof(text) - 1;
	publish_text(tp, "info", text, n);
}

/* ---- taking and routing back --------------------------------------------- */

static bool same_payload(const struct sp_host *h, const struct sp_msg *a, const struct sp_msg *b)
{
	size_t la, lb;
	const void *pa = h->msg_payload(a, &la), *pb = h->msg_payload(b, &lb);

	return la == lb && (!la || !memcmp(pa, pb, la));
}

/* The stored copy must decode to a message on the same topic with the same payload. */
static void check_stored(struct tp *tp, const struct pending *p)
{
	const struct sp_host *h = tp->host;
	char key[64];
	void *val = NULL;
	size_t vlen = 0;
	struct sp_msg *d;

	take_key(key, sizeof(key), p->id);
	if (h->kv_get(tp->self, key, strlen(key), &val, &vlen)) {
		tp->counters[C_KVERR]++;
		h->log(tp->self, SP_LOG_ERR, "tp: kv_get %s: not found", key);
		return;
	}
	d = h->msg_decode(val, vlen);
	h->free(val);
	if (!d || strcmp(h->msg_topic(d), h->msg_topic(p->msg)) || !same_payload(h, d, p->msg)) {
		tp->counters[C_KVERR]++;
		h->log(tp->self, SP_LOG_ERR, "tp: stored message %s does not decode back", key);
	}
	if (d)
		h->msg_unref(d);
	if (h->kv_del(tp->self, key, strlen(key)))
		tp->counters[C_KVERR]++;
	if (!h->kv_get(tp->self, key, strlen(key), &val, &vlen)) {
		tp->counters[C_KVERR]++;
		h->free(val);
		h->log(tp->self, SP_LOG_ERR, "tp: %s still there after kv_del", key);
	}
}

static void take_timer(void *arg)
{
	struct pending *p = arg;
	struct tp *tp = p->tp;
	static const char *const drop[] = { "tp-drop" };
	struct sp_msg *m;
	int n;

	pending_unlink(p);
	check_stored(tp, p);
	m = tp->host->msg_rewrite(p->msg, p->rest, drop, 1, true);
	n = m ? tp->host->route(tp->self, m) : -1;
	if (n < 0)
		tp->counters[C_ROUTEERR]++;
	else
		tp->counters[C_ROUTED]++;
	tp->host->log(tp->self, SP_LOG_INFO, "tp: routed taken message %" PRIu64 " to '%s': %d",
		      p->id, p->rest, n);
	if (m)
		tp->host->msg_unref(m);
	tp->host->msg_unref(p->msg);
	tp->host->free(p);
}

/* P/take/MS/REST */
static int take_publish(struct tp *tp, const struct sp_event *ev, const char *arg,
			struct sp_result *res)
{
	const struct sp_host *h = tp->host;
	char *end, key[64], idtext[32];
	unsigned long ms = strtoul(arg, &end, 10);
	size_t rl;
	struct pending *p;
	void *enc = NULL;
	size_t elen = 0;

	if (end == arg || *end != '/' || !end[1])
		return 0; /* not a take topic after all: PASS */
	rl = strlen(end + 1);
	p = h->alloc(sizeof(*p) + rl + 1);
	if (!p)
		return -1;
	memset(p, 0, sizeof(*p));
	p->tp = tp;
	memcpy(p->rest, end + 1, rl + 1);
	p->id = h->msg_id(ev->msg);
	if (h->msg_encode(ev->msg, &enc, &elen) == 0) {
		take_key(key, sizeof(key), p->id);
		kv_put_str(tp, key, enc, elen);
		h->free(enc);
	} else {
		tp->counters[C_KVERR]++;
	}
	p->msg = h->msg_ref(ev->msg);
	p->timer = h->timer_add(tp->self, ms, take_timer, p);
	if (!p->timer) {
		h->msg_unref(p->msg);
		h->free(p);
		return -1;
	}
	pending_link(tp, p);
	snprintf(idtext, sizeof(idtext), "%" PRIu64, p->id);
	if (ev->protocol == 5 && h->ack_user_prop("tp-ack", idtext))
		h->log(tp->self, SP_LOG_WARNING, "tp: ack_user_prop failed");
	tp->counters[C_TAKE]++;
	h->log(tp->self, SP_LOG_INFO, "tp: took message %s on '%s' for %lu ms", idtext,
	       h->msg_topic(ev->msg), ms);
	res->verdict = SP_TAKE;
	return 0;
}

/* ---- API 2: deliver, topic_match, after_commit ----------------------------- */

/* The first user property key of m, copied to out; false when m has none. */
static bool user_prop(const struct tp *tp, const struct sp_msg *m, const char *key, char *out,
		      size_t size)
{
	size_t pos = 0, kl, vl;
	const char *k, *v;

	while (tp->host->msg_user_prop(m, &pos, &k, &kl, &v, &vl) == 1) {
		if (kl == strlen(key) && !memcmp(k, key, kl)) {
			snprintf(out, size, "%.*s", (int)vl, v);
			return true;
		}
	}
	return false;
}

/*
 * host->deliver() of a copy of m on topic: to client target's plain
 * subscriptions, or (group) to shared group target with filter.
 */
static int deliver_copy(struct tp *tp, struct sp_msg *m, const char *target, const char *topic,
			const char *filter, bool group, const char *how)
{
	const struct sp_host *h = tp->host;
	struct sp_msg *c;
	int rc;

	if (!host_has(tp, SP_HOST_HAS(h, deliver), "deliver"))
		return -1;
	c = h->msg_rewrite(m, topic, NULL, 0, false);
	if (!c)
		rc = -1;
	else if (group)
		rc = h->deliver(tp->self, c, NULL, target, filter);
	else
		rc = h->deliver(tp->self, c, target, NULL, NULL);
	tp->counters[rc > 0 ? C_DELIVERED : rc == 0 ? C_DELIVERNONE : C_DELIVERERR]++;
	h->log(tp->self, SP_LOG_INFO, "tp: deliver (%s) to %s=%s topic=%s filter=%s: %d", how,
	       group ? "group" : "client", target, topic, group ? filter : "-", rc);
	publish_note(tp, "delivered", "rc=%d to=%s topic=%s", rc, target, topic);
	if (c)
		h->msg_unref(c);
	return rc;
}

static void deliver_timer(void *arg)
{
	struct pending *p = arg;
	struct tp *tp = p->tp;
	const char *target = p->rest, *topic = target + strlen(target) + 1;
	const char *filter = topic + strlen(topic) + 1;

	pending_unlink(p);
	deliver_copy(tp, p->msg, target, topic, filter, p->group, "timer");
	tp->host->msg_unref(p->msg);
	tp->host->free(p);
}

/* The same from a timer: keeps m and "target\0topic\0filter" until it fires. */
static int deliver_later(struct tp *tp, struct sp_msg *m, const char *target, size_t tl,
			 const char *topic, const char *filter, bool group)
{
	const struct sp_host *h = tp->host;
	size_t rl = strlen(topic), fl = strlen(filter);
	struct pending *p = h->alloc(sizeof(*p) + tl + rl + fl + 3);

	if (!p)
		return -1;
	memset(p, 0, sizeof(*p));
	p->tp = tp;
	p->group = group;
	memcpy(p->rest, target, tl);
	p->rest[tl] = '\0';
	memcpy(p->rest + tl + 1, topic, rl + 1);
	memcpy(p->rest + tl + 1 + rl + 1, filter, fl + 1);
	p->msg = h->msg_ref(m);
	p->timer = h->timer_add(tp->self, DELIVER_TIMER_MS, deliver_timer, p);
	if (!p->timer) {
		h->msg_unref(p->msg);
		h->free(p);
		return -1;
	}
	pending_link(tp, p);
	return 0;
}

/* P/deliver/C/REST, P/gdeliver/G/REST and their -timer forms: TAKE and deliver. */
static int deliver_publish(struct tp *tp, const struct sp_event *ev, const char *arg, bool group,
			   bool later, struct sp_result *res)
{
	const char *slash = strchr(arg, '/'), *topic;
	char target[128], filter[256];
	size_t tl;

	if (!slash || slash == arg || !slash[1] || (size_t)(slash - arg) >= sizeof(target))
		return 0; /* not a deliver topic after all: PASS */
	tl = (size_t)(slash - arg);
	memcpy(target, arg, tl);
	target[tl] = '\0';
	topic = slash + 1;
	if (!group || !user_prop(tp, ev->msg, "filter", filter, sizeof(filter)))
		snprintf(filter, sizeof(filter), "%s", topic);
	res->verdict = SP_TAKE;
	if (later)
		return deliver_later(tp, ev->msg, target, tl, topic, filter, group);
	deliver_copy(tp, ev->msg, target, topic, filter, group, "publish");
	return 0;
}

/* P/match/...: topic_match of each "filter" user property against "topic" (or the topic). */
static void match_publish(struct tp *tp, const struct sp_msg *m)
{
	const struct sp_host *h = tp->host;
	char topic[256], text[256];
	size_t pos = 0, kl, vl, n = 0;
	const char *k, *v;

	if (!host_has(tp, SP_HOST_HAS(h, topic_match), "topic_match"))
		return;
	if (!user_prop(tp, m, "topic", topic, sizeof(topic)))
		snprintf(topic, sizeof(topic), "%s", h->msg_topic(m));
	text[0] = '\0';
	while (n + 3 < sizeof(text) && h->msg_user_prop(m, &pos, &k, &kl, &v, &vl) == 1) {
		char filter[256];
		bool yes;

		if (kl != 6 || memcmp(k, "filter", 6))
			continue;
		snprintf(filter, sizeof(filter), "%.*s", (int)vl, v);
		yes = h->topic_match(filter, topic);
		tp->counters[C_MATCH]++;
		h->log(tp->self, SP_LOG_INFO, "tp: topic_match('%s', '%s') = %d", filter, topic,
		       yes ? 1 : 0);
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%c", n ? " " : "",
				      yes ? '1' : '0');
	}
	publish_note(tp, "match", "%s", text);
}

static void commit_fired(void *arg, int status)
{
	struct tp *tp = arg;
	bool inside = tp->in_commit_call;

	tp->counters[C_COMMITTED]++;
	if (inside)
		tp->counters[C_COMMITINSIDE]++;
	tp->commits++;
	tp->host->log(tp->self, SP_LOG_INFO,
		      "tp: after_commit fired: status=%d inside=%d seq=%" PRIu64, status,
		      inside ? 1 : 0, tp->commits);
	publish_note(tp, "committed", "status=%d inside=%d seq=%" PRIu64, status, inside ? 1 : 0,
		     tp->commits);
}

/* P/commit/...: a write, then after_commit; fn must not run inside the call. */
static void commit_publish(struct tp *tp)
{
	const struct sp_host *h = tp->host;
	char text[32];
	int rc;

	if (!host_has(tp, SP_HOST_HAS(h, after_commit), "after_commit"))
		return;
	snprintf(text, sizeof(text), "%" PRIu64, tp->counters[C_COMMIT] + 1);
	kv_put_str(tp, "commit/last", text, strlen(text));
	tp->counters[C_COMMIT]++;
	tp->in_commit_call = true;
	rc = h->after_commit(tp->self, commit_fired, tp);
	tp->in_commit_call = false;
	if (rc)
		tp->counters[C_COMMITERR]++;
	h->log(tp->self, SP_LOG_INFO, "tp: after_commit asked: %d", rc);
}

/* P/routecount/...: route from inside DELIVER, and say what route() returned. */
static void routecount_deliver(struct tp *tp, const struct sp_event *ev)
{
	const struct sp_host *h = tp->host;
	const char *client = ev->client_id ? ev->client_id : "-";
	char topic[128];
	struct sp_msg_spec spec;
	struct sp_msg *m;
	int n;

	snprintf(topic, sizeof(topic), "$%s/rcount", tp->prefix);
	memset(&spec, 0, sizeof(spec));
	spec.topic = topic;
	spec.topic_len = strlen(topic);
	spec.payload = client;
	spec.payload_len = strlen(client);
	spec.qos = h->msg_qos(ev->msg);
	m = h->msg_new(&spec);
	n = m ? h->route(tp->self, m) : -1;
	if (m)
		h->msg_unref(m);
	tp->counters[C_ROUTECOUNT]++;
	h->log(tp->self, SP_LOG_INFO, "tp: routecount from DELIVER to %s: route returned %d",
	       client, n);
	publish_note(tp, "rcresult", "n=%d client=%s", n, client);
}

/* ---- event callbacks ----------------------------------------------------- */

static void log_event(struct tp *tp, const struct sp_event *ev)
{
	tp->host->log(tp->self, SP_LOG_INFO, "tp: %s client=%s proto=%u topic=%s filter=%s qos=%u",
		      event_names[ev->type], ev->client_id ? ev->client_id : "-", ev->protocol,
		      ev->msg ? tp->host->msg_topic(ev->msg) : "-", ev->filter ? ev->filter : "-",
		      ev->qos);
}

static int kv_selftest(struct tp *tp);

static int on_start(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;
	void *val = NULL;
	size_t vlen = 0;
	char text[32];
	unsigned long starts = 0;

	(void)res;
	log_event(tp, ev);
	tp->counters[C_START]++;
	if (tp->host->kv_get(tp->self, "starts", 6, &val, &vlen) == 0) {
		snprintf(text, sizeof(text), "%.*s", (int)(vlen < 31 ? vlen : 31), (char *)val);
		starts = strtoul(text, NULL, 10);
		tp->host->free(val);
	}
	snprintf(text, sizeof(text), "%lu", starts + 1);
	kv_put_str(tp, "starts", text, strlen(text));
	tp->counters[C_STARTS] = starts + 1;
	kv_selftest(tp);
	return 0;
}

static int on_stop(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;

	(void)res;
	log_event(tp, ev);
	tp->counters[C_STOP]++;
	/* Nothing may run after STOP: cancel our timers and drop our references. */
	while (tp->pending) {
		struct pending *p = tp->pending;

		pending_unlink(p);
		tp->host->timer_cancel(p->timer);
		if (p->msg)
			tp->host->msg_unref(p->msg);
		tp->host->free(p);
	}
	tp->host->log(tp->self, SP_LOG_INFO, "tp: stopped: %s",
		      "timers cancelled, references dropped");
	return 0;
}

static int on_connect(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;

	(void)res;
	log_event(tp, ev);
	tp->host->log(tp->self, SP_LOG_INFO, "tp: CONNECT client=%s user=%s proto=%u",
		      ev->client_id ? ev->client_id : "-", ev->username ? ev->username : "-",
		      ev->protocol);
	tp->counters[C_CONNECT]++;
	return 0;
}

static int on_disconnect(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;

	(void)res;
	log_event(tp, ev);
	tp->counters[C_DISCONNECT]++;
	tp->counters[ev->graceful ? C_GRACEFUL : C_ABRUPT]++;
	return 0;
}

/* The filter without a "$share/GROUP/" in front. */
static const char *bare_filter(const char *f)
{
	const char *s;

	if (strncmp(f, "$share/", 7))
		return f;
	s = strchr(f + 7, '/');
	return s ? s + 1 : f;
}

static int on_subscribe(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;
	const char *f = ev->filter ? bare_filter(ev->filter) : NULL;
	const char *rest = under(tp, f, "forbidden");

	log_event(tp, ev);
	tp->counters[C_SUBSCRIBE]++;
	if (rest && !strcmp(rest, "#")) {
		tp->counters[C_SUBREJECT]++;
		res->verdict = SP_REJECT;
		res->reason = 0x87; /* Not authorized */
		res->reason_string = "tp: forbidden filter";
	}
	return 0;
}

static int on_unsubscribe(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;

	(void)res;
	log_event(tp, ev);
	tp->counters[C_UNSUBSCRIBE]++;
	return 0;
}

/* The PUBLISH topics of API 2 calls (see the top of the file). */
static int on_publish_api2(struct tp *tp, const struct sp_event *ev, const char *topic,
			   struct sp_result *res)
{
	const char *arg;

	if ((arg = under(tp, topic, "deliver")))
		return deliver_publish(tp, ev, arg, false, false, res);
	if ((arg = under(tp, topic, "gdeliver")))
		return deliver_publish(tp, ev, arg, true, false, res);
	if ((arg = under(tp, topic, "deliver-timer")))
		return deliver_publish(tp, ev, arg, false, true, res);
	if ((arg = under(tp, topic, "gdeliver-timer")))
		return deliver_publish(tp, ev, arg, true, true, res);
	if (under(tp, topic, "match"))
		match_publish(tp, ev->msg);
	else if (under(tp, topic, "commit"))
		commit_publish(tp);
	else if (under(tp, topic, "whoami"))
		publish_note(tp, "whoami", "client=%s user=%s proto=%u",
			     ev->client_id ? ev->client_id : "-", ev->username ? ev->username : "-",
			     ev->protocol);
	return 0;
}

static int on_publish(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;
	const char *topic = tp->host->msg_topic(ev->msg), *arg;

	log_event(tp, ev);
	tp->host->log(tp->self, SP_LOG_INFO, "tp: PUBLISH client=%s user=%s topic=%s",
		      ev->client_id ? ev->client_id : "-", ev->username ? ev->username : "-",
		      topic);
	tp->counters[C_PUBLISH]++;
	if (under(tp, topic, "reject")) {
		tp->counters[C_REJECT]++;
		res->verdict = SP_REJECT;
		res->reason = 0x99; /* Payload format invalid */
		res->reason_string = "tp says no";
	} else if ((arg = under(tp, topic, "take"))) {
		return take_publish(tp, ev, arg, res);
	} else if ((arg = under(tp, topic, "stats"))) {
		if (!strcmp(arg, "sync"))
			publish_stats(tp, NULL);
		else if (!strcmp(arg, "get") && !tp->host->timer_add(tp->self, 0, stats_timer, tp))
			return -1;
	} else if ((arg = under(tp, topic, "kv")) && !strcmp(arg, "scan")) {
		publish_kv_scan(tp);
	} else if (under(tp, topic, "info")) {
		publish_info(tp, ev->msg);
	} else {
		return on_publish_api2(tp, ev, topic, res);
	}
	return 0;
}

static void hold_timer(void *arg)
{
	struct pending *p = arg;
	struct tp *tp = p->tp;
	int rc;

	pending_unlink(p);
	if (p->discard)
		rc = tp->host->discard(tp->self, p->id);
	else
		rc = tp->host->release(tp->self, p->id);
	tp->counters[p->discard ? C_DISCARD : p->group ? C_CRELEASE : C_RELEASE]++;
	if (rc)
		tp->counters[C_HOLDERR]++;
	tp->host->log(tp->self, SP_LOG_INFO, "tp: %s %shold %" PRIu64 ": %d",
		      p->discard ? "discarded" : "released", p->group ? "group " : "", p->id, rc);
	tp->host->free(p);
}

static bool was_released(struct tp *tp, uint64_t msg_id, const char *client)
{
	for (size_t i = 0; i < tp->n_released && i < RELEASED_MAX; i++)
		if (tp->released[i].msg_id == msg_id && !strcmp(tp->released[i].client, client))
			return true;
	return false;
}

/*
 * A HOLD of the delivery of ev's message to client (DELIVER), or of the
 * group's copy (CHOOSE, client "$share/GROUP"), released or discarded after
 * ms; asked again for the same message after that, it passes.
 */
static int hold_for(struct tp *tp, const struct sp_event *ev, const char *client, bool group,
		    bool discard, uint64_t ms, struct sp_result *res)
{
	uint64_t mid = tp->host->msg_id(ev->msg);
	struct pending *p;
	struct released *r;

	if (was_released(tp, mid, client)) {
		/* asked again after release: let it go */
		tp->counters[group ? C_CREOFFER : C_REHOLD]++;
		return 0;
	}
	p = tp->host->alloc(sizeof(*p) + 1);
	if (!p)
		return -1;
	memset(p, 0, sizeof(*p) + 1);
	p->tp = tp;
	p->id = ++tp->next_hold;
	p->discard = discard;
	p->group = group;
	p->timer = tp->host->timer_add(tp->self, ms, hold_timer, p);
	if (!p->timer) {
		tp->host->free(p);
		return -1;
	}
	pending_link(tp, p);
	r = &tp->released[tp->n_released++ % RELEASED_MAX];
	r->msg_id = mid;
	snprintf(r->client, sizeof(r->client), "%s", client);
	tp->counters[group ? C_CHOLD : C_HOLD]++;
	res->verdict = SP_HOLD;
	res->hold_id = p->id;
	tp->host->log(tp->self, SP_LOG_INFO, "tp: holding message %" PRIu64 " for %s as %" PRIu64,
		      mid, client, p->id);
	return 0;
}

static int hold_deliver(struct tp *tp, const struct sp_event *ev, bool discard, uint64_t ms,
			struct sp_result *res)
{
	return hold_for(tp, ev, ev->client_id ? ev->client_id : "", false, discard, ms, res);
}

static int on_deliver(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;
	const char *topic = tp->host->msg_topic(ev->msg);

	log_event(tp, ev);
	tp->counters[C_DELIVER]++;
	if (under(tp, topic, "skip") && ev->client_id && !strncmp(ev->client_id, "skip", 4)) {
		tp->counters[C_SKIP]++;
		res->verdict = SP_SKIP;
	} else if (under(tp, topic, "hold")) {
		return hold_deliver(tp, ev, false, HOLD_MS, res);
	} else if (under(tp, topic, "holdlong")) {
		return hold_deliver(tp, ev, false, HOLD_LONG_MS, res);
	} else if (under(tp, topic, "discard")) {
		return hold_deliver(tp, ev, true, HOLD_MS, res);
	} else if (under(tp, topic, "droute")) {
		publish_stats(tp, NULL);
	} else if (under(tp, topic, "routecount")) {
		routecount_deliver(tp, ev);
	}
	return 0;
}

static int on_choose(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;
	size_t best = 0;

	tp->counters[C_CHOOSE]++;
	tp->host->log(tp->self, SP_LOG_INFO,
		      "tp: choose group=%s filter=%s members=%zu broker=%zu topic=%s",
		      ev->share_group ? ev->share_group : "-",
		      ev->share_filter ? ev->share_filter : "-", ev->n_members, res->member,
		      tp->host->msg_topic(ev->msg));
	if (ev->share_group && !strcmp(ev->share_group, "tps")) {
		tp->counters[C_CSKIP]++;
		res->verdict = SP_SKIP;
		return 0;
	}
	if (ev->share_group && !strcmp(ev->share_group, "tpr")) {
		tp->counters[C_CROUTE]++;
		publish_note(tp, "cnote", "group=%s topic=%s", ev->share_group,
			     tp->host->msg_topic(ev->msg));
		return 0;
	}
	if (ev->share_group && !strcmp(ev->share_group, "tph")) {
		char key[80];

		snprintf(key, sizeof(key), "$share/%s", ev->share_group);
		return hold_for(tp, ev, key, true, false, HOLD_MS, res);
	}
	if (!ev->share_group || strcmp(ev->share_group, "tpg") || !ev->n_members)
		return 0;
	for (size_t i = 1; i < ev->n_members; i++)
		if (strcmp(ev->members[i].client_id, ev->members[best].client_id) < 0)
			best = i;
	res->member = best;
	return 0;
}

static int on_acked(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;

	(void)res;
	log_event(tp, ev);
	tp->host->log(tp->self, SP_LOG_INFO, "tp: ACKED client=%s topic=%s qos=%u reason=0x%02x",
		      ev->client_id ? ev->client_id : "-", tp->host->msg_topic(ev->msg), ev->qos,
		      ev->reason);
	tp->counters[C_ACKED]++;
	return 0;
}

static int on_nacked(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;

	(void)res;
	tp->host->log(tp->self, SP_LOG_INFO,
		      "tp: NACKED client=%s user=%s topic=%s qos=%u share=%s reason=0x%02x",
		      ev->client_id ? ev->client_id : "-", ev->username ? ev->username : "-",
		      ev->msg ? tp->host->msg_topic(ev->msg) : "-", ev->qos,
		      ev->share_group ? ev->share_group : "-", ev->reason);
	tp->counters[C_NACKED]++;
	return 0;
}

static int on_session_end(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;

	(void)res;
	tp->host->log(tp->self, SP_LOG_INFO, "tp: SESSION_END client=%s user=%s proto=%u",
		      ev->client_id ? ev->client_id : "-", ev->username ? ev->username : "-",
		      ev->protocol);
	tp->counters[C_SESSEND]++;
	return 0;
}

static int on_auth(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;
	const char *u = ev->username;

	tp->host->log(tp->self, SP_LOG_INFO,
		      "tp: AUTH client=%s user=%s password=%zu bytes address=%s",
		      ev->client_id ? ev->client_id : "-", u ? u : "-", ev->password_len,
		      ev->address ? ev->address : "-");
	if (u && !strcmp(u, "tp-allow")) {
		res->verdict = SP_ALLOW;
	} else if (u && !strcmp(u, "tp-deny")) {
		res->verdict = SP_REJECT;
		res->reason = 0x86;
	}
	return 0;
}

static int on_acl_check(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;

	tp->host->log(tp->self, SP_LOG_INFO,
		      "tp: ACL_CHECK client=%s user=%s topic=%s access=%d msg=%d",
		      ev->client_id ? ev->client_id : "-", ev->username ? ev->username : "-",
		      ev->topic, ev->access, ev->msg != NULL);
	if (under(tp, ev->topic, "aclallow"))
		res->verdict = SP_ALLOW;
	else if (under(tp, ev->topic, "acldeny"))
		res->verdict = SP_REJECT;
	return 0;
}

static int on_dropped(const struct sp_event *ev, struct sp_result *res, void *udata)
{
	struct tp *tp = udata;

	(void)res;
	tp->host->log(tp->self, SP_LOG_INFO, "tp: dropped client=%s hold=%" PRIu64 " why=%s",
		      ev->client_id ? ev->client_id : "-", ev->hold_id, ev->why ? ev->why : "-");
	tp->counters[C_DROPPED]++;
	if (ev->hold_id)
		tp->counters[C_DROPHELD]++;
	return 0;
}

/* ---- kv self-test at START ----------------------------------------------- */

struct scan_check {
	char seen[8][16];
	size_t n;
};

static int record_key(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct scan_check *sc = arg;

	(void)val;
	(void)vlen;
	if (sc->n < 8)
		snprintf(sc->seen[sc->n], sizeof(sc->seen[0]), "%.*s", (int)klen,
			 (const char *)key);
	sc->n++;
	return sc->n == 3; /* stop after three: the scan must honour it */
}

/* Counts a failed check of the self-test and says which one. */
static size_t kv_check(struct tp *tp, bool ok, const char *what)
{
	if (!ok)
		tp->host->log(tp->self, SP_LOG_ERR, "tp: kv self-test: %s", what);
	return !ok;
}

/*
 * Keys st/b, st/a, st/c, st/d, st, su/x and st/e (empty value): a scan of
 * "st/" must give st/a, st/b, st/c in that order and stop there when told;
 * after kv_del nothing of them is left.
 */
static int kv_selftest(struct tp *tp)
{
	static const char *const keys[] = { "st/b", "st/a", "st/c", "st/d", "st", "su/x" };
	const struct sp_host *h = tp->host;
	struct scan_check sc;
	void *val;
	size_t vlen, errs = 0;

	for (size_t i = 0; i < 6; i++)
		errs += kv_check(tp, !kv_put_str(tp, keys[i], keys[i], strlen(keys[i])), "put");
	errs += kv_check(tp, !kv_put_str(tp, "st/e", "", 0), "put of an empty value");
	memset(&sc, 0, sizeof(sc));
	h->kv_scan(tp->self, "st/", 3, record_key, &sc);
	errs += kv_check(tp, sc.n == 3 && !strcmp(sc.seen[0], "st/a") &&
			     !strcmp(sc.seen[1], "st/b") && !strcmp(sc.seen[2], "st/c"),
			 "scan of st/ not st/a st/b st/c, stopping there");
	val = NULL;
	errs += kv_check(tp, !h->kv_get(tp->self, "st/a", 4, &val, &vlen) && vlen == 4 &&
			     !memcmp(val, "st/a", 4), "get st/a");
	h->free(val);
	val = NULL;
	errs += kv_check(tp, !h->kv_get(tp->self, "st/e", 4, &val, &vlen) && vlen == 0,
			 "get of an empty value");
	h->free(val);
	val = NULL;
	errs += kv_check(tp, h->kv_get(tp->self, "st/zz", 5, &val, &vlen) == -1, "get of no key");
	h->free(val);
	for (size_t i = 0; i < 6; i++)
		errs += kv_check(tp, !h->kv_del(tp->self, keys[i], strlen(keys[i])), "del");
	errs += kv_check(tp, !h->kv_del(tp->self, "st/e", 4), "del of an empty value");
	errs += kv_check(tp, h->kv_del(tp->self, "st/a", 4) == -1, "del of a deleted key");
	memset(&sc, 0, sizeof(sc));
	h->kv_scan(tp->self, "st/", 3, record_key, &sc);
	h->kv_scan(tp->self, "su/", 3, record_key, &sc);
	errs += kv_check(tp, sc.n == 0, "keys left after del");
	errs += kv_check(tp, h->kv_get(tp->self, "st", 2, &val, &vlen) == -1, "st left after del");
	tp->counters[C_KVERR] += errs;
	h->log(tp->self, errs ? SP_LOG_ERR : SP_LOG_INFO, "tp: kv self-test: %zu error(s)", errs);
	return errs ? -1 : 0;
}

/* ---- entry points -------------------------------------------------------- */

static int probe_on(struct tp *tp)
{
	int refused = 0;

	refused += tp->host->on(tp->self, SP_EV__COUNT, on_start) != 0;
	refused += tp->host->on(tp->self, (enum sp_event_type)-1, on_start) != 0;
	return refused;
}

static int apply_opts(struct tp *tp, const struct sp_opt *opts, int n_opts, bool *fail,
		      bool *probe)
{
	for (int i = 0; i < n_opts; i++) {
		const char *k = opts[i].key, *v = opts[i].value;

		if (!strcmp(k, "prefix") && strlen(v) < sizeof(tp->prefix) && *v &&
		    !strpbrk(v, "/+#$")) {
			strcpy(tp->prefix, v);
		} else if (!strcmp(k, "fail") || !strcmp(k, "probe")) {
			*(k[0] == 'f' ? fail : probe) = !strcmp(v, "yes");
		} else {
			tp->host->log(tp->self, SP_LOG_ERR, "tp: bad option %s=%s", k, v);
			return -1;
		}
	}
	tp->plen = strlen(tp->prefix);
	return 0;
}

static const sp_callback callbacks[SP_EV__COUNT] = {
	[SP_EV_START] = on_start,	  [SP_EV_STOP] = on_stop,
	[SP_EV_CONNECT] = on_connect,	  [SP_EV_DISCONNECT] = on_disconnect,
	[SP_EV_SUBSCRIBE] = on_subscribe, [SP_EV_UNSUBSCRIBE] = on_unsubscribe,
	[SP_EV_PUBLISH] = on_publish,	  [SP_EV_DELIVER] = on_deliver,
	[SP_EV_CHOOSE] = on_choose,	  [SP_EV_ACKED] = on_acked,
	[SP_EV_DROPPED] = on_dropped,	  [SP_EV_NACKED] = on_nacked,
	[SP_EV_SESSION_END] = on_session_end,
	[SP_EV_AUTH] = on_auth,
	[SP_EV_ACL_CHECK] = on_acl_check,
};

int sluice_plugin_version(void)
{
	return SLUICE_PLUGIN_API;
}

int sluice_plugin_init(const struct sp_host *host, struct sp_plugin *self,
		       const struct sp_opt *opts, int n_opts, void **udata)
{
	struct tp *tp;
	bool fail = false, probe = false;

	if (host->api != SLUICE_PLUGIN_API || host->size < sizeof(struct sp_host)) {
		fprintf(stderr, "tp: host API %u size %u, expected %d size %zu\n", host->api,
			host->size, SLUICE_PLUGIN_API, sizeof(struct sp_host));
		return -1;
	}
	tp = host->alloc(sizeof(*tp));
	if (!tp)
		return -1;
	memset(tp, 0, sizeof(*tp));
	tp->host = host;
	tp->self = self;
	strcpy(tp->prefix, "tp");
	if (apply_opts(tp, opts, n_opts, &fail, &probe))
		goto fail;
	if (fail) {
		host->log(self, SP_LOG_ERR, "tp: refusing to start: plugin_opt_fail is yes");
		goto fail;
	}
	if (probe)
		tp->counters[C_PROBE] = probe_on(tp);
	*udata = tp; /* what every callback gets as udata */
	for (int ev = 0; ev < SP_EV__COUNT; ev++) {
		if (callbacks[ev] && host->on(self, ev, callbacks[ev])) {
			host->log(self, SP_LOG_ERR, "tp: on(%s) failed", event_names[ev]);
			if (ev >= SP_EV_NACKED)
				continue; /* an API 1 broker: the API 2 paths stay silent */
			goto fail;
		}
	}
	host->log(self, SP_LOG_INFO, "tp: init prefix=%s options=%d", tp->prefix, n_opts);
	return 0;
fail:
	*udata = NULL;
	host->free(tp);
	return -1;
}

void sluice_plugin_cleanup(void *udata)
{
	struct tp *tp = udata;

	/* host->log may be gone by now: say it on stderr, which the tests read. */
	fprintf(stderr, "tp: cleanup stop=%" PRIu64 " pending=%s\n", tp->counters[C_STOP],
		tp->pending ? "some" : "none");
	tp->host->free(tp);
}
