//! The operators' commands on the database of a running `herald serve`: a fixture with a
//! server that may deliver to the tests' loopback receivers, partner and producer calls to
//! set the scene, and checks on the commands' output. Used by the `cli_events` and
//! `cli_webhooks` suites.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{CliOutput, Herald, Server, json_of};
use crate::helpers::{Backend, fresh_postgres_schema, test_database_url};

/// A database with tenants `acme` and `globex`, a producer token, a partner token for
/// `acme`, and a server on it that may deliver to the loopback receivers of the tests.
pub(crate) struct Fixture {
    herald: Herald,
    server: Server,
    producer: String,
    partner: String,
}

/// `None` when the backend is PostgreSQL and no test server is configured (said loudly).
pub(crate) async fn fixture(backend: Backend) -> Option<Fixture> {
    fixture_with(backend, &[]).await
}

/// [`fixture`] with these `HERALD_*` settings for the server.
pub(crate) async fn fixture_with(backend: Backend, env: &[(&str, &str)]) -> Option<Fixture> {
    let herald = match backend {
        Backend::Sqlite => Herald::new(),
        Backend::Postgres => Herald::on(&fresh_postgres_schema(&test_database_url()?).await),
    };
    herald.run(&["migrate"]).await.assert_success();
    herald.create_tenant("acme").await;
    herald.create_tenant("globex").await;
    let (_, producer) = herald.create_token(&["--producer"]).await;
    let (_, partner) = herald.create_token(&["--tenant", "acme"]).await;
    let mut serve = herald.command(&["serve"]);
    serve
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_ALLOW_HTTP", "true")
        .env("HERALD_ALLOW_PRIVATE_TARGETS", "true")
        .envs(env.iter().copied());
    let server = Server::start(serve).await;
    Some(Fixture {
        herald,
        server,
        producer,
        partner,
    })
}

impl Fixture {
    /// `herald ARGS...` on the fixture's database.
    pub(crate) async fn run(&self, args: &[&str]) -> CliOutput {
        self.herald.run(args).await
    }

    /// `herald ARGS... --json`, which must succeed; its JSON.
    pub(crate) async fn json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.push("--json");
        let output = self.run(&full).await;
        output.assert_success();
        json_of(&output.stdout)
    }

    /// A partner request of tenant `acme`; the status and the JSON body.
    pub(crate) async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .server
            .client
            .request(method, self.server.url(path))
            .bearer_auth(&self.partner);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates a webhook of `acme` for every event type; returns its id.
    pub(crate) async fn create_webhook(&self, url: &str, active: bool) -> String {
        let body =
            json!({"name": "receiver", "url": url, "event_types": ["*"], "is_active": active});
        let (status, created) = self.api(Method::POST, "/v1/webhooks", Some(body)).await;
        assert_eq!(status, 201, "{created}");
        created["data"]["id"].as_str().unwrap().to_string()
    }

    /// Publishes an event for `tenant`; returns the stored event.
    pub(crate) async fn publish(&self, tenant: &str, event_type: &str) -> Value {
        let response = self
            .server
            .client
            .post(self.server.url("/v1/events"))
            .bearer_auth(&self.producer)
            .json(&json!({"tenant": tenant, "eventType": event_type, "payload": {"n": 1}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// Waits (10 s at most) until `acme`'s event `id` has `status`.
    pub(crate) async fn wait_for_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let path = format!("/v1/webhooks/events/{id}/status");
            let (_, body) = self.api(Method::GET, &path, None).await;
            if body["status"] == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never became {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The `id` fields of a JSON array, in order.
pub(crate) fn ids(array: &Value) -> Vec<&str> {
    array
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|item| item["id"].as_str().expect("an id"))
        .collect()
}

/// Asserts a failure (exit 1, nothing on stdout) whose stderr holds `message`.
pub(crate) fn assert_fails_with(output: &CliOutput, message: &str) {
    output.assert_failure();
    assert!(
        output.stderr.contains(message),
        "expected {message:?}: {output:#?}"
    );
}
