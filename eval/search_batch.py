"""Does batching the learned tools' U-Net help on a CPU? ms per image at batch 1..64, and the CPU's conv peak.

    OMP_NUM_THREADS=1 .venv/bin/python eval/search_batch.py

The learned tools' architecture (ResUNet with one guide: 6 input channels) at 128 px on one thread,
channels-last (as the tools run on a CPU) and plain NCHW; then one 64-channel 3x3 convolution on a
128 px image, whose GFLOP/s is about the most this CPU's oneDNN reaches (docs/labeling.md).
"""

import time

import torch

from restoreagent.tools.learned.nets import ResUNet


def per_call(f, x, seconds: float = 3.0) -> float:
    with torch.inference_mode():
        f(x)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            f(x)
            n += 1
    return (time.perf_counter() - t0) / n


def main() -> None:
    torch.set_num_threads(1)
    net = ResUNet(guides=1).eval()
    print("| layout | batch | ms per image |\n|---|---|---|")
    for channels_last in (True, False):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        m = net.to(memory_format=fmt)
        for b in (1, 4, 16, 64):
            x = torch.rand(b, 6, 128, 128).contiguous(memory_format=fmt)
            print(f"| {'channels-last' if channels_last else 'NCHW'} | {b} | {1000 * per_call(m, x) / b:.1f} |")
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 64, 128, 128).contiguous(memory_format=torch.channels_last)
    t = per_call(conv, x)
    print(f"\none 64-channel 3x3 convolution at 128 px, channels-last: {1000 * t:.1f} ms, {2 * 64 * 64 * 9 * 128 * 128 / t / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
