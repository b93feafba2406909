"""The ``restoreagent label`` and ``restoreagent dataset ...`` commands (registered by restoreagent.cli).

Their options are generated from the job configs (:mod:`restoreagent.jobs.label`), which hold the
defaults and help texts; only how the run reports itself (progress bar, JSON) is added here.
"""

from __future__ import annotations

import json

from ..config import add_arguments, from_args
from ..errors import RestoreAgentError
from ..jobs.label import LabelConfig, SFTConfig


def _report_args(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_label_parser(sub) -> None:
    p = sub.add_parser(
        "label",
        help="make training data: degrade clean crops, run and score every candidate pipeline (resumable)",
        description="Writes a sharded Hugging Face dataset to OUT. Killing it and re-running the same command "
        "continues where it stopped; the same seed gives the same dataset whatever the workers or backend.",
    )
    add_arguments(p, LabelConfig)
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    _report_args(p)
    p.set_defaults(func=cmd_label)


def cmd_label(args) -> int:
    from ..imageio import check_output_dir
    from .labeler import label_dataset

    cfg = from_args(LabelConfig, args)
    check_output_dir(cfg.out, what="--out folder")  # a file there, or no write access: one line, nothing created
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
    add_arguments(b, SFTConfig)
    _report_args(b)
    b.set_defaults(func=cmd_build_sft)
    c = dsub.add_parser("card", help="(re)write README.md and card.png of a labeled dataset")
    c.add_argument("labeled", metavar="LABELED")
    c.add_argument("--json", action="store_true", help="print the statistics as JSON")
    c.set_defaults(func=cmd_card)


def cmd_build_sft(args) -> int:
    from .sft import build_sft

    cfg = from_args(SFTConfig, args)
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
