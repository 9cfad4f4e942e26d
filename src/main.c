/*
 * main.c - the sluice command line: options, configuration, signals, and
 * the exit status. Everything else is in the broker library.
 *
 * Exit status: 0 after a clean stop, 1 when start-up failed (bad option,
 * bad configuration, listener not available), with the reason on stderr
 * or in the log.
 */
#include "autoconfig.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bridge.h"
#include "broker.h"
#include "config.h"
#include "log.h"
#include "mem.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: sluice [-c FILE] [-p PORT] [-v]\n"
		   "MQTT 3.1, 3.1.1 and 5.0 broker, durable by default, extended by plugins\n"
		   "(see the README).\n\n"
		   "  -c, --config FILE  read the configuration from FILE\n"
		   "  -p, --port PORT    listen for MQTT on PORT of 127.0.0.1 and ::1 (instead of\n"
		   "                     the default 1883 when the configuration has no listener,\n"
		   "                     else in addition)\n"
		   "  -v, --verbose      log everything (log_type all)\n"
		   "  -h, --help         show this help\n"
		   "      --version      show the version\n");
}

static void on_stop(int sig)
{
	broker_request_stop();
}

static void on_hup(int sig)
{
	broker_request_reload();
}

static void set_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

/*
 * Thousands of clients need thousands of descriptors: raise the soft limit
 * to the hard one (lws sizes its tables from it when the context is made).
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int parse_port(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 1 || v > 65535)
		return -1;
	return (int)v;
}

struct options {
	const char *config_file;
	int port;
	int verbose;
};

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "port", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "c:p:vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config_file = optarg;
			break;
		case 'p':
			o->port = parse_port(optarg);
			if (o->port < 0) {
				fprintf(stderr, "sluice: -p: '%s' is not a port (1-65535)\n",
					optarg);
				return 1;
			}
			break;
		case 'v':
			o->verbose = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("sluice %s\n", PACKAGE_VERSION);
			exit(0);
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sluice: unexpected argument '%s'\n", argv[optind]);
		return 1;
	}
	return 0;
}

/*
 * No listener configured (or -p): mosquitto 2's local only mode, a listener
 * on the loopback addresses that lets anonymous clients in unless the file
 * said otherwise (-p beside configured listeners only adds the listener).
 */
static int local_only(struct config *cfg, int port)
{
	bool configured = cfg->n_listeners > 0; /* and -p adds one more */

	static const struct {
		const char *addr;
		int domain; /* socket_domain */
	} loopback[] = { { "127.0.0.1", 4 }, { "::1", 6 } };

	for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
		struct listener_conf *l = config_add_listener(cfg, port);

		if (!l || !(l->bind_address = mem_strdup(loopback[i].addr)))
			return -1;
		l->socket_domain = loopback[i].domain;
		/* per_listener_settings: the lines before any listener are these listeners' */
		l->default_security = true;
	}
	if (!configured && !cfg->security.allow_anonymous_set)
		cfg->security.allow_anonymous = true;
	return 0;
}

static int load_config(struct config *cfg, const struct options *o)
{
	char err[512];

	config_defaults(cfg);
	if (o->config_file && config_load(cfg, o->config_file, err, sizeof(err))) {
		fprintf(stderr, "sluice: %s\n", err);
		return -1;
	}
	if (bridge_check(cfg, err, sizeof(err))) {
		fprintf(stderr, "sluice: %s\n", err);
		return -1;
	}
	if ((o->port || !cfg->n_listeners) && local_only(cfg, o->port ? o->port : 1883)) {
		fprintf(stderr, "sluice: out of memory\n");
		return -1;
	}
	if (o->verbose)
		cfg->log_level = LOG_DEBUG;
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = { NULL, 0, 0 };
	struct config cfg;
	int rc = 1;

	if (parse_args(argc, argv, &o))
		return 1;
	if (load_config(&cfg, &o))
		goto out;
	if (log_open(cfg.log_level, cfg.log_dest, cfg.log_file)) {
		fprintf(stderr, "sluice: cannot open log file '%s'\n", cfg.log_file);
		goto out;
	}
	set_signals();
	raise_fd_limit();
	if (broker_init(&cfg) == 0) {
		broker_run();
		rc = 0;
	}
	broker_shutdown();
	log_close();
out:
	config_free(&cfg);
	return rc;
}
