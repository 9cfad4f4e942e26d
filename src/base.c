/*
 * base.c - the shared state of base.h. Loop thread only; the store's writer
 * thread never touches it.
 */
#include "base.h"

#include <string.h>

#include "clock.h"

struct base base;

void base_init(const struct config *cfg)
{
	memset(&base, 0, sizeof(base));
	base.cfg = cfg;
	base.start_ms = clock_now_ms();
	base.start_wall_ms = clock_wall_ms();
	buf_init(&base.scratch);
}

void base_free(void)
{
	buf_free(&base.scratch);
}
