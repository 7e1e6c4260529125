"""A config as a self-contained PyTorch module file, for training code that does not import lowformer-nas.

The network's code is not written twice: the file is assembled from the source of ``_builder.py`` (its blocks,
the classifier, the initialisation and drop-path helpers) and the two pieces of config arithmetic it uses
(``lowtention_heads``, ``LowFormerConfig.local_fused``), read as text with ``ast`` (no torch needed to write
it). What the builder checks against the op graph is left out; ``tests/search_spaces/test_standalone.py``
builds the written file in a fresh interpreter and compares it with ``build_model``.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import textwrap
from typing import Any

from lowformer_common import __version__, atomic_write

from ._config import LowFormerConfig
from ._graph import ATT_DW_KERNEL

_HERE = pathlib.Path(__file__).parent
# Taken from _builder.py in this order (everything the network and its training-time structure need).
_BUILDER_PARTS = ("DropPath", "ConvLayer", "_Residual", "FusedMBConv", "MBConv", "_conv_block", "Lowtention", "MHSA",
                  "ReLULinearAttention", "MLP", "LowFormerBlock", "LowFormerBackbone", "ClsHead", "LowFormer",
                  "init_weights_", "set_drop_path")
MODEL_FILE, CONFIG_FILE, RECIPE_FILE = "lowformer_model.py", "config.json", "TRAINING.md"


def _defs(path: pathlib.Path, names: tuple[str, ...]) -> dict[str, str]:
    src = path.read_text(encoding="utf-8")
    tree = ast.parse(src)
    found = {n.name: ast.get_source_segment(src, n) for n in tree.body
             if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name in names}
    missing = [n for n in names if n not in found]
    if missing:  # the builder was refactored: fail loudly rather than ship a partial network
        raise RuntimeError(f"standalone export: {path.name} has no {', '.join(missing)}")
    return found


def _method(path: pathlib.Path, cls: str, name: str) -> str:
    src = path.read_text(encoding="utf-8")
    for node in ast.parse(src).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for f in node.body:
                if isinstance(f, ast.FunctionDef) and f.name == name:
                    return textwrap.dedent(ast.get_source_segment(src, f, padded=True))
    raise RuntimeError(f"standalone export: {path.name} has no {cls}.{name}")


_HEADER = '''"""LowFormer network {name} (config hash {hash}), written by lowformer-nas {version}.

Needs only torch. Generated from lowformer-nas' search_spaces/_builder.py; do not edit by hand, export again.

    import json, torch
    from lowformer_model import build
    model = build(json.load(open("config.json")))       # random init as the reference release; model.train()
    logits = model(torch.randn(1, 3, {res}, {res}))
    features = model.forward_features(torch.randn(1, 3, {res}, {res}))   # stage0 ... stage_final
"""

from __future__ import annotations

import math
import types

import torch
import torch.nn.functional as F
from torch import nn

ATT_DW_KERNEL = {att_dw_kernel!r}
COMPRESSION_MIN_WIDTH = {min_width!r}
CONFIG_HASH = {hash_full!r}
'''

_FOOTER = '''

class _Config(types.SimpleNamespace):
    """The knobs of config.json (lists as tuples), with the one rule the blocks ask the config for."""

{local_fused}

def config_from_dict(d: dict) -> _Config:
    fields = {fields!r}
    missing = [f for f in fields if f not in d]
    if missing:
        raise ValueError(f"config: missing knobs {{missing}} (export the config again with lowformer-nas)")
    return _Config(**{{f: tuple(d[f]) if isinstance(d[f], list) else d[f] for f in fields}})


def build(config: dict, *, init: bool = True, drop_path: float = 0.0, drop_path_skip: int = 0,
          dropout: float = 0.0) -> LowFormer:
    """The classifier of ``config`` (a dict as in config.json), in train mode. ``drop_path``/``drop_path_skip``:
    stochastic depth as the release assigns it (see TRAINING.md); ``dropout``: before the last linear layer."""
    model = LowFormer(config_from_dict(config), dropout)
    if init:
        init_weights_(model)
    if drop_path:
        set_drop_path(model, drop_path, drop_path_skip)
    return model
'''


def standalone_source(cfg: LowFormerConfig, name: str | None = None) -> str:
    """The text of a module file that builds ``cfg``'s network with torch alone (``build(config_dict)``)."""
    from . import _identity

    parts = _defs(_HERE / "_builder.py", _BUILDER_PARTS)
    heads = _defs(_HERE / "_identity.py", ("lowtention_heads",))["lowtention_heads"]
    local_fused = textwrap.indent(_method(_HERE / "_config.py", "LowFormerConfig", "local_fused"), "    ")
    fields = [k for k in cfg.to_dict()]
    head = _HEADER.format(name=name or cfg.short_hash, hash=cfg.short_hash, hash_full=cfg.hash, version=__version__,
                          res=cfg.resolution, att_dw_kernel=dict(ATT_DW_KERNEL),
                          min_width=_identity.COMPRESSION_MIN_WIDTH)
    body = "\n\n".join([heads] + [parts[n] for n in _BUILDER_PARTS])
    return head + "\n\n" + body + "\n" + _FOOTER.format(local_fused=local_fused, fields=fields)


def training_recipe(cfg: LowFormerConfig, name: str | None = None) -> str:
    """TRAINING.md: the training settings docs/architecture.md states (§10), and what it does not state."""
    from ._variants import VARIANTS

    rates = {"B0": (0.05, 0), "B1": (0.05, 0), "B1.5": (0.1, 0), "E1": (0.1, 0), "E2": (0.1, 1), "B2": (0.1, 2),
             "B3": (0.1, 2), "E3": (0.1, 2)}
    named = next((n for n, v in VARIANTS.items() if v.config.hash == cfg.hash), None)
    rate = rates.get(named or "")
    dp = (f"`build(cfg, drop_path={rate[0]}, drop_path_skip={rate[1]})` (the release's setting for {named})" if rate else
          "not stated for a searched config: the release uses p 0.05 (skip 0) for B0/B1, 0.1 (skip 0) for B1.5/E1, 0.1 "
          "(skip 1) for E2 and 0.1 (skip 2) for B2/B3/E3; pick the variant nearest in size (a choice, not a paper "
          "setting)")
    return f"""# Training {name or cfg.short_hash} (config hash {cfg.short_hash})

Files: `{MODEL_FILE}` (the network, needs only torch), `{CONFIG_FILE}` (its knobs), this recipe.
Input: {cfg.resolution}x{cfg.resolution} px RGB, {cfg.num_classes} classes.

## Stated (docs/architecture.md §10 of lowformer-nas, from the paper's public release)

- Initialisation: truncated normal (std 0.02) for every conv, transposed-conv and linear weight, zero biases,
  norms at weight 1 / bias 0, and the last BN scale of every identity-residual (Fused)MBConv set to 0.
  `build(cfg)` does exactly this (`init=False` leaves torch's defaults).
- Drop path on every identity residual inside the stages (attention, MLP and local conv count separately),
  rate p·(i+1)/N after skipping the first `skip`, further multiplied by the training progress (0 -> 1): your
  loop scales the rates, e.g. `for m in model.modules(): if isinstance(m, DropPath): m.rate = base[m] * progress`.
  For this config: {dp}.

## Not stated there (choose and report your own)

Optimiser, learning rate and schedule, epochs, batch size, weight decay, augmentation, label smoothing, EMA,
mixed precision, and the evaluation crop: docs/architecture.md does not give them, and lowformer-nas does not
invent them. Its top-1 figures are predictions of a surrogate fitted to the paper's published accuracies,
not the result of training this file.
"""


def write_torch_export(cfg: LowFormerConfig, folder: str | os.PathLike, name: str | None = None,
                       extra: dict[str, Any] | None = None) -> list[pathlib.Path]:
    """Write the model file, the config JSON and the recipe into ``folder``, which must be new or empty (a
    UserError otherwise, before anything is written). Returns the paths written."""
    from lowformer_common import UserError

    out = pathlib.Path(folder)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"torch: {out} exists and is not an empty folder; give a new folder")
    texts = {MODEL_FILE: standalone_source(cfg, name),
             CONFIG_FILE: json.dumps({**cfg.to_dict(), "name": name, "hash": cfg.hash, **(extra or {})}, indent=1) + "\n",
             RECIPE_FILE: training_recipe(cfg, name)}
    # Written into a sibling temp folder, then renamed: a failure leaves no half-written export.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        for f in tmp.iterdir():
            f.unlink()
    tmp.mkdir(exist_ok=True)
    for fname, text in texts.items():
        atomic_write(tmp / fname, text)
    if out.exists():
        out.rmdir()
    tmp.replace(out)
    return [out / f for f in texts]
