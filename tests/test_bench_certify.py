"""``make bench``'s PatchCleanser comparison and calibration line (benchmarks/bench_certify.py,
benchmarks/calibrate.py, benchmarks/report.py): options checked before any work, the device flag
on a machine without CUDA, a whole run on a stand-in model, and the calibration written to the CSV and
read back into the report's line."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import needs_fmnist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_certify  # noqa: E402
import calibrate  # noqa: E402
import report  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def exits_with(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        bench_certify.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv,message", [
    (["--sizes", "6,x"], "--sizes must be integers"),
    (["--sizes", "64"], "--sizes must be in 1..63"),
    (["--n", "0"], "--n must be >= 1"),
    (["--ref-batch", "0"], "--ref-batch must be >= 1"),
    (["--device", "tpu"], "--device must be auto, cpu or cuda"),
])
def test_bad_options_are_one_error_line_before_any_work(capsys, tmp_path, argv, message):
    exits_with(capsys, [*argv, "--results", str(tmp_path), "--csv", str(tmp_path / "out.csv")], message)
    assert not (tmp_path / "out.csv").exists()


def test_device_cuda_without_cuda_is_an_error_and_auto_falls_back_to_the_cpu(capsys, tmp_path, monkeypatch):
    """The GPU path's flag, on any machine: CUDA made unavailable, ``cuda`` is refused in one line and
    ``auto`` is the CPU (on a CUDA machine ``auto`` is the GPU: the same code with another device)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    exits_with(capsys, ["--device", "cuda", "--results", str(tmp_path)], "device cuda requested but CUDA is not available")
    exits_with(capsys, ["--device", "cuda:1", "--results", str(tmp_path)], "device cuda:1 requested")
    assert bench_certify.device_of("auto") == torch.device("cpu")
    assert bench_certify.device_of("cpu") == torch.device("cpu")


def stand_in_demo_model(results: Path) -> None:
    """A random-init small_vgg cached where the demo preset's trained one goes (the cost does not depend on the weights)."""
    from patchbench.cache.models import fresh_model, model_path
    from patchbench.presets import load_preset
    from patchbench.store.results import ResultStore

    preset = load_preset(bench_certify.PRESET)
    path = model_path(preset, ResultStore(results))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fresh_model(preset, torch.device("cpu")).state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps({"arch": "small_vgg", "stand_in": True}))


@needs_fmnist
def test_missing_demo_model_names_the_command_that_trains_it(capsys, tmp_path):
    exits_with(capsys, ["--results", str(tmp_path), "--device", "cpu"], "patchbench train-model --preset demo-fmnist")


@needs_fmnist
def test_a_whole_run_on_a_stand_in_model_writes_one_checked_row_per_size(tmp_path, capsys):
    stand_in_demo_model(tmp_path)
    out = tmp_path / "certify.csv"
    bench_certify.main(["--results", str(tmp_path), "--n", "3", "--k", "2", "--sizes", "14,20", "--repeat", "2",
                        "--device", "auto", "--threads", "1", "--csv", str(out)])
    df = pd.read_csv(out)
    assert list(df["task"]) == [f"PatchCleanser certification, {p} px patch, k = 2" for p in (14, 20)]
    assert (df["suite"] == "certify").all() and (df["device"] == "cpu").all() and (df["goal"] == 10).all()
    assert df["note"].str.contains("identical certificates and predictions on all 3 images").all()
    assert (df["patchbench_s"] > 0).all() and (df["peer_s"] > 0).all() and df["meets_goal"].notna().all()
    assert "reference 10)" in df["note"].iloc[0]  # k = 2: 4 masks, 4·5/2 two-mask images per image


def test_calibration_rows_round_trip_into_the_reports_line(tmp_path, monkeypatch, capsys):
    """A real (shrunk) calibration run: its two rows in the CSV, and report.py prints its line first and
    puts it under the markdown's header, outside the comparison table."""
    monkeypatch.setattr(calibrate, "MATMUL_N", 128)
    monkeypatch.setattr(calibrate, "EPOCH_IMAGES", 64)
    monkeypatch.setattr(calibrate, "EPOCH_BATCH", 32)
    cal_csv = tmp_path / "calibration.csv"
    monkeypatch.setattr(sys, "argv", ["calibrate.py", "--threads", "1", "--csv", str(cal_csv)])
    calibrate.main()
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("calibration: matmul 128² fp32 ") and "small_vgg epoch (64 synthetic 64 px images" in printed
    rows = pd.read_csv(cal_csv)
    assert list(rows["suite"]) == ["calibration"] * 2 and (rows["patchbench_s"] > 0).all()
    c = calibrate.from_rows(rows)
    assert c["threads"] == 1 and c["epoch_s"] == rows["patchbench_s"].iloc[1]
    other = pd.DataFrame([{"suite": "certify", "task": "t", "workload": "w", "patchbench_s": 1.0, "peer": "p",
                           "peer_s": 12.0, "speedup": 12.0, "goal": 10.0, "meets_goal": True, "note": "", "device": "cpu",
                           "threads": 1}])
    other.to_csv(tmp_path / "other.csv", index=False)
    md = tmp_path / "bench.md"
    monkeypatch.setattr(sys, "argv", ["report.py", str(cal_csv), str(tmp_path / "other.csv"), "--md", str(md),
                                      "--csv", str(tmp_path / "bench.csv")])
    report.main()
    first = capsys.readouterr().out.splitlines()[0]
    assert first == calibrate.line(c)
    text = md.read_text().splitlines()
    assert text[2] == first and sum(line.startswith("| t |") for line in text) == 1
    assert not any(line.startswith("| calibration") for line in text)
    assert len(pd.read_csv(tmp_path / "bench.csv")) == 3  # the calibration rows stay in the joined CSV
