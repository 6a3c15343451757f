"""Figure helpers of the experiments."""
import numpy as np

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
