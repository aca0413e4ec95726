"""`audiosearch eval`: DCASE metrics of a whole model on a caption file, and clear errors for bad data."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CLI, REPO


def subset_csv(shared_data: Path, dest: Path, per_class: int = 3) -> Path:
    """ESC-10 fold 5, a few clips per class, with absolute paths (audio root = /)."""
    with open(shared_data / "esc10" / "captions.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["fold"] == "5"]
    picked, seen = [], {}
    for r in rows:
        if seen.setdefault(r["label"], 0) < per_class:
            seen[r["label"]] += 1
            picked.append({"path": str(shared_data / "esc10" / r["path"]), "caption": r["caption"]})
    with open(dest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "caption"])
        w.writeheader()
        w.writerows(picked)
    return dest


def run_eval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "eval", "--quiet", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_eval_prints_metrics_well_above_chance(shared_data, tmp_path) -> None:
    data = subset_csv(shared_data, tmp_path / "esc.csv")
    r = run_eval("--model", "bridge", "--data", str(data), "--audio-root", "/")
    assert r.returncode == 0, r.stderr
    m = next(iter(json.loads(r.stdout)["results"].values()))
    assert (m["queries"], m["clips"]) == (10, 30)
    assert m["mAP@10"] > m["chance/mAP@10"] + 0.4, m  # 3 of 30 clips relevant per query
    assert 0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "message"),
    [("path,label\nx.ogg,dog\n", "missing column(s) caption"), ("path,caption\nmissing.ogg,dog\n", "missing.ogg")],
)
def test_eval_bad_data_is_one_line(tmp_path, content: str, message: str) -> None:
    (tmp_path / "bad.csv").write_text(content)
    r = run_eval("--data", str(tmp_path / "bad.csv"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert message in r.stderr.strip().splitlines()[-1]
