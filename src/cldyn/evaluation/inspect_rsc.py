"""``cldyn inspect-rsc``: does an RSC customise the fusion for the task network plugged in?

For each pair, each task network's features of the base fusion are fed to the RSC (as at inference), and what each
A2SI block chose and embedded is recorded. Reported:

- per block: the share of pairs whose kernel choices (every filter's kernel type and basis vector) agree across all
  tasks; the mean norm of the task embedding (the task halves of the type and basis queries) per task; the distance
  between the tasks' mean embeddings and the spread of the embeddings within a task;
- the same separation for the width-agnostic signature of the task features themselves
  (:func:`cldyn.model.task_encoder.channel_quantiles`): what any pathway could tell apart;
- per pair of tasks: the mean |difference| of the customised luminances, in 8-bit grey levels; and per task, how
  far its customisation moved the image at all (mean |customised - VFN| luminance);
- from a ``train-rsc`` log (optional): the mean share of each task's gradient that reached the task pathway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cldyn.data.io import read_csv
from cldyn.data.pairs import Pair, discover_pairs
from cldyn.inference.sources import image_source
from cldyn.model.color import luma_of
from cldyn.model.rsc import CLDyN
from cldyn.model.task_encoder import channel_quantiles
from cldyn.runtime import progress_bar
from cldyn.tasks import TaskAdapter


def separation(embeddings: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per-task samples ``{task: (N, E)}`` -> ``between`` (mean distance between the tasks' centroids) and
    ``within`` (mean distance of a sample to its task's centroid).

    Example:
        >>> separation({"a": torch.tensor([[0.0, 1.0], [0.0, -1.0]]), "b": torch.tensor([[3.0, 0.0], [5.0, 0.0]])})
        {'between': 4.0, 'within': 1.0}
    """
    centroids = {t: e.float().mean(0) for t, e in embeddings.items()}
    pairs = list(combinations(centroids, 2))
    between = sum(float((centroids[a] - centroids[b]).norm()) for a, b in pairs) / max(len(pairs), 1)
    within = sum(float((e.float() - centroids[t]).norm(dim=1).mean()) for t, e in embeddings.items())
    return {"between": between, "within": within / max(len(embeddings), 1)}


def pair_tensors(pairs: Sequence[Pair]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each pair as ``(ir (1, 1, H, W), vis (1, 3, H, W))`` in [0, 1]."""
    source = image_source("pair")
    out = []
    for pair in pairs:
        x = torch.from_numpy(np.ascontiguousarray(source(pair))).permute(2, 0, 1)[None].float()
        out.append((x[:, :1], x[:, 1:]))
    return out


def load_pairs(root: str | Path, split: str | None, limit: int | None = None
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``limit`` pairs of a split (by name) as :func:`pair_tensors`."""
    pairs, _ = discover_pairs([root], split)
    return pair_tensors(sorted(pairs, key=lambda p: p.name)[:limit])


def _record_blocks(model: CLDyN) -> tuple[list, list[Callable[[], None]]]:
    """Forward hooks on every A2SI block (infrared stack, then visible) keeping each call's inputs."""
    calls: list = []
    blocks = [*model.rsc.ir_blocks, *model.rsc.vis_blocks]
    handles = [b.register_forward_hook(lambda m, args, out, i=i: calls.append((i, args))) for i, b in
               enumerate(blocks)]
    return calls, [h.remove for h in handles]


@torch.no_grad()
def inspect_rsc(model: CLDyN, adapters: dict[str, TaskAdapter], pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
                log_path: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Inspect ``model`` (CLDyN with the RSC to study) with each of ``adapters`` on ``pairs`` of ``(ir (1, 1, H, W),
    vis (1, 1 or 3, H, W))`` in [0, 1]. Returns the figures of the module docstring as a dict."""
    model.eval()
    blocks = [*model.rsc.ir_blocks, *model.rsc.vis_blocks]
    names = [f"ir{i}" for i in range(len(model.rsc.ir_blocks))] + [f"vis{i}" for i in range(len(model.rsc.vis_blocks))]
    choices = {t: [[] for _ in blocks] for t in adapters}  # per task, per block: (F * 2,) choice codes per pair
    embeds = {t: [[] for _ in blocks] for t in adapters}
    signatures: dict[str, list[torch.Tensor]] = {t: [] for t in adapters}
    lumas: dict[str, list[torch.Tensor]] = {t: [] for t in adapters}
    base_lumas: list[torch.Tensor] = []

    def luma(out: torch.Tensor) -> torch.Tensor:
        return luma_of(out)[0, 0] * 255

    calls, removers = _record_blocks(model)
    tone = model.rsc.tone
    tone_calls: list = []
    curves: dict[str, list[torch.Tensor]] = {t: [] for t in adapters}  # per task: (K,) knot moves per pair
    if tone is not None:
        removers.append(tone.register_forward_hook(lambda m, args, out: tone_calls.append(args)).remove)
    try:
        for ir, vis in progress_bar(pairs, disable=not progress, desc="inspect-rsc"):
            base, reach = model.base_and_reach(ir, vis)  # one base pass per pair: the task features, the reference
            base_lumas.append(luma(base))
            for task, adapter in adapters.items():
                feats = model.features_of_base(base, adapter)
                signatures[task].append(channel_quantiles(feats)[0])
                calls.clear()
                tone_calls.clear()
                out = model(ir, vis, feats, base_reach=reach)
                lumas[task].append(luma(out))
                if tone_calls:
                    curves[task].append(tone.coefficients(*tone_calls[0])[0] * 255)
                for i, (bank, task_features, image_features) in ((i, args[:3]) for i, args in calls):
                    sel = blocks[i].select(bank, task_features, image_features)
                    choices[task][i].append(torch.cat((sel.types[0], sel.vector_index[0])))
                    embeds[task][i].append(sel.task_embedding[0])
    finally:
        for remove in removers:
            remove()
    tasks = list(adapters)
    per_block = []
    for i, name in enumerate(names):
        stacked = torch.stack([torch.stack(choices[t][i]) for t in tasks])  # (T, N, 2F)
        agree = (stacked == stacked[:1]).all(-1).all(0).float().mean()
        emb = {t: torch.stack(embeds[t][i]) for t in tasks}
        per_block.append({"block": name, "choices_agree_share": float(agree),
                          "embedding_norm": {t: float(e.norm(dim=1).mean()) for t, e in emb.items()},
                          **{f"embedding_{k}": v for k, v in separation(emb).items()}})
    diffs = {f"{a}-{b}": sum(float((x - y).abs().mean()) for x, y in zip(lumas[a], lumas[b], strict=True))
             / len(pairs) for a, b in combinations(tasks, 2)}
    result: dict[str, Any] = {
        "pairs": len(pairs), "tasks": tasks, "task_encoder": model.rsc.cfg.a2si.task_encoder, "blocks": per_block,
        "signature": separation({t: torch.stack(s) for t, s in signatures.items()}),
        "customisation_mean_abs_diff_grey": diffs,
        "customisation_vs_vfn_grey": {t: sum(float((x - y).abs().mean()) for x, y in zip(lumas[t], base_lumas,
                                                                                           strict=True)) / len(pairs)
                                      for t in tasks},
    }
    if tone is not None:  # the tone head's knot moves, grey levels: per task on average, and how far tasks differ
        knots = {t: torch.stack(c) for t, c in curves.items()}
        result["tone"] = {
            "knots_mean_grey": {t: [round(float(v), 3) for v in k.mean(0)] for t, k in knots.items()},
            "knots_mean_abs_grey": {t: float(k.abs().mean()) for t, k in knots.items()},
            "knots_mean_abs_diff_grey": {f"{a}-{b}": float((knots[a] - knots[b]).abs().mean())
                                         for a, b in combinations(tasks, 2)}}
    if log_path is not None:
        rows = read_csv(log_path)
        result["pathway_grad_share"] = {
            t: sum(float(r[f"{t}_pathway_grad_share"]) for r in rows) / len(rows) for t in tasks
            if rows and f"{t}_pathway_grad_share" in rows[0]}
        result["tone_grad_share"] = {
            t: sum(float(r[f"{t}_tone_grad_share"]) for r in rows) / len(rows) for t in tasks
            if rows and f"{t}_tone_grad_share" in rows[0]}
    return result


def format_inspection(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`inspect_rsc`'s result."""
    tasks = result["tasks"]
    lines = [f"{result['pairs']} pairs, task encoder {result['task_encoder']}",
             "block  choices agree  " + "  ".join(f"|emb| {t[:3]}" for t in tasks) + "  between  within"]
    for b in result["blocks"]:
        norms = "  ".join(f"{b['embedding_norm'][t]:9.4f}" for t in tasks)
        lines.append(f"{b['block']:<6} {b['choices_agree_share']:13.0%}  {norms}  {b['embedding_between']:7.4f}"
                     f"  {b['embedding_within']:6.4f}")
    sig = result["signature"]
    lines.append(f"task-feature signature: between {sig['between']:.4f}, within {sig['within']:.4f}")
    lines.append("customisations, mean |difference| (grey levels): " + ", ".join(
        f"{k} {v:.3f}" for k, v in result["customisation_mean_abs_diff_grey"].items()))
    if "customisation_vs_vfn_grey" in result:
        lines.append("each customisation against the VFN, mean |difference| (grey levels): " + ", ".join(
            f"{t} {v:.3f}" for t, v in result["customisation_vs_vfn_grey"].items()))
    if "tone" in result:
        lines.append("tone head, mean |knot move| (grey levels): " + ", ".join(
            f"{t} {v:.3f}" for t, v in result["tone"]["knots_mean_abs_grey"].items()) + "; between tasks: " + ", ".join(
            f"{k} {v:.3f}" for k, v in result["tone"]["knots_mean_abs_diff_grey"].items()))
    if result.get("tone_grad_share"):
        lines.append("gradient share of the tone head in training: " + ", ".join(
            f"{t} {v:.2%}" for t, v in result["tone_grad_share"].items()))
    if result.get("pathway_grad_share"):
        lines.append("gradient share of the task pathway in training: " + ", ".join(
            f"{t} {v:.2%}" for t, v in result["pathway_grad_share"].items()))
    return "\n".join(lines)


def inspection_markdown(results: Sequence[dict[str, Any]]) -> str:
    """One row per RSC run of :func:`inspect_rsc` results: kernel choices agreeing across tasks (mean and largest
    share over the blocks), task-embedding separation (mean over the blocks), the task-feature signature's
    separation, the customisations' mean |difference| per pair of tasks, and each against the VFN (where recorded)."""
    if not results:
        return "(no RSC inspected)"
    pairs = list(results[0]["customisation_mean_abs_diff_grey"])
    lines = ["| RSC run | task encoder | choices agree (mean / max over blocks) | embeddings between / within | "
             "signature between / within | " + " | ".join(f"{k} (grey levels)" for k in pairs)
             + " | against the VFN (grey levels) |",
             "|" + "---|" * (6 + len(pairs))]
    for i, r in enumerate(results):
        agree = [b["choices_agree_share"] for b in r["blocks"]]
        between = np.mean([b["embedding_between"] for b in r["blocks"]])
        within = np.mean([b["embedding_within"] for b in r["blocks"]])
        sig = r["signature"]
        diffs = " | ".join(f"{r['customisation_mean_abs_diff_grey'][k]:.3f}" for k in pairs)
        vs_vfn = " / ".join(f"{t[:3]} {v:.3f}" for t, v in r.get("customisation_vs_vfn_grey", {}).items()) or "-"
        lines.append(f"| {i} | {r['task_encoder']} | {np.mean(agree):.0%} / {max(agree):.0%} | {between:.3f} / "
                     f"{within:.3f} | {sig['between']:.3f} / {sig['within']:.3f} | {diffs} | {vs_vfn} |")
    return "\n".join(lines)
