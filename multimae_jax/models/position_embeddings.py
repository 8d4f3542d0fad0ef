"""Fixed 2-D sine-cosine position embeddings for patch grids."""

import numpy as np


def sincos_1d(width: int, positions: np.ndarray) -> np.ndarray:
    """Embed 1-D positions with sines and cosines of geometrically spaced frequencies.

    Args:
      width: embedding width, even.
      positions: float array of any shape.

    Returns:
      float32 array of shape positions.shape + (width,): the first half sines, the second half cosines.
    """
    if width % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {width}")
    frequencies = 1.0 / 10000 ** (np.arange(width // 2, dtype=np.float64) / (width / 2.0))
    angles = np.asarray(positions, np.float64)[..., None] * frequencies
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1).astype(np.float32)


def sincos_2d(width: int, grid_height: int, grid_width: int) -> np.ndarray:
    """Build the position embeddings of a grid of patches in row-major order.

    Half the channels encode the row, half the column, so any grid shape (square or not) is supported and a
    checkpoint trained at one resolution gets exact embeddings at another.

    Returns:
      float32 array [grid_height * grid_width, width].
    """
    if width % 4:
        raise ValueError(f"2-D sin-cos embedding width must be a multiple of 4, got {width}")
    rows, columns = np.meshgrid(np.arange(grid_height), np.arange(grid_width), indexing="ij")
    row_embedding = sincos_1d(width // 2, rows.reshape(-1))
    column_embedding = sincos_1d(width // 2, columns.reshape(-1))
    return np.concatenate([row_embedding, column_embedding], axis=-1)
