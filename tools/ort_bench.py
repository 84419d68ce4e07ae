#!/usr/bin/env python3
"""The ONNX Runtime side of `bench-cpu --ort`.

bench-cpu writes the model's weights as a safetensors file (the trainer's `state_dict`
names); this script builds the same network in PyTorch from them (SimpleUNet, the lecture
notes' model, or TinyUNet, as ddpm-core and ddpm-torch define it), exports it to ONNX with a
dynamic batch, and then answers bench-cpu's commands on stdin, one line each:

    session THREADS      a new CPU InferenceSession with THREADS intra-op threads
    input PATH N         the inputs: N images (f32, N*C*H*W) then N network time inputs t/T
    run K                K timed runs; answers "times" and K milliseconds
    output PATH          writes the last run's output (f32) to PATH
    quit

Each answer is one line: "ok", "times ..." or "error MESSAGE". Only `session.run` is timed,
as bench-cpu times only the core's forward pass.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file
from torch import nn

TIME_SCALE = 1000.0  # TinyUNet's embedding of t/T: sin/cos of 1000·t/T times the frequencies
MAX_PERIOD = 10000.0


class SimpleUNet(nn.Module):
    """enc1, enc2, time MLP added to enc2's output after its ReLU, dec1, dec2 (transposed)."""

    def __init__(self, t):
        super().__init__()
        h1, c = t["enc1.weight"].shape[:2]
        h2 = t["enc2.weight"].shape[0]
        self.h2 = h2
        self.enc1 = nn.Conv2d(c, h1, 3, padding=1)
        self.enc2 = nn.Conv2d(h1, h2, 3, padding=1)
        self.dec1 = nn.ConvTranspose2d(h2, h1, 3, padding=1)
        self.dec2 = nn.ConvTranspose2d(h1, c, 3, padding=1)
        self.time_mlp = nn.Sequential(nn.Linear(1, h2), nn.ReLU(), nn.Linear(h2, h2))

    def forward(self, x, t_in):
        h = torch.relu(self.enc1(x))
        h = torch.relu(self.enc2(h))
        h = h + self.time_mlp(t_in.unsqueeze(-1)).view(-1, self.h2, 1, 1)
        h = torch.relu(self.dec1(h))
        return self.dec2(h)


class TinyUNet(nn.Module):
    """ddpm-core's TinyUNet: enc0, down1 and down2 (stride 2), mid blocks, up2 and up1 (nearest
    ×2 and the skip concatenated), out; every block ReLU(conv(x) + Linear(temb)) per channel."""

    def __init__(self, t):
        super().__init__()
        w1, c = t["enc0.weight"].shape[:2]
        w2 = t["down1.weight"].shape[0]
        w3 = t["down2.weight"].shape[0]
        d, e = t["time_mlp.0.weight"].shape
        mids = ["mid"] + sorted(
            (k[: -len(".weight")] for k in t if k.startswith("mid") and k[3:-len(".weight")].isdigit()),
            key=lambda k: int(k[3:]),
        )
        self.time0 = nn.Linear(e, d)
        self.time2 = nn.Linear(d, d)
        layout = [("enc0", c, w1, 1), ("down1", w1, w2, 2), ("down2", w2, w3, 2)]
        layout += [(m, w3, w3, 1) for m in mids]
        layout += [("up2", w3 + w2, w2, 1), ("up1", w2 + w1, w1, 1)]
        self.names = [n for n, *_ in layout]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, stride=s, padding=1) for _, i, o, s in layout)
        self.projs = nn.ModuleList(nn.Linear(d, o) for _, _, o, _ in layout)
        self.out = nn.Conv2d(w1, c, 3, padding=1)
        half = e // 2
        # ddpm-core's frequencies: exp(−ln(max_period)·k/(half − 1)) in f64, rounded to f32.
        freqs = [math.exp(-math.log(MAX_PERIOD) * k / (half - 1)) for k in range(half)]
        self.register_buffer("freqs", torch.tensor(freqs, dtype=torch.float32))
        # A class-conditional network computes for "no class" (its last table row).
        null = t["class_emb.weight"][-1].clone() if "class_emb.weight" in t else torch.zeros(d)
        self.register_buffer("null_class", null)

    def state_from(self, t):
        s = {"time0.weight": t["time_mlp.0.weight"], "time0.bias": t["time_mlp.0.bias"],
             "time2.weight": t["time_mlp.2.weight"], "time2.bias": t["time_mlp.2.bias"],
             "out.weight": t["out.weight"], "out.bias": t["out.bias"],
             "freqs": self.freqs, "null_class": self.null_class}
        for k, n in enumerate(self.names):
            s[f"convs.{k}.weight"] = t[f"{n}.weight"]
            s[f"convs.{k}.bias"] = t[f"{n}.bias"]
            s[f"projs.{k}.weight"] = t[f"{n}_temb.weight"]
            s[f"projs.{k}.bias"] = t[f"{n}_temb.bias"]
        return s

    def forward(self, x, t_in):
        arg = (t_in * TIME_SCALE).unsqueeze(-1) * self.freqs.unsqueeze(0)
        emb = torch.cat([torch.sin(arg), torch.cos(arg)], -1)
        temb = self.time2(torch.relu(self.time0(emb))) + self.null_class

        def block(k, h):
            p = self.projs[k](temb)
            return torch.relu(self.convs[k](h) + p.view(p.shape[0], -1, 1, 1))

        up = lambda h: nn.functional.interpolate(h, scale_factor=2.0, mode="nearest")  # noqa: E731
        n = len(self.names)
        s1 = block(0, x)
        s2 = block(1, s1)
        m = s2
        for k in range(2, n - 2):
            m = block(k, m)
        u2 = block(n - 2, torch.cat([up(m), s2], 1))
        u1 = block(n - 1, torch.cat([up(u2), s1], 1))
        return self.out(u1)


def build(path):
    t = load_file(path)
    if "enc0.weight" in t:
        net = TinyUNet(t)
        net.load_state_dict(net.state_from(t))
    elif "enc1.weight" in t:
        net = SimpleUNet(t)
        net.load_state_dict(t)
    else:
        raise ValueError(f"{path}: neither a SimpleUNet nor a TinyUNet state_dict")
    c = net.out.weight.shape[0] if isinstance(net, TinyUNet) else net.dec2.weight.shape[1]
    return net.eval(), c


def export(net, c, h, w, path):
    x = torch.zeros(2, c, h, w)
    t_in = torch.full((2,), 0.5)
    axes = {"x": {0: "n"}, "t_in": {0: "n"}, "out": {0: "n"}}
    with torch.no_grad():
        torch.onnx.export(net, (x, t_in), path, input_names=["x", "t_in"], output_names=["out"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--safetensors", required=True, help="the model's weights (from bench-cpu)")
    ap.add_argument("--onnx", required=True, help="where to write the ONNX export")
    ap.add_argument("--height", type=int, default=28)
    ap.add_argument("--width", type=int, default=28)
    a = ap.parse_args()
    net, c = build(a.safetensors)
    export(net, c, a.height, a.width, a.onnx)
    print(f"ready onnxruntime {ort.__version__} torch {torch.__version__}", flush=True)
    sess, feeds, last = None, None, None
    for line in sys.stdin:
        cmd = line.split()
        try:
            if not cmd:
                continue
            if cmd[0] == "quit":
                break
            if cmd[0] == "session":
                o = ort.SessionOptions()
                o.intra_op_num_threads = int(cmd[1])
                o.inter_op_num_threads = 1
                o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                sess = ort.InferenceSession(a.onnx, o, providers=["CPUExecutionProvider"])
                print("ok", flush=True)
            elif cmd[0] == "input":
                n = int(cmd[2])
                raw = np.fromfile(cmd[1], dtype="<f4")
                x = raw[: n * c * a.height * a.width].reshape(n, c, a.height, a.width)
                feeds = {"x": np.ascontiguousarray(x), "t_in": np.ascontiguousarray(raw[x.size:])}
                print("ok", flush=True)
            elif cmd[0] == "run":
                times = []
                for _ in range(int(cmd[1])):
                    s = time.perf_counter()
                    last = sess.run(None, feeds)[0]
                    times.append((time.perf_counter() - s) * 1e3)
                print("times " + " ".join(f"{v:.6f}" for v in times), flush=True)
            elif cmd[0] == "output":
                np.ascontiguousarray(last, dtype="<f4").tofile(cmd[1])
                print("ok", flush=True)
            else:
                print(f"error unknown command {cmd[0]}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure goes back to bench-cpu as a line
            print(f"error {type(e).__name__}: {e}".replace("\n", " "), flush=True)
    if os.path.exists(a.onnx):
        os.remove(a.onnx)


if __name__ == "__main__":
    main()
