-- surveyhooks delivery log, 18.16-compatible form (Debian's server; schema_current.sql is the form
-- for 24.x and later): no TTL, no DateTime64, no Map, no LowCardinality. Times are DateTime
-- (seconds) plus epoch milliseconds. retention_days is the row's project retention: the store's
-- retention job deletes rows past it and drops daily partitions past the platform maximum.
-- concurrency_limit is the endpoint's adaptive concurrency limit when the attempt was made (0 on
-- rows stored before it was recorded); attempts that were not sent carry it too.
-- Rows are only ever inserted through batches with explicit column lists.
-- Statements are separated by a line holding only ';'.

CREATE TABLE IF NOT EXISTS delivery_attempts (
    attempt_id String,
    delivery_id String,
    event_id String,
    webhook_id String,
    project_id String,
    event_type String,
    attempt UInt16,
    tier UInt8,
    outcome String,
    disposition String,
    status_code UInt16,
    error String,
    retry_after_ms UInt64,
    started_at DateTime,
    started_ms UInt64,
    latency_us UInt64,
    request_url String,
    request_header_names Array(String),
    request_header_values Array(String),
    request_body String,
    response_header_names Array(String),
    response_header_values Array(String),
    response_body String,
    response_truncated UInt8,
    worker String,
    trace_id String,
    next_attempt_ms UInt64,
    test UInt8,
    kafka_partition Int32,
    kafka_offset Int64,
    retention_days UInt16,
    storage_masked UInt8,
    sealed_body String,
    concurrency_limit UInt16
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (project_id, webhook_id, started_at, attempt_id)
;
-- "One event id": a narrow index table kept by a materialized view.
CREATE MATERIALIZED VIEW IF NOT EXISTS attempts_by_event
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (project_id, event_id, started_at)
AS SELECT project_id, event_id, webhook_id, attempt_id, started_at FROM delivery_attempts
;
-- Per-webhook, per-hour rollup: counts by outcome and status class, latency quantile states.
-- 30-day statistics read this, never the raw rows.
CREATE MATERIALIZED VIEW IF NOT EXISTS attempts_hourly
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, webhook_id, hour)
AS SELECT
    project_id,
    webhook_id,
    toStartOfHour(started_at) AS hour,
    countState() AS attempts,
    sumState(toUInt64(outcome = 'success')) AS success,
    sumState(toUInt64(status_code >= 200 AND status_code < 300)) AS s2xx,
    sumState(toUInt64(status_code >= 300 AND status_code < 400)) AS s3xx,
    sumState(toUInt64(status_code >= 400 AND status_code < 500)) AS s4xx,
    sumState(toUInt64(status_code >= 500)) AS s5xx,
    sumState(toUInt64(status_code = 0)) AS errors,
    quantilesState(0.5, 0.95, 0.99)(latency_us) AS latency_us
FROM delivery_attempts
GROUP BY project_id, webhook_id, hour
;
CREATE TABLE IF NOT EXISTS dead_letters (
    id String,
    delivery_id String,
    event_id String,
    webhook_id String,
    project_id String,
    event_type String,
    attempt UInt16,
    outcome String,
    status_code UInt16,
    error String,
    dead_at DateTime,
    dead_ms UInt64,
    delivery String,
    replayed UInt8,
    version UInt64,
    kafka_partition Int32,
    kafka_offset Int64,
    retention_days UInt16
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(dead_at)
ORDER BY (project_id, id)
;
-- Erasure jobs: which project, when, how many rows went. Never the respondent's identifiers in
-- clear: while a job runs, sealed_respondent holds them sealed (AES-GCM, the key of webhook
-- secrets) so that an API that restarts can resume it; the finished job's row has it empty, and
-- the running row's version is merged away when the job ends (OPTIMIZE … FINAL).
CREATE TABLE IF NOT EXISTS erasures (
    id String,
    project_id String,
    status String,
    attempts UInt64,
    dead_letters UInt64,
    error String,
    requested_ms UInt64,
    finished_ms UInt64,
    version UInt64,
    sealed_respondent String
) ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, id)
;
-- Replay jobs (POST /v1/webhooks/{id}/replays): what to replay, where the job got to (cursor: the
-- last delivery id it sent), its counts, and which API process runs it (owner, heartbeat_ms), so
-- that a job whose process died is taken over. Never bodies.
CREATE TABLE IF NOT EXISTS replays (
    id String,
    project_id String,
    webhook_id String,
    target_webhook_id String,
    since_ms UInt64,
    until_ms UInt64,
    outcome String,
    status_class String,
    event_types Array(String),
    status String,
    cursor String,
    matched UInt64,
    replayed UInt64,
    skipped UInt64,
    error String,
    owner String,
    heartbeat_ms UInt64,
    requested_ms UInt64,
    finished_ms UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, id)
