"""Data for the post-filter probe (train/probe/README.md): decoded images from `ember`.

    python3 mkdata.py train N      # N random 384x384 crops of training photos, coded at q1/4/8
    python3 mkdata.py kodak NAMES  # Kodak images (test only), e.g. 01,03,08,13,15,20

Training photos are downscaled to a shorter side of at most 512 px, as the CPU trainer does.
EMBER (the binary), MODEL, DATA, KODAK and PF_DIR (the output folder) override the defaults.
"""
import os, random, subprocess, sys, glob
from PIL import Image

ember = os.environ.get("EMBER", "target/release/ember")
model = os.environ.get("MODEL", "models/ember-mrc-v1.safetensors")
out = os.environ.get("PF_DIR", "/tmp/pf")
env = dict(os.environ, OMP_NUM_THREADS="1", RAYON_NUM_THREADS="1")


def code(src, base):
    for q in (1, 4, 8):
        subprocess.run([ember, "encode", src, "-o", f"{out}/t.ember", "--quality", str(q), "--model", model],
                       check=True, env=env, capture_output=True)
        subprocess.run([ember, "decode", f"{out}/t.ember", "-o", f"{base}_q{q}.png"],
                       check=True, env=env, capture_output=True)


if sys.argv[1] == "kodak":
    kodak = os.environ.get("KODAK", "../shared/datasets/kodak")
    os.makedirs(f"{out}/kodak", exist_ok=True)
    for n in sys.argv[2].split(","):
        base = f"{out}/kodak/kodim{n}"
        Image.open(f"{kodak}/kodim{n}.png").convert("RGB").save(base + ".png")
        code(base + ".png", base)
    sys.exit()

files = sorted(glob.glob(os.environ.get("DATA", "../shared/datasets/train") + "/**/*.*", recursive=True))
files = [f for f in files if f.lower().endswith((".png", ".jpg", ".jpeg"))]
random.seed(7)
random.shuffle(files)
os.makedirs(f"{out}/data", exist_ok=True)
done = 0
for f in files:
    if done >= int(sys.argv[2]):
        break
    im = Image.open(f).convert("RGB")
    s = min(im.size)
    if s > 512:
        im = im.resize((round(im.size[0] * 512 / s), round(im.size[1] * 512 / s)), Image.BICUBIC)
    if min(im.size) < 384:
        continue
    x0, y0 = random.randint(0, im.size[0] - 384), random.randint(0, im.size[1] - 384)
    base = f"{out}/data/{done:04d}"
    im.crop((x0, y0, x0 + 384, y0 + 384)).save(base + ".png")
    code(base + ".png", base)
    done += 1
