/*
 * log.h - levelled, timestamped log lines to stderr, stdout or a file.
 *
 * Lines look like "2026-11-21T07:04:49.123Z NOTICE message". log_reopen()
 * reopens the file (SIGHUP, for log rotation); the signal handler only sets
 * a flag and the loop calls log_reopen().
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include "config.h"

/* dest is "stderr", "stdout" or "file" (then path). Returns 0 or -1 (file not writable). */
int log_open(enum log_level level, const char *dest, const char *path);
int log_reopen(void);
void log_close(void);
void log_set_level(enum log_level level);
int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                   \
	do {                                             \
		if (log_enabled(LOG_DEBUG))              \
			log_msg(LOG_DEBUG, __VA_ARGS__); \
	} while (0)

#endif
