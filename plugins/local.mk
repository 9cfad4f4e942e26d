# plugins/local.mk - the plugins (delayed topics, transactional topics, consumer retry,
# ordered topics).
#
# Included at the end of Makefile.am, after the definitions of check_PROGRAMS
# (under HAVE_CMOCKA), UNIT_CFLAGS and AM_TESTS_ENVIRONMENT that it extends.
# Each plugin is a libtool module installed to $(pkglibdir), where a bare
# "plugin NAME" line of the configuration finds it (plugin_dir). It includes
# only include/sluice_plugin.h; its pure part is unit-tested without the broker.

# Compiled into every plugin (and its plugin test): its $SYS counters.
PLUGIN_COMMON = plugins/common/plugin_sys.c plugins/common/plugin_sys.h

pkglib_LTLIBRARIES = plugins/delayed/delayed.la
plugins_delayed_delayed_la_SOURCES = $(PLUGIN_COMMON) plugins/delayed/delayed.c \
	plugins/delayed/sched.c plugins/delayed/sched.h include/sluice_plugin.h
plugins_delayed_delayed_la_CPPFLAGS = -I$(top_srcdir)/include -I$(top_srcdir)/plugins/common
plugins_delayed_delayed_la_LDFLAGS = -module -avoid-version -shared

if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_delayed
endif
tests_unit_test_delayed_SOURCES = tests/unit/test_delayed.c \
	plugins/delayed/sched.c plugins/delayed/sched.h
tests_unit_test_delayed_CPPFLAGS = -I$(top_srcdir)/plugins/delayed
tests_unit_test_delayed_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_delayed_LDADD = $(CMOCKA_LIBS)

AM_TESTS_ENVIRONMENT += \
	SLUICE_DELAYED_PLUGIN=$(abs_top_builddir)/plugins/delayed/.libs/delayed.so; \
	export SLUICE_DELAYED_PLUGIN;

EXTRA_DIST += plugins/delayed/bench_delayed.py

pkglib_LTLIBRARIES += plugins/txn/txn.la
plugins_txn_txn_la_SOURCES = $(PLUGIN_COMMON) plugins/txn/txn.c plugins/txn/txnparse.c \
	plugins/txn/txnparse.h \
	include/sluice_plugin.h
plugins_txn_txn_la_CPPFLAGS = -I$(top_srcdir)/include -I$(top_srcdir)/plugins/common
plugins_txn_txn_la_LDFLAGS = -module -avoid-version -shared

if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_txnparse
endif
tests_unit_test_txnparse_SOURCES = tests/unit/test_txnparse.c \
	plugins/txn/txnparse.c plugins/txn/txnparse.h
tests_unit_test_txnparse_CPPFLAGS = -I$(top_srcdir)/plugins/txn
tests_unit_test_txnparse_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_txnparse_LDADD = $(CMOCKA_LIBS)

AM_TESTS_ENVIRONMENT += \
	SLUICE_TXN_PLUGIN=$(abs_top_builddir)/plugins/txn/.libs/txn.so; \
	export SLUICE_TXN_PLUGIN;

pkglib_LTLIBRARIES += plugins/retry/retry.la
plugins_retry_retry_la_SOURCES = $(PLUGIN_COMMON) plugins/retry/retry.c plugins/retry/retryparse.c \
	plugins/retry/retryparse.h include/sluice_plugin.h
plugins_retry_retry_la_CPPFLAGS = -I$(top_srcdir)/include -I$(top_srcdir)/plugins/common
plugins_retry_retry_la_LDFLAGS = -module -avoid-version -shared

if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_retryparse
endif
tests_unit_test_retryparse_SOURCES = tests/unit/test_retryparse.c \
	plugins/retry/retryparse.c plugins/retry/retryparse.h
tests_unit_test_retryparse_CPPFLAGS = -I$(top_srcdir)/plugins/retry
tests_unit_test_retryparse_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_retryparse_LDADD = $(CMOCKA_LIBS)

AM_TESTS_ENVIRONMENT += \
	SLUICE_RETRY_PLUGIN=$(abs_top_builddir)/plugins/retry/.libs/retry.so; \
	export SLUICE_RETRY_PLUGIN;

pkglib_LTLIBRARIES += plugins/ordered/ordered.la
plugins_ordered_ordered_la_SOURCES = $(PLUGIN_COMMON) plugins/ordered/ordered.c \
	plugins/ordered/keytab.c \
	plugins/retry/retryparse.c plugins/retry/retryparse.h \
	plugins/ordered/keytab.h include/sluice_plugin.h
# The duration and number parsers are the retry plugin's (one copy of each).
plugins_ordered_ordered_la_CPPFLAGS = -I$(top_srcdir)/include -I$(top_srcdir)/plugins/common \
	-I$(top_srcdir)/plugins/retry
plugins_ordered_ordered_la_LDFLAGS = -module -avoid-version -shared

if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_keytab
endif
tests_unit_test_keytab_SOURCES = tests/unit/test_keytab.c \
	plugins/ordered/keytab.c plugins/ordered/keytab.h
tests_unit_test_keytab_CPPFLAGS = -I$(top_srcdir)/plugins/ordered
tests_unit_test_keytab_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_keytab_LDADD = $(CMOCKA_LIBS)

AM_TESTS_ENVIRONMENT += \
	SLUICE_ORDERED_PLUGIN=$(abs_top_builddir)/plugins/ordered/.libs/ordered.so; \
	export SLUICE_ORDERED_PLUGIN;
