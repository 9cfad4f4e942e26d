#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets under tests/fuzz/corpus/.

Each seed is a small valid input, built here byte by byte from the MQTT 3.1.1
and 5.0 specifications, so that the fuzzers start from packets that get past
the first length check. The files are committed; run this again only to
change them:  python3 tests/fuzz/gen_corpus.py
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")

V31, V311, V5 = 0, 1, 2  # first byte of a codec seed: the connection's level


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(x):
    if isinstance(x, str):
        x = x.encode()
    return len(x).to_bytes(2, "big") + x


def u16(n):
    return n.to_bytes(2, "big")


def u32(n):
    return n.to_bytes(4, "big")


def props(*items):
    body = b"".join(items)
    return varint(len(body)) + body


def pkt(hdr, body):
    return bytes([hdr]) + varint(len(body)) + body


# MQTT 5 properties used below (section 2.2.2.2).
P_PAYLOAD_FORMAT = b"\x01\x01"
P_EXPIRY = b"\x02" + u32(60)
P_CONTENT_TYPE = b"\x03" + s("text/plain")
P_RESPONSE_TOPIC = b"\x08" + s("reply/to")
P_CORRELATION = b"\x09" + s(b"\x00\x01\x02")
P_SUBID = b"\x0b" + varint(300)
P_SESSION_EXPIRY = b"\x11" + u32(3600)
P_RECEIVE_MAX = b"\x21" + u16(20)
P_TOPIC_ALIAS_MAX = b"\x22" + u16(10)
P_TOPIC_ALIAS = b"\x23" + u16(1)
P_REASON = b"\x1f" + s("because")
P_WILL_DELAY = b"\x18" + u32(5)
P_AUTH_METHOD = b"\x15" + s("SCRAM-SHA-1")
P_AUTH_DATA = b"\x16" + s(b"\x01\x02")
P_MAX_QOS = b"\x24\x01"
P_ASSIGNED_ID = b"\x12" + s("auto-1")


def user(k, v):
    return b"\x26" + s(k) + s(v)


def connect(level, flags, keep, payload, name="MQTT", prop=b""):
    body = s(name) + bytes([level, flags]) + u16(keep) + prop + payload
    return pkt(0x10, body)


CODEC = {
    "connect_v311": (V311, connect(4, 0x02, 60, s("client-1"))),
    "connect_v31": (V31, connect(3, 0xC2, 30, s("old") + s("user") + s(b"pw"),
                                 name="MQIsdp")),
    "connect_v5_will": (V5, connect(
        5, 0xEE, 10,
        s("c5") + props(P_WILL_DELAY, P_CONTENT_TYPE, user("k", "v")) + s("will/topic")
        + s(b"bye") + s("user") + s(b"secret"),
        prop=props(P_SESSION_EXPIRY, P_RECEIVE_MAX, P_TOPIC_ALIAS_MAX, user("a", "b")))),
    "connack_v5": (V5, pkt(0x20, b"\x01\x00" + props(P_MAX_QOS, P_ASSIGNED_ID, P_RECEIVE_MAX))),
    "connack_v311": (V311, pkt(0x20, b"\x00\x00")),
    "publish_q0_v311": (V311, pkt(0x30, s("a/b") + b"hello")),
    "publish_q1_v5": (V5, pkt(0x32, s("sensors/1/temp") + u16(7) + props(
        P_PAYLOAD_FORMAT, P_EXPIRY, P_RESPONSE_TOPIC, P_CORRELATION, P_TOPIC_ALIAS,
        user("unit", "C")) + b"21.5")),
    "publish_q2_retain_dup_v5": (V5, pkt(0x3D, s("x") + u16(65535) + props() + b"")),
    "publish_alias_v5": (V5, pkt(0x30, s("") + props(P_TOPIC_ALIAS) + b"p")),
    "publish_subids_v5": (V5, pkt(0x30, s("t") + props(P_SUBID, b"\x0b\x01") + b"")),
    "puback_v311": (V311, pkt(0x40, u16(7))),
    "puback_v5_reason": (V5, pkt(0x40, u16(7) + b"\x10" + props(P_REASON))),
    "pubrec_v5_short": (V5, pkt(0x50, u16(9) + b"\x80")),
    "pubrel_v5": (V5, pkt(0x62, u16(9))),
    "pubcomp_v311": (V311, pkt(0x70, u16(9))),
    "subscribe_v311": (V311, pkt(0x82, u16(1) + s("a/+/c") + b"\x01" + s("#") + b"\x00")),
    "subscribe_v5": (V5, pkt(0x82, u16(2) + props(P_SUBID, user("x", "y")) +
                             s("$share/g/a/#") + b"\x02" + s("b") + b"\x2d")),
    "unsubscribe_v311": (V311, pkt(0xA2, u16(3) + s("a/+/c") + s("$share/g/x"))),
    "unsubscribe_v5": (V5, pkt(0xA2, u16(3) + props(user("k", "v")) + s("a/b"))),
    "suback_v5": (V5, pkt(0x90, u16(2) + props(P_REASON) + b"\x00\x01\x02\x80")),
    "suback_v311": (V311, pkt(0x90, u16(2) + b"\x00\x80")),
    "unsuback_v311": (V311, pkt(0xB0, u16(3))),
    "unsuback_v5": (V5, pkt(0xB0, u16(3) + props() + b"\x00\x11")),
    "pingreq": (V311, pkt(0xC0, b"")),
    "pingresp": (V5, pkt(0xD0, b"")),
    "disconnect_v311": (V311, pkt(0xE0, b"")),
    "disconnect_v5": (V5, pkt(0xE0, b"\x04" + props(P_SESSION_EXPIRY, P_REASON))),
    "auth_v5": (V5, pkt(0xF0, b"\x18" + props(P_AUTH_METHOD, P_AUTH_DATA))),
}

# enum props_ctx: the first byte of a props seed.
CONNECT, WILL, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, \
    DISCONNECT, AUTH = range(11)

PROPS = {
    "connect": (CONNECT, props(P_SESSION_EXPIRY, P_RECEIVE_MAX, P_TOPIC_ALIAS_MAX,
                               b"\x17\x01", b"\x19\x00", b"\x27" + u32(1024),
                               P_AUTH_METHOD, P_AUTH_DATA, user("a", "b"))),
    "will": (WILL, props(P_WILL_DELAY, P_PAYLOAD_FORMAT, P_EXPIRY, P_CONTENT_TYPE,
                         P_RESPONSE_TOPIC, P_CORRELATION, user("k", "v"))),
    "connack": (CONNACK, props(P_MAX_QOS, b"\x25\x01", b"\x28\x01", b"\x29\x00",
                               b"\x2a\x01", b"\x13" + u16(30), P_ASSIGNED_ID,
                               b"\x1a" + s("resp"), b"\x1c" + s("other:1883"), P_REASON)),
    "publish": (PUBLISH, props(P_PAYLOAD_FORMAT, P_EXPIRY, P_TOPIC_ALIAS, P_SUBID,
                               b"\x0b\x05", P_CONTENT_TYPE, user("u", "1"), user("u", "2"))),
    "puback": (PUBACK, props(P_REASON, user("why", "not"))),
    "subscribe": (SUBSCRIBE, props(P_SUBID, user("s", "t"))),
    "suback": (SUBACK, props(P_REASON)),
    "unsubscribe": (UNSUBSCRIBE, props(user("", ""))),
    "unsuback": (UNSUBACK, props(P_REASON, user("a", "b"))),
    "disconnect": (DISCONNECT, props(P_SESSION_EXPIRY, b"\x1c" + s("elsewhere"), P_REASON)),
    "auth": (AUTH, props(P_AUTH_METHOD, P_AUTH_DATA, P_REASON)),
    "empty": (PUBLISH, props()),
}


def framer_seeds():
    stream = b"".join(CODEC[k][1] for k in ("connect_v311", "publish_q1_v5",
                                            "subscribe_v311", "pingreq", "disconnect_v5"))
    big = pkt(0x30, s("big") + bytes(200))  # a two-byte remaining length
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


def main():
    shutil.rmtree(OUT, ignore_errors=True)
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
