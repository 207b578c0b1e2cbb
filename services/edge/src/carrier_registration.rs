//! Registration of trunks at their carriers (RFC 3261 §10, the client side): every edge
//! registers its own UDP listener as a contact of each trunk that asks for it, answers the
//! registrar's digest challenge with the trunk's credentials, refreshes halfway through
//! what the registrar grants, follows a 423's Min-Expires, and backs off after failures.
//! Each edge registering alike lets the carrier reach the group through any edge that
//! lives. What the registrar says goes to the delivery's
//! [`TrunkHealth`](crate::delivery::trunk_health::TrunkHealth), which the keep-alive task
//! publishes with the targets' health (`trunk-health/{node}`).
//!
//! [`next_step`] (what an answer means) is pure; the task around it does the IO.

use std::{collections::HashMap, sync::Arc, time::Duration};

use dialtone_common::clock::unix_ms;
use dialtone_sip::{Message, StartLine, header};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{
    credentials::trunks::RegistrationPlan,
    dispatch::Dispatcher,
    flow::{FlowSource, Transport},
    replies::{OutRequest, new_branch},
};

/// How long a REGISTER waits for its final answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(8);
/// The first wait after a failure, doubled at each failure in a row up to [`MOST_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MOST_BACKOFF: Duration = Duration::from_secs(300);

/// What the registration does after a registrar's final answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Registered for `granted` seconds: refresh after `refresh`.
    Registered { granted: u32, refresh: Duration },
    /// Challenged: send again with credentials, at once.
    Authenticate,
    /// 423: send again at once, asking for `expires` seconds.
    AskLonger { expires: u32 },
    /// Refused or unanswered: try again after `retry`.
    Failed { retry: Duration },
}

/// What the registrar's final answer `code` means, for a REGISTER that asked for `asked`
/// seconds and was (`authenticated`) or was not answering a challenge, after `failures`
/// failures in a row. `granted` is what a 2xx grants this contact, `min_expires` a 423's
/// Min-Expires. Pure.
pub fn next_step(
    code: u16,
    asked: u32,
    granted: Option<u32>,
    min_expires: Option<u32>,
    authenticated: bool,
    failures: u32,
) -> Step {
    let backoff = backoff(failures);
    match code {
        200..=299 => {
            let granted = granted.unwrap_or(asked);
            if granted == 0 {
                // A registrar that keeps nothing: as good as a refusal.
                return Step::Failed { retry: backoff };
            }
            Step::Registered {
                granted,
                refresh: Duration::from_secs(u64::from(granted.div_ceil(2))),
            }
        }
        401 | 407 if !authenticated => Step::Authenticate,
        423 => match min_expires {
            Some(m) if m > asked && m <= 86_400 => Step::AskLonger { expires: m },
            _ => Step::Failed { retry: backoff },
        },
        _ => Step::Failed { retry: backoff },
    }
}

/// The wait before trying again after `failures` failures in a row. Pure.
fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.min(4))
        .min(MOST_BACKOFF)
}

/// The seconds a 2xx to a REGISTER grants the contact naming `host_port`: its Contact's
/// `expires`, else the Expires header (RFC 3261 §10.2.4). None when the answer says
/// neither.
pub fn granted_to(resp: &Message, host_port: &str) -> Option<u32> {
    let ours = resp
        .all("contact")
        .flat_map(header::split_list)
        .filter_map(|c| header::parse_name_addr(c).ok())
        .find(|c| {
            let port = c.uri.port.map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}{port}", c.uri.host) == host_port
        });
    let from_contact = ours
        .and_then(|c| c.params.get("expires").flatten().map(|e| e.to_string()))
        .and_then(|e| e.trim().parse().ok());
    from_contact.or_else(|| resp.get("expires")?.trim().parse().ok())
}

/// Starts the task that keeps every registering trunk registered from this edge. A trunk
/// that stops registering, or moves to another registrar or address-of-record, has this
/// edge's contact removed from the old one (`Expires: 0`, best effort), so the carrier stops
/// sending calls to it.
pub(crate) fn spawn(h: Arc<Dispatcher>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut running: HashMap<Arc<str>, (RegistrationPlan, Registering)> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let plans = h.cache.read().trunk_registrations();
            running.retain(|trunk, (plan, _)| {
                let now = plans.iter().find(|(t, _)| t == trunk).map(|(_, p)| p);
                if now == Some(plan) {
                    return true;
                }
                let same_binding = now.is_some_and(|p| {
                    (&p.registrar, &p.user, &p.domain)
                        == (&plan.registrar, &plan.user, &plan.domain)
                });
                if !same_binding {
                    tokio::spawn(unregister(h.clone(), trunk.clone(), plan.clone()));
                }
                false
            });
            h.delivery
                .trunk_health
                .retain_registrations(|t| plans.iter().any(|(tt, _)| tt == t));
            for (trunk, plan) in plans {
                if running.contains_key(&trunk) {
                    continue;
                }
                let task = tokio::spawn(keep_registered(h.clone(), trunk.clone(), plan.clone()));
                running.insert(trunk, (plan, Registering(task)));
            }
        }
    })
}

/// One trunk's registration task, stopped when dropped (its plan changed or went, or the
/// edge stops).
struct Registering(JoinHandle<()>);

impl Drop for Registering {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The REGISTERs of one edge for one address-of-record at one registrar: one Call-ID,
/// CSeq growing (RFC 3261 §10.2).
struct Session<'a> {
    plan: &'a RegistrationPlan,
    call_id: String,
    tag: String,
    aor: String,
    uri: String,
    cseq: u32,
}

impl<'a> Session<'a> {
    fn new(h: &Dispatcher, plan: &'a RegistrationPlan) -> Self {
        Session {
            plan,
            call_id: format!("{:016x}@{}", rand::random::<u64>(), h.settings.node_id),
            tag: format!("{:08x}", rand::random::<u32>()),
            aor: format!("<sip:{}@{}>", plan.user, plan.domain),
            uri: format!("sip:{}", plan.domain),
            cseq: 0,
        }
    }

    /// One REGISTER asking for `expires` seconds, with `answer` to a challenge: the final
    /// answer's status (408: none) and the answer, and the contact's `host:port`.
    async fn send(
        &mut self,
        h: &Dispatcher,
        expires: u32,
        answer: Option<(&'static str, String)>,
    ) -> (u16, Option<Message>, String) {
        let flow = FlowSource {
            transport: Transport::Udp,
            addr: self.plan.registrar,
        };
        let (Some(local), Some((_, replier))) = (h.local.of(Transport::Udp), h.flows.replier(flow))
        else {
            return (408, None, String::new());
        };
        self.cseq += 1;
        let branch = new_branch();
        let via = local.via();
        let from = format!("{};tag={}", self.aor, self.tag);
        let mut extra = vec![
            ("Contact", local.contact(Some(&self.plan.user))),
            ("Expires", expires.to_string()),
        ];
        extra.extend(answer);
        let req = OutRequest {
            method: "REGISTER",
            uri: &self.uri,
            via: &via,
            branch: &branch,
            from: &from,
            to: &self.aor,
            call_id: &self.call_id,
            cseq: self.cseq,
            extra,
            body: b"",
        };
        let resp = h
            .uac
            .exchange(
                req.to_bytes(),
                branch,
                Transport::Udp,
                replier,
                ANSWER_WITHIN,
            )
            .await;
        let code = match &resp {
            Some(Message {
                start: StartLine::Response { code, .. },
                ..
            }) => *code,
            _ => 408,
        };
        (code, resp, local.host_port())
    }

    /// The answer to `resp`'s challenge with the trunk's credentials, if it has some.
    fn answer(&self, resp: Option<&Message>) -> Option<(&'static str, String)> {
        self.plan
            .auth
            .as_ref()?
            .answer(resp?, "REGISTER", &self.uri)
    }
}

/// Registers `trunk` as `plan` says, for as long as the task runs.
async fn keep_registered(h: Arc<Dispatcher>, trunk: Arc<str>, plan: RegistrationPlan) {
    let mut session = Session::new(&h, &plan);
    let mut asked = plan.expires_s;
    let mut failures = 0u32;
    let mut answer: Option<(&'static str, String)> = None;
    // Until when the registrar holds this edge's contact (a failed refresh leaves it held
    // until then).
    let mut held_until_ms = 0i64;
    loop {
        let authenticated = answer.is_some();
        let (code, resp, contact) = session.send(&h, asked, answer.take()).await;
        let granted = resp.as_ref().and_then(|r| granted_to(r, &contact));
        let min_expires = resp
            .as_ref()
            .and_then(|r| r.get("min-expires")?.trim().parse().ok());
        let now_ms = unix_ms() as i64;
        let step = next_step(code, asked, granted, min_expires, authenticated, failures);
        let still_held = if held_until_ms > now_ms {
            held_until_ms
        } else {
            0
        };
        let wait = match step {
            Step::Registered { granted, refresh } => {
                if failures > 0 || held_until_ms == 0 {
                    info!(trunk = %trunk, registrar = %plan.registrar, granted, "registered at the carrier");
                }
                failures = 0;
                held_until_ms = now_ms + i64::from(granted) * 1000;
                h.delivery
                    .trunk_health
                    .registered(&trunk, code, held_until_ms, now_ms);
                refresh
            }
            Step::Authenticate => {
                answer = session.answer(resp.as_ref());
                if answer.is_some() {
                    continue;
                }
                warn!(trunk = %trunk, code, "the carrier's registrar challenges, and the trunk has no credentials for it");
                h.delivery
                    .trunk_health
                    .registered(&trunk, code, still_held, now_ms);
                failures += 1;
                backoff(failures - 1)
            }
            Step::AskLonger { expires } => {
                asked = expires;
                continue;
            }
            Step::Failed { retry } => {
                warn!(trunk = %trunk, registrar = %plan.registrar, code, "registration at the carrier failed; retrying");
                failures += 1;
                h.delivery
                    .trunk_health
                    .registered(&trunk, code, still_held, now_ms);
                retry
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Removes this edge's contact of `plan` from its registrar (`Expires: 0`, answering one
/// challenge), best effort.
async fn unregister(h: Arc<Dispatcher>, trunk: Arc<str>, plan: RegistrationPlan) {
    let mut session = Session::new(&h, &plan);
    let (mut code, resp, _) = session.send(&h, 0, None).await;
    if matches!(code, 401 | 407)
        && let Some(answer) = session.answer(resp.as_ref())
    {
        code = session.send(&h, 0, Some(answer)).await.0;
    }
    info!(trunk = %trunk, registrar = %plan.registrar, code, "unregistered from the carrier");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registrars_answer_decides_the_next_register() {
        let s = Duration::from_secs;
        // (code, asked, granted, min-expires, authenticated, failures, step)
        let cases = [
            (
                200,
                3600,
                Some(600),
                None,
                true,
                0,
                Step::Registered {
                    granted: 600,
                    refresh: s(300),
                },
            ),
            (
                200,
                3600,
                None,
                None,
                false,
                2,
                Step::Registered {
                    granted: 3600,
                    refresh: s(1800),
                },
            ),
            (
                200,
                3600,
                Some(0),
                None,
                true,
                0,
                Step::Failed { retry: s(30) },
            ),
            (401, 3600, None, None, false, 0, Step::Authenticate),
            (407, 3600, None, None, false, 0, Step::Authenticate),
            // Challenged again after answering: the credentials are wrong.
            (
                401,
                3600,
                None,
                None,
                true,
                0,
                Step::Failed { retry: s(30) },
            ),
            (
                423,
                60,
                None,
                Some(300),
                false,
                0,
                Step::AskLonger { expires: 300 },
            ),
            (
                423,
                300,
                None,
                Some(300),
                false,
                0,
                Step::Failed { retry: s(30) },
            ),
            (
                423,
                300,
                None,
                Some(100_000),
                false,
                0,
                Step::Failed { retry: s(30) },
            ),
            (
                403,
                3600,
                None,
                None,
                true,
                1,
                Step::Failed { retry: s(60) },
            ),
            (
                408,
                3600,
                None,
                None,
                false,
                3,
                Step::Failed { retry: s(240) },
            ),
            (
                503,
                3600,
                None,
                None,
                false,
                9,
                Step::Failed { retry: s(300) },
            ),
        ];
        for (code, asked, granted, min, auth, failures, want) in cases {
            let got = next_step(code, asked, granted, min, auth, failures);
            assert_eq!(got, want, "{code} asked {asked} granted {granted:?}");
        }
    }

    #[test]
    fn the_grant_is_read_from_our_contact_then_expires() {
        let ok = |headers: &str| {
            let text = format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@c>;tag=1\r\nTo: <sip:a@c>;tag=2\r\nCall-ID: x\r\nCSeq: 2 REGISTER\r\n{headers}Content-Length: 0\r\n\r\n"
            );
            dialtone_sip::parse(text.as_bytes()).unwrap()
        };
        let cases = [
            (
                "Contact: <sip:a@10.0.0.9:5060>;expires=90, <sip:a@127.0.0.1:5060;transport=udp>;expires=120\r\nExpires: 30\r\n",
                Some(120),
            ),
            (
                "Contact: <sip:a@10.0.0.9:5060>;expires=90\r\nExpires: 30\r\n",
                Some(30),
            ),
            ("Expires: 45\r\n", Some(45)),
            ("", None),
        ];
        for (headers, want) in cases {
            assert_eq!(
                granted_to(&ok(headers), "127.0.0.1:5060"),
                want,
                "{headers}"
            );
        }
    }
}
