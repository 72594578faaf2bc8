"""The zoo kit: what every zoo recipe shares. A recipe (``tasks/<task>/recipe.py``) supplies
only its data stream and its numbers.

- :mod:`deeprobe_bench.zoo.lm`: the language-model trainer (AdamW, warmup-stable-decay, resumable
  safetensors checkpoints in a private work directory, tied embeddings, weighted losses) and
  ``transformer_config``.
- :mod:`deeprobe_bench.zoo.gpt`: ``FastGPT``, a plain-PyTorch GPT with a HookedTransformer's layout for
  faster CPU training, copied into a HookedTransformer after training.
- :mod:`deeprobe_bench.zoo.sae`: the SAE stage on sae_lens (standard, TopK, p-annealing).
- :mod:`deeprobe_bench.zoo.card`: cards (config, recipe, data, quality figures, library versions, the
  ``sha256`` of every file) and the user's zoo directory.
- :mod:`deeprobe_bench.zoo.catalogue`: the catalogue of zoo models as data (``catalogue.json``).
- :mod:`deeprobe_bench.zoo.pretrained`: the board-game paper's own models (``othello-gpt``, ``chess-gpt``).
"""
