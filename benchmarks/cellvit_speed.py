"""Seconds per 256x256 patch for CellViT-256, CellViT-SAM-B and the tiny test configuration (random weights).

Times the network's forward pass alone and the whole `Segmenter.predict` (input scaling, network, HoVer-Net
post-processing), median of `--repeats` after one warm-up, on the CPU (or --device cuda).

    .venv/bin/python benchmarks/cellvit_speed.py [--repeats 3] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    import torch

    from csrefiner.models.backends.cellvit import BACKEND, CellViTSegmenter
    from csrefiner.models.base import TrainParams
    from csrefiner.models.cellvit.config import from_options
    from csrefiner.models.cellvit.decoder import CellViT
    from csrefiner.models.device import torch_device
    from csrefiner.synth import EASY, nuclei_image

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch_device(args.device)
    image, _ = nuclei_image((256, 256), EASY, seed=1)
    models = {
        "CellViT-256": {"encoder": "vit256", "types": "6"},
        "CellViT-SAM-B": {"encoder": "sam-b", "types": "6"},
        "tiny (test)": {"encoder": "vit256", "embed_dim": "96", "depth": "4", "decoder_div": "8"},
    }
    results = {}
    for name, options in models.items():
        torch.manual_seed(0)
        net = CellViT(from_options(BACKEND.option_values(options), 256)).to(device).eval()
        settings = BACKEND._settings(TrainParams(), None, 256)
        seg = CellViTSegmenter(net, device, settings)
        x = torch.randn(1, 3, 256, 256, device=device)

        def forward():
            with torch.no_grad():
                net(x)
            if device.type == "cuda":
                torch.cuda.synchronize()

        timings = {}
        for what, call in (("network", forward), ("predict", lambda: seg.predict(image))):
            call()
            runs = []
            for _ in range(args.repeats):
                tic = time.perf_counter()
                call()
                runs.append(time.perf_counter() - tic)
            timings[what] = round(float(np.median(runs)), 3)
        timings["parameters_M"] = round(sum(p.numel() for p in net.parameters()) / 1e6, 1)
        results[name] = timings
        print(name, timings, flush=True)
    print(json.dumps({"device": str(device), "threads": torch.get_num_threads(), "seconds_per_256_patch": results}))


if __name__ == "__main__":
    main()
