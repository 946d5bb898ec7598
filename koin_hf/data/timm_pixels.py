"""The pixels of a timm model's eval transform, made with PIL and numpy alone.

`TimmWrapperImageProcessor` (the processor of koin-hf's default model, Lite0, and of every timm
checkpoint) runs timm's eval transform image by image: torchvision's Resize and CenterCrop on the
PIL image, then ToTensor and Normalize as torch ops, then a torch.stack. `TimmEvalPixels` runs
the same Resize and CenterCrop objects, and does ToTensor + Normalize in numpy with the same
float32 operations in the same order (x / 255, then (x - mean) / std), so the result is bit for
bit the processor's (tested on prepared photos of several sizes).

Why: no torch op runs here. `koin evaluate` can therefore prepare the next batch on a second
thread while the model runs the current one, without touching torch's intra-op thread pool (the
processor's own torch ops would compete with the forward for it, and `one_torch_thread` changes
a process-wide setting). Only the exact transform shape below is recognised; anything else
keeps the processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

# The transform steps recognised, by class name: timm builds them from torchvision's classes.
_RESIZE, _CROP, _TO_TENSOR, _NORMALIZE = (
    "Resize",
    "CenterCrop",
    ("ToTensor", "MaybeToTensor"),
    "Normalize",
)


class TimmEvalPixels:
    """`processor(images=rgb_images)["pixel_values"]`, as a float32 numpy array (n, 3, h, w)."""

    def __init__(self, resize: Any, crop: Any, mean: Sequence[float], std: Sequence[float]):
        self.resize = resize
        self.crop = crop
        self.mean = np.asarray(mean, np.float32)  # per channel, last axis (HWC)
        self.std = np.asarray(std, np.float32)

    @classmethod
    def for_processor(cls, processor: Any) -> TimmEvalPixels | None:
        """The fast path for a processor whose eval transform is exactly Resize (shorter side),
        CenterCrop, ToTensor, Normalize over 3 channels; None for any other processor."""
        steps = getattr(getattr(processor, "val_transforms", None), "transforms", None)
        if not isinstance(steps, (list, tuple)) or len(steps) != 4:
            return None
        resize, crop, to_tensor, normalize = steps
        names = [type(step).__name__ for step in steps]
        if (
            names[0] != _RESIZE
            or names[1] != _CROP
            or names[2] not in _TO_TENSOR
            or names[3] != _NORMALIZE
            or getattr(resize, "max_size", None) is not None
            or getattr(normalize, "inplace", False)
        ):
            return None
        mean = [float(v) for v in np.asarray(normalize.mean, np.float64).reshape(-1)]
        std = [float(v) for v in np.asarray(normalize.std, np.float64).reshape(-1)]
        if len(mean) != 3 or len(std) != 3:
            return None
        return cls(resize, crop, mean, std)

    def one(self, image: Image.Image) -> np.ndarray:
        """(3, h, w) float32 for one RGB PIL image."""
        cropped = self.crop(self.resize(image))  # torchvision on a PIL image: PIL operations
        # In place and in the image's own (h, w, 3) layout: one contiguous pass per operation;
        # element by element the same float32 arithmetic as torch's on (3, h, w).
        pixels = np.asarray(cropped.convert("RGB"), np.uint8).astype(np.float32)
        pixels /= np.float32(255)
        pixels -= self.mean
        pixels /= self.std
        return pixels.transpose(2, 0, 1)

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([self.one(image) for image in images])
