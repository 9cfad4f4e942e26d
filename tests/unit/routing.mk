# tests/unit/routing.mk - unit tests of the layers between the topic tree and
# the network: the key/value space, topic matching and share keys, held
# deliveries, and the router with the plugin chains (real sessions over
# fake connections).
#
# Included at the end of Makefile.am, after the definitions of check_PROGRAMS
# (under HAVE_CMOCKA), UNIT_CFLAGS and UNIT_LDADD that it uses.

if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_kvspace tests/unit/test_topic tests/unit/test_holds \
	tests/unit/test_router
endif
tests_unit_test_kvspace_SOURCES = tests/unit/test_kvspace.c
tests_unit_test_kvspace_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_kvspace_LDADD = $(UNIT_LDADD)
tests_unit_test_topic_SOURCES = tests/unit/test_topic.c tests/unit/topic_cases.h \
	tests/unit/naive_match.h
tests_unit_test_topic_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_topic_LDADD = $(UNIT_LDADD)
tests_unit_test_holds_SOURCES = tests/unit/test_holds.c
tests_unit_test_holds_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_holds_LDADD = $(UNIT_LDADD)
tests_unit_test_router_SOURCES = tests/unit/test_router.c tests/unit/fake_transport.h
tests_unit_test_router_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_router_LDADD = $(UNIT_LDADD)
