/*
 * auth.h - who may connect: allow_anonymous and the password file, as
 * mosquitto 2 decides it.
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct config;

/* Loads cfg's password file (if any): 0, or -1 after logging "FILE:LINE: password_file: ...". */
int auth_init(const struct config *cfg);
/* SIGHUP: reads the password file again; on failure the old one stays (logged). 0 or -1. */
int auth_reload(void);
void auth_shutdown(void);

/*
 * May a CONNECT with this username (NULL: none; ulen bytes) and password
 * (NULL: none) connect? False with *why, a reason for the log that never
 * holds the password.
 */
bool auth_connect(const char *username, size_t ulen, const void *password, size_t plen,
		  const char **why);

#endif
