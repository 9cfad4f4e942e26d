/*
 * config_bridge.c - mosquitto's bridge configuration: "connection NAME"
 * starts a block, and the bridge directives after it (address, topic,
 * remote_clientid, ...) apply to the latest block, as in mosquitto. Other
 * directives may appear between them and keep their global meaning.
 *
 * Like config.c it is one table: a row names a directive, how many values
 * it takes and the setter that applies them to the current struct
 * bridge_conf. Directives that mosquitto has and sluice does not implement
 * yet (TLS to the remote, packet size and receive maximum limits, lazy and
 * once start types, local credentials, ...) have a row too, whose setter
 * refuses the line with "not supported yet": a mosquitto configuration
 * never loses a setting silently.
 *
 * A block is checked as a whole after the last line (config_bridge_check):
 * it needs an address and a topic, and the two client ids must differ; the
 * error names the connection line. Values are checked as they are read.
 *
 * Runs at start-up on the main thread only. Strings are mem_strdup() copies
 * owned by the config and released by config_bridge_free().
 */
#include "config_bridge.h"
#include "mem.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ADDRS 8 /* addresses on one address line (the parser splits at most 9 values) */

struct bparse {
	struct config *c;
	const char *where;
	char *err;
	size_t errlen;
	const char *name; /* the directive */
};

struct brow;
typedef int (*bset_fn)(struct bparse *p, const struct brow *r, struct bridge_conf *b, char **v,
		       int n);

struct brow {
	const char *name;
	bset_fn set;
	int min_args, max_args;
	size_t off; /* into struct bridge_conf, for the generic setters */
};

int config_bridge_verr(char *err, size_t errlen, const char *prefix, const char *fmt, va_list ap)
{
	int n;

	if (!err || !errlen)
		return -1;
	n = snprintf(err, errlen, "%s: ", prefix);
	if (n >= 0 && (size_t)n < errlen)
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	return -1;
}

/* "WHERE: name: message" into the error buffer; returns -1. */
__attribute__((format(printf, 2, 3))) static int bfail(struct bparse *p, const char *fmt, ...)
{
	char prefix[320];
	va_list ap;

	snprintf(prefix, sizeof(prefix), "%s: %s", p->where, p->name);
	va_start(ap, fmt);
	config_bridge_verr(p->err, p->errlen, prefix, fmt, ap);
	va_end(ap);
	return -1;
}

/* mosquitto writes an empty value as "" (a topic line's placeholders). */
static const char *unquote(const char *v)
{
	return strcmp(v, "\"\"") == 0 ? "" : v;
}

static int take_copy(struct bparse *p, char **slot, const char *v)
{
	char *copy = mem_strdup(v);

	if (!copy)
		return bfail(p, "out of memory");
	mem_free(*slot);
	*slot = copy;
	return 0;
}

static bool valid_utf8ish(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* A topic name: no wildcards (a prefix, a notification topic). */
static bool valid_name(const char *s)
{
	return valid_utf8ish(s) && !strpbrk(s, "+#");
}

/* A filter: '+' and '#' only as whole levels, '#' only last [MQTT-4.7.1-1, 4.7.1-2]. */
static bool valid_filter(const char *s)
{
	const char *lvl = s;

	if (!*s || !valid_utf8ish(s))
		return false;
	for (const char *q = s;; q++) {
		if (*q != '/' && *q)
			continue;
		size_t len = (size_t)(q - lvl);
		if ((memchr(lvl, '+', len) || memchr(lvl, '#', len)) && len != 1)
			return false;
		if (len == 1 && *lvl == '#' && *q)
			return false;
		if (!*q)
			return true;
		lvl = q + 1;
	}
}

static int set_string(struct bparse *p, const struct brow *r, struct bridge_conf *b, char **v,
		      int n)
{
	if (!*v[0] || strlen(v[0]) > 65535)
		return bfail(p, "must be 1..65535 bytes long");
	return take_copy(p, (char **)((char *)b + r->off), v[0]);
}

static int set_bool(struct bparse *p, const struct brow *r, struct bridge_conf *b, char **v, int n)
{
	bool *field = (bool *)((char *)b + r->off);

	if (strcmp(v[0], "true") == 0)
		*field = true;
	else if (strcmp(v[0], "false") == 0)
		*field = false;
	else
		return bfail(p, "expected true or false, got '%s'", v[0]);
	return 0;
}

/* A whole number in lo..hi; -1 after bfail(). */
static long number(struct bparse *p, const char *v, long lo, long hi)
{
	char *end;
	long x;

	errno = 0;
	x = strtol(v, &end, 10);
	if (end == v || *end || *v == '-' || *v == '+')
		return bfail(p, "expected a number, got '%s'", v);
	if (errno || x < lo || x > hi)
		return bfail(p, "must be %ld..%ld, got '%s'", lo, hi, v);
	return x;
}

static int set_notification_topic(struct bparse *p, const struct brow *r, struct bridge_conf *b,
				  char **v, int n)
{
	if (!*v[0] || !valid_name(v[0]))
		return bfail(p, "'%s' is not a topic name (no wildcards)", v[0]);
	return take_copy(p, &b->notification_topic, v[0]);
}

static int set_version(struct bparse *p, const struct brow *r, struct bridge_conf *b, char **v,
		       int n)
{
	if (strcmp(v[0], "mqttv311") == 0)
		b->protocol_version = 4;
	else if (strcmp(v[0], "mqttv50") == 0)
		b->protocol_version = 5;
	else if (strcmp(v[0], "mqttv31") == 0)
		return bfail(p, "mqttv31 is not supported yet; use mqttv311 or mqttv50");
	else
		return bfail(p, "expected mqttv311 or mqttv50, got '%s'", v[0]);
	return 0;
}

static int set_keepalive(struct bparse *p, const struct brow *r, struct bridge_conf *b, char **v,
			 int n)
{
	long k = number(p, v[0], 5, 65535); /* mosquitto's minimum is 5 */

	if (k < 0)
		return -1;
	b->keepalive = (uint16_t)k;
	return 0;
}

/* "restart_timeout SECONDS" (constant) or "restart_timeout BASE CAP" (back-off with jitter). */
static int set_restart(struct bparse *p, const struct brow *r, struct bridge_conf *b, char **v,
		       int n)
{
	long base = number(p, v[0], 1, 86400), cap = 0;

	if (base < 0)
		return -1;
	if (n > 1 && (cap = number(p, v[1], 1, 86400)) < 0)
		return -1;
	if (n > 1 && cap < base)
		return bfail(p, "the cap %ld is below the base %ld", cap, base);
	b->restart_base = (uint32_t)base;
	b->restart_cap = (uint32_t)cap;
	return 0;
}

static int set_start_type(struct bparse *p, const struct brow *r, struct bridge_conf *b, char **v,
			  int n)
{
	if (strcmp(v[0], "automatic") == 0)
		b->start_type = BRIDGE_START_AUTOMATIC;
	else if (strcmp(v[0], "lazy") == 0 || strcmp(v[0], "once") == 0)
		return bfail(p, "'%s' is not supported yet (only automatic)", v[0]);
	else
		return bfail(p, "expected automatic, lazy or once, got '%s'", v[0]);
	return 0;
}

static int parse_addr(struct bparse *p, const char *v, struct bridge_addr *a)
{
	const char *colon = strrchr(v, ':');
	size_t hlen = colon ? (size_t)(colon - v) : strlen(v);
	long port = 1883;

	if (colon && strchr(v, ':') != colon)
		return bfail(p, "'%s': IPv6 addresses are not supported yet", v);
	if (!hlen)
		return bfail(p, "'%s' has no host", v);
	if (colon && (port = number(p, colon + 1, 1, 65535)) < 0)
		return -1;
	a->host = mem_strndup(v, hlen);
	a->port = (int)port;
	return a->host ? 0 : bfail(p, "out of memory");
}

static void free_addrs(struct bridge_conf *b)
{
	for (size_t i = 0; i < b->n_addrs; i++)
		mem_free(b->addrs[i].host);
	mem_free(b->addrs);
	b->addrs = NULL;
	b->n_addrs = 0;
}

/* address HOST[:PORT] [HOST[:PORT] ...]: a later address line replaces an earlier one. */
static int set_address(struct bparse *p, const struct brow *r, struct bridge_conf *b, char **v,
		       int n)
{
	struct bridge_addr *a;

	if (n > MAX_ADDRS)
		return bfail(p, "at most %d addresses", MAX_ADDRS);
	a = mem_calloc((size_t)n, sizeof(*a));
	if (!a)
		return bfail(p, "out of memory");
	free_addrs(b);
	b->addrs = a;
	for (int i = 0; i < n; i++) {
		if (parse_addr(p, v[i], &a[i]))
			return -1;
		b->n_addrs++;
	}
	return 0;
}

static int topic_dir(struct bparse *p, const char *v, uint8_t *dir)
{
	if (strcmp(v, "out") == 0)
		*dir = BRIDGE_OUT;
	else if (strcmp(v, "in") == 0)
		*dir = BRIDGE_IN;
	else if (strcmp(v, "both") == 0)
		*dir = BRIDGE_BOTH;
	else
		return bfail(p, "expected out, in or both, got '%s'", v);
	return 0;
}

/* Checks a topic line's values (v[0] pattern, then direction, QoS, prefixes) into t. */
static int topic_values(struct bparse *p, char **v, int n, struct bridge_topic *t, const char **lp,
			const char **rp)
{
	long qos = 0;

	t->dir = BRIDGE_OUT;
	if (n > 1 && topic_dir(p, v[1], &t->dir))
		return -1;
	if (n > 2 && (qos = number(p, v[2], 0, 2)) < 0)
		return -1;
	t->qos = (uint8_t)qos;
	*lp = n > 3 ? unquote(v[3]) : "";
	*rp = n > 4 ? unquote(v[4]) : "";
	if (!valid_name(*lp) || !valid_name(*rp))
		return bfail(p, "a prefix may not contain + or #");
	if (!*unquote(v[0]) && !**lp && !**rp)
		return bfail(p, "an empty pattern needs a local or a remote prefix");
	if (*unquote(v[0]) && !valid_filter(v[0]))
		return bfail(p, "'%s' is not a valid topic filter", v[0]);
	return 0;
}

/* topic PATTERN [out|in|both] [QOS] [LOCAL_PREFIX] [REMOTE_PREFIX], mosquitto's meaning. */
static int set_topic(struct bparse *p, const struct brow *r, struct bridge_conf *b, char **v, int n)
{
	struct bridge_topic t = { 0 }, *ts;
	const char *lp, *rp;

	if (topic_values(p, v, n, &t, &lp, &rp))
		return -1;
	ts = mem_realloc(b->topics, (b->n_topics + 1) * sizeof(*ts));
	if (!ts)
		return bfail(p, "out of memory");
	b->topics = ts;
	t.pattern = mem_strdup(unquote(v[0]));
	t.local_prefix = mem_strdup(lp);
	t.remote_prefix = mem_strdup(rp);
	ts[b->n_topics++] = t; /* freed with the block even when a copy failed */
	if (!t.pattern || !t.local_prefix || !t.remote_prefix)
		return bfail(p, "out of memory");
	return 0;
}

static int not_yet(struct bparse *p, const struct brow *r, struct bridge_conf *b, char **v, int n)
{
	return bfail(p, "not supported yet");
}

#define BSTR(f) \
	.set = set_string, .min_args = 1, .max_args = 1, .off = offsetof(struct bridge_conf, f)
#define BBOOL(f) \
	.set = set_bool, .min_args = 1, .max_args = 1, .off = offsetof(struct bridge_conf, f)
#define ONE(fn) .set = fn, .min_args = 1, .max_args = 1
#define NOT_YET(n)                                                      \
	{                                                               \
		.name = n, .set = not_yet, .min_args = 0, .max_args = 9 \
	}

static const struct brow rows[] = {
	{ .name = "address", .set = set_address, .min_args = 1, .max_args = 9 },
	{ .name = "addresses", .set = set_address, .min_args = 1, .max_args = 9 },
	{ .name = "topic", .set = set_topic, .min_args = 1, .max_args = 5 },
	{ .name = "remote_clientid", BSTR(remote_clientid) },
	{ .name = "clientid", BSTR(remote_clientid) }, /* mosquitto's older name */
	{ .name = "local_clientid", BSTR(local_clientid) },
	{ .name = "remote_username", BSTR(remote_username) },
	{ .name = "remote_password", BSTR(remote_password) },
	{ .name = "username", BSTR(remote_username) }, /* older names */
	{ .name = "password", BSTR(remote_password) },
	{ .name = "cleansession", BBOOL(cleansession) },
	{ .name = "notifications", BBOOL(notifications) },
	{ .name = "try_private", BBOOL(try_private) },
	{ .name = "notification_topic", ONE(set_notification_topic) },
	{ .name = "bridge_protocol_version", ONE(set_version) },
	{ .name = "keepalive_interval", ONE(set_keepalive) },
	{ .name = "restart_timeout", .set = set_restart, .min_args = 1, .max_args = 2 },
	{ .name = "start_type", ONE(set_start_type) },
	NOT_YET("bridge_cafile"),
	NOT_YET("bridge_capath"),
	NOT_YET("bridge_certfile"),
	NOT_YET("bridge_keyfile"),
	NOT_YET("bridge_insecure"),
	NOT_YET("bridge_tls_version"),
	NOT_YET("bridge_ciphers"),
	NOT_YET("bridge_alpn"),
	NOT_YET("bridge_identity"),
	NOT_YET("bridge_psk"),
	NOT_YET("bridge_require_ocsp"),
	NOT_YET("bridge_bind_address"),
	NOT_YET("bridge_max_packet_size"),
	NOT_YET("bridge_receive_maximum"),
	NOT_YET("bridge_session_expiry_interval"),
	NOT_YET("bridge_outgoing_retain"),
	NOT_YET("bridge_attempt_unsubscribe"),
	NOT_YET("local_username"),
	NOT_YET("local_password"),
	NOT_YET("local_cleansession"),
	NOT_YET("notifications_local_only"),
	NOT_YET("idle_timeout"),
	NOT_YET("threshold"),
	NOT_YET("round_robin"),
};

static const struct brow *find_row(const char *name)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (strcmp(rows[i].name, name) == 0)
			return &rows[i];
	return NULL;
}

static void free_block(struct bridge_conf *b)
{
	free_addrs(b);
	for (size_t i = 0; i < b->n_topics; i++) {
		mem_free(b->topics[i].pattern);
		mem_free(b->topics[i].local_prefix);
		mem_free(b->topics[i].remote_prefix);
	}
	mem_free(b->topics);
	mem_free(b->name);
	mem_free(b->where);
	mem_free(b->remote_clientid);
	mem_free(b->local_clientid);
	mem_free(b->remote_username);
	mem_free(b->remote_password);
	mem_free(b->notification_topic);
}

static void block_defaults(struct bridge_conf *b)
{
	memset(b, 0, sizeof(*b));
	b->notifications = true;
	b->try_private = true;
	b->protocol_version = 4;
	b->keepalive = 60;
	b->restart_base = 5; /* mosquitto's default: back-off from 5 s up to 30 s */
	b->restart_cap = 30;
	b->start_type = BRIDGE_START_AUTOMATIC;
}

/* connection NAME: a new block; names are unique (they name $SYS topics and log lines). */
static int set_connection(struct bparse *p, char **v)
{
	struct config *c = p->c;
	struct bridge_conf *bs, *b;

	if (!valid_name(v[0]) || strchr(v[0], '/'))
		return bfail(p, "'%s': a name may not contain /, + or #", v[0]);
	for (size_t i = 0; i < c->n_bridges; i++)
		if (strcmp(c->bridges[i].name, v[0]) == 0)
			return bfail(p, "'%s' is already defined at %s", v[0], c->bridges[i].where);
	bs = mem_realloc(c->bridges, (c->n_bridges + 1) * sizeof(*bs));
	if (!bs)
		return bfail(p, "out of memory");
	c->bridges = bs;
	b = &bs[c->n_bridges++];
	block_defaults(b);
	b->name = mem_strdup(v[0]);
	b->where = mem_strdup(p->where);
	if (!b->name || !b->where)
		return bfail(p, "out of memory");
	return 0;
}

int config_bridge_line(struct config *c, char **argv, int argc, const char *where, char *err,
		       size_t errlen)
{
	struct bparse p = { c, where, err, errlen, argv[0] };
	bool conn = strcmp(argv[0], "connection") == 0;
	const struct brow *r = conn ? NULL : find_row(argv[0]);
	int n = argc - 1;

	if (!conn && !r)
		return 1;
	if (n < (conn ? 1 : r->min_args))
		return bfail(&p, "missing value");
	if (n > (conn ? 1 : r->max_args))
		return bfail(&p, "unexpected '%s' after the value",
			     argv[(conn ? 1 : r->max_args) + 1]);
	if (conn)
		return set_connection(&p, argv + 1);
	if (!c->n_bridges)
		return bfail(&p, "no connection yet; put it after a connection line");
	return r->set(&p, r, &c->bridges[c->n_bridges - 1], argv + 1, n);
}

static int check_block(const struct bridge_conf *b, char *err, size_t errlen)
{
	const char *why = NULL;

	if (!b->n_addrs)
		why = "has no address line";
	else if (!b->n_topics)
		why = "has no topic line";
	else if (b->remote_password && !b->remote_username)
		why = "has remote_password without remote_username";
	else if (b->local_clientid && b->remote_clientid &&
		 strcmp(b->local_clientid, b->remote_clientid) == 0)
		why = "has the same local_clientid and remote_clientid";
	if (!why)
		return 0;
	snprintf(err, errlen, "%s: connection %s %s", b->where, b->name, why);
	return -1;
}

int config_bridge_check(const struct config *c, char *err, size_t errlen)
{
	for (size_t i = 0; i < c->n_bridges; i++)
		if (check_block(&c->bridges[i], err, errlen))
			return -1;
	return 0;
}

void config_bridge_free(struct config *c)
{
	for (size_t i = 0; i < c->n_bridges; i++)
		free_block(&c->bridges[i]);
	mem_free(c->bridges);
	c->bridges = NULL;
	c->n_bridges = 0;
}
