"""The cluster configs in clusters/ (issue 18, part 1): the autoscaler YAMLs
pass the JSON schema that ships inside Ray, the KubeRay manifests pass
KubeRay's own CRD schemas (vendored in clusters/kuberay-crds) with no unknown
field, and every node installs the dependencies the jobs import
(pyproject's list)."""

import functools
import json
import os
import re
import shlex

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUTOSCALER = ["aws-gpu.yaml", "gcp-gpu.yaml"]


def project_dependencies() -> set[str]:
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    return {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower() for d in deps}


def installed_by(cfg: dict) -> set[str]:
    names = set()
    for cmd in cfg.get("setup_commands", []):
        for part in cmd.split("&&"):
            words = shlex.split(part)
            if words[:2] == ["pip", "install"]:
                names |= {re.split(r"[\[<>=!~ ]", w, maxsplit=1)[0].lower() for w in words[2:] if not w.startswith("-")}
    return names


@pytest.mark.parametrize("name", AUTOSCALER)
def test_autoscaler_config_passes_ray_s_own_schema_and_installs_every_dependency(name):
    import jsonschema
    import ray.autoscaler

    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        schema = json.load(f)
    with open(os.path.join(REPO, "clusters", name)) as f:
        cfg = yaml.safe_load(f)
    jsonschema.validate(cfg, schema)
    missing = project_dependencies() - installed_by(cfg)
    assert not missing, f"{name}: setup_commands do not install {sorted(missing)}"
    # the node-type shape the jobs rely on: no trial resources on the head, GPU workers from zero
    head = cfg["available_node_types"][cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0
    workers = [t for n, t in cfg["available_node_types"].items() if n != cfg["head_node_type"]]
    assert workers and all(t["min_workers"] == 0 for t in workers)


def test_a_broken_config_fails_the_schema():
    import jsonschema
    import ray.autoscaler

    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        schema = json.load(f)
    with open(os.path.join(REPO, "clusters", AUTOSCALER[0])) as f:
        cfg = yaml.safe_load(f)
    cfg["available_node_types"]["head"]["min_wokers"] = 0  # a typo'd key
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, schema)
    assert "torch" in project_dependencies() and "torch" in installed_by({"setup_commands": ["pip install -q torch"]})


# ---------------------------------------------------------------- KubeRay

KUBERAY = {"kuberay-rayjob.yaml": "ray.io_rayjobs.yaml.gz", "kuberay-raycluster.yaml": "ray.io_rayclusters.yaml.gz"}


@functools.cache
def crd_schema(crd_file: str, version: str = "v1") -> dict:
    """The openAPIV3Schema of a vendored KubeRay CRD (clusters/kuberay-crds)."""
    import gzip

    with gzip.open(os.path.join(REPO, "clusters", "kuberay-crds", crd_file), "rt") as f:
        crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


def unknown_fields(obj, schema: dict, path: str = "") -> list[str]:
    """Keys the schema does not declare (what `kubectl apply --validate=strict`
    refuses; the API server would silently drop them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out = []
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in obj.items():
            if props is not None and k in props:
                out += unknown_fields(v, props[k], f"{path}.{k}")
            elif isinstance(extra, dict):
                out += unknown_fields(v, extra, f"{path}.{k}")
            elif props is not None or extra is False:
                out.append(f"{path}.{k}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(obj):
            out += unknown_fields(v, schema["items"], f"{path}[{i}]")
    return out


def load_manifest(name: str) -> dict:
    with open(os.path.join(REPO, "clusters", name)) as f:
        return yaml.safe_load(f)


def cluster_spec(manifest: dict) -> dict:
    return manifest["spec"]["rayClusterSpec"] if manifest["kind"] == "RayJob" else manifest["spec"]


def names_of(pip: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower() for d in pip}


@pytest.mark.parametrize("name", sorted(KUBERAY))
def test_kuberay_manifest_passes_the_crd_schema_strictly(name):
    import jsonschema

    manifest, schema = load_manifest(name), crd_schema(KUBERAY[name])
    jsonschema.validate(manifest, schema)
    assert unknown_fields(manifest, schema) == []


@pytest.mark.parametrize("name", sorted(KUBERAY))
def test_kuberay_manifest_runs_the_pinned_ray_on_gpu_workers_from_zero(name):
    import ray
    from packaging.specifiers import SpecifierSet

    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    ray_spec = next(d for d in project["dependencies"] if d.startswith("ray"))
    spec = cluster_spec(load_manifest(name))
    pods = [spec["headGroupSpec"]] + spec["workerGroupSpecs"]
    images = {c["image"] for p in pods for c in p["template"]["spec"]["containers"]}
    assert images == {f"rayproject/ray:{ray.__version__}-py311-gpu"}, images  # Ray's image of the Ray tested here
    assert spec["rayVersion"] == ray.__version__ and ray.__version__ in SpecifierSet(ray_spec.split("]", 1)[1])
    assert "3.11" in SpecifierSet(project["requires-python"])
    assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0"  # no trials on the head
    assert spec["enableInTreeAutoscaling"] and spec["authOptions"]["mode"] == "token"
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1
        (container,) = group["template"]["spec"]["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # results on a volume every pod mounts at the --storage-path the job is given
    mounts = {m["mountPath"] for p in pods for c in p["template"]["spec"]["containers"] for m in c["volumeMounts"]}
    assert mounts == {"/mnt/results"}


def test_the_runtime_envs_install_every_dependency_but_ray():
    deps = project_dependencies() - {"ray"}
    job = load_manifest("kuberay-rayjob.yaml")
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert "--storage-path /mnt/results" in job["spec"]["entrypoint"]
    with open(os.path.join(REPO, "clusters", "runtime_env.yaml")) as f:
        standalone = yaml.safe_load(f)
    for pip in (env["pip"], standalone["pip"]):
        assert deps <= names_of(pip), sorted(deps - names_of(pip))
        assert "ray" not in names_of(pip)  # the image's Ray, never a second one
    assert env["pip"] == standalone["pip"]
    # Train workers ask for GPUs although the CPU-only head sees none (training.launch.want_gpu)
    assert env["env_vars"] == standalone["env_vars"] == {"RECONLAB_USE_GPU": "1"}


def test_a_misspelt_or_mistyped_kuberay_field_is_caught():
    import jsonschema

    schema = crd_schema(KUBERAY["kuberay-rayjob.yaml"])
    bad = load_manifest("kuberay-rayjob.yaml")
    bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplica"] = 0  # typo: silently dropped by the API server
    assert unknown_fields(bad, schema) == [".spec.rayClusterSpec.workerGroupSpecs[0].minReplica"]
    bad = load_manifest("kuberay-rayjob.yaml")
    bad["spec"]["shutdownAfterJobFinishes"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
