//! `AWS_PROFILE`: static credentials, region and endpoint from the shared
//! AWS files (`~/.aws/credentials`, `~/.aws/config`, or the files named by
//! `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE`).
//!
//! object_store reads the `AWS_*` variables, web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`), the container endpoint
//! and instance metadata, but not profiles; this fills that gap for the
//! common case of static keys. SSO and `role_arn`/`source_profile` chains are
//! not followed (use web identity or environment variables for those).
//! Hand-written: the AWS SDK's config loader would bring the whole SDK.

use std::collections::BTreeMap;
use std::path::PathBuf;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

/// Sections of an INI file: section name → key → value.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    out
}

fn home_file(var: &str, default: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws").join(default))
}

/// Settings of `profile` from the two files' texts: credentials file
/// sections are `[name]`, config file sections `[profile name]` (or
/// `[default]`).
fn profile_settings(profile: &str, credentials: &str, config: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let config = parse_ini(config);
    let section = if profile == "default" {
        "default".to_owned()
    } else {
        format!("profile {profile}")
    };
    if let Some(s) = config.get(&section) {
        out.extend(s.clone());
    }
    if let Some(s) = parse_ini(credentials).get(profile) {
        out.extend(s.clone());
    }
    out
}

/// Applies the profile's settings to `builder` where the environment left
/// them unset. Without `AWS_PROFILE` the `default` profile is used only when
/// the environment has no access key of its own.
pub(super) fn apply(builder: AmazonS3Builder) -> AmazonS3Builder {
    let explicit = std::env::var("AWS_PROFILE").ok();
    if explicit.is_none() && std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        return builder;
    }
    let profile = explicit.unwrap_or_else(|| "default".to_owned());
    let read = |var: &str, default: &str| {
        home_file(var, default)
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let settings = profile_settings(
        &profile,
        &read("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        &read("AWS_CONFIG_FILE", "config"),
    );
    with_settings(builder, &settings)
}

fn with_settings(mut builder: AmazonS3Builder, settings: &BTreeMap<String, String>) -> AmazonS3Builder {
    let pairs = [
        ("aws_access_key_id", AmazonS3ConfigKey::AccessKeyId),
        ("aws_secret_access_key", AmazonS3ConfigKey::SecretAccessKey),
        ("aws_session_token", AmazonS3ConfigKey::Token),
        ("region", AmazonS3ConfigKey::Region),
        ("endpoint_url", AmazonS3ConfigKey::Endpoint),
    ];
    for (name, key) in pairs {
        if let Some(v) = settings.get(name)
            && builder.get_config_value(&key).is_none()
        {
            builder = builder.with_config(key, v);
        }
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_named_profile_from_both_files() {
        let credentials =
            "[default]\naws_access_key_id = D\n\n[dev]\naws_access_key_id = K\naws_secret_access_key = S\n";
        let config = "[profile dev]\nregion = eu-west-1\nendpoint_url = http://127.0.0.1:9000\n";
        let s = profile_settings("dev", credentials, config);
        assert_eq!(s.get("aws_access_key_id").map(String::as_str), Some("K"));
        assert_eq!(s.get("region").map(String::as_str), Some("eu-west-1"));
        let b = with_settings(AmazonS3Builder::new(), &s);
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::AccessKeyId).as_deref(),
            Some("K")
        );
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:9000")
        );
    }

    #[test]
    fn environment_wins_over_the_profile() {
        let b = AmazonS3Builder::new().with_config(AmazonS3ConfigKey::Region, "us-east-2");
        let mut s = BTreeMap::new();
        s.insert("region".to_owned(), "eu-west-1".to_owned());
        let b = with_settings(b, &s);
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Region).as_deref(),
            Some("us-east-2")
        );
    }
}
