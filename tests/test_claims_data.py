"""Claims as data (patchbench.claims.load): every shipped paper's claims.yaml gives exactly the claims its Python
declarations gave (tests/data/shipped_claims.json, dumped from them before they moved: every field, each pick by
its text, its function and the arguments it closes over), and a claims file never runs code — an unknown pick,
an unknown key, a missing field or a python tag is refused with one error naming the file, the claim and the key."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from claims_dump import FIXTURE, shipped_claims

from patchbench.api import Pick, load_claims
from patchbench.claims.load import PICKS
from patchbench.claims.spec import PAIR_BY
from patchbench.errors import PatchbenchError
from patchbench.papers import PAPERS
from patchbench.plugins import load_plugin
from patchbench.registry import Registry

ONE = """claims:
  - id: lgs-beats-none
    statement: LGS leaves more accuracy than no defense
    source: Table 1
    paper_numbers: "60 px: 20.74 % vs 0.33 %"
    a:
      label: LGS
      where: {condition: attacked, attack: lavan, patch_px: {pick: largest_size, args: [lavan]}, defense: lgs,
              lam: {pick: nearest_lambda, args: [lgs, 2.3]}}
    b:
      label: no defense
      where: {condition: attacked, attack: lavan, patch_px: {pick: largest_size, args: [lavan]}, defense: none}
    presets: {demo: demo-fmnist}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str, **kw) -> str:
    with pytest.raises(PatchbenchError) as info:
        load_claims(write(tmp_path, text), **kw)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "claims.yaml") + ": ") and "\n" not in message
    return message


def test_the_shipped_papers_claims_files_give_the_claims_the_python_declarations_gave():
    before = json.loads(FIXTURE.read_text())
    now = shipped_claims()
    assert list(now) == list(before)  # the same papers, in order
    for paper, claims in before.items():
        assert [c["id"] for c in now[paper]] == [c["id"] for c in claims]
        for old, new in zip(claims, now[paper]):
            assert json.dumps(new, ensure_ascii=False) == json.dumps(old, ensure_ascii=False), (paper, old["id"])  # ints stay ints
    for paper in PAPERS.values():
        assert paper.claims == () or (paper.folder / "claims.yaml").is_file()
        for claim in paper.claims:
            assert isinstance(claim.pair_by, tuple) and all(isinstance(s.where, dict) for s in (claim.a, claim.b))


def test_a_claims_file_reads_every_field_and_builds_picks_by_name(tmp_path):
    text = ONE + """    direction: less
    margin: 0.05
    pair_by: [placement]
    explained: {demo: "scale: at 64 px the mask is speckle"}
"""
    (claim,) = load_claims(write(tmp_path, text))
    assert (claim.id, claim.direction, claim.margin, claim.pair_by) == ("lgs-beats-none", "less", 0.05, ("placement",))
    assert claim.explained == {"demo": "scale: at 64 px the mask is speckle"} and claim.presets == {"demo": "demo-fmnist"}
    assert list(claim.a.where) == ["condition", "attack", "patch_px", "defense", "lam"]  # the order the picks run in
    assert claim.a.where["lam"].text == "the lgs λ of the preset nearest 2.3"
    assert claim.a.where["patch_px"].text == "the preset's largest lavan size" and claim.a.metric == "correct"
    (default,) = load_claims(write(tmp_path, ONE))
    assert (default.direction, default.margin, default.pair_by, default.explained) == ("greater", 0.0, PAIR_BY, {})


def test_a_plugins_own_picks_join_the_whitelist_for_its_file_only(tmp_path):
    text = ONE.replace("{pick: largest_size, args: [lavan]}, defense: lgs", "{pick: side_of, args: [{pick: largest_size, args: [lavan]}]}, defense: lgs")
    with_size = lambda size: Pick(f"twice {size.text}", lambda p, c: 2 * size(p, c))  # noqa: E731
    (claim,) = load_claims(write(tmp_path, text), picks={"side_of": with_size})
    assert claim.a.where["patch_px"].text == "twice the preset's largest lavan size"
    assert "unknown pick 'side_of'" in refused(tmp_path, text)
    assert "side_of" not in PICKS


@pytest.mark.parametrize("change, named", [
    (("largest_size, args: [lavan]}, defense: lgs", "os.system, args: [lavan]}, defense: lgs"),
     "claim 'lgs-beats-none': a.where.patch_px: unknown pick 'os.system'"),
    (("    source: Table 1\n", ""), "claim 'lgs-beats-none': missing key source"),
    (("    source: Table 1\n", "    source: Table 1\n    sorce: Table 2\n"), "claim 'lgs-beats-none': unknown key sorce"),
    (("      label: no defense\n", "      label: no defense\n      metrics: loss\n"), "claim 'lgs-beats-none': unknown key b.metrics"),
    (("args: [lgs, 2.3]", "args: [lgs, 2.3], kwargs: {}"), "claim 'lgs-beats-none': unknown key a.where.lam.kwargs"),
    (("args: [lgs, 2.3]", "args: [lgs]"), "claim 'lgs-beats-none': a.where.lam: pick 'nearest_lambda' takes (defense, lam), got 1 argument(s)"),
    (("args: [lgs, 2.3]", "args: [lgs, [2.3]]"), "a.where.lam.args[1]: a value is a text"),
    (("args: [lgs, 2.3]", "args: [lgs, abc]"), "a.where.lam: pick 'nearest_lambda' cannot take ['lgs', 'abc']"),
    (("defense: none}", "defense: 2026-12-06}"), "claim 'lgs-beats-none': b.where.defense: a value is a text"),
    (("defense: none}", "defense: none, 7: x}"), "claim 'lgs-beats-none': b.where: a column is a name, got 7"),
    (("    presets: {demo: demo-fmnist}\n", "    presets: {demo: demo-fmnist}\n    direction: up\n"), "claim 'lgs-beats-none': direction must be"),
    (("  - id: lgs-beats-none\n", "  - ident: lgs-beats-none\n"), "claim 1 (no id): unknown key ident"),
])
def test_an_unknown_pick_key_or_a_missing_field_is_refused_naming_the_claim_and_the_key(tmp_path, change, named):
    assert ONE.count(change[0]) >= 1
    assert named in refused(tmp_path, ONE.replace(*change, 1))


def test_a_python_tag_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    for tag in ('!!python/object/apply:os.system ["touch MARKER"]', "!!python/name:os.system", '!!python/object/new:os.system ["touch MARKER"]'):
        for text in (f"{ONE}    explained: {{demo: {tag}}}\n", f"claims: {tag}\n"):
            message = refused(tmp_path, text)
            assert "not a valid claims file" in message and "python/" in message
            assert not marker.exists()
    assert os.listdir(tmp_path) == ["claims.yaml"]


def test_the_file_itself_is_checked(tmp_path):
    assert "claims must be a list of claims, got dict" in refused(tmp_path, "claims: {id: x}\n")
    assert "one key, claims; got the keys ['claim']" in refused(tmp_path, "claim: []\n")
    assert "one key, claims; got NoneType" in refused(tmp_path, "")
    assert "the id is taken" in refused(tmp_path, ONE + ONE.replace("claims:\n", ""))
    with pytest.raises(PatchbenchError, match="cannot read the claims file"):
        load_claims(tmp_path / "absent.yaml")


def test_a_plugin_with_a_broken_claims_file_is_refused_in_one_line_naming_it(tmp_path, monkeypatch):
    (tmp_path / "claims.yaml").write_text(ONE.replace("largest_size, args: [lavan]}, defense: lgs", "largest_sizes, args: [lavan]}, defense: lgs"))
    (tmp_path / "brokenclaims.py").write_text(
        "from pathlib import Path\nfrom patchbench.api import Paper, load_claims\n"
        "PAPER = Paper('broken', 'Broken', __name__, {'demo': ('demo-fmnist',)}, "
        "claims=load_claims(Path(__file__).with_name('claims.yaml')))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    papers = Registry("paper")
    with pytest.raises(PatchbenchError) as info:  # the CLI prints it as one `error:` line, exit 2 (tests/test_extending.py)
        load_plugin("brokenclaims", papers)
    assert str(info.value).startswith(f"plugin brokenclaims: {tmp_path / 'claims.yaml'}: claim 'lgs-beats-none': "
                                      "a.where.patch_px: unknown pick 'largest_sizes' (known: ")
    assert "broken" not in papers
