/*
 * plugin_sys.c - a plugin's $SYS counter as a retained message
 * (plugin_sys.h). Compiled into each plugin; runs on the broker's loop
 * thread like the rest of the plugin. No state.
 */
#include "plugin_sys.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void plugin_sys_publish_text(const struct sp_host *host, struct sp_plugin *self, const char *area,
			     const char *leaf, const char *text)
{
	char topic[128];
	struct sp_msg_spec spec;
	struct sp_msg *m;
	int n;

	memset(&spec, 0, sizeof(spec));
	n = snprintf(topic, sizeof(topic), "$SYS/broker/%s/%s", area, leaf);
	if (n < 0 || (size_t)n >= sizeof(topic))
		return;
	spec.topic = topic;
	spec.topic_len = (size_t)n;
	spec.payload = text;
	spec.payload_len = strlen(text);
	spec.retain = true;
	m = host->msg_new(&spec);
	if (!m)
		return;
	host->route(self, m);
	host->msg_unref(m);
}

void plugin_sys_publish(const struct sp_host *host, struct sp_plugin *self, const char *area,
			const char *leaf, uint64_t v)
{
	char text[24];

	snprintf(text, sizeof(text), "%" PRIu64, v);
	plugin_sys_publish_text(host, self, area, leaf, text);
}
