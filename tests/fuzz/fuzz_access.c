/*
 * fuzz_access.c - libFuzzer target for the password file and ACL file
 * parsers (src/passwd.c, src/acl.c), the files a mosquitto user brings.
 *
 * Input: a file. The same bytes are loaded as a password file (pw_load) and
 * as an ACL file (acl_load), through an in-memory file, as the broker reads
 * them at start-up and SIGHUP. Beyond "no crash" and no leak:
 *
 *   - a refusal says "PATH:LINE: ..." (or "PATH: ..." for a whole-file
 *     problem) and nothing is returned;
 *   - a loaded password table finds each of its users by name, and the
 *     verification of a password against it (a wrong one: the empty string
 *     after the user's name) runs to its end and says no, also for a user
 *     that is not there;
 *   - a loaded ACL answers for a client with and without a username, for
 *     reads and writes, on topics taken from the input's own lines and on
 *     $SYS, and its filter check answers too, without crashing; a topic it
 *     denies to everyone is denied to both clients.
 *
 * The iteration counts of $7$ lines are capped here (PBKDF2 cost is the
 * format's, not the parser's): a line with more than 1000 is not verified.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "acl.h"
#include "fuzz.h"
#include "passwd.h"

static int fd = -1;
static char path[64];

static void write_input(const uint8_t *data, size_t size)
{
	if (fd < 0) {
		fd = memfd_create("sluice-fuzz-access", 0);
		fuzz_check(fd >= 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	fuzz_check(ftruncate(fd, 0) == 0);
	fuzz_check(pwrite(fd, data, size, 0) == (ssize_t)size);
}

/* A refusal names the file, and a line unless the whole file was the problem. */
static void check_error(const char *err)
{
	size_t plen = strlen(path);

	fuzz_check(strncmp(err, path, plen) == 0 && err[plen] == ':');
}

/* The names of the input's "user:" lines, up to the colon (at most max). */
static size_t names_of(const uint8_t *data, size_t size, char names[][64], size_t max)
{
	size_t n = 0, i = 0;

	while (i < size && n < max) {
		size_t end = i, colon;

		while (end < size && data[end] != '\n')
			end++;
		for (colon = i; colon < end && data[colon] != ':'; colon++)
			;
		if (colon < end && colon - i < 63 && colon > i) {
			memcpy(names[n], data + i, colon - i);
			names[n][colon - i] = '\0';
			n++;
		}
		i = end + 1;
	}
	return n;
}

static void fuzz_passwords(const uint8_t *data, size_t size)
{
	char err[256] = "", names[16][64];
	struct pw_table *t = pw_load(path, err, sizeof(err));
	size_t n;

	if (!t) {
		check_error(err);
		return;
	}
	n = names_of(data, size, names, 16);
	for (size_t i = 0; i < n; i++) {
		const char *u = names[i] + strspn(names[i], " \t");
		const struct pw_entry *e = pw_find(t, u, strlen(u));

		if (!e)
			continue; /* a comment, blanks around the name, a later duplicate */
		fuzz_check(!strcmp(e->username, u));
		if (e->kind != PW_PBKDF2_SHA512 || e->iterations <= 1000)
			fuzz_check(!pw_verify(e, "\x01wrong\x02", 7));
	}
	fuzz_check(!pw_verify(NULL, "x", 1));
	pw_free(t);
}

/* A topic of the input (the last word of its first line), made a valid topic name. */
static size_t topic_of(const uint8_t *data, size_t size, char *out, size_t max)
{
	size_t end = 0, start, n = 0;

	while (end < size && data[end] != '\n')
		end++;
	start = end;
	while (start > 0 && data[start - 1] != ' ')
		start--;
	for (size_t i = start; i < end && n + 1 < max; i++)
		if (data[i] != '+' && data[i] != '#' && data[i] && data[i] != '\r')
			out[n++] = (char)data[i];
	if (!n)
		out[n++] = 'a';
	out[n] = '\0';
	return n;
}

static void fuzz_acl(const uint8_t *data, size_t size)
{
	static const char *const topics[] = { "a", "a/b", "$SYS/broker/uptime", "c1/x" };
	char err[256] = "", own[128];
	struct acl_table *t = acl_load(path, err, sizeof(err));
	size_t ol;

	if (!t) {
		check_error(err);
		return;
	}
	ol = topic_of(data, size, own, sizeof(own));
	for (size_t i = 0; i <= sizeof(topics) / sizeof(topics[0]); i++) {
		const char *tp = i < sizeof(topics) / sizeof(topics[0]) ? topics[i] : own;
		size_t tl = i < sizeof(topics) / sizeof(topics[0]) ? strlen(tp) : ol;

		for (int a = ACL_READ; a <= ACL_WRITE; a++) {
			(void)acl_check(t, "c1", NULL, tp, tl, (enum acl_access)a);
			(void)acl_check(t, "c1", "alice", tp, tl, (enum acl_access)a);
			(void)acl_check(t, "c+", "bo#b", tp, tl, (enum acl_access)a);
		}
	}
	(void)acl_check_filter(t, "c1", NULL, "#", 1);
	(void)acl_check_filter(t, "c1", "alice", "a/+/b", 5);
	(void)acl_check_filter(t, "c1", "alice", "$SYS/#", 6);
	acl_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	write_input(data, size);
	fuzz_passwords(data, size);
	fuzz_acl(data, size);
	return 0;
}
