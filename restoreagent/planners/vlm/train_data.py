"""The planner's training data: the stage-1 set made by the degradation generator, loading a
saved set with its validation split, mixing in replayed examples, severity-matched targets.

Stage-1 targets are the true degradations and the fixed expert recipe
(catalog/fixed_recipe.yaml) -- they teach perception first. Validation photos are held-out train
photos (:mod:`restoreagent.splits`), never a benchmark split.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ...degradations import degrade, sample_combination
from ...dialogue import QUESTION, Answer
from ...errors import RestoreAgentError
from ...imageio import list_images, load_image, png_bytes
from ...jobs.build import SeverityTargetsConfig
from ...jobs.train_planner import Stage1DataConfig
from ...plan import Plan
from ...splits import split_files
from ...tasks import TASK_FOR_DEGRADATION
from ...tools.fixed_recipe import fixed_recipe
from ..baselines import severity_matched_plan
from .grammar import installed_tools

STAGE1 = "stage1"


def stage1_plan(degradations: Sequence[str], tools: Mapping[str, Sequence[str]]) -> Plan:
    """The fixed expert recipe's plan for these degradations, with installed tools only."""
    return Plan.of(fixed_recipe({TASK_FOR_DEGRADATION[d] for d in degradations}, tools=tools))


def stage1_target(degradations: Sequence[str], tools: Mapping[str, Sequence[str]]) -> str:
    return Answer(tuple(degradations), stage1_plan(degradations, tools)).text()


def skimage_images() -> list[np.ndarray]:
    """The colour photographs scikit-image ships (for tests and machines without ../shared)."""
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "colorwheel"]
    out = []
    for n in names:
        try:
            a = getattr(data, n)()
        except Exception:  # noqa: BLE001 - some need pooch downloads on some versions
            continue
        if a.ndim == 3 and a.shape[2] >= 3:
            out.append(np.ascontiguousarray(a[..., :3]).astype(np.float32) / 255.0)
    return out


def _random_crop(img: np.ndarray, rng: np.random.Generator, crop: int, scale_range) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    s = float(rng.uniform(*scale_range))
    s = max(s, crop / min(h, w))  # never smaller than the crop
    if abs(s - 1.0) > 1e-3:
        img = cv2.resize(
            img,
            (max(crop, round(w * s)), max(crop, round(h * s))),
            interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC,
        )
        h, w = img.shape[:2]
    y = int(rng.integers(0, h - crop + 1))
    x = int(rng.integers(0, w - crop + 1))
    return np.ascontiguousarray(img[y : y + crop, x : x + crop])


def stage1_examples(
    images,
    n: int,
    seed: int = 0,
    crop: int = 256,
    k_weights=(0.1, 0.3, 0.3, 0.2, 0.1),
    scale_range=(0.5, 1.0),
    tools=None,
    camera: float = 0.0,
    p_snow: float = 0.0,
    targets: str = "fixed",
):
    """Yield ``n`` stage-1 examples (dicts with PNG bytes) made from clean ``images``.

    ``images``: paths or float arrays. ``k_weights[k]`` is the probability of k degradations.
    ``camera``: probability of camera-realism parameters per degradation (``degrade(camera=)``);
    ``p_snow``: probability of adding the ``snow`` extension. ``targets``: ``fixed`` (the fixed
    recipe) or ``severity`` (its tools matched to the recorded severity,
    :func:`restoreagent.planners.baselines.severity_matched_plan`). ``crop``: one size, or a
    sequence of sizes drawn per example.
    Example ``i`` depends only on ``(seed, i)``, so sets are reproducible and extendable
    (the defaults give the bytes they always gave).
    """
    tools = installed_tools() if tools is None else tools
    if not len(images):
        raise RestoreAgentError("no clean images to make stage-1 examples from")
    p = np.asarray(k_weights, dtype=np.float64)
    p = p / p.sum()
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        j = int(rng.integers(len(images)))
        src = images[j]
        img = load_image(src) if isinstance(src, str | Path) else src
        size = int(rng.choice(crop)) if isinstance(crop, list | tuple) else crop  # a sequence: one size per example
        img = _random_crop(img, rng, size, scale_range)
        k = int(rng.choice(len(p), p=p))
        snow = p_snow > 0 and rng.random() < p_snow
        if k > 0 or snow:
            dseed = int(rng.integers(2**31))
            if snow:
                names = sample_combination(np.random.default_rng([dseed, 0]), k) if k else []
                img, record = degrade(img, chain=[*names, "snow"], seed=dseed, camera=camera)
            else:
                img, record = degrade(img, k=k, seed=dseed, camera=camera)
            record = {**record, "source": str(src) if isinstance(src, str | Path) else f"array{j}"}
        else:
            record = {"seed": None, "chain": [], "degradations": [], "source": str(src)}
        if targets == "severity":
            target = Answer(tuple(record["degradations"]), severity_matched_plan(record)).text()
        else:
            target = stage1_target(record["degradations"], tools)
        yield {
            "image": {"bytes": png_bytes(img, compress_level=1), "path": None},
            "prompt": QUESTION,
            "target": target,
            "scenario": STAGE1,
            "record": json.dumps(record),
        }


def _features():
    from datasets import Features, Image, Value

    return Features(
        {
            "image": Image(),
            "prompt": Value("string"),
            "target": Value("string"),
            "scenario": Value("string"),
            "record": Value("string"),
        }
    )


def stage1_dataset(images, n: int, **kw):
    """An in-memory ``datasets.Dataset`` of stage-1 examples (small sets, tests)."""
    from datasets import Dataset

    return Dataset.from_list(list(stage1_examples(images, n, **kw)), features=_features())


def build_stage1_dataset(
    out, train_images, n_train: int, val_images=None, n_val: int = 0, seed: int = 0, **kw
) -> Path:
    """Write a stage-1 ``DatasetDict`` (train [+ validation]) to ``out`` with ``save_to_disk``.

    ``train_images``: photo folders (or float arrays; None: scikit-image's photos). Validation
    examples (another seed stream) come from ``val_images``; when that is None and the train
    images are folders, from the train photos held out by :func:`held_out_photos` (then never
    trained on), or scikit-image's photos when the folders are too small to hold any out.
    """
    from datasets import Dataset, DatasetDict

    out = Path(out)
    cache = out.parent / (out.name + ".cache")

    def photos(images):
        if images is None:
            return skimage_images()
        return images if _is_arrays(images) else list_images(images)

    train_src = photos(train_images)
    val_src = photos(val_images) if val_images is not None else train_src
    if n_val and val_images is None and train_images is not None and not _is_arrays(train_images):
        train_src, held = held_out_photos(train_images)
        val_src = held or skimage_images()

    def split(imgs, n, s):
        # tuples: datasets would shard list-valued gen_kwargs into one generator call per item
        gen_kw = {
            "images": tuple(imgs),
            "n": n,
            "seed": s,
            **{k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()},
        }
        return Dataset.from_generator(
            stage1_examples, gen_kwargs=gen_kw, features=_features(), cache_dir=str(cache)
        )

    parts = {"train": split(train_src, n_train, seed)}
    if n_val:
        parts["validation"] = split(val_src, n_val, seed + 10_000)
    DatasetDict(parts).save_to_disk(str(out))
    shutil.rmtree(cache, ignore_errors=True)
    return out


def crop_sizes(crop):
    """``data.stage1.crop``: one size, or a list of sizes drawn per example."""
    return tuple(int(c) for c in crop) if isinstance(crop, list | tuple) else int(crop)


def _is_arrays(images) -> bool:
    return isinstance(images, list | tuple) and bool(images) and isinstance(images[0], np.ndarray)


def load_splits(path, val_fraction: float = 0.05, seed: int = 0, max_val: int | None = None):
    """(train, validation) from a dataset folder; holds out ``val_fraction`` when there is no split."""
    from datasets import Dataset, DatasetDict, load_from_disk

    p = Path(path)
    if not p.exists():
        raise RestoreAgentError(
            f"planner dataset {p} does not exist (build it: restoreagent dataset build-sft, "
            "or data.source=stage1)"
        )
    ds = load_from_disk(str(p))
    if isinstance(ds, DatasetDict):
        train = ds["train"] if "train" in ds else ds[next(iter(ds))]
        val = next((ds[k] for k in ("validation", "val", "dev", "test") if k in ds), None)
    else:
        train, val = ds, None
    assert isinstance(train, Dataset)
    missing = {"image", "prompt", "target"} - set(train.column_names)
    if missing:
        raise RestoreAgentError(
            f"planner dataset {p} lacks columns {sorted(missing)}; has {train.column_names}"
        )
    if val is None and val_fraction > 0 and len(train) > 1:
        parts = train.train_test_split(test_size=val_fraction, seed=seed)
        train, val = parts["train"], parts["test"]
    if val is not None and max_val is not None and len(val) > max_val:
        val = val.select(range(max_val))
    return train, val


def mix_replay(train, replay_path, ratio: float, seed: int = 0):
    """``train`` plus ``ratio * len(train)`` examples drawn from another dataset's train split.

    Used when tuning a planner on a new task: replaying examples of what it already does keeps
    it from forgetting them (only the columns both datasets share are kept).
    """
    from datasets import concatenate_datasets

    if ratio <= 0:
        return train
    old, _ = load_splits(replay_path, 0.0)
    n = min(len(old), int(round(ratio * len(train))))
    old = old.shuffle(seed=seed).select(range(n))
    cols = [c for c in train.column_names if c in set(old.column_names)]
    train, old = train.select_columns(cols), old.select_columns(cols)
    old = old.cast(train.features)
    return concatenate_datasets([train, old]).shuffle(seed=seed)


def held_out_photos(folders) -> tuple[list[Path], list[Path]]:
    """(train, validation) photos of the train folders (:func:`restoreagent.splits.split_files`)."""
    return split_files(list_images(folders))


def severity_targets(src, dst) -> Path:
    """Rewrite a stage-1 dataset's targets so each tool is matched to the recorded severity.

    The new target is ``saw: <true degradations> | plan: <severity_matched_plan(record)>``
    (:func:`restoreagent.planners.baselines.severity_matched_plan`); only the text columns are
    touched, so no image is decoded.
    """
    from datasets import load_from_disk

    def retarget(target: str, record: str) -> dict:
        rec = json.loads(record)
        return {"target": Answer(tuple(rec["degradations"]), severity_matched_plan(rec)).text()}

    ds = load_from_disk(str(src))
    ds = ds.map(retarget, input_columns=["target", "record"], desc="severity-matched targets")
    ds.save_to_disk(str(dst))
    return Path(dst)


def run_stage1_data(cfg: Stage1DataConfig) -> dict:
    """The stage1-data job."""
    out = build_stage1_dataset(
        cfg.out, list(cfg.train_images), cfg.n_train, list(cfg.val_images) if cfg.val_images is not None else None,
        cfg.n_val, seed=cfg.seed, crop=crop_sizes(cfg.crop), k_weights=tuple(cfg.k_weights), tools=cfg.tools,
        camera=cfg.camera, p_snow=cfg.p_snow, targets=cfg.targets,
    )
    return {"out": str(out)}


def run_severity_targets(cfg: SeverityTargetsConfig) -> dict:
    """The severity-targets job."""
    return {"out": str(severity_targets(cfg.src, cfg.dst))}
