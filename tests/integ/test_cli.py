"""Round trips with the stock command-line clients mosquitto_pub / mosquitto_sub."""

import shutil
import subprocess
import time

from harness import param, Skip

PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
STDBUF = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []


def need_tools():
	for p in (PUB, SUB):
		if not shutil.which(p):
			raise Skip("%s not installed (package mosquitto-clients)" % p)


class Sub:
	"""mosquitto_sub in debug mode: we read until it has its SUBACK."""

	def __init__(self, broker, args, count=1, wait=10):
		# stdbuf: mosquitto_sub's stdout is a pipe, line-buffer it so that the
		# SUBACK debug line arrives before the program ends
		self.p = subprocess.Popen(STDBUF + [SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-d",
					   "-C", str(count), "-W", str(wait)] + args,
					  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
					  stdin=subprocess.DEVNULL)
		self.lines = []

	def wait_subscribed(self, timeout=5):
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			line = self.p.stdout.readline()
			if not line:
				break
			self.lines.append(line.decode(errors="replace").rstrip("\n"))
			if "SUBACK" in line.decode(errors="replace"):
				return
		raise AssertionError("mosquitto_sub did not subscribe: %r" % self.lines)

	def output(self, timeout=12):
		out, _ = self.p.communicate(timeout=timeout)
		self.lines += out.decode(errors="replace").splitlines()
		return self.lines

	def kill(self):
		if self.p.poll() is None:
			self.p.kill()
			self.p.wait()


def pub(broker, args, timeout=10):
	r = subprocess.run([PUB, "-h", "127.0.0.1", "-p", str(broker.port)] + args,
			   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
	assert r.returncode == 0, "mosquitto_pub failed (%d): %s" % (r.returncode, r.stdout)


@param("proto", ["mqttv311", "mqttv5"])
@param("qos", [0, 1, 2])
def test_cli_mosquitto_pub_sub_round_trip(t, proto, qos):
	need_tools()
	b = t.broker()
	tp = t.topic("cli")
	s = Sub(b, ["-V", proto, "-q", str(qos), "-t", tp, "-F", "%q|%p"])
	try:
		s.wait_subscribed()
		pub(b, ["-V", proto, "-q", str(qos), "-t", tp, "-m", "hello cli %d" % qos])
		lines = s.output()
		assert s.p.returncode == 0, lines
		assert "%d|hello cli %d" % (qos, qos) in lines, lines
	finally:
		s.kill()


@param("proto", ["mqttv311", "mqttv5"])
def test_cli_retained(t, proto):
	need_tools()
	b = t.broker()
	tp = t.topic("cliret")
	pub(b, ["-V", proto, "-q", "1", "-r", "-t", tp, "-m", "kept"])
	s = Sub(b, ["-V", proto, "-t", tp, "-F", "%r|%p"], wait=5)
	try:
		lines = s.output()
		assert "1|kept" in lines, lines
	finally:
		s.kill()
	pub(b, ["-V", proto, "-r", "-t", tp, "-n"])


def test_cli_websockets(t):
	raise Skip("Debian's mosquitto_pub/mosquitto_sub 2.0.11 have no WebSocket support")
