//! A tenant's address book: contacts (a number, unique per tenant, with a name and attributes
//! that fill a template's `{{placeholders}}`) and the lists they are on.
//!
//! A contact's number, name and attributes are personal data: the stores seal them under the
//! tenant's key like message texts, and find a contact by its number's keyed tag. List names
//! are the tenant's own labels and stay plain, so lists can be paged in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ContactId, PhoneNumber, TenantId};

/// The most characters of a name.
pub const MAX_NAME_CHARS: usize = 200;
/// The most attributes of one contact.
pub const MAX_ATTRIBUTES: usize = 50;
/// The most characters of one attribute's value.
pub const MAX_VALUE_CHARS: usize = 500;
/// The most lists one contact is on.
pub const MAX_LISTS: usize = 20;
/// The most characters of a list's name.
pub const MAX_LIST_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    #[error("a name is at most {MAX_NAME_CHARS} printable characters")]
    Name,
    #[error(
        "an attribute's name is 1 to 64 ASCII letters, digits and _ (as a {{{{placeholder}}}}), its value at most {MAX_VALUE_CHARS} printable characters"
    )]
    Attribute,
    #[error("a contact has at most {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    #[error("a list's name is 1 to {MAX_LIST_CHARS} printable characters, not only spaces")]
    ListName,
    #[error("a contact is on at most {MAX_LISTS} lists")]
    TooManyLists,
}

impl ContactError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            ContactError::Name => "name",
            ContactError::Attribute | ContactError::TooManyAttributes => "attributes",
            ContactError::ListName | ContactError::TooManyLists => "lists",
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ContactError::Name => "name_invalid",
            ContactError::Attribute => "attribute_invalid",
            ContactError::TooManyAttributes => "too_many_attributes",
            ContactError::ListName => "list_name_invalid",
            ContactError::TooManyLists => "too_many_lists",
        }
    }
}

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// A list's name: up to 64 printable characters, not only spaces (any script: `Клієнти
/// Київ`), trimmed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ListName(String);

impl ListName {
    pub fn parse(raw: &str) -> Result<Self, ContactError> {
        // Measured and screened as given, so the rule is the one the OpenAPI document states.
        let name = raw.trim();
        let ok = !name.is_empty() && raw.chars().count() <= MAX_LIST_CHARS && printable(raw);
        ok.then(|| ListName(name.to_owned()))
            .ok_or(ContactError::ListName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ListName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListName({})", self.0)
    }
}

impl fmt::Display for ListName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ListName {
    type Error = ContactError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ListName::parse(&s)
    }
}

impl From<ListName> for String {
    fn from(l: ListName) -> String {
        l.0
    }
}

/// What a contact says of a person: sealed as one piece.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Details {
    pub name: Option<String>,
    /// Values of `{{placeholders}}`, by name.
    pub attributes: BTreeMap<String, String>,
}

impl fmt::Debug for Details {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data: never in logs.
        write!(f, "Details({} attributes)", self.attributes.len())
    }
}

impl Details {
    /// Checks a name and attributes as given.
    pub fn new(
        name: Option<&str>,
        attributes: BTreeMap<String, String>,
    ) -> Result<Self, ContactError> {
        // Measured and screened as given, then trimmed.
        let name = match name {
            Some(n) if n.chars().count() > MAX_NAME_CHARS || !printable(n) => {
                return Err(ContactError::Name);
            }
            Some(n) if !n.trim().is_empty() => Some(n.trim().to_owned()),
            _ => None,
        };
        if attributes.len() > MAX_ATTRIBUTES {
            return Err(ContactError::TooManyAttributes);
        }
        for (k, v) in &attributes {
            let key_ok = !k.is_empty()
                && k.len() <= 64
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !key_ok || v.chars().count() > MAX_VALUE_CHARS || !printable(v) {
                return Err(ContactError::Attribute);
            }
        }
        Ok(Details { name, attributes })
    }
}

/// One contact of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: ContactId,
    pub tenant_id: TenantId,
    /// Unique per tenant.
    pub phone: PhoneNumber,
    pub details: Details,
    pub lists: BTreeSet<ListName>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// 1 when created, one more with each change: a change is stored only over the version
    /// it was made from.
    pub version: u32,
}

impl Contact {
    /// The values a template's placeholders take from this contact: its attributes, and
    /// `name` (when it has one and no attribute of that name).
    pub fn variables(&self) -> BTreeMap<String, String> {
        let mut vars = self.details.attributes.clone();
        if let Some(name) = &self.details.name {
            vars.entry("name".to_owned())
                .or_insert_with(|| name.clone());
        }
        vars
    }
}

/// Checks a set of lists as given.
pub fn lists(names: &[String]) -> Result<BTreeSet<ListName>, ContactError> {
    // Counted as given (a name twice is still two), as the OpenAPI document's `maxItems`.
    if names.len() > MAX_LISTS {
        return Err(ContactError::TooManyLists);
    }
    let set = names
        .iter()
        .map(|n| ListName::parse(n))
        .collect::<Result<BTreeSet<_>, _>>()?;
    if set.len() > MAX_LISTS {
        return Err(ContactError::TooManyLists);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_names_are_checked() {
        assert_eq!(
            ListName::parse(" Клієнти Київ ").unwrap().as_str(),
            "Клієнти Київ"
        );
        assert!(ListName::parse("vip-2026.q4_b/Зима").is_ok());
        for bad in ["", "   ", "a\nb", "a\u{9b}", &"я".repeat(65)] {
            assert!(ListName::parse(bad).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..21).map(|i| format!("l{i}")).collect();
        assert_eq!(lists(&many), Err(ContactError::TooManyLists));
        assert_eq!(lists(&["a".into(), "a".into()]).unwrap().len(), 1);
    }

    #[test]
    fn details_are_checked() {
        let attrs = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(Details::new(Some("Олена"), attrs("city", "Київ")).is_ok());
        assert_eq!(
            Details::new(Some("  "), BTreeMap::new()).unwrap().name,
            None
        );
        assert_eq!(
            Details::new(Some("a\u{0}"), BTreeMap::new()),
            Err(ContactError::Name)
        );
        assert_eq!(
            Details::new(None, attrs("місто", "Київ")),
            Err(ContactError::Attribute)
        );
        assert_eq!(
            Details::new(None, attrs("city", &"я".repeat(501))),
            Err(ContactError::Attribute)
        );
        let many = (0..51).map(|i| (format!("a{i}"), "x".to_owned())).collect();
        assert_eq!(
            Details::new(None, many),
            Err(ContactError::TooManyAttributes)
        );
        assert_eq!(
            format!(
                "{:?}",
                Details::new(Some("Олена"), BTreeMap::new()).unwrap()
            ),
            "Details(0 attributes)"
        );
    }
}
