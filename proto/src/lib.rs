//! Wire messages Sluice defines itself. No logic lives here: the gateway
//! signs, verifies and interprets them. Source of truth for field numbers:
//! `protos/sluice/v1/flight.proto`; [`flight_session`] holds messages of
//! Arrow's `Flight.proto` that arrow-flight 59 does not generate.

pub mod flight_session;

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
    /// Session options the statement was planned with (it runs with them).
    #[prost(message, optional, tag = "6")]
    pub session: Option<FlightSession>,
    /// One endpoint's share of a result the statement already produced: an
    /// opaque description of where its rows wait (the gateway's to read).
    /// Empty: the statement runs at DoGet.
    #[prost(bytes = "vec", tag = "7")]
    pub result_part: Vec<u8>,
}

/// Flight SQL session options, carried signed after the bearer token so any
/// gateway serves the session without a lookup.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FlightSession {
    /// Random id; a closed session's id is refused afterwards.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Authenticated user the session belongs to.
    #[prost(string, tag = "2")]
    pub user: String,
    /// Default schema (`search_path`); unset means `default`.
    #[prost(string, optional, tag = "3")]
    pub schema: Option<String>,
    /// Session time zone; unset means UTC.
    #[prost(string, optional, tag = "4")]
    pub time_zone: Option<String>,
    /// IPC body compression of results (`lz4_frame`, `zstd`); unset: none.
    #[prost(string, optional, tag = "5")]
    pub compression: Option<String>,
    /// Most endpoints a query's FlightInfo may offer; unset or 1: one.
    #[prost(uint32, optional, tag = "6")]
    pub endpoints: Option<u32>,
}
