//! What a phone's files are rendered from: its effective settings (template, profile,
//! overrides), its lines with the passwords derived again from the credentials key, and its
//! primary and secondary edge for its transport. Pure: the caller loads the objects.

use dialtone_domain::{credentials::CredentialKey, placement, settings};
use dialtone_media::turn::{self, Relay, RelayServer};
use dialtone_proto::{
    config::v1::{
        BaseSettings, EdgeGroup, MediaRegionOrder, MediaRelay, MediaServer, MetaBase, Phone,
        PhoneSettings, Site, Transport,
    },
    edge::v1::MediaHealth,
};

/// Where a phone reaches one of its edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeAddress {
    /// The edge's node id.
    pub node_id: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
}

impl EdgeAddress {
    /// `host:port` (IPv6 hosts in brackets).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One line as the phone must be configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDocument {
    /// SIP user (AOR user part and digest user name).
    pub sip_user: String,
    /// Label of the line key.
    pub display_name: String,
    /// The password, when the profile pushes credentials and Dialtone can derive it.
    pub password: Option<String>,
}

/// Everything the renderers need for one phone.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Phone id.
    pub phone_id: String,
    /// MAC (12 lowercase hex digits) or FQDN.
    pub hardware_id: String,
    /// Phone name.
    pub name: String,
    /// Meta-base of its profile.
    pub meta: MetaBase,
    /// Effective settings.
    pub settings: PhoneSettings,
    /// Lines in order.
    pub lines: Vec<LineDocument>,
    /// Digest realm (and SIP domain) of the lines.
    pub realm: String,
    /// Primary edge.
    pub primary: Option<EdgeAddress>,
    /// Secondary edge (dual registration).
    pub secondary: Option<EdgeAddress>,
    /// The edge a phone that registers once fails over to (the one it would register to
    /// second): set only when it does not register twice, for files that name a backup
    /// proxy (AudioCodes).
    pub backup: Option<EdgeAddress>,
    /// What could not be rendered as asked, for the phone's provisioning state.
    pub problems: Vec<String>,
    /// A WebRTC phone's ICE servers (each its URLs), in the order it is to try them:
    /// those of the media servers in its site's media regions. Empty for other phones.
    pub ice_servers: Vec<Vec<String>>,
    /// How its site uses the relay.
    pub relay: Relay,
}

impl Document {
    /// Whether any of its ICE servers is a TURN server (and so needs a credential).
    pub fn has_turn(&self) -> bool {
        self.ice_servers
            .iter()
            .flatten()
            .any(|u| u.starts_with("turn"))
    }
}

/// Whether phones of `meta` speak ICE: browsers and the desktop WebRTC softphone.
pub fn uses_ice(meta: MetaBase) -> bool {
    matches!(meta, MetaBase::Webrtc | MetaBase::DesktopSoftphone)
}

/// The site's relay setting.
pub fn relay_of(site: &Site) -> Relay {
    match site.media_relay() {
        MediaRelay::Always => Relay::Always,
        MediaRelay::Never => Relay::Never,
        MediaRelay::Auto | MediaRelay::Unspecified => Relay::Auto,
    }
}

/// The loaded objects a document is built from.
pub struct Inputs<'a> {
    /// The phone.
    pub phone: &'a Phone,
    /// Its profile (none: generic defaults).
    pub base: Option<&'a BaseSettings>,
    /// Its site.
    pub site: &'a Site,
    /// The site's edge group (none when missing).
    pub group: Option<&'a EdgeGroup>,
    /// The credentials key the line passwords derive from.
    pub key: &'a CredentialKey,
    /// Digest realm.
    pub realm: &'a str,
    /// Every media server (a WebRTC phone's ICE servers are those of its site's regions).
    pub media_servers: &'a [MediaServer],
    /// What each edge (by node id) finds of the media servers (`media-health/{node}`):
    /// a server no edge finds up is left out of the ICE servers, and sites that use their
    /// regions lowest latency first order them by the primary edge's measure.
    pub media_health: &'a [(String, MediaHealth)],
}

/// Splits `host:port` (`[v6]:port` too).
fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host.to_owned(), port.parse().ok()?))
}

fn address(e: &dialtone_proto::config::v1::Edge, t: Transport) -> Option<EdgeAddress> {
    let a = e.addresses.as_ref()?;
    let s = match t {
        Transport::Udp | Transport::Unspecified => &a.udp,
        Transport::Tcp => &a.tcp,
        Transport::Tls => &a.tls,
        Transport::Ws => &a.ws,
        Transport::Wss => &a.wss,
    };
    let (host, port) = split_host_port(s)?;
    Some(EdgeAddress {
        node_id: e.node_id.clone(),
        host,
        port,
        transport: if t == Transport::Unspecified {
            Transport::Udp
        } else {
            t
        },
    })
}

/// The edge's address for `t`, or a problem saying it offers none.
fn resolve(
    e: &dialtone_proto::config::v1::Edge,
    t: Transport,
    problems: &mut Vec<String>,
) -> Option<EdgeAddress> {
    let a = address(e, t);
    if a.is_none() {
        problems.push(format!(
            "edge {} offers no {} address",
            e.node_id,
            t.as_str_name().trim_start_matches("TRANSPORT_")
        ));
    }
    a
}

/// `regions` lowest latency first, as the edge `node` (the phone's primary) measures its
/// round trip to each region's media servers.
fn by_latency_from(
    regions: &[String],
    servers: &[MediaServer],
    health: &[(String, MediaHealth)],
    node: &str,
) -> Vec<String> {
    let measured = health.iter().find(|(n, _)| n == node).map(|(_, h)| h);
    dialtone_media::select::by_latency(regions, |region| {
        let here: Vec<&str> = servers
            .iter()
            .filter(|m| m.region == region)
            .map(|m| m.id.as_str())
            .collect();
        measured?
            .servers
            .iter()
            .filter(|s| s.up && s.rtt_ms > 0 && here.contains(&s.media_server_id.as_str()))
            .map(|s| s.rtt_ms)
            .min()
    })
}

/// Whether some edge reports on media server `id` and none finds it up: its TURN server
/// (on the same host, in every deployment this project ships) is not worth a browser's
/// ICE time. A server no edge reports on yet is kept.
fn down_everywhere(id: &str, health: &[(String, MediaHealth)]) -> bool {
    let mut seen = health
        .iter()
        .flat_map(|(_, h)| h.servers.iter().filter(|s| s.media_server_id == id))
        .peekable();
    seen.peek().is_some() && seen.all(|s| !s.up)
}

/// Builds a phone's document.
pub fn build(i: &Inputs<'_>) -> Document {
    let (meta, s) = settings::of_phone(i.base, i.phone.overrides.as_ref());
    let push = s.push_credentials.unwrap_or(false);
    let mut problems = Vec::new();
    let lines = i
        .phone
        .lines
        .iter()
        .map(|l| {
            let generation = l.credentials.as_ref().map_or(0, |c| c.generation);
            let password = match (push, generation) {
                (false, _) => None,
                (true, 0) => {
                    problems.push(format!(
                        "line {}: its password was typed by an admin or predates derived credentials; reset it to push one",
                        l.sip_user
                    ));
                    None
                }
                (true, g) => Some(i.key.line_password(&i.phone.id, &l.sip_user, g)),
            };
            LineDocument {
                sip_user: l.sip_user.clone(),
                display_name: if l.display_name.is_empty() {
                    l.sip_user.clone()
                } else {
                    l.display_name.clone()
                },
                password,
            }
        })
        .collect();
    let transport = Transport::try_from(s.transport).unwrap_or(Transport::Udp);
    let (mut primary, mut secondary, mut backup) = (None, None, None);
    match i.group {
        None => problems.push(format!(
            "site {}: edge group {} does not exist",
            i.site.id, i.site.edge_group_id
        )),
        Some(g) => {
            let dual = s.secondary_registration.unwrap_or(true);
            // Placed as if it registered twice: its second edge is a secondary to a phone
            // that does, a backup to one that fails over (the same edge either way).
            if let Some(p) = placement::place(&i.phone.id, &g.edges, true) {
                primary = resolve(p.primary, transport, &mut problems);
                let fails_over = !dual && meta == MetaBase::Audiocodes;
                let second = p
                    .secondary
                    .filter(|_| dual || fails_over)
                    .and_then(|e| resolve(e, transport, &mut problems));
                if dual {
                    secondary = second;
                } else {
                    backup = second;
                }
            } else {
                problems.push(format!("edge group {} has no edges", g.id));
            }
        }
    }
    let ice_servers = if uses_ice(meta) {
        let servers: Vec<RelayServer<'_>> = i
            .media_servers
            .iter()
            .filter(|m| !down_everywhere(&m.id, i.media_health))
            .map(|m| RelayServer {
                id: &m.id,
                region: &m.region,
                weight: m.weight.max(1),
                urls: &m.turn_urls,
            })
            .collect();
        let regions = match &primary {
            Some(p) if i.site.media_region_order() == MediaRegionOrder::LowestLatency => {
                by_latency_from(
                    &i.site.media_regions,
                    i.media_servers,
                    i.media_health,
                    &p.node_id,
                )
            }
            _ => i.site.media_regions.clone(),
        };
        turn::ice_servers(&regions, relay_of(i.site), &servers)
    } else {
        Vec::new()
    };
    Document {
        phone_id: i.phone.id.clone(),
        hardware_id: i.phone.hardware_id.clone(),
        name: i.phone.name.clone(),
        meta,
        settings: s,
        lines,
        realm: i.realm.to_owned(),
        primary,
        secondary,
        backup,
        problems,
        ice_servers,
        relay: relay_of(i.site),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use dialtone_proto::config::v1::{
        Edge, Line, PhoneKind, SipAddresses, SoftphoneAudio, StoredCredentials,
    };

    use super::*;

    pub(crate) fn group() -> EdgeGroup {
        let edge = |id: &str, n: u8| Edge {
            node_id: id.into(),
            addresses: Some(SipAddresses {
                udp: format!("10.0.0.{n}:5060"),
                tcp: format!("10.0.0.{n}:5060"),
                tls: format!("edge-{n}.example.com:5061"),
                ws: String::new(),
                wss: format!("[2001:db8::{n}]:7443"),
            }),
        };
        EdgeGroup {
            id: "eu".into(),
            name: "EU".into(),
            edges: vec![edge("edge-1", 1), edge("edge-2", 2), edge("edge-3", 3)],
            version: 7,
        }
    }

    pub(crate) fn site() -> Site {
        Site {
            id: "hq".into(),
            name: "HQ".into(),
            edge_group_id: "eu".into(),
            sip_user_prefix: "k7q2x-".into(),
            ..Default::default()
        }
    }

    /// A phone of `meta` with two lines, the first with a derived password.
    pub(crate) fn phone_and_base(meta: MetaBase, hw: &str) -> (Phone, BaseSettings) {
        let creds = |g| {
            Some(StoredCredentials {
                realm: "dialtone".into(),
                ha1_md5: String::new(),
                ha1_sha256: String::new(),
                generation: g,
            })
        };
        let phone = Phone {
            id: "5f0c6d1e-0000-4000-8000-000000000001".into(),
            name: "Lobby & \"Front\" <desk>".into(),
            kind: PhoneKind::Managed as i32,
            site_id: "hq".into(),
            base_settings_id: "desk".into(),
            hardware_id: hw.into(),
            lines: vec![
                Line {
                    sip_user: "k7q2x-1001".into(),
                    display_name: "Front desk".into(),
                    credentials: creds(1),
                    password: String::new(),
                },
                Line {
                    sip_user: "k7q2x-1002".into(),
                    display_name: String::new(),
                    credentials: creds(3),
                    password: String::new(),
                },
            ],
            device_credential_generation: 1,
            ..Default::default()
        };
        let mut settings = PhoneSettings {
            firmware_version: Some("8.1.3".into()),
            firmware_url: Some("https://fw.example.com/poly".into()),
            e911_enabled: Some(true),
            e911_lis_url: Some("https://lis.example.com/held".into()),
            e911_ers_account_id: Some("ERS-42".into()),
            auto_conference: Some(dialtone_proto::config::v1::AutoConference {
                enabled: Some(true),
                pin: Some("4711".into()),
                language: Some("fr-CA".into()),
            }),
            custom_properties: vec![dialtone_proto::config::v1::CustomProperty {
                name: "feature.example.enabled".into(),
                data_type: dialtone_proto::config::v1::PropertyType::Boolean as i32,
                value: "true".into(),
            }],
            ..Default::default()
        };
        if meta == MetaBase::DesktopSoftphone {
            settings.softphone = Some(SoftphoneAudio {
                use_headset: Some(true),
                headset_name: vec!["Jabra.*".into()],
                reject_session_when_headset_na: Some(true),
                sip_code_when_headset_na: Some(486),
                ..Default::default()
            });
            settings.push_credentials = Some(true);
        }
        let base = BaseSettings {
            id: "desk".into(),
            name: "Desk".into(),
            meta_base: meta as i32,
            settings: Some(settings),
            version: 3,
        };
        (phone, base)
    }

    pub(crate) fn document(meta: MetaBase, hw: &str) -> Document {
        let (phone, base) = phone_and_base(meta, hw);
        build(&Inputs {
            phone: &phone,
            base: Some(&base),
            site: &site(),
            group: Some(&group()),
            key: &CredentialKey::new([9; 32]),
            realm: "dialtone",
            media_servers: &[],
            media_health: &[],
        })
    }

    #[test]
    fn lines_edges_and_problems() {
        let d = document(MetaBase::PolyVvx, "0004f2aabb01");
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        let key = CredentialKey::new([9; 32]);
        assert_eq!(
            d.lines[0].password.as_deref(),
            Some(key.line_password(&d.phone_id, "k7q2x-1001", 1).as_str())
        );
        assert_eq!(
            d.lines[1].password.as_deref(),
            Some(key.line_password(&d.phone_id, "k7q2x-1002", 3).as_str())
        );
        assert_eq!(d.lines[1].display_name, "k7q2x-1002");
        let (p, s) = (d.primary.unwrap(), d.secondary.unwrap());
        assert_ne!(p.node_id, s.node_id);
        assert_eq!(p.transport, Transport::Udp);
        assert_eq!(p.port, 5060);

        // WSS over IPv6; secondary registration off; a generic profile pushes nothing.
        let (mut phone, mut base) = phone_and_base(MetaBase::Webrtc, "desk.example.com");
        phone.overrides = Some(PhoneSettings {
            secondary_registration: Some(false),
            ..Default::default()
        });
        base.settings = None;
        let d = build(&Inputs {
            phone: &phone,
            base: Some(&base),
            site: &site(),
            group: Some(&group()),
            key: &CredentialKey::new([9; 32]),
            realm: "dialtone",
            media_servers: &[],
            media_health: &[],
        });
        let p = d.primary.unwrap();
        assert_eq!((p.transport, p.port), (Transport::Wss, 7443));
        assert!(
            p.host_port().starts_with("[2001:db8::"),
            "{}",
            p.host_port()
        );
        assert!(d.secondary.is_none());
        assert!(d.lines.iter().all(|l| l.password.is_none()));

        // Problems are named: a transport no edge offers, a password that cannot be pushed,
        // a missing group.
        let (mut phone, base) = phone_and_base(MetaBase::PolyVvx, "0004f2aabb01");
        phone.overrides = Some(PhoneSettings {
            transport: Transport::Ws as i32,
            ..Default::default()
        });
        phone.lines[0].credentials.as_mut().unwrap().generation = 0;
        let inputs = Inputs {
            phone: &phone,
            base: Some(&base),
            site: &site(),
            group: Some(&group()),
            key: &CredentialKey::new([9; 32]),
            realm: "dialtone",
            media_servers: &[],
            media_health: &[],
        };
        let d = build(&inputs);
        assert!(d.primary.is_none());
        assert_eq!(d.problems.len(), 3, "{:?}", d.problems);
        assert!(d.problems[0].contains("k7q2x-1001"));
        assert!(d.problems[1].contains("offers no WS address"));
        let d = build(&Inputs {
            group: None,
            ..inputs
        });
        assert!(d.problems.iter().any(|p| p.contains("edge group eu")));
    }
    #[test]
    fn a_webrtc_phone_gets_its_sites_ice_servers_a_desk_phone_none() {
        let server = |id: &str, region: &str, urls: &[&str]| MediaServer {
            id: id.into(),
            region: region.into(),
            ng_address: "10.0.0.9:2223".into(),
            turn_urls: urls.iter().map(|u| u.to_string()).collect(),
            ..Default::default()
        };
        let servers = [
            server(
                "eu-1",
                "eu",
                &["turn:eu-1:3478?transport=udp", "stun:eu-1:3478"],
            ),
            server("us-1", "us", &["turns:us-1:5349"]),
            server("ap-1", "ap", &["turn:ap-1:3478"]),
            server("eu-2", "eu", &[]),
        ];
        let mut site = site();
        site.media_regions = vec!["us".into(), "eu".into()];
        // (meta-base, relay, ICE servers, transport policy)
        let cases = [
            (
                MetaBase::Webrtc,
                MediaRelay::Auto,
                vec![
                    vec!["turns:us-1:5349"],
                    vec!["turn:eu-1:3478?transport=udp", "stun:eu-1:3478"],
                ],
                Relay::Auto,
            ),
            (
                MetaBase::DesktopSoftphone,
                MediaRelay::Always,
                vec![
                    vec!["turns:us-1:5349"],
                    vec!["turn:eu-1:3478?transport=udp", "stun:eu-1:3478"],
                ],
                Relay::Always,
            ),
            (
                MetaBase::Webrtc,
                MediaRelay::Never,
                vec![vec!["stun:eu-1:3478"]],
                Relay::Never,
            ),
            (MetaBase::PolyVvx, MediaRelay::Auto, vec![], Relay::Auto),
        ];
        for (meta, relay, want, want_relay) in cases {
            let (phone, base) = phone_and_base(meta, "0004f2aabb01");
            site.media_relay = relay as i32;
            let d = build(&Inputs {
                phone: &phone,
                base: Some(&base),
                site: &site,
                group: Some(&group()),
                key: &CredentialKey::new([9; 32]),
                realm: "dialtone",
                media_servers: &servers,
                media_health: &[],
            });
            assert_eq!(d.ice_servers, want, "{meta:?} {relay:?}");
            assert_eq!(d.relay, want_relay);
            assert_eq!(
                d.has_turn(),
                want.iter().flatten().any(|u| u.starts_with("turn"))
            );
        }
    }
    /// A media server of `region` whose TURN URL names it.
    fn media_server(id: &str, region: &str) -> MediaServer {
        MediaServer {
            id: id.into(),
            region: region.into(),
            ng_address: "10.0.0.9:2223".into(),
            turn_urls: vec![format!("turn:{id}:3478")],
            ..Default::default()
        }
    }

    /// What edge `node` finds of media servers: (id, up, round trip in ms).
    fn found(node: &str, servers: &[(&str, bool, u32)]) -> (String, MediaHealth) {
        use dialtone_proto::edge::v1::MediaServerHealth;
        let servers = servers
            .iter()
            .map(|(id, up, rtt_ms)| MediaServerHealth {
                media_server_id: (*id).into(),
                up: *up,
                rtt_ms: *rtt_ms,
                ..Default::default()
            })
            .collect();
        (node.to_owned(), MediaHealth { servers })
    }

    /// The document of a WebRTC phone of `site` with `servers` and what edges find of them.
    fn webrtc_document(
        site: &Site,
        servers: &[MediaServer],
        health: &[(String, MediaHealth)],
    ) -> Document {
        let (phone, base) = phone_and_base(MetaBase::Webrtc, "desk.example.com");
        build(&Inputs {
            phone: &phone,
            base: Some(&base),
            site,
            group: Some(&group()),
            key: &CredentialKey::new([9; 32]),
            realm: "dialtone",
            media_servers: servers,
            media_health: health,
        })
    }

    #[test]
    fn lowest_latency_orders_ice_servers_by_the_primary_edges_measure() {
        let servers = [
            media_server("eu-1", "eu"),
            media_server("us-1", "us"),
            media_server("ap-1", "ap"),
        ];
        let mut site = site();
        site.media_regions = vec!["eu".into(), "us".into(), "ap".into()];
        site.media_region_order = MediaRegionOrder::LowestLatency as i32;
        let primary = webrtc_document(&site, &servers, &[])
            .primary
            .unwrap()
            .node_id;
        let first = |d: &Document| d.ice_servers[0][0].clone();
        // (what the edges measured, the first ICE server)
        let cases = [
            (vec![], "turn:eu-1:3478"),
            (
                vec![found(
                    &primary,
                    &[("eu-1", true, 64), ("us-1", true, 8), ("ap-1", true, 16)],
                )],
                "turn:us-1:3478",
            ),
            // A DOWN server's round trip does not count; nor another edge's measure.
            (
                vec![
                    found(
                        &primary,
                        &[("eu-1", true, 64), ("us-1", false, 8), ("ap-1", true, 16)],
                    ),
                    found("elsewhere", &[("eu-1", true, 1)]),
                ],
                "turn:ap-1:3478",
            ),
        ];
        for (health, want) in cases {
            let d = webrtc_document(&site, &servers, &health);
            assert_eq!(first(&d), want, "{health:?}");
        }
        // In the listed order when the site says so.
        site.media_region_order = MediaRegionOrder::Preference as i32;
        let health = [found(&primary, &[("us-1", true, 1)])];
        assert_eq!(
            first(&webrtc_document(&site, &servers, &health)),
            "turn:eu-1:3478"
        );
    }

    #[test]
    fn ice_servers_leave_out_media_servers_no_edge_finds_up() {
        let servers = [media_server("a", "eu"), media_server("b", "eu")];
        let mut site = site();
        site.media_regions = vec!["eu".into()];
        // (what the edges find, the ICE servers)
        let cases = [
            // Nothing reported yet: both.
            (vec![], vec!["turn:a:3478", "turn:b:3478"]),
            (
                vec![found("e1", &[("a", false, 0), ("b", true, 0)])],
                vec!["turn:b:3478"],
            ),
            // Up on one edge: kept (that edge's phones reach it).
            (
                vec![
                    found("e1", &[("a", false, 0), ("b", true, 0)]),
                    found("e2", &[("a", true, 0), ("b", true, 0)]),
                ],
                vec!["turn:a:3478", "turn:b:3478"],
            ),
            // Down everywhere: none (a phone has no relay; better than a dead one).
            (
                vec![
                    found("e1", &[("a", false, 0), ("b", false, 0)]),
                    found("e2", &[("a", false, 0)]),
                ],
                vec![],
            ),
        ];
        for (health, want) in cases {
            let d = webrtc_document(&site, &servers, &health);
            let got: Vec<&str> = d.ice_servers.iter().map(|u| u[0].as_str()).collect();
            assert_eq!(got, want, "{health:?}");
        }
    }
}
