//! `holub report --tenant T --from --to [--group-by ...] [--json]`: a tenant's delivery
//! rate, counts, parts, cost and latencies from the statistics, as a table or as the API's
//! JSON, on this machine's data directory or, with `--aws`, in a deployment on AWS.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use holub_shared::domain::{MessageStatus, TenantId};
use holub_shared::runtime::Ports;
use holub_shared::services::Analytics;
use holub_shared::services::analytics::{ReportQuery, ReportView, TotalsView, Zone};

use crate::backend;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    tenant: String,
    /// Start of the range (RFC 3339, or a date `YYYY-MM-DD` meaning its start in --timezone).
    #[arg(long)]
    from: String,
    /// End of the range (the same forms; a date means its start, so the day before is the last).
    #[arg(long)]
    to: String,
    /// Comma-separated: provider, operator, sender, batch, campaign, encoding, day, hour.
    #[arg(long, default_value = "")]
    group_by: String,
    /// Europe/Kyiv or UTC.
    #[arg(long, default_value = "Europe/Kyiv")]
    timezone: String,
    /// The report as the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[arg(long, env = "HOLUB_DATA_DIR", default_value = "./holub-data")]
    data_dir: PathBuf,
    /// A deployment on AWS instead, named by the HOLUB_* variables the functions read.
    #[arg(long)]
    aws: bool,
}

fn instant(raw: &str, zone: Zone) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| format!("{raw:?} is neither an RFC 3339 time nor a date YYYY-MM-DD"))?;
    Ok(zone.day_start(day))
}

pub async fn run(args: Args) -> ExitCode {
    let (ports, local) = match backend::ports(args.aws, &args.data_dir, Default::default()).await {
        Ok(opened) => opened,
        Err(e) => return fail(e),
    };
    let outcome = report(&args, &ports).await;
    drop(ports);
    backend::close(local).await;
    match outcome {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn report(args: &Args, ports: &Ports) -> Result<String, String> {
    let tenant: TenantId = args
        .tenant
        .parse()
        .map_err(|_| format!("{:?} is not a tenant id", args.tenant))?;
    let zone: Zone = args.timezone.parse().map_err(|e| format!("{e}"))?;
    let query = ReportQuery::new(
        instant(&args.from, zone)?,
        instant(&args.to, zone)?,
        &args.group_by,
        zone,
    )
    .map_err(|e| format!("{e} ({})", e.code()))?;
    let report = Analytics::new(ports.stats.clone(), ports.campaigns.clone())
        .report(&tenant, &query)
        .await
        .map_err(|e| format!("{e} ({})", e.code()))?;
    let view = ReportView::of(&report);
    if args.json {
        return serde_json::to_string_pretty(&view)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string());
    }
    Ok(table(&view))
}

/// The report as an aligned text table, one row per group and a total.
fn table(view: &ReportView) -> String {
    let mut head: Vec<String> = view.group_by.iter().map(|d| d.to_string()).collect();
    head.extend(
        [
            "messages",
            "delivered",
            "rate",
            "undelivered",
            "failed",
            "pending",
            "parts",
            "cost UAH",
            "p50 s",
            "p95 s",
            "p99 s",
            "clicked",
            "CTR",
        ]
        .map(str::to_owned),
    );
    let cells = |group: Vec<String>, t: &TotalsView| -> Vec<String> {
        let count = |s: MessageStatus| t.statuses.get(&s).copied().unwrap_or(0);
        let pending: i64 = t
            .statuses
            .iter()
            .filter(|(s, _)| !s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        let seconds =
            |ms: Option<i64>| ms.map_or("-".to_owned(), |ms| format!("{:.1}", ms as f64 / 1000.0));
        let latency = &t.latency_ms.accepted_to_delivered;
        let mut row = group;
        row.extend([
            t.messages.to_string(),
            t.delivered.to_string(),
            t.delivery_rate
                .map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
            count(MessageStatus::Undelivered).to_string(),
            (count(MessageStatus::Failed) + count(MessageStatus::Rejected)).to_string(),
            pending.to_string(),
            t.parts.to_string(),
            t.cost_uah.clone(),
            seconds(latency.p50),
            seconds(latency.p95),
            seconds(latency.p99),
            t.clicked.to_string(),
            t.ctr
                .map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
        ]);
        row
    };
    let mut rows: Vec<Vec<String>> = vec![head];
    for g in &view.groups {
        let group = view
            .group_by
            .iter()
            .map(|d| {
                g.group
                    .get(d)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| "-".into())
            })
            .collect();
        rows.push(cells(group, &g.totals));
    }
    if !view.group_by.is_empty() {
        let mut label = vec![String::new(); view.group_by.len()];
        label[0] = "total".into();
        rows.push(cells(label, &view.totals));
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "{} .. {} ({:?})\n",
        view.from.format("%Y-%m-%dT%H:%MZ"),
        view.to.format("%Y-%m-%dT%H:%MZ"),
        view.timezone
    );
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i < view.group_by.len() {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("holub: {e}");
    ExitCode::FAILURE
}
