#!/usr/bin/python3
"""Trains the digit feature network used for sample-quality metrics on 28x28 data (FD, KID, IS, precision/recall).

  /usr/bin/python3 scripts/train_digitnet.py mnist ../shared/data/mnist models/digitnet-mnist.safetensors
  /usr/bin/python3 scripts/train_digitnet.py fashion /usr/share/datasets/fashion-mnist models/digitnet-fashion.safetensors

The network (src/eval/digitnet.ts runs the same one on the engine): input x / 127.5 - 1, [N, 1, 28, 28];
conv 3x3 1->32, GroupNorm(8), SiLU; conv 3x3 stride 2 32->64, GroupNorm(8), SiLU; conv 3x3 stride 2 64->128,
GroupNorm(8), SiLU; the mean over the 7x7 positions is the 128-d feature vector; a linear layer gives the 10 class
logits (their softmax is p(y|x) for the Inception Score). Trained with Adam (lr 2e-3, batch 128, 5 epochs, seed 0)
on the training split; prints the test accuracy, and
writes test/goldens/digitnet-<name>.json (features and logits of 4 test images) for the TypeScript test.
"""
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F


def read_idx(path):
    for cand in (path, path + '.gz'):
        if os.path.exists(cand):
            data = gzip.open(cand).read() if cand.endswith('.gz') else open(cand, 'rb').read()
            magic, n = struct.unpack('>II', data[:8])
            if magic == 0x803:
                rows, cols = struct.unpack('>II', data[8:16])
                return np.frombuffer(data[16:16 + n * rows * cols], dtype=np.uint8).reshape(n, 1, rows, cols)
            assert magic == 0x801, cand
            return np.frombuffer(data[8:8 + n], dtype=np.uint8)
    raise FileNotFoundError(path)


def init(shape, fan_in, g):
    return (torch.rand(shape, generator=g) * 2 - 1) * (1.0 / fan_in) ** 0.5


def make_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    P = {
        'conv1.weight': init([32, 1, 3, 3], 9, g), 'conv1.bias': torch.zeros(32),
        'conv2.weight': init([64, 32, 3, 3], 288, g), 'conv2.bias': torch.zeros(64),
        'conv3.weight': init([128, 64, 3, 3], 576, g), 'conv3.bias': torch.zeros(128),
        'fc.weight': init([10, 128], 128, g), 'fc.bias': torch.zeros(10),
    }
    for k, c in (('norm1', 32), ('norm2', 64), ('norm3', 128)):
        P[k + '.weight'], P[k + '.bias'] = torch.ones(c), torch.zeros(c)
    for v in P.values():
        v.requires_grad_()
    return P


def forward(P, x):
    def block(h, i, stride):
        h = F.conv2d(h, P[f'conv{i}.weight'], P[f'conv{i}.bias'], stride=stride, padding=1)
        return F.silu(F.group_norm(h, 8, P[f'norm{i}.weight'], P[f'norm{i}.bias'], 1e-5))
    h = block(block(block(x, 1, 1), 2, 2), 3, 2)
    feats = h.mean(dim=(2, 3))
    return feats, F.linear(feats, P['fc.weight'], P['fc.bias'])


def write_safetensors(path, tensors, meta):
    header, offset, blobs = {'__metadata__': meta}, 0, []
    for name in sorted(tensors):
        b = tensors[name].detach().float().contiguous().numpy().astype('<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(tensors[name].shape), 'data_offsets': [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
    os.replace(tmp, path)


def main():
    name, folder, out = sys.argv[1:4]
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get('THREADS', '2')))
    xtr = torch.from_numpy(read_idx(os.path.join(folder, 'train-images-idx3-ubyte')).astype(np.float32) / 127.5 - 1)
    ytr = torch.from_numpy(read_idx(os.path.join(folder, 'train-labels-idx1-ubyte')).astype(np.int64))
    xte = torch.from_numpy(read_idx(os.path.join(folder, 't10k-images-idx3-ubyte')).astype(np.float32) / 127.5 - 1)
    yte = torch.from_numpy(read_idx(os.path.join(folder, 't10k-labels-idx1-ubyte')).astype(np.int64))
    P = make_params(0)
    opt = torch.optim.Adam(P.values(), lr=2e-3)
    g = torch.Generator().manual_seed(1)
    for epoch in range(5):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 128):
            idx = perm[i:i + 128]
            _, logits = forward(P, xtr[idx])
            loss = F.cross_entropy(logits, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = sum((forward(P, xte[i:i + 1000])[1].argmax(1) == yte[i:i + 1000]).sum().item() for i in range(0, len(xte), 1000)) / len(xte)
        print(f'epoch {epoch + 1}: last loss {loss.item():.4f}, test accuracy {acc:.4f}', flush=True)
    write_safetensors(out, P, {'network': 'ddpm digitnet', 'dataset': name, 'test_accuracy': f'{acc:.4f}'})
    with torch.no_grad():
        feats, logits = forward(P, xte[:4])
    gold = os.path.join(os.path.dirname(__file__), '..', 'test', 'goldens', f'digitnet-{name}.json')
    with open(gold, 'w') as f:
        json.dump(dict(x=xte[:4].reshape(-1).tolist(), features=feats.reshape(-1).tolist(), logits=logits.reshape(-1).tolist(), accuracy=acc), f)
    print('wrote', out, 'and', gold)


if __name__ == '__main__':
    main()
