//! Managed phones: on boot each fetches its configuration over HTTPS by MAC address
//! (`/{mac}.json`, the document of generic SIP phones and the desktop softphone) with its
//! device credential, and registers where the document says (primary and secondary edge)
//! as the line it names. A NOTIFY check-sync makes it fetch again (If-None-Match); with
//! `reboot=true` it then re-registers as a phone does after a reboot. A softphone applies
//! the audio-device rules of its document to incoming INVITEs.
//!
//! Pure: [`parse_document`]. IO: [`boot`] and [`fetch`].

use std::{io, net::SocketAddr, sync::Arc};

use dialtone_proto::config::v1::SoftphoneAudio;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::{
    PhoneSpec,
    https::{Connection, Device, Response, TlsConfig},
};

/// Where managed phones fetch their configuration.
#[derive(Debug, Clone)]
pub struct ProvisioningSource {
    /// The HTTPS server.
    pub addr: SocketAddr,
    /// Trust for its certificate (its name must be `localhost`, as the dev certificate's).
    pub tls: TlsConfig,
}

/// A managed phone before boot: who it is to the provisioning server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedDevice {
    /// Phone id (for reports).
    pub phone_id: String,
    /// Its MAC address or FQDN (the device credential's user).
    pub hardware_id: String,
    /// The device credential's password.
    pub password: String,
}

/// What a managed phone keeps from its configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Managed {
    /// The device credential's user (MAC or FQDN).
    pub hardware_id: String,
    /// The device credential's password.
    pub device_password: String,
    /// ETag of the document it runs.
    pub etag: Option<String>,
    /// The softphone's audio-device rules, for a desktop softphone.
    pub softphone: Option<SoftphoneAudio>,
}

/// The path of a phone's document.
pub fn document_path(hardware_id: &str) -> String {
    format!("/{hardware_id}.json")
}

fn registrar(v: &Value, which: &str) -> Result<Option<SocketAddr>, String> {
    let e = &v["registration"][which];
    if e.is_null() {
        return Ok(None);
    }
    let transport = e["transport"].as_str().unwrap_or("udp");
    if transport != "udp" {
        return Err(format!(
            "{which} edge: transport {transport} (phonesim registers over UDP)"
        ));
    }
    let host = e["host"].as_str().unwrap_or_default();
    let port = e["port"].as_u64().unwrap_or(5060);
    format!("{host}:{port}")
        .parse()
        .map(Some)
        .map_err(|_| format!("{which} edge: '{host}:{port}' is not an IP address and port"))
}

/// The phone a document describes: its first line, its edges, its softphone rules. Pure.
pub fn parse_document(body: &[u8], device: &ManagedDevice) -> Result<PhoneSpec, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if v["format"].as_str() != Some("dialtone-phone-config/1") {
        return Err("not a dialtone-phone-config/1 document".into());
    }
    let line = v["lines"]
        .as_array()
        .and_then(|l| l.first())
        .ok_or("the document names no line")?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let (user, password, realm) = (
        text(&line["auth"]["username"]),
        text(&line["auth"]["password"]),
        text(&line["auth"]["realm"]),
    );
    if user.is_empty() || password.is_empty() {
        return Err("the line carries no credentials (does the profile push them?)".into());
    }
    let registrars: Vec<SocketAddr> = [registrar(&v, "primary")?, registrar(&v, "secondary")?]
        .into_iter()
        .flatten()
        .collect();
    if registrars.is_empty() {
        return Err("the document names no edge".into());
    }
    let softphone = match &v["softphone"] {
        Value::Null => None,
        s => Some(SoftphoneAudio {
            use_headset: s["use_headset"].as_bool(),
            headset_name: strings(&s["headset_name"]),
            audio_in_device: strings(&s["audio_in_device"]),
            audio_out_device: strings(&s["audio_out_device"]),
            auto_answer: s["auto_answer"].as_bool(),
            reject_session_when_headset_na: s["reject_session_when_headset_na"].as_bool(),
            sip_code_when_headset_na: s["sip_code_when_headset_na"].as_u64().map(|c| c as u32),
        }),
    };
    Ok(PhoneSpec {
        phone_id: device.phone_id.clone(),
        user,
        password,
        domain: realm,
        registrars,
        managed: Some(Managed {
            hardware_id: device.hardware_id.clone(),
            device_password: device.password.clone(),
            etag: None,
            softphone,
        }),
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Fetches a phone's document over a new connection (phones do not keep one between
/// fetches), conditionally on `etag`.
pub async fn fetch(
    source: &ProvisioningSource,
    hardware_id: &str,
    password: &str,
    etag: Option<&str>,
) -> io::Result<Response> {
    let mut conn = Connection::connect(source.addr, "localhost", source.tls.clone()).await?;
    Device::new(hardware_id, password)
        .fetch(&mut conn, &document_path(hardware_id), etag)
        .await
}

/// Boots `devices`, at most `concurrency` fetching at once: each one's phone, or why it
/// could not boot.
pub async fn boot(
    source: &ProvisioningSource,
    devices: Vec<ManagedDevice>,
    concurrency: usize,
) -> Vec<Result<PhoneSpec, String>> {
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let jobs: Vec<_> = devices
        .into_iter()
        .map(|d| {
            let (source, limit) = (source.clone(), limit.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire().await;
                let r = fetch(&source, &d.hardware_id, &d.password, None)
                    .await
                    .map_err(|e| format!("{}: fetch failed: {e}", d.hardware_id))?;
                if r.status != 200 {
                    return Err(format!("{}: HTTP {}", d.hardware_id, r.status));
                }
                let mut spec =
                    parse_document(&r.body, &d).map_err(|e| format!("{}: {e}", d.hardware_id))?;
                if let Some(m) = spec.managed.as_mut() {
                    m.etag = r.etag;
                }
                Ok(spec)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        out.push(
            j.await
                .unwrap_or_else(|e| Err(format!("boot task failed: {e}"))),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> ManagedDevice {
        ManagedDevice {
            phone_id: "p1".into(),
            hardware_id: "0004f2000001".into(),
            password: "dev".into(),
        }
    }

    fn doc(registration: &str, softphone: &str, auth: &str) -> String {
        format!(
            r#"{{"format": "dialtone-phone-config/1",
                "lines": [{{"sip_user": "1001", "auth": {auth}}}],
                "registration": {registration},
                "softphone": {softphone}}}"#
        )
    }

    const AUTH: &str = r#"{"realm": "dialtone", "username": "1001", "password": "pw"}"#;
    const BOTH: &str = r#"{"primary": {"host": "127.0.0.1", "port": 5070, "transport": "udp"},
                           "secondary": {"host": "127.0.0.2", "port": 5060, "transport": "udp"}}"#;

    #[test]
    fn documents_give_the_line_the_edges_and_the_audio_rules() {
        let s = parse_document(doc(BOTH, "null", AUTH).as_bytes(), &device()).unwrap();
        assert_eq!(
            (s.user.as_str(), s.password.as_str(), s.domain.as_str()),
            ("1001", "pw", "dialtone")
        );
        assert_eq!(
            s.registrars,
            [
                "127.0.0.1:5070".parse().unwrap(),
                "127.0.0.2:5060".parse().unwrap()
            ]
        );
        let m = s.managed.unwrap();
        assert_eq!(m.hardware_id, "0004f2000001");
        assert!(m.softphone.is_none());

        let soft = r#"{"use_headset": true, "headset_name": ["Jabra.*"], "audio_in_device": [],
                       "audio_out_device": [], "auto_answer": false,
                       "reject_session_when_headset_na": true, "sip_code_when_headset_na": 486}"#;
        let one = r#"{"primary": {"host": "127.0.0.1", "port": 5060, "transport": "udp"}, "secondary": null}"#;
        let s = parse_document(doc(one, soft, AUTH).as_bytes(), &device()).unwrap();
        assert_eq!(s.registrars.len(), 1);
        let audio = s.managed.unwrap().softphone.unwrap();
        assert_eq!(audio.headset_name, ["Jabra.*"]);
        assert_eq!(
            (
                audio.use_headset,
                audio.reject_session_when_headset_na,
                audio.sip_code_when_headset_na
            ),
            (Some(true), Some(true), Some(486))
        );
    }

    #[test]
    fn unusable_documents_say_why() {
        let tls = r#"{"primary": {"host": "127.0.0.1", "port": 5061, "transport": "tls"}}"#;
        let named = r#"{"primary": {"host": "sip.example.com", "port": 5060, "transport": "udp"}}"#;
        let cases: &[(String, &str)] = &[
            ("nope".into(), "not JSON"),
            (r#"{"format": "other"}"#.into(), "not a dialtone"),
            (doc("{}", "null", AUTH), "no edge"),
            (doc(tls, "null", AUTH), "over UDP"),
            (doc(named, "null", AUTH), "not an IP address"),
            (
                doc(
                    BOTH,
                    "null",
                    r#"{"realm": "d", "username": "1001", "password": null}"#,
                ),
                "no credentials",
            ),
        ];
        for (body, want) in cases {
            let e = parse_document(body.as_bytes(), &device()).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
    }
}
