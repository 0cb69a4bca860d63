"""What ``av-td3 validate`` prints: a run's report, its one-line verdict, the exit status, JSON."""

from __future__ import annotations

from av_td3.analysis.validate.checks import FAIL, PASS, SKIP, WARN, RunReport

# --- output -------------------------------------------------------------------------------------------------
def format_report(r: RunReport) -> str:
    if r.verdict == "ERROR":
        return f"{r.path}\n  ERROR {r.error}"
    if r.verdict == "SKIP":
        return "\n".join([r.path, *(f"  ({n})" for n in r.notes), "  => SKIP"])
    lines = [r.path] + [f"  ({n})" for n in r.notes]
    width = max((len(c.name) for c in r.checks), default=0)
    lines += [f"  {c.status.upper():5s} {c.name:{width}s}  {c.message}" for c in r.checks]
    counts = {s: sum(c.status == s for c in r.checks) for s in (PASS, WARN, FAIL, SKIP)}
    tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines.append(f"  => {r.verdict} ({len(r.checks)} checks: {tally})")
    return "\n".join(lines)


def verdict_line(r: RunReport) -> str:
    if r.verdict == "ERROR":
        return f"ERROR  {r.path}  ({r.error})"
    if r.verdict == "SKIP":
        return f"SKIP   {r.path}  ({r.notes[0] if r.notes else 'not validated'})"
    first = next((c for c in r.checks if c.status == FAIL), None) or next(
        (c for c in r.checks if c.status == WARN), None)
    extra = (f", first {'failure' if first.status == FAIL else 'warning'}: {first.name}: {first.message}"
             if first else "")
    return f"{r.verdict:5s}  {r.path}  ({len(r.checks)} checks{extra})"


def exit_code(reports: list[RunReport]) -> int:
    if any(r.verdict == "ERROR" for r in reports):
        return 2
    return 1 if any(r.verdict == "FAIL" for r in reports) else 0
