//! What Holub's end-to-end suites share: the real `holub` binary, built once per test run,
//! started on a random port with a fresh data directory, and driven over HTTP.

pub mod capacity;
pub mod lambda;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The path of the `holub` binary of this workspace, built (debug profile) on first use so the
/// suites always drive the current code.
pub fn holub_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "holub", "--bin", "holub"]);
        // The variables cargo sets for this test would make some dependencies' build
        // scripts see a changed environment and rebuild everything on every run.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || name.starts_with("CARGO_CRATE_")
                || name == "CARGO_PRIMARY_PACKAGE"
                || name == "CARGO_TARGET_TMPDIR"
            {
                build.env_remove(name.as_ref());
            }
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building holub failed");
        // Test executables live in <target>/<profile>/deps; the binary one level up.
        let exe = std::env::current_exe().expect("the test knows its own path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("test executables live in <target>/<profile>/deps");
        profile_dir.join("holub")
    })
    .clone()
}

/// A fresh, empty directory for one test's data, removed when the test passes.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "holub-test-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The senders the kit's tenants are registered for, active on every network.
pub const TEST_SENDERS: [&str; 2] = ["Holub", "Shop24"];

/// A tenant's credentials, as `holub tenant create` printed them.
#[derive(Debug, Clone)]
pub struct TenantKeys {
    pub tenant_id: String,
    pub api_key: String,
    pub webhook_secret: String,
}

/// The limits of the tenants the suites make: wide enough that load and pipeline tests never
/// meet them (the limits' own tests set theirs).
pub const WIDE_LIMITS: [&str; 6] = [
    "countries=UA,PL,DE,GB",
    "rate_per_second=100000",
    "burst=10000000",
    "daily_spend_kopiyky=1000000000000",
    "monthly_spend_kopiyky=1000000000000",
    "per_number_per_hour=1000000",
];

/// [`WIDE_LIMITS`] as name and value.
pub fn wide_limits() -> Vec<(String, String)> {
    WIDE_LIMITS
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

pub fn create_tenant(data_dir: &Path, name: &str) -> TenantKeys {
    create_tenant_with(&holub_bin(), data_dir, name)
}

/// `holub tenant create` with a given binary (the benchmark measures a release build).
pub fn create_tenant_with(bin: &Path, data_dir: &Path, name: &str) -> TenantKeys {
    let out = Command::new(bin)
        .args(["tenant", "create", "--name", name])
        .args(TEST_SENDERS.iter().flat_map(|s| ["--sender", s]))
        .args(WIDE_LIMITS.iter().flat_map(|l| ["--limit", l]))
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("holub tenant create runs");
    assert!(
        out.status.success(),
        "tenant create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let field = |k: &str| v[k].as_str().expect(k).to_owned();
    TenantKeys {
        tenant_id: field("tenant_id"),
        api_key: field("api_key"),
        webhook_secret: field("webhook_secret"),
    }
}

/// `holub tenant <args> --data-dir <dir>`: its JSON answer, or the failure's message.
pub fn tenant_command(data_dir: &Path, args: &[&str]) -> Result<serde_json::Value, String> {
    let out = Command::new(holub_bin())
        .arg("tenant")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("holub tenant runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("not one JSON answer: {e}"))
}

/// A running `holub serve` process; killed when dropped.
pub struct Holub {
    /// What the server printed on its first line: where it listens, its simulators.
    pub info: serde_json::Value,
    bin: PathBuf,
    child: Child,
    pub base_url: String,
    data_dir: PathBuf,
    listen: String,
    extra_args: Vec<String>,
}

/// A free loopback port, for a process that must keep its address across restarts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `holub <args>` and reads the address it prints as `{"listening": ...}` on its
/// first line of stdout; stdout is drained afterwards.
fn spawn_listening(bin: &Path, args: &[String]) -> (Child, String, serde_json::Value) {
    spawn_listening_to(bin, args, Stdio::inherit(), &test_log_level())
}

/// The log filter of the processes tests start: `HOLUB_TEST_LOG`, or warnings only.
fn test_log_level() -> String {
    std::env::var("HOLUB_TEST_LOG").unwrap_or_else(|_| "warn".into())
}

/// [`spawn_listening`] with standard error (the log) going to `stderr`.
fn spawn_listening_to(
    bin: &Path,
    args: &[String],
    stderr: Stdio,
    log_level: &str,
) -> (Child, String, serde_json::Value) {
    let mut child = Command::new(bin)
        .args(args)
        .env("RUST_LOG", log_level)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("holub starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("holub prints where it listens");
    let v: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("unexpected first line {line:?}: {e}"));
    let addr = v["listening"]
        .as_str()
        .expect("listening address")
        .to_owned();
    // Keep draining stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    (child, addr, v)
}

fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens at {addr}");
}

/// A `holub simulator` process of its own; killed when dropped.
pub struct Simulator {
    child: Child,
    pub base_url: String,
    /// The flags that point `holub serve` at this simulator.
    pub serve_args: Vec<String>,
}

impl Simulator {
    pub fn start(receipts_url: &str, api_token: &str, receipt_token: &str, args: &[&str]) -> Self {
        let mut all: Vec<String> = [
            "simulator",
            "--listen",
            "127.0.0.1:0",
            "--receipts-url",
            receipts_url,
            "--api-token",
            api_token,
            "--receipt-token",
            receipt_token,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.extend(args.iter().map(|s| s.to_string()));
        let (child, addr, _) = spawn_listening(&holub_bin(), &all);
        wait_listening(&addr);
        let base_url = format!("http://{addr}");
        let serve_args = [
            "--simulator-url",
            &base_url,
            "--simulator-api-token",
            api_token,
            "--simulator-receipt-token",
            receipt_token,
        ]
        .map(str::to_owned)
        .to_vec();
        Simulator {
            child,
            base_url,
            serve_args,
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Holub {
    /// Starts `holub serve` on a random loopback port over `data_dir`, with `args` added, and
    /// waits until it listens.
    pub fn start(data_dir: &Path, args: &[&str]) -> Holub {
        Self::start_on(data_dir, "127.0.0.1:0", args)
    }

    /// Starts `holub serve` on a given address (kept across restarts).
    pub fn start_on(data_dir: &Path, listen: &str, args: &[&str]) -> Holub {
        Self::start_with(&holub_bin(), data_dir, listen, args)
    }

    /// Starts a given `holub` binary (the benchmark measures a release build).
    pub fn start_with(bin: &Path, data_dir: &Path, listen: &str, args: &[&str]) -> Holub {
        let extra_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Self::spawn(bin.to_owned(), data_dir, listen.to_owned(), extra_args)
    }

    /// Starts `holub serve` on a random port with its log (standard error) appended to the
    /// file `log`, as `holub serve >> holub.log` does.
    pub fn start_logging_to(data_dir: &Path, log: &Path, args: &[&str]) -> Holub {
        Self::start_logging_at(data_dir, log, &test_log_level(), args)
    }

    /// [`Holub::start_logging_to`] with the log filter `level` (`RUST_LOG`'s syntax).
    pub fn start_logging_at(data_dir: &Path, log: &Path, level: &str, args: &[&str]) -> Holub {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the log file opens");
        let extra_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Self::spawn_to(
            holub_bin(),
            data_dir,
            "127.0.0.1:0".to_owned(),
            extra_args,
            Stdio::from(file),
            level,
        )
    }

    /// Whether the process is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(bin: PathBuf, data_dir: &Path, listen: String, extra_args: Vec<String>) -> Holub {
        Self::spawn_to(
            bin,
            data_dir,
            listen,
            extra_args,
            Stdio::inherit(),
            &test_log_level(),
        )
    }

    fn spawn_to(
        bin: PathBuf,
        data_dir: &Path,
        listen: String,
        extra_args: Vec<String>,
        stderr: Stdio,
        log_level: &str,
    ) -> Holub {
        let mut all: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            listen.clone(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        all.extend(extra_args.iter().cloned());
        let (child, addr, info) = spawn_listening_to(&bin, &all, stderr, log_level);
        wait_listening(&addr);
        Holub {
            info,
            bin,
            child,
            base_url: format!("http://{addr}"),
            data_dir: data_dir.to_owned(),
            listen,
            extra_args,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Kills the process at once (SIGKILL): no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process and starts it again over the same data, with the same arguments.
    pub fn restart_after_kill(self) -> Holub {
        self.restart_after_kill_and_pause(Duration::ZERO)
    }

    /// [`Holub::restart_after_kill`], staying down for `pause` first.
    pub fn restart_after_kill_and_pause(mut self, pause: Duration) -> Holub {
        self.kill();
        std::thread::sleep(pause);
        let data_dir = self.data_dir.clone();
        let args = std::mem::take(&mut self.extra_args);
        // A random port stays random; a chosen one is kept.
        Self::spawn(self.bin.clone(), &data_dir, self.listen.clone(), args)
    }
}

impl Drop for Holub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP client for one tenant of a running Holub.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base_url: String,
    pub key: String,
}

/// A response, read whole: status and JSON body (`Null` when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Api {
    pub fn new(holub: &Holub, key: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            base_url: holub.base_url.clone(),
            key: key.to_owned(),
        }
    }

    async fn read(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        }
    }

    /// Follows a short link without following its redirect (as `user_agent`, if given):
    /// the status and the `Location`.
    pub async fn click(&self, code: &str, user_agent: Option<&str>) -> (u16, Option<String>) {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        let mut req = client.get(format!("{}/{code}", self.base_url));
        if let Some(agent) = user_agent {
            req = req.header("User-Agent", agent);
        }
        let resp = req.send().await.expect("request sent");
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (resp.status().as_u16(), location)
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Answer {
        self.post_with(path, body, None).await
    }

    pub async fn post_with(
        &self,
        path: &str,
        body: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> Answer {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.key)
            .json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        Self::read(req.send().await.expect("request sent")).await
    }

    /// Posts raw bytes with a content type, for malformed bodies.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        self.try_post_raw(path, content_type, body)
            .await
            .expect("request sent")
    }

    /// Like `post_raw`, but `None` when the server answered and closed the connection before
    /// the client finished uploading (what an early 413 to a huge body can look like from
    /// the client's side).
    pub async fn try_post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Option<Answer> {
        // A connection of its own: one the server cut must not be reused by the next request.
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .ok()?;
        Some(Self::read(resp).await)
    }

    /// One request with the key, a JSON body if given.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            req = req.json(body);
        }
        Self::read(req.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn patch(&self, path: &str, body: &serde_json::Value) -> Answer {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &serde_json::Value) -> Answer {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// The same server with another key.
    pub fn with_key(&self, key: &str) -> Api {
        Api {
            http: self.http.clone(),
            base_url: self.base_url.clone(),
            key: key.to_owned(),
        }
    }

    /// Every message of the tenant, newest first, following the list's cursor.
    pub async fn all_messages(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/messages?limit=500&cursor={c}"),
                None => "/v1/messages?limit=500".to_owned(),
            };
            let page = self.get(&path).await;
            assert_eq!(page.status, 200, "{:?}", page.body);
            out.extend(
                page.body["messages"]
                    .as_array()
                    .expect("messages")
                    .iter()
                    .cloned(),
            );
            match page.body["next"].as_str() {
                Some(n) => cursor = Some(n.to_owned()),
                None => return out,
            }
        }
    }

    /// Sends one message (`POST /v1/messages` with `body`), which must be accepted; returns
    /// its id.
    pub async fn accepted(&self, body: &serde_json::Value) -> String {
        let a = self.post("/v1/messages", body).await;
        assert_eq!(a.status, 202, "{:?}", a.body);
        a.body["id"].as_str().expect("an id").to_owned()
    }

    /// Polls a message until its status is terminal, or panics after `timeout`.
    pub async fn wait_terminal(&self, id: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let a = self.get(&format!("/v1/messages/{id}")).await;
            assert_eq!(a.status, 200, "{:?}", a.body);
            let status = a.body["status"].as_str().unwrap_or_default().to_owned();
            if TERMINAL.contains(&status.as_str()) {
                return a.body;
            }
            assert!(Instant::now() < deadline, "message {id} still {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `holub serve` flags that make a kill land while messages are in flight, and bring back
/// quickly what it left there: small dispatch batches, short visibility, and early orphan and
/// requeue sweeps.
pub const QUICK_RECOVERY: [&str; 8] = [
    "--dispatch-batch",
    "50",
    "--dispatch-visibility",
    "3",
    "--orphan-after",
    "2",
    "--requeue-after",
    "3",
];

pub const TERMINAL: [&str; 6] = [
    "delivered",
    "undelivered",
    "expired",
    "failed",
    "rejected",
    "cancelled",
];
