"""Lints and renders the Helm chart for its default values and every file in
helm/dialtone/ci/, checks the values against values.schema.json, and validates every
rendered manifest against the Kubernetes schemas (kubernetes-validate, strict: unknown
fields are errors). Custom resources without a published schema (the Prometheus
Operator's ServiceMonitor) are checked for their required fields only.

The edge-group Job of ci/provisioning-values.yaml is also run for real: its rendered shell
command, with the real dialtonectl, against a real `dialtone serve --roles config` (when the
binaries are built), twice (create, then replace), and the group it leaves is checked; so is
the media DaemonSet's registration (ci/media-values.yaml) and the media server it leaves,
and its ng-guard (the nftables rule it installs, in a network namespace of its own).

Run by scripts/helm-check.sh, which installs helm-python-sdk and kubernetes-validate."""

import contextlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import helm_python
import ng_guard_run
import kubernetes_validate
import yaml

CHART = pathlib.Path(__file__).resolve().parent.parent / "helm" / "dialtone"
KUBE_VERSION = "1.30.0"
CHART_VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
CUSTOM = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ["spec.selector", "spec.endpoints"],
    ("monitoring.coreos.com/v1", "PrometheusRule"): ["spec.groups"],
}
ALERTS = CHART.parent.parent / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = CHART.parent.parent / "deploy" / "grafana"


def dig(obj, dotted):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


ROOT = CHART.parent.parent
BIN = ROOT / "target" / "debug"


@contextlib.contextmanager
def config_node():
    """A real `dialtone serve --roles config` on loopback: yields the environment a
    dialtonectl container gets (its server and admin token), or None when it did not start."""
    data = tempfile.mkdtemp(prefix="dialtone-helm-job-")
    node = subprocess.Popen(
        [str(BIN / "dialtone"), "serve", "--roles", "config", "--data-dir", data,
         "--listen-grpc", "127.0.0.1:0", "--listen-admin", "127.0.0.1:0",
         "--listen-api", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = pathlib.Path(data) / "endpoint"
        for _ in range(200):
            if endpoint.exists() and endpoint.read_text().strip():
                break
            time.sleep(0.05)
        else:
            yield None
            return
        yield dict(
            PATH=f"{BIN}:{os.environ['PATH']}",
            DIALTONE_SERVER=endpoint.read_text().strip(),
            DIALTONE_TOKEN=(pathlib.Path(data) / "admin-token").read_text().strip(),
            HOME=data,
        )
    finally:
        node.terminate()
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            node.kill()
        shutil.rmtree(data, ignore_errors=True)


def built():
    return (BIN / "dialtone").exists() and (BIN / "dialtonectl").exists()


def is_ipv4(host):
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


EDGE_STS = {}


def external_address_of(values, i):
    """What the edge StatefulSet's start line exports as DIALTONE_SIP_EXTERNAL_ADDRESS in
    pod `i` (its shell line run with that pod's name), or None."""
    sts = EDGE_STS.get("doc")
    if sts is None:
        return None
    c = sts["spec"]["template"]["spec"]["containers"][0]
    if c.get("command") != ["/bin/sh", "-ec"]:
        return None
    env = {e["name"]: e.get("value", "") for e in c["env"] if "value" in e}
    env["POD_NAME"] = f"dt-dialtone-edge-{i}"
    # The same line, with `exec dialtone serve` replaced by printing what it exported.
    line = c["args"][0].replace("exec dialtone serve", 'printf %s "${DIALTONE_SIP_EXTERNAL_ADDRESS:-}"')
    r = subprocess.run(["/bin/sh", "-ec", line], env=env, capture_output=True, text=True, timeout=10)
    return r.stdout or None


def check_daemonset_external(ds, values):
    """Runs a DaemonSet edge's start line for a node listed in edge.externalHosts and for
    one that is not: each exports the --sip-external-address its host and the edge's ports
    give (the template's name for the unlisted node)."""
    e = values.get("edge", {})
    c = ds["spec"]["template"]["spec"]["containers"][0]
    if not (e.get("externalHosts") or e.get("externalHostTemplate")):
        return []
    if c.get("command") != ["/bin/sh", "-ec"]:
        return ["edge DaemonSet: externalHosts set but no start line picks them"]
    sip = {**{"udpPort": 5060, "tcpPort": 5060}, **e.get("sip", {})}
    ports = [(t, sip.get(f"{t}Port", 0)) for t in ("udp", "tcp", "tls", "ws", "wss")]
    problems, seen = [], []
    # Each listed node (IPv6 hosts bracketed), then one the template names.
    listed = [(n, f"[{h}]" if ":" in h else h) for n, h in (e.get("externalHosts") or {}).items()]
    template = e.get("externalHostTemplate", "")
    for node, want_host in listed + [("node-unlisted", template.replace("{node}", "node-unlisted"))]:
        env = {x["name"]: x.get("value", "") for x in c["env"] if "value" in x}
        env["DIALTONE_NODE_NAME"] = node
        line = c["args"][0].replace("exec dialtone serve", 'printf %s "${DIALTONE_SIP_EXTERNAL_ADDRESS:-}"')
        r = subprocess.run(["/bin/sh", "-ec", line], env=env, capture_output=True, text=True, timeout=10)
        want = ",".join(f"{t}={want_host}:{p}" for t, p in ports if p) if want_host else ""
        seen.append(r.stdout)
        if r.stdout != want:
            problems.append(f"edge DaemonSet on {node}: external address {r.stdout!r}, want {want!r}")
    if not problems:
        print(f"  edge DaemonSet: external addresses by node {seen}")
    return problems


def free_port():
    """A loopback port the OS just handed out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_etcd_snapshot(cronjob, values):
    """Runs the etcd snapshot CronJob for real, three times with KEEP=2: its etcdctl command
    against a local etcd member (the chart's TLS and endpoint aside), then its shell line;
    checks two snapshots are left, named by time, and that etcdctl reads the newest."""
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    save, keep = spec["initContainers"][0], spec["containers"][0]
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        return ["etcd snapshot: etcd and etcdctl are needed (scripts/deps.sh --test)"]
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as snapshots:
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        member = subprocess.Popen(
            ["etcd", "--data-dir", data, "--listen-client-urls", endpoint,
             "--advertise-client-urls", endpoint, "--listen-peer-urls",
             f"http://127.0.0.1:{free_port()}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            env = {"ETCDCTL_API": "3", "ETCDCTL_ENDPOINTS": endpoint, "PATH": os.environ["PATH"]}
            deadline = time.time() + 20
            while subprocess.run(["etcdctl", "put", "dialtone/probe", "1"], env=env,
                                 capture_output=True).returncode != 0:
                if time.time() > deadline:
                    return ["etcd snapshot: the local etcd member did not start"]
                time.sleep(0.2)
            command = [a.replace("/snapshots", snapshots) for a in save["command"]]
            shell_env = {e["name"]: e.get("value", "") for e in keep["env"]}
            shell_env.update(SNAPSHOT_DIR=snapshots, KEEP="2", PATH=os.environ["PATH"])
            for attempt in range(3):
                r = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
                if r.returncode != 0:
                    return [f"etcd snapshot (run {attempt + 1}): etcdctl failed: {r.stderr.strip()}"]
                r = subprocess.run(keep["command"] + keep["args"], env=shell_env,
                                   capture_output=True, text=True, timeout=60)
                if r.returncode != 0:
                    return [f"etcd snapshot (run {attempt + 1}): naming failed: {r.stderr.strip()}"]
                time.sleep(1.1)  # a new name each second
            files = sorted(pathlib.Path(snapshots).glob("etcd-*.db"))
            left = sorted(p.name for p in pathlib.Path(snapshots).iterdir())
            if len(files) != 2 or len(left) != 2:
                return [f"etcd snapshot: {left} left with KEEP=2"]
            r = subprocess.run(["etcdctl", "snapshot", "status", str(files[-1])], env=env,
                               capture_output=True, text=True)
            if r.returncode != 0:
                return [f"etcd snapshot: the newest does not read: {r.stderr.strip()}"]
        finally:
            member.terminate()
            member.wait(timeout=10)
    print("  etcd snapshot: ran three times against a real etcd; kept the newest two, which "
          "etcdctl reads")
    return []


def run_edge_group_job(job, values):
    """Runs the Job's container command against a local config node; returns problems."""
    if not built():
        return ["edge-group job: target/debug/dialtone(ctl) not built"]
    c = job["spec"]["template"]["spec"]["containers"][0]
    with config_node() as node:
        if node is None:
            return ["edge-group job: the config node did not start"]
        env = {e["name"]: e.get("value", "") for e in c["env"]}
        env.update(node)
        for attempt in ("create", "replace"):
            r = subprocess.run(c["command"] + c["args"], env=env, capture_output=True, text=True,
                               timeout=60)
            if r.returncode != 0:
                return [f"edge-group job ({attempt}) failed: {r.stderr.strip()}"]
        r = subprocess.run([str(BIN / "dialtonectl"), "-o", "json", "edge-groups", "get",
                            env["GROUP"]], env=env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            return [f"edge-group job left no group: {r.stderr.strip()}"]
        group = json.loads(r.stdout)
        group = group.get("edge_group", group)
        g = values["edgeGroup"]
        edges = group.get("edges", [])
        want = [f"dt-dialtone-edge-{i}" for i in range(len(g["hosts"]))]
        got = [e.get("node_id") for e in edges]
        problems = []
        if got != want:
            problems.append(f"edge-group job: edges {got}, want {want}")
        for e, host in zip(edges, g["hosts"]):
            a = e.get("addresses", {})
            if a.get("udp") != f"{host}:5060" or a.get("tls") != f"{host}:5061":
                problems.append(f"edge-group job: {e.get('node_id')} has addresses {a}")
        # Each edge pod's external address, picked by ordinal by its start line: what the
        # group publishes for it (an IP, or a DNS name the edge resolves at start).
        for i, (e, host) in enumerate(zip(edges, g["hosts"])):
            a = e.get("addresses", {})
            published = ",".join(f"{t}={a[t]}" for t in ("udp", "tcp", "tls", "ws", "wss")
                                 if a.get(t))
            ext = external_address_of(values, i)
            named = not is_ipv4(host) and ":" not in host
            want = None if named and not g.get("externalAddressFromNames") else published
            if ext != want:
                problems.append(f"edge {i}: external address {ext!r}, want {want!r}")
        if not problems:
            print(f"  edge pods: external addresses {[external_address_of(values, i) for i in range(len(g['hosts']))]}")
        if group.get("name") != g["name"]:
            problems.append(f"edge-group job: name {group.get('name')!r}, want {g['name']!r}")
        if not problems:
            print(f"  edge-group job: ran twice against a real config node; group "
                  f"{g['id']} holds {', '.join(got)}")
        return problems


def run_backup_cronjob(cronjob, values):
    """Runs the backup CronJob's container command (its shell line, the real dialtonectl)
    against a local config node three times with KEEP=2 into a temporary directory; checks
    two backups are left and that the newest restores (a dry run) into the same node."""
    if not built():
        return ["backup cronjob: target/debug/dialtone(ctl) not built"]
    c = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    with config_node() as node, tempfile.TemporaryDirectory() as backups:
        if node is None:
            return ["backup cronjob: the config node did not start"]
        env = {e["name"]: e.get("value", "") for e in c["env"]}
        env.update(node)
        env.update(BACKUP_DIR=backups, KEEP="2")
        for attempt in range(3):
            r = subprocess.run(c["command"] + c["args"], env=env, capture_output=True, text=True,
                               timeout=60)
            if r.returncode != 0:
                return [f"backup cronjob (run {attempt + 1}) failed: {r.stderr.strip()}"]
            time.sleep(1.1)  # a new file name each second
        files = sorted(pathlib.Path(backups).glob("dialtone-*.backup"))
        if len(files) != 2:
            return [f"backup cronjob: {len(files)} backups left with KEEP=2: {files}"]
        r = subprocess.run([str(BIN / "dialtonectl"), "backup", "restore", "-f", str(files[-1]),
                            "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0 or "would write 0 entries" not in r.stdout:
            return [f"backup cronjob: its backup does not restore: {r.stdout} {r.stderr}"]
        print(f"  backup cronjob: ran three times against a real config node; kept the newest "
              f"two; the newest restores (dry run)")
        return []


def run_media_register(ds, values):
    """Runs the media DaemonSet's `register` init container (its shell command, the real
    dialtonectl) against a local config node, as the pod of node `Node-7.Example` at
    10.1.2.3 would, twice (create, then update); checks the media server it leaves."""
    if not built():
        return ["media register: target/debug/dialtone(ctl) not built"]
    c = next(i for i in ds["spec"]["template"]["spec"]["initContainers"] if i["name"] == "register")
    fields = {"spec.nodeName": "Node-7.Example", "status.hostIP": "10.1.2.3"}
    with config_node() as node:
        if node is None:
            return ["media register: the config node did not start"]
        env = {}
        for e in c["env"]:
            ref = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            env[e["name"]] = fields.get(ref, e.get("value", ""))
        env.update(node)
        for attempt in ("create", "update"):
            r = subprocess.run(c["command"] + c["args"], env=env, capture_output=True, text=True,
                               timeout=60)
            if r.returncode != 0:
                return [f"media register ({attempt}) failed: {r.stderr.strip()}"]
        r = subprocess.run([str(BIN / "dialtonectl"), "-o", "json", "media-servers", "get",
                            "rtp-node-7-example"], env=env, capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            return [f"media register left no media server: {r.stderr.strip()}"]
        m = json.loads(r.stdout)
        m = m.get("media_server", m)
        v = values["media"]
        adv = v.get("advertiseAddress") or "10.1.2.3"
        want = {
            "region": v["region"],
            "ng_address": "10.1.2.3:2223",
            "turn_urls": [f"turn:{adv}:3478?transport=udp", f"turn:{adv}:3478?transport=tcp"],
        }
        got = {k: m.get(k) for k in want}
        if got != want:
            return [f"media register: media server {got}, want {want}"]
        print(f"  media register: ran twice against a real config node; rtp-node-7-example "
              f"in {v['region']} with {', '.join(want['turn_urls'])}")
        return []


def run_ng_guard(ds, values):
    """Runs the media DaemonSet's `ng-guard` init container (its command, with the image's
    dialtone-ng-guard being deploy/media/ng-guard.sh) in a network namespace of its own,
    twice as a restarted pod would, and checks it leaves one rule dropping UDP from coturn's
    relay ports to rtpengine's ng port."""
    inits = ds["spec"]["template"]["spec"]["initContainers"]
    c = next((i for i in inits if i["name"] == "ng-guard"), None)
    v = values["media"]
    coturn = {**CHART_VALUES["media"]["coturn"], **v.get("coturn", {})}
    if not (coturn["enabled"] and coturn["ngGuard"]):
        return ["media: ng-guard present with coturn or the guard off"] if c else []
    if c is None:
        return ["media: coturn runs without the ng-guard init container"]
    if c["command"][0] != "dialtone-ng-guard" or c["securityContext"]["capabilities"]["add"] != ["NET_ADMIN"]:
        return [f"media ng-guard: unexpected container {c['command']}"]
    problem, rules = ng_guard_run.drop_rules(c["command"][1:], runs=2)
    if problem:
        return [f"media ng-guard: {problem}"]
    ng = {**CHART_VALUES["media"]["rtpengine"], **v.get("rtpengine", {})}["ngPort"]
    want = f"udp dport {ng} udp sport {coturn['relayPortMin']}-{coturn['relayPortMax']}"
    if len(rules) != 1 or want not in rules[0]:
        return [f"media ng-guard: rules {rules}, want one with '{want}'"]
    print(f"  media ng-guard: ran twice in a network namespace; one rule: {want} drop")
    return []


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping naming a key twice (Kubernetes would keep one
    of them silently; yaml.safe_load keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def pod_spec(doc):
    """The pod spec of a workload (Pod, Deployment, StatefulSet, DaemonSet, Job, CronJob),
    else None."""
    if doc.get("kind") == "Pod":
        return doc.get("spec")
    if doc.get("kind") == "CronJob":
        return dig(doc, "spec.jobTemplate.spec.template.spec")
    return dig(doc, "spec.template.spec")


def house_rules(docs, values):
    """What every rendering must hold, whatever the values: pods mount no API token,
    PodDisruptionBudgets never block a drain, a DaemonSet edge's id is its node's name,
    each ServiceMonitor names the job the alert rules and dashboards select, every file an
    environment variable names under /etc/dialtone is mounted, and the OTLP headers (a
    collector's credentials) come from a Secret, never a literal value."""
    problems = []
    services = [d for d in docs if d.get("kind") == "Service"]
    for d in docs:
        kind, name = d.get("kind"), dig(d, "metadata.name")
        spec = pod_spec(d)
        if spec is not None and spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{kind} {name}: mounts a ServiceAccount token")
        for c in (spec or {}).get("containers", []):
            mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
            for e in c.get("env", []):
                value = e.get("value") or ""
                if value.startswith("/etc/dialtone/") and not any(
                        value == m or value.startswith(m.rstrip("/") + "/") for m in mounts):
                    problems.append(f"{kind} {name}: {e['name']} names {value}, which no volume mounts")
                if e["name"].endswith("_HEADERS") and "value" in e:
                    problems.append(f"{kind} {name}: {e['name']} is a literal value, not a Secret's")
        if kind == "PodDisruptionBudget" and "minAvailable" in d["spec"]:
            problems.append(f"PodDisruptionBudget {name}: minAvailable blocks a drain at one replica")
        if kind == "DaemonSet" and name.endswith("-edge"):
            env = {e["name"] for e in spec["containers"][0]["env"]}
            if "DIALTONE_NODE_ID" in env or "DIALTONE_NODE_NAME" not in env:
                problems.append(f"DaemonSet {name}: the edge id must come from the node name")
        if kind == "ServiceMonitor":
            label = dig(d, "spec.jobLabel")
            want = dig(d, "spec.selector.matchLabels") or {}
            jobs = {dig(s, "metadata.labels").get(label) for s in services
                    if want.items() <= (dig(s, "metadata.labels") or {}).items()}
            if not label or not jobs or not all(j and (j.startswith("dialtone-") or j == "etcd")
                                                for j in jobs):
                problems.append(f"ServiceMonitor {name}: jobs {jobs} (jobLabel {label!r}); "
                                "the alert rules select job=\"dialtone-<role>\"")
    return problems


def monitoring_problems(docs):
    """The PrometheusRule carries exactly deploy/prometheus/alerts.yml's rules (each with
    its runbook), and the dashboard ConfigMaps exactly deploy/grafana's dashboards."""
    problems = []
    for d in docs:
        if d.get("kind") == "PrometheusRule":
            want = yaml.safe_load(ALERTS.read_text())["groups"]
            if d["spec"]["groups"] != want:
                problems.append("PrometheusRule: its groups differ from deploy/prometheus/alerts.yml")
            for g in d["spec"]["groups"]:
                for r in g["rules"]:
                    if "runbook_url" not in r.get("annotations", {}):
                        problems.append(f"PrometheusRule: {r.get('alert')} has no runbook_url")
        if d.get("kind") == "ConfigMap" and "-dashboard-" in dig(d, "metadata.name"):
            for f, text in d["data"].items():
                if json.loads(text) != json.loads((DASHBOARDS / f).read_text()):
                    problems.append(f"dashboard ConfigMap: {f} differs from deploy/grafana/{f}")
    return problems


def check(name, values):
    problems = []
    report = helm_python.lint(str(CHART), values, strict=True, kube_version="v" + KUBE_VERSION)
    for m in report.get("messages") or []:
        if m.get("severity", 0) >= 2:
            problems.append(f"lint: {m.get('path')}: {m.get('error')}")
    problems += [f"lint: {e}" for e in report.get("errors") or []]
    chart = helm_python.Chart.load(str(CHART))
    try:
        merged = chart.merge_values(values)
        chart.validate_schema(merged)
        rendered = chart.render(merged, name="dt", namespace="voice", is_install=True)
    finally:
        chart.close()
    kinds = []
    docs = []
    # The edge StatefulSet first: the edge-group Job's check runs its pods' start line.
    EDGE_STS.clear()
    for path, text in rendered.items():
        if not path.endswith("edge.yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "StatefulSet" and dig(doc, "metadata.name") == "dt-dialtone-edge":
                EDGE_STS["doc"] = doc
    for path, text in sorted(rendered.items()):
        if not path.endswith(".yaml"):
            continue
        try:
            loaded = list(yaml.load_all(text, Loader=UniqueKeyLoader))
        except yaml.YAMLError as e:
            problems.append(f"{path}: {e}")
            continue
        for doc in loaded:
            if not doc:
                continue
            docs.append(doc)
            kind = (doc.get("apiVersion"), doc.get("kind"))
            if kind[1] == "Job" and dig(doc, "metadata.name") == "dt-dialtone-edge-group":
                problems += run_edge_group_job(doc, values)
            if kind[1] == "CronJob" and dig(doc, "metadata.name") == "dt-dialtone-etcd-snapshot":
                problems += run_etcd_snapshot(doc, values)
            if kind[1] == "CronJob" and dig(doc, "metadata.name") == "dt-dialtone-backup":
                problems += run_backup_cronjob(doc, values)
            if kind[1] == "DaemonSet" and dig(doc, "metadata.name") == "dt-dialtone-edge":
                problems += check_daemonset_external(doc, values)
            if kind[1] == "DaemonSet" and dig(doc, "metadata.name") == "dt-dialtone-media":
                problems += run_media_register(doc, values)
                problems += run_ng_guard(doc, values)
            kinds.append(f"{kind[1]}/{dig(doc, 'metadata.name')}")
            if kind in CUSTOM:
                problems += [
                    f"{path}: {kind[1]} lacks {f}" for f in CUSTOM[kind] if dig(doc, f) is None
                ]
                continue
            try:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{path}: {kind[1]} {dig(doc, 'metadata.name')}: {e.message}")
    problems += house_rules(docs, values)
    problems += monitoring_problems(docs)
    print(f"{name}: {len(kinds)} manifests ({', '.join(kinds)})")
    return problems


def render(values):
    """The chart rendered offline (as helm template, Argo CD and Flux do): path -> text."""
    chart = helm_python.Chart.load(str(CHART))
    try:
        return chart.render(chart.merge_values(values), name="dt", namespace="voice",
                            is_install=True)
    finally:
        chart.close()


def gitops_problems():
    """GitOps: with secrets.autoGenerate=false two offline renders are identical (no key
    rotates on a sync), and a Secret left unnamed fails the render, naming its value."""
    problems = []
    values = yaml.safe_load((CHART / "ci" / "gitops-values.yaml").read_text())
    if render(values) != render(values):
        problems.append("gitops: two renders of ci/gitops-values.yaml differ")
    missing = {**values, "secrets": {**values["secrets"], "apiTokens": {"existingSecret": ""}}}
    try:
        render(missing)
        problems.append("gitops: autoGenerate=false rendered without secrets.apiTokens.existingSecret")
    except helm_python.HelmError as e:
        if "secrets.apiTokens.existingSecret" not in str(e):
            problems.append(f"gitops: the failure does not name the value: {e}")
    if not problems:
        print("  gitops: two offline renders identical; an unnamed Secret fails, naming it")
    return problems


def main():
    cases = [("default values", {})]
    for f in sorted((CHART / "ci").glob("*.yaml")):
        cases.append((f"ci/{f.name}", yaml.safe_load(f.read_text()) or {}))
    failed = False
    for name, values in cases:
        for p in check(name, values):
            failed = True
            print(f"  {name}: {p}")
    for p in gitops_problems():
        failed = True
        print(f"  {p}")
    # The README's values table is what values.yaml documents.
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "helm_values_table.py")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        failed = True
        print(f"  {r.stderr.strip()}")
    else:
        print("  values table: the chart README lists every value of values.yaml")
    # A value of the wrong type must be refused by the schema, naming the key.
    chart = helm_python.Chart.load(str(CHART))
    try:
        chart.validate_schema(chart.merge_values({"edge": {"kind": "Deployment"}}))
        print("  the schema accepted edge.kind=Deployment")
        failed = True
    except helm_python.HelmValuesError as e:
        if "kind" not in str(e):
            print(f"  schema error does not name the key: {e}")
            failed = True
    finally:
        chart.close()
    if failed:
        sys.exit(1)
    print("helm chart: lint, schema and Kubernetes validation passed")


if __name__ == "__main__":
    main()
