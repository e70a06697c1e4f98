"""Fault matrix (issue "nothing lost, nothing executed"): every bad input and every race gets a clear refusal.

    python benchmarks/faults.py [--keep DIR] [--only SUBSTRING] [--jobs 2]

Trains a tiny model with the CLI, then runs each case of CASES against the installed CLI
(`python -m textae`) in real subprocesses, as a user would, each in its own folder. A case passes
when the command exits with status 2, prints exactly one line on stderr and that line starts with
`error:`, prints no traceback, and leaves its folder as the case's setup left it (nothing
created, nothing changed: no partial output, no run directory) unless the case names what may
change. The races start two real processes on one output. Prints a table and writes
benchmarks/results/faults.json; tests/test_faults.py runs the same table, each case in a process
forked from a server that imported textae once (textae_forked), to skip ~10 s of imports per case.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "faults.json"
CASE_TIMEOUT_S = 300  # a command that is not refused may train or score: this bounds it

SENTENCES = [  # tests/conftest.py's, so the benchmark needs neither pytest nor the test package
    "the cat sat on the mat .",
    "a dog ran in the park .",
    "birds sing in the early morning .",
    "she reads a book every night .",
    "the market closed higher on friday .",
    "he paid 3.5 dollars for 2 apples .",
    "rain is expected across the north .",
    "the team won its third game in a row .",
    "our train leaves at noon .",
]
TEXT = ("\n".join(SENTENCES) + "\n").encode()

# tests/conftest.py's tiny_overrides without the paths, 5 steps: a train case that is wrongly not
# refused ends in seconds instead of training the default model.
TINY = {
    "data.split_sentences": False, "data.validation_size": 1, "tokenizer.vocab_size": 300,
    "model.d_model": 64, "model.n_heads": 2, "model.encoder_layers": 1, "model.decoder_layers": 1,
    "model.ffn_dim": 128, "model.num_codes": 16, "model.code_dim": 32, "model.max_positions": 64,
    "noise.mask_rate": 0.0, "model.dropout": 0.0, "noise.word_dropout": 0.0,
    "train.max_steps": 5, "train.max_minutes": None, "train.batch_tokens": 512, "train.lr": 3e-3,
    "train.warmup_steps": 10, "train.eval_every": 1000, "train.save_every": 1000, "train.log_every": 10,
}
SHARED_STEPS, SHARED_SAVE_EVERY = 30, 10  # the shared model's run keeps checkpoints step-20 and step-30


@dataclass(frozen=True)
class Shared:
    """What every case may read (never write): a tiny model, its run directory with checkpoints, a corpus."""

    model: Path  # the run's final/ folder
    run: Path
    corpus: Path


Setup = Callable[[Path, Shared], None]  # (the case's folder, the shared files)


def _nothing(folder: Path, shared: Shared) -> None:
    pass


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]  # textae's arguments; {dir} is the case's folder, {model} {run} {corpus} the shared ones,
    #                        and a lone "{tiny}" stands for TINY as --set options
    setup: Setup = _nothing
    stdin: bytes = b""
    expect: tuple[int, ...] = (2,)  # allowed exit statuses; any status but 0 must come with one error: line
    keep: tuple[str, ...] = (".",)  # paths in the case's folder whose files (names and bytes) must not change
    absent: tuple[str, ...] = ()  # paths in the case's folder that must not exist afterwards

    @property
    def command(self) -> str:
        return " ".join(["textae", *self.argv])


@dataclass
class Outcome:
    name: str
    command: str
    exit_code: int | None  # None: timed out
    stdout: str = ""
    stderr: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def first_line(self) -> str:
        lines = stderr_lines(self.stderr)
        return lines[0] if lines else ""

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.stderr or "Traceback" in self.stdout

    @property
    def ok(self) -> bool:
        return not self.problems

    def record(self) -> dict:
        return {"name": self.name, "command": self.command, "exit_code": self.exit_code, "first_line": self.first_line,
                "traceback": self.traceback, "ok": self.ok, "problems": self.problems}

    def explain(self) -> str:
        """What went wrong and what the command printed, for a failing test's message."""
        return (f"{self.name}: {'; '.join(self.problems)}\n$ {self.command}\nexit status {self.exit_code}\n"
                f"--- stderr ---\n{self.stderr[-3000:]}\n--- stdout ---\n{self.stdout[-1000:]}")


def stderr_lines(text: str) -> list[str]:
    """Non-blank lines, a progress bar's carriage-return redraws counted as lines too."""
    return [l.strip() for l in re.split(r"[\r\n]+", text) if l.strip()]


# ----- building the cases ----------------------------------------------------------------------
def _files(contents: dict[str, bytes]) -> Setup:
    def setup(folder: Path, shared: Shared) -> None:
        for name, data in contents.items():
            (folder / name).write_bytes(data)
    return setup


def _both(*setups: Setup) -> Setup:
    def setup(folder: Path, shared: Shared) -> None:
        for s in setups:
            s(folder, shared)
    return setup


def _truncated_gz() -> bytes:
    """A real gzip file of 3,600 lines with its second half cut off: it ends before its end-of-stream marker."""
    data = gzip.compress(TEXT * 400, mtime=0)
    return data[: len(data) // 2]


def _model(damage: Callable[[Path], None]) -> Setup:
    """A copy of the shared model in `model/`, damaged, and a good input `in.txt`."""
    def setup(folder: Path, shared: Shared) -> None:
        shutil.copytree(shared.model, folder / "model")
        damage(folder / "model")
        (folder / "in.txt").write_bytes(TEXT)
    return setup


def _halve(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_json(path: Path, **values) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}, indent=1))


DAMAGES: dict[str, Callable[[Path], None]] = {
    "empty-weights": lambda m: (m / "model.safetensors").write_bytes(b""),
    "truncated-weights": lambda m: _halve(m / "model.safetensors"),
    "unknown-family": lambda m: _edit_json(m / "config.json", family="nope"),
    "invalid-config-json": lambda m: (m / "config.json").write_text('{"family": "ae", "d_model": 6'),
    "garbage-tokenizer": lambda m: (m / "tokenizer.json").write_bytes(b"\x00\xffnot a tokenizer {"),
}


def latest_checkpoint(run: Path) -> Path:
    return max((run / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))


def _run_copy(damage: Callable[[Path], None]) -> Setup:
    """A copy of the shared run directory in `run/`, its latest checkpoint damaged."""
    def setup(folder: Path, shared: Shared) -> None:
        shutil.copytree(shared.run, folder / "run")
        damage(latest_checkpoint(folder / "run"))
    return setup


class _Planted:
    """Unpickling this creates `marker`: proof that a pickle in a checkpoint was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _plant(*names: str) -> Setup:
    """A copy of the shared run directory in `run/`, these files of its latest checkpoint replaced by a planted pickle."""
    def setup(folder: Path, shared: Shared) -> None:
        shutil.copytree(shared.run, folder / "run")
        for name in names:
            (latest_checkpoint(folder / "run") / name).write_bytes(pickle.dumps(_Planted(folder / "PWNED")))
    return setup


def _encode(inp: str, *extra: str, model: str = "{model}") -> tuple[str, ...]:
    return ("encode", "--model", model, "--input", f"{{dir}}/{inp}", "--output", "{dir}/codes.parquet", *extra)


def _reconstruct(inp: str, *extra: str, model: str = "{model}") -> tuple[str, ...]:
    return ("reconstruct", "--model", model, "--input", f"{{dir}}/{inp}", "--output", "{dir}/rebuilt.jsonl", *extra)


def _score(inp: str, *extra: str, model: str = "{model}") -> tuple[str, ...]:
    source = inp if inp == "-" else f"{{dir}}/{inp}"
    return ("score", "--model", model, "--input", source, "--output", "{dir}/scores.jsonl", *extra)


def _train(*extra: str, data: str = "{corpus}") -> tuple[str, ...]:
    return ("train", "--data", data, "--output", "{dir}/run", "{tiny}", *extra)


GOOD_TXT = _files({"in.txt": TEXT})
GOOD_JSONL = _files({"in.jsonl": b"".join(json.dumps({"id": i, "text": s}).encode() + b"\n" for i, s in enumerate(SENTENCES))})
# A train case that fails while reading its data has already made its run directory; nothing in it may
# block a rerun (no checkpoint, no final model).
NO_RUN_LEFT = {"keep": (), "absent": ("run/final", "run/checkpoints")}

CASES: list[Case] = [
    # ----- inputs
    Case("encode-missing-input", _encode("missing.txt")),
    Case("score-missing-input", _score("missing.txt")),
    Case("train-missing-data", _train(data="{dir}/missing.txt"), **NO_RUN_LEFT),
    Case("encode-empty-input", _encode("in.txt"), _files({"in.txt": b""})),
    Case("reconstruct-empty-input", _reconstruct("in.txt"), _files({"in.txt": b""})),
    Case("score-empty-input", _score("in.txt"), _files({"in.txt": b""})),
    Case("train-empty-data", _train(data="{dir}/in.txt"), _files({"in.txt": b""}), **NO_RUN_LEFT),
    Case("score-empty-stdin", _score("-"), stdin=b""),
    Case("encode-broken-utf8", _encode("in.txt"), _files({"in.txt": b"fine line\nbroken \xff\xfe line\n"})),
    Case("encode-broken-jsonl-line", _encode("in.jsonl"), _files({"in.jsonl": b'{"text": "fine"}\n{"text": "broken\n'})),
    Case("encode-unknown-text-column", _encode("in.jsonl", "--text-column", "body"), GOOD_JSONL),
    Case("score-unknown-text-column", _score("in.jsonl", "--text-column", "body"), GOOD_JSONL),
    Case("encode-unknown-extension", _encode("in.docx"), _files({"in.docx": TEXT})),
    Case("score-unknown-extension", _score("in.docx"), _files({"in.docx": TEXT})),
    Case("encode-text-as-parquet", _encode("in.parquet"), _files({"in.parquet": TEXT})),
    Case("score-text-as-parquet", _score("in.parquet"), _files({"in.parquet": TEXT})),
    Case("encode-not-gzip", _encode("in.txt.gz"), _files({"in.txt.gz": TEXT})),
    Case("score-not-gzip", _score("in.txt.gz"), _files({"in.txt.gz": TEXT})),
    Case("train-not-gzip", _train(data="{dir}/in.txt.gz"), _files({"in.txt.gz": TEXT}), **NO_RUN_LEFT),
    Case("encode-truncated-gz", _encode("in.txt.gz"), _files({"in.txt.gz": _truncated_gz()})),
    # rows may be scored before the damage is reached: no .part or .progress may be left to block a rerun
    Case("score-truncated-gz", _score("in.txt.gz", "--buffer-rows", "64"), _files({"in.txt.gz": _truncated_gz()})),
    Case("encode-missing-text-field", _encode("in.jsonl"), _files({"in.jsonl": b'{"id": 1}\n'})),
    Case("reconstruct-missing-text-field", _reconstruct("in.jsonl"), _files({"in.jsonl": b'{"id": 1}\n'})),
    # ----- damaged model directories (a copy of the shared model in the case's folder)
    *[Case(f"{command}-model-{damage}", build("in.txt", model="{dir}/model"), _model(DAMAGES[damage]))
      for command, build, damages in (("encode", _encode, DAMAGES),
                                      ("score", _score, ("empty-weights", "truncated-weights", "garbage-tokenizer")),
                                      ("reconstruct", _reconstruct, ("unknown-family", "invalid-config-json")))
      for damage in damages],
    Case("train-init-from-truncated-weights", _train("--init-from", "{dir}/model"),
         _model(lambda m: _halve(m / "model.safetensors")), keep=("model",), absent=NO_RUN_LEFT["absent"]),
    Case("train-resume-truncated-checkpoint", ("train", "--resume", "--output", "{dir}/run", "--max-steps", "40"),
         _run_copy(lambda c: _halve(c / "model.safetensors")), keep=("run/checkpoints", "run/final")),
    # a checkpoint's pickles never run: refused, or resumed without them; either way no marker file. The RNG
    # states alone go through accelerate's loader that ignores a file it cannot read.
    Case("train-resume-planted-pickle", ("train", "--resume", "--output", "{dir}/run", "--max-steps", "40"),
         _plant("custom_checkpoint_0.pkl", "random_states_0.pkl"), expect=(0, 2), keep=(), absent=("PWNED",)),
    Case("train-resume-planted-rng-pickle", ("train", "--resume", "--output", "{dir}/run", "--max-steps", "40"),
         _plant("random_states_0.pkl"), expect=(0, 2), keep=(), absent=("PWNED",)),
    # ----- config errors: refused before a run directory exists or any data is read
    Case("train-num-codes-zero", _train("--set", "model.num_codes=0")),
    Case("train-num-codes-negative", _train("--set", "model.num_codes=-4")),
    Case("train-num-codes-text", _train("--set", "model.num_codes=abc")),
    Case("train-d-model-text", _train("--set", "model.d_model=abc")),
    Case("train-unknown-section", _train("--set", "nonexistent.key=1")),
    Case("train-max-steps-negative", _train("--max-steps", "-5")),
    Case("train-max-minutes-negative", _train("--max-minutes", "-1")),
    Case("train-max-steps-zero", _train("--max-steps", "0")),
    Case("train-config-yaml-syntax", _train("--config", "{dir}/bad.yaml"),
         _files({"bad.yaml": b"model:\n  num_codes: [16, 32\ntrain: {lr: 3e-3\n"})),
    Case("encode-batch-size-zero", _encode("in.txt", "--batch-size", "0"), GOOD_TXT),
    # ----- finished work is never replaced without --overwrite (its bytes stay as they were)
    Case("encode-existing-output", _encode("in.txt"), _both(GOOD_TXT, _files({"codes.parquet": b"earlier codes"}))),
    Case("reconstruct-existing-output", _reconstruct("in.txt"), _both(GOOD_TXT, _files({"rebuilt.jsonl": b'{"id": 0}\n'}))),
    Case("score-existing-output", _score("in.txt"), _both(GOOD_TXT, _files({"scores.jsonl": b'{"id": 0}\n'}))),
]


# ----- running them ------------------------------------------------------------------------------
def textae_env() -> dict[str, str]:
    """The user's environment, offline, one thread per process, and without TEXTAE_* options that would change a case."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTAE_")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def expand(argv: tuple[str, ...] | list[str], folder: Path, shared: Shared) -> list[str]:
    tiny = [a for k, v in TINY.items() for a in ("--set", f"{k}={'null' if v is None else v}")]
    values = {"dir": folder, "model": shared.model, "run": shared.run, "corpus": shared.corpus}
    return [x for a in argv for x in (tiny if a == "{tiny}" else [a.format(**values)])]


def textae(args: list[str], cwd: Path, stdin: bytes = b"", timeout: float = CASE_TIMEOUT_S) -> subprocess.CompletedProcess:
    """The installed CLI, as `python -m textae`: a real process, as a user starts it."""
    try:
        return subprocess.run([sys.executable, "-m", "textae", *args], cwd=cwd, input=stdin, capture_output=True,
                              env=textae_env(), timeout=timeout)
    except subprocess.TimeoutExpired as err:
        return subprocess.CompletedProcess(err.cmd, None, err.stdout or b"", err.stderr or b"")


# Modules a forked case finds imported: the CLI and what its commands load (not torch ops or threads).
PRELOAD = ["textae.cli", "textae.loading", "textae.io", "textae.config", "textae.scoring", "textae.training",
           "textae.latent"]
_FORK_LOCK = threading.Lock()
LOST_STATUS = 255  # what multiprocessing's forkserver reports for a child whose exit status it could not read
_fork_server_started = False


def _cli_in_child(args: list[str], cwd: str, env: dict[str, str], stdin: str, stdout: str, stderr: str,
                  status: str) -> None:
    """`python -m textae ARGS` in a process forked from the server: its own cwd, environment and standard
    streams, ended by the CLI's own exit (multiprocessing prints an uncaught traceback to stderr, status 1).
    The exit status is also written to the file `status`: a forkserver under load can lose a child's
    status and report 255, which the CLI never returns."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path, flags in ((0, stdin, os.O_RDONLY), (1, stdout, os.O_WRONLY), (2, stderr, os.O_WRONLY)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(0, encoding="utf-8", closefd=False)
    sys.argv = ["textae", *args]
    from textae.cli import main

    try:
        main()
    except SystemExit as done:
        code = done.code
        Path(status).write_text(str(0 if code is None else code if isinstance(code, int) else 1))
        raise
    Path(status).write_text("0")


def _fork_context() -> multiprocessing.context.BaseContext:
    """A forkserver that imported PRELOAD once, started with the cases' environment (HF_* flags are read at import)."""
    global _fork_server_started
    ctx = multiprocessing.get_context("forkserver")
    with _FORK_LOCK:
        if not _fork_server_started:
            from multiprocessing import forkserver

            saved = dict(os.environ)
            os.environ.clear()
            os.environ.update(textae_env())
            try:
                ctx.set_forkserver_preload(PRELOAD)
                forkserver.ensure_running()
            finally:
                os.environ.clear()
                os.environ.update(saved)
            _fork_server_started = True
    return ctx


def textae_forked(args: list[str], cwd: Path, stdin: bytes = b"", timeout: float = CASE_TIMEOUT_S) -> subprocess.CompletedProcess:
    """The CLI's main() in its own process, forked from a server that imported textae once: the same status,
    streams and files as `textae`, without the ~10 s of imports a fresh interpreter spends first. For tests;
    the benchmark keeps fresh interpreters."""
    with tempfile.TemporaryDirectory(prefix="textae-case-") as tmp:
        streams = [os.path.join(tmp, name) for name in ("stdin", "stdout", "stderr")]
        for path, data in zip(streams, (stdin, b"", b"")):
            Path(path).write_bytes(data)
        status = Path(tmp) / "status"
        proc = _fork_context().Process(target=_cli_in_child, args=(args, str(cwd), textae_env(), *streams, str(status)))
        proc.start()
        proc.join(timeout)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            code = None
        else:  # the status the CLI exited with, when the server lost it
            code = int(status.read_text()) if proc.exitcode == LOST_STATUS and status.is_file() else proc.exitcode
        return subprocess.CompletedProcess(args, code, Path(streams[1]).read_bytes(), Path(streams[2]).read_bytes())


def start(args: list[str], cwd: Path, stdin: int = subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "textae", *args], cwd=cwd, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=textae_env())


def snapshot(folder: Path, paths: tuple[str, ...]) -> dict[str, str]:
    """Every file (its sha256) and folder under `paths` of `folder`."""
    seen: dict[str, str] = {}
    for rel in paths:
        top = folder / rel
        for p in [top, *top.rglob("*")] if top.is_dir() else [top] if top.exists() else []:
            seen[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
    return seen


def refusal_problems(code: int | None, stdout: str, stderr: str, expect: tuple[int, ...] = (2,)) -> list[str]:
    """What is wrong with how a command ended: its status, its stderr, a traceback."""
    problems = []
    if code is None:
        problems.append(f"still running after {CASE_TIMEOUT_S} s")
    elif code not in expect:
        problems.append(f"exit status {code}, expected {' or '.join(map(str, expect))}")
    if "Traceback" in stderr or "Traceback" in stdout:
        problems.append("a traceback")
    lines = stderr_lines(stderr)
    if code not in (0, None) and (len(lines) != 1 or not lines[0].startswith("error:")):
        errors = sum(l.startswith("error:") for l in lines)
        problems.append(f"stderr has {len(lines)} lines, {errors} of them starting with 'error:' (expected one line, an error: line)")
    return problems


def _changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    out = []
    for rel in sorted(set(before) | set(after)):
        if rel not in before:
            out.append(f"{rel} created")
        elif rel not in after:
            out.append(f"{rel} removed")
        elif before[rel] != after[rel]:
            out.append(f"{rel} changed")
    return out


def run_case(case: Case, shared: Shared, root: Path, forked: bool = False) -> Outcome:
    folder = root / case.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    case.setup(folder, shared)
    before = snapshot(folder, case.keep)
    proc = (textae_forked if forked else textae)(expand(case.argv, folder, shared), folder, case.stdin)
    out = Outcome(case.name, case.command, proc.returncode, proc.stdout.decode(errors="replace"),
                  proc.stderr.decode(errors="replace"))
    out.problems = refusal_problems(out.exit_code, out.stdout, out.stderr, case.expect)
    out.problems += [f"{rel} exists afterwards" for rel in case.absent if (folder / rel).exists()]
    changes = _changes(before, snapshot(folder, case.keep))
    if changes:
        out.problems.append("left behind: " + ", ".join(changes[:6]) + (f" and {len(changes) - 6} more" if len(changes) > 6 else ""))
    return out


def run_cases(cases: list[Case], shared: Shared, root: Path, jobs: int = 2, forked: bool = False) -> dict[str, Outcome]:
    """Each case in its own folder under `root`, `jobs` at a time (they are independent processes);
    `forked` runs them with textae_forked instead of fresh interpreters."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(zip([c.name for c in cases], pool.map(lambda c: run_case(c, shared, root, forked), cases)))


# ----- races: two real processes on one output ----------------------------------------------------
BIG_ROWS = 20_000


def _big_input(folder: Path) -> Path:
    path = folder / "big.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": SENTENCES[i % len(SENTENCES)]}) + "\n" for i in range(BIG_ROWS)))
    return path


def _ids(path: Path) -> list | None:
    if not path.is_file():
        return None
    return [json.loads(l)["id"] for l in path.read_text().splitlines()]


def _rows_problem(path: Path) -> list[str]:
    ids = _ids(path)
    if ids is None:
        return [f"{path.name} was not written"]
    if ids != list(range(BIG_ROWS)):
        missing, twice = BIG_ROWS - len(set(ids) & set(range(BIG_ROWS))), len(ids) - len(set(ids))
        return [f"{path.name} has {len(ids)} rows ({missing} missing, {twice} repeated, in order: {ids == sorted(ids)}), "
                f"expected ids 0..{BIG_ROWS - 1} once each, in order"]
    return []


def _wait_until(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> bool:
    """True once `condition` holds; False if `proc` ends first or time runs out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _finish(name: str, args: list[str], proc: subprocess.Popen, expect: tuple[int, ...]) -> Outcome:
    try:
        stdout, stderr = proc.communicate(timeout=CASE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    out = Outcome(name, " ".join(["textae", *args]), proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))
    out.problems = refusal_problems(None if proc.returncode == -signal.SIGKILL else out.exit_code, out.stdout, out.stderr, expect)
    return out


def _mentions_lock(out: Outcome) -> list[str]:
    if out.exit_code == 2 and not re.search(r"lock|another|in use", out.first_line, re.I):
        return ["the error line does not say that another process holds the output"]
    return []


def race_train(shared: Shared, folder: Path) -> list[Outcome]:
    """Two `textae train` into one --output, started together: one trains to the end (status 0),
    the other is refused at once (status 2, one line naming the other process)."""
    argv = _train("--max-steps", "1000", "--no-progress")  # seconds of training: far longer than the two start-ups differ
    args, template = expand(argv, folder, shared), " ".join(["textae", *argv])
    procs = [start(args, folder) for _ in range(2)]
    outs = [_finish("race-train-same-output", args, p, (0, 2)) for p in procs]
    for o in outs:
        o.command = template
    codes = sorted(o.exit_code for o in outs)
    loser, winner = sorted(outs, key=lambda o: o.exit_code or 0, reverse=True)
    loser.problems += winner.problems + _mentions_lock(loser)
    if codes != [0, 2]:
        loser.problems.append(f"exit statuses {codes}, expected one 0 (trained) and one 2 (refused)")
    if not (folder / "run" / "final" / "model.safetensors").is_file():
        loser.problems.append("run/final/model.safetensors was not written")
    return [loser]


def _score_job(shared: Shared, folder: Path) -> tuple[Path, tuple[str, ...], list[str]]:
    """A score job over the big input that runs long enough to race: (output, template, arguments)."""
    template = ("score", "--model", "{model}", "--input", "{dir}/big.jsonl", "--output", "{dir}/scores.jsonl",
                "--buffer-rows", "256", "--no-progress")
    _big_input(folder)
    return folder / "scores.jsonl", template, expand(template, folder, shared)


def race_score(shared: Shared, folder: Path) -> list[Outcome]:
    """While a score job writes an output, a second one on it is refused, with and without --resume;
    the first then finishes with every row once, in input order."""
    out, template, args = _score_job(shared, folder)
    # The first job reads the same rows from stdin, held open until the others end: it cannot finish
    # first, however fast this machine scores.
    first = start([*args[: args.index("--input") + 1], "-", *args[args.index("--input") + 2 :]], folder, subprocess.PIPE)
    rows = "".join(SENTENCES[i % len(SENTENCES)] + "\n" for i in range(BIG_ROWS)).encode()
    feeder = threading.Thread(target=first.stdin.write, args=(rows,), daemon=True)
    feeder.start()
    started = _wait_until(lambda: any(p.name.startswith(out.name + ".") for p in folder.iterdir()), first)  # its lock
    seconds = [(name, extra, start([*args, *extra], folder))
               for name, extra in (("race-score-resume-while-running", ["--resume"]), ("race-score-again-while-running", []))]
    outs = [_finish(name, [*template, *extra], proc, (2,)) for name, extra, proc in seconds]
    overlapped = first.poll() is None
    feeder.join()  # the first job's stdin is closed by _finish below: then it ends
    for o in outs:
        o.problems += _mentions_lock(o)
        if not started:
            o.problems.append("the first job ended before it started writing")
        elif not overlapped:
            o.problems.append("the first job finished before this one ended: the race was not exercised (a slower machine needs more rows)")
    done = _finish("race-score-first-job-complete", list(template), first, (0,))
    done.problems += _rows_problem(out)
    return [*outs, done]


def kill_and_resume(shared: Shared, folder: Path) -> list[Outcome]:
    """A score job killed with SIGKILL mid-way leaves a lock that dies with it: `--resume` is not
    blocked and finishes with every row exactly once, in input order."""
    out, template, args = _score_job(shared, folder)
    job = start(args, folder)
    wrote = _wait_until(lambda: any(p.stat().st_size > 0 for p in folder.glob(f"{out.name}.part-*.jsonl")), job)
    job.kill()  # SIGKILL: no cleanup runs
    job.communicate()
    proc = textae([*args, "--resume"], folder)
    resumed = Outcome("race-score-resume-after-kill", " ".join(["textae", *template, "--resume"]), proc.returncode,
                      proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
    resumed.problems = refusal_problems(resumed.exit_code, resumed.stdout, resumed.stderr, (0,))
    if not wrote:
        resumed.problems.append("the first job ended before it wrote any rows: nothing was killed mid-way")
    resumed.problems += _rows_problem(out)
    return [resumed]


RACES: dict[str, Callable[[Shared, Path], list[Outcome]]] = {
    "race-train-same-output": race_train,
    "race-score-while-running": race_score,
    "race-score-resume-after-kill": kill_and_resume,
}


# ----- the shared model, and the benchmark ----------------------------------------------------------
def prepare(root: Path) -> Shared:
    """Train the shared tiny model with the CLI (its run keeps checkpoints) under root/shared."""
    folder = root / "shared"
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_bytes(TEXT)
    shared = Shared(folder / "run" / "final", folder / "run", corpus)
    if not (shared.model / "model.safetensors").is_file():
        shutil.rmtree(shared.run, ignore_errors=True)
        proc = textae(expand(_train("--no-progress", "--max-steps", str(SHARED_STEPS), "--set",
                                    f"train.save_every={SHARED_SAVE_EVERY}"), folder, shared), folder)
        if proc.returncode != 0:
            raise SystemExit(f"training the shared model failed:\n{proc.stderr.decode(errors='replace')}")
    return shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, default=None, help="Work in this folder and keep it (default: a temporary one).")
    parser.add_argument("--only", default=None, help="Run only the cases whose name contains this (and write no results).")
    parser.add_argument("--jobs", type=int, default=2, help="Cases run at once.")
    args = parser.parse_args()
    started = time.perf_counter()
    root = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="textae-faults-"))
    try:
        shared = prepare(root)
        print(f"shared model ready after {time.perf_counter() - started:.0f} s", flush=True)
        cases = [c for c in CASES if args.only is None or args.only in c.name]
        outcomes = list(run_cases(cases, shared, root / "cases", args.jobs).values())
        print(f"{len(cases)} cases done after {time.perf_counter() - started:.0f} s", flush=True)
        for name, race in RACES.items():
            if args.only is None or args.only in name:
                folder = root / "races" / name
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                outcomes += race(shared, folder)
                print(f"{name} done after {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    seconds = time.perf_counter() - started

    print(f"\n{'case':42s} {'exit':>4s}  {'ok':3s} first stderr line")
    for o in outcomes:
        print(f"{o.name:42s} {str(o.exit_code):>4s}  {'ok' if o.ok else 'NO':3s} {o.first_line[:110]}")
        if not o.ok:
            print(f"{'':52s}↳ {'; '.join(o.problems)[:200]}")
    passed = sum(o.ok for o in outcomes)
    print(f"{passed}/{len(outcomes)} cases refused cleanly in {seconds:.0f} s")
    if args.only is not None:
        print(f"(--only: {RESULTS} keeps the whole matrix's results)")
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "cases": [o.record() for o in outcomes], "passed": passed, "total": len(outcomes), "seconds": round(seconds, 1),
        "command": " ".join(["python", "benchmarks/faults.py", *sys.argv[1:]]),
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
