"""GET /metrics (README "Monitoring (Prometheus)", issue 13): the Prometheus
text format on every websockets listener (with and without http_dir, whose
files are still served) and on a "protocol http" listener (HTTP only: a
WebSocket upgrade, even with the "mqtt" subprotocol, and MQTT over TCP are
refused), over https when the listener has certfile and keyfile; 404 for
other paths, 405 for other methods; Content-Type text/plain; version=0.0.4.

Every scrape goes through a strict parser written here (Exposition): each
family has exactly one HELP and one TYPE line, both before its first
sample; a family's lines are not interleaved with another's and a family
never comes back; label values are unescaped (\\\\, \\", \\n) and any other
escape is an error; no duplicate series; counter names end in _total;
histogram buckets are cumulative, their bounds increase, the last is
le="+Inf" and equals _count; the body ends with a newline; no blank lines
or other comments (sluice writes none). test_metrics_parser_is_strict
shows it refuses each of those faults, so that a passing scrape means
something.

The values: each test has a private broker, so it can assert exact deltas
of the counters between two scrapes (connects accepted/refused,
disconnects, messages and payload bytes by QoS, network bytes, drops by
cause, queued messages, groups, retained, store commits), and that the
same figures appear on $SYS (one source): the broker's messages received
and dropped, a group's queue, and every plugin's figures (delayed, txn,
retry, ordered) with a short plugin_opt_sys_interval (200 ms; the delayed
plugin's is whole seconds: 1 s).

sluice only (skip_on_mosquitto); the plugin tests need SLUICE_DELAYED_PLUGIN,
SLUICE_TXN_PLUGIN, SLUICE_RETRY_PLUGIN, SLUICE_ORDERED_PLUGIN (skipped,
saying so, without them).
"""

import http.client
import os
import re
import socket
import time
import types

import rawmqtt as R
import wsclient
from brokerlib import free_port, port_accepts
from harness import Skip, param, skip_on_mosquitto, timeout, wait_until
from test_auth import need_passwd, write_passwd
from test_operation import run_sluice
from test_tls import TLSBroker, TLSRaw, assert_plain_not_served, certs, ctx, server_lines

ONLY_SLUICE = "GET /metrics is sluice's"
CONTENT_TYPE = "text/plain; version=0.0.4"
EXPIRY = 3600  # session expiry of the persistent MQTT 5 sessions
# $SYS refresh: 200 ms, or the 1 s the delayed plugin takes at least (whole seconds)
SYS_FAST = {"delayed": "plugin_opt_sys_interval 1"}

PLUGINS = {
	"delayed": "SLUICE_DELAYED_PLUGIN",
	"txn": "SLUICE_TXN_PLUGIN",
	"retry": "SLUICE_RETRY_PLUGIN",
	"ordered": "SLUICE_ORDERED_PLUGIN",
}

# README's families and their types (the plugins' come with the plugins).
BROKER_FAMILIES = {
	"sluice_connections": "gauge", "sluice_clients_connected": "gauge",
	"sluice_clients_maximum": "gauge", "sluice_sessions": "gauge",
	"sluice_connections_total": "counter", "sluice_connects_total": "counter",
	"sluice_disconnects_total": "counter",
	"sluice_messages_received_total": "counter", "sluice_messages_sent_total": "counter",
	"sluice_payload_bytes_received_total": "counter",
	"sluice_payload_bytes_sent_total": "counter",
	"sluice_bytes_received_total": "counter", "sluice_bytes_sent_total": "counter",
	"sluice_messages_dropped_total": "counter", "sluice_messages_expired_total": "counter",
	"sluice_acl_denied_total": "counter",
	"sluice_queued_messages": "gauge", "sluice_groups": "gauge",
	"sluice_retained_messages": "gauge", "sluice_subscriptions": "gauge",
	"sluice_messages_stored": "gauge",
	"sluice_store_commits_total": "counter", "sluice_store_failed_commits_total": "counter",
	"sluice_store_commit_seconds": "histogram", "sluice_store_commit_batch_size": "histogram",
	"sluice_build_info": "gauge", "sluice_uptime_seconds": "gauge",
	"sluice_start_time_seconds": "gauge",
}
DROP_CAUSES = ("queue_full", "slow_client", "offline", "expired_or_too_large",
	       "no_group_member", "out_of_memory")
PLUGIN_FAMILIES = {
	"delayed": ["sluice_delayed_pending", "sluice_delayed_next_due_ms",
		    "sluice_delayed_scheduled_total", "sluice_delayed_released_total",
		    "sluice_delayed_cancelled_total", "sluice_delayed_rejected_total"],
	"txn": ["sluice_txn_open", "sluice_txn_oldest_open_ms", "sluice_txn_committed_total",
		"sluice_txn_rolled_back_total", "sluice_txn_checks_total",
		"sluice_txn_discarded_total"],
	"retry": ["sluice_retry_pending", "sluice_retry_dlq_waiting", "sluice_retry_retried_total",
		  "sluice_retry_dead_lettered_total"],
	"ordered": ["sluice_ordered_keys", "sluice_ordered_waiting", "sluice_ordered_moved_total",
		    "sluice_ordered_filter_keys", "sluice_ordered_filter_waiting",
		    "sluice_ordered_filter_moved_total"],
}


# -- the Prometheus text format (0.0.4), strictly ---------------------------------------

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?Inf|NaN")
TIMESTAMP = re.compile(r"-?[0-9]+")
TYPES = ("counter", "gauge", "histogram")  # the ones sluice writes
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


class FormatError(AssertionError):
	pass


class Family:
	def __init__(self, name):
		self.name = name
		self.help = None
		self.type = None
		self.samples = []  # (sample name, labels dict, value)


def unescape(s, allowed, what):
	"""s with its backslash escapes resolved; allowed: the characters that may follow one."""
	out, i = [], 0
	while i < len(s):
		c = s[i]
		if c == "\\":
			if i + 1 >= len(s) or s[i + 1] not in allowed:
				raise FormatError("bad escape in %s: %r" % (what, s))
			out.append("\n" if s[i + 1] == "n" else s[i + 1])
			i += 2
			continue
		out.append(c)
		i += 1
	return "".join(out)


def parse_labels(line, i):
	"""({name: value}, index after '}') of the label set starting at line[i] == '{'."""
	labels = {}
	i += 1
	while True:
		m = LABEL_NAME.match(line, i)
		if not m:
			raise FormatError("bad label name at %d: %r" % (i, line))
		name, i = m.group(0), m.end()
		if line[i:i + 2] != '="':
			raise FormatError("label %s without =\"value\": %r" % (name, line))
		i += 2
		start = i
		while i < len(line) and line[i] != '"':
			i += 2 if line[i] == "\\" else 1
		if i >= len(line):
			raise FormatError("unterminated label value: %r" % line)
		if name in labels:
			raise FormatError("label %s twice: %r" % (name, line))
		labels[name] = unescape(line[start:i], '\\"n', "label value")
		i += 1
		if line[i:i + 1] == ",":
			i += 1
			continue
		if line[i:i + 1] == "}":
			return labels, i + 1
		raise FormatError("expected , or } after a label value: %r" % line)


def parse_value(s, line):
	if not NUMBER.fullmatch(s):
		raise FormatError("bad value %r: %r" % (s, line))
	return float(s.replace("Inf", "inf").replace("NaN", "nan"))


class Exposition:
	"""A parsed exposition; raises FormatError at the first fault."""

	def __init__(self, text):
		self.text = text
		self.families = {}  # name -> Family, in the order they came
		if not text.endswith("\n"):
			raise FormatError("the exposition does not end with a newline")
		current = None
		for line in text[:-1].split("\n"):
			if line.startswith("#"):
				current = self._comment(line, current)
			elif not line:
				raise FormatError("blank line")
			else:
				self._sample(line, current)
		for f in self.families.values():
			self._check(f)

	def _open(self, name, current):
		if current is not None and current.name == name:
			return current
		if name in self.families:
			raise FormatError("family %s comes back after another family's lines" % name)
		f = self.families[name] = Family(name)
		return f

	def _comment(self, line, current):
		m = re.fullmatch(r"# (HELP|TYPE) (\S+)(?: (.*))?", line)
		if not m or not METRIC_NAME.fullmatch(m.group(2)):
			raise FormatError("a comment other than HELP or TYPE: %r" % line)
		f = self._open(m.group(2), current)
		if f.samples:
			raise FormatError("%s after the samples of %s: %r" % (m.group(1), f.name, line))
		if m.group(1) == "HELP":
			if f.help is not None:
				raise FormatError("second HELP for %s" % f.name)
			f.help = unescape(m.group(3) or "", "\\n", "HELP")
		else:
			if f.type is not None:
				raise FormatError("second TYPE for %s" % f.name)
			if m.group(3) not in TYPES:
				raise FormatError("TYPE %r of %s" % (m.group(3), f.name))
			f.type = m.group(3)
		return f

	def _sample(self, line, current):
		m = METRIC_NAME.match(line)
		if not m:
			raise FormatError("bad sample line: %r" % line)
		name, i = m.group(0), m.end()
		labels = {}
		if line[i:i + 1] == "{":
			labels, i = parse_labels(line, i)
		if line[i:i + 1] != " ":
			raise FormatError("no single space before the value: %r" % line)
		parts = line[i + 1:].split(" ")
		if len(parts) > 2 or (len(parts) == 2 and not TIMESTAMP.fullmatch(parts[1])):
			raise FormatError("bad value or timestamp: %r" % line)
		value = parse_value(parts[0], line)
		family = name
		if current is not None and current.type == "histogram":
			for s in HISTOGRAM_SUFFIXES:
				if name == current.name + s:
					family = current.name
		if current is None or current.name != family:
			raise FormatError("sample %s is not under its family's HELP and TYPE "
					  "(the lines before are %s's)" % (
						  name, current.name if current else "nobody"))
		if current.help is None or current.type is None:
			raise FormatError("sample of %s before its HELP and TYPE" % family)
		key = (name, tuple(sorted(labels.items())))
		if any((n, tuple(sorted(l.items()))) == key for n, l, _ in current.samples):
			raise FormatError("duplicate series %s%r" % (name, labels))
		current.samples.append((name, labels, value))

	def _check(self, f):
		if f.help is None or f.type is None:
			raise FormatError("family %s without %s" % (f.name, "HELP" if f.help is None else "TYPE"))
		if f.type == "counter":
			if not f.name.endswith("_total"):
				raise FormatError("counter %s does not end in _total" % f.name)
			for n, l, v in f.samples:
				if not v >= 0:
					raise FormatError("counter %s%r is %r" % (n, l, v))
		if f.type != "histogram":
			return
		series = {}
		for n, l, v in f.samples:
			rest = tuple(sorted((k, x) for k, x in l.items() if k != "le"))
			s = series.setdefault(rest, {"buckets": [], "sum": [], "count": []})
			if n == f.name + "_bucket":
				if "le" not in l:
					raise FormatError("%s without le" % n)
				s["buckets"].append((parse_value(l["le"], n), v))
			elif "le" in l:
				raise FormatError("%s with le" % n)
			else:
				s["sum" if n.endswith("_sum") else "count"].append(v)
		for rest, s in series.items():
			b = s["buckets"]
			if len(s["sum"]) != 1 or len(s["count"]) != 1 or not b:
				raise FormatError("histogram %s%r: buckets, one _sum and one _count needed" % (
					f.name, rest))
			if b[-1][0] != float("inf"):
				raise FormatError("histogram %s: the last bucket is not le=\"+Inf\"" % f.name)
			for (le0, c0), (le1, c1) in zip(b, b[1:]):
				if le1 <= le0 or c1 < c0:
					raise FormatError("histogram %s: buckets not cumulative in increasing "
							  "le: %r" % (f.name, b))
			if b[-1][1] != s["count"][0]:
				raise FormatError("histogram %s: +Inf bucket %r, _count %r" % (
					f.name, b[-1][1], s["count"][0]))

	# -- reading ------------------------------------------------------------------
	def family(self, name):
		f = self.families.get(name)
		if f is None:
			raise AssertionError("no family %s in the exposition:\n%s" % (name, self.text))
		return f

	def series(self, name):
		"""{frozenset(labels): value} of family (or histogram sample) name."""
		base = name
		for s in HISTOGRAM_SUFFIXES:
			if name.endswith(s) and name[:-len(s)] in self.families:
				base = name[:-len(s)]
		return {frozenset(l.items()): v for n, l, v in self.family(base).samples if n == name}

	def value(self, name, **labels):
		v = self.series(name).get(frozenset(labels.items()))
		if v is None:
			raise AssertionError("no sample %s%r in the exposition:\n%s" % (
				name, labels, self.text))
		return v

	def has(self, name, **labels):
		return name in self.families and frozenset(labels.items()) in self.series(name)

	def buckets(self, name):
		return [(float(dict(l)["le"]), v) for l, v in self.series(name + "_bucket").items()]


def delta(before, after, name, **labels):
	return after.value(name, **labels) - before.value(name, **labels)


GOOD = """\
# HELP a_total Things, with a \\\\ and a \\n in the help.
# TYPE a_total counter
a_total{x="q\\"uote",y="back\\\\slash",z="new\\nline"} 3
a_total{x="plain"} 0
# TYPE h histogram
# HELP h Sizes.
h_bucket{le="1"} 1
h_bucket{le="2.5"} 3
h_bucket{le="+Inf"} 4
h_sum 7.5
h_count 4
# HELP g A gauge.
# TYPE g gauge
g -1.5e3 1700000000000
"""

BAD = {
	"no final newline": GOOD[:-1],
	"blank line": GOOD.replace("# HELP g", "\n# HELP g"),
	"other comment": GOOD.replace("# HELP g A gauge.", "# a remark"),
	"second HELP": GOOD.replace("# TYPE g gauge", "# TYPE g gauge\n# HELP g again"),
	"second TYPE": GOOD.replace("# TYPE g gauge", "# TYPE g gauge\n# TYPE g gauge"),
	"no TYPE": GOOD.replace("# TYPE g gauge\n", ""),
	"no HELP": GOOD.replace("# HELP g A gauge.\n", ""),
	"HELP after a sample": GOOD.replace("g -1.5e3 1700000000000\n",
					    "g -1.5e3 1700000000000\n# HELP g late\n"),
	"interleaved": GOOD.replace('a_total{x="plain"} 0\n', "") + 'a_total{x="plain"} 0\n',
	"family again": GOOD + "# HELP a_total more\n# TYPE a_total counter\n",
	"sample of another family": GOOD.replace("g -1.5e3", "other 1\ng -1.5e3"),
	"counter without _total": GOOD.replace("a_total", "a"),
	"negative counter": GOOD.replace('{x="plain"} 0', '{x="plain"} -1'),
	"bad escape": GOOD.replace('q\\"uote', "q\\tab"),
	"unterminated label": GOOD.replace('{x="plain"} 0', '{x="plain} 0'),
	"duplicate series": GOOD.replace('{x="plain"} 0', '{x="plain"} 0\na_total{x="plain"} 1'),
	"label twice": GOOD.replace('{x="plain"}', '{x="plain",x="again"}'),
	"bad value": GOOD.replace('{x="plain"} 0', '{x="plain"} 1_0'),
	"two spaces": GOOD.replace('{x="plain"} 0', '{x="plain"}  0'),
	"buckets not cumulative": GOOD.replace('le="2.5"} 3', 'le="2.5"} 0'),
	"bounds not increasing": GOOD.replace('le="2.5"', 'le="0.5"'),
	"no +Inf bucket": GOOD.replace('h_bucket{le="+Inf"} 4\n', ""),
	"+Inf not _count": GOOD.replace("h_count 4", "h_count 5"),
	"no _sum": GOOD.replace("h_sum 7.5\n", ""),
	"bad type": GOOD.replace("# TYPE g gauge", "# TYPE g thing"),
}


def test_metrics_parser_is_strict(t):
	"""The parser the other tests use: it reads a well-formed exposition
	(escapes resolved, timestamps allowed, HELP and TYPE in either order) and
	refuses each fault it is meant to catch."""
	e = Exposition(GOOD)
	assert e.value("a_total", x='q"uote', y="back\\slash", z="new\nline") == 3
	assert e.family("a_total").help == "Things, with a \\ and a \n in the help."
	assert e.value("h_count") == 4 and e.value("g") == -1500
	assert sorted(e.buckets("h")) == [(1, 1), (2.5, 3), (float("inf"), 4)]
	for what, text in BAD.items():
		assert text != GOOD, what
		try:
			Exposition(text)
		except FormatError:
			continue
		raise AssertionError("the parser took an exposition with a fault (%s):\n%s" % (
			what, text))


# -- HTTP ---------------------------------------------------------------------------------

def request(port, path="/metrics", method="GET", body=None, context=None, conn=None):
	"""(status, headers with lower-case names, body) of one request (on conn when
	given, which stays open)."""
	c = conn or (http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
		     if context else http.client.HTTPConnection("127.0.0.1", port, timeout=5))
	try:
		c.request(method, path, body=body)
		r = c.getresponse()
		return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
	finally:
		if conn is None:
			c.close()


def check_reply(status, headers, body):
	assert status == 200, "GET /metrics: %d %r" % (status, body[:300])
	assert headers.get("content-type") == CONTENT_TYPE, headers
	assert int(headers.get("content-length", -1)) == len(body), (headers, len(body))
	return Exposition(body.decode("utf-8"))


def scrape(port, context=None, path="/metrics"):
	"""The parsed exposition of GET /metrics on port (https with context)."""
	return check_reply(*request(port, path, context=context))


def refused_paths(port, context=None):
	"""404 for other paths, 405 for other methods (also with a body)."""
	for path in ("/", "/metricsx", "/metrics/x", "/metric", "/index.html"):
		status = request(port, path, context=context)[0]
		assert status == 404, "GET %s: %d" % (path, status)
	for method, body in (("POST", b"x=1"), ("POST", None), ("PUT", b"{}"), ("DELETE", None)):
		status = request(port, "/metrics", method, body, context=context)[0]
		assert status == 405, "%s /metrics: %d" % (method, status)


# -- brokers ------------------------------------------------------------------------------

class MetricsBroker(TLSBroker):
	"""test_tls's broker (lines of their own under the MQTT and the WebSocket
	listener) with, when http_lines is not None, a third listener "protocol
	http" on http_port, last in the file, with http_lines under it."""

	def __init__(self, extra=(), ws_lines=(), http_lines=None, mqtt_lines=(), name="metrics"):
		TLSBroker.__init__(self, mqtt_lines, ws_lines, extra, name)
		self.http_lines = None if http_lines is None else list(http_lines)
		self.http_port = None

	def config_text(self):
		text = TLSBroker.config_text(self)
		if self.http_lines is None:
			return text
		while self.http_port in (None, self.port, self.ws_port):
			self.http_port = free_port()
		lines = ["listener %d 127.0.0.1" % self.http_port, "protocol http"] + self.http_lines
		return text + "".join(l + "\n" for l in lines)

	def _wait_ready(self):
		TLSBroker._wait_ready(self)
		if self.http_port is not None:
			wait_until(lambda: port_accepts(self.http_port), self.START_TIMEOUT,
				   "the http listener on port %d" % self.http_port)


def metrics_broker(t, extra=(), ws_lines=(), http_lines=None, persistence=False, start=True):
	"""A private MetricsBroker (started unless start is false) that t stops;
	persistence off unless asked."""
	skip_on_mosquitto(ONLY_SLUICE)
	lines = ([] if persistence else ["persistence false"]) + list(extra)
	b = MetricsBroker(lines, ws_lines, http_lines, name=t.short[:30])
	t.brokers.append((b, 0, True))
	if start:
		b.start()
	return b


def plugin_path(name):
	var = PLUGINS[name]
	path = os.environ.get(var)
	if not path:
		raise Skip("%s is not set (the built plugins/%s/.libs/%s.so)" % (var, name, name))
	if not os.path.isfile(path):
		raise Skip("%s=%s does not exist" % (var, path))
	return path


def plugin_broker(t, plugins, extra=()):
	"""plugins: [(name, [option lines])]; each gets a short plugin_opt_sys_interval
	(SYS_FAST)."""
	skip_on_mosquitto(ONLY_SLUICE)
	lines = []
	for name, opts in plugins:
		lines += ["plugin %s" % plugin_path(name)] + list(opts) + [
			SYS_FAST.get(name, "plugin_opt_sys_interval 200ms")]
	return metrics_broker(t, lines + list(extra))


class SysWatch:
	"""An MQTT client subscribed to $SYS/broker/ prefixes, keeping the latest
	payload of each topic."""

	def __init__(self, t, b, *prefixes):
		self.c = t.client(b, version=5)
		self.seen = {}
		for p in prefixes:
			self.c.subscribe("$SYS/broker/%s#" % p, 0)

	def wait(self, want, what, timeout=5.0):
		"""Until every $SYS/broker/KEY of want says its value (str)."""
		def ok():
			for m in self.c.drain():
				self.seen[m.topic[len("$SYS/broker/"):]] = m.payload.decode()
			return all(self.seen.get(k) == v for k, v in want.items())
		wait_until(ok, timeout, "%s on $SYS: want %r, seen %r" % (
			what, want, {k: self.seen.get(k) for k in want}))


def same_on_sys(watch, e, pairs, what):
	"""Each (sys leaf, metric name, labels) says on $SYS what the exposition e says."""
	want = {leaf: "%d" % e.value(name, **labels) for leaf, name, labels in pairs}
	watch.wait(want, what)


# -- raw MQTT with byte counts ------------------------------------------------------------

class Counted:
	"""A raw client (rawmqtt) whose bytes are counted both ways: what the
	broker's bytes_received / bytes_sent must move by."""

	def __init__(self, t, b, client_id, version=5, clean=True, properties=None):
		self.r = t.raw(b, version=version)
		self.sent = self.read = 0
		self.send(R.connect(client_id, version, clean, 60, properties))
		self.expect(R.CONNACK)

	def send(self, data):
		self.sent += len(data)
		self.r.send(data)

	def expect(self, ptype, timeout=5.0):
		p = self.r.expect(ptype, timeout)
		self.read += len(p.to_bytes())
		return p


def persistent_props():
	return [(R.SESSION_EXPIRY, EXPIRY)]


def offline_session(t, b, filters, qos=1, cid=None):
	"""A persistent MQTT 5 session subscribed to filters, then disconnected; its id."""
	cid = cid or t.cid("off")
	r = t.raw(b, version=5)
	r.handshake(cid, clean=False, properties=persistent_props())
	r.send(R.subscribe(1, [(f, qos) for f in filters], version=5))
	codes = r.expect(R.SUBACK).suback()[1]
	assert codes == [qos] * len(filters), codes
	r.send(R.disconnect(version=5))
	r.wait_closed()
	r.close()
	return cid


def publish_all(r, topic, payloads, qos, pid0=1, retain=False):
	"""Publishes each payload and waits for its PUBACK / PUBCOMP; the reason codes."""
	codes = []
	for i, p in enumerate(payloads):
		pid = pid0 + i
		r.send(R.publish(topic, p, qos, retain, pid=pid, version=r.version))
		if qos == 1:
			codes.append(r.expect(R.PUBACK).ack()[1])
		elif qos == 2:
			codes.append(r.expect(R.PUBREC).ack()[1])
			r.send(R.ack(R.PUBREL, pid, r.version))
			r.expect(R.PUBCOMP)
	return codes


def settle(r):
	"""A PINGREQ answered: the broker has handled everything r sent before it."""
	r.send(R.pingreq())
	r.expect(R.PINGRESP)


# -- where /metrics is served --------------------------------------------------------------

def sluice_version():
	out = run_sluice(["--version"]).stdout.decode()
	m = re.match(r"sluice (\S+)", out)
	assert m, out
	return m.group(1)


def check_broker_families(e):
	for name, typ in BROKER_FAMILIES.items():
		assert e.family(name).type == typ, "%s: TYPE %s, README says %s" % (
			name, e.family(name).type, typ)
	for q in "012":
		for name in ("sluice_messages_received_total", "sluice_messages_sent_total",
			     "sluice_payload_bytes_received_total", "sluice_payload_bytes_sent_total"):
			e.value(name, qos=q)
	for cause in DROP_CAUSES:
		e.value("sluice_messages_dropped_total", cause=cause)
	for result in ("accepted", "refused"):
		e.value("sluice_connects_total", result=result)
	for queue in ("session", "group"):
		e.value("sluice_queued_messages", queue=queue)


def test_metrics_on_a_websockets_listener(t):
	"""GET /metrics on the plain broker's websockets listener (no http_dir):
	200, text/plain; version=0.0.4, a strict exposition with every family
	README names, of its type; sluice_build_info{version} is what sluice
	--version says, with value 1; the start time lies between just before
	the start and now. A query string is allowed; two scrapes on one
	keep-alive connection; 404 for other paths and 405 for other methods;
	MQTT over WebSocket on the same listener still works."""
	before = time.time()
	b = metrics_broker(t)
	e = scrape(b.ws_port)
	check_broker_families(e)
	assert e.series("sluice_build_info") == {frozenset({("version", sluice_version())}): 1}, \
		e.series("sluice_build_info")
	start = e.value("sluice_start_time_seconds")
	assert int(before) - 1 <= start <= time.time(), (before, start)
	assert 0 <= e.value("sluice_uptime_seconds") <= time.time() - before + 1
	check_reply(*request(b.ws_port, "/metrics?name[]=sluice_groups"))
	conn = http.client.HTTPConnection("127.0.0.1", b.ws_port, timeout=5)
	try:
		for _ in range(2):
			check_reply(*request(b.ws_port, conn=conn))
	finally:
		conn.close()
	refused_paths(b.ws_port)
	t.check_alive(b, transport="ws")
	scrape(b.ws_port)


def test_metrics_beside_the_status_page_files(t):
	"""A websockets listener with http_dir (web/): / and /status.js are the
	files, byte for byte; /metrics is the exposition, not a file; a missing
	file is 404, POST /metrics 405; MQTT over WebSocket on it still works."""
	web = os.path.join(os.environ.get("SLUICE_SRCDIR", "."), "web")
	if not os.path.exists(os.path.join(web, "index.html")):
		raise Skip("web/index.html not found (SLUICE_SRCDIR unset?)")
	b = metrics_broker(t, ws_lines=["http_dir %s" % os.path.abspath(web)])
	for path, name in (("/", "index.html"), ("/index.html", "index.html"),
			   ("/status.js", "status.js")):
		status, _, body = request(b.ws_port, path)
		with open(os.path.join(web, name), "rb") as f:
			assert status == 200 and body == f.read(), "GET %s: %d, %d bytes" % (
				path, status, len(body))
	check_broker_families(scrape(b.ws_port))
	assert request(b.ws_port, "/no-such-file.html")[0] == 404
	assert request(b.ws_port, "/metrics", "POST", b"x")[0] == 405
	t.check_alive(b, transport="ws")


def assert_no_upgrade(port, protocol):
	try:
		ws = wsclient.WSConn("127.0.0.1", port, protocol=protocol, timeout=5)
	except wsclient.HandshakeError as e:
		return e.status
	except OSError as e:
		return str(e)
	ws.close()
	raise AssertionError("the http listener upgraded a WebSocket (subprotocol %r)" % protocol)


def test_metrics_on_a_protocol_http_listener(t):
	"""protocol http: GET /metrics answers; a WebSocket upgrade is refused with
	the "mqtt" subprotocol, "mqttv3.1" or none; MQTT over TCP gets no CONNACK;
	404 / 405 as on a websockets listener. None of those attempts is counted as
	an MQTT connection or CONNECT; the MQTT listeners are unaffected."""
	b = metrics_broker(t, http_lines=[])
	e0 = scrape(b.http_port)
	check_broker_families(e0)
	for protocol in ("mqtt", "mqttv3.1", None):
		assert_no_upgrade(b.http_port, protocol)
	# test_tls's check of a plain CONNECT sent to a TLS port serves here too
	assert_plain_not_served(t, types.SimpleNamespace(port=b.http_port), "mqtt")
	refused_paths(b.http_port)
	e1 = scrape(b.http_port)
	for name, labels in (("sluice_connections_total", {}),
			     ("sluice_connects_total", {"result": "accepted"}),
			     ("sluice_connects_total", {"result": "refused"}),
			     ("sluice_bytes_received_total", {})):
		assert delta(e0, e1, name, **labels) == 0, (name, labels)
	t.check_alive(b)
	t.check_alive(b, transport="ws")


@param("listener", ["websockets", "http"])
def test_metrics_over_https(t, listener):
	"""A listener with certfile and keyfile serves /metrics over https (the
	certificate checked against the test CA, for 127.0.0.1), 404 and 405
	there too; a plain HTTP request to it gets no exposition."""
	c = certs()
	tls = server_lines(c)
	if listener == "websockets":
		b = metrics_broker(t, ws_lines=tls)
		port = b.ws_port
	else:
		b = metrics_broker(t, http_lines=tls)
		port = b.http_port
	x = ctx(c)
	check_broker_families(scrape(port, context=x))
	refused_paths(port, context=x)
	try:
		status, _, body = request(port)
	except (OSError, http.client.HTTPException):
		pass
	else:
		assert status != 200 and b"sluice_" not in body, \
			"plain HTTP to the https listener: %d %r" % (status, body[:200])
	scrape(port, context=x)


# -- the broker's figures -------------------------------------------------------------------

def test_metrics_connects_and_disconnects(t):
	"""allow_anonymous false and a password file: two good CONNECTs are
	accepted, a wrong password (5.0 and 3.1.1) and an anonymous CONNECT are
	refused; exact deltas of sluice_connects_total{result}, of
	sluice_connections_total, and the gauges (connections, clients connected,
	maximum, sessions); then one client disconnects: sluice_disconnects_total
	+1 and the gauges follow."""
	need_passwd()
	b = metrics_broker(t, ["allow_anonymous false"], start=False)
	path = os.path.join(b.dir, "passwd")
	write_passwd(path, [("alice", "alice-pw"), ("bob", "bob-pw")])
	b.extra.append("password_file %s" % path)
	b.start()
	e0 = scrape(b.ws_port)
	good = []
	for user, pw in (("alice", "alice-pw"), ("bob", "bob-pw")):
		r = t.raw(b, version=5)
		r.send(R.connect(t.cid(user), 5, username=user, password=pw))
		assert r.expect(R.CONNACK).connack()[1] == 0
		good.append(r)
	for version, user, pw, rc in ((5, "alice", "wrong", 0x87), (4, "bob", "wrong", 5),
				      (5, None, None, 0x87)):
		r = t.raw(b, version=version)
		r.send(R.connect(t.cid("bad"), version, username=user, password=pw))
		assert r.expect(R.CONNACK).connack()[1] == rc
		r.wait_closed()
		r.close()
	e1 = scrape(b.ws_port)
	assert delta(e0, e1, "sluice_connects_total", result="accepted") == 2
	assert delta(e0, e1, "sluice_connects_total", result="refused") == 3
	assert delta(e0, e1, "sluice_connections_total") == 5
	assert delta(e0, e1, "sluice_disconnects_total") == 0
	assert e1.value("sluice_clients_connected") == 2
	assert e1.value("sluice_clients_maximum") == 2
	assert e1.value("sluice_sessions") == 2
	# the refused ones linger (half-closed) for up to 2 s before they close
	wait_until(lambda: scrape(b.ws_port).value("sluice_connections") == 2, 5,
		   "sluice_connections 2")
	good[0].send(R.disconnect(version=5))
	good[0].wait_closed()
	wait_until(lambda: scrape(b.ws_port).value("sluice_connections") == 1, 5,
		   "sluice_connections 1")
	e2 = scrape(b.ws_port)
	assert delta(e1, e2, "sluice_disconnects_total") == 1
	assert delta(e1, e2, "sluice_connects_total", result="accepted") == 0
	assert e2.value("sluice_clients_connected") == 1
	assert e2.value("sluice_clients_maximum") == 2
	assert e2.value("sluice_sessions") == 1


SIZES = {0: [0, 10, 200], 1: [1, 1000], 2: [3000, 7]}


def test_metrics_messages_and_bytes_by_qos(t):
	"""Known payload sizes published at QoS 0, 1 and 2 to a QoS 2 subscriber
	(raw clients, MQTT 5): sluice_messages_received_total and _sent_total
	{qos} move by the number of messages, sluice_payload_bytes_* {qos} by
	their payload sizes, sluice_bytes_received_total / _sent_total by exactly
	the bytes the clients wrote / read; sluice_subscriptions is 1. The
	messages received then show on $SYS/broker/messages/received (one
	source)."""
	b = metrics_broker(t)
	tp = t.topic("q")
	sub = Counted(t, b, t.cid("sub"))
	sub.send(R.subscribe(1, [(tp, 2)], version=5))
	sub.expect(R.SUBACK)
	pub = Counted(t, b, t.cid("pub"))
	e0 = scrape(b.ws_port)
	pub.sent = pub.read = sub.sent = sub.read = 0  # the CONNACKs and SUBACK are counted in e0
	pid = 1
	for qos, sizes in sorted(SIZES.items()):
		for n in sizes:
			pub.send(R.publish(tp, b"p" * n, qos, pid=pid, version=5))
			if qos == 1:
				pub.expect(R.PUBACK)
			elif qos == 2:
				pub.expect(R.PUBREC)
				pub.send(R.ack(R.PUBREL, pid, 5))
				pub.expect(R.PUBCOMP)
			p = sub.expect(R.PUBLISH)
			d = p.publish()
			assert d["qos"] == qos and len(d["payload"]) == n, (qos, n, d)
			if qos == 1:
				sub.send(R.ack(R.PUBACK, d["pid"], 5))
			elif qos == 2:
				sub.send(R.ack(R.PUBREC, d["pid"], 5))
				sub.expect(R.PUBREL)
				sub.send(R.ack(R.PUBCOMP, d["pid"], 5))
			pid += 1
	for c in (pub, sub):
		c.send(R.pingreq())
		c.expect(R.PINGRESP)
	e1 = scrape(b.ws_port)
	for qos, sizes in SIZES.items():
		q = str(qos)
		assert delta(e0, e1, "sluice_messages_received_total", qos=q) == len(sizes), q
		assert delta(e0, e1, "sluice_messages_sent_total", qos=q) == len(sizes), q
		assert delta(e0, e1, "sluice_payload_bytes_received_total", qos=q) == sum(sizes), q
		assert delta(e0, e1, "sluice_payload_bytes_sent_total", qos=q) == sum(sizes), q
	got = (delta(e0, e1, "sluice_bytes_received_total"), delta(e0, e1, "sluice_bytes_sent_total"))
	assert got == (pub.sent + sub.sent, pub.read + sub.read), \
		"bytes received/sent %r, the clients wrote %d and read %d" % (
			got, pub.sent + sub.sent, pub.read + sub.read)
	assert e1.value("sluice_subscriptions") == 1
	received = sum(e1.value("sluice_messages_received_total", qos=q) for q in "012")
	SysWatch(t, b, "messages/").wait({"messages/received": "%d" % received},
					 "messages received")


def test_metrics_drops_by_cause(t):
	"""max_queued_messages 2, max_qos0_backlog 64k: 5 QoS 1 messages for an
	offline persistent session queue 2 (sluice_queued_messages{queue=
	"session"} 2) and drop 3 (queue_full; the MQTT 5 publisher hears 0x97);
	4 QoS 0 messages for it are dropped as offline; a QoS 0 message larger
	than a subscriber's Maximum Packet Size as expired_or_too_large; QoS 0
	for a subscriber that does not read beyond the backlog as slow_client,
	and what was not dropped is what it reads. The sum over the causes is
	$SYS/broker/messages/dropped (one source)."""
	b = metrics_broker(t, ["max_queued_messages 2", "max_qos0_backlog 64k"])
	tp = t.topic("drop")
	offline_session(t, b, [tp + "/off"])
	small = t.raw(b, version=5)
	small.handshake(t.cid("small"), properties=[(R.MAXIMUM_PACKET_SIZE, 100)])
	small.send(R.subscribe(1, [(tp + "/big", 0)], version=5))
	small.expect(R.SUBACK)
	pub = t.raw_connected(b, version=5)
	e0 = scrape(b.ws_port)

	codes = publish_all(pub, tp + "/off", [b"q%d" % i for i in range(5)], 1)
	assert codes == [0, 0, 0x97, 0x97, 0x97], codes
	publish_all(pub, tp + "/off", [b"z"] * 4, 0)
	publish_all(pub, tp + "/big", [b"B" * 500], 0)
	settle(pub)
	e1 = scrape(b.ws_port)
	want = {"queue_full": 3, "offline": 4, "expired_or_too_large": 1}
	for cause in DROP_CAUSES:
		assert delta(e0, e1, "sluice_messages_dropped_total", cause=cause) == \
			want.get(cause, 0), cause
	assert e1.value("sluice_queued_messages", queue="session") == 2
	assert small.recv_or_none(0.3) is None

	# slow_client: a subscriber that reads its SUBACK, then nothing
	lazy = socket.socket()
	lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
	lazy.settimeout(5)
	lazy.connect(("127.0.0.1", b.port))
	lr = TLSRaw(lazy, 5)  # rawmqtt's client over the socket made here
	lr.send(R.connect(t.cid("lazy"), 5) + R.subscribe(1, [(tp + "/hose", 0)], version=5))
	lr.expect(R.CONNACK)
	lr.expect(R.SUBACK)
	n, size = 4000, 1000  # 4 MB: beyond the backlog and what the sockets hold (test_limits)
	for i in range(0, n, 200):
		pub.send(b"".join(R.publish(tp + "/hose", b"x" * size, 0, version=5)
				  for _ in range(200)))
	settle(pub)
	e2 = scrape(b.ws_port)
	slow = delta(e1, e2, "sluice_messages_dropped_total", cause="slow_client")
	sent = delta(e1, e2, "sluice_messages_sent_total", qos="0")
	assert slow > 0 and slow + sent == n, "slow_client %d + sent %d, published %d" % (
		slow, sent, n)
	got = 0
	while got < sent:
		p = lr.recv(5)
		assert p.type == R.PUBLISH, p
		got += 1
	assert lr.recv_or_none(0.3) is None
	lazy.close()
	dropped = sum(e2.value("sluice_messages_dropped_total", cause=c) for c in DROP_CAUSES)
	SysWatch(t, b, "messages/").wait({"messages/dropped": "%d" % dropped}, "messages dropped")


def group_of(t, name, flt):
	return "$share/%s/%s" % (name, flt)


def test_metrics_shared_groups(t):
	"""A group whose one member is offline (persistent) queues the QoS 1
	messages for it: sluice_group_queued_messages{group} and
	sluice_queued_messages{queue="group"} 3, sluice_group_members{group} 1,
	as $SYS/broker/groups/{group}/ says. A second group name serves two
	filters, one with two live members and a message waiting (max_inflight
	1), one with a live member that got a QoS 0 message: one series for the
	name, the two filters added up (members 3, queued 1); sluice_groups
	counts the three groups. The first name has a quote and a backslash
	(escaped in the label). When the offline member's session ends, its
	group ends and its 3 messages count as no_group_member, and the name is
	gone from the exposition; the sum of the drops is
	$SYS/broker/messages/dropped."""
	b = metrics_broker(t, ["max_inflight_messages 1"])
	tag = t.tag[-4:]
	off_name, live_name = 'q"g\\%s' % tag, "live%s" % tag
	tp = t.topic("g")
	cid = offline_session(t, b, [group_of(t, off_name, tp + "/off")])
	members = []
	for _ in range(2):
		r = t.raw_connected(b, version=5)
		r.send(R.subscribe(1, [(group_of(t, live_name, tp + "/live"), 1)], version=5))
		r.expect(R.SUBACK)
		members.append(r)
	zero = t.raw_connected(b, version=5)
	zero.send(R.subscribe(1, [(group_of(t, live_name, tp + "/zero"), 0)], version=5))
	zero.expect(R.SUBACK)
	pub = t.raw_connected(b, version=5)
	publish_all(pub, tp + "/off", [b"a", b"b", b"c"], 1)
	# max_inflight_messages 1: the third message waits in the live group's queue
	publish_all(pub, tp + "/live", [b"1", b"2", b"3"], 1, pid0=10)
	publish_all(pub, tp + "/zero", [b"0"], 0)
	assert zero.expect(R.PUBLISH).publish()["payload"] == b"0"
	e = scrape(b.ws_port)
	assert e.value("sluice_group_queued_messages", group=off_name) == 3
	assert e.value("sluice_group_members", group=off_name) == 1
	assert e.value("sluice_group_queued_messages", group=live_name) == 1
	assert e.value("sluice_group_members", group=live_name) == 3
	assert len(e.series("sluice_group_members")) == 2
	assert e.value("sluice_queued_messages", queue="group") == 4
	assert e.value("sluice_groups") == 3
	assert ('group="q\\"g\\\\%s"' % tag) in e.text, "the group's label is not escaped"
	watch = SysWatch(t, b, "groups/")
	watch.wait({"groups/%s/queued" % off_name: "3", "groups/%s/members" % off_name: "1",
		    "groups/%s/members" % live_name: "3", "groups/queued": "4",
		    "groups/count": "3"}, "the groups")

	e0 = scrape(b.ws_port)
	r = t.raw(b, version=5)
	r.handshake(cid, clean=True)  # the old session ends, and with it the group
	settle(r)
	e1 = scrape(b.ws_port)
	assert delta(e0, e1, "sluice_messages_dropped_total", cause="no_group_member") == 3
	assert not e1.has("sluice_group_members", group=off_name), e1.text
	assert e1.value("sluice_groups") == 2
	dropped = sum(e1.value("sluice_messages_dropped_total", cause=c) for c in DROP_CAUSES)
	watch.wait({"groups/count": "2"}, "the group's end")
	SysWatch(t, b, "messages/").wait({"messages/dropped": "%d" % dropped}, "messages dropped")


def test_metrics_retained_messages(t):
	"""sys_interval 0 (no $SYS retained messages): three retained messages,
	then one cleared with an empty retained PUBLISH: sluice_retained_messages
	goes 0, 3, 2."""
	b = metrics_broker(t, ["sys_interval 0"])
	tp = t.topic("r")
	assert scrape(b.ws_port).value("sluice_retained_messages") == 0
	pub = t.raw_connected(b, version=5)
	for i in range(3):
		publish_all(pub, "%s/%d" % (tp, i), [b"keep"], 1, pid0=i + 1, retain=True)
	assert scrape(b.ws_port).value("sluice_retained_messages") == 3
	publish_all(pub, tp + "/1", [b""], 1, pid0=9, retain=True)
	assert scrape(b.ws_port).value("sluice_retained_messages") == 2


@param("persistence", ["true", "false"])
def test_metrics_store_commits(t, persistence):
	"""20 QoS 1 messages for an offline persistent session. Persistence on:
	sluice_store_commits_total grows, both histograms count every commit
	(_count = commits), the batch size's _sum grows by at least the 20
	messages stored, no failed commits, and sluice_messages_stored counts
	what the session holds. Persistence off: the store figures stay 0."""
	on = persistence == "true"
	b = metrics_broker(t, persistence=on)
	tp = t.topic("s")
	offline_session(t, b, [tp])
	pub = t.raw_connected(b, version=5)
	e0 = scrape(b.ws_port)
	publish_all(pub, tp, [b"m%d" % i for i in range(20)], 1)
	e1 = scrape(b.ws_port)
	for e in (e0, e1):
		commits = e.value("sluice_store_commits_total")
		assert e.value("sluice_store_commit_seconds_count") == commits
		assert e.value("sluice_store_commit_batch_size_count") == commits
		assert e.value("sluice_store_commit_batch_size_sum") >= commits
		assert e.value("sluice_store_failed_commits_total") == 0
	assert e1.value("sluice_messages_stored") >= 20
	assert e1.value("sluice_queued_messages", queue="session") == 20
	grew = delta(e0, e1, "sluice_store_commits_total")
	ops = delta(e0, e1, "sluice_store_commit_batch_size_sum")
	if on:
		# each PUBACK waits for the commit of its message: at least one commit each
		assert grew >= 20 and ops >= 20, (grew, ops)
		assert delta(e0, e1, "sluice_store_commit_seconds_sum") > 0
	else:
		assert e1.value("sluice_store_commits_total") == 0 and ops == 0
		assert all(c == 0 for _, c in e1.buckets("sluice_store_commit_seconds"))


# -- the plugins' figures, on /metrics and on $SYS --------------------------------------------

def test_metrics_delayed(t):
	"""A message for $delayed/30/...: sluice_delayed_pending 1,
	sluice_delayed_scheduled_total 1, released/cancelled/rejected 0,
	sluice_delayed_next_due_ms 30 s after the publish (wall clock, ms; bounded
	by the times before and after it); $SYS/broker/delayed/pending, scheduled,
	next, ... say the same, to the millisecond."""
	b = plugin_broker(t, [("delayed", ["plugin_opt_max 60"])])
	watch = SysWatch(t, b, "delayed/")
	r = t.raw_connected(b, version=5)
	t0 = int(time.time() * 1000)
	publish_all(r, "$delayed/30/" + t.topic("d"), [b"later"], 1)
	t1 = int(time.time() * 1000) + 1
	e = scrape(b.ws_port)
	want = {"pending": 1, "scheduled_total": 1, "released_total": 0, "cancelled_total": 0,
		"rejected_total": 0}
	for k, v in want.items():
		assert e.value("sluice_delayed_" + k) == v, k
	due = e.value("sluice_delayed_next_due_ms")
	assert t0 + 30000 <= due <= t1 + 30000, (t0, due, t1)
	leaves = [("delayed/" + k.replace("_total", ""), "sluice_delayed_" + k, {}) for k in want]
	same_on_sys(watch, e, leaves + [("delayed/next", "sluice_delayed_next_due_ms", {})],
		    "the delayed figures")


def test_metrics_txn(t):
	"""A half message opens a transaction: sluice_txn_open 1 and
	$SYS/broker/txn/open 1; its commit: open 0, committed_total 1, on both."""
	b = plugin_broker(t, [("txn", ["plugin_opt_check_after 1h"])])
	watch = SysWatch(t, b, "txn/")
	r = t.raw_connected(b, version=5)
	tid = t.cid("tx")
	publish_all(r, "$txn/half/%s/%s" % (tid, t.topic("t")), [b"h"], 1)
	e = scrape(b.ws_port)
	assert e.value("sluice_txn_open") == 1
	assert e.value("sluice_txn_committed_total") == 0
	assert e.value("sluice_txn_oldest_open_ms") >= 0
	pairs = [("txn/open", "sluice_txn_open", {}),
		 ("txn/committed", "sluice_txn_committed_total", {}),
		 ("txn/rolled_back", "sluice_txn_rolled_back_total", {}),
		 ("txn/discarded", "sluice_txn_discarded_total", {})]
	same_on_sys(watch, e, pairs, "an open transaction")
	publish_all(r, "$txn/commit/" + tid, [b""], 1, pid0=2)
	e = scrape(b.ws_port)
	assert e.value("sluice_txn_open") == 0 and e.value("sluice_txn_committed_total") == 1
	assert e.value("sluice_txn_oldest_open_ms") == 0
	same_on_sys(watch, e, pairs, "a committed transaction")


def test_metrics_retry(t):
	"""A delivery refused with PUBACK 0x80 (back-off 1 h): sluice_retry_pending
	1, retried 0, as $SYS/broker/retry/ says."""
	b = plugin_broker(t, [("retry", ["plugin_opt_backoff 1h"])])
	watch = SysWatch(t, b, "retry/")
	tp = t.topic("job")
	sub = t.raw_connected(b, version=5)
	sub.send(R.subscribe(1, [(tp, 1)], version=5))
	sub.expect(R.SUBACK)
	publish_all(t.raw_connected(b, version=5), tp, [b"job"], 1)
	d = sub.expect(R.PUBLISH).publish()
	sub.send(R.ack(R.PUBACK, d["pid"], 5, reason=0x80))
	settle(sub)
	e = scrape(b.ws_port)
	assert e.value("sluice_retry_pending") == 1
	assert e.value("sluice_retry_retried_total") == 0
	same_on_sys(watch, e, [("retry/" + leaf, "sluice_retry_" + name, {}) for leaf, name in (
		("pending", "pending"), ("retried", "retried_total"),
		("dead_lettered", "dead_lettered_total"), ("dlq_waiting", "dlq_waiting"))],
		"a pending retry")


def test_metrics_ordered_filters(t):
	"""Two ordered filters, the first with a quote and a backslash in it: a
	subscriber that holds the PUBACK of a key's first message leaves the
	second waiting: sluice_ordered_keys 1, waiting 1, and per filter
	sluice_ordered_filter_keys / _waiting {filter} 1 for the first (the
	label, unescaped, is the filter as configured), 0 for the second; the
	same on $SYS/broker/ordered/ and ordered/filter/N/, whose filter topic
	holds the filter's text."""
	base = t.topic("o")
	odd = base + '/q"b\\s/#'
	plain = base + "/plain/#"
	b = plugin_broker(t, [("ordered", ["plugin_opt_keyed %s" % odd,
					   "plugin_opt_global %s" % plain])])
	watch = SysWatch(t, b, "ordered/")
	tp = base + '/q"b\\s/k1'
	sub = t.raw_connected(b, version=5)
	sub.send(R.subscribe(1, [(base + "/#", 1)], version=5))
	sub.expect(R.SUBACK)
	pub = t.raw_connected(b, version=5)
	publish_all(pub, tp, [b"1", b"2"], 1)
	first = sub.expect(R.PUBLISH).publish()
	assert first["payload"] == b"1" and sub.recv_or_none(0.3) is None
	e = scrape(b.ws_port)
	assert e.value("sluice_ordered_keys") == 1 and e.value("sluice_ordered_waiting") == 1
	assert e.value("sluice_ordered_filter_keys", filter=odd) == 1
	assert e.value("sluice_ordered_filter_waiting", filter=odd) == 1
	assert e.value("sluice_ordered_filter_keys", filter=plain) == 0
	assert e.value("sluice_ordered_filter_moved_total", filter=plain) == 0
	escaped = odd.replace("\\", "\\\\").replace('"', '\\"')
	assert 'sluice_ordered_filter_keys{filter="%s"} 1' % escaped in e.text
	watch.wait({"ordered/filter/1/filter": odd, "ordered/filter/2/filter": plain},
		   "the filters' texts")
	pairs = [("ordered/keys", "sluice_ordered_keys", {}),
		 ("ordered/waiting", "sluice_ordered_waiting", {}),
		 ("ordered/moved", "sluice_ordered_moved_total", {})]
	for i, f in ((1, odd), (2, plain)):
		for leaf, name in (("keys", "keys"), ("waiting", "waiting"), ("moved", "moved_total")):
			pairs.append(("ordered/filter/%d/%s" % (i, leaf),
				      "sluice_ordered_filter_" + name, {"filter": f}))
	same_on_sys(watch, e, pairs, "a waiting key")
	sub.send(R.ack(R.PUBACK, first["pid"], 5))
	second = sub.expect(R.PUBLISH).publish()
	assert second["payload"] == b"2"
	sub.send(R.ack(R.PUBACK, second["pid"], 5))
	settle(sub)
	e = scrape(b.ws_port)
	assert e.value("sluice_ordered_keys") == 0 and e.value("sluice_ordered_waiting") == 0
	same_on_sys(watch, e, pairs, "the key done")


def test_metrics_every_plugin_in_one_exposition(t):
	"""delayed, txn, retry and ordered loaded together: one strict exposition
	with the broker's families first, then each plugin's, none interleaved."""
	b = plugin_broker(t, [("delayed", []), ("txn", []), ("retry", []),
			      ("ordered", ["plugin_opt_keyed %s/#" % t.topic("o")])])
	e = scrape(b.ws_port)
	check_broker_families(e)
	names = list(e.families)
	last_broker = max(names.index(n) for n in BROKER_FAMILIES)
	for plugin, families in PLUGIN_FAMILIES.items():
		for f in families:
			assert names.index(f) > last_broker, (f, names)
			assert e.family(f).type == ("counter" if f.endswith("_total") else "gauge"), f


@timeout(40)
@param("scheme", ["http", "https"])
def test_metrics_large_exposition(t, scheme):
	"""600 shared groups, each with a message waiting for its offline member:
	an exposition well over the 16 kB the broker writes per turn, whole
	(Content-Length), strict, every group with its queue of 1, over http and
	https."""
	c = certs() if scheme == "https" else None
	b = metrics_broker(t, http_lines=server_lines(c) if c else [])
	n, tp = 600, t.topic("many")
	r = t.raw(b, version=5)
	cid = t.cid("many")
	r.handshake(cid, clean=False, properties=persistent_props())
	for i in range(0, n, 100):
		r.send(R.subscribe(i // 100 + 1, [(group_of(t, "g%04d" % j, "%s/%d" % (tp, j)), 1)
						   for j in range(i, i + 100)], version=5))
		r.expect(R.SUBACK)
	r.send(R.disconnect(version=5))
	r.wait_closed()
	pub = t.raw_connected(b, version=5)
	for j in range(n):
		publish_all(pub, "%s/%d" % (tp, j), [b"w"], 1, pid0=j + 1)
	status, headers, body = request(b.http_port, context=ctx(c) if c else None)
	assert len(body) > 3 * 16384, len(body)
	e = check_reply(status, headers, body)
	assert e.value("sluice_groups") == n
	assert e.value("sluice_queued_messages", queue="group") == n
	queued = e.series("sluice_group_queued_messages")
	assert len(queued) == n and set(queued.values()) == {1}, len(queued)
	assert set(e.series("sluice_group_members").values()) == {1}
