/*
 * topic_cases.h - the spec's topic filter examples (section 4.7) and the
 * corners around them, shared by the tests of both tries (subscriptions and
 * retained messages) so that they are held to the same matching rules.
 */
#ifndef SLUICE_TEST_TOPIC_CASES_H
#define SLUICE_TEST_TOPIC_CASES_H

#include <stdbool.h>

struct spec_case {
	const char *filter;
	const char *topic;
	bool match;
};

static const struct spec_case spec[] = {
	{ "sport/tennis/player1/#", "sport/tennis/player1", true },
	{ "sport/tennis/player1/#", "sport/tennis/player1/ranking", true },
	{ "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true },
	{ "sport/tennis/player1/#", "sport/tennis/player2", false },
	{ "sport/#", "sport", true },
	{ "sport/#", "sport/", true },
	{ "sport/#", "sports", false },
	{ "#", "sport/tennis", true },
	{ "#", "/", true },
	{ "#", "$SYS/x", false }, /* [MQTT-4.7.2-1] */
	{ "#", "$SYS", false },
	{ "+", "$SYS", false },
	{ "+/monitor/Clients", "$SYS/monitor/Clients", false },
	{ "$SYS/#", "$SYS/monitor/Clients", true },
	{ "$SYS/#", "$SYS", true },
	{ "$SYS/monitor/+", "$SYS/monitor/Clients", true },
	{ "sport/tennis/+", "sport/tennis/player1", true },
	{ "sport/tennis/+", "sport/tennis/player2", true },
	{ "sport/tennis/+", "sport/tennis/player1/ranking", false },
	{ "sport/+", "sport", false },
	{ "sport/+", "sport/", true },
	{ "+/+", "/finance", true },
	{ "/+", "/finance", true },
	{ "+", "/finance", false },
	{ "+", "finance", true },
	{ "+/tennis/#", "sport/tennis", true },
	{ "+/tennis/#", "sport/tennis/x/y", true },
	{ "+/tennis/#", "sport/golf", false },
	{ "/finance", "finance", false },
	{ "a//b", "a//b", true },
	{ "a/+/b", "a//b", true },
	{ "a/b", "a/b/", false },
	{ "a/b/", "a/b", false },
	{ "ACCOUNTS", "Accounts", false },
	{ "a/#", "a", true },
	{ "a/+/#", "a", false },
	{ "a/+/#", "a/b", true },
	{ "+/#", "a", true },
	{ "$x/+", "$x/y", true },
};

#endif
