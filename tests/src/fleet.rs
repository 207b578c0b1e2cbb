//! Seeding a node with an edge group, a site, a profile and phones whose passwords the
//! test keeps (the API shows them once, at creation).

use std::time::{Duration, Instant};

use anyhow::Context;

use dialtone_proto::{
    config::v1::{self as pb},
    edge::v1 as epb,
    status::v1 as spb,
};

use crate::{ConfigClient, EdgeClient, StatusClient};

/// The first site's summary (all zero when there is none or the role does not answer).
pub async fn site_summary(st: &mut StatusClient) -> spb::SiteSummary {
    st.get_site_summaries(spb::GetSiteSummariesRequest::default())
        .await
        .map(|r| r.into_inner().sites.into_iter().next().unwrap_or_default())
        .unwrap_or_default()
}

/// Whether the first site's summary counts `n` OPERATIONAL phones within `within`.
pub async fn wait_operational(st: &mut StatusClient, n: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if site_summary(st).await.operational >= n {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A phone the test can register.
#[derive(Clone, Debug)]
pub struct Seeded {
    pub phone_id: String,
    pub sip_user: String,
    pub password: String,
    pub version: i64,
}

/// Creates edge group `eg` (the all-in-one node `solo`), site `hq` and profile `desk`
/// (generic SIP, with `settings`).
pub async fn seed_site(c: &mut ConfigClient, settings: pb::PhoneSettings) -> anyhow::Result<()> {
    seed_site_on(c, settings, &[("solo", "127.0.0.1:5060".into())]).await
}

/// The group's edges as placement sees them (node ids; addresses do not matter to it).
pub fn placement_edges(edges: &[(&str, String)]) -> Vec<pb::Edge> {
    edges
        .iter()
        .map(|(n, _)| pb::Edge {
            node_id: (*n).into(),
            ..Default::default()
        })
        .collect()
}

/// Like [`seed_site`], with the group's edges given as (node id, UDP `host:port`).
pub async fn seed_site_on(
    c: &mut ConfigClient,
    settings: pb::PhoneSettings,
    edges: &[(&str, String)],
) -> anyhow::Result<()> {
    c.create_edge_group(pb::CreateEdgeGroupRequest {
        edge_group: Some(pb::EdgeGroup {
            id: "eg".into(),
            name: "Edges".into(),
            edges: edges
                .iter()
                .map(|(node, udp)| pb::Edge {
                    node_id: (*node).into(),
                    addresses: Some(pb::SipAddresses {
                        udp: udp.clone(),
                        ..Default::default()
                    }),
                })
                .collect(),
            version: 0,
        }),
    })
    .await?;
    create_site(c, "hq", "HQ", "eg").await?;
    create_profile(c, "desk", "Desk", pb::MetaBase::GenericSip, settings).await
}

/// Changes profile `id`'s settings with `f` (read, change, write at its current version).
pub async fn change_profile(
    c: &mut ConfigClient,
    id: &str,
    f: impl FnOnce(&mut pb::PhoneSettings),
) -> anyhow::Result<()> {
    let mut base = c
        .get_base_settings(pb::GetRequest { id: id.into() })
        .await?
        .into_inner();
    f(base.settings.get_or_insert_default());
    c.update_base_settings(pb::UpdateBaseSettingsRequest {
        update_mask: crate::whole(),
        base_settings: Some(base),
    })
    .await?;
    Ok(())
}

/// Creates base-settings profile `id` (display name `name`) of `meta` with `settings`.
pub async fn create_profile(
    c: &mut ConfigClient,
    id: &str,
    name: &str,
    meta: pb::MetaBase,
    settings: pb::PhoneSettings,
) -> anyhow::Result<()> {
    c.create_base_settings(pb::CreateBaseSettingsRequest {
        base_settings: Some(pb::BaseSettings {
            id: id.into(),
            name: name.into(),
            meta_base: meta as i32,
            settings: Some(settings),
            version: 0,
        }),
    })
    .await?;
    Ok(())
}

/// Creates site `id` named `name` on edge group `group`.
pub async fn create_site(
    c: &mut ConfigClient,
    id: &str,
    name: &str,
    group: &str,
) -> anyhow::Result<()> {
    c.create_site(pb::CreateSiteRequest {
        site: Some(pb::Site {
            id: id.into(),
            name: name.into(),
            edge_group_id: group.into(),
            ..Default::default()
        }),
    })
    .await?;
    Ok(())
}

/// Creates profile `browser` of the WebRTC meta-base at its defaults (phones of it are
/// offered DTLS-SRTP and ICE, and get ICE servers).
pub async fn browser_profile(c: &mut ConfigClient) -> anyhow::Result<()> {
    let defaults = pb::PhoneSettings::default();
    create_profile(c, "browser", "Browser", pb::MetaBase::Webrtc, defaults).await
}

/// Creates one unmanaged phone with one line named `line` (after the site prefix), and
/// waits until the edge behind `e` knows it (config reaches edges through a watch, so a
/// REGISTER sent the instant the phone is created could still meet an unknown user).
pub async fn add_phone(
    c: &mut ConfigClient,
    e: &mut EdgeClient,
    name: &str,
    line: &str,
) -> anyhow::Result<Seeded> {
    add_phone_with(c, e, name, line, "desk").await
}

/// [`add_phone`] with profile `profile`.
pub async fn add_phone_with(
    c: &mut ConfigClient,
    e: &mut EdgeClient,
    name: &str,
    line: &str,
    profile: &str,
) -> anyhow::Result<Seeded> {
    let r = c
        .create_phone(pb::CreatePhoneRequest {
            phone: Some(pb::Phone {
                name: name.into(),
                kind: pb::PhoneKind::Unmanaged as i32,
                site_id: "hq".into(),
                base_settings_id: profile.into(),
                lines: vec![pb::Line {
                    sip_user: line.into(),
                    display_name: name.into(),
                    credentials: None,
                    password: String::new(),
                }],
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let phone = r.phone.unwrap_or_default();
    let cred = r.credentials.first().cloned().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Err(s) = e
        .list_bindings(epb::ListBindingsRequest {
            phone_id: phone.id.clone(),
        })
        .await
    {
        anyhow::ensure!(
            s.code() == tonic::Code::NotFound && Instant::now() < deadline,
            "the edge never learned of phone {}: {s}",
            phone.id
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Seeded {
        phone_id: phone.id,
        sip_user: cred.sip_user,
        password: cred.password,
        version: phone.version,
    })
}

/// A phone's contacts on the edge behind `e` (none when it has no actor there).
pub async fn contacts(e: &mut EdgeClient, phone: &str) -> Vec<epb::Contact> {
    e.list_bindings(epb::ListBindingsRequest {
        phone_id: phone.into(),
    })
    .await
    .map(|r| {
        r.into_inner()
            .bindings
            .into_iter()
            .flat_map(|b| b.contacts)
            .collect()
    })
    .unwrap_or_default()
}

/// Polls until `contacts(phone)` has `n` entries (bindings follow config within 1 s).
pub async fn wait_contacts(e: &mut EdgeClient, phone: &str, n: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if contacts(e, phone).await.len() == n {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the status role sees every line of `phone` registered on edge `node`: the
/// binding is then in the store, where another edge looks for it to route a call (an
/// edge's own [`wait_contacts`] can say yes before its write reaches the store). A refusal
/// other than "no such phone yet" (a token without the right, say) is an error, not a wait.
pub async fn wait_stored(
    st: &mut StatusClient,
    phone: &str,
    node: &str,
    within: Duration,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + within;
    loop {
        let asked = st
            .get_phone_status(spb::GetPhoneStatusRequest {
                phone_id: phone.into(),
            })
            .await;
        let held = match asked {
            Ok(r) => r
                .into_inner()
                .edges
                .iter()
                .any(|e| e.node_id == node && e.registered),
            Err(s) if s.code() == tonic::Code::NotFound => false,
            Err(s) => anyhow::bail!("status of {phone}: {s}"),
        };
        if held {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether, within `within`, edge `node` of `sb` holds the one contact of `phone` (a
/// phone of one line) and the status role (node 0) sees that line registered there: a
/// call entering through another edge can then reach the phone.
pub async fn wait_routable(
    sb: &crate::ClusterSandbox,
    node: usize,
    phone: &str,
    within: Duration,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + within;
    let mut e = sb.nodes[node].edge_client(crate::ADMIN_TOKEN).await?;
    let mut st = sb.nodes[0].status_client(crate::VIEWER_TOKEN).await?;
    let node_id = &sb.nodes[node].node_id;
    if !wait_contacts(&mut e, phone, 1, within).await {
        return Ok(false);
    }
    let rest = deadline.saturating_duration_since(Instant::now());
    wait_stored(&mut st, phone, node_id, rest).await
}

/// Imports `n` unmanaged phones of site `hq` and profile `desk`, one line `{prefix}{i:06}`
/// each, through the CSV import; returns (phone id, SIP user, password) in row order.
pub async fn import(
    c: &mut ConfigClient,
    n: usize,
    prefix: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    import_assigned(c, n, prefix, |_| "unassigned".into()).await
}

/// Like [`import`], phone `i` assigned to extension `first + i` of site `hq` (a phone
/// places calls only once it is assigned).
pub async fn import_at_extensions(
    c: &mut ConfigClient,
    n: usize,
    prefix: &str,
    first: usize,
) -> anyhow::Result<Vec<(String, String, String)>> {
    import_assigned(c, n, prefix, |i| format!("site:{}", first + i)).await
}

async fn import_assigned(
    c: &mut ConfigClient,
    n: usize,
    prefix: &str,
    assignment: impl Fn(usize) -> String,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut csv = String::from("name,kind,site_id,base_settings_id,lines,assignment\n");
    for i in 0..n {
        csv.push_str(&format!(
            "{prefix} {i},unmanaged,hq,desk,{prefix}{i:06},{}\n",
            assignment(i)
        ));
    }
    let mut out = Vec::with_capacity(n);
    for r in import_csv(c, &csv, 1 << 20).await? {
        anyhow::ensure!(r.reason.is_empty(), "row {}: {}", r.row, r.reason);
        if let Some(l) = r.credentials.into_iter().next() {
            out.push((r.phone_id, l.sip_user, l.password));
        }
    }
    anyhow::ensure!(out.len() == n, "imported {} of {n} phones", out.len());
    Ok(out)
}

/// Streams `csv` to ImportPhones in chunks of `chunk` bytes; returns every row's report.
pub async fn import_csv(
    c: &mut ConfigClient,
    csv: &str,
    chunk: usize,
) -> Result<Vec<pb::ImportPhonesResponse>, tonic::Status> {
    let chunks: Vec<pb::ImportPhonesRequest> = csv
        .as_bytes()
        .chunks(chunk)
        .map(|b| pb::ImportPhonesRequest { chunk: b.to_vec() })
        .collect();
    let mut s = c
        .import_phones(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = s.message().await? {
        out.push(r);
    }
    Ok(out)
}

/// Reads phone `id`, lets `change` edit it, and writes it back (at its current version).
pub async fn update_phone(
    c: &mut ConfigClient,
    id: &str,
    change: impl FnOnce(&mut pb::Phone),
) -> anyhow::Result<pb::UpdatePhoneResponse> {
    let mut phone = c
        .get_phone(pb::GetRequest { id: id.into() })
        .await?
        .into_inner();
    change(&mut phone);
    Ok(c.update_phone(pb::UpdatePhoneRequest {
        update_mask: crate::whole(),
        phone: Some(phone),
    })
    .await?
    .into_inner())
}

/// An edit making a phone its site's phone at `extension` (for [`update_phone`]).
pub fn at_extension(extension: &str) -> impl FnOnce(&mut pb::Phone) {
    let extension = extension.to_owned();
    move |p| {
        p.assignment = Some(pb::Assignment {
            mode: Some(pb::assignment::Mode::Site(pb::SiteAssignment {
                extension,
                ..Default::default()
            })),
        });
    }
}

/// Assigns phone `id` to user `user`, created in the phone's site if it does not exist
/// (calls and messages from unassigned phones are refused).
pub async fn assign_to_user(c: &mut ConfigClient, id: &str, user: &str) -> anyhow::Result<()> {
    let site = c
        .get_phone(pb::GetRequest { id: id.into() })
        .await?
        .into_inner()
        .site_id;
    let created = c
        .create_user(pb::CreateUserRequest {
            user: Some(pb::User {
                id: user.into(),
                site_id: site,
                ..Default::default()
            }),
        })
        .await;
    match created {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::AlreadyExists => {}
        Err(s) => return Err(s.into()),
    }
    update_phone(c, id, |p| {
        p.assignment = Some(pb::Assignment {
            mode: Some(pb::assignment::Mode::User(pb::UserAssignment {
                user_id: user.into(),
            })),
        });
    })
    .await
    .map(|_| ())
}

/// Creates an unmanaged phone of site hq (profile desk) at each of `extensions`, its one
/// line's SIP user `{prefix}{i}`: the lines' credentials, for real softphones.
pub async fn softphones_at(
    cfg: &mut ConfigClient,
    extensions: &[&str],
    prefix: &str,
) -> anyhow::Result<Vec<Seeded>> {
    let mut phones = Vec::new();
    for (i, extension) in extensions.iter().enumerate() {
        let line = format!("{prefix}{i}");
        phones.push(phone_at(cfg, extension, &line, pb::PhoneKind::Unmanaged, "desk").await?);
    }
    Ok(phones)
}

/// Creates a phone of `kind` and `profile` in site hq at `extension`, its one line's SIP
/// user `line`: the line's credentials.
pub async fn phone_at(
    cfg: &mut ConfigClient,
    extension: &str,
    line: &str,
    kind: pb::PhoneKind,
    profile: &str,
) -> anyhow::Result<Seeded> {
    let p = cfg
        .create_phone(pb::CreatePhoneRequest {
            phone: Some(pb::Phone {
                name: format!("Softphone {extension}"),
                kind: kind as i32,
                site_id: "hq".into(),
                base_settings_id: profile.into(),
                lines: vec![pb::Line {
                    sip_user: line.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let phone = p.phone.context("no phone in the answer")?;
    update_phone(cfg, &phone.id, at_extension(extension)).await?;
    let line = p.credentials.first().context("no credentials")?.clone();
    Ok(Seeded {
        phone_id: phone.id,
        sip_user: line.sip_user,
        password: line.password,
        version: 0,
    })
}

/// The fleet watched through a status node while something is done to the cluster: the
/// most phones of site `hq` ever OFFLINE and the fewest ever OPERATIONAL, from a summary
/// every 100 ms (a summary that fails, as while the status node itself restarts, is
/// skipped).
pub struct FleetWatch {
    offline: std::sync::Arc<std::sync::atomic::AtomicU32>,
    operational: std::sync::Arc<std::sync::atomic::AtomicU32>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FleetWatch {
    /// Starts watching through `st`.
    pub fn start(mut st: StatusClient) -> Self {
        use std::sync::{
            Arc,
            atomic::{AtomicBool, AtomicU32, Ordering},
        };
        let offline = Arc::new(AtomicU32::new(0));
        let operational = Arc::new(AtomicU32::new(u32::MAX));
        let done = Arc::new(AtomicBool::new(false));
        let task = {
            let (offline, operational, done) = (offline.clone(), operational.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    if let Some(s) = hq_summary(&mut st).await {
                        offline.fetch_max(s.offline, Ordering::Relaxed);
                        operational.fetch_min(s.operational, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        FleetWatch {
            offline,
            operational,
            done,
            task,
        }
    }

    /// Stops watching: (the most OFFLINE, the fewest OPERATIONAL) seen.
    pub async fn finish(self) -> (u32, u32) {
        use std::sync::atomic::Ordering;
        self.done.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (
            self.offline.load(Ordering::Relaxed),
            self.operational.load(Ordering::Relaxed),
        )
    }
}

/// Site `hq`'s summary, or none when the status node does not answer.
pub async fn hq_summary(st: &mut StatusClient) -> Option<spb::SiteSummary> {
    st.get_site_summaries(spb::GetSiteSummariesRequest::default())
        .await
        .ok()?
        .into_inner()
        .sites
        .into_iter()
        .find(|s| s.site_id == "hq")
}

/// A site's fleet for the restart and upgrade tests: `n` phones imported as `{prefix}-*`,
/// and a sender with an extension (an unassigned phone may not send MESSAGE), each to
/// register to its primary and secondary edge among `edges` (node indexes).
pub struct DualFleet {
    /// The imported phones: (phone id, SIP user, password).
    pub created: Vec<(String, String, String)>,
    /// The imported phones as the simulator registers them.
    pub specs: Vec<dialtone_phonesim::PhoneSpec>,
    /// `specs` and the sender: every phone of the site, so all are expected OPERATIONAL.
    pub everyone: Vec<dialtone_phonesim::PhoneSpec>,
    /// The sender's SIP user and password.
    pub from: (String, String),
}

impl DualFleet {
    /// Registers every phone (Expires 3600, over `sockets` sockets at `start_rate` a
    /// second) once the edges have learnt of them, and waits up to 60 s until the status
    /// role `st` shows all OPERATIONAL: the running simulator, or which phones were not.
    pub async fn register(
        &self,
        sockets: usize,
        start_rate: u32,
        st: &mut StatusClient,
    ) -> anyhow::Result<dialtone_phonesim::Sim> {
        // Edges learn of the imported phones through their watch; give them a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sim = dialtone_phonesim::Sim::start(
            dialtone_phonesim::SimConfig {
                expires: 3600,
                sockets,
                start_rate,
                timeout: Duration::from_secs(2),
                ..dialtone_phonesim::SimConfig::default()
            },
            self.everyone.clone(),
        )
        .await?;
        let n = self.everyone.len() as u32;
        if !wait_operational(st, n, Duration::from_secs(60)).await {
            anyhow::bail!("fleet never OPERATIONAL: {:?}", hq_summary(st).await);
        }
        Ok(sim)
    }

    /// Imports the fleet into site `hq` (seeded with its edge group).
    pub async fn import(
        sb: &crate::ClusterSandbox,
        cfg: &mut ConfigClient,
        edges: &[usize],
        n: usize,
        prefix: &str,
    ) -> anyhow::Result<Self> {
        let created = import(cfg, n, prefix).await?;
        let mut row = import_csv(
            cfg,
            "name,kind,site_id,base_settings_id,lines,assignment\nSender,unmanaged,hq,desk,sender,site:9999\n",
            1 << 20,
        )
        .await?
        .remove(0);
        let line = row.credentials.remove(0);
        let from = (line.sip_user, line.password);
        let sender = sb.dual_registered(
            edges,
            &(row.phone_id.clone(), from.0.clone(), from.1.clone()),
        );
        let specs: Vec<_> = created
            .iter()
            .map(|p| sb.dual_registered(edges, p))
            .collect();
        let everyone = specs.iter().cloned().chain([sender]).collect();
        Ok(DualFleet {
            created,
            specs,
            everyone,
            from,
        })
    }
}
