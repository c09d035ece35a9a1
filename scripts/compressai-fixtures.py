"""Makes the CompressAI checkpoints that Ember's import tests read (testdata/compressai/).

    PYTHONPATH=DIR python3 scripts/compressai-fixtures.py

DIR holds CompressAI 1.2.8 installed without moving the pinned torch (see
benches/compressai_codec.py). One small model per architecture Ember imports (N = 8, M = 12,
seeded random weights), saved as CompressAI's zoo saves its models: the state_dict of a model
whose entropy tables were built (`update()`), here over a three-entry scale table so that the
tables stay small, and beside it `NAME.ref.pt`: what the model's own transforms compute on a
small test picture (`x`, `y = g_a(x)` and `x_hat = g_s(round(y))`), which Ember's must
reproduce. `mbt2018-mean.pth.tar` is saved as CompressAI's training script saves a
checkpoint instead: the state_dict under "state_dict", beside the epoch and the loss, with the
"module." prefix that a model wrapped in `DataParallel` gives every key.
"""

import os

import torch
from compressai.models import (
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)

N, M = 8, 12
OUT = os.path.join(os.path.dirname(__file__), "..", "testdata", "compressai")

ARCHS = {
    "bmshj2018-hyperprior": ScaleHyperprior,
    "mbt2018-mean": MeanScaleHyperprior,
    "mbt2018": JointAutoregressiveHierarchicalPriors,
}


def picture(w, h):
    """A smooth colour pattern in [0, 1], `[1, 3, h, w]`."""
    yy, xx = torch.meshgrid(torch.arange(h) / h, torch.arange(w) / w, indexing="ij")
    planes = [
        0.5 + 0.4 * torch.sin(6.0 * xx + 2.0 * yy),
        0.5 + 0.4 * torch.cos(5.0 * yy - 3.0 * xx),
        xx * yy,
    ]
    return torch.stack(planes).unsqueeze(0).float()


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, (name, cls) in enumerate(ARCHS.items()):
        torch.manual_seed(i)
        net = cls(N, M).eval()
        net.update(scale_table=torch.tensor([0.11, 1.0, 8.0]), force=True)
        state = net.state_dict()
        if name == "mbt2018-mean":
            state = {
                "epoch": 3,
                "state_dict": {f"module.{k}": v for k, v in state.items()},
                "loss": 1.25,
            }
        path = os.path.join(OUT, f"{name}.pth.tar")
        torch.save(state, path)
        print(path, os.path.getsize(path), "bytes")
        with torch.no_grad():
            x = picture(48, 32)
            y = net.g_a(x)
            ref = {"x": x, "y": y, "x_hat": net.g_s(torch.round(y))}
        torch.save(ref, os.path.join(OUT, f"{name}.ref.pt"))


if __name__ == "__main__":
    main()
