//! The rewards ledger, open to anyone: epochs with their manifests and Merkle roots, the files
//! of their inputs, each contributor's rewards, and the proof that a contributor's cumulative
//! total is in a root.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use covermap_scoring::epoch::leaves_of;
use covermap_scoring::ledger::{self, MerkleTree};
use serde::Deserialize;
use serde_json::json;

use crate::api::bad_query;
use crate::{ApiError, AppState};

/// `GET /api/v1/epochs`: every epoch claimed or closed.
pub(crate) async fn epochs(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(json!({"epochs": state.store.epochs().await?})).into_response())
}

fn epoch_number(s: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| {
        ApiError::bad_request("invalid_epoch", format!("{s:?} is not an epoch number"))
    })
}

/// `GET /api/v1/epochs/{n}`: a closed epoch's manifest, penalties, bounty claims and policy.
pub(crate) async fn epoch(
    State(state): State<AppState>,
    Path(n): Path<String>,
) -> Result<Response, ApiError> {
    let n = epoch_number(&n)?;
    let stored = state
        .store
        .closed_epoch(n)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("epoch {n} is not closed")))?;
    let penalties = state.store.epoch_penalties(n).await?;
    Ok(Json(json!({
        "manifest": stored.manifest,
        "closed_at": stored.record.closed_at,
        "penalties": penalties,
        "policy": stored.policy,
    }))
    .into_response())
}

/// `GET /published/epochs/{n}/…`: a closed epoch's published manifest and input files, as the
/// object store holds them, so `covermap epoch verify --from http://HOST/published` can check a
/// root with no database. Nothing but published epochs' keys is handed out.
pub(crate) async fn published(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    use axum::http::header;
    use covermap_store::published::{MANIFEST, POLICY, is_published_key};
    if !is_published_key(&key) {
        return Err(ApiError::NotFound(format!(
            "{key:?} is not a published epoch's file: epochs/N/{MANIFEST} names them"
        )));
    }
    let bytes = match state.blobs.get_published(&key).await {
        Ok(bytes) => bytes,
        Err(covermap_store::StoreError::BlobMissing { .. }) => {
            return Err(ApiError::NotFound(format!("{key} is not published")));
        }
        Err(e) => return Err(e.into()),
    };
    let content_type = if key.ends_with(MANIFEST) {
        "application/json"
    } else if key.ends_with(POLICY) {
        "application/toml"
    } else {
        "application/vnd.apache.parquet"
    };
    // Files live under their sha256 and never change; a manifest is written once an epoch
    // closed, but a client may ask before it is.
    let cache = if key.ends_with(MANIFEST) {
        "public, max-age=60"
    } else {
        "public, max-age=31536000, immutable"
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /api/v1/rewards/{contributor}`: its reward in every closed epoch, oldest first.
pub(crate) async fn contributor(
    State(state): State<AppState>,
    Path(who): Path<String>,
) -> Result<Response, ApiError> {
    let rows = state.store.contributor_rewards(&who).await?;
    let epochs: Vec<_> = rows
        .into_iter()
        .map(|(epoch, r)| {
            json!({
                "epoch": epoch,
                "points": r.points,
                "base": r.base,
                "bounty": r.bounty,
                "amount": r.amount,
                "cumulative": r.cumulative.to_string(),
                "flagged": r.flagged,
            })
        })
        .collect();
    Ok(Json(json!({"contributor": who, "epochs": epochs})).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProofQuery {
    epoch: Option<u64>,
}

/// `GET /api/v1/rewards/{contributor}/proof?epoch=N`: the contributor's leaf in epoch N's
/// ledger (the newest closed epoch by default) and the sibling hashes that lead to its root.
pub(crate) async fn proof(
    State(state): State<AppState>,
    Path(who): Path<String>,
    q: Result<Query<ProofQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let n = match q.epoch {
        Some(n) => n,
        None => state
            .store
            .last_closed_epoch()
            .await?
            .ok_or_else(|| ApiError::NotFound("no epoch is closed yet".into()))?,
    };
    let stored = state
        .store
        .closed_epoch(n)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("epoch {n} is not closed")))?;
    let rewards = state.store.epoch_rewards(n).await?;
    let leaves = leaves_of(n, &stored.manifest.distributor, &rewards);
    let leaf = leaves
        .iter()
        .find(|l| l.contributor == who)
        .ok_or_else(|| {
            ApiError::NotFound(format!("{who:?} has no reward in the ledger of epoch {n}"))
        })?;
    let tree = MerkleTree::new(&leaves);
    let root = hex::encode(tree.root());
    if root != stored.manifest.root {
        return Err(ApiError::Store(covermap_store::StoreError::Corrupt(
            format!(
                "epoch {n}'s stored rewards give root {root}, not the manifest's {}",
                stored.manifest.root
            ),
        )));
    }
    let proof = tree.proof(leaf).unwrap_or_default();
    debug_assert!(ledger::verify(leaf, &proof, &tree.root()));
    Ok(Json(json!({
        "epoch": n,
        "distributor": leaf.distributor,
        "contributor": leaf.contributor,
        "cumulative": leaf.cumulative.to_string(),
        "leaf": hex::encode(leaf.hash()),
        "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        "root": root,
        "scheme": "leaf = sha256(0x00 ‖ epoch u64be ‖ len u32be ‖ distributor ‖ len u32be ‖ contributor ‖ cumulative u128be); node = sha256(0x01 ‖ min(a,b) ‖ max(a,b))",
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct SimulateQuery {
    epoch: u64,
}

/// Largest policy file a what-if accepts (the route's body limit: larger is `413`).
pub(crate) const MAX_POLICY_BYTES: usize = 64 * 1024;

/// `POST /api/v1/policy/simulate?epoch=N` with a policy TOML as the body (planners and
/// admins): what epoch N would have paid under it.
pub(crate) async fn simulate_handler(
    State(state): State<AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    q: Result<Query<SimulateQuery>, QueryRejection>,
    body: crate::body::Body,
) -> Result<Response, ApiError> {
    crate::auth::reader(
        state.store.as_ref(),
        &method,
        &uri,
        &headers,
        &[covermap_domain::Role::Planner],
    )
    .await?;
    let Query(q) = q.map_err(bad_query)?;
    let body = crate::body::within(body, MAX_POLICY_BYTES)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_policy", "the policy is not UTF-8 text"))?;
    let proposed = covermap_scoring::RewardPolicy::parse(text)
        .map_err(|e| ApiError::bad_request("invalid_policy", e.to_string()))?;
    let sim = covermap_pipeline::epochs::simulate(state.store.as_ref(), q.epoch, proposed).await?;
    Ok(Json(sim).into_response())
}

/// `GET /api/v1/policy`: the reward policy in force — version, hash, its text —, the schedule
/// of the next epochs, and the policies in force over time (`in_force`: from which epoch, which
/// version and hash, and the proposal that brought it in).
pub(crate) async fn policy(State(state): State<AppState>) -> Result<Response, ApiError> {
    let p = &state.policy.now();
    let now = chrono::Utc::now();
    let e = &p.rules.epoch;
    let current = p.epoch_at(now);
    let first = current.unwrap_or(0);
    let schedule: Vec<_> = (first..first.saturating_add(8))
        .filter_map(|n| p.period(n).map(|period| (n, period)))
        .map(|(n, period)| {
            json!({
                "epoch": n,
                "start": period.start,
                "end": period.end,
                "emission": e.emission,
                "closes_after": period.end + chrono::Duration::seconds(e.grace_seconds as i64),
            })
        })
        .collect();
    Ok(Json(json!({
        "version": p.rules.version,
        "hash": p.hash,
        "text": p.source,
        "epoch": {
            "genesis": e.genesis,
            "length_seconds": e.length_seconds,
            "grace_seconds": e.grace_seconds,
            "emission": e.emission,
        },
        "current_epoch": current,
        "schedule": schedule,
        "in_force": crate::governance::schedule(&state).await?,
    }))
    .into_response())
}

/// `GET /api/v1/me`: who the key (or signing device) is.
pub(crate) async fn me(
    State(state): State<AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let caller = crate::auth::reader(
        state.store.as_ref(),
        &method,
        &uri,
        &headers,
        &covermap_domain::Role::ALL,
    )
    .await?;
    Ok(Json(match caller {
        crate::auth::Caller::Key(k) => json!({
            "role": k.role, "contributor": k.contributor, "key_id": k.id, "prefix": k.prefix,
        }),
        crate::auth::Caller::Device(d) => json!({
            "role": covermap_domain::Role::Device, "contributor": d.contributor,
            "device": d.device, "key_id": d.registered_by,
        }),
    })
    .into_response())
}
