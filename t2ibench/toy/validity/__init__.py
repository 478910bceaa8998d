"""Validity of the metrics on the toy world: each metric against the probe's ground truth.

The paper could only compare metrics with each other; in the toy world the probe
(:mod:`t2ibench.toy.probe`) says what every generated image actually shows, so each metric can be
checked against what it claims to measure:

- fidelity (image similarity, centroid distance, Fréchet distance) vs the **concept rate** on train
  and trigger prompts: the share of images that show the leaf's concept;
- text alignment vs the **attribute-follow rate** on alter and style prompts: the share of images
  whose probed attributes match the base-vocabulary attributes the prompt names;
- Vendi vs the number of **distinct probe outcomes** among the images;
- style loss vs the **base-change rate**: 1 − the share of seed-paired base and tuned images whose
  probed background, colour and style agree.

The statistics respect how the sweep is built (see :func:`validity_table`): the correlation is taken
**within** each leaf × epoch stratum (leaves differ in level, so a pooled correlation mixes a
between-leaf effect into the answer), its confidence interval comes from a **cluster bootstrap over
runs** (a run's checkpoints, leaves and prompt types share one trained model, so the run is the
unit of independence), its p-value from permuting run labels, and the p-values are **Holm**-adjusted
across every metric/ground-truth row. Groups of fewer than :data:`MIN_IMAGES` images are flagged.
:func:`counterfactual_alignment` scores the same images against their prompts with the attribute
words swapped: an alignment metric that measures attributes must lose alignment.

``probe_outcomes(sweep)`` runs the probe once over every image of every run (cached by image hash in
``<sweep>/probe_cache.parquet``), ``validity_table(sweep)`` joins the results rows and computes the
statistics, ``write_validity_report(sweep, out)`` writes the CSVs, Markdown and self-contained HTML
report through :mod:`t2ibench.analysis.report`, the project's one report renderer.

One module per step: :mod:`.ground_truth` (what each metric should track), :mod:`.outcomes`
(the probe over the images), :mod:`.joined` (results rows + ground truth), :mod:`.statistics`,
:mod:`.counterfactual` (swapped attribute words), :mod:`.report`; :mod:`.cli` is the
``t2ibench toy-validity`` command, registered through the ``t2ibench.commands`` entry point.
"""

from __future__ import annotations

from t2ibench.toy.validity.counterfactual import (
    counterfactual_alignment,
    counterfactual_summary,
    swap_attributes,
)
from t2ibench.toy.validity.ground_truth import (
    ATTRS,
    GROUP_KEYS,
    PRESERVED,
    Pair,
    outcome_tuple,
    requested_attributes,
    shows_concept,
)
from t2ibench.toy.validity.joined import (
    joined_table,
)
from t2ibench.toy.validity.outcomes import (
    CACHE_NAME,
    OUTCOMES_NAME,
    has_images,
    probe_images,
    probe_outcomes,
    probed_images,
    read_outcomes,
    run_dirs,
)
from t2ibench.toy.validity.report import (
    CONFOUND,
    write_validity_report,
)
from t2ibench.toy.validity.statistics import (
    ALPHA,
    FEW_RUNS,
    MIN_IMAGES,
    N_BOOT,
    N_PERM,
    VALIDITY_COLUMNS,
    by_leaf_table,
    cluster_bootstrap,
    cluster_matrices,
    holm,
    percentile_ci,
    permutation_p,
    stratified_spearman,
    validity_table,
)

__all__ = [
    "ALPHA",
    "ATTRS",
    "CACHE_NAME",
    "CONFOUND",
    "FEW_RUNS",
    "GROUP_KEYS",
    "MIN_IMAGES",
    "N_BOOT",
    "N_PERM",
    "OUTCOMES_NAME",
    "PRESERVED",
    "Pair",
    "VALIDITY_COLUMNS",
    "by_leaf_table",
    "cluster_bootstrap",
    "cluster_matrices",
    "counterfactual_alignment",
    "counterfactual_summary",
    "has_images",
    "holm",
    "joined_table",
    "outcome_tuple",
    "percentile_ci",
    "permutation_p",
    "probe_images",
    "probe_outcomes",
    "probed_images",
    "read_outcomes",
    "requested_attributes",
    "run_dirs",
    "shows_concept",
    "stratified_spearman",
    "swap_attributes",
    "validity_table",
    "write_validity_report",
]
