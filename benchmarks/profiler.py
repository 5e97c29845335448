"""The one profiler: where a fit's time and memory go (cProfile of the fit, RSS of each phase).

As in ``speed.py``'s workers, scanpy is imported and TensorFlow started before anything is measured, so the first
row is what the libraries take whatever the data and the fit's profile shows its own costs (the first model of a
process: graph tracing included). Phases: load, fit (cProfile'd unless ``--no-cprofile``; RSS sampled every
20 ms), predict. Prints a table of wall time and RSS per phase, then the ``--top`` cProfile entries.

Data: ``--data speed:<cells>`` (the masked simulated cells of ``speed.py``, written on first use), or any name of
``_common.load_dataset`` (``pbmc4k_2100``, ``sim_2000x500``, ...).

Run: ``python benchmarks/profiler.py [--data speed:10000] [--top 45] [--max-epochs N] [--no-cprofile]``
(the memory table of 50k cells with 3 epochs, as ``memory_50k.py`` gave it:
``python benchmarks/profiler.py --data speed:50000 --max-epochs 3 --no-cprofile --top 0``).
``--quick``: a 300-cell simulation, one epoch (the CI smoke test).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _common as C  # noqa: E402


def load(name: str):
    if name.startswith("speed:"):
        return C.masked_speed_data(int(name.split(":", 1)[1]), 3200)[0]
    return C.load_dataset(name)[0].X


def main(argv=None) -> int:
    p = C.parser(__doc__)
    p.add_argument("--data", default="speed:10000")
    p.add_argument("--top", type=int, default=45, help="cProfile entries to print (0: none)")
    p.add_argument("--sort", default="cumulative", help="pstats sort key (cumulative, tottime, ...)")
    p.add_argument("--max-epochs", type=int, default=None, help="a fixed-length fit (patience disabled)")
    p.add_argument("--no-cprofile", action="store_true", help="time and memory only (no profiler overhead)")
    args = p.parse_args(argv)
    if args.quick:
        args.data, args.max_epochs, args.top = "sim_300x200", 1, min(args.top, 15)
    C.quiet()
    rss = C.RssSampler(interval=0.02)
    tf, _ = C.import_keras()
    tf.zeros(1)  # start the runtime, so that its memory is not counted as the fit's

    import scdeepimpute as sdi

    rows = [["scanpy + TensorFlow started, no data", "", f"{rss.peak():.0f}", f"{rss.now():.0f}"]]

    def phase(label, fn):
        rss.reset()
        t0 = time.perf_counter()
        out = fn()
        rows.append([label, f"{time.perf_counter() - t0:.2f}", f"{rss.peak():.0f}", f"{rss.now():.0f}"])
        return out

    X = phase(f"load {args.data}", lambda: load(args.data))
    fixed = {} if args.max_epochs is None else {"max_epochs": args.max_epochs, "patience": 10**6}
    model = sdi.DeepImpute(random_state=0, **fixed)
    profile = None if args.no_cprofile else cProfile.Profile()

    def fit():
        if profile is not None:
            profile.enable()
        model.fit(X, progress=False)
        if profile is not None:
            profile.disable()

    phase("fit" + ("" if profile is None else " (cProfile'd)"), fit)
    out = phase("predict", lambda: model.predict(X))
    rows[-1][0] += f" ({out.nbytes / 2**20:.0f} MB output)"
    print(
        f"\n{X.shape[0]} cells x {X.shape[1]} genes, {model.history_.stopped_epoch} epochs, "
        f"{len(model.targets_)} targets\n"
    )
    print(C.markdown_table(["phase", "wall s", "peak RSS MB", "RSS after MB"], rows))
    if profile is not None and args.top > 0:
        print()
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
