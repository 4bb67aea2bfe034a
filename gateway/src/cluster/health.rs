//! Executor states as operators see them: alive, draining, lost.
//!
//! Lost comes from the scheduler's heartbeats. Draining cannot: a pull-mode
//! poll rewrites the executor's heartbeat status on every call. Each node
//! serves the standard gRPC health service on its mutual-TLS port and turns
//! NOT_SERVING when it starts draining (`sluice_executor::node`); the gateway
//! asks it when someone looks (`system.executors`, `/executors`, the web UI).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::ExecutorInfo;

/// Longest a look waits for one executor's answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// Where an executor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorState {
    /// Heard from within the executor timeout, taking tasks.
    Alive,
    /// Finishing its tasks before it leaves (SIGTERM, a spot notice).
    Draining,
    /// Silent past the executor timeout: its work is redone elsewhere.
    Lost,
}

impl ExecutorState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorState::Alive => "alive",
            ExecutorState::Draining => "draining",
            ExecutorState::Lost => "lost",
        }
    }
}

/// `host:port` of an executor's control port (IPv6 hosts bracketed).
fn address(e: &ExecutorInfo) -> String {
    if e.host.contains(':') && !e.host.starts_with('[') {
        format!("[{}]:{}", e.host, e.control_port)
    } else {
        format!("{}:{}", e.host, e.control_port)
    }
}

/// Asks executors whether they drain, over connections kept per address.
pub(super) struct HealthProbe {
    tls: ClientTlsConfig,
    channels: Mutex<HashMap<String, Channel>>,
}

impl HealthProbe {
    pub(super) fn new(tls: ClientTlsConfig) -> Self {
        HealthProbe {
            tls,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn channel(&self, address: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(address) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(format!("https://{address}"))?
            .tls_config(self.tls.clone())?
            .connect_timeout(PROBE_TIMEOUT)
            .timeout(PROBE_TIMEOUT)
            .connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Whether `executor` says it is draining. An executor that does not
    /// answer is taken as not draining: its heartbeat decides alive or lost.
    pub(super) async fn draining(&self, executor: &ExecutorInfo) -> bool {
        let address = address(executor);
        let Ok(channel) = self.channel(&address) else {
            return false;
        };
        let request = HealthCheckRequest { service: String::new() };
        match HealthClient::new(channel).check(request).await {
            Ok(r) => r.into_inner().status == ServingStatus::NotServing as i32,
            Err(e) => {
                tracing::debug!(executor = %executor.id, "health check failed: {e}");
                // Reconnect next time (the executor may have restarted).
                self.channels.lock().unwrap_or_else(|e| e.into_inner()).remove(&address);
                false
            }
        }
    }

    /// Forgets connections to executors no longer registered.
    pub(super) fn retain(&self, executors: &[ExecutorInfo]) {
        let live: std::collections::HashSet<String> = executors.iter().map(address).collect();
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a, _| live.contains(a));
    }
}
