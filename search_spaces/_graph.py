"""Config -> op graph: every layer of a LowFormer with its shapes, parameters, MACs and memory traffic.

This module is the one place that knows what a LowFormer computes. The analytic counter, the torch
builder's self-check and the predictors' features all read the graph built here.

Layers are emitted by small typed emitters that mirror the torch building blocks of ``_builder.py``
(ConvLayer, FusedMBConv, MBConv, the attention operators, MLP, head), and layer names are the torch
module paths, so the builder can check itself module by module.

Speed: the counter must handle thousands of configs a second, so the graph is kept in a compact
form. A block is a tuple of *parts* (residual units: one FusedMBConv, one attention sub-block, ...);
each part is a cached template whose per-op totals are precomputed, and a stage of ``d`` identical
blocks is stored once with a repeat count. ``OpGraph.layers()`` and ``OpGraph.to_networkx()`` expand
this into individual layers on demand.
"""

from __future__ import annotations

import functools
from typing import Iterator, NamedTuple

import numpy as np

from ._config import LowFormerConfig, lowtention_heads

BYTES_PER_ELEMENT = 4  # fp32

OP_TYPES = (
    "conv",  # dense k x k convolution, k > 1
    "pointwise",  # 1 x 1 convolution, groups 1
    "depthwise",  # groups == channels
    "grouped_conv",  # any other grouped convolution
    "conv_transpose",
    "matmul",  # attention matmuls
    "linear",
    "norm",  # BatchNorm, GroupNorm, LayerNorm
    "activation",
    "softmax",
    "elementwise",  # scaling/normalisation inside attention
    "add",  # residual adds
    "pool",
    "movement",  # reshapes, transposes, concat, pad, crop: pure data movement
)
OP_INDEX = {op: i for i, op in enumerate(OP_TYPES)}
STAGES = ("stem", "stage1", "stage2", "stage3", "stage4", "head")
# Columns of the per-op totals arrays.
QUANTITIES = ("macs", "params", "bytes", "layers")

_IN = "<in>"  # placeholder for the tensor entering a part


class Layer(NamedTuple):
    name: str  # torch module path (parameter-free ops get a descriptive path)
    op: str  # one of OP_TYPES
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: int
    stride: int
    groups: int
    params: int
    macs: int
    bytes_read: int
    bytes_written: int
    inputs: tuple[str, ...]  # names of the producing layers
    detail: str = ""  # e.g. the activation kind, the norm kind, attention token count


def _j(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


class _Part:
    """Accumulates the layers of one part template. Names are relative to the block prefix."""

    def __init__(self, shape: tuple[int, ...]):
        self.layers: list[Layer] = []
        self.cur = _IN
        self.shape = shape
        self.tokens = 0

    def add(
        self,
        name: str,
        op: str,
        out_shape: tuple[int, ...],
        *,
        inputs: tuple[tuple[str, tuple[int, ...]], ...] | None = None,
        kernel: int = 0,
        stride: int = 1,
        groups: int = 1,
        params: int = 0,
        macs: int = 0,
        detail: str = "",
    ) -> str:
        if inputs is None:
            inputs = ((self.cur, self.shape),)
        read = sum(_numel(s) for _, s in inputs) + params
        self.layers.append(
            Layer(
                name,
                op,
                inputs[0][1],
                out_shape,
                kernel,
                stride,
                groups,
                params,
                macs,
                read * BYTES_PER_ELEMENT,
                _numel(out_shape) * BYTES_PER_ELEMENT,
                tuple(n for n, _ in inputs),
                detail,
            )
        )
        self.cur, self.shape = name, out_shape
        return name

    # ---------------------------------------------------------------- primitive layers

    def conv(self, name, cout, k, s=1, groups=1, bias=False, padding=None):
        cin, h, w = self.shape
        p = k // 2 if padding is None else padding
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if groups == 1:
            op = "pointwise" if k == 1 else "conv"
        elif groups == cin == cout:
            op = "depthwise"
        else:
            op = "grouped_conv"
        params = cout * (cin // groups) * k * k + (cout if bias else 0)
        macs = ho * wo * cout * k * k * (cin // groups)
        return self.add(name, op, (cout, ho, wo), kernel=k, stride=s, groups=groups, params=params, macs=macs)

    def conv_transpose(self, name, cout, k, s, padding, groups=1, bias=True):
        cin, h, w = self.shape
        ho, wo = (h - 1) * s - 2 * padding + k, (w - 1) * s - 2 * padding + k
        params = cin * (cout // groups) * k * k + (cout if bias else 0)
        # Scatter form, independent of any later crop (docs/architecture.md §11).
        macs = h * w * cin * k * k * (cout // groups)
        return self.add(name, "conv_transpose", (cout, ho, wo), kernel=k, stride=s, groups=groups, params=params, macs=macs)

    def norm(self, name, kind):
        c = self.shape[0]
        return self.add(name, "norm", self.shape, params=2 * c, detail=kind)

    def act(self, name, kind):
        return self.add(name, "activation", self.shape, detail=kind)

    def residual_add(self, name):
        return self.add(name, "add", self.shape, inputs=((self.cur, self.shape), (_IN, self.shape)))

    def move(self, name, out_shape, detail, inputs=None):
        return self.add(name, "movement", out_shape, inputs=inputs, detail=detail)

    def matmul(self, name, a_shape, b_shape, detail):
        """Batched matmul (g, m, k) @ (g, k, n)."""
        g, m, k = a_shape
        n = b_shape[2]
        inputs = ((self.cur, a_shape), (self.cur, b_shape))
        return self.add(name, "matmul", (g, m, n), inputs=inputs, macs=g * m * n * k, detail=detail)

    # ---------------------------------------------------------------- building blocks

    def conv_layer(self, prefix, cout, k, s=1, groups=1, bias=False, norm=True, act=True):
        """ConvLayer: conv, then optional BN, then optional Hardswish."""
        self.conv(_j(prefix, "conv"), cout, k, s, groups, bias)
        if norm:
            self.norm(_j(prefix, "norm"), "batchnorm")
        if act:
            self.act(_j(prefix, "act"), "hardswish")

    def fused_mbconv(self, prefix, cout, e, s, block_flavour, residual):
        m = round(self.shape[0] * e)
        self.conv_layer(_j(prefix, "spatial"), m, 3, s, bias=block_flavour)
        self.conv_layer(_j(prefix, "point"), cout, 1, act=False)
        if residual:
            self.residual_add(_j(prefix, "add"))

    def mbconv(self, prefix, cout, e, s, block_flavour, residual):
        m = round(self.shape[0] * e)
        self.conv_layer(_j(prefix, "inverted"), m, 1, bias=block_flavour, norm=False)
        self.conv_layer(_j(prefix, "depth"), m, 3, s, groups=m, bias=block_flavour, norm=False)
        self.conv_layer(_j(prefix, "point"), cout, 1, act=False)
        if residual:
            self.residual_add(_j(prefix, "add"))

    def softmax_attention(self, prefix, heads, tokens, head_dim):
        """q @ k^T / sqrt(d), softmax over keys, @ v (per head, all tokens)."""
        self.tokens = max(self.tokens, tokens)
        q = (heads, tokens, head_dim)
        self.move(f"{prefix}.to_tokens", (heads, tokens, 3 * head_dim), "reshape+transpose")
        self.matmul(f"{prefix}.matmul_qk", q, (heads, head_dim, tokens), f"tokens={tokens}")
        self.add(f"{prefix}.softmax", "softmax", (heads, tokens, tokens))
        self.matmul(f"{prefix}.matmul_av", (heads, tokens, tokens), (heads, tokens, head_dim), f"tokens={tokens}")

    def lowtention(self, prefix, a, dw_k, compression, split):
        c, h_in, w_in = self.shape
        heads, hd = lowtention_heads(c, compression)
        inner = heads * hd
        self.conv_layer(f"{prefix}.dw", c, dw_k, a, groups=c, act=False)
        self.conv(f"{prefix}.qkv", 3 * inner, 1)
        _, h, w = self.shape
        self.softmax_attention(prefix, heads, h * w, hd)
        self.move(f"{prefix}.to_map", (inner, h, w), "transpose+reshape")
        k, p = (3, 1) if a == 1 else (2 * a, a // 2)
        if split:
            self.conv(f"{prefix}.proj", c, 1, bias=True)
            self.conv_transpose(f"{prefix}.up", c, k, a, p, groups=c)
        else:
            # One dense transposed conv restores C channels and upsamples: there is no 1x1 out-projection.
            self.conv_transpose(f"{prefix}.proj", c, k, a, p)
        if self.shape[1:] != (h_in, w_in):
            self.move(f"{prefix}.crop", (c, h_in, w_in), "crop")

    def mhsa(self, prefix):
        c, h, w = self.shape
        heads = c // 32
        self.conv(f"{prefix}.qkv", 3 * c, 1)
        self.softmax_attention(prefix, heads, h * w, 32)
        self.move(f"{prefix}.to_map", (c, h, w), "transpose+reshape")
        self.conv(f"{prefix}.proj", c, 1, bias=True)

    def relu_linear(self, prefix, dim=16, agg_k=5):
        """EfficientViT's multi-scale ReLU linear attention (LiteMLA) with one aggregation scale."""
        c, h, w = self.shape
        heads = c // dim
        total = heads * dim
        n = h * w
        qkv = self.conv(f"{prefix}.qkv", 3 * total, 1)
        qkv_shape = self.shape
        self.conv(f"{prefix}.aggreg.0", 3 * total, agg_k, groups=3 * total)
        agg = self.conv(f"{prefix}.aggreg.1", 3 * total, 1, groups=3 * heads)
        self.move(f"{prefix}.cat", (6 * total, h, w), "concat", inputs=((qkv, qkv_shape), (agg, self.shape)))
        g = 2 * heads
        self.tokens = max(self.tokens, n)
        self.move(f"{prefix}.to_tokens", (g, n, 3 * dim), "reshape+transpose")
        self.add(f"{prefix}.relu", "activation", (g, n, 2 * dim), detail="relu")
        self.move(f"{prefix}.pad_v", (g, n, dim + 1), "pad")
        self.matmul(f"{prefix}.matmul_kv", (g, dim, n), (g, n, dim + 1), f"tokens={n}")
        self.matmul(f"{prefix}.matmul_qkv", (g, n, dim), (g, dim, dim + 1), f"tokens={n}")
        self.add(f"{prefix}.normalise", "elementwise", (g, n, dim), detail="divide by last column")
        self.move(f"{prefix}.to_map", (2 * total, h, w), "transpose+reshape")
        self.conv_layer(f"{prefix}.proj", c, 1, act=False)

    def mlp(self, prefix, ratio):
        c = self.shape[0]
        self.conv(f"{prefix}.fc1", round(c * ratio), 1, bias=True)
        self.act(f"{prefix}.act", "gelu")
        self.conv(f"{prefix}.fc2", c, 1, bias=True)

    def linear(self, name, dout, bias):
        din = self.shape[0]
        return self.add(name, "linear", (dout,), params=din * dout + (dout if bias else 0), macs=din * dout)


class PartTemplate(NamedTuple):
    layers: tuple[Layer, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    totals: np.ndarray  # (len(OP_TYPES), len(QUANTITIES)) int64
    tokens: int  # attention tokens, 0 without attention


def _finish(part: _Part, in_shape) -> PartTemplate:
    totals = np.zeros((len(OP_TYPES), len(QUANTITIES)), dtype=np.int64)
    for layer in part.layers:
        row = totals[OP_INDEX[layer.op]]
        row[0] += layer.macs
        row[1] += layer.params
        row[2] += layer.bytes_read + layer.bytes_written
        row[3] += 1
    totals.flags.writeable = False
    return PartTemplate(tuple(part.layers), in_shape, part.shape, totals, part.tokens)


_cache = functools.lru_cache(maxsize=1 << 16)


@_cache
def _stem_conv(res: int, cout: int) -> PartTemplate:
    p = _Part((3, res, res))
    p.conv_layer("", cout, 3, 2)  # names "conv", "norm", "act" under backbone.stem.0
    return _finish(p, (3, res, res))


@_cache
def _conv_block(shape, cout, e, s, fused, block_flavour, residual) -> PartTemplate:
    p = _Part(shape)
    (p.fused_mbconv if fused else p.mbconv)("", cout, e, s, block_flavour, residual)
    return _finish(p, shape)


@_cache
def _attention_unit(shape, kind, a, dw_k, compression, split, pre_norm) -> PartTemplate:
    p = _Part(shape)
    if pre_norm:
        p.norm("att_norm", "groupnorm")
    if kind == "lowtention":
        p.lowtention("att", a, dw_k, compression, split)
    elif kind == "mhsa":
        p.mhsa("att")
    else:
        p.relu_linear("att")
    p.residual_add("att_add")
    return _finish(p, shape)


@_cache
def _mlp_unit(shape, ratio) -> PartTemplate:
    p = _Part(shape)
    p.norm("mlp_norm", "groupnorm")
    p.mlp("mlp", ratio)
    p.residual_add("mlp_add")
    return _finish(p, shape)


@_cache
def _local_unit(shape, e, fused) -> PartTemplate:
    p = _Part(shape)
    (p.fused_mbconv if fused else p.mbconv)("local", shape[0], e, 1, True, True)
    return _finish(p, shape)


@_cache
def _head(shape, h0, h1, classes) -> PartTemplate:
    p = _Part(shape)
    p.conv_layer("conv", h0, 1)
    p.add("pool", "pool", (h0,))
    p.linear("fc1", h1, bias=False)
    p.norm("ln", "layernorm")
    p.act("act", "hardswish")
    p.linear("fc2", classes, bias=True)
    return _finish(p, shape)


# Stage-3/4 attention settings that the config does not expose (docs/architecture.md §3.1): depthwise kernel.
ATT_DW_KERNEL = {3: 5, 4: 3}


class BlockInstance(NamedTuple):
    stage: str
    prefix: str  # module path of the container, e.g. "backbone.stage3"
    first: int | None  # index of the first block in the container; None: the block is the container
    repeats: int
    parts: tuple[PartTemplate, ...]  # residual units applied in order; layer names relative to the block

    @property
    def totals(self) -> np.ndarray:
        t = self.parts[0].totals
        for p in self.parts[1:]:
            t = t + p.totals
        return t * self.repeats if self.repeats != 1 else t

    def block_paths(self) -> Iterator[str]:
        if self.first is None:
            yield self.prefix
        else:
            for i in range(self.first, self.first + self.repeats):
                yield f"{self.prefix}.{i}"


class OpGraph:
    """The layers of one config, in execution order.

    ``blocks`` is the compact form (cached part templates with repeat counts) that the counter reads;
    :meth:`layers` and :meth:`to_networkx` expand it.
    """

    def __init__(self, config: LowFormerConfig, blocks: tuple[BlockInstance, ...]):
        self.config = config
        self.blocks = blocks

    def attention_tokens(self) -> dict[str, int]:
        """Tokens each stage's attention attends over (0 where a stage has none)."""
        tok = {s: 0 for s in STAGES}
        for b in self.blocks:
            for p in b.parts:
                tok[b.stage] = max(tok[b.stage], p.tokens)
        return tok

    def layers(self) -> Iterator[Layer]:
        """Every layer with its absolute name and absolute input names."""
        prev = "input"
        for b in self.blocks:
            for block_path in b.block_paths():
                for part in b.parts:
                    names = {}
                    for layer in part.layers:
                        name = f"{block_path}.{layer.name}"
                        names[layer.name] = name
                        inputs = tuple(prev if n == _IN else names[n] for n in layer.inputs)
                        yield layer._replace(name=name, inputs=inputs)
                    prev = names[part.layers[-1].name]

    def to_networkx(self):
        """A ``networkx.DiGraph``: one node per layer (attributes: every Layer field and ``stage``)."""
        import networkx as nx

        g = nx.DiGraph(config_hash=self.config.hash, resolution=self.config.resolution)
        r = self.config.resolution
        g.add_node("input", op="input", out_shape=(3, r, r), stage="input")
        for layer in self.layers():
            attrs = layer._asdict()
            attrs.pop("name")
            attrs.pop("inputs")
            attrs["stage"] = _stage_of(layer.name)
            g.add_node(layer.name, **attrs)
            for src in layer.inputs:
                g.add_edge(src, layer.name)
        return g


def _stage_of(name: str) -> str:
    if name.startswith("head"):
        return "head"
    return name.split(".")[1]


def build_op_graph(config: LowFormerConfig) -> OpGraph:
    """The op graph of ``config`` (cheap: templates are cached across configs)."""
    c = config
    w0, w1, w2, w3, w4 = c.widths
    d0, d1, d2, d3, d4 = c.depths
    r = c.resolution
    fused = c.fused_blocks
    blocks: list[BlockInstance] = []

    stem = _stem_conv(r, w0)
    blocks.append(BlockInstance("stem", "backbone.stem", 0, 1, (stem,)))
    shape = stem.out_shape
    if d0:
        t = _conv_block(shape, w0, c.expand_stem, 1, fused, False, True)
        blocks.append(BlockInstance("stem", "backbone.stem", 1, d0, (t,)))

    for stage, cout, depth in (("stage1", w1, d1), ("stage2", w2, d2)):
        t = _conv_block(shape, cout, c.expand_s2, 2, fused, False, False)
        blocks.append(BlockInstance(stage, f"backbone.{stage}", 0, 1, (t,)))
        shape = t.out_shape
        if depth > 1:
            t = _conv_block(shape, cout, c.expand_s1, 1, fused, False, True)
            blocks.append(BlockInstance(stage, f"backbone.{stage}", 1, depth - 1, (t,)))

    for i, (stage, cout, depth) in enumerate((("stage3", w3, d3), ("stage4", w4, d4))):
        t = _conv_block(shape, cout, c.expand_s2, 2, fused, False, False)
        blocks.append(BlockInstance(stage, f"backbone.{stage}", 0, 1, (t,)))
        shape = t.out_shape
        if depth == 0:
            continue
        parts = []
        kind, mlp = c.attention[i], c.mlp[i]
        if kind != "none":
            # The attention pre-norm exists only together with the MLP (docs/architecture.md §3): "mlpless" drops both.
            a = _attention_unit(shape, kind, c.att_stride[i], ATT_DW_KERNEL[i + 3], c.compression, c.split_proj, mlp)
            parts.append(a)
        if mlp:
            parts.append(_mlp_unit(shape, c.mlp_ratio[i]))
        parts.append(_local_unit(shape, c.expand_local, fused and c.local_fused(i + 3)))
        blocks.append(BlockInstance(stage, f"backbone.{stage}", 1, depth, tuple(parts)))

    blocks.append(BlockInstance("head", "head", None, 1, (_head(shape, *c.head_widths, c.num_classes),)))
    return OpGraph(c, tuple(blocks))
