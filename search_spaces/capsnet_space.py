"""A CapsNet-family model space whose capsule layers are searched through mutable arguments."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import nni
import torch
from nni.nas.nn.pytorch import ModelSpace, MutableConv2d
from torch import nn

from nni_capsnas.blocks import Block
from nni_capsnas.modules import (
    ClassCaps, FlattenCaps, PrimaryCaps, ReconstructionDecoder, capsule_oneshot_hooks, check_positive,
)
from ._geometry import check_input_shape


def activated_stem(in_channels: int, out_channels: int) -> nn.Sequential:
    """The stem convolution as the network runs it: 3x3 ("same" padding), then ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU())


class CapsNetSpace(ModelSpace):
    """CapsNet with searchable stem width, primary capsules and routing.

    Searched (labels in brackets): stem channels ``[stem_channels]``, primary capsule types
    ``[primary_caps]``, their dimension ``[primary_dim]``, their kernel ``[primary_kernel]``
    (padded "same", so the grid size does not depend on it) and the routing iterations
    of the class capsules ``[iterations]``. Works with NNI's multi-trial strategies and,
    through :func:`~nni_capsnas.modules.capsule_oneshot_hooks`, with DARTS, GumbelDARTS
    and RandomOneShot.

    Parameters
    ----------
    input_shape
        ``(channels, height, width)`` of the images.
    num_classes
        Number of classes.
    stem_channels, primary_caps, primary_dim, primary_kernel, iterations
        Candidate values of each searched dimension.
    class_dim
        Length of the class capsules (fixed; the decoder reads them).
    primary_stride
        Stride of the primary capsules.
    decoder
        Add the reconstruction decoder.
    """

    def __init__(self, *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10,
                 stem_channels: Sequence[int] = (16, 32), primary_caps: Sequence[int] = (4, 8),
                 primary_dim: Sequence[int] = (4, 8), primary_kernel: Sequence[int] = (3, 5),
                 iterations: Sequence[int] = (1, 3), class_dim: int = 16, primary_stride: int = 1,
                 decoder: bool = True) -> None:
        super().__init__()
        channels, height, width = check_input_shape(tuple(input_shape))
        self.input_shape = (channels, height, width)
        self.num_classes = check_positive("num_classes", num_classes)
        self.class_dim = check_positive("class_dim", class_dim)
        self.primary_stride = check_positive("primary_stride", primary_stride)
        for name, values in [("stem_channels", stem_channels), ("primary_caps", primary_caps),
                             ("primary_dim", primary_dim), ("primary_kernel", primary_kernel),
                             ("iterations", iterations)]:
            if not values:
                raise ValueError(f"{name} needs at least one candidate value, got {values!r}")
            for value in values:
                check_positive(name, value)
        stem = nni.choice("stem_channels", list(stem_channels))
        caps = nni.choice("primary_caps", list(primary_caps))
        dim = nni.choice("primary_dim", list(primary_dim))
        if any(k % 2 == 0 for k in primary_kernel):
            raise ValueError(f"primary_kernel candidates must be odd (the padding keeps the grid size), "
                             f"got {tuple(primary_kernel)!r}")
        kernel = nni.choice("primary_kernel", list(primary_kernel))
        self.stem = MutableConv2d(channels, stem, 3, padding=1)
        self.primary = PrimaryCaps(in_channels=stem, out_caps=caps, caps_dim=dim, kernel_size=kernel,
                                   stride=primary_stride, padding=kernel // 2)
        grid = self._grid()
        self.flatten = FlattenCaps()
        self.class_caps = ClassCaps(in_caps=caps * grid, in_dim=dim, out_caps=num_classes,
                                    out_dim=class_dim, iterations=nni.choice("iterations", list(iterations)))
        self.decoder = (ReconstructionDecoder(num_caps=num_classes, caps_dim=class_dim,
                                              output_shape=(channels, height, width), hidden=(64, 128))
                        if decoder else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        return self.class_caps(self.flatten(self.primary(x)))

    def _grid(self) -> int:
        """Positions of the primary capsule grid ("same" padding: independent of the kernel)."""
        _, height, width = self.input_shape
        return ((height - 1) // self.primary_stride + 1) * ((width - 1) // self.primary_stride + 1)

    def cost_blocks(self, sample: Mapping[str, Any]) -> tuple[Block, ...]:
        """The network ``sample`` builds, as blocks for the pre-training estimate (:mod:`nni_capsnas.blocks`):
        the stem with its ReLU (``forward``'s ``torch.relu(self.stem(x))``), the primary capsules, the
        flattening and the class capsules, with the sampled sizes.

        Raises
        ------
        nni.mutable.SampleValidationError
            If ``sample`` misses a label or has a value outside its candidates.
        """
        self.validate(dict(sample))
        stem, caps, dim, kernel = (sample[label] for label in ("stem_channels", "primary_caps", "primary_dim",
                                                                "primary_kernel"))
        return (Block.of(activated_stem, in_channels=self.input_shape[0], out_channels=stem),
                Block.of(PrimaryCaps, in_channels=stem, out_caps=caps, caps_dim=dim, kernel_size=kernel,
                         stride=self.primary_stride, padding=kernel // 2),
                Block.of(FlattenCaps),
                Block.of(ClassCaps, in_caps=caps * self._grid(), in_dim=dim, out_caps=self.num_classes,
                         out_dim=self.class_dim, iterations=sample["iterations"]))

    @classmethod
    def extra_oneshot_hooks(cls, strategy: Any) -> list[Callable]:
        return capsule_oneshot_hooks(strategy)
