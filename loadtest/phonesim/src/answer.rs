//! What a simulated phone does with what reaches it: responses go to their transactions;
//! requests are answered (OPTIONS, MESSAGE, NOTIFY: 200; INVITE: ringing and an answer, or
//! the softphone's audio-device rules; CANCEL: 200 and 487); a check-sync makes a managed
//! phone fetch its configuration again (moving to the edges it now names), and reboot when
//! told to.

use std::{net::SocketAddr, sync::Arc, sync::atomic::Ordering::Relaxed};

use dialtone_sip::message::{Message, StartLine};
use dialtone_softphone::Incoming;

use crate::{Inner, Pending, Reply, managed, txn_key, wire, wire::Answer};

impl Inner {
    /// One message from `from` (over UDP or a TCP link): a response goes to its
    /// transaction in `pending`, a request is answered through `send`.
    pub(crate) fn on_message(
        self: &Arc<Self>,
        m: Message,
        from: SocketAddr,
        pending: &Pending,
        reply: &Reply,
    ) {
        let send = |b| reply.send(b);
        match &m.start {
            StartLine::Response { code, .. } => {
                if *code < 200 {
                    return;
                }
                let key = m
                    .get("call-id")
                    .zip(
                        m.get("cseq")
                            .and_then(|c| c.split_whitespace().next()?.parse().ok()),
                    )
                    .map(|(id, n)| txn_key(id, n));
                if let Some(tx) = key.and_then(|k| pending.lock().remove(&k)) {
                    let _ = tx.send(m);
                }
            }
            StartLine::Request { method, .. } => {
                let method = method.clone();
                self.stats.receive(&method);
                if !wire::request_user(&m).is_some_and(|u| self.by_user.contains_key(u)) {
                    self.stats.misdelivered.fetch_add(1, Relaxed);
                    send(wire::respond(&m, from, 404, "sim"));
                    return;
                }
                if method == "NOTIFY"
                    && wire::event(&m).is_some_and(|e| e.starts_with("check-sync"))
                {
                    self.stats.check_syncs.fetch_add(1, Relaxed);
                    let reboot = wire::event(&m).is_some_and(|e| e.contains("reboot=true"));
                    if reboot {
                        self.stats.reboots.fetch_add(1, Relaxed);
                    }
                    if let Some(&i) = wire::request_user(&m).and_then(|u| self.by_user.get(u))
                        && self.phones[i].spec.managed.is_some()
                        && self.cfg.provisioning.is_some()
                    {
                        tokio::spawn(self.clone().resync(i, reboot));
                    }
                }
                let tag = format!("{:08x}", rand::random::<u32>());
                let branch = m
                    .top_via()
                    .and_then(|v| v.param("branch").map(str::to_owned));
                if method == "CANCEL"
                    && let Some((invite, tag)) =
                        branch.as_ref().and_then(|b| self.ringing.lock().remove(b))
                {
                    if m.get("reason").is_some_and(|r| r.contains("cause=200")) {
                        self.stats.cancelled_elsewhere.fetch_add(1, Relaxed);
                    }
                    send(wire::respond(&m, from, 200, &tag));
                    send(wire::respond(&invite, from, 487, &tag));
                    return;
                }
                let answer = match wire::request_user(&m).and_then(|u| self.by_user.get(u)) {
                    Some(&i) if method == "INVITE" && self.phones[i].audio.is_some() => {
                        self.softphone_answer(i)
                    }
                    _ => wire::answer_for(&method, self.cfg.invite_answer),
                };
                match answer {
                    Answer::Nothing => {}
                    Answer::Final(code) => send(wire::respond(&m, from, code, &tag)),
                    Answer::RingOnly => {
                        send(wire::respond(&m, from, 180, &tag));
                        if let Some(b) = branch {
                            self.ringing.lock().insert(b, (m, tag));
                        }
                    }
                    Answer::RingThen(code) if !self.cfg.answer_after.is_zero() => {
                        // Rings a while (a CANCEL meanwhile takes it out of `ringing`).
                        send(wire::respond(&m, from, 180, &tag));
                        if let Some(b) = branch {
                            self.ringing.lock().insert(b.clone(), (m, tag));
                            let (me, reply) = (self.clone(), reply.clone());
                            tokio::spawn(async move {
                                tokio::time::sleep(me.cfg.answer_after).await;
                                let ringing = me.ringing.lock().remove(&b);
                                if let Some((invite, tag)) = ringing {
                                    reply.send(wire::respond(&invite, from, code, &tag));
                                }
                            });
                        }
                    }
                    Answer::RingThen(code) => {
                        send(wire::respond(&m, from, 180, &tag));
                        send(wire::respond(&m, from, code, &tag));
                    }
                }
            }
        }
    }

    /// A managed phone told to check its configuration: it fetches again (If-None-Match),
    /// then, told to reboot, registers again as after a reboot.
    async fn resync(self: Arc<Self>, i: usize, reboot: bool) {
        let (Some(source), Some(m)) = (&self.cfg.provisioning, &self.phones[i].spec.managed) else {
            return;
        };
        let p = &self.phones[i];
        let etag = p.etag.lock().clone();
        match managed::fetch(source, &m.hardware_id, &m.device_password, etag.as_deref()).await {
            Ok(r) if r.status == 200 => {
                *p.etag.lock() = r.etag.clone();
                self.stats.fetches[0].fetch_add(1, Relaxed);
                let device = managed::ManagedDevice {
                    phone_id: p.spec.phone_id.clone(),
                    hardware_id: m.hardware_id.clone(),
                    password: m.device_password.clone(),
                };
                if let Ok(doc) = managed::parse_document(&r.body, &device) {
                    self.follow(i, &doc.registrars).await;
                }
            }
            Ok(r) if r.status == 304 => {
                self.stats.fetches[1].fetch_add(1, Relaxed);
            }
            Ok(_) | Err(_) => {
                self.stats.fetches[2].fetch_add(1, Relaxed);
            }
        }
        if reboot {
            self.reboot(i);
        }
    }

    /// A managed phone whose configuration names other edges: it leaves each registrar that
    /// changed (Expires: 0) and registers at the new one at once. The number of
    /// registrations stays what it booted with.
    async fn follow(self: &Arc<Self>, i: usize, registrars: &[SocketAddr]) {
        let p = &self.phones[i];
        for (r, new) in registrars.iter().enumerate().take(p.regs.len()) {
            if p.registrar(r) == *new {
                continue;
            }
            let _ = self.register(p, r, 0).await;
            *p.regs[r].registrar.lock() = *new;
            p.regs[r].start_afresh(r);
            p.wake_now(r);
            self.stats.moved.fetch_add(1, Relaxed);
        }
    }

    /// Forgets every registration of phone `i` (new Call-IDs, no challenge) and registers
    /// again at once.
    pub(crate) fn reboot(&self, i: usize) {
        let p = &self.phones[i];
        p.off.store(false, Relaxed);
        for r in 0..p.regs.len() {
            p.regs[r].start_afresh(r);
            p.wake_now(r);
        }
        self.stats.rebooted.fetch_add(1, Relaxed);
    }

    /// What a softphone does with an INVITE now, by its audio-device rules.
    fn softphone_answer(&self, i: usize) -> Answer {
        let Some(audio) = &self.phones[i].audio else {
            return wire::answer_for("INVITE", self.cfg.invite_answer);
        };
        let incoming = audio.lock().incoming();
        match incoming {
            Incoming::AutoAnswer => {
                self.stats.calls[0].fetch_add(1, Relaxed);
                Answer::Final(200)
            }
            Incoming::Ring => {
                self.stats.calls[1].fetch_add(1, Relaxed);
                Answer::RingOnly
            }
            Incoming::Reject(code) => {
                self.stats.calls[2].fetch_add(1, Relaxed);
                Answer::Final(code)
            }
        }
    }
}
