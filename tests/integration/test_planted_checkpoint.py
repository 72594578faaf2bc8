"""A checkpoint planted in a zoo work directory never runs code, and a work directory someone else could
have planted is refused (issue 16: ``zoo train`` used to unpickle its resume checkpoint).

The planted file is what an attacker would write: a torch/pickle file whose object's ``__reduce__``
creates a marker file when unpickled. The zoo kit's resume path (``deeprobe_bench.zoo.lm``) reads
safetensors only, so loading it must fail without the marker appearing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from deeprobe_bench.api import UserError

lm = pytest.importorskip("deeprobe_bench.zoo.lm")


class Payload:
    """Unpickling this creates ``marker`` (a stand-in for any code an attacker wants run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def tiny_model():
    from transformer_lens import HookedTransformerConfig

    from deeprobe_bench.subject import quiet_hooked_transformer

    cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, n_heads=2, d_vocab=5, act_fn="relu",
                                  d_mlp=16, normalization_type="LN", seed=0)  # fmt: skip
    return quiet_hooked_transformer(cfg)


def plant(path: Path, marker: Path) -> None:
    torch.save({"model": Payload(marker), "step": 10**6}, path)
    assert not marker.exists()


def test_the_payload_does_run_when_unpickled(tmp_path):
    """The control: the planted file is a working exploit for any loader that unpickles."""
    marker = tmp_path / "pwned"
    plant(tmp_path / "evil.pt", marker)
    torch.load(tmp_path / "evil.pt", weights_only=False)  # what tasks/*/train.py used to do
    assert marker.exists()


def test_a_planted_resume_checkpoint_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path / "cache"))
    work = lm.work_dir("planted", {"recipe": "test"})  # the predictable path an attacker would aim at
    marker = tmp_path / "pwned"
    plant(work / lm.CHECKPOINT, marker)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    with pytest.raises(UserError, match="is not a checkpoint of this kit") as info:  # one line, exit 2 in the CLI
        lm.load_checkpoint(work / lm.CHECKPOINT, model, torch.optim.AdamW(model.parameters()))
    assert not marker.exists()
    assert "pwned" not in str(info.value) and "\n" not in str(info.value)

    def batch_at(step: int) -> torch.Tensor:
        return torch.randint(0, 5, (2, 8), generator=torch.Generator().manual_seed(step))

    with pytest.raises(UserError):  # train_lm resumes through load_checkpoint
        lm.train_lm(model, batch_at, lm.Schedule(steps=2, warmup_steps=1), work, checkpoint_every_s=1e9)
    assert not marker.exists()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing was loaded


def test_weights_only_loading_refuses_the_payload_too(tmp_path):
    marker = tmp_path / "pwned"
    plant(tmp_path / "evil.pt", marker)
    with pytest.raises(Exception):  # noqa: B017, PT011 - torch's UnpicklingError
        torch.load(tmp_path / "evil.pt", weights_only=True)
    assert not marker.exists()


def test_work_directories_are_private_and_a_planted_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path / "cache"))
    work = lm.work_dir("mine", {"recipe": "test"})
    assert work.stat().st_mode & 0o777 == 0o700 and work.parent.stat().st_mode & 0o777 == 0o700

    open_dir = tmp_path / "cache" / "zoo-work" / "world-writable"
    open_dir.mkdir(mode=0o777)
    os.chmod(open_dir, 0o777)
    with pytest.raises(PermissionError, match="writable by other users"):
        lm.private_dir(open_dir)

    if os.getuid() != 0:
        pytest.skip("changing a folder's owner needs root")
    theirs = tmp_path / "cache" / "zoo-work" / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 4242, -1)  # planted by another user
    with pytest.raises(PermissionError, match="belongs to another user"):
        lm.private_dir(theirs)
