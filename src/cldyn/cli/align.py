"""Registration of unaligned pairs: ``align``, and ``bench align`` (called by ``bench``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cldyn.cli.common import set_threads
from cldyn.data.align import ALIGN_MODELS, DEFAULT_ALIGN_MODEL, AlignConfig, warp_sidecar, write_warp
from cldyn.data.io import check_output_format, refuse_to_replace, write_image
from cldyn.data.pairs import discover_pairs
from cldyn.errors import CldynError
from cldyn.evaluation.bench_align import (
    AlignBenchConfig,
    align_report,
    bench_align,
    vfn_fusion_scorers,
    write_bench_align,
)
from cldyn.inference.fuse import read_aligned_pair
from cldyn.runtime import progress_bar
from cldyn.weights import load_vfn_or_shipped


def cmd_align(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    out = Path(args.output)
    check_output_format(out)
    sidecar = warp_sidecar(out)
    refuse_to_replace([out, sidecar] if args.save_warp else [out], args.overwrite)
    ir, vis, result = read_aligned_pair(args.ir, args.vis, AlignConfig(model=args.model))
    assert result is not None  # the model is never none here
    write_image(out, vis.pixels, vis.bits)
    print(f"wrote {out} ({result.model}, confidence {result.confidence:.1f}; {ir.size[1]}x{ir.size[0]}, the "
          "infrared frame)")
    if args.save_warp:
        print(f"wrote {write_warp(sidecar, result, args.ir, args.vis)}")
    return 0


def _align_sets(specs: list[str], limit: int | None) -> dict:
    """``--set NAME=ROOT[:SPLIT][:WARPS]`` -> ``{NAME: (pairs, warps per pair)}``."""
    sets = {}
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if not sep or not name or not rest:
            raise CldynError(f"--set {spec}: expected NAME=ROOT[:SPLIT][:WARPS], e.g. msrs=data/msrs:val:3")
        root, _, tail = rest.partition(":")
        split, _, warps = tail.partition(":")
        if warps and not warps.isdigit():
            raise CldynError(f"--set {spec}: WARPS must be a whole number, got {warps!r}")
        pairs, problems = discover_pairs([root], split or None)
        if not pairs:
            raise CldynError(f"--set {spec}: no pairs found under {root}" + (f" ({problems[0]})" if problems else ""))
        sets[name] = (pairs[:limit] if limit else pairs, int(warps or 1))
    return sets


def bench_align_command(args: argparse.Namespace) -> int:
    """``cldyn bench align`` (its options are ``bench``'s)."""
    if not args.set:
        raise CldynError("bench align needs at least one --set NAME=ROOT[:SPLIT][:WARPS] of aligned pairs")
    sets = _align_sets(args.set, args.limit)
    scorers = (None, None) if args.no_fusion else vfn_fusion_scorers(load_vfn_or_shipped(args.weights))
    total = sum(len(p) for p, _ in sets.values())
    with progress_bar(total=total, desc="align", unit="pair", disable=args.quiet) as bar:
        res = bench_align(sets, AlignBenchConfig(align=AlignConfig(model=args.model), seed=args.seed,
                                                 unrelated=args.unrelated),
                          *scorers, progress=lambda _m: bar.update(1))
    for line in align_report(res):
        print(line)
    if args.json:
        print(f"wrote {write_bench_align(res, args.json)} (every warp, for comparing runs)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("align", help="register a visible image into its infrared partner's frame",
                       description="cldyn align IR VIS -o ALIGNED_VIS: the visible image warped into the infrared "
                                   "frame (the infrared image's size); a pair that cannot be registered is an error "
                                   "and nothing is written")
    s.add_argument("ir", help="the infrared image")
    s.add_argument("vis", help="the visible image (any size)")
    s.add_argument("-o", "--output", required=True, help="the aligned visible image to write")
    s.add_argument("--model", choices=ALIGN_MODELS[1:], default=DEFAULT_ALIGN_MODEL,
                   help=f"the warp (default: {DEFAULT_ALIGN_MODEL})")
    s.add_argument("--save-warp", action="store_true", help="also write the warp and confidence (NAME.warp.json)")
    s.add_argument("--threads", type=int, help="torch CPU threads")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.set_defaults(func=cmd_align)

