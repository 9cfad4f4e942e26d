"""Password authentication: allow_anonymous and password_file, as mosquitto 2.

The contract.  allow_anonymous true|false (default false) and password_file
PATH are global directives.  The file is what Debian's mosquitto_passwd
writes: "user:$7$ITERATIONS$SALT$HASH" (PBKDF2-SHA512), or mosquitto 1.x's
"user:$6$SALT$HASH" (base64 of SHA-512 over password then salt); '#' lines
and lines without ':' are skipped.  A CONNECT with the right username and
password is accepted; a wrong password, an unknown user, a username without
a password, and (unless allow_anonymous true) no username at all are refused
with CONNACK 0x87 (MQTT 5) or return code 5 (3.1.1) and the connection is
closed.  allow_anonymous false without a password_file refuses everyone
(mosquitto 2.0.11 refuses a username with a password too: there is nothing
to check it against); allow_anonymous true without one accepts everyone.
A refusal is logged with the client id and the peer address; no password
ever reaches the log.  A password_file that does not exist stops start-up
(non-zero exit, FILE:LINE of the directive in the log).  SIGHUP reloads
the file and keeps open connections; a file that fails to load at SIGHUP
leaves the old one in force and is logged.

Measured on Debian's mosquitto 2.0.11 (the CONNACK bytes, flags then code):
every refusal above is "00 05" (3.1.1) or "00 87 00" (5.0, no properties),
followed by the close; a missing password file exits with status 13 and
logs 'Error: Unable to open pwfile "PATH".' without the configuration
line; a refusal is logged as "Client <unknown> disconnected, not
authorised.", without the client id; at a SIGHUP whose file has a malformed
line it drops that user and loads the others, with the file gone it refuses
every user, and it disconnects open clients whose user is no longer in the
file.  FILE:LINE, the client id in the refusal's line and the bad reload are
sluice's own contract: those tests are skipped against mosquitto.

Every test runs a private broker whose password file is written into the
broker's directory (removed with it) by mosquitto_passwd -c -b / -b before
the start.  brokerlib gives the broker "allow_anonymous true" unless the
test's lines hold an allow_anonymous line, so each test gives one; the
"default" configurations take brokerlib's line out again (no_anonymous_line)
to see the broker's own default.  CONNACK codes are read with the raw client
(rawmqtt); paho (username_pw_set) and mosquitto_pub/mosquitto_sub (-u/-P,
whose exit status is the CONNACK code) are checked as real clients.
"""

import base64
import hashlib
import os
import re
import shutil
import signal
import subprocess

import brokerlib
import rawmqtt as R
from harness import Skip, param, skip_on_mosquitto, timeout, wait_until
from test_cli import PUB, SUB, Sub, need_tools, pub

PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"

ALICE_PW = "Al1ce-pw-q7"
BOB_PW = "b0b pw:with$odd#chars"
DAVE_PW = "dave-pw-k2"
USERS = [("alice", ALICE_PW), ("bob", BOB_PW)]

REFUSED = {4: 5, 5: 0x87}  # 3.1.1 "not authorised", 5.0 "Not authorized"

# What a CONNECT carries: case name -> (username, password).
CASES = {
	"alice": ("alice", ALICE_PW),
	"bob": ("bob", BOB_PW),  # the user mosquitto_passwd -b added
	"wrong_password": ("alice", "x" + ALICE_PW),
	"other_users_password": ("bob", ALICE_PW),
	"unknown_user": ("mallory", ALICE_PW),
	"no_password": ("alice", None),
	"anonymous": (None, None),
	# mosquitto 2.0.11 takes an empty username for none, with or without a password
	"empty_username": ("", None),
	"empty_username_with_password": ("", ALICE_PW),
}

# Configuration name -> (password file?, allow_anonymous line or None for no
# line at all, the cases accepted).  Checked against mosquitto 2.0.11.
CONFIGS = {
	"file_noanon": (True, "false", {"alice", "bob"}),
	"file_anon": (True, "true", {"alice", "bob", "anonymous", "empty_username",
				      "empty_username_with_password"}),
	"file_default": (True, None, {"alice", "bob"}),
	"nofile_noanon": (False, "false", set()),
	"nofile_default": (False, None, set()),
	"nofile_anon": (False, "true", set(CASES)),
}


# -- password files and brokers ----------------------------------------------------------

def need_passwd():
	if not shutil.which(PASSWD):
		raise Skip("%s not installed (package mosquitto)" % PASSWD)


def passwd(path, user, password, create=False, tool=None):
	"""mosquitto_passwd [-c] -b PATH USER PASSWORD; tool: another command and its
	options to run instead (sluice-passwd -H sha256-pbkdf2, mosquitto_passwd -I 1000)."""
	args = list(tool or [PASSWD]) + (["-c"] if create else []) + ["-b", path, user, password]
	r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
			   stdin=subprocess.DEVNULL, timeout=10)
	assert r.returncode == 0, "%s failed (%d): %s" % (args, r.returncode, r.stdout)
	# mosquitto, started as root, re-reads the file at SIGHUP as its own user
	os.chmod(path, 0o644)


def write_passwd(path, users, more_lines=()):
	"""users: [(user, password)] through mosquitto_passwd, or [(user, password, tool)]
	through tool (see passwd()); more_lines appended as they are."""
	for i, (u, p, *tool) in enumerate(users):
		passwd(path, u, p, create=i == 0, tool=tool[0] if tool else None)
	if more_lines:
		with open(path, "a") as f:
			f.write("".join(l + "\n" for l in more_lines))
		os.chmod(path, 0o644)


def sha512_line(user, password, salt=None):
	"""mosquitto 1.x's line: user:$6$<b64 salt>$<b64 SHA-512(password + salt)>."""
	salt = salt if salt is not None else os.urandom(12)
	digest = hashlib.sha512(password.encode() + salt).digest()
	return "%s:$6$%s$%s" % (user, base64.b64encode(salt).decode(),
				base64.b64encode(digest).decode())


def no_anonymous_line(b):
	"""Take brokerlib's own "allow_anonymous true" out of b's configuration, so
	that the broker's default applies."""
	base = b.config_text
	b.config_text = lambda: "".join(l + "\n" for l in base().splitlines()
					if l.split() != ["allow_anonymous", "true"])


def new_broker(t):
	"""A broker (not started) that t stops and removes at the end."""
	b = brokerlib.Broker([], name=t.short[:30])
	t.brokers.append((b, 0, True))
	return b


def auth_broker(t, anonymous="false", users=USERS, more_lines=(), with_file=True, extra=()):
	"""A started private broker with "allow_anonymous ANONYMOUS" (None: no such
	line) and, if with_file, password_file <dir>/passwd holding users (and
	more_lines), then the configuration lines extra.  Returns (broker, password
	file path)."""
	need_passwd()
	b = new_broker(t)
	path = os.path.join(b.dir, "passwd")
	lines = []
	if anonymous is not None:
		lines.append("allow_anonymous %s" % anonymous)
	else:
		no_anonymous_line(b)
	if with_file:
		write_passwd(path, users, more_lines)
		lines.append("password_file %s" % path)
	b.extra = lines + list(extra)
	b.start()
	return b, path


# -- connecting ---------------------------------------------------------------------------

def attempt(t, b, version, username, password, transport="tcp", cid=None):
	"""One raw CONNECT with these credentials: (CONNACK code, session present,
	closed).  closed: for a refusal, whether the broker closed the connection
	within 5 s; None when accepted (we disconnect)."""
	r = t.raw(b, transport=transport, version=version)
	try:
		r.send(R.connect(cid or t.cid("a"), version, username=username, password=password))
		sp, rc, _ = r.expect(R.CONNACK).connack()
		if rc == 0:
			r.send(R.disconnect(version=version))
			return rc, sp, None
		try:
			r.wait_closed(5)
			return rc, sp, True
		except AssertionError:
			return rc, sp, False
	finally:
		r.close()


def check_case(t, b, version, case, accept, transport="tcp"):
	"""None if the CONNECT of case is answered as expected, else what went wrong."""
	user, pw = CASES[case]
	want = 0 if accept else REFUSED[version]
	try:
		rc, sp, closed = attempt(t, b, version, user, pw, transport)
	except (R.Closed, OSError) as e:
		return "%s: no CONNACK (%s), expected 0x%02x" % (case, e, want)
	if rc != want:
		return "%s: CONNACK 0x%02x, expected 0x%02x" % (case, rc, want)
	if rc and sp:
		return "%s: session present 1 with a refusal [MQTT-3.2.2-6]" % case
	if rc and not closed:
		return "%s: refused (0x%02x) but the connection stayed open" % (case, rc)
	return None


def assert_accepted(t, b, version, user, pw, what=""):
	rc = attempt(t, b, version, user, pw)[0]
	assert rc == 0, "%s%s/%r: CONNACK 0x%02x, expected 0" % (what, user, pw, rc)


def assert_refused(t, b, version, user, pw, what=""):
	rc, _, closed = attempt(t, b, version, user, pw)
	assert rc == REFUSED[version], "%s%s/%r: CONNACK 0x%02x, expected 0x%02x" % (
		what, user, pw, rc, REFUSED[version])
	assert closed, "%s%s: refused but left open" % (what, user)


def paho(t, b, version, user, pw, transport="tcp", expect_rc=0):
	"""A paho client with username_pw_set(user, pw) (user None: none)."""
	c = t.client(b, version=version, transport=transport, connect=False)
	if user is not None:
		c.c.username_pw_set(user, pw)
	c.connect(expect_rc=expect_rc)
	return c


def hup(b):
	b.proc.send_signal(signal.SIGHUP)


COMPLAINT = re.compile(r"(?i)error|fail|cannot|can't|invalid|malformed|bad|\bnot\b|keep|stays|"
		       r"unchanged|ignor")


def wait_complaint(b, path, since, timeout=5.0):
	"""A log line (from byte offset since) that names path and, outside the
	path (whose directory is named after the test), says something failed."""
	def find():
		for line in b.log_text(since).splitlines():
			if path in line and COMPLAINT.search(line.replace(path, "")):
				return line
		return None
	try:
		return wait_until(find, timeout, "a log line about %s" % path)
	except AssertionError:
		return None


def hup_expecting_complaint(b, path):
	"""SIGHUP, then a log line that names path and says it failed to load."""
	off = b.log_size()
	hup(b)
	line = wait_complaint(b, path, off)
	assert line, "no log line names %s with an error after the SIGHUP:\n%s" % (
		path, b.log_text(off))


# -- CONNACK codes -----------------------------------------------------------------------

@param("config", list(CONFIGS))
@param("version", [4, 5])
@param("transport", ["tcp", "ws"])
def test_auth_connack(t, config, version, transport):
	"""Each kind of credentials against each configuration: CONNACK 0, or
	0x87 / 5 with session present 0 and the connection closed.  All cases
	are tried; the failure lists every one answered otherwise."""
	with_file, anonymous, accepts = CONFIGS[config]
	b, _ = auth_broker(t, anonymous, with_file=with_file)
	bad = [m for m in (check_case(t, b, version, case, case in accepts, transport)
			   for case in CASES) if m]
	assert not bad, "%s (MQTT %d over %s):\n  %s" % (config, version, transport,
							   "\n  ".join(bad))


@param("version", [4, 5])
def test_auth_sha512_dollar6_line(t, version):
	"""A mosquitto 1.x $6$ line beside mosquitto_passwd's $7$ ones; '#' lines
	(one with a ':'), a line without ':' and an empty line are skipped."""
	carol = "c4rol-pw-6"
	b, _ = auth_broker(t, "false", users=[("alice", ALICE_PW)], more_lines=[
		"# a comment: with a colon and $7$101$x$y",
		"no colon on this line",
		"",
		sha512_line("carol", carol),
	])
	assert_accepted(t, b, version, "carol", carol, "$6$ user ")
	assert_accepted(t, b, version, "alice", ALICE_PW, "$7$ user ")
	assert_refused(t, b, version, "carol", carol + "x", "$6$ user, wrong password: ")
	assert_refused(t, b, version, "carol", None, "$6$ user, no password: ")
	assert_refused(t, b, version, "no colon on this line", carol, "skipped line as user: ")


def argon2id_line(user, password, salt=b"sluice-argon-salt"):
	"""user:$argon2id$... (mosquitto 2.1's default hash) from Debian's argon2 tool."""
	tool = shutil.which("argon2")
	if not tool:
		raise Skip("no argon2 tool (Debian package argon2)")
	r = subprocess.run([tool, salt.decode(), "-id", "-t", "2", "-m", "10", "-p", "2", "-e"],
			   input=password.encode(), stdout=subprocess.PIPE, timeout=10, check=True)
	return "%s:%s" % (user, r.stdout.decode().strip())


@param("version", [4, 5])
def test_auth_argon2id_line(t, version):
	"""An $argon2id$ line (the PHC string mosquitto 2.1 writes) beside $7$ ones."""
	skip_on_mosquitto("mosquitto 2.0.11 reads no $argon2id$ lines")
	dave = "d4ve-argon-pw"
	b, _ = auth_broker(t, "false", users=[("alice", ALICE_PW)],
			   more_lines=[argon2id_line("dave", dave)])
	assert_accepted(t, b, version, "dave", dave, "$argon2id$ user ")
	assert_accepted(t, b, version, "alice", ALICE_PW, "$7$ user ")
	assert_refused(t, b, version, "dave", dave + "x", "$argon2id$ user, wrong password: ")
	assert_refused(t, b, version, "dave", None, "$argon2id$ user, no password: ")


# -- real clients --------------------------------------------------------------------------

@param("version", [4, 5])
@param("transport", ["tcp", "ws"])
def test_auth_paho_username_pw_set(t, version, transport):
	"""paho: alice and bob (username_pw_set) exchange a message; a wrong
	password, a missing one and no username get the refusal code and are
	disconnected."""
	b, _ = auth_broker(t, "false")
	tp = t.topic("paho")
	alice = paho(t, b, version, "alice", ALICE_PW, transport)
	assert alice.subscribe(tp, 1) == [1]
	bob = paho(t, b, version, "bob", BOB_PW, transport)
	bob.publish(tp, b"from bob", 1)
	assert alice.wait_message().payload == b"from bob"
	for user, pw in (("alice", "nope"), ("alice", None), ("mallory", BOB_PW), (None, None)):
		c = paho(t, b, version, user, pw, transport, expect_rc=REFUSED[version])
		c.wait_disconnected(5)
	assert not alice.disconnected.is_set(), "an accepted client was disconnected"


@param("proto", ["mqttv311", "mqttv5"])
def test_auth_mosquitto_clients(t, proto):
	"""mosquitto_sub -u alice -P ... receives what mosquitto_pub -u bob -P ...
	sends (exit status 0); refused, both exit with the CONNACK code."""
	need_tools()
	b, _ = auth_broker(t, "false")
	version = 5 if proto == "mqttv5" else 4
	tp = t.topic("cli")
	s = Sub(b, ["-V", proto, "-q", "1", "-t", tp, "-F", "%p", "-u", "alice", "-P", ALICE_PW])
	try:
		s.wait_subscribed()
		pub(b, ["-V", proto, "-q", "1", "-t", tp, "-m", "hello auth",
			"-u", "bob", "-P", BOB_PW])
		lines = s.output()
		assert s.p.returncode == 0, lines
		assert "hello auth" in lines, lines
	finally:
		s.kill()
	for creds in (["-u", "alice", "-P", "wrong"], ["-u", "mallory", "-P", ALICE_PW],
		      ["-u", "alice"], []):
		for tool, args in ((PUB, ["-m", "no"]), (SUB, ["-C", "1", "-W", "3"])):
			cmd = [tool, "-h", "127.0.0.1", "-p", str(b.port), "-V", proto, "-q", "1",
			       "-t", tp] + args + creds
			r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
					   stdin=subprocess.DEVNULL, timeout=10)
			assert r.returncode == REFUSED[version], \
				"%s: exit status %d, expected %d: %s" % (
					" ".join(cmd[5:]), r.returncode, REFUSED[version], r.stdout)


# -- the log ---------------------------------------------------------------------------------

@param("version", [4, 5])
def test_auth_refusal_logged_with_client_id_and_peer(t, version):
	"""Each refusal leaves a log line holding the client id and the peer
	address (127.0.0.1)."""
	skip_on_mosquitto("mosquitto 2.0.11 logs 'Client <unknown> disconnected, not "
			  "authorised.': no client id")
	b, _ = auth_broker(t, "false")
	for case in ("wrong_password", "unknown_user", "no_password", "anonymous"):
		user, pw = CASES[case]
		cid = t.cid(case[:6])
		off = b.log_size()
		rc, _, _ = attempt(t, b, version, user, pw, cid=cid)
		assert rc == REFUSED[version], "%s: CONNACK 0x%02x" % (case, rc)
		c = re.escape(cid)
		line = b.wait_log(r"%s.*127\.0\.0\.1|127\.0\.0\.1.*%s" % (c, c), since=off)
		assert line, "%s: no log line with client id %s and 127.0.0.1:\n%s" % (
			case, cid, b.log_text(off))


@param("version", [4, 5])
def test_auth_password_never_logged(t, version):
	"""Right and wrong passwords, over raw CONNECTs and paho, appear nowhere in
	the log (nor as hex), while the log does show the connections."""
	secret = "S3cr3t-" + os.urandom(6).hex()
	wrong = "Wr0ng-" + os.urandom(6).hex()
	b, _ = auth_broker(t, "false", users=[("carol", secret)])
	assert_refused(t, b, version, "carol", wrong)
	assert_refused(t, b, version, "mallory", secret)
	paho(t, b, version, "carol", wrong, expect_rc=REFUSED[version]).wait_disconnected(5)
	assert_accepted(t, b, version, "carol", secret)
	paho(t, b, version, "carol", secret).disconnect()
	last = t.cid("last")
	assert attempt(t, b, version, "carol", secret, cid=last)[0] == 0
	# the log is written in order: once the last connection shows, all the others have
	assert b.wait_log(re.escape(last)), "the log never shows client %s" % last
	log = b.log_text()
	for pw in (secret, wrong):
		for form in (pw, pw.encode().hex(), pw.encode().hex(" ")):
			assert form.lower() not in log.lower(), \
				"the log holds a password (%r)" % form


# -- start-up ----------------------------------------------------------------------------------

def missing_file_broker(t):
	need_passwd()
	b = new_broker(t)
	missing = os.path.join(b.dir, "no-such-passwd")
	line = "password_file %s" % missing
	b.extra = ["allow_anonymous false", line]
	rc = brokerlib.start_failure(b, "the broker started with a missing password file")
	return b, rc, missing, line


def test_auth_missing_password_file_stops_startup(t):
	"""A password_file that does not exist: non-zero exit, the path in the log."""
	b, rc, missing, _ = missing_file_broker(t)
	assert rc != 0, "exit status 0 although start-up failed"
	assert missing in b.log_text(), "the log does not name %s:\n%s" % (missing, b.log_text())


def test_auth_missing_password_file_names_conf_line(t):
	"""... and the message names the configuration file and line (FILE:LINE)."""
	skip_on_mosquitto("mosquitto 2.0.11 names the password file, not the configuration line")
	b, rc, _, line = missing_file_broker(t)
	assert rc != 0, "exit status 0 although start-up failed"
	lineno = b.config_text().splitlines().index(line) + 1
	log = b.log_text()
	assert re.search(r"broker\.conf:%d\b" % lineno, log), \
		"no log line names broker.conf:%d (%s):\n%s" % (lineno, line, log)


# -- SIGHUP ----------------------------------------------------------------------------------------

@timeout(30)
@param("version", [4, 5])
def test_auth_sighup_adds_user(t, version):
	"""mosquitto_passwd -b adds dave: refused until SIGHUP, accepted after it;
	alice's connection, open across the reload, still receives (from dave)."""
	need_tools()
	b, path = auth_broker(t, "false")
	tp = t.topic("hup")
	kept = paho(t, b, version, "alice", ALICE_PW)
	assert kept.subscribe(tp, 1) == [1]
	passwd(path, "dave", DAVE_PW)
	# the file is read at start-up and at SIGHUP, not at each CONNECT
	assert_refused(t, b, version, "dave", DAVE_PW, "before SIGHUP: ")
	hup(b)
	wait_until(lambda: attempt(t, b, version, "dave", DAVE_PW)[0] == 0, 5,
		   "dave accepted after SIGHUP")
	assert_accepted(t, b, version, "alice", ALICE_PW, "after SIGHUP: ")
	assert_refused(t, b, version, "dave", ALICE_PW, "after SIGHUP: ")
	assert not kept.disconnected.is_set(), "alice's connection was closed by the reload"
	pub(b, ["-V", "mqttv5" if version == 5 else "mqttv311", "-q", "1", "-t", tp,
		"-m", "after reload", "-u", "dave", "-P", DAVE_PW])
	assert kept.wait_message().payload == b"after reload"


@timeout(30)
@param("how", ["malformed", "missing"])
def test_auth_sighup_bad_file_keeps_old(t, how):
	"""A file that fails to load at SIGHUP (a malformed hash line beside a good
	new user, or no file) is logged (a line naming the file and a failure)
	and the old one stays in force, whole: old users in, the new file's user
	out, open connections open.  Fixing the file and SIGHUP again loads it."""
	skip_on_mosquitto("at SIGHUP mosquitto 2.0.11 loads what it can of a malformed file "
			  "and, with the file gone, refuses every user")
	b, path = auth_broker(t, "false")
	version = 5
	tp = t.topic("badhup")
	kept = paho(t, b, version, "alice", ALICE_PW)
	assert kept.subscribe(tp, 1) == [1]
	if how == "malformed":
		new = os.path.join(b.dir, "passwd.new")
		write_passwd(new, [("dave", DAVE_PW)], ["bob:$7$notanumber$x$y"])
		os.replace(new, path)
	else:
		os.remove(path)
	hup_expecting_complaint(b, path)
	assert_accepted(t, b, version, "alice", ALICE_PW, "old file's user: ")
	assert_accepted(t, b, version, "bob", BOB_PW, "old file's user: ")
	assert_refused(t, b, version, "dave", DAVE_PW, "the bad file's user: ")
	assert not kept.disconnected.is_set(), "alice's connection was closed by the reload"
	c = paho(t, b, version, "bob", BOB_PW)
	c.publish(tp, b"still here", 1)
	assert kept.wait_message().payload == b"still here"
	# the broker is not stuck with the old file: a good one loads at the next SIGHUP
	write_passwd(path, [("alice", ALICE_PW), ("dave", DAVE_PW)])
	hup(b)
	wait_until(lambda: attempt(t, b, version, "dave", DAVE_PW)[0] == 0, 5,
		   "dave accepted after the file was fixed and SIGHUP")
	assert_refused(t, b, version, "bob", BOB_PW, "after the good reload, bob is gone: ")


# -- plugins: AUTH and ACL_CHECK before the broker's own files ---------------------------

TEST_PLUGIN = os.environ.get("SLUICE_TEST_PLUGIN")


def plugin_broker(t, acl_lines=None):
	"""A broker with the test plugin first, then password_file (alice, bob) and,
	with acl_lines, an acl_file; allow_anonymous false."""
	if brokerlib.is_mosquitto():
		raise Skip("the AUTH and ACL_CHECK events are sluice's plugin API")
	if not TEST_PLUGIN or not os.path.isfile(TEST_PLUGIN):
		raise Skip("SLUICE_TEST_PLUGIN is not set to the built test_plugin.so")
	need_passwd()
	b = new_broker(t)
	path = os.path.join(b.dir, "passwd")
	write_passwd(path, USERS + [("tp-deny", "tp-deny-pw")])
	extra = ["plugin %s" % TEST_PLUGIN, "allow_anonymous false", "password_file %s" % path]
	if acl_lines is not None:
		acl = os.path.join(b.dir, "acl")
		with open(acl, "w") as f:
			f.write("".join(l + "\n" for l in acl_lines))
		extra.append("acl_file %s" % acl)
	b.extra = extra
	b.start()
	return b


@param("version", [4, 5])
def test_auth_plugin_allows_and_denies_before_the_password_file(t, version):
	b = plugin_broker(t)
	since = b.log_size()
	assert attempt(t, b, version, "tp-allow", "anything at all")[0] == 0
	assert attempt(t, b, version, "tp-allow", None)[0] == 0
	rc, _, closed = attempt(t, b, version, "tp-deny", "tp-deny-pw")  # right password
	assert rc == (0x86 if version == 5 else 5) and closed, rc
	assert_accepted(t, b, version, "alice", ALICE_PW, "the plugin passes: ")
	assert_refused(t, b, version, "alice", "wrong", "the plugin passes: ")
	log = b.log_text(since)
	assert re.search(r"tp: AUTH client=\S+ user=alice password=%d bytes address=\S*127\.0\.0\.1"
			 % len(ALICE_PW), log), log
	assert "tp-deny-pw" not in log and ALICE_PW not in log


@param("version", [4, 5])
def test_auth_plugin_acl_check_before_the_acl_file(t, version):
	b = plugin_broker(t, ["user alice", "topic readwrite tp/#", "user bob", "topic read tp/#"])
	reader = paho(t, b, 5, "bob", BOB_PW)
	reader.subscribe("tp/#", 1)
	allowed = paho(t, b, 5, "tp-allow", "x")  # no line of the file: only the plugin lets it
	allowed.subscribe("tp/aclallow/#", 1)
	alice = t.raw(b, version=version)
	alice.send(R.connect(t.cid("alice"), version, username="alice", password=ALICE_PW))
	assert alice.expect(R.CONNACK).connack()[1] == 0
	rc = pub_rc(alice, "tp/acldeny/x", b"no", 1)  # the file grants it, the plugin denies
	assert rc == (0x87 if version == 5 else 0), "0x%02x" % rc
	rc = pub_rc(alice, "tp/plain", b"file", 2)  # the plugin passes, the file grants
	assert rc in (0, 0x10), "0x%02x" % rc
	assert reader.wait_message().payload == b"file"
	reader.expect_no_message(0.5)
	other = t.raw(b, version=version)
	other.send(R.connect(t.cid("tpa"), version, username="tp-allow", password="x"))
	assert other.expect(R.CONNACK).connack()[1] == 0
	rc = pub_rc(other, "tp/aclallow/y", b"plugin", 3)  # the file has nothing for tp-allow
	assert rc in (0, 0x10), "0x%02x" % rc
	assert allowed.wait_message().payload == b"plugin"
	assert reader.wait_message().payload == b"plugin"
	rc = pub_rc(other, "tp/plain", b"nothing", 4)  # neither grants it
	assert rc == (0x87 if version == 5 else 0), "0x%02x" % rc
	reader.expect_no_message(0.5)
	assert b.wait_log(r"tp: ACL_CHECK client=\S+ user=bob topic=tp/aclallow/y access=1 msg=1", 3)


def pub_rc(r, topic, payload, pid):
	"""A QoS 1 PUBLISH from raw client r: the PUBACK's reason code."""
	r.send(R.publish(topic, payload, 1, False, pid=pid, version=r.version))
	return r.expect(R.PUBACK).reason()
