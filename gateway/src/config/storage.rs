//! The storage settings of the gateway's config: metadata caches and
//! managed-table writes.

use super::{Cli, ConfigError, FileConfig, invalid};

fn bytes(flag: &'static str, text: Option<String>, default: u64) -> Result<u64, ConfigError> {
    match text {
        Some(t) => sluice_lake::config::parse_bytes(&t)
            .map(|b| b as u64)
            .map_err(|m| invalid(flag, m)),
        None => Ok(default),
    }
}

pub(super) fn load_caches(cli: &Cli, file: &FileConfig) -> Result<crate::table::CacheSettings, ConfigError> {
    use std::time::Duration;
    let d = crate::table::CacheSettings::default();
    let secs = |a: Option<u64>, b: Option<u64>, default: Duration| a.or(b).map_or(default, Duration::from_secs);
    Ok(crate::table::CacheSettings {
        tables: cli.table_cache_size.or(file.table_cache_size).unwrap_or(d.tables),
        tables_ttl: secs(cli.table_cache_ttl, file.table_cache_ttl, d.tables_ttl),
        partitions_bytes: bytes(
            "--partition-cache-size",
            cli.partition_cache_size.clone().or(file.partition_cache_size.clone()),
            d.partitions_bytes,
        )?,
        partitions_ttl: secs(cli.partition_cache_ttl, file.partition_cache_ttl, d.partitions_ttl),
        listings_bytes: bytes(
            "--listing-cache-size",
            cli.listing_cache_size.clone().or(file.listing_cache_size.clone()),
            d.listings_bytes,
        )?,
        listings_ttl: secs(cli.listing_cache_ttl, file.listing_cache_ttl, d.listings_ttl),
    })
}

pub(super) fn load_write(cli: &Cli, file: &FileConfig) -> Result<crate::query::write::WriteSettings, ConfigError> {
    use crate::query::write::{Codec, WriteSettings};
    let d = WriteSettings::default();
    let codec = match cli.write_compression.clone().or(file.write_compression.clone()) {
        Some(c) => Codec::parse(&c)
            .ok_or_else(|| invalid("--write-compression", format!("'{c}' is not one of zstd, snappy, none")))?,
        None => d.codec,
    };
    let row_group_rows = cli
        .write_row_group_size
        .or(file.write_row_group_size)
        .unwrap_or(d.row_group_rows);
    if row_group_rows == 0 {
        return Err(invalid("--write-row-group-size", "must be at least 1"));
    }
    let max_open_files = cli
        .write_max_open_files
        .or(file.write_max_open_files)
        .unwrap_or(d.max_open_files);
    if max_open_files == 0 {
        return Err(invalid("--write-max-open-files", "must be at least 1"));
    }
    let target_file_bytes = bytes(
        "--write-target-file-size",
        cli.write_target_file_size
            .clone()
            .or(file.write_target_file_size.clone()),
        d.target_file_bytes as u64,
    )? as usize;
    Ok(WriteSettings {
        codec,
        row_group_rows,
        max_open_files,
        target_file_bytes,
    })
}
