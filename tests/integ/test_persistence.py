"""Persistence (issue 3): what survives a restart (SIGTERM then start) and a
crash (SIGKILL then start) of a broker with its SQLite store, what does not,
and how the broker treats a store it must not use.

Every test runs a private broker; Broker.restart()/kill9()+start() keep its
directory, so the default database <dir>/data/sluice.db survives.  The raw
client (rawmqtt) is used where a flag (DUP, session present) or a reason code
is the subject; paho where only the messages matter.

Helpers here that the harness lacks: bounce() (stop or kill, then start on
the same ports), start_must_fail() (a start-up that is expected to stop),
RawPub (windowed raw QoS 1 publishing that returns every PUBACK reason code).
"""

import hashlib
import os
import shutil
import sqlite3
import time

import brokerlib
import rawmqtt as R
from clients import connect_props
from harness import Skip, param, timeout

HOWS = ["sigterm", "sigkill"]
EXPIRY = 300  # session expiry of "persistent" MQTT 5 sessions in these tests


# -- helpers -------------------------------------------------------------------------

def only_sluice():
	if brokerlib.is_mosquitto():
		raise Skip("sluice persistence configuration")


def pbroker(t, extra=None):
	only_sluice()
	return t.fresh_broker(list(extra or []))


def bounce(b, how):
	"""Stop (SIGTERM, or SIGKILL for a crash) and start again on the same ports."""
	if how == "sigkill":
		b.kill9()
	else:
		rc = b.stop()
		assert rc == 0, "broker exit status %r after SIGTERM" % rc
	deadline = time.monotonic() + 5
	while brokerlib.port_accepts(b.port) and time.monotonic() < deadline:
		time.sleep(0.02)
	b.start()
	return b


def db_path(b, rel="data/sluice.db"):
	return os.path.join(b.dir, rel)


def psub(t, b, cid, version, **kw):
	"""paho client with a session that outlives the connection."""
	if version == 5:
		return t.client(b, client_id=cid, version=5, clean=False,
				properties=connect_props(SessionExpiryInterval=EXPIRY), **kw)
	return t.client(b, client_id=cid, version=version, clean=False, **kw)


def rsession(t, b, cid, version, expiry=EXPIRY, will=None):
	"""Raw client connected with clean session 0 / clean start 0 + expiry.
	Returns (client, session_present)."""
	r = t.raw(b, version=version)
	pr = [(R.SESSION_EXPIRY, expiry)] if version == 5 and expiry else None
	sp, _, _ = r.handshake(cid, clean=False, properties=pr, will=will)
	return r, sp


def rsubscribe(r, flt, qos, pid=1):
	r.send(R.subscribe(pid, [(flt, qos)], version=r.version))
	p = r.expect(R.SUBACK)
	_, codes = p.suback()
	assert codes == [qos], "SUBACK %r" % codes


def consume(r, version, n, timeout=5.0):
	"""Reads and fully acknowledges PUBLISHes (PUBACK, or PUBREC/PUBCOMP) until n
	arrived and every PUBREL was answered; returns their payloads."""
	got, open_rel = [], set()
	deadline = time.monotonic() + timeout
	while len(got) < n or open_rel:
		p = r.recv(max(0.1, deadline - time.monotonic()))
		if p.type == R.PUBLISH:
			d = p.publish()
			got.append(d["payload"])
			if d["qos"] == 1:
				r.send(R.ack(R.PUBACK, d["pid"], version))
			elif d["qos"] == 2:
				open_rel.add(d["pid"])
				r.send(R.ack(R.PUBREC, d["pid"], version))
		elif p.type == R.PUBREL:
			open_rel.discard(p.pid())
			r.send(R.ack(R.PUBCOMP, p.pid(), version))
		else:
			raise AssertionError("unexpected %r" % p)
	return got


def payloads(msgs):
	return [m.payload for m in msgs]


def sha256(path):
	with open(path, "rb") as f:
		return hashlib.sha256(f.read()).hexdigest()


def side_files(path):
	return [s for s in ("-wal", "-shm", "-journal") if os.path.exists(path + s)]


class RawPub:
	"""A raw QoS 1 publisher that keeps at most `window` PUBLISHes unacknowledged
	(below the broker's Receive Maximum) and records every PUBACK reason code."""

	def __init__(self, r, window=8):
		self.r = r
		self.window = window
		self.pid = 0
		self.reasons = {}  # packet id -> reason code

	def publish_many(self, topic, bodies, timeout=10.0):
		"""Returns the list of reason codes, in the order of bodies."""
		pids = []
		pending = set()
		deadline = time.monotonic() + timeout
		i = 0
		while i < len(bodies) or pending:
			while i < len(bodies) and len(pending) < self.window:
				self.pid = self.pid % 65535 + 1
				self.r.send(R.publish(topic, bodies[i], 1, pid=self.pid,
						      version=self.r.version))
				pids.append(self.pid)
				pending.add(self.pid)
				i += 1
			p = self.r.expect(R.PUBACK, max(0.1, deadline - time.monotonic()))
			assert p.pid() in pending, "PUBACK for unknown id %d" % p.pid()
			pending.discard(p.pid())
			self.reasons[p.pid()] = p.reason()
		return [self.reasons.pop(p) for p in pids]


def publish_qos2(r, topic, bodies, first_pid=1000):
	"""Publishes each body at QoS 2, one complete exchange after another."""
	for i, body in enumerate(bodies):
		pid = first_pid + i
		r.send(R.publish(topic, body, 2, pid=pid, version=r.version))
		p = r.expect(R.PUBREC)
		assert p.pid() == pid and p.reason() == 0, p
		r.send(R.ack(R.PUBREL, pid, r.version))
		p = r.expect(R.PUBCOMP)
		assert p.pid() == pid, p


def start_must_fail(t, extra):
	"""A broker (not started) whose start-up must stop: see expect_start_failure()."""
	only_sluice()
	b = brokerlib.Broker(extra, name=t.short[:30])
	t.brokers.append((b, 0, True))
	return b


def expect_start_failure(b):
	rc = brokerlib.start_failure(b, "the broker started although its store is unusable")
	return rc, b.log_text()


# -- sessions ---------------------------------------------------------------------------

@param("version", [4, 5])
@param("how", HOWS)
def test_persist_session_resumes_after_restart(t, version, how):
	"""Session present 1, subscription in place, queued QoS 1/2 messages delivered
	in order, after SIGTERM+start and after SIGKILL+start."""
	b = pbroker(t)
	tp = t.topic("s")
	cid = t.cid("ps")
	c = psub(t, b, cid, version)
	c.subscribe(tp, 2)
	c.disconnect()
	pub = t.client(b, version=version)
	for i in range(5):
		pub.publish(tp, b"q%d" % i, 1 + i % 2)
	pub.disconnect()
	bounce(b, how)
	c = psub(t, b, cid, version)
	assert c.session_present, "session present 0 after %s restart" % how
	got = payloads(c.wait_messages(5))
	# order per topic is guaranteed per QoS [MQTT-4.6.0-6]; check both subsequences
	assert [g for g in got if g in (b"q0", b"q2", b"q4")] == [b"q0", b"q2", b"q4"], got
	assert sorted(got) == [b"q0", b"q1", b"q2", b"q3", b"q4"], got
	c.expect_no_message(0.5)
	# the subscription was restored: a new message arrives without resubscribing
	pub = t.client(b, version=version)
	pub.publish(tp, b"live", 1)
	assert c.wait_message().payload == b"live"


@param("version", [4, 5])
def test_persist_clean_sessions_not_restored(t, version):
	"""3.1.1 clean session 1 / 5.0 session expiry 0: nothing survives a restart."""
	b = pbroker(t)
	tp = t.topic("c")
	cid = t.cid("cl")
	c = t.client(b, client_id=cid, version=version, clean=True)
	c.subscribe(tp, 1)
	c.close_abruptly()  # connected at the kill
	bounce(b, "sigkill")
	c = psub(t, b, cid, version)
	assert not c.session_present, "a clean session was restored"
	pub = t.client(b, version=version)
	pub.publish(tp, b"nobody", 1)
	c.expect_no_message(0.7)


@param("version", [4, 5])
@param("qos", [1, 2])
def test_persist_unacked_redelivered_with_dup_after_sigkill(t, version, qos):
	"""A message sent to a subscriber and not acknowledged (no PUBACK / PUBREC)
	before the crash is resent with DUP=1 and the same packet id
	[MQTT-4.4.0-1], [MQTT-3.3.1-1]; once, in order with the queued ones."""
	b = pbroker(t)
	tp = t.topic("d")
	cid = t.cid("dup")
	r, _ = rsession(t, b, cid, version)
	rsubscribe(r, tp, qos)
	pub = t.client(b, version=version)
	pub.publish(tp, b"first", qos)
	p = r.expect(R.PUBLISH).publish()
	assert p["payload"] == b"first" and not p["dup"]
	first_pid = p["pid"]
	r.close()  # the subscriber goes away without acknowledging
	pub.publish(tp, b"second", qos)  # queued behind it
	bounce(b, "sigkill")
	r, sp = rsession(t, b, cid, version)
	assert sp == 1
	p = r.expect(R.PUBLISH).publish()
	assert p["payload"] == b"first", p
	assert p["dup"], "redelivery after restart without DUP"
	assert p["pid"] == first_pid, "redelivery with packet id %d, first sent as %d" % (
		p["pid"], first_pid)
	assert p["qos"] == qos
	ack = R.PUBACK if qos == 1 else R.PUBREC
	r.send(R.ack(ack, p["pid"], version))
	# then "second" (its PUBLISH and our PUBREL may cross: order between a
	# PUBREL and the next PUBLISH is not specified)
	got, rels = [], []
	while True:
		n = r.recv_or_none(0.7)
		if n is None:
			break
		if n.type == R.PUBLISH:
			q = n.publish()
			got.append(q["payload"])
			r.send(R.ack(ack, q["pid"], version))
		elif n.type == R.PUBREL and qos == 2:
			rels.append(n.pid())
			r.send(R.ack(R.PUBCOMP, n.pid(), version))
		else:
			raise AssertionError("unexpected %r" % n)
	assert got == [b"second"], "after the redelivery: %r" % got
	if qos == 2:
		assert len(rels) == 2 and rels[0] == first_pid, rels


@param("version", [4, 5])
@param("qos", [1, 2])
def test_persist_sent_publish_resent_with_same_id_after_sigkill_disk_queue(t, version, qos):
	"""A backlog partly on disk (max_queued_in_memory 16) goes out to the
	subscriber, which is killed at once, acknowledging nothing.  After the
	restart every PUBLISH it was sent comes again with DUP=1 and its original
	packet id [MQTT-4.4.0-1], [MQTT-3.3.1-1]: a packet id must be stored before
	the PUBLISH goes out.  Otherwise, at QoS 2, a receiver keeping the id until
	PUBREL (method B) gets the message twice under two ids, and the stale id
	later swallows another message that reuses it."""
	b = pbroker(t, ["max_queued_in_memory 16"])
	tp = t.topic("bl")
	cid = t.cid("sub")
	r, _ = rsession(t, b, cid, version)
	rsubscribe(r, tp, qos)
	# move the broker's packet ids on, so that ids handed out afresh after the
	# restart (from 1) differ from the ones used before it
	pub = RawPub(t.raw_connected(b, version=5))
	assert pub.publish_many(tp, [b"warm%d" % i for i in range(5)]) == [0] * 5
	got = consume(r, version, 5)
	assert got == [b"warm%d" % i for i in range(5)], got
	r.close()
	bodies = [b"m%03d" % i for i in range(60)]
	if qos == 1:
		assert pub.publish_many(tp, bodies) == [0] * 60
	else:
		# QoS 2 deliveries need QoS 2 messages: the delivery QoS is the
		# smaller of the message's and the subscription's.
		publish_qos2(pub.r, tp, bodies)
	r, sp = rsession(t, b, cid, version)
	assert sp == 1
	first = [r.expect(R.PUBLISH).publish() for _ in range(20)]  # Receive Maximum 20
	assert [f["payload"] for f in first] == bodies[:20]
	bounce(b, "sigkill")  # at once
	r, sp = rsession(t, b, cid, version)
	assert sp == 1
	again = [r.expect(R.PUBLISH).publish() for _ in range(20)]
	assert [a["payload"] for a in again] == bodies[:20], "not redelivered in order"
	if qos == 1:
		# sluice stores a QoS 1 delivery's packet id lazily (the send does not
		# wait for the disk): one sent in the very instant before the crash
		# may come again under a new id without DUP.  QoS 1 allows that (at
		# least once); every message must still come again, in order.
		return
	bad = ["%s: id %d -> %s id %d DUP=%d" % (f["payload"].decode(), f["pid"],
						   a["payload"].decode(), a["pid"], a["dup"])
	       for f, a in zip(first, again)
	       if (a["payload"], a["pid"], a["dup"]) != (f["payload"], f["pid"], True)]
	assert not bad, "resent after the crash not as the same PUBLISH with DUP: %s" % bad


@param("version", [4, 5])
def test_persist_qos2_behind_qos1_resent_with_same_id_after_sigkill(t, version):
	"""A QoS 2 delivery queued behind QoS 1 ones (mixed QoS in one queue, as a
	transaction's commit or a backlog makes) must have its packet id stored
	before it goes out, like one at the head of the queue: after a SIGKILL in
	the instant it was sent it comes again with DUP=1 and the same id, never
	as a new message under another id [MQTT-4.4.0-1]."""
	b = pbroker(t)
	tp = t.topic("mix")
	cid = t.cid("sub")
	r, _ = rsession(t, b, cid, version)
	rsubscribe(r, tp + "/#", 2)
	pub = t.raw_connected(b, version=5)
	for rnd in range(4):
		r.close()
		bodies = [b"r%d-q1a" % rnd, b"r%d-q1b" % rnd, b"r%d-q2" % rnd]
		for pid, body in enumerate(bodies[:2], 1):
			pub.send(R.publish(tp + "/a", body, 1, pid=pid, version=5))
			pub.expect(R.PUBACK)
		publish_qos2(pub, tp + "/b", bodies[2:], first_pid=100 + rnd)
		r, _ = rsession(t, b, cid, version)
		while True:  # the QoS 1 ones, acknowledged; the QoS 2 one, not
			d = r.expect(R.PUBLISH).publish()
			if d["qos"] == 1:
				r.send(R.ack(R.PUBACK, d["pid"], version))
				continue
			break
		assert d["payload"] == bodies[2], d
		r.close()
		pub.close()
		bounce(b, "sigkill")  # the moment the QoS 2 PUBLISH arrived
		pub = t.raw_connected(b, version=5)
		r, sp = rsession(t, b, cid, version)
		assert sp == 1
		while True:  # a QoS 1 one whose PUBACK was not stored yet may come again
			e = r.expect(R.PUBLISH).publish()
			if e["qos"] == 1:
				r.send(R.ack(R.PUBACK, e["pid"], version))
				continue
			break
		assert (e["payload"], e["pid"], e["dup"]) == (d["payload"], d["pid"], True), (
			"round %d: sent as id %d, after the crash %r id %d DUP=%d" % (
				rnd, d["pid"], e["payload"], e["pid"], e["dup"]))
		r.send(R.ack(R.PUBREC, e["pid"], version))
		p = r.expect(R.PUBREL)
		r.send(R.ack(R.PUBCOMP, p.pid(), version))
		assert r.recv_or_none(0.2) is None


@param("version", [4, 5])
def test_persist_qos2_publisher_completes_after_sigkill_exactly_once(t, version):
	"""Publisher side of QoS 2 across a crash: PUBLISH -> PUBREC -> kill -> the
	publisher resends PUBREL and gets PUBCOMP; a second exchange resends the
	PUBLISH with DUP and the same id (as if the PUBREC had been lost) and gets
	PUBREC again.  The subscriber gets each message exactly once."""
	b = pbroker(t)
	tp = t.topic("q2")
	scid = t.cid("sub")
	sub, _ = rsession(t, b, scid, version)
	rsubscribe(sub, tp, 2)
	sub.close()  # offline: the messages wait in its session
	pcid = t.cid("pub")
	pr, _ = rsession(t, b, pcid, version)
	pr.send(R.publish(tp, b"A", 2, pid=7, version=version))
	assert pr.expect(R.PUBREC).pid() == 7
	pr.send(R.publish(tp, b"B", 2, pid=8, version=version))
	assert pr.expect(R.PUBREC).pid() == 8
	bounce(b, "sigkill")
	pr, sp = rsession(t, b, pcid, version)
	assert sp == 1, "publisher's session (with its QoS 2 state) lost"
	pr.send(R.ack(R.PUBREL, 7, version))
	p = pr.expect(R.PUBCOMP)
	assert p.pid() == 7 and p.reason() == 0, p
	# id 8: the client acts as if it had not seen the PUBREC
	pr.send(R.publish(tp, b"B", 2, dup=True, pid=8, version=version))
	p = pr.expect(R.PUBREC)
	assert p.pid() == 8 and p.reason() == 0, p
	pr.send(R.ack(R.PUBREL, 8, version))
	assert pr.expect(R.PUBCOMP).pid() == 8
	sub, sp = rsession(t, b, scid, version)
	assert sp == 1
	got = []
	while True:
		p = sub.recv_or_none(1.0)
		if p is None:
			break
		if p.type == R.PUBLISH:
			d = p.publish()
			got.append(d["payload"])
			sub.send(R.ack(R.PUBREC, d["pid"], version))
		elif p.type == R.PUBREL:
			sub.send(R.ack(R.PUBCOMP, p.pid(), version))
	assert got == [b"A", b"B"], "subscriber got %r, expected A and B once each" % got


@param("version", [4, 5])
def test_persist_qos2_subscriber_pubrel_resent_after_sigkill(t, version):
	"""Subscriber side of QoS 2 across a crash: PUBLISH -> PUBREC -> PUBREL, the
	broker killed before the PUBCOMP.  After the restart the broker resends the
	PUBREL, never the PUBLISH: once it has sent the PUBREL it must not resend
	the PUBLISH (4.3.3, [MQTT-4.3.3-5] in 5.0), since a receiver using method B
	forgot the packet id on the PUBREL and would take the PUBLISH as a new
	message.  So the PUBREL may go out only once its state is stored.  Repeated
	a few times: the window is short."""
	b = pbroker(t)
	tp = t.topic("q2s")
	cid = t.cid("sub")
	r, _ = rsession(t, b, cid, version)
	rsubscribe(r, tp, 2)
	pub = t.client(b, version=version)
	delivered = []
	for i in range(4):
		body = b"once-%d" % i
		pub.publish(tp, body, 2)
		p = r.expect(R.PUBLISH).publish()
		pid = p["pid"]
		delivered.append(p["payload"])  # method B: deliver on PUBLISH, remember pid
		r.send(R.ack(R.PUBREC, pid, version))
		assert r.expect(R.PUBREL).pid() == pid  # method B: pid forgotten here
		bounce(b, "sigkill")  # before our PUBCOMP
		r, sp = rsession(t, b, cid, version)
		assert sp == 1
		saw = []
		while True:
			n = r.recv_or_none(0.5)
			if n is None:
				break
			saw.append(n.name)
			if n.type == R.PUBLISH:
				d = n.publish()
				delivered.append(d["payload"])
				r.send(R.ack(R.PUBREC, d["pid"], version))
			elif n.type == R.PUBREL:
				assert n.pid() == pid, n
				r.send(R.ack(R.PUBCOMP, pid, version))
		assert saw == ["PUBREL"], (
			"round %d: after a PUBREL and a crash the broker sent %r (expected "
			"only the PUBREL again); delivered %r" % (i, saw, delivered))
		pub = t.client(b, version=version)
	assert delivered == [b"once-%d" % i for i in range(4)], delivered
	# settled: a further restart brings nothing back
	bounce(b, "sigterm")
	r, sp = rsession(t, b, cid, version)
	assert sp == 1
	assert r.recv_or_none(0.7) is None, "a completed exchange came back"


def test_persist_subscribe_and_publish_acked_just_before_sigkill_survive(t):
	"""SUBACK only after the subscription is stored, PUBACK/PUBREC only after
	the message is stored: killing the broker the moment the ack arrives
	loses neither."""
	b = pbroker(t)
	tp = t.topic("ack")
	cid = t.cid("sub")
	r, _ = rsession(t, b, cid, 5)
	rsubscribe(r, tp, 2)
	bounce(b, "sigkill")  # right after the SUBACK
	r, sp = rsession(t, b, cid, 5)
	assert sp == 1
	r.close()
	p = t.raw_connected(b, version=5)
	p.send(R.publish(tp, b"one", 1, pid=1))
	assert p.expect(R.PUBACK).reason() == 0
	bounce(b, "sigkill")  # right after the PUBACK
	p = t.raw_connected(b, version=5)
	p.send(R.publish(tp, b"two", 2, pid=2))
	assert p.expect(R.PUBREC).reason() == 0
	bounce(b, "sigkill")  # right after the PUBREC: "two" must survive too
	c = psub(t, b, cid, 5)
	assert c.session_present
	got = payloads(c.wait_messages(2))
	assert sorted(got) == [b"one", b"two"], got
	c.expect_no_message(0.5)


# -- retained messages -----------------------------------------------------------------------

@param("how", HOWS)
def test_persist_retained_survive_and_cleared_stays_cleared(t, how):
	b = pbroker(t)
	base = t.topic("r")
	pub = t.client(b, version=5)
	pub.publish(base + "/kept", b"K", 1, retain=True)
	pub.publish(base + "/cleared", b"C", 1, retain=True)
	pub.publish(base + "/cleared", b"", 1, retain=True)
	pub.publish(base + "/replaced", b"old", 1, retain=True)
	pub.publish(base + "/replaced", b"new", 2, retain=True)
	pub.disconnect()
	bounce(b, how)
	c = t.client(b, version=5)
	c.subscribe(base + "/#", 1)
	got = sorted((m.topic, m.payload, m.retain) for m in c.wait_messages(2))
	assert got == [(base + "/kept", b"K", True), (base + "/replaced", b"new", True)], got
	c.expect_no_message(0.5)


# -- session expiry across downtime ------------------------------------------------------

@param("how", ["sigterm-offline", "sigkill-connected"])
def test_persist_session_expiry_counts_downtime(t, how):
	"""A v5 session with expiry 2 s: its expiry runs while the broker is down
	(from the disconnect, or from the kill when it was connected); a session
	with a long expiry in the same store is still there (control)."""
	b = pbroker(t)
	tp = t.topic("e")
	short, long_ = t.cid("short"), t.cid("long")
	s = t.client(b, client_id=short, version=5, clean=False,
		     properties=connect_props(SessionExpiryInterval=2))
	s.subscribe(tp, 1)
	l = psub(t, b, long_, 5)
	l.subscribe(tp, 1)
	l.disconnect()
	if how == "sigterm-offline":
		s.disconnect()
	pub = t.client(b, version=5)
	pub.publish(tp, b"queued", 1)
	pub.disconnect()
	if how == "sigterm-offline":
		b.stop()
	else:
		b.kill9()
		s.close_abruptly()
	time.sleep(3.2)  # the subject: the expiry (2 s) passes while the broker is down
	b.start()
	s = t.client(b, client_id=short, version=5, clean=False,
		     properties=connect_props(SessionExpiryInterval=2))
	assert not s.session_present, "session outlived its expiry while the broker was down"
	s.expect_no_message(0.5)  # its queued message went with it
	l = psub(t, b, long_, 5)
	assert l.session_present
	assert l.wait_message().payload == b"queued"


# -- wills ------------------------------------------------------------------------------

@param("case", ["v311-delay0", "v5-delay0", "v5-delay3"])
@timeout(25)
def test_persist_will_of_connected_session_published_after_sigkill(t, case):
	"""Wills of persistent sessions connected at the kill are published after the
	restart (at once, or after the will delay counted from the kill); the will
	of a session that disconnected normally is not."""
	b = pbroker(t)
	version = 4 if case.startswith("v311") else 5
	delay = int(case[-1])
	wt = t.topic("will")
	wcid = t.cid("watch")
	w = psub(t, b, wcid, 5)
	w.subscribe(wt + "/#", 1)
	wprops = [(R.WILL_DELAY, delay)] if version == 5 else None
	victim, _ = rsession(t, b, t.cid("victim"), version,
			     will={"topic": wt + "/victim", "payload": b"died", "qos": 1,
				   "properties": wprops})
	polite, _ = rsession(t, b, t.cid("polite"), version,
			     will={"topic": wt + "/polite", "payload": b"wrong", "qos": 1,
				   "properties": wprops})
	polite.send(R.disconnect(version=version))
	polite.wait_closed()  # the broker has processed the DISCONNECT
	# Barrier: a SUBACK comes after its subscription is committed, and commits
	# are in order, so the end of the polite session is on disk too.
	w.subscribe(wt + "/barrier", 1)
	w.disconnect()
	killed = time.monotonic()
	b.kill9()
	victim.close()
	b.start()
	w = psub(t, b, wcid, 5)
	assert w.session_present
	m = w.wait_message(delay + 5, "(the will)")
	arrived = time.monotonic() - killed
	assert (m.topic, m.payload) == (wt + "/victim", b"died"), (m.topic, m.payload)
	if delay:
		# the broker knows the kill time to its 1 s heartbeat
		assert arrived >= delay - 1.3, (
			"will with delay %d s published %.2fs after the kill" % (delay, arrived))
	w.expect_no_message(1.0)


# -- disk-backed queues --------------------------------------------------------------------

@timeout(40)
def test_persist_disk_queue_500_in_order_across_sigkill(t):
	"""max_queued_in_memory 16: 500 QoS 1 messages to an offline persistent
	subscriber (250, crash, 250) all arrive once and in order."""
	b = pbroker(t, ["max_queued_in_memory 16"])
	tp = t.topic("dq")
	cid = t.cid("sub")
	c = psub(t, b, cid, 5)
	c.subscribe(tp, 1)
	c.disconnect()
	bodies = [b"m%04d" % i for i in range(500)]
	p = RawPub(t.raw_connected(b, version=5))
	assert p.publish_many(tp, bodies[:250]) == [0] * 250
	bounce(b, "sigkill")
	p = RawPub(t.raw_connected(b, version=5))
	assert p.publish_many(tp, bodies[250:]) == [0] * 250
	c = psub(t, b, cid, 5)
	assert c.session_present
	got = payloads(c.wait_messages(500, 20))
	assert got == bodies, "first difference at %d" % next(
		i for i, (x, y) in enumerate(zip(got, bodies)) if x != y)
	c.expect_no_message(0.5)


@timeout(30)
def test_persist_disk_queue_limit_quota_exceeded(t):
	"""max_queued_messages limits memory + disk: over it an MQTT 5 publisher gets
	PUBACK 0x97, a drop is logged, and the subscriber gets exactly the rest."""
	b = pbroker(t, ["max_queued_in_memory 16", "max_queued_messages 100"])
	tp = t.topic("lim")
	cid = t.cid("sub")
	c = psub(t, b, cid, 5)
	c.subscribe(tp, 1)
	c.disconnect()
	bodies = [b"m%03d" % i for i in range(130)]
	p = RawPub(t.raw_connected(b, version=5), window=1)
	codes = p.publish_many(tp, bodies)
	assert codes[:100] == [0] * 100, codes[:100]
	assert codes[100:] == [0x97] * 30, codes[100:]
	assert b.wait_log(r"(?i)(drop|queue full)", 3), "no log line for the dropped messages"
	c = psub(t, b, cid, 5)
	got = payloads(c.wait_messages(100, 15))
	assert got == bodies[:100]
	c.expect_no_message(0.5)


# -- a store the broker must not use -------------------------------------------------------

def make_valid_db(t):
	"""Run a broker with a persistent session and a retained message; stop it.
	Returns (broker, path of its database)."""
	b = pbroker(t)
	c = psub(t, b, t.cid("seed"), 5)
	c.subscribe(t.topic("seed"), 1)
	c.publish(t.topic("seed/r"), b"x" * 200, 1, retain=True)
	c.disconnect()
	assert b.stop() == 0
	path = db_path(b)
	assert os.path.getsize(path) > 4096 and not side_files(path), (
		os.path.getsize(path), side_files(path))
	return b, path


def assert_refused_untouched(b, path, words):
	"""Broker b (not started) on `path` must stop at start-up, name the file,
	exit non-zero, and leave the file (and its neighbourhood) as it was."""
	before = sha256(path) if os.path.isfile(path) else None
	sides = side_files(path)
	b.extra.append("persistence_file " + path)
	rc, log = expect_start_failure(b)
	assert rc not in (0, None), "exit status %r" % rc
	lines = [l for l in log.splitlines() if path in l]
	assert lines, "no log line names %s:\n%s" % (path, log[-1500:])
	assert any(any(w in l.lower() for w in words) for l in lines), (
		"no line says %s: %r" % ("/".join(words), lines))
	if before is not None:
		assert os.path.isfile(path), "the database was removed"
		assert sha256(path) == before, "the database was modified"
	assert side_files(path) == sides, "new files next to it: %r" % side_files(path)
	return lines


def test_persist_corrupt_database_refused_untouched(t):
	_, good = make_valid_db(t)
	b = start_must_fail(t, [])
	path = os.path.join(b.dir, "corrupt.db")
	shutil.copyfile(good, path)
	size = os.path.getsize(path)
	with open(path, "r+b") as f:  # header kept, every page after the first garbage
		f.seek(4096)
		f.write(bytes((i * 131 + 7) & 0xFF for i in range(size - 4096)))
	assert_refused_untouched(b, path, ["corrupt", "cannot", "not a database", "malformed"])


def test_persist_non_database_file_refused_untouched(t):
	b = start_must_fail(t, [])
	path = os.path.join(b.dir, "sluice.db")
	with open(path, "wb") as f:
		f.write(b"this is not an SQLite database, it is a shopping list\n" * 200)
	assert_refused_untouched(b, path, ["not a database", "cannot", "corrupt"])


def test_persist_newer_schema_refused_untouched(t):
	_, good = make_valid_db(t)
	b = start_must_fail(t, [])
	path = os.path.join(b.dir, "newer.db")
	shutil.copyfile(good, path)
	con = sqlite3.connect(path)
	con.execute("PRAGMA user_version = 99")
	con.commit()
	con.close()
	assert not side_files(path)
	lines = assert_refused_untouched(b, path, ["newer"])
	assert any("99" in l for l in lines), lines


def test_persist_directory_as_database_refused(t):
	b = start_must_fail(t, [])
	d = os.path.join(b.dir, "adir.db")
	os.mkdir(d)
	assert_refused_untouched(b, d, ["cannot", "directory", "unable"])
	assert os.listdir(d) == [], "files were created inside %s: %r" % (d, os.listdir(d))


def test_persist_second_broker_on_same_database_refused(t):
	b = pbroker(t, ["persistence_file state.db"])
	path = db_path(b, "state.db")
	c = psub(t, b, t.cid("p"), 5)
	c.subscribe(t.topic("x"), 1)
	b2 = start_must_fail(t, ["persistence_file " + path])
	rc, log = expect_start_failure(b2)
	assert rc not in (0, None), rc
	assert any(path in l and "in use" in l for l in log.splitlines()), log[-1500:]
	# the first broker is unharmed and still stores
	t.check_alive(b)
	c.disconnect()
	bounce(b, "sigkill")
	c = psub(t, b, c.client_id, 5)
	assert c.session_present


# -- a full store ---------------------------------------------------------------------------

@timeout(40)
def test_persist_store_full_refuses_keeps_serving_loses_nothing_acked(t):
	"""persistence_max_bytes 64k and an offline persistent subscriber: once the
	store is full an MQTT 5 QoS 1 publisher gets PUBACK 0x97 (or 0x80), a 3.1.1
	one no PUBACK; the broker keeps serving; after a crash every acknowledged
	message reaches the subscriber, and draining it frees room again."""
	b = pbroker(t, ["persistence_max_bytes 64k"])
	tp = t.topic("full")
	cid = t.cid("sub")
	c = psub(t, b, cid, 5)
	c.subscribe(tp, 1)
	c.disconnect()
	p5 = RawPub(t.raw_connected(b, version=5), window=1)
	acked = []
	refused = None
	for i in range(200):
		body = (b"%04d:" % i) + b"x" * 3000
		rc = p5.publish_many(tp, [body])[0]
		if rc == 0:
			acked.append(body)
			continue
		refused = rc
		break
	assert refused in (0x97, 0x80), "store never full after %d messages (last rc %r)" % (
		len(acked), refused)
	assert len(acked) >= 3, "only %d messages fitted in 64k" % len(acked)
	assert b.wait_log(r"(?i)(could not be stored|store full|not stored)", 3), \
		"no log line for the refused message"
	# 3.1.1: no negative acknowledgement, so no PUBACK at all
	r4 = t.raw_connected(b, version=4)
	r4.send(R.publish(tp, b"v311:" + b"y" * 3000, 1, pid=5, version=4))
	p = r4.recv_or_none(1.5)
	assert p is None or p.type != R.PUBACK, "3.1.1 publisher got a PUBACK for a refused message"
	# the broker keeps serving: a connect, QoS 0/1 to a clean subscriber, a ping
	t.check_alive(b)
	clean = t.client(b, version=5)
	clean.subscribe(t.topic("live"), 1)
	pp = t.client(b, version=4)
	pp.publish(t.topic("live"), b"q0", 0)
	pp.publish(t.topic("live"), b"q1", 1)
	assert sorted(payloads(clean.wait_messages(2))) == [b"q0", b"q1"]
	r5 = t.raw_connected(b, version=5)
	r5.send(R.pingreq())
	r5.expect(R.PINGRESP)
	r4.close()
	bounce(b, "sigkill")
	c = psub(t, b, cid, 5)
	assert c.session_present
	got = payloads(c.wait_messages(len(acked), 15))
	assert got == acked, "acknowledged messages lost or reordered (%d of %d)" % (
		len([g for g in got if g in acked]), len(acked))
	c.expect_no_message(0.7)
	# drained: there is room again
	p5 = RawPub(t.raw_connected(b, version=5), window=1)
	assert p5.publish_many(tp, [b"after"]) == [0]
	assert c.wait_message().payload == b"after"


# -- configuration variants -------------------------------------------------------------------

def test_persist_false_creates_no_database(t):
	b = pbroker(t, ["persistence false"])
	tp = t.topic("np")
	cid = t.cid("sub")
	c = psub(t, b, cid, 5)
	c.subscribe(tp, 1)
	c.disconnect()
	pub = t.client(b, version=5)
	pub.publish(tp, b"held in memory", 1)
	c = psub(t, b, cid, 5)
	assert c.session_present, "sessions still outlive connections without persistence"
	assert c.wait_message().payload == b"held in memory"
	c.disconnect()
	bounce(b, "sigterm")
	found = [os.path.join(dp, f) for dp, _, fs in os.walk(b.dir) for f in fs
		 if f not in ("broker.conf", "broker.log")]
	assert not os.path.exists(os.path.join(b.dir, "data")) and not found, found
	c = psub(t, b, cid, 5)
	assert not c.session_present, "a session survived a restart with persistence false"


def test_persist_default_file_and_missing_directory_created(t):
	b = pbroker(t)
	assert os.path.isfile(db_path(b)), "default database data/sluice.db not created"
	b2 = pbroker(t, ["persistence_file newdir/my.db"])
	assert os.path.isfile(db_path(b2, "newdir/my.db"))
	assert not os.path.exists(db_path(b2)), "data/sluice.db created besides the named file"


def test_persist_sync_full_restart_round_trip(t):
	b = pbroker(t, ["persistence_sync full"])
	assert b.wait_log(r"(?i)synchronous\W*full", 3), "synchronous full not in the log"
	tp = t.topic("sf")
	cid = t.cid("sub")
	c = psub(t, b, cid, 4)
	c.subscribe(tp, 2)
	c.disconnect()
	pub = t.client(b, version=4)
	pub.publish(tp, b"a", 1)
	pub.publish(tp, b"b", 2)
	bounce(b, "sigkill")
	c = psub(t, b, cid, 4)
	assert c.session_present
	assert sorted(payloads(c.wait_messages(2))) == [b"a", b"b"]


BAD_LINES = {
	"max_bytes_60000": "persistence_max_bytes 60000",
	"max_bytes_63k": "persistence_max_bytes 63k",
	"in_memory_15": "max_queued_in_memory 15",
	"sync_sometimes": "persistence_sync sometimes",
	"persistence_maybe": "persistence maybe",
}


@param("case", sorted(BAD_LINES))
def test_persist_bad_directive_stops_start_up(t, case):
	"""Out-of-range or malformed persistence directives stop start-up with the
	file and line named (persistence_max_bytes is at least 64k; max_queued_in_memory
	16..1000000), and no database is created."""
	line = BAD_LINES[case]
	b = start_must_fail(t, [line])
	rc, log = expect_start_failure(b)
	assert rc not in (0, None), rc
	directive = line.split()[0]
	assert any(directive in l and "broker.conf" in l for l in log.splitlines()), log[-1200:]
	assert not os.path.exists(db_path(b)), "a database was created"


def test_persist_max_bytes_64k_and_max_queued_in_memory_16_accepted(t):
	b = pbroker(t, ["persistence_max_bytes 64k", "max_queued_in_memory 16"])
	t.check_alive(b)
