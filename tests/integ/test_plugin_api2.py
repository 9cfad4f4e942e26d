"""Plugin API 2 (include/sluice_plugin.h, "API 2"), end to end through the test plugin.

Each test starts a sluice of its own with tests/plugin/test_plugin.c loaded
and reaches one API 2 feature with real clients: paho (3.1.1 and 5.0) for
ordinary subscribers and publishers, the raw client where the bytes matter
(a PUBACK or PUBREC carrying a reason code, a CONNECT with a user name).

  NACKED / ACKED reason     a PUBACK 0x80 or PUBREC 0x87 ends the delivery with
                            NACKED (never ACKED, no PUBREL, no resend)
  SESSION_END               clean start over a session, expiry, the end of a
                            clean session; not a mere disconnect
  host->deliver             tp/deliver/C/T, tp/gdeliver/G/T (and -timer):
                            one client, or one member of one group
  host->topic_match         tp/match/...: filters in user properties
  host->after_commit        tp/commit/...: fires later, with status 0
  CHOOSE HOLD / SKIP        groups tph (held 300 ms) and tps (skipped)
  route() from DELIVER      tp/routecount/...: the count route() returned
  username                  in CONNECT, PUBLISH, NACKED and SESSION_END events

The plugin reports results on non-retained $tp/<leaf> topics and its
counters on $tp/stats (see the top of test_plugin.c); the tests also read
its log lines ("tp: NACKED ..."). Needs SLUICE_TEST_PLUGIN; skipped without.
"""

import os
import queue
import re
import shutil
import tempfile
import time
from itertools import count

import brokerlib
import rawmqtt as R
from clients import assert_no_message as assert_nothing, get_message as get, get_messages as get_n, connect_props, publish_props, subscribe_props
from harness import Skip, param, timeout, wait_until

PLUGIN = os.environ.get("SLUICE_TEST_PLUGIN")
QUIET = 0.6  # how long "nothing arrives" is watched for
EXPIRY = 300  # session expiry of persistent MQTT 5 sessions


# -- brokers ------------------------------------------------------------------------

def need_plugin():
	if brokerlib.is_mosquitto():
		raise Skip("the plugin layer is sluice's own (INTEG_BROKER=mosquitto)")
	if not PLUGIN:
		raise Skip("SLUICE_TEST_PLUGIN is not set (the built tests/plugin/.libs/test_plugin.so)")
	if not os.path.isfile(PLUGIN):
		raise Skip("SLUICE_TEST_PLUGIN=%s does not exist" % PLUGIN)


def plugin_broker(t, extra=(), plugins=None):
	"""A private sluice with the test plugin (or plugins: [(path, {opt: value})])."""
	need_plugin()
	lines = ["sys_interval 0"]
	for path, opts in plugins or [(PLUGIN, {})]:
		lines.append("plugin %s" % path)
		lines.extend("plugin_opt_%s %s" % kv for kv in opts.items())
	return t.broker(lines + list(extra))


# -- what the plugin says -------------------------------------------------------------

def parse_stats(payload):
	out = {}
	for word in payload.decode().split():
		k, _, v = word.partition("=")
		out[k] = int(v)
	return out


def stats(t, b, prefix="tp", timeout=3.0):
	"""The plugin's counters (asked on P/stats/get, read on $P/stats)."""
	c = getattr(b, "stats_client", None)
	if c is None:
		c = b.stats_client = t.client(b, "zz-stats")
		c.subscribe("$%s/stats" % prefix, 0, retain_handling=2)
	c.drain()
	c.publish("%s/stats/get" % prefix, b"", 0)
	m = get(c, timeout)
	assert m is not None, "no $%s/stats within %.1fs\n%s" % (prefix, timeout, b.log_tail())
	return parse_stats(m.payload)


def wait_stats(t, b, pred, timeout=3.0):
	"""Asks for the counters until pred(stats) holds; returns the last ones."""
	deadline = time.monotonic() + timeout
	while True:
		s = stats(t, b)
		if pred(s) or time.monotonic() > deadline:
			return s
		time.sleep(0.1)


def notes(t, b, *leaves, cid=None):
	"""A client subscribed to the plugin's result topics $tp/<leaf>."""
	c = t.client(b, cid or "zz-notes")
	for leaf in leaves:
		c.subscribe("$tp/%s" % leaf, 0)
	return c


def note(c, timeout=3.0, what="a plugin note"):
	"""The payload (str) of the next message of c."""
	m = get(c, timeout)
	assert m is not None, "%s: nothing within %.1fs" % (what, timeout)
	return m.payload.decode()


def note_fields(text):
	return dict(w.partition("=")[::2] for w in text.split())


def log_lines(b, pattern):
	rx = re.compile(pattern)
	return [l for l in b.log_text().splitlines() if rx.search(l)]


def wait_log(b, pattern, timeout=3.0):
	line = b.wait_log(pattern, timeout)
	assert line, "broker log lacks /%s/ after %.1fs:\n%s" % (pattern, timeout, b.log_tail())
	return line


# -- clients ------------------------------------------------------------------------



def persistent(t, b, cid, version, **kw):
	"""A client whose session outlives its connection."""
	if version == 5:
		return t.client(b, cid, version=5, clean=False,
				properties=connect_props(SessionExpiryInterval=EXPIRY), **kw)
	return t.client(b, cid, version=version, clean=False, **kw)


def with_user(t, b, cid, user, version=5):
	c = t.client(b, cid, version=version, connect=False)
	c.c.username_pw_set(user)
	return c.connect()


_pids = count(1)


def raw_subscribe(r, flt, qos):
	r.send(R.subscribe(next(_pids) % 65535 + 1, [(flt, R.sub_opts(qos))], r.version))
	codes = r.expect(R.SUBACK).suback()[1]
	assert codes == [qos], "SUBACK %r" % codes


def raw_publish_in(r, timeout=3.0):
	"""The next PUBLISH the raw client gets, decoded."""
	p = r.expect(R.PUBLISH, timeout)
	return p.publish()


def raw_nothing(r, what, wait=QUIET):
	p = r.recv_or_none(wait)
	assert p is None, "%s: got %r" % (what, p)


# -- NACKED, and the reason code of ACKED ------------------------------------------------

@param("share", [None, "tpq"])
def test_plugin_api2_nacked_puback_0x80(t, share):
	b = plugin_broker(t)
	r = t.raw_connected(b, client_id="nack-1", clean=False,
			    properties=[(R.SESSION_EXPIRY, EXPIRY)])
	raw_subscribe(r, "$share/%s/tp/n/#" % share if share else "tp/n/#", 1)
	pub = t.client(b, "pub", version=4)
	pub.publish("tp/n/a", b"refuse me", qos=1)
	d = raw_publish_in(r)
	assert (d["topic"], d["qos"], d["payload"]) == ("tp/n/a", 1, b"refuse me"), d
	r.send(R.puback(d["pid"], reason=0x80))
	line = wait_log(b, r"tp: NACKED client=nack-1 ")
	assert re.search(r"topic=tp/n/a qos=1 share=%s reason=0x80$" % (share or "-"), line), line
	s = wait_stats(t, b, lambda x: x["nacked"] >= 1)
	assert (s["nacked"], s["acked"], s["dropped"]) == (1, 0, 0), \
		"a PUBACK 0x80 ends the delivery with NACKED only: %r" % s
	assert not log_lines(b, r"tp: acked client=nack-1"), "ACKED for a refused delivery"
	# The delivery is over: not sent again when the session resumes.
	r.close()
	wait_log(b, r"tp: disconnect client=nack-1")
	r2 = t.raw(b)
	sp, _, _ = r2.handshake("nack-1", clean=False, properties=[(R.SESSION_EXPIRY, EXPIRY)])
	assert sp, "the persistent session is still there"
	raw_nothing(r2, "a NACKed delivery was sent again at reconnect")
	# The next message still goes to it, and a normal PUBACK is ACKED.
	pub.publish("tp/n/b", b"take me", qos=1)
	d = raw_publish_in(r2)
	assert d["topic"] == "tp/n/b", d
	r2.send(R.puback(d["pid"]))
	s = wait_stats(t, b, lambda x: x["acked"] >= 1)
	assert (s["nacked"], s["acked"]) == (1, 1), s


def test_plugin_api2_nacked_pubrec_0x87(t):
	b = plugin_broker(t)
	r = t.raw_connected(b, client_id="nack-2")
	raw_subscribe(r, "tp/n/#", 2)
	pub = t.client(b, "pub")
	pub.publish("tp/n/q2", b"no", qos=2)
	d = raw_publish_in(r)
	assert d["qos"] == 2, d
	r.send(R.pubrec(d["pid"], reason=0x87))
	line = wait_log(b, r"tp: NACKED client=nack-2 ")
	assert re.search(r"topic=tp/n/q2 qos=2 share=- reason=0x87$", line), line
	# [MQTT-4.3.3-4]: a PUBREC >= 0x80 ends the exchange: no PUBREL.
	raw_nothing(r, "PUBREL (or anything) after a refusing PUBREC")
	s = stats(t, b)
	assert (s["nacked"], s["acked"], s["dropped"]) == (1, 0, 0), s
	# The packet id is free again and the next QoS 2 delivery completes: ACKED.
	pub.publish("tp/n/q2b", b"yes", qos=2)
	d = raw_publish_in(r)
	r.send(R.pubrec(d["pid"]))
	rel = r.expect(R.PUBREL)
	r.send(R.pubcomp(rel.pid()))
	s = wait_stats(t, b, lambda x: x["acked"] >= 1)
	assert (s["nacked"], s["acked"]) == (1, 1), s
	wait_log(b, r"tp: ACKED client=nack-2 topic=tp/n/q2b qos=2 reason=0x00$")


@param("ptype", ["puback", "pubrec"])
def test_plugin_api2_nacked_delivery_not_restored_after_restart(t, ptype):
	b = plugin_broker(t)
	qos = 1 if ptype == "puback" else 2
	r = t.raw_connected(b, client_id="nack-3", clean=False,
			    properties=[(R.SESSION_EXPIRY, EXPIRY)])
	raw_subscribe(r, "tp/n/#", qos)
	pub = t.client(b, "pub")
	pub.publish("tp/n/r", b"refused", qos=qos)
	d = raw_publish_in(r)
	r.send(R.ack(R.PUBACK if qos == 1 else R.PUBREC, d["pid"], reason=0x80))
	wait_log(b, r"tp: NACKED client=nack-3 .*reason=0x80$")
	r.close()
	wait_log(b, r"tp: disconnect client=nack-3")
	pub.disconnect()
	b.restart()  # SIGTERM: the store is closed cleanly, then read back
	r2 = t.raw(b)
	sp, _, _ = r2.handshake("nack-3", clean=False, properties=[(R.SESSION_EXPIRY, EXPIRY)])
	assert sp, "the session survived the restart"
	raw_nothing(r2, "a refused delivery came back from the store")
	s = stats(t, b)
	assert (s["nacked"], s["acked"], s["dropped"]) == (0, 0, 0), s


def test_plugin_api2_acked_reason_codes(t):
	b = plugin_broker(t)
	r = t.raw_connected(b, client_id="ack-raw")
	raw_subscribe(r, "tp/a/#", 1)
	s4 = t.client(b, "ack-v311", version=4)
	s4.subscribe("tp/a/#", 1)
	s5 = t.client(b, "ack-v5", version=5)
	s5.subscribe("tp/a/#", 1)
	pub = t.client(b, "pub")
	pub.publish("tp/a/1", b"1", qos=1)
	d = raw_publish_in(r)
	r.send(R.puback(d["pid"], reason=0x10))  # No matching subscribers: a success
	for c in (s4, s5):
		assert get(c, 3) is not None, "%s got nothing" % c.client_id
	s = wait_stats(t, b, lambda x: x["acked"] >= 3)
	assert (s["acked"], s["nacked"]) == (3, 0), s
	wait_log(b, r"tp: ACKED client=ack-raw topic=tp/a/1 qos=1 reason=0x10$")
	wait_log(b, r"tp: ACKED client=ack-v311 topic=tp/a/1 qos=1 reason=0x00$")
	wait_log(b, r"tp: ACKED client=ack-v5 topic=tp/a/1 qos=1 reason=0x00$")


# -- SESSION_END -----------------------------------------------------------------------

@param("version", [4, 5])
def test_plugin_api2_session_end_on_clean_start_over_session(t, version):
	b = plugin_broker(t)
	c = persistent(t, b, "se-1", version)
	c.subscribe("tp/se/#", 1)
	c.disconnect()
	wait_log(b, r"tp: disconnect client=se-1")
	again = persistent(t, b, "se-1", version)
	assert again.session_present
	again.disconnect()
	wait_until(lambda: len(log_lines(b, r"tp: disconnect client=se-1 ")) == 2, 3,
		   "the second DISCONNECT event")
	s = stats(t, b)
	assert s["sessend"] == 0, "a disconnect of a persistent session is no SESSION_END: %r" % s
	fresh = t.client(b, "se-1", version=version, clean=True)
	assert not fresh.session_present
	line = wait_log(b, r"tp: SESSION_END client=se-1 ")
	assert line.endswith("proto=%d" % version), line
	s = stats(t, b)
	assert s["sessend"] == 1, s
	# Taken over by a clean connection while connected: the old session ends too.
	fresh2 = persistent(t, b, "se-2", version)
	wait_log(b, r"tp: connect client=se-2")
	t.client(b, "se-2", version=version, clean=True)
	wait_log(b, r"tp: SESSION_END client=se-2 ")
	fresh2.wait_disconnected(3)  # taken over


@timeout(30)
def test_plugin_api2_session_end_on_expiry(t):
	b = plugin_broker(t)
	c = t.client(b, "exp-1", version=5, clean=False,
		     properties=connect_props(SessionExpiryInterval=1))
	c.subscribe("tp/se/#", 1)
	c.disconnect()
	t0 = time.monotonic()
	wait_log(b, r"tp: disconnect client=exp-1")
	assert not log_lines(b, r"tp: SESSION_END client=exp-1"), "ended before its expiry"
	wait_log(b, r"tp: SESSION_END client=exp-1 .*proto=5$", timeout=5)
	took = time.monotonic() - t0
	assert took >= 0.8, "SESSION_END %.2fs after the disconnect, expiry 1 s" % took
	s = stats(t, b)
	assert s["sessend"] == 1, s
	c2 = t.client(b, "exp-1", version=5, clean=False,
		      properties=connect_props(SessionExpiryInterval=1))
	assert not c2.session_present, "the session expired"


@param("how", ["disconnect", "abrupt"])
@param("version", [4, 5])
def test_plugin_api2_session_end_of_a_clean_session(t, version, how):
	b = plugin_broker(t)
	c = t.client(b, "cl-1", version=version, clean=True)
	c.subscribe("tp/se/#", 1)
	assert stats(t, b)["sessend"] == 0
	if how == "disconnect":
		c.disconnect()
	else:
		c.close_abruptly()
	line = wait_log(b, r"tp: SESSION_END client=cl-1 ")
	assert line.endswith("user=- proto=%d" % version), line
	log = b.log_text()
	assert log.index("tp: disconnect client=cl-1") < log.index("tp: SESSION_END client=cl-1"), \
		"DISCONNECT comes before the end of the session"
	s = stats(t, b)
	assert (s["sessend"], s["disconnect"]) == (1, 1), s


@param("version", [4, 5])
def test_plugin_api2_no_session_end_for_persistent_disconnect(t, version):
	b = plugin_broker(t)
	c = persistent(t, b, "keep-1", version)
	c.subscribe("tp/se/#", 1)
	c.close_abruptly()
	wait_log(b, r"tp: disconnect client=keep-1")
	c2 = persistent(t, b, "keep-1", version)
	assert c2.session_present
	# Taken over by a connection that keeps the session: not an end either.
	c3 = persistent(t, b, "keep-1", version)
	assert c3.session_present
	c2.wait_disconnected(3)  # taken over
	time.sleep(0.3)  # a late SESSION_END would show here
	s = stats(t, b)
	assert s["sessend"] == 0, s
	assert s["disconnect"] >= 2, s
	assert not log_lines(b, r"tp: SESSION_END"), "SESSION_END without an end"


# -- host->deliver ------------------------------------------------------------------------

@param("version", [4, 5])
def test_plugin_api2_deliver_reaches_only_the_named_client(t, version):
	b = plugin_broker(t)
	n = notes(t, b, "delivered")
	a = t.client(b, "dv-a", version=version)
	a.subscribe("tp/out/#", 1)
	other = t.client(b, "dv-b", version=version)
	other.subscribe("tp/out/#", 1)
	watch = t.client(b, "dv-w")
	watch.subscribe("tp/deliver/#", 1)
	pub = t.client(b, "dv-pub", version=version)
	pub.publish("tp/deliver/dv-a/tp/out/x", b"for a", qos=1)
	m = get(a, 3)
	assert m is not None, "the named client got nothing"
	assert (m.topic, m.payload, m.qos) == ("tp/out/x", b"for a", 1)
	assert note_fields(note(n)) == {"rc": "1", "to": "dv-a", "topic": "tp/out/x"}
	assert_nothing(other, "another subscriber of the same topic")
	assert_nothing(watch, "the original (taken) topic", 0.1)
	assert_nothing(a, "delivered twice", 0.1)
	s = stats(t, b)
	assert (s["delivered"], s["delivernone"], s["delivererr"], s["hosterr"]) == (1, 0, 0, 0), s
	# Once more to the other one: the targets are told apart.
	pub.publish("tp/deliver/dv-b/tp/out/y", b"for b", qos=1)
	m = get(other, 3)
	assert (m and m.topic) == "tp/out/y"
	assert_nothing(a, "the first client got the second's message")


def test_plugin_api2_deliver_qos_and_subscription_ids(t):
	b = plugin_broker(t)
	n = notes(t, b, "delivered")
	a = t.client(b, "ids-a")
	a.subscribe("tp/out/#", 1, properties=subscribe_props(SubscriptionIdentifier=7))
	a.subscribe("tp/out/+", 0, properties=subscribe_props(SubscriptionIdentifier=9))
	a.subscribe("tp/other/#", 2, properties=subscribe_props(SubscriptionIdentifier=11))
	a.subscribe("$share/g/tp/out/#", 2, properties=subscribe_props(SubscriptionIdentifier=13))
	pub = t.client(b, "ids-pub")
	pub.publish("tp/deliver/ids-a/tp/out/z", b"z", qos=2)
	m = get(a, 3)
	assert m is not None, "nothing delivered"
	assert (m.topic, m.qos) == ("tp/out/z", 1), \
		"the highest QoS of the matching plain subscriptions: %r" % ((m.topic, m.qos),)
	ids = sorted(getattr(m.properties, "SubscriptionIdentifier", []))
	assert ids == [7, 9], "identifiers of the matching plain subscriptions only: %r" % ids
	assert note_fields(note(n))["rc"] == "1"
	assert_nothing(a, "a second copy (the shared subscription?)")


@param("version", [4, 5])
def test_plugin_api2_deliver_to_offline_persistent_client_is_queued(t, version):
	b = plugin_broker(t)
	n = notes(t, b, "delivered")
	c = persistent(t, b, "off-1", version)
	c.subscribe("tp/out/#", 1)
	c.disconnect()
	wait_log(b, r"tp: disconnect client=off-1")
	pub = t.client(b, "pub")
	pub.publish("tp/deliver/off-1/tp/out/q", b"queued", qos=1)
	assert note_fields(note(n))["rc"] == "1", "queued for an offline session counts as sent"
	back = persistent(t, b, "off-1", version)
	assert back.session_present
	m = get(back, 3)
	assert m is not None, "the queued delivery did not arrive at reconnect"
	assert (m.topic, m.payload, m.qos) == ("tp/out/q", b"queued", 1)
	s = wait_stats(t, b, lambda x: x["acked"] >= 1)
	assert s["acked"] == 1, s


def test_plugin_api2_deliver_to_unknown_or_unsubscribed_returns_0(t):
	b = plugin_broker(t)
	n = notes(t, b, "delivered")
	sub = t.client(b, "dz-sub")
	sub.subscribe("tp/out/#", 1)
	shared_only = t.client(b, "dz-sh")
	shared_only.subscribe("$share/g/tp/out/#", 1)
	pub = t.client(b, "pub")
	for target in ("no-such-client", "dz-sh", "pub"):
		pub.publish("tp/deliver/%s/tp/out/u" % target, b"u", qos=1)
		f = note_fields(note(n, what="rc of deliver to %s" % target))
		assert (f["rc"], f["to"]) == ("0", target), \
			"deliver to a client without such a plain subscription: %r" % f
	pub.publish("tp/deliver/dz-sub/tp/nothere", b"u", qos=1)
	assert note_fields(note(n))["rc"] == "0", "no subscription of dz-sub matches tp/nothere"
	for c in (sub, shared_only):
		assert_nothing(c, "a deliver() that returned 0 delivered", 0.3)
	s = stats(t, b)
	assert (s["delivered"], s["delivernone"], s["delivererr"]) == (0, 4, 0), s


@param("filter_prop", [True, False])
def test_plugin_api2_group_deliver_reaches_one_member(t, filter_prop):
	b = plugin_broker(t)
	n = notes(t, b, "delivered")
	flt = "tp/out/#" if filter_prop else "tp/out/g"
	members = [t.client(b, "gm-%d" % i, version=4 if i == 2 else 5) for i in range(3)]
	for m in members:
		m.subscribe("$share/g1/%s" % flt, 1)
	other_group = t.client(b, "gx-1")
	other_group.subscribe("$share/g2/%s" % flt, 1)
	plain = t.client(b, "gp-1")
	plain.subscribe(flt, 1)
	pub = t.client(b, "pub")
	props = publish_props(UserProperty=[("filter", flt)]) if filter_prop else None
	for i in range(6):
		pub.publish("tp/gdeliver/g1/tp/out/g", b"%d" % i, qos=1, properties=props)
		f = note_fields(note(n))
		assert (f["rc"], f["to"]) == ("1", "g1"), f
	got = []
	for m in members:
		got += [x.payload for x in get_n(m, 6, 0.8)]
	assert sorted(got) == [b"%d" % i for i in range(6)], \
		"each message to exactly one member of g1: %r" % got
	assert_nothing(other_group, "a member of another group")
	assert_nothing(plain, "a plain subscriber", 0.1)
	# A filter that no group g1 has: 0.
	pub.publish("tp/gdeliver/g1/tp/out/g", b"x", qos=1,
		    properties=publish_props(UserProperty=[("filter", "tp/nogroup/#")]))
	assert note_fields(note(n))["rc"] == "0"
	pub.publish("tp/gdeliver/nosuch/tp/out/g", b"x", qos=1,
		    properties=publish_props(UserProperty=[("filter", flt)]))
	assert note_fields(note(n))["rc"] == "0"
	for m in members:
		assert_nothing(m, "a deliver() that returned 0 delivered", 0.1)


def test_plugin_api2_deliver_from_a_timer(t):
	b = plugin_broker(t)
	n = notes(t, b, "delivered")
	a = t.client(b, "tm-a")
	a.subscribe("tp/out/#", 1)
	other = t.client(b, "tm-b", version=4)
	other.subscribe("tp/out/#", 1)
	g = t.client(b, "tm-g")
	g.subscribe("$share/tg/tp/out/#", 1)
	pub = t.client(b, "pub")
	t0 = time.monotonic()
	pub.publish("tp/deliver-timer/tm-a/tp/out/t", b"late", qos=1)
	m = get(a, 3)
	assert m is not None, "deliver() from a timer"
	waited = m.timestamp - t0
	assert waited >= 0.200 - 0.002, "before the 200 ms timer (%.3fs)" % waited
	assert (m.topic, m.payload) == ("tp/out/t", b"late")
	assert note_fields(note(n))["rc"] == "1"
	assert_nothing(other, "another subscriber got a targeted delivery")
	assert_nothing(g, "the group got a client's delivery", 0.1)
	t0 = time.monotonic()
	pub.publish("tp/gdeliver-timer/tg/tp/out/t2", b"glate", qos=1,
		    properties=publish_props(UserProperty=[("filter", "tp/out/#")]))
	m = get(g, 3)
	assert m is not None, "group deliver() from a timer"
	assert m.timestamp - t0 >= 0.200 - 0.002
	assert (m.topic, m.payload) == ("tp/out/t2", b"glate")
	assert note_fields(note(n))["rc"] == "1"
	for c in (a, other):
		assert_nothing(c, "a plain subscriber got a group delivery", 0.2)


def test_plugin_api2_deliver_runs_later_plugins_deliver_chain(t):
	"""tp then tq (a copy of the plugin with prefix tq): what tp delivers, tq sees as a
	DELIVER (and may skip); what tq delivers, tp (earlier in the chain) does not see."""
	need_plugin()
	with tempfile.TemporaryDirectory(prefix="plugtest-so-") as tmp:
		second = os.path.join(tmp, "test_plugin_2.so")
		shutil.copy(PLUGIN, second)
		b = plugin_broker(t, plugins=[(PLUGIN, {}), (second, {"prefix": "tq"})])
		ntp = notes(t, b, "delivered", cid="zz-notes-tp")
		ntq = t.client(b, "zz-notes-tq")
		ntq.subscribe("$tq/delivered", 0)
		sk = t.client(b, "skip-1")
		sk.subscribe([("tq/skip/#", 1), ("tp/skip/#", 1)])
		pub = t.client(b, "pub")
		pub.publish("tp/deliver/skip-1/tq/skip/a", b"a", qos=1)
		assert note_fields(note(ntp))["rc"] == "0", "skipped by tq's DELIVER: deliver() is 0"
		assert_nothing(sk, "tq's SKIP was ignored")
		pub.publish("tq/deliver/skip-1/tp/skip/b", b"b", qos=1)
		assert note_fields(note(ntq))["rc"] == "1", "tp is before tq: it never sees it"
		m = get(sk, 3)
		assert (m and (m.topic, m.payload)) == ("tp/skip/b", b"b")
		# Held by a later plugin: 0 as well, and it arrives at the release.
		hold = t.client(b, "hold-1")
		hold.subscribe("tq/hold/#", 1)
		t0 = time.monotonic()
		pub.publish("tp/deliver/hold-1/tq/hold/c", b"c", qos=1)
		assert note_fields(note(ntp))["rc"] == "0", "held by tq: deliver() is 0"
		m = get(hold, 3)
		assert m is not None, "released by tq"
		assert m.timestamp - t0 >= 0.300 - 0.002


# -- host->topic_match ----------------------------------------------------------------------

MATCH_CASES = [
	("sport/tennis", [("sport/+", "1"), ("sport/#", "1"), ("sport/tennis/#", "1"), ("+", "0"),
			  ("+/+", "1"), ("#", "1"), ("sport", "0"), ("sport/tennis", "1"),
			  ("sport/+/+", "0"), ("sport/tenni", "0")]),
	("sport", [("sport/#", "1"), ("sport/+", "0"), ("+", "1"), ("#", "1")]),
	("/finance", [("+/+", "1"), ("/+", "1"), ("+", "0"), ("#", "1")]),
	("a//c", [("a/+/c", "1"), ("a/#", "1"), ("a/c", "0")]),
	("$SYS/broker/uptime", [("#", "0"), ("+/broker/#", "0"), ("$SYS/#", "1"),
				("$SYS/+/uptime", "1"), ("$SYS/broker/uptime", "1")]),
	("$tp/x", [("+/x", "0"), ("$tp/+", "1")]),
]


def test_plugin_api2_topic_match(t):
	b = plugin_broker(t)
	n = notes(t, b, "match")
	pub = t.client(b, "pub")
	for topic, cases in MATCH_CASES:
		props = [("topic", topic)] + [("filter", f) for f, _ in cases]
		pub.publish("tp/match/x", b"", qos=1, properties=publish_props(UserProperty=props))
		got = note(n, what="topic_match for %s" % topic).split()
		want = [r for _, r in cases]
		assert got == want, "topic_match(filter, %r) for %r: %r, expected %r" % \
			(topic, [f for f, _ in cases], got, want)
	# Without a "topic" property the message's own topic is matched.
	pub.publish("tp/match/own", b"", qos=0, properties=publish_props(
		UserProperty=[("filter", "tp/match/+"), ("filter", "tp/+"), ("filter", "tp/#")]))
	assert note(n).split() == ["1", "0", "1"]
	s = stats(t, b)
	assert (s["match"], s["hosterr"]) == (sum(len(c) for _, c in MATCH_CASES) + 3, 0), s


# -- host->after_commit -------------------------------------------------------------------------

@param("persistence", ["on", "off"])
def test_plugin_api2_after_commit_fires_after_the_call(t, persistence):
	extra = [] if persistence == "on" else ["persistence false"]
	b = plugin_broker(t, extra)
	n = notes(t, b, "committed")
	pub = t.client(b, "pub")
	for i in range(1, 4):
		pub.publish("tp/commit/%d" % i, b"", qos=1)
		f = note_fields(note(n, what="after_commit %d" % i))
		assert f == {"status": "0", "inside": "0", "seq": str(i)}, f
	s = stats(t, b)
	assert (s["commit"], s["committed"], s["commitinside"], s["commiterr"]) == (3, 3, 0, 0), s
	log = b.log_text()
	first_ask = log.index("tp: after_commit asked: 0")
	first_fire = log.index("tp: after_commit fired: status=0 inside=0 seq=1")
	assert first_ask < first_fire, "fired before the call returned"
	assert_nothing(n, "after_commit fired more than once per call", 0.3)


# -- CHOOSE: HOLD and SKIP ---------------------------------------------------------------------

def test_plugin_api2_choose_hold_delivers_after_release(t):
	b = plugin_broker(t)
	members = [t.client(b, "ch-1"), t.client(b, "ch-2", version=4)]
	for m in members:
		m.subscribe("$share/tph/tp/h/#", 1)
	plain = t.client(b, "ch-plain")
	plain.subscribe("tp/h/#", 1)
	pub = t.raw_connected(b, client_id="ch-pub")
	t0 = time.monotonic()
	pub.send(R.publish("tp/h/a", b"held", 1, pid=1))
	ack = pub.expect(R.PUBACK)
	assert ack.reason() < 0x80
	assert time.monotonic() - t0 < 0.25, "the publisher's PUBACK waits for the group hold"
	m = get(plain, 3)
	assert m is not None and m.timestamp - t0 < 0.25, "a plain subscriber is not held"
	got = []
	deadline = time.monotonic() + 3
	while not got and time.monotonic() < deadline:
		for c in members:
			x = get(c, 0.05)
			if x is not None:
				got.append((c.client_id, x))
	assert got, "the held group copy never reached a member after the release"
	who, x = got[0]
	assert x.timestamp - t0 >= 0.300 - 0.002, "the group copy came before the release " \
		"(%.3fs)" % (x.timestamp - t0)
	assert (x.topic, x.payload) == ("tp/h/a", b"held")
	for c in members:
		assert_nothing(c, "the released group copy went to a second member", 0.3)
	s = wait_stats(t, b, lambda s: s["acked"] >= 2)
	assert (s["chold"], s["crelease"], s["creoffer"], s["holderr"]) == (1, 1, 1, 0), \
		"one hold, one release, CHOOSE asked again at the release: %r" % s
	assert s["acked"] == 2, s


def test_plugin_api2_choose_skip_delivers_to_nobody_in_that_group(t):
	b = plugin_broker(t)
	skipped = [t.client(b, "cs-1"), t.client(b, "cs-2", version=4)]
	for m in skipped:
		m.subscribe("$share/tps/tp/s/#", 1)
	other = t.client(b, "co-1")
	other.subscribe("$share/tpo/tp/s/#", 1)
	plain = t.client(b, "cp-1", version=4)
	plain.subscribe("tp/s/#", 1)
	pub = t.client(b, "pub")
	for i in range(3):
		pub.publish("tp/s/%d" % i, b"%d" % i, qos=1)
	for c in (plain, other):
		got = get_n(c, 3, 3)
		assert [m.payload for m in got] == [b"0", b"1", b"2"], \
			"%s: %r" % (c.client_id, [m.payload for m in got])
	for m in skipped:
		assert_nothing(m, "a member of the skipped group", 0.3)
	s = stats(t, b)
	assert s["cskip"] == 3, s
	assert s["dropped"] == 0, "a skipped group is no dropped delivery: %r" % s
	line = wait_log(b, r"tp: choose group=tps filter=tp/s/# members=2 ")
	assert "topic=tp/s/0" in line, line


# -- route() from DELIVER: the count -------------------------------------------------------------

def test_plugin_api2_route_from_deliver_returns_sessions_reached(t):
	b = plugin_broker(t)
	n = notes(t, b, "rcresult")
	off = persistent(t, b, "rc-off", 4)
	off.subscribe("$tp/rcount", 1)
	off.disconnect()
	wait_log(b, r"tp: disconnect client=rc-off")
	r1 = t.client(b, "rc-1")
	r1.subscribe("$tp/rcount", 1)
	r2 = t.client(b, "rc-2", version=4)
	r2.subscribe("$tp/rcount", 0)
	d1 = t.client(b, "rd-1")
	d1.subscribe("tp/routecount/#", 1)
	pub = t.client(b, "pub")
	pub.publish("tp/routecount/a", b"x", qos=1)
	f = note_fields(note(n))
	assert f == {"n": "3", "client": "rd-1"}, \
		"route() from DELIVER: 2 online + 1 offline persistent session: %r" % f
	m = get(d1, 3)
	assert (m and (m.topic, m.payload)) == ("tp/routecount/a", b"x"), "the original"
	for c in (r1, r2):
		m = get(c, 3)
		assert (m and (m.topic, m.payload)) == ("$tp/rcount", b"rd-1"), c.client_id
	back = persistent(t, b, "rc-off", 4)
	m = get(back, 3)
	assert (m and m.payload) == b"rd-1", "the offline session had it queued"
	# Two recipients: two DELIVERs, each routing to the same 3 sessions.
	d2 = t.client(b, "rd-2", version=4)
	d2.subscribe("tp/routecount/#", 0)
	pub.publish("tp/routecount/b", b"y", qos=1)
	got = sorted(note(n) for _ in range(2))
	assert got == ["n=3 client=rd-1", "n=3 client=rd-2"], got
	s = stats(t, b)
	assert s["routecount"] == 3, s
	assert b.alive(), "broker died"


# -- the username in events ---------------------------------------------------------------------

@param("version", [4, 5])
def test_plugin_api2_username_in_events(t, version):
	b = plugin_broker(t)
	n = notes(t, b, "whoami")
	c = with_user(t, b, "u-1", "alice", version)
	c.publish("tp/whoami/x", b"", qos=1)
	assert note_fields(note(n)) == {"client": "u-1", "user": "alice", "proto": str(version)}
	wait_log(b, r"tp: CONNECT client=u-1 user=alice proto=%d$" % version)
	wait_log(b, r"tp: PUBLISH client=u-1 user=alice topic=tp/whoami/x$")
	anon = t.client(b, "u-2", version=version)
	anon.publish("tp/whoami/y", b"", qos=1)
	assert note_fields(note(n)) == {"client": "u-2", "user": "-", "proto": str(version)}
	wait_log(b, r"tp: CONNECT client=u-2 user=- proto=%d$" % version)
	c.disconnect()  # clean: the session ends, with its user
	wait_log(b, r"tp: SESSION_END client=u-1 user=alice proto=%d$" % version)


def test_plugin_api2_username_in_nacked(t):
	b = plugin_broker(t)
	r = t.raw(b)
	r.send(R.connect("u-raw", 5, True, 60, username="bob", password=b"pw"))
	sp, rc, _ = r.expect(R.CONNACK).connack()
	assert rc == 0, "CONNACK 0x%02x" % rc
	raw_subscribe(r, "tp/u/#", 1)
	pub = t.client(b, "pub")
	pub.publish("tp/u/a", b"", qos=1)
	d = raw_publish_in(r)
	r.send(R.puback(d["pid"], reason=0x83))  # implementation specific error
	line = wait_log(b, r"tp: NACKED client=u-raw ")
	assert re.search(r"user=bob topic=tp/u/a qos=1 share=- reason=0x83$", line), line
	wait_log(b, r"tp: CONNECT client=u-raw user=bob proto=5$")


# -- routing from inside CHOOSE ----------------------------------------------------------------

@param("group", ["tpr", "tpz"])
def test_plugin_api2_route_from_choose_keeps_one_copy_per_session(t, group):
	"""CHOOSE runs while the message is still being matched: a route() from it
	(group tpr routes $tp/cnote; tpz is the control, its CHOOSE routes nothing)
	must not make a session that matches the first message through two
	subscriptions get it twice [MQTT-3.3.4-2]."""
	b = plugin_broker(t)
	member = t.client(b, "cr-m")
	member.subscribe("$share/%s/tp/c/#" % group, 1)
	s = t.client(b, "cr-s")
	# Matched (in the tree walk) before the group, then after it; and a
	# recipient of what the CHOOSE callback routes.
	s.subscribe([("tp/c/#", 1), ("tp/c/y", 1), ("$tp/cnote", 0)])
	pub = t.client(b, "pub")
	pub.publish("tp/c/y", b"once", qos=1)
	m = get(member, 3)
	assert (m and m.payload) == b"once", "the group member"
	got = get_n(s, 4, 1.5)
	copies = [x for x in got if x.topic == "tp/c/y"]
	cnotes = [x for x in got if x.topic == "$tp/cnote"]
	want = 1 if group == "tpr" else 0
	assert len(cnotes) == want, "the note routed from CHOOSE: %r" % \
		[(x.topic, x.payload) for x in got]
	assert len(copies) == 1, "cr-s matches tp/c/y through two subscriptions and must get one " \
		"copy, got %d (a route() from CHOOSE resets the match stamps of the message " \
		"being matched: src/router.c deliver_matches)" % len(copies)
	assert stats(t, b)["croute"] == want
