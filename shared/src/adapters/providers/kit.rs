//! What every provider adapter needs and used to write for itself: reading its settings and
//! credentials, and one rule for status queries split into chunks. Transport errors are
//! mapped in [`http`](super::http); the "no lookup by our id" answer is the
//! [`SmsProvider::lookup`](crate::ports::SmsProvider::lookup) default; secrets are held as
//! [`Secret`], whose `Debug` never shows them, so adapters derive `Debug`.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use reqwest::Url;
use serde::de::DeserializeOwned;

use super::ProviderSetupError;
use crate::ports::{ProviderError, ProviderReceipt, Secret};

/// Reads one route's settings and credentials, naming the route in every error.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    pub name: &'a str,
}

impl<'a> Setup<'a> {
    pub fn new(name: &'a str) -> Self {
        Setup { name }
    }

    pub fn settings_error(&self, message: impl Into<String>) -> ProviderSetupError {
        ProviderSetupError::Settings {
            name: self.name.to_owned(),
            message: message.into(),
        }
    }

    pub fn credentials_error(&self, message: impl Into<String>) -> ProviderSetupError {
        ProviderSetupError::Credentials {
            name: self.name.to_owned(),
            message: message.into(),
        }
    }

    /// The route table's settings object (`null` is every default; anything but an object
    /// is refused). Unknown keys are refused by the type's `deny_unknown_fields`.
    pub fn settings<T: DeserializeOwned + Default>(
        &self,
        settings: serde_json::Value,
    ) -> Result<T, ProviderSetupError> {
        match settings {
            serde_json::Value::Null => Ok(T::default()),
            value @ serde_json::Value::Object(_) => {
                serde_json::from_value(value).map_err(|e| self.settings_error(e.to_string()))
            }
            _ => Err(self.settings_error("settings must be a JSON object")),
        }
    }

    /// The credentials, a JSON object in the secret. serde's message could quote part of
    /// the secret, so only a missing or unknown *field name* is passed on; anything else
    /// says what was `expected`.
    pub fn credentials<T: DeserializeOwned>(
        &self,
        secret: &Secret,
        expected: &str,
    ) -> Result<T, ProviderSetupError> {
        serde_json::from_str(secret.expose()).map_err(|e| {
            let text = e.to_string();
            let about_a_field =
                text.starts_with("missing field") || text.starts_with("unknown field");
            match text.split(" at line ").next() {
                Some(field) if about_a_field => self.credentials_error(field),
                _ => self.credentials_error(format!("expected {expected}")),
            }
        })
    }

    /// A credential that must not be blank; trimmed.
    pub fn required(&self, value: &str, what: &str) -> Result<Secret, ProviderSetupError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(self.credentials_error(format!("{what} is empty")));
        }
        Ok(Secret::new(value))
    }

    /// `base_url` (else `default`) as an http(s) URL without query or fragment, ending in
    /// `/` so that relative paths join under it.
    pub fn base_url(
        &self,
        base_url: Option<&str>,
        default: &str,
    ) -> Result<Url, ProviderSetupError> {
        let raw = base_url.unwrap_or(default);
        let mut url =
            Url::parse(raw).map_err(|e| self.settings_error(format!("base_url {raw:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https")
            || url.cannot_be_a_base()
            || url.host_str().is_none()
        {
            return Err(
                self.settings_error(format!("base_url must be an http(s) URL, not {raw:?}"))
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(self.settings_error("base_url must not have a query or fragment"));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(url)
    }

    /// `path` under a base URL made by [`Setup::base_url`].
    pub fn join(&self, base: &Url, path: &str) -> Result<Url, ProviderSetupError> {
        base.join(path.trim_start_matches('/'))
            .map_err(|e| self.settings_error(format!("base_url: {e}")))
    }

    /// `timeout_ms`: `None` keeps the client's default; it must be 1 to `max_ms`.
    pub fn timeout(
        &self,
        timeout_ms: Option<u64>,
        max_ms: u64,
    ) -> Result<Option<Duration>, ProviderSetupError> {
        match timeout_ms {
            None => Ok(None),
            Some(ms) if (1..=max_ms).contains(&ms) => Ok(Some(Duration::from_millis(ms))),
            Some(ms) => {
                Err(self.settings_error(format!("timeout_ms must be 1 to {max_ms}, not {ms}")))
            }
        }
    }
}

/// Which of the port's errors a row of a provider's error table makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Temporary,
    Permanent,
    /// The account cannot send (see [`ProviderError::Account`]).
    Account,
    Unknown,
}

impl ErrorKind {
    pub fn error(
        self,
        code: crate::domain::FailureCode,
        message: impl Into<String>,
    ) -> ProviderError {
        match self {
            ErrorKind::Temporary => ProviderError::temporary(code, message),
            ErrorKind::Permanent => ProviderError::permanent(code, message),
            ErrorKind::Account => ProviderError::account(code, message),
            ErrorKind::Unknown => ProviderError::unknown(code, message),
        }
    }

    /// The kind of an error, as tables in the documentation name it (`permanent`).
    pub fn of(e: &ProviderError) -> &'static str {
        match e {
            ProviderError::Temporary { .. } => "temporary",
            ProviderError::Permanent { .. } => "permanent",
            ProviderError::Account { .. } => "account",
            ProviderError::Unknown { .. } => "unknown",
        }
    }
}

/// The sender as every provider's API takes it: the alpha-name, or a number's digits.
pub fn sender(from: &crate::domain::SenderId) -> String {
    match from {
        crate::domain::SenderId::Alpha(name) => name.clone(),
        crate::domain::SenderId::Phone(number) => number.digits().to_owned(),
    }
}

/// The longest `timeout_ms` a route may set.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// A status query over many ids, as every polled provider runs it: the ids are split into
/// chunks of `chunk_size`, at most `concurrency` chunks are asked at once, and `query` asks
/// for one chunk.
///
/// **The rule for partial failures**: the receipts of every chunk that was answered are
/// returned, and the failures are logged (how many chunks, the first code). The call fails
/// only when *every* chunk failed, with the first chunk's error, because then the poll
/// itself failed (the provider is down, the credentials are refused) and the caller's
/// retry and breaker logic should see it. An id of a failed chunk simply has no news yet:
/// the next poll asks again. No ids, no request.
pub async fn status_in_chunks<'a, F, Fut>(
    provider: &str,
    ids: &'a [String],
    chunk_size: usize,
    concurrency: usize,
    query: F,
) -> Result<Vec<ProviderReceipt>, ProviderError>
where
    F: Fn(&'a [String]) -> Fut,
    Fut: Future<Output = Result<Vec<ProviderReceipt>, ProviderError>>,
{
    // Made up front, without a closure of our own: a closure over borrowed chunks makes the
    // future not provably `Send` in an `async_trait` method.
    let queries: Vec<Fut> = ids.chunks(chunk_size.max(1)).map(&query).collect();
    let asked = queries.len();
    let results: Vec<_> = futures::stream::iter(queries)
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut receipts = Vec::new();
    let mut first_error = None;
    let mut failed = 0usize;
    for result in results {
        match result {
            Ok(found) => receipts.extend(found),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if failed == asked => Err(e),
        Some(e) => {
            tracing::warn!(
                provider,
                failed,
                chunks = asked,
                code = %e.code(),
                "status query partly failed; the answered chunks' receipts are kept"
            );
            Ok(receipts)
        }
        None => Ok(receipts),
    }
}

/// Which JSON number literals [`quote_numbers`] turns into strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// Every number: ids and amounts are then read from their literal text.
    All,
    /// Only those with a fraction or exponent: integers stay numbers.
    Decimals,
}

/// Rewrites JSON number literals outside strings as strings holding their literal text
/// (`31.1683` → `"31.1683"`), so that amounts and long ids are read exactly, never through a
/// float. Anything that is not JSON stays not JSON.
pub fn quote_numbers(body: &[u8], which: Quote) -> Cow<'_, [u8]> {
    let is_number_byte = |b: u8| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E');
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < body.len() && is_number_byte(body[i]) {
                i += 1;
            }
            let token = &body[start..i];
            if which == Quote::All || token.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
                let out = out.get_or_insert_with(|| {
                    let mut v = Vec::with_capacity(body.len() + 16);
                    v.extend_from_slice(&body[..start]);
                    v
                });
                out.push(b'"');
                out.extend_from_slice(token);
                out.push(b'"');
            } else if let Some(out) = out.as_mut() {
                out.extend_from_slice(token);
            }
            continue;
        }
        if let Some(out) = out.as_mut() {
            out.push(b);
        }
        i += 1;
    }
    match out {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(body),
    }
}

/// The rows of a Markdown table in a module's documentation (`//! | a | b |` lines), found
/// by the first cell of its header; cells trimmed, backquotes dropped, `\|` kept as `|`. For
/// tests that check a module's documented table against its data.
#[cfg(test)]
pub fn doc_table(source: &str, first_header: &str) -> Vec<Vec<String>> {
    let cells = |line: &str| -> Vec<String> {
        let line = line.trim().trim_start_matches("//!").trim();
        let line = line.trim_start_matches('|').trim_end_matches('|');
        line.replace("\\|", "\u{1}")
            .split('|')
            .map(|c| c.replace('\u{1}', "|").replace('`', "").trim().to_owned())
            .collect()
    };
    let mut lines = source.lines().map(str::trim);
    let found = lines.by_ref().any(|line| {
        line.starts_with("//! |") && cells(line).first().is_some_and(|c| c == first_header)
    });
    assert!(found, "no documented table headed {first_header:?}");
    lines
        .take_while(|line| line.starts_with("//! |"))
        .filter(|line| !line.contains("---"))
        .map(cells)
        .collect()
}

/// What adapter tests build their messages and compare their bodies with.
#[cfg(test)]
pub mod testing {
    use crate::domain::{MessageId, PhoneNumber, SenderId, segments};
    use crate::ports::OutboundSms;

    /// A message as dispatch would hand it over: encoding and parts estimated from `text`.
    pub fn outbound(to: &str, from: &str, text: &str, validity_seconds: u32) -> OutboundSms {
        let estimate = segments::estimate(text);
        OutboundSms {
            id: MessageId::generate(chrono::Utc::now()),
            to: PhoneNumber::parse(to).expect("a valid number"),
            from: SenderId::parse(from).expect("a valid sender"),
            text: text.to_owned(),
            encoding: estimate.encoding,
            segments: u16::try_from(estimate.segments).expect("few parts"),
            validity_seconds,
        }
    }

    /// A documented JSON example without the whitespace between tokens, to compare bytes.
    pub fn minify(json: &str) -> String {
        let mut out = String::with_capacity(json.len());
        let (mut in_string, mut escaped) = (false, false);
        for c in json.chars() {
            if in_string {
                out.push(c);
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if !c.is_whitespace() {
                in_string = c == '"';
                out.push(c);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FailureCode;
    use crate::domain::status::ReceiptState;
    use crate::ports::provider::WHOLE_MESSAGE;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("id{i}")).collect()
    }

    fn receipt(id: &str) -> ProviderReceipt {
        ProviderReceipt {
            provider_message_id: id.to_owned(),
            part: WHOLE_MESSAGE,
            state: ReceiptState::Delivered,
            at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    /// A provider whose chunks containing an id in `failing` fail.
    async fn answer(
        chunk: &[String],
        failing: &[&str],
    ) -> Result<Vec<ProviderReceipt>, ProviderError> {
        if chunk.iter().any(|id| failing.contains(&id.as_str())) {
            return Err(ProviderError::temporary(
                FailureCode::ProviderUnavailable,
                "down",
            ));
        }
        Ok(chunk.iter().map(|id| receipt(id)).collect())
    }

    #[tokio::test]
    async fn answered_chunks_are_kept_when_others_fail() {
        let asked = AtomicUsize::new(0);
        let got = status_in_chunks("p", &ids(7), 3, 2, |chunk| {
            asked.fetch_add(1, Ordering::SeqCst);
            answer(chunk, &["id4"])
        })
        .await
        .unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 3);
        let got: Vec<_> = got.iter().map(|r| r.provider_message_id.as_str()).collect();
        assert_eq!(got, ["id0", "id1", "id2", "id6"]);
    }

    #[tokio::test]
    async fn the_call_fails_only_when_every_chunk_failed() {
        let e = status_in_chunks("p", &ids(4), 2, 4, |chunk| answer(chunk, &["id0", "id3"]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), FailureCode::ProviderUnavailable);
        let none =
            status_in_chunks("p", &[], 2, 4, |_| async { panic!("no ids, no request") }).await;
        assert_eq!(none, Ok(vec![]));
    }

    #[tokio::test]
    async fn at_most_the_bound_of_chunks_run_at_once() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        status_in_chunks("p", &ids(20), 1, 3, |chunk| {
            let (running, most) = (&running, &most);
            let chunk = chunk.to_vec();
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                running.fetch_sub(1, Ordering::SeqCst);
                answer(&chunk, &[]).await
            }
        })
        .await
        .unwrap();
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        #[serde(default)]
        base_url: Option<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Credentials {
        #[allow(dead_code)]
        token: String,
    }

    #[test]
    fn setup_reads_settings_and_never_quotes_the_secret() {
        let setup = Setup::new("r");
        let s: Settings = setup.settings(serde_json::Value::Null).unwrap();
        assert!(s.base_url.is_none());
        assert!(setup.settings::<Settings>(serde_json::json!([1])).is_err());
        assert!(
            setup
                .settings::<Settings>(serde_json::json!({"colour": 1}))
                .is_err()
        );
        let base = setup
            .base_url(Some("https://h.example/api"), "https://x")
            .unwrap();
        assert_eq!(
            setup.join(&base, "/send.json").unwrap().as_str(),
            "https://h.example/api/send.json"
        );
        for bad in ["ftp://h", "https://h/?q=1", "not a url"] {
            assert!(setup.base_url(Some(bad), "https://x").is_err(), "{bad}");
        }
        assert_eq!(setup.timeout(None, 10).unwrap(), None);
        assert!(setup.timeout(Some(0), 10).is_err() && setup.timeout(Some(11), 10).is_err());
        let secret = Secret::new(r#"{"token": 12345678901}"#);
        let e = setup
            .credentials::<Credentials>(&secret, "{\"token\": \"...\"}")
            .unwrap_err();
        assert!(!e.to_string().contains("12345678901"), "{e}");
        let e = setup
            .credentials::<Credentials>(&Secret::new(r#"{"tokn":"s3cr3t"}"#), "x")
            .unwrap_err();
        assert!(
            e.to_string().contains("unknown field") && !e.to_string().contains("s3cr3t"),
            "{e}"
        );
        assert!(setup.required("  ", "token").is_err());
    }
}
