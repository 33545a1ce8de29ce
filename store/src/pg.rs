//! PostGIS backend: the system of record. Geometry in `geometry(…, 4326)` columns with GiST
//! indexes; the queue leases with `FOR UPDATE SKIP LOCKED`, so any number of workers can share it.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::error::{Result, SqlContext, StoreError, redact};
use crate::{Lease, Store};

#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
}

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first half of the advisory lock key uploads of the same bytes take turns under (the
/// second is a hash of the bytes' sha256): "cm" in ASCII, apart from any other lock.
pub(crate) const SAME_BYTES_LOCK: i32 = 0x636d;

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let fail = |source| StoreError::Connect {
            url: redact(url),
            source,
        };
        let options: PgConnectOptions = url.parse().map_err(fail)?;
        // One plain connection first: a pool would retry until its timeout and then report only
        // "timed out", hiding the reason (refused, no such database, bad password) a user needs.
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => drop(conn),
            Ok(Err(e)) => return Err(fail(e)),
            Err(_) => return Err(fail(sqlx::Error::PoolTimedOut)),
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(fail)?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn holding(tx: &mut Transaction<'_, Postgres>, lease: &Lease) -> Result<()> {
        let held = sqlx::query(
            "SELECT 1 FROM jobs WHERE id = $1 AND status = 'leased' AND lease_token = $2 FOR UPDATE",
        )
        .bind(lease.job_id)
        .bind(&lease.token)
        .fetch_optional(&mut **tx)
        .await
        .ctx("checking a lease")?;
        match held {
            Some(_) => Ok(()),
            None => Err(StoreError::LeaseLost {
                job_id: lease.job_id,
            }),
        }
    }

    pub(crate) async fn reject_upload(
        tx: &mut Transaction<'_, Postgres>,
        upload_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE uploads SET status = 'rejected', reason = $2, processed_at = $3 WHERE id = $1",
        )
        .bind(upload_id)
        .bind(reason)
        .bind(now)
        .execute(&mut **tx)
        .await
        .ctx("rejecting an upload")?;
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgis"
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await?;
        // This month's partitions and the next few, whenever a process opens the database. A
        // failure (a lock another transaction held, a deadlock) does not stop the process: the
        // months are made ahead, the workers try again every minute, and a row no month takes
        // lands in the default partition meanwhile.
        if let Err(e) =
            crate::Partitions::ensure_partitions(self, Utc::now(), crate::MONTHS_AHEAD).await
        {
            tracing::warn!(error = %e, "making month partitions failed; the workers try again");
        }
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .ctx("pinging")?;
        Ok(())
    }
}
