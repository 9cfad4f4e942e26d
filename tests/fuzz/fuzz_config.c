/*
 * fuzz_config.c - libFuzzer target for the configuration line parser.
 *
 * Input: a configuration file. Each line goes to config_parse_line() in
 * order, as config_load() would do, until the first error. The same bytes
 * also go to config_load() through an in-memory file, which adds the line
 * reader (CRLF, NUL bytes, overlong lines).
 *
 * The same lines are parsed twice, into two configs: once with a roomy error
 * buffer and once with a tiny one (or none), so that every message is also
 * cut short. Beyond "no crash" and no leak:
 *
 *   - both passes stop at the same line with the same result, and end with
 *     the same configuration (the error buffer never changes what is parsed);
 *   - an error always leaves a message "fuzz:LINE: ..." in the roomy buffer,
 *     NUL-terminated within it, and nothing past the tiny buffer's end;
 *   - a file that parses whole leaves a configuration within its documented
 *     ranges (ports 1..65535, QoS 0..2, a non-zero inflight window, a known
 *     log destination with a file exactly when it is "file", http_dir only
 *     on websockets listeners); so does a file that config_load() accepts,
 *     and its errors are "PATH:LINE: ..." too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

#define ERR_ROOMY 512
#define ERR_TINY 8
#define CANARY 0x5a

struct pass {
	struct config c;
	char *err; /* NULL for the pass without an error buffer */
	size_t errlen;
	int rc;
	int lineno; /* of the error, or 0 */
};

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static void same_config(const struct config *a, const struct config *b)
{
	fuzz_check(a->n_listeners == b->n_listeners);
	for (size_t i = 0; i < a->n_listeners; i++) {
		const struct listener_conf *x = &a->listeners[i], *y = &b->listeners[i];

		fuzz_check(x->port == y->port && x->protocol == y->protocol);
		fuzz_check(x->socket_domain == y->socket_domain);
		fuzz_check(str_eq(x->bind_address, y->bind_address));
		fuzz_check(str_eq(x->http_dir, y->http_dir));
	}
	fuzz_check(a->max_queued_messages == b->max_queued_messages);
	fuzz_check(a->max_queued_bytes == b->max_queued_bytes);
	fuzz_check(a->max_inflight_messages == b->max_inflight_messages);
	fuzz_check(a->queue_qos0_messages == b->queue_qos0_messages);
	fuzz_check(a->persistent_client_expiration == b->persistent_client_expiration);
	fuzz_check(a->max_packet_size == b->max_packet_size);
	fuzz_check(a->max_keepalive == b->max_keepalive);
	fuzz_check(a->max_topic_alias == b->max_topic_alias);
	fuzz_check(a->max_qos == b->max_qos);
	fuzz_check(a->retain_available == b->retain_available);
	fuzz_check(a->allow_zero_length_clientid == b->allow_zero_length_clientid);
	fuzz_check(str_eq(a->auto_id_prefix, b->auto_id_prefix));
	fuzz_check(a->connect_timeout == b->connect_timeout);
	fuzz_check(a->max_connections == b->max_connections);
	fuzz_check(a->sys_interval == b->sys_interval);
	fuzz_check(a->log_level == b->log_level);
	fuzz_check(str_eq(a->log_dest, b->log_dest));
	fuzz_check(str_eq(a->log_file, b->log_file));
}

/* The documented ranges of a configuration that parsed without error. */
static void check_ranges(const struct config *c)
{
	for (size_t i = 0; i < c->n_listeners; i++) {
		const struct listener_conf *l = &c->listeners[i];

		fuzz_check(l->port >= 1 && l->port <= 65535);
		fuzz_check(l->socket_domain == 0 || l->socket_domain == 4 ||
			   l->socket_domain == 6);
		fuzz_check(!l->http_dir || l->protocol == LISTENER_WEBSOCKETS);
	}
	fuzz_check(c->max_inflight_messages >= 1);
	fuzz_check(c->max_packet_size == 0 || c->max_packet_size >= 20);
	fuzz_check(c->max_qos <= 2);
	fuzz_check(c->connect_timeout >= 1 && c->connect_timeout <= 3600);
	fuzz_check(c->max_connections >= -1);
	fuzz_check(c->sys_interval <= 86400);
	fuzz_check(c->log_level >= LOG_ERR && c->log_level <= LOG_DEBUG);
	fuzz_check(c->auto_id_prefix && strlen(c->auto_id_prefix) >= 1 &&
		   strlen(c->auto_id_prefix) <= 64);
	fuzz_check(str_eq(c->log_dest, "stderr") || str_eq(c->log_dest, "stdout") ||
		   str_eq(c->log_dest, "file"));
	fuzz_check(str_eq(c->log_dest, "file") == (c->log_file != NULL));
}

static void check_message(const struct pass *p, int lineno)
{
	char prefix[32];
	int n;

	if (!p->err)
		return;
	for (size_t i = p->errlen; i < p->errlen + 8; i++)
		fuzz_check((uint8_t)p->err[i] == CANARY);
	if (p->rc == 0)
		return;
	fuzz_check(memchr(p->err, '\0', p->errlen) != NULL);
	if (p->errlen < ERR_ROOMY)
		return;
	n = snprintf(prefix, sizeof(prefix), "fuzz:%d: ", lineno);
	fuzz_check(strncmp(p->err, prefix, (size_t)n) == 0);
	fuzz_check(strlen(p->err) > (size_t)n);
}

/* Parses the lines of data into p->c until the first error. */
static void parse(struct pass *p, const uint8_t *data, size_t size)
{
	size_t pos = 0, end;
	int lineno = 0;
	char *line;

	config_defaults(&p->c);
	p->rc = 0;
	p->lineno = 0;
	while (pos < size && p->rc == 0) {
		end = pos;
		while (end < size && data[end] != '\n')
			end++;
		line = malloc(end - pos + 1); /* exact size: ASan sees overruns */
		fuzz_check(line != NULL);
		memcpy(line, data + pos, end - pos);
		line[end - pos] = '\0';
		lineno++;
		if (p->err)
			memset(p->err, CANARY, p->errlen + 8);
		p->rc = config_parse_line(&p->c, line, "fuzz", lineno, p->err, p->errlen);
		fuzz_check(p->rc == 0 || p->rc == -1);
		check_message(p, lineno);
		free(line);
		pos = end + 1;
	}
	if (p->rc)
		p->lineno = lineno;
}

/* config_load() on the same bytes, written to a memory-backed file. */
static void load(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	char err[ERR_ROOMY];
	struct config c;
	size_t plen;

	if (fd < 0) {
		fd = memfd_create("sluice-fuzz.conf", 0);
		fuzz_check(fd >= 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	fuzz_check(ftruncate(fd, 0) == 0);
	fuzz_check(pwrite(fd, data, size, 0) == (ssize_t)size);
	config_defaults(&c);
	err[0] = '\0';
	if (config_load(&c, path, err, sizeof(err)) == 0) {
		check_ranges(&c);
	} else {
		plen = strlen(path);
		fuzz_check(strncmp(err, path, plen) == 0 && err[plen] == ':');
	}
	config_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char roomy[ERR_ROOMY + 8], tiny[ERR_TINY + 8];
	struct pass a = { .err = roomy, .errlen = ERR_ROOMY };
	struct pass b = { .err = tiny, .errlen = ERR_TINY };

	/* The first byte's low bit drops the tiny buffer altogether. */
	if (size > 0 && (data[0] & 1))
		b.err = NULL, b.errlen = 0;
	parse(&a, data, size);
	parse(&b, data, size);
	fuzz_check(a.rc == b.rc && a.lineno == b.lineno);
	same_config(&a.c, &b.c);
	if (a.rc == 0)
		check_ranges(&a.c);
	config_free(&a.c);
	config_free(&b.c);
	load(data, size);
	return 0;
}
