//! A tenant's message templates through the API: made, changed into new versions, read by
//! version, listed, deleted; each answered with what a message from it takes.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::template::TemplateError;
use crate::domain::{
    Category, Encoding, ShortBase, ShortCode, TemplateId, TemplateName, TemplateText,
    TemplateVersion, TenantId, segments,
};
use crate::ports::templates::MAX_TEMPLATE_PAGE;
use crate::ports::{Clock, StoreError, TemplateStore};

use super::Limits;
use super::intake::{FieldError, with_opt_out};
use super::template;

/// How many times a change that met another change is made again.
const ATTEMPTS: usize = 5;

/// `POST /v1/templates`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TemplateRequest {
    /// Unique among the account's templates, case-insensitively: 1 to 100 printable
    /// characters, not only spaces.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 100,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub name: String,
    /// The text, with `{{name}}` placeholders (ASCII letters, digits and `_`) filled per
    /// message; up to 2,000 characters, not blank, no control characters but line breaks.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 2000,
            pattern = "^[^\\u0000-\\u0009\\u000B\\u000E-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0009\\u000B\\u000E-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub text: String,
    /// `transactional` (default) or `marketing` (consent, opt-out link, sending window).
    #[serde(default)]
    pub category: Option<Category>,
}

/// `PUT /v1/templates/{id}`: a new version; fields left out keep their value.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TemplateChange {
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 100,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub name: Option<String>,
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 2000,
            pattern = "^[^\\u0000-\\u0009\\u000B\\u000E-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0009\\u000B\\u000E-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub text: Option<String>,
    #[serde(default)]
    pub category: Option<Category>,
}

/// What the shortest message from a template takes: its placeholders filled with nothing
/// (each value adds its own characters), and for a marketing template its opt-out line.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateEstimate {
    /// `GSM-7` or `UCS-2`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub encoding: Encoding,
    pub characters: usize,
    pub segments: usize,
    /// `segments` at the account's price per part, in kopiykas.
    pub cost_kopiyky: i64,
    /// Whether placeholders were left empty (a real message is as long or longer).
    pub placeholders_empty: bool,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateView {
    pub id: String,
    /// The version shown; `latest_version` is the newest.
    pub version: u32,
    pub latest_version: Option<u32>,
    pub name: String,
    pub text: String,
    pub category: Category,
    /// Its placeholders' names, each once, in order.
    pub placeholders: Vec<String>,
    /// When this version was made.
    pub created_at: DateTime<Utc>,
    pub estimate: TemplateEstimate,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplatePageView {
    pub templates: Vec<TemplateView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplatesError {
    #[error("{}", .0.message)]
    Invalid(FieldError),
    /// Another template of the account has this name (`template_name_taken`).
    #[error("{}", .0.message)]
    Taken(FieldError),
    #[error("no such template")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(e: TemplateError) -> TemplatesError {
    TemplatesError::Invalid(FieldError::new(e.code(), e.field(), e.to_string()))
}

fn taken() -> TemplatesError {
    TemplatesError::Taken(FieldError::new(
        "template_name_taken",
        "name",
        "another template of this account has this name",
    ))
}

pub struct Templates {
    store: Arc<dyn TemplateStore>,
    limits: Arc<Limits>,
    clock: Arc<dyn Clock>,
    short_link_base: Option<ShortBase>,
}

impl Templates {
    pub fn new(
        store: Arc<dyn TemplateStore>,
        limits: Arc<Limits>,
        clock: Arc<dyn Clock>,
        short_link_base: Option<ShortBase>,
    ) -> Self {
        Templates {
            store,
            limits,
            clock,
            short_link_base,
        }
    }

    pub async fn create(
        &self,
        tenant: &TenantId,
        req: TemplateRequest,
    ) -> Result<TemplateView, TemplatesError> {
        let name = TemplateName::parse(&req.name).map_err(invalid)?;
        let text = TemplateText::parse(&req.text).map_err(invalid)?;
        let now = self.clock.now();
        let version = TemplateVersion {
            id: TemplateId::generate(now),
            tenant_id: tenant.clone(),
            version: 1,
            name,
            text,
            category: req.category.unwrap_or_default(),
            created_at: now,
        };
        match self.store.put(&version).await {
            Ok(()) => self.view(tenant, version, Some(1)).await,
            Err(StoreError::AlreadyExists) => Err(taken()),
            Err(e) => Err(e.into()),
        }
    }

    /// A new version with what `change` gives.
    pub async fn change(
        &self,
        tenant: &TenantId,
        id: &TemplateId,
        change: TemplateChange,
    ) -> Result<TemplateView, TemplatesError> {
        let name = change
            .name
            .as_deref()
            .map(TemplateName::parse)
            .transpose()
            .map_err(invalid)?;
        let text = change
            .text
            .as_deref()
            .map(TemplateText::parse)
            .transpose()
            .map_err(invalid)?;
        for _ in 0..ATTEMPTS {
            let latest = self
                .store
                .get(tenant, id, None)
                .await?
                .ok_or(TemplatesError::NotFound)?;
            let next = TemplateVersion {
                id: id.clone(),
                tenant_id: tenant.clone(),
                version: latest.version + 1,
                name: name.clone().unwrap_or_else(|| latest.name.clone()),
                text: text.clone().unwrap_or_else(|| latest.text.clone()),
                category: change.category.unwrap_or(latest.category),
                created_at: self.clock.now(),
            };
            match self.store.put(&next).await {
                Ok(()) => {
                    let n = next.version;
                    return self.view(tenant, next, Some(n)).await;
                }
                Err(StoreError::NotFound) => return Err(TemplatesError::NotFound),
                Err(StoreError::AlreadyExists) => {
                    // Another change came first, or the new name is taken: which one?
                    let now = self.store.get(tenant, id, None).await?;
                    if now.is_some_and(|v| v.version == latest.version) {
                        return Err(taken());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Unavailable("the template kept changing; try again".into()).into())
    }

    /// The latest version, or `version`.
    pub async fn get(
        &self,
        tenant: &TenantId,
        id: &TemplateId,
        version: Option<u32>,
    ) -> Result<TemplateView, TemplatesError> {
        let found = self
            .store
            .get(tenant, id, version)
            .await?
            .ok_or(TemplatesError::NotFound)?;
        let latest = match version {
            None => Some(found.version),
            Some(_) => self.store.get(tenant, id, None).await?.map(|v| v.version),
        };
        self.view(tenant, found, latest).await
    }

    pub async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&TemplateId>,
        limit: usize,
    ) -> Result<TemplatePageView, TemplatesError> {
        let page = self
            .store
            .list(tenant, after, limit.clamp(1, MAX_TEMPLATE_PAGE))
            .await?;
        let mut templates = Vec::with_capacity(page.templates.len());
        for t in page.templates {
            let latest = Some(t.version);
            templates.push(self.view(tenant, t, latest).await?);
        }
        Ok(TemplatePageView {
            templates,
            next: page.next.map(|id| id.to_string()),
        })
    }

    pub async fn delete(&self, tenant: &TenantId, id: &TemplateId) -> Result<(), TemplatesError> {
        if self.store.delete(tenant, id).await? {
            Ok(())
        } else {
            Err(TemplatesError::NotFound)
        }
    }

    async fn view(
        &self,
        tenant: &TenantId,
        t: TemplateVersion,
        latest: Option<u32>,
    ) -> Result<TemplateView, TemplatesError> {
        let price = self.limits.of(tenant).await?;
        let placeholders = template::placeholders(t.text.as_str());
        let empty: BTreeMap<String, String> = placeholders
            .iter()
            .map(|n| (n.clone(), String::new()))
            .collect();
        let mut shortest = template::render(t.text.as_str(), &empty, usize::MAX)
            .unwrap_or_else(|_| t.text.as_str().to_owned());
        if t.category.is_marketing() {
            // A link of the length the real one has: the base, `/`, a code.
            let base = self.short_link_base.as_ref();
            let link = match base {
                Some(base) => base.link(&ShortCode::random()),
                None => format!("https://{}", "x".repeat(16)),
            };
            shortest = with_opt_out(&shortest, &link, false);
        }
        let estimate = segments::estimate(&shortest);
        let placeholders_empty = !placeholders.is_empty();
        let cost = price.cost(estimate.segments as u64);
        Ok(TemplateView {
            id: t.id.to_string(),
            version: t.version,
            latest_version: latest,
            name: t.name.as_str().to_owned(),
            text: t.text.as_str().to_owned(),
            category: t.category,
            placeholders,
            created_at: t.created_at,
            estimate: TemplateEstimate {
                encoding: estimate.encoding,
                characters: estimate.characters,
                segments: estimate.segments,
                cost_kopiyky: cost.0,
                placeholders_empty,
            },
        })
    }
}
