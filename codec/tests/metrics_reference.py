# Independent PSNR / MS-SSIM reference (PyTorch, float64), written from the published algorithm
# (Wang et al. 2003; pytorch_msssim conventions) to check codec/src/metrics.rs, which runs it
# (`metrics::tests::agrees_with_the_pytorch_reference_run_now`). Needs only torch. Usage:
#   python3 metrics_reference.py a.ppm b.ppm        (binary PPM, P6, 8-bit)
import math, sys, torch, torch.nn.functional as F
def load(p):
    data = open(p, 'rb').read()
    fields, pos = [], 0
    while len(fields) < 4:  # magic, width, height, maxval; whitespace-separated, no comments
        while data[pos:pos+1].isspace(): pos += 1
        end = pos
        while not data[end:end+1].isspace(): end += 1
        fields.append(data[pos:end]); pos = end
    assert fields[0] == b'P6' and fields[3] == b'255', 'an 8-bit binary PPM'
    w, h = int(fields[1]), int(fields[2])
    px = torch.frombuffer(bytearray(data[pos+1:pos+1+3*w*h]), dtype=torch.uint8)
    return px.to(torch.float64).view(h, w, 3).permute(2, 0, 1)[None]
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
print("psnr", repr(10*math.log10(255**2/mse)), "msssim", repr(msssim(a, b)))
