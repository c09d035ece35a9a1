"""Plain-PyTorch training step of the same network as Ember's `ember-mrc-v1`, for comparing
`ember-train bench` against the framework it runs on (LibTorch) without Burn in between.

Same layer shapes, same loss (lambda * 255^2 * MSE + bpp with noisy likelihoods), Adam with
the gradients' joint norm clipped at 1.0, the same two-pass checkerboard slices. It is a
yardstick, not a trainer: its weights are random and thrown away.

    python3 train/bench/pytorch_step.py [--device cpu|cuda] [--batch 16] [--crop 256] [--steps 5]
                                        [--precision full|bf16]

With `--precision bf16` the convolutions of g_a and g_s run under autocast in bfloat16 and
everything else, GDNs included, in float32, as autocast would choose. `ember-train --precision
bf16` runs its GDNs in bf16 too (train/GPU.md, "bf16 transforms"), so the two bf16 rows are
close but not the same computation.

Prints the same table as `ember-train bench`.
"""

import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

N, M, Z, HYPER, HS_MID = 128, 192, 128, 192, 96
SLICES = [16, 16, 32, 64, 64]
CTX, SPATIAL, SPATIAL_K, AGG = 48, 48, 5, 96
LAMBDAS = [0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800]
SCALE_MIN = 0.11


def conv(cin, cout, k, stride=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class Gdn(nn.Module):
    """Simplified GDN: x / (beta + gamma |x|), or its inverse."""

    def __init__(self, c, inverse):
        super().__init__()
        self.beta = nn.Parameter(torch.ones(c))
        self.gamma = nn.Parameter(torch.eye(c) * math.sqrt(0.1))
        self.inverse = inverse

    def forward(self, x):
        with torch.autocast(x.device.type, enabled=False):
            return self._forward(x.float())

    def _forward(self, x):
        n, c, h, w = x.shape
        norm = torch.matmul(self.gamma**2, x.abs().reshape(n, c, h * w))
        norm = (norm + (self.beta**2 + 1e-6).reshape(1, c, 1)).reshape(n, c, h, w)
        return x * norm if self.inverse else x / norm


class Up(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = conv(cin, 4 * cout, 3)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), 2)


class Bottleneck(nn.Module):
    """Factorized density with filters 1-3-3-3-3-1 per channel."""

    def __init__(self, c):
        super().__init__()
        f = [1, 3, 3, 3, 3, 1]
        scale = 10.0 ** (1 / (len(f) - 1))
        self.m = nn.ParameterList()
        self.b = nn.ParameterList()
        self.a = nn.ParameterList()
        for i in range(len(f) - 1):
            init = math.log(math.expm1(1 / scale / f[i + 1]))
            self.m.append(nn.Parameter(torch.full((c, f[i + 1], f[i]), init)))
            self.b.append(nn.Parameter(torch.rand(c, f[i + 1], 1) - 0.5))
            if i + 2 < len(f):
                self.a.append(nn.Parameter(torch.zeros(c, f[i + 1], 1)))

    def logits(self, x):
        for i in range(len(self.m)):
            x = torch.matmul(F.softplus(self.m[i]), x) + self.b[i]
            if i < len(self.a):
                x = x + torch.tanh(self.a[i]) * torch.tanh(x)
        return x

    def likelihood(self, z):
        n, c, h, w = z.shape
        flat = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lo, up = self.logits(flat - 0.5), self.logits(flat + 0.5)
        s = -torch.sign(lo + up)
        lik = (torch.sigmoid(s * up) - torch.sigmoid(s * lo)).abs()
        return lik.reshape(c, n, h, w).permute(1, 0, 2, 3).clamp_min(1e-9)


def gaussian_likelihood(v, scale):
    v = v.abs()
    k = 1 / math.sqrt(2)
    upper = torch.erf((0.5 - v) / scale * k)
    lower = torch.erf((-0.5 - v) / scale * k)
    return (0.5 * (upper - lower)).clamp_min(1e-9)


def ste_round(y, mean):
    c = y - mean
    return y + (torch.round(c) - c).detach()


class Slice(nn.Module):
    def __init__(self, k):
        super().__init__()
        c, prev = SLICES[k], sum(SLICES[:k])
        self.ch = nn.Sequential(conv(prev, CTX, 1), nn.ReLU(), conv(CTX, CTX, 3), nn.ReLU()) if k else None
        self.spatial = conv(c, SPATIAL, SPATIAL_K)
        agg_in = HYPER + (CTX if k else 0) + SPATIAL
        self.agg = nn.Sequential(conv(agg_in, AGG, 1), nn.ReLU(), conv(AGG, AGG, 1), nn.ReLU(), conv(AGG, 2 * c, 1))

    def params(self, base, spatial):
        out = self.agg(torch.cat([base, spatial], 1))
        mean, scale = out.chunk(2, 1)
        return mean, scale.abs().clamp_min(SCALE_MIN)

    def forward(self, y, hyper, prev):
        n, _, h, w = y.shape
        base = torch.cat([hyper, self.ch(torch.cat(prev, 1))], 1) if self.ch else hyper
        ii, jj = torch.meshgrid(torch.arange(h, device=y.device), torch.arange(w, device=y.device), indexing="ij")
        anchor = ((ii + jj) % 2 == 0).float().reshape(1, 1, h, w)
        mean_a, scale_a = self.params(base, torch.zeros(n, SPATIAL, h, w, device=y.device))
        spatial = self.spatial(ste_round(y, mean_a) * anchor)
        mean_n, scale_n = self.params(base, spatial)
        mean = mean_a * anchor + mean_n * (1 - anchor)
        scale = scale_a * anchor + scale_n * (1 - anchor)
        y_hat = ste_round(y, mean)
        lik = gaussian_likelihood(y + torch.rand_like(y) - 0.5 - mean, scale)
        return y_hat, lik


class Model(nn.Module):
    def __init__(self, bf16=False):
        super().__init__()
        self.bf16 = bf16
        self.g_a = nn.Sequential(conv(3, N, 5, 2), Gdn(N, False), conv(N, N, 5, 2), Gdn(N, False),
                                 conv(N, N, 5, 2), Gdn(N, False), conv(N, M, 5, 2))
        self.g_s = nn.Sequential(Up(M, N), Gdn(N, True), Up(N, N), Gdn(N, True), Up(N, N), Gdn(N, True), Up(N, 3))
        self.h_a = nn.Sequential(conv(M, Z, 3), nn.LeakyReLU(0.01), conv(Z, Z, 5, 2), nn.LeakyReLU(0.01), conv(Z, Z, 5, 2))
        self.h_s = nn.Sequential(Up(Z, Z), nn.ReLU(), Up(Z, HS_MID), nn.ReLU(), conv(HS_MID, HYPER, 1))
        self.bottleneck = Bottleneck(Z)
        self.slices = nn.ModuleList(Slice(k) for k in range(len(SLICES)))
        self.gain = nn.Parameter(torch.ones(len(LAMBDAS), M))
        self.inv_gain = nn.Parameter(torch.ones(len(LAMBDAS), M))

    def transform(self, net, x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return net(x).float()

    def forward(self, x, level):
        y = self.transform(self.g_a, x) * self.gain[level].abs().reshape(1, M, 1, 1)
        z = self.h_a(y)
        z_hat = z + (torch.round(z) - z).detach()
        bits = -torch.log2(self.bottleneck.likelihood(z + torch.rand_like(z) - 0.5)).sum()
        hyper = self.h_s(z_hat)
        decoded, start = [], 0
        for k, s in enumerate(self.slices):
            y_hat, lik = s(y[:, start:start + SLICES[k]], hyper, decoded)
            start += SLICES[k]
            bits = bits - torch.log2(lik).sum()
            decoded.append(y_hat)
        x_hat = self.transform(self.g_s, torch.cat(decoded, 1) * self.inv_gain[level].abs().reshape(1, M, 1, 1))
        return x_hat, bits


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--precision", choices=["full", "bf16"], default="full")
    a = p.parse_args()
    torch.manual_seed(1)
    dev = torch.device(a.device)
    model = Model(bf16=a.precision == "bf16").to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    pixels = a.batch * a.crop * a.crop
    warmup = 2

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # Seconds per phase (forward, backward, update), synchronising after each as Ember's bench does.
    spent = [0.0, 0.0, 0.0]
    for i in range(warmup + a.steps):
        if i == warmup:
            sync()
            started = time.perf_counter()
        x = torch.rand(a.batch, 3, a.crop, a.crop, device=dev)
        sync()
        marks = [time.perf_counter()]
        level = i % len(LAMBDAS)
        x_hat, bits = model(x, level)
        loss = LAMBDAS[level] * 255**2 * F.mse_loss(x_hat, x) + bits / pixels
        if not torch.isfinite(loss).item():
            raise SystemExit("non-finite loss")
        marks.append(time.perf_counter())
        opt.zero_grad()
        loss.backward()
        sync()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()
        marks.append(time.perf_counter())
        if i >= warmup:
            for k in range(3):
                spent[k] += marks[k + 1] - marks[k]
    sync()
    per_step = (time.perf_counter() - started) / a.steps
    share = [f"{100 * t / a.steps / per_step:.0f}%" for t in spent]
    params = sum(p.numel() for p in model.parameters())
    print(f"| backend | precision | batch | crop | s/step | img/s | forward | backward | update |  ({params / 1e6:.2f} M parameters, torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| pytorch-{dev.type} | {a.precision} | {a.batch} | {a.crop}² | {per_step:.3f} | {a.batch / per_step:.1f} | {' | '.join(share)} |")


if __name__ == "__main__":
    main()
