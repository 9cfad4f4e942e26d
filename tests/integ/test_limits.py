"""Limits that bound what one misbehaving client or host can hold.

max_qos0_backlog SIZE: QoS 0 for a connected client is dropped (and counted)
while more than SIZE of output waits to be written to it.

max_connections_per_address N: at most N connections open at once from one
client address, over every listener (MQTT over TCP and WebSocket alike); a
further one is closed before its CONNECT is answered, and logged. A closed
connection frees its place at once. (mosquitto has no such directive.)

memory_limit SIZE: past SIZE of counted memory (the broker's heap through
src/mem.c and SQLite's) a new connection is closed before its CONNECT is
answered (logged with its address), QoS 0 PUBLISHes are dropped and counted
in $SYS/broker/messages/dropped/memory, MQTT 5 QoS 1/2 publishers get
PUBACK/PUBREC 0x97 and 3.1.1 ones are disconnected; allocations fail an
eighth above SIZE ($SYS/broker/heap/maximum stays under it); once the broker
holds less, all is served again.
"""

import socket
import time

import mqttpkt as P
import rawmqtt as R
from harness import skip_on_mosquitto, timeout, wait_until


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


def test_limits_max_connections_of_one_listener(t):
	"""max_connections after a listener line is that listener's (mosquitto):
	brokerlib puts the test's lines after its WebSocket listener, so the
	WebSocket listener takes 2 and the MQTT one any number.  (Debian's
	mosquitto 2.0.11, measured: its websockets listener serves a 3rd
	connection despite max_connections 2.)"""
	skip_on_mosquitto("mosquitto 2.0.11 does not hold max_connections on a websockets listener")
	b = t.broker(["max_connections 2"])
	ws = [connected(t, b, "ws"), connected(t, b, "ws")]
	assert refused(t, b, "ws"), "a 3rd WebSocket connection was served"
	tcp = [connected(t, b) for _ in range(4)]
	assert b.wait_log(r"refused: max_connections \(2\) of the listener on port %d reached"
			  % b.ws_port, 3)
	for r in tcp:
		r.close()
	ws[0].close()
	wait_until(lambda: try_connect(t, b, "ws"), 5, "a WebSocket connection after one closed")


def try_connect(t, b, transport="tcp"):
	r = t.raw(b, transport=transport)
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


# --- memory_limit -------------------------------------------------------------

MEM_LIMIT = 4 * 1024 * 1024
CEILING = MEM_LIMIT + MEM_LIMIT // 8  # allocations past it fail
# What RSS may hold beyond the counted memory's ceiling: lws's and libc's own
# state per connection, malloc's free lists and fragmentation (README).
RSS_SLACK = 16 * 1024 * 1024
DROPPED = "$SYS/broker/messages/dropped/memory"
PEAK = "$SYS/broker/heap/maximum"


def vm_kb(b, field):
	"""A figure of /proc/PID/status in kB (VmRSS now, VmHWM the peak)."""
	with open("/proc/%d/status" % b.proc.pid) as f:
		for line in f:
			if line.startswith(field + ":"):
				return int(line.split()[1])
	raise AssertionError("no %s in /proc/%d/status" % (field, b.proc.pid))


def qos_ack(r, tp, qos=1, pid=1):
	"""Publishes at QoS 1 (2) and returns the reason code of the PUBACK (PUBREC)."""
	r.send(R.publish(tp, b"probe", qos, pid=pid, version=r.version))
	p = r.expect(R.PUBACK if qos == 1 else R.PUBREC, 10, skip=(R.PUBLISH,))
	rc = p.ack()[1]
	if qos == 2 and rc < 0x80:
		r.send(R.pubrel(pid, version=r.version))
		r.expect(R.PUBCOMP, 10)
	return rc


class SysWatch:
	"""A client, connected before the pressure, that keeps the newest $SYS values."""

	def __init__(self, t, b):
		self.c = t.client(b, version=5)
		for topic in (DROPPED, PEAK):
			self.c.subscribe(topic, 0)
		self.seen = {}

	def value(self, topic):
		for m in self.c.drain():
			self.seen[m.topic] = int(m.payload)
		return self.seen.get(topic, 0)

	def wait_above(self, topic, floor, what):
		return wait_until(lambda: self.value(topic) > floor and self.value(topic), 10, what)


def fill_until_refused(probe, tp, send_batch, most):
	"""send_batch(i) until a QoS 1 PUBLISH gets 0x97 (at most most batches)."""
	for i in range(most):
		send_batch(i)
		rc = qos_ack(probe, tp, pid=1 + i % 60000)
		if rc == 0x97:
			return
		assert rc in (0x00, 0x10), "PUBACK 0x%02x before memory_limit was reached" % rc
	raise AssertionError("memory_limit was not reached after %d batches" % most)


def assert_pressure(t, b, probe, tp, watch, since):
	"""While memory_limit is reached: QoS 0 dropped and counted, QoS 2 refused
	with 0x97 too, and a new connection (TCP or WebSocket) closed before its
	CONNECT is answered."""
	watch.wait_above(DROPPED, 0, "%s above 0" % DROPPED)
	assert qos_ack(probe, tp, 2, pid=60001) == 0x97, "QoS 2 PUBREC past memory_limit"
	assert refused(t, b), "a new connection was served past memory_limit"
	assert refused(t, b, "ws"), "a new WebSocket connection was served past memory_limit"
	assert b.wait_log(r"connection from \S*127\.0\.0\.1 refused: memory_limit "
			  r"\(%d bytes\) reached" % MEM_LIMIT, 5, since)


def assert_bounded(b, watch, rss_before_kb):
	"""The counted memory's peak stays under the ceiling (give or take SQLite's
	drift since its last reading); RSS, loosely, under the ceiling plus what
	the broker held before and RSS_SLACK."""
	peak = watch.wait_above(PEAK, MEM_LIMIT, "%s above memory_limit" % PEAK)
	assert peak <= CEILING + 256 * 1024, "%s %d over the ceiling %d" % (PEAK, peak, CEILING)
	hwm = vm_kb(b, "VmHWM") * 1024
	assert hwm <= rss_before_kb * 1024 + CEILING + RSS_SLACK, \
		"peak RSS %d kB; %d kB before" % (hwm // 1024, rss_before_kb)


def assert_recovered(t, b, tp, since):
	"""A new connection is served again, and a QoS 1 PUBLISH gets PUBACK 0x00."""
	wait_until(lambda: try_connect(t, b), 10, "a connection once the pressure ended")
	r = t.raw_connected(b)
	r.send(R.subscribe(1, [(tp, 0)]))
	r.expect(R.SUBACK)
	assert qos_ack(r, tp, 1, pid=2) == 0x00, "QoS 1 PUBACK once the pressure ended"
	assert b.wait_log(r"memory use below memory_limit again", 5, since)
	r.close()


def lazy_subscriber(t, b, tp):
	"""A subscriber that reads its CONNACK and SUBACK, then never reads again."""
	s = socket.socket()
	s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
	s.settimeout(5)
	s.connect(("127.0.0.1", b.port))
	s.sendall(P.connect(t.cid("lazy"), 5) + P.subscribe(1, [(tp, 0)], version=5))
	data, n = b"", 0
	while n < 2:
		data += s.recv(1)
		if P.split(data):
			data, n = b"", n + 1
	return s


@timeout(60)
def test_limits_memory_subscribers_that_never_read(t):
	"""memory_limit: subscribers of a firehose that never read fill the
	broker's output buffers (max_qos0_backlog set out of the way) until the
	limit; then QoS 0 is dropped and counted, QoS 1/2 refused with 0x97, a
	3.1.1 QoS 1 publisher disconnected, new connections refused; once the
	subscribers go, all is served again."""
	skip_on_mosquitto("sluice's memory_limit contract")
	b = t.broker(["memory_limit %d" % MEM_LIMIT, "max_qos0_backlog 1G"])
	rss_before = vm_kb(b, "VmRSS")
	tp = t.topic("firehose")
	watch = SysWatch(t, b)
	probe = t.raw_connected(b)
	v3 = t.raw_connected(b, version=4)
	lazies = [lazy_subscriber(t, b, tp) for _ in range(16)]
	flood = t.raw_connected(b)
	batch = b"".join(P.publish(tp, b"x" * 1000, 0, False, version=5) for _ in range(50))
	since = b.log_size()
	fill_until_refused(probe, tp, lambda i: flood.send(batch), 2000)
	flood.send(batch)
	assert_pressure(t, b, probe, tp, watch, since)
	v3.send(R.publish(tp, b"v3", 1, pid=7, version=4))
	got = v3.wait_closed(5)
	assert not any(p.type == R.PUBACK for p in got), "a 3.1.1 QoS 1 PUBLISH was acknowledged"
	assert_bounded(b, watch, rss_before)
	for s in lazies:
		s.close()
	assert_recovered(t, b, tp, since)


@timeout(60)
def test_limits_memory_retained_messages(t):
	"""memory_limit reached by retained messages: refused as above; deleting
	them (a retained PUBLISH with an empty payload is still taken) ends it."""
	skip_on_mosquitto("sluice's memory_limit contract")
	b = t.broker(["memory_limit %d" % MEM_LIMIT])
	rss_before = vm_kb(b, "VmRSS")
	tp = t.topic("kept")
	watch = SysWatch(t, b)
	probe = t.raw_connected(b)
	pub = t.raw_connected(b)
	topics = []

	def batch(i):
		more = ["%s/%d" % (tp, len(topics) + k) for k in range(20)]
		topics.extend(more)
		pub.send(b"".join(P.publish(x, b"r" * 8000, 0, True, version=5) for x in more))

	since = b.log_size()
	fill_until_refused(probe, tp + "/probe", batch, 1000)
	batch(0)
	assert_pressure(t, b, probe, tp + "/probe", watch, since)
	assert_bounded(b, watch, rss_before)
	pub.send(b"".join(P.publish(x, b"", 0, True, version=5) for x in topics))
	assert_recovered(t, b, tp, since)


def test_limits_memory_counted_without_a_limit(t):
	"""$SYS/broker/heap/current and heap/maximum (mosquitto's names) show the
	counted memory also without a memory_limit."""
	skip_on_mosquitto("mosquitto publishes heap/* only when built with memory tracking")
	b = t.broker()
	watch = t.client(b, version=5)
	watch.subscribe("$SYS/broker/heap/+", 0)
	got = {}
	wait_until(lambda: got.update({m.topic: int(m.payload) for m in watch.drain()}) or
		   len(got) == 2, 5, "both heap topics")
	assert 0 < got["$SYS/broker/heap/current"] <= got["$SYS/broker/heap/maximum"]
