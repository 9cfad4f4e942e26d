/*
 * api.c - the HTTP API's answers (/api/v1/...): the broker's figures, its
 * clients (paged and filtered), one client with its subscriptions, kicking
 * one, retained messages (listed by filter, deleted), shared groups, as
 * JSON (json.c). listener_http.c owns HTTP, access and
 * paging parameters; this file only answers a parsed request.
 *
 * Owns no state. Loop thread only (every answer reads the live tables).
 *
 * Invariants: every answer is a JSON object, errors too ({"error": ...}
 * with a 4xx status); a request never changes anything but what its
 * method says (GET reads; DELETE of a client disconnects it, of a retained
 * message removes it from memory and the store).
 */
#include "autoconfig.h"
#include "api.h"

#include <string.h>

#include "base.h"
#include "clock.h"
#include "conn.h"
#include "json.h"
#include "mqtt.h"
#include "router.h"
#include "session.h"
#include "sys_topics.h"
#include "topic.h"
#include "utf8.h"
#include "msg.h"

static int error(struct buf *out, int status, const char *why)
{
	struct json j;

	buf_reset(out);
	json_init(&j, out);
	json_open(&j, NULL, '{');
	json_cstr(&j, "error", why);
	json_close(&j, '}');
	return status;
}

static const char *version_name(uint8_t v)
{
	return v == MQTT_V5 ? "5.0" : v == MQTT_V311 ? "3.1.1" : "3.1";
}

static int broker_info(struct buf *out)
{
	const struct base_stats *st = &base.stats;
	struct json j;

	json_init(&j, out);
	json_open(&j, NULL, '{');
	json_cstr(&j, "version", PACKAGE_VERSION);
	json_u64(&j, "uptime_seconds", (clock_now_ms() - base.start_ms) / 1000);
	json_u64(&j, "connections", conn_count());
	json_u64(&j, "clients_connected", st->clients_connected);
	json_u64(&j, "sessions", session_count());
	json_u64(&j, "subscriptions", router_subscription_count());
	json_u64(&j, "retained_messages", router_retained_count());
	json_u64(&j, "messages_received", base_qos_sum(st->msgs_received));
	json_u64(&j, "messages_sent", base_qos_sum(st->msgs_sent));
	json_u64(&j, "messages_dropped", st->pub_dropped);
	json_u64(&j, "bytes_received", st->bytes_received);
	json_u64(&j, "bytes_sent", st->bytes_sent);
	json_close(&j, '}');
	return j.err ? error(out, 500, "out of memory") : 200;
}

/* One client's summary members (in an object already open). */
static void client_members(struct json *j, const struct session *s)
{
	const struct conn *c = s->conn;

	json_cstr(j, "client_id", s->client_id);
	json_cstr(j, "username", s->username);
	json_bool(j, "connected", c != NULL);
	json_cstr(j, "protocol", version_name(s->version));
	json_cstr(j, "address", c ? c->peer : NULL);
	json_bool(j, "websocket", c && c->websocket);
	json_u64(j, "keep_alive", c ? c->keep_alive : 0);
	json_u64(j, "connected_since_ms", c ? s->connected_wall : 0);
	json_u64(j, "disconnected_at_ms", s->disconnected_wall);
	json_u64(j, "inflight", s->q.inflight.n);
	json_u64(j, "queued", outq_queued(&s->q));
	json_u64(j, "subscriptions", s->n_subs);
}

/* Does s pass the filters of rq? */
static bool wanted(const struct session *s, const struct api_request *rq)
{
	if (rq->connected >= 0 && (s->conn != NULL) != (rq->connected == 1))
		return false;
	return !rq->prefix || !strncmp(s->client_id, rq->prefix, strlen(rq->prefix));
}

struct listing {
	const struct api_request *rq;
	struct json *j;
	size_t matched; /* sessions that pass the filters so far */
};

static void list_one(struct session *s, void *arg)
{
	struct listing *l = arg;

	if (!wanted(s, l->rq))
		return;
	if (l->matched >= l->rq->offset && l->matched - l->rq->offset < l->rq->limit) {
		json_open(l->j, NULL, '{');
		client_members(l->j, s);
		json_close(l->j, '}');
	}
	l->matched++;
}

/* GET /clients?offset=&limit=&connected=&prefix=: one page, and how many match in all. */
static int clients(const struct api_request *rq, struct buf *out)
{
	struct json j;
	struct listing l = { rq, &j, 0 };

	json_init(&j, out);
	json_open(&j, NULL, '{');
	json_open(&j, "items", '[');
	session_each(list_one, &l);
	json_close(&j, ']');
	json_u64(&j, "total", l.matched);
	json_u64(&j, "offset", rq->offset);
	json_u64(&j, "limit", rq->limit);
	json_close(&j, '}');
	return j.err ? error(out, 500, "out of memory") : 200;
}

static int one_client(const struct session *s, struct buf *out)
{
	struct json j;

	json_init(&j, out);
	json_open(&j, NULL, '{');
	client_members(&j, s);
	json_open(&j, "subscription_list", '[');
	for (const struct sub_rec *r = s->subs; r; r = r->next) {
		json_open(&j, NULL, '{');
		json_cstr(&j, "filter", r->filter);
		json_u64(&j, "qos", r->options & 3);
		json_bool(&j, "no_local", r->options & 4);
		json_bool(&j, "retain_as_published", r->options & 8);
		json_u64(&j, "retain_handling", (r->options >> 4) & 3);
		json_u64(&j, "subscription_id", r->subid);
		json_close(&j, '}');
	}
	json_close(&j, ']');
	json_close(&j, '}');
	return j.err ? error(out, 500, "out of memory") : 200;
}

/* DELETE /clients/{id}: its connection ends with DISCONNECT 0x98 (MQTT 5); the session stays. */
static int kick(struct session *s, struct buf *out)
{
	struct json j;
	bool was = s->conn != NULL;

	if (was)
		conn_close(s->conn, MQTT_RC_ADMIN_ACTION, "disconnected through the HTTP API");
	json_init(&j, out);
	json_open(&j, NULL, '{');
	json_cstr(&j, "client_id", s->client_id);
	json_bool(&j, "disconnected", was);
	json_close(&j, '}');
	return j.err ? error(out, 500, "out of memory") : 200;
}

static int client(const struct api_request *rq, const char *id, struct buf *out)
{
	struct session *s = session_find(id);

	if (!s)
		return error(out, 404, "no such client");
	if (rq->method == API_DELETE)
		return kick(s, out);
	return rq->method == API_GET ? one_client(s, out) : error(out, 405, "method not allowed");
}

struct retained_page {
	const struct api_request *rq;
	struct json *j;
	size_t matched;
};

static void retained_one(const struct msg *m, void *arg)
{
	struct retained_page *pg = arg;
	bool text = !utf8_check((const char *)m->payload, m->payload_len);

	if (pg->matched >= pg->rq->offset && pg->matched - pg->rq->offset < pg->rq->limit) {
		json_open(pg->j, NULL, '{');
		json_str(pg->j, "topic", m->topic, m->topic_len);
		json_u64(pg->j, "qos", m->qos);
		json_u64(pg->j, "payload_bytes", m->payload_len);
		json_str(pg->j, "payload", text ? (const char *)m->payload : NULL, m->payload_len);
		json_str(pg->j, "publisher", m->sender, m->sender_len);
		json_close(pg->j, '}');
	}
	pg->matched++;
}

/* GET /retained?filter=&offset=&limit=: the payload as text when it is UTF-8, else null. */
static int retained(const struct api_request *rq, struct buf *out)
{
	const char *f = rq->filter && *rq->filter ? rq->filter : "#";
	struct json j;
	struct retained_page pg = { rq, &j, 0 };

	if (!topic_filter_valid(f, strlen(f)))
		return error(out, 400, "filter is not a valid topic filter");
	json_init(&j, out);
	json_open(&j, NULL, '{');
	json_open(&j, "items", '[');
	router_retained_each(f, strlen(f), retained_one, &pg);
	json_close(&j, ']');
	json_u64(&j, "total", pg.matched);
	json_u64(&j, "offset", rq->offset);
	json_u64(&j, "limit", rq->limit);
	json_close(&j, '}');
	return j.err ? error(out, 500, "out of memory") : 200;
}

/* DELETE /retained/TOPIC: gone, without a message to subscribers. */
static int retained_delete(const char *topic, struct buf *out)
{
	struct json j;

	if (!topic_name_valid(topic, strlen(topic)))
		return error(out, 400, "not a valid topic name");
	if (!router_retained_clear(topic, strlen(topic)))
		return error(out, 404, "no retained message on that topic");
	json_init(&j, out);
	json_open(&j, NULL, '{');
	json_cstr(&j, "topic", topic);
	json_bool(&j, "deleted", true);
	json_close(&j, '}');
	return j.err ? error(out, 500, "out of memory") : 200;
}

static void group_item(const struct sys_group *g, void *arg)
{
	struct json *j = arg;

	json_open(j, NULL, '{');
	json_cstr(j, "group", g->name);
	json_u64(j, "queued", g->queued);
	json_u64(j, "members", g->members);
	json_u64(j, "delivered", g->delivered);
	json_close(j, '}');
}

/* GET /groups: every shared group name with its backlog, members and deliveries. */
static int groups(struct buf *out)
{
	struct json j;

	json_init(&j, out);
	json_open(&j, NULL, '{');
	json_open(&j, "items", '[');
	sys_topics_groups(group_item, &j);
	json_close(&j, ']');
	json_close(&j, '}');
	return j.err ? error(out, 500, "out of memory") : 200;
}

int api_handle(const struct api_request *rq, struct buf *out)
{
	const char *p = rq->path;

	if (!strcmp(p, "/retained"))
		return rq->method == API_GET ? retained(rq, out)
					     : error(out, 405, "method not allowed");
	if (!strncmp(p, "/retained/", 10) && p[10])
		return rq->method == API_DELETE ? retained_delete(p + 10, out)
						: error(out, 405, "method not allowed");
	if (!strcmp(p, "/groups"))
		return rq->method == API_GET ? groups(out) : error(out, 405, "method not allowed");
	if (!strcmp(p, "/broker"))
		return rq->method == API_GET ? broker_info(out)
					     : error(out, 405, "method not allowed");
	if (!strcmp(p, "/clients"))
		return rq->method == API_GET ? clients(rq, out)
					     : error(out, 405, "method not allowed");
	if (!strncmp(p, "/clients/", 9) && p[9])
		return client(rq, p + 9, out);
	return error(out, 404, "no such resource");
}

int api_error(struct buf *out, int status, const char *why)
{
	return error(out, status, why);
}
