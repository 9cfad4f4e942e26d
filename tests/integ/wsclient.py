"""A minimal RFC 6455 WebSocket client for byte-level MQTT tests.

It exists so that the same raw-byte conformance tests can run over TCP and
over WebSocket, and so that tests control the framing: one MQTT packet split
across several frames, several packets merged into one frame, continuation
frames, text frames.  Client frames are always masked [RFC 6455 5.3].
"""

import base64
import hashlib
import os
import socket
import struct
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


class HandshakeError(Exception):
	def __init__(self, status, headers):
		Exception.__init__(self, "WebSocket upgrade refused: %s" % status)
		self.status = status
		self.headers = headers


class WSConn:
	"""A WebSocket connection that looks like a byte stream (recv/sendall)."""

	def __init__(self, host, port, path="/mqtt", protocol="mqtt", timeout=5.0):
		self.sock = socket.create_connection((host, port), timeout=timeout)
		self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
		self.rbuf = b""        # raw bytes from the socket not yet parsed as frames
		self.data = b""        # payload bytes of binary frames not yet consumed
		self.closed = False    # peer sent a close frame or EOF
		self.close_code = None
		self.status = None
		self.headers = {}
		self._handshake(host, port, path, protocol)

	def _handshake(self, host, port, path, protocol):
		key = base64.b64encode(os.urandom(16)).decode()
		req = ["GET %s HTTP/1.1" % path,
		       "Host: %s:%d" % (host, port),
		       "Upgrade: websocket",
		       "Connection: Upgrade",
		       "Sec-WebSocket-Key: %s" % key,
		       "Sec-WebSocket-Version: 13"]
		if protocol:
			req.append("Sec-WebSocket-Protocol: %s" % protocol)
		self.sock.sendall(("\r\n".join(req) + "\r\n\r\n").encode())
		resp = b""
		while b"\r\n\r\n" not in resp:
			chunk = self.sock.recv(4096)
			if not chunk:
				raise HandshakeError("connection closed during upgrade", {})
			resp += chunk
		head, self.rbuf = resp.split(b"\r\n\r\n", 1)
		lines = head.decode("latin-1").split("\r\n")
		self.status = lines[0]
		for line in lines[1:]:
			if ":" in line:
				k, v = line.split(":", 1)
				self.headers[k.strip().lower()] = v.strip()
		parts = self.status.split()
		if len(parts) < 2 or parts[1] != "101":
			raise HandshakeError(self.status, self.headers)
		want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
		if self.headers.get("sec-websocket-accept") != want:
			raise HandshakeError("bad Sec-WebSocket-Accept", self.headers)
		if protocol and self.headers.get("sec-websocket-protocol", "").lower() != protocol:
			raise HandshakeError("subprotocol %r not selected" % protocol, self.headers)

	# -- sending ---------------------------------------------------------
	@staticmethod
	def frame(opcode, payload, fin=True):
		b0 = (0x80 if fin else 0) | opcode
		n = len(payload)
		if n < 126:
			hdr = struct.pack("!BB", b0, 0x80 | n)
		elif n < 65536:
			hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
		else:
			hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
		mask = os.urandom(4)
		masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
		return hdr + mask + masked

	def send_frame(self, opcode, payload, fin=True):
		self.sock.sendall(self.frame(opcode, payload, fin))

	def sendall(self, data):
		"""One binary frame holding data."""
		self.send_frame(OP_BINARY, data)

	def send_split(self, data, size=2):
		"""data as several complete binary messages of at most size bytes."""
		for i in range(0, len(data), size):
			self.send_frame(OP_BINARY, data[i:i + size])
			time.sleep(0.002)

	def send_fragmented(self, data, size=2):
		"""data as one binary message fragmented into continuation frames."""
		chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
		for i, c in enumerate(chunks):
			op = OP_BINARY if i == 0 else OP_CONT
			self.send_frame(op, c, fin=(i == len(chunks) - 1))
			time.sleep(0.002)

	def send_text(self, text):
		self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

	def send_close(self, code=1000):
		try:
			self.send_frame(OP_CLOSE, struct.pack("!H", code))
		except OSError:
			pass

	# -- receiving -------------------------------------------------------
	def _parse_frames(self):
		while True:
			if len(self.rbuf) < 2:
				return
			b0, b1 = self.rbuf[0], self.rbuf[1]
			n = b1 & 0x7F
			off = 2
			if n == 126:
				if len(self.rbuf) < 4:
					return
				n = struct.unpack("!H", self.rbuf[2:4])[0]
				off = 4
			elif n == 127:
				if len(self.rbuf) < 10:
					return
				n = struct.unpack("!Q", self.rbuf[2:10])[0]
				off = 10
			mask = None
			if b1 & 0x80:
				mask = self.rbuf[off:off + 4]
				off += 4
			if len(self.rbuf) < off + n:
				return
			payload = self.rbuf[off:off + n]
			if mask:
				payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
			self.rbuf = self.rbuf[off + n:]
			op = b0 & 0x0F
			if op in (OP_BINARY, OP_CONT, OP_TEXT):
				self.data += payload
			elif op == OP_CLOSE:
				self.closed = True
				if len(payload) >= 2:
					self.close_code = struct.unpack("!H", payload[:2])[0]
			elif op == OP_PING:
				try:
					self.send_frame(OP_PONG, payload)
				except OSError:
					pass

	def settimeout(self, t):
		self.sock.settimeout(t)

	def recv(self, n):
		"""Up to n payload bytes; b'' once the peer closed (close frame or EOF)."""
		while not self.data:
			if self.closed:
				return b""
			chunk = self.sock.recv(65536)
			if not chunk:
				self.closed = True
				return b""
			self.rbuf += chunk
			self._parse_frames()
		out, self.data = self.data[:n], self.data[n:]
		return out

	def shutdown(self, how):
		self.sock.shutdown(how)

	def close(self):
		try:
			self.sock.close()
		except OSError:
			pass
