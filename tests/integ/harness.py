"""What a test module imports: decorators and the per-test context.

A test is a function test_NAME(t, **params) in a module test_*.py.  t is a
Context: it hands out brokers (t.broker()), clients (t.client(), t.raw()),
unique ids and topics, and stops everything the test started when it ends.

Decorators:
  @param("version", [4, 5])       run once per value (stackable: cross product)
  @timeout(40)                    time limit in seconds (default 20)
  @mosquitto_differs("why", version=5)
                                  the spec and mosquitto 2.0.11 disagree (for these
                                  parameter values only, if given); the test follows
                                  the spec and is expected to fail on mosquitto
"""

import os
import re
import time

import brokerlib
import clients
import rawmqtt

DEFAULT_TIMEOUT = 20.0
VERSION_NAMES = {3: "v31", 4: "v311", 5: "v5"}


class Skip(Exception):
	pass


def param(name, values):
	def deco(fn):
		fn._params = [(name, list(values))] + list(getattr(fn, "_params", []))
		return fn
	return deco


def timeout(seconds):
	def deco(fn):
		fn._timeout = seconds
		return fn
	return deco


def mosquitto_differs(why, **when):
	"""when: parameter values the difference is limited to, e.g. version=5."""
	def deco(fn):
		fn._mosquitto_differs = why
		fn._mosquitto_differs_when = when
		return fn
	return deco


def value_name(name, v):
	if name == "version":
		return VERSION_NAMES.get(v, str(v))
	return str(v)


def is_mosquitto():
	return brokerlib.is_mosquitto()


def skip_on_mosquitto(reason):
	if brokerlib.is_mosquitto():
		raise Skip(reason)


def wait_until(pred, timeout=5.0, what="condition"):
	deadline = time.monotonic() + timeout
	while True:
		v = pred()
		if v:
			return v
		if time.monotonic() >= deadline:
			raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
		time.sleep(0.02)


class Context:
	"""Per-test resources.  shared: the worker's broker with the default config."""

	def __init__(self, name, shared=None):
		self.name = name
		self.shared = shared
		self.short = re.sub(r"[^A-Za-z0-9]+", "_", name.replace("test_", "", 1)).strip("_")
		self.tag = "%s_%04x" % (self.short[:40], int.from_bytes(os.urandom(2), "big"))
		self.brokers = []      # (broker, log offset at first use, owned)
		self._clients = []
		self._raws = []
		self._n = 0

	# -- brokers -----------------------------------------------------------
	def broker(self, extra=None):
		"""The shared default broker, or (with extra config lines) a fresh one."""
		if extra is None and self.shared is not None:
			if not any(b is self.shared for b, _, _ in self.brokers):
				self.brokers.append((self.shared, self.shared.log_size(), False))
			return self.shared
		b = brokerlib.Broker(extra, name=self.short[:30])
		self.brokers.append((b, 0, True))
		b.start()
		return b

	def fresh_broker(self, extra=None):
		b = brokerlib.Broker(extra or [], name=self.short[:30])
		self.brokers.append((b, 0, True))
		b.start()
		return b

	def log_offset(self, broker):
		for b, off, _ in self.brokers:
			if b is broker:
				return off
		return 0

	# -- names -------------------------------------------------------------
	def cid(self, suffix=""):
		"""A client id unique to this test run."""
		self._n += 1
		return "%s_%s%d" % (self.tag[-28:], suffix, self._n)

	def topic(self, sub=""):
		"""A topic prefix unique to this test run."""
		t = "integ/%s" % self.tag
		return t + "/" + sub if sub else t

	# -- clients -----------------------------------------------------------
	def client(self, broker=None, client_id=None, version=5, transport="tcp", connect=True,
		   **kw):
		c = clients.Client(broker or self.broker(), client_id or self.cid(), version=version,
				   transport=transport, **kw)
		self._clients.append(c)
		if connect:
			c.connect()
		return c

	def raw(self, broker=None, transport="tcp", version=5, **kw):
		r = rawmqtt.Raw(broker or self.broker(), transport=transport, version=version, **kw)
		self._raws.append(r)
		return r

	def raw_connected(self, broker=None, transport="tcp", version=5, client_id=None, **kw):
		"""A raw client that has done CONNECT/CONNACK (rc 0)."""
		r = self.raw(broker, transport, version)
		r.handshake(client_id or self.cid("r"), **kw)
		return r

	def check_alive(self, broker=None, transport="tcp"):
		"""Assert the broker still serves a fresh client (pub/sub round trip)."""
		b = broker or self.broker()
		if not b.alive():
			raise AssertionError("broker process died")
		c = self.client(b, version=5, transport=transport)
		t = self.topic("alive/%d" % self._n)
		c.subscribe(t, 1)
		c.publish(t, b"ping", 1)
		m = c.wait_message(5, "(liveness check)")
		assert m.payload == b"ping"
		c.disconnect()

	# -- end ---------------------------------------------------------------
	def finish(self):
		for c in self._clients:
			try:
				c.stop()
			except Exception:
				pass
		for r in self._raws:
			r.close()
		for b, _, owned in self.brokers:
			if owned:
				b.cleanup()

	def crashed_brokers(self):
		"""Brokers this test used that died without being stopped by the test."""
		out = []
		for b, _, _ in self.brokers:
			if b.exited_unexpectedly():
				out.append(b)
		return out

	def log_tails(self, lines=20):
		out = []
		for b, off, _ in self.brokers:
			text = b.log_text(off).splitlines()[-lines:]
			out.append("---- %r log (last %d lines) ----" % (b, len(text)))
			out.extend(text)
		return "\n".join(out)
