/*
 * plugin_harness.h - the life cycle every plugin unit test drives against
 * the fake host (fake_host.h): load and start, stop and unload with the
 * checks that nothing is left behind, a crash, and the cmocka fixtures.
 *
 * Included once by a test program after cmocka.h. The test links one
 * plugin's sources, whose three entry points are declared here, and
 * defines `static int up(void)` (load and start with its options), which
 * setup() calls.
 */
#ifndef SLUICE_TESTS_PLUGIN_HARNESS_H
#define SLUICE_TESTS_PLUGIN_HARNESS_H

#include "fake_host.h"

int sluice_plugin_version(void);
int sluice_plugin_init(const struct sp_host *host, struct sp_plugin *self,
		       const struct sp_opt *opts, int n_opts, void **udata);
void sluice_plugin_cleanup(void *udata);

static int up(void);

static int up_with(const struct sp_opt *o, int n)
{
	if (fake_load(sluice_plugin_init, o, n))
		return -1;
	return fake_start();
}

/* As at shutdown: STOP leaves no timer, cleanup leaves no block or message of its own. */
static void down(void)
{
	assert_int_equal(fake_stop(), 0);
	assert_int_equal(fake_timers(), 0);
	fake_unload(sluice_plugin_cleanup);
	assert_int_equal(fake_live_blocks(), 0);
	assert_int_equal(fake_live_msgs(), fake_routed_count());
}

/* The end of every test: down(), and no message or misuse left. */
static void finish(void)
{
	down();
	fake_routed_clear();
	assert_int_equal(fake_live_msgs(), 0);
	assert_int_equal(fake_misuse(), 0);
}

static int setup(void **state)
{
	(void)state;
	fake_reset();
	return up();
}

static int setup_bare(void **state)
{
	(void)state;
	fake_reset();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (fake_loaded()) {
		fake_stop();
		fake_unload(sluice_plugin_cleanup);
	}
	fake_reset();
	return 0;
}

#endif
