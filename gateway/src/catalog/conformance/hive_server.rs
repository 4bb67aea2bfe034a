//! A throw-away Apache Hive Metastore 2.3 (the jars of the PyPI `pyspark`
//! package that `tests/run.sh` installs, on Derby) for the catalog tests.
//! The metastore binds every interface, so it runs in a network namespace
//! of its own, reached from here over a veth pair on a private /30.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running metastore, stopped and its namespace deleted on drop.
pub(super) struct TempHiveMetastore {
    dir: tempfile::TempDir,
    namespace: String,
    child: Child,
    pub(super) address: SocketAddr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `SLUICE_HMS_JARS`, or the jars of pyspark in the test venv.
fn jars() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_HMS_JARS") {
        return PathBuf::from(dir);
    }
    let venv = std::env::var_os("SLUICE_VENV").map_or_else(|| PathBuf::from("/var/tmp/sluice-venv"), PathBuf::from);
    let found = std::fs::read_dir(venv.join("lib"))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/pyspark/jars"))
        .find(|p| p.join("hive-metastore-2.3.10.jar").exists());
    found.unwrap_or_else(|| {
        panic!("no Hive Metastore jars: set SLUICE_HMS_JARS or install pyspark into the test venv (tests/run.sh does)")
    })
}

impl TempHiveMetastore {
    pub(super) fn start() -> Self {
        let jars = jars();
        let dir = tempfile::tempdir().unwrap();
        let pid = std::process::id();
        let namespace = format!("sluice-hms-{pid}");
        let (outside, inside) = (format!("sh{pid}a"), format!("sh{pid}b"));
        let n = pid % 16_000;
        let base: u32 = (n % 64) * 4;
        let (host_ip, ns_ip) = (
            format!("10.213.{}.{}", n / 64, base + 1),
            format!("10.213.{}.{}", n / 64, base + 2),
        );
        ip(&["netns", "add", &namespace]);
        ip(&["netns", "exec", &namespace, "ip", "link", "set", "lo", "up"]);
        ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside]);
        ip(&["link", "set", &inside, "netns", &namespace]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &outside]);
        ip(&["link", "set", &outside, "up"]);
        ip(&[
            "netns",
            "exec",
            &namespace,
            "ip",
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &inside,
        ]);
        ip(&["netns", "exec", &namespace, "ip", "link", "set", &inside, "up"]);

        let d = dir.path().display().to_string();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &namespace, "java", "-Xmx512m"])
            .args([
                "--add-opens=java.base/java.lang=ALL-UNNAMED",
                "--add-opens=java.base/java.net=ALL-UNNAMED",
                "--add-opens=java.base/java.util=ALL-UNNAMED",
            ])
            .arg(format!(
                "-Djavax.jdo.option.ConnectionURL=jdbc:derby:;databaseName={d}/metastore_db;create=true"
            ))
            .args([
                "-Djavax.jdo.option.ConnectionDriverName=org.apache.derby.jdbc.EmbeddedDriver",
                "-Ddatanucleus.schema.autoCreateAll=true",
                "-Dhive.metastore.schema.verification=false",
                "-Dhive.async.log.enabled=false",
                // DROP DATABASE reaches the transaction tables: a pool whose
                // jar is bundled, and Hive's test switch that creates them.
                "-Ddatanucleus.connectionPoolingType=DBCP",
                "-Dhive.in.test=true",
            ])
            .arg(format!("-Dhive.metastore.warehouse.dir=file://{d}/warehouse"))
            .arg(format!("-Dderby.system.home={d}"))
            .arg("-cp")
            .arg(format!("{}/*", jars.display()))
            .args(["org.apache.hadoop.hive.metastore.HiveMetaStore", "-p", "9083"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the Hive Metastore: {e}"));
        let address: SocketAddr = format!("{ns_ip}:9083").parse().unwrap();
        let mut server = TempHiveMetastore {
            dir,
            namespace,
            child,
            address,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect_timeout(&server.address, Duration::from_secs(1)).is_err() {
            if Instant::now() > deadline || server.child.try_wait().unwrap().is_some() {
                let log = std::fs::read_to_string(server.dir.path().join("log")).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                panic!("the Hive Metastore did not start:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        server
    }
}

impl Drop for TempHiveMetastore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The veth pair goes with the namespace.
        let _ = Command::new("ip").args(["netns", "del", &self.namespace]).output();
    }
}
