"""Byte-level MQTT: a raw client, and (from mqttpkt) packet builders and parser.

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

# Packet types, property ids, builders (connect(), publish(), ack(), ...),
# Reader, Packet, prop(), prop_all(): all from mqttpkt, re-exported here so that
# tests write R.publish(...), R.PUBACK, R.Packet.
from mqttpkt import *  # noqa: F401,F403
from mqttpkt import CONNACK, NAMES, Packet, connect, split

TRANSPORTS = ("tcp", "ws", "ws-split", "ws-frag")


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
		try:
			r = split(self.buf)
		except ValueError:
			raise ValueError("broker sent a malformed remaining length")
		if r is None:
			return None
		first, body, end = r
		self.buf = self.buf[end:]
		return Packet(first, body, self.version)

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
