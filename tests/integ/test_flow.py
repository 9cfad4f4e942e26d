"""MQTT 5 flow control and limits: receive maximum, maximum packet size,
message expiry, topic aliases."""

import time

import rawmqtt as R
from clients import publish_props, connect_props
from harness import param, timeout, mosquitto_differs


@mosquitto_differs("mosquitto 2.0.11 answers the excess PUBLISH with PUBREC 0x97 "
		   "instead of DISCONNECT 0x93")
@param("transport", R.TRANSPORTS)
def test_mqtt_3_3_4_7_receive_maximum_exceeded_disconnect_0x93(t, transport):
	b = t.broker(["max_inflight_messages 2"])
	r = t.raw(b, transport=transport)
	sp, rc, props = r.handshake(t.cid())
	rmax = R.prop(props, R.RECEIVE_MAXIMUM, 65535)
	assert rmax == 2, "CONNACK Receive Maximum %r, expected 2" % rmax
	tp = t.topic("rm")
	# QoS 2 PUBLISHes stay unacknowledged until PUBCOMP: send rmax + 1
	pkts = [R.publish(tp, b"x", qos=2, pid=i) for i in range(1, rmax + 2)]
	r.send_many(pkts)
	got = r.wait_closed(5)
	assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x93, got
	t.check_alive(b)


@mosquitto_differs("mosquitto 2.0.11 answers the excess PUBLISH with PUBREC 0x97 "
		   "instead of DISCONNECT 0x93")
@param("transport", ["tcp", "ws"])
def test_disconnect_readable_by_a_client_still_sending(t, transport):
	"""A client that keeps sending after the broker disconnected it (Paho's
	test_flow_control2: Receive Maximum + 1 QoS 2 PUBLISHes, then more) can
	finish its writes and read the DISCONNECT 0x93: the broker half-closes
	and drops the rest of the input before closing, instead of closing with
	unread input (which the kernel answers with a reset: a broken pipe for
	the client, and the DISCONNECT lost)."""
	b = t.broker(["max_inflight_messages 2"])
	r = t.raw(b, transport=transport)
	r.handshake(t.cid())
	tp = t.topic("linger")
	pkts = [R.publish(tp, b"x" * 1000, qos=2, pid=i) for i in range(1, 3 + 300)]
	for i in range(0, len(pkts), 50):
		r.send(b"".join(pkts[i:i + 50]))
		time.sleep(0.02)  # the broker has disconnected us by now: still writing
	assert not r.send_failed, "broken pipe or reset while the client was still sending"
	time.sleep(0.3)
	got = r.wait_closed(5)
	assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x93, got
	t.check_alive(b)


def test_mqtt_v311_has_no_receive_maximum_for_qos2_publishers(t):
	"""3.1.1 has no Receive Maximum: a publisher with many QoS 2 messages
	awaiting PUBREL is not disconnected, whatever max_inflight_messages says."""
	b = t.broker(["max_inflight_messages 2"])
	r = t.raw(b, version=4)
	r.handshake(t.cid())
	tp = t.topic("rm311")
	r.send_many([R.publish(tp, b"x", qos=2, pid=i, version=4) for i in range(1, 11)])
	recs = [r.expect(R.PUBREC).pid() for _ in range(10)]
	assert sorted(recs) == list(range(1, 11)), recs
	for pid in range(1, 11):
		r.send(R.ack(R.PUBREL, pid, 4))
	comps = [r.expect(R.PUBCOMP).pid() for _ in range(10)]
	assert sorted(comps) == list(range(1, 11)), comps


@param("transport", ["tcp", "ws"])
def test_mqtt_3_3_4_9_broker_respects_client_receive_maximum(t, transport):
	tp = t.topic("rm")
	r = t.raw(transport=transport)
	r.handshake(t.cid(), properties=[(R.RECEIVE_MAXIMUM, 2)])
	r.send(R.subscribe(1, [(tp, 1)]))
	r.expect(R.SUBACK)
	pub = t.client(version=5)
	for i in range(6):
		pub.publish(tp, b"%d" % i, 1)
	pending = [r.expect(R.PUBLISH).publish() for _ in range(2)]
	assert r.recv_or_none(0.7) is None, "more than Receive Maximum in flight"
	got = [p["payload"] for p in pending]
	while len(got) < 6:
		p = pending.pop(0)
		r.send(R.ack(R.PUBACK, p["pid"]))
		n = r.expect(R.PUBLISH).publish()
		pending.append(n)
		got.append(n["payload"])
		assert len(pending) <= 2
	for p in pending:
		r.send(R.ack(R.PUBACK, p["pid"]))
	assert got == [b"%d" % i for i in range(6)], got


@mosquitto_differs("over WebSocket mosquitto 2.0.11 does not enforce max_packet_size",
		   transport="ws")
@param("version", [4, 5])
@param("transport", ["tcp", "ws"])
def test_mqtt_3_2_2_maximum_packet_size_exceeded(t, version, transport):
	b = t.broker(["max_packet_size 1000"])
	r = t.raw(b, transport=transport, version=version)
	sp, rc, props = r.handshake(t.cid())
	if version == 5:
		assert R.prop(props, R.MAXIMUM_PACKET_SIZE) == 1000, props
	r.send(R.publish(t.topic("big"), b"x" * 2000, qos=1, version=version))
	got = r.wait_closed(5)
	if version == 5:
		# [MQTT-3.1.2-24] / 4.13: DISCONNECT 0x95 Packet too large
		assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x95, got
	t.check_alive(b)


def test_mqtt_3_1_2_25_message_larger_than_client_maximum_not_sent(t):
	tp = t.topic("mps")
	r = t.raw()
	r.handshake(t.cid(), properties=[(R.MAXIMUM_PACKET_SIZE, 200)])
	r.send(R.subscribe(1, [(tp, 1)]))
	r.expect(R.SUBACK)
	other = t.client(version=5)
	other.subscribe(tp, 1)
	pub = t.client(version=5)
	pub.publish(tp, b"B" * 500, 1)
	assert other.wait_message().payload == b"B" * 500
	pub.publish(tp, b"small", 1)
	p = r.expect(R.PUBLISH).publish()
	assert p["payload"] == b"small", "the oversized message must be discarded for this client"
	r.send(R.ack(R.PUBACK, p["pid"]))


@param("transport", ["tcp", "ws"])
def test_mqtt_3_3_2_6_message_expiry_forwarded(t, transport):
	tp = t.topic("exp")
	c = t.client(version=5, transport=transport)
	c.subscribe(tp, 1)
	pub = t.client(version=5)
	pub.publish(tp, b"live", 1, properties=publish_props(MessageExpiryInterval=60))
	m = c.wait_message()
	assert 0 < m.properties.MessageExpiryInterval <= 60, m.properties
	pub.publish(tp, b"none", 1)
	m = c.wait_message()
	assert not hasattr(m.properties, "MessageExpiryInterval"), "no expiry was set"


@timeout(25)
def test_mqtt_3_3_2_6_message_expiry_reduced_while_queued(t):
	tp = t.topic("exp")
	cid = t.cid("ex")
	c = t.client(client_id=cid, version=5, clean=False,
		     properties=connect_props(SessionExpiryInterval=60))
	c.subscribe(tp, 1)
	c.disconnect()
	pub = t.client(version=5)
	pub.publish(tp, b"stored", 1, properties=publish_props(MessageExpiryInterval=60))
	time.sleep(2.2)  # time spent queued is what is tested
	c = t.client(client_id=cid, version=5, clean=False,
		     properties=connect_props(SessionExpiryInterval=0))
	m = c.wait_message()
	assert m.payload == b"stored"
	assert m.properties.MessageExpiryInterval <= 58, m.properties.MessageExpiryInterval


@timeout(25)
def test_mqtt_3_3_2_5_expired_message_not_delivered(t):
	tp = t.topic("exp")
	cid = t.cid("ex")
	c = t.client(client_id=cid, version=5, clean=False,
		     properties=connect_props(SessionExpiryInterval=60))
	c.subscribe(tp, 1)
	c.disconnect()
	pub = t.client(version=5)
	pub.publish(tp, b"short", 1, properties=publish_props(MessageExpiryInterval=1))
	pub.publish(tp, b"long", 1, properties=publish_props(MessageExpiryInterval=100))
	time.sleep(2.5)  # let the first expire
	c = t.client(client_id=cid, version=5, clean=False,
		     properties=connect_props(SessionExpiryInterval=0))
	assert c.wait_message().payload == b"long"
	c.expect_no_message(0.5)


@param("transport", R.TRANSPORTS)
def test_mqtt_3_3_2_12_topic_alias_client_to_broker(t, transport):
	tp = t.topic("alias")
	sub = t.client(version=5)
	sub.subscribe(tp, 1)
	r = t.raw(transport=transport)
	sp, rc, props = r.handshake(t.cid())
	assert R.prop(props, R.TOPIC_ALIAS_MAXIMUM, 0) >= 1, "broker offers no topic aliases"
	r.send(R.publish(tp, b"first", qos=1, pid=1, properties=[(R.TOPIC_ALIAS, 1)]))
	r.expect(R.PUBACK)
	r.send(R.publish("", b"second", qos=1, pid=2, properties=[(R.TOPIC_ALIAS, 1)]))
	assert r.expect(R.PUBACK).reason() == 0
	m1, m2 = sub.wait_messages(2)
	assert (m1.topic, m1.payload) == (tp, b"first")
	assert (m2.topic, m2.payload) == (tp, b"second")


def invalid_alias(t, transport, alias):
	r = t.raw(transport=transport)
	sp, rc, props = r.handshake(t.cid())
	amax = R.prop(props, R.TOPIC_ALIAS_MAXIMUM, 0)
	val = 0 if alias == "zero" else amax + 1
	r.send(R.publish(t.topic("a"), b"x", qos=0, properties=[(R.TOPIC_ALIAS, val)]))
	got = r.wait_closed(5)
	assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x94, got
	t.check_alive()


@param("transport", R.TRANSPORTS)
def test_mqtt_3_3_2_10_topic_alias_above_maximum_disconnect_0x94(t, transport):
	invalid_alias(t, transport, "above_max")


@mosquitto_differs("mosquitto 2.0.11 treats alias 0 as malformed (DISCONNECT 0x81)")
@param("transport", R.TRANSPORTS)
def test_mqtt_3_3_2_8_topic_alias_zero_disconnect_0x94(t, transport):
	invalid_alias(t, transport, "zero")


@param("transport", ["tcp", "ws"])
def test_mqtt_3_3_4_unknown_topic_alias_protocol_error(t, transport):
	r = t.raw(transport=transport)
	r.handshake(t.cid())
	r.send(R.publish("", b"x", qos=0, properties=[(R.TOPIC_ALIAS, 1)]))
	got = r.wait_closed(5)
	assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x82, got
	t.check_alive()


@mosquitto_differs("mosquitto 2.0.11 never assigns topic aliases to outgoing PUBLISH "
		   "(the spec makes this optional; sluice does it)")
@param("transport", ["tcp", "ws"])
def test_mqtt_3_3_2_broker_assigns_topic_alias(t, transport):
	tp = t.topic("alias")
	r = t.raw(transport=transport)
	r.handshake(t.cid(), properties=[(R.TOPIC_ALIAS_MAXIMUM, 5)])
	r.send(R.subscribe(1, [(tp, 0)]))
	r.expect(R.SUBACK)
	pub = t.client(version=5)
	pub.publish(tp, b"1", 1)
	pub.publish(tp, b"2", 1)
	p1 = r.expect(R.PUBLISH).publish()
	p2 = r.expect(R.PUBLISH).publish()
	a1 = R.prop(p1["props"], R.TOPIC_ALIAS)
	a2 = R.prop(p2["props"], R.TOPIC_ALIAS)
	assert p1["topic"] == tp and a1 and 1 <= a1 <= 5, p1
	assert p2["topic"] == "" and a2 == a1, "second PUBLISH should use the alias: %r" % p2


def test_mqtt_3_3_2_broker_no_alias_without_topic_alias_maximum(t):
	tp = t.topic("alias")
	r = t.raw()
	r.handshake(t.cid())  # no Topic Alias Maximum: 0 [MQTT-3.1.2-26]
	r.send(R.subscribe(1, [(tp, 0)]))
	r.expect(R.SUBACK)
	pub = t.client(version=5)
	pub.publish(tp, b"1", 1)
	pub.publish(tp, b"2", 1)
	for _ in range(2):
		p = r.expect(R.PUBLISH).publish()
		assert p["topic"] == tp and R.prop(p["props"], R.TOPIC_ALIAS) is None, p


@param("transport", ["tcp", "ws"])
def test_mqtt_3_3_1_14_retain_not_available_disconnect_0x9a(t, transport):
	b = t.broker(["retain_available false"])
	r = t.raw(b, transport=transport)
	sp, rc, props = r.handshake(t.cid())
	assert R.prop(props, 0x25) == 0, "CONNACK must say Retain Available 0: %r" % props
	r.send(R.publish(t.topic("r"), b"x", qos=0, retain=True))
	got = r.wait_closed(5)
	assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x9A, got
	t.check_alive(b)


@param("transport", ["tcp", "ws"])
def test_mqtt_3_2_2_11_maximum_qos_exceeded_disconnect_0x9b(t, transport):
	b = t.broker(["max_qos 1"])
	r = t.raw(b, transport=transport)
	sp, rc, props = r.handshake(t.cid())
	assert R.prop(props, R.MAXIMUM_QOS) == 1, "CONNACK must say Maximum QoS 1: %r" % props
	r.send(R.publish(t.topic("q"), b"x", qos=2, pid=1))
	got = r.wait_closed(5)
	assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x9B, got
	t.check_alive(b)


def test_mqtt_3_2_2_11_maximum_qos_subscription_downgraded(t):
	b = t.broker(["max_qos 1"])
	c = t.client(b, version=5)
	assert c.subscribe(t.topic("q"), 2) == [1]
	c4 = t.client(b, version=4)
	assert c4.subscribe(t.topic("q"), 2) == [1]


@param("version", [4, 5])
def test_mqtt_3_1_3_8_zero_length_client_id_not_allowed(t, version):
	b = t.broker(["allow_zero_length_clientid false"])
	r = t.raw(b, version=version)
	r.send(R.connect("", version=version, clean=True))
	got = r.wait_closed(5)
	assert got and got[0].type == R.CONNACK, got
	rc = got[0].body[1]
	if version == 5:
		# the spec suggests 0x85 (a MAY); mosquitto 2.0.11 sends 0x80: any refusal
		assert rc >= 0x80, "CONNACK 0x%02x" % rc
	else:
		assert rc == 0x02, "CONNACK 0x%02x, expected 0x02 [MQTT-3.2.2-?]" % rc


@mosquitto_differs("mosquitto 2.0.11 reuses packet id 1 after a lap while it is still "
		   "unacknowledged")
@timeout(60)
def test_mqtt_2_3_1_2_packet_ids_after_wrap_skip_one_in_use(t):
	"""The broker's packet ids go round 1..65535: after a lap, an id still
	unacknowledged (the subscriber holds the first message) is skipped
	[MQTT-2.3.1-2], and every message arrives once and in order."""
	total = 65535 + 10
	b = t.broker(["max_inflight_messages 4", "max_queued_messages 100000"])
	tp = t.topic("wrap")
	sub = t.raw(b, version=4)
	sub.handshake(t.cid())
	sub.send(R.subscribe(1, [(tp, 1)], version=4))
	sub.expect(R.SUBACK)
	pub = t.raw(b, version=4)
	pub.handshake(t.cid())
	for start in range(0, total, 5000):
		n = min(5000, total - start)
		pub.send_many([R.publish(tp, b"%d" % (start + i), qos=1, pid=(start + i) % 65535 + 1,
					 version=4) for i in range(n)])
		for _ in range(n):
			pub.expect(R.PUBACK)
	held = sub.expect(R.PUBLISH).publish()
	assert held["payload"] == b"0", held
	pids = [held["pid"]]
	for i in range(1, total):
		p = sub.expect(R.PUBLISH).publish()
		assert p["payload"] == b"%d" % i, (i, p)
		assert p["pid"] != held["pid"], "id %d reused while unacknowledged" % p["pid"]
		pids.append(p["pid"])
		sub.send(R.ack(R.PUBACK, p["pid"], 4))
	sub.send(R.ack(R.PUBACK, held["pid"], 4))
	assert pids[:3] == [1, 2, 3], pids[:3]
	after = pids.index(65535) + 1
	assert pids[after] == 2, "after 65535 came %d, expected 2 (1 is in use)" % pids[after]
	assert sub.recv_or_none(0.3) is None
