//! A throwaway certificate authority for tests: PEM files of a CA and the certificates it
//! issues (servers, clients, devices), plus self-signed look-alikes nobody issued.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A certificate and its key, as PEM files.
pub type Pair = (PathBuf, PathBuf);

/// A CA writing into one directory.
pub struct TestCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub cert: PathBuf,
}

fn write(dir: &Path, name: &str, pem: String) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).expect("writing a test certificate");
    p
}

fn params(cn: &str, sans: &[&str], client: bool) -> CertificateParams {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("valid names");
    p.distinguished_name.push(DnType::CommonName, cn);
    if client {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    p
}

impl TestCa {
    /// A CA named `cn`, writing `ca.pem` and what it issues into `dir`.
    pub fn new(dir: &Path, cn: &str) -> Self {
        let key = KeyPair::generate().expect("a key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("no names");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.self_signed(&key).expect("self-signed CA");
        TestCa {
            cert: write(dir, "ca.pem", cert.pem()),
            dir: dir.to_owned(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A certificate for `cn` with DNS/IP subjectAltNames `sans` (`client`: for client
    /// authentication only), written as `{name}.pem` and `{name}-key.pem`.
    pub fn issue(&self, name: &str, cn: &str, sans: &[&str], client: bool) -> Pair {
        let key = KeyPair::generate().expect("a key");
        let cert = params(cn, sans, client)
            .signed_by(&key, &self.issuer)
            .expect("signed");
        (
            write(&self.dir, &format!("{name}.pem"), cert.pem()),
            write(&self.dir, &format!("{name}-key.pem"), key.serialize_pem()),
        )
    }

    /// A self-signed certificate that looks like one of ours but that no CA issued.
    pub fn rogue(&self, name: &str, cn: &str, client: bool) -> Pair {
        let key = KeyPair::generate().expect("a key");
        let cert = params(cn, &[], client)
            .self_signed(&key)
            .expect("self-signed");
        (
            write(&self.dir, &format!("{name}.pem"), cert.pem()),
            write(&self.dir, &format!("{name}-key.pem"), key.serialize_pem()),
        )
    }
}
