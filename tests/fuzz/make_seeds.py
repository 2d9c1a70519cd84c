"""Writes the seed corpora of the fuzzers (tests/fuzz/corpus/): the reference configs and
some broken ones, a few operator argument streams, and checkpoints of the small network the
checkpoint target loads them into. Run it after changing a format:
    python3 tests/fuzz/make_seeds.py"""

import glob
import os
import shutil
import tempfile

import brain
import brain.models

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def main():
    for path in sorted(glob.glob(os.path.join(REPO, "models", "*.json")) + glob.glob(os.path.join(REPO, "tests", "data", "*.json"))):
        write("config", "seed_" + os.path.basename(path), open(path, "rb").read())
    write("config", "seed_minimal.json", b'{"network": {"n_exc": 8, "n_inh": 2, "p": 0.5, "delay_ms": 0.3}}')
    write("config", "seed_jit.json", b'{"network": {"n_exc": 20, "n_inh": 5, "p": 0.2, "connectivity": "jit"}}')

    # ops: first byte even -> CSR, odd -> JIT; the rest drives shapes, flags and values.
    write("ops", "seed_csr_valid", bytes([0, 0b0001000, 3, 4, 1, 1, 1, 2, 1, 1, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7]))
    write("ops", "seed_csr_transpose_event", bytes([2, 0b0100011, 4, 4, 1, 2, 2, 1, 2, 0, 3, 1, 2, 3, 0, 1, 1, 2, 9, 9]))
    write("ops", "seed_jit_homo", bytes([1, 0b0000000, 2, 12, 9, 0, 0, 0, 7, 1, 3, 4]))
    write("ops", "seed_jit_normal", bytes([3, 0b0100110, 1, 20, 30, 1, 2, 3, 4, 2, 7, 6, 1, 0]))
    # bool events whose true bytes are not 1 (flag 128), scattered and gathered with a batch
    write("ops", "seed_csr_bool_bytes_scatter", bytes([2, 0b10100011, 4, 4, 1, 2, 2, 1, 2, 0, 3, 1, 2, 3, 0, 1, 1, 2, 9, 9]))
    write("ops", "seed_csr_bool_bytes_batch", bytes([0, 0b10110001, 3, 4, 1, 1, 1, 2, 1, 1, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7]))
    write("ops", "seed_jit_bool_bytes", bytes([3, 0b11100111, 1, 20, 30, 1, 2, 3, 4, 2, 7, 6, 1, 0]))

    # checkpoints of the network fuzz target 'checkpoint' builds (targets.h): mode byte 0 is
    # the raw file, 2 the payload (framed with a valid checksum by the target) loaded into it.
    net = brain.models.ei_network("coba", seed=1, n_exc=8, n_inh=2, p=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "run.ckpt")
        runner = brain.models.Runner(net, monitors=["E.V"], progress=False, checkpoint=ckpt, checkpoint_every=10)
        runner.run_steps(20)
        data = open(ckpt, "rb").read()
        runner.save_checkpoint(ckpt)
        between = open(ckpt, "rb").read()
    write("checkpoint", "seed_run_raw", b"\x00" + data)
    write("checkpoint", "seed_run_payload", b"\x02" + data[24:-16])
    write("checkpoint", "seed_between_payload", b"\x01" + between[24:-16])


if __name__ == "__main__":
    main()
