//! `holub tenant create | add-key | keys | revoke-key | rotate-key | set-sender | senders |
//! limits | audit | erase`, on this machine's data directory or, with `--aws`, in a deployment on AWS.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use chrono::{DateTime, Utc};
use holub_shared::domain::access::key_format;
use holub_shared::domain::{
    ApiKeyRecord, KeyId, KeyName, Network, Origin, Registration, Scopes, SenderId, SenderRecord,
    TenantId, TenantLimits,
};
use holub_shared::services::accounts::key_json;
use holub_shared::services::{Accounts, Limits, Senders, Users};

use crate::backend;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a tenant and print its id, first API key (every scope) and webhook signing
    /// secret (shown once).
    Create {
        #[arg(long)]
        name: String,
        /// A sender to register to the tenant, active on every network (repeatable): you
        /// vouch that the networks registered it.
        #[arg(long = "sender")]
        senders: Vec<String>,
        /// A limit other than the default, `name=value` (repeatable; see `holub tenant
        /// limits`).
        #[arg(long = "limit", value_name = "NAME=VALUE", value_parser = limit_pair)]
        limits: Vec<(String, String)>,
        #[command(flatten)]
        at: Where,
    },
    /// Give a tenant another API key (printed once).
    AddKey {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "added by the operator")]
        name: String,
        /// Comma-separated: messages:send, messages:read, contacts:read, contacts:write,
        /// analytics:read, admin (every scope).
        #[arg(long, default_value = "admin")]
        scopes: String,
        /// When the key stops working (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
        #[command(flatten)]
        at: Where,
    },
    /// A tenant's API keys (never their secrets).
    Keys {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        at: Where,
    },
    /// Revoke an API key: the key itself, read from standard input (so it stays out of
    /// shell history) unless given with --key; or, with --tenant and --id, by its id.
    /// Refused at once here, and everywhere within 30 seconds.
    RevokeKey {
        #[arg(long)]
        key: Option<String>,
        #[arg(long, requires = "id")]
        tenant: Option<String>,
        #[arg(long, requires = "tenant")]
        id: Option<String>,
        #[command(flatten)]
        at: Where,
    },
    /// Rotate an API key: a new one (printed once) with its name and scopes; the old one
    /// works for --grace-seconds more (default 0).
    RotateKey {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        id: String,
        #[arg(long, default_value_t = 0,
              value_parser = clap::value_parser!(u64).range(0..=604_800))]
        grace_seconds: u64,
        #[command(flatten)]
        at: Where,
    },
    /// Record a network's answer for a tenant's sender (registering the sender first if the
    /// tenant has not asked for it).
    SetSender {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        sender: String,
        /// pending, active or rejected.
        #[arg(long)]
        status: Registration,
        /// kyivstar, vodafone, lifecell or other (repeatable); default: every network.
        #[arg(long = "network")]
        networks: Vec<Network>,
        #[command(flatten)]
        at: Where,
    },
    /// A tenant's senders and their status on each network.
    Senders {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        at: Where,
    },
    /// A tenant's abuse limits and spend so far; with `--set`, changes them (audited).
    /// Names: countries (`UA,PL`), rate_per_second, burst, daily_spend_kopiyky,
    /// monthly_spend_kopiyky, segment_price_kopiyky, per_number_per_hour, retention_days
    /// (days a final message is kept; `default` for the installation's), marketing_window
    /// (`HH:MM-HH:MM` on Kyiv's clock when marketing may go out; default 09:00-21:00).
    Limits {
        #[arg(long)]
        tenant: String,
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = limit_pair)]
        set: Vec<(String, String)>,
        #[command(flatten)]
        at: Where,
    },
    /// Erase a tenant's data for good: its data key is destroyed, so every number and text
    /// stored for it (in copies and backups too) can never be read again; nothing more is
    /// accepted for it and its API keys are revoked. The stored messages are deleted by the
    /// next retention sweeps (on AWS, by their TTL). Asks for the tenant id twice.
    Erase {
        #[arg(long)]
        tenant: String,
        /// The tenant id again, to confirm.
        #[arg(long)]
        confirm: String,
        #[command(flatten)]
        at: Where,
    },
    /// A tenant's audit log, newest first.
    Audit {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        at: Where,
    },
}

/// Which Holub the command acts on.
#[derive(clap::Args)]
pub struct Where {
    #[arg(long, env = "HOLUB_DATA_DIR", default_value = "./holub-data")]
    data_dir: PathBuf,
    /// A deployment on AWS instead: DynamoDB and Secrets Manager named by the same HOLUB_*
    /// environment variables the functions read (see docs/deploy.md).
    #[arg(long)]
    aws: bool,
}

impl Where {
    pub fn aws(&self) -> bool {
        self.aws
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }
}

impl Command {
    fn at(&self) -> &Where {
        match self {
            Command::Create { at, .. }
            | Command::AddKey { at, .. }
            | Command::Keys { at, .. }
            | Command::RevokeKey { at, .. }
            | Command::RotateKey { at, .. }
            | Command::SetSender { at, .. }
            | Command::Senders { at, .. }
            | Command::Limits { at, .. }
            | Command::Erase { at, .. }
            | Command::Audit { at, .. } => at,
        }
    }
}

pub async fn run(command: Command) -> ExitCode {
    let at = command.at();
    let (ports, local) = match backend::ports(at.aws, &at.data_dir, Default::default()).await {
        Ok(opened) => opened,
        Err(e) => return fail(e),
    };
    let accounts = Accounts::new(
        ports.tenants.clone(),
        ports.secrets.clone(),
        ports.clock.clone(),
    );
    let senders = Senders::new(ports.tenants.clone(), ports.clock.clone());
    let limits = Limits::new(
        ports.tenants.clone(),
        ports.counters.clone(),
        ports.clock.clone(),
        TenantLimits::defaults_for(!at.aws),
    );
    let users = Users::new(
        ports.users.clone(),
        ports.tenants.clone(),
        ports.clock.clone(),
    );
    let services = Services {
        accounts: &accounts,
        senders: &senders,
        limits: &limits,
        users: &users,
    };
    let code = match act(services, command).await {
        Ok(value) => print(&value),
        Err(e) => fail(e),
    };
    drop((accounts, senders, limits, users, ports));
    backend::close(local).await;
    code
}

fn tenant_id(raw: &str) -> Result<TenantId, String> {
    raw.parse()
        .map_err(|_| format!("{raw:?} is not a tenant id"))
}

fn key_view(key: &ApiKeyRecord) -> serde_json::Value {
    let mut view = key_json(key);
    if let Some(id) = &key.id {
        view["prefix"] = key_format::display_prefix(id).into();
    }
    view["created_at"] = serde_json::json!(key.created_at);
    view["last_used_at"] = serde_json::json!(key.last_used_at);
    view
}

fn sender_view(record: &SenderRecord) -> serde_json::Value {
    serde_json::json!({"sender": record.sender, "networks": record.networks})
}

fn rfc3339(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{raw:?} is not an RFC 3339 date-time"))
}

fn limit_pair(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("{raw:?} is not NAME=VALUE"))
}

/// What the operator's commands act through.
#[derive(Clone, Copy)]
struct Services<'a> {
    accounts: &'a Accounts,
    senders: &'a Senders,
    limits: &'a Limits,
    users: &'a Users,
}

async fn act(services: Services<'_>, command: Command) -> Result<serde_json::Value, String> {
    let Services {
        accounts,
        senders,
        limits,
        users,
    } = services;
    let origin = Origin::operator();
    match command {
        Command::Create {
            name,
            senders: names,
            limits: changes,
            ..
        } => {
            let names = names
                .iter()
                .map(|s| SenderId::parse(s).map_err(|e| format!("--sender {s:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            // Checked before anything is made, so a typo leaves no tenant behind.
            let mut wanted = TenantLimits::default();
            for (n, v) in &changes {
                wanted.set(n, v).map_err(|e| format!("--limit {n}: {e}"))?;
            }
            let created = accounts
                .create_tenant(&name, &origin)
                .await
                .map_err(|e| format!("cannot create the tenant: {e}"))?;
            let tenant = tenant_id(&created.tenant_id)?;
            for sender in names {
                senders
                    .grant(
                        &tenant,
                        &sender,
                        &Network::ALL,
                        Registration::Active,
                        &origin,
                    )
                    .await
                    .map_err(|e| format!("cannot register {:?}: {e}", sender.as_str()))?;
            }
            if !changes.is_empty() {
                limits
                    .set(&tenant, &changes, &origin)
                    .await
                    .map_err(|e| format!("cannot set the limits: {e}"))?;
            }
            serde_json::to_value(created).map_err(|e| e.to_string())
        }
        Command::AddKey {
            tenant,
            name,
            scopes,
            expires_at,
            ..
        } => {
            let tenant = tenant_id(&tenant)?;
            let name = KeyName::parse(&name).map_err(|e| format!("--name: {e}"))?;
            let scopes = Scopes::parse(&scopes).map_err(|e| format!("--scopes: {e}"))?;
            let expires_at = expires_at.as_deref().map(rfc3339).transpose()?;
            let issued = accounts
                .create_key(&tenant, name, scopes, expires_at, &origin)
                .await
                .map_err(|e| format!("cannot add a key: {e}"))?;
            let mut view = key_view(&issued.record);
            view["tenant_id"] = tenant.as_str().into();
            view["api_key"] = issued.secret.into();
            Ok(view)
        }
        Command::Keys { tenant, .. } => {
            let keys = accounts
                .list_keys(&tenant_id(&tenant)?)
                .await
                .map_err(|e| format!("cannot list the keys: {e}"))?;
            Ok(serde_json::json!({"keys": keys.iter().map(key_view).collect::<Vec<_>>()}))
        }
        Command::RevokeKey {
            key,
            tenant: Some(tenant),
            id: Some(id),
            ..
        } => {
            if key.is_some() {
                return Err("give either --key or --tenant with --id".into());
            }
            let id: KeyId = id.parse().map_err(|_| format!("{id:?} is not a key id"))?;
            let revoked = accounts
                .revoke_key(&tenant_id(&tenant)?, &id, &origin)
                .await
                .map_err(|e| format!("cannot revoke the key: {e}"))?;
            Ok(serde_json::json!({"revoked": revoked.is_some()}))
        }
        Command::RevokeKey { key, .. } => {
            let key = match key {
                Some(key) => key,
                None => {
                    let mut key = String::new();
                    std::io::stdin()
                        .read_to_string(&mut key)
                        .map_err(|e| format!("cannot read the key from standard input: {e}"))?;
                    key
                }
            };
            let revoked = accounts
                .revoke_presented(&key, &origin)
                .await
                .map_err(|e| format!("cannot revoke the key: {e}"))?;
            Ok(serde_json::json!({"revoked": revoked}))
        }
        Command::RotateKey {
            tenant,
            id,
            grace_seconds,
            ..
        } => {
            let id: KeyId = id.parse().map_err(|_| format!("{id:?} is not a key id"))?;
            let rotated = accounts
                .rotate_key(
                    &tenant_id(&tenant)?,
                    &id,
                    Duration::from_secs(grace_seconds),
                    &origin,
                )
                .await
                .map_err(|e| format!("cannot rotate the key: {e}"))?;
            let (old, new) = rotated.ok_or("the tenant has no live key with this id")?;
            let mut new_view = key_view(&new.record);
            new_view["api_key"] = new.secret.into();
            Ok(serde_json::json!({"old": key_view(&old), "new": new_view}))
        }
        Command::SetSender {
            tenant,
            sender,
            status,
            networks,
            ..
        } => {
            let tenant = tenant_id(&tenant)?;
            let sender = SenderId::parse(&sender).map_err(|e| format!("--sender: {e}"))?;
            let networks = if networks.is_empty() {
                Network::ALL.to_vec()
            } else {
                networks
            };
            let record = senders
                .grant(&tenant, &sender, &networks, status, &origin)
                .await
                .map_err(|e| format!("cannot set the sender's status: {e}"))?;
            Ok(sender_view(&record))
        }
        Command::Senders { tenant, .. } => {
            let list = senders
                .list(&tenant_id(&tenant)?)
                .await
                .map_err(|e| format!("cannot list the senders: {e}"))?;
            Ok(serde_json::json!({"senders": list.iter().map(sender_view).collect::<Vec<_>>()}))
        }
        Command::Limits { tenant, set, .. } => {
            let tenant = tenant_id(&tenant)?;
            if !set.is_empty() {
                limits
                    .set(&tenant, &set, &origin)
                    .await
                    .map_err(|e| format!("cannot set the limits: {e}"))?;
            }
            let view = limits
                .view(&tenant)
                .await
                .map_err(|e| format!("cannot read the limits: {e}"))?;
            serde_json::to_value(view).map_err(|e| e.to_string())
        }
        Command::Erase {
            tenant, confirm, ..
        } => {
            if tenant != confirm {
                return Err("--confirm must repeat the tenant id".into());
            }
            let tenant = tenant_id(&tenant)?;
            let erased = accounts
                .erase_tenant(&tenant, &origin)
                .await
                .map_err(|e| format!("cannot erase the tenant: {e}"))?;
            // Its console users go too (their addresses are personal data); again on a
            // second run, should the first have stopped between the two.
            let users = users
                .erase_tenant(&tenant)
                .await
                .map_err(|e| format!("the tenant is erased, but not its console users: {e}"))?;
            Ok(serde_json::json!({
                "tenant_id": tenant.as_str(),
                "erased": erased,
                "console_users_removed": users,
            }))
        }
        Command::Audit { tenant, limit, .. } => {
            let entries = accounts
                .audit_log(&tenant_id(&tenant)?, None, limit.clamp(1, 10_000))
                .await
                .map_err(|e| format!("cannot read the audit log: {e}"))?;
            serde_json::to_value(entries).map_err(|e| e.to_string())
        }
    }
}

fn print(value: &impl serde::Serialize) -> ExitCode {
    println!("{}", serde_json::to_string(value).unwrap_or_default());
    ExitCode::SUCCESS
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("holub: {e}");
    ExitCode::FAILURE
}
