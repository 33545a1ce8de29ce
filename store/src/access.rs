//! Who may do what: API keys, registered devices and their keys, and request nonces.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{DeviceId, NewApiKey};

use crate::dialect::Columns;
use crate::dialect::micros;
use crate::error::{Result, SqlContext};
use crate::reward_rows::{to_i64, to_u64};
use crate::{
    ApiKeyRecord, DeviceFilter, DeviceRecord, PgStore, Registration, Rotation, SqliteStore,
};

/// Who may do what: API keys, registered devices and their keys, and request nonces.
#[async_trait]
pub trait Access: Send + Sync {
    async fn create_api_key(&self, key: &NewApiKey, now: DateTime<Utc>) -> Result<ApiKeyRecord>;

    /// The key with this hash, revoked or not.
    async fn api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>>;

    /// Revokes a key; `false` if there is no such key or it was revoked already.
    async fn revoke_api_key(&self, id: i64, now: DateTime<Utc>) -> Result<bool>;

    /// The key with this id, revoked or not.
    async fn api_key_by_id(&self, id: i64) -> Result<Option<ApiKeyRecord>>;

    /// Registers a device's public key (its `rotated_at` and `revoked_at` are not read), unless
    /// the device id or the key is taken (see [`Registration`]).
    async fn register_device(&self, device: &DeviceRecord) -> Result<Registration>;

    async fn device(&self, device: &DeviceId) -> Result<Option<DeviceRecord>>;

    /// Devices that `filter` admits, revoked ones too, by id, at most `limit`.
    async fn devices(&self, filter: &DeviceFilter, limit: i64) -> Result<Vec<DeviceRecord>>;

    /// Replaces `device`'s public key `from_key` with `to_key` in one transaction: `from_key`
    /// is retired for ever, `to_key` must never have been any device's (see [`Rotation`]).
    async fn rotate_device_key(
        &self,
        device: &DeviceId,
        from_key: &str,
        to_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Rotation>;

    /// Revokes a device and retires its key; `false` if there is no such device or it was
    /// revoked already.
    async fn revoke_device(&self, device: &DeviceId, now: DateTime<Utc>) -> Result<bool>;

    /// Records that `device` used `nonce`; `false` if it had used it before (a replay). Nonces
    /// seen before `forget_before` are forgotten: requests that old are refused as stale anyway.
    async fn claim_nonce(
        &self,
        device: &DeviceId,
        nonce: &str,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<bool>;
}

// The queries: one where both backends run the same, two side by side where they differ.

const CREATE_API_KEY: &str = "INSERT INTO api_keys \
                              (key_hash, prefix, role, contributor, created_at, quota_per_day) \
                              VALUES ($1, $2, $3, $4, $5, $6) RETURNING *";

const API_KEY_BY_HASH: &str = "SELECT * FROM api_keys WHERE key_hash = $1";

const API_KEYS: &str = "SELECT * FROM api_keys ORDER BY id";

const REVOKE_API_KEY: &str =
    "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";

const API_KEY_BY_ID: &str = "SELECT * FROM api_keys WHERE id = $1";

const DEVICE: &str = "SELECT * FROM devices WHERE device = $1";

const DEVICES: &str = "SELECT * FROM devices \
                       WHERE (CAST($1 AS text) IS NULL OR contributor = $1) \
                         AND (CAST($2 AS bigint) IS NULL OR registered_by = $2) \
                       ORDER BY device LIMIT $3";

const RETIRE_DEVICE_KEY: &str = "UPDATE device_keys SET retired_at = $2 WHERE public_key = $1";

const REVOKE_DEVICE: &str =
    "UPDATE devices SET revoked_at = $2 WHERE device = $1 AND revoked_at IS NULL";

const RETIRE_DEVICE_KEYS: &str =
    "UPDATE device_keys SET retired_at = $2 WHERE device = $1 AND retired_at IS NULL";

const FORGET_NONCES: &str = "DELETE FROM request_nonces WHERE seen_at < $1";

const CLAIM_NONCE: &str = "INSERT INTO request_nonces (device, nonce, seen_at) \
                           VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

// PostgreSQL inserts and lets a conflict answer; SQLite looked first, under its one writer.
const PG_REGISTER_DEVICE: &str = "INSERT INTO devices \
    (device, public_key, contributor, registered_by, registered_at) \
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device) DO NOTHING";
const SQLITE_REGISTER_DEVICE: &str = "INSERT INTO devices \
    (device, public_key, contributor, registered_by, registered_at) \
    VALUES ($1, $2, $3, $4, $5)";

// PostgreSQL inserts and lets a conflict answer; SQLite looked first, under its one writer.
const PG_ADD_DEVICE_KEY: &str = "INSERT INTO device_keys (public_key, device, added_at) \
                                 VALUES ($1, $2, $3) ON CONFLICT (public_key) DO NOTHING";
const SQLITE_ADD_DEVICE_KEY: &str =
    "INSERT INTO device_keys (public_key, device, added_at) VALUES ($1, $2, $3)";

// How the rows of both backends are read, and a key's quota written.

fn quota(key: &NewApiKey) -> Result<Option<i64>> {
    key.quota_per_day
        .map(|q| to_i64(q, "quota_per_day"))
        .transpose()
}

pub(crate) fn key_from_row(row: &impl Columns) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.col("id")?,
        prefix: row.col("prefix")?,
        role: row.word("role")?,
        contributor: row.col("contributor")?,
        created_at: row.time("created_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        quota_per_day: row
            .col::<Option<i64>>("quota_per_day")?
            .map(|q| to_u64(q, "quota_per_day"))
            .transpose()?,
    })
}

pub(crate) fn device_from_row(row: &impl Columns) -> Result<DeviceRecord> {
    Ok(DeviceRecord {
        device: row.word("device")?,
        public_key: row.col("public_key")?,
        contributor: row.col("contributor")?,
        registered_by: row.col("registered_by")?,
        registered_at: row.time("registered_at")?,
        rotated_at: row.opt_time("rotated_at")?,
        revoked_at: row.opt_time("revoked_at")?,
    })
}

#[async_trait]
impl Access for PgStore {
    async fn create_api_key(&self, key: &NewApiKey, now: DateTime<Utc>) -> Result<ApiKeyRecord> {
        let row = sqlx::query(CREATE_API_KEY)
            .bind(&key.key_hash)
            .bind(&key.prefix)
            .bind(key.role.as_str())
            .bind(&key.contributor)
            .bind(now)
            .bind(quota(key)?)
            .fetch_one(&self.pool)
            .await
            .ctx("creating an API key")?;
        key_from_row(&row)
    }

    async fn api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query(API_KEY_BY_HASH)
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an API key")?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query(API_KEYS)
            .fetch_all(&self.pool)
            .await
            .ctx("listing API keys")?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(REVOKE_API_KEY)
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await
            .ctx("revoking an API key")?;
        Ok(done.rows_affected() == 1)
    }

    async fn api_key_by_id(&self, id: i64) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query(API_KEY_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an API key")?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn register_device(&self, device: &DeviceRecord) -> Result<Registration> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let inserted = sqlx::query(PG_REGISTER_DEVICE)
            .bind(device.device.as_str())
            .bind(&device.public_key)
            .bind(&device.contributor)
            .bind(device.registered_by)
            .bind(device.registered_at)
            .execute(&mut *tx)
            .await
            .ctx("registering a device")?;
        if inserted.rows_affected() == 0 {
            let stored = sqlx::query(DEVICE)
                .bind(device.device.as_str())
                .fetch_optional(&mut *tx)
                .await
                .ctx("reading a device")?
                .as_ref()
                .map(device_from_row)
                .transpose()?;
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(match stored {
                Some(stored) if stored.is_registered_again_as(device) => {
                    Registration::Existing(stored)
                }
                _ => Registration::DeviceTaken,
            });
        }
        let key = sqlx::query(PG_ADD_DEVICE_KEY)
            .bind(&device.public_key)
            .bind(device.device.as_str())
            .bind(device.registered_at)
            .execute(&mut *tx)
            .await
            .ctx("recording a device key")?;
        if key.rows_affected() == 0 {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(Registration::KeyTaken);
        }
        tx.commit().await.ctx("committing a device")?;
        Ok(Registration::Created(DeviceRecord {
            rotated_at: None,
            revoked_at: None,
            ..device.clone()
        }))
    }

    async fn device(&self, device: &DeviceId) -> Result<Option<DeviceRecord>> {
        let row = sqlx::query(DEVICE)
            .bind(device.as_str())
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a device")?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn devices(&self, filter: &DeviceFilter, limit: i64) -> Result<Vec<DeviceRecord>> {
        let rows = sqlx::query(DEVICES)
            .bind(&filter.contributor)
            .bind(filter.registered_by)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("listing devices")?;
        rows.iter().map(device_from_row).collect()
    }

    async fn rotate_device_key(
        &self,
        device: &DeviceId,
        from_key: &str,
        to_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Rotation> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        // Compare and swap: of two rotations signed with the same old key, one wins.
        let rotated = sqlx::query(
            "UPDATE devices SET public_key = $3, rotated_at = $4 \
             WHERE device = $1 AND public_key = $2 AND revoked_at IS NULL RETURNING *",
        )
        .bind(device.as_str())
        .bind(from_key)
        .bind(to_key)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .ctx("rotating a device key")?;
        let Some(row) = rotated else {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(Rotation::Superseded);
        };
        let record = device_from_row(&row)?;
        let added = sqlx::query(PG_ADD_DEVICE_KEY)
            .bind(to_key)
            .bind(device.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .ctx("recording a device key")?;
        if added.rows_affected() == 0 {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(Rotation::KeyTaken);
        }
        sqlx::query(RETIRE_DEVICE_KEY)
            .bind(from_key)
            .bind(now)
            .execute(&mut *tx)
            .await
            .ctx("retiring a device key")?;
        tx.commit().await.ctx("committing a key rotation")?;
        Ok(Rotation::Rotated(record))
    }

    async fn revoke_device(&self, device: &DeviceId, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let done = sqlx::query(REVOKE_DEVICE)
            .bind(device.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .ctx("revoking a device")?;
        if done.rows_affected() == 0 {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(false);
        }
        sqlx::query(RETIRE_DEVICE_KEYS)
            .bind(device.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .ctx("retiring a device key")?;
        tx.commit().await.ctx("committing a revocation")?;
        Ok(true)
    }

    async fn claim_nonce(
        &self,
        device: &DeviceId,
        nonce: &str,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        sqlx::query(FORGET_NONCES)
            .bind(forget_before)
            .execute(&mut *tx)
            .await
            .ctx("forgetting old nonces")?;
        let done = sqlx::query(CLAIM_NONCE)
            .bind(device.as_str())
            .bind(nonce)
            .bind(now)
            .execute(&mut *tx)
            .await
            .ctx("recording a nonce")?;
        tx.commit().await.ctx("committing a nonce")?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl Access for SqliteStore {
    async fn create_api_key(&self, key: &NewApiKey, now: DateTime<Utc>) -> Result<ApiKeyRecord> {
        let row = sqlx::query(CREATE_API_KEY)
            .bind(&key.key_hash)
            .bind(&key.prefix)
            .bind(key.role.as_str())
            .bind(&key.contributor)
            .bind(micros(now))
            .bind(quota(key)?)
            .fetch_one(&self.pool)
            .await
            .ctx("creating an API key")?;
        key_from_row(&row)
    }

    async fn api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query(API_KEY_BY_HASH)
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an API key")?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query(API_KEYS)
            .fetch_all(&self.pool)
            .await
            .ctx("listing API keys")?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(REVOKE_API_KEY)
            .bind(id)
            .bind(micros(now))
            .execute(&self.pool)
            .await
            .ctx("revoking an API key")?;
        Ok(done.rows_affected() == 1)
    }

    async fn api_key_by_id(&self, id: i64) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query(API_KEY_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an API key")?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn register_device(&self, device: &DeviceRecord) -> Result<Registration> {
        let mut tx = self.write().await?;
        let existing = sqlx::query(DEVICE)
            .bind(device.device.as_str())
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a device")?;
        if let Some(row) = existing {
            tx.rollback().await.ctx("ending a transaction")?;
            let stored = device_from_row(&row)?;
            return Ok(if stored.is_registered_again_as(device) {
                Registration::Existing(stored)
            } else {
                Registration::DeviceTaken
            });
        }
        let key_used = sqlx::query("SELECT 1 FROM device_keys WHERE public_key = $1")
            .bind(&device.public_key)
            .fetch_optional(&mut *tx)
            .await
            .ctx("looking a public key up")?;
        if key_used.is_some() {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(Registration::KeyTaken);
        }
        sqlx::query(SQLITE_REGISTER_DEVICE)
            .bind(device.device.as_str())
            .bind(&device.public_key)
            .bind(&device.contributor)
            .bind(device.registered_by)
            .bind(micros(device.registered_at))
            .execute(&mut *tx)
            .await
            .ctx("registering a device")?;
        sqlx::query(SQLITE_ADD_DEVICE_KEY)
            .bind(&device.public_key)
            .bind(device.device.as_str())
            .bind(micros(device.registered_at))
            .execute(&mut *tx)
            .await
            .ctx("recording a device key")?;
        tx.commit().await.ctx("committing a device")?;
        Ok(Registration::Created(DeviceRecord {
            rotated_at: None,
            revoked_at: None,
            ..device.clone()
        }))
    }

    async fn device(&self, device: &DeviceId) -> Result<Option<DeviceRecord>> {
        let row = sqlx::query(DEVICE)
            .bind(device.as_str())
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a device")?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn devices(&self, filter: &DeviceFilter, limit: i64) -> Result<Vec<DeviceRecord>> {
        let rows = sqlx::query(DEVICES)
            .bind(&filter.contributor)
            .bind(filter.registered_by)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("listing devices")?;
        rows.iter().map(device_from_row).collect()
    }

    async fn rotate_device_key(
        &self,
        device: &DeviceId,
        from_key: &str,
        to_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Rotation> {
        let mut tx = self.write().await?;
        let current = sqlx::query(DEVICE)
            .bind(device.as_str())
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a device")?
            .as_ref()
            .map(device_from_row)
            .transpose()?;
        let Some(current) = current.filter(|d| d.revoked_at.is_none() && d.public_key == from_key)
        else {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(Rotation::Superseded);
        };
        let key_used = sqlx::query("SELECT 1 FROM device_keys WHERE public_key = $1")
            .bind(to_key)
            .fetch_optional(&mut *tx)
            .await
            .ctx("looking a public key up")?;
        if key_used.is_some() {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(Rotation::KeyTaken);
        }
        sqlx::query(RETIRE_DEVICE_KEY)
            .bind(from_key)
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .ctx("retiring a device key")?;
        sqlx::query(SQLITE_ADD_DEVICE_KEY)
            .bind(to_key)
            .bind(device.as_str())
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .ctx("recording a device key")?;
        sqlx::query("UPDATE devices SET public_key = $1, rotated_at = $2 WHERE device = $3")
            .bind(to_key)
            .bind(micros(now))
            .bind(device.as_str())
            .execute(&mut *tx)
            .await
            .ctx("rotating a device key")?;
        tx.commit().await.ctx("committing a key rotation")?;
        Ok(Rotation::Rotated(DeviceRecord {
            public_key: to_key.to_owned(),
            rotated_at: Some(now),
            ..current
        }))
    }

    async fn revoke_device(&self, device: &DeviceId, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(REVOKE_DEVICE)
            .bind(device.as_str())
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .ctx("revoking a device")?;
        if done.rows_affected() == 0 {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(false);
        }
        sqlx::query(RETIRE_DEVICE_KEYS)
            .bind(device.as_str())
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .ctx("retiring a device key")?;
        tx.commit().await.ctx("committing a revocation")?;
        Ok(true)
    }

    async fn claim_nonce(
        &self,
        device: &DeviceId,
        nonce: &str,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        sqlx::query(FORGET_NONCES)
            .bind(micros(forget_before))
            .execute(&mut *tx)
            .await
            .ctx("forgetting old nonces")?;
        let done = sqlx::query(CLAIM_NONCE)
            .bind(device.as_str())
            .bind(nonce)
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .ctx("recording a nonce")?;
        tx.commit().await.ctx("committing a nonce")?;
        Ok(done.rows_affected() == 1)
    }
}
