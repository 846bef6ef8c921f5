"""The cluster configs in clusters/ (issue 18, part 1): the autoscaler YAMLs
pass the JSON schema that ships inside Ray, and their nodes install every
dependency the jobs import (pyproject's list)."""

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
