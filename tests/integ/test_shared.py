"""Shared subscriptions $share/{group}/{filter} [MQTT-4.8.2]."""

import re
import time

import rawmqtt as R
from clients import connect_props
from harness import mosquitto_differs, param

VERSIONS = [4, 5]


@param("version", VERSIONS)
@param("transport", ["tcp", "ws"])
def test_mqtt_4_8_2_shared_each_message_to_one_member(t, version, transport):
	tp = t.topic("sh")
	group = "$share/g%s/%s" % (t.tag[-4:], tp)
	a = t.client(version=version, transport=transport)
	b = t.client(version=version, transport=transport)
	a.subscribe(group, 1)
	b.subscribe(group, 1)
	pub = t.client(version=version)
	for i in range(20):
		pub.publish(tp, b"%d" % i, 1)
	got = []
	import time
	deadline = time.monotonic() + 5
	while len(got) < 20 and time.monotonic() < deadline:
		got += [(n, m.payload) for n, c in (("a", a), ("b", b)) for m in c.drain()]
		time.sleep(0.02)
	got += [(n, m.payload) for n, c in (("a", a), ("b", b)) for m in c.drain()]
	a.expect_no_message(0.3)
	b.expect_no_message(0.1)
	payloads = sorted(int(p) for _, p in got)
	assert payloads == list(range(20)), "union must be all, no duplicates: %r" % payloads
	assert {n for n, _ in got} == {"a", "b"}, "both members should get some: %r" % got


@param("version", VERSIONS)
def test_mqtt_4_8_2_shared_and_normal_subscription(t, version):
	tp = t.topic("sh")
	a = t.client(version=version)
	a.subscribe("$share/g/" + tp, 1)
	n = t.client(version=version)
	n.subscribe(tp, 1)
	pub = t.client(version=version)
	pub.publish(tp, b"both", 1)
	assert a.wait_message().payload == b"both"
	assert n.wait_message().payload == b"both"


@mosquitto_differs("mosquitto 2.0.11 accepts No Local on a shared subscription")
@param("transport", ["tcp", "ws"])
def test_mqtt_4_8_2_shared_no_local_is_protocol_error(t, transport):
	# [MQTT-3.8.3-4]: No Local on a shared subscription is a Protocol Error
	r = t.raw_connected(transport=transport)
	r.send(R.subscribe(1, [("$share/g/" + t.topic("x"), 0x05)]))
	got = r.wait_closed(5)
	assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x82, got


@mosquitto_differs("mosquitto 2.0.11 does not hand unacknowledged messages of a "
		   "departed member to the other members (the spec says SHOULD)")
def test_mqtt_4_8_2_shared_unacked_go_to_another_member(t):
	# Member A receives QoS 1 messages and never acknowledges them, then its
	# session ends (expiry 0).  The messages SHOULD then go to member B.
	tp = t.topic("sh")
	group = "$share/g/" + tp
	a = t.raw()
	a.handshake(t.cid("a"), properties=[(R.RECEIVE_MAXIMUM, 3)])
	a.send(R.subscribe(1, [(group, 1)]))
	a.expect(R.SUBACK)
	b = t.client(version=5)
	b.subscribe(group, 1)
	pub = t.client(version=5)
	for i in range(10):
		pub.publish(tp, b"%d" % i, 1)
	held = []
	while True:
		p = a.recv_or_none(0.5)
		if p is None:
			break
		if p.type == R.PUBLISH:
			held.append(int(p.publish()["payload"]))
	assert held, "member A received nothing; cannot test redistribution"
	a.close()
	import time
	got = []
	deadline = time.monotonic() + 5
	while len(set(got) | set(held)) < 10 or not set(held) <= set(got):
		left = deadline - time.monotonic()
		if left <= 0:
			break
		try:
			got.append(int(b.wait_message(left).payload))
		except AssertionError:
			break
	missing = set(range(10)) - set(got)
	assert not missing, "messages held by the departed member never reached B: %s " \
		"(A held %s)" % (sorted(missing), held)


# --- helpers ----------------------------------------------------------------------

QUIET = 0.5  # how long "nothing more arrives" is watched for


def shared(t, sub="sh", group="g"):
	"""(topic unique to this test, shared filter $share/group/topic)."""
	tp = t.topic(sub)
	return tp, "$share/%s%s/%s" % (group, t.tag[-4:], tp)


def gather(clients, total, timeout=10.0, quiet=QUIET):
	"""Messages of each client (a list per client) once `total` arrived in all
	(or timeout passed), and then quiet seconds more, so that extra copies show."""
	got = [[] for _ in clients]
	deadline = time.monotonic() + timeout
	while sum(map(len, got)) < total and time.monotonic() < deadline:
		for i, c in enumerate(clients):
			got[i] += c.drain()
		time.sleep(0.02)
	end = time.monotonic() + quiet
	while time.monotonic() < end:
		for i, c in enumerate(clients):
			got[i] += c.drain()
		time.sleep(0.02)
	return got


def numbers(msgs):
	return [int(m.payload) for m in msgs]


def check_each_once(got, expected, what="the group"):
	"""The union of the lists in got holds every number of expected exactly once."""
	allp = sorted(p for lst in got for p in numbers(lst))
	dups = sorted({p for p in allp if allp.count(p) > 1})
	missing = sorted(set(expected) - set(allp))
	extra = sorted(set(allp) - set(expected))
	assert not dups and not missing and not extra, \
		"%s: every message exactly once; missing %s, duplicated %s, unexpected %s " \
		"(per member: %s)" % (what, missing, dups, extra, [numbers(g) for g in got])


def publish_range(pub, tp, numbers_, qos=1):
	for i in numbers_:
		pub.publish(tp, b"%d" % i, qos)


def raw_member(t, group, version, qos=1, transport="tcp", **kw):
	"""A raw client subscribed to group that acknowledges nothing by itself."""
	r = t.raw(transport=transport, version=version)
	r.handshake(t.cid("raw"), **kw)
	r.send(R.subscribe(1, [(group, qos)], version=version))
	pid, codes = r.expect(R.SUBACK).suback()
	assert codes == [qos], "SUBACK %r" % codes
	return r


def read_publishes(r, quiet=QUIET):
	"""PUBLISH packets (decoded) a raw client gets until quiet seconds pass without one."""
	out = []
	while True:
		p = r.recv_or_none(quiet)
		if p is None:
			return out
		if p.type == R.PUBLISH:
			out.append(p.publish())


def persistent(t, version, cid, broker=None, **kw):
	"""A client whose session outlives the connection."""
	if version == 5:
		return t.client(broker, client_id=cid, version=5, clean=False,
				properties=connect_props(SessionExpiryInterval=300), **kw)
	return t.client(broker, client_id=cid, version=version, clean=False, **kw)


# --- distribution ---------------------------------------------------------------------

@param("version", VERSIONS)
@param("transport", ["tcp", "ws"])
def test_mqtt_4_8_2_shared_three_members_each_message_once(t, version, transport):
	# "each message is sent to only one of the Sessions" of the group; the
	# choice is the broker's, but every member should take part.
	tp, group = shared(t)
	members = [t.client(version=version, transport=transport) for _ in range(3)]
	for m in members:
		assert m.subscribe(group, 1) == [1]
	pub = t.client(version=version)
	publish_range(pub, tp, range(60))
	got = gather(members, 60)
	check_each_once(got, range(60))
	assert all(got), "each of the 3 members should get some: %r" % [len(g) for g in got]
	assert all(m.qos == 1 and m.topic == tp for g in got for m in g), \
		[(m.topic, m.qos) for g in got for m in g]


@param("version", VERSIONS)
def test_mqtt_4_8_2_shared_two_groups_each_get_a_copy(t, version):
	# Each Shared Subscription is independent: a message matching two groups
	# is processed by both of them.
	tp, g1 = shared(t, group="g1")
	_, g2 = shared(t, group="g2")
	a = [t.client(version=version) for _ in range(2)]
	b = [t.client(version=version) for _ in range(2)]
	for c in a:
		c.subscribe(g1, 1)
	for c in b:
		c.subscribe(g2, 1)
	pub = t.client(version=version)
	publish_range(pub, tp, range(20))
	got = gather(a + b, 40)
	check_each_once(got[:2], range(20), "group 1")
	check_each_once(got[2:], range(20), "group 2")


@param("version", VERSIONS)
def test_mqtt_4_8_2_shared_group_and_plain_subscriber_each_get_all(t, version):
	tp, group = shared(t)
	members = [t.client(version=version) for _ in range(2)]
	for m in members:
		m.subscribe(group, 1)
	plain = t.client(version=version)
	plain.subscribe(tp, 1)
	pub = t.client(version=version)
	publish_range(pub, tp, range(20))
	got = gather(members + [plain], 40)
	check_each_once(got[:2], range(20), "the group")
	check_each_once(got[2:], range(20), "the plain subscriber")


@mosquitto_differs("mosquitto 2.0.11 sends a 3.1.1 client one copy only", version=4)
@param("version", VERSIONS)
def test_mqtt_4_8_2_shared_and_plain_subscription_of_one_client_two_copies(t, version):
	# "If a Client has a Shared Subscription and a Non-shared Subscription and a
	# message matches both of them, the Client will receive a copy of the message
	# by virtue of it having the Non-shared Subscription.  A second copy of the
	# message will be delivered to one of the subscribers to the Shared
	# Subscription": here the client is the group's only member.
	tp, group = shared(t)
	c = t.client(version=version)
	c.subscribe(group, 1)
	c.subscribe(tp, 1)
	pub = t.client(version=version)
	publish_range(pub, tp, range(5))
	got = gather([c], 10)[0]
	assert sorted(numbers(got)) == sorted(list(range(5)) * 2), \
		"two copies of each message expected: %r" % numbers(got)


@param("version", VERSIONS)
@param("wildcard", ["+", "#"])
def test_mqtt_4_8_2_shared_wildcard_filter(t, version, wildcard):
	base = t.topic("w")
	if wildcard == "+":
		flt = base + "/+/x"
		match = [base + "/a/x", base + "/b/x", base + "//x"]
		other = [base + "/a/y", base + "/a/b/x", base + "/x"]
	else:
		flt = base + "/#"
		match = [base, base + "/a", base + "/a/b/c"]  # '#' matches the parent level too
		other = [base + "x", base + "x/a", t.topic("v") + "/a"]
	group = "$share/g%s/%s" % (t.tag[-4:], flt)
	members = [t.client(version=version) for _ in range(2)]
	for m in members:
		assert m.subscribe(group, 1) == [1]
	pub = t.client(version=version)
	n = 0
	for rnd in range(2):
		for tp in other + match:
			pub.publish(tp, b"%d" % n, 1)
			n += 1
	want = {i: tp for i, tp in enumerate((other + match) * 2) if tp in match}
	got = gather(members, len(want))
	check_each_once(got, sorted(want))
	for m in got[0] + got[1]:
		assert m.topic == want[int(m.payload)], \
			"delivered with topic %r, published on %r" % (m.topic, want[int(m.payload)])


@param("version", VERSIONS)
@param("transport", ["tcp", "ws"])
def test_mqtt_4_8_2_shared_unsubscribed_member_gets_nothing_more(t, version, transport):
	# A Session leaves a group with UNSUBSCRIBE of the full $share filter; the
	# group goes on with the others.
	tp, group = shared(t)
	members = [t.client(version=version, transport=transport) for _ in range(3)]
	for m in members:
		m.subscribe(group, 1)
	pub = t.client(version=version)
	publish_range(pub, tp, range(15))
	got = gather(members, 15)
	check_each_once(got, range(15))
	assert got[2], "member 3 got nothing while subscribed: %r" % [numbers(g) for g in got]
	rc = members[2].unsubscribe(group)
	if version == 5:
		assert rc == [0], "UNSUBACK reason codes %r" % rc
	publish_range(pub, tp, range(15, 45))
	got = gather(members, 30)
	assert not got[2], "member 3 got messages after UNSUBSCRIBE: %r" % numbers(got[2])
	check_each_once(got[:2], range(15, 45), "the remaining members")
	assert got[0] and got[1], [numbers(g) for g in got]


@param("version", VERSIONS)
def test_mqtt_4_8_2_shared_subscribe_twice_is_one_membership(t, version):
	# "A Client is permitted to submit a second SUBSCRIBE request to a Shared
	# Subscription on a Session that's already subscribed to that Shared
	# Subscription ... This does not increase the number of times the Session
	# is associated with the Shared Subscription, so the Session will leave the
	# Shared Subscription on its first UNSUBSCRIBE."
	tp, group = shared(t)
	a = t.client(version=version)
	a.subscribe(group, 0)
	assert a.subscribe(group, 1) == [1]  # the second SUBSCRIBE changes the QoS
	b = t.client(version=version)
	b.subscribe(group, 1)
	pub = t.client(version=version)
	publish_range(pub, tp, range(20))
	got = gather([a, b], 20)
	check_each_once(got, range(20))
	assert got[0] and got[1], [numbers(g) for g in got]
	assert all(m.qos == 1 for m in got[0]), "QoS of the second SUBSCRIBE: %r" % \
		[m.qos for m in got[0]]
	a.unsubscribe(group)
	publish_range(pub, tp, range(20, 30))
	got = gather([a, b], 10)
	assert not got[0], "one UNSUBSCRIBE must end the membership: got %r" % numbers(got[0])
	check_each_once(got[1:], range(20, 30), "the remaining member")


# --- acknowledgements, QoS, sessions ------------------------------------------------------

@mosquitto_differs("mosquitto 2.0.11 does not hand unacknowledged messages of a departed member "
		   "to the other members (the spec says SHOULD)")
@param("version", VERSIONS)
@param("transport", ["tcp", "ws"])
def test_mqtt_4_8_2_shared_qos1_unacked_of_closed_member_to_another(t, version, transport):
	# "If the Server is in the process of sending a QoS 1 message to its chosen
	# subscribing Client and the connection to that Client breaks before the
	# Server has received an acknowledgement from the Client ... If the Client's
	# Session terminates before the Client reconnects, the Server SHOULD send the
	# Application Message to another Client that is subscribed to the same
	# Shared Subscription."  A: a raw member that never acknowledges, with a
	# session that ends with the connection; it closes the socket (no DISCONNECT).
	tp, group = shared(t)
	a = raw_member(t, group, version, transport=transport)
	b = t.client(version=version, transport=transport)
	b.subscribe(group, 1)
	pub = t.client(version=version)
	publish_range(pub, tp, range(12))
	held = sorted(int(p["payload"]) for p in read_publishes(a))
	assert held, "member A received nothing; cannot test redistribution"
	a.close()
	got = gather([b], 12)
	check_each_once(got, range(12), "member B (after A left with %s unacknowledged)" % held)


def test_mqtt_4_8_2_6_shared_refused_by_puback_goes_to_no_other_member(t):
	# "If a Client responds with a PUBACK or PUBREC containing a Reason Code of
	# 0x80 or greater to a PUBLISH packet from the Server, the Server MUST
	# discard the Application Message and not attempt to send it to any other
	# Subscriber [MQTT-4.8.2-6]."
	tp, group = shared(t)
	a = raw_member(t, group, 5)
	b = t.client(version=5)
	b.subscribe(group, 1)
	pub = t.client(version=5)
	publish_range(pub, tp, range(10))
	refused = []
	while True:
		p = a.recv_or_none(QUIET)
		if p is None:
			break
		if p.type == R.PUBLISH:
			d = p.publish()
			refused.append(int(d["payload"]))
			a.send(R.ack(R.PUBACK, d["pid"], 5, reason=0x80))
	assert refused, "member A received nothing; cannot test a refusal"
	got = numbers(gather([b], 10 - len(refused), quiet=1.0)[0])
	again = sorted(set(got) & set(refused))
	assert not again, "messages refused by A (PUBACK 0x80) went to B: %s" % again
	assert sorted(got + refused) == list(range(10)), (sorted(got), refused)
	t.check_alive()


@param("version", VERSIONS)
def test_mqtt_4_8_2_5_shared_qos2_in_flight_of_ended_session_to_no_other(t, version):
	# "If the Server is in the process of sending a QoS 2 message to its chosen
	# subscribing Client and the connection to the Client breaks before delivery
	# is complete, the Server MUST complete the delivery of the message to that
	# Client when it reconnects [MQTT-4.8.2-4] ... If the Client's Session
	# terminates before the Client reconnects, the Server MUST NOT send the
	# Application Message to any other subscribed Client [MQTT-4.8.2-5]."
	# (Sluice before commit ec19dfa sent them, PUBRECed ones included, to
	# another member.)
	tp, group = shared(t)
	a = raw_member(t, group, version, qos=2)
	b = t.client(version=version)
	b.subscribe(group, 2)
	pub = t.client(version=version)
	publish_range(pub, tp, range(8), qos=2)
	held = read_publishes(a)
	assert held, "member A received nothing; cannot test QoS 2 redistribution"
	# The first one gets its PUBREC (the message is A's now: PUBREL pending),
	# the others none (PUBREC pending).
	a.send(R.ack(R.PUBREC, held[0]["pid"], version))
	while True:
		p = a.recv(5)
		if p.type == R.PUBREL:
			break
		assert p.type == R.PUBLISH, "expected PUBREL, got %r" % p
		held.append(p.publish())
	a.close()
	mine = sorted(int(p["payload"]) for p in held)
	got = numbers(gather([b], 8 - len(mine), quiet=1.0)[0])
	again = sorted(set(got) & set(mine))
	assert not again, "QoS 2 messages in flight to A when its session ended were sent to " \
		"B too: %s (A had %s) [MQTT-4.8.2-5]" % (again, mine)
	assert sorted(got) == sorted(set(range(8)) - set(mine)), (sorted(got), mine)


@param("version", VERSIONS)
def test_mqtt_4_8_2_3_shared_granted_qos_caps_delivery(t, version):
	# "The Server MUST respect the granted QoS for the Client's subscription
	# [MQTT-4.8.2-3]": QoS 2 publications reach a QoS 1 member at QoS 1.
	tp, group = shared(t)
	m = t.client(version=version)
	assert m.subscribe(group, 1) == [1], "granted QoS"
	pub = t.client(version=version)
	publish_range(pub, tp, range(3), qos=2)
	got = m.wait_messages(3)
	assert [(x.payload, x.qos) for x in got] == [(b"0", 1), (b"1", 1), (b"2", 1)], \
		[(x.payload, x.qos) for x in got]
	m.expect_no_message(QUIET)


@param("version", VERSIONS)
def test_mqtt_4_8_2_3_shared_members_with_different_granted_qos(t, version):
	# Members of one group may be granted different QoS; each delivery has its
	# member's.
	tp, group = shared(t)
	members = [t.client(version=version) for _ in range(3)]
	for q, m in enumerate(members):
		assert m.subscribe(group, q) == [q], "granted QoS %d" % q
	pub = t.client(version=version)
	publish_range(pub, tp, range(30), qos=2)
	got = gather(members, 30)
	check_each_once(got, range(30))
	for q, msgs in enumerate(got):
		assert msgs, "the QoS %d member got nothing: %r" % (q, [numbers(g) for g in got])
		assert {m.qos for m in msgs} == {q}, "the QoS %d member got QoS %r" % \
			(q, sorted({m.qos for m in msgs}))


@mosquitto_differs("mosquitto 2.0.11 sends retained messages to a new shared subscription")
@param("version", VERSIONS)
def test_mqtt_4_8_2_shared_no_retained_message_on_subscribe(t, version):
	# "Retained messages are not sent to the Session when it first subscribes
	# to the Shared Subscription ... A Retained Message is not sent to this new
	# subscriber" (the second member); both get later messages.
	tp, group = shared(t)
	pub = t.client(version=version)
	pub.publish(tp, b"retained", 1, retain=True)
	try:
		plain = t.client(version=version)
		plain.subscribe(tp, 1)
		m = plain.wait_message(5, "(the retained message, to a plain subscriber)")
		assert m.payload == b"retained" and m.retain, (m.payload, m.retain)
		a = t.client(version=version)
		a.subscribe(group, 1)
		a.expect_no_message(QUIET)
		b = t.client(version=version)
		b.subscribe(group, 1)
		b.expect_no_message(QUIET)
		a.expect_no_message(0.1)
		publish_range(pub, tp, range(10))
		got = gather([a, b], 10)
		check_each_once(got, range(10))
		assert not any(m.retain for g in got for m in g), "RETAIN set on a live delivery"
	finally:
		pub.publish(tp, b"", 1, retain=True)  # clear it (the broker is shared)


@mosquitto_differs("mosquitto 2.0.11 also picks (queues for) the offline member; the spec leaves "
		   "the choice to the broker, sluice prefers members that are online")
@param("version", VERSIONS)
def test_mqtt_4_8_2_shared_offline_member_skipped_while_another_is_online(t, version):
	# A member whose session persists while it is offline stays in the group,
	# but the broker's choice (implementation defined in the spec) goes to
	# the member that is online: it gets every message, the offline one no
	# copy when it comes back; after that it takes part again.
	tp, group = shared(t)
	b = t.broker()
	cid = t.cid("off")
	a = persistent(t, version, cid)
	a.subscribe(group, 1)
	since = b.log_size()
	a.disconnect()
	assert b.wait_log(r"(?i)%s.*disconnect" % re.escape(cid), 5, since), \
		"the broker did not log the disconnect of %s" % cid
	on = t.client(version=version)
	on.subscribe(group, 1)
	pub = t.client(version=version)
	publish_range(pub, tp, range(20))
	got = gather([on], 20)
	check_each_once(got, range(20), "the online member")
	a = persistent(t, version, cid)
	assert a.session_present, "the offline member's session is gone"
	a.expect_no_message(QUIET)
	publish_range(pub, tp, range(20, 40))
	got = gather([on, a], 20)
	check_each_once(got, range(20, 40), "both members")
	assert got[1], "the member back online takes no part: %r" % [numbers(g) for g in got]
	a.disconnect()
	t.client(client_id=cid, version=version, clean=True).disconnect()  # end the session


# --- MQTT 5 --------------------------------------------------------------------------------

def test_mqtt_3_2_2_3_13_shared_subscription_available(t):
	# CONNACK Shared Subscription Available: absent means available.
	r = t.raw_connected()
	v = R.prop(r.connack_props, R.SHARED_SUB_AVAILABLE, 1)
	assert v == 1, "Shared Subscription Available %r, but the broker has them" % v


@mosquitto_differs("mosquitto 2.0.11 accepts No Local on a shared subscription")
def test_mqtt_3_8_3_4_shared_no_local_refused_with_other_filters(t):
	# [MQTT-3.8.3-4] "It is a Protocol Error to set the No Local bit to 1 on a
	# Shared Subscription" (4.13: DISCONNECT 0x82), also when it is one filter
	# among valid ones; the client that sent it gets no SUBACK and no messages.
	tp, group = shared(t)
	r = t.raw_connected()
	r.send(R.subscribe(1, [(tp, 1), (group, R.sub_opts(1, no_local=True))]))
	got = r.wait_closed(5)
	assert got and got[-1].type == R.DISCONNECT and got[-1].reason() == 0x82, got
	assert not [p for p in got if p.type == R.SUBACK], "SUBACK before the DISCONNECT: %r" % got
	t.check_alive()


@mosquitto_differs("mosquitto 2.0.11 accepts an empty ShareName ($share//filter)")
@param("version", VERSIONS)
def test_mqtt_4_8_2_1_2_shared_malformed_share_name_refused(t, version):
	# [MQTT-4.8.2-1] a ShareName of at least one character; [MQTT-4.8.2-2] no
	# "/", "+" or "#" in it, and a "/" and a Topic Filter after it.  A filter
	# that breaks it is refused: SUBACK 0x80+ (0x8F Topic Filter invalid in
	# MQTT 5), or the connection closed (with DISCONNECT 0x8F/0x82/0x81 in 5).
	base = t.topic("bad")
	for f in ["$share//" + base, "$share/g+/" + base, "$share/g#/" + base, "$share/g",
		  "$share/g/"]:
		r = t.raw_connected(version=version)
		r.send(R.subscribe(1, [(f, 1)], version=version))
		got = r.recv_or_none(3)
		if got is not None and got.type == R.SUBACK:
			codes = got.suback()[1]
			assert codes[0] >= 0x80, "%r accepted: SUBACK %r" % (f, codes)
			if version == 5:
				assert codes[0] == 0x8F, "%r: SUBACK 0x%02x, expected 0x8F" % (f, codes[0])
		elif got is not None:
			assert version == 5 and got.type == R.DISCONNECT and \
				got.reason() in (0x8F, 0x82, 0x81), "%r: %r" % (f, got)
			assert r.wait_closed(3) == [], "%r: packets after the DISCONNECT" % f
		else:
			assert r.eof, "%r: neither SUBACK nor a close within 3 s" % f
		r.close()
	t.check_alive()
