"""Runtime config files: YAML and TOML, clear errors, live reload with a kept fallback."""

from __future__ import annotations

import os

import pytest

from inference.config import ConfigWatcher, RuntimeConfig, load_config
from inference.errors import ConfigError


def test_yaml_and_toml_give_the_same_config(tmp_path):
    """Both formats are read; unspecified options keep their defaults."""
    (tmp_path / "c.yaml").write_text(
        "max_batch: 4\nworkers: {preprocess: 2}\nsampling_ratio: 0.5\n"
    )
    (tmp_path / "c.toml").write_text(
        "max_batch = 4\nsampling_ratio = 0.5\n[workers]\npreprocess = 2\n"
    )
    yaml_config = load_config(tmp_path / "c.yaml")
    assert yaml_config == load_config(tmp_path / "c.toml")
    assert yaml_config.workers == {
        "decode": 1,
        "preprocess": 2,
        "infer": 1,
        "postprocess": 1,
        "encode": 1,
    }
    assert yaml_config.max_wait_ms == RuntimeConfig().max_wait_ms


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_batch: 0", "max_batch must be 1–1024"),
        ("max_bach: 4", "unknown option(s) max_bach"),
        ("workers: {decoder: 2}", "unknown stage(s) decoder"),
        ("workers: {preprocess: two}", "workers.preprocess must be a whole number"),
        ("sampling_ratio: 2", "sampling_ratio must be between 0 and 1"),
        ("max_batch: [", "does not parse"),
        ("- a list", "must be a mapping"),
    ],
)
def test_bad_files_fail_with_a_message_naming_the_problem(tmp_path, text, message):
    """Every mistake names the option and the accepted values."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)


def test_watcher_applies_live_options_and_rejects_the_rest(tmp_path):
    """A changed max_batch is applied; a changed queue_capacity is rejected, counted, and
    the running config stays."""
    path = tmp_path / "serve.yaml"
    path.write_text("max_batch: 8\n")
    applied, results = [], []
    watcher = ConfigWatcher(
        path, load_config(path), lambda new, old: applied.append(new.max_batch),
        on_result=lambda result, detail: results.append((result, detail)),
    )  # fmt: skip
    assert watcher.check() is None, "nothing changed yet"
    path.write_text("max_batch: 4\n")
    os.utime(path, ns=(1, 1))
    assert watcher.check() == "applied" and applied == [4]
    path.write_text("max_batch: 4\nqueue_capacity: 10\n")
    os.utime(path, ns=(2, 2))
    assert watcher.check() == "rejected"
    assert "queue_capacity cannot change while serving" in results[-1][1]
    assert watcher.current.queue_capacity == RuntimeConfig().queue_capacity
    path.write_text("max_batch: oops\n")
    os.utime(path, ns=(3, 3))
    assert watcher.check() == "rejected" and watcher.current.max_batch == 4
