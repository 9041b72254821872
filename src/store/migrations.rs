//! The schema, embedded, one entry per version; applied in order at start, each in its own
//! transaction, recorded in `schema_migrations`. Written once for both backends where SQL
//! allows: instants are BIGINT milliseconds since the epoch (UTC), flags are BIGINT 0/1, bytes
//! use `{blob}`. Triggers cannot be written once (SQLite's inline bodies, PostgreSQL's
//! functions): such a version is built for the backend by the module that owns its tables.

use super::Backend;

/// One schema version.
pub(super) enum Schema {
    /// Statements for both backends, separated by `;`.
    Both(&'static str),
    /// Whole statements for one backend (they may hold `;` in trigger bodies).
    Built(fn(Backend) -> Vec<String>),
}

pub(super) const MIGRATIONS: &[(i64, Schema)] = &[
    (
        1,
        Schema::Both(
            r#"
CREATE TABLE visits (
    id TEXT PRIMARY KEY,
    slot_key TEXT NOT NULL UNIQUE,
    schedule_id TEXT,
    business_id TEXT NOT NULL,
    group_id TEXT,
    scenario_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    persona_id TEXT,
    state TEXT NOT NULL,
    outcome TEXT,
    due_at BIGINT NOT NULL,
    window_end BIGINT,
    claimed_by TEXT,
    lease_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    error TEXT,
    reference TEXT,
    message_id TEXT,
    subject TEXT,
    business_email TEXT,
    send_uncertain BIGINT NOT NULL DEFAULT 0,
    sent_at BIGINT,
    reply_deadline BIGINT,
    first_reply_at BIGINT,
    reply_date BIGINT,
    first_ack_at BIGINT,
    time_to_reply_ms BIGINT,
    time_to_ack_ms BIGINT,
    time_to_reply_business_ms BIGINT,
    correlation TEXT,
    bounce_status TEXT,
    bounce_diagnostic TEXT,
    bounce_recipient TEXT,
    score DOUBLE PRECISION,
    dialed_at BIGINT,
    pdd_ms BIGINT,
    answer_ms BIGINT,
    ring_ms BIGINT,
    final_code BIGINT,
    final_reason TEXT,
    greeting_ms BIGINT,
    voice_ratio DOUBLE PRECISION,
    talk_ms BIGINT,
    rtp_sent BIGINT,
    rtp_received BIGINT,
    rtp_lost BIGINT,
    jitter_ms DOUBLE PRECISION,
    recording TEXT,
    early_media_recording TEXT
);
CREATE INDEX visits_state_due ON visits (state, due_at);
CREATE INDEX visits_message_id ON visits (message_id);
CREATE INDEX visits_business ON visits (business_id, due_at);
CREATE INDEX visits_group ON visits (group_id, due_at);

CREATE TABLE rule_results (
    visit_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    hit BIGINT NOT NULL,
    weight BIGINT NOT NULL,
    evidence TEXT,
    PRIMARY KEY (visit_id, rule_id)
);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    uidvalidity BIGINT NOT NULL,
    uid BIGINT NOT NULL,
    seen_at BIGINT NOT NULL,
    internal_date BIGINT,
    arrived_at BIGINT NOT NULL,
    message_id TEXT,
    from_addr TEXT,
    subject TEXT,
    date_header BIGINT,
    class TEXT NOT NULL,
    class_reason TEXT,
    visit_id TEXT,
    correlation TEXT,
    parse_error TEXT,
    size BIGINT NOT NULL,
    raw {blob},
    UNIQUE (account, mailbox, uidvalidity, uid)
);
CREATE INDEX messages_visit ON messages (visit_id);

CREATE TABLE mailbox_checkpoints (
    account TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    uidvalidity BIGINT NOT NULL,
    last_uid BIGINT NOT NULL,
    PRIMARY KEY (account, mailbox)
);

CREATE TABLE schedule_cursors (
    schedule_id TEXT PRIMARY KEY,
    planned_up_to BIGINT NOT NULL
);

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until BIGINT NOT NULL
);

CREATE TABLE businesses (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    group_id TEXT,
    email TEXT,
    phone TEXT,
    timezone TEXT,
    city TEXT,
    hours TEXT,
    imported_at BIGINT NOT NULL
);

CREATE TABLE digests (
    group_id TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
    state TEXT NOT NULL,
    message_id TEXT NOT NULL,
    claimed_by TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    error TEXT,
    PRIMARY KEY (group_id, period_start)
);
"#,
        ),
    ),
    (
        2,
        // Digests: a claim that failed before anything was accepted may be retried later;
        // what was sent is kept for `mystery digest` to show.
        Schema::Both(
            r#"
ALTER TABLE digests ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE digests ADD COLUMN retry_at BIGINT;
ALTER TABLE digests ADD COLUMN subject TEXT;
ALTER TABLE digests ADD COLUMN recipients TEXT;
CREATE INDEX visits_group_channel ON visits (group_id, channel, due_at)
"#,
        ),
    ),
    (
        3,
        // A deadline may close a visit only once every watched mailbox has been read up to it:
        // `read_at` is when the last complete pass over a mailbox started.
        Schema::Both(
            r#"
ALTER TABLE mailbox_checkpoints ADD COLUMN read_at BIGINT;
CREATE INDEX visits_state_deadline ON visits (state, reply_deadline)
"#,
        ),
    ),
    (
        4,
        // Governance: one row per business locked while a visit to it is checked against
        // `min_interval` and inserted (serialises planners on both backends). Retention: when
        // each kind of evidence was purged, so a report can tell purged from never recorded;
        // `transcript` is where call transcripts go (purged with `retention.transcripts`).
        Schema::Both(
            r#"
CREATE TABLE plan_locks (
    business_id TEXT PRIMARY KEY,
    locked_at BIGINT NOT NULL
);
ALTER TABLE messages ADD COLUMN raw_purged_at BIGINT;
ALTER TABLE rule_results ADD COLUMN evidence_purged_at BIGINT;
ALTER TABLE visits ADD COLUMN recording_purged_at BIGINT;
ALTER TABLE visits ADD COLUMN transcript TEXT;
ALTER TABLE visits ADD COLUMN transcript_purged_at BIGINT
"#,
        ),
    ),
    (
        5,
        // Send once (issue 7): every attempt of a visit sends the same bytes under the same
        // Message-ID, recorded before the first attempt; a send whose verdict was lost after
        // the final dot keeps the instant that dot was written.
        Schema::Both(
            r#"
ALTER TABLE visits ADD COLUMN data_end_at BIGINT;
CREATE TABLE enquiries (
    visit_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    raw {blob} NOT NULL,
    created_at BIGINT NOT NULL
)
"#,
        ),
    ),
    (
        6,
        // Digests (issue 7): when the current claim was taken (a `sending` row older than a
        // send can last is uncertain), and the resends a person asked for (`--resend`), with
        // the Message-IDs sent before so replies and bounces to them stay traceable.
        Schema::Both(
            r#"
ALTER TABLE digests ADD COLUMN claimed_at BIGINT;
ALTER TABLE digests ADD COLUMN resends BIGINT NOT NULL DEFAULT 0;
ALTER TABLE digests ADD COLUMN resent_at BIGINT;
ALTER TABLE digests ADD COLUMN earlier_message_ids TEXT
"#,
        ),
    ),
    (
        7,
        // Call transcripts (issue 8): an answered call's received audio waits in a queue kept
        // in the visit row (`transcript_status = 'pending'`); a worker holds it with a lease
        // (`transcript_owner`, `transcript_lease_until`) so a crash frees it and two daemons
        // never transcribe it twice. `segments` is JSON; `rings` is counted at hang-up from
        // `ring_ms` and `[sip] ring_cadence`; `greeted` (0/1) is the scenario's first
        // `greeting` rule, kept on the visit so digests count compliance without the rules.
        Schema::Both(
            r#"
ALTER TABLE visits ADD COLUMN transcript_status TEXT;
ALTER TABLE visits ADD COLUMN transcript_reason TEXT;
ALTER TABLE visits ADD COLUMN transcript_language TEXT;
ALTER TABLE visits ADD COLUMN segments TEXT;
ALTER TABLE visits ADD COLUMN rings BIGINT;
ALTER TABLE visits ADD COLUMN transcript_owner TEXT;
ALTER TABLE visits ADD COLUMN transcript_lease_until BIGINT;
ALTER TABLE visits ADD COLUMN transcribed_at BIGINT;
ALTER TABLE visits ADD COLUMN greeted BIGINT;
CREATE INDEX visits_transcript_queue ON visits (transcript_status, transcript_lease_until)
"#,
        ),
    ),
    (
        8,
        // Branch lists (issue 12): `form_url` and `country` travel with an imported branch;
        // a branch dropped from the list is archived (`archived_at`), never deleted, so its
        // visits keep their history and planning skips it.
        Schema::Both(
            r#"
ALTER TABLE businesses ADD COLUMN form_url TEXT;
ALTER TABLE businesses ADD COLUMN country TEXT;
ALTER TABLE businesses ADD COLUMN archived_at BIGINT
"#,
        ),
    ),
    (
        9,
        // Form visits (issue 10): `submitted_at` is when the branch's site confirmed the
        // form (replies are measured from it, as from an email's `sent_at`); `form_message`
        // the page's own words on a failure or a block; `form_url` the page actually filled.
        // Each visit's screenshots (the filled form, the result) are files under
        // `recordings_dir`, listed in order in `screenshots` and purged like recordings.
        Schema::Both(
            r#"
ALTER TABLE visits ADD COLUMN submitted_at BIGINT;
ALTER TABLE visits ADD COLUMN form_message TEXT;
ALTER TABLE visits ADD COLUMN form_url TEXT;
CREATE TABLE screenshots (
    visit_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT,
    taken_at BIGINT NOT NULL,
    purged_at BIGINT,
    PRIMARY KEY (visit_id, position)
)
"#,
        ),
    ),
    (
        10,
        // Alerts (issue 9): one row per (alert, branch, incident, kind, channel) is the claim
        // that makes a notice leave at most once, whatever the number of daemons and
        // restarts. `incident` is the first visit of the silent run; `kind` is `alert` or
        // `recovery`; `channel` is `mail` or `webhook`. States as the digests' ledger:
        // `sending` (may have gone out: never again), `sent`, `retry` (nothing was accepted),
        // `uncertain`, `failed`. `protocol_errors`: failures talking to the SMTP, IMAP and SIP
        // peers, counted in the store so every daemon's `/metrics` says the same.
        Schema::Both(
            r#"
CREATE TABLE alert_notices (
    alert_id TEXT NOT NULL,
    business_id TEXT NOT NULL,
    incident TEXT NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    message_id TEXT,
    consecutive BIGINT NOT NULL,
    last_visit TEXT NOT NULL,
    claimed_by TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    sent_at BIGINT,
    error TEXT,
    attempts BIGINT NOT NULL DEFAULT 1,
    retry_at BIGINT,
    PRIMARY KEY (alert_id, business_id, incident, kind, channel)
);
CREATE INDEX alert_notices_branch ON alert_notices (alert_id, business_id, kind, claimed_at);
CREATE INDEX alert_notices_retry ON alert_notices (state, retry_at);
CREATE INDEX visits_updated ON visits (updated_at);
CREATE TABLE protocol_errors (
    kind TEXT PRIMARY KEY,
    total BIGINT NOT NULL,
    last_at BIGINT NOT NULL
)
"#,
        ),
    ),
    (
        11,
        // The dashboard (issue 9) reads a group's period for every group on its overview:
        // counts, medians and weekly rates. This index holds every column those reads use
        // after the (group, channel, period) prefix, so they scan index entries only instead
        // of looking up each visit row (scripts/bench-dashboard measures it with 1 million
        // visits). Digests read the same columns.
        Schema::Both(
            r#"
CREATE INDEX visits_group_figures ON visits (group_id, channel, due_at, business_id, outcome,
    time_to_reply_ms, time_to_reply_business_ms, answer_ms, score, first_ack_at, greeted)
"#,
        ),
    ),
    (
        12,
        // `/metrics` (issue 9) read every visit per scrape (30 s with 1 million visits on
        // SQLite): totals per group, channel, outcome and delay bucket, and each branch's last
        // answer, are now kept by triggers in the same transaction as the visit's change, so
        // every writer (any daemon, any command, a hand-run UPDATE) keeps them right.
        Schema::Built(super::rollups::schema),
    ),
    (
        13,
        // Dashboard sessions (issue 9) outlive a restart and are shared by the daemons of one
        // store. Only a SHA-256 digest of the cookie is kept: the store never holds a token
        // that would log its reader in.
        Schema::Both(
            r#"
CREATE TABLE web_sessions (
    token_digest TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_last ON web_sessions (last_at)
"#,
        ),
    ),
    (
        14,
        // Digests and reports read every figure of a period in one scan (`aggregate::tally`);
        // the call's pdd and greeting were the only columns of it outside the covering index,
        // and fetching them from the table turned the scan of 1 million visits into one row
        // lookup per visit (10 s on SQLite instead of 0.6 s). The index is rebuilt with them.
        Schema::Both(
            r#"
DROP INDEX visits_group_figures;
CREATE INDEX visits_group_figures ON visits (group_id, channel, due_at, business_id, outcome,
    time_to_reply_ms, time_to_reply_business_ms, answer_ms, score, first_ack_at, greeted,
    pdd_ms, greeting_ms)
"#,
        ),
    ),
    (
        15,
        // The overview (issue 9) read every visit of two periods and twelve weeks per page
        // (300 ms with 1 million visits): visits counted per group, day, channel and outcome
        // are now kept by triggers, as version 12's totals are; only the measured delays
        // are still read from the visits.
        Schema::Built(super::day_counts::schema),
    ),
    (
        16,
        // The overview's measured visits (a delay, a score, a greeting) in an index of their
        // own: `aggregate/sums.rs` says why and keeps its test and the queries' in one text.
        Schema::Built(super::aggregate::measured_index),
    ),
];
