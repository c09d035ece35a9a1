# Post-filter probe: how much PSNR can a small full-resolution residual CNN add to Ember's
# decoded images? One filter per quality, trained on decoded training crops, tested on Kodak.
#   python3 per_quality.py QUALITY WIDTH DEPTH THREADS STEPS   (README.md; K=1|3 with DEPTH 1: linear)
import os, glob, math, random, sys, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
q = int(sys.argv[1]); width = int(sys.argv[2]); depth = int(sys.argv[3])
def load(p): return torch.from_numpy(np.asarray(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 255
src = [f for f in sorted(glob.glob(os.environ.get("PF_DIR", "/tmp/pf") + "/data/[0-9][0-9][0-9][0-9].png")) if os.path.exists(f[:-4] + "_q8.png")]
pairs = [(load(f), load(f[:-4] + f"_q{q}.png")) for f in src]
print(len(pairs), "training crops", flush=True)
class PF(nn.Module):
    def __init__(s):
        super().__init__()
        K = int(os.environ.get("K", "3"))
        if depth == 1:
            layers = [nn.Conv2d(3, 3, K, padding=K // 2)]
        else:
            layers = [nn.Conv2d(3, width, 3, padding=1)]
            for _ in range(depth - 2): layers += [nn.Conv2d(width, width, 3, padding=1)]
            layers += [nn.Conv2d(width, 3, 3, padding=1)]
        s.layers = nn.ModuleList(layers)
        nn.init.zeros_(layers[-1].weight); nn.init.zeros_(layers[-1].bias)
    def forward(s, x):
        h = x
        for i, l in enumerate(s.layers):
            h = l(h)
            if i < len(s.layers) - 1: h = F.leaky_relu(h, 0.1)
        return x + h
net = PF()
print(sum(p.numel() for p in net.parameters()), "params", flush=True)
steps = int(sys.argv[5]) if len(sys.argv) > 5 else 3000
opt = torch.optim.Adam(net.parameters(), 1e-3)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.05)
P = 96
rng = random.Random(0)
def psnr(a, b): return 10 * math.log10(1 / F.mse_loss(a, b).item())
def kodak():
    out = []
    for f in sorted(glob.glob(os.environ.get("PF_DIR", "/tmp/pf") + "/kodak/kodim??.png")):
        x = load(f)[None]; xh = load(f[:-4] + f"_q{q}.png")[None]
        with torch.no_grad(): y = net(xh).clamp(0, 1)
        y = (y * 255).round() / 255
        out.append((psnr(xh, x), psnr(y, x)))
    return out
t0 = time.time()
for step in range(1, steps + 1):
    xs, ys = [], []
    for _ in range(16):
        x, xh = pairs[rng.randrange(len(pairs))]
        i, j = rng.randrange(384 - P), rng.randrange(384 - P)
        xs.append(x[:, i:i+P, j:j+P]); ys.append(xh[:, i:i+P, j:j+P])
    x = torch.stack(xs); xh = torch.stack(ys)
    loss = F.mse_loss(net(xh), x)
    opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    if step % 500 == 0 or step == steps:
        k = kodak()
        d = [b - a for a, b in k]
        print(f"step {step} {time.time()-t0:.0f}s train {10*math.log10(1/loss.item()):.2f} kodak gain mean {np.mean(d):+.3f} per image " + " ".join(f"{v:+.2f}" for v in d), flush=True)
