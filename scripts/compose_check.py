"""Runs the compose trial (deploy/compose/compose.yaml) without a container engine: the
services' own commands, scripts and environment, on this machine's loopback.

What is real: the compose file is parsed (anchors and merge keys included); its secrets
script generates the keys, token file and certificate; etcd runs with the compose command's
flags; the control node and the three edges run `dialtone serve` with exactly the compose
environment except for addresses (each `0.0.0.0:PORT` or `host:PORT` becomes a free port on
127.0.0.1, `/secrets` a temporary folder, the collector an OTLP sink that is not there);
the seed script publishes the edge group with the real dialtonectl. Every node must answer
/readyz, and the group must hold the three edges. The media profile runs too: rtpengine
and coturn with the compose commands (their compose-network addresses become 127.0.0.1,
their ports free ones), the seed-media script registers them, and the edges must report
the media server UP through the status role; its ng-guard must guard the ng port against
coturn's relay ports (its command run in a network namespace). Mounted files must exist,
and the collector and Prometheus configuration must be well-formed YAML naming what the nodes send.

Usage: python3 scripts/compose_check.py (after `cargo build --bins`)."""

import os
import pathlib
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

import ng_guard_run

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "deploy" / "compose"
BIN = ROOT / "target" / "debug"


GIVEN = set()


def free_port():
    """A port below the kernel's ephemeral range that is free now and not handed out before.

    A port the kernel picks for bind(0) comes from the ephemeral range, so after it is
    released the kernel may give it to any outgoing connection (a node's own etcd client
    took one once, and the node's gRPC listener then failed with EADDRINUSE). Ports below
    the range are never given to connections; each is handed out once per run."""
    low = int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(max(1024, low - 12000), low)
        if port in GIVEN:
            continue
        with socket.socket() as s, socket.socket(type=socket.SOCK_DGRAM) as u:
            try:
                s.bind(("127.0.0.1", port))
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        GIVEN.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def ready(admin, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://{admin}/readyz", timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def main():
    spec = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    services = spec["services"]
    problems = []
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                if not (COMPOSE / src).exists():
                    problems.append(f"{name}: mounted {src} does not exist")
    collector = yaml.safe_load((ROOT / "deploy" / "otel" / "collector.yaml").read_text())
    pipelines = collector["service"]["pipelines"]
    for signal in ("traces", "metrics"):
        if "otlp" not in pipelines[signal]["receivers"]:
            problems.append(f"collector: the {signal} pipeline does not receive otlp")
        for part in ("receivers", "processors", "exporters"):
            for p in pipelines[signal].get(part, []):
                if p not in collector[part]:
                    problems.append(f"collector: {signal} uses undefined {part[:-1]} {p}")
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    jobs = {j["job_name"] for j in prom["scrape_configs"]}
    for job in ("dialtone-config", "dialtone-edge"):
        if job not in jobs:
            problems.append(f"prometheus.yml: no scrape job {job} (the alert rules use it)")
    if problems:
        return problems

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="dialtone-compose-"))
    secrets = tmp / "secrets"
    secrets.mkdir()
    procs = []
    try:
        # The secrets service's script, with /secrets here.
        script = (COMPOSE / "init-secrets.sh").read_text().replace("/secrets", str(secrets))
        subprocess.run(["sh", "-c", script], check=True, timeout=60)
        etcd_port, peer_port = free_port(), free_port()
        etcd_cmd = [
            re.sub(r"http://(0\.0\.0\.0|etcd):\d+",
                   lambda m: f"http://127.0.0.1:{peer_port if '2380' in m.group(0) else etcd_port}",
                   a).replace("/var/lib/etcd", str(tmp / "etcd"))
            for a in services["etcd"]["command"]
        ]
        etcd_cmd += [f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                     f"--initial-cluster=etcd=http://127.0.0.1:{peer_port}"]
        procs.append(subprocess.Popen(etcd_cmd, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        grpc_of = {}
        admins = {}
        for name in ("control", "edge-1", "edge-2", "edge-3"):
            env = {k: str(v) for k, v in services[name]["environment"].items()}
            grpc = f"127.0.0.1:{free_port()}"
            admin = f"127.0.0.1:{free_port()}"
            for k, v in list(env.items()):
                v = v.replace("/secrets", str(secrets))
                v = v.replace("http://etcd:2379", f"http://127.0.0.1:{etcd_port}")
                if k == "DIALTONE_LISTEN_GRPC":
                    v = grpc
                elif k == "DIALTONE_LISTEN_ADMIN":
                    v = admin
                elif re.fullmatch(r"0\.0\.0\.0:\d+", v):
                    v = f"127.0.0.1:{free_port()}"
                elif k == "DIALTONE_SIP_ADVERTISE_IP":
                    v = "127.0.0.1"
                elif k.startswith("OTEL_EXPORTER_OTLP"):
                    v = f"http://127.0.0.1:{free_port()}"
                env[k] = v
            env.update(PATH=os.environ["PATH"], HOME=str(tmp),
                       DIALTONE_DATA_DIR=str(tmp / name))
            unknown = [k for k in env if k.startswith("DIALTONE_") and k not in FLAGS_ENV]
            if unknown:
                problems.append(f"{name}: unknown settings {unknown}")
            log = open(tmp / f"{name}.log", "w")
            procs.append(subprocess.Popen([str(BIN / "dialtone"), "serve"], env=env,
                                          stdout=log, stderr=log))
            grpc_of[name], admins[name] = grpc, admin
        for name, admin in admins.items():
            if not ready(admin):
                tail = (tmp / f"{name}.log").read_text()[-1500:]
                problems.append(f"{name} never became ready:\n{tail}")
        if problems:
            return problems
        # The seed service's script, against the control node.
        seed = (COMPOSE / "seed.sh").read_text().replace("/secrets", str(secrets))
        env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", HOME=str(tmp),
                   DIALTONE_SERVER=f"http://{grpc_of['control']}")
        r = subprocess.run(["sh", "-c", seed], env=env, capture_output=True, text=True,
                           timeout=150)
        if r.returncode != 0:
            return [f"seed failed: {r.stderr.strip()}"]
        env["DIALTONE_TOKEN"] = (secrets / "admin-token").read_text().strip()
        r = subprocess.run([str(BIN / "dialtonectl"), "edge-groups", "get", "local"], env=env,
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0 or not all(e in r.stdout for e in ("edge-1", "edge-2", "edge-3")):
            return [f"edge group after seeding: {r.stdout} {r.stderr}"]
        problems = media_profile(services, tmp, secrets, env)
        if problems:
            return problems
        print("compose trial: etcd, control and 3 edges ready with the compose settings; "
              "seed published edge group 'local'; rtpengine and coturn of the media "
              "profile ran, seed-media registered them and the status role shows rtp-1 UP")
        return []
    finally:
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)


def media_profile(services, tmp, secrets, env):
    """Runs the media profile's rtpengine and coturn as compose starts them (addresses on
    127.0.0.1), registers them with seed-media.sh, and waits for rtp-1 to be UP."""
    for name in ("rtpengine", "coturn", "seed-media"):
        if "media" not in services[name].get("profiles", []):
            return [f"{name}: not in the media profile (media must stay optional)"]
    guard = ng_guard(services)
    if guard:
        return guard
    ng = f"127.0.0.1:{free_port()}"
    turn_port = free_port()
    base = 24000 + 100 * random.randrange(40)

    def local(arg):
        arg = re.sub(r"172\.29\.0\.2[01](!127\.0\.0\.1)?", "127.0.0.1", arg)
        arg = arg.replace("127.0.0.1:2223", ng).replace("=3478", f"={turn_port}")
        for old, new in (("30000", base), ("30099", base + 49), ("30100", base + 50),
                         ("30199", base + 99)):
            arg = arg.replace(f"={old}", f"={new}")
        return arg.replace("/secrets", str(secrets)).replace("/tmp/", f"{tmp}/")

    rtpengine = [local(a) for a in services["rtpengine"]["command"]]
    coturn = [local(a).replace("$$", "$") for a in services["coturn"]["entrypoint"]]
    procs = []
    try:
        for name, cmd in (("rtpengine", rtpengine), ("coturn", coturn)):
            log = open(tmp / f"{name}.log", "w")
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=log))
        seed = (COMPOSE / "seed-media.sh").read_text().replace("/secrets", str(secrets))
        menv = dict(env, MEDIA_NG=ng, MEDIA_TURN=f"turn:127.0.0.1:{turn_port}?transport=udp")
        menv.pop("DIALTONE_TOKEN", None)
        r = subprocess.run(["sh", "-c", seed], env=menv, capture_output=True, text=True,
                           timeout=150)
        if r.returncode != 0:
            return [f"seed-media failed: {r.stderr.strip()}"]
        deadline = time.time() + 20
        out = ""
        while time.time() < deadline:
            r = subprocess.run([str(BIN / "dialtonectl"), "status", "media-servers"], env=env,
                               capture_output=True, text=True, timeout=30)
            out = r.stdout + r.stderr
            if re.search(r"rtp-1\s.*\bUP\b", out):
                break
            time.sleep(0.5)
        else:
            logs = {n: (tmp / f"{n}.log").read_text()[-800:] for n in ("rtpengine", "coturn")}
            return [f"media server rtp-1 never UP: {out}\n{logs}"]
        # coturn holds its UDP port (a bind of it here fails).
        with socket.socket(type=socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", turn_port))
                return [f"coturn did not listen: {(tmp / 'coturn.log').read_text()[-800:]}"]
            except OSError:
                pass
        return []
    finally:
        stop(procs)


def ng_guard(services):
    """The media profile's ng-guard must share rtpengine's network namespace with NET_ADMIN
    and guard rtpengine's ng port against coturn's relay ports; its command runs in a
    network namespace of its own (deploy/media/ng-guard.sh being the image's
    dialtone-ng-guard) and must leave that rule."""
    g = services.get("ng-guard")
    if g is None or "media" not in g.get("profiles", []):
        return ["ng-guard: missing from the media profile (coturn could reach the ng port)"]
    if g.get("network_mode") != "service:rtpengine" or g.get("cap_add") != ["NET_ADMIN"]:
        return ["ng-guard: must run in rtpengine's network namespace with NET_ADMIN"]
    ng = next(a for a in services["rtpengine"]["command"] if a.startswith("--listen-ng="))
    ng = ng.rsplit(":", 1)[1]
    turn = " ".join(services["coturn"]["entrypoint"])
    lo, hi = re.search(r"--min-port=(\d+)", turn)[1], re.search(r"--max-port=(\d+)", turn)[1]
    cmd = g["command"]
    if cmd != ["dialtone-ng-guard", ng, lo, hi]:
        return [f"ng-guard: command {cmd}, want dialtone-ng-guard {ng} {lo} {hi}"]
    problem, rules = ng_guard_run.drop_rules(cmd[1:])
    want = f"udp dport {ng} udp sport {lo}-{hi}"
    if problem or not any(want in r for r in rules):
        return [f"ng-guard: did not install '{want}': {problem or rules}"]
    return []


def stop(procs):
    """Stops `procs`, the last started first: SIGTERM, then SIGKILL after 10 s."""
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def flags_env():
    out = subprocess.run([str(BIN / "dialtone"), "serve", "--help"], capture_output=True,
                         text=True, check=True).stdout
    return set(re.findall(r"env: (DIALTONE_[A-Z_]+)=", out))


if __name__ == "__main__":
    FLAGS_ENV = flags_env() | {"DIALTONE_DATA_DIR"}
    found = main()
    for p in found:
        print(f"  compose: {p}")
    if found:
        sys.exit(1)
