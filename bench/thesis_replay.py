"""Re-derive the paired comparison's verdicts (success, readable, realism) from the
trials' last checkpoints of one or more finished `jobs/thesis_comparison.py`
sweeps, without running anything: each trial's ``state.pt`` holds every
classifier's per-image results at every report. Prints one markdown row per
claim, objective, architecture and task, the sweeps side by side (in the
order given), with the verdicts, which is how docs/results.md's two-seed
table was made.

    python bench/thesis_replay.py STORAGE/tune/thesis-<id> [STORAGE/tune/thesis-<id> ...]
"""

import glob
import sys

SHORT = {"SGD inverts better than Adam (ch. 2)": "SGD > Adam (ch. 2)",
         "FGSM training makes Adam invert better (ch. 3)": "Adam + FGSM > Adam (ch. 3)",
         "VAE intermediate classes make Adam invert better (ch. 3)": "Adam + VAE > Adam (ch. 3)",
         "SGD inverts better without VAE intermediate classes (ch. 3)": "SGD > SGD + VAE (ch. 3)",
         "SGD softmax inverts better than the 3-D spherical prototype head (ch. 4)": "SGD > 3-D sphere head (ch. 4)",
         "SGD softmax inverts better than the 5-D hyperbolic prototype head (ch. 4)":
             "SGD > 5-D hyperbolic head (ch. 4)"}


def evidence(tune_dir: str) -> list:
    import torch

    from reconlab.studies.thesis.study import TrialEvidence
    from reconlab.studies.thesis.trial import ThesisTrialConfig

    out = []
    for trial in sorted(glob.glob(f"{tune_dir}/*/")):
        ckpts = sorted(glob.glob(f"{trial}checkpoint_*/state.pt"))
        if not ckpts:
            continue
        st = torch.load(ckpts[-1], weights_only=True)
        cfg = ThesisTrialConfig(**st["config"])
        if st["history"][-1]["step"] != cfg.steps:
            continue
        out += [TrialEvidence(cfg, h["step"], st["names"], h["hit"], h.get("readable"), h["realism"], st["task"], st)
                for h in st["history"]]
    return out


def main(dirs: list[str]) -> None:
    from reconlab.studies.thesis.study import verdicts

    runs, seeds = [], []
    for d in dirs:
        ev = evidence(d)
        seeds.append(f"seed {ev[0].config.seed}")
        rows = verdicts(ev, seed=ev[0].config.seed)
        runs.append({(r["claim"], r["objective"], r["arch"], r["task"]): r for r in rows})
    seeds = " / ".join(seeds)
    print(f"| claim | objective | arch | task | success A − B, {seeds} (points) | success verdicts | "
          f"readable A / B (%), {seeds} | readable A − B, {seeds} (points) | readable verdicts | "
          f"realism A − B, {seeds} | realism verdicts |\n|---|---|---|---|---|---|---|---|---|---|---|")

    def joined(rows, key):
        vs = [r[key] for r in rows]
        return vs[0] if len(set(vs)) == 1 else " / ".join(vs)

    for k in runs[0]:
        rows = [r[k] for r in runs if k in r]
        succ = " / ".join(f"{r['A − B (points)']:+.1f} {r['95% CI']}" for r in rows)
        rates = " ; ".join(r["readable A / B (%)"] for r in rows)
        read = " / ".join(f"{r['readable A − B (points)']:+.1f} {r['readable 95% CI']}" for r in rows)
        real = " / ".join(f"{r['realism A − B']:+.3f} {r['realism 95% CI']}" for r in rows)
        print(f"| {SHORT.get(k[0], k[0])} | {k[1]} | {k[2]} | {k[3][-1]} | {succ} | {joined(rows, 'verdict')} | "
              f"{rates} | {read} | {joined(rows, 'readable verdict')} | {real} | {joined(rows, 'realism verdict')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
