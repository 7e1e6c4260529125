"""Config -> torch ``nn.Module`` (needs the ``measure`` extra).

Small typed blocks composed by the config, in the style of timm's model files. Module paths equal the
layer names of the op graph (``_graph.py``), so :func:`check_against_graph` can verify every parameterised
layer of a built model against the graph: the counter and the builder can never silently drift apart.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._config import ConfigError, LowFormerConfig, lowtention_heads
from ._graph import ATT_DW_KERNEL, OpGraph, build_op_graph


class DropPath(nn.Module):
    """Stochastic depth on a residual branch (docs/architecture.md §10)."""

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.rate
        if not self.training or p <= 0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
        return x * keep / (1 - p)


class ConvLayer(nn.Module):
    """conv(k, s, padding k//2) -> optional BatchNorm -> optional Hardswish."""

    def __init__(self, cin, cout, k, s=1, groups=1, bias=False, norm=True, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(cout) if norm else None
        self.act = nn.Hardswish() if act else None

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class _Residual(nn.Module):
    residual: bool

    def _out(self, x, y):
        return x + self.drop_path(y) if self.residual else y


class FusedMBConv(_Residual):
    """3x3 conv (+BN+HS) then 1x1 conv (+BN). The block flavour, used as local conv, biases the 3x3 conv."""

    def __init__(self, cin, cout, e, s=1, block_flavour=False, residual=False):
        super().__init__()
        m = round(cin * e)
        self.spatial = ConvLayer(cin, m, 3, s, bias=block_flavour)
        self.point = ConvLayer(m, cout, 1, act=False)
        self.residual = residual
        self.drop_path = DropPath()

    def forward(self, x):
        return self._out(x, self.point(self.spatial(x)))


class MBConv(_Residual):
    """EfficientViT "fewer-norm" MBConv: 1x1 (+HS), depthwise 3x3 (+HS), 1x1 (+BN)."""

    def __init__(self, cin, cout, e, s=1, block_flavour=False, residual=False):
        super().__init__()
        m = round(cin * e)
        self.inverted = ConvLayer(cin, m, 1, bias=block_flavour, norm=False)
        self.depth = ConvLayer(m, m, 3, s, groups=m, bias=block_flavour, norm=False)
        self.point = ConvLayer(m, cout, 1, act=False)
        self.residual = residual
        self.drop_path = DropPath()

    def forward(self, x):
        return self._out(x, self.point(self.depth(self.inverted(x))))


def _conv_block(fused: bool, *args, **kwargs) -> nn.Module:
    return FusedMBConv(*args, **kwargs) if fused else MBConv(*args, **kwargs)


class Lowtention(nn.Module):
    """LowFormer attention: depthwise downsampling, compressed-channel softmax attention, and one transposed
    conv that both restores the channels and upsamples (docs/architecture.md §3.1)."""

    def __init__(self, c, stride, dw_kernel, compression, split_proj):
        super().__init__()
        self.heads, self.head_dim = lowtention_heads(c, compression)
        self.inner = self.heads * self.head_dim
        self.dw = ConvLayer(c, c, dw_kernel, stride, groups=c, act=False)
        self.qkv = nn.Conv2d(c, 3 * self.inner, 1, bias=False)
        k, p = (3, 1) if stride == 1 else (2 * stride, stride // 2)
        if split_proj:
            self.proj = nn.Conv2d(self.inner, c, 1, bias=True)
            self.up = nn.ConvTranspose2d(c, c, k, stride, p, groups=c, bias=True)
        else:
            self.proj = nn.ConvTranspose2d(self.inner, c, k, stride, p, bias=True)
            self.up = None

    def forward(self, x):
        b, _, H, W = x.shape
        qkv = self.qkv(self.dw(x))
        h, w = qkv.shape[-2:]
        # Head-major channel layout [h0: q k v | h1: q k v | ...], tokens before channels.
        qkv = qkv.reshape(b, self.heads, 3 * self.head_dim, h * w).transpose(-1, -2)
        q, k, v = qkv.split(self.head_dim, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, self.inner, h, w)
        out = self.proj(out)
        if self.up is not None:
            out = self.up(out)
        return out[:, :, :H, :W]  # odd sizes: e.g. 15 -> 8 -> 16 -> 15


class MHSA(nn.Module):
    """Full-resolution multi-head self-attention, heads of 32 channels (the paper's reconstructed baseline)."""

    def __init__(self, c):
        super().__init__()
        self.heads, self.head_dim = c // 32, 32
        self.qkv = nn.Conv2d(c, 3 * c, 1, bias=False)
        self.proj = nn.Conv2d(c, c, 1, bias=True)

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.qkv(x).reshape(b, self.heads, 3 * self.head_dim, h * w).transpose(-1, -2)
        q, k, v = qkv.split(self.head_dim, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class ReLULinearAttention(nn.Module):
    """EfficientViT's LiteMLA with one 5x5 aggregation scale and heads of 16 channels."""

    def __init__(self, c, dim=16, agg_kernel=5, eps=1e-15):
        super().__init__()
        self.dim, self.eps = dim, eps
        heads = c // dim
        total = heads * dim
        self.qkv = nn.Conv2d(c, 3 * total, 1, bias=False)
        self.aggreg = nn.Sequential(
            nn.Conv2d(3 * total, 3 * total, agg_kernel, padding=agg_kernel // 2, groups=3 * total, bias=False),
            nn.Conv2d(3 * total, 3 * total, 1, groups=3 * heads, bias=False),
        )
        self.proj = ConvLayer(2 * total, c, 1, act=False)

    def forward(self, x):
        b, _, h, w = x.shape
        d = self.dim
        qkv = self.qkv(x)
        qkv = torch.cat([qkv, self.aggreg(qkv)], dim=1)
        qkv = qkv.reshape(b, -1, 3 * d, h * w).transpose(-1, -2)
        q, k, v = F.relu(qkv[..., :d]), F.relu(qkv[..., d : 2 * d]), qkv[..., 2 * d :]
        v = F.pad(v, (0, 1), mode="constant", value=1.0)
        out = q @ (k.transpose(-1, -2) @ v)
        out = out[..., :-1] / (out[..., -1:] + self.eps)
        return self.proj(out.transpose(-1, -2).reshape(b, -1, h, w))


class MLP(nn.Module):
    def __init__(self, c, ratio):
        super().__init__()
        hidden = round(c * ratio)
        self.fc1 = nn.Conv2d(c, hidden, 1, bias=True)
        self.act = nn.GELU()  # exact erf form
        self.fc2 = nn.Conv2d(hidden, c, 1, bias=True)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class LowFormerBlock(nn.Module):
    """Up to three residual sub-blocks: attention, MLP, local conv (docs/architecture.md §3)."""

    def __init__(self, cfg: LowFormerConfig, stage: int):
        super().__init__()
        i = stage - 3
        c = cfg.widths[stage]
        kind, has_mlp = cfg.attention[i], cfg.mlp[i]
        # The attention pre-norm exists only together with the MLP: "mlpless" variants drop both.
        self.att_norm = nn.GroupNorm(1, c) if kind != "none" and has_mlp else None
        if kind == "lowtention":
            self.att = Lowtention(c, cfg.att_stride[i], ATT_DW_KERNEL[stage], cfg.compression, cfg.split_proj)
        elif kind == "mhsa":
            self.att = MHSA(c)
        elif kind == "relu_linear":
            self.att = ReLULinearAttention(c)
        else:
            self.att = None
        self.mlp_norm = nn.GroupNorm(1, c) if has_mlp else None
        self.mlp = MLP(c, cfg.mlp_ratio[i]) if has_mlp else None
        fused = cfg.fused_blocks and cfg.local_fused(stage)
        self.local = _conv_block(fused, c, c, cfg.expand_local, 1, block_flavour=True, residual=True)
        self.drop_att = DropPath()
        self.drop_mlp = DropPath()

    def forward(self, x):
        if self.att is not None:
            y = self.att_norm(x) if self.att_norm is not None else x
            x = x + self.drop_att(self.att(y))
        if self.mlp is not None:
            x = x + self.drop_mlp(self.mlp(self.mlp_norm(x)))
        return self.local(x)


class LowFormerBackbone(nn.Module):
    """Five stages; ``forward`` returns the multi-scale feature dict of docs/architecture.md §9."""

    FEATURE_KEYS = ("stage0", "stage1", "stage2", "stage3", "stage_final")

    def __init__(self, cfg: LowFormerConfig):
        super().__init__()
        w, d = cfg.widths, cfg.depths
        fused = cfg.fused_blocks
        stem = [ConvLayer(3, w[0], 3, 2)]
        stem += [_conv_block(fused, w[0], w[0], cfg.expand_stem, 1, residual=True) for _ in range(d[0])]
        self.stem = nn.Sequential(*stem)
        for stage in (1, 2):
            blocks = [_conv_block(fused, w[stage - 1], w[stage], cfg.expand_s2, 2)]
            blocks += [_conv_block(fused, w[stage], w[stage], cfg.expand_s1, 1, residual=True) for _ in range(d[stage] - 1)]
            setattr(self, f"stage{stage}", nn.Sequential(*blocks))
        for stage in (3, 4):
            blocks = [_conv_block(fused, w[stage - 1], w[stage], cfg.expand_s2, 2)]
            blocks += [LowFormerBlock(cfg, stage) for _ in range(d[stage])]
            setattr(self, f"stage{stage}", nn.Sequential(*blocks))

    def forward(self, x) -> dict[str, torch.Tensor]:
        out = {}
        for key, stage in zip(self.FEATURE_KEYS, (self.stem, self.stage1, self.stage2, self.stage3, self.stage4)):
            x = stage(x)
            out[key] = x
        return out


class ClsHead(nn.Module):
    def __init__(self, cin, h0, h1, classes, dropout=0.0):
        super().__init__()
        self.conv = ConvLayer(cin, h0, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(h0, h1, bias=False)
        self.ln = nn.LayerNorm(h1)
        self.act = nn.Hardswish()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(h1, classes)

    def forward(self, x):
        x = self.pool(self.conv(x)).flatten(1)
        return self.fc2(self.drop(self.act(self.ln(self.fc1(x)))))


class LowFormer(nn.Module):
    """Classifier: ``forward(x)`` gives logits, ``forward_features(x)`` the backbone's feature dict."""

    def __init__(self, cfg: LowFormerConfig, dropout: float = 0.0):
        super().__init__()
        self.config = cfg
        self.backbone = LowFormerBackbone(cfg)
        self.head = ClsHead(cfg.widths[4], *cfg.head_widths, cfg.num_classes, dropout)

    def forward_features(self, x) -> dict[str, torch.Tensor]:
        return self.backbone(x)

    def forward(self, x):
        return self.head(self.backbone(x)["stage_final"])


# ---------------------------------------------------------------------------------------------- init


def init_weights_(model: LowFormer) -> LowFormer:
    """The release's initialisation (docs/architecture.md §10), including last_gamma = 0 on identity-residual conv blocks."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, (FusedMBConv, MBConv)) and m.residual:
            nn.init.zeros_(m.point.norm.weight)
    return model


def set_drop_path(model: LowFormer, rate: float, skip: int = 0) -> list[float]:
    """Assign stochastic-depth rates to every identity residual of stages 1-4 (not the stem).

    Attention, MLP and local conv count as separate residuals. The first ``skip`` get 0; the remaining N
    get rate * (i + 1) / N. Returns the rates in order.
    """
    paths: list[DropPath] = []
    for stage in (model.backbone.stage1, model.backbone.stage2, model.backbone.stage3, model.backbone.stage4):
        for blk in stage:
            if isinstance(blk, LowFormerBlock):
                if blk.att is not None:
                    paths.append(blk.drop_att)
                if blk.mlp is not None:
                    paths.append(blk.drop_mlp)
                paths.append(blk.local.drop_path)
            elif blk.residual:
                paths.append(blk.drop_path)
    n = max(len(paths) - skip, 1)
    rates = []
    for i, p in enumerate(paths):
        p.rate = 0.0 if i < skip else rate * (i - skip + 1) / n
        rates.append(p.rate)
    return rates


# ---------------------------------------------------------------------------------------------- checks

_MODULE_KIND = {
    "conv": nn.Conv2d,
    "pointwise": nn.Conv2d,
    "depthwise": nn.Conv2d,
    "grouped_conv": nn.Conv2d,
    "conv_transpose": nn.ConvTranspose2d,
    "linear": nn.Linear,
    "norm": (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm),
}


def check_against_graph(model: LowFormer, graph: OpGraph | None = None) -> None:
    """Every parameterised layer of the op graph is a module of the right type, kernel, stride, groups and
    parameter count, and the model has no parameter the graph does not know. Raises AssertionError."""
    graph = graph or build_op_graph(model.config)
    seen = 0
    for layer in graph.layers():
        kind = _MODULE_KIND.get(layer.op)
        if kind is None:
            continue
        try:
            m = model.get_submodule(layer.name)
        except AttributeError:
            raise AssertionError(f"op graph layer {layer.name} has no module in the built model") from None
        if not isinstance(m, kind):
            raise AssertionError(f"{layer.name}: graph says {layer.op}, model has {type(m).__name__}")
        n = sum(p.numel() for p in m.parameters(recurse=False))
        if n != layer.params:
            raise AssertionError(f"{layer.name}: graph counts {layer.params} params, model has {n}")
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            got = (m.kernel_size[0], m.stride[0], m.groups)
            if got != (layer.kernel, layer.stride, layer.groups):
                raise AssertionError(f"{layer.name}: graph (k, s, g) {(layer.kernel, layer.stride, layer.groups)}, model {got}")
        seen += n
    total = sum(p.numel() for p in model.parameters())
    if seen != total:
        raise AssertionError(f"model has {total} params, the op graph accounts for {seen}")


def build_model(
    config: LowFormerConfig,
    *,
    init: bool = True,
    drop_path: float = 0.0,
    drop_path_skip: int = 0,
    dropout: float = 0.0,
    check: bool = True,
) -> LowFormer:
    """Build the classifier of ``config`` (eval mode). ``check`` verifies it against the op graph."""
    if not isinstance(config, LowFormerConfig):
        raise ConfigError("config", f"expected a LowFormerConfig (got {type(config).__name__})")
    model = LowFormer(config, dropout)
    if init:
        init_weights_(model)
    if drop_path:
        set_drop_path(model, drop_path, drop_path_skip)
    if check:
        check_against_graph(model)
    return model.eval()


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and norm statistics everywhere (no zero gammas), for equivalence tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            for name, p in m.named_parameters(recurse=False):
                if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and name == "weight":
                    p.copy_(torch.rand(p.shape, generator=g) + 0.5)
                elif p.ndim == 1:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
                else:
                    p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model
