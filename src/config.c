/*
 * config.c - the configuration file: defaults, one table of directives, and
 * the line parser that applies them to a struct config.
 *
 * Every directive is one row of the table below: its name, the kind of value
 * it takes, where the value goes (an offset into struct config, or into the
 * current struct listener_conf for listener-scoped rows) and its limits. The
 * parser splits a line into words, finds the row, converts the one value the
 * row's kind describes and stores it. Only "listener", "log_dest" and
 * "log_type" need more than that and have setter functions. Adding a
 * directive is adding a row; there is no chain of string comparisons.
 *
 * A value is exactly one word, so paths and prefixes cannot contain blanks;
 * a second word is an error rather than silently ignored, as is a number with
 * junk after it ("10x"), a value out of range and a directive nobody knows.
 * A bad line stops start-up, so every message names the file and the line.
 *
 * Strings: config_defaults() never allocates. Its default strings point at
 * static arrays, which the setters and config_free() recognise and never
 * free; anything a directive sets is a mem_strdup() copy the config owns.
 * On an error the config holds whatever was applied before the bad line; the
 * caller still owns it and releases it with config_free().
 *
 * config_load() reads its lines with linefile_read() (linefile.c), bounded
 * as the password and ACL files are, so a runaway line is refused at the
 * limit instead of being read whole.
 */
#include "config.h"
#include "config_bridge.h"
#include "linefile.h"
#include "mem.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096 /* content, not counting the line ending */
#define MAX_WORDS 66 /* name + the most values any directive takes (http_api_users: 64) + one */

/* The largest MQTT packet: 1 byte fixed header, 4 length bytes, 268435455 of body. */
#define PACKET_SIZE_MAX 268435460

/* Default strings; never freed (see the essay). */
static char default_auto_id_prefix[] = "auto-";
static char default_persistence_file[] = "data/sluice.db";
static char dest_stderr[] = "stderr";
static char dest_stdout[] = "stdout";
static char dest_file[] = "file";

/* What one config_load() (or one config_parse_line()) is doing. */
struct parser {
	struct config *c;
	const char *file;
	int lineno;
	char *err;
	size_t errlen;
	bool log_type_seen; /* a later log_type may only raise the level */
};

enum kind {
	K_BOOL, /* true | false */
	K_NUM, /* integer, optionally with a unit suffix */
	K_STRING, /* one word, copied */
	K_ENUM, /* one of a list of words */
	K_CALL, /* a setter function does it all */
};

/* A suffix and what it multiplies by; the first row describes the format. */
struct unit {
	char suffix;
	int64_t factor;
};

struct unit_set {
	const char *what; /* for "expected WHAT, got 'x'" */
	struct unit units[8]; /* ends at suffix 0 */
};

struct word {
	const char *word;
	int value;
};

struct directive;
typedef int (*setter_fn)(struct parser *p, const struct directive *d, char **argv, int argc);

struct directive {
	const char *name;
	enum kind kind;
	bool listener; /* off is into the latest struct listener_conf */
	size_t off;
	size_t width; /* sizeof the field, for K_NUM and K_ENUM */
	int64_t min, max; /* K_NUM; for K_STRING the length */
	bool zero_ok; /* K_NUM: 0 allowed besides min..max */
	const char *range; /* K_NUM: how to describe min..max when it needs words */
	const struct unit_set *units; /* K_NUM: NULL = plain number */
	const struct word *words; /* K_ENUM: ends at word NULL */
	setter_fn set; /* K_CALL */
	int max_args; /* K_CALL: values it takes at most (at least 1) */
	bool prefix; /* name is a prefix: "plugin_opt_" matches plugin_opt_anything */
};

static const struct unit_set plain_number = { "a number", { { 0, 0 } } };

/* Sizes count in 1024s: "64k" is 65536 bytes. */
static const struct unit_set size_units = {
	"a size in bytes (e.g. 512, 64k, 16M, 1G)",
	{ { 'k', 1024 },
	  { 'K', 1024 },
	  { 'M', 1024 * 1024 },
	  { 'G', 1024 * 1024 * 1024 },
	  { 0, 0 } },
};

/* mosquitto's duration units; a month is 30 days and a year 365. */
static const struct unit_set duration_units = {
	"a duration (e.g. 3600, 90s, 2h, 14d, 1w, 1m, 1y)",
	{ { 's', 1 },
	  { 'h', 3600 },
	  { 'd', 86400 },
	  { 'w', 7 * 86400 },
	  { 'm', 30 * 86400 },
	  { 'y', 365 * 86400 },
	  { 0, 0 } },
};

static const struct word protocol_words[] = {
	{ "mqtt", LISTENER_MQTT },
	{ "websockets", LISTENER_WEBSOCKETS },
	{ "http", LISTENER_HTTP },
	{ NULL, 0 },
};

/* mosquitto's tls_version: the lowest version the listener accepts. */
static const struct word tls_words[] = {
	{ "tlsv1.1", 11 },
	{ "tlsv1.2", 12 },
	{ "tlsv1.3", 13 },
	{ NULL, 0 },
};

static const struct word domain_words[] = {
	{ "ipv4", 4 },
	{ "ipv6", 6 },
	{ NULL, 0 },
};

static const struct word qos_words[] = {
	{ "0", 0 },
	{ "1", 1 },
	{ "2", 2 },
	{ NULL, 0 },
};

static const struct word sync_words[] = {
	{ "normal", PERSIST_SYNC_NORMAL },
	{ "full", PERSIST_SYNC_FULL },
	{ NULL, 0 },
};

static const struct word level_words[] = {
	{ "error", LOG_ERR },
	{ "warning", LOG_WARNING },
	{ "notice", LOG_NOTICE },
	{ "information", LOG_INFO },
	{ "debug", LOG_DEBUG },
	{ "all", LOG_DEBUG },
	{ NULL, 0 },
};

static int set_listener(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_log_dest(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_log_type(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_plugin(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_plugin_opt(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_password_file(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_acl_file(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_allow_anonymous(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_per_listener(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_max_connections(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_api_users(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_tls_file(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_tls_str(struct parser *p, const struct directive *d, char **argv, int argc);
static int set_tls_bool(struct parser *p, const struct directive *d, char **argv, int argc);

#define CFG(field) \
	.off = offsetof(struct config, field), .width = sizeof(((struct config *)0)->field)
#define LST(field)                                                      \
	.listener = true, .off = offsetof(struct listener_conf, field), \
	.width = sizeof(((struct listener_conf *)0)->field)
#define NUM(field, lo, hi) .kind = K_NUM, CFG(field), .min = (lo), .max = (hi)

static const struct directive directives[] = {
	/* listeners */
	{ .name = "listener", .kind = K_CALL, .set = set_listener, .max_args = 2 },
	{ .name = "protocol", .kind = K_ENUM, LST(protocol), .words = protocol_words },
	{ .name = "bind_address", .kind = K_STRING, LST(bind_address), .min = 1, .max = 255 },
	{ .name = "socket_domain", .kind = K_ENUM, LST(socket_domain), .words = domain_words },
	{ .name = "http_dir", .kind = K_STRING, LST(http_dir), .min = 1, .max = PATH_MAX - 1 },
	{ .name = "certfile", .kind = K_CALL, LST(certfile), .set = set_tls_file, .max_args = 1 },
	{ .name = "keyfile", .kind = K_CALL, LST(keyfile), .set = set_tls_file, .max_args = 1 },
	{ .name = "cafile", .kind = K_CALL, LST(cafile), .set = set_tls_file, .max_args = 1 },
	{ .name = "capath", .kind = K_CALL, LST(capath), .set = set_tls_file, .max_args = 1 },
	{ .name = "crlfile", .kind = K_CALL, LST(crlfile), .set = set_tls_file, .max_args = 1 },
	{ .name = "ciphers", .kind = K_CALL, LST(ciphers), .set = set_tls_str, .max_args = 1 },
	{ .name = "ciphers_tls1.3",
	  .kind = K_CALL,
	  LST(ciphers_tls13),
	  .set = set_tls_str,
	  .max_args = 1 },
	{ .name = "require_certificate",
	  .kind = K_CALL,
	  LST(require_certificate),
	  .set = set_tls_bool,
	  .max_args = 1 },
	{ .name = "use_identity_as_username",
	  .kind = K_CALL,
	  LST(use_identity_as_username),
	  .set = set_tls_bool,
	  .max_args = 1 },
	{ .name = "tls_version", .kind = K_ENUM, LST(tls_version), .words = tls_words },

	/* sessions and queues */
	{ .name = "max_queued_messages", NUM(max_queued_messages, 0, UINT32_MAX) },
	{ .name = "max_queued_bytes", NUM(max_queued_bytes, 0, INT64_MAX), .units = &size_units },
	{ .name = "max_group_queued_messages", NUM(max_group_queued_messages, 0, INT64_MAX) },
	{ .name = "max_group_queued_bytes",
	  NUM(max_group_queued_bytes, 0, INT64_MAX),
	  .units = &size_units },
	{ .name = "max_inflight_messages",
	  NUM(max_inflight_messages, 1, 65535),
	  .range = "1..65535 (0 = unlimited is not supported)" },
	{ .name = "queue_qos0_messages", .kind = K_BOOL, CFG(queue_qos0_messages) },
	{ .name = "persistent_client_expiration",
	  NUM(persistent_client_expiration, 0, UINT32_MAX),
	  .units = &duration_units },

	/* protocol limits */
	{ .name = "max_packet_size",
	  NUM(max_packet_size, 20, PACKET_SIZE_MAX),
	  .zero_ok = true,
	  .range = "0 (protocol maximum) or 20..268435460",
	  .units = &size_units },
	{ .name = "max_keepalive", NUM(max_keepalive, 0, 65535) },
	{ .name = "max_topic_alias", NUM(max_topic_alias, 0, 65535) },
	{ .name = "max_qos", .kind = K_ENUM, CFG(max_qos), .words = qos_words },
	{ .name = "retain_available", .kind = K_BOOL, CFG(retain_available) },
	{ .name = "allow_zero_length_clientid", .kind = K_BOOL, CFG(allow_zero_length_clientid) },
	{ .name = "auto_id_prefix", .kind = K_STRING, CFG(auto_id_prefix), .min = 1, .max = 64 },
	{ .name = "connect_timeout", NUM(connect_timeout, 1, 3600) },
	{ .name = "max_connections",
	  .kind = K_CALL,
	  .set = set_max_connections,
	  .max_args = 1,
	  .width = sizeof(int),
	  .min = -1,
	  .max = INT_MAX,
	  .range = "-1 (unlimited) or 0..2147483647" },
	{ .name = "max_qos0_backlog",
	  NUM(max_qos0_backlog, 1024, 1024LL * 1024 * 1024),
	  .range = "1k..1G",
	  .units = &size_units },
	{ .name = "max_connections_per_address",
	  NUM(max_connections_per_address, -1, INT_MAX),
	  .range = "-1 (unlimited) or 0..2147483647" },
	{ .name = "memory_limit",
	  NUM(memory_limit, 1024 * 1024, INT64_MAX / 2),
	  .zero_ok = true,
	  .range = "0 (unlimited) or at least 1M",
	  .units = &size_units },

	/* persistence */
	{ .name = "persistence", .kind = K_BOOL, CFG(persistence) },
	{ .name = "persistence_file",
	  .kind = K_STRING,
	  CFG(persistence_file),
	  .min = 1,
	  .max = PATH_MAX - 1 },
	{ .name = "persistence_sync", .kind = K_ENUM, CFG(persistence_sync), .words = sync_words },
	{ .name = "persistence_max_bytes",
	  NUM(persistence_max_bytes, 65536, INT64_MAX),
	  .zero_ok = true,
	  .range = "0 (no cap) or at least 64k",
	  .units = &size_units },
	{ .name = "max_queued_in_memory", NUM(max_queued_in_memory, 16, 1000000) },

	/* plugins */
	{ .name = "plugin", .kind = K_CALL, .set = set_plugin, .max_args = 1 },
	{ .name = "allow_anonymous", .kind = K_CALL, .set = set_allow_anonymous, .max_args = 1 },
	{ .name = "http_api_users", .kind = K_CALL, .set = set_api_users, .max_args = 64 },
	{ .name = "per_listener_settings", .kind = K_CALL, .set = set_per_listener, .max_args = 1 },
	{ .name = "password_file", .kind = K_CALL, .set = set_password_file, .max_args = 1 },
	{ .name = "acl_file", .kind = K_CALL, .set = set_acl_file, .max_args = 1 },
	{ .name = "plugin_opt_",
	  .kind = K_CALL,
	  .set = set_plugin_opt,
	  .max_args = 1,
	  .prefix = true },
	{ .name = "plugin_dir", .kind = K_STRING, CFG(plugin_dir), .min = 1, .max = PATH_MAX - 1 },

	/* logging and $SYS */
	{ .name = "sys_interval", NUM(sys_interval, 0, 86400) },
	{ .name = "log_dest", .kind = K_CALL, .set = set_log_dest, .max_args = 2 },
	{ .name = "log_type", .kind = K_CALL, .set = set_log_type, .max_args = 1 },
};

void config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->max_queued_messages = 1000;
	c->max_queued_bytes = 0;
	c->max_group_queued_messages = CONFIG_UNSET;
	c->max_group_queued_bytes = CONFIG_UNSET;
	c->max_inflight_messages = 20;
	c->queue_qos0_messages = false;
	c->persistent_client_expiration = 0;
	c->max_packet_size = 0;
	c->max_keepalive = 65535;
	c->max_topic_alias = 10;
	c->max_qos = 2;
	c->retain_available = true;
	c->allow_zero_length_clientid = true;
	c->auto_id_prefix = default_auto_id_prefix;
	c->connect_timeout = 10;
	c->max_connections = -1;
	c->max_connections_per_address = -1;
	c->max_qos0_backlog = 8 * 1024 * 1024;
	c->memory_limit = 0;
	c->sys_interval = 10;
	c->persistence = true;
	c->persistence_file = default_persistence_file;
	c->persistence_sync = PERSIST_SYNC_NORMAL;
	c->persistence_max_bytes = 0;
	c->max_queued_in_memory = 1000;
	c->log_level = LOG_NOTICE;
	c->log_dest = dest_stderr;
	c->log_file = NULL;
}

static uint64_t times_ten(uint64_t v)
{
	return v > UINT64_MAX / 10 ? UINT64_MAX - 1 : v * 10;
}

uint64_t config_group_max_messages(const struct config *c)
{
	return c->max_group_queued_messages == CONFIG_UNSET ? times_ten(c->max_queued_messages)
							    : c->max_group_queued_messages;
}

uint64_t config_group_max_bytes(const struct config *c)
{
	return c->max_group_queued_bytes == CONFIG_UNSET ? times_ten(c->max_queued_bytes)
							 : c->max_group_queued_bytes;
}

static bool is_static(const char *s)
{
	return s == default_auto_id_prefix || s == default_persistence_file || s == dest_stderr ||
	       s == dest_stdout || s == dest_file;
}

static void free_string(char **s)
{
	if (*s && !is_static(*s))
		mem_free(*s);
	*s = NULL;
}

static void free_security(struct security_conf *sc)
{
	free_string(&sc->password_file);
	free_string(&sc->password_file_where);
	free_string(&sc->acl_file);
	free_string(&sc->acl_file_where);
}

static void free_conf_str(struct conf_str *cs)
{
	free_string(&cs->s);
	free_string(&cs->where);
}

void config_free(struct config *c)
{
	for (size_t i = 0; i < c->n_listeners; i++) {
		free_string(&c->listeners[i].bind_address);
		free_string(&c->listeners[i].http_dir);
		free_string(&c->listeners[i].where);
		free_string(&c->listeners[i].require_where);
		free_string(&c->listeners[i].identity_where);
		free_conf_str(&c->listeners[i].certfile);
		free_conf_str(&c->listeners[i].keyfile);
		free_conf_str(&c->listeners[i].cafile);
		free_conf_str(&c->listeners[i].capath);
		free_conf_str(&c->listeners[i].crlfile);
		free_conf_str(&c->listeners[i].ciphers);
		free_conf_str(&c->listeners[i].ciphers_tls13);
		free_security(&c->listeners[i].security);
	}
	mem_free(c->listeners);
	for (size_t i = 0; i < c->n_plugins; i++) {
		for (size_t j = 0; j < c->plugins[i].n_opts; j++) {
			mem_free(c->plugins[i].opts[j].key);
			mem_free(c->plugins[i].opts[j].value);
			mem_free(c->plugins[i].opts[j].where);
		}
		mem_free(c->plugins[i].opts);
		mem_free(c->plugins[i].name);
	}
	mem_free(c->plugins);
	free_string(&c->plugin_dir);
	free_security(&c->security);
	for (size_t i = 0; i < c->n_http_api_users; i++)
		mem_free(c->http_api_users[i]);
	mem_free(c->http_api_users);
	free_string(&c->persistence_file);
	free_string(&c->auto_id_prefix);
	free_string(&c->log_dest);
	free_string(&c->log_file);
	config_bridge_free(c);
	memset(c, 0, sizeof(*c));
}

struct listener_conf *config_add_listener(struct config *c, int port)
{
	struct listener_conf *ls, *l;

	ls = mem_realloc(c->listeners, (c->n_listeners + 1) * sizeof(*ls));
	if (!ls)
		return NULL;
	c->listeners = ls;
	l = &ls[c->n_listeners++];
	memset(l, 0, sizeof(*l));
	l->port = port;
	l->protocol = LISTENER_MQTT;
	l->socket_domain = 0;
	l->tls_version = 12;
	l->max_connections = -1;
	return l;
}

/* Writes "FILE:LINE: message" into the error buffer; returns -1. */
__attribute__((format(printf, 2, 3))) static int fail(struct parser *p, const char *fmt, ...)
{
	char prefix[PATH_MAX + 16];
	va_list ap;

	snprintf(prefix, sizeof(prefix), "%s:%d", p->file ? p->file : "-", p->lineno);
	va_start(ap, fmt);
	config_bridge_verr(p->err, p->errlen, prefix, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Converts a decimal integer with an optional leading '-' and at most one
 * unit suffix from us. Returns 0, -EINVAL (not such a number) or -ERANGE.
 */
static int parse_number(const char *s, const struct unit_set *us, int64_t *out)
{
	const struct unit *u;
	bool neg = (*s == '-');
	uint64_t v = 0;

	if (neg)
		s++;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > ((uint64_t)INT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (*s) {
		for (u = us->units; u->suffix && u->suffix != *s; u++)
			;
		if (!u->suffix || s[1])
			return -EINVAL;
		if (v > (uint64_t)INT64_MAX / (uint64_t)u->factor)
			return -ERANGE;
		v *= (uint64_t)u->factor;
	}
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

/* Stores v into an integer field of the given width (already range-checked). */
static void store_int(void *field, size_t width, int64_t v)
{
	uint8_t u8 = (uint8_t)v;
	uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;
	uint64_t u64 = (uint64_t)v;

	switch (width) {
	case 1:
		memcpy(field, &u8, 1);
		break;
	case 2:
		memcpy(field, &u16, 2);
		break;
	case 4:
		memcpy(field, &u32, 4);
		break;
	default:
		memcpy(field, &u64, 8);
		break;
	}
}

static int apply_bool(struct parser *p, const struct directive *d, void *field, const char *v)
{
	if (strcmp(v, "true") == 0)
		*(bool *)field = true;
	else if (strcmp(v, "false") == 0)
		*(bool *)field = false;
	else
		return fail(p, "%s: expected true or false, got '%s'", d->name, v);
	return 0;
}

static int apply_num(struct parser *p, const struct directive *d, void *field, const char *v)
{
	const struct unit_set *us = d->units ? d->units : &plain_number;
	int64_t n;
	int rc = parse_number(v, us, &n);

	if (rc == -EINVAL)
		return fail(p, "%s: expected %s, got '%s'", d->name, us->what, v);
	if (rc == 0 && (n == 0 && d->zero_ok))
		goto store;
	if (rc < 0 || n < d->min || n > d->max) {
		if (d->range)
			return fail(p, "%s: must be %s, got '%s'", d->name, d->range, v);
		return fail(p, "%s: must be %lld..%lld, got '%s'", d->name, (long long)d->min,
			    (long long)d->max, v);
	}
store:
	store_int(field, d->width, n);
	return 0;
}

static int apply_string(struct parser *p, const struct directive *d, void *field, const char *v)
{
	size_t len = strlen(v);
	char **slot = field;
	char *copy;

	if ((int64_t)len < d->min || (int64_t)len > d->max)
		return fail(p, "%s: must be %lld..%lld bytes long, got %zu", d->name,
			    (long long)d->min, (long long)d->max, len);
	copy = mem_strndup(v, len);
	if (!copy)
		return fail(p, "%s: out of memory", d->name);
	free_string(slot);
	*slot = copy;
	return 0;
}

/* "expected mqtt or websockets, got 'x'": the list is built from the table. */
static int enum_error(struct parser *p, const struct directive *d, const char *v)
{
	char list[256] = "";
	size_t n = 0;

	for (const struct word *w = d->words; w->word; w++) {
		const char *sep = "";

		if (w != d->words)
			sep = w[1].word ? ", " : " or ";
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", sep, w->word);
		if (n >= sizeof(list))
			break;
	}
	return fail(p, "%s: expected %s, got '%s'", d->name, list, v);
}

static const struct word *find_word(const struct word *words, const char *v)
{
	for (const struct word *w = words; w->word; w++)
		if (strcmp(w->word, v) == 0)
			return w;
	return NULL;
}

static int apply_enum(struct parser *p, const struct directive *d, void *field, const char *v)
{
	const struct word *w = find_word(d->words, v);

	if (!w)
		return enum_error(p, d, v);
	store_int(field, d->width, w->value);
	return 0;
}

/* A websockets listener may serve files; an MQTT one has nothing to serve them with. */
/* "FILE:LINE" of the line being read (allocated), as fail() begins its messages. */
static char *where_of(const struct parser *p)
{
	const char *f = p->file ? p->file : "-";
	size_t n = strlen(f) + 16;
	char *w = mem_alloc(n);

	if (w)
		snprintf(w, n, "%s:%d", f, p->lineno);
	return w;
}

static int check_listener(struct parser *p, const struct directive *d, struct listener_conf *l)
{
	if (l->http_dir && l->protocol == LISTENER_MQTT)
		return fail(p,
			    "%s: http_dir needs 'protocol websockets' or 'protocol http' on this"
			    " listener (port %d)",
			    d->name, l->port);
	return 0;
}

static int set_listener(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct listener_conf *l;
	int64_t port = 0;
	int rc = parse_number(argv[1], &plain_number, &port);

	if (rc == -EINVAL)
		return fail(p, "%s: expected a port number, got '%s'", d->name, argv[1]);
	if (rc < 0 || port < 1 || port > 65535)
		return fail(p, "%s: port must be 1..65535, got '%s'", d->name, argv[1]);
	l = config_add_listener(p->c, (int)port);
	if (!l)
		return fail(p, "%s: out of memory", d->name);
	if (argc > 2 && !(l->bind_address = mem_strdup(argv[2])))
		return fail(p, "%s: out of memory", d->name);
	if (!(l->where = where_of(p)))
		return fail(p, "%s: out of memory", d->name);
	return 0;
}

/* The listener a listener-scoped K_CALL row applies to, and its field; NULL after fail(). */
static struct conf_str *listener_str(struct parser *p, const struct directive *d)
{
	struct listener_conf *l;

	if (!p->c->n_listeners) {
		fail(p, "%s: no listener yet; put it after a listener line", d->name);
		return NULL;
	}
	l = &p->c->listeners[p->c->n_listeners - 1];
	return (struct conf_str *)((char *)l + d->off);
}

static int set_conf_str(struct parser *p, const struct directive *d, struct conf_str *cs,
			const char *v)
{
	free_conf_str(cs);
	cs->s = mem_strdup(v);
	cs->where = where_of(p);
	if (!cs->s || !cs->where)
		return fail(p, "%s: out of memory", d->name);
	return 0;
}

/* certfile, keyfile, cafile, crlfile (files) and capath (a directory): readable now. */
static int set_tls_file(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct conf_str *cs = listener_str(p, d);
	bool dir = !strcmp(d->name, "capath");
	struct stat st;

	if (!cs)
		return -1;
	if (access(argv[1], R_OK) || stat(argv[1], &st))
		return fail(p, "%s: cannot read '%s': %s", d->name, argv[1], strerror(errno));
	if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
		return fail(p, "%s: '%s' is not a %s", d->name, argv[1],
			    dir ? "directory" : "regular file");
	return set_conf_str(p, d, cs, argv[1]);
}

/* require_certificate, use_identity_as_username: a boolean and where it was set. */
static int set_tls_bool(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct listener_conf *l;
	char **where;

	if (!p->c->n_listeners)
		return fail(p, "%s: no listener yet; put it after a listener line", d->name);
	l = &p->c->listeners[p->c->n_listeners - 1];
	if (apply_bool(p, d, (char *)l + d->off, argv[1]))
		return -1;
	where = d->off == offsetof(struct listener_conf, require_certificate) ? &l->require_where
									      : &l->identity_where;
	free_string(where);
	if (!(*where = where_of(p)))
		return fail(p, "%s: out of memory", d->name);
	return 0;
}

static int set_tls_str(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct conf_str *cs = listener_str(p, d);

	return cs ? set_conf_str(p, d, cs, argv[1]) : -1;
}

static int set_log_dest(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct config *c = p->c;
	char *path;

	if (strcmp(argv[1], "file") == 0) {
		if (argc < 3)
			return fail(p, "%s: 'file' needs a path, as in 'log_dest file %s'", d->name,
				    "/var/log/sluice.log");
		if (!(path = mem_strdup(argv[2])))
			return fail(p, "%s: out of memory", d->name);
		free_string(&c->log_file);
		c->log_file = path;
		c->log_dest = dest_file;
		return 0;
	}
	if (strcmp(argv[1], "stderr") != 0 && strcmp(argv[1], "stdout") != 0)
		return fail(p, "%s: expected stderr, stdout or file PATH, got '%s'", d->name,
			    argv[1]);
	if (argc > 2)
		return fail(p, "%s: unexpected '%s' after '%s'", d->name, argv[2], argv[1]);
	c->log_dest = strcmp(argv[1], "stderr") == 0 ? dest_stderr : dest_stdout;
	free_string(&c->log_file);
	return 0;
}

/* The first log_type in a file sets the level; later ones may only make it more verbose. */
static int set_log_type(struct parser *p, const struct directive *d, char **argv, int argc)
{
	const struct word *w = find_word(level_words, argv[1]);

	if (!w)
		return fail(p,
			    "%s: expected error, warning, notice, information, debug or all, "
			    "got '%s'",
			    d->name, argv[1]);
	if (!p->log_type_seen || (enum log_level)w->value > p->c->log_level)
		p->c->log_level = (enum log_level)w->value;
	p->log_type_seen = true;
	return 0;
}

static const struct directive *find_directive(const char *name)
{
	for (size_t i = 0; i < sizeof(directives) / sizeof(directives[0]); i++) {
		const struct directive *d = &directives[i];
		size_t n = strlen(d->name);

		if (d->prefix ? strncmp(d->name, name, n) == 0 && name[n] : !strcmp(d->name, name))
			return d;
	}
	return NULL;
}

static int set_plugin(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct config *c = p->c;
	struct plugin_conf *a = mem_realloc(c->plugins, (c->n_plugins + 1) * sizeof(*a));

	if (!a)
		return fail(p, "%s: out of memory", d->name);
	c->plugins = a;
	memset(&a[c->n_plugins], 0, sizeof(*a));
	if (!(a[c->n_plugins].name = mem_strdup(argv[1])))
		return fail(p, "%s: out of memory", d->name);
	c->n_plugins++;
	return 0;
}

/*
 * The security settings a directive sets: the latest listener's with
 * per_listener_settings true (mosquitto), else the configuration's.
 */
static struct security_conf *security_of(struct parser *p)
{
	struct config *c = p->c;

	if (c->per_listener_settings && c->n_listeners)
		return &c->listeners[c->n_listeners - 1].security;
	return &c->security;
}

/* allow_anonymous true|false: also remembered as given (local only mode keeps it then). */
static int set_allow_anonymous(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct security_conf *sc = security_of(p);

	if (apply_bool(p, d, &sc->allow_anonymous, argv[1]))
		return -1;
	sc->allow_anonymous_set = true;
	return 0;
}

/* http_api_users NAME...: adds the names (the line may repeat). */
static int set_api_users(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct config *c = p->c;
	char **a = mem_realloc(c->http_api_users,
			       (c->n_http_api_users + (size_t)argc - 1) * sizeof(*a));

	if (!a)
		return fail(p, "%s: out of memory", d->name);
	c->http_api_users = a;
	for (int i = 1; i < argc; i++) {
		if (!(a[c->n_http_api_users] = mem_strdup(argv[i])))
			return fail(p, "%s: out of memory", d->name);
		c->n_http_api_users++;
	}
	return 0;
}

/*
 * max_connections N: after a listener line that listener's limit (mosquitto's
 * meaning); before any listener line the limit of all connections together.
 */
static int set_max_connections(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct config *c = p->c;

	if (c->n_listeners)
		return apply_num(p, d, &c->listeners[c->n_listeners - 1].max_connections, argv[1]);
	return apply_num(p, d, &c->max_connections, argv[1]);
}

/* per_listener_settings true|false: before any listener or security line, as it changes them. */
static int set_per_listener(struct parser *p, const struct directive *d, char **argv, int argc)
{
	const struct security_conf *sc = &p->c->security;

	if (p->c->n_listeners || sc->allow_anonymous_set || sc->password_file || sc->acl_file)
		return fail(p,
			    "%s: must come before the first listener, allow_anonymous, "
			    "password_file and acl_file line",
			    d->name);
	return apply_bool(p, d, &p->c->per_listener_settings, argv[1]);
}

/* A file's path, and where it was given (start-up and reload errors name it). */
static int set_path_where(struct parser *p, const struct directive *d, char **path, char **where,
			  const char *value)
{
	free_string(path);
	free_string(where);
	*path = mem_strdup(value);
	*where = where_of(p);
	if (!*path || !*where)
		return fail(p, "%s: out of memory", d->name);
	return 0;
}

static int set_password_file(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct security_conf *sc = security_of(p);

	return set_path_where(p, d, &sc->password_file, &sc->password_file_where, argv[1]);
}

static int set_acl_file(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct security_conf *sc = security_of(p);

	return set_path_where(p, d, &sc->acl_file, &sc->acl_file_where, argv[1]);
}

/* plugin_opt_KEY VALUE: an option of the plugin loaded by the latest "plugin" line. */
static int set_plugin_opt(struct parser *p, const struct directive *d, char **argv, int argc)
{
	struct config *c = p->c;
	struct plugin_conf *pl;
	struct plugin_opt_conf *o;

	if (!c->n_plugins)
		return fail(p, "%s: no plugin yet; put it after a plugin line", argv[0]);
	pl = &c->plugins[c->n_plugins - 1];
	o = mem_realloc(pl->opts, (pl->n_opts + 1) * sizeof(*o));
	if (!o)
		return fail(p, "%s: out of memory", argv[0]);
	pl->opts = o;
	o = &o[pl->n_opts];
	o->key = mem_strdup(argv[0] + strlen(d->name));
	o->value = mem_strdup(argv[1]);
	o->where = where_of(p);
	if (!o->key || !o->value || !o->where) {
		mem_free(o->key);
		mem_free(o->value);
		mem_free(o->where);
		return fail(p, "%s: out of memory", argv[0]);
	}
	pl->n_opts++;
	return 0;
}

/* Applies a one-value directive through its kind. */
static int apply_value(struct parser *p, const struct directive *d, const char *v)
{
	struct listener_conf *l = NULL;
	char *base = (char *)p->c;
	int rc = -1;

	if (d->listener) {
		if (!p->c->n_listeners)
			return fail(p, "%s: no listener yet; put it after a listener line",
				    d->name);
		l = &p->c->listeners[p->c->n_listeners - 1];
		base = (char *)l;
	}
	switch (d->kind) {
	case K_BOOL:
		rc = apply_bool(p, d, base + d->off, v);
		break;
	case K_NUM:
		rc = apply_num(p, d, base + d->off, v);
		break;
	case K_STRING:
		rc = apply_string(p, d, base + d->off, v);
		break;
	case K_ENUM:
		rc = apply_enum(p, d, base + d->off, v);
		break;
	case K_CALL:
		break;
	}
	if (rc == 0 && l)
		rc = check_listener(p, d, l);
	return rc;
}

/* Splits s in place at blanks; returns the number of words, at most MAX_WORDS. */
static int split_words(char *s, char **argv)
{
	int argc = 0;

	while (argc < MAX_WORDS) {
		s += strspn(s, " \t");
		if (!*s)
			break;
		argv[argc++] = s;
		s += strcspn(s, " \t");
		if (*s)
			*s++ = '\0';
	}
	return argc;
}

/* A bridge directive (config_bridge.c): 0, -1 after an error, or 1 when argv is none. */
static int bridge_line(struct parser *p, char **argv, int argc)
{
	char *where = where_of(p);
	int rc;

	if (!where)
		return fail(p, "out of memory");
	rc = config_bridge_line(p->c, argv, argc, where, p->err, p->errlen);
	mem_free(where);
	return rc;
}

static int parse_line(struct parser *p, const char *line)
{
	char buf[LINE_MAX_BYTES + 1];
	char *argv[MAX_WORDS];
	const struct directive *d;
	int argc, max_args, rc;

	if (strlen(line) > LINE_MAX_BYTES)
		return fail(p, "line longer than %d bytes", LINE_MAX_BYTES);
	strcpy(buf, line);
	argc = split_words(buf, argv);
	if (argc == 0 || argv[0][0] == '#')
		return 0;
	rc = bridge_line(p, argv, argc);
	if (rc <= 0)
		return rc;
	d = find_directive(argv[0]);
	if (!d)
		return fail(p, "unknown directive '%s'", argv[0]);
	if (argc < 2)
		return fail(p, "%s: missing value", argv[0]);
	max_args = d->kind == K_CALL ? d->max_args : 1;
	if (argc > max_args + 1)
		return fail(p, "%s: unexpected '%s' after the value", argv[0], argv[max_args + 1]);
	if (d->kind == K_CALL)
		return d->set(p, d, argv, argc);
	return apply_value(p, d, argv[1]);
}

int config_parse_line(struct config *c, const char *line, const char *file, int lineno, char *err,
		      size_t errlen)
{
	struct parser p = { .c = c, .file = file, .lineno = lineno, .err = err, .errlen = errlen };

	return parse_line(&p, line);
}

int config_load(struct config *c, const char *path, char *err, size_t errlen)
{
	struct parser p = { .c = c, .file = path, .err = err, .errlen = errlen };
	char line[LINE_MAX_BYTES + 2];
	FILE *f;
	int rc = 0, got;

	f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	while (rc == 0) {
		p.lineno++;
		got = linefile_read(f, line, LINE_MAX_BYTES);
		if (got == 0)
			break;
		if (got == -1)
			rc = fail(&p, "line longer than %d bytes", LINE_MAX_BYTES);
		else if (got == -2)
			rc = fail(&p, "NUL byte in line");
		else
			rc = parse_line(&p, line);
	}
	if (rc == 0 && ferror(f))
		rc = fail(&p, "read error: %s", strerror(errno));
	fclose(f);
	if (rc == 0)
		rc = config_bridge_check(c, err, errlen);
	return rc;
}
