"""Render every overlay of deploy/k8s and validate every object offline.

- Built-in kinds: kubernetes-validate against the Kubernetes 1.31 schemas, strict (unknown
  fields are errors).
- Strimzi (Kafka, KafkaNodePool, KafkaTopic, KafkaUser) and CloudNativePG (Cluster,
  ScheduledBackup) resources: required fields and types of their CRDs, plus the facts the
  services rely on (bootstrap Service name and port, the operator-made Secrets, topic names,
  partitions and replicas against the broker count).
- The settings each Deployment gets (ConfigMap + env, secrets filled with dummies) load into
  the real `Settings` class, and the NetworkPolicies are evaluated for the flows we need and
  for flows that must stay closed.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from claimdesk import CONTEXTS, SERVICES
from claimdesk.settings import DEFAULT_PORTS, Settings

from tests.unit.ops.kustomize import Obj, kubectl_render, render

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
K8S_VERSION = "1.31"
CR_GROUPS = {"kafka.strimzi.io", "postgresql.cnpg.io"}
# Secrets the prod overlay references and operators or people create (docs/operations.md).
EXTERNAL_SECRETS = {"prod": {"claimdesk-secrets", "claimdesk-pg-backup"}, "dev": set()}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    return request.param, render(K8S / "overlays" / request.param)


def by_kind(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def one(objects: list[Obj], kind: str) -> Obj:
    found = list(by_kind(objects, kind).values())
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("name", OVERLAYS)
def test_renderer_matches_kubectl_kustomize(name: str) -> None:
    """Our renderer is only trusted because it agrees with kustomize where kubectl exists."""
    reference = kubectl_render(K8S / "overlays" / name)
    if reference is None:
        pytest.skip("kubectl not installed: the manifests are still validated by our renderer")
    ours = render(K8S / "overlays" / name)

    def index(objs: list[Obj]) -> dict[str, str]:
        return {
            f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": json.dumps(
                o, sort_keys=True
            )
            for o in objs
        }

    a, b = index(ours), index(reference)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], f"{name}: {k} differs from kubectl kustomize"


def test_builtin_objects_validate_against_kubernetes_schemas(
    overlay: tuple[str, list[Obj]],
) -> None:
    name, objects = overlay
    checked = 0
    for obj in objects:
        if obj["apiVersion"].split("/")[0] in CR_GROUPS:
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{name}: {obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )
        checked += 1
    assert checked >= 30


def test_kubernetes_validate_rejects_a_broken_object(overlay: tuple[str, list[Obj]]) -> None:
    """The validator really runs strict: an unknown field and a wrong type are caught."""
    _, objects = overlay
    deployment = json.loads(json.dumps(by_kind(objects, "Deployment")["intake"]))
    deployment["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment = json.loads(json.dumps(by_kind(objects, "Deployment")["intake"]))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


# -- custom resources: required fields of the Strimzi and CloudNativePG CRDs -----------------

CRD_REQUIRED: dict[tuple[str, str], dict[str, type | tuple[type, ...]]] = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): {
        "spec.kafka": dict,
        "spec.kafka.listeners": list,
    },
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): {
        "spec.replicas": int,
        "spec.roles": list,
        "spec.storage": dict,
        "spec.storage.type": str,
        "metadata.labels.strimzi.io/cluster": str,
    },
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): {
        "spec.partitions": int,
        "spec.replicas": int,
        "metadata.labels.strimzi.io/cluster": str,
    },
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): {
        "spec.authentication.type": str,
        "metadata.labels.strimzi.io/cluster": str,
    },
    ("postgresql.cnpg.io/v1", "Cluster"): {
        "spec.instances": int,
        "spec.storage.size": str,
    },
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): {
        "spec.schedule": str,
        "spec.cluster.name": str,
    },
}


def dig(obj: Any, dotted: str) -> Any:
    """Follow a path; label keys with dots are matched greedily (metadata.labels.a.b/c)."""
    parts = dotted.split(".")
    cur = obj
    i = 0
    while i < len(parts):
        if not isinstance(cur, dict):
            return None
        for j in range(len(parts), i, -1):
            k = ".".join(parts[i:j])
            if k in cur:
                cur = cur[k]
                i = j
                break
        else:
            return None
    return cur


def test_custom_resources_have_required_fields(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    seen = set()
    for obj in objects:
        if obj["apiVersion"].split("/")[0] not in CR_GROUPS:
            continue
        spec = CRD_REQUIRED.get((obj["apiVersion"], obj["kind"]))
        assert spec is not None, (
            f"{name}: unchecked custom resource {obj['apiVersion']} {obj['kind']}"
        )
        seen.add(obj["kind"])
        for path, typ in spec.items():
            value = dig(obj, path)
            assert isinstance(value, typ) and not isinstance(value, bool), (
                f"{name}: {obj['kind']}/{obj['metadata']['name']}: {path} must be {typ}, got {value!r}"
            )
        assert obj["metadata"]["name"].replace("-", "").isalnum()
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster"} <= seen


def test_kafka_is_kraft_and_sized_for_the_topics(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    kafka = one(objects, "Kafka")
    ann = kafka["metadata"]["annotations"]
    assert ann["strimzi.io/kraft"] == "enabled"
    assert ann["strimzi.io/node-pools"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    pools = by_kind(objects, "KafkaNodePool").values()
    roles = {r for p in pools for r in p["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    for pool in pools:
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert set(pool["spec"]["roles"]) <= {"controller", "broker"}
        assert pool["spec"]["storage"]["type"] in ("jbod", "persistent-claim", "ephemeral")
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    assert controllers % 2 == 1, "KRaft needs an odd number of controllers"
    config = kafka["spec"]["kafka"]["config"]
    assert config["auto.create.topics.enable"] is False
    assert config["offsets.topic.replication.factor"] <= brokers
    topics = by_kind(objects, "KafkaTopic")
    names = {t["spec"].get("topicName", t["metadata"]["name"]) for t in topics.values()}
    assert names == {f"claimdesk.{c}" for c in CONTEXTS}
    for topic in topics.values():
        spec = topic["spec"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert 1 <= spec["replicas"] <= brokers
        min_isr = int(
            spec.get("config", {}).get("min.insync.replicas", config["min.insync.replicas"])
        )
        assert min_isr <= spec["replicas"]
        if name == "prod":
            assert spec["partitions"] >= 12
            assert spec["replicas"] == 3
            assert min_isr == 2
    if name == "prod":
        assert brokers >= 3


def test_postgres_has_replicas(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    pg = one(objects, "Cluster")
    assert pg["spec"]["bootstrap"]["initdb"]["database"] == "claimdesk"
    if name == "prod":
        assert pg["spec"]["instances"] >= 3
        assert pg["spec"]["minSyncReplicas"] >= 1
        store = pg["spec"]["backup"]["barmanObjectStore"]
        assert store["destinationPath"].startswith("s3://")
        backup = one(objects, "ScheduledBackup")
        assert backup["spec"]["cluster"]["name"] == pg["metadata"]["name"]
        assert len(backup["spec"]["schedule"].split()) == 6  # CNPG cron has seconds
    else:
        assert pg["spec"]["instances"] >= 1


# -- the services ------------------------------------------------------------------------------


def container_env(
    objects: list[Obj], deployment: Obj, secrets: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The environment the container would see (envFrom first, env wins), $(VAR) expanded."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    configmaps = by_kind(objects, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        if "value" in item:
            value = item["value"]
            for k, v in env.items():
                value = value.replace(f"$({k})", v)
            env[item["name"]] = value
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] in secrets, f"secret {ref['name']} is not provided"
            env[item["name"]] = secrets[ref["name"]].get(
                ref["key"], f"<{ref['name']}/{ref['key']}>"
            )
        else:
            env[item["name"]] = "<field>"
    return env


def available_secrets(name: str, objects: list[Obj]) -> dict[str, dict[str, str]]:
    """Secrets that exist at run time: generated here, made by the operators, or external."""
    out: dict[str, dict[str, str]] = {}
    for secret in by_kind(objects, "Secret").values():
        out[secret["metadata"]["name"]] = {
            k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()
        }
    pg = one(objects, "Cluster")
    out[f"{pg['metadata']['name']}-app"] = {
        "uri": f"postgresql://claimdesk:pw@{pg['metadata']['name']}-rw:5432/claimdesk"
    }
    for user in by_kind(objects, "KafkaUser"):
        out[user] = {"password": "generated-by-strimzi"}
    for external in EXTERNAL_SECRETS[name]:
        out[external] = {"token-secret": "s" * 40, "admin-token": "a" * 40}
    return out


def test_each_service_is_complete_and_locked_down(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    deployments = by_kind(objects, "Deployment")
    assert set(deployments) == set(SERVICES)
    accounts = by_kind(objects, "ServiceAccount")
    services = by_kind(objects, "Service")
    pdbs = by_kind(objects, "PodDisruptionBudget")
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    for svc, dep in deployments.items():
        pod = dep["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in dep["spec"]["selector"]["matchLabels"].items())
        spec = pod["spec"]
        assert spec["serviceAccountName"] == svc and svc in accounts
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        (c,) = spec["containers"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert {"/tmp"} == {m["mountPath"] for m in c["volumeMounts"]}  # noqa: S108
        assert c["command"] == ["claimdesk", "serve", svc]
        image = c["image"]
        assert image.rsplit(":", 1)[0].endswith(f"claimdesk/{svc}") and ":" in image
        port = DEFAULT_PORTS[svc]
        assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= c["resources"][kind].keys()
        service = services[svc]
        assert service["spec"]["ports"][0]["port"] == port
        assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
        pdb = pdbs[svc]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        hpa = hpas[svc]
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": svc,
        }
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        if name == "prod":
            assert hpa["spec"]["minReplicas"] >= 2
            assert dep["spec"]["replicas"] >= 2


def test_each_service_gets_valid_settings_that_match_the_infrastructure(
    overlay: tuple[str, list[Obj]],
) -> None:
    name, objects = overlay
    secrets = available_secrets(name, objects)
    kafka = one(objects, "Kafka")
    listener = kafka["spec"]["kafka"]["listeners"][0]
    topics = list(by_kind(objects, "KafkaTopic").values())
    users = by_kind(objects, "KafkaUser")
    known = {f"CLAIMDESK_{f.upper()}" for f in Settings.model_fields} | {"CLAIMDESK_SERVICE"}
    for svc, dep in by_kind(objects, "Deployment").items():
        env = container_env(objects, dep, secrets)
        unknown = sorted(k for k in env if k.startswith("CLAIMDESK_") and k not in known)
        assert not unknown, f"{name}/{svc}: settings nobody reads: {unknown}"
        s = Settings(
            **{
                k[len("CLAIMDESK_") :].lower(): v
                for k, v in env.items()
                if k.startswith("CLAIMDESK_") and k != "CLAIMDESK_SERVICE"
            }
        )
        assert s.environment == ("dev" if name == "dev" else "prod")
        assert s.host == "0.0.0.0"  # noqa: S104
        assert s.port(svc) == DEFAULT_PORTS[svc]
        assert (
            s.kafka_bootstrap == f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"
        )
        assert s.kafka_enable_idempotence is True
        assert s.kafka_session_timeout_ms >= 10000
        assert s.kafka_fetch_max_wait_ms == 500
        assert s.database_url is not None and s.database_url.startswith("postgresql://")
        assert {t["spec"]["partitions"] for t in topics} == {s.kafka_partitions}
        assert {t["spec"]["replicas"] for t in topics} == {s.kafka_replication_factor}
        assert {t["spec"]["topicName"] for t in topics} == {s.topic(c) for c in CONTEXTS}
        for other in SERVICES:
            assert s.url(other) == f"http://{other}:{DEFAULT_PORTS[other]}"
        assert env["OTEL_SERVICE_NAME"] == svc
        auth = listener.get("authentication", {}).get("type")
        if auth == "scram-sha-512":
            assert s.kafka_security_protocol == "SASL_PLAINTEXT"
            assert s.kafka_sasl_mechanism == "SCRAM-SHA-512"
            assert s.kafka_sasl_username in users
            assert s.kafka_sasl_password is not None
        else:
            assert auth is None and s.kafka_security_protocol == "PLAINTEXT"
    if name == "prod":
        assert one(objects, "Kafka")["spec"]["kafka"]["authorization"]["type"] == "simple"
        for user in users.values():
            assert user["spec"]["authentication"]["type"] == "scram-sha-512"


def test_kafka_acls_match_what_each_service_consumes_and_publishes() -> None:
    objects = render(K8S / "overlays" / "prod")
    consumes = {
        "intake": {"dispatch", "complaints"},
        "dispatch": {"intake"},
        "complaints": {"dispatch", "intake"},
        "analytics": {"intake", "dispatch", "complaints"},
    }
    for svc in SERVICES:
        acls = by_kind(objects, "KafkaUser")[f"claimdesk-{svc}"]["spec"]["authorization"]["acls"]
        reads = {
            a["resource"]["name"].removeprefix("claimdesk.")
            for a in acls
            if a["resource"]["type"] == "topic" and "Read" in a["operations"]
        }
        writes = {
            a["resource"]["name"].removeprefix("claimdesk.")
            for a in acls
            if a["resource"]["type"] == "topic" and "Write" in a["operations"]
        }
        groups = [a for a in acls if a["resource"]["type"] == "group"]
        assert reads == consumes[svc]
        assert writes == ({svc} if svc in CONTEXTS else set())
        assert groups == [
            {
                "resource": {"type": "group", "name": f"{svc}.", "patternType": "prefix"},
                "operations": ["Read", "Describe"],
            }
        ]


def test_secrets_are_placeholders_in_dev_and_references_in_prod() -> None:
    dev = by_kind(render(K8S / "overlays" / "dev"), "Secret")
    assert set(dev) == {"claimdesk-secrets"}
    values = {k: base64.b64decode(v).decode() for k, v in dev["claimdesk-secrets"]["data"].items()}
    assert set(values) == {"token-secret", "admin-token"}
    assert all("dev-only" in v for v in values.values())
    prod = render(K8S / "overlays" / "prod")
    assert by_kind(prod, "Secret") == {}, "prod must reference existing secrets, not ship them"


def test_grafana_dashboard_configmap_is_the_provisioned_dashboard(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    cm = by_kind(objects, "ConfigMap")["claimdesk-grafana-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    source = (ROOT / "deploy/grafana/dashboards/claimdesk.json").read_text()
    assert cm["data"]["claimdesk.json"] == source
    assert json.loads(source)["panels"]


# -- network policies ----------------------------------------------------------------------------


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    match = (selector or {}).get("matchLabels", {})
    assert not (selector or {}).get("matchExpressions"), "evaluator handles matchLabels only"
    return all(labels.get(k) == v for k, v in match.items())


def port_ok(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        lo = p["port"]
        if lo <= port <= p.get("endPort", lo):
            return True
    return False


def peer_ok(peer: dict[str, Any], ns: str, dest: dict[str, Any], policy_ns: str) -> bool:
    if "ipBlock" in peer:
        if "ip" not in dest:
            return False
        ip = ipaddress.ip_address(dest["ip"])
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if "ip" in dest:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], dest["ns_labels"]):
            return False
    elif dest["ns"] != policy_ns:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], dest["labels"])


def allowed(  # noqa: PLR0917
    objects: list[Obj],
    direction: str,
    pod: dict[str, str],
    ns: str,
    other: dict[str, Any],
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether NetworkPolicies let `pod` (in ns) talk to / hear from `other` on a port."""
    kind = "Egress" if direction == "egress" else "Ingress"
    relevant = [
        p
        for p in by_kind(objects, "NetworkPolicy").values()
        if p["metadata"].get("namespace", ns) == ns
        and selects(p["spec"]["podSelector"], pod)
        and kind in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not relevant:
        return True
    peers_key = "to" if direction == "egress" else "from"
    for policy in relevant:
        for rule in policy["spec"].get(direction, []):
            if port_ok(rule.get("ports"), port, protocol) and (
                not rule.get(peers_key) or any(peer_ok(p, ns, other, ns) for p in rule[peers_key])
            ):
                return True
    return False


def test_network_policies_allow_only_what_the_services_need(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    ns = one(objects, "Namespace")["metadata"]["name"]
    ns_labels = {"kubernetes.io/metadata.name": ns}
    pod = {
        s: by_kind(objects, "Deployment")[s]["spec"]["template"]["metadata"]["labels"]
        for s in SERVICES
    }
    kafka_pod = {
        "strimzi.io/cluster": "claimdesk",
        "strimzi.io/kind": "Kafka",
        "strimzi.io/name": "claimdesk-kafka",
    }
    pg_pod = {"cnpg.io/cluster": "claimdesk-pg", "cnpg.io/instanceRole": "primary"}
    dns = {
        "ns": "kube-system",
        "ns_labels": {"kubernetes.io/metadata.name": "kube-system"},
        "labels": {"k8s-app": "kube-dns"},
    }
    here = {"ns": ns, "ns_labels": ns_labels}
    stranger = {
        "ns": "other",
        "ns_labels": {"kubernetes.io/metadata.name": "other"},
        "labels": {"app": "x"},
    }
    internet = {"ip": "93.184.216.34"}
    for svc in SERVICES:
        p = pod[svc]
        assert allowed(objects, "egress", p, ns, dns, 53, "UDP")
        assert allowed(objects, "egress", p, ns, {**here, "labels": kafka_pod}, 9092)
        assert allowed(objects, "egress", p, ns, {**here, "labels": pg_pod}, 5432)
        assert not allowed(objects, "egress", p, ns, {**here, "labels": pg_pod}, 22)
        assert not allowed(objects, "egress", p, ns, stranger, 5432)
        assert not allowed(objects, "egress", p, ns, {"ip": "10.1.2.3"}, 443)  # no private ranges
        assert not allowed(objects, "egress", p, ns, internet, 80)
        for other in SERVICES:
            assert allowed(
                objects, "egress", p, ns, {**here, "labels": pod[other]}, DEFAULT_PORTS[other]
            )
            assert allowed(
                objects, "ingress", pod[other], ns, {**here, "labels": p}, DEFAULT_PORTS[other]
            )
        ingress_ctrl = {
            "ns": "ingress-nginx",
            "ns_labels": {"kubernetes.io/metadata.name": "ingress-nginx"},
            "labels": {},
        }
        assert allowed(objects, "ingress", p, ns, ingress_ctrl, DEFAULT_PORTS[svc])
        assert not allowed(objects, "ingress", p, ns, stranger, DEFAULT_PORTS[svc])
        # Postgres hears from the services, not from strangers.
        assert allowed(objects, "ingress", pg_pod, ns, {**here, "labels": p}, 5432)
    assert not allowed(objects, "ingress", pg_pod, ns, stranger, 5432)
    # Only intake (insurer webhooks) and dispatch (team webhooks, SMS) reach the internet.
    reach = {s for s in SERVICES if allowed(objects, "egress", pod[s], ns, internet, 443)}
    assert reach == {"intake", "dispatch"}, name
    # Kafka brokers: Strimzi's own policy admits only the services.
    peers = one(objects, "Kafka")["spec"]["kafka"]["listeners"][0]["networkPolicyPeers"]
    assert all(selects(peer["podSelector"], pod[s]) for peer in peers for s in SERVICES)
    assert not any(selects(peer["podSelector"], {"app": "x"}) for peer in peers)
