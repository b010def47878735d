"""Train the generator on real talking video (pairs through the device's renderer, see models/talking.py).

    python -m models.train --clips ../shared/talking --holdout d10 d12 d20 hd7 --out models/checkpoints/default.pt

One command: a folder of talking-face clips in, checkpoint out. Deterministic for a seed (pairs,
initialisation, batches), resumable (`--resume` continues from the checkpoint's `.state` file), progress
on stdout and a loss log (CSV) beside the checkpoint; a GPU is used when there is one. At the end it
prints the held-out table (whole clips, people never trained on): the generator against the warp with
the painted mouth (the path without a model) and the warp alone, PSNR and SSIM against the real frames,
over the crop, in the repair mask and around the mouth.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models import talking
from models.generator import INPUT_CHANNELS, Generator, PatchDiscriminator, macs


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM per pixel (Gaussian window 11, sigma 1.5), inputs N x C x H x W in 0..1."""
    c1, c2 = 0.01**2, 0.03**2
    g = torch.exp(-((torch.arange(11, dtype=a.dtype) - 5) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    channels = a.shape[1]
    kx = g.view(1, 1, 1, 11).repeat(channels, 1, 1, 1)
    ky = g.view(1, 1, 11, 1).repeat(channels, 1, 1, 1)

    def blur(x):
        return F.conv2d(F.conv2d(x, kx, padding=(0, 5), groups=channels), ky, padding=(5, 0), groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    va = blur(a * a) - mu_a**2
    vb = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))


def psnr(a: np.ndarray, b: np.ndarray, weight: np.ndarray | None = None) -> float:
    """PSNR in dB of 0..1 (or uint8, scaled) images; `weight` (HxW) restricts it to a region."""
    a = a.astype(np.float64) / (255.0 if a.dtype == np.uint8 else 1.0)
    b = b.astype(np.float64) / (255.0 if b.dtype == np.uint8 else 1.0)
    err = (a - b) ** 2
    if weight is not None:
        w = weight[..., None] if err.ndim == 3 and err.shape[-1] == 3 else weight
        mse = float((err * w).sum() / max(w.sum() * (err.size / w.size), 1e-9))
    else:
        mse = float(err.mean())
    return 99.0 if mse <= 1e-12 else 10 * math.log10(1.0 / mse)


def ssim(a: np.ndarray, b: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Mean SSIM of two HxWx3 images (uint8 or 0..1), optionally weighted by an HxW map."""

    def t(x):
        x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    with torch.no_grad():
        m = ssim_map(t(a), t(b))[0].mean(0).numpy()
    if weight is None:
        return float(m.mean())
    return float((m * weight).sum() / max(weight.sum(), 1e-9))


def shift_aligned(output: torch.Tensor, target: torch.Tensor, tolerance: int, cell: int = 16) -> torch.Tensor:
    """`target` (Bx3xHxW) with each cell x cell block moved by up to `tolerance` pixels, whichever way
    brings it closest (mean absolute difference) to `output`. Landmarks from the face mesh put T's lips a
    pixel or two off where the warp puts S's, and a loss that charges for that is least for a blur of the
    two: this lets the generator draw one sharp edge. H and W must be multiples of `cell`."""
    batch, channels, height, width = target.shape
    padded = F.pad(target, (tolerance,) * 4, mode="replicate")
    span = 2 * tolerance + 1
    shifted = torch.stack(
        [padded[..., dy : dy + height, dx : dx + width] for dy in range(span) for dx in range(span)]
    )  # shifts x B x C x H x W
    error = (shifted - output.unsqueeze(0)).abs().mean(2)  # shifts x B x H x W
    per_cell = F.avg_pool2d(error, cell)  # shifts x B x H/cell x W/cell
    best = per_cell.argmin(0)  # B x H/cell x W/cell
    choice = best.repeat_interleave(cell, 1).repeat_interleave(cell, 2)  # B x H x W
    index = choice[None, :, None].expand(1, batch, channels, height, width)
    return torch.gather(shifted, 0, index)[0]


def _batch(arrays, indices, patch, rng, channels):
    """Random patch x patch windows (mostly around the mouth and eyes) of the chosen pairs, as tensors."""
    size = arrays["warped"].shape[1]
    xs, ys = [], []
    for i in indices:
        if patch < size:
            mask = arrays["mask"][i]
            if rng.random() < 0.8 and mask.max() > 0:
                yy, xx = np.nonzero(mask > 127)
                k = rng.integers(len(yy))
                cy = yy[k] + rng.integers(-patch // 4, patch // 4 + 1)
                cx = xx[k] + rng.integers(-patch // 4, patch // 4 + 1)
            else:
                cy, cx = rng.integers(patch // 2, size - patch // 2 + 1, 2)
            y0 = int(np.clip(cy - patch // 2, 0, size - patch))
            x0 = int(np.clip(cx - patch // 2, 0, size - patch))
        else:
            y0 = x0 = 0
        sample = talking.sample_at(arrays, int(i), (slice(y0, y0 + patch), slice(x0, x0 + patch)))
        xs.append(talking.to_input(sample, channels))
        ys.append(sample.target.astype(np.float32).transpose(2, 0, 1) / 255.0)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


MEASURES = ("psnr", "ssim", "psnr_mask", "ssim_mask", "psnr_mouth", "ssim_mouth")
ROWS = (("painted", "warp + painted mouth"), ("warp", "warp only"), ("generator", "warp + generator"))


def mouth_weight(mask: np.ndarray) -> np.ndarray:
    """The repair mask's mouth part (the lower 45 % of the crop, where the template puts the mouth)."""
    weight = mask.copy()
    weight[: int(0.55 * len(mask))] = 0.0
    return weight


def _scores(rows: list[tuple[float, ...]]) -> dict:
    v = np.array(rows)
    return {key: round(float(v[:, k].mean()), 4) for k, key in enumerate(MEASURES)}


def _beats(g: dict, baseline: dict) -> bool:
    """Better around the mouth (the point of the model) and no worse over the crop."""
    return (g["psnr_mouth"] > baseline["psnr_mouth"] and g["ssim_mouth"] > baseline["ssim_mouth"]
            and g["psnr"] >= baseline["psnr"] - 0.05)  # fmt: skip


def _measure(image: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[float, ...]:
    mouth = mouth_weight(mask)
    return (psnr(image, target), ssim(image, target), psnr(image, target, mask), ssim(image, target, mask),
            psnr(image, target, mouth), ssim(image, target, mouth))  # fmt: skip


def run_model(model: Generator, arrays, i: int) -> np.ndarray:
    sample = talking.sample_at(arrays, i)
    x = torch.from_numpy(talking.to_input(sample, model.input_channels))[None]
    with torch.no_grad():
        return (model(x)[0].numpy().transpose(1, 2, 0) * 255).round().clip(0, 255).astype(np.uint8)


def evaluate(model: Generator, arrays, clips: list[str] | None = None) -> dict:
    """The generator, the warp with the painted mouth and the warp alone against the real frames, on every
    held-out pair; a row per held-out clip (pair i is of clips[i % len(clips)], as talking.generate makes
    them): an average can hide a person the generator hurts."""
    model = model.eval()
    count = len(arrays["warped"])
    rows: dict[str, list] = {key: [] for key, _ in ROWS}
    for i in range(count):
        mask = arrays["mask"][i].astype(np.float32) / 255.0
        target = arrays["target"][i]
        images = {"warp": arrays["warped"][i], "generator": run_model(model, arrays, i)}
        images["painted"] = arrays["painted"][i] if "painted" in arrays else arrays["warped"][i]
        for key, _ in ROWS:
            rows[key].append(_measure(images[key], target, mask))
    result: dict = {key: _scores(values) for key, values in rows.items()}
    result["beats_painted"] = _beats(result["generator"], result["painted"])
    result["samples"] = count
    if clips and len(clips) > 1:
        result["per_clip"] = {}
        for k, name in enumerate(clips):
            idx = range(k, count, len(clips))
            one = {key: _scores([values[i] for i in idx]) for key, values in rows.items()}
            one["beats_painted"] = _beats(one["generator"], one["painted"])
            one["samples"] = len(idx)
            result["per_clip"][name] = one
        result["beats_painted"] = result["beats_painted"] and all(
            r["beats_painted"] for r in result["per_clip"].values()
        )
    # The bundle's contract reads this key: whether `auto` may use the model instead of the path without
    # one (which is the warp with the painted mouth).
    result["beats_warp_only"] = result["beats_painted"]
    return result


def format_table(result: dict) -> str:
    lines = [
        "| held-out | PSNR dB | SSIM | PSNR mask | SSIM mask | PSNR mouth | SSIM mouth |",
        "|---|---|---|---|---|---|---|",
    ]
    groups = [("all", result), *list(result.get("per_clip", {}).items())]
    for group, r in groups:
        for key, label in ROWS:
            s = r[key]
            lines.append(f"| {group}: {label} | {s['psnr']:.2f} | {s['ssim']:.4f} | {s['psnr_mask']:.2f} | "
                         f"{s['ssim_mask']:.4f} | {s['psnr_mouth']:.2f} | {s['ssim_mouth']:.4f} |")  # fmt: skip
    verdict = "beats" if result["beats_painted"] else "does NOT beat"
    lines.append(f"({result['samples']} held-out pairs; the generator {verdict} the painted mouth around the mouth)")
    losing = [n for n, r in result.get("per_clip", {}).items() if not r["beats_painted"]]
    if losing:
        lines.append(f"(not better for: {', '.join(losing)})")
    return "\n".join(lines)


def _cached(path: Path, build):
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.rename(path)
    return arrays


def _clip_key(folder: Path, names: list[str]) -> str:
    """A short digest of which clips (names and sizes) the pairs came from: part of the cache name."""
    import hashlib

    sizes = {video.stem: video.stat().st_size for video in talking.find_videos(folder)}
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(f"{name}:{sizes[name]};".encode())
    return digest.hexdigest()[:12]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m models.train", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    p.add_argument("--clips", type=Path, required=True, help="a folder of talking-face videos")
    p.add_argument("--holdout", nargs="*", default=[], help="clips (people) for the evaluation only")
    p.add_argument("--out", default="models/checkpoints/default.pt")
    p.add_argument("--pairs", type=int, default=3000, help="training pairs made from the clips (cached)")
    p.add_argument(
        "--rig-pairs",
        action="store_true",
        help="pose the source by the rig as --drive does, not by the target's landmarks (an experiment: "
        "see models/README.md)",
    )
    p.add_argument("--eval-pairs", type=int, default=64, help="held-out pairs (the first frame of each clip is S)")
    p.add_argument("--size", type=int, default=256, help="crop size")
    p.add_argument("--patch", type=int, default=128, help="training window inside the crop")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--adv", type=float, default=0.0, help="weight of the PatchGAN term (0: none)")
    p.add_argument("--adv-start", type=float, default=0.3, help="fraction of the steps before the GAN term starts")
    p.add_argument(
        "--shift-tolerance",
        type=int,
        default=0,
        help="pixels: each 16x16 cell of the target may move this far to meet the output before the loss "
        "(the face mesh places lips a pixel or two off; 0: none)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")
    p.add_argument("--cache", default="~/.cache/portrait/train", help="where made pairs are kept")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint's .state file")
    p.add_argument("--save-every", type=int, default=250, help="steps between checkpoint saves")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state_path = out.with_suffix(".state")
    log_path = out.with_suffix(".log.csv")

    def progress(label):
        def show(i, n):
            if i == n or i % 100 == 0:
                print(f"  {label}: {i}/{n}", flush=True)

        return show

    try:
        every = [v.stem for v in talking.find_videos(args.clips)]
        held_names = [v.stem for v in talking.find_videos(args.clips, args.holdout)] if args.holdout else []
    except talking.BadInput as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    train_names = [n for n in every if n not in held_names]
    if not train_names:
        print(f"train: every clip of {args.clips} is held out: nothing to train on", file=sys.stderr)
        return 2
    cache = Path(args.cache).expanduser()
    key = f"talking-v{talking.RECIPE_VERSION}{'-rig' if args.rig_pairs else ''}-s{args.size}-seed{args.seed}"
    train_file = cache / f"{key}-n{args.pairs}-{_clip_key(args.clips, train_names)}.npz"
    held_file = cache / f"{key}-held{args.eval_pairs}-{_clip_key(args.clips, held_names or train_names)}.npz"
    clips_cache: dict[str, list] = {}

    def clips_of(held: bool):
        """The clips, read once (only when some pairs are not cached yet)."""
        if not clips_cache:
            print(f"reading clips from {args.clips} (held out: {', '.join(held_names) or 'none'})")
            clips_cache["train"], clips_cache["held"] = talking.split(args.clips, held_names)
        return clips_cache["held" if held else "train"]

    def build_train():
        clips = clips_of(held=False)
        return talking.build_arrays(
            talking.generate(clips, args.pairs, args.size, args.seed, progress=progress("pairs"), rig=args.rig_pairs)
        )

    def build_held():
        clips = clips_of(held=bool(held_names))
        pairs = talking.generate(clips, args.eval_pairs, args.size, 10_000 + args.seed, augment=False,
                                 first_as_source=True, painted=True, rig=args.rig_pairs)  # fmt: skip
        arrays = talking.build_arrays(pairs)
        arrays["clips"] = np.array([c.name for c in clips])
        return arrays

    train = _cached(train_file, build_train)
    held = _cached(held_file, build_held)
    held_clips = [str(n) for n in held.pop("clips")]
    print(f"pairs: {len(train['warped'])} for training, {len(held['warped'])} held out ({', '.join(held_clips)})")

    gen, disc = Generator(inputs=INPUT_CHANNELS), PatchDiscriminator()
    gen.trained_crop = args.size
    print(
        f"generator: {sum(p.numel() for p in gen.parameters()) / 1e6:.3f} M parameters, "
        f"{macs(Generator(), args.size) / 1e9:.3f} GMAC at {args.size}x{args.size}; training on {device}"
    )
    opt_g = torch.optim.Adam(gen.parameters(), lr=args.lr, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr / 2, betas=(0.5, 0.99))
    step, rng = 0, np.random.default_rng(args.seed + 1)
    if args.resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        gen.load_state_dict(state["generator"])
        disc.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        step = state["step"]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {step}")
    elif log_path.exists():
        log_path.unlink()
    gen.to(device)
    disc.to(device)
    for opt in (opt_g, opt_d):  # optimizer state follows the model onto the device
        for value in opt.state.values():
            for k, v in value.items():
                if torch.is_tensor(v):
                    value[k] = v.to(device)

    def lr_at(s):
        return args.lr * 0.5 * (1 + math.cos(math.pi * min(s / max(args.steps, 1), 1.0)))

    def save():
        cpu = {k: v.detach().cpu() for k, v in gen.state_dict().items()}
        torch.save({"config": gen.config(), "generator": cpu, "trained_steps": step, "seed": args.seed,
                    "trained_on": train_names, "held_out": held_names}, out)  # fmt: skip
        torch.save(
            {
                "generator": cpu,
                "discriminator": {k: v.detach().cpu() for k, v in disc.state_dict().items()},
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "step": step,
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
            },
            state_path,
        )

    new_log = not log_path.exists()
    log_file = log_path.open("a", newline="")
    log = csv.writer(log_file)
    if new_log:
        log.writerow(["step", "seconds", "l1", "ssim", "adv_g", "d", "lr"])
    gen.train()
    disc.train()
    started, count = time.time(), len(train["warped"])
    while step < args.steps:
        for group in opt_g.param_groups:
            group["lr"] = lr_at(step)
        for group in opt_d.param_groups:
            group["lr"] = lr_at(step) / 2
        x, y = _batch(train, rng.integers(0, count, args.batch), args.patch, rng, gen.input_channels)
        x, y = x.to(device), y.to(device)
        mask, interior = x[:, 3:4], x[:, 4:5]
        fake = gen(x)
        if args.shift_tolerance:
            y = shift_aligned(fake.detach(), y, args.shift_tolerance)
        err = (fake - y).abs()
        # The mouth's opening counts most: it is what the warp cannot show and the visitor looks at.
        l1 = err.mean() + 4 * (err * mask).mean() + 4 * (err * interior).mean()
        l_ssim = 1 - ssim_map(fake, y).mean()
        use_gan = step >= args.adv_start * args.steps and args.adv > 0
        adv_g = torch.zeros((), device=device)
        if use_gan:
            adv_g = ((disc(fake, mask) - 1) ** 2 * (0.2 + F.interpolate(mask, scale_factor=1 / 8))).mean()
        loss = l1 + l_ssim + args.adv * adv_g
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        d_loss = torch.zeros((), device=device)
        if use_gan:
            d_loss = 0.5 * ((disc(y, mask) - 1) ** 2).mean() + 0.5 * (disc(fake.detach(), mask) ** 2).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
        step += 1
        log.writerow([step, round(time.time() - started, 1), f"{l1.item():.5f}", f"{l_ssim.item():.5f}",
                      f"{adv_g.item():.5f}", f"{d_loss.item():.5f}", f"{lr_at(step):.6f}"])  # fmt: skip
        if step % 25 == 0 or step == args.steps:
            elapsed = time.time() - started
            print(
                f"step {step}/{args.steps}  l1 {l1.item():.4f}  1-ssim {l_ssim.item():.4f}  adv {adv_g.item():.3f}  "
                f"d {d_loss.item():.3f}  {elapsed / 60:.1f} min",
                flush=True,
            )
            log_file.flush()
        if step % args.save_every == 0:
            save()
    save()
    log_file.close()

    result = evaluate(_reloaded(out), held, held_clips)
    result["held_out_clips"] = held_clips
    result["train_clips"] = train_names
    out.with_suffix(".eval.json").write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    return 0


def _reloaded(path: Path) -> Generator:
    from models.generator import load_checkpoint

    return load_checkpoint(path, fuse=True)


if __name__ == "__main__":
    sys.exit(main())
