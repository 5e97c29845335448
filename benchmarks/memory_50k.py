"""Where the memory goes: RSS (sampled every 50 ms) while loading, fitting (3 epochs) and predicting 50k x 3200 cells.

The first line is the process with scanpy imported and TensorFlow started, before any data: the part of every
figure that the libraries take, whatever the data (as in ``speed.py``'s workers, which import both before timing).

Uses the simulated 50k-cell cache of ``benchmarks/speed.py`` (run that first).
Run: ``python benchmarks/memory_50k.py [--chunk-rows N] [--eval-rows M]`` (rows per training chunk and per
validation call; default the package's)
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import scanpy  # noqa: F401
from scipy import sparse

import scdeepimpute as sdi
import scdeepimpute._training as training
from scdeepimpute._backend import import_keras

sys.path.insert(0, str(Path(__file__).parent))
import _common as C  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--chunk-rows", type=int, default=training.CHUNK_ROWS)
parser.add_argument("--eval-rows", type=int, default=training.EVAL_ROWS)
args = parser.parse_args()
training.CHUNK_ROWS, training.EVAL_ROWS = args.chunk_rows, args.eval_rows
rss = C.RssSampler(interval=0.05)

tf, _ = import_keras()
tf.zeros(1)  # start the runtime, so that its memory is not counted as the fit's
print(f"rss with scanpy imported and TensorFlow started, no data: {rss.now():.0f} MB")

X = sparse.load_npz(C.speed_data_path(50000, 3200)).tocsr().astype(np.float32)
print(f"chunk rows {training.CHUNK_ROWS}, validation rows {training.EVAL_ROWS}")
print(f"X CSR {(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**20:.0f} MB; rss after load {rss.now():.0f} MB")
rss.reset()
m = sdi.DeepImpute(max_epochs=3, patience=10**6).fit(X, progress=False)
print(f"fit (3 epochs): peak {rss.peak():.0f} MB, rss after {rss.now():.0f}")
rss.reset()
out = m.predict(X)
print(f"predict: peak {rss.peak():.0f} MB, rss after {rss.now():.0f}; output {out.nbytes / 2**20:.0f} MB")
