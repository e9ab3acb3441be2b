#!/usr/bin/python3
"""Turns pytorch-fid's Inception-v3 weights (pt_inception-2015-12-05-6726825d.pth, a state dict) into the safetensors
file `ddpm eval fid --inception FILE` reads: float32 tensors under their torchvision names (Conv2d_1a_3x3.conv.weight,
...bn.running_mean, Mixed_7c.branch_pool.conv.weight, fc.weight, fc.bias); num_batches_tracked entries are dropped.

  /usr/bin/python3 scripts/convert_inception.py pt_inception-2015-12-05-6726825d.pth inception-fid.safetensors
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from train_digitnet import write_safetensors  # noqa: E402


def main():
    src, dst = sys.argv[1:3]
    state = torch.load(src, map_location='cpu')
    if 'state_dict' in state:
        state = state['state_dict']
    tensors = {k: v.float() for k, v in state.items() if not k.endswith('num_batches_tracked') and not k.startswith('AuxLogits')}
    write_safetensors(dst, tensors, {'network': 'pytorch-fid FID Inception-v3', 'source': os.path.basename(src)})
    print(f'wrote {dst}: {len(tensors)} tensors, {sum(v.numel() for v in tensors.values()):,} values')


if __name__ == '__main__':
    main()
