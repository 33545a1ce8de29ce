//! The real differences between the two backends, in one place; every capability's queries are
//! written once where the SQL is the same.
//!
//! - **Placeholders** are the same: both backends take `$1`, `$2`, … (sqlx's SQLite driver binds
//!   `$N` by its number), so a query both backends run is one `const` beside its capability.
//! - **Times** differ: `timestamptz` on PostGIS, microseconds since 1970 in an `INTEGER` on
//!   SQLite. Rows are read through [`Columns`], which knows which; values are bound as
//!   [`DateTime`] on PostGIS and as [`micros`] on SQLite.
//! - **Geometry** differs: PostGIS keeps `geometry(…, 4326)` columns with GiST indexes and
//!   answers spatial questions in SQL; SQLite keeps coordinates as numbers and JSON, and cells'
//!   boxes are compared on their centres.
//! - **Writers** differ: PostGIS takes row locks (`FOR UPDATE SKIP LOCKED`, advisory locks);
//!   SQLite has one writer, taken up front with `BEGIN IMMEDIATE` (see `SqliteStore::write`).
//! - **Types** differ a little: SQLite's `SUM` of integers is an integer where PostgreSQL's is
//!   `numeric`, so shared queries write `CAST(… AS bigint)`, which both read as `i64`.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Postgres, Row, Sqlite, Type};

use crate::error::{Result, StoreError};

/// A value both backends decode the same way: integers, floats, text, booleans, bytes, and
/// `Option`s of them.
pub(crate) trait Shared:
    for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

impl<T> Shared for T where
    T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

/// A row of either backend, read by column name. A missing column or a value of another type
/// is [`StoreError::Corrupt`], never a panic.
pub(crate) trait Columns {
    /// A column that both backends store alike.
    fn col<T: Shared>(&self, name: &'static str) -> Result<T>;

    /// A time column.
    fn time(&self, name: &'static str) -> Result<DateTime<Utc>>;

    /// A time column that may be null.
    fn opt_time(&self, name: &'static str) -> Result<Option<DateTime<Utc>>>;

    /// A stored word of one of the domain's vocabularies (a status, a role, a kind).
    fn word<T>(&self, name: &'static str) -> Result<T>
    where
        T: std::str::FromStr,
        StoreError: From<T::Err>,
    {
        Ok(self.col::<String>(name)?.parse()?)
    }

    /// A stored word that may be null.
    fn opt_word<T>(&self, name: &'static str) -> Result<Option<T>>
    where
        T: std::str::FromStr,
        StoreError: From<T::Err>,
    {
        Ok(self
            .col::<Option<String>>(name)?
            .map(|w| w.parse())
            .transpose()?)
    }
}

fn corrupt(name: &str, e: &sqlx::Error) -> StoreError {
    StoreError::Corrupt(format!("column {name}: {e}"))
}

impl Columns for PgRow {
    fn col<T: Shared>(&self, name: &'static str) -> Result<T> {
        self.try_get(name).map_err(|e| corrupt(name, &e))
    }

    fn time(&self, name: &'static str) -> Result<DateTime<Utc>> {
        self.try_get(name).map_err(|e| corrupt(name, &e))
    }

    fn opt_time(&self, name: &'static str) -> Result<Option<DateTime<Utc>>> {
        self.try_get(name).map_err(|e| corrupt(name, &e))
    }
}

impl Columns for SqliteRow {
    fn col<T: Shared>(&self, name: &'static str) -> Result<T> {
        self.try_get(name).map_err(|e| corrupt(name, &e))
    }

    fn time(&self, name: &'static str) -> Result<DateTime<Utc>> {
        time(self.col(name)?)
    }

    fn opt_time(&self, name: &'static str) -> Result<Option<DateTime<Utc>>> {
        self.col::<Option<i64>>(name)?.map(time).transpose()
    }
}

/// A time as SQLite keeps it: microseconds since 1970.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A time SQLite kept, back.
pub(crate) fn time(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {us} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_times_round_trip_to_the_microsecond() {
        let t = DateTime::parse_from_rfc3339("2026-12-07T01:02:03.456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(time(micros(t)).unwrap(), t);
        assert!(matches!(time(i64::MAX), Err(StoreError::Corrupt(_))));
    }
}
