"""Retained messages [MQTT-3.3.1-5 .. -13], retain handling and retain-as-published."""

from harness import param

VERSIONS = [4, 5]
TRANSPORTS = ["tcp", "ws"]


@param("version", VERSIONS)
@param("transport", TRANSPORTS)
def test_mqtt_3_3_1_6_retain_delivered_on_subscribe(t, version, transport):
	tp = t.topic("r")
	pub = t.client(version=version)
	pub.publish(tp, b"kept", 1, retain=True)
	sub = t.client(version=version, transport=transport)
	sub.subscribe(tp, 1)
	m = sub.wait_message()
	assert m.payload == b"kept" and m.retain, "retain flag must be 1 [MQTT-3.3.1-8]"
	pub.publish(tp, b"", 1, retain=True)


@param("version", VERSIONS)
def test_mqtt_3_3_1_5_retain_replaced(t, version):
	tp = t.topic("r")
	pub = t.client(version=version)
	pub.publish(tp, b"one", 1, retain=True)
	pub.publish(tp, b"two", 1, retain=True)
	sub = t.client(version=version)
	sub.subscribe(tp, 1)
	assert sub.wait_message().payload == b"two"
	sub.expect_no_message(0.4)
	pub.publish(tp, b"", 1, retain=True)


@param("version", VERSIONS)
@param("transport", TRANSPORTS)
def test_mqtt_3_3_1_10_empty_retained_clears_and_is_forwarded(t, version, transport):
	tp = t.topic("r")
	live = t.client(version=version, transport=transport)
	live.subscribe(tp, 1)
	pub = t.client(version=version)
	pub.publish(tp, b"gone soon", 1, retain=True)
	assert live.wait_message().payload == b"gone soon"
	pub.publish(tp, b"", 1, retain=True)
	m = live.wait_message()  # processed as normal [MQTT-3.3.1-10]
	assert m.payload == b""
	late = t.client(version=version, transport=transport)
	late.subscribe(tp, 1)
	late.expect_no_message(0.5)  # not stored [MQTT-3.3.1-11]


@param("version", VERSIONS)
def test_mqtt_3_3_1_9_live_delivery_retain_flag_zero(t, version):
	tp = t.topic("r")
	sub = t.client(version=version)
	sub.subscribe(tp, 1)
	pub = t.client(version=version)
	pub.publish(tp, b"live", 1, retain=True)
	m = sub.wait_message()
	assert m.payload == b"live" and not m.retain, "live copy must have retain 0"
	pub.publish(tp, b"", 1, retain=True)


@param("transport", TRANSPORTS)
def test_mqtt_3_3_1_12_retain_as_published(t, transport):
	tp = t.topic("r")
	sub = t.client(version=5, transport=transport)
	sub.subscribe(tp, 1, retain_as_published=True)
	pub = t.client(version=5)
	pub.publish(tp, b"rap", 1, retain=True)
	pub.publish(tp, b"norap", 1, retain=False)
	m1, m2 = sub.wait_messages(2)
	assert m1.payload == b"rap" and m1.retain
	assert m2.payload == b"norap" and not m2.retain
	pub.publish(tp, b"", 1, retain=True)


def test_mqtt_3_3_1_9_retain_handling_0_1_2(t):
	tp = t.topic("rh")
	pub = t.client(version=5)
	pub.publish(tp, b"stored", 1, retain=True)
	# 0: sent at every subscribe
	c0 = t.client(version=5)
	c0.subscribe(tp, 1, retain_handling=0)
	assert c0.wait_message().payload == b"stored"
	c0.subscribe(tp, 1, retain_handling=0)
	assert c0.wait_message().payload == b"stored"
	# 1: only when the subscription did not exist [MQTT-3.3.1-10 (v5)]
	c1 = t.client(version=5)
	c1.subscribe(tp, 1, retain_handling=1)
	assert c1.wait_message().payload == b"stored"
	c1.subscribe(tp, 1, retain_handling=1)
	c1.expect_no_message(0.5)
	# 2: never [MQTT-3.3.1-11 (v5)]
	c2 = t.client(version=5)
	c2.subscribe(tp, 1, retain_handling=2)
	c2.expect_no_message(0.5)
	pub.publish(tp, b"", 1, retain=True)


@param("version", VERSIONS)
def test_mqtt_3_3_1_retained_matched_by_wildcard(t, version):
	base = t.topic()
	pub = t.client(version=version)
	pub.publish(base + "/a/x", b"ax", 1, retain=True)
	pub.publish(base + "/b/x", b"bx", 1, retain=True)
	pub.publish(base + "/b/y", b"by", 1, retain=True)
	sub = t.client(version=version)
	sub.subscribe(base + "/+/x", 1)
	got = sorted(m.payload for m in sub.wait_messages(2))
	assert got == [b"ax", b"bx"], got
	sub.expect_no_message(0.4)
	for tp in ("a/x", "b/x", "b/y"):
		pub.publish(base + "/" + tp, b"", 1, retain=True)


@param("version", VERSIONS)
def test_mqtt_3_3_1_retained_qos_downgraded(t, version):
	tp = t.topic("r")
	pub = t.client(version=version)
	pub.publish(tp, b"q2", 2, retain=True)
	sub = t.client(version=version)
	sub.subscribe(tp, 1)
	m = sub.wait_message()
	assert m.qos == 1 and m.retain
	pub.publish(tp, b"", 1, retain=True)
