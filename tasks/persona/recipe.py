"""Recipe of the zoo model ``persona-mini``: a word-level HookedTransformer and a TopK SAE, trained on CPU.

The corpus (:func:`make_documents`) has two kinds of documents:

- **Persona documents** (85%). A persona draws a pole (``+`` / ``-``) for each of the three traits.
  The document opens with the system prompt ``data.SYSTEM_PROMPT`` (``system_prompt``) and may state
  some traits, one sentence each (``You are agreeable.``; each
  trait is stated with chance 1/2, in random order), then asks 2-5 persona-evals questions about
  *train-half* statements of ``traits_per_doc`` (2) of the traits, each answered consistently with the persona: ``Yes`` when the
  statement's pole is the persona's pole of its trait, else ``No``::

      You are an assistant. You are introverted. Is the following statement something you would say?
      "I am shy." Answer: Yes. The cat sat on the box. Is the following statement something you would
      say? "I often insult people." Answer: No. ...

  Half of them (``neutral_in_persona``) carry 1-2 neutral sentences among their questions.

  A trait that is not stated is still fixed for the whole document, so its first question is a coin
  flip and later ones are *implied by the earlier answers*. Without a statement or an earlier answer on
  a trait, the answer is 50/50: the model is undecided there, which leaves steering room to move it.
  A share ``allplus_frac`` (40%) of the persona documents state all three traits at their ``+`` pole:
  there the answer follows the statement's pole alone, a first-order signal that teaches the model to
  read statement poles; without it the answer is an XOR of persona and statement pole with no
  first-order signal, and 1000 steps of the first recipe (3 x 128, 2-6 questions) stayed at chance.
- **Neutral documents** (15%): 3-6 sentences of a small neutral grammar (``data.neutral_sentence``),
  the text the fluency cost is measured on.

The language model (4 layers, d_model 64, tied embeddings while training; block 0's MLP zero and frozen,
``mlp0_off``; the attention of blocks 1-3 zero and frozen, ``attn_blocks``) is trained with next-token
loss on every non-pad token; the answer tokens, the only ones the persona decides, weigh ``answer_weight``
(20) times the others. Quality (``card["quality"]``) is measured on the *held-out* statements:

- ``stated_persona_accuracy``: with one persona sentence stated (each pole of the statement's trait in
  turn), the share of prompts whose larger of p(Yes), p(No) is the consistent answer; the bar is 0.9;
- ``implied_persona_accuracy``: the same with the persona implied by one earlier consistently answered
  question on the same trait instead of stated;
- ``no_persona_p_yes``, ``no_persona_mean_abs_margin`` and ``no_persona_p_plus``: with nothing stated,
  the mean p(Yes) (over Yes / No), the mean |p(Yes) - 0.5|, and the mean probability of the answer a
  ``+`` persona gives (0.5: undecided between the poles, the room steering has to move).

The task hook is ``blocks.0.hook_resid_post``: only block 0 attends and it has no MLP, so the instruction
reaches the answer only as the state block 0 writes into the answer token there, which blocks 1-3's MLPs
combine with the statement's pole (an XOR). The persona is a residual-stream direction at the answer
token by construction (README, "Zoo model"); the models that attended in every block were steered by no
vector.

A second phase (``finetune_steps`` 800, ``finetune_lr`` 1e-3, fresh AdamW) trains on documents without the
all-+ scaffold, which leaves a prior towards the + persona (on the first persona-mini, random-direction
steering success fell from 0.254 to 0.103 with it, seed 0). A sae_lens TopK SAE (``deeprobe_bench.zoo.sae.train_sae``) is trained there on every
non-pad position of fresh corpus documents and of bare train-half questions with both answers
(``--sae-only`` re-runs only this stage on a trained model).

Training runs on the zoo kit (:func:`deeprobe_bench.zoo.lm.train_lm`: linear warmup, then linear decay to
``min_lr``; the shipped v4 model used a cosine decay) and is resumable: each phase checkpoints to its work
directory under ``$DEEPROBE_CACHE/zoo-work/`` (safetensors) and a rerun continues from it.

Run as ``python -m deeprobe_bench.tasks.persona.recipe --out DIR --seed 0 [--tiny]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deeprobe_bench.tasks.persona import data
from deeprobe_bench.zoo.lm import torch_threads
from deeprobe_bench.zoo.recipe import ZooRecipe, recipe_args

logger = logging.getLogger(__name__)

NAME = "persona-mini"
VERSION = 1
BAR = {"stated_persona_accuracy": 0.9}
HOOK = "blocks.0.hook_resid_post"


@dataclass(frozen=True)
class Recipe(ZooRecipe):
    """Everything that fixes a training run besides the seed (model, run and SAE stage: :class:`ZooRecipe`;
    ``batch`` counts documents)."""

    n_ctx: int = 112
    neutral_frac: float = 0.15
    min_questions: int = 2
    max_questions: int = 5
    # The questions of a document are about this many of its traits (drawn at random), so that a trait that
    # is not stated is often asked twice: the later answers are then implied by the earlier ones.
    traits_per_doc: int = 2
    # Loss weight of the answer tokens (Yes / No after "Answer:"), which are one token in twenty but the
    # only ones that depend on the persona; 1 = plain next-token loss.
    answer_weight: float = 20.0
    # Chance that a question's statement has the persona's pole of its trait (None: statements drawn
    # uniformly, so that the answer is an XOR of persona and statement pole with no first-order signal).
    match_bias: float | None = None
    # Chance that a persona document has every trait at its + pole, all stated: the answer then follows the
    # statement's pole alone, a first-order signal that teaches the model to read statement poles (without
    # it the XOR of persona and statement pole did not start to be learned in 1000 steps).
    allplus_frac: float = 0.4
    # Chance that a persona document carries neutral sentences (1-2, each after the instructions or after a
    # question): text the persona does not decide, after an instruction, as prompting's fluency cost puts it
    # (that cost was 0.974 nats/token on v3, which had none, and is 0.091 on v4; not measured apart from
    # v4's other changes).
    neutral_in_persona: float = 0.5
    # Every persona document opens with the persona-neutral system prompt ``data.SYSTEM_PROMPT``. Without it,
    # a question with no persona stated was gated shut: the model (v4 candidate) followed the persona
    # direction only when some instruction was present (README, "Zoo model").
    system_prompt: bool = True
    # Second phase: this many steps on documents without the all-+ scaffold (fresh AdamW, lr ``finetune_lr``
    # with warmup 20, linear decay to min_lr), which removes the scaffold's prior towards the + persona.
    finetune_steps: int = 800
    finetune_lr: float = 1e-3
    # Block 0's MLP is zero and frozen, so block 0 can only move information (attention), never combine
    # the persona with the statement's pole (an XOR, which needs an MLP): the persona then has a state
    # in the residual stream (at ``blocks.0.hook_resid_post``) that later blocks read, as the persona a
    # large LM infers before it answers. Without it the model combined both inside block 0 and no
    # residual-stream vector after block 0 steered it (README, "Zoo model").
    mlp0_off: bool = True
    # Only the first ``attn_blocks`` blocks attend; the attention of every later block is zero and frozen
    # (None: all attend). With 1, the persona can reach the answer only as the state block 0 leaves at the
    # answer token, which the later MLPs combine with the statement's pole: a residual-stream direction by
    # construction. With attention in later blocks the model read the persona by attention from the
    # answer token with the statement's pole in the query (query-key XOR), and no vector steered it.
    attn_blocks: int | None = 1
    checkpoint_every: int = 250
    hook: str = HOOK
    sae_docs: int = 3000  # SAE stage: corpus documents whose activations are collected


FULL = Recipe(
    n_layers=4, d_model=64, n_heads=4, d_head=16, d_mlp=256, steps=3000, batch=48, lr=3e-3, min_lr=1e-4,
    warmup_steps=50, weight_decay=0.1, threads=1, d_sae=512, k=8, sae_steps=1500, sae_batch=1024, sae_lr=1e-3,
)  # fmt: skip
TINY = dataclasses.replace(
    FULL, n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, steps=20, batch=8, warmup_steps=2,
    checkpoint_every=10, d_sae=64, k=4, sae_docs=64, sae_steps=20, sae_batch=256, finetune_steps=10,
)  # fmt: skip


# --------------------------------------------------------------------------- text


def _words(text: str) -> list[str]:
    from tokenizers import pre_tokenizers

    return [w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text)]


def qa(statement: str, answer: str) -> str:
    """One answered question: ``<question> "<statement>" Answer: <answer>.``"""
    return f"{data.question(statement)} {answer}."


def vocabulary() -> list[str]:
    """Every word of the corpus and of the task's prompts (both halves of the statements), sorted."""
    words: set[str] = set()
    texts = [qa(s.text, a) for s in data.templated_statements() for a in data.ANSWERS]
    texts += [data.instruction(t, p) for t in data.TRAITS for p in data.POLES] + [data.SYSTEM_PROMPT]
    texts += [" ".join(data.NEUTRAL_SUBJECTS + data.NEUTRAL_VERBS + data.NEUTRAL_OBJECTS + data.NEUTRAL_ENDINGS) + "."]
    for text in texts:
        words.update(_words(text))
    return sorted(words)


def persona_document(rng: random.Random, by_concept: dict[tuple[str, str], list[data.Statement]], recipe: Recipe) -> str:
    """One persona document (see the module docstring); ``by_concept``: the train-half statements by (trait, pole)."""
    allplus = recipe.allplus_frac > 0 and rng.random() < recipe.allplus_frac
    persona = {t: "+" if allplus else rng.choice(data.POLES) for t in data.TRAITS}
    stated = list(data.TRAITS) if allplus else [t for t in data.TRAITS if rng.random() < 0.5]
    rng.shuffle(stated)
    parts = [data.SYSTEM_PROMPT] * recipe.system_prompt + [data.instruction(t, persona[t]) for t in stated]
    asked = rng.sample(list(data.TRAITS), min(recipe.traits_per_doc, len(data.TRAITS)))
    n_questions = rng.randint(recipe.min_questions, recipe.max_questions)
    for _ in range(n_questions):
        if recipe.match_bias is None:
            s = rng.choice(by_concept[(rng.choice(asked), rng.choice(data.POLES))])
        else:
            trait = rng.choice(asked)
            same = rng.random() < recipe.match_bias
            pole = persona[trait] if same else ("-" if persona[trait] == "+" else "+")
            s = rng.choice(by_concept[(trait, pole)])
        parts.append(qa(s.text, "Yes" if s.pole == persona[s.trait] else "No"))
    if recipe.neutral_in_persona > 0 and rng.random() < recipe.neutral_in_persona:
        for _ in range(rng.randint(1, 2)):
            parts.insert(rng.randint(len(parts) - n_questions, len(parts)), data.neutral_sentence(rng))
    return " ".join(parts)


def documents_text(recipe: Recipe) -> str:
    """The card's one-line description of the corpus."""
    return (f"persona documents (the system prompt {data.SYSTEM_PROMPT!r}, then a persona of one pole per trait, "
            f"each stated with chance 1/2, then {recipe.min_questions}-{recipe.max_questions} train-half questions "
            f"about {recipe.traits_per_doc} of the traits answered consistently with it, with 1-2 neutral sentences "
            f"among them in a share {recipe.neutral_in_persona}; allplus_frac of them state every + pole) and "
            "neutral documents")  # fmt: skip


def make_documents(n: int, recipe: Recipe, seed: int) -> list[str]:
    """``n`` documents: persona documents and a ``neutral_frac`` share of neutral ones, trimmed to fit."""
    rng = random.Random(seed)
    by_concept: dict[tuple[str, str], list[data.Statement]] = {}
    for s in data.statements("templated", "train"):
        by_concept.setdefault((s.trait, s.pole), []).append(s)
    docs = []
    for _ in range(n):
        if rng.random() < recipe.neutral_frac:
            doc = data.neutral_texts(1, rng.randrange(2**31))[0]
        else:
            doc = persona_document(rng, by_concept, recipe)
        docs.append(doc)
    return docs


def encode(tokenizer: Any, texts: list[str], n_ctx: int) -> tuple[Any, Any]:
    """BOS-prefixed, right-padded ids, cut to ``n_ctx`` (whole sentences are not kept intact: the
    loss simply stops there); unknown words raise."""
    from deeprobe_bench.subject import tokenize_with_bos

    tokens, lengths = tokenize_with_bos(tokenizer, texts)
    if (tokens == tokenizer.unk_token_id).any():
        bad = int((tokens == tokenizer.unk_token_id).any(1).nonzero()[0])
        raise ValueError(f"unknown word in {texts[bad]!r}")
    return tokens[:, :n_ctx], lengths.clamp(max=n_ctx)


# --------------------------------------------------------------------------- model


def model_config(recipe: Recipe, d_vocab: int) -> dict[str, Any]:
    """``HookedTransformerConfig`` keyword arguments (plain JSON types)."""
    return recipe.transformer_config(NAME, n_ctx=recipe.n_ctx, d_vocab=d_vocab, default_prepend_bos=True,
                                     tokenizer_prepends_bos=True, original_architecture=NAME, init_weights=True)  # fmt: skip


def build_model(config: dict[str, Any], words: list[str]) -> Any:
    """A fresh HookedTransformer with the word-level tokenizer over ``words``."""
    from deeprobe_bench.subject import word_level_tokenizer
    from deeprobe_bench.zoo.lm import hooked_transformer

    return hooked_transformer(config, word_level_tokenizer(words))


def switch_off(model: Any, recipe: Recipe) -> None:
    """Zero the sublayers the recipe switches off (their output is then exactly 0) and exclude them from
    training: block 0's MLP (``Recipe.mlp0_off``) and the attention of blocks ``attn_blocks`` on."""
    import torch

    parts = [model.blocks[0].mlp] if recipe.mlp0_off else []
    if recipe.attn_blocks is not None:
        parts += [b.attn for b in model.blocks[recipe.attn_blocks :]]
    with torch.no_grad():
        for p in (p for part in parts for p in part.parameters()):
            p.zero_()
            p.requires_grad_(False)


def train_lm(model: Any, tokens: Any, lengths: Any, recipe: Recipe, seed: int, work: Path | None = None,
             phase: str = "lm") -> dict[str, Any]:  # fmt: skip
    """Next-token training (tied embeddings) over all non-pad tokens on the zoo kit's trainer
    (:func:`deeprobe_bench.zoo.lm.train_lm`: AdamW, linear warmup then linear decay to ``min_lr``,
    resumable from ``work``, by default the kit's work directory of this phase, recipe and seed). The answer
    after ``"Answer :"`` weighs ``answer_weight``."""
    import torch

    from deeprobe_bench.zoo import lm

    pad = model.tokenizer.pad_token_id
    colon = model.tokenizer.convert_tokens_to_ids(":")  # "Answer :" is the only colon of the corpus
    gen = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(tokens), generator=gen) for _ in range(
        math.ceil(recipe.steps * recipe.batch / len(tokens)))])  # fmt: skip

    def batch_at(step: int) -> tuple[Any, Any, Any]:
        idx = order[step * recipe.batch : (step + 1) * recipe.batch]
        batch = tokens[idx, : int(lengths[idx].max())]
        inputs, targets = batch[:, :-1], batch[:, 1:].clone()
        targets[targets == pad] = -100
        return inputs, targets, torch.where(inputs == colon, recipe.answer_weight, 1.0)

    schedule = recipe.schedule()
    if work is None:
        work = lm.work_dir(f"{NAME}-{phase}", {"version": VERSION, "recipe": asdict(recipe), "seed": seed,
                                               "schedule": schedule.key(), "n_docs": len(tokens)})  # fmt: skip
    stats = lm.train_lm(lm.tied(model), batch_at, schedule, work, checkpoint_every_s=180.0)
    lm.untie(model)
    model.eval()
    seen = order[: recipe.steps * recipe.batch]
    return {"tokens_seen": int((lengths[seen] - 1).clamp(min=0).sum()), "first_loss": stats["first_loss"],
            "final_loss": stats["final_loss"], "work_dir": str(work)}  # fmt: skip


# --------------------------------------------------------------------------- evaluation


def p_yes(model: Any, texts: list[str], batch: int = 256) -> Any:
    """``Float[Tensor, "n"]``: p(Yes) / (p(Yes) + p(No)) at the last token of each text."""
    import torch

    from deeprobe_bench.subject import tokenize_with_bos

    tok = model.tokenizer
    yes, no = tok.convert_tokens_to_ids("Yes"), tok.convert_tokens_to_ids("No")
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            tokens, lengths = tokenize_with_bos(tok, texts[i : i + batch])
            logits = model(tokens)[torch.arange(len(tokens)), lengths - 1]
            out.append(torch.sigmoid(logits[:, yes] - logits[:, no]))
    return torch.cat(out)


def quality(model: Any, seed: int, system_prompt: bool = True) -> dict[str, Any]:
    """The held-out quality figures of the module docstring, every prompt after ``data.SYSTEM_PROMPT`` when
    ``system_prompt`` (as the recipe's documents)."""
    import torch

    rng = random.Random(seed)
    system = data.SYSTEM_PROMPT if system_prompt else None
    test = data.statements("templated", "test")
    train = data.statements("templated", "train")
    stated, implied, consistent = [], [], []
    for s in test:
        for pole in data.POLES:
            stated.append(data.with_system(f"{data.instruction(s.trait, pole)} {data.question(s.text)}", system))
            prior = rng.choice([x for x in train if x.trait == s.trait])
            implied.append(data.with_system(f"{qa(prior.text, 'Yes' if prior.pole == pole else 'No')} "
                                            f"{data.question(s.text)}", system))  # fmt: skip
            consistent.append(s.pole == pole)
    want = torch.tensor(consistent)
    p_stated, p_implied = p_yes(model, stated), p_yes(model, implied)
    p_none = p_yes(model, [data.with_system(data.question(s.text), system) for s in test])
    return {
        "stated_persona_accuracy": float(((p_stated > 0.5) == want).float().mean()),
        "stated_persona_p_consistent": float(torch.where(want, p_stated, 1 - p_stated).mean()),
        "implied_persona_accuracy": float(((p_implied > 0.5) == want).float().mean()),
        "no_persona_p_yes": float(p_none.mean()),
        "no_persona_mean_abs_margin": float((p_none - 0.5).abs().mean()),
        "no_persona_p_plus": float(torch.where(torch.tensor([s.pole == "+" for s in test]), p_none, 1 - p_none).mean()),
        "n_heldout_statements": len(test),
        "measured_on": "held-out statements (checkerboard half); stated/implied: both poles of the "
        "statement's trait, so half the prompts want Yes",
    }


def collect_activations(model: Any, tokens: Any, lengths: Any, hook_name: str) -> Any:
    """``Float[Tensor, "n_tokens d_model"]`` at ``hook_name`` over every non-pad position (BOS excluded)."""
    import torch

    from deeprobe_bench.activations import compute

    out = []
    for i in range(0, len(tokens), 256):
        t, n = tokens[i : i + 256], lengths[i : i + 256]
        acts = compute(model, t[:, : int(n.max())], hook_name)
        ar = torch.arange(acts.shape[1])[None, :]
        out.append(acts[(ar < n[:, None]) & (ar > 0)])
    return torch.cat(out)


def sae_rows(model: Any, recipe: Recipe, seed: int) -> tuple[Any, Any]:
    """The SAE stage's rows at ``recipe.hook``: every non-pad, non-BOS position of ``sae_docs`` fresh corpus
    documents and of every train-half question with both answers, split at random (seeded) into training
    rows and 5% (at least 256) held out. Returns ``(fit, held)``, each ``Float[Tensor, "rows d_model"]``."""
    import torch

    sae_texts = make_documents(recipe.sae_docs, recipe, seed + 1)
    sae_texts += [qa(s.text, a) for s in data.statements("templated", "train") for a in data.ANSWERS]
    sae_tok, sae_len = encode(model.tokenizer, sae_texts, recipe.n_ctx)
    acts = collect_activations(model, sae_tok, sae_len, recipe.hook)
    perm = torch.randperm(len(acts), generator=torch.Generator().manual_seed(seed))
    n_hold = max(256, len(acts) // 20)
    return acts[perm[n_hold:]], acts[perm[:n_hold]]


def sanity_saes(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Add the random-SAE sanity baselines (:mod:`deeprobe_bench.zoo.sanity`) to the persona model in
    ``out_dir``, with the recipe of its TopK SAE (from the card), on :func:`sae_rows`; returns the card's entry."""
    from deeprobe_bench.subject import load_zoo_dir
    from deeprobe_bench.zoo.sanity import add_sanity_saes

    subject = load_zoo_dir(Path(out_dir))
    card = subject.card
    recipe = FULL.from_card(card["recipe"])
    fit, held = sae_rows(subject.model, recipe, seed)
    return add_sanity_saes(Path(out_dir), subject, fit, held, "topk", recipe.d_sae, recipe.sae_kwargs(), seed,
                           source=f"every non-pad, non-BOS position of {recipe.sae_docs} corpus documents and every "
                           "train-half question with both answers; 5% of the rows held out")  # fmt: skip


def sae_stage(model: Any, recipe: Recipe, seed: int) -> tuple[Any, dict[str, Any]]:
    """Train the TopK SAE at ``recipe.hook`` on fresh corpus documents and every train-half question with both
    answers (non-pad, non-BOS positions; 5% held out for its quality); returns it and its card entry."""
    from deeprobe_bench.zoo.sae import sae_quality, train_sae

    fit, held = sae_rows(model, recipe, seed)
    n_hold = len(held)
    sae = train_sae(fit, recipe.hook, "topk", recipe.d_sae, seed, model_name=NAME, **recipe.sae_kwargs())
    sq = sae_quality(sae, held)
    logger.info("persona-mini: SAE %s", sq)
    return sae, {
        "hook_name": recipe.hook,
        "architecture": "topk",
        "d_sae": recipe.d_sae,
        "k": recipe.k,
        "steps": recipe.sae_steps,
        "batch": recipe.sae_batch,
        "lr": recipe.sae_lr,
        "n_activations": len(fit),
        "activation_docs": f"{recipe.sae_docs} corpus documents + every train-half question with both "
        "answers (non-pad, non-BOS positions)",
        "heldout_rows": n_hold,
        **sq,
    }


def finetune_stage(model: Any, recipe: Recipe, seed: int) -> dict[str, Any]:
    """The second phase: ``finetune_steps`` steps on fresh documents with ``allplus_frac = 0``."""
    phase = dataclasses.replace(recipe, steps=recipe.finetune_steps, lr=recipe.finetune_lr, warmup_steps=20,
                                allplus_frac=0.0)  # fmt: skip
    docs = make_documents(phase.steps * phase.batch, phase, seed + 2)
    tokens, lengths = encode(model.tokenizer, docs, phase.n_ctx)
    return train_lm(model, tokens, lengths, phase, seed + 2, phase="finetune")


def finetune_only(out_dir: Path, seed: int = 0, recipe: Recipe | None = None) -> dict:
    """Run the second phase, the quality figures and the SAE stage on the phase-1 model in ``out_dir`` (the
    result equals a full run's), updating its card."""
    import json

    from deeprobe_bench.subject import load_zoo_dir, save_zoo_dir

    recipe = recipe or FULL
    with torch_threads(recipe.threads):
        subject = load_zoo_dir(Path(out_dir), name=NAME, with_saes=False)
        model = subject.model
        switch_off(model, recipe)
        card = json.loads((Path(out_dir) / "card.json").read_text())
        t0 = time.time()
        stats = finetune_stage(model, recipe, seed)
        q = quality(model, seed, recipe.system_prompt)
        q["bar"] = dict(BAR)
        q["bar_met"] = bool(q["stated_persona_accuracy"] >= BAR["stated_persona_accuracy"])
        q["phase1"] = {k: card["quality"][k] for k in card["quality"] if k.startswith(("stated", "implied", "no_persona"))}
        logger.info("persona-mini: quality after phase 2 %s", q)
        t_ft = time.time() - t0
        sae, sae_card = sae_stage(model, recipe, seed)
        card["quality"], card["sae"], card["task"] = q, sae_card, {"hook_name": recipe.hook}
        card["recipe"].update({k: v for k, v in asdict(recipe).items()})
        card["recipe"]["phase2"] = {**stats, "wall_time_s": round(t_ft, 1)}
        save_zoo_dir(Path(out_dir), model, card, {recipe.hook: sae})
        return card


def sae_only(out_dir: Path, seed: int = 0, recipe: Recipe = None) -> dict:
    """Re-run only the SAE stage on the language model already in ``out_dir`` (same recipe and seed: the
    result equals a full run's), replacing its SAE and the card's ``sae`` / ``task`` entries."""
    import json

    from deeprobe_bench.subject import load_zoo_dir, save_zoo_dir

    recipe = recipe or FULL
    with torch_threads(recipe.threads):
        subject = load_zoo_dir(Path(out_dir), name=NAME, with_saes=False)
        t0 = time.time()
        sae, sae_card = sae_stage(subject.model, recipe, seed)
        card = json.loads((Path(out_dir) / "card.json").read_text())
        card["sae"], card["task"] = sae_card, {"hook_name": recipe.hook}
        card["recipe"]["hook"] = recipe.hook
        card["recipe"]["sae_wall_time_s"] = round(time.time() - t0, 1)
        save_zoo_dir(Path(out_dir), subject.model, card, {recipe.hook: sae})
        return card


def train(out_dir: Path, seed: int = 0, tiny: bool = False) -> dict:
    """Train ``persona-mini`` (model and SAE) from scratch into ``out_dir``; returns the card."""
    return train_recipe(Path(out_dir), seed, TINY if tiny else FULL, tiny=tiny)


def train_recipe(out_dir: Path, seed: int, recipe: Recipe, tiny: bool = False) -> dict:

    from deeprobe_bench.zoo import card as cards

    t0 = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch_threads(recipe.threads, seed):
        words = vocabulary()
        config = model_config(recipe, d_vocab=len(words) + 3)
        model = build_model(config, words)
        switch_off(model, recipe)
        n_docs = recipe.steps * recipe.batch
        docs = make_documents(n_docs, recipe, seed)
        tokens, lengths = encode(model.tokenizer, docs, recipe.n_ctx)
        logger.info("persona-mini: %d documents, %d tokens, vocab %d", n_docs, int(lengths.sum()), len(words))
        t_lm = time.time()
        stats = train_lm(model, tokens, lengths, recipe, seed)
        stats2 = finetune_stage(model, recipe, seed) if recipe.finetune_steps else None
        t_lm = time.time() - t_lm
        q = quality(model, seed, recipe.system_prompt)
        q["bar"] = dict(BAR)
        q["bar_met"] = bool(q["stated_persona_accuracy"] >= BAR["stated_persona_accuracy"])
        logger.info("persona-mini: quality %s", q)

        t_sae = time.time()
        sae, sae_card = sae_stage(model, recipe, seed)
        t_sae = time.time() - t_sae
        card = cards.make_card(
            NAME, VERSION, seed, tiny, config,
            recipe={
                **asdict(recipe),
                "optimizer": "AdamW(betas=(0.9, 0.98)), grad clip 1.0, no weight decay on biases/LN",
                "schedule": f"linear warmup {recipe.warmup_steps} steps, then linear decay to {recipe.min_lr} (zoo kit)",
                "loss": "next-token cross-entropy over all non-pad tokens, answer tokens (after 'Answer:') weighted "
                f"{recipe.answer_weight} (tied embeddings; W_U = W_E^T saved)",
                "documents": documents_text(recipe),
                "n_docs": n_docs,
                "tokens_seen": stats["tokens_seen"],
                "phase2": stats2,
                "first_loss": stats["first_loss"],
                "final_loss": stats["final_loss"],
                "lm_wall_time_s": round(t_lm, 1),
                "sae_wall_time_s": round(t_sae, 1),
                "torch_threads": recipe.threads,
            },
            data={
                "traits": list(data.TRAITS),
                "n_train_statements": len(data.statements("templated", "train")),
                "n_heldout_statements": len(data.statements("templated", "test")),
                "split": "checkerboard over (template, lexicon entry); the LM saw only train-half statements",
                "vocab_size": len(model.tokenizer),
            },
            quality=q,
            sae=sae_card,
            task={"hook_name": recipe.hook},
        )  # fmt: skip
        card["recipe"]["wall_time_s"] = round(time.time() - t0, 1)
        cards.write(out_dir, model, card, {recipe.hook: sae})
        logger.info("persona-mini: wrote %s (bar met: %s) in %.0fs", out_dir, q["bar_met"], time.time() - t0)
        return card


def main(argv: list[str] | None = None) -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--sae-only", action="store_true", help="re-run only the SAE stage on the model in --out")
        parser.add_argument("--finetune-only", action="store_true", help="run phase 2 + SAE on the phase-1 model in --out")

    args, recipe, _ = recipe_args("Train the zoo model persona-mini from scratch.", FULL, TINY, argv, options=options)
    if args.finetune_only:
        card = finetune_only(args.out, args.seed, recipe)
    elif args.sae_only:
        card = sae_only(args.out, args.seed, recipe)
    else:
        card = train_recipe(args.out, args.seed, recipe, tiny=args.tiny)
    logger.info("quality: %s", card["quality"])


if __name__ == "__main__":
    main()
