"""negd.analysis.stored: verdicts of stored results (schema 1) and the computed block of paper-scale.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from negd.analysis.stored import paper_scale_block, stored_numbers, stored_verdict

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def test_paper_scale_verdicts_from_the_stored_numbers():
    """Finite beta: Delta_c/param_change = -0.35 +- 0.20 (R = 100): unresolved, ~6,400 realizations would
    resolve it; deep: loss gap -42% +- 17% (8 realizations): its 2-SE band stays above 5%, weakens."""
    beta = stored_numbers(RESULTS / "paper-finite-beta")
    v = stored_verdict(beta)
    assert v.label == "unresolved" and 6000 < v.realizations_needed < 7000
    assert beta["loss_gap"] > 0 and beta["acceptance_last"] == (0.976, 0.00092, 0.9647)
    assert stored_verdict(stored_numbers(RESULTS / "paper-deep")).label == "weakens"
    assert stored_numbers(RESULTS / "paper-deep")["loss_gap"] == pytest.approx(-0.4195, abs=1e-4)
    assert stored_verdict(stored_numbers(RESULTS / "paper-shallow")).label == "holds"


def test_paper_scale_document_holds_the_computed_block():
    text = (RESULTS / "paper-scale.md").read_text()
    block = paper_scale_block(RESULTS)
    assert block in text
    assert "c is still below 0.1 (c first exceeds 0.1 at t = 5" in block and "where c peaks" not in text
