# bench/local.mk - sluice-bench, the load generator (see bench/README.md).
#
# Included at the end of Makefile.am. `make` builds bench/sluice-bench; the
# broker does not need it. It compiles the broker's pure modules itself
# (codec, props, framer, buf, utf8, topic, mem: libc only), like tests/fuzz/local.mk,
# so it links neither src/libbroker.la nor libwebsockets (OpenSSL only, for --tls). bench/compare.sh
# runs it against sluice and mosquitto; it is not part of `make check`.

# tests/fuzz/local.mk (included before this file) sets noinst_PROGRAMS under
# ENABLE_FUZZ only; automake wants += in the same conditions as the definition.
if ENABLE_FUZZ
noinst_PROGRAMS += bench/sluice-bench
else
noinst_PROGRAMS = bench/sluice-bench
endif
bench_sluice_bench_SOURCES = bench/bench.h bench/bench_main.c bench/bench_net.c \
	bench/bench_scen.c bench/bench_stats.c bench/bench_tls.c \
	src/mem.c src/mem.h src/buf.c src/buf.h src/mqtt.h src/utf8.c src/utf8.h \
	src/topic.c src/topic.h \
	src/props.c src/props.h src/codec.c src/codec.h src/framer.c src/framer.h
bench_sluice_bench_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS)
bench_sluice_bench_LDFLAGS = $(AM_LDFLAGS)
bench_sluice_bench_LDADD = $(OPENSSL_LIBS)

EXTRA_DIST += bench/README.md bench/RESULTS.md bench/compare.sh bench/metrics-scrape.sh
