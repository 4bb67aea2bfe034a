//! The web UI on the HTTP port: `/ui` is one static page (`ui/page.html`,
//! plain HTML and JavaScript, no build step) that polls a small JSON API:
//!
//! - `POST /ui/login` `{"user", "password"}`: the same passwords as the pg
//!   and Flight ports (throttled alike; over TLS or from loopback only);
//!   answers a session cookie (a signed bearer token, `HttpOnly`,
//!   `SameSite=Strict`, `Secure` over TLS). `POST /ui/logout` clears it.
//! - `GET /ui/api/state`: running and recent queries (a superuser sees
//!   everyone's, others their own) and, for superusers, the executors with
//!   their state (`alive`, `lost`).
//! - `GET /ui/api/queries/{id}`: one query with its job's stages: the DAG
//!   (each stage's consumers) and live progress (partitions done / total,
//!   tasks running, rows written).
//! - `POST /ui/api/queries/{id}/cancel`: `sluice_cancel_query`'s rules;
//!   needs the `X-Sluice-UI` header (a cross-site form cannot send it).

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::guard::Peer;
use super::{Access, AppState};
use crate::auth::Principal;
use crate::frontend::credentials;
use crate::query::history::History;

const COOKIE: &str = "sluice_ui";
const PAGE: &str = include_str!("ui/page.html");

/// What the UI handlers share.
pub(super) struct Ui {
    pub(super) access: Arc<Access>,
    pub(super) history: Arc<History>,
}

/// The UI's routes (state: the HTTP port's).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/api/state", get(state))
        .route("/ui/api/queries/{id}", get(query))
        .route("/ui/api/queries/{id}/cancel", post(cancel))
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

async fn page() -> Response {
    let mut r = PAGE.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

async fn login(State(s): State<Arc<AppState>>, ConnectInfo(Peer(peer)): ConnectInfo<Peer>, body: Bytes) -> Response {
    let ui = &s.ui;
    let Ok(form) = serde_json::from_slice::<Login>(&body) else {
        return error(StatusCode::BAD_REQUEST, "expected {\"user\": ..., \"password\": ...}");
    };
    if !credentials::password_allowed(ui.access.tls, peer.ip()) {
        return error(
            StatusCode::FORBIDDEN,
            "passwords are accepted over TLS or from loopback only",
        );
    }
    match credentials::password_login(
        ui.access.auth.as_ref(),
        &form.user,
        &form.password,
        Some(peer.ip()),
        "http",
    )
    .await
    {
        Ok(principal) => {
            let token = ui.access.auth.issue_token(&principal);
            let secure = if ui.access.tls { "; Secure" } else { "" };
            let cookie = format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=43200{secure}");
            let mut r = json(StatusCode::OK, &serde_json::json!({ "user": principal.user }));
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(_) => error(StatusCode::UNAUTHORIZED, "authentication failed"),
    }
}

async fn logout() -> Response {
    let mut r = json(StatusCode::OK, &serde_json::json!({}));
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sluice_ui=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

/// The logged-in user of a request, from its session cookie.
fn principal(access: &Access, headers: &HeaderMap) -> Option<Principal> {
    let cookies = headers.get_all(header::COOKIE);
    let token = cookies
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("sluice_ui="))?;
    access.auth.verify_token(token).ok()
}

#[derive(Serialize)]
struct QueryView {
    id: String,
    user: String,
    protocol: &'static str,
    client_addr: Option<String>,
    state: &'static str,
    query: String,
    started: String,
    elapsed_s: f64,
    rows: u64,
    bytes: u64,
    reruns: u32,
    job_id: Option<String>,
    sqlstate: Option<String>,
    error: Option<String>,
}

#[derive(Serialize)]
struct ExecutorView {
    id: String,
    host: String,
    port: u16,
    task_slots: u32,
    state: &'static str,
    seconds_since_heartbeat: Option<u64>,
}

fn view(q: &crate::query::history::Query) -> QueryView {
    let s = q.snapshot();
    QueryView {
        id: q.id.clone(),
        user: q.user.clone(),
        protocol: q.protocol,
        client_addr: q.client_addr.clone(),
        state: s.state,
        query: q.text.clone(),
        started: q.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        elapsed_s: s.elapsed_s,
        rows: q.rows(),
        bytes: q.bytes(),
        reruns: s.reruns,
        job_id: s.job_id,
        sqlstate: s.sqlstate,
        error: s.error,
    }
}

/// The caller and whether it is a superuser; `None`: not logged in.
fn caller(s: &AppState, headers: &HeaderMap) -> Option<(Principal, bool)> {
    let p = principal(&s.ui.access, headers)?;
    let superuser = (s.ui.access.is_superuser)(&p.user);
    Some((p, superuser))
}

fn log_in_first() -> Response {
    error(StatusCode::UNAUTHORIZED, "log in first")
}

async fn state(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some((p, superuser)) = caller(&s, &headers) else {
        return log_in_first();
    };
    let queries: Vec<QueryView> =
        s.ui.history
            .list()
            .iter()
            .filter(|q| superuser || q.user == p.user)
            .take(200)
            .map(|q| view(q))
            .collect();
    let executors: Vec<ExecutorView> = if superuser {
        s.cluster
            .executors_now()
            .await
            .into_iter()
            .map(|e| ExecutorView {
                state: e.state.as_str(),
                seconds_since_heartbeat: e.heartbeat_age_secs(),
                id: e.id,
                host: e.host,
                port: e.port,
                task_slots: e.task_slots,
            })
            .collect()
    } else {
        Vec::new()
    };
    json(
        StatusCode::OK,
        &serde_json::json!({ "user": p.user, "superuser": superuser, "queries": queries, "executors": executors }),
    )
}

async fn query(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some((p, superuser)) = caller(&s, &headers) else {
        return log_in_first();
    };
    let Some(q) = s.ui.history.get(&id).filter(|q| superuser || q.user == p.user) else {
        return error(StatusCode::NOT_FOUND, "no such query");
    };
    let v = view(&q);
    let stages = match &v.job_id {
        Some(job) => s.cluster.job_stages(job).await,
        None => None,
    };
    json(StatusCode::OK, &serde_json::json!({ "query": v, "stages": stages }))
}

async fn cancel(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(id): Path<String>,
) -> Response {
    let Some((p, superuser)) = caller(&s, &headers) else {
        return log_in_first();
    };
    if !headers.contains_key("x-sluice-ui") {
        return error(StatusCode::FORBIDDEN, "missing the X-Sluice-UI header");
    }
    let by: IpAddr = peer.ip();
    tracing::info!(query_id = id, user = p.user, peer = %by, "cancel from the web UI");
    match s.ui.history.cancel(&id, &p.user, superuser) {
        Ok(cancelled) => json(StatusCode::OK, &serde_json::json!({ "cancelled": cancelled })),
        Err(e) => error(StatusCode::FORBIDDEN, &e.message),
    }
}
