//! Secrets Herald hands out: bearer tokens (`hrd_...`, stored only as a SHA-256 hash) and
//! webhook API keys (`whk_...`, an [`ApiKey`]), their masked form and the Standard Webhooks
//! signing secret.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::distr::Alphanumeric;
use rand::{Rng, TryRngCore};
use sha2::{Digest, Sha256};

const TOKEN_PREFIX: &str = "hrd_";
const TOKEN_RANDOM_CHARS: usize = 43;
const API_KEY_PREFIX: &str = "whk_";
const API_KEY_RANDOM_CHARS: usize = 64;
const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A new bearer token: `hrd_` and 43 random alphanumerics (about 256 bits) from the OS CSPRNG.
pub fn new_token() -> String {
    let random: String = rand::rngs::OsRng
        .unwrap_err()
        .sample_iter(Alphanumeric)
        .take(TOKEN_RANDOM_CHARS)
        .map(char::from)
        .collect();
    format!("{TOKEN_PREFIX}{random}")
}

/// The hash a token is stored and looked up by. Tokens carry 256 random bits, so a plain
/// SHA-256 is enough: there is nothing to brute-force that a slow hash would protect.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `text` has the shape of a token, checked before any lookup.
pub fn looks_like_token(text: &str) -> bool {
    text.strip_prefix(TOKEN_PREFIX)
        .is_some_and(|rest| rest.len() >= 40 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A webhook's API key (`whk_` and 64 characters of `[a-z0-9]`): a secret. `Debug` shows
/// only its masked form; the key itself is reached through [`ApiKey::expose`], to sign with
/// it or to show it once to its owner.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A new key from the OS CSPRNG.
    pub fn generate() -> ApiKey {
        let mut rng = rand::rngs::OsRng.unwrap_err();
        let random: String = (0..API_KEY_RANDOM_CHARS)
            .map(|_| LOWER_ALNUM[rng.random_range(0..LOWER_ALNUM.len())] as char)
            .collect();
        ApiKey(format!("{API_KEY_PREFIX}{random}"))
    }

    /// The key itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key itself, to store it.
    pub fn into_exposed(self) -> String {
        self.0
    }

    /// The form shown everywhere but create and rotate-key: `whk_****...****` and the key's
    /// last four characters.
    pub fn masked(&self) -> String {
        let tail_start = self.0.len().saturating_sub(4);
        let tail = self.0.get(tail_start..).unwrap_or("");
        format!("{API_KEY_PREFIX}****...****{tail}")
    }

    /// The Standard Webhooks secret: `whsec_` and the padded base64 of the key's bytes, so
    /// any Standard Webhooks verifier checks `webhook-signature` with the same key bytes.
    pub fn signing_secret(&self) -> String {
        format!("whsec_{}", STANDARD.encode(self.0.as_bytes()))
    }
}

/// A key as stored.
impl From<String> for ApiKey {
    fn from(key: String) -> ApiKey {
        ApiKey(key)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ApiKey").field(&self.masked()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_prefix_and_enough_randomness() {
        let token = new_token();
        assert!(looks_like_token(&token), "{token}");
        assert_eq!(token.len(), 4 + TOKEN_RANDOM_CHARS);
        assert_ne!(new_token(), token);
        assert!(!looks_like_token("hrd_short"));
        assert!(!looks_like_token("Bearer hrd_xxx"));
    }

    #[test]
    fn token_hash_is_stable_hex() {
        assert_eq!(token_hash("abc"), token_hash("abc"));
        assert_eq!(token_hash("abc").len(), 64);
        assert_ne!(token_hash("abc"), token_hash("abd"));
    }

    #[test]
    fn api_keys_are_64_lowercase_alphanumerics() {
        let key = ApiKey::generate();
        let random = key.expose().strip_prefix("whk_").unwrap();
        assert_eq!(random.len(), 64);
        assert!(random.bytes().all(|b| LOWER_ALNUM.contains(&b)));
        assert_ne!(ApiKey::generate(), key);
    }

    #[test]
    fn masking_keeps_only_the_last_four_and_debug_shows_only_the_mask() {
        let key = ApiKey::from(format!("whk_{}wxyz", "a".repeat(60)));
        assert_eq!(key.masked(), "whk_****...****wxyz");
        assert_eq!(format!("{key:?}"), r#"ApiKey("whk_****...****wxyz")"#);
        assert_eq!(
            format!("{:?}", Some(&key)),
            r#"Some(ApiKey("whk_****...****wxyz"))"#
        );
    }

    #[test]
    fn signing_secret_is_padded_base64_of_the_key() {
        assert_eq!(
            ApiKey::from("whk_a".to_string()).signing_secret(),
            "whsec_d2hrX2E="
        );
    }
}
