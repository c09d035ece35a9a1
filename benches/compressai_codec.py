"""CompressAI's codecs timed on one image the way `ember bench codec` times Ember: the peer
that README's speed table sets beside Ember, measured on the same machine in the same run.

    PYTHONPATH=DIR python3 benches/compressai_codec.py IMAGE [--threads 2] [--runs 4]
                                                       [--arch bmshj2018-hyperprior ...]

DIR holds CompressAI 1.2.8 installed without moving the pinned torch (`pip install --no-deps
--target DIR compressai==1.2.8 numpy einops pytorch-msssim pillow scipy torchvision==0.26.0`).
The zoo's trained weights need a download, which this machine cannot make, so the models are
the zoo's quality-4 models (`pretrained=False`) with their random initial weights.
Their transforms cost what the trained ones do; their entropy coding codes other symbols than
trained weights would, which changes its (small) share of the time. Prints one row per
architecture: best of `--runs` compress and decompress calls, the image padded to a multiple
of 64 as CompressAI's own evaluation does.
"""

import argparse
import time

import torch
import torch.nn.functional as F
from compressai.zoo import image_models
from PIL import Image

ARCHS = ["bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor"]


def load(path):
    img = Image.open(path).convert("RGB")
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    x = x.view(img.height, img.width, 3).permute(2, 0, 1).float().div(255).unsqueeze(0)
    h, w = x.shape[2:]
    pad = (0, (-w) % 64, 0, (-h) % 64)
    return F.pad(x, pad, mode="replicate")


def best(f, runs):
    f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--arch", nargs="+", default=ARCHS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = load(args.image)
    print(f"CompressAI, {x.shape[3]}x{x.shape[2]} padded, {args.threads} threads, "
          f"random weights at quality-4 sizes, best of {args.runs} runs")
    print("| architecture | encode s | decode s |")
    print("|---|---:|---:|")
    with torch.no_grad():
        for arch in args.arch:
            net = image_models[arch](quality=4, pretrained=False).eval()
            net.update(force=True)
            enc, c = best(lambda: net.compress(x), args.runs)
            dec, _ = best(lambda: net.decompress(c["strings"], c["shape"]), args.runs)
            print(f"| {arch} | {enc:.3f} | {dec:.3f} |")


if __name__ == "__main__":
    main()
