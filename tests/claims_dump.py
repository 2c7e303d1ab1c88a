"""Every shipped paper's claims as plain data, field by field: a pick as its text, the function it runs
(qualified name) and the values that function closes over (its arguments, a nested pick recursively).

``python tests/claims_dump.py`` writes tests/data/shipped_claims.json; it was written from the claims as
they were declared in Python, before they moved to each paper's claims.yaml, and tests/test_claims_data.py
holds the YAML loader's claims to it."""

from __future__ import annotations

import json
from pathlib import Path

from patchbench.claims.spec import Pick

FIXTURE = Path(__file__).parent / "data" / "shipped_claims.json"


def value_data(value):
    if isinstance(value, Pick):
        fn = value.value
        closure = dict(zip(fn.__code__.co_freevars, (cell.cell_contents for cell in fn.__closure__ or ())))
        return {"pick": value.text, "fn": fn.__qualname__, "closure": {k: value_data(v) for k, v in sorted(closure.items())}}
    if callable(value):
        return {"fn": value.__qualname__}
    return value


def side_data(side) -> dict:
    return {"label": side.label, "metric": side.metric, "where": [[k, value_data(v)] for k, v in side.where.items()]}


def claim_data(claim) -> dict:
    return {"id": claim.id, "statement": claim.statement, "source": claim.source, "paper_numbers": claim.paper_numbers,
            "a": side_data(claim.a), "b": side_data(claim.b), "presets": list(claim.presets.items()),
            "direction": claim.direction, "margin": claim.margin, "pair_by": list(claim.pair_by),
            "explained": list(claim.explained.items())}


def shipped_claims() -> dict:
    from patchbench.papers import PAPERS  # reason: the registry imports every paper (torch); only when dumping

    return {name: [claim_data(c) for c in paper.claims] for name, paper in PAPERS.items() if paper.claims}


if __name__ == "__main__":
    papers = shipped_claims()  # one claim a line: a change shows as the claims it touches
    FIXTURE.write_text("{\n" + ",\n".join(json.dumps(name) + ": [\n" + ",\n".join(
        json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in claims) + "\n]" for name, claims in papers.items()) + "\n}\n")
    print(FIXTURE, FIXTURE.stat().st_size)
