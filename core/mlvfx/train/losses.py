"""Loss terms of the material model.

All tensors are ``(B, C, H, W)``. Normals are unit tangent-space vectors (OpenGL: +X right, +Y up,
+Z out); heights are in pixel units (a rise of 1 over one pixel is a 45° slope), rows grow downwards;
albedo is linear RGB.
"""

from __future__ import annotations

import torch

_EPS = 1e-6


def angular_loss(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean angle in radians between two unit normal fields (B, 3, H, W)."""
    cos = (pred * truth).sum(dim=1).clamp(-1.0 + _EPS, 1.0 - _EPS)
    return torch.acos(cos).mean()


def chord_loss(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean chord length ``|pred - truth| = 2 sin(angle / 2)`` between unit normal fields (B, 3, H, W).

    Equal to the angle in radians to first order, but with bounded gradients: ``acos`` has an
    infinite slope at zero error, and on mostly flat materials (most pixels already nearly right)
    those huge, noisy gradients swamp the useful ones once gradients are clipped.
    """
    d = pred - truth
    return torch.sqrt((d * d).sum(dim=1) + 1e-8).mean()


def slopes_from_normal(n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Height slopes implied by normals: (dh/dcol, dh/drow), each (B, 1, H, W).

    OpenGL normals ``normalize(-dh/dx, -dh/dy, 1)`` with y up = -row give
    ``dh/dcol = -nx/nz`` and ``dh/drow = ny/nz``.
    """
    nz = n[:, 2:3].clamp(min=0.05)
    return -n[:, 0:1] / nz, n[:, 1:2] / nz


def central_slopes(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central-difference slopes of a height (B, 1, H, W), on the interior (H-2, W-2)."""
    d_col = 0.5 * (h[:, :, 1:-1, 2:] - h[:, :, 1:-1, :-2])
    d_row = 0.5 * (h[:, :, 2:, 1:-1] - h[:, :, :-2, 1:-1])
    return d_col, d_row


def height_gradient_loss(height: torch.Tensor, truth_height: torch.Tensor) -> torch.Tensor:
    """L1 between the slopes of the predicted and true heights (both pixel units)."""
    pc, pr = central_slopes(height)
    tc, tr = central_slopes(truth_height)
    return (pc - tc).abs().mean() + (pr - tr).abs().mean()


def height_normal_consistency(height: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """L1 between the predicted height's slopes and the slopes its predicted normals imply."""
    hc, hr = central_slopes(height)
    nc, nr = slopes_from_normal(normal[:, :, 1:-1, 1:-1])
    return (hc - nc).abs().mean() + (hr - nr).abs().mean()


def scale_invariant_log_loss(pred: torch.Tensor, truth: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Scale-invariant MSE of log albedo: the per-image mean log ratio is removed first.

    Args:
        pred: (B, 3, H, W) linear RGB.
        truth: (B, 3, H, W) linear RGB.
    """
    d = torch.log(pred + eps) - torch.log(truth + eps)
    d = d - d.mean(dim=(1, 2, 3), keepdim=True)
    return (d * d).mean()


def scale_invariant_rmse(pred: torch.Tensor, truth: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean over images of the linear scale-invariant RMSE, ``min_a sqrt(mean((a * pred - truth)^2))``.

    The same quantity :func:`mlvfx.eval.material.si_rmse` scores, per image of the batch.

    Args:
        pred: (B, 3, H, W) linear RGB.
        truth: (B, 3, H, W) linear RGB.
    """
    p, t = pred.flatten(1), truth.flatten(1)
    a = (p * t).sum(dim=1, keepdim=True) / ((p * p).sum(dim=1, keepdim=True) + eps)
    return torch.sqrt(((a * p - t) ** 2).mean(dim=1) + eps).mean()


def l1_loss(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return (pred - truth).abs().mean()
