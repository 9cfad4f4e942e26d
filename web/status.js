/*
 * status.js - the broker's $SYS topics, live, over MQTT 3.1.1 on the same
 * WebSocket port that served this page. A minimal client written for this
 * page only: CONNECT, SUBSCRIBE $SYS/broker/#, PINGREQ, and PUBLISH
 * (QoS 0) decoding. No library, nothing fetched from elsewhere.
 * Secure WebSocket when the page came over https: a browser blocks ws://
 * from an https page (mixed content), and the listener speaks TLS anyway.
 */
"use strict";

const rows = new Map();
const stateEl = document.getElementById("state");
const body = document.querySelector("#sys tbody");

function utf8(s) { return new TextEncoder().encode(s); }

function mqttString(s) {
	const b = utf8(s);
	return [b.length >> 8, b.length & 255, ...b];
}

function packet(type, flags, body) {
	const len = [];
	let n = body.length;
	do {
		let d = n % 128;
		n = Math.floor(n / 128);
		len.push(n ? d | 128 : d);
	} while (n);
	return new Uint8Array([(type << 4) | flags, ...len, ...body]);
}

function connectPacket() {
	const id = "status-" + Math.random().toString(16).slice(2, 10);
	return packet(1, 0, [...mqttString("MQTT"), 4, 2, 0, 30, ...mqttString(id)]);
}

function subscribePacket() {
	return packet(8, 2, [0, 1, ...mqttString("$SYS/broker/#"), 0]);
}

/* Streaming reader: WebSocket frames need not align with MQTT packets. */
let pending = new Uint8Array(0);

function feed(chunk, onPacket) {
	const joined = new Uint8Array(pending.length + chunk.length);
	joined.set(pending);
	joined.set(chunk, pending.length);
	let pos = 0;
	for (;;) {
		let mult = 1, len = 0, i = pos + 1, done = false;
		while (i < joined.length && i < pos + 5) {
			const d = joined[i++];
			len += (d & 127) * mult;
			mult *= 128;
			if (!(d & 128)) { done = true; break; }
		}
		if (!done || i + len > joined.length)
			break;
		onPacket(joined[pos], joined.subarray(i, i + len));
		pos = i + len;
	}
	pending = joined.slice(pos);
}

function onPacket(header, body) {
	if (header >> 4 !== 3)
		return;
	const tlen = (body[0] << 8) | body[1];
	const qos = (header >> 1) & 3;
	const topic = new TextDecoder().decode(body.subarray(2, 2 + tlen));
	const payload = new TextDecoder().decode(body.subarray(2 + tlen + (qos ? 2 : 0)));
	show(topic.replace("$SYS/broker/", ""), payload);
}

function show(name, value) {
	let row = rows.get(name);
	if (!row) {
		row = document.createElement("tr");
		row.innerHTML = "<td></td><td></td>";
		row.firstChild.textContent = name;
		rows.set(name, row);
		const names = [...rows.keys()].sort();
		body.insertBefore(row, rows.get(names[names.indexOf(name) + 1]) || null);
	}
	row.lastChild.textContent = value;
}

function connect() {
	const scheme = location.protocol === "https:" ? "wss://" : "ws://";
	const ws = new WebSocket(scheme + location.host + "/mqtt", "mqtt");
	let ping;
	ws.binaryType = "arraybuffer";
	ws.onopen = () => {
		ws.send(connectPacket());
		ws.send(subscribePacket());
		ping = setInterval(() => ws.send(new Uint8Array([0xc0, 0])), 20000);
		stateEl.textContent = "connected to " + location.host;
		stateEl.className = "up";
	};
	ws.onmessage = (ev) => feed(new Uint8Array(ev.data), onPacket);
	ws.onclose = () => {
		clearInterval(ping);
		pending = new Uint8Array(0);
		stateEl.textContent = "disconnected; retrying";
		stateEl.className = "down";
		setTimeout(connect, 2000);
	};
}

connect();
