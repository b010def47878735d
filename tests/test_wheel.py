"""The wheel as a kiosk integrator installs it: built from this checkout, installed into a fresh virtual
environment (not the editable checkout) and run from a folder outside the repository. `portrait animate`
renders a clip that decodes, with the warp and with the generator of the signed default bundle the wheel
carries; `portrait serve --check-config` checks a config; `portrait fleet` answers. Offline: the
dependencies are the ones already installed here, the face models those `portrait setup` installed.

The installed commands run with decoy top-level `tools`, `models` and `export` packages first on the
path, as another distribution could install them: the `portrait` command must import none of them.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
GENERIC = ("tools", "models", "export")


def run(*command: str | Path, timeout: float = 120, **options) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, **options)
    assert done.returncode == 0, f"{' '.join(map(str, command))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def source_copy(dest: Path) -> Path:
    """The checkout's files (tracked, and new ones git does not ignore), copied: setuptools writes build/
    and *.egg-info beside the sources it builds, and this checkout may be in use."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    if listed.returncode != 0:  # not a git checkout (an unpacked sdist): everything but the usual build litter
        shutil.copytree(
            ROOT,
            dest,
            ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"),
        )
        return dest
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():  # listed but deleted in the working tree: left out, as a build would
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def frames_of(path: Path) -> tuple[int, tuple[int, int], float]:
    """Decoded video frames, their size, and seconds of decoded audio."""
    with av.open(str(path)) as container:
        assert container.streams.audio, f"{path}: no audio track"
        count, size = 0, (0, 0)
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="rgb24")
            assert image.std() > 5  # a picture, not a blank frame
            count, size = count + 1, image.shape[:2]
    with av.open(str(path)) as container:
        audio = sum(f.samples / f.sample_rate for f in container.decode(audio=0))
    return count, size, audio


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Built without isolation (offline): with this venv's setuptools, which must meet [build-system].
    setuptools = int(importlib.metadata.version("setuptools").split(".")[0])
    assert setuptools >= 77, f"setuptools {setuptools} cannot build this project (needs 77): pip install -U setuptools"
    env = {k: v for k, v in os.environ.items() if k not in ("PORTRAIT_BUNDLE", "PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", OPENBLAS_NUM_THREADS="1")
    started = time.perf_counter()

    # Build.
    source, dist = source_copy(tmp_path / "src"), tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation", "-q", "-w", dist, env=env)
    (wheel,) = dist.glob("talking_portrait-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    built = time.perf_counter()
    keys = sorted(p.name for p in (ROOT / "device" / "runtime" / "keys").glob("*.pub"))
    assert keys and {f"device/runtime/keys/{k}" for k in keys} <= names
    assert {
        "device/runtime/bundles/default/manifest.json",
        "device/runtime/bundles/default/signature.json",
        "device/fleet.py",
    } <= names
    assert not any(n.startswith(("tests/", "models/checkpoints/")) for n in names)

    # Install into a fresh venv without pip; its dependencies are this venv's, appended after its own
    # site-packages by a .pth line (so the editable install of the checkout there is not activated).
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, env=env)
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "-q", wheel, env=env)
    site = venv / "lib" / PY / "site-packages"
    (site / "zz-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = time.perf_counter()

    package = site / "device"
    assert sorted(p.name for p in (package / "runtime" / "keys").glob("*.pub")) == keys
    manifest = json.loads((package / "runtime" / "bundles" / "default" / "manifest.json").read_text())
    for runtime in manifest["runtimes"].values():
        for entry in runtime["files"]:
            assert (package / "runtime" / "bundles" / "default" / entry["path"]).is_file(), entry["path"]

    # Run it from elsewhere, with decoys of the generic top-level names ahead of everything.
    decoys, elsewhere = tmp_path / "decoys", tmp_path / "elsewhere"
    for name in GENERIC:
        (decoys / name).mkdir(parents=True)
        (decoys / name / "__init__.py").write_text(f"raise ImportError('the portrait command imported {name}')\n")
    elsewhere.mkdir()
    env["PYTHONPATH"] = str(decoys)
    portrait = venv / "bin" / "portrait"
    where = run(
        venv / "bin" / "python",
        "-c",
        "import device.runtime as r; print(r.__file__, r.DEFAULT_BUNDLE)",
        cwd=elsewhere,
        env=env,
    ).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where
    decoyed = subprocess.run(
        [venv / "bin" / "python", "-c", "import tools"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "the portrait command imported tools" in decoyed.stderr  # the decoys are in effect

    run(
        portrait,
        "animate",
        "--text",
        "Hello",
        "--size",
        "128",
        "--backend",
        "none",
        "--out",
        "clip.mp4",
        cwd=elsewhere,
        env=env,
    )
    rendered = time.perf_counter()
    count, size, audio = frames_of(elsewhere / "clip.mp4")
    assert count >= 10 and max(size) == 128 and audio > 0.2, (count, size, audio)

    # The generator of the packaged bundle: its signature checked against the packaged keys.
    summary = json.loads(
        run(
            portrait,
            "animate",
            "--text",
            "Hi",
            "--size",
            "128",
            "--backend",
            "tflite",
            "--out",
            "generator.mp4",
            "--json",
            cwd=elsewhere,
            env=env,
        ).stdout
    )
    assert summary["generator"] and "tflite" in json.dumps(summary["generator"]), summary["generator"]
    assert frames_of(elsewhere / "generator.mp4")[0] == summary["frames"]

    photo = elsewhere / "portrait.png"
    Image.fromarray(np.ascontiguousarray(data.astronaut())).save(photo)
    config = elsewhere / "portrait.toml"
    config.write_text(
        f'mode = "portrait"\n[device]\nid = "wheel-kiosk"\nstate_dir = "{elsewhere / "state"}"\n'
        f'[mqtt]\nenabled = false\n[portrait]\nphoto = "{photo}"\n'
    )
    assert "OK" in run(portrait, "serve", "--config", config, "--check-config", cwd=elsewhere, env=env).stdout
    config.write_text(config.read_text() + "[jobs]\nqueue_sise = 3\n")
    bad = subprocess.run(
        [portrait, "serve", "--config", config, "--check-config"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "queue_sise" in bad.stderr, bad.stderr
    assert run(portrait, "fleet", "--help", cwd=elsewhere, env=env).stdout.startswith("usage: portrait fleet")

    with capsys.disabled():
        print(
            f"\nwheel {wheel.name}: {len(names)} files, {wheel.stat().st_size / 1e6:.2f} MB; build "
            f"{built - started:.1f} s, install {installed - built:.1f} s, render {rendered - installed:.1f} s: "
            f"build-install-render {rendered - started:.1f} s"
        )
