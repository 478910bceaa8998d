"""``t2ibench agreement``: how far each metric agrees with human ratings (with intervals)."""

from __future__ import annotations

from pathlib import Path

import typer

from t2ibench.cli._console import console


def _pairs(items: list[str] | None) -> dict[str, str]:
    from t2ibench.errors import ConfigError

    out = {}
    for item in items or []:
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise ConfigError(f"--system {item!r}: expected SCORES_NAME=RATINGS_NAME")
        out[old] = new
    return out


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def register(app: typer.Typer) -> None:
    @app.command("agreement")
    def agreement_cmd(
        ratings: Path = typer.Argument(
            ...,
            help="Human ratings: DreamBench++'s data_human_rating folder, ImagenHub's "
            "human_ratings TSVs, or a CSV (image, prompt, rater, score[, criterion, system]).",
        ),  # fmt: skip
        fmt: str = typer.Option("auto", "--format", help="auto, dreambench-pp, imagenhub or csv."),
        scores: Path = typer.Option(
            None,
            help="Per-image metric values (CSV/parquet: metric, value, image or item "
            "[, system, encoder, measure]), e.g. OUT/per_image_scores.parquet of an earlier run.",
        ),  # fmt: skip
        images: Path = typer.Option(
            None,
            help="Score these images per image first (the evaluate stage, one image a "
            "group); laid out as --layout says.",
        ),  # fmt: skip
        layout: str = typer.Option("t2ibench", help="Layout of --images (see `evaluate`)."),
        dataset: Path = typer.Option(None, help="References of --images (see `evaluate`)."),
        metric_profile: str = typer.Option(
            "judges",
            "--protocol",
            "--metric-profile",
            help="Metrics of --images: a protocol (metric definitions; --metric-profile is its "
            "old name).",
        ),
        encoders: list[str] = typer.Option(
            None, help="NAME@WEIGHTS or NAME@tiny overrides of the profile's encoders."
        ),
        metrics: list[str] = typer.Option(None, help="Only these metrics of the profile."),
        device: str = typer.Option("cpu"),
        system: list[str] = typer.Option(
            None,
            help="SCORES_NAME=RATINGS_NAME: which rated system a checkpoint is (a folder "
            "whose name starts with exactly one rated method's slug is matched already).",
        ),  # fmt: skip
        n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap draws."),
        seed: int = typer.Option(0, help="Bootstrap seed."),
        out: Path = typer.Option(..., help="Folder for agreement.csv and agreement.html."),
    ) -> None:
        """Spearman, Kendall (item-clustered bootstrap CIs), pairwise accuracy and Krippendorff's
        alpha of each metric against human ratings, beside the human inter-rater ceiling."""
        from t2ibench.analysis.agreement import (
            AgreementError,
            agreement,
            detect_format,
            prepare_scores,
            read_ratings,
            read_scores,
            write_agreement,
        )

        if (scores is None) == (images is None):
            raise AgreementError("give exactly one of --scores TABLE or --images FOLDER")
        fmt = detect_format(ratings) if fmt == "auto" and ratings.exists() else fmt
        table = read_ratings(ratings, fmt)
        if scores is not None:
            values = read_scores(scores, fmt)
        else:
            per_image = _score_images(
                images, layout, dataset, metric_profile, _split(encoders), _split(metrics),
                device, out,
            )  # fmt: skip
            values = prepare_scores(per_image, str(images), fmt)
        result = agreement(table, values, n_boot=n_boot, seed=seed, system_map=_pairs(system))
        csv_path, html_path = write_agreement(result, out, n_boot=n_boot)
        console().print(f"{len(result)} rows: {csv_path} and {html_path}")


def _score_images(images, layout, dataset, profile_name, encoders, metrics, device, out):
    """Per-image values of ``images`` under a metric profile, kept in OUT/per_image_scores.*."""
    import io

    import t2ibench.metrics  # noqa: F401  (registers the judges' encoders before they are built)
    from t2ibench import csvsafe
    from t2ibench.encoders import FeatureCache
    from t2ibench.fsutil import atomic_write
    from t2ibench.layouts import scan_layout
    from t2ibench.metric_profiles import get_metric_profile
    from t2ibench.metric_profiles.compile import check_profile, profile_encoders, profile_plans
    from t2ibench.pipeline.per_image import per_image_scores

    profile = get_metric_profile(profile_name)
    scan = scan_layout(layout, images, dataset=dataset, checkpoint=None, identifier=None)
    check_profile(profile, single_reference=scan.single_reference)
    selected = metrics or profile.metrics() or None
    if profile.defaults:  # every registered metric on the paper's encoders, as `evaluate`
        from t2ibench.pipeline.run import create_encoders
        from t2ibench.runconfig import PAPER_ENCODERS

        encs = create_encoders(list(encoders or PAPER_ENCODERS), None, device)
    else:
        encs = profile_encoders(profile, encoders, device)
    df = per_image_scores(
        scan.root,
        scan.dataset,
        encs,
        metrics=selected,
        records=scan.records,
        cache=FeatureCache(out / ".feature-cache"),
        plans=profile_plans(profile, None if profile.defaults else encs, selected),
    )
    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / "per_image_scores.parquet", index=False)
    buf = io.StringIO()
    csvsafe.to_csv(df, buf, index=False)
    atomic_write(out / "per_image_scores.csv", buf.getvalue())
    return df
