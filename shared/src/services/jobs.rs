//! The bodies of queue messages. They are external input like any other (a queue can hold
//! anything someone put there), so they are parsed into types that only hold valid values.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{
    BatchId, CampaignId, Message, MessageError, MessageId, MessageStatus, StatusSet, TenantId,
};
use crate::ports::Outgoing;

/// Submit this message to a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchJob {
    pub tenant_id: TenantId,
    pub id: MessageId,
}

/// Expand chunk `chunk` of a campaign into messages (a job for a chunk done already does
/// nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignJob {
    pub tenant_id: TenantId,
    pub campaign_id: CampaignId,
    pub chunk: u64,
    /// The campaign's run (start or resume) that queued it.
    pub run: u32,
}

/// Tell a customer's callback URL about status changes of its messages: the events of one
/// tenant's URL that were ready together, sent in one signed POST. Written in the same write
/// as the changes themselves (the embedded store's outbox), or relayed from the messages
/// table's stream (AWS), so no committed change misses its callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackJob {
    pub tenant_id: TenantId,
    pub url: String,
    pub events: Vec<CallbackEvent>,
}

/// One status change of one message, as its callback tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackEvent {
    pub message_id: MessageId,
    pub status: MessageStatus,
    pub at: DateTime<Utc>,
    pub reference: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub batch_id: Option<BatchId>,
    pub segments: u16,
    pub provider: Option<String>,
    pub cost_kopiyky: Option<i64>,
    pub error: Option<MessageError>,
    /// A `message.clicked` event (the message's first click by a person, at `at`) rather
    /// than a status change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clicked: bool,
}

impl CallbackEvent {
    /// The event of a message's current status.
    pub fn of(m: &Message) -> Self {
        CallbackEvent {
            message_id: m.id,
            status: m.status,
            at: m.updated_at,
            reference: m.reference.clone(),
            metadata: m.metadata.clone(),
            batch_id: m.batch_id.clone(),
            segments: m.segments,
            provider: m.provider.clone(),
            cost_kopiyky: m.cost.map(|c| c.0),
            error: m.error.clone(),
            clicked: false,
        }
    }

    /// The `message.clicked` event of a message a person clicked (`None` if none did).
    pub fn clicked(m: &Message) -> Option<Self> {
        Some(CallbackEvent {
            at: m.clicked_at?,
            clicked: true,
            ..CallbackEvent::of(m)
        })
    }
}

/// The most events one callback job (and so one POST) carries.
pub const MAX_EVENTS_PER_JOB: usize = 100;

/// The largest callback job body: a quarter of SQS's 1 MiB, well inside every queue's
/// limit.
pub const MAX_JOB_BYTES: usize = 200 * 1024;

fn fit(mut job: CallbackJob, out: &mut Vec<Outgoing>) {
    let message = outgoing(&job);
    if message.body.len() <= MAX_JOB_BYTES || job.events.len() < 2 {
        // One event is at most a few KiB (metadata is capped at 4 KiB).
        out.push(message);
        return;
    }
    let rest = job.events.split_off(job.events.len() / 2);
    let second = CallbackJob {
        tenant_id: job.tenant_id.clone(),
        url: job.url.clone(),
        events: rest,
    };
    fit(job, out);
    fit(second, out);
}

/// Gathers the callback events of one write into jobs: one per tenant and URL (in the
/// order first seen), split every [`MAX_EVENTS_PER_JOB`] events.
#[derive(Debug, Default)]
pub struct CallbackJobs {
    jobs: Vec<CallbackJob>,
}

impl CallbackJobs {
    /// Adds the event if its URL asked for its status (a click is told whatever the
    /// statuses asked for: it is asked for by tracking links). No callback tells of
    /// `accepted`: the answer to the request does.
    pub fn push(&mut self, tenant: &TenantId, url: &str, wanted: StatusSet, event: CallbackEvent) {
        if !event.clicked
            && (event.status == MessageStatus::Accepted || !wanted.contains(event.status))
        {
            return;
        }
        let open = self.jobs.iter_mut().rev().find(|j| {
            j.tenant_id == *tenant && j.url == url && j.events.len() < MAX_EVENTS_PER_JOB
        });
        match open {
            Some(job) => job.events.push(event),
            None => self.jobs.push(CallbackJob {
                tenant_id: tenant.clone(),
                url: url.to_owned(),
                events: vec![event],
            }),
        }
    }

    /// The event of each message that has a callback URL.
    pub fn push_messages<'a>(&mut self, messages: impl IntoIterator<Item = &'a Message>) {
        for m in messages {
            if let Some(url) = &m.callback_url {
                self.push(&m.tenant_id, url, m.callback_statuses, CallbackEvent::of(m));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn into_jobs(self) -> Vec<CallbackJob> {
        self.jobs
    }

    /// The jobs as queue messages, each under [`MAX_JOB_BYTES`] (a job with large metadata
    /// is split until its parts fit).
    pub fn into_outgoing(self) -> Vec<Outgoing> {
        let mut out = Vec::with_capacity(self.jobs.len());
        for job in self.jobs {
            fit(job, &mut out);
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unreadable queue message: {0}")]
pub struct JobParseError(#[from] serde_json::Error);

pub fn parse<T: for<'de> Deserialize<'de>>(body: &str) -> Result<T, JobParseError> {
    Ok(serde_json::from_str(body)?)
}

pub fn outgoing<T: Serialize>(job: &T) -> Outgoing {
    Outgoing {
        // Serialising these plain structs cannot fail.
        body: serde_json::to_string(job).unwrap_or_default(),
        delay: std::time::Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_and_refuse_garbage() {
        let job = DispatchJob {
            tenant_id: TenantId::generate(Utc::now()),
            id: MessageId::generate(Utc::now()),
        };
        let body = outgoing(&job).body;
        assert_eq!(parse::<DispatchJob>(&body).unwrap(), job);
        for bad in ["", "{}", "null", r#"{"tenant_id":"x","id":"y"}"#, "[1,2]"] {
            assert!(parse::<DispatchJob>(bad).is_err(), "{bad}");
        }
        let extra = body.replace('}', r#","x":1}"#);
        assert!(parse::<DispatchJob>(&extra).is_err());
    }
}
