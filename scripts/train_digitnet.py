#!/usr/bin/python3
"""Trains the small feature network used for sample-quality metrics (FD, KID, IS, precision/recall) on 28x28 digits
and on 32x32 CIFAR-10.

  /usr/bin/python3 scripts/train_digitnet.py mnist ../shared/data/mnist models/digitnet-mnist.safetensors
  /usr/bin/python3 scripts/train_digitnet.py fashion /usr/share/datasets/fashion-mnist models/digitnet-fashion.safetensors
  /usr/bin/python3 scripts/train_digitnet.py cifar10 ../shared/data/cifar-10-batches-bin models/digitnet-cifar10.safetensors

The network (src/eval/digitnet.ts runs the same one on the engine): input x / 127.5 - 1, [N, C, S, S] (C = 1, S = 28
for digits; C = 3, S = 32 for CIFAR-10); conv 3x3 C->32, GroupNorm(8), SiLU; conv 3x3 stride 2 32->64, GroupNorm(8),
SiLU; conv 3x3 stride 2 64->128, GroupNorm(8), SiLU; the mean over the positions is the 128-d feature vector; a
linear layer gives the 10 class logits (their softmax is p(y|x) for the Inception Score). Trained with Adam (lr 2e-3,
batch 128, seed 0) on the training split: 5 epochs for digits; 30 for CIFAR-10, with random horizontal flips and the
learning rate decayed by cosine. Prints the test accuracy, and writes test/goldens/digitnet-<name>.json (features and
logits of 4 test images) for the TypeScript test.
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


def read_cifar(folder, names):
    """CIFAR-10's binary version: records of 1 label byte + 3,072 pixel bytes (R, G, B planes), files maybe gzipped."""
    xs, ys = [], []
    for name in names:
        for cand in (os.path.join(folder, name), os.path.join(folder, name + '.gz')):
            if os.path.exists(cand):
                data = gzip.open(cand).read() if cand.endswith('.gz') else open(cand, 'rb').read()
                rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3073)
                ys.append(rec[:, 0].astype(np.int64))
                xs.append(rec[:, 1:].reshape(-1, 3, 32, 32))
                break
    if not xs:
        raise FileNotFoundError(f'{folder}: none of {names}')
    return np.concatenate(xs), np.concatenate(ys)


def init(shape, fan_in, g):
    return (torch.rand(shape, generator=g) * 2 - 1) * (1.0 / fan_in) ** 0.5


def make_params(C, seed=0):
    g = torch.Generator().manual_seed(seed)
    P = {
        'conv1.weight': init([32, C, 3, 3], 9 * C, g), 'conv1.bias': torch.zeros(32),
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
    rgb = name == 'cifar10'
    if rgb:
        xtr, ytr = read_cifar(folder, [f'data_batch_{i}.bin' for i in range(1, 6)])
        xte, yte = read_cifar(folder, ['test_batch.bin'])
    else:
        xtr, ytr = read_idx(os.path.join(folder, 'train-images-idx3-ubyte')), read_idx(os.path.join(folder, 'train-labels-idx1-ubyte'))
        xte, yte = read_idx(os.path.join(folder, 't10k-images-idx3-ubyte')), read_idx(os.path.join(folder, 't10k-labels-idx1-ubyte'))
    xtr, xte = (torch.from_numpy(v.astype(np.float32) / 127.5 - 1) for v in (xtr, xte))
    ytr, yte = (torch.from_numpy(v.astype(np.int64)) for v in (ytr, yte))
    print(f'{name}: {len(xtr)} training images {tuple(xtr.shape[1:])}, {len(xte)} test', flush=True)
    epochs = 30 if rgb else 5
    P = make_params(xtr.shape[1], 0)
    opt = torch.optim.Adam(P.values(), lr=2e-3)
    steps = epochs * ((len(xtr) + 127) // 128)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + np.cos(np.pi * k / steps)) if rgb else 1.0)
    g = torch.Generator().manual_seed(1)
    for epoch in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 128):
            idx = perm[i:i + 128]
            xb = xtr[idx]
            if rgb:
                flip = torch.rand(len(idx), generator=g) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            _, logits = forward(P, xb)
            loss = F.cross_entropy(logits, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            acc = sum((forward(P, xte[i:i + 1000])[1].argmax(1) == yte[i:i + 1000]).sum().item() for i in range(0, len(xte), 1000)) / len(xte)
        print(f'epoch {epoch + 1}: last loss {loss.item():.4f}, test accuracy {acc:.4f}', flush=True)
    write_safetensors(out, P, {'network': 'ddpm digitnet', 'dataset': name, 'test_accuracy': f'{acc:.4f}', 'image_size': str(xtr.shape[2])})
    with torch.no_grad():
        feats, logits = forward(P, xte[:4])
    gold = os.path.join(os.path.dirname(__file__), '..', 'test', 'goldens', f'digitnet-{name}.json')
    with open(gold, 'w') as f:
        json.dump(dict(x=xte[:4].reshape(-1).tolist(), features=feats.reshape(-1).tolist(), logits=logits.reshape(-1).tolist(), accuracy=acc), f)
    print('wrote', out, 'and', gold)


if __name__ == '__main__':
    main()
