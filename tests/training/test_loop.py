"""The trainers' shared run bookkeeping: refuse, resume (module, optimiser, log rows), final save, sharding."""

import json

import pytest
import torch

from cldyn.data.io import write_csv
from cldyn.errors import CheckpointError
from cldyn.training.distributed import DistContext, local_context
from cldyn.training.loop import LAST, TrainingRun, take_shard


def _run(out, ctx=None, logged=None):
    def write_log(path, rows):
        write_csv(path, rows)
        if logged is not None:
            logged.append(len(rows))

    return TrainingRun(out, "train_demo", "model", ctx or local_context(), "log.csv", write_log)


def _model_and_opt():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return model, opt


def test_resume_restores_module_optimiser_and_rows_up_to_the_step(tmp_path):
    model, opt = _model_and_opt()
    logged = []
    run = _run(tmp_path, logged=logged)
    assert run.start(False, model, opt, lambda m: None, print) is None
    run.rows.extend({"step": s, "loss": 1.0 / s} for s in (1, 2, 3))
    run.save(3, model, opt, list(model.parameters()), {"note": "x"})
    assert logged == [3]
    run.rows.append({"step": 4, "loss": 0.25})  # logged after the checkpoint: dropped on resume
    write_csv(run.csv, run.rows)

    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.1)
    again = _run(tmp_path)
    lines = []
    meta = again.start(True, fresh, fresh_opt, lambda m: None, lines.append)
    assert meta["global_step"] == 3 and meta["kind"] == "train_demo" and meta["note"] == "x"
    assert [int(r["step"]) for r in again.rows] == [1, 2, 3]
    assert torch.equal(fresh.weight, model.weight)
    assert torch.equal(fresh_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert lines == [f"resumed from {tmp_path / LAST} at step 3"]


def test_existing_run_is_refused_without_resume_and_checked_with_it(tmp_path):
    model, opt = _model_and_opt()
    run = _run(tmp_path)
    run.save(1, model, opt, list(model.parameters()), {})
    with pytest.raises(CheckpointError, match="already exists; pass --resume"):
        _run(tmp_path).start(False, model, opt, lambda m: None, print)
    with pytest.raises(CheckpointError, match="other config"):
        _run(tmp_path).start(True, model, opt, lambda m: "other config", print)


def test_finish_saves_unless_just_saved_and_writes_the_config(tmp_path):
    model, opt = _model_and_opt()
    run = _run(tmp_path)
    saves = []

    def save():
        saves.append(1)
        run.save(5, model, opt, list(model.parameters()), {})

    run.finish(5, save, {"steps": 5})
    assert saves == [1] and (tmp_path / LAST).is_file()
    assert json.loads((tmp_path / "train_config.json").read_text()) == {"steps": 5}
    run.finish(5, save, {"steps": 5})  # saved at 5 already
    assert saves == [1]


def test_take_shard_gives_each_rank_its_rows():
    x = torch.arange(8).view(4, 2)
    targets = ["a", "b", "c", "d"]
    noise = torch.arange(12).view(3, 4)
    assert take_shard(DistContext(), x, targets) == (x, targets)
    xs, ts = take_shard(DistContext(rank=1, world_size=2), x, targets)
    assert torch.equal(xs, x[2:]) and ts == ["c", "d"]
    (ns,) = take_shard(DistContext(rank=0, world_size=2), noise, dim=1)
    assert torch.equal(ns, noise[:, :2])
