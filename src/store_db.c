/*
 * store_db.c - the SQLite side of the store: schema and migrations, opening
 * and checking the database, reading everything back at start-up, and
 * executing a batch of operations in one transaction.
 *
 * Threads: the loop thread opens, migrates and restores alone, before the
 * writer thread exists; from store_start() on only the writer thread runs
 * store_db_write(), and at shutdown the loop again, after the writer is
 * joined. So the connection and its prepared statements are never used by
 * two threads at once, and need no lock of their own.
 *
 * Failure. A batch that fails (disk full, I/O error, persistence_max_bytes)
 * is rolled back and replayed one unit (the operations up to a callback) per
 * transaction, so that units that fit (acknowledgement deletes free space)
 * still commit and only the others are refused. Nothing is ever
 * acknowledged that was not committed.
 *
 * Schema. PRAGMA user_version is the schema version. A database with a
 * newer version, or one SQLite cannot read, stops start-up and is left
 * untouched. Messages are stored once (msgs) and referenced by deliveries
 * and retained rows; a message row goes when the last reference goes.
 */
#include "store_internal.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "log.h"
#include "mem.h"
#include "msg.h"

#define SCHEMA_VERSION 3

static sqlite3 *db;

/* --- SQL ---------------------------------------------------------------------- */

static const char *const schema_v1[] = {
	"CREATE TABLE msgs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
	"CREATE TABLE sessions (sid INTEGER PRIMARY KEY, client_id TEXT NOT NULL UNIQUE,"
	" version INTEGER NOT NULL, expiry INTEGER NOT NULL, disconnected INTEGER NOT NULL,"
	" will BLOB, will_delay INTEGER NOT NULL, next_seq INTEGER NOT NULL)",
	"CREATE TABLE subs (sid INTEGER NOT NULL, filter TEXT NOT NULL, options INTEGER NOT NULL,"
	" subid INTEGER NOT NULL, PRIMARY KEY (sid, filter)) WITHOUT ROWID",
	"CREATE TABLE deliveries (sid INTEGER NOT NULL, seq INTEGER NOT NULL,"
	" msg_id INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
	" state INTEGER NOT NULL, packet_id INTEGER NOT NULL, subids BLOB, share BLOB,"
	" PRIMARY KEY (sid, seq)) WITHOUT ROWID",
	"CREATE INDEX deliveries_msg ON deliveries (msg_id)",
	"CREATE TABLE rx_qos2 (sid INTEGER NOT NULL, packet_id INTEGER NOT NULL,"
	" PRIMARY KEY (sid, packet_id)) WITHOUT ROWID",
	"CREATE TABLE retained (topic BLOB PRIMARY KEY, msg_id INTEGER NOT NULL) WITHOUT ROWID",
	"CREATE INDEX retained_msg ON retained (msg_id)",
	"CREATE TABLE plugin_kv (plugin TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
	" PRIMARY KEY (plugin, key)) WITHOUT ROWID",
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID",
	NULL,
};

/* Version 2: plugins' cold values (never read back at start-up). */
static const char *const schema_v2[] = {
	"CREATE TABLE plugin_cold (plugin TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
	" PRIMARY KEY (plugin, key)) WITHOUT ROWID",
	NULL,
};

/*
 * Version 3: a session's username and security realm (its listener's rules,
 * per_listener_settings), so that the ACL applies to it as before a restart.
 */
static const char *const schema_v3[] = {
	"ALTER TABLE sessions ADD COLUMN username TEXT",
	"ALTER TABLE sessions ADD COLUMN realm INTEGER NOT NULL DEFAULT 0",
	NULL,
};

/* Every migration, by the version it produces; [1] creates the first schema. */
static const char *const *const migrations[SCHEMA_VERSION + 1] = { NULL, schema_v1, schema_v2,
								   schema_v3 };

enum stmt_id {
	S_SESSION_PUT,
	S_SESSION_DEL,
	S_SESSION_DEL_SUBS,
	S_SESSION_DEL_DELIVERIES,
	S_SESSION_DEL_RX,
	S_SUB_PUT,
	S_SUB_DEL,
	S_MSG_PUT,
	S_MSG_GC,
	S_DELIVERY_PUT,
	S_DELIVERY_UPDATE,
	S_DELIVERY_DEL,
	S_RX_PUT,
	S_RX_DEL,
	S_RETAINED_PUT,
	S_RETAINED_GET,
	S_RETAINED_DEL,
	S_KV_PUT,
	S_KV_DEL,
	S_HEARTBEAT,
	S_LOAD,
	S_ORPHAN_MSGS,
	S_COLD_PUT,
	S_COLD_DEL,
	S_COLD_GET,
	S_COLD_DEL_RANGE,
	S__COUNT
};

static const char *const stmt_sql[S__COUNT] = {
	[S_SESSION_PUT] = "INSERT OR REPLACE INTO sessions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
			  " ?9, ?10)",
	[S_SESSION_DEL] = "DELETE FROM sessions WHERE sid = ?1",
	[S_SESSION_DEL_SUBS] = "DELETE FROM subs WHERE sid = ?1",
	[S_SESSION_DEL_DELIVERIES] = "DELETE FROM deliveries WHERE sid = ?1",
	[S_SESSION_DEL_RX] = "DELETE FROM rx_qos2 WHERE sid = ?1",
	[S_SUB_PUT] = "INSERT OR REPLACE INTO subs VALUES (?1, ?2, ?3, ?4)",
	[S_SUB_DEL] = "DELETE FROM subs WHERE sid = ?1 AND filter = ?2",
	[S_MSG_PUT] = "INSERT OR IGNORE INTO msgs VALUES (?1, ?2)",
	[S_MSG_GC] = "DELETE FROM msgs WHERE id = ?1"
		     " AND NOT EXISTS (SELECT 1 FROM deliveries WHERE msg_id = ?1)"
		     " AND NOT EXISTS (SELECT 1 FROM retained WHERE msg_id = ?1)",
	[S_DELIVERY_PUT] = "INSERT OR REPLACE INTO deliveries VALUES"
			   " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[S_DELIVERY_UPDATE] = "UPDATE deliveries SET state = ?3, packet_id = ?4"
			      " WHERE sid = ?1 AND seq = ?2",
	[S_DELIVERY_DEL] = "DELETE FROM deliveries WHERE sid = ?1 AND seq = ?2",
	[S_RX_PUT] = "INSERT OR IGNORE INTO rx_qos2 VALUES (?1, ?2)",
	[S_RX_DEL] = "DELETE FROM rx_qos2 WHERE sid = ?1 AND packet_id = ?2",
	[S_RETAINED_PUT] = "INSERT OR REPLACE INTO retained VALUES (?1, ?2)",
	[S_RETAINED_GET] = "SELECT msg_id FROM retained WHERE topic = ?1",
	[S_RETAINED_DEL] = "DELETE FROM retained WHERE topic = ?1",
	[S_KV_PUT] = "INSERT OR REPLACE INTO plugin_kv VALUES (?1, ?2, ?3)",
	[S_KV_DEL] = "DELETE FROM plugin_kv WHERE plugin = ?1 AND key = ?2",
	[S_HEARTBEAT] = "INSERT OR REPLACE INTO meta VALUES ('heartbeat', ?1)",
	[S_LOAD] = "SELECT d.seq, d.qos, d.retain, d.state, d.packet_id, d.subids, d.share,"
		   " m.id, m.data FROM deliveries d JOIN msgs m ON m.id = d.msg_id"
		   " WHERE d.sid = ?1 AND d.seq >= ?2 ORDER BY d.seq LIMIT ?3",
	[S_ORPHAN_MSGS] = "DELETE FROM msgs WHERE id NOT IN (SELECT msg_id FROM deliveries)"
			  " AND id NOT IN (SELECT msg_id FROM retained)",
	[S_COLD_PUT] = "INSERT OR REPLACE INTO plugin_cold VALUES (?1, ?2, ?3)",
	[S_COLD_DEL] = "DELETE FROM plugin_cold WHERE plugin = ?1 AND key = ?2",
	[S_COLD_GET] = "SELECT value FROM plugin_cold WHERE plugin = ?1 AND key = ?2",
	[S_COLD_DEL_RANGE] = "DELETE FROM plugin_cold WHERE plugin = ?1 AND key >= ?2 AND key < ?3",
};

static sqlite3_stmt *stmts[S__COUNT];

static int db_exec(const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		log_err("store: %s: %s", sql, err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

static int get_user_version(int *v)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);

	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		*v = sqlite3_column_int(st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? 0 : -1;
}

/* Runs every migration the database lacks, each in its own transaction. */
static int migrate(const char *path)
{
	int version = 0, v;
	char sql[64];

	if (get_user_version(&version)) {
		log_err("store: %s is not a database sluice can read: %s", path,
			sqlite3_errmsg(db));
		return -1;
	}
	if (version > SCHEMA_VERSION) {
		log_err("store: %s was written by a newer sluice (schema %d; this one knows up "
			"to %d); refusing to start, the file is left as it is",
			path, version, SCHEMA_VERSION);
		return -1;
	}
	for (v = version + 1; v <= SCHEMA_VERSION; v++) {
		const char *const *s;

		if (db_exec("BEGIN IMMEDIATE"))
			return -1;
		for (s = migrations[v]; *s; s++)
			if (db_exec(*s))
				goto fail;
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v);
		if (db_exec(sql) || db_exec("COMMIT"))
			goto fail;
		log_notice("store: %s: schema version %d", path, v);
	}
	return 0;
fail:
	db_exec("ROLLBACK");
	return -1;
}

/* mkdir -p of the database's directory. */
static int make_parent_dir(const char *path)
{
	char dir[4096];
	char *p, *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (p = dir + 1;; p++) {
		char c = *p;

		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		if (mkdir(dir, 0750) && errno != EEXIST) {
			log_err("store: cannot create directory %s: %s", dir, strerror(errno));
			return -1;
		}
		*p = c;
		if (!c)
			return 0;
	}
}

static int set_pragmas(const struct config *cfg)
{
	char sql[96];

	if (db_exec("PRAGMA journal_mode = WAL") ||
	    db_exec(cfg->persistence_sync == PERSIST_SYNC_FULL ? "PRAGMA synchronous = FULL"
							       : "PRAGMA synchronous = NORMAL") ||
	    db_exec("PRAGMA foreign_keys = OFF") || db_exec("PRAGMA temp_store = MEMORY"))
		return -1;
	if (cfg->persistence_max_bytes) {
		/* The cap is in pages; SQLite then answers SQLITE_FULL past it. */
		snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %llu",
			 (unsigned long long)(cfg->persistence_max_bytes / 4096));
		if (db_exec("PRAGMA page_size = 4096") || db_exec(sql))
			return -1;
	}
	return 0;
}

static int prepare_all(void)
{
	int i;

	for (i = 0; i < S__COUNT; i++) {
		if (sqlite3_prepare_v3(db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &stmts[i],
				       NULL) != SQLITE_OK) {
			log_err("store: preparing %s: %s", stmt_sql[i], sqlite3_errmsg(db));
			return -1;
		}
	}
	return 0;
}

/* Opening checks the file is a database (the quick check reads every page header). */
static int check_integrity(const char *path)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL);
	int ok = 0;

	if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		ok = !strcmp((const char *)sqlite3_column_text(st, 0), "ok");
	if (!ok) {
		const char *why = rc == SQLITE_OK && sqlite3_column_text(st, 0)
					  ? (const char *)sqlite3_column_text(st, 0)
					  : sqlite3_errmsg(db);

		/* quick_check may list many pages: the first line says enough. */
		log_err("store: %s is corrupt (%.*s); refusing to start, the file is left as it is",
			path, (int)strcspn(why, "\n"), why);
	}
	sqlite3_finalize(st);
	return ok ? 0 : -1;
}

/*
 * One broker per database: exclusive locking mode holds the lock from the
 * first access until close, so a second broker started on the same file
 * stops with a clear message instead of interleaving its writes.
 */
static int lock_exclusive(const char *path)
{
	int rc;

	if (db_exec("PRAGMA locking_mode = EXCLUSIVE"))
		return -1;
	rc = sqlite3_exec(db, "BEGIN EXCLUSIVE; COMMIT", NULL, NULL, NULL);
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
		log_err("store: %s is in use by another process (another broker?)", path);
		return -1;
	}
	if (rc != SQLITE_OK) {
		log_err("store: %s cannot be read as a database: %s", path, sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

int store_db_open(const struct config *cfg)
{
	const char *path = cfg->persistence_file;

	if (make_parent_dir(path))
		return -1;
	if (sqlite3_open_v2(path, &db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		log_err("store: cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
		goto fail;
	}
	if (lock_exclusive(path) || check_integrity(path) || migrate(path) || set_pragmas(cfg) ||
	    prepare_all())
		goto fail;
	log_notice("store: %s open (synchronous %s)", path,
		   cfg->persistence_sync == PERSIST_SYNC_FULL ? "full" : "normal");
	return 0;
fail:
	store_db_close();
	return -1;
}

bool store_db_is_open(void)
{
	return db != NULL;
}

uint64_t store_db_heap(void)
{
	sqlite3_int64 n = sqlite3_memory_used();

	return n > 0 ? (uint64_t)n : 0;
}

void store_db_close(void)
{
	int i;

	for (i = 0; i < S__COUNT; i++) {
		sqlite3_finalize(stmts[i]);
		stmts[i] = NULL;
	}
	if (db)
		sqlite3_close(db);
	db = NULL;
}

/* --- restore ----------------------------------------------------------------------- */

static struct msg *msg_from_row(sqlite3_stmt *st, int id_col, int data_col)
{
	struct msg *m = msg_decode(sqlite3_column_blob(st, data_col),
				   (size_t)sqlite3_column_bytes(st, data_col));

	if (m) {
		m->id = (uint64_t)sqlite3_column_int64(st, id_col);
		msg_seen_id(m->id);
	}
	return m;
}

typedef int (*row_fn)(sqlite3_stmt *st, const struct store_restore_ops *ops);

static int each_row(const char *sql, int64_t a, int64_t b, row_fn fn,
		    const struct store_restore_ops *ops)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("store: %s: %s", sql, sqlite3_errmsg(db));
		return -1;
	}
	sqlite3_bind_int64(st, 1, a);
	sqlite3_bind_int64(st, 2, b);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (fn(st, ops)) {
			rc = SQLITE_ABORT;
			break;
		}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		log_err("store: reading back: %s",
			rc == SQLITE_ABORT ? "out of memory" : sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

static int row_session(sqlite3_stmt *st, const struct store_restore_ops *ops)
{
	struct store_session_row r;

	memset(&r, 0, sizeof(r));
	r.sid = (uint64_t)sqlite3_column_int64(st, 0);
	r.client_id = (const char *)sqlite3_column_text(st, 1);
	r.version = (uint8_t)sqlite3_column_int(st, 2);
	r.expiry_interval = (uint32_t)sqlite3_column_int64(st, 3);
	r.disconnected_wall = (uint64_t)sqlite3_column_int64(st, 4);
	if (sqlite3_column_type(st, 5) == SQLITE_BLOB)
		r.will = msg_decode(sqlite3_column_blob(st, 5),
				    (size_t)sqlite3_column_bytes(st, 5));
	r.will_delay = (uint32_t)sqlite3_column_int64(st, 6);
	r.next_seq = (uint64_t)sqlite3_column_int64(st, 7);
	r.username = (const char *)sqlite3_column_text(st, 8); /* NULL: none */
	r.realm = (uint16_t)sqlite3_column_int(st, 9);
	return ops->session_row(&r, ops->arg);
}

static int row_sub(sqlite3_stmt *st, const struct store_restore_ops *ops)
{
	return ops->sub((uint64_t)sqlite3_column_int64(st, 0),
			(const char *)sqlite3_column_text(st, 1),
			(uint8_t)sqlite3_column_int(st, 2), (uint32_t)sqlite3_column_int64(st, 3),
			ops->arg);
}

static int row_rx(sqlite3_stmt *st, const struct store_restore_ops *ops)
{
	return ops->rx_qos2((uint64_t)sqlite3_column_int64(st, 0),
			    (uint16_t)sqlite3_column_int(st, 1), ops->arg);
}

static int row_retained(sqlite3_stmt *st, const struct store_restore_ops *ops)
{
	struct msg *m = msg_from_row(st, 0, 1);

	return m ? ops->retained(m, ops->arg) : -1;
}

static int row_kv(sqlite3_stmt *st, const struct store_restore_ops *ops)
{
	return ops->kv((const char *)sqlite3_column_text(st, 0), sqlite3_column_blob(st, 1),
		       (size_t)sqlite3_column_bytes(st, 1), sqlite3_column_blob(st, 2),
		       (size_t)sqlite3_column_bytes(st, 2), ops->arg);
}

/* Fills r from a row of S_LOAD's shape (columns 0..8). The message has one reference. */
static int delivery_from_row(sqlite3_stmt *st, struct store_delivery_row *r)
{
	memset(r, 0, sizeof(*r));
	r->seq = (uint64_t)sqlite3_column_int64(st, 0);
	r->qos = (uint8_t)sqlite3_column_int(st, 1);
	r->retain = sqlite3_column_int(st, 2) != 0;
	r->state = (uint8_t)sqlite3_column_int(st, 3);
	r->packet_id = (uint16_t)sqlite3_column_int(st, 4);
	r->subids = sqlite3_column_blob(st, 5);
	r->n_subids = (size_t)sqlite3_column_bytes(st, 5) / sizeof(uint32_t);
	r->share = sqlite3_column_type(st, 6) == SQLITE_BLOB ? sqlite3_column_blob(st, 6) : NULL;
	r->msg = msg_from_row(st, 7, 8);
	return r->msg ? 0 : -1;
}

static int row_delivery(sqlite3_stmt *st, const struct store_restore_ops *ops)
{
	struct store_delivery_row r;
	uint64_t sid = (uint64_t)sqlite3_column_int64(st, 9);

	if (delivery_from_row(st, &r))
		return -1;
	return ops->delivery(sid, &r, ops->arg);
}

static int row_on_disk(sqlite3_stmt *st, const struct store_restore_ops *ops)
{
	return ops->on_disk((uint64_t)sqlite3_column_int64(st, 0),
			    (uint64_t)sqlite3_column_int64(st, 1),
			    (uint64_t)sqlite3_column_int64(st, 2), ops->arg);
}

/*
 * In flight (state > 0) and the first `in_memory` queued deliveries of each
 * session come back into memory; per session, the rest is counted and left
 * on disk. Window functions keep both linear in the number of rows.
 */
static const char sql_deliveries[] =
	"SELECT d.seq, d.qos, d.retain, d.state, d.packet_id, d.subids, d.share, m.id, m.data,"
	" d.sid FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY sid, state = 0 ORDER BY seq)"
	" AS rn FROM deliveries) d JOIN msgs m ON m.id = d.msg_id"
	" WHERE d.state > 0 OR d.rn <= ?1 ORDER BY d.sid, d.seq";
static const char sql_on_disk[] =
	"SELECT sid, MIN(seq), COUNT(*) FROM (SELECT sid, seq, ROW_NUMBER() OVER"
	" (PARTITION BY sid ORDER BY seq) AS rn FROM deliveries WHERE state = 0)"
	" WHERE rn > ?1 GROUP BY sid";

static int row_max_id(sqlite3_stmt *st, const struct store_restore_ops *ops)
{
	msg_seen_id((uint64_t)sqlite3_column_int64(st, 0));
	return 0;
}
int store_db_restore(const struct store_restore_ops *ops, uint64_t *heartbeat_wall)
{
	sqlite3_stmt *st;

	*heartbeat_wall = 0;
	if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'heartbeat'", -1, &st,
			       NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		*heartbeat_wall = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	/* Messages a crash left without any reference. */
	if (sqlite3_step(stmts[S_ORPHAN_MSGS]) != SQLITE_DONE)
		log_warn("store: cleaning unreferenced messages: %s", sqlite3_errmsg(db));
	sqlite3_reset(stmts[S_ORPHAN_MSGS]);
	return each_row("SELECT IFNULL(MAX(id), 0) FROM msgs", 0, 0, row_max_id, ops) ||
	       each_row("SELECT sid, client_id, version, expiry, disconnected, will, will_delay,"
			" next_seq, username, realm FROM sessions ORDER BY sid",
			0, 0, row_session, ops) ||
	       each_row("SELECT sid, filter, options, subid FROM subs", 0, 0, row_sub, ops) ||
	       each_row(sql_deliveries, ops->in_memory, 0, row_delivery, ops) ||
	       each_row(sql_on_disk, ops->in_memory, 0, row_on_disk, ops) ||
	       each_row("SELECT sid, packet_id FROM rx_qos2", 0, 0, row_rx, ops) ||
	       each_row("SELECT m.id, m.data FROM retained r JOIN msgs m ON m.id = r.msg_id", 0, 0,
			row_retained, ops) ||
	       each_row("SELECT plugin, key, value FROM plugin_kv ORDER BY plugin, key", 0, 0,
			row_kv, ops);
}

/* --- executing a batch -------------------------------------------------------------- */

static sqlite3_stmt *bind(enum stmt_id id)
{
	sqlite3_stmt *st = stmts[id];

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* Steps a statement that returns no rows. SQLITE_OK or the error. */
static int run(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int run_sid(enum stmt_id id, int64_t sid)
{
	sqlite3_stmt *st = bind(id);

	sqlite3_bind_int64(st, 1, sid);
	return run(st);
}

/* The id of the last message this transaction inserted and did not delete since. */
static int64_t last_msg_put;

static int put_msg(struct msg *m)
{
	struct buf b;
	sqlite3_stmt *st;
	int rc;

	if ((int64_t)m->id == last_msg_put)
		return SQLITE_OK;
	buf_init(&b);
	if (msg_encode(m, &b))
		return SQLITE_NOMEM;
	st = bind(S_MSG_PUT);
	sqlite3_bind_int64(st, 1, (int64_t)m->id);
	sqlite3_bind_blob(st, 2, b.data, (int)b.len, SQLITE_TRANSIENT);
	rc = run(st);
	buf_free(&b);
	if (rc == SQLITE_OK)
		last_msg_put = (int64_t)m->id;
	return rc;
}

static int gc_msg(int64_t id)
{
	sqlite3_stmt *st = bind(S_MSG_GC);

	sqlite3_bind_int64(st, 1, id);
	if (id == last_msg_put)
		last_msg_put = 0;
	return run(st);
}

static int exec_session_put(const struct op *o)
{
	sqlite3_stmt *st = bind(S_SESSION_PUT);

	sqlite3_bind_int64(st, 1, o->i[0]);
	sqlite3_bind_text(st, 2, o->text, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, o->i[1]);
	sqlite3_bind_int64(st, 4, o->i[2]);
	sqlite3_bind_int64(st, 5, o->i[3]);
	if (o->blob)
		sqlite3_bind_blob(st, 6, o->blob, (int)o->blob_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, (int64_t)o->blob2_len);
	sqlite3_bind_int64(st, 8, o->i[4]);
	if (o->text2)
		sqlite3_bind_text(st, 9, o->text2, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 10, o->i[5]);
	return run(st);
}

static int exec_session_del(const struct op *o)
{
	int rc = run_sid(S_SESSION_DEL, o->i[0]);

	if (rc == SQLITE_OK)
		rc = run_sid(S_SESSION_DEL_SUBS, o->i[0]);
	if (rc == SQLITE_OK)
		rc = run_sid(S_SESSION_DEL_DELIVERIES, o->i[0]);
	if (rc == SQLITE_OK)
		rc = run_sid(S_SESSION_DEL_RX, o->i[0]);
	/* Messages only that session referred to go with the next clean-up at start-up. */
	return rc;
}

static int exec_sub(const struct op *o)
{
	sqlite3_stmt *st = bind(o->type == OP_SUB_PUT ? S_SUB_PUT : S_SUB_DEL);

	sqlite3_bind_int64(st, 1, o->i[0]);
	sqlite3_bind_text(st, 2, o->text, -1, SQLITE_STATIC);
	if (o->type == OP_SUB_PUT) {
		sqlite3_bind_int64(st, 3, o->i[1]);
		sqlite3_bind_int64(st, 4, o->i[2]);
	}
	return run(st);
}

static int exec_delivery_put(const struct op *o)
{
	sqlite3_stmt *st;
	int rc = put_msg(o->msg);

	if (rc != SQLITE_OK)
		return rc;
	st = bind(S_DELIVERY_PUT);
	sqlite3_bind_int64(st, 1, o->i[0]);
	sqlite3_bind_int64(st, 2, o->i[1]);
	sqlite3_bind_int64(st, 3, (int64_t)o->msg->id);
	sqlite3_bind_int64(st, 4, o->i[2] & 3);
	sqlite3_bind_int64(st, 5, (o->i[2] & 4) != 0);
	sqlite3_bind_int64(st, 6, o->i[3]);
	sqlite3_bind_int64(st, 7, o->i[4]);
	if (o->blob)
		sqlite3_bind_blob(st, 8, o->blob, (int)o->blob_len, SQLITE_STATIC);
	if (o->blob2)
		sqlite3_bind_blob(st, 9, o->blob2, (int)o->blob2_len, SQLITE_STATIC);
	return run(st);
}

static int exec_delivery_update(const struct op *o)
{
	sqlite3_stmt *st = bind(S_DELIVERY_UPDATE);

	sqlite3_bind_int64(st, 1, o->i[0]);
	sqlite3_bind_int64(st, 2, o->i[1]);
	sqlite3_bind_int64(st, 3, o->i[2]);
	sqlite3_bind_int64(st, 4, o->i[3]);
	return run(st);
}

static int exec_delivery_del(const struct op *o)
{
	sqlite3_stmt *st = bind(S_DELIVERY_DEL);
	int rc;

	if (!o->i[1]) /* a cancelled put: only collect the message */
		return gc_msg(o->i[2]);
	sqlite3_bind_int64(st, 1, o->i[0]);
	sqlite3_bind_int64(st, 2, o->i[1]);
	rc = run(st);
	return rc == SQLITE_OK ? gc_msg(o->i[2]) : rc;
}

static int exec_rx(const struct op *o)
{
	sqlite3_stmt *st = bind(o->type == OP_RX_PUT ? S_RX_PUT : S_RX_DEL);

	sqlite3_bind_int64(st, 1, o->i[0]);
	sqlite3_bind_int64(st, 2, o->i[1]);
	return run(st);
}

/* The message a retained row pointed at, or 0. */
static int64_t retained_msg(const struct op *o)
{
	sqlite3_stmt *st = bind(S_RETAINED_GET);
	int64_t id = 0;

	sqlite3_bind_blob(st, 1, o->blob, (int)o->blob_len, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		id = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return id;
}

static int exec_retained(const struct op *o)
{
	int64_t old = retained_msg(o);
	sqlite3_stmt *st;
	int rc = o->type == OP_RETAINED_PUT ? put_msg(o->msg) : SQLITE_OK;

	if (rc != SQLITE_OK)
		return rc;
	st = bind(o->type == OP_RETAINED_PUT ? S_RETAINED_PUT : S_RETAINED_DEL);
	sqlite3_bind_blob(st, 1, o->blob, (int)o->blob_len, SQLITE_STATIC);
	if (o->type == OP_RETAINED_PUT)
		sqlite3_bind_int64(st, 2, (int64_t)o->msg->id);
	rc = run(st);
	if (rc == SQLITE_OK && old && (!o->msg || old != (int64_t)o->msg->id))
		rc = gc_msg(old);
	return rc;
}

static int exec_kv(const struct op *o)
{
	sqlite3_stmt *st = bind(o->type == OP_KV_PUT ? S_KV_PUT : S_KV_DEL);

	sqlite3_bind_text(st, 1, o->text, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, o->blob, (int)o->blob_len, SQLITE_STATIC);
	if (o->type == OP_KV_PUT)
		sqlite3_bind_blob(st, 3, o->blob2, (int)o->blob2_len, SQLITE_STATIC);
	return run(st);
}

static int exec_cold(const struct op *o)
{
	static const enum stmt_id ids[] = { [OP_COLD_PUT] = S_COLD_PUT,
					    [OP_COLD_DEL] = S_COLD_DEL,
					    [OP_COLD_DEL_RANGE] = S_COLD_DEL_RANGE };
	sqlite3_stmt *st = bind(ids[o->type]);

	sqlite3_bind_text(st, 1, o->text, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, o->blob, (int)o->blob_len, SQLITE_STATIC);
	if (o->type != OP_COLD_DEL)
		sqlite3_bind_blob(st, 3, o->blob2, (int)o->blob2_len, SQLITE_STATIC);
	return run(st);
}

/* A cold read: status 0 with the value copied into blob2, 1 when absent, < 0 on error. */
static int exec_cold_get(struct op *o)
{
	sqlite3_stmt *st = bind(S_COLD_GET);
	int rc;

	mem_free(o->blob2); /* a replay after a failed batch reads again */
	o->blob2 = NULL;
	o->blob2_len = 0;
	o->status = 1;
	sqlite3_bind_text(st, 1, o->text, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, o->blob, (int)o->blob_len, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		size_t n = (size_t)sqlite3_column_bytes(st, 0);

		o->blob2 = mem_alloc(n ? n : 1);
		if (o->blob2) {
			if (n)
				memcpy(o->blob2, sqlite3_column_blob(st, 0), n);
			o->blob2_len = n;
			o->status = 0;
		} else {
			o->status = -ENOMEM;
		}
	} else if (rc != SQLITE_DONE) {
		o->status = -EIO;
	}
	sqlite3_reset(st);
	return SQLITE_OK;
}

static int exec_heartbeat(const struct op *o)
{
	sqlite3_stmt *st = bind(S_HEARTBEAT);

	sqlite3_bind_int64(st, 1, o->i[0]);
	return run(st);
}

/* Appends a column's bytes to l->bytes (4-byte aligned); returns the offset, or SIZE_MAX. */
static size_t keep_column(struct loaded *l, sqlite3_stmt *st, int col, size_t *len)
{
	size_t off = (l->bytes.len + 3) & ~(size_t)3;
	static const uint8_t pad[4];

	*len = (size_t)sqlite3_column_bytes(st, col);
	if (buf_put(&l->bytes, pad, off - l->bytes.len) ||
	    buf_put(&l->bytes, sqlite3_column_blob(st, col), *len))
		return SIZE_MAX;
	return off;
}

/*
 * Reads rows for a disk-backed queue. Only bytes and numbers are taken here:
 * messages are built on the loop thread (hand_out_load), which owns them.
 */
static int read_row(struct loaded *l, sqlite3_stmt *st)
{
	struct raw_row *w;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct raw_row *a = mem_realloc(l->raw, cap * sizeof(*a));

		if (!a)
			return -1;
		l->raw = a;
		l->cap = cap;
	}
	w = &l->raw[l->n];
	w->seq = (uint64_t)sqlite3_column_int64(st, 0);
	w->qos = (uint8_t)sqlite3_column_int(st, 1);
	w->retain = sqlite3_column_int(st, 2) != 0;
	w->state = (uint8_t)sqlite3_column_int(st, 3);
	w->packet_id = (uint16_t)sqlite3_column_int(st, 4);
	w->msg_id = (uint64_t)sqlite3_column_int64(st, 7);
	w->sub_off = keep_column(l, st, 5, &w->sub_len);
	w->share_off = keep_column(l, st, 6, &w->share_len);
	w->data_off = keep_column(l, st, 8, &w->data_len);
	if (w->sub_off == SIZE_MAX || w->share_off == SIZE_MAX || w->data_off == SIZE_MAX)
		return -1;
	l->n++;
	return 0;
}

static int exec_load(struct op *o)
{
	sqlite3_stmt *st = bind(S_LOAD);
	int rc;

	if (!o->load)
		return SQLITE_NOMEM;
	sqlite3_bind_int64(st, 1, o->i[0]);
	sqlite3_bind_int64(st, 2, o->i[1]);
	sqlite3_bind_int64(st, 3, o->i[2]);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (read_row(o->load, st))
			break;
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc == SQLITE_ROW ? SQLITE_NOMEM : rc;
}

static int exec_op(struct op *o)
{
	switch (o->type) {
	case OP_SESSION_PUT:
		return exec_session_put(o);
	case OP_SESSION_DEL:
		return exec_session_del(o);
	case OP_SUB_PUT:
	case OP_SUB_DEL:
		return exec_sub(o);
	case OP_DELIVERY_PUT:
		return exec_delivery_put(o);
	case OP_DELIVERY_UPDATE:
		return exec_delivery_update(o);
	case OP_DELIVERY_DEL:
		return exec_delivery_del(o);
	case OP_RX_PUT:
	case OP_RX_DEL:
		return exec_rx(o);
	case OP_RETAINED_PUT:
	case OP_RETAINED_DEL:
		return exec_retained(o);
	case OP_KV_PUT:
	case OP_KV_DEL:
		return exec_kv(o);
	case OP_HEARTBEAT:
		return exec_heartbeat(o);
	case OP_COLD_PUT:
	case OP_COLD_DEL:
	case OP_COLD_DEL_RANGE:
		return exec_cold(o);
	case OP_COLD_GET:
		return exec_cold_get(o);
	default:
		return SQLITE_OK;
	}
}

static int to_status(int rc)
{
	if (rc == SQLITE_OK)
		return 0;
	if (rc == SQLITE_FULL)
		return -ENOSPC;
	if (rc == SQLITE_NOMEM)
		return -ENOMEM;
	return -EIO;
}

/* Runs ops[from, to) in one transaction. The SQLite result code. */
static int run_units(struct batch *b, size_t from, size_t to)
{
	int rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	size_t i;

	last_msg_put = 0;
	for (i = from; rc == SQLITE_OK && i < to; i++) {
		if (b->ops[i].type == OP_LOAD)
			b->ops[i].status = to_status(exec_load(&b->ops[i]));
		else
			rc = exec_op(&b->ops[i]);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK && !sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* Sets the status of every callback in ops[from, to) (one that already failed stays failed). */
static void set_status(struct batch *b, size_t from, size_t to, int status)
{
	size_t i;

	for (i = from; i < to; i++)
		if (b->ops[i].type == OP_DONE && !b->ops[i].status)
			b->ops[i].status = status;
}

/*
 * The batch failed as a whole: replay it one unit (ops up to and including
 * a callback) per transaction, so that what fits commits and only the
 * units that do not are refused.
 */
static unsigned replay_units(struct batch *b, int first_rc)
{
	size_t from = 0, i;
	unsigned failed = 0;

	log_err("store: commit failed (%s); retrying unit by unit", sqlite3_errstr(first_rc));
	for (i = 0; i < b->n; i++) {
		if (b->ops[i].type != OP_DONE && i + 1 < b->n)
			continue;
		int rc = run_units(b, from, i + 1);

		if (rc != SQLITE_OK) {
			log_err("store: %zu operation(s) not stored: %s", i + 1 - from,
				sqlite3_errstr(rc));
			failed++;
		}
		set_status(b, from, i + 1, to_status(rc));
		from = i + 1;
	}
	return failed;
}

unsigned store_db_write(struct batch *b)
{
	int rc = run_units(b, 0, b->n);

	return rc == SQLITE_OK ? 0 : replay_units(b, rc);
}
