"""MaterialNet: a small multi-scale U-Net from one photo to normal, height, albedo and roughness.

Layout: input ``(B, 3, H, W)`` linear RGB in [0, 1]; H and W divisible by :attr:`MaterialNet.multiple`.
Output ``(B, 8, H, W)``: channels 0-2 unit normals (tangent space, OpenGL: +X right, +Y up,
+Z out), 3 height in pixel units (up to an offset), 4-6 linear RGB albedo in [0, 1],
7 roughness in [0, 1].

Why this shape: the photo enters as log-RGB so exposure changes become offsets; five scales (down
to 1/16) give a ~200 px receptive field for large-scale relief; there is no global pooling and no
batch-dependent normalisation at inference (BatchNorm folds to a per-channel affine), so a tile's
output depends only on its own pixels and the tiled engine can stitch tiles without seams.
Albedo is predicted as a per-pixel log-gain on the photo (de-lighting is mostly division by a
shading term), which keeps texture detail sharp.

Whole-photo context (``context > 0``, recipe material_v3 on): a slope's shading only tells its
sign once the light direction is known, and a tile may not show enough of the photo to infer
it. A small encoder reads a thumbnail of the *whole* photo (:func:`context_thumbnail`: the photo
area-averaged by :data:`CONTEXT_FACTOR`) and mean-pools it into a vector that scales and shifts
(FiLM) the features of every encoder scale. The vector is computed once per photo and shared by
all tiles, so tiles still stitch without seams. The FiLM layers start at zero: a net built this
way starts out identical to the same net without context.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

OUT_CHANNELS = 8
LOG_EPS = 1e-3
CONTEXT_FACTOR = 4
CONTEXT_MAX_SIDE = 512


@dataclass(frozen=True)
class MaterialNetConfig:
    """Architecture hyper-parameters.

    Attributes:
        widths: channels per scale, finest first; ``len(widths) - 1`` downsamplings.
        blocks: convolution pairs per scale in the encoder.
        context: size of the whole-photo context vector; 0 = no context branch.
        detail: hidden width of a full-resolution refinement block after the last decoder
            (sees the decoder's features and the input features; its residual output starts at
            zero, so a net warm-started without it starts equal to its parent); 0 = none.
    """

    widths: tuple[int, ...] = field(default=(16, 32, 48, 64, 96))
    blocks: int = 1
    context: int = 0
    detail: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MaterialNetConfig:
        """Build from a recipe's ``model`` section (unknown keys are rejected by the dataclass)."""
        kw = dict(d)
        if "widths" in kw:
            kw["widths"] = tuple(int(w) for w in kw["widths"])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


class _ConvBlock(nn.Sequential):
    """conv3x3 → BN → ReLU, twice."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


def _features(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log-RGB and the 6-channel input features (log-RGB, log-chromaticity)."""
    log_rgb = torch.log(rgb.clamp(min=0.0) + LOG_EPS)
    grey = log_rgb.mean(dim=1, keepdim=True)
    return log_rgb, torch.cat([log_rgb, log_rgb - grey], dim=1)


def context_thumbnail(rgb: torch.Tensor) -> torch.Tensor:
    """The thumbnail the context encoder reads: ``rgb`` (B, 3, H, W) area-averaged by
    :data:`CONTEXT_FACTOR` (further if the result would exceed :data:`CONTEXT_MAX_SIDE`)."""
    h, w = rgb.shape[-2:]
    f = max(CONTEXT_FACTOR, -(-max(h, w) // CONTEXT_MAX_SIDE))
    size = (max(1, h // f), max(1, w // f))
    return F.adaptive_avg_pool2d(rgb, size)


class _ContextEncoder(nn.Module):
    """Thumbnail → context vector: three strided convolutions, ReLU, global mean, linear."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(6, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 48, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(48, 64, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Linear(64, size)

    def forward(self, thumb: torch.Tensor) -> torch.Tensor:
        _, feats = _features(thumb)
        return torch.tanh(self.out(self.convs(feats).mean(dim=(2, 3))))


class MaterialNet(nn.Module):
    """Multi-scale U-Net predicting material maps from a linear RGB photo.

    Example:
        >>> net = MaterialNet(MaterialNetConfig(widths=(4, 8), blocks=1)).eval()
        >>> y = net(torch.rand(1, 3, 32, 32))
        >>> tuple(y.shape)
        (1, 8, 32, 32)
    """

    def __init__(self, config: MaterialNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or MaterialNetConfig()
        widths = self.config.widths
        if len(widths) < 1 or any(w < 1 for w in widths) or self.config.blocks < 1:
            raise ValueError(f"invalid MaterialNet config {self.config}")
        # Input features: log-RGB (3) and log-RGB minus its grey level (chromaticity, 3).
        self.stem = _ConvBlock(6, widths[0])
        self.encoders = nn.ModuleList()
        for i in range(1, len(widths)):
            layers: list[nn.Module] = [_ConvBlock(widths[i - 1], widths[i])]
            layers += [_ConvBlock(widths[i], widths[i]) for _ in range(self.config.blocks - 1)]
            self.encoders.append(nn.Sequential(*layers))
        self.decoders = nn.ModuleList()
        for i in range(len(widths) - 1, 0, -1):
            self.decoders.append(_ConvBlock(widths[i] + widths[i - 1], widths[i - 1]))
        self.head = nn.Conv2d(widths[0], OUT_CHANNELS, 1)
        if self.config.context < 0 or self.config.detail < 0:
            raise ValueError(f"invalid MaterialNet config {self.config}")
        if self.config.detail:
            d = self.config.detail
            self.detail = nn.Sequential(
                nn.Conv2d(widths[0] + 6, d, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(d, d, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(d, widths[0], 3, padding=1),
            )
            last = self.detail[-1]
            assert isinstance(last, nn.Conv2d)
            nn.init.zeros_(last.weight)
            assert last.bias is not None
            nn.init.zeros_(last.bias)
        if self.config.context:
            self.ctx_enc = _ContextEncoder(self.config.context)
            # FiLM per scale: (1 + gamma) * x + beta, zero-initialised.
            self.ctx_film = nn.ModuleList(nn.Linear(self.config.context, 2 * w) for w in widths)
            for film in self.ctx_film:
                assert isinstance(film, nn.Linear)
                nn.init.zeros_(film.weight)
                nn.init.zeros_(film.bias)

    @property
    def multiple(self) -> int:
        """Input height and width must be divisible by this."""
        return int(2 ** (len(self.config.widths) - 1))

    def context_vector(self, thumb: torch.Tensor) -> torch.Tensor:
        """(B, context) vector of a whole-photo :func:`context_thumbnail` (B, 3, h, w)."""
        if not self.config.context:
            raise ValueError("this MaterialNet has no context branch")
        vec: torch.Tensor = self.ctx_enc(thumb)
        return vec

    def forward(
        self,
        rgb: torch.Tensor,
        thumb: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the maps.

        Args:
            rgb: (B, 3, H, W) linear RGB in [0, 1], H and W divisible by :attr:`multiple`.
            thumb: whole-photo thumbnail (B, 3, h, w) for nets with context; default: ``rgb``'s own
                (right when ``rgb`` is the whole photo, not a tile of it).
            context: a precomputed :meth:`context_vector` (B or 1, context); overrides ``thumb``.

        Returns:
            (B, 8, H, W): normal (3, unit), height (1, pixel units), albedo (3, linear), roughness (1).
        """
        log_rgb, feats = _features(rgb)
        films: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.config.context:
            if context is None:
                context = self.context_vector(thumb if thumb is not None else context_thumbnail(rgb))
            for film in self.ctx_film:
                gb = film(context)[:, :, None, None]
                films.append((1.0 + gb[:, 0::2], gb[:, 1::2]))
        x = self.stem(feats)
        if films:
            x = x * films[0][0] + films[0][1]
        skips = [x]
        for i, enc in enumerate(self.encoders):
            x = enc(F.avg_pool2d(x, 2))
            if films:
                x = x * films[i + 1][0] + films[i + 1][1]
            skips.append(x)
        skips.pop()
        for dec in self.decoders:
            skip = skips.pop()
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skip], dim=1))
        if self.config.detail:
            x = x + self.detail(torch.cat([x, feats], dim=1))
        raw = self.head(x)
        nz = F.softplus(raw[:, 2:3] + 2.0)
        n = torch.cat([raw[:, 0:2], nz], dim=1)
        n = n / torch.sqrt((n * n).sum(dim=1, keepdim=True) + 1e-12)
        height = raw[:, 3:4]
        albedo = torch.exp(log_rgb + raw[:, 4:7]).clamp(0.0, 1.0)
        rough = torch.sigmoid(raw[:, 7:8])
        return torch.cat([n, height, albedo, rough], dim=1)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))


def count_flops_per_pixel(net: MaterialNet, size: int = 256) -> float:
    """Multiply-adds ×2 of the convolutions per input pixel (a ``size``² input; BN/ReLU ignored).

    Measured with forward hooks on every ``nn.Conv2d``, so it follows the actual architecture.
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        k = module.kernel_size[0] * module.kernel_size[1]
        cin = module.in_channels // module.groups
        total += 2 * k * cin * output.numel()

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.rand(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    return total / float(size * size)


def config_from_state_dict(state: dict[str, torch.Tensor]) -> MaterialNetConfig:
    """Recover the architecture from a state dict's tensor shapes (weights carry no pickled config)."""
    try:
        widths = [int(state["stem.0.weight"].shape[0])]
        i = 0
        while f"encoders.{i}.0.0.weight" in state:
            widths.append(int(state[f"encoders.{i}.0.0.weight"].shape[0]))
            i += 1
        blocks = 0
        while f"encoders.0.{blocks}.0.weight" in state:
            blocks += 1
        context = int(state["ctx_enc.out.weight"].shape[0]) if "ctx_enc.out.weight" in state else 0
        detail = int(state["detail.0.weight"].shape[0]) if "detail.0.weight" in state else 0
    except KeyError as exc:
        raise ValueError(f"not a MaterialNet state dict (missing {exc})") from None
    return MaterialNetConfig(widths=tuple(widths), blocks=max(blocks, 1), context=context, detail=detail)


def material_net_from_state_dict(state: dict[str, torch.Tensor]) -> MaterialNet:
    """Build a :class:`MaterialNet` in eval mode with these weights (strict loading)."""
    net = MaterialNet(config_from_state_dict(state))
    net.load_state_dict(state, strict=True)
    return net.eval()
