"""Training overhead: time per optimizer step of train.py's Trainer vs a plain PyTorch loop.

Both train the same real-size model (ViT-S/16 at 224 from its config, random weights) on the
same pre-made, already normalised batches, in fp32, with the same optimisation maths (the AdamW
variant, learning-rate schedule and gradient clipping that train.py's arguments select), so the
difference is what Trainer + Accelerate + koin-hf's callbacks cost per step.

The Trainer is assembled as koin_hf.training.run.run_training assembles it: arguments parsed by
`parse_arguments` (train.py's defaults), the model from `_prepare_model` (the family registry),
`KoinTrainer` with koin-hf's collator, metrics and augmentation-clock callback. Evaluation and
checkpointing are switched off: they are per-epoch costs, not per-step ones.

A step's time is the interval between consecutive step ends (data fetch, forward, backward,
clipping, optimizer, scheduler, logging), first `--warmup` steps excluded. The two contenders run
back to back in alternating rounds; the ratio of their median step times is taken round by round
and the median of those ratios is the result (load from other jobs on a shared machine can slow
a step tenfold, and it cancels within a round). Target: Trainer / plain at most 1.10.

    python benchmarks/bench_training_overhead.py
    python benchmarks/bench_training_overhead.py --quick
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import (
    NUM_CLASSES,
    TRAINING_LOOP_ONLY,
    base_parser,
    interleaved,
    load_average,
    machine_description,
    median,
    paired_ratios,
    random_vit_checkpoint,
    spread,
    verdict,
    work_dir,
)

TARGET = 1.10
TRAINER, PLAIN = "Trainer (train.py setup)", "plain PyTorch loop"


class PremadeBatches(torch.utils.data.Dataset):
    """Normalised pixel tensors made once, so neither contender decodes or augments anything."""

    def __init__(self, count: int, size: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.pixels = torch.randn(count, 3, size, size, generator=generator)
        self.labels = torch.randint(0, NUM_CLASSES, (count,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixels[index], "labels": self.labels[index]}


class StepClock:
    """Wall-clock time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def tick(self) -> None:
        self.ends.append(time.perf_counter())

    def step_seconds(self, warmup: int) -> list[float]:
        return [b - a for a, b in zip(self.ends[warmup:], self.ends[warmup + 1 :], strict=False)]


def trainer_run(model_dir: Path, data: PremadeBatches, batch_size: int, steps: int, warmup: int):
    """One run of the Trainer train.py builds (`build_trainer`); returns the step times."""
    from transformers import TrainerCallback

    from koin_hf.data import transforms
    from koin_hf.training.arguments import parse_arguments
    from koin_hf.training.run import _prepare_model, build_trainer

    names = [f"class-{i}" for i in range(NUM_CLASSES)]
    clock = StepClock()

    class StepClockCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.tick()

    def run() -> list[float]:
        with tempfile.TemporaryDirectory() as output_dir:
            model_args, _, training_args = parse_arguments(
                [
                    "--model_name_or_path",
                    str(model_dir),
                    "--output_dir",
                    output_dir,
                    "--per_device_train_batch_size",
                    str(batch_size),
                    "--max_steps",
                    str(steps),
                    *TRAINING_LOOP_ONLY,
                ]
            )
            model, processor, _, _ = _prepare_model(model_args, names, training_args.seed)
            trainer = build_trainer(
                model,
                processor,
                training_args,
                data,
                None,
                transforms.AugmentationClock(training_args.seed),
                extra_callbacks=[StepClockCallback()],
            )
            clock.ends.clear()
            trainer.train()
            inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
            run.optimizer = f"{type(inner).__name__}(fused={inner.defaults.get('fused')})"  # type: ignore[attr-defined]
            run.args = training_args  # type: ignore[attr-defined]
        return clock.step_seconds(warmup)

    return run


def plain_run(model_dir: Path, data: PremadeBatches, batch_size: int, steps: int, warmup: int):
    """The loop a user would write, with the maths train.py's arguments select."""
    from transformers import ViTForImageClassification, get_linear_schedule_with_warmup

    from koin_hf.data import transforms
    from koin_hf.training.arguments import parse_arguments

    _, _, defaults = parse_arguments(["--output_dir", tempfile.gettempdir()])
    clock = StepClock()

    def run() -> list[float]:
        torch.manual_seed(defaults.seed)
        model = ViTForImageClassification.from_pretrained(model_dir)
        model.train()
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=defaults.learning_rate,
            betas=(defaults.adam_beta1, defaults.adam_beta2),
            eps=defaults.adam_epsilon,
            weight_decay=defaults.weight_decay,
            fused=True,  # what optim=adamw_torch_fused (Trainer's default) builds
        )
        warmup_steps = defaults.get_warmup_steps(steps)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps, steps)
        loader = torch.utils.data.DataLoader(
            data, batch_size=batch_size, shuffle=True, collate_fn=transforms.collate
        )
        clock.ends.clear()
        done = 0
        while done < steps:
            for batch in loader:
                loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), defaults.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                clock.tick()
                done += 1
                if done == steps:
                    break
        return clock.step_seconds(warmup)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=16, help="~1-3 s a step on 2 cores")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the timing")
    parser.add_argument("--rounds", type=int, default=6, help="alternating runs per contender")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.steps, args.warmup, args.rounds = 4, 4, 1, 1
    import transformers

    transformers.utils.logging.set_verbosity_error()
    print(machine_description())
    model_dir, size, model_name = random_vit_checkpoint(work_dir(args.work_dir), args.quick)
    data = PremadeBatches(args.batch_size * args.steps, size)
    trainer_contender = trainer_run(model_dir, data, args.batch_size, args.steps, args.warmup)
    plain_contender = plain_run(model_dir, data, args.batch_size, args.steps, args.warmup)
    print(
        f"\nmodel: {model_name} at {size}x{size}, fp32, batch {args.batch_size}, "
        f"{args.steps} steps per run ({args.warmup} warm-up steps not timed), "
        f"{args.rounds} alternating runs each; median seconds per step:"
    )
    results = interleaved(
        {
            TRAINER: lambda: trainer_contender(),
            PLAIN: lambda: plain_contender(),
        },
        args.rounds,
        log=lambda line: print(line, flush=True),
    )
    trainer_runs, plain_runs = results[TRAINER], results[PLAIN]
    trainer_steps = [s for run in trainer_runs for s in run]
    plain_steps = [s for run in plain_runs for s in run]
    training_args = trainer_contender.args  # type: ignore[attr-defined]
    print(
        f"\nTrainer optimizer: {trainer_contender.optimizer}; lr {training_args.learning_rate}, "  # type: ignore[attr-defined]
        f"{training_args.lr_scheduler_type.value} schedule, max_grad_norm "
        f"{training_args.max_grad_norm}, logging every {training_args.logging_steps:g} steps; "
        f"load average at the end {load_average()}"
    )
    print(f"{'contender':<26} {'median s/step':>13} {'range':>13} {'steps timed':>11}")
    for name, steps in ((TRAINER, trainer_steps), (PLAIN, plain_steps)):
        print(
            f"{name:<26} {statistics.median(steps):>13.3f} "
            f"{spread(steps, '.3f'):>13} {len(steps):>11}"
        )
    ratios = paired_ratios([median(r) for r in trainer_runs], [median(r) for r in plain_runs])
    ratio = median(ratios)
    print(
        f"\nTrainer / plain, per round: {' '.join(f'{r:.3f}' for r in ratios)}\n"
        f"Trainer / plain (median of the rounds): {ratio:.3f}  "
        f"{verdict(ratio, TARGET, at_least=False)}; "
        f"pooled medians: {statistics.median(trainer_steps) / statistics.median(plain_steps):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
