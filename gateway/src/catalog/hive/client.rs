//! A Hive Metastore Thrift client for [`super::HiveMetastore`]: the
//! `hive_metastore` crate's generated client on buffered transport (what
//! HMS serves by default), one per URI of `--catalog thrift://a,thrift://b`,
//! reads failing over to the next URI when one cannot be reached or hangs. A call's
//! declared Thrift exception comes back as a [`Failure`]; transport errors
//! on every URI become `CatalogError::Storage`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hive_metastore as hms;
use hive_metastore::ThriftHiveMetastoreClient;
use volo_thrift::{ClientError, MaybeException};

use crate::catalog::CatalogError;

/// A declared exception of a metastore call, by what it means to Sluice.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Failure {
    /// NoSuchObjectException, UnknownDBException.
    NotFound(String),
    /// AlreadyExistsException.
    Exists(String),
    /// MetaException, InvalidObjectException, InvalidOperationException.
    Refused(String),
}

impl Failure {
    pub(super) fn message(&self) -> &str {
        match self {
            Failure::NotFound(m) | Failure::Exists(m) | Failure::Refused(m) => m,
        }
    }
}

/// What a generated exception (or a call's union of them) means.
pub(super) trait Declared {
    fn failure(self) -> Failure;
}

macro_rules! exception {
    ($($ty:ident => $kind:ident),* $(,)?) => {$(
        impl Declared for hms::$ty {
            fn failure(self) -> Failure {
                Failure::$kind(self.message.map(|m| m.to_string()).unwrap_or_default())
            }
        }
    )*};
}

exception!(
    NoSuchObjectException => NotFound,
    UnknownDbException => NotFound,
    AlreadyExistsException => Exists,
    InvalidObjectException => Refused,
    InvalidOperationException => Refused,
    MetaException => Refused,
);

macro_rules! union {
    ($($ty:ident: $($variant:ident),+;)*) => {$(
        impl Declared for hms::$ty {
            fn failure(self) -> Failure {
                match self {
                    $(hms::$ty::$variant(e) => e.failure(),)+
                }
            }
        }
    )*};
}

union!(
    ThriftHiveMetastoreGetAllDatabasesException: O1;
    ThriftHiveMetastoreGetDatabaseException: O1, O2;
    ThriftHiveMetastoreCreateDatabaseException: O1, O2, O3;
    ThriftHiveMetastoreDropDatabaseException: O1, O2, O3;
    ThriftHiveMetastoreGetAllTablesException: O1;
    ThriftHiveMetastoreGetTableObjectsByNameException: O1, O2, O3;
    ThriftHiveMetastoreGetTableException: O1, O2;
    ThriftHiveMetastoreCreateTableException: O1, O2, O3, O4;
    ThriftHiveMetastoreDropTableException: O1, O3;
    ThriftHiveMetastoreGetPartitionsException: O1, O2;
    ThriftHiveMetastoreGetPartitionsByFilterException: O1, O2;
    ThriftHiveMetastoreAddPartitionsReqException: O1, O2, O3;
    ThriftHiveMetastoreDropPartitionException: O1, O2;
    ThriftHiveMetastoreGetTableMetaException: O1;
    ThriftHiveMetastoreAlterTableException: O1, O2;
);

/// Calls that never declare an exception.
#[derive(Debug)]
pub(super) enum Never {}

impl Declared for Never {
    fn failure(self) -> Failure {
        match self {}
    }
}

/// One client per metastore URI; calls go to the last one that answered.
pub(super) struct HmsClient {
    endpoints: Vec<(String, ThriftHiveMetastoreClient)>,
    current: AtomicUsize,
}

impl std::fmt::Debug for HmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uris: Vec<&str> = self.endpoints.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("HmsClient").field("uris", &uris).finish()
    }
}

/// How long a call may take (a read then goes to the next URI).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl HmsClient {
    /// Resolves every `host:port` (connections are opened on first use).
    pub(super) async fn new(addresses: &[String]) -> Result<Self, CatalogError> {
        let mut endpoints = Vec::with_capacity(addresses.len());
        for address in addresses {
            let resolved = tokio::net::lookup_host(address.as_str())
                .await
                .map_err(|e| CatalogError::Storage(format!("Hive Metastore address {address}: {e}")))?
                .next()
                .ok_or_else(|| {
                    CatalogError::Storage(format!("Hive Metastore address {address} resolves to nothing"))
                })?;
            let client = hive_metastore::ThriftHiveMetastoreClientBuilder::new("hms")
                .address(resolved)
                // HMS serves unframed (buffered) Thrift unless configured otherwise.
                .make_codec(volo_thrift::codec::default::DefaultMakeCodec::buffered())
                .rpc_timeout(Some(CALL_TIMEOUT))
                .connect_timeout(Some(CONNECT_TIMEOUT))
                .build();
            endpoints.push((format!("thrift://{address}"), client));
        }
        if endpoints.is_empty() {
            return Err(CatalogError::Storage("no Hive Metastore URI given".into()));
        }
        Ok(HmsClient {
            endpoints,
            current: AtomicUsize::new(0),
        })
    }

    /// Runs a read-only `call` on the current metastore, then on the others
    /// while they cannot be reached or do not answer in time. A declared
    /// exception is the call's answer (no failover); so is any other
    /// application exception (the server understood and refused).
    pub(super) async fn read<T, E, F, Fut>(&self, what: &str, call: F) -> Result<Result<T, Failure>, CatalogError>
    where
        E: Declared,
        F: Fn(ThriftHiveMetastoreClient) -> Fut,
        Fut: Future<Output = Result<MaybeException<T, E>, ClientError>>,
    {
        self.run(what, true, call).await
    }

    /// Runs a change on the current metastore only: after a transport error
    /// the change may or may not have been made, so it is not repeated on
    /// another metastore (the caller re-reads to find out); later calls go
    /// to the next one.
    pub(super) async fn write<T, E, F, Fut>(&self, what: &str, call: F) -> Result<Result<T, Failure>, CatalogError>
    where
        E: Declared,
        F: Fn(ThriftHiveMetastoreClient) -> Fut,
        Fut: Future<Output = Result<MaybeException<T, E>, ClientError>>,
    {
        self.run(what, false, call).await
    }

    async fn run<T, E, F, Fut>(&self, what: &str, failover: bool, call: F) -> Result<Result<T, Failure>, CatalogError>
    where
        E: Declared,
        F: Fn(ThriftHiveMetastoreClient) -> Fut,
        Fut: Future<Output = Result<MaybeException<T, E>, ClientError>>,
    {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for i in 0..n {
            let k = (start + i) % n;
            let (uri, client) = &self.endpoints[k];
            if i > 0 {
                tracing::info!(metastore = %uri, "Hive Metastore failover: now using {uri}");
                self.current.store(k, Ordering::Relaxed);
            }
            match call(client.clone()).await {
                Ok(MaybeException::Ok(v)) => return Ok(Ok(v)),
                Ok(MaybeException::Exception(e)) => return Ok(Err(e.failure())),
                // volo reports its own rpc timeout as an application exception.
                Err(ClientError::Application(e)) if !e.to_string().contains("timeout") => {
                    return Err(CatalogError::Storage(format!(
                        "Hive Metastore {uri} refused {what}: {e}"
                    )));
                }
                Err(e) => {
                    tracing::warn!(metastore = %uri, "Hive Metastore call {what} failed: {e}");
                    errors.push(format!("{uri}: {e}"));
                    if !failover {
                        if n > 1 {
                            self.current.store((k + 1) % n, Ordering::Relaxed);
                        }
                        break;
                    }
                }
            }
        }
        Err(CatalogError::Storage(format!(
            "Hive Metastore unreachable ({what}): {}",
            errors.join("; ")
        )))
    }

    /// [`Self::read`] for calls without declared exceptions.
    pub(super) async fn read_plain<T, F, Fut>(&self, what: &str, call: F) -> Result<T, CatalogError>
    where
        F: Fn(ThriftHiveMetastoreClient) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let answer = self
            .read(what, |c| {
                let fut = call(c);
                async move { fut.await.map(MaybeException::<T, Never>::Ok) }
            })
            .await?;
        match answer {
            Ok(v) => Ok(v),
            Err(f) => Err(CatalogError::Storage(f.message().to_owned())),
        }
    }
}

/// A failure that the caller has no better error for.
pub(super) fn storage(what: &str, f: Failure) -> CatalogError {
    CatalogError::Storage(format!("Hive Metastore: {what}: {}", f.message()))
}
