"""Where the memory goes: RSS (sampled every 50 ms) while loading, fitting (3 epochs) and predicting 50k x 3200 cells.

Uses the simulated 50k-cell cache of ``benchmarks/speed.py`` (run that first). Run: ``python benchmarks/memory_50k.py``
"""
import os
import threading
import time

import numpy as np
import psutil
from scipy import sparse

import scdeepimpute as sdi

proc = psutil.Process(os.getpid()); peak = [0]; stop = False
def watch():
    while not stop:
        peak[0] = max(peak[0], proc.memory_info().rss); time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
mb = lambda: proc.memory_info().rss / 2**20
X = sparse.load_npz('/tmp/scdeepimpute_bench/sim_3200g_50000c.npz').tocsr().astype(np.float32)
print(f'X CSR {(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)/2**20:.0f} MB; rss after load {mb():.0f} MB')
import tensorflow as tf; tf.zeros(1); print(f'rss after TF start {mb():.0f}'); peak[0] = 0
m = sdi.DeepImpute(max_epochs=3, patience=10**6).fit(X, progress=False)
print(f'fit (3 epochs): peak {peak[0]/2**20:.0f} MB, rss after {mb():.0f}'); peak[0] = 0
out = m.predict(X)
print(f'predict: peak {peak[0]/2**20:.0f} MB, rss after {mb():.0f}; output {out.nbytes/2**20:.0f} MB')
