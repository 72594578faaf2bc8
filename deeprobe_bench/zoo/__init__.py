"""The zoo kit: what every zoo recipe shares (language-model trainer, SAE stage, card writer, catalogue).

A recipe (``tasks/<task>/recipe.py``) supplies only its data stream and its numbers; see
:mod:`deeprobe_bench.zoo.lm` (resumable trainer), :mod:`deeprobe_bench.zoo.sae` (SAEs on sae_lens) and
:mod:`deeprobe_bench.zoo.card` (cards with quality figures and checksums).
"""
