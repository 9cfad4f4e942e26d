"""PUBLISH / SUBSCRIBE: QoS flows, exactly-once, wildcards, $-topics, $SYS."""

import re

import rawmqtt as R
from harness import param

VERSIONS = [4, 5]
TRANSPORTS = ["tcp", "ws"]


@param("version", VERSIONS)
@param("transport", TRANSPORTS)
@param("pubqos", [0, 1, 2])
@param("subqos", [0, 1, 2])
def test_mqtt_3_8_4_8_delivered_at_min_of_publish_and_granted_qos(t, version, transport,
								   pubqos, subqos):
	tp = t.topic("q")
	sub = t.client(version=version, transport=transport)
	assert sub.subscribe(tp, subqos) == [subqos]
	pub = t.client(version=version, transport="tcp" if transport == "ws" else "ws")
	pub.publish(tp, b"m%d" % pubqos, pubqos)
	m = sub.wait_message()
	assert m.payload == b"m%d" % pubqos
	assert m.qos == min(pubqos, subqos), "delivered at QoS %d" % m.qos
	sub.expect_no_message(0.3)


@param("transport", R.TRANSPORTS)
def test_mqtt_4_3_3_qos2_resent_publish_delivered_once(t, transport):
	# A PUBLISH resent with DUP before PUBREL must not create a second
	# delivery [MQTT-4.3.3-?: exactly once]; a resent PUBREL gets PUBCOMP again.
	tp = t.topic("eo")
	sub = t.client(version=5)
	sub.subscribe(tp, 2)
	r = t.raw_connected(transport=transport)
	r.send(R.publish(tp, b"once", qos=2, pid=7))
	assert r.expect(R.PUBREC).pid() == 7
	r.send(R.publish(tp, b"once", qos=2, pid=7, dup=True))
	assert r.expect(R.PUBREC).pid() == 7
	r.send(R.ack(R.PUBREL, 7))
	p = r.expect(R.PUBCOMP)
	assert p.pid() == 7 and p.reason() == 0
	r.send(R.ack(R.PUBREL, 7))
	p = r.expect(R.PUBCOMP)
	assert p.pid() == 7
	assert sub.wait_message().payload == b"once"
	sub.expect_no_message(0.7)


@param("version", VERSIONS)
@param("transport", ["tcp", "ws-split"])
def test_mqtt_4_3_3_qos2_to_subscriber_full_flow(t, version, transport):
	tp = t.topic("q2")
	r = t.raw_connected(transport=transport, version=version)
	r.send(R.subscribe(1, [(tp, 2)], version=version))
	assert r.expect(R.SUBACK).suback()[1] == [2]
	pub = t.client(version=version)
	pub.publish(tp, b"two", 2)
	p = r.expect(R.PUBLISH).publish()
	assert p["qos"] == 2 and p["payload"] == b"two" and not p["dup"]
	r.send(R.ack(R.PUBREC, p["pid"], version=version))
	rel = r.expect(R.PUBREL)
	assert rel.flags == 2 and rel.pid() == p["pid"], rel  # [MQTT-3.6.1-1]
	r.send(R.ack(R.PUBCOMP, p["pid"], version=version))
	assert r.recv_or_none(0.5) is None


@param("version", VERSIONS)
def test_mqtt_4_7_1_wildcards(t, version):
	base = t.topic()
	filters = {
		"plus": base + "/+/b",
		"hash": base + "/a/#",
		"plus_end": base + "/a/+",
		"all": base + "/#",
	}
	subs = {}
	for k, f in filters.items():
		subs[k] = t.client(version=version)
		subs[k].subscribe(f, 1)
	topics = ["a/b", "x/b", "/b", "a/b/c", "a", "a/", "c"]
	expect = {
		"plus": {"a/b", "x/b"},
		"hash": {"a/b", "a/b/c", "a", "a/"},   # [MQTT-4.7.1-2] "#" matches the parent
		"plus_end": {"a/b", "a/"},
		"all": set(topics),
	}
	# base + "//b" for topic "/b" has an empty level: matched by "+"
	expect["plus"].add("/b")
	pub = t.client(version=version)
	for tp in topics:
		pub.publish(base + "/" + tp, tp.encode(), 1)
	for k, want in expect.items():
		got = {m.payload.decode() for m in subs[k].wait_messages(len(want))}
		subs[k].expect_no_message(0.3)
		assert got == want, "%s (%s): got %s, want %s" % (k, filters[k], got, want)


@param("version", VERSIONS)
def test_mqtt_4_7_2_1_dollar_topics_not_matched_by_wildcards(t, version):
	b = t.fresh_broker()
	dollar = "$integ_%s" % t.tag
	all_sub = t.client(b, version=version)
	all_sub.subscribe("#", 0)
	plus_sub = t.client(b, version=version)
	plus_sub.subscribe("+/x", 0)
	plus_sys = t.client(b, version=version)
	plus_sys.subscribe("+/broker/#", 0)
	explicit = t.client(b, version=version)
	explicit.subscribe(dollar + "/#", 0)
	pub = t.client(b, version=version)
	pub.publish(dollar + "/x", b"dollar", 1)
	pub.publish("plain/x", b"plain", 1)
	assert explicit.wait_message().payload == b"dollar"
	# $SYS is published every second (sys_interval 1): wait past one interval
	got = [m for m in all_sub.wait_messages(1, 3)]
	import time
	time.sleep(1.5)  # sys_interval timing is what is tested here
	got += all_sub.drain()
	assert [m.topic for m in got if m.topic.startswith("$")] == [], \
		[m.topic for m in got]
	assert any(m.payload == b"plain" for m in got)
	got = plus_sub.wait_messages(1) + plus_sub.drain()
	assert [m.payload for m in got] == [b"plain"], [m.topic for m in got]
	assert plus_sys.drain() == []


def test_sys_topics_published(t):
	b = t.fresh_broker()
	c = t.client(b, version=4)
	c.subscribe("$SYS/#", 0)
	want = {"$SYS/broker/version", "$SYS/broker/uptime", "$SYS/broker/clients/connected",
		"$SYS/broker/messages/received"}
	seen = {}
	import time
	deadline = time.monotonic() + 5
	def connected():
		v = seen.get("$SYS/broker/clients/connected", b"0")
		return v.isdigit() and int(v) >= 1
	while not (want <= set(seen) and connected()) and time.monotonic() < deadline:
		try:
			m = c.wait_message(0.5)
		except AssertionError:
			continue
		seen[m.topic] = m.payload
	missing = want - set(seen)
	assert not missing, "missing %s; saw %s" % (sorted(missing), sorted(seen))
	assert seen["$SYS/broker/version"], "empty version"
	assert re.match(rb"^\d+", seen["$SYS/broker/uptime"]), seen["$SYS/broker/uptime"]
	assert int(seen["$SYS/broker/clients/connected"]) >= 1
	assert int(seen["$SYS/broker/messages/received"]) >= 0


@param("version", VERSIONS)
def test_mqtt_3_3_1_qos0_message_order_preserved(t, version):
	tp = t.topic("order")
	sub = t.client(version=version)
	sub.subscribe(tp, 1)
	pub = t.client(version=version)
	for i in range(50):
		pub.publish(tp, b"%d" % i, 1, wait=False)
	got = [int(m.payload) for m in sub.wait_messages(50, 10)]
	assert got == list(range(50)), got  # [MQTT-4.6.0-6] ordered topic


@param("version", VERSIONS)
@param("transport", TRANSPORTS)
def test_mqtt_3_10_unsubscribe_stops_delivery(t, version, transport):
	tp = t.topic("u")
	c = t.client(version=version, transport=transport)
	c.subscribe(tp, 1)
	c.publish(tp, b"a", 1)
	c.wait_message()
	c.unsubscribe(tp)
	c.publish(tp, b"b", 1)
	c.expect_no_message(0.5)


@param("transport", ["tcp", "ws"])
def test_mqtt_3_11_unsuback_0x11_no_subscription(t, transport):
	r = t.raw_connected(transport=transport)
	r.send(R.unsubscribe(3, [t.topic("never")]))
	p = r.expect(R.UNSUBACK)
	rr = R.Reader(p.body)
	assert rr.u16() == 3
	rr.props()
	assert list(rr.rest()) == [0x11], p


@param("version", VERSIONS)
def test_mqtt_3_8_4_3_resubscribe_replaces_subscription(t, version):
	tp = t.topic("re")
	c = t.client(version=version)
	c.subscribe(tp, 0)
	c.subscribe(tp, 2)
	c.publish(tp, b"x", 2)
	m = c.wait_message()
	assert m.qos == 2
	c.expect_no_message(0.5)  # one subscription, one copy


def test_fanout_each_subscriber_gets_its_own_packet_ids_and_the_same_bytes(t):
	"""One message to many subscribers of mixed versions and QoS (the broker
	encodes a common form once and copies it): each subscriber sees its own
	packet ids, in its own sequence, with the publisher's properties and
	payload intact; a subscriber with a subscription identifier still gets
	it [MQTT-3.3.4-3]."""
	tp = t.topic("fan")
	subs = []
	for i, (version, qos) in enumerate([(5, 1), (5, 1), (4, 1), (5, 2), (4, 2), (4, 0),
					    (5, 0), (5, 1), (4, 1), (5, 1)]):
		r = t.raw(version=version)
		r.handshake(t.cid())
		props = [(R.SUBSCRIPTION_ID, 7)] if i == 9 else None
		r.send(R.subscribe(1, [(tp, qos)], version=version, properties=props))
		r.expect(R.SUBACK)
		subs.append((r, version, qos))
	pub = t.raw(version=5)
	pub.handshake(t.cid())
	uprops = [(R.USER_PROPERTY, ("k", "v")), (R.CONTENT_TYPE, "text/x")]
	for n in range(3):
		pub.send(R.publish(tp, b"m%d" % n, qos=2, pid=n + 1, properties=uprops))
		pub.expect(R.PUBREC)
		pub.send(R.ack(R.PUBREL, n + 1))
		pub.expect(R.PUBCOMP)
	for i, (r, version, qos) in enumerate(subs):
		pids = []
		for n in range(3):
			p = r.expect(R.PUBLISH).publish()
			assert p["payload"] == b"m%d" % n, (i, p)
			assert p["topic"] == tp and p["qos"] == qos and not p["dup"], (i, p)
			if version == 5:
				assert (R.USER_PROPERTY, ("k", "v")) in p["props"], (i, p["props"])
				assert (R.CONTENT_TYPE, "text/x") in p["props"], (i, p["props"])
				assert ((R.SUBSCRIPTION_ID, 7) in p["props"]) == (i == 9), (i, p["props"])
			pids.append(p["pid"])
		if qos:
			assert len(set(pids)) == 3 and 0 not in pids, (i, pids)
		for pid in pids if qos else []:
			r.send(R.ack(R.PUBACK if qos == 1 else R.PUBREC, pid, version))
		for pid in pids if qos == 2 else []:
			assert r.expect(R.PUBREL).pid() == pid
			r.send(R.ack(R.PUBCOMP, pid, version))
		assert r.recv_or_none(0.2) is None
