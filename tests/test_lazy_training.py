"""Lazy-training study (seed notebook 003): every theory claim checked on a small case."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SCHEMA
from torch.func import grad, jvp

from sltgeom.config import ConfigError, validate_config
from sltgeom.lazy_training import linear, ntk, theory
from sltgeom.lazy_training.data import Dataset, batch_indices, make_dataset
from sltgeom.lazy_training.experiments import run_experiment
from sltgeom.lazy_training.mlp import ShallowMembers, shallow_forward, shallow_init
from sltgeom.schemas import TABLES, lazy_tables

pytestmark = pytest.mark.usefixtures("single_thread")

BASE = {
    "studies": {
        "s": {
            "dataset": "digits",
            "architectures": [{"type": "ffnn", "hidden_layers": 1, "hidden_nodes": 8}],
            "optimizers": {"sgd": {"type": "sgd", "lr": 0.1}},
            "seeds": [0],
            "epochs": 1,
        }
    }
}


def settings(experiment: str, **overrides) -> dict:
    """One experiment's settings with the schema's defaults filled in."""
    config = validate_config(
        {**copy.deepcopy(BASE), "lazy_training": {experiment: overrides}}, SCHEMA
    )
    return config["lazy_training"][experiment]


def test_schema_defaults_are_the_notebooks_sizes():
    config = validate_config({**copy.deepcopy(BASE), "lazy_training": {}}, SCHEMA)
    lazy = config["lazy_training"]
    assert lazy["width_sweep"]["widths"] == [5, 10, 100, 1000]
    assert lazy["width_sweep"]["steps"] == 50000 and lazy["width_sweep"]["lr"] == 0.002
    assert lazy["output_scaling"]["alphas"] == [1, 100, 1000]
    assert lazy["output_scaling"]["data"]["n"] == 10
    assert lazy["bias_complexity"]["data"] == {**lazy["linsin"]["data"], "n": 50, "noise": 0.05}
    assert lazy["shallow_seeds"]["widths"] == [10] and len(lazy["shallow_seeds"]["seeds"]) == 10


@pytest.mark.parametrize(
    ("experiment", "block", "key"),
    [
        ("width_sweep", {"widths": [10, -5]}, "lazy_training.width_sweep.widths.1"),
        ("output_scaling", {"alphas": [1, 0]}, "lazy_training.output_scaling.alphas.1"),
        ("output_scaling", {"alphas": [1, -3.0]}, "lazy_training.output_scaling.alphas.1"),
        ("linsin", {"data": {"target": "wiggly"}}, "lazy_training.linsin.data.target"),
        (
            "linsin",
            {"runs": [{"feature_dim": 7, "steps": 5}]},
            "lazy_training.linsin.runs.0.feature_dim",
        ),
        ("bad_init", {"lr": 0}, "lazy_training.bad_init.lr"),
        ("landscape_1d", {"typo": 1}, "lazy_training.landscape_1d.typo"),
    ],
)
def test_bad_settings_are_rejected_naming_the_key(experiment, block, key):
    config = {**copy.deepcopy(BASE), "lazy_training": {experiment: block}}
    with pytest.raises(ConfigError, match=rf"`{key}`"):
        validate_config(config, SCHEMA)


def test_null_disables_the_study_and_single_experiments():
    assert validate_config(copy.deepcopy(BASE), SCHEMA)["lazy_training"] is None
    config = validate_config({**copy.deepcopy(BASE), "lazy_training": {"gf_vs_gd": None}}, SCHEMA)
    assert config["lazy_training"]["gf_vs_gd"] is None
    assert config["lazy_training"]["linsin"] is not None


def test_dataset_risk_is_the_noise_variance_at_the_target():
    ds = make_dataset(
        {"n": 40, "xmin": -1, "xmax": 1, "noise": 0.1, "target": "complex", "seed": 3},
        grid_points=50,
    )
    assert isinstance(ds, Dataset) and ds.n == 40 and (np.abs(ds.x) <= 1).all()
    assert ds.risk(ds.truth) == pytest.approx(0.01)
    assert ds.risk(ds.truth + 0.5) == pytest.approx(0.26)
    assert batch_indices(15, 30, 5, 0) is None
    batches = batch_indices(15, 4, 5, 0)
    assert batches.shape == (5, 4) and all(len(set(b)) == 4 for b in batches)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_shallow_members_gradients_are_each_members_autograd_gradient(activation):
    x, y = torch.linspace(-1, 1, 7, dtype=torch.float64), torch.sin(torch.arange(7.0)).double()
    net = ShallowMembers(x, y, [3, 5], [0, 1], 0.1, activation)
    loss, grads = net.loss_and_grads(None)
    for m, (width, seed) in enumerate([(3, 0), (5, 1)]):
        params = shallow_init(width, seed)

        def member_loss(p):
            return (shallow_forward(p, x, activation) - y).square().mean()

        expected = grad(member_loss)(params)
        units = net.segment == m
        for flat, exp in zip(grads[:3], expected[:3], strict=True):
            torch.testing.assert_close(flat[units], exp, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grads[3][m : m + 1], expected[3], rtol=1e-12, atol=1e-14)
        assert loss[m] == pytest.approx(float(member_loss(params)), rel=1e-12)


def test_shallow_movement_is_each_members_relative_parameter_change():
    x = np.linspace(-1, 1, 9)
    net = ShallowMembers(x, np.sin(3 * x), [3, 5], [0, 1], 0.1, "tanh")
    net.anchor()
    for _ in range(5):
        net.step(net.loss_and_grads(None)[1])
    last, every = net.movement()
    for m, (width, seed) in enumerate([(3, 0), (5, 1)]):
        before, after = shallow_init(width, seed), net.member(m)
        delta = [a - b for a, b in zip(after, before, strict=True)]

        def norm(params):
            return float(torch.sqrt(sum(p.square().sum() for p in params)))

        assert last[m] == pytest.approx(norm(delta[2:]) / norm(before[2:]), rel=1e-12)
        assert every[m] == pytest.approx(norm(delta) / norm(before), rel=1e-12)


def test_linear_members_gradient_and_ntk_are_the_feature_closed_forms():
    x = np.linspace(-1, 1, 9)
    phi = linear.sincos_features(x, 6, 2.0)
    y = np.cos(x)
    members = linear.LinearMembers(phi, y, [6, 6], [0, 1], 0.01)
    _, (gw, gb) = members.loss_and_grads(None)
    r = members.predict(phi) - torch.as_tensor(y)
    torch.testing.assert_close(gw, 2 / 9 * r @ torch.as_tensor(phi))
    torch.testing.assert_close(gb, 2 / 9 * r.sum(1))

    def model(p, inputs):
        return linear.torch.as_tensor(linear.sincos_features(x, 6, 2.0))[inputs] @ p[0] + p[1]

    idx = torch.arange(9)
    kernel = ntk.empirical_ntk(model, (members.w[0], members.b[0]), idx)
    torch.testing.assert_close(kernel, torch.as_tensor(phi @ phi.T + 1))


@pytest.mark.parametrize("batch_size", [8, 3])
def test_kernel_gradient_descent_is_the_linearised_network_trained_the_same_way(batch_size):
    x = torch.linspace(-1, 1, 8, dtype=torch.float64)
    y, grid = torch.sin(3 * x), torch.linspace(-1, 1, 5, dtype=torch.float64)
    params = shallow_init(6, 2)
    f = lambda p, inputs: shallow_forward(p, inputs, "tanh")  # noqa: E731
    steps, lr = 25, 0.05
    batches = batch_indices(8, batch_size, steps, 0)
    # explicit GD on the linearised model f₀ + J(w₀)(w − w₀), via forward-mode JVPs
    w = [p.clone() for p in params]

    def lin(w, inputs):
        tangent = tuple(a - b for a, b in zip(w, params, strict=True))
        value, change = jvp(lambda *p: f(p, inputs), tuple(params), tangent)
        return value + change

    for t in range(steps):
        idx = slice(None) if batches is None else torch.as_tensor(batches[t])
        g = grad(lambda w, idx=idx: (lin(w, x[idx]) - y[idx]).square().mean())(w)
        w = [a - lr * b for a, b in zip(w, g, strict=True)]
    k_train, k_eval = ntk.kernels(f, [params], x, grid)
    rate = torch.full((1,), lr, dtype=torch.float64)
    start = f(params, x)[None], f(params, grid)[None]
    f_train, f_eval = ntk.kernel_gradient_descent(k_train, k_eval, *start, y, rate, steps, batches)
    torch.testing.assert_close(f_eval[0], lin(w, grid), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(f_train[0], lin(w, x), rtol=1e-10, atol=1e-12)


def test_full_batch_kernel_gd_closed_form_equals_stepping_even_for_a_singular_kernel():
    gen = torch.Generator().manual_seed(0)
    jac = torch.randn(3, 7, 20, generator=gen, dtype=torch.float64)
    jac[2, :, 10:], jac[2, 3] = 0, jac[2, 2]  # rank-deficient kernel for the last member
    grid_jac = torch.randn(3, 5, 20, generator=gen, dtype=torch.float64)
    k, k_eval = jac @ jac.transpose(1, 2), grid_jac @ jac.transpose(1, 2)
    start = torch.randn(3, 7, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    y, lr = torch.randn(7, dtype=torch.float64), torch.tensor([1e-4, 1e-3, 5e-3]).double()
    every_point = np.tile(np.arange(7), (300, 1))  # a "minibatch" of all points: the loop
    looped = ntk.kernel_gradient_descent(k, k_eval, *start, y, lr, 300, every_point)
    closed = ntk.kernel_gradient_descent(k, k_eval, *start, y, lr, 300, None)
    for a, b in zip(looped, closed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_loglog_slope_recovers_a_power_law_with_an_interval():
    alpha = np.repeat([1.0, 10, 100, 1000], 3)
    noise = np.exp(np.random.default_rng(0).normal(0, 0.05, alpha.size))
    fit = theory.loglog_slope(alpha, 2.0 / alpha * noise)
    assert fit["ci_low"] < -1 < fit["ci_high"] and abs(fit["slope"] + 1) < 0.05
    exact = theory.loglog_slope([1, 2, 4], [1, 0.25, 1 / 16])
    assert exact["slope"] == pytest.approx(-2) and exact["ci_high"] - exact["ci_low"] < 1e-9
    with pytest.raises(ValueError, match="positive"):
        theory.loglog_slope([1, 2, 3], [1, 0, 1])


def test_output_scaling_movement_falls_like_one_over_alpha_and_approaches_linearisation():
    tables = run_experiment(
        "output_scaling",
        settings(
            "output_scaling",
            alphas=[10, 100, 1000],
            seeds=[0, 1],
            width=6,
            hidden_layers=2,
            steps=300,
            grid_points=30,
        ),
    )
    slope = tables["output_scaling_slope"].iloc[0]
    assert abs(slope["slope"] + 1) < 0.15 and slope["n_points"] == 6
    gap = tables["output_scaling_gap"].groupby("alpha")["linearisation_gap"].max()
    assert gap.is_monotonic_decreasing and gap.iloc[-1] < gap.iloc[0] / 50
    trace = tables["output_scaling"]
    assert list(trace.columns[:5]) == ["alpha", "seed", "step", "loss", "relative_movement"]
    assert (trace[trace["step"] == 0]["relative_movement"] == 0).all()


def test_kernel_change_shrinks_with_width_and_the_widest_net_is_its_kernel_regression():
    tables = run_experiment(
        "width_sweep",
        settings("width_sweep", widths=[10, 100, 1000], steps=400, lr=0.002, grid_points=30),
    )
    kernel = tables["width_sweep_kernel"].sort_values("width")
    assert kernel["kernel_change"].is_monotonic_decreasing
    assert kernel["kernel_change"].iloc[-1] < kernel["kernel_change"].iloc[0] / 5
    assert kernel["linearised_gap_relative"].iloc[-1] < 0.05
    assert list(kernel["n_params"]) == [31, 301, 3001]


def test_linsin_weights_never_leave_the_row_space_of_the_features():
    tables = run_experiment(
        "linsin", settings("linsin", runs=[{"feature_dim": 200, "steps": 100}], seeds=[0, 1])
    )
    trace = tables["linsin"]
    final = trace[trace["step"] == 100]
    assert (final["relative_movement"] > 1e-2).all()  # the weights did move ...
    assert trace["off_row_space"].max() < 1e-13  # ... but only inside a 16-dim subspace
    projector = linear.off_row_space_projector(linear.sincos_features(np.zeros(3), 200, 2.0))
    assert np.trace(projector) == pytest.approx(201 - 1)  # three equal points: rank 1


def test_linear_regression_moves_per_eigendirection_as_the_closed_form():
    tables = run_experiment(
        "linear_regression", settings("linear_regression", p=30, n=12, steps=200, lr=0.05)
    )
    eigen = tables["linear_regression_eigen"]
    np.testing.assert_allclose(eigen["movement"], eigen["movement_theory"], atol=1e-10)
    kernel = eigen[eigen["eigenvalue"] < 1e-10]
    assert kernel["index"].nunique() == 30 - 12 and kernel["movement"].max() < 1e-12
    trace = tables["linear_regression"]
    assert trace["off_image"].max() < 1e-12 and trace["loss"].is_monotonic_decreasing


def test_landscape_of_the_scaled_1d_model_approaches_its_linearisation():
    table = run_experiment("landscape_1d", settings("landscape_1d", grid_points=200))
    table = table["landscape_1d"]
    gap = table.assign(d=(table["loss"] - table["linearised_loss"]).abs()).groupby("alpha")["d"]
    relative = gap.max() / table.groupby("alpha")["loss"].max()
    # the window w₀ ± 2/α^¾ shrinks slower than 1/α: the relative gap falls about like α^-½
    fit = theory.loglog_slope(relative.index, relative.to_numpy())
    assert fit["ci_high"] < -0.3 and relative.iloc[-1] < relative.iloc[0] / 100


def test_bad_initialisation_leaves_the_lazy_regime():
    kwargs = {
        "widths": [100],
        "seeds": [0, 1, 2],
        "steps": 200,
        "batch_size": 30,
        "grid_points": 30,
    }
    lazy = run_experiment("bad_init", settings("bad_init", **kwargs))["bad_init_kernel"]
    bad = run_experiment("bad_init", settings("bad_init", bad_steps=2, **kwargs))
    kernel = bad["bad_init_kernel"]
    assert (kernel["kernel_change"].to_numpy() > 5 * lazy["kernel_change"].to_numpy()).all()
    assert set(bad["bad_init_functions"]["stage"]) == {"init", "start", "final", "linearised"}


def test_bias_complexity_and_gradient_flow_tables():
    bias = run_experiment(
        "bias_complexity",
        settings(
            "bias_complexity",
            feature_dims={"start": 2, "stop": 30, "step": 14},
            seeds=[0, 1],
            steps=300,
            grid_points=100,
        ),
    )["bias_complexity"]
    assert set(bias["feature_dim"]) == {2, 16, 30} and not bias["diverged"].any()
    by_dim = bias.groupby("feature_dim")[["train_loss", "risk"]].mean()
    assert by_dim["train_loss"].is_monotonic_decreasing and (bias["risk"] >= 0.05**2).all()
    flow = run_experiment("gf_vs_gd", settings("gf_vs_gd", starts=5, steps=200, record_every=50))
    paths = flow["gf_vs_gd"]
    assert sorted(paths["step"].unique()) == [0, 50, 100, 150, 200]
    small = paths[paths["method"] == "flow"].sort_values("step").groupby("start")["value"]
    assert all(np.all(np.diff(v.to_numpy()) <= 1e-12) for _, v in small)  # descends
    assert len(flow["gf_vs_gd_landscape"]) == 100**2


def test_same_seeds_give_identical_tables_and_every_table_is_pinned():
    for experiment, overrides in (
        ("shallow_seeds", {"seeds": [0, 1], "steps": 30}),
        ("linsin_seeds", {"runs": [{"feature_dim": 10, "steps": 20}], "seeds": [3, 4]}),
        ("data", {}),
    ):
        block = settings(experiment, **overrides)
        first, second = run_experiment(experiment, block), run_experiment(experiment, block)
        assert sorted(first) == sorted(lazy_tables(experiment))
        for name, frame in first.items():
            pd.testing.assert_frame_equal(frame, second[name], check_exact=True)
            assert list(frame.columns) == list(TABLES[name])
    same = run_experiment("shallow_seeds", settings("shallow_seeds", seeds=[0, 1], steps=30))
    other = run_experiment("shallow_seeds", settings("shallow_seeds", seeds=[0, 2], steps=30))
    norms = [t["shallow_seeds_kernel"]["kernel_norm_init"].to_numpy() for t in (same, other)]
    assert norms[0][0] == norms[1][0] and norms[0][1] != norms[1][1]  # a member is its seed


def test_figures_and_report_section_are_drawn_from_the_tables_alone(tmp_path):
    import subprocess
    import sys

    from sltgeom.report.gallery import read_index
    from sltgeom.report.html import Page, lazy_section, read_part
    from sltgeom.report.lazy_figures import build_lazy_figures
    from sltgeom.tables import write_parquet

    small = {"steps": 30, "grid_points": 20}
    tables = {}
    for experiment, overrides in (
        ("data", {"grid_points": 20}),
        ("width_sweep", {"widths": [5, 50], **small}),
        ("output_scaling", {"alphas": [1, 10, 100], "width": 4, **small}),
    ):
        tables.update(run_experiment(experiment, settings(experiment, **overrides)))
    folder = tmp_path / "lazy_training"
    paths = [write_parquet(t, folder / "tables" / f"{n}.parquet") for n, t in tables.items()]
    build_lazy_figures(paths, {"dpi": 40}, folder / "figures")
    names = {entry["name"] for entry in read_index(folder / "figures")["figures"]}
    assert {"lazy.targets", "lazy.width_sweep_kernel", "lazy.output_scaling_alpha"} <= names
    assert all((folder / "figures" / f"{name}.png").exists() for name in names)
    page = Page()
    inputs = {"figures": folder / "figures", **{path.stem: path for path in paths}}
    lazy_section(page, read_part("lazy_training", {"width_sweep": {}}, inputs))
    text = page.text()
    assert "fitted slope" in text and "kernel_change" in text and page.figures == len(names)
    check = "import sys, sltgeom.report.html; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_every_lazy_training_setting_is_described_in_the_schema():
    import yaml

    schema = yaml.safe_load(SCHEMA.read_text())

    def resolve(node):
        node = dict(node)
        while "$ref" in node:  # the use site's keys (default, description) win over the def's
            node = {**schema["$defs"][node.pop("$ref").split("/")[-1]], **node}
        return node

    def undescribed(node, path):
        node = resolve(node)
        if "description" not in node:
            yield path
        for name, child in node.get("properties", {}).items():
            yield from undescribed(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict) and "properties" in resolve(node["items"]):
            yield from undescribed(node["items"], f"{path}[]")

    assert list(undescribed(schema["properties"]["lazy_training"], "lazy_training")) == []
