"""Wang (2002)'s decision-making network: two-choice trials over a coherence sweep, all trials
of the sweep simulated together as one batch. Psychometric curve (fraction of trials in which
the favoured pool A wins), chronometric curve (decision time: the first time a pool's rate,
averaged over 50 ms, crosses 15 Hz after stimulus onset, as in Wang 2002) and the pools' rates
in example trials.

    python3 bench/paper/decision_making.py [--quick] [--trials N]
"""

import time

import torch

import brain
from common import Experiment, parser, pyplot

THRESHOLD_HZ = 15.0
WINDOW_MS = 50.0


def decisions(rates, dt, stim_on):
    """rates [T, trials, 4] -> (choice A? [trials] bool, decision time after onset in ms or nan)."""
    w = int(round(WINDOW_MS / dt))
    # Moving average by differences of a cumulative sum: O(T) memory (conv1d unfolds the
    # windows: 33 GB for 336 trials of 1.3 s).
    ab = rates[:, :, :2].double().permute(1, 2, 0)  # [trials, 2, T]
    c = torch.nn.functional.pad(ab.cumsum(-1), (1, 0))
    smooth = (c[..., w:] - c[..., :-w]) / w  # [trials, 2, T - w + 1]: windows ending at step w-1+k
    start = max(0, int(round(stim_on / dt)) - (w - 1))
    above = smooth[:, :, start:] > THRESHOLD_HZ
    steps = torch.arange(above.shape[-1]).expand_as(above)
    first = torch.where(above, steps, torch.full_like(steps, 1 << 40)).min(-1).values  # [trials, 2]
    crossed = first.min(-1).values < (1 << 40)
    chose_a = torch.where(crossed, first[:, 0] <= first[:, 1], smooth[:, 0, -1] > smooth[:, 1, -1])
    t_cross = (first.min(-1).values + start + w - 1) * dt - stim_on
    return chose_a, torch.where(crossed, t_cross.double(), torch.full_like(t_cross, float("nan"), dtype=torch.float64))


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--trials", type=int, default=None, help="trials per coherence")
    args = p.parse_args(argv)
    exp = Experiment("decision_making", args)
    # The network starts at rest and its spontaneous state builds up over ~300 ms (NMDA): the
    # full run lets it settle before the stimulus; the quick one does not wait.
    if args.quick:
        coherences, trials, scale, stim_on, stim_off = [0.0, 6.4, 12.8, 25.6, 51.2], args.trials or 6, 0.5, 100.0, 700.0
    else:
        coherences, trials, scale, stim_on, stim_off = [0.0, 3.2, 6.4, 12.8, 25.6, 51.2, 100.0], args.trials or 24, \
            1.0, 300.0, 1300.0
    duration = stim_off
    batch = [c for c in coherences for _ in range(trials)]
    dt = 0.1
    net = brain.models.decision_network(coherence=batch, scale=scale, stim_on=stim_on, stim_off=stim_off, seed=7,
                                        device=args.device)
    t0 = time.time()
    out = brain.models.Runner(net, dt=dt, monitors=["rates.rate"], progress=None).run(duration)
    wall = time.time() - t0
    rates = out["rates.rate"].cpu()  # [T, trials, 4]
    chose_a, rt = decisions(rates, dt, stim_on)
    acc, rt_mean, rt_sem = [], [], []
    for k, c in enumerate(coherences):
        sl = slice(k * trials, (k + 1) * trials)
        acc.append(float(chose_a[sl].double().mean()))
        correct_rt = rt[sl][chose_a[sl] & ~rt[sl].isnan()]
        rt_mean.append(float(correct_rt.mean()) if len(correct_rt) else float("nan"))
        rt_sem.append(float(correct_rt.std() / len(correct_rt) ** 0.5) if len(correct_rt) > 1 else float("nan"))

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    xs = [max(c, 1.0) for c in coherences]  # 0% drawn at 1% on the log axis
    axes[0].semilogx(xs, [100 * a for a in acc], "ko-")
    axes[0].axhline(50, color="grey", lw=0.8, ls="--")
    axes[0].set(xlabel="coherence (%) (0 drawn at 1)", ylabel="% choices of A", ylim=(0, 105),
                title="psychometric curve")
    axes[1].errorbar(xs, rt_mean, yerr=rt_sem, fmt="ko-")
    axes[1].set_xscale("log")
    axes[1].set(xlabel="coherence (%)", ylabel="decision time (ms)", title="chronometric curve (correct trials)")
    t = torch.arange(rates.shape[0]) * dt
    for k, c in enumerate([coherences[0], coherences[-1]]):
        i = coherences.index(c) * trials
        w = int(WINDOW_MS / dt)
        sm = torch.nn.functional.avg_pool1d(rates[:, i, :2].T.unsqueeze(0).double(), w, 1).squeeze(0)
        ls = "-" if k else ":"
        axes[2].plot(t[w - 1:], sm[0], color="tab:red", ls=ls, label=f"A, c = {c:g}%")
        axes[2].plot(t[w - 1:], sm[1], color="tab:blue", ls=ls, label=f"B, c = {c:g}%")
    axes[2].axvspan(stim_on, stim_off, color="0.92")
    axes[2].axhline(THRESHOLD_HZ, color="grey", lw=0.8, ls="--")
    axes[2].set(xlabel="time (ms)", ylabel="rate (Hz, 50 ms window)", title="selective pools, one trial each")
    axes[2].legend(fontsize=7)
    n_neurons = int(round(2000 * scale))
    fig.suptitle(f"Wang (2002) decision making: {n_neurons} LIF neurons, {len(batch)} trials in one batch")
    data = {"coherence_percent": coherences, "trials_per_coherence": trials, "neurons": n_neurons,
            "duration_ms": duration, "stimulus_ms": [stim_on, stim_off], "accuracy": acc,
            "decision_time_ms": rt_mean, "decision_time_sem_ms": rt_sem, "simulation_seconds": wall,
            "seconds_per_trial_second": wall / (len(batch) * duration / 1000.0)}
    claims = {"accuracy rises with coherence (strongest above 0%)": acc[-1] > acc[0] and acc[-1] >= 0.8,
              "chance level at 0% coherence (within 3 standard errors)":
                  abs(acc[0] - 0.5) <= 3 * (0.25 / trials) ** 0.5,
              "decisions are faster at the strongest coherence than at the weakest non-zero one":
                  rt_mean[-1] < rt_mean[1]}
    return exp.save(fig, data, claims, "Wang 2002 decision making: psychometric and chronometric curves")


if __name__ == "__main__":
    main()
