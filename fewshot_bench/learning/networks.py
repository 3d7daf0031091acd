"""The networks the learned methods train. Each has the same face: ``embed`` images (N, 1, H, W)
-> features (N, F); ``logits`` compares all pairs of two feature sets (..., A, F) x (..., B, F)
-> (..., A, B), higher = more alike; ``pair_logits`` matched pairs; ``layer_groups`` for
layer-wise SGD settings.

- ``TwinNet``: Koch's siamese twin (conv or MLP stack, optional sigmoid fc layer) with the
  weighted-L1 head, or a fixed metric (Euclidean, cosine); Conv-4 of Vinyals/Snell is a TwinNet
  with four 64-channel blocks pooled after each (``pool_last``). Optional classifier head over
  the background classes (``simpleshot``, ``chen_baseline``), full-context embeddings (matching networks).
- ``RelationNet``: Sung et al. 2018's encoder and learned relation module.
- ``MamlNet``: Finn et al. 2017's Omniglot network: four strided 64-channel blocks, a linear
  classifier over the episode's classes, batch statistics always (no running averages).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval


def symmetry(images: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry k (0-7) of the square images (..., H, W): k % 4 quarter turns, mirrored when k >= 4."""
    images = torch.rot90(images, k % 4, dims=(-2, -1))
    return images.flip(-1) if k >= 4 else images


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with each batch norm that has running statistics folded
    into the convolution before it (at inference it is an affine map per channel): the same
    embeddings up to float rounding, without the batch-norm pass. Batch norm on the batch's own
    statistics (MAML's) is left as it is."""
    model = copy.deepcopy(model).eval()
    for block in model.modules():
        if not isinstance(block, nn.Sequential):
            continue
        for i in range(len(block) - 1):
            conv, norm = block[i], block[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.running_mean is not None:
                block[i] = fuse_conv_bn_eval(conv, norm).to(memory_format=torch.channels_last)
                block[i + 1] = nn.Identity()
    return model


def conv_block(c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0, batch_norm: bool = True,
               pool: bool = True, track_running_stats: bool = True) -> nn.Sequential:
    block = [nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=not batch_norm)]
    if batch_norm:
        block.append(nn.BatchNorm2d(c_out, track_running_stats=track_running_stats))
    # ReLU after the pool: max-pooling commutes with a monotonic ReLU (the same outputs and
    # gradients, bit for bit), and on a quarter of the values the ReLU's passes cost a quarter.
    # Neither has weights, so the stored weights' keys are the same either way round
    block += [nn.MaxPool2d(2), nn.ReLU(inplace=True)] if pool else [nn.ReLU(inplace=True)]
    return nn.Sequential(*block)


def weighted_l1_differences(a: torch.Tensor, b: torch.Tensor, alpha: torch.Tensor,
                            chunk_elements: int = 1 << 22) -> torch.Tensor:
    """sum_j alpha_j |a_j - b_j| for all pairs (..., A, F) x (..., B, F) -> (..., A, B), through
    the differences themselves, in blocks of rows of about ``chunk_elements`` floats: without
    gradients, 2.2x faster than the two cdists on Vinyals' 20 x 100 sets (torch's p=1 cdist
    kernel is slow; training keeps it, as its backward never holds the differences)."""
    rows = max(1, chunk_elements // max(1, b.shape[-2] * b.shape[-1]))
    out = []
    for block in a.split(rows, dim=-2):
        d = (block.unsqueeze(-2) - b.unsqueeze(-3)).abs_()
        out.append((d.flatten(0, -2) @ alpha).view(d.shape[:-1]))
    return torch.cat(out, dim=-2)


class TwinNet(nn.Module):
    """Twin embedding (conv or MLP stack, optional fully connected sigmoid layer) and the metric."""

    def __init__(self, cfg, n_classes: int = 0, in_channels: int = 1):
        super().__init__()
        self.metric = cfg.metric
        self.conv = cfg.network == "conv"
        self.layers = nn.ModuleList(self._conv_layers(cfg, in_channels) if self.conv else self._mlp_layers(cfg, in_channels))
        with torch.no_grad():
            flat = self._features(torch.zeros(1, in_channels, cfg.input_size, cfg.input_size)).shape[1]
        self.fc = nn.Linear(flat, cfg.fc_units) if cfg.fc_units else None
        dim = cfg.fc_units or flat
        # alpha_j weights |h1_j - h2_j|, plus a bias; the Euclidean and cosine metrics have no parameters
        self.head = nn.Linear(dim, 1) if cfg.metric == "weighted_l1" else None
        # cosine similarities times a learned scale (initialised at ``cosine_scale``; 0 = unscaled): a
        # softmax over bare cosines in [-1, 1] cannot grow confident, and trains slowly
        self.scale = nn.Parameter(torch.tensor(float(cfg.cosine_scale))) if getattr(cfg, "cosine_scale", 0) else None
        # simpleshot and chen_baseline: a classifier over all background classes, dropped at test time
        self.classifier = nn.Linear(dim, n_classes) if n_classes else None
        # full-context embeddings (Vinyals et al. 2016): the support set read by a bidirectional
        # LSTM, each query by an LSTM attending over it for ``fce_steps`` steps
        self.fce = FullContext(dim, cfg.fce_steps) if getattr(cfg, "fce", False) else None
        # features are centred on the background's mean and L2-normalised (SimpleShot's CL2N)
        # (every classifier network has the buffer, so that methods scoring one training with and
        # without CL2N load the same weights)
        self.cl2n = getattr(cfg, "normalise", "") == "cl2n"
        self.register_buffer("feature_mean", torch.zeros(dim) if n_classes else None)
        if cfg.init in ("paper", "paper_gain"):
            self._paper_init(gain=cfg.init == "paper_gain")
        if self.conv:
            self.to(memory_format=torch.channels_last)

    @staticmethod
    def _conv_layers(cfg, in_channels: int):
        layers, c_in = [], in_channels
        strides = cfg.strides or (1,) * len(cfg.channels)
        for i, (c_out, k, stride) in enumerate(zip(cfg.channels, cfg.kernels, strides)):
            # 'same' padding (k // 2) keeps maps large; with stride 2 it halves them exactly. The
            # paper pools after every conv layer but the last; Conv-4 after every one (pool_last)
            layers.append(conv_block(c_in, c_out, k, stride, k // 2 if cfg.padding == "same" else 0, cfg.batch_norm,
                                     pool=i < len(cfg.channels) - 1 or cfg.pool_last))
            c_in = c_out
        return layers

    @staticmethod
    def _mlp_layers(cfg, in_channels: int):
        layers, n_in = [], in_channels * cfg.input_size ** 2
        for i, n_out in enumerate(cfg.hidden):
            block = ([nn.Flatten()] if i == 0 else []) + [nn.Linear(n_in, n_out), nn.ReLU(inplace=True)]
            layers.append(nn.Sequential(*block))
            n_in = n_out
        return layers

    def _paper_init(self, gain: bool = False):
        for module in self.layers.modules():
            if isinstance(module, nn.Conv2d):
                # "paper_gain": Koch's std 0.01 passes an image's variation on at a gain of about
                # 0.01 * sqrt(fan-in) per layer: 0.45-0.56 in his 105x105 network's deeper layers
                # (7x7 and 4x4 kernels on 64-128 maps), 0.05-0.12 at a CPU size's 3x3 and 5x5 kernels on
                # 1-16 maps, where the input fades to nothing by the fc layer. This keeps his
                # distributions with every conv layer's std set to a gain of 0.5: 0.5 / sqrt(fan-in)
                fan_in = module.weight[0].numel()
                nn.init.normal_(module.weight, 0.0, 0.5 / fan_in ** 0.5 if gain else 1e-2)
                if module.bias is not None:
                    nn.init.normal_(module.bias, 0.5, 1e-2)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 2e-1)
                nn.init.normal_(module.bias, 0.5, 1e-2)
        for layer in (self.fc, self.head):
            if layer is not None:
                nn.init.normal_(layer.weight, 0.0, 2e-1)
                nn.init.normal_(layer.bias, 0.5, 1e-2)

    def _features(self, x):
        if self.conv:  # channels-last convolutions run 1.1-1.3x faster on CPU (oneDNN)
            x = x.contiguous(memory_format=torch.channels_last)
        for layer in self.layers:
            x = layer(x)
        return x.flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> (N, F): sigmoid features of the fc layer, or the flat twin features."""
        h = self._features(x)
        return torch.sigmoid(self.fc(h)) if self.fc is not None else h

    def test_features(self, h: torch.Tensor) -> torch.Tensor:
        """What scoring compares: CL2N-normalised features where configured (the base mean is set
        after training), else the embeddings as they are."""
        if not self.cl2n:
            return h
        return F.normalize(h - self.feature_mean, dim=-1)

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """All pairs of embeddings (..., A, F) x (..., B, F) -> (..., A, B) logits of 'same character'.

        sum_j alpha_j |a_j - b_j| is split by the sign of alpha into two weighted L1 distances
        (|alpha_j| |a_j - b_j| = ||alpha_j| a_j - |alpha_j| b_j|): exact, and torch.cdist never
        materialises the (A, B, F) difference tensor, so training steps run 2.4x faster. Each
        distance runs over its own features only (the other sign's terms are 0): half the work of
        two full-width distances, the same logits bit for bit (steps 1.1-1.2x faster). Without
        gradients (scoring) the differences are summed directly (``weighted_l1_differences``).
        """
        if self.metric == "cosine":
            cosine = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2)
            return cosine * self.scale if self.scale is not None else cosine
        if self.head is None:
            return -torch.cdist(a, b).pow(2)
        alpha = self.head.weight[0]
        if not torch.is_grad_enabled():
            return weighted_l1_differences(a, b, alpha) + self.head.bias

        def weighted_l1(sign: float) -> torch.Tensor:
            features = (sign * alpha > 0).nonzero().squeeze(1)
            weight = sign * alpha[features]
            # index_select rather than indexing: its backward is 1.5x faster on these (P, c, F) inputs
            return torch.cdist(a.index_select(-1, features) * weight, b.index_select(-1, features) * weight, p=1)

        return weighted_l1(1.0) - weighted_l1(-1.0) + self.head.bias

    def pair_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Matched pairs (n, F), (n, F) -> (n,) logits."""
        if self.metric == "cosine":
            return F.cosine_similarity(a, b, dim=-1)
        if self.head is None:
            return -(a - b).pow(2).sum(-1)
        return self.head((a - b).abs()).squeeze(-1)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters per layer (twin layers, fc, head) for layer-wise SGD settings."""
        groups = [list(layer.parameters()) for layer in self.layers]
        groups = [g for g in groups if g]
        return groups + [list(m.parameters()) for m in (self.fc, self.head) if m is not None]


class FullContext(nn.Module):
    """Vinyals et al. 2016's full-context embeddings: g(x_i, S) = x_i plus a bidirectional LSTM's
    outputs over the support set; f(x, S) = an LSTM whose state reads the support by attention for
    ``steps`` steps (their appendix A)."""

    def __init__(self, dim: int, steps: int):
        super().__init__()
        self.support_lstm = nn.LSTM(dim, dim, bidirectional=True, batch_first=True)
        self.query_cell = nn.LSTMCell(2 * dim, dim)
        self.steps = steps

    def forward(self, queries: torch.Tensor, support: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q, F) queries and (S, F) support of one episode -> their context embeddings."""
        out, _ = self.support_lstm(support[None])
        dim = support.shape[1]
        g = support + out[0, :, :dim] + out[0, :, dim:]
        h, c = torch.zeros_like(queries), torch.zeros_like(queries)
        r = torch.zeros_like(queries)
        for _ in range(self.steps):
            h, c = self.query_cell(torch.cat([queries, r], 1), (h, c))
            h = h + queries
            r = torch.softmax(h @ g.T, dim=1) @ g
        return h, g


class RelationNet(nn.Module):
    """Sung et al. 2018: a conv encoder to 64 feature maps (5x5 at 28x28 inputs) and a relation
    module (two conv blocks on the concatenated maps of a query and a class, then 8 hidden units
    and a sigmoid) that learns the comparison itself."""

    def __init__(self, cfg, n_classes: int = 0, in_channels: int = 1):
        super().__init__()
        c = 64
        self.layers = nn.ModuleList([conv_block(in_channels, c, 3), conv_block(c, c, 3),
                                     conv_block(c, c, 3, padding=1, pool=False),
                                     conv_block(c, c, 3, padding=1, pool=False)])
        with torch.no_grad():
            self.shape = tuple(self._maps(torch.zeros(1, in_channels, cfg.input_size, cfg.input_size)).shape[1:])
        side = self.shape[-1]
        self.relation = nn.Sequential(conv_block(2 * c, c, 3, padding=1, pool=side >= 2),
                                      conv_block(c, c, 3, padding=1, pool=side >= 4),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(c, 8), nn.ReLU(inplace=True), nn.Linear(8, 1))

    def _maps(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._maps(x).flatten(1)

    def test_features(self, h):
        return h

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(A, F) x (B, F) -> (A, B) relation logits (the sigmoid of which is the relation score)."""
        n_a, n_b = a.shape[-2], b.shape[-2]
        pairs = torch.cat([a[:, None].expand(n_a, n_b, -1), b[None].expand(n_a, n_b, -1)], -1)
        maps = pairs.reshape(n_a * n_b, 2 * self.shape[0], *self.shape[1:])
        return self.relation(maps).view(n_a, n_b)

    def pair_logits(self, a, b):
        return self.relation(torch.cat([a, b], -1).view(len(a), 2 * self.shape[0], *self.shape[1:]))[:, 0]

    def layer_groups(self):
        return [list(self.parameters())]


class MamlNet(nn.Module):
    """Finn et al. 2017's Omniglot network: four blocks of 3x3 convolutions with stride 2 (no
    pooling), batch norm on the batch's own statistics, ReLU; features averaged over space; a
    linear layer over ``way`` output classes (an episode of fewer classes uses the first ones)."""

    def __init__(self, cfg, n_classes: int = 0, in_channels: int = 1):
        super().__init__()
        self.layers = nn.ModuleList([conv_block(in_channels if i == 0 else 64, 64, 3, stride=2, padding=1, pool=False,
                                                track_running_stats=False) for i in range(4)])
        self.out = nn.Linear(64, cfg.way)

    def embed(self, x):
        for layer in self.layers:
            x = layer(x)
        return x.mean((2, 3))

    def forward(self, x):
        return self.out(self.embed(x))

    def layer_groups(self):
        return [list(self.parameters())]


# Conv-4 of Vinyals et al. 2016 and Snell et al. 2017 as TwinNet options: four blocks of 64 3x3
# filters, batch norm, ReLU and 2x2 max-pooling (64 features at 28x28), no fc layer
CONV4 = {"network": "conv", "input_size": 28, "channels": (64, 64, 64, 64), "kernels": (3, 3, 3, 3),
         "padding": "same", "batch_norm": True, "pool_last": True, "fc_units": 0, "init": "default"}

NETWORKS = {"conv": TwinNet, "mlp": TwinNet, "relation": RelationNet, "maml": MamlNet}


def build_network(cfg, n_classes: int = 0, in_channels: int = 1) -> nn.Module:
    """The config's network for images of ``in_channels`` channels (1 grey, 3 colour)."""
    return NETWORKS[cfg.network](cfg, n_classes, in_channels)
