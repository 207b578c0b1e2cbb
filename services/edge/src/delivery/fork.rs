//! A request for a phone forked: one branch per line it rings, each to the best live
//! binding of the line (this edge's own flow, else the edge holding it), its answers
//! relayed upstream as [`super::responses`] decides.

use std::{net::SocketAddr, sync::Arc, sync::atomic::Ordering::Relaxed, time::Instant};

use dialtone_domain::keys;
use dialtone_proto::{config::v1::Member, edge::v1::Binding};
use dialtone_sip::{Message, StartLine, response::Source};
use dialtone_store::Store;
use parking_lot::Mutex;
use prost::Message as _;
use tracing::debug;

use super::{
    Branch, Delivery, FORWARDED_CANONICAL, HOP_TIMEOUT, Hop, Origin, Outcome, Target, calls, media,
    responses::Responses, retargeted, targets,
};
use crate::{
    admission::Permit,
    credentials::LineEntry,
    flow::{Answer, FlowSource, Replier, Transport},
};

impl Delivery {
    /// Delivers `m` (for `lines`: one, or each phone of a user, all at once; come over
    /// `inbound`, from one of our lines when `from_line`) and relays the answers along
    /// `upstream`; `permit` (from [`Delivery::admission`]) is held until the final answer
    /// has gone. An INVITE is record-routed (see [`super::in_dialog`]). What a line asserts about
    /// its own identity (P-Asserted-Identity, P-Preferred-Identity, Remote-Party-ID) never
    /// reaches the callee: only a trusted peer or another edge may assert one (RFC 3325
    /// §5: the edge's trust domain ends at the phone).
    pub(crate) async fn deliver(
        self: Arc<Self>,
        m: Message,
        src: Source,
        origin: Origin,
        upstream: Answer,
        lines: Vec<Arc<LineEntry>>,
        permit: Permit,
    ) {
        let Origin {
            inbound,
            site,
            caller,
        } = origin;
        let from_line = matches!(caller, calls::Party::Phone(_));
        let Some((key, txn)) = self.open(&m, src, &upstream) else {
            return;
        };
        let invite = matches!(&m.start, StartLine::Request { method, .. } if method == "INVITE");
        // 100 at once to an INVITE, and to anything another edge handed over: it tells that
        // edge this one is alive, so it does not try the next binding.
        let from_edge = m.get(FORWARDED_CANONICAL).is_some();
        if invite || from_edge {
            upstream.send(self.replies.responder.reply(&m, &src, 100, "", vec![]));
        }
        let responses = Responses::new(&m, src, &txn, &upstream, &self.replies.responder);
        let to_lines: Vec<Option<Message>> =
            lines.iter().map(|l| retargeted(&m, &l.sip_user)).collect();
        // The edge the call entered through anchors its media, if it needs it (one
        // another edge handed over was anchored there).
        let call_media = (invite && !from_edge)
            .then(|| {
                let kind = match &caller {
                    calls::Party::Phone(id) => {
                        media::CallerKind::phone(self.cache.read().media_side(id))
                    }
                    // A carrier's call in is anchored like a call out through its trunk.
                    calls::Party::Peer(peer) => media::CallerKind {
                        trusted: true,
                        profile: dialtone_media::anchor::Side::Rtp,
                        fixed_address: self.cache.read().peer_anchors_media(peer),
                    },
                    _ => media::CallerKind::phone(dialtone_media::anchor::Side::Rtp),
                };
                self.call_media(&m, src.ip, site.as_ref(), kind)
            })
            .flatten();
        let anchored_at = Mutex::new(Vec::new());
        let (this, responses_ref) = (&*self, &responses);
        let branches = lines.iter().zip(&to_lines).map(|(line, to_line)| {
            let branch = Branch {
                m: to_line.as_ref().unwrap_or(&m),
                line,
                inbound,
                from_edge,
                from_line,
                invite,
                media: call_media.as_ref(),
                anchored_at: &anchored_at,
            };
            this.branch(branch, responses_ref)
        });
        futures::future::join_all(branches).await;
        let anchored_at = anchored_at.into_inner();
        let call_id = m.get("call-id").unwrap_or("");
        // A call that failed leaves no media session, deleted before its final answer
        // goes (a caller that tries again at once with the same Call-ID finds its new
        // session alone).
        let answered = (200..300).contains(&txn.final_code.load(Relaxed));
        if invite && !answered {
            self.media_leftovers(&anchored_at, None, call_id);
        }
        responses.finish();
        if invite {
            let code = txn.final_code.load(Relaxed);
            let won = responses.answered();
            // The branches anchored elsewhere than the answering one leave nothing.
            let won_at = won.media.as_ref().map(|a| a.server);
            if answered {
                self.media_leftovers(&anchored_at, won_at, call_id);
            }
            let parties = calls::Parties {
                caller,
                callee: won.phone.map_or(calls::Party::Unknown, calls::Party::Phone),
                site,
                dialled: m.request_user().unwrap_or_default().to_owned(),
                media: won.media,
                to_tag: won.to_tag,
            };
            self.call_ended(call_id, code, parties);
        }
        self.linger(key, permit).await;
    }

    /// One branch: the line's bindings tried best first until one answers.
    async fn branch(&self, b: Branch<'_>, responses: &Responses<'_>) {
        let Branch {
            m,
            line,
            inbound,
            from_edge,
            from_line,
            invite,
            media: call_media,
            anchored_at,
        } = b;
        let targets = self.targets(from_edge, line).await;
        let last = targets.len().saturating_sub(1);
        for (i, target) in targets.into_iter().enumerate() {
            // Another edge that does not answer at all (it may have just died, its bindings
            // not yet expired) is passed over quickly for the next binding.
            let (uri, outbound, transport, replier, to_edge, wait) = match target {
                Target::Local {
                    uri,
                    source,
                    transport,
                    replier,
                } => (
                    Some(uri),
                    source,
                    transport,
                    replier,
                    None,
                    self.settings.notify_timeout,
                ),
                Target::Edge { node, addr } => {
                    debug!(edge = %node, "handing a request to the edge holding the binding");
                    let flow = FlowSource {
                        transport: Transport::Udp,
                        addr,
                    };
                    let Some((_, Replier::Udp { socket, .. })) = self.flows.replier(flow) else {
                        continue;
                    };
                    let wait = if i < last {
                        HOP_TIMEOUT
                    } else {
                        self.settings.notify_timeout
                    };
                    (
                        None,
                        flow,
                        Transport::Udp,
                        Replier::Udp {
                            socket,
                            to: addr,
                            dscp: 0,
                        },
                        Some(node),
                        wait,
                    )
                }
            };
            let to_phone = to_edge.is_none();
            let outcome = if to_edge.is_some() {
                Outcome::ViaEdge
            } else {
                Outcome::Local
            };
            let record_route = if invite {
                self.record_route(m, inbound, outbound)
            } else {
                Vec::new()
            };
            // The offer for this target, when the call is anchored: its SDP rewritten for
            // what the callee speaks.
            let mut offered = None;
            if let Some(call) = call_media {
                let side = self.cache.read().media_side(&line.phone_id);
                let callee = media::party(side, transport, outbound.addr);
                let via_branch = format!("{}-{i}", line.sip_user);
                offered = self
                    .media_offer(m, call, callee, via_branch, to_phone, anchored_at)
                    .await;
            }
            let (m, leg) = match &offered {
                Some((o, leg)) => (o, Some(leg.clone())),
                None => (m, None),
            };
            // A phone that challenges the request is answered with its profile's Digest
            // Authentication credentials (`client.rs`); a call re-sent so is
            // record-routed again with its CSeq shift.
            let route_token = (invite && to_phone).then_some(dialtone_sip::route::FlowToken {
                inbound,
                outbound,
                cseq_shift: 0,
                outbound_server: false,
            });
            let hop = Hop {
                uri: uri.as_deref(),
                transport,
                replier,
                to_edge,
                wait,
                record_route,
                pop_routes: 0,
                ring: None,
                identity: None,
                auth: None,
                cseq_shift: 0,
                refer_back: 0,
                route_token,
                untrusted_identity: from_line,
                untrusted_answers: to_phone,
                phone: Some(line.phone_id.clone()),
                media: leg,
            };
            if self.proxy(m, hop, responses).await || i == last {
                self.count(outcome);
                return;
            }
        }
        self.count(Outcome::NoBinding);
        responses.generated(480, "No live registration");
    }

    /// The bindings a request for `line` may go to, best first: the primary edge's, the
    /// secondary's, then the freshest others (a request from another edge: local only).
    /// What is asked of the store, and the order, are [`targets`]'s.
    async fn targets(&self, from_edge: bool, line: &LineEntry) -> Vec<Target> {
        let local = self.directory.contacts(&line.phone_id);
        let local_target = || {
            let c = local.iter().find(|c| c.sip_user == line.sip_user)?;
            let (transport, replier) = self.flows.replier(c.source)?;
            Some(Target::Local {
                uri: c.uri.clone(),
                source: c.source,
                transport,
                replier: replier.marked(line.sip_dscp),
            })
        };
        let me = self.settings.node_id.as_str();
        let placement = self.cache.read().placement(&line.phone_id);
        let now = Instant::now();
        let facts = targets::Facts {
            from_edge,
            has_store: self.store.is_some(),
            primary_here: placement.first().is_some_and(|o| o == me),
            local: local_target().is_some(),
            store_quiet: self.hints.store_quiet(now),
        };
        let (Some(store), Some(wait)) = (&self.store, targets::lookup(facts).wait()) else {
            return local_target().into_iter().collect();
        };
        let prefix = keys::line_bindings(&line.phone_id, line.line_index);
        // Store reads run on the main runtime: this may be an actor thread, which must never
        // wait on the embedded store's lock while it syncs a write. Only one task, which
        // does every read, so that a bounded wait covers them all and cancels them all.
        let found = {
            let (store, prefix, me) = (store.clone(), prefix.clone(), me.to_owned());
            self.runtime
                .spawn(async move { other_bindings(&store, &prefix, &me).await })
        };
        let found = match wait {
            Some(d) => targets::bounded(found, d).await,
            None => found.await.ok(),
        };
        let others = match found {
            Some(Ok(others)) => others,
            _ => {
                self.hints.store_failed(Instant::now());
                Vec::new()
            }
        };
        let mut holders: Vec<(String, i64)> = others
            .iter()
            .map(|(node, at, _)| (node.clone(), *at))
            .collect();
        if local_target().is_some() {
            holders.push((me.to_owned(), i64::MAX));
        }
        let mut out = Vec::new();
        for node in targets::order(holders, &placement, |n| self.hints.is_silent(n, now)) {
            if node == me {
                out.extend(local_target());
            } else if let Some((_, _, Some(addr))) = others.iter().find(|(n, ..)| *n == node) {
                out.push(Target::Edge { node, addr: *addr });
            }
        }
        out
    }
}

/// The other edges holding a live binding under `prefix` (a line's): each with its
/// binding's last write and the address it takes SIP over UDP at (none when its member
/// record cannot be read).
async fn other_bindings(
    store: &Store,
    prefix: &str,
    me: &str,
) -> Result<Vec<(String, i64, Option<SocketAddr>)>, dialtone_store::StoreError> {
    let page = store.range(prefix, None, 64).await?;
    let mut out = Vec::new();
    for kv in page.kvs {
        let Some(node) = kv.key.strip_prefix(prefix) else {
            continue;
        };
        let Ok(b) = Binding::decode(kv.value.as_slice()) else {
            continue;
        };
        if !b.contacts.is_empty() && node != me {
            let addr = edge_udp_address(store, node).await;
            out.push((node.to_owned(), b.updated_at_ms, addr));
        }
    }
    Ok(out)
}

/// Where another edge takes SIP over UDP, from its member record.
async fn edge_udp_address(store: &Store, node: &str) -> Option<SocketAddr> {
    let kv = store.get(&keys::member("edge", node)).await.ok()??;
    let m = Member::decode(kv.value.as_slice()).ok()?;
    m.sip_addresses?.udp.parse().ok()
}
