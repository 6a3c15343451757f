"""Figure helpers of the experiments."""
import numpy as np
import pytest

from experiments._lib import figures
from jaxnets import data


def _batch(shape, dtype=np.uint8):
    return np.random.default_rng(0).integers(0, 256, size=shape).astype(dtype)


def test_show_transforms_figure(tmp_path):
    x = _batch((6, 28, 28), dtype=np.uint8)
    fig = figures.show_transforms(x, data.ood_test_sets(x), n=4, labels=[0, 1, 2, 3],
                               class_names=[str(i) for i in range(10)], path=tmp_path / "f" / "ood.png",
                               title="OOD")
    assert (tmp_path / "f" / "ood.png").stat().st_size > 1000
    assert len(fig.axes) == 5 * 4
    rgb = figures.image_grid(np.random.default_rng(0).normal(size=(7, 32, 32, 3)), ncols=4,
                          path=tmp_path / "grid.png")
    assert len(rgb.axes) == 8 and (tmp_path / "grid.png").is_file()


def _saved_axes(monkeypatch):
    """Keep the figures figures.save writes (it closes them) to inspect their text."""
    import matplotlib.pyplot as plt
    kept = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    return kept


@pytest.mark.parametrize("mode, tag", [("quick", "[quick run] "), ("tiny", "[tiny run] "), ("full", "")])
def test_quick_figures_say_so_in_their_title(tmp_path, monkeypatch, mode, tag):
    kept = _saved_axes(monkeypatch)
    with figures.run_mode(mode):
        figures.curves({"training loss": [3, 2, 1]}, tmp_path / "c.png", ylabel="loss", title="E9 loss")
    assert kept[-1].axes[0].get_title() == f"{tag}E9 loss"
    assert figures._MODE["mode"] == "full"  # restored


def test_curves_have_integer_epoch_ticks_wrapped_titles_and_styles(tmp_path, monkeypatch):
    kept = _saved_axes(monkeypatch)
    title = "E9 a long title " * 8
    figures.curves({"a": [0.5, 0.6, 0.7, 0.8]}, tmp_path / "c.png", title=title, styles={"a": {"ls": "--"}},
                   marks={"stop": 2, "best": 3})
    ax = kept[-1].axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert all(len(line) <= 64 for line in ax.get_title().split("\n")) and "\n" in ax.get_title()
    assert ax.lines[0].get_linestyle() == "--"
    # two marks: two different line styles and colours
    m1, m2 = ax.lines[1], ax.lines[2]
    assert m1.get_linestyle() != m2.get_linestyle() and m1.get_color() != m2.get_color()


def test_train_test_curves_one_colour_per_configuration(tmp_path, monkeypatch):
    kept = _saved_axes(monkeypatch)
    figures.train_test_curves({"(a) sigmoid 256": {"train": [0.5, 0.7], "test": [0.4, 0.6]},
                               "(b) relu 256": {"train": [0.6, 0.8], "test": [0.5, 0.7]}},
                              tmp_path / "tt.png", ylabel="accuracy", title="E9")
    ax = kept[-1].axes[0]
    (a_tr, a_te, b_tr, b_te) = ax.lines
    assert a_tr.get_color() == a_te.get_color() != b_tr.get_color() == b_te.get_color()
    assert (a_tr.get_linestyle(), a_te.get_linestyle()) == ("-", "--")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["(a) sigmoid 256", "(b) relu 256", "train", "test"]
    assert not any("_" in lab for lab in labels)  # no raw record keys such as train_loss


def test_figures_are_written_atomically(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    path = tmp_path / "f.png"
    path.write_bytes(b"old figure")
    fig, ax = plt.subplots()

    def broken(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(KeyboardInterrupt):
        figures.save(fig, path)
    assert path.read_bytes() == b"old figure" and [p.name for p in tmp_path.iterdir()] == ["f.png"]
    fig2, ax2 = plt.subplots()
    ax2.plot([1, 2])
    figures.save(fig2, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
