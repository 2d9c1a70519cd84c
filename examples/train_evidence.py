"""Train a recurrent spiking network on the evidence-accumulation task: left and right cue
spikes, a delay, then a recall period in which the network reports the side that had more
cues. Trained by BPTT with surrogate gradients (the C++ loop, brain.models.bptt_fit), with
memory-bounded BPTT on request.

    python3 examples/train_evidence.py [--epochs 10] [--hidden 128] [--delay 10] [--recompute-chunk 0]
"""

import argparse

import brain


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--delay", type=int, default=10, help="steps between the last cue and the recall")
    ap.add_argument("--tau", type=float, default=20.0, help="membrane time constant (ms, dt = 1 ms)")
    ap.add_argument("--recompute-chunk", type=int, default=0, help="memory-bounded BPTT: steps per chunk")
    args = ap.parse_args(argv)

    train = brain.models.evidence_accumulation(768, seed=1, delay_steps=args.delay)
    test = brain.models.evidence_accumulation(256, seed=2, delay_steps=args.delay)
    steps = train["inputs"].shape[1]
    recall = steps - train["recall_start"]
    print(f"{steps} steps per trial, recall over the last {recall}; inputs {tuple(train['inputs'].shape)}")
    net = brain.models.SpikingNet(n_in=train["inputs"].shape[2], n_hidden=args.hidden, n_out=2, recurrent=True,
                                  tau=args.tau, seed=0)
    history = brain.models.bptt_fit(net, train["inputs"], train["labels"], lr=1e-2, loss=f"ce_last_{recall}",
                                    epochs=args.epochs, batch_size=32, eval_inputs=test["inputs"],
                                    eval_targets=test["labels"], decision_last_steps=recall,
                                    recompute_chunk=args.recompute_chunk)
    print(f"test accuracy {100 * history[-1]['eval_accuracy']:.1f}%")
    return history


if __name__ == "__main__":
    main()
