"""The paper's artefacts as benchmark experiments: which runs each one needs, and running them.

This module owns the experiment definitions: Table 1 (every runnable system on both datasets), Table 2
(cross-dataset generalisation), Table 3 (ablations), Figure 3 (data efficiency over random samplings) and
Figure 4 (attention of entity spans over the 4x4 image grid, refined vs unrefined). `plan` lists the RunSpecs
of an experiment; `run_experiment` runs them (skipping finished ones) and returns their records.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from catmner_model.data import DATASETS, Tweet, image_path, resolve_image_dir

from catmner_bench.records import RunSpec, sha256_file
from catmner_bench.runner import (
    SYSTEMS,
    BenchError,
    RunContext,
    model_config,
    read_split,
    run_spec,
    system_config,
)

EXPERIMENTS = ("table1", "table2", "table3", "fig3", "fig4", "speed")  # speed: catmner_bench.speed
DEFAULT_SYSTEMS: dict[str, tuple[str, ...]] = {
    "table1": ("bilstm-crf", "cnn-bilstm-crf", "lm-crf", "lm-span", "mm", "cat-textual", "cat-visualgenome"),
    "table2": ("lm-span", "cat-textual"),
    "table3": ("cat-textual", "mm", "t2i", "i2t", "lm-span", "cat-visualgenome"),
    "fig3": ("lm-span", "mm", "cat-textual"),
    "fig4": ("cat-textual", "mm"),
}
CROSS = (("twitter2017", "twitter2015"), ("twitter2015", "twitter2017"))  # (train, test), the paper's order


def plan(
    experiment: str,
    ctx: RunContext,
    systems: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> list[RunSpec]:
    """The runs of an experiment under the context's profile, in execution order."""
    if experiment not in EXPERIMENTS:
        raise BenchError(f"unknown experiment {experiment!r}: choose one of {', '.join(EXPERIMENTS)}")
    systems = tuple(systems) if systems else DEFAULT_SYSTEMS[experiment]
    for s in systems:
        if s not in SYSTEMS:
            raise BenchError(f"unknown system {s!r}: choose from {', '.join(SYSTEMS)}")
        if experiment in ("table2", "fig3", "fig4") and SYSTEMS[s].kind != "span":
            raise BenchError(f"{experiment} runs span models only; {s!r} is a CRF baseline")
    if experiment == "fig4":
        bad = [s for s in systems if SYSTEMS[s].variant == "text"]
        if bad:
            raise BenchError(f"fig4 needs models that see the image; {', '.join(bad)} does not")
    datasets = tuple(datasets) if datasets else DATASETS
    for d in datasets:
        if d not in DATASETS:
            raise BenchError(f"unknown dataset {d!r}: choose from {', '.join(DATASETS)}")
    p = ctx.profile
    specs: list[RunSpec] = []
    if experiment == "table2":
        for train_ds, test_ds in CROSS:
            if train_ds not in datasets and test_ds not in datasets:
                continue
            for s in systems:
                for seed in p.seeds:
                    specs.append(RunSpec(experiment, s, train_ds, test_ds, seed, system_config(s, p)))
    elif experiment == "fig3":
        for d in datasets:
            for alpha in p.fig3_alphas:
                for index in range(p.fig3_samplings):
                    for s in systems:
                        # one training seed per sampling: "averaged over samplings and runs" (paper Sec. 4.3)
                        seed = p.seeds[0] + index
                        cfg = system_config(s, p, epochs=p.fig3_epochs)
                        specs.append(
                            RunSpec(experiment, s, d, d, seed, cfg, {"alpha": alpha, "index": index})
                        )
    else:
        for d in datasets:
            for s in systems:
                for seed in p.seeds:
                    # Figure 4 draws attention over the 4x4 grid: its models read grid features
                    cfg = system_config(s, p, visual="grid" if experiment == "fig4" else None)
                    specs.append(RunSpec(experiment, s, d, d, seed, cfg))
                    if experiment == "fig4" and "caption" in (p.visual or ""):
                        # and over the caption words: the profile's caption models (Table 1's, reused)
                        specs.append(RunSpec(experiment, s, d, d, seed, system_config(s, p)))
    return specs


def run_experiment(
    experiment: str,
    ctx: RunContext,
    systems: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run (or skip, when finished) every run of an experiment. Returns {"records", "ran", "skipped"}."""
    if experiment == "speed":  # one measurement run of its own kind, not a table of trained systems
        from catmner_bench.speed import run_speed_experiment

        return run_speed_experiment(ctx)
    specs = plan(experiment, ctx, systems, datasets)
    records, ran, skipped = [], 0, 0
    for spec in specs:
        hook = (
            (lambda model_dir, data, spec=spec: fig4_attention(ctx, spec, model_dir))
            if experiment == "fig4"
            else None
        )
        rec, now = run_spec(ctx, spec, after_train=hook)
        records.append(rec)
        ran += now
        skipped += not now
    return {
        "experiment": experiment,
        "records": records,
        "ran": ran,
        "skipped": skipped,
        "output": str(ctx.output),
    }


# ------------------------------------------------------------------------------------------------- Figure 4
def image_tweets(ctx: RunContext, dataset: str) -> list[tuple[str, Tweet, Path]]:
    """(split, tweet, image) for every tweet of ``dataset`` whose image file exists, in split/file order."""
    images = resolve_image_dir(ctx.image_dir, ctx.data_dir)
    if images is None:
        raise BenchError("fig4 needs tweet images: pass --image-dir (or --data-dir holding tweet_images/)")
    out = []
    for split in ("train", "valid", "test"):
        for t in read_split(dataset, split, ctx.data_dir):
            p = image_path(dataset, t.imgid, images, t.where)
            if p is not None:
                out.append((split, t, p))
    if not out:
        raise BenchError(f"no image of {dataset} found under {images}/{dataset}_images")
    return out


def fig4_attention(ctx: RunContext, spec: RunSpec, model_dir: Path) -> dict[str, Any]:
    """Attention of gold entity spans over the visual tokens of one trained model, for the run record.

    The grid runs (visual "grid"): {"attention": ...} over the 4x4 grid of every tweet whose image exists
    (`grid_attention`); the caption runs (the profile's caption source, Table 1's models):
    {"caption_attention": ...} over the caption word pieces of test tweets (`caption_attention`). Each map is the last layer's text->visual attention
    probabilities, averaged over heads and over the first word pieces of the span's words, renormalised over
    the grid cells (row-major, cell 0 top-left) or the caption's real pieces.
    """
    from catmner_model.predict import Predictor

    predictor = Predictor(model_dir, device="cpu", feature_cache=ctx.feature_cache)
    cfg = model_config(predictor.model)
    if not cfg.uses_grid and not cfg.uses_caption:
        raise BenchError(f"{model_dir}: fig4 draws attention over the image; this model has no visual tokens")
    if spec.config.get("visual") == "grid" or not cfg.uses_caption:  # the grid runs of Figure 4
        if not cfg.uses_grid:
            raise BenchError(f"{model_dir}: fig4 draws the 4x4 grid; this model has no grid visual source")
        return {"attention": grid_attention(ctx, spec, predictor)}
    return {"caption_attention": caption_attention(ctx, spec, predictor)}


FIG4_CAPTION_TWEETS = 40  # test tweets (with entities and a caption) whose caption attention is recorded


def caption_attention(ctx: RunContext, spec: RunSpec, predictor: Any) -> dict[str, Any]:
    """Attention of the gold entity spans of the first test tweets over their caption's word pieces.

    Per entity: the last layer's text->visual attention (mean over heads and the span's first word pieces)
    over the caption pieces (after the grid tokens when the model has both), renormalised over the real
    pieces. Returns {"layer", "cases": [{imgid, tokens, entity, caption, pieces, weights}]}."""
    import torch

    model, collate = predictor.model.eval(), predictor.collate
    cfg = model_config(model)
    tokenizer = collate.pieces.tokenizer
    source = predictor.source(
        spec.train_dataset, data_dir=ctx.data_dir, image_dir=ctx.image_dir, captions=ctx.captions
    )
    cases: list[dict[str, Any]] = []
    n_tweets = 0
    for tweet in read_split(spec.train_dataset, "test", ctx.data_dir):
        if n_tweets >= FIG4_CAPTION_TWEETS:
            break
        if not tweet.entities:
            continue
        example = source.example(tweet)
        if not example.caption:
            continue
        batch = collate([example])
        if batch.caption_ids is None:
            continue
        with torch.inference_mode():
            res = model(batch, output_attentions=True)
        if res.attentions is None:
            raise BenchError("the model returned no text->visual attention")
        n_grid = 0
        if cfg.uses_grid:
            n_grid = batch.image_features.shape[1] if batch.image_features is not None else 1
        real = batch.caption_mask[0]
        att = res.attentions[0, -1].mean(0)[:, n_grid : n_grid + real.numel()][:, real]  # (T, Lc real)
        pieces = tokenizer.convert_ids_to_tokens(batch.caption_ids[0][real].tolist())
        n_words = int(batch.word_mask[0].sum())
        n_tweets += 1
        for ent in tweet.entities:
            if ent.end > n_words:
                continue  # truncated away
            pos = batch.word_index[0, ent.start : ent.end]
            w = att[pos].mean(0)
            w = w / w.sum().clamp_min(1e-12)
            cases.append(
                {
                    "dataset": spec.train_dataset,
                    "split": "test",
                    "imgid": tweet.imgid,
                    "tokens": tweet.tokens,
                    "entity": {"start": ent.start, "end": ent.end, "type": ent.type},
                    "caption": example.caption,
                    "pieces": pieces,
                    "weights": [round(float(x), 6) for x in w],
                }
            )
    return {"layer": "last", "tweets": n_tweets, "cases": cases}


def grid_attention(ctx: RunContext, spec: RunSpec, predictor: Any) -> dict[str, Any]:
    """The 4x4 grid maps of `fig4_attention` (the tweets whose image file exists)."""
    import torch

    model, collate = predictor.model.eval(), predictor.collate
    source = predictor.source(spec.train_dataset, data_dir=ctx.data_dir, image_dir=ctx.image_dir)
    n_cells = model_config(model).num_image_tokens
    cases = []
    for split, tweet, path in image_tweets(ctx, spec.train_dataset):
        if not tweet.entities:
            continue
        example = source.example(tweet)
        if example.image_features is None:
            continue  # unreadable image: nothing to draw
        batch = collate([example])
        with torch.inference_mode():
            out = model(batch, output_attentions=True)
        if out.attentions is None:
            raise BenchError("the model returned no text->visual attention")
        att = out.attentions[0, -1].mean(0)[:, :n_cells]  # (T, I) last layer, mean over heads, grid cells
        n_words = int(batch.word_mask[0].sum())
        for ent in tweet.entities:
            if ent.end > n_words:
                continue  # truncated away
            pos = batch.word_index[0, ent.start : ent.end]  # first word piece of each word of the span
            grid = att[pos].mean(0)  # (I,)
            grid = grid / grid.sum().clamp_min(1e-12)
            cases.append(
                {
                    "dataset": spec.train_dataset,
                    "split": split,
                    "imgid": tweet.imgid,
                    "tokens": tweet.tokens,
                    "entity": {"start": ent.start, "end": ent.end, "type": ent.type},
                    "image": str(path),
                    "image_sha256": sha256_file(path),
                    "grid": [round(float(x), 6) for x in grid],
                }
            )
    return {"layer": "last", "grid": [4, 4], "cases": cases}
