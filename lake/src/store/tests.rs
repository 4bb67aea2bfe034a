use super::*;

fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn table_options_split_and_refuse_credentials() {
    let (store, rest) = TableStoreOptions::parse(
        "s3://b/t/",
        &opts(&[
            ("aws.region", "eu-west-1"),
            ("aws.endpoint", "http://127.0.0.1:9000"),
            ("format.has_header", "true"),
            ("store", "archive"),
        ]),
    )
    .unwrap();
    assert_eq!(store.store.as_deref(), Some("archive"));
    assert_eq!(store.overrides.get("aws_region").map(String::as_str), Some("eu-west-1"));
    assert_eq!(rest, opts(&[("format.has_header", "true")]));
    let err = TableStoreOptions::parse("s3://b/t/", &opts(&[("aws.secret_access_key", "x")])).unwrap_err();
    assert!(matches!(err, StoreError::CredentialInOptions(_)), "{err}");
    let err = TableStoreOptions::parse("s3://b/t/", &opts(&[("aws.no_such_thing", "1")])).unwrap_err();
    assert!(matches!(err, StoreError::UnknownOption { .. }), "{err}");
    for (location, key) in [
        ("s3://b/t/", "aws.endpoint_url_sts"),
        ("s3://b/t/", "aws.role_arn"),
        ("s3://b/t/", "aws.role_session_name"),
        ("gs://b/t/", "gcp.base_url"),
        ("az://c/t/", "azure.authority_host"),
        ("az://c/t/", "azure.endpoint"),
    ] {
        let err = TableStoreOptions::parse(location, &opts(&[(key, "https://elsewhere")])).unwrap_err();
        assert!(matches!(err, StoreError::NotPerTable(_)), "{key}: {err}");
    }
    let err = TableStoreOptions::parse("gs://b/t/", &opts(&[("aws.region", "x")])).unwrap_err();
    assert!(matches!(err, StoreError::UnknownOption { .. }), "{err}");
}

#[test]
fn options_ride_in_the_store_url_and_come_back() {
    let (store, _) = TableStoreOptions::parse(
        "s3://bucket/x/",
        &opts(&[("aws.endpoint", "http://127.0.0.1:9000/a b"), ("store", "s&1")]),
    )
    .unwrap();
    let r = resolve("s3://bucket/x/y=1/", &store).unwrap();
    assert_eq!(r.path.as_ref(), "x/y=1");
    assert!(r.store_url.as_str().ends_with("@bucket/"), "{}", r.store_url.as_str());
    let url: &Url = r.store_url.as_ref();
    assert_eq!(TableStoreOptions::decode(url.username()).unwrap(), store);
    let plain = resolve("s3://bucket/x/", &TableStoreOptions::default()).unwrap();
    assert_eq!(plain.store_url.as_str(), "s3://bucket/");
}

#[test]
fn abfss_becomes_az_with_the_account() {
    let r = resolve(
        "abfss://data@acct.dfs.core.windows.net/lake/t/",
        &TableStoreOptions::default(),
    )
    .unwrap();
    assert_eq!(r.path.as_ref(), "lake/t");
    let url: &Url = r.store_url.as_ref();
    assert_eq!(url.scheme(), "az");
    assert_eq!(url.host_str(), Some("data"));
    assert_eq!(
        TableStoreOptions::decode(url.username())
            .unwrap()
            .overrides
            .get("azure_storage_account_name")
            .map(String::as_str),
        Some("acct")
    );
}

#[test]
fn named_stores_are_validated_and_matched_by_bucket() {
    let mut named = BTreeMap::new();
    named.insert(
        "lake".to_owned(),
        NamedStoreConfig {
            url: "s3://lake-bucket".into(),
            options: opts(&[("aws_endpoint", "http://127.0.0.1:1"), ("aws_allow_http", "true")]),
        },
    );
    let s = StoreSettings::new(&named).unwrap();
    assert!(s.named_for_bucket("s3://lake-bucket").is_some());
    assert!(s.named_for_bucket("s3://other").is_none());
    assert!(!format!("{s:?}").contains("127.0.0.1"), "Debug hides options");
    named.insert(
        "bad".to_owned(),
        NamedStoreConfig {
            url: "s3://x".into(),
            options: opts(&[("nonsense", "1")]),
        },
    );
    assert!(StoreSettings::new(&named).is_err());
}

#[test]
fn a_store_url_cannot_redirect_credentials() {
    let registry = LakeRegistry::new(StoreSettings::default(), StoreMetrics::new().unwrap());
    let forged = TableStoreOptions {
        store: None,
        overrides: opts(&[("google_base_url", "https://evil.example")]),
    };
    let r = resolve("gs://bucket/t/", &forged).unwrap();
    let err = registry.get_store(r.store_url.as_ref()).unwrap_err().to_string();
    assert!(err.contains("cannot be set per table"), "{err}");
}

#[tokio::test]
async fn local_store_requests_are_counted() {
    let metrics = StoreMetrics::new().unwrap();
    let registry = LakeRegistry::new(StoreSettings::default(), metrics.clone());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"hello").unwrap();
    let url = Url::from_directory_path(dir.path()).unwrap();
    let r = resolve(url.as_str(), &TableStoreOptions::default()).unwrap();
    let store = registry.get_store(r.store_url.as_ref()).unwrap();
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let listed: Vec<_> = store.list(Some(&r.path)).try_collect().await.unwrap();
    assert_eq!(listed.len(), 1);
    let got = store.get(&listed[0].location).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"hello");
    assert_eq!(metrics.count("LIST"), 1);
    assert_eq!(metrics.count("GET"), 1);
}
