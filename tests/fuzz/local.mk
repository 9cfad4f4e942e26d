# tests/fuzz/local.mk - libFuzzer targets, one per parser and one for the whole broker
# (see tests/fuzz/README.md).
#
# Included at the end of Makefile.am. With ./configure --enable-fuzz (clang
# only) `make` builds the targets and `make check` runs tests/fuzz/smoke.sh,
# which fuzzes each one for FUZZ_SECONDS (default 20) over a temporary copy of
# its seed corpus. Each target compiles the modules it exercises itself, so
# that they carry libFuzzer's coverage instrumentation; src/libbroker.la is
# not involved.

FUZZ_TARGETS = \
	tests/fuzz/fuzz_codec \
	tests/fuzz/fuzz_framer \
	tests/fuzz/fuzz_props \
	tests/fuzz/fuzz_topic \
	tests/fuzz/fuzz_config \
	tests/fuzz/fuzz_access \
	tests/fuzz/fuzz_broker

FUZZ_CORE = tests/fuzz/fuzz.h src/mem.c src/mem.h src/buf.c src/buf.h src/mqtt.h src/topic.c src/topic.h \
	src/utf8.c src/utf8.h
FUZZ_CODEC = src/props.c src/props.h src/codec.c src/codec.h
FUZZ_COMPILE = $(AM_CFLAGS) $(FUZZ_CFLAGS)
FUZZ_LINK = $(AM_LDFLAGS) $(FUZZ_LDFLAGS)

EXTRA_DIST += tests/fuzz/README.md tests/fuzz/smoke.sh tests/fuzz/gen_corpus.py \
	tests/fuzz/gen_broker_corpus.py tests/fuzz/corpus

if ENABLE_FUZZ
noinst_PROGRAMS = $(FUZZ_TARGETS)
TESTS += tests/fuzz/smoke.sh
AM_TESTS_ENVIRONMENT += FUZZ_BINDIR=$(abs_top_builddir)/tests/fuzz; export FUZZ_BINDIR;
endif

tests_fuzz_fuzz_codec_SOURCES = tests/fuzz/fuzz_codec.c $(FUZZ_CORE) $(FUZZ_CODEC)
tests_fuzz_fuzz_codec_CFLAGS = $(FUZZ_COMPILE)
tests_fuzz_fuzz_codec_LDFLAGS = $(FUZZ_LINK)

tests_fuzz_fuzz_framer_SOURCES = tests/fuzz/fuzz_framer.c $(FUZZ_CORE) $(FUZZ_CODEC) \
	src/framer.c src/framer.h
tests_fuzz_fuzz_framer_CFLAGS = $(FUZZ_COMPILE)
tests_fuzz_fuzz_framer_LDFLAGS = $(FUZZ_LINK)

tests_fuzz_fuzz_props_SOURCES = tests/fuzz/fuzz_props.c $(FUZZ_CORE) src/props.c src/props.h
tests_fuzz_fuzz_props_CFLAGS = $(FUZZ_COMPILE)
tests_fuzz_fuzz_props_LDFLAGS = $(FUZZ_LINK)

tests_fuzz_fuzz_topic_SOURCES = tests/fuzz/fuzz_topic.c $(FUZZ_CORE) \
	src/topic_level.c src/topic_level.h src/topic_tree.c src/topic_tree.h \
	src/retain_tree.c src/retain_tree.h
tests_fuzz_fuzz_topic_CFLAGS = $(FUZZ_COMPILE)
tests_fuzz_fuzz_topic_LDFLAGS = $(FUZZ_LINK)

tests_fuzz_fuzz_config_SOURCES = tests/fuzz/fuzz_config.c $(FUZZ_CORE) \
	src/config.c src/config.h src/config_bridge.c src/config_bridge.h \
	src/linefile.c src/linefile.h src/log.c src/log.h
tests_fuzz_fuzz_config_CFLAGS = $(FUZZ_COMPILE)
tests_fuzz_fuzz_config_LDFLAGS = $(FUZZ_LINK)

tests_fuzz_fuzz_access_SOURCES = tests/fuzz/fuzz_access.c $(FUZZ_CORE) \
	src/passwd.c src/passwd.h src/acl.c src/acl.h src/linefile.c src/linefile.h
tests_fuzz_fuzz_access_CFLAGS = $(FUZZ_COMPILE)
tests_fuzz_fuzz_access_LDFLAGS = $(FUZZ_LINK)
tests_fuzz_fuzz_access_LDADD = $(MBEDTLS_LIBS) $(ARGON2_LIBS)

# The whole broker but its listener and clock, which fuzz_broker.c is.
tests_fuzz_fuzz_broker_SOURCES = tests/fuzz/fuzz_broker.c $(FUZZ_CORE) $(FUZZ_CODEC) \
	src/log.c src/log.h src/timers.c src/timers.h src/linefile.c src/linefile.h \
	src/config.c src/config.h src/config_bridge.c src/config_bridge.h \
	src/base.c src/base.h src/framer.c src/framer.h \
	src/topic_level.c src/topic_level.h src/topic_tree.c src/topic_tree.h \
	src/retain_tree.c src/retain_tree.h src/msg.c src/msg.h src/kvspace.c src/kvspace.h \
	src/passwd.c src/passwd.h src/scram.c src/scram.h src/acl.c src/acl.h \
	src/auth.c src/auth.h src/promtext.c src/promtext.h \
	src/store.c src/store.h src/store_db.c src/store_internal.h src/conn.c src/conn.h \
	src/outq.c src/outq.h src/groupq.c src/groupq.h src/session.c src/session.h \
	src/plugin.c src/plugin.h include/sluice_plugin.h src/holds.c src/holds.h \
	src/router.c src/router.h src/plugin_host.c src/plugin_host.h \
	src/proto.h src/proto.c src/proto_auth.c src/proto_connect.c src/proto_publish.c \
	src/proto_subscribe.c src/proto_misc.c src/broker.c src/broker.h \
	src/bridge.c src/bridge.h src/bridge_net.c src/bridge_net.h \
	src/sys_topics.c src/sys_topics.h src/listener.h src/clock.h
tests_fuzz_fuzz_broker_CFLAGS = $(FUZZ_COMPILE) $(SQLITE_CFLAGS) $(UV_CFLAGS)
tests_fuzz_fuzz_broker_LDFLAGS = $(FUZZ_LINK)
tests_fuzz_fuzz_broker_LDADD = $(SQLITE_LIBS) $(MBEDTLS_LIBS) $(ARGON2_LIBS) $(UV_LIBS) -lpthread
