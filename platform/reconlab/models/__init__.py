"""Model builders: one function per variant, looked up by name.

A logged model is stored as ``{"builder": name, "kwargs": {...}}`` plus a
state dict, so it is rebuilt by calling the builder and loading weights with
``torch.load(weights_only=True)``; nothing is unpickled.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register(fn):
    BUILDERS[fn.__name__] = fn
    return fn


def build(name: str, **kwargs) -> nn.Module:
    from reconlab.errors import ConfigError

    if name not in BUILDERS:
        raise ConfigError(f"unknown model builder (known: {', '.join(sorted(BUILDERS))})", key="builder", value=name)
    return BUILDERS[name](**kwargs)


# registers the builders
from reconlab.models import classifier, deep_decoder, dip, dncnn, n2n_unet, prototypes, unet, vae  # noqa: E402,F401

from reconlab.models.io import load_model_dir, save_model_dir  # noqa: E402

__all__ = ["BUILDERS", "build", "load_model_dir", "register", "save_model_dir"]
