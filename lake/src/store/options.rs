//! A table's store options: the named store it selects (`'store'`) and its
//! own non-secret overrides (`'aws.*'`, `'gcp.*'`, `'azure.*'`), split from
//! its format options, validated, and folded into a store URL.

use std::collections::BTreeMap;

use url::Url;

use super::{StoreError, StoreKind, is_credential};

/// The store options of one table: the named store it selects and its own
/// non-secret overrides, in object_store spelling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStoreOptions {
    pub store: Option<String>,
    pub overrides: BTreeMap<String, String>,
}

impl TableStoreOptions {
    /// Splits a table's `OPTIONS` into store options (`store`, `aws.*`,
    /// `gcp.*`, `azure.*`) and the rest (format options), validating the
    /// store options for the location's kind.
    pub fn parse(
        location: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<(Self, BTreeMap<String, String>), StoreError> {
        let url = Url::parse(location).map_err(|_| StoreError::BadLocation(location.to_owned()))?;
        let kind = StoreKind::of_scheme(url.scheme())?;
        let mut out = TableStoreOptions::default();
        let mut rest = BTreeMap::new();
        for (k, v) in options {
            let lower = k.to_ascii_lowercase();
            // DataFusion's parser files un-namespaced OPTIONS under `format.`.
            if lower == "store" || lower == "format.store" {
                out.store = Some(v.clone());
                continue;
            }
            let prefixed = ["aws.", "gcp.", "azure."].iter().find(|p| lower.starts_with(**p));
            let Some(prefix) = prefixed else {
                rest.insert(k.clone(), v.clone());
                continue;
            };
            let key = match kind.prefixes() {
                Some((table_prefix, store_prefix)) if table_prefix == *prefix => {
                    format!("{store_prefix}{}", &lower[prefix.len()..])
                }
                _ => {
                    return Err(StoreError::UnknownOption {
                        kind: kind.name(),
                        key: k.clone(),
                    });
                }
            };
            if is_credential(&key) {
                return Err(StoreError::CredentialInOptions(k.clone()));
            }
            kind.validate_key(&key)?;
            if !kind.table_may_set(&key) {
                return Err(StoreError::NotPerTable(k.clone()));
            }
            out.overrides.insert(key, v.clone());
        }
        Ok((out, rest))
    }

    /// The user-info part of a store URL: the form-encoded options in
    /// URL-safe base64, so no character needs escaping inside a URL.
    pub(super) fn encode(&self) -> String {
        use base64::Engine;
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        if let Some(s) = &self.store {
            ser.append_pair("store", s);
        }
        for (k, v) in &self.overrides {
            ser.append_pair(k, v);
        }
        let form = ser.finish();
        if form.is_empty() {
            form
        } else {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(form)
        }
    }

    pub(super) fn decode(userinfo: &str) -> Result<Self, StoreError> {
        use base64::Engine;
        let mut out = TableStoreOptions::default();
        if userinfo.is_empty() {
            return Ok(out);
        }
        let form = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(userinfo)
            .map_err(|_| StoreError::BadLocation("store URL with unreadable table options".to_owned()))?;
        for (k, v) in url::form_urlencoded::parse(&form) {
            if k == "store" {
                out.store = Some(v.into_owned());
            } else {
                out.overrides.insert(k.into_owned(), v.into_owned());
            }
        }
        Ok(out)
    }
}
