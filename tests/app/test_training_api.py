"""Training over HTTP (real uvicorn, real spawned job processes, real audio) and the `train` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from audiosearch.app.jobs import JobManager
from audiosearch.app.main import create_app
from audiosearch.app.settings import Settings
from audiosearch.training.run_config import MAX_EPOCHS
from tests.app.live import live_server
from tests.conftest import CLI, REPO, copy_clips

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def roots(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data root with 4 real clips and a caption CSV; an empty jobs dir."""
    base = tmp_path_factory.mktemp("training_api")
    data = base / "data"
    clips = copy_clips(shared_data, data / "lib", {"dog_bark": 2, "rooster": 2})
    captions = {"dog_bark": "a dog barks", "rooster": "a rooster crows"}
    lines = [f"{p.relative_to(data).as_posix()},{captions[p.parent.name]}" for p in clips]
    (data / "captions.csv").write_text("path,caption\n" + "\n".join(lines) + "\n")
    (data / "escape.csv").symlink_to(shared_data / "animals_cc0" / "captions.csv")
    return data, base / "jobs"


@pytest.fixture(scope="module")
def server(roots: tuple[Path, Path], lite_model) -> str:
    data, jobs = roots
    settings = Settings(index_dir=jobs.parent / "no-index", admin_token=TOKEN, jobs_dir=jobs, train_data_root=data)
    with live_server(create_app(settings, model=lite_model)) as url:
        yield url


@pytest.fixture()
def client(server: str) -> httpx.Client:
    with httpx.Client(base_url=server, timeout=60, headers=AUTH) as c:
        yield c


def config(epochs: int = 2, **top: Any) -> dict[str, Any]:
    stage = {
        "name": "only",
        "data": [{"csv": "captions.csv"}],
        "val": [{"csv": "captions.csv"}],
        "epochs": epochs,
        "batch_size": 2,
        "lr": 1e-3,
    }
    return {"model": "lite", "stages": [stage], **top}


def wait_for(client: httpx.Client, job_id: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get(f"/train/{job_id}").json()
        if status["state"] in states:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {states}: {status}")


def test_admin_token_is_required(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as anon:
        assert anon.post("/train", json=config()).status_code == 401
        r = anon.get("/train", headers={"Authorization": "Bearer wrong-token-0123456789"})
        assert r.status_code == 401 and r.json()["detail"] == "missing or wrong bearer token"
        assert anon.post("/eval", json={"model": "lite", "data": []}).status_code == 401


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (
            {"stages": [{"name": "s", "data": [{"csv": "../jobs/x.csv"}]}]},
            "stages[0].data[0].csv: ../jobs/x.csv is outside the allowed data folder",
        ),
        ({"stages": [{"name": "s", "data": [{"csv": "escape.csv"}]}]}, "outside the allowed data folder"),
        ({"output": "../../elsewhere"}, "../../elsewhere is outside the allowed output folder"),
        ({"model": "/etc"}, "model: /etc is outside the allowed data and output folders"),
        ({"epochs": 3}, "config: unknown key(s) ['epochs']"),
        (
            {"stages": [{"name": "s", "data": [{"csv": "captions.csv"}], "frozen": {"audio": "no"}}]},
            "stages[0].frozen.audio: must be true or false",
        ),
    ],
)
def test_bad_configs_are_422_with_the_field(client: httpx.Client, change: dict[str, Any], detail: str) -> None:
    r = client.post("/train", json={**config(), **change})
    assert r.status_code == 422 and detail in r.json()["detail"], r.json()


@pytest.mark.slow
def test_a_job_runs_in_a_child_process_to_the_end(client: httpx.Client, roots: tuple[Path, Path]) -> None:
    r = client.post("/train", json=config(epochs=2))
    assert r.status_code == 202
    job_id = r.json()["id"]
    status = wait_for(client, job_id, {"finished", "failed"})
    assert status["state"] == "finished", status
    assert status["pid"] != os.getpid() and status["stage"] == "only" and status["epoch"] == status["epochs"] == 2
    assert status["loss"] > 0 and "data/mAP@10" in status["metrics"]
    model = Path(status["model"])
    assert model == roots[1] / job_id / "run" / "model" and (model / "config.json").is_file()
    assert job_id in [j["id"] for j in client.get("/train").json()]
    # the trained model evaluates through /eval (jobs' outputs are readable models)
    r = client.post("/eval", json={"model": str(model), "data": [{"csv": "captions.csv"}]})
    assert r.status_code == 200 and 0 < r.json()["results"]["captions.csv"]["mAP@10"] <= 1


@pytest.mark.slow
def test_cancel_stops_a_running_job(client: httpx.Client, server: str) -> None:
    job_id = client.post("/train", json=config(epochs=MAX_EPOCHS)).json()["id"]  # the longest run a client may ask for
    running = wait_for(client, job_id, {"running"})
    assert client.get("/healthz").status_code in (200, 503)  # the service answers while the job trains
    r = client.delete(f"/train/{job_id}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(running["pid"], 0)
    assert client.delete(f"/train/{job_id}").json()["state"] == "cancelled"  # idempotent
    assert client.get("/train/nosuchjob").status_code == 404
    assert client.delete("/train/nosuchjob").json()["detail"] == "no training job 'nosuchjob'"


def test_eval_reports_metrics_and_checks_paths(client: httpx.Client) -> None:
    r = client.post("/eval", json={"model": "lite", "data": [{"csv": "captions.csv"}]})
    assert r.status_code == 200
    metrics = r.json()["results"]["captions.csv"]
    assert metrics["queries"] == 2 and metrics["clips"] == 4 and 0 < metrics["mAP@10"] <= 1
    r = client.post("/eval", json={"model": "lite", "data": [{"csv": "../x.csv"}]})
    assert r.status_code == 422 and "outside the allowed data folder" in r.json()["detail"]


def test_restart_marks_orphaned_jobs_interrupted(roots: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = roots
    jobs = tmp_path / "jobs"
    (jobs / "abc123").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (jobs / "abc123" / "status.json").write_text(
        json.dumps({"id": "abc123", "state": "running", "pid": int(dead.stdout), "created": 1.0})
    )
    status = JobManager(jobs, data).status("abc123")
    assert status["state"] == "interrupted" and "checkpoints remain" in status["error"]


def test_routes_are_off_without_a_data_root(lite_model, tmp_path: Path) -> None:
    app = create_app(
        Settings(index_dir=tmp_path / "none", admin_token=TOKEN, jobs_dir=tmp_path / "jobs"), model=lite_model
    )
    with live_server(app) as url, httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
        r = c.get("/train")
        assert r.status_code == 403 and "AUDIOSEARCH_TRAIN_DATA_ROOT" in r.json()["detail"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_trains_and_reports_bad_configs(roots: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = roots
    good = {**config(epochs=1), "output": str(tmp_path / "out")}
    good["stages"][0]["data"] = good["stages"][0]["val"] = [{"csv": str(data / "captions.csv")}]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(good))
    r = cli("train", str(tmp_path / "run.yaml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"saved the model to {tmp_path / 'out' / 'model'}"
    assert "stage only epoch 1/1: loss=" in r.stderr and "data/mAP@10=" in r.stderr
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**good, "stages": [{**good["stages"][0], "lr": 0}]}))
    r = cli("train", str(tmp_path / "bad.yaml"))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"audiosearch: error: {tmp_path / 'bad.yaml'}: stages[0].lr: must be a positive number, got 0"
    ]


def test_one_training_job_at_a_time_then_429(client: httpx.Client) -> None:
    first = client.post("/train", json=config(epochs=MAX_EPOCHS)).json()["id"]
    try:
        jobs = [j["id"] for j in client.get("/train").json()]
        r = client.post("/train", json=config(epochs=1))
        assert r.status_code == 429 and r.headers["Retry-After"] == "60", r.text
        assert "1 training job(s) running, the limit is 1" in r.json()["detail"]
        assert [j["id"] for j in client.get("/train").json()] == jobs  # the refused one left nothing behind
    finally:
        assert client.delete(f"/train/{first}").json()["state"] == "cancelled"
    second = client.post("/train", json=config(epochs=MAX_EPOCHS))
    assert second.status_code == 202
    assert client.delete(f"/train/{second.json()['id']}").json()["state"] == "cancelled"


def test_eval_refuses_sets_larger_than_the_cap(roots: tuple[Path, Path], lite_model) -> None:
    data, jobs = roots
    settings = Settings(
        index_dir=jobs.parent / "no-index", admin_token=TOKEN, jobs_dir=jobs, train_data_root=data, max_eval_clips=3
    )
    with live_server(create_app(settings, model=lite_model)) as url:
        r = httpx.post(f"{url}/eval", json={"model": "lite", "data": [{"csv": "captions.csv"}]}, headers=AUTH)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("4 clips to evaluate; the service evaluates at most 3")


def test_eval_rows_leaving_the_data_root_say_the_same_whether_the_file_exists(
    roots: tuple[Path, Path], client: httpx.Client
) -> None:
    data, _ = roots
    details = []
    for target in ("../../../../../../etc/passwd", "../../../../../../etc/no-such-file"):
        (data / "probe.csv").write_text(f"path,caption\n{target},x\n")
        r = client.post("/eval", json={"model": "lite", "data": [{"csv": "probe.csv"}]})
        assert r.status_code == 422
        details.append(r.json()["detail"].replace("no-such-file", "passwd"))
    assert details[0] == details[1] and "outside the allowed data folder" in details[0]
