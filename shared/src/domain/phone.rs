//! Phone numbers as people type them, parsed into E.164.
//!
//! Ukrainian numbers are parsed by hand, because the forms people really type (`0671234567`,
//! `8 067 …`, `380…` without a plus) and the mobile/landline split are Holub's own domain;
//! every other country goes through `phonenumber` (Google's libphonenumber metadata).
//! Mobile codes follow libphonenumber's Ukrainian metadata (2026).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A phone number that can receive SMS, in E.164 (`+380671234567`).
///
/// `Debug` prints the masked form, so a stray `{:?}` in a log line never leaks a number.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber {
    e164: String,
    operator: Operator,
    country: CountryCode,
}

/// An ISO 3166-1 alpha-2 country code, upper case (`UA`, `PL`): the country a number
/// belongs to, and what a tenant's destination policy lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub const UKRAINE: CountryCode = CountryCode(*b"UA");

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl std::str::FromStr for CountryCode {
    type Err = String;
    /// Two letters, either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Ok(CountryCode([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
            ])),
            _ => Err(format!(
                "{s:?} is not a country code (two letters, ISO 3166-1, such as UA)"
            )),
        }
    }
}

impl TryFrom<String> for CountryCode {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<CountryCode> for String {
    fn from(value: CountryCode) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Ukrainian mobile operator that owns a number's prefix. Number portability exists, so
/// this is a routing hint, not proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    Kyivstar,
    Vodafone,
    Lifecell,
    TriMob,
    PeopleNet,
    Intertelecom,
    /// Not a Ukrainian mobile prefix (numbers abroad).
    Other,
}

impl Operator {
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Kyivstar => "kyivstar",
            Operator::Vodafone => "vodafone",
            Operator::Lifecell => "lifecell",
            Operator::TriMob => "trimob",
            Operator::PeopleNet => "peoplenet",
            Operator::Intertelecom => "intertelecom",
            Operator::Other => "other",
        }
    }

    /// The operator of a Ukrainian two-digit mobile code, or `None` if it is not one.
    fn of_ukrainian_code(code: &str) -> Option<Operator> {
        Some(match code {
            "39" | "67" | "68" | "77" | "96" | "97" | "98" => Operator::Kyivstar,
            "50" | "66" | "75" | "95" | "99" => Operator::Vodafone,
            "63" | "73" | "93" => Operator::Lifecell,
            "91" => Operator::TriMob,
            "92" => Operator::PeopleNet,
            "94" => Operator::Intertelecom,
            _ => return None,
        })
    }
}

impl std::str::FromStr for Operator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Operator::Kyivstar,
            Operator::Vodafone,
            Operator::Lifecell,
            Operator::TriMob,
            Operator::PeopleNet,
            Operator::Intertelecom,
            Operator::Other,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| format!("unknown operator {s:?}"))
    }
}

/// Why a phone number was refused. Each variant has a stable machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the phone number is empty")]
    Empty,
    #[error("the phone number contains a character that is not a digit or a separator")]
    InvalidCharacter,
    #[error("the phone number is too short")]
    TooShort,
    #[error("the phone number is too long")]
    TooLong,
    #[error("short codes cannot receive SMS from Holub")]
    ShortCode,
    #[error("Ukrainian landline numbers cannot receive SMS")]
    Landline,
    #[error("the number is not a mobile number (toll-free, premium or shared-cost)")]
    NotMobile,
    #[error("the prefix is not a known Ukrainian mobile code")]
    UnknownPrefix,
    #[error("the number has no country code: write it as +<country code><number>")]
    MissingCountryCode,
    #[error("the number is not valid for its country")]
    InvalidInternational,
}

impl PhoneError {
    pub fn code(&self) -> &'static str {
        match self {
            PhoneError::Empty => "phone_empty",
            PhoneError::InvalidCharacter => "phone_invalid_character",
            PhoneError::TooShort => "phone_too_short",
            PhoneError::TooLong => "phone_too_long",
            PhoneError::ShortCode => "phone_short_code",
            PhoneError::Landline => "phone_landline",
            PhoneError::NotMobile => "phone_not_mobile",
            PhoneError::UnknownPrefix => "phone_unknown_prefix",
            PhoneError::MissingCountryCode => "phone_missing_country_code",
            PhoneError::InvalidInternational => "phone_invalid",
        }
    }
}

/// Ukrainian national significant numbers have 9 digits: a 2-digit code and 7 digits.
const UA_NSN_LEN: usize = 9;
/// E.164 allows at most 15 digits.
const E164_MAX_DIGITS: usize = 15;
/// Anything this short is a service short code, not a subscriber number.
const SHORT_CODE_MAX_DIGITS: usize = 6;

impl PhoneNumber {
    /// Parses what people type: `+380 67 123 45 67`, `380671234567`, `0671234567`,
    /// `(067) 123-45-67`, `8 067 123 45 67`, `00380…`, or any valid number abroad with `+`.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let mut digits = String::with_capacity(input.len());
        let mut plus = false;
        for (i, c) in input.trim().chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => plus = true,
                ' ' | '-' | '.' | '(' | ')' | '/' | '\t' | '\u{a0}' | '\u{2011}' | '\u{2013}' => {}
                _ => return Err(PhoneError::InvalidCharacter),
            }
        }
        if digits.is_empty() {
            return Err(PhoneError::Empty);
        }
        if digits.len() > E164_MAX_DIGITS + 2 {
            return Err(PhoneError::TooLong);
        }
        if plus {
            return Self::international(&digits);
        }
        if let Some(rest) = digits.strip_prefix("00") {
            return Self::international(rest);
        }
        if let Some(nsn) = digits.strip_prefix("380") {
            return Self::ukrainian(nsn);
        }
        // `8 0XX …` is the old long-distance prefix still typed in Ukraine.
        if digits.len() == UA_NSN_LEN + 2
            && let Some(nsn) = digits.strip_prefix("80")
        {
            return Self::ukrainian(nsn);
        }
        if let Some(nsn) = digits.strip_prefix('0') {
            return Self::ukrainian(nsn);
        }
        if digits.len() <= SHORT_CODE_MAX_DIGITS {
            return Err(PhoneError::ShortCode);
        }
        Err(PhoneError::MissingCountryCode)
    }

    fn ukrainian(nsn: &str) -> Result<Self, PhoneError> {
        // With a national or country prefix typed, a short number is a truncated one.
        if nsn.len() < UA_NSN_LEN {
            return Err(PhoneError::TooShort);
        }
        if nsn.len() > UA_NSN_LEN {
            return Err(PhoneError::TooLong);
        }
        let code = &nsn[..2];
        if let Some(operator) = Operator::of_ukrainian_code(code) {
            return Ok(PhoneNumber {
                e164: format!("+380{nsn}"),
                operator,
                country: CountryCode::UKRAINE,
            });
        }
        // Geographic area codes start with 3, 4, 5 or 6; 80x and 90x are toll-free and premium.
        Err(match nsn.as_bytes()[0] {
            b'3'..=b'6' => PhoneError::Landline,
            b'8' | b'9' => PhoneError::NotMobile,
            _ => PhoneError::UnknownPrefix,
        })
    }

    fn international(digits: &str) -> Result<Self, PhoneError> {
        if let Some(nsn) = digits.strip_prefix("380") {
            return Self::ukrainian(nsn);
        }
        if digits.len() <= SHORT_CODE_MAX_DIGITS {
            return Err(PhoneError::TooShort);
        }
        if digits.len() > E164_MAX_DIGITS {
            return Err(PhoneError::TooLong);
        }
        let parsed = phonenumber::parse(None, format!("+{digits}"))
            .map_err(|_| PhoneError::InvalidInternational)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneError::InvalidInternational);
        }
        use phonenumber::Type;
        use phonenumber::metadata::DATABASE;
        // Only ranges libphonenumber knows as mobile (or, where a country does not tell them
        // apart, fixed line or mobile) can take an SMS: landlines, toll-free, premium,
        // shared-cost, VoIP, pagers, personal and unknown ranges are refused. A range a
        // fraudster rents for SMS pumping is typically one of the latter.
        match parsed.number_type(&DATABASE) {
            Type::Mobile | Type::FixedLineOrMobile => {}
            _ => return Err(PhoneError::NotMobile),
        }
        // Numbers of no one country (+800, +882, …) have none.
        let country = parsed
            .metadata(&DATABASE)
            .and_then(|m| m.id().parse::<CountryCode>().ok())
            .ok_or(PhoneError::NotMobile)?;
        Ok(PhoneNumber {
            e164: parsed.format().mode(phonenumber::Mode::E164).to_string(),
            operator: Operator::Other,
            country,
        })
    }

    /// The number in E.164: `+380671234567`.
    pub fn as_e164(&self) -> &str {
        &self.e164
    }

    /// The E.164 digits without the plus, as most Ukrainian provider APIs want them.
    pub fn digits(&self) -> &str {
        &self.e164[1..]
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The country the number belongs to.
    pub fn country(&self) -> CountryCode {
        self.country
    }

    pub fn is_ukrainian(&self) -> bool {
        self.e164.starts_with("+380")
    }

    /// The number for logs: country and operator code kept, the subscriber part hidden but
    /// for its last two digits (`+38067*****67`).
    pub fn masked(&self) -> String {
        let digits = self.digits();
        let keep_head = 5.min(digits.len().saturating_sub(4));
        let keep_tail = 2;
        let hidden = digits.len() - keep_head - keep_tail;
        format!(
            "+{}{}{}",
            &digits[..keep_head],
            "*".repeat(hidden),
            &digits[digits.len() - keep_tail..]
        )
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PhoneNumber").field(&self.masked()).finish()
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        PhoneNumber::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.e164
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOBILE_CODES: [(&str, Operator); 18] = [
        ("39", Operator::Kyivstar),
        ("67", Operator::Kyivstar),
        ("68", Operator::Kyivstar),
        ("77", Operator::Kyivstar),
        ("96", Operator::Kyivstar),
        ("97", Operator::Kyivstar),
        ("98", Operator::Kyivstar),
        ("50", Operator::Vodafone),
        ("66", Operator::Vodafone),
        ("75", Operator::Vodafone),
        ("95", Operator::Vodafone),
        ("99", Operator::Vodafone),
        ("63", Operator::Lifecell),
        ("73", Operator::Lifecell),
        ("93", Operator::Lifecell),
        ("91", Operator::TriMob),
        ("92", Operator::PeopleNet),
        ("94", Operator::Intertelecom),
    ];

    #[test]
    fn every_ukrainian_mobile_prefix_in_every_typed_form() {
        for (code, operator) in MOBILE_CODES {
            let expected = format!("+380{code}1234567");
            let forms = [
                format!("+380{code}1234567"),
                format!("+380 {code} 123 45 67"),
                format!("380{code}1234567"),
                format!("0{code}1234567"),
                format!("(0{code}) 123-45-67"),
                format!("8 0{code} 123 45 67"),
                format!("80{code}1234567"),
                format!("00380{code}1234567"),
                format!(" +38 (0{code}) 123.45.67 "),
                format!("0{code}-123-45-67"),
            ];
            for form in forms {
                let n = PhoneNumber::parse(&form).unwrap_or_else(|e| panic!("{form}: {e}"));
                assert_eq!(n.as_e164(), expected, "{form}");
                assert_eq!(n.operator(), operator, "{form}");
                assert!(n.is_ukrainian());
            }
        }
    }

    #[test]
    fn bad_inputs_get_specific_errors() {
        let cases = [
            ("", PhoneError::Empty),
            ("   ", PhoneError::Empty),
            ("+", PhoneError::Empty),
            ("067 123 45 6x", PhoneError::InvalidCharacter),
            ("067+1234567", PhoneError::InvalidCharacter),
            ("tel:0671234567", PhoneError::InvalidCharacter),
            ("067123456", PhoneError::TooShort),
            ("+38067123456", PhoneError::TooShort),
            ("06712345678", PhoneError::TooLong),
            ("+3806712345678", PhoneError::TooLong),
            ("044 123 45 67", PhoneError::Landline),
            ("+380 32 123 45 67", PhoneError::Landline),
            ("0562 12 34 56", PhoneError::Landline),
            ("0 800 123 456", PhoneError::NotMobile),
            ("0900123456", PhoneError::NotMobile),
            ("0211234567", PhoneError::UnknownPrefix),
            ("0701234567", PhoneError::UnknownPrefix),
            ("7575", PhoneError::ShortCode),
            ("102", PhoneError::ShortCode),
            ("671234567", PhoneError::MissingCountryCode),
            ("+1 555", PhoneError::TooShort),
            ("+99 123 456 789", PhoneError::InvalidInternational),
            ("+1234567890123456", PhoneError::TooLong),
            ("12345678901234567890", PhoneError::TooLong),
        ];
        for (input, expected) in cases {
            assert_eq!(
                PhoneNumber::parse(input),
                Err(expected.clone()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn valid_numbers_abroad_are_accepted() {
        let cases = [
            ("+48 512 345 678", "+48512345678"),
            ("+49 1512 3456789", "+4915123456789"),
            ("+44 7400 123456", "+447400123456"),
            ("0048 512 345 678", "+48512345678"),
        ];
        for (input, e164) in cases {
            let n = PhoneNumber::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(n.as_e164(), e164);
            assert_eq!(n.operator(), Operator::Other);
            assert!(!n.is_ukrainian());
        }
        let countries: Vec<_> = cases
            .iter()
            .map(|(input, _)| PhoneNumber::parse(input).unwrap().country().to_string())
            .collect();
        assert_eq!(countries, ["PL", "DE", "GB", "PL"]);
        assert_eq!(
            PhoneNumber::parse("0671234567").unwrap().country(),
            CountryCode::UKRAINE
        );
    }

    #[test]
    fn premium_shared_cost_and_unknown_ranges_abroad_are_refused() {
        for input in [
            "+44 909 879 0000", // premium rate (UK 09)
            "+44 845 464 7000", // shared cost (UK 0845)
            "+44 56 0123 4567", // VoIP (UK 056)
            "+800 1234 5678",   // international freephone: no country
            "+882 1600 0000 0", // international networks: no country
        ] {
            assert!(
                PhoneNumber::parse(input).is_err(),
                "{input} should be refused"
            );
        }
    }

    #[test]
    fn country_codes_are_two_letters() {
        assert_eq!("ua".parse::<CountryCode>(), Ok(CountryCode::UKRAINE));
        for bad in ["", "U", "UKR", "1A", "У"] {
            assert!(bad.parse::<CountryCode>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn landlines_abroad_are_refused() {
        assert_eq!(
            PhoneNumber::parse("+48 22 123 45 67"),
            Err(PhoneError::NotMobile)
        );
    }

    #[test]
    fn masked_form_hides_the_subscriber() {
        let n = PhoneNumber::parse("0671234567").unwrap();
        assert_eq!(n.masked(), "+38067*****67");
        assert_eq!(format!("{n:?}"), "PhoneNumber(\"+38067*****67\")");
        let abroad = PhoneNumber::parse("+48512345678").unwrap();
        assert_eq!(abroad.masked(), "+48512****78");
    }

    #[test]
    fn serde_round_trips_through_e164() {
        let n: PhoneNumber = serde_json::from_str("\"(067) 123-45-67\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"+380671234567\"");
        assert!(serde_json::from_str::<PhoneNumber>("\"044 123 45 67\"").is_err());
    }
}
