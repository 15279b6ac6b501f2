//! The text of a message, checked against the length guard and measured once.

use serde::Serialize;

use super::segments::{self, Estimate};
use super::transliteration;

/// How a text is prepared and how long it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextPolicy {
    /// Most parts a text may take (the guard against a runaway template or paste).
    pub max_parts: usize,
    /// Turn Ukrainian Cyrillic into Latin by the official table so it can go as GSM-7.
    pub transliterate: bool,
}

pub const DEFAULT_MAX_PARTS: usize = 10;

/// No text longer than this (in bytes) is even measured: ten UCS-2 parts of 4-byte
/// characters stay far below it. A batch's text with placeholders is held to it too, before
/// and after they are filled in.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

impl Default for TextPolicy {
    fn default() -> Self {
        TextPolicy {
            max_parts: DEFAULT_MAX_PARTS,
            transliterate: false,
        }
    }
}

/// A non-empty text, as it will be sent, that fits in the allowed number of parts.
/// `Debug` never shows the body: message texts stay out of logs.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct MessageText {
    #[serde(rename = "text")]
    text: String,
    #[serde(skip)]
    estimate: Estimate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("the text is empty")]
    Empty,
    #[error("the text takes {segments} parts; at most {max} are allowed")]
    TooLong { segments: usize, max: usize },
    #[error("the text contains a NUL or another control character that SMS cannot carry")]
    ControlCharacter,
}

impl TextError {
    pub fn code(&self) -> &'static str {
        match self {
            TextError::Empty => "text_empty",
            TextError::TooLong { .. } => "text_too_long",
            TextError::ControlCharacter => "text_control_character",
        }
    }
}

impl MessageText {
    /// The checks a text passes whatever its length and encoding: not blank, and no control
    /// character but line breaks. A template's own text passes them too before it is rendered
    /// for anyone, so a bad one is refused whole even when no recipient is valid.
    pub fn screen(raw: &str) -> Result<(), TextError> {
        if raw.trim().is_empty() {
            return Err(TextError::Empty);
        }
        // Line breaks are ordinary SMS characters; other C0 and the C1 controls are refused
        // rather than silently dropped by a provider.
        if raw
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\u{c}'))
        {
            return Err(TextError::ControlCharacter);
        }
        Ok(())
    }

    pub fn new(raw: &str, policy: TextPolicy) -> Result<Self, TextError> {
        Self::screen(raw)?;
        if raw.len() > MAX_TEXT_BYTES {
            return Err(TextError::TooLong {
                segments: raw.len().div_ceil(segments::Encoding::Gsm7.part_limit()),
                max: policy.max_parts,
            });
        }
        let text = if policy.transliterate {
            transliteration::transliterate(raw)
        } else {
            raw.to_owned()
        };
        let estimate = segments::estimate(&text);
        if estimate.segments > policy.max_parts {
            return Err(TextError::TooLong {
                segments: estimate.segments,
                max: policy.max_parts,
            });
        }
        Ok(MessageText { text, estimate })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn estimate(&self) -> &Estimate {
        &self.estimate
    }

    pub fn segments(&self) -> usize {
        self.estimate.segments
    }
}

/// How a text would travel, with the text as it would be sent: what `holub estimate` prints
/// and `POST /v1/estimate` answers. Any text can be measured, even one too long to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TextEstimate {
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(inline, value_type = Object))]
    pub estimate: Estimate,
    /// The text as sent, after transliteration when asked for.
    pub text: String,
}

impl TextEstimate {
    pub fn of(raw: &str, transliterate: bool) -> Self {
        let text = if transliterate {
            transliteration::transliterate(raw)
        } else {
            raw.to_owned()
        };
        TextEstimate {
            estimate: segments::estimate(&text),
            text,
        }
    }
}

impl std::fmt::Debug for MessageText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MessageText({} chars, {:?}, {} segments)",
            self.estimate.characters, self.estimate.encoding, self.estimate.segments
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Encoding;

    #[test]
    fn empty_and_blank_texts_are_refused() {
        assert_eq!(
            MessageText::new("", TextPolicy::default()),
            Err(TextError::Empty)
        );
        assert_eq!(
            MessageText::new(" \n ", TextPolicy::default()),
            Err(TextError::Empty)
        );
    }

    #[test]
    fn the_length_guard_counts_parts() {
        let ten_parts = "a".repeat(153 * 10);
        assert_eq!(
            MessageText::new(&ten_parts, TextPolicy::default())
                .unwrap()
                .segments(),
            10
        );
        let eleven = "a".repeat(153 * 10 + 1);
        assert_eq!(
            MessageText::new(&eleven, TextPolicy::default()),
            Err(TextError::TooLong {
                segments: 11,
                max: 10
            })
        );
        let policy = TextPolicy {
            max_parts: 1,
            ..TextPolicy::default()
        };
        assert!(MessageText::new(&"ї".repeat(71), policy).is_err());
        assert!(MessageText::new(&"x".repeat(1_000_000), TextPolicy::default()).is_err());
    }

    #[test]
    fn transliteration_is_opt_in_and_makes_gsm7() {
        let plain = MessageText::new("Ваш код: 1234", TextPolicy::default()).unwrap();
        assert_eq!(plain.estimate().encoding, Encoding::Ucs2);
        let policy = TextPolicy {
            transliterate: true,
            ..TextPolicy::default()
        };
        let latin = MessageText::new("Ваш код: 1234", policy).unwrap();
        assert_eq!(latin.as_str(), "Vash kod: 1234");
        assert_eq!(latin.estimate().encoding, Encoding::Gsm7);
    }

    #[test]
    fn control_characters_are_refused_and_bodies_stay_out_of_debug() {
        assert_eq!(
            MessageText::new("a\u{0}b", TextPolicy::default()),
            Err(TextError::ControlCharacter)
        );
        let t = MessageText::new("secret code 1234", TextPolicy::default()).unwrap();
        assert!(!format!("{t:?}").contains("1234"));
    }
}
