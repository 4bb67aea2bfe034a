//! The executor-loss watch: executors leaving the scheduler's registry, and
//! dead processes found by their refusing ports, probed at a tick and right
//! after a scheduler connection from their host closed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ballista_core::serde::protobuf::ExecutorStoppedParams;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Counts executors leaving the scheduler's registry (heartbeat expiry, fetch
/// failures, deregistration after a drain), and speeds up detection of dead
/// processes: an executor whose Flight port refuses TCP connections (nothing
/// listens there any more: the process is gone) is reported stopped to the
/// scheduler at once instead of after `--executor-timeout`, so that its lost
/// work is redone without waiting. Two kinds of evidence count: a port that
/// refuses twice in a row at the 200 ms tick, or a scheduler connection from
/// the executor's host that closed (`closes.rs`) followed by a refused port
/// within [`AFTER_CLOSE`]: a killed process closes both at once. Ports that
/// merely time out are left to the heartbeat timeout, since a slow network
/// is not a dead executor.
pub(super) async fn watch_executors(
    scheduler: Arc<Scheduler>,
    losses: tokio::sync::watch::Sender<u64>,
    slots: Arc<std::sync::atomic::AtomicUsize>,
    mut closed: mpsc::UnboundedReceiver<SocketAddr>,
    shutdown: CancellationToken,
) {
    let losses = Arc::new(losses);
    let mut known = std::collections::HashSet::<String>::new();
    let mut refused = std::collections::HashMap::<String, u32>::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            Some(peer) = closed.recv() => {
                let mut hosts = std::collections::HashSet::from([peer.ip()]);
                while let Ok(peer) = closed.try_recv() {
                    hosts.insert(peer.ip());
                }
                tokio::spawn(probe_after_close(Arc::clone(&scheduler), Arc::clone(&losses), hosts));
                continue;
            }
            _ = tick.tick() => {}
        }
        let Ok(state) = scheduler.state.executor_manager.get_executors_state().await else {
            continue;
        };
        let now: std::collections::HashSet<String> = state.iter().map(|(m, _, _)| m.id.clone()).collect();
        let total: usize = state.iter().map(|(m, _, _)| m.specification.vcores as usize).sum();
        slots.store(total, std::sync::atomic::Ordering::Relaxed);
        let gone: Vec<&String> = known.difference(&now).collect();
        if !gone.is_empty() {
            tracing::warn!(?gone, "executors left the cluster");
            losses.send_modify(|n| *n += 1);
        }
        known = now;
        refused.retain(|id, _| known.contains(id));
        let probes = state.into_iter().map(|(meta, _, _)| async move {
            let addr = format!("{}:{}", meta.host, meta.port);
            let dead = port_refuses(&addr).await;
            (meta.id, addr, dead)
        });
        for (id, addr, dead) in futures::future::join_all(probes).await {
            if !dead {
                refused.remove(&id);
                continue;
            }
            let n = refused.entry(id.clone()).or_default();
            *n += 1;
            if *n == 2 {
                declare_lost(&scheduler, &losses, id, &addr, "refuses connections").await;
            }
        }
    }
}

type Scheduler = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// How long after a scheduler connection closed its host's executors are
/// probed: at once, and again at each of these delays (a dying process may
/// close its listener a moment after its connections).
const AFTER_CLOSE: [Duration; 3] = [Duration::ZERO, Duration::from_millis(20), Duration::from_millis(100)];

/// Probes the executors on `hosts` (all of them when none is registered
/// there, as behind a NAT) after a scheduler connection from there closed;
/// one that refuses is declared lost.
async fn probe_after_close(
    scheduler: Arc<Scheduler>,
    losses: Arc<tokio::sync::watch::Sender<u64>>,
    hosts: std::collections::HashSet<IpAddr>,
) {
    let mut waited = Duration::ZERO;
    for delay in AFTER_CLOSE {
        tokio::time::sleep(delay.saturating_sub(waited)).await;
        waited = delay;
        let Ok(state) = scheduler.state.executor_manager.get_executors_state().await else {
            return;
        };
        let on_host = |host: &str| host.parse::<IpAddr>().is_ok_and(|ip| hosts.contains(&ip));
        let any_on_hosts = state.iter().any(|(m, _, _)| on_host(&m.host));
        let probes = state
            .into_iter()
            .filter(|(m, _, _)| !any_on_hosts || on_host(&m.host))
            .map(|(meta, _, _)| async move {
                let addr = format!("{}:{}", meta.host, meta.port);
                let dead = port_refuses(&addr).await;
                (meta.id, addr, dead)
            });
        let mut found = false;
        for (id, addr, dead) in futures::future::join_all(probes).await {
            if dead {
                found = true;
                declare_lost(
                    &scheduler,
                    &losses,
                    id,
                    &addr,
                    "closed its scheduler connection and refuses connections",
                )
                .await;
            }
        }
        if found {
            return;
        }
    }
}

/// Reports executor `id` stopped to the scheduler, which redoes its work,
/// and tells the loss watchers (held polls among them) at once.
async fn declare_lost(
    scheduler: &Scheduler,
    losses: &tokio::sync::watch::Sender<u64>,
    id: String,
    addr: &str,
    why: &str,
) {
    tracing::warn!(executor = %id, %addr, "executor {why}: declaring it lost");
    let request = tonic::Request::new(ExecutorStoppedParams {
        executor_id: id,
        reason: format!("{addr} {why}: the executor process is gone"),
    });
    if let Err(e) = scheduler.executor_stopped(request).await {
        tracing::warn!("could not report a dead executor: {e}");
    }
    losses.send_modify(|n| *n += 1);
}

/// True if nothing listens at `addr` any more (connection refused). A
/// timeout is not proof of death and answers false.
pub(super) async fn port_refuses(addr: &str) -> bool {
    let r = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await;
    matches!(r, Ok(Err(ref e)) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}
