"""One rule for picking the device (facegan.runtime.device), used by train, generate, evaluate, serve and
bench."""

from __future__ import annotations

import pytest
import torch

from facegan.errors import FaceganError
from facegan.runtime.device import pick_device
from facegan.serve.config import DEVICES as SERVE_DEVICES


def _machine(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(cuda))
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(
    ("cuda", "mps", "train", "serve"),
    [
        (False, False, "cpu", "cpu"),
        (True, True, "cuda", "cuda"),
        (False, True, "mps", "cpu"),  # the server does not run on MPS: auto stays on the CPU there
    ],
)
def test_auto_prefers_cuda_then_mps_then_cpu(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, train: str, serve: str
) -> None:
    _machine(monkeypatch, cuda, mps)
    assert pick_device("auto") == torch.device(train)
    assert pick_device("auto", SERVE_DEVICES) == torch.device(serve)


@pytest.mark.parametrize(
    ("name", "kinds", "cuda", "message"),
    [
        ("tpu", None, False, r"unknown --device 'tpu'; use auto, cpu, cuda, cuda:N, mps$"),
        ("meta", None, False, "--device meta is not supported here"),
        ("mps", SERVE_DEVICES, False, r"--device mps is not supported here; use auto, cpu, cuda, cuda:N$"),
        ("cuda:0", None, False, "no CUDA GPU is available; use --device cpu"),
        ("cuda:1", None, True, "has only 1 CUDA GPU"),
        ("mps", None, False, "MPS is not available; use --device cpu"),
    ],
)
def test_a_device_this_machine_cannot_use_is_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, kinds: tuple[str, ...] | None, cuda: bool, message: str
) -> None:
    _machine(monkeypatch, cuda, mps=False)
    with pytest.raises(FaceganError, match=message) as err:
        pick_device(name) if kinds is None else pick_device(name, kinds)
    assert "\n" not in str(err.value)


def test_named_devices_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, cuda=True, mps=False)
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("cuda:0") == torch.device("cuda:0")
    assert pick_device(torch.device("cpu"), SERVE_DEVICES) == torch.device("cpu")
