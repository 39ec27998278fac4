"""The banner a report shows above everything for each run that did not complete."""

from __future__ import annotations

from lor2c_probe.record.runs import RecordedRun


def run_warnings(runs: list[RecordedRun]) -> list[str]:
    """One sentence per run that did not complete: diverged, interrupted, failed, or stopped while ``running``."""
    from lor2c_probe.record.lock import holder

    out = []
    for r in runs:
        m, status = r.manifest, r.manifest.get("status")
        if status == "diverged":
            d = m.get("diverged") or {}
            out.append(f"Run {r.label} DIVERGED at step {d.get('step', '?')} (epoch {d.get('epoch', '?')}): the {d.get('what', 'loss')} "
                       "was not finite. Its tables stop at that step; it is not a trained model, and its results are not comparable.")
        elif status in ("interrupted", "failed"):
            i = m.get("interrupted") or m.get("failure") or {}
            out.append(f"Run {r.label} did not finish ({status} at step {i.get('step', '?')}: {i.get('reason', 'unknown reason')}); "
                       f"its tables are partial. Continue it with `lor2c-probe train --resume --out {r.path}`.")
        elif status == "running":
            h = holder(r.path)
            out.append(f"Run {r.label} is still training (pid {h.get('pid')} on {h.get('host')}); its tables are partial." if h else
                       f"Run {r.label} stopped without finishing (the process was killed); its tables are partial. "
                       f"Continue it with `lor2c-probe train --resume --out {r.path}`.")
    return out
