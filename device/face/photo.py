"""Read any photo a user throws at the appliance into one RGB uint8 array."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from device.errors import BadInput

# A 686 KB PNG can declare 15000x15000 pixels and take 4 GB to decode: the size in the header is
# checked against this before any pixel is decoded. 40 MP holds any phone or camera portrait.
DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 32

Image.MAX_IMAGE_PIXELS = 120_000_000  # Pillow's own net, for code paths that skip check_dimensions


def check_dimensions(image: Image.Image, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse an image whose header declares more pixels than max_pixels (nothing is decoded yet)."""
    width, height = image.size
    if width * height > max_pixels:
        raise BadInput(
            f"{name}: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the limit of "
            f"{max_pixels / 1e6:g} (downscale the photo)"
        )


def image_dimensions(data: bytes, name: str = "photo") -> tuple[int, int]:
    """Width and height from the image header alone; BadInput when it is not a readable image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the caller judges the size
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Image.DecompressionBombError as error:
        raise BadInput(f"{name}: image is too large ({error})") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadInput(f"{name}: not a readable image ({error.__class__.__name__}: {error})") from error


def load_photo(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode JPEG/PNG/WebP/... honouring EXIF rotation; grey, alpha, palette and 16-bit become RGB8."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    if path.is_dir():
        raise BadInput(f"{path}: is a folder, not a photo")
    try:
        with Image.open(path) as image:
            check_dimensions(image, str(path), max_pixels)
            image = ImageOps.exif_transpose(image)
            return to_rgb8(image, str(path))
    except Image.DecompressionBombError as error:
        raise BadInput(f"{path}: image is too large ({error})") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadInput(f"{path}: not a readable image ({error.__class__.__name__}: {error})") from error


def to_rgb8(image: Image.Image, name: str = "photo") -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit integer) grey: scale the used range, not the type's, to 8 bits.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = 1.0 if values.max() <= 1.0 else values.max()
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas go on white, as a viewer would show them.
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = (rgba[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    else:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if rgb.ndim != 3 or min(rgb.shape[:2]) < MIN_SIDE:
        raise BadInput(f"{name}: image is too small ({rgb.shape[1]}x{rgb.shape[0]} px)")
    return np.ascontiguousarray(rgb)
