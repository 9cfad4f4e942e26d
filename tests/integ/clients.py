"""paho-mqtt clients for behaviour tests (MQTT 3.1.1 and 5.0, TCP and WebSocket).

Each Client drives its own network loop thread (not paho's loop_start, which
reconnects by itself and would hide the disconnects that tests look for).
Every wait has a timeout; nothing synchronises by sleeping.
"""

import queue
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

VERSIONS = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}


def publish_props(**kw):
	"""Properties for PUBLISH / will, paho attribute names: MessageExpiryInterval=..."""
	p = Properties(PacketTypes.PUBLISH)
	for k, v in kw.items():
		setattr(p, k, v)
	return p


def connect_props(**kw):
	p = Properties(PacketTypes.CONNECT)
	for k, v in kw.items():
		setattr(p, k, v)
	return p


def subscribe_props(**kw):
	p = Properties(PacketTypes.SUBSCRIBE)
	for k, v in kw.items():
		setattr(p, k, v)
	return p


def rc_value(rc):
	"""int from a paho ReasonCodes object or an int."""
	return rc.value if hasattr(rc, "value") else int(rc)



# -- reading a Client's messages (its .messages queue) ------------------------------

QUIET = 0.6  # how long "nothing arrives" is watched for


def get_message(c, timeout):
	"""The next message of a Client (stamped .timestamp on arrival), or None."""
	try:
		return c.messages.get(timeout=timeout)
	except queue.Empty:
		return None


def get_messages(c, n, timeout):
	"""Up to n messages within timeout."""
	out, deadline = [], time.monotonic() + timeout
	while len(out) < n:
		m = get_message(c, max(0.0, deadline - time.monotonic()))
		if m is None:
			break
		out.append(m)
	return out


def assert_no_message(c, what, wait=QUIET):
	m = get_message(c, wait)
	assert m is None, "%s: %s got %s" % (what, c.client_id, (m.topic, m.payload))

class ClientError(AssertionError):
	pass


class Client:
	def __init__(self, broker, client_id, version=5, transport="tcp", clean=True,
		     keepalive=60, will=None, properties=None):
		"""will: dict(topic, payload, qos, retain, properties)."""
		self.broker = broker
		self.client_id = client_id
		self.version = version
		self.transport = transport
		self.clean = clean
		self.keepalive = keepalive
		self.properties = properties
		self.messages = queue.Queue()
		self.connected = threading.Event()
		self.disconnected = threading.Event()
		self.connack_rc = None
		self.connack_flags = None
		self.connack_props = None
		self.disconnect_rc = None
		self.disconnect_props = None
		self._acks = {}
		self._ack_cond = threading.Condition()
		self._thread = None
		self._stop = False
		kw = {"protocol": VERSIONS[version], "transport":
		      "websockets" if transport == "ws" else "tcp"}
		if version != 5:
			kw["clean_session"] = clean
		self.c = mqtt.Client(client_id, **kw)
		if transport == "ws":
			self.c.ws_set_options(path="/mqtt")
		if will:
			self.c.will_set(will["topic"], will.get("payload"), will.get("qos", 0),
					will.get("retain", False), will.get("properties"))
		self.c.on_connect = self._on_connect
		self.c.on_disconnect = self._on_disconnect
		self.c.on_message = self._on_message
		self.c.on_subscribe = self._on_subscribe
		self.c.on_unsubscribe = self._on_unsubscribe

	# -- callbacks --------------------------------------------------------
	def _on_connect(self, c, ud, flags, rc, props=None):
		self.connack_flags = flags
		self.connack_rc = rc_value(rc)
		self.connack_props = props
		self.connected.set()

	def _on_disconnect(self, c, ud, rc, props=None):
		# paho may report twice (DISCONNECT packet, then the closed socket):
		# the first report carries the broker's reason code.
		if not self.disconnected.is_set():
			self.disconnect_rc = rc_value(rc)
			self.disconnect_props = props
		self.disconnected.set()
		self._stop = True

	def _on_message(self, c, ud, msg):
		self.messages.put(msg)

	def _on_subscribe(self, c, ud, mid, granted, props=None):
		with self._ack_cond:
			self._acks[mid] = [rc_value(g) for g in granted]
			self._ack_cond.notify_all()

	def _on_unsubscribe(self, c, ud, mid, props=None, rcs=None):
		with self._ack_cond:
			if isinstance(rcs, list):
				self._acks[mid] = [rc_value(r) for r in rcs]
			elif rcs is not None:
				self._acks[mid] = [rc_value(rcs)]
			else:
				self._acks[mid] = []
			self._ack_cond.notify_all()

	def _wait_ack(self, mid, timeout):
		deadline = time.monotonic() + timeout
		with self._ack_cond:
			while mid not in self._acks:
				left = deadline - time.monotonic()
				if left <= 0:
					raise ClientError("%s: no ack for mid %d within %.1fs" %
							  (self.client_id, mid, timeout))
				self._ack_cond.wait(left)
			return self._acks.pop(mid)

	def _loop(self):
		while not self._stop:
			rc = self.c.loop(timeout=0.02)
			if rc != mqtt.MQTT_ERR_SUCCESS:
				if not self.disconnected.is_set():
					self.disconnect_rc = rc
					self.disconnected.set()
				break

	# -- operations ------------------------------------------------------
	def connect(self, timeout=5.0, expect_rc=0):
		port = self.broker.ws_port if self.transport == "ws" else self.broker.port
		kw = {}
		if self.version == 5:
			kw["clean_start"] = self.clean
			if self.properties is not None:
				kw["properties"] = self.properties
		self.c.connect("127.0.0.1", port, self.keepalive, **kw)
		self._thread = threading.Thread(target=self._loop, daemon=True)
		# paho writes from the calling thread when it believes no loop thread
		# runs, racing ours (duplicate PUBLISH): tell it about ours.
		self.c._thread = self._thread
		self._thread.start()
		deadline = time.monotonic() + timeout
		while not self.connected.is_set() and time.monotonic() < deadline:
			if self.disconnected.is_set() and not self.connected.is_set():
				break
			self.connected.wait(0.02)
		if not self.connected.is_set():
			raise ClientError("%s: no CONNACK within %.1fs" % (self.client_id, timeout))
		if expect_rc is not None and self.connack_rc != expect_rc:
			raise ClientError("%s: CONNACK rc %r, expected %r" %
					  (self.client_id, self.connack_rc, expect_rc))
		return self

	@property
	def session_present(self):
		return bool(self.connack_flags and self.connack_flags.get("session present"))

	def subscribe(self, topic, qos=0, timeout=5.0, no_local=False, retain_as_published=False,
		      retain_handling=0, properties=None):
		"""Returns the list of granted QoS / reason codes."""
		if self.version == 5:
			opts = SubscribeOptions(qos=qos, noLocal=no_local,
						retainAsPublished=retain_as_published,
						retainHandling=retain_handling)
			rc, mid = self.c.subscribe(topic, options=opts, properties=properties)
		else:
			rc, mid = self.c.subscribe(topic, qos)
		if rc != mqtt.MQTT_ERR_SUCCESS:
			raise ClientError("subscribe failed locally: %d" % rc)
		return self._wait_ack(mid, timeout)

	def unsubscribe(self, topic, timeout=5.0):
		rc, mid = self.c.unsubscribe(topic)
		return self._wait_ack(mid, timeout)

	def publish(self, topic, payload=b"", qos=0, retain=False, properties=None, timeout=5.0,
		    wait=True):
		info = self.c.publish(topic, payload, qos, retain, properties)
		if wait and qos > 0:
			info.wait_for_publish(timeout)
			if not info.is_published():
				raise ClientError("%s: publish of %s (qos %d) not completed in %.1fs" %
						  (self.client_id, topic, qos, timeout))
		return info

	def wait_message(self, timeout=5.0, what=""):
		try:
			return self.messages.get(timeout=timeout)
		except queue.Empty:
			raise ClientError("%s: no message%s within %.1fs" %
					  (self.client_id, " " + what if what else "", timeout))

	def wait_messages(self, n, timeout=5.0):
		deadline = time.monotonic() + timeout
		out = []
		while len(out) < n:
			left = deadline - time.monotonic()
			if left <= 0:
				raise ClientError("%s: got %d of %d messages within %.1fs: %r" %
						  (self.client_id, len(out), n, timeout,
						   [(m.topic, m.payload) for m in out]))
			try:
				out.append(self.messages.get(timeout=left))
			except queue.Empty:
				pass
		return out

	def expect_no_message(self, timeout=0.7):
		try:
			m = self.messages.get(timeout=timeout)
		except queue.Empty:
			return
		raise ClientError("%s: unexpected message on %s: %r" %
				  (self.client_id, m.topic, m.payload))

	def drain(self):
		out = []
		while True:
			try:
				out.append(self.messages.get_nowait())
			except queue.Empty:
				return out

	def wait_disconnected(self, timeout=5.0):
		if not self.disconnected.wait(timeout):
			raise ClientError("%s: still connected after %.1fs" % (self.client_id, timeout))
		return self.disconnect_rc

	def disconnect(self, reasoncode=None, properties=None):
		"""Normal DISCONNECT; waits for the loop thread to finish."""
		if self.version == 5 and reasoncode is not None:
			from paho.mqtt.reasoncodes import ReasonCodes
			rc = ReasonCodes(PacketTypes.DISCONNECT, identifier=reasoncode)
			self.c.disconnect(rc, properties)
		else:
			self.c.disconnect()
		self._join()

	def close_abruptly(self):
		"""Drop the connection without DISCONNECT (abnormal disconnect)."""
		self._stop = True
		self._join()
		sock = self.c.socket()
		if sock is not None:
			raw = getattr(sock, "_socket", sock)
			try:
				raw.close()
			except OSError:
				pass
			try:
				sock.close()
			except OSError:
				pass

	def _join(self):
		if self._thread is not None and self._thread is not threading.current_thread():
			self._thread.join(3)

	def stop(self):
		"""Best-effort clean-up used by the context at the end of a test."""
		if not self.disconnected.is_set() and self.connected.is_set():
			try:
				self.c.disconnect()
			except Exception:
				pass
		self._stop = True
		self._join()
		try:
			s = self.c.socket()
			if s is not None:
				s.close()
		except Exception:
			pass
