//! The Lambda functions as Lambda runs them: each built binary is started as its own process
//! with the environment Lambda gives a `provided.al2023` function, and talks to a local
//! emulator of the Lambda Runtime API (version 2018-06-01) on loopback, one per process:
//!
//! - `GET /2018-06-01/runtime/invocation/next` waits for an invocation and answers its event
//!   with the headers `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
//!   `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id`;
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `…/{id}/error` end it (202;
//!   400 for an unknown request id, 413 for a response over 6 MB);
//! - `POST /2018-06-01/runtime/init/error` reports a failed start (202).
//!
//! Init time is what Lambda calls "Init Duration": from the spawn to the runtime's first
//! `/next` poll. Invocations go one at a time, as in one execution environment.
//!
//! Two drivers put real traffic through the functions: [`HttpFront`] (API Gateway HTTP API,
//! payload format 2.0) and [`SqsEventSource`] (an SQS event source mapping with
//! `ReportBatchItemFailures`). A [`Deployment`] is the AWS side: tables, queues, secrets and
//! a tenant on an emulator, and the environment its functions read.

mod deployment;
mod http_front;
mod sqs_source;
mod stream_source;

pub use deployment::{Deployment, REGION, unique_prefix};
pub use http_front::{HttpFront, UnservedFront};
pub use sqs_source::{Delivery, SqsEventSource, SqsSourceError};
pub use stream_source::{StreamDelivery, StreamEventSource};

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

/// The seven functions, by binary name.
pub const FUNCTIONS: [&str; 7] = [
    "holub-api",
    "holub-receipts",
    "holub-dispatch",
    "holub-callbacks",
    "holub-scheduler",
    "holub-rollup",
    "holub-campaigns",
];

/// The largest response a function may return synchronously.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
/// The account the emulated functions live in.
pub const ACCOUNT_ID: &str = "123456789012";
const LOG_LINES_KEPT: usize = 300;
const API_PREFIX: &str = "/2018-06-01/runtime";

/// The function binaries of this workspace, built (debug profile) on first use so the
/// suites always drive the current code; returns the directory holding them.
pub fn function_bins() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = StdCommand::new(cargo);
        build.args(["build", "--quiet"]);
        for name in FUNCTIONS {
            build.args(["-p", name, "--bin", name]);
        }
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
        assert!(status.success(), "building the Lambda functions failed");
        profile_dir()
    })
    .clone()
}

/// The path of one function binary, built on first use ([`function_bins`]).
pub fn function_bin(name: &str) -> PathBuf {
    function_bins().join(name)
}

/// `<target>/<profile>` of the running executable: a test lives in `<profile>/deps`, a
/// binary in `<profile>` itself.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the executable knows its own path");
    let dir = exe.parent().expect("an executable lives in a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps has a parent").to_owned()
    } else {
        dir.to_owned()
    }
}

/// How one function is configured: what Lambda would read from its configuration.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// The function's name (`AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    pub memory_mb: u32,
    /// Per invocation, from the moment the runtime is handed the event.
    pub timeout: Duration,
    /// From the spawn to the first `/next` poll. Lambda allows 10 s; more here by default,
    /// since debug builds start on a machine that may be busy compiling.
    pub init_timeout: Duration,
    pub region: String,
    /// The function's own variables (`HOLUB_*`, `AWS_ENDPOINT_URL`, credentials, `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl FunctionConfig {
    pub fn new(name: impl Into<String>) -> Self {
        FunctionConfig {
            name: name.into(),
            memory_mb: 256,
            timeout: Duration::from_secs(30),
            init_timeout: Duration::from_secs(30),
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "eu-central-1".into()),
            env: vec![(
                "RUST_LOG".into(),
                std::env::var("HOLUB_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )],
        }
    }

    /// Sets (or replaces) one variable of the function's environment.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.into()));
        self
    }

    pub fn envs<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in vars {
            self = self.env(k.as_ref(), v.as_ref());
        }
        self
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{ACCOUNT_ID}:function:{}",
            self.region, self.name
        )
    }
}

/// Why an invocation produced no result.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function reported an error (`/invocation/{id}/error`).
    #[error("function error {error_type}: {message}")]
    Function {
        error_type: String,
        message: String,
        /// The error document as posted.
        body: serde_json::Value,
    },
    /// The runtime never got to its first `/next`.
    #[error("init failed: {0}")]
    Init(String),
    #[error("Task timed out after {:.2} seconds", .0.as_secs_f64())]
    Timeout(Duration),
    /// The process ended while it was busy or before it was invoked.
    #[error("Runtime exited ({status}); last log lines:\n{logs}")]
    Exited { status: String, logs: String },
    #[error("response too large ({0} bytes)")]
    TooLarge(usize),
    #[error("the response is not JSON: {0}")]
    NotJson(String),
}

/// One invocation, timed as Lambda reports "Duration": from the event handed to the runtime
/// to its response.
#[derive(Debug)]
pub struct Invocation {
    pub request_id: String,
    pub duration: Duration,
    pub result: Result<serde_json::Value, InvokeError>,
}

/// How a runtime ended an invocation.
enum Outcome {
    Response(Bytes),
    Error(InvokeError),
}

/// Where the runtime's answer to an invocation goes, with the invocation's duration.
type Reply = oneshot::Sender<(Outcome, Duration)>;

/// An invocation waiting for the runtime's `/next`.
struct Pending {
    request_id: String,
    event: Bytes,
    deadline_ms: u64,
    trace_id: String,
    reply: Reply,
}

/// Where a start stands.
#[derive(Debug, Clone)]
enum Phase {
    Starting,
    Ready(Duration),
    InitFailed(String),
    Exited(String),
}

struct Emulator {
    spawned_at: Instant,
    arn: String,
    phase: watch::Sender<Phase>,
    next: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    /// Invocations handed out, by request id, with when they were.
    in_flight: Mutex<HashMap<String, (Reply, Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The last lines a process wrote, for error messages.
#[derive(Clone, Default)]
struct LogTail(Arc<Mutex<VecDeque<String>>>);

impl LogTail {
    fn push(&self, line: String) {
        let mut lines = lock(&self.0);
        if lines.len() == LOG_LINES_KEPT {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn last(&self, n: usize) -> String {
        let lines = lock(&self.0);
        let skip = lines.len().saturating_sub(n);
        lines
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One running function: its process and its Runtime API. The process is killed when this
/// is dropped.
pub struct LambdaFunction {
    config: FunctionConfig,
    emulator: Arc<Emulator>,
    queue: mpsc::Sender<Pending>,
    /// One invocation at a time, as in one execution environment.
    busy: tokio::sync::Mutex<()>,
    exited: watch::Receiver<Option<String>>,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    logs: LogTail,
    pid: Option<u32>,
    server: tokio::task::JoinHandle<()>,
    runtime_api: SocketAddr,
}

impl LambdaFunction {
    /// Starts `bin` as the function `config` describes, with a Runtime API of its own; does
    /// not wait for its init ([`LambdaFunction::ready`] does).
    pub async fn start(bin: &Path, config: FunctionConfig) -> std::io::Result<LambdaFunction> {
        // The process runs in its own directory (LAMBDA_TASK_ROOT), so a relative path would
        // no longer name it.
        let bin = &std::path::absolute(bin)?;
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let runtime_api = listener.local_addr()?;
        let (queue, next) = mpsc::channel(16);
        let (phase, _) = watch::channel(Phase::Starting);
        let mut command = tokio::process::Command::new(bin);
        command
            .env_clear()
            .envs(lambda_env(&config, bin, runtime_api))
            .envs(config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(bin.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let mut child = command.spawn()?;
        let emulator = Arc::new(Emulator {
            spawned_at,
            arn: config.arn(),
            phase,
            next: tokio::sync::Mutex::new(next),
            in_flight: Mutex::new(HashMap::new()),
        });
        let server = tokio::spawn({
            let app = runtime_api_router(emulator.clone());
            async move {
                let _ = axum::serve(listener, app).await;
            }
        });
        let logs = LogTail::default();
        let echo = std::env::var_os("HOLUB_TEST_LOG").is_some();
        let mut drains = Vec::new();
        if let Some(out) = child.stdout.take() {
            drains.push(drain(out, config.name.clone(), logs.clone(), echo));
        }
        if let Some(err) = child.stderr.take() {
            drains.push(drain(err, config.name.clone(), logs.clone(), echo));
        }
        let pid = child.id();
        let (exit_tx, exited) = watch::channel(None);
        let (kill, killed) = oneshot::channel::<()>();
        let phase = emulator.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = killed => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let status = match status {
                Ok(s) => describe(s),
                Err(e) => format!("not waitable: {e}"),
            };
            // Its last words, before anyone reads why it ended.
            for d in drains {
                let _ = tokio::time::timeout(Duration::from_secs(1), d).await;
            }
            phase.phase.send_if_modified(|p| match p {
                Phase::Starting => {
                    *p = Phase::Exited(status.clone());
                    true
                }
                _ => false,
            });
            let _ = exit_tx.send(Some(status));
        });
        Ok(LambdaFunction {
            config,
            emulator,
            queue,
            busy: tokio::sync::Mutex::new(()),
            exited,
            kill: Mutex::new(Some(kill)),
            logs,
            pid,
            server,
            runtime_api,
        })
    }

    /// Starts the function and waits for its init; fails if it does not poll in time.
    pub async fn start_ready(bin: &Path, config: FunctionConfig) -> Result<Self, InvokeError> {
        let function = Self::start(bin, config)
            .await
            .map_err(|e| InvokeError::Init(format!("{}: not started: {e}", bin.display())))?;
        function.ready().await?;
        Ok(function)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &FunctionConfig {
        &self.config
    }

    /// The process id (the process may have ended since).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// `AWS_LAMBDA_RUNTIME_API` of this function.
    pub fn runtime_api(&self) -> SocketAddr {
        self.runtime_api
    }

    /// The last `n` lines the function wrote (stdout and stderr).
    pub fn logs(&self, n: usize) -> String {
        self.logs.last(n)
    }

    /// Waits for the init to end: the init time (spawn → first `/next`), or why it failed.
    pub async fn ready(&self) -> Result<Duration, InvokeError> {
        let mut phase = self.emulator.phase.subscribe();
        let waited = tokio::time::timeout(
            self.config.init_timeout,
            phase.wait_for(|p| !matches!(p, Phase::Starting)),
        )
        .await;
        let phase = match waited {
            Ok(Ok(p)) => p.clone(),
            Ok(Err(_)) => Phase::Exited("the emulator stopped".into()),
            Err(_) => {
                self.stop();
                return Err(InvokeError::Init(format!(
                    "no /next within {:?}; last log lines:\n{}",
                    self.config.init_timeout,
                    self.logs(30)
                )));
            }
        };
        match phase {
            Phase::Ready(init) => Ok(init),
            Phase::InitFailed(error) => Err(InvokeError::Init(format!(
                "{error}; last log lines:\n{}",
                self.logs(30)
            ))),
            Phase::Exited(status) => Err(InvokeError::Init(format!(
                "the process exited ({status}) before its first /next; last log lines:\n{}",
                self.logs(30)
            ))),
            Phase::Starting => unreachable!("waited for another phase"),
        }
    }

    /// The init time, once the runtime has polled.
    pub fn init_duration(&self) -> Option<Duration> {
        match &*self.emulator.phase.borrow() {
            Phase::Ready(d) => Some(*d),
            _ => None,
        }
    }

    /// Invokes the function with `event` (RequestResponse) and returns its JSON result.
    pub async fn invoke(
        &self,
        event: &serde_json::Value,
    ) -> Result<serde_json::Value, InvokeError> {
        self.invoke_timed(event).await.result
    }

    /// Invokes the function and reports how long the invocation took.
    pub async fn invoke_timed(&self, event: &serde_json::Value) -> Invocation {
        let request_id = uuid_v4();
        let failed = |e: InvokeError| Invocation {
            request_id: request_id.clone(),
            duration: Duration::ZERO,
            result: Err(e),
        };
        let _busy = self.busy.lock().await;
        if let Err(e) = self.ready().await {
            return failed(e);
        }
        if let Some(status) = self.exited.borrow().clone() {
            return failed(InvokeError::Exited {
                status,
                logs: self.logs(30),
            });
        }
        let event = Bytes::from(serde_json::to_vec(event).expect("JSON serialises"));
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            request_id: request_id.clone(),
            event,
            deadline_ms: epoch_ms() + self.config.timeout.as_millis() as u64,
            trace_id: trace_id(),
            reply,
        };
        if self.queue.send(pending).await.is_err() {
            return failed(InvokeError::Exited {
                status: "the Runtime API emulator stopped".into(),
                logs: self.logs(30),
            });
        }
        let mut exited = self.exited.clone();
        // The timeout starts when the runtime takes the event; the runtime may still be
        // finishing the previous one's response, so allow it a little more here.
        let outcome = tokio::select! {
            biased;
            answer = answer => answer.ok(),
            _ = exited.wait_for(Option::is_some) => None,
            _ = tokio::time::sleep(self.config.timeout + Duration::from_secs(1)) => {
                // Lambda ends the execution environment of a function that timed out.
                self.stop();
                return failed(InvokeError::Timeout(self.config.timeout));
            }
        };
        let Some((outcome, duration)) = outcome else {
            let status = self
                .exited
                .borrow()
                .clone()
                .unwrap_or_else(|| "unknown".into());
            return failed(InvokeError::Exited {
                status,
                logs: self.logs(30),
            });
        };
        let result = match outcome {
            Outcome::Response(body) => serde_json::from_slice(&body)
                .map_err(|_| InvokeError::NotJson(String::from_utf8_lossy(&body).into_owned())),
            Outcome::Error(e) => Err(e),
        };
        Invocation {
            request_id,
            duration,
            result,
        }
    }

    /// Kills the process (as Lambda does to an environment it is done with).
    pub fn stop(&self) {
        if let Some(kill) = lock(&self.kill).take() {
            let _ = kill.send(());
        }
    }

    /// Kills the process and waits until it is gone.
    pub async fn shut_down(&self) {
        self.stop();
        let mut exited = self.exited.clone();
        let _ = exited.wait_for(Option::is_some).await;
    }

    /// Peak resident memory of the process so far, in KiB (Linux).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

impl Drop for LambdaFunction {
    fn drop(&mut self) {
        self.stop();
        self.server.abort();
    }
}

/// What Lambda puts in a custom runtime's environment.
fn lambda_env(config: &FunctionConfig, bin: &Path, api: SocketAddr) -> Vec<(String, String)> {
    let task_root = bin
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/var/task".into());
    let date = chrono::Utc::now().format("%Y/%m/%d");
    let stream = format!("{date}/[$LATEST]{:032x}", rand::random::<u128>());
    [
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", config.name.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            config.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", config.name),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".into()),
        ("AWS_REGION", config.region.clone()),
        ("AWS_DEFAULT_REGION", config.region.clone()),
        ("_HANDLER", "bootstrap".into()),
        ("LAMBDA_TASK_ROOT", task_root),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".into()),
        ("TZ", ":UTC".into()),
        ("LANG", "en_US.UTF-8".into()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn drain(
    stream: impl AsyncRead + Unpin + Send + 'static,
    name: String,
    logs: LogTail,
    echo: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("[{name}] {line}");
            }
            logs.push(line);
        }
    })
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A random UUID (version 4), the shape of Lambda's request ids.
pub fn uuid_v4() -> String {
    const VERSION: u128 = 0x4 << 76;
    const VARIANT: u128 = 0x2 << 62;
    let n = rand::random::<u128>();
    let n = (n & !(0xf << 76)) | VERSION;
    let n = (n & !(0x3 << 62)) | VARIANT;
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// An X-Ray trace header as Lambda passes it.
fn trace_id() -> String {
    format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
        epoch_ms() / 1000,
        rand::random::<u128>() >> 32,
        rand::random::<u64>()
    )
}

fn runtime_api_router(emulator: Arc<Emulator>) -> Router {
    Router::new()
        .route(&format!("{API_PREFIX}/invocation/next"), get(next))
        .route(
            &format!("{API_PREFIX}/invocation/{{id}}/response"),
            post(response),
        )
        .route(
            &format!("{API_PREFIX}/invocation/{{id}}/error"),
            post(invocation_error),
        )
        .route(&format!("{API_PREFIX}/init/error"), post(init_error))
        // Larger than the limit, so an oversized response is answered 413 by us, not cut.
        .layer(DefaultBodyLimit::max(2 * MAX_RESPONSE_BYTES))
        .with_state(emulator)
}

fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"errorMessage": message, "errorType": error_type})),
    )
        .into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

async fn next(State(emulator): State<Arc<Emulator>>) -> Response {
    let polled_at = emulator.spawned_at.elapsed();
    emulator.phase.send_if_modified(|p| match p {
        Phase::Starting => {
            *p = Phase::Ready(polled_at);
            true
        }
        _ => false,
    });
    let pending = emulator.next.lock().await.recv().await;
    let Some(pending) = pending else {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Runtime.ExitError",
            "the function is being shut down",
        );
    };
    lock(&emulator.in_flight).insert(pending.request_id.clone(), (pending.reply, Instant::now()));
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", &pending.request_id);
    set(
        "lambda-runtime-deadline-ms",
        &pending.deadline_ms.to_string(),
    );
    set("lambda-runtime-invoked-function-arn", &emulator.arn);
    set("lambda-runtime-trace-id", &pending.trace_id);
    set(header::CONTENT_TYPE.as_str(), "application/json");
    (StatusCode::OK, headers, pending.event).into_response()
}

fn finish(emulator: &Emulator, id: &str, outcome: Outcome) -> bool {
    let Some((reply, handed_at)) = lock(&emulator.in_flight).remove(id) else {
        return false;
    };
    let _ = reply.send((outcome, handed_at.elapsed()));
    true
}

async fn response(
    State(emulator): State<Arc<Emulator>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    if body.len() > MAX_RESPONSE_BYTES {
        let size = body.len();
        finish(&emulator, &id, Outcome::Error(InvokeError::TooLarge(size)));
        return api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!(
                "Response payload size ({size} bytes) exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
            ),
        );
    }
    if finish(&emulator, &id, Outcome::Response(body)) {
        accepted()
    } else {
        api_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "Invalid request ID",
        )
    }
}

/// The error document a runtime posts: `{"errorMessage", "errorType", "stackTrace"}`.
fn error_document(headers: &HeaderMap, body: &Bytes) -> (String, String, serde_json::Value) {
    let doc: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| json!({"errorMessage": String::from_utf8_lossy(body)}));
    let error_type = doc["errorType"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            headers
                .get("lambda-runtime-function-error-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "Unhandled".into());
    let message = doc["errorMessage"].as_str().unwrap_or_default().to_owned();
    (error_type, message, doc)
}

async fn invocation_error(
    State(emulator): State<Arc<Emulator>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (error_type, message, body) = error_document(&headers, &body);
    let error = InvokeError::Function {
        error_type,
        message,
        body,
    };
    if finish(&emulator, &id, Outcome::Error(error)) {
        accepted()
    } else {
        api_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "Invalid request ID",
        )
    }
}

async fn init_error(
    State(emulator): State<Arc<Emulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (error_type, message, _) = error_document(&headers, &body);
    let reported = emulator.phase.send_if_modified(|p| match p {
        Phase::Starting => {
            *p = Phase::InitFailed(format!("init error {error_type}: {message}"));
            true
        }
        _ => false,
    });
    if reported {
        accepted()
    } else {
        // After the first /next the init is over.
        api_error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "State transition from Ready to InitError failed for runtime.",
        )
    }
}
