//! The master key on AWS: a KMS key. Each tenant's data key is made by `GenerateDataKey`
//! and unwrapped by `Decrypt`, both bound to the tenant by the encryption context
//! `holub:tenant`, so a wrapped key copied to another tenant's record does not unwrap (and
//! CloudTrail names the tenant of every unwrap).

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::SdkError;
use aws_sdk_kms::operation::decrypt::DecryptError;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use crate::adapters::vault::KeyWrapper;
use crate::domain::TenantId;
use crate::domain::sealing::DATA_KEY_BYTES;
use crate::ports::StoreError;

/// The encryption context's key.
const CONTEXT: &str = "holub:tenant";

/// Data keys wrapped by one KMS key.
#[derive(Debug, Clone)]
pub struct KmsMasterKey {
    client: Client,
    key_id: String,
}

impl KmsMasterKey {
    /// The KMS key `key_id` (an id, ARN or alias).
    pub fn new(client: Client, key_id: impl Into<String>) -> Self {
        KmsMasterKey {
            client,
            key_id: key_id.into(),
        }
    }
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

fn key_bytes(plain: Option<&Blob>) -> Result<[u8; DATA_KEY_BYTES], StoreError> {
    plain
        .map(|b| b.as_ref())
        .and_then(|b| <[u8; DATA_KEY_BYTES]>::try_from(b).ok())
        .ok_or_else(|| StoreError::Corrupt("KMS gave no 32-byte data key".into()))
}

#[async_trait]
impl KeyWrapper for KmsMasterKey {
    async fn generate(
        &self,
        tenant: &TenantId,
    ) -> Result<([u8; DATA_KEY_BYTES], Vec<u8>), StoreError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(CONTEXT, tenant.as_str())
            .send()
            .await
            .map_err(unavailable)?;
        let bytes = key_bytes(out.plaintext())?;
        let wrapped = out
            .ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| StoreError::Corrupt("KMS gave no wrapped data key".into()))?;
        Ok((bytes, wrapped))
    }

    async fn unwrap(
        &self,
        tenant: &TenantId,
        wrapped: &[u8],
    ) -> Result<[u8; DATA_KEY_BYTES], StoreError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .encryption_context(CONTEXT, tenant.as_str())
            .send()
            .await
            .map_err(|e| match &e {
                SdkError::ServiceError(s)
                    if matches!(
                        s.err(),
                        DecryptError::InvalidCiphertextException(_)
                            | DecryptError::IncorrectKeyException(_)
                    ) =>
                {
                    StoreError::Corrupt(format!(
                        "the data key of tenant {tenant} does not unwrap under the KMS key"
                    ))
                }
                _ => unavailable(e),
            })?;
        key_bytes(out.plaintext())
    }
}

/// Makes a symmetric KMS key for a deployment's data keys and answers its id: for a local
/// bootstrap against an emulator and for tests (`template.yaml` declares the real one).
pub async fn create_master_key(client: &Client, description: &str) -> Result<String, String> {
    let out = client
        .create_key()
        .description(description)
        .send()
        .await
        .map_err(|e| format!("creating a KMS key: {e}"))?;
    out.key_metadata()
        .map(|m| m.key_id().to_owned())
        .ok_or_else(|| "KMS made a key without metadata".to_owned())
}
