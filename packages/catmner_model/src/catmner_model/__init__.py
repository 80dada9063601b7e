"""catmner_model: the CAT-MNER model, data layer, training and evaluation.

The public Python API (imported lazily, so ``import catmner_model`` stays cheap)::

    from catmner_model import TrainConfig, evaluate_model, load_model, train_model

    record = train_model(TrainConfig(dataset="twitter2017", visual="caption", labels="textual", epochs=3))
    model = load_model(record["model_dir"])                      # a Predictor
    model.predict(["Messi scores for Barcelona"], captions=["a soccer player on a field"])
    evaluate_model(record["model_dir"], "twitter2017", "test")  # lenient + strict P/R/F1, per type

(``train_model`` / ``evaluate_model``, not ``train`` / ``evaluate``: those names are the package's modules.)
Errors a user can fix are `CatmnerError` (one-line messages).

The public names, by what they serve (each resolves to the module that owns it, see ``_API``):

- models and training: `CatMnerConfig`, `CatMner`, `create_model` / `load_pretrained` (any registered model
  family: `ModelFamily`, `register_family`), `CRF` (the linear-chain CRF of UMT and the tagging baselines),
  `list_configs`, `load_config` (the bundled named configs), `TrainConfig`, `train_model`, `RunRecord` (the typed run record);
- prediction and evaluation: `Predictor`, `load_model`, `PredictInput`, `predict_examples` (batched greedy
  decoding of prepared examples), `PREDICT_BATCH_SIZE`, `evaluate_model`;
- data: `Tweet`, `Entity`, `Example` (a tweet with its visual inputs, what the collator batches),
  `load_split`, `split_path`, `resolve_data_dir`, `resolve_image_dir`, `image_path`, `DATASETS`,
  `ENTITY_TYPES`;
- visual inputs: `VisualSource`, `read_pgim`, `resolve_pgim` (PGIM knowledge files);
- errors: `CatmnerError`.

Code that assembles its own runs (the benchmarks: the speed benchmark steps through the trainer's own epoch
loop, the CRF baselines reuse the text-encoder loader and the character CNN, records use the atomic writes and
the provenance) imports the public (non-underscore) names of the owning modules listed in `PUBLIC_MODULES`;
every other module is internal (tests/benchmarks/test_public_api.py pins it). There are no re-export modules:
each name is imported from the module that defines it.
"""

from __future__ import annotations

from catmner_model._lazy import lazy_getattr

__version__ = "0.1.0"

_API = {
    "CatmnerError": ("catmner_model.errors", "CatmnerError"),
    "CatMnerConfig": ("catmner_model.config", "CatMnerConfig"),
    "CatMner": ("catmner_model.model", "CatMner"),
    "create_model": ("catmner_model.families", "create_model"),
    "load_pretrained": ("catmner_model.families", "load_pretrained"),
    "ModelFamily": ("catmner_model.families", "ModelFamily"),
    "register_family": ("catmner_model.families", "register_family"),
    "CRF": ("catmner_model.crf", "CRF"),
    "TrainConfig": ("catmner_model.training.config", "TrainConfig"),
    "train_model": ("catmner_model.training.loop", "train"),
    "RunRecord": ("catmner_model.training.record", "RunRecord"),
    "drop_checkpoints": ("catmner_model.training.checkpoint", "drop_checkpoints"),
    "Predictor": ("catmner_model.predict", "Predictor"),
    "load_model": ("catmner_model.predict", "load_model"),
    "evaluate_model": ("catmner_model.evaluate", "evaluate_model"),
    "VisualSource": ("catmner_model.visual", "VisualSource"),
    "Tweet": ("catmner_model.data", "Tweet"),
    "Entity": ("catmner_model.data", "Entity"),
    "load_split": ("catmner_model.data", "load_split"),
    "split_path": ("catmner_model.data", "split_path"),
    "resolve_data_dir": ("catmner_model.data", "resolve_data_dir"),
    "resolve_image_dir": ("catmner_model.data", "resolve_image_dir"),
    "image_path": ("catmner_model.data", "image_path"),
    "DATASETS": ("catmner_model.data", "DATASETS"),
    "ENTITY_TYPES": ("catmner_model.data", "ENTITY_TYPES"),
    "Example": ("catmner_model.batching", "Example"),
    "list_configs": ("catmner_model.config", "list_configs"),
    "load_config": ("catmner_model.config", "load_config"),
    "PredictInput": ("catmner_model.predict", "PredictInput"),
    "predict_examples": ("catmner_model.predict", "predict_examples"),
    "PREDICT_BATCH_SIZE": ("catmner_model.predict", "PREDICT_BATCH_SIZE"),
    "read_pgim": ("catmner_model.visual", "read_pgim"),
    "resolve_pgim": ("catmner_model.visual", "resolve_pgim"),
}
# owning modules whose public (non-underscore) names other packages may import, by what they serve
PUBLIC_MODULES = (
    "catmner_model.metrics",  # score, score_tags, score_both (micro P/R/F1, lenient and strict)
    "catmner_model.data",  # tags_to_entities, entities_to_tags (the conlleval chunking)
    "catmner_model.atomic",  # atomic_write, atomic_write_json, atomic_write_text
    "catmner_model.provenance",  # git_info, hardware, package_versions, sha256_file, sha256_file_memo
    "catmner_model.precision",  # autocast, native_bf16, cpu_flags
    "catmner_model.text_encoder",  # load_text_encoder, load_tokenizer, minilm_path, TINY_ENCODER
    "catmner_model.wordform",  # CharCNN
    "catmner_model.crf",  # CRF (the linear-chain CRF of UMT and the tagging baselines)
    "catmner_model.hf_safety",  # refuse_remote_code (an auto_map in a model directory: one line, no import)
    "catmner_model.cli",  # main (the speed benchmark times its start-up)
    "catmner_model.visual_sources",  # parse_visual, visual_name, VISUAL_SOURCES (the visual-source registry)
    "catmner_model.training.loop",  # run_epoch
    "catmner_model.training.optim",  # make_optimizer, linear_schedule
    "catmner_model.training.inputs",  # prepare_visual, epoch_batches, example_lengths, load_label_words
    "catmner_model.training.config",  # build_model_config
    "catmner_model.training.checkpoint",  # save_best_model
    "catmner_model.training.distributed",  # DistInfo, seed_everything
)
__all__ = ["__version__", "PUBLIC_MODULES", *_API]


__getattr__ = lazy_getattr("catmner_model", _API, globals())
