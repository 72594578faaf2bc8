"""IOI ground truth and metrics on a subject (the torch side of the ``ioi`` task; definitions in README.md)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from deeprobe_bench import activations
from deeprobe_bench.api import FeatureSet, UserError
from deeprobe_bench.hooks import SuffixRun, run_from_hook
from deeprobe_bench.interventions import Mode, intervene_at_positions, projector
from deeprobe_bench.metrics import faithfulness as faith
from deeprobe_bench.tasks.ioi import data as ioi_data

logger = logging.getLogger(__name__)

POSITION_NAMES = ("IO", "S1", "S2", "END")

# Wang et al. 2022 circuit in GPT-2 small (Easy-Transformer ioi_circuit_extraction.py CIRCUIT).
WANG2022_CIRCUIT: dict[str, tuple[tuple[int, int], ...]] = {
    "name mover": ((9, 9), (9, 6), (10, 0)),
    "backup name mover": ((9, 0), (9, 7), (10, 1), (10, 2), (10, 6), (10, 10), (11, 2), (11, 9)),
    "negative name mover": ((10, 7), (11, 10)),
    "s2 inhibition": ((7, 3), (7, 9), (8, 6), (8, 10)),
    "induction": ((5, 5), (5, 8), (5, 9), (6, 9)),
    "duplicate token": ((0, 1), (0, 10), (3, 0)),
    "previous token": ((2, 2), (4, 11)),
}


@dataclass
class Split:
    """One tokenised IOI split with its clean activations at the hook and ablation means.

    Attributes:
        name: ``train`` / ``val`` / ``test``.
        dataset: the ``datasets.Dataset`` of prompts.
        tokens: ``Int[Tensor, "n pos"]`` BOS + prompt, right-padded.
        positions: ``{"IO"|"S1"|"S2"|"END": Int[Tensor, "n"]}``.
        io_tok / s_tok: ``Int[Tensor, "n"]`` token ids of the IO and S names.
        resid: ``Float[Tensor, "n pos d_model"]`` clean activations at the hook.
        mean: ``Float[Tensor, "n k d_model"]`` per-template mean of the ABC prompts at the intervened positions.
        site: ``Int[Tensor, "n k"]`` the intervened positions.
        abc_tokens: ``Int[Tensor, "n pos"]`` the ABC counterfactual prompts, position-aligned with ``tokens``.
    """

    name: str
    dataset: object
    tokens: Tensor
    positions: dict[str, Tensor]
    io_tok: Tensor
    s_tok: Tensor
    resid: Tensor
    mean: Tensor
    site: Tensor
    abc_tokens: Tensor
    _suffix_runs: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def suffix_run(self, model, hook_name: str) -> SuffixRun | None:
        """The :class:`~deeprobe_bench.hooks.SuffixRun` of these prompts from their first intervened position
        (the interventions change nothing before it), built on first use and kept; None where no run can
        start at ``hook_name`` (:meth:`SuffixRun.applies`)."""
        if not SuffixRun.applies(model, hook_name):
            return None
        if hook_name not in self._suffix_runs:
            end = self.positions["END"]
            self._suffix_runs[hook_name] = SuffixRun(model, hook_name, end + 1, self.resid,
                                                     self.site.min(1).values)  # fmt: skip
        return self._suffix_runs[hook_name]

    def rows(self, idx: Tensor) -> Split:
        return Split(
            self.name,
            self.dataset.select(idx.tolist()),
            self.tokens[idx],
            {k: v[idx] for k, v in self.positions.items()},
            self.io_tok[idx],
            self.s_tok[idx],
            self.resid[idx],
            self.mean[idx],
            self.site[idx],
            self.abc_tokens[idx],
        )


def find_positions(tokens: Int[Tensor, "n pos"], lengths, io_tok, s_tok) -> dict[str, Tensor]:
    """IO = first IO token, S1 = first S token, S2 = last S token, END = last prompt token.

    Raises:
        UserError: a prompt lacks its IO or two S tokens (the tokenizer splits a name).
    """
    n = tokens.shape[0]
    ar = torch.arange(tokens.shape[1]).expand(n, -1)
    valid = ar < lengths.unsqueeze(1)
    is_io = (tokens == io_tok.unsqueeze(1)) & valid
    is_s = (tokens == s_tok.unsqueeze(1)) & valid
    if not bool(is_io.any(1).all()) or not bool((is_s.sum(1) >= 2).all()):
        raise UserError("IOI prompts must hold the IO name once and the S name twice as single tokens")
    big = tokens.shape[1]
    first = lambda m: torch.where(m, ar, big).min(1).values  # noqa: E731
    last = lambda m: torch.where(m, ar, -1).max(1).values  # noqa: E731
    return {"IO": first(is_io), "S1": first(is_s), "S2": last(is_s), "END": lengths - 1}


def build_split(subject, name: str, n: int, seed: int, hook_name: str, sites: tuple[str, ...], progress=None) -> Split:
    """Generate, tokenise and cache activations for one split (its ABC prompts give the ablation means)."""
    ds = ioi_data.make_split(name, n, seed)
    cols = ds.to_dict()
    tokens, lengths = subject.to_tokens(cols["prompt"])
    io_tok = torch.tensor([subject.single_token(w) for w in cols["io"]])
    s_tok = torch.tensor([subject.single_token(w) for w in cols["s"]])
    pos = find_positions(tokens, lengths, io_tok, s_tok)
    abc_tokens, abc_lengths = subject.to_tokens(cols["abc_prompt"])
    if not torch.equal(abc_lengths, lengths):
        raise UserError("ABC prompts must tokenise to the length of their IOI prompts (names must be single tokens)")
    model = subject.model
    resid = activations.get(model, tokens, hook_name, progress=progress)
    abc_resid = activations.get(model, abc_tokens, hook_name, progress=progress)
    site = torch.stack([pos[s] for s in sites], dim=1)  # n k
    rows = torch.arange(len(ds)).unsqueeze(1).expand_as(site)
    abc_at_site = abc_resid[rows, site]  # n k d
    # Per-template mean (Wang et al.): same template and order => same positions.
    groups = [f"{t}-{o}" for t, o in zip(cols["template"], cols["order"], strict=True)]
    mean = torch.empty_like(abc_at_site)
    for g in sorted(set(groups)):
        idx = torch.tensor([i for i, x in enumerate(groups) if x == g])
        mean[idx] = abc_at_site[idx].mean(0, keepdim=True)
    return Split(name, ds, tokens, pos, io_tok, s_tok, resid, mean, site, abc_tokens)


@torch.no_grad()
def logit_diffs(
    subject,
    split: Split,
    hook_name: str,
    proj: Float[Tensor, "d d"] | None,
    mode: Mode = "keep",
    reuse_below_hook: bool = True,
    batch_size: int = 128,
) -> Float[Tensor, " n"]:
    """Per-prompt logit difference ``logit[END, IO] - logit[END, S]`` with the intervention applied.

    ``proj=None`` runs the clean model. With ``reuse_below_hook`` the cached activations at the hook are
    edited and the forward pass starts there: from the first intervened position on, against the clean keys
    and values of the tokens before it (:meth:`Split.suffix_run`), or over every position
    (``start_at_layer``) where no suffix run applies; otherwise the whole model runs with a hook (the same
    numbers up to floating-point rounding, more compute): :func:`deeprobe_bench.hooks.run_from_hook`.
    """
    model = subject.model
    run = split.suffix_run(model, hook_name) if reuse_below_hook else None
    out = []
    for i in range(0, len(split), batch_size):
        sl = slice(i, i + batch_size)
        site, mean = split.site[sl], split.mean[sl]
        edit = None if proj is None else (lambda a, site=site, mean=mean: intervene_at_positions(a, site, mean, proj, mode))
        end = split.positions["END"][sl]
        if run is not None:
            act = split.resid[sl]
            at_end = run.logits(act if edit is None else edit(act), torch.arange(len(split))[sl])
        else:
            logits = run_from_hook(model, hook_name, split.tokens[sl], edit, split.resid[sl] if reuse_below_hook else None)
            at_end = logits[torch.arange(len(end)), end]  # b vocab
        out.append(end_logit_diff(split)(at_end, torch.arange(len(split))[sl]).float())
    return torch.cat(out)


@dataclass
class Baseline:
    """m(all) and m(empty) of a split: the clean and the fully mean-ablated logit difference."""

    m_all: float
    m_empty: float


def baseline(subject, split: Split, hook_name: str) -> Baseline:
    d = split.resid.shape[-1]
    m_all = float(logit_diffs(subject, split, hook_name, None).mean())
    m_empty = float(logit_diffs(subject, split, hook_name, torch.zeros(d, d)).mean())
    if abs(m_all - m_empty) < 1e-6:
        raise UserError(f"mean-ablating {hook_name} at the task positions does not change the logit difference")
    return Baseline(m_all, m_empty)


def faithfulness(subject, split: Split, hook_name: str, base: Baseline, fs: FeatureSet, mode: Mode = "keep", **kw):
    """``(f, stderr)``: normalised faithfulness of ``fs`` (keep) or its necessity (ablate), see README."""
    ld = logit_diffs(subject, split, hook_name, projector(fs.directions.float()), mode, **kw)
    denom = base.m_all - base.m_empty
    se = float(ld.std() / len(ld) ** 0.5 / abs(denom)) if len(ld) > 1 else None
    if mode == "keep":
        return faith.normalized(float(ld.mean()), base.m_empty, base.m_all), se
    return (base.m_all - float(ld.mean())) / denom, se


def logit_diff_metric(split: Split):
    """``metric(logits, rows) -> Float[Tensor, "b"]``: ``logit[END, IO] - logit[END, S]`` of the prompts ``rows``
    of ``split`` from ``logits: Float[Tensor, "b pos d_vocab"]``, differentiable (for :class:`api.Behaviour`)."""

    def metric(logits: Float[Tensor, "b pos vocab"], rows: Int[Tensor, " b"]) -> Float[Tensor, " b"]:
        return end_logit_diff(split)(logits[torch.arange(len(rows)), split.positions["END"][rows]], rows)

    return metric


def end_logit_diff(split: Split):
    """``metric(at_end, rows) -> Float[Tensor, "b"]``: :func:`logit_diff_metric` from the logits at END alone
    (``at_end: Float[Tensor, "b d_vocab"]``; END is each prompt's last token)."""

    def metric(at_end: Float[Tensor, "b vocab"], rows: Int[Tensor, " b"]) -> Float[Tensor, " b"]:
        return (at_end.gather(1, split.io_tok[rows].unsqueeze(1)) - at_end.gather(1, split.s_tok[rows].unsqueeze(1))).squeeze(1)

    return metric


def behaviour(split: Split, batch_size: int = 128):
    """The IOI behaviour for attribution and patching: logit difference, clean prompts vs their ABC prompts,
    at the intervened positions (:class:`api.Behaviour`)."""
    from deeprobe_bench.api import Behaviour

    return Behaviour(
        clean=split.tokens, counterfactual=split.abc_tokens, positions=split.site, metric=logit_diff_metric(split),
        name="logit difference (IOI prompt vs its ABC prompt)", batch_size=batch_size,
        last_token_metric=end_logit_diff(split), lengths=split.positions["END"] + 1,
    )  # fmt: skip


def concept_labels(ds, names: tuple[str, ...]) -> tuple[Bool[Tensor, "n c"], list[str]]:
    """One-hot attribute labels (Makelov et al. 2024): ``IO=<name>``, ``S=<name>``, ``Pos=ABB|BAB``.

    ABB: the IO comes first in the first clause (ABBA templates); BAB: the S comes first (BABA).
    """
    concepts = [f"IO={n}" for n in names] + [f"S={n}" for n in names] + ["Pos=ABB", "Pos=BAB"]
    col = {c: i for i, c in enumerate(concepts)}
    lab = torch.zeros(len(ds), len(concepts), dtype=torch.bool)
    cols = ds.select_columns(["io", "s", "order"]).to_dict()
    for r, (io, s, order) in enumerate(zip(cols["io"], cols["s"], cols["order"], strict=True)):
        lab[r, col[f"IO={io}"]] = True
        lab[r, col[f"S={s}"]] = True
        lab[r, col["Pos=ABB" if order == "ABBA" else "Pos=BAB"]] = True
    return lab, concepts


def end_acts(split: Split) -> Float[Tensor, "n d"]:
    """Activations at the END position, one row per prompt."""
    return split.resid[torch.arange(len(split)), split.positions["END"]]


def site_acts(split: Split) -> Float[Tensor, "n_k d"]:
    """Activations at every intervened position (END, S2 by default), one row per (prompt, position)."""
    rows = torch.arange(len(split)).unsqueeze(1).expand_as(split.site)
    return split.resid[rows, split.site].reshape(-1, split.resid.shape[-1])


#: the known IOI circuits a model's card may name (``card["circuits"]["ioi"]``; GPT-2 small's says ``wang2022``)
CIRCUITS: dict[str, dict[str, tuple[tuple[int, int], ...]]] = {"wang2022": WANG2022_CIRCUIT}


def known_circuit(subject) -> dict[str, tuple[tuple[int, int], ...]] | None:
    """The IOI circuit the subject's model card names (``card["circuits"]["ioi"]``, a key of :data:`CIRCUITS`),
    or None when its circuit is not known."""
    card = getattr(subject, "card", None) or {}
    return CIRCUITS.get((card.get("circuits") or {}).get("ioi"))


def head_precision_recall(
    heads: list[tuple[int, int]], circuit: dict[str, tuple[tuple[int, int], ...]] = WANG2022_CIRCUIT
) -> tuple[float, float]:
    """Precision and recall of a set of ``(layer, head)`` against a known IOI circuit (default: GPT-2 small's,
    Wang et al. 2022); ``(0, 0)`` for no heads."""
    circuit = {h for hs in circuit.values() for h in hs}
    found = {tuple(h) for h in heads}
    tp = len(found & circuit)
    return (tp / len(found) if found else 0.0), tp / len(circuit)


def example_set(split: Split, labels: Bool[Tensor, "n c"], concepts: list[str]):
    """The split's judge examples (:class:`api.ExampleSet`): one row per prompt, read at END.

    The text is the prompt with its END token (the last word, where the IO is predicted) marked
    ``<<to>>``; the activation is the hook's at END (as ``end_acts``); the labels are the prompt's
    ``IO=`` / ``S=`` / ``Pos=`` concepts (:func:`concept_labels`), read only by the local judge server.
    """
    from deeprobe_bench.api import ExampleSet

    texts = []
    for prompt in split.dataset["prompt"]:
        head, _, last = prompt.rpartition(" ")
        texts.append(ExampleSet.mark(head + " ", last))
    return ExampleSet(texts, end_acts(split), labels, list(concepts), name=f"ioi {split.name} END")
