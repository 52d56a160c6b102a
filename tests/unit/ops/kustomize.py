"""A small, faithful renderer for the subset of kustomize that deploy/k8s uses.

Users run `kubectl apply -k deploy/k8s/overlays/<env>` (kustomize is built into kubectl).
The tests render with `kubectl kustomize` when kubectl is installed and check that this
renderer gives the same objects; without kubectl they use this renderer alone, so the
manifests are validated on any machine.

Supported: `resources` (files and directories), `namespace`, `images`, `configMapGenerator`
and `secretGenerator` (files and literals, with `disableNameSuffixHash: true` only), and
`patches` (a file or inline; strategic merge for built-in kinds with their merge keys,
JSON merge semantics for custom resources, JSON 6902 operations with a `target`).
Anything else in a kustomization is an error, so the subset cannot grow silently.
"""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

SUPPORTED_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "configMapGenerator",
    "secretGenerator",
    "patches",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
BUILTIN_GROUPS = {
    "",
    "apps",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "batch",
    "rbac.authorization.k8s.io",
}
# Strategic-merge keys of the built-in lists we patch (from the Kubernetes API types).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumes": "name",
    "volumeMounts": "mountPath",
}


def group_of(obj: Obj) -> str:
    api = str(obj.get("apiVersion", ""))
    return api.split("/", maxsplit=1)[0] if "/" in api else ""


def key(obj: Obj) -> tuple[str, str, str, str]:
    meta = obj.get("metadata", {})
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def load_docs(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def render(directory: Path) -> list[Obj]:
    """Render the kustomization in `directory` into a list of objects."""
    kfile = directory / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text())
    unknown = set(k) - SUPPORTED_KEYS
    if unknown:
        raise ValueError(f"{kfile}: unsupported kustomize fields {sorted(unknown)}")
    objects: list[Obj] = []
    for res in k.get("resources", []):
        path = (directory / res).resolve()
        objects.extend(render(path) if path.is_dir() else load_docs(path))
    for gen, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for spec in k.get(gen, []):
            objects.append(generate(directory, spec, kind))
    for patch in k.get("patches", []):
        apply_patch(directory, objects, patch)
    if "namespace" in k:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = k["namespace"]
    for image in k.get("images", []):
        for obj in objects:
            set_image(obj, image)
    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        if key(obj) in seen:
            raise ValueError(f"duplicate object {key(obj)}")
        seen.add(key(obj))
    return objects


def generate(directory: Path, spec: Obj, kind: str) -> Obj:
    options = spec.get("options", {})
    if not options.get("disableNameSuffixHash"):
        raise ValueError(
            f"{spec['name']}: only generators with disableNameSuffixHash are supported"
        )
    data: dict[str, str] = {}
    for literal in spec.get("literals", []):
        name, _, value = literal.partition("=")
        data[name] = value
    for file in spec.get("files", []):
        name, _, path = file.rpartition("=") if "=" in file else ("", "", file)
        data[name or Path(path).name] = (directory / path).read_text()
    meta: Obj = {"name": spec["name"]}
    if options.get("labels"):
        meta["labels"] = dict(options["labels"])
    if kind == "Secret":
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta,
            "type": "Opaque",
            "data": encoded,
        }
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def matches(obj: Obj, target: Obj) -> bool:
    if "kind" in target and obj["kind"] != target["kind"]:
        return False
    if "name" in target and obj["metadata"]["name"] != target["name"]:
        return False
    if "group" in target and group_of(obj) != target["group"]:
        return False
    api = str(obj["apiVersion"])
    return not ("version" in target and api.rsplit("/", 1)[-1] != target["version"])


def apply_patch(directory: Path, objects: list[Obj], patch: Obj) -> None:
    text = (directory / patch["path"]).read_text() if "path" in patch else patch["patch"]
    body = yaml.safe_load(text)
    if isinstance(body, list):  # JSON 6902
        targets = [o for o in objects if matches(o, patch["target"])]
        if not targets:
            raise ValueError(f"patch target {patch['target']} matches nothing")
        for obj in targets:
            for op in body:
                json6902(obj, op)
        return
    target = patch.get("target") or {
        "kind": body["kind"],
        "name": body["metadata"]["name"],
    }
    hits = [o for o in objects if matches(o, target)]
    if len(hits) != 1 and "target" not in patch:
        raise ValueError(f"strategic merge patch {target} matches {len(hits)} objects")
    for obj in hits:
        builtin = group_of(obj) in BUILTIN_GROUPS
        merged = merge(obj, body, builtin)
        obj.clear()
        obj.update(merged)


def merge(base: Any, patch: Any, builtin: bool, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v, builtin, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if builtin and isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        mk = MERGE_KEYS[field]
        existing = {item[mk]: item for item in base}
        new = [copy.deepcopy(p) for p in patch if p[mk] not in existing]
        by_key = {p[mk]: p for p in patch}
        kept = [
            merge(item, by_key[item[mk]], builtin) if item[mk] in by_key else item for item in base
        ]
        return [*new, *kept]
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json6902(obj: Obj, op: Obj) -> None:
    parts = _pointer(op["path"])
    parent: Any = obj
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    kind = op["op"]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if kind == "add":
            parent.insert(index, copy.deepcopy(op["value"]))
        elif kind == "replace":
            parent[index] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del parent[index]
        else:
            raise ValueError(f"unsupported op {kind}")
        return
    if kind in ("add", "replace"):
        if kind == "replace" and last not in parent:
            raise ValueError(f"replace of missing path {op['path']}")
        parent[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        del parent[last]
    else:
        raise ValueError(f"unsupported op {kind}")


def set_image(obj: Obj, image: Obj) -> None:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        name, _, tag = (
            container["image"].rpartition(":")
            if ":" in container["image"]
            else (
                container["image"],
                "",
                "",
            )
        )
        if name != image["name"]:
            continue
        container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def kubectl_render(directory: Path) -> list[Obj] | None:
    """`kubectl kustomize` output, or None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]
