"""The status page in web/: served by a WebSocket listener's http_dir, it
connects back over MQTT/WebSocket and shows $SYS/broker/... live.  Checked
in a real browser: headless Chromium renders it, and the DOM must show the
connection and the broker's version.

Over TLS the same listener serves https and wss.  Chromium is made to trust
the run's test CA (test_tls's certificates) and nothing more: an NSS
database in a temporary HOME (where Chromium on Linux looks for locally
trusted CAs, $HOME/.pki/nssdb) holds ca.crt as a CA for web servers, so the
browser checks the chain and the name 127.0.0.1 itself; no flag relaxes
its certificate checks.  Every Chromium run gets such a HOME of its own,
with the profile inside it."""

import os
import re
import shutil
import subprocess
import tempfile

from brokerlib import free_port
from harness import skip_on_mosquitto, timeout, Skip
from test_operation import Proc, write_conf
from test_tls import certs, server_lines, tls_broker

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CERTUTIL = shutil.which("certutil")


def need_page():
	"""The web/ directory, when this test can run at all (Skip otherwise)."""
	skip_on_mosquitto("sluice's own status page")
	if not CHROMIUM:
		raise Skip("chromium not installed (Debian package chromium)")
	web = os.path.join(os.environ.get("SLUICE_SRCDIR", "."), "web")
	if not os.path.exists(os.path.join(web, "index.html")):
		raise Skip("web/index.html not found (SLUICE_SRCDIR unset?)")
	return web


def render(home, url, done, loads=3):
	"""(DOM, Chromium's stderr) of url in headless Chromium with HOME=home,
	after up to loads page loads until done(DOM).  Chromium's virtual time can
	run out before the WebSocket is up on a loaded machine (the sanitizer
	build, tests in parallel): the caller judges the last load."""
	env = dict(os.environ, HOME=home)
	args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--user-data-dir=" + os.path.join(home, "profile"),
		"--virtual-time-budget=5000", "--dump-dom", url]
	for _ in range(loads):
		r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
				   stdin=subprocess.DEVNULL, env=env, timeout=15)
		dom = r.stdout.decode(errors="replace")
		if done(dom):
			break
	return dom, r.stderr.decode(errors="replace")


def has_rows(dom):
	return "clients/connected" in dom


@timeout(60)
def test_status_page_shows_sys_topics_in_a_browser(t):
	web = need_page()
	mq, ws = free_port(), free_port()
	_, path = write_conf("listener %d 127.0.0.1\nlistener %d 127.0.0.1\nprotocol websockets\n"
			     "http_dir %s\nsys_interval 1\npersistence false\n" % (mq, ws, web))
	p = Proc(["-c", path])
	home = tempfile.mkdtemp(prefix="sluice-chromium-")
	try:
		p.wait_port(ws)
		dom = render(home, "http://127.0.0.1:%d/" % ws, has_rows)[0]
		assert "connected to 127.0.0.1:%d" % ws in dom, dom[-2000:]
		assert "sluice 0.1" in dom and "clients/connected" in dom, dom[-2000:]
	finally:
		shutil.rmtree(home, ignore_errors=True)
		assert p.stop() == 0, p.output()


# -- https and wss -------------------------------------------------------------------------

def trust_ca(home, ca_crt):
	"""home/.pki/nssdb: a new NSS database trusting ca_crt to certify web servers."""
	db = os.path.join(home, ".pki", "nssdb")
	os.makedirs(db)
	new = ["-N", "--empty-password"]
	add = ["-A", "-n", "sluice test CA", "-t", "C,,", "-i", ca_crt]  # C: a CA for servers
	for args in (new, add):
		r = subprocess.run([CERTUTIL, "-d", "sql:" + db] + args, stdout=subprocess.PIPE,
				   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=10)
		out = r.stdout.decode(errors="replace")
		assert r.returncode == 0, "certutil %s: %s" % (" ".join(args), out)


def wait_sys(c, topic, value, timeout=5.0):
	"""Read c's messages until $SYS/broker/TOPIC says value (a $SYS tick is 1 s)."""
	seen = []
	while len(seen) < 20:
		m = c.wait_message(timeout, "(%s = %s; had %r)" % (topic, value, seen))
		if m.topic == "$SYS/broker/" + topic:
			seen.append(m.payload)
			if m.payload == value.encode():
				return
	raise AssertionError("$SYS/broker/%s never said %s: %r" % (topic, value, seen))


PAGE_CLIENT = r"client 'status-[0-9a-f]+' connected .*\(websocket\)"
HELD = 4  # clients connected while the page loads: a count the page can learn over wss only


@timeout(60)
def test_status_page_over_https_and_wss(t):
	"""A websockets listener with certfile/keyfile (the server certificate,
	signed by the test CA for IP:127.0.0.1 and localhost) and http_dir; the
	test holds 4 MQTT clients on the plain listener and waits for $SYS to
	count them.  Chromium trusting the test CA loads https://127.0.0.1:PORT/;
	the page connects back over wss (an https page may not open ws://): the
	DOM says "connected to", shows the version and clients/connected 4 (5
	once the page's own client is counted), and the broker logs the page's
	MQTT client.  The same page from a listener whose certificate has the same
	names but is signed by ca2, which the browser does not trust, does not
	load (ERR_CERT_AUTHORITY_INVALID): no rows, no client in that log."""
	web = need_page()
	if not CERTUTIL:
		raise Skip("certutil not installed (Debian package libnss3-tools)")
	c = certs()
	home = tempfile.mkdtemp(prefix="sluice-chromium-")
	try:
		trust_ca(home, c.crt("ca"))
		b = tls_broker(t, [], server_lines(c, "http_dir %s" % web))
		watch = t.client(b, version=4)
		held = [watch] + [t.client(b, version=4) for _ in range(HELD - 1)]
		watch.subscribe("$SYS/broker/clients/connected", 0)
		wait_sys(watch, "clients/connected", str(len(held)))
		url = "https://127.0.0.1:%d/" % b.ws_port
		dom, err = render(home, url, has_rows)
		up = "connected to 127.0.0.1:%d" % b.ws_port
		assert up in dom, "no %r on the page:\n%s\n%s" % (up, dom[-2000:], err[-1500:])
		assert "sluice 0.1" in dom, dom[-2000:]
		shown = re.search(r"<td>clients/connected</td><td>(\d+)</td>", dom)
		assert shown and int(shown.group(1)) in (HELD, HELD + 1), \
			"clients/connected on the page: %s (held %d)\n%s" % (
				shown and shown.group(1), HELD, dom[-2000:])
		assert b.wait_log(PAGE_CLIENT, 5), "no status page client in the log:\n%s" % (
			b.log_tail())

		bad = tls_broker(t, [], server_lines(c, "http_dir %s" % web, name="impostor"))
		dom, err = render(home, "https://127.0.0.1:%d/" % bad.ws_port, has_rows, loads=1)
		assert not has_rows(dom) and "connected to" not in dom, \
			"the page loaded from a certificate of an untrusted CA:\n%s" % dom[-2000:]
		assert "ERR_CERT_AUTHORITY_INVALID" in err, err[-2000:]
		assert not bad.wait_log(PAGE_CLIENT, 0.5), bad.log_tail()
	finally:
		shutil.rmtree(home, ignore_errors=True)
