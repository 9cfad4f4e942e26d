#!/usr/bin/python3
"""Integration tests of the plugin layer (include/sluice_plugin.h).

Each test starts its own sluice on a free port of 127.0.0.1 with the test
plugin (tests/plugin/test_plugin.c) loaded, drives one event or verdict with
real MQTT clients (paho-mqtt 1.6.1 for subscribers, a small raw-socket MQTT
client where the bytes of PUBACK/PUBREC/SUBACK matter) and asserts what a
client can observe: messages received or not, reason codes, acknowledgement
properties, timing, and the plugin's counters, which it publishes on the
retained topic $tp/stats when asked through tp/stats/get.

Environment:
  SLUICE             the broker binary (make check sets it)
  SLUICE_TEST_PLUGIN the built test plugin, .../tests/plugin/.libs/test_plugin.so
Without them every test is skipped, saying why.

Run: /usr/bin/python3 tests/integ/test_plugin_layer.py [-v] [TestName...]
Every wait is bounded; every test stops the broker it started.
PLUGTEST_LOG=1 prints each broker's log when it is stopped.
"""
import os
import queue
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import brokerlib
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

SLUICE = os.environ.get("SLUICE")
PLUGIN = os.environ.get("SLUICE_TEST_PLUGIN")
HOST = "127.0.0.1"
START_TIMEOUT = 10.0
QUIET = 0.6  # how long "nothing arrives" is watched for

SKIP_REASON = None
if brokerlib.is_mosquitto():
    SKIP_REASON = "the plugin layer is sluice's own (INTEG_BROKER=mosquitto)"
elif not PLUGIN:
    SKIP_REASON = "SLUICE_TEST_PLUGIN is not set (the built tests/plugin/.libs/test_plugin.so)"
elif not os.path.isfile(PLUGIN):
    SKIP_REASON = "SLUICE_TEST_PLUGIN=%s does not exist" % PLUGIN
elif not SLUICE or not os.access(SLUICE, os.X_OK):
    SKIP_REASON = "SLUICE is not set to the sluice binary"


class Broker(brokerlib.Broker):
    """brokerlib's sluice with plugin lines; its log also holds the plugin's stderr."""

    def __init__(self, plugins=None, extra=(), expect_start=True):
        if plugins is None:
            plugins = [(PLUGIN, {})]
        lines = ["sys_interval 0"]
        for path, opts in plugins:
            lines.append("plugin %s" % path)
            lines.extend("plugin_opt_%s %s" % kv for kv in opts.items())
        super().__init__(lines + list(extra), name="plugin")
        self.stats_client = None
        if not expect_start:
            try:
                self.start()
            except brokerlib.BrokerError:
                return  # wait_exit() tells the status
            raise AssertionError("sluice started although it should not have:\n%s"
                                 % self.log_tail())
        self.start()

    def wait_exit(self, timeout=START_TIMEOUT):
        """The exit status of a broker expected to stop by itself."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("sluice still running after %.0fs:\n%s" % (timeout, self.log()))

    def log(self):
        return self.log_text()

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.stats_client:
            self.stats_client.close()
            self.stats_client = None
        return super().stop()

    def close(self):
        try:
            self.stop()
        finally:
            if os.environ.get("PLUGTEST_LOG"):
                print("\n---- broker log %s ----\n%s" % (self.conf_path, self.log()))
            self.cleanup()

    # The plugin's counters, as published on $P/stats.
    def stats(self, prefix="tp", what="stats/get", timeout=3.0):
        if not self.stats_client:
            # Named so it sorts after every member the tests put in group tpg.
            self.stats_client = Client(self.port, "zz-stats")
            self.stats_client.subscribe([("$%s/stats" % prefix, 0)], retain_handling=2)
        c = self.stats_client
        c.drain()
        c.publish("%s/%s" % (prefix, what), b"", qos=0)
        m = c.get(timeout)
        if m is None:
            raise AssertionError("no $%s/stats after %s/%s within %.1fs\n%s"
                                 % (prefix, prefix, what, timeout, self.log()))
        return parse_stats(m.payload)

    def wait_stats(self, pred, timeout=3.0, **kw):
        """Asks for the counters until pred(stats) holds; returns the last ones."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats(**kw)
            if pred(s) or time.monotonic() > deadline:
                return s
            time.sleep(0.1)


def parse_stats(payload):
    out = {}
    for word in payload.decode().split():
        k, _, v = word.partition("=")
        out[k] = int(v)
    return out


# ---- a paho client with queues ----------------------------------------------

class Client:
    """paho-mqtt 1.6.1, MQTT 5 (version=5) or 3.1.1 (version=4), loop in a thread."""

    def __init__(self, port, client_id, version=5, clean=True, connect=True):
        self.version = version
        proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        self.c = mqtt.Client(client_id=client_id, protocol=proto,
                             clean_session=None if version == 5 else clean)
        self.messages = queue.Queue()
        self.acks = {}
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.rc = None
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        if version == 5:
            self.c.connect(HOST, port, keepalive=30, clean_start=clean)
        else:
            self.c.connect(HOST, port, keepalive=30)
        self.c.loop_start()
        if not self.connected.wait(5):
            self.c.loop_stop()
            raise AssertionError("%s: no CONNACK within 5s" % client_id)
        if self.rc != 0:
            raise AssertionError("%s: CONNACK %s" % (client_id, self.rc))

    def _on_connect(self, c, u, flags, rc, props=None):
        self.rc = rc.value if hasattr(rc, "value") else rc
        self.connected.set()

    def _on_message(self, c, u, msg):
        self.messages.put(Msg(msg, time.monotonic()))

    def _ack(self, mid, value):
        with self.cond:
            self.acks[mid] = value
            self.cond.notify_all()

    def _on_subscribe(self, c, u, mid, codes, props=None):
        self._ack(mid, [x.value if hasattr(x, "value") else x for x in codes])

    def _on_unsubscribe(self, c, u, mid, props=None, codes=None):
        self._ack(mid, codes)

    def _wait_ack(self, mid, what):
        with self.cond:
            if not self.cond.wait_for(lambda: mid in self.acks, 5):
                raise AssertionError("no %s within 5s" % what)
            return self.acks.pop(mid)

    def subscribe(self, filters, retain_handling=0):
        """filters: [(filter, qos)]; returns the SUBACK codes."""
        if self.version == 5:
            topics = [(f, SubscribeOptions(qos=q, retainHandling=retain_handling))
                      for f, q in filters]
        else:
            topics = filters
        rc, mid = self.c.subscribe(topics)
        assert rc == 0, "subscribe failed locally: %d" % rc
        return self._wait_ack(mid, "SUBACK")

    def unsubscribe(self, filters):
        rc, mid = self.c.unsubscribe(filters)
        assert rc == 0
        return self._wait_ack(mid, "UNSUBACK")

    def publish(self, topic, payload=b"", qos=0, retain=False, user_props=(), expiry=None):
        props = None
        if self.version == 5 and (user_props or expiry is not None):
            props = Properties(PacketTypes.PUBLISH)
            if user_props:
                props.UserProperty = list(user_props)
            if expiry is not None:
                props.MessageExpiryInterval = expiry
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(5)
        assert info.is_published(), "%s: not acknowledged within 5s" % topic
        return info

    def get(self, timeout):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def get_n(self, n, timeout):
        out, deadline = [], time.monotonic() + timeout
        while len(out) < n:
            m = self.get(max(0.0, deadline - time.monotonic()))
            if m is None:
                break
            out.append(m)
        return out

    def drain(self):
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def close(self):
        """A normal DISCONNECT."""
        self.c.disconnect()
        self.c.loop_stop()


class Msg:
    """A received message and when it arrived (paho's MQTTMessage has __slots__)."""

    def __init__(self, m, t):
        self.topic, self.payload, self.qos, self.retain = m.topic, m.payload, m.qos, m.retain
        self.properties = getattr(m, "properties", None)
        self.t = t


def user_props(msg):
    p = getattr(msg, "properties", None)
    return list(getattr(p, "UserProperty", []) or []) if p else []


# ---- a raw MQTT client, for the bytes of acknowledgements ---------------------

PROP_TYPES = {0x01: "b", 0x02: "i", 0x03: "s", 0x08: "s", 0x09: "d", 0x0B: "v", 0x11: "i",
              0x12: "s", 0x13: "h", 0x15: "s", 0x16: "d", 0x17: "b", 0x18: "i", 0x19: "b",
              0x1A: "s", 0x1C: "s", 0x1F: "s", 0x21: "h", 0x22: "h", 0x23: "h", 0x24: "b",
              0x25: "b", 0x26: "p", 0x27: "i", 0x28: "b", 0x29: "b", 0x2A: "b"}


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def enc_props(props):
    """props: [(id, value)] with value typed as PROP_TYPES says."""
    out = bytearray()
    for pid, v in props:
        out += varint(pid)
        t = PROP_TYPES[pid]
        if t == "b":
            out.append(v)
        elif t == "h":
            out += struct.pack(">H", v)
        elif t == "i":
            out += struct.pack(">I", v)
        elif t == "v":
            out += varint(v)
        elif t in "sd":
            out += mqstr(v)
        elif t == "p":
            out += mqstr(v[0]) + mqstr(v[1])
    return varint(len(out)) + bytes(out)


def dec_varint(b, i):
    n, shift = 0, 0
    while True:
        n |= (b[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not b[i - 1] & 0x80:
            return n, i


def dec_props(b, i):
    """Returns ([(id, value)], index after the properties)."""
    n, i = dec_varint(b, i)
    end, out = i + n, []
    while i < end:
        pid, i = dec_varint(b, i)
        t = PROP_TYPES[pid]
        if t == "b":
            v, i = b[i], i + 1
        elif t == "h":
            v, i = struct.unpack_from(">H", b, i)[0], i + 2
        elif t == "i":
            v, i = struct.unpack_from(">I", b, i)[0], i + 4
        elif t == "v":
            v, i = dec_varint(b, i)
        else:
            parts = []
            for _ in range(2 if t == "p" else 1):
                ln = struct.unpack_from(">H", b, i)[0]
                parts.append(b[i + 2:i + 2 + ln].decode())
                i += 2 + ln
            v = tuple(parts) if t == "p" else parts[0]
        out.append((pid, v))
    return out, end


class Ack:
    def __init__(self, ptype, reason, props):
        self.ptype, self.reason, self.props = ptype, reason, props

    def user_props(self):
        return [v for k, v in self.props if k == 0x26]

    def reason_string(self):
        return next((v for k, v in self.props if k == 0x1F), None)


class Raw:
    """Just enough MQTT 3.1.1 / 5 over a socket to read acknowledgements byte by byte."""

    def __init__(self, port, client_id, version=5, clean=True):
        self.version = version
        self.s = socket.create_connection((HOST, port), timeout=5)
        self.buf = b""
        self.next_id = 1
        flags = 0x02 if clean else 0
        body = mqstr("MQTT") + bytes([version, flags]) + struct.pack(">H", 30)
        if version == 5:
            body += enc_props([])
        body += mqstr(client_id)
        self.send(0x10, body)
        ptype, _, b = self.read(5)
        assert ptype == 2, "expected CONNACK, got type %d" % ptype
        assert b[1] == 0, "CONNACK refused: 0x%02x" % b[1]

    def send(self, first, body):
        self.s.sendall(bytes([first]) + varint(len(body)) + body)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        self.s.settimeout(left)
        chunk = self.s.recv(65536)
        if not chunk:
            raise ConnectionError("broker closed the connection")
        self.buf += chunk

    def read(self, timeout):
        """One packet: (type, flags, body)."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                n, shift, i = 0, 0, 1
                while i < len(self.buf) and i < 5:
                    n |= (self.buf[i] & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not self.buf[i - 1] & 0x80:
                        if len(self.buf) >= i + n:
                            first, body = self.buf[0], self.buf[i:i + n]
                            self.buf = self.buf[i + n:]
                            return first >> 4, first & 0x0F, body
                        break
            self._fill(deadline)

    def publish(self, topic, payload=b"", qos=1, props=(), retain=False):
        """Sends a PUBLISH; for QoS 1/2 returns its PUBACK/PUBREC as an Ack."""
        pid = self.next_id
        self.next_id += 1
        body = mqstr(topic)
        if qos:
            body += struct.pack(">H", pid)
        if self.version == 5:
            body += enc_props(list(props))
        body += payload
        self.send(0x30 | (qos << 1) | (1 if retain else 0), body)
        if not qos:
            return None
        want = 4 if qos == 1 else 5
        while True:
            ptype, _, b = self.read(5)
            if ptype != want:
                continue  # a PUBLISH to us, or the like: not what we wait for
            assert struct.unpack_from(">H", b)[0] == pid
            reason = b[2] if len(b) > 2 else 0
            props_ = dec_props(b, 3)[0] if len(b) > 3 else []
            if qos == 2 and reason < 0x80:
                self.send(0x62, struct.pack(">H", pid))  # PUBREL
                self.read(5)  # PUBCOMP
            return Ack(ptype, reason, props_)

    def subscribe(self, filters):
        """filters: [(filter, options byte)]; returns the SUBACK codes."""
        pid = self.next_id
        self.next_id += 1
        body = struct.pack(">H", pid)
        if self.version == 5:
            body += enc_props([])
        for f, o in filters:
            body += mqstr(f) + bytes([o])
        self.send(0x82, body)
        while True:
            ptype, _, b = self.read(5)
            if ptype == 9:
                i = 2
                if self.version == 5:
                    i = dec_props(b, 2)[1]
                return list(b[i:])

    def disconnect(self):
        self.send(0xE0, b"\x00" if self.version == 5 else b"")
        self.s.close()

    def abort(self):
        """Closes the socket without DISCONNECT."""
        self.s.close()


# ---- the tests -------------------------------------------------------------

@unittest.skipIf(SKIP_REASON, SKIP_REASON)
class PluginLayer(unittest.TestCase):
    plugins = None  # [(path, opts)] for the broker; None = the test plugin alone

    def setUp(self):
        self.closers = []
        self.broker = Broker(self.plugins)
        self.closers.append(self.broker.close)

    def tearDown(self):
        for fn in reversed(self.closers):
            try:
                fn()
            except Exception:
                pass

    def client(self, cid, version=5, clean=True):
        c = Client(self.broker.port, cid, version, clean)
        self.closers.append(c.close)
        return c

    def raw(self, cid, version=5, clean=True):
        r = Raw(self.broker.port, cid, version, clean)
        self.closers.append(r.abort)
        return r

    def assertNothing(self, client, what, wait=QUIET):
        m = client.get(wait)
        self.assertIsNone(m, "%s: got %s" % (what, m and (m.topic, m.payload)))

    def assertLog(self, pattern):
        log = self.broker.log()
        self.assertRegex(log, pattern, "broker log lacks /%s/" % pattern)

    # -- PUBLISH: REJECT --------------------------------------------------------

    def test_plugin_publish_reject_v5_puback_reason(self):
        sub = self.client("sub-1")
        sub.subscribe([("tp/#", 1)])
        pub = self.raw("pub-v5")
        ack = pub.publish("tp/reject/a", b"no", qos=1)
        self.assertEqual(ack.ptype, 4)
        self.assertEqual(ack.reason, 0x99, "PUBACK reason code")
        self.assertEqual(ack.reason_string(), "tp says no")
        rec = pub.publish("tp/reject/b", b"no", qos=2)
        self.assertEqual(rec.ptype, 5)
        self.assertEqual(rec.reason, 0x99, "PUBREC reason code")
        self.assertNothing(sub, "rejected message delivered")
        ok = pub.publish("tp/ok/a", b"yes", qos=1)
        self.assertLess(ok.reason, 0x80)
        m = sub.get(3)
        self.assertIsNotNone(m, "a passed message after the rejected ones")
        self.assertEqual((m.topic, m.payload), ("tp/ok/a", b"yes"))
        self.assertEqual(self.broker.stats()["reject"], 2)

    def test_plugin_publish_reject_v311_dropped(self):
        sub = self.client("sub-1", version=4)
        sub.subscribe([("tp/#", 1)])
        pub = self.raw("pub-v311", version=4)
        pub.publish("tp/reject/a", b"no", qos=0)
        try:
            pub.publish("tp/reject/b", b"no", qos=1)  # a 3.1.1 PUBACK has no reason code
        except (ConnectionError, socket.timeout):
            pass  # closing the connection is also allowed [MQTT-3.3.5-2]
        self.assertNothing(sub, "rejected 3.1.1 message delivered")
        other = self.raw("pub-ok", version=4)
        other.publish("tp/ok/a", b"yes", qos=1)
        m = sub.get(3)
        self.assertIsNotNone(m)
        self.assertEqual(m.topic, "tp/ok/a")
        self.assertEqual(self.broker.stats()["reject"], 2)

    # -- PUBLISH: TAKE, route, msg_rewrite, ack_user_prop, kv -------------------------

    def test_plugin_publish_take_delays_rewrites_and_acks_with_user_prop(self):
        out = self.client("sub-out")
        out.subscribe([("tp/out/#", 1)])
        watch = self.client("sub-take")
        watch.subscribe([("tp/take/#", 1)])
        pub = self.raw("pub-take")
        t0 = time.monotonic()
        ack = pub.publish("tp/take/700/tp/out/a", b"later", qos=1,
                          props=[(0x26, ("tp-drop", "x")), (0x26, ("keep", "y"))])
        t_ack = time.monotonic() - t0
        self.assertLess(ack.reason, 0x80, "PUBACK of a taken message")
        self.assertLess(t_ack, 0.5, "the PUBACK must not wait for the release")
        acks = dict(ack.user_props())
        self.assertIn("tp-ack", acks, "PUBACK user property from ack_user_prop")
        self.assertRegex(acks["tp-ack"], r"^\d+$")
        m = out.get(4)
        self.assertIsNotNone(m, "taken message never routed")
        waited = m.t - t0
        self.assertGreaterEqual(waited, 0.700 - 0.002, "routed before its delay")
        self.assertLess(waited, 3.0)
        self.assertEqual((m.topic, m.payload, m.qos), ("tp/out/a", b"later", 1))
        self.assertEqual(user_props(m), [("keep", "y")], "msg_rewrite must drop tp-drop only")
        self.assertNothing(watch, "a taken message went to its original topic")
        self.assertNothing(out, "taken message routed twice", 0.2)
        self.assertLog(r"tp: took message %s on 'tp/take/700/tp/out/a'" % acks["tp-ack"])
        s = self.broker.stats()
        self.assertEqual((s["take"], s["routed"], s["routeerr"], s["kverr"]), (1, 1, 0, 0))

    def test_plugin_publish_take_v311_publisher(self):
        out = self.client("sub-out", version=4)
        out.subscribe([("tp/out/#", 0)])
        pub = self.client("pub-v311", version=4)
        t0 = time.monotonic()
        pub.publish("tp/take/300/tp/out/b", b"v311", qos=1)
        m = out.get(4)
        self.assertIsNotNone(m, "taken 3.1.1 message never routed")
        self.assertGreaterEqual(m.t - t0, 0.300 - 0.002)
        self.assertEqual((m.topic, m.payload), ("tp/out/b", b"v311"))

    def test_plugin_publish_take_qos2_pubrec_user_prop(self):
        out = self.client("sub-out")
        out.subscribe([("tp/out/#", 2)])
        pub = self.raw("pub-q2")
        t0 = time.monotonic()
        rec = pub.publish("tp/take/200/tp/out/q2", b"two", qos=2)  # PUBREL/PUBCOMP too
        self.assertEqual(rec.ptype, 5)
        self.assertLess(rec.reason, 0x80)
        self.assertRegex(dict(rec.user_props()).get("tp-ack", ""), r"^\d+$",
                         "PUBREC user property from ack_user_prop")
        got = out.get_n(2, 2)
        self.assertEqual([(m.topic, m.qos) for m in got], [("tp/out/q2", 2)], "exactly once")
        self.assertGreaterEqual(got[0].t - t0, 0.200 - 0.002)

    def test_plugin_publish_take_restart_expiry(self):
        out = self.client("sub-out")
        out.subscribe([("tp/out/#", 1)])
        pub = self.client("pub")
        # Expires 1 s after publishing, but the plugin rewrites it with
        # restart_expiry after 1.5 s: it must still arrive, with <= 1 s left.
        pub.publish("tp/take/1500/tp/out/e", b"e", qos=1, expiry=1)
        m = out.get(4)
        self.assertIsNotNone(m, "msg_rewrite(restart_expiry) did not restart the expiry")
        left = getattr(m.properties, "MessageExpiryInterval", None)
        self.assertIsNotNone(left, "the expiry interval is kept by msg_rewrite")
        self.assertIn(left, (0, 1))

    def test_plugin_kv_scan_counts_taken_messages(self):
        pub = self.client("pub")
        s = self.broker.stats()
        self.assertEqual((s["starts"], s["kverr"]), (1, 0), "kv self-test at START")
        pub.publish("tp/take/1500/tp/out/1", b"1", qos=1)
        pub.publish("tp/take/1500/tp/out/2", b"2", qos=1)
        s = self.broker.stats(what="kv/scan")
        self.assertEqual(s["kvtake"], 2, "kv_scan of take/ while two are taken")
        s = self.broker.wait_stats(lambda x: x["routed"] == 2, timeout=5)
        self.assertEqual(s["routed"], 2)
        s = self.broker.stats(what="kv/scan")
        self.assertEqual((s["kvtake"], s["kverr"]), (0, 0), "kv_del after routing")

    # -- DELIVER: SKIP, HOLD + release, HOLD + discard ------------------------------

    def test_plugin_deliver_skip_by_client_id(self):
        skip = self.client("skip-me")
        keep = self.client("keep-me", version=4)
        for c in (skip, keep):
            c.subscribe([("tp/skip/#", 1), ("tp/plain/#", 1)])
        pub = self.client("pub")
        pub.publish("tp/skip/a", b"s", qos=1)
        m = keep.get(3)
        self.assertIsNotNone(m)
        self.assertEqual(m.topic, "tp/skip/a")
        self.assertNothing(skip, "SKIP verdict ignored")
        pub.publish("tp/plain/a", b"p", qos=1)
        m = skip.get(3)
        self.assertIsNotNone(m, "skip-me no longer gets other topics")
        self.assertEqual(m.topic, "tp/plain/a")
        self.assertEqual(self.broker.stats()["skip"], 1)

    def test_plugin_deliver_hold_released_after_300ms(self):
        s1 = self.client("hold-q1")
        s1.subscribe([("tp/hold/#", 1)])
        s0 = self.client("hold-q0", version=4)
        s0.subscribe([("tp/hold/#", 0)])
        pub = self.raw("pub")
        t0 = time.monotonic()
        ack = pub.publish("tp/hold/a", b"h", qos=1)
        self.assertLess(ack.reason, 0x80)
        for c, qos in ((s1, 1), (s0, 0)):
            m = c.get(3)
            self.assertIsNotNone(m, "held delivery never released (qos %d)" % qos)
            self.assertGreaterEqual(m.t - t0, 0.300 - 0.002, "held delivery came early")
            self.assertEqual((m.topic, m.payload, m.qos), ("tp/hold/a", b"h", qos))
            self.assertNothing(c, "a released delivery came twice", 0.3)
        s = self.broker.wait_stats(lambda x: x["acked"] >= 1)
        self.assertEqual((s["hold"], s["release"], s["holderr"], s["rehold"]), (2, 2, 0, 0),
                         "release() returned an error or DELIVER was asked again")
        self.assertEqual(s["acked"], 1, "the QoS 1 released delivery was acknowledged")

    def test_plugin_deliver_hold_discarded(self):
        sub = self.client("disc-1")
        sub.subscribe([("tp/discard/#", 1)])
        pub = self.client("pub")
        pub.publish("tp/discard/a", b"d", qos=1)
        self.assertNothing(sub, "discarded delivery arrived", 1.0)
        s = self.broker.wait_stats(lambda x: x["discard"] >= 1)
        self.assertEqual((s["hold"], s["discard"], s["holderr"]), (1, 1, 0))
        # The plugin ended it itself: no DROPPED (plugin.c: a hold ends exactly once).
        self.assertEqual((s["dropped"], s["acked"]), (0, 0))
        self.assertLog(r"tp: discarded hold 1: 0")

    def test_plugin_deliver_hold_dropped_when_session_ends(self):
        sub = Client(self.broker.port, "gone-1")
        sub.subscribe([("tp/holdlong/#", 1)])
        pub = self.client("pub")
        pub.publish("tp/holdlong/a", b"h", qos=1)
        self.broker.wait_stats(lambda x: x["hold"] >= 1)
        sub.close()  # within the 3 s hold; the clean session ends with it
        s = self.broker.wait_stats(lambda x: x["dropped"] >= 1)
        self.assertEqual((s["dropped"], s["dropheld"], s["release"]), (1, 1, 0),
                         "a held delivery whose session ended: one DROPPED with its hold_id")
        self.assertLog(r"tp: dropped client=gone-1 hold=1 why=\S+")
        s = self.broker.wait_stats(lambda x: x["release"] >= 1, timeout=5)
        self.assertEqual((s["release"], s["holderr"]), (1, 1),
                         "release() of a hold already dropped returns -1")

    # -- CHOOSE ---------------------------------------------------------------

    def test_plugin_choose_smallest_client_id_in_group_tpg(self):
        members = [self.client("m-b"), self.client("m-a"), self.client("m-c", version=4)]
        for m in members:
            m.subscribe([("$share/tpg/tp/shared/#", 1)])
        pub = self.client("pub")
        for i in range(9):
            pub.publish("tp/shared/%d" % i, b"%d" % i, qos=1)
        got = members[1].get_n(9, 5)
        self.assertEqual([m.payload for m in got], [b"%d" % i for i in range(9)],
                         "m-a (smallest id) must get every message, in order")
        self.assertNothing(members[0], "m-b got a message")
        self.assertNothing(members[2], "m-c got a message", 0.1)
        self.assertGreaterEqual(self.broker.stats()["choose"], 9)

    # -- SUBSCRIBE: REJECT ------------------------------------------------------

    def test_plugin_subscribe_forbidden_v5_suback_0x87(self):
        sub = self.raw("sub-v5")
        codes = sub.subscribe([("tp/ok/#", 1), ("tp/forbidden/#", 1),
                               ("$share/g1/tp/forbidden/#", 0), ("tp/forbidden/x", 0)])
        self.assertEqual(codes, [1, 0x87, 0x87, 0], "SUBACK reason codes")
        watcher = self.client("watch")
        watcher.subscribe([("tp/forbidden/#", 1)])  # paho: same verdict through paho
        pub = self.client("pub")
        pub.publish("tp/forbidden/y", b"f", qos=1)
        self.assertNothing(watcher, "a rejected subscription still delivers")
        s = self.broker.stats()
        self.assertEqual(s["subreject"], 3)

    def test_plugin_subscribe_forbidden_v311_suback_failure(self):
        sub = self.client("sub-v311", version=4)
        codes = sub.subscribe([("tp/ok/#", 1), ("tp/forbidden/#", 2)])
        self.assertEqual(codes, [1, 0x80], "3.1.1 SUBACK: 0x80 for the refused filter")
        pub = self.client("pub")
        pub.publish("tp/forbidden/a", b"f", qos=1)
        pub.publish("tp/ok/a", b"o", qos=1)
        m = sub.get(3)
        self.assertIsNotNone(m)
        self.assertEqual(m.topic, "tp/ok/a", "only the accepted filter delivers")

    # -- counted events ----------------------------------------------------------

    def test_plugin_connect_disconnect_counted_and_logged(self):
        self.broker.stats()  # connects the stats client first: connect=1
        a = Client(self.broker.port, "cd-a")
        b = Client(self.broker.port, "cd-b", version=4)
        c = Raw(self.broker.port, "cd-c")
        a.close()
        b.close()
        c.abort()
        s = self.broker.wait_stats(lambda x: x["disconnect"] >= 3)
        self.assertEqual((s["connect"], s["disconnect"]), (4, 3))
        self.assertEqual((s["graceful"], s["abrupt"]), (2, 1), "DISCONNECT graceful flag")
        self.assertLog(r"tp: connect client=cd-a proto=5")
        self.assertLog(r"tp: connect client=cd-b proto=4")
        self.assertLog(r"tp: disconnect client=cd-c")

    def test_plugin_unsubscribe_counted(self):
        sub = self.client("unsub-1")
        sub.subscribe([("tp/u/a", 1), ("tp/u/b", 1)])
        sub.unsubscribe(["tp/u/a"])
        pub = self.client("pub")
        pub.publish("tp/u/a", b"gone", qos=1)
        pub.publish("tp/u/b", b"kept", qos=1)
        m = sub.get(3)
        self.assertEqual(m and m.payload, b"kept")
        s = self.broker.stats()
        self.assertEqual((s["subscribe"], s["unsubscribe"]), (3, 1))  # +1: $tp/stats
        self.assertLog(r"tp: unsubscribe client=unsub-1 proto=5 topic=- filter=tp/u/a")

    def test_plugin_acked_qos1_qos2_not_qos0(self):
        s1 = self.client("ack-1")
        s1.subscribe([("tp/ack/#", 1)])
        s2 = self.client("ack-2", version=4)
        s2.subscribe([("tp/ack/#", 2)])
        s0 = self.client("ack-0")
        s0.subscribe([("tp/ack/#", 0)])
        pub = self.client("pub")
        pub.publish("tp/ack/a", b"x", qos=2)
        for c in (s1, s2, s0):
            self.assertIsNotNone(c.get(3))
        s = self.broker.wait_stats(lambda x: x["acked"] >= 2)
        time.sleep(0.2)
        s = self.broker.stats()
        self.assertEqual(s["acked"], 2, "PUBACK (qos 1) and PUBCOMP (qos 2); none for qos 0")
        self.assertEqual(s["dropped"], 0)
        self.assertLog(r"tp: acked client=ack-2 proto=4 topic=tp/ack/a filter=- qos=2")

    def test_plugin_dropped_when_persistent_session_discarded(self):
        sub = self.client("drop-1", version=4, clean=False)
        sub.subscribe([("tp/drop/#", 1)])
        sub.close()
        time.sleep(0.2)
        pub = self.client("pub")
        pub.publish("tp/drop/a", b"1", qos=1)
        pub.publish("tp/drop/b", b"2", qos=1)
        again = self.client("drop-1", version=4, clean=True)  # the old session goes
        self.assertNothing(again, "queued messages of a discarded session delivered")
        s = self.broker.wait_stats(lambda x: x["dropped"] >= 2)
        self.assertEqual((s["dropped"], s["dropheld"], s["acked"]), (2, 0, 0))
        self.assertLog(r"tp: dropped client=drop-1 hold=0 why=\S+")

    # -- START / STOP / cleanup --------------------------------------------------

    def test_plugin_start_stop_and_cleanup(self):
        s = self.broker.stats()
        self.assertEqual((s["start"], s["stop"], s["starts"], s["kverr"]), (1, 0, 1, 0))
        self.assertLog(r"tp: init prefix=tp options=0")
        self.assertLog(r"tp: start ")
        self.assertLog(r"tp: kv self-test: 0 error\(s\)")
        pub = self.client("pub")
        pub.publish("tp/take/60000/tp/never", b"pending at stop", qos=1)
        sub = self.client("hold-at-stop")
        sub.subscribe([("tp/hold/#", 1)])
        pub.publish("tp/hold/x", b"held at stop", qos=1)
        self.broker.wait_stats(lambda x: x["hold"] >= 1)
        self.assertEqual(self.broker.stop(), 0, "exit status after SIGTERM")
        log = self.broker.log()
        self.assertIn("tp: stop ", log)
        self.assertIn("tp: cleanup stop=1 pending=none", log)
        self.assertLess(log.index("tp: stop "), log.index("tp: cleanup"), "STOP before cleanup")
        self.assertNotIn("AddressSanitizer", log)
        self.assertNotIn("LeakSanitizer", log)

    # -- route() from inside callbacks; accessors ---------------------------------

    def test_plugin_route_from_publish_callback(self):
        sub = self.client("st")
        sub.subscribe([("$tp/stats", 0)], retain_handling=2)
        pub = self.client("pub")
        pub.publish("tp/stats/sync", b"", qos=1)
        m = sub.get(3)
        self.assertIsNotNone(m, "route() inside a PUBLISH callback")
        self.assertEqual(parse_stats(m.payload)["publish"], 1)
        late = self.client("late")  # $tp/stats was retained
        late.subscribe([("$tp/stats", 0)])
        m = late.get(3)
        self.assertIsNotNone(m, "the plugin's retained message")
        self.assertTrue(m.retain)

    def test_plugin_route_from_deliver_callback(self):
        st = self.client("st")
        st.subscribe([("$tp/stats", 0)], retain_handling=2)
        sub = self.client("dr-1")
        sub.subscribe([("tp/droute/#", 1)])
        other = self.client("dr-2")
        other.subscribe([("tp/droute/#", 1)])
        pub = self.client("pub")
        pub.publish("tp/droute/a", b"d", qos=1)
        for c in (sub, other):
            m = c.get(3)
            self.assertEqual(m and m.payload, b"d", "delivery while routing from DELIVER")
        got = st.get_n(2, 3)
        self.assertEqual(len(got), 2, "one $tp/stats per DELIVER")
        self.assertEqual(self.broker.proc.poll(), None, "broker died")

    def test_plugin_msg_accessors(self):
        info = self.client("info-sub")
        info.subscribe([("$tp/info", 0)], retain_handling=2)
        pub = self.client("info-pub")
        pub.publish("tp/info/a", b"12345", qos=1, user_props=[("a", "1"), ("b", "2")],
                    expiry=60)
        m = info.get(3)
        self.assertIsNotNone(m)
        text = m.payload.decode()
        self.assertRegex(text, r"^topic=tp/info/a sender=info-pub qos=1 retain=0 id=\d+ "
                               r"payload_len=5 expiry_in_ms=(\d+) props=a:1,b:2,$")
        left = int(re.search(r"expiry_in_ms=(\d+)", text).group(1))
        self.assertTrue(55000 < left <= 60000, "msg_expiry: %d ms left" % left)
        pub.publish("tp/info/b", b"", qos=0)
        m = info.get(3)
        self.assertRegex(m.payload.decode(), r"qos=0 retain=0 .*payload_len=0 "
                                             r"expiry_in_ms=-1 props=$")


class PluginChain(unittest.TestCase):
    """Two instances of the test plugin (prefixes tp, then tq): chain order."""

    def setUp(self):
        if SKIP_REASON:
            self.skipTest(SKIP_REASON)
        self.tmp = tempfile.mkdtemp(prefix="plugtest-so-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def start(self, plugins, extra=()):
        b = Broker(plugins, extra)
        self.addCleanup(b.close)
        return b

    def start_fail(self, plugins):
        """A broker that must refuse to start; returns its output."""
        b = Broker(plugins, expect_start=False)
        self.addCleanup(b.close)
        rc = b.wait_exit()
        self.assertNotEqual(rc, 0, "broker exited 0 although start-up failed")
        try:
            socket.create_connection((HOST, b.port), timeout=0.5).close()
            self.fail("something listens on the port of a broker that failed")
        except OSError:
            pass
        return b.log()

    def compile_so(self, name, source):
        if not shutil.which("gcc") and not shutil.which("cc"):
            self.skipTest("no C compiler to build %s" % name)
        src = os.path.join(self.tmp, name + ".c")
        so = os.path.join(self.tmp, name + ".so")
        with open(src, "w") as f:
            f.write(source)
        cc = shutil.which("gcc") or shutil.which("cc")
        subprocess.run([cc, "-shared", "-fPIC", "-o", so, src], check=True, timeout=60)
        return so

    def test_plugin_route_reaches_later_plugins_only(self):
        second = os.path.join(self.tmp, "test_plugin_2.so")
        shutil.copy(PLUGIN, second)
        b = self.start([(PLUGIN, {}), (second, {"prefix": "tq"})])
        sub = Client(b.port, "chain-sub")
        self.addCleanup(sub.close)
        sub.subscribe([("tq/#", 1), ("tp/#", 1)])
        pub = Client(b.port, "chain-pub")
        self.addCleanup(pub.close)
        # tp takes it and routes it to tq/reject/..: tq comes after tp, so it rejects.
        pub.publish("tp/take/100/tq/reject/x", b"1", qos=1)
        # tq takes it and routes it to tp/reject/..: tp came before tq, so it passes.
        pub.publish("tq/take/100/tp/reject/y", b"2", qos=1)
        m = sub.get(3)
        self.assertIsNotNone(m, "route() from the second plugin")
        self.assertEqual((m.topic, m.payload), ("tp/reject/y", b"2"))
        m = sub.get(QUIET)
        self.assertIsNone(m, "route() from the first plugin skipped the second: %s"
                          % (m and m.topic))
        s2 = b.stats(prefix="tq")
        self.assertEqual((s2["take"], s2["reject"], s2["routed"]), (1, 1, 1))

    def test_plugin_option_prefix(self):
        b = self.start([(PLUGIN, {"prefix": "xq"})])
        self.assertIn("tp: init prefix=xq options=1", b.log())
        sub = Client(b.port, "px-sub")
        self.addCleanup(sub.close)
        sub.subscribe([("tp/#", 1), ("xq/#", 1)])
        pub = Raw(b.port, "px-pub")
        self.addCleanup(pub.abort)
        self.assertEqual(pub.publish("xq/reject/a", b"", qos=1).reason, 0x99)
        self.assertLess(pub.publish("tp/reject/a", b"", qos=1).reason, 0x80)
        m = sub.get(3)
        self.assertEqual(m and m.topic, "tp/reject/a", "the default prefix is off")
        self.assertEqual(b.stats(prefix="xq")["reject"], 1)

    def test_plugin_option_fail_refuses_start(self):
        log = self.start_fail([(PLUGIN, {"fail": "yes"})])
        self.assertIn("tp: refusing to start: plugin_opt_fail is yes", log)
        self.assertIn("test_plugin", log, "the broker should name the plugin that failed")

    def test_plugin_missing_path_refuses_start(self):
        path = os.path.join(self.tmp, "no-such-plugin.so")
        log = self.start_fail([(path, {})])
        self.assertIn(path, log, "the error must name the path")

    def test_plugin_without_entry_points_refuses_start(self):
        so = self.compile_so("no_entry", "int not_a_plugin(void) { return 1; }\n")
        log = self.start_fail([(so, {})])
        self.assertIn(so, log, "the error must name the path")
        self.assertIn("sluice_plugin_", log, "the error must name the missing entry point")

    def test_plugin_wrong_api_version_refuses_start(self):
        so = self.compile_so("bad_version", (
            "int sluice_plugin_version(void) { return 999; }\n"
            "int sluice_plugin_init(const void *h, void *s, const void *o, int n, void **u)\n"
            "{ (void)h; (void)s; (void)o; (void)n; (void)u; return 0; }\n"
            "void sluice_plugin_cleanup(void *u) { (void)u; }\n"))
        log = self.start_fail([(so, {})])
        self.assertIn(so, log, "the error must name the path")
        self.assertIn("999", log, "the error should say which version the plugin has")

    def test_plugin_on_refuses_unknown_events(self):
        b = self.start([(PLUGIN, {"probe": "yes"})])
        self.assertEqual(b.stats()["probe"], 2, "host->on() with SP_EV__COUNT and -1")


if __name__ == "__main__":
    unittest.main()
