import pytest
import torch

from sltgeom.architectures import architecture_name, lenet_features, lenet_min_side
from sltgeom.models import build_model, count_parameters, init_model


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize(
    "spec",
    [
        {"type": "ffnn", "hidden_layers": 2, "hidden_nodes": 16},
        {"type": "dlnn", "hidden_layers": 1, "hidden_nodes": 8},
        {"type": "cnn_same", "extra_conv_layers": 2},
    ],
)
def test_models_map_images_to_logits(spec, shape):
    model = build_model(spec, shape, 10)
    assert model(torch.randn(3, *shape)).shape == (3, 10)


def _lenet_count(channels: int, side: int, extra: int, n_classes: int = 10) -> int:
    """The original LeNet's parameters from its layer sizes: 5×5 convolutions 6 → (6 ×
    extra) → 16 channels, the first two unpadded, 2×2 pools, then 120 → 84 → classes."""

    def conv(c_in, c_out):
        return c_out * c_in * 25 + c_out

    def linear(n_in, n_out):
        return n_in * n_out + n_out

    side = ((side - 4) // 2 - 4) // 2  # conv (−4), pool (/2), conv (−4), pool (/2)
    return (
        conv(channels, 6)
        + extra * conv(6, 6)
        + conv(6, 16)
        + linear(16 * side * side, 120)
        + linear(120, 84)
        + linear(84, n_classes)
    )


@pytest.mark.parametrize(
    ("shape", "extra", "features", "expected"),
    [
        ((1, 28, 28), 0, 256, 44_426),  # the "about 44k": 16·4·4 features
        ((1, 28, 28), 2, 256, 46_238),
        ((3, 32, 32), 0, 400, 62_006),  # LeNet-5 on CIFAR-10: 16·5·5 features
        ((3, 32, 32), 2, 400, 63_818),
    ],
)
def test_cnn_is_the_original_lenet(shape, extra, features, expected):
    model = build_model({"type": "cnn", "extra_conv_layers": extra}, shape, 10)
    assert _lenet_count(shape[0], shape[1], extra) == expected
    assert count_parameters(model) == expected
    assert next(m for m in model if isinstance(m, torch.nn.Linear)).in_features == features
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    assert [c.padding for c in convs] == [(0, 0)] + [(2, 2)] * extra + [(0, 0)]
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_cnn_same_pads_every_convolution():
    model = build_model({"type": "cnn_same", "extra_conv_layers": 1}, (1, 8, 8), 10)
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    assert [c.padding for c in convs] == [(2, 2)] * 3
    assert next(m for m in model if isinstance(m, torch.nn.Linear)).in_features == 16 * 2 * 2
    assert architecture_name({"type": "cnn_same", "extra_conv_layers": 1}) == "cnn-same-k1"
    assert architecture_name({"type": "cnn", "extra_conv_layers": 1}) == "cnn-k1"


def test_unpadded_cnn_rejects_small_images_and_suggests_the_padded_one():
    assert (lenet_min_side("cnn"), lenet_min_side("cnn_same")) == (16, 4)
    assert lenet_features("cnn", (1, 16, 16)) == 16  # 16 → 12 → 6 → 2 → 1
    build_model({"type": "cnn", "extra_conv_layers": 0}, (1, 16, 16), 10)(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"at least 16×16, got 15×15.*cnn_same"):
        build_model({"type": "cnn", "extra_conv_layers": 0}, (1, 15, 15), 10)
    with pytest.raises(ValueError, match=r"`cnn_same` needs images of at least 4×4, got 3×8$"):
        lenet_features("cnn_same", (1, 3, 8))


def test_ffnn_parameter_count_and_name():
    spec = {"type": "ffnn", "hidden_layers": 1, "hidden_nodes": 128}
    assert count_parameters(build_model(spec, (1, 28, 28), 10)) == 784 * 128 + 128 + 128 * 10 + 10
    assert architecture_name(spec) == "ffnn-1x128"


def test_deep_linear_network_is_linear():
    model = build_model({"type": "dlnn", "hidden_layers": 3, "hidden_nodes": 5}, (1, 4, 4), 3)
    a, b = torch.randn(2, 1, 4, 4)
    zero = model(torch.zeros(1, 1, 4, 4))
    assert torch.allclose(model(a + b) - zero, (model(a) - zero) + (model(b) - zero), atol=1e-5)


def test_cnn_extra_layers_are_5x5_convolutions():
    model = build_model({"type": "cnn_same", "extra_conv_layers": 3}, (1, 28, 28), 10)
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and all(c.kernel_size == (5, 5) for c in convs)


def test_init_is_seed_controlled_and_leaves_global_rng_alone():
    spec = {"type": "ffnn", "hidden_layers": 1, "hidden_nodes": 8}
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = (init_model(spec, (1, 8, 8), 10, seed=7) for _ in range(2))
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = init_model(spec, (1, 8, 8), 10, seed=8)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_unknown_architecture_is_rejected():
    with pytest.raises(ValueError, match="unknown architecture type 'rnn'"):
        build_model({"type": "rnn"}, (1, 8, 8), 10)
