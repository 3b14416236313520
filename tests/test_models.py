"""The six detectors: registry, shapes, named S4D layers, padding invariance."""

import pytest
import torch

from ssmscope.config import ModelConfig
from ssmscope.errors import SsmscopeError
from ssmscope.models import ARCHITECTURES, S4D, SamePadConv1d, StateMemoryReplay, build_model

SMALL = ModelConfig(embed_dim=16, num_filters=8, kernel_sizes=(3, 4), d_state=8)
EXPECTED_S4D = {
    "cnn": [],
    "depthwise": [],
    "s4d": ["branches.s4d"],
    "conv_s4d": ["branches.conv3.s4d", "branches.conv4.s4d"],
    "depthwise_s4d": ["branches.dwconv3.s4d", "branches.dwconv4.s4d"],
    "smr_s4d": ["branches.smr.s4d"],
    "mamba": [],  # no S4D: its selective layers are branches.mamba.blocks.k.mamba (test_mamba.py)
}


def test_registry_names_are_the_studys_six_then_mamba():
    assert list(ARCHITECTURES) == ["cnn", "depthwise", "s4d", "conv_s4d", "depthwise_s4d", "smr_s4d", "mamba"]
    with pytest.raises(SsmscopeError, match="known: cnn, depthwise"):
        build_model("transformer", 10)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_s4d_layers_are_named_by_place(arch):
    model = build_model(arch, 50, SMALL)
    assert [name for name, _ in model.s4d_layers()] == EXPECTED_S4D[arch]
    assert all(isinstance(m, S4D) for _, m in model.s4d_layers())


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_padding_does_not_change_a_functions_logit(arch):
    """A function's logit alone equals its logit inside a batch padded to a longer function."""
    torch.manual_seed(0)
    model = build_model(arch, 50, SMALL).eval()
    short = torch.randint(2, 50, (1, 9))
    long = torch.randint(2, 50, (1, 23))
    batch = torch.zeros(2, 23, dtype=torch.long)
    batch[0, :9], batch[1] = short[0], long[0]
    with torch.no_grad():
        alone = model(short, torch.tensor([9]))
        together = model(batch, torch.tensor([9, 23]))
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)
    assert together.shape == (2,)


def test_max_pool_ignores_padded_positions():
    """Features equal an explicit max over the valid positions of the branch outputs."""
    torch.manual_seed(1)
    model = build_model("cnn", 50, SMALL).eval()
    tokens = torch.randint(2, 50, (3, 12))
    lengths = torch.tensor([12, 5, 1])
    tokens[1, 5:] = 0
    tokens[2, 1:] = 0
    with torch.no_grad():
        features = model.features(tokens, lengths)
        x = model.embedding(tokens).transpose(1, 2)
        for row, n in enumerate(lengths.tolist()):
            expected = torch.cat([torch.relu(b(x[row : row + 1]))[0, :, :n].amax(-1) for b in model.branches.values()])
            torch.testing.assert_close(features[row], expected)


def test_causal_and_centred_convolutions():
    x = torch.zeros(1, 1, 9)
    x[0, 0, 4] = 1.0
    for causal, first_nonzero in ((True, 4), (False, 3)):
        conv = SamePadConv1d(1, 1, 3, causal=causal)
        with torch.no_grad():
            conv.weight.fill_(1.0)
            conv.bias.zero_()
            y = conv(x)[0, 0]
        assert y.shape == (9,) and y.nonzero().min().item() == first_nonzero and y.sum().item() == 3.0


def test_smr_multiplies_input_with_its_causal_convolution():
    torch.manual_seed(2)
    smr = StateMemoryReplay(4, kernel_size=3)
    u = torch.randn(2, 4, 10)
    with torch.no_grad():
        expected = u * torch.nn.functional.conv1d(torch.nn.functional.pad(u, (2, 0)), smr.conv.weight, smr.conv.bias)
        torch.testing.assert_close(smr(u), expected)


@pytest.mark.parametrize("variant,fusion", [("smr_s4d", "mul"), ("smr_s4d-add", "add"), ("smr_s4d-none", "none")])
def test_smr_fusion_variants(variant, fusion):
    torch.manual_seed(3)
    model = build_model(variant, 50, SMALL)
    smr = model.branches["smr"].smr
    assert smr.fusion == fusion and [n for n, _ in model.s4d_layers()] == ["branches.smr.s4d"]
    u = torch.randn(2, 16, 7)
    with torch.no_grad():
        c = smr.conv(u)
        expected = {"mul": u * c, "add": u + c, "none": c}[fusion]
        torch.testing.assert_close(smr(u), expected)
