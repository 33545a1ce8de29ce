use thiserror::Error;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot connect to database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error while {context}: {source}")]
    Sql {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("object store {url}: {message}")]
    Blob { url: String, message: String },
    #[error("blob {key} not found")]
    BlobMissing { key: String },
    #[error(
        "job {job_id}: the lease is no longer held (it ran out and another worker took the job)"
    )]
    LeaseLost { job_id: i64 },
    /// The upload a job was for was erased meanwhile: its results are refused (and the job
    /// ended), so nothing of it comes back.
    #[error("upload {upload_id} was erased; the job's results are discarded")]
    Erased { upload_id: i64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Config(String),
    /// The thing a write is about does not exist (a decision on a frame that was not refused).
    #[error("{0}")]
    NotFound(String),
    /// The write contradicts what is stored (a device registered with another key, a part at
    /// the wrong offset).
    #[error("{0}")]
    Conflict(String),
}

pub(crate) trait SqlContext<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T> SqlContext<T> for std::result::Result<T, sqlx::Error> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|source| StoreError::Sql { context, source })
    }
}

impl From<covermap_domain::InvalidValue> for StoreError {
    fn from(e: covermap_domain::InvalidValue) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// A database URL with any password replaced, fit for logs and error messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
