/*
 * broker.c - start-up, the loop, and shutdown, in dependency order.
 *
 * Start: timers, router, $SYS, then the listeners (last, so no client
 * arrives before the broker can serve it). Stop: close every connection
 * (MQTT 5 clients hear 0x8B), let the loop flush for a short while, end the
 * sessions without publishing wills, then free everything.
 */
#include "autoconfig.h"
#include "broker.h"

#include <string.h>

#include "clock.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "mqtt.h"
#include "msg.h"
#include "plugin.h"
#include "router.h"
#include "session.h"
#include "store.h"
#include "sys_topics.h"

struct broker broker;

/* The store learns every second that the broker is alive (session expiry across a crash). */
static struct timer heartbeat;

static void on_heartbeat(struct timer *t, void *arg)
{
	store_heartbeat(clock_wall_ms());
	broker_timer_add(t, clock_now_ms() + 1000);
}

static void heartbeat_start(void)
{
	timer_init(&heartbeat, on_heartbeat, NULL);
	if (store_on())
		on_heartbeat(&heartbeat, NULL);
}

void broker_timer_add(struct timer *t, uint64_t due_ms)
{
	uint64_t before = timers_next_due(&broker.timers);

	if (timers_add(&broker.timers, t, due_ms)) {
		log_err("out of memory arming a timer");
		return;
	}
	if (due_ms < before)
		listener_timer_changed(due_ms);
}

void broker_timer_del(struct timer *t)
{
	timers_del(&broker.timers, t);
}

uint64_t broker_timers_run(void)
{
	timers_run(&broker.timers, clock_now_ms());
	return timers_next_due(&broker.timers);
}

void broker_request_stop(void)
{
	broker.stop = 1;
	listener_wake();
}

void broker_request_log_reopen(void)
{
	broker.reopen_log = 1;
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
	heartbeat_start();
	return 0;
}

int broker_init(const struct config *cfg)
{
	memset(&broker, 0, sizeof(broker));
	broker.cfg = cfg;
	broker.start_ms = clock_now_ms();
	broker.start_wall_ms = clock_wall_ms();
	timers_init(&broker.timers);
	buf_init(&broker.scratch);
	session_init();
	if (router_init()) {
		log_err("out of memory at start-up");
		return -1;
	}
	if (store_open(cfg) || plugin_load_all(cfg) || restore() || store_start())
		return -1;
	plugin_start();
	if (listener_start(cfg))
		return -1;
	/* Timers armed before the listener existed (restore, heartbeat) need its wake-up. */
	listener_timer_changed(timers_next_due(&broker.timers));
	sys_topics_start();
	log_notice("sluice %s running", PACKAGE_VERSION);
	return 0;
}

int broker_run(void)
{
	while (!broker.stop) {
		if (listener_service() < 0)
			break;
		/* Redis's "before sleep": committed batches answer, the next one goes. */
		store_poll();
		store_kick();
		if (broker.reopen_log) {
			broker.reopen_log = 0;
			if (log_reopen())
				log_err("could not reopen the log file");
			else
				log_notice("log file reopened");
		}
	}
	return 0;
}

void broker_shutdown(void)
{
	uint64_t until;

	log_notice("shutting down");
	broker.stopping = true;
	sys_topics_stop();
	conn_close_all(MQTT_RC_SERVER_SHUTTING_DOWN);
	until = clock_now_ms() + 500;
	while (conn_count() && clock_now_ms() < until) {
		if (listener_service() < 0)
			break;
		store_poll();
		store_kick();
	}
	broker_timer_del(&heartbeat);
	store_heartbeat(clock_wall_ms());
	store_close();
	listener_stop();
	plugin_unload_all();
	session_destroy_all();
	router_free();
	msg_drain_caches();
	conn_drain_caches();
	timers_free(&broker.timers);
	buf_free(&broker.scratch);
	log_notice("stopped");
}
