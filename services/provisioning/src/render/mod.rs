//! Renders a phone's document into the files its vendor's firmware fetches. Pure.

mod audiocodes;
mod json;
mod poly;
mod yealink;

use bytes::Bytes;
use dialtone_proto::config::v1::{DtmfMode, MetaBase, Transport};
use sha2::{Digest, Sha256};

use crate::{
    document::Document,
    files::{POLY_MASTER, YEALINK_COMMON},
};

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Its canonical name (see `files::Requested::canonical`).
    pub name: String,
    /// Media type.
    pub content_type: &'static str,
    /// Body.
    pub body: Bytes,
    /// Strong entity tag, quoted: the first 16 hex digits of the body's SHA-256.
    pub etag: String,
}

/// All files of one phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// In the order the phone fetches them.
    pub files: Vec<File>,
    /// The configuration's version: the first 16 hex digits of the SHA-256 over every file.
    pub version: String,
}

impl Rendered {
    /// The file named `name`.
    pub fn get(&self, name: &str) -> Option<&File> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// Whether the phone protects its audio with SRTP keyed by SDES.
fn sdes(d: &Document) -> bool {
    d.settings.media_encryption == dialtone_proto::config::v1::MediaEncryption::Sdes as i32
}

/// The phone's administrative account to push: its profile's Digest Authentication user
/// name and password, once the profile (or phone) has a password of its own. The seed's
/// default (`1234`) is never pushed: it would reset whatever admin password the phones
/// have to one everybody knows.
fn admin_account(d: &Document) -> Option<(&str, &str)> {
    let password = d.settings.digest_auth_password.as_deref()?;
    (password != dialtone_domain::settings::DEFAULT_DIGEST_AUTH_PASSWORD).then(|| {
        let user = d.settings.digest_auth_user.as_deref().unwrap_or("admin");
        (user, password)
    })
}

/// The strong entity tag of `body`: its SHA-256's first 16 hex digits, quoted.
pub fn etag(body: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(body))[..16])
}

fn file(name: String, content_type: &'static str, body: String) -> File {
    File {
        name,
        content_type,
        etag: etag(body.as_bytes()),
        body: Bytes::from(body),
    }
}

/// The files of a phone, by its meta-base.
pub fn render(d: &Document) -> Rendered {
    const XML: &str = "application/xml";
    const TEXT: &str = "text/plain; charset=utf-8";
    let hw = &d.hardware_id;
    let files = match d.meta {
        MetaBase::PolyVvx | MetaBase::PolyEdgeE => vec![
            file(POLY_MASTER.into(), XML, poly::master(d, false)),
            file(format!("{hw}.cfg"), XML, poly::master(d, true)),
            file(format!("{hw}-registration.cfg"), XML, poly::registration(d)),
            file(format!("{hw}-settings.cfg"), XML, poly::settings(d)),
        ],
        MetaBase::Yealink => vec![
            file(YEALINK_COMMON.into(), TEXT, yealink::common(d)),
            file(format!("{hw}.cfg"), TEXT, yealink::phone(d)),
        ],
        MetaBase::Audiocodes => vec![file(format!("{hw}.cfg"), TEXT, audiocodes::phone(d))],
        _ => vec![file(
            format!("{hw}.json"),
            "application/json",
            json::document(d),
        )],
    };
    let mut h = Sha256::new();
    for f in &files {
        h.update(f.name.as_bytes());
        h.update([0]);
        h.update(&f.body);
    }
    Rendered {
        files,
        version: hex::encode(h.finalize())[..16].to_owned(),
    }
}

/// The codec's MIME subtype (`audio/G722` → `G722`).
fn codec_name(c: &str) -> &str {
    c.strip_prefix("audio/").unwrap_or(c)
}

/// True when DTMF goes as RFC 4733 events.
fn rfc4733(d: &Document) -> bool {
    d.settings.dtmf_mode != DtmfMode::Inband as i32
}

fn transport(d: &Document) -> Transport {
    Transport::try_from(d.settings.transport).unwrap_or(Transport::Udp)
}

#[cfg(test)]
mod tests;
