"""Figures published in Koch et al. 2015, shown beside ours and never mistaken for our runs."""

# Table 2: 20-way within-alphabet one-shot accuracy (%) on Omniglot
TABLE2 = {
    "Humans": 95.5,
    "Hierarchical Bayesian Program Learning": 95.2,
    "Affine model": 81.8,
    "Hierarchical Deep": 65.2,
    "Deep Boltzmann Machine": 62.0,
    "Simple Stroke": 35.2,
    "1-Nearest Neighbor": 21.7,
    "Siamese Neural Net (MLP)": 58.3,
    "Convolutional Siamese Net": 92.0,
}
# Table 3: MNIST 10-versus-1 one-shot accuracy (%)
TABLE3 = {"1-Nearest Neighbor": 26.5, "Convolutional Siamese Net": 70.3}

# our methods that reproduce a published row
PAPER_ROW = {
    "pixel_1nn": "1-Nearest Neighbor",
    "affine": "Affine model",
    "mlp_siamese": "Siamese Neural Net (MLP)",
    "conv_siamese": "Convolutional Siamese Net",
}
PAPER_COLUMNS = {"omniglot20": TABLE2, "mnist10": TABLE3}
