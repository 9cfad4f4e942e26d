/*
 * conn.c - a client connection, independent of its transport.
 *
 * Bytes from the listener go through the framer to proto_handle(), one
 * packet at a time. Replies and deliveries are encoded straight into the
 * output buffer; the listener is asked for a writable callback once per
 * batch (write_requested), so a fan-out of many messages to one client
 * costs one wake-up, not one per message.
 *
 * The output buffer keeps `headroom` spare bytes before the first unsent
 * byte. Bytes before out_off were already written, so the transport may
 * scribble its frame header over them; the buffer rewinds to the start
 * whenever it drains.
 *
 * One timer per connection serves two purposes in turn: before CONNECT it
 * is the connect timeout; afterwards it checks keep alive lazily - it fires
 * at last_rx + 1.5 x keep alive and re-arms itself if bytes came in since,
 * so reading a packet never touches the timer heap [MQTT-3.1.2-24].
 */
#include "conn.h"

#include <stdio.h>
#include <string.h>

#include "base.h"
#include "clock.h"
#include "codec.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "props.h"
#include "scram.h"

static struct conn *all_conns;
static size_t n_conns;
static const struct conn_handler *handler;

void conn_set_handler(const struct conn_handler *h)
{
	handler = h;
}

/* Compact the output buffer when this much already-sent data sits in front. */
#define OUT_COMPACT_BYTES (64 * 1024)
/*
 * Back-pressure: a client that does not read its socket stops being read
 * from once this much output waits for it, and is read again when half of it
 * has gone. Its acknowledgements then cannot pile up without bound.
 */
#define OUT_PAUSE_BYTES (4u * 1024 * 1024)

/* A reason string is sent only when the packet stays within the client's limit. */
static bool reason_fits(const struct conn *c, const char *why)
{
	return why && c->request_problem_info &&
	       (!c->client_max_packet || strlen(why) + 32 <= c->client_max_packet);
}

static void on_timer(struct timer *t, void *arg);

/*
 * Output buffers start at OUT_BLOCK bytes. A connection that drained its
 * buffer gives it back right away, so an idle one holds none; the freed
 * blocks wait in a cache for the next write, and a busy broker does not
 * call malloc per write.
 */
#define OUT_BLOCK 512
static struct mem_cache out_cache = MEM_CACHE(OUT_BLOCK, 256);

struct buf *conn_out(struct conn *c)
{
	if (!c->out.cap) {
		if (c->headroom + 256 <= OUT_BLOCK) {
			c->out.data = mem_cache_alloc(&out_cache);
			if (!c->out.data)
				return NULL;
			c->out.cap = OUT_BLOCK;
		} else if (buf_reserve(&c->out, c->headroom + 256)) {
			return NULL;
		}
		c->out.len = c->headroom;
		c->out_off = c->headroom;
	}
	return &c->out;
}

/* Gives the output buffer back (its contents are sent or dropped). */
static void out_give_back(struct conn *c)
{
	if (c->out.cap == OUT_BLOCK) {
		mem_cache_free(&out_cache, c->out.data);
		buf_init(&c->out);
	} else {
		buf_free(&c->out);
	}
	c->out_off = 0;
}

/* An idle connection with nothing waiting gives its output buffer back. */
static void release_out(struct conn *c)
{
	if (c->out.cap && c->out.len == c->out_off)
		out_give_back(c);
}

struct conn *conn_new(const struct conn_ops *ops, void *tctx, bool websocket, const char *peer,
		      size_t headroom)
{
	size_t peer_len;
	struct conn *c;

	if (!peer)
		peer = "?";
	peer_len = strlen(peer);
	c = mem_calloc(1, sizeof(*c) + peer_len + 1);
	if (!c)
		return NULL;
	buf_init(&c->out); /* allocated on first use: conn_out() */
	c->headroom = (uint16_t)headroom; /* LWS_PRE and a WebSocket header */
	c->ops = ops;
	c->tctx = tctx;
	c->websocket = websocket;
	c->client_id = "";
	memcpy(c->peer, peer, peer_len + 1);
	framer_init(&c->framer, base.cfg->max_packet_size);
	c->last_rx_ms = clock_now_ms();
	timer_init(&c->timer, on_timer, c);
	timer_arm(&c->timer, c->last_rx_ms + (uint64_t)base.cfg->connect_timeout * 1000);
	c->next = all_conns;
	if (all_conns)
		all_conns->prev = c;
	all_conns = c;
	n_conns++;
	base.stats.conns_total++;
	return c;
}

static void on_timer(struct timer *t, void *arg)
{
	struct conn *c = arg;
	uint64_t now = clock_now_ms(), limit;

	if (c->state == CONN_NEW || c->state == CONN_AUTH) {
		conn_close(c, -1,
			   c->state == CONN_NEW ? "no CONNECT within connect_timeout"
						: "authentication unfinished at connect_timeout");
		return;
	}
	if (c->state != CONN_ACTIVE || !c->keep_alive)
		return;
	limit = (uint64_t)c->keep_alive * 1500;
	release_out(c);
	if (now - c->last_rx_ms >= limit) {
		conn_close(c, MQTT_RC_KEEP_ALIVE_TIMEOUT, "keep alive timeout");
		return;
	}
	timer_arm(&c->timer, c->last_rx_ms + limit);
}

static int on_packet(void *arg, const uint8_t *pkt, size_t len)
{
	struct conn *c = arg;

	if (c->state == CONN_CLOSING)
		return 1;
	/* Keep alive counts Control Packets, not bytes [MQTT-3.1.2-24]. */
	c->last_rx_ms = c->chunk_ms;
	handler->packet(c, pkt, len);
	return c->state == CONN_CLOSING ? 1 : 0;
}

int conn_on_data(struct conn *c, const uint8_t *p, size_t n)
{
	int rc;

	if (c->state == CONN_CLOSING)
		return 0;
	c->chunk_ms = clock_now_ms();
	c->bytes_in += n;
	base.stats.bytes_received += n;
	rc = framer_feed(&c->framer, p, n, on_packet, c);
	if (rc == FRAMER_ETOOLARGE)
		conn_close(c, MQTT_RC_PACKET_TOO_LARGE, "packet larger than max_packet_size");
	else if (rc == FRAMER_EMALFORMED)
		conn_close(c, MQTT_RC_MALFORMED_PACKET, "malformed remaining length");
	else if (rc == FRAMER_ENOMEM)
		conn_close(c, MQTT_RC_SERVER_BUSY, "out of memory reading a packet");
	return 0;
}

size_t conn_backlog(const struct conn *c)
{
	return c->out.len - c->out_off;
}

size_t conn_pending(struct conn *c, uint8_t **p)
{
	c->write_requested = false;
	if (!c->out.data) { /* nothing was ever written, or the buffer was given back */
		*p = NULL;
		return 0;
	}
	*p = c->out.data + c->out_off;
	return c->out.len - c->out_off;
}

void conn_sent(struct conn *c, size_t n)
{
	size_t left;

	c->out_off += n;
	c->bytes_out += n;
	base.stats.bytes_sent += n;
	left = c->out.len - c->out_off;
	if (c->rx_paused && left < OUT_PAUSE_BYTES / 2) {
		c->rx_paused = false;
		c->ops->pause_rx(c->tctx, false);
	}
	if (!left && c->out.cap <= 4096) {
		/* Drained and small: given back, so an idle connection holds no buffer. */
		out_give_back(c);
	} else if (!left) {
		c->out.len = c->headroom;
		c->out_off = c->headroom;
	} else if (c->out_off - c->headroom >= OUT_COMPACT_BYTES && left < c->out_off) {
		memmove(c->out.data + c->headroom, c->out.data + c->out_off, left);
		c->out.len = c->headroom + left;
		c->out_off = c->headroom;
	}
}

bool conn_done(const struct conn *c)
{
	return c->state == CONN_CLOSING && c->out.len == c->out_off;
}

void conn_flush(struct conn *c)
{
	if (!c->rx_paused && conn_backlog(c) > OUT_PAUSE_BYTES) {
		c->rx_paused = true;
		c->ops->pause_rx(c->tctx, true);
	}
	if (c->write_requested || c->out.len == c->out_off)
		return;
	c->write_requested = true;
	c->ops->want_write(c->tctx);
}

static void send_disconnect(struct conn *c, uint8_t reason, const char *why)
{
	struct mqtt_disconnect d;
	struct buf *props = &base.scratch;

	memset(&d, 0, sizeof(d));
	d.reason = reason;
	buf_reset(props);
	if (reason_fits(c, why))
		props_put_str(props, MQTT_PROP_REASON_STRING, why, strlen(why));
	d.props.raw = props->data;
	d.props.raw_len = props->len;
	if (conn_out(c))
		codec_encode_disconnect(&c->out, c->version, &d);
}

void conn_close(struct conn *c, int reason, const char *why)
{
	if (c->state == CONN_CLOSING)
		return;
	if (reason >= 0x80)
		log_notice("client '%s' (%s): %s; disconnecting (reason 0x%02x)", c->client_id,
			   c->peer, why, (unsigned)reason);
	else
		log_info("client '%s' (%s): %s", c->client_id, c->peer, why);
	if (c->state == CONN_ACTIVE && c->version == MQTT_V5 && reason >= 0x80)
		send_disconnect(c, (uint8_t)reason, why);
	c->state = CONN_CLOSING;
	timer_disarm(&c->timer);
	c->ops->close(c->tctx);
}

int conn_peer_cn(struct conn *c, char *buf, size_t len)
{
	return c->ops->peer_cn && !c->gone ? c->ops->peer_cn(c->tctx, buf, len) : -1;
}

static void free_aliases(struct conn *c)
{
	uint32_t i;

	if (c->alias_in) {
		for (i = 0; i <= c->alias_in_max; i++)
			mem_free(c->alias_in[i]);
		mem_free(c->alias_in);
	}
	if (c->alias_out) {
		for (i = 0; i < c->alias_out_cap; i++)
			mem_free(c->alias_out[i].topic);
		mem_free(c->alias_out);
	}
}

void conn_part_session(struct conn *c)
{
	char *id;

	c->session = NULL;
	if (c->own_client_id || !c->client_id[0])
		return;
	id = mem_strdup(c->client_id);
	c->client_id = id ? id : "";
	c->own_client_id = id != NULL;
}

static void free_conn(struct conn *c)
{
	if (c->own_client_id)
		mem_free((char *)c->client_id);
	free_aliases(c);
	scram_free(c->scram);
	mem_free(c->auth_connect);
	framer_free(&c->framer);
	out_give_back(c);
	mem_free(c);
}

void conn_linger(struct conn *c)
{
	if (c->lingering)
		return;
	c->lingering = true;
	timer_disarm(&c->timer);
	/* The MQTT connection is over: the session goes offline now, not when the peer closes. */
	if (handler && handler->closed)
		handler->closed(c);
}

void conn_on_closed(struct conn *c)
{
	timer_disarm(&c->timer);
	if (handler && handler->closed)
		handler->closed(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		all_conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	n_conns--;
	c->gone = true;
	c->state = CONN_CLOSING;
	if (!c->refs)
		free_conn(c);
}

struct conn *conn_ref(struct conn *c)
{
	c->refs++;
	return c;
}

void conn_unref(struct conn *c)
{
	if (--c->refs == 0 && c->gone)
		free_conn(c);
}

bool conn_usable(const struct conn *c)
{
	return !c->gone && c->state == CONN_ACTIVE;
}

size_t conn_count(void)
{
	return n_conns;
}

void conn_close_all(int reason)
{
	struct conn *c;

	for (c = all_conns; c; c = c->next)
		conn_close(c, reason, "broker shutting down");
}

/* --- topic aliases ------------------------------------------------------- */

int conn_alias_set(struct conn *c, uint16_t alias, const char *topic, size_t len)
{
	char *copy;

	if (!alias || alias > c->alias_in_max)
		return -1;
	if (!c->alias_in) {
		c->alias_in = mem_calloc((size_t)c->alias_in_max + 1, sizeof(char *));
		if (!c->alias_in)
			return -1;
	}
	copy = mem_strndup(topic, len);
	if (!copy)
		return -1;
	mem_free(c->alias_in[alias]);
	c->alias_in[alias] = copy;
	return 0;
}

const char *conn_alias_get(struct conn *c, uint16_t alias)
{
	if (!c->alias_in || !alias || alias > c->alias_in_max)
		return NULL;
	return c->alias_in[alias];
}

static uint32_t hash_topic(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

/*
 * Outgoing aliases: the broker numbers topics 1, 2, ... up to the client's
 * Topic Alias Maximum in the order it first sends them, and keeps them for
 * the life of the connection [MQTT-3.3.2-9]. Returns the alias and sets *fresh
 * when it is new (then the topic must be sent with it), or 0 for none.
 */
static uint16_t alias_lookup(struct conn *c, const char *topic, size_t len, bool *fresh)
{
	uint32_t h = hash_topic(topic, len), i, mask;
	uint16_t want = c->client_alias_max > 1024 ? 1024 : c->client_alias_max;

	*fresh = false;
	if (!c->alias_out) {
		uint16_t cap = 16;

		while (cap < want * 2)
			cap *= 2;
		c->alias_out = mem_calloc(cap, sizeof(*c->alias_out));
		if (!c->alias_out)
			return 0;
		c->alias_out_cap = cap;
	}
	mask = c->alias_out_cap - 1u;
	for (i = h & mask;; i = (i + 1) & mask) {
		struct alias_slot *sl = &c->alias_out[i];

		if (!sl->topic)
			break;
		if (sl->hash == h && strlen(sl->topic) == len && !memcmp(sl->topic, topic, len))
			return sl->alias;
	}
	if (c->alias_out_used >= want)
		return 0;
	c->alias_out[i].topic = mem_strndup(topic, len);
	if (!c->alias_out[i].topic)
		return 0;
	c->alias_out[i].hash = h;
	c->alias_out[i].alias = ++c->alias_out_used;
	*fresh = true;
	return c->alias_out[i].alias;
}

/* Undoes the alias alias_lookup just created, which the client never saw. */
static void alias_forget_last(struct conn *c)
{
	uint32_t i;

	for (i = 0; i < c->alias_out_cap; i++) {
		if (c->alias_out[i].topic && c->alias_out[i].alias == c->alias_out_used) {
			/* The newest entry ends every probe chain it is on: removing it is safe. */
			mem_free(c->alias_out[i].topic);
			c->alias_out[i].topic = NULL;
			c->alias_out_used--;
			return;
		}
	}
}

/* --- output -------------------------------------------------------------- */

/* Seconds left before expiry, rounded up; 0 when expired. */
static uint32_t expiry_left(const struct msg *m, uint64_t now_wall)
{
	if (now_wall >= m->expiry_wall_ms)
		return 0;
	return (uint32_t)((m->expiry_wall_ms - now_wall + 999) / 1000);
}

static int build_publish_props(struct buf *b, const struct conn_publish *e, uint32_t expiry)
{
	uint16_t i;
	int rc = buf_put(b, e->msg->props, e->msg->props_len);

	if (e->msg->expiry_wall_ms)
		rc |= props_put_u32(b, MQTT_PROP_MESSAGE_EXPIRY, expiry);
	if (e->n_subids)
		rc |= props_put_varint(b, MQTT_PROP_SUBSCRIPTION_ID, e->subid);
	for (i = 1; i < e->n_subids; i++)
		rc |= props_put_varint(b, MQTT_PROP_SUBSCRIPTION_ID, e->more_subids[i - 1]);
	return rc ? -1 : 0;
}

/*
 * Fan-out: a message that goes to many subscribers in the same form (no
 * per-subscriber property, not a resend) is encoded once and copied, each
 * copy with its own packet id written in. The first delivery in a form
 * encodes straight into its connection's buffer and is only remembered; a
 * second delivery of the same message in that form builds the shared copy,
 * so that a message with one subscriber costs nothing extra. Message ids are never
 * reused, and a message never changes, so an id names its bytes.
 */
#define SHARED_SLOTS 4
#define SHARED_MAX_BYTES 16384 /* so the slots hold at most about 64 kB */

struct shared_publish {
	uint64_t msg_id; /* 0 = empty */
	uint8_t form;
	size_t pid_at; /* offset of the packet id (QoS 1/2) */
	struct buf bytes;
};

static struct shared_publish shared[SHARED_SLOTS];
static unsigned shared_next;
static uint64_t last_msg_id; /* the message last sent in a common form */
static uint16_t last_forms; /* the forms it was sent in, one bit each */

static uint8_t publish_form(const struct conn *c, const struct conn_publish *e)
{
	return (uint8_t)((c->version == MQTT_V5 ? 8 : 0) | e->qos << 1 | (e->retain ? 1 : 0));
}

static bool form_is_common(const struct conn *c, const struct conn_publish *e, bool dup)
{
	const struct msg *m = e->msg;

	/* Large messages are copied either way: sharing them would only keep big slots. */
	return !dup && !e->n_subids && !m->expiry_wall_ms &&
	       !(c->version == MQTT_V5 && c->client_alias_max) &&
	       (size_t)m->topic_len + m->props_len + m->payload_len <= SHARED_MAX_BYTES;
}

/* The shared bytes of e's message in c's form; NULL: encode it directly. */
static const struct shared_publish *shared_get(const struct conn *c, const struct conn_publish *e)
{
	const struct msg *m = e->msg;
	uint8_t form = publish_form(c, e);
	struct shared_publish *sp;
	unsigned i;

	for (i = 0; i < SHARED_SLOTS; i++)
		if (shared[i].msg_id == m->id && shared[i].form == form)
			return &shared[i];
	if (last_msg_id != m->id) {
		last_msg_id = m->id;
		last_forms = 0;
	}
	if (!(last_forms & 1u << form)) {
		last_forms |= (uint16_t)(1u << form);
		return NULL;
	}
	sp = &shared[shared_next++ % SHARED_SLOTS];
	sp->msg_id = 0;
	buf_reset(&sp->bytes);
	if (codec_encode_publish(&sp->bytes, c->version, m->topic, m->topic_len, e->qos, e->retain,
				 false, 0, m->props, m->props_len, m->payload, m->payload_len))
		return NULL;
	/* the packet id comes right before the properties (MQTT 5) and the payload */
	sp->pid_at = sp->bytes.len - m->payload_len - 2;
	if (c->version == MQTT_V5)
		sp->pid_at -= (size_t)buf_varint_size(m->props_len) + m->props_len;
	sp->msg_id = m->id;
	sp->form = form;
	return sp;
}

void conn_drain_caches(void)
{
	unsigned i;

	mem_cache_drain(&out_cache);
	for (i = 0; i < SHARED_SLOTS; i++) {
		buf_free(&shared[i].bytes);
		shared[i].msg_id = 0;
	}
}

static bool too_big(const struct conn *c, const struct msg *m, size_t size)
{
	if (!c->client_max_packet || size <= c->client_max_packet)
		return false;
	log_info("client '%s': message on '%s' (%zu bytes) exceeds its maximum packet size %u; "
		 "not sent",
		 c->client_id, m->topic, size, c->client_max_packet);
	return true;
}

static int send_shared(struct conn *c, const struct conn_publish *e,
		       const struct shared_publish *sp)
{
	size_t at;

	if (too_big(c, e->msg, sp->bytes.len))
		return 1;
	if (!conn_out(c))
		return -1;
	at = c->out.len;
	if (buf_put(&c->out, sp->bytes.data, sp->bytes.len))
		return -1;
	if (e->qos) {
		c->out.data[at + sp->pid_at] = (uint8_t)(e->packet_id >> 8);
		c->out.data[at + sp->pid_at + 1] = (uint8_t)e->packet_id;
	}
	base.stats.msgs_sent[e->qos]++;
	base.stats.payload_sent[e->qos] += e->msg->payload_len;
	conn_flush(c);
	return 0;
}

int conn_send_publish(struct conn *c, const struct conn_publish *e, bool dup)
{
	const struct msg *m = e->msg;
	const struct shared_publish *sp;
	struct buf *props = &base.scratch;
	uint32_t expiry = 0;
	size_t topic_len = m->topic_len, size;
	uint16_t alias = 0;
	bool fresh = false;

	if (form_is_common(c, e, dup) && (sp = shared_get(c, e)))
		return send_shared(c, e, sp);
	if (m->expiry_wall_ms) {
		expiry = expiry_left(m, clock_wall_ms());
		/* Expiry stops once delivery began: a resend goes out regardless
		 * [MQTT-4.4.0-1], with the smallest interval left. */
		if (!expiry && !dup) {
			base.stats.expired++;
			return 1;
		}
		if (!expiry)
			expiry = 1;
	}
	buf_reset(props);
	if (c->version == MQTT_V5 && build_publish_props(props, e, expiry))
		return -1;
	/* Checked with the topic sent in full and room for an alias, so a fresh
	 * alias is never registered for a message that then is not sent. */
	size = codec_publish_size(c->version, topic_len, e->qos,
				  props->len + (c->client_alias_max ? 3 : 0), m->payload_len);
	if (too_big(c, m, size))
		return 1;
	if (c->version == MQTT_V5 && c->client_alias_max) {
		alias = alias_lookup(c, m->topic, m->topic_len, &fresh);
		if (alias && props_put_u16(props, MQTT_PROP_TOPIC_ALIAS, alias))
			return -1;
		if (alias && !fresh)
			topic_len = 0;
	}
	if (!conn_out(c) || codec_encode_publish(&c->out, c->version, m->topic, topic_len, e->qos,
						 e->retain, dup, e->packet_id, props->data,
						 props->len, m->payload, m->payload_len)) {
		if (fresh)
			alias_forget_last(c);
		return -1;
	}
	base.stats.msgs_sent[e->qos]++;
	base.stats.payload_sent[e->qos] += m->payload_len;
	conn_flush(c);
	return 0;
}

int conn_send_ack(struct conn *c, uint8_t type, uint16_t packet_id, uint8_t reason,
		  const char *reason_string)
{
	return conn_send_ack_props(c, type, packet_id, reason, reason_string, NULL);
}

int conn_send_ack_props(struct conn *c, uint8_t type, uint16_t packet_id, uint8_t reason,
			const char *reason_string, const struct buf *extra)
{
	struct buf *props = &base.scratch;
	struct mqtt_ack a;

	memset(&a, 0, sizeof(a));
	a.packet_id = packet_id;
	a.reason = reason;
	buf_reset(props);
	if (c->version == MQTT_V5 && reason_fits(c, reason_string))
		props_put_str(props, MQTT_PROP_REASON_STRING, reason_string, strlen(reason_string));
	if (c->version == MQTT_V5 && extra && extra->len && buf_put(props, extra->data, extra->len))
		return -1;
	a.props.raw = props->data;
	a.props.raw_len = props->len;
	if (!conn_out(c) || codec_encode_ack(&c->out, c->version, type, &a))
		return -1;
	conn_flush(c);
	return 0;
}
