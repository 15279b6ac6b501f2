//! The web console's users: made by the operator (`holub user create`) or invited by an
//! owner, signed in with an email and a password, held in sessions, throttled when sign-ins
//! keep failing.
//!
//! - **Passwords** are hashed with Argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane:
//!   the OWASP Password Storage Cheat Sheet's first choice) and kept as PHC strings, so the
//!   parameters travel with each hash. Hashing takes tens of milliseconds of CPU, so it runs
//!   on the blocking pool, never on the async threads.
//! - **Tokens** (sessions, invitations) are 32 random bytes in URL-safe base64, shown once;
//!   the store keeps their SHA-256 only, so a copy of the store opens no session. A session's
//!   CSRF token is derived from its token ([`csrf_token`]): it needs no storage and cannot be
//!   made without the cookie.
//! - **Sign-in** answers [`UserError::BadCredentials`] alike for an unknown address, a wrong
//!   password and an invited user without one, and verifies a hash in each case (a fixed one
//!   when there is none), so the time taken does not tell which. After [`MAX_FAILURES`]
//!   failures for one address within [`FAILURE_WINDOW`] of the first, it answers
//!   [`UserError::Throttled`] until the window ends, known address or not.
//! - **Sessions** last [`SESSION_LIFETIME`]; each use reads the user again, so a removal or a
//!   role change holds at once, and a password change voids every session made before it.
//!
//! Nothing here logs an address, a password or a token.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::domain::{
    AuditAction, ConsoleUser, Email, Invitation, Origin, PasswordHash, Role, TenantId, UserId,
};
use crate::ports::{
    Clock, FailureWindow, SessionRecord, StoreError, TenantStore, UserRecord, UserStore, UserWrite,
};

/// How long a session lasts from sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long an invitation can be accepted.
pub const INVITATION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Failed sign-ins for one address that a window takes before sign-in is refused.
pub const MAX_FAILURES: u32 = 5;
/// The window of failed sign-ins, from the first failure.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// A password's length, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 128;

/// How many times a change that met another change is made again.
const ATTEMPTS: usize = 5;
/// Random bytes in a session or invitation token.
const TOKEN_BYTES: usize = 32;
/// The longest string looked at as a token (43 characters are made).
const MAX_TOKEN_CHARS: usize = 64;
/// What the CSRF token hashes before the session token, so it is no other hash of it.
const CSRF_DOMAIN: &[u8] = b"holub console csrf v1\0";

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(
        "a password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters: a few words make a good one"
    )]
    WeakPassword,
    #[error("this email address already belongs to a console user")]
    EmailTaken,
    #[error("there is no such user in this account")]
    NotFound,
    #[error("the account must keep an owner who can sign in: make another user an owner first")]
    LastOwner,
    #[error("this invitation is unknown, used or expired: ask for a new one")]
    InviteInvalid,
    #[error("the email address or the password is wrong")]
    BadCredentials,
    #[error(
        "too many failed sign-ins for this address: try again in {}",
        minutes(.retry_after)
    )]
    Throttled { retry_after: Duration },
    /// `holub user create` named a tenant that does not exist.
    #[error("there is no such tenant")]
    TenantNotFound,
    #[error("the user store is unavailable: try again")]
    Store(#[source] StoreError),
}

impl UserError {
    /// A stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            UserError::WeakPassword => "weak_password",
            UserError::EmailTaken => "email_taken",
            UserError::NotFound => "user_not_found",
            UserError::LastOwner => "last_owner",
            UserError::InviteInvalid => "invitation_invalid",
            UserError::BadCredentials => "bad_credentials",
            UserError::Throttled { .. } => "sign_in_throttled",
            UserError::TenantNotFound => "tenant_not_found",
            UserError::Store(_) => "store_unavailable",
        }
    }
}

/// `a minute`, `11 minutes`: a wait, rounded up.
fn minutes(d: &Duration) -> String {
    match d.as_secs().div_ceil(60) {
        0 | 1 => "a minute".to_owned(),
        n => format!("{n} minutes"),
    }
}

impl From<StoreError> for UserError {
    fn from(e: StoreError) -> Self {
        UserError::Store(e)
    }
}

/// A signed-in console session, as each request sees it.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub user: UserId,
    pub tenant: TenantId,
    pub email: Email,
    /// The user's role now (read with each request, not at sign-in).
    pub role: Role,
    /// What a form or an unsafe request must carry (hex; see [`csrf_token`]).
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Without the CSRF token, which a log has no use for.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("tenant", &self.tenant)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A new session: its token (the cookie's value, shown once) and what it holds.
#[derive(Clone)]
pub struct SignedIn {
    pub token: String,
    pub session: Session,
}

/// Redacted: the token opens the session.
impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("token", &"..")
            .field("session", &self.session)
            .finish()
    }
}

/// The CSRF token of a session: hex SHA-256 over a fixed prefix and the session token. Only
/// who holds the (HttpOnly) cookie can make it; a page shows it in its forms.
pub fn csrf_token(session_token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(CSRF_DOMAIN);
    hash.update(session_token.as_bytes());
    hex::encode(hash.finalize())
}

/// The hex SHA-256 of a token: what the store keeps of it.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token.
fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn check_password(password: &str) -> Result<(), UserError> {
    let chars = password.chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        Ok(())
    } else {
        Err(UserError::WeakPassword)
    }
}

fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Argon2id at OWASP's parameters: m = 19,456 KiB, t = 2, p = 1.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hashing failure (it should not happen: the inputs are bounded), as the store's.
fn hashing_failed(what: String) -> UserError {
    UserError::Store(StoreError::Unavailable(what.into()))
}

fn hash_now(password: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2()
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// Hashes `password` on the blocking pool.
async fn hash_password(password: &str) -> Result<PasswordHash, UserError> {
    let password = password.to_owned();
    let phc = tokio::task::spawn_blocking(move || hash_now(password.as_bytes()))
        .await
        .map_err(|e| hashing_failed(format!("password hashing stopped: {e}")))?
        .map_err(|e| hashing_failed(format!("password hashing failed: {e}")))?;
    Ok(PasswordHash::from_phc(phc))
}

/// What unknown addresses and invited users are verified against, so that they take the
/// time a real verification takes. Made once per process, at the same parameters.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_now(b"no user has this password; it only spends the time").unwrap_or_default()
});

/// Whether `password` is the one `hash` was made from (or, `hash` absent, spends the time
/// of finding out and answers no). On the blocking pool.
async fn verify_password(hash: Option<&PasswordHash>, password: &str) -> bool {
    // No password is longer than this in bytes: a longer one is wrong, and is not hashed
    // whole (it would cost time in proportion), but the time of a verification is spent.
    let too_long = password.len() > 4 * MAX_PASSWORD_CHARS;
    let password = if too_long { "" } else { password };
    let (hash, password) = (hash.map(|h| h.as_str().to_owned()), password.to_owned());
    tokio::task::spawn_blocking(move || {
        let real = hash.is_some() && !too_long;
        let phc = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        let verified = argon2::password_hash::PasswordHash::new(&phc).is_ok_and(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        real && verified
    })
    .await
    .unwrap_or(false)
}

/// The console's users over a [`UserStore`].
pub struct Users {
    store: Arc<dyn UserStore>,
    /// Where changes of users are audited, with the account's other changes.
    audit: Arc<dyn TenantStore>,
    clock: Arc<dyn Clock>,
}

/// A user as the audit log keeps them: never a password hash or an invitation's token.
fn user_json(user: &ConsoleUser) -> serde_json::Value {
    serde_json::json!({"email": user.email.as_str(), "role": user.role.as_str()})
}

impl Users {
    pub fn new(
        store: Arc<dyn UserStore>,
        audit: Arc<dyn TenantStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Users {
            store,
            audit,
            clock,
        }
    }

    /// Audits a change already made. Should the entry not be written, the change stands
    /// and the caller is told the write failed (so it is not taken for unaudited success).
    async fn audited(
        &self,
        origin: &Origin,
        user: &ConsoleUser,
        action: AuditAction,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<(), UserError> {
        let entry = origin.entry(
            &user.tenant,
            self.clock.now(),
            action,
            user.id.as_str(),
            before,
            after,
        );
        self.audit.record_audit(&entry).await.map_err(|e| {
            tracing::error!(error = %e, action = action.as_str(), "a user change is not audited");
            UserError::from(e)
        })
    }

    /// Makes a user who can sign in at once (the operator's first owner, say).
    pub async fn create(
        &self,
        tenant: &TenantId,
        email: Email,
        role: Role,
        password: &str,
        origin: &Origin,
    ) -> Result<ConsoleUser, UserError> {
        check_password(password)?;
        let hash = hash_password(password).await?;
        let record = self.new_record(tenant, email, role, Some(hash), None);
        self.store_new(&record).await?;
        let after = Some(user_json(&record.user));
        self.audited(origin, &record.user, AuditAction::UserCreate, None, after)
            .await?;
        Ok(record.user)
    }

    /// Invites a user: they are listed as pending until they accept with the token answered
    /// here (shown once; valid for [`INVITATION_LIFETIME`]) and choose a password.
    pub async fn invite(
        &self,
        tenant: &TenantId,
        email: Email,
        role: Role,
        origin: &Origin,
    ) -> Result<(ConsoleUser, String), UserError> {
        let (token, invitation) = self.invitation();
        let record = self.new_record(tenant, email, role, None, Some(invitation));
        self.store_new(&record).await?;
        let after = Some(user_json(&record.user));
        self.audited(origin, &record.user, AuditAction::UserInvite, None, after)
            .await?;
        Ok((record.user, token))
    }

    /// Invites again a user of the tenant who has not accepted yet: a new token, answered
    /// as [`Users::invite`] answers one, and the one before stops working. A user who has
    /// accepted meanwhile has no invitation to renew ([`UserError::InviteInvalid`]).
    pub async fn reinvite(
        &self,
        tenant: &TenantId,
        user: &UserId,
        origin: &Origin,
    ) -> Result<(ConsoleUser, String), UserError> {
        for _ in 0..ATTEMPTS {
            let Some(mut record) = self.store.get(tenant, user).await? else {
                return Err(UserError::NotFound);
            };
            if record.password.is_some() {
                return Err(UserError::InviteInvalid);
            }
            let (token, invitation) = self.invitation();
            record.invitation = Some(invitation);
            record.version += 1;
            match self.store.update(&record).await? {
                UserWrite::Done => {
                    let mut after = user_json(&record.user);
                    after["invited_again"] = true.into();
                    self.audited(
                        origin,
                        &record.user,
                        AuditAction::UserInvite,
                        None,
                        Some(after),
                    )
                    .await?;
                    return Ok((record.user, token));
                }
                UserWrite::Stale => continue,
                UserWrite::NotFound => return Err(UserError::NotFound),
                UserWrite::LastOwner => return Err(UserError::LastOwner),
            }
        }
        Err(kept_changing())
    }

    /// A new invitation's token (shown once) and what the store keeps of it.
    fn invitation(&self) -> (String, Invitation) {
        let token = new_token();
        let invitation = Invitation {
            token_hash: token_hash(&token),
            expires_at: self.clock.now() + span(INVITATION_LIFETIME),
        };
        (token, invitation)
    }

    /// Accepts an invitation: sets the password, ends the invitation (it works once) and
    /// signs the user in.
    pub async fn accept_invite(
        &self,
        email: &Email,
        token: &str,
        password: &str,
    ) -> Result<SignedIn, UserError> {
        check_password(password)?;
        let presented = token_hash(token);
        let mut hash = None;
        for _ in 0..ATTEMPTS {
            let now = self.clock.now();
            let Some(mut record) = self.store.get_by_email(email).await? else {
                return Err(UserError::InviteInvalid);
            };
            let valid = record.password.is_none()
                && record
                    .invitation
                    .as_ref()
                    .is_some_and(|i| i.token_hash == presented && i.expires_at > now);
            if !valid {
                return Err(UserError::InviteInvalid);
            }
            if hash.is_none() {
                hash = Some(hash_password(password).await?);
            }
            record.password = hash.clone();
            record.invitation = None;
            record.user.pending = false;
            record.sessions_since = now;
            record.version += 1;
            match self.store.update(&record).await? {
                UserWrite::Done => return self.open_session(&record).await,
                UserWrite::Stale => continue,
                UserWrite::NotFound | UserWrite::LastOwner => {
                    return Err(UserError::InviteInvalid);
                }
            }
        }
        Err(UserError::InviteInvalid)
    }

    /// Signs in with an address and a password.
    pub async fn sign_in(&self, email: &str, password: &str) -> Result<SignedIn, UserError> {
        let Ok(email) = Email::parse(email) else {
            verify_password(None, password).await;
            return Err(UserError::BadCredentials);
        };
        let now = self.clock.now();
        let failures = self.store.failures(&email, now).await?;
        throttled(failures, now)?;
        let record = self.store.get_by_email(&email).await?;
        let hash = record.as_ref().and_then(|r| r.password.as_ref());
        let verified = verify_password(hash, password).await;
        let Some(record) = record.filter(|_| verified) else {
            self.store
                .record_failure(&email, now, FAILURE_WINDOW)
                .await?;
            return Err(UserError::BadCredentials);
        };
        if failures.is_some() {
            self.store.clear_failures(&email).await?;
        }
        self.open_session(&record).await
    }

    /// The session a token opens, as it stands now: `None` if the token is unknown or
    /// expired, its user is gone, or it was made before the user's password last changed.
    pub async fn session(&self, token: &str) -> Result<Option<Session>, StoreError> {
        if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
            return Ok(None);
        }
        let now = self.clock.now();
        let Some(stored) = self.store.session(&token_hash(token), now).await? else {
            return Ok(None);
        };
        let Some(record) = self.store.get(&stored.tenant, &stored.user).await? else {
            return Ok(None);
        };
        if record.password.is_none() || stored.created_at < record.sessions_since {
            return Ok(None);
        }
        Ok(Some(Session {
            user: record.user.id,
            tenant: record.user.tenant,
            email: record.user.email,
            role: record.user.role,
            csrf: csrf_token(token),
            expires_at: stored.expires_at,
        }))
    }

    /// Ends the session a token opens (nothing if there is none).
    pub async fn sign_out(&self, token: &str) -> Result<(), StoreError> {
        if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
            return Ok(());
        }
        self.store.delete_session(&token_hash(token)).await
    }

    /// The tenant's users, oldest first (the first 1,000).
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<ConsoleUser>, StoreError> {
        Ok(self
            .store
            .list(tenant)
            .await?
            .into_iter()
            .map(|r| r.user)
            .collect())
    }

    /// One of the tenant's users.
    pub async fn get(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<ConsoleUser>, StoreError> {
        Ok(self.store.get(tenant, user).await?.map(|r| r.user))
    }

    /// Gives a user of the tenant another role; refuses to demote its last active owner.
    pub async fn set_role(
        &self,
        tenant: &TenantId,
        user: &UserId,
        role: Role,
        origin: &Origin,
    ) -> Result<(), UserError> {
        for _ in 0..ATTEMPTS {
            let Some(mut record) = self.store.get(tenant, user).await? else {
                return Err(UserError::NotFound);
            };
            if record.user.role == role {
                return Ok(());
            }
            let before = user_json(&record.user);
            record.user.role = role;
            record.version += 1;
            match self.store.update(&record).await? {
                UserWrite::Done => {
                    let after = Some(user_json(&record.user));
                    return self
                        .audited(
                            origin,
                            &record.user,
                            AuditAction::UserRole,
                            Some(before),
                            after,
                        )
                        .await;
                }
                UserWrite::Stale => continue,
                UserWrite::NotFound => return Err(UserError::NotFound),
                UserWrite::LastOwner => return Err(UserError::LastOwner),
            }
        }
        Err(kept_changing())
    }

    /// Removes every user of an erased tenant, its last owner too: their addresses are
    /// personal data, and the console is closed to them at once. Answers how many.
    pub async fn erase_tenant(&self, tenant: &TenantId) -> Result<usize, UserError> {
        Ok(self.store.erase_tenant(tenant).await?)
    }

    /// Removes a user of the tenant (their sessions end with them); refuses to remove its
    /// last active owner.
    pub async fn remove(
        &self,
        tenant: &TenantId,
        user: &UserId,
        origin: &Origin,
    ) -> Result<(), UserError> {
        let Some(record) = self.store.get(tenant, user).await? else {
            return Err(UserError::NotFound);
        };
        match self.store.delete(tenant, user).await? {
            UserWrite::Done => {
                let before = Some(user_json(&record.user));
                self.audited(origin, &record.user, AuditAction::UserRemove, before, None)
                    .await
            }
            UserWrite::NotFound => Err(UserError::NotFound),
            UserWrite::LastOwner => Err(UserError::LastOwner),
            UserWrite::Stale => Err(kept_changing()),
        }
    }

    /// Changes a user's password, given the current one. Every session of the user made
    /// before, the caller's own included, is void from now on: see
    /// [`Users::change_password_and_sign_in`] to go on with a new one. Wrong current
    /// passwords count as failed sign-ins of the address (and are throttled alike), so a
    /// stolen session cannot guess the password at leisure.
    pub async fn change_password(
        &self,
        tenant: &TenantId,
        user: &UserId,
        current: &str,
        new: &str,
    ) -> Result<(), UserError> {
        self.change(tenant, user, current, new).await.map(|_| ())
    }

    /// As [`Users::change_password`], then signs the user in again: the new session's
    /// token for the cookie.
    pub async fn change_password_and_sign_in(
        &self,
        tenant: &TenantId,
        user: &UserId,
        current: &str,
        new: &str,
    ) -> Result<SignedIn, UserError> {
        let record = self.change(tenant, user, current, new).await?;
        self.open_session(&record).await
    }

    async fn change(
        &self,
        tenant: &TenantId,
        user: &UserId,
        current: &str,
        new: &str,
    ) -> Result<UserRecord, UserError> {
        check_password(new)?;
        let mut hash = None;
        for _ in 0..ATTEMPTS {
            let now = self.clock.now();
            let Some(mut record) = self.store.get(tenant, user).await? else {
                return Err(UserError::NotFound);
            };
            let email = record.user.email.clone();
            let failures = self.store.failures(&email, now).await?;
            throttled(failures, now)?;
            if !verify_password(record.password.as_ref(), current).await {
                self.store
                    .record_failure(&email, now, FAILURE_WINDOW)
                    .await?;
                return Err(UserError::BadCredentials);
            }
            if hash.is_none() {
                hash = Some(hash_password(new).await?);
            }
            record.password = hash.clone();
            record.sessions_since = now;
            record.version += 1;
            match self.store.update(&record).await? {
                UserWrite::Done => {
                    if failures.is_some() {
                        self.store.clear_failures(&email).await?;
                    }
                    return Ok(record);
                }
                UserWrite::Stale => continue,
                UserWrite::NotFound => return Err(UserError::NotFound),
                UserWrite::LastOwner => return Err(UserError::LastOwner),
            }
        }
        Err(kept_changing())
    }

    fn new_record(
        &self,
        tenant: &TenantId,
        email: Email,
        role: Role,
        password: Option<PasswordHash>,
        invitation: Option<Invitation>,
    ) -> UserRecord {
        let now = self.clock.now();
        UserRecord {
            user: ConsoleUser {
                id: UserId::generate(now),
                tenant: tenant.clone(),
                email,
                role,
                created_at: now,
                pending: password.is_none(),
            },
            password,
            invitation,
            sessions_since: now,
            version: 1,
        }
    }

    async fn store_new(&self, record: &UserRecord) -> Result<(), UserError> {
        match self.store.create(record).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists) => Err(UserError::EmailTaken),
            Err(StoreError::NotFound) => Err(UserError::TenantNotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// A new session of the user of `record`.
    async fn open_session(&self, record: &UserRecord) -> Result<SignedIn, UserError> {
        let now = self.clock.now();
        let token = new_token();
        let stored = SessionRecord {
            token_hash: token_hash(&token),
            user: record.user.id.clone(),
            tenant: record.user.tenant.clone(),
            created_at: now,
            expires_at: now + span(SESSION_LIFETIME),
        };
        self.store.put_session(&stored).await?;
        let session = Session {
            user: stored.user,
            tenant: stored.tenant,
            email: record.user.email.clone(),
            role: record.user.role,
            csrf: csrf_token(&token),
            expires_at: stored.expires_at,
        };
        Ok(SignedIn { token, session })
    }
}

/// [`UserError::Throttled`] while the open window holds [`MAX_FAILURES`] or more.
fn throttled(failures: Option<FailureWindow>, now: DateTime<Utc>) -> Result<(), UserError> {
    match failures {
        Some(w) if w.count >= MAX_FAILURES && w.ends_at > now => Err(UserError::Throttled {
            retry_after: (w.ends_at - now).to_std().unwrap_or_default(),
        }),
        _ => Ok(()),
    }
}

fn kept_changing() -> UserError {
    UserError::Store(StoreError::Unavailable(
        "a user kept changing while being changed".into(),
    ))
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {

    use super::*;
    use crate::adapters::file_secrets::FileSecretStore;
    use crate::adapters::sqlite::{SqliteBackend, SqliteConfig, SyncMode};
    use crate::domain::Origin;
    use crate::services::Accounts;

    use crate::ports::clock::ManualClock as Manual;

    /// The service over a fresh SQLite database with two tenants.
    struct Fixture {
        users: Users,
        store: SqliteBackend,
        clock: Arc<Manual>,
        acme: TenantId,
        other: TenantId,
        dir: std::path::PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn fixture(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!(
            "holub-users-{name}-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let store = SqliteBackend::open(
            &dir.join("holub.db"),
            SqliteConfig {
                sync: SyncMode::Normal,
                ..SqliteConfig::default()
            },
        )
        .unwrap();
        let clock = Arc::new(Manual::default());
        let accounts = Accounts::new(
            Arc::new(store.clone()),
            Arc::new(FileSecretStore::in_dir(&dir)),
            clock.clone(),
        );
        let mut tenants = Vec::new();
        for name in ["Acme", "Other"] {
            let made = accounts
                .create_tenant(name, &Origin::operator())
                .await
                .unwrap();
            tenants.push(made.tenant_id.parse::<TenantId>().unwrap());
        }
        Fixture {
            users: Users::new(
                Arc::new(store.clone()),
                Arc::new(store.clone()),
                clock.clone(),
            ),
            store,
            clock,
            other: tenants.pop().unwrap(),
            acme: tenants.pop().unwrap(),
            dir,
        }
    }

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    #[tokio::test]
    async fn user_changes_are_audited_with_who_made_them_and_no_secret() {
        let f = fixture("audit").await;
        let console = Origin {
            actor: crate::domain::Actor::Console {
                user_id: "usr_01JAAAAAAAAAAAAAAAAAAAAAAA".into(),
            },
            source: None,
        };
        let olena = f
            .users
            .create(
                &f.acme,
                email("olena@acme.ua"),
                Role::Owner,
                PASSWORD,
                &Origin::operator(),
            )
            .await
            .unwrap();
        let (taras, token) = f
            .users
            .invite(&f.acme, email("taras@acme.ua"), Role::Sender, &console)
            .await
            .unwrap();
        let (_, again) = f
            .users
            .reinvite(&f.acme, &taras.id, &console)
            .await
            .unwrap();
        f.users
            .set_role(&f.acme, &taras.id, Role::Viewer, &console)
            .await
            .unwrap();
        f.users.remove(&f.acme, &taras.id, &console).await.unwrap();
        // Refused changes leave no entry.
        assert!(f.users.remove(&f.acme, &olena.id, &console).await.is_err());

        let log = crate::ports::TenantStore::audit_log(&f.store, &f.acme, None, 20)
            .await
            .unwrap();
        let users: Vec<(AuditAction, &str)> = log
            .iter()
            .filter(|e| e.action.as_str().starts_with("user."))
            .map(|e| (e.action, e.target.as_str()))
            .collect();
        let (o, t) = (olena.id.as_str(), taras.id.as_str());
        assert_eq!(
            users,
            [
                (AuditAction::UserRemove, t),
                (AuditAction::UserRole, t),
                (AuditAction::UserInvite, t),
                (AuditAction::UserInvite, t),
                (AuditAction::UserCreate, o),
            ]
        );
        let role = log
            .iter()
            .find(|e| e.action == AuditAction::UserRole)
            .unwrap();
        assert_eq!(role.before.as_ref().unwrap()["role"], "sender");
        assert_eq!(role.after.as_ref().unwrap()["role"], "viewer");
        assert!(matches!(role.actor, crate::domain::Actor::Console { .. }));
        let text = serde_json::to_string(&log).unwrap();
        for secret in [token.as_str(), again.as_str(), PASSWORD, "$argon2"] {
            assert!(!text.contains(secret), "{secret} in the audit log");
        }
        let other = crate::ports::TenantStore::audit_log(&f.store, &f.other, None, 20)
            .await
            .unwrap();
        assert!(
            other
                .iter()
                .all(|e| !e.action.as_str().starts_with("user."))
        );
    }

    const PASSWORD: &str = "correct horse battery";

    impl Fixture {
        async fn owner(&self, address: &str) -> ConsoleUser {
            self.users
                .create(
                    &self.acme,
                    email(address),
                    Role::Owner,
                    PASSWORD,
                    &Origin::operator(),
                )
                .await
                .unwrap()
        }
    }

    #[tokio::test]
    async fn users_sign_in_to_a_session_that_reads_the_user_each_time() {
        let f = fixture("session").await;
        let olena = f.owner("olena@acme.ua").await;
        assert!(!olena.pending);
        assert!(olena.id.as_str().starts_with("usr_"));

        let signed = f.users.sign_in(" Olena@ACME.ua ", PASSWORD).await.unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&signed.token).unwrap().len(), 32);
        assert!(!format!("{signed:?}").contains(&signed.token));
        assert!(!format!("{signed:?}").contains(&signed.session.csrf));
        assert!(!format!("{signed:?}").contains("olena@"));
        let session = f.users.session(&signed.token).await.unwrap().unwrap();
        assert_eq!(session, signed.session);
        assert_eq!(
            (&session.user, &session.tenant, session.role),
            (&olena.id, &f.acme, Role::Owner)
        );
        assert_eq!(session.email.as_str(), "olena@acme.ua");
        assert_eq!(session.csrf, csrf_token(&signed.token));
        assert_eq!(session.csrf.len(), 64);
        assert_ne!(session.csrf, token_hash(&signed.token));
        assert_eq!(
            session.expires_at,
            f.clock.now() + chrono::Duration::hours(12)
        );

        // A second owner, so the first can be demoted: the session shows it at once.
        f.owner("taras@acme.ua").await;
        f.users
            .set_role(&f.acme, &olena.id, Role::Viewer, &Origin::operator())
            .await
            .unwrap();
        let session = f.users.session(&signed.token).await.unwrap().unwrap();
        assert_eq!(session.role, Role::Viewer);

        // Unknown, malformed and signed-out tokens open nothing.
        assert_eq!(f.users.session("nope").await.unwrap(), None);
        assert_eq!(f.users.session("").await.unwrap(), None);
        assert_eq!(f.users.session(&"x".repeat(10_000)).await.unwrap(), None);
        f.users.sign_out(&signed.token).await.unwrap();
        assert_eq!(f.users.session(&signed.token).await.unwrap(), None);
        f.users.sign_out(&signed.token).await.unwrap();

        // A session ends after 12 hours.
        let again = f.users.sign_in("olena@acme.ua", PASSWORD).await.unwrap();
        f.clock.advance(12 * 3600 - 1);
        assert!(f.users.session(&again.token).await.unwrap().is_some());
        f.clock.advance(1);
        assert_eq!(f.users.session(&again.token).await.unwrap(), None);
    }

    #[tokio::test]
    async fn users_bad_credentials_look_alike() {
        let f = fixture("credentials").await;
        f.owner("olena@acme.ua").await;
        f.users
            .invite(
                &f.acme,
                email("invited@acme.ua"),
                Role::Sender,
                &Origin::operator(),
            )
            .await
            .unwrap();
        for (address, password) in [
            ("olena@acme.ua", "wrong password"),
            ("nobody@acme.ua", PASSWORD),
            ("invited@acme.ua", PASSWORD),
            ("invited@acme.ua", ""),
            ("not an address", PASSWORD),
            ("", ""),
            ("olena@acme.ua", &"x".repeat(1 << 20)),
        ] {
            let refused = f.users.sign_in(address, password).await.unwrap_err();
            assert!(
                matches!(refused, UserError::BadCredentials),
                "{address}: {refused:?}"
            );
            assert_eq!(refused.code(), "bad_credentials");
        }
    }

    #[tokio::test]
    async fn users_are_throttled_after_five_failures_in_fifteen_minutes() {
        let f = fixture("throttle").await;
        f.owner("olena@acme.ua").await;
        // Four failures, then a success: the count starts over.
        for _ in 0..4 {
            let e = f.users.sign_in("olena@acme.ua", "wrong one!").await;
            assert!(matches!(e, Err(UserError::BadCredentials)));
        }
        f.users.sign_in("olena@acme.ua", PASSWORD).await.unwrap();
        for n in 0..5 {
            f.clock.advance(60);
            let e = f.users.sign_in("OLENA@acme.ua", "wrong one!").await;
            assert!(matches!(e, Err(UserError::BadCredentials)), "{n}: {e:?}");
        }
        // The sixth try is refused, the right password too, until 15 minutes after the
        // first failure of the window.
        let refused = f
            .users
            .sign_in("olena@acme.ua", PASSWORD)
            .await
            .unwrap_err();
        let UserError::Throttled { retry_after } = refused else {
            panic!("{refused:?}");
        };
        assert_eq!(retry_after, Duration::from_secs(15 * 60 - 5 * 60 + 60));
        assert_eq!(refused.code(), "sign_in_throttled");
        assert!(refused.to_string().contains("11 minutes"), "{refused}");
        f.clock.advance(retry_after.as_secs() as i64 - 1);
        assert!(matches!(
            f.users.sign_in("olena@acme.ua", PASSWORD).await,
            Err(UserError::Throttled { .. })
        ));
        f.clock.advance(1);
        f.users.sign_in("olena@acme.ua", PASSWORD).await.unwrap();

        // Unknown addresses are counted and throttled alike; others are not.
        for _ in 0..5 {
            let e = f.users.sign_in("nobody@acme.ua", PASSWORD).await;
            assert!(matches!(e, Err(UserError::BadCredentials)));
        }
        assert!(matches!(
            f.users.sign_in("nobody@acme.ua", PASSWORD).await,
            Err(UserError::Throttled { .. })
        ));
        f.users.sign_in("olena@acme.ua", PASSWORD).await.unwrap();
    }

    #[tokio::test]
    async fn users_keep_a_tenant_with_an_active_owner() {
        let f = fixture("owners").await;
        let olena = f.owner("olena@acme.ua").await;
        let last = |r: Result<(), UserError>| matches!(r, Err(UserError::LastOwner));
        assert!(last(
            f.users
                .set_role(&f.acme, &olena.id, Role::Sender, &Origin::operator())
                .await
        ));
        assert!(last(
            f.users
                .remove(&f.acme, &olena.id, &Origin::operator())
                .await
        ));
        // An invited owner cannot sign in yet, so does not count.
        let (invited, token) = f
            .users
            .invite(
                &f.acme,
                email("invited@acme.ua"),
                Role::Owner,
                &Origin::operator(),
            )
            .await
            .unwrap();
        assert!(invited.pending);
        assert!(last(
            f.users
                .remove(&f.acme, &olena.id, &Origin::operator())
                .await
        ));
        // Once accepted, it does.
        f.users
            .accept_invite(&invited.email, &token, "a new long password")
            .await
            .unwrap();
        f.users
            .set_role(&f.acme, &olena.id, Role::Viewer, &Origin::operator())
            .await
            .unwrap();
        let e = f
            .users
            .set_role(&f.acme, &invited.id, Role::Viewer, &Origin::operator())
            .await;
        assert_eq!(e.unwrap_err().code(), "last_owner");
        f.users
            .set_role(&f.acme, &olena.id, Role::Owner, &Origin::operator())
            .await
            .unwrap();
        f.users
            .remove(&f.acme, &invited.id, &Origin::operator())
            .await
            .unwrap();
        assert!(last(
            f.users
                .remove(&f.acme, &olena.id, &Origin::operator())
                .await
        ));
        // Setting the role it has is no change.
        f.users
            .set_role(&f.acme, &olena.id, Role::Owner, &Origin::operator())
            .await
            .unwrap();

        // Another tenant's user is not found from here; nor is one removed.
        let e = f
            .users
            .set_role(&f.other, &olena.id, Role::Viewer, &Origin::operator())
            .await;
        assert!(matches!(e, Err(UserError::NotFound)));
        assert!(matches!(
            f.users
                .remove(&f.other, &olena.id, &Origin::operator())
                .await,
            Err(UserError::NotFound)
        ));
        assert!(matches!(
            f.users
                .remove(&f.acme, &invited.id, &Origin::operator())
                .await,
            Err(UserError::NotFound)
        ));
        assert_eq!(f.users.get(&f.other, &olena.id).await.unwrap(), None);
        assert_eq!(
            f.users.list(&f.acme).await.unwrap(),
            vec![f.users.get(&f.acme, &olena.id).await.unwrap().unwrap()]
        );
        assert!(f.users.list(&f.other).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn users_need_passwords_of_ten_to_128_characters() {
        let f = fixture("weak").await;
        for weak in ["", "short pwd", &"x".repeat(129)] {
            let e = f
                .users
                .create(
                    &f.acme,
                    email("olena@acme.ua"),
                    Role::Owner,
                    weak,
                    &Origin::operator(),
                )
                .await;
            assert!(matches!(e, Err(UserError::WeakPassword)), "{weak:?}");
        }
        // Characters, not bytes: ten Cyrillic letters are twenty bytes, and enough.
        f.users
            .create(
                &f.acme,
                email("olena@acme.ua"),
                Role::Owner,
                "пароль_ок!",
                &Origin::operator(),
            )
            .await
            .unwrap();
        f.users
            .sign_in("olena@acme.ua", "пароль_ок!")
            .await
            .unwrap();
        let longest = "ї".repeat(128);
        let taras = f
            .users
            .create(
                &f.acme,
                email("taras@acme.ua"),
                Role::Sender,
                &longest,
                &Origin::operator(),
            )
            .await
            .unwrap();
        let e = f
            .users
            .change_password(&f.acme, &taras.id, &longest, "too short")
            .await;
        assert_eq!(e.unwrap_err().code(), "weak_password");
        let (invited, token) = f
            .users
            .invite(
                &f.acme,
                email("invited@acme.ua"),
                Role::Viewer,
                &Origin::operator(),
            )
            .await
            .unwrap();
        let e = f.users.accept_invite(&invited.email, &token, "123").await;
        assert!(matches!(e, Err(UserError::WeakPassword)));
        // The invitation still works after a weak choice.
        f.users
            .accept_invite(&invited.email, &token, "long enough now")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn users_emails_are_unique_across_tenants() {
        let f = fixture("unique").await;
        f.owner("olena@acme.ua").await;
        let e = f
            .users
            .create(
                &f.other,
                email("OLENA@acme.ua"),
                Role::Owner,
                PASSWORD,
                &Origin::operator(),
            )
            .await;
        assert_eq!(e.unwrap_err().code(), "email_taken");
        let e = f
            .users
            .invite(
                &f.acme,
                email("olena@acme.ua"),
                Role::Viewer,
                &Origin::operator(),
            )
            .await;
        assert!(matches!(e, Err(UserError::EmailTaken)));
        let nowhere = TenantId::generate(f.clock.now());
        let e = f
            .users
            .create(
                &nowhere,
                email("taras@acme.ua"),
                Role::Owner,
                PASSWORD,
                &Origin::operator(),
            )
            .await;
        assert_eq!(e.unwrap_err().code(), "tenant_not_found");
    }

    #[tokio::test]
    async fn users_accept_an_invitation_once_and_before_it_expires() {
        let f = fixture("invite").await;
        f.owner("olena@acme.ua").await;
        let (invited, token) = f
            .users
            .invite(
                &f.acme,
                email("Taras@Acme.ua"),
                Role::Sender,
                &Origin::operator(),
            )
            .await
            .unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert!(invited.pending);
        assert_eq!(invited.role, Role::Sender);
        let listed = f.users.list(&f.acme).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1], invited);

        // The wrong token, or the token for another address: refused.
        let e = f
            .users
            .accept_invite(&invited.email, "not-the-token", "a good password")
            .await;
        assert_eq!(e.unwrap_err().code(), "invitation_invalid");
        let e = f
            .users
            .accept_invite(&email("olena@acme.ua"), &token, "a good password")
            .await;
        assert!(matches!(e, Err(UserError::InviteInvalid)));
        let e = f
            .users
            .accept_invite(&email("nobody@acme.ua"), &token, "a good password")
            .await;
        assert!(matches!(e, Err(UserError::InviteInvalid)));

        let signed = f
            .users
            .accept_invite(&invited.email, &token, "a good password")
            .await
            .unwrap();
        assert_eq!(signed.session.role, Role::Sender);
        assert!(f.users.session(&signed.token).await.unwrap().is_some());
        let user = f.users.get(&f.acme, &invited.id).await.unwrap().unwrap();
        assert!(!user.pending);
        // Once only.
        let e = f
            .users
            .accept_invite(&invited.email, &token, "another password")
            .await;
        assert!(matches!(e, Err(UserError::InviteInvalid)));
        f.users
            .sign_in("taras@acme.ua", "a good password")
            .await
            .unwrap();

        // Seven days to accept.
        let (late, token) = f
            .users
            .invite(
                &f.acme,
                email("late@acme.ua"),
                Role::Viewer,
                &Origin::operator(),
            )
            .await
            .unwrap();
        f.clock.advance(7 * 24 * 3600);
        let e = f
            .users
            .accept_invite(&late.email, &token, "a good password")
            .await;
        assert!(matches!(e, Err(UserError::InviteInvalid)));
    }

    #[tokio::test]
    async fn users_invited_again_get_a_new_link_and_the_old_one_stops_working() {
        let f = fixture("reinvite").await;
        let olena = f.owner("olena@acme.ua").await;
        let (invited, old) = f
            .users
            .invite(
                &f.acme,
                email("taras@acme.ua"),
                Role::Sender,
                &Origin::operator(),
            )
            .await
            .unwrap();

        // Another tenant's owner cannot reach the user: not found, and the link still works.
        let e = f
            .users
            .reinvite(&f.other, &invited.id, &Origin::operator())
            .await;
        assert!(matches!(e, Err(UserError::NotFound)));
        let e = f
            .users
            .reinvite(
                &f.acme,
                &UserId::generate(f.clock.now()),
                &Origin::operator(),
            )
            .await;
        assert!(matches!(e, Err(UserError::NotFound)));

        // Six days on, a new link: valid seven days from now, and the old one is void.
        f.clock.advance(6 * 24 * 3600);
        let (again, new) = f
            .users
            .reinvite(&f.acme, &invited.id, &Origin::operator())
            .await
            .unwrap();
        assert_eq!(again, invited);
        assert_ne!(new, old);
        assert_eq!(URL_SAFE_NO_PAD.decode(&new).unwrap().len(), 32);
        let e = f
            .users
            .accept_invite(&invited.email, &old, "a good password")
            .await;
        assert!(matches!(e, Err(UserError::InviteInvalid)));
        f.clock.advance(2 * 24 * 3600);
        let signed = f
            .users
            .accept_invite(&invited.email, &new, "a good password")
            .await
            .unwrap();
        assert_eq!(signed.session.role, Role::Sender);

        // Accepted: nothing left to invite again, nor a user who never was invited.
        let e = f
            .users
            .reinvite(&f.acme, &invited.id, &Origin::operator())
            .await;
        assert!(matches!(e, Err(UserError::InviteInvalid)));
        let e = f
            .users
            .reinvite(&f.acme, &olena.id, &Origin::operator())
            .await;
        assert!(matches!(e, Err(UserError::InviteInvalid)));
    }

    #[tokio::test]
    async fn users_sessions_end_with_a_password_change_or_a_removal() {
        let f = fixture("void").await;
        let olena = f.owner("olena@acme.ua").await;
        let taras = f
            .users
            .create(
                &f.acme,
                email("taras@acme.ua"),
                Role::Sender,
                PASSWORD,
                &Origin::operator(),
            )
            .await
            .unwrap();
        let first = f.users.sign_in("olena@acme.ua", PASSWORD).await.unwrap();
        let second = f.users.sign_in("olena@acme.ua", PASSWORD).await.unwrap();
        let his = f.users.sign_in("taras@acme.ua", PASSWORD).await.unwrap();
        f.clock.advance(1);

        // A wrong current password changes nothing.
        let e = f
            .users
            .change_password(&f.acme, &olena.id, "not the one!", "a brand new password")
            .await;
        assert!(matches!(e, Err(UserError::BadCredentials)));
        assert!(f.users.session(&first.token).await.unwrap().is_some());
        let e = f
            .users
            .change_password(&f.other, &olena.id, PASSWORD, "a brand new password")
            .await;
        assert!(matches!(e, Err(UserError::NotFound)));

        let renewed = f
            .users
            .change_password_and_sign_in(&f.acme, &olena.id, PASSWORD, "a brand new password")
            .await
            .unwrap();
        assert_eq!(f.users.session(&first.token).await.unwrap(), None);
        assert_eq!(f.users.session(&second.token).await.unwrap(), None);
        assert!(f.users.session(&renewed.token).await.unwrap().is_some());
        assert!(f.users.session(&his.token).await.unwrap().is_some());
        assert!(matches!(
            f.users.sign_in("olena@acme.ua", PASSWORD).await,
            Err(UserError::BadCredentials)
        ));
        f.users
            .sign_in("olena@acme.ua", "a brand new password")
            .await
            .unwrap();

        // The plain change voids the caller's session too.
        f.clock.advance(1);
        f.users
            .change_password(&f.acme, &olena.id, "a brand new password", PASSWORD)
            .await
            .unwrap();
        assert_eq!(f.users.session(&renewed.token).await.unwrap(), None);

        // A removed user's session opens nothing.
        f.users
            .remove(&f.acme, &taras.id, &Origin::operator())
            .await
            .unwrap();
        assert_eq!(f.users.session(&his.token).await.unwrap(), None);
        assert!(matches!(
            f.users.sign_in("taras@acme.ua", PASSWORD).await,
            Err(UserError::BadCredentials)
        ));
        // The address is free again.
        f.users
            .create(
                &f.other,
                email("taras@acme.ua"),
                Role::Owner,
                PASSWORD,
                &Origin::operator(),
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn users_wrong_current_passwords_count_as_failed_sign_ins() {
        let f = fixture("change-throttle").await;
        let olena = f.owner("olena@acme.ua").await;
        for _ in 0..5 {
            let e = f
                .users
                .change_password(&f.acme, &olena.id, "guess guess", "a brand new password")
                .await;
            assert!(matches!(e, Err(UserError::BadCredentials)));
        }
        let e = f
            .users
            .change_password(&f.acme, &olena.id, PASSWORD, "a brand new password")
            .await;
        assert!(matches!(e, Err(UserError::Throttled { .. })));
        assert!(matches!(
            f.users.sign_in("olena@acme.ua", PASSWORD).await,
            Err(UserError::Throttled { .. })
        ));
    }

    #[test]
    fn user_errors_have_stable_codes_and_readable_texts() {
        let all = [
            UserError::WeakPassword,
            UserError::EmailTaken,
            UserError::NotFound,
            UserError::LastOwner,
            UserError::InviteInvalid,
            UserError::BadCredentials,
            UserError::Throttled {
                retry_after: Duration::from_secs(30),
            },
            UserError::TenantNotFound,
            UserError::Store(StoreError::NotFound),
        ];
        let codes: Vec<&str> = all.iter().map(UserError::code).collect();
        assert_eq!(
            codes,
            [
                "weak_password",
                "email_taken",
                "user_not_found",
                "last_owner",
                "invitation_invalid",
                "bad_credentials",
                "sign_in_throttled",
                "tenant_not_found",
                "store_unavailable"
            ]
        );
        assert!(all[6].to_string().ends_with("try again in a minute"));
        assert!(all[0].to_string().contains("10 to 128 characters"));
    }
}
