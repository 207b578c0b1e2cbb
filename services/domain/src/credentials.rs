//! Generated secrets and digest hashes. Passwords are never stored: the store keeps HA1
//! (RFC 2617 / RFC 7616: H(user:realm:password)) in MD5 and SHA-256, and the passwords
//! Dialtone hands out are derived from its credentials key, so the provisioning role can
//! derive them again to push them to the phone and nobody else can.

use dialtone_proto::config::v1::StoredCredentials;
use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use rand::Rng;
use sha2::Sha256;

/// The secret every derived password comes from (32 bytes, shared by the config and
/// provisioning roles; `--credentials-key-file`).
#[derive(Clone)]
pub struct CredentialKey(Hmac<Sha256>);

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialKey(..)")
    }
}

impl CredentialKey {
    /// A key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(Hmac::new_from_slice(&bytes).expect("hmac takes any key length"))
    }

    /// The password of a line: phone id, SIP user and generation (1 and up) select it.
    pub fn line_password(&self, phone_id: &str, sip_user: &str, generation: u32) -> String {
        self.derive(&["line", phone_id, sip_user, &generation.to_string()])
    }

    /// The provisioning (HTTP digest) password of a managed phone.
    pub fn device_password(&self, phone_id: &str, generation: u32) -> String {
        self.derive(&["device", phone_id, &generation.to_string()])
    }

    /// A 32-byte key for another purpose, named by `label` (e.g. the provisioning server's
    /// nonce key), so every node holding this key agrees on it without another secret.
    pub fn subkey(&self, label: &str) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(b"subkey\0");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// 24 characters of the password alphabet from HMAC-SHA-256 over the NUL-joined parts
    /// (about 140 bits; NUL cannot occur in ids or SIP users, so parts cannot run together).
    fn derive(&self, parts: &[&str]) -> String {
        let mut mac = self.0.clone();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(&[0]);
            }
            mac.update(p.as_bytes());
        }
        let bytes = mac.finalize().into_bytes();
        bytes[..24]
            .iter()
            .map(|b| ALNUM[*b as usize % ALNUM.len()] as char)
            .collect()
    }
}

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

/// The HA1 hashes of a credential (generation 0: not a derived password).
pub fn ha1(user: &str, realm: &str, password: &str) -> StoredCredentials {
    let input = format!("{user}:{realm}:{password}");
    StoredCredentials {
        realm: realm.to_owned(),
        ha1_md5: hex::encode(Md5::digest(input.as_bytes())),
        ha1_sha256: hex::encode(Sha256::digest(input.as_bytes())),
        generation: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_passwords_depend_on_every_part() {
        let k = CredentialKey::new([7; 32]);
        let a = k.line_password("p1", "u1", 1);
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|b| ALNUM.contains(&b)));
        assert_eq!(a, k.line_password("p1", "u1", 1), "stable");
        for other in [
            k.line_password("p2", "u1", 1),
            k.line_password("p1", "u2", 1),
            k.line_password("p1", "u1", 2),
            CredentialKey::new([8; 32]).line_password("p1", "u1", 1),
            k.device_password("p1", 1),
            // Parts are delimited: "p1"+"u1" is not "p"+"1u1".
            k.line_password("p", "1u1", 1),
        ] {
            assert_ne!(a, other);
        }
        assert!(!format!("{k:?}").contains('7'), "the key never prints");
    }

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
