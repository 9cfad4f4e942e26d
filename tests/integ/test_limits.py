"""Limits that bound what one misbehaving client or host can hold.

max_qos0_backlog SIZE: QoS 0 for a connected client is dropped (and counted)
while more than SIZE of output waits to be written to it.

max_connections_per_address N: at most N connections open at once from one
client address, over every listener (MQTT over TCP and WebSocket alike); a
further one is closed before its CONNECT is answered, and logged. A closed
connection frees its place at once. (mosquitto has no such directive.)
"""

import socket
import time

import mqttpkt as P
import rawmqtt as R
from harness import skip_on_mosquitto, wait_until


def connected(t, b, transport="tcp"):
	"""A raw MQTT 5 client after CONNACK 0."""
	return t.raw_connected(b, transport=transport)


def refused(t, b, transport="tcp"):
	"""A connection the broker closes without answering its CONNECT."""
	r = t.raw(b, transport=transport)
	r.send(R.connect(t.cid("over"), 5))
	got = r.wait_closed(5)
	r.close()
	return not any(p.type == R.CONNACK for p in got)


def test_limits_connections_per_address(t):
	skip_on_mosquitto("max_connections_per_address is sluice's")
	b = t.broker(["max_connections_per_address 3"])
	since = b.log_size()
	first = [connected(t, b), connected(t, b, "ws"), connected(t, b)]
	assert refused(t, b), "a 4th connection from 127.0.0.1 (TCP) was served"
	assert refused(t, b, "ws"), "a 4th connection from 127.0.0.1 (WebSocket) was served"
	assert b.wait_log(r"connection from \S*127\.0\.0\.1 refused: "
			  r"max_connections_per_address \(3\) reached", 3, since)
	first[0].close()
	# the place is free once the broker saw the close
	wait_until(lambda: try_connect(t, b), 5, "a connection after one of the three closed")
	for r in first[1:]:
		r.send(R.pingreq())
		assert r.expect(R.PINGRESP), "an open connection stopped working"


def try_connect(t, b):
	r = t.raw(b)
	try:
		r.send(R.connect(t.cid("again"), 5))
		got = r.expect(R.CONNACK)
		return got.connack()[1] == 0
	except Exception:
		return False
	finally:
		r.close()


def test_limits_connections_per_address_unlimited_by_default(t):
	b = t.broker()
	conns = [connected(t, b) for _ in range(20)]
	for r in conns:
		r.close()


def test_limits_qos0_backlog_of_a_client_that_never_reads(t):
	"""max_qos0_backlog: QoS 0 for a connected client that does not read is
	dropped (and counted) once that much output waits for it, instead of
	piling up in the broker: it gets what fits, the rest is gone."""
	skip_on_mosquitto("max_qos0_backlog is sluice's")
	b = t.broker(["max_qos0_backlog 64k", "sys_interval 1"])
	tp = t.topic("firehose")
	lazy = socket.socket()
	lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
	lazy.settimeout(5)
	lazy.connect(("127.0.0.1", b.port))
	lazy.sendall(P.connect(t.cid("lazy"), 5) + P.subscribe(1, [(tp, 0)], version=5))
	time.sleep(0.3)
	pub = t.raw_connected(b)
	n, size = 4000, 1000
	for i in range(0, n, 200):
		pub.send(b"".join(P.publish(tp, b"x" * size, 0, False, version=5)
				  for _ in range(200)))
	watch = t.client(b, version=5)
	watch.subscribe("$SYS/broker/messages/dropped/qos0", 0)
	wait_until(lambda: any(int(m.payload) > 0 for m in watch.drain()), 5,
		   "$SYS/broker/messages/dropped/qos0 above 0")
	# now read what the broker kept for the lazy client: far less than was sent
	data = b""
	lazy.settimeout(1.0)
	try:
		while True:
			d = lazy.recv(65536)
			if not d:
				break
			data += d
	except socket.timeout:
		pass
	got = data.count(b"x" * size)
	lazy.close()
	assert 0 < got < n, "the lazy client got %d of %d messages" % (got, n)
