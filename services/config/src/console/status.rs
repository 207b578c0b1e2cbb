//! Live status: the Status page (phones per site and status), and the Server-Sent Event
//! streams that keep the Phones list, a phone's page and the Status page current without
//! a reload. A phone stream reads its phones' status from the store, through the same
//! reducer as the status role, the moment the node's shared watch of bindings
//! ([`super::live`]) says one of them changed, and every [`PHONES_POLL`] besides; it
//! sends what changed. The counts stream reads every second. A stream ends with its
//! session, and at most [`super::MAX_STREAMS`] run on a node.

use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    time::{Duration, Instant},
};

use axum::{
    extract::{RawQuery, State},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use dialtone_proto::config::v1::PhoneFilter;
use futures::Stream;
use maud::{Markup, html};
use serde::Serialize;

use super::{Console, Ctx, Problem, layout};
use crate::phone_status::{PhoneStatusView, StatusLookups};

/// Phones one stream follows.
pub const MAX_FOLLOWED: usize = 100;
/// Phones the Status page counts; a larger fleet is counted by the status role
/// (`dialtonectl status summary`).
pub const MAX_COUNTED: usize = 5_000;
/// How long a stream runs before the browser reconnects (and its session is checked).
const STREAM_LIFE: Duration = Duration::from_secs(600);
/// How long counts are reused by every Status page of the node.
const COUNTS_FRESH: Duration = Duration::from_secs(2);
/// How often a phone stream reads its phones when no change woke it: the safety net for
/// changes the bindings watch does not carry (a phone's placement edited, a lagging or
/// broken watch).
pub const PHONES_POLL: Duration = Duration::from_secs(5);

/// When a stream reads again: every `every`, and, for a stream of phones, when one of
/// `phones` changes.
struct Pace {
    every: Duration,
    phones: Option<std::collections::HashSet<String>>,
}

/// One phone's status as the pages show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shown {
    /// The phone's id.
    pub id: String,
    /// OPERATIONAL, DEGRADED, OFFLINE or NOT_APPLICABLE.
    pub status: String,
    /// Its primary edge.
    pub primary: String,
    /// Its secondary edge, and that edge's share.
    pub secondary: String,
    /// See `secondary`.
    pub secondary_status: String,
}

/// Phone `p`'s status `view` as the pages show it.
fn shown(p: &dialtone_proto::config::v1::Phone, view: &PhoneStatusView, realm: &str) -> Shown {
    let (primary, secondary) = crate::rest::status::status_out(p, view, realm);
    let edge = |s: &crate::rest::status::PhoneStatus| {
        s.edge.as_ref().map(|e| e.id.clone()).unwrap_or_default()
    };
    Shown {
        id: p.id.clone(),
        status: primary.operational_status.clone(),
        primary: edge(&primary),
        secondary: secondary.as_ref().map(edge).unwrap_or_default(),
        secondary_status: secondary.map(|s| s.operational_status).unwrap_or_default(),
    }
}

/// The ids a stream asks for (`ids=a,b,c`), at most [`MAX_FOLLOWED`].
pub fn ids_of(query: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "ids")
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty() && s.len() <= 64)
        // Each phone once: a stream is charged for the phones it reads.
        .filter(|s| seen.insert(s.clone()))
        .take(MAX_FOLLOWED)
        .collect()
}

fn stream_of<S, F>(
    c: Console,
    ctx: Ctx,
    pace: Pace,
    mut tick: F,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem>
where
    F: FnMut(Console, Option<Vec<String>>) -> S + Send + 'static,
    S: std::future::Future<Output = Vec<Event>> + Send,
{
    let mine = SessionStream::open(&c, &ctx.sid).ok_or_else(|| {
        Problem::new(
            429,
            "this session has too many live views open: close a tab",
        )
    })?;
    let turn = c
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| Problem::new(503, "too many live views are open on this node"))?;
    let stream = async_stream(move |tx: tokio::sync::mpsc::Sender<Event>| async move {
        let _turn = (turn, mine);
        let started = Instant::now();
        let mut every = tokio::time::interval(pace.every);
        let mut changes = pace.phones.as_ref().map(|_| c.changes.subscribe());
        let phones = pace.phones.unwrap_or_default();
        let mut budget = super::live::ReadBudget::new(Instant::now());
        while started.elapsed() < STREAM_LIFE {
            // A closed tab ends the stream at once, not at its next event.
            let only = tokio::select! {
                _ = every.tick() => None,
                some = super::live::next_relevant(&mut changes, &phones) => some,
                _ = tx.closed() => return,
            };
            let alive = c.sessions.lock().alive(&ctx.sid, Instant::now());
            if !alive
                || !c.api.tokens().allows(
                    ctx.bearer().trim_start_matches("Bearer "),
                    dialtone_auth::Permission::View,
                )
            {
                return;
            }
            // Phones that flap are read at a bounded rate; what changed meanwhile is in
            // the read that follows.
            let wait = budget.take(
                only.as_ref().map_or(phones.len().max(1), Vec::len),
                Instant::now(),
            );
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            for e in tick(c.clone(), only).await {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The answer to a stream over its limits: an event stream that only tells the browser to
/// try again in 30 s (an EventSource given any other status gives up for good).
fn busy(p: &Problem) -> Response {
    let body = format!("retry: 30000\n: {}\n\n", p.message.replace('\n', " "));
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        body,
    )
        .into_response()
}

/// Live streams one session may have open (a few tabs); one session cannot take the
/// node's [`super::MAX_STREAMS`] alone.
pub const MAX_STREAMS_PER_SESSION: usize = 4;

/// One of a session's open streams, counted until dropped.
struct SessionStream {
    counts: std::sync::Arc<parking_lot::Mutex<HashMap<String, usize>>>,
    sid: String,
}

impl SessionStream {
    fn open(c: &Console, sid: &str) -> Option<Self> {
        let mut counts = c.stream_counts.lock();
        let key = super::session::key_hex(sid);
        let n = counts.entry(key.clone()).or_default();
        if *n >= MAX_STREAMS_PER_SESSION {
            return None;
        }
        *n += 1;
        Some(SessionStream {
            counts: c.stream_counts.clone(),
            sid: key,
        })
    }
}

impl Drop for SessionStream {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&self.sid) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.sid);
            }
        }
    }
}

/// A stream fed by a task through a small channel (the task stops when the client goes).
fn async_stream<F, Fut>(task: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(task(tx));
    futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok)
}

/// `GET /events/phones?ids=...`: `status` events, one per phone whose status changed
/// (every phone at first).
pub async fn phone_events(State(c): State<Console>, ctx: Ctx, RawQuery(q): RawQuery) -> Response {
    let ids = ids_of(q.as_deref().unwrap_or(""));
    // What was last sent of each phone, kept between ticks.
    let sent = std::sync::Arc::new(tokio::sync::Mutex::new(HashMap::<String, Shown>::new()));
    let gone = std::sync::Arc::new(tokio::sync::Mutex::new(
        std::collections::HashSet::<String>::new(),
    ));
    let pace = Pace {
        every: PHONES_POLL,
        phones: Some(ids.iter().cloned().collect()),
    };
    let r = stream_of(c, ctx, pace, move |c, only| {
        // A change names the phones to read; a poll reads them all.
        let ids = only.unwrap_or_else(|| ids.clone());
        let (sent, gone) = (sent.clone(), gone.clone());
        async move {
            let mut sent = sent.lock().await;
            let core = c.api.core();
            let mut phones = Vec::with_capacity(ids.len());
            for id in &ids {
                // A phone that is not there is not asked for again by this stream.
                if gone.lock().await.contains(id) {
                    continue;
                }
                match core.get_phone(id).await {
                    Ok(p) => phones.push(p),
                    Err(crate::ConfigError::NotFound { .. }) => {
                        gone.lock().await.insert(id.clone());
                    }
                    // The store is unreachable: the next tick tries again.
                    Err(_) => {}
                }
            }
            // Their bindings in one read; the store unreachable: the next tick tries again.
            let Ok(views) = core
                .phone_statuses(&phones, &mut StatusLookups::default())
                .await
            else {
                return Vec::new();
            };
            let mut events = Vec::new();
            for (p, view) in phones.iter().zip(&views) {
                let s = shown(p, view, core.realm());
                if sent.get(&p.id) != Some(&s) {
                    if let Ok(e) = Event::default().event("status").json_data(&s) {
                        events.push(e);
                    }
                    sent.insert(p.id.clone(), s);
                }
            }
            events
        }
    });
    match r {
        Ok(sse) => sse.into_response(),
        Err(p) => busy(&p),
    }
}

/// Phones per site and status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Site name → status → phones.
    pub sites: BTreeMap<String, BTreeMap<String, u64>>,
    /// Phones counted.
    pub counted: u64,
    /// Whether the fleet is larger than [`MAX_COUNTED`] (then nothing is counted).
    pub too_many: bool,
}

/// The last counts, shared by the node's Status pages.
#[derive(Default)]
pub struct CountsCache {
    at: Option<Instant>,
    counts: Counts,
}

/// The statuses the Status page has columns for.
pub const STATUSES: [&str; 4] = ["OPERATIONAL", "DEGRADED", "OFFLINE", "NOT_APPLICABLE"];

async fn counts(c: &Console) -> Result<Counts, Problem> {
    let mut cache = c.counts.lock().await;
    if let Some(at) = cache.at
        && at.elapsed() < COUNTS_FRESH
    {
        return Ok(cache.counts.clone());
    }
    let core = c.api.core().clone();
    // Read no further than what can be counted.
    let mut phones = Vec::new();
    let mut token = String::new();
    loop {
        // Never more than one past what can be counted.
        let want = (MAX_COUNTED + 1 - phones.len()).min(1000) as i32;
        let (page, next) = core
            .list_phones(PhoneFilter::default(), want, &token)
            .await?;
        phones.extend(page);
        if next.is_empty() || phones.len() > MAX_COUNTED {
            break;
        }
        token = next;
    }
    let mut out = Counts::default();
    if phones.len() > MAX_COUNTED {
        out.too_many = true;
    } else {
        let mut names: HashMap<String, String> = HashMap::new();
        // Every phone's bindings in a few reads, not one each.
        let views = core
            .phone_statuses(&phones, &mut StatusLookups::default())
            .await?;
        for (p, view) in phones.iter().zip(&views) {
            if !names.contains_key(&p.site_id) {
                let name = core
                    .get_site(&p.site_id)
                    .await
                    .map(|s| s.name)
                    .unwrap_or_else(|_| p.site_id.clone());
                names.insert(p.site_id.clone(), name);
            }
            let (primary, _) = crate::rest::status::status_out(p, view, core.realm());
            *out.sites
                .entry(names[&p.site_id].clone())
                .or_default()
                .entry(primary.operational_status)
                .or_default() += 1;
            out.counted += 1;
        }
    }
    cache.at = Some(Instant::now());
    cache.counts = out.clone();
    Ok(out)
}

fn counts_table(counts: &Counts) -> Markup {
    html! {
        @if counts.too_many {
            p class="error" { "The fleet has more than " (MAX_COUNTED) " phones: count them with " code { "dialtonectl status summary" } "." }
        } @else {
            table id="counts" data-live-counts="" {
                caption { (counts.counted) " phones" }
                thead { tr { th scope="col" { "Site" } @for s in STATUSES { th scope="col" { (layout::badge(s)) } } } }
                tbody {
                    @for (site, by) in &counts.sites {
                        tr {
                            th scope="row" { (site) }
                            @for s in STATUSES {
                                td data-count={ (site) "|" (s) } { (by.get(s).copied().unwrap_or(0)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /status`.
pub async fn page(State(c): State<Console>, ctx: Ctx) -> Result<Markup, Problem> {
    let counts = counts(&c).await?;
    Ok(layout::page(
        Some(&ctx),
        "Status",
        "/status",
        html! {
            p class="help" { "Phones per site and status, as the status role reduces them; the table follows changes while the page is open." }
            (counts_table(&counts))
        },
    ))
}

/// `GET /events/counts`: a `counts` event whenever the counts change.
pub async fn count_events(State(c): State<Console>, ctx: Ctx) -> Response {
    let sent = std::sync::Arc::new(tokio::sync::Mutex::new(None::<Counts>));
    let pace = Pace {
        every: Duration::from_secs(1),
        phones: None,
    };
    let r = stream_of(c, ctx, pace, move |c, _| {
        let sent = sent.clone();
        async move {
            let Ok(now) = counts(&c).await else {
                return Vec::new();
            };
            let mut sent = sent.lock().await;
            if sent.as_ref() == Some(&now) {
                return Vec::new();
            }
            let e = Event::default().event("counts").json_data(&now).ok();
            *sent = Some(now);
            e.into_iter().collect()
        }
    });
    match r {
        Ok(sse) => sse.into_response(),
        Err(p) => busy(&p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_follow_a_bounded_list_of_ids() {
        assert_eq!(ids_of("ids=a,b&ids=c"), ["a", "b", "c"]);
        assert_eq!(ids_of("ids=a,a,b,a"), ["a", "b"]);
        assert_eq!(ids_of("ids=&x=1"), Vec::<String>::new());
        let many = format!(
            "ids={}",
            (0..500)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(ids_of(&many).len(), MAX_FOLLOWED);
        assert!(ids_of(&format!("ids={}", "a".repeat(65))).is_empty());
    }
}
