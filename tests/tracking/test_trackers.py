"""Experiment trackers: `--tracker tensorboard,mlflow,wandb` logs the run to MLflow and W&B as well,
offline, and a resumed run continues the same tracker runs. Each run is read back with the library's
own client (MLflow) or record format (W&B's offline .wandb file, parsed with its protobuf schema)."""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from facegan.cli.main import main
from facegan.errors import FaceganError
from tests.conftest import make_image_folder

TINY = [
    "--size",
    "32",
    "--latent-dim",
    "16",
    "--ngf",
    "8",
    "--ndf",
    "8",
    "--batch-size",
    "16",
    "--device",
    "cpu",
    "--log-every",
    "2",
    "--sample-every",
    "2",
    "--ckpt-every",
    "2",
    "--eval-every",
    "2",
    "--eval-metrics",
    "swd",
    "--eval-num-fake",
    "64",
    "--quiet",
]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A 4-step run with all three trackers, resumed to 6 steps. W&B is not logged in (a fresh HOME,
    no API key, no WANDB_MODE), so it must pick offline mode by itself."""
    from facegan.data.prepare import prepare

    root = tmp_path_factory.mktemp("tracked")
    src = make_image_folder(root / "src", 64, nested=False)
    data = prepare(str(src), root / "data", size=32, quiet=True).out
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "MLFLOW_EXPERIMENT_NAME", "NETRC"):
            mp.delenv(var, raising=False)
        mp.chdir(root)
        argv = [
            "train",
            "--data",
            str(data),
            *TINY,
            "--outdir",
            str(root / "runs"),
            "--tracker",
            "tensorboard,mlflow,wandb",
        ]
        assert main([*argv, "--steps", "4"]) == 0
        (run,) = (root / "runs").iterdir()
        assert main(["train", "--resume", str(run), "--steps", "6", "--quiet"]) == 0
        yield {"root": root, "run": run, "uri": f"sqlite:///{root}/mlflow.db"}


def test_mlflow_holds_params_metrics_and_artifacts_in_one_run(tracked: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracked["uri"])
    exp = client.get_experiment_by_name("facegan")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, "the resume must continue the MLflow run, not start a second one"
    run = runs[0]
    state = json.loads((tracked["run"] / "trackers.json").read_text())
    assert state["mlflow"]["run_id"] == run.info.run_id
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model.size"] == "32" and params["model.latent_dim"] == "16"
    assert params["train.tracker"] == "tensorboard,mlflow,wandb" and params["preset"] == "dcgan"
    assert run.data.tags["resumed.train.steps"] == "6"  # a changed resumable setting, as a tag
    stats = [json.loads(line) for line in (tracked["run"] / "stats.jsonl").read_text().splitlines()]
    history = client.get_metric_history(run.info.run_id, "loss_d")
    assert [m.step for m in history] == [2, 4, 6]
    assert [m.value for m in history] == pytest.approx([r["loss_d"] for r in stats])
    evals = client.get_metric_history(run.info.run_id, "eval/swd")
    assert [m.step for m in evals] == [2, 4, 6]
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "samples", "generator"} <= artifacts
    samples = {f.path for f in client.list_artifacts(run.info.run_id, "samples")}
    assert samples == {f"samples/step-{s:08d}.png" for s in (2, 4, 6)}
    local = client.download_artifacts(
        run.info.run_id, "generator/generator.safetensors", str(tracked["root"] / "dl")
    )
    assert Path(local).read_bytes() == (tracked["run"] / "generator.safetensors").read_bytes()


# W&B's offline file is a LevelDB-style log of protobuf records (wandb_internal_pb2.Record). This wandb
# has no Python reader for it (its core is Go, and wandb.Api needs the network), so the test reads the
# framing here (32 KiB blocks of [masked crc32c:4][length:2][type:1] chunks after a 7-byte file header)
# and leaves the record contents to wandb's own protobuf schema.
_BLOCK, _HEADER = 32768, 7


def wandb_records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, records, parts = _HEADER, [], b""
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # a block's tail too short for a chunk header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0 and length == 0:  # zero padding
            pos += _BLOCK - pos % _BLOCK
            continue
        parts += data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def test_wandb_runs_offline_and_the_resume_continues_the_same_run(tracked: dict[str, Any]) -> None:
    run_dir = tracked["run"]
    state = json.loads((run_dir / "trackers.json").read_text())
    run_id = state["wandb"]["id"]
    sessions = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(sessions) == 2, "one offline folder per training session"
    assert all(s.name.endswith(f"-{run_id}") for s in sessions), "both sessions must be the same W&B run"
    history: dict[int, dict[str, Any]] = {}
    config: dict[str, Any] = {}
    artifacts, images = [], []
    for session in sessions:
        for record in wandb_records(session / f"run-{run_id}.wandb"):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                row: dict[str, Any] = {}
                for item in record.history.item:  # an image is a nested key: its fields one by one
                    key, *sub = [item.key] if item.key else list(item.nested_key)
                    value = json.loads(item.value_json)
                    row.setdefault(key, {}).update({sub[0]: value}) if sub else row.update({key: value})
                history.setdefault(int(row["step"]), {}).update(row)
                images += [session / "files" / v["path"] for v in row.values() if isinstance(v, dict)]
            elif kind == "run":
                assert record.run.run_id == run_id
                config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
            elif kind == "config":
                config.update({item.key: json.loads(item.value_json) for item in record.config.update})
            elif kind == "artifact":
                artifacts.append(record.artifact)
    stats = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert sorted(history) == [2, 4, 6]
    assert [history[s]["loss_d"] for s in (2, 4, 6)] == pytest.approx([r["loss_d"] for r in stats])
    assert all("eval/swd" in history[s] and "samples/fixed_noise" in history[s] for s in (2, 4, 6))
    assert len(images) == 3 and all(p.is_file() for p in images), images  # the sample grids themselves
    assert config["model"]["size"] == 32 and config["train"]["steps"] == 6  # the resume's length
    assert any(a.type == "model" and a.name == f"generator-{run_id}" for a in artifacts)


def test_tensorboard_is_still_written(tracked: dict[str, Any]) -> None:
    assert list((tracked["run"] / "tensorboard").glob("events.out.tfevents.*"))


def test_missing_tracker_package_is_one_line_before_a_run_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed: find_spec gives None
    rc = main(
        [
            "train",
            "--synthetic-count",
            "16",
            "--size",
            "32",
            "--batch-size",
            "8",
            "--steps",
            "1",
            "--device",
            "cpu",
            "--tracker",
            "mlflow",
            "--outdir",
            str(tmp_path / "runs"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "pip install 'facegan[mlflow]'" in err
    assert not (tmp_path / "runs").exists(), "nothing is written for a run that cannot log"


@pytest.mark.parametrize(
    "spec,match",
    [
        ("tensorboard,foo", "unknown tracker 'foo'; choose from: tensorboard, mlflow, wandb"),
        ("mlflow,mlflow", "--tracker must be a comma list of distinct trackers"),
    ],
)
def test_bad_tracker_list_is_refused(spec: str, match: str) -> None:
    """A repeated name is the config's mistake; an unregistered one is refused by the tracker registry
    before a run writes anything (facegan.training.registered)."""
    from facegan.config.schema import RunConfig, TrainConfig
    from facegan.training.registered import check_registered

    with pytest.raises(FaceganError, match=match):
        check_registered(RunConfig(train=TrainConfig(tracker=spec)))


def test_tracker_none_writes_stats_only(tmp_path: Path) -> None:
    from facegan.config.schema import RunConfig, TrainConfig
    from facegan.tracking.runs import RunLogger

    cfg = RunConfig(train=TrainConfig(tracker="none"))
    logger = RunLogger(tmp_path, cfg=cfg)
    logger.log({"step": 1, "loss_d": 0.5})
    logger.close()
    assert not (tmp_path / "tensorboard").exists()
    assert json.loads((tmp_path / "stats.jsonl").read_text())["loss_d"] == 0.5


def test_a_failing_tracker_is_dropped_with_a_warning_and_the_run_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from facegan.tracking.runs import RunLogger

    class Broken:
        calls = 0

        def scalars(self, values: dict[str, float], step: int) -> None:
            Broken.calls += 1
            raise ConnectionError("tracking server went away")

        def close(self) -> None:
            pass

    logger = RunLogger(tmp_path)
    logger.trackers = [Broken()]  # type: ignore[list-item]
    logger.log({"step": 1, "loss_d": 0.5})
    logger.log({"step": 2, "loss_d": 0.4})
    logger.close()
    assert Broken.calls == 1
    assert "tracking server went away" in capsys.readouterr().err
    assert len((tmp_path / "stats.jsonl").read_text().splitlines()) == 2
