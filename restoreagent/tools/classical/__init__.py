"""Classical restoration tools: real algorithms that need no downloaded weights.

Every public function here is a tool, ``fn(image, **params) -> image`` on float32 RGB (H, W, 3)
in [0, 1], same shape out; ``restoreagent/catalog/tools.yaml`` names the variants (parameters
tuned to a severity range) that the planners choose between. One module per family:

- :mod:`.denoise`   shift-averaged DCT shrinkage (noise level estimated, clamped to a range)
- :mod:`.deblur`    blind motion (cepstral line-kernel estimate) and defocus (disk) deconvolution
                    with a hyper-Laplacian prior
- :mod:`.dejpeg`    JPEG re-application at every grid shift for luma, luma-guided chroma
- :mod:`.dehaze`    dark channel prior with guided-filter transmission
- :mod:`.derain`    oriented morphological streak removal
- :mod:`.desnow`    compact-blob flake detection, alpha un-blending, white-veil removal
- :mod:`.brighten`  global gamma on HSV value with a percentile white point; LIME
- :mod:`.superres`  iterative back-projection through the down-up operator

Also available but not catalogued (too slow for the exhaustive search, or never best on the
generator's degradations): :func:`bm3d_denoise`, :func:`lime_brighten`.
"""

import importlib

# Each function's module, imported on first use: a learned tool guided by one classical tool
# imports only that family (the deblurring modules import scipy.fft, 0.3 s).
_MODULES = {
    "gamma_brighten": "brighten",
    "lime_brighten": "brighten",
    "defocus_deblur": "deblur",
    "estimate_defocus": "deblur",
    "estimate_motion": "deblur",
    "motion_deblur": "deblur",
    "dcp_dehaze": "dehaze",
    "dct_dejpeg": "dejpeg",
    "bm3d_denoise": "denoise",
    "dct_denoise": "denoise",
    "streak_derain": "derain",
    "flake_desnow": "desnow",
    "ibp_sr": "superres",
}


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(importlib.import_module(f".{_MODULES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "bm3d_denoise",
    "dct_denoise",
    "dct_dejpeg",
    "dcp_dehaze",
    "defocus_deblur",
    "estimate_defocus",
    "estimate_motion",
    "flake_desnow",
    "gamma_brighten",
    "ibp_sr",
    "lime_brighten",
    "motion_deblur",
    "streak_derain",
]


def __dir__():
    return sorted(__all__)
