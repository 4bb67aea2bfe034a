//! Settings both binaries share: named object stores, the footer cache and
//! the query memory cap. Each binary layers them from its flags (with
//! `SLUICE_*` env twins) over its TOML file, as its own settings.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cache::CacheLimits;
use crate::store::{NamedStoreConfig, StoreSettings};

/// Flags of the lake settings; flattened into each binary's flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LakeArgs {
    /// Memory for parsed Parquet footers, e.g. 256MiB (default 256MiB).
    #[arg(long, env = "SLUICE_FOOTER_CACHE_SIZE")]
    pub footer_cache_size: Option<String>,
    /// Seconds a cached Parquet footer is kept (default 3600).
    #[arg(long, env = "SLUICE_FOOTER_CACHE_TTL")]
    pub footer_cache_ttl: Option<u64>,
}

/// The same settings as read from a TOML file (`[stores.NAME]` tables only
/// exist there: a store needs a URL and a map of options).
#[derive(Debug, Clone, Default)]
pub struct LakeFileSettings {
    pub footer_cache_size: Option<String>,
    pub footer_cache_ttl: Option<u64>,
    pub stores: BTreeMap<String, NamedStoreConfig>,
}

/// Validated lake settings.
#[derive(Debug, Clone)]
pub struct LakeSettings {
    pub stores: StoreSettings,
    pub footer_cache: CacheLimits,
    /// Query memory cap in bytes (operators spill beyond it).
    pub memory_limit: Option<usize>,
}

impl Default for LakeSettings {
    fn default() -> Self {
        LakeSettings {
            stores: StoreSettings::default(),
            footer_cache: CacheLimits {
                bytes: 256 << 20,
                ttl: Duration::from_secs(3600),
            },
            memory_limit: None,
        }
    }
}

impl LakeSettings {
    /// Layers flags over the file and validates; errors name the flag.
    pub fn load(
        args: LakeArgs,
        file: LakeFileSettings,
        memory_limit: Option<usize>,
    ) -> Result<Self, (&'static str, String)> {
        let defaults = LakeSettings::default();
        let bytes = match args.footer_cache_size.or(file.footer_cache_size) {
            Some(text) => parse_bytes(&text).map_err(|m| ("--footer-cache-size", m))? as u64,
            None => defaults.footer_cache.bytes,
        };
        let ttl = args
            .footer_cache_ttl
            .or(file.footer_cache_ttl)
            .map_or(defaults.footer_cache.ttl, Duration::from_secs);
        let stores = StoreSettings::new(&file.stores).map_err(|e| ("--config", e.to_string()))?;
        Ok(LakeSettings {
            stores,
            footer_cache: CacheLimits { bytes, ttl },
            memory_limit,
        })
    }
}

/// Parses `4GiB`, `512MiB`, `1.5G`, `1000000` into bytes (at least 1MiB).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size like 4GiB"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024.0_f64.powi(4),
        other => return Err(format!("unknown unit '{other}' in '{text}'")),
    };
    let bytes = number * factor;
    if bytes.is_nan() || bytes < 1024.0 * 1024.0 {
        return Err(format!("'{text}' is below 1MiB"));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_bytes("512 MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2g").unwrap(), 2_000_000_000);
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("10").is_err());
    }

    #[test]
    fn flags_win_and_errors_name_the_flag() {
        let s = LakeSettings::load(
            LakeArgs {
                footer_cache_size: Some("64MiB".into()),
                footer_cache_ttl: None,
            },
            LakeFileSettings {
                footer_cache_size: Some("1GiB".into()),
                footer_cache_ttl: Some(5),
                stores: BTreeMap::new(),
            },
            None,
        )
        .unwrap();
        assert_eq!(s.footer_cache.bytes, 64 << 20);
        assert_eq!(s.footer_cache.ttl, Duration::from_secs(5));
        let err = LakeSettings::load(
            LakeArgs {
                footer_cache_size: Some("lots".into()),
                footer_cache_ttl: None,
            },
            LakeFileSettings::default(),
            None,
        )
        .unwrap_err();
        assert_eq!(err.0, "--footer-cache-size");
    }
}

/// A value that must not appear in logs or `Debug` output (passwords,
/// secrets). Parses from a flag or env var like the value itself.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(pub T);

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret<String> {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[cfg(test)]
mod secret_tests {
    use super::Secret;

    #[test]
    fn secrets_do_not_print() {
        let s: Secret<String> = "hunter2".parse().unwrap();
        assert_eq!(
            format!("{s:?} {:?}", Some(Secret(b"hunter2".to_vec()))),
            "<redacted> Some(<redacted>)"
        );
    }
}
