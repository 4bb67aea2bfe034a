//! Session messages of Arrow's `Flight.proto` (format 15+), written with
//! prost derives because arrow-flight 59 does not generate them. Field
//! numbers follow `arrow/format/Flight.proto`: `SessionOptionValue`,
//! `SetSessionOptionsRequest`/`Result`, `GetSessionOptionsResult` and
//! `CloseSessionResult` (the request messages are empty).

use std::collections::BTreeMap;

/// A session option's value; no value at all means "unset the option".
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionOptionValue {
    #[prost(oneof = "OptionValue", tags = "1, 2, 3, 4, 5")]
    pub option_value: Option<OptionValue>,
}

/// `SessionOptionValue.option_value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum OptionValue {
    #[prost(string, tag = "1")]
    StringValue(String),
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    #[prost(sfixed64, tag = "3")]
    Int64Value(i64),
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    #[prost(message, tag = "5")]
    StringListValue(StringListValue),
}

/// `SessionOptionValue.StringListValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringListValue {
    #[prost(string, repeated, tag = "1")]
    pub values: Vec<String>,
}

/// Body of the `SetSessionOptions` action.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsRequest {
    #[prost(btree_map = "string, message", tag = "1")]
    pub session_options: BTreeMap<String, SessionOptionValue>,
}

/// Result of `SetSessionOptions`: only the options that were not set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsResult {
    #[prost(btree_map = "string, message", tag = "1")]
    pub errors: BTreeMap<String, SetSessionOptionError>,
}

/// `SetSessionOptionsResult.Error`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct SetSessionOptionError {
    #[prost(enumeration = "SetSessionOptionErrorValue", tag = "1")]
    pub value: i32,
}

/// `SetSessionOptionsResult.ErrorValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SetSessionOptionErrorValue {
    Unspecified = 0,
    InvalidName = 1,
    InvalidValue = 2,
    Error = 3,
}

/// Result of `GetSessionOptions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSessionOptionsResult {
    #[prost(btree_map = "string, message", tag = "1")]
    pub session_options: BTreeMap<String, SessionOptionValue>,
}

/// Result of `CloseSession`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct CloseSessionResult {
    #[prost(enumeration = "CloseSessionStatus", tag = "1")]
    pub status: i32,
}

/// `CloseSessionResult.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CloseSessionStatus {
    Unspecified = 0,
    Closed = 1,
    Closing = 2,
    NotCloseable = 3,
}
