//! Media servers and the sites' media settings, as the edge's cache holds them: where a
//! call of a site may be anchored (`dialtone_media::select` picks the server).

use std::{collections::BTreeMap, sync::Arc};

use dialtone_media::{
    anchor::{Anchoring, Side},
    select::Server,
};
use dialtone_proto::config::v1::{
    MediaAnchoring, MediaEncryption, MediaRegionOrder, MediaServer, MetaBase, Site,
};

use super::CredentialCache;

/// A site's media settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteMedia {
    pub anchoring: Anchoring,
    /// Its media regions, in order of preference.
    pub regions: Vec<String>,
    /// Its regions are used lowest latency first (as this edge measures it).
    pub lowest_latency: bool,
}

impl SiteMedia {
    pub fn of(site: &Site) -> Self {
        let anchoring = match MediaAnchoring::try_from(site.media_anchoring) {
            Ok(MediaAnchoring::Always) => Anchoring::Always,
            Ok(MediaAnchoring::Never) => Anchoring::Never,
            _ => Anchoring::WhenNeeded,
        };
        SiteMedia {
            anchoring,
            regions: site.media_regions.clone(),
            lowest_latency: site.media_region_order() == MediaRegionOrder::LowestLatency,
        }
    }
}

/// What a call needs to know to be anchored: its site's settings and the media servers
/// of the site's regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaPlan {
    pub site: SiteMedia,
    pub servers: Vec<Server>,
}

/// Media servers by id.
#[derive(Default)]
pub struct MediaServers(BTreeMap<String, Server>);

impl MediaServers {
    /// Every media server (for the health checks).
    pub fn all(&self) -> Vec<Server> {
        self.0.values().cloned().collect()
    }
}

impl CredentialCache {
    /// A media server was created or changed (one whose address does not parse, which
    /// the config API refuses, is dropped).
    pub fn put_media_server(&mut self, m: &MediaServer) {
        match m.ng_address.parse() {
            Ok(ng) => {
                let s = Server {
                    id: m.id.clone(),
                    region: m.region.clone(),
                    ng,
                    weight: m.weight.max(1),
                };
                self.media_servers.0.insert(m.id.clone(), s);
            }
            Err(_) => self.remove_media_server(&m.id),
        }
    }

    /// A media server was deleted.
    pub fn remove_media_server(&mut self, id: &str) {
        self.media_servers.0.remove(id);
    }

    /// What phone `id` speaks for media, by its settings: ICE and DTLS-SRTP for a WebRTC
    /// phone (its profile's family) whatever flow it is reached over, SDES-SRTP where its
    /// settings (its overrides, else its profile's) ask for it, else plain RTP.
    pub fn media_side(&self, id: &str) -> Side {
        let Some(phone) = self.phones.get(id) else {
            return Side::Rtp;
        };
        let Some((meta, profile)) = self.bases.get(&phone.base) else {
            return Side::Rtp;
        };
        if *meta == MetaBase::Webrtc {
            return Side::WebRtc;
        }
        let encryption = phone
            .overrides
            .as_ref()
            .map(|o| o.media_encryption)
            .filter(|e| *e != 0)
            .unwrap_or(profile.media_encryption);
        if encryption == MediaEncryption::Sdes as i32 {
            Side::Srtp
        } else {
            Side::Rtp
        }
    }

    /// Every media server.
    pub fn media_servers(&self) -> Vec<Server> {
        self.media_servers.all()
    }

    /// The media plan of a call counted under site `site`: none when the site is unknown
    /// or has no media server in its regions (found without allocating anything).
    pub fn media_plan(&self, site: &str) -> Option<Arc<MediaPlan>> {
        let media = &self.calling.get(site)?.media;
        let servers: Vec<Server> = self
            .media_servers
            .0
            .values()
            .filter(|s| media.regions.contains(&s.region))
            .cloned()
            .collect();
        if servers.is_empty() {
            return None;
        }
        Some(Arc::new(MediaPlan {
            site: media.clone(),
            servers,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Limits;

    #[test]
    fn a_sites_plan_holds_the_servers_of_its_regions() {
        let mut c = CredentialCache::new(Limits {
            min_expires: 60,
            max_expires: 3600,
            digest_bound: dialtone_sip::offer::Offer::Sha256ThenMd5,
        });
        c.put_site(&Site {
            id: "hq".into(),
            media_regions: vec!["eu".into()],
            media_anchoring: MediaAnchoring::Always as i32,
            ..Default::default()
        });
        for (id, region) in [("eu-1", "eu"), ("us-1", "us")] {
            c.put_media_server(&MediaServer {
                id: id.into(),
                region: region.into(),
                ng_address: "127.0.0.1:2223".into(),
                ..Default::default()
            });
        }
        let plan = c.media_plan("hq").unwrap();
        assert_eq!(plan.site.anchoring, Anchoring::Always);
        let ids: Vec<&str> = plan.servers.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["eu-1"]);
        assert_eq!(plan.servers[0].weight, 1);
        c.remove_media_server("eu-1");
        assert_eq!(c.media_plan("hq"), None, "no server in its regions");
        assert_eq!(c.media_plan("nowhere"), None);
    }
}
