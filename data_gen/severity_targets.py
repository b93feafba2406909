"""Rewrite a stage-1 planner dataset's targets so each tool is matched to the recorded severity.

    .venv/bin/python data_gen/severity_targets.py data/planner_stage1_16k data/planner_stage1_16k_sev

Stage-1 examples carry their degradation record; the new target is
`saw: <true degradations> | plan: <severity_matched_plan(record)>` (restoreagent.planners.baselines).
Only the text columns are touched, so no image is decoded.
"""

import json
import sys

from datasets import load_from_disk

from restoreagent.dialogue import Answer
from restoreagent.planners.baselines import severity_matched_plan


def retarget(target: str, record: str) -> dict:
    rec = json.loads(record)
    return {"target": Answer(tuple(rec["degradations"]), severity_matched_plan(rec)).text()}


def main(src: str, dst: str) -> None:
    ds = load_from_disk(src)
    ds = ds.map(retarget, input_columns=["target", "record"], desc="severity-matched targets")
    ds.save_to_disk(dst)
    print(ds)


if __name__ == "__main__":
    main(*sys.argv[1:3])
