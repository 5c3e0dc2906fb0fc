//! Metrics stay bounded whatever methods and paths clients make up: nothing a client sends
//! becomes a label.

use std::collections::BTreeSet;

use rand::Rng;
use rand::distr::Alphanumeric;
use reqwest::Method;

use crate::cli::Herald;

/// The request-driven series (name and labels, without the value) of a Prometheus text page.
/// The dispatcher's own gauges (queue depth) appear on a timer of their own, whatever requests
/// come in, so they are left out.
fn series(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|line| line.starts_with("herald_http_"))
        .map(|line| {
            line.rsplit_once(' ')
                .map_or(line, |(series, _)| series)
                .to_string()
        })
        .collect()
}

fn made_up(length: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(char::from)
        .collect()
}

/// In a process of its own: the metrics recorder is global, and other tests' requests
/// would add series of their own.
#[tokio::test]
async fn made_up_methods_and_paths_leave_the_metrics_the_same_size() {
    let herald = Herald::new();
    let server = herald.serve().await;
    server.wait_until_ready().await;
    let client = &server.client;
    let send = |method: &str, path: &str| {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        client.request(method, server.url(path)).send()
    };
    let metrics = || async {
        let response = client.get(server.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    };
    let webhook = || format!("/v1/webhooks/{}", uuid::Uuid::new_v4());
    let unknown_path = || format!("/{}/{}", made_up(12), made_up(40));
    let odd_method = || format!("X{}", made_up(60).to_ascii_uppercase());
    let requests = |n: usize| {
        let mut all = Vec::new();
        for _ in 0..n {
            all.push((odd_method(), unknown_path()));
            all.push((odd_method(), webhook()));
            all.push(("GET".to_string(), unknown_path()));
            all.push(("GET".to_string(), webhook()));
            all.push(("PATCH".to_string(), unknown_path()));
        }
        all
    };
    // One of each kind first, and /metrics itself.
    for (method, path) in requests(1) {
        send(&method, &path).await.unwrap();
    }
    metrics().await;
    let before = metrics().await;

    let sent = requests(100);
    for (method, path) in &sent {
        let status = send(method, path).await.unwrap().status();
        assert!(status.is_client_error(), "{method} {path}: {status}");
    }
    let after = metrics().await;
    assert_eq!(series(&after), series(&before));
    assert!(series(&before).len() > 5, "{before}");
    for (method, path) in &sent {
        if method.len() > 10 {
            assert!(!after.contains(method.as_str()), "{method} is a label");
        }
        assert!(!after.contains(path.as_str()), "{path} is a label");
    }
    assert!(after.contains(r#"method="other""#), "{after}");
    assert!(after.contains(r#"route="unmatched""#), "{after}");
    assert!(after.contains(r#"route="/v1/webhooks/{id}""#), "{after}");
    server.terminate().await;
}
