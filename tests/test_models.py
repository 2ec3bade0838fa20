import pytest
import torch

from sltgeom.models import architecture_name, build_model, count_parameters, init_model


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize(
    "spec",
    [
        {"type": "ffnn", "hidden_layers": 2, "hidden_nodes": 16},
        {"type": "dlnn", "hidden_layers": 1, "hidden_nodes": 8},
        {"type": "cnn", "extra_conv_layers": 2},
    ],
)
def test_models_map_images_to_logits(spec, shape):
    model = build_model(spec, shape, 10)
    assert model(torch.randn(3, *shape)).shape == (3, 10)


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
    model = build_model({"type": "cnn", "extra_conv_layers": 3}, (1, 28, 28), 10)
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
