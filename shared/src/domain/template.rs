//! A tenant's message templates: named texts with `{{placeholders}}` and a category, kept in
//! versions. A change makes a new version and never alters an old one, so a campaign or a
//! report that names a template's version always reads the text that went out.
//!
//! Templates are the tenant's own copy (an offer, an appointment reminder), not a
//! subscriber's data: the text is stored as written; placeholders are filled per message,
//! and what fills them (a contact's name, attributes) stays sealed with the contact.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::text::{MessageText, TextError};
use super::{Category, TemplateId, TenantId};

/// The most characters of a template's name.
pub const MAX_TEMPLATE_NAME_CHARS: usize = 100;
/// The most characters of a template's text: more than the ten parts a message may take
/// (1,530 GSM-7 characters), with room for placeholders' names.
pub const MAX_TEMPLATE_CHARS: usize = 2_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "a template's name is 1 to {MAX_TEMPLATE_NAME_CHARS} printable characters, not only spaces"
    )]
    Name,
    #[error("{0}")]
    Text(TextError),
    #[error("a template's text is at most {MAX_TEMPLATE_CHARS} characters")]
    TextTooLong,
}

impl TemplateError {
    pub fn code(&self) -> &'static str {
        match self {
            TemplateError::Name => "template_name_invalid",
            TemplateError::Text(e) => e.code(),
            TemplateError::TextTooLong => "text_too_long",
        }
    }

    pub fn field(&self) -> &'static str {
        match self {
            TemplateError::Name => "name",
            _ => "text",
        }
    }
}

/// A template's name, unique among a tenant's templates (case-insensitively): trimmed, up to
/// 100 printable characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TemplateName(String);

impl TemplateName {
    pub fn parse(raw: &str) -> Result<Self, TemplateError> {
        // Measured and screened as given, so the rule is the one the OpenAPI document states.
        let ok = !raw.trim().is_empty()
            && raw.chars().count() <= MAX_TEMPLATE_NAME_CHARS
            && !raw.chars().any(char::is_control);
        ok.then(|| TemplateName(raw.trim().to_owned()))
            .ok_or(TemplateError::Name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What uniqueness compares: the name in lower case.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Debug for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TemplateName({})", self.0)
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TemplateName {
    type Error = TemplateError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TemplateName::parse(&s)
    }
}

impl From<TemplateName> for String {
    fn from(n: TemplateName) -> String {
        n.0
    }
}

/// A template's text as written, placeholders and all: not blank, no control character but
/// line breaks, at most [`MAX_TEMPLATE_CHARS`]. Whether it fits a message's parts is known
/// only once its placeholders are filled.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TemplateText(String);

impl TemplateText {
    pub fn parse(raw: &str) -> Result<Self, TemplateError> {
        if raw.chars().count() > MAX_TEMPLATE_CHARS {
            return Err(TemplateError::TextTooLong);
        }
        MessageText::screen(raw).map_err(TemplateError::Text)?;
        Ok(TemplateText(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TemplateText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TemplateText({} bytes)", self.0.len())
    }
}

impl TryFrom<String> for TemplateText {
    type Error = TemplateError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TemplateText::parse(&s)
    }
}

impl From<TemplateText> for String {
    fn from(t: TemplateText) -> String {
        t.0
    }
}

/// One version of a template, as stored: never changed once written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateVersion {
    pub id: TemplateId,
    pub tenant_id: TenantId,
    /// 1, 2, …: each change adds one.
    pub version: u32,
    pub name: TemplateName,
    pub text: TemplateText,
    pub category: Category,
    /// When this version was made.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_texts_are_checked() {
        assert_eq!(
            TemplateName::parse("  Акція вихідного дня ")
                .unwrap()
                .as_str(),
            "Акція вихідного дня"
        );
        assert_eq!(TemplateName::parse("Акція").unwrap().key(), "акція");
        for bad in ["", "   ", "a\u{7}", &"я".repeat(101)] {
            assert_eq!(
                TemplateName::parse(bad),
                Err(TemplateError::Name),
                "{bad:?}"
            );
        }
        assert!(TemplateText::parse("Вітаємо, {{name}}!\nЗнижка {{discount}}%").is_ok());
        assert_eq!(
            TemplateText::parse(" \n ").unwrap_err().code(),
            "text_empty"
        );
        assert_eq!(
            TemplateText::parse("a\u{9b}").unwrap_err().code(),
            "text_control_character"
        );
        assert_eq!(
            TemplateText::parse(&"я".repeat(MAX_TEMPLATE_CHARS + 1)).unwrap_err(),
            TemplateError::TextTooLong
        );
        assert_eq!(
            format!("{:?}", TemplateText::parse("secret").unwrap()),
            "TemplateText(6 bytes)"
        );
    }
}
