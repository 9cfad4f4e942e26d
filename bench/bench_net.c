/*
 * bench_net.c - the client side of MQTT for many connections in one epoll
 * loop: connect, subscribe, publish with a bounded window, acknowledge.
 *
 * The loop is level-triggered. Output is appended to each client's buffer
 * and written once per turn for every client on the dirty list, so that a
 * publisher's whole burst and a subscriber's acknowledgements of a whole
 * read go out in one write(); EPOLLOUT is armed only while a write is short.
 *
 * A publisher sends from a PUBLISH encoded once by codec_encode_publish()
 * (pub_prepare) in which only the packet identifier and the 16-byte payload
 * header (publisher id, sequence, send time) are patched: the generator
 * must cost far less per message than the broker, or it measures itself.
 * Everything it receives goes through framer_feed() and codec_decode(),
 * which also checks that the broker's packets are well formed. A delayed
 * publisher's topic is $delayed/SSSSS.mmm/...: the delay is patched in the
 * same way, and its due time (send time + delay) follows the header. An
 * ordered publisher's topic ends in its key (bench/ordered/{key}), patched
 * per message like the delay, as is the MQTT 5 user property sharding-key;
 * the key, the message's number on it and the run's tag follow the header.
 *
 * A txn publisher (struct txn_pub) sends units instead: a transaction of K
 * half messages on $txn/half/{id}/{topic} and its commit on $txn/commit/{id},
 * or a plain batch of K messages on {topic}, one unit at a time. Its
 * templates have the transaction's number patched into the id. The commit
 * goes once every half message is acknowledged (or, pipelined, right behind
 * them); the next unit starts once the whole unit is acknowledged. Every ack
 * is timed from its PUBLISH, and the subscriber times a committed message
 * from its commit (it must not arrive before that).
 *
 * A publisher sends while all of these hold: its count is not reached, its
 * buffer is small, a packet identifier is free (QoS 1/2: at most `window`
 * unacknowledged, capped by the broker's Receive Maximum), and at most
 * `window` of its messages per receiver are still on their way to the
 * subscribers (end to end, at every QoS: this keeps the broker's queues
 * short, so that what is measured is forwarding, not queue overflow). When
 * messages are lost at QoS 0 the end-to-end window would never reopen; after
 * 500 ms without progress the missing ones are written off. At QoS 1/2
 * nothing is written off: a slow broker is waited for, and a broker that
 * loses messages stalls the publisher, which the drain then reports.
 *
 * Subscribers acknowledge every message as soon as it is read, but for
 * backlog-group's slow member (struct held), whose acks wait for a
 * simulated processing time, one message after the other.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench.h"
#include "codec.h"
#include "mem.h"
#include "mqtt.h"

#define READ_BUF (256 * 1024)
#define OUT_HIGH (64 * 1024) /* a publisher stops adding above this */
#define BURST 32 /* messages per publisher per turn */
#define WRITE_OFF_NS 500000000LL

struct run *net_run;
uint64_t net_errors;

static const struct opts *O;
static int ep = -1;
static struct sockaddr_storage addr;
static socklen_t addrlen;
static struct client *dirty;
static uint16_t broker_rmax = 65535;
static uint8_t rbuf[READ_BUF];
static int64_t last_ka_scan;
static int n_reported; /* error lines printed in this run */
/* Every client not yet freed, for the keep-alive scan. */
static struct client **all;
static int n_all, cap_all;

struct clientx {
	struct client c;
	const char *filter;
	int sub_qos;
};

/* backlog-group's slow member: its acks, each due when it is done with the message. */
#define HELD_CAP 65536 /* more packet ids than a broker can have in flight */
#define SLOW_START_NS 1000000LL /* until a fast member has received something */

struct held_ack {
	int64_t arrived, done; /* done = 0: not started */
	uint16_t id;
	uint8_t type; /* PUBACK or PUBREC */
};

struct held {
	struct held_ack *a; /* HELD_CAP entries, a ring */
	uint32_t head, n;
	int64_t prev_done; /* when the message before the head was done */
};

static int parse_addr(const char *host, int port)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;

	memset(&addr, 0, sizeof(addr));
	if (!strcmp(host, "localhost"))
		host = "127.0.0.1";
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		/* Loopback only: 127.0.0.0/8. */
		if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127)
			return -1;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		addrlen = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
			return -1;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		addrlen = sizeof(*a6);
		return 0;
	}
	return -1;
}

int net_init(const struct opts *o)
{
	O = o;
	n_reported = 0;
	if (parse_addr(o->host, o->port) < 0) {
		fprintf(stderr,
			"sluice-bench: refusing %s: only loopback addresses "
			"(127.0.0.0/8, ::1) are allowed\n",
			o->host);
		return -1;
	}
	if (o->tls && btls_init(o->cafile)) {
		fprintf(stderr, "sluice-bench: cannot make a TLS context\n");
		return -1;
	}
	if (ep < 0)
		ep = epoll_create1(EPOLL_CLOEXEC);
	return ep < 0 ? -1 : 0;
}

uint16_t net_broker_rmax(void)
{
	return broker_rmax;
}

struct client *net_client_new(enum role role, int index, const char *id, bool clean)
{
	struct clientx *x = mem_calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	if (n_all == cap_all) {
		int cap = cap_all ? cap_all * 2 : 256;
		struct client **na = mem_realloc(all, (size_t)cap * sizeof(*na));

		if (!na) {
			mem_free(x);
			return NULL;
		}
		all = na;
		cap_all = cap;
	}
	x->c.slot = n_all;
	all[n_all++] = &x->c;
	x->c.fd = -1;
	x->c.role = role;
	x->c.index = index;
	x->c.clean = clean;
	x->c.keepalive = 120;
	x->c.state = C_CLOSED;
	snprintf(x->c.id, sizeof(x->c.id), "%s", id);
	framer_init(&x->c.fr, 0);
	buf_init(&x->c.out);
	return &x->c;
}

static void mark_dirty(struct client *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->next_dirty = dirty;
	dirty = c;
}

static void set_out(struct client *c, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };

	if (c->epollout == on || c->fd < 0)
		return;
	c->epollout = on;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Prints at most 10 error lines per run: one cause often fails hundreds of clients. */
static bool report(void)
{
	if (n_reported == 10)
		fprintf(stderr, "sluice-bench: further errors not shown\n");
	return n_reported++ < 10;
}

static void fail(struct client *c, const char *what, int err)
{
	if (!c->failed && c->state != C_CLOSING) {
		if (report())
			fprintf(stderr, "sluice-bench: client %s: %s%s%s\n", c->id, what,
				err ? ": " : "", err ? strerror(err) : "");
		net_errors++;
	}
	c->failed = true;
	net_close(c);
}

void net_close(struct client *c)
{
	if (c->held)
		c->held->n = 0; /* the broker sends them again on a reconnect */
	if (c->fd >= 0) {
		epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	btls_free(c->tls);
	c->tls = NULL;
	c->fd = -1;
	c->epollout = false;
	c->state = C_CLOSED;
	buf_reset(&c->out);
	framer_free(&c->fr);
	framer_init(&c->fr, 0);
}

void net_free(struct client *c)
{
	struct client **pp;

	if (!c)
		return;
	net_close(c);
	for (pp = &dirty; *pp; pp = &(*pp)->next_dirty)
		if (*pp == c) {
			*pp = c->next_dirty;
			break;
		}
	all[c->slot] = all[--n_all];
	all[c->slot]->slot = c->slot;
	if (c->held)
		mem_free(c->held->a);
	mem_free(c->held);
	buf_free(&c->out);
	framer_free(&c->fr);
	mem_free(c);
}

int net_connect(struct client *c)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	int one = 1;

	c->failed = false;
	c->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fail(c, "socket", errno);
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&addr, addrlen) < 0 && errno != EINPROGRESS) {
		fail(c, "connect", errno);
		return -1;
	}
	c->state = C_CONNECTING;
	c->epollout = true;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		fail(c, "epoll_ctl", errno);
		return -1;
	}
	return 0;
}

static int send_connect(struct client *c)
{
	struct mqtt_connect cn = { 0 };
	struct buf props;
	int rc;

	buf_init(&props);
	cn.version = (uint8_t)O->version;
	cn.clean_start = c->clean;
	cn.keep_alive = c->keepalive;
	cn.client_id.p = c->id;
	cn.client_id.len = (uint16_t)strlen(c->id);
	if ((cn.has_username = O->username != NULL)) {
		cn.username.p = O->username;
		cn.username.len = (uint16_t)strlen(O->username);
	}
	if ((cn.has_password = O->password != NULL)) {
		cn.password.p = (const uint8_t *)O->password;
		cn.password.len = (uint16_t)strlen(O->password);
	}
	if (O->version >= MQTT_V5 && !c->clean)
		props_put_u32(&props, MQTT_PROP_SESSION_EXPIRY, 3600);
	cn.props.raw = props.data;
	cn.props.raw_len = props.len;
	rc = codec_encode_connect(&c->out, &cn);
	buf_free(&props);
	c->state = C_WAIT_CONNACK;
	mark_dirty(c);
	return rc;
}

int net_subscribe(struct client *c, const char *filter, int qos)
{
	struct clientx *x = (struct clientx *)c;

	x->filter = filter;
	x->sub_qos = qos;
	return 0;
}

static int send_subscribe(struct client *c)
{
	struct clientx *x = (struct clientx *)c;
	uint8_t opt = (uint8_t)x->sub_qos;
	const char *f[1] = { x->filter };

	c->state = C_WAIT_SUBACK;
	mark_dirty(c);
	return codec_encode_subscribe(&c->out, (uint8_t)O->version, 1, NULL, 0, f, &opt, 1);
}

void net_disconnect(struct client *c)
{
	struct mqtt_disconnect d = { 0 };

	if (c->fd < 0 || c->state == C_CLOSED)
		return;
	codec_encode_disconnect(&c->out, (uint8_t)O->version, &d);
	c->state = C_CLOSING;
	mark_dirty(c);
}

static void send_ack(struct client *c, uint8_t type, uint16_t id)
{
	struct mqtt_ack a = { .packet_id = id };

	codec_encode_ack(&c->out, (uint8_t)O->version, type, &a);
	c->last_send_ns = now_ns();
	mark_dirty(c);
}

/* --- publishing ---------------------------------------------------------- */

int pub_prepare(struct pub *p, const struct opts *o, uint16_t rmax)
{
	size_t plen = o->payload < PAYLOAD_HDR ? PAYLOAD_HDR : o->payload;
	uint8_t *zero = mem_calloc(1, plen);
	struct buf b;
	int i, w = o->window;

	if (o->qos && w > rmax)
		w = rmax;
	if (w < 1)
		w = 1;
	p->window = w;
	buf_init(&b);
	if (!zero || codec_encode_publish(&b, (uint8_t)o->version, p->topic, strlen(p->topic),
					  (uint8_t)o->qos, false, false, o->qos ? 1 : 0, NULL, 0,
					  zero, plen) < 0) {
		mem_free(zero);
		buf_free(&b);
		return -1;
	}
	mem_free(zero);
	p->tmpl = b.data;
	p->tmpl_len = b.len;
	p->payload_off = b.len - plen;
	p->pid_off = p->payload_off - (o->version >= MQTT_V5 ? 1 : 0) - 2;
	p->delay_off = 0;
	if (!strncmp(p->topic, DELAY_PREFIX, strlen(DELAY_PREFIX)))
		p->delay_off = p->payload_off - (o->version >= MQTT_V5 ? 1 : 0) - (o->qos ? 2 : 0) -
			       strlen(p->topic) + strlen(DELAY_PREFIX);
	p->next_seq = 1;
	if (o->qos) {
		p->free_ids = mem_calloc((size_t)w, sizeof(*p->free_ids));
		p->id_state = mem_calloc((size_t)w + 1, 1);
		if (!p->free_ids || !p->id_state)
			return -1;
		for (i = 0; i < w; i++)
			p->free_ids[i] = (uint16_t)(w - i);
		p->n_free = w;
	}
	return 0;
}

static void put_le32(uint8_t *w, uint32_t v)
{
	memcpy(w, &v, 4); /* x86 and arm64 are little endian; both ends are this program */
}

/* xorshift64*: the spread of delays needs to be cheap, not good. */
static uint64_t rng_next(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 2685821657736338717ull;
}

/* The delay of p's next message in ms: spread at random, or so that message k of the
 * whole run is due at rel_t0 + k / rel_rate (rounded up: never due before that). */
static uint32_t delay_ms(struct run *r, const struct pub *p, int64_t now)
{
	uint64_t k;
	int64_t want;

	if (r->rel_rate <= 0)
		return r->dl_min_ms +
		       (uint32_t)(rng_next(&r->rng) % (r->dl_max_ms - r->dl_min_ms + 1));
	k = (uint64_t)(p->next_seq - 1) * (uint64_t)r->npubs + p->id;
	want = r->rel_t0 + (int64_t)((double)k * 1e9 / r->rel_rate);
	if (want <= now) {
		r->overdue++;
		return 0;
	}
	return (uint32_t)((want - now + 999999) / 1000000);
}

/* Writes ms as DELAY_FIELD, "SSSSS.mmm" (the plugin accepts leading zeros). */
static void put_delay(uint8_t *w, uint32_t ms)
{
	uint32_t s = ms / 1000, f = ms % 1000;
	int i;

	if (s > 99999)
		s = 99999;
	for (i = 4; i >= 0; i--, s /= 10)
		w[i] = (uint8_t)('0' + s % 10);
	w[5] = '.';
	for (i = 8; i >= 6; i--, f /= 10)
		w[i] = (uint8_t)('0' + f % 10);
}

/* A delayed message: the delay goes into the topic, the due time after the header. */
static void stamp_delay(struct pub *p, int64_t now)
{
	uint32_t d = delay_ms(net_run, p, now);
	int64_t due = now + (int64_t)d * 1000000;

	put_delay(p->tmpl + p->delay_off, d);
	memcpy(p->tmpl + p->payload_off + PAYLOAD_HDR, &due, 8);
	if (due > net_run->due_max)
		net_run->due_max = due;
}

/* At most `window` messages per receiver on their way end to end (QoS 0: written off
 * after WRITE_OFF_NS without progress). */
static bool e2e_full(struct pub *p, int64_t now)
{
	uint64_t want = (uint64_t)(p->next_seq - 1) * p->n_recv, got = p->recv + p->written_off;

	if (!p->n_recv || want <= got || want - got < (uint64_t)p->window * p->n_recv)
		return false;
	if (!p->blocked_since) {
		p->blocked_since = now;
	} else if (!O->qos && now - p->blocked_since > WRITE_OFF_NS) {
		p->written_off += want - got;
		p->blocked_since = 0;
	}
	return true;
}

static bool can_send(struct pub *p, int64_t now)
{
	uint64_t sent = p->next_seq - 1;

	if (p->limit && sent >= p->limit)
		return false;
	if (p->c->state != C_READY || p->c->out.len > OUT_HIGH)
		return false;
	if (O->qos && p->n_free == 0)
		return false;
	if (O->rate > 0 && now < p->next_due)
		return false;
	return !e2e_full(p, now);
}

static uint16_t take_id(struct pub *p, int64_t now)
{
	uint16_t id = p->free_ids[--p->n_free];

	p->id_state[id] = 1;
	p->unacked++;
	if (p->sent_ns)
		p->sent_ns[id] = now;
	return id;
}

static void put_id(uint8_t *w, uint16_t id)
{
	w[0] = (uint8_t)(id >> 8);
	w[1] = (uint8_t)id;
}

/* v in exactly width decimal digits (leading zeros). */
static void put_digits(uint8_t *w, int width, uint32_t v)
{
	int i;

	for (i = width - 1; i >= 0; i--, v /= 10)
		w[i] = (uint8_t)('0' + v % 10);
}

/* ordered: message n of publisher id goes to a pseudo-random key (splitmix64 of both). */
static uint32_t ord_key(uint32_t id, uint32_t n, uint32_t keys)
{
	uint64_t z = ((uint64_t)id << 32 | n) + 0x9e3779b97f4a7c15ull;

	z = (z ^ z >> 30) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ z >> 27) * 0x94d049bb133111ebull;
	return (uint32_t)((z ^ z >> 31) % keys);
}

/* ordered: the key, its digits in topic and property, and its per-key sequence. */
static void ord_stamp(struct pub *p)
{
	const struct ord_pub *op = p->ord;
	uint32_t key = ord_key(p->id, p->next_seq - 1, op->keys);
	uint8_t *w = p->tmpl + p->payload_off + PAYLOAD_HDR;

	put_digits(p->tmpl + op->topic_off, op->width, key);
	if (op->prop_off)
		put_digits(p->tmpl + op->prop_off, op->width, key);
	put_le32(w, key);
	put_le32(w + 4, ++op->count[key]);
	put_le32(w + 8, net_run->ord_tag);
}

uint32_t ord_sent_on(const struct pub *p, uint32_t key)
{
	return p->ord->count[key];
}

void ord_free(struct pub *p)
{
	if (p->ord)
		mem_free(p->ord->count);
	mem_free(p->ord);
	p->ord = NULL;
}

/* The 16-byte payload header: publisher id, sequence, send time. */
static void stamp_hdr(const struct pub *p, uint8_t *w, int64_t now)
{
	put_le32(w, p->id);
	put_le32(w + 4, p->next_seq);
	memcpy(w + 8, &now, 8);
}

static void send_one(struct pub *p, int64_t now)
{
	if (O->qos)
		put_id(p->tmpl + p->pid_off, take_id(p, now));
	stamp_hdr(p, p->tmpl + p->payload_off, now);
	if (p->delay_off)
		stamp_delay(p, now);
	if (p->ord)
		ord_stamp(p);
	if (buf_put(&p->c->out, p->tmpl, p->tmpl_len) < 0) {
		fail(p->c, "out of memory", 0);
		return;
	}
	p->next_seq++;
	net_run->sent++;
	p->blocked_since = 0;
	if (O->rate > 0) {
		p->next_due += (int64_t)(1e9 / O->rate);
		if (p->next_due < now - 100000000)
			p->next_due = now; /* fell far behind: do not burst to catch up */
	}
	p->c->last_send_ns = now;
	mark_dirty(p->c);
}

/* --- transactions --------------------------------------------------------- */

/* Where the topic of an encoded PUBLISH starts: after the fixed header and its length. */
static size_t topic_start(const uint8_t *pkt)
{
	size_t i = 1;

	while (pkt[i] & 0x80)
		i++;
	return i + 1 + 2;
}

/* Encodes t (QoS >= 1) with a zero payload of plen bytes; the txn seq is at seq_at in topic. */
static int tmpl_encode(struct tmpl *t, const struct opts *o, const char *topic, size_t seq_at,
		       const struct buf *props, size_t plen)
{
	uint8_t *zero = mem_calloc(1, plen + 1);
	struct buf b;
	int rc = -1;

	buf_init(&b);
	if (zero &&
	    codec_encode_publish(&b, (uint8_t)o->version, topic, strlen(topic), (uint8_t)o->qos,
				 false, false, 1, props->data, props->len, zero, plen) == 0) {
		t->data = b.data;
		t->len = b.len;
		t->payload_off = b.len - plen;
		t->seq_off = topic_start(b.data) + seq_at;
		t->pid_off = topic_start(b.data) + strlen(topic);
		rc = 0;
	} else {
		buf_free(&b);
	}
	mem_free(zero);
	return rc;
}

/* The half and commit templates of p, ids "{prefix}{seq}"; an MQTT 5 commit says txn-count. */
int txn_prepare(struct pub *p, const struct opts *o, const char *prefix)
{
	struct txn_pub *tx = p->tx;
	char topic[320], seq[TXN_SEQ_DIGITS + 1], count[16];
	struct buf props;
	int rc;

	memset(seq, '0', TXN_SEQ_DIGITS);
	seq[TXN_SEQ_DIGITS] = 0;
	buf_init(&props);
	snprintf(topic, sizeof(topic), "$txn/half/%s%s/%s", prefix, seq, p->topic);
	rc = tmpl_encode(&tx->half, o, topic, strlen("$txn/half/") + strlen(prefix), &props,
			 o->payload);
	snprintf(topic, sizeof(topic), "$txn/commit/%s%s", prefix, seq);
	snprintf(count, sizeof(count), "%u", tx->size);
	if (o->version >= MQTT_V5)
		rc |= props_put_pair(&props, "txn-count", 9, count, strlen(count));
	rc |= tmpl_encode(&tx->commit, o, topic, strlen("$txn/commit/") + strlen(prefix), &props,
			  0);
	buf_free(&props);
	p->sent_ns = mem_calloc((size_t)p->window + 1, sizeof(*p->sent_ns));
	return rc || !p->sent_ns ? -1 : 0;
}

void txn_pub_free(struct pub *p)
{
	if (p->tx) {
		mem_free(p->tx->half.data);
		mem_free(p->tx->commit.data);
		mem_free(p->tx->commit_ns);
		mem_free(p->tx);
	}
	mem_free(p->sent_ns);
	p->tx = NULL;
	p->sent_ns = NULL;
}

static void put_seq(uint8_t *w, uint32_t seq)
{
	put_digits(w, TXN_SEQ_DIGITS, seq);
}

/* --- ordered --------------------------------------------------------------- */

/* p's template again, with (MQTT 5) the user property sharding-key, the only one: its
 * value ends right before the payload. The key's digits are the topic's last width. */
int ord_prepare(struct pub *p, const struct opts *o, uint32_t keys, int width)
{
	static const char zeros[] = "0000000000";
	struct ord_pub *op = mem_calloc(1, sizeof(*op));
	struct tmpl t = { 0 };
	struct buf props;
	int rc = 0;

	if (!op || width < 1 || width >= (int)sizeof(zeros) || !keys)
		goto fail;
	buf_init(&props);
	if (o->version >= MQTT_V5)
		rc = props_put_pair(&props, "sharding-key", 12, zeros, (size_t)width);
	if (rc == 0)
		rc = tmpl_encode(&t, o, p->topic, strlen(p->topic) - (size_t)width, &props,
				 o->payload);
	buf_free(&props);
	if (rc < 0)
		goto fail;
	mem_free(p->tmpl);
	p->tmpl = t.data;
	p->tmpl_len = t.len;
	p->payload_off = t.payload_off;
	p->pid_off = t.pid_off;
	op->keys = keys;
	if (!(op->count = mem_calloc(keys, sizeof(*op->count))))
		goto fail;
	op->width = width;
	op->topic_off = t.seq_off;
	op->prop_off = o->version >= MQTT_V5 ? t.payload_off - (size_t)width : 0;
	p->ord = op;
	return 0;
fail:
	if (op)
		mem_free(op->count);
	mem_free(op);
	return -1;
}

static int txn_put(struct pub *p, const struct tmpl *t, int64_t now)
{
	if (buf_put(&p->c->out, t->data, t->len) < 0) {
		fail(p->c, "out of memory", 0);
		return -1;
	}
	p->c->last_send_ns = now;
	mark_dirty(p->c);
	return 0;
}

static void txn_send_msg(struct pub *p, int64_t now)
{
	struct txn_pub *tx = p->tx;
	struct tmpl plain = { p->tmpl, p->tmpl_len, p->pid_off, p->payload_off, 0 };
	struct tmpl *t = tx->mode == TXN_PLAIN ? &plain : &tx->half;

	put_id(t->data + t->pid_off, take_id(p, now));
	if (tx->mode != TXN_PLAIN)
		put_seq(t->data + t->seq_off, tx->seq);
	stamp_hdr(p, t->data + t->payload_off, now);
	if (txn_put(p, t, now) < 0)
		return;
	tx->pos++;
	p->next_seq++;
	net_run->sent++;
	p->blocked_since = 0;
}

/* Remembers when commit number seq was sent: the subscriber times its messages from it. */
static int note_commit(struct txn_pub *tx, int64_t now)
{
	if (tx->seq > tx->commit_cap) {
		uint32_t cap = tx->commit_cap ? tx->commit_cap * 2 : 1024;
		int64_t *n;

		while (cap < tx->seq)
			cap *= 2;
		n = mem_realloc(tx->commit_ns, (size_t)cap * sizeof(*n));
		if (!n)
			return -1;
		memset(n + tx->commit_cap, 0, (size_t)(cap - tx->commit_cap) * sizeof(*n));
		tx->commit_ns = n;
		tx->commit_cap = cap;
	}
	tx->commit_ns[tx->seq - 1] = now;
	return 0;
}

static void txn_send_commit(struct pub *p, int64_t now)
{
	struct txn_pub *tx = p->tx;
	uint16_t id = take_id(p, now);

	put_id(tx->commit.data + tx->commit.pid_off, id);
	put_seq(tx->commit.data + tx->commit.seq_off, tx->seq);
	if (note_commit(tx, now) < 0) {
		fail(p->c, "out of memory", 0);
		return;
	}
	if (txn_put(p, &tx->commit, now) < 0)
		return;
	tx->commit_id = id;
}

static bool txn_can_start(const struct pub *p, int64_t now)
{
	if (!net_run->new_units || p->c->state != C_READY)
		return false;
	if (p->limit && p->next_seq - 1 + p->tx->size > p->limit)
		return false;
	return O->rate <= 0 || now >= p->next_due;
}

/* A unit starts: its number goes into the txn id; -r paces unit starts. */
static void txn_start(struct pub *p, int64_t now)
{
	struct txn_pub *tx = p->tx;

	tx->seq++;
	tx->pos = tx->acked = tx->refused = 0;
	tx->commit_done = false;
	tx->active = true;
	tx->unit_start = now;
	if (O->rate > 0) {
		p->next_due += (int64_t)(1e9 / O->rate);
		if (p->next_due < now - 100000000)
			p->next_due = now;
	}
}

static bool txn_can_send(struct pub *p, int64_t now)
{
	if (p->tx->pos >= p->tx->size || p->c->state != C_READY || p->c->out.len > OUT_HIGH)
		return false;
	return p->n_free > 0 && !e2e_full(p, now);
}

static bool txn_commit_due(const struct pub *p)
{
	const struct txn_pub *tx = p->tx;

	if (tx->mode != TXN_COMMIT || tx->pos < tx->size || tx->commit_id || tx->commit_done)
		return false;
	return p->n_free > 0 && (O->txn_pipeline || tx->acked == tx->size);
}

/* Returns how many PUBLISH packets p sent this turn. */
static int txn_produce(struct pub *p, int64_t now)
{
	int n = 0;

	if (!p->tx->active) {
		if (!txn_can_start(p, now))
			return 0;
		txn_start(p, now);
	}
	for (; n < BURST && txn_can_send(p, now); n++)
		txn_send_msg(p, now);
	if (txn_commit_due(p)) {
		txn_send_commit(p, now);
		n++;
	}
	return n;
}

static void txn_unit_done(struct pub *p, int64_t now)
{
	struct run *r = net_run;
	uint64_t d = (uint64_t)(now - p->tx->unit_start);

	p->tx->active = false;
	r->units++;
	r->unit_msgs += p->tx->size;
	r->unit_sum_ns += d;
	hist_add(&r->unit_lat, d);
	r->last_unit_ns = now;
}

/* What a refusal keeps from the subscriber is written off the end-to-end window (it
 * is still counted as lost): a refused message, or a refused commit's messages. */
static void txn_refused(struct pub *p, bool commit)
{
	struct txn_pub *tx = p->tx;
	uint32_t n = commit ? tx->size - tx->refused : 1;

	if (!commit)
		tx->refused++;
	if (tx->mode != TXN_OPEN)
		p->written_off += n;
}

/* A final ack (PUBACK, PUBCOMP or a refusal) of packet id of a txn publisher. */
static void txn_acked(struct pub *p, uint16_t id, uint8_t reason)
{
	struct txn_pub *tx = p->tx;
	int64_t now = now_ns();
	uint64_t lat = (uint64_t)(now - p->sent_ns[id]);
	bool commit = id == tx->commit_id;

	if (reason >= 0x80)
		txn_refused(p, commit);
	if (commit) {
		tx->commit_id = 0;
		tx->commit_done = true;
		hist_add(&net_run->commit_lat, lat);
	} else {
		tx->acked++;
		hist_add(&net_run->ack, lat);
	}
	if (tx->active && tx->pos == tx->size && tx->acked == tx->size &&
	    (tx->mode != TXN_COMMIT || tx->commit_done))
		txn_unit_done(p, now);
}

/* A committed message is timed from its commit; one that comes before it was sent is
 * a half message the broker showed too early. */
static void txn_latency(struct run *r, const struct pub *p, uint32_t seq, int64_t now)
{
	const struct txn_pub *tx = p->tx;
	uint32_t k;

	if (!tx || seq <= tx->seq_base)
		return;
	k = (seq - tx->seq_base - 1) / tx->size;
	if (k < tx->commit_cap && tx->commit_ns[k] && tx->commit_ns[k] <= now)
		hist_add(&r->lat, (uint64_t)(now - tx->commit_ns[k]));
	else
		r->uncommitted++;
}

/* Returns 1 when some publisher stopped only because of its burst quota. */
static int produce(int64_t now)
{
	struct run *r = net_run;
	int i, n, more = 0;

	if (!r || !r->producing)
		return 0;
	for (i = 0; i < r->npubs; i++) {
		struct pub *p = &r->pubs[i];

		if (p->tx)
			n = txn_produce(p, now);
		else
			for (n = 0; n < BURST && can_send(p, now); n++)
				send_one(p, now);
		if (n >= BURST)
			more = 1;
	}
	return more;
}

static int next_due_ms(int64_t now)
{
	struct run *r = net_run;
	int64_t best = now + 10000000;
	int i;

	if (!r || !r->producing || O->rate <= 0)
		return 10;
	for (i = 0; i < r->npubs; i++) {
		const struct pub *p = &r->pubs[i];

		if (p->tx && p->tx->active)
			continue; /* waits for acks, not for the clock */
		if (p->next_due < best && p->c->state == C_READY)
			best = p->next_due;
	}
	if (best <= now)
		return 0;
	return (int)((best - now + 999999) / 1000000);
}

static void id_release(struct pub *p, uint16_t id)
{
	p->id_state[id] = 0;
	p->free_ids[p->n_free++] = id;
	p->unacked--;
	p->acked++;
}

static void on_pub_ack(struct client *c, uint8_t type, const struct mqtt_ack *a)
{
	struct pub *p;
	uint16_t id = a->packet_id;

	if (!net_run || c->role != ROLE_PUB || c->index >= net_run->npubs)
		return;
	p = &net_run->pubs[c->index];
	if (!O->qos || id == 0 || id > p->window || !p->id_state[id]) {
		if (report())
			fprintf(stderr, "sluice-bench: client %s: unexpected ack type %d id %u\n",
				c->id, type, id);
		net_errors++;
		return;
	}
	if (a->reason && a->reason < 0x80)
		net_run->odd_rc++; /* e.g. 0x10: nobody got a message that someone should */
	if (a->reason >= 0x80)
		net_run->refused++;
	if (a->reason >= 0x80 || type == MQTT_PUBACK || type == MQTT_PUBCOMP) {
		id_release(p, id);
		if (p->tx)
			txn_acked(p, id, a->reason);
	} else if (type == MQTT_PUBREC) {
		p->id_state[id] = 2;
		send_ack(c, MQTT_PUBREL, id);
	}
}

/* --- the slow member ------------------------------------------------------ */

/*
 * backlog-group's slow member stands for a consumer that processes one
 * message at a time and acknowledges each when it is done with it: message
 * k starts once it has arrived and k - 1 is done, and takes the member's
 * time per message, a fixed --slow-us or else SLOW_FACTOR times the fast
 * members' mean time per message so far (from the drain's start to their
 * latest arrival, so it stays put once they have nothing left to do). It
 * therefore runs at 1/SLOW_FACTOR of the rate the broker gives each fast
 * member, whatever that is. Nothing sleeps: the acks wait here in arrival
 * order ([MQTT-4.6.0-2]) and net_poll() sends those that are due, so the
 * other clients of the loop go on. The broker's window for the member
 * (max_inflight_messages, or its Receive Maximum) bounds how many it holds.
 */

/* The slow member's time for its next message. */
static int64_t slow_cost(const struct run *r)
{
	uint64_t n = 0;
	int64_t last = 0;
	int i, fast = 0;

	if (r->slow_cost_ns)
		return r->slow_cost_ns;
	for (i = 0; i < r->nsubs; i++) {
		const struct sub *s = &r->subs[i];

		if (s == r->slow)
			continue;
		fast++;
		n += s->recv;
		if (s->last_ns > last)
			last = s->last_ns;
	}
	if (!n || last <= r->drain_t0)
		return SLOW_START_NS;
	return (int64_t)((double)(last - r->drain_t0) * fast / (double)n * SLOW_FACTOR);
}

static void held_push(struct client *c, uint8_t type, uint16_t id, int64_t now)
{
	struct held *h = c->held;

	if (!h) {
		h = c->held = mem_calloc(1, sizeof(*h));
		if (h)
			h->a = mem_calloc(HELD_CAP, sizeof(*h->a));
		if (!h || !h->a) {
			fail(c, "out of memory", 0);
			return;
		}
	}
	if (h->n == HELD_CAP) {
		fail(c, "more unacknowledged messages than packet ids", 0);
		return;
	}
	h->a[(h->head + h->n++) % HELD_CAP] = (struct held_ack){ now, 0, id, type };
}

/* Sends the slow member's acks that are due; returns ms until the next one, or -1. */
static int held_release(int64_t now)
{
	struct client *c;
	struct held *h;

	if (!net_run || !net_run->slow || !(c = net_run->slow->c) || !(h = c->held))
		return -1;
	while (h->n && c->fd >= 0) {
		struct held_ack *e = &h->a[h->head];

		if (!e->done)
			e->done = (e->arrived > h->prev_done ? e->arrived : h->prev_done) +
				  slow_cost(net_run);
		if (e->done > now)
			return (int)((e->done - now + 999999) / 1000000);
		send_ack(c, e->type, e->id);
		h->prev_done = e->done;
		h->head = (h->head + 1) % HELD_CAP;
		h->n--;
	}
	return -1;
}

uint32_t net_held(const struct client *c)
{
	return c->held ? c->held->n : 0;
}

/* --- receiving ------------------------------------------------------------ */

/*
 * The plugin takes the due time as its wall clock in whole ms at arrival plus the
 * delay, and releases once its clock (whole ms) reaches it: a message may leave up to
 * 1 ms before send time + delay, never more. Earlier than that is an error.
 */
static void count_lateness(struct run *r, const uint8_t *pl, int64_t now)
{
	int64_t due, late;

	memcpy(&due, pl + PAYLOAD_HDR, 8);
	late = now - due;
	if (late < -1000000)
		r->early++;
	if (late < r->late_min)
		r->late_min = late;
	if (!r->first_recv_ns)
		r->first_recv_ns = now;
	hist_add(&r->lat, late > 0 ? (uint64_t)late : 0);
}

/* ordered: the key and its sequence from a payload of this run; -1: not one. */
static int ord_fields(const struct run *r, const uint8_t *pl, size_t len, uint32_t *key,
		      uint32_t *kseq)
{
	uint32_t tag;

	if (len < PAYLOAD_ORDERED)
		return -1;
	memcpy(key, pl + PAYLOAD_HDR, 4);
	memcpy(kseq, pl + PAYLOAD_HDR + 4, 4);
	memcpy(&tag, pl + PAYLOAD_HDR + 8, 4);
	return tag == r->ord_tag && *key < r->ko.keys ? 0 : -1;
}

static void count_publish(struct sub *s, const uint8_t *pl, size_t len)
{
	struct run *r = net_run;
	uint32_t pid, seq, k, key = 0, kseq = 0;
	int64_t ts, now;
	struct pub *p;
	int fresh;

	if (len < PAYLOAD_HDR) {
		r->foreign++;
		return;
	}
	memcpy(&pid, pl, 4);
	memcpy(&seq, pl + 4, 4);
	memcpy(&ts, pl + 8, 8);
	if (pid >= (uint32_t)r->npubs || pid < s->sink->pub_first ||
	    pid - s->sink->pub_first >= s->sink->pub_n ||
	    (r->ko.keys && ord_fields(r, pl, len, &key, &kseq) < 0)) {
		r->foreign++;
		return;
	}
	now = now_ns();
	p = &r->pubs[pid];
	if (r->delayed) {
		if (len < PAYLOAD_DELAYED) {
			r->foreign++;
			return;
		}
		count_lateness(r, pl, now);
	} else if (r->txn_e2e) {
		txn_latency(r, p, seq, now);
	} else if (ts >= r->win_start && ts < r->win_end) {
		hist_add(&r->lat, (uint64_t)(now - ts));
	}
	p->recv++;
	p->blocked_since = 0;
	k = pid - s->sink->pub_first;
	fresh = seen_mark(&s->sink->seen[k], seq);
	if (r->delayed) {
		/* Released in due order, not publishing order: no order check. */
	} else if (r->ko.keys) {
		/* The group's order per (publisher, key), not each member's per publisher:
		 * with key order a publisher's messages on different keys may pass each other. */
		keyorder_arrive(&r->ko, pid, key, kseq, fresh == 1);
	} else if (seq < s->last[k]) {
		if (fresh == 1)
			s->order_err++;
	} else {
		s->last[k] = seq;
	}
	if (!s->recv)
		s->first_ns = now;
	s->last_ns = now;
	s->recv++;
	r->recv++;
	r->last_recv_ns = now;
}

static void on_publish(struct client *c, const struct mqtt_publish *pp)
{
	bool slow = false;

	if (net_run && c->role == ROLE_SUB && c->index < net_run->nsubs) {
		count_publish(&net_run->subs[c->index], pp->payload, pp->payload_len);
		slow = net_run->slow == &net_run->subs[c->index];
	} else if (net_run) {
		net_run->foreign++;
	}
	if (slow && pp->qos)
		held_push(c, pp->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, pp->packet_id, now_ns());
	else if (pp->qos == 1)
		send_ack(c, MQTT_PUBACK, pp->packet_id);
	else if (pp->qos == 2)
		send_ack(c, MQTT_PUBREC, pp->packet_id);
}

static int on_connack(struct client *c, const struct mqtt_connack *ca)
{
	char msg[96];

	if (c->state != C_WAIT_CONNACK) {
		fail(c, "CONNACK out of place", 0);
		return -1;
	}
	if (ca->reason) {
		snprintf(msg, sizeof(msg), "broker refused the connection (CONNACK code 0x%02x)",
			 ca->reason);
		fail(c, msg, 0);
		return -1;
	}
	if (ca->props.present & PROP_BIT(MQTT_PROP_RECEIVE_MAX))
		broker_rmax = ca->props.receive_max;
	if (ca->props.present & PROP_BIT(MQTT_PROP_SERVER_KEEP_ALIVE))
		c->keepalive = ca->props.server_keep_alive;
	if (((struct clientx *)c)->filter)
		return send_subscribe(c);
	c->state = C_READY;
	return 0;
}

static int on_suback(struct client *c, const struct mqtt_suback *sa)
{
	char msg[96];

	if (c->state != C_WAIT_SUBACK || sa->count != 1) {
		fail(c, "SUBACK out of place", 0);
		return -1;
	}
	if (sa->reasons[0] >= 0x80) {
		snprintf(msg, sizeof(msg), "broker refused the subscription to %s (0x%02x)",
			 ((struct clientx *)c)->filter, sa->reasons[0]);
		fail(c, msg, 0);
		return -1;
	}
	c->state = C_READY;
	return 0;
}

static int on_packet(void *arg, const uint8_t *pkt, size_t len)
{
	struct client *c = arg;
	struct mqtt_packet p;
	char msg[96];
	int rc = codec_decode(pkt, len, (uint8_t)O->version, &p);

	if (rc < 0) {
		snprintf(msg, sizeof(msg), "malformed packet from broker (type %d, error %d)",
			 pkt[0] >> 4, rc);
		fail(c, msg, 0);
		return -1;
	}
	switch (p.type) {
	case MQTT_CONNACK:
		return on_connack(c, &p.u.connack);
	case MQTT_SUBACK:
		return on_suback(c, &p.u.suback);
	case MQTT_PUBLISH:
		on_publish(c, &p.u.publish);
		return 0;
	case MQTT_PUBREL:
		send_ack(c, MQTT_PUBCOMP, p.u.ack.packet_id);
		return 0;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBCOMP:
		on_pub_ack(c, p.type, &p.u.ack);
		return 0;
	case MQTT_PINGRESP:
		return 0;
	case MQTT_DISCONNECT:
		snprintf(msg, sizeof(msg), "broker sent DISCONNECT (reason 0x%02x)",
			 p.u.disconnect.reason);
		fail(c, msg, 0);
		return -1;
	default:
		snprintf(msg, sizeof(msg), "unexpected packet type %d from broker", p.type);
		fail(c, msg, 0);
		return -1;
	}
}

static ssize_t sock_read(struct client *c)
{
	return c->tls ? btls_read(c->tls, rbuf, sizeof(rbuf)) : read(c->fd, rbuf, sizeof(rbuf));
}

static void on_readable(struct client *c)
{
	int i;

	/* TLS: OpenSSL may hold decrypted bytes the socket no longer signals: drain them */
	for (i = 0; (i < 4 || (c->tls && btls_pending(c->tls))) && c->fd >= 0; i++) {
		ssize_t n = sock_read(c);

		if (n > 0) {
			if (framer_feed(&c->fr, rbuf, (size_t)n, on_packet, c) < 0 && c->fd >= 0)
				fail(c, "framing error in the broker's byte stream", 0);
			if ((size_t)n < sizeof(rbuf) && !(c->tls && btls_pending(c->tls)))
				return;
			continue;
		}
		if (n == 0) {
			if (c->state == C_CLOSING)
				net_close(c);
			else
				fail(c,
				     c->state == C_WAIT_CONNACK
					     ? "broker closed the connection before CONNACK"
					     : "broker closed the connection",
				     0);
			return;
		}
		if (errno == EAGAIN || errno == EINTR)
			return;
		fail(c, "read", errno);
		return;
	}
}

static void flush(struct client *c)
{
	while (c->out.len && c->fd >= 0) {
		ssize_t n = c->tls ? btls_write(c->tls, c->out.data, c->out.len)
				   : write(c->fd, c->out.data, c->out.len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				set_out(c, true);
				return;
			}
			fail(c, "write", errno);
			return;
		}
		buf_consume(&c->out, (size_t)n);
	}
	if (c->fd >= 0) {
		set_out(c, false);
		if (c->state == C_CLOSING)
			shutdown(c->fd, SHUT_WR);
	}
}

static void flush_dirty(void)
{
	while (dirty) {
		struct client *c = dirty;

		dirty = c->next_dirty;
		c->dirty = false;
		flush(c);
	}
}

/* TCP (and TLS) is up: CONNECT goes. */
static void connected(struct client *c)
{
	send_connect(c);
	c->last_send_ns = now_ns();
	flush(c);
}

/* One step of the TLS handshake, on any event of the socket. */
static void handshake(struct client *c)
{
	if (btls_handshake(c->tls) == 1) {
		connected(c);
		return;
	}
	if (errno != EAGAIN)
		fail(c, "TLS handshake failed", 0);
}

static void on_writable(struct client *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (c->state != C_CONNECTING) {
		flush(c);
		return;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
		fail(c, "connect", err ? err : errno);
		return;
	}
	if (O->tls) {
		if (!(c->tls = btls_new(c->fd))) {
			fail(c, "TLS", 0);
			return;
		}
		c->state = C_HANDSHAKE;
		handshake(c);
		return;
	}
	connected(c);
}

/* Keep alive: a PINGREQ when a client has been silent for half its keep alive. */
static void keepalive_scan(int64_t now)
{
	int i;

	for (i = 0; i < n_all; i++) {
		struct client *c = all[i];

		if (c->state != C_READY || !c->keepalive)
			continue;
		if (now - c->last_send_ns > (int64_t)c->keepalive * 500000000LL) {
			codec_encode_empty(&c->out, MQTT_PINGREQ);
			c->last_send_ns = now;
			mark_dirty(c);
		}
	}
}

int net_poll(int timeout_ms)
{
	struct epoll_event evs[256];
	int64_t now = now_ns();
	int i, n, held_ms = held_release(now);

	if (produce(now))
		timeout_ms = 0;
	else if (net_run && net_run->producing && O->rate > 0 && next_due_ms(now) < timeout_ms)
		timeout_ms = next_due_ms(now);
	if (held_ms >= 0 && held_ms < timeout_ms)
		timeout_ms = held_ms;
	flush_dirty();
	n = epoll_wait(ep, evs, 256, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -1;
	for (i = 0; i < n; i++) {
		struct client *c = evs[i].data.ptr;

		if (c->fd < 0)
			continue;
		if (c->state == C_HANDSHAKE) {
			handshake(c);
			continue;
		}
		if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			on_writable(c);
		if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
		    c->state != C_CONNECTING)
			on_readable(c);
	}
	if (now - last_ka_scan > 1000000000LL) {
		last_ka_scan = now;
		keepalive_scan(now);
	}
	return n;
}

int net_loop(int (*done)(void *), void *arg, int64_t deadline)
{
	while (!done(arg)) {
		if (now_ns() >= deadline)
			return -1;
		if (net_poll(10) < 0)
			return -1;
	}
	flush_dirty();
	return 0;
}

struct many {
	struct client **cs;
	int n, next, pending, ready, failed, concurrency;
};

static int many_done(void *arg)
{
	struct many *m = arg;
	int i;

	m->pending = m->ready = m->failed = 0;
	for (i = 0; i < m->next; i++) {
		if (m->cs[i]->failed)
			m->failed++;
		else if (m->cs[i]->state == C_READY)
			m->ready++;
		else
			m->pending++;
	}
	while (m->next < m->n && m->pending < m->concurrency) {
		if (net_connect(m->cs[m->next++]) < 0)
			m->failed++;
		else
			m->pending++;
	}
	return m->ready + m->failed == m->n;
}

/* Connects (and subscribes) n clients, at most `concurrency` in progress at once. */
int net_connect_many(struct client **cs, int n, int concurrency, int64_t deadline)
{
	struct many m = { .cs = cs, .n = n, .concurrency = concurrency };
	int rc;

	rc = net_loop(many_done, &m, deadline);
	if (rc < 0) {
		fprintf(stderr, "sluice-bench: timed out connecting: %d of %d ready, %d failed\n",
			m.ready, n, m.failed);
		net_errors++;
		return -1;
	}
	if (m.failed) {
		fprintf(stderr, "sluice-bench: %d of %d connections failed\n", m.failed, n);
		return -1;
	}
	return 0;
}
