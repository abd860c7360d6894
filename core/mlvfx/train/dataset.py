"""In-memory material dataset with deterministic, step-indexed batches.

Samples are factory folders (see :mod:`mlvfx.data.materials`), held in memory as float16 to halve
the footprint (600 samples of 256² ≈ 0.9 GB). Batch ``t`` depends only on ``(seed, t)`` and the
sample list, so a resumed run draws exactly the batches an uninterrupted run would have drawn.

Batch tensors are ``(B, C, H, W)`` float32: ``lit`` and ``albedo`` linear RGB, ``normal`` unit
OpenGL tangent-space vectors, ``height`` in pixel units, ``roughness`` in [0, 1].
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from mlvfx.data.augment import MaterialSample, augment, augment_with_context, load_sample
from mlvfx.data.splits import HELD_OUT_FAMILIES, SampleRef, list_samples, split_of
from mlvfx.errors import InputError

F16 = npt.NDArray[np.float16]


@dataclass
class _Stored:
    lit: F16
    albedo: F16
    normal: F16
    height_px: npt.NDArray[np.float32]
    roughness: F16
    light: npt.NDArray[np.float32] | None = None

    def sample(self) -> MaterialSample:
        return MaterialSample(
            self.lit.astype(np.float32),
            self.albedo.astype(np.float32),
            self.normal.astype(np.float32),
            self.height_px,
            self.roughness.astype(np.float32),
            self.light,
        )

    @property
    def height(self) -> npt.NDArray[np.float32]:
        """The height in pixels (what :meth:`sample` returns as ``height``)."""
        return self.height_px


def _store(s: MaterialSample) -> _Stored:
    # Heights are stored in patch widths; a sample is one patch wide, so pixels = width * height.
    width = s.shape[1]
    return _Stored(
        s.lit.astype(np.float16),
        s.albedo.astype(np.float16),
        s.normal.astype(np.float16),
        (s.height * np.float32(width)).astype(np.float32),
        s.roughness.astype(np.float16),
        s.light,
    )


def to_batch(samples: list[MaterialSample]) -> dict[str, torch.Tensor]:
    """Stack samples into (B, C, H, W) float32 tensors keyed lit/albedo/normal/height/roughness,
    plus ``light`` (B, 3), each sample's sun direction (zeros without one), and ``light_mask`` (B,):
    1 where the sample has a sun."""

    def stack(arrays: list[npt.NDArray[np.float32]]) -> torch.Tensor:
        a = np.stack([x if x.ndim == 3 else x[..., None] for x in arrays])
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2), dtype=np.float32))

    return {
        "lit": stack([s.lit for s in samples]),
        "albedo": stack([s.albedo for s in samples]),
        "normal": stack([s.normal for s in samples]),
        "height": stack([s.height for s in samples]),
        "roughness": stack([s.roughness for s in samples]),
        "light": torch.tensor(
            np.stack([np.zeros(3, np.float32) if s.light is None else s.light for s in samples])
        ),
        "light_mask": torch.tensor([0.0 if s.light is None else 1.0 for s in samples]),
    }


def context_batch(pairs: Sequence[tuple[MaterialSample, npt.NDArray[np.float32]]]) -> dict[str, torch.Tensor]:
    """:func:`to_batch` of the crops of :func:`augment_with_context` pairs, plus ``thumb``: the
    :func:`context_thumbnail` of each whole photo."""
    from mlvfx.nets.material import context_thumbnail

    out = to_batch([p[0] for p in pairs])
    whole = torch.from_numpy(np.stack([p[1].transpose(2, 0, 1) for p in pairs]).astype(np.float32))
    out["thumb"] = context_thumbnail(whole)
    return out


class MaterialDataset:
    """Training and validation samples of one factory folder, loaded lazily and incrementally.

    Held-out families (:data:`mlvfx.data.splits.HELD_OUT_FAMILIES`) are refused: they exist only
    for validation. Mixtures with a held-out part are skipped and listed in ``skipped_held_out``.
    Metallic samples of the families in ``skip_metallic`` are skipped too (``skipped_metallic``).
    Training samples of the families in ``mark_families`` (a mixture when one of its parts is
    named) are marked: their batches hold ``marked``, (B,) 1.0 for a marked sample, else 0.0.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        val_fraction: float = 0.05,
        skip_metallic: Sequence[str] = (),
        mark_families: Sequence[str] = (),
    ) -> None:
        roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
        if not roots:
            raise InputError("no training data folder given")
        # The same folder named twice (a recipe's own data also listed in ``also``) counts once.
        self.roots = list({Path(r).resolve(): Path(r) for r in roots}.values())
        self.root = self.roots[0]
        self.val_fraction = val_fraction
        self.train: list[_Stored] = []
        self.train_root: list[int] = []  # index into ``roots`` of each training sample
        self.val: list[_Stored] = []
        self._seen: set[str] = set()
        self.skipped_held_out: list[Path] = []
        self.skip_metallic = frozenset(skip_metallic)
        self.skipped_metallic: list[Path] = []
        self.mark_families = frozenset(mark_families)
        self.train_marked: list[bool] = []

    def refresh(self) -> int:
        """Load samples finished since the last call; return how many were added.

        Folders are read in the order given, each in sample order, so the sample list (and with
        it every batch) is the same on every run over the same finished folders.
        """
        refs: list[tuple[int, SampleRef]] = [
            (k, ref) for k, r in enumerate(self.roots) for ref in list_samples(r)
        ]
        added = 0
        for root_index, ref in refs:
            key = str(ref.folder)
            if key in self._seen:
                continue
            if ref.family in HELD_OUT_FAMILIES:
                raise InputError(f"held-out family {ref.family!r} found in training data", ref.folder)
            if ref.holds_out:
                # A mixture that blends a held-out family in: neither trained on nor monitored.
                self.skipped_held_out.append(ref.folder)
                self._seen.add(key)
                continue
            if ref.metallic and ref.family in self.skip_metallic:
                self.skipped_metallic.append(ref.folder)
                self._seen.add(key)
                continue
            stored = _store(load_sample(ref.folder))
            split = split_of(ref.seed, ref.index, ref.family, self.val_fraction)
            if split == "val":
                self.val.append(stored)
            else:
                self.train.append(stored)
                self.train_root.append(root_index)
                self.train_marked.append(bool(self.mark_families & {ref.family, *ref.parts}))
            self._seen.add(key)
            added += 1
        if not self.train:
            raise InputError("no training samples found", self.root)
        return added

    def root_index(self, folder: str | os.PathLike[str]) -> int:
        """Index into ``roots`` of a data folder given to the constructor."""
        want = Path(folder).resolve()
        for k, r in enumerate(self.roots):
            if r.resolve() == want:
                return k
        raise InputError("not one of this dataset's folders", folder)

    def batch(
        self,
        seed: int,
        step: int,
        batch: int,
        crop: int,
        *,
        context: bool = False,
        illumination: float = 0.0,
        roots: Sequence[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The augmented training batch of ``step`` (random crop, dihedral transform, colour jitter).

        With ``context`` the batch also holds ``thumb``: the :func:`context_thumbnail` of each
        whole (augmented) photo the crop was taken from. With ``roots`` (indices into
        ``self.roots``) samples are drawn only from those folders.
        """
        rng = np.random.default_rng([seed, step])
        if roots is None:
            picks = rng.integers(0, len(self.train), size=batch)
        else:
            pool = np.flatnonzero(np.isin(self.train_root, list(roots)))
            if pool.size == 0:
                raise InputError(
                    "no training samples in the curriculum's first folders", self.roots[min(roots)]
                )
            picks = pool[rng.integers(0, pool.size, size=batch)]
        if not context:
            out = to_batch(
                [
                    augment(self.train[int(i)].sample(), rng, crop_size=crop, illumination=illumination)
                    for i in picks
                ]
            )
        else:
            # The float16 maps go in as they are: only the crops are converted.
            out = context_batch(
                [
                    augment_with_context(self.train[int(i)], rng, crop_size=crop, illumination=illumination)
                    for i in picks
                ]
            )
        if self.mark_families:
            out["marked"] = torch.tensor([1.0 if self.train_marked[int(i)] else 0.0 for i in picks])
        return out

    def val_batch(self, count: int, crop: int) -> dict[str, torch.Tensor] | None:
        """Centre crops of up to ``count`` validation samples (no augmentation), or None.

        The batch also holds ``thumb``, the :func:`context_thumbnail` of each whole sample (when
        all samples have one size), for nets with a context branch.
        """
        from mlvfx.nets.material import context_thumbnail

        if not self.val:
            return None
        out, whole = [], []
        for stored in self.val[:count]:
            s = stored.sample()
            h, w = s.shape
            c = min(crop, h, w)
            top, left = (h - c) // 2, (w - c) // 2
            sl = (slice(top, top + c), slice(left, left + c))
            out.append(MaterialSample(s.lit[sl], s.albedo[sl], s.normal[sl], s.height[sl], s.roughness[sl]))
            whole.append(s.lit)
        vb = to_batch(out)
        if len({x.shape for x in whole}) == 1:
            vb["thumb"] = context_thumbnail(torch.from_numpy(np.stack(whole).transpose(0, 3, 1, 2).copy()))
        return vb
