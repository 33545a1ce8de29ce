//! The policy's governance over HTTP: proposals anyone can read, made by contributors (a
//! request signed by one of their devices), planners or admins; ballots signed by a
//! contributor's device. Everything needed to check a count — the policy text, the rules it is
//! voted under, the electorate, every signed ballot — is public (see
//! `covermap_pipeline::governance`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use covermap_domain::Role;
use covermap_ingest::access::SignedHeaders;
use covermap_pipeline::governance::{self, GovernanceError, Proposing, SignedBallot};
use covermap_scoring::governance::Choice;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{self, Caller};
use crate::body::{self, Body};
use crate::{ApiError, AppState};

/// Largest proposal body: the policy file (as `/api/v1/policy/simulate` takes it), a title
/// and a rationale.
pub(crate) const MAX_PROPOSAL_BYTES: usize = crate::rewards::MAX_POLICY_BYTES + 128 * 1024;

impl From<GovernanceError> for ApiError {
    fn from(e: GovernanceError) -> Self {
        match e {
            GovernanceError::InvalidPolicy(_) => {
                ApiError::bad_field("invalid_policy", "policy", e.to_string())
            }
            GovernanceError::Proposal(ref p) => {
                use covermap_scoring::governance::ProposalError;
                let field = match p {
                    ProposalError::Text { field, .. } => *field,
                    _ => "policy",
                };
                ApiError::bad_field("invalid_proposal", field, e.to_string())
            }
            GovernanceError::TooManyOpen(..) => ApiError::Conflict {
                code: "too_many_open_proposals",
                message: e.to_string(),
                extra: json!({}),
            },
            GovernanceError::NoProposal(_) => ApiError::NotFound(e.to_string()),
            GovernanceError::NotEligible(..) => ApiError::Conflict {
                code: "not_eligible",
                message: e.to_string(),
                extra: json!({}),
            },
            GovernanceError::TooManyBallots(_) => ApiError::Conflict {
                code: "too_many_ballots",
                message: e.to_string(),
                extra: json!({}),
            },
            GovernanceError::Unsigned => ApiError::bad_request("ballot_not_signed", e.to_string()),
            GovernanceError::Store(s) => ApiError::Store(s),
            GovernanceError::Epoch(ep) => ep.into(),
            other => ApiError::Store(covermap_store::StoreError::Corrupt(other.to_string())),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProposalRequest {
    title: String,
    #[serde(default)]
    rationale: String,
    /// The proposed policy file's text (TOML).
    policy: String,
}

/// `POST /api/v1/policy/proposals` (a contributor's signed device or device key, a planner or an
/// admin): `{"title", "rationale", "policy"}`. `201` with the proposal in full: its simulated
/// effect on the last closed epochs, its electorate, and when its vote closes.
pub(crate) async fn propose(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let raw = body::within(body, MAX_PROPOSAL_BYTES)?;
    let now = Utc::now();
    let caller = auth::caller(state.store.as_ref(), &method, &uri, &headers, &raw, now).await?;
    caller.require(&[Role::Device, Role::Planner, Role::Admin])?;
    let proposer = match &caller {
        Caller::Device(d) => d.contributor.clone(),
        Caller::Key(k) if k.role == Role::Device => k.contributor.clone(),
        Caller::Key(_) => Some(caller.name()),
    }
    .ok_or_else(|| {
        ApiError::bad_request(
            "no_contributor",
            "a device proposes for its contributor; this one is bound to none",
        )
    })?;
    let req: ProposalRequest = body::json(&raw, "invalid_proposal")?;
    let record = governance::propose(
        state.store.as_ref(),
        &state.policy,
        Proposing {
            proposed_by: &proposer,
            title: &req.title,
            rationale: &req.rationale,
            policy: &req.policy,
        },
        now,
    )
    .await?;
    let view = governance::view(state.store.as_ref(), record.id, now).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    limit: Option<i64>,
}

/// `GET /api/v1/policy/proposals[?limit=N]`: proposals, newest first, with their results once
/// decided.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let _ = governance::settle(state.store.as_ref(), &state.policy, Utc::now()).await?;
    let proposals = state.store.proposals(limit).await?;
    Ok(Json(json!({ "proposals": proposals })).into_response())
}

fn proposal_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::bad_request("invalid_id", format!("proposal id {id:?} is not a number"))
    })
}

/// `GET /api/v1/policy/proposals/{id}`: the proposal in full — its policy text, voting rules,
/// simulated effect, electorate, every signed ballot (with whether its signature holds) and
/// the count.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = proposal_id(&id)?;
    let now = Utc::now();
    let _ = governance::settle(state.store.as_ref(), &state.policy, now).await?;
    Ok(Json(governance::view(state.store.as_ref(), id, now).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BallotBody {
    choice: String,
}

/// `POST /api/v1/policy/proposals/{id}/votes` (signed by a device bound to a contributor, with
/// a covermap-signature-v2): `{"choice": "yes" | "no" | "abstain"}`. The signed request is kept
/// whole as the ballot; the contributor's last ballot before the vote closes counts. `201` with
/// the ballot; `409 not_eligible` for a contributor outside the electorate, `409 conflict` once
/// the vote closed.
pub(crate) async fn vote(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let raw = body::within(body, body::MAX_JSON_BYTES)?;
    let id = proposal_id(&id)?;
    let now = Utc::now();
    let caller =
        auth::signed_device(state.store.as_ref(), &method, &uri, &headers, &raw, now).await?;
    let Caller::Device(device) = caller else {
        return Err(GovernanceError::Unsigned.into());
    };
    let contributor = device.contributor.clone().ok_or_else(|| {
        ApiError::bad_request(
            "no_contributor",
            "a ballot is cast by a device bound to a contributor; this one is bound to none",
        )
    })?;
    let ballot: BallotBody = body::json(&raw, "invalid_ballot")?;
    let choice: Choice = ballot
        .choice
        .parse()
        .map_err(|m: String| ApiError::bad_field("invalid_ballot", "choice", m))?;
    let signed = SignedHeaders::read(|h| headers.get(h).and_then(|v| v.to_str().ok()))?;
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let record = governance::cast(
        state.store.as_ref(),
        SignedBallot {
            proposal: id,
            contributor: &contributor,
            device: device.device.as_str(),
            public_key: &device.public_key,
            choice,
            method: method.as_str(),
            path,
            body: &raw,
            signed_at: signed.timestamp,
            nonce: &signed.nonce,
            signature_hex: &hex::encode(signed.signature),
        },
        now,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// The schedule of policies in force, for `GET /api/v1/policy`.
pub(crate) async fn schedule(state: &AppState) -> Result<serde_json::Value, ApiError> {
    Ok(json!(state.store.policy_schedule().await?))
}
