/*
 * linefile.h - reading a text file line by line, as the configuration,
 * password and ACL files are read: bounded lines, no NUL bytes, "\n" or
 * "\r\n" endings, errors that name the file and the line.
 */
#ifndef SLUICE_LINEFILE_H
#define SLUICE_LINEFILE_H

#include <stddef.h>
#include <stdio.h>

/*
 * One line of f into buf (max + 2 bytes), without its "\n" or "\r\n": 1, 0
 * at the end of the file, -1 when it holds more than max bytes, -2 for a
 * NUL byte in it.
 */
int linefile_read(FILE *f, char *buf, size_t max);

/* Called for each line; 0, or -1 with *why (static text) to stop. */
typedef int (*linefile_fn)(void *arg, char *line, const char **why);

/*
 * Every line of path (at most max bytes each) to fn: 0, or -1 with "PATH:
 * cannot open: ...", "PATH:LINE: why" (a line too long, a NUL byte, or fn's
 * reason), "PATH: read error" or "PATH: out of memory" in err.
 */
int linefile_each(const char *path, size_t max, linefile_fn fn, void *arg, char *err,
		  size_t errlen);

#endif
