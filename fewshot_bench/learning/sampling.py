"""Samplers of the learned methods' training batches: the background indexed by alphabet,
character and drawer; Koch's balanced same/different pairs; grids of one-shot trials and episodes."""
from __future__ import annotations

import numpy as np

from fewshot_bench.errors import UserError
from fewshot_bench.imageset import ImageSet


# ------------------------------------------------------------------ samplers

class CharacterIndex:
    """Background images grouped as (alphabet -> character -> drawer -> row) for samplers."""

    def __init__(self, images: ImageSet):
        meta = images.meta
        groups = meta.groupby("alphabet").indices  # alphabet -> its rows (positions), ascending
        self.alphabets = sorted(groups)
        self.table = {}  # alphabet -> array (characters, drawers) of row indices
        self.labels = np.zeros(len(meta), dtype=np.int64)  # row -> class (alphabet, character), numbered 0..
        self.n_classes = 0
        characters, drawers = meta["character"].to_numpy(), meta["drawer"].to_numpy()
        for alphabet in self.alphabets:
            rows = groups[alphabet]
            self.table[alphabet] = grid = _filled(_grid(rows, characters[rows], drawers[rows]))
            for character, members in enumerate(grid):
                self.labels[members] = self.n_classes + character
            self.n_classes += len(grid)
        self.rotated = "rotation" in meta  # Vinyals' classes: the rotations are classes already
        self.characters = [(a, c) for a in self.alphabets for c in range(len(self.table[a]))]  # in label order


def _grid(rows: np.ndarray, characters: np.ndarray, drawers: np.ndarray) -> np.ndarray:
    """Rows as a (characters, drawers) grid, both sorted; each cell the first row of that character
    and drawer, NaN where there is none (a pivot table, in numpy: pandas' took 10 ms an alphabet)."""
    names, character = np.unique(characters, return_inverse=True)
    columns, drawer = np.unique(drawers, return_inverse=True)
    cells, first = np.unique(character * len(columns) + drawer, return_index=True)
    grid = np.full((len(names), len(columns)), np.nan)
    grid.flat[cells] = rows[first]
    return grid


def _filled(grid: np.ndarray) -> np.ndarray:
    """A (characters, drawers) grid of rows with every gap (a class with fewer images than the
    largest of its group, in a user's folder) filled by cycling that class's own images."""
    if not np.isnan(grid).any():
        return grid.astype(np.int64)
    rows = [r[~np.isnan(r)].astype(np.int64) for r in grid]
    return np.stack([np.resize(r, grid.shape[1]) for r in rows])


def balanced_pairs(index: CharacterIndex, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Koch's training pairs: equal numbers per alphabet, half same-character, half different.

    Returns rows (n, 2) into the background set and targets (n,) with 1 = same character.
    """
    per_alphabet = np.full(len(index.alphabets), n_pairs // len(index.alphabets))
    per_alphabet[: n_pairs % len(index.alphabets)] += 1
    rows, targets = [], []
    for alphabet, count in zip(index.alphabets, per_alphabet):
        grid = index.table[alphabet]
        n_char, n_draw = grid.shape
        same = np.arange(count) % 2 == 0
        c1 = rng.integers(n_char, size=count)
        c2 = np.where(same, c1, (c1 + rng.integers(1, n_char, size=count)) % n_char)
        d1 = rng.integers(n_draw, size=count)
        d2 = np.where(same, (d1 + rng.integers(1, n_draw, size=count)) % n_draw, rng.integers(n_draw, size=count))
        rows.append(np.stack([grid[c1, d1], grid[c2, d2]], 1))
        targets.append(same.astype(np.float32))
    order = rng.permutation(n_pairs)
    return np.concatenate(rows)[order], np.concatenate(targets)[order]


def trial_batch(index: CharacterIndex, alphabets: int, way: int, drawers: int, rng: np.random.Generator,
                across_alphabets: bool = False):
    """Rows for one batch of within-alphabet one-shot trials: ``alphabets`` groups, each a
    (drawers, way) grid of rows (same column = same character). ``across_alphabets``: each group's
    characters drawn from all alphabets (the episodes of Vinyals' benchmark)."""
    if across_alphabets:
        if way > len(index.characters):
            raise UserError(f"way={way} needs {way} background classes; the background has "
                            f"{len(index.characters)}: lower the method's way (--set way=N)")
        return [_any_characters(index, way, drawers, rng) for _ in range(alphabets)]
    # a user's folder may hold fewer groups than a batch has: then groups repeat within a batch
    chosen = rng.choice(len(index.alphabets), size=alphabets, replace=alphabets > len(index.alphabets))
    groups = []
    for a in chosen:
        grid = index.table[index.alphabets[a]]
        chars = rng.choice(grid.shape[0], size=min(way, grid.shape[0]), replace=False)
        draws = rng.choice(grid.shape[1], size=drawers, replace=False)
        groups.append(grid[np.ix_(chars, draws)].T)  # (drawers, way)
    return groups


def _any_characters(index: CharacterIndex, way: int, drawers: int, rng: np.random.Generator) -> np.ndarray:
    """One (drawers, way) grid of ``way`` characters drawn from all alphabets, each its own drawers."""
    columns = []
    for p in rng.choice(len(index.characters), size=way, replace=False):
        alphabet, character = index.characters[p]
        row = index.table[alphabet][character]
        columns.append(row[rng.choice(len(row), size=drawers, replace=False)])
    return np.stack(columns, 1)
