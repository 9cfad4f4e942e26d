"""Consumer retry and dead letters (plugins/retry): the MQTT-facing contract of
DESIGN.md ("Shared groups, backlog, retry and dead letters").

Each test starts its own sluice with the retry plugin loaded (short back-off
steps, plugin_opt_sys_interval 1) and checks what clients see: an MQTT 5
subscriber that answers a PUBLISH with a PUBACK reason code >= 0x80 gets the
message again after the back-off step (never before), with user property
delivery-count 2, 3, ...; after max_attempts refusals the message is
published on $DLQ/{client id or group}/{topic} with original-topic,
delivery-count, reason-code and consumer; a shared group's retry goes to
the group (so to either member); a dead letter nobody subscribed to waits
for its first subscriber; pending retries survive SIGTERM and SIGKILL with
their due times; the $SYS/broker/retry/ counters; a bad option stops
start-up.

The subscribers that refuse are raw clients (rawmqtt): paho 1.6 cannot send a
PUBACK with a reason code. Needs SLUICE_RETRY_PLUGIN, the built
plugins/retry/.libs/retry.so (make check sets it); without it every test is
skipped, saying why.

Timing: a retry is checked against the client's monotonic clock taken when
the refusal was sent, so "not before its back-off" cannot pass by luck;
EARLY allows for the broker's wall clock having millisecond resolution.
"""

import os
import time

import brokerlib
import rawmqtt as R
from harness import Skip, param, timeout, wait_until
from test_persistence import bounce

PLUGIN = os.environ.get("SLUICE_RETRY_PLUGIN")
LATE = 1.5  # seconds a retry may come after its back-off
EARLY = 0.005  # clock resolution allowance
EXPIRY = 3600  # session expiry of persistent subscribers


def retry_broker(t, extra=(), backoff="200ms,400ms", attempts=None):
	if brokerlib.is_mosquitto():
		raise Skip("consumer retry is a sluice plugin (INTEG_BROKER=mosquitto)")
	if not PLUGIN:
		raise Skip("SLUICE_RETRY_PLUGIN is not set (the built plugins/retry/.libs/retry.so)")
	if not os.path.isfile(PLUGIN):
		raise Skip("SLUICE_RETRY_PLUGIN=%s does not exist" % PLUGIN)
	lines = ["plugin %s" % PLUGIN, "plugin_opt_backoff %s" % backoff,
		 "plugin_opt_sys_interval 1"]
	if attempts:
		lines.append("plugin_opt_max_attempts %d" % attempts)
	return t.broker(lines + list(extra))


def subscriber(t, b, filt, cid=None, clean=True, version=5):
	"""A raw MQTT 5 subscriber at QoS 1 (persistent when not clean)."""
	r = t.raw(b, version=version)
	pr = None if clean else [(R.SESSION_EXPIRY, EXPIRY)]
	r.handshake(cid or t.cid("s"), clean=clean, properties=pr)
	if filt:
		r.send(R.subscribe(1, [(filt, 1)], version=version))
		_, codes = r.expect(R.SUBACK).suback()
		assert codes == [1], "SUBACK %r" % codes
	return r


def publish(t, b, topic, payload=b"job", props=None):
	"""One QoS 1 message from a raw MQTT 5 publisher (PUBACK awaited)."""
	p = t.raw_connected(b, version=5)
	p.send(R.publish(topic, payload, 1, pid=1, version=5, properties=props))
	rc = p.expect(R.PUBACK).ack()[1]
	assert rc in (0, 0x10), "PUBACK 0x%02x" % rc
	p.close()


def receive(r, timeout=5.0):
	"""The next PUBLISH (decoded, with user properties as a dict and the receipt time)."""
	p = r.expect(R.PUBLISH, timeout)
	d = p.publish()
	d["at"] = time.monotonic()
	d["user"] = R.prop_all(d["props"], R.USER_PROPERTY)
	d["ud"] = dict(d["user"])
	return d


def answer(r, d, reason):
	"""PUBACK with reason (0 accepts, >= 0x80 refuses); returns when it was sent."""
	r.send(R.ack(R.PUBACK, d["pid"], 5, reason=reason))
	return time.monotonic()


def nothing(r, wait=0.7):
	p = r.recv_or_none(wait)
	assert p is None or p.type != R.PUBLISH, "unexpected %r" % p


def check_after(d, t0, step):
	got = d["at"] - t0
	assert got >= step - EARLY, "retried after %.3fs, before its back-off of %.3fs" % (got, step)
	assert got <= step + LATE, "retried after %.3fs, %.3fs late" % (got, got - step)


# --- retry ---------------------------------------------------------------------------

def test_retry_success_on_third_attempt(t):
	b = retry_broker(t)
	tp = t.topic("job")
	r = subscriber(t, b, tp)
	publish(t, b, tp, b"work", [(R.USER_PROPERTY, ("trace", "7"))])
	d = receive(r)
	assert d["payload"] == b"work" and "delivery-count" not in d["ud"], d
	t0 = answer(r, d, 0x80)
	d = receive(r, 0.2 + LATE + 1)
	check_after(d, t0, 0.2)
	assert d["topic"] == tp and d["payload"] == b"work" and d["qos"] == 1 and not d["retain"]
	# Every other user property kept, in order; delivery-count appended.
	assert d["user"] == [("trace", "7"), ("delivery-count", "2")], d["user"]
	t0 = answer(r, d, 0x80)
	d = receive(r, 0.4 + LATE + 1)
	check_after(d, t0, 0.4)
	assert d["user"] == [("trace", "7"), ("delivery-count", "3")], d["user"]
	answer(r, d, 0)
	nothing(r, 1.0)  # accepted: no more attempts
	t.check_alive(b)


def test_retry_last_step_repeats_then_dead_letter(t):
	b = retry_broker(t, backoff="200ms", attempts=3)
	tp = t.topic("dlq")
	cid = t.cid("refuser")
	watch = t.client(b, version=5)
	watch.subscribe("$DLQ/%s/#" % cid, 1)
	r = subscriber(t, b, tp, cid)
	publish(t, b, tp, b"poison")
	since = b.log_size()
	d = receive(r)
	for want, reason in (("2", 0x80), ("3", 0x80)):
		t0 = answer(r, d, reason)
		d = receive(r, 0.2 + LATE + 1)
		check_after(d, t0, 0.2)
		assert d["ud"]["delivery-count"] == want, d["user"]
	answer(r, d, 0x87)  # the third refusal, with another code
	m = watch.wait_message(3, "(dead letter)")
	assert m.topic == "$DLQ/%s/%s" % (cid, tp), m.topic
	assert m.payload == b"poison"
	ud = dict(m.properties.UserProperty)
	assert ud == {"original-topic": tp, "delivery-count": "3", "reason-code": "0x87",
		      "consumer": cid}, ud
	nothing(r, 1.0)  # no fourth attempt
	assert b.wait_log(r"retry: '%s' refused '%s' 3 time\(s\), last with 0x87" % (cid, tp), 3,
			  since)


def test_retry_shared_group(t):
	b = retry_broker(t, attempts=2)
	tp = t.topic("grp")
	group = "g%s" % t.tag[-6:]
	filt = "$share/%s/%s/#" % (group, tp)
	watch = t.client(b, version=5)
	watch.subscribe("$DLQ/%s/#" % group, 1)
	cids = [t.cid("m%d" % i) for i in range(2)]
	members = [subscriber(t, b, filt, cid) for cid in cids]
	publish(t, b, tp + "/x", b"shared")

	def next_publish(timeout):
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			for i, r in enumerate(members):
				p = r.recv_or_none(0.05)
				if p is not None and p.type == R.PUBLISH:
					d = p.publish()
					d["ud"] = dict(R.prop_all(d["props"], R.USER_PROPERTY))
					return i, d
		raise AssertionError("no member got the message within %.1fs" % timeout)

	i, d = next_publish(5)
	assert "delivery-count" not in d["ud"]
	members[i].send(R.ack(R.PUBACK, d["pid"], 5, reason=0x80))
	j, d = next_publish(0.2 + LATE + 1)  # to the group: either member
	assert d["ud"]["delivery-count"] == "2" and d["payload"] == b"shared", d
	members[j].send(R.ack(R.PUBACK, d["pid"], 5, reason=0x83))
	m = watch.wait_message(3, "(the group's dead letter)")
	assert m.topic == "$DLQ/%s/%s/x" % (group, tp), m.topic
	ud = dict(m.properties.UserProperty)
	assert ud["delivery-count"] == "2" and ud["reason-code"] == "0x83", ud
	assert ud["original-topic"] == tp + "/x"
	assert ud["consumer"] == cids[j], (ud, cids, j)  # the member that refused last
	for r in members:
		nothing(r, 0.3)


def test_retry_dead_letter_waits_for_first_subscriber(t):
	b = retry_broker(t, attempts=1)
	tp = t.topic("late")
	cid = t.cid("refuser")
	r = subscriber(t, b, tp, cid)
	publish(t, b, tp, b"kept")
	answer(r, receive(r), 0x80)
	dlq = "$DLQ/%s/%s" % (cid, tp)
	assert b.wait_log(r"dead letter on '%s', waiting" % dlq.replace("$", r"\$"), 3)
	time.sleep(0.3)
	# Nobody subscribed when it was published: it waits for the first subscriber.
	late = t.client(b, version=5)
	late.subscribe("$DLQ/%s/#" % cid, 1)
	m = late.wait_message(3, "(waiting dead letter)")
	assert m.topic == dlq and m.payload == b"kept"
	assert dict(m.properties.UserProperty)["delivery-count"] == "1"
	# Handed over once: a second subscriber gets nothing.
	later = t.client(b, version=5)
	later.subscribe("$DLQ/%s/#" % cid, 1)
	later.expect_no_message(0.7)
	late.expect_no_message(0.3)


# --- durability ----------------------------------------------------------------------

@timeout(40)
@param("how", ["sigterm", "sigkill"])
def test_retry_survives_restart(t, how):
	b = retry_broker(t, backoff="3s")
	tp = t.topic("dur")
	cid = t.cid("dursub")
	r = subscriber(t, b, tp, cid, clean=False)
	publish(t, b, tp, b"again")
	t0 = answer(r, receive(r), 0x80)
	# The refusal's writes are committed with the broker's own (group commit): give it a moment.
	time.sleep(0.3)
	r.close()
	bounce(b, how)
	r = subscriber(t, b, None, cid, clean=False)
	d = receive(r, 3 + LATE + 3)
	check_after(d, t0, 3)
	assert d["payload"] == b"again" and d["ud"]["delivery-count"] == "2", d
	answer(r, d, 0)
	nothing(r, 1.0)


# --- $SYS and options ------------------------------------------------------------------

def test_retry_sys_counters(t):
	b = retry_broker(t, backoff="3s", attempts=2)  # pending long enough to be seen
	tp = t.topic("sys")
	watch = t.client(b, version=5)
	watch.subscribe("$SYS/broker/retry/#", 0)
	r = subscriber(t, b, tp)
	seen = {}

	def values(want):
		for m in watch.drain():
			seen[m.topic.rsplit("/", 1)[1]] = m.payload.decode()
		return all(seen.get(k) == v for k, v in want.items())

	publish(t, b, tp, b"a")
	answer(r, receive(r), 0x80)
	wait_until(lambda: values({"pending": "1", "retried": "0"}), 2.5, "pending 1")
	d = receive(r, 3 + LATE + 1)
	assert d["ud"]["delivery-count"] == "2"
	wait_until(lambda: values({"pending": "0", "retried": "1"}), 3, "retried 1")
	answer(r, d, 0x80)  # the second refusal: to the dead letters, with nobody subscribed
	wait_until(lambda: values({"pending": "0", "retried": "1", "dead_lettered": "1",
				   "dlq_waiting": "1"}), 3, "dead lettered")


@param("line", ["plugin_opt_backoff 1s,,2s", "plugin_opt_max_attempts 0",
		"plugin_opt_dlq_retention forever", "plugin_opt_bogus 1"])
def test_retry_bad_option_stops_start(t, line):
	if brokerlib.is_mosquitto() or not PLUGIN or not os.path.isfile(PLUGIN):
		raise Skip("needs sluice and SLUICE_RETRY_PLUGIN")
	b = brokerlib.Broker(["plugin %s" % PLUGIN, line], name=t.short[:30])
	t.brokers.append((b, 0, True))
	rc = brokerlib.start_failure(b, "sluice started with %r" % line)
	assert rc != 0, "exit status 0 although start-up failed"
	name = line.split()[0]
	assert name in b.log_text(), "no log line naming %s:\n%s" % (name, b.log_text())
