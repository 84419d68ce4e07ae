"""The seed's PyTorch training recipe (SimpleUNet, linear beta 1e-4..0.02, T = 300, Adam 2e-4,
batch 128, MSE on the noise), timed, for comparing throughput with `trainer fit`.

Written from the lecture notes' listing. torchvision is not installed here, so the MNIST IDX
file is read directly and fed through a DataLoader over a TensorDataset (shuffle=True), with the
notes' normalisation (x/255 - 0.5)/0.5. Prints one line per epoch and a final `images/s`.
Usage: seed_recipe_fit.py IMAGES_IDX_GZ [--limit N] [--epochs E] [--threads T]
"""
import argparse
import gzip
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class SimpleUNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.enc1 = nn.Conv2d(c, 64, 3, padding=1)
        self.enc2 = nn.Conv2d(64, 128, 3, padding=1)
        self.dec1 = nn.ConvTranspose2d(128, 64, 3, padding=1)
        self.dec2 = nn.ConvTranspose2d(64, c, 3, padding=1)
        self.act = nn.ReLU()
        self.time_mlp = nn.Sequential(nn.Linear(1, 128), nn.ReLU(), nn.Linear(128, 128))

    def forward(self, x, t):
        h = self.act(self.enc1(x))
        h = self.act(self.enc2(h))
        h = h + self.time_mlp(t.unsqueeze(-1)).view(-1, 128, 1, 1)
        h = self.act(self.dec1(h))
        return self.dec2(h)


def read_images(path, limit):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, h, w = struct.unpack(">IIII", raw[:16])
    assert magic == 0x803, f"{path}: not an IDX images file"
    x = torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8).view(n, 1, h, w)
    return x[:limit] if limit else x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("images")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = (read_images(args.images, args.limit).float() / 255 - 0.5) / 0.5
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x), batch_size=128, shuffle=True
    )
    T = 300
    betas = torch.linspace(1e-4, 0.02, T)
    acp = torch.cumprod(1.0 - betas, dim=0)
    model = SimpleUNet(1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    seen, start = 0, time.time()
    for epoch in range(args.epochs):
        total, steps, t0 = 0.0, 0, time.time()
        for (x0,) in loader:
            t = torch.randint(0, T, (x0.size(0),))
            noise = torch.randn_like(x0)
            a = acp[t].view(-1, 1, 1, 1)
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            loss = F.mse_loss(model(x_t, t.float() / T), noise)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
            seen += x0.size(0)
        secs = time.time() - t0
        print(f"epoch {epoch + 1}: loss {total / steps:.4f} ({len(x) / secs:.0f} img/s, {secs:.1f} s)")
    print(f"images/s {seen / (time.time() - start):.1f}")


if __name__ == "__main__":
    main()
