/*
 * bridge.c - a bridge is two MQTT clients joined back to back.
 *
 * Locally it is an MQTT 5 client of this broker over an in-process struct
 * conn (local_ops below: no socket; what the broker writes to it is read
 * back from conn_pending() and parsed here). It connects with clean start
 * false and the largest session expiry, so its session is persistent: with
 * persistence on, what waits for the remote is stored like any offline
 * session's queue and survives a restart. It subscribes to the out and both
 * patterns (with the local prefix) with No Local, so what it publishes
 * locally (received from the remote) is never sent back out, and with
 * Retain As Published.
 *
 * Remotely it is an MQTT 3.1.1 or 5.0 client over TCP (bridge_net.c).
 *
 * The local side is connected only while the remote side is up: a local
 * PUBLISH is acknowledged locally only once the remote acknowledged it, so
 * when the link drops, the local session goes offline with those messages
 * unacknowledged and queues the new ones; when the link is back, the local
 * session resumes and redelivers them. At start-up the local side connects
 * once to create the session and its subscriptions, so messages published
 * before the remote was ever reached wait too.
 *
 * Packet identifiers are passed through: a local PUBLISH's identifier is
 * the remote PUBLISH's and the other way round. Each side's identifiers are
 * unique among its inflight messages, and each direction of each
 * connection has its own identifier space in MQTT, so nothing collides.
 *
 * QoS 2 is not bridged yet (bridge_check refuses topic lines with QoS 2).
 * Loop thread only; timers on the loop's heap.
 */
#include "bridge.h"
#include "base.h"
#include "bridge_net.h"
#include "buf.h"
#include "clock.h"
#include "codec.h"
#include "conn.h"
#include "framer.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "props.h"
#include "sys_topics.h"
#include "timers.h"
#include "topic.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BRIDGE_MAX_TOPICS 64 /* topic lines of one block */

enum side_state { DOWN, CONNECTING, UP };

struct bridge {
	const struct bridge_conf *conf;
	char remote_id[300], local_id[320], notif_topic[400], peer[300];
	struct conn *local;
	uint8_t lstate; /* enum side_state of the local side */
	bool local_close_due; /* the broker asked to close it: conn_on_closed soon */
	bool local_prime; /* the start-up connection: disconnect once subscribed */
	struct framer lframer; /* what the broker wrote to the local conn */
	struct timer local_timer; /* reads the local output; closes the local conn */

	struct bridge_net *net;
	uint8_t rstate; /* enum side_state of the remote side */
	struct framer rframer;
	size_t addr_i; /* the address to try next */
	uint32_t backoff_s;
	struct timer retry_timer, ping_timer;
	uint64_t last_tx_ms, last_rx_ms;
	struct buf scratch;
	/*
	 * PUBLISH packets from the remote that came before the local side was
	 * up (a persistent remote session's backlog follows its CONNACK at
	 * once): replayed when it is, so none waits for the next connection.
	 */
	struct buf held;
};

static struct bridge *bridges;
static size_t n_bridges;

int bridge_check(const struct config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < cfg->n_bridges; i++)
		for (size_t j = 0; j < cfg->bridges[i].n_topics; j++)
			if (cfg->bridges[i].topics[j].qos > 1 || j >= BRIDGE_MAX_TOPICS) {
				snprintf(err, errlen,
					 "%s: connection %s: topic lines with QoS 2, and more than "
					 "%d topic lines, are not supported yet",
					 cfg->bridges[i].where, cfg->bridges[i].name,
					 BRIDGE_MAX_TOPICS);
				return -1;
			}
	return 0;
}

/* ---- topic mapping (mosquitto's prefixes) ---- */

/* The pattern a topic line subscribes to on one side: prefix + pattern. */
static int side_filter(const struct bridge_topic *t, bool local, char *out, size_t len)
{
	const char *pre = local ? t->local_prefix : t->remote_prefix;
	int n = snprintf(out, len, "%s%s", pre, t->pattern);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/*
 * Maps topic (of one side) to the other side by the first topic line of
 * direction dir matching it; the line's QoS into *qos. 0, or -1 when none.
 */
static int map_topic(const struct bridge *b, uint8_t dir, const char *topic, size_t tl, char *out,
		     size_t len, uint8_t *qos)
{
	bool from_local = dir == BRIDGE_OUT;
	char filter[1024];

	for (size_t i = 0; i < b->conf->n_topics; i++) {
		const struct bridge_topic *t = &b->conf->topics[i];
		const char *from = from_local ? t->local_prefix : t->remote_prefix;
		const char *to = from_local ? t->remote_prefix : t->local_prefix;
		size_t fl = strlen(from);
		int n;

		if (!(t->dir & dir) || side_filter(t, from_local, filter, sizeof(filter)))
			continue;
		if (!topic_matches(filter, strlen(filter), topic, tl) || tl < fl)
			continue;
		n = snprintf(out, len, "%s%.*s", to, (int)(tl - fl), topic + fl);
		if (n < 0 || (size_t)n >= len)
			continue;
		*qos = t->qos;
		return 0;
	}
	return -1;
}

/* ---- the remote side ---- */

static void remote_send(struct bridge *b)
{
	if (b->net && bridge_net_write(b->net, b->scratch.data, b->scratch.len) == 0)
		b->last_tx_ms = clock_now_ms();
	buf_reset(&b->scratch);
}

static void remote_down(struct bridge *b, const char *why);
static void local_connect(struct bridge *b);
static void local_disconnect(struct bridge *b);

static void notify(struct bridge *b, const char *state)
{
	if (b->conf->notifications)
		sys_topics_publish_retained(b->notif_topic, state);
}

static void send_remote_connect(struct bridge *b)
{
	const struct bridge_conf *bc = b->conf;
	struct mqtt_connect c = { 0 };
	size_t hdr = 1;

	c.version = bc->protocol_version;
	c.clean_start = bc->cleansession;
	c.keep_alive = bc->keepalive;
	c.client_id.p = b->remote_id;
	c.client_id.len = (uint16_t)strlen(b->remote_id);
	if (bc->remote_username) {
		c.has_username = true;
		c.username.p = bc->remote_username;
		c.username.len = (uint16_t)strlen(bc->remote_username);
	}
	if (bc->remote_password) {
		c.has_password = true;
		c.password.p = (const uint8_t *)bc->remote_password;
		c.password.len = (uint16_t)strlen(bc->remote_password);
	}
	if (codec_encode_connect(&b->scratch, &c))
		return;
	/* try_private (mosquitto's): protocol level | 0x80 marks a bridge (3.1.1). */
	while (b->scratch.data[hdr] & 0x80) /* past the remaining length */
		hdr++;
	hdr++;
	if (bc->try_private && bc->protocol_version == MQTT_V311)
		b->scratch.data[hdr + 6] |= 0x80;
	remote_send(b);
}

/*
 * Encodes into scratch the SUBSCRIBE of one side: locally the out and both
 * patterns, remotely the in and both ones. Options for MQTT 5: No Local
 * (loop prevention [MQTT-3.8.3-3]), Retain As Published, and retained
 * messages only for a new subscription, as each reconnection subscribes
 * again. Returns how many filters (0: nothing encoded).
 */
static size_t encode_subscribe(struct bridge *b, bool local)
{
	uint8_t version = local ? MQTT_V5 : b->conf->protocol_version;
	const char *filters[BRIDGE_MAX_TOPICS];
	uint8_t opts[BRIDGE_MAX_TOPICS];
	static char store[BRIDGE_MAX_TOPICS][1024];
	size_t n = 0;

	for (size_t i = 0; i < b->conf->n_topics; i++) {
		const struct bridge_topic *t = &b->conf->topics[i];

		if (!(t->dir & (local ? BRIDGE_OUT : BRIDGE_IN)) ||
		    side_filter(t, local, store[n], sizeof(store[n])))
			continue;
		filters[n] = store[n];
		opts[n++] = t->qos | (version == MQTT_V5 ? 0x04 | 0x08 | 0x10 : 0);
	}
	if (n && codec_encode_subscribe(&b->scratch, version, 1, NULL, 0, filters, opts, n))
		n = 0;
	return n;
}

static void ping_due(struct timer *t, void *arg)
{
	struct bridge *b = arg;
	uint64_t now = clock_now_ms(), every = (uint64_t)b->conf->keepalive * 1000;

	if (b->rstate != UP)
		return;
	if (now - b->last_rx_ms >= every * 3 / 2) { /* not even a PINGRESP: the link is dead */
		remote_down(b, "no packet from the remote within 1.5 keep alive intervals");
		return;
	}
	/* Idle either way: a PINGREQ, whose PINGRESP shows the remote is still there. */
	if ((now - b->last_tx_ms >= every / 2 || now - b->last_rx_ms >= every / 2) &&
	    !codec_encode_empty(&b->scratch, MQTT_PINGREQ))
		remote_send(b);
	timer_arm(&b->ping_timer, now + every / 2);
}

static void remote_connack(struct bridge *b, const struct mqtt_connack *a)
{
	if (a->reason) {
		remote_down(b, "the remote refused the CONNECT");
		return;
	}
	b->rstate = UP;
	b->backoff_s = 0;
	log_notice("bridge %s: connected to the remote", b->conf->name);
	if (encode_subscribe(b, false))
		remote_send(b);
	notify(b, "1");
	timer_arm(&b->ping_timer, clock_now_ms() + (uint64_t)b->conf->keepalive * 500);
	local_connect(b);
}

static void local_send(struct bridge *b);

/* A PUBLISH from the remote: published locally (QoS capped by its topic line). */
static void remote_publish(struct bridge *b, const struct mqtt_publish *p)
{
	char topic[1024];
	uint8_t cap, qos;
	struct mqtt_ack ack = { .packet_id = p->packet_id };

	if (map_topic(b, BRIDGE_IN, p->topic.p, p->topic.len, topic, sizeof(topic), &cap))
		return;
	qos = p->qos < cap ? p->qos : cap;
	if (b->lstate == UP &&
	    !codec_encode_publish(&b->scratch, MQTT_V5, topic, strlen(topic), qos, p->retain, false,
				  qos ? p->packet_id : 0, NULL, 0, p->payload, p->payload_len))
		local_send(b);
	else
		buf_reset(&b->scratch);
	/* A QoS 1 PUBLISH is acked to the remote once the local side acked it. */
	if (p->qos && !qos &&
	    !codec_encode_ack(&b->scratch, b->conf->protocol_version, MQTT_PUBACK, &ack))
		remote_send(b);
}

static void local_ack(struct bridge *b, uint16_t id);

#define HELD_MAX (16u << 20) /* bytes held at most; beyond, the remote redelivers later */

static void hold(struct bridge *b, const uint8_t *pkt, size_t len)
{
	if (b->held.len + len <= HELD_MAX && buf_put(&b->held, pkt, len) == 0)
		return;
	log_warn("bridge %s: a message from the remote waits for the next connection",
		 b->conf->name);
}

static int remote_packet(void *arg, const uint8_t *pkt, size_t len);

/* The local side is up: what the remote sent meanwhile is published now. */
static void replay_held(struct bridge *b)
{
	struct framer f;
	struct buf held = b->held;

	buf_init(&b->held);
	framer_init(&f, 0);
	framer_feed(&f, held.data, held.len, remote_packet, b);
	framer_free(&f);
	buf_free(&held);
}

static int remote_packet(void *arg, const uint8_t *pkt, size_t len)
{
	struct bridge *b = arg;
	struct mqtt_packet p;

	if (codec_decode(pkt, len, b->conf->protocol_version, &p)) {
		remote_down(b, "a malformed packet from the remote");
		return 1;
	}
	if (p.type == MQTT_CONNACK)
		remote_connack(b, &p.u.connack);
	else if (p.type == MQTT_PUBLISH && b->rstate == UP && b->lstate != UP)
		hold(b, pkt, len);
	else if (p.type == MQTT_PUBLISH && b->rstate == UP)
		remote_publish(b, &p.u.publish);
	else if (p.type == MQTT_PUBACK)
		local_ack(b, p.u.ack.packet_id);
	else if (p.type == MQTT_DISCONNECT)
		remote_down(b, "DISCONNECT from the remote");
	return b->rstate == DOWN ? 1 : 0;
}

static void on_net_connected(void *arg)
{
	struct bridge *b = arg;

	b->last_rx_ms = clock_now_ms();
	send_remote_connect(b);
}

static void on_net_data(void *arg, const uint8_t *p, size_t n)
{
	struct bridge *b = arg;

	b->last_rx_ms = clock_now_ms();
	if (framer_feed(&b->rframer, p, n, remote_packet, b) < 0)
		remote_down(b, "a malformed packet from the remote");
}

static void on_net_failed(void *arg, const char *why)
{
	struct bridge *b = arg;

	b->net = NULL; /* freed by bridge_net.c */
	remote_down(b, why);
}

static const struct bridge_net_ops net_ops = { on_net_connected, on_net_data, on_net_failed };

static void remote_connect(struct timer *t, void *arg)
{
	struct bridge *b = arg;
	const struct bridge_addr *a = &b->conf->addrs[b->addr_i];

	b->addr_i = (b->addr_i + 1) % b->conf->n_addrs;
	framer_free(&b->rframer);
	framer_init(&b->rframer, 0);
	b->rstate = CONNECTING;
	log_info("bridge %s: connecting to %s:%d", b->conf->name, a->host, a->port);
	b->net = bridge_net_connect(a->host, a->port, &net_ops, b);
	if (!b->net)
		remote_down(b, "out of memory");
}

/* The next wait: restart_base, or mosquitto's back-off doubling up to the cap. */
static uint32_t next_wait(struct bridge *b)
{
	const struct bridge_conf *bc = b->conf;

	if (!bc->restart_cap)
		return bc->restart_base;
	b->backoff_s = b->backoff_s ? b->backoff_s * 2 : bc->restart_base;
	if (b->backoff_s > bc->restart_cap)
		b->backoff_s = bc->restart_cap;
	return b->backoff_s;
}

static void remote_down(struct bridge *b, const char *why)
{
	uint32_t wait;

	if (b->rstate == DOWN)
		return;
	if (b->rstate == UP)
		notify(b, "0");
	b->rstate = DOWN;
	buf_free(&b->held); /* unacknowledged: the remote sends them again */
	buf_init(&b->held);
	bridge_net_close(b->net);
	b->net = NULL;
	timer_disarm(&b->ping_timer);
	if (!b->local_prime) /* the start-up connection disconnects once it has subscribed */
		local_disconnect(b);
	wait = next_wait(b);
	log_notice("bridge %s: remote down (%s); retrying in %us", b->conf->name, why, wait);
	timer_arm(&b->retry_timer, clock_now_ms() + (uint64_t)wait * 1000);
}

/* ---- the local side ---- */

static void local_want_write(void *tctx)
{
	struct bridge *b = tctx;

	timer_arm(&b->local_timer, clock_now_ms());
}

static void local_close(void *tctx)
{
	struct bridge *b = tctx;

	b->local_close_due = true;
	timer_arm(&b->local_timer, clock_now_ms());
}

static void local_pause(void *tctx, bool pause)
{
}

static const struct conn_ops local_ops = { local_want_write, local_close, local_pause, NULL };

/* Feeds what is in scratch to the broker as if the bridge's client had sent it. */
static void local_send(struct bridge *b)
{
	if (b->local && b->lstate != DOWN)
		conn_on_data(b->local, b->scratch.data, b->scratch.len);
	buf_reset(&b->scratch);
}

static void send_local_connect(struct bridge *b)
{
	struct mqtt_connect c = { 0 };
	struct buf props;

	buf_init(&props);
	c.version = MQTT_V5;
	c.clean_start = false;
	c.keep_alive = 0;
	c.client_id.p = b->local_id;
	c.client_id.len = (uint16_t)strlen(b->local_id);
	if (props_put_u32(&props, MQTT_PROP_SESSION_EXPIRY, UINT32_MAX) == 0) {
		c.props.raw = props.data;
		c.props.raw_len = props.len;
		if (!codec_encode_connect(&b->scratch, &c))
			local_send(b);
	}
	buf_free(&props);
}

static void send_local_subscribe(struct bridge *b)
{
	if (encode_subscribe(b, true))
		local_send(b);
	else if (b->local_prime && b->rstate != UP) /* nothing to subscribe to */
		local_disconnect(b);
}

static void local_connect(struct bridge *b)
{
	if (b->local)
		return;
	b->local = conn_new(&local_ops, b, false, b->peer, 0);
	if (!b->local) {
		log_err("bridge %s: out of memory for the local connection", b->conf->name);
		return;
	}
	framer_free(&b->lframer);
	framer_init(&b->lframer, 0);
	b->lstate = CONNECTING;
	send_local_connect(b);
}

/* A graceful DISCONNECT: the session stays, offline, and queues. */
static void local_disconnect(struct bridge *b)
{
	struct mqtt_disconnect d = { 0 };

	if (!b->local || b->lstate == DOWN)
		return;
	if (!codec_encode_disconnect(&b->scratch, MQTT_V5, &d))
		local_send(b);
	b->lstate = DOWN;
}

/* The remote acknowledged a message from the local side: acknowledged locally now. */
static void local_ack(struct bridge *b, uint16_t id)
{
	struct mqtt_ack a = { .packet_id = id };

	if (b->lstate == UP && !codec_encode_ack(&b->scratch, MQTT_V5, MQTT_PUBACK, &a))
		local_send(b);
	buf_reset(&b->scratch);
}

/* A PUBLISH the broker delivered to the bridge: forwarded to the remote. */
static void local_publish(struct bridge *b, const struct mqtt_publish *p)
{
	char topic[1024];
	uint8_t cap, qos;
	struct mqtt_ack ack = { .packet_id = p->packet_id };

	if (b->rstate != UP) /* left unacknowledged: redelivered when the link is back */
		return;
	if (map_topic(b, BRIDGE_OUT, p->topic.p, p->topic.len, topic, sizeof(topic), &cap)) {
		if (p->qos) /* matches no out line (cannot happen): not forwarded */
			local_ack(b, ack.packet_id);
		return;
	}
	qos = p->qos < cap ? p->qos : cap;
	if (!codec_encode_publish(&b->scratch, b->conf->protocol_version, topic, strlen(topic), qos,
				  p->retain, p->dup && qos, qos ? p->packet_id : 0, NULL, 0,
				  p->payload, p->payload_len))
		remote_send(b);
	if (p->qos && !qos)
		local_ack(b, ack.packet_id);
}

static void local_connack(struct bridge *b, const struct mqtt_connack *a)
{
	if (a->reason) {
		log_err("bridge %s: the broker refused its local client '%s' (reason 0x%02x)",
			b->conf->name, b->local_id, a->reason);
		local_disconnect(b);
		return;
	}
	b->lstate = UP;
	send_local_subscribe(b);
	if (b->rstate == UP)
		replay_held(b);
}

static void remote_ack_of_local(struct bridge *b, uint16_t id)
{
	struct mqtt_ack a = { .packet_id = id };

	if (b->rstate == UP &&
	    !codec_encode_ack(&b->scratch, b->conf->protocol_version, MQTT_PUBACK, &a))
		remote_send(b);
	buf_reset(&b->scratch);
}

static int local_packet(void *arg, const uint8_t *pkt, size_t len)
{
	struct bridge *b = arg;
	struct mqtt_packet p;

	if (codec_decode(pkt, len, MQTT_V5, &p))
		return 0;
	if (p.type == MQTT_CONNACK)
		local_connack(b, &p.u.connack);
	else if (p.type == MQTT_SUBACK && b->local_prime) {
		log_info("bridge %s: local session '%s' subscribed", b->conf->name, b->local_id);
		b->local_prime = false;
		if (b->rstate != UP)
			local_disconnect(b);
	} else if (p.type == MQTT_PUBLISH && b->lstate == UP)
		local_publish(b, &p.u.publish);
	else if (p.type == MQTT_PUBACK) /* of a message from the remote */
		remote_ack_of_local(b, p.u.ack.packet_id);
	return 0;
}

/* Reads what the broker wrote to the local conn; finishes a close it asked for. */
static void local_run(struct timer *t, void *arg)
{
	struct bridge *b = arg;
	uint8_t *p;
	size_t n;

	while (b->local && (n = conn_pending(b->local, &p)) > 0) {
		/* Handling a packet may append to the conn's buffer: parsed from a copy. */
		uint8_t *copy = mem_alloc(n);

		if (!copy) {
			log_err("bridge %s: out of memory reading the local side", b->conf->name);
			timer_arm(&b->local_timer, clock_now_ms() + 100);
			return;
		}
		memcpy(copy, p, n);
		conn_sent(b->local, n);
		framer_feed(&b->lframer, copy, n, local_packet, b);
		mem_free(copy);
	}
	if (b->local && b->local_close_due) {
		struct conn *c = b->local;

		b->local = NULL;
		b->local_close_due = false;
		b->lstate = DOWN;
		conn_on_closed(c);
		if (b->rstate == UP) /* the link came back while the old one closed */
			local_connect(b);
	}
}

/* ---- start and stop ---- */

static void names(struct bridge *b)
{
	const struct bridge_conf *bc = b->conf;
	char host[256] = "localhost";

	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	snprintf(b->remote_id, sizeof(b->remote_id), "%s",
		 bc->remote_clientid ? bc->remote_clientid : "");
	if (!bc->remote_clientid)
		snprintf(b->remote_id, sizeof(b->remote_id), "%.200s.%.90s", host, bc->name);
	if (bc->local_clientid)
		snprintf(b->local_id, sizeof(b->local_id), "%s", bc->local_clientid);
	else
		snprintf(b->local_id, sizeof(b->local_id), "local.%s", b->remote_id);
	snprintf(b->peer, sizeof(b->peer), "bridge %s", bc->name);
	if (bc->notification_topic)
		snprintf(b->notif_topic, sizeof(b->notif_topic), "%s", bc->notification_topic);
	else
		snprintf(b->notif_topic, sizeof(b->notif_topic), "$SYS/broker/connection/%s/state",
			 b->remote_id);
}

static void start_one(struct bridge *b, const struct bridge_conf *bc)
{
	memset(b, 0, sizeof(*b));
	b->conf = bc;
	names(b);
	buf_init(&b->scratch);
	buf_init(&b->held);
	framer_init(&b->lframer, 0);
	framer_init(&b->rframer, 0);
	timer_init(&b->local_timer, local_run, b);
	timer_init(&b->retry_timer, remote_connect, b);
	timer_init(&b->ping_timer, ping_due, b);
	notify(b, "0");
	b->local_prime = true;
	local_connect(b);
	timer_arm(&b->retry_timer, clock_now_ms());
}

int bridge_start_all(const struct config *cfg)
{
	if (!cfg->n_bridges)
		return 0;
	bridges = mem_calloc(cfg->n_bridges, sizeof(*bridges));
	if (!bridges)
		return -1;
	n_bridges = cfg->n_bridges;
	for (size_t i = 0; i < n_bridges; i++)
		start_one(&bridges[i], &cfg->bridges[i]);
	return 0;
}

void bridge_stop_all(void)
{
	for (size_t i = 0; i < n_bridges; i++) {
		struct bridge *b = &bridges[i];

		timer_disarm(&b->retry_timer);
		timer_disarm(&b->ping_timer);
		bridge_net_close(b->net);
		b->net = NULL;
		b->rstate = DOWN;
		local_disconnect(b);
		local_run(&b->local_timer, b);
		if (b->local) { /* the broker did not close it: done here */
			struct conn *c = b->local;

			b->local = NULL;
			conn_on_closed(c);
		}
		timer_disarm(&b->local_timer);
		framer_free(&b->lframer);
		framer_free(&b->rframer);
		buf_free(&b->scratch);
		buf_free(&b->held);
	}
	mem_free(bridges);
	bridges = NULL;
	n_bridges = 0;
}
