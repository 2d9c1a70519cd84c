"""A written model of distributed COBA time per simulated second at 8, 64 and 512 GPUs (issue
13): compute from the single-GPU figure, spike exchange from NCCL all-gather latency and
bandwidth. Every input is a named assumption below; replace them with measurements as they
come (bench/dist/dist_bench.py measures the exchange on CPUs; no GPU has been lent yet).

    python3 bench/dist/scaling_model.py     # prints the markdown table of bench/README.md
"""

STEPS_PER_S = 10_000          # dt = 0.1 ms
RATE_HZ = 20.0                # COBA's mean rate
BYTES_PER_SPIKE = 4           # int32 global index (bit masks only win above ~3% firing per step)
# One-GPU compute, seconds per simulated second: libbrain's targets in ANCHORS.md (4M <= 1.0;
# 50M at <= 15), not yet measured.
T1 = {"4M": 1.0, "50M": 15.0}
NEURONS = {"4M": 4e6, "50M": 5e7}
# Each rank visits the row of every presynaptic spike of the network (its own columns of it):
# a per-spike cost that does not shrink with P. Assumed 1 ns per spike-row on an H100.
ROW_NS = 1.0
# NCCL all-gather: small-message latency and bus bandwidth (NCCL-tests on H100 systems:
# NVLink within a node of 8, 400 Gb/s InfiniBand per GPU between nodes).
ALPHA_S = {8: 15e-6, 64: 40e-6, 512: 150e-6}
BUS_GBPS = {8: 350.0, 64: 45.0, 512: 45.0}


def model(net, gpus, window):
    n = NEURONS[net]
    spikes = n * RATE_HZ  # per simulated second, all ranks together
    compute = T1[net] / gpus + spikes * ROW_NS * 1e-9
    latency = STEPS_PER_S / window * ALPHA_S[gpus]
    volume = spikes * BYTES_PER_SPIKE / (BUS_GBPS[gpus] * 1e9)  # every rank receives every spike
    return compute, latency, volume


def main():
    print("| network | GPUs | window | compute | exchange latency | exchange volume | total s / sim s |")
    print("|---|---|---|---|---|---|---|")
    for net in ("4M", "50M"):
        for gpus in (8, 64, 512):
            for window in (1, 15):
                c, l, v = model(net, gpus, window)
                print(f"| {net} | {gpus} | {window} step{'s' if window > 1 else ''} | {c:.3f} | {l:.3f} | {v:.4f} | {c + l + v:.3f} |")


if __name__ == "__main__":
    main()
