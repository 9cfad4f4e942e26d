"""sluice-passwd against Debian's mosquitto_passwd 2.0.11 and mosquitto broker.

sluice-passwd sits next to the sluice binary ($SLUICE).  Files it writes
must be read by mosquitto_passwd (which can delete a user from them) and
by the mosquitto broker (password_file, allow_anonymous false: the right
password gets CONNACK 0, a wrong one or an unknown user 5); files that
mosquitto_passwd wrote must be updated by it without disturbing the other
users; -U hashes a plain-text file; and its errors have mosquitto_passwd's
exit status.  The broker here is always mosquitto (brokerlib's reference
kind), whatever INTEG_BROKER says: the tool is under test, not a broker.

-H sha256-pbkdf2 is sluice-passwd's own (mosquitto_passwd calls it an
unknown hash type): "user:$pbkdf2-sha256$ITERATIONS$SALT$HASH", passlib's
layout, SALT (12 random bytes) and HASH (PBKDF2-HMAC-SHA256 of the
password, 32 bytes) in adapted base64 ('.' for '+', no '=' padding), 4096
iterations unless -I; with -U too.  mosquitto does not read those lines, so
they are checked here by recomputing the hash (and test_scram.py logs in
with them).
"""

import base64
import hashlib
import os
import re
import pwd
import shutil
import stat
import subprocess
import tempfile

import brokerlib
from harness import param, Skip

MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
RUN_TIMEOUT = 10


def tool():
	sluice = os.environ.get("SLUICE")
	if not sluice:
		raise Skip("SLUICE is not set: sluice-passwd is found beside it")
	path = os.path.join(os.path.dirname(os.path.abspath(sluice)), "sluice-passwd")
	if not os.access(path, os.X_OK):
		raise Skip("%s not built" % path)
	return path


def need_mosquitto():
	for p in (MOSQUITTO_PASSWD, brokerlib.MOSQUITTO):
		if not os.access(p, os.X_OK):
			raise Skip("%s not installed (package mosquitto)" % p)


def run(argv, input=None):
	"""(exit status, stdout, stderr) of argv, given input (bytes) or nothing on stdin."""
	r = subprocess.run(argv, input=input, stdin=None if input is not None else subprocess.DEVNULL,
			   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=RUN_TIMEOUT)
	return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def ok(argv, input=None):
	rc, out, err = run(argv, input)
	assert rc == 0, "%s: exit %d, stderr %r" % (argv, rc, err)
	return out


class Dir:
	"""A private directory the mosquitto user can enter, removed at the end."""

	def __init__(self):
		self.path = tempfile.mkdtemp(prefix="integ-passwd-")
		os.chmod(self.path, 0o755)

	def file(self, name):
		return os.path.join(self.path, name)

	def names(self):
		return sorted(os.listdir(self.path))

	def __enter__(self):
		return self

	def __exit__(self, *exc):
		shutil.rmtree(self.path, ignore_errors=True)


def give_to_broker(path):
	"""mosquitto started as root reads password_file as user mosquitto: give it
	the file, as an administrator would (a new file is 0600, like upstream's)."""
	if os.geteuid() != 0:
		return
	try:
		u = pwd.getpwnam("mosquitto")
	except KeyError:
		return
	os.chown(path, u.pw_uid, u.pw_gid)


def mosquitto_with(t, pwfile):
	"""A mosquitto broker (the reference kind) reading pwfile, no anonymous clients."""
	b = brokerlib.Broker(["allow_anonymous false", "password_file %s" % pwfile],
			     name=t.short[:30])
	b.kind = "mosquitto"
	b.binary = brokerlib.MOSQUITTO
	t.brokers.append((b, 0, True))
	b.start()
	return b


def connack(t, b, user, password):
	"""The CONNACK return code (MQTT 3.1.1) for user and password."""
	c = t.client(b, version=4, connect=False)
	c.c.username_pw_set(user, password)
	c.connect(expect_rc=None)
	rc = c.connack_rc
	c.stop()
	return rc


def check_logins(t, b, good, bad):
	for user, password in good:
		assert connack(t, b, user, password) == 0, "%s/%s refused" % (user, password)
	for user, password in bad:
		assert connack(t, b, user, password) == 5, "%s/%s accepted" % (user, password)


def lines(path):
	with open(path) as f:
		return f.read().splitlines()


def line_of(path, user):
	found = [l for l in lines(path) if l.split(":", 1)[0] == user]
	assert len(found) == 1, "%s in %s: %r" % (user, path, found)
	return found[0]


def adapted_b64(data):
	"""passlib's adapted base64: '.' for '+', no '=' padding."""
	return base64.b64encode(data).decode().rstrip("=").replace("+", ".")


def from_adapted_b64(s):
	s = s.replace(".", "+")
	return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)


SHA256_LINE = re.compile(r"([^:]+):\$pbkdf2-sha256\$([0-9]+)\$([A-Za-z0-9./]+)\$([A-Za-z0-9./]+)")


def sha256_fields(line):
	"""(user, iterations, salt, hash) of a $pbkdf2-sha256$ line, which must be
	in passlib's layout (adapted base64: no '+', no '=')."""
	m = SHA256_LINE.fullmatch(line)
	assert m, "not a $pbkdf2-sha256$ line in passlib's layout: %r" % line
	return m.group(1), int(m.group(2)), from_adapted_b64(m.group(3)), from_adapted_b64(m.group(4))


def check_sha256_line(line, user, password, iterations=4096):
	"""line is user's $pbkdf2-sha256$ line for password: iterations, a 12-byte
	salt, and the hash recomputed here.  Returns the salt."""
	u, it, salt, digest = sha256_fields(line)
	assert (u, it, len(salt)) == (user, iterations, 12), (line, u, it, len(salt))
	assert digest == hashlib.pbkdf2_hmac("sha256", password.encode(), salt, it), \
		"%s: the hash is not PBKDF2-HMAC-SHA256 of %r" % (line, password)
	return salt


def test_passwd_tool_file_read_by_mosquitto(t):
	S = tool()
	need_mosquitto()
	with Dir() as d:
		f = d.file("passwd")
		ok([S, "-c", "-b", f, "alice", "secret"])
		assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
		ok([S, "-b", f, "bob", "hunter2"])
		ok([S, "-b", f, "carol", "gone soon"])
		out = ok([S, f, "dave"], input=b"typed pw\ntyped pw\n")
		assert out == "Password: \nReenter password: \n", repr(out)
		ok([S, "-D", f, "carol"])
		assert [l.split(":")[0] for l in lines(f)] == ["alice", "bob", "dave"], lines(f)
		assert all(l.split(":", 1)[1].startswith("$7$101$") for l in lines(f)), lines(f)
		assert d.names() == ["passwd"], d.names()  # no temporary file left
		assert stat.S_IMODE(os.stat(f).st_mode) == 0o600

		# mosquitto_passwd reads it: it can delete a user from a copy
		f2 = d.file("copy")
		shutil.copy(f, f2)
		ok([MOSQUITTO_PASSWD, "-D", f2, "alice"])
		assert lines(f2) == lines(f)[1:], lines(f2)

		give_to_broker(f)
		b = mosquitto_with(t, f)
		check_logins(t, b, good=[("alice", "secret"), ("bob", "hunter2"), ("dave", "typed pw")],
			     bad=[("alice", "wrong"), ("alice", "secret "), ("bob", "Hunter2"),
				  ("carol", "gone soon"), ("nobody", "secret")])


def test_passwd_tool_updates_mosquitto_file(t):
	S = tool()
	need_mosquitto()
	with Dir() as d:
		f = d.file("passwd")
		ok([MOSQUITTO_PASSWD, "-c", "-b", f, "alice", "old secret"])
		ok([MOSQUITTO_PASSWD, "-b", f, "bob", "bob pw"])
		ok([MOSQUITTO_PASSWD, "-b", f, "erin", "erin pw"])
		os.chmod(f, 0o640)
		give_to_broker(f)
		owner = os.stat(f)
		bob, erin = line_of(f, "bob"), line_of(f, "erin")

		ok([S, "-b", f, "carol", "carol pw"])  # appended
		ok([S, "-I", "1000", "-b", f, "alice", "new secret"])  # replaced in place
		assert [l.split(":")[0] for l in lines(f)] == ["alice", "bob", "erin", "carol"], lines(f)
		assert line_of(f, "bob") == bob and line_of(f, "erin") == erin
		assert line_of(f, "alice").startswith("alice:$7$1000$"), line_of(f, "alice")
		st = os.stat(f)
		assert stat.S_IMODE(st.st_mode) == 0o640, oct(st.st_mode)
		assert (st.st_uid, st.st_gid) == (owner.st_uid, owner.st_gid)
		assert d.names() == ["passwd"], d.names()

		b = mosquitto_with(t, f)
		check_logins(t, b, good=[("alice", "new secret"), ("bob", "bob pw"), ("erin", "erin pw"),
					 ("carol", "carol pw")],
			     bad=[("alice", "old secret"), ("carol", "bob pw")])


def test_passwd_tool_plain_text_file(t):
	S = tool()
	need_mosquitto()
	with Dir() as d:
		ref = d.file("ref")
		ok([MOSQUITTO_PASSWD, "-c", "-b", ref, "bob", "bob pw"])
		bob = line_of(ref, "bob")
		f = d.file("passwd")
		with open(f, "w") as fp:
			fp.write("# users\nalice:secret\n%s\n\n  carol :  spaced pw  \ndave:pw:after colon\n"
				 % bob)
		os.chmod(f, 0o644)
		ok([S, "-U", f])
		got = lines(f)
		assert got[0] == "# users" and got[2] == bob and got[3] == "", got
		for user, i in (("alice", 1), ("carol", 4), ("dave", 5)):
			assert got[i].startswith(user + ":$7$101$"), got
		assert stat.S_IMODE(os.stat(f).st_mode) == 0o644
		before = lines(f)
		ok([S, "-U", f])  # nothing plain is left: nothing changes
		assert lines(f) == before

		b = mosquitto_with(t, f)
		# dave's password stops at the second ':', as mosquitto_passwd -U reads it
		check_logins(t, b, good=[("alice", "secret"), ("bob", "bob pw"), ("carol", "spaced pw"),
					 ("dave", "pw")],
			     bad=[("alice", "alice:secret"), ("dave", "pw:after colon"),
				  ("bob", bob.split(":", 1)[1])])


def test_passwd_tool_missing_file(t):
	S = tool()
	with Dir() as d:
		f = d.file("absent")
		rc, out, err = run([S, "-b", f, "alice", "pw"])
		assert rc == 1, rc
		assert err == "Error: Unable to open password file %s. No such file or directory.\n" % f
		rc, _, err = run([S, "-D", f, "alice"])
		assert rc == 1 and "Unable to open password file" in err, (rc, err)
		rc, _, err = run([S, "-U", f])
		assert rc == 1 and "Unable to open password file" in err, (rc, err)
		rc, _, err = run([S, "-c", "-b", d.file("no/such/dir"), "alice", "pw"])
		assert rc == 1 and err.startswith("Error: Unable to open file "), (rc, err)
		assert d.names() == [], d.names()


# Wrong usage: sluice-passwd's exit status and message are mosquitto_passwd's.
USAGE_ERRORS = [
	(["-c", "-D", "F", "u"], "Error: -c and -D cannot be used together.\n"),
	(["-c", "-U", "F"], "Error: -c and -U cannot be used together.\n"),
	(["-D", "-U", "F"], "Error: -D and -U cannot be used together.\n"),
	(["-b", "-D", "F", "u"], "Error: -b and -D cannot be used together.\n"),
	(["-c", "F"], "Error: -c argument given but password file or username missing.\n"),
	(["-c", "-b", "F", "u"],
	 "Error: -c argument given but password file, username, or password missing.\n"),
	(["-D", "F"], "Error: -D argument given but password file or username missing.\n"),
	(["-U"], "Error: -U argument given but password file missing.\n"),
	(["-U", "F", "x"], "Error: -U argument given but password file missing.\n"),
	(["-H"], "Error: -H argument given but not enough other arguments.\n"),
	(["-I"], "Error: -I argument given but not enough other arguments.\n"),
	(["-H", "md5", "-b", "F", "u", "p"], "Error: Unknown hash type 'md5'\n"),
	(["-H", "sha256", "-b", "F", "u", "p"], "Error: Unknown hash type 'sha256'\n"),
	(["-H", "pbkdf2-sha256", "-b", "F", "u", "p"], "Error: Unknown hash type 'pbkdf2-sha256'\n"),
	(["-H", "SHA256-PBKDF2", "-b", "F", "u", "p"], "Error: Unknown hash type 'SHA256-PBKDF2'\n"),
	(["-H", "", "-b", "F", "u", "p"], "Error: Unknown hash type ''\n"),
	(["-I", "0", "-b", "F", "u", "p"], "Error: Number of iterations must be > 0.\n"),
	(["-I", "x", "-b", "F", "u", "p"], "Error: Number of iterations must be > 0.\n"),
	(["-b", "F", "u:x", "p"], "Error: Username must not contain the ':' character.\n"),
	(["-b", "F", "u\tx", "p"], "Error: Username must not contain control characters.\n"),
	(["-b", "F", "u"], None),  # the usage text, on stdout
	(["F"], None),
	([], None),
]


@param("case", range(len(USAGE_ERRORS)))
def test_passwd_tool_usage_errors(t, case):
	S = tool()
	args, message = USAGE_ERRORS[case]
	with Dir() as d:
		argv = [d.file("passwd") if a == "F" else a for a in args]
		rc, out, err = run([S] + argv)
		assert rc == 1, (rc, err)
		if message is None:
			assert err == "" and out.startswith("sluice-passwd: adds, changes and deletes users"), (out, err)
			assert "Usage: sluice-passwd" in out, out
		else:
			assert err == message, err
		if os.access(MOSQUITTO_PASSWD, os.X_OK):
			mrc, mout, merr = run([MOSQUITTO_PASSWD] + argv)
			assert mrc == rc, "mosquitto_passwd exits %d" % mrc
			if message is not None:
				assert merr == message, merr
		assert d.names() == [], d.names()


def test_passwd_tool_errors_leave_file_alone(t):
	S = tool()
	with Dir() as d:
		f = d.file("passwd")
		ok([S, "-c", "-b", f, "alice", "secret"])
		with open(f, "rb") as fp:
			before = fp.read()
		rc, _, err = run([S, "-D", f, "nobody"])
		assert (rc, err) == (1, "Warning: User nobody not found in password file.\n"), (rc, err)
		rc, _, err = run([S, f, "bob"], input=b"one\ntwo\n")
		assert (rc, err) == (2, "Error: Passwords do not match.\n"), (rc, err)
		rc, _, err = run([S, f, "bob"], input=b"\n")
		assert (rc, err) == (1, "Error: Empty password.\n"), (rc, err)
		rc, _, err = run([S, "-H", "sha512", "-b", f, "bob", "pw"])
		assert rc == 1 and "sha512-pbkdf2" in err, (rc, err)
		with open(f, "a") as fp:
			fp.write("broken:\n")
		rc, _, err = run([S, "-b", f, "bob", "pw"])
		assert (rc, err) == (1, "Error: Corrupt password file at line 2.\n"), (rc, err)
		with open(f, "rb") as fp:
			assert fp.read() == before + b"broken:\n"
		assert d.names() == ["passwd"], d.names()
		rc, _, _ = run([S, "-c", f, "bob"], input=b"one\ntwo\n")  # -c: nothing written either
		assert rc == 2
		with open(f, "rb") as fp:
			assert fp.read() == before + b"broken:\n"


def test_passwd_tool_sha256_pbkdf2_lines(t):
	"""-H sha256-pbkdf2: passlib's layout, 4096 iterations, a new random salt
	each time (the same password, another salt), -I for other counts; the
	other lines stay as they were; -H sha512-pbkdf2 and no -H write $7$101$."""
	S = tool()
	with Dir() as d:
		f = d.file("passwd")
		ok([S, "-c", "-H", "sha256-pbkdf2", "-b", f, "alice", "secret"])
		assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
		assert len(lines(f)) == 1, lines(f)
		alice = lines(f)[0]
		salt = check_sha256_line(alice, "alice", "secret")
		ok([S, "-H", "sha256-pbkdf2", "-b", f, "bob", "secret"])
		assert check_sha256_line(line_of(f, "bob"), "bob", "secret") != salt
		ok([S, "-H", "sha256-pbkdf2", "-I", "1000", "-b", f, "carol", "carol pw"])
		check_sha256_line(line_of(f, "carol"), "carol", "carol pw", 1000)
		ok([S, "-b", f, "dave", "dave pw"])
		ok([S, "-H", "sha512-pbkdf2", "-b", f, "erin", "erin pw"])
		for user in ("dave", "erin"):
			assert line_of(f, user).startswith(user + ":$7$101$"), line_of(f, user)
		assert line_of(f, "alice") == alice
		ok([S, "-H", "sha256-pbkdf2", "-b", f, "dave", "new dave pw"])  # replaced in place
		assert [l.split(":")[0] for l in lines(f)] == ["alice", "bob", "carol", "dave", "erin"]
		check_sha256_line(line_of(f, "dave"), "dave", "new dave pw")
		ok([S, "-D", f, "bob"])
		assert [l.split(":")[0] for l in lines(f)] == ["alice", "carol", "dave", "erin"]
		assert line_of(f, "alice") == alice
		out = ok([S, "-H", "sha256-pbkdf2", f, "frank"], input=b"typed pw\ntyped pw\n")
		assert out == "Password: \nReenter password: \n", repr(out)
		check_sha256_line(line_of(f, "frank"), "frank", "typed pw")
		assert d.names() == ["passwd"], d.names()


@param("iterations", [None, 2000])
def test_passwd_tool_sha256_pbkdf2_plain_text_file(t, iterations):
	"""-U -H sha256-pbkdf2 [-I N] hashes every plain-text password into a
	$pbkdf2-sha256$ line; comments, blank lines and hashed lines (a $7$ of
	mosquitto_passwd's, a $pbkdf2-sha256$ one) stay; a second -U changes
	nothing."""
	S = tool()
	with Dir() as d:
		f = d.file("passwd")
		ok([S, "-c", "-H", "sha256-pbkdf2", "-b", f, "hashed", "already"])
		hashed = lines(f)[0]
		seven = "bob:$7$101$" + base64.b64encode(os.urandom(12)).decode() + "$" + \
			base64.b64encode(os.urandom(64)).decode()
		with open(f, "w") as fp:
			fp.write("# users\nalice:secret\n%s\n\n  carol :  spaced pw  \n%s\ndave:pw:after colon\n"
				 % (seven, hashed))
		ok([S, "-U", "-H", "sha256-pbkdf2"] + (["-I", str(iterations)] if iterations else []) + [f])
		got = lines(f)
		assert got[0] == "# users" and got[2] == seven and got[3] == "" and got[5] == hashed, got
		it = iterations or 4096
		for user, password, i in (("alice", "secret", 1), ("carol", "spaced pw", 4),
					  ("dave", "pw", 6)):
			check_sha256_line(got[i], user, password, it)
		before = lines(f)
		ok([S, "-U", "-H", "sha256-pbkdf2", f])
		assert lines(f) == before


@param("case", ["I_zero", "I_too_many", "I_missing", "too_few_args"])
def test_passwd_tool_sha256_pbkdf2_errors(t, case):
	"""With -H sha256-pbkdf2 the other arguments fail as without it
	(mosquitto_passwd's words), and nothing is written."""
	S = tool()
	args, message = {
		"I_zero": (["-I", "0", "-b", "F", "u", "p"], "Error: Number of iterations must be > 0.\n"),
		"I_too_many": (["-I", "10000001", "-b", "F", "u", "p"],
			       "Error: Number of iterations must be at most 10000000.\n"),
		"I_missing": (["-I"], "Error: -I argument given but not enough other arguments.\n"),
		"too_few_args": (["-c", "-b", "F", "u"], "Error: -c argument given but password file, "
				 "username, or password missing.\n"),
	}[case]
	with Dir() as d:
		argv = [S, "-H", "sha256-pbkdf2"] + [d.file("passwd") if a == "F" else a for a in args]
		rc, _, err = run(argv)
		assert (rc, err) == (1, message), (rc, err)
		assert d.names() == [], d.names()
