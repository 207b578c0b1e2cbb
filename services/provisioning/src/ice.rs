//! A WebRTC phone's ICE servers with its time-limited TURN credential, as its JSON file
//! is served and as `how-to-register` shows them. The URLs are configuration (in the
//! document, so a change is a new version); the credential is issued at each request
//! (coturn's TURN REST API, `dialtone_media::turn`) and stays the same bytes for a step
//! of its lifetime, so a phone polling its file still gets 304s between steps. Pure.

use bytes::Bytes;
use dialtone_media::turn::{self, Relay, TurnSecret};
use dialtone_proto::provisioning::v1::IceServer;
use serde_json::{Value, json};

/// The TURN servers' shared secret and how long a credential lasts.
#[derive(Clone, Debug)]
pub struct Turn {
    pub secret: TurnSecret,
    /// Seconds a credential lasts (then up to a 24th more: see `turn::expiry`).
    pub ttl_s: u64,
}

/// The RTCConfiguration `iceTransportPolicy` of a site's relay setting.
pub fn transport_policy(relay: Relay) -> &'static str {
    match relay {
        Relay::Always => "relay",
        Relay::Auto | Relay::Never => "all",
    }
}

/// Whether a server with these URLs takes a TURN credential.
fn is_turn(urls: &[String]) -> bool {
    urls.iter().any(|u| u.starts_with("turn"))
}

/// The RTCIceServer objects of a phone with ICE servers `servers` (each its URLs), with a
/// credential for each TURN server when `turn` is set.
pub fn servers(
    servers: &[Vec<String>],
    phone_id: &str,
    turn: Option<&Turn>,
    now_s: u64,
) -> Vec<IceServer> {
    let cred = turn.map(|t| turn::credential(&t.secret, phone_id, now_s, t.ttl_s));
    servers
        .iter()
        .map(|urls| {
            let mut s = IceServer {
                urls: urls.clone(),
                ..Default::default()
            };
            if let Some(c) = cred.as_ref().filter(|_| is_turn(urls)) {
                s.username = c.username.clone();
                s.credential = c.password.clone();
                s.expires_at = c.expires_at as i64;
            }
            s
        })
        .collect()
}

/// A rendered JSON document (`ice.servers[].urls`) with the phone's credential added to
/// each TURN server (`username`, `credential`) and `ice.credential_expires_at`; none when
/// the body is not such a document.
pub fn credentialed(body: &[u8], phone_id: &str, turn: &Turn, now_s: u64) -> Option<Bytes> {
    let mut doc: Value = serde_json::from_slice(body).ok()?;
    let c = turn::credential(&turn.secret, phone_id, now_s, turn.ttl_s);
    let ice = doc.get_mut("ice")?.as_object_mut()?;
    for s in ice.get_mut("servers")?.as_array_mut()? {
        let urls: Vec<String> = serde_json::from_value(s["urls"].clone()).ok()?;
        if is_turn(&urls) {
            let o = s.as_object_mut()?;
            o.insert("username".into(), json!(c.username));
            o.insert("credential".into(), json!(c.password));
        }
    }
    ice.insert("credential_expires_at".into(), json!(c.expires_at));
    let mut out = serde_json::to_string_pretty(&doc).ok()?;
    out.push('\n');
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn() -> Turn {
        Turn {
            secret: TurnSecret::from_text("north-wind-blows-cold").unwrap(),
            ttl_s: 86_400,
        }
    }

    #[test]
    fn turn_servers_get_the_phones_credential_stun_servers_none() {
        let urls = vec![
            vec![
                "turn:a:3478?transport=udp".to_owned(),
                "stun:a:3478".to_owned(),
            ],
            vec!["stun:b:3478".to_owned()],
        ];
        let got = servers(&urls, "ph-1", Some(&turn()), 1_700_000_000);
        assert_eq!(got[0].username, "1700089200:ph-1");
        assert_eq!(got[0].credential, "nngmBd48ElpTNXi+Ymd8hycM4/4=");
        assert_eq!(got[0].expires_at, 1_700_089_200);
        assert_eq!(
            got[1],
            IceServer {
                urls: urls[1].clone(),
                ..Default::default()
            }
        );
        // Without a secret: the URLs only.
        let bare = servers(&urls, "ph-1", None, 1_700_000_000);
        assert!(
            bare.iter()
                .all(|s| s.username.is_empty() && s.credential.is_empty())
        );
    }

    #[test]
    fn the_served_file_carries_the_credential() {
        let body = br#"{"ice":{"servers":[{"urls":["turn:a:3478"]},{"urls":["stun:b"]}],"transport_policy":"relay"},"lines":[]}"#;
        let out = credentialed(body, "ph-1", &turn(), 1_700_000_000).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["ice"]["servers"][0]["username"], "1700089200:ph-1");
        assert_eq!(
            v["ice"]["servers"][0]["credential"],
            "nngmBd48ElpTNXi+Ymd8hycM4/4="
        );
        assert!(v["ice"]["servers"][1].get("username").is_none());
        assert_eq!(v["ice"]["credential_expires_at"], 1_700_089_200);
        assert_eq!(v["ice"]["transport_policy"], "relay");
        // The same bytes within the step.
        assert_eq!(
            credentialed(body, "ph-1", &turn(), 1_700_000_500).unwrap(),
            out
        );
        // Not a document with ICE servers: none.
        assert!(credentialed(b"{\"lines\":[]}", "ph-1", &turn(), 0).is_none());
        assert!(credentialed(b"<xml/>", "ph-1", &turn(), 0).is_none());
    }
}
