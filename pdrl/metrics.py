"""Evaluation metrics shared by tasks, callbacks and benchmarks: plain PyTorch, no Lightning, no I/O.

- ``pointwise_errors``: how well an estimated log-PD matrix matches the true one (MI estimation, PD paper Sec. 5.1).
- ``grid_metrics``: mode coverage and sample quality of a GAN on a grid of Gaussians (MICE paper Sec. 5.3).

Grid metrics (as in VEEGAN and PacGAN, on ``num_eval_samples = 2500`` generated points):

- a sample is of **high quality** when it lies within ``n_sigma = 3`` standard deviations of the
  nearest centre (Euclidean distance <= 3 * std);
- a mode is **covered** when at least ``min_samples_per_mode = 20`` high-quality samples are closest to it
  (PacGAN's rule: 20 of the 100 samples a perfect generator puts on each mode out of 2500).
"""

from __future__ import annotations

import torch


def pointwise_errors(estimate: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Errors of estimated log-PD matrices against the true ones, on joint and marginal pairs.

    ``estimate`` and ``truth`` are ``(batches, n, n)`` (or one ``(n, n)`` matrix); joint pairs are the
    diagonals, marginal pairs the off-diagonal entries. For each set: ``bias`` (mean of
    estimate - truth), ``rmse``, ``error_std`` (the RMSE once a constant offset is removed: the accuracy of
    estimators that learn log-PD only up to a constant, such as DV or SMILE) and ``corr`` (Pearson).
    """
    diagonal = torch.eye(truth.shape[-1], dtype=torch.bool, device=truth.device).expand(truth.shape)
    errors = {}
    for name, mask in (("joint", diagonal), ("marginal", ~diagonal)):
        est, true = estimate[mask].double(), truth[mask].double()
        error = est - true
        errors[f"{name}_bias"] = error.mean()
        errors[f"{name}_rmse"] = error.square().mean().sqrt()
        errors[f"{name}_error_std"] = error.std(unbiased=False)
        errors[f"{name}_corr"] = torch.corrcoef(torch.stack([est, true]))[0, 1]
    return errors


def grid_metrics(
    samples: torch.Tensor,
    centres: torch.Tensor,
    std: float,
    n_sigma: float = 3.0,
    min_samples_per_mode: int = 20,
) -> dict[str, float]:
    """Modes covered and share of high-quality samples (see the module docstring).

    Returns:
        ``{"modes_covered": k, "high_quality_share": q}``: k in [0, number of modes], q in [0, 1].
    """
    if samples.dim() != 2 or samples.shape[1] != centres.shape[1]:
        raise ValueError(f"samples must be (n, {centres.shape[1]}) points, got shape {tuple(samples.shape)}.")
    distances = torch.cdist(samples.float(), centres.float())
    nearest_distance, nearest_mode = distances.min(dim=1)
    high_quality = nearest_distance <= n_sigma * std
    counts = torch.bincount(nearest_mode[high_quality], minlength=len(centres))
    return {
        "modes_covered": float((counts >= min_samples_per_mode).sum()),
        "high_quality_share": float(high_quality.float().mean()),
    }
