"""CONNECT / CONNACK, protocol levels, client identifiers, take-over, keep alive."""

import socket
import time

import rawmqtt as R
from harness import param, timeout, skip_on_mosquitto, wait_until, mosquitto_differs

VERSIONS = [4, 5]
TRANSPORTS = ["tcp", "ws"]


@param("version", VERSIONS)
@param("transport", TRANSPORTS)
def test_mqtt_3_2_connect_connack(t, version, transport):
	c = t.client(version=version, transport=transport, clean=True)
	assert c.connack_rc == 0
	assert not c.session_present, "clean session must not report a session [MQTT-3.2.2-1]"
	c.disconnect()


@param("transport", R.TRANSPORTS)
def test_mqtt_3_1_mqisdp_level3_connect(t, transport):
	# MQTT 3.1: protocol name "MQIsdp", level 3; client ids up to 23 bytes.
	r = t.raw(transport=transport, version=3)
	sp, rc, _ = r.handshake("v31_%s" % t.tag[-8:])
	assert rc == 0
	tp = t.topic("v31")
	r.send(R.subscribe(1, [(tp, 1)], version=3))
	assert r.expect(R.SUBACK).suback() == (1, [1])
	r.send(R.publish(tp, b"old", qos=1, pid=2, version=3))
	got = {}
	for _ in range(2):
		p = r.recv()
		got[p.type] = p
	assert R.PUBACK in got and R.PUBLISH in got, got
	assert got[R.PUBLISH].publish()["payload"] == b"old"


@param("transport", ["tcp", "ws"])
def test_mqtt_3_1_2_2_unsupported_protocol_level_v311(t, transport):
	# [MQTT-3.1.2-2] (3.1.1): unsupported level -> CONNACK 0x01, then close.
	r = t.raw(transport=transport, version=4)
	pkt = bytearray(R.connect(t.cid(), version=4))
	pkt[8] = 6  # protocol level byte after 00 04 'MQTT'
	r.send(bytes(pkt))
	got = r.wait_closed(5)
	assert got and got[0].type == R.CONNACK, "expected CONNACK before close, got %r" % got
	assert got[0].body[1] == 0x01, "CONNACK return code 0x%02x, expected 0x01" % got[0].body[1]


@param("transport", ["tcp", "ws"])
def test_mqtt_3_1_2_2_unsupported_protocol_level_v5_layout(t, transport):
	# MQTT 5 [MQTT-3.1.2-2]: a server that does not accept the level MAY send
	# CONNACK 0x84 (or 0x01 in the 3.1.1 layout, as the level is unknown) and
	# MUST close the connection.
	r = t.raw(transport=transport, version=5)
	pkt = bytearray(R.connect(t.cid(), version=5))
	pkt[8] = 7
	r.send(bytes(pkt))
	got = r.wait_closed(5)
	if got:
		assert got[0].type == R.CONNACK, got
		assert got[0].body[1] in (0x01, 0x84), "CONNACK code 0x%02x" % got[0].body[1]


@param("version", VERSIONS)
@param("transport", R.TRANSPORTS)
def test_mqtt_3_1_0_1_first_packet_not_connect(t, version, transport):
	r = t.raw(transport=transport, version=version)
	r.send(R.publish(t.topic("x"), b"no", version=version))
	got = r.wait_closed(5)
	assert not any(p.type == R.CONNACK for p in got), got
	t.check_alive()


@mosquitto_differs("mosquitto closes without sending DISCONNECT 0x82 (a SHOULD in 4.13.1)",
		   version=5)
@param("version", VERSIONS)
@param("transport", R.TRANSPORTS)
def test_mqtt_3_1_0_2_second_connect_is_protocol_error(t, version, transport):
	r = t.raw_connected(transport=transport, version=version)
	r.send(R.connect(t.cid(), version=version))
	got = r.wait_closed(5)
	if version == 5:
		# [MQTT-3.1.0-2] Protocol Error; DISCONNECT 0x82 before close [MQTT-4.13.1-1]
		assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x82, got
	else:
		assert not got, got
	t.check_alive()


@param("transport", ["tcp", "ws"])
def test_mqtt_3_2_2_16_assigned_client_identifier(t, transport):
	r = t.raw(transport=transport, version=5)
	sp, rc, props = r.handshake("")
	cid = R.prop(props, R.ASSIGNED_CLIENT_ID)
	assert cid, "CONNACK has no Assigned Client Identifier: %r" % props
	# the assigned id is a working identity
	tp = t.topic("aci")
	r.send(R.subscribe(1, [(tp, 0)]))
	r.expect(R.SUBACK)


@param("transport", ["tcp", "ws"])
def test_mqtt_3_1_3_7_empty_client_id_clean_session_v311(t, transport):
	r = t.raw(transport=transport, version=4)
	sp, rc, _ = r.handshake("", clean=True)
	assert rc == 0 and sp == 0


@param("transport", ["tcp", "ws"])
def test_mqtt_3_1_3_8_empty_client_id_persistent_rejected_v311(t, transport):
	r = t.raw(transport=transport, version=4)
	r.send(R.connect("", version=4, clean=False))
	got = r.wait_closed(5)
	assert got and got[0].type == R.CONNACK and got[0].body[1] == 0x02, got


@param("version", VERSIONS)
@param("transport", TRANSPORTS)
def test_mqtt_3_1_4_2_client_takeover(t, version, transport):
	cid = t.cid("dup")
	a = t.client(client_id=cid, version=version, transport=transport)
	b = t.client(client_id=cid, version=version, transport=transport)
	a.wait_disconnected(5)
	tp = t.topic("to")
	b.subscribe(tp, 1)
	b.publish(tp, b"still here", 1)
	assert b.wait_message().payload == b"still here"


@mosquitto_differs("mosquitto 2.0.11 closes the old connection without DISCONNECT 0x8E")
@param("transport", R.TRANSPORTS)
def test_mqtt_3_1_4_3_takeover_sends_disconnect_0x8e(t, transport):
	cid = t.cid("dup")
	a = t.raw_connected(transport=transport, client_id=cid)
	t.raw_connected(transport="tcp", client_id=cid)
	got = a.wait_closed(5)
	assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x8E, got


@param("transport", ["tcp", "ws"])
def test_mqtt_3_2_2_21_server_keep_alive(t, transport):
	b = t.broker(["max_keepalive 10"])
	r = t.raw(b, transport=transport, version=5)
	sp, rc, props = r.handshake(t.cid(), keepalive=60)
	assert R.prop(props, R.SERVER_KEEP_ALIVE) == 10, props
	# keep alive 0 also exceeds the maximum [MQTT-3.2.2-21]
	r2 = t.raw(b, transport=transport, version=5)
	sp, rc, props = r2.handshake(t.cid(), keepalive=0)
	assert R.prop(props, R.SERVER_KEEP_ALIVE) == 10, props


@mosquitto_differs("mosquitto 2.0.11 checks keep alive only every ~5 s, so closes late")
@timeout(25)
@param("version", VERSIONS)
@param("transport", ["tcp", "ws"])
def test_mqtt_3_1_2_24_keepalive_timeout_publishes_will(t, version, transport):
	# Keep alive 2 s: the broker must disconnect after 3 s of silence and
	# publish the will [MQTT-3.1.2-22] [MQTT-3.1.2-8].
	tp = t.topic("will")
	sub = t.client(version=version)
	sub.subscribe(tp, 1)
	r = t.raw(transport=transport, version=version)
	r.handshake(t.cid(), keepalive=2, will={"topic": tp, "payload": b"gone", "qos": 1})
	start = time.monotonic()
	r.wait_closed(10)
	took = time.monotonic() - start
	assert 2.0 <= took <= 4.5, "closed after %.2fs, expected about 3s" % took
	assert sub.wait_message(3, "(will)").payload == b"gone"


@param("version", VERSIONS)
def test_mqtt_3_1_2_24_keepalive_pingreq_keeps_connection(t, version):
	r = t.raw(version=version)
	r.handshake(t.cid(), keepalive=1)
	end = time.monotonic() + 3.0
	while time.monotonic() < end:
		time.sleep(0.5)  # the timing is what is tested
		r.send(R.pingreq())
		r.expect(R.PINGRESP, 2)


@param("transport", ["tcp"])
def test_connect_timeout_idle_connection(t, transport):
	skip_on_mosquitto("mosquitto has no connect_timeout directive")
	b = t.broker(["connect_timeout 1"])
	r = t.raw(b, transport=transport)
	start = time.monotonic()
	r.wait_closed(5)
	took = time.monotonic() - start
	assert 0.5 <= took <= 4.0, "closed after %.2fs, connect_timeout is 1s" % took
	t.check_alive(b)


@param("transport", ["tcp", "ws"])
def test_connect_timeout_partial_connect(t, transport):
	skip_on_mosquitto("mosquitto has no connect_timeout directive")
	b = t.broker(["connect_timeout 1"])
	r = t.raw(b, transport="tcp" if transport == "tcp" else "ws")
	r.send(R.connect(t.cid())[:5])
	r.wait_closed(5)
	t.check_alive(b)


UPGRADE = (b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
	   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	   b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")


def trickle(port, data, gap):
	"""Sends data one byte every gap seconds until the broker closes: how many
	bytes went out before it did (len(data) if it never closed)."""
	s = socket.create_connection(("127.0.0.1", port), timeout=5)
	s.settimeout(gap)
	try:
		for i in range(len(data)):
			try:
				s.send(data[i:i + 1])
				if s.recv(100) == b"":
					return i + 1
			except socket.timeout:
				continue
			except OSError:
				return i + 1
		return len(data)
	finally:
		s.close()


@timeout(30)
@param("kind", ["websocket upgrade", "http request"])
def test_connect_timeout_trickled_websocket_upgrade(t, kind):
	"""Slow-loris over WebSocket: an upgrade (or a plain HTTP request)
	trickled byte by byte is dropped at connect_timeout, counted from the
	accept, as a trickled CONNECT is; lws's own header timeout restarts at
	every byte (it would cut this one after about 10 s, 100 bytes).  At 10
	bytes a second the ~200-byte header would take 20 s."""
	skip_on_mosquitto("mosquitto has no connect_timeout directive")
	b = t.broker(["connect_timeout 1"])
	data = UPGRADE if kind == "websocket upgrade" else b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 40 + b"\r\n"
	start = time.monotonic()
	sent = trickle(b.ws_port, data, 0.1)
	assert sent <= 40, "sent %d of %d bytes in %.1fs before the close (connect_timeout 1)" % (
		sent, len(data), time.monotonic() - start)
	b.wait_log(r"dropped: no complete HTTP request or WebSocket upgrade within connect_timeout")
	# a prompt upgrade on the same listener still works, and stays past connect_timeout
	r = t.raw(b, transport="ws")
	r.handshake(t.cid())
	time.sleep(1.5)
	r.send(R.pingreq())
	r.expect(R.PINGRESP, 2)
	t.check_alive(b, transport="ws")


@timeout(30)
def test_broker_restart_and_kill9(t):
	b = t.fresh_broker()
	c = t.client(b, version=5)
	c.disconnect()
	b.restart()
	c = t.client(b, version=4)
	c.disconnect()
	b.kill9()
	b.start()
	wait_until(lambda: b.alive(), 5, "broker alive")
	t.check_alive(b)
	t.check_alive(b, transport="ws")
