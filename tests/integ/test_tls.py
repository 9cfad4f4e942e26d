"""TLS listeners: MQTT over TLS and secure WebSocket, as mosquitto 2.0 configures them.

The contract.  Every TLS directive belongs to the listener line above it.
certfile PATH and keyfile PATH make the listener speak TLS (MQTT over TLS
on a plain listener, wss on a "protocol websockets" one); cafile PATH /
capath DIR are the CAs client certificates are checked against;
require_certificate true makes a client without a certificate signed by
them fail the TLS handshake; use_identity_as_username true (with
require_certificate) makes the client certificate's CN the username,
whatever the CONNECT carries: the password file is not asked for that
listener and the ACL file applies to the CN.  tls_version tlsv1.2|tlsv1.3
is the minimum version (by default TLS 1.2 and 1.3 both work); ciphers LIST
is the OpenSSL cipher list of TLS 1.2 (TLS 1.3 untouched), ciphers_tls1.3
LIST the TLS 1.3 suites; crlfile PATH a CRL whose revoked client
certificates fail.  A certificate or key file that does not load, a key
that does not match the certificate, certfile without keyfile or the other
way round, require_certificate without cafile or capath stop start-up
(non-zero exit, sluice's log names the configuration's FILE:LINE of the
directive concerned).  SIGHUP reloads the certificate and key from the same
paths: new connections get the new certificate, open ones stay open and
keep working.

Measured on Debian's mosquitto 2.0.11 (OpenSSL 3.0).  On an MQTT listener
it does all of the above but three start-up checks.  Start-up errors exit
with status 1 and name the path or value, never the configuration line:
'Error: Unable to load server certificate "PATH". Check certfile.',
'Error: Unable to load server key file "PATH". Check keyfile.' (a missing
key file; a key that does not match adds 'OpenSSL Error[0]: ... key values
mismatch'), 'Error: Unable to load CA certificates. Check cafile "PATH".',
'Error: Unable to load certificate revocation file "PATH". Check
crlfile.', 'Error: Unsupported tls_version "tlsv1.0".', 'Error: Unable to
set TLS ciphers. Check cipher list "LIST".', 'Error: Unable to set TLS 1.3
ciphersuites. Check cipher_tls13 list "LIST".'  certfile without keyfile (or
keyfile without certfile) is no error: the listener starts and speaks plain
MQTT; require_certificate without cafile/capath starts too, and then every
client certificate fails the handshake ('certificate verify failed'): those
three are skipped against mosquitto.  A refused handshake is logged
'OpenSSL Error[0]: ... peer did not return a certificate' (or '...
certificate verify failed', '... unsupported protocol') and 'Client
<unknown> disconnected: Protocol error.'; mosquitto_pub exits with 8 when it
does not trust the server ('Error: A TLS error occurred.') and with 7 when
the broker drops the handshake ('Error: The connection was lost.').  SIGHUP
reloads certificate and key on both listeners and keeps open connections.
A websockets listener is libwebsockets' TLS: certfile, keyfile, cafile,
require_certificate, ciphers and ciphers_tls1.3 apply, but tls_version,
capath and crlfile do not (a TLS 1.2 client gets in under tls_version
tlsv1.3, capath's CA is unknown, a revoked certificate is accepted: those
tests carry @mosquitto_differs for listener=ws); a missing certificate or
key exits with 1 and 'Error: Unable to create websockets listener on port
N.' (no path); a missing cafile or crlfile, an unknown tls_version, cipher
list or TLS 1.3 suite list start (skipped).

The certificates (EC prime256v1, made with openssl) are made once per run
of the suite, by the first test that needs them, into a directory named
when the runner's process imports this module and removed at its exit
(tests run in forked children: a lock file makes one of them the maker,
the others wait).  ca signs server (serial 1001, CN localhost,
subjectAltName IP:127.0.0.1 and DNS:localhost), server2 (serial 1002, CN
sluice-server-2, the same names: the certificate a SIGHUP loads), alice,
bob and revoked (CN=alice, CN=bob, CN=revoked); "openssl ca -revoke" and
"-gencrl" make crl.pem revoking "revoked"; ca2, trusted nowhere, signs evil
(CN=alice) and impostor (serial 3002, CN localhost, the server's names: the
untrusted server of test_web's browser); capath/ holds ca.pem, hashed by
"openssl rehash".  A test that replaces files (SIGHUP) copies them into its
broker's directory first.

brokerlib writes one plain and one WebSocket listener and repeats only
MOSQUITTO_PER_LISTENER directives under both; TLSBroker here puts the TLS
lines of each listener right under its listener line (the WebSocket one
after "protocol websockets"), for sluice and mosquitto alike.  Clients:
Python's ssl module directly (handshake-level checks, the raw MQTT client
and a WebSocket upgrade over an SSLSocket), paho's tls_set over TCP and
WebSocket, and mosquitto_pub / mosquitto_sub with --cafile, --cert/--key,
-u/-P.
"""

import atexit
import fcntl
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import paho.mqtt.client as mqtt

import brokerlib
import clients
import rawmqtt as R
import wsclient
from clients import QUIET, get_messages
from harness import (is_mosquitto, mosquitto_differs, param, skip_on_mosquitto, timeout,
		     wait_until)
from test_auth import hup, need_passwd, write_passwd
from test_cli import PUB, Sub, need_tools

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

# -- certificates, made once per run -------------------------------------------------------

OPENSSL_CNF = """\
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ v3_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
[ v3_client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
[ ca ]
default_ca = ca_default
[ ca_default ]
dir = {dir}
database = $dir/index.txt
crlnumber = $dir/crlnumber
certificate = $dir/ca.crt
private_key = $dir/ca.key
new_certs_dir = $dir
default_md = sha256
default_crl_days = 30
"""

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

# name -> (CN, serial, extensions section, signing CA)
LEAVES = {
	"server": ("localhost", 0x1001, "v3_server", "ca"),
	"server2": ("sluice-server-2", 0x1002, "v3_server", "ca"),
	"alice": ("alice", 0x2001, "v3_client", "ca"),
	"bob": ("bob", 0x2002, "v3_client", "ca"),
	"revoked": ("revoked", 0x2003, "v3_client", "ca"),
	"evil": ("alice", 0x3001, "v3_client", "ca2"),
	"impostor": ("localhost", 0x3002, "v3_server", "ca2"),
}

# Named by the process that imports the module (the runner), made by the first forked
# test that needs it, removed at the runner's exit: runs without a TLS test leave nothing.
_CACHE = os.path.join(tempfile.gettempdir(), "integ-tls-certs-%d-%s" % (
	os.getpid(), os.urandom(6).hex()))
_CACHE_OWNER = os.getpid()


@atexit.register
def _remove_cache():
	if os.getpid() == _CACHE_OWNER:
		shutil.rmtree(_CACHE, ignore_errors=True)


def openssl(cwd, *args, stdin=None):
	r = subprocess.run([OPENSSL] + list(args), cwd=cwd, input=stdin, stdout=subprocess.PIPE,
			   stderr=subprocess.STDOUT, timeout=20)
	if r.returncode != 0:
		raise AssertionError("openssl %s failed (%d): %s" % (
			" ".join(args), r.returncode, r.stdout.decode(errors="replace")))
	return r.stdout.decode(errors="replace")


def make_ca(d, name, cn):
	openssl(d, "req", "-config", "openssl.cnf", "-x509", "-new", *EC_KEY, "-keyout",
		name + ".key", "-out", name + ".crt", "-days", "30", "-subj", "/CN=" + cn,
		"-extensions", "v3_ca", "-set_serial", "1")


def make_leaf(d, name):
	cn, serial, ext, ca = LEAVES[name]
	openssl(d, "req", "-config", "openssl.cnf", "-new", *EC_KEY, "-keyout", name + ".key",
		"-out", name + ".csr", "-subj", "/CN=" + cn)
	openssl(d, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey",
		ca + ".key", "-set_serial", str(serial), "-days", "30", "-sha256", "-extfile",
		"openssl.cnf", "-extensions", ext, "-out", name + ".crt")


def make_all(d):
	with open(os.path.join(d, "openssl.cnf"), "w") as f:
		f.write(OPENSSL_CNF.format(dir=d))
	open(os.path.join(d, "index.txt"), "w").close()
	with open(os.path.join(d, "crlnumber"), "w") as f:
		f.write("1000\n")
	make_ca(d, "ca", "sluice test CA")
	make_ca(d, "ca2", "untrusted test CA")
	for name in LEAVES:
		make_leaf(d, name)
	openssl(d, "ca", "-config", "openssl.cnf", "-revoke", "revoked.crt")
	openssl(d, "ca", "-config", "openssl.cnf", "-gencrl", "-out", "crl.pem")
	capath = os.path.join(d, "capath")
	os.mkdir(capath)
	shutil.copy(os.path.join(d, "ca.crt"), os.path.join(capath, "ca.pem"))
	openssl(d, "rehash", capath)
	for root, dirs, files in os.walk(d):
		for n in dirs:
			os.chmod(os.path.join(root, n), 0o755)
		for n in files:
			os.chmod(os.path.join(root, n), 0o644)


class Certs:
	def __init__(self, d):
		self.dir = d

	def path(self, name):
		return os.path.join(self.dir, name)

	def crt(self, who):
		return self.path(who + ".crt")

	def key(self, who):
		return self.path(who + ".key")


def certs():
	"""The run's certificates, made by the first caller (under a lock)."""
	os.makedirs(_CACHE, exist_ok=True)
	os.chmod(_CACHE, 0o755)  # mosquitto started as root reads them as user mosquitto
	d = os.path.join(_CACHE, "certs")
	with open(os.path.join(_CACHE, "lock"), "w") as lock:
		fcntl.flock(lock, fcntl.LOCK_EX)
		if not os.path.exists(os.path.join(_CACHE, "done")):
			# a maker killed half-way leaves a partial directory: start again
			shutil.rmtree(d, ignore_errors=True)
			os.mkdir(d)
			make_all(d)
			open(os.path.join(_CACHE, "done"), "w").close()
	return Certs(d)


def cert_info(der):
	"""(serial in upper-case hex, subject) of a DER certificate."""
	out = subprocess.run([OPENSSL, "x509", "-inform", "DER", "-noout", "-serial", "-subject"],
			     input=der, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
			     timeout=10).stdout.decode(errors="replace")
	serial = re.search(r"serial=([0-9A-Fa-f]+)", out)
	subject = re.search(r"subject=(.*)", out)
	assert serial and subject, "openssl x509 could not read the peer certificate: %s" % out
	return serial.group(1).upper(), subject.group(1).strip()


# -- brokers -------------------------------------------------------------------------------

class TLSBroker(brokerlib.Broker):
	"""A Broker whose two listeners get their own lines: mqtt_lines under the
	MQTT listener (port), ws_lines under the WebSocket one (ws_port); extra
	lines are global, as in brokerlib."""

	def __init__(self, mqtt_lines, ws_lines, extra=None, name="tls"):
		brokerlib.Broker.__init__(self, extra, name)
		self.mqtt_lines = list(mqtt_lines)
		self.ws_lines = list(ws_lines)

	def config_text(self):
		lines = brokerlib.Broker.config_text(self).splitlines()
		i = lines.index("listener %d 127.0.0.1" % self.port) + 1
		lines[i:i] = self.mqtt_lines
		j = lines.index("protocol websockets") + 1
		lines[j:j] = self.ws_lines
		return "\n".join(lines) + "\n"


def server_lines(c, *more, name="server"):
	return ["certfile %s" % c.crt(name), "keyfile %s" % c.key(name)] + list(more)


def tls_broker(t, mqtt_lines, ws_lines=None, extra=None, start=True):
	"""A private TLSBroker (ws_lines None: the same lines as the MQTT listener)
	that t stops and removes at the end."""
	b = TLSBroker(mqtt_lines, mqtt_lines if ws_lines is None else ws_lines, extra,
		      name=t.short[:30])
	t.brokers.append((b, 0, True))
	if start:
		b.start()
	return b


def client_broker(t, c, *more, start=True):
	"""Both listeners with the server certificate, require_certificate true,
	cafile ca.crt and the lines in more."""
	return tls_broker(t, server_lines(c, "cafile %s" % c.crt("ca"), "require_certificate true",
					  *more), start=start)


def port_of(b, listener):
	return b.ws_port if listener == "ws" else b.port


# -- Python's ssl module -------------------------------------------------------------------

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3
ONLY = {"1.2": (TLS12, TLS12), "1.3": (TLS13, TLS13)}


def ctx(c, cert=None, ca="ca", versions=None, ciphers=None):
	"""A client context trusting ca's certificate (checking the server's name)
	with cert's certificate and key; versions: "1.2" or "1.3" for that one only."""
	x = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
	x.load_verify_locations(c.crt(ca))
	if cert:
		x.load_cert_chain(c.crt(cert), c.key(cert))
	if versions:
		x.minimum_version, x.maximum_version = ONLY[versions]
	if ciphers:
		x.set_ciphers(ciphers)
	return x


def tls_open(port, context, timeout=5.0):
	"""An SSLSocket to 127.0.0.1:port after the handshake (raises ssl.SSLError /
	OSError when it fails)."""
	s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
	try:
		s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
		return context.wrap_socket(s, server_hostname="127.0.0.1")
	except BaseException:
		s.close()
		raise


def wss_upgrade(sock, port):
	"""wsclient's WebSocket upgrade (subprotocol mqtt, path /mqtt) over an
	open SSLSocket (wsclient opens plain sockets only)."""
	ws = wsclient.WSConn.__new__(wsclient.WSConn)  # WSConn.__init__ without its connect
	ws.sock = sock
	ws.rbuf = ws.data = b""
	ws.closed = False
	ws.close_code = ws.status = None
	ws.headers = {}
	ws._handshake("127.0.0.1", port, "/mqtt", "mqtt")
	return ws


class TLSRaw(R.Raw):
	"""rawmqtt's client over an already open connection (SSLSocket or WSConn)."""

	def __init__(self, conn, version=5, transport="tcp"):
		self.transport = transport
		self.version = version
		self.buf = b""
		self.eof = False
		self.send_failed = False
		self.conn = conn


def tls_raw(t, b, context, listener="mqtt", version=5):
	"""A TLSRaw to b's listener, closed at the end of the test."""
	port = port_of(b, listener)
	s = tls_open(port, context)
	conn = s
	if listener == "ws":
		try:
			conn = wss_upgrade(s, port)
		except BaseException:
			s.close()
			raise
	r = TLSRaw(conn, version, "ws" if listener == "ws" else "tcp")
	t._raws.append(r)
	return r


def tls_connack(t, b, context, listener="mqtt", version=5, username=None, password=None,
		what=""):
	"""(TLSRaw, CONNACK code) of a CONNECT over TLS; a failed TLS session or no
	CONNACK is an AssertionError saying so."""
	try:
		r = tls_raw(t, b, context, listener, version)
		r.send(R.connect(t.cid("t"), version, username=username, password=password))
		return r, r.expect(R.CONNACK).connack()[1]
	except (ssl.SSLError, OSError, R.Closed, wsclient.HandshakeError) as e:
		raise AssertionError("%s%s listener: no TLS session with CONNACK: %s: %s" % (
			what, listener, type(e).__name__, e))


def mqtt_login(t, b, context, listener="mqtt", version=5, username=None, password=None,
	       what=""):
	"""A TLSRaw that has had CONNACK 0."""
	r, rc = tls_connack(t, b, context, listener, version, username, password, what)
	assert rc == 0, "%s%s listener: CONNACK 0x%02x" % (what, listener, rc)
	return r


def session(port, context, what=""):
	"""(TLS version, cipher name) of a handshake that must succeed."""
	try:
		s = tls_open(port, context)
	except (ssl.SSLError, OSError) as e:
		raise AssertionError("%shandshake failed: %s: %s" % (what, type(e).__name__, e))
	try:
		return s.version(), s.cipher()[0]
	finally:
		s.close()


def refused(t, b, context, listener="mqtt", what=""):
	"""The TLS session must fail: at the handshake, or (TLS 1.3, where the
	client's side of the handshake ends before the server has checked the
	client's certificate) with an alert or a close before any answer to the
	CONNECT (or the WebSocket upgrade).  Returns how it failed."""
	port = port_of(b, listener)
	try:
		s = tls_open(port, context)
	except (ssl.SSLError, OSError) as e:
		return "handshake: %s" % e
	try:
		if listener == "ws":
			try:
				wss_upgrade(s, port)
			except wsclient.HandshakeError as e:
				if e.status.startswith("HTTP"):
					raise AssertionError("%sws listener: the TLS session was "
						     "accepted and the upgrade answered %r" %
						     (what, e.status))
				return "after the handshake: %s" % e
			except socket.timeout:
				raise AssertionError("%sws listener: TLS accepted, then no answer "
						     "and no close within 5s" % what)
			except (ssl.SSLError, OSError) as e:
				return "after the handshake: %s" % e
			raise AssertionError("%sws listener: the TLS session was accepted and the "
					     "WebSocket upgrade answered 101" % what)
		r = TLSRaw(s)
		try:
			r.send(R.connect(t.cid("no"), 5))
			p = r.recv(5)
		except socket.timeout:
			raise AssertionError("%smqtt listener: TLS accepted, then no CONNACK "
					     "and no close within 5s" % what)
		except (ssl.SSLError, OSError, R.Closed) as e:
			return "after the handshake: %s" % e
		raise AssertionError("%smqtt listener: the TLS session was accepted and the "
				     "CONNECT answered %r" % (what, p))
	finally:
		s.close()


def assert_plain_not_served(t, b, listener):
	"""A client without TLS (a CONNECT, or a WebSocket upgrade) gets no answer
	in its own protocol from the TLS listener."""
	port = port_of(b, listener)
	if listener == "ws":
		try:
			ws = wsclient.WSConn("127.0.0.1", port, timeout=3)
		except (wsclient.HandshakeError, OSError):
			return
		ws.close()
		raise AssertionError("a plain WebSocket upgrade to the wss listener succeeded")
	s = socket.create_connection(("127.0.0.1", port), timeout=3)
	data = b""
	try:
		s.sendall(R.connect(t.cid("plain"), 5))
		while True:
			chunk = s.recv(4096)
			if not chunk:
				break
			data += chunk
	except OSError:
		pass  # reset or timeout: not served either
	finally:
		s.close()
	assert not data.startswith(b"\x20"), \
		"a plain CONNECT to the TLS listener was answered %r" % data[:16]


def peer_cert(port, context):
	"""(serial, subject) of the certificate the listener presents now."""
	s = tls_open(port, context)
	try:
		return cert_info(s.getpeercert(binary_form=True))
	finally:
		s.close()


def pub_rc(r, topic, payload, pid):
	"""A QoS 1 PUBLISH from raw client r: the PUBACK's reason code (0 at 3.1.1)."""
	r.send(R.publish(topic, payload, 1, False, pid=pid, version=r.version))
	return r.expect(R.PUBACK).reason()


# -- paho and the mosquitto clients --------------------------------------------------------

def paho(t, b, version=5, transport="tcp", cert=None, ca="ca", username=None, password=None):
	"""A paho client over TLS (tls_set: ca's certificate, cert's certificate and key),
	connected with CONNACK 0."""
	c = certs()
	p = t.client(b, version=version, transport=transport, connect=False)
	p.c.tls_set(ca_certs=c.crt(ca), certfile=c.crt(cert) if cert else None,
		    keyfile=c.key(cert) if cert else None)
	if username is not None:
		p.c.username_pw_set(username, password)
	return p.connect()


def paho_fails(t, b, version=5, transport="tcp", cert=None, ca="ca", what=""):
	"""paho's TLS connection (as paho() makes it) must fail: an error from
	connect() or from its loop before any CONNACK.  paho is driven here, not
	through clients.Client, whose loop thread dies on the SSLError of a TLS 1.3
	alert instead of reporting the disconnect."""
	c = certs()
	m = mqtt.Client(t.cid("pf"), protocol=clients.VERSIONS[version],
			transport="websockets" if transport == "ws" else "tcp")
	if transport == "ws":
		m.ws_set_options(path="/mqtt")
	m.tls_set(ca_certs=c.crt(ca), certfile=c.crt(cert) if cert else None,
		  keyfile=c.key(cert) if cert else None)
	acks = []
	m.on_connect = lambda client, ud, flags, rc, props=None: acks.append(clients.rc_value(rc))
	port = b.ws_port if transport == "ws" else b.port
	try:
		m.connect("127.0.0.1", port, 60)
		deadline = time.monotonic() + 5
		while not acks and time.monotonic() < deadline:
			rc = m.loop(0.05)
			if rc != mqtt.MQTT_ERR_SUCCESS:
				return "paho loop: %s" % mqtt.error_string(rc)
	except (ssl.SSLError, OSError, ValueError) as e:
		return "%s: %s" % (type(e).__name__, e)
	finally:
		sock = m.socket()
		if sock is not None:
			try:
				sock.close()
			except OSError:
				pass
	if acks:
		raise AssertionError("%spaho (%s, certificate %s) got CONNACK %r" % (
			what, transport, cert, acks[0]))
	raise AssertionError("%spaho (%s, certificate %s): neither CONNACK nor an error in 5s" %
			     (what, transport, cert))


def tls_args(cert=None, ca="ca"):
	c = certs()
	args = ["--cafile", c.crt(ca)]
	if cert:
		args += ["--cert", c.crt(cert), "--key", c.key(cert)]
	return args


def cli(b, tool, args, timeout=10):
	"""mosquitto_pub / mosquitto_sub at b's MQTT listener: (exit status, output)."""
	r = subprocess.run([tool, "-h", "127.0.0.1", "-p", str(b.port)] + args,
			   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
			   stdin=subprocess.DEVNULL, timeout=timeout)
	return r.returncode, r.stdout.decode(errors="replace")


def cli_round_trip(t, b, proto, args_sub, args_pub, topic=None, what=""):
	"""mosquitto_sub (args_sub) receives what mosquitto_pub (args_pub) sends;
	both exit with status 0."""
	tp = topic or t.topic("cli")
	payload = "tls %s %s" % (proto, os.urandom(3).hex())
	s = Sub(b, ["-V", proto, "-q", "1", "-t", tp, "-F", "%p"] + args_sub)
	try:
		s.wait_subscribed()
		rc, out = cli(b, PUB, ["-V", proto, "-q", "1", "-t", tp, "-m", payload] + args_pub)
		assert rc == 0, "%smosquitto_pub exit status %d: %s" % (what, rc, out)
		lines = s.output()
		assert s.p.returncode == 0, "%smosquitto_sub exit status %d: %r" % (
			what, s.p.returncode, lines)
		assert payload in lines, "%smosquitto_sub did not print %r: %r" % (what, payload,
											 lines)
	finally:
		s.kill()


def cli_fails(b, args, what):
	"""mosquitto_pub with args must exit non-zero (and within its time limit)."""
	rc, out = cli(b, PUB, ["-q", "1", "-t", "tls/no", "-m", "no"] + args)
	assert rc != 0, "%s: mosquitto_pub exit status 0: %s" % (what, out)
	return rc, out


VERSIONS = {"mqttv311": 4, "mqttv5": 5}
REFUSED = {4: 5, 5: 0x87}  # CONNACK: 3.1.1 "not authorised", 5.0 "Not authorized"


# -- plain TLS: round trips ----------------------------------------------------------------

@timeout(30)
@param("proto", ["mqttv311", "mqttv5"])
def test_tls_mosquitto_clients(t, proto):
	"""mosquitto_sub --cafile receives what mosquitto_pub --cafile sends over
	TLS (exit status 0).  mosquitto_pub without TLS, and with --cafile of a
	CA that did not sign the server's certificate, exits non-zero."""
	need_tools()
	c = certs()
	b = tls_broker(t, server_lines(c))
	cli_round_trip(t, b, proto, tls_args(), tls_args())
	cli_fails(b, ["-V", proto], "without TLS")
	cli_fails(b, ["-V", proto] + tls_args(ca="ca2"), "--cafile of an untrusted CA")


@timeout(30)
@param("version", [4, 5])
@param("transport", ["tcp", "ws"])
def test_tls_paho_round_trip(t, version, transport):
	"""paho with tls_set (checking the name 127.0.0.1 against the server's
	subjectAltName): a QoS 1 round trip over TLS / wss between two clients;
	the TCP one's socket is a TLS session.  A client without TLS is not served
	on the listener, paho trusting another CA fails."""
	c = certs()
	b = tls_broker(t, server_lines(c))
	tp = t.topic("paho")
	sub = paho(t, b, version, transport)
	assert sub.subscribe(tp, 1) == [1]
	pub = paho(t, b, version, transport)
	pub.publish(tp, b"over tls", 1)
	m = sub.wait_message()
	assert m.payload == b"over tls" and m.topic == tp, (m.topic, m.payload)
	if transport == "tcp":
		sock = pub.c.socket()
		tls = isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
		assert tls, "paho's socket is %r" % sock
	assert_plain_not_served(t, b, "ws" if transport == "ws" else "mqtt")
	paho_fails(t, b, version, transport, ca="ca2", what="untrusted server certificate: ")
	assert not sub.disconnected.is_set(), "the subscriber was disconnected"


@timeout(30)
@param("version", [4, 5])
def test_tls_raw_mqtt_over_both_listeners(t, version):
	"""Byte-level: CONNECT, SUBSCRIBE, PUBLISH and PINGREQ over an SSLSocket on
	the MQTT listener and over wss on the WebSocket one; a message crosses
	from each to the other."""
	c = certs()
	b = tls_broker(t, server_lines(c))
	tp = t.topic("raw")
	x = ctx(c)
	peers = {}
	for listener in ("mqtt", "ws"):
		r = mqtt_login(t, b, x, listener, version)
		r.send(R.subscribe(1, [(tp + "/" + listener, 1)], version=version))
		assert r.expect(R.SUBACK).suback()[1] == [1]
		r.send(R.pingreq())
		r.expect(R.PINGRESP)
		peers[listener] = r
	for src, dst in (("mqtt", "ws"), ("ws", "mqtt")):
		payload = ("from %s" % src).encode()
		peers[src].send(R.publish(tp + "/" + dst, payload, 1, pid=7, version=version))
		assert peers[src].expect(R.PUBACK).pid() == 7
		got = peers[dst].expect(R.PUBLISH).publish()
		assert got["payload"] == payload, got


# -- versions and ciphers ------------------------------------------------------------------

WS_DIFFERS = "mosquitto 2.0.11 does not apply %s to a websockets listener"


@param("listener", ["mqtt", "ws"])
def test_tls_versions_1_2_and_1_3_by_default(t, listener):
	"""No tls_version: a TLS 1.2-only client and a TLS 1.3-only client both
	get their version, and MQTT works over each."""
	c = certs()
	b = tls_broker(t, server_lines(c))
	for v in ("1.2", "1.3"):
		got = session(port_of(b, listener), ctx(c, versions=v), "TLS %s only: " % v)[0]
		assert got == "TLSv" + v, "asked for TLS %s only, got %s" % (v, got)
		mqtt_login(t, b, ctx(c, versions=v), listener, 5, what="TLS %s: " % v)


@mosquitto_differs(WS_DIFFERS % "tls_version", listener="ws")
@param("listener", ["mqtt", "ws"])
def test_tls_version_tlsv1_3_refuses_tls_1_2(t, listener):
	"""tls_version tlsv1.3: a TLS 1.2-only client fails the handshake, a
	TLS 1.3 one gets a session and MQTT."""
	c = certs()
	b = tls_broker(t, server_lines(c, "tls_version tlsv1.3"))
	refused(t, b, ctx(c, versions="1.2"), listener, "TLS 1.2 only: ")
	v = session(port_of(b, listener), ctx(c), "default client: ")[0]
	assert v == "TLSv1.3", v
	mqtt_login(t, b, ctx(c, versions="1.3"), listener, 5, what="TLS 1.3: ")


@param("listener", ["mqtt", "ws"])
def test_tls_version_tlsv1_2_is_a_minimum(t, listener):
	"""tls_version tlsv1.2 is the minimum, not the only version: TLS 1.2 and
	TLS 1.3 clients both get their version and MQTT."""
	c = certs()
	b = tls_broker(t, server_lines(c, "tls_version tlsv1.2"))
	for v in ("1.2", "1.3"):
		got = session(port_of(b, listener), ctx(c, versions=v), "TLS %s only: " % v)[0]
		assert got == "TLSv" + v, "TLS %s only, got %s" % (v, got)
		mqtt_login(t, b, ctx(c, versions=v), listener, 5, what="TLS %s: " % v)


CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"
OTHER_CIPHER = "ECDHE-ECDSA-AES256-GCM-SHA384"


@param("listener", ["mqtt", "ws"])
def test_tls_ciphers_restrict_tls_1_2(t, listener):
	"""ciphers ECDHE-ECDSA-AES128-GCM-SHA256: a TLS 1.2 client offering only
	ECDHE-ECDSA-AES256-GCM-SHA384 fails; one offering the allowed suite gets it
	(also when it lists two others first), and MQTT works; TLS 1.3 is
	untouched."""
	c = certs()
	b = tls_broker(t, server_lines(c, "ciphers %s" % CIPHER))
	port = port_of(b, listener)
	refused(t, b, ctx(c, versions="1.2", ciphers=OTHER_CIPHER), listener,
		"TLS 1.2 offering only %s: " % OTHER_CIPHER)
	for offer in (CIPHER, "ECDHE-ECDSA-CHACHA20-POLY1305:%s:%s" % (OTHER_CIPHER, CIPHER)):
		v, name = session(port, ctx(c, versions="1.2", ciphers=offer),
				  "TLS 1.2 offering %s: " % offer)
		assert (v, name) == ("TLSv1.2", CIPHER), "offering %s: %s %s" % (offer, v, name)
	mqtt_login(t, b, ctx(c, versions="1.2", ciphers=CIPHER), listener, 5,
		   what="TLS 1.2 with %s: " % CIPHER)
	v = session(port, ctx(c, versions="1.3"), "TLS 1.3: ")[0]
	assert v == "TLSv1.3", v
	mqtt_login(t, b, ctx(c, versions="1.3"), listener, 5, what="TLS 1.3: ")


SUITE13 = "TLS_CHACHA20_POLY1305_SHA256"
OTHER_SUITE13 = "TLS_AES_256_GCM_SHA384"


def s_client_tls13(c, port, suites):
	"""openssl s_client -tls1_3 -ciphersuites SUITES (Python cannot choose TLS 1.3
	suites): (exit status, output)."""
	r = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_3",
			    "-ciphersuites", suites, "-CAfile", c.crt("ca"), "-verify_return_error",
			    "-brief"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
			   stderr=subprocess.STDOUT, timeout=10)
	return r.returncode, r.stdout.decode(errors="replace")


@param("listener", ["mqtt", "ws"])
def test_tls_ciphers_tls1_3_restrict_tls_1_3(t, listener):
	"""ciphers_tls1.3 TLS_CHACHA20_POLY1305_SHA256: a default TLS 1.3 client
	(offering all three suites) gets that suite; openssl s_client offering only
	TLS_AES_256_GCM_SHA384 fails, offering the allowed one works; TLS 1.2 is
	untouched."""
	c = certs()
	b = tls_broker(t, server_lines(c, "ciphers_tls1.3 %s" % SUITE13))
	port = port_of(b, listener)
	v, name = session(port, ctx(c, versions="1.3"), "TLS 1.3: ")
	assert (v, name) == ("TLSv1.3", SUITE13), "%s %s" % (v, name)
	rc, out = s_client_tls13(c, port, OTHER_SUITE13)
	assert rc != 0, "s_client offering only %s: exit 0:\n%s" % (OTHER_SUITE13, out)
	rc, out = s_client_tls13(c, port, SUITE13)
	assert rc == 0 and SUITE13 in out, "s_client offering %s: exit %d:\n%s" % (SUITE13, rc, out)
	assert session(port, ctx(c, versions="1.2"), "TLS 1.2: ")[0] == "TLSv1.2"
	mqtt_login(t, b, ctx(c), listener, 5)


# -- client certificates -------------------------------------------------------------------

@param("listener", ["mqtt", "ws"])
def test_tls_require_certificate_handshake(t, listener):
	"""require_certificate true, cafile ca.crt: without a client certificate,
	and with one from an untrusted CA (CN=alice all the same), the TLS session
	fails at TLS 1.2 and 1.3; alice's and bob's certificates get one and MQTT."""
	c = certs()
	b = client_broker(t, c)
	for v in ("1.2", "1.3"):
		refused(t, b, ctx(c, versions=v), listener, "TLS %s, no certificate: " % v)
		refused(t, b, ctx(c, "evil", versions=v), listener, "TLS %s, untrusted CA: " % v)
		for who in ("alice", "bob"):
			mqtt_login(t, b, ctx(c, who, versions=v), listener, 5,
				   what="TLS %s, %s: " % (v, who))


@timeout(40)
@param("proto", ["mqttv311", "mqttv5"])
def test_tls_require_certificate_clients(t, proto):
	"""require_certificate: mosquitto_sub --cert alice receives from mosquitto_pub
	--cert bob; mosquitto_pub without --cert or with the untrusted CA's
	certificate exits non-zero.  paho: alice and bob over TLS and wss make a
	round trip; without a certificate or with the untrusted one it fails."""
	need_tools()
	c = certs()
	b = client_broker(t, c)
	cli_round_trip(t, b, proto, ["-V", proto] + tls_args("alice"),
		       ["-V", proto] + tls_args("bob"))
	cli_fails(b, ["-V", proto] + tls_args(), "no client certificate")
	cli_fails(b, ["-V", proto] + tls_args("evil"), "untrusted CA's certificate")
	version = VERSIONS[proto]
	for transport in ("tcp", "ws"):
		tp = t.topic("req/" + transport)
		sub = paho(t, b, version, transport, "alice")
		assert sub.subscribe(tp, 1) == [1]
		paho(t, b, version, transport, "bob").publish(tp, b"with cert", 1)
		assert sub.wait_message().payload == b"with cert"
		paho_fails(t, b, version, transport, None, what="no certificate: ")
		paho_fails(t, b, version, transport, "evil", what="untrusted certificate: ")


@mosquitto_differs(WS_DIFFERS % "capath", listener="ws")
@param("listener", ["mqtt", "ws"])
def test_tls_capath(t, listener):
	"""capath DIR (ca.pem, hashed by openssl rehash) instead of cafile: alice's
	certificate gets a session, none or the untrusted CA's does not."""
	c = certs()
	b = tls_broker(t, server_lines(c, "capath %s" % c.path("capath"),
				       "require_certificate true"))
	mqtt_login(t, b, ctx(c, "alice"), listener, 5, what="alice: ")
	refused(t, b, ctx(c), listener, "no certificate: ")
	refused(t, b, ctx(c, "evil"), listener, "untrusted CA: ")


@timeout(30)
@mosquitto_differs(WS_DIFFERS % "crlfile", listener="ws")
@param("listener", ["mqtt", "ws"])
def test_tls_crlfile_refuses_revoked(t, listener):
	"""crlfile crl.pem (revoking CN=revoked): the revoked certificate fails at
	TLS 1.2 and 1.3 (and with mosquitto_pub); alice and bob, signed by the same
	CA and not revoked, get sessions."""
	c = certs()
	b = client_broker(t, c, "crlfile %s" % c.path("crl.pem"))
	for v in ("1.2", "1.3"):
		refused(t, b, ctx(c, "revoked", versions=v), listener, "TLS %s, revoked: " % v)
		for who in ("alice", "bob"):
			mqtt_login(t, b, ctx(c, who, versions=v), listener, 5,
				   what="TLS %s, %s: " % (v, who))
	if listener == "mqtt" and shutil.which(PUB):
		cli_fails(b, tls_args("revoked"), "revoked certificate")
		rc, out = cli(b, PUB, ["-q", "1", "-t", "tls/crl", "-m", "ok"] + tls_args("alice"))
		assert rc == 0, "mosquitto_pub --cert alice: exit status %d: %s" % (rc, out)


# -- use_identity_as_username --------------------------------------------------------------

IDENTITY_ACL = """\
user alice
topic readwrite alice/#
user bob
topic read alice/#
topic read bob/#
"""

# what a CONNECT carries besides the certificate
CLAIMS = [(None, None), ("bob", "not bob's password"), ("alice", "wrong"), ("carol", "carol-pw"),
	  ("carol", None)]


def identity_broker(t, ws_lines=None):
	"""use_identity_as_username on the MQTT listener and (ws_lines None) the
	WebSocket one; global: allow_anonymous false, a password file holding carol
	only, IDENTITY_ACL."""
	need_passwd()
	c = certs()
	b = client_broker(t, c, "use_identity_as_username true", start=False)
	if ws_lines is not None:
		b.ws_lines = ws_lines
	pw = os.path.join(b.dir, "passwd")
	write_passwd(pw, [("carol", "carol-pw")])
	acl = os.path.join(b.dir, "acl")
	with open(acl, "w") as f:
		f.write(IDENTITY_ACL)
	os.chmod(acl, 0o644)
	b.extra = ["allow_anonymous false", "password_file %s" % pw, "acl_file %s" % acl]
	b.start()
	return c, b


@timeout(40)
@param("version", [4, 5])
@param("listener", ["mqtt", "ws"])
def test_tls_use_identity_as_username(t, version, listener):
	"""The CN is the username whatever the CONNECT says: alice's certificate is
	accepted with no username, bob's name and a wrong password, her own name
	and a wrong password, carol's right password, and every time may publish
	to alice/x but not to bob/x (PUBACK 0x87 at 5.0; at 3.1.1 acknowledged
	and dropped); bob's certificate claiming to be alice may not publish to
	alice/x.  bob (read alice/#, bob/#) watches what goes through."""
	c, b = identity_broker(t)
	watch = paho(t, b, 5, "ws" if listener == "ws" else "tcp", "bob", username="bob",
		     password="whatever")
	assert watch.subscribe("alice/#", 1) == [1]
	assert watch.subscribe("bob/#", 1) == [1]
	n = 0
	for user, password in CLAIMS:
		n += 1
		what = "alice's certificate, username %r password %r: " % (user, password)
		r = mqtt_login(t, b, ctx(c, "alice"), listener, version, user, password, what)
		rc = pub_rc(r, "bob/x", b"denied", 2 * n)
		assert rc == (0x87 if version == 5 else 0), "%sbob/x: PUBACK 0x%02x" % (what, rc)
		rc = pub_rc(r, "alice/x", ("allowed %d" % n).encode(), 2 * n + 1)
		assert rc in (0, 0x10), "%salice/x: PUBACK 0x%02x" % (what, rc)
		m = watch.wait_message(5, "(alice/x from alice, %s)" % what)
		assert (m.topic, m.payload) == ("alice/x", ("allowed %d" % n).encode()), \
			"%sbob received %r (bob/x must have been dropped)" % (what, (m.topic,
										       m.payload))
		r.send(R.disconnect(version=version))
	r = mqtt_login(t, b, ctx(c, "bob"), listener, version, "alice", "wrong",
		       "bob's certificate as alice: ")
	rc = pub_rc(r, "alice/x", b"bob as alice", 99)
	assert rc == (0x87 if version == 5 else 0), "bob's certificate, alice/x: 0x%02x" % rc
	got = get_messages(watch, 100, QUIET)
	assert not got, "bob's watcher received %r" % [(m.topic, m.payload) for m in got]


@timeout(30)
@param("version", [4, 5])
def test_tls_use_identity_as_username_is_per_listener(t, version):
	"""use_identity_as_username on the MQTT listener only; the wss listener,
	asking for no client certificate, asks the password file: there carol's
	right password is accepted, and alice's name, carol's with a wrong
	password, or no username are refused (0x87 / 5), while on the MQTT
	listener alice's certificate with the same CONNECTs is accepted."""
	c, b = identity_broker(t, ws_lines=server_lines(certs()))
	for user, password in [("carol", "carol-pw"), ("alice", "wrong"), ("carol", "wrong"),
			       (None, None)]:
		what = "username %r password %r: " % (user, password)
		want = 0 if user == "carol" and password == "carol-pw" else REFUSED[version]
		rc = tls_connack(t, b, ctx(c), "ws", version, user, password, what)[1]
		assert rc == want, "%sws listener (password file): CONNACK 0x%02x, expected " \
			"0x%02x" % (what, rc, want)
		mqtt_login(t, b, ctx(c, "alice"), "mqtt", version, user, password,
			   "alice's certificate, " + what)


@timeout(40)
@param("proto", ["mqttv311", "mqttv5"])
def test_tls_use_identity_as_username_mosquitto_clients(t, proto):
	"""mosquitto_sub --cert bob -u carol -P wrong receives what mosquitto_pub
	--cert alice -u bob -P wrong publishes to alice/x (both exit 0); without a
	certificate carol's right password does not get in (exit non-zero)."""
	need_tools()
	c, b = identity_broker(t)
	cli_round_trip(t, b, proto, ["-V", proto, "-u", "carol", "-P", "wrong"] + tls_args("bob"),
		       ["-V", proto, "-u", "bob", "-P", "wrong"] + tls_args("alice"),
		       topic="alice/cli")
	cli_fails(b, ["-V", proto, "-u", "carol", "-P", "carol-pw"] + tls_args(),
		  "no certificate, carol's right password")


# -- start-up errors -----------------------------------------------------------------------

# case -> (lines of the listener, given the certificates; the line the error is about,
# as an index into those lines, or a tuple of indexes any of which will do)
def bad_config(c, d, case):
	missing = os.path.join(d, "no-such-file")
	crt, key = "certfile %s" % c.crt("server"), "keyfile %s" % c.key("server")
	req = "require_certificate true"
	return {
		"cert_missing": (["certfile %s" % missing, key], 0),
		"key_missing": ([crt, "keyfile %s" % missing], 1),
		"key_mismatch": ([crt, "keyfile %s" % c.key("alice")], (0, 1)),
		"cert_without_key": ([crt], 0),
		"key_without_cert": ([key], 0),
		"require_certificate_without_ca": ([crt, key, req], 2),
		"cafile_missing": ([crt, key, "cafile %s" % missing, req], 2),
		"crlfile_missing": ([crt, key, "cafile %s" % c.crt("ca"), req,
				     "crlfile %s" % missing], 4),
		"tls_version_unknown": ([crt, key, "tls_version tlsv1.0"], 2),
		"ciphers_unknown": ([crt, key, "ciphers NO-SUCH-CIPHER"], 2),
		"ciphers_tls13_unknown": ([crt, key, "ciphers_tls1.3 TLS_NO_SUCH_SUITE"], 2),
	}[case]


BAD_CASES = ["cert_missing", "key_missing", "key_mismatch", "cert_without_key",
	     "key_without_cert", "require_certificate_without_ca", "cafile_missing",
	     "crlfile_missing", "tls_version_unknown", "ciphers_unknown", "ciphers_tls13_unknown"]

MOSQUITTO_STARTS = {
	"cert_without_key": "mosquitto 2.0.11 starts: certfile without keyfile is a plain listener",
	"key_without_cert": "mosquitto 2.0.11 starts: keyfile without certfile is a plain listener",
	"require_certificate_without_ca": "mosquitto 2.0.11 starts, then fails every client "
					  "certificate",
}
# mosquitto 2.0.11 hands a websockets listener's files and cipher lists to
# libwebsockets, which starts without a CA file or with a cipher list it cannot use
MOSQUITTO_WS_STARTS = {"cafile_missing", "crlfile_missing", "tls_version_unknown",
		       "ciphers_unknown", "ciphers_tls13_unknown"}


def failed_start(t, case, listener):
	"""(broker, exit status, the directive lines the error may name) of a start-up
	with case's lines on listener (the other one plain)."""
	if case in MOSQUITTO_STARTS:
		skip_on_mosquitto(MOSQUITTO_STARTS[case])
	if listener == "ws" and case in MOSQUITTO_WS_STARTS:
		skip_on_mosquitto("mosquitto 2.0.11 starts: it does not check that line of a "
				  "websockets listener")
	c = certs()
	b = tls_broker(t, [], [], start=False)
	lines, which = bad_config(c, b.dir, case)
	if listener == "ws":
		b.ws_lines = lines
	else:
		b.mqtt_lines = lines
	rc = brokerlib.start_failure(b, "the broker started with %s on the %s listener: %s" % (
		case, listener, lines))
	idx = which if isinstance(which, tuple) else (which,)
	return b, rc, [lines[i] for i in idx]


@param("case", BAD_CASES)
@param("listener", ["mqtt", "ws"])
def test_tls_bad_config_stops_startup(t, case, listener):
	"""Start-up stops with a non-zero exit status; a file that does not exist
	is named in the log."""
	b, rc, lines = failed_start(t, case, listener)
	assert rc != 0, "exit status 0 although start-up failed"
	if case.endswith("_missing") and not (is_mosquitto() and listener == "ws"):
		# mosquitto 2.0.11, websockets: "Unable to create websockets listener on port N."
		missing = os.path.join(b.dir, "no-such-file")
		assert missing in b.log_text(), "the log does not name %s:\n%s" % (missing,
										     b.log_text())


@param("case", BAD_CASES)
@param("listener", ["mqtt", "ws"])
def test_tls_bad_config_names_conf_line(t, case, listener):
	"""... and the log names the configuration's FILE:LINE of the directive
	concerned."""
	skip_on_mosquitto("mosquitto 2.0.11 names the file or value, not the configuration line")
	b, rc, lines = failed_start(t, case, listener)
	assert rc != 0, "exit status 0 although start-up failed"
	conf = b.config_text().splitlines()
	numbers = [conf.index(l) + 1 for l in lines]
	log = b.log_text()
	assert any(re.search(r"broker\.conf:%d\b" % n, log) for n in numbers), \
		"no log line names broker.conf:%s (%s):\n%s" % (
			" or :".join(map(str, numbers)), " / ".join(lines), log)


# -- SIGHUP --------------------------------------------------------------------------------

def install(c, d, name):
	"""c's certificate and key NAME as d/live.crt, d/live.key (replaced by rename)."""
	for ext in ("crt", "key"):
		tmp = os.path.join(d, "live.%s.new" % ext)
		shutil.copy(c.path("%s.%s" % (name, ext)), tmp)
		os.chmod(tmp, 0o644)
		os.replace(tmp, os.path.join(d, "live.%s" % ext))


@timeout(40)
@param("listener", ["mqtt", "ws"])
def test_tls_sighup_reloads_certificate(t, listener):
	"""The listener's certfile/keyfile are replaced by server2's (same paths)
	and SIGHUP: new TLS sessions get serial 1002, CN sluice-server-2 (before:
	1001, CN localhost) and MQTT; a paho subscriber, a wss paho subscriber and
	a raw TLS client, all connected before the reload, stay open: the
	subscribers receive a message published after it, the raw client gets
	PINGRESP and can still publish."""
	c = certs()
	b = tls_broker(t, [], [], start=False)
	install(c, b.dir, "server")
	lines = ["certfile %s" % os.path.join(b.dir, "live.crt"),
		 "keyfile %s" % os.path.join(b.dir, "live.key")]
	b.mqtt_lines = b.ws_lines = lines
	b.start()
	port = port_of(b, listener)
	x = ctx(c)
	serial, subject = peer_cert(port, x)
	assert serial == "1001" and "localhost" in subject, (serial, subject)
	tp = t.topic("hup")
	subs = [paho(t, b, 5, "tcp"), paho(t, b, 5, "ws")]
	for s in subs:
		assert s.subscribe(tp, 1) == [1]
	old = mqtt_login(t, b, x, listener, 5, what="before the reload: ")
	install(c, b.dir, "server2")
	hup(b)

	def reloaded():
		return peer_cert(port, x)[0] == "1002"
	wait_until(reloaded, 5, "serial 1002 on the %s listener after SIGHUP" % listener)
	serial, subject = peer_cert(port, x)
	assert serial == "1002" and "sluice-server-2" in subject, (serial, subject)
	new = mqtt_login(t, b, x, listener, 5, what="after the reload: ")
	old.send(R.pingreq())
	old.expect(R.PINGRESP)
	old.send(R.publish(tp, b"old session", 1, pid=3))
	assert old.expect(R.PUBACK).pid() == 3
	new.send(R.publish(tp, b"new session", 1, pid=4))
	assert new.expect(R.PUBACK).pid() == 4
	for s in subs:
		got = sorted(m.payload for m in s.wait_messages(2))
		assert got == [b"new session", b"old session"], "%s: %r" % (s.transport, got)
		assert not s.disconnected.is_set(), "the %s subscriber was disconnected" % (
			s.transport)
