#!/usr/bin/env python3
"""embedlab against the Python stack people would otherwise use, on this machine, as ratios.

One command (from the repo root):

    python3 bench/run.py                  # everything, medians of 5 runs; writes bench/RESULTS.md
    python3 bench/run.py --quick          # small sizes, 1 run: checks the pipeline in minutes
    python3 bench/run.py --only knn,metrics --python /path/to/venv/bin/python

It builds the release binary and the candle plugin, creates a virtual environment for the peers
(`bench/.venv`, from bench/peers/requirements.txt; `--python` uses an existing interpreter
instead), fetches the models into the model store when missing, then runs each section:

  knn         exact self-k-NN (k = 10, self excluded) on the same seeded random unit vectors:
              `embedlab bench knn` against faiss-cpu IndexFlatIP (bench/peers/knn_faiss.py);
              plus a plain large SGEMM (faer and numpy) as the machine's reference rate
  metrics     the eight metrics of 100,000 queries on the same neighbour lists and label sets:
              `embedlab bench metrics` against torchmetrics (bench/peers/metrics_torchmetrics.py),
              which must reproduce our values to 1e-5
  text        all-MiniLM-L6-v2 and all-mpnet-base-v2 sentences/s on the same COCO caption texts,
              same batch size and threads: `embedlab bench encode` against sentence-transformers
              (bench/text_encoders_st.py); both time the encode call after loading and warm-up
  image       EfficientNet-Lite0 images/s end to end (read + decode + resize + forward) on the
              same COCO photos: `embedlab bench encode --images` against timm + PIL
              (bench/peers/image_timm.py)
  quickstart  `embedlab run experiments/quickstart.toml`, cold (empty cache) and warm (all cached)

A peer that cannot be installed or run is reported as such in its section; the others go on.
Nothing else should run on the machine meanwhile (check the load average the report records).
Every figure is a median of --repeat runs after one warm-up; ratios are ours / peer's time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PEERS = REPO / "bench" / "peers"
THREADS = 2
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"
EFFNET = "efficientnet-lite0"
SECTIONS = ("knn", "metrics", "text", "image", "quickstart")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per figure (median)")
    ap.add_argument("--quick", action="store_true", help="small sizes, one run")
    ap.add_argument("--python", help="an interpreter that already has the peers")
    ap.add_argument("--venv", type=Path, default=REPO / "bench" / ".venv")
    ap.add_argument("--work", type=Path, default=REPO / "target" / "bench")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    ap.add_argument("--no-build", action="store_true", help="use the existing release build")
    args = ap.parse_args()
    if args.quick:
        args.repeat = 1
    sections = [s for s in args.only.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {unknown}; known: {', '.join(SECTIONS)}")
    args.work.mkdir(parents=True, exist_ok=True)

    bench = Bench(args)
    if not args.no_build:
        bench.sh(["cargo", "build", "--release", "--locked", "-p", "embedlab", "-p", "embedlab-candle"])
    bench.python = args.python or bench.peer_venv()
    load_before = os.getloadavg()
    report = []
    for name in sections:
        print(f"== {name}", file=sys.stderr)
        report.append(getattr(bench, f"section_{name}")())
    bench.write(report, load_before, os.getloadavg())
    return 0


class PeerMissing(Exception):
    """A peer could not be installed or run; its section says so."""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: Path = args.work
        self.exe = REPO / "target" / "release" / "embedlab"
        self.python: str | None = None
        self.peer_versions: dict[str, str] = {}
        self.env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
            self.env[var] = str(THREADS)
        self.env["HF_HUB_OFFLINE"] = "1"
        self.store = Path(os.environ.get("EMBEDLAB_MODEL_STORE", Path.home() / ".cache/embedlab/models"))
        self.commands: list[str] = []

    # -- running things -------------------------------------------------------------------------

    def sh(self, cmd: list[str], record: bool = True) -> str:
        shown = display(cmd)
        if record:
            self.commands.append(shown)
        print(f"$ {shown}", file=sys.stderr)
        proc = subprocess.run([str(c) for c in cmd], cwd=REPO, env=self.env, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: `{shown}` exited with {proc.returncode}")
        return proc.stdout

    def peer(self, script: Path, *cli: object) -> dict:
        """Runs a peer script that writes --json; PeerMissing when it cannot run."""
        out = self.work / f"{script.stem}-{len(self.commands)}.json"
        cmd = [self.python, script, *cli, "--json", out]
        shown = display(cmd)
        self.commands.append(shown)
        print(f"$ {shown}", file=sys.stderr)
        proc = subprocess.run([str(c) for c in cmd], cwd=REPO, env=self.env)
        if proc.returncode != 0 or not out.exists():
            raise PeerMissing(f"`{script.name}` exited with {proc.returncode}")
        return json.loads(out.read_text())

    def ours(self, *cli: object) -> dict:
        out = self.work / f"ours-{len(self.commands)}.json"
        self.sh([self.exe, "-q", *cli, "--json", out])
        return json.loads(out.read_text())

    def peer_venv(self) -> str:
        venv = self.args.venv
        python = venv / "bin" / "python"
        if not python.exists():
            self.sh([sys.executable, "-m", "venv", venv])
        requirements = (PEERS / "requirements.txt").read_text().split()
        for requirement in requirements:
            proc = subprocess.run([str(python), "-m", "pip", "install", "-q", requirement], env=self.env)
            if proc.returncode != 0:
                print(f"warning: could not install {requirement}; its section will say so", file=sys.stderr)
        return str(python)

    def model_dir(self, model: str) -> Path:
        folder = self.store / model.replace("/", "--")
        if not (folder / "embedlab-model.json").exists():
            self.sh([self.exe, "models", "fetch", model])
        return folder

    # -- sections -------------------------------------------------------------------------------

    def section_knn(self) -> dict:
        """The target case (N = 100,000, d = 384) and N = 20,000 get --repeat runs; the two other
        N = 100,000 cases (minutes each) one run, without a warm-up."""
        r = self.args.repeat
        groups = [([5000], [384], r)] if self.args.quick else [
            ([20000], [384, 768, 1024], r), ([100000], [384], r), ([100000], [768, 1024], 1)]
        cases, sgemm, threads = [], None, None
        for ns, dims, repeat in groups:
            ours = self.ours("bench", "knn", "--n", ",".join(map(str, ns)), "--dim", ",".join(map(str, dims)),
                             "--k", "10", "--repeat", repeat, "--sgemm", 0 if sgemm else (1024 if self.args.quick else 4096),
                             "--save", self.work / "knn")
            sgemm, threads = sgemm or ours["sgemm"], ours["threads"]
            cases += [(case, repeat) for case in ours["cases"]]
        rows = []
        for case, repeat in cases:
            row = {"n": case["n"], "dim": case["dim"], "ours_s": case["median"], "gflops": case["gflops"],
                   "of_sgemm": case["of_sgemm"] or case["gflops"] / sgemm["all_threads_gflops"], "runs": repeat}
            try:
                peer = self.peer(PEERS / "knn_faiss.py", "--vectors", case["vectors"], "--neighbours",
                                 case["neighbours"], "--k", 10, "--threads", THREADS, "--repeat", repeat,
                                 "--warmup", 1 if repeat > 1 else 0)
                self.peer_versions["faiss-cpu"] = peer["peer"]["version"]
                row.update(peer_s=peer["median"], agreement=peer.get("agreement"))
            except PeerMissing as e:
                row["missing"] = str(e)
            # The vectors are large (up to 400 MB each) and cheap to regenerate.
            Path(case["vectors"]).unlink(missing_ok=True)
            rows.append(row)
        try:
            numpy = self.peer(PEERS / "knn_faiss.py", "--sgemm", 1024 if self.args.quick else 4096,
                              "--threads", THREADS, "--repeat", 3)
            numpy_gflops = numpy.get("gflops")
        except PeerMissing:
            numpy_gflops = None
        return {"name": "knn", "ours": {"sgemm": sgemm, "threads": threads}, "rows": rows,
                "numpy_sgemm_gflops": numpy_gflops}

    def section_metrics(self) -> dict:
        n = 10000 if self.args.quick else 100000
        ours = self.ours("bench", "metrics", "--n", n, "--k", 10, "--repeat", self.args.repeat,
                         "--save", self.work / "metrics")
        expected = self.work / "metrics-expected.json"
        expected.write_text(json.dumps({"values": ours["values"]}))
        try:
            peer = self.peer(PEERS / "metrics_torchmetrics.py", "--neighbours",
                             self.work / "metrics" / "metrics-neighbours.npy", "--labels",
                             self.work / "metrics" / "metrics-labels.npy", "--k", 10, "--repeat",
                             self.metrics_peer_runs(), "--warmup", 0, "--expected", expected)
            self.peer_versions["torchmetrics"] = peer["peer"]["version"]
        except PeerMissing as e:
            return {"name": "metrics", "ours": ours, "missing": str(e)}
        return {"name": "metrics", "ours": ours, "peer": peer}

    def metrics_peer_runs(self) -> int:
        """torchmetrics loops in Python over queries: one run of 100,000 takes minutes, and the
        target's margin is orders of magnitude, so one run (no warm-up) is enough there."""
        return self.args.repeat if self.args.quick else 1

    def section_text(self) -> dict:
        coco = SHARED / "coco-val2017-captions" / "captions_val2017.json"
        if not coco.exists():
            return {"name": "text", "missing": f"{coco} is absent (the shared data)"}
        texts = self.work / "texts"
        self.sh([sys.executable, REPO / "bench" / "text_encoders_st.py", "--coco", coco, "--texts-out", texts])
        limit = 128 if self.args.quick else 0
        folders = {MINILM: self.model_dir(MINILM), MPNET: self.model_dir(MPNET)}
        rows = []
        for model in (MINILM, MPNET):
            for text_set in ("captions", "concat"):
                ours = self.ours("bench", "encode", "--model", model, "--texts", texts / f"{text_set}.txt",
                                 "--limit", limit, "--batch-size", 64, "--repeat", self.args.repeat)
                rows.append({"model": model, "set": text_set, "texts": ours["items"],
                             "ours": ours["end_to_end"]["items_per_s"], "ours_rss": ours["peak_rss_mb"]})
        try:
            peer = self.peer(REPO / "bench" / "text_encoders_st.py", "--minilm", folders[MINILM], "--mpnet",
                             folders[MPNET], "--coco", coco, "--threads", THREADS, "--batch-sizes", 64,
                             "--runs", self.args.repeat, "--limit", limit)
        except PeerMissing as e:
            return {"name": "text", "rows": rows, "missing": str(e)}
        self.peer_versions["sentence-transformers"] = peer["sentence_transformers"]
        self.peer_versions["torch"] = peer["torch"]
        for model in peer["models"]:
            for result in model["results"]:
                for row in rows:
                    if row["model"] == model["model"] and row["set"] == result["set"]:
                        row["peer"] = result["sentences_per_s"]
                        row["peer_rss"] = model["peak_rss_mib"]
        return {"name": "text", "rows": rows}

    def section_image(self) -> dict:
        images = SHARED / "coco-sample" / "images"
        if not images.exists():
            return {"name": "image", "missing": f"{images} is absent (the shared data)"}
        n = 64 if self.args.quick else 200
        folder = self.model_dir(EFFNET)
        ours = self.ours("bench", "encode", "--model", EFFNET, "--images", images, "--limit", n,
                         "--batch-size", 32, "--repeat", self.args.repeat)
        try:
            peer = self.peer(PEERS / "image_timm.py", "--images", images, "--n", n, "--batch", 32,
                             "--threads", THREADS, "--repeat", self.args.repeat, "--weights",
                             folder / "efficientnet-lite0-57934424.pth")
            self.peer_versions["timm"] = peer["peer"]["version"]
        except PeerMissing as e:
            return {"name": "image", "ours": ours, "missing": str(e)}
        return {"name": "image", "ours": ours, "peer": peer}

    def section_quickstart(self) -> dict:
        manifest = REPO / "experiments" / "quickstart.toml"
        out = self.work / "quickstart-out"
        cold, warm = [], []
        for i in range(self.args.repeat):
            cache = self.work / "quickstart-cache"
            shutil.rmtree(cache, ignore_errors=True)
            cmd = [self.exe, "-q", "run", manifest, "--cache-dir", cache, "--out", out]
            cold.append(self.timed(cmd, record=i == 0))
            warm.append(self.timed(cmd, record=i == 0))
        return {"name": "quickstart", "cold": cold, "warm": warm}

    def timed(self, cmd: list, record: bool) -> float:
        started = time.perf_counter()
        self.sh(cmd, record=record)
        return time.perf_counter() - started

    # -- the report -----------------------------------------------------------------------------

    def write(self, sections: list[dict], load_before: tuple, load_after: tuple) -> None:
        lines = [
            "# embedlab against the Python stack",
            "",
            f"Written by `python3 bench/run.py{' --quick' if self.args.quick else ''}` on "
            f"{datetime.date.today().isoformat()}. Unless a table says otherwise, every time is the "
            f"median of {self.args.repeat} timed runs after one warm-up; **ratio = our time / the "
            "peer's time** for the same work (below 1: we are faster). Both sides use the same inputs "
            f"and {THREADS} threads; the text and image figures leave out loading the model.",
            "",
            "## Machine",
            "",
            *machine_lines(self.exe, self.peer_versions, load_before, load_after),
            "",
        ]
        for section in sections:
            lines += getattr(self, f"report_{section['name']}")(section)
            lines.append("")
        lines += ["## Commands", "", "```", *self.commands, "```", ""]
        self.args.out.write_text("\n".join(lines))
        print(f"wrote {self.args.out}", file=sys.stderr)

    @staticmethod
    def report_knn(s: dict) -> list[str]:
        ours = s["ours"]
        sgemm = ours.get("sgemm") or {}
        lines = ["## Exact self-k-NN (k = 10, self excluded) against faiss IndexFlatIP", ""]
        if sgemm:
            lines += [
                f"Reference rate, a plain {sgemm['size']}³ SGEMM: faer {sgemm['one_thread_gflops']:.0f} "
                f"GFLOP/s on 1 thread, {sgemm['all_threads_gflops']:.0f} on {ours['threads']}"
                + (f"; numpy (its BLAS) {s['numpy_sgemm_gflops']:.0f} on {THREADS}."
                   if s.get("numpy_sgemm_gflops") else "."),
                "",
            ]
        lines += ["| N | d | runs | embedlab (s) | GFLOP/s | of SGEMM | faiss (s) | ratio | target | same neighbours |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
        for r in s["rows"]:
            target = "≤ 0.8" if (r["n"], r["dim"]) == (100000, 384) else ""
            if "peer_s" in r:
                ratio = r["ours_s"] / r["peer_s"]
                agreement = r.get("agreement") or {}
                same = f"{100 * agreement.get('recall', float('nan')):.2f} %" if agreement else "–"
                met = (" ✓" if ratio <= 0.8 else " ✗") if target else ""
                lines.append(f"| {r['n']:,} | {r['dim']} | {r['runs']} | {r['ours_s']:.2f} | {r['gflops']:.0f} | "
                             f"{pct(r['of_sgemm'])} | {r['peer_s']:.2f} | {ratio:.2f}{met} | {target} | {same} |")
            else:
                lines.append(f"| {r['n']:,} | {r['dim']} | {r['runs']} | {r['ours_s']:.2f} | {r['gflops']:.0f} | "
                             f"{pct(r['of_sgemm'])} | {r['missing']} | | {target} | |")
        lines += ["", "\"Same neighbours\": mean overlap of our k neighbours with faiss's, per query "
                  "(ties and last-bit differences in the f32 scores account for the rest)."]
        return lines

    @staticmethod
    def report_metrics(s: dict) -> list[str]:
        ours = s["ours"]
        lines = [f"## All eight metrics, {ours['n']:,} queries (k = 10), against torchmetrics", ""]
        if "missing" in s:
            return lines + [f"embedlab {ours['median']:.4f} s; torchmetrics: {s['missing']}."]
        peer = s["peer"]
        ratio = ours["median"] / peer["median"]
        lines += [f"embedlab: median of {len(ours['seconds'])} runs; torchmetrics: {len(peer['seconds'])} run(s) "
                  "(a Python loop over queries per metric; one run takes long, and the margin is large).", "",
                  "| embedlab (s) | torchmetrics (s) | ratio | target | largest difference of the 8 means |",
                  "|---:|---:|---:|---|---:|",
                  f"| {ours['median']:.4f} | {peer['median']:.2f} | {ratio:.4f}{' ✓' if ratio <= 0.05 else ' ✗'} "
                  f"| ≤ 0.05 | {peer.get('max_abs_diff', float('nan')):.1e} |",
                  "", "Values (both sides): " + ", ".join(f"`{k}` {v:.4f}" for k, v in ours["values"].items()) + "."]
        return lines

    @staticmethod
    def report_text(s: dict) -> list[str]:
        lines = ["## Text encoders against sentence-transformers (PyTorch CPU), batch 64", ""]
        if "missing" in s and "rows" not in s:
            return lines + [s["missing"] + "."]
        lines += ["| model | texts | embedlab (sent/s) | sentence-transformers (sent/s) | ratio (time) | target | peak RSS ours / peer (MiB) |",
                  "|---|---|---:|---:|---:|---|---:|"]
        for r in s["rows"]:
            name = r["model"].split("/")[-1]
            label = {"captions": "single captions", "concat": "5 captions joined"}[r["set"]]
            if "peer" in r:
                ratio = r["peer"] / r["ours"]
                lines.append(f"| {name} | {r['texts']} {label} | {r['ours']:.1f} | {r['peer']:.1f} | "
                             f"{ratio:.2f}{' ✓' if ratio <= 1.0 else ' ✗'} | ≤ 1.0 | "
                             f"{r['ours_rss']:.0f} / {r['peer_rss']:.0f} |")
            else:
                lines.append(f"| {name} | {r['texts']} {label} | {r['ours']:.1f} | {s.get('missing', '–')} | | | |")
        return lines

    @staticmethod
    def report_image(s: dict) -> list[str]:
        lines = ["## EfficientNet-Lite0 against timm + PIL (PyTorch CPU), batch 32", ""]
        if "ours" not in s:
            return lines + [s["missing"] + "."]
        ours = s["ours"]
        if "missing" in s:
            return lines + [f"embedlab {ours['end_to_end']['items_per_s']:.1f} images/s; timm: {s['missing']}."]
        peer = s["peer"]
        lines += ["| | embedlab (img/s) | timm + PIL (img/s) | ratio (time) | target |", "|---|---:|---:|---:|---|"]
        for key, label, target in (("end_to_end", "end to end (read, decode, resize, forward)", 1.0),
                                   ("forward_only", "forward only", None)):
            a, b = ours[key]["items_per_s"], peer[key]["images_per_s"]
            mark = (" ✓" if b / a <= target else " ✗") if target else ""
            lines.append(f"| {label} | {a:.1f} | {b:.1f} | {b / a:.2f}{mark} | {'≤ 1.0' if target else ''} |")
        lines += ["", f"{ours['items']} COCO photos; peak RSS {ours['peak_rss_mb']:.0f} MiB (ours) vs "
                  f"{peer.get('peak_rss_mb', float('nan')):.0f} MiB (peer). Peer weights: "
                  f"{peer.get('weights', 'see its JSON')}."]
        return lines

    @staticmethod
    def report_quickstart(s: dict) -> list[str]:
        cold, warm = statistics.median(s["cold"]), statistics.median(s["warm"])
        return ["## `embedlab run experiments/quickstart.toml` (whole process)", "",
                "| cache | seconds | target |", "|---|---:|---|",
                f"| cold (empty cache: 4 encodings of 60 samples, 5 runs) | {cold:.2f} | |",
                f"| warm (everything cached) | {warm:.2f} | < 2 s{' ✓' if warm < 2 else ' ✗'} |"]


def display(cmd: list) -> str:
    """A command as the report shows it: paths relative to the repo, the shared data and home."""
    shown = " ".join(str(c) for c in cmd)
    for path, short in ((REPO, ""), (REPO.parent / "shared", "../shared"), (Path.home(), "~")):
        shown = shown.replace(f"{path}/", f"{short}/" if short else "")
    return shown


def pct(fraction: float | None) -> str:
    return "–" if fraction is None else f"{100 * fraction:.0f} %"


def machine_lines(exe: Path, peers: dict[str, str], load_before: tuple, load_after: tuple) -> list[str]:
    cpu = "unknown"
    flags = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and cpu == "unknown":
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line
    mem_kb = int(next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")))
    version = subprocess.run([str(exe), "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, stdout=subprocess.PIPE, text=True).stdout.strip()
    rustc = subprocess.run(["rustc", "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    simd = ", ".join(f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16") if f" {f}" in flags)
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores ({simd}); {mem_kb / 2**20:.0f} GiB memory; "
        f"{platform.system()} {platform.release()}",
        f"- embedlab: {version} (release build, git {rev}), {rustc}",
        f"- peers: Python {platform.python_version()}; " + ", ".join(f"{k} {v}" for k, v in sorted(peers.items())),
        f"- load average before the runs: {load_before[0]:.2f} (1 min), {load_before[1]:.2f} (5 min); "
        f"after them: {load_after[0]:.2f}, {load_after[1]:.2f}, {load_after[2]:.2f} (1, 5, 15 min; the runs "
        f"themselves keep {THREADS} threads busy)",
    ]


if __name__ == "__main__":
    sys.exit(main())
