"""Held-out evaluation: a jitted predict, masked loss and accuracy over a whole evaluation set,
the task's own extras, the same measures on examples the model trained on (the gap), and on
shapes of a kind never trained on where the task has them (unseen glyphs or fonts).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rectbert.data.tasks import Batch
from rectbert.model import encoder, losses


def make_predict(model_cfg: encoder.ModelConfig):
    """Jitted (params, batch) -> logits_BxLxK with the batch's masked tokens hidden."""
    model = encoder.Encoder(model_cfg)

    @jax.jit
    def predict(params, batch: Batch):
        inputs = batch.model_inputs(model_cfg.num_tokens)
        return model.apply({"params": params}, inputs, batch.points).logits

    return predict


def evaluate(predict, params, batch: Batch, batch_size: int):
    """Masked loss and accuracy over the whole set (chunks of batch_size), and the argmax
    tokens [N, L]."""
    n = batch.tokens.shape[0]
    sums = jnp.zeros(3)
    preds = []
    for i in range(0, n, batch_size):
        whole = n <= batch_size  # a slice would be one more small program per array
        chunk = batch if whole else jax.tree.map(lambda a: a[i : i + batch_size], batch)  # noqa: B023
        chunk_sums, chunk_preds = _chunk(predict, params, chunk)
        sums, preds = sums + chunk_sums, [*preds, chunk_preds]
    loss_sum, correct_sum, count = sums
    return {
        "eval/loss": loss_sum / count,
        "eval/masked_accuracy": correct_sum / count,
    }, jnp.concatenate(preds)


@functools.partial(jax.jit, static_argnums=0)
def _chunk(predict, params, chunk: Batch):
    """(loss x count, correct x count, count) of the hidden tokens, and the argmax tokens."""
    logits = predict(params, chunk)
    count = chunk.mask.sum()
    loss = losses.masked_cross_entropy(logits, chunk)
    accuracy = losses.masked_accuracy(logits, chunk)
    return jnp.stack([loss * count, accuracy * count, count]), jnp.argmax(logits, -1)


class Evaluator:
    """A task's evaluation sets, made once: held-out, and (where the task has one) examples
    the model trained on. Calling it on parameters returns (metrics, held-out argmax tokens)."""

    def __init__(self, task, model_cfg, *, batch_size: int, train_batch_size: int):
        self.task, self.batch_size = task, batch_size
        self.predict = make_predict(model_cfg)
        self.held_out = jax.jit(task.eval_set)()  # one program, not op by op
        self.trained_on = jax.jit(task.train_eval_set, static_argnums=0)(train_batch_size)
        self.extra = jax.jit(task.eval_extra)
        self.unseen = jax.jit(task.unseen_eval_set)()  # None where the task has no split

    def __call__(self, params) -> tuple[dict, jax.Array]:
        metrics, preds = evaluate(self.predict, params, self.held_out, self.batch_size)
        metrics.update(self.extra(preds, self.held_out))
        if self.trained_on is not None:
            seen, _ = evaluate(self.predict, params, self.trained_on, self.batch_size)
            metrics["eval/train_masked_accuracy"] = seen["eval/masked_accuracy"]
            metrics["eval/train_loss"] = seen["eval/loss"]
            metrics["eval/gap"] = seen["eval/masked_accuracy"] - metrics["eval/masked_accuracy"]
        if self.unseen is not None:
            new, new_preds = evaluate(self.predict, params, self.unseen, self.batch_size)
            extra = self.extra(new_preds, self.unseen)
            metrics["eval/unseen_masked_accuracy"] = new["eval/masked_accuracy"]
            metrics["eval/unseen_loss"] = new["eval/loss"]
            if "eval/nearest_accuracy" in extra:  # the sparse task's baseline, on them
                metrics["eval/unseen_nearest_accuracy"] = extra["eval/nearest_accuracy"]
            metrics["eval/unseen_gap"] = (
                metrics["eval/masked_accuracy"] - new["eval/masked_accuracy"]
            )
        return {k: float(v) for k, v in metrics.items()}, preds
