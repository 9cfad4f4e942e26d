# tests/unit/core.mk - unit tests of the connection layer (conn.c) between a
# fake transport and a fake protocol layer. Included at the end of
# Makefile.am, after check_PROGRAMS, UNIT_CFLAGS and UNIT_LDADD.

if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_conn
endif
tests_unit_test_conn_SOURCES = tests/unit/test_conn.c
tests_unit_test_conn_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_conn_LDADD = $(UNIT_LDADD)
