# tests/unit/core.mk - unit tests of the core layers with fakes behind their
# tables: the connection (conn.c) between a fake transport and a fake
# protocol layer, and sessions with their outgoing queues (session.c,
# outq.c) over fake connections, persistence off. Included at the end of
# Makefile.am, after check_PROGRAMS, UNIT_CFLAGS and UNIT_LDADD.

if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_conn tests/unit/test_outq
endif
tests_unit_test_conn_SOURCES = tests/unit/test_conn.c tests/unit/fake_transport.h
tests_unit_test_conn_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_conn_LDADD = $(UNIT_LDADD)
tests_unit_test_outq_SOURCES = tests/unit/test_outq.c tests/unit/fake_transport.h \
	tests/unit/store_wait.h
tests_unit_test_outq_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_outq_LDADD = $(UNIT_LDADD)
