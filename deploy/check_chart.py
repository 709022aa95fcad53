"""Check the Helm chart offline: strict lint, render, and strict validation of every rendered
manifest against a pinned Kubernetes version (README "Deploy").

    .venv/bin/python deploy/check_chart.py [--values FILE] [--kube-version 1.30.0]

Prints each problem and exits 1 if there is one, else prints what it rendered and exits 0.
No ``helm`` binary and no cluster: Helm's own Go SDK (``helm-python-sdk``) lints and renders,
``kubernetes-validate`` holds the Kubernetes API schemas. ``--strict`` validation rejects
fields Kubernetes does not know (a misspelled ``readinesProbe`` passes without it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

CHART = Path(__file__).resolve().parent / "chart" / "telephony"
KUBE_VERSION = "1.30.0"  # the oldest version still in wide use whose schemas we validate against
CHECK_VALUES: dict[str, Any] = {  # a fleet, so every template renders
    "redis": {"url": "redis://redis:6379/0"},
    "ingress": {"enabled": True, "host": "calls.example.com"},
    "autoscaling": {"enabled": True},
}


def check(
    chart: Path = CHART, values: dict[str, Any] | None = None, kube_version: str = KUBE_VERSION
) -> tuple[list[str], list[dict[str, Any]]]:
    """Lint, render and validate ``chart`` with ``values`` (merged over its values.yaml).

    Returns (problems, the rendered manifests); no problems means the chart passed. Raises
    nothing for a bad chart or bad values: each is a problem."""
    values = CHECK_VALUES if values is None else values
    problems: list[str] = []
    report = helm.lint(str(chart), values, strict=True, kube_version=f"v{kube_version}")
    problems += [
        f"lint: {m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2
    ]
    problems += [f"lint: {e}" for e in report.get("errors") or []]
    try:
        rendered = helm.Chart.load(str(chart)).render(values, name="telephony", namespace="calls")
    except helm.HelmError as exc:
        return [*problems, f"render: {exc}"], []
    manifests = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            manifests.append(doc)
            kind = f"{path}: {doc.get('kind')}"
            try:
                kubernetes_validate.validate(doc, kube_version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.path)
                problems.append(f"validate {kind}: {where}: {exc.message}")
            except kubernetes_validate.utils.SchemaNotFoundError as exc:
                problems.append(f"validate {kind}: {exc}")
    return problems, manifests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--values", type=Path, help="a values file (default: a fleet, all on)")
    parser.add_argument("--kube-version", default=KUBE_VERSION)
    parser.add_argument("--chart", type=Path, default=CHART)
    args = parser.parse_args()
    values = yaml.safe_load(args.values.read_text()) if args.values else None
    problems, manifests = check(args.chart, values, args.kube_version)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    kinds = ", ".join(str(m["kind"]) for m in manifests)
    print(f"chart OK: lint --strict, rendered {kinds}; valid for Kubernetes {args.kube_version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
