"""The optimal-step probe (sltgeom/optimal_step.py): α* against closed forms on a quadratic, exact
curvature products against dense references, and the probe inside training."""

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SCHEMA
from test_curvature import dense_references, spd
from torch import nn

from sltgeom.architectures import architecture_name
from sltgeom.checkpoint import list_checkpoints, load_checkpoint
from sltgeom.config import ConfigError, study_runs, validate_config
from sltgeom.models import build_model, count_parameters
from sltgeom.optimal_step import (
    OptimalStepProbe,
    OptimalStepSettings,
    line_minimum,
    optimal_step,
)
from sltgeom.schemas import TABLES
from sltgeom.train import train_run

pytestmark = pytest.mark.usefixtures("single_thread")


class Identity(nn.Module):
    """A "model" whose output is its weight vector: the loss is then a function of w alone."""

    def __init__(self, n: int, seed: int = 0):
        super().__init__()
        self.w = nn.Parameter(torch.randn(n, generator=torch.Generator().manual_seed(seed)))

    def forward(self, x):
        return self.w


def quadratic(a: torch.Tensor, b: torch.Tensor):
    """L(w) = ½ wᵀAw − bᵀw as a loss of the Identity model's output (y unused)."""
    return lambda w, y: 0.5 * w @ a @ w - b @ w


def probe_step(model, loss_fn, d, settings=None):
    """A probe around a hand-made step ``w ← w + d`` (standing in for the optimizer)."""
    settings = settings or OptimalStepSettings(every=1, sharpness_every=1, sharpness_steps=40)
    probe = OptimalStepProbe(settings, lr=0.1, loss_fn=loss_fn)
    probe.backward(model, None, None)
    with torch.no_grad():
        model.w += d
    return probe.measure(model, step=1, epoch=1)


# --- the quadratic model is exact on a quadratic loss ---------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_alpha_star_is_the_exact_line_minimiser_on_a_quadratic(seed):
    n = 7
    a, b = spd(n, seed), torch.randn(n, dtype=torch.float64)
    model = Identity(n, seed).double()
    w = model.w.detach().clone()
    d = torch.randn(n, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
    row = probe_step(model, quadratic(a, b), 0.3 * d)
    u = d / d.norm()
    exact = float(-(u @ (a @ w - b)) / (u @ a @ u))  # argmin_t L(w + t u)
    assert row["alpha_star"] == pytest.approx(exact, rel=1e-10)
    assert row["alpha_star_ggn"] == pytest.approx(exact, rel=1e-10)  # J = I: G = H = A
    assert row["line_min"] == pytest.approx(exact, rel=1e-8)
    assert row["curvature"] == pytest.approx(float(u @ a @ u), rel=1e-12)
    assert row["step_ratio"] == pytest.approx(0.3 * float(d.norm()) / exact, rel=1e-10)
    assert row["sharpness"] == pytest.approx(float(torch.linalg.eigvalsh(a)[-1]), rel=1e-10)
    assert not row["negative_curvature"]


def test_negative_curvature_gives_nan_and_a_flag():
    n = 5
    a = torch.diag(torch.tensor([2.0, 1.0, 0.5, -1.0, -3.0], dtype=torch.float64))
    model = Identity(n).double()
    d = torch.zeros(n, dtype=torch.float64)
    d[4] = 0.1  # along the most negative eigenvector: dᵀAd < 0
    row = probe_step(model, quadratic(a, torch.zeros(n, dtype=torch.float64)), d)
    assert row["negative_curvature"] and row["curvature"] == pytest.approx(-3.0)
    assert math.isnan(row["alpha_star"]) and math.isnan(row["step_ratio"])
    assert row["curvature_ggn"] == pytest.approx(-3.0)  # the "GGN" of an indefinite loss
    assert math.isnan(row["alpha_star_ggn"])
    assert math.isnan(row["line_min"])  # the loss falls without bound along d: no minimum
    assert row["sharpness"] == pytest.approx(2.0)


def test_optimal_step_needs_positive_finite_curvature():
    assert optimal_step(-2.0, 4.0) == 0.5 and optimal_step(1.0, 4.0) == -0.25
    assert all(math.isnan(optimal_step(-1.0, c)) for c in (0.0, -1.0, math.nan, math.inf))


def test_line_scan_widens_narrows_and_is_exact_on_parabolas():
    for centre in (0.003, 0.7, 5.0, 200.0):  # below, inside and far beyond the first reach
        assert line_minimum(lambda t, c=centre: (t - c) ** 2, 1.0, 16) == pytest.approx(centre)
    assert math.isnan(line_minimum(lambda t: (t - 300.0) ** 2, 1.0, 16))  # beyond 4⁴ × reach
    assert line_minimum(lambda t: (t + 0.4) ** 2, -1.0, 16) == pytest.approx(-0.4)
    assert math.isnan(line_minimum(lambda t: -t, 1.0, 16))
    assert math.isnan(line_minimum(lambda t: t * math.nan, 1.0, 16))


def test_sgd_without_momentum_steps_along_the_gradient(digits_path):
    """d̂ = −g/‖g‖: dir_grad = −‖g‖ and α*/‖g‖ = ‖g‖²/(gᵀHg), gᵀHg from dense autograd."""
    from sltgeom.data import load_dataset

    data = load_dataset(digits_path)
    x, y = data.x_train[:64].double(), data.y_train[:64]
    model = build_model({"type": "ffnn", "widths": [6]}, data.input_shape, 10).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = OptimalStepProbe(OptimalStepSettings(every=1, sharpness_every=None), lr=0.1)
    h, _ = dense_references(model, x, y)
    optimizer.zero_grad()
    probe.backward(model, x, y)
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    optimizer.step()
    row = probe.measure(model, step=1, epoch=1)
    assert row["dir_grad"] == pytest.approx(-float(g.norm()), rel=1e-9)
    assert row["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-12)
    assert row["update_norm"] == pytest.approx(0.1 * float(g.norm()), rel=1e-9)
    optimal_lr = float(g @ g) / float(g @ h @ g)
    assert row["alpha_star"] / row["grad_norm"] == pytest.approx(optimal_lr, rel=1e-8)
    assert row["step_ratio"] == pytest.approx(0.1 / optimal_lr, rel=1e-8)
    assert math.isnan(row["sharpness"]) and math.isnan(row["line_min"])


def test_sharpness_is_due_about_every_sharpness_every_steps():
    probe = OptimalStepProbe(OptimalStepSettings(every=3, sharpness_every=10), lr=0.1)
    due = [s for s in range(1, 40) if probe.due(s) and probe._sharpness_due(s)]
    assert due == [12, 21, 30]  # the first probed step at or after 10, 20, 30
    never = OptimalStepProbe(OptimalStepSettings(every=3, sharpness_every=None), lr=0.1)
    assert not any(never._sharpness_due(s) for s in range(1, 40))


# --- inside training -------------------------------------------------------------------------

SGD = {"type": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0}
NGD = {**SGD, "type": "ngd", "alpha": 0.01, "eta": 0.9, "epsilon": 1e-10, "delta": 5e-4}
PROBE = {"every": 2, "sharpness_every": 8, "sharpness_steps": 10, "line_points": 8}


def make_run(spec, probe=None, epochs=2):
    run = {
        "study": "t", "architecture": "ffnn-16-8", "optimizer": spec["type"], "seed": 0,
        "dataset": "digits", "protocol": "standard",
        "arch_spec": {"type": "ffnn", "widths": [16, 8]}, "optim_spec": spec,
        "batch_size": 64, "start_epoch": 0, "end_epoch": epochs,
    }  # fmt: skip
    return run if probe is None else {**run, "optimal_step": probe}


def train(run, digits_path, folder):
    names = ("training", "steps", "optimal_step")
    outputs = {"checkpoints": folder / "checkpoints", **{n: folder / f"{n}.parquet" for n in names}}
    return train_run(run, digits_path, outputs, device="cpu", progress=False)


@pytest.mark.parametrize("spec", [SGD, NGD], ids=["sgd", "ngd"])
def test_probe_leaves_the_trajectory_unchanged(digits_path, tmp_path, spec):
    train(make_run(spec), digits_path, tmp_path / "off")
    train(make_run(spec, PROBE), digits_path, tmp_path / "on")
    for epoch in (1, 2):
        off = load_checkpoint(tmp_path / "off" / "checkpoints" / f"epoch_00{epoch}.pt")
        on = load_checkpoint(tmp_path / "on" / "checkpoints" / f"epoch_00{epoch}.pt")
        for key, value in off["model"].items():
            assert torch.equal(on["model"][key], value), key
    steps = pd.read_parquet(tmp_path / "on" / "steps.parquet")
    pd.testing.assert_frame_equal(steps, pd.read_parquet(tmp_path / "off" / "steps.parquet"))
    table = pd.read_parquet(tmp_path / "on" / "optimal_step.parquet")
    assert list(table.columns) == list(TABLES["optimal_step"])
    assert list(table["step"]) == list(range(2, 47, 2))  # 2 × 23 steps, every second one
    merged = table.merge(steps, on=["step", "epoch"], suffixes=("", "_steps"))
    np.testing.assert_allclose(merged["loss"], merged["loss_steps"], rtol=1e-6)
    np.testing.assert_allclose(merged["update_norm"], merged["update_norm_steps"], rtol=1e-5)
    expensive = table.dropna(subset=["sharpness"])
    assert list(expensive["step"]) == [8, 16, 24, 32, 40] and expensive["line_min"].notna().all()
    assert table["alpha_star"].notna().sum() == (~table["negative_curvature"]).sum()
    assert (table["curvature_ggn"] > 0).all() and (table["lr"] == 0.05).all()
    assert (expensive["sharpness"] >= expensive["curvature"] - 1e-6).all()  # λ_max ≥ d̂ᵀHd̂
    assert pd.read_parquet(tmp_path / "off" / "optimal_step.parquet").empty


def test_probe_rows_survive_a_run_killed_while_probing(digits_path, tmp_path, monkeypatch):
    run = make_run(SGD, PROBE, epochs=3)
    train(run, digits_path, tmp_path / "ref")
    measure = OptimalStepProbe.measure

    def killed_at_step_50(self, model, step, epoch):  # in epoch 3 (steps 47-69)
        if step == 50:
            raise KeyboardInterrupt("killed")
        return measure(self, model, step, epoch)

    monkeypatch.setattr(OptimalStepProbe, "measure", killed_at_step_50)
    with pytest.raises(KeyboardInterrupt):
        train(run, digits_path, tmp_path / "run")
    assert set(list_checkpoints(tmp_path / "run" / ".partial")) == {0, 1, 2}
    assert not (tmp_path / "run" / "optimal_step.parquet").exists()
    monkeypatch.undo()
    train(run, digits_path, tmp_path / "run")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "run" / "optimal_step.parquet"),
        pd.read_parquet(tmp_path / "ref" / "optimal_step.parquet"),
    )


def test_a_probed_run_needs_an_optimal_step_output(digits_path, tmp_path):
    outputs = {"checkpoints": tmp_path / "c", "training": tmp_path / "t", "steps": tmp_path / "s"}
    with pytest.raises(ValueError, match="optimal_step"):
        train_run(make_run(SGD, PROBE), digits_path, outputs, device="cpu", progress=False)


def test_diverging_steps_are_recorded_as_nan_without_a_crash(digits_path, tmp_path):
    train(make_run({**SGD, "lr": 1e20}, PROBE), digits_path, tmp_path)
    table = pd.read_parquet(tmp_path / "optimal_step.parquet")
    assert len(table) and table["alpha_star"].isna().any()


# --- configuration ---------------------------------------------------------------------------


def test_widths_build_the_notebooks_mlp_as_one_architecture():
    spec = {"type": "ffnn", "widths": [128, 64]}
    assert architecture_name(spec) == "ffnn-128-64"
    assert count_parameters(build_model(spec, (1, 28, 28), 10)) == 109386  # seed notebook 004
    linears = [m for m in build_model(spec, (1, 28, 28), 10) if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 128), (128, 64), (64, 10)]


def test_probe_settings_travel_in_the_probed_runs_only(tiny_config):
    tiny = tiny_config["studies"]["tiny"]
    tiny["architectures"].append({"type": "ffnn", "widths": [16, 8]})
    tiny["probes"] = {"optimal_step": {"every": 3, "architectures": ["ffnn-16-8"]}}
    config = validate_config(tiny_config, SCHEMA)
    runs = study_runs("tiny", config["studies"]["tiny"])
    assert sorted({r["architecture"] for r in runs}) == ["ffnn-16-8", "ffnn-1x16"]  # no sweep
    probed = {r["architecture"]: r.get("optimal_step") for r in runs}
    assert probed["ffnn-1x16"] is None
    assert probed["ffnn-16-8"] == {
        "every": 3, "sharpness_every": 200, "sharpness_steps": 16, "line_points": 16,
    }  # fmt: skip
    assert config["studies"]["tiny_swap"]["probes"] == {"optimal_step": None}  # off by default


def _broken(config, mutate) -> str:
    config = copy.deepcopy(config)
    mutate(config["studies"]["tiny"])
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    return str(err.value)


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda s: s.update(probes={"optimal_step": {"every": 0}}), "probes.optimal_step.every"),
        (lambda s: s.update(probes={"optimal_step": {"bogus": 1}}), "probes.optimal_step"),
        (lambda s: s.update(probes={"sharpness": {}}), "studies.tiny.probes"),
        (
            lambda s: s.update(probes={"optimal_step": {"sharpness_every": 0}}),
            "probes.optimal_step.sharpness_every",
        ),
        (
            lambda s: s.update(probes={"optimal_step": {"architectures": ["cnn-k0"]}}),
            "probes.optimal_step.architectures",
        ),
        (
            lambda s: s["architectures"].append({"type": "ffnn", "widths": [8, 0]}),
            "architectures.1",
        ),
        (lambda s: s["architectures"].append({"type": "ffnn", "widths": []}), "architectures.1"),
        (
            lambda s: s["architectures"].append({"type": "cnn", "widths": [8]}),
            "architectures.1",
        ),
        (
            lambda s: s["architectures"].append(
                {"type": "ffnn", "widths": [8], "hidden_layers": 1, "hidden_nodes": 8}
            ),
            "architectures.1",
        ),
    ],
)
def test_bad_probe_or_widths_config_names_the_key(tiny_config, mutate, key):
    assert key in _broken(tiny_config, mutate)


# --- report ----------------------------------------------------------------------------------


def test_figures_draw_the_probe_and_the_notes_count_negative_curvature():
    from sltgeom.report import optimal_step_figures as figures
    from sltgeom.report.study import StudySpec

    spec = StudySpec(name="s", optimizers={"sgd": "sgd", "ngd": "ngd"})
    rows = []
    for opt in ("sgd", "ngd"):
        for step in range(1, 11):
            negative = opt == "ngd" and step in (3, 7)
            alpha = math.nan if negative else 0.1 * step
            rows.append({
                "study": "s", "architecture": "a", "optimizer": opt, "seed": 0, "epoch": 1,
                "step": step, "update_norm": 0.01, "alpha_star": alpha,
                "alpha_star_ggn": 0.1 if not negative else 0.2, "step_ratio": 0.01 / alpha,
                "dir_grad": 1.0 if step == 5 else -1.0, "negative_curvature": negative,
                "sharpness": 3.0 if step % 5 == 0 else math.nan,
                "line_min": 0.2 if step % 5 == 0 else math.nan, "lr": 0.01,
            })  # fmt: skip
    table = pd.DataFrame(rows)
    fig = figures.optimal_step(table, spec, "t", max_points=400)
    names = {trace.name for trace in fig.data}
    assert {"sgd α*", "ngd step", "sgd line-scan min", "ratio 2", "ngd 2/lr"} <= names
    edge = next(trace for trace in fig.data if trace.name == "sgd 2/lr")
    assert list(edge.y) == [200.0, 200.0]
    ratio = next(trace for trace in fig.data if trace.name == "ngd ratio")
    assert np.isnan(ratio.y[[2, 6]]).all() and np.isfinite(ratio.y[[0, 1, 3]]).all()
    scatter = figures.alpha_h_vs_g(table, spec, "t", max_points=400)
    assert sum(len(t.x) for t in scatter.data if t.name in spec.optimizers) == 18
    note = figures.curvature_note(table)
    assert "sgd: 0 of 10 negative, 1 uphill" in note and "ngd: 2 of 10 negative" in note
    assert figures.optimal_step(table.iloc[0:0], spec, "t", 400) is None
