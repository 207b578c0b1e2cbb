//! The etcd backend (etcd 3.4+ through etcd-client).

use etcd_client::{
    Client, CompactionOptions, Compare as EtcdCompare, CompareOp, DeleteOptions, EventType,
    GetOptions, LeaseKeepAliveStream, LeaseKeeper, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchStream as EtcdWatchStream,
};

use crate::{
    StoreError, prefix_end,
    types::{
        Compare, KeyValue, LeaseId, LeaseInfo, Op, RangePage, TxnResult, WatchBatch, WatchEvent,
    },
};

/// A connection to an etcd cluster, with every key under `root`. Calls go to one pinned
/// member; when it is unreachable the store moves to the next (as etcd's Go client does).
#[derive(Clone)]
pub struct EtcdStore {
    clients: std::sync::Arc<Vec<Client>>,
    pinned: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    root: String,
}

impl EtcdStore {
    /// Connects to the given endpoints (`http://host:port`). etcd-client connects lazily:
    /// this checks reachability with one read so a bad endpoint fails here, not later.
    pub async fn connect(endpoints: &[String], root: &str) -> Result<Self, StoreError> {
        Self::connect_with(endpoints, root, &EtcdSecurity::default()).await
    }

    /// Like [`EtcdStore::connect`], over TLS and/or as an etcd user.
    pub async fn connect_with(
        endpoints: &[String],
        root: &str,
        security: &EtcdSecurity,
    ) -> Result<Self, StoreError> {
        let mut options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(3))
            .with_timeout(std::time::Duration::from_secs(5))
            .with_keep_alive(
                std::time::Duration::from_secs(5),
                std::time::Duration::from_secs(3),
            )
            .with_keep_alive_while_idle(true);
        if let Some(tls) = security.tls_options() {
            options = options.with_tls(tls);
        }
        if let Some((user, password)) = &security.user {
            options = options.with_user(user.clone(), password.clone());
        }
        let mut clients = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            clients.push(Client::connect([e], Some(options.clone())).await?);
        }
        if clients.is_empty() {
            return Err(StoreError::NoEndpoints);
        }
        let store = EtcdStore {
            clients: clients.into(),
            pinned: Default::default(),
            root: root.to_owned(),
        };
        store.revision().await?;
        Ok(store)
    }

    fn client(&self) -> Client {
        let i = self.pinned.load(std::sync::atomic::Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
    }

    /// Runs `call` on the pinned member until it succeeds, fails for good, or runs out of
    /// attempts; an unreachable member moves the pin to the next one.
    async fn retry<T, F, Fut>(&self, idempotent: bool, mut call: F) -> Result<T, etcd_client::Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut attempt = 0;
        loop {
            // Unary calls carry the channel's timeout, but opening a watch or a keep-alive
            // stream does not: bound every attempt, so a member that accepts the connection
            // and never answers cannot hang the caller. A timeout counts as unavailable
            // (retried on the next member when the call is idempotent).
            let outcome = tokio::time::timeout(CALL_TIMEOUT, call(self.client()))
                .await
                .unwrap_or_else(|_| {
                    Err(etcd_client::Error::GRpcStatus(tonic::Status::unavailable(
                        "etcd call timed out",
                    )))
                });
            match outcome {
                Err(e)
                    if attempt + 1 < ATTEMPTS.max(self.clients.len() as u32 * 2)
                        && retriable(&e, idempotent) =>
                {
                    attempt += 1;
                    self.pinned
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(attempt)))
                        .await;
                }
                other => return other,
            }
        }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.root)
    }

    fn to_kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        let key = kv.key_str().map_err(|_| StoreError::BadKey)?;
        Ok(KeyValue {
            key: key.strip_prefix(&self.root).unwrap_or(key).to_owned(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
            lease: kv.lease(),
        })
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = self.full(key);
        let resp = self
            .retry(true, |c| {
                let key = key.clone();
                async move { c.kv_client().get(key, None).await }
            })
            .await?;
        resp.kvs().first().map(|kv| self.to_kv(kv)).transpose()
    }

    pub(crate) async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<KeyValue>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(crate::MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|k| TxnOp::get(self.full(k), None))
                .collect();
            let resp = self
                .retry(true, |c| {
                    let txn = Txn::new().and_then(ops.clone());
                    async move { c.kv_client().txn(txn).await }
                })
                .await?;
            for r in resp.op_responses() {
                match r {
                    TxnOpResponse::Get(g) => {
                        out.push(g.kvs().first().map(|kv| self.to_kv(kv)).transpose()?)
                    }
                    _ => out.push(None),
                }
            }
        }
        Ok(out)
    }

    pub(crate) async fn range_many(
        &self,
        prefixes: &[String],
        limit: usize,
    ) -> Result<Vec<Vec<KeyValue>>, StoreError> {
        let mut out = Vec::with_capacity(prefixes.len());
        for chunk in prefixes.chunks(crate::MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|p| {
                    let opts = GetOptions::new().with_prefix().with_limit(limit as i64);
                    TxnOp::get(self.full(p), Some(opts))
                })
                .collect();
            let resp = self
                .retry(true, |c| {
                    let txn = Txn::new().and_then(ops.clone());
                    async move { c.kv_client().txn(txn).await }
                })
                .await?;
            for r in resp.op_responses() {
                out.push(match r {
                    TxnOpResponse::Get(g) => g
                        .kvs()
                        .iter()
                        .map(|kv| self.to_kv(kv))
                        .collect::<Result<Vec<_>, _>>()?,
                    _ => Vec::new(),
                });
            }
        }
        Ok(out)
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let key = self.full(key);
        let resp = self
            .retry(false, |c| {
                let key = key.clone();
                async move { c.kv_client().delete(key, None::<DeleteOptions>).await }
            })
            .await?;
        Ok(resp.deleted() > 0)
    }

    /// Every key under `prefixes` at one revision: the first page's, every later page read
    /// at it (etcd keeps the history until a compaction; one in between fails the read,
    /// and the caller may try again).
    pub(crate) async fn snapshot(
        &self,
        prefixes: &[String],
    ) -> Result<(i64, Vec<KeyValue>), StoreError> {
        const PAGE: i64 = 1000;
        let mut revision = 0;
        let mut out = Vec::new();
        for prefix in prefixes {
            let full = self.full(prefix);
            let end = prefix_end(full.as_bytes());
            let mut start = full.into_bytes();
            loop {
                let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
                if revision > 0 {
                    opts = opts.with_revision(revision);
                }
                let resp = self
                    .retry(true, |c| {
                        let (start, opts) = (start.clone(), opts.clone());
                        async move { c.kv_client().get(start, Some(opts)).await }
                    })
                    .await?;
                if revision == 0 {
                    revision = resp.header().map_or(0, |h| h.revision());
                }
                for kv in resp.kvs() {
                    out.push(self.to_kv(kv)?);
                }
                match resp.kvs().last() {
                    Some(last) if resp.more() => {
                        start = last.key().to_vec();
                        start.push(0);
                    }
                    _ => break,
                }
            }
        }
        if revision == 0 {
            revision = self.revision().await?;
        }
        Ok((revision, out))
    }

    pub(crate) async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        end: Option<&str>,
        limit: usize,
    ) -> Result<RangePage, StoreError> {
        let full_prefix = self.full(prefix);
        let range_end = match end {
            Some(e) => self.full(e).into_bytes(),
            None => prefix_end(full_prefix.as_bytes()),
        };
        let start = match start_after {
            Some(k) if k >= prefix => {
                let mut s = self.full(k).into_bytes();
                s.push(0);
                s
            }
            _ => full_prefix.clone().into_bytes(),
        };
        let opts = GetOptions::new()
            .with_range(range_end)
            .with_limit(limit as i64);
        let resp = self
            .retry(true, |c| {
                let (start, opts) = (start.clone(), opts.clone());
                async move { c.kv_client().get(start, Some(opts)).await }
            })
            .await?;
        let kvs = resp
            .kvs()
            .iter()
            .map(|kv| self.to_kv(kv))
            .collect::<Result<Vec<_>, _>>()?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok(RangePage {
            more: resp.more(),
            kvs,
            revision,
        })
    }

    pub(crate) async fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        let key = self.full(prefix);
        let resp = self
            .retry(true, |c| {
                let key = key.clone();
                async move {
                    c.kv_client()
                        .get(key, Some(GetOptions::new().with_prefix().with_count_only()))
                        .await
                }
            })
            .await?;
        Ok(resp.count().max(0) as u64)
    }

    pub(crate) async fn revision(&self) -> Result<i64, StoreError> {
        let key = self.full("\0revision-probe");
        let resp = self
            .retry(true, |c| {
                let key = key.clone();
                async move {
                    c.kv_client()
                        .get(key, Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    pub(crate) async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.retry(false, |c| async move {
            c.kv_client()
                .compact(revision, Some(CompactionOptions::new().with_physical()))
                .await
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
    ) -> Result<TxnResult, StoreError> {
        let compares: Vec<EtcdCompare> = compares
            .into_iter()
            .map(|c| match c {
                Compare::ModRevision { key, revision } => {
                    EtcdCompare::mod_revision(self.full(&key), CompareOp::Equal, revision)
                }
                Compare::Exists(key) => {
                    EtcdCompare::version(self.full(&key), CompareOp::Greater, 0)
                }
                Compare::Absent(key) => EtcdCompare::version(self.full(&key), CompareOp::Equal, 0),
                // Over a range, etcd compares a missing key as all-zero: create_revision == 0
                // holds for every key in the range exactly when the range is empty.
                Compare::PrefixEmpty(prefix) => {
                    EtcdCompare::create_revision(self.full(&prefix), CompareOp::Equal, 0)
                        .with_prefix()
                }
            })
            .collect();
        let ops: Vec<TxnOp> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => TxnOp::put(
                    self.full(&key),
                    value,
                    lease.map(|l| PutOptions::new().with_lease(l)),
                ),
                Op::Delete(key) => TxnOp::delete(self.full(&key), None),
            })
            .collect();
        let resp = self
            .retry(false, |c| {
                let txn = Txn::new().when(compares.clone()).and_then(ops.clone());
                async move { c.kv_client().txn(txn).await }
            })
            .await
            .map_err(lease_error)?;
        Ok(TxnResult {
            succeeded: resp.succeeded(),
            revision: resp.header().map_or(0, |h| h.revision()),
        })
    }

    pub(crate) async fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> Result<EtcdWatch, StoreError> {
        let mut opts = WatchOptions::new().with_prefix();
        if from_revision > 0 {
            opts = opts.with_start_revision(from_revision);
        }
        let key = self.full(prefix);
        let stream = self
            .retry(true, |c| {
                let (key, opts) = (key.clone(), opts.clone());
                async move {
                    c.watch_client()
                        .max_decoding_message_size(MAX_WATCH_MESSAGE)
                        .watch(key, Some(opts))
                        .await
                }
            })
            .await?;
        Ok(EtcdWatch {
            store: self.clone(),
            stream,
        })
    }

    pub(crate) async fn lease_grant(&self, ttl_s: i64) -> Result<LeaseId, StoreError> {
        let resp = self
            .retry(false, |c| async move {
                c.lease_client().grant(ttl_s, None).await
            })
            .await?;
        Ok(resp.id())
    }

    pub(crate) async fn lease_keep_alive(&self, id: LeaseId) -> Result<EtcdKeepAlive, StoreError> {
        let (keeper, stream) = self
            .retry(
                true,
                |c| async move { c.lease_client().keep_alive(id).await },
            )
            .await
            .map_err(|e| match lease_error(e) {
                StoreError::LeaseNotFound(_) => StoreError::LeaseNotFound(id),
                e => e,
            })?;
        Ok(EtcdKeepAlive { keeper, stream })
    }

    pub(crate) async fn lease_info(&self, id: LeaseId) -> Result<Option<LeaseInfo>, StoreError> {
        let resp = self
            .retry(true, |c| async move {
                c.lease_client().time_to_live(id, None).await
            })
            .await?;
        // -1: no such lease. 0: alive with less than a second left (etcd rounds down), as
        // the embedded store says 1.
        if resp.ttl() < 0 {
            return Ok(None);
        }
        Ok(Some(LeaseInfo {
            granted_ttl_s: resp.granted_ttl(),
            ttl_left_s: resp.ttl().max(1),
        }))
    }

    pub(crate) async fn lease_keys(&self, id: LeaseId) -> Result<Vec<String>, StoreError> {
        let listed = self
            .retry(true, |c| async move {
                c.lease_client()
                    .time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
                    .await
            })
            .await;
        let resp = match listed {
            // etcd answers a lease's keys in one message, and etcd-client 0.21's lease
            // client keeps tonic's 4 MB limit on it (about 50,000 keys): more are found by
            // reading this store's keys, keys only, in pages.
            Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::OutOfRange => {
                return self.scan_lease_keys(id).await;
            }
            other => other?,
        };
        let mut keys = Vec::with_capacity(resp.keys().len());
        for k in resp.keys() {
            let k = std::str::from_utf8(k).map_err(|_| StoreError::BadKey)?;
            // Keys of another prefix sharing the lease are not this store's.
            if let Some(k) = k.strip_prefix(&self.root) {
                keys.push(k.to_owned());
            }
        }
        Ok(keys)
    }

    /// Every key of this store's root attached to lease `id`, read keys only in pages of
    /// [`SCAN_PAGE`] (at 80 bytes a key, a page is about 8 MB). etcd 3.4 and 3.5 count
    /// every key left in the range to answer a page, so the scan's work grows with the
    /// square of the store's keys: large pages keep the number of those walks down.
    async fn scan_lease_keys(&self, id: LeaseId) -> Result<Vec<String>, StoreError> {
        let end = prefix_end(self.root.as_bytes());
        // etcd takes no empty key: "\0" starts a range at the first key.
        let mut start = match self.root.as_str() {
            "" => vec![0],
            root => root.as_bytes().to_vec(),
        };
        let mut keys = Vec::new();
        loop {
            let opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(SCAN_PAGE)
                .with_keys_only();
            let resp = self
                .retry(true, |c| {
                    let (start, opts) = (start.clone(), opts.clone());
                    async move {
                        c.kv_client()
                            .max_decoding_message_size(MAX_WATCH_MESSAGE)
                            .get(start, Some(opts))
                            .await
                    }
                })
                .await?;
            for kv in resp.kvs().iter().filter(|kv| kv.lease() == id) {
                let k = kv.key_str().map_err(|_| StoreError::BadKey)?;
                keys.push(k.strip_prefix(&self.root).unwrap_or(k).to_owned());
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok(keys),
            }
        }
    }

    pub(crate) async fn lease_ids(&self) -> Result<Vec<LeaseId>, StoreError> {
        let resp = self
            .retry(true, |c| async move { c.lease_client().leases().await })
            .await?;
        Ok(resp.leases().iter().map(|l| l.id()).collect())
    }

    pub(crate) async fn lease_revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        self.retry(false, |c| async move { c.lease_client().revoke(id).await })
            .await
            .map_err(lease_error)?;
        Ok(())
    }
}

/// Keys per page when a lease's keys are found by reading the store's keys.
const SCAN_PAGE: i64 = 100_000;

/// Largest watch response accepted. One revision's events arrive in one message, and a
/// lease that expires deletes every key on it in one revision: an edge holding 100,000
/// bindings makes a ~10 MB message (tonic's default limit of 4 MB would fail that watch
/// forever). etcd-client 0.21 cannot reassemble fragmented responses, so the limit is high.
const MAX_WATCH_MESSAGE: usize = 512 << 20;

/// Attempts per call when a member is unreachable (at least two rounds over the members).
const ATTEMPTS: u32 = 6;

/// Whether a failed call may be sent again: reads on any unavailability; writes only when
/// the request never left (the connection could not be made), so nothing applies twice.
fn retriable(e: &etcd_client::Error, idempotent: bool) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::Unavailable => {
            idempotent || s.message().contains("connect")
        }
        etcd_client::Error::TransportError(_) => idempotent,
        _ => false,
    }
}

/// etcd reports a missing lease as a gRPC error; give it its own variant.
fn lease_error(e: etcd_client::Error) -> StoreError {
    match &e {
        etcd_client::Error::GRpcStatus(s) if s.message().contains("lease not found") => {
            StoreError::LeaseNotFound(0)
        }
        // Opening a keep-alive for a lease that is gone.
        etcd_client::Error::LeaseKeepAliveError(m) if m.contains("lease not found") => {
            StoreError::LeaseNotFound(0)
        }
        _ => StoreError::Etcd(e),
    }
}

/// A watch on etcd.
pub struct EtcdWatch {
    store: EtcdStore,
    stream: EtcdWatchStream,
}

impl EtcdWatch {
    pub(crate) async fn next(&mut self) -> Result<Option<WatchBatch>, StoreError> {
        loop {
            let Some(resp) = self.stream.message().await? else {
                return Ok(None);
            };
            if resp.compact_revision() > 0 {
                return Err(StoreError::Compacted {
                    compact_revision: resp.compact_revision(),
                });
            }
            if resp.canceled() {
                return Ok(None);
            }
            if resp.events().is_empty() {
                continue;
            }
            let mut events = Vec::with_capacity(resp.events().len());
            let mut revision = resp.header().map_or(0, |h| h.revision());
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let kv = self.store.to_kv(kv)?;
                revision = revision.max(kv.mod_revision);
                events.push(match ev.event_type() {
                    EventType::Put => WatchEvent::Put(kv),
                    EventType::Delete => WatchEvent::Delete {
                        key: kv.key,
                        mod_revision: kv.mod_revision,
                    },
                });
            }
            return Ok(Some(WatchBatch { events, revision }));
        }
    }
}

/// How to reach a secured etcd: TLS (the CA that signed the members' certificates, and a
/// client certificate when they require one) and etcd's own user authentication.
#[derive(Clone, Default)]
pub struct EtcdSecurity {
    /// PEM of the CA certificate(s) trusted for the members (turns TLS on).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and private key (mutual TLS).
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// etcd user name and password.
    pub user: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the password.
        f.debug_struct("EtcdSecurity")
            .field("tls", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some())
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl EtcdSecurity {
    fn tls_options(&self) -> Option<etcd_client::TlsOptions> {
        let ca = self.ca_pem.as_ref()?;
        let mut tls =
            etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(ca));
        if let Some((cert, key)) = &self.client_cert_pem {
            tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
        }
        Some(tls)
    }
}

/// Longest wait for one attempt of a call, or for a keep-alive answer.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(6);

/// A keep-alive channel for one etcd lease.
pub struct EtcdKeepAlive {
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
}

impl EtcdKeepAlive {
    pub(crate) async fn refresh(&mut self) -> Result<i64, StoreError> {
        self.keeper.keep_alive().await?;
        // A stream that stays silent must not stall the lease keeper past its TTL.
        let answer = tokio::time::timeout(CALL_TIMEOUT, self.stream.message())
            .await
            .map_err(|_| {
                etcd_client::Error::GRpcStatus(tonic::Status::deadline_exceeded(
                    "no keep-alive answer",
                ))
            })??;
        match answer {
            Some(resp) => Ok(resp.ttl()),
            None => Err(StoreError::Closed),
        }
    }
}
