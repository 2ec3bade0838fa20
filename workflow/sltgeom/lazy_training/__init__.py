"""Lazy training (seed notebook 003): when does a network train like its linearisation?

Chizat, Oyallon & Bach (2019), "On lazy training in differentiable programming": a model
α·(f(x; w) − f(x; w₀)) trained by gradient descent with step η/α² moves its weights by O(1/α)
and stays within O(1/α) of its linearisation around w₀, i.e. of kernel gradient descent with the
tangent kernel K₀ = J(w₀)J(w₀)ᵀ. Wide networks (standard PyTorch initialisation) drift towards
the same regime.

Modules, each named after what it computes:
``data`` (the 1-D regression toy data and targets), ``descent`` (gradient descent on a batch of
members, recording loss and weight movement per step), ``linear`` (sin/cos-feature linear models,
row-space projections, GD on linear regression), ``mlp`` (shallow and deep MLPs with every seed
and sweep member trained as one batched tensor program), ``ntk`` (empirical tangent kernels with
torch.func, kernel gradient descent in function space), ``landscapes`` (the 1-D scaled model and
the 2-D gradient flow vs descent function), ``theory`` (torch-free fits and gaps) and
``experiments`` (the notebook's eleven experiments as tables, see docs/lazy_training.md).
"""
