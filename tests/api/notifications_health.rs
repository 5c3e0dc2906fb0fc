//! Operator notifications end to end: a webhook's endpoint fails, recovers or is gone, and
//! the operator's receiver gets exactly one signed notification per transition, from one
//! node or from three sharing a PostgreSQL database.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::{Value, json};

use crate::cli::{Herald, Server};
use herald::store::{NotificationRecord, Store};

use crate::helpers::{
    Backend, TestApp, fresh_postgres_schema, read, test_database_url, wait_until_idle,
};
use crate::notifications::{as_env, assert_signed, operator_settings};
use crate::receiver::{Reply, TestReceiver};

/// A receiver answering whatever status the test sets.
async fn switchable(status: u16) -> (TestReceiver, Arc<AtomicU16>) {
    let current = Arc::new(AtomicU16::new(status));
    let answer = current.clone();
    let receiver = TestReceiver::start(move |_| Reply::status(answer.load(Ordering::SeqCst))).await;
    (receiver, current)
}

/// Waits until nothing more can be told, then checks the operator was told exactly `count`
/// times. Nothing more can be told once every delivery is over (no attempt result is left
/// to move the webhook's health and queue a notification) and every notification in the
/// outbox has ended (none is left to send). The outbox then holds `count` notifications,
/// each sent in one attempt, and the operator got exactly those: each signed, each with an
/// id of its own. Returns their bodies, in arrival order.
async fn exactly(store: &dyn Store, operator: &TestReceiver, count: usize) -> Vec<Value> {
    wait_until_idle(store).await;
    let outbox = outbox_ended(store).await;
    assert_eq!(outbox.len(), count, "{outbox:#?}");
    assert!(
        outbox.iter().all(|n| n.state == "sent" && n.attempts == 1),
        "{outbox:#?}"
    );
    let received = operator.received();
    let bodies: Vec<Value> = received
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert_eq!(received.len(), count, "{bodies:#?}");
    let ids: HashSet<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    let queued: HashSet<&str> = outbox.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, queued, "an id per notification, each the outbox's");
    received.iter().for_each(assert_signed);
    bodies
}

/// Waits until no notification in the outbox is queued (to be sent, or sent again); returns
/// the outbox.
async fn outbox_ended(store: &dyn Store) -> Vec<NotificationRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let outbox = store.list_notifications().await.expect("outbox listed");
        if outbox.iter().all(|n| n.state != "queued") {
            return outbox;
        }
        assert!(Instant::now() < deadline, "{outbox:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One node: a producer and a tenant `acme` whose webhook points at `endpoint`.
struct Scene {
    app: TestApp,
    partner: String,
    producer: String,
    webhook: String,
}

impl Scene {
    async fn start(backend: Backend, operator: &TestReceiver, endpoint: &str) -> Option<Scene> {
        let mut settings = operator_settings(operator);
        settings.push(("HERALD_FAILING_AFTER", "2".into()));
        let app = TestApp::spawn_on(backend, &as_env(&settings)).await?;
        let acme = app.partner("acme").await;
        let webhook = acme
            .create_webhook(
                &json!({"name": "r", "url": endpoint, "event_types": ["*"], "is_active": true}),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (partner, producer) = (acme.token.clone(), app.producer_token().await);
        Some(Scene {
            app,
            partner,
            producer,
            webhook,
        })
    }

    /// Publishes an event and waits until its delivery ended `status`.
    async fn deliver(&self, status: &str) {
        let (code, event) = self
            .app
            .publish(
                &self.producer,
                &json!({"tenant": "acme", "eventType": "a.b", "payload": {}}),
            )
            .await;
        assert_eq!(code, 201, "{event}");
        let acme = crate::helpers::Partner {
            app: &self.app,
            token: self.partner.clone(),
        };
        acme.wait_for_status(event["id"].as_str().unwrap(), status)
            .await;
    }
}

async fn failing_then_recovered_are_told_once_each(backend: Backend) {
    let operator = TestReceiver::answering(204).await;
    let (endpoint, status) = switchable(500).await;
    let Some(scene) = Scene::start(backend, &operator, &endpoint.url("/hook")).await else {
        return;
    };
    // Three attempts fail: failing at the second, and only once.
    scene.deliver("failed").await;
    scene.deliver("failed").await;
    let bodies = exactly(scene.app.store.as_ref(), &operator, 1).await;
    assert_eq!(bodies[0]["type"], "webhook.failing");
    assert_eq!(bodies[0]["tenant"], "acme");
    assert_eq!(bodies[0]["webhookId"], scene.webhook.as_str());
    assert_eq!(bodies[0]["url"], endpoint.url("/hook"));
    assert!(bodies[0]["consecutiveFailures"].as_i64() >= Some(2));

    status.store(200, Ordering::SeqCst);
    scene.deliver("completed").await;
    scene.deliver("completed").await;
    let bodies = exactly(scene.app.store.as_ref(), &operator, 2).await;
    assert_eq!(bodies[1]["type"], "webhook.recovered");
    assert_eq!(bodies[1]["webhookId"], scene.webhook.as_str());
    assert_eq!(bodies[1]["consecutiveFailures"], 0);
    assert_eq!(bodies[1]["failingSince"], bodies[0]["failingSince"]);
    // Stopped, the app has ended every send it started: none was still on its way.
    scene.app.stop().await;
    assert_eq!(operator.received().len(), 2);
}

async fn gone_is_told_once_as_disabled(backend: Backend) {
    let operator = TestReceiver::answering(200).await;
    let endpoint = TestReceiver::answering(410).await;
    let Some(scene) = Scene::start(backend, &operator, &endpoint.url("/hook")).await else {
        return;
    };
    scene.deliver("failed").await;
    let bodies = exactly(scene.app.store.as_ref(), &operator, 1).await;
    assert_eq!(bodies[0]["type"], "webhook.disabled", "{bodies:#?}");
    assert_eq!(bodies[0]["webhookId"], scene.webhook.as_str());
    assert_eq!(endpoint.received().len(), 1, "gone is not retried");
    scene.app.stop().await;
    assert_eq!(operator.received().len(), 1);
}

mod on_sqlite {
    use super::Backend;

    #[tokio::test]
    async fn failing_then_recovered_are_told_once_each() {
        super::failing_then_recovered_are_told_once_each(Backend::Sqlite).await
    }

    #[tokio::test]
    async fn gone_is_told_once_as_disabled() {
        super::gone_is_told_once_as_disabled(Backend::Sqlite).await
    }
}

mod on_postgres {
    use super::Backend;

    #[tokio::test]
    async fn failing_then_recovered_are_told_once_each() {
        super::failing_then_recovered_are_told_once_each(Backend::Postgres).await
    }

    #[tokio::test]
    async fn gone_is_told_once_as_disabled() {
        super::gone_is_told_once_as_disabled(Backend::Postgres).await
    }
}

/// Publishes `count` events round-robin over `nodes`; returns their record ids.
async fn publish_across(nodes: &[Server], producer: &str, count: usize) -> Vec<String> {
    let client = Client::new();
    let mut ids = Vec::new();
    for n in 0..count {
        let node = &nodes[n % nodes.len()];
        let (status, event) = read(
            client
                .request(Method::POST, node.url("/v1/events"))
                .bearer_auth(producer)
                .json(&json!({"tenant": "acme", "eventType": "a.b", "payload": {"n": n}}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 201, "{event}");
        ids.push(event["id"].as_str().unwrap().to_string());
    }
    ids
}

/// Waits until every event shows `status`, asking the nodes in turn.
async fn wait_all(nodes: &[Server], partner: &str, events: &[String], status: &str) {
    let client = Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (n, event) in events.iter().enumerate() {
        let node = &nodes[n % nodes.len()];
        loop {
            let (_, body) = read(
                client
                    .get(node.url(&format!("/v1/webhooks/events/{event}/status")))
                    .bearer_auth(partner)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            if body["status"] == status {
                break;
            }
            assert!(Instant::now() < deadline, "{event}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn three_nodes_tell_each_transition_once() {
    let Some(base) = test_database_url() else {
        return;
    };
    let url = fresh_postgres_schema(&base).await;
    let herald = Herald::on(&url);
    herald.run(&["migrate"]).await.assert_success();
    herald.create_tenant("acme").await;
    let (_, producer) = herald.create_token(&["--producer"]).await;
    let (_, partner) = herald.create_token(&["--tenant", "acme"]).await;
    let operator = TestReceiver::answering(200).await;
    let (endpoint, status) = switchable(500).await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let mut command = herald.command(&["serve"]);
        command
            .env("HERALD_LISTEN", "127.0.0.1:0")
            .env("HERALD_DELIVERY_TIMEOUT", "2s")
            .env("HERALD_FAILING_AFTER", "2");
        for (key, value) in operator_settings(&operator) {
            command.env(key, value);
        }
        nodes.push(Server::start(command).await);
    }
    let client = Client::new();
    let (code, webhook) = read(
        client
            .post(nodes[0].url("/v1/webhooks"))
            .bearer_auth(&partner)
            .json(&json!({"name": "r", "url": endpoint.url("/hook"), "event_types": ["*"], "is_active": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 201, "{webhook}");

    // Failures recorded by every node, at about the same moments.
    let failed = publish_across(&nodes, &producer, 30).await;
    wait_all(&nodes, &partner, &failed, "failed").await;
    let store = herald::store::connect(&url).await.expect("store opens");
    let bodies = exactly(store.as_ref(), &operator, 1).await;
    assert_eq!(bodies[0]["type"], "webhook.failing");

    status.store(200, Ordering::SeqCst);
    let completed = publish_across(&nodes, &producer, 30).await;
    wait_all(&nodes, &partner, &completed, "completed").await;
    let bodies = exactly(store.as_ref(), &operator, 2).await;
    assert_eq!(bodies[1]["type"], "webhook.recovered");
    assert_eq!(bodies[1]["webhookId"], webhook["data"]["id"]);
    // Stopped, the nodes have ended every send they started: none was still on its way.
    for node in nodes {
        node.terminate().await;
    }
    assert_eq!(operator.received().len(), 2);
    eprintln!(
        "three nodes: {} attempts at the endpoint, 2 notifications",
        endpoint.received().len()
    );
}
