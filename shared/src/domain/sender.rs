//! The sender shown on the recipient's phone.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::phone::{PhoneError, PhoneNumber};

/// An alpha-name (3–11 Latin letters and digits, at least one letter, registered per operator
/// through the provider) or a phone number.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SenderId {
    Alpha(String),
    Phone(PhoneNumber),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderIdError {
    #[error("the sender is empty")]
    Empty,
    #[error("an alpha-name has 3 to 11 characters")]
    BadLength,
    #[error("an alpha-name may hold only Latin letters and digits")]
    InvalidCharacter,
    #[error("the sender is not a valid phone number: {0}")]
    Phone(#[from] PhoneError),
}

impl SenderIdError {
    pub fn code(&self) -> &'static str {
        match self {
            SenderIdError::Empty => "sender_empty",
            SenderIdError::BadLength => "sender_bad_length",
            SenderIdError::InvalidCharacter => "sender_invalid_character",
            SenderIdError::Phone(_) => "sender_invalid_phone",
        }
    }
}

impl SenderId {
    pub fn parse(s: &str) -> Result<Self, SenderIdError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SenderIdError::Empty);
        }
        let has_letter = s.chars().any(char::is_alphabetic);
        if !has_letter {
            return Ok(SenderId::Phone(PhoneNumber::parse(s)?));
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(SenderIdError::InvalidCharacter);
        }
        if !(3..=11).contains(&s.len()) {
            return Err(SenderIdError::BadLength);
        }
        Ok(SenderId::Alpha(s.to_owned()))
    }

    /// The sender as providers take it: the alpha-name, or the number's digits.
    pub fn as_str(&self) -> &str {
        match self {
            SenderId::Alpha(name) => name,
            SenderId::Phone(number) => number.as_e164(),
        }
    }
}

impl fmt::Debug for SenderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SenderId::Alpha(name) => f.debug_tuple("Alpha").field(name).finish(),
            SenderId::Phone(number) => f.debug_tuple("Phone").field(number).finish(),
        }
    }
}

impl TryFrom<String> for SenderId {
    type Error = SenderIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        SenderId::parse(&value)
    }
}

impl From<SenderId> for String {
    fn from(value: SenderId) -> Self {
        value.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_names_and_numbers() {
        assert_eq!(SenderId::parse("Holub").unwrap().as_str(), "Holub");
        assert_eq!(SenderId::parse("Shop24").unwrap().as_str(), "Shop24");
        assert_eq!(SenderId::parse("ABC").unwrap().as_str(), "ABC");
        assert_eq!(
            SenderId::parse("Abcdefghijk").unwrap().as_str(),
            "Abcdefghijk"
        );
        assert_eq!(
            SenderId::parse("+380 67 123 45 67").unwrap(),
            SenderId::Phone(PhoneNumber::parse("0671234567").unwrap())
        );
    }

    #[test]
    fn bad_senders() {
        assert_eq!(SenderId::parse(""), Err(SenderIdError::Empty));
        assert_eq!(SenderId::parse("AB"), Err(SenderIdError::BadLength));
        assert_eq!(
            SenderId::parse("Abcdefghijkl"),
            Err(SenderIdError::BadLength)
        );
        assert_eq!(
            SenderId::parse("Holub Shop"),
            Err(SenderIdError::InvalidCharacter)
        );
        assert_eq!(
            SenderId::parse("Голуб"),
            Err(SenderIdError::InvalidCharacter)
        );
        assert_eq!(
            SenderId::parse("Shop_24"),
            Err(SenderIdError::InvalidCharacter)
        );
        assert!(matches!(
            SenderId::parse("044 123 45 67"),
            Err(SenderIdError::Phone(_))
        ));
    }
}
