//! Embedded backend: one SQLite file in WAL mode, so `covermap serve` needs no database server.
//! Every writing transaction starts with `BEGIN IMMEDIATE`: SQLite has one writer at a time, and
//! taking the write lock up front is what makes the queue's lease safe across processes.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::dialect::micros;
use crate::error::{Result, SqlContext, StoreError};
use crate::{Lease, Store};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// Writers of this process queue here, in order, before taking SQLite's write lock: SQLite's
    /// own busy handler makes waiting writers sleep and retry (up to 100 ms a sleep), which
    /// under many concurrent uploads turns into long tail latencies. Other processes on the
    /// same file still meet at SQLite's lock.
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction holding this process's writer turn.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> std::result::Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub(crate) async fn rollback(self) -> std::result::Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open_file(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Config(format!(
                    "cannot create data directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::open(options, &path.display().to_string()).await
    }

    /// Opens a `sqlite:` URL, e.g. `sqlite:///var/lib/covermap/db.sqlite3` or `sqlite::memory:`.
    pub async fn open_url(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|source| StoreError::Connect {
                url: url.to_owned(),
                source,
            })?
            .create_if_missing(true);
        Self::open(options, url).await
    }

    async fn open(options: SqliteConnectOptions, shown_as: &str) -> Result<Self> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the client hears 2xx, power loss included (WAL
            // with NORMAL would only survive a crash of the process).
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                url: shown_as.to_owned(),
                source,
            })?;
        Ok(Self {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    pub(crate) async fn write(&self) -> Result<WriteTx> {
        let turn = self.writer.clone().lock_owned().await;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .ctx("starting a write transaction")?;
        Ok(WriteTx { tx, _turn: turn })
    }

    pub(crate) async fn holding(tx: &mut SqliteConnection, lease: &Lease) -> Result<()> {
        let held = sqlx::query(
            "SELECT 1 FROM jobs WHERE id = ? AND status = 'leased' AND lease_token = ?",
        )
        .bind(lease.job_id)
        .bind(&lease.token)
        .fetch_optional(&mut *tx)
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
        tx: &mut SqliteConnection,
        upload_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE uploads SET status = 'rejected', reason = ?, processed_at = ? WHERE id = ?",
        )
        .bind(reason)
        .bind(micros(now))
        .bind(upload_id)
        .execute(&mut *tx)
        .await
        .ctx("rejecting an upload")?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.pool)
            .await?;
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

/// `n` comma-separated `?` placeholders.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}
