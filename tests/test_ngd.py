"""Tests for the online natural-gradient optimizer (sltgeom.optim.ngd)."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

import sltgeom.optim.ngd as ngd
from sltgeom.optim.ngd import NGD

F64 = torch.float64


def make(shape, dtype=F64, **kw):
    p = nn.Parameter(torch.zeros(shape, dtype=dtype))
    return p, NGD([p], lr=1.0, seed=0, **kw)


def direction(p, opt, grad):
    """The preconditioned gradient of one step (p reset to 0, lr 1, no momentum)."""
    with torch.no_grad():
        p.zero_()
    p.grad = grad.clone()
    opt.step()
    return -p.detach().clone()


def axes_state(opt, p):
    return copy.deepcopy(opt.state[p]["fisher"])


def dense_fisher(fs):
    r, d = fs["R"].double(), fs["d"].double()
    return r.T @ torch.diag(d) @ r + fs["rho"] * torch.eye(r.shape[1], dtype=F64)


def dense_precondition(x, fs, alpha):
    """X F~^{-1} with F~ = F + alpha tr(F)/D I, rows of x = samples."""
    f = dense_fisher(fs)
    f_smooth = f + alpha * torch.trace(f) / f.shape[0] * torch.eye(f.shape[0], dtype=F64)
    return x.double() @ torch.linalg.inv(f_smooth)


def dense_update(fs, x, eta, eps, delta):
    """eta S + (1 - eta) F followed by the paper's power-iteration step, densely."""
    n, dim = x.shape
    r, rho = fs["R"].double(), fs["rho"]
    t = eta * x.T @ x / n + (1 - eta) * dense_fisher(fs)
    y = r @ t
    c, u = torch.linalg.eigh(y @ y.T)
    c, u = c.flip(0), u.flip(1)
    sqrt_c = c.clamp_min(max(((1 - eta) * rho) ** 2, eps**2)).sqrt()
    r1 = (u.T / sqrt_c[:, None]) @ y
    rho1 = (torch.trace(t) - sqrt_c.sum()).item() / (dim - r.shape[0])
    d1 = (sqrt_c - rho1).clamp_min(eps)
    rho1 = max(rho1, eps, delta * sqrt_c.max().item())
    return {"R": r1, "d": d1, "rho": rho1}, sqrt_c


# 1. preconditioning and update equal a dense reference --------------------------------------


def test_preconditioning_and_update_match_dense_reference():
    gen = torch.Generator().manual_seed(1)
    alpha, eta, eps, delta = 4.0, 0.3, 1e-10, 5e-4
    # axis 0 (size 12) is above max_dim: one Fisher factor of size 6 (rank 3), N = 12 rows
    p, opt = make((12, 6), alpha=alpha, eta=eta, max_dim=8)
    for step in range(5):
        x = torch.randn(12, 6, generator=gen, dtype=F64) * torch.linspace(0.2, 3, 6, dtype=F64)
        before = axes_state(opt, p) if step else None
        out = direction(p, opt, x)
        if before is None:
            continue
        (fs,) = before
        ref = dense_precondition(x, fs, alpha)
        ref = ref * x.norm() / ref.norm()
        torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-12)
        (new,) = axes_state(opt, p)
        want, sqrt_c = dense_update(fs, x, eta, eps, delta)
        torch.testing.assert_close(dense_fisher(new), dense_fisher(want), rtol=1e-8, atol=1e-10)
        assert new["rho"] == pytest.approx(want["rho"], rel=1e-8)
        torch.testing.assert_close(new["R"] @ new["R"].T, torch.eye(3, dtype=F64))
        assert new["rho"] >= max(eps, delta * sqrt_c.max().item()) * (1 - 1e-12)
        assert (new["d"] >= eps).all()
        assert new["t"] == step + 1


def test_float32_preconditioning_matches_dense_reference():
    gen = torch.Generator().manual_seed(2)
    p, opt = make((40, 16), dtype=torch.float32, max_dim=20)
    for _ in range(3):
        direction(p, opt, torch.randn(40, 16, generator=gen))
    x = torch.randn(40, 16, generator=gen)
    (fs,) = axes_state(opt, p)
    ref = dense_precondition(x, fs, 4.0)
    ref = ref * x.double().norm() / ref.norm()
    torch.testing.assert_close(direction(p, opt, x).double(), ref, rtol=1e-4, atol=1e-5)


def test_axes_are_applied_in_turn():
    gen = torch.Generator().manual_seed(3)
    p, opt = make((3, 4, 5), alpha=1.0)
    for _ in range(3):
        direction(p, opt, torch.randn(3, 4, 5, generator=gen, dtype=F64))
    x = torch.randn(3, 4, 5, generator=gen, dtype=F64)
    states = axes_state(opt, p)
    assert [fs["axis"] for fs in states] == [0, 1, 2]
    assert [fs["R"].shape[0] for fs in states] == [2, 2, 3]  # min((dim + 1) // 2, 80), < dim
    ref = x
    for fs in states:
        k = fs["axis"]
        moved = ref.movedim(k, -1)
        ref = dense_precondition(moved.reshape(-1, moved.shape[-1]), fs, 1.0)
        ref = ref.reshape(moved.shape).movedim(-1, k)
    ref = ref * x.norm() / ref.norm()
    torch.testing.assert_close(direction(p, opt, x), ref, rtol=1e-9, atol=1e-12)


def test_small_and_huge_axes_are_skipped():
    p, opt = make((1, 7, 50), max_dim=10)
    direction(p, opt, torch.randn(1, 7, 50, dtype=F64))
    assert [fs["axis"] for fs in opt.state[p]["fisher"]] == [1]
    s, opt_s = make((1,))
    g = torch.tensor([2.5], dtype=F64)
    torch.testing.assert_close(direction(s, opt_s, g), g)


def test_update_schedule():
    p, opt = make((8, 6), max_dim=7, num_initial_updates=3, update_period=4)
    ts = []
    for _ in range(12):
        direction(p, opt, torch.randn(8, 6, dtype=F64))
        ts.append(opt.state[p]["fisher"][0]["t"])
    assert ts == [1, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5]


@pytest.mark.parametrize("rank", [None, 1])  # dense I - W^T W (D <= 2R), low-rank form
@pytest.mark.parametrize("shape", [(12, 6), (3, 4, 5), (7,)])
def test_steps_without_update_match_dense_reference(shape, rank):
    gen = torch.Generator().manual_seed(7)
    p, opt = make(shape, alpha=1.0, rank=rank, num_initial_updates=1, update_period=10**6)
    direction(p, opt, torch.randn(shape, generator=gen, dtype=F64))
    states = axes_state(opt, p)
    for step in range(3):
        x = torch.randn(shape, generator=gen, dtype=F64)
        ref = x
        for fs in states:
            moved = ref.movedim(fs["axis"], -1)
            ref = dense_precondition(moved.reshape(-1, moved.shape[-1]), fs, 1.0)
            ref = ref.reshape(moved.shape).movedim(-1, fs["axis"])
        ref = ref * x.norm() / ref.norm()
        torch.testing.assert_close(direction(p, opt, x), ref, rtol=1e-9, atol=1e-12)
        assert [fs["skipped"] for fs in opt.state[p]["fisher"]] == [step + 1] * len(states)
        assert all(fs["t"] == 1 for fs in opt.state[p]["fisher"])


def test_batched_fisher_updates_equal_separate_ones():
    """Axes with factors of one shape are updated in one batch; each must get its own update,
    and a tensor falling back (non-finite gradient or statistics) must not disturb the others."""
    gen = torch.Generator().manual_seed(8)
    grads = [[torch.randn(9, 6, generator=gen, dtype=F64) for _ in range(2)] for _ in range(5)]
    grads[2][1][0, 0] = float("nan")
    grads[3][1] *= 1e150  # finite, but its Fisher statistics overflow
    pair = [nn.Parameter(torch.zeros(9, 6, dtype=F64)) for _ in range(2)]
    together = NGD(pair, lr=1.0, seed=0)
    # alone, each with the seed that gives it the random start of its twin in the pair
    alone = [
        NGD([nn.Parameter(torch.zeros(9, 6, dtype=F64))], lr=1.0, seed=1_000_003 * i)
        for i in range(2)
    ]
    for step_grads in grads:
        for p, g in zip(pair, step_grads, strict=True):
            p.grad = g.clone()
        together.step()
        for opt, g in zip(alone, step_grads, strict=True):
            opt.param_groups[0]["params"][0].grad = g.clone()
            opt.step()
    assert together.num_fallbacks == 2 == alone[1].num_fallbacks
    for p, opt in zip(pair, alone, strict=True):
        q = opt.param_groups[0]["params"][0]
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, equal_nan=True)
        for a, b in zip(together.state[p]["fisher"], opt.state[q]["fisher"], strict=True):
            assert (a["t"], a["skipped"]) == (b["t"], b["skipped"])
            torch.testing.assert_close(dense_fisher(a), dense_fisher(b), rtol=1e-9, atol=1e-12)


def test_state_without_cached_projector_gives_the_same_steps():
    """``P`` is a cache of a function of W: a state without it (older checkpoints) works alike."""
    gen = torch.Generator().manual_seed(9)
    p, opt = make((8, 5), num_initial_updates=1, update_period=10**6)
    q, opt_q = make((8, 5), num_initial_updates=1, update_period=10**6)
    first = torch.randn(8, 5, generator=gen, dtype=F64)
    direction(p, opt, first)
    direction(q, opt_q, first)
    for fs in opt_q.state[q]["fisher"]:
        assert "P" in fs
        del fs["P"]
    x = torch.randn(8, 5, generator=gen, dtype=F64)
    torch.testing.assert_close(direction(q, opt_q, x), direction(p, opt, x), rtol=1e-12, atol=0.0)


# 2. the estimator estimates the right thing -------------------------------------------------


def test_estimates_top_subspace_and_eigenvalues_of_stationary_covariance():
    gen = torch.Generator().manual_seed(4)
    dim, n, rank = 20, 64, 3
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=F64))
    lam = torch.cat([torch.tensor([40.0, 15.0, 6.0], dtype=F64), torch.ones(dim - 3, dtype=F64)])
    root = q * lam.sqrt()
    p, opt = make((n, dim), eta=0.1, rank=rank, max_dim=dim)
    for _ in range(250):
        direction(p, opt, torch.randn(n, dim, generator=gen, dtype=F64) @ root.T)
    (fs,) = opt.state[p]["fisher"]
    overlap = (fs["R"] @ q[:, :rank]).square().sum()  # = rank iff the subspaces coincide
    assert overlap > rank - 0.1
    est = (fs["d"] + fs["rho"]).sort(descending=True).values
    torch.testing.assert_close(est, lam[:rank], rtol=0.25, atol=0.0)
    assert fs["rho"] == pytest.approx(1.0, rel=0.25)


# 3. it trains ---------------------------------------------------------------------------------


def _train(opt_factory, steps=150):
    gen = torch.Generator().manual_seed(5)
    centers = 2.0 * torch.randn(3, 10, generator=gen)
    y = torch.randint(0, 3, (512,), generator=gen)
    x = centers[y] + torch.randn(512, 10, generator=gen) * torch.linspace(0.1, 3.0, 10)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = opt_factory(model.parameters())
    losses = []
    for i in range(steps):
        idx = torch.arange(i * 64, (i + 1) * 64) % 512
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        return losses[0], nn.functional.cross_entropy(model(x), y).item(), opt


def test_lowers_the_loss_comparably_to_sgd():
    kw = dict(lr=0.05, momentum=0.9, nesterov=True)
    first, ngd_loss, opt = _train(lambda ps: NGD(ps, seed=0, **kw))
    _, sgd_loss, _ = _train(lambda ps: torch.optim.SGD(ps, **kw))
    assert ngd_loss < 0.3 * first
    assert ngd_loss < 1.5 * sgd_loss + 0.05
    assert opt.num_fallbacks == 0


# 4. non-finite fallback -----------------------------------------------------------------------


def test_non_finite_gradient_falls_back_and_is_counted():
    p, opt = make((6, 5))
    direction(p, opt, torch.randn(6, 5, dtype=F64))
    before = axes_state(opt, p)
    g = torch.randn(6, 5, dtype=F64)
    g[2, 3] = float("inf")
    out = direction(p, opt, g)
    assert opt.num_fallbacks == 1
    torch.testing.assert_close(out, g)  # raw gradient used
    after = opt.state[p]["fisher"]
    for a, b in zip(before, after, strict=True):
        assert a["t"] == b["t"] and a["skipped"] == b["skipped"] and a["rho"] == b["rho"]
        assert torch.equal(a["R"], b["R"]) and torch.equal(a["d"], b["d"])


def test_nan_preconditioner_falls_back(monkeypatch):
    p, opt = make((6, 5))
    direction(p, opt, torch.randn(6, 5, dtype=F64))
    before = axes_state(opt, p)
    monkeypatch.setattr(ngd, "_precondition_axis", lambda out, fs, *a: (out * float("nan"), fs))
    g = torch.randn(6, 5, dtype=F64)
    torch.testing.assert_close(direction(p, opt, g), g)
    assert opt.num_fallbacks == 1
    after = opt.state[p]["fisher"]
    assert all(torch.equal(a["R"], b["R"]) for a, b in zip(before, after, strict=True))


# 5. checkpoint/resume, SGD equivalence ----------------------------------------------------------


def _mlp_run(model, opt, steps, start):
    gen = torch.Generator().manual_seed(start)
    for _ in range(steps):
        x, y = torch.randn(32, 8, generator=gen), torch.randint(0, 3, (32,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_resume_is_bit_identical():
    def fresh(seed):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
        kw = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
        return model, NGD(model.parameters(), num_initial_updates=2, update_period=3, **kw)

    model_a, opt_a = fresh(0)
    _mlp_run(model_a, opt_a, 7, start=10)
    _mlp_run(model_a, opt_a, 7, start=20)

    model_b, opt_b = fresh(0)  # NGD's default seed comes from the global RNG at construction
    _mlp_run(model_b, opt_b, 7, start=10)
    opt_b.state[next(iter(model_b.parameters()))]["num_fallbacks"] = 2  # as if two had happened
    buf = io.BytesIO()
    torch.save({"model": model_b.state_dict(), "opt": opt_b.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)

    model_c, opt_c = fresh(123)  # different init and seed: everything must come from ckpt
    model_c.load_state_dict(ckpt["model"])
    opt_c.load_state_dict(ckpt["opt"])
    assert opt_c.num_fallbacks == 2
    assert opt_c.param_groups[0]["seed"] == opt_a.param_groups[0]["seed"]
    _mlp_run(model_c, opt_c, 7, start=20)
    for pa, pc in zip(model_a.parameters(), model_c.parameters(), strict=True):
        assert torch.equal(pa, pc)


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(momentum=0.9, weight_decay=1e-2),
        dict(momentum=0.8, nesterov=True, weight_decay=5e-3),
    ],
)
def test_identity_preconditioning_is_exactly_sgd(kw):
    torch.manual_seed(0)
    model_a = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    model_b = copy.deepcopy(model_a)
    _mlp_run(model_a, torch.optim.SGD(model_a.parameters(), lr=0.1, **kw), 5, start=1)
    _mlp_run(model_b, NGD(model_b.parameters(), lr=0.1, precondition=False, **kw), 5, start=1)
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(pa, pb)


# 6. hyperparameter validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(lr=-0.1), "lr"),
        (dict(momentum=-0.5), "momentum"),
        (dict(nesterov=True), "nesterov"),
        (dict(weight_decay=-1.0), "weight_decay"),
        (dict(alpha=-1.0), "alpha"),
        (dict(eta=0.0), "eta"),
        (dict(eta=1.5), "eta"),
        (dict(epsilon=0.0), "epsilon"),
        (dict(delta=0.0), "delta"),
        (dict(rank=0), "rank"),
        (dict(update_period=0), "update_period"),
        (dict(num_initial_updates=-1), "num_initial_updates"),
        (dict(max_dim=1), "max_dim"),
    ],
)
def test_bad_hyperparameters_raise(kw, name):
    with pytest.raises(ValueError, match=name):
        NGD([nn.Parameter(torch.zeros(3))], **kw)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(6)
    grads = [torch.randn(16, 12, generator=gen) for _ in range(6)]
    outs = []
    for device in ("cpu", "cuda"):
        p = nn.Parameter(torch.zeros(16, 12, device=device))
        opt = NGD([p], lr=1.0, seed=0)
        outs.append([direction(p, opt, g.to(device)).cpu() for g in grads])
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
