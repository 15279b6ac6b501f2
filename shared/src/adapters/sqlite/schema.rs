//! The schema and its migrations, numbered by `PRAGMA user_version`.
//!
//! Each index exists for one query of the store or the queue (named next to it); an index
//! that no query needs would only slow the writer down. Tables are `STRICT`, so a value of
//! the wrong type is refused when written instead of surfacing as corruption when read.

use rusqlite::Connection;

use super::error::{BackendError, Failure};

/// Migrations in order; migration `i` brings `user_version` from `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "
    CREATE TABLE tenants (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;

    -- TenantStore::tenant_by_key_hash looks keys up by hash: the primary key.
    CREATE TABLE api_keys (
        key_hash    TEXT PRIMARY KEY NOT NULL,
        tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

    -- Times are nanoseconds since the Unix epoch, UTC. `history` is a JSON array of
    -- {status, at}, appended to by each transition. `live` is 1 while the status is not
    -- terminal and NULL once it is: the validity index depends on it rather than on
    -- `status`, so the steps between non-terminal states (most of them) leave that index
    -- alone instead of deleting and re-inserting its entry each time.
    CREATE TABLE messages (
        seq                 INTEGER PRIMARY KEY,
        tenant_id           TEXT NOT NULL,
        id                  TEXT NOT NULL,
        batch_id            TEXT,
        to_number           TEXT NOT NULL,
        sender              TEXT NOT NULL,
        text                TEXT NOT NULL,
        encoding            TEXT NOT NULL,
        segments            INTEGER NOT NULL,
        status              TEXT NOT NULL,
        live                INTEGER CHECK (live = 1),
        created_at          INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL,
        send_at             INTEGER,
        expires_at          INTEGER NOT NULL,
        callback_url        TEXT,
        reference           TEXT,
        metadata            TEXT,
        provider            TEXT,
        provider_message_id TEXT,
        cost                INTEGER,
        error_code          TEXT,
        error_message       TEXT,
        attempts            INTEGER NOT NULL,
        history             TEXT NOT NULL
    ) STRICT;
    -- get, transition, receipts (by tenant and id); list, newest first.
    CREATE UNIQUE INDEX messages_tenant_id ON messages (tenant_id, id);
    -- list filtered by recipient or by batch.
    CREATE INDEX messages_tenant_to ON messages (tenant_id, to_number, id);
    CREATE INDEX messages_tenant_batch ON messages (tenant_id, batch_id, id)
        WHERE batch_id IS NOT NULL;
    -- due_scheduled.
    CREATE INDEX messages_due ON messages (send_at) WHERE status = 'scheduled';
    -- stale_queued.
    CREATE INDEX messages_stale_queued ON messages (updated_at) WHERE status = 'queued';
    -- sent_past_validity.
    CREATE INDEX messages_validity ON messages (expires_at) WHERE live = 1;
    -- find_by_provider_ids.
    CREATE INDEX messages_provider ON messages (provider, provider_message_id)
        WHERE provider_message_id IS NOT NULL;

    CREATE TABLE idempotency (
        tenant_id   TEXT NOT NULL,
        key         TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        body        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, key)
    ) STRICT, WITHOUT ROWID;

    -- One row per distinct report; the key makes a duplicate a no-op and orders a message's
    -- receipts by time.
    CREATE TABLE receipts (
        message INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
        at      INTEGER NOT NULL,
        part    INTEGER NOT NULL,
        state   TEXT NOT NULL,
        PRIMARY KEY (message, at, part, state)
    ) STRICT, WITHOUT ROWID;

    -- Both queues. Times are milliseconds since the Unix epoch. `receipt` is the random part
    -- of the current receipt handle (NULL before the first receive).
    CREATE TABLE queue_messages (
        id            INTEGER PRIMARY KEY,
        queue         TEXT NOT NULL,
        body          TEXT NOT NULL,
        visible_at    INTEGER NOT NULL,
        receive_count INTEGER NOT NULL,
        receipt       TEXT,
        sent_at       INTEGER NOT NULL
    ) STRICT;
    -- receive (the oldest visible first) and queue_depth.
    CREATE INDEX queue_visible ON queue_messages (queue, visible_at);

    CREATE TABLE dead_letters (
        id            INTEGER PRIMARY KEY,
        queue         TEXT NOT NULL,
        body          TEXT NOT NULL,
        receive_count INTEGER NOT NULL,
        sent_at       INTEGER NOT NULL,
        dead_at       INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX dead_letters_queue ON dead_letters (queue, id);
    ",
    // 2: revoked API keys stay on record; receipt requests already applied (replay guard).
    "
    ALTER TABLE api_keys ADD COLUMN revoked_at INTEGER;

    -- ReplayStore::seen by digest; forget_expired by time.
    CREATE TABLE receipt_replays (
        digest      BLOB PRIMARY KEY NOT NULL,
        expires_at  INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX receipt_replays_expiry ON receipt_replays (expires_at);
    ",
    // 3: API keys with ids, names, scopes and lifetimes; senders registered to tenants; the
    // audit log. Keys from before keep `id` NULL and every scope.
    "
    ALTER TABLE api_keys ADD COLUMN id TEXT;
    ALTER TABLE api_keys ADD COLUMN name TEXT;
    ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'admin';
    ALTER TABLE api_keys ADD COLUMN created_at INTEGER;
    ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
    ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
    -- TenantStore::api_key, end_key and touch_key find current keys by id.
    CREATE UNIQUE INDEX api_keys_id ON api_keys (id) WHERE id IS NOT NULL;

    -- senders (one tenant's, by the primary key); `networks` is `kyivstar=active,...`.
    CREATE TABLE senders (
        tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        sender      TEXT NOT NULL,
        networks    TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, sender)
    ) STRICT, WITHOUT ROWID;

    -- Senders a tenant sent from before the registry existed stay usable: registered, active
    -- on every network (the operator can change that with `holub tenant set-sender`).
    INSERT INTO senders (tenant_id, sender, networks, created_at, updated_at)
    SELECT DISTINCT m.tenant_id, m.sender,
        'kyivstar=active,vodafone=active,lifecell=active,other=active',
        CAST(strftime('%s', 'now') AS INTEGER) * 1000000000,
        CAST(strftime('%s', 'now') AS INTEGER) * 1000000000
    FROM messages m JOIN tenants t ON t.id = m.tenant_id;

    -- audit_log, newest first, by the primary key (ids are ULIDs). `entry` is the JSON entry.
    CREATE TABLE audit_log (
        tenant_id   TEXT NOT NULL,
        id          TEXT NOT NULL,
        entry       TEXT NOT NULL,
        PRIMARY KEY (tenant_id, id)
    ) STRICT, WITHOUT ROWID;
    ",
    // 4: abuse limits. A tenant's own limits (JSON; the defaults hold without a row), and
    // the counters behind them: a rate bucket, spend per day and month, messages per number
    // and hour. `value` is a count, kopiykas, or a bucket's next-arrival time (nanoseconds).
    "
    CREATE TABLE tenant_limits (
        tenant_id   TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
        limits      TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE counters (
        key         TEXT PRIMARY KEY,
        value       INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    -- forget_expired
    CREATE INDEX counters_expiry ON counters (expires_at);

    -- Messages to one number in one hour (`hour` is YYYYMMDDHH, `digest` the number's keyed
    -- digest, which names the tenant too): the busiest counter, so a narrow row of its own.
    CREATE TABLE number_counts (
        hour        INTEGER NOT NULL,
        digest      BLOB NOT NULL,
        count       INTEGER NOT NULL,
        PRIMARY KEY (hour, digest)
    ) STRICT, WITHOUT ROWID;
    ",
    // 5: numbers and texts sealed per tenant (see `domain::sealing`). A message's number and
    // text are in `sealed`, its number's tag in `to_tag`; `to_number` and `text` keep only
    // what rows from before held, until `seal_legacy` seals them too (and empties them). An
    // idempotency record's answer is in `sealed` likewise. Tenants' data keys, wrapped by
    // the master key; `wrapped` is NULL once erased.
    "
    ALTER TABLE messages ADD COLUMN sealed BLOB;
    ALTER TABLE messages ADD COLUMN to_tag BLOB;
    -- list filtered by recipient: by tag now.
    DROP INDEX messages_tenant_to;
    CREATE INDEX messages_tenant_tag ON messages (tenant_id, to_tag, id)
        WHERE to_tag IS NOT NULL;
    -- seal_legacy.
    CREATE INDEX messages_legacy ON messages (seq) WHERE sealed IS NULL;
    ALTER TABLE idempotency ADD COLUMN sealed BLOB;

    CREATE TABLE tenant_keys (
        tenant_id   TEXT PRIMARY KEY NOT NULL,
        wrapped     BLOB,
        created_at  INTEGER NOT NULL,
        erased_at   INTEGER
    ) STRICT, WITHOUT ROWID;
    ",
    // 6: the statuses a message's callback URL asked for (bits of `StatusSet`; NULL: all).
    // Callback jobs are written to `queue_messages` in the same write as the change they
    // tell of: the outbox.
    "
    ALTER TABLE messages ADD COLUMN callback_statuses INTEGER;
    ",
    // 7: analytics (see `stats.rs`). The operator of the recipient's prefix (it names a
    // network, not a person: plain). `rolled` is the contribution last folded into `stats`
    // (NULL: none yet). The outbox of status events, written by the store in the same write
    // as the change: `stats_new` a span of `messages.seq` per insert, `stats_pending` the
    // messages a transition changed. Messages from before count from the first rollup.
    "
    ALTER TABLE messages ADD COLUMN operator TEXT;
    ALTER TABLE messages ADD COLUMN rolled TEXT;

    CREATE TABLE stats_new (
        first       INTEGER NOT NULL,
        last        INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE stats_pending (
        message     INTEGER PRIMARY KEY
    ) STRICT;
    INSERT INTO stats_new (first, last)
        SELECT min(seq), max(seq) FROM messages HAVING count(*) > 0;

    -- One row per tenant and cell (`StatsKey::encode`, which sorts by hour): the report
    -- queries read a range of cells. `counters` is the cell's `Counters` as JSON.
    CREATE TABLE stats (
        tenant_id   TEXT NOT NULL,
        cell        TEXT NOT NULL,
        counters    TEXT NOT NULL,
        PRIMARY KEY (tenant_id, cell)
    ) STRICT, WITHOUT ROWID;
    ",
    // 8: tracked links. `links` is the message's `TrackedLink`s, sealed (their URLs are part
    // of its text; NULL: none); the clicks on them by people and by preview fetchers, and
    // the first by a person. The `links` table finds a code's message (`follow`); a
    // message's codes go with it.
    "
    ALTER TABLE messages ADD COLUMN links BLOB;
    ALTER TABLE messages ADD COLUMN clicks INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN bot_clicks INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN clicked_at INTEGER;

    CREATE TABLE links (
        code        TEXT PRIMARY KEY NOT NULL,
        message     INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    -- the delete below.
    CREATE INDEX links_message ON links (message);
    CREATE TRIGGER links_forgotten AFTER DELETE ON messages WHEN OLD.links IS NOT NULL
    BEGIN
        DELETE FROM links WHERE message = OLD.seq;
    END;
    ",
    // 9: consent to marketing. A message's category (NULL: transactional) and its opt-out
    // link's code (in `links` like tracked links' codes, so the trigger now looks at both).
    // Each tenant's ledger per number: entries sealed under the tenant's key (they may name
    // a person), found by the number's tag; `consent_state` holds each number's current
    // state (the entry with the latest `at`), what intake and dispatch read.
    "
    ALTER TABLE messages ADD COLUMN category TEXT;
    ALTER TABLE messages ADD COLUMN opt_out TEXT;
    DROP TRIGGER links_forgotten;
    CREATE TRIGGER links_forgotten AFTER DELETE ON messages
        WHEN OLD.links IS NOT NULL OR OLD.opt_out IS NOT NULL
    BEGIN
        DELETE FROM links WHERE message = OLD.seq;
    END;

    CREATE TABLE consent_entries (
        seq         INTEGER PRIMARY KEY,
        tenant_id   TEXT NOT NULL,
        number_tag  BLOB NOT NULL,
        sealed      BLOB NOT NULL
    ) STRICT;
    CREATE INDEX consent_entries_number ON consent_entries (tenant_id, number_tag, seq);
    CREATE TABLE consent_state (
        tenant_id   TEXT NOT NULL,
        number_tag  BLOB NOT NULL,
        at          INTEGER NOT NULL,
        recorded_at INTEGER NOT NULL,
        state       TEXT NOT NULL,
        PRIMARY KEY (tenant_id, number_tag)
    ) STRICT, WITHOUT ROWID;
    ",
    // 10: contacts. The number, name and attributes sealed under the tenant's key, found
    // by the number's tag (unique per tenant); the lists (plain JSON array of names) and a
    // row per list membership, for paging a list.
    "
    CREATE TABLE contacts (
        tenant_id   TEXT NOT NULL,
        id          TEXT NOT NULL,
        number_tag  BLOB NOT NULL,
        sealed      BLOB NOT NULL,
        lists       TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        version     INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, id)
    ) STRICT, WITHOUT ROWID;
    CREATE UNIQUE INDEX contacts_number ON contacts (tenant_id, number_tag);
    CREATE TABLE contact_lists (
        tenant_id   TEXT NOT NULL,
        list        TEXT NOT NULL,
        contact     TEXT NOT NULL,
        PRIMARY KEY (tenant_id, list, contact)
    ) STRICT, WITHOUT ROWID;
    ",
    // 11: templates. A row per template (its latest version, its name in lower case, and
    // when it was deleted) and a row per version, never changed once written. The text is
    // the tenant's own copy, stored plain.
    "
    CREATE TABLE templates (
        tenant_id   TEXT NOT NULL,
        id          TEXT NOT NULL,
        name_key    TEXT NOT NULL,
        latest      INTEGER NOT NULL,
        deleted_at  INTEGER,
        PRIMARY KEY (tenant_id, id)
    ) STRICT, WITHOUT ROWID;
    -- TemplateStore::put keeps a name to one live template of a tenant.
    CREATE UNIQUE INDEX templates_name ON templates (tenant_id, name_key)
        WHERE deleted_at IS NULL;
    CREATE TABLE template_versions (
        tenant_id   TEXT NOT NULL,
        id          TEXT NOT NULL,
        version     INTEGER NOT NULL,
        name        TEXT NOT NULL,
        text        TEXT NOT NULL,
        category    TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, id, version)
    ) STRICT, WITHOUT ROWID;
    ",
    // 12: campaigns, each stored whole as JSON (no subscriber data in it) with its version,
    // and the count of opt-outs through its messages apart, so counting one needs no version.
    "
    CREATE TABLE campaigns (
        tenant_id   TEXT NOT NULL,
        id          TEXT NOT NULL,
        version     INTEGER NOT NULL,
        body        TEXT NOT NULL,
        opted_out   INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, id)
    ) STRICT, WITHOUT ROWID;
    ",
    // 13: each provider's rate slot in use (and the grants taken of it) and its breaker,
    // shared by every process on this database.
    "
    CREATE TABLE provider_limits (
        provider    TEXT PRIMARY KEY,
        slot        INTEGER,
        used        INTEGER NOT NULL DEFAULT 0,
        open_until  INTEGER,
        trial_until INTEGER,
        reason_code TEXT,
        reason_text TEXT
    ) STRICT, WITHOUT ROWID;
    ",
    // 14: the web console's users (an email is one user's in all of Holub; `password` is an
    // Argon2id PHC string, NULL while invited), their sessions (by the SHA-256 of the token)
    // and failed sign-ins (by the SHA-256 of the address, known or not). Expired sessions
    // and closed windows are deleted by the writes of their tables.
    "
    CREATE TABLE console_users (
        tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        id              TEXT NOT NULL,
        email           TEXT NOT NULL,
        role            TEXT NOT NULL,
        password        TEXT,
        invite_hash     TEXT,
        invite_expires  INTEGER,
        sessions_since  INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        version         INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, id)
    ) STRICT, WITHOUT ROWID;
    -- UserStore::create keeps an address to one user; get_by_email.
    CREATE UNIQUE INDEX console_users_email ON console_users (email);
    CREATE TABLE console_sessions (
        token_hash  TEXT PRIMARY KEY NOT NULL,
        user_id     TEXT NOT NULL,
        tenant_id   TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    -- put_session deletes the expired.
    CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
    CREATE TABLE sign_in_failures (
        email_digest TEXT PRIMARY KEY NOT NULL,
        count        INTEGER NOT NULL,
        window_ends  INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    -- record_failure deletes the closed.
    CREATE INDEX sign_in_failures_expiry ON sign_in_failures (window_ends);
    ",
];

/// Brings the schema up to date, in one transaction per migration.
pub(super) fn migrate(conn: &Connection) -> Result<(), Failure> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(Failure::Unavailable(BackendError::Other(format!(
            "the database has schema version {version}, newer than this build knows ({known})"
        ))));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let next = index + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {next}; COMMIT;"
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
        tracing::info!(version = next, "migrated the SQLite schema");
    }
    Ok(())
}
