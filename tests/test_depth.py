"""Depth: the one-layer model is the paper's, N-layer stacks are built, recomputed, analysed and probed layer by layer."""

import copy
import dataclasses
import json
import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from ssmscope.analysis.kernels import kernel_modules, layer_depth
from ssmscope.analysis.run import analyze_run
from ssmscope.analysis.probes import intervene, run_probes, truncate
from ssmscope.cli import main
from ssmscope.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ssmscope.errors import SsmscopeError
from ssmscope.models import S4D, DepthwiseSeparableConv1d, ResidualS4DBlock, SamePadConv1d, StateMemoryReplay, build_model, model_name
from ssmscope.pipeline import reproduce
from ssmscope.train import load_run, train_run
from ssmscope.train.metrics import binary_metrics

SMALL = ModelConfig(embed_dim=16, num_filters=8, kernel_sizes=(3, 4), d_state=8)
S4D_ARCHS = ("s4d", "conv_s4d", "depthwise_s4d", "smr_s4d", "smr_s4d-add", "smr_s4d-none")
VOCAB = 40


def one_layer_by_hand(arch: str, cfg: ModelConfig) -> nn.Module:
    """The paper's single-layer detector written out without the registry: branches first (in the
    documented order, each S4D after its convolution), then embedding and head, as the model has
    always been built. A plain container with the same attribute names as DetectorModel."""
    def s4d(width):
        return S4D(width, cfg.d_state, cfg.s4d_init, cfg.discretization, cfg.dt_min, cfg.dt_max)

    E, F = cfg.embed_dim, cfg.num_filters
    if arch == "s4d":
        branches = {"s4d": s4d(E)}
    elif arch == "conv_s4d":
        branches = {f"conv{k}": nn.Sequential(OrderedDict(conv=SamePadConv1d(E, F, k), s4d=s4d(F))) for k in cfg.kernel_sizes}
    elif arch == "depthwise_s4d":
        branches = {f"dwconv{k}": nn.Sequential(OrderedDict(conv=DepthwiseSeparableConv1d(E, F, k), s4d=s4d(F))) for k in cfg.kernel_sizes}
    else:
        fusion = {"smr_s4d": "mul", "smr_s4d-add": "add", "smr_s4d-none": "none"}[arch]
        branches = {"smr": nn.Sequential(OrderedDict(smr=StateMemoryReplay(E, cfg.smr_kernel_size, fusion), s4d=s4d(E)))}
    model = nn.Module()
    model.branches = nn.ModuleDict(branches)
    model.embedding = nn.Embedding(VOCAB, E, padding_idx=0)
    width = sum(F if arch in ("conv_s4d", "depthwise_s4d") else E for _ in branches)
    model.head = nn.Linear(width, 1)
    return model


def logits_by_hand(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """embedding → each branch → ReLU → max over valid positions → concatenate → head (eval: no dropout)."""
    x = model.embedding(tokens).transpose(1, 2)
    pooled = []
    for branch in model.branches.values():
        h = torch.relu(branch(x))
        pooled.append(torch.stack([h[i, :, :n].amax(-1) for i, n in enumerate(lengths.tolist())]))
    return model.head(torch.cat(pooled, dim=-1)).squeeze(-1)


@pytest.mark.parametrize("arch", S4D_ARCHS)
def test_one_layer_is_the_papers_model_parameters_names_and_output(arch):
    torch.manual_seed(7)
    built = build_model(arch, VOCAB, dataclasses.replace(SMALL, layers=1)).eval()
    torch.manual_seed(7)
    by_hand = one_layer_by_hand(arch, SMALL).eval()
    ours, theirs = built.state_dict(), by_hand.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    tokens = torch.randint(1, VOCAB, (3, 21))
    lengths = torch.tensor([21, 13, 4])
    with torch.no_grad():
        torch.testing.assert_close(built(tokens, lengths), logits_by_hand(by_hand, tokens, lengths), rtol=0, atol=1e-6)


def test_runs_from_before_depth_load_as_one_layer(tmp_path):
    """A config.json without the depth fields (every run trained before them) loads as layers = 1."""
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"code": f"int f{i}(int a) {{ return a + {i % 5}; }}", "label": i % 2}) + "\n" for i in range(60)))
    config = RunConfig("smr_s4d", str(data), DataConfig(max_len=32, min_count=1), SMALL, TrainConfig(epochs=1))
    train_run(config, tmp_path / "run", log=lambda s: None)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    for key in ("layers", "block_dropout"):
        del stored["model"][key]
    del stored["train"]["recompute_branches"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(stored))
    loaded, _, model = load_run(tmp_path / "run")
    assert loaded.model.layers == 1 and [n for n, _ in model.s4d_layers()] == ["branches.smr.s4d"]


@pytest.mark.parametrize("arch,expected,depths", [
    ("s4d-3layers", ["branches.s4d.s4d", "branches.s4d.blocks.1.s4d", "branches.s4d.blocks.2.s4d"], [0, 1, 2]),
    ("smr_s4d-add-2layers", ["branches.smr.s4d", "branches.smr.blocks.1.s4d"], [0, 1]),
    ("conv_s4d-2layers", ["branches.conv3.s4d", "branches.conv3.blocks.1.s4d", "branches.conv4.s4d", "branches.conv4.blocks.1.s4d"], [0, 1, 0, 1]),
    ("depthwise_s4d-2layers", ["branches.dwconv3.s4d", "branches.dwconv3.blocks.1.s4d", "branches.dwconv4.s4d", "branches.dwconv4.blocks.1.s4d"], [0, 1, 0, 1]),
])
def test_every_s4d_of_a_deep_model_has_a_place_and_a_depth(arch, expected, depths):
    model = build_model(arch, VOCAB, SMALL)
    names = [name for name, _ in model.s4d_layers()]
    assert names == expected == [name for name, _ in kernel_modules(model)]
    assert [layer_depth(n) for n in names] == depths
    assert sum(isinstance(m, ResidualS4DBlock) for m in model.modules()) == len(names) - len(model.s4d_branches())


def test_depth_by_flag_equals_depth_by_name():
    torch.manual_seed(3)
    by_flag = build_model("smr_s4d", VOCAB, dataclasses.replace(SMALL, layers=3))
    torch.manual_seed(3)
    by_name = build_model("smr_s4d-3layers", VOCAB, SMALL)
    a, b = by_flag.state_dict(), by_name.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert model_name("smr_s4d", dataclasses.replace(SMALL, layers=3)) == model_name("smr_s4d-3layers", SMALL) == "smr_s4d-3layers"
    assert model_name("smr_s4d-add", SMALL) == "smr_s4d-add" and model_name("s4d-1layers", SMALL) == "s4d"


@pytest.mark.parametrize("arch,layers,message", [
    ("cnn-2layers", 1, "cnn has no S4D layer"),
    ("depthwise", 2, "depthwise has no S4D layer"),
    ("s4d-2layers", 3, "fixes layers = 2"),
    ("s4d", 0, "--layers must be at least 1"),
    ("hyena-2layers", 1, "unknown architecture 'hyena'"),
])
def test_bad_depth_is_refused(arch, layers, message):
    with pytest.raises(SsmscopeError, match=message):
        build_model(arch, VOCAB, dataclasses.replace(SMALL, layers=layers))


def test_bad_depth_on_the_command_line_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", "--arch", "cnn", "--layers", "2", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--layers 2: cnn has no S4D layer" in err
    assert not (tmp_path / "run").exists()


def test_residual_block_follows_its_formula_in_float64():
    """x + GLU(W x̂ + b) with x̂ = GELU(S4D(LayerNorm(x))), written out: LayerNorm over channels with
    the biased variance and eps 1e-5, GELU through erf, GLU = first half · sigmoid(second half)."""
    torch.manual_seed(4)
    block = ResidualS4DBlock(S4D(6, 4), dropout=0.3).double().eval()
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 11, dtype=torch.float64)
    with torch.no_grad():
        mean = x.mean(dim=1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
        normed = (x - mean) / torch.sqrt(var + 1e-5) * block.norm.weight[:, None] + block.norm.bias[:, None]
        y = block.s4d(normed)
        gelu = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))
        projected = torch.einsum("oc,bcl->bol", block.output.weight[:, :, 0], gelu) + block.output.bias[:, None]
        expected = x + projected[:, :6] * torch.sigmoid(projected[:, 6:])
        torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("arch", ["s4d-3layers", "conv_s4d-2layers", "smr_s4d-2layers"])
def test_deep_models_are_causal_and_ignore_padding(arch):
    """Changing tokens after position t leaves every branch output up to t alone (causal S4D; the
    convolution's centred window reaches k // 2 ahead); a function's logit does not depend on padding."""
    torch.manual_seed(5)
    model = build_model(arch, VOCAB, SMALL).eval()
    tokens = torch.randint(1, VOCAB, (1, 30))
    changed = tokens.clone()
    changed[0, 20:] = torch.randint(1, VOCAB, (10,))
    reach = max(SMALL.kernel_sizes) // 2 if arch.startswith("conv") else 0
    with torch.no_grad():
        x, x_changed = model.embedding(tokens).transpose(1, 2), model.embedding(changed).transpose(1, 2)
        for branch in model.branches.values():
            torch.testing.assert_close(branch(x)[..., : 20 - reach], branch(x_changed)[..., : 20 - reach], rtol=0, atol=1e-6)
        padded = torch.zeros(2, 30, dtype=torch.long)
        padded[0, :12], padded[1] = tokens[0, :12], changed[0]
        torch.testing.assert_close(model(padded, torch.tensor([12, 30]))[0], model(tokens[:, :12], torch.tensor([12]))[0], rtol=1e-5, atol=1e-5)


def _gradients(model, tokens, lengths, seed):
    torch.manual_seed(seed)  # the blocks' dropout draws
    model.zero_grad(set_to_none=True)
    model(tokens, lengths).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("arch", ["conv_s4d", "depthwise_s4d-2layers", "s4d-2layers"])
def test_recomputing_branches_gives_the_same_gradients_bit_for_bit_and_keeps_less(arch):
    torch.manual_seed(6)
    model = build_model(arch, VOCAB, SMALL).train()  # dropout on: the recomputation must replay it
    tokens = torch.randint(1, VOCAB, (4, 33))
    lengths = torch.tensor([33, 20, 9, 33])
    kept = {}
    for recompute in (False, True):
        model.recompute_branches = recompute
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
            loss = model(tokens, lengths).sum()
        kept[recompute] = sum(saved)
        del loss
    model.recompute_branches = False
    plain = _gradients(model, tokens, lengths, seed=11)
    model.recompute_branches = True
    recomputed = _gradients(model, tokens, lengths, seed=11)
    assert plain.keys() == recomputed.keys() and all(torch.equal(plain[k], recomputed[k]) for k in plain)
    assert kept[True] < kept[False] / 2  # only the branches' inputs and pooled outputs stay


def _silenced(model: nn.Module, only: str | None = None) -> nn.Module:
    """A copy whose S4D layers (or the one named ``only``) have C = 0, i.e. an all-zero kernel: a second path to '0 taps'."""
    silent = copy.deepcopy(model)
    with torch.no_grad():
        for name, layer in silent.s4d_layers():
            if only is None or name == only:
                layer.C.zero_()
    return silent


@pytest.mark.parametrize("arch", ["s4d-3layers", "conv_s4d-2layers"])
def test_truncating_every_layer_to_zero_taps_equals_zeroing_every_kernel(arch):
    torch.manual_seed(8)
    model = build_model(arch, VOCAB, SMALL).eval()
    tokens = torch.randint(1, VOCAB, (3, 25))
    lengths = torch.tensor([25, 17, 6])
    with torch.no_grad():
        with intervene(model, truncate(0)):
            truncated = model(tokens, lengths)
        silenced = _silenced(model)(tokens, lengths)
        assert not torch.equal(truncated, model(tokens, lengths))  # the kernels mattered
    torch.testing.assert_close(truncated, silenced, rtol=0, atol=0)


def test_probes_cover_every_layer_alone_and_all_at_once():
    """Per-layer probes exist for every kernel layer; a layer truncated to 0 taps alone scores as the
    model with only that layer silenced, and all at once as every layer silenced."""
    torch.manual_seed(9)
    model = build_model("smr_s4d-3layers", VOCAB, SMALL).eval()
    tokens = torch.randint(1, VOCAB, (60, 24))
    lengths = torch.randint(5, 25, (60,))
    with torch.no_grad():
        logits = model(tokens, lengths)
    labels = (logits > logits.median()).long().numpy()  # a task this very model solves

    def score(m):
        with torch.no_grad():
            return binary_metrics(labels, torch.sigmoid(m(tokens, lengths)).double().numpy())

    results = run_probes(model, score, length=24)
    names = [name for name, _ in model.s4d_layers()]
    assert list(results["layers"]) == names
    assert results["truncation"][0]["roc_auc"] == pytest.approx(score(_silenced(model))["roc_auc"], abs=1e-12)
    for name in names:
        alone = results["layers"][name]
        assert alone["truncation"][0]["roc_auc"] == pytest.approx(score(_silenced(model, only=name))["roc_auc"], abs=1e-12)
        assert alone["truncation"][-1]["roc_auc"] == results["unmodified"]["roc_auc"]  # all taps: the model itself
        assert set(alone["bands"]) == {"low", "mid", "high"} and alone["used_range_tokens"] is not None
    assert "layers" not in run_probes(model, score, length=24, per_layer=False)


def test_a_deep_run_is_analysed_probed_and_reported_layer_by_layer(tmp_path):
    """reproduce with a one-layer and a two-layer s4d: both in the study table, each analysed layer
    (with its depth) in the report's per-run table in depth order, with per-layer probed ranges."""
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"code": f"int f{i}(int a) {{ int b = a * {i % 7}; return b > {i % 3}; }}", "label": i % 2}) + "\n"
                            for i in range(80)))
    base = RunConfig("s4d", str(data), DataConfig(max_len=32, min_count=1), SMALL, TrainConfig(epochs=1))
    rows, report = reproduce(base, tmp_path / "study", archs=("s4d", "s4d-2layers"), seeds=(0,), log=lambda s: None)
    assert [r["architecture"] for r in rows] == ["s4d", "s4d-2layers"]
    deep = tmp_path / "study" / "runs" / "s4d-2layers-seed0"
    summary = json.loads((deep / "analysis" / "summary.json").read_text())
    assert [(l["name"], l["depth"]) for l in summary["layers"]] == [("branches.s4d.s4d", 0), ("branches.s4d.blocks.1.s4d", 1)]
    assert all("null" in l for l in summary["layers"])
    probes = json.loads((deep / "probes" / "test-split.json").read_text())
    assert list(probes["layers"]) == ["branches.s4d.s4d", "branches.s4d.blocks.1.s4d"]
    md = (report.parent / "report.md").read_text()
    section = md.split("## s4d-2layers (seed 0)")[1]
    first, second = section.index("| branches.s4d.s4d | 0 |"), section.index("| branches.s4d.blocks.1.s4d | 1 |")
    assert first < second < section.index("| model (all layers) |")
    block_row = next(line for line in section.splitlines() if line.startswith("| branches.s4d.blocks.1.s4d | 1 |"))
    alone = probes["layers"]["branches.s4d.blocks.1.s4d"]
    expected = ["–" if alone[key] is None else str(alone[key]) for key in ("used_range_tokens", "used_range_auc_tokens")]
    assert [cell.strip() for cell in block_row.strip("| ").split(" | ")[-2:]] == expected
    figures = [line for line in section.splitlines() if line.startswith("![")]
    assert figures.index(next(f for f in figures if "branches_s4d_s4d_time" in f)) < figures.index(next(f for f in figures if "blocks_1_s4d_time" in f))
