/*
 * fuzz_topic.c - libFuzzer target for topic syntax (utf8.h), the
 * subscription trie (topic_tree.h) and the retained-message trie
 * (retain_tree.h).
 *
 * Input: lines separated by '\n'. The first byte of a line is an operation
 * code, the rest a string:
 *
 *   op & 3 == 0   subscribe the string as a filter (when valid)
 *   op & 3 == 1   unsubscribe it
 *   op & 3 == 2   publish to it as a topic: match it, and retain it
 *   op & 3 == 3   clear it as a retained topic; match it as a filter
 *                 against the retained topics
 *
 * Bits 2-3 pick one of four owners, bits 4-6 the options and subscription
 * identifier; bit 7 makes the allocation that many (bits 4-6) steps ahead
 * fail, so out-of-memory paths run too: a failed operation must leave the
 * tree as it was.
 *
 * Every string goes through the syntax checks, which are compared with a
 * reference written here from the specification (UTF-8 by the table of
 * well-formed byte sequences, filters level by level). Both trees are
 * shadowed by a plain list; every match result must equal what
 * topic_match_naive() says about each entry of the list, and
 * topic_match_naive() itself must agree with this file's level matcher.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "mem.h"
#include "retain_tree.h"
#include "../unit/naive_match.h"
#include "topic_tree.h"
#include "topic.h"
#include "utf8.h"

#define MAX_LINES 256
#define NOWNERS 4

/* ---- references for utf8.h --------------------------------------------- */

/* Well-formed UTF-8 (Unicode table 3-7), minus U+0000 [MQTT-1.5.4-2]. */
static bool ref_utf8(const uint8_t *s, size_t len)
{
	size_t i = 0, n, k;
	uint8_t lo, hi;

	while (i < len) {
		uint8_t c = s[i];

		lo = 0x80;
		hi = 0xBF;
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			n = 1;
		else if (c >= 0xE0 && c <= 0xEF)
			n = 2;
		else if (c >= 0xF0 && c <= 0xF4)
			n = 3;
		else
			return false;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
		else if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
		if (len - i - 1 < n || s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (k = 2; k <= n; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xBF)
				return false;
		i += n + 1;
	}
	return true;
}

/* Each level is wildcard-free, or exactly "+", or exactly "#" and last. */
static bool ref_levels(const char *s, size_t len)
{
	size_t start = 0, end, i;
	bool wild;

	if (len == 0)
		return false;
	for (;;) {
		end = start;
		while (end < len && s[end] != '/')
			end++;
		wild = false;
		for (i = start; i < end; i++)
			wild = wild || s[i] == '+' || s[i] == '#';
		if (wild && end - start != 1)
			return false;
		if (wild && s[start] == '#' && end != len)
			return false;
		if (end == len)
			return true;
		start = end + 1;
	}
}

static bool ref_is_share(const char *s, size_t len)
{
	return len >= 7 && memcmp(s, "$share/", 7) == 0;
}

/* "$share/" group "/" filter: group non-empty without '+', '#'. */
static bool ref_share(const char *s, size_t len, size_t *glen)
{
	size_t g = 7, i = g;

	while (i < len && s[i] != '/') {
		if (s[i] == '+' || s[i] == '#')
			return false;
		i++;
	}
	if (i == len || i == g)
		return false;
	*glen = i - g;
	return ref_levels(s + i + 1, len - i - 1);
}

static bool ref_filter(const char *s, size_t len)
{
	size_t glen;

	if (len == 0 || !ref_utf8((const uint8_t *)s, len))
		return false;
	return ref_is_share(s, len) ? ref_share(s, len, &glen) : ref_levels(s, len);
}

static bool has_wild(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '+' || s[i] == '#')
			return true;
	return false;
}

static bool ref_name(const char *s, size_t len)
{
	return len > 0 && !has_wild(s, len) && ref_utf8((const uint8_t *)s, len);
}

static void check_syntax(const char *s, size_t len)
{
	const char *g = NULL, *f = NULL;
	size_t glen = 0, flen = 0, rglen = 0;
	bool shared;

	fuzz_check((utf8_check(s, len) == 0) == ref_utf8((const uint8_t *)s, len));
	fuzz_check(topic_name_valid(s, len) == ref_name(s, len));
	fuzz_check(topic_filter_valid(s, len) == ref_filter(s, len));
	fuzz_check(topic_filter_has_wildcard(s, len) == has_wild(s, len));
	shared = topic_share_split(s, len, &g, &glen, &f, &flen);
	fuzz_check(shared == (ref_filter(s, len) && ref_is_share(s, len)));
	if (shared) {
		fuzz_check(ref_share(s, len, &rglen));
		fuzz_check(g == s + 7 && glen == rglen);
		fuzz_check(f == g + glen + 1 && flen == len - 8 - glen);
	}
}

/* ---- reference matcher ------------------------------------------------- */

/* Does the plain filter f match topic t (section 4.7)? Both valid, NUL-terminated. */
static bool ref_match(const char *f, const char *t)
{
	size_t fl, tl;

	if (t[0] == '$' && (f[0] == '+' || f[0] == '#')) /* [MQTT-4.7.2-1] */
		return false;
	for (;;) {
		fl = strcspn(f, "/");
		tl = strcspn(t, "/");
		if (fl == 1 && *f == '#')
			return true; /* the rest, including the parent level */
		if (!(fl == 1 && *f == '+') && !(fl == tl && memcmp(f, t, fl) == 0))
			return false;
		f += fl;
		t += tl;
		if (*t == '\0') /* topic exhausted: only "/#" may remain */
			return *f == '\0' || strcmp(f, "/#") == 0;
		if (*f == '\0')
			return false;
		f++;
		t++;
	}
}

static bool matches(const char *filter, const char *topic)
{
	bool naive = topic_match_naive(filter, topic);

	fuzz_check(naive == ref_match(filter, topic));
	return naive;
}

/* ---- the shadow model ---------------------------------------------------- */

struct entry {
	char *filter; /* without $share/group/ */
	char *group; /* NULL for a plain subscription */
	int owner;
	uint8_t options;
	uint32_t subid;
	bool seen; /* delivered by the current match */
};

struct state {
	struct topic_tree *tree;
	struct retain_tree *retained;
	struct entry subs[MAX_LINES];
	size_t nsubs;
	char *topics[MAX_LINES]; /* retained topics */
	size_t ntopics;
	const char *topic; /* being matched */
	size_t delivered;
};

static int owners[NOWNERS];

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	fuzz_check(d != NULL);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static bool same_group(const struct entry *e, const char *g, size_t glen)
{
	if (!g || !e->group)
		return !g && !e->group;
	return strlen(e->group) == glen && memcmp(e->group, g, glen) == 0;
}

static struct entry *find_sub(struct state *st, const char *f, size_t flen, const char *g,
			      size_t glen, int owner)
{
	for (size_t i = 0; i < st->nsubs; i++) {
		struct entry *e = &st->subs[i];

		if (e->owner == owner && strlen(e->filter) == flen &&
		    memcmp(e->filter, f, flen) == 0 && same_group(e, g, glen))
			return e;
	}
	return NULL;
}

/* Splits a valid filter into (group, plain filter). */
static void split(const char *s, size_t len, const char **g, size_t *glen, const char **f,
		  size_t *flen)
{
	if (!topic_share_split(s, len, g, glen, f, flen)) {
		*g = NULL;
		*glen = 0;
		*f = s;
		*flen = len;
	}
}

static void do_subscribe(struct state *st, const char *s, size_t len, int owner, uint8_t op)
{
	const char *g, *f;
	size_t glen, flen;
	uint8_t options = (op >> 4) & 7;
	uint32_t subid = (op >> 4) & 7;
	bool existed = false;
	struct entry *e;
	int rc;

	split(s, len, &g, &glen, &f, &flen);
	e = find_sub(st, f, flen, g, glen, owner);
	rc = topic_tree_subscribe(st->tree, f, flen, g, glen, &owners[owner], options, subid,
				  &existed);
	mem_fail_after(-1);
	if (rc != 0)
		return; /* out of memory: nothing changed, which later checks verify */
	fuzz_check(existed == (e != NULL));
	if (!e) {
		e = &st->subs[st->nsubs++];
		e->filter = dup_n(f, flen);
		e->group = g ? dup_n(g, glen) : NULL;
		e->owner = owner;
	}
	e->options = options;
	e->subid = subid;
}

static void do_unsubscribe(struct state *st, const char *s, size_t len, int owner)
{
	const char *g, *f;
	size_t glen, flen;
	struct entry *e;
	int rc;

	split(s, len, &g, &glen, &f, &flen);
	e = find_sub(st, f, flen, g, glen, owner);
	rc = topic_tree_unsubscribe(st->tree, f, flen, g, glen, &owners[owner]);
	fuzz_check((rc == 0) == (e != NULL));
	if (!e)
		return;
	free(e->filter);
	free(e->group);
	*e = st->subs[--st->nsubs];
}

/* Marks the unseen model entry equal to what the tree delivered; it must exist. */
static void on_match(const struct topic_sub *sub, struct topic_group *grp, void *arg)
{
	struct state *st = arg;
	size_t i, members = 0;

	st->delivered++;
	fuzz_check((sub == NULL) != (grp == NULL));
	for (i = 0; i < st->nsubs && sub; i++) {
		struct entry *e = &st->subs[i];

		if (!e->seen && !e->group && sub->owner == &owners[e->owner] &&
		    sub->options == e->options && sub->subid == e->subid &&
		    matches(e->filter, st->topic)) {
			e->seen = true;
			return;
		}
	}
	fuzz_check(grp != NULL); /* a plain subscription nobody made */
	fuzz_check(grp->n > 0 && grp->next < grp->n);
	fuzz_check(matches(grp->filter, st->topic));
	for (i = 0; i < st->nsubs; i++) {
		struct entry *e = &st->subs[i];

		if (!e->group || strcmp(e->group, grp->name) || strcmp(e->filter, grp->filter))
			continue;
		fuzz_check(!e->seen); /* each group once */
		e->seen = true;
		members++;
		for (size_t m = 0; m < grp->n; m++) {
			if (grp->members[m].owner != &owners[e->owner])
				continue;
			fuzz_check(grp->members[m].options == e->options);
			fuzz_check(grp->members[m].subid == e->subid);
		}
	}
	fuzz_check(members == grp->n);
}

static void check_match(struct state *st, const char *topic)
{
	size_t i;

	for (i = 0; i < st->nsubs; i++)
		st->subs[i].seen = false;
	st->topic = topic;
	st->delivered = 0;
	topic_tree_match(st->tree, topic, strlen(topic), on_match, st);
	for (i = 0; i < st->nsubs; i++)
		fuzz_check(st->subs[i].seen == matches(st->subs[i].filter, topic));
}

/* ---- retained topics ------------------------------------------------------ */

static size_t find_topic(const struct state *st, const char *t)
{
	size_t i;

	for (i = 0; i < st->ntopics; i++)
		if (strcmp(st->topics[i], t) == 0)
			break;
	return i;
}

static void do_retain(struct state *st, const char *topic)
{
	char *value = dup_n(topic, strlen(topic));
	size_t i = find_topic(st, topic);
	int rc;

	rc = retain_tree_set(st->retained, topic, strlen(topic), value);
	mem_fail_after(-1);
	if (rc != 0) {
		free(value); /* not taken */
		return;
	}
	if (i == st->ntopics)
		st->topics[st->ntopics++] = dup_n(topic, strlen(topic));
	value = retain_tree_get(st->retained, topic, strlen(topic));
	fuzz_check(value && strcmp(value, topic) == 0);
}

static void do_clear(struct state *st, const char *topic)
{
	size_t i = find_topic(st, topic);
	int rc = retain_tree_clear(st->retained, topic, strlen(topic));

	fuzz_check((rc == 0) == (i < st->ntopics));
	fuzz_check(retain_tree_get(st->retained, topic, strlen(topic)) == NULL);
	if (i == st->ntopics)
		return;
	free(st->topics[i]);
	st->topics[i] = st->topics[--st->ntopics];
}

struct rmatch {
	const struct state *st;
	const char *filter;
	bool seen[MAX_LINES];
};

static void on_retained(const char *topic, void *value, void *arg)
{
	struct rmatch *m = arg;
	size_t i = find_topic(m->st, topic);

	fuzz_check(i < m->st->ntopics);
	fuzz_check(!m->seen[i]);
	fuzz_check(strcmp(value, topic) == 0);
	m->seen[i] = true;
}

static void check_retained(struct state *st, const char *s, size_t len)
{
	struct rmatch m = { .st = st };
	const char *g, *f;
	size_t glen, flen;
	char *filter;

	split(s, len, &g, &glen, &f, &flen);
	filter = dup_n(f, flen);
	m.filter = filter;
	retain_tree_match(st->retained, f, flen, on_retained, &m);
	for (size_t i = 0; i < st->ntopics; i++)
		fuzz_check(m.seen[i] == matches(filter, st->topics[i]));
	free(filter);
}

/* ---- driver --------------------------------------------------------------- */

static void line(struct state *st, uint8_t op, const char *s, size_t len)
{
	int owner = (op >> 2) & (NOWNERS - 1);
	bool filter = topic_filter_valid(s, len), name = topic_name_valid(s, len);

	check_syntax(s, len);
	if ((op & 0x80) && (op & 3) != 1 && (op & 3) != 3)
		mem_fail_after((op >> 4) & 7);
	if ((op & 3) == 0 && filter)
		do_subscribe(st, s, len, owner, op);
	else if ((op & 3) == 1 && filter)
		do_unsubscribe(st, s, len, owner);
	else if ((op & 3) == 2 && name)
		do_retain(st, s); /* no NUL: name is valid UTF-8 */
	else if ((op & 3) == 3 && name)
		do_clear(st, s);
	mem_fail_after(-1);
	if ((op & 3) == 2 && name)
		check_match(st, s);
	if ((op & 3) == 3 && filter)
		check_retained(st, s, len);
	fuzz_check(topic_tree_count(st->tree) == st->nsubs);
	fuzz_check(retain_tree_count(st->retained) == st->ntopics);
}

static void state_free(struct state *st)
{
	for (size_t i = 0; i < st->nsubs; i++) {
		free(st->subs[i].filter);
		free(st->subs[i].group);
	}
	for (size_t i = 0; i < st->ntopics; i++)
		free(st->topics[i]);
	topic_tree_free(st->tree);
	retain_tree_free(st->retained);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct state st;
	size_t pos = 0, end, n = 0;
	char *s;

	memset(&st, 0, sizeof(st));
	st.tree = topic_tree_new();
	st.retained = retain_tree_new(free);
	fuzz_check(st.tree && st.retained);
	while (pos < size && n++ < MAX_LINES) {
		end = pos;
		while (end < size && data[end] != '\n')
			end++;
		if (end > pos) {
			/* NUL-terminated copy of exactly the line: ASan sees overruns. */
			s = dup_n((const char *)data + pos + 1, end - pos - 1);
			line(&st, data[pos], s, end - pos - 1);
			free(s);
		}
		pos = end + 1;
	}
	state_free(&st);
	return 0;
}
