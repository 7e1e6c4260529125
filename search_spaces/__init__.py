"""LowFormer search space: config, named variants, op graph, analytic counts and sampling, none of which
needs torch; with the ``measure`` extra also the torch builder and ONNX export (imported lazily)."""

from lowformer_common import MEASURE_EXTRA_HINT

from ._config import (
    ATTENTION_TYPES,
    MAX_CONFIG_BYTES,
    ConfigError,
    LowFormerConfig,
    lowtention_heads,
    parse_config_json,
)
from ._count import Counts, count, count_graph
from ._files import write_config_json
from ._identity import CONFIG_IDENTITY
from ._graph import OP_TYPES, QUANTITIES, STAGES, Layer, OpGraph, build_op_graph
from ._load import config_from_dict, config_from_json, load_config
from ._onnx import DEFAULT_OPSET
from ._standalone import standalone_source, training_recipe, write_torch_export
from ._space import KNOBS, SPACE, Knob, config_knob_name, config_to_knobs, knobs_to_config, sample_config, sample_configs
from ._variants import PAPER_ALIASES, VARIANTS, Variant, get_variant, named_series, variant_names

_TORCH_API = {
    "build_model": "._builder",
    "check_against_graph": "._builder",
    "randomize_": "._builder",
    "set_drop_path": "._builder",
    "ConvLayer": "._builder",
    "MBConv": "._builder",
    "FusedMBConv": "._builder",
    "Lowtention": "._builder",
    "MHSA": "._builder",
    "export_onnx": "._onnx",
}


def __getattr__(name):
    # torch is an optional extra: importing the package must not need it.
    if name in _TORCH_API:
        import importlib

        try:
            module = importlib.import_module(_TORCH_API[name], __name__)
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(
                f"{name} needs {e.name}; {MEASURE_EXTRA_HINT}",
                name=e.name,
            ) from e
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve(name_or_file: str | None = None, config_file: str | None = None, resolution: int | None = None):
    """(display name, config) from a variant name or alias, or a JSON config file; ``resolution`` overrides."""
    if config_file is not None:
        cfg, name = load_config(config_file), None
    elif name_or_file is not None:
        v = get_variant(name_or_file)
        cfg, name = v.config, v.name
    else:
        raise ConfigError("model", "give a variant name or --config FILE")
    if resolution is not None:
        cfg = cfg.with_(resolution=resolution)
    return (name or cfg.short_hash), cfg


__all__ = [
    "ATTENTION_TYPES",
    "CONFIG_IDENTITY",
    "ConvLayer",
    "DEFAULT_OPSET",
    "FusedMBConv",
    "Lowtention",
    "MBConv",
    "MHSA",
    "PAPER_ALIASES",
    "ConfigError",
    "Counts",
    "KNOBS",
    "Knob",
    "Layer",
    "LowFormerConfig",
    "MAX_CONFIG_BYTES",
    "OP_TYPES",
    "OpGraph",
    "QUANTITIES",
    "SPACE",
    "STAGES",
    "VARIANTS",
    "Variant",
    "build_model",
    "build_op_graph",
    "check_against_graph",
    "config_from_dict",
    "config_from_json",
    "config_knob_name",
    "config_to_knobs",
    "count",
    "count_graph",
    "export_onnx",
    "get_variant",
    "knobs_to_config",
    "load_config",
    "lowtention_heads",
    "named_series",
    "parse_config_json",
    "randomize_",
    "resolve",
    "sample_config",
    "sample_configs",
    "set_drop_path",
    "variant_names",
    "standalone_source",
    "training_recipe",
    "write_config_json",
    "write_torch_export",
]
