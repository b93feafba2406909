"""Train the degradation detector: ``python train/train_perception.py [key=value ...]``.

Settings and their defaults: restoreagent/perception/config.py (``preset=smoke`` for a one-minute
CPU run). Example: ``python train/train_perception.py steps=40000 workers=16 export=restoreagent/assets/perception``.
"""

import logging
import sys

from restoreagent.perception.config import from_overrides
from restoreagent.perception.train import train

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(train(from_overrides(sys.argv[1:])))
