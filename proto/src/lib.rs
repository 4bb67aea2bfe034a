//! Wire messages Sluice defines itself. No logic lives here: the gateway
//! signs, verifies and interprets them. Source of truth for field numbers:
//! `protos/sluice/v1/flight.proto`.

/// A statement to run, carried inside Flight SQL tickets and prepared
/// statement handles (see `protos/sluice/v1/flight.proto`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatementHandle {
    /// SQL text.
    #[prost(string, tag = "1")]
    pub sql: String,
    /// Bound parameters: one row in Arrow IPC stream format; empty when none.
    #[prost(bytes = "vec", tag = "2")]
    pub params_ipc: Vec<u8>,
    /// Authenticated user the handle was issued to.
    #[prost(string, tag = "3")]
    pub user: String,
    /// Unix seconds when issued.
    #[prost(uint64, tag = "4")]
    pub issued_at: u64,
    /// The statement already ran at GetFlightInfo (DDL/DML): no rows to stream.
    #[prost(bool, tag = "5")]
    pub executed: bool,
}
