/*
 * proto_auth.c - MQTT 5 enhanced authentication: SCRAM-SHA-256 and
 * SCRAM-SHA-512 (scram.c) over CONNECT and AUTH packets, when a client
 * connects and when it re-authenticates. Loop thread only.
 *
 * At connect:  CONNECT (method, client-first) -> AUTH 0x18 (server-first)
 *              AUTH 0x18 (client-final)       -> CONNACK 0x00 (server-final)
 * Re-auth:     AUTH 0x19 (client-first)       -> AUTH 0x18 (server-first)
 *              AUTH 0x18 (client-final)       -> AUTH 0x00 (server-final)
 *
 * Owns: the connection's exchange (c->scram) and, between the CONNECT and
 * its CONNACK, a copy of the CONNECT (c->auth_connect), decoded again and
 * accepted by proto_connect.c once the proof checks out: nothing of the
 * session is touched before that. The credential comes from the password
 * file (auth.c): $7$ entries serve SCRAM-SHA-512 and $pbkdf2-sha256$ ones
 * SCRAM-SHA-256.
 *
 * Invariants: a connection in CONN_AUTH has an exchange and a saved
 * CONNECT, and leaves that state only by CONNACK (success or refusal) or
 * by closing; connect_timeout covers it. Every refusal before CONNACK is a
 * CONNACK (0x87 for a failed exchange, 0x8C for an unknown method, 0x82
 * for AUTH out of order or any packet but AUTH and DISCONNECT, a second
 * CONNECT too); after it, a DISCONNECT with the same codes. The
 * log names the client and its address, never the proof.
 */
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "base.h"
#include "codec.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "passwd.h"
#include "proto.h"
#include "scram.h"
#include "session.h"

static void end_exchange(struct conn *c)
{
	scram_free(c->scram);
	c->scram = NULL;
	mem_free(c->auth_connect);
	c->auth_connect = NULL;
	c->auth_cred_why = NULL;
}

/* The method and data as MQTT 5 properties, into b (reset first). */
static void auth_props(struct buf *b, enum scram_mech m, const struct buf *data)
{
	const char *name = scram_mech_name(m);

	buf_reset(b);
	props_put_str(b, MQTT_PROP_AUTH_METHOD, name, strlen(name));
	if (data && data->len)
		props_put_str(b, MQTT_PROP_AUTH_DATA, data->data, data->len);
}

/* An AUTH packet: 0, or -1 when out of memory (nothing sent). */
static int send_auth(struct conn *c, uint8_t reason, enum scram_mech m, const struct buf *data)
{
	struct buf *out = conn_out(c);
	struct mqtt_auth a;

	auth_props(&base.scratch, m, data);
	memset(&a, 0, sizeof(a));
	a.reason = reason;
	a.props.raw = base.scratch.data;
	a.props.raw_len = base.scratch.len;
	if (!out || codec_encode_auth(out, &a))
		return -1;
	conn_flush(c);
	return 0;
}

static bool same_method(const struct mqtt_props *pr, enum scram_mech m)
{
	return (pr->present & PROP_BIT(MQTT_PROP_AUTH_METHOD)) &&
	       scram_mech_of(pr->auth_method.p, pr->auth_method.len) == m;
}

/*
 * Reads the client-first-message and answers the server-first-message in an
 * AUTH 0x18. 0, or -1 with *why (the caller ends the exchange: end_exchange).
 */
static int first_step(struct conn *c, enum scram_mech m, const struct mqtt_bin *data,
		      const char *username, size_t ulen, const char **why)
{
	char snonce[SCRAM_SNONCE_LEN + 1];
	struct scram_cred cred;
	struct buf out;
	const char *user;
	size_t got;
	int rc = -1;

	*why = "no client-first-message in the Authentication Data";
	if (!data->p || !data->len)
		return -1;
	c->scram = scram_new(m);
	*why = "out of memory";
	if (!c->scram || scram_client_first(c->scram, (const char *)data->p, data->len, why))
		return -1;
	user = scram_username(c->scram, &got);
	if (username && (got != ulen || memcmp(user, username, ulen))) {
		*why = "the SCRAM user (n=) is not the username";
		return -1;
	}
	c->auth_cred_why = auth_scram_cred(c->realm, m, user, got, &cred);
	buf_init(&out);
	*why = "out of memory";
	if (!scram_make_nonce(snonce) && !scram_server_first(c->scram, &cred, snonce, &out) &&
	    !send_auth(c, MQTT_RC_CONTINUE_AUTH, m, &out))
		rc = 0;
	buf_free(&out);
	memset(&cred, 0, sizeof(cred));
	return rc;
}

/* Logs a refused authentication: client, address, method, reason, user (never the proof). */
static void log_refusal(struct conn *c, const char *client_id, size_t idlen, enum scram_mech m,
			const char *why)
{
	size_t ulen = 0;
	const char *user = c->scram ? scram_username(c->scram, &ulen) : NULL;
	const char *cred = c->auth_cred_why;

	log_notice("client '%.*s' from %s%s not authorised: %s: %s%s%.*s%s%s%s", (int)idlen,
		   client_id, c->peer, c->websocket ? " (websocket)" : "", scram_mech_name(m), why,
		   user ? " (username '" : "", user ? (int)ulen : 0, user ? user : "",
		   user ? "')" : "", user && cred ? ": " : "", user && cred ? cred : "");
}

/* Refuses the CONNECT being authenticated with CONNACK reason (data: the server's "e=..."). */
static int refuse_connect(struct conn *c, const struct mqtt_str *client_id, uint8_t reason,
			  enum scram_mech m, const struct buf *data, const char *why)
{
	log_refusal(c, client_id->p ? client_id->p : "", client_id->len, m, why);
	auth_props(&base.scratch, m, data);
	end_exchange(c);
	return proto_connect_refuse(c, reason, MQTT3_CONNACK_NOT_AUTHORIZED, "not authorised",
				    &base.scratch);
}

int proto_auth_begin(struct conn *c, const struct mqtt_connect *p, const uint8_t *pkt, size_t len)
{
	const struct mqtt_props *pr = &p->props;
	enum scram_mech m = scram_mech_of(pr->auth_method.p, pr->auth_method.len);
	const char *why;

	if (m == SCRAM_NONE || c->identity_as_username) {
		/* [MQTT-4.12.0-1]; a use_identity_as_username listener authenticates by certificate */
		log_notice("client '%.*s' from %s: unsupported authentication method '%.*s'",
			   (int)p->client_id.len, p->client_id.p ? p->client_id.p : "", c->peer,
			   (int)pr->auth_method.len, pr->auth_method.p);
		return proto_connect_refuse(c, MQTT_RC_BAD_AUTH_METHOD,
					    MQTT3_CONNACK_NOT_AUTHORIZED,
					    "unsupported authentication method", NULL);
	}
	c->auth_mech = (uint8_t)m;
	if (first_step(c, m, &pr->auth_data, p->has_username ? p->username.p : NULL,
		       p->username.len, &why)) {
		/* why is set */
	} else if (!(c->auth_connect = mem_alloc(len))) {
		why = "out of memory";
	} else {
		memcpy(c->auth_connect, pkt, len);
		c->auth_connect_len = len;
		c->state = CONN_AUTH;
		return 0;
	}
	return refuse_connect(c, &p->client_id, MQTT_RC_NOT_AUTHORIZED, m, NULL, why);
}

/* The saved CONNECT, decoded into p (pointing into it): 0, or -1 after refusing it. */
static int saved_connect(struct conn *c, struct mqtt_packet *p)
{
	memset(p, 0, sizeof(*p));
	if (codec_decode(c->auth_connect, c->auth_connect_len, MQTT_V5, p) == CODEC_OK)
		return 0;
	end_exchange(c);
	return proto_connect_refuse(c, MQTT_RC_UNSPECIFIED, MQTT3_CONNACK_UNAVAILABLE,
				    "the saved CONNECT does not decode", NULL);
}

int proto_auth_interrupted(struct conn *c, const char *why)
{
	struct mqtt_packet p;

	if (saved_connect(c, &p))
		return -1;
	return refuse_connect(c, &p.u.connect.client_id, MQTT_RC_PROTOCOL_ERROR,
			      scram_mech(c->scram), NULL, why);
}

/* AUTH 0x18 with the client-final-message, before CONNACK. */
static int finish_connect(struct conn *c, const struct mqtt_auth *a)
{
	enum scram_mech m = scram_mech(c->scram);
	const struct mqtt_bin *data = &a->props.auth_data;
	struct mqtt_packet p;
	struct proto_authed ok;
	struct buf out;
	const char *why;
	int rc;

	if (saved_connect(c, &p))
		return -1;
	if (a->reason != MQTT_RC_CONTINUE_AUTH || !same_method(&a->props, m))
		return refuse_connect(c, &p.u.connect.client_id, MQTT_RC_PROTOCOL_ERROR, m, NULL,
				      a->reason != MQTT_RC_CONTINUE_AUTH
					      ? "AUTH before CONNACK without reason 0x18"
					      : "AUTH with another method than the CONNECT's");
	buf_init(&out);
	if (scram_client_final(c->scram, (const char *)data->p, data->len, &out, &why)) {
		rc = refuse_connect(c, &p.u.connect.client_id, MQTT_RC_NOT_AUTHORIZED, m, &out,
				    why);
		buf_free(&out);
		return rc;
	}
	ok.username = scram_username(c->scram, &ok.username_len);
	ok.mech = m;
	ok.data = &out;
	c->state = CONN_NEW;
	rc = proto_connect_accept(c, &p.u.connect, &ok);
	buf_free(&out);
	end_exchange(c);
	return rc;
}

/* AUTH 0x19: the client re-authenticates; its user must stay the session's. */
static int begin_reauth(struct conn *c, const struct mqtt_auth *a)
{
	const char *user = c->session ? c->session->username : NULL;
	const char *why = "the session has no username";

	if (!user || first_step(c, (enum scram_mech)c->auth_mech, &a->props.auth_data, user,
				strlen(user), &why)) {
		log_refusal(c, c->client_id, strlen(c->client_id), (enum scram_mech)c->auth_mech,
			    why);
		end_exchange(c);
		conn_close(c, MQTT_RC_NOT_AUTHORIZED, "re-authentication failed");
		return -1;
	}
	return 0;
}

/* AUTH 0x18 with the client-final-message of a re-authentication. */
static int finish_reauth(struct conn *c, const struct mqtt_auth *a)
{
	enum scram_mech m = scram_mech(c->scram);
	struct buf out;
	const char *why;
	int rc = 0;

	buf_init(&out);
	if (scram_client_final(c->scram, (const char *)a->props.auth_data.p, a->props.auth_data.len,
			       &out, &why)) {
		log_refusal(c, c->client_id, strlen(c->client_id), m, why);
		conn_close(c, MQTT_RC_NOT_AUTHORIZED, "re-authentication failed");
		rc = -1;
	} else if (send_auth(c, MQTT_RC_SUCCESS, m, &out)) {
		conn_close(c, MQTT_RC_SERVER_BUSY, "out of memory for the AUTH");
		rc = -1;
	} else {
		log_info("client '%s' re-authenticated (%s)", c->client_id, scram_mech_name(m));
	}
	buf_free(&out);
	end_exchange(c);
	return rc;
}

int proto_auth(struct conn *c, const struct mqtt_auth *a)
{
	enum scram_mech m = (enum scram_mech)c->auth_mech;

	if (c->state == CONN_AUTH)
		return finish_connect(c, a);
	if (m == SCRAM_NONE) {
		/* the CONNECT named no method: nothing to continue or repeat */
		conn_close(c, MQTT_RC_BAD_AUTH_METHOD, "AUTH without an authentication method");
		return -1;
	}
	if (!same_method(&a->props, m)) {
		conn_close(c, MQTT_RC_PROTOCOL_ERROR,
			   "AUTH with another method than the CONNECT's");
		return -1;
	}
	if (a->reason == MQTT_RC_REAUTHENTICATE && !c->scram)
		return begin_reauth(c, a);
	if (a->reason == MQTT_RC_CONTINUE_AUTH && c->scram)
		return finish_reauth(c, a);
	conn_close(c, MQTT_RC_PROTOCOL_ERROR, "AUTH out of order");
	return -1;
}
