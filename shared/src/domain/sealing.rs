//! Sealing of what a tenant's messages say and to whom, at rest: each tenant has its own data
//! key (wrapped by a master key that never leaves the key service: KMS on AWS, the local
//! secret store on one machine), and a stored message holds its number and text only sealed
//! under it. Erasing the wrapped data key leaves everything sealed under it unreadable,
//! backups and copies included.
//!
//! - **Sealing** is XChaCha20-Poly1305 with a random 192-bit nonce per value: no counter to
//!   keep, and no practical limit on how many values one key seals (a 96-bit random nonce
//!   would allow about 2³² before the risk of a repeat matters; a busy tenant reaches that).
//!   The associated data names the record (tenant and message id), so a sealed value copied
//!   into another record does not open there.
//! - **Tags** of a number (HMAC-SHA-256 under a key derived from the data key, cut to 128
//!   bits) let the store find a tenant's messages to one number without holding the number:
//!   equal numbers have equal tags within a tenant, and nothing else can be learned from a tag
//!   without the key.
//!
//! The data key is 32 random bytes; the sealing and tagging keys are derived from it with
//! HMAC-SHA-256 as the PRF (one HKDF-Expand block), so one wrapped secret serves both.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{ConsentEntry, ContactId, Details, MessageId, PhoneNumber, TenantId, TrackedLink};

/// The length of a data key in bytes.
pub const DATA_KEY_BYTES: usize = 32;

/// The first byte of every sealed value: the format, so a later one can be told apart.
const FORMAT_V1: u8 = 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// The length of a number's tag.
pub const NUMBER_TAG_BYTES: usize = 16;

/// A tenant's data key, ready to seal, open and tag. `Debug` never shows it.
#[derive(Clone)]
pub struct DataKey {
    cipher: XChaCha20Poly1305,
    tagger: Hmac<Sha256>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(***)")
    }
}

/// A sealed value that does not open: wrong key, wrong record, damaged, or not sealed at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sealed value does not open: {0}")]
pub struct SealError(&'static str);

fn derive(key: &[u8; DATA_KEY_BYTES], label: &[u8]) -> [u8; 32] {
    // HKDF-Expand with the data key as PRK, `label` as info, one block.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(label);
    mac.update(&[1]);
    mac.finalize().into_bytes().into()
}

impl DataKey {
    /// The key from its 32 bytes (as unwrapped from the key service).
    pub fn from_bytes(bytes: &[u8; DATA_KEY_BYTES]) -> DataKey {
        let seal = derive(bytes, b"holub/seal/v1");
        let tag = derive(bytes, b"holub/number-tag/v1");
        DataKey {
            cipher: XChaCha20Poly1305::new(&seal.into()),
            tagger: <Hmac<Sha256> as Mac>::new_from_slice(&tag).expect("HMAC takes any key length"),
        }
    }

    /// The key from a slice, which must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<DataKey, SealError> {
        let bytes: &[u8; DATA_KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| SealError("a data key is 32 bytes"))?;
        Ok(DataKey::from_bytes(bytes))
    }

    /// Seals `plain` for the record named by `context`.
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Vec<u8> {
        // From the thread's CSPRNG (ChaCha12, seeded and reseeded from the OS): as
        // unpredictable as the OS's, without a system call per value sealed.
        let mut nonce = XNonce::default();
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: context,
                },
            )
            // Encryption fails only for inputs of about 256 GiB.
            .expect("a value this size can be sealed");
        let mut out = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`DataKey::seal`] sealed for the same `context`.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&format, rest) = sealed.split_first().ok_or(SealError("empty"))?;
        if format != FORMAT_V1 {
            return Err(SealError("unknown format"));
        }
        if rest.len() < NONCE_BYTES + TAG_BYTES {
            return Err(SealError("too short"));
        }
        let (nonce, body) = rest.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context,
                },
            )
            .map_err(|_| SealError("wrong key, wrong record, or damaged"))
    }

    /// The tag of a number: equal for equal numbers under this key, and nothing more.
    pub fn number_tag(&self, number: &PhoneNumber) -> [u8; NUMBER_TAG_BYTES] {
        let mut mac = self.tagger.clone();
        mac.update(number.as_e164().as_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0; NUMBER_TAG_BYTES];
        tag.copy_from_slice(&full[..NUMBER_TAG_BYTES]);
        tag
    }

    /// Seals a message's number and text together, for the record of `tenant`'s message `id`.
    pub fn seal_message(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        to: &PhoneNumber,
        text: &str,
    ) -> Vec<u8> {
        let to = to.as_e164().as_bytes();
        let mut plain = Vec::with_capacity(1 + to.len() + text.len());
        // An E.164 number is at most 16 bytes, so its length fits one byte.
        plain.push(u8::try_from(to.len()).unwrap_or(u8::MAX));
        plain.extend_from_slice(to);
        plain.extend_from_slice(text.as_bytes());
        self.seal(&message_context(tenant, id), &plain)
    }

    /// Opens what [`DataKey::seal_message`] sealed: the number and the text.
    pub fn open_message(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        sealed: &[u8],
    ) -> Result<(PhoneNumber, String), SealError> {
        let plain = self.open(&message_context(tenant, id), sealed)?;
        let (&len, rest) = plain.split_first().ok_or(SealError("empty message"))?;
        let len = usize::from(len);
        if rest.len() < len {
            return Err(SealError("number cut short"));
        }
        let (to, text) = rest.split_at(len);
        let to = std::str::from_utf8(to)
            .ok()
            .and_then(|to| PhoneNumber::parse(to).ok())
            .ok_or(SealError("not a number"))?;
        let text = String::from_utf8(text.to_vec()).map_err(|_| SealError("text not UTF-8"))?;
        Ok((to, text))
    }

    /// Seals the tracked links of `tenant`'s message `id` (their URLs are part of its text).
    pub fn seal_links(&self, tenant: &TenantId, id: &MessageId, links: &[TrackedLink]) -> Vec<u8> {
        let plain = serde_json::to_vec(links).unwrap_or_default();
        self.seal(&links_context(tenant, id), &plain)
    }

    /// Opens what [`DataKey::seal_links`] sealed.
    pub fn open_links(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        sealed: &[u8],
    ) -> Result<Vec<TrackedLink>, SealError> {
        let plain = self.open(&links_context(tenant, id), sealed)?;
        serde_json::from_slice(&plain).map_err(|_| SealError("not sealed links"))
    }

    /// Seals one consent ledger entry of `tenant`'s number with tag `tag` (its evidence may
    /// name a person).
    pub fn seal_consent(
        &self,
        tenant: &TenantId,
        tag: &[u8; NUMBER_TAG_BYTES],
        entry: &ConsentEntry,
    ) -> Vec<u8> {
        let plain = serde_json::to_vec(entry).unwrap_or_default();
        self.seal(&consent_context(tenant, tag), &plain)
    }

    /// Opens what [`DataKey::seal_consent`] sealed.
    pub fn open_consent(
        &self,
        tenant: &TenantId,
        tag: &[u8; NUMBER_TAG_BYTES],
        sealed: &[u8],
    ) -> Result<ConsentEntry, SealError> {
        let plain = self.open(&consent_context(tenant, tag), sealed)?;
        serde_json::from_slice(&plain).map_err(|_| SealError("not a sealed consent entry"))
    }

    /// Seals a contact's number and details (`tenant`'s contact `id`).
    pub fn seal_contact(
        &self,
        tenant: &TenantId,
        id: &ContactId,
        phone: &PhoneNumber,
        details: &Details,
    ) -> Vec<u8> {
        let plain = serde_json::to_vec(&(phone.as_e164(), details)).unwrap_or_default();
        self.seal(&contact_context(tenant, id), &plain)
    }

    /// Opens what [`DataKey::seal_contact`] sealed.
    pub fn open_contact(
        &self,
        tenant: &TenantId,
        id: &ContactId,
        sealed: &[u8],
    ) -> Result<(PhoneNumber, Details), SealError> {
        let plain = self.open(&contact_context(tenant, id), sealed)?;
        let (phone, details): (String, Details) =
            serde_json::from_slice(&plain).map_err(|_| SealError("not a sealed contact"))?;
        let phone =
            PhoneNumber::parse(&phone).map_err(|_| SealError("a sealed contact's number"))?;
        Ok((phone, details))
    }

    /// Seals what an idempotency record keeps of a request of `tenant` under `key`: the
    /// request's fingerprint and the answer given. (The fingerprint is a hash of the whole
    /// request, number and text included, so it is no more kept in clear than they are.)
    pub fn seal_answer(
        &self,
        tenant: &TenantId,
        key: &str,
        fingerprint: &str,
        body: &serde_json::Value,
    ) -> Vec<u8> {
        let plain = serde_json::json!({"f": fingerprint, "b": body}).to_string();
        self.seal(&answer_context(tenant, key), plain.as_bytes())
    }

    /// Opens what [`DataKey::seal_answer`] sealed: the fingerprint and the answer.
    pub fn open_answer(
        &self,
        tenant: &TenantId,
        key: &str,
        sealed: &[u8],
    ) -> Result<(String, serde_json::Value), SealError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            f: String,
            b: serde_json::Value,
        }
        let plain = self.open(&answer_context(tenant, key), sealed)?;
        let answer: Answer =
            serde_json::from_slice(&plain).map_err(|_| SealError("not a sealed answer"))?;
        Ok((answer.f, answer.b))
    }

    /// What a store keeps in place of a request's fingerprint: a keyed tag of it, equal for
    /// equal fingerprints and telling nothing else (hexadecimal).
    pub fn fingerprint_tag(&self, fingerprint: &str) -> String {
        let mut mac = self.tagger.clone();
        // A number is tagged as its E.164 form, which starts with `+`: no overlap.
        mac.update(b"fingerprint\0");
        mac.update(fingerprint.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..NUMBER_TAG_BYTES])
    }
}

fn message_context(tenant: &TenantId, id: &MessageId) -> Vec<u8> {
    format!("holub/message/v1\0{}\0{id}", tenant.as_str()).into_bytes()
}

fn contact_context(tenant: &TenantId, id: &ContactId) -> Vec<u8> {
    format!("holub/contact/v1\0{}\0{id}", tenant.as_str()).into_bytes()
}

fn consent_context(tenant: &TenantId, tag: &[u8; NUMBER_TAG_BYTES]) -> Vec<u8> {
    let mut context = format!("holub/consent/v1\0{}\0", tenant.as_str()).into_bytes();
    context.extend_from_slice(tag);
    context
}

fn links_context(tenant: &TenantId, id: &MessageId) -> Vec<u8> {
    format!("holub/links/v1\0{}\0{id}", tenant.as_str()).into_bytes()
}

fn answer_context(tenant: &TenantId, key: &str) -> Vec<u8> {
    format!("holub/answer/v2\0{}\0{key}", tenant.as_str()).into_bytes()
}

/// 32 fresh random bytes for a new data key (where no key service makes them).
pub fn new_data_key() -> [u8; DATA_KEY_BYTES] {
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut bytes = [0; DATA_KEY_BYTES];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::generate(chrono::Utc::now())
    }

    fn key() -> DataKey {
        DataKey::from_bytes(&new_data_key())
    }

    #[test]
    fn a_message_opens_with_its_key_and_record_only() {
        let (k, other) = (key(), key());
        let (t, id) = (tenant(), MessageId::generate(chrono::Utc::now()));
        let to = PhoneNumber::parse("+380671234567").unwrap();
        let sealed = k.seal_message(&t, &id, &to, "Код 4821 — дійсний 5 хв");
        let hay = String::from_utf8_lossy(&sealed);
        assert!(!hay.contains("380671234567") && !hay.contains("4821"));
        assert_eq!(
            k.open_message(&t, &id, &sealed).unwrap(),
            (to.clone(), "Код 4821 — дійсний 5 хв".to_owned())
        );
        assert!(other.open_message(&t, &id, &sealed).is_err());
        assert!(k.open_message(&tenant(), &id, &sealed).is_err());
        assert!(
            k.open_message(&t, &MessageId::generate(chrono::Utc::now()), &sealed)
                .is_err()
        );
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(k.open_message(&t, &id, &damaged).is_err());
        // Two seals of the same value differ (fresh nonces).
        assert_ne!(
            sealed,
            k.seal_message(&t, &id, &to, "Код 4821 — дійсний 5 хв")
        );
    }

    #[test]
    fn tags_are_equal_for_equal_numbers_under_one_key_only() {
        let (k, other) = (key(), key());
        let a = PhoneNumber::parse("+380671234567").unwrap();
        let b = PhoneNumber::parse("+380671234568").unwrap();
        assert_eq!(k.number_tag(&a), k.number_tag(&a));
        assert_ne!(k.number_tag(&a), k.number_tag(&b));
        assert_ne!(k.number_tag(&a), other.number_tag(&a));
    }

    #[test]
    fn garbage_never_opens_and_never_panics() {
        let (k, t, id) = (key(), tenant(), MessageId::generate(chrono::Utc::now()));
        for len in 0..80 {
            for byte in [0u8, 1, 0xff] {
                assert!(k.open_message(&t, &id, &vec![byte; len]).is_err());
            }
        }
    }

    #[test]
    fn an_answer_keeps_its_fingerprint_sealed_with_it() {
        let (k, t) = (key(), tenant());
        let body = serde_json::json!({"to": "+380671234567"});
        let sealed = k.seal_answer(&t, "order-1", "abc123", &body);
        assert_eq!(
            k.open_answer(&t, "order-1", &sealed).unwrap(),
            ("abc123".to_owned(), body)
        );
        assert!(k.open_answer(&t, "order-2", &sealed).is_err());
        assert_eq!(k.fingerprint_tag("abc123"), k.fingerprint_tag("abc123"));
        assert_ne!(k.fingerprint_tag("abc123"), k.fingerprint_tag("abc124"));
        assert_ne!(k.fingerprint_tag("abc123"), key().fingerprint_tag("abc123"));
    }

    #[test]
    fn a_data_key_is_32_bytes() {
        assert!(DataKey::from_slice(&[0; 31]).is_err());
        assert!(DataKey::from_slice(&[0; 32]).is_ok());
    }
}
