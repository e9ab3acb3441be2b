"""An independent PyTorch implementation of the paper's U-Net with diffusers UNet2DModel names and semantics.

Used by make_goldens.py (fixed-weight output golden) and bench/torch_bench.py (the same architecture timed in PyTorch).
Functional: param_shapes(cfg) lists every tensor; forward(P, cfg, x, t, dropout) runs the network with weights P.
cfg keys: block_out_channels, layers_per_block, down (block types), up (block types), groups, eps, in_channels, out_channels.
"""
import math

import torch
import torch.nn.functional as F


def param_shapes(cfg):
    params = {}

    def conv(n, cin, cout, k):
        params[n + '.weight'] = [cout, cin, k, k]
        params[n + '.bias'] = [cout]

    def lin(n, cin, cout):
        params[n + '.weight'] = [cout, cin]
        params[n + '.bias'] = [cout]

    def norm(n, c):
        params[n + '.weight'] = [c]
        params[n + '.bias'] = [c]

    def res(n, cin, cout, temb):
        norm(n + '.norm1', cin); conv(n + '.conv1', cin, cout, 3); lin(n + '.time_emb_proj', temb, cout)
        norm(n + '.norm2', cout); conv(n + '.conv2', cout, cout, 3)
        if cin != cout:
            conv(n + '.conv_shortcut', cin, cout, 1)

    def attn(n, c):
        norm(n + '.group_norm', c)
        for s in ('to_q', 'to_k', 'to_v', 'to_out.0'):
            lin(n + '.' + s, c, c)

    ch, L = cfg['block_out_channels'], cfg['layers_per_block']
    temb = 4 * ch[0]
    conv('conv_in', cfg['in_channels'], ch[0], 3)
    lin('time_embedding.linear_1', ch[0], temb)
    lin('time_embedding.linear_2', temb, temb)
    out = ch[0]
    for i, co in enumerate(ch):
        cin, out = out, co
        for j in range(L):
            res(f'down_blocks.{i}.resnets.{j}', cin if j == 0 else co, co, temb)
            if cfg['down'][i] == 'AttnDownBlock2D':
                attn(f'down_blocks.{i}.attentions.{j}', co)
        if i < len(ch) - 1:
            conv(f'down_blocks.{i}.downsamplers.0.conv', co, co, 3)
    res('mid_block.resnets.0', ch[-1], ch[-1], temb)
    attn('mid_block.attentions.0', ch[-1])
    res('mid_block.resnets.1', ch[-1], ch[-1], temb)
    rev = ch[::-1]
    prev = rev[0]
    for i, co in enumerate(rev):
        cin = rev[min(i + 1, len(rev) - 1)]
        for j in range(L + 1):
            skip = cin if j == L else co
            rin = prev if j == 0 else co
            res(f'up_blocks.{i}.resnets.{j}', rin + skip, co, temb)
            if cfg['up'][i] == 'AttnUpBlock2D':
                attn(f'up_blocks.{i}.attentions.{j}', co)
        if i < len(rev) - 1:
            conv(f'up_blocks.{i}.upsamplers.0.conv', co, co, 3)
        prev = co
    norm('conv_norm_out', ch[0])
    conv('conv_out', ch[0], cfg['out_channels'], 3)
    return params


def forward(P, cfg, x, ts, dropout=0.0):
    ch, L = cfg['block_out_channels'], cfg['layers_per_block']
    G, EPS = cfg['groups'], cfg['eps']

    def resnet(n, x, t):
        h = F.silu(F.group_norm(x, G, P[n + '.norm1.weight'], P[n + '.norm1.bias'], EPS))
        h = F.conv2d(h, P[n + '.conv1.weight'], P[n + '.conv1.bias'], padding=1)
        h = h + F.linear(F.silu(t), P[n + '.time_emb_proj.weight'], P[n + '.time_emb_proj.bias'])[:, :, None, None]
        h = F.silu(F.group_norm(h, G, P[n + '.norm2.weight'], P[n + '.norm2.bias'], EPS))
        if dropout > 0:
            h = F.dropout(h, dropout)
        h = F.conv2d(h, P[n + '.conv2.weight'], P[n + '.conv2.bias'], padding=1)
        if n + '.conv_shortcut.weight' in P:
            x = F.conv2d(x, P[n + '.conv_shortcut.weight'], P[n + '.conv_shortcut.bias'])
        return x + h

    def attention(n, x):
        B, C, H, W = x.shape
        h = F.group_norm(x, G, P[n + '.group_norm.weight'], P[n + '.group_norm.bias'], EPS)
        h = h.reshape(B, C, H * W).transpose(1, 2)
        q = F.linear(h, P[n + '.to_q.weight'], P[n + '.to_q.bias'])
        k = F.linear(h, P[n + '.to_k.weight'], P[n + '.to_k.bias'])
        v = F.linear(h, P[n + '.to_v.weight'], P[n + '.to_v.bias'])
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(C), dim=-1) @ v
        a = F.linear(a, P[n + '.to_out.0.weight'], P[n + '.to_out.0.bias'])
        return x + a.transpose(1, 2).reshape(B, C, H, W)

    half = ch[0] // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - 1)
    emb = ts[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    t = F.linear(emb, P['time_embedding.linear_1.weight'], P['time_embedding.linear_1.bias'])
    t = F.linear(F.silu(t), P['time_embedding.linear_2.weight'], P['time_embedding.linear_2.bias'])
    h = F.conv2d(x, P['conv_in.weight'], P['conv_in.bias'], padding=1)
    skips = [h]
    for i in range(len(ch)):
        for j in range(L):
            h = resnet(f'down_blocks.{i}.resnets.{j}', h, t)
            if cfg['down'][i] == 'AttnDownBlock2D':
                h = attention(f'down_blocks.{i}.attentions.{j}', h)
            skips.append(h)
        if i < len(ch) - 1:
            h = F.conv2d(F.pad(h, (0, 1, 0, 1)), P[f'down_blocks.{i}.downsamplers.0.conv.weight'], P[f'down_blocks.{i}.downsamplers.0.conv.bias'], stride=2)
            skips.append(h)
    h = resnet('mid_block.resnets.0', h, t)
    h = attention('mid_block.attentions.0', h)
    h = resnet('mid_block.resnets.1', h, t)
    for i in range(len(ch)):
        for j in range(L + 1):
            h = torch.cat([h, skips.pop()], dim=1)
            h = resnet(f'up_blocks.{i}.resnets.{j}', h, t)
            if cfg['up'][i] == 'AttnUpBlock2D':
                h = attention(f'up_blocks.{i}.attentions.{j}', h)
        if i < len(ch) - 1:
            h = F.conv2d(F.interpolate(h, scale_factor=2, mode='nearest'), P[f'up_blocks.{i}.upsamplers.0.conv.weight'], P[f'up_blocks.{i}.upsamplers.0.conv.bias'], padding=1)
    h = F.silu(F.group_norm(h, G, P['conv_norm_out.weight'], P['conv_norm_out.bias'], EPS))
    return F.conv2d(h, P['conv_out.weight'], P['conv_out.bias'], padding=1)
