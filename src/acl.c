/*
 * acl.c - mosquitto's ACL file (acl.h): parsing, and the checks the broker
 * asks for at PUBLISH, SUBSCRIBE, each delivery and a will's publication.
 *
 * Owns: one immutable table per loaded file: the anonymous clients' rules,
 * each user's rules (users sorted by name), and the pattern rules. In each
 * list the deny rules come first, then the grants in file order, because a
 * deny wins. A reload builds a new table and the caller swaps them.
 *
 * Runs on the broker's loop (and in unit tests); no globals.
 *
 * The order of a check is mosquitto 2.0's: the client's own list (its
 * user's, or the anonymous one), denies then grants; then, if the file has
 * patterns and the client's id and username hold no '+' or '#' (which
 * would let a client widen a pattern), the patterns with %c and %u put in,
 * denies then grants (a pattern with %u never applies without a username);
 * then denied. A rule whose filter does not start with '$' never matches a
 * topic that does ($SYS is only readable where the file names it).
 *
 * Invariants: every rule's filter is a valid topic filter (after %c/%u are
 * put in it may not be: such a rule then matches nothing); access 0 is a
 * deny rule, else ACL_READ and/or ACL_WRITE.
 */
#include "acl.h"
#include "linefile.h"
#include "mem.h"
#include "topic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACL_LINE_MAX 65536
#define PATTERN_SMALL 512 /* a pattern put in for a client: longer ones are allocated */

struct rule {
	char *filter;
	size_t flen;
	unsigned access; /* 0: deny */
	bool has_c, has_u; /* a pattern with %c / %u */
};

struct rules {
	struct rule *r;
	size_t n, cap, n_deny; /* r[0 .. n_deny) are the deny rules */
};

struct acl_user {
	char *name;
	struct rules rules;
};

struct acl_table {
	struct rules anon, patterns;
	struct acl_user *users;
	size_t n_users, cap_users;
	size_t n_rules;
};

/* --- checks ------------------------------------------------------------------- */

static bool rule_matches(const char *f, size_t fl, const char *topic, size_t tlen)
{
	if (tlen && topic[0] == '$' && (!fl || f[0] != '$'))
		return false;
	return topic_matches(f, fl, topic, tlen);
}

/* The pattern's filter with %c and %u put in, into out (cap bytes): its length, or -1. */
static long substitute(const struct rule *r, const char *cid, const char *user, char *out,
		       size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; i < r->flen; i++) {
		const char *ins = NULL;

		if (r->filter[i] == '%' && i + 1 < r->flen)
			ins = r->filter[i + 1] == 'c' ? cid : r->filter[i + 1] == 'u' ? user : NULL;
		if (ins) {
			size_t l = strlen(ins);

			if (n + l > cap)
				return -1;
			memcpy(out + n, ins, l);
			n += l;
			i++;
			continue;
		}
		if (n + 1 > cap)
			return -1;
		out[n++] = r->filter[i];
	}
	return (long)n;
}

/*
 * The pattern's filter for this client: its own, or with %c and %u put in,
 * in small (PATTERN_SMALL bytes) or in *big (the caller frees it); NULL when
 * out of memory.
 */
static const char *expand(const struct rule *r, const char *cid, const char *user, char *small,
			  char **big, size_t *len)
{
	size_t cap;
	long n;

	*big = NULL;
	if (!r->has_c && !r->has_u) {
		*len = r->flen;
		return r->filter;
	}
	n = substitute(r, cid, user, small, PATTERN_SMALL);
	if (n < 0) {
		cap = r->flen + (strlen(cid) + strlen(user)) * r->flen;
		if (!(*big = mem_alloc(cap)))
			return NULL;
		n = substitute(r, cid, user, *big, cap);
	}
	*len = (size_t)n;
	return *big ? *big : small;
}

static bool pattern_matches(const struct rule *r, const char *cid, const char *user,
			    const char *topic, size_t tlen)
{
	char small[PATTERN_SMALL], *big;
	const char *f;
	size_t fl;
	bool m;

	if (!(f = expand(r, cid, user ? user : "", small, &big, &fl)))
		return !r->access; /* out of memory: a deny still holds, a grant does not */
	m = (f == r->filter || topic_filter_valid(f, fl)) && rule_matches(f, fl, topic, tlen);
	mem_free(big);
	return m;
}

/*
 * The rules of l for this client (a topic rule matches as it is, a pattern
 * with %c and %u put in): 1 allowed, 0 denied, -1 no rule matched.
 */
static int check_rules(const struct rules *l, const char *cid, const char *user, const char *topic,
		       size_t tlen, unsigned access)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct rule *r = &l->r[i];

		if (r->has_u && !user)
			continue;
		if (!pattern_matches(r, cid, user, topic, tlen))
			continue;
		if (!r->access)
			return 0;
		if (r->access & access)
			return 1;
	}
	return -1;
}

static const struct acl_user *find_user(const struct acl_table *t, const char *name)
{
	size_t lo = 0, hi = t->n_users;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(t->users[mid].name, name);

		if (!c)
			return &t->users[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The client's own list: its user's, the anonymous one, or NULL (a user the file does not name). */
static const struct rules *own_rules(const struct acl_table *t, const char *username)
{
	const struct acl_user *u;

	if (!username)
		return &t->anon;
	u = find_user(t, username);
	return u ? &u->rules : NULL;
}

bool acl_check(const struct acl_table *t, const char *client_id, const char *username,
	       const char *topic, size_t tlen, enum acl_access access)
{
	const struct rules *own = own_rules(t, username);
	int rc = own ? check_rules(own, client_id, username, topic, tlen, access) : -1;

	if (rc >= 0)
		return rc == 1;
	if (!t->patterns.n)
		return false;
	if (strpbrk(client_id, "+#") || (username && strpbrk(username, "+#")))
		return false;
	return check_rules(&t->patterns, client_id, username, topic, tlen, access) == 1;
}

/* --- filters: may a SUBSCRIBE read anything? --------------------------------- */

/* The next level of s (from *pos): its start and length; false at the end. */
static bool next_level(const char *s, size_t len, size_t *pos, const char **lv, size_t *lvl)
{
	const char *slash;

	if (*pos > len)
		return false;
	*lv = s + *pos;
	slash = memchr(*lv, '/', len - *pos);
	*lvl = slash ? (size_t)(slash - *lv) : len - *pos;
	*pos += *lvl + 1;
	return true;
}

/* Is there a topic that both filters match? (Level by level; '#' matches the rest.) */
static bool filters_overlap(const char *a, size_t al, const char *b, size_t bl)
{
	size_t pa = 0, pb = 0, la, lb;
	const char *va, *vb;
	bool ha, hb;

	/* a '$' topic is matched only by filters starting with '$' (no wildcard first level) */
	if (al && bl && (a[0] == '$') != (b[0] == '$'))
		return false;
	for (;;) {
		ha = next_level(a, al, &pa, &va, &la);
		hb = next_level(b, bl, &pb, &vb, &lb);
		if ((ha && la == 1 && va[0] == '#') || (hb && lb == 1 && vb[0] == '#'))
			return true; /* also the parent level: "a/#" matches "a" */
		if (!ha || !hb)
			return ha == hb;
		if ((la == 1 && va[0] == '+') || (lb == 1 && vb[0] == '+'))
			continue;
		if (la != lb || memcmp(va, vb, la))
			return false;
	}
}

/* Does every topic filter f matches also match deny filter d? */
static bool filter_covered(const char *d, size_t dl, const char *f, size_t fl)
{
	size_t pd = 0, pf = 0, ld, lf;
	const char *vd, *vf;
	bool hd, hf;

	if (fl && f[0] == '$' && (!dl || d[0] != '$'))
		return false;
	for (;;) {
		hd = next_level(d, dl, &pd, &vd, &ld);
		hf = next_level(f, fl, &pf, &vf, &lf);
		if (hd && ld == 1 && vd[0] == '#')
			return true;
		if (!hd || !hf)
			return hd == hf;
		if (lf == 1 && (vf[0] == '#' || vf[0] == '+')) {
			if (vf[0] == '#' || !(ld == 1 && vd[0] == '+'))
				return false;
			continue;
		}
		if (!(ld == 1 && vd[0] == '+') && (ld != lf || memcmp(vd, vf, ld)))
			return false;
	}
}

/* One rule (a pattern put in for the client): 0 a deny covering all of f, 1 a read grant overlapping f, -1 neither. */
static int filter_pattern(const struct rule *r, const char *cid, const char *user, const char *f,
			  size_t fl)
{
	char small[PATTERN_SMALL], *big;
	const char *pf;
	size_t pl;
	int rc = -1;

	if (!(pf = expand(r, cid, user, small, &big, &pl)))
		return r->access ? -1 : 0; /* out of memory: a deny still holds */
	if (pf == r->filter || topic_filter_valid(pf, pl)) {
		if (!r->access && filter_covered(pf, pl, f, fl))
			rc = 0;
		else if ((r->access & ACL_READ) && filters_overlap(pf, pl, f, fl))
			rc = 1;
	}
	mem_free(big);
	return rc;
}

/* The answer of the rules of l for filter f: 0 denied, 1 something readable, -1 no rule says. */
static int filter_rules(const struct rules *l, const char *cid, const char *user, const char *f,
			size_t fl)
{
	int rc = -1;

	for (size_t i = 0; i < l->n; i++) {
		int m;

		if (l->r[i].has_u && !user)
			continue;
		m = filter_pattern(&l->r[i], cid, user ? user : "", f, fl);
		if (m == 0)
			return 0;
		if (m == 1)
			rc = 1;
	}
	return rc;
}

bool acl_check_filter(const struct acl_table *t, const char *client_id, const char *username,
		      const char *filter, size_t flen)
{
	const struct rules *own = own_rules(t, username);
	int rc = own ? filter_rules(own, client_id, username, filter, flen) : -1;

	if (rc == 0)
		return false;
	if (rc == 1)
		return true;
	if (!t->patterns.n || strpbrk(client_id, "+#") || (username && strpbrk(username, "+#")))
		return false;
	return filter_rules(&t->patterns, client_id, username, filter, flen) == 1;
}

/* --- parsing ------------------------------------------------------------------ */

static int rules_add(struct rules *l, const struct rule *r)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct rule *a = mem_realloc(l->r, cap * sizeof(*a));

		if (!a)
			return -1;
		l->r = a;
		l->cap = cap;
	}
	if (r->access) {
		l->r[l->n++] = *r;
		return 0;
	}
	/* a deny goes before the grants (a deny wins) */
	memmove(&l->r[l->n_deny + 1], &l->r[l->n_deny], (l->n - l->n_deny) * sizeof(*l->r));
	l->r[l->n_deny++] = *r;
	l->n++;
	return 0;
}

static void rules_free(struct rules *l)
{
	for (size_t i = 0; i < l->n; i++)
		mem_free(l->r[i].filter);
	mem_free(l->r);
}

static char *trim(char *s)
{
	size_t n;

	s += strspn(s, " \t");
	n = strlen(s);
	while (n && strchr(" \t\r\n", s[n - 1]))
		s[--n] = '\0';
	return s;
}

struct parse {
	struct acl_table *t;
	size_t user; /* where topic lines go: users[user - 1], or anon when 0 */
	const char *why;
};

static struct rules *current(struct parse *p)
{
	return p->user ? &p->t->users[p->user - 1].rules : &p->t->anon;
}

static const struct {
	const char *word;
	unsigned access;
} access_words[] = {
	{ "read", ACL_READ },
	{ "write", ACL_WRITE },
	{ "readwrite", ACL_READ | ACL_WRITE },
	{ "deny", 0 },
};

/* The access of word (wl bytes): 0 with *access set, or -1 for no access word. */
static int access_word(const char *w, size_t wl, unsigned *access)
{
	for (size_t i = 0; i < sizeof(access_words) / sizeof(access_words[0]); i++)
		if (wl == strlen(access_words[i].word) && !strncmp(w, access_words[i].word, wl)) {
			*access = access_words[i].access;
			return 0;
		}
	return -1;
}

/*
 * "[read|write|readwrite|deny] FILTER" of a topic or pattern line into r, as
 * mosquitto reads it: one word is the filter (readwrite); with more, the
 * first is the access and the rest of the line the filter (spaces in it).
 */
static int parse_rule(struct parse *p, char *rest, bool pattern, struct rule *r)
{
	size_t wl = strcspn(rest, " \t");

	memset(r, 0, sizeof(*r));
	r->access = ACL_READ | ACL_WRITE;
	if (rest[wl]) {
		if (access_word(rest, wl, &r->access)) {
			p->why = "unknown access (expected read, write, readwrite or deny)";
			return -1;
		}
		rest = trim(rest + wl);
	}
	if (!*rest) {
		p->why = "no topic filter";
		return -1;
	}
	if (!topic_filter_valid(rest, strlen(rest))) {
		p->why = "not a valid topic filter";
		return -1;
	}
	r->flen = strlen(rest);
	r->has_c = pattern && strstr(rest, "%c");
	r->has_u = pattern && strstr(rest, "%u");
	if (!(r->filter = mem_strdup(rest))) {
		p->why = "out of memory";
		return -1;
	}
	return 0;
}

static int add_user(struct parse *p, const char *name)
{
	struct acl_table *t = p->t;

	if (!*name) {
		p->why = "user without a name";
		return -1;
	}
	/* a user named again: its rules join the earlier section's, as in mosquitto */
	for (size_t i = 0; i < t->n_users; i++)
		if (!strcmp(t->users[i].name, name)) {
			p->user = i + 1;
			return 0;
		}
	if (t->n_users == t->cap_users) {
		size_t cap = t->cap_users ? t->cap_users * 2 : 8;
		struct acl_user *a = mem_realloc(t->users, cap * sizeof(*a));

		if (!a) {
			p->why = "out of memory";
			return -1;
		}
		t->users = a;
		t->cap_users = cap;
	}
	memset(&t->users[t->n_users], 0, sizeof(t->users[0]));
	if (!(t->users[t->n_users].name = mem_strdup(name))) {
		p->why = "out of memory";
		return -1;
	}
	p->user = ++t->n_users;
	return 0;
}

static int parse_line(struct parse *p, char *line)
{
	char *s = trim(line), *rest;
	size_t kl = strcspn(s, " \t");
	struct rule r;
	bool pattern;

	if (!*s || *s == '#')
		return 0;
	rest = trim(s + kl);
	if (kl == 4 && !strncmp(s, "user", 4))
		return add_user(p, rest);
	pattern = kl == 7 && !strncmp(s, "pattern", 7);
	if (!pattern && !(kl == 5 && !strncmp(s, "topic", 5))) {
		p->why = "expected a topic, pattern or user line";
		return -1;
	}
	if (parse_rule(p, rest, pattern, &r))
		return -1;
	if (rules_add(pattern ? &p->t->patterns : current(p), &r)) {
		mem_free(r.filter);
		p->why = "out of memory";
		return -1;
	}
	p->t->n_rules++;
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct acl_user *)a)->name, ((const struct acl_user *)b)->name);
}

/* One line of the file (linefile_fn): 0, or -1 with *why. */
static int line_of(void *arg, char *line, const char **why)
{
	struct parse *p = arg;

	if (!parse_line(p, line))
		return 0;
	*why = p->why;
	return -1;
}

struct acl_table *acl_load(const char *path, char *err, size_t errlen)
{
	struct acl_table *t = mem_calloc(1, sizeof(*t));
	struct parse p = { .t = t };

	if (!t) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	if (linefile_each(path, ACL_LINE_MAX, line_of, &p, err, errlen)) {
		acl_free(t);
		return NULL;
	}
	if (t->n_users)
		qsort(t->users, t->n_users, sizeof(*t->users), by_name);
	return t;
}

void acl_free(struct acl_table *t)
{
	if (!t)
		return;
	rules_free(&t->anon);
	rules_free(&t->patterns);
	for (size_t i = 0; i < t->n_users; i++) {
		rules_free(&t->users[i].rules);
		mem_free(t->users[i].name);
	}
	mem_free(t->users);
	mem_free(t);
}

size_t acl_rules(const struct acl_table *t)
{
	return t ? t->n_rules : 0;
}
