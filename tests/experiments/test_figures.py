"""Figure helpers of the experiments."""
import os

import matplotlib.pyplot as plt
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
    assert figures.current_mode() == "full"  # restored
    figures.curves({"training loss": [3, 2, 1]}, tmp_path / "c.png", title="E9 loss", mode=mode)  # passed
    assert kept[-1].axes[0].get_title() == f"{tag}E9 loss"


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


def test_run_mode_is_restored_after_an_error_and_refuses_unknown_modes():
    with pytest.raises(RuntimeError):
        with figures.run_mode("tiny"):
            assert figures.current_mode() == "tiny"
            raise RuntimeError
    assert figures.current_mode() == "full" and figures.current_mode("quick") == "quick"
    assert not hasattr(figures, "_MODE")  # no module-global run state
    with pytest.raises(ValueError, match="mode must be one of"):
        with figures.run_mode("fast"):
            pass


@pytest.mark.parametrize("title, width, lines", [
    ("E4: accuracy under rotation (bilinear, zero fill) of every model", 40,
     ["E4: accuracy under rotation", "(bilinear, zero fill) of every model"]),
    ("E6 baseline, cross-entropy loss (CIFAR-10 JPEG copy)", 30,
     ["E6 baseline, cross-entropy", "loss (CIFAR-10 JPEG copy)"]),
    ("a (parenthesis far longer than twenty-eight characters) b", 20,
     ["a (parenthesis far", "longer than", "twenty-eight", "characters) b"]),
])
def test_wrap_breaks_at_spaces_outside_short_parentheses(title, width, lines):
    assert figures.wrap(title, width).split("\n") == lines


def _checked(monkeypatch):
    """{file name: layout problems} of every figure written (measured before it is written)."""
    found = {}
    write = figures._write

    def check(fig, path, **kw):
        found[os.path.basename(os.fspath(path))] = figures.layout_problems(fig, tight=kw.get("bbox_inches") == "tight")
        return write(fig, path, **kw)
    monkeypatch.setattr(figures, "_write", check)
    return found


def _two_panels(path, title):
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax in axes:
        ax.plot([1, 2, 3], [0.5, 0.7, 0.9], label="test")
        ax.set_title(title)
        ax.legend()
    return figures.save(fig, path)


LONG = "Fashion-MNIST sample (embedded, 1,000 images; the full set was not available offline)"
FIGURES = {  # the hard cases of issue-style figures: long panel titles side by side, many series, ...
    "e5_accuracy.png": lambda p: _two_panels(p, LONG),
    "e9_many.png": lambda p: figures.curves({f"lr {i}": np.arange(1, 6) * (i + 1) for i in range(13)}, p,
                                            title=LONG + " " + LONG, logy=True, ylabel="loss"),
    "bench_ladder.png": lambda p: figures.xy_curves({f"variant {i}": ([1, 10, 100], [i + 1, i + 2, i + 3])
                                                     for i in range(11)}, p, logx=True, logy=True,
                                                    ylabel="seconds", title="bench: " + LONG),
    "e9_tt.png": lambda p: figures.train_test_curves({f"({c}) relu 256": {"train": [0.5, 0.7], "test": [0.4, 0.6]}
                                                      for c in "abcde"}, p, title=LONG, ylabel="accuracy"),
    "e9_grid.png": lambda p: figures.image_grid(np.zeros((6, 8, 8)), ncols=3, title=LONG, path=p),
    "e9_w1.png": lambda p: figures.plot_first_layer(np.random.default_rng(0).normal(size=(3072, 10)), p, title=LONG),
}


@pytest.mark.parametrize("mode", ["quick", "full"])
@pytest.mark.parametrize("name", list(FIGURES))
def test_hard_figures_have_no_overlap_no_clipping_and_distinct_styles(tmp_path, monkeypatch, name, mode):
    found = _checked(monkeypatch)
    with figures.run_mode(mode):
        FIGURES[name](tmp_path / name)
    assert found == {name: []}


def test_every_title_names_its_experiment_and_log_axes_say_so(tmp_path, monkeypatch):
    kept = _saved_axes(monkeypatch)
    figures.curves({"a": [3, 2, 1]}, tmp_path / "e9_loss.png", ylabel="loss", title="training loss", logy=True)
    ax = kept[-1].axes[0]
    assert ax.get_title() == "E9: training loss" and ax.get_ylabel() == "loss (log scale)"
    _two_panels(tmp_path / "e9_pair.png", "panel")
    assert kept[-1]._suptitle.get_text() == "E9: pair"
    figures.curves({"a": [3, 2, 1]}, tmp_path / "e9_x.png", title="E9 (2) loss")   # already named: unchanged
    assert kept[-1].axes[0].get_title() == "E9 (2) loss"


def test_the_layout_check_finds_overlaps_clipping_and_shared_styles():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2], color="C0", marker="o", label="a")
    ax.plot([2, 1], color="C0", marker="o", label="b")
    ax.legend(loc="upper left")
    ax.set_title("a title far too long to fit on this small canvas at all, it leaves the canvas on both sides")
    ax.text(0.0, 1.0, "a note where the legend is", transform=ax.transAxes, va="top")
    problems = " / ".join(figures.layout_problems(fig))
    assert "leaves the canvas" in problems
    assert "legend ['a', 'b'] overlaps the text 'a note where the legend is'" in problems
    assert "legend entries 'a' and 'b' share the style" in problems
    tight = " / ".join(figures.layout_problems(fig, tight=True))  # a tight save grows the canvas
    assert tight and "canvas" not in tight
    plt.close(fig)


def test_the_bench_figures_are_laid_out_cleanly(tmp_path, monkeypatch):
    """The bench figures, redrawn from the committed bench record, checked from their figure
    objects (renderer extents): no title or legend overlaps another text or leaves the canvas,
    every legend's series has its own style. The experiments' figures are checked by the saver
    itself on every write (FigureLayoutWarning), and tests/experiments/test_new_user.py runs every
    figure of a tiny main job and finds no warning."""
    import json
    from experiments import bench, reproduce
    found = _checked(monkeypatch)
    with open(os.path.join(reproduce.COMMITTED_RESULTS, "bench.json"), encoding="utf-8") as f:
        bench.plot(json.load(f), str(tmp_path))
    assert {"bench_ladder.png", "bench_sweep_widths.png"} <= set(found)
    assert {k: v for k, v in found.items() if v} == {}


def test_save_warns_about_a_figure_that_draws_badly(tmp_path):
    """figures.save names the file and the problem of a figure whose legend gives two series one
    style, and writes it all the same (the figure is still evidence)."""
    fig, ax = plt.subplots()
    for label in ("a", "b"):
        ax.plot([1, 2, 3], [1, 2, 3], color="C0", marker="o", linestyle="-", label=label)
    ax.legend()
    with pytest.warns(figures.FigureLayoutWarning, match=r"figure bad\.png: layout problem: .*style"):
        path = figures.save(fig, str(tmp_path / "bad.png"), mode="full")
    assert os.path.getsize(path) > 1000


def test_series_of_the_same_colour_differ_in_their_line():
    """bench_ladder has 15 series: the 11th (colour C0 again) once differed from the 1st only by a
    hexagon instead of a circle."""
    from experiments._lib.figures import series_style
    styles = [series_style(i) for i in range(40)]
    assert len({(s["color"], s["ls"]) for s in styles}) == 40
    assert len({(s["color"], s["marker"], s["ls"]) for s in styles}) == 40
