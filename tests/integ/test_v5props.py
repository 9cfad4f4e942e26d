"""MQTT 5 properties and options: subscription identifiers, overlapping
subscriptions, no local, request/response, user properties, payload format,
content type, response information."""

import rawmqtt as R
from clients import publish_props, subscribe_props, connect_props
from harness import param, mosquitto_differs

TRANSPORTS = ["tcp", "ws"]


@param("transport", TRANSPORTS)
def test_mqtt_3_8_2_subscription_identifier(t, transport):
	tp = t.topic("sid")
	c = t.client(version=5, transport=transport)
	c.subscribe(tp, 1, properties=subscribe_props(SubscriptionIdentifier=42))
	t.client(version=5).publish(tp, b"x", 1)
	m = c.wait_message()
	assert m.properties.SubscriptionIdentifier == [42], m.properties


@mosquitto_differs("mosquitto 2.0.11 sends one copy per matching subscription, which "
		   "the spec also allows; sluice is designed to send a single copy")
def test_mqtt_3_3_4_2_overlapping_subscriptions_one_copy_all_identifiers(t):
	# The spec lets a server send one copy (max QoS, all identifiers) or one copy
	# per subscription [MQTT-3.3.4-2..5]; sluice sends one and this test holds
	# it to that.
	base = t.topic()
	r = t.raw()
	r.handshake(t.cid())
	r.send(R.subscribe(1, [(base + "/#", 0)], properties=[(R.SUBSCRIPTION_ID, 1)]))
	r.expect(R.SUBACK)
	r.send(R.subscribe(2, [(base + "/+", 2)], properties=[(R.SUBSCRIPTION_ID, 2)]))
	r.expect(R.SUBACK)
	r.send(R.subscribe(3, [(base + "/x", 1)]))  # no identifier
	r.expect(R.SUBACK)
	t.client(version=5).publish(base + "/x", b"o", 2)
	copies = []
	while True:
		p = r.recv_or_none(0.7)
		if p is None:
			break
		if p.type == R.PUBLISH:
			d = p.publish()
			copies.append(d)
			if d["qos"] == 2:
				r.send(R.ack(R.PUBREC, d["pid"]))
			elif d["qos"] == 1:
				r.send(R.ack(R.PUBACK, d["pid"]))
		elif p.type == R.PUBREL:
			r.send(R.ack(R.PUBCOMP, p.pid()))
	assert len(copies) == 1, "expected one copy, got %r" % copies
	assert copies[0]["qos"] == 2, copies
	sids = sorted(R.prop_all(copies[0]["props"], R.SUBSCRIPTION_ID))
	assert sids == [1, 2], sids


@param("transport", TRANSPORTS)
def test_mqtt_3_8_3_3_no_local(t, transport):
	tp = t.topic("nl")
	c = t.client(version=5, transport=transport)
	c.subscribe(tp, 1, no_local=True)
	c.publish(tp, b"own", 1)
	t.client(version=5).publish(tp, b"other", 1)
	assert c.wait_message().payload == b"other"
	c.expect_no_message(0.4)


@param("transport", TRANSPORTS)
def test_mqtt_3_3_2_response_topic_and_correlation_data(t, transport):
	tp = t.topic("req")
	c = t.client(version=5, transport=transport)
	c.subscribe(tp, 1)
	t.client(version=5).publish(tp, b"q", 1, properties=publish_props(
		ResponseTopic=t.topic("resp"), CorrelationData=b"\x00\x01corr\xff"))
	m = c.wait_message()
	assert m.properties.ResponseTopic == t.topic("resp")
	assert m.properties.CorrelationData == b"\x00\x01corr\xff"


@mosquitto_differs("mosquitto 2.0.11 does not send Response Information")
@param("transport", TRANSPORTS)
def test_mqtt_3_1_2_28_response_information_when_requested(t, transport):
	r = t.raw(transport=transport)
	sp, rc, props = r.handshake(t.cid(), properties=[(R.REQUEST_RESPONSE_INFO, 1)])
	info = R.prop(props, R.RESPONSE_INFO)
	assert info, "no Response Information in CONNACK: %r" % props
	r2 = t.raw(transport=transport)
	sp, rc, props = r2.handshake(t.cid())
	assert R.prop(props, R.RESPONSE_INFO) is None, "not requested [MQTT-3.1.2-28]"


@param("transport", TRANSPORTS)
def test_mqtt_3_3_2_18_user_properties_in_order(t, transport):
	tp = t.topic("up")
	c = t.client(version=5, transport=transport)
	c.subscribe(tp, 1)
	up = [("a", "1"), ("b", "2"), ("a", "3"), ("ü", "ß")]
	t.client(version=5).publish(tp, b"u", 1, properties=publish_props(UserProperty=up))
	m = c.wait_message()
	assert m.properties.UserProperty == up, m.properties.UserProperty


@param("transport", TRANSPORTS)
def test_mqtt_3_3_2_content_type_and_payload_format(t, transport):
	tp = t.topic("ct")
	c = t.client(version=5, transport=transport)
	c.subscribe(tp, 1)
	t.client(version=5).publish(tp, "héllo".encode(), 1, properties=publish_props(
		ContentType="application/x-integ", PayloadFormatIndicator=1))
	m = c.wait_message()
	assert m.properties.ContentType == "application/x-integ"
	assert m.properties.PayloadFormatIndicator == 1


@mosquitto_differs("checking the payload is a MAY; mosquitto 2.0.11 does not check "
		   "(PUBACK 0x00), sluice does")
@param("transport", R.TRANSPORTS)
def test_mqtt_3_3_2_4_payload_format_invalid_utf8_0x99(t, transport):
	# The receiver MAY check the payload; on failure PUBACK 0x99 or DISCONNECT 0x99.
	tp = t.topic("pfi")
	sub = t.client(version=5)
	sub.subscribe(tp, 1)
	r = t.raw_connected(transport=transport)
	r.send(R.publish(tp, b"bad \xff\xfe utf8", qos=1, pid=5,
			 properties=[(R.PAYLOAD_FORMAT, 1)]))
	p = r.recv(5)
	if p.type == R.PUBACK:
		assert p.reason() == 0x99, p
	else:
		assert p.type == R.DISCONNECT and p.reason() == 0x99, p
	sub.expect_no_message(0.5)


def test_mqtt_3_3_2_5_message_expiry_and_props_with_v311_subscriber(t):
	# a 3.1.1 subscriber gets the payload; properties are simply not sent
	tp = t.topic("mix")
	c = t.client(version=4)
	c.subscribe(tp, 1)
	t.client(version=5).publish(tp, b"p", 1, properties=publish_props(
		UserProperty=[("k", "v")], MessageExpiryInterval=30))
	assert c.wait_message().payload == b"p"


@param("transport", TRANSPORTS)
def test_mqtt_3_9_3_suback_reason_codes(t, transport):
	r = t.raw_connected(transport=transport)
	tp = t.topic("sa")
	r.send(R.subscribe(9, [(tp + "/0", 0), (tp + "/1", 1), (tp + "/2", 2)]))
	pid, codes = r.expect(R.SUBACK).suback()
	assert pid == 9 and codes == [0, 1, 2], codes


@param("transport", TRANSPORTS)
def test_mqtt_3_2_2_connack_properties(t, transport):
	r = t.raw(transport=transport)
	sp, rc, props = r.handshake(t.cid())
	assert rc == 0
	# only properties allowed in CONNACK, each at most once except User Property
	allowed = {0x11, 0x21, 0x24, 0x25, 0x27, 0x12, 0x22, 0x1F, 0x26, 0x28, 0x29, 0x2A,
		   0x13, 0x1A, 0x1C, 0x15, 0x16}
	ids = [k for k, _ in props]
	assert set(ids) <= allowed, ids
	assert len([i for i in ids if i != 0x26]) == len(set(i for i in ids if i != 0x26)), ids
