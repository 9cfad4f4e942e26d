/*
 * promtext.c - writing the Prometheus text format (promtext.h).
 *
 * Owns nothing but the exposition being written: which family's HELP and
 * TYPE lines are out. Runs on whatever thread calls it (the broker's loop,
 * answering GET /metrics); no globals.
 *
 * Invariants: a family's HELP and TYPE come once, before its first sample;
 * names that are not Prometheus names are never written (a plugin's typo
 * cannot break the whole scrape); label values are escaped ('\\', '"',
 * newline) so any topic filter may be one.
 */
#include "promtext.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void prom_init(struct prom *p, struct buf *out)
{
	p->out = out;
	p->family[0] = '\0';
	p->err = 0;
}

bool prom_name_ok(const char *name, bool label)
{
	size_t n = name ? strlen(name) : 0;

	if (!n || n >= PROM_NAME_MAX || (name[0] >= '0' && name[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || (c == ':' && !label)))
			return false;
	}
	return true;
}

static void put(struct prom *p, const char *s, size_t n)
{
	if (!p->err && buf_put(p->out, s, n))
		p->err = -1;
}

static void puts_(struct prom *p, const char *s)
{
	put(p, s, strlen(s));
}

/* HELP text: '\\' and newline escaped. */
static void put_help(struct prom *p, const char *help)
{
	for (; *help; help++) {
		if (*help == '\\')
			puts_(p, "\\\\");
		else if (*help == '\n')
			puts_(p, "\\n");
		else
			put(p, help, 1);
	}
}

static void family(struct prom *p, const char *name, const char *type, const char *help)
{
	if (!strcmp(p->family, name))
		return;
	snprintf(p->family, sizeof(p->family), "%s", name);
	puts_(p, "# HELP ");
	puts_(p, name);
	puts_(p, " ");
	put_help(p, help ? help : "");
	puts_(p, "\n# TYPE ");
	puts_(p, name);
	puts_(p, " ");
	puts_(p, type);
	puts_(p, "\n");
}

static void put_label(struct prom *p, const char *label, const char *value)
{
	puts_(p, "{");
	puts_(p, label);
	puts_(p, "=\"");
	for (; *value; value++) {
		if (*value == '\\' || *value == '"')
			put(p, "\\", 1);
		if (*value == '\n')
			puts_(p, "\\n");
		else
			put(p, value, 1);
	}
	puts_(p, "\"}");
}

void prom_u64(struct prom *p, const char *name, const char *type, const char *help,
	      const char *label, const char *label_value, uint64_t value)
{
	char num[32];

	if (!prom_name_ok(name, false) || (label && !prom_name_ok(label, true)))
		return;
	family(p, name, type, help);
	puts_(p, name);
	if (label)
		put_label(p, label, label_value ? label_value : "");
	snprintf(num, sizeof(num), " %" PRIu64 "\n", value);
	puts_(p, num);
}

/*
 * A histogram's _sum exactly: a whole number below 2^53 (a sum of batch
 * sizes: operations) in all its digits, anything else with the 17
 * significant digits that give the same double back. ("%.9g" wrote
 * 1234567891 as 1.23456789e+09, so the operations counted no longer added
 * up once past a billion.)
 */
static void format_sum(double sum, char *out, size_t len)
{
	if (sum >= 0 && sum < 9007199254740992.0 && (double)(uint64_t)sum == sum)
		snprintf(out, len, "%" PRIu64, (uint64_t)sum);
	else
		snprintf(out, len, "%.17g", sum);
}

void prom_histogram(struct prom *p, const char *name, const char *help, const double *bounds,
		    const uint64_t *counts, size_t n, double sum)
{
	char line[PROM_NAME_MAX + 96], le[32];
	uint64_t total = 0;

	if (!prom_name_ok(name, false))
		return;
	family(p, name, "histogram", help);
	for (size_t i = 0; i <= n; i++) {
		total += counts[i];
		if (i < n)
			snprintf(le, sizeof(le), "%g", bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		snprintf(line, sizeof(line), "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, le, total);
		puts_(p, line);
	}
	format_sum(sum, le, sizeof(le));
	snprintf(line, sizeof(line), "%s_sum %s\n%s_count %" PRIu64 "\n", name, le, name, total);
	puts_(p, line);
}
