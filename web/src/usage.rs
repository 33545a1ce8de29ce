//! Map consumers' demand: which areas the public map endpoints are asked about, counted per
//! epoch and area (an H3 cell at the policy's usage resolution) in memory and written to the
//! store every few seconds. The next epoch's demand multipliers read them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use covermap_domain::{BoundingBox, Cell};
use covermap_scoring::RewardPolicy;
use covermap_store::Store;
use tokio::sync::watch;

/// Boxes wider or taller than this (degrees) look at a region, not an area: not counted.
const MAX_SPAN_DEG: f64 = 0.5;

#[derive(Debug, Default)]
pub struct UsageMeter {
    counts: Mutex<HashMap<(u64, Cell), u64>>,
}

impl UsageMeter {
    /// Counts one request for the area at the centre of `bbox`.
    pub fn look(&self, policy: &RewardPolicy, bbox: &BoundingBox, now: DateTime<Utc>) {
        if bbox.east - bbox.west > MAX_SPAN_DEG || bbox.north - bbox.south > MAX_SPAN_DEG {
            return;
        }
        let Some(epoch) = policy.epoch_at(now) else {
            return;
        };
        let centre = h3o::LatLng::new(
            (bbox.south + bbox.north) / 2.0,
            (bbox.west + bbox.east) / 2.0,
        );
        let Ok(centre) = centre else { return };
        let area = Cell(centre.to_cell(policy.rules.demand.usage_resolution()));
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((epoch, area)).or_default() += 1;
        }
    }

    fn take(&self) -> Vec<(u64, Cell, u64)> {
        match self.counts.lock() {
            Ok(mut c) => c.drain().map(|((e, a), n)| (e, a, n)).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn put_back(&self, counts: Vec<(u64, Cell, u64)>) {
        if let Ok(mut c) = self.counts.lock() {
            for (e, a, n) in counts {
                *c.entry((e, a)).or_default() += n;
            }
        }
    }

    /// Writes what was counted; on failure keeps it for the next try.
    pub async fn flush(&self, store: &dyn Store) {
        let counts = self.take();
        if counts.is_empty() {
            return;
        }
        if let Err(e) = store.record_usage(&counts).await {
            tracing::warn!(error = %e, "usage not recorded; retrying later");
            self.put_back(counts);
        }
    }
}

/// Flushes the meter every `every` until `shutdown`, and once more then.
pub async fn run_flusher(
    meter: Arc<UsageMeter>,
    store: Arc<dyn Store>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stop = tokio::select! {
            () = tokio::time::sleep(every) => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        meter.flush(store.as_ref()).await;
        if stop {
            return;
        }
    }
}
