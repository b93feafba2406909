"""Deterministic toy tools for testing the search machinery independently of the real toolbox."""

import numpy as np


def gain(image, g):
    return np.clip(image * g, 0, 1)


def offset(image, b):
    return np.clip(image + b, 0, 1)


def smooth(image, k):
    import cv2

    return cv2.blur(image, (k, k))
