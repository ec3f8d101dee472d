//! A value that must never reach a log line, a `Debug` dump or an API answer.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// Wraps a secret string (an upstream key, the master key, the encryption secret).
///
/// `Debug` and `Display` print a fixed mask, and there is deliberately no
/// `Serialize` impl, so a secret cannot leak through a derived debug print or a
/// JSON answer by accident. Code that needs the value calls [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value. Call sites are easy to grep for when auditing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Secrets may be written as `${VAR}` or `${VAR:-fallback}` so that settings
/// files can be committed without the secret itself.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        expand_env(&raw, |name| std::env::var(name).ok())
            .map(Secret)
            .map_err(serde::de::Error::custom)
    }
}

/// Replaces every `${VAR}` / `${VAR:-fallback}` in `raw` using `lookup`.
pub fn expand_env(raw: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated `${{` in {raw:?}"));
        };
        let reference = &after[..end];
        let (name, fallback) = match reference.split_once(":-") {
            Some((name, fallback)) => (name, Some(fallback)),
            None => (reference, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{reference}}}` is not a valid environment reference"
            ));
        }
        match (lookup(name), fallback) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(fallback)) => out.push_str(fallback),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Shows enough of a key to tell keys apart (`sk-a…wxyz`) and nothing more.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 8 {
        return "****".to_owned();
    }
    let head: String = chars.iter().take(4).collect();
    let tail: String = chars.iter().skip(chars.len() - 4).collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("sk-very-secret-value");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(s.expose(), "sk-very-secret-value");
    }

    #[test]
    fn env_references_expand_with_fallbacks() {
        let lookup = |name: &str| (name == "SET").then(|| "value".to_owned());
        assert_eq!(expand_env("${SET}", lookup).as_deref(), Ok("value"));
        assert_eq!(expand_env("a-${SET}-b", lookup).as_deref(), Ok("a-value-b"));
        assert_eq!(expand_env("${UNSET:-dflt}", lookup).as_deref(), Ok("dflt"));
        assert_eq!(expand_env("${UNSET:-}", lookup).as_deref(), Ok(""));
        assert_eq!(expand_env("plain", lookup).as_deref(), Ok("plain"));
        assert!(expand_env("${UNSET}", lookup).is_err_and(|e| e.contains("UNSET is not set")));
        assert!(expand_env("${oops", lookup).is_err());
        assert!(expand_env("${a b}", lookup).is_err());
    }

    #[test]
    fn mask_keeps_only_the_ends() {
        assert_eq!(mask("sk-abcdefghijklmnop"), "sk-a…mnop");
        assert_eq!(mask("short"), "****");
    }
}
