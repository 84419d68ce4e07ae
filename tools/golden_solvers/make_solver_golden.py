#!/usr/bin/env python3
"""Golden vectors for the multistep solvers from Hugging Face diffusers' schedulers.

Two files, one per solver, each from the scheduler with its defaults for our case:

  dpm_solver_golden.json  DPMSolverMultistepScheduler: algorithm_type "dpmsolver++", solver_order
                          2, solver_type "midpoint", lower_order_final True
  unipc_golden.json       UniPCMultistepScheduler: solver_type "bh2", solver_order 2,
                          predict_x0 True, lower_order_final True, corrector at every step

both with final_sigmas_type "zero", no Karras (or other) sigmas, no thresholding, steps_offset 0.
For each solver and T = 300, the schedules linear (beta 1e-4..0.02) and
cosine (squaredcos_cap_v2), predictions epsilon and v_prediction, 5/10/20 steps and the spacings
linspace/leading/trailing, it records:

  timesteps   diffusers' own list from set_timesteps (ints)
  x           one deterministic trajectory in float64: x after every step, from a fixed x_T
              (x_T[i] = 1.5*sin(0.7*i + 0.3) + 0.05*i - 0.4, i < 16) with a fixed "model output"
              out(x, t) = 0.5*x + 0.1*sin(x + t/T), so the multistep history matters

The schedule is ddpm-core's: alphas_cumprod in float64, rounded once to float32 (diffusers'
own table differs: it rounds the betas to float32 and multiplies in float32, ~1e-5 relative at
the cosine schedule's end). Before computing, the script checks that diffusers' betas are ours
rounded to float32 for the cosine schedule (the same definition: beta_t = min(1 - f(t+1)/f(t),
0.999), s = 0.008), and exits 1 if not. That table is loaded into the scheduler as float64, its
sigmas are replaced by float64 ones after set_timesteps, and scheduler.step() runs in float64:
DPM-Solver's step() casts the sample to float32 (`sample.to(torch.float32)`), so during the
golden run the module's `torch` name is a proxy whose `float32` is float64, and torch's default
dtype is float64 (UniPC builds its coefficient tensors from Python floats); nothing else
changes: step()'s order logic and update formulas are diffusers' own. As a sanity check of that patch the same
trajectory is also run by the unpatched scheduler in float32 on the same table; each case
records that run's relative difference from the float64 one (informational, not compared).

timestep_fingerprints: for T = 300 and 1000 and each spacing, FNV-1a 64 over, for every N in
1..=T, the u32 little-endian words N, t_0, ..., t_{N-1} of diffusers' list; where diffusers'
trailing list has N + 1 entries (a float arange quirk that appends -1) only its first N are
hashed and N is listed under length_mismatch.

With --check DIR it regenerates into a temporary directory and compares both files with DIR:
timesteps and fingerprints exactly, trajectories to a relative tolerance. Exit status 1 on drift.
"""
import argparse
import json
import math
import os
import sys
import tempfile
import types

import diffusers
import diffusers.schedulers.scheduling_dpmsolver_multistep as dpm_module
import diffusers.schedulers.scheduling_unipc_multistep as unipc_module
import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

T = 300
N_X = 16
STEPS = (5, 10, 20)
SPACINGS = ("linspace", "leading", "trailing")
PREDICTIONS = ("epsilon", "v_prediction")
SCHEDULES = ("linear", "cosine")



def check_dpm_config(s):
    c = s.config
    assert c.algorithm_type == "dpmsolver++" and c.solver_order == 2
    assert c.solver_type == "midpoint" and c.lower_order_final


def check_unipc_config(s):
    c = s.config
    assert c.solver_type == "bh2" and c.solver_order == 2 and c.predict_x0
    assert c.lower_order_final and not s.disable_corrector and s.solver_p is None


# name -> (scheduler class, its module, file, config check, description)
SOLVERS = {
    "dpmpp-2m": (DPMSolverMultistepScheduler, dpm_module, "dpm_solver_golden.json", check_dpm_config,
                 "DPMSolverMultistepScheduler: dpmsolver++, order 2, midpoint, lower_order_final, final_sigmas_type zero, steps_offset 0"),
    "unipc": (UniPCMultistepScheduler, unipc_module, "unipc_golden.json", check_unipc_config,
              "UniPCMultistepScheduler: bh2, order 2, predict_x0, UniC corrector at every step, lower_order_final, final_sigmas_type zero, steps_offset 0"),
}
FILES = [v[2] for v in SOLVERS.values()]


def our_betas(kind):
    """ddpm-core's betas in float64 (ScheduleConfig::linear(300, 1e-4, 0.02) / ::cosine(300))."""
    if kind == "linear":
        return [1e-4 + (0.02 - 1e-4) * t / (T - 1) for t in range(T)]

    def f(t):
        c = math.cos((t / T + 0.008) / 1.008 * math.pi / 2)
        return c * c

    return [min(1.0 - f(t + 1) / f(t), 0.999) for t in range(T)]


def our_alphas_cumprod(kind):
    """float64 cumulative product, rounded once to float32, returned as float64 values."""
    acp, out = 1.0, []
    for b in our_betas(kind):
        acp *= 1.0 - b
        out.append(acp)
    return np.array(out, dtype=np.float64).astype(np.float32).astype(np.float64)


def check_cosine_definition():
    for cls, *_ in SOLVERS.values():
        check_cosine_betas(cls)


def check_cosine_betas(cls):
    d = cls(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    ours = torch.tensor(our_betas("cosine"), dtype=torch.float64).to(torch.float32)
    if not torch.equal(d.betas, ours):
        print("diffusers' squaredcos_cap_v2 betas differ from ScheduleConfig::cosine's")
        sys.exit(1)


def x_t_init():
    return [1.5 * math.sin(0.7 * i + 0.3) + 0.05 * i - 0.4 for i in range(N_X)]


def model_output(x, t):
    return 0.5 * x + 0.1 * torch.sin(x + t / T)


def make_scheduler(solver, kind, prediction, spacing, steps, acp, dtype):
    cls, _, _, check_config, _ = SOLVERS[solver]
    beta_schedule = {"linear": "linear", "cosine": "squaredcos_cap_v2"}[kind]
    s = cls(
        num_train_timesteps=T,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule=beta_schedule,
        prediction_type=prediction,
        timestep_spacing=spacing,
    )
    check_config(s)
    assert s.config.final_sigmas_type == "zero" and not s.config.use_karras_sigmas
    assert not s.config.thresholding and s.config.steps_offset == 0
    # ddpm-core's table in place of diffusers' float32 cumprod (set_timesteps reads it).
    s.alphas_cumprod = torch.tensor(acp, dtype=torch.float64)
    s.alpha_t = torch.sqrt(s.alphas_cumprod)
    s.sigma_t = torch.sqrt(1 - s.alphas_cumprod)
    s.lambda_t = torch.log(s.alpha_t) - torch.log(s.sigma_t)
    s.set_timesteps(steps)
    if dtype == torch.float64:
        ts = s.timesteps.numpy()
        sig = np.sqrt((1.0 - acp[ts]) / acp[ts])
        s.sigmas = torch.tensor(np.concatenate([sig, [0.0]]), dtype=torch.float64)
    return s


class _Float64Torch(types.ModuleType):
    """`torch` with float32 standing for float64, for step()'s upcast of the sample."""

    def __getattr__(self, name):
        return torch.float64 if name == "float32" else getattr(torch, name)


def trajectory(solver, s, dtype):
    module = SOLVERS[solver][1]
    # One image of N_X values: (batch 1, N_X), the shape UniPC's einsum expects.
    x = torch.tensor([x_t_init()], dtype=torch.float64).to(dtype)
    out = []
    saved = module.torch
    if dtype == torch.float64:
        module.torch = _Float64Torch("torch")
        torch.set_default_dtype(torch.float64)
    try:
        for t in s.timesteps:
            x = s.step(model_output(x, int(t)), t, x).prev_sample
            assert x.dtype == dtype
            out.append(x.to(torch.float64).reshape(-1))
    finally:
        module.torch = saved
        torch.set_default_dtype(torch.float32)
    return out


def rel_diff(a, b):
    """max |a - b| / max |b| over one vector, the largest over the steps."""
    return max(((u - v).abs().max() / v.abs().max().clamp_min(1e-30)).item() for u, v in zip(a, b))


def fnv1a64(words):
    h = 0xCBF29CE484222325
    for w in words:
        for byte in int(w & 0xFFFFFFFF).to_bytes(4, "little"):
            h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def fingerprints(solver):
    cls = SOLVERS[solver][0]
    out = []
    for big_t in (300, 1000):
        for spacing in SPACINGS:
            s = cls(num_train_timesteps=big_t, timestep_spacing=spacing)
            words, mismatch = [], []
            for n in range(1, big_t + 1):
                s.set_timesteps(n)
                ts = [int(v) for v in s.timesteps]
                if len(ts) != n:
                    mismatch.append(n)
                words.append(n)
                words.extend(ts[:n])
            out.append({"T": big_t, "spacing": spacing, "fnv1a64": f"{fnv1a64(words):016x}",
                        "length_mismatch": mismatch})
    return out


def generate(out_dir):
    torch.set_num_threads(1)
    check_cosine_definition()
    for solver in SOLVERS:
        generate_solver(solver, out_dir)


def generate_solver(solver, out_dir):
    _, _, file, _, description = SOLVERS[solver]
    cases = []
    for kind in SCHEDULES:
        acp = our_alphas_cumprod(kind)
        for prediction in PREDICTIONS:
            for spacing in SPACINGS:
                for steps in STEPS:
                    s64 = make_scheduler(solver, kind, prediction, spacing, steps, acp, torch.float64)
                    s32 = make_scheduler(solver, kind, prediction, spacing, steps, acp, torch.float32)
                    assert torch.equal(s64.timesteps, s32.timesteps)
                    x64 = trajectory(solver, s64, torch.float64)
                    x32 = trajectory(solver, s32, torch.float32)
                    cases.append({
                        "schedule": kind,
                        "prediction": prediction,
                        "spacing": spacing,
                        "steps": steps,
                        "timesteps": [int(v) for v in s64.timesteps],
                        "diffusers_float32_rel_diff": float(f"{rel_diff(x32, x64):.3g}"),
                        "x": [[float(f"{v:.12g}") for v in row.tolist()] for row in x64],
                    })
    doc = {
        "generator": "tools/golden_solvers/make_solver_golden.py",
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "scheduler": description,
        "T": T,
        "alphas_cumprod": "ddpm-core's: float64, rounded once to float32",
        "model_output": "0.5*x + 0.1*sin(x + t/T), t the step's integer timestep",
        "x_T": [float(f"{v:.17g}") for v in x_t_init()],
        "cases": cases,
        "timestep_fingerprints": fingerprints(solver),
    }
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, file + ".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, os.path.join(out_dir, file))


# Relative drift allowed between a regeneration and the committed file: values are written
# with 12 significant digits of a float64 computation whose only platform dependence is libm's
# last bit, so 1e-10 leaves room without hiding a change of formula (those move values by far
# more than 1e-6).
TRAJECTORY_DRIFT = 1e-10


def check(committed):
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp)
        status = 0
        for file in FILES:
            status |= check_file(file, tmp, committed)
        return status


def check_file(file, tmp, committed):
    with open(os.path.join(tmp, file)) as f:
        new = json.load(f)
    with open(os.path.join(committed, file)) as f:
        old = json.load(f)
    bad = []
    if new["timestep_fingerprints"] != old["timestep_fingerprints"]:
        bad.append("timestep fingerprints differ")
    if len(new["cases"]) != len(old["cases"]) or new["x_T"] != old["x_T"]:
        bad.append("case list or x_T differs")
    worst = 0.0
    for a, b in zip(new["cases"], old["cases"]):
        name = f"{b['schedule']}/{b['prediction']}/{b['spacing']}/{b['steps']}"
        keys = ("schedule", "prediction", "spacing", "steps", "timesteps")
        if any(a[k] != b[k] for k in keys):
            bad.append(f"{name}: configuration or timesteps differ")
            continue
        err = rel_diff([torch.tensor(r) for r in a["x"]], [torch.tensor(r) for r in b["x"]])
        worst = max(worst, err)
        if not err <= TRAJECTORY_DRIFT:
            bad.append(f"{name}: trajectory drifted by {err:.2e} > {TRAJECTORY_DRIFT:.0e}")
    print(f"{file}: largest trajectory drift {worst:.2e} (bound {TRAJECTORY_DRIFT:.0e})")
    if bad:
        print(f"{file}: golden vectors drifted:\n  " + "\n  ".join(bad))
        return 1
    print(f"{file}: no drift")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)), help="output directory")
    ap.add_argument("--check", metavar="DIR", help="regenerate and compare with DIR instead of writing")
    args = ap.parse_args()
    if args.check:
        sys.exit(check(args.check))
    generate(args.out)
    print(f"wrote {', '.join(FILES)} to {args.out} (diffusers {diffusers.__version__}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
