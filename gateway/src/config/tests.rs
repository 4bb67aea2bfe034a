use super::*;

fn cli(args: &[&str]) -> Cli {
    let mut v = vec!["sluice-gateway"];
    v.extend_from_slice(args);
    Cli::try_parse_from(v).unwrap()
}

#[test]
fn remote_executors_need_a_listener_and_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let err = Config::load(cli(&["--data-dir", d, "--local-executors", "0"])).unwrap_err();
    assert!(err.to_string().starts_with("--local-executors:"), "{err}");
    let err = Config::load(cli(&["--data-dir", d, "--scheduler-listen", "127.0.0.1:0"])).unwrap_err();
    assert!(err.to_string().starts_with("--scheduler-listen:"), "{err}");
    let err = Config::load(cli(&[
        "--data-dir",
        d,
        "--scheduler-listen",
        "127.0.0.1:0",
        "--cluster-secret",
        "short",
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("at least 16"), "{err}");
    let c = Config::load(cli(&[
        "--data-dir",
        d,
        "--scheduler-listen",
        "127.0.0.1:0",
        "--cluster-secret",
        "0123456789abcdef",
        "--local-executors",
        "0",
    ]))
    .unwrap();
    assert_eq!(c.local_executors, 0);
    assert_eq!(c.executor_timeout.as_secs(), 15);
    assert_eq!(c.target_partitions, None);
}

#[test]
fn defaults_and_toml_layering() {
    let dir = tempfile::tempdir().unwrap();
    let toml_path = dir.path().join("g.toml");
    std::fs::write(&toml_path, "local_executors = 3\npg_listen = \"127.0.0.1:6543\"\n").unwrap();
    let data = dir.path().join("d");
    let c = Config::load(cli(&[
        "--config",
        toml_path.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--pg-listen",
        "127.0.0.1:7000",
    ]))
    .unwrap();
    assert_eq!(c.local_executors, 3, "file value applies");
    assert_eq!(c.pg_listen.port(), 7000, "flag wins over file");
    assert!(c.warehouse.as_str().ends_with("/d/warehouse/"));
    assert!(matches!(&c.catalog, CatalogLocation::Sqlite(p) if p.ends_with("catalog.db")));
}

#[test]
fn refuses_public_listen_without_password() {
    let dir = tempfile::tempdir().unwrap();
    let err = Config::load(cli(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--pg-listen",
        "0.0.0.0:5432",
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("--pg-listen:"), "{err}");
}

#[test]
fn bad_catalog_url_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let err = Config::load(cli(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--catalog",
        "mysql://x",
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("--catalog:"), "{err}");
}

#[test]
fn demo_is_a_plain_flag() {
    assert_eq!(cli(&["--demo"]).demo, Some(true));
    assert_eq!(cli(&["--demo=false"]).demo, Some(false));
    assert_eq!(cli(&[]).demo, None);
}

#[test]
fn example_file_parses() {
    let text = include_str!("../../sluice.example.toml");
    let parsed: FileConfig = toml::from_str(text).unwrap();
    assert_eq!(parsed.local_executors, Some(2));
    assert_eq!(parsed.write_compression.as_deref(), Some("zstd"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.toml");
    std::fs::write(
        &path,
        text.replace("./sluice-data", dir.path().join("d").to_str().unwrap()),
    )
    .unwrap();
    let c = Config::load(cli(&["--config", path.to_str().unwrap()])).unwrap();
    assert_eq!(c.caches.listings_ttl.as_secs(), 300);
    assert_eq!(c.write.max_open_files, 64);
}

#[test]
fn object_store_warehouses_and_stores_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let c = Config::load(cli(&["--data-dir", d, "--warehouse", "s3://bucket/wh"])).unwrap();
    assert_eq!(c.warehouse.as_str(), "s3://bucket/wh/");
    let err = Config::load(cli(&["--data-dir", d, "--warehouse", "ftp://x/"])).unwrap_err();
    assert!(err.to_string().starts_with("--warehouse:"), "{err}");
    let err = Config::load(cli(&["--data-dir", d, "--write-compression", "lzo"])).unwrap_err();
    assert!(err.to_string().starts_with("--write-compression:"), "{err}");
    let toml_path = dir.path().join("s.toml");
    std::fs::write(
        &toml_path,
        "[stores.x]\nurl = \"s3://b\"\noptions = { aws_nonsense = \"1\" }\n",
    )
    .unwrap();
    let err = Config::load(cli(&["--data-dir", d, "--config", toml_path.to_str().unwrap()])).unwrap_err();
    assert!(err.to_string().contains("store 'x'"), "{err}");
}

#[test]
fn unknown_toml_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let toml_path = dir.path().join("g.toml");
    std::fs::write(&toml_path, "pg_lisen = \"127.0.0.1:1\"\n").unwrap();
    let err = Config::load(cli(&["--config", toml_path.to_str().unwrap()])).unwrap_err();
    assert!(matches!(err, ConfigError::ParseFile { .. }));
}

#[test]
fn secrets_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let args = cli(&[
        "--data-dir",
        d,
        "--scheduler-listen",
        "127.0.0.1:0",
        "--cluster-secret",
        "cluster-secret-0123456789",
        "--admin-password",
        "admin-password-Ω",
    ]);
    let shown = format!("{args:?}");
    let config = Config::load(args).unwrap();
    let shown = format!("{shown} {config:?}");
    assert!(
        !shown.contains("cluster-secret-0123456789") && !shown.contains("admin-password-Ω"),
        "{shown}"
    );
    assert!(
        config.cluster_secret.is_some()
            && matches!(config.admin_auth, AdminAuth::Password(ref p) if p == "admin-password-Ω")
    );
}

#[test]
fn jwks_url_is_checked_and_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let c = Config::load(cli(&[
        "--data-dir",
        d,
        "--jwt-jwks-url",
        "https://idp.example/jwks.json",
    ]))
    .unwrap();
    match c.jwt.map(|j| j.key) {
        Some(crate::auth::jwt::JwtKey::Jwks { url, ttl }) => {
            assert_eq!(url.as_str(), "https://idp.example/jwks.json");
            assert_eq!(ttl.as_secs(), 600);
        }
        other => panic!("{other:?}"),
    }
    for bad in ["ftp://idp.example/jwks.json", "not a url", "file:///etc/jwks.json"] {
        let err = Config::load(cli(&["--data-dir", d, "--jwt-jwks-url", bad])).unwrap_err();
        assert!(err.to_string().starts_with("--jwt-jwks-url:"), "{err}");
    }
    let err = Config::load(cli(&["--data-dir", d, "--jwt-jwks-ttl", "60"])).unwrap_err();
    assert!(err.to_string().starts_with("--jwt-jwks-ttl:"), "{err}");
    let mut v = vec![
        "sluice-gateway",
        "--jwt-jwks-url",
        "https://idp.example/k",
        "--jwt-public-key-file",
        "k.pem",
    ];
    assert!(Cli::try_parse_from(&v).is_err(), "clap refuses two key sources");
    v.truncate(3);
    // The file's key and the flag's URL conflict too.
    let toml_path = dir.path().join("j.toml");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").unwrap();
    std::fs::write(
        &toml_path,
        format!("jwt_secret_file = {:?}\n", secret.to_str().unwrap()),
    )
    .unwrap();
    v.extend(["--data-dir", d, "--config", toml_path.to_str().unwrap()]);
    let err = Config::load(Cli::try_parse_from(&v).unwrap()).unwrap_err();
    assert!(err.to_string().contains("only one of"), "{err}");
}

#[test]
fn catalog_urls_pick_a_backend_and_never_echo_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let c = Config::load(cli(&[
        "--data-dir",
        d,
        "--catalog",
        "postgres://u@db:5432/cat",
        "--catalog-poll",
        "0.5",
    ]))
    .unwrap();
    let CatalogLocation::Postgres {
        url, password, poll, ..
    } = &c.catalog
    else {
        panic!("{:?}", c.catalog)
    };
    assert_eq!(url.0, "postgres://u@db:5432/cat");
    assert!(password.is_none());
    assert_eq!(*poll, std::time::Duration::from_millis(500));
    let err = Config::load(cli(&["--data-dir", d, "--catalog", "mysql://u:hunter2@db/cat"])).unwrap_err();
    assert!(
        err.to_string().contains("--catalog") && !err.to_string().contains("hunter2"),
        "{err}"
    );
    let err = Config::load(cli(&[
        "--data-dir",
        d,
        "--catalog",
        "postgres://db/cat",
        "--catalog-poll",
        "0",
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("--catalog-poll"), "{err}");
    assert!(
        !format!("{:?}", c.catalog).contains("u@db"),
        "the URL is redacted in Debug"
    );
}
