#!/usr/bin/env python3
"""Golden vectors from the specification itself: the seed's SimpleUNet and DDPM sampler, written
fresh in PyTorch from the lecture notes' description, run on fixed weights and inputs.

Writes into the output directory (default: this script's directory):
  weights.safetensors     the model's state_dict (torch.manual_seed(0) default init), seed names
  forward.safetensors     x [4,1,28,28] in [-3,3], t [4] (int64 timesteps), eps = model(x, t/T)
  trajectory.safetensors  one 300-step DDPM trajectory (fixed_large, as in the notes) from x_T:
                          x_T and x_t after the steps t = 299, 200, 100, 0 (keys x_after_299, ...)
  meta.json               torch version, schedule, noise recipe, file list

Noise for the trajectory must be reproducible by any implementation, so it does not come from
torch's RNG: value i of stream s is (sum of 12 uniforms - 6) with uniform j = (u64 >> 40) * 2^-24
from SplitMix64 of (s * 2^32 + i * 16 + j); the sum is exact in float64 and rounded once to
float32. Stream 0 is x_T; stream 300 - k is the z added at step t = k (k >= 1).

With --check DIR it regenerates into a temporary directory and compares with DIR: weights,
inputs and noise bit for bit, network outputs and trajectories within a relative tolerance
(oneDNN may pick other kernels on other CPUs). Exit status 1 on drift.
"""
import argparse
import json
import os
import struct
import sys
import tempfile

import torch
import torch.nn as nn

T = 300
BETA_START, BETA_END = 1e-4, 0.02
H = W = 28
MASK64 = (1 << 64) - 1


class SimpleUNet(nn.Module):
    """The notes' model: enc1, enc2, time_mlp (Linear(1,128), ReLU, Linear(128,128)), dec1, dec2."""

    def __init__(self, c=1):
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
        temb = self.time_mlp(t.unsqueeze(-1)).view(-1, 128, 1, 1)
        h = h + temb
        h = self.act(self.dec1(h))
        return self.dec2(h)


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def golden_noise(stream, n):
    out = []
    for i in range(n):
        acc = 0
        for j in range(12):
            acc += splitmix64((stream << 32) + i * 16 + j) >> 40
        out.append(acc * 2.0**-24 - 6.0)
    return torch.tensor(out, dtype=torch.float64).to(torch.float32)


def schedule():
    # f64 then one rounding to f32, as ddpm-core and the trainer compute it.
    betas = torch.linspace(BETA_START, BETA_END, T, dtype=torch.float64)
    alphas = 1.0 - betas
    acp = torch.cumprod(alphas, 0)
    return betas.float(), alphas.float(), acp.float()


def save_safetensors(path, tensors):
    """A minimal safetensors writer: 8-byte little-endian header size, JSON header, raw data."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.contiguous().cpu()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        data = bytes(t.reshape(-1).view(torch.uint8).tolist())
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dtype = {"F32": torch.float32, "I64": torch.int64}[info["dtype"]]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=dtype).reshape(info["shape"])
    return out


@torch.no_grad()
def generate(out_dir):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SimpleUNet(1).eval()
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(4, 1, H, W, generator=gen)).clamp(-3.0, 3.0)
    t = torch.tensor([0, 17, 150, 299], dtype=torch.int64)
    eps = model(x, t.float() / T)

    betas, alphas, acp = schedule()
    n = H * W
    xt = golden_noise(0, n).view(1, 1, H, W)
    traj = {"x_T": xt.clone()}
    for i in reversed(range(T)):
        tt = torch.full((1,), i, dtype=torch.float32) / T
        eps_pred = model(xt, tt)
        coef1 = 1 / alphas[i].sqrt()
        coef2 = betas[i] / (1 - acp[i]).sqrt()
        xt = coef1 * (xt - coef2 * eps_pred)
        if i > 0:
            xt = xt + betas[i].sqrt() * golden_noise(T - i, n).view(1, 1, H, W)
        if i in (299, 200, 100, 0):
            traj[f"x_after_{i}"] = xt.clone()

    os.makedirs(out_dir, exist_ok=True)
    save_safetensors(os.path.join(out_dir, "weights.safetensors"), weights)
    save_safetensors(os.path.join(out_dir, "forward.safetensors"), {"x": x, "t": t, "eps": eps})
    save_safetensors(os.path.join(out_dir, "trajectory.safetensors"), traj)
    meta = {
        "torch_version": torch.__version__,
        "threads": 1,
        "model": "SimpleUNet(c=1): enc1 Conv2d(1,64), enc2 Conv2d(64,128), time_mlp Linear(1,128) ReLU Linear(128,128), dec1 ConvTranspose2d(128,64), dec2 ConvTranspose2d(64,1); 3x3, padding 1",
        "weights": "torch.manual_seed(0), PyTorch default init",
        "schedule": {"kind": "linear", "T": T, "beta_start": BETA_START, "beta_end": BETA_END, "precision": "float64, rounded to float32"},
        "network_time_input": "t / T as float32",
        "sampler": "DDPM fixed_large as in the notes: x = (x - beta/sqrt(1-acp) * eps)/sqrt(alpha) + sqrt(beta) * z for t > 0",
        "noise": "stream s, index i: sum_{j<12} (splitmix64(s*2^32 + i*16 + j) >> 40) * 2^-24 - 6, float64 then float32; stream 0 = x_T, stream T-t = z at step t",
        "files": ["weights.safetensors", "forward.safetensors", "trajectory.safetensors"],
    }
    with open(os.path.join(out_dir, "meta.json.tmp"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    os.replace(os.path.join(out_dir, "meta.json.tmp"), os.path.join(out_dir, "meta.json"))


# Relative drift allowed between a regeneration and the committed outputs: one forward pass
# differs only by float32 summation order between oneDNN kernels (~1e-6); the 300-step
# trajectory amplifies that, so it gets a wider bound.
FORWARD_DRIFT = 1e-5
TRAJECTORY_DRIFT = 1e-4


def check(committed):
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp)
        bad = []
        for fname in ("weights.safetensors", "forward.safetensors", "trajectory.safetensors"):
            a, b = load_safetensors(os.path.join(tmp, fname)), load_safetensors(os.path.join(committed, fname))
            if a.keys() != b.keys():
                bad.append(f"{fname}: tensor names differ")
                continue
            for k in a:
                exact = fname == "weights.safetensors" or k in ("x", "t", "x_T")
                if exact:
                    if not torch.equal(a[k], b[k]):
                        bad.append(f"{fname}:{k} differs bit-wise")
                else:
                    tol = FORWARD_DRIFT if fname == "forward.safetensors" else TRAJECTORY_DRIFT
                    err = ((a[k] - b[k]).abs().max() / b[k].abs().max()).item()
                    print(f"{fname}:{k}: relative drift {err:.2e} (bound {tol:.0e})")
                    if not err <= tol:
                        bad.append(f"{fname}:{k} drifted by {err:.2e} > {tol:.0e}")
        if bad:
            print("golden vectors drifted:\n  " + "\n  ".join(bad))
            return 1
        print("golden vectors: no drift")
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)), help="output directory")
    ap.add_argument("--check", metavar="DIR", help="regenerate and compare with DIR instead of writing")
    args = ap.parse_args()
    if args.check:
        sys.exit(check(args.check))
    generate(args.out)
    print(f"wrote golden vectors to {args.out} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
