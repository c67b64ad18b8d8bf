"""Training throughput (images/s): cnas's pipeline against a loop like the original's, side by side in one run.

    python benchmarks/training.py [--device cpu|cuda] [--batches 12] [--threads 2]

Both train the smallest and the largest OFA MobileNetV3 subnet at 32 px, batch 128, SGD, on 10,000 CIFAR-shaped
images (random uint8: the figures do not depend on the pixel values and no dataset can be downloaded here):

- original-like: a torchvision dataset of PIL images with per-sample transforms (RandomCrop(32, padding=4),
  RandomHorizontalFlip, ToTensor, Normalize), ``DataLoader(num_workers=2)`` as the original's ``train_utils``,
  float32 NCHW, ``scheduler.step()`` every batch;
- cnas: ``cnas.data.TensorLoader`` (uint8 images in memory, augmentation on whole batches on the device) and
  the trainer's step, with its default memory format (channels-last on CPU, NCHW on CUDA) and, on CUDA, the
  variants fp32 / bfloat16 autocast / bfloat16 + channels-last side by side.

The first batches of each run are a warm-up and are not timed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from cnas.data import TensorLoader
from cnas.models import build_supernet, get_subnet
from cnas.spaces import get_space
from cnas.training.trainer import TrainConfig, _autocast, make_optimizer, make_scheduler, use_channels_last

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
BATCH = 128
WARMUP = 2


def timed(loader, step, device, n_batches: int) -> float:
    """Images per second of ``step(x, y)`` over ``n_batches`` batches after ``WARMUP`` untimed ones."""
    n, t0 = 0, None
    for b, (x, y) in enumerate(loader):
        if b == WARMUP:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, n = time.perf_counter(), 0
        if b >= WARMUP + n_batches:
            break
        step(x, y)
        n += y.numel()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def original_like(model, images: np.ndarray, labels: np.ndarray, device, n_batches: int) -> float:
    import torchvision.transforms as T
    from PIL import Image

    class DS(torch.utils.data.Dataset):
        def __init__(self):
            self.t = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                T.Normalize(MEAN, STD)])

        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return self.t(Image.fromarray(images[i])), int(labels[i])

    loader = torch.utils.data.DataLoader(DS(), batch_size=BATCH, shuffle=True, num_workers=2,
                                         persistent_workers=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
    model.train()

    def step(x, y):
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()  # the original stepped its epoch schedule every batch

    return timed(loader, step, device, n_batches)


def cnas_pipeline(model, images: np.ndarray, labels: np.ndarray, device, n_batches: int, amp: bool = True,
                  channels_last: bool | None = None) -> float:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    cl = use_channels_last(channels_last, device)
    loader = TensorLoader(x, torch.from_numpy(labels), mean=MEAN, std=STD, batch_size=BATCH, shuffle=True,
                          augment="crop_flip", resolution=32, seed=0, drop_last=True, device=device,
                          channels_last=cl)
    cfg = TrainConfig(epochs=1, lr=0.01)
    if cl:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), cfg)
    sched = make_scheduler(opt, cfg, len(loader))
    model.train()

    def step(xb, yb):
        with _autocast(device, amp):
            loss = F.cross_entropy(model(xb).float(), yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()

    return timed(loader, step, device, n_batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, default=12, help="timed batches per run")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    ap.add_argument("--n", type=int, default=10000, help="images in the synthetic training set")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=args.n).astype(np.int64)
    space = get_space("mobilenetv3", 32, 32)
    supernet = build_supernet(10)
    print(f"device {device}, torch {torch.__version__}, {args.threads} threads, batch {BATCH}, "
          f"{args.batches} timed batches after {WARMUP} warm-up")
    variants = [("cnas NCHW", True, False), ("cnas", True, None)]
    if device.type == "cuda":
        variants = [("cnas fp32", False, False), ("cnas bf16", True, False), ("cnas bf16+cl", True, True)]
    head = "".join(f" {name + ' img/s':>18} {'x':>6}" for name, _, _ in variants)
    print(f"{'subnet':<10} {'original-like img/s':>20}{head}")
    for label, arch in (("smallest", space.smallest()), ("largest", space.largest())):
        torch.manual_seed(0)
        base = get_subnet(supernet, arch).to(device)
        state = {k: v.clone() for k, v in base.state_dict().items()}
        orig = original_like(base, images, labels, device, args.batches)
        row = f"{label:<10} {orig:>20.0f}"
        for _, amp, cl in variants:
            torch.manual_seed(0)
            model = get_subnet(supernet, arch).to(device)
            model.load_state_dict(state)
            ours = cnas_pipeline(model, images, labels, device, args.batches, amp, cl)
            row += f" {ours:>18.0f} {ours / orig:>5.2f}x"
        print(row, flush=True)


if __name__ == "__main__":
    main()
