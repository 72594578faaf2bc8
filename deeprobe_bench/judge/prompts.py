"""The judge prompts of autointerp: explanation, then detection (SAEBench autointerp, EleutherAI delphi).

Two chat prompts, versioned together (:data:`PROMPT_VERSION` is part of every cache key, so editing a
prompt never reuses replies to the old one):

1. **Explanation**: the judge reads the top-activating examples of a feature (the token the feature is
   read at marked ``<<token>>``) and writes a one-sentence explanation.
2. **Detection**: the judge reads that explanation and a shuffled mix of activating and non-activating
   examples, and lists the numbers of those it predicts activate, as a JSON list (``[2, 5]``).

The same module parses the replies (:func:`parse_explanation`, :func:`parse_detection`: a reply that does
not parse raises :class:`ReplyFormatError`, which the client retries) and, for the project's local judge
server, parses the prompts back (:func:`read_prompt`), so prompts and server never drift apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

#: bump when a prompt's wording or format changes (cache keys include it)
PROMPT_VERSION = "autointerp-1"

SYSTEM = (
    "You are a meticulous interpretability researcher. You study one feature of a neural network at a time "
    "from text examples; in each example the token at which the feature is read is marked <<like this>>."
)

EXPLAIN_HEADER = "Here are examples on which a feature of a neural network activates strongly."
EXPLAIN_ASK = (
    "In one short sentence, say what the feature detects: what the marked examples have in common, "
    "including what their context says. Reply with the explanation only."
)
DETECT_HEADER = "A feature of a neural network is explained as follows."
DETECT_ASK = (
    "Which of the examples above activate the feature? Reply with the numbers of the activating examples "
    "as a JSON list, for example [1, 4]; reply [] if none does."
)

_EXAMPLE_LINE = re.compile(r"^Example (\d+): (.*)$")
_EXPLANATION_LINE = re.compile(r"^Explanation: (.*)$")
_LIST = re.compile(r"\[\s*(?:\d+\s*(?:,\s*\d+\s*)*)?\]")

#: longest explanation accepted (characters); a longer reply is treated as malformed
MAX_EXPLANATION_CHARS = 400


class ReplyFormatError(ValueError):
    """A judge reply that does not have the format the prompt asked for."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _examples_block(examples: list[str]) -> str:
    return "\n".join(f"Example {i + 1}: {_one_line(t)}" for i, t in enumerate(examples))


def explanation_messages(examples: list[str]) -> list[dict[str, str]]:
    """Chat messages asking for an explanation of a feature from its top-activating ``examples``.

    Args:
        examples: texts with the activating token marked ``<<token>>``, strongest first.
    """
    user = f"{EXPLAIN_HEADER}\n\n{_examples_block(examples)}\n\n{EXPLAIN_ASK}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def detection_messages(explanation: str, examples: list[str]) -> list[dict[str, str]]:
    """Chat messages asking which of ``examples`` (a shuffled mix) activate a feature with ``explanation``."""
    user = (
        f"{DETECT_HEADER}\n\nExplanation: {_one_line(explanation)}\n\n"
        f"{_examples_block(examples)}\n\n{DETECT_ASK}"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def parse_explanation(text: str | None) -> str:
    """The explanation in a reply: its text on one line, stripped of quotes and an ``Explanation:`` prefix.

    Raises:
        ReplyFormatError: empty, or longer than :data:`MAX_EXPLANATION_CHARS` characters.
    """
    line = _one_line(text or "").strip().strip('"').strip()
    if line.lower().startswith("explanation:"):
        line = line[len("explanation:") :].strip()
    if not line:
        raise ReplyFormatError("empty explanation")
    if len(line) > MAX_EXPLANATION_CHARS:
        raise ReplyFormatError(f"explanation of {len(line)} characters (at most {MAX_EXPLANATION_CHARS})")
    return line


def parse_detection(text: str | None, n: int) -> list[int]:
    """The example numbers (1-based, sorted, unique) a detection reply lists.

    The last JSON list of integers in the reply is used, so a short preamble is tolerated.

    Raises:
        ReplyFormatError: no list of integers, or a number outside ``1..n``.
    """
    found = _LIST.findall(text or "")
    if not found:
        raise ReplyFormatError(f"no JSON list of example numbers in reply {_one_line(text or '')[:80]!r}")
    numbers = json.loads(found[-1])
    bad = [k for k in numbers if not 1 <= k <= n]
    if bad:
        raise ReplyFormatError(f"example numbers {bad} outside 1..{n}")
    return sorted(set(numbers))


@dataclass
class ParsedPrompt:
    """A judge prompt read back by the local server: its kind, the examples and (detection) the explanation."""

    kind: str  # "explain" | "detect" | "unknown"
    examples: list[str]
    explanation: str | None = None


def read_prompt(messages: list[dict[str, Any]]) -> ParsedPrompt:
    """Parse a chat request made from :func:`explanation_messages` or :func:`detection_messages`."""
    user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    if not isinstance(user, str):
        user = " ".join(part.get("text", "") for part in user if isinstance(part, dict))
    examples: list[str] = []
    explanation = None
    for line in user.splitlines():
        m = _EXAMPLE_LINE.match(line)
        if m:
            examples.append(m.group(2))
            continue
        e = _EXPLANATION_LINE.match(line)
        if e:
            explanation = e.group(1)
    if user.startswith(EXPLAIN_HEADER):
        return ParsedPrompt("explain", examples)
    if user.startswith(DETECT_HEADER):
        return ParsedPrompt("detect", examples, explanation)
    return ParsedPrompt("unknown", examples, explanation)
