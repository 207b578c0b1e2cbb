// A WebRTC phone for the tests: JsSIP (npm) in a page of Debian's headless Chromium, driven
// by Playwright (playwright-core: no browser download). It registers over WSS, places and
// answers calls with Chromium's fake microphone, and reports on stdout, one JSON object per
// line; commands arrive on stdin the same way.
//
//   node phone.mjs '{"wss":"wss://127.0.0.1:5061","user":"201","password":"...",
//                    "domain":"dialtone","iceServers":[],"iceTransportPolicy":"all",
//                    "pagePort":18080}'
//
// The page is served from http://127.0.0.1:<pagePort>: that is its Origin, which the
// edge must allow (--sip-ws-allowed-origins).
//
// Events:   {"event":"registered"} {"event":"registrationFailed","cause":...}
//           {"event":"incoming","from":...} {"event":"confirmed"} {"event":"ended","cause":...}
//           {"event":"failed","cause":...}
//           {"event":"stats","inbound":N,"outbound":N,"candidates":["relay",...]}
//           {"event":"error","message":...}
// Commands: {"cmd":"call","target":"sip:202@dialtone"} {"cmd":"hangup"} {"cmd":"stats"}
//           {"cmd":"quit"}
// An incoming call is answered at once.

import http from 'node:http';
import readline from 'node:readline';
import { buildSync } from 'esbuild';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.argv[2]);
const emit = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');

// JsSIP ships as CommonJS only: bundled for the page, in memory, at start.
const here = new URL('.', import.meta.url).pathname;
const jssip = buildSync({
  entryPoints: [`${here}node_modules/jssip/lib/JsSIP.js`],
  bundle: true,
  format: 'iife',
  globalName: 'JsSIP',
  write: false,
  logLevel: 'silent',
}).outputFiles[0].text;

// What runs in the page. `report` is the bridge back to this process.
const page_js = `
const cfg = ${JSON.stringify(cfg)};
const pcConfig = { iceServers: cfg.iceServers || [], iceTransportPolicy: cfg.iceTransportPolicy || 'all' };
const media = { audio: true, video: false };
let session = null;
const ua = new JsSIP.UA({
  sockets: [new JsSIP.WebSocketInterface(cfg.wss)],
  uri: 'sip:' + cfg.user + '@' + cfg.domain,
  password: cfg.password,
  register: true,
  register_expires: 600,
  session_timers: false,
});
ua.on('registered', () => report({ event: 'registered' }));
ua.on('registrationFailed', (e) => report({ event: 'registrationFailed', cause: String(e.cause) }));
ua.on('newRTCSession', (e) => {
  session = e.session;
  session.on('confirmed', () => report({ event: 'confirmed' }));
  session.on('ended', (x) => report({ event: 'ended', cause: String(x.cause) }));
  session.on('failed', (x) => report({ event: 'failed', cause: String(x.cause) }));
  if (e.originator === 'remote') {
    report({ event: 'incoming', from: e.request.from.uri.toString() });
    session.answer({ mediaConstraints: media, pcConfig });
  }
});
ua.start();
window.phone = {
  call(target) { ua.call(target, { mediaConstraints: media, pcConfig }); },
  hangup() { if (session && !session.isEnded()) session.terminate(); },
  async stats() {
    let inbound = 0, outbound = 0;
    const candidates = [];
    const pc = session && session.connection;
    if (pc) {
      const all = await pc.getStats();
      const byId = new Map();
      all.forEach((s) => byId.set(s.id, s));
      all.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') inbound += s.packetsReceived || 0;
        if (s.type === 'outbound-rtp' && s.kind === 'audio') outbound += s.packetsSent || 0;
        // The pair the transport selected (whichever side nominated it).
        if (s.type === 'transport' && s.selectedCandidatePairId) {
          const pair = byId.get(s.selectedCandidatePairId);
          const local = pair && byId.get(pair.localCandidateId);
          if (local) candidates.push(local.candidateType);
        }
      });
    }
    return { event: 'stats', inbound, outbound, candidates };
  },
};
`;

const html = `<!doctype html><meta charset="utf-8"><title>dialtone browser phone</title>
<script src="/jssip.js"></script><script src="/phone.js"></script>`;

// The page comes from http://127.0.0.1, a secure context, so getUserMedia is allowed.
const server = http.createServer((req, res) => {
  const [type, body] =
    req.url === '/jssip.js' ? ['text/javascript', jssip]
    : req.url === '/phone.js' ? ['text/javascript', page_js]
    : ['text/html', html];
  res.writeHead(200, { 'content-type': type });
  res.end(body);
});
await new Promise((ok) => server.listen(cfg.pagePort || 0, '127.0.0.1', ok));

const browser = await chromium.launch({
  executablePath: cfg.chromium || '/usr/bin/chromium',
  headless: true,
  args: [
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    // Host candidates on 127.0.0.1, where the tests' rtpengine and coturn listen.
    '--allow-loopback-in-peer-connection',
    // The edge's WSS certificate is the dev mode's self-signed one.
    '--ignore-certificate-errors',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const page = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
page.on('pageerror', (e) => emit({ event: 'error', message: String(e) }));
page.on('console', (m) => {
  if (m.type() === 'error') emit({ event: 'console', message: m.text() });
});
await page.exposeFunction('report', (ev) => emit(ev));
await page.goto(`http://127.0.0.1:${server.address().port}/`);

const quit = async () => {
  await browser.close().catch(() => {});
  server.close();
  process.exit(0);
};
readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  try {
    const c = JSON.parse(line);
    if (c.cmd === 'call') await page.evaluate((t) => window.phone.call(t), c.target);
    else if (c.cmd === 'hangup') await page.evaluate(() => window.phone.hangup());
    else if (c.cmd === 'stats') emit(await page.evaluate(() => window.phone.stats()));
    else if (c.cmd === 'quit') await quit();
  } catch (e) {
    emit({ event: 'error', message: String(e) });
  }
}).on('close', quit);
