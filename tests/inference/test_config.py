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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_batch: 8.5", "max_batch must be a whole number, got 8.5"),
        ("max_batch: true", "max_batch must be a whole number, got True"),
        ("max_wait_ms: false", "max_wait_ms must be a number"),
        ("max_wait_ms: .nan", "max_wait_ms must be a number, got NaN"),
        ("batch_policy: 3", "batch_policy must be a string"),
        ("source_hosts: 10.0.0.0/8", "source_hosts must be a list of strings"),
        ("workers: 3", "workers must be a mapping"),
        ("1: 2", "option names must be strings"),
        ("? [a, b]\n: 1", "does not parse"),
    ],
)
def test_types_are_strict(tmp_path, text, message):
    """8.5 and true are not a batch size; a non-string key is an error, not a crash."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(path)


def test_infinity_is_no_number_to_configure(tmp_path):
    """``.inf`` is refused for every number, saying so (before, monitor_window_s, which has
    no upper bound, took it; the others failed their range with a message about it)."""
    for option in ("monitor_window_s", "max_wait_ms", "request_timeout_s"):
        path = tmp_path / "c.yaml"
        path.write_text(f"{option}: .inf\n")
        with pytest.raises(ConfigError, match=f"^{option} must be a finite number"):
            load_config(path)


def test_yaml_aliases_are_refused_at_once(tmp_path):
    """A 'billion laughs' file is refused without expanding it (before: the server froze
    8 s building the error message's repr)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nmax_batch: *a8\n")
    with pytest.raises(ConfigError, match="aliases"):
        load_config(path)


def test_only_small_regular_files_are_read(tmp_path):
    """A FIFO in the config's place does not block; a huge file is refused unread."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(fifo)  # would block forever in open() without O_NONBLOCK
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (128 * 1024) + "\nmax_batch: 2\n")
    with pytest.raises(ConfigError, match="over 65536 bytes"):
        load_config(big)


def test_the_watcher_survives_every_bad_file_and_keeps_watching(tmp_path):
    """Non-string keys, a FIFO, an alias bomb, an apply() that raises: each is counted
    as rejected, and a later good file is still applied (before: the first one killed
    the watcher thread and later changes were ignored)."""
    path = tmp_path / "serve.yaml"
    path.write_text("max_batch: 4\n")
    results: list[tuple[str, str]] = []
    failures = iter([RuntimeError("apply bug")])

    def apply(new, old):
        failure = next(failures, None)
        if failure is not None:
            raise failure

    watcher = ConfigWatcher(
        path, load_config(path), apply, on_result=lambda r, d: results.append((r, d))
    )
    stamp = [0.0]

    def change(write) -> str | None:
        write()
        stamp[0] += 10
        os.utime(path, (stamp[0], stamp[0])) if path.exists() and not path.is_fifo() else None
        return watcher.check()

    assert change(lambda: path.write_text("{1: 2}\n")) == "rejected"
    assert change(lambda: path.write_text("max_batch: 5\n")) == "rejected"  # apply raised
    assert "RuntimeError: apply bug" in results[-1][1]

    def to_fifo() -> None:
        path.unlink()
        os.mkfifo(path)

    assert change(to_fifo) == "rejected"
    path.unlink()
    assert change(lambda: path.write_text("max_batch: 6\n")) == "applied"
    assert watcher.current.max_batch == 6
    assert [r for r, _ in results] == ["rejected", "rejected", "rejected", "applied"]
