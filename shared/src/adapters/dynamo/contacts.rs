//! [`ContactStore`] on DynamoDB, in the tenants table (partition key `pk`, and the
//! `by_tenant` index on `gp`/`gs`, which projects every attribute): an address book is
//! durable, like the tenant's other records. A contact's number, name and attributes are
//! sealed under the tenant's data key; its number is otherwise only its keyed tag (the same
//! tag the consent ledger uses). List names are the tenant's own labels and stay plain.
//!
//! | item | `pk` | attributes | `by_tenant` (`gp`, `gs`) |
//! |---|---|---|---|
//! | a contact | `contact#<tenant>#<id>` | `t` tenant, `sl` number, name and attributes, sealed (B), `nt` the number's tag (B), `ls` its lists (SS, absent when none), `v` version, `c`/`u` created/updated (ns) | `<tenant>#contact`, id |
//! | a number's guard | `contactnum#<tenant>#<tag>` (tag in lowercase hex) | `t` tenant, `ci` the contact id | — |
//! | a place on a list | `member#<tenant>#<list>#<id>` | `t` tenant | `<tenant>#list#<list>`, id |
//! | a list's registry entry | `list#<tenant>#<list>` | `t` tenant (no count; put before the list's first place, never deleted: kept once emptied) | `<tenant>#lists`, list |
//!
//! Contact ids are ULIDs, so an index group in id order is oldest first; list names cannot
//! hold `#`, so no key is ambiguous.
//!
//! Every change is one `TransactWriteItems` (with a `ClientRequestToken` per attempt, so an
//! SDK retry of a transaction that did commit is not refused), atomic over every item it
//! touches, and it touches only the contact's own items:
//!
//! - **A new contact** (version 1): the contact and its guard, each on condition
//!   `attribute_not_exists(pk)` (either taken: [`StoreError::AlreadyExists`]), and a place
//!   on each of its lists. At most 2 + 20 items.
//! - **A later version**: the stored contact is read (strongly consistent: gone is
//!   [`StoreError::NotFound`]; another version or another number is
//!   [`StoreError::AlreadyExists`]), then updated on condition `v` = the version read, which
//!   also keeps the lists read current; the places on lists it left are deleted and those on
//!   lists it joined put. At most 1 + 40 items. A refused condition is read again to tell the
//!   two answers apart.
//! - **A delete**: the contact (on condition `v` = the version read), its guard and its
//!   places on lists. Needs no data key: the guard is found by the stored tag.
//!
//! A list's registry entry is no part of any transaction. Before a transaction puts a place
//! on a list, the list's entry is put by a plain, unconditional `PutItem` (always the same
//! item, so putting it again changes nothing), unless this process has put it already (a
//! process-wide cache of up to [`MAX_REGISTERED`] lists, emptied when full). Put first, an
//! entry is there whenever a place is; a transaction that then fails leaves an entry without
//! places, which `lists` leaves out. Nothing deletes an entry (not even erasing the tenant),
//! so the cache is never stale.
//!
//! Transactions that touch one item at once conflict (`TransactionConflict`): those are
//! tried again after a jittered backoff, up to [`ROUNDS`] times. Only changes of one contact
//! (or of two contacts with one number) share items, so changes of different contacts never
//! conflict, even on one list: an import of a million contacts into one list runs as many
//! writers in parallel as the table takes writes. What one list still shares is its index
//! group `<tenant>#list#<list>`, and with it one index partition's write rate (about 1,000
//! places a second). The price is paid by `lists`, which has no count to read: it asks every
//! list the tenant ever registered for one place, and a list emptied keeps its entry, and
//! that one query, for good (deleting the entry with the last place would need that count,
//! written by every change, again).
//!
//! Reads: `get` is a strongly consistent `GetItem`; `find` a `BatchGetItem` of the guards,
//! then one of their contacts (both strongly consistent). `list` and `lists` query the
//! index, so they are eventually consistent (a change shows within about a second): `list`
//! without a list reads the contacts from the index itself; with one, it reads the places
//! on that list from the index and then their contacts (strongly consistent), leaving out
//! those deleted meanwhile or no longer on it, and reads on until the page is full or the
//! list ends. `lists` reads the registry entries, then one place of each (a `Query` with
//! `Limit` 1, up to [`CONCURRENCY`] at once), and keeps, in name order, those that have one.
//!
//! | call | requests | write units |
//! |---|---|---|
//! | `put`, new contact on `L` lists | 1 `TransactWriteItems` (+ 1 `PutItem` per list this process has not registered) | 2 × (2 + `L`) (+ 1 per `PutItem`) |
//! | `put`, later version, `k` lists joined or left | 1 `GetItem` + 1 `TransactWriteItems` (+ 1 `PutItem` per joined list this process has not registered) | 2 × (1 + `k`) (+ 1 per `PutItem`) |
//! | `delete`, contact on `L` lists | 1 `GetItem` + 1 `TransactWriteItems` | 2 × (2 + `L`) |
//! | `get` / `find` | 1 `GetItem` / 2 `BatchGetItem` per 100 numbers | — |
//! | `list` | 1 `Query` per page (+ 1 `BatchGetItem` for a list) | — |
//! | `lists`, `R` lists registered | 1 `Query` + `R` `Query` (`Limit` 1) | — |

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use chrono::DateTime;
use futures::{StreamExt, TryStreamExt, stream};

use super::codec::{Item, corrupt, n, nanos, parse, req_n, req_s, s, tenant};
use super::reads::Order;
use super::txn::{self, ROUNDS, Refused, kept_changing, pause};
use super::{CONCURRENCY, DynamoStore, Expr, MAX_TRANSACTION_ITEMS, unavailable};
use crate::domain::contact::MAX_LISTS;
use crate::domain::sealing::NUMBER_TAG_BYTES;
use crate::domain::{Contact, ContactId, DataKey, ListName, PhoneNumber, TenantId};
use crate::ports::contacts::MAX_CONTACT_PAGE;
use crate::ports::{ContactPage, ContactQuery, ContactStore, StoreError};

/// The number, name and attributes, sealed (B).
const SEALED: &str = "sl";
/// The number's tag (B).
const TAG: &str = "nt";
/// The lists a contact is on (SS; absent when none).
const LISTS: &str = "ls";
const VERSION: &str = "v";
/// The contact a number's guard points at.
const CONTACT: &str = "ci";

/// How many lists' registry entries [`REGISTERED`] remembers before it is emptied.
const MAX_REGISTERED: usize = 10_000;

/// The registry entries this process has put, as (table, `pk`): put once, they stay.
static REGISTERED: LazyLock<Mutex<HashSet<(String, String)>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

type Tag = [u8; NUMBER_TAG_BYTES];

fn contact_key(t: &TenantId, id: &str) -> String {
    format!("contact#{t}#{id}")
}

fn number_key(t: &TenantId, tag: &[u8]) -> String {
    format!("contactnum#{t}#{}", hex::encode(tag))
}

fn member_key(t: &TenantId, list: &str, id: &str) -> String {
    format!("member#{t}#{list}#{id}")
}

fn list_key(t: &TenantId, list: &str) -> String {
    format!("list#{t}#{list}")
}

fn contacts_group(t: &TenantId) -> String {
    format!("{t}#contact")
}

fn members_group(t: &TenantId, list: &str) -> String {
    format!("{t}#list#{list}")
}

fn lists_group(t: &TenantId) -> String {
    format!("{t}#lists")
}

/// A contact's lists as stored.
fn lists_of(item: &Item) -> Result<BTreeSet<String>, StoreError> {
    match item.get(LISTS) {
        None | Some(AttributeValue::Null(_)) => Ok(BTreeSet::new()),
        Some(AttributeValue::Ss(set)) => Ok(set.iter().cloned().collect()),
        Some(_) => Err(corrupt("a contact's lists are not a string set")),
    }
}

fn binary<'a>(item: &'a Item, name: &str) -> Result<&'a [u8], StoreError> {
    match item.get(name) {
        Some(AttributeValue::B(b)) => Ok(b.as_ref()),
        Some(_) => Err(corrupt(format!("attribute {name} is not binary"))),
        None => Err(corrupt(format!("attribute {name} is missing"))),
    }
}

/// What a change of a contact needs of the stored one.
struct Stored {
    version: u32,
    tag: Vec<u8>,
    lists: BTreeSet<String>,
}

impl Stored {
    fn read(item: &Item) -> Result<Stored, StoreError> {
        Ok(Stored {
            version: req_n(item, VERSION)?,
            tag: binary(item, TAG)?.to_vec(),
            lists: lists_of(item)?,
        })
    }
}

/// The contact of an item, opened with its tenant's `key`.
fn contact_from(key: &DataKey, t: &TenantId, item: &Item) -> Result<Contact, StoreError> {
    let id: ContactId = parse(req_s(item, tenant::GROUP_SORT)?, "contact id")?;
    let (phone, details) = key
        .open_contact(t, &id, binary(item, SEALED)?)
        .map_err(|e| corrupt(format!("contact {id}: {e}")))?;
    let lists = lists_of(item)?
        .iter()
        .map(|l| ListName::parse(l).map_err(|_| corrupt(format!("contact {id}: list {l:?}"))))
        .collect::<Result<_, _>>()?;
    Ok(Contact {
        id,
        tenant_id: t.clone(),
        phone,
        details,
        lists,
        created_at: DateTime::from_timestamp_nanos(req_n(item, tenant::CREATED)?),
        updated_at: DateTime::from_timestamp_nanos(req_n(item, tenant::UPDATED)?),
        version: req_n(item, VERSION)?,
    })
}

/// A delete of the item at `pk`; with a version, on condition that it is that one.
fn delete(table: &str, pk: String, version: Option<u32>) -> Result<TransactWriteItem, StoreError> {
    let mut e = Expr::default();
    let condition = version.map(|v| format!("{} = {}", e.name(VERSION), e.value(n(v))));
    txn::delete(table, pk, condition, &e)
}

/// Whether this process has put the registry entry at `pk` of `table`.
fn registered(table: &str, pk: &str) -> bool {
    let known = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
    known.contains(&(table.to_owned(), pk.to_owned()))
}

/// Remembers that the registry entry at `pk` of `table` was put.
fn remember_registered(table: &str, pk: String) {
    let mut known = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
    if known.len() >= MAX_REGISTERED {
        known.clear();
    }
    known.insert((table.to_owned(), pk));
}

/// A list's registry entry: always the same item, so putting it again changes nothing.
fn list_item(t: &TenantId, list: &str) -> Item {
    Item::from([
        (tenant::KEY.to_owned(), s(list_key(t, list))),
        (tenant::TENANT.to_owned(), s(t.as_str())),
        (tenant::GROUP.to_owned(), s(lists_group(t))),
        (tenant::GROUP_SORT.to_owned(), s(list)),
    ])
}

/// A contact's place on a list.
fn member_item(t: &TenantId, list: &str, id: &str) -> Item {
    Item::from([
        (tenant::KEY.to_owned(), s(member_key(t, list, id))),
        (tenant::TENANT.to_owned(), s(t.as_str())),
        (tenant::GROUP.to_owned(), s(members_group(t, list))),
        (tenant::GROUP_SORT.to_owned(), s(id)),
    ])
}

/// A contact as sealed for the store.
struct Sealed {
    tag: Tag,
    sealed: Vec<u8>,
    lists: BTreeSet<String>,
}

impl DynamoStore {
    fn contacts_table(&self) -> &str {
        &self.config.tenants_table
    }

    /// The items of a new contact.
    fn new_contact(
        &self,
        c: &Contact,
        sealed: &Sealed,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let table = self.contacts_table();
        let (t, id) = (&c.tenant_id, c.id.to_string());
        let mut contact = Item::from([
            (tenant::KEY.to_owned(), s(contact_key(t, &id))),
            (tenant::TENANT.to_owned(), s(t.as_str())),
            (
                SEALED.to_owned(),
                AttributeValue::B(Blob::new(sealed.sealed.clone())),
            ),
            (
                TAG.to_owned(),
                AttributeValue::B(Blob::new(sealed.tag.to_vec())),
            ),
            (VERSION.to_owned(), n(c.version)),
            (tenant::CREATED.to_owned(), n(nanos(c.created_at)?)),
            (tenant::UPDATED.to_owned(), n(nanos(c.updated_at)?)),
            (tenant::GROUP.to_owned(), s(contacts_group(t))),
            (tenant::GROUP_SORT.to_owned(), s(&id)),
        ]);
        if !sealed.lists.is_empty() {
            contact.insert(
                LISTS.to_owned(),
                AttributeValue::Ss(sealed.lists.iter().cloned().collect()),
            );
        }
        let guard = Item::from([
            (tenant::KEY.to_owned(), s(number_key(t, &sealed.tag))),
            (tenant::TENANT.to_owned(), s(t.as_str())),
            (CONTACT.to_owned(), s(&id)),
        ]);
        let mut items = vec![txn::put_new(table, contact)?, txn::put_new(table, guard)?];
        for list in &sealed.lists {
            items.push(txn::put(table, member_item(t, list, &id))?);
        }
        Ok(items)
    }

    /// The items of a contact's change over `stored`.
    fn changed_contact(
        &self,
        c: &Contact,
        sealed: &Sealed,
        stored: &Stored,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let table = self.contacts_table();
        let (t, id) = (&c.tenant_id, c.id.to_string());
        let mut e = Expr::default();
        let mut expression = format!(
            "SET {} = {}, {} = {}, {} = {}",
            e.name(SEALED),
            e.value(AttributeValue::B(Blob::new(sealed.sealed.clone()))),
            e.name(tenant::UPDATED),
            e.value(n(nanos(c.updated_at)?)),
            e.name(VERSION),
            e.value(n(c.version)),
        );
        if sealed.lists.is_empty() {
            expression.push_str(&format!(" REMOVE {}", e.name(LISTS)));
        } else {
            let lists = AttributeValue::Ss(sealed.lists.iter().cloned().collect());
            expression.push_str(&format!(", {} = {}", e.name(LISTS), e.value(lists)));
        }
        let condition = format!("{} = {}", e.name(VERSION), e.value(n(stored.version)));
        let contact = txn::update(table, contact_key(t, &id), expression, condition, &e)?;
        let mut items = vec![contact];
        for left in stored.lists.difference(&sealed.lists) {
            items.push(delete(table, member_key(t, left, &id), None)?);
        }
        for joined in sealed.lists.difference(&stored.lists) {
            items.push(txn::put(table, member_item(t, joined, &id))?);
        }
        Ok(items)
    }

    /// The items of a contact's delete.
    fn deleted_contact(
        &self,
        t: &TenantId,
        id: &str,
        stored: &Stored,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let table = self.contacts_table();
        let mut items = vec![
            delete(table, contact_key(t, id), Some(stored.version))?,
            delete(table, number_key(t, &stored.tag), None)?,
        ];
        for list in &stored.lists {
            items.push(delete(table, member_key(t, list, id), None)?);
        }
        Ok(items)
    }

    /// Puts the registry entries of `lists` (of `t`) this process has not put yet, with
    /// plain `PutItem`s outside any transaction, up to [`CONCURRENCY`] at once.
    async fn register_lists<'a>(
        &self,
        t: &TenantId,
        lists: impl Iterator<Item = &'a String>,
    ) -> Result<(), StoreError> {
        let table = self.contacts_table();
        let missing: Vec<String> = lists
            .filter(|list| !registered(table, &list_key(t, list)))
            .cloned()
            .collect();
        stream::iter(missing)
            .map(|list| self.register_list(t, list))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await
    }

    /// Puts the registry entry of `list` (of `t`), and remembers it.
    async fn register_list(&self, t: &TenantId, list: String) -> Result<(), StoreError> {
        let table = self.contacts_table();
        self.client
            .put_item()
            .table_name(table)
            .set_item(Some(list_item(t, &list)))
            .send()
            .await
            .map_err(unavailable)?;
        remember_registered(table, list_key(t, &list));
        Ok(())
    }

    /// Runs one attempt of a contact's change, which must fit in one transaction.
    async fn contact_transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Refused>, StoreError> {
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(corrupt(format!(
                "a contact's change of {} items is more than one transaction holds",
                items.len()
            )));
        }
        self.attempt_transaction(items).await
    }

    /// A contact as stored, strongly consistent: what its change needs.
    async fn stored_contact(&self, t: &TenantId, id: &str) -> Result<Option<Stored>, StoreError> {
        let item = self
            .tenants_item(contact_key(t, id), Some(&[VERSION, TAG, LISTS]))
            .await?;
        item.as_ref().map(Stored::read).transpose()
    }

    /// The contacts of `items` (of `t`), in their order.
    async fn open_contacts(
        &self,
        t: &TenantId,
        items: &[Item],
    ) -> Result<Vec<Contact>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.vault.opening_key(t).await?;
        items
            .iter()
            .map(|item| contact_from(&key, t, item))
            .collect()
    }
}

#[async_trait]
impl ContactStore for DynamoStore {
    async fn find(
        &self,
        t: &TenantId,
        phones: &[&PhoneNumber],
    ) -> Result<Vec<Option<Contact>>, StoreError> {
        if phones.is_empty() {
            return Ok(Vec::new());
        }
        // No data key yet: no contact was stored (and reading makes none).
        let Some(key) = self.vault.held_key(t).await? else {
            return Ok(vec![None; phones.len()]);
        };
        let guards: Vec<String> = phones
            .iter()
            .map(|phone| number_key(t, &key.number_tag(phone)))
            .collect();
        let found = self.tenants_items(guards.clone(), Some(&[CONTACT])).await?;
        let ids: HashMap<&str, String> = found
            .iter()
            .map(|(guard, item)| Ok((guard.as_str(), contact_key(t, req_s(item, CONTACT)?))))
            .collect::<Result<_, StoreError>>()?;
        let contacts = self
            .tenants_items(ids.values().cloned().collect(), None)
            .await?;
        guards
            .iter()
            .map(|guard| {
                // A contact deleted between the two reads is none.
                ids.get(guard.as_str())
                    .and_then(|pk| contacts.get(pk))
                    .map(|item| contact_from(&key, t, item))
                    .transpose()
            })
            .collect()
    }

    async fn get(&self, t: &TenantId, id: &ContactId) -> Result<Option<Contact>, StoreError> {
        let item = self.tenants_item(contact_key(t, id.as_str()), None).await?;
        let items: Vec<Item> = item.into_iter().collect();
        Ok(self.open_contacts(t, &items).await?.pop())
    }

    async fn put(&self, c: &Contact) -> Result<(), StoreError> {
        if c.lists.len() > MAX_LISTS {
            return Err(corrupt(format!(
                "a contact is on at most {MAX_LISTS} lists"
            )));
        }
        let key = self.vault.sealing_key(&c.tenant_id).await?;
        let sealed = Sealed {
            tag: key.number_tag(&c.phone),
            sealed: key.seal_contact(&c.tenant_id, &c.id, &c.phone, &c.details),
            lists: c.lists.iter().map(|l| l.as_str().to_owned()).collect(),
        };
        let id = c.id.to_string();
        for round in 1..=ROUNDS {
            // The registry entries of the lists it joins are put first: an entry is there
            // whenever a place on its list is.
            let items = if c.version <= 1 {
                self.register_lists(&c.tenant_id, sealed.lists.iter())
                    .await?;
                self.new_contact(c, &sealed)?
            } else {
                let Some(stored) = self.stored_contact(&c.tenant_id, &id).await? else {
                    return Err(StoreError::NotFound);
                };
                if stored.version != c.version - 1 || stored.tag != sealed.tag {
                    return Err(StoreError::AlreadyExists);
                }
                self.register_lists(&c.tenant_id, sealed.lists.difference(&stored.lists))
                    .await?;
                self.changed_contact(c, &sealed, &stored)?
            };
            match self.contact_transact(items).await? {
                Ok(()) => return Ok(()),
                // The id or the number is taken.
                Err(Refused::Condition) if c.version <= 1 => return Err(StoreError::AlreadyExists),
                // Changed or deleted since it was read: the read again tells which.
                Err(Refused::Condition) => {}
                Err(Refused::Conflict) => pause(round).await,
            }
        }
        Err(kept_changing("a contact", "storing"))
    }

    async fn delete(&self, t: &TenantId, id: &ContactId) -> Result<bool, StoreError> {
        for round in 1..=ROUNDS {
            let Some(stored) = self.stored_contact(t, id.as_str()).await? else {
                return Ok(false);
            };
            let items = self.deleted_contact(t, id.as_str(), &stored)?;
            match self.contact_transact(items).await? {
                Ok(()) => return Ok(true),
                // Changed or deleted since it was read: read again.
                Err(Refused::Condition) => {}
                Err(Refused::Conflict) => pause(round).await,
            }
        }
        Err(kept_changing("a contact", "storing"))
    }

    async fn list(&self, t: &TenantId, query: &ContactQuery) -> Result<ContactPage, StoreError> {
        let limit = query.limit.clamp(1, MAX_CONTACT_PAGE);
        let mut after = query.after.as_ref().map(|a| a.as_str().to_owned());
        let items = match &query.list {
            None => {
                self.by_tenant_group(contacts_group(t), Order::Ascending, after.as_deref(), limit)
                    .await?
            }
            Some(list) => {
                let list = list.as_str();
                let mut items = Vec::new();
                while items.len() < limit {
                    let want = limit - items.len();
                    let members = self
                        .by_tenant_group(
                            members_group(t, list),
                            Order::Ascending,
                            after.as_deref(),
                            want,
                        )
                        .await?;
                    let ids = members
                        .iter()
                        .map(|m| req_s(m, tenant::GROUP_SORT))
                        .collect::<Result<Vec<_>, _>>()?;
                    let Some(last) = ids.last() else {
                        break;
                    };
                    after = Some((*last).to_owned());
                    let keys: Vec<String> = ids.iter().map(|id| contact_key(t, id)).collect();
                    let mut found = self.tenants_items(keys.clone(), None).await?;
                    for key in &keys {
                        // Deleted, or taken off the list, since the index was read: left out.
                        if let Some(item) = found.remove(key)
                            && lists_of(&item)?.contains(list)
                        {
                            items.push(item);
                        }
                    }
                    if members.len() < want {
                        break;
                    }
                }
                items
            }
        };
        let contacts = self.open_contacts(t, &items).await?;
        let next = (contacts.len() == limit)
            .then(|| contacts.last().map(|c| c.id.clone()))
            .flatten();
        Ok(ContactPage { contacts, next })
    }

    async fn count(&self, t: &TenantId, list: &ListName) -> Result<u64, StoreError> {
        self.count_group(members_group(t, list.as_str())).await
    }

    async fn lists(&self, t: &TenantId) -> Result<Vec<ListName>, StoreError> {
        let entries = self
            .by_tenant_group(lists_group(t), Order::Ascending, None, usize::MAX)
            .await?;
        let names = entries
            .iter()
            .map(|item| {
                let name = req_s(item, tenant::GROUP_SORT)?;
                ListName::parse(name).map_err(|_| corrupt(format!("list {name:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // An entry stays once its list is emptied: kept only while one place is left.
        let kept: Vec<Option<ListName>> = stream::iter(names)
            .map(|name| async move {
                let places = self
                    .by_tenant_group(members_group(t, name.as_str()), Order::Ascending, None, 1)
                    .await?;
                Ok::<_, StoreError>((!places.is_empty()).then_some(name))
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(kept.into_iter().flatten().collect())
    }
}
