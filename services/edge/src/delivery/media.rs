//! Media anchoring of calls at rtpengine (`dialtone_media`): the `offer` of a call's
//! INVITE on each branch that needs it, the `answer` of the phone's SDP (18x or 2xx) on
//! its way back, the `delete` when the call fails or its BYE passes. What to anchor and
//! with which flags is decided by `dialtone_media::anchor` (pure); which media server by
//! `dialtone_media::select` (a hash of the Call-ID over the site's first region with a
//! server up; one that does not answer is passed over for the next). Every `ng` command
//! runs on the main runtime, where the client's socket lives.
//!
//! A media server's session of a call whose BYE went through another edge ends by
//! rtpengine's own timeout (no media for `--timeout` seconds).

use std::{net::SocketAddr, sync::Arc};

use dialtone_media::{
    anchor::{self, Party, Side},
    ng::{self, Dialog},
    sdp::Summary,
    select,
};
use dialtone_sip::Message;
use tracing::{debug, warn};

use super::Delivery;
use crate::{credentials::media::MediaPlan, flow::Transport};

/// What a call's branches need to anchor its media: the site's plan and the caller.
pub(crate) struct CallMedia {
    pub plan: Arc<MediaPlan>,
    pub caller: Party,
    pub call_id: String,
    pub from_tag: String,
}

/// One branch's anchored media: where, and who is on each side.
#[derive(Clone, Debug)]
pub(crate) struct MediaLeg {
    pub server: SocketAddr,
    pub call_id: String,
    pub from_tag: String,
    pub via_branch: String,
    pub caller: Party,
    pub callee: Party,
}

/// Whether `m` carries an SDP body.
pub(crate) fn sdp_of(m: &Message) -> Option<Summary> {
    let sdp = m
        .get("content-type")
        .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/sdp"));
    if !sdp || m.body.is_empty() {
        return None;
    }
    Summary::of(&m.body)
}

/// What a party reached over `transport` at `addr` (a WebRTC phone by its profile, or
/// by its WebSocket flow) speaks.
pub(crate) fn party(webrtc: bool, transport: Transport, addr: SocketAddr) -> Party {
    let ws = matches!(transport, Transport::Ws | Transport::Wss);
    Party {
        side: if webrtc || ws {
            Side::WebRtc
        } else {
            Side::Rtp
        },
        source: addr.ip(),
        behind_nat: false,
        fixed_address: false,
    }
}

impl Delivery {
    /// The media context of an INVITE `m` from `src` counted under `site`; none when the
    /// INVITE has no SDP, the site is unknown or no `ng` client runs.
    pub(crate) fn call_media(
        &self,
        m: &Message,
        src: std::net::IpAddr,
        site: Option<&Arc<str>>,
    ) -> Option<CallMedia> {
        self.ng.as_ref()?;
        let summary = sdp_of(m)?;
        // A site without media servers in its regions anchors nothing (and costs a call
        // nothing more).
        let plan = self
            .cache
            .read()
            .media_plan(site?)
            .filter(|p| !p.servers.is_empty())?;
        let from_tag = m.addressing().ok()?.from.tag?.to_owned();
        Some(CallMedia {
            plan,
            caller: Party {
                side: if summary.webrtc() {
                    Side::WebRtc
                } else {
                    Side::Rtp
                },
                source: src,
                behind_nat: summary.behind_nat(src),
                fixed_address: false,
            },
            call_id: m.get("call-id")?.to_owned(),
            from_tag,
        })
    }

    /// `m` with its SDP offered at a media server for `callee`, when the call is
    /// anchored; none when it is not (or no media server took it: the call goes on with
    /// direct media, which may still work).
    pub(crate) async fn media_offer(
        &self,
        m: &Message,
        call: &CallMedia,
        callee: Party,
        via_branch: String,
    ) -> Option<(Message, MediaLeg)> {
        let why = anchor::decide(call.plan.site.anchoring, &call.caller, &callee)?;
        let client = self.ng.clone()?;
        let servers = select::candidates(
            &call.call_id,
            &call.plan.site.regions,
            &call.plan.servers,
            |s| self.media_health.is_up(&s.id),
        );
        if servers.is_empty() {
            warn!(call_id = %call.call_id, ?why, "no media server up in the site's regions: media not anchored");
            return None;
        }
        let flags = anchor::flags(&call.caller, &callee);
        for server in servers {
            let dialog = Dialog {
                call_id: &call.call_id,
                from_tag: &call.from_tag,
                to_tag: None,
                via_branch: Some(&via_branch),
            };
            let command = ng::offer(&dialog, &m.body, &flags);
            let ng_addr = server.ng;
            let c = client.clone();
            let sent = self
                .runtime
                .spawn(async move { c.call(ng_addr, "offer", &command).await })
                .await;
            match sent {
                Ok(Ok(Some(sdp))) => {
                    debug!(call_id = %call.call_id, media_server = %server.id, ?why, "media anchored");
                    self.media_health.anchored(&server.id);
                    let mut offered = m.clone();
                    offered.body = sdp;
                    let leg = MediaLeg {
                        server: ng_addr,
                        call_id: call.call_id.clone(),
                        from_tag: call.from_tag.clone(),
                        via_branch,
                        caller: call.caller.clone(),
                        callee,
                    };
                    return Some((offered, leg));
                }
                Ok(Err(e)) => {
                    warn!(media_server = %server.id, error = %e, "offer failed; trying the next media server")
                }
                _ => {
                    warn!(media_server = %server.id, "offer gave no SDP; trying the next media server")
                }
            }
        }
        None
    }

    /// The callee's answer `resp` (18x or 2xx with SDP, to-tag `to_tag`) rewritten by the
    /// media server of `leg` for the caller; none when it has no SDP or the media server
    /// refused (the answer then goes on as it came).
    pub(crate) async fn media_answer(&self, leg: &MediaLeg, resp: &Message) -> Option<Vec<u8>> {
        let summary = sdp_of(resp)?;
        let to_tag = resp.addressing().ok()?.to.tag?.to_owned();
        let client = self.ng.clone()?;
        let mut callee = leg.callee.clone();
        callee.behind_nat = summary.behind_nat(callee.source);
        if summary.webrtc() {
            callee.side = Side::WebRtc;
        }
        let flags = anchor::flags(&callee, &leg.caller);
        let dialog = Dialog {
            call_id: &leg.call_id,
            from_tag: &leg.from_tag,
            to_tag: Some(&to_tag),
            via_branch: Some(&leg.via_branch),
        };
        let command = ng::answer(&dialog, &resp.body, &flags);
        let server = leg.server;
        let answered = self
            .runtime
            .spawn(async move { client.call(server, "answer", &command).await })
            .await;
        match answered {
            Ok(Ok(Some(sdp))) => Some(sdp),
            Ok(Err(e)) => {
                warn!(call_id = %leg.call_id, error = %e, "answer failed; the callee's SDP goes on as it came");
                None
            }
            _ => None,
        }
    }

    /// Ends call `call_id`'s session at the media server at `server` (in the background).
    pub(crate) fn media_delete(&self, server: SocketAddr, call_id: &str) {
        let Some(client) = self.ng.clone() else {
            return;
        };
        let command = ng::delete(call_id);
        let call_id = call_id.to_owned();
        self.runtime.spawn(async move {
            if let Err(e) = client.call(server, "delete", &command).await {
                debug!(%call_id, error = %e, "media session delete failed");
            }
        });
    }
}
