"""The plans of the ``ranker`` and ``verify`` planners on the real degraded photos (no reference:
read the plans). ``python eval/verify_real_plans.py [VERIFIER_FILE]`` from the repository root."""

import sys, collections
from pathlib import Path
from restoreagent.imageio import load_image
from restoreagent.planners import get_planner, PlanRequest
from restoreagent.planners.verify.planner import VerifyPlanner
v = VerifyPlanner(model=sys.argv[1] if len(sys.argv) > 1 else None)
r = get_planner('ranker')
for folder in ['rni15_noise', 'lime_lowlight']:
    c = collections.Counter()
    for f in sorted(Path('../shared/data/images/real_dev', folder).glob('*')):
        if f.suffix.lower() not in ('.png', '.jpg', '.bmp', '.jpeg', '.tif'): continue
        im = load_image(f)
        a = v.plan(PlanRequest(image=im)); b = r.plan(PlanRequest(image=im))
        print(folder, f.name, im.shape[:2], '| ranker:', b.plan.text(), '| verify:', a.plan.text(), flush=True)
