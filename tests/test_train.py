import os
import re
import signal
import subprocess

import pandas as pd
import pytest
import torch

import sltgeom.train as train_module
from sltgeom.checkpoint import list_checkpoints, load_checkpoint
from sltgeom.models import build_model
from sltgeom.preemption import preemptible
from sltgeom.train import train_run

SGD = {"type": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0}
NGD = {**SGD, "type": "ngd", "alpha": 0.01, "eta": 0.9, "epsilon": 1e-10, "delta": 5e-4}
ARCH = {"type": "ffnn", "hidden_layers": 1, "hidden_nodes": 16}


def make_run(optimizer="sgd", spec=SGD, start=0, epochs=3, **extra):
    return {
        "study": "t", "architecture": "ffnn-1x16", "optimizer": optimizer, "seed": 0,
        "dataset": "digits", "protocol": "standard", "arch_spec": ARCH, "optim_spec": spec,
        "batch_size": 64, "start_epoch": start, "end_epoch": epochs, **extra,
    }  # fmt: skip


def outputs(folder):
    return {
        "checkpoints": folder / "checkpoints",
        "training": folder / "training.parquet",
        "steps": folder / "steps.parquet",
    }


def metrics(frame):
    return frame.drop(columns=["seconds"])


def train(run, digits_path, folder, **kw):
    return train_run(run, digits_path, outputs(folder), device="cpu", progress=False, **kw)


def test_run_writes_every_epoch_and_learns(digits_path, tmp_path):
    epochs = train(make_run(), digits_path, tmp_path)
    assert list(epochs["epoch"]) == [0, 1, 2, 3]
    assert set(list_checkpoints(tmp_path / "checkpoints")) == {0, 1, 2, 3}
    assert epochs["train_loss"].iloc[-1] < 0.5 * epochs["train_loss"].iloc[0]
    assert epochs["val_acc"].iloc[-1] > 0.8 and not epochs["diverged"].any()
    steps = pd.read_parquet(tmp_path / "steps.parquet")
    assert len(steps) == 3 * 23 and list(steps["step"]) == list(range(1, 70))  # 1437 / 64
    assert not (tmp_path / ".partial").exists()


def test_checkpoint_restores_the_recorded_model(digits_path, tmp_path):
    from sltgeom.data import load_dataset

    epochs = train(make_run(), digits_path, tmp_path)
    saved = load_checkpoint(tmp_path / "checkpoints" / "epoch_002.pt")
    model = build_model(ARCH, saved["input_shape"], saved["n_classes"])
    model.load_state_dict(saved["model"])
    data = load_dataset(digits_path)
    loss, _ = train_module.evaluate(model, data.x_train, data.y_train)
    assert loss == pytest.approx(epochs.set_index("epoch").loc[2, "train_loss"], rel=1e-6)


@pytest.mark.parametrize("spec", [SGD, NGD], ids=["sgd", "ngd"])
def test_same_seed_gives_identical_metrics(digits_path, tmp_path, spec):
    a = train(make_run(spec=spec, epochs=2), digits_path, tmp_path / "a")
    b = train(make_run(spec=spec, epochs=2), digits_path, tmp_path / "b")
    pd.testing.assert_frame_equal(metrics(a), metrics(b))


@pytest.mark.parametrize("spec", [SGD, NGD], ids=["sgd", "ngd"])
def test_killed_run_resumes_to_the_same_result(digits_path, tmp_path, monkeypatch, spec):
    reference = train(make_run(spec=spec), digits_path, tmp_path / "ref")
    advance = train_module._advance

    def killed_in_epoch_3(run, state, data, progress):
        if state.epoch == 2:
            raise KeyboardInterrupt("killed")
        return advance(run, state, data, progress)

    monkeypatch.setattr(train_module, "_advance", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(make_run(spec=spec), digits_path, tmp_path / "run")
    assert set(list_checkpoints(tmp_path / "run" / ".partial")) == {0, 1, 2}
    assert not (tmp_path / "run" / "training.parquet").exists()
    monkeypatch.setattr(train_module, "_advance", advance)
    resumed = train(make_run(spec=spec), digits_path, tmp_path / "run")
    pd.testing.assert_frame_equal(metrics(resumed), metrics(reference))
    steps = pd.read_parquet(tmp_path / "run" / "steps.parquet")
    pd.testing.assert_frame_equal(steps, pd.read_parquet(tmp_path / "ref" / "steps.parquet"))


def test_sigterm_stops_after_the_epoch_and_the_rerun_resumes(
    digits_path, tmp_path, monkeypatch, capsys
):
    reference = train(make_run(), digits_path, tmp_path / "ref")
    advance = train_module._advance

    def sigterm_in_epoch_2(run, state, data, progress):
        if state.epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as Slurm does; the epoch still finishes
        return advance(run, state, data, progress)

    monkeypatch.setattr(train_module, "_advance", sigterm_in_epoch_2)
    with pytest.raises(SystemExit), preemptible():
        train(make_run(), digits_path, tmp_path / "run")
    assert set(list_checkpoints(tmp_path / "run" / ".partial")) == {0, 1, 2}
    assert "preempted: stopped after epoch 2" in capsys.readouterr().err
    monkeypatch.setattr(train_module, "_advance", advance)
    resumed = train(make_run(), digits_path, tmp_path / "run")
    assert "resuming training at epoch 3 from " in capsys.readouterr().err
    pd.testing.assert_frame_equal(metrics(resumed), metrics(reference))


def test_a_truncated_checkpoint_names_the_file_and_the_commands_that_rebuild_it(
    digits_path, tmp_path
):
    folder = tmp_path / "results/t/runs/ffnn-1x16/sgd/seed0"
    reference = train(make_run(), digits_path, folder)
    bad = folder / "checkpoints" / "epoch_002.pt"
    bad.write_bytes(bad.read_bytes()[:2000])
    with pytest.raises(ValueError) as error:
        load_checkpoint(bad)
    message = str(error.value)
    assert message.startswith(f"{bad}: not a readable sltgeom checkpoint")
    commands = re.search(r"retrain the run from its epoch 1: `([^`]*)`", message).group(1)
    checkpoints = folder / "checkpoints"
    assert (
        commands == f"rm {checkpoints}/epoch_{{002..003}}.pt && mv {checkpoints} {folder}/.partial"
    )
    assert f"`snakemake --cores all {checkpoints}`" in message
    subprocess.run(["bash", "-c", commands], check=True)
    retrained = train(make_run(), digits_path, folder)  # the training job snakemake reruns
    pd.testing.assert_frame_equal(metrics(retrained), metrics(reference))
    assert load_checkpoint(bad)["epoch"] == 2


def test_partial_state_of_another_configuration_is_refused(digits_path, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "_advance", lambda *a: (_ for _ in ()).throw(OSError()))
    with pytest.raises(OSError):
        train(make_run(), digits_path, tmp_path)
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="different run configuration"):
        train(make_run(spec={**SGD, "lr": 0.1}), digits_path, tmp_path)


def test_divergence_stops_cleanly(digits_path, tmp_path):
    epochs = train(make_run(spec={**SGD, "lr": 1e20}), digits_path, tmp_path)
    assert epochs["diverged"].sum() == 1
    bad = epochs.loc[epochs["diverged"], "epoch"].item()
    assert epochs["epoch"].max() == bad
    assert max(list_checkpoints(tmp_path / "checkpoints")) == bad - 1


@pytest.mark.parametrize("state", ["fresh", "continue"])
def test_swap_branches_start_from_the_trunk(digits_path, tmp_path, state):
    trunk = make_run("trunk", epochs=1, protocol="swap")
    train(trunk, digits_path, tmp_path / "trunk")
    trunk_ckpt = load_checkpoint(tmp_path / "trunk" / "checkpoints" / "epoch_001.pt")
    trunk_momentum = [s["momentum_buffer"] for s in trunk_ckpt["optimizer"]["state"].values()]
    assert trunk_momentum and all(bool(m.abs().sum() > 0) for m in trunk_momentum)
    for name, spec in [("sgd", SGD), ("ngd", NGD)]:
        branch = make_run(name, spec, start=1, epochs=2, protocol="swap")
        branch["swap_optimizer_state"] = state
        epochs = train(
            branch,
            digits_path,
            tmp_path / name,
            trunk_checkpoints=tmp_path / "trunk" / "checkpoints",
        )
        assert list(epochs["epoch"]) == [1, 2]
        first = load_checkpoint(tmp_path / name / "checkpoints" / "epoch_001.pt")
        for key, value in trunk_ckpt["model"].items():
            assert torch.equal(first["model"][key], value)
        # the optimizer state at the first step after the cut-off: SGD's momentum buffers are
        # created (zero) at that step by a fresh optimizer, or are the trunk's on `continue`
        momentum = [s["momentum_buffer"] for s in first["optimizer"]["state"].values()]
        if name == "sgd" and state == "continue":
            assert len(momentum) == len(trunk_momentum)
            assert all(torch.equal(m, t) for m, t in zip(momentum, trunk_momentum, strict=True))
        else:
            assert first["optimizer"]["state"] == {}  # NGD never takes over SGD's state


def test_fresh_and_continued_sgd_branches_differ_after_the_cut_off(digits_path, tmp_path):
    trunk = make_run("trunk", epochs=1, protocol="swap")
    train(trunk, digits_path, tmp_path / "trunk")
    finals = {}
    for state in ("fresh", "continue"):
        branch = {
            **make_run("sgd", start=1, epochs=2, protocol="swap"),
            "swap_optimizer_state": state,
        }
        train(
            branch,
            digits_path,
            tmp_path / state,
            trunk_checkpoints=tmp_path / "trunk" / "checkpoints",
        )
        finals[state] = load_checkpoint(tmp_path / state / "checkpoints" / "epoch_002.pt")["model"]
    assert any(not torch.equal(finals["fresh"][k], finals["continue"][k]) for k in finals["fresh"])
