//! Tracked links: every http(s) URL in a text asked to be tracked becomes a short link of its
//! own message, `<base>/<code>`, that redirects to the URL and counts who followed it.
//!
//! A code is 10 characters of `[0-9A-Za-z]` from a cryptographic generator seeded by the
//! operating system: 59.5 bits, so codes cannot be guessed or walked, and two links of the store share one with
//! a chance of about n²/2⁶¹ for n links kept (one in 10,000 at 10 million). The embedded store
//! refuses a code it holds already; on DynamoDB, whose batch writes cannot be conditional,
//! that chance is the bound. Every code has the same length, so a link's share of a message's
//! parts and cost is known before its code is drawn, and is the same for every recipient.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Characters of a code.
pub const CODE_LEN: usize = 10;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// The longest base a short link may have: a link longer than this saves nothing.
pub const MAX_BASE_LEN: usize = 64;
/// The most links of one message that are tracked; any further are left as written.
pub const MAX_LINKS: usize = 10;
/// The longest URL that is tracked; a longer one is left as written.
pub const MAX_URL_LEN: usize = 2048;

/// A short link's code.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShortCode(String);

impl ShortCode {
    /// A fresh code, from a cryptographic generator seeded by the operating system.
    pub fn random() -> Self {
        let mut rng = rand::rng();
        let code = (0..CODE_LEN)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect();
        ShortCode(code)
    }

    /// A code as it appears in a path: exactly [`CODE_LEN`] characters of `[0-9A-Za-z]`.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == CODE_LEN && raw.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| ShortCode(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShortCode({})", self.0)
    }
}

impl fmt::Display for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ShortCode {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        ShortCode::parse(&raw).ok_or_else(|| format!("not a short code: {raw:?}"))
    }
}

impl From<ShortCode> for String {
    fn from(code: ShortCode) -> String {
        code.0
    }
}

/// Where short links live: `http(s)://host[:port]`, without a path (the links are served at
/// `/<code>`), a query or a fragment; a link is the base, `/`, and its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortBase(String);

impl ShortBase {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim_end_matches('/');
        let url = url::Url::parse(trimmed).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{raw:?} is not an http(s) URL"));
        }
        if url.host_str().is_none_or(str::is_empty)
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(format!(
                "{raw:?} must be a scheme, a host, and at most a port"
            ));
        }
        if trimmed.len() > MAX_BASE_LEN || !trimmed.is_ascii() {
            return Err(format!(
                "{raw:?} must be ASCII and at most {MAX_BASE_LEN} characters"
            ));
        }
        Ok(ShortBase(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The short link of `code`.
    pub fn link(&self, code: &ShortCode) -> String {
        format!("{}/{}", self.0, code)
    }
}

/// One tracked link of a message: its code and the URL it stands for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedLink {
    pub code: ShortCode,
    pub url: String,
}

/// `Debug` never shows the URL: it is part of the message's text.
impl fmt::Debug for TrackedLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrackedLink({}, {} bytes)", self.code, self.url.len())
    }
}

/// `text` with every http(s) URL in it (up to [`MAX_LINKS`]) replaced by a short link under
/// `base` with a fresh code, and the links in the order they appear.
///
/// A URL starts with `http://` or `https://` (any case) at the start of the text or after a
/// character that is not a letter or digit, and runs to the next whitespace; punctuation
/// that ends a sentence (`.,;:!?` and closing quotes, or a `)` or `]` without its opening
/// one inside the URL) stays in the text. A candidate that does not parse as a URL with a
/// host is left as written.
pub fn rewrite(text: &str, base: &ShortBase) -> (String, Vec<TrackedLink>) {
    let mut out = String::with_capacity(text.len());
    let mut links = Vec::new();
    let mut rest = text;
    while let Some((start, end)) = next_url(rest) {
        if links.len() == MAX_LINKS {
            break;
        }
        let url = &rest[start..end];
        out.push_str(&rest[..start]);
        let code = ShortCode::random();
        out.push_str(&base.link(&code));
        links.push(TrackedLink {
            code,
            url: url.to_owned(),
        });
        rest = &rest[end..];
    }
    out.push_str(rest);
    (out, links)
}

/// The byte range of the first URL in `text` worth tracking.
fn next_url(text: &str) -> Option<(usize, usize)> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    loop {
        let found = lower[from..].find("http")? + from;
        from = found + 4;
        let after_scheme = if lower[found..].starts_with("https://") {
            found + 8
        } else if lower[found..].starts_with("http://") {
            found + 7
        } else {
            continue;
        };
        let preceded_by_word = text[..found]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric);
        if preceded_by_word {
            continue;
        }
        let run = text[after_scheme..]
            .find(char::is_whitespace)
            .map_or(text.len(), |n| after_scheme + n);
        let end = trim_trailing(&text[found..run]) + found;
        let candidate = &text[found..end];
        if end > after_scheme
            && candidate.len() <= MAX_URL_LEN
            && url::Url::parse(candidate).is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()))
        {
            return Some((found, end));
        }
        from = run.max(from);
    }
}

/// The length of `url` without the punctuation that ends the sentence around it.
fn trim_trailing(url: &str) -> usize {
    let mut end = url.len();
    loop {
        let Some(last) = url[..end].chars().next_back() else {
            return end;
        };
        let strip = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '"' | '\'' | '»' | '”' | '’' | '>' => true,
            ')' => url[..end].matches('(').count() < url[..end].matches(')').count(),
            ']' => url[..end].matches('[').count() < url[..end].matches(']').count(),
            _ => false,
        };
        if !strip {
            return end;
        }
        end -= last.len_utf8();
    }
}

/// Who followed a link, as far as its request tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visitor {
    /// A person (or at least not a known preview fetcher).
    Human,
    /// A link-preview fetcher or crawler: a messenger unfolding the link, a search engine,
    /// a command-line client, or a request without a user agent.
    Bot,
}

/// Parts of user agents that fetch links on nobody's click: messengers' and social networks'
/// preview fetchers, search and SEO crawlers, monitoring and command-line clients.
const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "preview",
    "facebookexternalhit",
    "facebookcatalog",
    "whatsapp",
    "viber",
    "telegram",
    "skypeuripreview",
    "slack",
    "discord",
    "linkedin",
    "pinterest",
    "embedly",
    "vkshare",
    "okhttp",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "java/",
    "apache-httpclient",
    "headlesschrome",
    "lighthouse",
    "pingdom",
    "uptime",
    "monitor",
    "scanner",
    "google-safety",
    "proofpoint",
    "mimecast",
];

/// Who a request with this `User-Agent` comes from.
pub fn visitor(user_agent: Option<&str>) -> Visitor {
    let Some(agent) = user_agent.map(str::trim).filter(|a| !a.is_empty()) else {
        return Visitor::Bot;
    };
    let agent = agent.to_ascii_lowercase();
    if BOT_MARKERS.iter().any(|m| agent.contains(m)) {
        Visitor::Bot
    } else {
        Visitor::Human
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ShortBase {
        ShortBase::parse("https://hlb.ua/").unwrap()
    }

    fn urls(text: &str) -> Vec<String> {
        rewrite(text, &base())
            .1
            .into_iter()
            .map(|l| l.url)
            .collect()
    }

    #[test]
    fn urls_are_found_where_people_write_them() {
        assert_eq!(
            urls("Знижка -20%: https://shop.ua/sale?id=5&x=1. Діє до неділі!"),
            ["https://shop.ua/sale?id=5&x=1"]
        );
        assert_eq!(
            urls("(див. http://a.ua/x) та «HTTPS://B.UA/Шлях»"),
            ["http://a.ua/x", "HTTPS://B.UA/Шлях"]
        );
        assert_eq!(
            urls("wiki: https://uk.wikipedia.org/wiki/Київ_(місто), ok"),
            ["https://uk.wikipedia.org/wiki/Київ_(місто)"]
        );
        assert_eq!(urls("xhttps://a.ua http:// https://?q ftp://a.ua"), [""; 0]);
        assert_eq!(urls("no links here, http is a word"), [""; 0]);
    }

    #[test]
    fn each_link_gets_its_own_code_and_the_rest_of_the_text_stays() {
        let text = "A https://a.ua/1 b https://a.ua/1, c";
        let (out, links) = rewrite(text, &base());
        assert_eq!(links.len(), 2);
        assert_ne!(links[0].code, links[1].code);
        assert_eq!(
            out,
            format!(
                "A https://hlb.ua/{} b https://hlb.ua/{}, c",
                links[0].code, links[1].code
            )
        );
        let many = "https://a.ua ".repeat(MAX_LINKS + 2);
        let (out, links) = rewrite(&many, &base());
        assert_eq!(links.len(), MAX_LINKS);
        assert_eq!(out.matches("https://a.ua").count(), 2);
    }

    #[test]
    fn codes_and_bases_hold_only_valid_values() {
        let code = ShortCode::random();
        assert_eq!(ShortCode::parse(code.as_str()), Some(code));
        for bad in ["", "abc", "abcdefghi!", "абвгдеєжзи", "abcdefghijk"] {
            assert_eq!(ShortCode::parse(bad), None, "{bad}");
        }
        assert_eq!(base().as_str(), "https://hlb.ua");
        assert_eq!(
            ShortBase::parse("http://127.0.0.1:8080").unwrap().as_str(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "hlb.ua",
            "ftp://hlb.ua",
            "https://hlb.ua/?q=1",
            "https://u:p@hlb.ua",
            "https://hlb.ua/#x",
            "https://hlb.ua/l",
        ] {
            assert!(ShortBase::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn preview_fetchers_are_told_from_people() {
        let human = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
                     (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(visitor(Some(human)), Visitor::Human);
        for bot in [
            "facebookexternalhit/1.1;line-poker/1.0",
            "TelegramBot (like TwitterBot)",
            "WhatsApp/2.23.20.0",
            "Viber/20.1",
            "Mozilla/5.0 (compatible; Googlebot/2.1)",
            "curl/8.5.0",
            "",
        ] {
            assert_eq!(visitor(Some(bot)), Visitor::Bot, "{bot}");
        }
        assert_eq!(visitor(None), Visitor::Bot);
    }
}
