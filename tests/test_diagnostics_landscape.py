"""Loss landscape: filter normalisation, exact parabolas, weights restored bitwise."""
import numpy as np
import pytest
import torch
from torch import nn

from mmfd.diagnostics import (filter_normalize, landscape_parameters, loss_landscape,
                              random_direction, sharpness)
from mmfd.diagnostics.landscape import evaluate_surface


class Quadratic(nn.Module):
    """L(w) = ||W - W*||^2 + ||b - b*||^2 with the minimum at the current weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(5, 3)
        self.pos_embed = nn.Parameter(torch.randn(1, 4, 3))
        self.frozen = nn.Parameter(torch.randn(3, 3), requires_grad=False)
        self.register_buffer('w_star', self.fc.weight.detach().clone().double())
        self.register_buffer('b_star', self.fc.bias.detach().clone().double())

    def loss_value(self) -> float:
        return float(((self.fc.weight.double() - self.w_star)**2).sum() +
                     ((self.fc.bias.double() - self.b_star)**2).sum())


def test_filter_normalisation():
    w = torch.randn(4, 3, 2, 2)
    d = filter_normalize(torch.randn(4, 3, 2, 2), w)
    np.testing.assert_allclose(d.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5)
    assert torch.equal(filter_normalize(torch.randn(7), torch.randn(7)), torch.zeros(7))


def test_parameters_skip_position_tables_and_frozen():
    names = set(landscape_parameters(Quadratic()))
    assert names == {'fc.weight', 'fc.bias'}


def test_quadratic_loss_gives_the_known_parabola():
    model = Quadratic()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = loss_landscape(model, model.loss_value, dim=1, points=11, span=2.0, seed=3)
    # direction: zero on the bias, ||d|| = ||W|| on the weight -> L(a) = a^2 ||W||^2
    c2 = float(model.fc.weight.detach().double().pow(2).sum())
    alphas = np.asarray(res['alphas'])
    np.testing.assert_allclose(alphas, np.linspace(-2, 2, 11))
    np.testing.assert_allclose(res['losses'], c2 * alphas**2, rtol=1e-5, atol=1e-9)
    assert res['sharpness']['curvature'] == pytest.approx(2 * c2, rel=1e-5)
    assert res['sharpness']['rise'] == pytest.approx(c2 * 4, rel=1e-5)
    assert res['num_parameters'] == 15
    for k, v in model.state_dict().items():  # restored bitwise
        assert torch.equal(v, before[k]), k


def test_quadratic_surface_2d():
    model = Quadratic()
    params = landscape_parameters(model)
    d1, d2 = random_direction(params, 0), random_direction(params, 1)
    axis = np.linspace(-1, 1, 5)
    z = evaluate_surface(params, [d1, d2], [axis, axis], model.loss_value)
    W = model.fc.weight.detach().double()
    n1, n2 = d1['fc.weight'].double(), d2['fc.weight'].double()
    cross = float((n1 * n2).sum())
    A, B = np.meshgrid(axis, axis, indexing='ij')
    expected = (A**2 + B**2) * float(W.pow(2).sum()) + 2 * A * B * cross
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-9)
    res = loss_landscape(model, model.loss_value, dim=2, points=5, span=1.0, seed=0)
    np.testing.assert_allclose(res['losses'], expected, rtol=1e-5, atol=1e-9)
    assert res['sharpness']['curvature'] == pytest.approx(2 * float(W.pow(2).sum()), rel=1e-5)


def test_directions_are_reproducible_and_seed_dependent():
    params = landscape_parameters(Quadratic())
    a, b, c = random_direction(params, 0), random_direction(params, 0), random_direction(params, 1)
    assert torch.equal(a['fc.weight'], b['fc.weight'])
    assert not torch.equal(a['fc.weight'], c['fc.weight'])


def test_sharpness_definitions():
    a = np.linspace(-1, 1, 9)
    res = sharpness(a, 3 + 0.5 * a + 2 * a**2, radius=0.5)
    assert res['curvature'] == pytest.approx(4.0)
    assert res['rise'] == pytest.approx(2 * 0.25)
    assert res['loss_at_0'] == pytest.approx(3.0)
