"""The torch side of the ``persona`` task: prompts, p(Yes), steering, fluency (definitions in README.md)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from deeprobe_bench import activations
from deeprobe_bench.api import UserError
from deeprobe_bench.hooks import SuffixRun, run_from_hook
from deeprobe_bench.interventions import steering_hook
from deeprobe_bench.tasks.persona import data

logger = logging.getLogger(__name__)


@dataclass
class Prompts:
    """Tokenised prompts with their activations at the hook.

    Attributes:
        tokens: ``Int[Tensor, "n pos"]`` BOS + text, right-padded.
        lengths: ``Int[Tensor, "n"]`` tokens per prompt, BOS included.
        resid: ``Float[Tensor, "n pos d_model"]`` clean activations at the hook.
    """

    tokens: Tensor
    lengths: Tensor
    resid: Tensor

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def last(self) -> Int[Tensor, " n"]:
        return self.lengths - 1

    def steer_mask(self, where: str = "all") -> Float[Tensor, "n pos"]:
        """Where a steering vector is added: every non-BOS, non-pad token (``all``) or the last one (``last``)."""
        ar = torch.arange(self.tokens.shape[1])[None, :]
        if where == "last":
            return (ar == self.last[:, None]).float()
        return ((ar > 0) & (ar < self.lengths[:, None])).float()

    def rows(self, idx: Tensor) -> Prompts:
        """The prompts ``idx``, trimmed to their longest length."""
        width = int(self.lengths[idx].max())
        return Prompts(self.tokens[idx, :width], self.lengths[idx], self.resid[idx, :width])

    def last_acts(self) -> Float[Tensor, "n d"]:
        return self.resid[torch.arange(len(self)), self.last]


def encode(subject, texts: list[str], hook_name: str) -> Prompts:
    """Tokenise ``texts`` (BOS + text) and cache their activations at ``hook_name``.

    Raises:
        UserError: a text holds a word the subject's tokenizer does not know, or is longer than its context.
    """
    tokens, lengths = subject.to_tokens(texts)
    if tokens.shape[1] > subject.model.cfg.n_ctx:
        raise UserError(f"a persona prompt is {tokens.shape[1]} tokens, longer than the context of model "
                        f"{subject.name} ({subject.model.cfg.n_ctx}): {texts[int(lengths.argmax())]!r}")  # fmt: skip
    unk = subject.tokenizer.unk_token_id
    ar = torch.arange(tokens.shape[1])[None, :]
    text = (ar > 0) & (ar < lengths[:, None])  # not BOS, not padding: GPT-2's unknown token is its BOS
    unknown = (tokens == unk) & text if unk is not None else torch.zeros_like(text)
    if bool(unknown.any()):
        bad = int(unknown.any(1).nonzero()[0])
        raise UserError(f"model {subject.name} does not know a word of the persona prompt {texts[bad]!r}")
    return Prompts(tokens, lengths, activations.get(subject.model, tokens, hook_name))


@dataclass
class Split:
    """The statements of one half with everything the metrics need.

    Attributes:
        statements: the :class:`data.Statement` rows.
        questions: the questions with no persona stated (after the system prompt, if any) and no answer,
            for steering.
        contrast: two prompts per statement (rows ``2i`` and ``2i+1``), whose activations at the site are
            the task's labelled activations: with ``contrast="persona"`` the question after the
            instruction of the ``+`` and of the ``-`` pole of the statement's trait (``You are agreeable.``
            / ``You are disagreeable.``); with ``contrast="answer"`` the question followed by `` Yes`` and
            by `` No``. The site is each prompt's last token: where the answer is read (``persona``), the
            answer token itself (``answer``, CAA's answer position). Versions 2-3 took the instruction's pole
            word for ``persona`` (README, "What methods see").
        labels: ``Bool[Tensor, "2n n_concepts"]`` which concept each contrast row expresses.
    """

    statements: list
    questions: Prompts
    contrast: Prompts
    labels: Tensor

    def contrast_acts(self) -> Float[Tensor, "m d"]:
        """The labelled activations: each contrast prompt at its site, the last token."""
        return self.contrast.last_acts()


def concept_labels(statements: list, concepts: list[str], contrast: str = "answer") -> Bool[Tensor, "m c"]:
    """Labels of the contrast rows ``2i`` and ``2i+1`` of statement i.

    ``persona``: row ``2i`` (``+`` instruction) expresses ``<trait>+``, row ``2i+1`` ``<trait>-``.
    ``answer``: row ``2i`` (answer Yes) expresses the statement's own concept, row ``2i+1`` (No) the
    opposite pole of its trait.
    """
    col = {c: j for j, c in enumerate(concepts)}
    lab = torch.zeros(2 * len(statements), len(concepts), dtype=torch.bool)
    for i, s in enumerate(statements):
        first = "+" if contrast == "persona" else s.pole
        other = "-" if first == "+" else "+"
        lab[2 * i, col[f"{s.trait}{first}"]] = True
        lab[2 * i + 1, col[f"{s.trait}{other}"]] = True
    return lab


def build_split(
    subject, statements: list, hook_name: str, concepts: list[str], contrast: str = "persona", system: str | None = None
) -> Split:
    """The :class:`Split` of ``statements``; every prompt opens with the system prompt ``system`` (if any)."""
    questions = [data.question(s.text) for s in statements]
    if contrast == "persona":
        rows = [f"{data.instruction(s.trait, p)} {q}" for s, q in zip(statements, questions, strict=True)
                for p in data.POLES]  # fmt: skip
    else:
        rows = [f"{q} {a}" for q in questions for a in data.ANSWERS]
    prompts = encode(subject, [data.with_system(r, system) for r in rows], hook_name)
    bare = encode(subject, [data.with_system(q, system) for q in questions], hook_name)
    return Split(statements, bare, prompts,
                 concept_labels(statements, concepts, contrast))  # fmt: skip


def concept_span(prompts: Prompts) -> Bool[Tensor, "n pos"]:
    """Where the concept of a contrast row can be read: the tokens from the first one at which the row differs
    from its contrast partner (rows ``2i`` and ``2i+1``) to its last token. Tokens before cannot carry the
    concept (the model is causal), and a max over them would tie the two rows of a pair.

    Raises:
        ValueError: an odd number of prompts, or a prompt that is a prefix of its partner (or the same).
    """
    tok, lens = prompts.tokens, prompts.lengths
    if len(tok) % 2:
        raise ValueError("concept_span needs contrast pairs (rows 2i, 2i+1)")
    partner = torch.arange(len(tok)) ^ 1
    ar = torch.arange(tok.shape[1])[None, :]
    differ = (tok != tok[partner]) & (ar < torch.minimum(lens, lens[partner])[:, None])
    if not bool(differ.any(1).all()):
        raise ValueError("a contrast prompt is a prefix of its partner (or the same): no token tells them apart")
    first = differ.float().argmax(1)
    return (ar >= first[:, None]) & (ar < lens[:, None])


def answer_ids(subject) -> tuple[int, int]:
    """Token ids of `` Yes`` and `` No``."""
    return subject.single_token("Yes"), subject.single_token("No")


def target_nll(logits: Float[Tensor, "b pos vocab"], tokens: Int[Tensor, "b pos"], lengths: Int[Tensor, " b"],
               yes: int, no: int) -> Float[Tensor, "b pos"]:  # fmt: skip
    """The loss of what the prompt asks for at each position (nats): the next prompt token at positions
    before the last, and *an answer* at the last, ``-log(p(Yes) + p(No))`` (the answer may be either: which one
    is what steering moves; that it is an answer at all is what fluency asks). 0 at padding."""
    logp = torch.log_softmax(logits.float(), -1)
    ar = torch.arange(tokens.shape[1])[None, :]
    inner = ar < (lengths - 1)[:, None]
    nxt = torch.where(inner, torch.cat([tokens[:, 1:], tokens[:, :1]], 1), 0)  # padding: any valid id, masked
    nll = -logp.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
    answer = -torch.logsumexp(logp[..., [yes, no]], -1)
    last = ar == (lengths - 1)[:, None]
    return torch.where(last, answer, torch.where(inner, nll, torch.zeros_like(nll)))


@torch.no_grad()
def steered(
    subject,
    prompts: Prompts,
    hook_name: str,
    vectors: Float[Tensor, "g d"] | None = None,
    where: str = "last",
    batch_size: int = 512,
) -> tuple[Float[Tensor, "g n"], Float[Tensor, "g n pos"]]:
    """``(p_yes, nll)`` with each steering vector added in turn at the positions ``where``
    (:meth:`Prompts.steer_mask`): ``p(Yes) / (p(Yes) + p(No))`` at each prompt's last token, and the
    :func:`target_nll` of every position.

    Args:
        vectors: ``g`` steering vectors (already scaled); None = one clean run (``g = 1``).

    The forward pass starts at the hook from the cached activations when the hook is a residual one
    (:func:`deeprobe_bench.hooks.run_from_hook`).
    """
    model = subject.model
    yes, no = answer_ids(subject)
    g, n = (1, len(prompts)) if vectors is None else (len(vectors), len(prompts))
    # every (vector, prompt) pair is one row: the g runs go through the model together, batch_size rows a pass
    tokens, resid, last, lengths = (t.repeat(g, *([1] * (t.ndim - 1))) for t in
                                    (prompts.tokens, prompts.resid, prompts.last, prompts.lengths))  # fmt: skip
    mask = prompts.steer_mask(where).repeat(g, 1)
    per_row = None if vectors is None else vectors.float().repeat_interleave(n, dim=0)[:, None, :]  # "g*n 1 d"
    p = torch.empty(g * n)
    nll = torch.zeros(g * n, prompts.tokens.shape[1])
    for i in range(0, g * n, batch_size):
        sl = slice(i, i + batch_size)
        edit = None if per_row is None else steering_hook(per_row[sl], mask[sl])
        logits = run_from_hook(model, hook_name, tokens[sl], edit, resid[sl])
        at = logits[torch.arange(logits.shape[0]), last[sl]]
        p[sl] = torch.sigmoid((at[:, yes] - at[:, no]).float())
        nll[sl] = target_nll(logits, tokens[sl], lengths[sl], yes, no)
    return p.view(g, n), nll.view(g, n, -1)


@torch.no_grad()
def steered_last(
    subject, prompts: Prompts, rows: Int[Tensor, " n"], vectors: Float[Tensor, "g d"], run: SuffixRun,
    batch_size: int = 512,
) -> tuple[Float[Tensor, "g n"], Float[Tensor, "g n"]]:
    """``(p_yes, answer_nll)`` of :func:`steered` on the prompts ``rows`` of ``prompts`` with ``where="last"``:
    each vector added at each prompt's last token only, computed on that token alone against the cached keys
    and values of the tokens before it (``run``: a :class:`deeprobe_bench.hooks.SuffixRun` of ``prompts`` from
    their last token). The earlier tokens do not change, so the :func:`target_nll` at the last token
    (``answer_nll``, ``-log(p(Yes) + p(No))``) is the only one that does. Equal to :func:`steered` up to
    floating-point rounding (``tests/integration/test_persona_task.py``).
    """
    yes, no = answer_ids(subject)
    g, n = len(vectors), len(rows)
    rep = rows.repeat(g)
    per_row = vectors.float().repeat_interleave(n, dim=0)[:, None, :]  # "g*n 1 d"
    mask = prompts.steer_mask("last")[..., None]  # "N pos 1"
    logits = torch.cat([run.logits(prompts.resid[rep[sl]].float() + per_row[sl] * mask[rep[sl]], rep[sl])
                        for sl in (slice(i, i + batch_size) for i in range(0, g * n, batch_size))])  # fmt: skip
    logp = torch.log_softmax(logits, -1)
    p = torch.sigmoid(logits[:, yes] - logits[:, no])
    return p.view(g, n), -torch.logsumexp(logp[:, [yes, no]], -1).view(g, n)


def p_match(p_yes_: Float[Tensor, "g n"], statements: list, pole: str = "+") -> Float[Tensor, "g n"]:
    """p(the answer a persona of ``pole`` gives): p(Yes) for statements of that pole, else p(No)."""
    same = torch.tensor([s.pole == pole for s in statements])
    return torch.where(same, p_yes_, 1 - p_yes_)


def fluency_cost(nll: Float[Tensor, "g n pos"], clean: Float[Tensor, "n pos"], mask: Tensor) -> Float[Tensor, " g"]:
    """Increase of the :func:`target_nll` over the positions ``mask`` (``"n pos"``, where the intervention acts
    and what it changes), pooled over tokens: nats per token, one value per steering vector."""
    m = mask.float()
    return ((nll - clean[None]) * m[None]).sum((1, 2)) / m.sum().clamp_min(1)


def residual_scale(prompts: Prompts) -> float:
    """Mean L2 norm of the activations at the hook over the non-BOS, non-pad tokens of ``prompts``."""
    mask = prompts.steer_mask("all").bool()
    return float(prompts.resid[mask].norm(dim=-1).mean())
