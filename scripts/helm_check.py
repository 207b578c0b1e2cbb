"""Lints and renders the Helm chart for its default values and every file in
helm/dialtone/ci/, checks the values against values.schema.json, and validates every
rendered manifest against the Kubernetes schemas (kubernetes-validate, strict: unknown
fields are errors). Custom resources without a published schema (the Prometheus
Operator's ServiceMonitor) are checked for their required fields only.

Run by scripts/helm-check.sh, which installs helm-python-sdk and kubernetes-validate."""

import pathlib
import sys

import helm_python
import kubernetes_validate
import yaml

CHART = pathlib.Path(__file__).resolve().parent.parent / "helm" / "dialtone"
KUBE_VERSION = "1.30.0"
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor"): ["spec.selector", "spec.endpoints"]}


def dig(obj, dotted):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


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
    for path, text in sorted(rendered.items()):
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            kind = (doc.get("apiVersion"), doc.get("kind"))
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
    print(f"{name}: {len(kinds)} manifests ({', '.join(kinds)})")
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
