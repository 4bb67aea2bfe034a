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
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
];

/// The value a session starts with for `name`, if it is a known setting.
pub fn default_guc(name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    DEFAULT_GUCS
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| (*v).to_owned())
}

/// One client session.
#[derive(Debug)]
pub struct Session {
    id: u64,
    user: String,
    state: Mutex<SessionState>,
    gucs: crate::query::Gucs,
    in_transaction: Mutex<bool>,
    current: Mutex<CancellationToken>,
    cursors: crate::query::cursor::Cursors,
}

impl Session {
    pub fn new(user: &str, state: SessionState) -> Self {
        Session {
            id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            user: user.to_owned(),
            state: Mutex::new(state),
            gucs: std::sync::Arc::new(Mutex::new(
                DEFAULT_GUCS
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )),
            in_transaction: Mutex::new(false),
            current: Mutex::new(CancellationToken::new()),
            cursors: crate::query::cursor::Cursors::default(),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// A snapshot of the DataFusion session to plan one statement with.
    pub fn state(&self) -> SessionState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn update_state(&self, f: impl FnOnce(&mut SessionState)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
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
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = token.clone();
        token
    }

    /// Cancels the statement running now, if any (Postgres CancelRequest).
    pub fn cancel_current(&self) {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).cancel();
    }
}
