#!/usr/bin/python3
"""Goldens from the real diffusers schedulers, step for step: DDPMScheduler, DDIMScheduler, PNDMScheduler
(skip_prk_steps), DPMSolverMultistepScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler and
HeunDiscreteScheduler, each run on the same model outputs and noise as test/schedulers.test.ts gives ddpm's samplers.
Writes test/goldens/schedulers.json.

The oracle is diffusers v0.27.2 (Apache-2.0), checked out outside this repository as scripts/diffusers_oracle.py
describes, run with Debian's python3-torch:

  PYTHONPATH=diffusers/src:hfhub/src:STUBS /usr/bin/python3 scripts/diffusers_schedulers.py

The model is a formula both sides compute: out(x, t) = a(t) x + b(t) c with a(t) = 0.6 + 0.3 cos(t / 300),
b(t) = 0.25 sin(t / 170 + 0.4) and c = det(shape, 7) (eps, v or x0 by the case's prediction type); the k-th step's
noise is det(shape, 100 + k) (the schedulers' randn_tensor replaced). The per-step samples are recorded in the
variance-preserving scale x_t (the sigma schedulers' samples divided by sqrt(sigma^2 + 1)), after each of ddpm's
steps (Heun's pairs of scheduler steps and PNDM's improved-Euler start count as one).
"""
import json
import math
import os

import numpy as np
import torch

import diffusers
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, HeunDiscreteScheduler, PNDMScheduler)
import diffusers.schedulers.scheduling_ddim as ddim_module
import diffusers.schedulers.scheduling_ddpm as ddpm_module
import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a_module

assert diffusers.__version__ == "0.27.2", f"expected diffusers 0.27.2, got {diffusers.__version__}"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "test", "goldens", "schedulers.json")
SHAPE = [2, 1, 2, 2]


def det(shape, k=0.0, scale=1.0):
    """scale * sin(1.7 i + 0.3 + k) as float32 (the test computes the same values)."""
    n = int(np.prod(shape))
    return torch.tensor((scale * np.sin(1.7 * np.arange(n) + 0.3 + k)).astype(np.float32)).reshape(shape)


C = det(SHAPE, 7.0)


def model(x, t):
    t = float(t)
    return x * (0.6 + 0.3 * math.cos(t / 300)) + C * (0.25 * math.sin(t / 170 + 0.4))


STEP = [0]


def fake_randn(shape, generator=None, device=None, dtype=None, layout=None):
    return det(list(shape), 100.0 + STEP[0])


for m in (ddim_module, ddpm_module, euler_a_module):
    m.randn_tensor = fake_randn

BASE = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
# name, scheduler class, its config, step() keywords, and ddpm's options for the same run
CASES = [
    ("ddpm-leading-fixed_small", DDPMScheduler, dict(variance_type="fixed_small"), {},
     dict(sampler="ancestral", spacing="leading", variance="fixedsmall", clip=True)),
    ("ddpm-trailing-fixed_large", DDPMScheduler, dict(variance_type="fixed_large", timestep_spacing="trailing"), {},
     dict(sampler="ancestral", spacing="trailing", variance="fixedlarge", clip=True)),
    ("ddpm-linspace-v", DDPMScheduler, dict(timestep_spacing="linspace", prediction_type="v_prediction",
                                            clip_sample=False), {},
     dict(sampler="ancestral", spacing="linspace", variance="fixedsmall", prediction="v", clip=False)),
    ("ddim-leading", DDIMScheduler, dict(clip_sample=False), dict(eta=0.0),
     dict(sampler="ddim", spacing="leading", clip=False)),
    ("ddim-leading-offset1-clip", DDIMScheduler, dict(steps_offset=1, clip_sample=True), dict(eta=0.0),
     dict(sampler="ddim", spacing="leading", stepsOffset=1, clip=True)),
    ("ddim-trailing-eta1", DDIMScheduler, dict(timestep_spacing="trailing", clip_sample=False), dict(eta=1.0),
     dict(sampler="ddim", spacing="trailing", eta=1.0, clip=False)),
    ("ddim-linspace-no-alpha-one-x0", DDIMScheduler, dict(timestep_spacing="linspace", set_alpha_to_one=False,
                                                          prediction_type="sample", clip_sample=False),
     dict(eta=0.5), dict(sampler="ddim", spacing="linspace", setAlphaToOne=False, eta=0.5, prediction="x0",
                         clip=False)),
    ("pndm-leading", PNDMScheduler, dict(skip_prk_steps=True), {}, dict(sampler="plms", spacing="leading")),
    ("pndm-linspace-v", PNDMScheduler, dict(skip_prk_steps=True, timestep_spacing="linspace",
                                            prediction_type="v_prediction"), {},
     dict(sampler="plms", spacing="linspace", prediction="v")),
    ("dpm2m-linspace", DPMSolverMultistepScheduler, dict(solver_order=2), {}, dict(sampler="dpm2m", spacing="linspace")),
    ("dpm3m-linspace", DPMSolverMultistepScheduler, dict(solver_order=3), {}, dict(sampler="dpm3m", spacing="linspace")),
    ("dpm2m-karras", DPMSolverMultistepScheduler, dict(solver_order=2, use_karras_sigmas=True), {},
     dict(sampler="dpm2m", spacing="karras")),
    ("dpm3m-logsnr-x0", DPMSolverMultistepScheduler, dict(solver_order=3, use_lu_lambdas=True,
                                                          prediction_type="sample"), {},
     dict(sampler="dpm3m", spacing="logsnr", prediction="x0")),
    ("dpm3m-trailing-v", DPMSolverMultistepScheduler, dict(solver_order=3, timestep_spacing="trailing",
                                                           prediction_type="v_prediction"), {},
     dict(sampler="dpm3m", spacing="trailing", prediction="v")),
    ("euler-linspace", EulerDiscreteScheduler, {}, {}, dict(sampler="euler", spacing="linspace")),
    ("euler-karras-v", EulerDiscreteScheduler, dict(use_karras_sigmas=True, prediction_type="v_prediction"), {},
     dict(sampler="euler", spacing="karras", prediction="v")),
    ("euler-leading", EulerDiscreteScheduler, dict(timestep_spacing="leading", steps_offset=1), {},
     dict(sampler="euler", spacing="leading", stepsOffset=1)),
    ("euler-a-linspace", EulerAncestralDiscreteScheduler, {}, {}, dict(sampler="euler-a", spacing="linspace")),
    ("euler-a-trailing-v", EulerAncestralDiscreteScheduler, dict(timestep_spacing="trailing",
                                                                 prediction_type="v_prediction"), {},
     dict(sampler="euler-a", spacing="trailing", prediction="v")),
    ("heun-linspace", HeunDiscreteScheduler, {}, {}, dict(sampler="heun", spacing="linspace")),
    ("heun-karras-x0", HeunDiscreteScheduler, dict(use_karras_sigmas=True, prediction_type="sample"), {},
     dict(sampler="heun", spacing="karras", prediction="x0")),
]
SIGMA = (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, HeunDiscreteScheduler)


def run(cls, config, kw, n):
    s = cls(**BASE, **config)
    s.set_timesteps(n)
    x = det(SHAPE, 50.0)  # x_T in the variance-preserving scale
    sigma_scale = lambda i: float((s.sigmas[i] ** 2 + 1) ** 0.5)
    if cls in SIGMA:
        x = x * sigma_scale(0)
    steps, timesteps = [], []
    for i, t in enumerate(s.timesteps):
        # ddpm's step index: Heun's second halves and PNDM's second call belong to the step before
        k = (i + 1) // 2 if cls is HeunDiscreteScheduler else max(0, i - 1) if cls is PNDMScheduler else i
        STEP[0] = k
        inp = s.scale_model_input(x, t)
        x = s.step(model(inp, t), t, x, **kw).prev_sample
        heun_second, pndm_start = cls is HeunDiscreteScheduler and i % 2 == 1, cls is PNDMScheduler and i == 0
        if not heun_second and not (cls is PNDMScheduler and i == 1):
            timesteps.append(float(t))
        ends = not pndm_start or len(s.timesteps) == 1
        if cls is HeunDiscreteScheduler:
            ends = heun_second or i == len(s.timesteps) - 1
        if ends:
            vp = x / sigma_scale(s.step_index) if cls in SIGMA else x
            steps.append([round(float(v), 9) for v in vp.reshape(-1).tolist()])
    return steps, timesteps


torch.set_grad_enabled(False)
out = {"diffusers": diffusers.__version__, "torch": torch.__version__, "shape": SHAPE, "cases": []}
for name, cls, config, kw, ours in CASES:
    for n in (10, 20, 50):
        steps, timesteps = run(cls, config, kw, n)
        out["cases"].append({"name": name, "steps": n, "ours": ours, "timesteps": timesteps, "x": steps})
        print(f"{name} {n}: {len(steps)} steps, timesteps {timesteps[:3]}...{timesteps[-2:]}")
with open(OUT, "w") as f:
    json.dump(out, f)
print(f"wrote {OUT}")
