"""Runs the media image's dialtone-ng-guard (deploy/media/ng-guard.sh) in a network
namespace of its own, as the Helm chart's init container and the compose service run it on
a node, so the checks of both see the rule it really installs without touching this
machine's firewall. Needs root (ip netns, nft)."""

import os
import pathlib
import subprocess

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "media" / "ng-guard.sh"


def drop_rules(args, runs=1):
    """Runs the guard with `args` `runs` times in one namespace; returns (problem or None,
    the drop rules of the table after the last run)."""
    ns = f"dt-ngguard-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
        return "cannot create a network namespace (run as root)", []
    try:
        for _ in range(runs):
            r = subprocess.run(["ip", "netns", "exec", ns, "sh", str(SCRIPT)] + list(args),
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                return f"failed: {r.stderr.strip()}", []
        return None, [line.strip() for line in r.stdout.splitlines() if "drop" in line]
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
