/*
 * broker.c - start-up, the loop, and shutdown, in dependency order. Runs on
 * the loop thread (the request_* functions also from signal handlers).
 *
 * This is the top of the broker (only main.c is above it): the one place
 * that knows every layer, and so the place that wires the upward paths the
 * lower layers only see as tables and hooks: the transport's timer wake-up
 * (timers_on_change), the packet handler of connections (conn_set_handler),
 * the store writer's wake-up (store_start), the host table plugins are
 * given (plugin_load_all); the router makes itself the listener of session
 * events in router_init().
 *
 * Start: base state, router, store, plugins, restore, the writer thread,
 * START, then the listeners (last, so no client arrives before the broker
 * can serve it), then $SYS. Stop: close every connection (MQTT 5 clients
 * hear 0x8B), let the loop flush for a short while, commit and close the
 * store, STOP the plugins, end the sessions without publishing wills, then
 * free everything.
 *
 * SIGHUP (reload) reopens the log file and reads the password and ACL files
 * and the TLS certificates again; a file that fails to load leaves the old
 * one in force.
 *
 * Invariant: stop and reload are the only state a signal handler
 * touches; the loop looks at them after every turn.
 */
#include "autoconfig.h"
#include "broker.h"
#include "bridge.h"

#include <inttypes.h>
#include <string.h>

#include "auth.h"
#include "base.h"
#include "clock.h"
#include "conn.h"
#include "groupq.h"
#include "holds.h"
#include "listener.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "msg.h"
#include "outq.h"
#include "plugin.h"
#include "plugin_host.h"
#include "proto.h"
#include "router.h"
#include "session.h"
#include "store.h"
#include "sys_topics.h"
#include "timers.h"

static volatile sig_atomic_t stop, reload;

/* The store learns every second that the broker is alive (session expiry across a crash). */
static struct timer heartbeat;

static void on_heartbeat(struct timer *t, void *arg)
{
	store_heartbeat(clock_wall_ms());
	timer_arm(t, clock_now_ms() + 1000);
}

static void heartbeat_start(void)
{
	timer_init(&heartbeat, on_heartbeat, NULL);
	if (store_on())
		on_heartbeat(&heartbeat, NULL);
}

void broker_request_stop(void)
{
	stop = 1;
	listener_wake();
}

void broker_request_reload(void)
{
	reload = 1;
	listener_wake();
}

static int restore_retained(struct msg *m, void *arg)
{
	return router_restore_retained(m);
}

static int restore_kv(const char *plugin, const void *k, size_t kl, const void *v, size_t vl,
		      void *arg)
{
	return plugin_kv_restore(plugin, k, kl, v, vl);
}

/* Reads the store back: sessions, their queues, retained messages, plugin state. */
static int restore(void)
{
	struct store_restore_ops ops;
	uint64_t last_alive = 0;

	memset(&ops, 0, sizeof(ops));
	session_restore_ops(&ops);
	ops.retained = restore_retained;
	ops.kv = restore_kv;
	if (store_restore(&ops, &last_alive)) {
		log_err("store: could not read the database back; refusing to start");
		return -1;
	}
	session_restore_finish(last_alive);
	router_groups_restored();
	heartbeat_start();
	return 0;
}

/*
 * memory_limit applies from here on: what the restore brought back is
 * counted but never refused, so that a broker always starts again with its
 * state (one whose state alone is over the limit says so and serves no new
 * connection until it holds less).
 */
static void start_memory_limit(const struct config *cfg)
{
	if (!cfg->memory_limit)
		return;
	mem_set_limit(cfg->memory_limit);
	log_notice("memory_limit %" PRIu64 " bytes; %" PRIu64 " counted now", cfg->memory_limit,
		   mem_counted());
	if (mem_over_limit())
		log_warn("memory_limit is reached already: no new connection is served until the "
			 "broker holds less");
}

int broker_init(const struct config *cfg)
{
	base_init(cfg);
	timers_on_change(listener_timer_changed);
	conn_set_handler(&proto_conn_handler);
	outq_start();
	if (router_init()) {
		log_err("out of memory at start-up");
		return -1;
	}
	if (auth_init(cfg) || store_open(cfg) || plugin_load_all(cfg, plugin_host_table()) ||
	    restore() || store_start(listener_wake))
		return -1;
	plugin_start();
	start_memory_limit(cfg);
	if (listener_start(cfg))
		return -1;
	/* Timers armed before the listener existed (restore, heartbeat) need its wake-up. */
	listener_timer_changed(timers_loop_next());
	sys_topics_start();
	if (bridge_start_all(cfg)) {
		log_err("out of memory starting the bridges");
		return -1;
	}
	log_notice("sluice %s running", PACKAGE_VERSION);
	return 0;
}

/* SIGHUP: the log file, the password and ACL files, certificates (each keeps its old self on failure). */
static void reload_files(void)
{
	reload = 0;
	if (log_reopen())
		log_err("could not reopen the log file");
	else
		log_notice("log file reopened");
	auth_reload();
	listener_reload();
}

int broker_run(void)
{
	while (!stop) {
		if (listener_service() < 0)
			break;
		/* Redis's "before sleep": committed batches answer, the next one goes. */
		store_poll();
		store_kick();
		if (reload)
			reload_files();
	}
	return 0;
}

void broker_shutdown(void)
{
	uint64_t until;

	log_notice("shutting down");
	base.stopping = true;
	mem_set_limit(0); /* shutdown allocates a little, and must not fail for the limit */
	sys_topics_stop();
	bridge_stop_all(); /* their local sessions go offline gracefully, as a client's would */
	conn_close_all(MQTT_RC_SERVER_SHUTTING_DOWN);
	until = clock_now_ms() + 500;
	while (conn_count() && clock_now_ms() < until) {
		if (listener_service() < 0)
			break;
		store_poll();
		store_kick();
	}
	timer_disarm(&heartbeat);
	store_heartbeat(clock_wall_ms());
	store_close();
	listener_stop();
	plugin_stop();
	plugin_host_stop();
	holds_clear();
	plugin_unload_all();
	groupq_stop();
	session_destroy_all();
	groupq_free_all();
	router_free();
	auth_shutdown();
	msg_drain_caches();
	conn_drain_caches();
	timers_loop_free();
	base_free();
	log_notice("stopped");
}
