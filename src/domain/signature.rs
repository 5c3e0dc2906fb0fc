//! Request signatures. Two schemes over the same key bytes (the UTF-8 of the webhook's full
//! `apiKey`): Herald's `X-Signature` (hex HMAC-SHA256 of `"{ts}.{body}"`) and Standard
//! Webhooks' `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `"{id}.{ts}.{body}"`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any size");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `X-Signature`: lowercase hex HMAC-SHA256 over `"{timestamp}.{body}"`.
pub fn x_signature(api_key: &str, timestamp: i64, body: &str) -> String {
    hex::encode(mac(
        api_key.as_bytes(),
        &[timestamp.to_string().as_bytes(), b".", body.as_bytes()],
    ))
}

/// `webhook-signature`: `v1,` and the base64 HMAC-SHA256 over `"{id}.{timestamp}.{body}"`.
pub fn standard_signature(api_key: &str, message_id: &str, timestamp: i64, body: &str) -> String {
    standard_signature_with(api_key.as_bytes(), message_id, timestamp, body)
}

/// [`standard_signature`] with the key's bytes, as a `whsec_` secret decodes to.
pub fn standard_signature_with(key: &[u8], message_id: &str, timestamp: i64, body: &str) -> String {
    let digest = mac(
        key,
        &[
            message_id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body.as_bytes(),
        ],
    );
    format!("v1,{}", STANDARD.encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_signature_matches_a_known_vector() {
        // python3: hmac.new(b'whk_test', b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
        assert_eq!(
            x_signature("whk_test", 1_700_000_000, r#"{"a":1}"#),
            "47a687f1b5ebeec176cf89471e6e781292abf9500660a75e89b9add35cfcd0c3"
        );
        assert_ne!(
            x_signature("whk_test", 1_700_000_001, r#"{"a":1}"#),
            x_signature("whk_test", 1_700_000_000, r#"{"a":1}"#)
        );
    }

    #[test]
    fn standard_signature_matches_the_standard_webhooks_test_vector() {
        // The Standard Webhooks reference test vector: secret
        // whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, msg_p5jXN8AQM9LWM0D4loKWxJek, 1614265330,
        // body {"test": 2432232314}. Its key bytes are the base64-decoded secret; Herald's
        // key bytes are the apiKey's UTF-8, so decode here to reuse the vector.
        let key_bytes = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            standard_signature_with(
                &key_bytes,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                "{\"test\": 2432232314}"
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // With a key whose bytes are valid UTF-8, the function computes the same thing.
        let key = "whk_abc";
        let mut mac = HmacSha256::new_from_slice(key.as_bytes()).unwrap();
        mac.update(b"id1.5.{}");
        let direct = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        assert_eq!(standard_signature(key, "id1", 5, "{}"), direct);
    }
}
