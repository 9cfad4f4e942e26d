"""The plugin layer (include/sluice_plugin.h), through the test plugin.

Each test starts its own sluice with the test plugin (tests/plugin/test_plugin.c)
loaded, drives one event or verdict with real MQTT clients (paho through
clients.py for subscribers, a raw client where the bytes of PUBACK/PUBREC/
SUBACK matter) and asserts what a client can observe: messages received or
not, reason codes, acknowledgement properties, timing, and the plugin's
counters, which it publishes on the retained topic $tp/stats when asked
through tp/stats/get.  The test_plugin_*refuses_start tests check start-up
failures, two of them with small shared objects compiled on the spot.

Needs SLUICE_TEST_PLUGIN, the built tests/plugin/.libs/test_plugin.so (make
check sets it); without it every test is skipped, saying why.  Client ids
are fixed (the plugin decides by them); every test has a broker of its own.
"""

import os
import queue
import re
import shutil
import socket
import subprocess
import tempfile
import time
from itertools import count

import brokerlib
import rawmqtt as R
from clients import assert_no_message as assert_nothing, get_message as get, get_messages as get_n, publish_props
from harness import Skip, timeout

PLUGIN = os.environ.get("SLUICE_TEST_PLUGIN")
QUIET = 0.6  # how long "nothing arrives" is watched for


def need_plugin():
	if brokerlib.is_mosquitto():
		raise Skip("the plugin layer is sluice's own (INTEG_BROKER=mosquitto)")
	if not PLUGIN:
		raise Skip("SLUICE_TEST_PLUGIN is not set (the built tests/plugin/.libs/test_plugin.so)")
	if not os.path.isfile(PLUGIN):
		raise Skip("SLUICE_TEST_PLUGIN=%s does not exist" % PLUGIN)


def plugin_lines(plugins=None):
	"""Config lines: plugins is [(path, {option: value})], None = the test plugin alone."""
	if plugins is None:
		plugins = [(PLUGIN, {})]
	lines = ["sys_interval 0"]
	for path, opts in plugins:
		lines.append("plugin %s" % path)
		lines.extend("plugin_opt_%s %s" % kv for kv in opts.items())
	return lines


def plugin_broker(t, plugins=None, extra=()):
	"""A private sluice with the plugins loaded; its log also holds the plugin's stderr."""
	need_plugin()
	return t.broker(plugin_lines(plugins) + list(extra))


def start_fail(t, plugins):
	"""A broker that must refuse to start; returns its output."""
	need_plugin()
	try:
		t.fresh_broker(plugin_lines(plugins))
	except brokerlib.BrokerError:
		pass
	else:
		raise AssertionError("sluice started although it should not have:\n%s" %
				     t.brokers[-1][0].log_tail())
	b = t.brokers[-1][0]
	try:
		rc = b.proc.wait(10)
	except subprocess.TimeoutExpired:
		raise AssertionError("sluice still running after 10s:\n%s" % b.log_text())
	b.stop()  # collects the status and closes the log: an expected exit
	assert rc != 0, "broker exited 0 although start-up failed"
	try:
		socket.create_connection(("127.0.0.1", b.port), timeout=0.5).close()
	except OSError:
		pass
	else:
		raise AssertionError("something listens on the port of a broker that failed")
	return b.log_text()


def compile_so(tmp, name, source):
	cc = shutil.which("gcc") or shutil.which("cc")
	if not cc:
		raise Skip("no C compiler to build %s" % name)
	src = os.path.join(tmp, name + ".c")
	so = os.path.join(tmp, name + ".so")
	with open(src, "w") as f:
		f.write(source)
	subprocess.run([cc, "-shared", "-fPIC", "-o", so, src], check=True, timeout=60)
	return so


# -- the plugin's counters -------------------------------------------------------

def parse_stats(payload):
	out = {}
	for word in payload.decode().split():
		k, _, v = word.partition("=")
		out[k] = int(v)
	return out


def stats(t, b, prefix="tp", what="stats/get", timeout=3.0):
	"""The plugin's counters: asks on P/stats/get (or P/what), reads $P/stats."""
	c = getattr(b, "stats_client", None)
	if c is None:
		# Named so it sorts after every member the tests put in group tpg.
		c = b.stats_client = t.client(b, "zz-stats")
		c.subscribe("$%s/stats" % prefix, 0, retain_handling=2)
	c.drain()
	c.publish("%s/%s" % (prefix, what), b"", 0)
	m = get(c, timeout)
	if m is None:
		raise AssertionError("no $%s/stats after %s/%s within %.1fs\n%s"
				     % (prefix, prefix, what, timeout, b.log_text()))
	return parse_stats(m.payload)


def wait_stats(t, b, pred, timeout=3.0, **kw):
	"""Asks for the counters until pred(stats) holds; returns the last ones."""
	deadline = time.monotonic() + timeout
	while True:
		s = stats(t, b, **kw)
		if pred(s) or time.monotonic() > deadline:
			return s
		time.sleep(0.1)


def stop_broker(b):
	"""SIGTERM (after a normal DISCONNECT of the stats client); returns the exit status."""
	c = getattr(b, "stats_client", None)
	if c is not None:
		c.disconnect()
		b.stats_client = None
	return b.stop()


# -- clients ----------------------------------------------------------------------



def assert_log(b, pattern):
	assert re.search(pattern, b.log_text()), "broker log lacks /%s/" % pattern


def user_props(msg):
	p = getattr(msg, "properties", None)
	return list(getattr(p, "UserProperty", []) or []) if p else []


_pids = count(1)


class Ack:
	"""A PUBACK or PUBREC read by a raw client."""

	def __init__(self, p):
		self.ptype = p.type
		self.pid, self.reason, self.props = p.ack()

	def user_props(self):
		return R.prop_all(self.props, R.USER_PROPERTY)

	def reason_string(self):
		return R.prop(self.props, R.REASON_STRING)


def raw_publish(r, topic, payload=b"", qos=1, props=None, retain=False):
	"""Sends a PUBLISH from a raw client; for QoS 1/2 returns its PUBACK/PUBREC as
	an Ack (at QoS 2 after completing the PUBREL/PUBCOMP exchange unless refused)."""
	pid = next(_pids) % 65535 + 1
	r.send(R.publish(topic, payload, qos, retain, pid=pid, version=r.version,
			 properties=props))
	if not qos:
		return None
	want = R.PUBACK if qos == 1 else R.PUBREC
	while True:
		p = r.recv(5)
		if p.type == want:
			break  # anything else (a PUBLISH to us, ...) is not what we wait for
	ack = Ack(p)
	assert ack.pid == pid, "%s for packet id %d, sent %d" % (p.name, ack.pid, pid)
	if qos == 2 and ack.reason < 0x80:
		r.send(R.ack(R.PUBREL, pid, r.version))
		r.expect(R.PUBCOMP, skip=(R.PUBLISH,))
	return ack


def raw_subscribe(r, filters):
	"""filters: [(filter, options byte)]; returns the SUBACK codes."""
	r.send(R.subscribe(next(_pids) % 65535 + 1, filters, r.version))
	return r.expect(R.SUBACK, skip=(R.PUBLISH,)).suback()[1]


# -- PUBLISH: REJECT --------------------------------------------------------------

def test_plugin_publish_reject_v5_puback_reason(t):
	b = plugin_broker(t)
	sub = t.client(b, "sub-1")
	sub.subscribe("tp/#", 1)
	pub = t.raw_connected(b, client_id="pub-v5")
	ack = raw_publish(pub, "tp/reject/a", b"no", qos=1)
	assert ack.ptype == R.PUBACK
	assert ack.reason == 0x99, "PUBACK reason code 0x%02x" % ack.reason
	assert ack.reason_string() == "tp says no", ack.reason_string()
	rec = raw_publish(pub, "tp/reject/b", b"no", qos=2)
	assert rec.ptype == R.PUBREC
	assert rec.reason == 0x99, "PUBREC reason code 0x%02x" % rec.reason
	assert_nothing(sub, "rejected message delivered")
	ok = raw_publish(pub, "tp/ok/a", b"yes", qos=1)
	assert ok.reason < 0x80
	m = get(sub, 3)
	assert m is not None, "a passed message after the rejected ones"
	assert (m.topic, m.payload) == ("tp/ok/a", b"yes")
	assert stats(t, b)["reject"] == 2


def test_plugin_publish_reject_v311_dropped(t):
	b = plugin_broker(t)
	sub = t.client(b, "sub-1", version=4)
	sub.subscribe("tp/#", 1)
	pub = t.raw_connected(b, version=4, client_id="pub-v311")
	raw_publish(pub, "tp/reject/a", b"no", qos=0)
	try:
		raw_publish(pub, "tp/reject/b", b"no", qos=1)  # a 3.1.1 PUBACK has no reason code
	except (R.Closed, ConnectionError, socket.timeout):
		pass  # closing the connection is also allowed [MQTT-3.3.5-2]
	assert_nothing(sub, "rejected 3.1.1 message delivered")
	other = t.raw_connected(b, version=4, client_id="pub-ok")
	raw_publish(other, "tp/ok/a", b"yes", qos=1)
	m = get(sub, 3)
	assert m is not None
	assert m.topic == "tp/ok/a", m.topic
	assert stats(t, b)["reject"] == 2


# -- PUBLISH: TAKE, route, msg_rewrite, ack_user_prop, kv -------------------------------

def test_plugin_publish_take_delays_rewrites_and_acks_with_user_prop(t):
	b = plugin_broker(t)
	out = t.client(b, "sub-out")
	out.subscribe("tp/out/#", 1)
	watch = t.client(b, "sub-take")
	watch.subscribe("tp/take/#", 1)
	pub = t.raw_connected(b, client_id="pub-take")
	t0 = time.monotonic()
	ack = raw_publish(pub, "tp/take/700/tp/out/a", b"later", qos=1,
			  props=[(R.USER_PROPERTY, ("tp-drop", "x")), (R.USER_PROPERTY, ("keep", "y"))])
	t_ack = time.monotonic() - t0
	assert ack.reason < 0x80, "PUBACK of a taken message: 0x%02x" % ack.reason
	assert t_ack < 0.5, "the PUBACK must not wait for the release (%.3fs)" % t_ack
	acks = dict(ack.user_props())
	assert "tp-ack" in acks, "PUBACK user property from ack_user_prop: %r" % acks
	assert re.search(r"^\d+$", acks["tp-ack"]), acks
	m = get(out, 4)
	assert m is not None, "taken message never routed"
	waited = m.timestamp - t0
	assert waited >= 0.700 - 0.002, "routed before its delay (%.3fs)" % waited
	assert waited < 3.0, waited
	assert (m.topic, m.payload, m.qos) == ("tp/out/a", b"later", 1)
	assert user_props(m) == [("keep", "y")], "msg_rewrite must drop tp-drop only: %r" % \
		user_props(m)
	assert_nothing(watch, "a taken message went to its original topic")
	assert_nothing(out, "taken message routed twice", 0.2)
	assert_log(b, r"tp: took message %s on 'tp/take/700/tp/out/a'" % acks["tp-ack"])
	s = stats(t, b)
	assert (s["take"], s["routed"], s["routeerr"], s["kverr"]) == (1, 1, 0, 0), s


def test_plugin_publish_take_v311_publisher(t):
	b = plugin_broker(t)
	out = t.client(b, "sub-out", version=4)
	out.subscribe("tp/out/#", 0)
	pub = t.client(b, "pub-v311", version=4)
	t0 = time.monotonic()
	pub.publish("tp/take/300/tp/out/b", b"v311", qos=1)
	m = get(out, 4)
	assert m is not None, "taken 3.1.1 message never routed"
	assert m.timestamp - t0 >= 0.300 - 0.002, m.timestamp - t0
	assert (m.topic, m.payload) == ("tp/out/b", b"v311")


def test_plugin_publish_take_qos2_pubrec_user_prop(t):
	b = plugin_broker(t)
	out = t.client(b, "sub-out")
	out.subscribe("tp/out/#", 2)
	pub = t.raw_connected(b, client_id="pub-q2")
	t0 = time.monotonic()
	rec = raw_publish(pub, "tp/take/200/tp/out/q2", b"two", qos=2)  # PUBREL/PUBCOMP too
	assert rec.ptype == R.PUBREC
	assert rec.reason < 0x80
	assert re.search(r"^\d+$", dict(rec.user_props()).get("tp-ack", "")), \
		"PUBREC user property from ack_user_prop: %r" % rec.user_props()
	got = get_n(out, 2, 2)
	assert [(m.topic, m.qos) for m in got] == [("tp/out/q2", 2)], "exactly once: %r" % \
		[(m.topic, m.qos) for m in got]
	assert got[0].timestamp - t0 >= 0.200 - 0.002


def test_plugin_publish_take_restart_expiry(t):
	b = plugin_broker(t)
	out = t.client(b, "sub-out")
	out.subscribe("tp/out/#", 1)
	pub = t.client(b, "pub")
	# Expires 1 s after publishing, but the plugin rewrites it with
	# restart_expiry after 1.5 s: it must still arrive, with <= 1 s left.
	pub.publish("tp/take/1500/tp/out/e", b"e", qos=1,
		    properties=publish_props(MessageExpiryInterval=1))
	m = get(out, 4)
	assert m is not None, "msg_rewrite(restart_expiry) did not restart the expiry"
	left = getattr(m.properties, "MessageExpiryInterval", None)
	assert left is not None, "the expiry interval is kept by msg_rewrite"
	assert left in (0, 1), left


def test_plugin_kv_scan_counts_taken_messages(t):
	b = plugin_broker(t)
	pub = t.client(b, "pub")
	s = stats(t, b)
	assert (s["starts"], s["kverr"]) == (1, 0), "kv self-test at START: %r" % s
	pub.publish("tp/take/1500/tp/out/1", b"1", qos=1)
	pub.publish("tp/take/1500/tp/out/2", b"2", qos=1)
	s = stats(t, b, what="kv/scan")
	assert s["kvtake"] == 2, "kv_scan of take/ while two are taken: %r" % s
	s = wait_stats(t, b, lambda x: x["routed"] == 2, timeout=5)
	assert s["routed"] == 2, s
	s = stats(t, b, what="kv/scan")
	assert (s["kvtake"], s["kverr"]) == (0, 0), "kv_del after routing: %r" % s


# -- DELIVER: SKIP, HOLD + release, HOLD + discard ----------------------------------

def test_plugin_deliver_skip_by_client_id(t):
	b = plugin_broker(t)
	skip = t.client(b, "skip-me")
	keep = t.client(b, "keep-me", version=4)
	for c in (skip, keep):
		c.subscribe([("tp/skip/#", 1), ("tp/plain/#", 1)])
	pub = t.client(b, "pub")
	pub.publish("tp/skip/a", b"s", qos=1)
	m = get(keep, 3)
	assert m is not None
	assert m.topic == "tp/skip/a", m.topic
	assert_nothing(skip, "SKIP verdict ignored")
	pub.publish("tp/plain/a", b"p", qos=1)
	m = get(skip, 3)
	assert m is not None, "skip-me no longer gets other topics"
	assert m.topic == "tp/plain/a", m.topic
	assert stats(t, b)["skip"] == 1


def test_plugin_deliver_hold_released_after_300ms(t):
	b = plugin_broker(t)
	s1 = t.client(b, "hold-q1")
	s1.subscribe("tp/hold/#", 1)
	s0 = t.client(b, "hold-q0", version=4)
	s0.subscribe("tp/hold/#", 0)
	pub = t.raw_connected(b, client_id="pub")
	t0 = time.monotonic()
	ack = raw_publish(pub, "tp/hold/a", b"h", qos=1)
	assert ack.reason < 0x80
	for c, qos in ((s1, 1), (s0, 0)):
		m = get(c, 3)
		assert m is not None, "held delivery never released (qos %d)" % qos
		assert m.timestamp - t0 >= 0.300 - 0.002, "held delivery came early (%.3fs)" % \
			(m.timestamp - t0)
		assert (m.topic, m.payload, m.qos) == ("tp/hold/a", b"h", qos)
		assert_nothing(c, "a released delivery came twice", 0.3)
	s = wait_stats(t, b, lambda x: x["acked"] >= 1)
	assert (s["hold"], s["release"], s["holderr"], s["rehold"]) == (2, 2, 0, 0), \
		"release() returned an error or DELIVER was asked again: %r" % s
	assert s["acked"] == 1, "the QoS 1 released delivery was acknowledged: %r" % s


def test_plugin_deliver_hold_discarded(t):
	b = plugin_broker(t)
	sub = t.client(b, "disc-1")
	sub.subscribe("tp/discard/#", 1)
	pub = t.client(b, "pub")
	pub.publish("tp/discard/a", b"d", qos=1)
	assert_nothing(sub, "discarded delivery arrived", 1.0)
	s = wait_stats(t, b, lambda x: x["discard"] >= 1)
	assert (s["hold"], s["discard"], s["holderr"]) == (1, 1, 0), s
	# The plugin ended it itself: no DROPPED (plugin.c: a hold ends exactly once).
	assert (s["dropped"], s["acked"]) == (0, 0), s
	assert_log(b, r"tp: discarded hold 1: 0")


def test_plugin_deliver_hold_dropped_when_session_ends(t):
	b = plugin_broker(t)
	sub = t.client(b, "gone-1")
	sub.subscribe("tp/holdlong/#", 1)
	pub = t.client(b, "pub")
	pub.publish("tp/holdlong/a", b"h", qos=1)
	wait_stats(t, b, lambda x: x["hold"] >= 1)
	sub.disconnect()  # within the 3 s hold; the clean session ends with it
	s = wait_stats(t, b, lambda x: x["dropped"] >= 1)
	assert (s["dropped"], s["dropheld"], s["release"]) == (1, 1, 0), \
		"a held delivery whose session ended: one DROPPED with its hold_id: %r" % s
	assert_log(b, r"tp: dropped client=gone-1 hold=1 why=\S+")
	s = wait_stats(t, b, lambda x: x["release"] >= 1, timeout=5)
	assert (s["release"], s["holderr"]) == (1, 1), \
		"release() of a hold already dropped returns -1: %r" % s


# -- CHOOSE -------------------------------------------------------------------------

def test_plugin_choose_smallest_client_id_in_group_tpg(t):
	b = plugin_broker(t)
	members = [t.client(b, "m-b"), t.client(b, "m-a"), t.client(b, "m-c", version=4)]
	for m in members:
		m.subscribe("$share/tpg/tp/shared/#", 1)
	pub = t.client(b, "pub")
	for i in range(9):
		pub.publish("tp/shared/%d" % i, b"%d" % i, qos=1)
	got = get_n(members[1], 9, 5)
	assert [m.payload for m in got] == [b"%d" % i for i in range(9)], \
		"m-a (smallest id) must get every message, in order: %r" % [m.payload for m in got]
	assert_nothing(members[0], "m-b got a message")
	assert_nothing(members[2], "m-c got a message", 0.1)
	assert stats(t, b)["choose"] >= 9


# -- SUBSCRIBE: REJECT ----------------------------------------------------------------

def test_plugin_subscribe_forbidden_v5_suback_0x87(t):
	b = plugin_broker(t)
	sub = t.raw_connected(b, client_id="sub-v5")
	codes = raw_subscribe(sub, [("tp/ok/#", 1), ("tp/forbidden/#", 1),
				    ("$share/g1/tp/forbidden/#", 0), ("tp/forbidden/x", 0)])
	assert codes == [1, 0x87, 0x87, 0], "SUBACK reason codes %r" % codes
	watcher = t.client(b, "watch")
	watcher.subscribe("tp/forbidden/#", 1)  # paho: same verdict through paho
	pub = t.client(b, "pub")
	pub.publish("tp/forbidden/y", b"f", qos=1)
	assert_nothing(watcher, "a rejected subscription still delivers")
	s = stats(t, b)
	assert s["subreject"] == 3, s


def test_plugin_subscribe_forbidden_v311_suback_failure(t):
	b = plugin_broker(t)
	sub = t.client(b, "sub-v311", version=4)
	codes = sub.subscribe([("tp/ok/#", 1), ("tp/forbidden/#", 2)])
	assert codes == [1, 0x80], "3.1.1 SUBACK: 0x80 for the refused filter: %r" % codes
	pub = t.client(b, "pub")
	pub.publish("tp/forbidden/a", b"f", qos=1)
	pub.publish("tp/ok/a", b"o", qos=1)
	m = get(sub, 3)
	assert m is not None
	assert m.topic == "tp/ok/a", "only the accepted filter delivers: %s" % m.topic


# -- counted events --------------------------------------------------------------------

def test_plugin_connect_disconnect_counted_and_logged(t):
	b = plugin_broker(t)
	stats(t, b)  # connects the stats client first: connect=1
	a = t.client(b, "cd-a")
	c4 = t.client(b, "cd-b", version=4)
	c = t.raw_connected(b, client_id="cd-c")
	a.disconnect()
	c4.disconnect()
	c.close()  # no DISCONNECT
	s = wait_stats(t, b, lambda x: x["disconnect"] >= 3)
	assert (s["connect"], s["disconnect"]) == (4, 3), s
	assert (s["graceful"], s["abrupt"]) == (2, 1), "DISCONNECT graceful flag: %r" % s
	assert_log(b, r"tp: connect client=cd-a proto=5")
	assert_log(b, r"tp: connect client=cd-b proto=4")
	assert_log(b, r"tp: disconnect client=cd-c")


def test_plugin_unsubscribe_counted(t):
	b = plugin_broker(t)
	sub = t.client(b, "unsub-1")
	sub.subscribe([("tp/u/a", 1), ("tp/u/b", 1)])
	sub.unsubscribe(["tp/u/a"])
	pub = t.client(b, "pub")
	pub.publish("tp/u/a", b"gone", qos=1)
	pub.publish("tp/u/b", b"kept", qos=1)
	m = get(sub, 3)
	assert (m and m.payload) == b"kept", m and m.payload
	s = stats(t, b)
	assert (s["subscribe"], s["unsubscribe"]) == (3, 1), s  # +1: $tp/stats
	assert_log(b, r"tp: unsubscribe client=unsub-1 proto=5 topic=- filter=tp/u/a")


def test_plugin_acked_qos1_qos2_not_qos0(t):
	b = plugin_broker(t)
	s1 = t.client(b, "ack-1")
	s1.subscribe("tp/ack/#", 1)
	s2 = t.client(b, "ack-2", version=4)
	s2.subscribe("tp/ack/#", 2)
	s0 = t.client(b, "ack-0")
	s0.subscribe("tp/ack/#", 0)
	pub = t.client(b, "pub")
	pub.publish("tp/ack/a", b"x", qos=2)
	for c in (s1, s2, s0):
		assert get(c, 3) is not None, "%s got nothing" % c.client_id
	s = wait_stats(t, b, lambda x: x["acked"] >= 2)
	time.sleep(0.2)  # a third ACKED (for the QoS 0 delivery) would show here
	s = stats(t, b)
	assert s["acked"] == 2, "PUBACK (qos 1) and PUBCOMP (qos 2); none for qos 0: %r" % s
	assert s["dropped"] == 0, s
	assert_log(b, r"tp: acked client=ack-2 proto=4 topic=tp/ack/a filter=- qos=2")


def test_plugin_dropped_when_persistent_session_discarded(t):
	b = plugin_broker(t)
	sub = t.client(b, "drop-1", version=4, clean=False)
	sub.subscribe("tp/drop/#", 1)
	sub.disconnect()
	assert b.wait_log(r"tp: disconnect client=drop-1"), "no DISCONNECT event for drop-1"
	pub = t.client(b, "pub")
	pub.publish("tp/drop/a", b"1", qos=1)
	pub.publish("tp/drop/b", b"2", qos=1)
	again = t.client(b, "drop-1", version=4, clean=True)  # the old session goes
	assert_nothing(again, "queued messages of a discarded session delivered")
	s = wait_stats(t, b, lambda x: x["dropped"] >= 2)
	assert (s["dropped"], s["dropheld"], s["acked"]) == (2, 0, 0), s
	assert_log(b, r"tp: dropped client=drop-1 hold=0 why=\S+")


# -- START / STOP / cleanup ---------------------------------------------------------

def test_plugin_start_stop_and_cleanup(t):
	b = plugin_broker(t)
	s = stats(t, b)
	assert (s["start"], s["stop"], s["starts"], s["kverr"]) == (1, 0, 1, 0), s
	assert_log(b, r"tp: init prefix=tp options=0")
	assert_log(b, r"tp: start ")
	assert_log(b, r"tp: kv self-test: 0 error\(s\)")
	pub = t.client(b, "pub")
	pub.publish("tp/take/60000/tp/never", b"pending at stop", qos=1)
	sub = t.client(b, "hold-at-stop")
	sub.subscribe("tp/hold/#", 1)
	pub.publish("tp/hold/x", b"held at stop", qos=1)
	wait_stats(t, b, lambda x: x["hold"] >= 1)
	rc = stop_broker(b)
	assert rc == 0, "exit status after SIGTERM: %r" % rc
	log = b.log_text()
	assert "tp: stop " in log
	assert "tp: cleanup stop=1 pending=none" in log
	assert log.index("tp: stop ") < log.index("tp: cleanup"), "STOP before cleanup"
	assert "AddressSanitizer" not in log
	assert "LeakSanitizer" not in log


# -- route() from inside callbacks; accessors -------------------------------------------

def test_plugin_route_from_publish_callback(t):
	b = plugin_broker(t)
	sub = t.client(b, "st")
	sub.subscribe("$tp/stats", 0, retain_handling=2)
	pub = t.client(b, "pub")
	pub.publish("tp/stats/sync", b"", qos=1)
	m = get(sub, 3)
	assert m is not None, "route() inside a PUBLISH callback"
	assert parse_stats(m.payload)["publish"] == 1, m.payload
	late = t.client(b, "late")  # $tp/stats was retained
	late.subscribe("$tp/stats", 0)
	m = get(late, 3)
	assert m is not None, "the plugin's retained message"
	assert m.retain


def test_plugin_route_from_deliver_callback(t):
	b = plugin_broker(t)
	st = t.client(b, "st")
	st.subscribe("$tp/stats", 0, retain_handling=2)
	sub = t.client(b, "dr-1")
	sub.subscribe("tp/droute/#", 1)
	other = t.client(b, "dr-2")
	other.subscribe("tp/droute/#", 1)
	pub = t.client(b, "pub")
	pub.publish("tp/droute/a", b"d", qos=1)
	for c in (sub, other):
		m = get(c, 3)
		assert (m and m.payload) == b"d", "delivery while routing from DELIVER"
	got = get_n(st, 2, 3)
	assert len(got) == 2, "one $tp/stats per DELIVER: got %d" % len(got)
	assert b.proc.poll() is None, "broker died"


def test_plugin_msg_accessors(t):
	b = plugin_broker(t)
	info = t.client(b, "info-sub")
	info.subscribe("$tp/info", 0, retain_handling=2)
	pub = t.client(b, "info-pub")
	pub.publish("tp/info/a", b"12345", qos=1,
		    properties=publish_props(UserProperty=[("a", "1"), ("b", "2")],
					     MessageExpiryInterval=60))
	m = get(info, 3)
	assert m is not None
	text = m.payload.decode()
	assert re.search(r"^topic=tp/info/a sender=info-pub qos=1 retain=0 id=\d+ "
			 r"payload_len=5 expiry_in_ms=(\d+) props=a:1,b:2,$", text), text
	left = int(re.search(r"expiry_in_ms=(\d+)", text).group(1))
	assert 55000 < left <= 60000, "msg_expiry: %d ms left" % left
	pub.publish("tp/info/b", b"", qos=0)
	m = get(info, 3)
	assert m is not None
	assert re.search(r"qos=0 retain=0 .*payload_len=0 expiry_in_ms=-1 props=$",
			 m.payload.decode()), m.payload


# -- two instances of the test plugin (prefixes tp, then tq): chain order ---------------

def test_plugin_route_reaches_later_plugins_only(t):
	need_plugin()
	with tempfile.TemporaryDirectory(prefix="plugtest-so-") as tmp:
		second = os.path.join(tmp, "test_plugin_2.so")
		shutil.copy(PLUGIN, second)
		b = plugin_broker(t, [(PLUGIN, {}), (second, {"prefix": "tq"})])
		sub = t.client(b, "chain-sub")
		sub.subscribe([("tq/#", 1), ("tp/#", 1)])
		pub = t.client(b, "chain-pub")
		# tp takes it and routes it to tq/reject/..: tq comes after tp, so it rejects.
		pub.publish("tp/take/100/tq/reject/x", b"1", qos=1)
		# tq takes it and routes it to tp/reject/..: tp came before tq, so it passes.
		pub.publish("tq/take/100/tp/reject/y", b"2", qos=1)
		m = get(sub, 3)
		assert m is not None, "route() from the second plugin"
		assert (m.topic, m.payload) == ("tp/reject/y", b"2"), (m.topic, m.payload)
		m = get(sub, QUIET)
		assert m is None, "route() from the first plugin skipped the second: %s" % \
			(m and m.topic)
		s2 = stats(t, b, prefix="tq")
		assert (s2["take"], s2["reject"], s2["routed"]) == (1, 1, 1), s2


def test_plugin_option_prefix(t):
	b = plugin_broker(t, [(PLUGIN, {"prefix": "xq"})])
	assert "tp: init prefix=xq options=1" in b.log_text()
	sub = t.client(b, "px-sub")
	sub.subscribe([("tp/#", 1), ("xq/#", 1)])
	pub = t.raw_connected(b, client_id="px-pub")
	rc = raw_publish(pub, "xq/reject/a", b"", qos=1).reason
	assert rc == 0x99, "0x%02x" % rc
	rc = raw_publish(pub, "tp/reject/a", b"", qos=1).reason
	assert rc < 0x80, "0x%02x" % rc
	m = get(sub, 3)
	assert (m and m.topic) == "tp/reject/a", "the default prefix is off"
	assert stats(t, b, prefix="xq")["reject"] == 1


def test_plugin_option_fail_refuses_start(t):
	log = start_fail(t, [(PLUGIN, {"fail": "yes"})])
	assert "tp: refusing to start: plugin_opt_fail is yes" in log, log
	assert "test_plugin" in log, "the broker should name the plugin that failed"


def test_plugin_missing_path_refuses_start(t):
	with tempfile.TemporaryDirectory(prefix="plugtest-so-") as tmp:
		path = os.path.join(tmp, "no-such-plugin.so")
		log = start_fail(t, [(path, {})])
	assert path in log, "the error must name the path"


@timeout(60)
def test_plugin_without_entry_points_refuses_start(t):
	need_plugin()
	with tempfile.TemporaryDirectory(prefix="plugtest-so-") as tmp:
		so = compile_so(tmp, "no_entry", "int not_a_plugin(void) { return 1; }\n")
		log = start_fail(t, [(so, {})])
	assert so in log, "the error must name the path"
	assert "sluice_plugin_" in log, "the error must name the missing entry point"


@timeout(60)
def test_plugin_wrong_api_version_refuses_start(t):
	need_plugin()
	with tempfile.TemporaryDirectory(prefix="plugtest-so-") as tmp:
		so = compile_so(tmp, "bad_version", (
			"int sluice_plugin_version(void) { return 999; }\n"
			"int sluice_plugin_init(const void *h, void *s, const void *o, int n, void **u)\n"
			"{ (void)h; (void)s; (void)o; (void)n; (void)u; return 0; }\n"
			"void sluice_plugin_cleanup(void *u) { (void)u; }\n"))
		log = start_fail(t, [(so, {})])
	assert so in log, "the error must name the path"
	assert "999" in log, "the error should say which version the plugin has"


def test_plugin_on_refuses_unknown_events(t):
	b = plugin_broker(t, [(PLUGIN, {"probe": "yes"})])
	n = stats(t, b)["probe"]
	assert n == 2, "host->on() with SP_EV__COUNT and -1: probe=%d" % n
