"""per_listener_settings true: each listener has its own allow_anonymous,
password_file and acl_file, as in mosquitto.

The contract.  per_listener_settings (global, before any listener or
security line) makes the allow_anonymous, password_file and acl_file lines
that follow a listener line that listener's.  A client is checked against
the listener it connected to: its CONNECT, its PUBLISHes, its SUBSCRIBEs and
every delivery to it.  Here the MQTT listener lets anonymous clients in and
has no ACL; the WebSocket listener needs a password from its own file and
grants alice only w/#.  The same answers are expected from Debian's
mosquitto 2.0.11 with the same file (these tests run against it too).
"""

import os
import subprocess

import brokerlib
import rawmqtt as R
from harness import Skip
from test_acl import raw_publish, raw_subscribe, write_acl
from test_auth import ALICE_PW, need_passwd, write_passwd


class PerListenerBroker(brokerlib.Broker):
	"""A broker with per_listener_settings true, mqtt_lines under its MQTT
	listener (port) and ws_lines under its WebSocket one (ws_port)."""

	def __init__(self, mqtt_lines, ws_lines, name="perlistener"):
		brokerlib.Broker.__init__(self, [], name)
		self.mqtt_lines = list(mqtt_lines)
		self.ws_lines = list(ws_lines)

	def config_text(self):
		log = ["log_type all", "log_dest stderr"] if self.kind == "mosquitto" else \
			["log_type debug"]
		lines = ["per_listener_settings true", "sys_interval 1"] + log
		lines += ["listener %d 127.0.0.1" % self.port] + self.mqtt_lines
		lines += ["listener %d 127.0.0.1" % self.ws_port, "protocol websockets"]
		lines += self.ws_lines
		return "\n".join(lines) + "\n"


def per_listener_broker(t):
	"""MQTT listener: anonymous, no ACL.  WebSocket listener: alice with her
	password, ACL granting her w/#."""
	need_passwd()
	b = PerListenerBroker([], [], name=t.short[:30])
	t.brokers.append((b, 0, True))
	pw, acl = os.path.join(b.dir, "passwd"), os.path.join(b.dir, "acl")
	write_passwd(pw, [("alice", ALICE_PW)])
	write_acl(acl, "user alice\ntopic readwrite w/#\n")
	b.mqtt_lines = ["allow_anonymous true"]
	b.ws_lines = ["allow_anonymous false", "password_file %s" % pw, "acl_file %s" % acl]
	b.start()
	return b


def connect(t, b, transport, username=None, password=None, version=5):
	"""A raw connection and its CONNACK code (the connection when accepted)."""
	r = t.raw(b, transport=transport, version=version)
	r.send(R.connect(t.cid(), version, username=username, password=password))
	_, rc, _ = r.expect(R.CONNACK).connack()
	return r, rc


def test_per_listener_anonymous_only_where_allowed(t):
	b = per_listener_broker(t)
	for version, refused in ((5, 0x87), (4, 5)):
		_, rc = connect(t, b, "tcp", version=version)
		assert rc == 0, "anonymous on the MQTT listener: 0x%02x" % rc
		_, rc = connect(t, b, "ws", version=version)
		assert rc == refused, "anonymous on the WebSocket listener: 0x%02x" % rc


def test_per_listener_password_file_of_its_listener(t):
	b = per_listener_broker(t)
	_, rc = connect(t, b, "ws", "alice", ALICE_PW)
	assert rc == 0, "alice on the WebSocket listener: 0x%02x" % rc
	_, rc = connect(t, b, "ws", "alice", ALICE_PW + "x")
	assert rc == 0x87, "wrong password on the WebSocket listener: 0x%02x" % rc
	# the MQTT listener has no password file and lets everyone in (mosquitto 2)
	_, rc = connect(t, b, "tcp", "alice", "anything")
	assert rc == 0, "any username on the MQTT listener: 0x%02x" % rc


def test_per_listener_acl_of_its_listener(t):
	b = per_listener_broker(t)
	alice, rc = connect(t, b, "ws", "alice", ALICE_PW)
	assert rc == 0
	assert raw_publish(alice, "x/1", b"no", 1, 1) == 0x87, "alice may not write x/1"
	# allowed: 0x10, no matching subscribers
	assert raw_publish(alice, "w/1", b"yes", 1, 2) == 0x10, "alice may write w/1"
	anon, rc = connect(t, b, "tcp")
	assert rc == 0
	assert raw_publish(anon, "x/1", b"free", 1, 1) == 0x10, "no ACL on the MQTT listener"


def test_per_listener_deliveries_checked_with_the_subscribers_listener(t):
	b = per_listener_broker(t)
	alice, _ = connect(t, b, "ws", "alice", ALICE_PW)
	assert raw_subscribe(alice, ["#"], qos=1) == [1]
	reader, _ = connect(t, b, "tcp")
	assert raw_subscribe(reader, ["#"], qos=1) == [1]
	anon, _ = connect(t, b, "tcp")
	for i, topic in enumerate(("x/2", "w/2", "x/3")):
		raw_publish(anon, topic, topic.encode(), 1, i + 1)
	raw_publish(anon, "w/end", b"end", 1, 9)
	got = []
	while True:
		d = alice.expect(R.PUBLISH, 5).publish()
		if d.get("qos"):
			alice.send(R.puback(d["pid"], 5))
		got.append(d["topic"])
		if d["topic"] == "w/end":
			break
	assert got == ["w/2", "w/end"], "alice read only w/# (her listener's ACL): %r" % got
	seen = []
	while len(seen) < 4:
		d = reader.expect(R.PUBLISH, 5).publish()
		if d.get("qos"):
			reader.send(R.puback(d["pid"], 5))
		seen.append(d["topic"])
	assert sorted(seen) == ["w/2", "w/end", "x/2", "x/3"], "no ACL on the MQTT listener: %r" % seen


def test_per_listener_settings_after_a_listener_stops_start_up(t):
	if brokerlib.broker_kind() == "mosquitto":
		raise Skip("mosquitto takes the line anywhere")
	b = brokerlib.Broker(["per_listener_settings true"], name=t.short[:30])
	t.brokers.append((b, 0, True))
	b.port, b.ws_port = brokerlib.free_port(), brokerlib.free_port()
	with open(b.conf_path, "w") as f:
		f.write(b.config_text())
	r = subprocess.run([b.binary, "-c", b.conf_path], capture_output=True, text=True,
			   timeout=10)
	assert r.returncode != 0
	assert "per_listener_settings: must come before the first listener" in r.stderr, r.stderr
	assert "broker.conf:" in r.stderr, r.stderr
