import networkx as nx

from search_spaces import OP_TYPES, build_op_graph, count, get_variant, sample_configs


def test_networkx_graph_agrees_with_counts():
    for name in ("B1", "B1-relu-linear", "B1-unfused", "E2"):
        cfg = get_variant(name).config
        g = build_op_graph(cfg).to_networkx()
        c = count(cfg)
        nodes = [d for n, d in g.nodes(data=True) if n != "input"]
        assert sum(d["params"] for d in nodes) == c.params
        assert sum(d["macs"] for d in nodes) == c.macs
        assert sum(d["bytes_read"] + d["bytes_written"] for d in nodes) == c.bytes
        assert len(nodes) == c.layers
        assert nx.is_directed_acyclic_graph(g)
        # Everything flows from the input to the logits.
        assert nx.has_path(g, "input", "head.fc2")
        assert set(d["op"] for d in nodes) <= set(OP_TYPES)


def test_residual_adds_have_two_inputs():
    g = build_op_graph(get_variant("B3").config).to_networkx()
    adds = [n for n, d in g.nodes(data=True) if d["op"] == "add"]
    assert adds and all(g.in_degree(n) == 2 for n in adds)


def test_layer_attributes():
    layers = {layer.name: layer for layer in build_op_graph(get_variant("B1").config).layers()}
    qkv = layers["backbone.stage3.1.att.qkv"]
    assert (qkv.op, qkv.in_shape, qkv.out_shape, qkv.params) == ("pointwise", (128, 7, 7), (192, 7, 7), 24576)
    proj = layers["backbone.stage3.1.att.proj"]
    assert (proj.op, proj.kernel, proj.stride, proj.out_shape) == ("conv_transpose", 4, 2, (128, 14, 14))
    dw = layers["backbone.stage4.1.local.depth.conv"]
    assert (dw.op, dw.groups) == ("depthwise", 1024)
    qk = layers["backbone.stage3.1.att.matmul_qk"]
    assert qk.macs == 2 * 49 * 49 * 32 and qk.detail == "tokens=49"
    # fp32 traffic: input + weights read, output written
    assert qkv.bytes_read == 4 * (128 * 49 + 24576) and qkv.bytes_written == 4 * 192 * 49


def test_odd_stage3_size_is_cropped():
    layers = {layer.name: layer for layer in build_op_graph(get_variant("B1").config.with_(resolution=240)).layers()}
    assert layers["backbone.stage3.1.att.proj"].out_shape == (128, 16, 16)
    assert layers["backbone.stage3.1.att.crop"].out_shape == (128, 15, 15)


def test_attention_tokens():
    tok = build_op_graph(get_variant("B1-highres-att").config).attention_tokens()
    assert tok["stage3"] == 196 and tok["stage4"] == 49


def test_counts_per_stage_sum_to_total():
    for cfg in sample_configs(50, seed=3):
        c = count(cfg)
        assert sum(c.stage(s)["params"] for s in c.out_shapes) == c.params
        assert sum(v["macs"] for v in c.per_op().values()) == c.macs
