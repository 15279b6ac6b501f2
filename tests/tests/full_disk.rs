//! A full disk: `holub serve` keeps its data directory on a small tmpfs, messages are sent
//! in a loop, the disk is filled, then freed. While it is full every request must be
//! answered — accepted (202) or refused cleanly (503 `temporarily_unavailable`), never a
//! dropped connection or a 500; once it is freed new requests must be accepted again without
//! a restart, and every accepted message must end in a terminal status within seconds (well
//! before the requeue sweep's five minutes).
//!
//! Two setups: the log elsewhere, and the log on the same disk (`holub serve >>
//! holub-data/holub.log`), where writing the log fails too.
//!
//! Mounting a tmpfs needs root (or `sudo -n`). Without it the tests are skipped with a
//! notice, or fail when `CI` is set: CI runs them.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use holub_tests::{Api, Holub, TERMINAL, TempDir, create_tenant};
use serde_json::json;

/// Small enough to fill in a moment, large enough for Holub's first few hundred messages.
const TMPFS_SIZE: &str = "24m";
/// Clients sending at once.
const SENDERS: usize = 4;
/// How long a client waits for an answer before counting the request as unanswered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A tmpfs mounted on a fresh directory; unmounted (and the directory removed) when dropped.
struct Tmpfs {
    dir: TempDir,
    sudo: bool,
}

impl Tmpfs {
    /// Mounts one, as root or through `sudo -n`; `None` (after a notice) if neither can and
    /// this is not CI.
    fn mount(label: &str) -> Option<Tmpfs> {
        let dir = TempDir::new(label);
        let options = format!("size={TMPFS_SIZE},mode=0777");
        let mount = |sudo: bool| {
            let mut command = if sudo {
                let mut c = Command::new("sudo");
                c.args(["-n", "mount"]);
                c
            } else {
                Command::new("mount")
            };
            command
                .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
                .arg(dir.path())
                .output()
        };
        let mut failures = Vec::new();
        for sudo in [false, true] {
            match mount(sudo) {
                Ok(out) if out.status.success() => return Some(Tmpfs { dir, sudo }),
                Ok(out) => failures.push(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
                Err(e) => failures.push(e.to_string()),
            }
        }
        let why = format!("cannot mount a tmpfs (needs root or sudo -n): {failures:?}");
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("SKIPPED: {why}");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let mut command = if self.sudo {
            let mut c = Command::new("sudo");
            c.args(["-n", "umount"]);
            c
        } else {
            Command::new("umount")
        };
        // Lazily, so a straggling open file cannot leave the mount behind.
        let _ = command.arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `path` to the last byte, with a file at `path`.
fn fill(path: &Path) {
    let mut file = File::create(path).expect("the filler file opens");
    for chunk in [1 << 20, 4096, 512, 1] {
        let bytes = vec![0u8; chunk];
        while file.write_all(&bytes).is_ok() {}
    }
    let _ = file.sync_all();
}

/// What one request got.
#[derive(Debug)]
enum Outcome {
    Accepted {
        id: String,
    },
    Refused,
    /// Anything else: another status, or no answer at all.
    Broken(String),
}

struct Load {
    outcomes: Arc<Mutex<Vec<(Instant, Outcome)>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `SENDERS` clients sending one message after another until stopped.
    fn start(holub: &Holub, key: &str) -> Load {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .timeout(ANSWER_TIMEOUT)
            .build()
            .expect("an HTTP client");
        let tasks = (0..SENDERS)
            .map(|sender| {
                let (outcomes, stop, http) = (outcomes.clone(), stop.clone(), http.clone());
                let url = holub.url("/v1/messages");
                let key = key.to_owned();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let body = json!({
                            "to": format!("067{:07}", (sender as u64 * 1_000_000 + n) % 10_000_000),
                            "from": "Holub",
                            "text": "full disk test",
                        });
                        let outcome =
                            match http.post(&url).bearer_auth(&key).json(&body).send().await {
                                Err(e) => Outcome::Broken(format!("no answer: {e}")),
                                Ok(r) => {
                                    let status = r.status().as_u16();
                                    let body: serde_json::Value =
                                        r.json().await.unwrap_or_default();
                                    match (status, &body["id"], &body["error"]["code"]) {
                                        (202, serde_json::Value::String(id), _) => {
                                            Outcome::Accepted { id: id.clone() }
                                        }
                                        (503, _, code) if code == "temporarily_unavailable" => {
                                            Outcome::Refused
                                        }
                                        _ => Outcome::Broken(format!("{status} {body}")),
                                    }
                                }
                            };
                        let failed = !matches!(outcome, Outcome::Accepted { .. });
                        outcomes
                            .lock()
                            .expect("outcomes")
                            .push((Instant::now(), outcome));
                        if failed {
                            // As a client honouring a 503 would, and so the log is not flooded.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            outcomes,
            stop,
            tasks,
        }
    }

    /// How many requests since `since` ended in `what`.
    fn count_since(&self, since: Instant, what: fn(&Outcome) -> bool) -> usize {
        self.outcomes
            .lock()
            .expect("outcomes")
            .iter()
            .filter(|(at, o)| *at >= since && what(o))
            .count()
    }

    /// Waits until `what` has happened `n` times since `since`, or panics after `timeout`.
    async fn wait_for(
        &self,
        since: Instant,
        n: usize,
        what: fn(&Outcome) -> bool,
        timeout: Duration,
        waiting_for: &str,
    ) {
        let deadline = Instant::now() + timeout;
        while self.count_since(since, what) < n {
            assert!(
                Instant::now() < deadline,
                "no {waiting_for} within {timeout:?}; {}",
                self.summary()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn summary(&self) -> String {
        let outcomes = self.outcomes.lock().expect("outcomes");
        let accepted = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Accepted { .. }))
            .count();
        let refused = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Refused))
            .count();
        format!(
            "{} requests: {accepted} accepted, {refused} refused, {} broken",
            outcomes.len(),
            outcomes.len() - accepted - refused
        )
    }

    /// Stops the clients; returns every outcome.
    async fn stop(self) -> Vec<(Instant, Outcome)> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a sender task");
        }
        std::mem::take(&mut *self.outcomes.lock().expect("outcomes"))
    }
}

fn accepted(o: &Outcome) -> bool {
    matches!(o, Outcome::Accepted { .. })
}

fn refused(o: &Outcome) -> bool {
    matches!(o, Outcome::Refused)
}

/// The status of every message of the tenant.
async fn statuses(api: &Api) -> Vec<(String, String)> {
    api.all_messages()
        .await
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or_default().to_owned(),
                m["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Where the log goes.
enum Log {
    /// A file on another disk.
    Elsewhere,
    /// A file in the data directory, on the disk that fills.
    OnTheDataDisk,
}

async fn survive_a_full_disk(label: &str, log: Log) {
    let Some(tmpfs) = Tmpfs::mount(label) else {
        return;
    };
    let data_dir = tmpfs.path().join("holub-data");
    let keys = create_tenant(&data_dir, "Full disk");
    let args = [
        "--sim-receipt-delay-ms",
        "200",
        "--sim-delivered-ratio",
        "1.0",
        "--dispatch-visibility",
        "3",
        "--orphan-after",
        "2",
        // The requeue sweep's default, said out loud: it is not what must finish the
        // messages whose jobs could not be queued.
        "--requeue-after",
        "300",
    ];
    // Kept when the test fails, like the data directory.
    let log_dir = TempDir::new(&format!("{label}-log"));
    let log_file: PathBuf = match log {
        Log::Elsewhere => log_dir.path().join("holub.log"),
        Log::OnTheDataDisk => data_dir.join("holub.log"),
    };
    let mut holub = Holub::start_logging_to(&data_dir, &log_file, &args);
    let api = Api::new(&holub, &keys.api_key);

    let load = Load::start(&holub, &keys.api_key);
    let started = Instant::now();
    load.wait_for(
        started,
        50,
        accepted,
        Duration::from_secs(20),
        "202 before filling",
    )
    .await;

    // Full: refused cleanly, for a while.
    let filler = tmpfs.path().join("filler");
    fill(&filler);
    let full_at = Instant::now();
    load.wait_for(
        full_at,
        20,
        refused,
        Duration::from_secs(20),
        "503 once full",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Anything a request freed (a rolled-back write) is taken again, so the disk stays full.
    fill(&tmpfs.path().join("filler-2"));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Freed: accepted again, without a restart.
    fs::remove_file(&filler).expect("the filler goes");
    fs::remove_file(tmpfs.path().join("filler-2")).expect("the second filler goes");
    let freed_at = Instant::now();
    load.wait_for(
        freed_at,
        50,
        accepted,
        Duration::from_secs(15),
        "202 once freed",
    )
    .await;
    let outcomes = load.stop().await;
    assert!(holub.is_running(), "holub exited");

    let broken: Vec<&str> = outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::Broken(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    let refused_while_full = outcomes
        .iter()
        .filter(|(at, o)| *at >= full_at && *at < freed_at && refused(o))
        .count();
    let accepted: Vec<&str> = outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::Accepted { id } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    eprintln!(
        "{label}: {} requests, {} accepted, {refused_while_full} refused while full, {} broken",
        outcomes.len(),
        accepted.len(),
        broken.len()
    );
    assert!(
        broken.is_empty(),
        "requests not answered cleanly: {broken:?}"
    );

    // Every accepted message ends, within seconds of the disk being freed.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let held = statuses(&api).await;
        let status_of: std::collections::HashMap<&str, &str> = held
            .iter()
            .map(|(id, status)| (id.as_str(), status.as_str()))
            .collect();
        let lost: Vec<&&str> = accepted
            .iter()
            .filter(|id| !status_of.contains_key(**id))
            .collect();
        assert!(lost.is_empty(), "accepted messages lost: {lost:?}");
        let open: Vec<(&str, &str)> = accepted
            .iter()
            .map(|id| (*id, status_of[id]))
            .filter(|(_, status)| !TERMINAL.contains(status))
            .collect();
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted messages never finished, e.g. {:?}",
            open.len(),
            accepted.len(),
            &open[..open.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(holub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_survived_with_the_log_elsewhere() {
    survive_a_full_disk("full-disk-log-elsewhere", Log::Elsewhere).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_survived_with_the_log_on_it() {
    survive_a_full_disk("full-disk-log-on-it", Log::OnTheDataDisk).await;
}
