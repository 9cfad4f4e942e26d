#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets under tests/fuzz/corpus/.

Each seed is a small valid input, built from the MQTT 3.1.1 and 5.0
specifications with the packet builders of tests/integ/mqttpkt.py (which the
integration tests use too), so that the fuzzers start from packets that get
past the first length check. The files are committed; run this again only to
change them:  python3 tests/fuzz/gen_corpus.py
"""
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
sys.path.insert(0, os.path.join(HERE, "..", "integ"))
sys.dont_write_bytecode = True  # the source tree may be read-only

import mqttpkt as M  # noqa: E402  (tests/integ/mqttpkt.py: the packet builders)

V31, V311, V5 = 0, 1, 2  # first byte of a codec seed: the connection's level


def props(*items):
    """A property block of (id, value) items, in order."""
    return M.props(list(items))


# MQTT 5 properties used below (section 2.2.2.2).
P_PAYLOAD_FORMAT = (M.PAYLOAD_FORMAT, 1)
P_EXPIRY = (M.MESSAGE_EXPIRY, 60)
P_CONTENT_TYPE = (M.CONTENT_TYPE, "text/plain")
P_RESPONSE_TOPIC = (M.RESPONSE_TOPIC, "reply/to")
P_CORRELATION = (M.CORRELATION_DATA, b"\x00\x01\x02")
P_SUBID = (M.SUBSCRIPTION_ID, 300)
P_SESSION_EXPIRY = (M.SESSION_EXPIRY, 3600)
P_RECEIVE_MAX = (M.RECEIVE_MAXIMUM, 20)
P_TOPIC_ALIAS_MAX = (M.TOPIC_ALIAS_MAXIMUM, 10)
P_TOPIC_ALIAS = (M.TOPIC_ALIAS, 1)
P_REASON = (M.REASON_STRING, "because")
P_WILL_DELAY = (M.WILL_DELAY, 5)
P_AUTH_METHOD = (M.AUTH_METHOD, "SCRAM-SHA-1")
P_AUTH_DATA = (M.AUTH_DATA, b"\x01\x02")
P_MAX_QOS = (M.MAXIMUM_QOS, 1)
P_ASSIGNED_ID = (M.ASSIGNED_CLIENT_ID, "auto-1")


def user(k, v):
    return (M.USER_PROPERTY, (k, v))


CODEC = {
    "connect_v311": (V311, M.connect("client-1", version=4, keepalive=60)),
    "connect_v31": (V31, M.connect("old", version=3, keepalive=30, username="user",
                                   password=b"pw")),
    "connect_v5_will": (V5, M.connect(
        "c5", version=5, keepalive=10,
        properties=[P_SESSION_EXPIRY, P_RECEIVE_MAX, P_TOPIC_ALIAS_MAX, user("a", "b")],
        will=dict(topic="will/topic", payload=b"bye", qos=1, retain=True,
                  properties=[P_WILL_DELAY, P_CONTENT_TYPE, user("k", "v")]),
        username="user", password=b"secret")),
    "connack_v5": (V5, M.connack(True, 0, properties=[P_MAX_QOS, P_ASSIGNED_ID,
                                                      P_RECEIVE_MAX])),
    "connack_v311": (V311, M.connack(False, 0, version=4)),
    "publish_q0_v311": (V311, M.publish("a/b", b"hello", version=4)),
    "publish_q1_v5": (V5, M.publish("sensors/1/temp", b"21.5", qos=1, pid=7, properties=[
        P_PAYLOAD_FORMAT, P_EXPIRY, P_RESPONSE_TOPIC, P_CORRELATION, P_TOPIC_ALIAS,
        user("unit", "C")])),
    "publish_q2_retain_dup_v5": (V5, M.publish("x", b"", qos=2, retain=True, dup=True,
                                               pid=65535)),
    "publish_alias_v5": (V5, M.publish("", b"p", properties=[P_TOPIC_ALIAS])),
    "publish_subids_v5": (V5, M.publish("t", b"", properties=[P_SUBID,
                                                              (M.SUBSCRIPTION_ID, 1)])),
    "puback_v311": (V311, M.puback(7, version=4)),
    "puback_v5_reason": (V5, M.puback(7, reason=0x10, properties=[P_REASON])),
    "pubrec_v5_short": (V5, M.pubrec(9, reason=0x80)),
    "pubrel_v5": (V5, M.pubrel(9)),
    "pubcomp_v311": (V311, M.pubcomp(9, version=4)),
    "subscribe_v311": (V311, M.subscribe(1, [("a/+/c", 1), ("#", 0)], version=4)),
    "subscribe_v5": (V5, M.subscribe(2, [("$share/g/a/#", 2),
                                         ("b", M.sub_opts(1, no_local=True,
                                                          retain_as_published=True,
                                                          retain_handling=2))],
                                     properties=[P_SUBID, user("x", "y")])),
    "unsubscribe_v311": (V311, M.unsubscribe(3, ["a/+/c", "$share/g/x"], version=4)),
    "unsubscribe_v5": (V5, M.unsubscribe(3, ["a/b"], properties=[user("k", "v")])),
    "suback_v5": (V5, M.suback(2, [0, 1, 2, 0x80], properties=[P_REASON])),
    "suback_v311": (V311, M.suback(2, [0, 0x80], version=4)),
    "unsuback_v311": (V311, M.unsuback(3, version=4)),
    "unsuback_v5": (V5, M.unsuback(3, [0, 0x11])),
    "pingreq": (V311, M.pingreq()),
    "pingresp": (V5, M.pingresp()),
    "disconnect_v311": (V311, M.disconnect(version=4)),
    "disconnect_v5": (V5, M.disconnect(0x04, properties=[P_SESSION_EXPIRY, P_REASON])),
    "auth_v5": (V5, M.auth(0x18, [P_AUTH_METHOD, P_AUTH_DATA])),
}

# enum props_ctx: the first byte of a props seed.
CONNECT, WILL, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, \
    DISCONNECT, AUTH = range(11)

PROPS = {
    "connect": (CONNECT, props(P_SESSION_EXPIRY, P_RECEIVE_MAX, P_TOPIC_ALIAS_MAX,
                               (M.REQUEST_PROBLEM_INFO, 1), (M.REQUEST_RESPONSE_INFO, 0),
                               (M.MAXIMUM_PACKET_SIZE, 1024),
                               P_AUTH_METHOD, P_AUTH_DATA, user("a", "b"))),
    "will": (WILL, props(P_WILL_DELAY, P_PAYLOAD_FORMAT, P_EXPIRY, P_CONTENT_TYPE,
                         P_RESPONSE_TOPIC, P_CORRELATION, user("k", "v"))),
    "connack": (CONNACK, props(P_MAX_QOS, (M.RETAIN_AVAILABLE, 1),
                               (M.WILDCARD_SUB_AVAILABLE, 1), (M.SUB_ID_AVAILABLE, 0),
                               (M.SHARED_SUB_AVAILABLE, 1), (M.SERVER_KEEP_ALIVE, 30),
                               P_ASSIGNED_ID, (M.RESPONSE_INFO, "resp"),
                               (M.SERVER_REFERENCE, "other:1883"), P_REASON)),
    "publish": (PUBLISH, props(P_PAYLOAD_FORMAT, P_EXPIRY, P_TOPIC_ALIAS, P_SUBID,
                               (M.SUBSCRIPTION_ID, 5), P_CONTENT_TYPE, user("u", "1"),
                               user("u", "2"))),
    "puback": (PUBACK, props(P_REASON, user("why", "not"))),
    "subscribe": (SUBSCRIBE, props(P_SUBID, user("s", "t"))),
    "suback": (SUBACK, props(P_REASON)),
    "unsubscribe": (UNSUBSCRIBE, props(user("", ""))),
    "unsuback": (UNSUBACK, props(P_REASON, user("a", "b"))),
    "disconnect": (DISCONNECT, props(P_SESSION_EXPIRY, (M.SERVER_REFERENCE, "elsewhere"),
                                     P_REASON)),
    "auth": (AUTH, props(P_AUTH_METHOD, P_AUTH_DATA, P_REASON)),
    "empty": (PUBLISH, props()),
}


def framer_seeds():
    stream = b"".join(CODEC[k][1] for k in ("connect_v311", "publish_q1_v5",
                                            "subscribe_v311", "pingreq", "disconnect_v5"))
    big = M.publish("big", bytes(200), version=4)  # a two-byte remaining length
    # byte 0: where to split; byte 1: limit index (low 3 bits) and stop-after (next 3)
    return {
        "stream": bytes([17, 0x00]) + stream,
        "stream_stop2": bytes([40, 0x10]) + stream,
        "big_split_in_header": bytes([1, 0x00]) + big + CODEC["pingreq"][1],
        "too_large": bytes([3, 0x06]) + big,
        "partial_tail": bytes([5, 0x00]) + CODEC["pingreq"][1] + b"\x30\xff\xff",
        "five_length_bytes": bytes([2, 0x00]) + b"\x30\xff\xff\xff\xff\x01",
    }


def topic_seeds():
    # op & 3: 0 subscribe, 1 unsubscribe, 2 publish/retain, 3 clear/match retained;
    # bits 2-3 owner, bits 4-6 options and subscription id, bit 7 fail an allocation.
    SUB, UNSUB, PUB, CLR = 0, 1, 2, 3

    def op(kind, owner=0, opt=0, oom=False):
        return bytes([kind | owner << 2 | opt << 4 | (0x80 if oom else 0)])

    def lines(*items):
        return b"\n".join(o + t.encode() if isinstance(t, str) else o + t for o, t in items)

    return {
        "basic": lines((op(SUB), "a/b"), (op(SUB, 1, 1), "a/+"), (op(SUB, 2, 2), "#"),
                       (op(SUB, 3), "a/b/#"), (op(PUB), "a/b"), (op(PUB), "a"),
                       (op(PUB), "$SYS/x"), (op(UNSUB, 1), "a/+"), (op(PUB), "a/b")),
        "shared": lines((op(SUB), "$share/g/a/#"), (op(SUB, 1), "$share/g/a/#"),
                        (op(SUB, 2), "$share/h/+/b"), (op(PUB), "a/b"),
                        (op(UNSUB), "$share/g/a/#"), (op(PUB), "a/b/c")),
        "retain": lines((op(PUB), "a/b"), (op(PUB), "a/c"), (op(PUB), "$SYS/load"),
                        (op(CLR), "+/+"), (op(CLR), "#"), (op(CLR), "a/b"),
                        (op(CLR), "a/#"), (op(CLR), "$SYS/#")),
        "empty_levels": lines((op(SUB), "/"), (op(SUB, 1), "+/+"), (op(SUB, 2), "/#"),
                              (op(PUB), "/"), (op(PUB), "//"), (op(PUB), "/a")),
        "oom": lines((op(SUB, 0, 0, True), "a/b/c/d"), (op(SUB, 1, 3, True), "$share/g/x"),
                     (op(PUB, 0, 1, True), "a/b/c/d"), (op(PUB), "a/b/c/d")),
        "utf8": lines((op(PUB), "caf\u00e9/\u6771\u4eac/\U0001F600"),
                      (op(SUB), b"\xc0\x80"), (op(SUB), b"\xed\xa0\x80"),
                      (op(SUB), b"\xf4\x90\x80\x80"), (op(SUB), "a+/b"), (op(SUB), "a/#/b")),
    }


CONFIG = {
    "full.conf": b"""# a configuration using every directive
listener 1883
listener 9001 127.0.0.1
protocol websockets
http_dir /var/www
socket_domain ipv4
bind_address ::1
max_queued_messages 1000
max_queued_bytes 64M
max_inflight_messages 20
queue_qos0_messages false
persistent_client_expiration 14d
max_packet_size 256k
max_keepalive 600
max_topic_alias 10
max_qos 1
retain_available true
allow_zero_length_clientid false
auto_id_prefix sluice-
connect_timeout 10
max_connections -1
sys_interval 10
log_dest file /tmp/sluice.log
log_type information
log_type debug
""",
    "errors.conf": b"listener 1883\nmax_qos 3\n",
    "no_listener.conf": b"protocol mqtt\n",
    "log_dest.conf": b"log_dest stdout\n\t# comment\n\nlog_dest file\n",
}


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# The corpora this script makes; corpus/fuzz_access and corpus/fuzz_broker are not its own.
TARGETS = ("fuzz_codec", "fuzz_props", "fuzz_framer", "fuzz_topic", "fuzz_config")


def main():
    for target in TARGETS:
        shutil.rmtree(os.path.join(OUT, target), ignore_errors=True)
    for name, (version, data) in CODEC.items():
        write("fuzz_codec", name, bytes([version]) + data)
    for name, (ctx, data) in PROPS.items():
        write("fuzz_props", name, bytes([ctx]) + data)
    for name, data in framer_seeds().items():
        write("fuzz_framer", name, data)
    for name, data in topic_seeds().items():
        write("fuzz_topic", name, data)
    for name, data in CONFIG.items():
        write("fuzz_config", name, data)


if __name__ == "__main__":
    main()
