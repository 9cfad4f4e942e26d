/*
 * sluice_passwd.c - the sluice-passwd command: makes and edits the password
 * files that sluice and mosquitto read (passwd.h), as Debian 12's
 * mosquitto_passwd 2.0.11 does: the same options, prompts (on stdout),
 * messages (on stderr) and exit status (0; 1 for an error; 2 when the two
 * passwords typed differ).
 *
 * Owns one run of the command, on the process's only thread. The file is
 * read whole into memory and split into lines; the edit (set one user's
 * password, delete a user, or hash every plain-text password with -U) is
 * written to a temporary file beside it, which is then renamed over it. A
 * broker reloading the file thus reads the old one or the new one, never a
 * half-written one (mosquitto_passwd rewrites the file in place).
 *
 * Invariants: a line the edit does not concern (a comment, a blank line,
 * another user's line) is written back byte for byte; the file keeps its
 * mode (and its owner where we may give it), a new one is 0600; the
 * terminal's echo comes back on every exit, a signal's included, and a
 * signal leaves no temporary file behind.
 *
 * Where we differ from mosquitto_passwd 2.0.11, on purpose: comment and
 * blank lines are kept (it stops at them: "Corrupt password file"); -U
 * leaves a line whose password already is a valid hash alone (it hashes the
 * hash); -I applies to -U too; -H sha512 ($6$, one round of SHA-512) is
 * refused; -H sha256-pbkdf2 writes $pbkdf2-sha256$ lines (SCRAM-SHA-256),
 * which mosquitto does not read; an unknown option, an extra argument, and a username that sluice
 * would read back as another (empty, '#' first, a space at an end) are
 * errors; a new file is 0600 whatever the umask (it gives 0666 & ~umask);
 * line editing works at the prompt (it turns off ICANON as well as ECHO).
 */
#include "autoconfig.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "mem.h"
#include "passwd.h"

#define NAME_MAX_LEN 65535 /* bytes of a username, as mosquitto_passwd */
#define PASSWORD_MAX_LEN 65535 /* bytes of a password, as mosquitto_passwd */
#define NEW_FILE_MODE 0600

struct opts {
	bool batch, create, del, plain; /* -b -c -D -U */
	enum pw_kind kind; /* -H */
	uint32_t iterations; /* -I; 0: the kind's default */
	const char *file, *username, *password;
};

/* The file's lines: buf holds its bytes with each '\n' turned into a NUL. */
struct lines {
	char *buf;
	char **line;
	size_t n;
};

/* A line "name:pass" (not a comment), both parts without blanks at their ends. */
struct user_line {
	char *name, *pass;
	size_t name_len, pass_len;
};

/* The file to write: its real path, the temporary one beside it, its mode and owner. */
struct target {
	char path[PATH_MAX];
	char tmp[PATH_MAX + 16];
	mode_t mode;
	bool exists;
	uid_t uid;
	gid_t gid;
};

static struct termios saved_term;
static volatile sig_atomic_t term_changed;
static char tmp_name[PATH_MAX + 16]; /* for the signal handler */
static volatile sig_atomic_t tmp_made;

/* --- terminal and signals ----------------------------------------------------- */

static void restore_term(void)
{
	if (term_changed) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_term);
		term_changed = 0;
	}
}

/* Puts the terminal back, drops the temporary file, and dies of the signal. */
static void on_signal(int sig)
{
	restore_term();
	if (tmp_made)
		unlink(tmp_name);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void set_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/*
 * One line of stdin into buf (size bytes), not echoed when stdin is a
 * terminal, its line ending stripped: its length, 0 at the end of input, -1
 * if it does not fit.
 */
static long read_quiet(char *buf, size_t size)
{
	struct termios quiet;
	char *got;
	size_t n;

	if (!tcgetattr(STDIN_FILENO, &saved_term)) {
		quiet = saved_term;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		term_changed = 1;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	got = fgets(buf, (int)size, stdin);
	restore_term();
	if (!got)
		return 0;
	n = strlen(buf);
	if (n == size - 1 && buf[n - 1] != '\n')
		return -1;
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return (long)n;
}

/* Asks for one password: 0, or 1 with mosquitto_passwd's message. */
static int ask_once(const char *prompt, char *buf, size_t size)
{
	long n;

	printf("%s", prompt);
	fflush(stdout);
	n = read_quiet(buf, size);
	if (n < 0)
		fprintf(stderr, "Error: Password must be less than 65536 characters long.\n");
	else if (n == 0)
		fprintf(stderr, "Error: Empty password.\n");
	else
		printf("\n");
	return n > 0 ? 0 : 1;
}

/* The password, typed twice into pw (size bytes): 0, 1 (none), 2 (they differ). */
static int ask_password(char *pw, size_t size)
{
	static char again[PASSWORD_MAX_LEN + 2];
	int rc;

	rc = ask_once("Password: ", pw, size);
	if (!rc)
		rc = ask_once("Reenter password: ", again, sizeof(again));
	if (!rc && strcmp(pw, again)) {
		fprintf(stderr, "Error: Passwords do not match.\n");
		rc = 2;
	}
	explicit_bzero(again, sizeof(again));
	return rc;
}

/* --- arguments ---------------------------------------------------------------- */

static void usage(void)
{
	printf("sluice-passwd: adds, changes and deletes users of a password file (the format\n"
	       "mosquitto_passwd writes, read by sluice and mosquitto).\n\n"
	       "Usage: sluice-passwd [-H hash] [-I iterations] [-c | -D] passwordfile username\n"
	       "       sluice-passwd [-H hash] [-I iterations] [-c] -b passwordfile username password\n"
	       "       sluice-passwd [-H hash] [-I iterations] -U passwordfile\n"
	       " -b : the password is the last argument (no prompt).\n"
	       " -c : start a new file, replacing any file of that name.\n"
	       " -D : remove the user.\n"
	       " -H : the hash to write: sha512-pbkdf2 ($7$, the default; also serves\n"
	       "      SCRAM-SHA-512) or sha256-pbkdf2 ($pbkdf2-sha256$, for SCRAM-SHA-256;\n"
	       "      mosquitto does not read it).\n"
	       " -I : PBKDF2 iterations, 1 to %d (default %d, %d for sha256-pbkdf2).\n"
	       " -U : hash every plain-text password of the file.\n\n",
	       PW_ITERATIONS_MAX, PW_ITERATIONS, PW_ITERATIONS_SHA256);
}

static int hash_option(const char *v, enum pw_kind *kind)
{
	if (!strcmp(v, "sha512-pbkdf2") || !strcmp(v, "sha256-pbkdf2")) {
		*kind = v[3] == '2' ? PW_PBKDF2_SHA256 : PW_PBKDF2_SHA512;
		return 0;
	}
	if (!strcmp(v, "sha512"))
		fprintf(stderr, "Error: sluice-passwd does not write sha512 hashes (one round of "
				"SHA-512, mosquitto 1.x); use sha512-pbkdf2.\n");
	else
		fprintf(stderr, "Error: Unknown hash type '%s'\n", v);
	return -1;
}

static int iterations_option(const char *v, uint32_t *out)
{
	unsigned long n;
	char *end;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (*v < '0' || *v > '9' || *end || !n) {
		fprintf(stderr, "Error: Number of iterations must be > 0.\n");
		return -1;
	}
	if (errno || n > PW_ITERATIONS_MAX) {
		fprintf(stderr, "Error: Number of iterations must be at most %d.\n",
			PW_ITERATIONS_MAX);
		return -1;
	}
	*out = (uint32_t)n;
	return 0;
}

/* -H and -I: 0, or -1 with a message. */
static int valued_option(int argc, char **argv, int i, struct opts *o)
{
	if (i + 1 == argc) {
		fprintf(stderr, "Error: %s argument given but not enough other arguments.\n",
			argv[i]);
		return -1;
	}
	if (argv[i][1] == 'H')
		return hash_option(argv[i + 1], &o->kind);
	return iterations_option(argv[i + 1], &o->iterations);
}

/* The options, which come first: the index of the first argument, or -1. */
static int parse_options(int argc, char **argv, struct opts *o)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-H") || !strcmp(a, "-I")) {
			if (valued_option(argc, argv, i++, o))
				return -1;
		} else if (!strcmp(a, "-b")) {
			o->batch = true;
		} else if (!strcmp(a, "-c")) {
			o->create = true;
		} else if (!strcmp(a, "-D")) {
			o->del = true;
		} else if (!strcmp(a, "-U")) {
			o->plain = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage();
			return -1;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "Error: Unknown option '%s'.\n", a);
			return -1;
		} else {
			break;
		}
	}
	return i;
}

static int check_conflicts(const struct opts *o)
{
	const char *both = o->create && o->del	   ? "-c and -D"
			   : o->create && o->plain ? "-c and -U"
			   : o->del && o->plain	   ? "-D and -U"
			   : o->del && o->batch	   ? "-b and -D"
						   : NULL;

	if (both)
		fprintf(stderr, "Error: %s cannot be used together.\n", both);
	return both ? -1 : 0;
}

/* Too few arguments (or, for -U, not one): mosquitto_passwd's words for it. */
static void missing(const struct opts *o)
{
	if (o->plain)
		fprintf(stderr, "Error: -U argument given but password file missing.\n");
	else if (o->create && o->batch)
		fprintf(stderr, "Error: -c argument given but password file, username, or password "
				"missing.\n");
	else if (o->create || o->del)
		fprintf(stderr, "Error: %s argument given but password file or username missing.\n",
			o->create ? "-c" : "-D");
	else
		usage();
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	int i = parse_options(argc, argv, o), need, left;

	if (i < 0 || check_conflicts(o))
		return -1;
	need = o->plain ? 1 : o->batch ? 3 : 2;
	left = argc - i;
	if (left < need || (o->plain && left != need)) {
		missing(o);
		return -1;
	}
	if (left != need) {
		usage();
		return -1;
	}
	o->file = argv[i];
	o->username = need > 1 ? argv[i + 1] : NULL;
	o->password = need > 2 ? argv[i + 2] : NULL;
	return 0;
}

/* mosquitto_passwd's checks, then those that keep the name the same when sluice reads it. */
static int check_username(const char *u)
{
	size_t n = strlen(u);
	const char *why = NULL;

	if (n > NAME_MAX_LEN)
		why = "must be less than 65536 characters long";
	for (size_t i = 0; !why && i < n; i++)
		if (iscntrl((unsigned char)u[i]))
			why = "must not contain control characters";
	if (!why && strchr(u, ':'))
		why = "must not contain the ':' character";
	else if (!why && !n)
		why = "must not be empty";
	else if (!why && u[0] == '#')
		why = "must not start with '#' (a comment line of the file)";
	else if (!why && (u[0] == ' ' || u[n - 1] == ' '))
		why = "must not start or end with a space";
	if (why)
		fprintf(stderr, "Error: Username %s.\n", why);
	return why ? -1 : 0;
}

static int check_args(const struct opts *o)
{
	if (o->username && check_username(o->username))
		return -1;
	if (o->password && strlen(o->password) > PASSWORD_MAX_LEN) {
		fprintf(stderr, "Error: Password must be less than 65536 characters long.\n");
		return -1;
	}
	return 0;
}

/* --- reading the file --------------------------------------------------------- */

/* All of f into a new NUL-terminated buffer: 0, or -1 (errno set). */
static int read_all(FILE *f, char **out, size_t *len)
{
	size_t cap = 4096, n = 0, got;
	char *buf = mem_alloc(cap + 1), *p;

	while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n < cap)
			continue;
		p = mem_realloc(buf, cap * 2 + 1);
		if (!p)
			mem_free(buf);
		buf = p;
		cap *= 2;
	}
	if (!buf || ferror(f)) {
		if (!buf)
			errno = ENOMEM;
		mem_free(buf);
		return -1;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* Cuts l->buf (len bytes) into lines: 0, -1 out of memory, or the number of a line with a NUL. */
static long split_lines(struct lines *l, size_t len)
{
	char *p = l->buf, *end = l->buf + len, *nl;
	size_t cap = 1;

	for (char *q = p; (q = memchr(q, '\n', (size_t)(end - q))); q++)
		cap++;
	if (!(l->line = mem_calloc(cap, sizeof(*l->line))))
		return -1;
	for (; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			nl = end;
		if (memchr(p, '\0', (size_t)(nl - p)))
			return (long)l->n + 1;
		*nl = '\0';
		l->line[l->n++] = p;
	}
	return 0;
}

/* path's lines into l: 0, or -1 with a message. */
static int read_lines(const char *path, struct lines *l)
{
	FILE *f = fopen(path, "r");
	size_t len;
	long bad;

	if (!f || read_all(f, &l->buf, &len)) {
		fprintf(stderr, "Error: Unable to %s password file %s. %s.\n", f ? "read" : "open",
			path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	bad = split_lines(l, len);
	if (bad < 0)
		fprintf(stderr, "Error: Out of memory.\n");
	else if (bad > 0)
		fprintf(stderr, "Error: Corrupt password file at line %ld.\n", bad);
	return bad ? -1 : 0;
}

static void free_lines(struct lines *l)
{
	mem_free(l->line);
	mem_free(l->buf);
}

/* --- the lines ---------------------------------------------------------------- */

/* s to end without blanks at either end (as passwd.c trims): its start in *out, its length. */
static size_t trim_span(char *s, char *end, char **out)
{
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	while (end > s && strchr(" \t\r\n", end[-1]))
		end--;
	*out = s;
	return (size_t)(end - s);
}

/* Is line a user's ("name:pass"), as passwd.c reads it (not '#' first, a ':')? */
static bool parse_user_line(char *line, struct user_line *u)
{
	char *colon = strchr(line, ':');

	if (line[0] == '#' || !colon)
		return false;
	u->name_len = trim_span(line, colon, &u->name);
	u->pass_len = trim_span(colon + 1, colon + 1 + strlen(colon + 1), &u->pass);
	return true;
}

static bool is_user(const struct user_line *u, const char *name)
{
	return u->name_len == strlen(name) && !memcmp(u->name, name, u->name_len);
}

/* Is the password of u already a hash that sluice and mosquitto accept? */
static bool is_hashed(struct user_line *u)
{
	char save = u->pass[u->pass_len];
	struct pw_entry e;
	const char *why;
	bool yes;

	u->pass[u->pass_len] = '\0';
	yes = !pw_parse_hash(u->pass, &e, &why);
	u->pass[u->pass_len] = save;
	return yes;
}

/* -U: u's plain-text password, up to a second ':' as mosquitto_passwd reads it. */
static size_t plain_password(const struct user_line *u, char **out)
{
	char *end = memchr(u->pass, ':', u->pass_len);

	return trim_span(u->pass, end ? end : u->pass + u->pass_len, out);
}

/* Every user line has a name and a password: 0, or -1 with mosquitto_passwd's message. */
static int check_lines(const struct lines *l, const struct opts *o)
{
	for (size_t i = 0; i < l->n; i++) {
		struct user_line u;
		char *pw;

		if (!parse_user_line(l->line[i], &u))
			continue;
		if (!u.name_len || !u.pass_len ||
		    (o->plain && !is_hashed(&u) && !plain_password(&u, &pw))) {
			fprintf(stderr, "Error: Corrupt password file at line %zu.\n", i + 1);
			return -1;
		}
	}
	return 0;
}

static uint32_t default_iterations(enum pw_kind kind)
{
	return kind == PW_PBKDF2_SHA256 ? PW_ITERATIONS_SHA256 : PW_ITERATIONS;
}

/* Writes "username:$7$..." (or o's kind) for password with a new salt: 0, or -1 with a message. */
static int put_hashed(FILE *out, const char *username, const char *password, size_t plen,
		      const struct opts *o)
{
	uint32_t iterations = o->iterations ? o->iterations : default_iterations(o->kind);
	unsigned char salt[PW_SALT_LEN];
	size_t cap = strlen(username) + 256;
	char *line = mem_alloc(cap);
	int n = -1;

	if (!line) {
		fprintf(stderr, "Error: Out of memory.\n");
		return -1;
	}
	if (!pw_random(salt, sizeof(salt)))
		n = pw_format_line(line, cap, o->kind, username, password, plen, iterations, salt,
				   sizeof(salt));
	if (n < 0)
		fprintf(stderr, "Error: Unable to hash password.\n");
	else if (n > PW_LINE_MAX)
		fprintf(stderr, "Error: Username too long: its line would be over %d bytes.\n",
			PW_LINE_MAX);
	else
		fprintf(out, "%s\n", line);
	mem_free(line);
	return n < 0 || n > PW_LINE_MAX ? -1 : 0;
}

/* -U: u's line with its plain-text password hashed. */
static int put_plain(FILE *out, struct user_line *u, const struct opts *o)
{
	char *pw;
	size_t plen = plain_password(u, &pw);

	u->name[u->name_len] = '\0'; /* the line is not needed after this */
	return put_hashed(out, u->name, pw, plen, o);
}

/* One line of the file as the edit makes it (*found: the user's line was seen). */
static int put_line(FILE *out, char *line, const struct opts *o, bool *found)
{
	struct user_line u;
	bool user = parse_user_line(line, &u);

	if (user && o->username && is_user(&u, o->username)) {
		*found = true;
		if (o->del)
			return 0;
		return put_hashed(out, o->username, o->password, strlen(o->password), o);
	}
	if (user && o->plain && !is_hashed(&u))
		return put_plain(out, &u, o);
	fprintf(out, "%s\n", line);
	return 0;
}

static int put_lines(FILE *out, const struct lines *l, const struct opts *o, bool *found)
{
	for (size_t i = 0; i < l->n; i++)
		if (put_line(out, l->line[i], o, found))
			return -1;
	if (o->username && !o->del && !*found)
		return put_hashed(out, o->username, o->password, strlen(o->password), o);
	return 0;
}

/* --- writing the file --------------------------------------------------------- */

/* Where to write: o->file with its links resolved (as mosquitto_passwd), its mode, its owner. */
static int find_target(const struct opts *o, struct target *t)
{
	struct stat st;

	if (!realpath(o->file, t->path)) {
		if (errno != ENOENT || strlen(o->file) >= sizeof(t->path)) {
			fprintf(stderr, "Error reading password file: %s\n", strerror(errno));
			return -1;
		}
		strcpy(t->path, o->file);
	}
	snprintf(t->tmp, sizeof(t->tmp), "%s.tmp.XXXXXX", t->path);
	t->mode = NEW_FILE_MODE;
	t->exists = !stat(t->path, &st);
	if (t->exists && !S_ISREG(st.st_mode)) {
		fprintf(stderr, "Error: %s is not a regular file.\n", t->path);
		return -1;
	}
	if (t->exists) {
		t->mode = st.st_mode & 07777;
		t->uid = st.st_uid;
		t->gid = st.st_gid;
	}
	return 0;
}

/* A new temporary file beside t->path with t's mode and, if we may, its owner. */
static FILE *open_temp(struct target *t)
{
	FILE *f = NULL;
	int fd;

	memcpy(tmp_name, t->tmp, sizeof(tmp_name));
	fd = mkstemp(tmp_name);
	if (fd >= 0) {
		tmp_made = 1;
		memcpy(t->tmp, tmp_name, sizeof(t->tmp));
		if (t->exists && fchown(fd, t->uid, t->gid)) {
			/* not ours to give away: the file becomes ours */
		}
		if (!fchmod(fd, t->mode))
			f = fdopen(fd, "w");
		if (!f)
			close(fd);
	}
	if (!f)
		fprintf(stderr, "Error: Unable to open file %s for writing. %s.\n", t->path,
			strerror(errno));
	return f;
}

/* Flushes f to the disk and closes it: 0, or -1 (errno set). */
static int close_temp(FILE *f)
{
	int rc = fflush(f) || ferror(f) || fsync(fileno(f)) ? -1 : 0;
	int err = errno;

	if (fclose(f) && !rc) {
		rc = -1;
		err = errno;
	}
	errno = err ? err : EIO;
	return rc;
}

/* The rename is durable once the directory is on disk (best effort). */
static void sync_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd;

	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) + 1 : 1, slash ? path : ".");
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Writes the edited lines through a temporary file renamed over t->path: 0 or 1. */
static int commit(struct target *t, const struct lines *l, const struct opts *o)
{
	FILE *f = open_temp(t);
	bool found = false;
	int rc;

	if (!f)
		return 1;
	rc = put_lines(f, l, o, &found) ? 1 : 0;
	if (!rc && o->del && !found) {
		fprintf(stderr, "Warning: User %s not found in password file.\n", o->username);
		rc = 1;
	}
	if ((close_temp(f) || rename(t->tmp, t->path)) && !rc) {
		fprintf(stderr, "Error: Unable to write password file %s. %s.\n", t->path,
			strerror(errno));
		rc = 1;
	}
	if (rc)
		unlink(t->tmp);
	tmp_made = 0;
	if (!rc)
		sync_dir(t->path);
	return rc;
}

/* --- main --------------------------------------------------------------------- */

static int run(struct opts *o, struct lines *l, struct target *t)
{
	static char typed[PASSWORD_MAX_LEN + 2];
	int rc = 0;

	if (!o->create && read_lines(t->path, l))
		return 1;
	if (check_lines(l, o))
		return 1;
	if (o->username && !o->del && !o->batch) {
		rc = ask_password(typed, sizeof(typed));
		o->password = typed;
	}
	if (!rc)
		rc = commit(t, l, o);
	explicit_bzero(typed, sizeof(typed));
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o = { .kind = PW_PBKDF2_SHA512 };
	static struct target t;
	struct lines l = { 0 };
	int rc;

	if (argc == 1) {
		usage();
		return 1;
	}
	if (parse_args(argc, argv, &o) || check_args(&o) || find_target(&o, &t))
		return 1;
	set_signals();
	rc = run(&o, &l, &t);
	free_lines(&l);
	return rc;
}
