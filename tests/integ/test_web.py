"""The status page in web/: served by a WebSocket listener's http_dir, it
connects back over MQTT/WebSocket and shows $SYS/broker/... live.  Checked
in a real browser: headless Chromium renders it, and the DOM must show the
connection and the broker's version."""

import os
import shutil
import subprocess
import tempfile

from brokerlib import free_port
from harness import skip_on_mosquitto, timeout, Skip
from test_operation import Proc, write_conf

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@timeout(60)
def test_status_page_shows_sys_topics_in_a_browser(t):
	skip_on_mosquitto("sluice's own status page")
	if not CHROMIUM:
		raise Skip("chromium not installed (Debian package chromium)")
	web = os.path.join(os.environ.get("SLUICE_SRCDIR", "."), "web")
	if not os.path.exists(os.path.join(web, "index.html")):
		raise Skip("web/index.html not found (SLUICE_SRCDIR unset?)")
	mq, ws = free_port(), free_port()
	_, path = write_conf("listener %d 127.0.0.1\nlistener %d 127.0.0.1\nprotocol websockets\n"
			     "http_dir %s\nsys_interval 1\npersistence false\n" % (mq, ws, web))
	p = Proc(["-c", path])
	try:
		p.wait_port(ws)
		profile = tempfile.mkdtemp(prefix="sluice-chromium-")
		# Chromium's virtual time can run out before the WebSocket is up on a
		# loaded machine (the sanitizer build, tests in parallel): up to three
		# page loads, each judged by the same assertions below.
		for _ in range(3):
			r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
					    "--disable-quic", "--no-first-run",
					    "--disable-background-networking",
					    "--disable-component-update", "--disable-sync",
					    "--user-data-dir=" + profile, "--virtual-time-budget=5000",
					    "--dump-dom", "http://127.0.0.1:%d/" % ws],
					   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=15)
			dom = r.stdout.decode(errors="replace")
			if "clients/connected" in dom:
				break
		assert "connected to 127.0.0.1:%d" % ws in dom, dom[-2000:]
		assert "sluice 0.1" in dom and "clients/connected" in dom, dom[-2000:]
		shutil.rmtree(profile, ignore_errors=True)
	finally:
		assert p.stop() == 0, p.output()
