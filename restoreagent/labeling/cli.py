"""The ``restoreagent label`` and ``restoreagent dataset ...`` commands (registered by restoreagent.cli)."""

from __future__ import annotations

import json

from ..errors import RestoreAgentError


def _backend_args(p, what: str) -> None:
    p.add_argument("--workers", type=int, default=1, metavar="K", help=f"{what} in K local processes (default 1: this process)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="local processes, or Ray tasks (pip install 'restoreagent[ray]')")
    p.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join, e.g. 127.0.0.1:6379 (default: start a local one); a cluster with token auth "
                   "(Ray's default) needs RAY_AUTH_MODE=token and its token (~/.ray/auth_token or RAY_AUTH_TOKEN)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_label_parser(sub) -> None:
    p = sub.add_parser(
        "label",
        help="make training data: degrade clean crops, run and score every candidate pipeline (resumable)",
        description="Writes a sharded Hugging Face dataset to OUT. Killing it and re-running the same command "
        "continues where it stopped; the same seed gives the same dataset whatever the workers or backend.",
    )
    p.add_argument("--images", required=True, nargs="+", action="extend", metavar="DIR", help="folder(s) of clean images")
    p.add_argument("--out", required=True, metavar="DATASET", help="output folder (created; resumed when it exists)")
    p.add_argument("--samples", type=int, required=True, metavar="N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crop", type=int, default=128, metavar="PX", help="square crop side (default 128; 0: whole image; cost grows fast with size)")
    p.add_argument("--crop-mode", choices=("random", "center"), default="random")
    p.add_argument("--combos", metavar="FILE", help="one combination per line, e.g. 'noise + jpeg' (cycled); default: 1-4 random degradations")
    p.add_argument("--min-degradations", type=int, default=1, metavar="K")
    p.add_argument("--max-degradations", type=int, default=4, metavar="K")
    p.add_argument("--degradations", metavar="LIST", help="comma list of degradations to draw from (default: all with a tool)")
    p.add_argument("--toolset", metavar="FILE", help="YAML task -> [tools] to search (default: every available tool)")
    p.add_argument("--metrics", default="auto", help="comma list of psnr,ssim,lpips,dists (auto: those available)")
    p.add_argument("--shard-size", type=int, default=64, metavar="M", help="samples per output shard (default 64)")
    p.add_argument("--allow-dev-split", action="store_true", help="allow labeling the dev split (cbsd68), e.g. for analysis")
    p.add_argument("--accept-tool-changes", action="store_true", help="resume although a tool's code changed since the run started (mixes label versions)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    _backend_args(p, "label")
    p.set_defaults(func=cmd_label)


def cmd_label(args) -> int:
    from .labeler import DEV_SPLITS, LabelConfig, label_dataset, load_toolset_file

    cfg = LabelConfig(
        images=tuple(args.images),
        out=args.out,
        samples=args.samples,
        seed=args.seed,
        crop=args.crop or None,
        crop_mode=args.crop_mode,
        combos_file=args.combos,
        min_degradations=args.min_degradations,
        max_degradations=args.max_degradations,
        degradations=tuple(d.strip() for d in args.degradations.split(",") if d.strip()) if args.degradations else None,
        toolset=load_toolset_file(args.toolset) if args.toolset else None,
        metrics=None if args.metrics == "auto" else tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
        shard_size=args.shard_size,
        workers=args.workers,
        backend=args.backend,
        ray_address=args.ray_address,
        forbid=() if args.allow_dev_split else DEV_SPLITS,
        accept_tool_changes=args.accept_tool_changes,
    )
    summary = label_dataset(cfg, progress=not args.no_progress)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(
            f"wrote {args.out}: {args.samples} samples ({summary['computed']} labeled now, "
            f"{summary['units_per_second']:.2f}/s); card: {args.out}/README.md"
        )
    return 0


def add_dataset_parser(sub) -> None:
    p = sub.add_parser("dataset", help="work with labeled datasets: build the planner's SFT data, write cards")
    dsub = p.add_subparsers(dest="dataset_command", required=True)
    b = dsub.add_parser("build-sft", help="labeled trees -> image/prompt/target pairs in RestoreAgent's five scenarios")
    b.add_argument("labeled", metavar="LABELED", help="a folder written by `restoreagent label`")
    b.add_argument("--out", required=True, metavar="SFT", help="output folder (a datasets DatasetDict: load_from_disk)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--val-fraction", type=float, default=0.05, help="share of labeled samples held out as `validation` (default 0.05)")
    b.add_argument("--clean-stop", type=float, default=0.1, metavar="P", help="probability per sample of a 'stop' example on the clean crop (default 0.1)")
    b.add_argument("--rollbacks", type=int, default=1, metavar="R", help="rollback examples per sample, when the tree has harmful steps (default 1)")
    b.add_argument("--detours", type=int, default=1, metavar="D", help="partial-plan examples off the best path per sample (default 1)")
    b.add_argument("--images", nargs="+", action="extend", metavar="DIR", help="where the clean images are now, if moved since labeling")
    b.add_argument("--shard-size", type=int, default=256, metavar="M")
    _backend_args(b, "build")
    b.set_defaults(func=cmd_build_sft)
    c = dsub.add_parser("card", help="(re)write README.md and card.png of a labeled dataset")
    c.add_argument("labeled", metavar="LABELED")
    c.add_argument("--json", action="store_true", help="print the statistics as JSON")
    c.set_defaults(func=cmd_card)


def cmd_build_sft(args) -> int:
    from .sft import SFTConfig, build_sft

    if args.rollbacks < 0 or args.detours < 0:
        raise RestoreAgentError("--rollbacks and --detours must be >= 0")
    cfg = SFTConfig(
        labeled=args.labeled,
        out=args.out,
        seed=args.seed,
        val_fraction=args.val_fraction,
        clean_stop_prob=args.clean_stop,
        rollbacks_per_sample=args.rollbacks,
        detours_per_sample=args.detours,
        images=tuple(args.images) if args.images else None,
        shard_size=args.shard_size,
        workers=args.workers,
        backend=args.backend,
        ray_address=args.ray_address,
    )
    s = build_sft(cfg, progress=not args.no_progress)
    mix = ", ".join(f"{k} {v}" for k, v in s.get("scenarios", {}).items())
    print(f"wrote {args.out}: {s.get('examples')} examples from {s.get('samples')} samples ({mix}); splits {s.get('splits')}")
    return 0


def cmd_card(args) -> int:
    from .card import labeled_stats, write_labeled_card
    from .shards import read_manifest

    man = read_manifest(args.labeled)
    if man is None or man.get("kind") != "labeled" or man.get("status") != "complete":
        raise RestoreAgentError(f"{args.labeled}: not a finished labeled dataset")
    write_labeled_card(args.labeled)
    if args.json:
        print(json.dumps(labeled_stats(args.labeled), indent=1))
    else:
        print(f"wrote {args.labeled}/README.md and card.png")
    return 0
