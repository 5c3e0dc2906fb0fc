//! Loading as a whole: the layers, the defaults and the problems reported.

use std::time::Duration;

use super::parse::{parse_duration, parse_proxy, parse_rate, parse_schedule};
use super::{Config, DatabaseUrl, WriteRate, redact_password};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_the_contract() {
    let config = Config::defaults();
    assert_eq!(config.database_url, "sqlite://herald.db");
    assert_eq!(config.listen, "127.0.0.1:8080");
    assert!(config.notifications_enabled);
    assert_eq!(config.max_webhooks_per_tenant, 5);
    let secs: Vec<u64> = config.retry_schedule.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, [1, 5, 25, 120, 600]);
    assert_eq!(config.delivery_timeout, Duration::from_secs(30));
    assert!(!config.allow_http && !config.allow_private_targets);
    assert_eq!(config.log_retention, Duration::from_secs(7 * 86_400));
}

#[test]
fn flags_beat_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1\"\nmax_webhooks_per_tenant = 7\nretry_schedule = [\"1s\", \"2s\"]\nallow_http = true\n",
    )
    .unwrap();
    let config = Config::load(
        Some(&file),
        env(&[
            ("HERALD_LISTEN", "127.0.0.1:2"),
            ("HERALD_MAX_WEBHOOKS_PER_TENANT", "9"),
            ("OTHER", "x"),
        ]),
        &[("listen", "127.0.0.1:3".to_string())],
    )
    .unwrap();
    assert_eq!(config.listen, "127.0.0.1:3");
    assert_eq!(config.max_webhooks_per_tenant, 9);
    assert_eq!(
        config.retry_schedule,
        vec![Duration::from_secs(1), Duration::from_secs(2)]
    );
    assert!(config.allow_http);
}

#[test]
fn every_bad_value_is_reported_with_its_setting_and_source() {
    let err = Config::load(
        None,
        env(&[
            ("HERALD_DELIVERY_TIMEOUT", "soon"),
            ("HERALD_NOTIFICATIONS_ENABLED", "maybe"),
        ]),
        &[("max_webhooks_per_tenant", "0".to_string())],
    )
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems.len(), 3, "{text}");
    assert!(
        text.contains("delivery_timeout (from HERALD_DELIVERY_TIMEOUT)"),
        "{text}"
    );
    assert!(
        text.contains("notifications_enabled (from HERALD_NOTIFICATIONS_ENABLED)"),
        "{text}"
    );
    assert!(
        text.contains("max_webhooks_per_tenant (from --max-webhooks-per-tenant)"),
        "{text}"
    );
}

#[test]
fn unknown_file_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "lsiten = \"x\"\n").unwrap();
    let err = Config::load(Some(&file), Vec::new(), &[]).unwrap_err();
    assert!(
        err.to_string().contains("unknown setting \"lsiten\""),
        "{err}"
    );
}

#[test]
fn durations_take_units() {
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
    assert_eq!(parse_duration("30"), None);
    assert_eq!(parse_duration("s"), None);
    assert_eq!(parse_duration("1w"), None);
    assert_eq!(parse_schedule("").unwrap(), Vec::<Duration>::new());
    assert!(parse_schedule("1s,,2s").is_err());
    assert!(parse_schedule("1s,7d").is_ok());
    assert!(parse_schedule("1s,8d").is_err());
    assert!(parse_schedule("99999999999999d").is_err());
}

#[test]
fn hardening_limits_have_the_contracts_defaults() {
    let config = Config::defaults();
    assert_eq!(config.max_in_flight_per_tenant, 128);
    assert_eq!(config.http_header_timeout, Duration::from_secs(10));
    assert_eq!(config.http_body_timeout, Duration::from_secs(30));
    assert_eq!(config.http_idle_timeout, Duration::from_secs(60));
    assert_eq!(config.max_connections, 10_000);
    assert_eq!(
        config.partner_write_rate,
        WriteRate {
            count: 20,
            per: Duration::from_secs(1)
        }
    );
    assert_eq!(config.partner_write_burst, 100);
    assert_eq!(config.egress_proxy, None);
}

#[test]
fn rates_and_proxies_are_checked() {
    assert_eq!(
        parse_rate("600/m").unwrap(),
        WriteRate {
            count: 600,
            per: Duration::from_secs(60)
        }
    );
    assert!(parse_rate("0/s").is_err());
    assert!(parse_rate("20").is_err());
    assert!(parse_rate("20/h").is_err());
    assert_eq!(
        parse_proxy("http://127.0.0.1:3128").unwrap().as_deref(),
        Some("http://127.0.0.1:3128")
    );
    assert!(parse_proxy("https://proxy:3128").is_err());
    assert!(parse_proxy("http://proxy:3128/path").is_err());
    assert!(parse_proxy("socks5://proxy:1080").is_err());
    let err = Config::load(
        None,
        env(&[
            ("HERALD_EGRESS_PROXY", "ftp://x"),
            ("HERALD_PARTNER_WRITE_RATE", "fast"),
        ]),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert!(
        err.to_string()
            .contains("egress_proxy (from HERALD_EGRESS_PROXY)")
    );
}

#[test]
fn passwords_in_database_urls_are_shown_as_stars() {
    let cases = [
        (
            "postgres://user:secret@127.0.0.1:1/db",
            "postgres://user:***@127.0.0.1:1/db",
        ),
        (
            "postgresql://u:p@ss/w@rd@db.example:5432/herald?sslmode=require",
            "postgresql://u:***@db.example:5432/herald?sslmode=require",
        ),
        (
            "postgres://db.example/herald?user=u&password=secret&sslmode=require",
            "postgres://db.example/herald?user=u&password=***&sslmode=require",
        ),
        (
            "postgres://user@127.0.0.1/db",
            "postgres://user@127.0.0.1/db",
        ),
        ("sqlite://herald.db", "sqlite://herald.db"),
        ("mysql://root:hunter2@db", "mysql://root:***@db"),
    ];
    for (url, shown) in cases {
        assert_eq!(redact_password(url), shown, "{url}");
        let url = DatabaseUrl::new(url);
        assert_eq!(url.to_string(), shown);
        assert_eq!(format!("{url:?}"), format!("{shown:?}"));
    }
    let config = Config::load(
        None,
        vec![(
            "HERALD_DATABASE_URL".to_string(),
            "postgres://user:secret@127.0.0.1:1/db".to_string(),
        )],
        &[],
    )
    .unwrap();
    assert!(!format!("{config:?}").contains("secret"));
    assert_eq!(
        &*config.database_url,
        "postgres://user:secret@127.0.0.1:1/db"
    );
    let refused = Config::load(
        None,
        vec![(
            "HERALD_DATABASE_URL".to_string(),
            "mysql://user:secret@127.0.0.1:1/db".to_string(),
        )],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(!refused.contains("secret"), "{refused}");
    assert!(
        refused.contains("mysql://user:***@127.0.0.1:1/db"),
        "{refused}"
    );
}
