"""Text-image alignment: the mean cosine between each image and its own (cleaned) prompt."""

from __future__ import annotations

import torch

from t2ibench.metrics._common import StreamingMetric, as_matrix, l2_normalize

CONVENTIONS = ("cosine", "clipscore")


def _pair_scores(
    image_feats: torch.Tensor, text_feats: torch.Tensor, convention: str
) -> torch.Tensor:
    if convention not in CONVENTIONS:
        raise ValueError(
            f"text_alignment: convention must be one of {CONVENTIONS}, got {convention!r}"
        )
    img = l2_normalize(as_matrix(image_feats, "image_feats"))
    txt = l2_normalize(as_matrix(text_feats, "text_feats"))
    if img.shape != txt.shape:
        raise ValueError(
            f"text_alignment: image_feats {tuple(img.shape)} and text_feats {tuple(txt.shape)} "
            "must be paired row by row"
        )
    cos = (img * txt).sum(dim=1)
    # CLIPScore (Hessel et al. 2021) with w = 100, as torchmetrics' CLIPScore reports it.
    return cos if convention == "cosine" else 100.0 * cos.clamp_min(0)


def text_alignment(
    image_feats: torch.Tensor, text_feats: torch.Tensor, convention: str = "cosine"
) -> float:
    """Mean over pairs of cos(image_i, text_i); ``"clipscore"`` gives 100·max(cos, 0) per pair."""
    return float(_pair_scores(image_feats, text_feats, convention).mean())


class TextAlignment(StreamingMetric):
    """Streaming :func:`text_alignment`."""

    _state = ("total", "n")

    def __init__(self, convention: str = "cosine") -> None:
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        self.convention = convention
        self.total = 0.0
        self.n = 0

    def update(self, image_feats: torch.Tensor, text_feats: torch.Tensor) -> None:
        s = _pair_scores(image_feats, text_feats, self.convention)
        self.total += float(s.sum())
        self.n += s.numel()

    def compute(self) -> float:
        if not self.n:
            raise ValueError("TextAlignment: no pairs")
        return self.total / self.n


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
        # "clipscore" (100·max(cos, 0)) instead: evaluate_images(metric_options=...)
        options={"convention": "cosine"},
        report=ReportUse(
            criterion=("alter",),
            shap=("alter",),
            epochs=("train", "alter"),
            pairs=(("alter", "image_similarity:alter"), ("train", "image_similarity:train")),
        ),
    )
)
