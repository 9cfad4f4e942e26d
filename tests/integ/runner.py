"""Integration test runner for sluice (runs against any MQTT broker).

Discovers test_*.py modules beside this file and the test_* functions in
them, expands @param decorators, and runs every test in a forked child
process of its own process group, at most -j at a time.  A child that
exceeds its time limit is killed with its whole process group (so brokers
and clients it started die with it).  Tests that need no special broker
configuration share one broker started here before the first fork.

Output: one line per test (PASS/FAIL/SKIP), details of failures indented
below, and the closing line "N passed, M failed, K skipped".
"""

import argparse
import importlib
import itertools
import json
import os
import re
import select
import signal
import sys
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # the source tree may be read-only (VPATH builds)

import brokerlib  # noqa: E402
import harness  # noqa: E402


class Test:
	def __init__(self, name, fn, kwargs):
		self.name = name
		self.fn = fn
		self.kwargs = kwargs
		self.timeout = getattr(fn, "_timeout", harness.DEFAULT_TIMEOUT)
		self.differs = getattr(fn, "_mosquitto_differs", None)
		when = getattr(fn, "_mosquitto_differs_when", {})
		if any(kwargs.get(k) != v for k, v in when.items()):
			self.differs = None


def unittest_case(cls, method):
	"""A runner test that runs one method of a unittest.TestCase class."""
	def fn(t):
		result = unittest.TestResult()
		cls(method).run(result)
		if result.skipped:
			raise harness.Skip(result.skipped[0][1])
		bad = result.errors + result.failures
		if bad:
			lines = bad[0][1].rstrip().splitlines()
			raise AssertionError("%s\n%s" % (lines[-1], "\n".join(lines[-12:-1])))
	fn._timeout = getattr(getattr(cls, method), "_timeout", 60)
	return fn


def discover(patterns):
	tests = []
	for fname in sorted(os.listdir(HERE)):
		if not (fname.startswith("test_") and fname.endswith(".py")):
			continue
		mod = importlib.import_module(fname[:-3])
		for cname in sorted(dir(mod)):
			cls = getattr(mod, cname)
			if isinstance(cls, type) and issubclass(cls, unittest.TestCase) and \
					cls.__module__ == mod.__name__:
				for m in unittest.TestLoader().getTestCaseNames(cls):
					tests.append(Test("%s.%s" % (cname, m),
							  unittest_case(cls, m), {}))
		fns = [(getattr(mod, n).__code__.co_firstlineno, n) for n in dir(mod)
		       if n.startswith("test_") and callable(getattr(mod, n)) and
		       hasattr(getattr(mod, n), "__code__")]
		for _, n in sorted(fns):
			fn = getattr(mod, n)
			params = getattr(fn, "_params", [])
			names = [p[0] for p in params]
			for combo in itertools.product(*[p[1] for p in params]):
				kw = dict(zip(names, combo))
				name = n
				if combo:
					name += "[%s]" % "-".join(harness.value_name(k, v)
								  for k, v in kw.items())
				tests.append(Test(name, fn, kw))
	if patterns:
		rx = [re.compile(p) for p in patterns]
		tests = [t for t in tests if any(r.search(t.name) for r in rx)]
	return tests


def run_child(test, shared, wfd):
	"""In the forked child: run one test, write a JSON result, exit."""
	res = {"status": "PASS", "reason": "", "detail": ""}
	ctx = harness.Context(test.name, shared)
	start = time.monotonic()
	try:
		test.fn(ctx, **test.kwargs)
		dead = ctx.crashed_brokers()
		if dead:
			raise AssertionError("broker %r exited during the test" % dead[0])
	except harness.Skip as e:
		res["status"] = "SKIP"
		res["reason"] = str(e)
	except BaseException as e:
		res["status"] = "FAIL"
		msg = str(e).strip().splitlines()
		res["reason"] = "%s: %s" % (type(e).__name__, msg[0] if msg else "")
		tb = traceback.format_exc().rstrip().splitlines()
		res["detail"] = "\n".join(tb[-12:] + msg[1:8])
		try:
			res["detail"] += "\n" + ctx.log_tails()
		except Exception:
			pass
	res["elapsed"] = time.monotonic() - start
	try:
		ctx.finish()
	except Exception:
		pass
	os.write(wfd, json.dumps(res).encode())
	os.close(wfd)
	os._exit(0)


class Running:
	def __init__(self, test, pid, rfd):
		self.test = test
		self.pid = pid
		self.rfd = rfd
		self.start = time.monotonic()
		self.data = b""


def reap(run):
	"""Kill anything the test left in its process group, then collect the child."""
	try:
		os.killpg(run.pid, signal.SIGKILL)
	except OSError:
		pass
	try:
		os.waitpid(run.pid, 0)
	except ChildProcessError:
		pass
	os.close(run.rfd)


def indent(text):
	return "\n".join("    " + l for l in text.splitlines())


def main():
	ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	ap.add_argument("-k", action="append", default=[], help="regex on test names (repeatable)")
	ap.add_argument("-j", type=int, default=int(os.environ.get("INTEG_JOBS", "3")),
			help="tests run in parallel (default 3)")
	ap.add_argument("--broker", choices=["sluice", "mosquitto"],
			help="broker to test (default: $INTEG_BROKER or sluice)")
	ap.add_argument("--list", action="store_true", help="list tests and exit")
	ap.add_argument("-v", action="store_true", help="print details of skips too")
	args = ap.parse_args()
	if args.broker:
		os.environ["INTEG_BROKER"] = args.broker

	tests = discover(args.k)
	if args.list:
		for t in tests:
			print(t.name)
		return 0

	kind = brokerlib.broker_kind()
	try:
		binary = brokerlib.broker_binary()
	except brokerlib.BrokerError as e:
		print("FAIL setup: %s" % e)
		print("0 passed, 1 failed")
		return 1
	if not os.access(binary, os.X_OK):
		print("FAIL setup: broker binary %s is not executable" % binary)
		print("0 passed, 1 failed")
		return 1
	print("# %d tests against %s (%s), %d at a time" % (len(tests), kind, binary, args.j))
	sys.stdout.flush()

	shared = brokerlib.Broker([], name="shared")
	try:
		shared.start()
	except brokerlib.BrokerError as e:
		print("FAIL setup: shared broker did not start: %s" % e)
		print("0 passed, 1 failed")
		shared.cleanup()
		return 1

	passed = failed = skipped = 0
	failures = []
	pending = list(tests)
	running = []
	t0 = time.monotonic()
	try:
		while pending or running:
			while pending and len(running) < max(1, args.j):
				if not shared.alive():
					print("# shared broker died (status %s); restarting" %
					      shared.proc.returncode)
					shared.start()
				test = pending.pop(0)
				rfd, wfd = os.pipe()
				sys.stdout.flush()
				pid = os.fork()
				if pid == 0:
					os.close(rfd)
					os.setpgid(0, 0)
					signal.signal(signal.SIGINT, signal.SIG_DFL)
					try:
						run_child(test, shared, wfd)
					finally:
						os._exit(1)
				os.close(wfd)
				try:
					os.setpgid(pid, pid)
				except OSError:
					pass
				running.append(Running(test, pid, rfd))
			now = time.monotonic()
			wait = min(r.start + r.test.timeout for r in running) - now
			ready, _, _ = select.select([r.rfd for r in running], [], [],
						    max(0.0, min(wait, 1.0)))
			done = []
			for r in running:
				if r.rfd in ready:
					chunk = os.read(r.rfd, 65536)
					if chunk:
						r.data += chunk
						continue
					done.append(r)
				elif time.monotonic() > r.start + r.test.timeout:
					done.append(r)
			for r in done:
				running.remove(r)
				reap(r)
				res = None
				if r.data:
					try:
						res = json.loads(r.data.decode())
					except ValueError:
						res = None
				if res is None:
					el = time.monotonic() - r.start
					if el >= r.test.timeout:
						res = {"status": "FAIL", "reason": "time limit of %.0fs "
						       "exceeded (killed)" % r.test.timeout, "detail": "",
						       "elapsed": el}
					else:
						res = {"status": "FAIL", "reason": "test process died",
						       "detail": "", "elapsed": el}
				name = r.test.name
				if res["status"] == "PASS":
					passed += 1
					note = ""
					if kind == "mosquitto" and r.test.differs:
						note = " [marked as failing on mosquitto, but passed]"
					print("PASS %s (%.2fs)%s" % (name, res["elapsed"], note))
				elif res["status"] == "SKIP":
					skipped += 1
					print("SKIP %s: %s" % (name, res["reason"]))
				else:
					failed += 1
					note = ""
					if kind == "mosquitto" and r.test.differs:
						note = " [expected on mosquitto: %s]" % r.test.differs
					print("FAIL %s: %s%s" % (name, res["reason"], note))
					failures.append(name)
					if res.get("detail"):
						print(indent(res["detail"]))
				sys.stdout.flush()
	except KeyboardInterrupt:
		for r in running:
			reap(r)
		print("# interrupted")
	finally:
		shared.cleanup()
	print("# %.1fs" % (time.monotonic() - t0))
	if failures:
		print("# failed: " + " ".join(failures))
	line = "%d passed, %d failed" % (passed, failed)
	if skipped:
		line += ", %d skipped" % skipped
	print(line)
	return 1 if failed else 0


if __name__ == "__main__":
	sys.exit(main())
