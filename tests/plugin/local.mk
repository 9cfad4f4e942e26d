# tests/plugin/local.mk - plugin logic unit tested against the fake host table
# (tests/plugin/fake_host.c), without a broker: each plugin's sources are
# compiled into its test program.
#
# Included at the end of Makefile.am, after the definitions of check_PROGRAMS
# (under HAVE_CMOCKA) and UNIT_CFLAGS that it extends.

FAKE_HOST_SOURCES = tests/plugin/fake_host.c tests/plugin/fake_host.h include/sluice_plugin.h \
	tests/unit/naive_match.h tests/plugin/plugin_harness.h

if HAVE_CMOCKA
check_PROGRAMS += tests/plugin/test_delayed_plugin
endif
tests_plugin_test_delayed_plugin_SOURCES = $(PLUGIN_COMMON) tests/plugin/test_delayed_plugin.c \
	$(FAKE_HOST_SOURCES) plugins/delayed/delayed.c plugins/delayed/sched.c \
	plugins/delayed/sched.h
tests_plugin_test_delayed_plugin_CPPFLAGS = -I$(top_srcdir)/include -I$(top_srcdir)/plugins/common \
	-I$(top_srcdir)/plugins/delayed -I$(top_srcdir)/tests/plugin
tests_plugin_test_delayed_plugin_CFLAGS = $(UNIT_CFLAGS)
tests_plugin_test_delayed_plugin_LDADD = $(CMOCKA_LIBS)

EXTRA_DIST += tests/plugin/fake_host.c tests/plugin/fake_host.h

if HAVE_CMOCKA
check_PROGRAMS += tests/plugin/test_txn_plugin
endif
tests_plugin_test_txn_plugin_SOURCES = $(PLUGIN_COMMON) tests/plugin/test_txn_plugin.c \
	$(FAKE_HOST_SOURCES) plugins/txn/txn.c plugins/txn/txnparse.c \
	plugins/txn/txnparse.h
tests_plugin_test_txn_plugin_CPPFLAGS = -I$(top_srcdir)/include -I$(top_srcdir)/plugins/common \
	-I$(top_srcdir)/plugins/txn -I$(top_srcdir)/tests/plugin
tests_plugin_test_txn_plugin_CFLAGS = $(UNIT_CFLAGS)
tests_plugin_test_txn_plugin_LDADD = $(CMOCKA_LIBS)

if HAVE_CMOCKA
check_PROGRAMS += tests/plugin/test_retry_plugin
endif
tests_plugin_test_retry_plugin_SOURCES = $(PLUGIN_COMMON) tests/plugin/test_retry_plugin.c \
	$(FAKE_HOST_SOURCES) plugins/retry/retry.c plugins/retry/retryparse.c \
	plugins/retry/retryparse.h
tests_plugin_test_retry_plugin_CPPFLAGS = -I$(top_srcdir)/include -I$(top_srcdir)/plugins/common \
	-I$(top_srcdir)/plugins/retry -I$(top_srcdir)/tests/plugin
tests_plugin_test_retry_plugin_CFLAGS = $(UNIT_CFLAGS)
tests_plugin_test_retry_plugin_LDADD = $(CMOCKA_LIBS)

if HAVE_CMOCKA
check_PROGRAMS += tests/plugin/test_ordered_plugin
endif
tests_plugin_test_ordered_plugin_SOURCES = $(PLUGIN_COMMON) tests/plugin/test_ordered_plugin.c \
	$(FAKE_HOST_SOURCES) plugins/ordered/ordered.c plugins/ordered/keytab.c \
	plugins/ordered/keytab.h plugins/retry/retryparse.c plugins/retry/retryparse.h
tests_plugin_test_ordered_plugin_CPPFLAGS = -I$(top_srcdir)/include -I$(top_srcdir)/plugins/common \
	-I$(top_srcdir)/plugins/ordered -I$(top_srcdir)/plugins/retry -I$(top_srcdir)/tests/plugin
tests_plugin_test_ordered_plugin_CFLAGS = $(UNIT_CFLAGS)
tests_plugin_test_ordered_plugin_LDADD = $(CMOCKA_LIBS)
