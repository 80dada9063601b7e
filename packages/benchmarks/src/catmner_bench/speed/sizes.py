"""What the speed experiment measures: its sizes per profile, the issue's targets, the record schema and the
systems' report labels."""

from __future__ import annotations

from dataclasses import dataclass

SPEED_SCHEMA = "catmner-bench-speed/1"
DATASET = "twitter2015"
TARGETS = {  # issue 12, for a quiet 2-core CPU machine
    "cat_caption_epoch_s_max": 120.0,
    "cat_caption_over_hf_max": 1.0,
    "batched_tweets_per_s_min": 200.0,
    "one_tweet_ms_max": 15.0,
    "peak_fraction_min": 0.5,
}


@dataclass(frozen=True)
class SpeedSize:
    """How much the speed experiment measures (per profile)."""

    train_batches: int  # training batches timed per system and round
    rounds: int  # alternating rounds over the systems
    predict_tweets: int  # test tweets predicted in batches
    single_tweets: int  # test tweets predicted one at a time
    predict_rounds: int  # alternating rounds of the prediction timings
    growth_reps: int  # steps timed per growth point (alternating over the points of a family)
    tweet_words: tuple[int, ...]  # words per tweet of the tweet-length growth
    caption_pieces: tuple[int, ...]  # caption word pieces of the caption-length growth
    label_words: tuple[int, ...]  # label-word counts of the label-word growth
    gemm_n: int  # side of the square GEMM of the matmul peak
    gemm_reps: int  # GEMMs timed per precision (best and median kept)
    startup_runs: int  # fresh `catmner predict --text` processes timed
    before_after: bool = True  # also time CAT-MNER (caption, fp32) with each speed change undone


SIZES: dict[str, SpeedSize] = {
    "smoke": SpeedSize(2, 2, 8, 3, 1, 2, (4, 8), (4, 8), (10, 40), 256, 2, 1),
    "quick": SpeedSize(6, 5, 256, 48, 2, 3, (8, 16, 32, 64), (8, 16, 32, 64), (10, 100, 1000), 2048, 5, 3),
    "paper": SpeedSize(8, 5, 512, 64, 2, 3, (8, 16, 32, 64), (8, 16, 32, 64), (10, 100, 1000), 4096, 5, 3),
}
SYSTEM_LABELS = {
    "lm-span": "catmner TEXT (LM-SPAN)",
    "cat-caption": "CAT-MNER (caption)",
    "cat-grid": "CAT-MNER (grid)",
    "hf": "HF token classification",
}
