//! A fingerprint of every setting as the layers gave it, so a settings
//! reload (`src/reload.rs`) can name the keys that changed without keeping
//! their values: each leaf (or array, as a whole) is kept as a SHA-256 of
//! its JSON form, and `Debug` prints only how many there are, so secrets
//! never reach a log even through `{:?}` of [`Settings`](super::Settings).

use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Dotted key (`server.listen`, `providers`) → SHA-256 of its value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SettingsDigest(BTreeMap<String, [u8; 32]>);

impl std::fmt::Debug for SettingsDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SettingsDigest({} keys)", self.0.len())
    }
}

impl SettingsDigest {
    /// The digest of a layered configuration (before typed deserialisation).
    pub fn of(config: &config::Config) -> Self {
        let mut keys = BTreeMap::new();
        if let Ok(tree) = config.clone().try_deserialize::<serde_json::Value>() {
            walk("", &tree, &mut keys);
        }
        Self(keys)
    }

    /// Whether nothing was recorded (settings not loaded from layers, as in
    /// `Settings::for_tests`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keys whose value differs between `self` and `other` (added, removed
    /// or changed), in order.
    pub fn changed(&self, other: &Self) -> Vec<String> {
        let names: BTreeSet<&String> = self.0.keys().chain(other.0.keys()).collect();
        names
            .into_iter()
            .filter(|name| self.0.get(*name) != other.0.get(*name))
            .cloned()
            .collect()
    }
}

fn walk(prefix: &str, value: &serde_json::Value, keys: &mut BTreeMap<String, [u8; 32]>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (name, child) in map {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                walk(&path, child, keys);
            }
        }
        leaf => {
            let hash: [u8; 32] = Sha256::digest(leaf.to_string().as_bytes()).into();
            keys.insert(prefix.to_owned(), hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(toml: &str) -> SettingsDigest {
        let config = config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build();
        SettingsDigest::of(&config.unwrap_or_default())
    }

    #[test]
    fn changed_names_each_differing_leaf_and_never_shows_values() {
        let before = digest(
            "[server]\nlisten = \"127.0.0.1:1\"\nworkers = 2\n[admin]\nmaster_key = \"s3cret-value\"\n",
        );
        let after = digest(
            "[server]\nlisten = \"127.0.0.1:2\"\nworkers = 2\n[admin]\nmaster_key = \"other-value\"\n[usage]\nflush_interval = \"1s\"\n",
        );
        assert_eq!(
            before.changed(&after),
            ["admin.master_key", "server.listen", "usage.flush_interval"]
        );
        assert!(after.changed(&after).is_empty());
        let shown = format!("{after:?}");
        assert!(
            !shown.contains("other-value") && !shown.contains("127.0.0.1"),
            "{shown}"
        );
    }
}
