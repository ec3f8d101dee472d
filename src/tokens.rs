//! Gateway tokens: generation, hashing, and the in-memory cache that keeps
//! the database off the request path.
//!
//! A token is `sy-` followed by 40 random alphanumerics (~238 bits). Only its
//! SHA-256 is stored; the first characters are kept for display. The cache
//! maps hash -> token row and is invalidated by every admin change made
//! through this instance; entries are read again after `token_cache_ttl`
//! (`[database]`), which bounds how long a change made elsewhere (another
//! instance) can go unseen. An entry past its TTL is kept a while longer
//! (`stale_token_grace`) for one purpose: while the database is unreachable,
//! a token that was valid when last read is still served.
//!
//! A change heard of from elsewhere (`crate::sync`'s poll, the change feed)
//! makes the entries it names stale, not gone: they are read again at their
//! next use, and served as last read only if the database cannot be reached
//! then, as an entry past its TTL is. Dropping them instead refused every
//! such token for a whole outage that began between hearing of the change
//! and the next use, even a token this instance had just created (its own
//! poll hears of its creation). A change made through this instance drops
//! its entries ([`TokenCache::invalidate`]): a token disabled here is never
//! served from the cache.

use crate::db::tokens::GatewayToken;
use crate::db::users::User;
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use switchyard_actors::{Limits, Quota};

pub const TOKEN_PREFIX: &str = "sy-";
const TOKEN_RANDOM_CHARS: usize = 40;
/// Characters of the token kept in clear for display (`sy-AbCd1234`).
const DISPLAY_CHARS: usize = 11;
/// Misses are cached briefly too, so a flood of bad tokens cannot become a
/// flood of database queries.
const NEGATIVE_TTL: Duration = Duration::from_secs(2);
const MAX_ENTRIES: usize = 200_000;

/// A fresh token and what is stored of it.
pub struct NewTokenSecret {
    pub token: String,
    pub hash: String,
    pub display_prefix: String,
}

pub fn generate() -> NewTokenSecret {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(TOKEN_RANDOM_CHARS)
        .map(char::from)
        .collect();
    let token = format!("{TOKEN_PREFIX}{random}");
    NewTokenSecret {
        hash: hash(&token),
        display_prefix: token.chars().take(DISPLAY_CHARS).collect(),
        token,
    }
}

pub fn hash(token: &str) -> String {
    // Once per request: `hex::encode` collects the digits a `char` at a
    // time; encoding into a buffer first skips that.
    let digest = Sha256::digest(token.as_bytes());
    let mut digits = [0u8; 64];
    match hex::encode_to_slice(digest, &mut digits) {
        Ok(()) => String::from_utf8_lossy(&digits).into_owned(),
        // Not reached: a SHA-256 digest is 32 bytes, 64 digits.
        Err(_) => hex::encode(digest),
    }
}

/// Parts per million meaning x1.
pub const PPM: i64 = 1_000_000;

/// What the request path needs to know about a token (and its user).
#[derive(Debug, Clone, Default)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub user_id: Option<i64>,
    pub allowed_models: Option<Vec<String>>,
    pub enabled: bool,
    pub expires_at_ms: Option<i64>,
    /// Presented as the token it replaced, accepted until this time.
    pub grace_until_ms: Option<i64>,
    /// The owner is suspended: every request is refused (401).
    pub user_suspended: bool,
    /// The owner is refused once their balance is spent (402).
    pub user_prepaid: bool,
    /// Token and user multipliers combined, in parts per million.
    pub price_multiplier_ppm: i64,
    /// Lifetime budgets, enforced by database reservations.
    pub budget_nanos: Option<i64>,
    pub budget_tokens: Option<i64>,
    /// Rate limits, parallelism and quotas, enforced in memory.
    pub limits: Limits,
}

impl TokenInfo {
    pub fn from_row(row: &GatewayToken, user: Option<&User>) -> Self {
        let multiplier = |ppm: Option<i64>| ppm.filter(|ppm| *ppm >= 0).unwrap_or(PPM);
        let combined = i128::from(multiplier(row.price_multiplier_ppm))
            * i128::from(multiplier(user.and_then(|user| user.price_multiplier_ppm)))
            / i128::from(PPM);
        Self {
            id: row.id,
            name: row.name.clone(),
            user_id: row.user_id,
            allowed_models: row
                .allowed_models
                .as_deref()
                .and_then(|json| serde_json::from_str::<Vec<String>>(json).ok()),
            enabled: row.enabled,
            expires_at_ms: row.expires_at,
            grace_until_ms: None,
            user_suspended: user.is_some_and(|user| user.status != "active"),
            user_prepaid: user.is_some_and(|user| user.prepaid),
            price_multiplier_ppm: i64::try_from(combined).unwrap_or(i64::MAX),
            budget_nanos: row.budget_nanos,
            budget_tokens: row.budget_tokens,
            limits: Limits {
                rpm: row.rpm.and_then(|rpm| u32::try_from(rpm).ok()),
                tpm: row.tpm.and_then(|tpm| u64::try_from(tpm).ok()),
                max_parallel: row.max_parallel.and_then(|p| u32::try_from(p).ok()),
                quotas: row
                    .quotas
                    .as_deref()
                    .and_then(|json| serde_json::from_str::<Vec<Quota>>(json).ok())
                    .unwrap_or_default(),
                // Budgets are held in the database (shared by instances).
                budget_nanos: None,
                budget_tokens: None,
            },
        }
    }

    /// Whether a request needs a database reservation: a budget to hold
    /// against, or a prepaid balance.
    pub fn needs_reservation(&self) -> bool {
        self.budget_nanos.is_some() || self.budget_tokens.is_some() || self.user_prepaid
    }

    /// Whether the in-memory limits have anything to enforce.
    pub fn has_local_limits(&self) -> bool {
        let limits = &self.limits;
        limits.rpm.is_some()
            || limits.tpm.is_some()
            || limits.max_parallel.is_some()
            || !limits.quotas.is_empty()
    }

    /// Whether this token may use `model` (exact names or `*`/`?` globs).
    pub fn allows_model(&self, model: &str) -> bool {
        match &self.allowed_models {
            None => true,
            Some(patterns) => patterns.iter().any(|pattern| glob_match(pattern, model)),
        }
    }
}

/// `*` matches any run of characters, `?` exactly one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    t = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

#[derive(Clone)]
enum Entry {
    Found {
        info: Arc<TokenInfo>,
        read_at: Instant,
        /// Changed elsewhere since it was read: stale before its TTL.
        changed: bool,
    },
    Missing(Instant),
}

/// hash -> token, shared by all workers.
#[derive(Clone)]
pub struct TokenCache {
    entries: Arc<RwLock<HashMap<String, Entry>>>,
    ttl: Duration,
    stale_grace: Duration,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(Duration::from_secs(30), Duration::from_secs(600))
    }
}

/// A cache answer.
pub enum Cached {
    Found(Arc<TokenInfo>),
    /// Past its TTL: read the database again, and use this only if the
    /// database cannot be reached.
    Stale(Arc<TokenInfo>),
    Missing,
    Unknown,
}

impl TokenCache {
    /// Entries are fresh for `ttl`, and usable during a database outage for
    /// `stale_grace` more.
    pub fn new(ttl: Duration, stale_grace: Duration) -> Self {
        Self {
            entries: Arc::default(),
            ttl,
            stale_grace,
        }
    }

    pub fn get(&self, hash: &str, now: Instant) -> Cached {
        let Ok(entries) = self.entries.read() else {
            return Cached::Unknown;
        };
        match entries.get(hash) {
            Some(Entry::Found {
                info,
                read_at,
                changed,
            }) => {
                let age = now.duration_since(*read_at);
                if age < self.ttl && !changed {
                    Cached::Found(info.clone())
                } else if age < self.ttl.saturating_add(self.stale_grace) {
                    Cached::Stale(info.clone())
                } else {
                    Cached::Unknown
                }
            }
            Some(Entry::Missing(at)) if now.duration_since(*at) < NEGATIVE_TTL => Cached::Missing,
            _ => Cached::Unknown,
        }
    }

    pub fn put(&self, hash: String, info: Option<Arc<TokenInfo>>, now: Instant) {
        let keep_for = self.ttl.saturating_add(self.stale_grace);
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, entry| matches!(entry, Entry::Found { read_at, .. } if now.duration_since(*read_at) < keep_for));
            }
            let entry = match info {
                Some(info) => Entry::Found {
                    info,
                    read_at: now,
                    changed: false,
                },
                None => Entry::Missing(now),
            };
            entries.insert(hash, entry);
        }
    }

    /// Forgets token `id`: changed, disabled or deleted through this
    /// instance.
    pub fn invalidate(&self, id: i64) {
        self.forget_where(|info| info.id == id);
    }

    /// Forgets the tokens of user `user_id`, changed or deleted through this
    /// instance (a token's cached view embeds its owner). Other users'
    /// tokens do not depend on it.
    pub fn invalidate_user(&self, user_id: i64) {
        self.forget_where(|info| info.user_id == Some(user_id));
    }

    fn forget_where(&self, which: impl Fn(&TokenInfo) -> bool) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, entry| !matches!(entry, Entry::Found { info, .. } if which(info)));
        }
    }

    /// Token `id` changed elsewhere: read it again at its next use (see the
    /// module's comment for why it is not forgotten).
    pub fn mark_changed(&self, id: i64) {
        self.mark_changed_where(|info| info.id == id);
    }

    /// User `user_id` changed elsewhere: their tokens are read again at
    /// their next use.
    pub fn mark_user_changed(&self, user_id: i64) {
        self.mark_changed_where(|info| info.user_id == Some(user_id));
    }

    /// Every token may have changed elsewhere (this instance lost track):
    /// each is read again at its next use.
    pub fn mark_all_changed(&self) {
        self.mark_changed_where(|_| true);
    }

    fn mark_changed_where(&self, which: impl Fn(&TokenInfo) -> bool) {
        if let Ok(mut entries) = self.entries.write() {
            for entry in entries.values_mut() {
                if let Entry::Found { info, changed, .. } = entry
                    && which(info)
                {
                    *changed = true;
                }
            }
        }
    }

    /// Forgets every cached miss (a token was created).
    pub fn forget_misses(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, entry| matches!(entry, Entry::Found { .. }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_unique_prefixed_and_hash_stably() {
        let a = generate();
        let b = generate();
        assert_ne!(a.token, b.token);
        assert!(a.token.starts_with(TOKEN_PREFIX));
        assert_eq!(a.token.len(), TOKEN_PREFIX.len() + TOKEN_RANDOM_CHARS);
        assert_eq!(a.hash, hash(&a.token));
        assert_eq!(a.hash.len(), 64);
        assert!(a.token.starts_with(&a.display_prefix));
    }

    /// Stored token hashes are SHA-256 in lower-case hex: a change in how
    /// the digits are written would lock every token out.
    #[test]
    fn the_hash_is_sha256_in_lower_case_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("gpt-4o", "gpt-4o"));
        assert!(!glob_match("gpt-4o", "gpt-4o-mini"));
        assert!(glob_match("gpt-4o*", "gpt-4o-mini"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("openai/*", "openai/gpt-4o"));
        assert!(glob_match("claude-?-*", "claude-3-opus"));
        assert!(!glob_match("claude-?-*", "claude-35-opus"));
        assert!(glob_match("*mini", "gpt-4o-mini"));
        assert!(!glob_match("*mini", "gpt-4o"));
    }

    #[test]
    fn cache_invalidation_and_ttls() {
        let cache = TokenCache::default();
        let now = Instant::now();
        let info = Arc::new(TokenInfo {
            id: 7,
            name: "t".into(),
            enabled: true,
            ..TokenInfo::default()
        });
        cache.put("h".into(), Some(info.clone()), now);
        assert!(matches!(cache.get("h", now), Cached::Found(_)));
        let ttl = Duration::from_secs(30);
        assert!(matches!(cache.get("h", now + ttl), Cached::Stale(_)));
        assert!(matches!(
            cache.get("h", now + ttl + Duration::from_secs(600)),
            Cached::Unknown
        ));
        // Changed elsewhere: read again, but usable if the database is away.
        cache.mark_changed(8);
        assert!(matches!(cache.get("h", now), Cached::Found(_)));
        cache.mark_changed(7);
        assert!(matches!(cache.get("h", now), Cached::Stale(_)));
        assert!(matches!(
            cache.get("h", now + ttl + Duration::from_secs(600)),
            Cached::Unknown
        ));
        // Read again: fresh.
        cache.put("h".into(), Some(info.clone()), now);
        assert!(matches!(cache.get("h", now), Cached::Found(_)));
        cache.mark_all_changed();
        assert!(matches!(cache.get("h", now), Cached::Stale(_)));
        // Changed here: gone.
        cache.invalidate(7);
        assert!(matches!(cache.get("h", now), Cached::Unknown));
        // By owner: only that user's tokens.
        let owned = |id, user_id| {
            Some(Arc::new(TokenInfo {
                id,
                user_id: Some(user_id),
                enabled: true,
                ..TokenInfo::default()
            }))
        };
        cache.put("u1".into(), owned(11, 1), now);
        cache.put("u2".into(), owned(12, 2), now);
        cache.mark_user_changed(1);
        assert!(matches!(cache.get("u1", now), Cached::Stale(_)));
        assert!(matches!(cache.get("u2", now), Cached::Found(_)));
        cache.invalidate_user(2);
        assert!(matches!(cache.get("u2", now), Cached::Unknown));
        assert!(matches!(cache.get("u1", now), Cached::Stale(_)));
        cache.put("x".into(), None, now);
        assert!(matches!(cache.get("x", now), Cached::Missing));
        cache.forget_misses();
        assert!(matches!(cache.get("x", now), Cached::Unknown));
    }
}
