/*
 * config_bridge.h - the "connection NAME" blocks of the configuration file:
 * mosquitto's bridge directives, parsed into struct bridge_conf (config.h).
 * Pointers are borrowed; the config owns what is parsed into it.
 */
#ifndef SLUICE_CONFIG_BRIDGE_H
#define SLUICE_CONFIG_BRIDGE_H

#include <stdarg.h>
#include <stddef.h>

#include "config.h"

/*
 * Applies one split line when argv[0] is a bridge directive. Returns 0, -1
 * with "WHERE: name: what is wrong" in err, or 1 when argv[0] is none.
 */
int config_bridge_line(struct config *c, char **argv, int argc, const char *where, char *err,
		       size_t errlen);
/* After the last line: every block has what it needs. 0, or -1 with "FILE:LINE: ..." in err. */
int config_bridge_check(const struct config *c, char *err, size_t errlen);
void config_bridge_free(struct config *c);
/* Writes "PREFIX: " and the message into err (config.c's errors too); returns -1. */
int config_bridge_verr(char *err, size_t errlen, const char *prefix, const char *fmt, va_list ap);

#endif
