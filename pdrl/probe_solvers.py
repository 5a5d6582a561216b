"""The linear probe's protocol on given features (Tschannen et al. 2020; PD paper Sec. 5.2), and its two solvers.

Plain PyTorch (and scikit-learn for saga), no Lightning: ``pdrl.callbacks.linear_probe.LinearProbe`` runs it on
a task's embeddings during training, ``bench/`` and the tests call it on features of their own.

``linear_probe_accuracy``: min-max scale the features with the train split's range (``minmax_scale``), fit a
multinomial logistic regression from scratch on the train features, report accuracy on the test features.

Two solvers of the same model (``solver=...``):

- ``"saga"``: scikit-learn's ``LogisticRegression(C=10, solver="saga", tol=0.1)``, the paper's protocol, exactly
  (``saga_predictions``; ``tests/test_linear_probe.py`` checks equality); on the CPU, about 2.5 s for MNIST's
  60000 x 392.
- ``"lbfgs"``: full-batch L-BFGS in PyTorch on the features' own device (``fit_logistic_regression``), to the
  optimum of::

      minimise  mean_i CE(W x_i + b, y_i) + ||W||^2 / (2 C n)       (scikit-learn: C * sum_i CE + ||W||^2 / 2)

  Fast on a GPU. On 392-d MNIST it agrees with saga; on high-dimensional features saga's early stop regularises
  and the two differ by points (the test builds a 1536-d case).

Features whose train range is numerically zero are zeroed, not stretched (``minmax_scale``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pdrl.errors import ConfigError

CONSTANT_TOLERANCE = 1e-6
SOLVERS = ("lbfgs", "saga")


def minmax_scale(
    train: torch.Tensor, test: torch.Tensor, constant_tolerance: float = CONSTANT_TOLERANCE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale every feature to [0, 1] on the train split, in float64 with scikit-learn's arithmetic.

    ``MinMaxScaler``'s ``x * (1 / range) - low / range``, except for *numerically constant* features: a feature whose
    train range is at most ``constant_tolerance`` times the largest range of all features is set to 0 on both splits.
    Min-max scaling would otherwise blow a range of 1e-9 (float noise, e.g. a constant pixel passed through a
    near-identity RealNVP) up to [0, 1], where it acts as a nonlinear feature of the other inputs and flatters the
    encoder. scikit-learn only guards exactly constant features.
    """
    train, test = train.double(), test.double()
    low, high = train.amin(dim=0), train.amax(dim=0)
    span = high - low
    constant = span <= constant_tolerance * span.max().clamp_min(torch.finfo(torch.float64).tiny)
    scale = torch.where(constant, torch.zeros_like(span), 1.0 / torch.where(constant, torch.ones_like(span), span))
    offset = -low * scale
    return train * scale + offset, test * scale + offset


def fit_logistic_regression(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, C: float = 10.0, max_iter: int = 500
) -> tuple[torch.nn.Linear, int]:
    """Multinomial logistic regression with scikit-learn's L2 penalty (weights only), by full-batch L-BFGS.

    Returns the fitted map and the number of L-BFGS iterations it took.
    """
    if not C > 0:
        raise ConfigError(f"C={C!r} must be > 0 (scikit-learn's inverse regularisation strength), e.g. 10.")
    features = features.float()
    model = torch.nn.Linear(features.shape[1], num_classes).to(features.device)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    penalty = 1.0 / (2.0 * C * features.shape[0])
    optimizer = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(features), labels) + penalty * model.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return model, int(optimizer.state[optimizer._params[0]]["n_iter"])


def saga_predictions(
    train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor, C: float
) -> torch.Tensor:
    """The paper's probe: scikit-learn's ``LogisticRegression(C, solver="saga", tol=0.1, random_state=0)``."""
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(C=C, solver="saga", tol=0.1, random_state=0)
    classifier.fit(train_features.cpu().numpy(), train_labels.cpu().numpy())
    return torch.from_numpy(classifier.predict(test_features.cpu().numpy())).to(test_features.device)


def linear_probe_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    C: float = 10.0,
    max_iter: int = 500,
    solver: str = "lbfgs",
) -> float:
    """The protocol on given features: min-max scale, fit on train, accuracy on test.

    ``solver="lbfgs"``: pdrl's full-batch L-BFGS to the optimum of the penalised likelihood, on the features' own
    device. ``solver="saga"``: scikit-learn's saga with ``tol=0.1``, the paper's protocol, on the CPU. On
    low-dimensional features (392-d MNIST) the two agree; on high-dimensional ones saga's early stop acts as extra
    regularisation and the two differ (``tests/test_linear_probe.py`` builds such a case).
    """
    if solver not in SOLVERS:
        raise ConfigError(f"solver={solver!r} is unknown: choose one of {SOLVERS}.")
    train_features, test_features = minmax_scale(train_features, test_features)
    if solver == "saga":
        predictions = saga_predictions(train_features, train_labels, test_features, C)
    else:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
        model, _ = fit_logistic_regression(train_features, train_labels, num_classes, C, max_iter)
        with torch.no_grad():
            predictions = model(test_features.float()).argmax(dim=1)
    return (predictions == test_labels).double().mean().item()
