"""Byte-level MQTT: packet builders, a packet parser and a raw client.

The raw client sends exactly the bytes a test gives it and reads whole
packets (fixed header + remaining length) with a timeout, over TCP or over
WebSocket (wsclient.WSConn).  Transports:
  "tcp"       plain socket
  "ws"        one binary WebSocket frame per send
  "ws-split"  every send cut into 2-byte binary messages
  "ws-frag"   every send as one message in 2-byte continuation frames
send_many() puts several packets into one write / one frame.
"""

import socket
import struct
import time

import wsclient

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = \
	8, 9, 10, 11, 12, 13, 14, 15
NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
	 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
	 12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}

TRANSPORTS = ("tcp", "ws", "ws-split", "ws-frag")

# -- properties (MQTT 5 section 2.2.2.2) --------------------------------------
BYTE, U16, U32, VARINT, BIN, STR, PAIR = range(7)
PROP_TYPES = {
	0x01: BYTE, 0x02: U32, 0x03: STR, 0x08: STR, 0x09: BIN, 0x0B: VARINT, 0x11: U32,
	0x12: STR, 0x13: U16, 0x15: STR, 0x16: BIN, 0x17: BYTE, 0x18: U32, 0x19: BYTE,
	0x1A: STR, 0x1C: STR, 0x1F: STR, 0x21: U16, 0x22: U16, 0x23: U16, 0x24: BYTE,
	0x25: BYTE, 0x26: PAIR, 0x27: U32, 0x28: BYTE, 0x29: BYTE, 0x2A: BYTE,
}
PAYLOAD_FORMAT, MESSAGE_EXPIRY, CONTENT_TYPE, RESPONSE_TOPIC, CORRELATION_DATA = \
	0x01, 0x02, 0x03, 0x08, 0x09
SUBSCRIPTION_ID, SESSION_EXPIRY, ASSIGNED_CLIENT_ID, SERVER_KEEP_ALIVE = 0x0B, 0x11, 0x12, 0x13
REQUEST_RESPONSE_INFO, RESPONSE_INFO, REASON_STRING = 0x19, 0x1A, 0x1F
RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS, MAXIMUM_QOS = 0x21, 0x22, 0x23, 0x24
USER_PROPERTY, MAXIMUM_PACKET_SIZE, WILL_DELAY = 0x26, 0x27, 0x18


def varint(n):
	out = bytearray()
	while True:
		b = n % 128
		n //= 128
		if n:
			b |= 0x80
		out.append(b)
		if not n:
			return bytes(out)


def u16(n):
	return struct.pack("!H", n)


def u32(n):
	return struct.pack("!I", n)


def mstr(s):
	"""UTF-8 encoded string (bytes are taken as already encoded)."""
	b = s.encode("utf-8") if isinstance(s, str) else s
	return u16(len(b)) + b


def props(plist):
	"""Encode [(id, value), ...] (None -> nothing; used only for MQTT 5)."""
	body = b""
	for pid, val in plist or []:
		t = PROP_TYPES[pid] if pid in PROP_TYPES else BYTE
		body += varint(pid)
		if t == BYTE:
			body += bytes([val])
		elif t == U16:
			body += u16(val)
		elif t == U32:
			body += u32(val)
		elif t == VARINT:
			body += varint(val)
		elif t in (BIN, STR):
			body += mstr(val)
		else:
			body += mstr(val[0]) + mstr(val[1])
	return varint(len(body)) + body


def packet(ptype, flags, body):
	return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def connect(client_id="", version=5, clean=True, keepalive=60, properties=None,
	    will=None, username=None, password=None):
	"""will: dict(topic, payload, qos=0, retain=False, properties=None)."""
	if version == 3:
		vh = mstr("MQIsdp") + bytes([3])
	else:
		vh = mstr("MQTT") + bytes([version])
	flags = 0x02 if clean else 0
	payload = mstr(client_id)
	if will:
		flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
		if version == 5:
			payload += props(will.get("properties"))
		payload += mstr(will["topic"]) + mstr(will.get("payload", b""))
	if username is not None:
		flags |= 0x80
		payload += mstr(username)
	if password is not None:
		flags |= 0x40
		payload += mstr(password)
	vh += bytes([flags]) + u16(keepalive)
	if version == 5:
		vh += props(properties)
	return packet(CONNECT, 0, vh + payload)


def publish(topic, payload=b"", qos=0, retain=False, dup=False, pid=1, version=5,
	    properties=None):
	if isinstance(payload, str):
		payload = payload.encode()
	flags = (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
	body = mstr(topic)
	if qos:
		body += u16(pid)
	if version == 5:
		body += props(properties)
	return packet(PUBLISH, flags, body + payload)


def ack(ptype, pid, version=5, reason=None, properties=None):
	"""PUBACK/PUBREC/PUBREL/PUBCOMP/UNSUBACK-style packet."""
	flags = 0x02 if ptype == PUBREL else 0
	body = u16(pid)
	if version == 5 and (reason is not None or properties):
		body += bytes([reason or 0])
		if properties:
			body += props(properties)
	return packet(ptype, flags, body)


def subscribe(pid, filters, version=5, properties=None):
	"""filters: [(filter, options_byte), ...]."""
	body = u16(pid)
	if version == 5:
		body += props(properties)
	for f, opts in filters:
		body += mstr(f) + bytes([opts])
	return packet(SUBSCRIBE, 0x02, body)


def unsubscribe(pid, filters, version=5, properties=None):
	body = u16(pid)
	if version == 5:
		body += props(properties)
	for f in filters:
		body += mstr(f)
	return packet(UNSUBSCRIBE, 0x02, body)


def disconnect(reason=None, version=5, properties=None):
	body = b""
	if version == 5 and (reason is not None or properties):
		body = bytes([reason or 0])
		if properties:
			body += props(properties)
	return packet(DISCONNECT, 0, body)


def pingreq():
	return packet(PINGREQ, 0, b"")


# -- parsing ---------------------------------------------------------------------
class Reader:
	def __init__(self, data):
		self.d = data
		self.i = 0

	def left(self):
		return len(self.d) - self.i

	def byte(self):
		b = self.d[self.i]
		self.i += 1
		return b

	def u16(self):
		v = struct.unpack("!H", self.d[self.i:self.i + 2])[0]
		self.i += 2
		return v

	def u32(self):
		v = struct.unpack("!I", self.d[self.i:self.i + 4])[0]
		self.i += 4
		return v

	def varint(self):
		mult, val = 1, 0
		while True:
			b = self.byte()
			val += (b & 0x7F) * mult
			mult *= 128
			if not b & 0x80:
				return val

	def bin(self):
		n = self.u16()
		v = self.d[self.i:self.i + n]
		self.i += n
		return v

	def str(self):
		return self.bin().decode("utf-8")

	def rest(self):
		v = self.d[self.i:]
		self.i = len(self.d)
		return v

	def props(self):
		"""Properties as a list of (id, value), in order."""
		n = self.varint()
		end = self.i + n
		out = []
		while self.i < end:
			pid = self.varint()
			t = PROP_TYPES.get(pid)
			if t == BYTE:
				v = self.byte()
			elif t == U16:
				v = self.u16()
			elif t == U32:
				v = self.u32()
			elif t == VARINT:
				v = self.varint()
			elif t == BIN:
				v = self.bin()
			elif t == STR:
				v = self.str()
			elif t == PAIR:
				v = (self.str(), self.str())
			else:
				raise ValueError("unknown property 0x%02x from broker" % pid)
			out.append((pid, v))
		return out


def prop(plist, pid, default=None):
	for k, v in plist:
		if k == pid:
			return v
	return default


def prop_all(plist, pid):
	return [v for k, v in plist if k == pid]


class Packet:
	def __init__(self, first, body, version=5):
		self.type = first >> 4
		self.flags = first & 0x0F
		self.body = body
		self.version = version

	def __repr__(self):
		return "<%s flags=%x %s>" % (NAMES.get(self.type, self.type), self.flags,
					     self.body.hex())

	@property
	def name(self):
		return NAMES.get(self.type, str(self.type))

	def connack(self):
		"""(session_present, return/reason code, properties)."""
		r = Reader(self.body)
		sp = r.byte() & 1
		rc = r.byte()
		p = r.props() if self.version == 5 and r.left() else []
		return sp, rc, p

	def publish(self):
		r = Reader(self.body)
		d = {"qos": (self.flags >> 1) & 3, "dup": bool(self.flags & 8),
		     "retain": bool(self.flags & 1), "pid": None}
		d["topic"] = r.str()
		if d["qos"]:
			d["pid"] = r.u16()
		d["props"] = r.props() if self.version == 5 else []
		d["payload"] = r.rest()
		return d

	def pid(self):
		return struct.unpack("!H", self.body[:2])[0]

	def reason(self):
		"""Reason code of an ack or DISCONNECT (0 when omitted)."""
		if self.type == DISCONNECT:
			return self.body[0] if self.body else 0
		return self.body[2] if len(self.body) > 2 else 0

	def suback(self):
		"""(pid, [codes])."""
		r = Reader(self.body)
		pid = r.u16()
		if self.version == 5:
			r.props()
		return pid, list(r.rest())


class Closed(Exception):
	pass


class Raw:
	"""A raw MQTT connection to a broker (see module docstring for transports)."""

	def __init__(self, broker, transport="tcp", version=5, timeout=5.0, ws_protocol="mqtt"):
		self.transport = transport
		self.version = version
		self.buf = b""
		self.eof = False
		self.send_failed = False
		if transport == "tcp":
			self.conn = socket.create_connection(("127.0.0.1", broker.port), timeout=timeout)
			self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
		elif transport.startswith("ws"):
			self.conn = wsclient.WSConn("127.0.0.1", broker.ws_port, protocol=ws_protocol,
						    timeout=timeout)
		else:
			raise ValueError("unknown transport %r" % transport)

	# -- sending --------------------------------------------------------
	def send(self, data):
		"""Send bytes (or a hex string).  A broker that closes the connection
		while we are still writing (it may reject the first fragment) is not an
		error here: the following read reports the close."""
		if isinstance(data, str):
			data = bytes.fromhex(data.replace(" ", ""))
		try:
			if self.transport == "ws-split":
				self.conn.send_split(data)
			elif self.transport == "ws-frag":
				self.conn.send_fragmented(data)
			else:
				self.conn.sendall(data)
		except (BrokenPipeError, ConnectionResetError):
			self.send_failed = True

	def send_many(self, packets):
		"""Several packets in one TCP write / one WebSocket frame."""
		self.conn.sendall(b"".join(packets))

	def send_safe(self, data):
		"""send(), ignoring errors from a connection the broker already closed."""
		try:
			self.send(data)
			return True
		except OSError:
			return False

	# -- receiving ------------------------------------------------------
	def _fill(self, deadline):
		t = deadline - time.monotonic()
		if t <= 0:
			raise socket.timeout("timed out")
		self.conn.settimeout(t)
		try:
			chunk = self.conn.recv(65536)
		except ConnectionResetError:
			chunk = b""
		if not chunk:
			self.eof = True
			raise Closed("connection closed by broker")
		self.buf += chunk

	def _try_parse(self):
		if len(self.buf) < 2:
			return None
		mult, n, i = 1, 0, 1
		while True:
			if i >= len(self.buf):
				return None
			b = self.buf[i]
			n += (b & 0x7F) * mult
			mult *= 128
			i += 1
			if not b & 0x80:
				break
			if i > 4:
				raise ValueError("broker sent a malformed remaining length")
		if len(self.buf) < i + n:
			return None
		p = Packet(self.buf[0], self.buf[i:i + n], self.version)
		self.buf = self.buf[i + n:]
		return p

	def recv(self, timeout=5.0):
		"""Next packet.  Raises socket.timeout, or Closed when the broker closed."""
		deadline = time.monotonic() + timeout
		while True:
			p = self._try_parse()
			if p is not None:
				return p
			if self.eof:
				raise Closed("connection closed by broker")
			self._fill(deadline)

	def expect(self, ptype, timeout=5.0, skip=()):
		"""Next packet, which must be of ptype (packet types in skip are ignored)."""
		while True:
			p = self.recv(timeout)
			if p.type in skip:
				continue
			if p.type != ptype:
				raise AssertionError("expected %s, got %r" % (NAMES[ptype], p))
			return p

	def recv_or_none(self, timeout):
		try:
			return self.recv(timeout)
		except (socket.timeout, Closed):
			return None

	def wait_closed(self, timeout=5.0):
		"""Read until the broker closes.  Returns the packets read before the close,
		or raises AssertionError if still open after timeout."""
		got = []
		deadline = time.monotonic() + timeout
		while True:
			try:
				got.append(self.recv(max(0.01, deadline - time.monotonic())))
			except Closed:
				return got
			except OSError as e:
				if isinstance(e, socket.timeout):
					raise AssertionError("broker did not close the connection within "
							     "%.1fs (read %r)" % (timeout, got))
				return got  # reset
			if time.monotonic() > deadline:
				raise AssertionError("broker did not close the connection within %.1fs "
						     "(read %r)" % (timeout, got))

	def handshake(self, client_id, clean=True, keepalive=60, properties=None, will=None,
		      expect_rc=0):
		"""CONNECT and read the CONNACK; returns (session_present, rc, props)."""
		self.send(connect(client_id, self.version, clean, keepalive, properties, will))
		p = self.expect(CONNACK)
		sp, rc, pr = p.connack()
		if expect_rc is not None and rc != expect_rc:
			raise AssertionError("CONNACK rc 0x%02x, expected 0x%02x" % (rc, expect_rc))
		self.connack_props = pr
		return sp, rc, pr

	def close(self):
		try:
			self.conn.close()
		except OSError:
			pass

	def abort(self):
		"""Close with RST, not FIN (an abrupt network failure)."""
		s = self.conn.sock if hasattr(self.conn, "sock") else self.conn
		try:
			s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
		except OSError:
			pass
		self.close()
