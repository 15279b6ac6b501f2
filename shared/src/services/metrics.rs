//! Counters and latency histograms of what happens to messages, kept per process: messages
//! per status, provider and operator; how long a provider took to take a message (submit
//! latency); how long its receipt took after that (receipt latency) and from acceptance to
//! delivery. Recorded from each status change a service applies ([`observe`]).
//!
//! Two ways out: `holub serve` answers `GET /metrics` in Prometheus' text format
//! ([`Registry::prometheus`], cumulative since the start); the Lambda functions print, after
//! each invocation, what changed since the last one as CloudWatch embedded metric format
//! lines ([`Registry::flush_emf`]), which CloudWatch Logs turns into metrics in the `Holub`
//! namespace (the dashboard and the failure-rate alarm of `template.yaml` read them).
//!
//! Labels hold no phone number and no text: a provider's name, an operator, a status.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};

use crate::domain::{Message, MessageStatus};

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// The most latency samples one EMF line carries per metric (CloudWatch's limit is 100).
const EMF_SAMPLES: usize = 100;

/// The latencies measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Latency {
    /// `sending` → `sent`: the provider's answer to a submission.
    Submit,
    /// `sent` → a final receipt (`delivered`, `undelivered`).
    Receipt,
    /// Accepted → `delivered`.
    Delivery,
}

impl Latency {
    fn name(self) -> &'static str {
        match self {
            Latency::Submit => "submit",
            Latency::Receipt => "receipt",
            Latency::Delivery => "delivery",
        }
    }

    fn emf(self) -> &'static str {
        match self {
            Latency::Submit => "SubmitLatency",
            Latency::Receipt => "ReceiptLatency",
            Latency::Delivery => "DeliveryLatency",
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Per bucket of [`BUCKETS`], then +Inf.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn add(&mut self, seconds: f64) {
        let bucket = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// `(provider, operator)`; `"none"` where a message has no provider yet.
type Route = (String, &'static str);

#[derive(Debug, Default)]
struct State {
    /// Cumulative, for `/metrics`.
    statuses: BTreeMap<(MessageStatus, Route), u64>,
    latencies: BTreeMap<(Latency, Route), Histogram>,
    /// Since the last EMF flush.
    pending_statuses: BTreeMap<(MessageStatus, Route), u64>,
    pending_samples: BTreeMap<(Latency, Route), Vec<f64>>,
}

/// A process's metrics.
#[derive(Debug, Default)]
pub struct Registry {
    state: Mutex<State>,
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// Records status changes (each message as the change left it) in the process's registry.
pub fn observe<'a>(changed: impl IntoIterator<Item = &'a Message>) {
    global().observe(changed);
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> Option<f64> {
    let ms = (to - from).num_milliseconds();
    (ms >= 0).then(|| ms as f64 / 1000.0)
}

/// When the message last entered `status`, from its history.
fn entered(m: &Message, status: MessageStatus) -> Option<DateTime<Utc>> {
    m.history
        .iter()
        .rev()
        .find(|c| c.status == status)
        .map(|c| c.at)
}

impl Registry {
    pub fn observe<'a>(&self, changed: impl IntoIterator<Item = &'a Message>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        for m in changed {
            let provider = m.provider.clone().unwrap_or_else(|| "none".to_owned());
            let route = (provider, m.to.operator().as_str());
            *state.statuses.entry((m.status, route.clone())).or_default() += 1;
            *state
                .pending_statuses
                .entry((m.status, route.clone()))
                .or_default() += 1;
            let mut latencies = Vec::new();
            match m.status {
                MessageStatus::Sent => {
                    if let Some(s) =
                        entered(m, MessageStatus::Sending).and_then(|at| seconds(at, m.updated_at))
                    {
                        latencies.push((Latency::Submit, s));
                    }
                }
                MessageStatus::Delivered | MessageStatus::Undelivered => {
                    if let Some(s) =
                        entered(m, MessageStatus::Sent).and_then(|at| seconds(at, m.updated_at))
                    {
                        latencies.push((Latency::Receipt, s));
                    }
                    if m.status == MessageStatus::Delivered
                        && let Some(s) = seconds(m.created_at, m.updated_at)
                    {
                        latencies.push((Latency::Delivery, s));
                    }
                }
                _ => {}
            }
            for (kind, s) in latencies {
                state
                    .latencies
                    .entry((kind, route.clone()))
                    .or_default()
                    .add(s);
                let samples = state
                    .pending_samples
                    .entry((kind, route.clone()))
                    .or_default();
                if samples.len() < EMF_SAMPLES {
                    samples.push(s);
                }
            }
        }
    }

    /// Everything so far, in Prometheus' text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out = String::new();
        out.push_str(
            "# HELP holub_messages_total Status changes of messages, by the status reached, the provider and the recipient's operator.\n\
             # TYPE holub_messages_total counter\n",
        );
        for ((status, (provider, operator)), n) in &state.statuses {
            let _ = writeln!(
                out,
                "holub_messages_total{{status=\"{status}\",provider=\"{}\",operator=\"{operator}\"}} {n}",
                escape(provider)
            );
        }
        for kind in [Latency::Submit, Latency::Receipt, Latency::Delivery] {
            let name = format!("holub_{}_latency_seconds", kind.name());
            let _ = writeln!(
                out,
                "# HELP {name} {}\n# TYPE {name} histogram",
                match kind {
                    Latency::Submit => "From handing a message to a provider to its answer.",
                    Latency::Receipt => "From a provider's answer to the message's final receipt.",
                    Latency::Delivery => "From acceptance to delivery.",
                }
            );
            for ((k, (provider, operator)), h) in &state.latencies {
                if *k != kind {
                    continue;
                }
                let labels = format!("provider=\"{}\",operator=\"{operator}\"", escape(provider));
                let mut cumulative = 0;
                for (i, bound) in BUCKETS.iter().enumerate() {
                    cumulative += h.counts[i];
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels},le=\"+Inf\"}} {}\n\
                     {name}_sum{{{labels}}} {}\n\
                     {name}_count{{{labels}}} {}",
                    h.count, h.sum, h.count
                );
            }
        }
        out
    }

    /// What changed since the last call, as CloudWatch embedded metric format documents:
    /// one per provider and operator with its status counts, one per provider and operator
    /// with its latency samples (each also rolled up per provider alone). Counts are also
    /// given with no dimension, for the alarms on totals.
    pub fn take_emf(&self, now: DateTime<Utc>) -> Vec<serde_json::Value> {
        let (statuses, samples) = match self.state.lock() {
            Ok(mut s) => (
                std::mem::take(&mut s.pending_statuses),
                std::mem::take(&mut s.pending_samples),
            ),
            Err(_) => return Vec::new(),
        };
        let timestamp = now.timestamp_millis();
        let mut routes: BTreeMap<&Route, serde_json::Map<String, serde_json::Value>> =
            BTreeMap::new();
        for ((status, route), n) in &statuses {
            routes
                .entry(route)
                .or_default()
                .insert(emf_status(*status).to_owned(), (*n).into());
        }
        let mut docs = Vec::new();
        for ((provider, operator), counts) in routes {
            let metrics: Vec<serde_json::Value> = counts
                .keys()
                .map(|name| serde_json::json!({"Name": name, "Unit": "Count"}))
                .collect();
            let mut doc = serde_json::json!({
                "_aws": {
                    "Timestamp": timestamp,
                    "CloudWatchMetrics": [{
                        "Namespace": namespace(),
                        "Dimensions": [["Provider", "Operator"], ["Provider"], []],
                        "Metrics": metrics,
                    }],
                },
                "Provider": provider,
                "Operator": operator,
            });
            if let Some(fields) = doc.as_object_mut() {
                fields.extend(counts);
            }
            docs.push(doc);
        }
        let mut by_route: BTreeMap<&Route, Vec<(Latency, &Vec<f64>)>> = BTreeMap::new();
        for ((kind, route), values) in &samples {
            by_route.entry(route).or_default().push((*kind, values));
        }
        for ((provider, operator), kinds) in by_route {
            let metrics: Vec<serde_json::Value> = kinds
                .iter()
                .map(|(k, _)| serde_json::json!({"Name": k.emf(), "Unit": "Seconds"}))
                .collect();
            let mut doc = serde_json::json!({
                "_aws": {
                    "Timestamp": timestamp,
                    "CloudWatchMetrics": [{
                        "Namespace": namespace(),
                        "Dimensions": [["Provider", "Operator"], ["Provider"], []],
                        "Metrics": metrics,
                    }],
                },
                "Provider": provider,
                "Operator": operator,
            });
            for (kind, values) in kinds {
                doc[kind.emf()] = serde_json::json!(values);
            }
            docs.push(doc);
        }
        docs
    }

    /// Prints what changed since the last flush to stdout, one EMF document a line (the
    /// Lambda functions call it after each invocation; CloudWatch Logs reads the lines).
    pub fn flush_emf(&self) {
        use std::io::Write as _;
        let docs = self.take_emf(Utc::now());
        if docs.is_empty() {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        for doc in docs {
            let _ = writeln!(stdout, "{doc}");
        }
        let _ = stdout.flush();
    }
}

/// The CloudWatch namespace: `HOLUB_METRICS_NAMESPACE` (`template.yaml` sets
/// `Holub/<stage>`), or `Holub`.
fn namespace() -> &'static str {
    static NAMESPACE: OnceLock<String> = OnceLock::new();
    NAMESPACE.get_or_init(|| {
        std::env::var("HOLUB_METRICS_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "Holub".to_owned())
    })
}

fn emf_status(status: MessageStatus) -> &'static str {
    match status {
        MessageStatus::Accepted => "Accepted",
        MessageStatus::Scheduled => "Scheduled",
        MessageStatus::Queued => "Queued",
        MessageStatus::Sending => "Sending",
        MessageStatus::Sent => "Sent",
        MessageStatus::Unconfirmed => "Unconfirmed",
        MessageStatus::Delivered => "Delivered",
        MessageStatus::Undelivered => "Undelivered",
        MessageStatus::Expired => "Expired",
        MessageStatus::Failed => "Failed",
        MessageStatus::Rejected => "Rejected",
        MessageStatus::Cancelled => "Cancelled",
    }
}

/// A label value as Prometheus' text format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Encoding, MessageId, PhoneNumber, SenderId, StatusChange, StatusSet, TenantId,
    };
    use chrono::TimeZone;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_764_140_400_000 + ms).unwrap()
    }

    fn message(walk: &[(MessageStatus, i64)]) -> Message {
        let (status, last) = *walk.last().unwrap();
        Message {
            id: MessageId::generate(at(0)),
            tenant_id: TenantId::generate(at(0)),
            batch_id: None,
            to: PhoneNumber::parse("0671234567").unwrap(),
            from: SenderId::parse("Holub").unwrap(),
            text: "x".into(),
            encoding: Encoding::Gsm7,
            segments: 1,
            status,
            created_at: at(0),
            updated_at: at(last),
            send_at: None,
            expires_at: at(86_400_000),
            callback_url: None,
            callback_statuses: StatusSet::ALL,
            reference: None,
            metadata: None,
            provider: Some("alphasms".into()),
            provider_message_id: None,
            cost: None,
            error: None,
            attempts: 1,
            history: walk
                .iter()
                .map(|(s, ms)| StatusChange {
                    status: *s,
                    at: at(*ms),
                })
                .collect(),
            links: Vec::new(),
            clicks: 0,
            bot_clicks: 0,
            clicked_at: None,
            category: Default::default(),
            opt_out: None,
        }
    }

    #[test]
    fn changes_are_counted_and_timed_and_drained_once_for_emf() {
        use MessageStatus::*;
        let registry = Registry::default();
        let sent = message(&[(Accepted, 0), (Queued, 0), (Sending, 100), (Sent, 300)]);
        let delivered = message(&[
            (Accepted, 0),
            (Queued, 0),
            (Sending, 100),
            (Sent, 300),
            (Delivered, 1_800),
        ]);
        registry.observe([&sent, &delivered]);
        let text = registry.prometheus();
        assert!(text.contains(
            "holub_messages_total{status=\"sent\",provider=\"alphasms\",operator=\"kyivstar\"} 1"
        ));
        assert!(text.contains(
            "holub_messages_total{status=\"delivered\",provider=\"alphasms\",operator=\"kyivstar\"} 1"
        ));
        // 0.2 s to submit; the receipt 1.5 s after; delivered 1.8 s after acceptance.
        assert!(
            text.contains(
                "holub_submit_latency_seconds_bucket{provider=\"alphasms\",operator=\"kyivstar\",le=\"0.1\"} 0"
            )
        );
        assert!(
            text.contains(
                "holub_submit_latency_seconds_bucket{provider=\"alphasms\",operator=\"kyivstar\",le=\"0.25\"} 1"
            )
        );
        assert!(text.contains(
            "holub_receipt_latency_seconds_sum{provider=\"alphasms\",operator=\"kyivstar\"} 1.5"
        ));
        assert!(text.contains(
            "holub_delivery_latency_seconds_bucket{provider=\"alphasms\",operator=\"kyivstar\",le=\"+Inf\"} 1"
        ));

        let docs = registry.take_emf(at(2_000));
        assert_eq!(docs.len(), 2, "{docs:?}");
        let counts = &docs[0];
        assert_eq!(counts["Provider"], "alphasms");
        assert_eq!(counts["Operator"], "kyivstar");
        assert_eq!(
            (counts["Sent"].clone(), counts["Delivered"].clone()),
            (1.into(), 1.into())
        );
        assert_eq!(counts["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Holub");
        let latency = &docs[1];
        assert_eq!(
            (&latency["Provider"], &latency["Operator"]),
            (&"alphasms".into(), &"kyivstar".into())
        );
        assert_eq!(
            latency["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Provider", "Operator"], ["Provider"], []])
        );
        assert_eq!(latency["SubmitLatency"], serde_json::json!([0.2]));
        assert_eq!(latency["ReceiptLatency"], serde_json::json!([1.5]));
        // Drained: nothing twice; the cumulative counters stay.
        assert!(registry.take_emf(at(3_000)).is_empty());
        assert!(registry.prometheus().contains("status=\"sent\""));
    }
}
