"""E5's rows say what each method's settings are (doc 003 fixes only Algorithms 1 and 2) and what
the mini CNN's learned filter is, from the study's own numbers (a mirrored filter is a worse local
minimum, never "an equally good fit")."""
import pytest

from experiments import e5_perceptron as e5


@pytest.mark.parametrize("cos,acc,teacher,says", [
    (-0.97, 0.93, 1.0, "a worse local minimum (test accuracy 0.930, the teacher's filter 1.000)"),
    (0.99, 0.998, 1.0, "the teacher's direction (test accuracy 0.998, the teacher's 1.000)")])
def test_the_filter_note_follows_the_study(cos, acc, teacher, says):
    note = e5.filter_note({"filter_cosine_to_teacher": cos, "test_acc": acc, "teacher_test_acc": teacher})
    assert says in note and "equally good" not in note


def test_every_method_row_has_a_note_naming_its_settings():
    assert set(e5.METHOD_NOTES) == {"perceptron", *(f"kernel {k}" for k in e5.KERNELS), "mlp 784-128-10"}
    assert "γ = 0.05" in e5.METHOD_NOTES["kernel poly"] and str(e5.KERNELS["poly"]["gamma"]) in "0.05"
    assert "γ = 0.02" in e5.METHOD_NOTES["kernel rbf"] and e5.KERNELS["rbf"]["gamma"] == 0.02
    assert "test split" in e5.METHOD_NOTES["kernel poly"]     # chosen on it: said
