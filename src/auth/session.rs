//! The SessionActor: admin login (challenge, then a signed answer) and
//! session lookup for `/admin/*`.
//!
//! Challenges and sessions live in the database, so a login started on one
//! instance can finish on another and a session works on every instance.
//! The actor adds a small cache of sessions it has checked, keyed by the
//! token's hash:
//! - an entry is trusted for `admin.session_cache_ttl` (never past the
//!   session's expiry), which bounds how long a revocation made through
//!   another instance goes unseen here;
//! - a revocation, or a key disabled, removed or given another role,
//!   through this instance drops the affected entries at once (a role is
//!   then read again with the session), and a lookup that was already
//!   reading the database when that happened does not re-insert what it read
//!   (an epoch counter).
//!
//! Message handlers decide synchronously (a cache hit is answered in the
//! handler); the database work runs in the response future, on the database
//! runtime (`crate::db`), so the mailbox never waits on I/O and a dropped
//! request never cancels a query.

use super::{
    AdminPublicKey, AdminSignature, KeyError, Role, generate_nonce, generate_session_token,
    login_message, parse_nonce,
};
use crate::db::{AdminKey, AdminSession, Db, DbError, NewAdminSession};
use actix::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Unanswered, unexpired challenges one key may have; more is a 429 until
/// they are answered or expire (the challenge route takes no credential).
pub const MAX_OPEN_CHALLENGES: i64 = 16;
/// Cached sessions at most; past it the cache starts over.
const MAX_CACHED_SESSIONS: usize = 10_000;

/// Why a login or a session was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad base64, length or point, before any lookup (400).
    #[error(transparent)]
    Malformed(#[from] KeyError),
    #[error("Unknown admin key: register its public key first (POST /admin/admin-keys)")]
    UnknownKey,
    #[error("This admin key is disabled")]
    KeyDisabled,
    #[error("No such challenge for this key; request one with POST /auth/challenge")]
    UnknownChallenge,
    #[error("This challenge was already used; request a new one")]
    ChallengeUsed,
    #[error("This challenge has expired; request a new one")]
    ChallengeExpired,
    #[error("The signature does not verify for this key and challenge")]
    BadSignature,
    #[error("Too many open challenges for this admin key; answer one or wait until they expire")]
    TooManyChallenges { retry_after: Duration },
    #[error("Invalid admin session token")]
    UnknownSession,
    #[error("This admin session has expired; log in again")]
    SessionExpired,
    #[error("This admin session has been revoked; log in again")]
    SessionRevoked,
    #[error("The admin key of this session is disabled")]
    SessionKeyDisabled,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Times the actor works with (`[admin]` settings).
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    pub challenge_ttl: Duration,
    pub session_ttl: Duration,
    pub cache_ttl: Duration,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Who is calling, once a session token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminIdentity {
    pub session_id: i64,
    pub admin_key_id: i64,
    pub fingerprint: String,
    /// Unix milliseconds.
    pub expires_at: i64,
    /// The key's role when the session was checked; a role change through
    /// this instance drops the cached entry ([`ForgetKeySessions`]), so the
    /// next call reads it again.
    pub role: Role,
}

/// `POST /auth/challenge`.
#[derive(Debug, Message)]
#[rtype(result = "Result<ChallengeIssued, AuthError>")]
pub struct IssueChallenge {
    pub public_key: String,
}

/// The answer to [`IssueChallenge`]: what to sign, and its parts.
#[derive(Debug, Clone, Serialize)]
pub struct ChallengeIssued {
    pub server_id: String,
    /// The key in canonical text form, as it appears in `message`.
    pub public_key: String,
    pub fingerprint: String,
    pub nonce: String,
    /// Unix milliseconds.
    pub expires_at: i64,
    /// The exact text to sign (`auth::login_message`).
    pub message: String,
}

/// `POST /auth/verify`.
#[derive(Debug, Message)]
#[rtype(result = "Result<LoginGranted, AuthError>")]
pub struct VerifyLogin {
    pub public_key: String,
    pub nonce: String,
    pub signature: String,
}

/// A new session.
#[derive(Debug, Clone, Serialize)]
pub struct LoginGranted {
    /// The session token, shown once.
    pub token: String,
    pub session_id: i64,
    pub admin_key_id: i64,
    pub fingerprint: String,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// Checks a session token (`AdminAuth`).
#[derive(Debug, Message)]
#[rtype(result = "Result<AdminIdentity, AuthError>")]
pub struct Authenticate {
    pub token: String,
}

/// Revokes a session everywhere (at once here, within the cache TTL
/// elsewhere); answers whether it exists.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, AuthError>")]
pub struct RevokeSession {
    pub session_id: i64,
}

/// Sent after a key was disabled, removed or given another role in the
/// database: its cached sessions stop working (or are read again) here at
/// once.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ForgetKeySessions {
    pub admin_key_id: i64,
}

/// Sent when another instance revoked a session (the change feed,
/// `crate::change_feed`): drops its cached entry here, without writing the
/// database again.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ForgetSession {
    pub session_id: i64,
}

/// The cache of checked sessions (the actor's logic, tested without a runtime).
#[derive(Debug)]
pub struct SessionCache {
    entries: HashMap<String, CachedSession>,
    ttl: Duration,
    /// Bumped by every invalidation; a lookup that started under an older
    /// epoch does not insert what it read.
    epoch: u64,
}

#[derive(Debug)]
struct CachedSession {
    identity: AdminIdentity,
    trusted_until: Instant,
}

impl SessionCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            ttl,
            epoch: 0,
        }
    }

    /// The cached identity for `token_hash`, if still trusted at `now` and
    /// its session unexpired at `now_ms`.
    pub fn get(&self, token_hash: &str, now: Instant, now_ms: i64) -> Option<AdminIdentity> {
        self.entries
            .get(token_hash)
            .filter(|entry| entry.trusted_until > now && entry.identity.expires_at > now_ms)
            .map(|entry| entry.identity.clone())
    }

    /// The current epoch, taken when a database lookup starts.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Caches what a lookup that started at `epoch` read, unless something
    /// was invalidated since.
    pub fn put(&mut self, token_hash: String, identity: AdminIdentity, epoch: u64, now: Instant) {
        if epoch != self.epoch || self.ttl.is_zero() {
            return;
        }
        if self.entries.len() >= MAX_CACHED_SESSIONS {
            self.entries.retain(|_, entry| entry.trusted_until > now);
            if self.entries.len() >= MAX_CACHED_SESSIONS {
                self.entries.clear();
            }
        }
        self.entries.insert(
            token_hash,
            CachedSession {
                identity,
                trusted_until: now + self.ttl,
            },
        );
    }

    pub fn forget_session(&mut self, session_id: i64) {
        self.epoch += 1;
        self.entries
            .retain(|_, entry| entry.identity.session_id != session_id);
    }

    pub fn forget_key(&mut self, admin_key_id: i64) {
        self.epoch += 1;
        self.entries
            .retain(|_, entry| entry.identity.admin_key_id != admin_key_id);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// See the module docs.
pub struct SessionActor {
    db: Db,
    server_id: Arc<str>,
    config: SessionConfig,
    cache: SessionCache,
}

impl SessionActor {
    pub fn new(db: Db, server_id: &str, config: SessionConfig) -> Self {
        Self {
            db,
            server_id: Arc::from(server_id),
            config,
            cache: SessionCache::new(config.cache_ttl),
        }
    }
}

impl SessionActor {
    /// Starts the actor under a supervisor: a panic in a handler restarts
    /// it (with an empty cache) instead of ending admin logins for the life
    /// of the process (DESIGN.md section 8).
    pub fn start_supervised(self) -> Addr<Self> {
        Supervisor::start(move |_| self)
    }
}

/// The answer of a handler that panicked: 503, retry.
fn restarting() -> AuthError {
    AuthError::Db(DbError::Runtime(
        "the session actor restarted after an internal error".to_owned(),
    ))
}

/// Runs a handler's body; a panic in it stops the actor, which its
/// supervisor restarts, and answers [`restarting`].
/// `$ready` makes the error answer of the handler's kind of future
/// (`std::future::ready` for a `ResponseFuture`, `fut::ready` for a
/// `ResponseActFuture`).
macro_rules! contained {
    ($ctx:expr, $ready:path, $body:expr) => {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $body)) {
            Ok(result) => result,
            Err(_) => {
                $ctx.stop();
                Box::pin($ready(Err(restarting())))
            }
        }
    };
}

impl Actor for SessionActor {
    type Context = Context<Self>;
}

impl Supervised for SessionActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // A panic may have left the cache half-updated: start it afresh.
        self.cache = SessionCache::new(self.config.cache_ttl);
    }
}

impl Handler<IssueChallenge> for SessionActor {
    type Result = ResponseFuture<Result<ChallengeIssued, AuthError>>;

    fn handle(&mut self, msg: IssueChallenge, ctx: &mut Context<Self>) -> Self::Result {
        contained!(ctx, std::future::ready, self.issue_challenge(msg))
    }
}

impl SessionActor {
    fn issue_challenge(
        &mut self,
        msg: IssueChallenge,
    ) -> ResponseFuture<Result<ChallengeIssued, AuthError>> {
        let key = AdminPublicKey::parse(&msg.public_key);
        let (db, server_id, ttl) = (
            self.db.clone(),
            self.server_id.clone(),
            self.config.challenge_ttl,
        );
        Box::pin(async move { issue_challenge(&db, &server_id, key?, ttl).await })
    }
}

impl Handler<VerifyLogin> for SessionActor {
    type Result = ResponseFuture<Result<LoginGranted, AuthError>>;

    fn handle(&mut self, msg: VerifyLogin, ctx: &mut Context<Self>) -> Self::Result {
        contained!(ctx, std::future::ready, self.verify_login(msg))
    }
}

impl SessionActor {
    fn verify_login(
        &mut self,
        msg: VerifyLogin,
    ) -> ResponseFuture<Result<LoginGranted, AuthError>> {
        let parsed = AdminPublicKey::parse(&msg.public_key).and_then(|key| {
            Ok((
                key,
                parse_nonce(&msg.nonce)?,
                AdminSignature::parse(&msg.signature)?,
            ))
        });
        let (db, server_id, ttl) = (
            self.db.clone(),
            self.server_id.clone(),
            self.config.session_ttl,
        );
        Box::pin(async move {
            let (key, nonce, signature) = parsed?;
            verify_login(&db, &server_id, key, nonce, signature, ttl).await
        })
    }
}

impl Handler<Authenticate> for SessionActor {
    type Result = ResponseActFuture<Self, Result<AdminIdentity, AuthError>>;

    fn handle(&mut self, msg: Authenticate, ctx: &mut Context<Self>) -> Self::Result {
        contained!(ctx, fut::ready, self.authenticate(msg))
    }
}

impl SessionActor {
    fn authenticate(
        &mut self,
        msg: Authenticate,
    ) -> ResponseActFuture<Self, Result<AdminIdentity, AuthError>> {
        let hash = crate::tokens::hash(&msg.token);
        if let Some(identity) = self.cache.get(&hash, Instant::now(), self.db.now_ms()) {
            return Box::pin(fut::ready(Ok(identity)));
        }
        let epoch = self.cache.epoch();
        let db = self.db.clone();
        Box::pin(
            async move {
                let identity = load_session(&db, &hash).await?;
                Ok((hash, identity))
            }
            .into_actor(self)
            .map(move |loaded: Result<_, AuthError>, actor, _| {
                let (hash, identity) = loaded?;
                actor
                    .cache
                    .put(hash, identity.clone(), epoch, Instant::now());
                Ok(identity)
            }),
        )
    }
}

impl Handler<RevokeSession> for SessionActor {
    type Result = ResponseActFuture<Self, Result<bool, AuthError>>;

    fn handle(&mut self, msg: RevokeSession, ctx: &mut Context<Self>) -> Self::Result {
        contained!(ctx, fut::ready, self.revoke(msg))
    }
}

impl SessionActor {
    fn revoke(&mut self, msg: RevokeSession) -> ResponseActFuture<Self, Result<bool, AuthError>> {
        let id = msg.session_id;
        self.cache.forget_session(id);
        let db = self.db.clone();
        Box::pin(
            async move { db.revoke_admin_session(id).await }
                .into_actor(self)
                .map(move |revoked, actor, _| {
                    // Again: a lookup may have read the row before the update.
                    actor.cache.forget_session(id);
                    Ok(revoked?)
                }),
        )
    }
}

impl Handler<ForgetSession> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: ForgetSession, ctx: &mut Context<Self>) {
        let forgotten = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.cache.forget_session(msg.session_id);
        }));
        if forgotten.is_err() {
            ctx.stop();
        }
    }
}

impl Handler<ForgetKeySessions> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: ForgetKeySessions, ctx: &mut Context<Self>) {
        let forgotten = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.cache.forget_key(msg.admin_key_id);
        }));
        if forgotten.is_err() {
            ctx.stop();
        }
    }
}

async fn enabled_key(db: &Db, key: &AdminPublicKey) -> Result<AdminKey, AuthError> {
    let row = db
        .find_admin_key(&key.to_text())
        .await?
        .ok_or(AuthError::UnknownKey)?;
    if !row.enabled {
        return Err(AuthError::KeyDisabled);
    }
    Ok(row)
}

async fn issue_challenge(
    db: &Db,
    server_id: &str,
    key: AdminPublicKey,
    ttl: Duration,
) -> Result<ChallengeIssued, AuthError> {
    let row = enabled_key(db, &key).await?;
    let now = db.now_ms();
    if db.count_open_admin_challenges(row.id, now).await? >= MAX_OPEN_CHALLENGES {
        return Err(AuthError::TooManyChallenges { retry_after: ttl });
    }
    let nonce = generate_nonce();
    let expires_at = now.saturating_add(millis(ttl));
    db.create_admin_challenge(row.id, &nonce, expires_at)
        .await?;
    Ok(ChallengeIssued {
        message: login_message(server_id, &row.public_key, &nonce, expires_at),
        server_id: server_id.to_owned(),
        public_key: row.public_key,
        fingerprint: row.fingerprint,
        nonce,
        expires_at,
    })
}

async fn verify_login(
    db: &Db,
    server_id: &str,
    key: AdminPublicKey,
    nonce: String,
    signature: AdminSignature,
    session_ttl: Duration,
) -> Result<LoginGranted, AuthError> {
    let row = enabled_key(db, &key).await?;
    let challenge = db
        .find_admin_challenge(&nonce)
        .await?
        .filter(|challenge| challenge.admin_key_id == row.id)
        .ok_or(AuthError::UnknownChallenge)?;
    let now = db.now_ms();
    if challenge.used_at.is_some() {
        return Err(AuthError::ChallengeUsed);
    }
    if challenge.expires_at <= now {
        return Err(AuthError::ChallengeExpired);
    }
    let message = login_message(server_id, &row.public_key, &nonce, challenge.expires_at);
    if !key.verify(&message, &signature) {
        return Err(AuthError::BadSignature);
    }
    let token = generate_session_token();
    let expires_at = now.saturating_add(millis(session_ttl));
    let session = db
        .consume_admin_challenge(
            &nonce,
            now,
            &NewAdminSession {
                token_hash: token.hash,
                token_prefix: token.display_prefix,
                admin_key_id: row.id,
                expires_at,
            },
        )
        .await?
        // Consumed in the meantime: a replay racing this one, maybe on
        // another instance. Exactly one of them gets a session.
        .ok_or(AuthError::ChallengeUsed)?;
    Ok(LoginGranted {
        token: token.token,
        session_id: session.id,
        admin_key_id: row.id,
        fingerprint: row.fingerprint,
        expires_at: session.expires_at,
    })
}

/// Checks a session in the database.
async fn load_session(db: &Db, token_hash: &str) -> Result<AdminIdentity, AuthError> {
    let (session, key): (AdminSession, AdminKey) = db
        .find_admin_session(token_hash)
        .await?
        .ok_or(AuthError::UnknownSession)?;
    if session.revoked_at.is_some() {
        return Err(AuthError::SessionRevoked);
    }
    if session.expires_at <= db.now_ms() {
        return Err(AuthError::SessionExpired);
    }
    if !key.enabled {
        return Err(AuthError::SessionKeyDisabled);
    }
    Ok(AdminIdentity {
        session_id: session.id,
        admin_key_id: key.id,
        role: key.role(),
        fingerprint: key.fingerprint,
        expires_at: session.expires_at,
    })
}

/// Makes the actor panic in a handler (supervision tests).
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "Result<(), AuthError>")]
struct InjectPanic;

#[cfg(test)]
impl Handler<InjectPanic> for SessionActor {
    type Result = ResponseFuture<Result<(), AuthError>>;

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) -> Self::Result {
        contained!(
            ctx,
            std::future::ready,
            panic!("injected session actor panic")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_panic_restarts_the_actor_and_logins_go_on() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let db = crate::db::connect(&crate::config::DatabaseSettings {
            url: format!("sqlite://{}", dir.path().join("s.db").display()),
            max_connections: 2,
            connect_timeout: Duration::from_secs(5),
            sync_interval: Duration::from_secs(1),
            token_cache_ttl: Duration::from_secs(30),
            stale_token_grace: Duration::from_secs(600),
            query_timeout: Duration::from_secs(30),
        })
        .await?;
        let config = SessionConfig {
            challenge_ttl: Duration::from_secs(60),
            session_ttl: Duration::from_secs(60),
            cache_ttl: Duration::from_secs(5),
        };
        let actor = SessionActor::new(db, "server", config).start_supervised();
        let unknown = || Authenticate {
            token: "sya-unknown".to_owned(),
        };
        assert!(matches!(
            actor.send(unknown()).await?,
            Err(AuthError::UnknownSession)
        ));
        assert!(matches!(
            actor.send(InjectPanic).await?,
            Err(AuthError::Db(DbError::Runtime(_)))
        ));
        // The same address answers: the supervisor restarted the actor.
        assert!(matches!(
            actor.send(unknown()).await?,
            Err(AuthError::UnknownSession)
        ));
        Ok(())
    }

    fn identity(session_id: i64, admin_key_id: i64, expires_at: i64) -> AdminIdentity {
        AdminIdentity {
            session_id,
            admin_key_id,
            fingerprint: format!("SHA256:key{admin_key_id}"),
            expires_at,
            role: Role::Admin,
        }
    }

    #[test]
    fn entries_are_trusted_for_the_ttl_and_never_past_expiry() {
        let mut cache = SessionCache::new(Duration::from_secs(5));
        let t0 = Instant::now();
        cache.put("h1".into(), identity(1, 1, 10_000), cache.epoch(), t0);
        assert_eq!(cache.get("h1", t0, 9_999), Some(identity(1, 1, 10_000)));
        assert_eq!(cache.get("h1", t0, 10_000), None, "session expired");
        assert_eq!(cache.get("h1", t0 + Duration::from_secs(5), 0), None);
        assert_eq!(cache.get("other", t0, 0), None);
    }

    #[test]
    fn invalidation_drops_entries_and_stale_lookups() {
        let mut cache = SessionCache::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let epoch = cache.epoch();
        cache.put("h1".into(), identity(1, 1, i64::MAX), epoch, t0);
        cache.put("h2".into(), identity(2, 1, i64::MAX), epoch, t0);
        cache.put("h3".into(), identity(3, 2, i64::MAX), epoch, t0);
        cache.forget_session(1);
        assert_eq!(cache.get("h1", t0, 0), None);
        assert!(cache.get("h2", t0, 0).is_some());
        // A lookup that started before the revocation does not re-insert.
        cache.put("h1".into(), identity(1, 1, i64::MAX), epoch, t0);
        assert_eq!(cache.get("h1", t0, 0), None);
        cache.forget_key(1);
        assert_eq!(cache.get("h2", t0, 0), None);
        assert!(cache.get("h3", t0, 0).is_some());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let mut cache = SessionCache::new(Duration::ZERO);
        cache.put("h".into(), identity(1, 1, i64::MAX), 0, Instant::now());
        assert!(cache.is_empty());
    }
}
