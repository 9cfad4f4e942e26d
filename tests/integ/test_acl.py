"""ACL files (acl_file), as mosquitto 2.0.11 reads and applies them.

The contract.  acl_file PATH is a global directive.  The file holds
"topic [read|write|readwrite|deny] FILTER" lines (no access word:
readwrite), "user NAME" lines that open a user's section, "pattern
[read|write|readwrite|deny] FILTER" lines where %c stands for the client id
and %u for the username, and '#' comments.  Topic lines before the first
user line are for anonymous clients (no username) and for them only; pattern
lines are for every client wherever they stand, but one with %u never for an
anonymous client.  What the file does not grant is denied.  A deny line wins
over the grants of its own kind (a user's or the anonymous topic lines;
pattern lines); a filter whose first level is a wildcard grants no topic
starting with '$' ("#" does not grant $SYS).

A denied PUBLISH is answered PUBACK / PUBREC 0x87 (MQTT 5) or acknowledged
as usual (3.1.1), and dropped; at QoS 0 it is dropped silently; the
connection stays open.  Read access is checked at every delivery, retained
messages included.  A will is accepted at CONNECT and checked (write) when it
is published.  sluice, beyond mosquitto (which grants every SUBSCRIBE and
filters only on delivery), refuses a SUBSCRIBE filter of which the client
may read nothing with SUBACK 0x87 / 0x80; a filter that overlaps a read grant
is granted.  A bad line or a missing file stops start-up; sluice's log names
PATH:LINE of the ACL file and the FILE:LINE of the acl_file directive.  SIGHUP
reloads the file, for the connections already open too; a file that fails to
load at SIGHUP leaves the old one in force (sluice).  $delayed/SECONDS/TOPIC
needs write access to TOPIC and the released message goes only to readers
of TOPIC; the delayed plugin's $SYS counters only to readers of them.

Measured on Debian's mosquitto 2.0.11 with the ACL below (ACL).  A denied
QoS 1 / 2 PUBLISH is answered "40 02 ID" / "50 02 ID" at 3.1.1 (PUBREL,
PUBCOMP follow as usual) and "40 03 ID 87" / "50 03 ID 87" at 5.0 (no
PUBREL); an allowed one 0 (0x10 at QoS 1 when nobody subscribes); a denied
QoS 0 one is dropped; nothing denied reaches a subscriber and the
connection stays open every time.  Where "deny lines win" meets its order
of evaluation, mosquitto reads a user's (or the anonymous) topic lines
first, deny lines before grants, and the first that matches decides;
pattern lines are read only when no topic line matched, so a user's topic
grant beats a deny pattern (alice keeps acl/alice/locked under "pattern
deny acl/%u/locked", root writes and reader (read #) reads acl/any/deny under "pattern deny
acl/any/deny").  With no access word the filter is the one word after
"topic"; after an access word it is the rest of the line, spaces included.
Patterns grant nothing to a client whose id holds '+' or '#'.  Every
SUBSCRIBE is granted (SUBACK: the QoS asked for), filters never checked.  A
will on a denied topic: CONNACK 0 (3.1.1 "20 02 00 00"), the will not
published.  Every line of BAD_LINES stops start-up with exit status 3 and
'Error: Invalid topic access type "sometimes" in acl_file "PATH".' (or
'Invalid line in acl_file "PATH": frobnicate.', 'Invalid ACL topic',
'Empty topic', 'Missing username'), then 'Error opening acl file "PATH".',
with no line number; a missing file exits with status 13 ('Error: Unable to
open acl_file "PATH".').  At start-up it does not fail open; at SIGHUP it
does (SIGHUP_BAD_MOSQUITTO).

Every test runs a private broker with "allow_anonymous true", a password
file (mosquitto_passwd -c -b) for alice, bob, carol (a user with no section
of her own), reader (read #) and root (readwrite #, read $SYS/#) and the
ACL file, both written into the broker's directory (removed with it).  A
publish outcome is seen by root subscribed to acl/# and $SYS/acl/#: the
test publishes every case, then root publishes a marker, and what root got
before the marker (and during QUIET after it) is compared with the table.
Tests of SUBACK codes for filters the client may read nothing of, of
PATH:LINE in the log, of a bad reload and of the delayed plugin are sluice
only.
"""

import os
import re
import time

import brokerlib
import rawmqtt as R
from clients import QUIET, get_message, get_messages
from harness import Skip, is_mosquitto, param, skip_on_mosquitto, timeout, wait_until
from test_auth import hup, hup_expecting_complaint, need_passwd, new_broker, write_passwd

DELAYED_PLUGIN = os.environ.get("SLUICE_DELAYED_PLUGIN")

# name -> (username or None, password)
CREDS = {
	"anon": (None, None),
	"alice": ("alice", "alice-acl-pw"),
	"bob": ("bob", "bob-acl-pw"),
	"carol": ("carol", "carol-acl-pw"),
	"reader": ("reader", "reader-acl-pw"),
	"root": ("root", "root-acl-pw"),
}
USERS = [CREDS[n] for n in ("alice", "bob", "carol", "reader", "root")]
# Each identity's client id (the %c of the patterns).
CID = {n: "acl-c-" + n for n in CREDS}
WATCH_CID = "acl-c-watch"  # root's subscriber in the publish tests

DENIED = {4: 0, 5: 0x87}  # PUBACK / PUBREC reason of a denied publish (3.1.1 has none)
SUB_REFUSED = {4: 0x80, 5: 0x87}
MARKER = "acl/marker"

ACL = """\
# test_acl.py.  The topic lines before the first user line: anonymous clients.
topic read acl/pub/#
topic write acl/anon/in
topic acl/anon/rw/#
topic deny acl/anon/rw/no
topic write acl/anon/two words

user alice
topic acl/alice/#
topic deny acl/alice/secret
topic write acl/pub/#
topic read acl/bob/#
topic read $SYS/broker/uptime

user bob
topic readwrite acl/bob/#
topic deny acl/bob/private/#
topic write acl/alice/inbox
# a pattern line in a user's section is for every client all the same
pattern write acl/any/#
topic read acl/pub/#

user reader
topic read #
topic read +/broker/uptime

user root
topic readwrite #
topic read $SYS/#

# patterns: every client
pattern read acl/marker
pattern write acl/client/%c/out
pattern read acl/client/%c/in
pattern acl/user/%u/#
pattern deny acl/user/%u/locked
pattern deny acl/any/deny
pattern deny acl/%u/locked
"""

# (who, topic, allowed, why).  {own}: the publisher's client id; {alice}: alice's.
PUBLISH_CASES = [
	("anon", "acl/anon/in", True, "anonymous write line"),
	("anon", "acl/anon/rw/x", True, "anonymous line without access word: readwrite"),
	("anon", "acl/anon/rw/no", False, "deny line after the grant"),
	("anon", "acl/pub/x", False, "a read line grants no write"),
	("anon", "acl/anon/two words", True, "the filter is the rest of the line, spaces included"),
	("anon", "acl/anon/two", False, "the filter is the rest of the line, spaces included"),
	("anon", "acl/alice/x", False, "nothing grants it"),
	("anon", "acl/user//x", False, "a %u pattern never applies to anonymous clients"),
	("anon", "acl/user/%u/x", False, "a %u pattern never applies to anonymous clients"),
	("anon", "acl/client/{own}/out", True, "%c write pattern"),
	("anon", "acl/client/{own}/in", False, "%c read pattern grants no write"),
	("anon", "acl/client/{alice}/out", False, "another client's %c"),
	("anon", "acl/any/x", True, "pattern line (written in bob's section)"),
	("anon", "acl/any/deny", False, "deny pattern"),
	("alice", "acl/alice/x", True, "user line without access word"),
	("alice", "acl/alice/secret", False, "deny line after an earlier grant"),
	("alice", "acl/alice/secret/sub", True, "a deny line covers its own filter only"),
	("alice", "acl/alice/locked", True, "a user's topic grant is read before the deny pattern"),
	("alice", "acl/pub/x", True, "user write line"),
	("alice", "acl/bob/x", False, "a read line grants no write"),
	("alice", "acl/anon/in", False, "anonymous lines do not apply to users"),
	("alice", "acl/anon/rw/x", False, "anonymous lines do not apply to users"),
	("alice", "acl/user/alice/x", True, "%u pattern"),
	("alice", "acl/user/alice/locked", False, "deny pattern over a grant pattern"),
	("alice", "acl/user/bob/x", False, "another user's %u"),
	("alice", "acl/client/{own}/out", True, "%c pattern for a user"),
	("alice", "acl/any/x", True, "pattern line"),
	("alice", "acl/any/deny", False, "deny pattern"),
	("bob", "acl/bob/x", True, "readwrite line"),
	("bob", "acl/bob/private", False, "deny .../# covers its parent level"),
	("bob", "acl/bob/private/x", False, "deny line with a wildcard after the grant"),
	("bob", "acl/bob/locked", True, "a user's topic grant is read before the deny pattern"),
	("bob", "acl/alice/inbox", True, "write line into another user's tree"),
	("bob", "acl/alice/x", False, "alice's lines are not bob's"),
	("bob", "acl/pub/x", False, "a read line grants no write"),
	("bob", "acl/any/x", True, "pattern line"),
	("carol", "acl/user/carol/x", True, "%u pattern for a user without a section"),
	("carol", "acl/client/{own}/out", True, "%c pattern for a user without a section"),
	("carol", "acl/any/x", True, "pattern line for a user without a section"),
	("carol", "acl/anon/in", False, "anonymous lines do not apply to users"),
	("carol", "acl/pub/x", False, "nothing grants it"),
	("reader", "acl/pub/x", False, "read # grants no write"),
	("root", "acl/alice/secret", True, "alice's deny line is alice's"),
	("root", "acl/any/deny", True, "a user's topic grant is read before the deny pattern"),
	("root", "$SYS/acl/x", False, "readwrite # grants no $ topic"),
]

# What root publishes in the read tests, and what each identity subscribed to
# acl/# receives of it ({own}: the subscriber's client id).
READ_TOPICS = [
	"acl/pub/x", "acl/anon/in", "acl/anon/rw/x", "acl/anon/rw/no",
	"acl/alice/x", "acl/alice/secret", "acl/alice/inbox", "acl/alice/locked",
	"acl/bob/x", "acl/bob/private", "acl/bob/private/x", "acl/bob/locked",
	"acl/user/alice/x", "acl/user/alice/locked", "acl/user/bob/x", "acl/user/carol/x",
	"acl/any/x", "acl/any/deny",
] + ["acl/client/%s/in" % CID[n] for n in ("anon", "alice", "bob", "carol")] + \
	["acl/client/%s/out" % CID[n] for n in ("anon", "alice")]

READS = {
	"anon": {"acl/pub/x", "acl/anon/rw/x", "acl/client/{own}/in"},
	"alice": {"acl/alice/x", "acl/alice/inbox", "acl/alice/locked", "acl/bob/x",
		  "acl/bob/private", "acl/bob/private/x", "acl/bob/locked", "acl/user/alice/x",
		  "acl/client/{own}/in"},
	"bob": {"acl/bob/x", "acl/bob/locked", "acl/pub/x", "acl/user/bob/x",
		"acl/client/{own}/in"},
	"carol": {"acl/user/carol/x", "acl/client/{own}/in"},
	"reader": set(READ_TOPICS),
}

# sluice's SUBACK: who -> [(filter, granted)].  Granted: the QoS asked for (1).
SUBSCRIBE_CASES = {
	"anon": [("acl/pub/#", True), ("acl/pub/x", True), ("acl/#", True), ("#", True),
		 ("acl/+/x", True), ("acl/anon/in", False), ("acl/anon/rw/no", False),
		 ("acl/alice/#", False), ("acl/user/+/x", False), ("acl/any/#", False),
		 ("$SYS/#", False), ("acl/client/{own}/in", True),
		 ("acl/client/{alice}/in", False), ("acl/client/{own}/out", False)],
	"alice": [("acl/alice/#", True), ("acl/alice/secret", False),
		  ("acl/alice/secret/#", True), ("acl/bob/private/#", True), ("acl/pub/#", False),
		  ("acl/user/alice/#", True), ("acl/user/alice/locked", False),
		  ("acl/user/bob/#", False), ("$SYS/#", True), ("$SYS/broker/uptime", True),
		  ("$SYS/broker/version", False), ("+/broker/uptime", False), ("acl/#", True)],
	"bob": [("acl/bob/#", True), ("acl/bob/private/#", False), ("acl/bob/private", False),
		("acl/bob/private/x", False), ("acl/bob/+/x", True), ("acl/alice/inbox", False),
		("acl/alice/#", False), ("acl/pub/#", True)],
	"carol": [("acl/user/carol/#", True), ("acl/#", True), ("acl/pub/#", False),
		  ("acl/user/alice/#", False)],
	"reader": [("#", True), ("+/broker/uptime", True), ("$SYS/#", False),
		   ("$SYS/broker/uptime", False)],
	"root": [("#", True), ("$SYS/#", True), ("$SYS/broker/uptime", True)],
}
# MQTT 5 only (shared subscriptions): checked on the filter after $share/NAME/
SHARED_SUBSCRIBE_CASES = {
	"anon": [("$share/g/acl/pub/#", True), ("$share/g/acl/alice/#", False)],
	"bob": [("$share/g/acl/bob/#", True), ("$share/g/acl/bob/private/#", False)],
}

# What mosquitto 2.0.11 does with an ACL file that fails to load at SIGHUP
# (measured with test_acl_sighup_bad_file_keeps_old run against it).
SIGHUP_BAD_MOSQUITTO = ("at SIGHUP with a bad line or no file mosquitto 2.0.11 logs the error "
			"and then fails open: every client may publish and read everything")


# -- brokers and clients ----------------------------------------------------------------

def write_acl(path, text):
	"""Replaces path by text at once (a reload never reads half a file)."""
	tmp = path + ".new"
	with open(tmp, "w") as f:
		f.write(text)
	# mosquitto, started as root, reads the file at SIGHUP as its own user
	os.chmod(tmp, 0o644)
	os.replace(tmp, path)


def acl_broker(t, acl=ACL, extra=(), start=True):
	"""A private broker with allow_anonymous true, the password file of USERS
	and acl_file <dir>/acl holding acl.  Returns (broker, ACL file path)."""
	need_passwd()
	b = new_broker(t)
	pw = os.path.join(b.dir, "passwd")
	write_passwd(pw, USERS)
	path = os.path.join(b.dir, "acl")
	write_acl(path, acl)
	b.extra = ["allow_anonymous true", "password_file %s" % pw,
		   "acl_file %s" % path] + list(extra)
	if start:
		b.start()
	return b, path


def login(t, b, who, version, cid=None):
	"""A connected paho client for identity who."""
	c = t.client(b, client_id=cid or CID[who], version=version, connect=False)
	user, pw = CREDS[who]
	if user is not None:
		c.c.username_pw_set(user, pw)
	c.connect()
	return c


def raw_login(t, b, who, version, cid=None, will=None):
	"""A raw client for identity who after CONNACK 0."""
	user, pw = CREDS[who]
	r = t.raw(b, version=version)
	r.send(R.connect(cid or CID[who], version, will=will, username=user, password=pw))
	_, rc, _ = r.expect(R.CONNACK).connack()
	assert rc == 0, "%s (client id %s): CONNACK 0x%02x" % (who, cid or CID[who], rc)
	return r


def fill(topic, own):
	return topic.format(own=own, alice=CID["alice"])


def raw_publish(r, topic, payload, qos, pid, retain=False):
	"""One PUBLISH from r and its QoS flow; returns the PUBACK / PUBREC reason
	(None at QoS 0).  A PINGREQ answered afterwards shows the connection open
	and (the broker reads a connection in order) the publish handled."""
	r.send(R.publish(topic, payload, qos, retain, pid=pid, version=r.version))
	code = None
	if qos:
		p = r.expect(R.PUBACK if qos == 1 else R.PUBREC, skip=(R.PUBLISH,))
		got, code, _ = p.ack()
		assert got == pid, "ack for packet id %d, expected %d" % (got, pid)
		if qos == 2 and (r.version == 4 or code < 0x80):
			r.send(R.pubrel(pid, r.version))
			assert r.expect(R.PUBCOMP, skip=(R.PUBLISH,)).pid() == pid
	r.send(R.pingreq())
	r.expect(R.PINGRESP, skip=(R.PUBLISH,))
	return code


def raw_subscribe(r, filters, qos=1, pid=1):
	"""One SUBSCRIBE of filters; the SUBACK's codes."""
	r.send(R.subscribe(pid, [(f, R.sub_opts(qos)) for f in filters], version=r.version))
	got, codes = r.expect(R.SUBACK, skip=(R.PUBLISH,)).suback()
	assert got == pid, "SUBACK for packet id %d, expected %d" % (got, pid)
	return codes


def until_marker(c, marker, timeout=5.0):
	"""c's messages up to the one with payload marker, and those of QUIET
	after it (a late one would be counted)."""
	out = []
	deadline = time.monotonic() + timeout
	while True:
		m = get_message(c, max(0.0, deadline - time.monotonic()))
		if m is None:
			raise AssertionError("%s: marker %r not received within %.1fs (got %r)" % (
				c.client_id, marker, timeout, [(x.topic, x.payload) for x in out]))
		if m.payload == marker:
			break
		out.append(m)
	return out + get_messages(c, 10000, QUIET)


def send_marker(t, b, version, subscribers):
	"""root publishes a marker on MARKER (readable by everyone); returns what
	each subscriber got before it, as {client: [messages]}."""
	marker = ("marker-%s" % t.cid()).encode()
	r = raw_login(t, b, "root", version, cid=CID["root"] + "-m")
	raw_publish(r, MARKER, marker, 1, 9)
	r.close()
	return {c: until_marker(c, marker) for c in subscribers}


# -- publish ------------------------------------------------------------------------------

@param("version", [4, 5])
@param("qos", [0, 1, 2])
def test_acl_publish(t, version, qos):
	"""Every case of PUBLISH_CASES: the PUBACK / PUBREC reason (0 or 0x87 at
	5.0, plain at 3.1.1, none at QoS 0), the connection kept, and whether
	root (read #, $SYS/#) receives it.  The failure lists every case
	answered otherwise."""
	b, _ = acl_broker(t)
	watch = login(t, b, "root", version, cid=WATCH_CID)
	assert watch.subscribe("acl/#", 2) == [2]
	assert watch.subscribe("$SYS/acl/#", 2) == [2]
	conns, bad, sent = {}, [], {}
	for i, (who, topic, allowed, why) in enumerate(PUBLISH_CASES):
		topic = fill(topic, CID[who])
		what = "%s publishes %s at QoS %d (%s)" % (who, topic, qos, why)
		payload = ("case-%d" % i).encode()
		sent[payload] = (topic, allowed, what)
		if who not in conns:
			conns[who] = raw_login(t, b, who, version)
		try:
			code = raw_publish(conns[who], topic, payload, qos, 1 + i)
		except (R.Closed, OSError, AssertionError) as e:
			bad.append("%s: %s (the connection is reopened)" % (what, e))
			conns.pop(who).close()
			continue
		want = None if qos == 0 else (0 if allowed else DENIED[version])
		if code != want:
			bad.append("%s: reason 0x%02x, expected 0x%02x" % (what, code, want))
	got = send_marker(t, b, version, [watch])[watch]
	seen = set()
	for m in got:
		if m.payload not in sent:
			bad.append("root got an unexpected message %r on %s" % (m.payload, m.topic))
			continue
		topic, allowed, what = sent[m.payload]
		seen.add(m.payload)
		if not allowed:
			bad.append("%s: delivered, expected it dropped" % what)
		elif m.topic != topic:
			bad.append("%s: delivered on %s" % (what, m.topic))
	for payload, (topic, allowed, what) in sent.items():
		if allowed and payload not in seen:
			bad.append("%s: not delivered, expected it delivered" % what)
	assert not bad, "MQTT %d, QoS %d:\n  %s" % (version, qos, "\n  ".join(bad))


# -- read -----------------------------------------------------------------------------------

@param("version", [4, 5])
@param("retained", [False, True])
def test_acl_read(t, version, retained):
	"""Each identity subscribed to acl/# (granted: it may read some of it)
	receives of READ_TOPICS, published by root, exactly what READS says:
	live messages, or (retained) the retained ones sent at SUBSCRIBE."""
	b, _ = acl_broker(t)
	root = raw_login(t, b, "root", version)

	def publish_all():
		for i, tp in enumerate(READ_TOPICS):
			code = raw_publish(root, tp, tp.encode(), 1, 1 + i, retain=retained)
			# 0x10: no matching subscribers (yet), as mosquitto answers a retained one
			assert code in ((0, 0x10) if retained else (0,)), \
				"root publishes %s: 0x%02x" % (tp, code)

	if retained:
		publish_all()
	subs = {}
	for who in READS:
		c = login(t, b, who, version)
		assert c.subscribe("acl/#", 1) == [1], "%s: SUBACK for acl/#" % who
		subs[c] = who
	if not retained:
		publish_all()
	got = send_marker(t, b, version, list(subs))
	bad = []
	for c, msgs in got.items():
		who = subs[c]
		want = {fill(x, CID[who]) for x in READS[who]}
		topics = [m.topic for m in msgs]
		extra = sorted(set(topics) - want)
		missing = sorted(want - set(topics))
		if extra:
			bad.append("%s received %s (not readable)" % (who, ", ".join(extra)))
		if missing:
			bad.append("%s did not receive %s" % (who, ", ".join(missing)))
		if len(topics) != len(set(topics)):
			bad.append("%s received duplicates: %r" % (who, topics))
		if retained and not all(m.retain for m in msgs):
			bad.append("%s: a message without the retain flag: %r" % (
				who, [m.topic for m in msgs if not m.retain]))
	assert not bad, "MQTT %d%s:\n  %s" % (version, ", retained" if retained else "",
					      "\n  ".join(bad))


@param("version", [4, 5])
def test_acl_suback_filters(t, version):
	"""sluice: per identity one SUBSCRIBE of the filters of SUBSCRIBE_CASES
	(and at 5.0 the shared ones): the QoS asked for where the client may read
	something the filter matches, 0x87 / 0x80 where it may read nothing; the
	connection stays open."""
	skip_on_mosquitto("mosquitto 2.0.11 grants every SUBSCRIBE (QoS asked for) and "
			  "filters at delivery")
	b, _ = acl_broker(t)
	bad = []
	for who, cases in SUBSCRIBE_CASES.items():
		cases = list(cases) + (SHARED_SUBSCRIBE_CASES.get(who, []) if version == 5 else [])
		filters = [fill(f, CID[who]) for f, _ in cases]
		r = raw_login(t, b, who, version)
		codes = raw_subscribe(r, filters)
		if len(codes) != len(filters):
			bad.append("%s: %d codes for %d filters: %r" % (
				who, len(codes), len(filters), codes))
			continue
		for f, (_, ok), code in zip(filters, cases, codes):
			want = 1 if ok else SUB_REFUSED[version]
			if code != want:
				bad.append("%s subscribes %s: 0x%02x, expected 0x%02x" % (
					who, f, code, want))
		r.send(R.pingreq())
		try:
			r.expect(R.PINGRESP, skip=(R.PUBLISH,))
		except (R.Closed, OSError, AssertionError) as e:
			bad.append("%s: the connection did not stay open after the SUBACK (%s)" % (
				who, e))
	assert not bad, "MQTT %d:\n  %s" % (version, "\n  ".join(bad))


@param("version", [4, 5])
def test_acl_refused_filter_delivers_nothing(t, version):
	"""A filter the client may read nothing of delivers nothing, whether the
	broker grants it (mosquitto) or refuses it (sluice: 0x87 / 0x80): bob on
	acl/bob/private/# and acl/alice/inbox, while root publishes there."""
	b, _ = acl_broker(t)
	bob = login(t, b, "bob", version)
	codes = bob.subscribe("acl/bob/private/#", 1) + bob.subscribe("acl/alice/inbox", 1)
	want = [1, 1] if is_mosquitto() else [SUB_REFUSED[version]] * 2
	assert codes == want, "SUBACK %r, expected %r" % (codes, want)
	root = raw_login(t, b, "root", version)
	for i, tp in enumerate(["acl/bob/private", "acl/bob/private/x", "acl/alice/inbox"]):
		# 0x10 (no matching subscribers) where bob's subscriptions were refused
		code = raw_publish(root, tp, b"no", 1, 1 + i)
		assert code in (0, 0x10), "root publishes %s: 0x%02x" % (tp, code)
	# bob reads the marker through "pattern read acl/marker": subscribe to it
	assert bob.subscribe(MARKER, 1) == [1]
	got = send_marker(t, b, version, [bob])[bob]
	assert not got, "bob received %r" % [(m.topic, m.payload) for m in got]
	assert not bob.disconnected.is_set(), "bob was disconnected"


# -- $SYS ---------------------------------------------------------------------------------------

@timeout(25)
@param("version", [4, 5])
def test_acl_sys_read_only_where_granted(t, version):
	"""$SYS/broker/uptime and .../version (sys_interval 1): root (read $SYS/#)
	receives both; alice (read $SYS/broker/uptime) subscribed to $SYS/# only
	uptime; reader (read #, read +/broker/uptime) on $SYS/#, # and
	+/broker/uptime and anonymous on $SYS/broker/uptime no $ topic.  Their
	SUBACK: granted where they may read something (both brokers), for the
	fully denied filters granted (mosquitto) or 0x87 / 0x80 (sluice)."""
	b, _ = acl_broker(t)
	refused = 0 if is_mosquitto() else SUB_REFUSED[version]
	root = login(t, b, "root", version)
	assert root.subscribe("$SYS/#", 0) == [0]
	alice = login(t, b, "alice", version)
	assert alice.subscribe("$SYS/#", 0) == [0], "alice: $SYS/# overlaps her grant"
	reader = login(t, b, "reader", version)
	assert reader.subscribe("#", 0) == [0]
	assert reader.subscribe("+/broker/uptime", 0) == [0]
	assert reader.subscribe("$SYS/#", 0) == [refused]
	anon = login(t, b, "anon", version)
	assert anon.subscribe("$SYS/broker/uptime", 0) == [refused]
	seen = []

	def root_saw():
		seen.extend(root.drain())
		topics = [m.topic for m in seen]
		# the retained uptime at SUBSCRIBE, then one published since
		return topics.count("$SYS/broker/uptime") >= 2 and "$SYS/broker/version" in topics

	wait_until(root_saw, 6, "root to receive $SYS/broker/uptime twice and .../version")
	a = get_messages(alice, 10000, QUIET)
	assert a, "alice received nothing on $SYS/# (she may read $SYS/broker/uptime)"
	others = sorted({m.topic for m in a} - {"$SYS/broker/uptime"})
	assert not others, "alice received %s" % ", ".join(others)
	dollar = sorted({m.topic for m in reader.drain() if m.topic.startswith("$")})
	assert not dollar, "reader (read #) received %s" % ", ".join(dollar)
	got = [m.topic for m in anon.drain()]
	assert not got, "anonymous received %s" % ", ".join(got)


# -- wills ----------------------------------------------------------------------------------------

WILL_CASES = [
	("anon", "acl/anon/in", True, "anonymous write line"),
	("anon", "acl/pub/w", False, "a read line grants no write"),
	("alice", "acl/alice/w", True, "alice's readwrite line"),
	("alice", "acl/anon/in", False, "anonymous lines do not apply to users"),
	("bob", "acl/bob/private/w", False, "deny line"),
	("carol", "acl/user/carol/w", True, "%u pattern"),
]


@param("version", [4, 5])
def test_acl_will(t, version):
	"""A will on a denied topic is accepted at CONNECT (CONNACK 0); when the
	connection drops, root receives only the wills their clients may write."""
	b, _ = acl_broker(t)
	watch = login(t, b, "root", version, cid=WATCH_CID)
	assert watch.subscribe("acl/#", 1) == [1]
	conns = []
	for i, (who, topic, allowed, why) in enumerate(WILL_CASES):
		will = {"topic": topic, "payload": ("will-%d" % i).encode(), "qos": 1}
		conns.append(raw_login(t, b, who, version, cid="%s-w%d" % (CID[who], i), will=will))
	# denied ones first, so that by the last allowed will they were all handled
	order = sorted(range(len(conns)), key=lambda i: WILL_CASES[i][2])
	for i in order:
		conns[i].abort()
	want = {("will-%d" % i).encode(): c[1] for i, c in enumerate(WILL_CASES) if c[2]}
	got = {}
	deadline = time.monotonic() + 5
	while set(got) != set(want) and time.monotonic() < deadline:
		m = get_message(watch, max(0.0, deadline - time.monotonic()))
		if m is not None:
			got[m.payload] = m.topic
	got.update((m.payload, m.topic) for m in get_messages(watch, 10000, QUIET))
	bad = []
	for i, (who, topic, allowed, why) in enumerate(WILL_CASES):
		p = ("will-%d" % i).encode()
		if allowed and p not in got:
			bad.append("%s's will on %s (%s): not published" % (who, topic, why))
		elif not allowed and p in got:
			bad.append("%s's will on %s (%s): published" % (who, topic, why))
		elif p in got and got[p] != topic:
			bad.append("%s's will on %s: published on %s" % (who, topic, got[p]))
	assert not bad, "MQTT %d:\n  %s" % (version, "\n  ".join(bad))


# -- client ids that are wildcards ----------------------------------------------------------------

@param("cid", ["+", "#"])
@param("version", [4, 5])
def test_acl_wildcard_client_id(t, cid, version):
	"""An anonymous client whose id is '+' or '#' gets nothing through the %c
	patterns (substituted, they would be filters over every client's topics):
	it may not write acl/client/somebody/out, nor read alice's
	acl/client/.../in; its anonymous line (read acl/pub/#) still works."""
	b, _ = acl_broker(t)
	watch = login(t, b, "root", version, cid=WATCH_CID)
	assert watch.subscribe("acl/client/#", 1) == [1]
	r = raw_login(t, b, "anon", version, cid=cid)
	assert raw_subscribe(r, ["acl/#"], qos=0) == [0]
	code = raw_publish(r, "acl/client/somebody/out", b"through %c", 1, 1)
	assert code == DENIED[version], "publish to acl/client/somebody/out: 0x%02x" % code
	root = raw_login(t, b, "root", version)
	inbox = "acl/client/%s/in" % CID["alice"]
	assert raw_publish(root, inbox, b"alice's", 1, 1) == 0
	assert raw_publish(root, "acl/pub/x", b"public", 1, 2) == 0
	got = []
	deadline = time.monotonic() + 5
	while "acl/pub/x" not in got:
		p = r.recv_or_none(max(0.01, deadline - time.monotonic()))
		assert p is not None, "client %r did not receive acl/pub/x (its anonymous read " \
			"line) within 5s, got %r" % (cid, got)
		if p.type == R.PUBLISH:
			got.append(p.publish()["topic"])
	while True:
		p = r.recv_or_none(QUIET)
		if p is None:
			break
		if p.type == R.PUBLISH:
			got.append(p.publish()["topic"])
	assert inbox not in got, "client %r read %s" % (cid, inbox)
	# root got alice's inbox message but not the one through %c
	w = [m.topic for m in get_messages(watch, 10000, QUIET)]
	assert "acl/client/somebody/out" not in w, "client %r wrote acl/client/somebody/out" % cid
	assert inbox in w, "root did not receive %s: %r" % (inbox, w)


# -- no grants ---------------------------------------------------------------------------------

@param("version", [4, 5])
def test_acl_empty_file_denies_everyone(t, version):
	"""An ACL file of comments only: anonymous and alice may publish nothing
	(0x87 at 5.0) and read nothing."""
	b, _ = acl_broker(t, acl="# nothing is granted\n\n")
	refused = 1 if is_mosquitto() else SUB_REFUSED[version]
	sub = login(t, b, "alice", version, cid=CID["alice"] + "-s")
	assert sub.subscribe("acl/#", 1) == [refused]
	for who in ("anon", "alice", "root"):
		r = raw_login(t, b, who, version)
		for qos in (1, 2):
			code = raw_publish(r, "acl/x", b"x", qos, qos)
			assert code == DENIED[version], \
				"%s, QoS %d: reason 0x%02x" % (who, qos, code)
	got = get_messages(sub, 10000, QUIET)
	assert not got, "alice received %r" % [(m.topic, m.payload) for m in got]


# -- start-up ------------------------------------------------------------------------------------

BAD_LINES = {
	"access": "topic sometimes acl/x",
	"directive": "frobnicate x",
	"pattern_access": "pattern maybe acl/%c",
	"filter": "topic read acl/#/x",
	# with no access word the filter is one word: "acl/two" is no access word
	"spaces_without_access": "topic acl/two words",
	"no_filter": "topic",
	"no_username": "user",
}
BAD_LINENO = 4  # where bad_acl() puts the bad line


def bad_acl(kind):
	return "# a good start\ntopic read acl/pub/#\nuser alice\n%s\ntopic acl/alice/#\n" % \
		BAD_LINES[kind]


def failed_start(t, kind):
	"""(broker, exit status, ACL path, acl_file line) of a start-up with a bad
	ACL file (kind: a BAD_LINES key, or "missing")."""
	b, path = acl_broker(t, acl=bad_acl(kind) if kind != "missing" else "", start=False)
	if kind == "missing":
		os.remove(path)
	rc = brokerlib.start_failure(b, "the broker started with ACL file %s (%s)" % (path, kind))
	return b, rc, path, "acl_file %s" % path


@param("kind", list(BAD_LINES) + ["missing"])
def test_acl_bad_file_stops_startup(t, kind):
	"""A bad line (or no file): non-zero exit, the ACL file's path in the log."""
	b, rc, path, _ = failed_start(t, kind)
	assert rc != 0, "exit status 0 although start-up failed"
	assert path in b.log_text(), "the log does not name %s:\n%s" % (path, b.log_text())


@param("kind", list(BAD_LINES) + ["missing"])
def test_acl_bad_file_names_lines(t, kind):
	"""... and names the ACL file's PATH:LINE (for a bad line) and the
	configuration's FILE:LINE of the acl_file directive."""
	skip_on_mosquitto("mosquitto 2.0.11 names the ACL file, without its line nor the "
			  "configuration's")
	b, rc, path, line = failed_start(t, kind)
	assert rc != 0, "exit status 0 although start-up failed"
	log = b.log_text()
	if kind != "missing":
		assert re.search(re.escape(path) + r":%d\b" % BAD_LINENO, log), \
			"no log line names %s:%d (%s):\n%s" % (path, BAD_LINENO, BAD_LINES[kind],
								  log)
	lineno = b.config_text().splitlines().index(line) + 1
	assert re.search(r"broker\.conf:%d\b" % lineno, log), \
		"no log line names broker.conf:%d (%s):\n%s" % (lineno, line, log)


# -- SIGHUP --------------------------------------------------------------------------------------

HUP_DENY = """\
user alice
topic read acl/alice/#
user bob
topic read acl/hup/#
user root
topic readwrite #
"""
HUP_GRANT = """\
user alice
topic write acl/hup/#
user bob
topic read acl/bob/#
user root
topic readwrite #
"""


class Hup:
	"""alice (raw, version) publishing to acl/hup/..., bob (paho) subscribed to
	acl/hup/#, root subscribed to acl/hup/# and publishing markers, all
	connected across the reloads."""

	def __init__(self, t, b, version):
		self.t, self.b, self.version = t, b, version
		self.alice = raw_login(t, b, "alice", version)
		self.bob = login(t, b, "bob", version)
		assert self.bob.subscribe("acl/hup/#", 1) == [1]
		self.root = login(t, b, "root", version)
		assert self.root.subscribe("acl/hup/#", 1) == [1]
		self.rootpub = raw_login(t, b, "root", version, cid=CID["root"] + "-p")
		self.n = 0

	def round(self):
		"""alice publishes, then root a marker: (alice's reason code, alice's
		message reached root, the marker reached bob)."""
		self.n += 1
		mine = ("alice-%d" % self.n).encode()
		marker = ("hup-marker-%d" % self.n).encode()
		code = raw_publish(self.alice, "acl/hup/a", mine, 1, self.n % 60000 + 1)
		assert raw_publish(self.rootpub, "acl/hup/m", marker, 1, self.n % 60000 + 1) == 0
		got = until_marker(self.root, marker)
		bob = False
		for m in get_messages(self.bob, 10000, 0.3):
			bob = bob or m.payload == marker
		return code, any(m.payload == mine for m in got), bob

	def open(self):
		assert not self.bob.disconnected.is_set(), "bob's connection was closed"
		assert not self.root.disconnected.is_set(), "root's connection was closed"


@timeout(40)
@param("version", [4, 5])
def test_acl_sighup_applies_to_open_connections(t, version):
	"""alice may not write acl/hup/#, bob reads it.  The file is replaced (alice
	writes, bob no longer reads) and SIGHUP: on the same connections alice's
	publish goes through and bob's subscription stops delivering; back to the
	first file and SIGHUP: alice denied again, bob's subscription delivers
	again."""
	b, path = acl_broker(t, acl=HUP_DENY)
	h = Hup(t, b, version)
	code, through, bob = h.round()
	assert code == DENIED[version] and not through, \
		"before the reload alice's publish went through (0x%02x, %s)" % (code, through)
	assert bob, "before the reload bob did not read acl/hup/m"
	write_acl(path, HUP_GRANT)
	hup(b)
	def went_through():
		r = h.round()
		return r if r[1] else None

	r = wait_until(went_through, 8, "alice's publish to go through after the SIGHUP")
	assert r[0] == 0, "alice's publish went through with reason 0x%02x" % r[0]
	code, through, bob = h.round()
	assert not bob, "after the reload bob still reads acl/hup/# on his old subscription"
	h.open()
	write_acl(path, HUP_DENY)
	hup(b)
	wait_until(lambda: h.round()[2], 8, "bob to read acl/hup/# again after the second SIGHUP")
	code, through, bob = h.round()
	assert code == DENIED[version] and not through, \
		"after the second reload alice's publish went through (0x%02x, %s)" % (
			code, through)
	assert bob
	h.open()


@timeout(40)
@param("how", ["access", "directive", "missing"])
def test_acl_sighup_bad_file_keeps_old(t, how):
	"""A file that fails to load at SIGHUP (a bad line of BAD_LINES after a
	grant for alice, or no file) is logged (a line naming the file and a
	failure) and the old rules stay in force: alice still denied, bob still
	reading; a good file and SIGHUP again load."""
	skip_on_mosquitto(SIGHUP_BAD_MOSQUITTO)
	b, path = acl_broker(t, acl=HUP_DENY)
	version = 5
	h = Hup(t, b, version)
	if how != "missing":
		write_acl(path, HUP_GRANT + BAD_LINES[how] + "\n")
	else:
		os.remove(path)
	hup_expecting_complaint(b, path)
	code, through, bob = h.round()
	assert code == DENIED[version] and not through, \
		"after the bad reload alice's publish went through (0x%02x, %s)" % (code, through)
	assert bob, "after the bad reload bob no longer reads acl/hup/#"
	h.open()
	write_acl(path, HUP_GRANT)
	hup(b)
	wait_until(lambda: h.round()[1], 8, "alice's publish to go through after a good reload")


# -- delayed topics --------------------------------------------------------------------------------

@timeout(30)
@param("version", [4, 5])
def test_acl_delayed(t, version):
	"""$delayed/0.3/TOPIC needs write access to TOPIC (0x87 at 5.0 otherwise)
	and is released only to readers of TOPIC; the plugin's
	$SYS/broker/delayed/ counters reach root (read $SYS/#), not alice (read
	$SYS/broker/uptime only)."""
	skip_on_mosquitto("delayed topics are a sluice plugin")
	if not DELAYED_PLUGIN or not os.path.isfile(DELAYED_PLUGIN):
		raise Skip("SLUICE_DELAYED_PLUGIN is not set or missing (the built "
			   "plugins/delayed/.libs/delayed.so)")
	b, _ = acl_broker(t, extra=["plugin %s" % DELAYED_PLUGIN, "plugin_opt_max 60",
				    "plugin_opt_sys_interval 1"])
	watch = login(t, b, "root", version, cid=WATCH_CID)
	assert watch.subscribe("acl/#", 1) == [1]
	sysw = login(t, b, "root", version, cid=WATCH_CID + "-sys")
	assert sysw.subscribe("$SYS/broker/delayed/#", 0) == [0]
	bob = login(t, b, "bob", version)
	assert bob.subscribe("acl/#", 1) == [1]
	alice_sys = login(t, b, "alice", version, cid=CID["alice"] + "-sys")
	assert alice_sys.subscribe("$SYS/#", 0) == [0]
	assert alice_sys.subscribe("$SYS/broker/delayed/#", 0) == [SUB_REFUSED[version]]
	cases = [  # (who, TOPIC, allowed)
		("alice", "acl/alice/d", True),
		("alice", "acl/pub/d", True),
		("alice", "acl/bob/d", False),
		("anon", "acl/anon/in", True),
		("anon", "acl/pub/d2", False),
	]
	conns, bad = {}, []
	for i, (who, topic, allowed) in enumerate(cases):
		if who not in conns:
			conns[who] = raw_login(t, b, who, version)
		payload = ("d-%d" % i).encode()
		code = raw_publish(conns[who], "$delayed/0.3/" + topic, payload, 1, 1 + i)
		want = 0 if allowed else DENIED[version]
		if code != want:
			bad.append("%s publishes $delayed/0.3/%s: 0x%02x, expected 0x%02x" % (
				who, topic, code, want))
	want = {("d-%d" % i).encode(): c[1] for i, c in enumerate(cases) if c[2]}
	got = {}
	deadline = time.monotonic() + 4
	while set(got) != set(want) and time.monotonic() < deadline:
		m = get_message(watch, max(0.0, deadline - time.monotonic()))
		if m is not None:
			got[m.payload] = m.topic
	got.update((m.payload, m.topic) for m in get_messages(watch, 10000, QUIET))
	if got != want:
		bad.append("root received %r, expected %r" % (sorted(got.items()),
							      sorted(want.items())))
	b_got = sorted(m.topic for m in bob.drain())
	if b_got != ["acl/pub/d"]:
		bad.append("bob (reads acl/pub/#, acl/bob/#) received %r, expected ['acl/pub/d']" %
			   b_got)
	wait_until(lambda: any(m.topic.startswith("$SYS/broker/delayed/") for m in sysw.drain()),
		   4, "root to receive a $SYS/broker/delayed/ counter")
	leaked = sorted({m.topic for m in get_messages(alice_sys, 10000, 1.5)
			 if m.topic.startswith("$SYS/broker/delayed/")})
	if leaked:
		bad.append("alice (read $SYS/broker/uptime) received %s" % ", ".join(leaked))
	assert not bad, "MQTT %d:\n  %s" % (version, "\n  ".join(bad))


TXN_PLUGIN = os.environ.get("SLUICE_TXN_PLUGIN")

TXN_ACL = """\
user alice
topic readwrite acl/alice/#
topic write $delayed/+/acl/alice/#
user root
topic readwrite #
"""


@param("version", [4, 5])
def test_acl_txn_half_needs_write_on_its_topic(t, version):
	"""$txn/half/ID/TOPIC needs write access to TOPIC as written: a half message
	for another extension's topic ($delayed/...) needs a grant on that topic;
	a refused half message never reaches a subscriber, even after a commit."""
	skip_on_mosquitto("transactional topics are a sluice plugin")
	for p, name in ((TXN_PLUGIN, "SLUICE_TXN_PLUGIN"), (DELAYED_PLUGIN, "SLUICE_DELAYED_PLUGIN")):
		if not p or not os.path.isfile(p):
			raise Skip("%s is not set or missing" % name)
	b, _ = acl_broker(t, acl=TXN_ACL, extra=["plugin %s" % TXN_PLUGIN,
						 "plugin %s" % DELAYED_PLUGIN])
	watch = login(t, b, "root", 5, cid=WATCH_CID)
	assert watch.subscribe("acl/#", 1) == [1]
	alice = raw_login(t, b, "alice", version)
	cases = [  # (half message topic, allowed)
		("$txn/half/t1/acl/alice/now", True),
		("$txn/half/t1/acl/bob/x", False),
		("$txn/half/t1/$delayed/0.2/acl/alice/later", True),
		("$txn/half/t1/$delayed/0.2/acl/bob/later", False),
	]
	bad = []
	for i, (topic, allowed) in enumerate(cases):
		code = raw_publish(alice, topic, topic.encode(), 1, 1 + i)
		if code != (0 if allowed else DENIED[version]):
			bad.append("%s: 0x%02x" % (topic, code))
	assert raw_publish(alice, "$txn/commit/t1", b"", 1, 10) == 0
	want = sorted(tp.split("/", 3)[3].encode() for tp, ok in cases if ok)
	got = sorted(m.payload.split(b"/", 3)[3] for m in get_messages(watch, 2, 3.0))
	got += sorted(m.payload for m in get_messages(watch, 10, 1.0))
	if got != want:
		bad.append("root received %r, expected %r" % (got, want))
	assert not bad, "MQTT %d:\n  %s" % (version, "\n  ".join(bad))


@timeout(30)
def test_acl_offline_session_keeps_its_user_over_a_restart(t):
	"""A persistent session's username (and listener) are stored with it: after
	a restart, messages for it while it is still offline are checked against
	its user's rules, not the anonymous ones, and wait for it."""
	skip_on_mosquitto("mosquitto keeps no session over a restart without persistence true")
	b, _ = acl_broker(t)
	user, pw = CREDS["alice"]

	def alice(clean):
		r = t.raw(b, version=4)
		r.send(R.connect(CID["alice"], 4, clean=clean, username=user, password=pw))
		_, rc, _ = r.expect(R.CONNACK).connack()
		assert rc == 0, rc
		return r

	r = alice(True)
	r.close()
	r = alice(False)
	assert raw_subscribe(r, ["acl/alice/#"], qos=1) == [1]
	r.send(R.disconnect(version=4))
	r.wait_closed(5)
	b.restart()
	root = raw_login(t, b, "root", 4)
	for i, topic in enumerate(("acl/alice/x", "acl/alice/secret", "acl/alice/inbox")):
		raw_publish(root, topic, topic.encode(), 1, i + 1)
	r = alice(False)
	got = []
	while True:
		p = r.recv_or_none(2)
		if p is None:
			break
		if p.type == R.PUBLISH:
			d = p.publish()
			r.send(R.puback(d["pid"], 4))
			got.append(d["topic"])
	assert got == ["acl/alice/x", "acl/alice/inbox"], \
		"alice's queued messages after the restart, by her rules: %r" % got
