"""Figures of numbers against step or count: training curves, the generalisation gap, the
confusion matrix, the oracle curve and reliability diagrams. Each writes one PNG."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from rectbert.viz.base import save


def training_curves(rows: list[dict], path: str, *, title: str = "") -> str:
    """Loss and masked accuracy against step: train (logged windows) and held-out eval."""
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for key, ax in (("loss", ax_loss), ("masked_accuracy", ax_acc)):
        for split, style in (("train", "-"), ("eval", "o-")):
            pts = [(r["step"], r[f"{split}/{key}"]) for r in rows if f"{split}/{key}" in r]
            if pts:
                s, v = zip(*pts, strict=True)
                ax.plot(s, v, style, ms=3, label=split)
        ax.set_xlabel("step")
        ax.set_title(f"masked {key.replace('masked_', '')}")
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_yscale("log")
    ax_acc.set_ylim(0, 1.02)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def generalisation_curves(rows: list[dict], path: str, *, title: str = "") -> str:
    """The write-up's "RectangleContinuousTrainingLoss", with what it lacked: held-out accuracy
    beside training-set accuracy, and the two baselines."""
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_acc = fig.subplots(1, 2)
    series = [
        ("train/loss", ax_loss, "-", "0.6", "training batches (objective)"),
        ("eval/train_loss", ax_loss, "o-", "C0", "training rectangles"),
        ("eval/loss", ax_loss, "s-", "C1", "held-out shapes"),
        ("eval/train_masked_accuracy", ax_acc, "o-", "C0", "training rectangles"),
        ("eval/masked_accuracy", ax_acc, "s-", "C1", "held-out shapes"),
        ("eval/unseen_loss", ax_loss, "^-", "C3", "unseen kinds (glyphs, fonts)"),
        ("eval/unseen_masked_accuracy", ax_acc, "^-", "C3", "unseen kinds (glyphs, fonts)"),
    ]
    for key, ax, style, color, label in series:
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            s, v = zip(*pts, strict=True)
            ax.plot(s, v, style, ms=3, color=color, label=label)
    last = next((r for r in reversed(rows) if "eval/majority_accuracy" in r), None)
    if last is not None:
        ax_acc.axhline(last["eval/nearest_accuracy"], color="0.4", ls="--", label="nearest visible")
        ax_acc.axhline(last["eval/majority_accuracy"], color="0.6", ls=":", label="majority token")
        if "eval/unseen_nearest_accuracy" in last:
            said = "nearest visible, unseen kinds"
            ax_acc.axhline(last["eval/unseen_nearest_accuracy"], color="C3", ls="--", label=said)
    ax_loss.set_yscale("log")
    ax_loss.set_title("masked cross-entropy")
    ax_acc.set_title("masked accuracy")
    ax_acc.set_ylim(0, 1.02)
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def confusion(tokens_N, pred_N, num_tokens: int, path: str, *, centroids_KxG=None) -> str:
    """Row-normalised confusion matrix of hidden tokens (true rows, predicted columns)."""
    m = np.zeros((num_tokens, num_tokens))
    np.add.at(m, (np.asarray(tokens_N), np.asarray(pred_N)), 1)
    support = m.sum(1)
    rate = m / np.maximum(support[:, None], 1)
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    im = ax.imshow(rate, cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="fraction of the true token's cases")
    ax.set_xlabel("predicted token")
    ax.set_ylabel("true token (support)")
    ax.set_yticks(range(num_tokens), [f"{k} ({int(s)})" for k, s in enumerate(support)], fontsize=7)
    ax.set_xticks(range(num_tokens))
    ax.tick_params(axis="x", labelsize=7)
    acc = np.trace(m) / max(m.sum(), 1)
    ax.set_title(f"held-out hidden tokens: accuracy {acc:.3f}")
    return save(fig, path)


def oracle_curve(rows: list[dict], path: str, *, title: str = "") -> str:
    """Model and oracle against the number of visible points: accuracy (with the model /
    oracle ratio), NLL of the true token and KL(oracle || model); error bars 1 stderr."""
    v = np.array([r["visible"] for r in rows])
    fig = Figure(figsize=(13, 3.8))
    ax_acc, ax_nll, ax_kl = fig.subplots(1, 3)
    fig.subplots_adjust(wspace=0.32)

    def series(ax, name, label, **style):
        y = np.array([r[name] for r in rows])
        e = np.array([r[name + "_stderr"] for r in rows])
        ax.errorbar(v, y, yerr=e, marker="o", ms=4, capsize=2, label=label, **style)

    series(ax_acc, "oracle_accuracy", "oracle (Bayes-optimal)", color="k")
    series(ax_acc, "model_accuracy", "model", color="tab:blue")
    ax_acc.set_ylabel("accuracy on the hidden tokens")
    for r in rows:
        ax_acc.annotate(
            f"{r['model_over_oracle']:.3f}",
            (r["visible"], r["model_accuracy"]),
            textcoords="offset points",
            xytext=(0, -12),
            ha="center",
            fontsize=7,
            color="tab:blue",
        )
    series(ax_nll, "oracle_nll", "oracle", color="k")
    series(ax_nll, "model_nll", "model", color="tab:blue")
    ax_nll.set_ylabel("NLL of the true token (nats)")
    series(ax_kl, "kl", "KL(oracle || model), plug-in", color="tab:red")
    series(ax_kl, "nll_gap", "NLL gap, model - oracle", color="tab:orange")
    ax_kl.axhline(0.05, color="0.5", ls=":", lw=1, label="0.05 nats")
    ax_kl.set_ylabel("nats per hidden token")
    ax_kl.axhline(0.0, color="0.7", lw=0.8)
    for ax in (ax_acc, ax_nll, ax_kl):
        ax.set_xlabel("visible points")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "the model against the oracle, by visible points", fontsize=10)
    return save(fig, path)


def reliability(calib: dict, path: str, *, title: str = "") -> str:
    """Reliability diagrams of model and oracle on the same tokens: accuracy against mean
    confidence per bin (the diagonal is calibrated), marker area ~ tokens in the bin."""
    fig = Figure(figsize=(5, 4.6))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1)
    colors = {"model": "tab:blue", "oracle": "k"}
    for who in ("model", "oracle"):
        c = calib[who]
        n = np.array(c["count"], float)
        keep = n > 0
        conf, acc = np.array(c["confidence"])[keep], np.array(c["accuracy"])[keep]
        ax.plot(conf, acc, color=colors.get(who), lw=1, label=f"{who}: ECE {c['ece']:.4f}")
        ax.scatter(conf, acc, s=8 + 400 * n[keep] / n.sum(), color=colors.get(who), alpha=0.6)
    ax.set_xlabel("confidence (probability of the argmax token)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "reliability, every hidden token of the curve", fontsize=9)
    return save(fig, path)
