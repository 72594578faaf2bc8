"""``deeprobe-bench zoo train``: bad input -> one-line error, exit 2, nothing trained or written."""

from __future__ import annotations

from deeprobe_bench import cli


def test_bad_seed_and_out_are_refused_before_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEEPROBE_ZOO", str(tmp_path / "zoo"))
    assert cli.main(["zoo", "train", "othello-mini", "--seed", "-1"]) == 2
    assert "--seed must be >= 0" in capsys.readouterr().err
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert cli.main(["zoo", "train", "othello-mini", "--out", str(a_file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "zoo").exists()


def test_a_run_already_training_is_refused(tmp_path, monkeypatch, capsys):
    from deeprobe_bench.tasks.othello import recipe
    from deeprobe_bench.zoo import lm

    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(recipe, "FULL", recipe.TINY)  # the CLI trains the full recipe: make it tiny here
    held = lm._lock(lm.work_dir(recipe.NAME, recipe.run_key(recipe.TINY, 0)))
    try:
        assert cli.main(["zoo", "train", "othello-mini", "--out", str(tmp_path / "out")]) == 2
    finally:
        held.close()
    assert "another process is training" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_zoo_train_draws_no_progress_bars_outside_a_terminal(tmp_path, monkeypatch, capfd):
    """sae_lens's SAE trainer draws tqdm bars; ``zoo train`` turns them off when stderr is not a terminal."""
    from tqdm import tqdm

    from deeprobe_bench import registry

    class Spec:  # a zoo model whose training draws a bar, as sae_lens's trainer does
        name = "barred"

        def train(self, out_dir, seed):
            for _ in tqdm(range(50), desc="training SAE"):
                pass
            return tmp_path / "out"

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(registry, "get_model_spec", lambda name: Spec())
    assert cli.main(["zoo", "train", "barred"]) == 0
    err = capfd.readouterr().err  # stderr is captured here, not a terminal
    assert "training SAE" not in err and "it/s" not in err, err[-300:]
