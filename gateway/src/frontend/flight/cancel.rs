//! Cancelling Flight SQL queries: `CancelFlightInfo` (and the older
//! `CancelQuery` action) name a FlightInfo; its ticket finds the DoGet
//! streaming it, whose statement is cancelled (the Ballista job stops, the
//! stream ends with CANCELLED). A ticket cancelled before its DoGet is
//! remembered for a while so the DoGet is refused instead of run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arrow_flight::sql::{CommandPreparedStatementQuery, TicketStatementQuery};
use arrow_flight::{CancelStatus, FlightInfo};
use bytes::Bytes;
use prost::Message;
use tonic::Status;

use super::FlightSqlServer;
use crate::auth::{Principal, Purpose};
use crate::session::Session;

/// How long a ticket cancelled before its DoGet stays refused.
const REMEMBER: Duration = Duration::from_secs(600);

/// The DoGets streaming now, by ticket.
pub(super) struct Running {
    streams: Mutex<HashMap<Bytes, Weak<Session>>>,
    cancelled: moka::sync::Cache<Bytes, ()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

impl Default for Running {
    fn default() -> Self {
        Running {
            streams: Mutex::new(HashMap::new()),
            cancelled: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REMEMBER)
                .build(),
        }
    }
}

/// Keeps a ticket registered while its stream lives.
pub(super) struct Registration {
    running: Arc<Running>,
    ticket: Bytes,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.running
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.ticket);
    }
}

impl Running {
    /// Registers the DoGet of `ticket`; refused when it was cancelled.
    pub(super) fn register(self: &Arc<Self>, ticket: Bytes, session: &Arc<Session>) -> Result<Registration, Status> {
        if self.cancelled.contains_key(&ticket) {
            return Err(Status::cancelled("the query was cancelled (CancelFlightInfo)"));
        }
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ticket.clone(), Arc::downgrade(session));
        Ok(Registration {
            running: Arc::clone(self),
            ticket,
        })
    }

    /// Ends every DoGet streaming now with UNAVAILABLE (at the end of the shutdown
    /// timeout); answers how many there were.
    pub(super) fn terminate_all(&self) -> usize {
        crate::session::terminate_all(self.streams.lock().unwrap_or_else(|e| e.into_inner()).values())
    }

    /// Cancels the query of `ticket`, running or not yet fetched.
    pub(super) fn cancel(&self, ticket: Bytes) -> CancelStatus {
        let session = self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ticket)
            .and_then(Weak::upgrade);
        if let Some(s) = session {
            tracing::info!(session_id = s.id(), "flight query cancelled");
            s.cancel_current();
        }
        self.cancelled.insert(ticket, ());
        CancelStatus::Cancelled
    }
}

/// The Flight RPC action that cancels a FlightInfo's query.
pub(super) const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

/// Flight SQL transactions: every statement commits on its own (SqlInfo
/// says `FLIGHT_SQL_SERVER_TRANSACTION = NONE`), as an autocommit
/// PostgreSQL session does.
pub(super) fn no_transactions() -> Status {
    Status::unimplemented(
        "transactions are not supported: Sluice runs each Flight SQL statement in autocommit mode \
         (SqlInfo FLIGHT_SQL_SERVER_TRANSACTION = NONE)",
    )
}

impl FlightSqlServer {
    /// Cancels the query behind `info`'s tickets (issued to `principal`).
    pub(super) fn cancel_info(&self, principal: &Principal, info: &FlightInfo) -> Result<CancelStatus, Status> {
        let mut status = CancelStatus::Unspecified;
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else { continue };
            let any = arrow_flight::sql::Any::decode(ticket.ticket.as_ref())
                .map_err(|_| Status::invalid_argument("malformed ticket"))?;
            let malformed = |_| Status::invalid_argument("malformed ticket");
            let handle = if let Some(t) = any.unpack::<TicketStatementQuery>().map_err(malformed)? {
                self.unseal(Purpose::Ticket, &t.statement_handle, principal)?
            } else if let Some(t) = any.unpack::<CommandPreparedStatementQuery>().map_err(malformed)? {
                self.unseal(Purpose::PreparedHandle, &t.prepared_statement_handle, principal)?
            } else {
                return Ok(CancelStatus::NotCancellable);
            };
            status = if handle.executed {
                CancelStatus::NotCancellable
            } else {
                self.running.cancel(ticket.ticket.clone())
            };
        }
        Ok(status)
    }
}
