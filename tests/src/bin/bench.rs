//! `holub-bench`: pushes N messages through the whole local pipeline of a real
//! `holub serve` (intake → queue → dispatch → simulator → receipt → delivered) and prints
//! accepted/s, delivered/s, accept latency percentiles and the server's peak RSS.
//!
//! `--mode redirect` measures tracked links instead: it sends `--messages` messages with
//! `track_links`, then follows their short links `--clicks` times at `--concurrency` and
//! prints redirects/s and the redirect's latency percentiles (each click is recorded before
//! its redirect is answered).
//!
//! Run it against a release build:
//! `cargo build --release -p holub && cargo run --release -p holub-tests --bin holub-bench -- --help`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use holub_tests::{Holub, TempDir, create_tenant_with};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Measure Holub's local pipeline end to end")]
struct Args {
    /// `batch`: POST /v1/messages/batch; `single`: POST /v1/messages; `redirect`: GET the
    /// short links of tracked links.
    #[arg(long, default_value = "batch", value_parser = ["batch", "single", "redirect"])]
    mode: String,
    /// Redirect mode: short links followed.
    #[arg(long, default_value_t = 100_000)]
    clicks: usize,
    /// Messages to push through.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Recipients per batch request.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Requests in flight at once (batch mode; single mode without --rate).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Single mode: send at this many requests per second (open loop) instead of as fast as
    /// the concurrency allows.
    #[arg(long)]
    rate: Option<u64>,
    /// SQLite durability of the server: `full` (fsync per commit group) or `normal`.
    #[arg(long, default_value = "full")]
    sync: String,
    /// Recipients: `sequential` (067 000 0000, 067 000 0001, …) or `scattered` (the same
    /// numbers in a pseudo-random order, as real recipients come: every index keyed by number
    /// then takes inserts all over, not at its end).
    #[arg(long, default_value = "sequential", value_parser = ["sequential", "scattered"])]
    numbers: String,
    /// The holub binary to measure.
    #[arg(long, default_value = "target/release/holub")]
    holub: PathBuf,
}

/// The `i`th recipient: `067` and seven digits.
fn recipient(i: usize, scattered: bool) -> String {
    let n = i % 10_000_000;
    // 7,919,777 is coprime to 10^7, so this is a permutation of the seven-digit numbers.
    let n = if scattered {
        (n * 7_919_777 + 1_234_567) % 10_000_000
    } else {
        n
    };
    format!("067{n:07}")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn count(db: &rusqlite::Connection, sql: &str) -> u64 {
    db.query_row(sql, [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let bin = std::fs::canonicalize(&args.holub).unwrap_or_else(|_| {
        eprintln!(
            "holub-bench: {} not found; build it with `cargo build --release -p holub`",
            args.holub.display()
        );
        std::process::exit(2);
    });
    let dir = TempDir::new("bench");
    let keys = create_tenant_with(&bin, dir.path(), "Bench");
    let holub = Holub::start_with(
        &bin,
        dir.path(),
        "127.0.0.1:0",
        &[
            "--sync",
            &args.sync,
            "--sim-receipt-delay-ms",
            "200",
            "--sim-delivered-ratio",
            "1.0",
        ],
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(64))
        .build()
        .expect("HTTP client");
    let key = Arc::new(keys.api_key);
    let base = Arc::new(holub.base_url.clone());

    if args.mode == "redirect" {
        redirects(&args, &http, &key, &base).await;
        drop(holub);
        return;
    }
    let started = Instant::now();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut accepted = 0usize;
    let scattered = args.numbers == "scattered";
    match args.mode.as_str() {
        "batch" => {
            let batches = args.messages.div_ceil(args.batch_size);
            let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
            let mut tasks = Vec::new();
            for b in 0..batches {
                let n = args.batch_size.min(args.messages - b * args.batch_size);
                let permit = sem.clone().acquire_owned().await.expect("semaphore");
                let (http, key, base) = (http.clone(), key.clone(), base.clone());
                tasks.push(tokio::spawn(async move {
                    let recipients: Vec<_> = (0..n)
                        .map(|i| json!({"to": recipient(b * 1000 + i, scattered)}))
                        .collect();
                    let body =
                        json!({"from": "Holub", "text": "Ваш код: 4821", "recipients": recipients});
                    let t = Instant::now();
                    let resp = http
                        .post(format!("{base}/v1/messages/batch"))
                        .bearer_auth(key.as_str())
                        .json(&body)
                        .send()
                        .await;
                    let took = t.elapsed();
                    drop(permit);
                    let ok = match resp {
                        Ok(r) if r.status().as_u16() == 202 => {
                            r.json::<serde_json::Value>()
                                .await
                                .ok()
                                .and_then(|v| v["accepted"].as_u64())
                                .unwrap_or(0) as usize
                        }
                        _ => 0,
                    };
                    (took, ok)
                }));
            }
            for t in tasks {
                let (took, ok) = t.await.expect("task");
                latencies.push(took);
                accepted += ok;
            }
        }
        _ => {
            let sem = Arc::new(tokio::sync::Semaphore::new(match args.rate {
                Some(_) => 1024,
                None => args.concurrency.max(1),
            }));
            let mut tick = args
                .rate
                .map(|r| tokio::time::interval(Duration::from_secs_f64(1.0 / r.max(1) as f64)));
            let mut tasks = Vec::with_capacity(args.messages);
            for i in 0..args.messages {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let permit = sem.clone().acquire_owned().await.expect("semaphore");
                let (http, key, base) = (http.clone(), key.clone(), base.clone());
                tasks.push(tokio::spawn(async move {
                    let body = json!({"to": recipient(i, scattered), "from": "Holub", "text": "Ваш код: 4821"});
                    let t = Instant::now();
                    let resp = http
                        .post(format!("{base}/v1/messages"))
                        .bearer_auth(key.as_str())
                        .json(&body)
                        .send()
                        .await;
                    let took = t.elapsed();
                    drop(permit);
                    let ok = matches!(&resp, Ok(r) if r.status().as_u16() == 202);
                    (took, ok as usize)
                }));
            }
            for t in tasks {
                let (took, ok) = t.await.expect("task");
                latencies.push(took);
                accepted += ok;
            }
        }
    }
    let accept_time = started.elapsed();

    // Wait until every accepted message is terminal, reading the server's database.
    let db = rusqlite::Connection::open_with_flags(
        dir.path().join("holub.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the server's database");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let live = count(&db, "SELECT count(*) FROM messages WHERE live = 1");
        if live == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total_time = started.elapsed();
    let delivered = count(
        &db,
        "SELECT count(*) FROM messages WHERE status = 'delivered'",
    );
    let rss = peak_rss_kib(holub.pid());
    drop(holub);

    latencies.sort();
    let out = json!({
        "mode": args.mode,
        "sync": args.sync,
        "messages": args.messages,
        "requests": latencies.len(),
        "accepted": accepted,
        "delivered": delivered,
        "accept_seconds": accept_time.as_secs_f64(),
        "accepted_per_second": accepted as f64 / accept_time.as_secs_f64(),
        "end_to_end_seconds": total_time.as_secs_f64(),
        "delivered_per_second": delivered as f64 / total_time.as_secs_f64(),
        "accept_latency_ms": {
            "p50": percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            "p99": percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            "max": latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        },
        "server_peak_rss_mib": rss.map(|k| k as f64 / 1024.0),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}

/// The redirect benchmark: messages with tracked links, then their short links followed.
async fn redirects(args: &Args, http: &reqwest::Client, key: &str, base: &str) {
    let mut sent = 0;
    while sent < args.messages {
        let n = args.batch_size.min(args.messages - sent);
        let recipients: Vec<_> = (sent..sent + n)
            .map(|i| json!({"to": recipient(i, false)}))
            .collect();
        let resp = http
            .post(format!("{base}/v1/messages/batch"))
            .bearer_auth(key)
            .json(
                &json!({"from": "Holub", "track_links": true, "recipients": recipients,
                "text": "Ваше замовлення готове: https://shop.example.ua/orders?id=1542"}),
            )
            .send()
            .await
            .expect("a batch sent");
        assert_eq!(resp.status().as_u16(), 202, "the batch was refused");
        sent += n;
    }
    let mut codes: Vec<String> = Vec::with_capacity(args.messages);
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}/v1/messages?limit=500&cursor={c}"),
            None => format!("{base}/v1/messages?limit=500"),
        };
        let page: serde_json::Value = http
            .get(path)
            .bearer_auth(key)
            .send()
            .await
            .expect("a page")
            .json()
            .await
            .expect("JSON");
        for m in page["messages"].as_array().into_iter().flatten() {
            for l in m["links"].as_array().into_iter().flatten() {
                codes.extend(l["code"].as_str().map(str::to_owned));
            }
        }
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
    }
    assert!(!codes.is_empty(), "no short links were made");
    let follower = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(args.concurrency.max(64))
        .user_agent(
            "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36",
        )
        .build()
        .expect("HTTP client");
    let codes = Arc::new(codes);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (follower, codes, next, base) = (
                follower.clone(),
                codes.clone(),
                next.clone(),
                base.to_owned(),
            );
            let clicks = args.clicks;
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut redirected = 0usize;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= clicks {
                        return (latencies, redirected);
                    }
                    let t = Instant::now();
                    let resp = follower
                        .get(format!("{base}/{}", codes[i % codes.len()]))
                        .send()
                        .await;
                    latencies.push(t.elapsed());
                    redirected += usize::from(matches!(&resp, Ok(r) if r.status().as_u16() == 302));
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(args.clicks);
    let mut redirected = 0;
    for w in workers {
        let (l, r) = w.await.expect("a worker");
        latencies.extend(l);
        redirected += r;
    }
    let took = started.elapsed();
    latencies.sort();
    let out = json!({
        "mode": "redirect",
        "sync": args.sync,
        "messages": args.messages,
        "links": codes.len(),
        "clicks": args.clicks,
        "concurrency": args.concurrency,
        "redirected": redirected,
        "seconds": took.as_secs_f64(),
        "redirects_per_second": redirected as f64 / took.as_secs_f64(),
        "redirect_latency_ms": {
            "p50": percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            "p99": percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            "max": latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        },
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
