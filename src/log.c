/*
 * log.c - levelled, timestamped log lines.
 *
 * One line is formatted on the stack and leaves in one write() on a file
 * descriptor: 2 (stderr), 1 (stdout) or a file opened with O_APPEND. A single
 * write on an O_APPEND descriptor lands whole at the end of the file, so two
 * threads (the loop and the store thread) never interleave halves of lines,
 * and nothing is buffered that a crash could lose. A line too long for the
 * buffer is cut and ends in "...".
 *
 * Rotation: the loop calls log_reopen() after SIGHUP. It opens the path
 * afresh and dup3()s the new descriptor onto the old number, so the number a
 * concurrent writer holds always names an open file: the old one until the
 * swap, the new one after. If the path cannot be opened the old file stays.
 *
 * Until log_open() is called everything at NOTICE or above goes to stderr,
 * so start-up errors (a bad configuration line) are never lost. log_msg()
 * keeps errno as it found it, so a caller may log and then inspect errno.
 */
#define _GNU_SOURCE /* dup3 */
#include "log.h"
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static int log_fd = 2;
static enum log_level log_level_now = LOG_NOTICE;
static char *log_path; /* set when the destination is a file */

static const char *level_name(enum log_level level)
{
	switch (level) {
	case LOG_ERR:
		return "ERROR";
	case LOG_WARNING:
		return "WARNING";
	case LOG_NOTICE:
		return "NOTICE";
	case LOG_INFO:
		return "INFO";
	default:
		return "DEBUG";
	}
}

static int open_file(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

int log_open(enum log_level level, const char *dest, const char *path)
{
	int fd;
	char *copy;

	if (!dest || strcmp(dest, "stderr") == 0) {
		fd = 2;
	} else if (strcmp(dest, "stdout") == 0) {
		fd = 1;
	} else if (strcmp(dest, "file") == 0 && path) {
		if (!(copy = mem_strdup(path)))
			return -1;
		if ((fd = open_file(path)) < 0) {
			mem_free(copy);
			return -1;
		}
		log_close();
		log_path = copy;
	} else {
		return -1;
	}
	if (fd <= 2)
		log_close();
	log_fd = fd;
	log_level_now = level;
	return 0;
}

int log_reopen(void)
{
	int fd;

	if (!log_path)
		return 0;
	fd = open_file(log_path);
	if (fd < 0)
		return -1;
	if (dup3(fd, log_fd, O_CLOEXEC) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

void log_close(void)
{
	int fd = log_fd;

	log_fd = 2;
	if (log_path) {
		close(fd);
		mem_free(log_path);
		log_path = NULL;
	}
}

void log_set_level(enum log_level level)
{
	log_level_now = level;
}

int log_enabled(enum log_level level)
{
	return level <= log_level_now;
}

/* "2026-11-21T07:04:49.123Z NOTICE "; returns its length. */
static size_t format_prefix(char *buf, size_t size, enum log_level level)
{
	struct timespec ts;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, level_name(level));
	return n < 0 ? 0 : (size_t)n;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	int saved = errno;
	size_t len, room;
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	/* room for the message leaves one byte for '\n' (the NUL's place is reused) */
	len = format_prefix(line, sizeof(line), level);
	room = sizeof(line) - len;
	va_start(ap, fmt);
	n = vsnprintf(line + len, room, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= room) {
		len = sizeof(line) - 1;
		memcpy(line + len - 3, "...", 3);
	} else {
		len += (size_t)n;
	}
	line[len++] = '\n';
	while (write(log_fd, line, len) < 0 && errno == EINTR)
		;
	errno = saved;
}
