"""The device's generator backends on the committed default bundle: every installed runtime loads it,
checks it, and gives the same output; the stage refines a real rendered frame only where it should."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from device.errors import BadInput
from device.runtime import BACKENDS, DEFAULT_BUNDLE, installed_backends, load_generator, runtime_status
from device.runtime.bundle import Bundle, psnr

RUNTIMES = [name for name, ok in runtime_status().items() if ok]


@pytest.fixture(scope="module")
def bundle():
    return Bundle(DEFAULT_BUNDLE)


def test_default_bundle_is_signed_by_a_trusted_key_and_complete(bundle):
    assert bundle.signer
    assert set(bundle.runtimes) == {"onnxruntime", "openvino", "tflite"}
    for name in bundle.runtimes:
        assert bundle.files(name)


def test_unknown_and_none_backends():
    assert "auto" in BACKENDS
    with pytest.raises(BadInput, match="unknown"):
        load_generator("cuda-magic")
    assert load_generator("none") is None


def test_auto_follows_the_bundle_evaluation(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_ASSETS", str(tmp_path))
    stage = load_generator("auto")
    assert (stage is not None) == bundle.use_by_default


def _reviewed_copy(tmp_path, use_by_default: bool):
    """The default bundle with the given verdict signed in by a key of its own: (path, public key)."""
    from device.runtime.bundle import load_public_key
    from tools.keys import generate, load_private_key, sign_bundle

    copy = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["evaluation"]["beats_warp_only"] = True
    manifest["evaluation"]["visual_review"] = {"use_by_default": use_by_default, "reason": "test"}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    private, public = generate(tmp_path / "key")
    sign_bundle(copy, load_private_key(private))
    return copy, load_public_key(public)


def test_auto_picks_the_runtime_measured_fastest_on_this_device(tmp_path, monkeypatch):
    """The first load times every installed runtime and caches it; later loads follow the cache."""
    from device.runtime import speed_cache_path
    from device.runtime.bundle import Bundle

    monkeypatch.setenv("PORTRAIT_ASSETS", str(tmp_path / "assets"))
    copy, key = _reviewed_copy(tmp_path, True)
    stage = load_generator("auto", bundle=copy, keys=[key])
    cache = json.loads(speed_cache_path().read_text())
    (entry,) = cache.values()
    assert set(entry) == set(installed_backends(Bundle(copy, keys=[key])))
    assert stage.backend.name == min(entry, key=entry.get)
    slowest = max(entry, key=entry.get)
    entry[slowest] = 0.001  # as if it had measured fastest here
    speed_cache_path().write_text(json.dumps(cache))
    assert load_generator("auto", bundle=copy, keys=[key]).backend.name == slowest


@pytest.mark.parametrize("use_by_default", [True, False])
def test_auto_honours_the_signed_visual_review(tmp_path, monkeypatch, use_by_default):
    monkeypatch.setenv("PORTRAIT_ASSETS", str(tmp_path / "assets"))
    copy, key = _reviewed_copy(tmp_path, use_by_default)
    stage = load_generator("auto", bundle=copy, keys=[key])
    assert (stage is not None) == use_by_default


@pytest.mark.parametrize("name", RUNTIMES)
def test_each_installed_backend_passes_the_golden_vectors(name):
    stage = load_generator(name)
    assert stage.golden_psnr >= 35.0
    assert name in installed_backends()


@pytest.mark.parametrize("name", RUNTIMES)
def test_a_backend_shared_by_two_threads_gives_each_its_own_answer(name, bundle):
    """The daemon's jobs and its live stage call one backend at once: each call must get the output
    for its own input, never the other thread's."""
    from concurrent.futures import ThreadPoolExecutor

    backend = load_generator(name).backend
    golden = np.load(bundle.path / "golden.npz")
    inputs = golden["inputs"][:2].astype(np.float32) / 255.0
    alone = [backend.run(x[None]) for x in inputs]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda i: (i % 2, backend.run(inputs[i % 2][None])), range(40)))
    for which, out in together:
        assert np.array_equal(out, alone[which]), (name, which)


def test_all_backends_agree(bundle):
    inputs, _ = bundle.golden()
    outputs = {}
    for name in RUNTIMES:
        backend = load_generator(name).backend
        outputs[name] = np.concatenate([backend.run(x[None]) for x in inputs])
    names = list(outputs)
    for a in names:
        for b in names:
            if a < b:
                assert psnr(outputs[a], outputs[b]) >= 35.0, (a, b)


def test_missing_runtime_is_reported_not_fatal(monkeypatch):
    from device.runtime import backend_class

    monkeypatch.setattr(backend_class("openvino"), "available", classmethod(lambda cls: False))
    assert runtime_status()["openvino"] is False
    assert "openvino" not in installed_backends()
    with pytest.raises(BadInput, match="not installed"):
        load_generator("openvino")


def test_shapes_are_checked_against_the_manifest(tmp_path):
    from device.runtime.bundle import load_public_key
    from tools.keys import generate, load_private_key, sign_bundle

    copy = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["contract"]["inputs"][0]["shape"] = [1, 4, 192, 192]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    key, pub = generate(tmp_path / "k")
    sign_bundle(copy, load_private_key(key))
    with pytest.raises(BadInput, match="does not match"):
        load_generator(RUNTIMES[0], bundle=copy, keys=[load_public_key(pub)])
    with pytest.raises(BadInput, match="signature"):  # and the device's own keys do not trust that signer
        load_generator(RUNTIMES[0], bundle=copy)


@pytest.mark.parametrize("name", RUNTIMES)
def test_the_bundle_contract_runs_on_every_runtime(name, bundle, astronaut, astronaut_face):
    """Each runtime builds the inputs the bundle names and refines only inside the repair mask; a bundle
    that takes the mouth's opening draws the open mouth itself (nothing painted)."""
    from device.face import topology as topo
    from device.motion.params import FaceParams
    from device.render.renderer import Renderer, mouth_interior

    stage = load_generator(name)
    assert stage.input_names == bundle.contract["inputs"][0]["channels"]
    assert stage.owns_mouth == ("mouth_interior" in stage.input_names)
    params = FaceParams(jaw_open=0.8, blink_left=0.9)
    # The same frame the generator is given: painted or not.
    warp_only = Renderer(astronaut, astronaut_face, owns_mouth=stage.owns_mouth)
    refined_renderer = Renderer(astronaut, astronaut_face, generator=stage)
    assert refined_renderer.owns_mouth == stage.owns_mouth
    plain, refined = warp_only.render(params), refined_renderer.render(params)
    assert refined.shape == plain.shape and refined.dtype == np.uint8
    changed = np.abs(refined.astype(int) - plain.astype(int)).max(axis=2) > 2
    targets = warp_only.rig.pose(params)[0]
    mask = warp_only._repair_mask(targets)
    assert changed.any()
    assert not (changed & (mask <= 1.0 / 255)).any()  # nothing changes outside the repair mask
    if stage.owns_mouth:
        opening = mouth_interior(targets, astronaut.shape).astype(bool)
        assert topo.mouth_opening(targets) > 0.2 and opening.sum() > 100
        assert np.abs(refined[opening].astype(int) - plain[opening]).mean() > 5  # the inside is the model's


@pytest.mark.skipif("openvino" not in RUNTIMES, reason="OpenVINO not installed")
def test_openvino_takes_the_inference_precision_from_the_entry(bundle):
    from device.runtime import backend_class

    entry = bundle.runtime("openvino") | {"inference_precision": "f32"}
    backend = backend_class("openvino")(bundle.files("openvino"), entry, bundle.contract)
    import openvino as ov

    assert backend.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32


# -- the registry: each runtime's settings model, from the daemon config to the runtime -----------
def _runtime_threads(backend) -> int | None:
    """The thread count the runtime itself was given (None where it cannot be read back: TFLite)."""
    if backend.name == "onnxruntime":
        return backend.session.get_session_options().intra_op_num_threads
    if backend.name == "openvino":
        return int(backend.compiled.get_property("INFERENCE_NUM_THREADS"))
    return None


def test_every_runtime_registers_a_settings_model_that_forbids_unknown_keys():
    from pydantic import ValidationError

    from device.runtime import RUNTIMES as REGISTERED
    from device.runtime import config_models
    from device.runtime.base import BackendConfig

    assert ("auto", "none", *REGISTERED) == BACKENDS
    models = config_models()
    assert tuple(models) == REGISTERED
    for name, model in models.items():
        assert issubclass(model, BackendConfig), name
        assert model().threads == 2  # today's default, for configs that do not set it
        with pytest.raises(ValidationError, match="extra"):
            model(thraeds=1)


@pytest.mark.parametrize("name", RUNTIMES)
def test_a_per_runtime_setting_reaches_the_runtime(name):
    stage = load_generator(name, options={name: {"threads": 1}, "unused": {"threads": 9}})
    assert stage.backend.config.threads == 1
    assert _runtime_threads(stage.backend) in (1, None)
    # An explicit threads= (the update health check's) wins over the settings.
    assert load_generator(name, options={name: {"threads": 1}}, threads=3).backend.config.threads == 3


@pytest.mark.skipif("openvino" not in RUNTIMES, reason="OpenVINO not installed")
def test_the_openvino_device_setting_reaches_openvino():
    stage = load_generator("openvino", options={"openvino": {"device": "cpu", "threads": 1}})
    assert stage.backend.config.device == "CPU"  # OpenVINO's own spelling
    assert stage.backend.compiled.get_property("EXECUTION_DEVICES") == ["CPU"]


@pytest.mark.skipif("onnxruntime" not in RUNTIMES, reason="ONNX Runtime not installed")
def test_the_onnxruntime_device_setting_picks_the_providers():
    stage = load_generator("onnxruntime", options={"onnxruntime": {"device": "cpu"}})
    assert stage.backend.providers == ["CPUExecutionProvider"]


@pytest.mark.skipif("onnxruntime" not in RUNTIMES, reason="ONNX Runtime not installed")
def test_onnxruntime_threads_do_not_spin_between_calls():
    """Spinning threads would take the cores the warp and the encoder run on between generator calls."""
    options = load_generator("onnxruntime").backend.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_an_unknown_per_runtime_setting_is_refused_naming_it():
    name = RUNTIMES[0]
    with pytest.raises(BadInput, match=rf"generator\.{name}\.thread: unknown key"):
        load_generator(name, options={name: {"thread": 1}})
    with pytest.raises(BadInput, match=rf"generator\.{name}\.threads: .*greater than or equal to 1"):
        load_generator(name, options={name: {"threads": 0}})


@pytest.mark.parametrize("name", RUNTIMES)
def test_the_daemon_config_settings_reach_the_backend(tmp_path, name):
    """[generator.<runtime>] in the config file -> the daemon's generator -> the runtime."""
    from types import SimpleNamespace

    from device.config import ConfigStore
    from device.service.daemon import Daemon

    path = tmp_path / "portrait.toml"
    path.write_text(
        f'[device]\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\nenabled = false\n'
        f'[generator]\nbackend = "{name}"\n[generator.{name}]\nthreads = 1\n'
    )
    daemon = Daemon(ConfigStore(path))
    try:
        daemon.animator = SimpleNamespace(generator=None)
        daemon.apply_model(DEFAULT_BUNDLE, keys=None)
        backend = daemon.animator.generator.backend
        assert backend.name == name and backend.config.threads == 1
        assert _runtime_threads(backend) in (1, None)
    finally:
        daemon.queue.close()
        daemon.outbox.close()
