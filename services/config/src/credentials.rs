//! Generated secrets and digest hashes. Passwords exist only in the response that creates
//! them; the store keeps HA1 (RFC 2617 / RFC 7616: H(user:realm:password)) in MD5 and SHA-256.

use dialtone_proto::config::v1::StoredCredentials;
use md5::{Digest as _, Md5};
use rand::Rng;
use sha2::Sha256;

const ALNUM: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

fn random(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// A strong password: 24 characters from a 57-symbol alphabet without look-alikes (~140 bits).
pub fn generate_password() -> String {
    random(ALNUM, 24)
}

/// A site's SIP user prefix, e.g. `k7q2x-`.
pub fn generate_prefix() -> String {
    format!("{}-", random(LOWER, 5))
}

/// A SIP user suffix when the admin gives none: 8 digits.
pub fn generate_suffix() -> String {
    let mut rng = rand::rng();
    format!("{:08}", rng.random_range(0..100_000_000u32))
}

/// The HA1 hashes of a credential.
pub fn ha1(user: &str, realm: &str, password: &str) -> StoredCredentials {
    let input = format!("{user}:{realm}:{password}");
    StoredCredentials {
        realm: realm.to_owned(),
        ha1_md5: hex::encode(Md5::digest(input.as_bytes())),
        ha1_sha256: hex::encode(Sha256::digest(input.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_matches_rfc_examples() {
        // RFC 7616 §3.9.1: Mufasa / http-auth@example.org / Circle of Life.
        let c = ha1("Mufasa", "http-auth@example.org", "Circle of Life");
        assert_eq!(c.ha1_md5, "3d78807defe7de2157e2b0b6573a855f");
        assert_eq!(
            c.ha1_sha256,
            "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232"
        );
        // RFC 2617 §3.5: Mufasa / testrealm@host.com / Circle Of Life.
        assert_eq!(
            ha1("Mufasa", "testrealm@host.com", "Circle Of Life").ha1_md5,
            "939e7578ed9e3c518a452acee763bce9"
        );
    }

    #[test]
    fn generated_values_have_their_shape() {
        let p = generate_password();
        assert_eq!(p.len(), 24);
        assert_ne!(p, generate_password());
        let prefix = generate_prefix();
        assert!(prefix.len() == 6 && prefix.ends_with('-'));
        assert_eq!(generate_suffix().len(), 8);
    }
}
