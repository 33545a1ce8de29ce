//! Content-addressed blobs (raw uploads, later derivatives and ledgers) in any object store.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};

/// Where a blob lives and what it is: its key is derived from its sha256, so the same bytes are
/// stored once, and a key names exactly one content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub sha256: String,
    pub key: String,
    pub size: u64,
}

impl BlobRef {
    pub fn of(bytes: &[u8]) -> Self {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let key = format!("sha256/{}/{}", &sha256[..2], sha256);
        Self {
            sha256,
            key,
            size: bytes.len() as u64,
        }
    }
}

#[derive(Clone)]
pub struct Blobs {
    url: String,
    inner: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").field("url", &self.url).finish()
    }
}

impl Blobs {
    /// Opens the object store `location` names — `file:///dir`, a plain directory path,
    /// `memory://`, `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix` (cloud
    /// credentials from the usual environment variables) — and checks that it takes writes.
    pub async fn open(location: &str) -> Result<Self> {
        let blobs = Self::unchecked(location, false)?;
        blobs.check_writable().await?;
        Ok(blobs)
    }

    /// Opens an object store to read published epochs from, with no write probe: whatever
    /// [`Blobs::open`] takes, and besides `http://` and `https://` (a web server or a bucket's
    /// public address, read with plain GETs).
    pub fn open_to_read(location: &str) -> Result<Self> {
        Self::unchecked(location, true)
    }

    fn unchecked(location: &str, plain_http: bool) -> Result<Self> {
        let fail = |message: String| StoreError::Blob {
            url: location.to_owned(),
            message,
        };
        let inner: Arc<dyn ObjectStore> = if location == "memory://" {
            Arc::new(object_store::memory::InMemory::new())
        } else if plain_http
            && (location.starts_with("http://") || location.starts_with("https://"))
        {
            Arc::new(
                object_store::http::HttpBuilder::new()
                    .with_url(location.trim_end_matches('/'))
                    .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
                    .build()
                    .map_err(|e| fail(e.to_string()))?,
            )
        } else if let Some(scheme) = ["s3", "gs", "az", "abfs", "abfss", "https"]
            .into_iter()
            .find(|s| location.starts_with(&format!("{s}://")))
        {
            let url = url::Url::parse(location).map_err(|e| fail(e.to_string()))?;
            let store = cloud_store(scheme, location).map_err(|e| fail(e.to_string()))?;
            let prefix = url.path().trim_matches('/');
            if prefix.is_empty() {
                store
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
            }
        } else {
            let dir = match location.strip_prefix("file://") {
                Some(path) => std::path::PathBuf::from(path),
                None if location.contains("://") => {
                    return Err(fail(
                        "unknown scheme; use file://, s3://, gs://, az:// or memory://".into(),
                    ));
                }
                None => std::path::PathBuf::from(location),
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| fail(format!("cannot create directory {}: {e}", dir.display())))?;
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| fail(e.to_string()))?,
            )
        };
        Ok(Self {
            url: location.to_owned(),
            inner,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn check_writable(&self) -> Result<()> {
        let probe = ObjectPath::from(format!(".covermap-probe/{}", uuid::Uuid::new_v4()));
        self.inner
            .put(&probe, PutPayload::from_static(b"probe"))
            .await
            .map_err(|e| self.error(format!("not writable: {e}")))?;
        self.inner
            .delete(&probe)
            .await
            .map_err(|e| self.error(format!("cannot delete a probe object: {e}")))?;
        Ok(())
    }

    /// Stores `bytes` under their content address; storing the same bytes again is harmless.
    pub async fn put(&self, bytes: Bytes) -> Result<BlobRef> {
        let blob = BlobRef::of(&bytes);
        self.inner
            .put(
                &ObjectPath::from(blob.key.as_str()),
                PutPayload::from(bytes),
            )
            .await
            .map_err(|e| self.error(format!("writing {}: {e}", blob.key)))?;
        Ok(blob)
    }

    /// Stores a part of a resumable upload under `staging/{session}/{offset}-{tag}`: not content
    /// addressed, so that deleting it can never remove an upload's blob.
    pub async fn put_staged(
        &self,
        session: &str,
        offset: i64,
        tag: String,
        bytes: Bytes,
    ) -> Result<String> {
        let key = format!("staging/{session}/{offset:020}-{tag}");
        self.inner
            .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
            .await
            .map_err(|e| self.error(format!("writing {key}: {e}")))?;
        Ok(key)
    }

    /// Reads a staged part.
    pub async fn get_staged(&self, key: &str) -> Result<Bytes> {
        if !key.starts_with("staging/") {
            return Err(StoreError::Corrupt(format!("{key} is not a staged part")));
        }
        let got = self
            .inner
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| self.error(format!("reading {key}: {e}")))?;
        got.bytes()
            .await
            .map_err(|e| self.error(format!("reading {key}: {e}")))
    }

    /// Deletes staged parts; a part already gone is not an error.
    pub async fn delete_staged(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            if !key.starts_with("staging/") {
                return Err(StoreError::Corrupt(format!("{key} is not a staged part")));
            }
            match self.inner.delete(&ObjectPath::from(key.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(format!("deleting {key}: {e}"))),
            }
        }
        Ok(())
    }

    /// Deletes a blob (a private original past its retention); one already gone is not an
    /// error, so a sweep interrupted half-way can be run again.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.inner.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(format!("deleting {key}: {e}"))),
        }
    }

    /// Whether anything is stored under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.inner.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(format!("looking for {key}: {e}"))),
        }
    }

    /// Reads a blob and checks it still hashes to its key.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let bytes = self.read(key).await?;
        if !key.ends_with(&BlobRef::of(&bytes).sha256) {
            return Err(StoreError::Corrupt(format!(
                "blob {key} does not hash to its key"
            )));
        }
        Ok(bytes)
    }

    /// Writes one of a published epoch's files or its manifest (keys as
    /// [`crate::published`] names them; nothing else can be written this way).
    pub async fn put_published(&self, key: &str, bytes: Bytes) -> Result<()> {
        if !crate::published::is_published_key(key) {
            return Err(StoreError::Corrupt(format!(
                "{key} is not a published epoch's key"
            )));
        }
        self.inner
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await
            .map_err(|e| self.error(format!("writing {key}: {e}")))?;
        Ok(())
    }

    /// Reads one of a published epoch's files or its manifest; [`StoreError::BlobMissing`]
    /// when it is not there.
    pub async fn get_published(&self, key: &str) -> Result<Bytes> {
        self.get_published_at_most(key, u64::MAX).await
    }

    /// Like [`Blobs::get_published`], but refuses (without reading on) more than `max` bytes:
    /// what a verifier reads from a server it does not trust.
    pub async fn get_published_at_most(&self, key: &str, max: u64) -> Result<Bytes> {
        use futures::StreamExt;
        if !crate::published::is_published_key(key) {
            return Err(StoreError::BlobMissing {
                key: key.to_owned(),
            });
        }
        let got = self.get_result(key).await?;
        let mut out = Vec::new();
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(format!("reading {key}: {e}")))?;
            if (out.len() + chunk.len()) as u64 > max {
                return Err(self.error(format!("{key} holds more than {max} bytes")));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    /// The bytes under `key`; [`StoreError::BlobMissing`] when there are none.
    async fn read(&self, key: &str) -> Result<Bytes> {
        self.get_result(key)
            .await?
            .bytes()
            .await
            .map_err(|e| self.error(format!("reading {key}: {e}")))
    }

    async fn get_result(&self, key: &str) -> Result<object_store::GetResult> {
        match self.inner.get(&ObjectPath::from(key)).await {
            Ok(got) => Ok(got),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::BlobMissing {
                key: key.to_owned(),
            }),
            Err(e) => Err(self.error(format!("reading {key}: {e}"))),
        }
    }

    fn error(&self, message: String) -> StoreError {
        StoreError::Blob {
            url: self.url.clone(),
            message,
        }
    }
}

fn cloud_store(scheme: &str, url: &str) -> object_store::Result<Arc<dyn ObjectStore>> {
    // The library's default keeps retrying for three minutes; a misconfigured endpoint should
    // be reported in seconds, and a flaky one still gets a few tries.
    let retry = object_store::RetryConfig {
        max_retries: 4,
        retry_timeout: std::time::Duration::from_secs(20),
        ..Default::default()
    };
    Ok(match scheme {
        "s3" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .with_retry(retry)
                .build()?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .with_retry(retry)
                .build()?,
        ),
        _ => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .with_retry(retry)
                .build()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_bytes_same_key_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().to_str().unwrap()).await.unwrap();
        let a = blobs.put(Bytes::from_static(b"hello")).await.unwrap();
        let b = blobs.put(Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(
            blobs.get(&a.key).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        assert!(matches!(
            blobs.get("sha256/00/00").await,
            Err(StoreError::BlobMissing { .. })
        ));
        assert!(blobs.exists(&a.key).await.unwrap());
        blobs.delete(&a.key).await.unwrap();
        assert!(!blobs.exists(&a.key).await.unwrap());
    }

    #[tokio::test]
    async fn tampered_blob_is_reported_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().to_str().unwrap()).await.unwrap();
        let a = blobs.put(Bytes::from_static(b"hello")).await.unwrap();
        std::fs::write(dir.path().join(&a.key), b"evil").unwrap();
        assert!(matches!(
            blobs.get(&a.key).await,
            Err(StoreError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn unwritable_directory_is_a_clear_error() {
        let err = Blobs::open("/proc/covermap-cannot-write-here")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/proc/covermap-cannot-write-here"), "{text}");
    }

    #[tokio::test]
    async fn unknown_scheme_is_refused() {
        let err = Blobs::open("ftp://example.org/x").await.unwrap_err();
        assert!(err.to_string().contains("unknown scheme"), "{err}");
    }
}
