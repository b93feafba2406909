"""Deterministic toy tools for testing the search machinery independently of the real toolbox."""

import numpy as np


def gain(image, g):
    return np.clip(image * g, 0, 1)


def offset(image, b):
    return np.clip(image + b, 0, 1)


def smooth(image, k):
    import cv2

    return cv2.blur(image, (k, k))


def add_noise(image, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0.0, sigma, image.shape), 0, 1).astype(np.float32)
