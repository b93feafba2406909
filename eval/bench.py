"""Hydra entry point for the pipeline benchmark; the logic lives in restoreagent.bench.

    python eval/bench.py bench.samples=100 bench.combos_file=configs/bench/restoreagent_combos.txt
(equivalent to `restoreagent bench ...`; paths are relative to where you launch it).
"""

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from restoreagent.bench import BenchConfig, results_markdown, run_bench


@hydra.main(version_base=None, config_path="../configs", config_name="bench")
def main(cfg: DictConfig) -> None:
    b = cfg.bench
    result = run_bench(
        BenchConfig(
            images=to_absolute_path(b.images),
            out=to_absolute_path(b.out),
            samples=b.samples,
            seed=b.seed,
            planners=tuple(b.planners),
            combos_file=to_absolute_path(b.combos_file) if b.combos_file else None,
            crop=b.crop,
            metrics=tuple(b.metrics) if b.metrics else None,
            max_degradations=b.max_degradations,
        )
    )
    print(results_markdown(result))


if __name__ == "__main__":
    main()
