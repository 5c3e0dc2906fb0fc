//! The table of every setting Herald reads: its key in the TOML file, its environment
//! variable, its default and a line of help. The README documents them in this order.

/// One setting: its key in the TOML file, its environment variable and its default.
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every setting Herald reads, in the order the README documents them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "database_url",
        env: "HERALD_DATABASE_URL",
        default: "sqlite://herald.db",
        help: "`sqlite://PATH` (created if missing) or `postgres://...`",
    },
    Setting {
        key: "listen",
        env: "HERALD_LISTEN",
        default: "127.0.0.1:8080",
        help: "address to serve on",
    },
    Setting {
        key: "notifications_enabled",
        env: "HERALD_NOTIFICATIONS_ENABLED",
        default: "true",
        help: "`false` makes every `/v1/webhooks*` route answer 503",
    },
    Setting {
        key: "max_webhooks_per_tenant",
        env: "HERALD_MAX_WEBHOOKS_PER_TENANT",
        default: "5",
        help: "webhook cap per tenant, inactive ones included",
    },
    Setting {
        key: "retry_schedule",
        env: "HERALD_RETRY_SCHEDULE",
        default: "1s,5s,25s,2m,10m",
        help: "delays after attempts 1..N-1 (N-1 delays = N attempts)",
    },
    Setting {
        key: "delivery_timeout",
        env: "HERALD_DELIVERY_TIMEOUT",
        default: "30s",
        help: "per-attempt timeout",
    },
    Setting {
        key: "allow_http",
        env: "HERALD_ALLOW_HTTP",
        default: "false",
        help: "accept `http://` webhook URLs (development only)",
    },
    Setting {
        key: "allow_private_targets",
        env: "HERALD_ALLOW_PRIVATE_TARGETS",
        default: "false",
        help: "deliver to loopback/private addresses (development only)",
    },
    Setting {
        key: "log_retention",
        env: "HERALD_LOG_RETENTION",
        default: "7d",
        help: "how long delivery logs are kept",
    },
    Setting {
        key: "max_in_flight",
        env: "HERALD_MAX_IN_FLIGHT",
        default: "512",
        help: "attempts in flight at once on this node",
    },
    Setting {
        key: "max_in_flight_per_webhook",
        env: "HERALD_MAX_IN_FLIGHT_PER_WEBHOOK",
        default: "128",
        help: "attempts in flight at once to one webhook on this node",
    },
    Setting {
        key: "max_in_flight_per_tenant",
        env: "HERALD_MAX_IN_FLIGHT_PER_TENANT",
        default: "128",
        help: "attempts of one tenant in flight at once on this node",
    },
    Setting {
        key: "http_header_timeout",
        env: "HERALD_HTTP_HEADER_TIMEOUT",
        default: "10s",
        help: "a connection that has not sent a complete request head by then is closed",
    },
    Setting {
        key: "http_body_timeout",
        env: "HERALD_HTTP_BODY_TIMEOUT",
        default: "30s",
        help: "a request body must arrive within this (else 408)",
    },
    Setting {
        key: "http_idle_timeout",
        env: "HERALD_HTTP_IDLE_TIMEOUT",
        default: "60s",
        help: "idle keep-alive connections are closed after this",
    },
    Setting {
        key: "max_connections",
        env: "HERALD_MAX_CONNECTIONS",
        default: "10000",
        help: "HTTP connections open at once; further ones wait to be accepted",
    },
    Setting {
        key: "partner_write_rate",
        env: "HERALD_PARTNER_WRITE_RATE",
        default: "20/s",
        help: "partner writes per tenant (`N/s` or `N/m`); beyond it 429",
    },
    Setting {
        key: "partner_write_burst",
        env: "HERALD_PARTNER_WRITE_BURST",
        default: "100",
        help: "partner writes a tenant may make at once before the rate applies",
    },
    Setting {
        key: "egress_proxy",
        env: "HERALD_EGRESS_PROXY",
        default: "",
        help: "`http://host:port` forward proxy for every attempt (empty: connect directly)",
    },
    Setting {
        key: "failing_after",
        env: "HERALD_FAILING_AFTER",
        default: "5",
        help: "consecutive failed attempts that make a webhook `failing`",
    },
    Setting {
        key: "disable_after",
        env: "HERALD_DISABLE_AFTER",
        default: "5d",
        help: "continuous failure after which Herald disables a webhook (`0`: never)",
    },
    Setting {
        key: "auto_recover",
        env: "HERALD_AUTO_RECOVER",
        default: "24h",
        help: "how far back a recovered webhook's catch-up reaches (`0`: no catch-up)",
    },
    Setting {
        key: "operator_webhook_url",
        env: "HERALD_OPERATOR_WEBHOOK_URL",
        default: "",
        help: "where health notifications go (empty: nowhere)",
    },
    Setting {
        key: "operator_webhook_secret",
        env: "HERALD_OPERATOR_WEBHOOK_SECRET",
        default: "",
        help: "`whsec_` + base64: the Standard Webhooks secret notifications are signed with",
    },
];
