"""Sessions: clean session / clean start, session expiry, offline queueing,
redelivery with DUP, queue limits."""

import time

import rawmqtt as R
from clients import connect_props
from harness import param, timeout, wait_until

VERSIONS = [4, 5]


def persistent(t, version, cid, **kw):
	"""A client with a session that outlives the connection."""
	if version == 5:
		return t.client(client_id=cid, version=5, clean=False,
				properties=connect_props(SessionExpiryInterval=300), **kw)
	return t.client(client_id=cid, version=version, clean=False, **kw)


def end_session(t, version, cid):
	c = t.client(client_id=cid, version=version, clean=True)
	c.disconnect()


@param("version", VERSIONS)
@param("transport", ["tcp", "ws"])
def test_mqtt_3_1_2_4_persistent_session_queues_while_offline(t, version, transport):
	tp = t.topic("p")
	cid = t.cid("ps")
	c = persistent(t, version, cid, transport=transport)
	assert not c.session_present
	c.subscribe(tp, 2)
	c.disconnect()
	pub = t.client(version=version)
	pub.publish(tp, b"q1-a", 1)
	pub.publish(tp, b"q2-b", 2)
	pub.publish(tp, b"q1-c", 1)
	pub.publish(tp, b"q0-d", 0)  # QoS 0 MAY be queued: not asserted
	c = persistent(t, version, cid, transport=transport)
	assert c.session_present, "session present must be 1 [MQTT-3.2.2-2]"
	# q0-d may arrive live (a QoS 0 publish can overtake the reconnect) and,
	# since paho hands a QoS 2 message over only at PUBREL, before q2-b:
	# collect until the three queued messages are in, whatever came between.
	got = []
	while len([g for g in got if not g.startswith(b"q0")]) < 3:
		got.append(c.wait_message().payload)
	queued = [g for g in got if not g.startswith(b"q0")]
	# order is guaranteed per topic and QoS [MQTT-4.6.0-6]
	assert [g for g in queued if g.startswith(b"q1")] == [b"q1-a", b"q1-c"], got
	assert sorted(queued) == [b"q1-a", b"q1-c", b"q2-b"], got
	# the subscription survived: live delivery without resubscribing
	pub.publish(tp, b"live", 1)
	rest = [m.payload for m in c.wait_messages(1)]
	while rest[-1] != b"live":
		rest.append(c.wait_message().payload)
	c.disconnect()
	end_session(t, version, cid)


@param("version", VERSIONS)
def test_mqtt_3_1_2_6_clean_session_discards(t, version):
	tp = t.topic("p")
	cid = t.cid("cs")
	c = persistent(t, version, cid)
	c.subscribe(tp, 1)
	c.disconnect()
	pub = t.client(version=version)
	pub.publish(tp, b"lost", 1)
	c = t.client(client_id=cid, version=version, clean=True)
	assert not c.session_present
	c.expect_no_message(0.7)
	pub.publish(tp, b"unsubscribed", 1)
	c.expect_no_message(0.5)


def test_mqtt_3_1_2_11_session_expiry_zero_ends_at_disconnect(t):
	tp = t.topic("p")
	cid = t.cid("se0")
	c = t.client(client_id=cid, version=5, clean=False)  # no expiry property: 0
	c.subscribe(tp, 1)
	c.disconnect()
	c = t.client(client_id=cid, version=5, clean=False)
	assert not c.session_present


@timeout(25)
def test_mqtt_3_1_2_23_session_expiry_interval(t):
	tp = t.topic("p")
	cid = t.cid("se")
	c = t.client(client_id=cid, version=5, clean=False,
		     properties=connect_props(SessionExpiryInterval=1))
	c.subscribe(tp, 1)
	c.disconnect()
	pub = t.client(version=5)
	time.sleep(2.5)  # the expiry timing is what is tested
	pub.publish(tp, b"after expiry", 1)
	c = t.client(client_id=cid, version=5, clean=False,
		     properties=connect_props(SessionExpiryInterval=1))
	assert not c.session_present, "session should have expired"
	c.expect_no_message(0.5)


def test_mqtt_3_1_2_23_session_kept_within_expiry(t):
	tp = t.topic("p")
	cid = t.cid("sk")
	c = t.client(client_id=cid, version=5, clean=False,
		     properties=connect_props(SessionExpiryInterval=30))
	c.subscribe(tp, 1)
	c.disconnect()
	t.client(version=5).publish(tp, b"kept", 1)
	c = t.client(client_id=cid, version=5, clean=False,
		     properties=connect_props(SessionExpiryInterval=0))
	assert c.session_present
	assert c.wait_message().payload == b"kept"


@param("version", VERSIONS)
@param("transport", R.TRANSPORTS)
def test_mqtt_4_4_0_1_unacked_redelivered_with_dup(t, version, transport):
	tp = t.topic("dup")
	cid = t.cid("rd")
	cp = [(R.SESSION_EXPIRY, 300)] if version == 5 else None
	r = t.raw(transport=transport, version=version)
	r.handshake(cid, clean=(version == 5), properties=cp)
	r.send(R.subscribe(1, [(tp, 1)], version=version))
	r.expect(R.SUBACK)
	t.client(version=version).publish(tp, b"ack me", 1)
	p = r.expect(R.PUBLISH).publish()
	assert p["qos"] == 1 and not p["dup"]
	r.close()  # no PUBACK
	r2 = t.raw(transport=transport, version=version)
	sp, rc, _ = r2.handshake(cid, clean=False, properties=cp)
	assert sp == 1
	p2 = r2.expect(R.PUBLISH).publish()
	assert p2["payload"] == b"ack me"
	assert p2["dup"], "redelivery must set DUP [MQTT-3.3.1-1]"
	assert p2["pid"] == p["pid"], "same packet identifier [MQTT-4.4.0-1]"
	r2.send(R.ack(R.PUBACK, p2["pid"], version=version))
	assert r2.recv_or_none(0.7) is None
	r2.send(R.disconnect(0, version, [(R.SESSION_EXPIRY, 0)] if version == 5 else None))


@param("version", VERSIONS)
def test_mqtt_4_4_0_1_unacked_qos2_pubrel_resent(t, version):
	tp = t.topic("dup2")
	cid = t.cid("rd2")
	cp = [(R.SESSION_EXPIRY, 300)] if version == 5 else None
	r = t.raw(version=version)
	r.handshake(cid, clean=(version == 5), properties=cp)
	r.send(R.subscribe(1, [(tp, 2)], version=version))
	r.expect(R.SUBACK)
	t.client(version=version).publish(tp, b"two", 2)
	p = r.expect(R.PUBLISH).publish()
	r.send(R.ack(R.PUBREC, p["pid"], version=version))
	assert r.expect(R.PUBREL).pid() == p["pid"]
	r.close()  # no PUBCOMP
	r2 = t.raw(version=version)
	sp, rc, _ = r2.handshake(cid, clean=False, properties=cp)
	assert sp == 1
	rel = r2.expect(R.PUBREL)  # the PUBREL is resent, not the PUBLISH
	assert rel.pid() == p["pid"]
	r2.send(R.ack(R.PUBCOMP, p["pid"], version=version))
	assert r2.recv_or_none(0.7) is None


@param("version", VERSIONS)
def test_queue_limit_max_queued_messages(t, version):
	b = t.broker(["max_queued_messages 5"])
	tp = t.topic("ql")
	cid = t.cid("ql")
	c = persistent(t, version, cid, broker=b)
	c.subscribe(tp, 1)
	c.disconnect()
	off = b.log_size()
	pub = t.client(b, version=version)
	for i in range(12):
		pub.publish(tp, b"%d" % i, 1)
	c = persistent(t, version, cid, broker=b)
	got = [m.payload for m in c.wait_messages(5)]
	c.expect_no_message(0.7)
	assert got == [b"%d" % i for i in range(5)], got
	assert b.wait_log(r"(?i)drop", 2, off), "no log line about dropped messages"


def test_queue_limit_v5_publisher_puback(t):
	# When the subscriber's queue is full the message is dropped for it; the
	# publisher's PUBACK may still be 0x00 (accepted by the server), 0x10 (no
	# matching subscribers) or 0x97 (quota exceeded).  mosquitto 2.0.11 answers 0x00.
	b = t.broker(["max_queued_messages 2"])
	tp = t.topic("ql")
	cid = t.cid("ql")
	c = persistent(t, 5, cid, broker=b)
	c.subscribe(tp, 1)
	c.disconnect()
	r = t.raw_connected(b)
	codes = []
	for i in range(1, 6):
		r.send(R.publish(tp, b"%d" % i, qos=1, pid=i))
		p = r.expect(R.PUBACK)
		assert p.pid() == i
		codes.append(p.reason())
	assert codes[:2] == [0, 0], codes
	assert all(x in (0x00, 0x10, 0x97) for x in codes), codes
	c = persistent(t, 5, cid, broker=b)
	assert [m.payload for m in c.wait_messages(2)] == [b"1", b"2"]
	c.expect_no_message(0.5)
