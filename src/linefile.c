/*
 * linefile.c - line by line reading of the files sluice is given
 * (linefile.h): the configuration file, the password file, the ACL file.
 *
 * Owns nothing between calls. Runs on whatever thread calls it (start-up
 * and the SIGHUP reload on the loop, sluice-passwd, the tests and fuzzers).
 * Reads with getc() into a bounded buffer rather than getline(), so that
 * all memory goes through mem.h and a runaway line is refused at the limit
 * instead of being read whole.
 */
#include "linefile.h"
#include "mem.h"

#include <errno.h>
#include <string.h>

int linefile_read(FILE *f, char *buf, size_t max)
{
	size_t n = 0;
	int ch;

	while ((ch = getc(f)) != EOF && ch != '\n') {
		if (ch == '\0')
			return -2;
		if (n == max + 1)
			return -1; /* room for a '\r' we may strip */
		buf[n++] = (char)ch;
	}
	if (ch == EOF && n == 0)
		return 0;
	if (n && buf[n - 1] == '\r')
		n--;
	if (n > max)
		return -1;
	buf[n] = '\0';
	return 1;
}

static int each_line(FILE *f, char *buf, size_t max, linefile_fn fn, void *arg, int *lineno,
		     const char **why)
{
	int got;

	while ((got = linefile_read(f, buf, max)) != 0) {
		++*lineno;
		*why = got == -1 ? "line too long" : got == -2 ? "NUL byte in line" : NULL;
		if (*why)
			return -1;
		if (fn(arg, buf, why))
			return -1;
	}
	return 0;
}

int linefile_each(const char *path, size_t max, linefile_fn fn, void *arg, char *err, size_t errlen)
{
	const char *why = NULL;
	int lineno = 0, rc;
	char *buf;
	FILE *f;

	if (!(f = fopen(path, "r"))) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (!(buf = mem_alloc(max + 2))) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	rc = each_line(f, buf, max, fn, arg, &lineno, &why);
	mem_free(buf);
	if (rc)
		snprintf(err, errlen, "%s:%d: %s", path, lineno, why ? why : "refused");
	else if (ferror(f))
		snprintf(err, errlen, "%s: read error", path);
	rc = rc || ferror(f) ? -1 : 0;
	fclose(f);
	return rc;
}
