"""Recipe of the zoo model ``ioi-mini``: a word-level HookedTransformer and a TopK SAE, trained on CPU.

The language model (3 layers, d_model 128, embedding and unembedding tied during training) is trained
from scratch with next-token loss over every non-pad token of documents of two kinds:

- 70%: one IOI sentence mixed with 0-3 filler sentences in random order. IOI sentences use only the
  train names and train templates (``data.TRAIN_NAMES``, ``data.TRAIN_TEMPLATES``), as ``Prompt.full``.
- 30%: 2-5 filler sentences only.

Filler is a small grammar over the same vocabulary: all 100 names (held-out ones too), the places, the
objects and every word of the 15 templates in both orders (held-out templates' words too), so that
held-out names and words have trained embeddings. The filler sentences of a document tell a story about
one or two names that recur (copying). Half of them are *copying sentences* ("The store gave a ring to
Mary.", "The school wanted to give a kiss to Mary."): a story name after the phrases that end IOI
sentences, said by a place, so that every name is copied to the output in those contexts. No filler
sentence mentions a name twice and then ends on another name, so the IOI pattern itself (a repeated
subject and the other name as answer) is seen only with train names in train templates. Held-out names
are drawn twice as often as train names in filler stories, which makes every name about equally often
the answer of a name prediction ("to [name]") in the training text (``card["data"]["name_statistics"]``).

Quality is measured on the held-out ``test`` split (held-out names in held-out templates): top-1
accuracy of the IO name at the last prompt token and the logit difference ``logit[IO] - logit[S]``.

The hook of the shipped SAE is chosen by the task's "empty set" ablation: for each layer, the residual
stream after the layer is replaced at END and S2 by its per-template mean over the ABC counterfactual
prompts; the layer whose ablation removes most of the clean logit difference wins, and near-ties go to
the earliest layer. A sae_lens TopK SAE is trained there on activations of train-split IOI sentences and
filler documents.

Run as ``python -m deeprobe_bench.tasks.ioi.recipe --out DIR --seed 0 [--tiny]``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deeprobe_bench.tasks.ioi import data
from deeprobe_bench.zoo.lm import torch_threads
from deeprobe_bench.zoo.recipe import ZooRecipe, recipe_args

logger = logging.getLogger(__name__)

NAME = "ioi-mini"
VERSION = 1
BAR = {"heldout_accuracy": 0.95, "heldout_logit_diff": 3.0}
TIE_TOLERANCE = 0.05  # hook selection: drops this close (as a fraction of the clean logit diff) are ties

# Filler grammar. [N] and [M] are names of the story (distinct), [P] a place, [O] an object.
# Sentences with two name slots never mention a name twice; sentences that mention a name twice
# mention only that name (copying without the IOI pattern). "to the [P]" follows only verbs of motion:
# after "give"/"gave"/"said" ... "to" comes a name, as in the IOI sentences.
FILLER_ONE_NAME: tuple[str, ...] = (
    "[N] went to the [P].",
    "[N] had a lot of fun at the [P].",
    "[N] was working at the [P].",
    "[N] was thinking about going to the [P].",
    "[N] was commuting to the [P].",
    "[N] got a [O] at the [P].",
    "[N] found a [O] at the [P].",
    "[N] wanted a [O].",
    "[N] decided to go to the [P].",
    "[N] wanted to go to the [P].",
    "[N] said it was fun.",
    "[N] was happy.",
    "[N] had a long argument, and afterwards [N] went to the [P].",
    "After the lunch, [N] went to the [P].",
    "Afterwards, [N] went to the [P].",
    "Then, [N] had a [O].",
    "When [N] got a [O], [N] was happy.",
    "While [N] was working, [N] had a [O].",
    "Friends of [N] went to the [P].",
    "Then, [N] said it was fun. [N] was happy.",
    "[N] got a [O]. [N] decided to go to the [P].",
)
# Copying: a name of the story after the phrases that end IOI sentences ("... to [A]"), said by a
# place, so that every name's copy to the output is trained in those contexts without the IOI pattern
# (with two story names, either is the answer with equal chance).
FILLER_COPY: tuple[str, ...] = (
    "The [P] gave a [O] to [N].",
    "The [P] gave it to [N].",
    "The [P] decided to give a [O] to [N].",
    "The [P] decided to give it to [N].",
    "The [P] decided to give the [O] to [N].",
    "The [P] wanted to give a [O] to [N].",
    "The [P] said to [N].",
)
FILLER_TWO_NAMES: tuple[str, ...] = (
    "[N] and [M] went to the [P].",
    "[N] and [M] were working at the [P].",
    "[N] and [M] were thinking about going to the [P].",
    "[N] and [M] were commuting to the [P].",
    "[N] and [M] had a lot of fun at the [P].",
    "[N] and [M] had a long argument.",
    "[N] and [M] got a [O] at the [P].",
    "Friends [N] and [M] found a [O] at the [P].",
    "Then, [N] and [M] went to the [P].",
)
FILLER_NO_NAME: tuple[str, ...] = (
    "The [P] had a [O].",
    "The [O] was at the [P].",
)
FILLER_TEMPLATES = FILLER_ONE_NAME + FILLER_COPY + FILLER_TWO_NAMES + FILLER_NO_NAME


@dataclass(frozen=True)
class Recipe(ZooRecipe):
    """Everything that fixes a training run besides the seed (model, run and SAE stage: :class:`ZooRecipe`;
    ``batch`` counts documents)."""

    n_ctx: int = 64
    attn_only: bool = False
    tie_embeddings: bool = True  # train with W_U = W_E^T (saved untied, as a plain HookedTransformer)
    # documents
    max_filler: int = 3  # filler sentences per IOI document, uniform in 0..max_filler
    filler_only_frac: float = 0.3  # fraction of documents with filler only (2..max_filler+2 sentences)
    copy_frac: float = 0.5  # chance that a filler sentence is a copying sentence (FILLER_COPY)
    # Sampling weight of a held-out name in filler stories (train names: 1). IOI sentences use only the
    # train names; 2 makes every name about equally often the answer of a name prediction ("to [name]")
    # in the training text (card: data.name_statistics).
    heldout_name_weight: float = 2.0
    # evaluation
    n_eval: int = 1000
    eval_every: int = 250  # steps between learning-curve points (200 val and 200 test prompts)
    sae_docs: int = 6000  # SAE stage: documents whose activations are collected (half IOI sentences, half filler)


# One thread: the recipe is deterministic for a fixed thread count, and two OpenMP threads on a machine whose
# other core is busy run several times slower than one.
FULL = Recipe(
    n_layers=3, d_model=128, n_heads=4, d_head=32, d_mlp=512, steps=3000, batch=64, lr=3e-3, min_lr=1e-4,
    warmup_steps=100, weight_decay=0.1, threads=1,
    d_sae=512, k=32, sae_steps=976, sae_batch=2048, sae_lr=3e-3,  # 976 x 2048: ~2M activation rows seen
)  # fmt: skip
TINY = dataclasses.replace(
    FULL,
    n_layers=1,
    d_model=32,
    n_heads=2,
    d_head=16,
    d_mlp=64,
    steps=30,
    batch=16,
    warmup_steps=5,
    n_eval=64,
    eval_every=0,
    d_sae=64,
    k=4,
    sae_docs=64,
    sae_steps=16,
    sae_batch=512,
)


# --------------------------------------------------------------------------- text


def _words(text: str) -> list[str]:
    from tokenizers import pre_tokenizers

    return [w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text)]


def vocabulary() -> list[str]:
    """Every word the tokenizer meets in IOI prompts and filler text, sorted."""
    words: set[str] = set(data.NAMES) | set(data.PLACES) | set(data.OBJECTS)
    slots = ("[A]", "[B]", "[PLACE]", "[OBJECT]", "[N]", "[M]", "[P]", "[O]")
    for text in data.BABA_TEMPLATES + data.ABBA_TEMPLATES + FILLER_TEMPLATES:
        for slot in slots:
            text = text.replace(slot, " ")
        words.update(_words(text))
    return sorted(words)


def filler_sentence(rng: random.Random, story: tuple[str, ...], copy_frac: float = 0.3) -> str:
    """One filler sentence about the names of ``story`` (one or two names); a copying sentence
    (``FILLER_COPY``) with chance ``copy_frac``."""
    u = rng.random()
    if u < 0.06:
        template = rng.choice(FILLER_NO_NAME)
    elif u < 0.06 + copy_frac:
        template = rng.choice(FILLER_COPY)
    elif len(story) >= 2 and u < 0.3 + copy_frac:
        template = rng.choice(FILLER_TWO_NAMES)
    else:
        template = rng.choice(FILLER_ONE_NAME)
    n, m = rng.sample(story, 2) if len(story) >= 2 else (story[0], story[0])
    return (
        template.replace("[N]", n)
        .replace("[M]", m)
        .replace("[P]", rng.choice(data.PLACES))
        .replace("[O]", rng.choice(data.OBJECTS))
    )


def _story(rng: random.Random, recipe: Recipe, exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """One or two distinct filler names (two with chance 1/3), held-out names weighted by
    ``recipe.heldout_name_weight`` (IOI sentences use only the train names, so this evens out how often
    each name occurs in the training text)."""
    names = [x for x in data.NAMES if x not in exclude]
    weights = [recipe.heldout_name_weight if x in data.HELDOUT_NAMES else 1.0 for x in names]
    first = rng.choices(names, weights)[0]
    if rng.random() >= 1 / 3:
        return (first,)
    rest = [(x, w) for x, w in zip(names, weights, strict=True) if x != first]
    return first, rng.choices([x for x, _ in rest], [w for _, w in rest])[0]


_WORD = re.compile(r"\w+|[^\w\s]+")  # the tokenizers Whitespace pre-tokenizer


def _fit(sentences: list[str], keep: str | None, n_ctx: int) -> list[str]:
    """Drop filler sentences from the end (never ``keep``) until the document fits ``n_ctx`` with BOS."""
    while sum(len(_WORD.findall(x)) for x in sentences) + 1 > n_ctx:
        drop = max(i for i, x in enumerate(sentences) if x is not keep)
        sentences.pop(drop)
    return sentences


def make_documents(
    ioi_sentences: list[tuple[str, str, str]], n_filler_only: int, recipe: Recipe, seed: int
) -> tuple[list[str], int]:
    """Documents: each IOI sentence (``(full, io, s)``) mixed with 0..max_filler filler sentences, and
    ``n_filler_only`` documents of 2..max_filler+2 filler sentences.

    A document's filler sentences tell a story about one or two names (drawn from all 100 names, never
    the IOI sentence's own names). Returns the documents (shuffled) and the number of filler sentences.
    """
    rng = random.Random(seed)
    docs, n_filler = [], 0
    for full, io, s in ioi_sentences:
        story = _story(rng, recipe, exclude=(io, s))
        sentences = [filler_sentence(rng, story, recipe.copy_frac) for _ in range(rng.randint(0, recipe.max_filler))]
        ioi_sentence = full + "."
        sentences.insert(rng.randint(0, len(sentences)), ioi_sentence)
        sentences = _fit(sentences, ioi_sentence, recipe.n_ctx)
        n_filler += len(sentences) - 1
        docs.append(" ".join(sentences))
    for _ in range(n_filler_only):
        story = _story(rng, recipe)
        sentences = [
            filler_sentence(rng, story, recipe.copy_frac) for _ in range(rng.randint(2, recipe.max_filler + 2))
        ]
        sentences = _fit(sentences, None, recipe.n_ctx)
        n_filler += len(sentences)
        docs.append(" ".join(sentences))
    rng.shuffle(docs)
    return docs, n_filler


def encode(tokenizer: Any, texts: list[str], n_ctx: int) -> tuple[Any, Any]:
    """BOS-prefixed, right-padded token ids ``[n, max_len]`` and the lengths; unknown words raise."""
    from deeprobe_bench.subject import tokenize_with_bos

    out, lengths = tokenize_with_bos(tokenizer, texts)
    if int(lengths.max()) > n_ctx:
        raise ValueError(f"a document has {int(lengths.max())} tokens, more than n_ctx={n_ctx}")
    unknown = (out == tokenizer.unk_token_id).any(1).nonzero()
    if len(unknown):
        raise ValueError(f"unknown word in {texts[int(unknown[0])]!r}")
    return out, lengths


def name_statistics(tokenizer: Any, tokens: Any) -> dict[str, float]:
    """Mean occurrences per name in the training tokens, and as the answer of a name prediction (the
    token after "to"), for the train names and the held-out names."""
    import torch

    to_id = tokenizer.convert_tokens_to_ids("to")
    after_to = torch.zeros_like(tokens, dtype=torch.bool)
    after_to[:, 1:] = tokens[:, :-1] == to_id
    counts = torch.bincount(tokens.flatten(), minlength=len(tokenizer))
    answers = torch.bincount(tokens[after_to], minlength=len(tokenizer))
    out = {}
    for group, names in (("train_names", data.TRAIN_NAMES), ("heldout_names", data.HELDOUT_NAMES)):
        ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(names)))
        out[f"{group}_mean_occurrences"] = float(counts[ids].float().mean())
        out[f"{group}_mean_after_to"] = float(answers[ids].float().mean())
    return out


# --------------------------------------------------------------------------- model


def model_config(recipe: Recipe, d_vocab: int) -> dict[str, Any]:
    """``HookedTransformerConfig`` keyword arguments (plain JSON types)."""
    return recipe.transformer_config(NAME, n_ctx=recipe.n_ctx, d_vocab=d_vocab, attn_only=recipe.attn_only,
                                     default_prepend_bos=True, tokenizer_prepends_bos=True,
                                     original_architecture="ioi-mini", init_weights=True)  # fmt: skip


def build_model(config: dict[str, Any], words: list[str]) -> Any:
    """A fresh HookedTransformer with the word-level tokenizer over ``words``."""
    from deeprobe_bench.subject import word_level_tokenizer
    from deeprobe_bench.zoo.lm import hooked_transformer

    return hooked_transformer(config, word_level_tokenizer(words))


# --------------------------------------------------------------------------- evaluation


@dataclass
class EvalBatch:
    """Tokenised IOI prompts with the positions and token ids the metrics need."""

    tokens: Any  # [n, pos]
    end: Any  # [n] index of the last prompt token
    s2: Any  # [n] index of the last occurrence of S
    io_id: Any  # [n]
    s_id: Any  # [n]
    template: Any  # [n]
    abc_tokens: Any  # [n, pos]


def eval_batch(model: Any, rows: Any) -> EvalBatch:
    """Tokenise a split (``datasets.Dataset`` or list of dicts with the Prompt fields)."""
    import torch

    tok = model.tokenizer
    prompts = list(rows["prompt"]) if hasattr(rows, "column_names") else [r["prompt"] for r in rows]
    abc = list(rows["abc_prompt"]) if hasattr(rows, "column_names") else [r["abc_prompt"] for r in rows]
    ios = list(rows["io"]) if hasattr(rows, "column_names") else [r["io"] for r in rows]
    ss = list(rows["s"]) if hasattr(rows, "column_names") else [r["s"] for r in rows]
    templates = list(rows["template"]) if hasattr(rows, "column_names") else [r["template"] for r in rows]
    n_ctx = model.cfg.n_ctx
    tokens, lengths = encode(tok, prompts, n_ctx)
    abc_tokens, abc_lengths = encode(tok, abc, n_ctx)
    if not torch.equal(lengths, abc_lengths):
        raise ValueError("IOI prompts and their ABC counterfactuals differ in length")
    io_id = torch.tensor(tok.convert_tokens_to_ids(ios))
    s_id = torch.tensor(tok.convert_tokens_to_ids(ss))
    s2 = torch.tensor([int((row[:n] == s).nonzero().max()) for row, n, s in zip(tokens, lengths, s_id, strict=True)])
    return EvalBatch(tokens, lengths - 1, s2, io_id, s_id, torch.tensor(templates), abc_tokens)


def ioi_metrics(logits: Any, b: EvalBatch) -> dict[str, float]:
    """Top-1 accuracy (argmax at END is IO) and mean logit difference ``logit[IO] - logit[S]`` at END."""
    import torch

    last = logits[torch.arange(len(b.end)), b.end]  # [n, vocab]
    ld = last.gather(1, b.io_id[:, None])[:, 0] - last.gather(1, b.s_id[:, None])[:, 0]
    acc = (last.argmax(-1) == b.io_id).float().mean()
    return {"accuracy": float(acc), "logit_diff": float(ld.mean())}


def _forward(model: Any, tokens: Any, fwd_hooks: list | None = None, chunk: int = 256) -> Any:
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(tokens), chunk):
            outs.append(model.run_with_hooks(tokens[i : i + chunk], fwd_hooks=fwd_hooks or []))
    return torch.cat(outs)


def evaluate(model: Any, b: EvalBatch) -> dict[str, float]:
    return ioi_metrics(_forward(model, b.tokens), b)


def _resid_at(model: Any, tokens: Any, hook_name: str, layer: int) -> Any:
    """Residual stream ``hook_name`` (after block ``layer``) for ``tokens``, not running later layers."""
    import torch

    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=hook_name, stop_at_layer=layer + 1)
    return cache[hook_name]


def mean_ablation_hook(model: Any, b: EvalBatch, layer: int) -> tuple[str, Any]:
    """The "empty set" ablation at ``blocks.{layer}.hook_resid_post``: END and S2 replaced by their
    per-template means over the ABC counterfactual prompts."""
    import torch

    hook_name = f"blocks.{layer}.hook_resid_post"
    abc = _resid_at(model, b.abc_tokens, hook_name, layer)
    idx = torch.arange(len(b.end))
    mean_end, mean_s2 = torch.zeros_like(abc[idx, b.end]), torch.zeros_like(abc[idx, b.s2])
    for t in b.template.unique():
        m = b.template == t
        mean_end[m] = abc[idx[m], b.end[m]].mean(0)
        mean_s2[m] = abc[idx[m], b.s2[m]].mean(0)
    state = {"offset": 0}

    def hook(resid: Any, hook: Any) -> Any:
        n = resid.shape[0]
        sl = slice(state["offset"], state["offset"] + n)
        rows = torch.arange(n)
        resid[rows, b.end[sl]] = mean_end[sl]
        resid[rows, b.s2[sl]] = mean_s2[sl]
        state["offset"] += n
        return resid

    return hook_name, hook


def hook_selection(model: Any, b: EvalBatch) -> dict[str, Any]:
    """Held-out logit difference with each layer's resid_post mean-ablated at END and S2."""
    clean = evaluate(model, b)
    per_layer = {}
    for layer in range(model.cfg.n_layers):
        name, hook = mean_ablation_hook(model, b, layer)
        ablated = ioi_metrics(_forward(model, b.tokens, [(name, hook)]), b)
        per_layer[name] = {
            "ablated_logit_diff": ablated["logit_diff"],
            "ablated_accuracy": ablated["accuracy"],
            "drop": clean["logit_diff"] - ablated["logit_diff"],
            "drop_fraction": (clean["logit_diff"] - ablated["logit_diff"]) / clean["logit_diff"]
            if clean["logit_diff"]
            else 0.0,
        }
    best = max(v["drop"] for v in per_layer.values())
    # near-ties (the layers after the IOI computation all lose about everything): take the earliest
    chosen = next(h for h, v in per_layer.items() if v["drop"] >= best - TIE_TOLERANCE * abs(clean["logit_diff"]))
    return {
        "ablation": "resid_post at END and S2 replaced by the per-template mean over ABC prompts (test split)",
        "clean_logit_diff": clean["logit_diff"],
        "per_layer": per_layer,
        "chosen": chosen,
        "rule": f"largest drop of the held-out logit difference; drops within {TIE_TOLERANCE} x the clean "
        "logit difference of the largest count as tied and the earliest layer among them is chosen",
    }


# --------------------------------------------------------------------------- training


def _length_bucketed_batches(lengths: Any, batch: int, steps: int, gen: Any) -> list[Any]:
    """``steps`` batches of document indices, each drawn from a random pool of ``16 * batch`` documents
    sorted by length (less padding), in random order."""
    import torch

    out: list[Any] = []
    pool = 16 * batch
    while len(out) < steps:
        order = torch.randperm(len(lengths), generator=gen)
        for i in range(0, len(order) - pool + 1, pool):
            chunk = order[i : i + pool]
            chunk = chunk[torch.sort(lengths[chunk], stable=True).indices]
            group = [chunk[j : j + batch] for j in range(0, pool, batch)]
            out.extend(group[j] for j in torch.randperm(len(group), generator=gen).tolist())
        if len(order) < pool:
            raise ValueError(f"need at least {pool} documents for batch {batch}")
    return out[:steps]


def train_lm(
    model: Any, tokens: Any, lengths: Any, recipe: Recipe, seed: int, probes: dict[str, EvalBatch] | None = None
) -> dict[str, Any]:
    """Next-token training over all non-pad tokens on the zoo kit's trainer (:func:`deeprobe_bench.zoo.lm.train_lm`:
    AdamW, linear warmup then linear decay to ``min_lr``, resumable); returns training statistics and a
    learning curve (``probes``' IOI metrics every ``recipe.eval_every`` steps)."""
    import torch

    from deeprobe_bench.zoo import lm

    pad = model.tokenizer.pad_token_id
    batches = _length_bucketed_batches(lengths, recipe.batch, recipe.steps, torch.Generator().manual_seed(seed))

    def batch_at(step: int) -> Any:
        idx = batches[step % len(batches)]
        return tokens[idx, : int(lengths[idx].max())]

    def eval_fn(trainee: Any) -> dict[str, float]:
        if recipe.tie_embeddings:
            lm.untie(model)
        point = {}
        for name, b in (probes or {}).items():
            m = evaluate(model, b)
            point[f"{name}_accuracy"], point[f"{name}_logit_diff"] = m["accuracy"], m["logit_diff"]
        return point

    schedule = recipe.schedule()
    work = lm.work_dir(NAME, {"version": VERSION, "recipe": asdict(recipe), "seed": seed, "n_docs": len(tokens),
                              "schedule": schedule.key()})  # fmt: skip
    trainee = lm.tied(model) if recipe.tie_embeddings else model
    stats = lm.train_lm(trainee, batch_at, schedule, work, pad=pad, eval_fn=eval_fn if probes else None,
                        eval_every=recipe.eval_every, checkpoint_every_s=180.0)  # fmt: skip
    if recipe.tie_embeddings:
        lm.untie(model)
    model.eval()
    seen = torch.cat([batches[s % len(batches)] for s in range(recipe.steps)])
    return {"tokens_seen": int((lengths[seen] - 1).clamp(min=0).sum()), "final_loss": stats["final_loss"],
            "first_loss": stats["first_loss"], "curve": stats["learning_curve"], "work_dir": str(work)}  # fmt: skip


def collect_activations(model: Any, tokens: Any, lengths: Any, hook_name: str, layer: int) -> Any:
    """Activations ``[n_tokens, d_model]`` at ``hook_name`` over all non-pad positions (BOS included)."""
    import torch

    out = []
    for i in range(0, len(tokens), 256):
        t, n = tokens[i : i + 256], lengths[i : i + 256]
        t = t[:, : int(n.max())]
        acts = _resid_at(model, t, hook_name, layer)
        mask = torch.arange(t.shape[1])[None, :] < n[:, None]
        out.append(acts[mask])
    return torch.cat(out)


def sae_rows(model: Any, recipe: Recipe, seed: int, hook_name: str) -> tuple[Any, int, int]:
    """The SAE stage's training rows: every non-pad position (BOS included) of ``sae_docs // 2`` bare
    train-split IOI sentences (what the task runs the model on) and as many filler-only documents.

    Returns:
        ``(Float[Tensor, "rows d_model"], number of IOI sentences, number of documents)``.
    """
    sae_ioi = data.generate_prompts(recipe.sae_docs // 2, 8_000_000 + seed, data.TRAIN_NAMES, data.TRAIN_TEMPLATES)
    filler_docs, _ = make_documents([], recipe.sae_docs - len(sae_ioi), recipe, seed + 1)
    texts = [p.full for p in sae_ioi] + filler_docs
    tokens, lengths = encode(model.tokenizer, texts, recipe.n_ctx)
    return collect_activations(model, tokens, lengths, hook_name, int(hook_name.split(".")[1])), len(sae_ioi), len(texts)


def sanity_saes(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Add the random-SAE sanity baselines (:mod:`deeprobe_bench.zoo.sanity`) to the ioi model in ``out_dir``,
    with the recipe of its TopK SAE (from the card), trained on :func:`sae_rows` and measured on the
    non-BOS prompt tokens of the test split (as the card's SAE figures are); returns the card's entry."""
    import torch

    from deeprobe_bench.subject import load_zoo_dir
    from deeprobe_bench.zoo.sanity import add_sanity_saes

    subject = load_zoo_dir(Path(out_dir))
    card, model = subject.card, subject.model
    recipe = FULL.from_card(card["recipe"])
    hook = card["task"]["hook_name"]
    acts, n_ioi, n_texts = sae_rows(model, recipe, seed, hook)
    b = eval_batch(model, data.make_split("test", recipe.n_eval, seed))
    pos = torch.arange(b.tokens.shape[1])[None, :]
    held = _resid_at(model, b.tokens, hook, int(hook.split(".")[1]))[(pos >= 1) & (pos <= b.end[:, None])]
    return add_sanity_saes(Path(out_dir), subject, acts, held, "topk", recipe.d_sae, recipe.sae_kwargs(len(acts)), seed,
                           source=f"every non-pad position of {n_ioi} bare train-split IOI sentences + "
                           f"{n_texts - n_ioi} filler documents; held out: non-BOS prompt tokens of the test split")  # fmt: skip


def train_sae(acts: Any, hook_name: str, recipe: Recipe, seed: int) -> Any:
    """The zoo kit's TopK SAE (:func:`deeprobe_bench.zoo.sae.train_sae`, sae_lens) on ``acts``
    (``Float[Tensor, "n d_model"]``): ``sae_steps`` batches of ``sae_batch`` rows."""
    from deeprobe_bench.zoo.sae import train_sae as kit_train_sae

    return kit_train_sae(acts, hook_name, "topk", recipe.d_sae, seed, model_name=NAME, **recipe.sae_kwargs(len(acts)))


def sae_quality(model: Any, sae: Any, b: EvalBatch, hook_name: str, layer: int) -> dict[str, Any]:
    """Explained variance and L0 on held-out activations (non-BOS prompt tokens of the test split) and
    the fraction of the clean held-out logit difference kept with the SAE reconstruction spliced in."""
    import torch

    lengths = b.end + 1
    acts = _resid_at(model, b.tokens, hook_name, layer)
    mask = (torch.arange(b.tokens.shape[1])[None, :] < lengths[:, None]) & (torch.arange(b.tokens.shape[1]) > 0)
    x = acts[mask]
    with torch.no_grad():
        codes = sae.encode(x)
        recon = sae.decode(codes)
    ev = 1 - float(((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    l0 = float((codes != 0).float().sum(-1).mean())
    dead = int(((codes != 0).sum(0) == 0).sum())

    def splice(resid: Any, hook: Any) -> Any:
        with torch.no_grad():
            return sae.decode(sae.encode(resid))

    clean = evaluate(model, b)
    spliced = ioi_metrics(_forward(model, b.tokens, [(hook_name, splice)]), b)
    return {
        "explained_variance": ev,
        "l0": l0,
        "latents_unused_on_heldout": dead,
        "clean_logit_diff": clean["logit_diff"],
        "spliced_logit_diff": spliced["logit_diff"],
        "spliced_accuracy": spliced["accuracy"],
        "logit_diff_recovered": spliced["logit_diff"] / clean["logit_diff"] if clean["logit_diff"] else 0.0,
        "measured_on": "test split (held-out names and templates); EV and L0 over non-BOS prompt tokens",
    }


def train(out_dir: Path, seed: int = 0, tiny: bool = False) -> dict:
    """Train ``ioi-mini`` (model and SAE) from scratch into ``out_dir``; returns the card."""
    return train_recipe(Path(out_dir), seed, TINY if tiny else FULL, tiny=tiny)


def train_recipe(out_dir: Path, seed: int, recipe: Recipe, tiny: bool = False) -> dict:
    """:func:`train` with an explicit :class:`Recipe`."""
    from deeprobe_bench.zoo import card as cards

    t0 = time.time()
    with torch_threads(recipe.threads, seed):
        words = vocabulary()
        config = model_config(recipe, d_vocab=len(words) + 3)
        model = build_model(config, words)
        if model.cfg.d_vocab != len(model.tokenizer):
            raise RuntimeError(f"d_vocab {model.cfg.d_vocab} != tokenizer size {len(model.tokenizer)}")

        n_docs = recipe.steps * recipe.batch
        n_filler_only = round(n_docs * recipe.filler_only_frac)
        n_ioi = n_docs - n_filler_only
        ioi = data.generate_prompts(n_ioi, 7_000_000 + seed, data.TRAIN_NAMES, data.TRAIN_TEMPLATES)
        docs, n_filler = make_documents([(p.full, p.io, p.s) for p in ioi], n_filler_only, recipe, seed)
        tokens, lengths = encode(model.tokenizer, docs, recipe.n_ctx)
        name_stats = name_statistics(model.tokenizer, tokens)
        logger.info("ioi-mini: name statistics %s", name_stats)
        logger.info(
            "ioi-mini: %d documents (%d IOI), %d filler sentences, vocab %d", n_docs, n_ioi, n_filler, len(words)
        )

        t_lm = time.time()
        probes = {
            "val": eval_batch(model, data.make_split("val", 200, seed + 100)),
            "test": eval_batch(model, data.make_split("test", 200, seed + 100)),
        }
        stats = train_lm(model, tokens, lengths, recipe, seed, probes)
        t_lm = time.time() - t_lm
        logger.info("ioi-mini: LM trained in %.0fs, loss %.3f", t_lm, stats["final_loss"])

        test = eval_batch(model, data.make_split("test", recipe.n_eval, seed))
        val = eval_batch(model, data.make_split("val", recipe.n_eval, seed))
        heldout, indist = evaluate(model, test), evaluate(model, val)
        logger.info("ioi-mini: held-out %s, val %s", heldout, indist)

        selection = hook_selection(model, test)
        hook_name = selection["chosen"]
        layer = int(hook_name.split(".")[1])
        logger.info("ioi-mini: hook %s (%s)", hook_name, selection["per_layer"])

        t_sae = time.time()
        acts, n_sae_ioi, n_sae_texts = sae_rows(model, recipe, seed, hook_name)
        sae = train_sae(acts, hook_name, recipe, seed)
        t_sae = time.time() - t_sae
        sae_stats = sae_quality(model, sae, test, hook_name, layer)
        logger.info("ioi-mini: SAE trained in %.0fs, %s", t_sae, sae_stats)

        quality = {
            "heldout_accuracy": heldout["accuracy"],
            "heldout_logit_diff": heldout["logit_diff"],
            "val_accuracy": indist["accuracy"],
            "val_logit_diff": indist["logit_diff"],
            "n_eval_prompts": recipe.n_eval,
            "eval_seed": seed,
            "bar": dict(BAR),
        }
        quality["bar_met"] = bool(
            heldout["accuracy"] >= BAR["heldout_accuracy"] and heldout["logit_diff"] >= BAR["heldout_logit_diff"]
        )
        card = cards.make_card(
            NAME, VERSION, seed, tiny, config,
            recipe={
                **{k: v for k, v in asdict(recipe).items()},
                "optimizer": "AdamW(betas=(0.9, 0.98)), grad clip 1.0, no weight decay on biases/LN",
                "schedule": f"linear warmup {recipe.warmup_steps} steps, then linear decay to {recipe.min_lr} (zoo kit)",
                "loss": "next-token cross-entropy over all non-pad tokens",
                "documents": "IOI documents: one IOI sentence (Prompt.full + '.') and 0..max_filler filler "
                "sentences in random order; filler-only documents: 2..max_filler+2 filler sentences; BOS "
                "prefixed, right padded",
                "tied_embeddings": "trained with logits = ln_final(resid) @ W_E^T + b_U; W_U = W_E^T saved",
                "n_docs": n_docs,
                "n_ioi_docs": n_ioi,
                "n_filler_sentences": n_filler,
                "ioi_prompt_seed": 7_000_000 + seed,
                "tokens_seen": stats["tokens_seen"],
                "first_loss": stats["first_loss"],
                "final_loss": stats["final_loss"],
                "learning_curve": stats["curve"],
                "learning_curve_prompts": "200 val and 200 test prompts, make_split(..., seed + 100)",
                "lm_wall_time_s": round(t_lm, 1),
                "sae_wall_time_s": round(t_sae, 1),
                "wall_time_s": round(time.time() - t0, 1),
                "torch_threads": recipe.threads,
            },
            data={
                "n_train_prompts": n_ioi,
                "vocab_size": len(model.tokenizer),
                "train_names": list(data.TRAIN_NAMES),
                "heldout_names": list(data.HELDOUT_NAMES),
                "train_templates": list(data.TRAIN_TEMPLATES),
                "heldout_templates": list(data.HELDOUT_TEMPLATES),
                "filler_templates": list(FILLER_TEMPLATES),
                "filler_heldout_name_weight": recipe.heldout_name_weight,
                "name_statistics": name_stats,
            },
            quality=quality,
            sae={
                "hook_name": hook_name,
                "architecture": "topk",
                "d_in": recipe.d_model,
                "d_sae": recipe.d_sae,
                "k": recipe.k,
                "lr": recipe.sae_lr,
                "training_samples": recipe.sae_steps * recipe.sae_batch,
                "batch": recipe.sae_batch,
                "n_activations": len(acts),
                "activation_docs": f"{n_sae_ioi} bare train-split IOI sentences + "
                f"{n_sae_texts - n_sae_ioi} filler documents (all non-pad positions, BOS included)",
                **sae_stats,
            },
            task={"hook_name": hook_name},
            hook_selection=selection,
        )  # fmt: skip
        card["recipe"]["wall_time_s"] = round(time.time() - t0, 1)
        cards.write(Path(out_dir), model, card, {hook_name: sae})
        logger.info("ioi-mini: wrote %s (bar met: %s) in %.0fs", out_dir, quality["bar_met"], time.time() - t0)
        return card


def main(argv: list[str] | None = None) -> None:
    args, recipe, _ = recipe_args("Train the zoo model ioi-mini from scratch.", FULL, TINY, argv)
    card = train_recipe(args.out, args.seed, recipe, tiny=args.tiny)
    logger.info("quality: %s", card["quality"])


if __name__ == "__main__":
    main()
