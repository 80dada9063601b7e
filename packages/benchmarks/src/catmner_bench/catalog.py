"""What the report calls the planner's things, outside the planner: each system's label, in the registry's order
(the order of the report's rows; `catmner_bench.systems` takes its labels from here, and a system without
records still has its label, e.g. in a "not run yet" row), the datasets' labels, and what each recipe-search
round tried (its settings are `catmner_bench.search_plan.SEARCH_ROUNDS`'). The report reads these and the run
records; it imports nothing that plans or trains runs."""

from __future__ import annotations

SYSTEM_LABELS: dict[str, str] = {
    "bilstm-crf": "BiLSTM-CRF",
    "cnn-bilstm-crf": "CNN-BiLSTM-CRF",
    "lm-crf": "LM-CRF",
    "lm-span": "LM-SPAN (TEXT)",
    "mm": "MM (CAT-MNER w/o Refine)",
    "t2i": "CAT-MNER w/o I2T Refine",
    "i2t": "CAT-MNER w/o T2I Refine",
    "cat-textual": "CAT-MNER (textual KB)",
    "cat-visualgenome": "CAT-MNER (multimodal KB)",
    "cat-grid": "CAT-MNER (textual KB, 4x4 grid)",
    "pgim-span": "LM-SPAN + PGIM knowledge",
    "cat-pgim": "CAT-MNER + PGIM knowledge",
    "umt": "UMT (captions)",
    "umt-grid": "UMT (4x4 grid)",
    "lm-span-shape": "LM-SPAN + word shapes",
    "lm-span-char": "LM-SPAN + char CNN",
    "cat-random": "CAT-MNER, random words (frequency-matched)",
    "mm-empty": "MM, empty caption",
    "mm-block": "MM, per-block softmax",
    "cat-block": "CAT-MNER, per-block softmax",
    "cat-sal-qk": "CAT-MNER, learned saliency from |QK^T|'s scale",
    "cat-sal-lr": "CAT-MNER, learned saliency at its own lr",
    "cat-sal-fromqk": "CAT-MNER, learned saliency started at |QK^T| / s",
    "cat-sal-paper": "CAT-MNER, the paper's saliency",
    "cat-sal-keys": "CAT-MNER, saliency x #keys",
    "cat-sal-learned": "CAT-MNER, learned saliency scale",
}
SYSTEM_ORDER: tuple[str, ...] = tuple(SYSTEM_LABELS)  # the report's rows follow it
DATASET_LABEL = {"twitter2015": "Twitter-2015", "twitter2017": "Twitter-2017"}

# the recipe search's rounds in order: name -> what the round tried
SEARCH_ROUNDS: dict[str, str] = {
    "1": "one factor at a time around the first quick recipe (encoder lr 5e-5, batch 16, 3 epochs)",
    "2": (
        "around encoder lr 1e-4, round 1's lead when round 2 was planned (+2.4 validation F1 for TEXT; 2e-4, "
        "added to round 1 past the grid's edge afterwards, is compared with it here), within the quick "
        "profile's 3-epoch budget: the factors that gained in round 1 tried again on it (6 epochs, which "
        "doubles every run, is left to the profiles without that budget)"
    ),
    "3": (
        "the refinement's options and the epochs on the mended caption path (captions as the second segment, "
        "issue 28), around the quick recipe of then (encoder lr 1e-4, 3 epochs, joint softmax, learned "
        "saliency): the paper's per-block softmax, four saliency scales, and 10 epochs with early stopping; "
        "saliency settings run only for models with label words, the softmax only for models with a caption"
    ),
}


def system_label(system: str) -> str:
    """A system's row label in reports (its key when the catalog has none)."""
    return SYSTEM_LABELS.get(system, system)
