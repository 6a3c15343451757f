"""Out-of-distribution image transforms in JAX (doc 003 §3.5).

All functions take a **batch** ``(N, H, W)`` or ``(N, H, W, C)`` (any dtype), are pure, and can be
``jax.jit``-ed and ``jax.vmap``-ed; shift amounts and angles may be traced values, either one
scalar for the whole batch or one value per image (shape ``(N,)``, e.g. for augmentation).

Conventions (image coordinates: row 0 at the top, column 0 at the left):

* :func:`translate` ``(dx, dy)`` moves the *content* ``dx`` pixels **right** and ``dy`` pixels
  **down**; vacated pixels are 0. Doc 003's "moved up by 4 pixels" is ``dy = -4``
  (:func:`shift_up`).
* :func:`rot90` ``k`` rotates by ``k × 90°`` **counter-clockwise** as displayed, exactly like
  ``jnp.rot90(image, k)`` on each image.
* :func:`rotate` rotates by ``angle`` degrees counter-clockwise (same sense as :func:`rot90`)
  about the image centre ``((H-1)/2, (W-1)/2)`` with bilinear interpolation; pixels that come
  from outside the image are 0.

Output dtype equals input dtype; for integer inputs :func:`rotate` rounds the interpolated
values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["translate", "shift_up", "rot90", "rotate", "ood_test_sets"]


def _check_batch(images) -> None:
    if images.ndim not in (3, 4):
        raise ValueError(f"expected a batch (N, H, W) or (N, H, W, C), got shape {images.shape}")


def _per_image(v, n: int) -> jax.Array:
    """Scalar or ``(N,)`` → ``(N,)``."""
    v = jnp.asarray(v)
    if v.ndim == 0:
        return jnp.broadcast_to(v, (n,))
    if v.shape != (n,):
        raise ValueError(f"expected a scalar or shape ({n},), got shape {v.shape}")
    return v


def _translate_one(img, dx, dy):
    h, w = img.shape[0], img.shape[1]
    # Output pixel (r, c) shows input pixel (r - dy, c - dx); a gather with clipped indices plus
    # a validity mask is jit-friendly for traced shifts (jnp.roll would wrap content around).
    rows = jnp.arange(h) - dy
    cols = jnp.arange(w) - dx
    vr = (rows >= 0) & (rows < h)
    vc = (cols >= 0) & (cols < w)
    out = img[jnp.clip(rows, 0, h - 1)][:, jnp.clip(cols, 0, w - 1)]
    mask = vr[:, None] & vc[None, :]
    if img.ndim == 3:
        mask = mask[..., None]
    return jnp.where(mask, out, jnp.zeros((), img.dtype))


def translate(images, dx, dy) -> jax.Array:
    """Shift every image by ``(dx, dy)`` pixels with zero fill.

    Args:
        images: ``(N, H, W)`` or ``(N, H, W, C)``.
        dx: integer shift to the right (negative: left); scalar or ``(N,)``.
        dy: integer shift down (negative: up); scalar or ``(N,)``.

    Returns:
        Array of the same shape and dtype. Shifting by ``(dx, dy)`` then ``(-dx, -dy)`` restores
        every pixel that stayed inside the frame.
    """
    images = jnp.asarray(images)
    _check_batch(images)
    n = images.shape[0]
    dx = _per_image(dx, n).astype(jnp.int32)
    dy = _per_image(dy, n).astype(jnp.int32)
    return _translate_batch(images, dx, dy)


# Compiled once per (shape, dtype): shifts are traced, so a sweep over dx/dy reuses one program,
# and eager callers do not pay for op-by-op dispatch of the vmapped gather.
_translate_batch = jax.jit(jax.vmap(_translate_one))


def shift_up(images, pixels: int = 4) -> jax.Array:
    """Doc 003's translated test set: content moved up by ``pixels`` (``translate(x, 0, -pixels)``)."""
    return translate(images, 0, -pixels)


def rot90(images, k=1) -> jax.Array:
    """Rotate every image by ``k × 90°`` counter-clockwise (``jnp.rot90`` on axes 1, 2).

    ``k`` may be a Python int (any ``H, W``) or a traced integer scalar (square images only,
    since the output shape must not depend on a traced value).
    """
    images = jnp.asarray(images)
    _check_batch(images)
    if isinstance(k, (int, np.integer)):
        return jnp.rot90(images, int(k), axes=(1, 2))
    if images.shape[1] != images.shape[2]:
        raise ValueError("rot90 with a traced k needs square images")
    branches = [lambda x, j=j: jnp.rot90(x, j, axes=(1, 2)) for j in range(4)]
    return jax.lax.switch(jnp.asarray(k, jnp.int32) % 4, branches, images)


def _rotate_one(img, angle_deg):
    h, w = img.shape[0], img.shape[1]
    theta = jnp.deg2rad(jnp.asarray(angle_deg, jnp.float32))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    # cos(pi/2) is -4e-8 in float32, not 0; snapping makes multiples of 90° exact permutations.
    cos = jnp.where(jnp.abs(cos) < 1e-6, 0.0, cos)
    sin = jnp.where(jnp.abs(sin) < 1e-6, 0.0, sin)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    r, c = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    y, x = r - cy, c - cx
    # Inverse mapping: the output pixel at (y, x) shows the input at R(-θ)(x, y) in a frame whose
    # y axis points down, which makes positive angles counter-clockwise on screen.
    src_x = cos * x - sin * y + cx
    src_y = sin * x + cos * y + cy

    y0 = jnp.floor(src_y)
    x0 = jnp.floor(src_x)
    wy = src_y - y0
    wx = src_x - x0
    y0 = y0.astype(jnp.int32)
    x0 = x0.astype(jnp.int32)
    img_f = img.astype(jnp.float32)

    def tap(yy, xx):
        valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        v = img_f[jnp.clip(yy, 0, h - 1), jnp.clip(xx, 0, w - 1)]
        if img.ndim == 3:
            valid = valid[..., None]
        return jnp.where(valid, v, 0.0)

    if img.ndim == 3:
        wy, wx = wy[..., None], wx[..., None]
    out = ((1 - wy) * (1 - wx) * tap(y0, x0) + (1 - wy) * wx * tap(y0, x0 + 1)
           + wy * (1 - wx) * tap(y0 + 1, x0) + wy * wx * tap(y0 + 1, x0 + 1))
    if jnp.issubdtype(img.dtype, jnp.integer):
        info = jnp.iinfo(img.dtype)
        out = jnp.clip(jnp.round(out), info.min, info.max)
    return out.astype(img.dtype)


def rotate(images, angle_degrees) -> jax.Array:
    """Rotate every image by ``angle_degrees`` counter-clockwise about its centre.

    Bilinear interpolation, zero fill outside the source image.

    Args:
        images: ``(N, H, W)`` or ``(N, H, W, C)``.
        angle_degrees: scalar or ``(N,)``; may be traced.

    Returns:
        Same shape and dtype (integer inputs are rounded). On square images a multiple of 90°
        equals :func:`rot90` exactly. On others, half turns agree with it up to float rounding;
        a quarter turn keeps the (H, W) frame, so it is ``rot90``'s (W, H) image cropped or
        zero-padded about the same centre (up to rounding when H − W is even; when it is odd
        the centres are half a pixel apart and the result is interpolated).
    """
    images = jnp.asarray(images)
    _check_batch(images)
    angles = _per_image(angle_degrees, images.shape[0]).astype(jnp.float32)
    return _rotate_batch(images, angles)


_rotate_batch = jax.jit(jax.vmap(_rotate_one))


def ood_test_sets(images, *, shift_pixels: int = 4) -> dict[str, jax.Array]:
    """Doc 003 §3.5's test sets: ``original``, ``up4`` (content up 4 px), ``rot90``, ``rot180``,
    ``rot270`` (counter-clockwise), each the same shape and dtype as ``images``."""
    images = jnp.asarray(images)
    return {
        "original": images,
        f"up{shift_pixels}": shift_up(images, shift_pixels),
        "rot90": rot90(images, 1),
        "rot180": rot90(images, 2),
        "rot270": rot90(images, 3),
    }
