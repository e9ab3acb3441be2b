#!/usr/bin/python3
"""Exports the shipped U-Nets to ONNX for the onnxruntime comparison (bench/onnx.ts, `npm run bench:onnx`), with an
implementation independent of ours: diffusers' UNet2DModel (v0.27.2, checked out outside this repository as
scripts/diffusers_oracle.py describes) loads the folder, and torch.onnx.export (Debian's python3-torch 1.13, opset 17)
writes bench/onnx/NAME.onnx, float32, with a dynamic batch axis. Inputs: sample [B, C, H, W] float32, timestep [B]
int64; output: the network's eps [B, C, H, W].

  PYTHONPATH=diffusers/src:hfhub/src:STUBS /usr/bin/python3 scripts/export_onnx.py
"""
import os

import torch

import diffusers
from diffusers import UNet2DModel

assert diffusers.__version__ == "0.27.2", f"expected diffusers 0.27.2, got {diffusers.__version__}"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "bench", "onnx")


class Eps(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep):
        return self.unet(sample, timestep).sample


os.makedirs(OUT, exist_ok=True)
torch.set_grad_enabled(False)
for name in ["mnist", "cifar10"]:
    unet = UNet2DModel.from_pretrained(os.path.join(ROOT, "models", name)).float().eval()
    c = unet.config
    x = torch.zeros(2, c.in_channels, c.sample_size, c.sample_size)
    t = torch.tensor([10, 500], dtype=torch.int64)
    path = os.path.join(OUT, f"{name}.onnx")
    tmp = path + ".tmp"
    torch.onnx.export(Eps(unet), (x, t), tmp, input_names=["sample", "timestep"], output_names=["eps"],
                      dynamic_axes={"sample": {0: "batch"}, "timestep": {0: "batch"}, "eps": {0: "batch"}},
                      opset_version=17)
    os.replace(tmp, path)
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
