# Independent PSNR / MS-SSIM reference (PyTorch, float64), written from the published algorithm
# (Wang et al. 2003; pytorch_msssim conventions) to check codec/src/metrics.rs. Usage:
#   python3 metrics_reference.py a.png b.png
import sys, torch, torch.nn.functional as F
from PIL import Image
import numpy as np
def load(p): return torch.tensor(np.asarray(Image.open(p).convert('RGB')), dtype=torch.float64).permute(2,0,1)[None]
def gauss(n=11, s=1.5):
    c = torch.arange(n, dtype=torch.float64) - n//2
    g = torch.exp(-(c**2)/(2*s*s)); return g/g.sum()
def filt(x, g):
    C = x.shape[1]
    x = F.conv2d(x, g.view(1,1,1,-1).repeat(C,1,1,1), groups=C)
    return F.conv2d(x, g.view(1,1,-1,1).repeat(C,1,1,1), groups=C)
def ssim(X, Y, g, L=255.):
    C1, C2 = (0.01*L)**2, (0.03*L)**2
    mx, my = filt(X,g), filt(Y,g)
    sxx = filt(X*X,g)-mx*mx; syy = filt(Y*Y,g)-my*my; sxy = filt(X*Y,g)-mx*my
    cs = (2*sxy+C2)/(sxx+syy+C2); ss = ((2*mx*my+C1)/(mx*mx+my*my+C1))*cs
    return ss.flatten(2).mean(-1), cs.flatten(2).mean(-1)
def msssim(X, Y):
    w = torch.tensor([0.0448, 0.2856, 0.3001, 0.2363, 0.1333], dtype=torch.float64); g = gauss(); mcs=[]
    for i in range(5):
        s, cs = ssim(X, Y, g)
        if i < 4:
            mcs.append(torch.relu(cs)); pad = [d % 2 for d in X.shape[2:]]
            X = F.avg_pool2d(X, 2, padding=pad); Y = F.avg_pool2d(Y, 2, padding=pad)
    s = torch.relu(s); v = torch.stack(mcs + [s], 0)
    return torch.prod(v ** w.view(-1,1,1), 0).mean().item()
a, b = load(sys.argv[1]), load(sys.argv[2])
mse = ((a-b)**2).mean().item()
print("psnr", 10*np.log10(255**2/mse), "msssim", msssim(a, b))
