//! The one error type front ends see, and its one exhaustive mapping to a
//! SQLSTATE (Postgres wire) and a `tonic::Status` (Flight SQL). Messages are
//! safe to show a client: internal details are logged, not sent.

use datafusion::error::DataFusionError;

use crate::catalog::CatalogError;

mod messages;

/// Broad classes of failure, each with a SQLSTATE and a gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Syntax,
    UndefinedTable,
    UndefinedColumn,
    UndefinedSchema,
    UndefinedObject,
    /// A function name (or argument types) the engine does not know.
    UndefinedFunction,
    DuplicateTable,
    DuplicateSchema,
    /// A partition (or other object) that already exists.
    DuplicateObject,
    /// A definition that cannot be used (a view that reaches itself).
    InvalidObjectDefinition,
    /// The statement raced with a change of its table: run it again.
    Conflict,
    /// A relation of another kind than the statement expects.
    WrongObjectType,
    /// FETCH/MOVE/CLOSE of a cursor that is not open.
    InvalidCursorName,
    /// DECLARE of a cursor name that is open.
    DuplicateCursor,
    /// A statement that needs a transaction block (DECLARE without HOLD).
    NoActiveTransaction,
    DependentObjects,
    /// A GRANT or REVOKE that cannot be (a privilege the object does not
    /// take, a membership loop).
    InvalidGrant,
    /// A name that cannot be used (the role `public`).
    ReservedName,
    InvalidCatalogName,
    FeatureNotSupported,
    InvalidParameter,
    DataException,
    /// A value that does not read as its type (`'abc'` for an integer).
    InvalidTextRepresentation,
    DivisionByZero,
    /// A value out of its type's range (integer overflow).
    NumericOutOfRange,
    /// COPY data that is not in the format the statement named.
    BadCopyFormat,
    /// Bytes that are not valid UTF-8.
    InvalidEncoding,
    Cancelled,
    /// Cancelled because the gateway is shutting down.
    AdminShutdown,
    InvalidPassword,
    InsufficientPrivilege,
    ResourcesExhausted,
    /// No executor to run the query on.
    NoCapacity,
    /// Results lost with an executor after rows were sent: retry the statement.
    Unavailable,
    Internal,
}

impl ErrorKind {
    /// The SQLSTATE a Postgres client sees.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "42601",
            ErrorKind::UndefinedTable => "42P01",
            ErrorKind::UndefinedColumn => "42703",
            ErrorKind::UndefinedSchema => "3F000",
            ErrorKind::UndefinedObject => "42704",
            ErrorKind::UndefinedFunction => "42883",
            ErrorKind::DuplicateTable => "42P07",
            ErrorKind::DuplicateSchema => "42P06",
            ErrorKind::DuplicateObject => "42710",
            ErrorKind::InvalidObjectDefinition => "42P17",
            ErrorKind::Conflict => "40001",
            ErrorKind::WrongObjectType => "42809",
            ErrorKind::InvalidCursorName => "34000",
            ErrorKind::DuplicateCursor => "42P03",
            ErrorKind::NoActiveTransaction => "25P01",
            ErrorKind::DependentObjects => "2BP01",
            ErrorKind::InvalidGrant => "0LP01",
            ErrorKind::ReservedName => "42939",
            ErrorKind::InvalidCatalogName => "3D000",
            ErrorKind::FeatureNotSupported => "0A000",
            ErrorKind::InvalidParameter => "22023",
            ErrorKind::DataException => "22000",
            ErrorKind::InvalidTextRepresentation => "22P02",
            ErrorKind::DivisionByZero => "22012",
            ErrorKind::NumericOutOfRange => "22003",
            ErrorKind::BadCopyFormat => "22P04",
            ErrorKind::InvalidEncoding => "22021",
            ErrorKind::Cancelled => "57014",
            ErrorKind::AdminShutdown => "57P01",
            ErrorKind::InvalidPassword => "28P01",
            ErrorKind::InsufficientPrivilege => "42501",
            ErrorKind::ResourcesExhausted | ErrorKind::NoCapacity => "53000",
            ErrorKind::Unavailable => "40001",
            ErrorKind::Internal => "XX000",
        }
    }

    /// The gRPC status code a Flight SQL client sees.
    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            ErrorKind::Syntax
            | ErrorKind::UndefinedColumn
            | ErrorKind::InvalidParameter
            | ErrorKind::DataException
            | ErrorKind::InvalidTextRepresentation
            | ErrorKind::DivisionByZero
            | ErrorKind::NumericOutOfRange
            | ErrorKind::BadCopyFormat
            | ErrorKind::InvalidEncoding
            | ErrorKind::DependentObjects
            | ErrorKind::InvalidGrant
            | ErrorKind::ReservedName
            | ErrorKind::InvalidObjectDefinition
            | ErrorKind::WrongObjectType
            | ErrorKind::NoActiveTransaction => Code::InvalidArgument,
            ErrorKind::InvalidCursorName => Code::NotFound,
            ErrorKind::DuplicateCursor => Code::AlreadyExists,
            ErrorKind::UndefinedTable
            | ErrorKind::UndefinedSchema
            | ErrorKind::UndefinedObject
            | ErrorKind::UndefinedFunction
            | ErrorKind::InvalidCatalogName => Code::NotFound,
            ErrorKind::DuplicateTable | ErrorKind::DuplicateSchema | ErrorKind::DuplicateObject => Code::AlreadyExists,
            ErrorKind::Conflict => Code::Aborted,
            ErrorKind::FeatureNotSupported => Code::Unimplemented,
            ErrorKind::Cancelled => Code::Cancelled,
            ErrorKind::AdminShutdown => Code::Unavailable,
            ErrorKind::InvalidPassword => Code::Unauthenticated,
            ErrorKind::InsufficientPrivilege => Code::PermissionDenied,
            ErrorKind::ResourcesExhausted => Code::ResourceExhausted,
            ErrorKind::Unavailable | ErrorKind::NoCapacity => Code::Unavailable,
            ErrorKind::Internal => Code::Internal,
        }
    }
}

/// An error of a statement, ready to be shown to the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub kind: ErrorKind,
    pub message: String,
}

const MAX_MESSAGE: usize = 2000;

impl QueryError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let mut message: String = message.into();
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        QueryError { kind, message }
    }

    pub fn cancelled() -> Self {
        QueryError::new(ErrorKind::Cancelled, "canceling statement due to user request")
    }

    pub fn admin_shutdown() -> Self {
        QueryError::new(
            ErrorKind::AdminShutdown,
            "terminating connection due to administrator command",
        )
    }

    pub fn unsupported(what: impl std::fmt::Display) -> Self {
        QueryError::new(ErrorKind::FeatureNotSupported, format!("{what} is not supported"))
    }

    pub fn sqlstate(&self) -> &'static str {
        self.kind.sqlstate()
    }
}

impl From<CatalogError> for QueryError {
    fn from(e: CatalogError) -> Self {
        let kind = match &e {
            CatalogError::DatabaseExists(_) => ErrorKind::DuplicateSchema,
            CatalogError::DatabaseNotFound(_) => ErrorKind::UndefinedSchema,
            CatalogError::DatabaseNotEmpty(_) => ErrorKind::DependentObjects,
            CatalogError::TableExists(_) => ErrorKind::DuplicateTable,
            CatalogError::TableNotFound(_) => ErrorKind::UndefinedTable,
            CatalogError::TableChanged(_) => ErrorKind::Conflict,
            CatalogError::WrongKind(..) => ErrorKind::WrongObjectType,
            CatalogError::PartitionExists(..) => ErrorKind::DuplicateObject,
            CatalogError::PartitionNotFound(..) => ErrorKind::UndefinedObject,
            CatalogError::Protected(_) => ErrorKind::InsufficientPrivilege,
            CatalogError::RoleExists(_) | CatalogError::PolicyExists(..) => ErrorKind::DuplicateObject,
            CatalogError::RoleNotFound(_) | CatalogError::PolicyNotFound(..) => ErrorKind::UndefinedObject,
            CatalogError::RoleInUse(..) => ErrorKind::DependentObjects,
            CatalogError::Storage(_) | CatalogError::Corrupt(..) => {
                tracing::error!("catalog failure: {e}");
                return QueryError::new(ErrorKind::Internal, "catalog storage failure; see the gateway log");
            }
        };
        QueryError::new(kind, e.to_string())
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        classify_datafusion(e)
    }
}

fn classify_datafusion(e: DataFusionError) -> QueryError {
    match e {
        DataFusionError::SQL(e, _) => QueryError::new(ErrorKind::Syntax, format!("syntax error: {e}")),
        DataFusionError::SchemaError(e, _) => {
            let msg = e.to_string();
            let kind = if msg.contains("not found") || msg.contains("No field named") {
                ErrorKind::UndefinedColumn
            } else {
                ErrorKind::Syntax
            };
            QueryError::new(kind, msg)
        }
        DataFusionError::Plan(msg) => {
            // DataFusion reports unknown relations as plan errors of this shape.
            let kind = if (msg.starts_with("table '") || msg.starts_with("Table '")) && msg.contains("not found") {
                ErrorKind::UndefinedTable
            } else if msg.contains("Invalid function") || msg.contains("No function matches") {
                ErrorKind::UndefinedFunction
            } else if msg.contains("unrecognized configuration parameter") {
                ErrorKind::UndefinedObject
            } else if msg.contains("Placeholder") || msg.contains("parameter") {
                ErrorKind::InvalidParameter
            } else {
                ErrorKind::Syntax
            };
            messages::tidy(kind, &msg)
        }
        DataFusionError::ObjectStore(e) => QueryError::new(ErrorKind::DataException, format!("object store: {e}")),
        DataFusionError::NotImplemented(msg) => QueryError::new(ErrorKind::FeatureNotSupported, msg),
        DataFusionError::ResourcesExhausted(msg) => QueryError::new(ErrorKind::ResourcesExhausted, msg),
        DataFusionError::ArrowError(e, _) => messages::tidy(ErrorKind::DataException, &format!("Arrow error: {e}")),
        // A catalog conflict raised in the scheduler comes back as a failed
        // job; keep its class so clients retry.
        DataFusionError::Execution(msg) if msg.contains(crate::catalog::CHANGED_MARKER) => {
            QueryError::new(ErrorKind::Conflict, msg)
        }
        DataFusionError::Execution(msg) => {
            let tidy = messages::tidy(ErrorKind::DataException, &msg);
            if tidy.message != msg {
                tracing::debug!("execution error: {msg}");
            }
            tidy
        }
        // The optimizer's rule names are internals; the cause is the news.
        DataFusionError::Context(ctx, inner) if ctx.starts_with("Optimizer rule") => classify_datafusion(*inner),
        DataFusionError::Context(ctx, inner) => {
            let inner = classify_datafusion(*inner);
            QueryError::new(inner.kind, format!("{ctx}: {}", inner.message))
        }
        DataFusionError::Diagnostic(_, inner) => classify_datafusion(*inner),
        DataFusionError::Shared(inner) => match std::sync::Arc::try_unwrap(inner) {
            Ok(owned) => classify_datafusion(owned),
            Err(shared) => messages::tidy(ErrorKind::DataException, &shared.to_string()),
        },
        DataFusionError::External(inner) => {
            if let Some(q) = inner.downcast_ref::<QueryError>() {
                return q.clone();
            }
            let inner = match inner.downcast::<CatalogError>() {
                Ok(c) => return QueryError::from(*c),
                Err(other) => other,
            };
            if let Some(v) = inner.downcast_ref::<crate::catalog::provider::ViewError>() {
                return QueryError::new(ErrorKind::InvalidObjectDefinition, v.to_string());
            }
            if let Some(st) = inner.downcast_ref::<sluice_lake::store::StoreError>() {
                return QueryError::new(ErrorKind::InvalidParameter, st.to_string());
            }
            messages::tidy(ErrorKind::DataException, &inner.to_string())
        }
        other => {
            tracing::warn!("internal error: {other}");
            messages::tidy(ErrorKind::Internal, &other.to_string())
        }
    }
}

impl From<QueryError> for tonic::Status {
    fn from(e: QueryError) -> Self {
        tonic::Status::new(e.kind.grpc_code(), e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_table_is_42p01() {
        let e: QueryError = DataFusionError::Plan("table 'sluice.default.nope' not found".into()).into();
        assert_eq!(e.sqlstate(), "42P01");
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::NotFound);
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let e = QueryError::new(ErrorKind::Internal, "é".repeat(3000));
        assert!(e.message.len() <= MAX_MESSAGE);
    }
}
