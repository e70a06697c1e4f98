"""Training on a corpus larger than memory: preparation speed, peak memory, and the cache.

Builds corpora of 100 k, 1 M and 10 M distinct sentences (the news sentences, each line prefixed
with a running number so that none repeats; the largest also gets 1 % exact duplicates, which
deduplication must drop), then for each size:
1. `textae train --data CORPUS --max-steps 200` with an empty cache: preparation time and
   sentences/s (from the trainer's own log line), peak RSS (wait4), time to the first step,
   training tokens/s (metrics.jsonl);
2. the same command into a new run directory: the prepared data comes from the cache.
It also times preparation alone (cleaning to token shards) on the 1 M corpus with 1 and 2 processes
(`data.num_proc`).

Writes benchmarks/results/scale.json. Run: python benchmarks/scale.py (about 30 minutes on 2 CPU
cores; `--sizes 100000` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import device_name  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DUPLICATE_SHARE = 0.01  # of the largest corpus, added again as exact duplicates
PREPARED = re.compile(r"prepared (\d+) training and (\d+) held-out sentences .* in ([\d.]+) s \(([\d,]+) sentences/s, (\d+) process")
FIRST_STEP = re.compile(r"first training step after ([\d.]+) s")
DEDUP = re.compile(r"dropped (\d+) duplicate sentences")
TOKENIZER = re.compile(r"trained the tokenizer in ([\d.]+) s")


def build_corpus(path: Path, n: int, duplicates: int, seed: int = 0) -> None:
    """n distinct lines (a running number, then a news sentence), plus `duplicates` repeated lines."""
    if path.is_file():
        return
    from textae.data import SENTENCE_MAX_WORDS, SENTENCE_MIN_WORDS, DataConfig, prepare

    news = prepare(DataConfig(source="news", min_words=SENTENCE_MIN_WORDS, max_words=SENTENCE_MAX_WORDS))
    # Sentences that stay within the length filter with their number in front: every line is kept,
    # so deduplication must drop exactly the duplicates added.
    sentences = [s for split in ("train", "validation") for s in news[split]["text"] if len(s.split()) < SENTENCE_MAX_WORDS]
    rng = np.random.default_rng(seed)
    repeat = set(rng.choice(n, size=duplicates, replace=False).tolist()) if duplicates else set()
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        for i in range(n):
            line = f"{i} {sentences[i % len(sentences)]}\n"
            f.write(line)
            if i in repeat:
                f.write(line)
    tmp.replace(path)


def _tree_memory_mb(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident memory in MB of a process and its descendants, now."""
    anon = files = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # the process ended meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        anon += int(fields.get("RssAnon", "0 kB").split()[0])
        files += int(fields.get("RssFile", "0 kB").split()[0]) + int(fields.get("RssShmem", "0 kB").split()[0])
    return anon // 1024, files // 1024


def run(args: list[str], env: dict[str, str], log: Path) -> tuple[float, int, str, float | None, int]:
    """(wall seconds, peak RSS in MB, stderr, seconds from launch to the first training step, peak
    anonymous memory in MB of the process tree) of one textae command. The first step is timed from
    the process's start, imports included. Peak RSS (wait4) also counts pages of memory-mapped files,
    which the kernel can drop; the anonymous peak, sampled every 0.2 s, is what the processes hold."""
    start = time.perf_counter()
    first_step = None
    proc = subprocess.Popen([sys.executable, "-m", "textae", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    peak_anon = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak_anon[0] = max(peak_anon[0], _tree_memory_mb(proc.pid)[0])
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with log.open("w") as out:
        for line in proc.stderr:
            out.write(line)
            if first_step is None and FIRST_STEP.search(line):
                first_step = time.perf_counter() - start
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    sampler.join()
    text = log.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"textae {' '.join(args)} failed; see {log}:\n{text[-2000:]}")
    return wall, usage.ru_maxrss // 1024, text, first_step, peak_anon[0]


def train(corpus: Path, out: Path, env: dict[str, str], steps: int, resume: bool = False) -> dict:
    if not resume:
        shutil.rmtree(out, ignore_errors=True)
    wall, rss, log, first_step, anon = run(["train", "--data", str(corpus), "--output", str(out), "--max-steps", str(steps), "--no-progress",
                                      "--set", "train.eval_every=100000", "--set", "train.save_every=100000",
                                      *(["--resume"] if resume else [])],
                                     env, out.with_name(out.name + ("-resume" if resume else "") + ".log"))
    prepared = PREPARED.search(log)
    rates = [json.loads(l)["tokens_per_s"] for l in (out / "metrics.jsonl").read_text().splitlines() if "tokens_per_s" in l]
    return {
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": rss,
        "peak_anon_mb": anon,
        "first_step_seconds": round(first_step, 1) if first_step else None,
        "prep_seconds": float(prepared.group(3)) if prepared else None,
        "prep_sentences_per_s": int(prepared.group(4).replace(",", "")) if prepared else None,
        "num_proc": int(prepared.group(5)) if prepared else None,
        "tokenizer_seconds": float(trained.group(1)) if (trained := TOKENIZER.search(log)) else None,
        "train_tokens_per_s": round(float(np.median(rates[1:] or rates))) if rates else None,
        "log": log,
    }


def prepare_alone(corpus: Path, num_proc: int, cache: Path) -> float:
    """Sentences/s of preparation (cleaning to token shards, as the trainer's log line counts it:
    the tokenizer's training is left out) with `num_proc` processes, from an empty cache."""
    shutil.rmtree(cache, ignore_errors=True)
    code = ("from textae.data import DataConfig; from textae.data.corpus import prepare_corpus; "
            "from textae.tokenizer import load_tokenizer; "
            f"c = prepare_corpus(DataConfig(source={str(corpus)!r}, min_words=4, max_words=40, num_proc={num_proc})); "
            "shards = c.token_shards(load_tokenizer(c.tokenizer(4000, 'unigram')), 64); "
            "print(len(shards['train']) + len(shards['validation']), c.seconds)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                         env={**os.environ, "TEXTAE_CACHE": str(cache), "HF_DATASETS_CACHE": str(cache / "datasets")},
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[-2]) / float(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-scale")
    parser.add_argument("--output", type=Path, default=RESULTS / "scale.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    largest = max(args.sizes)
    rows, dedup = [], None
    for n in args.sizes:
        duplicates = int(n * DUPLICATE_SHARE) if n == largest else 0
        corpus = args.work / f"corpus-{n}.txt"
        build_corpus(corpus, n, duplicates)
        cache = args.work / f"cache-{n}"
        shutil.rmtree(cache, ignore_errors=True)
        # textae's cache and that of `datasets` (which keeps its own Arrow copy of a text file) both start empty
        env = {**os.environ, "TEXTAE_CACHE": str(cache), "HF_DATASETS_CACHE": str(cache / "datasets")}
        first = train(corpus, args.work / f"run-{n}-a", env, args.steps)
        second = train(corpus, args.work / f"run-{n}-b", env, args.steps)
        resumed = train(corpus, args.work / f"run-{n}-a", env, args.steps + 10, resume=True)
        row = {"sentences": n, **{k: v for k, v in first.items() if k != "log"},
               "second_run_first_step_seconds": second["first_step_seconds"], "second_run_peak_rss_mb": second["peak_rss_mb"],
               "resume_first_step_seconds": resumed["first_step_seconds"]}
        if duplicates:
            dropped = DEDUP.search(first["log"])
            dedup = {"sentences_with_duplicates": n + duplicates, "duplicates_added": duplicates,
                     "dedup_dropped": int(dropped.group(1)) if dropped else 0}
        rows.append(row)
        print(json.dumps(row), flush=True)
    per_proc = {}
    one_million = args.work / f"corpus-{min(args.sizes, key=lambda s: abs(s - 1_000_000))}.txt"
    for procs in (1, 2):
        per_proc[procs] = round(prepare_alone(one_million, procs, args.work / f"cache-procs-{procs}"))
        print(f"preparation with {procs} process(es): {per_proc[procs]} sentences/s", flush=True)
    result = {
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "device": device_name("cpu"),
        "rows": rows,
        "dedup_dropped": dedup and dedup["dedup_dropped"],
        "dedup": dedup,
        "prep_sentences_per_s_by_num_proc": {"corpus": one_million.name, **{str(k): v for k, v in per_proc.items()}},
    }
    base = rows[0]["peak_rss_mb"]
    print(f"\n{'sentences':>11} {'prep s':>7} {'sent/s':>8} {'tokenizer s':>11} {'RSS MB':>7} {'+RSS':>6} {'1st step s':>10} "
          f"{'2nd run s':>9} {'resume s':>8} {'tok/s':>7}")
    for r in rows:
        print(f"{r['sentences']:>11,} {r['prep_seconds']:>7} {r['prep_sentences_per_s']:>8,} {r['tokenizer_seconds']:>11} {r['peak_rss_mb']:>7} "
              f"{r['peak_rss_mb'] - base:>6} {r['first_step_seconds']:>10} {r['second_run_first_step_seconds']:>9} "
              f"{r['resume_first_step_seconds']:>8} {r['train_tokens_per_s']:>7}")
    print(f"dedup: {dedup}")
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
