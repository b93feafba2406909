"""Synthetic multi-degradation generator: clean image -> degraded image + a record that replays it.

Images are float32 RGB arrays (H, W, 3) in [0, 1] (uint8 input is accepted and scaled). Every
degradation returns an image of the same shape, clipped to [0, 1], float32, and a chain applies
its degradations in physical order (:func:`restoreagent.tasks.physical_order`: haze, rain, snow,
low_light, motion_blur, defocus_blur, low_resolution, noise, jpeg) whatever order it was given in.

``snow`` is an extension: random combinations (``k`` random degradations, the benchmark's and
the labeler's random samples) draw only from the eight core degradations
(:data:`restoreagent.tasks.CORE_DEGRADATIONS`); snow appears where it is named (a chain, a
combinations file, an explicit degradation list). It was appended to
:data:`restoreagent.tasks.DEGRADATIONS`, so a seed gives the same bytes as before for every
chain without it.

Parameters and the ranges they are sampled from (``PARAM_RANGES``; ``int`` ranges include both
ends, float ranges are uniform and rounded to 4 decimals). Callers may set any value inside the
wider hard limits of ``PARAM_LIMITS``. Lengths and radii are in pixels of the image as given,
angles in degrees counter-clockwise from horizontal.

==============  =========  ================  ===============================================
degradation     parameter  sampled range     model
==============  =========  ================  ===============================================
haze            beta       0.6 – 1.8         ``I = J t + A (1 - t)``, ``t = exp(-beta d)``,
                A          0.7 – 1.0         grey airlight A; AgenticIR's ranges. ``d``: below.
rain            density    0.001 – 0.004     streak centres per pixel (plus a half-density
                length     15 – 40 (int)     layer of half-length, dimmer streaks), thin
                angle      60.0 – 120.0      tapered lines (90 = vertical), screen-blended
                intensity  0.5 – 0.9         with peak brightness ``intensity``.
snow            density    0.002 – 0.008     flakes per pixel in three layers (far: many,
                size       1.0 – 2.5         small; near: few, 2x ``size``, out of focus),
                angle      60.0 – 120.0      soft discs streaked along the fall ``angle``,
                intensity  0.5 – 0.9         alpha-blended toward white with opacity ~
                                             ``intensity``, over a white veil of
                                             0.12 ``intensity``.
low_light       gamma      1.5 – 2.5         on HSV value V: ``V' = scale * V ** gamma``,
                scale      0.25 – 0.6        hue and saturation kept.
motion_blur     length     5 – 25 (int)      anti-aliased straight-line PSF.
                angle      0.0 – 180.0
defocus_blur    radius     1.0 – 5.0         anti-aliased uniform disk PSF.
low_resolution  scale      2 – 4 (int)       bicubic down by ``scale``, bicubic back up.
noise           sigma      5.0 – 50.0        additive white Gaussian, per channel, on the
                                             0–255 scale.
jpeg            quality    10 – 50 (int)     OpenCV/libjpeg round trip, YCbCr 4:2:0.
==============  =========  ================  ===============================================

Choices and reasons:

- noise: AgenticIR samples sigma 20–50; the range starts at 5 so that the mild end, where a
  light denoiser is the right tool (RestoreAgent has low/medium/high noise models), exists too.
- jpeg: AgenticIR uses quality 10–30; up to 50 gives RestoreAgent's "mild" deJPEG case.
  Chroma is subsampled 4:2:0 as cameras and libjpeg do by default.
- low_light: the gamma-then-scale darkening suggested in the design, bounded so the image is
  dark but not black: the darkest setting maps mid-grey to 11/255 and white to 64/255 (LOL-like
  means of 0.05–0.25 on astronaut). Gamma stops at 2.5 and scale at 0.25 (not 3.0 / 0.2) because
  noise, applied after low light, would otherwise bury what signal is left. AgenticIR darkens the
  V channel of HSV with a gamma of 1.4–2 or a linear map to a maximum of 100–150 (scale 0.4–0.6);
  this combines both.
- low_resolution: the output keeps the input's size (the VDSR convention): the image is shrunk
  by ``scale`` with an antialiased bicubic (PIL, a = -0.5, the MATLAB ``imresize`` kernel used to
  make SR benchmarks) and enlarged back to exactly (H, W) with bicubic. Every tool in the
  toolbox is then image -> image of one size, and a super-resolution tool's job is to restore the
  lost detail of such an image. AgenticIR uses x4 only; 2–4 covers the usual SR factors.
- haze depth proxy (no depth network runs offline), see :mod:`.depth`:
  ``d = 0.2 + 0.8 (0.7 ramp + 0.3 cue)`` in [0.2, 1], where ``ramp`` goes from 1 at the top row
  (far) to 0 at the bottom row (near), the ground recedes upwards to the horizon in most
  photos; and ``cue`` = ``luma * (1 - saturation)`` computed on a 64-px copy and blurred with a
  Gaussian of 1/8 of its short side: sky and distant things are bright and colourless. Heavy
  smoothing keeps texture from turning into haze patterns; the 0.2 floor leaves a little haze
  at the bottom of the frame, so haze visibly increases with distance up the image.
- rain: see :func:`.ops.rain`; the streak stamp is Gaussian-thickened (sigma 0.6 px) and
  fades at both ends; streak centres also fall in a margin outside the frame so the edges are
  not rain-free.

- snow: see :func:`.ops.snow`; in the spirit of Snow100K and CSD (flakes of several sizes and
  depths plus a snow-haze veil). ``size`` is the radius in px of the middle layer's flakes
  (far ones are half that, near ones twice, and blurrier); each flake is streaked over about
  its diameter along ``angle`` (90 = vertical fall). Flakes and veil blend toward white
  (0.96) with ``I = J (1 - a) + 0.96 a``: bright, partly opaque, not additive. The range is
  moderate to heavy snow: mean PSNR about 29 dB at the mild end and 17 dB at the heavy end
  (Set14 crops), most of it from the veil at the mild end and from the flakes at the heavy end.

Randomness (see :mod:`.chain`): a seed gives independent child generators per degradation for
its parameters and for its random content, so the same seed gives the same bytes and fixing
one parameter changes nothing else.

API::

    PARAM_RANGES, PARAM_LIMITS
    sample_params(name, rng) -> dict
    apply_degradation(image, name, params, rng=None) -> image
    parse_chain("noise:sigma=25,jpeg:quality=20") -> [("noise", {"sigma": 25.0}), ("jpeg", {"quality": 20})]
    format_chain(chain) -> text (inverse of parse_chain)
    sample_combination(rng, k) -> k distinct names in physical order
    degrade(image, chain=None, k=None, seed=0) -> (image, record)
    replay(image, record) -> image, byte-identical to degrade's
"""

from .chain import apply_degradation, degrade, normalise_chain, replay, sample_combination
from .depth import depth_proxy
from .params import PARAM_LIMITS, PARAM_RANGES, format_chain, parse_chain, sample_params

__all__ = [
    "PARAM_LIMITS",
    "PARAM_RANGES",
    "apply_degradation",
    "degrade",
    "depth_proxy",
    "format_chain",
    "normalise_chain",
    "parse_chain",
    "replay",
    "sample_combination",
    "sample_params",
]
