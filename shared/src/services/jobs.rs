//! The bodies of queue messages. They are external input like any other (a queue can hold
//! anything someone put there), so they are parsed into types that only hold valid values.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{MessageId, MessageStatus, TenantId};
use crate::ports::Outgoing;

/// Submit this message to a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchJob {
    pub tenant_id: TenantId,
    pub id: MessageId,
}

/// Tell the customer's callback URL that this message reached this status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackJob {
    pub tenant_id: TenantId,
    pub id: MessageId,
    pub status: MessageStatus,
    pub at: DateTime<Utc>,
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
