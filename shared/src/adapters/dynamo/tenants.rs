//! [`TenantStore`] on DynamoDB, in the tenants table (partition key `pk` only):
//!
//! | item | `pk` | `by_tenant` index (`gp`, `gs`) |
//! |---|---|---|
//! | tenant | `tenant#<tenant id>` | — |
//! | API key | `apikey#<key id>` (found by the id the key carries) | `<tenant>#key`, key id |
//! | key from before key ids | `key#<sha-256 of the key>` | — |
//! | sender | `sender#<tenant>#<sender>` | `<tenant>#sender`, sender |
//! | audit entry | `audit#<tenant>#<entry id>` | `<tenant>#audit`, entry id (a ULID) |
//! | the tenant's limits (JSON) | `limits#<tenant>` | — |
//! | the tenant's data key, wrapped by KMS | `datakey#<tenant>` | — |
//! | a number's consent state, and its ledger entries (see `consent.rs`) | `consent#<tenant>#<tag>`, `consent#<tenant>#<tag>#<n>` | — |
//! | a contact, its number's guard, its places on lists, a list's registry entry (see `contacts.rs`) | `contact#<tenant>#<id>`, `contactnum#<tenant>#<tag>`, `member#<tenant>#<list>#<id>`, `list#<tenant>#<list>` | `<tenant>#contact`, id; —; `<tenant>#list#<list>`, id; `<tenant>#lists`, list |
//! | a template's head, its live name's guard, a version of it (see `templates.rs`) | `tpl#<tenant>#<id>`, `tplname#<tenant>#<sha-256 of the name in lower case>`, `tpl#<tenant>#<id>#v<version, 10 digits>` | `<tenant>#tpl`, id (while live); —; — |
//! | a console user, their address's guard, the tenant's count of active owners, a session, an address's failed sign-ins (see `users.rs`) | `user#<tenant>#<id>`, `useremail#<sha-256 of the email>`, `owners#<tenant>`, `session#<sha-256 of the token>`, `signin#<sha-256 of the email>` | `<tenant>#user`, id; —; —; —; — |
//!
//! Every administrative change is one `TransactWriteItems` with its audit entry. Key look-ups
//! (`api_key`) are strongly consistent `GetItem`s; listings (`list_keys`, `senders`,
//! `audit_log`) query the index and so are eventually consistent (a change shows within about
//! a second).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::codec::{Item, corrupt, get_n, get_s, n, nanos, parse, req_n, req_s, s, tenant};
use super::reads::Order;
use super::txn::{self, attempt_token, cancellation_codes};
use super::{DynamoStore, Expr, unavailable};
use crate::domain::{
    ApiKeyRecord, AuditEntry, KeyId, KeyName, Scopes, SenderId, SenderRecord, TenantId,
    TenantLimits,
};
use crate::ports::store::KeyEnd;
use crate::ports::{StoreError, Tenant, TenantStore};

fn tenant_key(id: &TenantId) -> String {
    format!("tenant#{id}")
}

fn legacy_key(hash: &str) -> String {
    format!("key#{hash}")
}

fn key_item_key(id: &KeyId) -> String {
    format!("apikey#{id}")
}

fn sender_key(tenant: &TenantId, sender: &SenderId) -> String {
    format!("sender#{tenant}#{}", sender.as_str())
}

fn limits_key(tenant: &TenantId) -> String {
    format!("limits#{tenant}")
}

fn group(tenant: &TenantId, kind: &str) -> String {
    format!("{tenant}#{kind}")
}

fn time(at: Option<DateTime<Utc>>) -> Result<Option<AttributeValue>, StoreError> {
    at.map(|at| nanos(at).map(n)).transpose()
}

fn key_item(key: &ApiKeyRecord) -> Result<Item, StoreError> {
    let Some(id) = key.id.as_ref() else {
        // A key from before key ids: found by its hash, with every scope.
        let mut item = Item::from([
            (tenant::KEY.to_owned(), s(legacy_key(&key.hash))),
            (tenant::TENANT.to_owned(), s(key.tenant_id.as_str())),
        ]);
        if let Some(value) = time(key.revoked_at)? {
            item.insert(tenant::REVOKED.to_owned(), value);
        }
        return Ok(item);
    };
    let mut item = Item::from([
        (tenant::KEY.to_owned(), s(key_item_key(id))),
        (tenant::TENANT.to_owned(), s(key.tenant_id.as_str())),
        (tenant::HASH.to_owned(), s(key.hash.clone())),
        (tenant::SCOPES.to_owned(), s(key.scopes.to_list())),
        (tenant::GROUP.to_owned(), s(group(&key.tenant_id, "key"))),
        (tenant::GROUP_SORT.to_owned(), s(id.as_str())),
    ]);
    if let Some(name) = &key.name {
        item.insert(tenant::NAME.to_owned(), s(name.as_str()));
    }
    for (attr, at) in [
        (tenant::CREATED, key.created_at),
        (tenant::EXPIRES, key.expires_at),
        (tenant::LAST_USED, key.last_used_at),
        (tenant::REVOKED, key.revoked_at),
    ] {
        if let Some(value) = time(at)? {
            item.insert(attr.to_owned(), value);
        }
    }
    Ok(item)
}

fn key_from(item: &Item) -> Result<ApiKeyRecord, StoreError> {
    let at =
        |attr| Ok::<_, StoreError>(get_n::<i64>(item, attr)?.map(DateTime::from_timestamp_nanos));
    let legacy = req_s(item, tenant::KEY)?.starts_with("key#");
    Ok(ApiKeyRecord {
        id: get_s(item, tenant::GROUP_SORT)?
            .map(|id| parse::<KeyId>(id, "key id"))
            .transpose()?,
        tenant_id: parse(req_s(item, tenant::TENANT)?, "tenant id")?,
        hash: match legacy {
            true => req_s(item, tenant::KEY)?["key#".len()..].to_owned(),
            false => req_s(item, tenant::HASH)?.to_owned(),
        },
        name: get_s(item, tenant::NAME)?
            .filter(|_| !legacy)
            .map(|name| KeyName::parse(name).map_err(|_| corrupt("key name")))
            .transpose()?,
        scopes: match get_s(item, tenant::SCOPES)? {
            Some(list) => Scopes::parse(list).map_err(|_| corrupt("key scopes"))?,
            None => Scopes::ADMIN,
        },
        created_at: at(tenant::CREATED)?.filter(|_| !legacy),
        expires_at: at(tenant::EXPIRES)?,
        last_used_at: at(tenant::LAST_USED)?,
        revoked_at: at(tenant::REVOKED)?,
    })
}

fn audit_item(entry: &AuditEntry) -> Result<Item, StoreError> {
    let json = serde_json::to_string(entry).map_err(|e| corrupt(format!("audit entry: {e}")))?;
    Ok(Item::from([
        (
            tenant::KEY.to_owned(),
            s(format!("audit#{}#{}", entry.tenant_id, entry.id)),
        ),
        (tenant::TENANT.to_owned(), s(entry.tenant_id.as_str())),
        (tenant::ENTRY.to_owned(), s(json)),
        (
            tenant::GROUP.to_owned(),
            s(group(&entry.tenant_id, "audit")),
        ),
        (tenant::GROUP_SORT.to_owned(), s(entry.id.clone())),
    ]))
}

fn sender_item(record: &SenderRecord) -> Result<Item, StoreError> {
    Ok(Item::from([
        (
            tenant::KEY.to_owned(),
            s(sender_key(&record.tenant_id, &record.sender)),
        ),
        (tenant::TENANT.to_owned(), s(record.tenant_id.as_str())),
        (tenant::SENDER.to_owned(), s(record.sender.as_str())),
        (tenant::NETWORKS.to_owned(), s(record.networks_list())),
        (tenant::CREATED.to_owned(), n(nanos(record.created_at)?)),
        (tenant::UPDATED.to_owned(), n(nanos(record.updated_at)?)),
        (
            tenant::GROUP.to_owned(),
            s(group(&record.tenant_id, "sender")),
        ),
        (tenant::GROUP_SORT.to_owned(), s(record.sender.as_str())),
    ]))
}

fn sender_from(item: &Item) -> Result<SenderRecord, StoreError> {
    let sender = req_s(item, tenant::SENDER)?;
    Ok(SenderRecord {
        tenant_id: parse(req_s(item, tenant::TENANT)?, "tenant id")?,
        sender: SenderId::parse(sender).map_err(|_| corrupt(format!("sender {sender:?}")))?,
        networks: SenderRecord::parse_networks(req_s(item, tenant::NETWORKS)?).map_err(corrupt)?,
        created_at: DateTime::from_timestamp_nanos(req_n(item, tenant::CREATED)?),
        updated_at: DateTime::from_timestamp_nanos(req_n(item, tenant::UPDATED)?),
    })
}

impl DynamoStore {
    fn tenants(&self) -> &str {
        &self.config.tenants_table
    }

    /// A put of an item that must not exist yet.
    fn new_item(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        txn::put_new(self.tenants(), item)
    }

    /// A check that the tenant exists.
    pub(super) fn tenant_exists(&self, t: &TenantId) -> Result<TransactWriteItem, StoreError> {
        let mut e = Expr::default();
        let exists = format!("attribute_exists({})", e.name(tenant::KEY));
        let check = ConditionCheck::builder()
            .table_name(self.tenants())
            .key(tenant::KEY, s(tenant_key(t)))
            .condition_expression(exists)
            .set_expression_attribute_names(e.names())
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Runs a transaction; `Err(index)` names the first item whose condition failed.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), usize>, StoreError> {
        match self.send_transaction(items, attempt_token()).await {
            Ok(()) => Ok(Ok(())),
            Err(e) => match cancellation_codes(&e).and_then(|codes| {
                codes
                    .iter()
                    .position(|c| *c == Some("ConditionalCheckFailed"))
            }) {
                Some(index) => Ok(Err(index)),
                None => Err(unavailable(e)),
            },
        }
    }
}

#[async_trait]
impl TenantStore for DynamoStore {
    async fn create_tenant(
        &self,
        t: &Tenant,
        first_key: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let tenant_item = Item::from([
            (tenant::KEY.to_owned(), s(tenant_key(&t.id))),
            (tenant::NAME.to_owned(), s(t.name.clone())),
            (tenant::CREATED.to_owned(), n(nanos(t.created_at)?)),
        ]);
        let items = vec![
            self.new_item(tenant_item)?,
            self.new_item(key_item(first_key)?)?,
            self.new_item(audit_item(audit)?)?,
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::AlreadyExists),
        }
    }

    async fn api_key(
        &self,
        id: Option<&KeyId>,
        hash: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let pk = match id {
            Some(id) => key_item_key(id),
            None => legacy_key(hash),
        };
        self.tenants_item(pk, None)
            .await?
            .as_ref()
            .map(key_from)
            .transpose()
    }

    async fn add_key(&self, key: &ApiKeyRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        let items = vec![
            self.tenant_exists(&key.tenant_id)?,
            self.new_item(key_item(key)?)?,
            self.new_item(audit_item(audit)?)?,
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(0) => Err(StoreError::NotFound),
            Err(_) => Err(StoreError::AlreadyExists),
        }
    }

    async fn record_audit(&self, audit: &AuditEntry) -> Result<(), StoreError> {
        let items = vec![
            self.tenant_exists(&audit.tenant_id)?,
            self.new_item(audit_item(audit)?)?,
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(0) => Err(StoreError::NotFound),
            Err(_) => Err(StoreError::AlreadyExists),
        }
    }

    async fn list_keys(&self, t: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let items = self
            .by_tenant_group(group(t, "key"), Order::Ascending, None, 10_000)
            .await?;
        items.iter().map(key_from).collect()
    }

    async fn end_key(
        &self,
        t: &TenantId,
        id: &KeyId,
        end: KeyEnd,
        audit: &AuditEntry,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let Some(item) = self.tenants_item(key_item_key(id), None).await? else {
            return Ok(None);
        };
        let mut key = key_from(&item)?;
        if &key.tenant_id != t || key.revoked_at.is_some() {
            return Ok(None);
        }
        let mut e = Expr::default();
        let (tenant_attr, revoked) = (e.name(tenant::TENANT), e.name(tenant::REVOKED));
        let condition = format!(
            "{tenant_attr} = {} AND attribute_not_exists({revoked})",
            e.value(s(t.as_str()))
        );
        let (update, new) = match end {
            KeyEnd::Revoke(at) => {
                key.revoked_at = Some(at);
                (format!("SET {revoked} = {}", e.value(n(nanos(at)?))), None)
            }
            KeyEnd::Rotate { new, old_until } => {
                let until = key.expires_at.map_or(old_until, |x| x.min(old_until));
                key.expires_at = Some(until);
                let expires = e.name(tenant::EXPIRES);
                (
                    format!("SET {expires} = {}", e.value(n(nanos(until)?))),
                    Some(new),
                )
            }
        };
        let mut items = vec![
            txn::update(self.tenants(), key_item_key(id), update, condition, &e)?,
            self.new_item(audit_item(audit)?)?,
        ];
        if let Some(new) = new {
            items.push(self.new_item(key_item(&new)?)?);
        }
        match self.transact(items).await? {
            Ok(()) => Ok(Some(key)),
            Err(0) => Ok(None),
            Err(_) => Err(StoreError::AlreadyExists),
        }
    }

    async fn revoke_legacy_key(
        &self,
        hash: &str,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut e = Expr::default();
        let (pk, revoked) = (e.name(tenant::KEY), e.name(tenant::REVOKED));
        let at = e.value(n(nanos(at)?));
        let update = txn::update(
            self.tenants(),
            legacy_key(hash),
            format!("SET {revoked} = {at}"),
            format!("attribute_exists({pk}) AND attribute_not_exists({revoked})"),
            &e,
        )?;
        let items = vec![update, self.new_item(audit_item(audit)?)?];
        match self.transact(items).await? {
            Ok(()) => Ok(true),
            Err(0) => Ok(false),
            Err(_) => Err(StoreError::AlreadyExists),
        }
    }

    async fn touch_key(
        &self,
        t: &TenantId,
        id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut e = Expr::default();
        let (tenant_attr, used) = (e.name(tenant::TENANT), e.name(tenant::LAST_USED));
        let (owner, at) = (e.value(s(t.as_str())), e.value(n(nanos(at)?)));
        let result = self
            .client
            .update_item()
            .table_name(self.tenants())
            .key(tenant::KEY, s(key_item_key(id)))
            .update_expression(format!("SET {used} = {at}"))
            .condition_expression(format!(
                "{tenant_attr} = {owner} AND (attribute_not_exists({used}) OR {used} < {at})"
            ))
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn audit_log(
        &self,
        t: &TenantId,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let items = self
            .by_tenant_group(group(t, "audit"), Order::Descending, before, limit)
            .await?;
        items
            .iter()
            .map(|item| {
                serde_json::from_str(req_s(item, tenant::ENTRY)?)
                    .map_err(|e| corrupt(format!("audit entry: {e}")))
            })
            .collect()
    }

    async fn senders(&self, t: &TenantId) -> Result<Vec<SenderRecord>, StoreError> {
        let items = self
            .by_tenant_group(group(t, "sender"), Order::Ascending, None, 10_000)
            .await?;
        items.iter().map(sender_from).collect()
    }

    async fn put_sender(
        &self,
        record: &SenderRecord,
        new: bool,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let items = if new {
            vec![
                self.tenant_exists(&record.tenant_id)?,
                self.new_item(sender_item(record)?)?,
                self.new_item(audit_item(audit)?)?,
            ]
        } else {
            let mut e = Expr::default();
            let (pk, networks, updated) = (
                e.name(tenant::KEY),
                e.name(tenant::NETWORKS),
                e.name(tenant::UPDATED),
            );
            let expression = format!(
                "SET {networks} = {}, {updated} = {}",
                e.value(s(record.networks_list())),
                e.value(n(nanos(record.updated_at)?))
            );
            let update = txn::update(
                self.tenants(),
                sender_key(&record.tenant_id, &record.sender),
                expression,
                format!("attribute_exists({pk})"),
                &e,
            )?;
            vec![update, self.new_item(audit_item(audit)?)?]
        };
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(0) => Err(StoreError::NotFound),
            Err(_) => Err(StoreError::AlreadyExists),
        }
    }

    async fn remove_sender(
        &self,
        t: &TenantId,
        sender: &SenderId,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut e = Expr::default();
        let exists = format!("attribute_exists({})", e.name(tenant::KEY));
        let delete = txn::delete(self.tenants(), sender_key(t, sender), Some(exists), &e)?;
        let items = vec![delete, self.new_item(audit_item(audit)?)?];
        match self.transact(items).await? {
            Ok(()) => Ok(true),
            Err(0) => Ok(false),
            Err(_) => Err(StoreError::AlreadyExists),
        }
    }

    async fn limits(&self, t: &TenantId) -> Result<Option<TenantLimits>, StoreError> {
        let Some(item) = self.tenants_item(limits_key(t), None).await? else {
            return Ok(None);
        };
        let json = req_s(&item, tenant::LIMITS)?;
        serde_json::from_str(json)
            .map(Some)
            .map_err(|e| corrupt(format!("tenant limits: {e}")))
    }

    async fn retention_days(&self) -> Result<Vec<(TenantId, u32)>, StoreError> {
        // Messages carry their retention in their TTL, set when stored.
        Ok(Vec::new())
    }

    async fn erase_tenant(
        &self,
        t: &TenantId,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let had_key = matches!(
            self.tenants_item(super::keys::data_key_key(t), None).await?,
            Some(item) if item.contains_key(tenant::WRAPPED)
        );
        // The wrapped key is replaced by a tombstone: what was sealed under it is unreadable
        // from now on, in the table, its backups and its streams alike.
        let tombstone = Item::from([
            (tenant::KEY.to_owned(), s(super::keys::data_key_key(t))),
            (tenant::TENANT.to_owned(), s(t.as_str())),
            (tenant::ERASED.to_owned(), n(nanos(at)?)),
        ]);
        let items = vec![
            self.tenant_exists(t)?,
            txn::put(self.tenants(), tombstone)?,
            self.new_item(audit_item(audit)?)?,
        ];
        match self.transact(items).await? {
            Ok(()) => {}
            Err(0) => return Err(StoreError::NotFound),
            Err(_) => return Err(StoreError::AlreadyExists),
        }
        self.vault.forget(t);
        // Then its API keys, each revoked unless it was already.
        for key in self.list_keys(t).await? {
            let Some(id) = key.id.as_ref().filter(|_| key.revoked_at.is_none()) else {
                continue;
            };
            let mut e = Expr::default();
            let update = format!(
                "SET {} = if_not_exists({}, {})",
                e.name(tenant::REVOKED),
                e.name(tenant::REVOKED),
                e.value(n(nanos(at)?))
            );
            self.client
                .update_item()
                .table_name(self.tenants())
                .key(tenant::KEY, s(key_item_key(id)))
                .update_expression(update)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(had_key)
    }

    async fn put_limits(
        &self,
        t: &TenantId,
        limits: &TenantLimits,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(limits).map_err(|e| corrupt(format!("tenant limits: {e}")))?;
        let limits_item = Item::from([
            (tenant::KEY.to_owned(), s(limits_key(t))),
            (tenant::TENANT.to_owned(), s(t.as_str())),
            (tenant::LIMITS.to_owned(), s(json)),
        ]);
        let items = vec![
            self.tenant_exists(t)?,
            txn::put(self.tenants(), limits_item)?,
            self.new_item(audit_item(audit)?)?,
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(0) => Err(StoreError::NotFound),
            Err(_) => Err(StoreError::AlreadyExists),
        }
    }
}
