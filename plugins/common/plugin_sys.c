/*
 * plugin_sys.c - a plugin's figures as retained $SYS messages and as
 * GET /metrics samples (plugin_sys.h). Compiled into each plugin; runs on
 * the broker's loop thread like the rest of the plugin. No state.
 */
#include "plugin_sys.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* text, retained, on $SYS/broker/{path}. */
static void publish(const struct sp_host *host, struct sp_plugin *self, const char *path,
		    const char *text)
{
	char topic[160];
	struct sp_msg_spec spec;
	struct sp_msg *m;
	int n;

	memset(&spec, 0, sizeof(spec));
	n = snprintf(topic, sizeof(topic), "$SYS/broker/%s", path);
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

void plugin_sys_publish_text(const struct sp_host *host, struct sp_plugin *self, const char *area,
			     const char *leaf, const char *text)
{
	char path[128];
	int n = snprintf(path, sizeof(path), "%s/%s", area, leaf);

	if (n > 0 && (size_t)n < sizeof(path))
		publish(host, self, path, text);
}

void plugin_metric(struct plugin_report *r, const struct sp_metric *m, uint64_t v)
{
	char text[24];

	if (r->out) {
		r->host->metric(r->out, m, v);
		return;
	}
	if (!m->sys)
		return;
	snprintf(text, sizeof(text), "%" PRIu64, v);
	publish(r->host, r->self, m->sys, text);
}

void plugin_metrics(struct plugin_report *r, const struct sp_metric *m, const uint64_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		plugin_metric(r, &m[i], v[i]);
}
