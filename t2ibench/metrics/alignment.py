"""Text-image alignment: the mean cosine between each image and its own (cleaned) prompt.

Three conventions, named for what they compute (cos = cosine of a paired image and text row):

- ``"cosine"`` (default): mean of cos.
- ``"clipscore-hessel"``: mean of 2.5·max(cos, 0), CLIPScore as Hessel et al. (2021, eq. 1, w = 2.5)
  define it: each pair is clamped at 0 before averaging.
- ``"clipscore-torchmetrics"``: max(100·mean cos, 0), torchmetrics' ``CLIPScore``: the *mean* is
  clamped, and the scale is 100.

The two CLIPScore forms differ whenever some pairs have a negative cosine (at scale 100, pairs with
cos 1 and −0.995 give 50.0 clamped per pair, 0.25 clamped in the mean). ``"clipscore"`` alone is
refused as ambiguous.
"""

from __future__ import annotations

import torch

from t2ibench.metrics._common import StreamingMetric, as_matrix, l2_normalize

CONVENTIONS = ("cosine", "clipscore-hessel", "clipscore-torchmetrics")
HESSEL_W = 2.5  # Hessel et al. 2021, §3: "we set w = 2.5"
TORCHMETRICS_SCALE = 100.0  # torchmetrics.multimodal.CLIPScore: 100·cos, mean, then max(·, 0)


def check_convention(convention: str) -> str:
    if convention == "clipscore":
        raise ValueError(
            "text_alignment: convention 'clipscore' is ambiguous; use 'clipscore-hessel' "
            "(mean of 2.5·max(cos, 0) per pair, Hessel et al.) or 'clipscore-torchmetrics' "
            "(max(100·mean cos, 0), torchmetrics' CLIPScore)"
        )
    if convention not in CONVENTIONS:
        raise ValueError(
            f"text_alignment: convention must be one of {CONVENTIONS}, got {convention!r}"
        )
    return convention


def _pair_terms(
    image_feats: torch.Tensor, text_feats: torch.Tensor, convention: str
) -> torch.Tensor:
    """Per pair, the term whose mean is summed: cos, 2.5·max(cos, 0) or 100·cos."""
    check_convention(convention)
    img = as_matrix(image_feats, "image_feats")
    txt = as_matrix(text_feats, "text_feats")
    if img.shape != txt.shape:
        raise ValueError(
            f"text_alignment: image_feats {tuple(img.shape)} and text_feats {tuple(txt.shape)} "
            "must be paired row by row"
        )
    cos = (l2_normalize(img, "image_feats") * l2_normalize(txt, "text_feats")).sum(dim=1)
    if convention == "clipscore-hessel":
        return HESSEL_W * cos.clamp_min(0)
    if convention == "clipscore-torchmetrics":
        return TORCHMETRICS_SCALE * cos
    return cos


def _finish(mean: float, convention: str) -> float:
    return max(mean, 0.0) if convention == "clipscore-torchmetrics" else mean


def text_alignment(
    image_feats: torch.Tensor, text_feats: torch.Tensor, convention: str = "cosine"
) -> float:
    """Alignment of paired rows ``image_feats`` (n, d) and ``text_feats`` (n, d) in one of
    :data:`CONVENTIONS` (see the module docstring)."""
    terms = _pair_terms(image_feats, text_feats, convention)
    return _finish(float(terms.mean()), convention)


class TextAlignment(StreamingMetric):
    """Streaming :func:`text_alignment`; shards of different conventions do not merge."""

    _state = ("total", "n")
    _options = ("convention",)

    def __init__(self, convention: str = "cosine") -> None:
        self.convention = check_convention(convention)
        self.total = 0.0
        self.n = 0

    def update(self, image_feats: torch.Tensor, text_feats: torch.Tensor) -> None:
        s = _pair_terms(image_feats, text_feats, self.convention)
        self.total += float(s.sum())
        self.n += s.numel()

    def compute(self) -> float:
        if not self.n:
            raise ValueError("TextAlignment: no pairs")
        return _finish(self.total / self.n, self.convention)


# --- registration ---------------------------------------------------------------------------------
from t2ibench.metrics.registry import MetricSpec, ReportUse, register_metric  # noqa: E402

register_metric(
    MetricSpec(
        name="text_alignment",
        criterion="controllability",
        encoder="clip-l14",
        references=("prompts",),
        higher_is_better=True,
        range=(-1.0, 1.0),
        function=text_alignment,
        stream=TextAlignment,
        inputs=("image_feats", "text_feats"),
        description="mean cosine between each image and its cleaned prompt",
        # "clipscore-hessel" or "clipscore-torchmetrics" instead: evaluate_images(metric_options=...)
        options={"convention": "cosine"},
        # A metric profile's clamp is one of the CLIPScore conventions: Hessel's mean of
        # 2.5·max(cos, 0) (clamp per pair), torchmetrics' max(100·mean cos, 0) (clamp of the mean).
        clamps={
            "pair": ({"convention": "clipscore-hessel"}, 2.5),
            "mean": ({"convention": "clipscore-torchmetrics"}, 100.0),
        },
        report=ReportUse(
            criterion=("alter",),
            shap=("alter",),
            epochs=("train", "alter"),
            pairs=(("alter", "image_similarity:alter"), ("train", "image_similarity:train")),
        ),
    )
)
