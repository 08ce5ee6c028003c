"""Labelled contact sheets for experiment figures (Pillow only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nst_jax.io import image_io


def contact_sheet(rows: Sequence[Sequence[np.ndarray | None]], labels: Sequence[Sequence[str]] | None = None, *,
                  cell_height: int = 256, gap: int = 6, label_height: int = 18) -> np.ndarray:
  """A grid of (H, W, 3) float images, each scaled to `cell_height` rows, with a caption under each cell.

  Cells in one column share the widest width of that column; images are centred in their cells on white. A `None`
  cell is left blank (its caption, if any, is still drawn); (H, W) images are shown as gray."""
  scaled = [[None if img is None else _fit(img, cell_height) for img in row] for row in rows]
  num_cols = max(len(row) for row in scaled)
  col_widths = [max([row[c].shape[1] for row in scaled if c < len(row) and row[c] is not None] or [cell_height])
                for c in range(num_cols)]
  caption = label_height if labels else 0
  height = len(scaled) * (cell_height + caption + gap) + gap
  width = sum(col_widths) + gap * (num_cols + 1)
  sheet = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(sheet)
  font = ImageFont.load_default()
  y = gap
  for r, row in enumerate(scaled):
    x = gap
    for c, img in enumerate(row):
      if img is not None:
        offset = (col_widths[c] - img.shape[1]) // 2
        sheet.paste(Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)), (x + offset, y))
      if labels and c < len(labels[r]) and labels[r][c]:
        draw.text((x + 2, y + cell_height + 3), labels[r][c], fill="black", font=font)
      x += col_widths[c] + gap
    y += cell_height + caption + gap
  return np.asarray(sheet, dtype=np.float32) / 255.0


def _fit(img: np.ndarray, cell_height: int) -> np.ndarray:
  img = np.asarray(img, np.float32)
  if img.ndim == 2:
    img = np.repeat(img[..., None], 3, axis=-1)
  return image_io.resize(img, cell_height, max(1, round(img.shape[1] * cell_height / img.shape[0])))
