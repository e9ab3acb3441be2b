#!/usr/bin/python3
"""An independent PyTorch implementation of pytorch-fid's FID Inception-v3 (torchvision's Inception3 with
FIDInceptionA/C/E_1/E_2), written from torch.nn.functional, to check src/eval/inception.ts.

  /usr/bin/python3 scripts/torch_inception.py            # writes test/goldens/inception.json

The weights are deterministic formulas (the real ones cannot be downloaded here), shared with the TypeScript test:
parameter j of the sorted names gets sin(1.7 i + 0.3 + j) scaled by 2 / sqrt(fan_in) for convolutions; batch norms get
weight 1 + 0.1 s, bias 0.1 s, running_mean 0.1 s, running_var 1 + 0.5 s^2 with s = sin(1.7 i + 0.3 + j).
Also usable with the real weights: features(P, x) takes a dict of tensors by torchvision name.
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

# (name, cin, cout, kh, kw, stride, (pad_h, pad_w)), in torchvision's order
def convs():
    s = [('Conv2d_1a_3x3', 3, 32, 3, 3, 2, (0, 0)), ('Conv2d_2a_3x3', 32, 32, 3, 3, 1, (0, 0)), ('Conv2d_2b_3x3', 32, 64, 3, 3, 1, (1, 1)),
         ('Conv2d_3b_1x1', 64, 80, 1, 1, 1, (0, 0)), ('Conv2d_4a_3x3', 80, 192, 3, 3, 1, (0, 0))]
    for n, cin, pool in (('Mixed_5b', 192, 32), ('Mixed_5c', 256, 64), ('Mixed_5d', 288, 64)):
        s += [(f'{n}.branch1x1', cin, 64, 1, 1, 1, (0, 0)), (f'{n}.branch5x5_1', cin, 48, 1, 1, 1, (0, 0)), (f'{n}.branch5x5_2', 48, 64, 5, 5, 1, (2, 2)),
              (f'{n}.branch3x3dbl_1', cin, 64, 1, 1, 1, (0, 0)), (f'{n}.branch3x3dbl_2', 64, 96, 3, 3, 1, (1, 1)), (f'{n}.branch3x3dbl_3', 96, 96, 3, 3, 1, (1, 1)),
              (f'{n}.branch_pool', cin, pool, 1, 1, 1, (0, 0))]
    s += [('Mixed_6a.branch3x3', 288, 384, 3, 3, 2, (0, 0)), ('Mixed_6a.branch3x3dbl_1', 288, 64, 1, 1, 1, (0, 0)),
          ('Mixed_6a.branch3x3dbl_2', 64, 96, 3, 3, 1, (1, 1)), ('Mixed_6a.branch3x3dbl_3', 96, 96, 3, 3, 2, (0, 0))]
    for n, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
        s += [(f'{n}.branch1x1', 768, 192, 1, 1, 1, (0, 0)),
              (f'{n}.branch7x7_1', 768, c7, 1, 1, 1, (0, 0)), (f'{n}.branch7x7_2', c7, c7, 1, 7, 1, (0, 3)), (f'{n}.branch7x7_3', c7, 192, 7, 1, 1, (3, 0)),
              (f'{n}.branch7x7dbl_1', 768, c7, 1, 1, 1, (0, 0)), (f'{n}.branch7x7dbl_2', c7, c7, 7, 1, 1, (3, 0)), (f'{n}.branch7x7dbl_3', c7, c7, 1, 7, 1, (0, 3)),
              (f'{n}.branch7x7dbl_4', c7, c7, 7, 1, 1, (3, 0)), (f'{n}.branch7x7dbl_5', c7, 192, 1, 7, 1, (0, 3)), (f'{n}.branch_pool', 768, 192, 1, 1, 1, (0, 0))]
    s += [('Mixed_7a.branch3x3_1', 768, 192, 1, 1, 1, (0, 0)), ('Mixed_7a.branch3x3_2', 192, 320, 3, 3, 2, (0, 0)),
          ('Mixed_7a.branch7x7x3_1', 768, 192, 1, 1, 1, (0, 0)), ('Mixed_7a.branch7x7x3_2', 192, 192, 1, 7, 1, (0, 3)),
          ('Mixed_7a.branch7x7x3_3', 192, 192, 7, 1, 1, (3, 0)), ('Mixed_7a.branch7x7x3_4', 192, 192, 3, 3, 2, (0, 0))]
    for n, cin in (('Mixed_7b', 1280), ('Mixed_7c', 2048)):
        s += [(f'{n}.branch1x1', cin, 320, 1, 1, 1, (0, 0)), (f'{n}.branch3x3_1', cin, 384, 1, 1, 1, (0, 0)),
              (f'{n}.branch3x3_2a', 384, 384, 1, 3, 1, (0, 1)), (f'{n}.branch3x3_2b', 384, 384, 3, 1, 1, (1, 0)),
              (f'{n}.branch3x3dbl_1', cin, 448, 1, 1, 1, (0, 0)), (f'{n}.branch3x3dbl_2', 448, 384, 3, 3, 1, (1, 1)),
              (f'{n}.branch3x3dbl_3a', 384, 384, 1, 3, 1, (0, 1)), (f'{n}.branch3x3dbl_3b', 384, 384, 3, 1, 1, (1, 0)),
              (f'{n}.branch_pool', cin, 192, 1, 1, 1, (0, 0))]
    return s


def formula_weights():
    shapes = {}
    for n, cin, cout, kh, kw, _, _ in convs():
        shapes[n + '.conv.weight'] = [cout, cin, kh, kw]
        for k in ('weight', 'bias', 'running_mean', 'running_var'):
            shapes[f'{n}.bn.{k}'] = [cout]
    P = {}
    for j, name in enumerate(sorted(shapes)):
        shape = shapes[name]
        s = np.sin(1.7 * np.arange(int(np.prod(shape))) + 0.3 + j).reshape(shape)
        if name.endswith('conv.weight'):
            v = s * 2 / math.sqrt(int(np.prod(shape[1:])))
        elif name.endswith('bn.weight'):
            v = 1 + 0.1 * s
        elif name.endswith('bn.bias') or name.endswith('running_mean'):
            v = 0.1 * s
        else:
            v = 1 + 0.5 * s * s
        P[name] = torch.tensor(v, dtype=torch.float32)
    return P


def features(P, x):
    spec = {c[0]: c for c in convs()}

    def cv(n, h):
        _, _, _, _, _, stride, pad = spec[n]
        h = F.conv2d(h, P[n + '.conv.weight'], stride=stride, padding=pad)
        h = F.batch_norm(h, P[n + '.bn.running_mean'], P[n + '.bn.running_var'], P[n + '.bn.weight'], P[n + '.bn.bias'], False, 0.0, 0.001)
        return F.relu(h)

    avg = lambda h: F.avg_pool2d(h, 3, stride=1, padding=1, count_include_pad=False)
    h = cv('Conv2d_2b_3x3', cv('Conv2d_2a_3x3', cv('Conv2d_1a_3x3', x)))
    h = F.max_pool2d(h, 3, stride=2)
    h = F.max_pool2d(cv('Conv2d_4a_3x3', cv('Conv2d_3b_1x1', h)), 3, stride=2)
    for n in ('Mixed_5b', 'Mixed_5c', 'Mixed_5d'):
        h = torch.cat([cv(f'{n}.branch1x1', h), cv(f'{n}.branch5x5_2', cv(f'{n}.branch5x5_1', h)),
                       cv(f'{n}.branch3x3dbl_3', cv(f'{n}.branch3x3dbl_2', cv(f'{n}.branch3x3dbl_1', h))), cv(f'{n}.branch_pool', avg(h))], 1)
    h = torch.cat([cv('Mixed_6a.branch3x3', h), cv('Mixed_6a.branch3x3dbl_3', cv('Mixed_6a.branch3x3dbl_2', cv('Mixed_6a.branch3x3dbl_1', h))),
                   F.max_pool2d(h, 3, stride=2)], 1)
    for n in ('Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e'):
        d = cv(f'{n}.branch7x7dbl_1', h)
        for k in (2, 3, 4, 5):
            d = cv(f'{n}.branch7x7dbl_{k}', d)
        h = torch.cat([cv(f'{n}.branch1x1', h), cv(f'{n}.branch7x7_3', cv(f'{n}.branch7x7_2', cv(f'{n}.branch7x7_1', h))), d,
                       cv(f'{n}.branch_pool', avg(h))], 1)
    b7 = cv('Mixed_7a.branch7x7x3_1', h)
    for k in (2, 3, 4):
        b7 = cv(f'Mixed_7a.branch7x7x3_{k}', b7)
    h = torch.cat([cv('Mixed_7a.branch3x3_2', cv('Mixed_7a.branch3x3_1', h)), b7, F.max_pool2d(h, 3, stride=2)], 1)
    for n in ('Mixed_7b', 'Mixed_7c'):
        b3 = cv(f'{n}.branch3x3_1', h)
        d = cv(f'{n}.branch3x3dbl_2', cv(f'{n}.branch3x3dbl_1', h))
        pool = avg(h) if n == 'Mixed_7b' else F.max_pool2d(h, 3, stride=1, padding=1)
        h = torch.cat([cv(f'{n}.branch1x1', h), torch.cat([cv(f'{n}.branch3x3_2a', b3), cv(f'{n}.branch3x3_2b', b3)], 1),
                       torch.cat([cv(f'{n}.branch3x3dbl_3a', d), cv(f'{n}.branch3x3dbl_3b', d)], 1), cv(f'{n}.branch_pool', pool)], 1)
    return F.adaptive_avg_pool2d(h, (1, 1)).flatten(1)


def main():
    torch.set_num_threads(2)
    P = formula_weights()
    x = torch.tensor(np.sin(1.7 * np.arange(2 * 3 * 75 * 75) + 0.3 + 77).reshape(2, 3, 75, 75) * 0.8, dtype=torch.float32)
    with torch.no_grad():
        f = features(P, x)
    print('features', f.shape, 'mean', f.mean().item(), 'max', f.abs().max().item())
    out = os.path.join(os.path.dirname(__file__), '..', 'test', 'goldens', 'inception.json')
    with open(out, 'w') as fh:
        json.dump(dict(features=[round(float(v), 6) for v in f.reshape(-1)], shape=list(f.shape), nparams=int(sum(v.numel() for v in P.values()))), fh)
    print('wrote', out)


if __name__ == '__main__':
    main()
