"""py-spy on a running server, and a summary of where its time went.

The server benchmarks take ``--profile DIR``: py-spy records the server
process (a granian worker, or the cheroot process) in raw "collapsed stacks"
format while the measurement runs, then this module prints the functions
with the most samples on top of the stack (self) and anywhere in it
(inclusive), and the share of each package.

py-spy runs with ``--gil``: it samples only the thread holding the GIL, i.e.
where the server's Python CPU time goes (time in system calls that release
the GIL does not show).  Without ``--gil`` py-spy walks all of cheroot's 1,000
threads on every sample and falls seconds behind, and counts threads parked
in ``Queue.get`` as busy.  Against cheroot it also needs ``--nonblocking``
(pausing 1,000 threads per sample slows the server down): the stack is then
read a moment after the GIL holder is found, which biases samples towards
calls that release the GIL (socket writes, lock waits, ``os.urandom``);
read those shares as "around this call".  A granian worker runs its
Python on one event-loop thread (plus the WSGI bridge's pool for first
polls) and is sampled paused (``nonblocking=False``), without that bias.

Set ``BENCH_PYSPY_LINES=1`` to aggregate by line instead of by function.

Run it alone to summarise a raw file again::

    python -m bench.profile DIR/latency-granian-memory-1000.txt [--top 20]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """``py-spy record`` of a pid (and its subprocesses), raw format, from now until :meth:`finish`."""

    def __init__(self, pid: int, out: Path, rate: int = 100, subprocesses: bool = False, nonblocking: bool = True):
        binary = py_spy()
        self.out = out
        self.proc: subprocess.Popen | None = None
        if binary is None:
            print("profile: py-spy not found (pip install py-spy); not profiling", file=sys.stderr)
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        by_function = [] if os.environ.get("BENCH_PYSPY_LINES") else ["--function"]
        cmd = [binary, "record", "--pid", str(pid), "--format", "raw", "--output", str(out), *by_function,
               "--rate", str(rate), "--gil"] + (["--nonblocking"] if nonblocking else [])
        if subprocesses:
            cmd.append("--subprocesses")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)

    def finish(self, top: int = 12, summary: bool = True) -> str:
        """Stop py-spy (SIGINT: it writes its file); return the summary (also written beside it)."""
        if self.proc is None:
            return "(no profile: py-spy missing)"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            return f"(py-spy wrote no profile: {err.strip()[-300:]})"
        if not summary:
            return ""
        text = summarise(self.out, top)
        notes = [line.removeprefix("py-spy> ") for line in err.splitlines() if "Samples:" in line or "behind" in line]
        if notes:
            text += "\n  py-spy: " + "; ".join(notes[-2:])
        self.out.with_suffix(".summary.txt").write_text(text + "\n")
        return text


def frames_of(line: str) -> tuple[list[str], int] | None:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not stack or not count.isdigit():
        return None
    frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
    return frames, int(count)


def package_of(frame: str) -> str:
    found = FRAME.match(frame)
    path = found.group("file") if found else frame
    if path.startswith("<"):
        return "python"
    first = path.split("/")[0]
    if first.endswith(".py"):
        return "python stdlib" if "/" not in path else first
    return first


def label(frame: str) -> str:
    found = FRAME.match(frame)
    if not found:
        return frame
    return f"{found.group('func')} ({found.group('file')})"


def summarise(path: Path, top: int = 12) -> str:
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        parsed = frames_of(line)
        if parsed is None:
            continue
        frames, count = parsed
        if not frames:
            continue
        total += count
        leaf = label(frames[-1])
        self_counts[leaf] += count
        packages[package_of(frames[-1])] += count
        for name in {label(f) for f in frames}:
            inclusive[name] += count
    if not total:
        return f"profile {path.name}: no samples"
    lines = [f"profile {path.name}: {total} samples of busy threads"]
    lines.append("  self time by package: " + ", ".join(
        f"{name} {100 * n / total:.0f}%" for name, n in packages.most_common(8)))
    lines.append("  top functions by self time (on top of the stack):")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in self_counts.most_common(top)]
    lines.append("  top functions by inclusive time (anywhere in the stack; outer frames omitted):")
    boring = ("_bootstrap", "Thread.run", "Thread._bootstrap", "WorkerThread.run", "<module>", "main (",
              "_run_once (", "Handle._run", "run_forever (", "run_until_complete (", "_run_code (",
              # a granian worker is forked from the main process: its stack starts with the main's
              "AbstractWorker.", "AbstractServer.", "Popen.", "Popen._launch", "ForkProcess.", "BaseProcess.",
              "WorkerProcess.", "serve (longpoll/server/granian.py)", "run (longpoll/server/app.py)")
    shown = [(name, n) for name, n in inclusive.most_common() if not any(b in name for b in boring)][:top]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in shown]
    return "\n".join(lines)


def inclusive_shares(path: Path, patterns: list[str]) -> list[tuple[str, float]]:
    """Inclusive share of every function whose label contains one of the patterns."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        parsed = frames_of(line)
        if parsed is None or not parsed[0]:
            continue
        frames, count = parsed
        total += count
        for name in {label(f) for f in frames}:
            if any(p in name for p in patterns):
                inclusive[name] += count
    return [(name, n / total) for name, n in inclusive.most_common()] if total else []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("raw", nargs="+", type=Path, help="py-spy --format raw output files")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--grep", action="append", default=[], metavar="TEXT",
                    help="instead, print the inclusive share of functions whose name contains TEXT (repeatable)")
    args = ap.parse_args()
    for path in args.raw:
        if args.grep:
            print(f"{path.name}:")
            for name, share in inclusive_shares(path, args.grep):
                print(f"  {100 * share:5.1f}%  {name}")
        else:
            print(summarise(path, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
