"""A continuous attractor network tracking a moving stimulus (BrainPy's CANN1D smooth-tracking
figure, Wu, Hamaguchi & Amari 2008): a bump of activity on a ring of neurons follows a
stimulus that moves by 1.5 pi, then stays where the stimulus left it once it is removed.

    python3 bench/paper/cann.py [--quick]
"""

import math

import torch

import brain
from common import Experiment, parser, pyplot


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    exp = Experiment("cann", args)
    m = brain.models
    n = 128 if args.quick else 512
    dt = 0.1
    c = m.CANN1D(n, k=8.1, device=args.device)
    c.reset_state()
    # Still for 10 ms, moving for 20 ms, still for 20 ms, then no stimulus for 30 ms.
    phases = [torch.zeros(100), torch.linspace(0, 1.5 * math.pi, 200), torch.full((200,), 1.5 * math.pi)]
    pos = torch.cat(phases).double()
    drive = torch.cat([c.stimulus(pos.to(args.device)), torch.zeros(300, n, dtype=torch.float64, device=args.device)])
    runner = m.Runner(c, dt=dt, monitors=["u"], inputs=[{"path": "input_u", "value": drive, "per_step": True,
                                                         "add": False}], progress=False)
    u = runner.run(len(drive) * dt)["u"].double().cpu()
    t = torch.arange(len(drive)) * dt
    decoded = c.decode(u.to(args.device)).cpu()
    target = torch.cat([pos, torch.full((300,), 1.5 * math.pi, dtype=torch.float64)])
    error = c.ring_distance((decoded - target).to(args.device)).abs().cpu()
    moving = slice(100, 300)
    after = slice(500, 800)
    peak = u.max(1).values

    plt = pyplot()
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    x = c.features().cpu()
    # Each time step scaled to its peak: the free bump is ~40x smaller than the driven one.
    a0.imshow((u / u.abs().max(1, keepdim=True).values.clamp_min(1e-12)).T.numpy(), aspect="auto", origin="lower", cmap="viridis",
              extent=[0, float(t[-1]), float(x[0]), float(x[-1])])
    wrap = lambda z: (z + math.pi) % (2 * math.pi) - math.pi  # noqa: E731
    a0.plot(t[:500:4], wrap(pos)[::4], "w.", ms=2, label="stimulus position")
    a0.plot(t, decoded, "r.", ms=1.5, label="decoded bump position")
    a0.axvline(50, color="w", lw=0.8)
    a0.set_ylabel("feature (rad); u / max u")
    a0.legend(loc="upper left", fontsize=8)
    a0.set_title(f"CANN1D ({n} neurons): bump tracks a moving stimulus, then persists without it")
    a1.plot(t, error, color="k")
    a1.set_yscale("log")
    a1.set_ylabel("|bump - stimulus| (rad)")
    a1.set_xlabel("time (ms)")
    data = {"neurons": n, "dt_ms": dt, "max_error_while_moving_rad": float(error[moving].max()),
            "stimulus_speed_rad_per_ms": 1.5 * math.pi / 20.0, "final_error_with_stimulus_rad": float(error[499]),
            "max_error_after_removal_rad": float(error[after].max()), "bump_peak_after_removal": float(peak[-1])}
    claims = {"the bump follows the moving stimulus within 0.3 rad": data["max_error_while_moving_rad"] < 0.3,
              "it catches up within 1e-3 rad once the stimulus stops": data["final_error_with_stimulus_rad"] < 1e-3,
              "without input the bump stays put (an attractor)": data["max_error_after_removal_rad"] < 1e-2
              and data["bump_peak_after_removal"] > 0.05}
    return exp.save(fig, data, claims, "CANN tracking a moving stimulus")


if __name__ == "__main__":
    main()
