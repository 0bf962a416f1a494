"""Parity with Captum's IntegratedGradients on torch models exported to ONNX."""

from __future__ import annotations

import numpy as np
import pytest
from explain_helpers import torch_export

from gexplain.explain import CompiledModel, integrated_gradients

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
nn = torch.nn

G = 12
RULES = ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]


def _models(n_classes: int, double: bool):
    """(name, logits module) pairs: logistic regression and an MLP with BatchNorm."""
    torch.manual_seed(n_classes)
    dtype = torch.float64 if double else torch.float32
    lr = nn.Sequential(nn.Linear(G, n_classes))
    mlp = nn.Sequential(nn.Linear(G, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, n_classes))
    with torch.no_grad():
        mlp[1].running_mean.normal_(0, 0.3)
        mlp[1].running_var.uniform_(0.5, 2.0)
        mlp[1].weight.uniform_(0.5, 1.5)
        for m in (lr[0], mlp[0], mlp[3]):
            m.weight.mul_(2.0)
    return {"lr": lr.to(dtype).eval(), "mlp": mlp.to(dtype).eval()}


_CACHE: dict = {}


def _setup(n_classes: int, double: bool, softmax_in_graph: bool):
    key = (n_classes, double, softmax_in_graph)
    if key not in _CACHE:
        out = {}
        for name, module in _models(n_classes, double).items():
            exported = nn.Sequential(module, nn.Softmax(dim=1)) if softmax_in_graph else module
            out[name] = (module, CompiledModel.load(torch_export(exported, G, double=double)))
        _CACHE[key] = out
    return _CACHE[key]


def _captum(module, X, baseline, target, output, method, steps, double):
    dtype = torch.float64 if double else torch.float32
    if output == "probability":

        def fwd(x):
            return torch.softmax(module(x), dim=1)

    else:
        fwd = module
    ig = captum_attr.IntegratedGradients(fwd)
    x = torch.tensor(X, dtype=dtype)
    b = torch.tensor(np.broadcast_to(baseline, X.shape).copy(), dtype=dtype)
    attr = ig.attribute(x, baselines=b, target=torch.tensor(target), n_steps=steps, method=method)
    return attr.detach().double().numpy()


def _rel_l2(a, b):
    return float(
        (np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-30)).max()
    )


@pytest.mark.parametrize("n_classes", [2, 5])
@pytest.mark.parametrize("output", ["logit", "probability"])
@pytest.mark.parametrize("nonzero_baseline", [False, True])
@pytest.mark.parametrize("double", [False, True])
def test_every_rule_matches_captum(rng, n_classes, output, nonzero_baseline, double):
    models = _setup(n_classes, double, softmax_in_graph=(output == "probability"))
    X = rng.normal(size=(4, G))
    baseline = rng.normal(size=G) * 0.5 if nonzero_baseline else np.zeros(G)
    target = np.arange(4) % n_classes
    for name, (module, compiled) in models.items():
        Xm = X.astype(np.float32).astype(np.float64) if not double else X
        for method in RULES:
            ours = integrated_gradients(
                compiled,
                Xm,
                baseline=baseline,
                labels=target.tolist(),
                target="label",
                method=method,
                steps=16,
                output=output,
            )
            ref = _captum(module, Xm, baseline, target, output, method, 16, double)
            assert _rel_l2(ours.values.astype(np.float64), ref) <= 1e-5, (name, method)


def test_exact_agrees_with_fine_riemann_within_its_error(rng):
    """Exact IG vs Captum's riemann_middle at 20,000 steps: within the rule's own error bound.

    For the midpoint rule |∫g − h Σ g(mid)| ≤ h · TV(g) (total variation of the
    integrand, here with jumps at the ReLU breakpoints), so per gene
    |exact_j − captum_j| ≤ |Δx_j| · h · TV(g_j), with TV measured on the same grid.
    """
    module, compiled = _setup(5, True, softmax_in_graph=True)["mlp"]
    X = rng.normal(size=(3, G)) * 2
    baseline = np.zeros(G)
    target = np.array([0, 3, 4])
    steps = 20_000
    exact = integrated_gradients(
        compiled, X, baseline=baseline, labels=target.tolist(), target="label", method="exact"
    )
    assert np.abs(exact.delta).max() <= 1e-6 * max(
        1.0, np.abs(exact.rows["f_x"] - exact.rows["f_baseline"]).max()
    )
    ref = _captum(module, X, baseline, target, "probability", "riemann_middle", steps, True)
    # integrand on the midpoint grid, to bound the rule's error
    alphas = (np.arange(steps) + 0.5) / steps
    for r in range(3):
        path = torch.tensor(baseline + alphas[:, None] * (X[r] - baseline), requires_grad=True)
        p = torch.softmax(module(path), dim=1)[:, target[r]].sum()
        (g,) = torch.autograd.grad(p, path)
        tv = np.abs(np.diff(g.numpy(), axis=0)).sum(axis=0)
        bound = np.abs(X[r] - baseline) * tv / steps * 1.5 + 1e-12
        err = np.abs(exact.values[r].astype(np.float64) - ref[r])
        assert np.all(err <= bound + 2e-7 * np.abs(ref[r])), (err / bound).max()
    # and the exact attributions are what the rule converges to (relative L2 ~ h)
    assert _rel_l2(exact.values.astype(np.float64), ref) < 1e-3
