//! A tenant's address book through the API: contacts added or merged by number, changed,
//! deleted, searched and paged, by list.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::contact::{self, ContactError};
use crate::domain::csv_import::{ImportReader, ImportRow, RowError};
use crate::domain::{Contact, ContactId, Details, ListName, PhoneNumber, TenantId};
use crate::ports::contacts::MAX_CONTACT_PAGE;
use crate::ports::{Clock, ContactQuery, ContactStore, StoreError};

use super::intake::FieldError;

/// How many contacts one search request reads at most, looking for matches: a search over a
/// large book answers a `next` to go on from, never one long scan.
pub const SEARCH_BUDGET: usize = 5_000;

/// How many CSV rows [`Contacts::import_rows`] takes at once: one read of their numbers,
/// then their writes.
pub const IMPORT_CHUNK: usize = 500;

/// What became of one CSV row.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RowResult {
    /// The row in the spreadsheet (the header is row 1).
    pub row: u64,
    /// `created`, `updated` (merged into a contact with its number, stored before or
    /// earlier in the file) or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The number had lost its leading 0 (nine digits) and was read as `+380…`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restored_zero: bool,
    /// Why it failed: a stable code, the column, a sentence (never the cell's content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FieldError>,
}

impl RowResult {
    fn pending(row: &ImportRow) -> Self {
        RowResult {
            row: row.row,
            status: "failed",
            id: None,
            restored_zero: row.restored_zero,
            error: None,
        }
    }

    /// A row the reader refused.
    pub fn refused(e: &RowError) -> Self {
        RowResult {
            row: e.row,
            status: "failed",
            id: None,
            restored_zero: false,
            error: Some(FieldError::new(
                e.code,
                e.field.as_deref().unwrap_or("row"),
                e.message.clone(),
            )),
        }
    }

    fn fail(&mut self, code: &'static str, field: &str, message: &str) {
        self.status = "failed";
        self.id = None;
        self.error = Some(FieldError::new(code, field, message.to_owned()));
    }

    fn done(&mut self, id: &ContactId, created: bool) {
        self.status = if created { "created" } else { "updated" };
        self.id = Some(id.to_string());
        self.error = None;
    }
}

/// How many rows of an import came to what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportTally {
    pub rows: u64,
    pub created: u64,
    pub updated: u64,
    pub failed: u64,
    /// Rows whose number had lost its leading 0.
    pub restored_zero: u64,
}

impl ImportTally {
    pub fn add(&mut self, r: &RowResult) {
        self.rows += 1;
        match r.status {
            "created" => self.created += 1,
            "updated" => self.updated += 1,
            _ => self.failed += 1,
        }
        if r.restored_zero && r.status != "failed" {
            self.restored_zero += 1;
        }
    }
}

/// The rows of one number in one chunk, merged in file order.
struct Group {
    phone: PhoneNumber,
    rows: Vec<usize>,
    details: Details,
    lists: BTreeSet<ListName>,
}

impl Group {
    /// Adds a row's values, unless the contact would hold too much.
    fn absorb(&mut self, d: &Details, lists: &BTreeSet<ListName>) -> Result<(), ContactError> {
        let mut attributes = self.details.attributes.clone();
        attributes.extend(d.attributes.clone());
        let name = d.name.as_deref().or(self.details.name.as_deref());
        let details = Details::new(name, attributes)?;
        let mut all = self.lists.clone();
        all.extend(lists.iter().cloned());
        if all.len() > contact::MAX_LISTS {
            return Err(ContactError::TooManyLists);
        }
        (self.details, self.lists) = (details, all);
        Ok(())
    }

    fn request(&self) -> ContactRequest {
        ContactRequest {
            phone: self.phone.as_e164().to_owned(),
            name: self.details.name.clone(),
            attributes: self.details.attributes.clone(),
            lists: self.lists.iter().map(|l| l.as_str().to_owned()).collect(),
        }
    }
}

/// How many times a change that met another change is made again.
const ATTEMPTS: usize = 5;

/// `POST /v1/contacts`: a contact to add, or to merge into the one with this number.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// The number, as typed (as for a message's `to`); unique in the tenant.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7}$")
    )]
    pub phone: String,
    /// Up to 200 printable characters. Merging: replaces the stored name when given.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub name: Option<String>,
    /// Values of `{{placeholders}}` (names of ASCII letters, digits and `_`; at most 50, each
    /// value up to 500 characters). Merging: these names replace the stored values, others stay.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The lists it is on (up to 20 names of letters, digits, spaces, `-`, `_`, `.`).
    /// Merging: added to the stored ones.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20))]
    pub lists: Vec<String>,
}

/// `PATCH /v1/contacts/{id}`: the fields given replace the stored ones.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    /// The name (`""` removes it).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub name: Option<String>,
    /// All its attributes.
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, String>>,
    /// All its lists.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20))]
    pub lists: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContactView {
    pub id: String,
    /// E.164.
    pub phone: String,
    pub name: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub lists: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Contact> for ContactView {
    fn from(c: &Contact) -> Self {
        ContactView {
            id: c.id.to_string(),
            phone: c.phone.as_e164().to_owned(),
            name: c.details.name.clone(),
            attributes: c.details.attributes.clone(),
            lists: c.lists.iter().map(|l| l.as_str().to_owned()).collect(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContactPageView {
    pub contacts: Vec<ContactView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next: Option<String>,
}

/// What `GET /v1/contacts` looks for.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub list: Option<ListName>,
    pub phone: Option<PhoneNumber>,
    /// Case-insensitive text in the name, the number or an attribute's value.
    pub text: Option<String>,
    pub after: Option<ContactId>,
    pub limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ContactsError {
    #[error("{}", .0.message)]
    Invalid(FieldError),
    /// Merged into the stored contact, it would have more attributes or lists than a contact
    /// may (`too_many_attributes`, `too_many_lists`).
    #[error("{}", .0.message)]
    Full(FieldError),
    #[error("no such contact")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `c` with what `given` and `lists` add: a given name replaces the stored one, given
/// attributes replace those of their names, lists are added. The next version, changed now.
fn merged(
    mut c: Contact,
    given: &Details,
    lists: &BTreeSet<ListName>,
    now: DateTime<Utc>,
) -> Result<Contact, ContactsError> {
    if given.name.is_some() {
        c.details.name = given.name.clone();
    }
    let mut attributes = c.details.attributes.clone();
    attributes.extend(given.attributes.clone());
    c.details =
        Details::new(c.details.name.as_deref(), attributes).map_err(|e| full("attributes", e))?;
    c.lists.extend(lists.iter().cloned());
    if c.lists.len() > contact::MAX_LISTS {
        return Err(full("lists", ContactError::TooManyLists));
    }
    c.updated_at = now;
    c.version += 1;
    Ok(c)
}

/// A merge the request alone does not explain: what it adds is fine, the contact it meets
/// has no room for it.
fn full(field: &str, e: ContactError) -> ContactsError {
    ContactsError::Full(FieldError::new(e.code(), field, e.to_string()))
}

fn invalid(e: ContactError) -> ContactsError {
    ContactsError::Invalid(FieldError::new(e.code(), e.field(), e.to_string()))
}

pub struct Contacts {
    store: Arc<dyn ContactStore>,
    clock: Arc<dyn Clock>,
}

impl Contacts {
    pub fn new(store: Arc<dyn ContactStore>, clock: Arc<dyn Clock>) -> Self {
        Contacts { store, clock }
    }

    /// Adds a contact, or merges it into the one with its number: answers it, and whether
    /// it is new.
    pub async fn upsert(
        &self,
        tenant: &TenantId,
        req: ContactRequest,
    ) -> Result<(Contact, bool), ContactsError> {
        let phone = PhoneNumber::parse(&req.phone).map_err(|e| {
            ContactsError::Invalid(FieldError::new(e.code(), "phone", e.to_string()))
        })?;
        let given = Details::new(req.name.as_deref(), req.attributes.clone()).map_err(invalid)?;
        let lists = contact::lists(&req.lists).map_err(invalid)?;
        for _ in 0..ATTEMPTS {
            let now = self.clock.now();
            let found = self.store.find(tenant, &[&phone]).await?.pop().flatten();
            let (next, created) = match found {
                None => (
                    Contact {
                        id: ContactId::generate(now),
                        tenant_id: tenant.clone(),
                        phone: phone.clone(),
                        details: given.clone(),
                        lists: lists.clone(),
                        created_at: now,
                        updated_at: now,
                        version: 1,
                    },
                    true,
                ),
                Some(c) => (merged(c, &given, &lists, now)?, false),
            };
            match self.store.put(&next).await {
                Ok(()) => return Ok((next, created)),
                // Another change of this number came first: merge into it.
                Err(StoreError::AlreadyExists | StoreError::NotFound) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Unavailable("the contact kept changing; try again".into()).into())
    }

    /// Imports a whole CSV file, a chunk of [`IMPORT_CHUNK`] rows at a time (memory stays
    /// flat whatever the file's size). After each chunk `each` gets its rows' results in row
    /// order, the tally so far and the bytes read. Stops at the first store failure, after
    /// the chunks before it were stored and reported (a rerun merges them again, harmlessly).
    pub async fn import_csv<R: BufRead>(
        &self,
        tenant: &TenantId,
        reader: &mut ImportReader<R>,
        list: Option<&ListName>,
        mut each: impl FnMut(&[RowResult], &ImportTally, u64),
    ) -> Result<ImportTally, ContactsError> {
        let mut tally = ImportTally::default();
        let mut rows: Vec<ImportRow> = Vec::with_capacity(IMPORT_CHUNK);
        let mut refused: Vec<RowResult> = Vec::new();
        loop {
            rows.clear();
            refused.clear();
            let mut done = false;
            while rows.len() < IMPORT_CHUNK {
                match reader.next_row() {
                    None => {
                        done = true;
                        break;
                    }
                    Some(Ok(row)) => rows.push(row),
                    Some(Err(e)) => refused.push(RowResult::refused(&e)),
                }
            }
            let mut results = self.import_rows(tenant, &rows, list).await?;
            results.append(&mut refused);
            results.sort_by_key(|r| r.row);
            for r in &results {
                tally.add(r);
            }
            each(&results, &tally, reader.bytes_read());
            if done {
                return Ok(tally);
            }
        }
    }

    /// Imports one chunk of CSV rows (at most [`IMPORT_CHUNK`]): each becomes a new contact
    /// or is merged into the one with its number, as `POST /v1/contacts` does; rows of one
    /// number within the chunk are merged in file order first, so the file's last word on a
    /// name or attribute wins. Every row of `rows` gets one result, in order. `list`, if
    /// given, is added to every contact imported.
    pub async fn import_rows(
        &self,
        tenant: &TenantId,
        rows: &[ImportRow],
        list: Option<&ListName>,
    ) -> Result<Vec<RowResult>, ContactsError> {
        let mut results: Vec<RowResult> = rows.iter().map(RowResult::pending).collect();
        // One group per number, in the order numbers first appear.
        let mut groups: Vec<Group> = Vec::new();
        let mut by_phone: HashMap<&PhoneNumber, usize> = HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            let lists = row
                .lists
                .iter()
                .map(|l| ListName::parse(l))
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(|e| ("lists", e));
            let details = Details::new(row.name.as_deref(), row.attributes.clone())
                .map_err(|e| ("attributes", e));
            let (mut lists, details) = match (lists, details) {
                (Ok(l), Ok(d)) => (l, d),
                (Err((field, e)), _) | (_, Err((field, e))) => {
                    results[i].fail(e.code(), field, &e.to_string());
                    continue;
                }
            };
            lists.extend(list.cloned());
            let g = *by_phone.entry(&row.phone).or_insert_with(|| {
                groups.push(Group {
                    phone: row.phone.clone(),
                    rows: Vec::new(),
                    details: Details::default(),
                    lists: BTreeSet::new(),
                });
                groups.len() - 1
            });
            let group = &mut groups[g];
            match group.absorb(&details, &lists) {
                Ok(()) => group.rows.push(i),
                Err(e) => results[i].fail(e.code(), "row", &e.to_string()),
            }
        }
        groups.retain(|g| !g.rows.is_empty());
        let phones: Vec<&PhoneNumber> = groups.iter().map(|g| &g.phone).collect();
        let found = self.store.find(tenant, &phones).await?;
        let now = self.clock.now();
        // Each number's next contact: new, or merged into the stored one.
        let mut outcomes: Vec<Option<Result<(Contact, bool), ContactsError>>> = Vec::new();
        let mut writes: Vec<Contact> = Vec::new();
        let mut written: Vec<usize> = Vec::new();
        for (g, existing) in groups.iter().zip(found) {
            let next = match existing {
                None => Ok((
                    Contact {
                        id: ContactId::generate(now),
                        tenant_id: tenant.clone(),
                        phone: g.phone.clone(),
                        details: g.details.clone(),
                        lists: g.lists.clone(),
                        created_at: now,
                        updated_at: now,
                        version: 1,
                    },
                    true,
                )),
                Some(c) => merged(c, &g.details, &g.lists, now).map(|c| (c, false)),
            };
            if let Ok((contact, _)) = &next {
                written.push(outcomes.len());
                writes.push(contact.clone());
            }
            outcomes.push(Some(next));
        }
        // Written together (one commit on SQLite); a number changed meanwhile by someone
        // else is merged into the slow way, one at a time.
        let stored = self.store.put_many(&writes).await;
        for (&i, result) in written.iter().zip(stored) {
            match result {
                Ok(()) => {}
                Err(StoreError::AlreadyExists | StoreError::NotFound) => {
                    outcomes[i] = Some(self.upsert(tenant, groups[i].request()).await);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let outcomes = outcomes.into_iter().flatten();
        for (group, outcome) in groups.iter().zip(outcomes) {
            match outcome {
                Ok((contact, created)) => {
                    for (n, &i) in group.rows.iter().enumerate() {
                        results[i].done(&contact.id, created && n == 0);
                    }
                }
                Err(ContactsError::Full(f) | ContactsError::Invalid(f)) => {
                    for &i in &group.rows {
                        results[i].fail(f.code, &f.field, &f.message);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(results)
    }

    pub async fn get(&self, tenant: &TenantId, id: &ContactId) -> Result<Contact, ContactsError> {
        self.store
            .get(tenant, id)
            .await?
            .ok_or(ContactsError::NotFound)
    }

    /// Replaces the fields `patch` gives.
    pub async fn update(
        &self,
        tenant: &TenantId,
        id: &ContactId,
        patch: ContactPatch,
    ) -> Result<Contact, ContactsError> {
        let lists = patch
            .lists
            .as_deref()
            .map(contact::lists)
            .transpose()
            .map_err(invalid)?;
        for _ in 0..ATTEMPTS {
            let mut c = self.get(tenant, id).await?;
            let name = match &patch.name {
                Some(n) => Some(n.as_str()),
                None => c.details.name.as_deref(),
            };
            let attributes = patch
                .attributes
                .clone()
                .unwrap_or_else(|| c.details.attributes.clone());
            c.details = Details::new(name, attributes).map_err(invalid)?;
            if let Some(lists) = &lists {
                c.lists = lists.clone();
            }
            c.updated_at = self.clock.now();
            c.version += 1;
            match self.store.put(&c).await {
                Ok(()) => return Ok(c),
                Err(StoreError::AlreadyExists) => continue,
                Err(StoreError::NotFound) => return Err(ContactsError::NotFound),
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Unavailable("the contact kept changing; try again".into()).into())
    }

    pub async fn delete(&self, tenant: &TenantId, id: &ContactId) -> Result<(), ContactsError> {
        if self.store.delete(tenant, id).await? {
            Ok(())
        } else {
            Err(ContactsError::NotFound)
        }
    }

    pub async fn lists(&self, tenant: &TenantId) -> Result<Vec<ListName>, ContactsError> {
        Ok(self.store.lists(tenant).await?)
    }

    /// A page of contacts, oldest first: by number (at most one), by list, by text (reading
    /// at most [`SEARCH_BUDGET`] contacts a request), or all.
    pub async fn search(
        &self,
        tenant: &TenantId,
        search: Search,
    ) -> Result<(Vec<Contact>, Option<ContactId>), ContactsError> {
        let limit = search.limit.clamp(1, MAX_CONTACT_PAGE);
        if let Some(phone) = &search.phone {
            let found = self.store.find(tenant, &[phone]).await?.pop().flatten();
            let keep = found.filter(|c| {
                search.list.as_ref().is_none_or(|l| c.lists.contains(l))
                    && search.after.as_ref().is_none_or(|a| c.id > *a)
                    && search.text.as_deref().is_none_or(|t| matches(c, t))
            });
            return Ok((keep.into_iter().collect(), None));
        }
        let Some(text) = search.text.as_deref().map(str::to_lowercase) else {
            let page = self
                .store
                .list(
                    tenant,
                    &ContactQuery {
                        list: search.list,
                        after: search.after,
                        limit,
                    },
                )
                .await?;
            return Ok((page.contacts, page.next));
        };
        let mut found = Vec::new();
        let mut after = search.after;
        let mut read = 0;
        loop {
            let page = self
                .store
                .list(
                    tenant,
                    &ContactQuery {
                        list: search.list.clone(),
                        after: after.clone(),
                        limit: MAX_CONTACT_PAGE,
                    },
                )
                .await?;
            for c in page.contacts {
                read += 1;
                after = Some(c.id.clone());
                if matches(&c, &text) {
                    found.push(c);
                    if found.len() == limit {
                        return Ok((found, after));
                    }
                }
                if read == SEARCH_BUDGET {
                    return Ok((found, after));
                }
            }
            if page.next.is_none() {
                return Ok((found, None));
            }
        }
    }
}

/// Whether `lowered` (lower case) is in the contact's name, number or an attribute's value.
fn matches(c: &Contact, lowered: &str) -> bool {
    c.phone.as_e164().contains(lowered)
        || c.details
            .name
            .as_deref()
            .is_some_and(|n| n.to_lowercase().contains(lowered))
        || c.details
            .attributes
            .values()
            .any(|v| v.to_lowercase().contains(lowered))
}
