//! API Gateway's HTTP API in front of one function: each real HTTP request becomes a
//! payload-format-2.0 event (`$default` route and stage), the function is invoked, and its
//! response object (`statusCode`, `headers`, `multiValueHeaders`, `cookies`, `body`,
//! `isBase64Encoded`) becomes the HTTP response. A function error is answered 500 and a
//! timeout 503, with API Gateway's own bodies.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::{ACCOUNT_ID, InvokeError, LambdaFunction};

/// HTTP API's payload limit.
const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

/// A front whose address is known (so it can go into a function's configuration) but which
/// answers nothing until [`UnservedFront::serve`] gives it its function.
pub struct UnservedFront {
    listener: tokio::net::TcpListener,
    url: String,
}

impl UnservedFront {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn serve(self, function: Arc<LambdaFunction>) -> HttpFront {
        let api_id: String = (0..10)
            .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
            .collect();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::new(Front { function, api_id }));
        let listener = self.listener;
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        HttpFront {
            url: self.url,
            server,
        }
    }
}

/// A running front; stops when dropped.
pub struct HttpFront {
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl HttpFront {
    /// Binds a loopback port for a front.
    pub async fn bind() -> std::io::Result<UnservedFront> {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        Ok(UnservedFront { listener, url })
    }

    /// A front for `function`, serving at once.
    pub async fn start(function: Arc<LambdaFunction>) -> std::io::Result<HttpFront> {
        Ok(Self::bind().await?.serve(function))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for HttpFront {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Front {
    function: Arc<LambdaFunction>,
    api_id: String,
}

fn gateway_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message}))).into_response()
}

async fn handle(
    State(front): State<Arc<Front>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let event = event(&front.api_id, peer, &parts, &body);
    match front.function.invoke(&event).await {
        Ok(answer) => into_response(answer),
        Err(InvokeError::Timeout(_)) => {
            gateway_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Err(e) => {
            eprintln!("[{} front] {e}", front.function.name());
            gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// Whether HTTP API passes a body of this type as text (else base64).
fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let ct = ct.split(';').next().unwrap_or_default().trim();
    ct.starts_with("text/")
        || ct.ends_with("+json")
        || ct.ends_with("+xml")
        || matches!(
            ct,
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
        )
}

/// The payload-format-2.0 event of one request.
fn event(api_id: &str, peer: SocketAddr, parts: &axum::http::request::Parts, body: &[u8]) -> Value {
    let now = chrono::Utc::now();
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == header::COOKIE {
            cookies.extend(value.split("; ").map(str::to_owned));
            continue;
        }
        // Repeated headers arrive as one, comma-separated.
        match headers.get_mut(name.as_str()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let trace = format!(
        "Root=1-{:08x}-{:024x}",
        now.timestamp(),
        rand::random::<u128>() >> 32
    );
    for (name, value) in [
        ("x-forwarded-for", peer.ip().to_string()),
        ("x-forwarded-port", peer.port().to_string()),
        ("x-forwarded-proto", "http".to_owned()),
        ("x-amzn-trace-id", trace),
    ] {
        headers.insert(name.to_owned(), Value::String(value));
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let raw_query = parts.uri.query().unwrap_or_default().to_owned();
    let mut query = Map::new();
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        match query.get_mut(k.as_ref()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&v);
            }
            _ => {
                query.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    let request_id = BASE64.encode(rand::random::<[u8; 10]>());
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": api_id,
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or_default(),
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !body.is_empty() {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok());
        match std::str::from_utf8(body) {
            Ok(text) if is_text(content_type) => event["body"] = json!(text),
            _ => {
                event["body"] = json!(BASE64.encode(body));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    event
}

/// The function's answer as HTTP. An answer without `statusCode` is, as HTTP API reads it,
/// a JSON body of a 200.
fn into_response(answer: Value) -> Response {
    let Some(status) = answer.get("statusCode").and_then(Value::as_u64) else {
        return (StatusCode::OK, axum::Json(answer)).into_response();
    };
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    let mut add = |name: &str, value: &str| {
        // The body is framed here, as HTTP API frames it.
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return;
        }
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(n, v);
        }
    };
    if let Some(Value::Object(single)) = answer.get("headers") {
        for (name, value) in single {
            if let Some(v) = value.as_str() {
                add(name, v);
            }
        }
    }
    if let Some(Value::Object(multi)) = answer.get("multiValueHeaders") {
        for (name, values) in multi {
            for v in values
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                add(name, v);
            }
        }
    }
    for cookie in answer
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        add("set-cookie", cookie);
    }
    let text = answer
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let body = if answer.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        match BASE64.decode(text) {
            Ok(bytes) => bytes,
            Err(_) => {
                return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
        }
    } else {
        text.as_bytes().to_vec()
    };
    (status, headers, Body::from(body)).into_response()
}
