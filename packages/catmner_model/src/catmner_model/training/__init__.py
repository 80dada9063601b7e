"""Training of CAT-MNER models: the loop (`loop.py`), its inputs (`inputs.py`), optimizer (`optim.py`),
resumable checkpoints (`checkpoint.py`), DDP and RNG plumbing (`distributed.py`), the run record (`record.py`)
and what defines a run (`config.py`). The owning modules are imported directly (no re-export module).

`train(TrainConfig(...))` reads a benchmark's splits, resolves the label words through kb_expand,
precomputes frozen grid features once (FeatureCache; with ``finetune_image_encoder`` the model instead runs
its image encoder on each batch's pixels and trains it at ``encoder_lr``), then runs AdamW with linear
warm-up/decay over length-bucketed, seeded batches, validates each epoch (lenient F1 on the validation split;
test is never looked at until the end), keeps the best model in ``OUTPUT/model`` and writes an atomic
checkpoint after every epoch. Rerunning the same config on the same OUTPUT resumes and ends bit-identical to
an uninterrupted run (on CPU).

Output directory layout::

    OUTPUT/model/              best model so far (CatMner.save_pretrained; loads with nothing else)
    OUTPUT/checkpoint.json     pointer to the latest complete checkpoint directory (replaced atomically)
    OUTPUT/ckpt-epoch-NNNN/    model.safetensors, trainer.pt (optimizer, scheduler, RNG; weights_only), state.json
    OUTPUT/log.json            one entry per epoch: loss, validation metrics, seconds
    OUTPUT/run.json            the run record: config, seed, metrics valid/test, timings, checksums, git commit

Under ``torchrun`` every rank runs this same function: a DistributedSampler shards the (identically seeded)
epoch permutation, gradients are averaged by DDP, validation predictions are gathered on every rank, and
only rank 0 writes files.
"""

from __future__ import annotations
