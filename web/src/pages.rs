//! The web UI: four pages (the coverage map, and the planners', auditors' and drivers' pages)
//! with their scripts and style compiled into the binary, and MapLibre GL JS served from the npm
//! package installed in `web/node_modules` (`npm ci --prefix web`) — no CDN, so the map works
//! offline. The folder is the server's `web_vendor` setting (`--web-vendor`, `COVERMAP_WEB_VENDOR`)
//! where the binary runs away from its checkout.

use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};

use crate::{ApiError, AppState};

pub(crate) async fn index() -> Html<&'static str> {
    Html(include_str!("../assets/index.html"))
}

pub(crate) async fn planner() -> Html<&'static str> {
    Html(include_str!("../assets/planner.html"))
}

pub(crate) async fn auditor() -> Html<&'static str> {
    Html(include_str!("../assets/auditor.html"))
}

pub(crate) async fn driver() -> Html<&'static str> {
    Html(include_str!("../assets/driver.html"))
}

/// `GET /openapi.json`: the HTTP API as OpenAPI 3.1.
pub(crate) async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../assets/openapi.json"),
    )
}

/// The pages' scripts and style, by file name.
const ASSETS: [(&str, &str); 6] = [
    ("style.css", include_str!("../assets/style.css")),
    ("common.js", include_str!("../assets/common.js")),
    ("map.js", include_str!("../assets/map.js")),
    ("planner.js", include_str!("../assets/planner.js")),
    ("auditor.js", include_str!("../assets/auditor.js")),
    ("driver.js", include_str!("../assets/driver.js")),
];

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `GET /assets/{file}`.
pub(crate) async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (_, body) = ASSETS
        .iter()
        .find(|(name, _)| *name == file)
        .ok_or_else(|| ApiError::NotFound(format!("no asset {file:?}")))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(&file)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        *body,
    )
        .into_response())
}

/// Where `npm ci --prefix web` put MapLibre GL JS's `dist` folder, in the checkout this binary
/// was built from (a deployment names another folder in its configuration).
pub fn bundled_vendor_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/node_modules/maplibre-gl/dist"
    ))
}

/// `GET /vendor/maplibre-gl/{file}`: MapLibre's script, style sheet and source map.
pub(crate) async fn maplibre(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    const FILES: [&str; 3] = ["maplibre-gl.js", "maplibre-gl.css", "maplibre-gl.js.map"];
    if !FILES.contains(&file.as_str()) {
        return Err(ApiError::NotFound(format!("no vendor file {file:?}")));
    }
    let path = state.web_vendor.join(&file);
    let body = tokio::fs::read(&path).await.map_err(|e| {
        tracing::warn!(path = %path.display(), error = %e, "MapLibre GL JS is not installed");
        ApiError::NotFound(
            "MapLibre GL JS is not installed on this server; its operator runs \
             `npm ci --prefix web` (or names its dist folder with --web-vendor)"
                .into(),
        )
    })?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(&file)),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every route the router serves is in the OpenAPI document, and nothing else is.
    #[test]
    fn openapi_documents_every_route() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../assets/openapi.json")).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let documented: BTreeSet<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        let source = include_str!("lib.rs");
        let routed: BTreeSet<String> = source
            .split(".route(")
            .skip(1)
            .filter_map(|rest| {
                let rest = rest.trim_start().strip_prefix('"')?;
                Some(rest[..rest.find('"')?].to_owned())
            })
            .collect();
        assert!(routed.len() > 40, "{routed:?}");
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty(),
            "routes missing from openapi.json: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "openapi.json documents routes that do not exist: {extra:?}"
        );
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} has responses"
                );
            }
        }
    }
}
