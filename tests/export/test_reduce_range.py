"""`--reduce-range auto` decides from the exporting CPU: on only for x86 without VNNI."""

from __future__ import annotations

import platform

import pytest

from export.pipeline import needs_reduce_range

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
AVX512_VNNI = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
AVX_VNNI = "flags\t\t: fpu sse2 avx2 avx_vnni\n"


@pytest.fixture
def x86(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")


def test_x86_without_vnni_needs_it(x86):
    assert needs_reduce_range(AVX2_ONLY) is True


def test_avx512_vnni_does_not(x86):
    assert needs_reduce_range(AVX512_VNNI) is False


def test_avx_vnni_does_not(x86):
    assert needs_reduce_range(AVX_VNNI) is False


def test_arm_never_does(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert needs_reduce_range(AVX2_ONLY) is False
