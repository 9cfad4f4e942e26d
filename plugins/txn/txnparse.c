/*
 * txnparse.c - the pure part of the transactional topics plugin: topic
 * forms, option and property values, the record of one transaction and its
 * keys (txnparse.h). Runs on whatever thread calls it; keeps no state.
 *
 * Topic forms. Everything under "$txn/" belongs to the plugin: half, commit
 * and rollback are the three a client may publish to, and any other form
 * (check and discarded notices are the broker's own, a malformed id, a
 * missing target) is refused with 0x90 rather than routed, so a client can
 * neither forge a check-back nor have a typo silently reach subscribers.
 *
 * The record is a fixed little-endian layout with a version byte, then the
 * owner and group strings with 16-bit lengths; decode checks every length
 * against the value so a damaged row is refused, not read past.
 */
#include "txnparse.h"

#include <string.h>

#define PREFIX "$txn/"
#define PREFIX_LEN 5
#define REC_VERSION 1

static void bad(struct txn_topic *out, uint8_t reason, const char *why)
{
	out->kind = TXN_BAD;
	out->reason = reason;
	out->why = why;
}

bool txn_id_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > TXN_ID_MAX)
		return false;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

bool txn_group_valid(const char *s, size_t len)
{
	return len > 0 && len <= 65535 - 11 && !memchr(s, '+', len) && !memchr(s, '#', len) &&
	       !memchr(s, '\0', len);
}

/* "{id}" alone (commit, rollback) or "{id}/{target}" (half). */
static void parse_id(const char *rest, bool with_target, struct txn_topic *out)
{
	const char *slash = strchr(rest, '/');
	size_t len = slash ? (size_t)(slash - rest) : strlen(rest);

	if (!txn_id_valid(rest, len))
		return bad(out, TXN_RC_TOPIC_INVALID,
			   "transaction id must be 1 to 64 characters of A-Z a-z 0-9 _ . -");
	out->id = rest;
	out->id_len = len;
	if (!with_target) {
		if (slash)
			bad(out, TXN_RC_TOPIC_INVALID, "nothing may follow the transaction id");
		return;
	}
	if (!slash || !slash[1])
		return bad(out, TXN_RC_TOPIC_INVALID, "no topic after the transaction id");
	out->target = slash + 1;
	if (out->target[0] == '$' && strncmp(out->target, "$delayed/", 9))
		bad(out, TXN_RC_TOPIC_INVALID,
		    "a transaction may not publish on a $ topic other than $delayed/");
}

void txn_parse_topic(const char *topic, struct txn_topic *out)
{
	const char *rest = topic + PREFIX_LEN;

	memset(out, 0, sizeof(*out));
	if (strncmp(topic, PREFIX, PREFIX_LEN)) {
		/* "$txn" alone is ours too: nobody else may publish there. */
		if (!strcmp(topic, "$txn"))
			bad(out, TXN_RC_TOPIC_INVALID,
			    "$txn/ topics are half, commit and rollback");
		return;
	}
	if (!strncmp(rest, "half/", 5)) {
		out->kind = TXN_HALF;
		parse_id(rest + 5, true, out);
	} else if (!strncmp(rest, "commit/", 7)) {
		out->kind = TXN_COMMIT;
		parse_id(rest + 7, false, out);
	} else if (!strncmp(rest, "rollback/", 9)) {
		out->kind = TXN_ROLLBACK;
		parse_id(rest + 9, false, out);
	} else {
		bad(out, TXN_RC_TOPIC_INVALID,
		    "$txn/ topics a client publishes to are half, commit and rollback");
	}
}

int txn_parse_uint(const char *s, size_t len, uint64_t *v)
{
	uint64_t x = 0;
	size_t i;

	if (len == 0 || len > 18)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	*v = x;
	return 0;
}

int txn_parse_duration(const char *s, uint64_t *ms)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "h", 3600000 }, { "d", 86400000 } };
	size_t len = strlen(s), digits = 0, i;
	uint64_t v, mult = 1000;

	while (digits < len && s[digits] >= '0' && s[digits] <= '9')
		digits++;
	if (digits < len) {
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (!strcmp(s + digits, units[i].unit))
				break;
		if (i == sizeof(units) / sizeof(units[0]))
			return -1;
		mult = units[i].ms;
	}
	if (digits > 12 || txn_parse_uint(s, digits, &v))
		return -1;
	*ms = v * mult; /* at most 10^12 days: no overflow */
	return 0;
}

/* --- the record ---------------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

size_t txn_rec_size(const struct txn_rec *r)
{
	return TXN_REC_FIXED + r->owner_len + r->group_len;
}

void txn_rec_encode(const struct txn_rec *r, uint8_t *out)
{
	uint8_t *p = out;

	p[0] = REC_VERSION;
	p[1] = r->state;
	put32(p + 2, r->count);
	put32(p + 6, r->routed);
	put32(p + 10, r->checks);
	put64(p + 14, r->opened_ms);
	put64(p + 22, r->last_ms);
	put64(p + 30, r->check_after_ms);
	put64(p + 38, r->resolved_ms);
	p += 46;
	p[0] = (uint8_t)r->owner_len;
	p[1] = (uint8_t)(r->owner_len >> 8);
	memcpy(p + 2, r->owner, r->owner_len);
	p += 2 + r->owner_len;
	p[0] = (uint8_t)r->group_len;
	p[1] = (uint8_t)(r->group_len >> 8);
	memcpy(p + 2, r->group, r->group_len);
}

int txn_rec_decode(const uint8_t *v, size_t len, struct txn_rec *r)
{
	size_t at = 46;

	if (len < TXN_REC_FIXED || v[0] != REC_VERSION || v[1] < TXN_OPEN || v[1] > TXN_ROLLED_BACK)
		return -1;
	r->state = v[1];
	r->count = get32(v + 2);
	r->routed = get32(v + 6);
	r->checks = get32(v + 10);
	r->opened_ms = get64(v + 14);
	r->last_ms = get64(v + 22);
	r->check_after_ms = get64(v + 30);
	r->resolved_ms = get64(v + 38);
	r->owner_len = (size_t)v[at] | (size_t)v[at + 1] << 8;
	if (len - TXN_REC_FIXED < r->owner_len)
		return -1;
	r->owner = (const char *)v + at + 2;
	at += 2 + r->owner_len;
	r->group_len = (size_t)v[at] | (size_t)v[at + 1] << 8;
	if (len != TXN_REC_FIXED + r->owner_len + r->group_len || r->routed > r->count)
		return -1;
	r->group = (const char *)v + at + 2;
	return 0;
}

/* --- keys ------------------------------------------------------------------------------ */

size_t txn_key_rec(uint8_t *out, const char *id, size_t id_len)
{
	out[0] = 't';
	memcpy(out + 1, id, id_len);
	return 1 + id_len;
}

size_t txn_key_msg(uint8_t *out, const char *id, size_t id_len, uint32_t seq)
{
	out[0] = 'm';
	memcpy(out + 1, id, id_len);
	out[1 + id_len] = '/';
	for (int i = 0; i < 4; i++)
		out[2 + id_len + i] = (uint8_t)(seq >> (24 - 8 * i));
	return 6 + id_len;
}

void txn_key_msg_range(const char *id, size_t id_len, uint8_t *lo, size_t *lol, uint8_t *hi,
		       size_t *hil)
{
	/* Ids hold no '/', so "m{id}/" .. "m{id}0" ('0' follows '/') is this id's alone. */
	lo[0] = hi[0] = 'm';
	memcpy(lo + 1, id, id_len);
	memcpy(hi + 1, id, id_len);
	lo[1 + id_len] = '/';
	hi[1 + id_len] = '0';
	*lol = *hil = 2 + id_len;
}
