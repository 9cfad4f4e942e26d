"""Operating the broker: command line, configuration errors, signals, log
reopening, IPv6 and IPv4 listeners, the static files of a WebSocket
listener.  sluice only: these are sluice's own command line and directives.
"""

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import rawmqtt as R
from brokerlib import Broker, broker_binary, free_port, port_accepts
from harness import skip_on_mosquitto, wait_until, Skip

ONLY_SLUICE = "sluice's own command line and directives"


def run_sluice(args, timeout=10):
	return subprocess.run([broker_binary()] + args, stdout=subprocess.PIPE,
			      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout,
			      cwd=tempfile.mkdtemp(prefix="sluice-run-"))


def write_conf(text):
	# allow_anonymous defaults to false (mosquitto 2): these clients have no username.
	if "allow_anonymous" not in text:
		text += "allow_anonymous true\n"
	d = tempfile.mkdtemp(prefix="sluice-op-")
	path = os.path.join(d, "test.conf")
	with open(path, "w") as f:
		f.write(text)
	return d, path


class Proc:
	"""A sluice started by hand; always stopped (by pid) in stop()."""

	def __init__(self, args, cwd=None):
		self.out = tempfile.TemporaryFile()
		# its own working directory: the default database is data/sluice.db there
		self.cwd = cwd or tempfile.mkdtemp(prefix="sluice-proc-")
		self.p = subprocess.Popen([broker_binary()] + args, stdout=self.out,
					  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
					  cwd=self.cwd)

	def wait_port(self, port, host="127.0.0.1", family=socket.AF_INET):
		def up():
			assert self.p.poll() is None, "broker exited: %s" % self.output()
			try:
				with socket.socket(family, socket.SOCK_STREAM) as s:
					s.settimeout(0.2)
					s.connect((host, port))
				return True
			except OSError:
				return False
		wait_until(up, 5, "broker listening on %s port %d" % (host, port))

	def output(self):
		self.out.seek(0)
		return self.out.read().decode(errors="replace")

	def stop(self, sig=signal.SIGTERM):
		if self.p.poll() is None:
			self.p.send_signal(sig)
			try:
				return self.p.wait(5)
			except subprocess.TimeoutExpired:
				self.p.kill()
				self.p.wait(5)
				raise AssertionError("broker ignored signal %d" % sig)
		return self.p.returncode


def test_cli_version_and_help(t):
	skip_on_mosquitto(ONLY_SLUICE)
	r = run_sluice(["--version"])
	assert r.returncode == 0 and r.stdout.decode().startswith("sluice "), r.stdout
	r = run_sluice(["--help"])
	assert r.returncode == 0 and b"-c, --config" in r.stdout, r.stdout
	r = run_sluice(["--no-such-option"])
	assert r.returncode != 0 and b"Usage" in r.stdout, r.stdout
	r = run_sluice(["-p", "70000"])
	assert r.returncode != 0 and b"not a port" in r.stdout, r.stdout


def test_config_bad_line_names_file_and_line(t):
	skip_on_mosquitto(ONLY_SLUICE)
	_, path = write_conf("listener %d 127.0.0.1\n# a comment\nmax_qos 5\n" % free_port())
	r = run_sluice(["-c", path])
	assert r.returncode != 0, r.stdout
	assert ("%s:3: max_qos" % path).encode() in r.stdout, r.stdout
	_, path = write_conf("listener %d 127.0.0.1\nno_such_thing 1\n" % free_port())
	r = run_sluice(["-c", path])
	assert r.returncode != 0 and b":2: unknown directive 'no_such_thing'" in r.stdout, r.stdout
	r = run_sluice(["-c", "/nonexistent/sluice.conf"])
	assert r.returncode != 0 and b"/nonexistent/sluice.conf: cannot open" in r.stdout, r.stdout


def test_listener_in_use_refuses_start(t):
	skip_on_mosquitto(ONLY_SLUICE)
	b = t.broker()
	_, path = write_conf("listener %d 127.0.0.1\n" % b.port)
	r = run_sluice(["-c", path])
	assert r.returncode != 0 and b"cannot listen on 127.0.0.1 port %d" % b.port in r.stdout, \
		r.stdout


def test_cli_port_and_verbose(t):
	skip_on_mosquitto(ONLY_SLUICE)
	port = free_port()
	p = Proc(["-p", str(port), "-v"])
	try:
		p.wait_port(port)
		c = t.client(broker=_Addr(port), version=5)
		c.disconnect()
		wait_until(lambda: "DEBUG" in p.output() or "INFO" in p.output(), 5,
			   "verbose log lines")
	finally:
		assert p.stop() == 0, p.output()


class _Addr:
	"""What t.client() needs of a broker: its port."""

	def __init__(self, port, ws_port=None):
		self.port = port
		self.ws_port = ws_port


def test_sigterm_clean_stop_disconnects_v5_with_0x8b(t):
	skip_on_mosquitto(ONLY_SLUICE)
	b = t.fresh_broker()
	r = t.raw_connected(broker=b, version=5)
	rc = b.stop()  # SIGTERM, then wait for the exit
	assert rc == 0, "exit status %r" % rc
	got = r.wait_closed(5)
	assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x8B, got
	assert "stopped" in b.log_text()


def test_sighup_reopens_log_file(t):
	skip_on_mosquitto(ONLY_SLUICE)
	port = free_port()
	d = tempfile.mkdtemp(prefix="sluice-hup-")
	_, path = write_conf("listener %d 127.0.0.1\nlog_dest file %s/sluice.log\nlog_type all\n" %
			     (port, d))
	p = Proc(["-c", path])
	try:
		p.wait_port(port)
		log = os.path.join(d, "sluice.log")
		wait_until(lambda: os.path.exists(log), 5, "log file")
		os.rename(log, log + ".1")  # what logrotate does
		p.p.send_signal(signal.SIGHUP)
		wait_until(lambda: os.path.exists(log), 5, "log file reopened after SIGHUP")
		cid = t.cid("hup")
		c = t.client(broker=_Addr(port), client_id=cid, version=5)
		c.disconnect()
		wait_until(lambda: cid in open(log).read(), 5, "new lines in the new file")
		assert "sluice" in open(log + ".1").read()
	finally:
		assert p.stop() == 0, p.output()


def test_ipv6_and_ipv4_only_listeners(t):
	skip_on_mosquitto(ONLY_SLUICE)
	try:
		with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
			s.bind(("::1", 0))
	except OSError:
		raise Skip("no IPv6 loopback on this machine")
	p6, p4 = free_port(), free_port()
	_, path = write_conf("listener %d ::1\nsocket_domain ipv6\nlistener %d 127.0.0.1\n"
			     "socket_domain ipv4\n" % (p6, p4))
	p = Proc(["-c", path])
	try:
		p.wait_port(p6, "::1", socket.AF_INET6)
		p.wait_port(p4)
		for host, port, fam in (("::1", p6, socket.AF_INET6), ("127.0.0.1", p4, socket.AF_INET)):
			with socket.create_connection((host, port), timeout=5) as s:
				s.sendall(R.connect("v6v4-%d" % port, version=4))
				data = s.recv(4)
				assert data[:1] == b"\x20" and data[3:4] == b"\x00", (host, data)
	finally:
		assert p.stop() == 0, p.output()


def test_websocket_listener_serves_http_dir(t):
	skip_on_mosquitto(ONLY_SLUICE)
	d = tempfile.mkdtemp(prefix="sluice-www-")
	with open(os.path.join(d, "index.html"), "w") as f:
		f.write("<html><body>sluice status test page</body></html>\n")
	mq, ws = free_port(), free_port()
	_, path = write_conf("listener %d 127.0.0.1\nlistener %d 127.0.0.1\nprotocol websockets\n"
			     "http_dir %s\n" % (mq, ws, d))
	p = Proc(["-c", path])
	try:
		p.wait_port(ws)
		body = urllib.request.urlopen("http://127.0.0.1:%d/" % ws, timeout=5).read()
		assert b"sluice status test page" in body, body
		# and the same port still speaks MQTT over WebSocket
		c = t.client(broker=_Addr(mq, ws), version=5, transport="ws")
		c.disconnect()
	finally:
		assert p.stop() == 0, p.output()
