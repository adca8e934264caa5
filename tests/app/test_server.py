"""cldyn serve's HTTP layer, in-process through FastAPI's test client."""

import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import torch

pytest.importorskip("fastapi", reason="the app extra (pip install 'cldyn[app]') is not installed")
from fastapi.testclient import TestClient  # noqa: E402 (after the skip)

from cldyn.app.backend import AppConfig  # noqa: E402
from cldyn.app.server import create_app  # noqa: E402
from cldyn.model.vfn import VFN  # noqa: E402
from cldyn.weights import save_vfn  # noqa: E402


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(AppConfig(max_upload_bytes=2 * 2**20)))


def _files(pairs_dir, name):
    return {"ir": (name + ".png", (pairs_dir / "ir" / f"{name}.png").read_bytes(), "image/png"),
            "vis": (name + ".png", (pairs_dir / "vi" / f"{name}.png").read_bytes(), "image/png")}


def test_page_and_demo_list(client):
    page = client.get("/")
    assert page.status_code == 200 and '<form id="form">' in page.text and "http" not in page.text.split("<body>")[1]
    demo = client.get("/api/demo").json()
    assert [p["name"] for p in demo["pairs"]] == ["msrs_00854N", "msrs_01506D", "roadscene_FLIR_04514"]
    from cldyn.weights import shipped_networks

    assert demo["tasks"] == ["none", *shipped_networks()] and demo["strength"] == 0.5


def test_upload_a_pair_with_a_task(client, pairs_dir):
    r = client.post("/api/fuse", data={"task": "saliency"}, files=_files(pairs_dir, "msrs_00004N_crop"))
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["task"] == "saliency" and d["size"] == [96, 72] and "cldyn" in d["images"]
    assert d["names"] == {"infrared": "msrs_00004N_crop.png", "visible": "msrs_00004N_crop.png"}
    pair = _files(pairs_dir, "msrs_00004N_crop")
    r = client.post("/api/fuse", data={"task": "saliency", "strength": "auto"}, files=pair)
    assert r.status_code == 200 and r.json()["strength"] == "auto", r.text
    r = client.post("/api/fuse", data={"task": "saliency", "strength": "lots"}, files=pair)
    assert r.status_code == 400 and "--strength must be in [0, 1]" in r.json()["error"]


def test_errors_are_one_line_json(client, pairs_dir):
    files = _files(pairs_dir, "msrs_00004N_crop")
    files["vis"] = ("notes.txt", b"not an image", "text/plain")
    r = client.post("/api/fuse", data={"task": "none"}, files=files)
    assert r.status_code == 400 and r.json()["error"].startswith("notes.txt: ") and "\n" not in r.json()["error"]
    r = client.post("/api/fuse", data={"task": "none"})
    assert r.status_code == 400 and r.json()["error"] == "give an infrared and a visible image, or pick a demo pair"
    r = client.post("/api/fuse", data={"demo": "nope"})
    assert r.status_code == 400 and "no demo pair named 'nope'" in r.json()["error"]
    files["vis"] = ("big.png", b"\x89PNG" + b"0" * (2 * 2**20 + 10), "image/png")
    r = client.post("/api/fuse", data={"task": "none"}, files=files)
    assert r.status_code == 400 and "big.png: 2.0 MB is over the upload limit of 2 MB" in r.json()["error"]
    r = client.post("/api/fuse", content=b"x" * (11 * 2**20 + 1), headers={"content-type": "multipart/form-data"})
    assert r.status_code == 413 and "over the limit" in r.json()["error"]


def test_requests_at_once_keep_their_own_results(client, pairs_dir):
    jobs = [("msrs_00004N_crop", "saliency"), ("roadscene_FLIR_00006_crop", "none"), ("msrs_00004N_crop", "none"),
            ("roadscene_FLIR_00006_crop", "saliency")]
    alone = [client.post("/api/fuse", data={"task": t}, files=_files(pairs_dir, n)).json() for n, t in jobs]
    together: list = [None] * len(jobs)

    def post(i, name, task):
        together[i] = client.post("/api/fuse", data={"task": task}, files=_files(pairs_dir, name)).json()

    threads = [threading.Thread(target=post, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        assert a["downloads"] == b["downloads"] and a["metrics"] == b["metrics"]


def test_the_command_starts_the_page_on_localhost(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "cldyn.cli", "serve", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"cldyn serve: http://127.0.0.1:{port}/ (local only;"), line
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200 and "cldyn: task-customised fusion" in r.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("the page did not answer")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_own_weights_files(client, pairs_dir, tmp_path):
    """A user's VFN weights are used (here: another VFN than the shipped one), and a broken file is one line."""
    torch.manual_seed(0)
    save_vfn(tmp_path / "mine.safetensors", VFN())
    files = _files(pairs_dir, "msrs_00004N_crop")
    shipped = client.post("/api/fuse", data={"task": "none"}, files=files).json()
    mine = client.post("/api/fuse", data={"task": "none"},
                       files={**files, "vfn_weights": ("mine.safetensors", (tmp_path / "mine.safetensors").read_bytes(),
                                                       "application/octet-stream")}).json()
    assert mine["downloads"]["vfn"] != shipped["downloads"]["vfn"]
    r = client.post("/api/fuse", data={"task": "none"},
                    files={**files, "vfn_weights": ("bad.safetensors", b"garbage", "application/octet-stream")})
    err = r.json()["error"]
    assert r.status_code == 400 and "\n" not in err and err.startswith("bad.safetensors: ") and "/tmp" not in err


def test_align_first_from_the_form(client):
    from cldyn.inference.demo import demo_dir

    d = demo_dir()
    files = {"ir": ("ir.png", (d / "ir" / "msrs_01506D.png").read_bytes(), "image/png"),
             "vis": ("vis.jpg", (d / "vi" / "roadscene_FLIR_04514.jpg").read_bytes(), "image/jpeg")}
    r = client.post("/api/fuse", data={"task": "none", "align": "affine"}, files=files)
    assert r.status_code == 400 and "vis.jpg: cannot be aligned to ir.png" in r.json()["error"]
    files["vis"] = ("vis.png", (d / "vi" / "msrs_01506D.png").read_bytes(), "image/png")
    r = client.post("/api/fuse", data={"task": "none", "align": "translation"}, files=files)
    assert r.status_code == 200, r.text
    assert r.json()["alignment"]["model"] == "translation" and "checkerboard after registration" in r.json()["images"]
