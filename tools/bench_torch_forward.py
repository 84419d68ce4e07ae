#!/usr/bin/env python3
"""Times PyTorch's own forward pass of the seed's SimpleUNet (batch 1 and 16, 1 and 2 threads).

The network is written here from the lecture notes' description (enc1 Conv2d(1->64), enc2
Conv2d(64->128), time MLP Linear(1->128), ReLU, Linear(128->128) added per channel after enc2's
ReLU, dec1 ConvTranspose2d(128->64), dec2 ConvTranspose2d(64->1), 3x3 kernels, padding 1).
Prints the median of many timed runs per setting, so it can sit next to `cargo bench -p ddpm-core`.

Usage: .venv/bin/python tools/bench_torch_forward.py [--threads 1 2] [--batch 1 16]
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn


class SimpleUNet(nn.Module):
    def __init__(self, c=1, h1=64, h2=128):
        super().__init__()
        self.enc1 = nn.Conv2d(c, h1, 3, padding=1)
        self.enc2 = nn.Conv2d(h1, h2, 3, padding=1)
        self.dec1 = nn.ConvTranspose2d(h2, h1, 3, padding=1)
        self.dec2 = nn.ConvTranspose2d(h1, c, 3, padding=1)
        self.time_mlp = nn.Sequential(nn.Linear(1, h2), nn.ReLU(), nn.Linear(h2, h2))
        self.h2 = h2

    def forward(self, x, t):
        h = torch.relu(self.enc1(x))
        h = torch.relu(self.enc2(h))
        h = h + self.time_mlp(t.unsqueeze(-1)).view(-1, self.h2, 1, 1)
        h = torch.relu(self.dec1(h))
        return self.dec2(h)


def median_ms(fn, seconds=2.0):
    for _ in range(20):
        fn()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 30:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    args = ap.parse_args()
    torch.manual_seed(0)
    model = SimpleUNet().eval()
    macs = 116_508_672 + 128 + 128 * 128
    print(f"torch {torch.__version__}, oneDNN enabled: {torch.backends.mkldnn.is_available()}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batch:
            x = torch.randn(batch, 1, 28, 28)
            t = torch.full((batch,), 0.5)
            with torch.inference_mode():
                ms = median_ms(lambda: model(x, t))
            gflops = 2 * macs * batch / (ms * 1e-3) / 1e9
            print(f"threads={threads} batch={batch}: {ms:.3f} ms per call, {ms / batch:.3f} ms per image, {gflops:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
