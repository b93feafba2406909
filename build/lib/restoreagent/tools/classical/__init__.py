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

from .brighten import gamma_brighten, lime_brighten
from .deblur import defocus_deblur, estimate_defocus, estimate_motion, motion_deblur
from .dehaze import dcp_dehaze
from .dejpeg import dct_dejpeg
from .denoise import bm3d_denoise, dct_denoise
from .derain import streak_derain
from .desnow import flake_desnow
from .superres import ibp_sr

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
