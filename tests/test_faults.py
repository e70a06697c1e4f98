"""Every bad input and every race gets a clear refusal: benchmarks/faults.py's matrix through the CLI,
each case in its own process (forked from a server that imported textae once; the races start fresh
`python -m textae` interpreters). A refusal is status 2, exactly one stderr line and it starts with
`error:`, no traceback, and nothing left behind or changed."""

from __future__ import annotations

import json
import multiprocessing.process
import sys

import pyarrow.parquet as pq
import pytest

from benchmarks import faults

from .conftest import SENTENCES

pytestmark = pytest.mark.slow  # about 50 processes, and three races of fresh interpreters


@pytest.fixture(scope="module")
def shared(trained_model, tmp_path_factory) -> faults.Shared:
    """One tiny model for every case, read only: its final/ folder and its run with checkpoints."""
    final = trained_model(steps=faults.SHARED_STEPS, **{"train.save_every": faults.SHARED_SAVE_EVERY})
    corpus = tmp_path_factory.mktemp("faults-corpus") / "corpus.txt"
    corpus.write_bytes(faults.TEXT)
    return faults.Shared(final, final.parent, corpus)


@pytest.fixture(scope="module")
def outcomes(request, shared, tmp_path_factory) -> dict[str, faults.Outcome]:
    """The cases this session selected, run once, two at a time: they are independent processes."""
    module = sys.modules[__name__]
    names = {item.callspec.params["case"].name for item in request.session.items
             if getattr(item, "module", None) is module and "case" in getattr(getattr(item, "callspec", None), "params", {})}
    cases = [c for c in faults.CASES if c.name in names]
    return faults.run_cases(cases, shared, tmp_path_factory.mktemp("faults"), jobs=2, forked=True)


def test_the_benchmark_uses_the_tests_sentences():
    assert faults.SENTENCES == SENTENCES


def test_case_names_are_unique():
    names = [c.name for c in faults.CASES] + list(faults.RACES)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", faults.CASES, ids=lambda c: c.name)
def test_bad_input_is_refused_with_one_line_and_nothing_left(case, outcomes):
    out = outcomes[case.name]
    assert out.exit_code in case.expect, out.explain()
    assert not out.traceback, out.explain()
    if out.exit_code != 0:
        lines = faults.stderr_lines(out.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:"), out.explain()
    assert out.ok, out.explain()  # the case's files: none created, none changed, none it names left


def _rows(path) -> list:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    return [json.loads(l) for l in path.read_text().splitlines()]


@pytest.mark.parametrize("command, output", [("encode", "codes.parquet"), ("reconstruct", "rebuilt.jsonl"),
                                             ("score", "scores.jsonl")])
def test_overwrite_replaces_an_existing_output(shared, tmp_path, command, output):
    case = next(c for c in faults.CASES if c.name == f"{command}-existing-output")
    case.setup(tmp_path, shared)
    proc = faults.textae_forked(faults.expand([*case.argv, "--overwrite"], tmp_path, shared), tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [r["id"] for r in _rows(tmp_path / output)] == list(range(len(SENTENCES)))
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(output + ".")]  # no .tmp, .part or lock left


def test_a_second_training_into_a_busy_run_directory_is_refused(shared, tmp_path):
    """Two `textae train` into one --output started together: one trains (0), the other is refused (2)."""
    outs = faults.race_train(shared, tmp_path)
    assert all(o.ok for o in outs), "\n\n".join(o.explain() for o in outs)


def test_a_second_score_job_on_a_busy_output_is_refused_and_the_first_finishes(shared, tmp_path):
    """While a job scores 20,000 rows, another on its output is refused with and without --resume;
    the first then writes every row once, in input order."""
    outs = faults.race_score(shared, tmp_path)
    assert [o.name for o in outs] == ["race-score-resume-while-running", "race-score-again-while-running",
                                      "race-score-first-job-complete"]
    assert all(o.ok for o in outs), "\n\n".join(o.explain() for o in outs if not o.ok)


def test_a_killed_score_job_resumes_without_a_stale_lock(shared, tmp_path):
    """SIGKILL mid-job: --resume is not blocked by the dead job's lock and writes each row exactly once."""
    outs = faults.kill_and_resume(shared, tmp_path)
    assert all(o.ok for o in outs), "\n\n".join(o.explain() for o in outs)


def test_a_forked_case_reports_the_clis_own_status_when_the_server_loses_it(monkeypatch, tmp_path):
    """A forkserver under load once reported 255 for a case whose CLI exited 2; the child's own record wins."""
    real = multiprocessing.process.BaseProcess.exitcode
    lost = property(lambda self: None if real.fget(self) is None else faults.LOST_STATUS)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "exitcode", lost)
    done = faults.textae_forked(["decode", "--model", str(tmp_path / "missing"), "--input", str(tmp_path / "codes.parquet"),
                                 "--output", str(tmp_path / "out.txt")], tmp_path)
    assert done.returncode == 2 and done.stderr.decode().startswith("error:"), done
