//! Text encoding and SMS segmentation.
//!
//! Source: 3GPP TS 23.038 (the GSM 03.38 default alphabet and its extension table) and
//! 3GPP TS 23.040 (concatenated SMS, whose user-data header leaves 153 septets / 67 UTF-16
//! units per part instead of 160 / 70 for a single message).
//!
//! A message is sent in GSM-7 when every character belongs to the default alphabet or its
//! extension table, and in UCS-2 otherwise — one non-GSM character (a Cyrillic letter, an
//! emoji) switches the whole message, because an SMS carries a single data coding scheme.
//! Operators bill per part, so the estimate here is what the customer pays for.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The data coding scheme a message is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Encoding {
    /// The GSM 03.38 7-bit default alphabet (with its extension table).
    #[serde(rename = "GSM-7")]
    Gsm7,
    /// UCS-2; in practice UTF-16, so characters outside the BMP take two units.
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl Encoding {
    /// The name used in the API and in logs: `"GSM-7"` or `"UCS-2"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gsm7 => "GSM-7",
            Self::Ucs2 => "UCS-2",
        }
    }

    /// Units (septets or UTF-16 units) that fit in a single, unconcatenated message.
    #[must_use]
    pub const fn single_limit(self) -> usize {
        match self {
            Self::Gsm7 => 160,
            Self::Ucs2 => 70,
        }
    }

    /// Units that fit in one part of a concatenated message; the rest of the 140 octets
    /// is taken by the concatenation header.
    #[must_use]
    pub const fn part_limit(self) -> usize {
        match self {
            Self::Gsm7 => 153,
            Self::Ucs2 => 67,
        }
    }

    /// What `c` costs in this encoding.
    fn cost(self, c: char) -> usize {
        match (self, gsm7_septets(c)) {
            (Self::Gsm7, Some(septets)) => septets,
            // A non-GSM char never occurs in a GSM-7 message (`encoding_of` would have picked
            // UCS-2); counting it as UTF-16 keeps this total without a panic path.
            _ => c.len_utf16(),
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a text would be sent: its encoding, its size and its parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// The encoding the whole message is sent in.
    pub encoding: Encoding,
    /// Unicode scalar values (Rust `char`s) in the text.
    pub characters: usize,
    /// GSM-7: septets (extension characters count 2); UCS-2: UTF-16 code units.
    pub units: usize,
    /// Number of SMS parts billed; 0 for the empty text.
    pub segments: usize,
    /// The text split as it would be sent; the parts concatenate back to the text.
    pub parts: Vec<String>,
}

/// Estimates the encoding, size and parts of `text`.
///
/// Parts are filled greedily with whole characters, never splitting a GSM-7 escape sequence
/// or a UTF-16 surrogate pair. Since every character costs 1 or 2 units and a part holds far
/// more, greedy filling yields the minimal number of parts.
#[must_use]
pub fn estimate(text: &str) -> Estimate {
    let encoding = encoding_of(text);
    let characters = text.chars().count();
    let units = text.chars().map(|c| encoding.cost(c)).sum();
    let parts = if text.is_empty() {
        Vec::new()
    } else if units <= encoding.single_limit() {
        vec![text.to_owned()]
    } else {
        split(text, encoding, encoding.part_limit())
    };
    Estimate {
        encoding,
        characters,
        units,
        segments: parts.len(),
        parts,
    }
}

/// GSM-7 iff every character is in the GSM 03.38 default alphabet or its extension table.
///
/// The empty text is GSM-7.
#[must_use]
pub fn encoding_of(text: &str) -> Encoding {
    if text.chars().all(is_gsm7) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// Whether `c` can be sent in GSM-7 (default alphabet or extension table).
#[must_use]
pub const fn is_gsm7(c: char) -> bool {
    gsm7_septets(c).is_some()
}

/// Septets `c` costs in GSM-7: `Some(1)` for the default alphabet, `Some(2)` for the
/// extension table (escape + character), `None` if `c` is not representable.
///
/// The escape code 0x1B itself is not a user character, and U+001B maps to nothing.
/// Position 0x09 is the capital `Ç` as TS 23.038 prints it; the small `ç` is not in the
/// alphabet.
#[must_use]
pub const fn gsm7_septets(c: char) -> Option<usize> {
    match c {
        // Default alphabet: the ASCII part (0x20..=0x3F are identical to ASCII, `$` included;
        // 0x24 in GSM is `¤`, but `$` sits at 0x02).
        '\n' | '\r' | ' '..='?' | '@' | 'A'..='Z' | '_' | 'a'..='z' => Some(1),
        // Default alphabet: the rest (Latin-1 letters and symbols, then Greek capitals).
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' => Some(1),
        'Å' | 'å' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä' | 'Ö' => Some(1),
        'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        'Δ' | 'Φ' | 'Γ' | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' => Some(1),
        // Extension table.
        '\u{000C}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' => Some(2),
        _ => None,
    }
}

/// Splits `text` into parts of at most `limit` units each, greedily, by whole characters.
fn split(text: &str, encoding: Encoding, limit: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (index, c) in text.char_indices() {
        let cost = encoding.cost(c);
        // `used > 0` keeps a part from ever being empty, even for a limit below one char.
        if used + cost > limit && used > 0 {
            parts.push(text[start..index].to_owned());
            start = index;
            used = 0;
        }
        used += cost;
    }
    if start < text.len() {
        parts.push(text[start..].to_owned());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn units_of(text: &str, encoding: Encoding) -> usize {
        text.chars().map(|c| encoding.cost(c)).sum()
    }

    fn assert_segments(text: &str, encoding: Encoding, segments: usize) {
        let estimate = estimate(text);
        assert_eq!(estimate.encoding, encoding, "encoding of {text:?}");
        assert_eq!(estimate.segments, segments, "segments of {text:?}");
        assert_eq!(estimate.parts.len(), segments);
        assert_eq!(estimate.parts.concat(), text);
    }

    #[test]
    fn encoding_names_limits_and_serde() {
        assert_eq!(Encoding::Gsm7.as_str(), "GSM-7");
        assert_eq!(Encoding::Ucs2.as_str(), "UCS-2");
        assert_eq!(Encoding::Ucs2.to_string(), "UCS-2");
        assert_eq!(
            (Encoding::Gsm7.single_limit(), Encoding::Gsm7.part_limit()),
            (160, 153)
        );
        assert_eq!(
            (Encoding::Ucs2.single_limit(), Encoding::Ucs2.part_limit()),
            (70, 67)
        );
        assert_eq!(
            serde_json::to_string(&Encoding::Gsm7).ok().as_deref(),
            Some("\"GSM-7\"")
        );
        assert_eq!(
            serde_json::from_str::<Encoding>("\"UCS-2\"").ok(),
            Some(Encoding::Ucs2)
        );
    }

    #[test]
    fn estimate_serializes() {
        let json = serde_json::to_value(estimate("Hi")).ok();
        assert_eq!(
            json,
            Some(serde_json::json!({
                "encoding": "GSM-7", "characters": 2, "units": 2, "segments": 1, "parts": ["Hi"]
            }))
        );
    }

    #[test]
    fn alphabet_has_127_basic_and_10_extension_chars() {
        let all = (0..=u32::from(char::MAX)).filter_map(char::from_u32);
        let (mut basic, mut extension) = (0, 0);
        for c in all {
            match gsm7_septets(c) {
                Some(1) => basic += 1,
                Some(2) => extension += 1,
                Some(n) => panic!("{c:?} costs {n}"),
                None => {}
            }
        }
        // 128 code points minus the escape code.
        assert_eq!(basic, 127);
        assert_eq!(extension, 10);
        assert!(!is_gsm7('\u{1B}'));
        assert!(!is_gsm7('`'));
        assert!(!is_gsm7('ç'));
        assert!(!is_gsm7('\t'));
    }

    #[test]
    fn empty_text_has_no_segments() {
        let estimate = estimate("");
        assert_eq!(
            estimate,
            Estimate {
                encoding: Encoding::Gsm7,
                characters: 0,
                units: 0,
                segments: 0,
                parts: Vec::new(),
            }
        );
    }

    #[test]
    fn gsm7_boundaries() {
        for (len, segments) in [
            (1, 1),
            (160, 1),
            (161, 2),
            (306, 2),
            (307, 3),
            (459, 3),
            (460, 4),
        ] {
            assert_segments(&"a".repeat(len), Encoding::Gsm7, segments);
        }
    }

    #[test]
    fn gsm7_parts_are_153_septets() {
        let estimate = estimate(&"a".repeat(307));
        let lens: Vec<usize> = estimate.parts.iter().map(String::len).collect();
        assert_eq!(lens, [153, 153, 1]);
    }

    #[test]
    fn ucs2_boundaries() {
        for (len, segments) in [
            (1, 1),
            (70, 1),
            (71, 2),
            (134, 2),
            (135, 3),
            (201, 3),
            (202, 4),
        ] {
            assert_segments(&"ї".repeat(len), Encoding::Ucs2, segments);
        }
    }

    #[test]
    fn extension_chars_cost_two_septets() {
        let text = format!("{}€", "a".repeat(159));
        let estimate = estimate(&text);
        assert_eq!((estimate.characters, estimate.units), (160, 161));
        assert_eq!(estimate.segments, 2);

        let euros = estimate_units_segments(&"€".repeat(80));
        assert_eq!(euros, (Encoding::Gsm7, 160, 1));
        let euros = estimate_units_segments(&"€".repeat(81));
        assert_eq!(euros, (Encoding::Gsm7, 162, 2));
    }

    fn estimate_units_segments(text: &str) -> (Encoding, usize, usize) {
        let estimate = estimate(text);
        (estimate.encoding, estimate.units, estimate.segments)
    }

    #[test]
    fn escape_sequence_is_not_split_at_a_part_edge() {
        // 152 septets + a 2-septet € would be 154 > 153: the € opens part 2.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let estimate = estimate(&text);
        assert_eq!(estimate.segments, 2);
        assert_eq!(estimate.parts[0], "a".repeat(152));
        assert_eq!(units_of(&estimate.parts[0], Encoding::Gsm7), 152);
        assert!(estimate.parts[1].starts_with('€'));
    }

    #[test]
    fn surrogate_pair_is_not_split_at_a_part_edge() {
        // 66 units + a 2-unit emoji would be 68 > 67: the emoji opens part 2.
        let text = format!("{}😀{}", "ї".repeat(66), "ї".repeat(10));
        let estimate = estimate(&text);
        assert_eq!(estimate.encoding, Encoding::Ucs2);
        assert_eq!(estimate.units, 66 + 2 + 10);
        assert_eq!(estimate.segments, 2);
        assert_eq!(estimate.parts[0], "ї".repeat(66));
        assert!(estimate.parts[1].starts_with('😀'));
    }

    #[test]
    fn emoji_fits_exactly_at_the_end_of_a_part() {
        let text = format!("{}😀{}", "ї".repeat(65), "ї".repeat(10));
        let estimate = estimate(&text);
        assert_eq!(estimate.parts[0], format!("{}😀", "ї".repeat(65)));
    }

    #[test]
    fn mixed_cyrillic_and_emoji_counts() {
        let estimate = estimate("Привіт 😀");
        assert_eq!(estimate.encoding, Encoding::Ucs2);
        assert_eq!(estimate.characters, 8);
        assert_eq!(estimate.units, 9);
        assert_eq!(estimate.segments, 1);
        assert_eq!(estimate.parts, ["Привіт 😀"]);
    }

    #[test]
    fn one_non_gsm_char_switches_to_ucs2() {
        let text = format!("{}ї", "a".repeat(69));
        assert_eq!(encoding_of(&text[..69]), Encoding::Gsm7);
        assert_segments(&text, Encoding::Ucs2, 1);
        // The same 71 chars would be one GSM-7 SMS, but are two UCS-2 parts.
        let text = format!("{}ї", "a".repeat(70));
        assert_segments(&text, Encoding::Ucs2, 2);
        assert_eq!(encoding_of("Code 1234 `"), Encoding::Ucs2);
    }

    #[test]
    fn rarely_known_gsm_chars_stay_gsm7() {
        let estimate = estimate("ΔΦ£¥èÇ");
        assert_eq!(estimate.encoding, Encoding::Gsm7);
        assert_eq!((estimate.characters, estimate.units), (6, 6));
        assert_eq!(
            encoding_of("@$¤¡¿§ÆæßÉØøÅåÄÖÑÜäöñüàùìòéΓΛΩΠΨΣΘΞ_\r\n"),
            Encoding::Gsm7
        );
        assert_eq!(
            estimate_units_segments("\u{000C}^{}\\[~]|€"),
            (Encoding::Gsm7, 20, 1)
        );
    }

    /// Independent minimum: dynamic programming over every contiguous split of the
    /// per-character costs, with no greedy choice.
    fn minimal_parts(costs: &[usize], limit: usize) -> usize {
        let mut best = vec![usize::MAX; costs.len() + 1];
        best[0] = 0;
        for end in 1..=costs.len() {
            let mut sum = 0;
            for start in (0..end).rev() {
                sum += costs[start];
                if sum > limit {
                    break;
                }
                if best[start] != usize::MAX {
                    best[end] = best[end].min(best[start] + 1);
                }
            }
        }
        best[costs.len()]
    }

    fn mixed_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => proptest::char::range(' ', '~'),
            2 => proptest::sample::select(vec!['\u{000C}', '^', '{', '}', '\\', '[', '~', ']', '|', '€']),
            2 => proptest::char::range('а', 'я'),
            1 => proptest::sample::select(vec!['і', 'ї', 'є', 'ґ', 'І', 'Ї', 'Є', 'Ґ']),
            1 => proptest::sample::select(vec!['😀', '👍', '🇺', '\u{200D}', '𝄞']),
            2 => proptest::sample::select(vec!['Δ', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ']),
        ]
    }

    /// Texts that are mostly one kind, so that both encodings and long messages occur.
    fn text() -> impl Strategy<Value = String> {
        let gsm = prop_oneof![
            proptest::char::range('a', 'z'),
            proptest::sample::select(vec!['€', '[', 'Δ', 'Ψ', ' ', '\n']),
        ];
        prop_oneof![
            proptest::collection::vec(mixed_char(), 0..600),
            proptest::collection::vec(gsm, 0..600),
        ]
        .prop_map(|chars| chars.into_iter().collect())
    }

    fn check_invariants(text: &str) -> Result<(), TestCaseError> {
        let estimate = estimate(text);
        let encoding = estimate.encoding;
        prop_assert_eq!(encoding, encoding_of(text));
        prop_assert_eq!(estimate.characters, text.chars().count());
        prop_assert_eq!(estimate.parts.concat(), text);
        prop_assert_eq!(estimate.segments, estimate.parts.len());

        let costs: Vec<usize> = text
            .chars()
            .map(|c| match encoding {
                Encoding::Gsm7 => gsm7_septets(c).unwrap_or(usize::MAX),
                Encoding::Ucs2 => c.len_utf16(),
            })
            .collect();
        prop_assert_eq!(estimate.units, costs.iter().sum::<usize>());
        if encoding == Encoding::Ucs2 {
            prop_assert_eq!(estimate.units, text.encode_utf16().count());
        }

        let limit = if estimate.segments <= 1 {
            encoding.single_limit()
        } else {
            encoding.part_limit()
        };
        for part in &estimate.parts {
            prop_assert!(!part.is_empty());
            prop_assert!(
                units_of(part, encoding) <= limit,
                "part {part:?} over {limit}"
            );
        }

        if text.is_empty() {
            prop_assert_eq!(estimate.segments, 0);
        } else if estimate.units <= encoding.single_limit() {
            prop_assert_eq!(estimate.segments, 1);
        } else {
            prop_assert!(estimate.segments >= estimate.units.div_ceil(encoding.part_limit()));
            prop_assert_eq!(
                estimate.segments,
                minimal_parts(&costs, encoding.part_limit())
            );
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn invariants_hold_for_mixed_texts(text in text()) {
            check_invariants(&text)?;
        }

        #[test]
        fn invariants_hold_for_any_text(text in any::<String>()) {
            check_invariants(&text)?;
        }

        #[test]
        fn encoding_is_gsm7_iff_every_char_is(chars in proptest::collection::vec(mixed_char(), 0..50)) {
            let text: String = chars.iter().collect();
            let expected = if chars.iter().all(|&c| is_gsm7(c)) { Encoding::Gsm7 } else { Encoding::Ucs2 };
            prop_assert_eq!(encoding_of(&text), expected);
        }
    }
}
