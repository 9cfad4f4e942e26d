/*
 * config.h - the broker's configuration: defaults, the file parser, and the
 * resulting immutable struct.
 *
 * The file has one directive per line, "name value...", '#' comments and
 * blank lines; names follow mosquitto where the same thing exists. A bad
 * line is an error that names the file, the line number and what is wrong.
 * Listener-scoped directives (protocol, bind_address, socket_domain,
 * http_dir) apply to the most recent "listener" line; plugin_opt_KEY lines
 * apply to the most recent "plugin" line.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum listener_proto {
	LISTENER_MQTT,
	LISTENER_WEBSOCKETS,
	LISTENER_HTTP, /* the HTTP side only: /metrics and http_dir */
};

/* A value and where it was set ("FILE:LINE"), for errors found after parsing. */
struct conf_str {
	char *s; /* NULL = not set */
	char *where;
};

/*
 * Who may connect and what they may read and write: the configuration's,
 * or with per_listener_settings true each listener's own (mosquitto's).
 */
struct security_conf {
	bool allow_anonymous; /* clients without a username may connect (default false) */
	bool allow_anonymous_set; /* given in the file (else local only mode turns it on) */
	char *password_file; /* mosquitto_passwd's format; NULL = none */
	char *password_file_where; /* "FILE:LINE" of its directive, for errors */
	char *acl_file; /* mosquitto's ACL format; NULL = none (everything allowed) */
	char *acl_file_where;
};

struct listener_conf {
	int port; /* 1..65535 */
	char *bind_address; /* NULL = every address */
	enum listener_proto protocol;
	int socket_domain; /* 0 = both, 4 = ipv4 only, 6 = ipv6 only */
	char *http_dir; /* websockets only: directory served over HTTP (or https), or NULL */
	char *where; /* "FILE:LINE" of its listener line, or NULL (added without a file) */
	/* TLS (mosquitto's names): the listener speaks TLS when certfile is set */
	struct conf_str certfile, keyfile, cafile, capath, crlfile, ciphers, ciphers_tls13;
	bool require_certificate; /* a client certificate signed by cafile / capath */
	bool use_identity_as_username; /* its CN is the username (no password file) */
	char *require_where, *identity_where; /* "FILE:LINE" of those two, when given */
	int tls_version; /* the lowest version allowed: 11, 12 (default) or 13 */
	struct security_conf security; /* with per_listener_settings true */
	bool default_security; /* local only mode's: the configuration's security, always */
	int max_connections; /* at once on this listener (a max_connections line after it); -1 = any */
};

struct plugin_opt_conf {
	char *key; /* without the plugin_opt_ prefix */
	char *value;
	char *where; /* "FILE:LINE" of its line, for the plugin's error messages */
};

struct plugin_conf {
	char *name; /* as written: a path (with a '/') or a name looked up in plugin_dir */
	struct plugin_opt_conf *opts;
	size_t n_opts;
};

/* A bridge's topic line (mosquitto's "topic PATTERN [out|in|both] [QOS] [LOCAL] [REMOTE]"). */
enum bridge_dir {
	BRIDGE_OUT = 1, /* local to remote */
	BRIDGE_IN = 2, /* remote to local */
	BRIDGE_BOTH = 3,
};

struct bridge_topic {
	char *pattern; /* a filter; "" when the prefixes are the whole topics */
	uint8_t dir; /* enum bridge_dir */
	uint8_t qos; /* the most it is forwarded with */
	char *local_prefix, *remote_prefix; /* "" = none */
};

struct bridge_addr {
	char *host;
	int port; /* default 1883 */
};

enum bridge_start {
	BRIDGE_START_AUTOMATIC = 0, /* the only one accepted so far */
};

/* One "connection NAME" block (config_bridge.c); NULL strings are unset (defaults there). */
struct bridge_conf {
	char *name;
	char *where; /* "FILE:LINE" of its connection line */
	struct bridge_addr *addrs; /* tried in turn */
	size_t n_addrs;
	struct bridge_topic *topics;
	size_t n_topics;
	char *remote_clientid, *local_clientid, *remote_username, *remote_password;
	char *notification_topic;
	bool cleansession; /* default false */
	bool notifications; /* default true */
	bool try_private; /* default true */
	uint8_t protocol_version; /* 4 (mqttv311, default) or 5 (mqttv50) */
	uint16_t keepalive; /* seconds, 5..65535, default 60 */
	uint32_t restart_base, restart_cap; /* seconds; cap 0 = a constant restart_base */
	uint8_t start_type; /* enum bridge_start */
};

enum persist_sync {
	PERSIST_SYNC_NORMAL = 0, /* survives a process crash (WAL, synchronous=NORMAL) */
	PERSIST_SYNC_FULL = 1, /* also survives power loss (fsync per commit) */
};

enum log_level {
	LOG_ERR = 0,
	LOG_WARNING = 1,
	LOG_NOTICE = 2,
	LOG_INFO = 3,
	LOG_DEBUG = 4,
};

struct config {
	struct listener_conf *listeners;
	size_t n_listeners;

	/* sessions and queues */
	uint32_t max_queued_messages; /* per session; 0 = unlimited */
	uint64_t max_queued_bytes; /* per session; 0 = unlimited */
	/* per shared group queue; 0 = unlimited, CONFIG_UNSET = 10x the session limit */
	uint64_t max_group_queued_messages, max_group_queued_bytes;
	uint16_t max_inflight_messages; /* outgoing QoS 1/2 window; also our Receive Maximum */
	bool queue_qos0_messages; /* queue QoS 0 for offline persistent sessions */
	uint64_t
		max_qos0_backlog; /* bytes of output waiting for a live client beyond which QoS 0 drops */
	uint32_t persistent_client_expiration; /* seconds; 0 = never (3.1.1 sessions) */

	/* protocol limits */
	uint32_t max_packet_size; /* bytes; 0 = protocol maximum */
	uint16_t max_keepalive; /* seconds; imposed through Server Keep Alive */
	uint16_t max_topic_alias; /* Topic Alias Maximum we accept from clients */
	uint8_t max_qos;
	bool retain_available;
	bool allow_zero_length_clientid;
	char *auto_id_prefix;
	uint32_t connect_timeout; /* seconds a new connection may take to send CONNECT */
	int max_connections; /* at once over every listener (a line before any listener); -1 = any */
	int max_connections_per_address; /* connections at once from one address; -1 = unlimited */
	uint64_t memory_limit; /* counted bytes (mem.c, SQLite) past which no new work; 0 = none */

	/* persistence */
	bool persistence; /* store sessions, queues, retained and plugin state in SQLite */
	char *persistence_file; /* the database; its directory is created when missing */
	int persistence_sync; /* PERSIST_SYNC_NORMAL or PERSIST_SYNC_FULL */
	uint64_t persistence_max_bytes; /* cap on the database size; 0 = the disk's */
	uint32_t
		max_queued_in_memory; /* per session: queued messages kept in memory, rest on disk */

	/* plugins, in load (and callback) order */
	struct plugin_conf *plugins;
	size_t n_plugins;
	char *plugin_dir; /* where "plugin NAME" looks for NAME.so */

	/* security: for every listener, or (per_listener_settings) for the local only mode's */
	struct security_conf security;
	bool per_listener_settings; /* each listener has its own security (listener_conf) */
	char **http_api_users; /* who may use the HTTP API (HTTP Basic, the password file) */
	size_t n_http_api_users; /* 0: the API answers on loopback listeners only */

	/* bridges, in file order */
	struct bridge_conf *bridges;
	size_t n_bridges;

	/* operation */
	uint32_t sys_interval; /* seconds; 0 = no $SYS */
	enum log_level log_level;
	char *log_dest; /* "stderr", "stdout" or "file" */
	char *log_file; /* when log_dest is "file" */
};

/* Fills c with the defaults (no listener: the broker adds 1883 when none is configured). */
void config_defaults(struct config *c);

/*
 * Reads path into c (which must hold defaults or an earlier file's values).
 * On error returns -1 and writes "FILE:LINE: what is wrong" into err.
 */
int config_load(struct config *c, const char *path, char *err, size_t errlen);

/* Parses one line as config_load would; for tests and for -p style overrides. */
int config_parse_line(struct config *c, const char *line, const char *file, int lineno, char *err,
		      size_t errlen);

/* Adds a listener with defaults; returns it or NULL (OOM). */
struct listener_conf *config_add_listener(struct config *c, int port);

void config_free(struct config *c);

/* A directive left at its default, where the default follows another one. */
#define CONFIG_UNSET UINT64_MAX

/* A shared group's queue limits: as set, or 10x the session ones (0 stays unlimited). */
uint64_t config_group_max_messages(const struct config *c);
uint64_t config_group_max_bytes(const struct config *c);

#endif
