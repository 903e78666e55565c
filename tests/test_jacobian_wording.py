"""The report names how the optimiser's Jacobian was computed, including for dosed data (whose
rows always go the exact way, with forward sensitivities)."""

from types import SimpleNamespace

from progression.fit._multistart import jacobian_method


def _problem(**kw):
    base = {"exact": False, "solver": {"sensitivities": "grid"}, "has_inputs": False,
            "all_inputs": False}
    return SimpleNamespace(**{**base, **kw})


def test_grid_path():
    assert jacobian_method(_problem()) == "Jacobian from sensitivities on the output grid"


def test_every_subject_dosed_is_forward():
    assert jacobian_method(_problem(has_inputs=True, all_inputs=True)) == \
        "Jacobian from forward sensitivities"


def test_some_subjects_dosed_says_both():
    text = jacobian_method(_problem(has_inputs=True))
    assert "output grid" in text and "forward sensitivities for rows with doses" in text


def test_exact_and_forward():
    assert jacobian_method(_problem(exact=True)) == "Jacobian from forward sensitivities"
    assert jacobian_method(_problem(solver={"sensitivities": "forward"})) == \
        "Jacobian from forward sensitivities"
