//! [`UserStore`] on DynamoDB, in the tenants table (partition key `pk`, and the `by_tenant`
//! index on `gp`/`gs`, which projects every attribute). Addresses and tokens stand in keys
//! only as SHA-256 digests (hex).
//!
//! | item | `pk` | attributes | `by_tenant` (`gp`, `gs`) |
//! |---|---|---|---|
//! | a user | `user#<tenant>#<id>` | `t` tenant, `ui` id, `em` email, `rl` role, `pw` Argon2id PHC string (absent while invited), `ih`/`ix` the invitation's token digest and expiry (ns), `ss` sessions since (ns), `c` created (ns), `v` version | `<tenant>#user`, id |
//! | an address's guard | `useremail#<sha-256 of the email>` | `t` tenant, `ui` the user's id | — |
//! | a tenant's active owners | `owners#<tenant>` | `t` tenant, `no` how many | — |
//! | a session | `session#<sha-256 of the token>` | `t` tenant, `ui` user, `c` created, `x` expires (ns), **`ttl`** | — |
//! | an address's failed sign-ins | `signin#<sha-256 of the email>` | `fc` count, `x` the window's end (ns), **`ttl`** | — |
//!
//! User ids are ULIDs, so the index group in id order is oldest first. An address is one
//! user's in all of Holub: its guard is put with the user, each on `attribute_not_exists(pk)`.
//! The count of active owners (owners with a password) lets a transaction refuse to leave a
//! tenant without one: each change that makes or unmakes an active owner moves the count in
//! the same `TransactWriteItems`, a decrement on condition `no > 1`. Changes of a user are
//! made over the version read (`v`), so of two made at once one is [`UserWrite::Stale`].
//! Sessions and failure windows carry `ttl` (the table's TTL attribute) at their end; one
//! past its end reads as absent before DynamoDB deletes it. A failure is counted by an
//! `ADD` on condition that the window is open, and opens a new window (a put on condition
//! that none is open) when it is not.
//!
//! Reads of one item are strongly consistent; `list` reads the index, eventually
//! consistent (a new user shows within about a second).
//!
//! | call | requests | write units |
//! |---|---|---|
//! | `create` | 1 `TransactWriteItems` (tenant check, user, guard; + owners) | 2 × 3 (2 × 4 for an owner with a password) |
//! | `get_by_email` | 2 `GetItem` (guard, user) | — |
//! | `get` | 1 `GetItem` | — |
//! | `list` | 1 `Query` per 1 MB | — |
//! | `update` | 1 `GetItem` + 1 `TransactWriteItems` | 2 × 1 (2 × 2 when the active owners change) |
//! | `delete` | 1 `GetItem` + 1 `TransactWriteItems` | 2 × 2 (2 × 3 for an active owner) |
//! | `put_session` / `delete_session` | 1 `PutItem` / 1 `DeleteItem` | 1 |
//! | `session` | 1 `GetItem` | — |
//! | `record_failure` | 1 `UpdateItem` (+ 1 `PutItem` when a window opens) | 1 (2) |
//! | `failures` / `clear_failures` | 1 `GetItem` / 1 `DeleteItem` | — / 1 |
//!
//! So a signed-in console request (`Users::session`) reads two items: its session and its
//! user; a sign-in reads three (failures, guard, user) and writes one (the session), two
//! after failures (their item is deleted).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};

use super::codec::{
    Item, corrupt, get_n, get_s, n, nanos, nanos_bound, parse, req_n, req_s, s, tenant,
};
use super::reads::Order;
use super::txn::{ROUNDS, attempt_token, cancellation_codes, kept_changing, pause};
use super::{DynamoStore, Expr, unavailable};
use crate::domain::{ConsoleUser, Email, Invitation, PasswordHash, Role, TenantId, UserId};
use crate::ports::users::MAX_USERS;
use crate::ports::{FailureWindow, SessionRecord, StoreError, UserRecord, UserStore, UserWrite};

/// A user's id, a session's user (S).
const USER: &str = "ui";
/// A user's email (S).
const EMAIL: &str = "em";
/// A user's role (S).
const ROLE: &str = "rl";
/// A user's password, an Argon2id PHC string (S); absent while invited.
const PASSWORD: &str = "pw";
/// An invitation's token digest (S) and expiry (N, ns).
const INVITE_HASH: &str = "ih";
const INVITE_EXPIRES: &str = "ix";
/// Sessions created before this are void (N, ns).
const SESSIONS_SINCE: &str = "ss";
/// A user's version (N).
const VERSION: &str = "v";
/// A tenant's count of active owners (N).
const OWNERS: &str = "no";
/// An address's failed sign-ins in the open window (N).
const FAILURES: &str = "fc";

fn user_key(t: &TenantId, id: &str) -> String {
    format!("user#{t}#{id}")
}

fn guard_key(email: &Email) -> String {
    format!("useremail#{}", email.digest())
}

fn owners_key(t: &TenantId) -> String {
    format!("owners#{t}")
}

fn session_key(token_hash: &str) -> String {
    format!("session#{token_hash}")
}

fn failures_key(email: &Email) -> String {
    format!("signin#{}", email.digest())
}

fn users_group(t: &TenantId) -> String {
    format!("{t}#user")
}

/// Seconds since the epoch: a `ttl` attribute at `at`.
fn ttl_at(at: DateTime<Utc>) -> AttributeValue {
    n(at.timestamp())
}

fn user_item(r: &UserRecord) -> Result<Item, StoreError> {
    let u = &r.user;
    let mut item = Item::from([
        (
            tenant::KEY.to_owned(),
            s(user_key(&u.tenant, u.id.as_str())),
        ),
        (tenant::TENANT.to_owned(), s(u.tenant.as_str())),
        (USER.to_owned(), s(u.id.as_str())),
        (EMAIL.to_owned(), s(u.email.as_str())),
        (ROLE.to_owned(), s(u.role.as_str())),
        (SESSIONS_SINCE.to_owned(), n(nanos(r.sessions_since)?)),
        (tenant::CREATED.to_owned(), n(nanos(u.created_at)?)),
        (VERSION.to_owned(), n(r.version)),
        (tenant::GROUP.to_owned(), s(users_group(&u.tenant))),
        (tenant::GROUP_SORT.to_owned(), s(u.id.as_str())),
    ]);
    if let Some(password) = &r.password {
        item.insert(PASSWORD.to_owned(), s(password.as_str()));
    }
    if let Some(invitation) = &r.invitation {
        item.insert(INVITE_HASH.to_owned(), s(invitation.token_hash.clone()));
        item.insert(INVITE_EXPIRES.to_owned(), n(nanos(invitation.expires_at)?));
    }
    Ok(item)
}

fn user_from(item: &Item) -> Result<UserRecord, StoreError> {
    let id: UserId = parse(req_s(item, USER)?, "user id")?;
    let bad = |what: &str| corrupt(format!("user {id}: {what}"));
    let password = get_s(item, PASSWORD)?.map(PasswordHash::from_phc);
    let invitation = match (
        get_s(item, INVITE_HASH)?,
        get_n::<i64>(item, INVITE_EXPIRES)?,
    ) {
        (Some(hash), Some(expires)) => Some(Invitation {
            token_hash: hash.to_owned(),
            expires_at: DateTime::from_timestamp_nanos(expires),
        }),
        (None, None) => None,
        _ => return Err(bad("invitation")),
    };
    let t = parse(req_s(item, tenant::TENANT)?, "tenant id")?;
    let email = Email::parse(req_s(item, EMAIL)?).map_err(|_| bad("email"))?;
    let role = Role::parse(req_s(item, ROLE)?).ok_or_else(|| bad("role"))?;
    Ok(UserRecord {
        user: ConsoleUser {
            tenant: t,
            email,
            role,
            created_at: DateTime::from_timestamp_nanos(req_n(item, tenant::CREATED)?),
            pending: password.is_none(),
            id,
        },
        password,
        invitation,
        sessions_since: DateTime::from_timestamp_nanos(req_n(item, SESSIONS_SINCE)?),
        version: req_n(item, VERSION)?,
    })
}

fn session_from(token_hash: &str, item: &Item) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        token_hash: token_hash.to_owned(),
        user: parse(req_s(item, USER)?, "user id")?,
        tenant: parse(req_s(item, tenant::TENANT)?, "tenant id")?,
        created_at: DateTime::from_timestamp_nanos(req_n(item, tenant::CREATED)?),
        expires_at: DateTime::from_timestamp_nanos(req_n(item, tenant::EXPIRES)?),
    })
}

fn window_from(item: &Item) -> Result<FailureWindow, StoreError> {
    Ok(FailureWindow {
        count: req_n(item, FAILURES)?,
        ends_at: DateTime::from_timestamp_nanos(req_n(item, tenant::EXPIRES)?),
    })
}

/// How a transaction of a user's change ended, when DynamoDB answered.
enum Outcome {
    Done,
    /// The condition of the item at this index failed.
    Refused(usize),
    /// Another transaction held one of its items.
    Conflict,
}

impl DynamoStore {
    fn users_table(&self) -> &str {
        &self.config.tenants_table
    }

    /// A put of `item` on `condition` (`e` holds its names and values).
    fn put_if(
        &self,
        item: Item,
        condition: String,
        e: &Expr,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(self.users_table())
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A delete of the item at `pk`, on `condition` if one is given.
    fn delete_if(
        &self,
        pk: String,
        condition: Option<String>,
        e: &Expr,
    ) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(self.users_table())
            .key(tenant::KEY, s(pk))
            .set_condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// A delete of the guard of `email` if it is `id`'s (or gone already).
    fn free_address(&self, email: &Email, id: &str) -> Result<TransactWriteItem, StoreError> {
        let mut e = Expr::default();
        let condition = format!(
            "attribute_not_exists({}) OR {} = {}",
            e.name(tenant::KEY),
            e.name(USER),
            e.value(s(id))
        );
        self.delete_if(guard_key(email), Some(condition), &e)
    }

    /// One more active owner of `t`, or (`more` false) one fewer, on condition that one stays.
    fn owners_change(&self, t: &TenantId, more: bool) -> Result<TransactWriteItem, StoreError> {
        let mut e = Expr::default();
        let count = e.name(OWNERS);
        let one = e.value(n(1));
        let (expression, condition) = if more {
            let owner = e.name(tenant::TENANT);
            let value = e.value(s(t.as_str()));
            (format!("ADD {count} {one} SET {owner} = {value}"), None)
        } else {
            let minus = e.value(n(-1));
            (
                format!("ADD {count} {minus}"),
                Some(format!("{count} > {one}")),
            )
        };
        let update = Update::builder()
            .table_name(self.users_table())
            .key(tenant::KEY, s(owners_key(t)))
            .update_expression(expression)
            .set_condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn users_transaction(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Outcome, StoreError> {
        let e = match self.send_transaction(items, attempt_token()).await {
            Ok(()) => return Ok(Outcome::Done),
            Err(e) => e,
        };
        let outcome = cancellation_codes(&e).and_then(|codes| {
            match codes
                .iter()
                .position(|c| *c == Some("ConditionalCheckFailed"))
            {
                Some(index) => Some(Outcome::Refused(index)),
                None => codes
                    .contains(&Some("TransactionConflict"))
                    .then_some(Outcome::Conflict),
            }
        });
        outcome.ok_or_else(|| unavailable(e))
    }

    async fn stored_user(&self, t: &TenantId, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.tenants_item(user_key(t, id), None)
            .await?
            .as_ref()
            .map(user_from)
            .transpose()
    }
}

/// The condition that an item is at version `version`.
fn at_version(e: &mut Expr, version: u64) -> String {
    format!("{} = {}", e.name(VERSION), e.value(n(version)))
}

#[async_trait]
impl UserStore for DynamoStore {
    async fn create(&self, user: &UserRecord) -> Result<(), StoreError> {
        if user.version != 1 {
            return Err(corrupt("a new user is stored at version 1"));
        }
        let t = &user.user.tenant;
        let guard = Item::from([
            (tenant::KEY.to_owned(), s(guard_key(&user.user.email))),
            (tenant::TENANT.to_owned(), s(t.as_str())),
            (USER.to_owned(), s(user.user.id.as_str())),
        ]);
        for round in 1..=ROUNDS {
            let mut items = vec![
                self.tenant_exists(t)?,
                super::txn::put_new(self.users_table(), user_item(user)?)?,
                super::txn::put_new(self.users_table(), guard.clone())?,
            ];
            if user.active_owner() {
                items.push(self.owners_change(t, true)?);
            }
            match self.users_transaction(items).await? {
                Outcome::Done => return Ok(()),
                Outcome::Refused(0) => return Err(StoreError::NotFound),
                Outcome::Refused(_) => return Err(StoreError::AlreadyExists),
                Outcome::Conflict => pause(round).await,
            }
        }
        Err(kept_changing("a user", "storing"))
    }

    async fn get_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        let Some(guard) = self.tenants_item(guard_key(email), None).await? else {
            return Ok(None);
        };
        let t: TenantId = parse(req_s(&guard, tenant::TENANT)?, "tenant id")?;
        let found = self.stored_user(&t, req_s(&guard, USER)?).await?;
        // A user deleted between the two reads leaves no guard behind.
        Ok(found.filter(|r| &r.user.email == email))
    }

    async fn get(&self, t: &TenantId, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        self.stored_user(t, id.as_str()).await
    }

    async fn list(&self, t: &TenantId) -> Result<Vec<UserRecord>, StoreError> {
        let items = self
            .by_tenant_group(users_group(t), Order::Ascending, None, MAX_USERS)
            .await?;
        items.iter().map(user_from).collect()
    }

    async fn update(&self, user: &UserRecord) -> Result<UserWrite, StoreError> {
        let (t, id) = (&user.user.tenant, user.user.id.as_str());
        for round in 1..=ROUNDS {
            let Some(current) = self.stored_user(t, id).await? else {
                return Ok(UserWrite::NotFound);
            };
            if current.version + 1 != user.version {
                return Ok(UserWrite::Stale);
            }
            // The address and the creation stay as stored (the guard names this user).
            let mut next = user.clone();
            next.user.email = current.user.email.clone();
            next.user.created_at = current.user.created_at;
            let mut e = Expr::default();
            let condition = at_version(&mut e, current.version);
            let mut items = vec![self.put_if(user_item(&next)?, condition, &e)?];
            match (current.active_owner(), next.active_owner()) {
                (false, true) => items.push(self.owners_change(t, true)?),
                (true, false) => items.push(self.owners_change(t, false)?),
                _ => {}
            }
            match self.users_transaction(items).await? {
                Outcome::Done => return Ok(UserWrite::Done),
                // Changed or deleted since it was read: the next round tells which.
                Outcome::Refused(0) => {}
                Outcome::Refused(_) => return Ok(UserWrite::LastOwner),
                Outcome::Conflict => pause(round).await,
            }
        }
        Err(kept_changing("a user", "storing"))
    }

    async fn delete(&self, t: &TenantId, id: &UserId) -> Result<UserWrite, StoreError> {
        for round in 1..=ROUNDS {
            let Some(current) = self.stored_user(t, id.as_str()).await? else {
                return Ok(UserWrite::NotFound);
            };
            let mut e = Expr::default();
            let condition = at_version(&mut e, current.version);
            let user = self.delete_if(user_key(t, id.as_str()), Some(condition), &e)?;
            let guard = self.free_address(&current.user.email, id.as_str())?;
            let mut items = vec![user, guard];
            if current.active_owner() {
                items.push(self.owners_change(t, false)?);
            }
            match self.users_transaction(items).await? {
                Outcome::Done => return Ok(UserWrite::Done),
                Outcome::Refused(2) => return Ok(UserWrite::LastOwner),
                // Changed or deleted since it was read: read again.
                Outcome::Refused(_) => {}
                Outcome::Conflict => pause(round).await,
            }
        }
        Err(kept_changing("a user", "deleting"))
    }

    async fn erase_tenant(&self, t: &TenantId) -> Result<usize, StoreError> {
        let users = self.list(t).await?;
        for user in &users {
            let id = user.user.id.as_str();
            let items = vec![
                self.delete_if(user_key(t, id), None, &Expr::default())?,
                self.free_address(&user.user.email, id)?,
            ];
            match self.users_transaction(items).await? {
                Outcome::Done => {}
                // The guard is another user's (not this one's to free): the user alone.
                Outcome::Refused(_) => {
                    let user = self.delete_if(user_key(t, id), None, &Expr::default())?;
                    self.users_transaction(vec![user]).await?;
                }
                Outcome::Conflict => return Err(kept_changing("a user", "erasing")),
            }
        }
        let owners = self.delete_if(owners_key(t), None, &Expr::default())?;
        self.users_transaction(vec![owners]).await?;
        Ok(users.len())
    }

    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let item = Item::from([
            (tenant::KEY.to_owned(), s(session_key(&session.token_hash))),
            (tenant::TENANT.to_owned(), s(session.tenant.as_str())),
            (USER.to_owned(), s(session.user.as_str())),
            (tenant::CREATED.to_owned(), n(nanos(session.created_at)?)),
            (tenant::EXPIRES.to_owned(), n(nanos(session.expires_at)?)),
            (tenant::TTL.to_owned(), ttl_at(session.expires_at)),
        ]);
        let put = self
            .client
            .put_item()
            .table_name(self.users_table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", tenant::KEY)
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::AlreadyExists)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let Some(item) = self.tenants_item(session_key(token_hash), None).await? else {
            return Ok(None);
        };
        let session = session_from(token_hash, &item)?;
        Ok((session.expires_at > now).then_some(session))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(self.users_table())
            .key(tenant::KEY, s(session_key(token_hash)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn record_failure(
        &self,
        email: &Email,
        at: DateTime<Utc>,
        window: Duration,
    ) -> Result<FailureWindow, StoreError> {
        let ends = at
            + chrono::Duration::from_std(window)
                .map_err(|_| corrupt("a sign-in window out of range"))?;
        let key = failures_key(email);
        for _ in 0..ROUNDS {
            // One more in the open window.
            let mut e = Expr::default();
            let (count, end) = (e.name(FAILURES), e.name(tenant::EXPIRES));
            let expression = format!("ADD {count} {}", e.value(n(1)));
            let condition = format!("{end} > {}", e.value(n(nanos_bound(at))));
            let added = self
                .client
                .update_item()
                .table_name(self.users_table())
                .key(tenant::KEY, s(key.clone()))
                .update_expression(expression)
                .condition_expression(condition)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match added {
                Ok(out) => {
                    return window_from(&out.attributes.unwrap_or_default());
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(unavailable(e)),
            }
            // None is open: open one, unless another failure just did.
            let mut e = Expr::default();
            let (pk, end) = (e.name(tenant::KEY), e.name(tenant::EXPIRES));
            let condition = format!(
                "attribute_not_exists({pk}) OR {end} <= {}",
                e.value(n(nanos_bound(at)))
            );
            let opened = self
                .client
                .put_item()
                .table_name(self.users_table())
                .item(tenant::KEY, s(key.clone()))
                .item(FAILURES, n(1))
                .item(tenant::EXPIRES, n(nanos(ends)?))
                .item(tenant::TTL, ttl_at(ends))
                .condition_expression(condition)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .send()
                .await;
            match opened {
                Ok(_) => {
                    return Ok(FailureWindow {
                        count: 1,
                        ends_at: ends,
                    });
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(kept_changing("a sign-in failure count", "counting"))
    }

    async fn failures(
        &self,
        email: &Email,
        now: DateTime<Utc>,
    ) -> Result<Option<FailureWindow>, StoreError> {
        let Some(item) = self.tenants_item(failures_key(email), None).await? else {
            return Ok(None);
        };
        let window = window_from(&item)?;
        Ok((window.ends_at > now).then_some(window))
    }

    async fn clear_failures(&self, email: &Email) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(self.users_table())
            .key(tenant::KEY, s(failures_key(email)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
