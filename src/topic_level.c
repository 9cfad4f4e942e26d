/*
 * topic_level.c - topic level arithmetic and the sorted child search
 * (see topic_level.h). Kept apart from both tries so neither owns the
 * definition of a level.
 */
#include "topic_level.h"

#include <string.h>

size_t topic_level_len(const char *s, size_t len, size_t pos)
{
	const char *e = memchr(s + pos, '/', len - pos);

	return e ? (size_t)(e - s) - pos : len - pos;
}

size_t topic_level_next(const char *s, size_t len, size_t pos)
{
	return pos + topic_level_len(s, len, pos) + 1;
}

size_t topic_level_prev(const char *s, size_t pos)
{
	size_t i = pos - 1;

	while (i > 0 && s[i - 1] != '/')
		i--;
	return i;
}

int topic_level_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

size_t topic_level_search(void *const *kids, size_t n, size_t len_off, const char *l, size_t len,
			  bool *found)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *k = (const char *)kids[mid] + len_off;
		size_t klen;
		int c;

		memcpy(&klen, k, sizeof(klen));
		c = topic_level_cmp(l, len, k + sizeof(size_t), klen);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	*found = false;
	return lo;
}
