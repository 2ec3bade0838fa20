"""The notebook's experiments, each from its ``lazy_training.<experiment>`` settings to tables
(name suffix → frame; the table of experiment e is ``e`` + suffix, docs/tables.md)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from . import landscapes, linear, ntk, theory
from .data import TARGETS, batch_indices, make_dataset
from .descent import gradient_descent
from .mlp import DeepMembers, ShallowMembers, deep_single, shallow_forward


def trace_frame(keys: dict[str, list], trace: Mapping) -> pd.DataFrame:
    """Long per-step table: member keys × step, with the trace arrays (steps + 1, members)."""
    steps, count = trace["loss"].shape
    frame = pd.DataFrame({k: np.tile(np.asarray(v), steps) for k, v in keys.items()})
    frame.insert(len(keys), "step", np.repeat(np.arange(steps), count))
    for name, values in trace.items():
        frame[name] = values.reshape(-1)
    return frame


def function_frame(keys: dict[str, list], x: np.ndarray, **curves) -> pd.DataFrame:
    """Long table of functions on the grid: member keys × x, one column per curve (M, len x)."""
    count = len(next(iter(keys.values())))
    frame = pd.DataFrame({k: np.repeat(np.asarray(v), len(x)) for k, v in keys.items()})
    frame["x"] = np.tile(x, count)
    for name, values in curves.items():
        frame[name] = np.asarray(values).reshape(-1)
    return frame


def staged(keys, x, stages: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Functions at several stages (init, final, ...) as rows with a ``stage`` column."""
    parts = [function_frame(keys, x, value=v).assign(stage=s) for s, v in stages.items()]
    return pd.concat(parts, ignore_index=True)


def data(settings: Mapping, progress=False) -> dict[str, pd.DataFrame]:
    """The three targets on the grid and the training points of the configured dataset."""
    ds = make_dataset(settings["data"], settings["grid_points"])
    grid = [
        pd.DataFrame({"target": name, "split": "grid", "x": ds.grid, "y": f(ds.grid)})
        for name, f in TARGETS.items()
    ]
    train = pd.DataFrame({"target": ds.target, "split": "train", "x": ds.x, "y": ds.y})
    return {"": pd.concat([*grid, train], ignore_index=True)}


def linsin(settings: Mapping, progress=False) -> dict[str, pd.DataFrame]:
    """LinSin runs (feature_dim, steps) × seeds: loss, movement, row-space residual, fits."""
    ds = make_dataset(settings["data"], settings["grid_points"])
    traces, functions = [], []
    for run in settings["runs"]:
        dim, steps, seeds = run["feature_dim"], run["steps"], settings["seeds"]
        phi = linear.sincos_features(ds.x, dim, settings["frequency"])
        members = linear.LinearMembers(
            phi,
            ds.y,
            [dim] * len(seeds),
            seeds,
            settings["lr"],
            linear.off_row_space_projector(phi),
        )
        grid_phi = linear.sincos_features(ds.grid, dim, settings["frequency"])
        init = members.predict(grid_phi).numpy()
        batches = batch_indices(ds.n, settings["batch_size"], steps, settings["data"]["seed"])
        trace = gradient_descent(members, steps, batches, progress)
        trace.pop("all")
        trace["off_row_space"] = torch.stack(members.off_row_space).numpy()
        keys = {"feature_dim": [dim] * len(seeds), "seed": seeds}
        traces.append(trace_frame(keys, trace))
        final = members.predict(grid_phi).numpy()
        functions.append(staged(keys, ds.grid, {"init": init, "final": final}))
    return {"": pd.concat(traces), "_functions": pd.concat(functions)}


def _members(*lists) -> list[tuple]:
    return list(itertools.product(*lists))


def mlp(settings: Mapping, progress=False) -> dict[str, pd.DataFrame]:
    """Shallow MLPs widths × seeds (optionally after ``bad_steps`` steps of size ``bad_lr``):
    trace, functions, and the tangent kernel at the start and end of training."""
    ds = make_dataset(settings["data"], settings["grid_points"])
    pairs = _members(settings["widths"], settings["seeds"])
    widths, seeds = [w for w, _ in pairs], [s for _, s in pairs]
    keys = {"width": widths, "seed": seeds}
    act = settings["activation"]
    net = ShallowMembers(ds.x, ds.y, widths, seeds, settings["lr"], act)
    stages = {"init": net.predict(ds.grid).numpy()}
    data_seed, batch = settings["data"]["seed"], settings["batch_size"]
    if settings["bad_steps"]:
        net.lr.fill_(settings["bad_lr"])
        bad = batch_indices(ds.n, batch, settings["bad_steps"], data_seed + 1)
        gradient_descent(net, settings["bad_steps"], bad)
        net.lr.fill_(settings["lr"])
        stages["start"] = net.predict(ds.grid).numpy()
    fn = lambda p, x: shallow_forward(p, x, act)  # noqa: E731
    k0, k0_eval = ntk.kernels(fn, [net.member(m) for m in range(net.count)], ds.x, ds.grid)
    f_start = net.predict(ds.x), net.predict(ds.grid)
    batches = batch_indices(ds.n, batch, settings["steps"], data_seed)
    trace = gradient_descent(net, settings["steps"], batches, progress)
    trace["relative_movement_all"] = trace.pop("all")
    stages["final"] = net.predict(ds.grid).numpy()
    k1, _ = ntk.kernels(fn, [net.member(m) for m in range(net.count)], ds.x, ds.grid[:1])
    _, f_lin = ntk.kernel_gradient_descent(
        k0, k0_eval, *f_start, ds.y, net.lr, settings["steps"], batches
    )
    stages["linearised"] = f_lin.numpy()
    start = stages.get("start", stages["init"])
    kernel = pd.DataFrame(
        {
            **keys,
            "n_params": [3 * w + 1 for w in widths],
            "kernel_change": [ntk.relative_change(k0[m], k1[m]) for m in range(net.count)],
            "kernel_norm_init": torch.linalg.norm(k0, dim=(1, 2)).numpy(),
            "linearised_gap": np.abs(stages["final"] - f_lin.numpy()).max(1),
            "function_change": np.abs(stages["final"] - start).max(1),
            "final_loss": trace["loss"][-1],
            "final_movement": trace["relative_movement"][-1],
        }
    )
    kernel["linearised_gap_relative"] = kernel["linearised_gap"] / kernel["function_change"]
    return {
        "": trace_frame(keys, trace),
        "_functions": staged(keys, ds.grid, stages),
        "_kernel": kernel,
    }


def output_scaling(settings: Mapping, progress=False) -> dict[str, pd.DataFrame]:
    """α·(f(w) − f(w₀)) with step lr/α² for α × seeds, against its linearisation (kernel GD
    with K₀, the same for every α) and the log-log fit of final movement against α."""
    ds = make_dataset(settings["data"], settings["grid_points"])
    pairs = _members(settings["alphas"], settings["seeds"])
    alphas, seeds = [float(a) for a, _ in pairs], [s for _, s in pairs]
    keys = {"alpha": alphas, "seed": seeds}
    act = settings["activation"]
    net = DeepMembers(
        ds.x,
        ds.y,
        settings["width"],
        settings["hidden_layers"],
        seeds,
        alphas,
        settings["lr"],
        act,
    )
    fn = lambda p, x: deep_single(p, x, act)  # noqa: E731
    k0, k0_eval = ntk.kernels(fn, [net.member(m) for m in range(net.count)], ds.x, ds.grid)
    batches = batch_indices(
        ds.n, settings["batch_size"], settings["steps"], settings["data"]["seed"]
    )
    trace = gradient_descent(net, settings["steps"], batches, progress)
    trace["relative_movement_all"] = trace.pop("all")
    with torch.no_grad():
        final = net.predict(ds.grid).numpy()
    # the linearisation of α·h has kernel α²K₀ and step lr/α²: the same for every α, from 0
    zeros = (torch.zeros(net.count, size, dtype=torch.float64) for size in (ds.n, len(ds.grid)))
    lr = torch.full((net.count,), float(settings["lr"]), dtype=torch.float64)
    _, f_lin = ntk.kernel_gradient_descent(
        k0, k0_eval, *zeros, ds.y, lr, settings["steps"], batches
    )
    f_lin = f_lin.numpy()
    gap = pd.DataFrame(
        {
            **keys,
            "relative_movement": trace["relative_movement"][-1],
            "relative_movement_all": trace["relative_movement_all"][-1],
            "linearisation_gap": np.abs(final - f_lin).max(1),
            "linearisation_gap_relative": np.abs(final - f_lin).max(1) / np.abs(f_lin).max(1),
            "final_loss": trace["loss"][-1],
        }
    )
    fit = theory.loglog_slope(gap["alpha"], gap["relative_movement"])
    fit.update(alpha_min=min(alphas), alpha_max=max(alphas))
    return {
        "": trace_frame(keys, trace),
        "_functions": function_frame(keys, ds.grid, network=final, linearised=f_lin),
        "_gap": gap,
        "_slope": pd.DataFrame([fit]),
    }


def landscape_1d(settings: Mapping, progress=False) -> dict[str, pd.DataFrame]:
    """Loss of the scaled 1-D model and of its linearisation on w₀ ± width/α^exponent."""
    frames = []
    for alpha in settings["alphas"]:
        w = landscapes.window(
            alpha,
            settings["w0"],
            settings["window_width"],
            settings["window_exponent"],
            settings["grid_points"],
        )
        loss, lin = landscapes.scaled_losses(w, alpha, settings["w0"], settings["points"])
        frames.append(
            pd.DataFrame({"alpha": float(alpha), "w": w, "loss": loss, "linearised_loss": lin})
        )
    return {"": pd.concat(frames, ignore_index=True)}


def linear_regression(settings: Mapping, progress=False) -> dict[str, pd.DataFrame]:
    """GD on linear regression: loss, movement, and movement per eigen-direction of XXᵀ."""
    trace, norm0, eigen = linear.linear_regression_gd(
        settings["p"],
        settings["n"],
        settings["steps"],
        settings["lr"],
        settings["seed"],
        settings["record_every"],
    )
    frame = pd.DataFrame(trace, columns=["step", "loss", "relative_movement", "off_image"])
    frame[["relative_movement", "off_image"]] /= norm0
    columns = ["step", "index", "eigenvalue", "movement", "movement_theory", "target_distance"]
    return {"": frame, "_eigen": pd.DataFrame(eigen, columns=columns)}


def feature_dims(spec: Mapping) -> list[int]:
    return list(range(spec["start"], spec["stop"] + 1, spec["step"]))


def bias_complexity(settings: Mapping, progress=False) -> dict[str, pd.DataFrame]:
    """Final train loss and true risk of LinSin against feature_dim, for every seed."""
    ds = make_dataset(settings["data"], settings["grid_points"])
    pairs = _members(feature_dims(settings["feature_dims"]), settings["seeds"])
    dims, seeds = [d for d, _ in pairs], [s for _, s in pairs]
    top = max(dims)
    phi = linear.padded_features(ds.x, top, settings["frequency"])
    members = linear.LinearMembers(phi, ds.y, dims, seeds, settings["lr"])
    batches = batch_indices(
        ds.n, settings["batch_size"], settings["steps"], settings["data"]["seed"]
    )
    trace = gradient_descent(members, settings["steps"], batches, progress)
    with torch.no_grad():
        risk = ds.risk(members.predict(linear.padded_features(ds.grid, top, settings["frequency"])))
    train = trace["loss"][-1]
    return {
        "": pd.DataFrame(
            {
                "feature_dim": dims,
                "seed": seeds,
                "train_loss": train,
                "risk": risk,
                "diverged": ~(np.isfinite(train) & np.isfinite(risk)),
            }
        )
    }


def gf_vs_gd(settings: Mapping, progress=False) -> dict[str, pd.DataFrame]:
    """Small-step ("flow") and large-step ("descent") GD on F from the same random starts."""
    rng = np.random.default_rng(settings["seed"])
    starts = settings["start_scale"] * (rng.uniform(size=(settings["starts"], 2)) - 0.5)
    methods = {"flow": settings["lr_flow"], "descent": settings["lr_descent"]}
    lrs = np.repeat(list(methods.values()), len(starts))
    out = landscapes.descend_surface(
        np.tile(starts, (2, 1)), lrs, settings["steps"], settings["record_every"]
    )
    records, count = out["values"].shape
    frame = pd.DataFrame(
        {
            "method": np.tile(np.repeat(list(methods), len(starts)), records),
            "lr": np.tile(lrs, records),
            "start": np.tile(np.arange(count) % len(starts), records),
            "step": np.repeat(out["steps"], count),
            "w1": out["positions"][..., 0].reshape(-1),
            "w2": out["positions"][..., 1].reshape(-1),
            "value": out["values"].reshape(-1),
        }
    )
    axis = np.linspace(-settings["extent"], settings["extent"], settings["grid_points"])
    u, v = np.meshgrid(axis, axis, indexing="xy")
    grid = pd.DataFrame(
        {"w1": u.ravel(), "w2": v.ravel(), "value": landscapes.surface(u, v).ravel()}
    )
    return {"": frame, "_landscape": grid}


RUNNERS = {
    "data": data,
    "linsin": linsin,
    "linsin_seeds": linsin,
    "shallow_seeds": mlp,
    "width_sweep": mlp,
    "bad_init": mlp,
    "output_scaling": output_scaling,
    "landscape_1d": landscape_1d,
    "linear_regression": linear_regression,
    "bias_complexity": bias_complexity,
    "gf_vs_gd": gf_vs_gd,
}


def run_experiment(name: str, settings: Mapping, progress: bool = False) -> dict[str, pd.DataFrame]:
    """Tables of experiment ``name`` (table name → frame, columns as pinned in schemas.py)."""
    from ..schemas import conform

    torch.manual_seed(0)  # nothing should draw from the global generator; pinned regardless
    tables = RUNNERS[name](settings, progress)
    return {
        name + suffix: conform(frame.reset_index(drop=True), name + suffix)
        for suffix, frame in tables.items()
    }
