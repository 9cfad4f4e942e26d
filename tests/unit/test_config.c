/*
 * test_config.c - the configuration parser and the logger.
 *
 * Directives are checked through config_parse_line() (good values land in
 * the right field, bad ones fail with "FILE:LINE: name: ..."), files through
 * config_load() on temporary files, and the shipped conf/sluice.conf is
 * loaded as it is. The logger is pointed at a temporary file that is read
 * back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* log.h brings src/config.h; a bare "config.h" here would find autoconf's. */
#include "log.h"
#include "mem.h"
#include "temp_file.h"

static char err[512];

/* Parses one line as line 7 of "t.conf"; returns config_parse_line's result. */
static int parse(struct config *c, const char *line)
{
	err[0] = '\0';
	return config_parse_line(c, line, "t.conf", 7, err, sizeof(err));
}

static void parse_ok(struct config *c, const char *line)
{
	if (parse(c, line) != 0)
		fail_msg("'%s' failed: %s", line, err);
}

/* The line must fail, name t.conf line 7, and say what (a substring). */
static void parse_bad(struct config *c, const char *line, const char *what)
{
	if (parse(c, line) == 0)
		fail_msg("'%s' was accepted", line);
	if (strncmp(err, "t.conf:7: ", 10) != 0)
		fail_msg("'%s': error lacks file and line: '%s'", line, err);
	if (!strstr(err, what))
		fail_msg("'%s': error '%s' lacks '%s'", line, err, what);
}

static int setup(void **state)
{
	struct config *c = calloc(1, sizeof(*c));

	if (!c)
		return -1;
	config_defaults(c);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	config_free(*state);
	free(*state);
	return 0;
}

/* Writes len bytes to a fresh temporary file; returns its path in path (size 64). */
static void write_temp_n(char *path, const char *text, size_t len)
{
	temp_file_write(path, 64, text, len);
}

static void write_temp(char *path, const char *text)
{
	write_temp_n(path, text, strlen(text));
}

static void test_defaults(void **state)
{
	struct config *c = *state;

	assert_int_equal(c->n_listeners, 0);
	assert_int_equal(c->max_queued_messages, 1000);
	assert_true(c->max_queued_bytes == 0);
	assert_int_equal(c->max_inflight_messages, 20);
	assert_false(c->queue_qos0_messages);
	assert_int_equal(c->persistent_client_expiration, 0);
	assert_int_equal(c->max_packet_size, 0);
	assert_int_equal(c->max_keepalive, 65535);
	assert_int_equal(c->max_topic_alias, 10);
	assert_int_equal(c->max_qos, 2);
	assert_true(c->retain_available);
	assert_true(c->allow_zero_length_clientid);
	assert_string_equal(c->auto_id_prefix, "auto-");
	assert_int_equal(c->connect_timeout, 10);
	assert_int_equal(c->max_connections, -1);
	assert_true(c->memory_limit == 0);
	assert_int_equal(c->sys_interval, 10);
	assert_int_equal(c->log_level, LOG_NOTICE);
	assert_string_equal(c->log_dest, "stderr");
	assert_null(c->log_file);
	assert_false(c->security.allow_anonymous); /* mosquitto 2 */
	assert_false(c->security.allow_anonymous_set);
	assert_null(c->security.password_file);
}

static void test_listener(void **state)
{
	struct config *c = *state;

	parse_ok(c, "listener 1883");
	parse_ok(c, "listener 65535 127.0.0.1");
	parse_ok(c, "listener 1");
	assert_int_equal(c->n_listeners, 3);
	assert_int_equal(c->listeners[0].port, 1883);
	assert_null(c->listeners[0].bind_address);
	assert_int_equal(c->listeners[0].protocol, LISTENER_MQTT);
	assert_int_equal(c->listeners[0].socket_domain, 0);
	assert_null(c->listeners[0].http_dir);
	assert_int_equal(c->listeners[1].port, 65535);
	assert_string_equal(c->listeners[1].bind_address, "127.0.0.1");
	assert_int_equal(c->listeners[2].port, 1);

	parse_bad(c, "listener", "listener: missing value");
	parse_bad(c, "listener 0", "port must be 1..65535, got '0'");
	parse_bad(c, "listener 65536", "port must be 1..65535");
	parse_bad(c, "listener -1", "port must be 1..65535");
	parse_bad(c, "listener 99999999999999999999999", "port must be 1..65535");
	parse_bad(c, "listener 18x3", "expected a port number, got '18x3'");
	parse_bad(c, "listener 1883 ::1 extra", "unexpected 'extra'");
	assert_int_equal(c->n_listeners, 3);
}

static void test_listener_scope(void **state)
{
	struct config *c = *state;

	parse_bad(c, "protocol websockets",
		  "protocol: no listener yet; put it after a listener line");
	parse_bad(c, "bind_address ::1", "bind_address: no listener yet");
	parse_bad(c, "socket_domain ipv4", "socket_domain: no listener yet");
	parse_bad(c, "http_dir ./web", "http_dir: no listener yet");

	parse_ok(c, "listener 1883");
	parse_ok(c, "socket_domain ipv4");
	parse_ok(c, "bind_address 10.0.0.1");
	parse_ok(c, "listener 8080");
	parse_ok(c, "protocol websockets");
	parse_ok(c, "socket_domain ipv6");
	parse_ok(c, "http_dir ./web");
	parse_ok(c, "listener 8883 ::1");
	parse_ok(c, "protocol mqtt");
	parse_ok(c, "bind_address 192.168.1.1"); /* replaces the one on the listener line */

	assert_int_equal(c->n_listeners, 3);
	assert_int_equal(c->listeners[0].protocol, LISTENER_MQTT);
	assert_int_equal(c->listeners[0].socket_domain, 4);
	assert_string_equal(c->listeners[0].bind_address, "10.0.0.1");
	assert_null(c->listeners[0].http_dir);
	assert_int_equal(c->listeners[1].port, 8080);
	assert_int_equal(c->listeners[1].protocol, LISTENER_WEBSOCKETS);
	assert_int_equal(c->listeners[1].socket_domain, 6);
	assert_string_equal(c->listeners[1].http_dir, "./web");
	assert_null(c->listeners[1].bind_address);
	assert_string_equal(c->listeners[2].bind_address, "192.168.1.1");

	parse_bad(c, "protocol https", "protocol: expected mqtt, websockets or http, got 'https'");
	parse_bad(c, "protocol", "protocol: missing value");
	parse_bad(c, "protocol mqtt mqtt", "unexpected 'mqtt'");
	parse_bad(c, "socket_domain ipv5", "expected ipv4 or ipv6, got 'ipv5'");
	parse_bad(c, "bind_address", "bind_address: missing value");
	/* the latest listener (8883) speaks mqtt */
	parse_bad(c, "http_dir ./web", "http_dir: http_dir needs 'protocol websockets'");
}

/* Switching a listener with http_dir back to mqtt is caught as well. */
static void test_http_dir_then_mqtt(void **state)
{
	struct config *c = *state;

	parse_ok(c, "listener 8080");
	parse_ok(c, "protocol websockets");
	parse_ok(c, "http_dir /srv/www");
	parse_bad(c, "protocol mqtt", "protocol: http_dir needs 'protocol websockets'");
}

/* protocol http: the HTTP side only (GET /metrics), with or without http_dir. */
static void test_http_listener(void **state)
{
	struct config *c = *state;

	parse_ok(c, "listener 9100 127.0.0.1");
	parse_ok(c, "protocol http");
	assert_int_equal(c->listeners[c->n_listeners - 1].protocol, LISTENER_HTTP);
	parse_ok(c, "http_dir ./web");
	assert_string_equal(c->listeners[c->n_listeners - 1].http_dir, "./web");
	parse_bad(c, "protocol mqtt",
		  "protocol: http_dir needs 'protocol websockets' or 'protocol http'");
}

static void test_numbers(void **state)
{
	struct config *c = *state;

	parse_ok(c, "max_queued_messages 0");
	assert_int_equal(c->max_queued_messages, 0);
	parse_ok(c, "max_queued_messages 4294967295");
	assert_true(c->max_queued_messages == 4294967295u);
	parse_bad(c, "max_queued_messages 4294967296", "must be 0..4294967295");
	parse_bad(c, "max_queued_messages -1", "must be 0..4294967295, got '-1'");
	parse_bad(c, "max_queued_messages 10x", "expected a number, got '10x'");
	parse_bad(c, "max_queued_messages 1k", "expected a number, got '1k'");
	parse_bad(c, "max_queued_messages", "max_queued_messages: missing value");
	parse_bad(c, "max_queued_messages 5 6", "unexpected '6'");
	parse_bad(c, "max_queued_messages +5", "expected a number");
	parse_bad(c, "max_queued_messages 0x10", "expected a number");
	parse_bad(c, "max_queued_messages -", "expected a number");

	parse_ok(c, "max_inflight_messages 1");
	assert_int_equal(c->max_inflight_messages, 1);
	parse_ok(c, "max_inflight_messages 65535");
	assert_int_equal(c->max_inflight_messages, 65535);
	parse_bad(c, "max_inflight_messages 0",
		  "must be 1..65535 (0 = unlimited is not supported)");
	parse_bad(c, "max_inflight_messages 65536", "must be 1..65535");
	assert_int_equal(c->max_inflight_messages, 65535);

	parse_ok(c, "max_keepalive 0");
	assert_int_equal(c->max_keepalive, 0);
	parse_ok(c, "max_keepalive 60");
	assert_int_equal(c->max_keepalive, 60);
	parse_bad(c, "max_keepalive 65536", "max_keepalive: must be 0..65535, got '65536'");

	parse_ok(c, "max_topic_alias 0");
	assert_int_equal(c->max_topic_alias, 0);
	parse_ok(c, "max_topic_alias 65535");
	assert_int_equal(c->max_topic_alias, 65535);
	parse_bad(c, "max_topic_alias 70000", "must be 0..65535");
	parse_bad(c, "max_topic_alias ten", "expected a number, got 'ten'");

	parse_ok(c, "connect_timeout 1");
	assert_int_equal(c->connect_timeout, 1);
	parse_ok(c, "connect_timeout 3600");
	assert_int_equal(c->connect_timeout, 3600);
	parse_bad(c, "connect_timeout 0", "connect_timeout: must be 1..3600, got '0'");
	parse_bad(c, "connect_timeout 3601", "must be 1..3600");

	parse_ok(c, "max_connections 100");
	assert_int_equal(c->max_connections, 100);
	parse_ok(c, "max_connections -1");
	assert_int_equal(c->max_connections, -1);
	parse_ok(c, "max_connections 2147483647");
	assert_int_equal(c->max_connections, 2147483647);
	parse_bad(c, "max_connections -2", "must be -1 (unlimited) or 0..2147483647, got '-2'");
	parse_bad(c, "max_connections 2147483648", "must be -1 (unlimited)");
	/* after a listener line: that listener's (mosquitto); the total stays */
	parse_ok(c, "listener 1883");
	assert_int_equal(c->listeners[0].max_connections, -1);
	parse_ok(c, "max_connections 5");
	assert_int_equal(c->listeners[0].max_connections, 5);
	assert_int_equal(c->max_connections, 2147483647);
	parse_bad(c, "max_connections -3", "must be -1 (unlimited) or 0..2147483647, got '-3'");

	parse_ok(c, "sys_interval 0");
	assert_int_equal(c->sys_interval, 0);
	parse_ok(c, "sys_interval 60");
	assert_int_equal(c->sys_interval, 60);
	parse_bad(c, "sys_interval 86401", "sys_interval: must be 0..86400");
	parse_bad(c, "sys_interval 1.5", "expected a number, got '1.5'");
}

static void test_max_qos(void **state)
{
	struct config *c = *state;

	parse_ok(c, "max_qos 0");
	assert_int_equal(c->max_qos, 0);
	parse_ok(c, "max_qos 1");
	assert_int_equal(c->max_qos, 1);
	parse_ok(c, "max_qos 2");
	assert_int_equal(c->max_qos, 2);
	parse_bad(c, "max_qos 5", "max_qos: expected 0, 1 or 2, got '5'");
	parse_bad(c, "max_qos 01", "expected 0, 1 or 2, got '01'");
	parse_bad(c, "max_qos", "max_qos: missing value");
	assert_int_equal(c->max_qos, 2);
}

static void test_bools(void **state)
{
	struct config *c = *state;

	parse_ok(c, "queue_qos0_messages true");
	assert_true(c->queue_qos0_messages);
	parse_ok(c, "retain_available false");
	assert_false(c->retain_available);
	parse_ok(c, "allow_zero_length_clientid false");
	assert_false(c->allow_zero_length_clientid);
	parse_ok(c, "retain_available true");
	assert_true(c->retain_available);
	parse_bad(c, "retain_available yes", "retain_available: expected true or false, got 'yes'");
	parse_bad(c, "queue_qos0_messages 1", "expected true or false, got '1'");
	parse_bad(c, "queue_qos0_messages TRUE", "expected true or false");
	parse_bad(c, "allow_zero_length_clientid", "missing value");
	parse_bad(c, "allow_zero_length_clientid true false", "unexpected 'false'");
	assert_true(c->queue_qos0_messages);
}

static void test_security(void **state)
{
	struct config *c = *state;

	parse_ok(c, "allow_anonymous true");
	assert_true(c->security.allow_anonymous);
	assert_true(c->security.allow_anonymous_set);
	parse_ok(c, "allow_anonymous false");
	assert_false(c->security.allow_anonymous);
	parse_bad(c, "allow_anonymous yes", "allow_anonymous: expected true or false, got 'yes'");
	parse_bad(c, "allow_anonymous", "missing value");
	parse_ok(c, "password_file /etc/sluice/passwd");
	assert_string_equal(c->security.password_file, "/etc/sluice/passwd");
	assert_string_equal(c->security.password_file_where, "t.conf:7");
	parse_ok(c, "password_file other"); /* the later line wins, with its place */
	assert_string_equal(c->security.password_file, "other");
	parse_bad(c, "password_file a b", "unexpected 'b'");
	parse_bad(c, "password_file", "missing value");
	parse_ok(c, "acl_file /etc/sluice/acl");
	assert_string_equal(c->security.acl_file, "/etc/sluice/acl");
	assert_string_equal(c->security.acl_file_where, "t.conf:7");
	parse_bad(c, "acl_file", "missing value");
}

/* per_listener_settings true: security lines after a listener line are that listener's. */
static void test_per_listener_settings(void **state)
{
	struct config *c = *state;
	const struct listener_conf *l;

	parse_ok(c, "per_listener_settings true");
	assert_true(c->per_listener_settings);
	parse_ok(c, "allow_anonymous true"); /* before any listener: the configuration's */
	parse_ok(c, "listener 1883 127.0.0.1");
	parse_ok(c, "allow_anonymous false");
	parse_ok(c, "password_file /etc/sluice/one");
	parse_ok(c, "listener 8883");
	parse_ok(c, "allow_anonymous true");
	parse_ok(c, "acl_file /etc/sluice/acl2");
	assert_true(c->security.allow_anonymous);
	assert_null(c->security.password_file);
	assert_null(c->security.acl_file);
	l = &c->listeners[0];
	assert_false(l->security.allow_anonymous);
	assert_true(l->security.allow_anonymous_set);
	assert_string_equal(l->security.password_file, "/etc/sluice/one");
	assert_null(l->security.acl_file);
	l = &c->listeners[1];
	assert_true(l->security.allow_anonymous);
	assert_null(l->security.password_file);
	assert_string_equal(l->security.acl_file, "/etc/sluice/acl2");
	assert_string_equal(l->security.acl_file_where, "t.conf:7");
	parse_bad(c, "per_listener_settings false",
		  "per_listener_settings: must come before the first listener");
}

/* It changes what the lines mean, so it comes first; without it they are global. */
static void test_per_listener_settings_order(void **state)
{
	struct config *c = *state;

	parse_ok(c, "password_file /etc/sluice/passwd");
	parse_bad(c, "per_listener_settings true",
		  "per_listener_settings: must come before the first listener, allow_anonymous");
	parse_bad(c, "per_listener_settings maybe", "must come before");
	config_free(c);
	config_defaults(c);
	parse_ok(c, "per_listener_settings false");
	parse_ok(c, "listener 1883");
	parse_ok(c, "acl_file /etc/sluice/acl");
	assert_string_equal(c->security.acl_file, "/etc/sluice/acl");
	assert_null(c->listeners[0].security.acl_file);
	parse_bad(c, "per_listener_settings true", "must come before the first listener");
}

static void test_tls_directives(void **state)
{
	struct config *c = *state;
	struct listener_conf *l;
	char path[64], line[128];

	write_temp(path, "not really a certificate\n");
	snprintf(line, sizeof(line), "certfile %s", path);
	parse_bad(c, line, "certfile: no listener yet");
	parse_ok(c, "listener 8883");
	l = &c->listeners[0];
	assert_int_equal(l->tls_version, 12); /* TLS 1.2 and 1.3 by default */
	parse_ok(c, line); /* readable now; what it holds is checked at start (listener_tls.c) */
	assert_string_equal(l->certfile.s, path);
	assert_string_equal(l->certfile.where, "t.conf:7");
	parse_bad(c, "keyfile /nonexistent/key.pem",
		  "keyfile: cannot read '/nonexistent/key.pem': No such file or directory");
	assert_null(l->keyfile.s);
	parse_bad(c, "capath /nonexistent", "capath: cannot read");
	parse_bad(c, "capath /etc/hostname", "is not a directory");
	parse_ok(c, "capath /tmp");
	parse_bad(c, "cafile /tmp", "cafile: '/tmp' is not a regular file");
	parse_ok(c, "require_certificate true");
	parse_ok(c, "use_identity_as_username true");
	assert_true(l->require_certificate && l->use_identity_as_username);
	parse_ok(c, "tls_version tlsv1.3");
	assert_int_equal(l->tls_version, 13);
	parse_ok(c, "tls_version tlsv1.1");
	assert_int_equal(l->tls_version, 11);
	parse_bad(c, "tls_version tlsv1.0", "tls_version");
	parse_ok(c, "ciphers ECDHE-RSA-AES128-GCM-SHA256");
	parse_ok(c, "ciphers_tls1.3 TLS_AES_128_GCM_SHA256");
	assert_string_equal(l->ciphers.s, "ECDHE-RSA-AES128-GCM-SHA256");
	assert_string_equal(l->ciphers_tls13.s, "TLS_AES_128_GCM_SHA256");
	assert_string_equal(l->where, "t.conf:7");
	unlink(path);
}

static void test_strings(void **state)
{
	struct config *c = *state;
	char long_prefix[128];

	parse_ok(c, "auto_id_prefix sluice-");
	assert_string_equal(c->auto_id_prefix, "sluice-");
	parse_ok(c, "auto_id_prefix x"); /* replaces (and frees) the earlier copy */
	assert_string_equal(c->auto_id_prefix, "x");
	parse_bad(c, "auto_id_prefix", "auto_id_prefix: missing value");
	parse_bad(c, "auto_id_prefix a b", "unexpected 'b'");
	memset(long_prefix, 0, sizeof(long_prefix));
	strcpy(long_prefix, "auto_id_prefix ");
	memset(long_prefix + strlen(long_prefix), 'a', 65);
	parse_bad(c, long_prefix, "must be 1..64 bytes long, got 65");
	assert_string_equal(c->auto_id_prefix, "x");
}

static void test_durations(void **state)
{
	static const struct {
		const char *value;
		uint32_t seconds;
	} good[] = {
		{ "0", 0 },
		{ "3600", 3600 },
		{ "90s", 90 },
		{ "2h", 7200 },
		{ "14d", 1209600 },
		{ "1w", 604800 },
		{ "1m", 2592000 },
		{ "1y", 31536000 },
		{ "136y", 4288896000u },
	};
	static const char *bad[] = { "2x", "h", "2hh", "2 h", "-1h", "1.5h", "137y", "2H" };
	struct config *c = *state;
	char line[128];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(line, sizeof(line), "persistent_client_expiration %s", good[i].value);
		parse_ok(c, line);
		assert_true(c->persistent_client_expiration == good[i].seconds);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line), "persistent_client_expiration %s", bad[i]);
		parse_bad(c, line, "persistent_client_expiration: ");
	}
	parse_bad(c, "persistent_client_expiration 2x", "expected a duration");
	parse_bad(c, "persistent_client_expiration 137y", "must be 0..4294967295, got '137y'");
	parse_bad(c, "persistent_client_expiration 99999999999999999999d", "must be 0..");
	parse_bad(c, "persistent_client_expiration", "missing value");
}

static void test_sizes(void **state)
{
	struct config *c = *state;

	parse_ok(c, "max_queued_bytes 512");
	assert_true(c->max_queued_bytes == 512);
	parse_ok(c, "max_queued_bytes 64k");
	assert_true(c->max_queued_bytes == 65536);
	parse_ok(c, "max_queued_bytes 2K");
	assert_true(c->max_queued_bytes == 2048);
	parse_ok(c, "max_queued_bytes 16M");
	assert_true(c->max_queued_bytes == 16u * 1024 * 1024);
	parse_ok(c, "max_queued_bytes 8G");
	assert_true(c->max_queued_bytes == 8ull * 1024 * 1024 * 1024);
	parse_ok(c, "max_queued_bytes 0");
	assert_true(c->max_queued_bytes == 0);
	parse_bad(c, "max_queued_bytes 10x", "max_queued_bytes: expected a size in bytes");
	parse_bad(c, "max_queued_bytes 10kb", "expected a size in bytes");
	parse_bad(c, "max_queued_bytes k", "expected a size in bytes");
	parse_bad(c, "max_queued_bytes 99999999999G", "max_queued_bytes: must be");
	parse_bad(c, "max_queued_bytes -1", "must be 0..");

	parse_ok(c, "max_packet_size 0");
	assert_int_equal(c->max_packet_size, 0);
	parse_ok(c, "max_packet_size 20");
	assert_int_equal(c->max_packet_size, 20);
	parse_ok(c, "max_packet_size 1M");
	assert_int_equal(c->max_packet_size, 1048576);
	parse_ok(c, "max_packet_size 268435460");
	assert_int_equal(c->max_packet_size, 268435460);
	parse_bad(c, "max_packet_size 19",
		  "must be 0 (protocol maximum) or 20..268435460, got '19'");
	parse_bad(c, "max_packet_size 1", "or 20..268435460");
	parse_bad(c, "max_packet_size 268435461", "or 20..268435460");
	parse_bad(c, "max_packet_size 1G", "or 20..268435460, got '1G'");
	parse_bad(c, "max_packet_size 64q", "expected a size in bytes");
	assert_int_equal(c->max_packet_size, 268435460);
}

/* memory_limit: mosquitto's plain byte counts, our size suffixes, 0 = none. */
static void test_memory_limit(void **state)
{
	struct config *c = *state;
	char path[64], want[160];

	static const struct {
		const char *line;
		uint64_t v;
	} good[] = {
		{ "memory_limit 1073741824", 1073741824 },
		{ "memory_limit 64M", 64u * 1024 * 1024 },
		{ "memory_limit 1048576", 1048576 },
		{ "memory_limit 0", 0 },
	};
	static const char *const bad[][2] = {
		{ "memory_limit 1048575", "memory_limit: must be 0 (unlimited) or at least 1M" },
		{ "memory_limit -1", "memory_limit: must be 0 (unlimited) or at least 1M" },
		{ "memory_limit 99999999999G", "memory_limit: must be" },
		{ "memory_limit 10x", "memory_limit: expected a size in bytes" },
		{ "memory_limit 1MB", "memory_limit: expected a size in bytes" },
		{ "memory_limit", "memory_limit" },
		{ "memory_limit 1G 2G", "memory_limit" },
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		parse_ok(c, good[i].line);
		assert_true(c->memory_limit == good[i].v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse_bad(c, bad[i][0], bad[i][1]);
	assert_true(c->memory_limit == 0);

	write_temp(path, "memory_limit 2G\n"
			 "memory_limit 512k\n");
	assert_int_equal(config_load(c, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want),
		 "%s:2: memory_limit: must be 0 (unlimited) or at least 1M, got '512k'", path);
	assert_string_equal(err, want);
	assert_true(c->memory_limit == 2ull * 1024 * 1024 * 1024);
	unlink(path);
}

static void test_log_dest(void **state)
{
	struct config *c = *state;

	parse_ok(c, "log_dest file /var/log/sluice.log");
	assert_string_equal(c->log_dest, "file");
	assert_string_equal(c->log_file, "/var/log/sluice.log");
	parse_ok(c, "log_dest file /tmp/other.log");
	assert_string_equal(c->log_file, "/tmp/other.log");
	parse_ok(c, "log_dest stdout");
	assert_string_equal(c->log_dest, "stdout");
	assert_null(c->log_file);
	parse_ok(c, "log_dest stderr");
	assert_string_equal(c->log_dest, "stderr");
	parse_bad(c, "log_dest file", "log_dest: 'file' needs a path");
	parse_bad(c, "log_dest syslog", "expected stderr, stdout or file PATH, got 'syslog'");
	parse_bad(c, "log_dest stderr /tmp/x", "unexpected '/tmp/x' after 'stderr'");
	parse_bad(c, "log_dest file /a /b", "unexpected '/b'");
	parse_bad(c, "log_dest", "log_dest: missing value");
	assert_string_equal(c->log_dest, "stderr");
}

static void test_log_type(void **state)
{
	static const struct {
		const char *word;
		enum log_level level;
	} words[] = {
		{ "error", LOG_ERR },
		{ "warning", LOG_WARNING },
		{ "notice", LOG_NOTICE },
		{ "information", LOG_INFO },
		{ "debug", LOG_DEBUG },
		{ "all", LOG_DEBUG },
	};
	struct config *c = *state;
	char line[64];

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		snprintf(line, sizeof(line), "log_type %s", words[i].word);
		parse_ok(c, line);
		assert_int_equal(c->log_level, words[i].level);
	}
	parse_ok(c, "log_type error"); /* alone on a line, it sets the level */
	assert_int_equal(c->log_level, LOG_ERR);
	parse_bad(c, "log_type info", "log_type: expected error, warning");
	parse_bad(c, "log_type", "missing value");
	parse_bad(c, "log_type debug all", "unexpected 'all'");
}

static void test_lines(void **state)
{
	struct config *c = *state;
	char *big;

	parse_ok(c, "");
	parse_ok(c, "   \t ");
	parse_ok(c, "# a comment");
	parse_ok(c, "   #max_qos 7");
	parse_ok(c, "\tmax_qos\t1  \t");
	assert_int_equal(c->max_qos, 1);
	parse_bad(c, "foo 1", "t.conf:7: unknown directive 'foo'");
	parse_bad(c, "foo", "unknown directive 'foo'");
	parse_bad(c, "Max_qos 1", "unknown directive 'Max_qos'");
	parse_bad(c, "max_qos 1 # trailing comment", "unexpected '#'");

	big = malloc(5000);
	assert_non_null(big);
	memset(big, ' ', 5000);
	memcpy(big, "max_qos 1", 9);
	big[4097] = '\0';
	parse_bad(c, big, "line longer than 4096 bytes");
	big[4096] = '\0'; /* exactly 4096 bytes is fine */
	parse_ok(c, big);
	free(big);
}

static void test_load_file(void **state)
{
	struct config *c = *state;
	char path[64];

	write_temp(path,
		   "# comment\r\n"
		   "\r\n"
		   "listener 1883   \r\n"
		   "listener 9001\r\n"
		   "protocol websockets\t\r\n"
		   "max_qos 1\r\n"
		   "log_type warning\n"
		   "log_type debug\n"
		   "log_type error\n" /* the most verbose given wins */
		   "max_queued_bytes 1M"); /* no newline at the end */
	assert_int_equal(config_load(c, path, err, sizeof(err)), 0);
	unlink(path);
	assert_int_equal(c->n_listeners, 2);
	assert_int_equal(c->listeners[0].port, 1883);
	assert_int_equal(c->listeners[1].port, 9001);
	assert_int_equal(c->listeners[1].protocol, LISTENER_WEBSOCKETS);
	assert_int_equal(c->max_qos, 1);
	assert_int_equal(c->log_level, LOG_DEBUG);
	assert_true(c->max_queued_bytes == 1048576);
}

static void test_load_log_type_first_wins_over_default(void **state)
{
	struct config *c = *state;
	char path[64];

	write_temp(path, "log_type error\n");
	assert_int_equal(config_load(c, path, err, sizeof(err)), 0);
	unlink(path);
	assert_int_equal(c->log_level, LOG_ERR);
}

static void test_load_bad_line(void **state)
{
	struct config *c = *state;
	char path[64], want[128];

	write_temp(path, "listener 1883\n"
			 "# two\n"
			 "\n"
			 "max_qos 1\n"
			 "max_keepalive 60\n"
			 "connect_timeout 10x\n"
			 "max_qos 0\n");
	assert_int_equal(config_load(c, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:6: connect_timeout: expected a number, got '10x'", path);
	assert_string_equal(err, want);
	assert_int_equal(c->max_qos, 1); /* stopped at the bad line */
	unlink(path);
}

static void test_load_long_line(void **state)
{
	struct config *c = *state;
	char path[64], want[128];
	char *text = malloc(8000);

	assert_non_null(text);
	strcpy(text, "max_qos 1\nmax_qos 2\n");
	memset(text + strlen(text), 'a', 5000);
	strcpy(text + 20 + 5000, "\nmax_qos 0\n");
	write_temp(path, text);
	free(text);
	assert_int_equal(config_load(c, path, err, sizeof(err)), -1);
	unlink(path);
	snprintf(want, sizeof(want), "%s:3: line longer than 4096 bytes", path);
	assert_string_equal(err, want);
}

/* 4096 bytes before the line ending are allowed, with "\n" or "\r\n"; 4097 are not. */
static void test_load_line_limit(void **state)
{
	struct config *c = *state;
	char path[64], want[128];
	char *text = malloc(3 * 4200);
	size_t n;
	int rc;

	assert_non_null(text);
	for (int crlf = 0; crlf < 2; crlf++) {
		n = (size_t)sprintf(text, "max_qos 1\n");
		memset(text + n, '#', 4096);
		n += 4096;
		n += (size_t)sprintf(text + n, crlf ? "\r\n" : "\n");
		memcpy(text + n, "max_qos 0", 9);
		memset(text + n + 9, ' ', 4096 - 9);
		n += 4096;
		n += (size_t)sprintf(text + n, crlf ? "\r\n" : "\n");
		write_temp(path, text);
		rc = config_load(c, path, err, sizeof(err));
		unlink(path);
		if (rc != 0)
			fail_msg("%s", err);
		assert_int_equal(c->max_qos, 0);

		memcpy(text + n, "max_qos 2 ", 10);
		memset(text + n + 10, ' ', 4097 - 10);
		strcpy(text + n + 4097, crlf ? "\r\n" : "\n");
		write_temp(path, text);
		rc = config_load(c, path, err, sizeof(err));
		unlink(path);
		assert_int_equal(rc, -1);
		snprintf(want, sizeof(want), "%s:4: line longer than 4096 bytes", path);
		assert_string_equal(err, want);
	}
	free(text);
}

static void test_load_nul_byte(void **state)
{
	struct config *c = *state;
	char path[64], want[128];
	static const char text[] = "max_qos 1\nmax_qos\0 2\n";

	write_temp_n(path, text, sizeof(text) - 1);
	assert_int_equal(config_load(c, path, err, sizeof(err)), -1);
	unlink(path);
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", path);
	assert_string_equal(err, want);
}

static void test_load_missing_file(void **state)
{
	struct config *c = *state;

	assert_int_equal(config_load(c, "/nonexistent/sluice.conf", err, sizeof(err)), -1);
	assert_string_equal(err,
			    "/nonexistent/sluice.conf: cannot open: No such file or directory");
}

static void test_load_unknown_directive(void **state)
{
	struct config *c = *state;
	char path[64];

	write_temp(path, "listener 1883\nprotocol mqtt\nfoo bar\n");
	assert_int_equal(config_load(c, path, err, sizeof(err)), -1);
	unlink(path);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, ":3: unknown directive 'foo'"));
}

static void test_bridge_block(void **state)
{
	struct config *c = *state;
	const struct bridge_conf *b;

	parse_ok(c, "connection cloud");
	parse_ok(c, "address 127.0.0.1:1884 backup.example");
	parse_ok(c, "topic sensors/# out 1 site/ remote/");
	parse_ok(c, "topic cmd/+ in");
	parse_ok(c, "topic \"\" both 2 local/state remote/state");
	parse_ok(c, "topic a/b both 0 \"\" up/");
	parse_ok(c, "max_qos 1"); /* a global directive inside a block keeps its meaning */
	parse_ok(c, "remote_clientid r1");
	parse_ok(c, "local_clientid l1");
	parse_ok(c, "remote_username u");
	parse_ok(c, "remote_password p");
	parse_ok(c, "cleansession true");
	parse_ok(c, "bridge_protocol_version mqttv50");
	parse_ok(c, "keepalive_interval 5");
	parse_ok(c, "restart_timeout 10 60");
	parse_ok(c, "notifications false");
	parse_ok(c, "notification_topic bridges/cloud");
	parse_ok(c, "try_private false");
	parse_ok(c, "start_type automatic");
	assert_int_equal(c->max_qos, 1);
	assert_int_equal(c->n_bridges, 1);
	b = &c->bridges[0];
	assert_string_equal(b->name, "cloud");
	assert_string_equal(b->where, "t.conf:7");
	assert_int_equal(b->n_addrs, 2);
	assert_string_equal(b->addrs[0].host, "127.0.0.1");
	assert_int_equal(b->addrs[0].port, 1884);
	assert_string_equal(b->addrs[1].host, "backup.example");
	assert_int_equal(b->addrs[1].port, 1883);
	assert_int_equal(b->n_topics, 4);
	assert_string_equal(b->topics[0].pattern, "sensors/#");
	assert_int_equal(b->topics[0].dir, BRIDGE_OUT);
	assert_int_equal(b->topics[0].qos, 1);
	assert_string_equal(b->topics[0].local_prefix, "site/");
	assert_string_equal(b->topics[0].remote_prefix, "remote/");
	assert_int_equal(b->topics[1].dir, BRIDGE_IN);
	assert_int_equal(b->topics[1].qos, 0);
	assert_string_equal(b->topics[1].local_prefix, "");
	assert_string_equal(b->topics[2].pattern, "");
	assert_int_equal(b->topics[2].dir, BRIDGE_BOTH);
	assert_string_equal(b->topics[2].local_prefix, "local/state");
	assert_string_equal(b->topics[3].local_prefix, "");
	assert_string_equal(b->topics[3].remote_prefix, "up/");
	assert_string_equal(b->remote_clientid, "r1");
	assert_string_equal(b->local_clientid, "l1");
	assert_string_equal(b->remote_username, "u");
	assert_string_equal(b->remote_password, "p");
	assert_true(b->cleansession);
	assert_int_equal(b->protocol_version, 5);
	assert_int_equal(b->keepalive, 5);
	assert_int_equal(b->restart_base, 10);
	assert_int_equal(b->restart_cap, 60);
	assert_false(b->notifications);
	assert_string_equal(b->notification_topic, "bridges/cloud");
	assert_false(b->try_private);
}

static void test_bridge_defaults(void **state)
{
	struct config *c = *state;
	const struct bridge_conf *b;

	parse_ok(c, "connection a");
	parse_ok(c, "restart_timeout 7");
	b = &c->bridges[0];
	assert_null(b->remote_clientid);
	assert_null(b->local_clientid);
	assert_null(b->notification_topic);
	assert_false(b->cleansession);
	assert_true(b->notifications);
	assert_true(b->try_private);
	assert_int_equal(b->protocol_version, 4);
	assert_int_equal(b->keepalive, 60);
	assert_int_equal(b->restart_base, 7);
	assert_int_equal(b->restart_cap, 0);
	assert_int_equal(b->start_type, BRIDGE_START_AUTOMATIC);
}

static void test_bridge_bad_lines(void **state)
{
	struct config *c = *state;

	parse_bad(c, "address 127.0.0.1", "no connection yet");
	parse_bad(c, "topic a/# out", "no connection yet");
	parse_bad(c, "connection", "missing value");
	parse_bad(c, "connection a/b", "may not contain");
	parse_ok(c, "connection a");
	parse_bad(c, "connection a", "already defined at t.conf:7");
	parse_bad(c, "connection a b", "unexpected 'b'");
	parse_bad(c, "address h:0", "must be 1..65535");
	parse_bad(c, "address h:x", "expected a number");
	parse_bad(c, "address :1883", "has no host");
	parse_bad(c, "address a b c d e f g h i", "at most 8");
	parse_bad(c, "topic a/# sideways", "expected out, in or both");
	parse_bad(c, "topic a/# out 3", "must be 0..2");
	parse_bad(c, "topic a/#/b", "not a valid topic filter");
	parse_bad(c, "topic a+/b", "not a valid topic filter");
	parse_bad(c, "topic a/# out 1 x/+ y/", "prefix may not contain");
	parse_bad(c, "topic \"\" out 1 \"\" \"\"", "needs a local or a remote prefix");
	parse_bad(c, "topic a out 1 l r extra", "unexpected 'extra'");
	parse_bad(c, "cleansession yes", "expected true or false");
	parse_bad(c, "bridge_protocol_version mqttv31", "not supported yet");
	parse_bad(c, "bridge_protocol_version 5", "expected mqttv311 or mqttv50");
	parse_bad(c, "keepalive_interval 4", "must be 5..65535");
	parse_bad(c, "restart_timeout 30 10", "below the base");
	parse_bad(c, "restart_timeout 0", "must be 1..86400");
	parse_bad(c, "start_type lazy", "not supported yet");
	parse_bad(c, "start_type once", "not supported yet");
	parse_bad(c, "notification_topic a/#", "not a topic name");
	parse_bad(c, "bridge_cafile /etc/ssl/ca.pem", "bridge_cafile: not supported yet");
	parse_bad(c, "bridge_insecure true", "not supported yet");
	parse_bad(c, "bridge_max_packet_size 1000", "not supported yet");
	parse_bad(c, "bridge_receive_maximum 10", "not supported yet");
	parse_bad(c, "local_username u", "not supported yet");
}

/* A whole block is checked after the last line; the error names its connection line. */
static void check_block_fails(struct config *c, const char *text, const char *what)
{
	char path[64], want[160];

	write_temp(path, text);
	assert_int_equal(config_load(c, path, err, sizeof(err)), -1);
	unlink(path);
	snprintf(want, sizeof(want), "%s:2: connection b %s", path, what);
	assert_string_equal(err, want);
	config_free(c);
	config_defaults(c);
}

static void test_bridge_block_checks(void **state)
{
	struct config *c = *state;
	char path[64];

	check_block_fails(c, "listener 1883\nconnection b\ntopic a out\n", "has no address line");
	check_block_fails(c, "listener 1883\nconnection b\naddress h\n", "has no topic line");
	check_block_fails(c, "\nconnection b\naddress h\ntopic a\nremote_password p\n",
			  "has remote_password without remote_username");
	check_block_fails(c,
			  "\nconnection b\naddress h\ntopic a\nremote_clientid x\n"
			  "local_clientid x\n",
			  "has the same local_clientid and remote_clientid");
	write_temp(path, "\nconnection b\naddress h\ntopic a\nconnection c\naddress h\ntopic b\n");
	assert_int_equal(config_load(c, path, err, sizeof(err)), 0);
	unlink(path);
	assert_int_equal(c->n_bridges, 2);
}

static void shipped_conf_path(char *path, size_t size)
{
	const char *srcdir = getenv("SLUICE_SRCDIR");

	if (srcdir) {
		snprintf(path, size, "%s/conf/sluice.conf", srcdir);
		return;
	}
	/* run by hand from tests/unit in the source tree, or from a build dir beside it */
	snprintf(path, size, "../../conf/sluice.conf");
	if (access(path, R_OK) != 0)
		snprintf(path, size, "conf/sluice.conf");
}

static void test_shipped_conf(void **state)
{
	struct config *c = *state;
	char path[4096];

	shipped_conf_path(path, sizeof(path));
	if (config_load(c, path, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(c->n_listeners, 2);
	assert_int_equal(c->listeners[0].port, 1883);
	assert_string_equal(c->listeners[0].bind_address, "127.0.0.1");
	assert_string_equal(c->listeners[1].bind_address, "127.0.0.1");
	assert_true(c->security.allow_anonymous); /* on this machine only (above) */
	assert_null(c->security.password_file);
	assert_int_equal(c->listeners[0].protocol, LISTENER_MQTT);
	assert_null(c->listeners[0].http_dir);
	assert_int_equal(c->listeners[1].port, 8080);
	assert_int_equal(c->listeners[1].protocol, LISTENER_WEBSOCKETS);
	assert_string_equal(c->listeners[1].http_dir, "./web");
	/* everything else is commented out at its default */
	assert_int_equal(c->max_queued_messages, 1000);
	assert_int_equal(c->max_inflight_messages, 20);
	assert_int_equal(c->log_level, LOG_NOTICE);
	assert_string_equal(c->log_dest, "stderr");
}

/*
 * Every commented-out "#directive value" line of the shipped file must parse
 * when uncommented, and every directive the parser knows must be documented.
 */
static void test_shipped_conf_examples(void **state)
{
	static const char *names[] = {
		"listener", "protocol", "bind_address", "socket_domain", "http_dir",
		"max_queued_messages", "max_queued_bytes", "max_inflight_messages",
		"queue_qos0_messages", "persistent_client_expiration", "max_packet_size",
		"max_keepalive", "max_topic_alias", "max_qos", "retain_available",
		"allow_zero_length_clientid", "auto_id_prefix", "connect_timeout",
		"max_connections", "sys_interval", "log_dest", "log_type",
		"persistence", "persistence_file", "persistence_sync", "persistence_max_bytes",
		"max_queued_in_memory", "plugin_dir", "plugin_opt_max", "allow_anonymous",
		"password_file", "acl_file", "max_connections_per_address", "max_qos0_backlog",
		"memory_limit",
	};
	struct config *c = *state;
	char path[4096], line[4200], want[80];
	int examples = 0;
	FILE *f;
	unsigned long long seen = 0;

	shipped_conf_path(path, sizeof(path));
	f = fopen(path, "r");
	assert_non_null(f);
	/* the active lines the examples follow: a listener and a plugin */
	parse_ok(c, "listener 1");
	parse_ok(c, "protocol websockets");
	parse_ok(c, "plugin delayed");
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			snprintf(want, sizeof(want), "#%s ", names[i]);
			if (strncmp(line, want, strlen(want)) == 0)
				seen |= 1ull << i;
		}
		if (line[0] != '#' || line[1] < 'a' || line[1] > 'z')
			continue;
		parse_ok(c, line + 1);
		examples++;
	}
	fclose(f);
	assert_true(examples >= 20);
	/* "listener", "bind_address", "protocol", "http_dir" and "allow_anonymous" are active */
	seen |= 1ull << 0 | 1ull << 1 | 1ull << 2 | 1ull << 4 | 1ull << 29;
	assert_int_equal(seen, (1ull << (sizeof(names) / sizeof(names[0]))) - 1);
}

/* Out of memory part-way through a load fails cleanly and leaks nothing. */
static void test_load_oom(void **state)
{
	char path[4096];
	int rc = -1;

	(void)state;
	shipped_conf_path(path, sizeof(path));
	for (long n = 0; n < 100 && rc != 0; n++) {
		struct config c;

		config_defaults(&c);
		mem_fail_after(n);
		rc = config_load(&c, path, err, sizeof(err));
		mem_fail_after(-1);
		if (rc != 0)
			assert_non_null(strstr(err, "out of memory"));
		config_free(&c);
	}
	assert_int_equal(rc, 0);
}

static void test_add_listener(void **state)
{
	struct config *c = *state;

	for (int i = 1; i <= 50; i++)
		assert_non_null(config_add_listener(c, i));
	assert_int_equal(c->n_listeners, 50);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(c->listeners[i].port, i + 1);
		assert_int_equal(c->listeners[i].protocol, LISTENER_MQTT);
	}
	mem_fail_after(0);
	assert_null(config_add_listener(c, 51));
	mem_fail_after(-1);
	assert_int_equal(c->n_listeners, 50);
}

/* --- log.c ------------------------------------------------------------------ */

static char *read_file(const char *path)
{
	static char buf[16384];
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* The first line of text must be "TIMESTAMP LEVEL msg". */
static void assert_line_format(const char *text, const char *level, const char *msg)
{
	char pattern[256], line[256];
	regex_t re;
	int rc;

	snprintf(line, sizeof(line), "%.*s", (int)strcspn(text, "\n"), text);

	snprintf(pattern, sizeof(pattern),
		 "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\\.[0-9]{3}Z "
		 "%s %s$",
		 level, msg);
	assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	rc = regexec(&re, line, 0, NULL, 0);
	regfree(&re);
	if (rc != 0)
		fail_msg("'%s' does not match '%s'", line, pattern);
}

/* Runs first: before log_open() the logger writes to stderr at NOTICE. */
static void test_log_defaults(void **state)
{
	(void)state;
	assert_true(log_enabled(LOG_ERR));
	assert_true(log_enabled(LOG_NOTICE));
	assert_false(log_enabled(LOG_INFO));
	assert_false(log_enabled(LOG_DEBUG));
	log_debug("not shown %d", 1);
}

static void make_temp_log(char *path, const char *text)
{
	int fd;

	strcpy(path, "/tmp/sluice-test-log-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_log_file(void **state)
{
	char path[64], *text, *nl;

	(void)state;
	make_temp_log(path, "");
	assert_int_equal(log_open(LOG_INFO, "file", path), 0);
	log_err("broken %s", "pipe");
	log_warn("warned");
	log_notice("noticed %d", 42);
	log_info("informed");
	log_debug("debugged");
	log_msg(LOG_DEBUG, "also not shown");
	log_set_level(LOG_DEBUG);
	log_debug("now shown");
	log_set_level(LOG_ERR);
	log_warn("hidden again");
	log_close();

	text = read_file(path);
	assert_int_equal(count_lines(text), 5);
	nl = text;
	assert_line_format(nl, "ERROR", "broken pipe");
	assert_line_format(nl = strchr(nl, '\n') + 1, "WARNING", "warned");
	assert_line_format(nl = strchr(nl, '\n') + 1, "NOTICE", "noticed 42");
	assert_line_format(nl = strchr(nl, '\n') + 1, "INFO", "informed");
	assert_line_format(nl = strchr(nl, '\n') + 1, "DEBUG", "now shown");
	unlink(path);
}

static void test_log_append_and_truncate(void **state)
{
	char path[64], big[6000], *text;

	(void)state;
	make_temp_log(path, "existing\n");
	assert_int_equal(log_open(LOG_NOTICE, "file", path), 0);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_notice("%s", big);
	log_close();

	text = read_file(path);
	assert_true(strncmp(text, "existing\n", 9) == 0); /* appended, not overwritten */
	text += 9;
	assert_int_equal(count_lines(text), 1);
	assert_int_equal(strlen(text), 4096);
	assert_true(strcmp(text + 4096 - 4, "...\n") == 0);
	assert_true(text[4096 - 5] == 'x');
	unlink(path);
}

static void test_log_reopen(void **state)
{
	char path[64], moved[80], *text;

	(void)state;
	make_temp_log(path, "");
	snprintf(moved, sizeof(moved), "%s.1", path);
	assert_int_equal(log_open(LOG_NOTICE, "file", path), 0);
	log_notice("before rotation");
	assert_int_equal(rename(path, moved), 0);
	log_notice("still old file");
	assert_int_equal(log_reopen(), 0);
	log_notice("after rotation");
	log_close();

	text = read_file(moved);
	assert_int_equal(count_lines(text), 2);
	assert_non_null(strstr(text, "NOTICE before rotation\n"));
	assert_non_null(strstr(text, "NOTICE still old file\n"));
	text = read_file(path);
	assert_int_equal(count_lines(text), 1);
	assert_line_format(text, "NOTICE", "after rotation");
	unlink(path);
	unlink(moved);
}

static void test_log_open_errors(void **state)
{
	(void)state;
	assert_int_equal(log_open(LOG_NOTICE, "file", "/nonexistent/dir/x.log"), -1);
	assert_int_equal(log_open(LOG_NOTICE, "file", NULL), -1);
	assert_int_equal(log_open(LOG_NOTICE, "syslog", NULL), -1);
	assert_int_equal(log_reopen(), 0); /* not a file: nothing to reopen */
	assert_int_equal(log_open(LOG_WARNING, "stderr", NULL), 0);
	assert_false(log_enabled(LOG_NOTICE));
	assert_true(log_enabled(LOG_WARNING));
	log_close();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_defaults),
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listener, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listener_scope, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_listener, setup, teardown),
		cmocka_unit_test_setup_teardown(test_per_listener_settings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_per_listener_settings_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_dir_then_mqtt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_numbers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_qos, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bools, setup, teardown),
		cmocka_unit_test_setup_teardown(test_strings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_security, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tls_directives, setup, teardown),
		cmocka_unit_test_setup_teardown(test_durations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_dest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_log_type_first_wins_over_default, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_load_bad_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_long_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_line_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_nul_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_unknown_directive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge_bad_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge_block_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shipped_conf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shipped_conf_examples, setup, teardown),
		cmocka_unit_test(test_load_oom),
		cmocka_unit_test_setup_teardown(test_add_listener, setup, teardown),
		cmocka_unit_test(test_log_file),
		cmocka_unit_test(test_log_append_and_truncate),
		cmocka_unit_test(test_log_reopen),
		cmocka_unit_test(test_log_open_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
