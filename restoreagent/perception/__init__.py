"""Perception: which degradations a photo carries, and how severe they are.

- :mod:`.labels`       the label space (presence of every degradation, normalised severities)
- :mod:`.model`        the CNN (native-pixel stem, presence and severity heads)
- :mod:`.data`         fresh generated training samples, made on the fly in loader workers
- :mod:`.config`       the trainer's settings (the train-perception job's typed config)
- :mod:`.train`        the resumable training loop, calibration, export
- :mod:`.calibration`  Platt scaling and per-degradation thresholds
- :mod:`.detector`     inference on photos of any size (``restoreagent detect``)

Only :mod:`.detector` is imported here: training needs nothing at inference time.
"""

from .detector import Detection, Detector, default_detector

__all__ = ["Detection", "Detector", "default_detector"]
