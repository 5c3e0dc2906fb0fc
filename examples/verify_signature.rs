//! Verifying a Herald delivery in Rust, with the `hmac`, `sha2`, `base64` and `hex` crates.
//! `cargo run --example verify_signature` checks a made-up request signed by Herald's rules.

// docs:start
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `X-Signature`: hex HMAC-SHA256 of `"{X-Timestamp}.{raw body}"`, keyed by the apiKey.
pub fn verify_herald(timestamp: &str, signature: &str, body: &[u8], api_key: &str) -> bool {
    let Ok(signature) = hex::decode(signature) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(api_key.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&signature).is_ok() // constant-time comparison
}

/// Standard Webhooks: base64 HMAC-SHA256 of `"{webhook-id}.{webhook-timestamp}.{raw body}"`.
pub fn verify_standard(
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    secret: &str,
) -> bool {
    let Ok(key) = STANDARD.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|candidate| {
            let Ok(candidate) = STANDARD.decode(candidate) else {
                return false;
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body);
            mac.verify_slice(&candidate).is_ok()
        })
}

/// Rejects replays: the timestamp must be within `tolerance_secs` of now.
pub fn is_fresh(timestamp: &str, now_secs: i64, tolerance_secs: i64) -> bool {
    timestamp
        .parse::<i64>()
        .is_ok_and(|ts| (now_secs - ts).abs() <= tolerance_secs)
}
// docs:end

#[allow(dead_code)]
fn main() {
    let (api_key, body, timestamp, id) = (
        "whk_example",
        br#"{"api_version":"v1"}"#,
        "1767002400",
        "evt-1",
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(api_key.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let signature = hex::encode(mac.finalize().into_bytes());
    let secret = format!("whsec_{}", STANDARD.encode(api_key));
    let mut mac = Hmac::<Sha256>::new_from_slice(api_key.as_bytes()).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let standard = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert!(verify_herald(timestamp, &signature, body, api_key));
    assert!(verify_standard(id, timestamp, &standard, body, &secret));
    assert!(is_fresh(timestamp, 1_767_002_500, 300));
    println!("both signatures verify");
}
