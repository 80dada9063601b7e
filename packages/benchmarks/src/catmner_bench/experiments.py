"""The paper's artefacts as benchmark experiments: which runs each one needs, and running them.

This module owns the experiment definitions: Table 1 (every runnable system on both datasets), Table 2
(cross-dataset generalisation), Table 3 (ablations), Figure 3 (data efficiency over random samplings) and
Figure 4 (attention of entity spans over the 4x4 image grid and over caption words, refined vs unrefined), and
the speed benchmark.
Each is an `Experiment` object in `EXPERIMENT_SPECS` (default systems, `plan` of RunSpecs, an `after_train`
hook); `plan` looks one up by name, and `catmner_bench.sweep.run_experiment` runs a plan through an executor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catmner_model import DATASETS, Tweet, image_path, resolve_image_dir
from catmner_model.provenance import sha256_file_memo as sha256_file

from catmner_bench.profiles import Profile
from catmner_bench.records import RunSpec
from catmner_bench.runner import BenchError, RunContext, model_config
from catmner_bench.search_plan import SEARCH_ROUNDS
from catmner_bench.systems import SYSTEMS, system_config
from catmner_bench.tweets import read_split

CROSS = (("twitter2017", "twitter2015"), ("twitter2015", "twitter2017"))  # (train, test), the paper's order


@dataclass(frozen=True)
class Experiment:
    """A paper artefact as a benchmark: its default systems, the runs it needs (`runs`) and what a trained model
    adds to a run's record (`after_train`); `catmner_bench.sweep` runs them. Its report section is rendered from the
    records by ``report.<name>_section``. Register new ones in `EXPERIMENT_SPECS`.

    The default `runs`: every dataset x system x profile seed, trained and tested on the same dataset.
    """

    name: str
    systems: tuple[str, ...]  # default systems (keys of systems.SYSTEMS), in report order
    span_only: bool = False  # span models only (no CRF baselines)
    needs_image: bool = False  # only systems with visual tokens
    visual: str | None = None  # the visual source its span models read (None: the profile's)
    scores_test: bool = True  # False: its runs are scored on validation only (the recipe search)
    in_verdicts: bool = True  # False: its records answer their own question, not the paper's claims

    def plan(
        self, ctx: RunContext, systems: Sequence[str] | None = None, datasets: Sequence[str] | None = None
    ) -> list[RunSpec]:
        """The runs under the context's profile, in execution order (systems and datasets checked first)."""
        systems = tuple(systems) if systems else self.systems
        for s in systems:
            if s not in SYSTEMS:
                raise BenchError(f"unknown system {s!r}: choose from {', '.join(SYSTEMS)}")
            if self.span_only and SYSTEMS[s].kind != "span":
                raise BenchError(f"{self.name} runs span models only; {s!r} is a CRF baseline")
        if self.needs_image:
            bad = [s for s in systems if SYSTEMS[s].variant == "text"]
            if bad:
                raise BenchError(f"{self.name} needs models that see the image; {', '.join(bad)} does not")
        datasets = tuple(datasets) if datasets else DATASETS
        for d in datasets:
            if d not in DATASETS:
                raise BenchError(f"unknown dataset {d!r}: choose from {', '.join(DATASETS)}")
        return self.runs(ctx, systems, datasets)

    def runs(self, ctx: RunContext, systems: tuple[str, ...], datasets: tuple[str, ...]) -> list[RunSpec]:
        p = ctx.profile
        return [
            RunSpec(self.name, s, d, d, seed, system_config(s, p, visual=self.visual))
            for d in datasets
            for s in systems
            for seed in p.seeds
        ]

    def after_train(self, ctx: RunContext, spec: RunSpec) -> Callable[[Path, Any], dict[str, Any]] | None:
        """A hook ``(model_dir, data) -> extra record fields`` run after a span model is trained (None: none)."""
        return None

    def measure(self, ctx: RunContext, recipe_of: Callable[[RunSpec], Any]) -> dict[str, Any] | None:
        """An experiment that measures instead of training planned runs returns its result here (None: it
        plans runs, which `catmner_bench.sweep.run_experiment` runs through an executor)."""
        return None


@dataclass(frozen=True)
class CrossDataset(Experiment):
    """Table 2: train on one dataset, test on the other (both directions, the paper's order)."""

    def runs(self, ctx: RunContext, systems: tuple[str, ...], datasets: tuple[str, ...]) -> list[RunSpec]:
        p = ctx.profile
        return [
            RunSpec(self.name, s, train_ds, test_ds, seed, system_config(s, p))
            for train_ds, test_ds in CROSS
            if train_ds in datasets or test_ds in datasets
            for s in systems
            for seed in p.seeds
        ]


def fig3_config(system: str, p: Profile, alpha: int, visual: str | None = None) -> dict[str, Any]:
    """The run config of ``system`` in Figure 3 at ``alpha`` training tweets: the profile's per-alpha epochs,
    and how often it validates where that is not after every epoch."""
    cfg = system_config(system, p, epochs=p.fig3_epochs_for(alpha), visual=visual)
    if (every := p.fig3_valid_every(alpha)) > 1:
        cfg = {**cfg, "valid_every": every}
    return cfg


@dataclass(frozen=True)
class DataEfficiency(Experiment):
    """Figure 3: alpha training tweets in the profile's sizes, several random samplings of each."""

    def samplings(self, p: Profile) -> tuple[Sequence[int], int]:
        """The alphas and the number of samplings of each."""
        return p.fig3_alphas, p.fig3_samplings

    def runs(self, ctx: RunContext, systems: tuple[str, ...], datasets: tuple[str, ...]) -> list[RunSpec]:
        p = ctx.profile
        alphas, samplings = self.samplings(p)
        specs = []
        for d in datasets:
            for alpha in alphas:
                for index in range(samplings):
                    for s in systems:
                        # one seed per sampling, the same for every system (paired; paper Sec. 4.3)
                        seed = p.seeds[0] + index
                        cfg = fig3_config(s, p, alpha, visual=self.visual)
                        specs.append(RunSpec(self.name, s, d, d, seed, cfg, {"alpha": alpha, "index": index}))
        return specs


@dataclass(frozen=True)
class Decisive(DataEfficiency):
    """The decisive experiment (docs/decisive-experiment.md, decisive.py): the arms at the profile's decisive
    alphas and samplings on Twitter-2017 (unless datasets are given), paired by sampling and seed, each run
    with the Figure-3 recipe of its alpha and the visual source of the experiment."""

    def samplings(self, p: Profile) -> tuple[Sequence[int], int]:
        return p.decisive_alphas, p.decisive_samplings

    def plan(
        self, ctx: RunContext, systems: Sequence[str] | None = None, datasets: Sequence[str] | None = None
    ) -> list[RunSpec]:
        return super().plan(ctx, systems, datasets or ("twitter2017",))


@dataclass(frozen=True)
class AttentionMaps(Experiment):
    """Figure 4: after training, the attention of gold entity spans over the visual tokens (`fig4_attention`):
    models with grid features over the 4x4 grid, and, where the profile's visual source has captions, its
    caption models (Table 1's, reused when finished) over the caption word pieces."""

    def runs(self, ctx: RunContext, systems: tuple[str, ...], datasets: tuple[str, ...]) -> list[RunSpec]:
        p = ctx.profile
        captions = "caption" in (p.visual or "")
        specs = []
        for d in datasets:
            # grid maps need the dataset's images; without any, only the caption maps (if the profile has them)
            grid = not captions or has_images(ctx, d)
            for s in systems:
                for seed in p.seeds:
                    if grid:
                        specs.append(
                            RunSpec(self.name, s, d, d, seed, system_config(s, p, visual=self.visual))
                        )
                    if captions:
                        specs.append(RunSpec(self.name, s, d, d, seed, system_config(s, p)))
        return specs

    def after_train(self, ctx: RunContext, spec: RunSpec) -> Callable[[Path, Any], dict[str, Any]] | None:
        return lambda model_dir, data: fig4_attention(ctx, spec, model_dir)


@dataclass(frozen=True)
class RecipeSearch(Experiment):
    """The recipe search (issue: a recipe chosen on validation): every setting of every `SEARCH_ROUNDS` round
    for each system, dataset and seed, scored on the validation split only (a config two rounds share is one
    run); the report marks each round's choice (`report.search.search_choice`), and test is scored only
    once a choice is the default (Table 1). A setting equal to a finished Table 1 run reuses it."""

    def runs(self, ctx: RunContext, systems: tuple[str, ...], datasets: tuple[str, ...]) -> list[RunSpec]:
        p = ctx.profile
        specs: dict[str, RunSpec] = {}
        rounds = [r for r in SEARCH_ROUNDS if ctx.search_rounds is None or r.name in ctx.search_rounds]
        wanted = ctx.search_settings
        matched: set[str] = set()
        for d in datasets:
            for rnd in reversed(rounds):  # the newest round first: it decides the recipe
                for s in systems:
                    for name, cfg in rnd.configs(s, p):
                        if wanted is not None:
                            hits = {w for w in wanted if name.lower().startswith(w)}
                            matched |= hits
                            if not hits:
                                continue
                        for seed in p.seeds:
                            spec = RunSpec(self.name, s, d, d, seed, cfg)
                            specs.setdefault(spec.run_id, spec)
        if wanted is not None and (missed := [w for w in wanted if w not in matched]):
            raise BenchError(
                f"--setting {', '.join(map(repr, missed))}: no such setting in round(s) "
                f"{', '.join(r.name for r in rounds)} for {', '.join(systems)}"
            )
        return list(specs.values())


@dataclass(frozen=True)
class Speed(Experiment):
    """Speed: one measurement run of its own kind (catmner_bench.speed), not a table of trained systems."""

    def plan(
        self, ctx: RunContext, systems: Sequence[str] | None = None, datasets: Sequence[str] | None = None
    ) -> list[RunSpec]:
        raise BenchError("speed plans no trained runs: `catmner-bench run speed` measures them itself")

    def measure(self, ctx: RunContext, recipe_of: Callable[[RunSpec], Any]) -> dict[str, Any] | None:
        from catmner_bench.speed import run_speed_experiment

        return run_speed_experiment(ctx, recipe_of)


EXPERIMENT_SPECS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "table1",
            (
                "bilstm-crf",
                "cnn-bilstm-crf",
                "lm-crf",
                "lm-span",
                "mm",
                "umt",
                "cat-textual",
                "cat-visualgenome",
            ),
        ),
        CrossDataset("table2", ("lm-span", "mm", "umt", "cat-textual"), span_only=True),
        Experiment("table3", ("cat-textual", "mm", "t2i", "i2t", "lm-span", "cat-visualgenome")),
        DataEfficiency("fig3", ("lm-span", "mm", "umt", "cat-textual"), span_only=True),
        # Figure 4 draws attention over the 4x4 grid: its models read grid features
        AttentionMaps("fig4", ("cat-textual", "mm"), span_only=True, needs_image=True, visual="grid"),
        RecipeSearch("search", ("lm-span", "cat-textual"), span_only=True, scores_test=False),
        # TEXT, MM, CAT-MNER with real and with random words, MM with an empty caption (decisive.ARMS); the caption
        # path, as the issue that called for it measured; its records stay out of the paper verdicts
        Decisive(
            "decisive",
            ("lm-span", "mm", "cat-textual", "cat-random", "mm-empty"),
            span_only=True,
            visual="caption",
            in_verdicts=False,
        ),
        Speed("speed", ()),
    )
}
EXPERIMENTS: tuple[str, ...] = tuple(EXPERIMENT_SPECS)
DEFAULT_SYSTEMS: dict[str, tuple[str, ...]] = {n: e.systems for n, e in EXPERIMENT_SPECS.items() if e.systems}


def experiment(name: str) -> Experiment:
    """The registered experiment ``name`` (BenchError naming the choices otherwise)."""
    if name not in EXPERIMENT_SPECS:
        raise BenchError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENT_SPECS[name]


def plan(
    experiment_name: str,
    ctx: RunContext,
    systems: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> list[RunSpec]:
    """The runs of an experiment under the context's profile, in execution order."""
    return experiment(experiment_name).plan(ctx, systems, datasets)


# ------------------------------------------------------------------------------------------------- Figure 4
def has_images(ctx: RunContext, dataset: str) -> bool:
    """Whether any image file of ``dataset`` is in the image folder (the grid maps need one at least)."""
    images = resolve_image_dir(ctx.image_dir, ctx.data_dir)
    folder = images / f"{dataset}_images" if images is not None else None
    return folder is not None and folder.is_dir() and any(p.is_file() for p in folder.iterdir())


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
    {"caption_attention": ...} over the caption word pieces of test tweets (`caption_attention`). Each map is
    the last layer's text->visual attention probabilities, averaged over heads and over the first word pieces
    of the span's words, renormalised over the grid cells (row-major, cell 0 top-left) or the caption's real
    pieces.
    """
    from catmner_model import Predictor

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
