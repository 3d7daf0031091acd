"""Omniglot splits of Koch et al. 2015, matched to Lake's published one-shot runs."""

VALIDATION_ALPHABETS = (
    "Angelic", "Atemayar_Qelisayer", "Aurek-Besh", "Avesta", "Keble",
    "Mongolian", "Oriya", "Sylheti", "Syriac_(Serto)", "ULOG",
)
TEST_ALPHABETS = (
    "Atlantean", "Ge_ez", "Glagolitic", "Gurmukhi", "Kannada", "Malayalam",
    "Manipuri", "Old_Church_Slavonic_(Cyrillic)", "Tengwar", "Tibetan",
)
HELDOUT_ALPHABETS = frozenset(VALIDATION_ALPHABETS + TEST_ALPHABETS)

TRAIN_DRAWERS = tuple(range(1, 13))       # verification training pairs (Koch: 12 drawers)
VALIDATION_DRAWERS = tuple(range(13, 17))
TEST_DRAWERS = tuple(range(17, 21))
ALL_DRAWERS = tuple(range(1, 21))
