/*
 * framer.h - streaming reassembly of MQTT packets from arbitrary chunks.
 *
 * Raw TCP reads and WebSocket frames both feed framer_feed(); packets may be
 * split or merged across chunks in any way. A packet wholly inside the chunk
 * being fed is handed out without a copy; only a packet that straddles
 * chunks is assembled in the framer's own buffer (which grows to the largest
 * such packet, bounded by max_packet).
 */
#ifndef SLUICE_FRAMER_H
#define SLUICE_FRAMER_H

#include <stddef.h>
#include <stdint.h>

enum framer_err {
	FRAMER_OK = 0,
	FRAMER_EMALFORMED = -1, /* remaining length longer than 4 bytes */
	FRAMER_ETOOLARGE = -2, /* packet larger than max_packet */
	FRAMER_ENOMEM = -3,
};

/*
 * Called for each complete packet: pkt points at the fixed header, len is
 * the whole packet. pkt is valid only during the call. A non-zero return
 * stops framer_feed, which returns that value unchanged (the connection is
 * closing); the rest of the chunk is dropped.
 */
typedef int (*framer_packet_fn)(void *arg, const uint8_t *pkt, size_t len);

struct framer {
	uint8_t *buf; /* partial packet */
	size_t len, cap;
	uint32_t max_packet; /* whole packet in bytes; 0 = protocol maximum */
};

void framer_init(struct framer *f, uint32_t max_packet);
void framer_free(struct framer *f);
int framer_feed(struct framer *f, const uint8_t *data, size_t len, framer_packet_fn fn, void *arg);
/* Bytes of an incomplete packet held, for memory accounting. */
size_t framer_pending(const struct framer *f);

#endif
