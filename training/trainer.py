"""`SalovaTrainer`: TRL's `SFTTrainer` with SALOVA's loss `L_ar + w · L_sim` really in the optimised loss.

TRL 1.16 patches the model with a fused LM head and its `compute_loss` calls `model(..., fused_lm_head=True)`,
which runs the backbone and the LM head only: the router loss computed in SALOVA's `forward` never reaches the
optimiser that way. This trainer's `compute_loss` runs SALOVA's own forward instead, once per micro-batch, with
the collator's batch (LM labels and the router's targets for every labelled query), asking for logits only at the
positions that predict a response token (`logits_to_keep`), so the full `(B, L, V)` logits are never built. The
model computes the loss; the trainer logs its parts.

Normalisation follows the Trainer's: the LM loss is a token sum over `num_items_in_batch` (all ranks and
accumulation steps), multiplied by the number of processes when tokens are averaged across devices (the model is
given the count per process); `L_sim` is a per-micro-batch mean, so it is divided by the accumulation steps
whenever the Trainer leaves that to the loss.
"""

import shutil
from collections import Counter
from pathlib import Path

import torch
from salova.training.collator import COUNT_KEYS
from salova.training.recipe import TOWER_MODULES, parameter_groups
from trl import SFTTrainer


class SalovaTrainer(SFTTrainer):
    """`tower_learning_rate`: the rate of parameters under `tower_modules` (None: the args' `learning_rate`)."""

    def __init__(self, *args, tower_learning_rate: float | None = None, tower_modules=TOWER_MODULES, **kwargs):
        self.tower_learning_rate = tower_learning_rate
        self.tower_modules = list(tower_modules)
        self.data_counts = Counter()
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        """AdamW (or the args' optimizer) over the tower and non-tower groups. DeepSpeed uses it too, as long as its
        config has no `optimizer` block."""
        if self.optimizer is None:
            model = self.model if model is None else model
            groups = parameter_groups(
                model,
                self.args.learning_rate,
                self.tower_learning_rate,
                self.tower_modules,
                self.args.weight_decay,
                set(self.get_decay_parameter_names(model)),
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Periodic pushes upload `output_dir` after copying only weights and config into it; the remote code the
        config's `auto_map` points to must be there too, or the pushed repository does not load."""
        if self.is_world_process_zero():
            stage_remote_code(checkpoint_folder, self.args.output_dir)
        super()._push_from_checkpoint(checkpoint_folder)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        for key in COUNT_KEYS:
            count = inputs.pop(key, None)
            if count is not None and mode == "train":
                self.data_counts[key] += int(count)
        normalisation = {}
        if num_items_in_batch is not None:
            num_items_in_batch = torch.as_tensor(num_items_in_batch).clamp(min=1)
            if self.args.average_tokens_across_devices:
                num_items_in_batch = num_items_in_batch / self.accelerator.num_processes
            steps = self.current_gradient_accumulation_steps if mode == "train" else 1
            normalisation = {"num_items_in_batch": num_items_in_batch, "num_micro_batches": steps}
        response_positions = (inputs["labels"][:, 1:] != -100).any(dim=0).nonzero().squeeze(1)
        outputs = model(**inputs, **normalisation, logits_to_keep=response_positions, use_cache=False)
        self._metrics[mode]["lm_loss"].append(outputs.lm_loss.detach().item())
        if outputs.similarity_loss is not None:
            self._metrics[mode]["similarity_loss"].append(outputs.similarity_loss.detach().item())
        return (outputs.loss, outputs) if return_outputs else outputs.loss


def stage_remote_code(checkpoint_folder: str | Path, output_dir: str | Path) -> list[str]:
    """Copies the checkpoint's remote-code files (`*.py`) into the folder a periodic push uploads."""
    copied = []
    for source in sorted(Path(checkpoint_folder).glob("*.py")):
        shutil.copy(source, Path(output_dir) / source.name)
        copied.append(source.name)
    return copied
