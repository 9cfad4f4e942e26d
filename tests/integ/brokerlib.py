"""Start and stop a broker under test.

A Broker owns one broker process: a config file and a log file in a
private temporary directory, one plain MQTT listener and one WebSocket
listener on free 127.0.0.1 ports.  The same object can be stopped,
restarted on the same ports with the same config, or killed with SIGKILL.

Which broker runs is chosen once per process by broker_kind():
INTEG_BROKER=mosquitto selects /usr/sbin/mosquitto (for developing the
suite), otherwise $SLUICE names the sluice binary.
"""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")


# mosquitto 2.0 directives that belong to a listener, not to the whole broker
MOSQUITTO_PER_LISTENER = {"max_qos", "max_topic_alias", "max_connections", "mount_point",
			  "use_username_as_clientid", "allow_zero_length_clientid"}


class BrokerError(Exception):
	pass


def broker_kind():
	"""'mosquitto' or 'sluice'."""
	kind = os.environ.get("INTEG_BROKER", "sluice").strip().lower()
	if kind not in ("mosquitto", "sluice"):
		raise BrokerError("INTEG_BROKER must be 'sluice' or 'mosquitto', not %r" % kind)
	return kind


def is_mosquitto():
	return broker_kind() == "mosquitto"


def broker_binary():
	if is_mosquitto():
		return MOSQUITTO
	path = os.environ.get("SLUICE")
	if not path:
		raise BrokerError("SLUICE is not set (path of the sluice binary); "
				  "or set INTEG_BROKER=mosquitto")
	return path


def ephemeral_low():
	"""Start of the kernel's range for clients' local ports (32768 by default)."""
	try:
		with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
			return int(f.read().split()[0])
	except (OSError, ValueError, IndexError):
		return 32768


def port_free(port):
	s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
	try:
		s.bind(("127.0.0.1", port))
		return True
	except OSError:
		return False
	finally:
		s.close()


def free_port():
	"""A TCP port on 127.0.0.1 that was free a moment ago.  It is taken below
	the ephemeral range, so that while a broker is down (a restart test) no
	client connection can take it as its local port."""
	low = ephemeral_low()
	rng = random.Random()
	for _ in range(200):
		port = rng.randrange(10000, low) if low > 10100 else 0
		if port and port_free(port):
			return port
	s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
	try:
		s.bind(("127.0.0.1", 0))
		return s.getsockname()[1]
	finally:
		s.close()


def port_accepts(port, timeout=0.2):
	try:
		s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
	except OSError:
		return False
	s.close()
	return True


def start_failure(b, what="the broker started although it should not have"):
	"""Starts b, whose start-up must stop: the exit status (non-zero asserted
	by the caller as it sees fit), with b's log closed and kept for reading."""
	try:
		b.start()
	except BrokerError:
		pass
	else:
		raise AssertionError(what)
	b.proc.wait(10)
	rc = b.proc.returncode
	b._close_log()  # a start-up failure is the expected outcome, not a crash
	return rc


class Broker:
	"""One broker process.  extra: list of config lines (shared directive names)."""

	START_TIMEOUT = 10.0
	STOP_TIMEOUT = 5.0

	def __init__(self, extra=None, name="broker"):
		self.extra = list(extra or [])
		self.name = name
		self.kind = broker_kind()
		self.binary = broker_binary()
		self.dir = tempfile.mkdtemp(prefix="integ-%s-" % name)
		os.chmod(self.dir, 0o755)
		self.conf_path = os.path.join(self.dir, "broker.conf")
		self.log_path = os.path.join(self.dir, "broker.log")
		self.port = None
		self.ws_port = None
		self.proc = None
		self._logf = None
		self.owner = None
		self.starts = 0

	# -- configuration -------------------------------------------------
	def config_text(self):
		lines = [
			"listener %d 127.0.0.1" % self.port,
			"listener %d 127.0.0.1" % self.ws_port,
			"protocol websockets",
		]
		if self.kind == "mosquitto":
			# mosquitto applies some directives to the listener above them:
			# repeat those under both listeners.
			per = [l for l in self.extra if l.split()[:1] and
			       l.split()[0] in MOSQUITTO_PER_LISTENER]
			lines = lines[:1] + per + lines[1:] + per
			# mosquitto's "log_type debug" would replace, not extend, the
			# default set; "all" gives the same information on stderr.
			lines += ["log_type all", "log_dest stderr"]
			if not any(l.split()[:1] == ["sys_interval"] for l in self.extra):
				lines.append("sys_interval 1")
		else:
			if not any(l.split()[:1] == ["sys_interval"] for l in self.extra):
				lines.append("sys_interval 1")
			lines.append("log_type debug")
		# Both default to allow_anonymous false (mosquitto 2): tests that
		# do not say otherwise connect anonymously.
		if not any(l.split()[:1] == ["allow_anonymous"] for l in self.extra):
			lines.append("allow_anonymous true")
		if self.kind == "mosquitto":
			lines += [l for l in self.extra if l.split()[:1] and
				  l.split()[0] not in MOSQUITTO_PER_LISTENER]
		else:
			lines += self.extra
		return "\n".join(lines) + "\n"

	# -- life cycle ----------------------------------------------------
	def start(self):
		if self.proc is not None and self.proc.poll() is None:
			raise BrokerError("broker already running")
		if self.port is None:
			self.port = free_port()
			self.ws_port = free_port()
			while self.ws_port == self.port:
				self.ws_port = free_port()
		with open(self.conf_path, "w") as f:
			f.write(self.config_text())
		os.chmod(self.conf_path, 0o644)
		self._logf = open(self.log_path, "ab")
		self._logf.write(("==== start %d: %s -c %s\n" % (self.starts, self.binary,
			self.conf_path)).encode())
		self._logf.flush()
		self.starts += 1
		self.owner = os.getpid()
		self.proc = subprocess.Popen([self.binary, "-c", self.conf_path],
					     stdin=subprocess.DEVNULL, stdout=self._logf,
					     stderr=subprocess.STDOUT, cwd=self.dir)
		self._wait_ready()
		return self

	def _wait_ready(self):
		deadline = time.monotonic() + self.START_TIMEOUT
		while time.monotonic() < deadline:
			if self.proc.poll() is not None:
				raise BrokerError("broker exited with status %s during start-up\n%s" %
						  (self.proc.returncode, self.log_tail()))
			if port_accepts(self.port) and port_accepts(self.ws_port):
				return
			time.sleep(0.02)
		raise BrokerError("broker did not accept on ports %d/%d within %.0fs\n%s" %
				  (self.port, self.ws_port, self.START_TIMEOUT, self.log_tail()))

	def alive(self):
		"""True while the process runs (also from a forked child of the starter)."""
		if self.proc is None:
			return False
		if os.getpid() == self.owner:
			return self.proc.poll() is None
		try:
			with open("/proc/%d/stat" % self.proc.pid) as f:
				state = f.read().rsplit(")", 1)[1].split()[0]
		except OSError:
			return False
		return state not in ("Z", "X")

	def exited_unexpectedly(self):
		"""The process is gone although stop()/kill9() was never called."""
		return self.proc is not None and self._logf is not None and not self.alive()

	def stop(self):
		"""SIGTERM, then SIGKILL after STOP_TIMEOUT.  Returns the exit status."""
		if self.proc is None:
			return None
		rc = self.proc.poll()
		if rc is None:
			try:
				self.proc.send_signal(signal.SIGTERM)
				rc = self.proc.wait(self.STOP_TIMEOUT)
			except subprocess.TimeoutExpired:
				self.proc.send_signal(signal.SIGKILL)
				rc = self.proc.wait(self.STOP_TIMEOUT)
		self._close_log()
		return rc

	def kill9(self):
		if self.proc is not None and self.proc.poll() is None:
			self.proc.send_signal(signal.SIGKILL)
			self.proc.wait(self.STOP_TIMEOUT)
		self._close_log()

	def restart(self):
		"""Stop and start again on the same ports with the same config."""
		self.stop()
		deadline = time.monotonic() + 5
		while port_accepts(self.port) and time.monotonic() < deadline:
			time.sleep(0.05)
		self.start()
		return self

	def _close_log(self):
		if self._logf is not None:
			self._logf.close()
			self._logf = None

	def cleanup(self):
		self.stop()
		shutil.rmtree(self.dir, ignore_errors=True)

	# -- log -----------------------------------------------------------
	def log_text(self, since=0):
		"""The log from byte offset since (see log_size())."""
		try:
			with open(self.log_path, "rb") as f:
				f.seek(since)
				return f.read().decode("utf-8", "replace")
		except OSError:
			return ""

	def log_size(self):
		try:
			return os.path.getsize(self.log_path)
		except OSError:
			return 0

	def log_tail(self, lines=25):
		return "\n".join(self.log_text().splitlines()[-lines:])

	def wait_log(self, pattern, timeout=5.0, since=0):
		"""Wait until a line of the log (from byte offset since) matches regex pattern."""
		rx = re.compile(pattern)
		deadline = time.monotonic() + timeout
		while True:
			text = self.log_text(since)
			for line in text.splitlines():
				if rx.search(line):
					return line
			if time.monotonic() >= deadline:
				return None
			time.sleep(0.05)

	def __repr__(self):
		return "<Broker %s %s port=%s ws=%s>" % (self.name, self.kind, self.port, self.ws_port)
