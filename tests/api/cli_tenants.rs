//! `herald tenant create` and `tenant list`: names, text and JSON output, duplicates.

use serde_json::{Value, json};

use crate::cli::{Herald, json_of};

#[tokio::test]
async fn tenants_are_created_and_listed_as_text_and_json() {
    let herald = Herald::new();
    let created = herald.run(&["tenant", "create", "acme"]).await;
    created.assert_success();
    assert_eq!(created.stdout.trim(), "Created tenant acme");
    let created = herald
        .run(&["tenant", "create", "globex_2-eu", "--json"])
        .await;
    created.assert_success();
    let tenant = json_of(&created.stdout);
    assert_eq!(tenant["name"], "globex_2-eu");
    assert!(
        tenant["createdAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{tenant}"
    );
    let longest = "a".repeat(63);
    herald
        .run(&["tenant", "create", &longest])
        .await
        .assert_success();

    let text = herald.run(&["tenant", "list"]).await;
    text.assert_success();
    for name in ["acme", "globex_2-eu", longest.as_str()] {
        assert!(
            text.stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} in {text:#?}"
        );
    }
    let listed = herald.run(&["tenant", "list", "--json"]).await;
    listed.assert_success();
    let names: Vec<Value> = json_of(&listed.stdout)
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for name in ["acme", "globex_2-eu", longest.as_str()] {
        assert!(names.contains(&json!(name)), "{name} in {names:?}");
    }
}

#[tokio::test]
async fn invalid_tenant_names_are_rejected() {
    let herald = Herald::new();
    let too_long = "a".repeat(64);
    for name in [
        "Acme",
        "-acme",
        "_acme",
        "ac me",
        "acme!",
        "acmé",
        "",
        too_long.as_str(),
    ] {
        // After `--`, so that `-acme` reaches Herald's own check rather than clap's.
        let output = herald.run(&["tenant", "create", "--", name]).await;
        output.assert_failure();
        assert!(
            output.stderr.contains("invalid tenant name"),
            "{name:?}: {output:#?}"
        );
    }
    let listed = herald.run(&["tenant", "list", "--json"]).await;
    assert_eq!(json_of(&listed.stdout), json!([]));
}

#[tokio::test]
async fn a_duplicate_tenant_is_rejected() {
    let herald = Herald::new();
    herald.create_tenant("acme").await;
    let again = herald.run(&["tenant", "create", "acme"]).await;
    again.assert_failure();
    assert!(again.stderr.contains("acme"), "{again:#?}");
    let listed = herald.run(&["tenant", "list", "--json"]).await;
    assert_eq!(
        json_of(&listed.stdout).as_array().unwrap().len(),
        1,
        "{listed:#?}"
    );
}
