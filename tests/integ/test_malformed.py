"""Bad input, byte by byte, over TCP and over WebSocket (one frame, 2-byte
messages, continuation frames).

Each case is a row of CASES: the bytes sent after a good CONNECT (or instead
of it, for CONNECT cases), the spec clause, and the reason codes MQTT 5
allows in the broker's DISCONNECT.  Rules [MQTT-4.13.1-1]: on a Malformed
Packet or Protocol Error the server closes the connection; in MQTT 5 it sends
a DISCONNECT with the reason code first (a CONNACK for errors in CONNECT,
which is optional).  MQTT 3.1.1 servers just close.  After each case a fresh
client must still get a round trip through the same broker.
"""

import rawmqtt as R
from harness import param, mosquitto_differs

# How mosquitto 2.0.11 departs from these expectations (MQTT 5 only):
NO_DISCONNECT = "mosquitto 2.0.11 (MQTT 5) closes without the DISCONNECT that 4.13.1 " \
	"says SHOULD be sent"
WILDCARD_0X82 = "mosquitto 2.0.11 sends 0x82; 4.13.1 asks for the more specific 0x90 " \
	"Topic Name invalid"

MALFORMED = {0x81}
PROTOCOL = {0x82}
EITHER = {0x81, 0x82}


class Case:
	def __init__(self, clause, name, build, codes, versions=(4, 5), connect=False,
		     suback_ok=False, differs=None, differs_when=None):
		self.clause = clause
		self.name = name
		self.build = build          # build(version, topic) -> bytes
		self.codes = codes          # allowed DISCONNECT reason codes (MQTT 5)
		self.versions = list(versions)
		self.connect = connect      # the bytes replace the CONNECT
		self.suback_ok = suback_ok  # a failure SUBACK (0x80 / 0x8F) is also fine
		self.differs = differs      # how mosquitto 2.0.11 differs, if it does
		if differs_when is None:
			differs_when = {"version": 5} if differs in (NO_DISCONNECT, WILDCARD_0X82) \
				else {}
		self.differs_when = differs_when


def pub_raw(topic_bytes, version, props=b"", qos=0, pid=1, payload=b"x"):
	body = R.u16(len(topic_bytes)) + topic_bytes
	if qos:
		body += R.u16(pid)
	if version == 5:
		body += props if props else b"\x00"
	return R.packet(R.PUBLISH, qos << 1, body + payload)


def connect_raw(version, flags, client_id=b"cid", extra=b""):
	vh = R.mstr("MQTT") + bytes([version, flags]) + R.u16(60)
	if version == 5:
		vh += b"\x00"
	return R.packet(R.CONNECT, 0, vh + R.u16(len(client_id)) + client_id + extra)


CASES = [
	Case("2_1_3_1", "subscribe_reserved_flags_zero",
	     lambda v, tp: R.packet(R.SUBSCRIBE, 0, R.subscribe(1, [(tp, 0)], v)[2:]),
	     MALFORMED),
	Case("2_1_3_1", "pingreq_reserved_flags",
	     lambda v, tp: bytes([0xC1, 0x00]), MALFORMED,
	     differs="mosquitto 2.0.11 ignores PINGREQ flags and answers PINGRESP"),
	Case("3_6_1_1", "pubrel_reserved_flags_zero",
	     lambda v, tp: bytes([0x60, 0x02, 0x00, 0x01]), MALFORMED, differs=NO_DISCONNECT),
	Case("2_1_2", "reserved_packet_type_0",
	     lambda v, tp: bytes([0x00, 0x00]), EITHER),
	Case("1_5_5_1", "remaining_length_five_bytes",
	     lambda v, tp: bytes.fromhex("30ffffffff01") + b"x" * 16, MALFORMED,
	     differs=NO_DISCONNECT),
	Case("1_5_4_1", "invalid_utf8_in_topic",
	     lambda v, tp: pub_raw(tp.encode() + b"/\xc3\x28", v), MALFORMED),
	Case("1_5_4_1", "utf16_surrogate_in_topic",
	     lambda v, tp: pub_raw(tp.encode() + b"/\xed\xa0\x80", v), MALFORMED),
	Case("1_5_4_2", "null_character_in_topic",
	     lambda v, tp: pub_raw(tp.encode() + b"/a\x00b", v), MALFORMED),
	Case("1_5_4_2", "null_character_in_client_id",
	     lambda v, tp: connect_raw(v, 0x02, b"ab\x00cd"), MALFORMED, connect=True),
	Case("3_1_2_3", "connect_reserved_flag",
	     lambda v, tp: connect_raw(v, 0x03), MALFORMED, connect=True),
	Case("3_1_2_14", "connect_will_qos_3",
	     lambda v, tp: connect_raw(v, 0x02 | 0x04 | 0x18, b"cid",
				       (b"\x00" if v == 5 else b"") + R.mstr("w") + R.mstr("x")),
	     MALFORMED, connect=True),
	Case("3_1_0_1", "connect_bad_protocol_name",
	     lambda v, tp: R.packet(R.CONNECT, 0, R.mstr("MQTX") + bytes([v, 2]) + R.u16(60) +
				    (b"\x00" if v == 5 else b"") + R.mstr("cid")),
	     MALFORMED, connect=True),
	Case("3_3_2_2", "wildcard_plus_in_publish_topic",
	     lambda v, tp: pub_raw((tp + "/+").encode(), v), {0x90}, differs=WILDCARD_0X82),
	Case("3_3_2_2", "wildcard_hash_in_publish_topic",
	     lambda v, tp: pub_raw((tp + "/#").encode(), v), {0x90}, differs=WILDCARD_0X82),
	Case("3_3_2_1", "empty_topic_without_alias",
	     lambda v, tp: pub_raw(b"", v), {0x82, 0x90}),
	Case("3_3_1_4", "publish_qos_3",
	     lambda v, tp: R.packet(R.PUBLISH, 0x06, R.mstr(tp) + R.u16(1) +
				    (b"\x00" if v == 5 else b"") + b"x"), MALFORMED),
	Case("2_2_1_3", "publish_packet_id_zero",
	     lambda v, tp: pub_raw(tp.encode(), v, qos=1, pid=0), EITHER),
	Case("2_2_1_3", "subscribe_packet_id_zero",
	     lambda v, tp: R.subscribe(0, [(tp, 0)], v), EITHER),
	Case("3_8_3_2", "subscribe_without_filters",
	     lambda v, tp: R.subscribe(1, [], v), EITHER),
	Case("3_10_3_2", "unsubscribe_without_filters",
	     lambda v, tp: R.unsubscribe(1, [], v), EITHER),
	Case("3_8_3_5", "subscribe_reserved_option_bits",
	     lambda v, tp: R.subscribe(1, [(tp, 0xC0 if v == 5 else 0x04)], v), MALFORMED),
	Case("3_8_3_4", "subscribe_qos_3",
	     lambda v, tp: R.subscribe(1, [(tp, 0x03)], v), MALFORMED),
	Case("4_7_1_1", "invalid_filter_hash_not_last",
	     lambda v, tp: R.subscribe(1, [(tp + "/#/b", 0)], v), {0x81, 0x82, 0x8F},
	     suback_ok=True),
	Case("4_7_1_2", "invalid_filter_plus_inside_level",
	     lambda v, tp: R.subscribe(1, [(tp + "/a+", 0)], v), {0x81, 0x82, 0x8F},
	     suback_ok=True),
	Case("2_2_2_2", "property_duplicate",
	     lambda v, tp: pub_raw(tp.encode(), v, R.props([(R.MESSAGE_EXPIRY, 5),
							    (R.MESSAGE_EXPIRY, 6)])),
	     PROTOCOL, versions=[5], differs=NO_DISCONNECT),
	Case("2_2_2_2", "unknown_property_identifier",
	     lambda v, tp: pub_raw(tp.encode(), v, bytes([0x02, 0x7F, 0x00])), MALFORMED,
	     versions=[5]),
	Case("2_2_2_2", "property_not_allowed_in_publish",
	     lambda v, tp: pub_raw(tp.encode(), v, R.props([(R.SESSION_EXPIRY, 5)])),
	     MALFORMED, versions=[5]),
	Case("2_2_2_1", "property_length_past_end",
	     lambda v, tp: pub_raw(tp.encode(), v, bytes([0x40, 0x01, 0x01]), payload=b""),
	     MALFORMED, versions=[5]),
	Case("1_5_4_3", "truncated_topic_string",
	     lambda v, tp: bytes.fromhex("3005001061626364"), MALFORMED),
	# No authentication method exists yet, and sluice's contract (issue 2) is
	# to answer AUTH with 0x8C Bad authentication method, a valid DISCONNECT
	# reason code; 3.15 would also allow a plain Protocol Error.
	Case("3_1_0_2", "auth_without_method",
	     lambda v, tp: bytes([0xF0, 0x00]), {0x8C}, differs=NO_DISCONNECT),
	Case("3_14_1_1", "disconnect_reserved_flags",
	     lambda v, tp: bytes([0xE1, 0x00]), MALFORMED, differs=NO_DISCONNECT),
]


def run_case(t, case, version, transport):
	tp = t.topic("bad")
	r = t.raw(transport=transport, version=version)
	if not case.connect:
		r.handshake(t.cid())
	data = case.build(version, tp)
	r.send(data)
	got = r.wait_closed(5) if not case.suback_ok else None
	if case.suback_ok:
		p = r.recv_or_none(5)
		if p is not None and p.type == R.SUBACK:
			codes = p.suback()[1]
			assert codes and codes[0] in (0x80, 0x8F), "filter accepted: %r" % p
			t.check_alive(transport="ws" if transport.startswith("ws") else "tcp")
			return
		got = ([p] if p is not None else []) + r.wait_closed(5)
	if case.connect:
		assert all(p.type == R.CONNACK for p in got), got
		if got:
			rc = got[0].body[1]
			assert (rc >= 0x80) if version == 5 else (rc != 0), \
				"CONNECT accepted (rc 0x%02x)" % rc
	elif version == 5:
		assert got and got[-1].type == R.DISCONNECT, \
			"expected DISCONNECT 0x%s before close, got %r" % \
			("/".join("%02x" % c for c in sorted(case.codes)), got)
		assert got[-1].reason() in case.codes, "DISCONNECT reason 0x%02x, expected %s" % \
			(got[-1].reason(), "/".join("0x%02x" % c for c in sorted(case.codes)))
	else:
		assert not got, "3.1.1: expected a plain close, got %r" % got
	t.check_alive(transport="ws" if transport.startswith("ws") else "tcp")


def make_test(case):
	def fn(t, version, transport):
		run_case(t, case, version, transport)
	fn = param("transport", R.TRANSPORTS)(fn)
	fn = param("version", case.versions)(fn)
	if case.differs:
		fn = mosquitto_differs(case.differs, **case.differs_when)(fn)
	fn.__name__ = "test_mqtt_%s_%s" % (case.clause, case.name)
	fn.__doc__ = "[MQTT-%s] %s" % (case.clause.replace("_", "."), case.name)
	return fn


for _case in CASES:
	_fn = make_test(_case)
	globals()[_fn.__name__] = _fn
