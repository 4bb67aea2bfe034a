//! The executor-loss watch: executors leaving the scheduler's registry, and
//! dead processes found by their refusing ports.

use std::sync::Arc;
use std::time::Duration;

use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio_util::sync::CancellationToken;

/// Counts executors leaving the scheduler's registry (heartbeat expiry, fetch
/// failures, deregistration after a drain), and speeds up detection of dead
/// processes: an executor whose Flight port refuses TCP connections twice in
/// a row, 200 ms apart (nothing listens there any more: the process is gone),
/// is reported stopped to the scheduler at once instead of after
/// `--executor-timeout`, so that its lost work is redone within half a second.
/// Ports that merely time out are left to the heartbeat timeout, since a slow
/// network is not a dead executor.
pub(super) async fn watch_executors(
    scheduler: Arc<SchedulerServer<LogicalPlanNode, PhysicalPlanNode>>,
    losses: tokio::sync::watch::Sender<u64>,
    slots: Arc<std::sync::atomic::AtomicUsize>,
    shutdown: CancellationToken,
) {
    use ballista_core::serde::protobuf::ExecutorStoppedParams;
    use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;

    let mut known = std::collections::HashSet::<String>::new();
    let mut refused = std::collections::HashMap::<String, u32>::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
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
                tracing::warn!(executor = %id, %addr, "executor port refuses connections: declaring it lost");
                let request = tonic::Request::new(ExecutorStoppedParams {
                    executor_id: id,
                    reason: format!("{addr} refuses connections: the executor process is gone"),
                });
                if let Err(e) = scheduler.executor_stopped(request).await {
                    tracing::warn!("could not report a dead executor: {e}");
                }
            }
        }
    }
}

/// True if nothing listens at `addr` any more (connection refused). A
/// timeout is not proof of death and answers false.
pub(super) async fn port_refuses(addr: &str) -> bool {
    let r = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await;
    matches!(r, Ok(Err(ref e)) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}
