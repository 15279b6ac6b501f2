//! [`TemplateStore`] on DynamoDB, in the tenants table (partition key `pk`, and the
//! `by_tenant` index on `gp`/`gs`, which projects every attribute). A template is a head
//! item, which knows its latest version and its name, a guard per live name, and an item per
//! version, never changed once written. The text is the tenant's own copy, stored plain.
//!
//! | item | `pk` | attributes | `by_tenant` (`gp`, `gs`) |
//! |---|---|---|---|
//! | a template's head | `tpl#<tenant>#<id>` | `t` tenant, `lv` its latest version, `nk` its name in lower case, `dl` when it was deleted (ns; absent while live) | `<tenant>#tpl`, id (only while live) |
//! | a live name's guard | `tplname#<tenant>#<sha-256 of the name in lower case, hex>` | `t` tenant, `ti` the template id | — |
//! | a version | `tpl#<tenant>#<id>#v<version, 10 digits>` | `t` tenant, `ti` id, `v` version, `n` name, `tx` text, `cg` category, `c` created (ns) | — |
//!
//! Template ids are ULIDs, so the index group in id order is oldest first. A name is guarded
//! by its hash, so a name of any length and script makes a key of one size. A deleted
//! template keeps its head (with `dl`, out of the index), so its id is never taken again
//! and its versions stay readable by number.
//!
//! Every change is one `TransactWriteItems` (with a `ClientRequestToken` per attempt, so an
//! SDK retry of a transaction that did commit is not refused):
//!
//! - **A new template** (version 1): the head, the name's guard and the version, each on
//!   condition `attribute_not_exists(pk)` (any taken: [`StoreError::AlreadyExists`]).
//! - **A later version** `n`: the head is read (strongly consistent: gone or deleted is
//!   [`StoreError::NotFound`], another latest version [`StoreError::AlreadyExists`]), then
//!   updated (`lv`, `nk`) on condition that it is live at `n - 1`, and the version put on
//!   condition `attribute_not_exists(pk)`; a new name (in lower case) also moves the guard:
//!   the old one deleted (on condition that it is absent or this template's), the new one
//!   put on condition `attribute_not_exists(pk)`. A refused condition reads the head again:
//!   deleted is [`StoreError::NotFound`]; live, another change came first or the name is
//!   taken: [`StoreError::AlreadyExists`].
//! - **A delete**: the head is read, then `dl` set and `gp`/`gs` removed on condition that
//!   it is live at the version read, and the name's guard deleted (on condition that it is
//!   absent or this template's).
//!
//! Transactions that meet another on one item (`TransactionConflict`) are tried again after
//! a jittered backoff, up to [`ROUNDS`] times.
//!
//! Reads: `get` of the latest version is a strongly consistent `GetItem` of the head, then
//! one of the version; of a given version, one `GetItem` (the key holds the tenant, so no
//! other tenant's version is ever found). `list` queries the index (eventually consistent:
//! a new template shows within about a second), then reads the heads and the versions the
//! index names in one `BatchGetItem` (strongly consistent), leaving out templates deleted
//! meanwhile and reading once more the latest version of those changed meanwhile; it reads
//! on until the page is full or the group ends.
//!
//! | call | requests | write units |
//! |---|---|---|
//! | `put`, version 1 | 1 `TransactWriteItems` | 2 × 3 (+ the version's size in KB) |
//! | `put`, version `n` | 1 `GetItem` + 1 `TransactWriteItems` | 2 × 2 (+ 2 × 2 for a new name) |
//! | `delete` | 1 `GetItem` + 1 `TransactWriteItems` | 2 × 2 |
//! | `get` | 2 `GetItem` (1 for a given version) | — |
//! | `list`, `k` templates | 1 `Query` + ⌈2`k`/100⌉ `BatchGetItem` | — |

use async_trait::async_trait;
use aws_sdk_dynamodb::types::TransactWriteItem;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::codec::{Item, corrupt, get_n, n, nanos, parse, req_n, req_s, s, tenant};
use super::reads::Order;
use super::txn::{self, ROUNDS, Refused, kept_changing, pause, put_new};
use super::{DynamoStore, Expr};
use crate::domain::{TemplateId, TemplateName, TemplateText, TemplateVersion, TenantId};
use crate::ports::templates::MAX_TEMPLATE_PAGE;
use crate::ports::{StoreError, TemplatePage, TemplateStore};

/// A head's latest version (N).
const LATEST: &str = "lv";
/// A head's name in lower case (S).
const NAME_KEY: &str = "nk";
/// When a template was deleted (N, nanoseconds); absent while it is live.
const DELETED: &str = "dl";
/// The template a guard or a version belongs to (S).
const TEMPLATE: &str = "ti";
/// A version's number (N).
const VERSION: &str = "v";
/// A version's text (S).
const TEXT: &str = "tx";
/// A version's category (S): `transactional` or `marketing`.
const CATEGORY: &str = "cg";

fn head_key(t: &TenantId, id: &str) -> String {
    format!("tpl#{t}#{id}")
}

fn version_key(t: &TenantId, id: &str, version: u32) -> String {
    format!("tpl#{t}#{id}#v{version:010}")
}

/// The guard of a name (in lower case, as [`TemplateName::key`] makes it).
fn name_guard_key(t: &TenantId, name_key: &str) -> String {
    format!(
        "tplname#{t}#{}",
        hex::encode(Sha256::digest(name_key.as_bytes()))
    )
}

fn templates_group(t: &TenantId) -> String {
    format!("{t}#tpl")
}

/// What a change of a template needs of its head.
struct Head {
    latest: u32,
    name_key: String,
    live: bool,
}

impl Head {
    fn read(item: &Item) -> Result<Head, StoreError> {
        Ok(Head {
            latest: req_n(item, LATEST)?,
            name_key: req_s(item, NAME_KEY)?.to_owned(),
            live: get_n::<i64>(item, DELETED)?.is_none(),
        })
    }
}

/// The version of an item (of `t`).
fn version_from(t: &TenantId, item: &Item) -> Result<TemplateVersion, StoreError> {
    let id: TemplateId = parse(req_s(item, TEMPLATE)?, "template id")?;
    let bad = |what: &str| corrupt(format!("template {id}: {what}"));
    Ok(TemplateVersion {
        tenant_id: t.clone(),
        version: req_n(item, VERSION)?,
        name: TemplateName::parse(req_s(item, tenant::NAME)?).map_err(|_| bad("name"))?,
        text: TemplateText::parse(req_s(item, TEXT)?).map_err(|_| bad("text"))?,
        category: parse(req_s(item, CATEGORY)?, "template category")?,
        created_at: DateTime::from_timestamp_nanos(req_n(item, tenant::CREATED)?),
        id,
    })
}

/// A put of the guard of `name_key` for template `id`, on condition that there is none.
fn put_guard(
    table: &str,
    t: &TenantId,
    name_key: &str,
    id: &str,
) -> Result<TransactWriteItem, StoreError> {
    put_new(
        table,
        Item::from([
            (tenant::KEY.to_owned(), s(name_guard_key(t, name_key))),
            (tenant::TENANT.to_owned(), s(t.as_str())),
            (TEMPLATE.to_owned(), s(id)),
        ]),
    )
}

/// A delete of the guard of `name_key`, on condition that it is absent or template `id`'s:
/// never another template's.
fn delete_guard(
    table: &str,
    t: &TenantId,
    name_key: &str,
    id: &str,
) -> Result<TransactWriteItem, StoreError> {
    let mut e = Expr::default();
    let condition = format!(
        "attribute_not_exists({}) OR {} = {}",
        e.name(tenant::KEY),
        e.name(TEMPLATE),
        e.value(s(id))
    );
    txn::delete(table, name_guard_key(t, name_key), Some(condition), &e)
}

/// The condition that a head exists, is live and is at version `latest`.
fn live_at(e: &mut Expr, latest: u32) -> String {
    format!(
        "attribute_exists({}) AND attribute_not_exists({}) AND {} = {}",
        e.name(tenant::KEY),
        e.name(DELETED),
        e.name(LATEST),
        e.value(n(latest))
    )
}

/// The item of version `v`.
fn version_item(v: &TemplateVersion) -> Result<Item, StoreError> {
    let (t, id) = (&v.tenant_id, v.id.as_str());
    Ok(Item::from([
        (tenant::KEY.to_owned(), s(version_key(t, id, v.version))),
        (tenant::TENANT.to_owned(), s(t.as_str())),
        (TEMPLATE.to_owned(), s(id)),
        (VERSION.to_owned(), n(v.version)),
        (tenant::NAME.to_owned(), s(v.name.as_str())),
        (TEXT.to_owned(), s(v.text.as_str())),
        (CATEGORY.to_owned(), s(v.category.as_str())),
        (tenant::CREATED.to_owned(), n(nanos(v.created_at)?)),
    ]))
}

impl DynamoStore {
    fn templates_table(&self) -> &str {
        &self.config.tenants_table
    }

    /// The items of a new template: its head, its name's guard and its first version.
    fn new_template(&self, v: &TemplateVersion) -> Result<Vec<TransactWriteItem>, StoreError> {
        let table = self.templates_table();
        let (t, id) = (&v.tenant_id, v.id.as_str());
        let name_key = v.name.key();
        let head = Item::from([
            (tenant::KEY.to_owned(), s(head_key(t, id))),
            (tenant::TENANT.to_owned(), s(t.as_str())),
            (LATEST.to_owned(), n(v.version)),
            (NAME_KEY.to_owned(), s(&name_key)),
            (tenant::GROUP.to_owned(), s(templates_group(t))),
            (tenant::GROUP_SORT.to_owned(), s(id)),
        ]);
        Ok(vec![
            put_new(table, head)?,
            put_guard(table, t, &name_key, id)?,
            put_new(table, version_item(v)?)?,
        ])
    }

    /// The items of version `v` over the head `stored` (at `v.version - 1`).
    fn changed_template(
        &self,
        v: &TemplateVersion,
        stored: &Head,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let table = self.templates_table();
        let (t, id) = (&v.tenant_id, v.id.as_str());
        let name_key = v.name.key();
        let mut e = Expr::default();
        let expression = format!(
            "SET {} = {}, {} = {}",
            e.name(LATEST),
            e.value(n(v.version)),
            e.name(NAME_KEY),
            e.value(s(&name_key)),
        );
        let condition = live_at(&mut e, stored.latest);
        let mut items = vec![
            txn::update(table, head_key(t, id), expression, condition, &e)?,
            put_new(table, version_item(v)?)?,
        ];
        if name_key != stored.name_key {
            items.push(delete_guard(table, t, &stored.name_key, id)?);
            items.push(put_guard(table, t, &name_key, id)?);
        }
        Ok(items)
    }

    /// The items of a template's delete: its head leaves the index, its name is freed.
    fn deleted_template(
        &self,
        t: &TenantId,
        id: &str,
        stored: &Head,
        at: DateTime<Utc>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let table = self.templates_table();
        let mut e = Expr::default();
        let expression = format!(
            "SET {} = {} REMOVE {}, {}",
            e.name(DELETED),
            e.value(n(nanos(at)?)),
            e.name(tenant::GROUP),
            e.name(tenant::GROUP_SORT),
        );
        let condition = live_at(&mut e, stored.latest);
        Ok(vec![
            txn::update(table, head_key(t, id), expression, condition, &e)?,
            delete_guard(table, t, &stored.name_key, id)?,
        ])
    }

    /// A template's head, strongly consistent, deleted or not.
    async fn template_head(&self, t: &TenantId, id: &str) -> Result<Option<Head>, StoreError> {
        let item = self
            .tenants_item(head_key(t, id), Some(&[LATEST, NAME_KEY, DELETED]))
            .await?;
        item.as_ref().map(Head::read).transpose()
    }

    /// The latest versions of the templates of `heads` (as the index has them), in their
    /// order, leaving out those deleted since.
    async fn latest_of(
        &self,
        t: &TenantId,
        heads: &[Item],
    ) -> Result<Vec<TemplateVersion>, StoreError> {
        let listed = heads
            .iter()
            .map(|h| Ok((req_s(h, tenant::GROUP_SORT)?, req_n::<u32>(h, LATEST)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        // The heads again (the index may lag), and the versions the index names.
        let keys = listed
            .iter()
            .flat_map(|(id, latest)| [head_key(t, id), version_key(t, id, *latest)])
            .collect();
        let mut found = self.tenants_items(keys, None).await?;
        let mut chosen = Vec::with_capacity(listed.len());
        for (id, _) in &listed {
            let Some(head) = found.get(&head_key(t, id)) else {
                continue;
            };
            let head = Head::read(head)?;
            if head.live {
                chosen.push(version_key(t, id, head.latest));
            }
        }
        // Changed since the index was read: its latest version is another.
        let missing: Vec<String> = chosen
            .iter()
            .filter(|key| !found.contains_key(*key))
            .cloned()
            .collect();
        if !missing.is_empty() {
            found.extend(self.tenants_items(missing, None).await?);
        }
        chosen
            .iter()
            .map(|key| {
                let item = found
                    .get(key)
                    .ok_or_else(|| corrupt(format!("template version {key} is missing")))?;
                version_from(t, item)
            })
            .collect()
    }
}

#[async_trait]
impl TemplateStore for DynamoStore {
    async fn put(&self, v: &TemplateVersion) -> Result<(), StoreError> {
        if v.version == 0 {
            return Err(corrupt("a template's versions are numbered from 1"));
        }
        let (t, id) = (&v.tenant_id, v.id.as_str());
        for round in 1..=ROUNDS {
            let items = if v.version == 1 {
                self.new_template(v)?
            } else {
                match self.template_head(t, id).await? {
                    Some(head) if head.live && head.latest == v.version - 1 => {
                        self.changed_template(v, &head)?
                    }
                    Some(head) if head.live => return Err(StoreError::AlreadyExists),
                    _ => return Err(StoreError::NotFound),
                }
            };
            match self.attempt_transaction(items).await? {
                Ok(()) => return Ok(()),
                // The id or the name is taken.
                Err(Refused::Condition) if v.version == 1 => {
                    return Err(StoreError::AlreadyExists);
                }
                // Changed or deleted since it was read, or the name is taken: the head read
                // again tells which.
                Err(Refused::Condition) => {
                    return match self.template_head(t, id).await? {
                        Some(head) if head.live => Err(StoreError::AlreadyExists),
                        _ => Err(StoreError::NotFound),
                    };
                }
                Err(Refused::Conflict) => pause(round).await,
            }
        }
        Err(kept_changing("a template", "storing"))
    }

    async fn get(
        &self,
        t: &TenantId,
        id: &TemplateId,
        version: Option<u32>,
    ) -> Result<Option<TemplateVersion>, StoreError> {
        let version = match version {
            Some(version) => version,
            None => match self.template_head(t, id.as_str()).await? {
                Some(head) if head.live => head.latest,
                _ => return Ok(None),
            },
        };
        self.tenants_item(version_key(t, id.as_str(), version), None)
            .await?
            .map(|item| version_from(t, &item))
            .transpose()
    }

    async fn list(
        &self,
        t: &TenantId,
        after: Option<&TemplateId>,
        limit: usize,
    ) -> Result<TemplatePage, StoreError> {
        let limit = limit.clamp(1, MAX_TEMPLATE_PAGE);
        let mut after = after.map(|a| a.as_str().to_owned());
        let mut templates = Vec::new();
        // Templates deleted since the index was read are left out: read on until the page
        // is full, or the group ends.
        while templates.len() < limit {
            let want = limit - templates.len();
            // The heads of the tenant's live templates, in id order.
            let heads = self
                .by_tenant_group(templates_group(t), Order::Ascending, after.as_deref(), want)
                .await?;
            let Some(last) = heads.last() else {
                break;
            };
            after = Some(req_s(last, tenant::GROUP_SORT)?.to_owned());
            templates.extend(self.latest_of(t, &heads).await?);
            if heads.len() < want {
                break;
            }
        }
        let next = (templates.len() == limit)
            .then(|| templates.last().map(|v| v.id.clone()))
            .flatten();
        Ok(TemplatePage { templates, next })
    }

    async fn delete(&self, t: &TenantId, id: &TemplateId) -> Result<bool, StoreError> {
        let now = Utc::now();
        for round in 1..=ROUNDS {
            let Some(head) = self
                .template_head(t, id.as_str())
                .await?
                .filter(|head| head.live)
            else {
                return Ok(false);
            };
            let items = self.deleted_template(t, id.as_str(), &head, now)?;
            match self.attempt_transaction(items).await? {
                Ok(()) => return Ok(true),
                // Changed or deleted since it was read: read again.
                Err(Refused::Condition) => {}
                Err(Refused::Conflict) => pause(round).await,
            }
        }
        Err(kept_changing("a template", "storing"))
    }
}
