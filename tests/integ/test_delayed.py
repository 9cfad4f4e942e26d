"""Delayed topics (plugins/delayed): the MQTT-facing contract of DESIGN.md.

Each test starts its own sluice with the delayed plugin loaded
(plugin_opt_max 60, plugin_opt_sys_interval 1) and checks what clients see:
when a delayed message arrives (never before its due time, at most LATE
seconds after), on which topic and with what QoS, retain flag, payload and
properties; the message-id in the MQTT 5 PUBACK/PUBREC; cancel by its
publisher, refused for anyone else; reason codes and log lines for every bad
request; survival of a restart and of SIGKILL; the $SYS/broker/delayed/
counters.

Needs SLUICE_DELAYED_PLUGIN, the built plugins/delayed/.libs/delayed.so
(make check sets it); without it every test is skipped, saying why.

Timing: a release is checked against the client's monotonic clock taken
before the publish was sent, so "not before its due time" cannot pass by
luck; EARLY allows for the broker's wall clock having millisecond
resolution. Timing is the subject here, so the restart tests sleep.
"""

import os
import shutil
import subprocess
import tempfile
import sqlite3
import struct
import time

import brokerlib
import rawmqtt as R
from clients import connect_props, publish_props
from harness import Skip, param, timeout, wait_until

PLUGIN = os.environ.get("SLUICE_DELAYED_PLUGIN")
LATE = 1.5  # seconds a release may come after its due time
EARLY = 0.005  # clock resolution allowance


def delayed_broker(t, extra=()):
	if brokerlib.is_mosquitto():
		raise Skip("delayed topics are a sluice plugin (INTEG_BROKER=mosquitto)")
	if not PLUGIN:
		raise Skip("SLUICE_DELAYED_PLUGIN is not set (the built "
			   "plugins/delayed/.libs/delayed.so)")
	if not os.path.isfile(PLUGIN):
		raise Skip("SLUICE_DELAYED_PLUGIN=%s does not exist" % PLUGIN)
	return t.broker(["plugin %s" % PLUGIN, "plugin_opt_max 60",
			 "plugin_opt_sys_interval 1"] + list(extra))


def raw_pub(r, topic, payload=b"x", qos=1, pid=1, props=None, retain=False):
	"""Publish from a raw client; returns (reason code, ack properties) or None at QoS 0."""
	r.send(R.publish(topic, payload, qos, retain, pid=pid, version=r.version, properties=props))
	if qos == 0:
		return None
	p = r.expect(R.PUBACK if qos == 1 else R.PUBREC, skip=(R.PUBLISH,))
	info = p.ack()[1:]
	if qos == 2:
		r.send(R.ack(R.PUBREL, pid, r.version))
		r.expect(R.PUBCOMP, skip=(R.PUBLISH,))
	return info


def user_props(props):
	return R.prop_all(props, R.USER_PROPERTY)


def message_id(props):
	ids = [v for k, v in user_props(props) if k == "message-id"]
	assert len(ids) == 1, "expected one message-id user property, got %r" % (props,)
	assert ids[0].isdigit(), ids
	return ids[0]


def check_on_time(msg, t0, delay):
	"""msg (paho, stamped with time.monotonic() on receipt) came delay s after t0."""
	got = msg.timestamp - t0
	assert got >= delay - EARLY, "released after %.3fs, before its delay of %.3fs" % (got, delay)
	assert got <= delay + LATE, "released after %.3fs, %.3fs late" % (got, got - delay)


def ud(msg):
	p = getattr(msg, "properties", None)
	return list(getattr(p, "UserProperty", []) or []) if p else []


# --- each form of delay ---------------------------------------------------------

@param("version", [4, 5])
@param("delay", ["1", "0.25"])
def test_delayed_topic(t, version, delay):
	b = delayed_broker(t)
	tp = t.topic("a")
	sub = t.client(b, version=version)
	sub.subscribe(tp, 1)
	pub = t.client(b, version=version)
	t0 = time.monotonic()
	pub.publish("$delayed/%s/%s" % (delay, tp), b"later", 1)
	m = sub.wait_message(float(delay) + LATE + 1)
	check_on_time(m, t0, float(delay))
	assert m.topic == tp and m.payload == b"later"
	sub.expect_no_message(0.3)


@param("persistence", ["true", "false"])
def test_delayed_payload_read_back(t, persistence):
	# A short prefetch window: the payloads wait in the store (or, without
	# persistence, in the cold key space) and are read back before they are due.
	b = delayed_broker(t, ["persistence %s" % persistence, "plugin_opt_prefetch_ms 200"])
	tp = t.topic("cold")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	pub = t.client(b, version=5)
	t0 = time.monotonic()
	for d in ["1.2", "0.6", "1", "0.1"]:
		pub.publish("$delayed/%s/%s" % (d, tp), d.encode(), 1)
	ms = sub.wait_messages(4, 1.2 + LATE + 1)
	assert [m.payload for m in ms] == [b"0.1", b"0.6", b"1", b"1.2"], ms
	for m in ms:
		check_on_time(m, t0, float(m.payload))


@param("qos", [1, 2])
def test_delayed_ack_message_id(t, qos):
	b = delayed_broker(t)
	tp = t.topic("id")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 2)
	r = t.raw_connected(b, version=5)
	rc, props = raw_pub(r, "$delayed/0.2/" + tp, b"p", qos)
	assert rc == 0, "reason 0x%02x" % rc
	first = int(message_id(props))
	rc, props = raw_pub(r, "$delayed/0.2/" + tp, b"q", qos, pid=2)
	assert int(message_id(props)) > first  # ids grow in publish order
	assert [m.payload for m in sub.wait_messages(2, 3)] == [b"p", b"q"]


def test_delayed_ack_v311_has_no_properties(t):
	b = delayed_broker(t)
	r = t.raw_connected(b, version=4)
	r.send(R.publish("$delayed/0.2/" + t.topic("v4"), b"x", 1, pid=3, version=4))
	p = r.expect(R.PUBACK)
	assert p.body == b"\x00\x03", "a 3.1.1 PUBACK is the packet id only: %r" % p


def test_delayed_delay_ms_keeps_other_properties(t):
	b = delayed_broker(t)
	tp = t.topic("props")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	pub = t.client(b, version=5)
	props = publish_props(UserProperty=[("a", "1"), ("delay-ms", "600"), ("b", "2")],
			      ContentType="text/plain", ResponseTopic="reply/here",
			      CorrelationData=b"corr", PayloadFormatIndicator=1)
	t0 = time.monotonic()
	pub.publish(tp, b"payload", 1, properties=props)
	m = sub.wait_message(0.6 + LATE + 1)
	check_on_time(m, t0, 0.6)
	assert m.topic == tp and m.payload == b"payload"
	assert ud(m) == [("a", "1"), ("b", "2")], ud(m)
	assert m.properties.ContentType == "text/plain"
	assert m.properties.ResponseTopic == "reply/here"
	assert m.properties.CorrelationData == b"corr"
	assert m.properties.PayloadFormatIndicator == 1


def test_delayed_deliver_at(t):
	b = delayed_broker(t)
	tp = t.topic("at")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	pub = t.client(b, version=5)
	t0 = time.monotonic()
	at = int(time.time() * 1000) + 800
	pub.publish(tp, b"at", 1, properties=publish_props(UserProperty=[("deliver-at", str(at))]))
	m = sub.wait_message(0.8 + LATE + 1)
	check_on_time(m, t0, 0.8)
	assert ud(m) == []
	# In the past: at once.
	t0 = time.monotonic()
	pub.publish(tp, b"past", 1, properties=publish_props(UserProperty=[("deliver-at", "1000")]))
	m = sub.wait_message(LATE + 1)
	check_on_time(m, t0, 0)
	assert m.payload == b"past" and ud(m) == []


def test_delayed_zero_is_at_once(t):
	b = delayed_broker(t)
	tp = t.topic("zero")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	pub = t.client(b, version=5)
	t0 = time.monotonic()
	pub.publish("$delayed/0/" + tp, b"0", 1)
	pub.publish(tp, b"1", 1, properties=publish_props(UserProperty=[("delay-ms", "0")]))
	ms = sub.wait_messages(2, LATE + 1)
	assert [m.payload for m in ms] == [b"0", b"1"]
	for m in ms:
		check_on_time(m, t0, 0)


# --- what the released message keeps ---------------------------------------------

@param("qos", [0, 1, 2])
def test_delayed_keeps_qos(t, qos):
	b = delayed_broker(t)
	tp = t.topic("qos")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 2)
	pub = t.client(b, version=5)
	pub.publish("$delayed/0.3/" + tp, b"q%d" % qos, qos)
	m = sub.wait_message(0.3 + LATE + 1)
	assert m.qos == qos and m.payload == b"q%d" % qos


def test_delayed_retained(t):
	b = delayed_broker(t)
	tp = t.topic("ret")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	pub = t.client(b, version=5)
	pub.publish("$delayed/0.3/" + tp, b"kept", 1, retain=True)
	sub.wait_message(0.3 + LATE + 1)
	late = t.client(b, version=5)
	late.subscribe(tp, 1)
	m = late.wait_message(2, "(retained after release)")
	assert m.retain and m.payload == b"kept"
	# Nothing retained on the $delayed topic itself.
	other = t.client(b, version=5)
	other.subscribe("$delayed/#", 1)
	other.expect_no_message(0.4)


def test_delayed_expiry_counts_from_release(t):
	b = delayed_broker(t)
	tp = t.topic("exp")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	pub = t.client(b, version=5)
	props = publish_props(UserProperty=[("delay-ms", "1500")], MessageExpiryInterval=1)
	pub.publish(tp, b"fresh", 1, properties=props)
	# Counted from the publish it would have expired 0.5 s before release.
	m = sub.wait_message(1.5 + LATE + 1)
	assert m.payload == b"fresh"
	assert m.properties.MessageExpiryInterval >= 0


# --- ordering -------------------------------------------------------------------------

def test_delayed_same_due_in_publish_order(t):
	b = delayed_broker(t)
	tp = t.topic("order")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	r = t.raw_connected(b, version=5)
	at = str(int(time.time() * 1000) + 700)
	n = 40
	# Half by deliver-at, half from a delay-ms chosen to land on the same ms is not
	# possible from a client; deliver-at gives every message the same due time.
	r.send_many([R.publish(tp, b"%d" % i, 1, pid=i + 1, version=5,
			       properties=[(R.USER_PROPERTY, ("deliver-at", at))]) for i in range(n)])
	for _ in range(n):
		r.expect(R.PUBACK)
	got = [int(m.payload) for m in sub.wait_messages(n, 0.7 + LATE + 2)]
	assert got == list(range(n)), got


def test_delayed_due_order(t):
	b = delayed_broker(t)
	tp = t.topic("due")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	r = t.raw_connected(b, version=5)
	n = 20
	base = int(time.time() * 1000) + 500
	# Published latest-due first: released earliest-due first.
	r.send_many([R.publish(tp, b"%d" % i, 1, pid=i + 1, version=5,
			       properties=[(R.USER_PROPERTY, ("deliver-at", str(base + 25 * i)))])
		     for i in reversed(range(n))])
	for _ in range(n):
		r.expect(R.PUBACK)
	got = [int(m.payload) for m in sub.wait_messages(n, 0.5 + 0.5 + LATE + 2)]
	assert got == list(range(n)), got


# --- cancel -----------------------------------------------------------------------------

def test_delayed_cancel_own(t):
	b = delayed_broker(t)
	tp = t.topic("cancel")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	r = t.raw_connected(b, version=5)
	rc, props = raw_pub(r, "$delayed/0.8/" + tp, b"never")
	mid = message_id(props)
	raw_pub(r, "$delayed/0.8/" + tp, b"kept", pid=2)
	rc, props = raw_pub(r, "$delayed/cancel/" + mid, b"", pid=3)
	assert rc == 0, "cancel refused: 0x%02x %r" % (rc, props)
	m = sub.wait_message(0.8 + LATE + 1)
	assert m.payload == b"kept"
	sub.expect_no_message(0.5)
	# A second cancel of the same id: unknown now.
	rc, props = raw_pub(r, "$delayed/cancel/" + mid, b"", pid=4)
	assert rc == 0x83 and R.prop(props, R.REASON_STRING), (rc, props)
	# The cancel message itself went nowhere.
	watcher = t.client(b, version=5)
	watcher.subscribe("$delayed/#", 1)
	raw_pub(r, "$delayed/cancel/" + mid, b"", pid=5)
	watcher.expect_no_message(0.3)


@param("version", [4, 5])
def test_delayed_cancel_by_other_refused(t, version):
	b = delayed_broker(t)
	tp = t.topic("other")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	owner = t.raw_connected(b, version=5)
	rc, props = raw_pub(owner, "$delayed/0.8/" + tp, b"still")
	mid = message_id(props)
	thief = t.raw_connected(b, version=version, client_id=t.cid("thief"))
	since = b.log_size()
	rc, props = raw_pub(thief, "$delayed/cancel/" + mid)
	if version == 5:
		assert rc == 0x87, "reason 0x%02x, expected 0x87 Not authorized" % rc
		assert R.prop(props, R.REASON_STRING)
	else:
		assert b.wait_log(r"delayed: dropped from .*thief.*only the publisher", 3, since)
	m = sub.wait_message(0.8 + LATE + 1)
	assert m.payload == b"still"


@param("version", [4, 5])
def test_delayed_cancel_unknown(t, version):
	b = delayed_broker(t)
	r = t.raw_connected(b, version=version)
	since = b.log_size()
	for topic, want in (("$delayed/cancel/999999", 0x83), ("$delayed/cancel/abc", 0x90),
			    ("$delayed/cancel/", 0x90)):
		rc, props = raw_pub(r, topic)
		if version == 5:
			assert rc == want, "%s: 0x%02x, expected 0x%02x" % (topic, rc, want)
			assert R.prop(props, R.REASON_STRING), topic
	if version == 4:
		assert b.wait_log(r"delayed: dropped .*cancel/999999.*no pending", 3, since)
	t.check_alive(b)


# --- bad requests -------------------------------------------------------------------------

def bad_requests(tp):
	u = R.USER_PROPERTY
	future = str(int(time.time() * 1000) + 61000)
	return [
		("$delayed/x/" + tp, None, 0x83),
		("$delayed/-1/" + tp, None, 0x83),
		("$delayed/nan/" + tp, None, 0x83),
		("$delayed/1e3/" + tp, None, 0x83),
		("$delayed/61/" + tp, None, 0x83),  # over plugin_opt_max 60
		("$delayed/5/", None, 0x90),
		("$delayed/5", None, 0x90),
		("$delayed", None, 0x90),
		("$delayed/5/$SYS/x", None, 0x90),
		(tp, [(u, ("delay-ms", "abc"))], 0x83),
		(tp, [(u, ("delay-ms", "-5"))], 0x83),
		(tp, [(u, ("delay-ms", ""))], 0x83),
		(tp, [(u, ("delay-ms", "61000"))], 0x83),
		(tp, [(u, ("delay-ms", "10")), (u, ("deliver-at", future))], 0x83),
		(tp, [(u, ("delay-ms", "10")), (u, ("delay-ms", "20"))], 0x83),
		(tp, [(u, ("deliver-at", future))], 0x83),
		(tp, [(u, ("deliver-at", "NaN"))], 0x83),
		("$delayed/1/" + tp, [(u, ("delay-ms", "10"))], 0x83),
	]


def test_delayed_bad_requests_v5(t):
	b = delayed_broker(t)
	tp = t.topic("bad")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	r = t.raw_connected(b, version=5)
	for i, (topic, props, want) in enumerate(bad_requests(tp)):
		rc, aprops = raw_pub(r, topic, b"bad", 1, pid=i + 1, props=props)
		assert rc == want, "%s %r: 0x%02x, expected 0x%02x" % (topic, props, rc, want)
		assert R.prop(aprops, R.REASON_STRING), "%s: no reason string" % topic
	sub.expect_no_message(0.5)
	t.check_alive(b)


def test_delayed_bad_requests_v311(t):
	b = delayed_broker(t)
	tp = t.topic("bad4")
	sub = t.client(b, version=4)
	sub.subscribe(tp, 1)
	r = t.raw_connected(b, version=4)
	since = b.log_size()
	bad = [x for x in bad_requests(tp) if x[1] is None]
	for i, (topic, _, _) in enumerate(bad):
		r.send(R.publish(topic, b"bad", 1, pid=i + 1, version=4))
		r.expect(R.PUBACK)  # 3.1.1 has no negative acknowledgement
	wait_until(lambda: b.log_text(since).count("delayed: dropped") >= len(bad), 3,
		   "a log line per dropped message")
	sub.expect_no_message(0.5)
	t.check_alive(b)


# --- durability ----------------------------------------------------------------------------

@timeout(30)
@param("how", ["sigterm", "sigkill"])
def test_delayed_survives_restart(t, how):
	b = delayed_broker(t)
	tp = t.topic("dur")
	cid = t.cid("dursub")
	sub = t.client(b, client_id=cid, version=4, clean=False)
	sub.subscribe(tp + "/#", 1)
	sub.disconnect()
	r = t.raw_connected(b, version=5)
	t0 = time.monotonic()
	raw_pub(r, "$delayed/1/%s/early" % tp, b"early", pid=1)
	raw_pub(r, "$delayed/6/%s/late" % tp, b"late", pid=2)
	r.close()
	if how == "sigkill":
		b.kill9()
	else:
		b.stop()
	# The subject is time passing while the broker is down: the first one falls due.
	time.sleep(max(0, t0 + 1.5 - time.monotonic()))
	b.start()
	t1 = time.monotonic()
	sub = t.client(b, client_id=cid, version=4, clean=False)
	m = sub.wait_message(LATE + 2, "(overdue message after restart)")
	assert m.payload == b"early" and m.topic == tp + "/early"
	assert m.timestamp - t1 <= LATE, "overdue message %.3fs after restart" % (m.timestamp - t1)
	m = sub.wait_message(6 + LATE + 2 - (time.monotonic() - t0), "(message due later)")
	assert m.payload == b"late"
	check_on_time(m, t0, 6)
	sub.expect_no_message(0.5)


def test_delayed_cancel_survives_restart(t):
	b = delayed_broker(t)
	tp = t.topic("cdur")
	sub_id = t.cid("cdursub")
	sub = t.client(b, client_id=sub_id, version=5, clean=False,
		       properties=connect_props(SessionExpiryInterval=300))
	sub.subscribe(tp, 1)
	pub_id = t.cid("cdurpub")
	r = t.raw_connected(b, version=5, client_id=pub_id)
	rc, props = raw_pub(r, "$delayed/3/" + tp, b"cancelled")
	mid = message_id(props)
	raw_pub(r, "$delayed/3/" + tp, b"kept", pid=2)
	r.close()
	b.restart()
	# The sender is remembered across the restart: the publisher may still cancel.
	r = t.raw_connected(b, version=5, client_id=pub_id)
	rc, props = raw_pub(r, "$delayed/cancel/" + mid, pid=3)
	assert rc == 0, "cancel after restart: 0x%02x %r" % (rc, props)
	other = t.raw_connected(b, version=5)
	rc, _ = raw_pub(other, "$delayed/cancel/%d" % (int(mid) + 1), pid=4)
	assert rc == 0x87, "0x%02x" % rc
	sub = t.client(b, client_id=sub_id, version=5, clean=False,
		       properties=connect_props(SessionExpiryInterval=300))
	m = sub.wait_message(3 + LATE + 2)
	assert m.payload == b"kept"
	sub.expect_no_message(0.5)


def cold_keys(b, path):
	"""The cold keys in the stopped broker's database (the delayed plugin's: the only one)."""
	con = sqlite3.connect(os.path.join(b.dir, path))
	try:
		return sorted(bytes(k) for (k,) in con.execute("SELECT key FROM plugin_cold"))
	finally:
		con.close()


@timeout(30)
@param("persistence", ["true", "false"])
def test_delayed_payloads_deleted_after_release(t, persistence):
	# Released payloads are deleted one by one, or (when every message sharing
	# their index row is due soon) all at once when the row goes: either way
	# none is left behind, and a far-off message's payload stays until it goes.
	# Without persistence the same deletes run on the in-memory cold values.
	b = delayed_broker(t, ["persistence %s" % persistence, "persistence_file cold.db",
			       "plugin_opt_max 1h"])
	tp = t.topic("gc")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	pid_ = t.cid("gcpub")
	r = t.raw_connected(b, version=5, client_id=pid_)
	_, props = raw_pub(r, "$delayed/600/" + tp, b"far", pid=1)
	far = int(message_id(props))
	n = 100
	for i in range(n):
		raw_pub(r, "$delayed/0.%d/%s" % (2 + i % 5, tp), b"%d" % i, pid=2 + i % 60000)
	ms = sub.wait_messages(n, 0.6 + LATE + 2)
	assert sorted(int(m.payload) for m in ms) == list(range(n))
	if persistence == "false":
		sub.expect_no_message(0.3)
		return
	r.close()
	b.stop()
	keys = cold_keys(b, "cold.db")
	assert keys == [b"p" + struct.pack(">Q", far)], (far, len(keys), keys[:40])
	b.start()
	r = t.raw_connected(b, version=5, client_id=pid_)
	rc, props = raw_pub(r, "$delayed/cancel/%d" % far, pid=1)
	assert rc == 0, "cancel: 0x%02x %r" % (rc, props)
	r.close()
	b.stop()
	assert cold_keys(b, "cold.db") == []


# --- $SYS ------------------------------------------------------------------------------------

def test_delayed_sys_counters(t):
	b = delayed_broker(t)
	tp = t.topic("sys")
	watch = t.client(b, version=5)
	watch.subscribe("$SYS/broker/delayed/#", 0)
	r = t.raw_connected(b, version=5)
	raw_pub(r, "$delayed/0.2/" + tp, b"a", pid=1)
	rc, props = raw_pub(r, "$delayed/30/" + tp, b"b", pid=2)
	mid = message_id(props)
	raw_pub(r, "$delayed/bad/" + tp, b"c", pid=3)
	seen = {}

	def values(want):
		for m in watch.drain():
			seen[m.topic.rsplit("/", 1)[1]] = m.payload.decode()
		return all(seen.get(k) == v for k, v in want.items())

	wait_until(lambda: values({"scheduled": "2", "released": "1", "pending": "1",
				   "rejected": "1"}), 5, "counters after one release (%r)" % seen)
	assert int(seen["next"]) > time.time() * 1000 + 20000, seen
	raw_pub(r, "$delayed/cancel/" + mid, pid=4)
	wait_until(lambda: values({"pending": "0", "cancelled": "1", "next": "0"}), 5,
		   "counters after the cancel (%r)" % seen)


def user_connected(t, b, client_id, username, password, version=5):
	"""A raw client connected with username and password (CONNACK 0 expected)."""
	r = t.raw(b, version=version)
	r.send(R.connect(client_id, version, username=username, password=password))
	_, rc, _ = r.expect(R.CONNACK).connack()
	assert rc == 0, "CONNACK 0x%02x for %s" % (rc, username)
	return r


@param("version", [4, 5])
def test_delayed_cancel_by_username(t, version):
	"""With usernames, the publisher's username decides who may cancel, not its client id."""
	passwd = shutil.which("mosquitto_passwd")
	if not passwd:
		raise Skip("mosquitto_passwd is not installed (package mosquitto)")
	d = tempfile.mkdtemp(prefix="sluice-dl-users-")
	try:
		path = os.path.join(d, "passwd")
		for i, (u, p) in enumerate((("alice", "pa"), ("bob", "pb"))):
			subprocess.run([passwd] + (["-c"] if i == 0 else []) + ["-b", path, u, p],
				       check=True, timeout=10, stdout=subprocess.DEVNULL)
		b = delayed_broker(t, ["password_file %s" % path])
		tp = t.topic("byuser")
		sub = t.client(b, version=5)
		sub.subscribe(tp, 1)
		cid = t.cid("pub")
		alice = user_connected(t, b, cid, "alice", "pa")
		_, props = raw_pub(alice, "$delayed/1.5/" + tp, b"first")
		first = message_id(props)
		_, props = raw_pub(alice, "$delayed/1.5/" + tp, b"second", pid=2)
		second = message_id(props)
		alice.close()
		# bob, under alice's client id, may not cancel her message
		bob = user_connected(t, b, cid, "bob", "pb", version)
		since = b.log_size()
		rc, _ = raw_pub(bob, "$delayed/cancel/" + first)
		if version == 5:
			assert rc == 0x87, "bob's cancel: 0x%02x, expected 0x87" % rc
		else:
			assert b.wait_log(r"only the publisher", 3, since)
		bob.close()
		# alice, under another client id, may
		alice2 = user_connected(t, b, t.cid("other"), "alice", "pa", version)
		rc, _ = raw_pub(alice2, "$delayed/cancel/" + second)
		if version == 5:
			assert rc == 0, "alice's cancel: 0x%02x, expected 0" % rc
		got = [sub.wait_message(1.5 + LATE + 1).payload]
		assert got == [b"first"], got
		sub.expect_no_message(1.0)
	finally:
		shutil.rmtree(d, ignore_errors=True)
