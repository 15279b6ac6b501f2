//! `GET /metrics` of `holub serve`: Prometheus' text format with the counters and latency
//! histograms of what happened to messages, behind a token when one is set.

use std::time::Duration;

use holub_tests::{Api, Holub, TempDir, create_tenant};
use serde_json::json;

/// The value of the sample `name{labels}` (labels as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_messages_and_time_them() {
    let dir = TempDir::new("metrics");
    let keys = create_tenant(dir.path(), "Metrics");
    let holub = Holub::start(
        dir.path(),
        &[
            "--sync",
            "normal",
            "--sim-receipt-delay-ms",
            "100",
            "--sim-delivered-ratio",
            "1.0",
            "--metrics-token",
            "metrics-secret",
        ],
    );
    let api = Api::new(&holub, &keys.api_key);
    let mut ids = Vec::new();
    for to in ["0671234567", "0501234567", "0931234567"] {
        let a = api
            .post(
                "/v1/messages",
                &json!({"to": to, "from": "Holub", "text": "Код 1"}),
            )
            .await;
        assert_eq!(a.status, 202, "{:?}", a.body);
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        api.wait_terminal(id, Duration::from_secs(20)).await;
    }

    let http = reqwest::Client::new();
    let url = format!("{}/metrics", holub.base_url);
    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let wrong = http.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let answer = http
        .get(&url)
        .bearer_auth("metrics-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = answer.text().await.unwrap();
    for operator in ["kyivstar", "vodafone", "lifecell"] {
        for status in ["sent", "delivered"] {
            let series = format!(
                "holub_messages_total{{status=\"{status}\",provider=\"simulator\",operator=\"{operator}\"}}"
            );
            assert_eq!(sample(&text, &series), Some(1.0), "{series} in\n{text}");
        }
    }
    // Latencies per provider and operator: one message to each operator.
    for operator in ["kyivstar", "vodafone", "lifecell"] {
        let labels = format!("provider=\"simulator\",operator=\"{operator}\"");
        for name in ["submit", "receipt", "delivery"] {
            let series = format!("holub_{name}_latency_seconds_count{{{labels}}}");
            assert_eq!(sample(&text, &series), Some(1.0), "{series} in\n{text}");
        }
        // Buckets are cumulative, up to `+Inf` = the count.
        let inf = format!("holub_receipt_latency_seconds_bucket{{{labels},le=\"+Inf\"}}");
        assert_eq!(sample(&text, &inf), Some(1.0), "{text}");
        let sum = format!("holub_delivery_latency_seconds_sum{{{labels}}}");
        assert!(sample(&text, &sum).is_some_and(|s| s > 0.0), "{text}");
    }
    // No number or text in any label.
    assert!(!text.contains("380") && !text.contains("Код"));
}
