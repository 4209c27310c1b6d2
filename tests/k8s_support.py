"""The Kubernetes manifests of deploy/k8s as rendered objects, and what a pod of them would see (tests/deploy).

Rendering is real kustomize: ``kubectl kustomize`` (kustomize v5, built into kubectl; the machine image carries
kubectl, scripts/system-deps.sh checks it). Nothing here talks to a cluster.

    objects = render("rtcd")                        # every object of the overlay, as dicts
    objects = deployed("rtcd")                      # the same with the Secret's placeholders replaced
    pod = PodView.of(objects, "DaemonSet", "callsd-rtcd")
    pod.env("rtcd")                                 # the container's environment, Secret values and fields resolved
    pod.config_file("rtcd")                         # (path, text) of the --config file, through its volume mount
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("integrated", "rtcd", "cluster")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")

# What the kubelet would put in a fieldRef: a pod's address and name, as a test stand-in.
FIELD_SAMPLES = {"status.podIP": "10.1.2.3", "metadata.name": "callsd-serve-0"}

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is needed to render deploy/k8s (kustomize v4 or newer is built into it); see "
                    "scripts/system-deps.sh")
    return path


def kustomize_version() -> str:
    """The kustomize built into kubectl, like ``v5.5.0``."""
    out = subprocess.run([kubectl(), "version", "--client", "-o", "json"], capture_output=True, text=True, check=True)
    return str(json.loads(out.stdout).get("kustomizeVersion", ""))


@functools.cache
def _rendered_text(directory: Path) -> str:
    done = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed:\n{done.stderr}")
    return done.stdout


def render(overlay: str) -> list[dict[str, Any]]:
    """Every object the overlay renders (fresh dicts each call: tests may change them)."""
    return render_directory(K8S / "overlays" / overlay)


def render_directory(directory: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(_rendered_text(directory)) if doc]


def operator_overlay(directory: Path, overlay: str, components: list[str]) -> Path:
    """An overlay of the operator's own in ``directory``: deploy/k8s/overlays/<overlay> plus the named
    components of deploy/k8s/components (kustomize wants relative paths)."""
    relative = Path(os.path.relpath(K8S, directory))
    lines = ["apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization", "resources:",
             f"  - {relative / 'overlays' / overlay}", "components:"]
    lines += [f"  - {relative / 'components' / name}" for name in components]
    (directory / "kustomization.yaml").write_text("\n".join(lines) + "\n")
    return directory


# What an operator puts in place of deploy/k8s/base/secrets.env's placeholders (which callsd refuses on purpose).
OPERATOR_SECRETS = {"AUTH_SECRET": "a" * 32, "TURN_STATIC_AUTH_SECRET": "t" * 32, "RTCD_CLIENT_ID": "callsd-serve",
                    "RTCD_AUTH_KEY": "k" * 40, "CLUSTER_SECRET": "c" * 32, "PGPASSWORD": "p" * 16}


def deployed(overlay: str) -> list[dict[str, Any]]:
    """The overlay as an operator applies it: rendered, with the Secret's placeholders replaced by real values."""
    objects = render(overlay)
    for secret in find(objects, "Secret", "callsd-secrets"):
        assert set(secret["data"]) == set(OPERATOR_SECRETS), "secrets.env and OPERATOR_SECRETS name the same keys"
        secret["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in OPERATOR_SECRETS.items()}
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workloads(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (o for o in objects if o["kind"] in WORKLOAD_KINDS)


def config_map_data(objects: list[dict[str, Any]], name: str) -> dict[str, str]:
    """The data of the ConfigMap called ``name`` (a generated one carries a hash suffix kustomize already wired)."""
    return dict(one(objects, "ConfigMap", name)["data"])


def secret_values(objects: list[dict[str, Any]], name: str) -> dict[str, str]:
    secret = one(objects, "Secret", name)
    values = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    values.update(secret.get("stringData", {}))
    return values


@dataclass(frozen=True, slots=True)
class PodView:
    """One workload's pod template, read the way the kubelet would start its containers."""

    objects: tuple[dict[str, Any], ...]
    workload: dict[str, Any]

    @classmethod
    def of(cls, objects: list[dict[str, Any]], kind: str, name: str) -> PodView:
        return cls(tuple(objects), one(objects, kind, name))

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.workload["spec"]["template"]["spec"])

    def container(self, name: str) -> dict[str, Any]:
        for container in self.spec.get("containers", []) + self.spec.get("initContainers", []):
            if container["name"] == name:
                return dict(container)
        raise AssertionError(f"{self.workload['metadata']['name']} has no container {name!r}")

    def env(self, container_name: str) -> dict[str, str]:
        """The container's environment: literal values with ``$(VAR)`` expanded, Secret keys, field samples."""
        out: dict[str, str] = {}
        for item in self.container(container_name).get("env", []):
            if "value" in item:
                out[item["name"]] = _VAR.sub(lambda m: out.get(m.group(1), m.group(0)), item["value"])
                continue
            source = item["valueFrom"]
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                values = secret_values(list(self.objects), ref["name"])
                assert ref["key"] in values, f"{item['name']}: Secret {ref['name']} has no key {ref['key']}"
                out[item["name"]] = values[ref["key"]]
            elif "fieldRef" in source:
                out[item["name"]] = FIELD_SAMPLES[source["fieldRef"]["fieldPath"]]
            else:
                raise AssertionError(f"{item['name']}: unexpected env source {source}")
        return out

    def config_file(self, container_name: str) -> tuple[str, str]:
        """The ``--config`` path in the container's args and the text the pod finds there, through its mounts."""
        args = list(self.container(container_name).get("args", []))
        path = args[args.index("--config") + 1]
        for mount in self.container(container_name).get("volumeMounts", []):
            prefix = mount["mountPath"].rstrip("/") + "/"
            if path.startswith(prefix):
                volume = next(v for v in self.spec["volumes"] if v["name"] == mount["name"])
                data = config_map_data(list(self.objects), volume["configMap"]["name"])
                key = path[len(prefix):]
                assert key in data, f"ConfigMap {volume['configMap']['name']} has no {key!r}"
                return path, data[key]
        raise AssertionError(f"{path} is not on any volume mount of {container_name}")
