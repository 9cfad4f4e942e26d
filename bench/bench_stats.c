/*
 * bench_stats.c - what the generator measures: end-to-end latency, which
 * messages arrived, and the broker's memory and CPU.
 *
 * Latency goes into a log-linear histogram of nanoseconds: values below 64
 * have a bucket each, above that every power of two is split into 32
 * buckets, so a percentile is within about 3% of the true value; the
 * maximum is kept exactly. A run of any length costs 16 kB.
 *
 * Arrivals are a bitmap per (receiver, publisher) indexed by sequence
 * number, grown as sequences come: a set bit met again is a duplicate, and
 * what never got a bit is lost. Order is checked separately by the
 * subscriber (a sequence lower than the last one it saw from that
 * publisher), because in a shared group the bitmap is the group's while
 * order is each member's. The ordered scenario checks order for the group
 * as a whole instead, per (publisher, key) stream (struct keyorder): a
 * broker that keeps key order hands a key's next message out only once the
 * one before is acknowledged, so the group sees each stream in sequence
 * even when consecutive messages go to different members.
 *
 * Broker figures come from /proc/PID/status (VmRSS, and VmHWM: the peak
 * since the broker started) and /proc/PID/stat (utime + stime), read at the
 * edges of the measurement window.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "mem.h"

int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static unsigned hist_index(uint64_t v)
{
	unsigned msb;

	if (v < 64)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	return 64 + (msb - 6) * 32 + (unsigned)((v >> (msb - 5)) & 31);
}

/* The middle of bucket i. */
static uint64_t hist_value(unsigned i)
{
	unsigned msb, sub;
	uint64_t lo;

	if (i < 64)
		return i;
	msb = (i - 64) / 32 + 6;
	sub = (i - 64) % 32;
	lo = (uint64_t)(32 + sub) << (msb - 5);
	return lo + ((1ull << (msb - 5)) >> 1);
}

void hist_add(struct hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

uint64_t hist_pct(const struct hist *h, double pct)
{
	uint64_t want, acc = 0;
	unsigned i;

	if (!h->n)
		return 0;
	want = (uint64_t)((double)h->n * pct / 100.0);
	if (want >= h->n)
		want = h->n - 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		acc += h->b[i];
		if (acc > want) {
			uint64_t v = hist_value(i);

			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}

static int seen_grow(struct seen *s, uint32_t word)
{
	uint32_t words = s->words ? s->words : 64;
	uint64_t *nb;

	while (words <= word)
		words *= 2;
	nb = mem_realloc(s->bits, (size_t)words * sizeof(*nb));
	if (!nb)
		return -1;
	memset(nb + s->words, 0, (size_t)(words - s->words) * sizeof(*nb));
	s->bits = nb;
	s->words = words;
	return 0;
}

int seen_mark(struct seen *s, uint32_t seq)
{
	uint32_t w = seq / 64;
	uint64_t bit = 1ull << (seq % 64);

	if (w >= s->words && seen_grow(s, w) < 0)
		return -1;
	if (s->bits[w] & bit) {
		s->dups++;
		return 0;
	}
	s->bits[w] |= bit;
	s->unique++;
	return 1;
}

void seen_free(struct seen *s)
{
	mem_free(s->bits);
	memset(s, 0, sizeof(*s));
}

/* A "Name: N kB" line of /proc/PID/status; fmt is its sscanf format. */
static long proc_status_kb(pid_t pid, const char *fmt)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, fmt, &kb) == 1)
			break;
	fclose(f);
	return kb;
}

long proc_rss_kb(pid_t pid)
{
	return proc_status_kb(pid, "VmRSS: %ld kB");
}

long proc_hwm_kb(pid_t pid)
{
	return proc_status_kb(pid, "VmHWM: %ld kB");
}

double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	size_t n;
	FILE *f;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* The command name may hold spaces and ')': fields start after the last ')'. */
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

int keyorder_init(struct keyorder *ko, uint32_t npubs, uint32_t keys)
{
	size_t n = (size_t)npubs * keys;

	memset(ko, 0, sizeof(*ko));
	ko->last = mem_calloc(n, sizeof(*ko->last));
	ko->n = mem_calloc(n, sizeof(*ko->n));
	if (!ko->last || !ko->n) {
		keyorder_free(ko);
		return -1;
	}
	ko->npubs = npubs;
	ko->keys = keys;
	return 0;
}

/*
 * A message that jumps ahead (seq > last + 1) is not counted here: the
 * ones it jumped over either come later, each then below the highest seen
 * and counted as reordered, or never, and then the stream is not complete
 * at the end (keyorder_complete). Either way the run fails once.
 */
void keyorder_arrive(struct keyorder *ko, uint32_t pub, uint32_t key, uint32_t seq, bool fresh)
{
	size_t i = (size_t)pub * ko->keys + key;

	if (!fresh)
		return;
	ko->n[i]++;
	if (seq < ko->last[i])
		ko->reordered++;
	else
		ko->last[i] = seq;
}

bool keyorder_complete(const struct keyorder *ko, uint32_t pub, uint32_t key, uint32_t sent)
{
	size_t i = (size_t)pub * ko->keys + key;

	return ko->n[i] == sent && ko->last[i] == sent;
}

void keyorder_free(struct keyorder *ko)
{
	mem_free(ko->last);
	mem_free(ko->n);
	memset(ko, 0, sizeof(*ko));
}

/* Feeds one stream (publisher 0, key 0 of two keys), duplicates told apart as in a run
 * (struct seen); returns how many were reordered, or -1 when the stream is not 1..sent. */
static int64_t ko_feed(const uint32_t *seq, int n, uint32_t sent)
{
	struct keyorder ko;
	struct seen seen = { 0 };
	int64_t rc = -2;
	int i;

	if (keyorder_init(&ko, 1, 2) < 0)
		return -2;
	for (i = 0; i < n; i++) {
		int fresh = seen_mark(&seen, seq[i]);

		if (fresh < 0)
			goto out;
		keyorder_arrive(&ko, 0, 0, seq[i], fresh == 1);
	}
	rc = keyorder_complete(&ko, 0, 0, sent) && keyorder_complete(&ko, 0, 1, 0)
		     ? (int64_t)ko.reordered
		     : -1;
out:
	seen_free(&seen);
	keyorder_free(&ko);
	return rc;
}

/*
 * What the checker must say about streams a group could see: in order;
 * two members' messages read the wrong way round (as a broker without key
 * order gives them); duplicates, also of an older message after a newer
 * one (not order errors); a message missing in the middle, or at the end.
 * Without a broker, so that a run against one that keeps key order still
 * shows the checker can fail.
 */
int keyorder_selftest(void)
{
	static const uint32_t ok[] = { 1, 2, 3, 4 }, swap[] = { 1, 3, 2, 4, 6, 5 };
	static const uint32_t dup[] = { 1, 2, 2, 3, 1 }, hole[] = { 1, 3, 4 };

	return ko_feed(ok, 4, 4) == 0 && ko_feed(swap, 6, 6) == 2 && ko_feed(dup, 5, 3) == 0 &&
			       ko_feed(hole, 3, 4) == -1 && ko_feed(ok, 4, 5) == -1
		       ? 0
		       : -1;
}
