"""MQTT over WebSocket [MQTT-6.0.0]: framing independence, text frames, subprotocol."""

import rawmqtt as R
import wsclient
from harness import param, mosquitto_differs


@param("version", [4, 5])
@param("transport", R.TRANSPORTS)
def test_mqtt_6_0_0_round_trip_any_framing(t, version, transport):
	tp = t.topic("ws")
	r = t.raw(transport=transport, version=version)
	r.handshake(t.cid())
	r.send(R.subscribe(1, [(tp, 1)], version=version))
	r.expect(R.SUBACK)
	payload = bytes(range(256)) * 3
	r.send(R.publish(tp, payload, qos=1, pid=2, version=version))
	got = {}
	for _ in range(2):
		p = r.recv()
		got[p.type] = p
	assert got[R.PUBACK].pid() == 2
	assert got[R.PUBLISH].publish()["payload"] == payload


@param("version", [4, 5])
@param("transport", ["tcp", "ws"])
def test_mqtt_6_0_0_2_packets_merged_in_one_frame(t, version, transport):
	# [MQTT-6.0.0-2]: a frame may hold several MQTT packets (and TCP segments too).
	tp = t.topic("merge")
	r = t.raw(transport=transport, version=version)
	r.send_many([R.connect(t.cid(), version),
		     R.subscribe(1, [(tp, 0)], version=version),
		     R.publish(tp, b"merged", version=version),
		     R.pingreq()])
	assert r.expect(R.CONNACK).connack()[1] == 0
	types = []
	for _ in range(3):
		p = r.recv()
		types.append(p.type)
		if p.type == R.PUBLISH:
			assert p.publish()["payload"] == b"merged"
	assert sorted(types) == sorted([R.SUBACK, R.PUBLISH, R.PINGRESP]), types


def test_mqtt_6_0_0_2_packet_split_and_merged_across_frames(t):
	# the tail of one packet and the head of the next in the same frame
	tp = t.topic("mix")
	ws = wsclient.WSConn("127.0.0.1", t.broker().ws_port)
	data = R.connect(t.cid(), 5) + R.subscribe(1, [(tp, 0)]) + R.publish(tp, b"mixed")
	cuts = [3, 10, len(data) - 4, len(data)]
	prev = 0
	for c in cuts:
		ws.sendall(data[prev:c])
		prev = c
	r = t.raw(transport="tcp")  # borrow the parser
	r.close()
	r.conn = ws
	r.transport = "ws"
	assert r.expect(R.CONNACK).connack()[1] == 0
	r.expect(R.SUBACK)
	assert r.expect(R.PUBLISH).publish()["payload"] == b"mixed"
	ws.close()


@mosquitto_differs("mosquitto 2.0.11 reads text frames as MQTT data")
@param("version", [4, 5])
def test_mqtt_6_0_0_1_text_frame_closes_connection(t, version):
	r = t.raw(transport="ws", version=version)
	r.handshake(t.cid())
	r.conn.send_text(R.pingreq())
	r.wait_closed(5)
	t.check_alive(transport="ws")


def test_mqtt_6_0_0_4_subprotocol_mqtt_selected(t):
	ws = wsclient.WSConn("127.0.0.1", t.broker().ws_port, protocol="mqtt")
	assert ws.headers.get("sec-websocket-protocol") == "mqtt", ws.headers
	ws.close()


def test_mqtt_6_0_0_3_no_mqtt_subprotocol_refused(t):
	b = t.broker()
	try:
		ws = wsclient.WSConn("127.0.0.1", b.ws_port, protocol=None)
	except (wsclient.HandshakeError, OSError):
		t.check_alive(transport="ws")
		return
	# upgraded anyway: the connection must not carry MQTT
	ws.sendall(R.connect(t.cid(), 5))
	ws.settimeout(3)
	try:
		data = ws.recv(100)
	except OSError:
		data = b""
	assert not data, "MQTT served without the mqtt subprotocol: %r" % data
	ws.close()


def test_mqtt_6_0_0_3_wrong_subprotocol_refused(t):
	b = t.broker()
	try:
		ws = wsclient.WSConn("127.0.0.1", b.ws_port, protocol="chat")
	except (wsclient.HandshakeError, OSError):
		return
	ws.sendall(R.connect(t.cid(), 5))
	ws.settimeout(3)
	try:
		data = ws.recv(100)
	except OSError:
		data = b""
	assert not data, "MQTT served on subprotocol 'chat': %r" % data
	ws.close()


def test_websocket_close_frame_ends_session_with_will(t):
	tp = t.topic("will")
	sub = t.client(version=5)
	sub.subscribe(tp, 1)
	r = t.raw(transport="ws")
	r.handshake(t.cid(), will={"topic": tp, "payload": b"ws closed"})
	r.conn.send_close()
	r.wait_closed(5)
	assert sub.wait_message(5, "(will)").payload == b"ws closed"
