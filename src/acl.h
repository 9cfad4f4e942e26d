/*
 * acl.h - mosquitto's ACL file: reading it and answering "may this client
 * read / write this topic" and "may it read anything of this filter".
 *
 * The file, as mosquitto 2 reads it:
 *   # comment
 *   topic [read|write|readwrite|deny] TOPIC     (no access word: readwrite)
 *   user USERNAME
 *   pattern [read|write|readwrite|deny] TOPIC   (%c client id, %u username)
 * "topic" lines before the first "user" line apply to clients without a
 * username, after it to that user; "pattern" lines to every client (one
 * with %u never to a client without a username). TOPIC and USERNAME are
 * the rest of the line (spaces included). Deny lines win over grants; what
 * the file does not grant is denied. A filter whose first level is a
 * wildcard never grants a topic starting with '$'.
 */
#ifndef SLUICE_ACL_H
#define SLUICE_ACL_H

#include <stdbool.h>
#include <stddef.h>

enum acl_access {
	ACL_READ = 1,
	ACL_WRITE = 2,
};

struct acl_table;

/*
 * Reads path into a new table; NULL with "PATH:LINE: what" (or "PATH:
 * cannot open: ...") in err: an unknown line, an access word that is not one
 * of the four, a missing or invalid topic filter, a user line without a name.
 */
struct acl_table *acl_load(const char *path, char *err, size_t errlen);
void acl_free(struct acl_table *t);
/* Rules read (topic and pattern lines), for the log. */
size_t acl_rules(const struct acl_table *t);

/* May a client (username NULL: none) have access (ACL_READ or ACL_WRITE) to topic? */
bool acl_check(const struct acl_table *t, const char *client_id, const char *username,
	       const char *topic, size_t tlen, enum acl_access access);

/*
 * May the client read any topic that filter (no "$share/" prefix) matches?
 * False when no read grant overlaps it, or a deny line covers all of it.
 */
bool acl_check_filter(const struct acl_table *t, const char *client_id, const char *username,
		      const char *filter, size_t flen);

#endif
