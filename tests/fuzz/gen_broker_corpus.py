#!/usr/bin/env python3
"""Writes the hand-written seeds of fuzz_broker into tests/fuzz/corpus/fuzz_broker/.

Each seed is a scenario in fuzz_broker.c's input format (its opening comment
describes it; the helpers below follow its bit layouts): three header bytes,
then operations. Together they reach every part of the broker once - QoS 0,
1 and 2 both ways, retained messages, shared groups, wills with and without
a delay, takeover, keep alive, offline queues, topic aliases, the ACL, $SYS,
slow readers, packets split byte by byte - so that the fuzzer starts from
inputs that get past CONNECT; and the inputs that found bugs (regress-*).
Only those files are written; the others in the directory are the minimised
corpus of the long run (tests/fuzz/README.md), left as they are. Run again
after changing a seed:  python3 tests/fuzz/gen_broker_corpus.py
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "fuzz_broker")
sys.path.insert(0, os.path.join(HERE, "..", "integ"))
sys.dont_write_bytecode = True  # the source tree may be read-only

import mqttpkt as M  # noqa: E402  (tests/integ/mqttpkt.py: the packet builders)

# Operations: the index in fuzz_broker.c's ops[] (the opcode's low six bits).
CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, ACK, PING, DISCONNECT, RAW = 0, 1, 3, 4, 5, 6, 7, 8
DROP, TIME, MODE, OOM, IDS = 10, 11, 12, 13, 14

# The tables of fuzz_broker.c.
TOPICS = ["a", "a/b", "a/b/c", "b", "c0/t", "c1/t", "a/secret", "$SYS/x",
          "will/a", "x/y", "a/b/c/d", "$x", "", "a/+", "ro", "/"]
FILTERS = ["#", "a", "a/+", "a/#", "+/b", "$share/g/a/#", "$share/g/#", "$share/h/+",
           "$SYS/#", "+", "a/b/c", "c0/#", "will/#", "$share/g/a", "a/#/b", "b"]
VERSIONS = {5: 0, 4: 1, 3: 2}
KEEP_ALIVES = [0, 1, 5, 60]
EXPIRIES = [0, 2, 60, 0xFFFFFFFF]
STEPS = [0, 1, 10, 100, 499, 500, 1000, 1499, 1500, 2000, 3000, 5000, 7500, 10000, 61000,
         3600000]
OWN, EMPTY = 5, 4  # client id choices besides the table c0, c1, c2, x


def header(connect=(), version=5, clean=False, auto_ack=False, cert=False, cfg0=0, cfg1=0):
    """The header: configuration bytes and the clients that connect first."""
    h = sum(1 << i for i in connect) | VERSIONS[version] << 3
    h |= (32 if clean else 0) | (64 if auto_ack else 0) | (128 if cert else 0)
    return bytes([cfg0, cfg1, h])


def op(slot, kind, *operands):
    return bytes([slot << 6 | kind, *operands])


def connect(slot, version=5, clean=False, will=None, username=None, password=False,
            cid=OWN, keepalive=60, expiry=None, receive_max=None, alias_max=False,
            max_packet=None, no_problem_info=False, response_info=False, user_prop=False,
            auth_method=False):
    """will: dict(qos, retain, topic index, delay, expiry, format, bad_payload)."""
    w = will or {}
    f1 = VERSIONS[version] | (4 if clean else 0) | (8 if will else 0)
    f1 |= (16 if w.get("retain") else 0) | w.get("qos", 0) << 5 | (128 if username else 0)
    f2 = cid | KEEP_ALIVES.index(keepalive) << 3 | (32 if username == "bob" else 0)
    f2 |= 64 if password else 0
    f3 = 0
    if expiry is not None:
        f3 |= 1 | EXPIRIES.index(expiry) << 1
    if receive_max:
        f3 |= 8 | (16 if receive_max == 2 else 0)
    f3 |= (32 if alias_max else 0)
    if max_packet:
        f3 |= 64 | (128 if max_packet == 300 else 0)
    f4 = (1 if no_problem_info else 0) | (2 if response_info else 0)
    f4 |= (4 if w.get("delay") else 0) | (8 if w.get("expiry") else 0)
    f4 |= (16 if w.get("format") else 0) | (32 if w.get("bad_payload") else 0)
    f4 |= (64 if user_prop else 0) | (128 if auth_method else 0)
    return op(slot, CONNECT, f1, f2, f3, f4, w.get("topic", 0))


def publish(slot, topic, payload=b"", qos=0, retain=False, dup=False, pid=1, expiry=None,
            alias=None, alias_only=False, extra_props=False):
    f1 = qos | (4 if retain else 0) | (8 if dup else 0) | TOPICS.index(topic) << 4
    f2 = (pid - 1) & 7
    if expiry is not None:
        f2 |= 8
    if alias:
        f2 |= 16 | (alias - 1) << 5
    f2 |= (64 if alias_only else 0) | (128 if extra_props else 0)
    f3 = len(payload) | (expiry or 0) << 6
    return op(slot, PUBLISH, f1, f2, f3) + payload


def subscribe(slot, first, count=1, qos=0, no_local=False, rap=False, rh=0, subid=None):
    f1 = FILTERS.index(first) | (count - 1) << 4
    if subid:
        f1 |= 64 | (subid - 1) << 7
    f2 = qos | (4 if no_local else 0) | (8 if rap else 0) | rh << 4
    return op(slot, SUBSCRIBE, f1, f2)


def unsubscribe(slot, first, count=1):
    return op(slot, UNSUBSCRIBE, FILTERS.index(first) | (count - 1) << 4)


def ack_owed(slot, which=0, fail=False):
    return op(slot, ACK, 1 | which << 1 | (128 if fail else 0))


def ack(slot, ptype, pid, fail=False):
    return op(slot, ACK, (ptype - 4) << 1 | (pid - 1) << 3 | (128 if fail else 0))


def disconnect(slot, reason=0, expiry=None):
    f = [0, 4, 0x80, 0x81].index(reason)
    if expiry is not None:
        f |= 4 | EXPIRIES.index(expiry) << 3
    return op(slot, DISCONNECT, f)


def raw(slot, data):
    assert len(data) < 256
    return op(slot, RAW, len(data)) + data


def time(ms):
    return op(0, TIME, STEPS.index(ms))


def mode(slot, stalled=False, ack_mode=0, linger=False, chunk=0, read_cap=0):
    f = (1 if stalled else 0) | ack_mode << 1 | (8 if linger else 0)
    f |= [0, 1, 3, 7].index(chunk) << 4 | [0, 1, 5, 64].index(read_cap) << 6
    return op(slot, MODE, f)


def oom(allocations, then):
    """then (one operation) runs with each call into the broker getting that many allocations."""
    return op(0, OOM, allocations) + then


def ids(slot, before_wrap):
    return op(slot, IDS, before_wrap)


AUTO, AUTO_FAIL = 1, 2

SEEDS = {
    # QoS 0 to a wildcard subscriber, and to the publisher itself.
    "qos0": header((0, 1, 2)) + subscribe(1, "#") + subscribe(0, "a/+")
    + publish(0, "a/b", b"hello") + publish(2, "b", b"x") + op(0, PING),
    # QoS 1 and 2 from the publisher, acknowledged by hand.
    "qos12_in": header((0, 1)) + subscribe(1, "a/#", qos=2) + publish(0, "a/b", b"1", qos=1)
    + publish(0, "a/b/c", b"2", qos=2, pid=2) + ack(0, M.PUBREL, 2) + ack_owed(1)
    + ack_owed(1) + ack_owed(1),
    # QoS 2 out, acknowledged by the client itself; a resent PUBLISH; a refusal.
    "qos2_auto": header((0, 1), auto_ack=True) + subscribe(1, "a", qos=2)
    + publish(0, "a", b"x", qos=2, pid=3) + publish(0, "a", b"x", qos=2, pid=3, dup=True)
    + ack(0, M.PUBREL, 3) + mode(1, ack_mode=AUTO_FAIL) + publish(0, "a", b"y", qos=1),
    # Retained messages: stored, sent on subscribe (retain handling), replaced, cleared.
    "retained": header((0, 1)) + publish(0, "a/b", b"r1", retain=True)
    + publish(0, "a/b/c", b"r2", qos=1, retain=True) + subscribe(1, "a/#", qos=1, rap=True)
    + subscribe(1, "a/#", rh=1) + subscribe(2, "#", rh=2) + publish(0, "a/b", b"", retain=True)
    + subscribe(2, "a/+"),
    # A shared group of two, one member leaving with messages in flight.
    "shared": header((0, 1, 2)) + subscribe(1, "$share/g/a/#", qos=1)
    + subscribe(2, "$share/g/a/#", qos=1) + subscribe(2, "$share/h/+")
    + b"".join(publish(0, "a/b", bytes([i]), qos=1, pid=i + 1) for i in range(4))
    + op(1, DROP) + ack_owed(2) + publish(0, "a", b"5", qos=2, pid=6) + unsubscribe(2, "$share/g/a/#"),
    # A will with a delay, published when the delay is over.
    "will_delay": header((1,)) + subscribe(1, "will/#", qos=1)
    + connect(0, will=dict(qos=1, retain=True, delay=True, topic=0), expiry=60)
    + op(0, DROP) + time(1000) + time(1000) + subscribe(2, "will/#"),
    # A will at once (3.1.1), a will kept by DISCONNECT 0x04, one dropped by DISCONNECT.
    "will_now": header((1,), version=4) + subscribe(1, "#")
    + connect(0, version=4, clean=True, will=dict(qos=0, topic=1)) + op(0, DROP)
    + connect(2, will=dict(qos=2, topic=0)) + disconnect(2, reason=4)
    + connect(0, will=dict(topic=1)) + disconnect(0),
    # The same client id on a second connection takes the session over.
    "takeover": header((0, 1)) + subscribe(0, "b", qos=1) + publish(1, "b", b"1", qos=1)
    + connect(2, cid=0, expiry=60) + publish(1, "b", b"2", qos=1, pid=2) + ack_owed(2)
    + connect(0, cid=0, clean=True),
    # Keep alive: a client that goes quiet is cut at 1.5 times its keep alive.
    "keepalive": header()
    + connect(0, keepalive=1, will=dict(topic=0)) + connect(1, keepalive=5)
    + subscribe(1, "will/#") + time(1000) + op(0, PING) + time(1499) + time(1500)
    + time(7500),
    # Offline queue of a persistent session, resent after the reconnect with receive maximum 1.
    "offline_queue": header((1,)) + connect(0, expiry=60, receive_max=1)
    + subscribe(0, "a/#", qos=2) + disconnect(0)
    + b"".join(publish(1, "a/b", bytes([i]), qos=1 + i % 2, pid=i + 1) for i in range(5))
    + publish(1, "a", b"q0") + connect(0, expiry=60, receive_max=1)
    + ack_owed(0) + ack_owed(0) + ack_owed(0),
    # Inflight at a drop: resent with DUP after the reconnect.
    "resend": header((1,)) + connect(0, expiry=EXPIRIES[3])
    + subscribe(0, "a", qos=1) + publish(1, "a", b"1", qos=1) + publish(1, "a", b"2", qos=2, pid=2)
    + op(0, DROP) + connect(0, expiry=EXPIRIES[3]) + ack_owed(0, 1) + ack_owed(0),
    # Topic aliases both ways.
    "aliases": header((1,)) + connect(0, alias_max=True) + subscribe(0, "#")
    + publish(1, "a/b", b"1", alias=1) + publish(1, "a/b", b"2", alias=1, alias_only=True)
    + publish(1, "x/y", b"3", alias=2) + publish(1, "b", b"4") + publish(1, "a/b/c", b"5")
    + publish(1, "a", b"6", alias=2, alias_only=True),
    # 3.1.1 and 3.1 clients beside MQTT 5 ones.
    "levels": header((0,), version=4) + connect(1, version=3) + connect(2, version=5)
    + subscribe(0, "a/#", qos=1) + subscribe(1, "a/#", qos=2) + subscribe(2, "a/#", qos=2)
    + publish(2, "a/b", b"v", qos=2, pid=1, extra_props=True) + ack(2, M.PUBREL, 1)
    + ack_owed(0) + ack_owed(1) + ack_owed(1) + ack_owed(2),
    # The ACL: denied PUBLISH and SUBSCRIBE, a username that may do more.
    "acl": header((0,), cfg0=0x80) + connect(1, username="alice") + subscribe(0, "#")
    + subscribe(0, "a/#", qos=1) + subscribe(1, "#") + publish(0, "a/secret", b"s", qos=1)
    + publish(0, "x/y", b"n", qos=1) + publish(1, "x/y", b"d") + publish(0, "c0/t", b"p"),
    # $SYS every second, and a subscriber to it.
    "sys": header((0,), cfg1=0x80) + subscribe(0, "$SYS/#") + time(1000) + time(1000),
    # A client that does not read: QoS 0 backlog, queue limits, the close timeout.
    "slow_reader": header((0, 1), cfg0=0x04 | 0x01, cfg1=0x40) + subscribe(1, "#", qos=1)
    + mode(1, stalled=True) + b"".join(publish(0, "a/b", b"z" * 40, qos=i % 2, pid=i + 1)
                                       for i in range(6))
    + op(1, DISCONNECT, 0) + time(3000) + mode(1, read_cap=5),
    # Raw packets fed one byte at a time, a second CONNECT, a malformed length.
    "raw_split": header() + mode(0, chunk=1)
    + raw(0, M.connect("r0", version=5, keepalive=0) + M.subscribe(1, [("a/#", 1)])
          + M.publish("a/x", b"raw", qos=1, pid=9))
    + mode(1, chunk=3) + raw(1, M.connect("r1", version=4, clean=False, keepalive=30))
    + raw(1, M.publish("a/y", b"", qos=0, version=4)) + raw(1, M.connect("again", version=4))
    + raw(2, b"\x10\xff\xff\xff\xff\x01"),
    # No CONNECT within connect_timeout; a first packet that is not CONNECT.
    "connect_timeout": header() + raw(0, M.connect("slow")[:5]) + time(10000)
    + raw(1, M.pingreq()) + raw(2, M.connect("bad", version=6)),
    # Message expiry while queued for an offline session.
    "expiry": header((1,)) + connect(0, expiry=60) + subscribe(0, "a", qos=1) + op(0, DROP)
    + publish(1, "a", b"e", qos=1, expiry=1) + publish(1, "a", b"k", qos=1, pid=2)
    + time(2000) + connect(0, expiry=60),
    # Subscription identifiers, no local, unsubscribe of what is and is not there.
    "subids": header((0, 1)) + subscribe(0, "a", count=3, qos=1, subid=1)
    + subscribe(0, "a/+", subid=2, no_local=True) + publish(0, "a/b", b"s") + publish(1, "a", b"t")
    + unsubscribe(0, "a", count=2) + unsubscribe(0, "$SYS/#"),
    # The client's maximum packet size, and a session expiry set at DISCONNECT.
    "max_packet": header((1,)) + connect(0, max_packet=40, expiry=60, response_info=True)
    + subscribe(0, "#") + publish(1, "a/b", b"p" * 50) + publish(1, "a/b", b"small")
    + disconnect(0, expiry=0) + connect(2, clean=True, expiry=0) + disconnect(2, expiry=60),
    # Refused CONNECTs: bad will QoS, an authentication method, a client id of none.
    "refused": header(cfg0=0x20 | 0x40, cfg1=0x10 | 0x08) + connect(0, will=dict(qos=2))
    + connect(1, auth_method=True) + connect(2, cid=EMPTY, version=4, clean=False)
    + connect(0, keepalive=60, version=4) + connect(1, will=dict(retain=True))
    + connect(2, cid=EMPTY, keepalive=0),
    # use_identity_as_username: the certificate's CN is the username.
    "identity": header((2,), cert=True, cfg0=0x80) + subscribe(2, "#") + publish(2, "x/y", b"i"),
    # 3.1.1 sessions that outlive their connection for persistent_client_expiration.
    "v3_expiry": header(cfg1=0x20) + connect(0, version=4, clean=False)
    + subscribe(0, "b", qos=1) + disconnect(0) + connect(1, version=4) + publish(1, "b", b"o", qos=1)
    + time(5000) + connect(0, version=4, clean=False),
    # Allocations failing in the middle of a CONNECT, a PUBLISH to two, a SUBSCRIBE.
    "oom": header((1, 2)) + subscribe(1, "a/#", qos=1) + subscribe(2, "#")
    + oom(3, connect(0, will=dict(topic=0), expiry=60)) + connect(0, expiry=60)
    + oom(2, publish(0, "a/b", b"m", qos=1)) + oom(1, subscribe(0, "a", count=2, qos=2))
    + oom(0, op(2, PING)) + oom(4, op(1, DROP)),
    # Packet ids wrapping after 65535, skipping one still in flight.
    "id_wrap": header((0, 1), auto_ack=False) + subscribe(1, "a", qos=1) + ids(1, 2)
    + b"".join(publish(0, "a", bytes([i]), qos=1, pid=1 + i % 8) for i in range(3))
    + ack_owed(1, 1) + ack_owed(1, 1) + b"".join(publish(0, "a", bytes([i]), qos=1) for i in range(4)),
    # A closing connection that lingers while its client id comes back.
    "linger": header((0, 1)) + mode(0, linger=True) + subscribe(1, "a") + disconnect(0)
    + connect(0) + publish(0, "a", b"l") + time(2000),
}


# Inputs that found bugs, kept so that the smoke run replays them (regress-*).
REGRESSIONS = {
    # conn_out() returning NULL (out of memory) was handed to the encoders:
    # the CONNACK of an accepted CONNECT, a PINGRESP, a SUBACK, an UNSUBACK.
    "oom_connack": header((1,)) + oom(1, connect(0)),
    "oom_pingresp": header((0,)) + oom(0, op(0, PING)),
    "oom_suback": header((0,)) + oom(1, subscribe(0, "a")),
    "oom_unsuback": header((0,)) + subscribe(0, "a") + oom(1, unsubscribe(0, "a")),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for prefix, inputs in (("seed-", SEEDS), ("regress-", REGRESSIONS)):
        for name, data in inputs.items():
            with open(os.path.join(OUT, prefix + name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
