"""Transactional topics (plugins/txn): the MQTT-facing contract of README
"Transactional messages" (issue 10).

Each test starts its own sluice with the txn plugin loaded (before the
delayed plugin where a test needs both) and checks what clients see: half
messages acknowledged (stored) and invisible, even to a subscriber to #;
commit delivering every message in accept order, each with its own topic,
QoS, retain flag, payload and properties, its expiry counted from the
commit; txn-count; rollback; idempotent and refused outcomes with their
reason codes and strings; every bad topic; 3.1.1 clients (plain PUBACK, a
log line); producer groups and membership; check-back of a silent producer,
shared check subscriptions, check-after-ms, check_max exhaustion with its
notice and log line; quotas; the $SYS/broker/txn/ counters; survival of a
restart; and SIGKILL at random moments around commits with a persistent
QoS 2 subscriber that must get each committed transaction whole and exactly
once and nothing of the others.

Needs SLUICE_TXN_PLUGIN, the built plugins/txn/.libs/txn.so (make check
sets it), and for the $delayed/ target SLUICE_DELAYED_PLUGIN; without them
the tests are skipped, saying why. Check-back tests run with check times of
a few hundred milliseconds (plugin_opt_check_after, plugin_opt_check_interval);
elsewhere check_after is 1h so that no check interferes.

Timing is the subject of the expiry, delayed and check-back tests: there a
release or a check is checked against the client's monotonic clock.
"""

import os
import random
import re
import shutil
import socket
import subprocess
import threading
import time

import brokerlib
import rawmqtt as R
from harness import Skip, param, timeout, wait_until

PLUGIN = os.environ.get("SLUICE_TXN_PLUGIN")
DELAYED = os.environ.get("SLUICE_DELAYED_PLUGIN")
PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
LATE = 1.5  # seconds a delayed release or a check may come after its due time
EARLY = 0.005  # clock resolution allowance
JITTER = 0.1  # how much sooner than their interval two timed messages may arrive
FAST = ["plugin_opt_check_after 300ms", "plugin_opt_check_interval 300ms"]
SYS_LEAVES = ("open", "committed", "rolled_back", "checks", "discarded", "oldest_open_ms")


def need(path, var, what):
	if not path:
		raise Skip("%s is not set (the built %s)" % (var, what))
	if not os.path.isfile(path):
		raise Skip("%s=%s does not exist" % (var, path))


def txn_broker(t, extra=(), delayed=False, fresh=True):
	"""A private sluice with the txn plugin (and delayed after it), sys_interval 1 s,
	check_after 1 h unless extra says otherwise (the last option line wins)."""
	if brokerlib.is_mosquitto():
		raise Skip("transactional topics are a sluice plugin (INTEG_BROKER=mosquitto)")
	need(PLUGIN, "SLUICE_TXN_PLUGIN", "plugins/txn/.libs/txn.so")
	lines = ["plugin %s" % PLUGIN, "plugin_opt_sys_interval 1",
		 "plugin_opt_check_after 1h"] + list(extra)
	if delayed:
		need(DELAYED, "SLUICE_DELAYED_PLUGIN", "plugins/delayed/.libs/delayed.so")
		lines += ["plugin %s" % DELAYED, "plugin_opt_max 60"]
	return t.broker(lines)


class Pids:
	"""Packet ids for one raw client."""

	def __init__(self):
		self.n = 0

	def __call__(self):
		self.n = self.n % 65535 + 1
		return self.n


def raw_pub(r, topic, payload=b"x", qos=1, pid=None, props=None, retain=False):
	"""Publish from a raw client; (reason code, ack properties), or None at QoS 0.
	Packet ids are taken from the client's own counter when not given."""
	if pid is None:
		if not hasattr(r, "pids"):
			r.pids = Pids()
		pid = r.pids()
	r.send(R.publish(topic, payload, qos, retain, pid=pid, version=r.version, properties=props))
	if qos == 0:
		return None
	p = r.expect(R.PUBACK if qos == 1 else R.PUBREC)
	assert p.pid() == pid, "ack for packet id %d, sent %d" % (p.pid(), pid)
	info = p.ack()[1:]
	if qos == 2:
		r.send(R.ack(R.PUBREL, pid, r.version))
		r.expect(R.PUBCOMP)
	return info


def reason(props):
	return R.prop(props, R.REASON_STRING)


def up(*pairs):
	"""User properties for a raw PUBLISH: up(("k", "v"), ...)."""
	return [(R.USER_PROPERTY, kv) for kv in pairs]


def half(r, tid, target, payload=b"h", qos=1, props=None, retain=False):
	return raw_pub(r, "$txn/half/%s/%s" % (tid, target), payload, qos, props=props,
		       retain=retain)


def commit(r, tid, qos=1, count=None):
	props = up(("txn-count", str(count))) if count is not None else None
	return raw_pub(r, "$txn/commit/" + tid, b"", qos, props=props)


def rollback(r, tid, qos=1):
	return raw_pub(r, "$txn/rollback/" + tid, b"", qos)


def expect_rc(got, want, text=None, what=""):
	"""got: (rc, props) of raw_pub; want: the reason code; text: the reason string."""
	rc, props = got
	assert rc == want, "%s: reason 0x%02x %r, expected 0x%02x" % (what, rc, reason(props), want)
	if text is not None:
		assert reason(props) == text, "%s: reason string %r, expected %r" % (
			what, reason(props), text)
	elif want >= 0x80:
		assert reason(props), "%s: refusal 0x%02x without a reason string" % (what, rc)


def ud(msg):
	p = getattr(msg, "properties", None)
	return list(getattr(p, "UserProperty", []) or []) if p else []


def raw_member(t, b, flt, client_id=None):
	"""A raw MQTT 5 client subscribed to flt (e.g. $txn/check/G): a group member."""
	r = t.raw_connected(b, version=5, client_id=client_id)
	r.send(R.subscribe(1, [(flt, 1)]))
	codes = r.expect(R.SUBACK).suback()[1]
	assert codes == [1], "SUBACK %r for %s" % (codes, flt)
	return r


def raw_sub(t, b, flt, qos=2, version=5, rap=False, client_id=None):
	"""A raw subscriber: the PUBLISH packets in the order the broker sent them
	(paho 1.6 hands a QoS 2 message to the application only at its PUBREL, after
	later QoS 0 and 1 ones)."""
	r = t.raw_connected(b, version=version, client_id=client_id)
	r.send(R.subscribe(1, [(flt, R.sub_opts(qos, retain_as_published=rap))], version))
	codes = r.expect(R.SUBACK).suback()[1]
	assert codes == [qos], "SUBACK %r for %s" % (codes, flt)
	return r


def _on_packet(r, p):
	"""Acknowledges p; returns the PUBLISH as a dict, or None."""
	if p.type == R.PUBLISH:
		d = p.publish()
		if d["qos"] == 1:
			r.send(R.ack(R.PUBACK, d["pid"], r.version))
		elif d["qos"] == 2:
			r.send(R.ack(R.PUBREC, d["pid"], r.version))
		return d
	if p.type == R.PUBREL:
		r.send(R.ack(R.PUBCOMP, p.pid(), r.version))
		return None
	raise AssertionError("subscriber got %r" % p)


def recv_pubs(r, n, timeout=5.0):
	"""n PUBLISHes (dicts of mqttpkt's Packet.publish()), acknowledged as they come."""
	out, deadline = [], time.monotonic() + timeout
	while len(out) < n:
		left = deadline - time.monotonic()
		if left <= 0:
			raise AssertionError("got %d of %d messages within %.1fs: %r" % (
				len(out), n, timeout, [(d["topic"], d["payload"]) for d in out]))
		try:
			d = _on_packet(r, r.recv(left))
		except socket.timeout:
			continue
		if d is not None:
			out.append(d)
	return out


def no_pubs(r, wait=0.5):
	"""Nothing is published to r for wait seconds."""
	deadline = time.monotonic() + wait
	while True:
		left = deadline - time.monotonic()
		if left <= 0:
			return
		try:
			d = _on_packet(r, r.recv(left))
		except socket.timeout:
			return
		assert d is None, "unexpected message on %s: %r" % (d["topic"], d["payload"])


def check_props(m, tid, check, owner, messages):
	assert m.qos == 1, "check-back at QoS %d" % m.qos
	assert m.payload == tid.encode(), m.payload
	got = ud(m)
	assert dict(got) == {"txn-id": tid, "check": str(check), "owner": owner,
			     "messages": str(messages)} and len(got) == 4, got


def mosquitto_pub(b, args, timeout=10):
	r = subprocess.run([PUB, "-h", "127.0.0.1", "-p", str(b.port)] + args,
			   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
	return r.returncode, r.stdout.decode(errors="replace")


# --- half messages and commit -------------------------------------------------------------

def test_txn_half_invisible_then_commit_delivers_all_in_order(t):
	b = txn_broker(t)
	tp = t.topic("order")
	everything = raw_sub(t, b, "#", 2, rap=True)
	q1 = t.client(b, version=5)
	q1.subscribe(tp + "/#", 1)
	dollar = t.client(b, version=5)
	dollar.subscribe("$txn/#", 2)
	r = t.raw_connected(b, version=5)
	u = R.USER_PROPERTY
	# (target, qos, retain, payload, properties), in the order they are sent
	msgs = [
		(tp + "/a", 1, False, b"m0",
		 [(u, ("a", "1")), (u, ("producer-group", "orders")), (u, ("check-after-ms", "600000")),
		  (u, ("b", "2")), (u, ("a", "3"))]),
		(tp + "/b", 0, False, b"m1", None),
		(tp + "/c", 2, True, b"m2",
		 [(R.CONTENT_TYPE, "text/plain"), (R.RESPONSE_TOPIC, "reply/here"),
		  (R.CORRELATION_DATA, b"corr"), (R.PAYLOAD_FORMAT, 1), (u, ("k", "v"))]),
		(tp + "/a", 2, False, b"m3", None),
		(tp + "/b/deep", 1, False, b"", None),
		# on a later half message too, the broker's properties are removed
		(tp + "/a", 0, False, b"m5", [(u, ("check-after-ms", "5")), (u, ("z", "1")),
					      (u, ("producer-group", "other"))]),
	]
	for target, qos, retain, payload, props in msgs:
		got = half(r, "T-1.x_y", target, payload, qos, props, retain)
		if qos:
			expect_rc(got, 0, what="half on %s at QoS %d" % (target, qos))
	no_pubs(everything, 0.5)
	q1.expect_no_message(0.1)
	dollar.expect_no_message(0.1)
	expect_rc(commit(r, "T-1.x_y"), 0, what="commit")
	got = recv_pubs(everything, len(msgs), 5)
	assert [d["payload"] for d in got] == [m[3] for m in msgs], [
		(d["topic"], d["payload"]) for d in got]
	for d, (target, qos, retain, payload, props) in zip(got, msgs):
		assert (d["topic"], d["qos"], d["retain"]) == (target, qos, retain), (d, target, qos)
	users = [R.prop_all(d["props"], R.USER_PROPERTY) for d in got]
	assert users[0] == [("a", "1"), ("b", "2"), ("a", "3")], users[0]
	assert users[1] == [] and users[3] == [] and users[4] == []
	assert users[5] == [("z", "1")], users[5]
	assert users[2] == [("k", "v")], users[2]
	p = got[2]["props"]
	assert (R.prop(p, R.CONTENT_TYPE), R.prop(p, R.RESPONSE_TOPIC), R.prop(p, R.CORRELATION_DATA),
		R.prop(p, R.PAYLOAD_FORMAT)) == ("text/plain", "reply/here", b"corr", 1), p
	assert all(R.prop(d["props"], R.CONTENT_TYPE) is None for d in got if d is not got[2])
	# paho, subscribed at QoS 1: each at the lower of the two QoS
	got1 = q1.wait_messages(len(msgs), 5)
	assert [(m.topic, m.payload, m.qos) for m in got1] == [
		(x[0], x[3], min(x[1], 1)) for x in msgs], [(m.topic, m.payload, m.qos) for m in got1]
	assert ud(got1[0]) == [("a", "1"), ("b", "2"), ("a", "3")], ud(got1[0])
	assert got1[2].properties.ContentType == "text/plain"
	no_pubs(everything, 0.4)
	dollar.expect_no_message(0.1)
	# The retained one is stored on its target topic; nothing on the $txn topics.
	late = t.client(b, version=5)
	late.subscribe(tp + "/#", 2)
	m = late.wait_message(3, "(retained message of the transaction)")
	assert m.retain and m.topic == tp + "/c" and m.payload == b"m2" and m.qos == 2
	late.expect_no_message(0.3)
	late2 = t.client(b, version=5)
	late2.subscribe("$txn/#", 2)
	late2.expect_no_message(0.3)


def test_txn_transactions_interleaved_are_independent(t):
	b = txn_broker(t)
	tp = t.topic("inter")
	sub = t.client(b, version=5)
	sub.subscribe(tp + "/#", 2)
	r1 = t.raw_connected(b, version=5)
	r2 = t.raw_connected(b, version=5)
	for i in range(3):
		expect_rc(half(r1, "A", tp + "/a", b"a%d" % i), 0)
		expect_rc(half(r2, "B", tp + "/b", b"b%d" % i, 2), 0)
	# A client may have several transactions open at once.
	expect_rc(half(r1, "C", tp + "/c", b"c0"), 0)
	expect_rc(commit(r2, "B"), 0)
	assert [m.payload for m in sub.wait_messages(3, 5)] == [b"b0", b"b1", b"b2"]
	sub.expect_no_message(0.4)
	expect_rc(commit(r1, "C", 2), 0)
	expect_rc(commit(r1, "A"), 0)
	assert [m.payload for m in sub.wait_messages(4, 5)] == [b"c0", b"a0", b"a1", b"a2"]
	sub.expect_no_message(0.3)


@param("proto", ["mqttv311", "mqttv5"])
def test_txn_mosquitto_pub_half_and_commit(t, proto):
	b = txn_broker(t)
	if not shutil.which(PUB):
		raise Skip("%s not installed (package mosquitto-clients)" % PUB)
	tp = t.topic("cli")
	sub = t.client(b, version=5)
	sub.subscribe("#", 2)
	cid = t.cid("signup")
	for target, payload in (("users/registered", "42"), ("mail/welcome", "hello 42")):
		rc, out = mosquitto_pub(b, ["-V", proto, "-i", cid, "-q", "1", "-t",
					    "$txn/half/u42/%s/%s" % (tp, target), "-m", payload])
		assert rc == 0, "mosquitto_pub failed (%d): %s" % (rc, out)
	sub.expect_no_message(0.5)
	rc, out = mosquitto_pub(b, ["-V", proto, "-i", cid, "-q", "1", "-t", "$txn/commit/u42", "-n"])
	assert rc == 0, "mosquitto_pub failed (%d): %s" % (rc, out)
	got = sub.wait_messages(2, 5)
	assert [(m.topic, m.payload, m.qos) for m in got] == [
		(tp + "/users/registered", b"42", 1), (tp + "/mail/welcome", b"hello 42", 1)], got
	sub.expect_no_message(0.4)


def test_txn_message_expiry_counts_from_commit(t):
	b = txn_broker(t)
	tp = t.topic("exp")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	r = t.raw_connected(b, version=5)
	expect_rc(half(r, "exp", tp, b"fresh", 1, [(R.MESSAGE_EXPIRY, 2)]), 0)
	expect_rc(half(r, "exp", tp, b"forever", 1), 0)
	# The subject: time passes between the half message and the commit, more
	# than the expiry interval.
	time.sleep(3)
	expect_rc(commit(r, "exp"), 0)
	a, c = sub.wait_messages(2, 5)
	assert a.payload == b"fresh" and c.payload == b"forever"
	e = getattr(a.properties, "MessageExpiryInterval", None)
	assert e is not None and 1 <= e <= 2, "expiry interval %r, expected about 2" % e
	assert getattr(c.properties, "MessageExpiryInterval", None) is None


# --- txn-count ----------------------------------------------------------------------------

def test_txn_count_mismatch_refused_and_stays_open(t):
	b = txn_broker(t)
	tp = t.topic("count")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 2)
	r = t.raw_connected(b, version=5)
	for i in range(2):
		expect_rc(half(r, "cnt", tp, b"%d" % i), 0)
	expect_rc(commit(r, "cnt", count=3), 0x83, "transaction holds 2 messages", "txn-count 3")
	expect_rc(commit(r, "cnt", 2, count=1), 0x83, "transaction holds 2 messages", "txn-count 1")
	for bad in ("abc", "", "-2", "2.0", " 2"):
		expect_rc(raw_pub(r, "$txn/commit/cnt", b"", 1, props=up(("txn-count", bad))), 0x83,
			  "txn-count is not a number", "txn-count %r" % bad)
	sub.expect_no_message(0.4)
	# Still open: the producer adds the message it had missed, and commits.
	expect_rc(half(r, "cnt", tp, b"2"), 0)
	expect_rc(commit(r, "cnt", count=3), 0, what="txn-count 3")
	assert [m.payload for m in sub.wait_messages(3, 5)] == [b"0", b"1", b"2"]
	sub.expect_no_message(0.3)


# --- outcomes -----------------------------------------------------------------------------

@param("qos", [1, 2])
def test_txn_outcomes_idempotent_and_refused(t, qos):
	b = txn_broker(t)
	tp = t.topic("outcome")
	sub = t.client(b, version=5)
	sub.subscribe(tp + "/#", 1)
	r = t.raw_connected(b, version=5)
	expect_rc(half(r, "c1", tp + "/c", b"c1a"), 0)
	expect_rc(half(r, "c1", tp + "/c", b"c1b", 2), 0)
	expect_rc(half(r, "r1", tp + "/r", b"r1a"), 0)
	expect_rc(commit(r, "c1", qos), 0, what="commit")
	assert [m.payload for m in sub.wait_messages(2, 5)] == [b"c1a", b"c1b"]
	# A producer retrying after a lost PUBACK: success again, nothing twice.
	expect_rc(commit(r, "c1", qos), 0, what="repeated commit")
	expect_rc(commit(r, "c1", qos, count=2), 0, what="repeated commit with txn-count")
	expect_rc(rollback(r, "c1", qos), 0x83, "transaction was committed", "rollback of committed")
	expect_rc(half(r, "c1", tp + "/c", b"again", qos), 0x83, "transaction was committed",
		  "half reusing a committed id")
	expect_rc(rollback(r, "r1", qos), 0, what="rollback")
	expect_rc(rollback(r, "r1", qos), 0, what="repeated rollback")
	expect_rc(commit(r, "r1", qos), 0x83, "transaction was rolled back", "commit of rolled back")
	expect_rc(half(r, "r1", tp + "/r", b"again", qos), 0x83, "transaction was rolled back",
		  "half reusing a rolled-back id")
	expect_rc(commit(r, "never", qos), 0x83, "unknown transaction", "commit of unknown id")
	expect_rc(rollback(r, "never", qos), 0x83, "unknown transaction", "rollback of unknown id")
	sub.expect_no_message(0.6)
	t.check_alive(b)


def test_txn_rollback_drops_retained_too(t):
	b = txn_broker(t)
	tp = t.topic("rb")
	sub = t.client(b, version=5)
	sub.subscribe("#", 2)
	r = t.raw_connected(b, version=5)
	expect_rc(half(r, "rb", tp + "/x", b"gone", 1, retain=True), 0)
	expect_rc(half(r, "rb", tp + "/y", b"gone too", 2), 0)
	expect_rc(rollback(r, "rb"), 0)
	sub.expect_no_message(0.6)
	late = t.client(b, version=5)
	late.subscribe(tp + "/#", 1)
	late.expect_no_message(0.4)


# --- bad topics and properties -------------------------------------------------------------

def bad_topics(tp):
	return [
		"$txn",
		"$txn/",
		"$txn/half",
		"$txn/half/",
		"$txn/half/id",
		"$txn/half/id/",
		"$txn/half//" + tp,
		"$txn/half/bad id!/" + tp,
		"$txn/half/%s/%s" % ("a" * 65, tp),
		"$txn/half/id/$SYS/x",
		"$txn/half/id/$txn/half/id2/" + tp,
		"$txn/half/id/$share/g/" + tp,
		"$txn/check/G",
		"$txn/discarded/G",
		"$txn/foo/x",
		"$txn/commit/",
		"$txn/commit/bad*id",
		"$txn/commit/id/more",
		"$txn/commit/" + "b" * 65,
		"$txn/rollback/",
		"$txn/rollback/a/b",
		"$txn/rollback/x y",
	]


def test_txn_bad_topics_v5(t):
	b = txn_broker(t)
	tp = t.topic("bad")
	sub = t.client(b, version=5)
	sub.subscribe("#", 2)
	watch = t.client(b, version=5)
	watch.subscribe("$txn/#", 2)
	r = t.raw_connected(b, version=5)
	for topic in bad_topics(tp):
		for qos in (1, 2):
			expect_rc(raw_pub(r, topic, b"bad", qos), 0x90, what="%s at QoS %d" % (topic, qos))
	# The longest id and every allowed character are fine.
	good = "a" * 64
	expect_rc(half(r, good, tp + "/ok", b"64"), 0, what="id of 64 characters")
	expect_rc(half(r, "AZaz09_.-", tp + "/ok", b"chars"), 0, what="id AZaz09_.-")
	sub.expect_no_message(0.5)
	watch.expect_no_message(0.1)
	expect_rc(commit(r, good), 0)
	expect_rc(commit(r, "AZaz09_.-"), 0)
	assert [m.payload for m in sub.wait_messages(2, 5)] == [b"64", b"chars"]
	sub.expect_no_message(0.3)
	t.check_alive(b)


def test_txn_bad_first_half_properties_v5(t):
	b = txn_broker(t)
	tp = t.topic("badprop")
	sub = t.client(b, version=5)
	sub.subscribe("#", 2)
	r = t.raw_connected(b, version=5)
	cases = [
		(("check-after-ms", "0"), "check-after-ms must be 1 to 2592000000 milliseconds"),
		(("check-after-ms", "2592000001"), "check-after-ms must be 1 to 2592000000 milliseconds"),
		(("check-after-ms", "soon"), "check-after-ms must be 1 to 2592000000 milliseconds"),
		(("producer-group", "a+b"), None),
		(("producer-group", "a/#"), None),
		(("producer-group", ""), None),
	]
	for i, (kv, text) in enumerate(cases):
		expect_rc(half(r, "p%d" % i, tp, b"x", 1, up(kv)), 0x83, text, "%r" % (kv,))
		# Nothing was opened: a commit names an unknown transaction.
		expect_rc(commit(r, "p%d" % i), 0x83, "unknown transaction", "%r" % (kv,))
	expect_rc(half(r, "ok", tp, b"x", 1, up(("check-after-ms", "2592000000"),
						  ("producer-group", "a.b/c"))), 0)
	sub.expect_no_message(0.4)


def test_txn_delayed_target_delivered_after_commit(t):
	b = txn_broker(t, delayed=True)
	tp = t.topic("later")
	sub = t.client(b, version=5)
	sub.subscribe(tp + "/#", 1)
	r = t.raw_connected(b, version=5)
	expect_rc(half(r, "d", "$delayed/1/%s/a" % tp, b"later"), 0)
	expect_rc(half(r, "d", tp + "/b", b"now"), 0)
	expect_rc(half(r, "nd", "$delayed/1/%s/c" % tp, b"never"), 0)
	# The subject: longer than the delay passes before the commit; nothing comes.
	sub.expect_no_message(1.3)
	t0 = time.monotonic()
	expect_rc(commit(r, "d"), 0)
	m = sub.wait_message(3)
	assert m.payload == b"now" and m.timestamp - t0 < 1, (m.payload, m.timestamp - t0)
	m = sub.wait_message(1 + LATE + 1, "(delayed message of the transaction)")
	assert m.payload == b"later" and m.topic == tp + "/a"
	got = m.timestamp - t0
	assert 1 - EARLY <= got <= 1 + LATE, "delayed message came %.3fs after the commit" % got
	expect_rc(rollback(r, "nd"), 0)
	sub.expect_no_message(1.5)


# --- MQTT 3.1.1 ------------------------------------------------------------------------------

def test_txn_v311_refusals_plain_puback_and_logged(t):
	b = txn_broker(t)
	tp = t.topic("v4")
	sub = t.client(b, version=5)
	sub.subscribe("#", 2)
	cid = t.cid("v4prod")
	r = t.raw_connected(b, version=4, client_id=cid)
	other_cid = t.cid("v4other")
	other = t.raw_connected(b, version=4, client_id=other_cid)
	since = b.log_size()
	assert half(r, "v4", tp + "/a", b"a")[0] == 0
	assert half(r, "gone", tp + "/g", b"g")[0] == 0
	assert rollback(r, "gone")[0] == 0
	# (client, topic, qos, text of the refusal in the log)
	cases = [
		(r, cid, "$txn/foo/x", 1, "0x90"),
		(r, cid, "$txn/half/bad id!/" + tp, 2, "0x90"),
		(r, cid, "$txn/commit/nosuch", 1, "0x83: unknown transaction"),
		(r, cid, "$txn/commit/gone", 2, "0x83: transaction was rolled back"),
		(other, other_cid, "$txn/commit/v4", 1, "0x87: not a member of the producer group"),
		(other, other_cid, "$txn/half/v4/" + tp + "/b", 1,
		 "0x87: not a member of the producer group"),
	]
	for i, (c, who, topic, qos, text) in enumerate(cases):
		pid = 100 + i
		c.send(R.publish(topic, b"no", qos, pid=pid, version=4))
		p = c.expect(R.PUBACK if qos == 1 else R.PUBREC)
		# 3.1.1 has no negative acknowledgement: the packet id, nothing else
		assert p.body == R.u16(pid), "%s: not a plain ack: %r" % (topic, p)
		if qos == 2:
			c.send(R.ack(R.PUBREL, pid, 4))
			assert c.expect(R.PUBCOMP).body == R.u16(pid)
		line = b.wait_log(re.escape("client '%s': message on '%s' refused" % (who, topic)) +
				  r".*" + re.escape(text), 3, since)
		assert line, "no log line for %s from %s (%s)" % (topic, who, text)
	sub.expect_no_message(0.3)
	# The refusals changed nothing: the owner commits its one message.
	assert commit(r, "v4")[0] == 0
	m = sub.wait_message(5)
	assert m.payload == b"a" and m.topic == tp + "/a"
	sub.expect_no_message(0.3)


def test_txn_v311_paho_flow(t):
	b = txn_broker(t)
	tp = t.topic("paho4")
	# paho subscribed at QoS 1 (at QoS 2 it would hand QoS 2 messages over
	# at their PUBREL, after later ones): the order is the broker's
	sub = t.client(b, version=4)
	sub.subscribe(tp + "/#", 1)
	raw = raw_sub(t, b, tp + "/#", 2, version=4)
	prod = t.client(b, version=4)
	prod.publish("$txn/half/p4/%s/a" % tp, b"one", 1)
	prod.publish("$txn/half/p4/%s/b" % tp, b"two", 2, retain=True)
	prod.publish("$txn/half/p4/%s/c" % tp, b"three", 0)
	prod.publish("$txn/half/p4/%s/d" % tp, b"four", 1)  # after the QoS 0 one: in order
	sub.expect_no_message(0.5)
	prod.publish("$txn/commit/p4", b"", 2)
	got = sub.wait_messages(4, 5)
	assert [(m.topic, m.payload, m.qos) for m in got] == [
		(tp + "/a", b"one", 1), (tp + "/b", b"two", 1), (tp + "/c", b"three", 0),
		(tp + "/d", b"four", 1)], [(m.topic, m.payload, m.qos) for m in got]
	got = recv_pubs(raw, 4)
	assert [(d["topic"], d["payload"], d["qos"]) for d in got] == [
		(tp + "/a", b"one", 1), (tp + "/b", b"two", 2), (tp + "/c", b"three", 0),
		(tp + "/d", b"four", 1)], got
	sub.expect_no_message(0.3)
	late = t.client(b, version=4)
	late.subscribe(tp + "/#", 2)
	m = late.wait_message(3, "(retained)")
	assert m.retain and m.payload == b"two" and m.qos == 2


# --- producer groups ------------------------------------------------------------------------

@param("member", ["plain", "shared", "wildcard"])
def test_txn_group_member_commits_outsider_refused(t, member):
	b = txn_broker(t)
	tp = t.topic("group")
	g = "grp-" + t.tag
	flt = {"plain": "$txn/check/" + g, "shared": "$share/x/$txn/check/" + g,
	       "wildcard": "$txn/check/#"}[member]
	sub = t.client(b, version=5)
	sub.subscribe(tp + "/#", 1)
	owner = t.raw_connected(b, version=5)
	expect_rc(half(owner, "g1", tp + "/a", b"o1", 1, up(("producer-group", g))), 0)
	expect_rc(half(owner, "g1", tp + "/a", b"o2", 2), 0)
	m = raw_member(t, b, flt)
	outsider = t.raw_connected(b, version=5)
	elsewhere = raw_member(t, b, "$txn/check/" + g + "-other")  # another group's member
	for who in (outsider, elsewhere):
		expect_rc(half(who, "g1", tp + "/a", b"intruder"), 0x87,
			  "not a member of the producer group", "half by a non-member")
		expect_rc(commit(who, "g1"), 0x87, "not a member of the producer group",
			  "commit by a non-member")
		expect_rc(rollback(who, "g1", 2), 0x87, "not a member of the producer group",
			  "rollback by a non-member")
	sub.expect_no_message(0.4)
	# A member may add, then commit: the transaction holds exactly the 3 messages.
	expect_rc(half(m, "g1", tp + "/b", b"m1"), 0, what="half by a member (%s)" % flt)
	expect_rc(commit(m, "g1", count=3), 0, what="commit by a member (%s)" % flt)
	got = sub.wait_messages(3, 5)
	assert [m_.payload for m_ in got] == [b"o1", b"o2", b"m1"], [m_.payload for m_ in got]
	sub.expect_no_message(0.3)
	expect_rc(commit(owner, "g1"), 0, what="the owner's repeated commit")
	expect_rc(rollback(outsider, "g1"), 0x87, what="a non-member's rollback of a resolved one")


def test_txn_group_member_rolls_back_and_unsubscribed_is_outsider(t):
	b = txn_broker(t)
	tp = t.topic("group2")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 2)
	owner = t.raw_connected(b, version=5)
	expect_rc(half(owner, "g2", tp, b"x", 1, up(("producer-group", "svc"))), 0)
	expect_rc(half(owner, "g3", tp, b"y", 1, up(("producer-group", "svc"))), 0)
	# Membership goes by client id: another client's subscription does not count.
	member = t.client(b, version=5)
	member.subscribe("$txn/check/svc", 1)
	r = t.raw_connected(b, version=5, client_id=member.client_id + "x")
	expect_rc(commit(r, "g2"), 0x87, what="a client whose id differs")
	m = raw_member(t, b, "$txn/check/svc")
	expect_rc(rollback(m, "g2"), 0, what="rollback by a member")
	# The membership is the session's subscription: gone after the unsubscribe.
	m.send(R.unsubscribe(2, ["$txn/check/svc"]))
	m.expect(R.UNSUBACK)
	expect_rc(rollback(m, "g3"), 0x87, what="rollback after the unsubscribe")
	expect_rc(commit(owner, "g3"), 0, what="the owner's commit")
	expect_rc(commit(owner, "g2"), 0x83, "transaction was rolled back")
	assert sub.wait_message(5).payload == b"y"
	sub.expect_no_message(0.4)


# --- check-back -------------------------------------------------------------------------------

@param("version", [4, 5])
def test_txn_check_back_silent_producer_answered_by_member(t, version):
	b = txn_broker(t, FAST + ["plugin_opt_check_max 5"])
	tp = t.topic("silent")
	pcid = t.cid("prod")
	g = "signup" if version == 5 else pcid  # 3.1.1: the group is the client id
	checker = t.client(b, version=5)
	checker.subscribe("$txn/check/" + g, 1)
	sub = t.client(b, version=5)
	sub.subscribe(tp + "/#", 1)
	prod = t.raw_connected(b, version=version, client_id=pcid)
	props = up(("producer-group", g)) if version == 5 else None
	assert half(prod, "s1", tp + "/a", b"1", 1, props)[0] == 0
	t0 = time.monotonic()  # before the last half message: the check is due 300 ms after it
	assert half(prod, "s1", tp + "/b", b"2", 2)[0] == 0
	prod.close()  # the producer goes silent
	m1 = checker.wait_message(0.3 + LATE + 1, "(check 1)")
	assert m1.topic == "$txn/check/" + g
	check_props(m1, "s1", 1, pcid, 2)
	assert m1.timestamp - t0 >= 0.3 - 0.05, "check after %.3fs" % (m1.timestamp - t0)
	m2 = checker.wait_message(0.3 + LATE + 1, "(check 2)")
	check_props(m2, "s1", 2, pcid, 2)
	assert m2.timestamp - m1.timestamp >= 0.3 - JITTER, "checks %.3fs apart" % (
		m2.timestamp - m1.timestamp)
	assert sub.drain() == []
	# The member answers with an ordinary publish.
	checker.publish("$txn/commit/s1", b"", 1)
	got = sub.wait_messages(2, 5)
	assert [(m.topic, m.payload) for m in got] == [(tp + "/a", b"1"), (tp + "/b", b"2")]
	# Resolved: no more checks.
	checker.expect_no_message(0.9)
	sub.expect_no_message(0.1)


def test_txn_check_back_restarts_after_new_half(t):
	b = txn_broker(t, FAST + ["plugin_opt_check_max 9"])
	tp = t.topic("again")
	checker = t.client(b, version=5)
	checker.subscribe("$txn/check/again", 1)
	pcid = t.cid("prod")
	prod = t.raw_connected(b, version=5, client_id=pcid)
	expect_rc(half(prod, "a1", tp, b"1", 1, up(("producer-group", "again"))), 0)
	m = checker.wait_message(0.3 + LATE + 1)
	check_props(m, "a1", 1, pcid, 1)
	m = checker.wait_message(0.3 + LATE + 1)
	check_props(m, "a1", 2, pcid, 1)
	# The producer is alive after all: the checks start over.
	t0 = time.monotonic()
	expect_rc(half(prod, "a1", tp, b"2"), 0)
	m = checker.wait_message(0.3 + LATE + 1)
	check_props(m, "a1", 1, pcid, 2)
	assert m.timestamp - t0 >= 0.3 - 0.05, "check %.3fs after the half message" % (
		m.timestamp - t0)
	expect_rc(rollback(prod, "a1"), 0)
	checker.expect_no_message(0.9)


def test_txn_check_back_shared_subscription_one_member_each(t):
	b = txn_broker(t, FAST + ["plugin_opt_check_max 20"])
	tp = t.topic("shared")
	members = [t.client(b, version=5) for _ in range(2)]
	for c in members:
		c.subscribe("$share/x/$txn/check/svc", 1)
	prod_id = t.cid("prod")
	prod = t.raw_connected(b, version=5, client_id=prod_id)
	expect_rc(half(prod, "sh", tp, b"1", 1, up(("producer-group", "svc"))), 0)
	prod.close()
	n = 6
	seen = {0: [], 1: []}

	def enough():
		for i, c in enumerate(members):
			for m in c.drain():
				check_props(m, "sh", int(dict(ud(m))["check"]), prod_id, 1)
				seen[i].append(int(dict(ud(m))["check"]))
		return len(seen[0]) + len(seen[1]) >= n
	wait_until(enough, n * 0.3 + LATE + 3, "%d checks (%r)" % (n, seen))
	# Either member answers for the group.
	members[1].publish("$txn/rollback/sh", b"", 1)
	time.sleep(0.35)  # a check already on its way arrives; then none comes any more
	enough()
	every = sorted(seen[0] + seen[1])
	assert every == list(range(1, len(every) + 1)), "each check to exactly one member: %r" % seen
	for c in members:
		c.expect_no_message(0.4)
	expect_rc(commit(t.raw_connected(b, version=5), "sh"), 0x87)
	owner = t.raw_connected(b, version=5, client_id=prod_id)
	expect_rc(commit(owner, "sh"), 0x83, "transaction was rolled back")


def test_txn_check_after_ms_overrides_option(t):
	b = txn_broker(t, ["plugin_opt_check_after 1h", "plugin_opt_check_interval 300ms"])
	tp = t.topic("after")
	checker = t.client(b, version=5)
	checker.subscribe("$txn/check/svc", 1)
	prod = t.raw_connected(b, version=5)
	t0 = time.monotonic()
	expect_rc(half(prod, "late", tp, b"1", 1, up(("producer-group", "svc"))), 0)
	expect_rc(half(prod, "soon", tp, b"1", 1, up(("producer-group", "svc"),
						       ("check-after-ms", "700"))), 0)
	# check-after-ms counts only on the first half message
	expect_rc(half(prod, "late", tp, b"2", 1, up(("check-after-ms", "100"))), 0)
	m = checker.wait_message(0.7 + LATE + 1, "(check of 'soon')")
	assert m.payload == b"soon", m.payload
	got = m.timestamp - t0
	assert 0.7 - 0.05 <= got <= 0.7 + LATE, "check after %.3fs, check-after-ms 700" % got
	m = checker.wait_message(0.3 + LATE + 1, "(second check of 'soon')")
	assert m.payload == b"soon" and dict(ud(m))["check"] == "2"
	expect_rc(commit(prod, "soon"), 0)
	checker.expect_no_message(0.8)


def test_txn_check_max_rolls_back_with_notice_and_log(t):
	b = txn_broker(t, FAST + ["plugin_opt_check_max 2"])
	tp = t.topic("discard")
	g = "svc"
	checker = t.client(b, version=5)
	checker.subscribe("$txn/check/" + g, 1)
	ops = t.client(b, version=5)
	ops.subscribe("$txn/discarded/" + g, 1)
	sub = t.client(b, version=5)
	sub.subscribe(tp, 2)
	pcid = t.cid("gone")
	prod = t.raw_connected(b, version=5, client_id=pcid)
	expect_rc(half(prod, "x1", tp, b"1", 1, up(("producer-group", g))), 0)
	half(prod, "x1", tp, b"2", 0)
	expect_rc(half(prod, "x1", tp, b"3", 2), 0)  # (after the QoS 0 one was taken)
	prod.close()
	since = b.log_size()
	c1 = checker.wait_message(0.3 + LATE + 1, "(check 1)")
	check_props(c1, "x1", 1, pcid, 3)
	c2 = checker.wait_message(0.3 + LATE + 1, "(check 2)")
	check_props(c2, "x1", 2, pcid, 3)
	n = ops.wait_message(0.3 + LATE + 1, "(notice on $txn/discarded)")
	assert n.topic == "$txn/discarded/" + g
	check_props(n, "x1", 2, pcid, 3)
	assert n.timestamp - c2.timestamp >= 0.3 - JITTER, n.timestamp - c2.timestamp
	line = b.wait_log(r"WARNING.*'x1'.*" + re.escape(pcid) + r".*'%s'.*3 message" % g, 3, since)
	assert line, "no warning naming the transaction, owner, group and count"
	checker.expect_no_message(0.7)
	ops.expect_no_message(0.1)
	sub.expect_no_message(0.1)
	r = t.raw_connected(b, version=5, client_id=pcid)
	expect_rc(commit(r, "x1"), 0x83, "transaction was rolled back")
	expect_rc(rollback(r, "x1"), 0)
	sub.expect_no_message(0.3)


# --- quotas -----------------------------------------------------------------------------------

def test_txn_quota_max_messages(t):
	b = txn_broker(t, ["plugin_opt_max_messages 3"])
	tp = t.topic("maxmsg")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 1)
	r = t.raw_connected(b, version=5)
	for i in range(3):
		expect_rc(half(r, "q", tp, b"%d" % i, 1 + i % 2), 0)
	expect_rc(half(r, "q", tp, b"3"), 0x97, what="4th half message")
	expect_rc(half(r, "q", tp, b"3", 2), 0x97, what="4th half message at QoS 2")
	expect_rc(half(r, "q2", tp, b"other"), 0, what="another transaction")
	expect_rc(commit(r, "q", count=3), 0)
	assert [m.payload for m in sub.wait_messages(3, 5)] == [b"0", b"1", b"2"]
	sub.expect_no_message(0.4)


def test_txn_quota_max_open(t):
	b = txn_broker(t, ["plugin_opt_max_open 2"])
	tp = t.topic("maxopen")
	sub = t.client(b, version=5)
	sub.subscribe(tp, 2)
	r = t.raw_connected(b, version=5)
	expect_rc(half(r, "o1", tp, b"1"), 0)
	expect_rc(half(r, "o2", tp, b"2"), 0)
	expect_rc(half(r, "o3", tp, b"3"), 0x97, "too many open transactions")
	expect_rc(half(r, "o1", tp, b"1b"), 0, what="adding to an open one")
	expect_rc(commit(r, "o3"), 0x83, "unknown transaction")
	expect_rc(commit(r, "o1"), 0)
	expect_rc(half(r, "o3", tp, b"3"), 0, what="once one is resolved")
	expect_rc(half(r, "o4", tp, b"4"), 0x97)
	expect_rc(commit(r, "o3"), 0)
	assert [m.payload for m in sub.wait_messages(3, 5)] == [b"1", b"1b", b"3"]
	sub.expect_no_message(0.4)


# --- $SYS -------------------------------------------------------------------------------------

def test_txn_sys_counters(t):
	b = txn_broker(t, ["plugin_opt_check_interval 300ms", "plugin_opt_check_max 1"])
	tp = t.topic("sys")
	watch = t.client(b, version=5)
	watch.subscribe("$SYS/broker/txn/#", 0)
	seen = {}
	history = []

	def values(want):
		for m in watch.drain():
			leaf = m.topic.rsplit("/", 1)[1]
			seen[leaf] = m.payload.decode()
			history.append((leaf, m.payload.decode()))
		return all(seen.get(k) == v for k, v in want.items())

	wait_until(lambda: values({k: "0" for k in SYS_LEAVES}), 4, "zero counters (%r)" % seen)
	r = t.raw_connected(b, version=5)
	expect_rc(half(r, "c", tp, b"1"), 0)
	expect_rc(half(r, "c", tp, b"2"), 0)
	expect_rc(commit(r, "c"), 0)
	expect_rc(half(r, "rb", tp, b"1"), 0)
	expect_rc(rollback(r, "rb"), 0)
	# checked once after 300 ms, then discarded (check_max 1) 300 ms later
	expect_rc(half(r, "chk", tp, b"1", 1, up(("check-after-ms", "300"))), 0)
	expect_rc(half(r, "open", tp, b"1"), 0)
	wait_until(lambda: values({"open": "1", "committed": "1", "rolled_back": "2", "checks": "1",
				   "discarded": "1"}), 5, "counters (%r)" % seen)

	def next_oldest():
		history.clear()
		wait_until(lambda: values({}) and any(k == "oldest_open_ms" for k, _ in history), 3,
			   "the next oldest_open_ms")
		return int([v for k, v in history if k == "oldest_open_ms"][-1])
	first = next_oldest()
	second = next_oldest()
	assert 0 < first and second >= first + 500, "oldest_open_ms %d, then %d" % (first, second)
	# Retained: a late subscriber gets every one at once.
	late = t.client(b, version=5)
	late.subscribe("$SYS/broker/txn/#", 0)
	ms = late.wait_messages(len(SYS_LEAVES), 3)
	assert all(m.retain for m in ms) and {m.topic.rsplit("/", 1)[1] for m in ms} == set(
		SYS_LEAVES), [(m.topic, m.retain) for m in ms]
	expect_rc(rollback(r, "open"), 0)
	wait_until(lambda: values({"open": "0", "rolled_back": "3", "oldest_open_ms": "0"}), 4,
		   "counters after the last rollback (%r)" % seen)


# --- durability -------------------------------------------------------------------------------

@timeout(40)
@param("how", ["sigterm", "sigkill"])
def test_txn_survives_restart(t, how):
	b = txn_broker(t, ["plugin_opt_check_after 1h", "plugin_opt_check_interval 400ms",
			   "plugin_opt_check_max 50"])
	tp = t.topic("dur")
	pcid = t.cid("owner")
	checker = t.client(b, version=5)
	checker.subscribe("$txn/check/svc", 1)
	sub = t.client(b, version=5)
	sub.subscribe(tp + "/#", 2)
	r = t.raw_connected(b, version=5, client_id=pcid)
	g = up(("producer-group", "svc"))
	expect_rc(half(r, "open", tp + "/o", b"o1", 1, g), 0)
	expect_rc(half(r, "open", tp + "/o", b"o2", 2, None, True), 0)
	expect_rc(half(r, "done", tp + "/d", b"d1", 1, g), 0)
	expect_rc(commit(r, "done"), 0)
	expect_rc(half(r, "dropped", tp + "/x", b"x1", 2, g), 0)
	expect_rc(rollback(r, "dropped"), 0)
	expect_rc(half(r, "asked", tp + "/a", b"a1", 1, up(("producer-group", "svc"),
							   ("check-after-ms", "300"))), 0)
	assert sub.wait_message(5).payload == b"d1"
	c = [checker.wait_message(LATE + 2, "(check %d before the restart)" % i) for i in (1, 2)]
	assert [dict(ud(m))["check"] for m in c] == ["1", "2"], [ud(m) for m in c]
	for m in c:
		assert m.payload == b"asked"
	r.close()
	checker.disconnect()
	last = max(int(dict(ud(m))["check"]) for m in c + checker.drain())
	sub.disconnect()
	since = b.log_size()
	if how == "sigkill":
		b.kill9()
		b.start()
	else:
		b.restart()
	assert b.wait_log(r"txn: 2 open transaction\(s\) restored", 3, since), "no restore log line"
	checker = t.client(b, version=5)
	checker.subscribe("$txn/check/svc", 1)
	sub = t.client(b, version=5)
	sub.subscribe(tp + "/#", 2)
	# The check count continues where it was (the first after the restart may
	# have gone out before the checker was back).
	m = checker.wait_message(0.4 + LATE + 2, "(check after the restart)")
	n = int(dict(ud(m))["check"])
	assert m.payload == b"asked" and n > last, "check %d after the restart, %d before" % (n, last)
	check_props(m, "asked", n, pcid, 1)
	m = checker.wait_message(0.4 + LATE + 1, "(next check)")
	assert int(dict(ud(m))["check"]) == n + 1, ud(m)
	r = t.raw_connected(b, version=5, client_id=pcid)
	expect_rc(commit(r, "done"), 0, what="commit of committed after restart")
	expect_rc(rollback(r, "done"), 0x83, "transaction was committed")
	expect_rc(commit(r, "dropped"), 0x83, "transaction was rolled back")
	expect_rc(rollback(r, "dropped"), 0, what="rollback of rolled back after restart")
	sub.expect_no_message(0.4)
	raw = raw_sub(t, b, tp + "/#", 2)
	expect_rc(half(r, "open", tp + "/o", b"o3"), 0, what="adding after the restart")
	expect_rc(commit(r, "open", count=3), 0, what="commit after the restart")
	want = [(tp + "/o", b"o1", 1), (tp + "/o", b"o2", 2), (tp + "/o", b"o3", 1)]
	got = recv_pubs(raw, 3)
	assert [(d["topic"], d["payload"], d["qos"]) for d in got] == want, got
	got = sub.wait_messages(3, 5)
	assert sorted((m.topic, m.payload, m.qos) for m in got) == want, got
	late = t.client(b, version=5)
	late.subscribe(tp + "/o", 2)
	m = late.wait_message(3, "(the retained message of the transaction)")
	assert m.retain and m.payload == b"o2"
	# The group survived too: a member answers the open one.
	checker.publish("$txn/rollback/asked", b"", 1)
	expect_rc(commit(r, "asked"), 0x83, "transaction was rolled back")
	sub.expect_no_message(0.3)


# --- SIGKILL at random moments ------------------------------------------------------------------

STRESS_QOS = (2, 1, 2, 2)  # the half messages of one transaction, by QoS
STRESS_KILLS = 10
STRESS_GAP = (0.2, 0.9)  # seconds between a restart and the next kill
EXPIRY = 3600


def stress_connect(b, cid, clean, version=5):
	"""A raw client, or None while the broker is down: (client, session present)."""
	try:
		r = R.Raw(b, version=version, timeout=2.0)
	except OSError:
		return None, False
	try:
		pr = [(R.SESSION_EXPIRY, EXPIRY)] if not clean else None
		sp, rc, _ = r.handshake(cid, clean=clean, properties=pr, expect_rc=None)
	except (OSError, R.Closed, AssertionError):
		r.close()
		return None, False
	if rc != 0:
		r.close()
		return None, False
	return r, sp


class StressSub(threading.Thread):
	"""A persistent QoS 2 subscriber that keeps its QoS 2 state across
	connections (a packet id is remembered from PUBLISH until PUBREL) and
	records every application message it is given."""

	def __init__(self, b, cid, flt, stop):
		super().__init__(daemon=True)
		self.b, self.cid, self.flt, self.stop = b, cid, flt, stop
		# (payload, qos, dup, packet id, connection number, time) of each application
		# message, in arrival order
		self.got = []
		self.ignored = []  # the same for QoS 2 PUBLISHes taken as resends (id held)
		self.awaiting_rel = set()
		self.errors = []
		self.connects = 0
		self.dups = 0
		self.subscribed = threading.Event()
		self.lock = threading.Lock()

	def run(self):
		try:
			self.body()
		except Exception as e:
			self.errors.append("subscriber: %s: %s" % (type(e).__name__, e))

	def body(self):
		while not self.stop.is_set():
			r, sp = stress_connect(self.b, self.cid, False)
			if r is None:
				time.sleep(0.03)
				continue
			if self.connects and not sp:
				self.errors.append("subscriber: session present 0 on reconnect %d" %
						   self.connects)
			self.connects += 1
			try:
				if not self.subscribed.is_set():
					r.send(R.subscribe(1, [(self.flt, 2)]))
					codes = r.expect(R.SUBACK).suback()[1]
					if codes != [2]:
						self.errors.append("subscriber: SUBACK %r" % codes)
					self.subscribed.set()
				while not self.stop.is_set():
					try:
						p = r.recv(0.05)
					except socket.timeout:
						continue
					self.on_packet(r, p)
			except (R.Closed, OSError):
				pass
			r.close()

	def on_packet(self, r, p):
		if p.type == R.PUBLISH:
			d = p.publish()
			self.dups += d["dup"]
			if d["qos"] == 2:
				rec = (d["payload"], 2, d["dup"], d["pid"], self.connects, time.time())
				with self.lock:
					if d["pid"] in self.awaiting_rel:
						self.ignored.append(rec)
					else:
						self.got.append(rec)
				self.awaiting_rel.add(d["pid"])
				r.send(R.ack(R.PUBREC, d["pid"]))
			elif d["qos"] == 1:
				with self.lock:
					self.got.append((d["payload"], 1, d["dup"], d["pid"],
							 self.connects, time.time()))
				r.send(R.ack(R.PUBACK, d["pid"]))
			else:
				self.errors.append("subscriber: a QoS 0 message %r" % d["payload"])
		elif p.type == R.PUBREL:
			self.awaiting_rel.discard(p.pid())
			r.send(R.ack(R.PUBCOMP, p.pid()))
		else:
			self.errors.append("subscriber: unexpected %r" % p)

	def payloads(self):
		with self.lock:
			return list(self.got)


class Lost(Exception):
	"""The connection went (the broker was killed)."""


class StressProducer(threading.Thread):
	"""Runs transactions of len(STRESS_QOS) half messages, then a commit (or, one in
	four, a rollback) with txn-count, one transaction at a time, under one client
	id so that a new connection after a kill is still the owner. Every other
	transaction sends its half messages and its commit in one write, without
	waiting (the broker takes them in order: the commit's txn-count refuses it
	if a half message was lost); the others wait for each acknowledgement. A
	transaction whose outcome got no answer (commit? rollback?) is unknown
	until it is resolved after the last restart."""

	def __init__(self, b, cid, base, stop_sending):
		super().__init__(daemon=True)
		self.b, self.cid, self.base, self.stop_sending = b, cid, base, stop_sending
		self.state = {}  # txn number -> committed | rolled_back | commit? | rollback?
		self.resolved_by = {}  # txn number -> (state, reason code, reason string)
		self.errors = []
		self.done = threading.Event()
		self.r = None
		self.pids = Pids()
		self.k = 0

	def run(self):
		try:
			self.body()
		except Exception as e:
			self.errors.append("producer: %s: %s" % (type(e).__name__, e))
		finally:
			self.done.set()
			if self.r:
				self.r.close()

	def connect(self):
		while True:
			r, _ = stress_connect(self.b, self.cid, True)
			if r is not None:
				self.r = r
				return
			time.sleep(0.03)

	def recv(self):
		try:
			return self.r.recv(3)
		except (R.Closed, OSError):
			raise Lost()

	def send(self, data):
		try:
			self.r.send(data)
		except OSError:
			raise Lost()
		if self.r.send_failed:
			raise Lost()

	def collect(self, pending):
		"""pending: {packet id: qos}; completes each exchange. {packet id: (rc, why)}."""
		out, rel = {}, set()
		while pending:
			p = self.recv()
			pid = p.pid() if p.type in (R.PUBACK, R.PUBREC, R.PUBCOMP) else None
			qos = pending.get(pid)
			if p.type == R.PUBACK and qos == 1:
				out[pid] = p.ack()[1:]
				del pending[pid]
			elif p.type == R.PUBREC and qos == 2 and pid not in rel:
				out[pid] = p.ack()[1:]
				if out[pid][0] >= 0x80:
					del pending[pid]
				else:
					rel.add(pid)
					self.send(R.ack(R.PUBREL, pid))
			elif p.type == R.PUBCOMP and pid in rel:
				rel.discard(pid)
				del pending[pid]
			else:
				self.errors.append("producer: unexpected %r" % p)
		return {pid: (rc, reason(props)) for pid, (rc, props) in out.items()}

	def publish(self, topic, payload, qos, props=None):
		"""(reason code, reason string) once the exchange is complete."""
		pid = self.pids()
		self.send(R.publish(topic, payload, qos, pid=pid, properties=props))
		return self.collect({pid: qos})[pid]

	def count(self):
		return up(("txn-count", str(len(STRESS_QOS))))

	def run_one(self, k):
		tid = "s%d" % k
		rb = k % 4 == 3
		self.state[k] = "rollback?" if rb else "commit?"
		pkts = []
		for i, qos in enumerate(STRESS_QOS):
			pid = self.pids()
			pkts.append((pid, qos, R.publish("$txn/half/%s/%s/t%d" % (tid, self.base, i),
							 b"%d:%d" % (k, i), qos, pid=pid)))
		pid = self.pids()
		if rb:
			pkts.append((pid, 1, R.publish("$txn/rollback/" + tid, b"", 1, pid=pid)))
		else:
			pkts.append((pid, 1, R.publish("$txn/commit/" + tid, b"", 1, pid=pid,
						       properties=self.count())))
		res = {}
		if k % 2 == 0:
			try:
				self.r.send_many([p for _, _, p in pkts])
			except OSError:
				raise Lost()
			res = self.collect({pid: qos for pid, qos, _ in pkts})
		else:
			for pid, qos, p in pkts:
				self.send(p)
				res.update(self.collect({pid: qos}))
				if res[pid][0]:
					break
		bad = [(i, rc, why) for i, (pid, _, _) in enumerate(pkts)
		       for rc, why in [res.get(pid, (None, None))] if rc]
		if bad:
			self.errors.append("producer: %s refused: %r" % (tid, bad))
			return
		self.state[k] = "rolled_back" if rb else "committed"

	def resolve(self, k):
		"""After the last restart: what became of transaction k."""
		tid = "s%d" % k
		st = self.state[k]
		if st not in ("commit?", "rollback?"):
			return
		if st == "commit?" and k % 8 < 4:
			rc, why = self.publish("$txn/commit/" + tid, b"", 1, self.count())
			if rc == 0:
				self.state[k] = "committed"
			elif rc == 0x83 and why == "unknown transaction":
				self.state[k] = "rolled_back"  # not one half message was stored
			elif rc == 0x83 and why.startswith("transaction holds "):
				rc2, why2 = self.publish("$txn/rollback/" + tid, b"", 1)
				if rc2:
					self.errors.append("producer: rollback of the incomplete %s: "
							   "0x%02x %s" % (tid, rc2, why2))
				self.state[k] = "rolled_back"
			else:
				self.errors.append("producer: repeated commit of %s: 0x%02x %s" % (tid, rc, why))
		else:
			# A rollback asks too: it succeeds if the commit was not stored.
			rc, why = self.publish("$txn/rollback/" + tid, b"", 1)
			if rc == 0 or (rc == 0x83 and why == "unknown transaction"):
				self.state[k] = "rolled_back"
			elif st == "commit?" and rc == 0x83 and why == "transaction was committed":
				self.state[k] = "committed"
			else:
				self.errors.append("producer: rollback of %s (%s): 0x%02x %s" % (
					tid, st, rc, why))
		self.resolved_by[k] = (st, rc, why)

	def body(self):
		while not self.stop_sending.is_set():
			self.connect()
			try:
				while not self.stop_sending.is_set():
					self.run_one(self.k)
					self.k += 1
			except Lost:
				self.k += 1
			self.r.close()
			self.r = None
		self.connect()
		try:
			for k in sorted(self.state):
				self.resolve(k)
		except Lost:
			self.errors.append("producer: connection lost while resolving")


@timeout(60)
def test_txn_sigkill_commits_whole_and_exactly_once(t):
	b = txn_broker(t, ["max_queued_messages 0"])
	seed = int(os.environ.get("CRASH_SEED") or int.from_bytes(os.urandom(4), "big"))
	rng = random.Random(seed)
	print("# txn crash test: seed %d (CRASH_SEED=%d repeats the kill schedule)" % (seed, seed),
	      flush=True)
	base = t.topic("kill")
	stop = threading.Event()
	stop_sending = threading.Event()
	sub = StressSub(b, t.cid("sub"), base + "/#", stop)
	prod = StressProducer(b, t.cid("prod"), base, stop_sending)
	try:
		sub.start()
		wait_until(sub.subscribed.is_set, 10, "the subscription")
		prod.start()
		for _ in range(STRESS_KILLS):
			time.sleep(rng.uniform(*STRESS_GAP))  # the subject: a random moment to crash
			b.kill9()
			b.start()
		time.sleep(rng.uniform(*STRESS_GAP))
		stop_sending.set()
		wait_until(prod.done.is_set, 15, "the producer to resolve its transactions")
		n = len(STRESS_QOS)
		committed = {k for k, s in prod.state.items() if s == "committed"}
		want = {b"%d:%d" % (k, i) for k in committed for i in range(n)}
		wait_until(lambda: want <= {g[0] for g in sub.payloads()}, 20,
			   "every message of the %d committed transactions" % len(committed))
		time.sleep(0.5)  # a late duplicate or a stray message would show here
	except AssertionError:
		pass  # reported in detail below
	finally:
		stop_sending.set()
		stop.set()
		sub.join(3)
		prod.join(3)
	n = len(STRESS_QOS)
	got = sub.payloads()
	committed = sorted(k for k, s in prod.state.items() if s == "committed")
	unresolved = sorted(k for k, s in prod.state.items() if s not in ("committed", "rolled_back"))
	problems = []
	by_txn = {}
	for payload, qos, dup, pid, conn, when in got:
		k, i = (int(x) for x in payload.split(b":"))
		by_txn.setdefault(k, []).append((i, qos, dup, pid, conn, when))
	for k in committed:
		arr = by_txn.get(k, [])
		idx = [a[0] for a in arr]
		missing = sorted(set(range(n)) - set(idx))
		if missing:
			held = [g for g in sub.ignored for i in missing if g[0] == b"%d:%d" % (k, i)]
			problems.append("committed s%d (%s) lacks messages %s: got %r%s" % (
				k, prod.resolved_by.get(k, "acknowledged"), missing, arr,
				"; its PUBLISH came under a packet id the subscriber still held "
				"(QoS 2, no PUBREL yet), so it was taken for a resend: %r" % held
				if held else ""))
		twice = [i for i, q in enumerate(STRESS_QOS) if q == 2 and idx.count(i) > 1]
		if twice:
			problems.append("committed s%d: QoS 2 message(s) %s delivered more than once "
					"(message, qos, dup, packet id, connection, time): %r" % (
						k, twice, arr))
		if any(a[1] != STRESS_QOS[a[0]] for a in arr):
			problems.append("s%d delivered at the wrong QoS: %r" % (k, arr))
		firsts = []
		for i in idx:
			if i not in firsts:
				firsts.append(i)
		if firsts != sorted(firsts):
			problems.append("s%d: first arrivals out of order: %r" % (k, arr))
	for k in sorted(set(by_txn) - set(committed)):
		problems.append("s%d (%s, %s) was not committed but delivered: %r" % (
			k, prod.state.get(k), prod.resolved_by.get(k), by_txn[k]))
	errors = sub.errors + prod.errors
	states = {}
	for s in prod.state.values():
		states[s] = states.get(s, 0) + 1
	how = {}
	for st, rc, why in prod.resolved_by.values():
		key = "%s 0x%02x%s" % (st, rc, " " + why if why else "")
		how[key] = how.get(key, 0) + 1
	# commits acknowledged but not yet delivered when the broker died
	to_finish = sum(int(x) for x in re.findall(r"restored, (\d+) commit\(s\) to finish",
						   b.log_text()))
	print("# txn crash test: %d kills, %d transactions (%r), resolved after the end: %r, "
	      "%d commits finished after a restart, %d messages received, %d DUP deliveries, "
	      "%d subscriber connections, seed %d" % (
		      STRESS_KILLS, len(prod.state), states, how, to_finish, len(got), sub.dups,
		      sub.connects, seed), flush=True)
	if unresolved:
		errors.append("unresolved: %r" % [(k, prod.state[k]) for k in unresolved])
	assert not problems and not errors, "seed %d:\n%s" % (seed, "\n".join(problems[:10] +
									     errors[:6]))
	assert len(committed) >= 20, "only %d transactions committed" % len(committed)
	assert sub.connects >= STRESS_KILLS + 1, "the subscriber connected %d times" % sub.connects
