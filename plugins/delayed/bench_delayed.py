#!/usr/bin/python3
"""bench_delayed.py - measures the delayed topics plugin (not a test).

Starts its own sluice (persistence on, in a temporary directory) with the
plugin loaded, then runs one of:

  schedule   N delayed messages (PAYLOAD bytes, MQTT 5, QoS 1, WINDOW in
             flight) on $delayed/{d}/bench/x with d spread over SPREAD seconds
             starting 10 minutes ahead, so that nothing is released during the
             run; reports the scheduling rate (PUBACKs/s: each one means the
             message is committed) and the broker's peak RSS (VmHWM) before and
             after.
  lateness   (after --background B messages due in an hour, if given)
             N messages with deliver-at spread evenly so that RATE of them fall
             due per second, a few seconds after they are all scheduled; a
             subscriber (QoS 0) takes the due time from each payload and
             reports lateness = arrival - due: p50, p99, max. The figures
             include the subscriber's own delay (Python, same machine).

Raw sockets, standard library only: paho is too slow for a million messages.

    plugins/delayed/bench_delayed.py --sluice build/src/sluice \\
        --plugin build/plugins/delayed/.libs/delayed.so schedule -n 1000000
    plugins/delayed/bench_delayed.py ... lateness -n 100000 --rate 10000
"""
import argparse
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

# The packet builders and parser of the integration tests (tests/integ/mqttpkt.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
				"tests", "integ"))
sys.dont_write_bytecode = True  # the source tree may be read-only
import mqttpkt as M  # noqa: E402


def connect(cid, version=5):
	return M.connect(cid, version, clean=True, keepalive=600)


def publish(topic, payload, qos, pid, props=None):
	"""MQTT 5 PUBLISH; props: [(id, value)]."""
	return M.publish(topic, payload, qos, pid=pid, version=5, properties=props)


def user_prop(k, v):
	return [(M.USER_PROPERTY, (k, v))]


class Conn:
	def __init__(self, port, cid, version=5):
		self.s = socket.create_connection(("127.0.0.1", port))
		self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
		self.buf = bytearray()
		self.version = version
		self.s.sendall(connect(cid, version))
		t, _ = self.next_packet()
		assert t >> 4 == M.CONNACK, "no CONNACK"

	def fill(self):
		d = self.s.recv(1 << 20)
		if not d:
			raise EOFError("broker closed the connection")
		self.buf += d

	def packets(self):
		"""Every complete packet in the buffer: (first byte, body)."""
		out = []
		i = 0
		while True:
			p = M.split(self.buf, i)
			if p is None:
				break
			out.append(p[:2])
			i = p[2]
		del self.buf[:i]
		return out

	def next_packet(self):
		while True:
			p = self.packets()
			if p:
				assert len(p) == 1
				return p[0]
			self.fill()


def vm(pid, key):
	with open("/proc/%d/status" % pid) as f:
		for line in f:
			if line.startswith(key + ":"):
				return int(line.split()[1]) // 1024  # MB
	return 0


def start_broker(args, d):
	port = args.port
	conf = os.path.join(d, "b.conf")
	with open(conf, "w") as f:
		f.write("listener %d 127.0.0.1\nsys_interval 10\nplugin %s\nplugin_opt_max 1d\n"
			"persistence_file %s/data/sluice.db\n" % (port, args.plugin, d))
	log = open(os.path.join(d, "broker.log"), "wb")
	p = subprocess.Popen([args.sluice, "-c", conf], stdout=log, stderr=subprocess.STDOUT, cwd=d)
	for _ in range(200):
		try:
			socket.create_connection(("127.0.0.1", port)).close()
			return p
		except OSError:
			time.sleep(0.05)
	raise SystemExit("broker did not start; see %s/broker.log" % d)


def pump_publishes(c, packets, window):
	"""Sends packets (QoS 1) keeping at most window unacknowledged; returns when all are acked."""
	sent = acked = 0
	n = len(packets) if isinstance(packets, list) else None
	it = iter(packets)
	done_sending = False
	while not done_sending or acked < sent:
		batch = []
		while not done_sending and sent - acked < window and len(batch) < 256:
			try:
				batch.append(next(it))
				sent += 1
			except StopIteration:
				done_sending = True
		if batch:
			c.s.sendall(b"".join(batch))
		if acked < sent and (sent - acked >= window or done_sending or not batch):
			c.fill()
			for first, body in c.packets():
				if first >> 4 == M.PUBACK:
					rc = M.Packet(first, body).reason()
					if rc >= 0x80:
						raise SystemExit("PUBACK reason 0x%02x" % rc)
					acked += 1
	return n


def run_schedule(args, broker):
	c = Conn(args.port, "bench-sched")
	payload = b"x" * args.payload
	rng = random.Random(1)
	base_rss = vm(broker.pid, "VmRSS")

	def gen():
		for i in range(args.n):
			d = 600 + rng.random() * args.spread
			yield publish("$delayed/%.3f/bench/x" % d, payload, 1, i % 65535 + 1)

	t0 = time.monotonic()
	pump_publishes(c, gen(), args.window)
	el = time.monotonic() - t0
	time.sleep(1)
	print("schedule: n=%d payload=%d window=%d: %.1f s, %.0f msg/s; broker RSS %d MB before, "
	      "%d MB after, peak (VmHWM) %d MB" % (args.n, args.payload, args.window, el,
						 args.n / el, base_rss, vm(broker.pid, "VmRSS"),
						 vm(broker.pid, "VmHWM")))


def schedule_background(args):
	"""lateness --background N: N messages due in an hour, so the queue is big."""
	if not args.background:
		return 0
	c = Conn(args.port, "bench-bg")
	payload = b"x" * args.payload
	t0 = time.monotonic()
	pump_publishes(c, (publish("$delayed/%d/bench/bg" % (3600 + i % 600), payload, 1,
				   i % 65535 + 1) for i in range(args.background)), args.window)
	return time.monotonic() - t0


def run_lateness(args, broker):
	bg = schedule_background(args)
	sub = Conn(args.port, "bench-sub", version=4)
	sub.s.sendall(M.subscribe(1, [("bench/late", 0)], version=4))
	while sub.next_packet()[0] >> 4 != M.SUBACK:
		pass
	pub = Conn(args.port, "bench-late")
	pad = b"x" * max(0, args.payload - 8)
	# Scheduling takes n / (scheduling rate); releases start after that.
	start = int(time.time() * 1000) + int(args.lead * 1000)
	step = 1000.0 / args.rate

	def gen():
		for i in range(args.n):
			due = start + int(i * step)
			yield publish("bench/late", struct.pack("!Q", due) + pad, 1, i % 65535 + 1,
				      user_prop("deliver-at", str(due)))

	t0 = time.monotonic()
	pump_publishes(pub, gen(), args.window)
	sched_s = time.monotonic() - t0
	if time.time() * 1000 > start:
		print("warning: scheduling took %.1f s, longer than --lead %.1f s: the first "
		      "releases were overdue" % (sched_s, args.lead))
	late = []
	sub.s.settimeout(args.lead + args.n / args.rate + 10)
	while len(late) < args.n:
		sub.fill()
		now = time.time() * 1000
		for first, body in sub.packets():
			if first >> 4 == M.PUBLISH:
				payload = M.Packet(first, body, 4).publish()["payload"]
				due = struct.unpack("!Q", payload[:8])[0]
				late.append(now - due)
	late.sort()

	def pct(p):
		return late[min(len(late) - 1, int(len(late) * p / 100))]

	print("lateness: n=%d at %d/s (scheduled in %.1f s), %d others pending (scheduled in "
	      "%.1f s): p50 %.1f ms, p99 %.1f ms, max %.1f ms, min %.1f ms; broker peak RSS %d MB" %
	      (args.n, args.rate, sched_s, args.background, bg, pct(50), pct(99), late[-1],
	       late[0], vm(broker.pid, "VmHWM")))


def main():
	ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
	ap.add_argument("--sluice", required=True)
	ap.add_argument("--plugin", required=True)
	ap.add_argument("--port", type=int, default=0)
	ap.add_argument("--keep", action="store_true", help="keep the broker's directory")
	ap.add_argument("mode", choices=["schedule", "lateness"])
	ap.add_argument("-n", type=int, default=100000)
	ap.add_argument("--payload", type=int, default=100)
	ap.add_argument("--window", type=int, default=2000)
	ap.add_argument("--spread", type=float, default=600, help="schedule: seconds")
	ap.add_argument("--rate", type=int, default=10000, help="lateness: releases per second")
	ap.add_argument("--background", type=int, default=0,
			help="lateness: messages pending for an hour meanwhile")
	ap.add_argument("--lead", type=float, default=0,
			help="lateness: seconds before the first release (default: n / 15000 + 3)")
	args = ap.parse_args()
	if not args.port:
		s = socket.socket()
		s.bind(("127.0.0.1", 0))
		args.port = s.getsockname()[1]
		s.close()
	if not args.lead:
		args.lead = args.n / 15000.0 + 3
	d = tempfile.mkdtemp(prefix="bench-delayed-")
	broker = start_broker(args, d)
	try:
		(run_schedule if args.mode == "schedule" else run_lateness)(args, broker)
	finally:
		broker.terminate()
		try:
			broker.wait(30)
		except subprocess.TimeoutExpired:
			broker.kill()
		if args.keep:
			print("broker directory:", d)
		else:
			shutil.rmtree(d, ignore_errors=True)
	return 0


if __name__ == "__main__":
	sys.exit(main())
