//! Per-connection session state shared by both front ends: the user, the
//! DataFusion session (default schema, settings), Postgres GUCs, the
//! transaction flag and the cancel switch of the running statement.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::execution::session_state::SessionState;
use tokio_util::sync::CancellationToken;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Postgres settings a session starts with; `SHOW` answers from here.
const DEFAULT_GUCS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    ("jit", "off"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("max_identifier_length", "63"),
    ("search_path", "\"default\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", crate::PG_SERVER_VERSION),
    ("server_version_num", crate::PG_SERVER_VERSION_NUM),
    // Where lake reads run: `auto` (on the cluster when the plan can) or
    // `gateway` (in this process, as DataFusion alone would run it).
    (EXECUTION_GUC, "auto"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
];

/// The setting that chooses where lake reads run (see [`DEFAULT_GUCS`]).
pub const EXECUTION_GUC: &str = "sluice.execution";

/// The value a session starts with for `name`, if it is a known setting.
pub fn default_guc(name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    DEFAULT_GUCS
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| (*v).to_owned())
}

/// `value` as a `TimeZone` setting, spelled as PostgreSQL shows it, or
/// `None` when PostgreSQL would refuse it: an IANA zone name in any case
/// (`europe/paris` → `Europe/Paris`), an ISO offset (`+05:30`), a number
/// of hours east of UTC (`SET TIME ZONE -7`, `5.5`), or `LOCAL`/`DEFAULT`
/// (UTC, the server's zone).
pub fn time_zone_setting(value: &str) -> Option<String> {
    use std::str::FromStr;
    let v = value.trim();
    if v.eq_ignore_ascii_case("local") || v.eq_ignore_ascii_case("default") {
        return Some("UTC".to_owned());
    }
    if let Some(tz) = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(v))
    {
        return Some(tz.name().to_owned());
    }
    if let Ok(hours) = v.parse::<f64>() {
        // PostgreSQL takes up to ±15:59 (and rejects NaN and infinities).
        let minutes = (hours * 60.0).round();
        if !minutes.is_finite() || minutes.abs() >= 16.0 * 60.0 {
            return None;
        }
        let (sign, m) = if minutes < 0.0 {
            ('-', -minutes as i32)
        } else {
            ('+', minutes as i32)
        };
        return Some(format!("{sign}{:02}:{:02}", m / 60, m % 60));
    }
    datafusion::arrow::array::timezone::Tz::from_str(v)
        .ok()
        .map(|_| v.to_owned())
}

/// One client session.
#[derive(Debug)]
pub struct Session {
    id: u64,
    user: String,
    client: crate::query::audit::ClientAddr,
    /// Roles the login holds by its identity provider's word.
    roles: Vec<String>,
    /// Shared with the statements planning on it; a change copies it.
    state: Mutex<std::sync::Arc<SessionState>>,
    gucs: crate::query::Gucs,
    in_transaction: Mutex<bool>,
    current: Canceller,
    /// The history entry of the latest statement.
    query: Mutex<Option<std::sync::Arc<crate::query::history::Query>>>,
    cursors: crate::query::cursor::Cursors,
    /// Bumped by every change of `state` (a plan made before is stale).
    settings_epoch: AtomicU64,
    plans: crate::query::plan_cache::PlanCache,
    /// Set while a query's results are asked for in this many parts
    /// (`QueryHandler::execute_in_parts`); 0 otherwise.
    result_parts: std::sync::atomic::AtomicU32,
}

impl Session {
    pub fn new(user: &str, roles: &[String], state: SessionState, client: crate::query::audit::ClientAddr) -> Self {
        Session {
            id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            user: user.to_owned(),
            client,
            roles: roles.to_vec(),
            state: Mutex::new(std::sync::Arc::new(state)),
            gucs: std::sync::Arc::new(Mutex::new(
                DEFAULT_GUCS
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )),
            in_transaction: Mutex::new(false),
            current: Canceller(std::sync::Arc::new(CancelState::default())),
            query: Mutex::new(None),
            cursors: crate::query::cursor::Cursors::default(),
            settings_epoch: AtomicU64::new(0),
            plans: crate::query::plan_cache::PlanCache::default(),
            result_parts: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The parts a running query's results are asked for in (0: one stream).
    pub(crate) fn result_parts(&self) -> u32 {
        self.result_parts.load(Ordering::Relaxed)
    }

    pub(crate) fn set_result_parts(&self, parts: u32) {
        self.result_parts.store(parts, Ordering::Relaxed);
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Roles the login claims (a JWT's roles claim), held as if granted.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// The client's protocol and address.
    pub fn client(&self) -> crate::query::audit::ClientAddr {
        self.client
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// A snapshot of the DataFusion session to plan one statement with
    /// (shared, not copied: a `SessionState` holds every function map).
    pub fn state(&self) -> std::sync::Arc<SessionState> {
        std::sync::Arc::clone(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn update_state(&self, f: impl FnOnce(&mut SessionState)) {
        f(std::sync::Arc::make_mut(
            &mut self.state.lock().unwrap_or_else(|e| e.into_inner()),
        ));
        self.settings_epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the changes of the session's planning state.
    pub fn settings_epoch(&self) -> u64 {
        self.settings_epoch.load(Ordering::Relaxed)
    }

    /// Statements this session prepared (see `query::plan_cache`).
    pub fn plans(&self) -> &crate::query::plan_cache::PlanCache {
        &self.plans
    }

    /// The settings map, shared with `current_setting()`.
    pub fn gucs_handle(&self) -> crate::query::Gucs {
        std::sync::Arc::clone(&self.gucs)
    }

    pub fn guc(&self, name: &str) -> Option<String> {
        self.gucs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name.to_ascii_lowercase())
            .cloned()
    }

    pub fn set_guc(&self, name: &str, value: &str) {
        self.gucs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_ascii_lowercase(), value.to_owned());
    }

    pub fn reset_gucs(&self) {
        *self.gucs.lock().unwrap_or_else(|e| e.into_inner()) = DEFAULT_GUCS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }

    pub fn gucs(&self) -> BTreeMap<String, String> {
        self.gucs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn in_transaction(&self) -> bool {
        *self.in_transaction.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_in_transaction(&self, v: bool) {
        *self.in_transaction.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }

    /// The session's open SQL cursors.
    pub fn cursors(&self) -> &crate::query::cursor::Cursors {
        &self.cursors
    }

    /// Starts a statement: returns the token that cancels it.
    pub fn begin_statement(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.current.0.token.lock().unwrap_or_else(|e| e.into_inner()) = token.clone();
        token
    }

    /// Cancels the statement running now, if any (Postgres CancelRequest).
    pub fn cancel_current(&self) {
        self.current.cancel();
    }

    /// Cancels the statement running now because the gateway stops (it
    /// ends with 57P01).
    pub fn terminate_current(&self) {
        self.current.terminate();
    }

    /// The error a cancelled statement ends with (57014, or 57P01 when
    /// the gateway is shutting down).
    pub fn cancelled_error(&self) -> crate::error::QueryError {
        self.current.error()
    }

    /// Makes `query` the session's current statement.
    pub fn set_current_query(&self, query: std::sync::Arc<crate::query::history::Query>) {
        *self.query.lock().unwrap_or_else(|e| e.into_inner()) = Some(query);
    }

    /// The history entry of the session's latest statement.
    pub fn current_query(&self) -> Option<std::sync::Arc<crate::query::history::Query>> {
        self.query.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A handle that cancels this session's running statement.
    pub fn canceller(&self) -> Canceller {
        self.current.clone()
    }
}

/// Ends the running statement of each live session of `sessions` with
/// 57P01 (the shutdown timeout ran out); answers how many were live.
pub fn terminate_all<'a>(sessions: impl IntoIterator<Item = &'a std::sync::Weak<Session>>) -> usize {
    let live: Vec<std::sync::Arc<Session>> = sessions.into_iter().filter_map(std::sync::Weak::upgrade).collect();
    for s in &live {
        s.terminate_current();
    }
    live.len()
}

/// Cancels whatever statement its session runs when called (what
/// `sluice_cancel_query` holds on to).
#[derive(Debug, Clone)]
pub struct Canceller(std::sync::Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    token: Mutex<CancellationToken>,
    /// Cancelled because the gateway is shutting down.
    terminating: std::sync::atomic::AtomicBool,
}

impl Canceller {
    pub fn cancel(&self) {
        self.0.token.lock().unwrap_or_else(|e| e.into_inner()).cancel();
    }

    /// Cancels the running statement because the gateway stops: it ends
    /// with 57P01, as PostgreSQL's fast shutdown ends it.
    pub fn terminate(&self) {
        self.0.terminating.store(true, Ordering::Relaxed);
        self.cancel();
    }

    /// The error a cancelled statement of this session ends with.
    pub fn error(&self) -> crate::error::QueryError {
        if self.0.terminating.load(Ordering::Relaxed) {
            crate::error::QueryError::admin_shutdown()
        } else {
            crate::error::QueryError::cancelled()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::time_zone_setting as tz;

    #[test]
    fn time_zone_settings_are_checked_and_spelled_as_postgresql_shows_them() {
        assert_eq!(tz("europe/PARIS").as_deref(), Some("Europe/Paris"));
        assert_eq!(tz("UTC").as_deref(), Some("UTC"));
        assert_eq!(tz("+05:30").as_deref(), Some("+05:30"));
        assert_eq!(tz("-7").as_deref(), Some("-07:00"));
        assert_eq!(tz("5.5").as_deref(), Some("+05:30"));
        assert_eq!(tz("DEFAULT").as_deref(), Some("UTC"));
        for bad in ["garbage", "99", "NaN", "Europe/Nowhere", ""] {
            assert_eq!(tz(bad), None, "{bad}");
        }
    }
}
