"""MQTT packets as bytes: encoders and decoders for MQTT 3.1, 3.1.1 and 5.0.

Pure functions and a parser, no sockets: the integration tests (rawmqtt.py),
the fuzz seed generator (tests/fuzz/gen_corpus.py) and the delayed-topics
benchmark (plugins/delayed/bench_delayed.py) all build and read packets here.
Standard library only.

Versions are protocol levels: 3 = MQTT 3.1, 4 = 3.1.1, 5 = 5.0.  Builders
take version=5 by default and add MQTT 5 properties only for version 5.
Properties are lists of (id, value) in wire order (repeats allowed); a
value's type follows PROP_TYPES: int for BYTE/U16/U32/VARINT, str or bytes
for STR/BIN, a (name, value) pair for PAIR.  Builders never validate: they
encode what they are given, so tests can build wrong packets on purpose.

  encode:  varint u16 u32 mstr props sub_opts frame packet
           connect connack publish ack puback pubrec pubrel pubcomp
           subscribe suback unsubscribe unsuback pingreq pingresp disconnect auth
  decode:  split (one packet off a byte stream), parse_stream, Reader,
           Packet (.decode() for every type, plus .connack() .publish() ...)
"""

import struct

# -- packet types (section 2.1.2) -------------------------------------------------
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = \
	8, 9, 10, 11, 12, 13, 14, 15
NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
	 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
	 12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}

V31, V311, V5 = 3, 4, 5

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
AUTH_METHOD, AUTH_DATA, REQUEST_PROBLEM_INFO, WILL_DELAY = 0x15, 0x16, 0x17, 0x18
REQUEST_RESPONSE_INFO, RESPONSE_INFO, SERVER_REFERENCE, REASON_STRING = 0x19, 0x1A, 0x1C, 0x1F
RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS, MAXIMUM_QOS = 0x21, 0x22, 0x23, 0x24
RETAIN_AVAILABLE, USER_PROPERTY, MAXIMUM_PACKET_SIZE = 0x25, 0x26, 0x27
WILDCARD_SUB_AVAILABLE, SUB_ID_AVAILABLE, SHARED_SUB_AVAILABLE = 0x28, 0x29, 0x2A


# -- primitives (section 1.5) ---------------------------------------------------
def varint(n):
	"""Variable Byte Integer (no range check: 2**28 and above encode in 5+ bytes)."""
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
	"""UTF-8 encoded string or binary data: 2-byte length, then the bytes
	(bytes are taken as already encoded)."""
	b = s.encode("utf-8") if isinstance(s, str) else s
	return u16(len(b)) + b


def props(plist):
	"""Encode [(id, value), ...] with its length prefix (None or [] -> b"\\x00").
	An id missing from PROP_TYPES is encoded as a BYTE property."""
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


def prop(plist, pid, default=None):
	"""The first value of property pid in a decoded list."""
	for k, v in plist:
		if k == pid:
			return v
	return default


def prop_all(plist, pid):
	return [v for k, v in plist if k == pid]


def sub_opts(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
	"""The Subscription Options byte of a SUBSCRIBE (MQTT 5 section 3.8.3.1)."""
	return qos | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) | \
		(retain_handling << 4)


def frame(first, body):
	"""First byte (type and flags), Remaining Length, body."""
	return bytes([first]) + varint(len(body)) + body


def packet(ptype, flags, body):
	return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


# -- builders, one per packet type ---------------------------------------------
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


def connack(session_present=False, rc=0, version=5, properties=None):
	body = bytes([1 if session_present else 0, rc])
	if version == 5:
		body += props(properties)
	return packet(CONNACK, 0, body)


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
	"""PUBACK/PUBREC/PUBREL/PUBCOMP (and the like): packet id, then for MQTT 5
	the reason code and properties where given (both may be omitted when the
	reason is 0 and there are no properties)."""
	flags = 0x02 if ptype == PUBREL else 0
	body = u16(pid)
	if version == 5 and (reason is not None or properties):
		body += bytes([reason or 0])
		if properties:
			body += props(properties)
	return packet(ptype, flags, body)


def puback(pid, version=5, reason=None, properties=None):
	return ack(PUBACK, pid, version, reason, properties)


def pubrec(pid, version=5, reason=None, properties=None):
	return ack(PUBREC, pid, version, reason, properties)


def pubrel(pid, version=5, reason=None, properties=None):
	return ack(PUBREL, pid, version, reason, properties)


def pubcomp(pid, version=5, reason=None, properties=None):
	return ack(PUBCOMP, pid, version, reason, properties)


def subscribe(pid, filters, version=5, properties=None):
	"""filters: [(filter, options_byte), ...] (see sub_opts())."""
	body = u16(pid)
	if version == 5:
		body += props(properties)
	for f, opts in filters:
		body += mstr(f) + bytes([opts])
	return packet(SUBSCRIBE, 0x02, body)


def suback(pid, codes, version=5, properties=None):
	body = u16(pid)
	if version == 5:
		body += props(properties)
	return packet(SUBACK, 0, body + bytes(codes))


def unsubscribe(pid, filters, version=5, properties=None):
	body = u16(pid)
	if version == 5:
		body += props(properties)
	for f in filters:
		body += mstr(f)
	return packet(UNSUBSCRIBE, 0x02, body)


def unsuback(pid, codes=(), version=5, properties=None):
	"""codes (one per filter) and properties exist only in MQTT 5."""
	body = u16(pid)
	if version == 5:
		body += props(properties) + bytes(codes)
	return packet(UNSUBACK, 0, body)


def pingreq():
	return packet(PINGREQ, 0, b"")


def pingresp():
	return packet(PINGRESP, 0, b"")


def disconnect(reason=None, version=5, properties=None):
	body = b""
	if version == 5 and (reason is not None or properties):
		body = bytes([reason or 0])
		if properties:
			body += props(properties)
	return packet(DISCONNECT, 0, body)


def auth(reason=None, properties=None):
	"""AUTH (MQTT 5 only); reason and properties may be omitted together."""
	body = b""
	if reason is not None or properties:
		body = bytes([reason or 0])
		if properties:
			body += props(properties)
	return packet(AUTH, 0, body)


# -- parsing ---------------------------------------------------------------------
class Reader:
	"""Reads the fields of a packet body in order; raises IndexError or
	struct.error when the body ends early."""

	def __init__(self, data, i=0):
		self.d = data
		self.i = i

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
		if len(v) < n:
			raise IndexError("string of %d bytes, %d left" % (n, len(v)))
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
				raise ValueError("unknown property 0x%02x" % pid)
			out.append((pid, v))
		return out


def split(buf, start=0):
	"""One packet off the front of buf[start:]: (first byte, body, end index),
	or None while it is incomplete.  ValueError for a Remaining Length of more
	than four bytes."""
	n = len(buf)
	if n - start < 2:
		return None
	mult, length, i = 1, 0, start + 1
	while True:
		if i >= n:
			return None
		b = buf[i]
		length += (b & 0x7F) * mult
		mult *= 128
		i += 1
		if not b & 0x80:
			break
		if i - start > 4:
			raise ValueError("malformed remaining length")
	if n < i + length:
		return None
	return buf[start], bytes(buf[i:i + length]), i + length


def parse_stream(data, version=5):
	"""All complete packets in data: ([Packet], the bytes left over)."""
	out, i = [], 0
	while True:
		r = split(data, i)
		if r is None:
			return out, bytes(data[i:])
		out.append(Packet(r[0], r[1], version))
		i = r[2]


class Packet:
	"""One packet: type, flags, body (without fixed header) and the protocol
	level it is read with (the connection's; CONNECT carries its own)."""

	def __init__(self, first, body, version=5):
		self.type = first >> 4
		self.flags = first & 0x0F
		self.body = body
		self.version = version

	@classmethod
	def from_bytes(cls, data, version=5):
		"""The packet that data holds exactly."""
		r = split(data)
		if r is None or r[2] != len(data):
			raise ValueError("not exactly one packet: %s" % bytes(data).hex())
		return cls(r[0], r[1], version)

	def __repr__(self):
		return "<%s flags=%x %s>" % (NAMES.get(self.type, self.type), self.flags,
					     self.body.hex())

	@property
	def name(self):
		return NAMES.get(self.type, str(self.type))

	def to_bytes(self):
		return frame((self.type << 4) | self.flags, self.body)

	def _v5(self):
		return self.version == 5

	# -- per type ------------------------------------------------------
	def connect(self):
		"""dict: protocol, version, clean, keepalive, props, client_id, will
		(None or dict(topic, payload, qos, retain, props)), username, password
		(None when absent)."""
		r = Reader(self.body)
		d = {"protocol": r.str(), "version": r.byte()}
		flags = r.byte()
		d["flags"] = flags
		d["clean"] = bool(flags & 0x02)
		d["keepalive"] = r.u16()
		v5 = d["version"] == 5
		d["props"] = r.props() if v5 else []
		d["client_id"] = r.str()
		d["will"] = None
		if flags & 0x04:
			w = {"qos": (flags >> 3) & 3, "retain": bool(flags & 0x20)}
			w["props"] = r.props() if v5 else []
			w["topic"] = r.str()
			w["payload"] = r.bin()
			d["will"] = w
		d["username"] = r.str() if flags & 0x80 else None
		d["password"] = r.bin() if flags & 0x40 else None
		return d

	def connack(self):
		"""(session_present, return/reason code, properties)."""
		r = Reader(self.body)
		sp = r.byte() & 1
		rc = r.byte()
		p = r.props() if self._v5() and r.left() else []
		return sp, rc, p

	def publish(self):
		r = Reader(self.body)
		d = {"qos": (self.flags >> 1) & 3, "dup": bool(self.flags & 8),
		     "retain": bool(self.flags & 1), "pid": None}
		d["topic"] = r.str()
		if d["qos"]:
			d["pid"] = r.u16()
		d["props"] = r.props() if self._v5() else []
		d["payload"] = r.rest()
		return d

	def pid(self):
		return struct.unpack("!H", self.body[:2])[0]

	def reason(self):
		"""Reason code of an ack, DISCONNECT or AUTH (0 when omitted)."""
		if self.type in (DISCONNECT, AUTH):
			return self.body[0] if self.body else 0
		return self.body[2] if len(self.body) > 2 else 0

	def ack(self):
		"""PUBACK/PUBREC/PUBREL/PUBCOMP: (pid, reason code, properties);
		reason 0 and no properties when omitted."""
		r = Reader(self.body)
		pid = r.u16()
		rc = r.byte() if self._v5() and r.left() else 0
		p = r.props() if self._v5() and r.left() else []
		return pid, rc, p

	def subscribe(self):
		"""(pid, properties, [(filter, options byte)])."""
		r = Reader(self.body)
		pid = r.u16()
		p = r.props() if self._v5() else []
		out = []
		while r.left():
			f = r.str()
			out.append((f, r.byte()))
		return pid, p, out

	def suback(self):
		"""(pid, [codes])."""
		r = Reader(self.body)
		pid = r.u16()
		if self._v5():
			r.props()
		return pid, list(r.rest())

	def unsubscribe(self):
		"""(pid, properties, [filters])."""
		r = Reader(self.body)
		pid = r.u16()
		p = r.props() if self._v5() else []
		out = []
		while r.left():
			out.append(r.str())
		return pid, p, out

	def unsuback(self):
		"""(pid, [codes]) (no codes before MQTT 5)."""
		r = Reader(self.body)
		pid = r.u16()
		if not self._v5():
			return pid, []
		r.props()
		return pid, list(r.rest())

	def disconnect(self):
		"""(reason code, properties)."""
		r = Reader(self.body)
		rc = r.byte() if r.left() else 0
		p = r.props() if self._v5() and r.left() else []
		return rc, p

	def auth(self):
		"""(reason code, properties)."""
		return self.disconnect()

	def properties(self):
		"""The MQTT 5 properties of any packet type ([] where it has none)."""
		d = self.decode()
		return d.get("props", [])

	def decode(self):
		"""Every field as a dict with "type" (name), for any packet type."""
		t = self.type
		if t == CONNECT:
			d = self.connect()
		elif t == CONNACK:
			sp, rc, p = self.connack()
			d = {"session_present": sp, "rc": rc, "props": p}
		elif t == PUBLISH:
			d = self.publish()
		elif t in (PUBACK, PUBREC, PUBREL, PUBCOMP):
			pid, rc, p = self.ack()
			d = {"pid": pid, "rc": rc, "props": p}
		elif t in (SUBSCRIBE, UNSUBSCRIBE):
			pid, p, fl = self.subscribe() if t == SUBSCRIBE else self.unsubscribe()
			d = {"pid": pid, "props": p, "filters": fl}
		elif t in (SUBACK, UNSUBACK):
			r = Reader(self.body)
			pid = r.u16()
			p = r.props() if self._v5() else []
			d = {"pid": pid, "props": p, "codes": list(r.rest())}
		elif t in (DISCONNECT, AUTH):
			rc, p = self.disconnect()
			d = {"rc": rc, "props": p}
		else:
			d = {}
		d["type"] = self.name
		return d
