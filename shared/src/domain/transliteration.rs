//! Ukrainian Cyrillic → Latin, by the official table.
//!
//! Source: resolution of the Cabinet of Ministers of Ukraine No. 55 of 27 January 2010
//! "On the regulation of transliteration of the Ukrainian alphabet into Latin". A Ukrainian
//! text sent in Latin letters fits GSM-7 and so costs less than half as many SMS parts as
//! the same text in UCS-2 (see [`crate::domain::segments`]).
//!
//! Rules of the table applied here:
//! - `є ї й ю я` have a word-initial form (`ye yi y yu ya`) and another one (`ie i i iu ia`);
//! - `зг` becomes `zgh`, so it is not read as `ж` (`zh`);
//! - the soft sign `ь` and the apostrophe (`'`, `’`, `ʼ` between two Cyrillic letters) are
//!   omitted.
//!
//! Beyond the table (choices of this module, not of the resolution):
//! - capital letters give a capitalised group (`Щ` → `Shch`), or an all-caps one (`SHCH`) when
//!   the previous or next letter is uppercase, so `КИЇВ` → `KYIV`;
//! - the Russian-only letters, which the table does not cover, map conservatively:
//!   `ы` → `y`, `э` → `e`, `ъ` omitted, `ё` → `yo` (word-initial) / `io`;
//! - `й ї ё` written decomposed (a base letter and a combining breve/diaeresis, as some
//!   keyboards and macOS produce) are treated as the composed letter;
//! - everything else (digits, Latin, punctuation, other Cyrillic letters) passes through
//!   unchanged.

/// Apostrophes used in Ukrainian words: ASCII, the right single quotation mark and the
/// modifier letter apostrophe recommended by Unicode for Ukrainian.
fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{02BC}')
}

/// A letter for word boundaries and case. `ʼ` (U+02BC) is alphabetic to Unicode, but it is an
/// apostrophe here.
fn is_letter(c: char) -> bool {
    c.is_alphabetic() && !is_apostrophe(c)
}

/// The lowercase form of a letter the table (or its Russian extension) knows, and whether it
/// was uppercase.
fn table_letter(c: char) -> Option<(char, bool)> {
    let mut lower = c.to_lowercase();
    let (Some(l), None) = (lower.next(), lower.next()) else {
        return None;
    };
    latin(l, false, false).map(|_| (l, l != c))
}

/// The Latin group for the lowercase Cyrillic letter `c`.
fn latin(c: char, word_initial: bool, after_z: bool) -> Option<&'static str> {
    let initial_or = |initial, other| if word_initial { initial } else { other };
    Some(match c {
        'а' => "a",
        'б' => "b",
        'в' => "v",
        'г' if after_z => "gh",
        'г' => "h",
        'ґ' => "g",
        'д' => "d",
        'е' => "e",
        'є' => initial_or("ye", "ie"),
        'ж' => "zh",
        'з' => "z",
        'и' => "y",
        'і' => "i",
        'ї' => initial_or("yi", "i"),
        'й' => initial_or("y", "i"),
        'к' => "k",
        'л' => "l",
        'м' => "m",
        'н' => "n",
        'о' => "o",
        'п' => "p",
        'р' => "r",
        'с' => "s",
        'т' => "t",
        'у' => "u",
        'ф' => "f",
        'х' => "kh",
        'ц' => "ts",
        'ч' => "ch",
        'ш' => "sh",
        'щ' => "shch",
        'ь' => "",
        'ю' => initial_or("yu", "iu"),
        'я' => initial_or("ya", "ia"),
        // Russian-only letters, outside the table.
        'ы' => "y",
        'э' => "e",
        'ъ' => "",
        'ё' => initial_or("yo", "io"),
        _ => return None,
    })
}

/// Composes `й ї ё` written as a base letter plus a combining mark, so that the table sees
/// one letter and no stray combining mark survives into the (GSM-7) output.
fn compose(text: &str) -> Vec<char> {
    let mut chars: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        let composed = match (chars.last(), c) {
            (Some('и'), '\u{0306}') => Some('й'),
            (Some('И'), '\u{0306}') => Some('Й'),
            (Some('і'), '\u{0308}') => Some('ї'),
            (Some('І'), '\u{0308}') => Some('Ї'),
            (Some('е'), '\u{0308}') => Some('ё'),
            (Some('Е'), '\u{0308}') => Some('Ё'),
            _ => None,
        };
        match (composed, chars.last_mut()) {
            (Some(composed), Some(last)) => *last = composed,
            _ => chars.push(c),
        }
    }
    chars
}

/// The letter next to `index` (after it if `forward`), looking across one apostrophe, since
/// an apostrophe inside a word does not end it.
fn neighbour_letter(chars: &[char], index: usize, forward: bool) -> Option<char> {
    let at = |i: usize| {
        if forward {
            index.checked_add(i).and_then(|j| chars.get(j))
        } else {
            index.checked_sub(i).and_then(|j| chars.get(j))
        }
        .copied()
    };
    match at(1)? {
        c if is_letter(c) => Some(c),
        c if is_apostrophe(c) => at(2).filter(|&c| is_letter(c)),
        _ => None,
    }
}

/// Transliterates Ukrainian Cyrillic in `text` to Latin by the official table (CMU
/// resolution No. 55 of 2010); other characters pass through unchanged.
///
/// Never panics; a text with no Cyrillic letters is returned as it is.
#[must_use]
pub fn transliterate(text: &str) -> String {
    let chars = compose(text);
    let mut out = String::with_capacity(text.len());
    for (index, &c) in chars.iter().enumerate() {
        let previous = index.checked_sub(1).and_then(|i| chars.get(i)).copied();
        let next = chars.get(index + 1).copied();

        if is_apostrophe(c) {
            let in_word =
                previous.and_then(table_letter).is_some() && next.and_then(table_letter).is_some();
            if !in_word {
                out.push(c);
            }
            continue;
        }

        let Some((lower, upper)) = table_letter(c) else {
            out.push(c);
            continue;
        };
        let word_initial = neighbour_letter(&chars, index, false).is_none();
        let after_z = matches!(previous, Some('з' | 'З'));
        let Some(group) = latin(lower, word_initial, after_z) else {
            out.push(c);
            continue;
        };

        if !upper {
            out.push_str(group);
        } else if [false, true]
            .into_iter()
            .filter_map(|forward| neighbour_letter(&chars, index, forward))
            .any(char::is_uppercase)
        {
            out.push_str(&group.to_ascii_uppercase());
        } else {
            let mut letters = group.chars();
            if let Some(first) = letters.next() {
                out.push(first.to_ascii_uppercase());
                out.push_str(letters.as_str());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::segments::{Encoding, encoding_of};
    use proptest::prelude::*;

    /// The examples printed in the resolution's table.
    const OFFICIAL_EXAMPLES: &[(&str, &str)] = &[
        ("Алушта", "Alushta"),
        ("Борщагівка", "Borshchahivka"),
        ("Вишгород", "Vyshhorod"),
        ("Гадяч", "Hadiach"),
        ("Згорани", "Zghorany"),
        ("Ґалаґан", "Galagan"),
        ("Дон", "Don"),
        ("Рівне", "Rivne"),
        ("Єнакієве", "Yenakiieve"),
        ("Наталія", "Nataliia"),
        ("Житомир", "Zhytomyr"),
        ("Запоріжжя", "Zaporizhzhia"),
        ("Медвин", "Medvyn"),
        ("Іршава", "Irshava"),
        ("Їжакевич", "Yizhakevych"),
        ("Кадиївка", "Kadyivka"),
        ("Йосипівка", "Yosypivka"),
        ("Стрий", "Stryi"),
        ("Київ", "Kyiv"),
        ("Лебедин", "Lebedyn"),
        ("Миколаїв", "Mykolaiv"),
        ("Ніжин", "Nizhyn"),
        ("Одеса", "Odesa"),
        ("Полтава", "Poltava"),
        ("Ромни", "Romny"),
        ("Суми", "Sumy"),
        ("Тетерів", "Teteriv"),
        ("Ужгород", "Uzhhorod"),
        ("Фастів", "Fastiv"),
        ("Харків", "Kharkiv"),
        ("Біла Церква", "Bila Tserkva"),
        ("Чернівці", "Chernivtsi"),
        ("Шостка", "Shostka"),
        ("Гоща", "Hoshcha"),
        ("Русь", "Rus"),
        ("Юрій", "Yurii"),
        ("Крюківка", "Kriukivka"),
        ("Яготин", "Yahotyn"),
        ("Ічня", "Ichnia"),
        ("Знам'янка", "Znamianka"),
        ("Розгон", "Rozghon"),
    ];

    #[test]
    fn official_examples() {
        for &(cyrillic, latin) in OFFICIAL_EXAMPLES {
            assert_eq!(transliterate(cyrillic), latin, "{cyrillic}");
        }
    }

    #[test]
    fn official_examples_in_lowercase() {
        for &(cyrillic, latin) in OFFICIAL_EXAMPLES {
            let lower = cyrillic.to_lowercase();
            assert_eq!(transliterate(&lower), latin.to_lowercase(), "{lower}");
        }
    }

    #[test]
    fn sentence_with_punctuation_and_digits() {
        assert_eq!(
            transliterate("Ваш код: 4821. Дякуємо, що обрали \"Голуб\"! Знижка -15% до 31.12."),
            "Vash kod: 4821. Diakuiemo, shcho obraly \"Holub\"! Znyzhka -15% do 31.12."
        );
        assert_eq!(
            transliterate("Об'єкт, м’ята й п’ять ягід: 2 грн."),
            "Obiekt, miata y piat yahid: 2 hrn."
        );
    }

    #[test]
    fn uppercase_words_stay_uppercase() {
        assert_eq!(transliterate("КИЇВ"), "KYIV");
        assert_eq!(transliterate("ЗГОРАНИ"), "ZGHORANY");
        assert_eq!(transliterate("ЯКЩО ЩЕ"), "YAKSHCHO SHCHE");
        assert_eq!(transliterate("ЗНАМ'ЯНКА"), "ZNAMIANKA");
        assert_eq!(transliterate("УВАГА: ЄС"), "UVAHA: YES");
    }

    #[test]
    fn capitals_are_capitalised_groups() {
        assert_eq!(transliterate("Щука"), "Shchuka");
        assert_eq!(transliterate("Щ."), "Shch.");
        assert_eq!(transliterate("Юлія Чорна"), "Yuliia Chorna");
        assert_eq!(transliterate("ПриватБанк"), "PryvatBank");
    }

    #[test]
    fn word_initial_forms() {
        // After a non-letter, a new word starts; after an in-word apostrophe it does not.
        assert_eq!(transliterate("є, ї-я (ю)"), "ye, yi-ya (yu)");
        assert_eq!(transliterate("'Єва'"), "'Yeva'");
        assert_eq!(transliterate("п'ю"), "piu");
        assert_eq!(transliterate("5є"), "5ye");
        assert_eq!(transliterate("Їй"), "Yii");
    }

    #[test]
    fn apostrophes_outside_cyrillic_words_pass_through() {
        assert_eq!(transliterate("rock'n'roll"), "rock'n'roll");
        assert_eq!(transliterate("O’Neil"), "O’Neil");
        assert_eq!(transliterate("мʼята"), "miata");
        assert_eq!(transliterate("'так'"), "'tak'");
    }

    #[test]
    fn russian_letters_outside_the_table() {
        assert_eq!(transliterate("мыло"), "mylo");
        assert_eq!(transliterate("Эхо"), "Ekho");
        assert_eq!(transliterate("объём"), "obiom");
        assert_eq!(transliterate("Ёлка"), "Yolka");
    }

    #[test]
    fn decomposed_letters_are_composed() {
        assert_eq!(transliterate("Стри\u{0438}\u{0306}"), "Stryi");
        assert_eq!(transliterate("Ки\u{0456}\u{0308}в"), "Kyiv");
        assert_eq!(transliterate("\u{0406}\u{0308}жак"), "Yizhak");
        // A combining mark on anything else is left alone.
        assert_eq!(transliterate("a\u{0306}"), "a\u{0306}");
    }

    #[test]
    fn other_text_passes_through() {
        assert_eq!(transliterate(""), "");
        assert_eq!(transliterate("Hello, 123! 😀 «»"), "Hello, 123! 😀 «»");
        // Cyrillic letters of other languages are not in the table.
        assert_eq!(transliterate("ў ђ"), "ў ђ");
    }

    fn ukrainian_letter() -> impl Strategy<Value = char> {
        proptest::sample::select(
            "абвгґдеєжзиіїйклмнопрстуфхцчшщьюяАБВГҐДЕЄЖЗИІЇЙКЛМНОПРСТУФХЦЧШЩЬЮЯ"
                .chars()
                .collect::<Vec<_>>(),
        )
    }

    /// Words of Ukrainian letters, possibly with an apostrophe of any kind inside, separated
    /// by spaces or ASCII punctuation.
    fn ukrainian_text() -> impl Strategy<Value = String> {
        let chunk = proptest::collection::vec(ukrainian_letter(), 1..6)
            .prop_map(|letters| letters.into_iter().collect::<String>());
        let word = (
            proptest::collection::vec(chunk, 1..4),
            proptest::sample::select(vec!["'", "\u{2019}", "\u{02BC}"]),
        )
            .prop_map(|(chunks, apostrophe)| chunks.join(apostrophe));
        let separator = proptest::sample::select(vec![" ", ", ", ". ", "-", "\n", "!"]);
        proptest::collection::vec((word, separator), 0..20).prop_map(|words| {
            words
                .into_iter()
                .flat_map(|(word, separator)| [word, separator.to_owned()])
                .collect()
        })
    }

    fn is_cyrillic(c: char) -> bool {
        ('\u{0400}'..='\u{052F}').contains(&c)
    }

    proptest! {
        #[test]
        fn ukrainian_text_becomes_gsm7(text in ukrainian_text()) {
            let out = transliterate(&text);
            prop_assert_eq!(encoding_of(&out), Encoding::Gsm7, "{:?} -> {:?}", text, out);
            prop_assert!(out.is_ascii());
        }

        #[test]
        fn letters_only_become_gsm7(letters in proptest::collection::vec(ukrainian_letter(), 0..100)) {
            let text: String = letters.into_iter().collect();
            prop_assert_eq!(encoding_of(&transliterate(&text)), Encoding::Gsm7);
        }

        #[test]
        fn ascii_is_unchanged(text in "[\\x00-\\x7F]*") {
            prop_assert_eq!(transliterate(&text), text);
        }

        #[test]
        fn text_without_cyrillic_is_unchanged(text in any::<String>()) {
            let text: String = text.chars().filter(|&c| !is_cyrillic(c)).collect();
            prop_assert_eq!(transliterate(&text), text);
        }

        #[test]
        fn never_panics(text in any::<String>()) {
            let _ = transliterate(&text);
        }
    }
}
