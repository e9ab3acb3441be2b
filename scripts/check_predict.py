#!/usr/bin/python3
"""Checks a model folder against PyTorch: reads the diffusers folder with an independent safetensors reader, runs the
independent PyTorch U-Net (scripts/torch_unet.py) on x.npy at the given timesteps, and compares with ddpm's output.

  node dist/src/cli/main.js predict --model DIR --input x.npy --t 10,500 --output ours.npy
  /usr/bin/python3 scripts/check_predict.py DIR x.npy 10,500 ours.npy
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import torch_unet  # noqa: E402


def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        assert info['dtype'] == 'F32', info['dtype']
        b, e = info['data_offsets']
        out[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype='<f4').reshape(info['shape']).copy())
    return out


def main():
    folder, x_path, ts, ours_path = sys.argv[1:5]
    cfg_raw = json.load(open(os.path.join(folder, 'config.json')))
    cfg = dict(block_out_channels=cfg_raw['block_out_channels'], layers_per_block=cfg_raw['layers_per_block'],
               down=cfg_raw['down_block_types'], up=cfg_raw['up_block_types'], groups=cfg_raw['norm_num_groups'],
               eps=cfg_raw['norm_eps'], in_channels=cfg_raw['in_channels'], out_channels=cfg_raw['out_channels'])
    W = read_safetensors(os.path.join(folder, 'diffusion_pytorch_model.safetensors'))
    expected = torch_unet.param_shapes(cfg)
    assert sorted(W) == sorted(expected), 'tensor names differ'
    for k, s in expected.items():
        assert list(W[k].shape) == s, (k, W[k].shape, s)
    x = torch.from_numpy(np.load(x_path))
    t = torch.tensor([int(v) for v in ts.split(',')])
    with torch.no_grad():
        ref = torch_unet.forward(W, cfg, x, t).numpy()
    ours = np.load(ours_path)
    err = np.abs(ref - ours).max()
    print(f'{len(W)} tensors, {sum(v.numel() for v in W.values())} parameters; output {list(ref.shape)}; '
          f'max |ours - pytorch| = {err:.3e} (output max |y| = {np.abs(ref).max():.3f})')
    sys.exit(0 if err <= 1e-4 else 1)


if __name__ == '__main__':
    main()
