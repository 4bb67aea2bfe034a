//! A throw-away PostgreSQL server (Debian's `postgresql` package, which
//! `tests/run.sh` installs) on 127.0.0.1 for the catalog tests.

use std::path::PathBuf;
use std::process::Command;

/// A running server, stopped and deleted on drop.
pub(super) struct TempPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// Runs `program args` as the `postgres` user when this is root (initdb
/// refuses root), panicking with its output if it fails.
fn run(as_postgres: bool, program: PathBuf, args: &[String]) {
    let out = if as_postgres {
        let line = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| format!("'{a}'")))
            .collect::<Vec<_>>()
            .join(" ");
        Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c", &line])
            .output()
    } else {
        Command::new(&program).args(args).output()
    }
    .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl TempPostgres {
    pub(super) fn start() -> Self {
        let bin = std::env::var_os("SLUICE_PG_BIN")
            .map_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"), PathBuf::from);
        assert!(
            bin.join("initdb").exists(),
            "PostgreSQL server binaries not found in {}: install Debian's postgresql (tests/run.sh does) or set SLUICE_PG_BIN",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let root = is_root();
        if root {
            run(
                false,
                "chown".into(),
                &["postgres".into(), dir.path().display().to_string()],
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.path().join("data").display().to_string();
        run(
            root,
            bin.join("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ]
            .map(String::from),
        );
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=50",
            dir.path().display()
        );
        let log = dir.path().join("log").display().to_string();
        run(
            root,
            bin.join("pg_ctl"),
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"].map(String::from),
        );
        TempPostgres { dir, bin, port }
    }

    /// Creates database `name`; returns its URL.
    pub(super) fn create_database(&self, name: &str) -> String {
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let sql = format!("CREATE DATABASE {name}");
        // The sync client runs its own runtime: off the test's.
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
            c.batch_execute(&sql).unwrap();
        })
        .join()
        .unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = std::panic::catch_unwind(|| {
            run(
                is_root(),
                self.bin.join("pg_ctl"),
                &["-D", &data, "-m", "immediate", "stop"].map(String::from),
            )
        });
    }
}
