//! Reward epochs: claiming, inputs, results, manifests and the ledger.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::rewards::{
    CellReward, ContributorReward, EpochInputs, EpochOutcome, EpochPeriod, Manifest, Penalty,
};

use crate::dialect::Columns;
use crate::dialect::{micros, time};
use crate::error::{Result, SqlContext, StoreError};
use crate::reward_rows::{
    CaptureRow, RadioSampleRow, RawInputs, capture, cell_row, check_order, radio_sample,
    reward_row, spoof_reasons, to_i64, to_u64,
};
use crate::rows::EPOCH_COLUMNS;
use crate::{ClosedEpoch, EpochClaim, EpochRecord, PgStore, SqliteStore};

/// Reward epochs: claiming, inputs, results, manifests and the ledger.
#[async_trait]
pub trait Epochs: Send + Sync {
    /// Takes epoch `period.epoch` to close, under a lease, and counts in it every processed
    /// upload received before its end that no epoch counted yet. Epochs close in order: after
    /// the first, epoch N only once N − 1 is closed ([`StoreError::Conflict`](crate::StoreError::Conflict) otherwise).
    async fn claim_epoch(
        &self,
        period: &EpochPeriod,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<EpochClaim>;

    /// Gives a claim back unfinished, so another closer need not wait for its lease to run out.
    async fn abandon_epoch(&self, epoch: u64, token: &str) -> Result<()>;

    /// What epoch `period.epoch` is computed from, read from the uploads counted in it and the
    /// epochs before it; the same answer before and after it is closed.
    async fn epoch_inputs(
        &self,
        period: &EpochPeriod,
        coverage_since: DateTime<Utc>,
    ) -> Result<EpochInputs>;

    /// Writes an epoch's results and, last, its manifest, in one transaction — or nothing, with
    /// [`StoreError::Conflict`](crate::StoreError::Conflict), if the claim `token` no longer holds it.
    async fn finish_epoch(
        &self,
        token: &str,
        outcome: &EpochOutcome,
        policy: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Every epoch claimed or closed, by number.
    async fn epochs(&self) -> Result<Vec<EpochRecord>>;

    /// A closed epoch's manifest and policy.
    async fn closed_epoch(&self, epoch: u64) -> Result<Option<ClosedEpoch>>;

    /// The newest closed epoch's number.
    async fn last_closed_epoch(&self) -> Result<Option<u64>>;

    /// An epoch's rewards, one per contributor with a cumulative total, by contributor.
    async fn epoch_rewards(&self, epoch: u64) -> Result<Vec<ContributorReward>>;

    /// What each cell earned in an epoch, by cell.
    async fn epoch_cells(&self, epoch: u64) -> Result<Vec<CellReward>>;

    async fn epoch_penalties(&self, epoch: u64) -> Result<Vec<Penalty>>;

    /// A contributor's reward in every closed epoch where it has a total, oldest first.
    async fn contributor_rewards(&self, contributor: &str)
    -> Result<Vec<(u64, ContributorReward)>>;
}

/// An epoch's status, and who holds its claim until when.
const EPOCH_CLAIM: &str = "SELECT status, claimed_by, claimed_until FROM epochs WHERE epoch = $1";

/// The newest closed epoch, and the first epoch other than `$1` whose claim still holds at `$2`.
const CLOSE_ORDER: &str = "SELECT (SELECT MAX(epoch) FROM epochs WHERE status = 'closed'), \
        (SELECT MIN(epoch) FROM epochs WHERE status = 'closing' AND epoch <> $1 \
            AND claimed_until > $2)";

/// Claims epoch `$1` (from `$2` to `$3`) for worker `$4`, with token `$5`, until `$6`.
const CLAIM_EPOCH: &str = "INSERT INTO epochs (epoch, start_at, end_at, status, claimed_by, \
         claim_token, claimed_until) VALUES ($1, $2, $3, 'closing', $4, $5, $6) \
     ON CONFLICT (epoch) DO UPDATE SET claimed_by = $4, claim_token = $5, \
         claimed_until = $6, start_at = $2, end_at = $3";

/// Counts in epoch `$1` the uploads received before `$2` that no epoch counted yet; an erased
/// upload is never counted.
const COUNT_UPLOADS_IN_EPOCH: &str = "UPDATE uploads SET reward_epoch = $1 \
     WHERE reward_epoch IS NULL AND status IN ('processed', 'rejected') \
       AND received_at < $2 AND erased_at IS NULL";

/// Counts in epoch `$1` the frames approved before `$2` that no epoch counted yet.
const COUNT_APPROVED_FRAMES_IN_EPOCH: &str = "UPDATE frame_rejections SET reward_epoch = $1 \
     WHERE reward_epoch IS NULL AND (upload_id, frame) IN ( \
         SELECT f.upload_id, f.frame FROM frames f \
         JOIN frame_decisions d ON d.id = f.decision_id \
         WHERE f.decision_id IS NOT NULL AND d.decided_at < $2)";

/// Counts in epoch `$1` the frames published late (kept pending while the vision models were
/// missing) before `$2` that no epoch counted yet (see migration 0011).
const COUNT_LATE_FRAMES_IN_EPOCH: &str = "UPDATE frames SET reward_epoch = $1 \
     WHERE reward_epoch IS NULL AND judged_at IS NOT NULL AND judged_at < $2 \
       AND status = 'published'";

/// Gives epoch `$1` back, if claim token `$2` still holds it.
const ABANDON_EPOCH: &str = "UPDATE epochs SET claimed_by = NULL, claim_token = NULL, \
         claimed_until = NULL \
     WHERE epoch = $1 AND status = 'closing' AND claim_token = $2";

/// Epoch `$1`'s captures: frames of its uploads published with them, frames published late
/// and counted in it, and frames approved in it.
const EPOCH_CAPTURES: &str = "SELECT CASE WHEN u.rewardable THEN u.contributor END, \
        f.upload_id, f.frame, f.cell, f.captured_at \
     FROM frames f JOIN uploads u ON u.id = f.upload_id \
     WHERE u.reward_epoch = $1 AND f.status = 'published' \
       AND f.decision_id IS NULL AND f.judged_at IS NULL \
     UNION ALL \
     SELECT CASE WHEN u.rewardable THEN u.contributor END, \
        f.upload_id, f.frame, f.cell, f.captured_at \
     FROM frames f JOIN uploads u ON u.id = f.upload_id \
     WHERE f.reward_epoch = $1 AND f.status = 'published' \
     UNION ALL \
     SELECT CASE WHEN u.rewardable THEN u.contributor END, r.upload_id, r.frame, \
            r.cell, r.captured_at \
     FROM frame_rejections r JOIN uploads u ON u.id = r.upload_id \
     WHERE r.reward_epoch = $1";

// SQLite: [`EPOCH_CAPTURES`] an upload a row, its frames as `frame,cell,captured_at` joined by
// `;` (whole numbers, written exactly).
const SQLITE_PACKED_CAPTURES_HEAD: &str = "WITH x(c, u, f, cell, t) AS (";
const SQLITE_PACKED_CAPTURES_TAIL: &str = ") SELECT c, u, \
         group_concat(f || ',' || cell || ',' || t, ';') FROM x GROUP BY u, c";

/// One frame of [`SQLITE_PACKED_CAPTURES_HEAD`]'s packing: frame, cell, captured at (µs).
fn unpack_capture(packed: &str) -> Result<(i32, i64, i64)> {
    let bad = || StoreError::Corrupt(format!("a packed frame: {packed:?}"));
    let mut parts = packed.split(',');
    let mut next = || parts.next().ok_or_else(bad);
    let frame = next()?.parse().map_err(|_| bad())?;
    let cell = next()?.parse().map_err(|_| bad())?;
    let at = next()?.parse().map_err(|_| bad())?;
    Ok((frame, cell, at))
}

/// The newest capture before epoch `$1` of each cell it captures.
const EPOCH_LAST_SEEN: &str = "WITH touched AS MATERIALIZED ( \
         SELECT f.cell FROM frames f JOIN uploads u ON u.id = f.upload_id \
         WHERE u.reward_epoch = $1 AND f.status = 'published' \
           AND f.decision_id IS NULL AND f.judged_at IS NULL \
         UNION SELECT cell FROM frames WHERE reward_epoch = $1 AND status = 'published' \
         UNION SELECT cell FROM frame_rejections WHERE reward_epoch = $1) \
     SELECT t.cell, (SELECT c.last_seen FROM epoch_cells c \
         WHERE c.cell = t.cell AND c.epoch < $1 AND c.last_seen IS NOT NULL \
         ORDER BY c.epoch DESC LIMIT 1) \
     FROM touched t";

/// The road length of each cell epoch `$1` touches, and how much of it was driven before it
/// since `$2`, by uploads not erased before the epoch's end `$3` (the same answer before and
/// after an erasure that came later).
const EPOCH_ROADS: &str = "WITH touched AS MATERIALIZED ( \
         SELECT f.cell FROM frames f JOIN uploads u ON u.id = f.upload_id \
         WHERE u.reward_epoch = $1 AND f.status = 'published' \
           AND f.decision_id IS NULL AND f.judged_at IS NULL \
         UNION SELECT cell FROM frames WHERE reward_epoch = $1 AND status = 'published' \
         UNION SELECT cell FROM frame_rejections WHERE reward_epoch = $1 \
         UNION SELECT r.cell FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
         WHERE u.reward_epoch = $1), \
     driven AS MATERIALIZED ( \
         SELECT ms.cell, ms.osm_way_id, ms.way_piece, MAX(ms.length_m) AS l \
         FROM matched_stretches ms JOIN uploads u ON u.id = ms.upload_id \
         WHERE u.reward_epoch < $1 AND u.received_at >= $2 AND u.trust <> 'flagged' \
           AND (u.erased_at IS NULL OR u.erased_at >= $3) \
           AND ms.cell IN (SELECT cell FROM touched) \
         GROUP BY ms.cell, ms.osm_way_id, ms.way_piece), \
     observed AS (SELECT cell, SUM(l) AS m FROM driven GROUP BY cell) \
     SELECT rc.cell, rc.road_length_m, CAST(COALESCE(o.m, 0) AS double precision) \
     FROM road_cells rc JOIN touched t ON t.cell = rc.cell \
     LEFT JOIN observed o ON o.cell = rc.cell";

// Epoch `$1`'s radio samples: PostGIS reads their positions from the geometry, SQLite from its
// lat/lon columns.
const PG_EPOCH_RADIO: &str = "SELECT CASE WHEN u.rewardable THEN u.contributor END, \
        r.upload_id, r.seq, r.cell, COALESCE(r.radio, r.emitter_kind), r.emitter, \
        r.signal_dbm, r.observed_at, ST_Y(r.geom), ST_X(r.geom) \
     FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
     WHERE u.reward_epoch = $1";
const SQLITE_EPOCH_RADIO: &str = "SELECT CASE WHEN u.rewardable THEN u.contributor END, \
        r.upload_id, r.seq, r.cell, COALESCE(r.radio, r.emitter_kind), r.emitter, \
        r.signal_dbm, r.observed_at, r.lat, r.lon \
     FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
     WHERE u.reward_epoch = $1";

/// The demand areas that count in epoch `$1` (from `$3` to `$2`): created before its end, and
/// live at its start or holding a bounty not refunded before it.
macro_rules! epoch_areas_filter {
    () => {
        "created_at < $2 AND (expires_at IS NULL OR expires_at > $3 \
          OR (budget IS NOT NULL AND (refunded_epoch IS NULL OR refunded_epoch >= $1)))"
    };
}

/// The demand areas of epoch `$1` (from `$3` to `$2`), and whether each was refunded before it.
const EPOCH_AREAS: &str = concat!(
    "SELECT id, name, weight, created_at, expires_at, budget, \
        (refunded_epoch IS NOT NULL AND refunded_epoch < $1) \
     FROM demand_areas WHERE ",
    epoch_areas_filter!()
);

/// The cells of the demand areas of epoch `$1` (from `$3` to `$2`).
const EPOCH_AREA_CELLS: &str = concat!(
    "SELECT area_id, cell FROM demand_cells WHERE area_id IN \
        (SELECT id FROM demand_areas WHERE ",
    epoch_areas_filter!(),
    ")"
);

/// Bounties claimed before epoch `$1`.
const EARLIER_BOUNTY_CLAIMS: &str =
    "SELECT area_id, cell, paid FROM bounty_claims WHERE epoch < $1";

/// Fixes accepted per paid contributor in epoch `$1`.
const EPOCH_FIXES: &str = "SELECT contributor, \
        CAST(COALESCE(SUM(fixes_accepted), 0) AS bigint) FROM uploads \
     WHERE reward_epoch = $1 AND rewardable AND contributor IS NOT NULL \
     GROUP BY contributor";

/// Fixes rejected as spoofed per paid contributor in epoch `$1`.
fn epoch_spoofed() -> String {
    format!(
        "SELECT u.contributor, COUNT(*) FROM rejected_observations ro \
         JOIN uploads u ON u.id = ro.upload_id \
         WHERE u.reward_epoch = $1 AND u.rewardable AND u.contributor IS NOT NULL \
           AND ro.stage = 'fix' AND ro.reason IN ({}) \
         GROUP BY u.contributor",
        spoof_reasons()
    )
}

/// Frames rejected as duplicates of another contributor's per paid contributor in epoch `$1`.
const EPOCH_DUPLICATED: &str = "SELECT u.contributor, COUNT(*) FROM frame_rejections fr \
     JOIN uploads u ON u.id = fr.upload_id \
     LEFT JOIN uploads o ON o.id = fr.duplicate_of_upload \
     WHERE u.reward_epoch = $1 AND u.rewardable AND u.contributor IS NOT NULL \
       AND fr.reason = 'duplicate' AND o.contributor IS DISTINCT FROM u.contributor \
     GROUP BY u.contributor";

/// The cumulative totals of the last epoch closed before `$1`.
const PREVIOUS_TOTALS: &str = "SELECT contributor, cumulative FROM epoch_rewards WHERE epoch = \
        (SELECT MAX(epoch) FROM epochs WHERE status = 'closed' AND epoch < $1)";

/// The processed uploads counted in epoch `$1`.
const EPOCH_UPLOADS: &str = "SELECT id, CASE WHEN rewardable THEN contributor END, device, \
        kind, COALESCE(evidence, '{}') \
     FROM uploads WHERE reward_epoch = $1 AND status = 'processed'";

/// Contributors' refused uploads from `$2` to `$3`, and their rejected ones counted in epoch `$1`.
const EPOCH_REFUSALS: &str = "SELECT contributor, device, reason, received_at \
     FROM upload_refusals \
     WHERE contributor IS NOT NULL AND received_at >= $2 AND received_at < $3 \
     UNION ALL \
     SELECT contributor, device, COALESCE(reason, 'rejected'), received_at FROM uploads \
     WHERE reward_epoch = $1 AND status = 'rejected' AND rewardable \
       AND contributor IS NOT NULL";

// The newest site before epoch `$1` of each emitter sighted in it: PostgreSQL picks it with
// DISTINCT ON, which SQLite lacks, SQLite with a correlated MAX.
const PG_EPOCH_EMITTERS: &str = "SELECT DISTINCT ON (s.emitter) s.emitter, s.lat, s.lon, \
        s.frequency_mhz, s.samples, s.observers, s.radius_m \
     FROM emitter_sites s \
     WHERE s.epoch < $1 AND s.emitter IN ( \
         SELECT r.emitter FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
         WHERE u.reward_epoch = $1) \
     ORDER BY s.emitter, s.epoch DESC";
const SQLITE_EPOCH_EMITTERS: &str = "SELECT s.emitter, s.lat, s.lon, s.frequency_mhz, \
        s.samples, s.observers, s.radius_m \
     FROM emitter_sites s \
     WHERE s.epoch = (SELECT MAX(epoch) FROM emitter_sites t \
                      WHERE t.emitter = s.emitter AND t.epoch < $1) \
       AND s.emitter IN ( \
         SELECT r.emitter FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
         WHERE u.reward_epoch = $1)";

/// Requests per usage area in the epoch before `$1`.
const PREVIOUS_USAGE: &str = "SELECT area, requests FROM usage_counts WHERE epoch = $1 - 1";

// Whether claim token `$2` still holds epoch `$1`: PostgreSQL locks the epoch's row FOR UPDATE;
// SQLite's one writer holds it already.
const PG_HELD_EPOCH: &str = "SELECT epoch FROM epochs WHERE epoch = $1 AND status = 'closing' \
         AND claim_token = $2 FOR UPDATE";
const SQLITE_HELD_EPOCH: &str =
    "SELECT epoch FROM epochs WHERE epoch = $1 AND status = 'closing' AND claim_token = $2";

// An epoch's rewards: PostgreSQL writes them all in one UNNEST of arrays, SQLite one row at a
// time.
const PG_INSERT_EPOCH_REWARDS: &str = "INSERT INTO epoch_rewards (epoch, contributor, points, \
         base, bounty, amount, cumulative, flagged) \
     SELECT $1, c, p, b, y, a, t, f FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], \
         $5::bigint[], $6::bigint[], $7::text[], $8::bool[]) AS x(c, p, b, y, a, t, f)";
const SQLITE_INSERT_EPOCH_REWARDS: &str = "INSERT INTO epoch_rewards (epoch, contributor, points, \
         base, bounty, amount, cumulative, flagged) ";

// An epoch's cell rewards: PostgreSQL writes them all in one UNNEST of arrays, SQLite many rows
// a statement ([`insert_many`]).
const PG_INSERT_EPOCH_CELLS: &str = "INSERT INTO epoch_cells (epoch, cell, captures, \
         radio_units, points, amount, weight, last_seen) \
     SELECT $1, c, n, r, p, a, w, l FROM UNNEST($2::bigint[], $3::bigint[], $4::bigint[], \
         $5::bigint[], $6::bigint[], $7::float8[], $8::timestamptz[]) \
         AS x(c, n, r, p, a, w, l)";
const SQLITE_INSERT_EPOCH_CELLS: &str = "INSERT INTO epoch_cells (epoch, cell, captures, \
         radio_units, points, amount, weight, last_seen) ";

/// Penalises contributor `$2` in epoch `$1` for reason `$3`, with detail `$4`.
const INSERT_EPOCH_PENALTY: &str = "INSERT INTO epoch_penalties (epoch, contributor, reason, \
         detail) VALUES ($1, $2, $3, $4)";

/// Area `$1`'s bounty for cell `$2`, claimed in epoch `$3` by `$4`: `$5` claimed, `$6` paid.
const INSERT_BOUNTY_CLAIM: &str = "INSERT INTO bounty_claims (area_id, cell, epoch, \
         contributor, claimed, paid) VALUES ($1, $2, $3, $4, $5, $6)";

/// Refunds `$2` of area `$1`'s bounty in epoch `$3`.
const REFUND_DEMAND_AREA: &str =
    "UPDATE demand_areas SET refunded = $2, refunded_epoch = $3 WHERE id = $1";

// Uploads' verdicts: PostgreSQL updates them all from one UNNEST of arrays, SQLite one row at a
// time.
const PG_WRITE_VERDICTS: &str = "UPDATE uploads u SET trust = v.t, trust_findings = v.f, \
         trust_epoch = $1, \
         trust_changed_at = CASE WHEN u.trust <> v.t OR v.c IS NOT NULL THEN $5 \
             ELSE u.trust_changed_at END, \
         cells = CASE WHEN v.t = 'flagged' THEN 0 \
             ELSE COALESCE(v.c, u.cells_seen, u.cells) END \
     FROM UNNEST($2::bigint[], $3::text[], $4::text[], $6::bigint[]) AS v(id, t, f, c) \
     WHERE u.id = v.id";
// SQLite: many uploads a statement, from a list of (id, verdict, findings, credited cells) rows
// (`column1` … `column4`), as SET, epoch, the middle, time, FROM, the rows, and the end.
const SQLITE_WRITE_VERDICTS_SET: &str = "UPDATE uploads SET trust = v.column2, \
         trust_findings = v.column3, trust_epoch = ";
const SQLITE_WRITE_VERDICTS_FROM: &str = " ELSE trust_changed_at END, \
         cells = CASE WHEN v.column2 = 'flagged' THEN 0 \
             ELSE COALESCE(v.column4, cells_seen, cells) END \
     FROM (";

// Sightings that do not count: PostgreSQL marks them all from one UNNEST of arrays, SQLite many
// a statement, the (upload, seq) pairs following (its booleans are 0 and 1).
const PG_UNCOUNT_RADIO: &str = "UPDATE radio_observations r SET counted = FALSE \
     FROM UNNEST($1::bigint[], $2::int[]) AS x(u, s) \
     WHERE r.upload_id = x.u AND r.seq = x.s";
const SQLITE_UNCOUNT_RADIO: &str =
    "UPDATE radio_observations SET counted = 0 WHERE (upload_id, seq) IN (";

// Emitters' sites: PostgreSQL writes them all in one UNNEST of arrays, SQLite many rows a
// statement.
const PG_INSERT_EMITTER_SITES: &str = "INSERT INTO emitter_sites (emitter, epoch, lat, lon, \
         frequency_mhz, samples, observers, radius_m) \
     SELECT em, $1, la, lo, f, n, o, r FROM UNNEST($2::text[], $3::float8[], \
         $4::float8[], $5::float8[], $6::bigint[], $7::text[], $8::float8[]) \
         AS x(em, la, lo, f, n, o, r)";
const SQLITE_INSERT_EMITTER_SITES: &str = "INSERT INTO emitter_sites (emitter, epoch, lat, lon, \
         frequency_mhz, samples, observers, radius_m) ";

/// Rows a statement for SQLite's many-row writes: at most 8 columns, so 8,000 parameters, under
/// the bundled SQLite's limit of 32,766.
const ROWS_PER_STATEMENT: usize = 1_000;

/// Writes `rows` to SQLite [`ROWS_PER_STATEMENT`] a statement: `head` is `INSERT INTO t (…) `,
/// `bind` binds one row's values. sqlx hands each statement to SQLite's thread and back, which
/// costs tens of microseconds: a row a statement is seconds for an epoch's 100,000 cells.
async fn insert_many<T>(
    tx: &mut crate::sqlite::WriteTx,
    head: &str,
    rows: &[T],
    what: &'static str,
    mut bind: impl FnMut(
        &mut sqlx::query_builder::Separated<'_, 'static, sqlx::Sqlite, &'static str>,
        &T,
    ),
) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<'static, sqlx::Sqlite>::new(head);
        q.push_values(chunk, |mut b, r| bind(&mut b, r));
        q.build().execute(&mut **tx).await.ctx(what)?;
    }
    Ok(())
}

/// Closes epoch `$1` at `$2` under policy `$3`, with its manifest's figures and the manifest.
const CLOSE_EPOCH: &str = "UPDATE epochs SET status = 'closed', closed_at = $2, policy = $3, \
         policy_hash = $4, root = $5, emission = $6, distributed = $7, unallocated = $8, \
         bounty_paid = $9, manifest = $10, claim_token = NULL, claimed_until = NULL \
     WHERE epoch = $1";

/// Every epoch, by number.
fn all_epochs() -> String {
    format!("SELECT {EPOCH_COLUMNS} FROM epochs ORDER BY epoch")
}

/// Epoch `$1` if it is closed, with its manifest (as text) and policy.
fn closed_epoch() -> String {
    format!(
        "SELECT {EPOCH_COLUMNS}, CAST(manifest AS text) AS manifest, policy FROM epochs \
         WHERE epoch = $1 AND status = 'closed'"
    )
}

/// The newest closed epoch's number.
const LAST_CLOSED_EPOCH: &str = "SELECT MAX(epoch) FROM epochs WHERE status = 'closed'";

/// Epoch `$1`'s rewards, by contributor.
const EPOCH_REWARDS: &str = "SELECT contributor, points, base, bounty, amount, cumulative, \
        flagged \
     FROM epoch_rewards WHERE epoch = $1 ORDER BY contributor";

/// What each cell earned in epoch `$1`, by cell.
const EPOCH_CELLS: &str = "SELECT cell, captures, radio_units, points, amount, weight, \
        last_seen \
     FROM epoch_cells WHERE epoch = $1 ORDER BY cell";

/// Epoch `$1`'s penalties, by contributor.
const EPOCH_PENALTIES: &str = "SELECT contributor, reason, detail FROM epoch_penalties \
     WHERE epoch = $1 ORDER BY contributor";

/// Contributor `$1`'s rewards, oldest first.
const CONTRIBUTOR_REWARDS: &str = "SELECT epoch, contributor, points, base, bounty, amount, \
        cumulative, flagged \
     FROM epoch_rewards WHERE contributor = $1 ORDER BY epoch";

/// What a row of [`EPOCH_CLAIM`] says about claiming the epoch at `now`: closed, or held by
/// another closer; `None` if it may be claimed.
fn standing_claim(r: &impl Columns, now: DateTime<Utc>) -> Result<Option<EpochClaim>> {
    let status: String = r.col("status")?;
    let by: Option<String> = r.col("claimed_by")?;
    let until = r.opt_time("claimed_until")?;
    Ok(match (by, until) {
        _ if status == "closed" => Some(EpochClaim::Closed),
        (Some(by), Some(until)) if until > now => Some(EpochClaim::Busy { by, until }),
        _ => None,
    })
}

/// A row of [`closed_epoch`].
fn closed_epoch_row(r: &impl Columns, epoch: u64) -> Result<ClosedEpoch> {
    let manifest: Manifest = serde_json::from_str(&r.col::<String>("manifest")?)
        .map_err(|e| StoreError::Corrupt(format!("epoch {epoch}'s manifest: {e}")))?;
    Ok(ClosedEpoch {
        record: epoch_record(r)?,
        manifest,
        policy: r.col::<Option<String>>("policy")?.unwrap_or_default(),
    })
}

/// A row of [`EPOCH_CELLS`].
fn cell_reward(r: &impl Columns) -> Result<CellReward> {
    cell_row((
        r.col("cell")?,
        r.col("captures")?,
        r.col("radio_units")?,
        r.col("points")?,
        r.col("amount")?,
        r.col("weight")?,
        r.opt_time("last_seen")?,
    ))
}

/// A row of [`EPOCH_PENALTIES`].
fn penalty(r: &impl Columns) -> Result<Penalty> {
    Ok(Penalty {
        contributor: r.col("contributor")?,
        reason: r.col("reason")?,
        detail: r.col("detail")?,
    })
}

/// An epoch's row, read from [`EPOCH_COLUMNS`].
pub(crate) fn epoch_record(r: &impl Columns) -> Result<EpochRecord> {
    let opt = |name: &'static str| -> Result<Option<u64>> {
        r.col::<Option<i64>>(name)?
            .map(|v| to_u64(v, name))
            .transpose()
    };
    Ok(EpochRecord {
        epoch: to_u64(r.col("epoch")?, "epoch")?,
        start: r.time("start_at")?,
        end: r.time("end_at")?,
        status: r.col("status")?,
        closed_at: r.opt_time("closed_at")?,
        root: r.col("root")?,
        policy_hash: r.col("policy_hash")?,
        emission: opt("emission")?,
        distributed: opt("distributed")?,
        unallocated: opt("unallocated")?,
        bounty_paid: opt("bounty_paid")?,
    })
}

#[async_trait]
impl Epochs for PgStore {
    async fn claim_epoch(
        &self,
        period: &EpochPeriod,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<EpochClaim> {
        let n = to_i64(period.epoch, "epoch")?;
        let mut tx = self.pool().begin().await.ctx("starting a transaction")?;
        // One claimer at a time: the order check below must not race another claim.
        sqlx::query("LOCK TABLE epochs IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .ctx("locking the epochs")?;
        let row = sqlx::query(EPOCH_CLAIM)
            .bind(n)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading an epoch")?;
        if let Some(claim) = row.map(|r| standing_claim(&r, now)).transpose()?.flatten() {
            return Ok(claim);
        }
        let (last, busy): (Option<i64>, Option<i64>) = sqlx::query_as(CLOSE_ORDER)
            .bind(n)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .ctx("reading the epochs")?;
        check_order(period.epoch, last, busy)?;
        let token = uuid::Uuid::new_v4().to_string();
        let until = now + lease_for;
        sqlx::query(CLAIM_EPOCH)
            .bind(n)
            .bind(period.start)
            .bind(period.end)
            .bind(worker)
            .bind(&token)
            .bind(until)
            .execute(&mut *tx)
            .await
            .ctx("claiming an epoch")?;
        let tagged = sqlx::query(COUNT_UPLOADS_IN_EPOCH)
            .bind(n)
            .bind(period.end)
            .execute(&mut *tx)
            .await
            .ctx("counting uploads in an epoch")?
            .rows_affected();
        // Frames approved before the epoch's end and not counted yet count in it, whatever
        // epoch their upload counted in (see migration 0007).
        sqlx::query(COUNT_APPROVED_FRAMES_IN_EPOCH)
            .bind(n)
            .bind(period.end)
            .execute(&mut *tx)
            .await
            .ctx("counting approved frames in an epoch")?;
        // So do frames published late, before the epoch's end (see migration 0011).
        sqlx::query(COUNT_LATE_FRAMES_IN_EPOCH)
            .bind(n)
            .bind(period.end)
            .execute(&mut *tx)
            .await
            .ctx("counting frames published late in an epoch")?;
        tx.commit().await.ctx("committing an epoch claim")?;
        Ok(EpochClaim::Held {
            token,
            until,
            tagged,
        })
    }

    async fn abandon_epoch(&self, epoch: u64, token: &str) -> Result<()> {
        sqlx::query(ABANDON_EPOCH)
            .bind(to_i64(epoch, "epoch")?)
            .bind(token)
            .execute(self.pool())
            .await
            .ctx("giving an epoch back")?;
        Ok(())
    }

    async fn epoch_inputs(
        &self,
        period: &EpochPeriod,
        coverage_since: DateTime<Utc>,
    ) -> Result<EpochInputs> {
        use futures::TryStreamExt;
        let n = to_i64(period.epoch, "epoch")?;
        let pool = self.pool();
        // The two long lists (millions of rows at scale) stream from the server into the
        // close's own types, a row at a time: their rows are never all held twice.
        let mut captures = Vec::new();
        let mut rows = sqlx::query_as::<_, CaptureRow>(EPOCH_CAPTURES)
            .bind(n)
            .fetch(pool);
        while let Some(row) = rows.try_next().await.ctx("reading an epoch's frames")? {
            captures.push(capture(row)?);
        }
        drop(rows);
        let mut radio = Vec::new();
        let mut rows = sqlx::query_as::<_, RadioSampleRow>(PG_EPOCH_RADIO)
            .bind(n)
            .fetch(pool);
        while let Some(row) = rows
            .try_next()
            .await
            .ctx("reading an epoch's radio samples")?
        {
            radio.push(radio_sample(row)?);
        }
        drop(rows);
        let mut raw = RawInputs::default();
        let last_seen: Vec<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(EPOCH_LAST_SEEN)
            .bind(n)
            .fetch_all(pool)
            .await
            .ctx("reading cells' last captures")?;
        raw.last_seen = last_seen
            .into_iter()
            .filter_map(|(c, t)| Some((c, t?)))
            .collect();
        raw.roads = sqlx::query_as(EPOCH_ROADS)
            .bind(n)
            .bind(coverage_since)
            .bind(period.end)
            .fetch_all(pool)
            .await
            .ctx("reading cells' roads")?;
        raw.areas = sqlx::query_as(EPOCH_AREAS)
            .bind(n)
            .bind(period.end)
            .bind(period.start)
            .fetch_all(pool)
            .await
            .ctx("reading demand areas")?;
        raw.area_cells = sqlx::query_as(EPOCH_AREA_CELLS)
            .bind(n)
            .bind(period.end)
            .bind(period.start)
            .fetch_all(pool)
            .await
            .ctx("reading demand cells")?;
        raw.claims = sqlx::query_as(EARLIER_BOUNTY_CLAIMS)
            .bind(n)
            .fetch_all(pool)
            .await
            .ctx("reading bounty claims")?;
        raw.fixes = sqlx::query_as(EPOCH_FIXES)
            .bind(n)
            .fetch_all(pool)
            .await
            .ctx("reading fix counts")?;
        raw.spoofed = sqlx::query_as(&epoch_spoofed())
            .bind(n)
            .fetch_all(pool)
            .await
            .ctx("reading spoofing evidence")?;
        raw.duplicated = sqlx::query_as(EPOCH_DUPLICATED)
            .bind(n)
            .fetch_all(pool)
            .await
            .ctx("reading duplicate evidence")?;
        raw.previous = sqlx::query_as(PREVIOUS_TOTALS)
            .bind(n)
            .fetch_all(pool)
            .await
            .ctx("reading cumulative totals")?;
        raw.uploads = sqlx::query_as(EPOCH_UPLOADS)
            .bind(n)
            .fetch_all(pool)
            .await
            .ctx("reading an epoch's uploads")?;
        raw.refusals = sqlx::query_as(EPOCH_REFUSALS)
            .bind(n)
            .bind(period.start)
            .bind(period.end)
            .fetch_all(pool)
            .await
            .ctx("reading an epoch's refusals")?;
        raw.emitters = sqlx::query_as(PG_EPOCH_EMITTERS)
            .bind(n)
            .fetch_all(pool)
            .await
            .ctx("reading emitters' sites")?;
        raw.usage = sqlx::query_as(PREVIOUS_USAGE)
            .bind(n)
            .fetch_all(pool)
            .await
            .ctx("reading usage")?;
        let mut inputs = raw.assemble(period)?;
        inputs.captures = captures;
        inputs.radio = radio;
        Ok(inputs)
    }

    async fn finish_epoch(
        &self,
        token: &str,
        outcome: &EpochOutcome,
        policy: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let m = &outcome.manifest;
        let n = to_i64(m.epoch, "epoch")?;
        let mut tx = self.pool().begin().await.ctx("starting a transaction")?;
        let held: Option<(i64,)> = sqlx::query_as(PG_HELD_EPOCH)
            .bind(n)
            .bind(token)
            .fetch_optional(&mut *tx)
            .await
            .ctx("checking an epoch claim")?;
        if held.is_none() {
            return Err(StoreError::Conflict(format!(
                "epoch {} is no longer held by this closer",
                m.epoch
            )));
        }
        let r = &outcome.rewards;
        let amounts = |f: fn(&ContributorReward) -> u64| -> Result<Vec<i64>> {
            r.iter().map(|x| to_i64(f(x), "amount")).collect()
        };
        sqlx::query(PG_INSERT_EPOCH_REWARDS)
            .bind(n)
            .bind(r.iter().map(|x| x.contributor.as_str()).collect::<Vec<_>>())
            .bind(amounts(|x| x.points)?)
            .bind(amounts(|x| x.base)?)
            .bind(amounts(|x| x.bounty)?)
            .bind(amounts(|x| x.amount)?)
            .bind(
                r.iter()
                    .map(|x| x.cumulative.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(r.iter().map(|x| x.flagged).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .ctx("writing rewards")?;
        let c = &outcome.cells;
        let cell_amounts = |f: fn(&CellReward) -> u64| -> Result<Vec<i64>> {
            c.iter().map(|x| to_i64(f(x), "amount")).collect()
        };
        sqlx::query(PG_INSERT_EPOCH_CELLS)
            .bind(n)
            .bind(c.iter().map(|x| x.cell.as_i64()).collect::<Vec<_>>())
            .bind(cell_amounts(|x| x.captures)?)
            .bind(cell_amounts(|x| x.radio_units)?)
            .bind(cell_amounts(|x| x.points)?)
            .bind(cell_amounts(|x| x.amount)?)
            .bind(c.iter().map(|x| x.weight_at_start).collect::<Vec<_>>())
            .bind(c.iter().map(|x| x.last_seen).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .ctx("writing cell rewards")?;
        for p in &outcome.penalties {
            sqlx::query(INSERT_EPOCH_PENALTY)
                .bind(n)
                .bind(&p.contributor)
                .bind(&p.reason)
                .bind(&p.detail)
                .execute(&mut *tx)
                .await
                .ctx("writing penalties")?;
        }
        for b in &outcome.claims {
            sqlx::query(INSERT_BOUNTY_CLAIM)
                .bind(b.area)
                .bind(b.cell.as_i64())
                .bind(n)
                .bind(&b.contributor)
                .bind(to_i64(b.claimed, "claim")?)
                .bind(to_i64(b.paid, "claim")?)
                .execute(&mut *tx)
                .await
                .ctx("writing bounty claims")?;
        }
        for f in &outcome.refunds {
            sqlx::query(REFUND_DEMAND_AREA)
                .bind(f.area)
                .bind(to_i64(f.amount, "refund")?)
                .bind(n)
                .execute(&mut *tx)
                .await
                .ctx("writing bounty refunds")?;
        }
        let verdicts = crate::reward_rows::verdict_rows(&outcome.verdicts)?;
        sqlx::query(PG_WRITE_VERDICTS)
            .bind(n)
            .bind(verdicts.iter().map(|v| v.0).collect::<Vec<_>>())
            .bind(verdicts.iter().map(|v| v.1).collect::<Vec<_>>())
            .bind(verdicts.iter().map(|v| v.2.as_str()).collect::<Vec<_>>())
            .bind(now)
            .bind(verdicts.iter().map(|v| v.3).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .ctx("writing uploads' verdicts")?;
        let u = &outcome.uncounted_radio;
        sqlx::query(PG_UNCOUNT_RADIO)
            .bind(u.iter().map(|x| x.0).collect::<Vec<_>>())
            .bind(u.iter().map(|x| x.1).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .ctx("marking sightings that do not count")?;
        let e = &outcome.emitters;
        sqlx::query(PG_INSERT_EMITTER_SITES)
            .bind(n)
            .bind(e.iter().map(|x| x.emitter.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|x| x.lat).collect::<Vec<_>>())
            .bind(e.iter().map(|x| x.lon).collect::<Vec<_>>())
            .bind(e.iter().map(|x| x.frequency_mhz).collect::<Vec<_>>())
            .bind(
                e.iter()
                    .map(|x| to_i64(x.samples, "samples"))
                    .collect::<Result<Vec<_>>>()?,
            )
            .bind(e.iter().map(|x| x.observers.join(",")).collect::<Vec<_>>())
            .bind(e.iter().map(|x| x.radius_m).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .ctx("writing emitters' sites")?;
        let manifest =
            serde_json::to_value(m).map_err(|e| StoreError::Corrupt(format!("manifest: {e}")))?;
        sqlx::query(CLOSE_EPOCH)
            .bind(n)
            .bind(now)
            .bind(policy)
            .bind(&m.policy_hash)
            .bind(&m.root)
            .bind(to_i64(m.emission, "emission")?)
            .bind(to_i64(m.distributed, "amount")?)
            .bind(to_i64(m.unallocated, "amount")?)
            .bind(to_i64(m.bounty_paid, "amount")?)
            .bind(manifest)
            .execute(&mut *tx)
            .await
            .ctx("writing an epoch's manifest")?;
        tx.commit().await.ctx("committing an epoch")?;
        Ok(())
    }

    async fn epochs(&self) -> Result<Vec<EpochRecord>> {
        let rows = sqlx::query(&all_epochs())
            .fetch_all(self.pool())
            .await
            .ctx("listing epochs")?;
        rows.iter().map(epoch_record).collect()
    }

    async fn closed_epoch(&self, epoch: u64) -> Result<Option<ClosedEpoch>> {
        let row = sqlx::query(&closed_epoch())
            .bind(to_i64(epoch, "epoch")?)
            .fetch_optional(self.pool())
            .await
            .ctx("reading an epoch")?;
        row.map(|r| closed_epoch_row(&r, epoch)).transpose()
    }

    async fn last_closed_epoch(&self) -> Result<Option<u64>> {
        let (n,): (Option<i64>,) = sqlx::query_as(LAST_CLOSED_EPOCH)
            .fetch_one(self.pool())
            .await
            .ctx("reading the last epoch")?;
        n.map(|n| to_u64(n, "epoch")).transpose()
    }

    async fn epoch_rewards(&self, epoch: u64) -> Result<Vec<ContributorReward>> {
        let rows = sqlx::query(EPOCH_REWARDS)
            .bind(to_i64(epoch, "epoch")?)
            .fetch_all(self.pool())
            .await
            .ctx("reading rewards")?;
        rows.iter().map(reward_row).collect()
    }

    async fn epoch_cells(&self, epoch: u64) -> Result<Vec<CellReward>> {
        let rows = sqlx::query(EPOCH_CELLS)
            .bind(to_i64(epoch, "epoch")?)
            .fetch_all(self.pool())
            .await
            .ctx("reading cell rewards")?;
        rows.iter().map(cell_reward).collect()
    }

    async fn epoch_penalties(&self, epoch: u64) -> Result<Vec<Penalty>> {
        let rows = sqlx::query(EPOCH_PENALTIES)
            .bind(to_i64(epoch, "epoch")?)
            .fetch_all(self.pool())
            .await
            .ctx("reading penalties")?;
        rows.iter().map(penalty).collect()
    }

    async fn contributor_rewards(
        &self,
        contributor: &str,
    ) -> Result<Vec<(u64, ContributorReward)>> {
        let rows = sqlx::query(CONTRIBUTOR_REWARDS)
            .bind(contributor)
            .fetch_all(self.pool())
            .await
            .ctx("reading a contributor's rewards")?;
        rows.iter()
            .map(|r| Ok((to_u64(r.col("epoch")?, "epoch")?, reward_row(r)?)))
            .collect()
    }
}

#[async_trait]
impl Epochs for SqliteStore {
    async fn claim_epoch(
        &self,
        period: &EpochPeriod,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<EpochClaim> {
        let n = to_i64(period.epoch, "epoch")?;
        // BEGIN IMMEDIATE: one claimer at a time, across processes too.
        let mut tx = self.write().await?;
        let row = sqlx::query(EPOCH_CLAIM)
            .bind(n)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading an epoch")?;
        if let Some(claim) = row.map(|r| standing_claim(&r, now)).transpose()?.flatten() {
            return Ok(claim);
        }
        let (last, busy): (Option<i64>, Option<i64>) = sqlx::query_as(CLOSE_ORDER)
            .bind(n)
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await
            .ctx("reading the epochs")?;
        check_order(period.epoch, last, busy)?;
        let token = uuid::Uuid::new_v4().to_string();
        let until = now + lease_for;
        sqlx::query(CLAIM_EPOCH)
            .bind(n)
            .bind(micros(period.start))
            .bind(micros(period.end))
            .bind(worker)
            .bind(&token)
            .bind(micros(until))
            .execute(&mut *tx)
            .await
            .ctx("claiming an epoch")?;
        let tagged = sqlx::query(COUNT_UPLOADS_IN_EPOCH)
            .bind(n)
            .bind(micros(period.end))
            .execute(&mut *tx)
            .await
            .ctx("counting uploads in an epoch")?
            .rows_affected();
        // Frames approved before the epoch's end and not counted yet count in it, whatever
        // epoch their upload counted in (see migration 0007).
        sqlx::query(COUNT_APPROVED_FRAMES_IN_EPOCH)
            .bind(n)
            .bind(micros(period.end))
            .execute(&mut *tx)
            .await
            .ctx("counting approved frames in an epoch")?;
        // So do frames published late, before the epoch's end (see migration 0011).
        sqlx::query(COUNT_LATE_FRAMES_IN_EPOCH)
            .bind(n)
            .bind(micros(period.end))
            .execute(&mut *tx)
            .await
            .ctx("counting frames published late in an epoch")?;
        tx.commit().await.ctx("committing an epoch claim")?;
        Ok(EpochClaim::Held {
            token,
            until,
            tagged,
        })
    }

    async fn abandon_epoch(&self, epoch: u64, token: &str) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(ABANDON_EPOCH)
            .bind(to_i64(epoch, "epoch")?)
            .bind(token)
            .execute(&mut *tx)
            .await
            .ctx("giving an epoch back")?;
        tx.commit().await.ctx("giving an epoch back")?;
        Ok(())
    }

    async fn epoch_inputs(
        &self,
        period: &EpochPeriod,
        coverage_since: DateTime<Utc>,
    ) -> Result<EpochInputs> {
        let n = to_i64(period.epoch, "epoch")?;
        // One read transaction: every list sees the same snapshot.
        let mut tx = self.pool.begin().await.ctx("starting a read")?;
        // An upload's frames come packed in one row: sqlx hands SQLite's rows over one by one,
        // and 800,000 frames a row each take seconds.
        let uploads: Vec<(Option<String>, i64, String)> = sqlx::query_as(&format!(
            "{SQLITE_PACKED_CAPTURES_HEAD}{EPOCH_CAPTURES}{SQLITE_PACKED_CAPTURES_TAIL}"
        ))
        .bind(n)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading an epoch's frames")?;
        let mut captures = Vec::new();
        for (contributor, upload, packed) in uploads {
            for frame in packed.split(';') {
                let (f, cell, t) = unpack_capture(frame)?;
                captures.push((contributor.clone(), upload, f, cell, time(t)?));
            }
        }
        let mut raw = RawInputs {
            captures,
            ..RawInputs::default()
        };
        let last_seen: Vec<(i64, Option<i64>)> = sqlx::query_as(EPOCH_LAST_SEEN)
            .bind(n)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading cells' last captures")?;
        raw.last_seen = last_seen
            .into_iter()
            .filter_map(|(c, t)| t.map(|t| Ok((c, time(t)?))))
            .collect::<Result<_>>()?;
        raw.roads = sqlx::query_as(EPOCH_ROADS)
            .bind(n)
            .bind(micros(coverage_since))
            .bind(micros(period.end))
            .fetch_all(&mut *tx)
            .await
            .ctx("reading cells' roads")?;
        type Radio = (
            Option<String>,
            i64,
            i32,
            i64,
            String,
            String,
            Option<i32>,
            i64,
            f64,
            f64,
        );
        let radio: Vec<Radio> = sqlx::query_as(SQLITE_EPOCH_RADIO)
            .bind(n)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading an epoch's radio samples")?;
        raw.radio = radio
            .into_iter()
            .map(|(c, u, q, cell, tech, e, sig, t, lat, lon)| {
                Ok((c, u, q, cell, tech, e, sig, time(t)?, lat, lon))
            })
            .collect::<Result<_>>()?;
        type Area = (i64, String, f64, i64, Option<i64>, Option<i64>, bool);
        let areas: Vec<Area> = sqlx::query_as(EPOCH_AREAS)
            .bind(n)
            .bind(micros(period.end))
            .bind(micros(period.start))
            .fetch_all(&mut *tx)
            .await
            .ctx("reading demand areas")?;
        raw.areas = areas
            .into_iter()
            .map(|(id, name, w, created, expires, budget, refunded)| {
                Ok((
                    id,
                    name,
                    w,
                    time(created)?,
                    expires.map(time).transpose()?,
                    budget,
                    refunded,
                ))
            })
            .collect::<Result<_>>()?;
        raw.area_cells = sqlx::query_as(EPOCH_AREA_CELLS)
            .bind(n)
            .bind(micros(period.end))
            .bind(micros(period.start))
            .fetch_all(&mut *tx)
            .await
            .ctx("reading demand cells")?;
        raw.claims = sqlx::query_as(EARLIER_BOUNTY_CLAIMS)
            .bind(n)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading bounty claims")?;
        raw.fixes = sqlx::query_as(EPOCH_FIXES)
            .bind(n)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading fix counts")?;
        raw.spoofed = sqlx::query_as(&epoch_spoofed())
            .bind(n)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading spoofing evidence")?;
        raw.duplicated = sqlx::query_as(EPOCH_DUPLICATED)
            .bind(n)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading duplicate evidence")?;
        raw.previous = sqlx::query_as(PREVIOUS_TOTALS)
            .bind(n)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading cumulative totals")?;
        raw.uploads = sqlx::query_as(EPOCH_UPLOADS)
            .bind(n)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading an epoch's uploads")?;
        let refusals: Vec<(String, String, String, i64)> = sqlx::query_as(EPOCH_REFUSALS)
            .bind(n)
            .bind(micros(period.start))
            .bind(micros(period.end))
            .fetch_all(&mut *tx)
            .await
            .ctx("reading an epoch's refusals")?;
        raw.refusals = refusals
            .into_iter()
            .map(|(c, d, r, at)| Ok((c, d, r, time(at)?)))
            .collect::<Result<_>>()?;
        raw.emitters = sqlx::query_as(SQLITE_EPOCH_EMITTERS)
            .bind(n)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading emitters' sites")?;
        raw.usage = sqlx::query_as(PREVIOUS_USAGE)
            .bind(n)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading usage")?;
        tx.commit().await.ctx("ending a read")?;
        raw.assemble(period)
    }

    async fn finish_epoch(
        &self,
        token: &str,
        outcome: &EpochOutcome,
        policy: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let m = &outcome.manifest;
        let n = to_i64(m.epoch, "epoch")?;
        let mut tx = self.write().await?;
        let held: Option<(i64,)> = sqlx::query_as(SQLITE_HELD_EPOCH)
            .bind(n)
            .bind(token)
            .fetch_optional(&mut *tx)
            .await
            .ctx("checking an epoch claim")?;
        if held.is_none() {
            return Err(StoreError::Conflict(format!(
                "epoch {} is no longer held by this closer",
                m.epoch
            )));
        }
        let rewards = outcome
            .rewards
            .iter()
            .map(|r| {
                Ok((
                    r.contributor.clone(),
                    [
                        to_i64(r.points, "points")?,
                        to_i64(r.base, "amount")?,
                        to_i64(r.bounty, "amount")?,
                        to_i64(r.amount, "amount")?,
                    ],
                    r.cumulative.to_string(),
                    r.flagged,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        insert_many(
            &mut tx,
            SQLITE_INSERT_EPOCH_REWARDS,
            &rewards,
            "writing rewards",
            |b, r| {
                b.push_bind(n).push_bind(r.0.clone());
                for v in r.1 {
                    b.push_bind(v);
                }
                b.push_bind(r.2.clone()).push_bind(r.3);
            },
        )
        .await?;
        let cells = outcome
            .cells
            .iter()
            .map(|c| {
                Ok((
                    [
                        c.cell.as_i64(),
                        to_i64(c.captures, "count")?,
                        to_i64(c.radio_units, "count")?,
                        to_i64(c.points, "points")?,
                        to_i64(c.amount, "amount")?,
                    ],
                    c.weight_at_start,
                    c.last_seen.map(micros),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        insert_many(
            &mut tx,
            SQLITE_INSERT_EPOCH_CELLS,
            &cells,
            "writing cell rewards",
            |b, c| {
                b.push_bind(n);
                for v in c.0 {
                    b.push_bind(v);
                }
                b.push_bind(c.1).push_bind(c.2);
            },
        )
        .await?;
        for p in &outcome.penalties {
            sqlx::query(INSERT_EPOCH_PENALTY)
                .bind(n)
                .bind(&p.contributor)
                .bind(&p.reason)
                .bind(&p.detail)
                .execute(&mut *tx)
                .await
                .ctx("writing penalties")?;
        }
        for b in &outcome.claims {
            sqlx::query(INSERT_BOUNTY_CLAIM)
                .bind(b.area)
                .bind(b.cell.as_i64())
                .bind(n)
                .bind(&b.contributor)
                .bind(to_i64(b.claimed, "claim")?)
                .bind(to_i64(b.paid, "claim")?)
                .execute(&mut *tx)
                .await
                .ctx("writing bounty claims")?;
        }
        for f in &outcome.refunds {
            sqlx::query(REFUND_DEMAND_AREA)
                .bind(f.area)
                .bind(to_i64(f.amount, "refund")?)
                .bind(n)
                .execute(&mut *tx)
                .await
                .ctx("writing bounty refunds")?;
        }
        let verdicts = crate::reward_rows::verdict_rows(&outcome.verdicts)?;
        for chunk in verdicts.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(SQLITE_WRITE_VERDICTS_SET);
            q.push_bind(n).push(
                ", trust_changed_at = CASE WHEN uploads.trust <> v.column2 \
                OR v.column4 IS NOT NULL THEN ",
            );
            q.push_bind(micros(now)).push(SQLITE_WRITE_VERDICTS_FROM);
            q.push_values(chunk, |mut b, (id, verdict, findings, credited)| {
                b.push_bind(*id)
                    .push_bind(*verdict)
                    .push_bind(findings.clone())
                    .push_bind(*credited);
            });
            q.push(") AS v WHERE uploads.id = v.column1");
            q.build()
                .execute(&mut *tx)
                .await
                .ctx("writing uploads' verdicts")?;
        }
        for chunk in outcome.uncounted_radio.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(SQLITE_UNCOUNT_RADIO);
            q.push_values(chunk, |mut b, (upload, seq)| {
                b.push_bind(*upload).push_bind(*seq);
            });
            q.push(")");
            q.build()
                .execute(&mut *tx)
                .await
                .ctx("marking sightings that do not count")?;
        }
        let sites = outcome
            .emitters
            .iter()
            .map(|e| Ok((e, to_i64(e.samples, "samples")?)))
            .collect::<Result<Vec<_>>>()?;
        insert_many(
            &mut tx,
            SQLITE_INSERT_EMITTER_SITES,
            &sites,
            "writing emitters' sites",
            |b, (e, samples)| {
                b.push_bind(e.emitter.clone())
                    .push_bind(n)
                    .push_bind(e.lat)
                    .push_bind(e.lon)
                    .push_bind(e.frequency_mhz)
                    .push_bind(*samples)
                    .push_bind(e.observers.join(","))
                    .push_bind(e.radius_m);
            },
        )
        .await?;
        let manifest =
            serde_json::to_string(m).map_err(|e| StoreError::Corrupt(format!("manifest: {e}")))?;
        sqlx::query(CLOSE_EPOCH)
            .bind(n)
            .bind(micros(now))
            .bind(policy)
            .bind(&m.policy_hash)
            .bind(&m.root)
            .bind(to_i64(m.emission, "emission")?)
            .bind(to_i64(m.distributed, "amount")?)
            .bind(to_i64(m.unallocated, "amount")?)
            .bind(to_i64(m.bounty_paid, "amount")?)
            .bind(manifest)
            .execute(&mut *tx)
            .await
            .ctx("writing an epoch's manifest")?;
        tx.commit().await.ctx("committing an epoch")?;
        Ok(())
    }

    async fn epochs(&self) -> Result<Vec<EpochRecord>> {
        let rows = sqlx::query(&all_epochs())
            .fetch_all(&self.pool)
            .await
            .ctx("listing epochs")?;
        rows.iter().map(epoch_record).collect()
    }

    async fn closed_epoch(&self, epoch: u64) -> Result<Option<ClosedEpoch>> {
        let row = sqlx::query(&closed_epoch())
            .bind(to_i64(epoch, "epoch")?)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an epoch")?;
        row.map(|r| closed_epoch_row(&r, epoch)).transpose()
    }

    async fn last_closed_epoch(&self) -> Result<Option<u64>> {
        let (n,): (Option<i64>,) = sqlx::query_as(LAST_CLOSED_EPOCH)
            .fetch_one(&self.pool)
            .await
            .ctx("reading the last epoch")?;
        n.map(|n| to_u64(n, "epoch")).transpose()
    }

    async fn epoch_rewards(&self, epoch: u64) -> Result<Vec<ContributorReward>> {
        let rows = sqlx::query(EPOCH_REWARDS)
            .bind(to_i64(epoch, "epoch")?)
            .fetch_all(&self.pool)
            .await
            .ctx("reading rewards")?;
        rows.iter().map(reward_row).collect()
    }

    async fn epoch_cells(&self, epoch: u64) -> Result<Vec<CellReward>> {
        let rows = sqlx::query(EPOCH_CELLS)
            .bind(to_i64(epoch, "epoch")?)
            .fetch_all(&self.pool)
            .await
            .ctx("reading cell rewards")?;
        rows.iter().map(cell_reward).collect()
    }

    async fn epoch_penalties(&self, epoch: u64) -> Result<Vec<Penalty>> {
        let rows = sqlx::query(EPOCH_PENALTIES)
            .bind(to_i64(epoch, "epoch")?)
            .fetch_all(&self.pool)
            .await
            .ctx("reading penalties")?;
        rows.iter().map(penalty).collect()
    }

    async fn contributor_rewards(
        &self,
        contributor: &str,
    ) -> Result<Vec<(u64, ContributorReward)>> {
        let rows = sqlx::query(CONTRIBUTOR_REWARDS)
            .bind(contributor)
            .fetch_all(&self.pool)
            .await
            .ctx("reading a contributor's rewards")?;
        rows.iter()
            .map(|r| Ok((to_u64(r.col("epoch")?, "epoch")?, reward_row(r)?)))
            .collect()
    }
}
