"""Bridges (issue 14): mosquitto's "connection NAME" blocks.

So far sluice reads and checks a connection block; a bad or inconsistent
block stops start-up naming broker.conf and the line concerned.  Directives
mosquitto has and sluice does not implement yet stop start-up with "not
supported yet" rather than being ignored.
"""
import re

import brokerlib
from harness import param, skip_on_mosquitto

GOOD = ["connection up", "address 127.0.0.1:1", "topic a/# out 1"]

# case: (lines after the broker's own, index of the line the error must name, what it says)
BAD_BLOCKS = {
	"no_address": (["connection up", "topic a/# out"], 0, "has no address line"),
	"no_topic": (["connection up", "address 127.0.0.1"], 0, "has no topic line"),
	"bad_direction": (GOOD + ["topic b sideways"], 3, "expected out, in or both"),
	"bad_qos": (GOOD + ["topic b out 3"], 3, "must be 0..2"),
	"bad_filter": (GOOD + ["topic a/#/b"], 3, "not a valid topic filter"),
	"wildcard_prefix": (GOOD + ["topic b out 0 x/+ \"\""], 3, "prefix may not contain"),
	"bad_port": (["connection up", "address h:70000", "topic a"], 1, "must be 1..65535"),
	"outside_block": (["topic a/# out"], 0, "no connection yet"),
	"duplicate_name": (GOOD + GOOD, 3, "already defined"),
	"same_clientids": (GOOD + ["remote_clientid x", "local_clientid x"], 0,
			   "same local_clientid and remote_clientid"),
	"tls_not_yet": (GOOD + ["bridge_cafile /etc/ssl/certs/ca-certificates.crt"], 3,
			"bridge_cafile: not supported yet"),
	"max_packet_not_yet": (GOOD + ["bridge_max_packet_size 1000"], 3, "not supported yet"),
	"lazy_not_yet": (GOOD + ["start_type lazy"], 3, "not supported yet"),
}


def failed_start(t, lines):
	b = brokerlib.Broker(lines, name=t.short[:30])
	t.brokers.append((b, 0, True))
	rc = brokerlib.start_failure(b, "the broker started with %s" % lines)
	return b, rc


@param("case", sorted(BAD_BLOCKS))
def test_bridge_bad_block_stops_startup(t, case):
	"""A bad connection block stops start-up; the log names broker.conf:LINE and why."""
	skip_on_mosquitto("sluice's messages")
	lines, idx, what = BAD_BLOCKS[case]
	b, rc = failed_start(t, lines)
	assert rc != 0, "exit status 0 although start-up failed"
	n = len(b.config_text().splitlines()) - len(lines) + idx + 1  # extra lines come last
	log = b.log_text()
	assert re.search(r"broker\.conf:%d: .*%s" % (n, re.escape(what)), log), \
		"no log line names broker.conf:%d with %r:\n%s" % (n, what, log)


def test_bridge_not_run_yet(t):
	"""A good block is checked, but no bridge runs yet: start-up stops (rather
	than a configured bridge silently doing nothing), naming the block."""
	skip_on_mosquitto("sluice's state")
	b, rc = failed_start(t, GOOD)
	assert rc != 0
	n = b.config_text().splitlines().index(GOOD[0]) + 1
	assert re.search(r"broker\.conf:%d: connection up: bridges are not supported yet" % n,
			 b.log_text()), b.log_text()
