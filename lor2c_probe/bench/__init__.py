"""The benchmark suite behind ``lor2c-probe bench``: the performance goals measured side by side, one JSON out.

    config.py   BenchConfig (what to measure, how often), the smoke preset
    shapes.py   the models benchmarked: the embedded MiniLM, random roberta-base / tiny configs
    harness.py  a real ``Trainer`` on a fixed random batch, with a chosen probe set
    timing.py   interleaved repetitions, medians, spreads, paired ratios
    steps.py    step time of every (method, probe set), probe overhead, LoR2C vs LoRA, recording volume
    spectra.py  factor-QR vs dense SVD; the spectral probe's cost at its default schedule
    memory.py   peak memory with all probes vs none, one child process per measurement
    suite.py    runs everything and evaluates the goals table
"""
