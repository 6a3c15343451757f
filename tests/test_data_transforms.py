"""OOD transforms: translation, exact 90° rotations, bilinear rotation; jit/vmap; figure helper."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnets import data
from jaxnets.data import rot90, rotate, shift_up, translate


def _batch(shape=(5, 12, 12), seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 256, shape)
    return x.astype(dtype)


def test_translate_sign_convention():
    x = np.zeros((1, 5, 5), np.float32)
    x[0, 2, 2] = 1
    right_down = np.asarray(translate(x, 1, 2))
    assert right_down[0, 4, 3] == 1 and right_down.sum() == 1
    up = np.asarray(shift_up(x, 2))  # doc 003: "moved up" = content goes to smaller row indices
    assert up[0, 0, 2] == 1 and up.sum() == 1
    np.testing.assert_array_equal(up, translate(x, 0, -2))


def test_translate_zero_fill_and_no_wrap():
    x = _batch((2, 6, 7))
    y = np.asarray(translate(x, -2, 3))
    assert np.all(y[:, :3, :] == 0) and np.all(y[:, :, -2:] == 0)  # vacated rows/cols are 0
    np.testing.assert_array_equal(y[:, 3:, :-2], x[:, :-3, 2:])


@settings(max_examples=25, deadline=None)
@given(dx=st.integers(-8, 8), dy=st.integers(-8, 8))
def test_translate_inverse_restores_interior(dx, dy):
    x = _batch((3, 28, 28))
    back = np.asarray(translate(translate(x, dx, dy), -dx, -dy))
    h, w = 28, 28
    rows = slice(max(0, -dy), h - max(0, dy))  # pixels that stayed in the frame
    cols = slice(max(0, -dx), w - max(0, dx))
    np.testing.assert_array_equal(back[:, rows, cols], x[:, rows, cols])


def test_translate_channels_dtype_and_per_image():
    x = _batch((4, 8, 8, 3), dtype=np.uint8)
    y = translate(x, jnp.array([0, 1, 2, 3]), 0)
    assert y.dtype == jnp.uint8 and y.shape == x.shape
    for i in range(4):
        np.testing.assert_array_equal(np.asarray(y[i]), np.asarray(translate(x[i:i + 1], i, 0)[0]))
    with pytest.raises(ValueError, match="batch"):
        translate(x[0, :, :, 0], 1, 1)
    with pytest.raises(ValueError, match="shape"):
        translate(x, jnp.array([1, 2]), 0)


def test_translate_jit_with_traced_shift():
    x = _batch((2, 10, 10))
    f = jax.jit(translate)
    np.testing.assert_array_equal(f(x, 3, -1), translate(x, 3, -1))
    np.testing.assert_array_equal(f(x, -4, 2), translate(x, -4, 2))  # same compiled function


@pytest.mark.parametrize("shape", [(4, 9, 9), (3, 6, 10), (2, 7, 7, 3)])
def test_rot90_matches_jnp_rot90_per_image(shape):
    x = _batch(shape)
    for k in range(-1, 5):
        got = np.asarray(rot90(x, k))
        for i in range(shape[0]):
            np.testing.assert_array_equal(got[i], np.asarray(jnp.rot90(x[i], k)))


def test_rot90_four_times_identity_and_traced_k():
    x = _batch((3, 8, 8, 2))
    y = x
    for _ in range(4):
        y = rot90(y, 1)
    np.testing.assert_array_equal(y, x)
    f = jax.jit(rot90)
    for k in range(4):
        np.testing.assert_array_equal(f(x, k), rot90(x, k))


QUARTER_TURNS = ((1, 90.0), (3, 270.0), (3, -90.0), (1, 450.0))
HALF_TURNS = ((2, 180.0), (2, -180.0), (0, 360.0), (0, 0.0), (2, 540.0))
# rotate's promise off the square: rot90 "up to float rounding". Pixels are integers <= 255: eight
# float32 roundings of 255 (2.4e-4) admit rounding only, not a misplaced pixel or a half-pixel blend
# (each moves a value by 0.5 or more).
ROUNDING = 8 * np.finfo(np.float32).eps * 255


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
@pytest.mark.parametrize("size", [28, 27, 32])
def test_rotate_by_multiples_of_90_equals_rot90(dtype, size):
    """Square images: exactly rot90 (a permutation of the pixels), float32 and uint8."""
    x = _batch((3, size, size), dtype=dtype)
    for k, angle in QUARTER_TURNS + HALF_TURNS:
        got = np.asarray(rotate(x, angle))
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, np.asarray(rot90(x, k)), err_msg=f"{angle} degrees")


def _centred(a, size, axis):
    """``a`` centred in ``size`` entries along ``axis``: cropped or zero-padded equally each side."""
    extra = size - a.shape[axis]
    assert extra % 2 == 0, "an odd difference puts the centres half a pixel apart"
    if extra < 0:
        return np.take(a, np.arange(-extra // 2, -extra // 2 + size), axis=axis)
    widths = [(0, 0)] * a.ndim
    widths[axis] = (extra // 2, extra // 2)
    return np.pad(a, widths)


NON_SQUARE = [pytest.param((3, 6, 10), np.float32, id="6x10-float32"),
              pytest.param((2, 9, 5), np.uint8, id="9x5-uint8"),
              pytest.param((2, 8, 14, 3), np.float32, id="8x14x3-float32")]
ODD_DIFFERENCE = [pytest.param((3, 7, 10), np.float32, id="7x10-float32"),
                  pytest.param((2, 10, 7, 3), np.uint8, id="10x7x3-uint8")]


@pytest.mark.parametrize("shape,dtype", NON_SQUARE + ODD_DIFFERENCE)
def test_rotate_by_half_turns_of_non_square_images_equals_rot90(shape, dtype):
    """H != W: rotate keeps (H, W), so a half turn (or none) is rot90's image, up to ROUNDING."""
    x = _batch(shape, dtype=dtype)
    for k, angle in HALF_TURNS:
        want = np.asarray(rot90(x, k), np.float64)
        np.testing.assert_allclose(np.asarray(rotate(x, angle), np.float64), want,
                                   rtol=0, atol=ROUNDING, err_msg=f"{angle} degrees")


@pytest.mark.parametrize("shape,dtype", NON_SQUARE)
def test_rotate_by_quarter_turns_of_non_square_images_equals_centred_rot90(shape, dtype):
    """H != W, H - W even (the two frames' centres on the same pixel grid): a quarter turn about the
    centre is rot90's (W, H) image cropped and zero-padded into the (H, W) frame, up to ROUNDING."""
    x = _batch(shape, dtype=dtype)
    for k, angle in QUARTER_TURNS:
        want = _centred(_centred(np.asarray(rot90(x, k)), shape[1], 1), shape[2], 2)
        np.testing.assert_allclose(np.asarray(rotate(x, angle), np.float64), want.astype(np.float64),
                                   rtol=0, atol=ROUNDING, err_msg=f"{angle} degrees")


def test_rotate_rgb_and_interior_zero_fill():
    x = _batch((2, 16, 16, 3))
    y = np.asarray(rotate(x, 45.0))
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(y[:, 0, 0] == 0) and np.all(y[:, -1, -1] == 0)  # corners come from outside
    np.testing.assert_allclose(np.asarray(rotate(x, 0.0)), x, atol=1e-4)


def test_rotate_small_angle_then_back_interior():
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    smooth = np.sin(xx / 5.0) + np.cos(yy / 7.0)  # smooth image: bilinear error stays small
    x = np.stack([smooth, smooth.T])
    back = np.asarray(rotate(rotate(x, 20.0), -20.0))
    np.testing.assert_allclose(back[:, 10:22, 10:22], x[:, 10:22, 10:22], atol=0.05)


def test_rotate_direction_counter_clockwise():
    x = np.zeros((1, 9, 9), np.float32)
    x[0, 4, 8] = 1  # a dot to the right of the centre
    y = np.asarray(rotate(x, 90.0))
    assert y[0, 0, 4] == pytest.approx(1.0)  # ... ends up above it


def test_rotate_per_image_angles_vmap_jit():
    x = _batch((4, 12, 12))
    angles = jnp.array([0.0, 90.0, 180.0, 30.0])
    y = jax.jit(rotate)(x, angles)
    for i in range(4):
        np.testing.assert_allclose(y[i], rotate(x[i:i + 1], float(angles[i]))[0], atol=1e-4)
    z = jax.vmap(lambda a: rotate(x, a))(jnp.array([10.0, 20.0]))
    assert z.shape == (2, 4, 12, 12)


def test_ood_test_sets():
    x = _batch((2, 28, 28), dtype=np.uint8)
    sets = data.ood_test_sets(x)
    assert list(sets) == ["original", "up4", "rot90", "rot180", "rot270"]
    np.testing.assert_array_equal(sets["up4"], translate(x, 0, -4))
    np.testing.assert_array_equal(sets["rot270"], rot90(x, 3))
    assert all(v.dtype == jnp.uint8 and v.shape == x.shape for v in sets.values())
