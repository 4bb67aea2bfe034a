//! Reading the object store's directory structure: the files under one
//! location, and the Hive partitions (`k=v/` directories) under a table.
//!
//! Names starting with `_` or `.` are hidden, as in Hive and Spark
//! (`_SUCCESS`, `.crc` files, writers' temporary directories).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result as DfResult};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

fn hidden(segment: &str) -> bool {
    segment.starts_with('_') || segment.starts_with('.')
}

/// Segments of `path` below `base`, or `None` if it is not below it.
fn relative<'a>(base: &Path, path: &'a Path) -> Option<Vec<&'a str>> {
    let base = base.as_ref();
    let p = path.as_ref();
    let rest = if base.is_empty() {
        p
    } else {
        p.strip_prefix(base)?.strip_prefix('/')?
    };
    Some(rest.split('/').filter(|s| !s.is_empty()).collect())
}

fn store_error(e: object_store::Error) -> DataFusionError {
    DataFusionError::ObjectStore(Box::new(e))
}

/// The data files of a location: everything under a directory (recursively,
/// skipping hidden names and empty files), or the one file it names.
pub(super) async fn list(store: Arc<dyn ObjectStore>, path: &Path, directory: bool) -> DfResult<Vec<ObjectMeta>> {
    if !directory {
        let meta = store.head(path).await.map_err(store_error)?;
        return Ok(vec![meta]);
    }
    let mut out: Vec<ObjectMeta> = store
        .list(Some(path))
        .try_filter(|m| {
            let keep = m.size > 0 && relative(path, &m.location).is_some_and(|segs| !segs.iter().any(|s| hidden(s)));
            futures::future::ready(keep)
        })
        .try_collect()
        .await
        .map_err(store_error)?;
    out.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(out)
}

/// Undoes Hive's escaping of a partition value in a directory name (`%2F`).
pub fn decode_partition_value(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A directory URL below `base` (a directory URL) with the given raw
/// directory names, each escaped as a URL path segment.
pub fn child_url(base: &url::Url, dirs: &[String]) -> url::Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty();
        for d in dirs {
            segments.push(d);
        }
        segments.push("");
    }
    url
}

/// The partitions under a table's directory: one LIST of everything below
/// it, each file's first `columns.len()` directories read as `col=value`
/// in column order. Returns (values, directory URL) per partition, sorted.
pub async fn discover_partitions(
    store: Arc<dyn ObjectStore>,
    base_url: &url::Url,
    base: &Path,
    columns: &[String],
) -> DfResult<Vec<(Vec<String>, String)>> {
    let mut found: BTreeMap<Vec<String>, String> = BTreeMap::new();
    let mut files = store.list(Some(base));
    while let Some(meta) = files.try_next().await.map_err(store_error)? {
        let Some(segments) = relative(base, &meta.location) else {
            continue;
        };
        if segments.len() <= columns.len() || segments.iter().any(|s| hidden(s)) {
            continue;
        }
        // Listed paths hold directory names as stored (Hive-escaped values).
        let dirs: Vec<String> = segments[..columns.len()].iter().map(|s| (*s).to_owned()).collect();
        let mut values = Vec::with_capacity(columns.len());
        for (dir, col) in dirs.iter().zip(columns) {
            match dir.split_once('=') {
                Some((k, v)) if k == col => values.push(decode_partition_value(v)),
                _ => break,
            }
        }
        if values.len() != columns.len() {
            continue;
        }
        found
            .entry(values)
            .or_insert_with(|| child_url(base_url, &dirs).to_string());
    }
    Ok(found.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    async fn put(store: &InMemory, path: &str) {
        store
            .put(&Path::parse(path).unwrap(), PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn lists_skip_hidden_and_discovery_reads_hive_directories() {
        let store = InMemory::new();
        for p in [
            "t/day=2024-01-01/a.parquet",
            "t/day=2024-01-01/_SUCCESS",
            "t/day=2024-01-02/b.parquet",
            "t/day=2024-01-02/.tmp/c.parquet",
            "t/day=a%2Fb/d.parquet", // Hive's escape of "a/b"
            "t/_staging/day=2024-01-03/e.parquet",
            "t/other/f.parquet",
            "t/g.parquet",
        ] {
            put(&store, p).await;
        }
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        let files = list(Arc::clone(&store), &Path::from("t/day=2024-01-02"), true)
            .await
            .unwrap();
        assert_eq!(files.len(), 1);
        let base = url::Url::parse("s3://b/t/").unwrap();
        let parts = discover_partitions(store, &base, &Path::from("t"), &["day".to_owned()])
            .await
            .unwrap();
        assert_eq!(
            parts,
            vec![
                (vec!["2024-01-01".to_owned()], "s3://b/t/day=2024-01-01/".to_owned()),
                (vec!["2024-01-02".to_owned()], "s3://b/t/day=2024-01-02/".to_owned()),
                (vec!["a/b".to_owned()], "s3://b/t/day=a%252Fb/".to_owned()),
            ]
        );
    }

    #[test]
    fn decodes_hive_escapes() {
        assert_eq!(decode_partition_value("a%2Fb%3Dc"), "a/b=c");
        assert_eq!(decode_partition_value("100%"), "100%");
        assert_eq!(decode_partition_value("plain"), "plain");
    }
}
