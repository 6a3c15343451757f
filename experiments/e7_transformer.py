"""E7, doc 003 Problem 4: a tiny decoder-only character transformer on tiny Shakespeare, trained
with the course notebook's recipe.

The document recipe (the notebook's settings): n_embd 64, 4 layers, 4 heads, block size 32,
batch 16, 5,000 AdamW steps at learning rate 1e-3 with PyTorch's defaults (betas 0.9/0.999,
eps 1e-8, weight decay 0.01 on every parameter), no schedule and no clipping, PyTorch's default
initialisation, dropout 0, attention scores scaled by n_embd^-0.5; the loss is estimated as the
mean over 200 random batches of each split every 100 steps, drawn anew for each estimate as the
notebook's estimate_loss draws them (``train.Evaluation(fresh=True)``). From that base the homework varies
the block size (2, 16, 64) and the number of heads (2, 8): six settings, each over three seeds
(0, 1, 2 by default) trained together (jaxnets.train.sweep with one key per seed: its own initial
weights, batches and evaluation batches; on a CPU each seed through fit's own compiled program,
one thread per core, elsewhere one vmapped program: experiments._lib.common.together); rows report
mean ± sd. Every
gradient comes from the hand-written backward rules of jaxnets.models.transformer; the optimizer
is optax's AdamW on batches drawn inside the compiled program.

Each seed of each setting records its train/validation curves and a text sample before and after training
(prompt: a newline; temperature 1, plus temperature 0.8 with top-k 10 after training).

Record: results/e7.json; figures e7_loss_curves.png, e7_context.png, e7_heads.png.
"""
from __future__ import annotations

import os
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments._lib import cli, common, figures
from experiments._lib.contract import PerMode, RunConfig, from_args, same
from experiments._lib.common import finish, print_rows, row
from jaxnets import train
from jaxnets.data import text
from jaxnets.models import transformer as tr

#: doc 003's notebook (transformer.ipynb); only the block size and heads vary across runs.
DOC = dict(n_embd=64, n_layer=4, n_head=4, block_size=32, dropout=0.0, attn_scale="n_embd",
           init="pytorch", batch_size=16, steps=5000, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8,
           weight_decay=0.01, eval_every=100, eval_batches=200, eval_fresh=True, sample_chars=500)
QUICK = dict(DOC, n_embd=32, n_layer=1, steps=200, eval_every=100, eval_batches=8, sample_chars=200)
TINY = dict(DOC, n_embd=16, n_layer=1, steps=20, eval_every=10, eval_batches=2, sample_chars=60)
BASE = (DOC["block_size"], DOC["n_head"])
CONTEXTS = (2, 16, 32, 64)         # the homework's {2, 16, 64} and the base's 32
HEADS = (2, 4, 8)
SETTINGS = [BASE] + [(t, BASE[1]) for t in CONTEXTS if t != BASE[0]] + \
           [(BASE[0], h) for h in HEADS if h != BASE[1]]
#: the smoke test trains the base and one point of each sweep (each training compiles anew)
TINY_SETTINGS = [BASE, (2, BASE[1]), (BASE[0], 8)]
SAMPLE_TOPK = dict(temperature=0.8, top_k=10)
EXCERPT_LINES = 8
SPEAKER = re.compile(r"^[A-Z][A-Za-z' ]*[A-Za-z]:$")


def run_key(T: int, H: int) -> str:
    return f"T{T}_H{H}"


def play_format(sample: str) -> dict:
    """Counts that show the play layout: speaker-tag lines ("NAME:"), lines, blank lines."""
    lines = sample.split("\n")
    return {"lines": len(lines), "speaker_lines": sum(bool(SPEAKER.match(ln)) for ln in lines),
            "blank_lines": sum(ln.strip() == "" for ln in lines)}


def excerpt(sample: str, n_lines: int = EXCERPT_LINES) -> str:
    """The first ``n_lines`` non-empty lines of a sample (what the report prints, fenced)."""
    return "\n".join([ln for ln in sample.split("\n") if ln.strip()][:n_lines])


# ----------------------------------------------------------------------------- train stage

def token_sampler(ids, block_size: int, steps: int) -> train.Sampler:
    """Random (x, y) windows of the token sequence ``ids`` (n,), drawn inside the compiled epoch."""
    return train.Sampler(lambda k, b, corpus: text.get_batch(k, corpus, b, block_size), steps,
                         (np.asarray(ids, np.int32),))


def adamw(cfg) -> optax.GradientTransformation:
    """``torch.optim.AdamW`` with the notebook's arguments (decay on every parameter):
    ``optax.adamw``'s update as :func:`jaxnets.train.adamw` runs it (fewer copies; the same numbers
    as ``optax.adamw`` over 300 steps of every run, seeds 0–2 together, compared field by field)."""
    return train.adamw(cfg["lr"], b1=cfg["b1"], b2=cfg["b2"], eps=cfg["eps"],
                       weight_decay=cfg["weight_decay"])


def model_config(vocab: int, T: int, H: int, cfg) -> tr.TransformerConfig:
    """The run's TransformerConfig, validated (``fast_grads`` resolved for this backend, so the
    record says which weight-gradient products ran)."""
    return tr.TransformerConfig(vocab, T, cfg["n_embd"], H, cfg["n_layer"], cfg["dropout"],
                                cfg["attn_scale"], cfg["init"]).validated()


def samples(mcfg, params, key, tok, n_chars: int, after: bool) -> dict:
    """Text generated from a newline: temperature 1 (and, after training, 0.8 with top-k 10)."""
    k1, k2 = jax.random.split(key)
    prompt = tok.encode("\n")
    out = {"t1": tok.decode(tr.generate(mcfg, params, k1, prompt, n_chars))}
    if after:
        out["topk"] = tok.decode(tr.generate(mcfg, params, k2, prompt, n_chars, **SAMPLE_TOPK))
    return out


def estimate_loss(model, sampler: train.Sampler, batch_size: int, n_batches: int, how: str = "loop"):
    """The notebook's ``estimate_loss`` as ``f(params, key, *sampler.data) -> mean loss`` over the
    ``n_batches`` batches drawn from ``jax.random.split(key, n_batches)`` (the batches the engine's
    sampled evaluation draws). ``how``: "loop" — one small forward per batch in a ``lax.map``, as
    the engine runs it; "vmap" — one forward vmapped over the stacked batches; "flat" — one forward
    on all n_batches × batch_size windows (the mean over windows equals the mean of the per-batch
    means up to rounding). On the 2-core CPU the loop is the fastest (its batch's activations stay
    in cache; see the README's Performance section), so training uses the engine's loop;
    tools/gpu_check.py times all three on a GPU."""
    if how not in ("loop", "vmap", "flat"):
        raise ValueError(f"estimate_loss: how must be 'loop', 'vmap' or 'flat', got {how!r}")

    def f(params, key, *data):
        keys = jax.random.split(key, n_batches)
        if how == "loop":
            return jnp.mean(jax.lax.map(lambda k: model.loss(params, *sampler.sample(k, batch_size, *data)), keys))
        xs, ys = jax.vmap(lambda k: sampler.sample(k, batch_size, *data))(keys)
        if how == "vmap":
            return jnp.mean(jax.vmap(lambda x, y: model.loss(params, x, y))(xs, ys))
        return model.loss(params, xs.reshape(-1, *xs.shape[2:]), ys.reshape(-1, *ys.shape[2:]))
    return f


def _seed_slice(tree, c):
    return jax.tree.map(lambda v: v[c], tree)


def train_one(data, T: int, H: int, cfg, keys, progress=None) -> dict:
    """One setting over ``len(keys)`` seeds, trained together
    (:func:`jaxnets.train.sweep` with per-seed keys: seed c draws its initial weights, batches
    and samples from ``keys[c]``), ``cfg["steps"]`` AdamW steps each. Returns the setting's
    curves (mean over seeds; step 0 and every ``eval_every`` steps), final losses (mean, sd and
    per seed), the samples before and after training of every seed, and timings."""
    mcfg = model_config(data.tokenizer.vocab_size, T, H, cfg)
    model = tr.transformer(mcfg)
    C = len(keys)
    ks = jax.vmap(lambda k: jax.random.split(k, 4))(keys)                     # (C, 4)
    k_init, k_fit, k_before, k_after = (ks[:, j] for j in range(4))
    params = jax.vmap(model.init)(k_init)
    tr_s, va_s = (token_sampler(ids, T, cfg["eval_every"]) for ids in (data.train, data.val))
    before = [samples(mcfg, _seed_slice(params, c), k_before[c], data.tokenizer, cfg["sample_chars"], after=False)
              for c in range(C)]
    t0 = time.perf_counter()
    res = train.sweep(model, params, tr_s, epochs=cfg["steps"] // cfg["eval_every"],
                      batch_size=cfg["batch_size"], optimizer=adamw(cfg), key=k_fit[0], keys=k_fit, val=va_s,
                      evaluation=train.Evaluation(sampled_batches=cfg["eval_batches"], initial=True,
                                                  fresh=cfg.get("eval_fresh", False)),
                      progress=progress, **common.together())
    final, h = res.params, res.history
    wall = time.perf_counter() - t0
    after = [samples(mcfg, _seed_slice(final, c), k_after[c], data.tokenizer, cfg["sample_chars"], after=True)
             for c in range(C)]
    # step 0 and every eval_every steps, each seed scored on its own batches: (E + 1, C)
    curves = {k: np.concatenate([h[f"initial_{k}_loss"][None], np.stack(h[f"{k}_loss"])]) for k in ("train", "val")}
    train_s = float(np.sum(h["time"]))
    ft, fv = curves["train"][-1], curves["val"][-1]
    sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0  # noqa: E731
    per_seed = [{"final_train": float(ft[c]), "final_val": float(fv[c]), "sample_before": before[c]["t1"],
                 "sample_after": after[c]["t1"], "sample_after_topk": after[c]["topk"],
                 "train_loss": curves["train"][:, c].tolist(), "val_loss": curves["val"][:, c].tolist()}
                for c in range(C)]
    return {"block_size": T, "n_head": H, "model": model.name, "config": mcfg._asdict(), "n_seeds": C,
            "history": {"step": [0] + [e * cfg["eval_every"] for e in h["epoch"]],
                        "train_loss": curves["train"].mean(1).tolist(), "val_loss": curves["val"].mean(1).tolist()},
            "steps": cfg["steps"], "final_train": float(ft.mean()), "final_val": float(fv.mean()),
            "final_train_sd": sd(ft), "final_val_sd": sd(fv), "best_val": float(curves["val"].mean(1).min()),
            "per_seed": per_seed, "compile_s": res.compile_time, "train_s": train_s, "wall_s": wall,
            "tokens_per_s": C * cfg["steps"] * cfg["batch_size"] * T / max(train_s, 1e-9),
            "diverged": [d is not None for d in res.divergence], "together": common.together_label(common.together()),
            "sample_before": before[0]["t1"], "sample_after": after[0]["t1"], "sample_after_topk": after[0]["topk"],
            "format_before": play_format(before[0]["t1"]), "format_after": play_format(after[0]["t1"])}


def train_all(data, cfg, seeds, settings=SETTINGS, progress=None) -> dict:
    """Every (block size, heads) of ``settings`` over ``seeds`` (setting i of seed s keyed
    ``fold_in(key(s), i)``); {run key: run}."""
    runs = {}
    for i, (T, H) in enumerate(settings):
        cli.phase(f"E7 block {T}, {H} heads", f"{cfg['steps']} steps of {cfg['batch_size']}×{T} tokens × "
                  f"{cli.plural(len(seeds), 'seed')} together")
        keys = jax.numpy.stack([jax.random.fold_in(jax.random.key(s), i) for s in seeds])
        runs[run_key(T, H)] = train_one(data, T, H, cfg, keys, progress)
    return runs


# ----------------------------------------------------------------------------- rows and text

def _by(runs, field, values, fixed_field, fixed):
    return {v: r for v in values for r in runs.values() if r[field] == v and r[fixed_field] == fixed}


def _pm(r, what):
    """"± sd; per seed a / b / c" for the note of a mean over seeds."""
    per = " / ".join(f"{p[what]:.4f}" for p in r["per_seed"])
    return f"± {r[what + '_sd']:.4f} sd; per seed {per}" if r["n_seeds"] > 1 else ""


def rows(runs, recipe: str, seeds) -> list:
    """Report rows (means over the seeds): the base run's final losses, the block-size and heads
    sweeps, the samples, the throughput."""
    base = runs[run_key(*BASE)]
    kw = dict(recipe=recipe, seeds=list(seeds))
    of = f", mean of {len(seeds)} seeds" if len(seeds) > 1 else ""
    out = [row("E7.base.train", f"final train loss, block {BASE[0]}, {BASE[1]} heads (nats/char){of}",
               round(base["final_train"], 4), note=_pm(base, "final_train"), **kw),
           row("E7.base.val", f"final validation loss, block {BASE[0]}, {BASE[1]} heads (nats/char){of}",
               round(base["final_val"], 4), note=_pm(base, "final_val"), **kw)]
    ctx = _by(runs, "block_size", CONTEXTS, "n_head", BASE[1])
    for t, r in ctx.items():
        out.append(row(f"E7.context.T{t}", f"final validation loss, block size {t} ({BASE[1]} heads){of}",
                       round(r["final_val"], 4), note=f"{_pm(r, 'final_val')}; train {r['final_train']:.4f}".lstrip("; "),
                       **kw))
    vals = [ctx[t]["final_val"] for t in sorted(ctx)]
    out.append(row("E7.context_order", "validation loss falls as the block size grows (means over the seeds)",
                   "yes" if vals == sorted(vals, reverse=True) else "no",
                   note=", ".join(f"T={t}: {ctx[t]['final_val']:.3f}" for t in sorted(ctx)), **kw))
    for h, r in _by(runs, "n_head", HEADS, "block_size", BASE[0]).items():
        out.append(row(f"E7.heads.H{h}", f"final validation loss, {h} heads (block {BASE[0]}){of}",
                       round(r["final_val"], 4), note=f"{_pm(r, 'final_val')}; train {r['final_train']:.4f}".lstrip("; "),
                       **kw))
    out.append(row("E7.samples", f"speaker lines (\"NAME:\") in the base run's sample (seed {seeds[0]}), before → after",
                   f"{base['format_before']['speaker_lines']} → {base['format_after']['speaker_lines']}",
                   note=f"{base['format_after']['lines']} lines in {len(base['sample_after'])} characters",
                   **kw))
    out.append(row("E7.throughput", f"training tokens/s of the base run (hand-written backward; "
                   f"{cli.plural(len(seeds), 'seed')} trained together"
                   + ("" if common.together().get("vmap", True) else
                      "; on threads the time holds the evaluations too, which share the cores with the training")
                   + ")",
                   round(base["tokens_per_s"]), note=f"compile {base['compile_s']:.1f} s", **kw))
    return out


def sample_table(runs, seeds) -> list:
    """A few lines of every run's samples (every setting, every seed), for the report (fenced)."""
    return [{"run": k, "seed": s, "label": f"block {r['block_size']}, {r['n_head']} heads, seed {s}",
             "before": excerpt(p["sample_before"]), "after": excerpt(p["sample_after"]),
             "after_topk": excerpt(p["sample_after_topk"])}
            for k, r in runs.items() for s, p in zip(seeds, r["per_seed"])]


def comparison(runs) -> str:
    """A short written comparison built from the measured numbers."""
    ctx = _by(runs, "block_size", CONTEXTS, "n_head", BASE[1])
    heads = _by(runs, "n_head", HEADS, "block_size", BASE[0])
    base = runs[run_key(*BASE)]
    worst = max(ctx, key=lambda t: ctx[t]["final_val"])
    best_h = min(heads, key=lambda h: heads[h]["final_val"])
    spread = max(r["final_val"] for r in heads.values()) - min(r["final_val"] for r in heads.values())
    return "\n".join([
        f"Base run (block {BASE[0]}, {BASE[1]} heads, mean of {base['n_seeds']} seeds): train "
        f"{base['final_train']:.3f}, validation {base['final_val']:.3f} ± {base['final_val_sd']:.3f} nats/char "
        f"after {base['steps']} steps; the first seed's sample has "
        f"{base['format_after']['speaker_lines']} speaker lines (\"NAME:\"), against "
        f"{base['format_before']['speaker_lines']} before training.",
        "Block size: " + ", ".join(f"T={t}: {ctx[t]['final_val']:.3f}" for t in sorted(ctx))
        + f" (validation). T={worst} is worst"
        + (": with so short a context the model can only learn which character tends to follow "
           "the last one or two." if worst == min(ctx) else
           f", not the shortest context (T={min(ctx)}): at this training length the ordering is not "
           "the document's (longer context, lower loss)."),
        "Heads (block 32): " + ", ".join(f"{h}: {heads[h]['final_val']:.3f}" for h in sorted(heads))
        + f"; spread {spread:.3f} nats, best {best_h} heads (same parameter count: the width is "
          "only split differently)."])


_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def word_share(sample: str, vocabulary: set) -> float:
    """The share of a sample's words (letters, an apostrophe inside) that are words of the
    training text (case folded); nan for a sample without words."""
    words = [w.lower() for w in _WORD.findall(sample)]
    return float(np.mean([w in vocabulary for w in words])) if words else float("nan")


def discussion(rec, training_text: str | None) -> list[str]:
    """doc 003 §4.1's questions answered from a record (markdown lines): (i) the generation
    against the training data (its words found in the training text, its layout), (iii) how the
    block size changes the generations, (iv) how the number of heads changes the loss curves, and
    the evaluation protocol. ``training_text``: the training split (the vocabulary of (i) and
    (iii)); None leaves the word shares out."""
    runs = rec["runs"]
    vocab = None if training_text is None else {w.lower() for w in _WORD.findall(training_text)}
    base = runs.get(run_key(*BASE))
    ctx = _by(runs, "block_size", CONTEXTS, "n_head", BASE[1])
    heads = _by(runs, "n_head", HEADS, "block_size", BASE[0])
    out = []
    if base is not None:
        w = _share(base, vocab)
        out.append(f"- (i) The generation against the training data: "
                   + (f"{100 * w:.0f} % of the words of the {len(base['per_seed'])} block-{BASE[0]} samples are words "
                      "of the training text (the rest are made-up spellings), and " if w == w else "")
                   + f"they keep the plays' layout: {_speakers(base):.1f} speaker lines (\"NAME:\") per 500-character "
                   "sample on average. The model has seen nothing but these plays, so it continues in their form "
                   "(turns of dialogue, their vocabulary and spelling); it cannot write a Wikipedia article, "
                   "whose words, layout and subjects are not in its training data.")
    if len(ctx) > 1:
        out.append(_block_answer(ctx, vocab))
    if len(heads) > 1:
        out.append(_heads_answer(heads))
    every, n_ev = rec["config"].get("eval_every"), rec["config"].get("eval_batches")
    out.append(f"- Evaluation protocol: every {every} steps the mean loss over {n_ev} random batches of each split, "
               + ("drawn anew for each estimate, as the notebook's estimate_loss draws them." if rec["config"].get("eval_fresh")
                  else "as the notebook's estimate_loss; the batches are drawn once per seed and scored at every "
                  "evaluation (the notebook draws fresh ones each time), so the curves carry no batch-to-batch "
                  "sampling noise; the final means differ from fresh draws by that noise only."))
    return out


def _share(r, vocab) -> float:
    """A run's mean over seeds of its after-training samples' word share (nan without a vocabulary)."""
    v = [word_share(p["sample_after"], vocab) for p in r["per_seed"]] if vocab else []
    return float(np.nanmean(v)) if v else float("nan")


def _speakers(r) -> float:
    """A run's mean over seeds of :func:`play_format`'s speaker lines after training."""
    return float(np.mean([play_format(p["sample_after"])["speaker_lines"] for p in r["per_seed"]]))


def _block_answer(ctx, vocab) -> str:
    """(iii): the generations' word share and layout per block size, and what the order shows."""
    ts = sorted(ctx)
    line = ("- (iii) Block size and the generations (after training, mean over seeds): "
            + "; ".join(f"T={t}: " + (f"{100 * _share(ctx[t], vocab):.0f} % real words, " if vocab else "")
                        + f"{_speakers(ctx[t]):.1f} speaker lines" for t in ts) + ".")
    if vocab:
        share = {t: _share(ctx[t], vocab) for t in ts}
        best = max(ts, key=share.get)
        if best == ts[0]:
            line += f" The share of real words is highest at the shortest block, T={ts[0]}."
        else:
            line += (f" The share of real words rises from T={ts[0]} to T={best} "
                     f"({100 * share[ts[0]]:.0f} → {100 * share[best]:.0f} %)"
                     + (f" and is {100 * share[ts[-1]]:.0f} % at T={ts[-1]}" if best != ts[-1] else "")
                     + ": with a context of a few characters the model strings fragments of words; with a "
                     "longer one it spells more real words.")
    sp = np.diff([_speakers(ctx[t]) for t in ts])
    return line + (" The speaker lines per sample rise with the block size." if all(sp > 0) else
                   " The speaker lines per sample fall with the block size." if all(sp < 0) else
                   " The speaker lines per sample follow no order with the block size (one sample per seed is "
                   "too little to tell).")


def _heads_answer(heads) -> str:
    """(iv): how far apart the heads' validation curves run, and the last gap against the seeds."""
    steps = np.asarray(next(iter(heads.values()))["history"]["step"])
    curves = np.asarray([heads[h]["history"]["val_loss"] for h in sorted(heads)])
    late = steps >= steps[-1] // 5
    gap = curves[:, late].max(axis=0) - curves[:, late].min(axis=0)
    k = int(np.argmax(gap))
    sd = max(heads[h]["final_val_sd"] for h in heads)
    return (f"- (iv) Heads and the loss curves: from step {int(steps[late][0])} on the validation curves of "
            + ", ".join(str(h) for h in sorted(heads)) + f" heads lie within {gap.max():.3f} nats of each other "
            f"(the widest gap at step {int(steps[late][k])}); at step {int(steps[-1])} the gap is {gap[-1]:.3f} "
            "(" + ", ".join(f"{h}: {heads[h]['final_val']:.3f}" for h in sorted(heads))
            + f"), {gap[-1] / sd:.1f}× the largest seed sd ({sd:.3f}). "
            + ("As the document says, not much difference: within the seeds' spread." if gap[-1] <= 2 * sd else
               "The document finds not much difference; here the last gap is larger than the seeds' "
               "spread: small (hundredths of a nat) but not noise."))


# ----------------------------------------------------------------------------- figures

def _curve_figure(items, title, path):
    plt = figures.plt
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    for i, (label, r) in enumerate(items):
        h = r["history"]
        ax.plot(h["step"], h["val_loss"], "-", color=f"C{i}", lw=1.4, label=f"{label}: validation")
        ax.plot(h["step"], h["train_loss"], "--", color=f"C{i}", lw=1.0, label=f"{label}: train")
    ax.set(xlabel="step", ylabel="cross-entropy (nats/char)")
    ax.set_title(figures.wrap(title, 80), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return figures.save(fig, path, bbox_inches="tight")


def _every(r) -> int:
    """Steps between the loss estimates of a run's history."""
    steps = list(r["history"]["step"])
    return int(steps[1] - steps[0]) if len(steps) > 1 else int(steps[0]) if steps else 0


def plot(runs, figures_dir, mode: str) -> list:
    """The base run's curves, the block-size sweep and the heads sweep (three files)."""
    base = runs[run_key(*BASE)]
    ctx = _by(runs, "block_size", CONTEXTS, "n_head", BASE[1])
    heads = _by(runs, "n_head", HEADS, "block_size", BASE[0])
    with figures.run_mode(mode):
        return [
            _curve_figure([(f"block {BASE[0]}, {BASE[1]} heads", base)],
                          f"E7{' document recipe' if mode == 'full' else ''}: loss estimated "
                          f"every {_every(base)} steps{' on 200 batches' if mode == 'full' else ''} (mean of "
                          f"{base['n_seeds']} seeds)",
                          os.path.join(figures_dir, "e7_loss_curves.png")),
            _curve_figure([(f"block {t}", ctx[t]) for t in sorted(ctx)],
                          f"E7: block size ({BASE[1]} heads)", os.path.join(figures_dir, "e7_context.png")),
            _curve_figure([(f"{h} heads", heads[h]) for h in sorted(heads)],
                          f"E7: number of heads (block {BASE[0]})", os.path.join(figures_dir, "e7_heads.png"))]


# ----------------------------------------------------------------------------- run

N_SEEDS, TINY_N_SEEDS = 3, 2
#: E7's own settings (``RunConfig.options``) and their default in each mode: the model and
#: training recipe (``recipe``), the (block size, heads) runs (``runs``), the number of seeds; ``steps`` overrides the
#: recipe's steps (a multiple of its evaluation interval); ``seeds``: default ``seed, seed + 1,
#: ...``. All seeds of a setting train together.
DEFAULTS = {"recipe": PerMode(DOC, QUICK, TINY), "runs": PerMode(SETTINGS, SETTINGS, TINY_SETTINGS),
            "n_seeds": PerMode(N_SEEDS, N_SEEDS, TINY_N_SEEDS), "steps": same(None), "seeds": same(None),
            "seed": same(0)}
#: how many seeds a run keys from its seed N without --seeds: N, N + 1, ... (one per seed trained)
SEED_SPAN = DEFAULTS["n_seeds"]


def run(config: RunConfig) -> dict:
    """Train the runs of :data:`DEFAULTS`, write ``<results_dir>/e7.json`` and the figures;
    returns the record. Full: the document recipe; quick: a 32-wide 1-layer model, 200 steps per
    run; tiny: 16 wide, 20 steps, the base and one point of each sweep (a smoke test)."""
    t0 = time.perf_counter()
    s = config.settings(DEFAULTS, "E7")
    mode, seed, steps = config.mode, s.seed, s.steps
    cfg = dict(s.recipe)
    if steps:
        cfg["steps"] = int(steps)
    if cfg["steps"] % cfg["eval_every"]:
        raise ValueError(f"e7: steps={cfg['steps']} must be a multiple of eval_every={cfg['eval_every']}")
    cli.phase("E7 data", "tiny Shakespeare")
    data = text.shakespeare(cli.dataset_path(config.data_dir, "tiny_shakespeare"), config.download)
    recipe = "document" if mode == "full" and not steps else f"document ({mode})"
    seeds = tuple(s.seeds or (seed + i for i in range(s.n_seeds)))
    runs = train_all(data, cfg, seeds, s.runs, config.progress)
    cli.phase("E7 report", "rows, samples and figures")
    record = {"experiment": "E7", "doc": "003", "title": "tiny Shakespeare character transformer (doc 003 Problem 4)",
              "mode": mode, "recipe": recipe, "config": cfg, "seed": seeds[0], "seeds": list(seeds),
              "data": data.variant, "data_source": data.source,
              "data_notes": f"vocabulary {data.tokenizer.vocab_size}, {len(data.train):,} train / "
                            f"{len(data.val):,} validation characters (first 90 % / last 10 %)",
              "gradients": "hand-written backward rules (jaxnets.models.transformer)",
              "rows": rows(runs, recipe, seeds), "samples": sample_table(runs, seeds),
              "comparison": comparison(runs), "figures": plot(runs, config.figures_dir, mode), "runs": runs,
              "wall_time": time.perf_counter() - t0}
    return finish("e7", record, config.results_dir)


def _steps_problem(a) -> str | None:
    """``--steps`` must be a whole number of evaluation intervals of the mode's recipe."""
    every = DEFAULTS["recipe"](a.mode)["eval_every"]
    if a.steps is not None and a.steps % every:
        return f"--steps {a.steps}: must be a multiple of {every}, the evaluation interval of a {a.mode} run"
    return None


def _parser():
    seeds = cli.seeds_in_range(lambda a: 1 if a.seeds else SEED_SPAN(a.mode))
    ap = cli.make_parser(__doc__, prog="python -m experiments.e7_transformer",
                         quick="Train a 32-wide 1-layer model for 200 steps per setting.",
                         tiny="Train a 16-wide 1-layer model for 20 steps per setting (a smoke test).",
                         full="Train the notebook configuration for 5,000 steps per setting.",
                         datasets=("tiny_shakespeare",), records=("e7.json",), checks=(_steps_problem, seeds))
    ap.add_argument("--steps", type=cli.COUNT, default=None,
                    help="Training steps per run, a multiple of the evaluation interval (every 100 steps; "
                         "every 10 with --tiny) (default 5000; 200 with --quick, 20 with --tiny).")
    ap.add_argument("--seeds", type=cli.SEED, nargs="+", default=None, action=cli.Once,
                    help="Seeds, trained together (default: --seed and the two after it, so --seed is at "
                         "most 4,294,967,293; --seed and the one after it with --tiny).")
    return ap


def _body(a):
    rec = run(from_args(a, steps=a.steps, seeds=a.seeds))
    print(f"E7 ({rec['mode']} mode, recipe {rec['recipe']}):")
    print_rows(rec, width=70, notes=True)
    print("\n" + rec["comparison"])
    base = rec["samples"][0]
    print(f"\nSample of {base['label']} after training:\n{base['after']}")
    print(f"\nwall time {rec['wall_time']:.1f} s; wrote {rec['json']} and {len(rec['figures'])} figures "
          f"in {a.figures_dir}/")


def main(argv=None) -> int:
    """The command line (``python -m experiments.e7_transformer --help``); returns the exit code."""
    return cli.main(_parser(), _body, argv, prog="experiments.e7_transformer")


if __name__ == "__main__":
    sys.exit(main())
