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
    CellRewardRow, RawInputs, cell_row, check_order, reward_row, spoof_reasons, to_i64, to_u64,
};
use crate::rows::{EPOCH_COLUMNS, col};
use crate::{ClosedEpoch, EpochClaim, EpochRecord, PgStore, SqliteStore};

/// Reward epochs: claiming, inputs, results, manifests and the ledger.
#[async_trait]
pub trait Epochs: Send + Sync {
    /// Takes epoch `period.epoch` to close, under a lease, and counts in it every processed
    /// upload received before its end that no epoch counted yet. Epochs close in order: after
    /// the first, epoch N only once N − 1 is closed ([`StoreError::Conflict`] otherwise).
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
    /// [`StoreError::Conflict`], if the claim `token` no longer holds it.
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
        let row: Option<(String, Option<String>, Option<DateTime<Utc>>)> =
            sqlx::query_as("SELECT status, claimed_by, claimed_until FROM epochs WHERE epoch = $1")
                .bind(n)
                .fetch_optional(&mut *tx)
                .await
                .ctx("reading an epoch")?;
        match row {
            Some((status, _, _)) if status == "closed" => return Ok(EpochClaim::Closed),
            Some((_, Some(by), Some(until))) if until > now => {
                return Ok(EpochClaim::Busy { by, until });
            }
            _ => {}
        }
        let (last, busy): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT MAX(epoch) FROM epochs WHERE status = 'closed'), \
                    (SELECT MIN(epoch) FROM epochs WHERE status = 'closing' AND epoch <> $1 \
                        AND claimed_until > $2)",
        )
        .bind(n)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .ctx("reading the epochs")?;
        check_order(period.epoch, last, busy)?;
        let token = uuid::Uuid::new_v4().to_string();
        let until = now + lease_for;
        sqlx::query(
            "INSERT INTO epochs (epoch, start_at, end_at, status, claimed_by, claim_token, \
                 claimed_until) VALUES ($1, $2, $3, 'closing', $4, $5, $6) \
             ON CONFLICT (epoch) DO UPDATE SET claimed_by = $4, claim_token = $5, \
                 claimed_until = $6, start_at = $2, end_at = $3",
        )
        .bind(n)
        .bind(period.start)
        .bind(period.end)
        .bind(worker)
        .bind(&token)
        .bind(until)
        .execute(&mut *tx)
        .await
        .ctx("claiming an epoch")?;
        let tagged = sqlx::query(
            "UPDATE uploads SET reward_epoch = $1 \
             WHERE reward_epoch IS NULL AND status IN ('processed', 'rejected') \
               AND received_at < $2",
        )
        .bind(n)
        .bind(period.end)
        .execute(&mut *tx)
        .await
        .ctx("counting uploads in an epoch")?
        .rows_affected();
        // Frames approved before the epoch's end and not counted yet count in it, whatever
        // epoch their upload counted in (see migration 0007).
        sqlx::query(
            "UPDATE frame_rejections SET reward_epoch = $1 \
             WHERE reward_epoch IS NULL AND (upload_id, frame) IN ( \
                 SELECT f.upload_id, f.frame FROM frames f \
                 JOIN frame_decisions d ON d.id = f.decision_id \
                 WHERE f.decision_id IS NOT NULL AND d.decided_at < $2)",
        )
        .bind(n)
        .bind(period.end)
        .execute(&mut *tx)
        .await
        .ctx("counting approved frames in an epoch")?;
        tx.commit().await.ctx("committing an epoch claim")?;
        Ok(EpochClaim::Held {
            token,
            until,
            tagged,
        })
    }

    async fn abandon_epoch(&self, epoch: u64, token: &str) -> Result<()> {
        sqlx::query(
            "UPDATE epochs SET claimed_by = NULL, claim_token = NULL, claimed_until = NULL \
             WHERE epoch = $1 AND status = 'closing' AND claim_token = $2",
        )
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
        let n = to_i64(period.epoch, "epoch")?;
        let pool = self.pool();
        let mut raw = RawInputs {
            captures: sqlx::query_as(
                "SELECT CASE WHEN u.rewardable THEN u.contributor END, f.upload_id, f.frame, \
                        f.cell, f.captured_at \
                 FROM frames f JOIN uploads u ON u.id = f.upload_id \
                 WHERE u.reward_epoch = $1 AND f.status = 'published' \
                   AND f.decision_id IS NULL \
                 UNION ALL \
                 SELECT CASE WHEN u.rewardable THEN u.contributor END, r.upload_id, r.frame, \
                        r.cell, r.captured_at \
                 FROM frame_rejections r JOIN uploads u ON u.id = r.upload_id \
                 WHERE r.reward_epoch = $1",
            )
            .bind(n)
            .fetch_all(pool)
            .await
            .ctx("reading an epoch's frames")?,
            ..RawInputs::default()
        };
        let last_seen: Vec<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(
            "WITH touched AS MATERIALIZED ( \
                 SELECT f.cell FROM frames f JOIN uploads u ON u.id = f.upload_id \
                 WHERE u.reward_epoch = $1 AND f.status = 'published' \
                   AND f.decision_id IS NULL \
                 UNION SELECT cell FROM frame_rejections WHERE reward_epoch = $1) \
             SELECT t.cell, (SELECT c.last_seen FROM epoch_cells c \
                 WHERE c.cell = t.cell AND c.epoch < $1 AND c.last_seen IS NOT NULL \
                 ORDER BY c.epoch DESC LIMIT 1) \
             FROM touched t",
        )
        .bind(n)
        .fetch_all(pool)
        .await
        .ctx("reading cells' last captures")?;
        raw.last_seen = last_seen
            .into_iter()
            .filter_map(|(c, t)| Some((c, t?)))
            .collect();
        raw.roads = sqlx::query_as(
            "WITH touched AS MATERIALIZED ( \
                 SELECT f.cell FROM frames f JOIN uploads u ON u.id = f.upload_id \
                 WHERE u.reward_epoch = $1 AND f.status = 'published' \
                   AND f.decision_id IS NULL \
                 UNION SELECT cell FROM frame_rejections WHERE reward_epoch = $1 \
                 UNION SELECT r.cell FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
                 WHERE u.reward_epoch = $1), \
             driven AS MATERIALIZED ( \
                 SELECT ms.cell, ms.osm_way_id, ms.way_piece, MAX(ms.length_m) AS l \
                 FROM matched_stretches ms JOIN uploads u ON u.id = ms.upload_id \
                 WHERE u.reward_epoch < $1 AND u.received_at >= $2 AND u.trust <> 'flagged' \
                   AND ms.cell IN (SELECT cell FROM touched) \
                 GROUP BY ms.cell, ms.osm_way_id, ms.way_piece), \
             observed AS (SELECT cell, SUM(l) AS m FROM driven GROUP BY cell) \
             SELECT rc.cell, rc.road_length_m, COALESCE(o.m, 0)::float8 \
             FROM road_cells rc JOIN touched t ON t.cell = rc.cell \
             LEFT JOIN observed o ON o.cell = rc.cell",
        )
        .bind(n)
        .bind(coverage_since)
        .fetch_all(pool)
        .await
        .ctx("reading cells' roads")?;
        raw.radio = sqlx::query_as(
            "SELECT CASE WHEN u.rewardable THEN u.contributor END, r.upload_id, r.seq, r.cell, \
                    COALESCE(r.radio, r.emitter_kind), r.emitter, r.signal_dbm, r.observed_at, \
                    ST_Y(r.geom), ST_X(r.geom) \
             FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
             WHERE u.reward_epoch = $1",
        )
        .bind(n)
        .fetch_all(pool)
        .await
        .ctx("reading an epoch's radio samples")?;
        let areas_filter = "created_at < $2 AND (expires_at IS NULL OR expires_at > $3 \
              OR (budget IS NOT NULL AND (refunded_epoch IS NULL OR refunded_epoch >= $1)))";
        raw.areas = sqlx::query_as(&format!(
            "SELECT id, name, weight, created_at, expires_at, budget, \
                    (refunded_epoch IS NOT NULL AND refunded_epoch < $1) \
             FROM demand_areas WHERE {areas_filter}"
        ))
        .bind(n)
        .bind(period.end)
        .bind(period.start)
        .fetch_all(pool)
        .await
        .ctx("reading demand areas")?;
        raw.area_cells = sqlx::query_as(&format!(
            "SELECT area_id, cell FROM demand_cells WHERE area_id IN \
                (SELECT id FROM demand_areas WHERE {areas_filter})"
        ))
        .bind(n)
        .bind(period.end)
        .bind(period.start)
        .fetch_all(pool)
        .await
        .ctx("reading demand cells")?;
        raw.claims =
            sqlx::query_as("SELECT area_id, cell, paid FROM bounty_claims WHERE epoch < $1")
                .bind(n)
                .fetch_all(pool)
                .await
                .ctx("reading bounty claims")?;
        raw.fixes = sqlx::query_as(
            "SELECT contributor, COALESCE(SUM(fixes_accepted), 0)::bigint FROM uploads \
             WHERE reward_epoch = $1 AND rewardable AND contributor IS NOT NULL \
             GROUP BY contributor",
        )
        .bind(n)
        .fetch_all(pool)
        .await
        .ctx("reading fix counts")?;
        raw.spoofed = sqlx::query_as(&format!(
            "SELECT u.contributor, COUNT(*) FROM rejected_observations ro \
             JOIN uploads u ON u.id = ro.upload_id \
             WHERE u.reward_epoch = $1 AND u.rewardable AND u.contributor IS NOT NULL \
               AND ro.stage = 'fix' AND ro.reason IN ({}) \
             GROUP BY u.contributor",
            spoof_reasons()
        ))
        .bind(n)
        .fetch_all(pool)
        .await
        .ctx("reading spoofing evidence")?;
        raw.duplicated = sqlx::query_as(
            "SELECT u.contributor, COUNT(*) FROM frame_rejections fr \
             JOIN uploads u ON u.id = fr.upload_id \
             LEFT JOIN uploads o ON o.id = fr.duplicate_of_upload \
             WHERE u.reward_epoch = $1 AND u.rewardable AND u.contributor IS NOT NULL \
               AND fr.reason = 'duplicate' AND o.contributor IS DISTINCT FROM u.contributor \
             GROUP BY u.contributor",
        )
        .bind(n)
        .fetch_all(pool)
        .await
        .ctx("reading duplicate evidence")?;
        raw.previous = sqlx::query_as(
            "SELECT contributor, cumulative FROM epoch_rewards WHERE epoch = \
                (SELECT MAX(epoch) FROM epochs WHERE status = 'closed' AND epoch < $1)",
        )
        .bind(n)
        .fetch_all(pool)
        .await
        .ctx("reading cumulative totals")?;
        raw.uploads = sqlx::query_as(
            "SELECT id, CASE WHEN rewardable THEN contributor END, device, kind, \
                    COALESCE(evidence, '{}') \
             FROM uploads WHERE reward_epoch = $1 AND status = 'processed'",
        )
        .bind(n)
        .fetch_all(pool)
        .await
        .ctx("reading an epoch's uploads")?;
        raw.refusals = sqlx::query_as(
            "SELECT contributor, device, reason, received_at FROM upload_refusals \
             WHERE contributor IS NOT NULL AND received_at >= $2 AND received_at < $3 \
             UNION ALL \
             SELECT contributor, device, COALESCE(reason, 'rejected'), received_at FROM uploads \
             WHERE reward_epoch = $1 AND status = 'rejected' AND rewardable \
               AND contributor IS NOT NULL",
        )
        .bind(n)
        .bind(period.start)
        .bind(period.end)
        .fetch_all(pool)
        .await
        .ctx("reading an epoch's refusals")?;
        raw.emitters = sqlx::query_as(
            "SELECT DISTINCT ON (s.emitter) s.emitter, s.lat, s.lon, s.frequency_mhz, s.samples, \
                    s.observers, s.radius_m \
             FROM emitter_sites s \
             WHERE s.epoch < $1 AND s.emitter IN ( \
                 SELECT r.emitter FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
                 WHERE u.reward_epoch = $1) \
             ORDER BY s.emitter, s.epoch DESC",
        )
        .bind(n)
        .fetch_all(pool)
        .await
        .ctx("reading emitters' sites")?;
        raw.usage = sqlx::query_as("SELECT area, requests FROM usage_counts WHERE epoch = $1 - 1")
            .bind(n)
            .fetch_all(pool)
            .await
            .ctx("reading usage")?;
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
        let mut tx = self.pool().begin().await.ctx("starting a transaction")?;
        let held: Option<(i64,)> = sqlx::query_as(
            "SELECT epoch FROM epochs WHERE epoch = $1 AND status = 'closing' \
                 AND claim_token = $2 FOR UPDATE",
        )
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
        sqlx::query(
            "INSERT INTO epoch_rewards (epoch, contributor, points, base, bounty, amount, \
                 cumulative, flagged) \
             SELECT $1, c, p, b, y, a, t, f FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], \
                 $5::bigint[], $6::bigint[], $7::text[], $8::bool[]) AS x(c, p, b, y, a, t, f)",
        )
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
        sqlx::query(
            "INSERT INTO epoch_cells (epoch, cell, captures, radio_units, points, amount, weight, \
                 last_seen) \
             SELECT $1, c, n, r, p, a, w, l FROM UNNEST($2::bigint[], $3::bigint[], $4::bigint[], \
                 $5::bigint[], $6::bigint[], $7::float8[], $8::timestamptz[]) \
                 AS x(c, n, r, p, a, w, l)",
        )
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
            sqlx::query(
                "INSERT INTO epoch_penalties (epoch, contributor, reason, detail) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(n)
            .bind(&p.contributor)
            .bind(&p.reason)
            .bind(&p.detail)
            .execute(&mut *tx)
            .await
            .ctx("writing penalties")?;
        }
        for b in &outcome.claims {
            sqlx::query(
                "INSERT INTO bounty_claims (area_id, cell, epoch, contributor, claimed, paid) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
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
            sqlx::query("UPDATE demand_areas SET refunded = $2, refunded_epoch = $3 WHERE id = $1")
                .bind(f.area)
                .bind(to_i64(f.amount, "refund")?)
                .bind(n)
                .execute(&mut *tx)
                .await
                .ctx("writing bounty refunds")?;
        }
        let verdicts = crate::reward_rows::verdict_rows(&outcome.verdicts)?;
        sqlx::query(
            "UPDATE uploads u SET trust = v.t, trust_findings = v.f, trust_epoch = $1, \
                 trust_changed_at = CASE WHEN u.trust <> v.t OR v.c IS NOT NULL THEN $5 \
                     ELSE u.trust_changed_at END, \
                 cells = CASE WHEN v.t = 'flagged' THEN 0 \
                     ELSE COALESCE(v.c, u.cells_seen, u.cells) END \
             FROM UNNEST($2::bigint[], $3::text[], $4::text[], $6::bigint[]) AS v(id, t, f, c) \
             WHERE u.id = v.id",
        )
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
        sqlx::query(
            "UPDATE radio_observations r SET counted = FALSE \
             FROM UNNEST($1::bigint[], $2::int[]) AS x(u, s) \
             WHERE r.upload_id = x.u AND r.seq = x.s",
        )
        .bind(u.iter().map(|x| x.0).collect::<Vec<_>>())
        .bind(u.iter().map(|x| x.1).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .ctx("marking sightings that do not count")?;
        let e = &outcome.emitters;
        sqlx::query(
            "INSERT INTO emitter_sites (emitter, epoch, lat, lon, frequency_mhz, samples, \
                 observers, radius_m) \
             SELECT em, $1, la, lo, f, n, o, r FROM UNNEST($2::text[], $3::float8[], \
                 $4::float8[], $5::float8[], $6::bigint[], $7::text[], $8::float8[]) \
                 AS x(em, la, lo, f, n, o, r)",
        )
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
        sqlx::query(
            "UPDATE epochs SET status = 'closed', closed_at = $2, policy = $3, policy_hash = $4, \
                 root = $5, emission = $6, distributed = $7, unallocated = $8, bounty_paid = $9, \
                 manifest = $10, claim_token = NULL, claimed_until = NULL \
             WHERE epoch = $1",
        )
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
        let rows = sqlx::query(&format!(
            "SELECT {EPOCH_COLUMNS} FROM epochs ORDER BY epoch"
        ))
        .fetch_all(self.pool())
        .await
        .ctx("listing epochs")?;
        rows.iter().map(epoch_record).collect()
    }

    async fn closed_epoch(&self, epoch: u64) -> Result<Option<ClosedEpoch>> {
        let row = sqlx::query(&format!(
            "SELECT {EPOCH_COLUMNS}, manifest, policy FROM epochs \
             WHERE epoch = $1 AND status = 'closed'"
        ))
        .bind(to_i64(epoch, "epoch")?)
        .fetch_optional(self.pool())
        .await
        .ctx("reading an epoch")?;
        let Some(row) = row else { return Ok(None) };
        let manifest: Manifest = serde_json::from_value(col(&row, "manifest")?)
            .map_err(|e| StoreError::Corrupt(format!("epoch {epoch}'s manifest: {e}")))?;
        Ok(Some(ClosedEpoch {
            record: epoch_record(&row)?,
            manifest,
            policy: col::<_, Option<String>>(&row, "policy")?.unwrap_or_default(),
        }))
    }

    async fn last_closed_epoch(&self) -> Result<Option<u64>> {
        let (n,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(epoch) FROM epochs WHERE status = 'closed'")
                .fetch_one(self.pool())
                .await
                .ctx("reading the last epoch")?;
        n.map(|n| to_u64(n, "epoch")).transpose()
    }

    async fn epoch_rewards(&self, epoch: u64) -> Result<Vec<ContributorReward>> {
        let rows = sqlx::query(
            "SELECT contributor, points, base, bounty, amount, cumulative, flagged \
             FROM epoch_rewards WHERE epoch = $1 ORDER BY contributor",
        )
        .bind(to_i64(epoch, "epoch")?)
        .fetch_all(self.pool())
        .await
        .ctx("reading rewards")?;
        rows.iter().map(reward_row).collect()
    }

    async fn epoch_cells(&self, epoch: u64) -> Result<Vec<CellReward>> {
        let rows: Vec<CellRewardRow> = sqlx::query_as(
            "SELECT cell, captures, radio_units, points, amount, weight, last_seen FROM epoch_cells \
             WHERE epoch = $1 ORDER BY cell",
        )
        .bind(to_i64(epoch, "epoch")?)
        .fetch_all(self.pool())
        .await
        .ctx("reading cell rewards")?;
        rows.into_iter().map(cell_row).collect()
    }

    async fn epoch_penalties(&self, epoch: u64) -> Result<Vec<Penalty>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT contributor, reason, detail FROM epoch_penalties WHERE epoch = $1 \
             ORDER BY contributor",
        )
        .bind(to_i64(epoch, "epoch")?)
        .fetch_all(self.pool())
        .await
        .ctx("reading penalties")?;
        Ok(rows
            .into_iter()
            .map(|(contributor, reason, detail)| Penalty {
                contributor,
                reason,
                detail,
            })
            .collect())
    }

    async fn contributor_rewards(
        &self,
        contributor: &str,
    ) -> Result<Vec<(u64, ContributorReward)>> {
        let rows = sqlx::query(
            "SELECT epoch, contributor, points, base, bounty, amount, cumulative, flagged \
             FROM epoch_rewards WHERE contributor = $1 ORDER BY epoch",
        )
        .bind(contributor)
        .fetch_all(self.pool())
        .await
        .ctx("reading a contributor's rewards")?;
        rows.iter()
            .map(|r| Ok((to_u64(col(r, "epoch")?, "epoch")?, reward_row(r)?)))
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
        let row: Option<(String, Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT status, claimed_by, claimed_until FROM epochs WHERE epoch = ?")
                .bind(n)
                .fetch_optional(&mut *tx)
                .await
                .ctx("reading an epoch")?;
        match row {
            Some((status, _, _)) if status == "closed" => return Ok(EpochClaim::Closed),
            Some((_, Some(by), Some(until))) if until > micros(now) => {
                return Ok(EpochClaim::Busy {
                    by,
                    until: time(until)?,
                });
            }
            _ => {}
        }
        let (last, busy): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT MAX(epoch) FROM epochs WHERE status = 'closed'), \
                    (SELECT MIN(epoch) FROM epochs WHERE status = 'closing' AND epoch <> ?1 \
                        AND claimed_until > ?2)",
        )
        .bind(n)
        .bind(micros(now))
        .fetch_one(&mut *tx)
        .await
        .ctx("reading the epochs")?;
        check_order(period.epoch, last, busy)?;
        let token = uuid::Uuid::new_v4().to_string();
        let until = now + lease_for;
        sqlx::query(
            "INSERT INTO epochs (epoch, start_at, end_at, status, claimed_by, claim_token, \
                 claimed_until) VALUES (?1, ?2, ?3, 'closing', ?4, ?5, ?6) \
             ON CONFLICT (epoch) DO UPDATE SET claimed_by = ?4, claim_token = ?5, \
                 claimed_until = ?6, start_at = ?2, end_at = ?3",
        )
        .bind(n)
        .bind(micros(period.start))
        .bind(micros(period.end))
        .bind(worker)
        .bind(&token)
        .bind(micros(until))
        .execute(&mut *tx)
        .await
        .ctx("claiming an epoch")?;
        let tagged = sqlx::query(
            "UPDATE uploads SET reward_epoch = ? \
             WHERE reward_epoch IS NULL AND status IN ('processed', 'rejected') \
               AND received_at < ?",
        )
        .bind(n)
        .bind(micros(period.end))
        .execute(&mut *tx)
        .await
        .ctx("counting uploads in an epoch")?
        .rows_affected();
        // Frames approved before the epoch's end and not counted yet count in it, whatever
        // epoch their upload counted in (see migration 0007).
        sqlx::query(
            "UPDATE frame_rejections SET reward_epoch = ?1 \
             WHERE reward_epoch IS NULL AND (upload_id, frame) IN ( \
                 SELECT f.upload_id, f.frame FROM frames f \
                 JOIN frame_decisions d ON d.id = f.decision_id \
                 WHERE f.decision_id IS NOT NULL AND d.decided_at < ?2)",
        )
        .bind(n)
        .bind(micros(period.end))
        .execute(&mut *tx)
        .await
        .ctx("counting approved frames in an epoch")?;
        tx.commit().await.ctx("committing an epoch claim")?;
        Ok(EpochClaim::Held {
            token,
            until,
            tagged,
        })
    }

    async fn abandon_epoch(&self, epoch: u64, token: &str) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE epochs SET claimed_by = NULL, claim_token = NULL, claimed_until = NULL \
             WHERE epoch = ? AND status = 'closing' AND claim_token = ?",
        )
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
        let captures: Vec<(Option<String>, i64, i32, i64, i64)> = sqlx::query_as(
            "SELECT CASE WHEN u.rewardable THEN u.contributor END, f.upload_id, f.frame, \
                    f.cell, f.captured_at \
             FROM frames f JOIN uploads u ON u.id = f.upload_id \
             WHERE u.reward_epoch = ?1 AND f.status = 'published' AND f.decision_id IS NULL \
             UNION ALL \
             SELECT CASE WHEN u.rewardable THEN u.contributor END, r.upload_id, r.frame, \
                    r.cell, r.captured_at \
             FROM frame_rejections r JOIN uploads u ON u.id = r.upload_id \
             WHERE r.reward_epoch = ?1",
        )
        .bind(n)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading an epoch's frames")?;
        let mut raw = RawInputs {
            captures: captures
                .into_iter()
                .map(|(c, u, f, cell, t)| Ok((c, u, f, cell, time(t)?)))
                .collect::<Result<_>>()?,
            ..RawInputs::default()
        };
        let last_seen: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "WITH touched AS MATERIALIZED ( \
                 SELECT f.cell FROM frames f JOIN uploads u ON u.id = f.upload_id \
                 WHERE u.reward_epoch = ?1 AND f.status = 'published' \
                   AND f.decision_id IS NULL \
                 UNION SELECT cell FROM frame_rejections WHERE reward_epoch = ?1) \
             SELECT t.cell, (SELECT c.last_seen FROM epoch_cells c \
                 WHERE c.cell = t.cell AND c.epoch < ?1 AND c.last_seen IS NOT NULL \
                 ORDER BY c.epoch DESC LIMIT 1) \
             FROM touched t",
        )
        .bind(n)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading cells' last captures")?;
        raw.last_seen = last_seen
            .into_iter()
            .filter_map(|(c, t)| t.map(|t| Ok((c, time(t)?))))
            .collect::<Result<_>>()?;
        raw.roads = sqlx::query_as(
            "WITH touched AS MATERIALIZED ( \
                 SELECT f.cell FROM frames f JOIN uploads u ON u.id = f.upload_id \
                 WHERE u.reward_epoch = ?1 AND f.status = 'published' \
                   AND f.decision_id IS NULL \
                 UNION SELECT cell FROM frame_rejections WHERE reward_epoch = ?1 \
                 UNION SELECT r.cell FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
                 WHERE u.reward_epoch = ?1), \
             driven AS MATERIALIZED ( \
                 SELECT ms.cell, ms.osm_way_id, ms.way_piece, MAX(ms.length_m) AS l \
                 FROM matched_stretches ms JOIN uploads u ON u.id = ms.upload_id \
                 WHERE u.reward_epoch < ?1 AND u.received_at >= ?2 AND u.trust <> 'flagged' \
                   AND ms.cell IN (SELECT cell FROM touched) \
                 GROUP BY ms.cell, ms.osm_way_id, ms.way_piece), \
             observed AS (SELECT cell, SUM(l) AS m FROM driven GROUP BY cell) \
             SELECT rc.cell, rc.road_length_m, CAST(COALESCE(o.m, 0) AS REAL) \
             FROM road_cells rc JOIN touched t ON t.cell = rc.cell \
             LEFT JOIN observed o ON o.cell = rc.cell",
        )
        .bind(n)
        .bind(micros(coverage_since))
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
        let radio: Vec<Radio> = sqlx::query_as(
            "SELECT CASE WHEN u.rewardable THEN u.contributor END, r.upload_id, r.seq, r.cell, \
                    COALESCE(r.radio, r.emitter_kind), r.emitter, r.signal_dbm, r.observed_at, \
                    r.lat, r.lon \
             FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
             WHERE u.reward_epoch = ?",
        )
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
        let areas_filter = "created_at < ?2 AND (expires_at IS NULL OR expires_at > ?3 \
              OR (budget IS NOT NULL AND (refunded_epoch IS NULL OR refunded_epoch >= ?1)))";
        type Area = (i64, String, f64, i64, Option<i64>, Option<i64>, bool);
        let areas: Vec<Area> = sqlx::query_as(&format!(
            "SELECT id, name, weight, created_at, expires_at, budget, \
                    (refunded_epoch IS NOT NULL AND refunded_epoch < ?1) \
             FROM demand_areas WHERE {areas_filter}"
        ))
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
        raw.area_cells = sqlx::query_as(&format!(
            "SELECT area_id, cell FROM demand_cells WHERE area_id IN \
                (SELECT id FROM demand_areas WHERE {areas_filter})"
        ))
        .bind(n)
        .bind(micros(period.end))
        .bind(micros(period.start))
        .fetch_all(&mut *tx)
        .await
        .ctx("reading demand cells")?;
        raw.claims =
            sqlx::query_as("SELECT area_id, cell, paid FROM bounty_claims WHERE epoch < ?")
                .bind(n)
                .fetch_all(&mut *tx)
                .await
                .ctx("reading bounty claims")?;
        raw.fixes = sqlx::query_as(
            "SELECT contributor, COALESCE(SUM(fixes_accepted), 0) FROM uploads \
             WHERE reward_epoch = ? AND rewardable AND contributor IS NOT NULL \
             GROUP BY contributor",
        )
        .bind(n)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading fix counts")?;
        raw.spoofed = sqlx::query_as(&format!(
            "SELECT u.contributor, COUNT(*) FROM rejected_observations ro \
             JOIN uploads u ON u.id = ro.upload_id \
             WHERE u.reward_epoch = ? AND u.rewardable AND u.contributor IS NOT NULL \
               AND ro.stage = 'fix' AND ro.reason IN ({}) \
             GROUP BY u.contributor",
            spoof_reasons()
        ))
        .bind(n)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading spoofing evidence")?;
        raw.duplicated = sqlx::query_as(
            "SELECT u.contributor, COUNT(*) FROM frame_rejections fr \
             JOIN uploads u ON u.id = fr.upload_id \
             LEFT JOIN uploads o ON o.id = fr.duplicate_of_upload \
             WHERE u.reward_epoch = ? AND u.rewardable AND u.contributor IS NOT NULL \
               AND fr.reason = 'duplicate' AND o.contributor IS NOT u.contributor \
             GROUP BY u.contributor",
        )
        .bind(n)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading duplicate evidence")?;
        raw.previous = sqlx::query_as(
            "SELECT contributor, cumulative FROM epoch_rewards WHERE epoch = \
                (SELECT MAX(epoch) FROM epochs WHERE status = 'closed' AND epoch < ?)",
        )
        .bind(n)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading cumulative totals")?;
        raw.uploads = sqlx::query_as(
            "SELECT id, CASE WHEN rewardable THEN contributor END, device, kind, \
                    COALESCE(evidence, '{}') \
             FROM uploads WHERE reward_epoch = ? AND status = 'processed'",
        )
        .bind(n)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading an epoch's uploads")?;
        let refusals: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT contributor, device, reason, received_at FROM upload_refusals \
             WHERE contributor IS NOT NULL AND received_at >= ?2 AND received_at < ?3 \
             UNION ALL \
             SELECT contributor, device, COALESCE(reason, 'rejected'), received_at FROM uploads \
             WHERE reward_epoch = ?1 AND status = 'rejected' AND rewardable \
               AND contributor IS NOT NULL",
        )
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
        raw.emitters = sqlx::query_as(
            "SELECT s.emitter, s.lat, s.lon, s.frequency_mhz, s.samples, s.observers, s.radius_m \
             FROM emitter_sites s \
             WHERE s.epoch = (SELECT MAX(epoch) FROM emitter_sites t \
                              WHERE t.emitter = s.emitter AND t.epoch < ?1) \
               AND s.emitter IN ( \
                 SELECT r.emitter FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
                 WHERE u.reward_epoch = ?1)",
        )
        .bind(n)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading emitters' sites")?;
        raw.usage = sqlx::query_as("SELECT area, requests FROM usage_counts WHERE epoch = ? - 1")
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
        let held: Option<(i64,)> = sqlx::query_as(
            "SELECT epoch FROM epochs WHERE epoch = ? AND status = 'closing' AND claim_token = ?",
        )
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
        for r in &outcome.rewards {
            sqlx::query(
                "INSERT INTO epoch_rewards (epoch, contributor, points, base, bounty, amount, \
                     cumulative, flagged) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(n)
            .bind(&r.contributor)
            .bind(to_i64(r.points, "points")?)
            .bind(to_i64(r.base, "amount")?)
            .bind(to_i64(r.bounty, "amount")?)
            .bind(to_i64(r.amount, "amount")?)
            .bind(r.cumulative.to_string())
            .bind(r.flagged)
            .execute(&mut *tx)
            .await
            .ctx("writing rewards")?;
        }
        for c in &outcome.cells {
            sqlx::query(
                "INSERT INTO epoch_cells (epoch, cell, captures, radio_units, points, amount, \
                     weight, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(n)
            .bind(c.cell.as_i64())
            .bind(to_i64(c.captures, "count")?)
            .bind(to_i64(c.radio_units, "count")?)
            .bind(to_i64(c.points, "points")?)
            .bind(to_i64(c.amount, "amount")?)
            .bind(c.weight_at_start)
            .bind(c.last_seen.map(micros))
            .execute(&mut *tx)
            .await
            .ctx("writing cell rewards")?;
        }
        for p in &outcome.penalties {
            sqlx::query(
                "INSERT INTO epoch_penalties (epoch, contributor, reason, detail) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(n)
            .bind(&p.contributor)
            .bind(&p.reason)
            .bind(&p.detail)
            .execute(&mut *tx)
            .await
            .ctx("writing penalties")?;
        }
        for b in &outcome.claims {
            sqlx::query(
                "INSERT INTO bounty_claims (area_id, cell, epoch, contributor, claimed, paid) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
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
            sqlx::query("UPDATE demand_areas SET refunded = ?, refunded_epoch = ? WHERE id = ?")
                .bind(to_i64(f.amount, "refund")?)
                .bind(n)
                .bind(f.area)
                .execute(&mut *tx)
                .await
                .ctx("writing bounty refunds")?;
        }
        for (id, verdict, findings, credited) in
            crate::reward_rows::verdict_rows(&outcome.verdicts)?
        {
            sqlx::query(
                "UPDATE uploads SET trust = ?2, trust_findings = ?3, trust_epoch = ?4, \
                     trust_changed_at = CASE WHEN trust <> ?2 OR ?6 IS NOT NULL THEN ?5 \
                         ELSE trust_changed_at END, \
                     cells = CASE WHEN ?2 = 'flagged' THEN 0 \
                         ELSE COALESCE(?6, cells_seen, cells) END \
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(verdict)
            .bind(findings)
            .bind(n)
            .bind(micros(now))
            .bind(credited)
            .execute(&mut *tx)
            .await
            .ctx("writing uploads' verdicts")?;
        }
        for (upload, seq) in &outcome.uncounted_radio {
            sqlx::query(
                "UPDATE radio_observations SET counted = 0 WHERE upload_id = ? AND seq = ?",
            )
            .bind(upload)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .ctx("marking sightings that do not count")?;
        }
        for e in &outcome.emitters {
            sqlx::query(
                "INSERT INTO emitter_sites (emitter, epoch, lat, lon, frequency_mhz, samples, \
                     observers, radius_m) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&e.emitter)
            .bind(n)
            .bind(e.lat)
            .bind(e.lon)
            .bind(e.frequency_mhz)
            .bind(to_i64(e.samples, "samples")?)
            .bind(e.observers.join(","))
            .bind(e.radius_m)
            .execute(&mut *tx)
            .await
            .ctx("writing emitters' sites")?;
        }
        let manifest =
            serde_json::to_string(m).map_err(|e| StoreError::Corrupt(format!("manifest: {e}")))?;
        sqlx::query(
            "UPDATE epochs SET status = 'closed', closed_at = ?2, policy = ?3, policy_hash = ?4, \
                 root = ?5, emission = ?6, distributed = ?7, unallocated = ?8, bounty_paid = ?9, \
                 manifest = ?10, claim_token = NULL, claimed_until = NULL \
             WHERE epoch = ?1",
        )
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
        let rows = sqlx::query(&format!(
            "SELECT {EPOCH_COLUMNS} FROM epochs ORDER BY epoch"
        ))
        .fetch_all(&self.pool)
        .await
        .ctx("listing epochs")?;
        rows.iter().map(epoch_record).collect()
    }

    async fn closed_epoch(&self, epoch: u64) -> Result<Option<ClosedEpoch>> {
        let row = sqlx::query(&format!(
            "SELECT {EPOCH_COLUMNS}, manifest, policy FROM epochs \
             WHERE epoch = ? AND status = 'closed'"
        ))
        .bind(to_i64(epoch, "epoch")?)
        .fetch_optional(&self.pool)
        .await
        .ctx("reading an epoch")?;
        let Some(row) = row else { return Ok(None) };
        let manifest: Manifest = serde_json::from_str(&col::<_, String>(&row, "manifest")?)
            .map_err(|e| StoreError::Corrupt(format!("epoch {epoch}'s manifest: {e}")))?;
        Ok(Some(ClosedEpoch {
            record: epoch_record(&row)?,
            manifest,
            policy: col::<_, Option<String>>(&row, "policy")?.unwrap_or_default(),
        }))
    }

    async fn last_closed_epoch(&self) -> Result<Option<u64>> {
        let (n,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(epoch) FROM epochs WHERE status = 'closed'")
                .fetch_one(&self.pool)
                .await
                .ctx("reading the last epoch")?;
        n.map(|n| to_u64(n, "epoch")).transpose()
    }

    async fn epoch_rewards(&self, epoch: u64) -> Result<Vec<ContributorReward>> {
        let rows = sqlx::query(
            "SELECT contributor, points, base, bounty, amount, cumulative, flagged \
             FROM epoch_rewards WHERE epoch = ? ORDER BY contributor",
        )
        .bind(to_i64(epoch, "epoch")?)
        .fetch_all(&self.pool)
        .await
        .ctx("reading rewards")?;
        rows.iter().map(reward_row).collect()
    }

    async fn epoch_cells(&self, epoch: u64) -> Result<Vec<CellReward>> {
        type R = (i64, i64, i64, i64, i64, f64, Option<i64>);
        let rows: Vec<R> = sqlx::query_as(
            "SELECT cell, captures, radio_units, points, amount, weight, last_seen FROM epoch_cells \
             WHERE epoch = ? ORDER BY cell",
        )
        .bind(to_i64(epoch, "epoch")?)
        .fetch_all(&self.pool)
        .await
        .ctx("reading cell rewards")?;
        rows.into_iter()
            .map(|(c, n, r, p, a, w, l)| cell_row((c, n, r, p, a, w, l.map(time).transpose()?)))
            .collect()
    }

    async fn epoch_penalties(&self, epoch: u64) -> Result<Vec<Penalty>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT contributor, reason, detail FROM epoch_penalties WHERE epoch = ? \
             ORDER BY contributor",
        )
        .bind(to_i64(epoch, "epoch")?)
        .fetch_all(&self.pool)
        .await
        .ctx("reading penalties")?;
        Ok(rows
            .into_iter()
            .map(|(contributor, reason, detail)| Penalty {
                contributor,
                reason,
                detail,
            })
            .collect())
    }

    async fn contributor_rewards(
        &self,
        contributor: &str,
    ) -> Result<Vec<(u64, ContributorReward)>> {
        let rows = sqlx::query(
            "SELECT epoch, contributor, points, base, bounty, amount, cumulative, flagged \
             FROM epoch_rewards WHERE contributor = ? ORDER BY epoch",
        )
        .bind(contributor)
        .fetch_all(&self.pool)
        .await
        .ctx("reading a contributor's rewards")?;
        rows.iter()
            .map(|r| Ok((to_u64(col(r, "epoch")?, "epoch")?, reward_row(r)?)))
            .collect()
    }
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
