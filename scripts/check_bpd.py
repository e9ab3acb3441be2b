#!/usr/bin/python3
"""Bits/dim of a trained model folder, computed independently of ddpm the way the official code does it
(improved-diffusion's GaussianDiffusion.calc_bpd_loop with clip_denoised=True, written here from its definition):
every t from T-1 down to 0, x_t ~ q(x_t | x_0) with fresh noise, the KL term (t > 0) or the discretized decoder
term (t = 0) in bits/dim with the x0 estimate clipped to [-1, 1], plus the prior term L_T.

  node dist/src/cli/main.js eval bpd --model DIR --data ../shared/data/mnist -n 100 --batch 100 --out ours.json
  /usr/bin/python3 scripts/check_bpd.py DIR ../shared/data/mnist/t10k-images-idx3-ubyte.gz 100 ours.json

The noise differs from ddpm's (torch's generator here), so the two totals are two Monte Carlo estimates of the same
bound; the check passes when they agree within 0.02 bits/dim. Supports eps prediction with fixedlarge / fixedsmall
variance and the linear schedule (what `ddpm train` writes by default).
"""
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import torch_unet  # noqa: E402
from check_predict import read_safetensors  # noqa: E402


def read_idx(path, n):
    data = gzip.open(path).read() if path.endswith('.gz') else open(path, 'rb').read()
    magic, count, rows, cols = struct.unpack('>IIII', data[:16])
    assert magic == 0x803, path
    x = np.frombuffer(data[16:16 + n * rows * cols], dtype=np.uint8).reshape(n, 1, rows, cols)
    return torch.from_numpy(x.astype(np.float64) / 127.5 - 1)


def approx_std_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    centered = x - means
    inv = torch.exp(-log_scales)
    cdf_plus = approx_std_normal_cdf(inv * (centered + 1.0 / 255.0))
    cdf_min = approx_std_normal_cdf(inv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


def normal_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1.0 + lv2 - lv1 + torch.exp(lv1 - lv2) + (m1 - m2) ** 2 * torch.exp(-lv2))


def mean_flat(x):
    return x.mean(dim=list(range(1, x.ndim)))


def main():
    folder, data_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ours_path = sys.argv[4] if len(sys.argv) > 4 else None
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg_raw = json.load(open(os.path.join(folder, 'config.json')))
    sched = json.load(open(os.path.join(folder, 'scheduler_config.json')))
    assert sched.get('prediction_type', 'epsilon') == 'epsilon' and sched.get('beta_schedule', 'linear') == 'linear', sched
    cfg = dict(block_out_channels=cfg_raw['block_out_channels'], layers_per_block=cfg_raw['layers_per_block'],
               down=cfg_raw['down_block_types'], up=cfg_raw['up_block_types'], groups=cfg_raw['norm_num_groups'],
               eps=cfg_raw['norm_eps'], in_channels=cfg_raw['in_channels'], out_channels=cfg_raw['out_channels'])
    W = read_safetensors(os.path.join(folder, 'diffusion_pytorch_model.safetensors'))
    T = sched['num_train_timesteps']
    betas = np.linspace(sched['beta_start'], sched['beta_end'], T, dtype=np.float64)
    ac = np.cumprod(1 - betas)
    acp = np.append(1.0, ac[:-1])
    post_var = betas * (1 - acp) / (1 - ac)
    post_logvar = np.log(np.append(post_var[1], post_var[1:]))
    c1 = betas * np.sqrt(acp) / (1 - ac)
    c2 = (1 - acp) * np.sqrt(1 - betas) / (1 - ac)
    model_logvar = np.log(np.append(post_var[1], betas[1:])) if sched.get('variance_type') == 'fixed_large' else post_logvar

    x0 = read_idx(data_path, n)
    vb = []
    started = time.time()
    for t in range(T - 1, -1, -1):
        noise = torch.randn_like(x0)
        xt = math.sqrt(ac[t]) * x0 + math.sqrt(1 - ac[t]) * noise
        with torch.no_grad():
            eps = torch_unet.forward(W, cfg, xt.float(), torch.full((n,), t)).double()
        pred_x0 = (math.sqrt(1 / ac[t]) * xt - math.sqrt(1 / ac[t] - 1) * eps).clamp(-1, 1)
        p_mean = c1[t] * pred_x0 + c2[t] * xt
        p_logvar = torch.full_like(xt, model_logvar[t])
        q_mean = c1[t] * x0 + c2[t] * xt
        if t > 0:
            term = mean_flat(normal_kl(q_mean, torch.full_like(xt, post_logvar[t]), p_mean, p_logvar)) / math.log(2.0)
        else:
            term = mean_flat(-discretized_gaussian_log_likelihood(x0, p_mean, 0.5 * p_logvar)) / math.log(2.0)
        vb.append(term)
        if t % 100 == 0:
            print(f't={t} ({time.time() - started:.0f} s)', file=sys.stderr)
    vb = torch.stack(vb[::-1], dim=1)  # [n, T], column t
    prior = mean_flat(normal_kl(math.sqrt(ac[-1]) * x0, torch.full_like(x0, math.log(1 - ac[-1])), torch.zeros_like(x0), torch.zeros_like(x0))) / math.log(2.0)
    total = (vb.sum(dim=1) + prior).mean().item()
    res = dict(total=total, prior=prior.mean().item(), decoder=vb[:, 0].mean().item(), kl=vb[:, 1:].sum(dim=1).mean().item(), images=n)
    print(json.dumps(res))
    if ours_path:
        ours = json.load(open(ours_path))
        diff = ours['total'] - total
        print(f'ddpm {ours["total"]:.4f} (clip {ours.get("clip")}, {ours["images"]} images, {len(ours["terms"])} terms) vs official calc_bpd_loop {total:.4f}: difference {diff:+.4f} bits/dim')
        sys.exit(0 if abs(diff) <= 0.02 and ours.get('clip') is True and len(ours['terms']) == T else 1)


if __name__ == '__main__':
    main()
