"""Will messages: abnormal disconnect, normal DISCONNECT, will delay, reason 0x04."""

import time

import rawmqtt as R
from clients import publish_props, connect_props
from harness import param, timeout

VERSIONS = [4, 5]
TRANSPORTS = ["tcp", "ws"]


@param("version", VERSIONS)
@param("transport", TRANSPORTS)
def test_mqtt_3_1_2_8_will_on_abnormal_disconnect(t, version, transport):
	tp = t.topic("will")
	sub = t.client(version=version)
	sub.subscribe(tp, 1)
	c = t.client(version=version, transport=transport,
		     will={"topic": tp, "payload": b"died", "qos": 1})
	c.close_abruptly()
	m = sub.wait_message(5, "(will)")
	assert m.payload == b"died"


@param("version", VERSIONS)
@param("transport", ["tcp", "ws"])
def test_mqtt_3_1_2_8_will_on_connection_reset(t, version, transport):
	tp = t.topic("will")
	sub = t.client(version=version)
	sub.subscribe(tp, 1)
	r = t.raw(transport=transport, version=version)
	r.handshake(t.cid(), will={"topic": tp, "payload": b"reset", "qos": 0})
	r.abort()
	assert sub.wait_message(5, "(will)").payload == b"reset"


@param("version", VERSIONS)
@param("transport", TRANSPORTS)
def test_mqtt_3_1_2_10_no_will_on_normal_disconnect(t, version, transport):
	tp = t.topic("will")
	sub = t.client(version=version)
	sub.subscribe(tp, 1)
	c = t.client(version=version, transport=transport,
		     will={"topic": tp, "payload": b"should not", "qos": 1})
	c.disconnect()
	sub.expect_no_message(1.0)


@param("version", VERSIONS)
def test_mqtt_3_1_2_17_will_retained(t, version):
	tp = t.topic("will")
	c = t.client(version=version, will={"topic": tp, "payload": b"ret", "qos": 1,
					    "retain": True})
	c.close_abruptly()
	sub = t.client(version=version)
	sub.subscribe(tp, 1)
	m = sub.wait_message(5, "(retained will)")
	assert m.payload == b"ret" and m.retain
	sub.publish(tp, b"", 1, retain=True)


@param("transport", ["tcp", "ws"])
def test_mqtt_3_14_2_disconnect_0x04_sends_will(t, transport):
	tp = t.topic("will")
	sub = t.client(version=5)
	sub.subscribe(tp, 1)
	r = t.raw(transport=transport)
	r.handshake(t.cid(), will={"topic": tp, "payload": b"asked", "qos": 1})
	r.send(R.disconnect(0x04))
	# after DISCONNECT the client closes; the server SHOULD close too [MQTT-3.14.4-?]
	try:
		r.wait_closed(1)
	except AssertionError:
		r.close()
	assert sub.wait_message(5, "(will)").payload == b"asked"


@timeout(25)
@param("transport", ["tcp", "ws"])
def test_mqtt_3_1_3_9_will_delay_interval(t, transport):
	tp = t.topic("will")
	sub = t.client(version=5)
	sub.subscribe(tp, 1)
	r = t.raw(transport=transport)
	r.handshake(t.cid(), properties=[(R.SESSION_EXPIRY, 30)],
		    will={"topic": tp, "payload": b"late", "qos": 1,
			  "properties": [(R.WILL_DELAY, 2)]})
	start = time.monotonic()
	r.close()
	sub.expect_no_message(1.3)
	m = sub.wait_message(5, "(delayed will)")
	took = time.monotonic() - start
	assert m.payload == b"late"
	assert 1.5 <= took <= 4.5, "will after %.2fs, delay is 2s" % took


@timeout(25)
def test_mqtt_3_1_3_9_will_delay_cancelled_by_reconnect(t):
	tp = t.topic("will")
	cid = t.cid("wd")
	sub = t.client(version=5)
	sub.subscribe(tp, 1)
	r = t.raw()
	r.handshake(cid, properties=[(R.SESSION_EXPIRY, 30)],
		    will={"topic": tp, "payload": b"never", "qos": 1,
			  "properties": [(R.WILL_DELAY, 3)]})
	r.close()
	time.sleep(0.5)  # reconnect inside the will delay
	r2 = t.raw()
	sp, rc, _ = r2.handshake(cid, clean=False, properties=[(R.SESSION_EXPIRY, 30)])
	assert sp == 1
	sub.expect_no_message(4.0)
	r2.send(R.disconnect(0, properties=[(R.SESSION_EXPIRY, 0)]))


@timeout(25)
def test_mqtt_3_1_2_will_sent_when_session_ends_before_delay(t):
	# The will is published at the earlier of will delay and session end.
	tp = t.topic("will")
	sub = t.client(version=5)
	sub.subscribe(tp, 1)
	r = t.raw()
	r.handshake(t.cid(), properties=[(R.SESSION_EXPIRY, 1)],
		    will={"topic": tp, "payload": b"session over", "qos": 1,
			  "properties": [(R.WILL_DELAY, 30)]})
	start = time.monotonic()
	r.close()
	m = sub.wait_message(6, "(will at session end)")
	assert m.payload == b"session over"
	assert time.monotonic() - start < 5


def test_mqtt_3_1_3_will_properties_forwarded(t):
	tp = t.topic("will")
	sub = t.client(version=5)
	sub.subscribe(tp, 1)
	c = t.client(version=5, will={"topic": tp, "payload": b"w", "qos": 1, "properties":
				      publish_props(ContentType="text/x-will",
						    UserProperty=[("k", "v")])})
	c.close_abruptly()
	m = sub.wait_message(5, "(will)")
	assert m.properties.ContentType == "text/x-will"
	assert m.properties.UserProperty == [("k", "v")]
