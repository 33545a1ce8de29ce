//! Map consumers: the gate in front of the public map endpoints, and their usage.
//!
//! A request with a consumer key is counted against the key's quota of requests per UTC day
//! (past it: `429 quota_exceeded`, with when it resets); any other request is held to the token
//! bucket of its client address. A key that is unknown or revoked is `401` — never quietly
//! treated as anonymous, so a consumer learns at once that its key stopped working. Keys of the
//! other roles pass as their client address does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{TimeDelta, Utc};
use covermap_domain::Role;
use serde::Deserialize;
use serde_json::json;

use crate::api::bad_query;
use crate::auth::{self, Caller};
use crate::ratelimit::Limiter;
use crate::usage::{self, Looker};
use crate::{ApiError, AppState};

/// What the public endpoints' gate needs: the server's state and the bucket of its routes.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub state: AppState,
    pub limiter: Arc<Limiter>,
}

/// Middleware: lets a request through as its looker (see the module's notes), or answers it.
pub(crate) async fn gate(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    // The body is not `Sync`: only the head is looked at while waiting on the store.
    let (head, body) = req.into_parts();
    match gate.looker(&head).await {
        Ok(looker) => usage::looking_as(looker, next.run(Request::from_parts(head, body))).await,
        Err(e) => e.into_response(),
    }
}

impl Gate {
    async fn looker(&self, req: &Parts) -> Result<Looker, ApiError> {
        let state = &self.state;
        let caller = auth::key_caller(state.store.as_ref(), &req.headers, &req.uri).await?;
        if let Some(Caller::Key(k)) = &caller
            && k.role == Role::Consumer
        {
            // The store refuses consumer keys without a quota; one read without is used up.
            let quota = k.quota_per_day.unwrap_or(0);
            state
                .usage
                .admit(state.store.as_ref(), k.id, quota, Utc::now())
                .await?
                .map_err(ApiError::QuotaExceeded)?;
            return Ok(Looker::Consumer(k.id));
        }
        let client = req
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| state.trusted_proxies.client(c.0.ip(), &req.headers));
        self.limiter
            .take(client, Instant::now())
            .map_err(|retry_after_s| ApiError::RateLimited { retry_after_s })?;
        Ok(Looker::Anonymous(client))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct UsageQuery {
    /// One key's (admins); a consumer reads its own only.
    key_id: Option<i64>,
    /// Days back from today (UTC), today included.
    days: Option<i64>,
}

/// `GET /api/v1/consumers/usage?key_id=N&days=D` (admin: every consumer key, or one; a consumer
/// key: its own): requests per key and UTC day, and of them those that looked at an area, by
/// area, for the last `D` days (30 by default, at most 400).
pub(crate) async fn usage(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = crate::admin::key_with_role(&state, &headers, &uri, &[Role::Consumer]).await?;
    let Query(q) = q.map_err(bad_query)?;
    let key_id = match (key.role, q.key_id) {
        (Role::Admin, asked) => asked,
        (_, Some(asked)) if asked != key.id => {
            return Err(ApiError::NotFound(format!("no key {asked} of yours")));
        }
        _ => Some(key.id),
    };
    let days = q.days.unwrap_or(30);
    if !(1..=400).contains(&days) {
        return Err(ApiError::bad_field(
            "invalid_days",
            "days",
            "days is 1 to 400",
        ));
    }
    let now = Utc::now();
    // What this process counted so far is written first, so the answer includes it.
    state.usage.flush(state.store.as_ref(), now).await;
    let since = now.date_naive() - TimeDelta::days(days - 1);
    let usage = state.store.consumer_usage(key_id, since).await?;
    Ok(Json(json!({ "since": since, "usage": usage })).into_response())
}
