/*
 * test_acl.c - mosquitto's ACL file (acl.c).
 *
 * What each case expects was first checked against Debian 12's mosquitto
 * 2.0.11 (acl_file plus a password file, mosquitto_pub/mosquitto_sub with
 * -i/-u/-P): every access word and a line without one, a deny before and
 * after a grant, anonymous lines against users, a user named twice, a user
 * the file does not name, %c and %u (names with '/', %u skipped without a
 * username), '+' and '#' in client ids and usernames, '#' and "+/..."
 * against $SYS, a filter with spaces, CRLF lines, and the lines mosquitto
 * refuses ("topic a b", "topic READ a", "topic", "user", "a/#/b").
 *
 * Then acl_check_filter's overlap and deny-cover cases, the exact
 * "PATH:LINE: why" of every refused file, acl_rules, and out of memory at
 * each allocation of acl_load and of a check with long names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "temp_file.h"

#include "acl.h"
#include "mem.h"

/* acl.c's longest line, without its end */
#define LINE_MAX_BYTES 65536
/* longer than acl.c's 512-byte buffer for a pattern put in for a client */
#define LONG_NAME 1500

/* --- helpers ------------------------------------------------------------------ */

static char path[64];
static char err[512];

/* Writes len bytes of text to a new temporary file (its name in path). */
static void write_file(const char *text, size_t len)
{
	temp_file_write(path, sizeof(path), text, len);
}

/* The text must load; the caller frees the table. */
static struct acl_table *load(const char *text)
{
	struct acl_table *t;

	write_file(text, strlen(text));
	err[0] = '\0';
	t = acl_load(path, err, sizeof(err));
	unlink(path);
	if (!t)
		fail_msg("refused: '%s'", err);
	return t;
}

/* The text (len bytes) must fail to load with exactly "PATH" + rest as the message. */
static void load_fails(const char *text, size_t len, const char *rest)
{
	char want[600];
	struct acl_table *t;

	write_file(text, len);
	err[0] = '\0';
	t = acl_load(path, err, sizeof(err));
	unlink(path);
	if (t) {
		acl_free(t);
		fail_msg("loaded, want '%s'", rest);
	}
	snprintf(want, sizeof(want), "%s%s", path, rest);
	assert_string_equal(err, want);
}

static void refused(const char *text, const char *rest)
{
	load_fails(text, strlen(text), rest);
}

static bool rd(const struct acl_table *t, const char *cid, const char *user, const char *topic)
{
	return acl_check(t, cid, user, topic, strlen(topic), ACL_READ);
}

static bool wr(const struct acl_table *t, const char *cid, const char *user, const char *topic)
{
	return acl_check(t, cid, user, topic, strlen(topic), ACL_WRITE);
}

static bool sub(const struct acl_table *t, const char *cid, const char *user, const char *filter)
{
	return acl_check_filter(t, cid, user, filter, strlen(filter));
}

/* n copies of ch (n < size). */
static char *repeat(char *buf, size_t size, char ch, size_t n)
{
	assert_true(n < size);
	memset(buf, ch, n);
	buf[n] = '\0';
	return buf;
}

/* --- access words and deny ---------------------------------------------------- */

static void test_access_words(void **state)
{
	struct acl_table *t = load("topic read r/#\n"
				   "topic write w/#\n"
				   "topic readwrite rw/#\n"
				   "topic none/#\n"
				   "topic deny rw/denied\n"
				   "topic read\n");

	assert_true(rd(t, "c", NULL, "r/x"));
	assert_false(wr(t, "c", NULL, "r/x"));
	assert_false(rd(t, "c", NULL, "w/x"));
	assert_true(wr(t, "c", NULL, "w/x"));
	assert_true(rd(t, "c", NULL, "rw/x"));
	assert_true(wr(t, "c", NULL, "rw/x"));
	/* no access word: readwrite */
	assert_true(rd(t, "c", NULL, "none/x"));
	assert_true(wr(t, "c", NULL, "none/x"));
	assert_false(rd(t, "c", NULL, "rw/denied"));
	assert_false(wr(t, "c", NULL, "rw/denied"));
	/* a lone word is the filter, even an access word (readwrite) */
	assert_true(rd(t, "c", NULL, "read"));
	assert_true(wr(t, "c", NULL, "read"));
	/* what the file does not grant is denied */
	assert_false(rd(t, "c", NULL, "other"));
	assert_false(wr(t, "c", NULL, "rwx"));
	assert_true(wr(t, "c", NULL, "rw")); /* "rw/#" matches its parent */
	acl_free(t);
}

static void test_deny_wins_over_earlier_and_later_grant(void **state)
{
	struct acl_table *t = load("topic readwrite x/#\n"
				   "topic deny x/secret\n"
				   "topic readwrite x/secret\n"
				   "user alice\n"
				   "topic read a/#\n"
				   "topic deny a/+/hidden\n"
				   "topic read a/b/hidden\n"
				   "pattern readwrite p/%c/#\n"
				   "pattern deny p/%c/secret\n"
				   "pattern read p/%c/secret\n");

	assert_true(rd(t, "c", NULL, "x/open"));
	assert_false(rd(t, "c", NULL, "x/secret"));
	assert_false(wr(t, "c", NULL, "x/secret"));
	assert_true(rd(t, "c", NULL, "x/secret/deeper"));
	assert_true(rd(t, "c", "alice", "a/b"));
	assert_false(rd(t, "c", "alice", "a/b/hidden"));
	assert_true(rd(t, "c", "alice", "p/c/open"));
	assert_false(rd(t, "c", "alice", "p/c/secret"));
	assert_false(rd(t, "c", NULL, "p/c/secret"));
	assert_false(wr(t, "c", NULL, "p/c/secret"));
	acl_free(t);
}

/* The client's own list decides first: its deny beats a pattern; a grant of the other access does not stop the search. */
static void test_own_list_before_patterns(void **state)
{
	struct acl_table *t = load("topic deny d/#\n"
				   "topic read o/x\n"
				   "pattern readwrite d/#\n"
				   "pattern write o/x\n");

	assert_false(rd(t, "c", NULL, "d/x"));
	assert_false(wr(t, "c", NULL, "d/x"));
	assert_true(rd(t, "c", NULL, "o/x"));
	assert_true(wr(t, "c", NULL, "o/x")); /* from the pattern */
	/* a user the file does not name has no own list: the pattern grants */
	assert_true(rd(t, "c", "carol", "d/x"));
	acl_free(t);
}

/* --- sections ------------------------------------------------------------------- */

static void test_sections(void **state)
{
	struct acl_table *t = load("topic read anon/#\n"
				   "user alice\n"
				   "topic read alice/#\n"
				   "user bob\n"
				   "topic read bob/#\n"
				   "user alice\n"
				   "topic write alice2/#\n"
				   "pattern read all/#\n");

	assert_true(rd(t, "c", NULL, "anon/x"));
	assert_false(rd(t, "c", NULL, "alice/x"));
	assert_false(rd(t, "c", NULL, "bob/x"));
	/* anonymous lines do not apply to users, nor a user's to anyone else */
	assert_false(rd(t, "c", "alice", "anon/x"));
	assert_true(rd(t, "c", "alice", "alice/x"));
	assert_false(rd(t, "c", "alice", "bob/x"));
	assert_true(rd(t, "c", "bob", "bob/x"));
	assert_false(rd(t, "c", "bob", "alice/x"));
	/* a user named twice has the rules of both sections */
	assert_true(wr(t, "c", "alice", "alice2/x"));
	assert_false(rd(t, "c", "alice", "alice2/x"));
	assert_false(wr(t, "c", "bob", "alice2/x"));
	/* a user the file does not name gets only the patterns; so does "" */
	assert_false(rd(t, "c", "carol", "anon/x"));
	assert_false(rd(t, "c", "carol", "alice/x"));
	assert_true(rd(t, "c", "carol", "all/x"));
	assert_false(rd(t, "c", "", "anon/x"));
	assert_true(rd(t, "c", "", "all/x"));
	assert_true(rd(t, "c", NULL, "all/x"));
	assert_true(rd(t, "c", "alice", "all/x"));
	acl_free(t);
}

/* Names out of order, prefixes of each other, more than one allocation's worth: each finds its own. */
static void test_many_users(void **state)
{
	static const char *names[] = { "zed",	  "al",	   "alice", "ali", "bob",    "b",
				       "mallory", "carol", "dave",  "eve", "al ice", "A" };
	char text[2048] = "", line[64];
	struct acl_table *t;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(line, sizeof(line), "user %s\ntopic read own/%s\n", names[i], names[i]);
		strcat(text, line);
	}
	t = load(text);
	assert_int_equal(acl_rules(t), sizeof(names) / sizeof(names[0]));
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		for (size_t j = 0; j < sizeof(names) / sizeof(names[0]); j++) {
			snprintf(line, sizeof(line), "own/%s", names[j]);
			if (rd(t, "c", names[i], line) != (i == j))
				fail_msg("user '%s', topic '%s'", names[i], line);
		}
	}
	assert_false(rd(t, "c", "alic", "own/alice"));
	assert_false(rd(t, "c", "a", "own/A"));
	acl_free(t);
}

/* --- patterns ------------------------------------------------------------------- */

static void test_pattern_substitution(void **state)
{
	struct acl_table *t = load("pattern readwrite dev/%c/#\n"
				   "pattern read users/%u/#\n"
				   "pattern read both/%u/%c\n"
				   "pattern read twice/%c/%c\n"
				   "pattern read lit/%x/%\n");

	assert_true(rd(t, "c1", "u1", "dev/c1/x"));
	assert_true(wr(t, "c1", "u1", "dev/c1/x"));
	assert_false(rd(t, "c1", "u1", "dev/c2/x"));
	assert_true(rd(t, "c1", "u1", "users/u1/x"));
	assert_false(wr(t, "c1", "u1", "users/u1/x"));
	assert_false(rd(t, "c1", "u1", "users/u2/x"));
	assert_true(rd(t, "c1", "u1", "both/u1/c1"));
	assert_false(rd(t, "c1", "u1", "both/c1/u1"));
	assert_true(rd(t, "c1", "u1", "twice/c1/c1"));
	assert_false(rd(t, "c1", "u1", "twice/c1/c2"));
	/* only %c and %u are put in; the rest stays as written */
	assert_true(rd(t, "c1", "u1", "lit/%x/%"));
	/* names with '/' span levels */
	assert_true(rd(t, "i/j", "x/y", "dev/i/j/z"));
	assert_true(wr(t, "i/j", "x/y", "dev/i/j"));
	assert_false(rd(t, "i/j", "x/y", "dev/i/z"));
	assert_true(rd(t, "i/j", "x/y", "users/x/y/z"));
	assert_false(rd(t, "i/j", "x/y", "users/x/z"));
	assert_true(rd(t, "i/j", "x/y", "both/x/y/i/j"));
	acl_free(t);
}

/* Names over 512 bytes: the pattern is put in an allocated buffer. */
static void test_pattern_long_names(void **state)
{
	static char cid[LONG_NAME + 1], user[LONG_NAME + 1], topic[4 * LONG_NAME];
	struct acl_table *t = load("pattern readwrite dev/%c/#\n"
				   "pattern read users/%u/#\n"
				   "pattern read many/%c/%u/%c\n"
				   "pattern deny dev/%c/secret\n");

	repeat(cid, sizeof(cid), 'c', LONG_NAME);
	repeat(user, sizeof(user), 'u', LONG_NAME - 1);
	snprintf(topic, sizeof(topic), "dev/%s/x", cid);
	assert_true(rd(t, cid, user, topic));
	assert_true(wr(t, cid, NULL, topic));
	assert_true(sub(t, cid, user, topic));
	snprintf(topic, sizeof(topic), "dev/%s/#", cid);
	assert_true(sub(t, cid, user, topic));
	snprintf(topic, sizeof(topic), "dev/%s/secret", cid);
	assert_false(rd(t, cid, user, topic));
	assert_false(sub(t, cid, user, topic));
	snprintf(topic, sizeof(topic), "dev/%sc/x", cid);
	assert_false(rd(t, cid, user, topic));
	snprintf(topic, sizeof(topic), "users/%s/x", user);
	assert_true(rd(t, cid, user, topic));
	assert_false(wr(t, cid, user, topic));
	snprintf(topic, sizeof(topic), "many/%s/%s/%s", cid, user, cid);
	assert_true(rd(t, cid, user, topic));
	assert_true(sub(t, cid, user, topic));
	snprintf(topic, sizeof(topic), "many/%s/%s/%s", cid, user, user);
	assert_false(rd(t, cid, user, topic));
	acl_free(t);
}

static void test_pattern_u_needs_username(void **state)
{
	struct acl_table *t = load("pattern read users/%u/#\n"
				   "pattern deny open/%u\n"
				   "pattern read open/#\n"
				   "pattern read cid/%c\n");

	assert_false(rd(t, "c1", NULL, "users//x"));
	assert_false(rd(t, "c1", NULL, "users/x"));
	assert_false(sub(t, "c1", NULL, "users/+/x"));
	assert_true(rd(t, "c1", "", "users//x")); /* a username, though empty */
	/* a %u deny does not apply without a username either */
	assert_true(rd(t, "c1", NULL, "open/"));
	assert_false(rd(t, "c1", "", "open/"));
	assert_false(rd(t, "c1", "u", "open/u"));
	assert_true(rd(t, "c1", "u", "open/v"));
	/* %c patterns apply to anonymous clients */
	assert_true(rd(t, "c1", NULL, "cid/c1"));
	acl_free(t);
}

/* A '+' or '#' in a client id or username would widen a pattern: no patterns at all then. */
static void test_wildcards_in_names(void **state)
{
	struct acl_table *t = load("topic read own/#\n"
				   "user a+b\n"
				   "topic read plus/#\n"
				   "pattern read open/#\n"
				   "pattern read dev/%c/#\n");

	assert_true(rd(t, "c1", NULL, "open/x"));
	assert_true(rd(t, "c1", "carol", "open/x"));
	assert_true(rd(t, "c+1", NULL, "own/x")); /* its own list still applies */
	assert_false(rd(t, "c+1", NULL, "open/x"));
	assert_false(rd(t, "+", NULL, "dev/a/x"));
	assert_false(rd(t, "c#1", NULL, "open/x"));
	assert_false(rd(t, "#", NULL, "dev/x"));
	assert_true(rd(t, "c1", "a+b", "plus/x"));
	assert_false(rd(t, "c1", "a+b", "open/x"));
	assert_false(rd(t, "c1", "a#b", "open/x"));
	assert_true(sub(t, "c+1", NULL, "own/x"));
	assert_false(sub(t, "c+1", NULL, "open/x"));
	assert_false(sub(t, "c1", "a#b", "open/x"));
	assert_true(sub(t, "c1", "carol", "open/x"));
	acl_free(t);
}

/* --- '$' topics ----------------------------------------------------------------- */

static void test_dollar_topics(void **state)
{
	struct acl_table *t = load("topic read #\n"
				   "topic read +/broker/#\n"
				   "topic $foo\n"
				   "user alice\n"
				   "topic read $SYS/#\n"
				   "user bob\n"
				   "topic read $SYS/broker/+\n"
				   "pattern read #\n"
				   "pattern read +/%c\n");

	assert_true(rd(t, "c", NULL, "a/b"));
	assert_false(rd(t, "c", NULL, "$SYS/broker/version"));
	assert_false(rd(t, "c", NULL, "$SYS/c"));
	assert_true(rd(t, "c", NULL, "$foo"));
	assert_false(rd(t, "c", NULL, "$bar"));
	assert_true(rd(t, "c", "alice", "$SYS/broker/version"));
	assert_true(rd(t, "c", "alice", "$SYS"));
	assert_false(wr(t, "c", "alice", "$SYS/broker/version"));
	assert_true(rd(t, "c", "bob", "$SYS/broker/version"));
	assert_false(rd(t, "c", "bob", "$SYS/broker/clients/total"));
	assert_false(rd(t, "c", "carol", "$SYS/broker/version"));
	assert_true(rd(t, "c", "carol", "a/b"));
	acl_free(t);
}

/* --- acl_check_filter ----------------------------------------------------------- */

struct filter_case {
	const char *file;
	const char *cid, *user;
	const char *filter;
	bool want;
};

static const struct filter_case filter_cases[] = {
	/* overlap with a read grant */
	{ "topic read a/+\n", "c", NULL, "a/b", true },
	{ "topic read a/b\n", "c", NULL, "a/+", true },
	{ "topic read a/b\n", "c", NULL, "a/c", false },
	{ "topic read a/#\n", "c", NULL, "a", true },
	{ "topic read a\n", "c", NULL, "a/#", true },
	{ "topic read a/b/#\n", "c", NULL, "a", false },
	{ "topic read +/x\n", "c", NULL, "y/+", true },
	{ "topic read +/x\n", "c", NULL, "y/z", false },
	{ "topic read +\n", "c", NULL, "a/b", false },
	{ "topic read #\n", "c", NULL, "$SYS/x", false },
	{ "topic read +/#\n", "c", NULL, "$SYS/#", false },
	{ "topic read $SYS/#\n", "c", NULL, "$SYS/broker/+", true },
	{ "topic read $SYS/#\n", "c", NULL, "#", false },
	{ "topic write a/#\n", "c", NULL, "a/b", false },
	{ "topic readwrite a/#\n", "c", NULL, "a/b", true },
	{ "topic a/#\n", "c", NULL, "a/b", true },
	{ "user alice\ntopic read a/#\n", "c", NULL, "a/b", false },
	{ "", "c", NULL, "a", false },
	/* a deny that covers all of the filter */
	{ "topic read #\ntopic deny a/#\n", "c", NULL, "a/b/+", false },
	{ "topic read #\ntopic deny a/#\n", "c", NULL, "a", false },
	{ "topic deny a/#\ntopic read #\n", "c", NULL, "a/b", false },
	{ "topic read #\ntopic deny a/+\n", "c", NULL, "a/#", true },
	{ "topic read #\ntopic deny a/+\n", "c", NULL, "a/+", false },
	{ "topic read #\ntopic deny a/+\n", "c", NULL, "a", true },
	{ "topic read #\ntopic deny a/+/c\n", "c", NULL, "a/b/+", true },
	{ "topic read #\ntopic deny +/#\n", "c", NULL, "x", false },
	{ "topic read #\ntopic deny #\n", "c", NULL, "#", false },
	{ "topic read $SYS/#\ntopic deny #\n", "c", NULL, "$SYS/x", true },
	{ "topic read #\ntopic deny $SYS/#\n", "c", NULL, "+/x", true },
	{ "user u\ntopic read #\ntopic deny a/#\n", "c", "u", "a/+", false },
	{ "user u\ntopic read #\ntopic deny a/#\n", "c", "u", "b/+", true },
	/* through patterns */
	{ "pattern read dev/%c/#\n", "c1", NULL, "dev/c1/+", true },
	{ "pattern read dev/%c/#\n", "c1", NULL, "dev/c2/#", false },
	{ "pattern read dev/%c/#\n", "c1", NULL, "dev/+/x", true },
	{ "pattern read dev/%c/#\n", "i/j", NULL, "dev/i/j", true },
	{ "pattern read #\npattern deny dev/%c/#\n", "c1", NULL, "dev/c1/x", false },
	{ "pattern read #\npattern deny dev/%c/#\n", "c1", NULL, "dev/c2/x", true },
	{ "pattern read u/%u/#\n", "c1", NULL, "u//x", false },
	{ "pattern read u/%u/#\n", "c1", "x", "u/x/y", true },
	{ "pattern read u/%u/#\n", "c1", "x", "u/y/#", false },
	{ "pattern read #\n", "c+1", NULL, "x", false },
	{ "pattern read #\n", "c1", "a#", "x", false },
	{ "pattern read #\n", "c1", NULL, "$SYS/x", false },
	/* the own list first: its covering deny wins; no match there goes on to the patterns */
	{ "topic deny a/#\npattern read a/#\n", "c", NULL, "a/b", false },
	{ "topic read a/#\npattern read b/#\n", "c", NULL, "b/x", true },
	{ "topic read a/#\npattern deny a/#\n", "c", NULL, "a/x", true },
	{ "topic read #\ntopic deny a/+\npattern read a/#\n", "c", NULL, "a/#", true },
};

static void test_check_filter(void **state)
{
	for (size_t i = 0; i < sizeof(filter_cases) / sizeof(filter_cases[0]); i++) {
		const struct filter_case *c = &filter_cases[i];
		struct acl_table *t = load(c->file);
		bool got = sub(t, c->cid, c->user, c->filter);

		acl_free(t);
		if (got != c->want)
			fail_msg("case %zu: file '%s', client '%s' user '%s', filter '%s': got %d",
				 i, c->file, c->cid, c->user ? c->user : "(none)", c->filter, got);
	}
}

/* --- parsing ------------------------------------------------------------------- */

static void test_comments_blank_lines_leading_spaces(void **state)
{
	struct acl_table *t = load("# a comment\n"
				   "\n"
				   "   \n"
				   "#topic read hidden\n"
				   "   topic read lead/#\n"
				   "topic    write    spaced\n"
				   "  user   alice  \n"
				   "   topic read alice/#\n");

	assert_int_equal(acl_rules(t), 3);
	assert_true(rd(t, "c", NULL, "lead/x"));
	assert_false(rd(t, "c", NULL, "hidden"));
	assert_true(wr(t, "c", NULL, "spaced"));
	assert_false(rd(t, "c", NULL, "spaced"));
	assert_true(rd(t, "c", "alice", "alice/x"));
	acl_free(t);
}

static void test_crlf(void **state)
{
	struct acl_table *t = load("topic read crlf/#\r\n"
				   "user bob\r\n"
				   "topic write bob\r\n"
				   "\r\n"
				   "pattern read p/%c\r\n");

	assert_int_equal(acl_rules(t), 3);
	assert_true(rd(t, "c", NULL, "crlf/x"));
	assert_true(wr(t, "c", "bob", "bob"));
	assert_true(rd(t, "c", "bob", "p/c"));
	assert_false(rd(t, "c", "bob\r", "p/c\r"));
	acl_free(t);
}

/* The filter (and a user's name) is the rest of the line: spaces in it stay, those around it go. */
static void test_spaces_in_filter(void **state)
{
	struct acl_table *t = load("topic read a b/#\n"
				   "topic write   two  spaces  \n"
				   "user bob smith\n"
				   "topic read b s\n"
				   "pattern read p %c\n");

	assert_true(rd(t, "c", NULL, "a b/c"));
	assert_false(rd(t, "c", NULL, "a"));
	assert_false(rd(t, "c", NULL, "b/c"));
	assert_true(wr(t, "c", NULL, "two  spaces"));
	assert_false(wr(t, "c", NULL, "two spaces"));
	assert_true(rd(t, "c", "bob smith", "b s"));
	assert_false(rd(t, "c", "bob", "b s"));
	assert_true(rd(t, "c", "bob smith", "p c"));
	acl_free(t);
}

static void test_refused_lines(void **state)
{
	refused("topic read a\nuser\n", ":2: user without a name");
	refused("user   \r\n", ":1: user without a name");
	refused("topic read a\n\nfoo bar\n", ":3: expected a topic, pattern or user line");
	refused("Topic read a\n", ":1: expected a topic, pattern or user line");
	refused("topics read a\n", ":1: expected a topic, pattern or user line");
	refused("users bob\n", ":1: expected a topic, pattern or user line");
	refused("topic foo bar\n", ":1: unknown access (expected read, write, readwrite or deny)");
	refused("# c\ntopic READ a\n",
		":2: unknown access (expected read, write, readwrite or deny)");
	refused("pattern reads a/%c\n",
		":1: unknown access (expected read, write, readwrite or deny)");
	refused("topic read a/#/b\n", ":1: not a valid topic filter");
	refused("topic a/b#\n", ":1: not a valid topic filter");
	refused("topic read a\npattern deny a+/%c\n", ":2: not a valid topic filter");
	refused("topic read a # comment\n", ":1: not a valid topic filter");
	refused("topic\n", ":1: no topic filter");
	refused("user bob\npattern   \r\n", ":2: no topic filter");
}

static void test_missing_file(void **state)
{
	struct acl_table *t;

	err[0] = '\0';
	t = acl_load("/nonexistent/dir/acl", err, sizeof(err));
	assert_null(t);
	assert_string_equal(err, "/nonexistent/dir/acl: cannot open: No such file or directory");
}

/* A line of the limit loads (its "\r" aside); two bytes more is refused with its number. */
static void test_line_limit(void **state)
{
	size_t size = 2 * LINE_MAX_BYTES + 64;
	char *text = malloc(size), *topic = malloc(LINE_MAX_BYTES + 1);
	size_t head = strlen("topic read a\n"), fixed = strlen("topic read ");
	struct acl_table *t;

	assert_non_null(text);
	assert_non_null(topic);
	repeat(topic, LINE_MAX_BYTES + 1, 'x', LINE_MAX_BYTES - fixed);
	snprintf(text, size, "topic read a\ntopic read %s\r\n", topic);
	t = load(text);
	assert_int_equal(acl_rules(t), 2);
	assert_true(rd(t, "c", NULL, topic));
	acl_free(t);

	memset(text + head + LINE_MAX_BYTES, 'x', 2); /* over its "\r\n" */
	strcpy(text + head + LINE_MAX_BYTES + 2, "\ntopic read b\n");
	assert_int_equal(strlen(text), head + LINE_MAX_BYTES + 2 + strlen("\ntopic read b\n"));
	load_fails(text, strlen(text), ":2: line too long");
	free(topic);
	free(text);
}

static void test_nul_byte(void **state)
{
	static const char text[] = "topic read a\n# comment\ntopic read b\0c\ntopic read d\n";

	load_fails(text, sizeof(text) - 1, ":3: NUL byte in line");
	load_fails("\0", 1, ":1: NUL byte in line");
}

/* The last line needs no newline; an empty file grants nothing. */
static void test_ends(void **state)
{
	struct acl_table *t = load("topic read a\ntopic write b");

	assert_int_equal(acl_rules(t), 2);
	assert_true(wr(t, "c", NULL, "b"));
	acl_free(t);
	t = load("");
	assert_int_equal(acl_rules(t), 0);
	assert_false(rd(t, "c", NULL, "a"));
	assert_false(sub(t, "c", NULL, "#"));
	acl_free(t);
}

static void test_rules_count(void **state)
{
	struct acl_table *t = load("# comment\n"
				   "topic read a\n"
				   "topic deny b\n"
				   "user alice\n"
				   "topic c\n"
				   "user bob\n"
				   "user alice\n"
				   "pattern read d/%c\n"
				   "pattern deny e\n"
				   "\n");

	assert_int_equal(acl_rules(t), 5);
	acl_free(t);
	assert_int_equal(acl_rules(NULL), 0);
}

/* --- out of memory --------------------------------------------------------------- */

/*
 * More than one allocation's worth (8) of users, anonymous rules and
 * patterns, denies among them and a user named again, so that each array
 * grows and every strdup runs.
 */
static const char oom_file[] = "topic read a0\ntopic read a1\ntopic deny a1/x\ntopic read a2\n"
			       "topic read a3\ntopic read a4\ntopic deny a5\ntopic read a6\n"
			       "topic read a7\ntopic read a8\ntopic read a9\n"
			       "user u5\ntopic read u5\nuser u1\ntopic read u1\ntopic deny u1/x\n"
			       "user u3\nuser u2\nuser u4\nuser u0\nuser u6\nuser u8\nuser u7\n"
			       "user u9\ntopic read u9\nuser u5\ntopic write u5\n"
			       "pattern read p0/%c\npattern read p1/%c\npattern deny p2/%c\n"
			       "pattern read p3/%c\npattern read p4/%c\npattern read p5/%c\n"
			       "pattern read p6/%c\npattern read p7/%c\npattern read p8/%u\n"
			       "pattern read p2/#\n";

/* The whole of oom_file is in t. */
static void oom_table_complete(const struct acl_table *t)
{
	assert_int_equal(acl_rules(t), 11 + 5 + 10);
	assert_true(rd(t, "c", NULL, "a0"));
	assert_true(rd(t, "c", NULL, "a9"));
	assert_false(rd(t, "c", NULL, "a5"));
	assert_false(rd(t, "c", NULL, "a1/x"));
	assert_true(rd(t, "c", "u1", "u1"));
	assert_false(rd(t, "c", "u1", "u1/x"));
	assert_true(rd(t, "c", "u5", "u5"));
	assert_true(wr(t, "c", "u5", "u5"));
	assert_true(rd(t, "c", "u9", "u9"));
	assert_false(rd(t, "c", "u0", "u9"));
	assert_true(rd(t, "c", "u0", "p7/c"));
	assert_true(rd(t, "c", "u0", "p8/u0"));
	assert_false(rd(t, "c", NULL, "p2/c"));
	assert_true(rd(t, "c", NULL, "p2/d"));
}

static void test_load_out_of_memory(void **state)
{
	struct acl_table *t = NULL;
	long n;

	write_file(oom_file, strlen(oom_file));
	for (n = 0; n < 1000 && !t; n++) {
		err[0] = '\0';
		mem_fail_after(n);
		t = acl_load(path, err, sizeof(err));
		mem_fail_after(-1);
		if (!t && (strncmp(err, path, strlen(path)) || !strstr(err, ": out of memory")))
			fail_msg("allocation %ld: '%s'", n, err);
	}
	unlink(path);
	assert_non_null(t);
	/* the table, the line buffer, 26 filters, 10 names and the arrays failed first */
	assert_true(n > 2 + 26 + 10);
	oom_table_complete(t);
	acl_free(t);
}

/* Out of memory while a long name is put in a pattern: a deny still holds, a grant does not. */
static void test_check_out_of_memory(void **state)
{
	static char cid[LONG_NAME + 1], topic[2 * LONG_NAME];
	struct acl_table *t = load("pattern deny dev/%c/secret\n"
				   "pattern read dev/#\n"
				   "pattern write own/%c\n");

	repeat(cid, sizeof(cid), 'c', LONG_NAME);
	snprintf(topic, sizeof(topic), "dev/%s/secret", cid);
	mem_fail_after(0);
	assert_false(rd(t, cid, NULL, topic));
	assert_false(sub(t, cid, NULL, topic));
	assert_true(rd(t, "short", NULL, "dev/x/secret")); /* no allocation for short names */
	mem_fail_after(-1);
	assert_false(rd(t, cid, NULL, topic));
	assert_false(sub(t, cid, NULL, topic));

	snprintf(topic, sizeof(topic), "own/%s", cid);
	mem_fail_after(0);
	assert_false(wr(t, cid, NULL, topic));
	mem_fail_after(-1);
	assert_true(wr(t, cid, NULL, topic));
	acl_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_access_words),
		cmocka_unit_test(test_deny_wins_over_earlier_and_later_grant),
		cmocka_unit_test(test_own_list_before_patterns),
		cmocka_unit_test(test_sections),
		cmocka_unit_test(test_many_users),
		cmocka_unit_test(test_pattern_substitution),
		cmocka_unit_test(test_pattern_long_names),
		cmocka_unit_test(test_pattern_u_needs_username),
		cmocka_unit_test(test_wildcards_in_names),
		cmocka_unit_test(test_dollar_topics),
		cmocka_unit_test(test_check_filter),
		cmocka_unit_test(test_comments_blank_lines_leading_spaces),
		cmocka_unit_test(test_crlf),
		cmocka_unit_test(test_spaces_in_filter),
		cmocka_unit_test(test_refused_lines),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_ends),
		cmocka_unit_test(test_rules_count),
		cmocka_unit_test(test_load_out_of_memory),
		cmocka_unit_test(test_check_out_of_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
