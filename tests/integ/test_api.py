"""The HTTP API (/api/v1, JSON) on the HTTP side of websockets and http
listeners.

The contract.  GET /api/v1/broker: version, uptime and counters.  GET
/api/v1/clients: {"items": [...], "total", "offset", "limit"}, paged with
?offset=&limit= (default 100, at most 10000) and filtered with
?connected=0|1 and ?prefix=; each item has client_id, username, connected,
protocol, address, websocket, keep_alive, connected_since_ms,
disconnected_at_ms, inflight, queued and subscriptions.  GET
/api/v1/clients/ID: the same and its subscription_list.  DELETE
/api/v1/clients/ID: its connection ends (MQTT 5: DISCONNECT 0x98,
Administrative action), the session stays.  Errors are JSON {"error": ...}
with 404 (unknown client or path) or 405 (method).  Access: with
http_api_users NAME..., HTTP Basic credentials of one of them checked
against the password file (else 401 with WWW-Authenticate: Basic); without
it, only on a listener bound to a loopback address (else 403).
"""

import base64
import http.client
import json
import os

import brokerlib
import rawmqtt as R
from harness import skip_on_mosquitto
from test_auth import ALICE_PW, BOB_PW, need_passwd, write_passwd


def call(port, method, path, auth=None):
	"""(status, headers, decoded JSON body) of one request to 127.0.0.1:port."""
	c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
	headers = {}
	if auth:
		headers["Authorization"] = "Basic " + base64.b64encode(
			("%s:%s" % auth).encode()).decode()
	try:
		c.request(method, path, headers=headers)
		r = c.getresponse()
		body = r.read()
		return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(body)
	finally:
		c.close()


def connect(t, b, cid, clean=True, version=5):
	r = t.raw(b, version=version)
	props = [] if clean or version != 5 else [(R.SESSION_EXPIRY, 3600)]
	r.send(R.connect(cid, version, clean=clean, properties=props))
	assert r.expect(R.CONNACK).connack()[1] == 0
	return r


def test_api_broker_and_clients(t):
	skip_on_mosquitto("the HTTP API is sluice's")
	b = t.broker()
	tag = t.cid("api")
	a = connect(t, b, tag + "-a")
	a.send(R.subscribe(1, [("api/#", R.sub_opts(1))]))
	a.expect(R.SUBACK)
	connect(t, b, tag + "-b", version=4)
	off = connect(t, b, tag + "-off", clean=False)
	off.send(R.disconnect())
	off.wait_closed(5)
	st, h, info = call(b.ws_port, "GET", "/api/v1/broker")
	assert st == 200 and h["content-type"] == "application/json", (st, h)
	assert info["version"] and info["clients_connected"] >= 2 and info["sessions"] >= 3, info
	st, _, page = call(b.ws_port, "GET", "/api/v1/clients?prefix=%s&limit=2" % tag)
	assert st == 200 and page["total"] == 3 and len(page["items"]) == 2 and page["limit"] == 2, page
	st, _, rest = call(b.ws_port, "GET", "/api/v1/clients?prefix=%s&limit=2&offset=2" % tag)
	ids = {i["client_id"] for i in page["items"] + rest["items"]}
	assert ids == {tag + "-a", tag + "-b", tag + "-off"}, ids
	_, _, on = call(b.ws_port, "GET", "/api/v1/clients?prefix=%s&connected=1" % tag)
	_, _, offl = call(b.ws_port, "GET", "/api/v1/clients?prefix=%s&connected=0" % tag)
	assert on["total"] == 2 and [i["client_id"] for i in offl["items"]] == [tag + "-off"]
	assert offl["items"][0]["connected"] is False and offl["items"][0]["address"] is None
	st, _, one = call(b.ws_port, "GET", "/api/v1/clients/%s-a" % tag)
	assert st == 200 and one["protocol"] == "5.0" and one["address"].endswith("127.0.0.1"), one
	assert [(s["filter"], s["qos"]) for s in one["subscription_list"]] == [("api/#", 1)], one


def test_api_kick_and_errors(t):
	skip_on_mosquitto("the HTTP API is sluice's")
	b = t.broker()
	cid = t.cid("kick")
	r = connect(t, b, cid)
	st, _, out = call(b.ws_port, "DELETE", "/api/v1/clients/" + cid)
	assert st == 200 and out == {"client_id": cid, "disconnected": True}, (st, out)
	d = r.expect(R.DISCONNECT)
	assert d.disconnect()[0] == 0x98, "DISCONNECT 0x98 (Administrative action)"
	assert call(b.ws_port, "GET", "/api/v1/clients/nobody-here")[0:3:2] == \
		(404, {"error": "no such client"})
	assert call(b.ws_port, "GET", "/api/v1/nothing")[0] == 404
	assert call(b.ws_port, "POST", "/api/v1/broker")[2] == {"error": "method not allowed"}
	assert call(b.ws_port, "DELETE", "/api/v1/broker")[0] == 405


def test_api_needs_api_users_credentials(t):
	skip_on_mosquitto("the HTTP API is sluice's")
	need_passwd()
	b = brokerlib.Broker(name=t.short[:30])
	t.brokers.append((b, 0, True))
	pw = os.path.join(b.dir, "passwd")
	write_passwd(pw, [("alice", ALICE_PW), ("bob", BOB_PW)])
	b.extra = ["password_file %s" % pw, "http_api_users alice carol"]
	b.start()
	st, h, out = call(b.ws_port, "GET", "/api/v1/broker")
	assert st == 401 and h.get("www-authenticate") == 'Basic realm="sluice"', (st, h)
	assert "http_api_users" in out["error"]
	assert call(b.ws_port, "GET", "/api/v1/broker", ("alice", ALICE_PW + "x"))[0] == 401
	assert call(b.ws_port, "GET", "/api/v1/broker", ("bob", BOB_PW))[0] == 401, \
		"bob has a password but is not in http_api_users"
	assert call(b.ws_port, "GET", "/api/v1/broker", ("carol", "any"))[0] == 401, \
		"carol is listed but not in the password file"
	st, _, info = call(b.ws_port, "GET", "/api/v1/broker", ("alice", ALICE_PW))
	assert st == 200 and "version" in info


def test_api_only_on_loopback_without_api_users(t):
	skip_on_mosquitto("the HTTP API is sluice's")
	port = brokerlib.free_port()
	# a listener on every address (reached here through 127.0.0.1)
	b = t.broker(["listener %d" % port, "protocol http"])
	st, _, out = call(port, "GET", "/api/v1/broker")
	assert st == 403 and "loopback" in out["error"], (st, out)
	assert call(b.ws_port, "GET", "/api/v1/broker")[0] == 200, "the loopback listener serves it"
	# /metrics is not the API: served on both
	c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
	c.request("GET", "/metrics")
	assert c.getresponse().status == 200
	c.close()


def test_api_retained_list_and_delete(t):
	skip_on_mosquitto("the HTTP API is sluice's")
	b = t.fresh_broker()
	p = connect(t, b, t.cid("ret"))
	p.send(R.publish("api/r/a", b"text", 1, True, pid=1))
	p.expect(R.PUBACK)
	p.send(R.publish("api/r/b", b"\x00\xff", 0, True))
	p.send(R.publish("other/x", b"x", 0, True))
	p.send(R.pingreq())
	p.expect(R.PINGRESP)
	st, _, out = call(b.ws_port, "GET", "/api/v1/retained?filter=api/r/%23")
	assert st == 200 and out["total"] == 2, out
	items = {i["topic"]: i for i in out["items"]}
	assert items["api/r/a"]["payload"] == "text" and items["api/r/a"]["qos"] == 1
	assert items["api/r/b"]["payload"] is None and items["api/r/b"]["payload_bytes"] == 2
	assert call(b.ws_port, "GET", "/api/v1/retained?filter=a/%23/b")[0] == 400
	st, _, out = call(b.ws_port, "DELETE", "/api/v1/retained/api/r/a")
	assert st == 200 and out == {"topic": "api/r/a", "deleted": True}, out
	assert call(b.ws_port, "DELETE", "/api/v1/retained/api/r/a")[0] == 404
	# gone for a new subscriber, and no empty message went out for it
	s = connect(t, b, t.cid("sub"))
	s.send(R.subscribe(1, [("api/r/#", R.sub_opts(0))]))
	s.expect(R.SUBACK)
	got = [s.expect(R.PUBLISH).publish()["topic"]]
	assert s.recv_or_none(0.5) is None
	assert got == ["api/r/b"], got
	# and gone after a restart (the store too)
	b.restart()
	_, _, out = call(b.ws_port, "GET", "/api/v1/retained?filter=api/r/%23")
	assert [i["topic"] for i in out["items"]] == ["api/r/b"], out


def test_api_groups(t):
	skip_on_mosquitto("the HTTP API is sluice's")
	b = t.fresh_broker()
	g = "apig" + t.tag[-6:]
	m = connect(t, b, t.cid("m1"))
	m.send(R.subscribe(1, [("$share/%s/api/g/#" % g, R.sub_opts(1))]))
	m.expect(R.SUBACK)
	p = connect(t, b, t.cid("p"))
	p.send(R.publish("api/g/x", b"x", 1, pid=1))
	p.expect(R.PUBACK)
	m.expect(R.PUBLISH)
	st, _, out = call(b.ws_port, "GET", "/api/v1/groups")
	mine = [i for i in out["items"] if i["group"] == g]
	assert st == 200 and mine and mine[0]["members"] == 1, out
