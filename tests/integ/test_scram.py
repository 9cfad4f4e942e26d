"""SCRAM-SHA-512 and SCRAM-SHA-256 over MQTT 5 enhanced authentication (issue 16).

The contract.  A CONNECT (MQTT 5) with Authentication Method "SCRAM-SHA-512"
or "SCRAM-SHA-256" and Authentication Data = the client-first-message
("n,,n=USER,r=CNONCE"; "y,," is taken too; "p=" channel binding and "m="
extensions are refused; an "a=" authzid must be the user; "=2C" and "=3D"
stand for ',' and '=') is answered AUTH 0x18 with the same method and the
server-first-message ("r=CNONCE+SNONCE,s=SALT,i=ITER"); the client answers
AUTH 0x18, same method, with the client-final-message ("c=biws,r=NONCE,
p=PROOF"); if the proof is right, CONNACK 0x00 carries the method and
"v=SERVERSIGNATURE", which the client checks, and the session's username is
the SCRAM user (ACLs apply to it; a username in the CONNECT must be the same
user, else 0x87).  Refusals: a wrong password, an unknown user, or a
mechanism the user's hash does not serve: CONNACK 0x87 with "e=invalid-proof";
a client-final of an earlier exchange (its nonce): 0x87 "e=other-error"; a
c= that is not base64 of the GS2 header: 0x87 "e=channel-bindings-dont-match";
a malformed client-first or none: 0x87; an unknown method (SCRAM-SHA-1, a
lower-case name): 0x8C; a packet other than AUTH or DISCONNECT during the
exchange, or an AUTH with another method or a reason other than 0x18: 0x82;
no AUTH within connect_timeout: closed.  Credentials come from the
password_file: a "$7$" entry (mosquitto_passwd) serves SCRAM-SHA-512 (its
hash is the salted password: PBKDF2-HMAC-SHA512 with the entry's salt and
iterations), a "$pbkdf2-sha256$ITER$SALT$HASH" entry (passlib's adapted
base64: '.' for '+', no padding; written by sluice-passwd -H sha256-pbkdf2,
4096 iterations by default) SCRAM-SHA-256 and plain-password CONNECTs; a "$6$"
entry no SCRAM.  An unknown user gets a made-up salt, the same at every
attempt and another for another name, with the mechanism's default
iterations, so that the exchange does not tell who exists.  After CONNACK,
AUTH 0x19 (same method, a client-first of the same user) re-authenticates:
AUTH 0x18, AUTH 0x18, then AUTH 0x00 with "v=..."; the connection goes on.
A wrong proof or another user then gets DISCONNECT 0x87; AUTH on a
connection whose CONNECT named no method, DISCONNECT 0x8C.  A refusal is
logged with the client id and the address, never the password or the proof.

mosquitto 2.0.11 has no SCRAM: every test that needs a broker is skipped
against it.  The client side of SCRAM is written here from RFC 5802 with
hashlib, hmac and base64 (checked against RFC 7677's example exchange),
independent of the broker's code; packets go through the raw client.  Every
test runs a private broker (allow_anonymous false) whose password file holds
USERS, written by Debian's mosquitto_passwd ($7$ with its default 101
iterations and with -I 1000, $6$ with -H sha512), by sluice-passwd -H
sha256-pbkdf2 (found beside $SLUICE), and one $pbkdf2-sha256$ line the test
makes itself in passlib's layout.
"""

import base64
import hashlib
import hmac
import os
import re

import rawmqtt as R
from harness import param, skip_on_mosquitto, timeout, wait_until
from test_acl import raw_publish, raw_subscribe, write_acl
from test_auth import PASSWD, assert_accepted, assert_refused, auth_broker, hup, paho, passwd
from test_passwd_tool import adapted_b64, sha256_fields, tool as sluice_passwd

NO_SCRAM = "mosquitto 2.0.11 has no SCRAM (no enhanced authentication at all)"

SHA512, SHA256 = "SCRAM-SHA-512", "SCRAM-SHA-256"
MECHS = {SHA512: "sha512", SHA256: "sha256"}
# what mosquitto_passwd writes for $7$ and sluice-passwd for $pbkdf2-sha256$: what a
# made-up credential (an unknown user's) has too
DEFAULT_ITERATIONS = {SHA512: 101, SHA256: 4096}

AUTH_SUCCESS, CONTINUE, REAUTH = 0x00, 0x18, 0x19
NOT_AUTHORIZED, BAD_METHOD, PROTOCOL_ERROR, TAKEN_OVER = 0x87, 0x8C, 0x82, 0x8E

# name -> (password, how the line is written: "mosquitto_passwd", "mosquitto_passwd -I 1000",
# "mosquitto_passwd -H sha512", "sluice-passwd", or "test": made here in passlib's layout)
USERS = {
	"alice": ("Al1ce-scram-pw", "mosquitto_passwd"),  # $7$101$
	"c=ar,ol": ("c4rol-scram-pw", "mosquitto_passwd"),  # a name SCRAM must escape
	"ivan": ("1van-scram-pw", "mosquitto_passwd -I 1000"),  # $7$1000$
	"old": ("0ld-sha512-pw", "mosquitto_passwd -H sha512"),  # $6$: no SCRAM
	"sam": ("S4m-scram-pw", "sluice-passwd"),  # $pbkdf2-sha256$4096$
	"pete": ("P3te-passlib-pw", "test"),  # $pbkdf2-sha256$1500$, a '.' in the salt
}
# the user each mechanism's own tests log in as
USER_OF = {SHA512: "alice", SHA256: "sam"}
PETE_ITERATIONS = 1500


def pw(user):
	return USERS[user][0]


# -- a SCRAM client (RFC 5802), from the RFC --------------------------------------------

def b64(data):
	return base64.b64encode(data).decode()


def saslname(user):
	"""RFC 5802 section 5.1: ',' and '=' in a name are written "=2C" and "=3D"."""
	return user.replace("=", "=3D").replace(",", "=2C")


def attributes(msg):
	"""'k=v,k=v' as a dict (values may hold '=')."""
	return dict(a.split("=", 1) for a in msg.split(","))


def server_first_fields(server_first):
	"""(nonce, salt, iterations) of a server-first-message."""
	a = attributes(server_first.decode())
	assert set(a) == {"r", "s", "i"}, "server-first-message %r" % server_first
	return a["r"], base64.b64decode(a["s"], validate=True), int(a["i"])


class Scram:
	"""The client side of one exchange.  gs2: the GS2 header ("n,," or "y,,",
	perhaps with "a=AUTHZID" between the commas); extension: appended to the
	client-first-message-bare (",x=..." is an optional extension)."""

	def __init__(self, mech, user, password, gs2="n,,", cnonce=None, extension=""):
		self.mech = mech
		self.hash = MECHS[mech]
		self.password = password
		self.gs2 = gs2
		self.cnonce = cnonce or b64(os.urandom(18))
		self.bare = "n=%s,r=%s%s" % (saslname(user), self.cnonce, extension)
		self.server_signature = None

	def first(self):
		return (self.gs2 + self.bare).encode()

	def _hmac(self, key, msg):
		return hmac.new(key, msg, self.hash).digest()

	def read_first(self, server_first):
		"""The server-first-message: (nonce, salt, iterations); the nonce must
		extend ours (RFC 5802 section 5.1, r=)."""
		r, salt, iterations = server_first_fields(server_first)
		assert r.startswith(self.cnonce) and len(r) > len(self.cnonce), \
			"the server's nonce %r does not extend ours %r" % (r, self.cnonce)
		return r, salt, iterations

	def final(self, server_first, channel=None, nonce=None):
		"""The client-final-message for server_first.  channel: c= instead of
		base64 of the GS2 header; nonce: r= instead of the server's."""
		r, salt, iterations = self.read_first(server_first)
		salted = hashlib.pbkdf2_hmac(self.hash, self.password.encode(), salt, iterations)
		client_key = self._hmac(salted, b"Client Key")
		stored_key = hashlib.new(self.hash, client_key).digest()
		without_proof = "c=%s,r=%s" % (b64(self.gs2.encode()) if channel is None else channel,
					       r if nonce is None else nonce)
		auth_message = ",".join((self.bare, server_first.decode(), without_proof)).encode()
		signature = self._hmac(stored_key, auth_message)
		proof = bytes(k ^ s for k, s in zip(client_key, signature))
		server_key = self._hmac(salted, b"Server Key")
		self.server_signature = self._hmac(server_key, auth_message)
		return ("%s,p=%s" % (without_proof, b64(proof))).encode()

	def verify(self, server_final):
		"""The server-final-message must be v= of the signature we expect: the
		server knows the password (RFC 5802 section 3)."""
		want = ("v=" + b64(self.server_signature)).encode()
		assert server_final == want, "server-final %r, expected %r" % (server_final, want)


def test_scram_client_rfc7677_example(t):
	"""The test's own client reproduces RFC 7677 section 3's exchange (user
	"user", password "pencil") byte for byte, and rejects another signature.
	It needs no broker, so it runs against mosquitto too."""
	s = Scram(SHA256, "user", "pencil", cnonce="rOprNGfwEbeRWgbNEkqO")
	assert s.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
	sf = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	assert s.final(sf) == (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
			       b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
	s.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
	try:
		s.verify(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
	except AssertionError:
		pass
	else:
		raise AssertionError("verify() took a wrong server signature")
	assert saslname("c=ar,ol") == "c=3Dar=2Col"


# -- password files and brokers ----------------------------------------------------------

def passlib_line(user, password, iterations, salt):
	"""A $pbkdf2-sha256$ line as passlib writes it, computed here."""
	digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
	return "%s:$pbkdf2-sha256$%d$%s$%s" % (user, iterations, adapted_b64(salt),
					       adapted_b64(digest))


def tool_of(how):
	"""The command (and options) that writes a user's line (see USERS)."""
	if how == "sluice-passwd":
		return [sluice_passwd(), "-H", "sha256-pbkdf2"]
	return [PASSWD] + how.split()[1:]


def scram_broker(t, users=None, extra=(), anonymous="false"):
	"""A started private broker, allow_anonymous ANONYMOUS, with the password file
	of users (names of USERS; default all) and the configuration lines extra.
	Returns (broker, password file path)."""
	skip_on_mosquitto(NO_SCRAM)
	names = list(USERS) if users is None else users
	written = [(u, pw(u), tool_of(USERS[u][1])) for u in names if USERS[u][1] != "test"]
	# b"\xfb\xef\xbe" is "++++" in base64: the salt tests '.' in adapted base64
	made = [passlib_line(u, pw(u), PETE_ITERATIONS, b"\xfb\xef\xbe" + os.urandom(9))
		for u in names if USERS[u][1] == "test"]
	return auth_broker(t, anonymous, users=written, more_lines=made, extra=extra)


def entry(path, user):
	"""The user's line of the password file: (prefix, salt, iterations) (no salt
	nor iterations for a $6$ line)."""
	with open(path) as f:
		for line in f:
			line = line.rstrip("\n")
			name, _, h = line.partition(":")
			if name != user:
				continue
			if h.startswith("$7$"):
				_, _, it, salt, _ = h.split("$")
				return "$7$", base64.b64decode(salt, validate=True), int(it)
			if h.startswith("$pbkdf2-sha256$"):
				_, it, salt, _ = sha256_fields(line)
				return "$pbkdf2-sha256$", salt, it
			return h[:3], None, None
	raise AssertionError("no line for %s in %s" % (user, path))


# -- the exchange over the raw client ------------------------------------------------------

def auth_props(mech, data):
	"""Authentication Method mech and, unless data is None, Authentication Data."""
	return [(R.AUTH_METHOD, mech)] + ([] if data is None else [(R.AUTH_DATA, data)])


def begin(t, b, mech, first, transport="tcp", cid=None, properties=(), **kw):
	"""A raw connection that has sent CONNECT with method mech and Authentication
	Data first (None: none); kw go to R.connect (username, will, clean...)."""
	r = t.raw(b, transport=transport, version=5)
	r.send(R.connect(t.cid("s") if cid is None else cid, 5,
			 properties=auth_props(mech, first) + list(properties), **kw))
	return r


def expect_auth(r, mech, reason=CONTINUE):
	"""The next packet is AUTH reason with method mech: its Authentication Data."""
	p = r.expect(R.AUTH)
	rc, props = p.auth()
	assert rc == reason, "AUTH reason 0x%02x, expected 0x%02x (%r)" % (rc, reason, p)
	assert R.prop(props, R.AUTH_METHOD) == mech, "AUTH method %r, expected %r" % (
		R.prop(props, R.AUTH_METHOD), mech)
	data = R.prop(props, R.AUTH_DATA)
	assert data is not None, "AUTH without Authentication Data: %r" % p
	return data


def send_auth(r, mech, data, reason=CONTINUE):
	r.send(R.auth(reason, auth_props(mech, data)))


def start(t, b, mech, user, password=None, transport="tcp", cid=None, scram=None, **kw):
	"""CONNECT with user's client-first, AUTH 0x18 read: (raw, Scram, server-first)."""
	s = scram or Scram(mech, user, pw(user) if password is None else password)
	r = begin(t, b, mech, s.first(), transport, cid, **kw)
	return r, s, expect_auth(r, mech)


def accepted(r, s):
	"""CONNACK 0 with the method and the server signature s expects:
	(session present, its properties)."""
	sp, rc, props = r.expect(R.CONNACK).connack()
	data = R.prop(props, R.AUTH_DATA)
	assert rc == 0, "CONNACK 0x%02x (%r), expected 0" % (rc, data)
	assert R.prop(props, R.AUTH_METHOD) == s.mech, props
	s.verify(data)
	return sp, props


def login(t, b, mech, user, password=None, transport="tcp", cid=None, **kw):
	"""A raw connection after a successful exchange (the server's signature checked)."""
	r, s, sf = start(t, b, mech, user, password, transport, cid, **kw)
	send_auth(r, mech, s.final(sf))
	accepted(r, s)
	return r


def resume(t, b, mech, user, cid):
	"""A login with Clean Start 0 and a session expiry: (raw, session present)."""
	r, s, sf = start(t, b, mech, user, cid=cid, clean=False,
			 properties=[(R.SESSION_EXPIRY, 60)])
	send_auth(r, mech, s.final(sf))
	return r, accepted(r, s)[0]


def refused(r, code=NOT_AUTHORIZED, error=None):
	"""CONNACK code, session present 0, then the close; error: the
	Authentication Data it must carry ("e=...").  Returns its properties."""
	sp, rc, props = r.expect(R.CONNACK).connack()
	data = R.prop(props, R.AUTH_DATA)
	assert rc == code, "CONNACK 0x%02x (%r), expected 0x%02x" % (rc, data, code)
	assert not sp, "session present 1 with a refusal [MQTT-3.2.2-6]"
	if error is not None:
		assert data == error.encode(), "Authentication Data %r, expected %r" % (data, error)
	r.wait_closed(5)
	return props


def disconnected(r, code):
	"""DISCONNECT code (nothing else before it), then the close."""
	p = r.expect(R.DISCONNECT)
	rc, _ = p.disconnect()
	assert rc == code, "DISCONNECT 0x%02x, expected 0x%02x" % (rc, code)
	r.wait_closed(5)


def fail(t, b, mech, user, password=None, error="e=invalid-proof", **kw):
	"""A whole exchange refused at the proof: the server-first it sent."""
	r, s, sf = start(t, b, mech, user, password, **kw)
	send_auth(r, mech, s.final(sf))
	refused(r, NOT_AUTHORIZED, error)
	return sf


def publish_back(r, topic, payload, pid):
	"""r, subscribed to topic, publishes there at QoS 1: the PUBACK's reason
	and the message delivered back (None when the PUBACK refuses)."""
	r.send(R.publish(topic, payload, 1, pid=pid))
	code, m = None, None
	while code is None or (code < 0x80 and m is None):
		p = r.recv()
		if p.type == R.PUBLISH:
			m = p.publish()
			if m["qos"]:
				r.send(R.puback(m["pid"]))
		else:
			assert p.type == R.PUBACK and p.pid() == pid, "expected PUBACK %d, got %r" % (pid, p)
			code = p.ack()[1]
	return code, m


def roundtrip(r, topic, payload=b"still here", pid=7):
	"""r subscribes to topic, publishes there at QoS 1 and gets it back."""
	assert raw_subscribe(r, [topic]) == [1]
	code, m = publish_back(r, topic, payload, pid)
	assert code == 0 and (m["topic"], m["payload"]) == (topic, payload), (code, m)


def logs_in(t, b, mech, user, password=None):
	"""Does a whole exchange end in CONNACK 0?"""
	r, s, sf = start(t, b, mech, user, password)
	send_auth(r, mech, s.final(sf))
	rc = r.expect(R.CONNACK).connack()[1]
	r.close()
	return rc == 0


# -- success ------------------------------------------------------------------------------

@param("mech", [SHA512, SHA256])
@param("transport", R.TRANSPORTS)
def test_scram_right_password(t, mech, transport):
	"""alice ($7$, SCRAM-SHA-512) and sam ($pbkdf2-sha256$ by sluice-passwd,
	SCRAM-SHA-256): the server-first extends our nonce with the entry's salt
	and iterations (101 from mosquitto_passwd, 4096 from sluice-passwd), the
	CONNACK carries the method and the server signature we expect (the server
	knows the password), and the session works."""
	user = USER_OF[mech]
	b, path = scram_broker(t, [user])
	r, s, sf = start(t, b, mech, user, transport=transport)
	_, salt, iterations = s.read_first(sf)
	prefix, file_salt, it = entry(path, user)
	assert (salt, iterations) == (file_salt, it), \
		"server-first %r, the file's %s entry: s=%s i=%d" % (sf, prefix, b64(file_salt), it)
	assert iterations == DEFAULT_ITERATIONS[mech]
	send_auth(r, mech, s.final(sf))
	accepted(r, s)
	roundtrip(r, t.topic("ok"))


# variant -> (mechanism, user, Scram options, CONNECT options)
VARIANTS = {
	"y_header": (SHA512, "alice", {"gs2": "y,,"}, {}),
	"authzid": (SHA512, "alice", {"gs2": "n,a=alice,"}, {}),
	"escaped_authzid": (SHA512, "c=ar,ol", {"gs2": "n,a=c=3Dar=2Col,"}, {}),
	"escaped_name": (SHA512, "c=ar,ol", {}, {}),
	"iterations_1000": (SHA512, "ivan", {}, {}),
	"passlib_line": (SHA256, "pete", {}, {}),
	"extension": (SHA256, "sam", {"extension": ",x=optional"}, {}),
	"username_field": (SHA256, "sam", {}, {"username": "sam"}),
	"password_field": (SHA512, "alice", {}, {"username": "alice", "password": "ignored"}),
	"assigned_client_id": (SHA512, "alice", {}, {"cid": ""}),
}


@param("variant", list(VARIANTS))
def test_scram_accepted_variants(t, variant):
	"""What a client-first may carry: "y,," (a client that could bind but thinks
	the server cannot), an authzid that is the user (escaped too), a name
	with ',' and '=', an optional extension; $7$ with -I 1000 (i=1000) and a
	passlib line with a '.' in its salt (i=1500); a CONNECT username that is
	the SCRAM user (a password beside it is not checked); an empty client id
	(assigned, in the CONNACK)."""
	mech, user, sopts, copts = VARIANTS[variant]
	b, path = scram_broker(t, [user])
	copts = dict(copts)
	cid = copts.pop("cid", None)
	s = Scram(mech, user, pw(user), **sopts)
	r, _, sf = start(t, b, mech, user, scram=s, cid=cid, **copts)
	assert s.read_first(sf)[1:] == entry(path, user)[1:], sf
	send_auth(r, mech, s.final(sf))
	props = accepted(r, s)[1]
	if cid == "":
		assert R.prop(props, R.ASSIGNED_CLIENT_ID), "no Assigned Client Identifier: %r" % props
	r.send(R.pingreq())
	r.expect(R.PINGRESP)


@param("mech", [SHA512, SHA256])
def test_scram_session_resumed(t, mech):
	"""A SCRAM login with Clean Start 0 finds the session the last one left
	(session present 1, its subscription delivering)."""
	user = USER_OF[mech]
	b, _ = scram_broker(t, [user])
	cid, tp = t.cid("keep"), t.topic("keep")
	r = login(t, b, mech, user, cid=cid, properties=[(R.SESSION_EXPIRY, 60)])
	assert raw_subscribe(r, [tp]) == [1]
	r.send(R.disconnect())
	r.wait_closed(5)
	r, present = resume(t, b, mech, user, cid)
	assert present, "session present 0"
	code, m = publish_back(r, tp, b"resumed", 3)
	assert code == 0 and m["payload"] == b"resumed", (code, m)


def test_scram_sha256_entry_takes_plain_passwords(t):
	"""A $pbkdf2-sha256$ entry (sluice-passwd's, and the passlib line) serves
	ordinary CONNECTs too: the right password in (raw 3.1.1 and 5.0, paho),
	a wrong one out; the $7$ user as before."""
	b, _ = scram_broker(t, ["alice", "sam", "pete"])
	for version in (4, 5):
		for user in ("sam", "pete", "alice"):
			assert_accepted(t, b, version, user, pw(user))
			assert_refused(t, b, version, user, pw(user) + "x")
		assert_refused(t, b, version, "sam", pw("pete"))
		paho(t, b, version, "sam", pw("sam")).disconnect()
		paho(t, b, version, "pete", "wrong", expect_rc={4: 5, 5: 0x87}[version])


# -- refusals at the proof ------------------------------------------------------------------

@param("mech", [SHA512, SHA256])
def test_scram_wrong_password(t, mech):
	"""A proof from a wrong password: CONNACK 0x87 "e=invalid-proof", closed;
	the server-first carried the user's real salt and iterations all the same."""
	user = USER_OF[mech]
	b, path = scram_broker(t, [user])
	sf = fail(t, b, mech, user, pw(user) + "x")
	assert server_first_fields(sf)[1:] == entry(path, user)[1:], sf
	fail(t, b, mech, user, pw("pete"))  # another user's password
	assert logs_in(t, b, mech, user), "the right password no longer works"


@param("mech", [SHA512, SHA256])
def test_scram_unknown_user(t, mech):
	"""An unknown user: a server-first like a real one (a 12-byte salt, the
	mechanism's default iterations) whose salt is the same at every attempt
	and another for another unknown name; then CONNACK 0x87 "e=invalid-proof"."""
	b, _ = scram_broker(t, ["alice", "sam"])
	seen = {}
	for name in ("mallory", "mallory", "trent", "mallory"):
		_, salt, iterations = server_first_fields(fail(t, b, mech, name, "any-password"))
		assert iterations == DEFAULT_ITERATIONS[mech], iterations
		assert len(salt) == 12, "a %d-byte salt; real entries have 12" % len(salt)
		seen.setdefault(name, set()).add((salt, iterations))
	assert len(seen["mallory"]) == 1, "mallory's salt changed between attempts: %r" % seen
	assert seen["mallory"] != seen["trent"], "two unknown users got the same salt"


# case -> (user, a mechanism the user's hash does not serve)
MISMATCHES = {
	"dollar7_sha256": ("alice", SHA256),
	"dollar7_i1000_sha256": ("ivan", SHA256),
	"sluice_passwd_sha512": ("sam", SHA512),
	"passlib_sha512": ("pete", SHA512),
	"dollar6_sha512": ("old", SHA512),
	"dollar6_sha256": ("old", SHA256),
}


@param("case", list(MISMATCHES))
def test_scram_mechanism_the_hash_does_not_serve(t, case):
	"""$7$ users with SCRAM-SHA-256, $pbkdf2-sha256$ users with SCRAM-SHA-512,
	the $6$ user with either: a server-first (made up, as for an unknown
	user: the mechanism's default iterations), then 0x87 "e=invalid-proof"
	for the right password."""
	user, mech = MISMATCHES[case]
	b, _ = scram_broker(t, [user])
	_, _, iterations = server_first_fields(fail(t, b, mech, user))
	assert iterations == DEFAULT_ITERATIONS[mech], iterations


@param("mech", [SHA512, SHA256])
def test_scram_replayed_client_final(t, mech):
	"""The client-final of a successful exchange, sent again on a second
	connection with the same client-first: the server's nonce is new, so the
	old r= is refused with 0x87 "e=other-error"; a fresh proof still works."""
	user = USER_OF[mech]
	b, _ = scram_broker(t, [user])
	cnonce = b64(os.urandom(18))
	r, s, sf = start(t, b, mech, user, scram=Scram(mech, user, pw(user), cnonce=cnonce))
	old_final = s.final(sf)
	send_auth(r, mech, old_final)
	accepted(r, s)
	r2, s2, sf2 = start(t, b, mech, user, scram=Scram(mech, user, pw(user), cnonce=cnonce))
	assert s2.read_first(sf2)[0] != s.read_first(sf)[0], "the server's nonce was reused"
	send_auth(r2, mech, old_final)
	refused(r2, NOT_AUTHORIZED, "e=other-error")
	assert logs_in(t, b, mech, user)


# case -> (channel (c=), the GS2 header sent)
BINDINGS = {
	"y_for_n": (b64(b"y,,"), "n,,"),
	"n_for_y": ("biws", "y,,"),
	"no_authzid": ("biws", "n,a=alice,"),
	"not_base64": ("!!!!", "n,,"),
	"empty": ("", "n,,"),
}


@param("case", list(BINDINGS))
def test_scram_channel_binding_mismatch(t, case):
	"""A c= that is not base64 of the client-first's GS2 header (the proof
	computed over it, as a client would): 0x87 "e=channel-bindings-dont-match"."""
	channel, gs2 = BINDINGS[case]
	b, _ = scram_broker(t, ["alice"])
	r, s, sf = start(t, b, SHA512, "alice", scram=Scram(SHA512, "alice", pw("alice"), gs2=gs2))
	send_auth(r, SHA512, s.final(sf, channel=channel))
	refused(r, NOT_AUTHORIZED, "e=channel-bindings-dont-match")


# case -> the client-final made of the right one (f), the combined nonce (n) and the proof (p)
BAD_FINALS = {
	"no_data": lambda f, n, p: None,
	"empty": lambda f, n, p: b"",
	"no_proof": lambda f, n, p: f[:f.rindex(b",p=")],
	"proof_not_base64": lambda f, n, p: f[:f.rindex(b",p=")] + b",p=%%%%",
	"proof_flipped": lambda f, n, p: f[:f.rindex(b",p=")] + b",p=" + base64.b64encode(
		bytes([p[0] ^ 1]) + p[1:]),
	"proof_truncated": lambda f, n, p: f[:f.rindex(b",p=")] + b",p=" + base64.b64encode(p[:-1]),
	"no_nonce": lambda f, n, p: b"c=biws,p=" + base64.b64encode(p),
	"other_nonce": lambda f, n, p: f.replace(n, n[:-1] + (b"A" if n[-1:] != b"A" else b"B")),
	"reordered": lambda f, n, p: b"r=" + n + b",c=biws,p=" + base64.b64encode(p),
	"nul": lambda f, n, p: f + b"\0",
}


@param("case", list(BAD_FINALS))
def test_scram_malformed_client_final(t, case):
	"""A client-final that is not one, or whose proof or nonce is wrong:
	CONNACK 0x87 with an "e=" error, closed."""
	b, _ = scram_broker(t, ["alice"])
	r, s, sf = start(t, b, SHA512, "alice")
	final = s.final(sf)
	nonce = attributes(sf.decode())["r"].encode()
	proof = base64.b64decode(final[final.rindex(b",p=") + 3:])
	send_auth(r, SHA512, BAD_FINALS[case](final, nonce, proof))
	props = refused(r, NOT_AUTHORIZED)
	data = R.prop(props, R.AUTH_DATA)
	assert data is None or data.startswith(b"e="), data


# -- refusals at the CONNECT ------------------------------------------------------------------

UNKNOWN_METHODS = {
	"sha1": "SCRAM-SHA-1",
	"lower_case": "scram-sha-256",
	"mixed_case": "Scram-Sha-512",
	"plus": "SCRAM-SHA-256-PLUS",
	"trailing_space": "SCRAM-SHA-512 ",
	"plain": "PLAIN",
	"empty": "",
}


@param("method", list(UNKNOWN_METHODS))
def test_scram_unknown_method(t, method):
	"""A method the broker does not know (the names are exact, upper case):
	CONNACK 0x8C, no AUTH, closed [MQTT-4.12.0-1]."""
	b, _ = scram_broker(t, ["alice"])
	name = UNKNOWN_METHODS[method]
	r = begin(t, b, name, Scram(SHA512, "alice", pw("alice")).first())
	refused(r, BAD_METHOD)


# case -> client-first-message (None: no Authentication Data)
BAD_FIRSTS = {
	"no_data": None,
	"empty": b"",
	"gs2_only": b"n,,",
	"no_gs2": b"n=alice,r=abcdef",
	"bad_gs2_flag": b"x,,n=alice,r=abcdef",
	"channel_binding_p": b"p=tls-unique,,n=alice,r=abcdef",
	"mandatory_extension": b"n,,m=ext,n=alice,r=abcdef",
	"authzid_other_user": b"n,a=bob,n=alice,r=abcdef",
	"authzid_no_a": b"n,alice,n=alice,r=abcdef",
	"no_nonce": b"n,,n=alice",
	"empty_nonce": b"n,,n=alice,r=",
	"nonce_first": b"n,,r=abcdef,n=alice",
	"empty_user": b"n,,n=,r=abcdef",
	"bad_escape": b"n,,n=al=2Xice,r=abcdef",
	"raw_equals": b"n,,n=al=ice,r=abcdef",
	"nonce_with_space": b"n,,n=alice,r=abc def",
	"nul_in_user": b"n,,n=al\0ice,r=abcdef",
	"not_utf8_user": b"n,,n=al\xffice,r=abcdef",
}


@param("case", list(BAD_FIRSTS))
def test_scram_malformed_client_first(t, case):
	"""No client-first, or one that is not RFC 5802's (channel binding and
	mandatory extensions refused, an authzid other than the user):
	CONNACK 0x87 at once, no AUTH, closed."""
	b, _ = scram_broker(t, ["alice"])
	r = begin(t, b, SHA512, BAD_FIRSTS[case])
	refused(r, NOT_AUTHORIZED)


@param("mech", [SHA512, SHA256])
def test_scram_connect_username_must_be_the_scram_user(t, mech):
	"""A CONNECT username other than the SCRAM user (even one in the file, with
	its password): CONNACK 0x87, no AUTH."""
	user = USER_OF[mech]
	b, _ = scram_broker(t, ["alice", "sam"])
	other = "sam" if user == "alice" else "alice"
	for kw in ({"username": other, "password": pw(other)}, {"username": user.upper()},
		   {"username": ""}):
		r = begin(t, b, mech, Scram(mech, user, pw(user)).first(), **kw)
		refused(r, NOT_AUTHORIZED)


# -- packets during the exchange ----------------------------------------------------------------

INTERRUPTIONS = {
	"publish_qos0": R.publish("scram/x", b"early", 0),
	"publish_qos1": R.publish("scram/x", b"early", 1, pid=1),
	"subscribe": R.subscribe(1, [("scram/#", 1)]),
	"unsubscribe": R.unsubscribe(1, ["scram/#"]),
	"pingreq": R.pingreq(),
	"second_connect": R.connect("again", 5, properties=auth_props(SHA512, b"n,,n=alice,r=x")),
}


@param("packet", list(INTERRUPTIONS))
def test_scram_other_packet_during_exchange(t, packet):
	"""After the server-first, anything but AUTH or DISCONNECT: CONNACK 0x82,
	closed [MQTT-3.1.2-30]; nothing the packet asked for happens (a QoS 0
	PUBLISH reaches no subscriber)."""
	b, _ = scram_broker(t, ["alice"])
	watcher = login(t, b, SHA512, "alice")
	assert raw_subscribe(watcher, ["scram/#"]) == [1]
	r, _, _ = start(t, b, SHA512, "alice")
	r.send(INTERRUPTIONS[packet])
	refused(r, PROTOCOL_ERROR)
	watcher.send(R.pingreq())
	watcher.expect(R.PINGRESP)  # and no PUBLISH before it


# case -> the AUTH sent instead of AUTH 0x18 SCRAM-SHA-512 with the client-final (d)
BAD_AUTHS = {
	"other_method": lambda d: R.auth(CONTINUE, auth_props(SHA256, d)),
	"unknown_method": lambda d: R.auth(CONTINUE, auth_props("SCRAM-SHA-1", d)),
	"reason_reauthenticate": lambda d: R.auth(REAUTH, auth_props(SHA512, d)),
	"reason_success": lambda d: R.auth(AUTH_SUCCESS, auth_props(SHA512, d)),
	"no_method": lambda d: R.auth(CONTINUE, [(R.AUTH_DATA, d)]),
	"no_properties": lambda d: R.auth(),
}


@param("case", list(BAD_AUTHS))
def test_scram_bad_auth_during_exchange(t, case):
	"""An AUTH with another method, without one, or with a reason other than
	0x18 (the right proof inside): CONNACK 0x82, closed."""
	b, _ = scram_broker(t, ["alice"])
	r, s, sf = start(t, b, SHA512, "alice")
	r.send(BAD_AUTHS[case](s.final(sf)))
	refused(r, PROTOCOL_ERROR)


def test_scram_disconnect_during_exchange(t):
	"""DISCONNECT after the server-first: the broker closes, no CONNACK; the
	client id was never connected (a login with it is a new session)."""
	b, _ = scram_broker(t, ["alice"])
	cid = t.cid("gone")
	r, _, _ = start(t, b, SHA512, "alice", cid=cid)
	r.send(R.disconnect())
	got = r.wait_closed(5)
	assert not got, "the broker answered a DISCONNECT during the exchange: %r" % got
	assert not resume(t, b, SHA512, "alice", cid)[1], "session present 1"


@timeout(30)
def test_scram_connect_timeout_during_exchange(t):
	"""connect_timeout 1: a client that never sends its client-final is closed
	without a CONNACK (bounded wait, far above the timeout); the log says
	why.  One that finishes in time is connected, and stays so past the
	timeout."""
	b, _ = scram_broker(t, ["alice"], extra=["connect_timeout 1"])
	ok = login(t, b, SHA512, "alice")
	cid = t.cid("slow")
	r, _, _ = start(t, b, SHA512, "alice", cid=cid)
	got = r.wait_closed(15)
	assert not got, "packets before the close: %r" % got
	assert b.wait_log(r"127\.0\.0\.1.*connect_timeout"), "no log line about connect_timeout"
	ok.send(R.pingreq())  # past the timeout: the finished login is not affected
	ok.expect(R.PINGRESP)


def test_scram_refusal_leaves_the_session_alone(t):
	"""A failed exchange with a connected client's id neither takes the session
	over nor publishes the CONNECT's will; the successful one does take it
	over (DISCONNECT 0x8E to the old connection)."""
	b, _ = scram_broker(t, ["alice"])
	cid, will_tp = t.cid("held"), t.topic("will")
	watcher = login(t, b, SHA512, "alice")
	assert raw_subscribe(watcher, [will_tp]) == [1]
	held = login(t, b, SHA512, "alice", cid=cid)
	will = {"topic": will_tp, "payload": b"refused client's will"}
	fail(t, b, SHA512, "alice", "wrong", cid=cid, will=will)
	r, _, _ = start(t, b, SHA512, "alice", cid=cid, will=will)
	r.send(R.pingreq())
	refused(r, PROTOCOL_ERROR)
	held.send(R.pingreq())
	held.expect(R.PINGRESP)
	new = login(t, b, SHA512, "alice", cid=cid, will=will)
	disconnected(held, TAKEN_OVER)
	watcher.send(R.pingreq())
	watcher.expect(R.PINGRESP)  # no will before it
	new.abort()  # now the will of an accepted CONNECT is published
	m = watcher.expect(R.PUBLISH).publish()
	assert m["payload"] == b"refused client's will", m


# -- re-authentication ------------------------------------------------------------------------

def reauth(r, mech, user, password=None, scram=None):
	"""AUTH 0x19 with a client-first, AUTH 0x18 read: (Scram, server-first)."""
	s = scram or Scram(mech, user, pw(user) if password is None else password)
	send_auth(r, mech, s.first(), REAUTH)
	return s, expect_auth(r, mech)


@param("mech", [SHA512, SHA256])
@param("transport", ["tcp", "ws"])
def test_scram_reauthenticate(t, mech, transport):
	"""AUTH 0x19 -> AUTH 0x18 (server-first) -> AUTH 0x18 -> AUTH 0x00 with the
	server signature; twice; the connection publishes and receives after
	each, its subscription kept."""
	user = USER_OF[mech]
	b, _ = scram_broker(t, [user])
	r = login(t, b, mech, user, transport=transport)
	tp = t.topic("reauth")
	roundtrip(r, tp, b"before")
	for i in range(2):
		s, sf = reauth(r, mech, user)
		send_auth(r, mech, s.final(sf))
		s.verify(expect_auth(r, mech, AUTH_SUCCESS))
		code, m = publish_back(r, tp, b"after %d" % i, 10 + i)
		assert code == 0 and m["payload"] == b"after %d" % i, (code, m)


# case -> what goes wrong in a re-authentication of alice (SCRAM-SHA-512): the DISCONNECT reason
REAUTH_FAILURES = {
	"wrong_password": NOT_AUTHORIZED,
	"other_user": NOT_AUTHORIZED,  # ivan, with ivan's password
	"unknown_user": NOT_AUTHORIZED,
	"malformed_first": NOT_AUTHORIZED,
	"replayed_final": NOT_AUTHORIZED,
	"other_method": PROTOCOL_ERROR,
	"continue_first": PROTOCOL_ERROR,  # AUTH 0x18 with no exchange going on
	"reauth_again": PROTOCOL_ERROR,  # AUTH 0x19 in the middle of one
}


@param("case", list(REAUTH_FAILURES))
def test_scram_reauthenticate_refused(t, case):
	"""A re-authentication that fails: DISCONNECT 0x87 (a wrong proof, another
	user, a bad client-first, an old client-final) or 0x82 (another method,
	AUTH out of order), then the close; the broker serves others as before."""
	b, _ = scram_broker(t, ["alice", "ivan"])
	r = login(t, b, SHA512, "alice")
	code = REAUTH_FAILURES[case]
	if case == "wrong_password":
		s, sf = reauth(r, SHA512, "alice", "wrong")
		send_auth(r, SHA512, s.final(sf))
	elif case in ("other_user", "unknown_user"):
		name = "ivan" if case == "other_user" else "mallory"
		send_auth(r, SHA512, Scram(SHA512, name, pw("ivan")).first(), REAUTH)
	elif case == "malformed_first":
		send_auth(r, SHA512, b"n,,r=abcdef", REAUTH)
	elif case == "replayed_final":
		s = Scram(SHA512, "alice", pw("alice"))
		_, sf = reauth(r, SHA512, "alice", scram=s)
		old = s.final(sf)
		send_auth(r, SHA512, old)
		expect_auth(r, SHA512, AUTH_SUCCESS)
		reauth(r, SHA512, "alice", scram=Scram(SHA512, "alice", pw("alice"), cnonce=s.cnonce))
		send_auth(r, SHA512, old)
	elif case == "other_method":
		send_auth(r, SHA256, Scram(SHA256, "alice", pw("alice")).first(), REAUTH)
	elif case == "continue_first":
		send_auth(r, SHA512, Scram(SHA512, "alice", pw("alice")).first(), CONTINUE)
	else:
		reauth(r, SHA512, "alice")
		send_auth(r, SHA512, Scram(SHA512, "alice", pw("alice")).first(), REAUTH)
	disconnected(r, code)
	assert logs_in(t, b, SHA512, "alice")


@param("how", ["password", "anonymous"])
def test_scram_auth_without_method_at_connect(t, how):
	"""AUTH (0x19, a valid client-first) on a connection whose CONNECT named no
	method (a password login, or an anonymous one): DISCONNECT 0x8C."""
	b, _ = scram_broker(t, ["alice"], anonymous="true" if how == "anonymous" else "false")
	r = t.raw(b, version=5)
	creds = {"username": "alice", "password": pw("alice")} if how == "password" else {}
	r.send(R.connect(t.cid("plain"), 5, **creds))
	assert r.expect(R.CONNACK).connack()[1] == 0
	send_auth(r, SHA512, Scram(SHA512, "alice", pw("alice")).first(), REAUTH)
	disconnected(r, BAD_METHOD)


# -- what the SCRAM user may do ------------------------------------------------------------------

SCRAM_ACL = """user alice
topic readwrite scram/alice/#
user sam
topic readwrite scram/sam/#
pattern readwrite scram/user/%u/#
"""


@param("mech", [SHA512, SHA256])
def test_scram_acl_applies_to_the_scram_user(t, mech):
	"""With an acl_file, the SCRAM user (no username in the CONNECT) gets its
	own section and %u: its topics are granted (SUBACK 1, PUBACK 0, the
	message back), the other user's denied (SUBACK 0x87, PUBACK 0x87)."""
	user = USER_OF[mech]
	other = "sam" if user == "alice" else "alice"
	b, _ = scram_broker(t, ["alice", "sam"])
	write_acl(os.path.join(b.dir, "acl"), SCRAM_ACL)
	b.extra.append("acl_file %s" % os.path.join(b.dir, "acl"))
	b.restart()
	r = login(t, b, mech, user)
	mine, pattern = "scram/%s/x" % user, "scram/user/%s/y" % user
	assert raw_subscribe(r, ["scram/%s/#" % user, "scram/user/%s/#" % user,
				 "scram/%s/#" % other, "scram/user/%s/#" % other]) == [1, 1, 0x87, 0x87]
	for tp in (mine, pattern):
		code, m = publish_back(r, tp, b"granted", 1)
		assert code == 0 and m["topic"] == tp, (tp, code, m)
	for tp in ("scram/%s/x" % other, "scram/user/%s/y" % other, "scram/anyone"):
		assert raw_publish(r, tp, b"denied", 1, 2) == NOT_AUTHORIZED, tp


# -- SIGHUP --------------------------------------------------------------------------------------

@timeout(30)
@param("mech", [SHA512, SHA256])
def test_scram_sighup_adds_user(t, mech):
	"""dave added to the password file (mosquitto_passwd -b for SCRAM-SHA-512,
	sluice-passwd -H sha256-pbkdf2 -b for -256): refused (a made-up salt)
	until SIGHUP; then his entry's salt is in the server-first and he logs
	in; a SCRAM connection open across the reload goes on."""
	user = USER_OF[mech]
	b, path = scram_broker(t, [user])
	kept = login(t, b, mech, user)
	dave = "dave-scram-pw"
	passwd(path, "dave", dave, tool=tool_of("mosquitto_passwd" if mech == SHA512
						 else "sluice-passwd"))
	fail(t, b, mech, "dave", dave)  # the file is read at start-up and at SIGHUP only
	hup(b)
	wait_until(lambda: logs_in(t, b, mech, "dave", dave), 5, "dave logs in after SIGHUP")
	r, s, sf = start(t, b, mech, "dave", dave)
	assert server_first_fields(sf)[1:] == entry(path, "dave")[1:], sf
	send_auth(r, mech, s.final(sf))
	accepted(r, s)
	roundtrip(kept, t.topic("hup"))


# -- the log --------------------------------------------------------------------------------------

def test_scram_refusals_logged_without_secrets(t):
	"""Each kind of refusal leaves a log line with the client id and 127.0.0.1;
	no password, proof or client-final, refused or accepted, reaches the log
	(nor the salted password, in hex or base64)."""
	b, _ = scram_broker(t, ["alice", "sam"])
	secrets = []

	def note(s, sf, final):
		"""What of the exchange (s, its server-first sf and final) must stay out of the log."""
		proof = final[final.rindex(b",p=") + 3:].decode()
		_, salt, iterations = server_first_fields(sf)
		salted = hashlib.pbkdf2_hmac(s.hash, s.password.encode(), salt, iterations)
		secrets.extend([final.decode(), proof, base64.b64decode(proof).hex(), s.password,
				salted.hex(), b64(salted)])

	cases = []
	for what in ("wrong_password", "unknown_user", "replay", "binding", "malformed_first",
		     "unknown_method", "publish", "bad_auth", "username", "accepted"):
		cid = t.cid(what[:5])
		off = b.log_size()
		if what in ("wrong_password", "unknown_user", "replay", "binding"):
			user = "mallory" if what == "unknown_user" else "alice"
			password = pw("alice") + ("x" if what == "wrong_password" else "")
			r, s, sf = start(t, b, SHA512, user, password, cid=cid)
			final = s.final(sf, nonce=s.cnonce + "x" if what == "replay" else None,
					channel="eSws" if what == "binding" else None)
			note(s, sf, final)
			send_auth(r, SHA512, final)
			refused(r, NOT_AUTHORIZED)
		elif what == "malformed_first":
			refused(begin(t, b, SHA512, b"n,,n=alice", cid=cid))
		elif what == "unknown_method":
			refused(begin(t, b, "SCRAM-SHA-1", b"n,,n=alice,r=abcdef", cid=cid), BAD_METHOD)
		elif what == "publish":
			r, _, _ = start(t, b, SHA256, "sam", cid=cid)
			r.send(R.publish("scram/x", b"early"))
			refused(r, PROTOCOL_ERROR)
		elif what == "bad_auth":
			r, s, sf = start(t, b, SHA256, "sam", cid=cid)
			final = s.final(sf)
			note(s, sf, final)
			r.send(R.auth(REAUTH, auth_props(SHA256, final)))
			refused(r, PROTOCOL_ERROR)
		elif what == "username":
			refused(begin(t, b, SHA256, Scram(SHA256, "sam", "").first(), cid=cid,
				      username="alice"))
		else:
			r, s, sf = start(t, b, SHA256, "sam", cid=cid)
			final = s.final(sf)
			note(s, sf, final)
			send_auth(r, SHA256, final)
			accepted(r, s)
		cases.append((what, cid, off))
	bad = []
	for what, cid, off in cases:
		c = re.escape(cid)
		if not b.wait_log(r"%s.*127\.0\.0\.1|127\.0\.0\.1.*%s" % (c, c), since=off):
			bad.append("%s: no log line with client id %s and 127.0.0.1" % (what, cid))
	log = b.log_text()
	for secret in secrets:
		if secret.lower() in log.lower():
			bad.append("the log holds a secret: %r" % secret)
	assert not bad, "\n".join(bad) + "\n" + b.log_text()
