//! Reused Flight clients for shuffle fetches between cluster members.
//!
//! Without a pool every fetch of a remote shuffle partition opens a new
//! connection, with a TCP and mutual-TLS handshake. Ballista's own pool is
//! private to `ballista-executor`, so this is the small one the public
//! `BallistaClientPool` trait asks for: idle clients per (host, port,
//! settings), last used first, dropped after [`IDLE_FOR`] without use or when
//! a fetch discards them after an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballista_core::client::BallistaClient;
use ballista_core::client_pool::{BallistaClientPool, PooledClient};
use ballista_core::error::Result;
use ballista_core::extension::BallistaConfigGrpcEndpoint;
use ballista_core::utils::GrpcClientConfig;

/// How long an unused client is kept.
const IDLE_FOR: Duration = Duration::from_secs(60);
/// Idle clients kept per peer (one per concurrent fetch, beyond that the
/// connection is closed).
const MAX_IDLE_PER_PEER: usize = 16;

type Key = (String, u16, GrpcClientConfig);
type Idle = Arc<Mutex<HashMap<Key, Vec<(BallistaClient, Instant)>>>>;

/// The pool (see the module docs); the gateway fetches remote results with
/// one too.
#[derive(Default)]
pub struct ClientPool {
    idle: Idle,
}

impl std::fmt::Debug for ClientPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self
            .idle
            .lock()
            .map(|m| m.values().map(Vec::len).sum::<usize>())
            .unwrap_or(0);
        f.debug_struct("ClientPool").field("idle", &idle).finish()
    }
}

impl ClientPool {
    /// The most recently returned idle client for `key`, after dropping
    /// every client idle for [`IDLE_FOR`].
    fn take(&self, key: &Key) -> Option<BallistaClient> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        evict(&mut idle);
        idle.get_mut(key).and_then(Vec::pop).map(|(client, _)| client)
    }

    fn put_back(idle: &Idle, key: Key, client: BallistaClient) {
        let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
        let clients = idle.entry(key).or_default();
        if clients.len() < MAX_IDLE_PER_PEER {
            clients.push((client, Instant::now()));
        }
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().unwrap().values().map(Vec::len).sum()
    }
}

#[tonic::async_trait]
impl BallistaClientPool for ClientPool {
    async fn acquire(
        &self,
        host: &str,
        port: u16,
        config: &GrpcClientConfig,
        customize_endpoint: Option<Arc<BallistaConfigGrpcEndpoint>>,
    ) -> Result<PooledClient> {
        let key = (host.to_owned(), port, config.clone());
        let client = match self.take(&key) {
            Some(client) => client,
            None => {
                BallistaClient::try_new(
                    host,
                    port,
                    config.max_message_size,
                    config.use_tls,
                    customize_endpoint,
                    config.io_retries_times,
                    config.io_retry_wait_time_ms,
                    config.initial_connection_window_size,
                    config.initial_stream_window_size,
                )
                .await?
            }
        };
        let idle = Arc::clone(&self.idle);
        Ok(PooledClient::new(
            client,
            Box::new(move |client| ClientPool::put_back(&idle, key, client)),
        ))
    }

    async fn evict_idle(&self) {
        evict(&mut self.idle.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Drops the clients idle for [`IDLE_FOR`] or longer.
fn evict(idle: &mut HashMap<Key, Vec<(BallistaClient, Instant)>>) {
    let now = Instant::now();
    idle.retain(|_, clients| {
        clients.retain(|(_, since)| now.duration_since(*since) < IDLE_FOR);
        !clients.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> Key {
        ("127.0.0.1".to_owned(), port, GrpcClientConfig::default())
    }

    #[tokio::test]
    async fn a_returned_client_is_reused_and_a_discarded_one_is_not() {
        let pool = ClientPool::default();
        ClientPool::put_back(&pool.idle, key(1), BallistaClient::new_for_test("127.0.0.1", 1));
        assert_eq!(pool.idle_count(), 1);
        assert!(pool.take(&key(2)).is_none(), "another peer's client is not handed out");
        let client = pool.take(&key(1)).expect("idle client");
        assert_eq!(pool.idle_count(), 0);
        let idle = Arc::clone(&pool.idle);
        let k = key(1);
        let pooled = PooledClient::new(client, Box::new(move |c| ClientPool::put_back(&idle, k, c)));
        drop(pooled);
        assert_eq!(pool.idle_count(), 1, "dropped: back in the pool");
        let client = pool.take(&key(1)).unwrap();
        let idle = Arc::clone(&pool.idle);
        let k = key(1);
        PooledClient::new(client, Box::new(move |c| ClientPool::put_back(&idle, k, c))).discard();
        assert_eq!(pool.idle_count(), 0, "discarded: closed");
    }

    #[tokio::test]
    async fn idle_clients_expire() {
        let pool = ClientPool::default();
        let old = Instant::now().checked_sub(IDLE_FOR + Duration::from_secs(1)).unwrap();
        pool.idle
            .lock()
            .unwrap()
            .insert(key(1), vec![(BallistaClient::new_for_test("127.0.0.1", 1), old)]);
        assert!(pool.take(&key(1)).is_none());
        assert_eq!(pool.idle_count(), 0);
    }
}
