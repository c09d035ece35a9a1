# Shared post-filter across qualities 1/4/8: plain (A) or with per-quality hidden-channel scales (B).
#   python3 shared.py A|B WIDTH STEPS one|lam|log   (loss weighting per image; README.md)
import os, glob, math, random, sys, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
torch.set_num_threads(1)
mode = sys.argv[1]; width = int(sys.argv[2]); steps = int(sys.argv[3]); wmode = sys.argv[4]
Q = [1, 4, 8]
LAM = {1: 0.0018, 4: 0.013, 8: 0.18}
def load(p): return torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 255
src = [f for f in sorted(glob.glob(os.environ.get("PF_DIR", "/tmp/pf") + "/data/[0-9][0-9][0-9][0-9].png")) if os.path.exists(f[:-4] + "_q8.png")]
data = [(load(f), [load(f[:-4] + f"_q{q}.png") for q in Q]) for f in src]
class PF(nn.Module):
    def __init__(s):
        super().__init__()
        s.c1 = nn.Conv2d(3, width, 3, padding=1); s.c2 = nn.Conv2d(width, width, 3, padding=1); s.c3 = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(s.c3.weight); nn.init.zeros_(s.c3.bias)
        s.m = nn.Parameter(torch.ones(len(Q), 2, width))
    def forward(s, x, qi):
        h = s.c1(x)
        if mode == "B": h = h * s.m[qi, 0][:, :, None, None]
        h = F.leaky_relu(h, 0.1)
        h = s.c2(h)
        if mode == "B": h = h * s.m[qi, 1][:, :, None, None]
        h = F.leaky_relu(h, 0.1)
        return x + s.c3(h)
net = PF()
opt = torch.optim.Adam(net.parameters(), 1e-3)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.05)
P = 96; rng = random.Random(0)
def psnr(a, b): return 10 * math.log10(1 / F.mse_loss(a, b).item())
def kodak():
    res = {}
    for k, q in enumerate(Q):
        d = []
        for f in sorted(glob.glob(os.environ.get("PF_DIR", "/tmp/pf") + "/kodak/kodim??.png")):
            x = load(f)[None]; xh = load(f[:-4] + f"_q{q}.png")[None]
            with torch.no_grad(): y = net(xh, torch.tensor([k])).clamp(0, 1)
            d.append(psnr((y * 255).round() / 255, x) - psnr(xh, x))
        res[q] = np.mean(d)
    return res
t0 = time.time()
for step in range(1, steps + 1):
    xs, ys, qs = [], [], []
    for _ in range(16):
        x, xh = data[rng.randrange(len(data))]; k = rng.randrange(3)
        i, j = rng.randrange(384 - P), rng.randrange(384 - P)
        xs.append(x[:, i:i+P, j:j+P]); ys.append(xh[k][:, i:i+P, j:j+P]); qs.append(k)
    x = torch.stack(xs); xh = torch.stack(ys); qi = torch.tensor(qs)
    err = ((net(xh, qi) - x) ** 2).mean(dim=(1, 2, 3))
    if wmode == "lam": w = torch.tensor([LAM[Q[k]] for k in qs]) / 0.013
    elif wmode == "log": w = None
    else: w = torch.ones(16)
    loss = torch.log(err).mean() if w is None else (w * err).mean()
    opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    if step % 500 == 0 or step == steps:
        print(f"step {step} {time.time()-t0:.0f}s", {q: round(float(v), 3) for q, v in kodak().items()}, flush=True)
