#!/usr/bin/python3
"""Goldens from the real diffusers code: a folder written by ddpm, loaded by diffusers' UNet2DModel.from_pretrained,
and its schedulers run on the same inputs. Writes test/goldens/diffusers.json.

The oracle is diffusers v0.27.2 (tag v0.27.2 of github.com/huggingface/diffusers, Apache-2.0) with
huggingface_hub v0.21.4, checked out outside this repository, run with Debian's python3-torch 1.13 (newer diffusers
need torch 2). The compiled safetensors package is not installable offline; a stand-in of a few lines that reads the
format goes on PYTHONPATH (see the folder README of the checkout script below). Nothing of diffusers is copied here.

  git clone https://github.com/huggingface/diffusers && git -C diffusers checkout v0.27.2
  git clone https://github.com/huggingface/huggingface_hub hfhub && git -C hfhub checkout v0.21.4
  PYTHONPATH=diffusers/src:hfhub/src:STUBS /usr/bin/python3 scripts/diffusers_oracle.py

Inputs are deterministic formulas (det below; the test computes the same ones), so the JSON holds outputs only.
"""
import json
import os

import numpy as np
import torch

import diffusers
from diffusers import DDIMScheduler, RePaintScheduler, UNet2DModel
import diffusers.schedulers.scheduling_repaint as repaint_module

assert diffusers.__version__ == "0.27.2", f"expected diffusers 0.27.2, got {diffusers.__version__}"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "test", "goldens", "diffusers.json")


def det(shape, k=0.0, scale=1.0):
    """scale * sin(1.7 i + 0.3 + k) as float32 (test/diffusers.test.ts computes the same values)."""
    n = int(np.prod(shape))
    return torch.tensor((scale * np.sin(1.7 * np.arange(n) + 0.3 + k)).astype(np.float32)).reshape(shape)


def lst(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


torch.set_grad_enabled(False)
out = {"diffusers": diffusers.__version__, "torch": torch.__version__}
for name in ["mnist", "cifar10"]:
    folder = os.path.join(ROOT, "models", name)
    unet = UNet2DModel.from_pretrained(folder).eval()
    c = unet.config
    shape = [2, c.in_channels, c.sample_size, c.sample_size]
    # eps of the network at two timesteps
    x = det(shape, 1.0)
    t = torch.tensor([10, 700])
    eps = unet(x, t).sample
    # DDIM in 10 steps from x_T = det(shape, 2.0), eta 0, diffusers' defaults for the rest (leading spacing,
    # set_alpha_to_one, clip_sample from the folder's scheduler_config.json)
    sched = DDIMScheduler.from_pretrained(folder)
    sched.set_timesteps(10)
    xt = det(shape, 2.0)
    steps = []
    for ts in sched.timesteps:
        e = unet(xt, ts).sample
        xt = sched.step(e, ts, xt, eta=0.0).prev_sample
        steps.append(int(ts))
    out[name] = {"shape": shape, "t": [10, 700], "eps": lst(eps), "ddim10": {"timesteps": steps, "x0": lst(xt)}}
    print(f"{name}: eps |max| {eps.abs().max():.4f}, DDIM-10 timesteps {steps}")

# RePaint (RePaintScheduler, stepped as RePaintPipeline does) on the shipped MNIST model: known = det(shape, 3)
# clipped, the bottom half to be generated (mask 1 = keep), x_T = det(shape, 9), and the k-th noise the scheduler
# draws = det(shape, 10 + k) (its randn_tensor replaced), 20 steps, jumps of 5 passed twice, eta 0 and 1
folder = os.path.join(ROOT, "models", "mnist")
unet = UNet2DModel.from_pretrained(folder).eval()
shape = [2, 1, 28, 28]
known = det(shape, 3.0).clamp(-1, 1)
mask = torch.ones([1, 1, 28, 28])
mask[:, :, 14:, :] = 0
out["repaint"] = {"shape": shape, "steps": 20, "jump_length": 5, "jump_n_sample": 2, "runs": {}}
for eta in [0.0, 1.0]:
    drawn = [0]

    def fake_randn(shp, generator=None, device=None, dtype=None, layout=None):
        drawn[0] += 1
        return det(list(shp), 10.0 + drawn[0] - 1)

    repaint_module.randn_tensor = fake_randn
    sched = RePaintScheduler.from_pretrained(folder)
    sched.set_timesteps(20, jump_length=5, jump_n_sample=2)
    sched.eta = eta
    image = det(shape, 9.0)
    t_last = sched.timesteps[0] + 1
    for t in sched.timesteps:
        if t < t_last:
            image = sched.step(unet(image, t).sample, t, image, known, mask).prev_sample
        else:
            image = sched.undo_step(image, t_last)
        t_last = t
    out["repaint"]["timesteps"] = [int(t) for t in sched.timesteps]
    out["repaint"]["runs"][str(eta)] = {"x0": lst(image), "draws": drawn[0]}
    print(f"repaint eta {eta}: {len(sched.timesteps)} timesteps, {drawn[0]} noise draws")

# Class conditioning (num_class_embeds with class_embed_type None and "timestep"): small UNet2DModels initialised by
# torch (seed 0), saved with save_pretrained into test/goldens/unet-cond-*/, and their eps for labels [1, 3]
out["cond"] = {}
for kind in [None, "timestep"]:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, norm_eps=1e-6, attention_head_dim=None, flip_sin_to_cos=False, freq_shift=1,
        downsample_padding=0, class_embed_type=kind, num_class_embeds=4 if kind is None else None,
    ).eval()
    name = f"unet-cond-{kind or 'embedding'}"
    unet.save_pretrained(os.path.join(ROOT, "test", "goldens", name))
    shape = [2, 1, 8, 8]
    eps = unet(det(shape, 1.0), torch.tensor([3, 17]), class_labels=torch.tensor([1, 3])).sample
    out["cond"][name] = {"shape": shape, "t": [3, 17], "labels": [1, 3], "eps": lst(eps)}
    print(f"{name}: {sum(p.numel() for p in unet.parameters())} parameters")

with open(OUT, "w") as f:
    json.dump(out, f)
print(f"wrote {OUT}")
