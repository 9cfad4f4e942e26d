/*
 * proto_connect.c - CONNECT: validate, pick or create the session, answer
 * CONNACK, resume the session.
 *
 * The order matters and follows the spec: a refused CONNECT is answered
 * with a CONNACK carrying the reason and the connection closes without
 * touching any session [MQTT-3.2.2-7]; an accepted one first ends a
 * connection that holds the same client id [MQTT-3.1.4-3], then discards or
 * resumes the session [MQTT-3.1.2-4, -5], then sends CONNACK, and only then
 * resends what the session had in flight [MQTT-4.4.0-1].
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "base.h"
#include "clock.h"
#include "codec.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "plugin.h"
#include "proto.h"
#include "scram.h"
#include "session.h"
#include "utf8.h"

/* What CONNECT asked for, once checked; filled in by the check_* steps. */
struct connect_plan {
	bool assigned;
	uint16_t keep_alive;
	bool server_keep_alive;
	uint32_t expiry;
	struct msg *will;
	uint32_t will_delay;
	const char *username; /* the session's: the CONNECT's, or the certificate's CN */
	size_t username_len;
	char cert_cn[256];
	char client_id[65536 + 128]; /* last: only the other fields are reset */
};

static int send_connack(struct conn *c, bool present, uint8_t reason, const struct buf *props)
{
	struct buf *out = conn_out(c);
	struct mqtt_connack a;

	memset(&a, 0, sizeof(a));
	a.session_present = present;
	a.reason = reason;
	if (props) {
		a.props.raw = props->data;
		a.props.raw_len = props->len;
	}
	if (!out || codec_encode_connack(out, c->version, &a))
		return -1;
	conn_flush(c);
	return 0;
}

int proto_connect_refuse(struct conn *c, uint8_t v5_reason, uint8_t v3_code, const char *why,
			 const struct buf *props)
{
	char line[160];

	base.stats.connects_refused++;
	send_connack(c, false, c->version == MQTT_V5 ? v5_reason : v3_code,
		     c->version == MQTT_V5 ? props : NULL);
	snprintf(line, sizeof(line), "CONNECT refused: %s", why);
	conn_close(c, -1, line);
	return -1;
}

/* Refuses the CONNECT: v5 reason code or the closest 3.1.1 return code. */
static int refuse(struct conn *c, uint8_t v5_reason, uint8_t v3_code, const char *why)
{
	return proto_connect_refuse(c, v5_reason, v3_code, why, NULL);
}

int proto_connect_failed(struct conn *c, const struct mqtt_connect *p, int codec_err)
{
	if (codec_err == CODEC_EPROTOVER) {
		char why[64];

		/*
		 * [MQTT-3.1.2-2] unsupported level: CONNACK 0x01 in the 3.1.1
		 * layout, which every level so far understands as a refusal (a
		 * 5.0 client reads it as a failure too); mosquitto does the same.
		 */
		c->version = MQTT_V311;
		snprintf(why, sizeof(why), "unsupported protocol level %u", p->version);
		return refuse(c, MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, MQTT3_CONNACK_BAD_PROTOCOL,
			      why);
	}
	base.stats.connects_refused++;
	if (p->version == MQTT_V5) {
		c->version = MQTT_V5;
		send_connack(c, false, proto_codec_reason(codec_err), NULL);
	}
	conn_close(c, -1,
		   codec_err == CODEC_EPROTOCOL ? "protocol error in CONNECT"
						: "malformed CONNECT");
	return -1;
}

static int assign_client_id(struct connect_plan *plan)
{
	uint8_t rnd[8];
	size_t i, n;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -1;
	n = (size_t)snprintf(plan->client_id, 100, "%.60s", base.cfg->auto_id_prefix);
	for (i = 0; i < sizeof(rnd); i++)
		n += (size_t)snprintf(plan->client_id + n, 3, "%02x", rnd[i]);
	plan->assigned = true;
	return 0;
}

static int check_client_id(struct conn *c, const struct mqtt_connect *p, struct connect_plan *plan)
{
	if (p->client_id.len) {
		if (memchr(p->client_id.p, '\0', p->client_id.len))
			return refuse(c, MQTT_RC_CLIENT_ID_NOT_VALID, MQTT3_CONNACK_ID_REJECTED,
				      "client id contains U+0000");
		memcpy(plan->client_id, p->client_id.p, p->client_id.len);
		plan->client_id[p->client_id.len] = '\0';
		return 0;
	}
	/* [MQTT-3.1.3-8] an empty id needs clean session in 3.1.1; 3.1 needs an id. */
	if (c->version == MQTT_V31 || (c->version == MQTT_V311 && !p->clean_start))
		return refuse(c, MQTT_RC_CLIENT_ID_NOT_VALID, MQTT3_CONNACK_ID_REJECTED,
			      "empty client id without clean session");
	if (!base.cfg->allow_zero_length_clientid)
		return refuse(c, MQTT_RC_CLIENT_ID_NOT_VALID, MQTT3_CONNACK_ID_REJECTED,
			      "empty client id not allowed (allow_zero_length_clientid)");
	if (assign_client_id(plan))
		return refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT3_CONNACK_UNAVAILABLE,
			      "no random bytes for a client id");
	return 0;
}

static int check_keep_alive(struct conn *c, const struct mqtt_connect *p, struct connect_plan *plan)
{
	uint16_t max = base.cfg->max_keepalive;

	plan->keep_alive = p->keep_alive;
	if (max == 65535 || (p->keep_alive && p->keep_alive <= max))
		return 0;
	if (c->version != MQTT_V5)
		return refuse(c, MQTT_RC_IMPL_SPECIFIC, MQTT3_CONNACK_ID_REJECTED,
			      "keep alive above max_keepalive");
	/* [MQTT-3.2.2-21] the client must use the Server Keep Alive we send. */
	plan->keep_alive = max;
	plan->server_keep_alive = true;
	return 0;
}

static int check_will(struct conn *c, const struct mqtt_connect *p, struct connect_plan *plan)
{
	const struct mqtt_props *wp = &p->will_props;

	if (!p->will)
		return 0;
	if (p->will_qos > base.cfg->max_qos)
		return refuse(c, MQTT_RC_QOS_NOT_SUPPORTED, MQTT3_CONNACK_UNAVAILABLE,
			      "will QoS above max_qos");
	if (p->will_retain && !base.cfg->retain_available)
		return refuse(c, MQTT_RC_RETAIN_NOT_SUPPORTED, MQTT3_CONNACK_UNAVAILABLE,
			      "retained will but retain_available is false");
	if ((wp->present & PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT)) && wp->payload_format == 1 &&
	    utf8_check((const char *)p->will_payload.p, p->will_payload.len))
		return refuse(c, MQTT_RC_PAYLOAD_FORMAT_INVALID, MQTT3_CONNACK_UNAVAILABLE,
			      "will payload is not UTF-8 as its format indicator says");
	plan->will = proto_build_msg(plan->client_id, p->will_topic.p, p->will_topic.len,
				     p->will_payload.p, p->will_payload.len, p->will_qos,
				     p->will_retain, wp);
	if (!plan->will)
		return refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT3_CONNACK_UNAVAILABLE,
			      "out of memory for the will");
	plan->will_delay = (wp->present & PROP_BIT(MQTT_PROP_WILL_DELAY)) ? wp->will_delay : 0;
	return 0;
}

static uint32_t expiry_asked(const struct conn *c, const struct mqtt_connect *p)
{
	uint32_t v3 = base.cfg->persistent_client_expiration;

	if (c->version == MQTT_V5)
		return (p->props.present & PROP_BIT(MQTT_PROP_SESSION_EXPIRY))
			       ? p->props.session_expiry
			       : 0;
	if (p->clean_start)
		return 0;
	return v3 ? v3 : UINT32_MAX;
}

/* Ends another connection holding this client id [MQTT-3.1.4-3]. */
static void take_over(struct session *old)
{
	struct conn *oc = old->conn;

	/* An old connection that already sent DISCONNECT is only flushing: its
	 * will is gone [MQTT-3.14.4-3] and it needs no DISCONNECT from us. */
	if (oc->state != CONN_CLOSING)
		conn_close(oc, MQTT_RC_SESSION_TAKEN_OVER,
			   "session taken over by a new connection");
	conn_part_session(oc);
	session_detach(old, oc->graceful);
}

/*
 * AUTH plugins, then allow_anonymous and the password file [MQTT-3.1.4-2]:
 * 0x87 / 5 for every refusal, as mosquitto (a plugin may pick the MQTT 5 code).
 */
static int check_credentials(struct conn *c, const struct mqtt_connect *p,
			     struct connect_plan *plan)
{
	const char *why = NULL;
	uint8_t reason = MQTT_RC_NOT_AUTHORIZED;

	plan->username = p->has_username ? p->username.p : NULL;
	plan->username_len = p->username.len;
	if (c->identity_as_username) {
		/* use_identity_as_username: the certificate's CN, no password file (mosquitto) */
		if (!conn_peer_cn(c, plan->cert_cn, sizeof(plan->cert_cn))) {
			plan->username = plan->cert_cn;
			plan->username_len = strlen(plan->cert_cn);
			return 0;
		}
		why = "the client certificate has no CN (use_identity_as_username)";
	} else if (plugin_authenticate(c->realm, plan->client_id,
				       p->has_username ? p->username.p : NULL, p->username.len,
				       p->has_password ? p->password.p : NULL, p->password.len,
				       c->version, c->peer, &reason, &why)) {
		return 0;
	}
	log_notice("client '%s' from %s%s not authorised: %s%s%.*s%s", plan->client_id, c->peer,
		   c->websocket ? " (websocket)" : "", why, p->has_username ? " (username '" : "",
		   p->has_username ? (int)p->username.len : 0, p->has_username ? p->username.p : "",
		   p->has_username ? "')" : "");
	msg_unref(plan->will);
	return refuse(c, reason, MQTT3_CONNACK_NOT_AUTHORIZED, "not authorised");
}

static struct session *open_session(struct conn *c, const struct mqtt_connect *p, const char *id,
				    bool *present)
{
	struct session *s = session_find(id);

	if (s && s->conn)
		take_over(s);
	s = session_find(id);
	if (s && p->clean_start) {
		session_destroy(s);
		s = NULL;
	}
	*present = s != NULL;
	return s ? s : session_create(id, c->version);
}

static void build_connack_props(struct conn *c, const struct mqtt_connect *p,
				const struct connect_plan *plan, const struct proto_authed *ok,
				struct buf *b)
{
	const struct config *cfg = base.cfg;

	buf_reset(b);
	if (c->version != MQTT_V5)
		return;
	if (ok) {
		const char *method = scram_mech_name(ok->mech);

		props_put_str(b, MQTT_PROP_AUTH_METHOD, method, strlen(method));
		props_put_str(b, MQTT_PROP_AUTH_DATA, ok->data->data, ok->data->len);
	}
	if (cfg->max_inflight_messages != 65535)
		props_put_u16(b, MQTT_PROP_RECEIVE_MAX, cfg->max_inflight_messages);
	if (cfg->max_qos < 2)
		props_put_u8(b, MQTT_PROP_MAX_QOS, cfg->max_qos);
	if (!cfg->retain_available)
		props_put_u8(b, MQTT_PROP_RETAIN_AVAILABLE, 0);
	if (cfg->max_packet_size)
		props_put_u32(b, MQTT_PROP_MAX_PACKET_SIZE, cfg->max_packet_size);
	if (plan->assigned)
		props_put_str(b, MQTT_PROP_ASSIGNED_CLIENT_ID, plan->client_id,
			      strlen(plan->client_id));
	if (cfg->max_topic_alias)
		props_put_u16(b, MQTT_PROP_TOPIC_ALIAS_MAX, cfg->max_topic_alias);
	if (plan->server_keep_alive)
		props_put_u16(b, MQTT_PROP_SERVER_KEEP_ALIVE, plan->keep_alive);
	if ((p->props.present & PROP_BIT(MQTT_PROP_REQUEST_RESPONSE_INFO)) &&
	    p->props.request_response_info) {
		/* Response Information: a topic prefix this client may use for replies. */
		size_t n = strlen(plan->client_id) + sizeof("response/");
		char *info = mem_alloc(n);

		if (info) {
			snprintf(info, n, "response/%s", plan->client_id);
			props_put_str(b, MQTT_PROP_RESPONSE_INFO, info, n - 1);
			mem_free(info);
		}
	}
}

static void apply_client_limits(struct conn *c, const struct mqtt_connect *p)
{
	const struct mqtt_props *pr = &p->props;

	c->client_receive_max = 65535;
	c->request_problem_info = true;
	if (c->version != MQTT_V5)
		return;
	if (pr->present & PROP_BIT(MQTT_PROP_RECEIVE_MAX))
		c->client_receive_max = pr->receive_max;
	if (pr->present & PROP_BIT(MQTT_PROP_MAX_PACKET_SIZE))
		c->client_max_packet = pr->max_packet_size;
	if (pr->present & PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX))
		c->client_alias_max = pr->topic_alias_max;
	if (pr->present & PROP_BIT(MQTT_PROP_REQUEST_PROBLEM_INFO))
		c->request_problem_info = pr->request_problem_info;
	c->alias_in_max = base.cfg->max_topic_alias;
}

static int accept_connect(struct conn *c, const struct mqtt_connect *p, struct connect_plan *plan,
			  const struct proto_authed *ok)
{
	struct session *s;
	bool present;

	s = open_session(c, p, plan->client_id, &present);
	if (!s) {
		msg_unref(plan->will);
		return refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT3_CONNACK_UNAVAILABLE,
			      "out of memory for the session");
	}
	/* Before the session changes: a refusal here leaves it as it was. */
	if (session_set_username(s, plan->username, plan->username_len)) {
		msg_unref(plan->will);
		if (!present)
			session_destroy(s);
		return refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT3_CONNACK_UNAVAILABLE,
			      "out of memory for the username");
	}
	s->version = c->version;
	s->realm = c->realm;
	s->connected_wall = clock_wall_ms();
	session_set_expiry(s, plan->expiry);
	session_attach(s, c);
	c->session = s;
	c->client_id = s->client_id;
	if (plan->will)
		session_set_will(s, plan->will, plan->will_delay);
	/* Stored before the CONNACK goes out; a restart then knows the session and will. */
	session_save(s);
	apply_client_limits(c, p);
	c->keep_alive = plan->keep_alive;
	build_connack_props(c, p, plan, ok, &base.scratch);
	if (send_connack(c, present, MQTT_RC_SUCCESS, &base.scratch)) {
		/* No CONNACK, no MQTT connection: the session goes offline at the close. */
		conn_close(c, MQTT_RC_SERVER_BUSY, "out of memory for the CONNACK");
		return -1;
	}
	base.stats.connects++;
	c->state = CONN_ACTIVE;
	if (c->keep_alive)
		timer_arm(&c->timer, clock_now_ms() + (uint64_t)c->keep_alive * 1500);
	else
		timer_disarm(&c->timer);
	log_notice("client '%s' connected from %s%s: MQTT %s, %s, keep alive %u%s%s", s->client_id,
		   c->peer, c->websocket ? " (websocket)" : "",
		   c->version == MQTT_V5     ? "5.0"
		   : c->version == MQTT_V311 ? "3.1.1"
					     : "3.1",
		   present ? "session resumed" : "new session", c->keep_alive, ok ? ", " : "",
		   ok ? scram_mech_name(ok->mech) : "");
	plugin_connect(s);
	session_resume(s);
	return 0;
}

/* An enhanced authentication's user is the session's; no password check then. */
static void take_authed(const struct proto_authed *ok, struct connect_plan *plan)
{
	plan->username = ok->username;
	plan->username_len = ok->username_len;
}

int proto_connect_accept(struct conn *c, const struct mqtt_connect *p,
			 const struct proto_authed *ok)
{
	static struct connect_plan plan; /* static: the id buffer is too big for the stack */

	memset(&plan, 0, offsetof(struct connect_plan, client_id));
	plan.client_id[0] = '\0';
	if (ok)
		take_authed(ok, &plan);
	if (check_client_id(c, p, &plan) || check_keep_alive(c, p, &plan) ||
	    check_will(c, p, &plan) || (!ok && check_credentials(c, p, &plan)))
		return -1;
	plan.expiry = expiry_asked(c, p);
	return accept_connect(c, p, &plan, ok);
}

int proto_connect(struct conn *c, const struct mqtt_connect *p, const uint8_t *pkt, size_t len)
{
	c->version = p->version;
	if (c->version == MQTT_V5 && (p->props.present & PROP_BIT(MQTT_PROP_AUTH_METHOD)))
		return proto_auth_begin(c, p, pkt, len); /* proto_auth.c, then back here */
	return proto_connect_accept(c, p, NULL);
}
