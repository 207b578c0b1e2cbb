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
    MediaError,
    anchor::{self, Party, Side},
    ng::{self, Dialog},
    sdp::Summary,
    select,
};
use dialtone_sip::Message;
use tracing::{debug, warn};

use super::{
    Delivery,
    calls::{MAX_TAG, cut},
};
use crate::{credentials::media::MediaPlan, flow::Transport};

/// What a call's branches need to anchor its media: the site's plan and the caller.
pub(crate) struct CallMedia {
    pub plan: Arc<MediaPlan>,
    pub caller: Party,
    pub call_id: String,
    pub from_tag: String,
    /// The INVITE has no SDP: the callee's 2xx will offer (`late_offer`).
    pub late: bool,
}

/// One branch's anchored media: where, and who is on each side.
#[derive(Clone, Debug)]
pub(crate) struct MediaLeg {
    pub server: SocketAddr,
    pub call_id: String,
    pub from_tag: String,
    /// The branch of a forked call's offer (none: a re-INVITE's).
    pub via_branch: Option<String>,
    pub caller: Party,
    pub callee: Party,
    /// The callee is reached over its own flow (its address is where it sends from);
    /// not through another edge.
    pub callee_direct: bool,
    /// The request has no SDP: the callee's 2xx offers and the caller's ACK answers.
    pub late: bool,
}

impl MediaLeg {
    /// The callee as its SDP (`summary`, of an answer or of a late offer) shows it: what it
    /// speaks (WebRTC, SDES-SRTP or plain RTP), and behind a NAT only as its own flow
    /// shows it (through another edge, the source here is that edge's).
    pub fn callee_as_seen(&self, summary: &Summary) -> Party {
        let mut callee = self.callee.clone();
        callee.behind_nat = self.callee_direct && summary.behind_nat(callee.source);
        callee.side = summary.side();
        callee
    }

    /// What the record of calls keeps of it.
    pub fn anchored(&self) -> crate::delivery::calls::Anchored {
        crate::delivery::calls::Anchored {
            server: self.server,
            caller: self.caller.side,
            callee: self.callee.side,
            caller_tag: cut(&self.from_tag, MAX_TAG),
        }
    }
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

/// A carrier reached through a trunk target at `addr`: plain RTP, its SDP taken as meant;
/// `fixed_address` when the trunk wants its media anchored.
pub(crate) fn carrier(addr: SocketAddr, fixed_address: bool) -> Party {
    Party {
        side: Side::Rtp,
        source: addr.ip(),
        behind_nat: false,
        fixed_address,
    }
}

/// What a party reached over `transport` at `addr` speaks: `side`, what its profile says
/// (a WebRTC phone, an SDES-SRTP one), or WebRTC over a WebSocket flow. For a phone
/// reached through another edge, `transport` and `addr` are that edge's: only the profile
/// tells.
pub(crate) fn party(side: Side, transport: Transport, addr: SocketAddr) -> Party {
    let ws = matches!(transport, Transport::Ws | Transport::Wss);
    Party {
        side: if ws { Side::WebRtc } else { side },
        source: addr.ip(),
        behind_nat: false,
        fixed_address: false,
    }
}

/// What the edge knows of a caller before reading its SDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CallerKind {
    /// A trusted peer (a carrier), whose SDP is taken as meant (never behind a NAT).
    pub trusted: bool,
    /// What its settings say it speaks (plain RTP for a carrier).
    pub profile: Side,
    /// A carrier whose trunk wants one fixed media address (`anchor_media`).
    pub fixed_address: bool,
}

impl CallerKind {
    /// One of our phones, whose profile says it speaks `profile`.
    pub fn phone(profile: Side) -> Self {
        Self {
            trusted: false,
            profile,
            fixed_address: false,
        }
    }
}

impl Delivery {
    /// The media context of an INVITE `m` from `src`, a caller of `kind`, counted under
    /// `site`; none when the site is unknown or has no media server, or no `ng` client
    /// runs.
    pub(crate) fn call_media(
        &self,
        m: &Message,
        src: std::net::IpAddr,
        site: Option<&Arc<str>>,
        kind: CallerKind,
    ) -> Option<CallMedia> {
        let CallerKind {
            trusted,
            profile,
            fixed_address,
        } = kind;
        self.ng.as_ref()?;
        // A site without media servers in its regions anchors nothing (and costs a call
        // nothing more: no SDP is read).
        let plan = self.cache.read().media_plan(site?)?;
        // Without SDP (a late offer) the caller speaks what its settings say (`profile`:
        // plain RTP for a carrier); its NAT shows only in its ACK, too late to decide.
        let summary = sdp_of(m);
        let from_tag = m.addressing().ok()?.from.tag?.to_owned();
        Some(CallMedia {
            plan,
            caller: Party {
                side: summary.as_ref().map_or(profile, Summary::side),
                source: src,
                behind_nat: !trusted && summary.as_ref().is_some_and(|s| s.behind_nat(src)),
                fixed_address,
            },
            call_id: m.get("call-id")?.to_owned(),
            from_tag,
            late: summary.is_none(),
        })
    }

    /// `m` with its SDP offered at a media server for `callee`, when the call is
    /// anchored; none when it is not (or no media server took it: the call goes on with
    /// direct media, which may still work). Every server an offer went to is added to
    /// `offered_at`.
    pub(crate) async fn media_offer(
        &self,
        m: &Message,
        call: &CallMedia,
        callee: Party,
        via_branch: String,
        callee_direct: bool,
        offered_at: &parking_lot::Mutex<Vec<SocketAddr>>,
    ) -> Option<(Message, MediaLeg)> {
        let why = anchor::decide(call.plan.site.anchoring, &call.caller, &callee)?;
        self.ng.as_ref()?;
        let servers = select::candidates(
            &call.call_id,
            &self.media_regions(&call.plan),
            &call.plan.servers,
            |s| self.media_health.is_up(&s.id),
        );
        if servers.is_empty() {
            warn!(call_id = %call.call_id, ?why, "no media server up in the site's regions: media not anchored");
            return None;
        }
        let leg = |server: SocketAddr| MediaLeg {
            server,
            call_id: call.call_id.clone(),
            from_tag: call.from_tag.clone(),
            via_branch: Some(via_branch.clone()),
            caller: call.caller.clone(),
            callee: callee.clone(),
            callee_direct,
            late: call.late,
        };
        if call.late {
            // Nothing to offer yet: the call is anchored at the first server up, which
            // gets the callee's offer from its 2xx.
            let server = servers.first()?;
            offered_at.lock().push(server.ng);
            self.media_health.anchored(&server.id);
            return Some((m.clone(), leg(server.ng)));
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
            // Whatever the outcome, the server may hold a session now (a reply lost on
            // its way back): it is deleted with the call's others.
            offered_at.lock().push(ng_addr);
            match self.ng_sdp(ng_addr, "offer", command).await {
                Ok(sdp) => {
                    debug!(call_id = %call.call_id, media_server = %server.id, ?why, "media anchored");
                    self.media_health.anchored(&server.id);
                    let mut offered = m.clone();
                    offered.body = sdp;
                    return Some((offered, leg(ng_addr)));
                }
                Err(e) => {
                    warn!(media_server = %server.id, error = %e, "offer failed; trying the next media server")
                }
            }
        }
        None
    }

    /// A re-INVITE or UPDATE `m` of a call anchored as `at` says, offered at its media
    /// server so the call's media stays there (hold, resume, a new codec); a re-INVITE
    /// without SDP goes on as it came, its 2xx's offer and its ACK's answer to come
    /// (`late_offer`). None when the call is not anchored here or the media server
    /// refused (the request then goes on as it came).
    pub(crate) async fn media_reoffer(
        &self,
        m: &Message,
        at: &crate::delivery::calls::Anchored,
    ) -> Option<(Message, MediaLeg)> {
        let summary = sdp_of(m);
        let a = m.addressing().ok()?;
        let (from_tag, to_tag) = (a.from.tag?.to_owned(), a.to.tag?.to_owned());
        let from_caller = cut(&from_tag, MAX_TAG) == at.caller_tag;
        let (sender, receiver) = if from_caller {
            (at.caller, at.callee)
        } else {
            (at.callee, at.caller)
        };
        // The addresses rtpengine learned from the call's first packets stand: a request
        // within the dialog may have come through another edge, so its source says
        // nothing of the phone's.
        let party = |side: Side| Party {
            side,
            source: std::net::Ipv4Addr::UNSPECIFIED.into(),
            behind_nat: false,
            fixed_address: false,
        };
        let call_id = m.get("call-id")?.to_owned();
        let mut leg = MediaLeg {
            server: at.server,
            call_id,
            from_tag,
            via_branch: None,
            caller: party(sender),
            callee: party(receiver),
            callee_direct: false,
            late: summary.is_none(),
        };
        let Some(summary) = summary else {
            // A re-INVITE without SDP: the 2xx offers, the ACK answers (`late_offer`). An
            // UPDATE without SDP (a session refresh) changes no media.
            let invite = matches!(&m.start, dialtone_sip::StartLine::Request { method, .. } if method == "INVITE");
            return invite.then(|| (m.clone(), leg));
        };
        // What its SDP shows it speaks (WebRTC, SDES-SRTP or plain RTP).
        leg.caller.side = summary.side();
        let flags = anchor::flags(&leg.caller, &leg.callee);
        let dialog = Dialog {
            call_id: &leg.call_id,
            from_tag: &leg.from_tag,
            to_tag: Some(&to_tag),
            via_branch: None,
        };
        let command = ng::offer(&dialog, &m.body, &flags);
        match self.ng_sdp(leg.server, "offer", command).await {
            Ok(sdp) => {
                let mut out = m.clone();
                out.body = sdp;
                Some((out, leg))
            }
            Err(e) => {
                warn!(call_id = %leg.call_id, error = %e, "re-offer failed; the request goes on as it came");
                None
            }
        }
    }

    /// The callee's answer `resp` (18x or 2xx with SDP, read as `summary`) rewritten by
    /// the media server of `leg` for the caller; none when the media server refused (the
    /// answer then goes on as it came).
    pub(crate) async fn media_answer(
        &self,
        leg: &MediaLeg,
        resp: &Message,
        summary: &Summary,
    ) -> Option<Vec<u8>> {
        let to_tag = resp.addressing().ok()?.to.tag?.to_owned();
        let flags = anchor::flags(&leg.callee_as_seen(summary), &leg.caller);
        let dialog = Dialog {
            call_id: &leg.call_id,
            from_tag: &leg.from_tag,
            to_tag: Some(&to_tag),
            via_branch: leg.via_branch.as_deref(),
        };
        let command = ng::answer(&dialog, &resp.body, &flags);
        self.ng_sdp(leg.server, "answer", command)
            .await
            .inspect_err(|e| warn!(call_id = %leg.call_id, error = %e, "answer failed; the callee's SDP goes on as it came"))
            .ok()
    }

    /// `message` (an `offer` or `answer`, `command`) sent to the media server at `server`
    /// from the main runtime, where the client's socket lives: the SDP of its reply.
    pub(super) async fn ng_sdp(
        &self,
        server: SocketAddr,
        command: &'static str,
        message: dialtone_media::bencode::Value,
    ) -> Result<Vec<u8>, MediaError> {
        let client = self.ng.clone().ok_or(MediaError::NoClient)?;
        let reply = self
            .runtime
            .spawn(async move { client.call(server, command, &message).await })
            .await
            .map_err(|e| MediaError::Io(std::io::Error::other(e)))??;
        reply.ok_or(MediaError::Refused {
            command,
            reason: "a reply without SDP".to_owned(),
        })
    }

    /// Ends the sessions call `call_id` left at the media servers it was offered to
    /// (`offered_at`, repeats allowed) but does not use: all of them when `kept` is none
    /// (the call failed), else all but `kept`'s.
    pub(crate) fn media_leftovers(
        &self,
        offered_at: &[SocketAddr],
        kept: Option<SocketAddr>,
        call_id: &str,
    ) {
        let mut servers = offered_at.to_vec();
        servers.sort();
        servers.dedup();
        for server in servers.into_iter().filter(|s| Some(*s) != kept) {
            self.media_delete(server, call_id);
        }
    }

    /// The regions of `plan`'s site in the order its calls use them: as listed, or lowest
    /// latency first as this edge's pings measure it.
    fn media_regions(&self, plan: &MediaPlan) -> Vec<String> {
        let site = &plan.site;
        if !site.lowest_latency {
            return site.regions.clone();
        }
        select::by_latency(&site.regions, |region| {
            let here = plan.servers.iter().filter(|s| s.region == region);
            self.media_health.lowest_rtt(here.map(|s| s.id.as_str()))
        })
    }

    /// Records how call `call_id`'s INVITE ended (`code`) and who is in it; when its BYE
    /// came first (a losing branch held the delivery open), the call is over, and so is
    /// its media session.
    pub(crate) fn call_ended(&self, call_id: &str, code: u16, parties: super::calls::Parties) {
        let server = parties.media.as_ref().map(|a| a.server);
        let up = self.calls.invite_ended(
            call_id,
            code,
            dialtone_common::clock::unix_ms(),
            Some(parties),
        );
        if let (false, Some(server)) = (up, server) {
            self.media_delete(server, call_id);
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
