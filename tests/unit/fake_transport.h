/*
 * fake_transport.h - the transport under a struct conn in unit tests: a
 * struct conn_ops that only counts what the connection asked of it
 * (writable callbacks, closes, pausing and resuming reads). Pass a
 * struct fake_transport as conn_new()'s transport context.
 */
#ifndef SLUICE_TEST_FAKE_TRANSPORT_H
#define SLUICE_TEST_FAKE_TRANSPORT_H

#include <stdbool.h>

#include "conn.h"

struct fake_transport {
	int want_write, closes, pause, resume;
};

static void fake_want_write(void *t)
{
	((struct fake_transport *)t)->want_write++;
}

static void fake_close(void *t)
{
	((struct fake_transport *)t)->closes++;
}

static void fake_pause(void *t, bool pause)
{
	if (pause)
		((struct fake_transport *)t)->pause++;
	else
		((struct fake_transport *)t)->resume++;
}

static const struct conn_ops fake_ops = { fake_want_write, fake_close, fake_pause, NULL };

#endif
