"""deploy/kubernetes/: the manifests parse (PyYAML), fit together (replicas = shards, one
volume per pod where state_path lives, probes on the metrics port's /healthz, the Secret's
keys where the config reads them) and take the shard from the pod's ordinal."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from poller.config import parse_settings, secrets_mode
from poller.shards import parse_shard, shard_path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
ORDINAL_LABEL = "metadata.labels['apps.kubernetes.io/pod-index']"


def documents() -> list[dict[str, Any]]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return out


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (c,) = pod_spec["containers"]
    return c


def test_every_manifest_parses_and_kustomize_lists_the_deployment() -> None:
    kinds = sorted(d["kind"] for d in documents())
    assert kinds == [
        "ConfigMap",
        "Kustomization",
        "PersistentVolumeClaim",
        "Pod",
        "Secret",
        "Service",
        "StatefulSet",
    ]
    kustomization = one("Kustomization")
    assert kustomization["resources"] == [
        "configmap.yaml",
        "secret.yaml",
        "service.yaml",
        "statefulset.yaml",
    ]


def test_the_statefulset_runs_one_pod_per_shard_with_a_volume_each() -> None:
    sts = one("StatefulSet", "bcx-poller")
    service = one("Service", "bcx-poller")
    config = tomllib.loads(one("ConfigMap")["data"]["config.toml"])
    with secrets_mode("skip"):
        settings = parse_settings(config)  # the example config is a valid one
    assert sts["spec"]["replicas"] == settings.poller.shards == 3
    assert service["spec"]["clusterIP"] == "None"  # headless
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    pod = sts["spec"]["template"]["spec"]
    c = container(pod)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # every shard's state file is on its own pod's volume
    for k in range(settings.poller.shards):
        path = shard_path(settings.poller.state_path, k)
        assert path.parent == Path(mounts[claim["metadata"]["name"]])
    assert c["args"][:3] == ["run", "--config", "/etc/bcx-poller/config.toml"]
    assert Path(mounts["config"]) == Path("/etc/bcx-poller/config.toml")
    timeout = float(c["args"][c["args"].index("--shutdown-timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] > timeout
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_shard_comes_from_the_pod_ordinal(monkeypatch: pytest.MonkeyPatch) -> None:
    c = container(one("StatefulSet")["spec"]["template"]["spec"])
    args = c["args"]
    assert args[args.index("--shard") + 1] == "auto"
    env = {e["name"]: e for e in c["env"]}
    assert env["BCX_POLLER_SHARD"]["valueFrom"]["fieldRef"]["fieldPath"] == ORDINAL_LABEL
    # what `--shard auto` makes of each source: the label's value, or the pod name
    monkeypatch.setenv("BCX_POLLER_SHARD", "2")
    assert parse_shard("auto") == 2
    monkeypatch.delenv("BCX_POLLER_SHARD")
    monkeypatch.setenv("HOSTNAME", "bcx-poller-2")
    assert parse_shard("auto") == 2


def test_probes_use_healthz_on_the_metrics_port() -> None:
    sts = one("StatefulSet")
    c = container(sts["spec"]["template"]["spec"])
    config = tomllib.loads(one("ConfigMap")["data"]["config.toml"])
    port = int(config["metrics"]["listen"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert ports[get["port"]] == port
    assert one("Service")["spec"]["ports"][0]["port"] == port


def test_secrets_come_from_the_secret_where_the_config_reads_them() -> None:
    sts = one("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    c = container(pod)
    env = {e["name"]: e.get("value") for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = one("Secret")
    assert volumes["credentials"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert mounts["credentials"] == env["CREDENTIALS_DIRECTORY"]
    assert volumes["config"]["configMap"]["name"] == one("ConfigMap")["metadata"]["name"]
    config = tomllib.loads(one("ConfigMap")["data"]["config.toml"])
    wanted = {a["password_file"] for a in config["accounts"]} | {
        h["webhook_url_file"] for h in config["handlers"] if "webhook_url_file" in h
    }
    assert wanted <= set(secret["stringData"])
    text = one("ConfigMap")["data"]["config.toml"]
    assert "password =" not in text  # no secret in the ConfigMap


def test_the_reshard_pod_mounts_every_old_and_new_shard() -> None:
    pod = one("Pod", "bcx-poller-reshard")
    c = container(pod["spec"])
    to = int(c["args"][c["args"].index("--to") + 1])
    claims = sorted(
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    )
    assert claims == [f"state-bcx-poller-{k}" for k in range(to)]
    assert one("PersistentVolumeClaim")["metadata"]["name"] == f"state-bcx-poller-{to - 1}"
    env = {e["name"]: e["value"] for e in c["env"]}
    template = env["BCX_POLLER_POLLER__STATE_PATH"]
    config = tomllib.loads(one("ConfigMap")["data"]["config.toml"])
    pod_file = Path(config["poller"]["state_path"]).name
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    for k in range(to):
        assert shard_path(template, k) == Path(mounts[f"shard-{k}"]) / pod_file.replace(
            "{shard}", str(k)
        )
