"""Shared subscriptions $share/{group}/{filter} [MQTT-4.8.2]."""

import rawmqtt as R
from harness import param, mosquitto_differs

VERSIONS = [4, 5]


@param("version", VERSIONS)
@param("transport", ["tcp", "ws"])
def test_mqtt_4_8_2_shared_each_message_to_one_member(t, version, transport):
	tp = t.topic("sh")
	group = "$share/g%s/%s" % (t.tag[-4:], tp)
	a = t.client(version=version, transport=transport)
	b = t.client(version=version, transport=transport)
	a.subscribe(group, 1)
	b.subscribe(group, 1)
	pub = t.client(version=version)
	for i in range(20):
		pub.publish(tp, b"%d" % i, 1)
	got = []
	import time
	deadline = time.monotonic() + 5
	while len(got) < 20 and time.monotonic() < deadline:
		got += [(n, m.payload) for n, c in (("a", a), ("b", b)) for m in c.drain()]
		time.sleep(0.02)
	got += [(n, m.payload) for n, c in (("a", a), ("b", b)) for m in c.drain()]
	a.expect_no_message(0.3)
	b.expect_no_message(0.1)
	payloads = sorted(int(p) for _, p in got)
	assert payloads == list(range(20)), "union must be all, no duplicates: %r" % payloads
	assert {n for n, _ in got} == {"a", "b"}, "both members should get some: %r" % got


@param("version", VERSIONS)
def test_mqtt_4_8_2_shared_and_normal_subscription(t, version):
	tp = t.topic("sh")
	a = t.client(version=version)
	a.subscribe("$share/g/" + tp, 1)
	n = t.client(version=version)
	n.subscribe(tp, 1)
	pub = t.client(version=version)
	pub.publish(tp, b"both", 1)
	assert a.wait_message().payload == b"both"
	assert n.wait_message().payload == b"both"


@mosquitto_differs("mosquitto 2.0.11 accepts No Local on a shared subscription")
@param("transport", ["tcp", "ws"])
def test_mqtt_4_8_2_shared_no_local_is_protocol_error(t, transport):
	# [MQTT-3.8.3-4]: No Local on a shared subscription is a Protocol Error
	r = t.raw_connected(transport=transport)
	r.send(R.subscribe(1, [("$share/g/" + t.topic("x"), 0x05)]))
	got = r.wait_closed(5)
	assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x82, got


@mosquitto_differs("mosquitto 2.0.11 does not hand unacknowledged messages of a "
		   "departed member to the other members (the spec says SHOULD)")
def test_mqtt_4_8_2_shared_unacked_go_to_another_member(t):
	# Member A receives QoS 1 messages and never acknowledges them, then its
	# session ends (expiry 0).  The messages SHOULD then go to member B.
	tp = t.topic("sh")
	group = "$share/g/" + tp
	a = t.raw()
	a.handshake(t.cid("a"), properties=[(R.RECEIVE_MAXIMUM, 3)])
	a.send(R.subscribe(1, [(group, 1)]))
	a.expect(R.SUBACK)
	b = t.client(version=5)
	b.subscribe(group, 1)
	pub = t.client(version=5)
	for i in range(10):
		pub.publish(tp, b"%d" % i, 1)
	held = []
	while True:
		p = a.recv_or_none(0.5)
		if p is None:
			break
		if p.type == R.PUBLISH:
			held.append(int(p.publish()["payload"]))
	assert held, "member A received nothing; cannot test redistribution"
	a.close()
	import time
	got = []
	deadline = time.monotonic() + 5
	while len(set(got) | set(held)) < 10 or not set(held) <= set(got):
		left = deadline - time.monotonic()
		if left <= 0:
			break
		try:
			got.append(int(b.wait_message(left).payload))
		except AssertionError:
			break
	missing = set(range(10)) - set(got)
	assert not missing, "messages held by the departed member never reached B: %s " \
		"(A held %s)" % (sorted(missing), held)
