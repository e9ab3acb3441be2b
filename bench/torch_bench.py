#!/usr/bin/python3
"""PyTorch side of `npm run bench`: reads workload names on stdin, answers '<seconds NCHW> <seconds channels_last>'.

Each answer is the median of `iters` timed runs after warm-up, with torch.set_num_threads(2) (the fair baseline:
Debian python3-torch with libopenblas0-pthread). Workloads mirror bench/run.ts exactly.
"""
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'scripts'))
import torch_unet  # noqa: E402

torch.set_num_threads(2)
torch.manual_seed(0)


def timeit(fn, iters, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def P(*shape, grad=True):
    return (torch.randn(*shape) * 0.05).requires_grad_(grad)


def cl(t, on):
    return t.contiguous(memory_format=torch.channels_last) if on and t.dim() == 4 else t


def build(name, channels_last):
    """Returns a zero-argument function running the workload once."""
    if name.startswith('W1'):
        x = cl(torch.randn(8, 128, 32, 32), channels_last).requires_grad_()
        g1, b1, g2, b2 = P(128), P(128), P(128), P(128)
        w1, w2 = cl(P(128, 128, 3, 3), channels_last).detach().requires_grad_(), cl(P(128, 128, 3, 3), channels_last).detach().requires_grad_()
        c1, c2 = P(128), P(128)

        def f():
            h = F.conv2d(F.silu(F.group_norm(x, 32, g1, b1, 1e-6)), w1, c1, padding=1)
            h = F.conv2d(F.silu(F.group_norm(h, 32, g2, b2, 1e-6)), w2, c2, padding=1)
            return x + h
        return fwd_or_bwd(f, name)
    if name.startswith('W2'):
        x = cl(torch.randn(32, 64, 28, 28), channels_last).requires_grad_()
        w = cl(P(64, 64, 3, 3), channels_last).detach().requires_grad_()
        b = P(64)
        return fwd_or_bwd(lambda: F.conv2d(x, w, b, padding=1), name)
    if name == 'W3':
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
        return lambda: a @ b
    if name.startswith('W4'):
        x = cl(torch.randn(8, 256, 16, 16), channels_last).requires_grad_()
        g, bb = P(256), P(256)
        W = [P(256, 256) for _ in range(4)]
        B_ = [P(256) for _ in range(4)]

        def f():
            B, C, H, Wd = x.shape
            h = F.group_norm(x, 32, g, bb, 1e-6).reshape(B, C, H * Wd).transpose(1, 2)
            q, k, v = (F.linear(h, W[i], B_[i]) for i in range(3))
            a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(C), dim=-1) @ v
            a = F.linear(a, W[3], B_[3])
            return x + a.transpose(1, 2).reshape(B, C, H, Wd)
        return fwd_or_bwd(f, name)
    if name.startswith('U'):
        # U-<preset>-<train|sample>-<batch>
        _, preset, mode, batch = name.split('-')
        cfgs = {
            'cifar10': dict(block_out_channels=[128, 256, 256, 256], layers_per_block=2, down=['DownBlock2D', 'AttnDownBlock2D', 'DownBlock2D', 'DownBlock2D'],
                            up=['UpBlock2D', 'UpBlock2D', 'AttnUpBlock2D', 'UpBlock2D'], groups=32, eps=1e-6, in_channels=3, out_channels=3, size=32, dropout=0.1),
            'mnist': dict(block_out_channels=[32, 64, 64], layers_per_block=1, down=['DownBlock2D', 'DownBlock2D', 'AttnDownBlock2D'],
                          up=['AttnUpBlock2D', 'UpBlock2D', 'UpBlock2D'], groups=16, eps=1e-6, in_channels=1, out_channels=1, size=28, dropout=0.1),
        }
        cfg = cfgs[preset]
        Wt = {n: cl(P(*s), channels_last).detach().requires_grad_() for n, s in torch_unet.param_shapes(cfg).items()}
        B = int(batch)
        x = cl(torch.randn(B, cfg['in_channels'], cfg['size'], cfg['size']), channels_last)
        ts = torch.randint(0, 1000, (B,))
        if mode == 'sample':
            def f():
                with torch.no_grad():
                    return torch_unet.forward(Wt, cfg, x, ts)
            return f
        opt = torch.optim.Adam(list(Wt.values()), lr=2e-4)
        noise = torch.randn_like(x)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = ((torch_unet.forward(Wt, cfg, x, ts, cfg['dropout']) - noise) ** 2).mean()
            loss.backward()
            opt.step()
        return step
    raise ValueError(name)


def fwd_or_bwd(f, name):
    if name.endswith('f'):
        def fwd():
            with torch.no_grad():
                return f()
        return fwd

    def fb():
        y = f()
        y.backward(torch.ones_like(y))
    return fb


_group_norm = F.group_norm


def _group_norm_f32(x, *args, **kw):
    # PyTorch 1.13's CPU autocast leaves group_norm out of its float32 list and then fails on a bf16 input with
    # float32 weights; later releases run it in float32, as here
    return _group_norm(x.float(), *args, **kw)


def autocast_bf16(fn):
    """The same workload under CPU autocast to bfloat16 (PyTorch's own bf16 path for inference)."""
    def run():
        F.group_norm = _group_norm_f32
        try:
            with torch.autocast('cpu', dtype=torch.bfloat16):
                return fn()
        finally:
            F.group_norm = _group_norm
    return run


if len(sys.argv) > 1 and sys.argv[1] == '--version':
    print(torch.__version__)
    sys.exit(0)

cache = {}
for line in sys.stdin:
    parts = line.split()
    if not parts:
        continue
    name, iters = parts[0], int(parts[1])
    out = []
    for channels_last in (False, True):
        key = (name, channels_last)
        if key not in cache:
            cache[key] = autocast_bf16(build(name[:-5], channels_last)) if name.endswith('-bf16') else build(name, channels_last)
        out.append(timeit(cache[key], iters))
    print(f'{out[0]:.6f} {out[1]:.6f}', flush=True)
