"""The ``restoreagent`` command.

Every user-facing failure is a RestoreAgentError: printed as one line naming the file and the
problem, exit status 2, no traceback, and no output file written.

Each command imports what it runs inside its function: building the parser imports only the job
configs (light dataclasses), so ``restoreagent --help`` and every command start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import add_arguments, from_args
from .errors import RestoreAgentError
from .jobs import add_arguments as add_job_arguments
from .jobs import take_overrides
from .jobs.bench import BenchConfig


def _add_degrade(sub):
    p = sub.add_parser(
        "degrade", help="apply synthetic degradations to a clean image (writes OUT and OUT.json)"
    )
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--chain", help='e.g. "noise:sigma=25,jpeg:quality=20" (missing parameters are sampled)')
    g.add_argument("--random", type=int, metavar="K", help="K random distinct degradations (1-4)")
    p.add_argument("--seed", type=int, default=0)
    _add_jpeg_quality(p)
    p.set_defaults(func=cmd_degrade)


def _add_jpeg_quality(p) -> None:
    p.add_argument(
        "--jpeg-quality", type=int, default=95, metavar="Q", help="quality of a JPEG/WebP output, 1-100 (default 95)"
    )


def _check_jpeg_quality(args) -> None:
    if not 1 <= args.jpeg_quality <= 100:
        raise RestoreAgentError(f"--jpeg-quality must be between 1 and 100, got {args.jpeg_quality}")


def cmd_degrade(args) -> int:
    from .degradations import degrade
    from .imageio import check_output_path, check_record_output, load_photo, save_image_with_record

    out = check_output_path(args.output, args.input, writable=True)  # before any work
    check_record_output(out, args.input)
    _check_jpeg_quality(args)
    if args.random is not None and not 1 <= args.random <= 4:
        raise RestoreAgentError(f"--random must be between 1 and 4, got {args.random}")
    image, info = load_photo(args.input)
    degraded, record = degrade(image, chain=args.chain, k=args.random, seed=args.seed)
    record = {"input": str(args.input), **record}
    save_image_with_record(degraded, out, record, quality=args.jpeg_quality, info=info)
    print(
        f"{out}: "
        + ", ".join(
            f"{c['name']}({', '.join(f'{k}={v}' for k, v in c['params'].items())})" for c in record["chain"]
        )
    )
    return 0


def _add_tools(sub):
    p = sub.add_parser("tools", help="list the restoration tools")
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.add_argument("--task", help="only the tools of this task")
    p.set_defaults(func=cmd_tools)


def cmd_tools(args) -> int:
    from .tasks import TASKS
    from .tools.registry import list_specs

    if args.task and args.task not in TASKS:
        raise RestoreAgentError(f"unknown task {args.task!r}; tasks: {', '.join(TASKS)}")
    specs = list_specs(args.task)
    if args.json:
        print(json.dumps([s.to_dict() for s in specs], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(specs)} tools")
    for col in ("task", "name", "kind", "cost (s, 512px)", "available", "description"):
        table.add_column(col)
    for s in specs:
        avail = "yes" if s.available else f"no: {', '.join(s.missing)}"
        if s.available and not s.candidate:
            avail = "yes (reserve: not searched)"
        cost = f"{s.cost_s:.3f}" if s.cost_s is not None else "?"
        table.add_row(s.task, s.name, s.kind, cost, avail, s.description)
    Console().print(table)
    if any(not s.candidate for s in specs):
        print(
            "Reserve tools are beaten by another tool of their task (see the catalogue's comments); explicit plans "
            "may use them, the search and planners do not (RESTOREAGENT_ALL_TOOLS=1 includes them)."
        )
    return 0


def add_agent_arguments(p, planner: bool = True) -> None:
    """The flags that build the :class:`restoreagent.Agent` (beside the RESTOREAGENT_* variables)."""
    if planner:
        p.add_argument(
            "--planner",
            default="default",
            metavar="FOLDER|NAME",
            help="a trained planner folder, or default (the shipped VLM), verify (runs the likely plans on a view of the photo and keeps the best-looking: slower, better), ranker, fixed+detect, fixed, random",
        )
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: $RESTOREAGENT_DEVICE, else auto)")
    p.add_argument(
        "--tile", type=int, metavar="PX", help="learned tools' tile size in pixels, 0 for none (default: $RESTOREAGENT_TILE, else each tool's)"
    )
    p.add_argument("--half", action="store_true", help="learned tools in float16 on CUDA, in bfloat16 on a CPU with native bfloat16 (AMX, AVX-512 BF16): about 2x faster there (default: $RESTOREAGENT_HALF=1)")


def make_agent(args):
    """The Agent the flags describe; a flag wins over its environment variable."""
    import os

    from .api import Agent

    if args.tile is not None and args.tile < 0:
        raise RestoreAgentError(f"--tile must be 0 (no tiling) or a size in pixels, got {args.tile}")
    # the learned tools read these when they are built: set them so that a flag beats the variable
    if args.device:
        os.environ["RESTOREAGENT_DEVICE"] = args.device
    if args.tile is not None:
        os.environ["RESTOREAGENT_TILE"] = str(args.tile)
    if args.half:
        os.environ["RESTOREAGENT_HALF"] = "1"
    return Agent(
        planner=getattr(args, "planner", "default"),
        detector=getattr(args, "detector", None),
        device=args.device or os.environ.get("RESTOREAGENT_DEVICE", "auto"),
        tile=args.tile,
        half=args.half or os.environ.get("RESTOREAGENT_HALF") == "1",
    )


def _add_run(sub):
    p = sub.add_parser(
        "run",
        help="restore images with a given plan (--plan) or a planned one (--auto)",
        description="One image: -o names the output file. Several images or folders: -o names a folder; each "
        "output keeps its input's path relative to the folder given, gets a JSON report beside it (OUT.json) "
        "and summary.json / summary.csv list them all. Outputs already done are skipped (--overwrite redoes "
        "them); an image that fails gets one error line, the others go on, and the exit status is 2.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="an image file, several, or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, help="the output image (one input) or folder (several)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--plan", help='e.g. "denoise:nlm_low, dejpeg:deblock_mild" (see `restoreagent tools`)')
    g.add_argument("--auto", action="store_true", help="let the planner look at the image and decide")
    p.add_argument(
        "--stepwise",
        action="store_true",
        help="with --auto: re-plan after every step, roll back harmful steps",
    )
    p.add_argument(
        "--quality-check",
        metavar="CHECKS",
        help="with --auto: no-reference checks that roll back a step that made the image worse (one-shot: the "
        "step is skipped; a brightening step that reveals noise is followed by a matched denoiser); a comma "
        "list of noise, exposure, piqe, or none (default: noise,exposure: deblurring, super-resolution, "
        "denoising, deJPEG and deraining steps must not add noise, brightening must not move the mean "
        "brightness away from mid-grey; each rejected no step that raised PSNR on the test photos and "
        "costs under 10 ms at 512 px. piqe judges only super-resolution, brightening, dehazing and deraining, "
        "as it rejects good denoising and deblurring steps; see docs/quality_check.md)",
    )
    p.add_argument(
        "--alternatives",
        type=int,
        metavar="K",
        help="with --auto, one image: the K best distinct plans, each executed: OUT gets the first, "
        "OUT_STEM.altN.EXT each one, OUT_STEM.alternatives.png a contact sheet with plans and scores",
    )
    p.add_argument("--pick", type=int, metavar="N", help="with --alternatives: execute and keep only the Nth plan (in OUT)")
    p.add_argument("--overwrite", action="store_true", help="folders: redo outputs that are already done")
    p.add_argument("--ext", metavar="EXT", help="folders: the outputs' format (png, jpg, ...; default: the input's)")
    p.add_argument("--save-steps", metavar="DIR", help="keep every intermediate image in DIR (folders: DIR/NAME/)")
    p.add_argument("--json", action="store_true", help="print a machine-readable report")
    _add_jpeg_quality(p)
    add_agent_arguments(p)
    _add_run_region_and_fusion(p)
    p.set_defaults(func=cmd_run)


def _add_run_region_and_fusion(p):
    """``run``'s region options (docs/region.md) and ``--fuse K`` (docs/fusion.md)."""
    r = p.add_mutually_exclusive_group()
    r.add_argument("--box", metavar="X,Y,W,H", help="restore only this box (pixels; top-left corner, size)")
    r.add_argument("--mask", metavar="MASK.png", help="restore only where this mask (the image's size) is white")
    r.add_argument("--point", metavar="X,Y", help="restore only what a click here selects (needs --sam-weights)")
    p.add_argument("--sam-weights", metavar="PATH", help="segment-anything weights: --point or --box then prompt SAM "
                   "(optional: pip install 'restoreagent[segment]')")
    p.add_argument("--margin", type=int, default=None, help="px of context the tools see around the region (default 32)")
    p.add_argument("--feather", type=int, default=None, help="px over which the region fades into the input (default 8)")
    p.add_argument("--fuse", type=int, metavar="K", nargs="?", const=8,
                   help="run the plan and up to K-1 variants of it (strength brackets of its steps, another order, "
                   "two brackets at once; K = 8 when omitted) and blend the results with the learned fusion "
                   "network and the task set's whole-photo mix head (docs/fusion.md)")


def cmd_run(args) -> int:
    from .quality import DEFAULT_QUALITY_CHECK, resolve_quality_checks

    if args.quality_check is not None and not args.auto:
        raise RestoreAgentError("--quality-check needs --auto")
    if args.stepwise and not args.auto:
        raise RestoreAgentError("--stepwise needs --auto")
    _check_jpeg_quality(args)
    args.checks = args.quality_check if args.quality_check is not None else DEFAULT_QUALITY_CHECK
    resolve_quality_checks(args.checks)  # an unknown name fails before anything is loaded
    if args.plan is not None:
        from .plan import parse_plan

        if not args.plan.strip():
            raise RestoreAgentError('--plan is empty; give steps (e.g. "denoise:dct_low") or "--plan none"')
        args.plan = parse_plan(args.plan)  # a wrong name fails before anything is loaded
    if args.pick is not None and args.alternatives is None:
        raise RestoreAgentError("--pick needs --alternatives K")
    if _is_single(args):
        if args.ext:
            raise RestoreAgentError("--ext is for folders; -o names the output file")
        if args.alternatives is not None:
            return _run_alternatives(args)
        return _run_one(args)
    if args.alternatives is not None:
        raise RestoreAgentError("--alternatives takes one input image and an output file (-o OUT.png)")
    if args.fuse is not None or args.box or args.mask or args.point:
        raise RestoreAgentError("--box/--mask/--point/--fuse take one input image and an output file (-o OUT.png)")
    from .folders import run_folder

    return run_folder(make_agent(args), args)


def _is_single(args) -> bool:
    """The single-image form of ``run``: one input file, and -o is not a folder (an existing one,
    or a name without an extension)."""
    out = Path(args.output)
    return len(args.inputs) == 1 and not Path(args.inputs[0]).is_dir() and not out.is_dir() and bool(out.suffix)


def _restore_kwargs(args) -> dict:
    if args.auto:
        return {"plan": "auto", "stepwise": args.stepwise, "quality_check": args.checks}
    return {"plan": args.plan}


def _run_one(args) -> int:
    from .imageio import check_output_dir, check_output_path, load_photo

    inp = args.inputs[0]
    # the output side is checked before any work, so a bad -o costs no processing time
    out = check_output_path(args.output, inp, writable=True)
    if args.save_steps is not None:
        check_output_dir(args.save_steps, inp, what="--save-steps folder")
    image, info = load_photo(inp)
    if args.fuse is not None or args.box or args.mask or args.point or args.sam_weights:
        return _run_region_or_fusion(args, image, info, out)
    if args.plan is not None and not args.plan and not args.json:
        print("the empty plan: the image is written unchanged")
    result = make_agent(args).restore(image, save_steps=args.save_steps, **_restore_kwargs(args))
    result.source, result.info = str(inp), info
    result.save(out, quality=args.jpeg_quality)
    report = {"input": str(inp), "output": str(out), **{k: v for k, v in result.report.items() if k != "input"}}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"wrote {out} ({report['seconds']:.2f} s)")
    return 0


def _run_alternatives(args) -> int:
    from .api import contact_sheet
    from .imageio import check_output_path, load_photo

    k, pick = args.alternatives, args.pick
    if not args.auto or args.stepwise:
        raise RestoreAgentError("--alternatives needs --auto (one-shot)")
    if k < 1:
        raise RestoreAgentError(f"--alternatives must be at least 1, got {k}")
    if pick is not None and not 1 <= pick <= k:
        raise RestoreAgentError(f"--pick must be between 1 and {k}, got {pick}")
    inp = args.inputs[0]
    out = check_output_path(args.output, inp)
    alt_paths = [check_output_path(out.with_name(f"{out.stem}.alt{i}{out.suffix}"), inp) for i in range(1, k + 1)]
    sheet = check_output_path(out.with_name(f"{out.stem}.alternatives.png"), inp)
    image, info = load_photo(inp)
    agent = make_agent(args)
    results = agent.alternatives(image, k=k, only=pick)
    for r in results:
        r.source, r.info = str(inp), info
    if pick is not None:
        chosen = results[0]
        chosen.save(out, quality=args.jpeg_quality)
        report = {"input": str(inp), "output": str(out), **chosen.report}
        print(json.dumps(report, indent=2) if args.json else f"wrote {out}: plan {pick} ({chosen.plan.text()})")
        return 0
    results[0].save(out, quality=args.jpeg_quality)
    for r, path in zip(results, alt_paths):
        r.save(path, quality=args.jpeg_quality)
        r.report["output"] = str(path)
    contact_sheet(image, results, sheet)
    if args.json:
        print(json.dumps({"input": str(inp), "output": str(out), "sheet": str(sheet), "alternatives": [r.report for r in results]}, indent=2))
        return 0
    for i, r in enumerate(results, 1):
        s = r.report["scores"]
        print(f"{i}. {r.plan.text():<60} noise {s['noise']:5.2f}  exposure {s['exposure']:.3f}  -> {r.report['output']}")
    if len(results) < k:
        print(f"(only {len(results)} distinct plans exist for this image)")
    print(f"wrote {out} (plan 1), the contact sheet {sheet}; keep another with --pick N")
    return 0


def _run_region_or_fusion(args, image, info, out) -> int:
    """``run`` with --box/--mask/--point (only a region) and/or --fuse K (a blend of K candidates)."""
    from .region import load_mask, parse_box, parse_point, segment_region

    if args.fuse is not None and args.fuse < 1:
        raise RestoreAgentError(f"--fuse must be at least 1, got {args.fuse}")
    if args.fuse is not None and args.stepwise:
        raise RestoreAgentError("--fuse blends one plan's candidates: use it with --plan or one-shot --auto, not --stepwise")
    if args.stepwise and not args.auto:
        raise RestoreAgentError("--stepwise needs --auto")
    if args.fuse is not None and args.save_steps:
        raise RestoreAgentError("--save-steps keeps one plan's steps; with --fuse use --json for the candidates")
    if args.point and not args.sam_weights:
        raise RestoreAgentError("--point selects a region with segment-anything: give its weights with --sam-weights PATH")
    agent = make_agent(args)
    region = None
    if args.sam_weights:
        region = {"mask": segment_region(image, args.sam_weights, point=parse_point(args.point, image.shape)
                                         if args.point else None,
                                         box=parse_box(args.box, image.shape) if args.box else None)}
    elif args.box:
        region = {"box": parse_box(args.box, image.shape)}
    elif args.mask:
        region = {"mask": load_mask(args.mask, image.shape)}
    result = agent.restore(
        image,
        save_steps=args.save_steps,
        fuse=args.fuse,
        margin=args.margin,
        feather=args.feather,
        **(region or {}),
        **_restore_kwargs(args),
    )
    restored, report = result.image, {k: v for k, v in result.report.items() if k != "seconds"}
    from .imageio import save_image

    # the input's depth (16-bit in, 16-bit out), ICC profile and EXIF: untouched pixels stay the input's
    save_image(restored, out, quality=args.jpeg_quality, info=info)
    report = {"input": str(args.inputs[0]), "output": str(out), **report}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        if report.get("candidates"):
            print("blended: " + "; ".join(c["plan"] + f" ({c['mean_weight']:.0%})" if isinstance(c, dict) else str(c)
                                          for c in report["candidates"]))
        print(f"wrote {out}")
    return 0


def _add_plan(sub):
    p = sub.add_parser("plan", help="look at an image and print the restoration plan (nothing is written)")
    p.add_argument("input")
    p.add_argument("--json", action="store_true")
    add_agent_arguments(p)
    p.set_defaults(func=cmd_plan)


def cmd_plan(args) -> int:
    import time

    from .imageio import load_image

    image = load_image(args.input)
    agent = make_agent(args)
    agent.planner  # noqa: B018 - load first: the time printed is the planning alone
    t0 = time.perf_counter()
    answer = agent.plan(image)
    ms = 1000 * (time.perf_counter() - t0)
    if args.json:
        print(
            json.dumps(
                {
                    "input": str(args.input),
                    "degradations": list(answer.degradations),
                    **answer.plan.to_json(),
                    "answer": answer.text(),
                    "ms": round(ms, 1),
                },
                indent=2,
            )
        )
        return 0
    print(f"{args.input}")
    print(f"  degradations seen: {', '.join(answer.degradations) or 'none'}")
    if not answer.plan:
        print("  plan: nothing to do (the image looks clean)")
    for i, step in enumerate(answer.plan, 1):
        print(f"  {i}. {step.task:<15} {step.tool}")
    print(f"  ({ms:.0f} ms)")
    return 0


def _add_detect(sub):
    from .perception.cli import add_detect_parser

    p = add_detect_parser(sub)
    add_agent_arguments(p, planner=False)  # the planner is not used
    p.set_defaults(func=cmd_detect)


def cmd_detect(args) -> int:
    from .perception.cli import cmd_detect as detect_files

    return detect_files(args, make_agent(args).detector)


def _add_assess(sub):
    from .assess import add_assess_parser

    p = add_assess_parser(sub)
    add_agent_arguments(p, planner=False)  # the detector's device; the metrics run on the CPU
    p.set_defaults(func=cmd_assess)


def cmd_assess(args) -> int:
    from .assess import cmd_assess as assess_files

    return assess_files(args, None if args.no_detector else make_agent(args).detector)


def _add_bench(sub):
    p = sub.add_parser("bench", help="rank planners' pipelines among all pipelines (RestoreAgent's ranking)")
    add_arguments(p, BenchConfig)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from .bench import check_planner_names, results_markdown, run_bench

    cfg = from_args(BenchConfig, args)
    check_planner_names(cfg.planners)
    if cfg.samples < 1:
        raise RestoreAgentError("--samples must be at least 1")
    result = run_bench(cfg)
    print(results_markdown(result))
    print(f"wrote {Path(cfg.out) / 'results.json'} and results.md")
    return 0


def add_chat_parser(sub):
    p = sub.add_parser("chat", help="restore a photo by talking to the agent in the terminal (\"still noisy\", \"undo\", ...)")
    p.add_argument("input")
    p.add_argument("-o", "--output", help="write the last picture here at the end")
    p.add_argument("--export", metavar="JSON", help="write the conversation here at the end (it replays: --replay)")
    p.add_argument("--replay", metavar="JSON", help="replay an exported conversation (same pixels) instead of reading words")
    p.add_argument("--planner", default="vlm", help="planner name (default: the shipped VLM)")
    _add_llm_arguments(p)
    p.set_defaults(func=cmd_chat)


def _add_llm_arguments(p):
    p.add_argument("--llm-url", metavar="URL", help="an OpenAI-compatible chat endpoint (e.g. a local llama.cpp or ollama "
                   "server, http://127.0.0.1:8080/v1) that maps free-form words to actions; the offline parser stays the "
                   "fallback (default: $RESTOREAGENT_LLM_URL)")
    p.add_argument("--llm-model", metavar="NAME", help="the endpoint's model name (default: $RESTOREAGENT_LLM_MODEL)")


def cmd_chat(args) -> int:
    from .conversation import Engine, Session, replay
    from .conversation.llm import ChatModelInterpreter
    from .conversation.terminal import run_chat, show_turn
    from .imageio import check_output_path, load_image, save_image

    if args.output:
        check_output_path(args.output, args.input)
    image = load_image(args.input)
    engine = Engine(args.planner)
    if args.replay:
        try:
            data = json.loads(Path(args.replay).read_text())
        except (OSError, ValueError) as e:
            raise RestoreAgentError(f"{args.replay}: not a readable conversation ({e})") from None
        session = replay(data, image, engine, name=Path(args.input).name)
        for turn in session.turns:
            print(f"you> {turn.said}\nagent: {turn.reply}")
            show_turn(session)
        print(f"replayed {len(session.turns)} turns: every picture matches the recorded checksum")
        if args.output:
            save_image(session.image, check_output_path(args.output, args.input))
            print(f"wrote {args.output}")
        return 0
    interpret = ChatModelInterpreter.from_env(args.llm_url, args.llm_model)
    session = Session(image, engine, name=Path(args.input).name, interpret=interpret)
    return run_chat(session, sys.stdin, args.output, args.export, args.input, prompt=sys.stdin.isatty())


def add_serve_parser(sub):
    p = sub.add_parser("serve", help="a local web page: drop photos, see the plan, talk to the agent (needs restoreagent[web])")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--planner", default="vlm", help="planner name (default: the shipped VLM)")
    p.add_argument("--queue", type=int, default=4, metavar="N",
                   help="jobs that may wait behind the running one; more get a \"busy\" answer (default: 4)")
    _add_llm_arguments(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    import importlib.util

    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise RestoreAgentError("restoreagent serve needs the web extra: pip install 'restoreagent[web]' (fastapi, uvicorn)")
    if args.queue < 1:
        raise RestoreAgentError("--queue must be at least 1")
    from .conversation.llm import ChatModelInterpreter
    from .planners import planner_names
    from .web.server import serve

    if args.planner not in planner_names():
        raise RestoreAgentError(f"unknown planner {args.planner!r}; planners: {', '.join(planner_names())}")
    serve(args.host, args.port, args.planner, max_waiting=args.queue,
          interpret=ChatModelInterpreter.from_env(args.llm_url, args.llm_model))
    return 0


JOB_HELP = "run any job from its typed config: restoreagent job NAME [--config FILE] [key=value ...]"
JOB_ABOUT = ("Jobs and their configs (the only home of their defaults and help texts): restoreagent.jobs. "
             "configs/smoke/NAME.yaml runs a job end to end on a CPU in under a minute.")


def _add_job(sub):
    p = sub.add_parser("job", help=JOB_HELP, description=JOB_ABOUT)
    p.add_argument("name", nargs="?", metavar="NAME", help="the job (--list: all of them)")
    p.add_argument("--list", action="store_true", help="list the jobs and their configs")
    add_job_arguments(p)
    p.set_defaults(func=cmd_job)


def cmd_job(args) -> int:
    from .jobs import JOBS, run_from_args

    if args.list or not args.name:
        for job in JOBS.values():
            print(f"{job.name:<17} {job.summary}  [{job.config}]")
        return 0
    result = run_from_args(args.name, args)
    if isinstance(result, dict):
        print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="restoreagent", description="Plan, run and learn image-restoration pipelines."
    )
    parser.add_argument("--version", action="version", version=f"restoreagent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from .labeling.cli import add_dataset_parser, add_label_parser
    from .planners.vlm.extend import add_planner_parser
    from .zoo.cli import add_zoo_parser

    for add in (
        _add_degrade,
        _add_tools,
        _add_plan,
        _add_detect,
        _add_assess,
        _add_run,
        add_chat_parser,
        add_serve_parser,
        _add_bench,
        _add_job,
        add_label_parser,
        add_dataset_parser,
        add_planner_parser,
        add_zoo_parser,
    ):
        add(sub)
    return parser


def _log_to_stderr(quiet: bool) -> None:
    """The library logs (logger ``restoreagent``); the command shows its INFO lines on stderr."""
    import logging

    class StderrHandler(logging.Handler):
        def emit(self, record):  # the stderr of now (tests swap it), after any progress bar
            print(self.format(record), file=sys.stderr, flush=True)

    logger = logging.getLogger("restoreagent")
    if not any(type(h).__name__ == "StderrHandler" for h in logger.handlers):
        logger.addHandler(StderrHandler())
        logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


# Commands that, run as the program (not main([...]) from Python), end the process as soon as they
# return: the interpreter's teardown once torch is imported takes ~0.5 s. They write their outputs
# (atomically) before returning and start nothing that cleans up at exit (no worker pools, no wandb).
FAST_EXIT = frozenset({"plan", "run", "detect"})


def _exit_now(code: int) -> None:
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "func", None) is cmd_job:
        args.overrides += take_overrides(parser, extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _log_to_stderr(quiet=getattr(args, "json", False))
    code = _run_command(args)
    if argv is None and args.command in FAST_EXIT and "torch" in sys.modules:
        _exit_now(code)
    return code


def _run_command(args) -> int:
    try:
        return args.func(args)
    except RestoreAgentError as e:
        print(f"restoreagent: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            "restoreagent: error: out of memory (try a smaller image or RESTOREAGENT_MAX_PIXELS)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("restoreagent: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
